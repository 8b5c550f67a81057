//! PostgREST calls: sends the requests `core::rest` describes, with the service key.

use worker::Method;

use crate::config::Config;
use crate::core::supabase::service_headers;
use crate::error::{DepError, Dependency};
use crate::net::{self, Body};

pub const TIMEOUT_MS: u64 = 15_000;

/// Sends one PostgREST request (`path_and_query` after `/rest/v1/`) and returns the body.
pub async fn send(
    cfg: &Config,
    method: Method,
    path_and_query: &str,
    extra_headers: &[(&'static str, String)],
    body: Option<String>,
) -> Result<Vec<u8>, DepError> {
    let url = format!("{}/rest/v1/{}", cfg.supabase_url, path_and_query.trim_start_matches('/'));
    let mut h = service_headers(&cfg.supabase_service_key);
    h.extend(extra_headers.iter().cloned());
    if body.is_some() {
        h.push(("content-type", "application/json".to_owned()));
    }
    let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply = net::send(method, &url, &refs, body.map_or(Body::Empty, Body::Text), TIMEOUT_MS)
        .await
        .map_err(|e| DepError::new(Dependency::Database, None, e.to_string()))?;
    if reply.is_success() {
        return Ok(reply.body);
    }
    // PostgREST errors are {"code","details","hint","message"}; keep code and message only.
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let msg = format!(
        "{} {}",
        v["code"].as_str().unwrap_or(""),
        v["message"].as_str().unwrap_or("")
    );
    let mut e = DepError::new(Dependency::Database, Some(reply.status), msg.trim().to_owned());
    e.retry_after_s = reply.header("retry-after").and_then(|s| s.trim().parse().ok());
    Err(e)
}
