//! Tripo 3D API, v2 or v3 (`TRIPO_API_VERSION`): v2 `POST {TRIPO_BASE_URL}/upload/sts`
//! (multipart), `POST /task`, `GET /task/{id}`; v3 `POST {TRIPO_V3_BASE_URL}/files`,
//! `POST /generation/…` (one endpoint per capability), `GET /tasks/{id}`. Paths, payloads,
//! parsing and error classification live in `core::tripo` and `core::tripo_v3` (picked by
//! `core::tripo_v3::ApiVersion`); this module sends the requests, logs each one (with Tripo's
//! `X-Tripo-Trace-ID`) in the line of what it led to when a queue delivery carries it, else as
//! its own `tripo.call` line, and hands back parsed answers or classified failures.

use std::cell::RefCell;

use serde_json::json;
use worker::Method;

use crate::core::config::Config;
use crate::core::error::Dependency;
use crate::core::ids::TaskId;
use crate::core::log::Carry;
use crate::core::retry::{parse_retry_after, Failure};
use crate::core::step::Step;
use crate::core::tripo::{
    boundary, multipart_content_type, upload_multipart, CreateTask, ImageFormat, TaskDetail,
};
use crate::log::{self, Level};
use crate::net::{self, Body, NetError, Reply};

/// Timeout of an upload (inputs are ≤ 20 MB).
pub const UPLOAD_TIMEOUT_MS: u64 = 120_000;
/// Timeout of a task creation or a task query.
pub const API_TIMEOUT_MS: u64 = 30_000;

/// Where a call belongs, for its log line.
#[derive(Clone, Copy)]
pub struct CallCtx<'a> {
    pub task_id: &'a TaskId,
    pub step: Step,
    /// A queue delivery's carried log context: the call goes in the line of the event it leads
    /// to (`core::log::Carry`); `None`, or another step's delivery: its own `tripo.call` line.
    pub carry: Option<&'a RefCell<Carry>>,
}

/// The call's record: carried by the delivery, else one `tripo.call` line.
fn log_call(cx: CallCtx<'_>, level: Level, fields: serde_json::Value) {
    let own_line = match cx.carry {
        Some(c) => c
            .borrow_mut()
            .call(cx.task_id.as_str(), cx.step, level, fields),
        None => Some(fields),
    };
    if let Some(fields) = own_line {
        log::emit(
            level,
            "tripo.call",
            Some(cx.task_id.as_str()),
            Some(cx.step),
            fields,
        );
    }
}

fn net_failure(e: NetError) -> Failure {
    match e {
        NetError::Timeout(ms) => {
            Failure::network(Dependency::Tripo, &format!("no answer in {ms} ms"))
        }
        other => Failure::network(Dependency::Tripo, &other.to_string()),
    }
}

/// Sends one request to the Tripo API and logs it; a non-2xx answer is a classified failure.
async fn call(
    cx: CallCtx<'_>,
    cfg: &Config,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Body,
    timeout_ms: u64,
) -> Result<Reply, Failure> {
    let url = format!("{}{}", cfg.tripo_base(), path);
    let auth = format!("Bearer {}", cfg.tripo_api_key);
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    let method_name = method.to_string();
    let started = net::now_ms();
    let result = net::send(method, &url, &headers, body, timeout_ms).await;
    let elapsed_ms = net::now_ms().saturating_sub(started);
    let reply = match result {
        Ok(r) => r,
        Err(e) => {
            log_call(
                cx,
                Level::Warn,
                json!({ "service": "tripo", "method": method_name, "path": path, "error": e.to_string(), "ms": elapsed_ms }),
            );
            return Err(net_failure(e));
        }
    };
    let trace = reply.header("x-tripo-trace-id");
    let level = if reply.is_success() {
        Level::Info
    } else {
        Level::Warn
    };
    log_call(
        cx,
        level,
        json!({ "service": "tripo", "api": cfg.tripo_api, "method": method_name, "path": path, "status": reply.status, "trace_id": trace, "ms": elapsed_ms }),
    );
    if reply.is_success() {
        return Ok(reply);
    }
    let hint = reply
        .header("retry-after")
        .and_then(|v| parse_retry_after(&v, net::now_ms()));
    Err(cfg.tripo_api.failure(reply.status, &reply.text(), hint))
}

/// Uploads one image (v2 `POST /upload/sts`, v3 `POST /files`; part `file`); its token.
pub async fn upload(
    cx: CallCtx<'_>,
    cfg: &Config,
    bytes: &[u8],
    format: ImageFormat,
) -> Result<String, Failure> {
    let b = boundary(net::random_u128());
    let body = upload_multipart(&b, &format.upload_filename(), format.mime(), bytes);
    let ct = multipart_content_type(&b);
    let reply = call(
        cx,
        cfg,
        Method::Post,
        cfg.tripo_api.upload_path(),
        Some(&ct),
        Body::Bytes(body),
        UPLOAD_TIMEOUT_MS,
    )
    .await?;
    cfg.tripo_api
        .parse_upload(&reply.text())
        .map_err(|e| e.to_failure(reply.status))
}

/// Creates a task (v2 `POST /task`, v3 `POST /generation/…`); Tripo's task id.
pub async fn create(cx: CallCtx<'_>, cfg: &Config, task: &CreateTask) -> Result<String, Failure> {
    let payload = cfg.tripo_api.create_body(task).map_err(|e| {
        Failure::new(
            Dependency::Tripo,
            crate::core::retry::FailureClass::InvalidInput,
            &e.to_string(),
        )
    })?;
    let reply = call(
        cx,
        cfg,
        Method::Post,
        cfg.tripo_api.create_path(task.task_type()),
        Some("application/json"),
        Body::Text(payload.to_string()),
        API_TIMEOUT_MS,
    )
    .await?;
    cfg.tripo_api
        .parse_create(&reply.text())
        .map_err(|e| e.to_failure(reply.status))
}

/// Queries a task (v2 `GET /task/{id}`, v3 `GET /tasks/{id}`).
pub async fn task(
    cx: CallCtx<'_>,
    cfg: &Config,
    tripo_task_id: &str,
) -> Result<TaskDetail, Failure> {
    let reply = call(
        cx,
        cfg,
        Method::Get,
        &cfg.tripo_api.task_path(tripo_task_id),
        None,
        Body::Empty,
        API_TIMEOUT_MS,
    )
    .await?;
    cfg.tripo_api
        .parse_task(&reply.text())
        .map_err(|e| e.to_failure(reply.status))
}
