//! Test-control endpoints under `/__fake/rest/` (not part of Supabase): per-request fault
//! injection and the request log of the `/rest/v1` proxy, like [`crate::control`] for storage.
//!
//! Faults match on method, on the path after `/rest/v1` including the query (raw or
//! percent-decoded, any `apikey` parameter removed), and optionally on a substring of the request
//! body (`match_body`), so concurrent tests can target one task id. Only while a `match_body`
//! rule matches method and path is the request body buffered; otherwise it streams.
//!
//! The log keeps method, path (+ query, without `apikey`), status, arrival time and the first
//! [`EXCERPT_BYTES`] of the request body. Headers are never logged: they carry the keys.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::control::path_matches;
use crate::util::{json_response, query_param};

/// How much of each request body the log keeps.
pub(crate) const EXCERPT_BYTES: usize = 2048;

/// One fault rule, as posted to `POST /__fake/rest/faults`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RestFaultSpec {
    /// HTTP method to match (case-insensitive); absent or `*` matches any.
    #[serde(default)]
    pub method: Option<String>,
    /// Prefix of the path after `/rest/v1`, query included, e.g. `/concept_images` or
    /// `/tasks?id=eq.t-1`.
    #[serde(default)]
    pub path_prefix: String,
    /// Status to answer with, sent as is. Absent: no answer is injected, only `delay_ms`.
    #[serde(default)]
    pub status: Option<u16>,
    /// How many matching requests the rule applies to (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// Replaces the PostgREST-style JSON error body, sent verbatim.
    #[serde(default)]
    pub body: Option<String>,
    /// Delay before answering (or before forwarding when `status` is absent).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Only requests whose body contains this substring match.
    #[serde(default)]
    pub match_body: Option<String>,
}

fn one() -> u32 {
    1
}

/// One `/rest/v1` request as logged by the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RestLogEntry {
    pub method: String,
    /// The path after `/rest/v1` with the query, as sent, without any `apikey` parameter.
    pub path: String,
    /// The HTTP status sent to the client (PostgREST's, an injected one, 401 or 502).
    pub status: u16,
    /// Arrival time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The first 2 KiB of the request body as the upstream (or the gateway) read it, lossy UTF-8.
    /// Empty when the body was not read (key-auth failures).
    pub body_excerpt: String,
}

/// The first [`EXCERPT_BYTES`] of a request body, filled while it streams.
#[derive(Clone, Default)]
pub(crate) struct Excerpt(Arc<Mutex<Vec<u8>>>);

impl Excerpt {
    fn push(&self, data: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = EXCERPT_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&data[..room.min(data.len())]);
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// A request body that copies its first bytes into an [`Excerpt`] as it is read; size hint and
/// end of stream are the inner body's, so framing is unchanged.
pub(crate) struct Tee {
    inner: Body,
    excerpt: Excerpt,
}

impl Tee {
    pub(crate) fn new(inner: Body, excerpt: Excerpt) -> Tee {
        Tee { inner, excerpt }
    }
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.excerpt.push(data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the proxy must do for a request that matched a fault.
pub(crate) struct RestFaultHit {
    pub delay: Option<Duration>,
    pub response: Option<Response<Body>>,
}

struct ActiveFault {
    spec: RestFaultSpec,
    remaining: u32,
}

struct Logged {
    method: String,
    path: String,
    status: u16,
    at_ms: u64,
    excerpt: Excerpt,
}

/// Fault rules and the request log of the `/rest/v1` proxy of one gateway.
#[derive(Default)]
pub(crate) struct RestControl {
    faults: Mutex<Vec<ActiveFault>>,
    log: Mutex<Vec<Logged>>,
}

fn method_matches(spec: &RestFaultSpec, method: &Method) -> bool {
    match spec.method.as_deref() {
        None | Some("*") | Some("") => true,
        Some(m) => m.eq_ignore_ascii_case(method.as_str()),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

impl RestControl {
    /// Whether a `match_body` rule matches this method and path, so the body must be read before
    /// [`RestControl::take_fault`].
    pub(crate) fn needs_body(&self, method: &Method, raw: &str, decoded: &str) -> bool {
        let faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        faults.iter().any(|f| {
            f.remaining > 0
                && f.spec.match_body.is_some()
                && method_matches(&f.spec, method)
                && path_matches(&f.spec.path_prefix, raw, decoded)
        })
    }

    /// Takes one use of the first rule matching this request, if any. `body` is the whole request
    /// body when it was buffered; without it, `match_body` rules do not match.
    pub(crate) fn take_fault(
        &self,
        method: &Method,
        raw: &str,
        decoded: &str,
        body: Option<&[u8]>,
    ) -> Option<RestFaultHit> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let idx = faults.iter().position(|f| {
            let body_ok = match (f.spec.match_body.as_deref(), body) {
                (None, _) => true,
                (Some(needle), Some(body)) => contains(body, needle.as_bytes()),
                (Some(_), None) => false,
            };
            f.remaining > 0
                && method_matches(&f.spec, method)
                && path_matches(&f.spec.path_prefix, raw, decoded)
                && body_ok
        })?;
        let spec = faults[idx].spec.clone();
        faults[idx].remaining -= 1;
        if faults[idx].remaining == 0 {
            faults.remove(idx);
        }
        drop(faults);
        Some(RestFaultHit {
            delay: spec.delay_ms.map(Duration::from_millis),
            response: spec.status.map(|s| fault_response(s, spec.body.as_deref())),
        })
    }

    pub(crate) fn record(
        &self,
        method: &Method,
        path: String,
        status: u16,
        at_ms: u64,
        excerpt: Excerpt,
    ) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Logged {
                method: method.to_string(),
                path,
                status,
                at_ms,
                excerpt,
            });
    }

    fn add_fault(&self, spec: RestFaultSpec) -> usize {
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

    fn log_matching(
        &self,
        prefix: &str,
        needle: Option<&str>,
        method: Option<&str>,
    ) -> Vec<RestLogEntry> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .filter(|e| {
                let decoded = percent_encoding::percent_decode_str(&e.path).decode_utf8_lossy();
                path_matches(prefix, &e.path, &decoded)
                    && method.is_none_or(|m| m.eq_ignore_ascii_case(&e.method))
            })
            .map(|e| RestLogEntry {
                method: e.method.clone(),
                path: e.path.clone(),
                status: e.status,
                at_ms: e.at_ms,
                body_excerpt: e.excerpt.text(),
            })
            .filter(|e| needle.is_none_or(|n| e.body_excerpt.contains(n)))
            .collect()
    }
}

/// The answer for an injected status: PostgREST's error shape unless `body` replaces it.
fn fault_response(status: u16, body: Option<&str>) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = match body {
        Some(b) => {
            let mut r = Response::new(Body::from(b.to_string()));
            let ct = if serde_json::from_str::<Value>(b).is_ok() {
                "application/json; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            r
        }
        None => json_response(
            status,
            &json!({
                "code": "PGRST000",
                "details": null,
                "hint": null,
                "message": "injected fault",
            }),
        ),
    };
    *resp.status_mut() = status;
    resp
}

/// Serves `/__fake/rest/*`.
pub(crate) async fn handle(control: &RestControl, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/__fake/rest/faults") => {
            let bytes = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
                Ok(b) => b,
                Err(e) => return bad_request(&format!("cannot read body: {e}")),
            };
            match serde_json::from_slice::<RestFaultSpec>(&bytes) {
                Ok(spec) => {
                    let active = control.add_fault(spec);
                    json_response(StatusCode::OK, &json!({"ok": true, "active": active}))
                }
                Err(e) => bad_request(&format!("invalid fault: {e}")),
            }
        }
        (Method::DELETE, "/__fake/rest/faults") => {
            control.clear_faults();
            json_response(StatusCode::OK, &json!({"ok": true}))
        }
        (Method::GET, "/__fake/rest/log") => {
            let prefix = query_param(query.as_deref(), "path_prefix").unwrap_or_default();
            let needle = query_param(query.as_deref(), "contains");
            let method = query_param(query.as_deref(), "method");
            let entries = control.log_matching(&prefix, needle.as_deref(), method.as_deref());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_the_first_2_kib() {
        let e = Excerpt::default();
        e.push(&[b'a'; 2000]);
        e.push(&[b'b'; 100]);
        e.push(b"c");
        let text = e.text();
        assert_eq!(text.len(), EXCERPT_BYTES);
        assert!(text.ends_with(&"b".repeat(48)));
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"{\"task_id\":\"t-1\"}", b"t-1"));
        assert!(!contains(b"{\"task_id\":\"t-1\"}", b"t-2"));
        assert!(contains(b"", b""));
        assert!(!contains(b"ab", b"abc"));
    }
}
