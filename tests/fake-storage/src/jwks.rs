//! The auth routes of the gateway: the project's JWKS and its test-control endpoints.
//!
//! * `GET /auth/v1/.well-known/jwks.json`: the public keys of the gateway's [`SigningKeys`]
//!   (no `apikey` needed, `cache-control: public, max-age=600`, as Supabase serves it). Every
//!   request is counted.
//! * `POST /__fake/auth/rotate`: [`SigningKeys::rotate_es256`]; answers `{"kid": new}`.
//! * `POST /__fake/auth/revoke?kid=…`: [`SigningKeys::revoke_es256`]; answers `{"revoked": bool}`.
//! * `GET /__fake/auth/jwks-hits`: `{"hits": n}`, how many JWKS requests were served.
//!
//! Other `/auth/v1/*` paths are not emulated (Kong's 404).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;

use crate::keys::SigningKeys;
use crate::util::{json_response, query_param};

/// Path of the JWKS under the project URL.
pub(crate) const JWKS_PATH: &str = "/auth/v1/.well-known/jwks.json";

/// `Cache-Control` of the JWKS (Supabase: 10 minutes).
const JWKS_CACHE_CONTROL: &str = "public, max-age=600";

/// The signing keys of one gateway and how often their JWKS was fetched.
pub(crate) struct Auth {
    pub(crate) keys: std::sync::Arc<SigningKeys>,
    jwks_hits: AtomicU64,
}

impl Auth {
    pub(crate) fn new(keys: std::sync::Arc<SigningKeys>) -> Self {
        Auth {
            keys,
            jwks_hits: AtomicU64::new(0),
        }
    }

    pub(crate) fn jwks_hits(&self) -> u64 {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// Serves [`JWKS_PATH`].
    pub(crate) fn jwks(&self, method: &Method) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return crate::gateway::no_route();
        }
        self.jwks_hits.fetch_add(1, Ordering::SeqCst);
        let mut resp = json_response(StatusCode::OK, &self.keys.jwks());
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(JWKS_CACHE_CONTROL),
        );
        resp
    }

    /// Serves `/__fake/auth/*`.
    pub(crate) fn control(&self, req: &Request<Body>) -> Response<Body> {
        let query = req.uri().query();
        match (req.method(), req.uri().path()) {
            (&Method::POST, "/__fake/auth/rotate") => {
                let kid = self.keys.rotate_es256();
                json_response(StatusCode::OK, &json!({ "kid": kid }))
            }
            (&Method::POST, "/__fake/auth/revoke") => match query_param(query, "kid") {
                Some(kid) => {
                    let revoked = self.keys.revoke_es256(&kid);
                    json_response(StatusCode::OK, &json!({ "revoked": revoked }))
                }
                None => json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"message": "query parameter kid is required"}),
                ),
            },
            (&Method::GET, "/__fake/auth/jwks-hits") => {
                json_response(StatusCode::OK, &json!({ "hits": self.jwks_hits() }))
            }
            _ => crate::gateway::no_route(),
        }
    }
}
