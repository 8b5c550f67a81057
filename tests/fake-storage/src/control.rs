//! Test-control endpoints under `/__fake/storage/` (not part of Supabase): per-request fault
//! injection and the request log of the storage service.
//!
//! Faults are matched on method and on the storage path (after `/storage/v1`, raw or
//! percent-decoded), so concurrent tests that use different paths do not disturb each other.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::util::{json_response, query_param};

/// One fault rule, as posted to `POST /__fake/storage/faults`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FaultSpec {
    /// HTTP method to match (case-insensitive); absent or `*` matches any.
    #[serde(default)]
    pub method: Option<String>,
    /// Prefix of the storage path (after `/storage/v1`), e.g. `/object/bucket/concepts/t-1/`.
    #[serde(default)]
    pub path_prefix: String,
    /// Status to answer with. 5xx (and anything that is not 4xx) is sent as is; 4xx is sent the
    /// Storage way, as HTTP 400 with the status as a string in the body. Absent: no answer is
    /// injected, only `delay_ms`.
    #[serde(default)]
    pub status: Option<u16>,
    /// How many matching requests the rule applies to (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// Replaces the JSON error body, sent verbatim.
    #[serde(default)]
    pub body: Option<String>,
    /// Delay before answering (or before normal handling when `status` is absent).
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// One storage request as logged by the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    pub method: String,
    /// The storage path after `/storage/v1`, as sent (still percent-encoded), without the query.
    pub path: String,
    /// The HTTP status sent.
    pub status: u16,
    /// The status inside a Storage error body (`404` for a `NoSuchKey` sent as HTTP 400); equal
    /// to `status` for successes and injected faults.
    pub storage_status: u16,
    /// The Storage error `code`, if the answer was an error body.
    pub code: Option<String>,
    /// Object bytes moved: stored for an upload, sent for a download, 0 otherwise.
    pub bytes: u64,
    /// Arrival time, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What the storage entry point must do for a request that matched a fault.
pub(crate) struct FaultHit {
    pub delay: Option<Duration>,
    pub response: Option<(StatusCode, Response<Body>)>,
}

struct ActiveFault {
    spec: FaultSpec,
    remaining: u32,
}

/// Fault rules and the request log of one gateway.
#[derive(Default)]
pub(crate) struct Control {
    faults: Mutex<Vec<ActiveFault>>,
    log: Mutex<Vec<LogEntry>>,
}

pub(crate) fn path_matches(prefix: &str, raw: &str, decoded: &str) -> bool {
    raw.starts_with(prefix) || decoded.starts_with(prefix)
}

impl Control {
    /// Takes one use of the first fault rule matching this request, if any.
    pub(crate) fn take_fault(&self, method: &Method, raw: &str, decoded: &str) -> Option<FaultHit> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let idx = faults.iter().position(|f| {
            let method_ok = match f.spec.method.as_deref() {
                None | Some("*") | Some("") => true,
                Some(m) => m.eq_ignore_ascii_case(method.as_str()),
            };
            f.remaining > 0 && method_ok && path_matches(&f.spec.path_prefix, raw, decoded)
        })?;
        let spec = faults[idx].spec.clone();
        faults[idx].remaining -= 1;
        if faults[idx].remaining == 0 {
            faults.remove(idx);
        }
        drop(faults);
        Some(FaultHit {
            delay: spec.delay_ms.map(Duration::from_millis),
            response: spec.status.map(|s| fault_response(s, spec.body.as_deref())),
        })
    }

    pub(crate) fn record(&self, entry: LogEntry) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }

    fn add_fault(&self, spec: FaultSpec) -> usize {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let remaining = spec.times.max(1);
        faults.push(ActiveFault { spec, remaining });
        faults.len()
    }

    fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn log_matching(&self, prefix: &str, method: Option<&str>) -> Vec<LogEntry> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .filter(|e| {
                let decoded = percent_encoding::percent_decode_str(&e.path).decode_utf8_lossy();
                path_matches(prefix, &e.path, &decoded)
                    && method.is_none_or(|m| m.eq_ignore_ascii_case(&e.method))
            })
            .cloned()
            .collect()
    }
}

/// The answer for an injected status: the HTTP status actually sent and the response.
fn fault_response(status: u16, body: Option<&str>) -> (StatusCode, Response<Body>) {
    let real = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let sent = if real.is_client_error() {
        StatusCode::BAD_REQUEST
    } else {
        real
    };
    let mut resp = match body {
        Some(b) => {
            let mut r = Response::new(Body::from(b.to_string()));
            let ct = if serde_json::from_str::<Value>(b).is_ok() {
                "application/json; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static(ct),
            );
            r
        }
        None => json_response(
            sent,
            &json!({
                "statusCode": real.as_u16().to_string(),
                "error": real.canonical_reason().unwrap_or("Injected"),
                "message": "injected fault",
            }),
        ),
    };
    *resp.status_mut() = sent;
    (real, resp)
}

/// Serves `/__fake/storage/*`. `path` is the full request path.
pub(crate) async fn handle(control: &Control, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/__fake/storage/faults") => {
            let bytes = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
                Ok(b) => b,
                Err(e) => return bad_request(&format!("cannot read body: {e}")),
            };
            match serde_json::from_slice::<FaultSpec>(&bytes) {
                Ok(spec) => {
                    let active = control.add_fault(spec);
                    json_response(StatusCode::OK, &json!({"ok": true, "active": active}))
                }
                Err(e) => bad_request(&format!("invalid fault: {e}")),
            }
        }
        (Method::DELETE, "/__fake/storage/faults") => {
            control.clear_faults();
            json_response(StatusCode::OK, &json!({"ok": true}))
        }
        (Method::GET, "/__fake/storage/log") => {
            let prefix = query_param(query.as_deref(), "path_prefix").unwrap_or_default();
            let method = query_param(query.as_deref(), "method");
            let entries = control.log_matching(&prefix, method.as_deref());
            json_response(
                StatusCode::OK,
                &serde_json::to_value(entries).unwrap_or(Value::Null),
            )
        }
        _ => crate::gateway::no_route(),
    }
}

fn bad_request(message: &str) -> Response<Body> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "message": message }))
}
