//! The gateway: one loopback port that looks like a Supabase project URL.
//!
//! Owns the listener, start/stop, and the top-level dispatch: `/rest/v1/*` → the PostgREST proxy
//! ([`crate::proxy`]), `/storage/v1/*` → the in-process Storage API ([`crate::storage`]),
//! `/__fake/storage/*` and `/__fake/rest/*` → the test-control endpoints ([`crate::control`],
//! [`crate::rest_control`]),
//! `/auth/v1/.well-known/jwks.json` and `/__fake/auth/*` → the signing keys ([`crate::jwks`]);
//! anything else → Kong's 404.
//!
//! Like the `cors` plugin of Supabase's Kong (origins `*`), a request that carries `Origin` is
//! answered with CORS headers, and a preflight (`OPTIONS` + `Access-Control-Request-Method`) is
//! answered by the gateway itself, so a web page on another origin (the playground) can sign in,
//! upload and read objects. Requests without `Origin` (servers, tests) are untouched.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::Router;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::control::Control;
use crate::jwks::{Auth, JWKS_PATH};
use crate::keys::SigningKeys;
use crate::proxy::Proxy;
use crate::rest_control::RestControl;
use crate::storage::Storage;
use crate::util::json_response;

/// The JWT secret of self-hosted Supabase's example configuration; the default for tests.
pub const DEFAULT_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

/// The inputs bucket of the source document (and of the migration's default): the default
/// owner-folder bucket of [`GatewayConfig`].
pub const DEFAULT_INPUT_BUCKET: &str = "user_input_files_bucket";

/// How to start a [`Gateway`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Upstream for `/rest/v1/*`, e.g. `http://127.0.0.1:3000`.
    pub postgrest_url: String,
    /// Where objects live on disk (a temp dir in tests). Created if missing; never removed.
    /// The default is a new directory under the system temp dir.
    pub storage_root: PathBuf,
    /// The project's HS256 JWT secret (Storage verifies `Authorization` with it).
    pub jwt_secret: String,
    /// The keys `/rest/v1` accepts in `apikey`.
    pub anon_key: String,
    pub service_key: String,
    /// Storage's global upload limit (`UPLOAD_FILE_SIZE_LIMIT`).
    pub upload_limit_bytes: u64,
    /// The buckets whose `storage.objects` rows carry the owner-folder policies of
    /// `migrations/0002_input_storage_policies.sql`: an `authenticated` user may read, write,
    /// list and sign there only objects named `{sub}/…`. Other private buckets have no policy
    /// (only the service role uses them). Default: [`DEFAULT_INPUT_BUCKET`].
    pub owner_folder_buckets: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            postgrest_url: "http://127.0.0.1:3000".to_string(),
            storage_root: std::env::temp_dir()
                .join(format!("fake-storage-{}", uuid::Uuid::new_v4())),
            jwt_secret: DEFAULT_JWT_SECRET.to_string(),
            anon_key: crate::jwt::anon_key(DEFAULT_JWT_SECRET),
            service_key: crate::jwt::service_role_key(DEFAULT_JWT_SECRET),
            upload_limit_bytes: 1 << 30,
            owner_folder_buckets: vec![DEFAULT_INPUT_BUCKET.to_string()],
        }
    }
}

/// A running gateway. Dropping it without [`Gateway::stop`] leaves the server running until the
/// runtime ends.
pub struct Gateway {
    pub addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

pub(crate) struct AppState {
    pub(crate) proxy: Proxy,
    pub(crate) storage: Storage,
    pub(crate) control: Control,
    pub(crate) rest_control: RestControl,
    pub(crate) auth: Auth,
    pub(crate) storage_chaos: chaos::Chaos,
    pub(crate) rest_chaos: chaos::Chaos,
    pub(crate) outages: crate::chaos::Outages,
}

impl Gateway {
    /// Binds the listener and serves in a background task. New [`SigningKeys`] are made for
    /// every gateway.
    pub async fn start(cfg: GatewayConfig) -> std::io::Result<Gateway> {
        // One set of keys: the JWKS publishes them and Storage verifies user tokens with them.
        let keys = Arc::new(SigningKeys::new());
        let storage = Storage::new(&cfg, Arc::clone(&keys)).await?;
        let state = Arc::new(AppState {
            proxy: Proxy::new(&cfg),
            storage,
            control: Control::default(),
            rest_control: RestControl::default(),
            auth: Auth::new(keys),
            storage_chaos: crate::chaos::storage_chaos(),
            rest_chaos: crate::chaos::rest_chaos(),
            outages: Default::default(),
        });
        let app = Router::new()
            .fallback(dispatch)
            // Uploads are streamed and limited by Storage itself (also for multipart).
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("fake-storage gateway: server error: {e}");
            }
        });
        Ok(Gateway {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`: the project URL (append `/rest/v1` or `/storage/v1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The project's asymmetric signing keys, shared with the server: tokens they mint verify
    /// against [`Gateway::jwks_url`], and a rotation shows there at once.
    pub fn keys(&self) -> Arc<SigningKeys> {
        Arc::clone(&self.state.auth.keys)
    }

    /// `http://127.0.0.1:PORT/auth/v1`: the `iss` of the project's user tokens.
    pub fn auth_issuer(&self) -> String {
        format!("{}/auth/v1", self.url())
    }

    /// `http://127.0.0.1:PORT/auth/v1/.well-known/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.url())
    }

    /// How many times the JWKS was requested so far.
    pub fn jwks_hits(&self) -> u64 {
        self.state.auth.jwks_hits()
    }

    /// Switches chaos mode on for Storage (`/storage/v1`) or PostgREST (`/rest/v1`); the twin
    /// of `POST /__fake/storage/chaos` and `/__fake/rest/chaos`.
    pub fn set_chaos(&self, rest: bool, spec: chaos::ChaosSpec) -> Result<(), String> {
        self.chaos_of(rest).set(spec)
    }

    /// Switches chaos mode off; the session's counters.
    pub fn clear_chaos(&self, rest: bool) -> chaos::ChaosStats {
        self.chaos_of(rest).clear()
    }

    /// The chaos counters of Storage or PostgREST.
    pub fn chaos_stats(&self, rest: bool) -> chaos::ChaosStats {
        self.chaos_of(rest).stats()
    }

    fn chaos_of(&self, rest: bool) -> &chaos::Chaos {
        if rest {
            &self.state.rest_chaos
        } else {
            &self.state.storage_chaos
        }
    }

    /// Takes Storage (`rest == false`) or PostgREST down at the gateway for `seconds` (Kong's
    /// 502, or dropped connections with `reset`); the twin of `POST /__fake/outage`.
    pub fn outage(&self, rest: bool, seconds: f64, reset: bool) {
        let service = if rest {
            crate::chaos::Service::Rest
        } else {
            crate::chaos::Service::Storage
        };
        self.state.outages.start(service, seconds, reset);
    }

    /// Ends every outage.
    pub fn end_outages(&self) {
        self.state.outages.end(None);
    }

    /// Stops accepting, lets requests in flight finish (at most 5 s), then ends the server.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

async fn dispatch(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response<Body> {
    if !req.headers().contains_key("origin") {
        return route(state, req).await;
    }
    let preflight = req.method() == axum::http::Method::OPTIONS
        && req.headers().contains_key("access-control-request-method");
    if preflight {
        let allow_headers = req
            .headers()
            .get("access-control-request-headers")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("authorization, apikey, content-type"));
        let mut resp = Response::new(Body::empty());
        let h = resp.headers_mut();
        h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS"),
        );
        h.insert("access-control-allow-headers", allow_headers);
        h.insert("access-control-max-age", HeaderValue::from_static("3600"));
        return resp;
    }
    let mut resp = route(state, req).await;
    let h = resp.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("content-length, content-range, content-type, etag"),
    );
    resp
}

async fn route(state: Arc<AppState>, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path();
    if path.starts_with("/rest/v1/") {
        crate::chaos::rest(&state, req).await
    } else if path.starts_with("/storage/v1/") {
        crate::chaos::storage(&state, req).await
    } else if path == "/__fake/storage/chaos"
        || path == "/__fake/rest/chaos"
        || path == "/__fake/outage"
    {
        crate::chaos::control(&state, req).await
    } else if path.starts_with("/__fake/storage/") {
        crate::control::handle(&state.control, req).await
    } else if path.starts_with("/__fake/rest/") {
        crate::rest_control::handle(&state.rest_control, req).await
    } else if path == JWKS_PATH {
        state.auth.jwks(req.method())
    } else if path.starts_with("/__fake/auth/") {
        state.auth.control(&req)
    } else {
        no_route()
    }
}

/// Kong's answer for a path that matches no route.
pub(crate) fn no_route() -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"message": "no Route matched with those values"}),
    )
}
