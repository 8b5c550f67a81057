//! `GET /health`: liveness plus a configuration report that names missing or invalid settings
//! and never shows a value.

use serde_json::json;
use worker::Env;

use crate::core::config::AuthMode;
use crate::core::error::ApiError;
use crate::reply::Reply;
use crate::settings;

pub fn handle(env: &Env) -> Result<Reply, ApiError> {
    let body = match settings::loaded(env) {
        Ok(c) => json!({
            "status": "ok",
            "service": "makeit3d-bff",
            "version": env!("CARGO_PKG_VERSION"),
            "auth_mode": c.auth_mode,
            "local_only": c.auth_mode == AuthMode::None,
            "tripo": { "api": c.tripo_api, "webhooks": c.tripo_webhooks() },
            "problems": [],
        }),
        Err(invalid) => json!({
            "status": "misconfigured",
            "service": "makeit3d-bff",
            "version": env!("CARGO_PKG_VERSION"),
            "problems": invalid.problems,
        }),
    };
    Reply::json(200, &body)
}
