//! `GET /openapi.json`: the OpenAPI document of `core::openapi`. Its base is written at compile
//! time (`src/build.rs`); the first request of an isolate fits it to the deployment (with a usable
//! configuration, the input URL fields carry the Supabase origin rule as a pattern and
//! `webhook_url` the allowed hosts) and later ones reuse that text.

use std::cell::OnceCell;

use serde_json::Value;
use worker::Env;

use crate::core::error::ApiError;
use crate::core::openapi;
use crate::reply::Reply;
use crate::settings;

/// `core::openapi::document_for(None, None)`, serialized by the build script.
const BASE: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

thread_local! {
    /// This isolate's document (its configuration never changes).
    static DOCUMENT: OnceCell<String> = const { OnceCell::new() };
}

pub fn handle(env: &Env) -> Result<Reply, ApiError> {
    let body = DOCUMENT.with(|d| -> Result<String, ApiError> {
        if let Some(text) = d.get() {
            return Ok(text.clone());
        }
        let text = render(env)?;
        Ok(d.get_or_init(|| text).clone())
    })?;
    Ok(Reply::Json { status: 200, body })
}

/// The base document fitted to this deployment's configuration (as it is when that is invalid).
fn render(env: &Env) -> Result<String, ApiError> {
    let Ok(cfg) = settings::loaded(env) else {
        return Ok(BASE.to_owned());
    };
    let mut doc: Value = serde_json::from_str(BASE).map_err(|_| ApiError::Internal)?;
    openapi::deploy(
        &mut doc,
        Some(&cfg.supabase_origin),
        Some(&cfg.webhook_allowed_hosts),
    );
    Ok(doc.to_string())
}
