//! The request log and the edge middleware that feeds it.
//!
//! Every request to `/v1/...` (provider `openai`), `/v2/openapi/...`, `/v3/...` and `/__fake/files/...`
//! (provider `tripo`) is recorded once its response head is ready: method, path, status,
//! arrival time, and whatever the handler attached as [`LogInfo`] (the parsed body, the Tripo
//! task id, the effective directive, the task's prompt). The middleware also stamps the
//! provider's id header on every response (`x-request-id` for OpenAI, `X-Tripo-Trace-ID` for
//! Tripo), so even router-level errors carry it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;

use crate::util::unix_ms;
use crate::Shared;

/// What a handler attaches to its response (as an extension) for the log.
#[derive(Clone, Default, Debug)]
pub(crate) struct LogInfo {
    pub body: Option<Value>,
    pub tripo_task_id: Option<String>,
    pub directive: Option<String>,
    pub prompt: Option<String>,
    pub inputs: Option<Value>,
}

/// One recorded request, as served by `GET /__fake/log`.
#[derive(Clone, Debug, Serialize)]
pub struct LogEntry {
    /// 1-based arrival order.
    pub seq: u64,
    /// `openai` or `tripo`.
    pub provider: &'static str,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub status: u16,
    /// Arrival time, Unix milliseconds.
    pub at_ms: u64,
    /// Time to the response head.
    pub duration_ms: u64,
    /// Parsed JSON body, or the multipart summary; `null` when there is none.
    pub body: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tripo_task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directive: Option<String>,
    /// The prompt of the request, or of the task a poll / download belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Tripo uploads (and image tasks, their polls and downloads): the uploaded files,
    /// `{image_token, filename, content_type, size, sha256, texts}`, `texts` being the PNG
    /// text chunks, so a nonce put in an image makes all of its requests findable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Value>,
    /// `x-request-id` (OpenAI) or `X-Tripo-Trace-ID` (Tripo) of the response.
    pub request_id: String,
    /// The chaos fault applied (`5xx`, `429`, `slow`, `timeout`, `reset`, `slow_body`; `+after`
    /// when it struck after the request was handled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chaos: Option<String>,
}

/// All recorded requests, in arrival order.
#[derive(Default)]
pub(crate) struct RequestLog {
    entries: Mutex<(u64, Vec<LogEntry>)>,
}

impl RequestLog {
    fn push(&self, mut entry: LogEntry) {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        entry.seq = g.0;
        g.1.push(entry);
    }

    /// Entries whose JSON serialisation contains `contains` (all when `None`), in order.
    pub fn query(&self, contains: Option<&str>) -> Vec<Value> {
        let g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.1.iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .filter(|v| match contains {
                None | Some("") => true,
                Some(needle) => v.to_string().contains(needle) || raw_contains(v, needle),
            })
            .collect()
    }
}

/// Whether any string inside `v` contains `needle` unescaped (the serialised form escapes
/// quotes and non-ASCII, so a needle like `"x"` or `é` would otherwise never match).
fn raw_contains(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s.contains(needle),
        Value::Array(items) => items.iter().any(|i| raw_contains(i, needle)),
        Value::Object(map) => map
            .iter()
            .any(|(k, i)| k.contains(needle) || raw_contains(i, needle)),
        _ => false,
    }
}

fn provider_of(path: &str) -> Option<&'static str> {
    if path == "/v1" || path.starts_with("/v1/") {
        Some("openai")
    } else if path.starts_with("/v2/openapi")
        || path == "/v3"
        || path.starts_with("/v3/")
        || path.starts_with("/__fake/files/")
    {
        Some("tripo")
    } else {
        None
    }
}

/// Edge middleware: stamps provider id headers and records the request.
pub(crate) async fn edge(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let Some(provider) = provider_of(&path) else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let at_ms = unix_ms();
    let method = req.method().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or(path.clone());
    let mut resp = next.run(req).await;
    let api = !path.starts_with("/__fake/");
    let request_id = if provider == "openai" {
        crate::openai::stamp_headers(&mut resp, started)
    } else if api {
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-tripo-trace-id", v);
        }
        id
    } else {
        resp.headers()
            .get("x-amz-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let info = resp
        .extensions()
        .get::<LogInfo>()
        .cloned()
        .unwrap_or_default();
    shared.log.push(LogEntry {
        seq: 0,
        provider,
        method,
        path: path_and_query,
        status: resp.status().as_u16(),
        at_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        body: info.body.unwrap_or(Value::Null),
        tripo_task_id: info.tripo_task_id,
        directive: info.directive,
        prompt: info.prompt,
        inputs: info.inputs,
        request_id,
        chaos: resp
            .extensions()
            .get::<crate::chaos::ChaosMark>()
            .map(|m| m.0.clone()),
    });
    resp
}
