//! Chaos mode and outages of the gateway (test control, never part of Supabase).
//!
//! * `POST|GET|DELETE /__fake/storage/chaos` and `/__fake/rest/chaos`: a seeded fraction of the
//!   `/storage/v1` or `/rest/v1` requests is faulted (see the `chaos` crate for the spec):
//!
//! | kind | Storage (`/storage/v1`) | PostgREST (`/rest/v1`) |
//! |---|---|---|
//! | `5xx` | 500 Storage `InternalError` body, or Kong's 502 / 503 JSON | Kong's 502 JSON, or PostgREST's 504 `PGRST003` (pool timeout) |
//! | `503` | — | PostgREST's 503 `PGRST001` ("Database client error. Retrying the connection.") |
//! | `429` | the Storage way: HTTP 400 `{"statusCode":"429",…,"code":"SlowDown"}`, or the gateway's own 429 with `Retry-After` | — |
//! | `slow` | answered normally after 0.2–4 s | same |
//! | `timeout` | held until the client gives up (at most `hold_ms`, default 35 s, over the worker's 30 s Storage timeout), then 504 | same (default 20 s, over its 15 s) |
//! | `reset` | the connection is dropped; half of the time after Storage did the work (an upload stored, its answer lost) | same: the write reaches PostgREST, its answer is lost |
//! | `slow_body` | downloads (`GET /object/…`) trickle in 16 KiB pieces | — |
//!
//! * `POST /__fake/outage {"service":"storage"|"rest","seconds":60,"mode":"502"|"reset"}`: the
//!   service is down for that long, as Kong sees a dead upstream (502 `{"message":"An invalid
//!   response was received from the upstream server"}`) or as a dropped connection;
//!   `DELETE /__fake/outage?service=…` ends it early, `GET /__fake/outage` lists what is down.
//!   Storage keeps its objects; the gateway keeps its port.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use chaos::{Chaos, Fault, Kind};
use serde_json::{json, Value};

use crate::gateway::AppState;
use crate::util::{json_response, query_param};

pub(crate) const STORAGE_KINDS: &[Kind] = &[
    Kind::ServerError,
    Kind::RateLimited,
    Kind::Slow,
    Kind::Timeout,
    Kind::Reset,
    Kind::SlowBody,
];
pub(crate) const REST_KINDS: &[Kind] = &[
    Kind::ServerError,
    Kind::Unavailable,
    Kind::Slow,
    Kind::Timeout,
    Kind::Reset,
];

pub(crate) fn storage_chaos() -> Chaos {
    Chaos::new(STORAGE_KINDS, Duration::from_secs(35))
}

pub(crate) fn rest_chaos() -> Chaos {
    Chaos::new(REST_KINDS, Duration::from_secs(20))
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Service {
    Storage,
    Rest,
}

impl Service {
    fn parse(s: &str) -> Option<Service> {
        match s {
            "storage" => Some(Service::Storage),
            "rest" | "postgrest" => Some(Service::Rest),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Service::Storage => "storage",
            Service::Rest => "rest",
        }
    }
}

/// Services that are down, until when, and how they fail.
#[derive(Default)]
pub(crate) struct Outages {
    down: Mutex<HashMap<Service, (Instant, bool)>>,
}

impl Outages {
    /// `Some(answer)` while `service` is down.
    pub(crate) fn check(&self, service: Service) -> Option<Response<Body>> {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let (until, reset) = *down.get(&service)?;
        if Instant::now() >= until {
            down.remove(&service);
            return None;
        }
        Some(if reset {
            let mut r = Response::new(chaos::reset_body());
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        } else {
            kong_502()
        })
    }

    pub(crate) fn start(&self, service: Service, seconds: f64, reset: bool) {
        let until = Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
        self.down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service, (until, reset));
    }

    pub(crate) fn end(&self, service: Option<Service>) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match service {
            Some(s) => {
                down.remove(&s);
            }
            None => down.clear(),
        }
    }

    fn list(&self) -> Value {
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        Value::Array(
            down.iter()
                .filter(|(_, (until, _))| *until > now)
                .map(|(s, (until, reset))| {
                    json!({"service": s.name(), "remaining_s": (*until - now).as_secs_f64(),
                           "mode": if *reset { "reset" } else { "502" }})
                })
                .collect(),
        )
    }
}

/// Kong's answer when the upstream cannot be reached.
fn kong_502() -> Response<Body> {
    json_response(
        StatusCode::BAD_GATEWAY,
        &json!({"message": "An invalid response was received from the upstream server"}),
    )
}

fn is_download(req: &Request<Body>) -> bool {
    let p = req.uri().path();
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && p.starts_with("/storage/v1/object/")
        && !p.starts_with("/storage/v1/object/info/")
}

/// `/storage/v1/*` with outages and chaos applied around Storage.
pub(crate) async fn storage(state: &AppState, req: Request<Body>) -> Response<Body> {
    if let Some(r) = state.outages.check(Service::Storage) {
        crate::storage::drain(req.into_body()).await;
        return r;
    }
    let download = is_download(&req);
    let fits = |k: Kind| k != Kind::SlowBody || download;
    let Some(fault) = state.storage_chaos.decide(req.headers(), fits) else {
        return state.storage.handle(&state.control, req).await;
    };
    match fault.kind {
        Kind::ServerError | Kind::Unavailable => {
            crate::storage::drain(req.into_body()).await;
            match fault.variant(3) {
                0 => json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"statusCode": "500", "code": "InternalError", "error": "internal",
                            "message": "Internal Server Error"}),
                ),
                1 => kong_502(),
                _ => json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"message": "failure to get a peer from the ring-balancer"}),
                ),
            }
        }
        Kind::RateLimited => {
            crate::storage::drain(req.into_body()).await;
            if fault.variant(2) == 0 {
                json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"statusCode": "429", "error": "too_many_requests",
                            "message": "Too many requests, please slow down", "code": "SlowDown"}),
                )
            } else {
                let mut r = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({"message": "API rate limit exceeded"}),
                );
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(fault.retry_after_s()),
                );
                r
            }
        }
        _ => common(fault, req, |req| state.storage.handle(&state.control, req)).await,
    }
}

/// `/rest/v1/*` with outages and chaos applied around the proxy (key-auth first, as Kong does).
pub(crate) async fn rest(state: &AppState, req: Request<Body>) -> Response<Body> {
    if let Some(r) = state.outages.check(Service::Rest) {
        crate::storage::drain(req.into_body()).await;
        return r;
    }
    let Some(fault) = state.rest_chaos.decide(req.headers(), |_| true) else {
        return state.proxy.handle(&state.rest_control, req).await;
    };
    match fault.kind {
        Kind::ServerError => {
            crate::storage::drain(req.into_body()).await;
            if fault.variant(2) == 0 {
                kong_502()
            } else {
                json_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    &json!({"code": "PGRST003", "details": null, "hint": null,
                            "message": "Timed out acquiring connection from connection pool."}),
                )
            }
        }
        Kind::Unavailable => {
            crate::storage::drain(req.into_body()).await;
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"code": "PGRST001", "details": null, "hint": null,
                        "message": "Database client error. Retrying the connection."}),
            )
        }
        _ => {
            common(fault, req, |req| {
                state.proxy.handle(&state.rest_control, req)
            })
            .await
        }
    }
}

/// `slow`, `timeout`, `reset` and `slow_body`, the same for both services.
async fn common<'a, F, Fut>(fault: Fault, req: Request<Body>, handle: F) -> Response<Body>
where
    F: FnOnce(Request<Body>) -> Fut,
    Fut: std::future::Future<Output = Response<Body>> + 'a,
{
    match fault.kind {
        Kind::Slow => {
            tokio::time::sleep(fault.delay).await;
            handle(req).await
        }
        Kind::SlowBody => {
            let (parts, body) = handle(req).await.into_parts();
            Response::from_parts(parts, chaos::trickle(body, 16 * 1024, fault.delay))
        }
        Kind::Timeout => {
            if fault.after {
                let _ = handle(req).await;
            } else {
                crate::storage::drain(req.into_body()).await;
            }
            chaos::hold(fault.delay).await;
            json_response(
                StatusCode::GATEWAY_TIMEOUT,
                &json!({"message": "The upstream server is timing out"}),
            )
        }
        _ => {
            let status = if fault.after {
                handle(req).await.status()
            } else {
                crate::storage::drain(req.into_body()).await;
                StatusCode::BAD_GATEWAY
            };
            let mut r = Response::new(chaos::reset_body());
            *r.status_mut() = status;
            r
        }
    }
}

/// `/__fake/storage/chaos`, `/__fake/rest/chaos` and `/__fake/outage`.
pub(crate) async fn control(state: &AppState, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let reply = |(status, v): (u16, Value)| {
        json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &v,
        )
    };
    match path.as_str() {
        "/__fake/storage/chaos" => reply(state.storage_chaos.control(&method, &body)),
        "/__fake/rest/chaos" => reply(state.rest_chaos.control(&method, &body)),
        "/__fake/outage" => match method {
            Method::POST => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let service = v["service"].as_str().and_then(Service::parse);
                let seconds = v["seconds"].as_f64();
                let mode = v["mode"].as_str().unwrap_or("502");
                match (service, seconds) {
                    (Some(s), Some(secs)) if secs >= 0.0 && (mode == "502" || mode == "reset") => {
                        state.outages.start(s, secs, mode == "reset");
                        reply((200, json!({"down": state.outages.list()})))
                    }
                    _ => reply((
                        400,
                        json!({"message": "body: {\"service\":\"storage\"|\"rest\",\"seconds\":N,\"mode\":\"502\"|\"reset\"}"}),
                    )),
                }
            }
            Method::DELETE => {
                let service =
                    query_param(query.as_deref(), "service").and_then(|s| Service::parse(&s));
                state.outages.end(service);
                reply((200, json!({"down": state.outages.list()})))
            }
            Method::GET => reply((200, json!({"down": state.outages.list()}))),
            _ => reply((405, json!({"message": "use GET, POST or DELETE"}))),
        },
        _ => crate::gateway::no_route(),
    }
}
