//! PostgREST calls: sends the requests `core::rest` builds, with the service key (the worker's
//! own writes) or with a caller's own token (reads made for a user, SPEC §4.1).

use worker::Method;

use crate::core::config::Config;
use crate::core::error::{DepError, Dependency};
use crate::core::jwt::AccessToken;
use crate::core::rest::{self, RestRequest};
use crate::net::{self, Body};

pub const TIMEOUT_MS: u64 = 15_000;

fn method(m: rest::Method) -> Method {
    match m {
        rest::Method::Get => Method::Get,
        rest::Method::Post => Method::Post,
        rest::Method::Patch => Method::Patch,
        rest::Method::Delete => Method::Delete,
    }
}

/// Sends one PostgREST request with the service key and returns the body of a 2xx answer.
pub async fn send(cfg: &Config, req: &RestRequest) -> Result<Vec<u8>, DepError> {
    send_with(cfg, req, rest::auth_headers(&cfg.supabase_service_key)).await
}

/// Sends a read made for a user with that user's own token, so row-level security decides. The
/// gateway's `apikey` is the project's publishable key when configured (`SUPABASE_ANON_KEY`),
/// else the service key; either way the database role comes from the user's token.
pub async fn send_as_caller(
    cfg: &Config,
    req: &RestRequest,
    token: &AccessToken,
) -> Result<Vec<u8>, DepError> {
    let apikey = cfg
        .supabase_anon_key
        .clone()
        .unwrap_or_else(|| cfg.supabase_service_key.trim().to_owned());
    let h = vec![
        ("apikey", apikey),
        ("Authorization", format!("Bearer {}", token.as_str())),
    ];
    send_with(cfg, req, h).await
}

async fn send_with(
    cfg: &Config,
    req: &RestRequest,
    mut h: Vec<(&'static str, String)>,
) -> Result<Vec<u8>, DepError> {
    h.extend(req.headers.iter().cloned());
    let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = req.body.clone().map_or(Body::Empty, Body::Text);
    let reply = net::send(
        method(req.method),
        &req.url(&cfg.supabase_url),
        &refs,
        body,
        TIMEOUT_MS,
    )
    .await
    .map_err(|e| DepError::new(Dependency::Database, None, e.to_string()))?;
    if reply.is_success() {
        return Ok(reply.body);
    }
    let failure = rest::postgrest_failure(reply.status, &reply.text(), None);
    let mut e = DepError::new(Dependency::Database, Some(reply.status), failure.reason);
    e.retry_after_s = reply
        .header("retry-after")
        .and_then(|s| s.trim().parse().ok());
    Err(e)
}

/// Sends several requests in order, stopping at the first failure.
pub async fn send_all(cfg: &Config, reqs: &[RestRequest]) -> Result<(), DepError> {
    for r in reqs {
        send(cfg, r).await?;
    }
    Ok(())
}
