//! The in-process Supabase Storage API served under `/storage/v1`, as
//! `shared/reference/supabase-http.md` §2 records it.
//!
//! Owns the entry point: it applies injected faults, routes the request
//! ([`routes`]), and writes the request log. Submodules: [`auth`] (JWT and the permission model:
//! owner-folder policies on the configured buckets),
//! [`errors`] (the 4xx-as-400 error bodies), [`store`] (metadata and bytes on disk).

mod auth;
mod errors;
mod routes;
mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use futures_util::StreamExt;
use percent_encoding::percent_decode_str;

use crate::control::{Control, LogEntry};
use crate::gateway::GatewayConfig;
use crate::keys::SigningKeys;
use crate::util::now_ms;
use errors::ErrorInfo;
use store::Store;

const PREFIX: &str = "/storage/v1";

/// Object bytes moved by a request, attached to its response for the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoggedBytes(pub u64);

pub(crate) struct Storage {
    store: Store,
    jwt_secret: String,
    /// The project's asymmetric signing keys (shared with the gateway's JWKS).
    keys: Arc<SigningKeys>,
    policy: auth::Policy,
    upload_limit: u64,
}

impl Storage {
    pub(crate) async fn new(
        cfg: &GatewayConfig,
        keys: Arc<SigningKeys>,
    ) -> std::io::Result<Storage> {
        Ok(Storage {
            store: Store::open(&cfg.storage_root).await?,
            jwt_secret: cfg.jwt_secret.clone(),
            keys,
            policy: auth::Policy::new(cfg.owner_folder_buckets.iter().cloned()),
            upload_limit: cfg.upload_limit_bytes,
        })
    }

    /// Serves one `/storage/v1/*` request.
    pub(crate) async fn handle(&self, control: &Control, req: Request<Body>) -> Response<Body> {
        let at_ms = now_ms();
        let method = req.method().clone();
        let raw = req
            .uri()
            .path()
            .strip_prefix(PREFIX)
            .unwrap_or("/")
            .to_string();
        let decoded = percent_decode_str(&raw).decode_utf8_lossy().into_owned();

        let mut injected = None;
        if let Some(hit) = control.take_fault(&method, &raw, &decoded) {
            if let Some(delay) = hit.delay {
                tokio::time::sleep(delay).await;
            }
            injected = hit.response;
        }
        let (resp, storage_status, code) = match injected {
            Some((real, resp)) => {
                drain(req.into_body()).await;
                (resp, real.as_u16(), Some("InjectedFault".to_string()))
            }
            None => {
                let resp = routes::route(self, req, &raw).await;
                let (status, code) = match resp.extensions().get::<ErrorInfo>() {
                    Some(info) => (info.status, Some(info.code.to_string())),
                    None => (resp.status().as_u16(), None),
                };
                (resp, status, code)
            }
        };
        control.record(LogEntry {
            method: method.to_string(),
            path: raw,
            status: resp.status().as_u16(),
            storage_status,
            code,
            bytes: resp.extensions().get::<LoggedBytes>().map_or(0, |b| b.0),
            at_ms,
        });
        resp
    }
}

/// Reads and discards what is left of a request body (at most 64 MiB, at most 10 s), so that a
/// client still sending gets our early answer instead of a connection reset.
pub(crate) async fn drain(body: Body) {
    const CAP: usize = 64 << 20;
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > CAP {
                break;
            }
        }
    })
    .await;
}
