//! HTTP glue: routing a `worker::Request` to its handler (`core::route` decides), then turning the
//! handler's `Reply` or `ApiError` into the response (`reply`), with CORS and `HEAD`.

use std::cell::Cell;

use worker::{Context, Env, Request};

use crate::api;
use crate::core::error::ApiError;
use crate::core::route::{self, Route};
use crate::log::{self, Level};
use crate::reply::{internal, respond, Reply};
use crate::settings;

thread_local! {
    /// Whether this isolate has warned that authentication is off.
    static WARNED_AUTH_OFF: Cell<bool> = const { Cell::new(false) };
}

/// `AUTH_MODE=none` is for local development only: say so in the log once per isolate start.
fn warn_if_auth_off(env: &Env) {
    if settings::auth_off(env) && !WARNED_AUTH_OFF.with(|w| w.replace(true)) {
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
pub async fn handle(req: Request, env: Env, _ctx: Context) -> worker::Result<web_sys::Response> {
    warn_if_auth_off(&env);
    // The method as sent: `worker::Method` reads every method it does not know (QUERY, PROPFIND…)
    // as GET, which would serve them instead of answering 405.
    let method = route::method_name(&req.inner().method());
    let path = req.path();
    let result = match route::route(&method, &path) {
        Ok(route) => dispatch(route, req, &env).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
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
    }
    let origin = settings::cors_allow_origin(&env);
    let head = method == "HEAD";
    match respond(result, origin, head) {
        Ok(resp) => Ok(resp),
        Err(e) => respond(Err(internal(e)), origin, head),
    }
}

async fn dispatch(route: Route, req: Request, env: &Env) -> Result<Reply, ApiError> {
    match route {
        Route::Preflight => Ok(Reply::Empty(204)),
        Route::Health => api::health::handle(env),
        Route::OpenApi => api::openapi::handle(env),
        Route::Playground => api::playground::page(req, env).await,
        Route::PlaygroundConfig => api::playground::config_json(env),
        Route::Generate(endpoint) => api::generate::handle(endpoint, req, env).await,
        Route::Status(id) => api::status::handle(&id, req, env).await,
        Route::Events(id) => api::live::events(&id, req, env).await,
        Route::Ws(id) => api::live::websocket(&id, req, env).await,
        Route::Cancel(id) => api::live::cancel(&id, req, env).await,
        Route::TestEnqueue => api::test_hooks::enqueue(req, env).await,
        Route::TripoWebhook => api::tripo_webhook::handle(req, env).await,
    }
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
