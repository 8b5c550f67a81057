//! Fake of the Tripo **v3** API under `/v3` (providers.md §1.14, the official Rust SDK's field
//! names [T9]) and its signed webhooks (§1.10).
//!
//! Routes: `POST /v3/generation/{text,image,multiview}-to-model`, `POST /v3/models/refine`,
//! `GET /v3/tasks/{id}`, `POST /v3/files` (multipart `file` → `data.file_token`, `file_<uuid>`),
//! `GET /v3/account/balance`. Envelopes `{code:0,status:"success",data}` and
//! `{code,status:"error",message,suggestion,request_id}`; a refused key is HTTP 401 `code: 2`.
//!
//! Strict like the v2 fake: a create body is checked for v3's own names first (no `type`, no
//! `model_version`, no `file`/`files`; `model` required and one of the v3 versions; `input` a
//! string (file token or URL) or a file descriptor; multiview `inputs` exactly 4 slots), then
//! translated to the v2 shape and put through the same per-type validation (`validate.rs`), so
//! every other field rule is the v2 fake's.
//!
//! Task detail: `task_id, type, status, progress, input, output{model_url, rendered_image_url},
//! error_code, error_msg` — no `queuing_num`, `running_left_time`, `result`, `thumbnail`
//! (T10); `banned` is reported as `failed` + 2008 and `expired` as `failed` + 2018 (T10).
//!
//! # Webhooks
//!
//! `PUT /__fake/tripo/webhook {"key":"tsk_…","url":"http://…","secret":"whsec_…"}` registers an
//! endpoint for one API key (Tripo's console does this per account; [`crate::Fakes::set_tripo_webhook`]
//! in process). When a v3 task of that key ends (`success` → `task.completed`; `failed`,
//! `banned`, `expired`, `cancelled` → `task.failed`; `unknown` sends nothing), the fake POSTs
//! `{"id":"<task>:<event>","type","created_at","data":{…task…}}` with `Tripo-Webhook-Id`,
//! `Tripo-Webhook-Delivery`, `Tripo-Webhook-Event` and `Tripo-Webhook-Signature: t=<unix>,v1=<hex
//! HMAC-SHA256(secret incl. prefix, "<t>.<body>")>`. A 5xx or no answer is retried twice (1 s,
//! 2 s) under the same delivery id. Faults (the task's directive):
//!
//! | key | effect |
//! |---|---|
//! | `webhook_drop` | nothing is sent |
//! | `webhook_dup=N` | N more copies under the same delivery id, then one redelivery under a new id |
//! | `webhook_reorder` | two deliveries (ids `…-a` signed first, `…-b` later) sent b first, then a |
//! | `webhook_bad_sig` | signed with another secret |
//! | `webhook_delay_ms=N` | sent N ms after the task ended (late: a safety poll may come first) |
//!
//! Every attempt is recorded: `GET /__fake/tripo/webhooks?task=<id>` (or
//! [`crate::Fakes::tripo_webhook_deliveries`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::validate::TaskType;
use super::{auth, TripoError};
use crate::directives::Directive;
use crate::log::LogInfo;
use crate::util::unix_now;
use crate::Shared;

/// Versions v3 accepts (§1.14).
const V3_VERSIONS: &[&str] = &[
    "v3.1-20260211",
    "v3.0-20250812",
    "v2.5-20250123",
    "P1-20260311",
];

/// Registered endpoints (by API key) and every delivery attempt.
#[derive(Default)]
pub(crate) struct Webhooks {
    endpoints: Mutex<HashMap<String, (String, String)>>,
    deliveries: Mutex<Vec<Value>>,
}

impl Webhooks {
    pub fn register(&self, key: &str, url: &str, secret: &str) {
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), (url.to_string(), secret.to_string()));
    }

    fn endpoint(&self, key: &str) -> Option<(String, String)> {
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn record(&self, entry: Value) {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }

    /// Delivery attempts, optionally only those of one Tripo task.
    pub fn deliveries(&self, task: Option<&str>) -> Vec<Value> {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|d| task.is_none_or(|t| d["tripo_task_id"] == t))
            .cloned()
            .collect()
    }
}

fn invalid(detail: impl AsRef<str>) -> TripoError {
    TripoError::new(1004, detail)
}

/// A v3 image reference (`"file_…"`, `"https://…"`, or a file descriptor) as a v2 file object.
fn file_object(field: &str, v: &Value) -> Result<Value, TripoError> {
    match v {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            Ok(json!({"type": "png", "url": s}))
        }
        Value::String(s) if !s.is_empty() => Ok(json!({"type": "png", "file_token": s})),
        Value::Object(_) => Ok(v.clone()),
        other => Err(invalid(format!(
            "'{field}' must be a file token, a URL or a file descriptor, got {other}"
        ))),
    }
}

/// Checks v3's own names and translates a create body to the v2 shape of `ty`.
pub(crate) fn to_v2(ty: TaskType, body: &Value) -> Result<Value, TripoError> {
    let Some(obj) = body.as_object() else {
        return Err(TripoError::new(1003, "the body must be a JSON object"));
    };
    for v2_only in ["type", "model_version", "file", "files"] {
        if obj.contains_key(v2_only) {
            return Err(invalid(format!("unknown parameter '{v2_only}' (v2 name)")));
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), Value::from(ty.as_str()));
    for (k, v) in obj {
        match k.as_str() {
            "model" => {
                let Some(m) = v.as_str() else {
                    return Err(invalid("'model' must be a string"));
                };
                if !V3_VERSIONS.contains(&m) {
                    return Err(TripoError::new(2017, format!("'{m}' is not a v3 model")));
                }
                out.insert("model_version".into(), v.clone());
            }
            "input" if ty == TaskType::ImageToModel => {
                out.insert("file".into(), file_object("input", v)?);
            }
            "inputs" if ty == TaskType::MultiviewToModel => {
                let Some(slots) = v.as_array().filter(|a| a.len() == 4) else {
                    return Err(invalid(
                        "'inputs' must be 4 slots [front, left, back, right]",
                    ));
                };
                let mut files = Vec::new();
                for (i, slot) in slots.iter().enumerate() {
                    let empty = slot.as_object().is_some_and(Map::is_empty);
                    files.push(if empty {
                        json!({})
                    } else {
                        file_object(&format!("inputs[{i}]"), slot)?
                    });
                }
                out.insert("files".into(), Value::Array(files));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if ty != TaskType::RefineModel && !obj.contains_key("model") {
        return Err(invalid("missing required parameter 'model'"));
    }
    if ty == TaskType::ImageToModel && !obj.contains_key("input") {
        return Err(invalid("missing required parameter 'input'"));
    }
    if ty == TaskType::MultiviewToModel && !obj.contains_key("inputs") {
        return Err(invalid("missing required parameter 'inputs'"));
    }
    Ok(Value::Object(out))
}

/// A v2 task view in the v3 shape (see the module doc).
pub(crate) fn v3_view(v2: &Value) -> Value {
    let mut out = Map::new();
    for k in ["task_id", "type", "progress", "input"] {
        if let Some(v) = v2.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let status = v2["status"].as_str().unwrap_or("unknown");
    let (status, forced_code) = match status {
        "banned" => ("failed", Some(2008)),
        "expired" => ("failed", Some(2018)),
        s => (s, None),
    };
    out.insert("status".into(), Value::from(status));
    let o = &v2["output"];
    let mut output = Map::new();
    let model = o["pbr_model"]
        .as_str()
        .or(o["model"].as_str())
        .or(o["base_model"].as_str());
    if let Some(m) = model {
        output.insert("model_url".into(), Value::from(m));
    }
    if let Some(r) = o["rendered_image"].as_str() {
        output.insert("rendered_image_url".into(), Value::from(r));
    }
    out.insert("output".into(), Value::Object(output));
    let code = forced_code.or(v2["error_code"].as_i64());
    if let Some(c) = code {
        out.insert("error_code".into(), Value::from(c));
        out.insert("error_msg".into(), Value::from(super::standard_message(c)));
    }
    Value::Object(out)
}

fn ok(data: Value) -> Response {
    Json(json!({"code": 0, "status": "success", "data": data})).into_response()
}

/// A v2 error in the v3 envelope; a refused key is 401 `code: 2` on v3.
fn error(e: TripoError) -> Response {
    let code = if e.code == 1002 { 2 } else { e.code };
    let body = json!({
        "code": code, "status": "error", "message": e.message, "suggestion": e.suggestion,
        "request_id": uuid::Uuid::new_v4().to_string(),
    });
    let mut resp = (e.status, Json(body)).into_response();
    if let Some(secs) = e.retry_after {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    resp
}

fn finish(result: Result<Value, TripoError>, info: LogInfo) -> Response {
    let mut resp = match result {
        Ok(data) => ok(data),
        Err(e) => error(e),
    };
    resp.extensions_mut().insert(info);
    resp
}

async fn create(shared: Arc<Shared>, headers: HeaderMap, body: Bytes, ty: TaskType) -> Response {
    let mut info = LogInfo::default();
    let result = super::create(&shared, &headers, &body, &mut info, Some(ty)).await;
    let result = result.map(|(key, data)| {
        if let Some(id) = data["task_id"].as_str() {
            schedule(Arc::clone(&shared), key, id.to_string());
        }
        data
    });
    finish(result, info)
}

async fn text(State(s): State<Arc<Shared>>, h: HeaderMap, b: Bytes) -> Response {
    create(s, h, b, TaskType::TextToModel).await
}
async fn image(State(s): State<Arc<Shared>>, h: HeaderMap, b: Bytes) -> Response {
    create(s, h, b, TaskType::ImageToModel).await
}
async fn multiview(State(s): State<Arc<Shared>>, h: HeaderMap, b: Bytes) -> Response {
    create(s, h, b, TaskType::MultiviewToModel).await
}
async fn refine(State(s): State<Arc<Shared>>, h: HeaderMap, b: Bytes) -> Response {
    create(s, h, b, TaskType::RefineModel).await
}

async fn task(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut info = LogInfo {
        tripo_task_id: Some(id.clone()),
        ..LogInfo::default()
    };
    let result = super::poll(&shared, &headers, &id, &mut info)
        .await
        .map(|v| v3_view(&v));
    finish(result, info)
}

async fn files(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    let mut info = LogInfo::default();
    let result = super::upload_inner(&shared, &headers, mp, &mut info, "file_")
        .await
        .map(|token| json!({"file_token": token}));
    finish(result, info)
}

async fn balance(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let result = auth(&shared, &headers).map(|key| {
        let (balance, frozen) = shared.tripo.balance(&key);
        json!({"balance": balance, "frozen": frozen})
    });
    finish(result, LogInfo::default())
}

async fn register(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "body must be JSON {key,url,secret}",
        )
            .into_response();
    };
    match (v["key"].as_str(), v["url"].as_str(), v["secret"].as_str()) {
        (Some(k), Some(u), Some(s)) if s.starts_with("whsec_") && u.starts_with("http://") => {
            shared.tripo_webhooks.register(k, u, s);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "need key, an http:// url and a whsec_ secret",
        )
            .into_response(),
    }
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    Json(
        shared
            .tripo_webhooks
            .deliveries(q.get("task").map(String::as_str)),
    )
    .into_response()
}

/// The v3 routes and the webhook control routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/generation/text-to-model", post(text))
        .route("/v3/generation/image-to-model", post(image))
        .route("/v3/generation/multiview-to-model", post(multiview))
        .route("/v3/models/refine", post(refine))
        .route("/v3/tasks/{id}", get(task))
        .route("/v3/files", post(files))
        .route("/v3/account/balance", get(balance))
        .route("/__fake/tripo/webhook", put(register))
        .route("/__fake/tripo/webhooks", get(list))
}

/// Fallback for unknown `/v3/...` routes.
pub(crate) fn not_found(method: &str, path: &str) -> Response {
    let mut e = TripoError::new(1004, format!("no route {method} {path}"));
    e.status = StatusCode::NOT_FOUND;
    error(e)
}

// --- webhook delivery ----------------------------------------------------------------------

/// `v1` of a body signed at `t` with `secret`.
pub fn sign(secret: &str, t: u64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Waits for the task to end, then delivers its event to the key's endpoint (if any).
fn schedule(shared: Arc<Shared>, key: String, id: String) {
    let Some((url, secret)) = shared.tripo_webhooks.endpoint(&key) else {
        return;
    };
    tokio::spawn(async move {
        let Some((ends_at, directive)) = shared
            .tripo
            .with_task(&id, |t| (t.ends_at(), t.directive.clone()))
        else {
            return;
        };
        tokio::time::sleep_until(ends_at.into()).await;
        // Plan tasks end by polls: wait (bounded) for a final status.
        let give_up = Instant::now() + Duration::from_secs(600);
        let base = format!("http://{}", shared.local_authority());
        let view = loop {
            let now = Instant::now();
            let v = shared.tripo.with_task(&id, |t| t.view(now, &base));
            match v {
                Some(v) if !matches!(v["status"].as_str(), Some("queued" | "running")) => break v,
                Some(_) if now < give_up => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => return,
            }
        };
        deliver(&shared, &url, &secret, &id, &view, directive.as_ref()).await;
    });
}

async fn deliver(
    shared: &Shared,
    url: &str,
    secret: &str,
    id: &str,
    v2_view: &Value,
    d: Option<&Directive>,
) {
    let record = |delivery: &str, event: &str, answer: Value, fault: Option<&str>| {
        shared.tripo_webhooks.record(json!({
            "tripo_task_id": id, "delivery": delivery, "event": event, "answer": answer,
            "fault": fault, "at_ms": unix_now() * 1000,
        }));
    };
    let status = v2_view["status"].as_str().unwrap_or("unknown");
    if status == "unknown" {
        return;
    }
    let event = if status == "success" {
        "task.completed"
    } else {
        "task.failed"
    };
    let mut data = v3_view(v2_view);
    if event == "task.failed" {
        let code = data["error_code"].clone();
        let message = data["error_msg"].as_str().unwrap_or(status).to_string();
        if let Some(m) = data.as_object_mut() {
            m.insert("error".into(), json!({"code": code, "message": message}));
        }
    }
    let body = json!({
        "id": format!("{id}:{event}"), "type": event,
        "created_at": crate::util::iso_now(), "data": data,
    })
    .to_string();
    let delivery = format!("dlv_{}", uuid::Uuid::new_v4().simple());
    if d.is_some_and(|d| d.has("webhook_drop")) {
        record(&delivery, event, Value::Null, Some("dropped"));
        return;
    }
    if let Some(ms) = d.and_then(|d| d.count("webhook_delay_ms")) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let bad = d.is_some_and(|d| d.has("webhook_bad_sig"));
    let key = if bad {
        "whsec_not_the_registered_secret_0000"
    } else {
        secret
    };
    let fault = if bad { Some("bad_sig") } else { None };
    if d.is_some_and(|d| d.has("webhook_reorder")) {
        let (a, b) = (format!("{delivery}-a"), format!("{delivery}-b"));
        let t_a = unix_now();
        let sig_a = sign(key, t_a, &body);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let t_b = unix_now();
        let sig_b = sign(key, t_b, &body);
        let ans = send(url, &b, event, t_b, &sig_b, &body).await;
        record(&b, event, ans, Some("reorder:second-signed-sent-first"));
        let ans = send(url, &a, event, t_a, &sig_a, &body).await;
        record(&a, event, ans, Some("reorder:first-signed-sent-last"));
        return;
    }
    let copies = d.and_then(|d| d.count("webhook_dup")).unwrap_or(0);
    for attempt in 0..3u32 {
        let t = unix_now();
        let ans = send(url, &delivery, event, t, &sign(key, t, &body), &body).await;
        let retry = !matches!(ans.as_u64(), Some(200..=499));
        record(&delivery, event, ans, fault);
        if !retry || attempt == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
    }
    for _ in 0..copies {
        let t = unix_now();
        let ans = send(url, &delivery, event, t, &sign(key, t, &body), &body).await;
        record(&delivery, event, ans, Some("dup:same-delivery"));
    }
    if copies > 0 {
        let again = format!("{delivery}-redelivery");
        let t = unix_now();
        let ans = send(url, &again, event, t, &sign(key, t, &body), &body).await;
        record(&again, event, ans, Some("dup:redelivery"));
    }
}

/// One HTTP/1.1 POST to `url` (`http://host:port/path`): the answer's status, or the error.
async fn send(url: &str, delivery: &str, event: &str, t: u64, v1: &str, body: &str) -> Value {
    match post_inner(url, delivery, event, t, v1, body).await {
        Ok(status) => json!(status),
        Err(e) => json!({ "error": e }),
    }
}

async fn post_inner(
    url: &str,
    delivery: &str,
    event: &str,
    t: u64,
    v1: &str,
    body: &str,
) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "only http:// endpoints".to_string())?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: tripo-fake-webhooks\r\n\
         Tripo-Webhook-Id: wh_fake\r\nTripo-Webhook-Delivery: {delivery}\r\n\
         Tripo-Webhook-Event: {event}\r\nTripo-Webhook-Signature: t={t},v1={v1}\r\n\r\n{body}",
        body.len()
    );
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| {
                format!(
                    "no status line: {}",
                    line.chars().take(80).collect::<String>()
                )
            })
    };
    tokio::time::timeout(Duration::from_secs(30), io)
        .await
        .map_err(|_| "no answer in 30 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_bodies_translate_and_v2_names_are_refused() {
        let b = json!({"prompt": "a cat", "model": "v2.5-20250123", "texture": false});
        let v2 = to_v2(TaskType::TextToModel, &b).unwrap();
        assert_eq!(v2["type"], "text_to_model");
        assert_eq!(v2["model_version"], "v2.5-20250123");
        assert!(to_v2(TaskType::TextToModel, &json!({"prompt": "a"})).is_err());
        for bad in [
            json!({"prompt": "a", "model": "v2.5-20250123", "type": "text_to_model"}),
            json!({"prompt": "a", "model_version": "v2.5-20250123"}),
            json!({"prompt": "a", "model": "Turbo-v1.0-20250506"}),
        ] {
            assert!(to_v2(TaskType::TextToModel, &bad).is_err(), "{bad}");
        }
        let img = to_v2(
            TaskType::ImageToModel,
            &json!({"input": "file_1", "model": "v3.0-20250812"}),
        )
        .unwrap();
        assert_eq!(img["file"]["file_token"], "file_1");
        let mv = to_v2(
            TaskType::MultiviewToModel,
            &json!({"inputs": [{"type":"png","file_token":"file_1"}, "file_2", {}, {}],
                    "model": "v2.5-20250123"}),
        )
        .unwrap();
        assert_eq!(mv["files"][1]["file_token"], "file_2");
        assert_eq!(mv["files"][2], json!({}));
        assert!(to_v2(
            TaskType::MultiviewToModel,
            &json!({"inputs": ["file_1"], "model": "v2.5-20250123"})
        )
        .is_err());
    }

    #[test]
    fn the_v3_view_merges_the_model_url_and_maps_banned() {
        let v = v3_view(
            &json!({"task_id": "t", "type": "text_to_model", "status": "success",
            "progress": 100, "output": {"pbr_model": "http://x/p.glb", "rendered_image": "http://x/r.webp"},
            "queuing_num": -1, "running_left_time": -1, "result": {}}),
        );
        assert_eq!(v["output"]["model_url"], "http://x/p.glb");
        assert_eq!(v["output"]["rendered_image_url"], "http://x/r.webp");
        assert!(v.get("queuing_num").is_none() && v.get("result").is_none());
        let b = v3_view(&json!({"task_id": "t", "status": "banned", "output": {}}));
        assert_eq!(b["status"], "failed");
        assert_eq!(b["error_code"], 2008);
    }

    #[test]
    fn signatures_are_lowercase_hex_hmac_of_t_dot_body() {
        let s = sign("whsec_abc", 1_700_000_000, "{}");
        assert_eq!(s.len(), 64);
        assert!(s
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(s, sign("whsec_abd", 1_700_000_000, "{}"));
        assert_ne!(s, sign("whsec_abc", 1_700_000_001, "{}"));
    }
}
