//! `GET /health`: liveness plus a configuration report that names missing or invalid settings
//! and never shows a value.

use serde_json::json;
use worker::{Env, Response};

use crate::core::config::{AuthMode, Config};
use crate::core::error::ApiError;
use crate::http::{internal, json_value, lookup};

pub fn handle(env: &Env) -> Result<Response, ApiError> {
    let loaded = Config::load(|name| lookup(env, name));
    let body = match &loaded {
        Ok(c) => json!({
            "status": "ok",
            "service": "makeit3d-bff",
            "version": env!("CARGO_PKG_VERSION"),
            "auth_mode": c.auth_mode,
            "local_only": c.auth_mode == AuthMode::None,
            "problems": [],
        }),
        Err(problems) => json!({
            "status": "misconfigured",
            "service": "makeit3d-bff",
            "version": env!("CARGO_PKG_VERSION"),
            "problems": problems,
        }),
    };
    json_value(200, &body).map_err(internal)
}
