//! HTTP glue: routing a `worker::Request` to a handler, CORS, and turning every `ApiError` into
//! the one JSON error response. Decisions live in `route` and `crate::core::error`; this only translates.

use serde_json::Value;
use worker::{Context, Env, Headers, Request, Response};

use crate::api;
use crate::core::config::Config;
use crate::core::error::ApiError;
use crate::core::openapi;
use crate::core::route::{self, Route};
use crate::log::{self, Level};

/// Reads a setting from `[vars]` or a secret, whichever holds it.
pub fn lookup(env: &Env, name: &str) -> Option<String> {
    if let Ok(v) = env.var(name) {
        return Some(v.to_string());
    }
    env.secret(name).ok().map(|s| s.to_string())
}

/// The worker's configuration, or the misconfiguration error naming every bad setting.
pub fn config(env: &Env) -> Result<Config, ApiError> {
    Config::load(|name| lookup(env, name)).map_err(|problems| {
        ApiError::Misconfigured(problems.into_iter().map(|p| p.name.to_owned()).collect())
    })
}

/// A JSON response with the given status.
pub fn json(status: u16, body: String) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}

/// A JSON response from a serializable value.
pub fn json_value(status: u16, value: &Value) -> worker::Result<Response> {
    json(status, value.to_string())
}

/// The JSON error response of SPEC §4.4 for `e`, with its extra headers.
pub fn error_response(e: &ApiError) -> worker::Result<Response> {
    let resp = json(e.status(), e.body())?;
    for (name, value) in e.headers() {
        resp.headers().set(name, &value)?;
    }
    Ok(resp)
}

fn add_cors(resp: &Response, origin: &str) -> worker::Result<()> {
    let h = resp.headers();
    h.set("access-control-allow-origin", origin)?;
    h.set("access-control-allow-methods", "GET, HEAD, POST, OPTIONS")?;
    h.set(
        "access-control-allow-headers",
        "authorization, content-type, apikey, x-client-info",
    )?;
    h.set("access-control-max-age", "86400")?;
    if origin != "*" {
        h.set("vary", "origin")?;
    }
    Ok(())
}

thread_local! {
    /// Whether this isolate has warned that authentication is off.
    static WARNED_AUTH_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `AUTH_MODE=none` is for local development only: say so in the log once per isolate start.
fn warn_if_auth_off(env: &Env) {
    if lookup(env, "AUTH_MODE").as_deref() == Some("none")
        && !WARNED_AUTH_OFF.with(|w| w.replace(true))
    {
        log::emit(
            Level::Warn,
            "auth.disabled",
            None,
            None,
            serde_json::json!({ "message": "AUTH_MODE=none: every caller is the local user; never use this in production" }),
        );
    }
}

/// Entry point of every HTTP request.
pub async fn handle(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    warn_if_auth_off(&env);
    // The method as sent: `worker::Method` reads every method it does not know (QUERY, PROPFIND…)
    // as GET, which would serve them instead of answering 405.
    let method = route::method_name(&req.inner().method());
    let path = req.path();
    let origin = lookup(&env, "CORS_ALLOW_ORIGIN").unwrap_or_else(|| "*".into());
    let result = match route::route(&method, &path) {
        Ok(route) => dispatch(route, req, &env, &ctx).await,
        Err(e) => Err(e),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            if e.status() >= 500 {
                log::emit(
                    Level::Error,
                    "http.error",
                    None,
                    None,
                    serde_json::json!({
                        "method": method, "path": path, "status": e.status(), "code": e.code(), "message": e.to_string(),
                    }),
                );
            }
            error_response(&e)?
        }
    };
    add_cors(&resp, &origin)?;
    if method == "HEAD" {
        let headers = resp.headers().clone();
        return Ok(Response::empty()?
            .with_status(resp.status_code())
            .with_headers(headers));
    }
    Ok(resp)
}

async fn dispatch(
    route: Route,
    req: Request,
    env: &Env,
    ctx: &Context,
) -> Result<Response, ApiError> {
    let _ = ctx;
    match route {
        Route::Preflight => Response::empty()
            .map(|r| r.with_status(204))
            .map_err(internal),
        Route::Health => api::health::handle(env),
        Route::OpenApi => {
            // With a usable SUPABASE_URL the input URL fields carry the origin rule as a pattern.
            let cfg = config(env).ok();
            let origin = cfg
                .as_ref()
                .and_then(|c| crate::core::storage_path::Origin::parse(&c.supabase_url).ok());
            let hosts = cfg.as_ref().map(|c| c.webhook_allowed_hosts.as_slice());
            json_value(200, &openapi::document_for(origin.as_ref(), hosts)).map_err(internal)
        }
        Route::Playground => api::playground::page(req, env).await,
        Route::PlaygroundConfig => api::playground::config_json(env),
        Route::Generate(name) => api::generate::handle(name, req, env).await,
        Route::Status(id) => api::status::handle(&id, req, env).await,
        Route::Events(id) => api::live::events(&id, req, env).await,
        Route::Ws(id) => api::live::websocket(&id, req, env).await,
        Route::Cancel(id) => api::live::cancel(&id, req, env).await,
        Route::TestEnqueue => test_enqueue(req, env).await,
    }
}

/// Test hook: enqueue a raw job message. Only with `TEST_HOOKS=true`, which the configuration
/// accepts only with `AUTH_MODE=none` (with real auth the worker reports itself misconfigured).
async fn test_enqueue(mut req: Request, env: &Env) -> Result<Response, ApiError> {
    if !config(env)?.test_hooks {
        return Err(ApiError::RouteNotFound("/__test/enqueue".into()));
    }
    let text = req.text().await.map_err(internal)?;
    let msg = crate::core::jobs::JobMessage::from_json(&text)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    crate::jobs::enqueue(env, &msg, 0).await?;
    json(202, r#"{"enqueued":true}"#.to_owned()).map_err(internal)
}

/// Maps a runtime error to a 500 without leaking its text to the client (it is logged).
pub fn internal(e: worker::Error) -> ApiError {
    log::emit(
        Level::Error,
        "runtime.error",
        None,
        None,
        serde_json::json!({ "error": e.to_string() }),
    );
    ApiError::Internal
}

#[cfg(test)]
mod tests {
    #[test]
    fn worker_method_reads_unknown_methods_as_get() {
        // Why `handle` routes `req.inner().method()` (the method as sent) and not `req.method()`:
        // `worker::Method` maps every method it does not know to GET, which would serve QUERY,
        // PROPFIND… instead of answering 405 (`core::route` tests the 405s).
        assert_eq!(
            String::from(worker::Method::from("QUERY".to_owned())),
            "GET"
        );
    }
}
