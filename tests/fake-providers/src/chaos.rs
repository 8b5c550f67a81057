//! Chaos mode of the provider fakes (`POST /__fake/chaos`, see the `chaos` crate): a seeded
//! fraction of the requests to the provider routes is faulted the way the real services fail.
//!
//! | kind | OpenAI (`/v1/…`) | Tripo API (`/v2/openapi/…`) | model files (`/__fake/files/…`, `/__fake/openai-files/…`) |
//! |---|---|---|---|
//! | `5xx` | 500 `server_error` or 503 overloaded, OpenAI's error shape, `x-request-id` | 500 `{code:1000\|1001}` envelope, or a gateway's 502 HTML page | 502 / 503 plain text (a CDN) |
//! | `429` | 429 `rate_limit_exceeded` with `retry-after` (1–3 s), `retry-after-ms`, `x-ratelimit-*` | 429 `{code:2000}` with `Retry-After` (1–3 s) | — |
//! | `slow` | answered normally after 0.2–4 s (`slow_ms`) | same | same |
//! | `timeout` | held until the client gives up (at most `hold_ms`, default 310 s, longer than the worker's 300 s OpenAI timeout; then 504) | same | same |
//! | `reset` | the connection is dropped with no answer — half of the time after the request was handled (a Tripo task **was** created, its answer is lost) | same | same |
//! | `slow_body` | — | — | the file streams in 16 KiB pieces with 20–100 ms pauses |
//!
//! The request log marks each faulted request (`"chaos":"<kind>[+after]"`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chaos::{Fault, Kind};
use serde_json::json;

use crate::Shared;

/// What the provider fakes support.
pub(crate) const KINDS: &[Kind] = &[
    Kind::ServerError,
    Kind::RateLimited,
    Kind::Slow,
    Kind::Timeout,
    Kind::Reset,
    Kind::SlowBody,
];

/// Longer than the worker's longest provider timeout (OpenAI, 300 s).
pub(crate) const DEFAULT_HOLD: Duration = Duration::from_secs(310);

/// Attached to a faulted response for the request log.
#[derive(Clone, Debug)]
pub(crate) struct ChaosMark(pub String);

#[derive(Clone, Copy, PartialEq)]
enum Route {
    OpenAi,
    Tripo,
    File,
}

fn route_of(path: &str) -> Option<Route> {
    if path == "/v1" || path.starts_with("/v1/") {
        Some(Route::OpenAi)
    } else if path.starts_with("/v2/openapi") || path.starts_with("/v3/") {
        Some(Route::Tripo)
    } else if path.starts_with("/__fake/files/") || path.starts_with("/__fake/openai-files/") {
        Some(Route::File)
    } else {
        None
    }
}

/// Middleware (inside the log's edge): decides and applies a fault for provider routes.
pub(crate) async fn layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let Some(route) = route_of(req.uri().path()) else {
        return next.run(req).await;
    };
    let fits = |k: Kind| match k {
        Kind::SlowBody => route == Route::File,
        Kind::RateLimited => route != Route::File,
        _ => true,
    };
    let Some(fault) = shared.chaos.decide(req.headers(), fits) else {
        return next.run(req).await;
    };
    let mark = if fault.after {
        format!("{}+after", fault.kind.name())
    } else {
        fault.kind.name().to_string()
    };
    let mut resp = match fault.kind {
        Kind::Slow => {
            tokio::time::sleep(fault.delay).await;
            next.run(req).await
        }
        Kind::SlowBody => {
            let (parts, body) = next.run(req).await.into_parts();
            Response::from_parts(parts, chaos::trickle(body, 16 * 1024, fault.delay))
        }
        Kind::Timeout => {
            let handled = if fault.after {
                Some(next.run(req).await)
            } else {
                drop(req);
                None
            };
            chaos::hold(fault.delay).await;
            let mut resp =
                (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout\n").into_response();
            if let Some(handled) = handled {
                // Keep what the handler recorded (e.g. the Tripo task it created) for the log.
                *resp.extensions_mut() = handled.extensions().clone();
            }
            resp
        }
        Kind::Reset => {
            let (parts, _) = if fault.after {
                next.run(req).await.into_parts()
            } else {
                drop(req);
                StatusCode::BAD_GATEWAY.into_response().into_parts()
            };
            Response::from_parts(parts, chaos::reset_body())
        }
        Kind::ServerError | Kind::Unavailable => server_error(route, &fault),
        Kind::RateLimited => rate_limited(route, &fault),
    };
    resp.extensions_mut().insert(ChaosMark(mark));
    resp
}

fn server_error(route: Route, fault: &Fault) -> Response {
    match (route, fault.variant(2)) {
        (Route::OpenAi, 0) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error", "param": null, "code": null}})),
        )
            .into_response(),
        (Route::OpenAi, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": {
                "message": "The server is overloaded or not ready yet.",
                "type": "server_error", "param": null, "code": null}})),
        )
            .into_response(),
        (Route::Tripo, 0) => {
            let code = 1000 + fault.variant(4) / 2;
            let message = if code == 1000 {
                "Unknown error on sever side"
            } else {
                "Fatal error on server side"
            };
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"code": code, "message": message,
                    "suggestion": "Please try again later"})),
            )
                .into_response()
        }
        (Route::Tripo, _) => {
            let mut r = (
                StatusCode::BAD_GATEWAY,
                "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n",
            )
                .into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        }
        (Route::File, 0) => (StatusCode::BAD_GATEWAY, "Bad Gateway\n").into_response(),
        (Route::File, _) => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response(),
    }
}

fn rate_limited(route: Route, fault: &Fault) -> Response {
    let secs = fault.retry_after_s();
    let mut r = match route {
        Route::OpenAi => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"error": {
                    "message": format!("Rate limit reached for gpt-image-1 on images per minute (IPM): Limit 5, Used 5, Requested 1. Please try again in {secs}s."),
                    "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
            )
                .into_response();
            let h = r.headers_mut();
            h.insert("retry-after-ms", HeaderValue::from(secs * 1000));
            h.insert(
                "x-ratelimit-remaining-requests",
                HeaderValue::from_static("0"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{secs}s")) {
                h.insert("x-ratelimit-reset-requests", v);
            }
            r
        }
        _ => (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"code": 2000,
                "message": "You have exceeded the limit of generation",
                "suggestion": "Try again later. You can also check `Retry-After` header."})),
        )
            .into_response(),
    };
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// `GET|POST|DELETE /__fake/chaos`.
pub(crate) async fn control(
    State(shared): State<Arc<Shared>>,
    method: axum::http::Method,
    body: bytes::Bytes,
) -> Response {
    let (status, value) = shared.chaos.control(&method, &body);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(value),
    )
        .into_response()
}
