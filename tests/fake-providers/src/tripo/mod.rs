//! Fake of the Tripo v2 API under `/v2/openapi` (providers.md PART 1, recipe §1.13): the
//! `{code:0,data}` / `{code,message,suggestion}` envelope, bearer `tsk_` auth, uploads
//! (`/upload`, `/upload/sts`, `/upload/sts/token`), `POST /task` (strict per type, see
//! [`validate`]), `GET /task/{id}` (time-driven, see [`tasks`]), `GET /user/balance`, and the
//! Tripo fault directives. `X-Tripo-Trace-ID` is stamped by the edge middleware in `log.rs`.

pub(crate) mod tasks;
pub(crate) mod v3;
pub(crate) mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::directives::{scan_bytes, scan_text, Directive};
use crate::image_formats::ImageFormat;
use crate::log::LogInfo;
use crate::util::{bearer, host, read_parts, summarize_parts, MultipartFailure};
use crate::Shared;
use tasks::{Task, Upload};
use validate::{FileRef, TaskType};

/// Largest accepted upload (providers.md §1.4: "not larger than 20 MB").
pub(crate) const MAX_UPLOAD_BYTES: usize = 20 * 1024 * 1024;

/// A Tripo error response.
#[derive(Debug)]
pub(crate) struct TripoError {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    pub suggestion: String,
    pub retry_after: Option<u64>,
}

/// HTTP status, message and suggestion of each code (providers.md §1.7).
fn standard(code: i64) -> (StatusCode, &'static str, &'static str) {
    const RETRY: &str =
        "Please retry later; if the problem persists, contact support with the trace id";
    const DOCS: &str = "Refer to the API documentation for parameter requirements";
    match code {
        1000 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unknown error on sever side",
            RETRY,
        ),
        1001 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Fatal error on server side",
            RETRY,
        ),
        1002 => (
            StatusCode::UNAUTHORIZED,
            "Authentication failed",
            "Check your API key",
        ),
        1003 => (
            StatusCode::BAD_REQUEST,
            "The request body is malformed",
            DOCS,
        ),
        1004 => (
            StatusCode::BAD_REQUEST,
            "One or more of your parameter is invalid",
            DOCS,
        ),
        1005 => (
            StatusCode::FORBIDDEN,
            "You are not allowed to access this resource",
            DOCS,
        ),
        2000 => (
            StatusCode::TOO_MANY_REQUESTS,
            "You have exceeded the limit of generation",
            "Try again later. You can also check `Retry-After` header.",
        ),
        2001 => (
            StatusCode::NOT_FOUND,
            "The task is not found",
            "Check the task id and the API key that created it",
        ),
        2002 => (
            StatusCode::BAD_REQUEST,
            "This task type is not supported",
            DOCS,
        ),
        2003 => (
            StatusCode::BAD_REQUEST,
            "The image file is empty",
            "Upload a non-empty image",
        ),
        2004 => (
            StatusCode::BAD_REQUEST,
            "This image file type is not supported",
            "Upload a webp, jpeg or png image",
        ),
        2006 => (
            StatusCode::BAD_REQUEST,
            "The original task type is not supported",
            DOCS,
        ),
        2007 => (
            StatusCode::BAD_REQUEST,
            "The original task is not a succeeded task",
            "Wait until the task succeeds",
        ),
        2008 => (
            StatusCode::BAD_REQUEST,
            "The input is rejected due to violation of content policy",
            "Modify your input and try again",
        ),
        2009 => (
            StatusCode::BAD_REQUEST,
            "The input prompt contains invalid characters",
            "Remove emojis and special characters, keep it within 1024 characters",
        ),
        2010 => (
            StatusCode::FORBIDDEN,
            "You don't have enough credit to create this task",
            "Top up your balance",
        ),
        2015 => (
            StatusCode::BAD_REQUEST,
            "The version has been deprecated",
            "Use a current model_version",
        ),
        2017 => (
            StatusCode::BAD_REQUEST,
            "The version value is invalid",
            "Use a documented model_version",
        ),
        2019 => (
            StatusCode::NOT_FOUND,
            "The file is not found",
            "Upload the file again",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unknown error on sever side",
            RETRY,
        ),
    }
}

/// Tripo's standard message of `code` (the v3 fake's `error_msg`).
pub(crate) fn standard_message(code: i64) -> &'static str {
    standard(code).1
}

impl TripoError {
    /// Error `code` with Tripo's standard status and message, plus `detail` (what exactly).
    pub fn new(code: i64, detail: impl AsRef<str>) -> TripoError {
        let (status, message, suggestion) = standard(code);
        let detail = detail.as_ref();
        TripoError {
            status,
            code,
            message: if detail.is_empty() {
                message.to_string()
            } else {
                format!("{message}: {detail}")
            },
            suggestion: suggestion.to_string(),
            retry_after: None,
        }
    }

    /// A problem with a test's directive (400/1004, clearly marked).
    fn fake(detail: String) -> TripoError {
        TripoError::new(1004, format!("fake-providers: {detail}"))
    }
}

impl IntoResponse for TripoError {
    fn into_response(self) -> Response {
        let body =
            json!({"code": self.code, "message": self.message, "suggestion": self.suggestion});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// `{"code":0,"data":...}`.
fn ok(data: Value) -> Response {
    axum::Json(json!({"code": 0, "data": data})).into_response()
}

pub(crate) fn finish(result: Result<Response, TripoError>, info: LogInfo) -> Response {
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(info);
    resp
}

/// The caller's key, if it is a valid `tsk_` key (401/1002 otherwise).
pub(crate) fn auth(shared: &Shared, headers: &HeaderMap) -> Result<String, TripoError> {
    match bearer(headers) {
        Some(k) if k.starts_with("tsk_") && shared.tripo_key_ok(k) => Ok(k.to_string()),
        Some(_) => Err(TripoError::new(1002, "invalid API key")),
        None => Err(TripoError::new(
            1002,
            "missing 'Authorization: Bearer <key>' header",
        )),
    }
}

pub(crate) fn base_url(shared: &Shared, headers: &HeaderMap) -> String {
    format!(
        "http://{}",
        host(headers).unwrap_or_else(|| shared.local_authority())
    )
}

async fn slow(directive: Option<&Directive>) {
    if let Some(ms) = directive.and_then(|d| d.count("slow_ms")) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), TripoError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .eq_ignore_ascii_case("application/json")
    {
        Ok(())
    } else {
        Err(TripoError::new(
            1003,
            format!("Content-Type must be application/json, got '{ct}'"),
        ))
    }
}

/// `POST /v2/openapi/task`.
pub(crate) async fn create_task(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut info = LogInfo::default();
    let result = create(&shared, &headers, &body, &mut info, None)
        .await
        .map(|(_, data)| ok(data));
    finish(result, info)
}

/// A creation, v2 or (`v3`: the endpoint's task type) v3: the caller's key and the `data`.
pub(crate) async fn create(
    shared: &Shared,
    headers: &HeaderMap,
    raw: &[u8],
    info: &mut LogInfo,
    v3: Option<TaskType>,
) -> Result<(String, Value), TripoError> {
    let key = auth(shared, headers)?;
    require_json(headers)?;
    let body: Value = serde_json::from_slice(raw)
        .map_err(|e| TripoError::new(1003, format!("invalid JSON: {e}")))?;
    info.body = Some(body.clone());
    let body = match v3 {
        Some(ty) => v3::to_v2(ty, &body)?,
        None => body,
    };
    let spec = validate::validate(&body)?;
    info.prompt = spec.prompt.clone();

    // Inputs must exist; their directives travel with them.
    let mut found: Vec<Directive> = Vec::new();
    let mut inputs: Vec<Value> = Vec::new();
    if let Some(p) = &spec.prompt {
        found.extend(scan_text(p).map_err(TripoError::fake)?);
    }
    for f in &spec.files {
        match f {
            FileRef::Token(t) => {
                let (directive, summary) = shared.tripo.upload_input(t, &key)?;
                found.extend(directive);
                inputs.push(summary);
            }
            FileRef::Url(u) => found.extend(scan_text(u).map_err(TripoError::fake)?),
            FileRef::Object {
                key: object_key, ..
            } => {
                if !shared.tripo.object_known(object_key, &key) {
                    return Err(TripoError::new(
                        2019,
                        format!("object '{object_key}' not found"),
                    ));
                }
            }
        }
    }
    if let Some(id) = &spec.original_task_id {
        // The fake runs no generate_multiview_image / edit_multiview_image tasks.
        shared.tripo.with_own_task(id, &key, |_| ())?;
        return Err(TripoError::new(
            2006,
            "original_task_id must be a generate_multiview_image or edit_multiview_image task",
        ));
    }
    found.extend(shared.matches.matching(raw));
    let mut directive = Directive::merge(found);

    let (mut model_version, mut texture, mut pbr) =
        (spec.model_version.clone(), spec.texture, spec.pbr);
    if let Some(draft_id) = &spec.draft {
        let (ty, status, version, tex, p, dir, prompt, draft_inputs) =
            shared.tripo.with_own_task(draft_id, &key, |t| {
                (
                    t.ty,
                    t.status(std::time::Instant::now()),
                    t.model_version.clone(),
                    t.texture,
                    t.pbr,
                    t.directive.clone(),
                    t.prompt.clone(),
                    t.inputs.clone(),
                )
            })?;
        if ty == TaskType::RefineModel {
            return Err(TripoError::new(
                2006,
                "a refine_model task cannot be refined again",
            ));
        }
        if status != "success" {
            return Err(TripoError::new(2007, format!("draft task is '{status}'")));
        }
        (model_version, texture, pbr) = (version, tex, p);
        if directive.is_none() {
            directive = dir;
        }
        info.prompt = prompt;
        inputs = draft_inputs;
    }
    info.directive = directive.as_ref().map(|d| d.text().to_string());
    if !inputs.is_empty() {
        info.inputs = Some(Value::Array(inputs.clone()));
    }
    let d = directive.as_ref();
    slow(d).await;

    if shared.counters.fire(d, "create_2000") {
        let mut e = TripoError::new(2000, "injected by create_2000");
        e.retry_after = Some(d.and_then(|d| d.count("retry_after")).unwrap_or(1));
        return Err(e);
    }
    if shared.counters.fire(d, "create_5xx") {
        return Err(TripoError::new(1000, ""));
    }
    if d.is_some_and(|d| d.has("moderation")) {
        return Err(TripoError::new(2008, ""));
    }
    if d.is_some_and(|d| d.has("no_credits")) {
        return Err(TripoError::new(2010, ""));
    }

    let id = uuid::Uuid::new_v4().to_string();
    let key_of_task = key.clone();
    let mut task = Task::new(
        id.clone(),
        key,
        spec.ty,
        model_version,
        spec.input,
        spec.prompt,
        directive,
        texture,
        pbr,
        spec.credits,
        shared.cfg.time_scale,
    );
    task.inputs = inputs;
    shared.tripo.insert(task)?;
    info.tripo_task_id = Some(id.clone());
    Ok((key_of_task, json!({"task_id": id})))
}

/// `GET /v2/openapi/task/{id}`.
pub(crate) async fn get_task(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut info = LogInfo {
        tripo_task_id: Some(id.clone()),
        ..LogInfo::default()
    };
    let result = poll(&shared, &headers, &id, &mut info).await.map(ok);
    finish(result, info)
}

/// A task's `data` at this moment (v2 shape).
pub(crate) async fn poll(
    shared: &Shared,
    headers: &HeaderMap,
    id: &str,
    info: &mut LogInfo,
) -> Result<Value, TripoError> {
    let key = auth(shared, headers)?;
    let (prompt, directive, inputs) = shared.tripo.with_own_task(id, &key, |t| {
        (t.prompt.clone(), t.directive.clone(), t.inputs.clone())
    })?;
    if !inputs.is_empty() {
        info.inputs = Some(Value::Array(inputs));
    }
    info.prompt = prompt;
    info.directive = directive.as_ref().map(|d| d.text().to_string());
    slow(directive.as_ref()).await;
    if let Some(n) = directive.as_ref().and_then(|d| d.count("poll_5xx")) {
        if shared.counters.take(&format!("task:{id}#poll_5xx"), n) {
            return Err(TripoError::new(1000, ""));
        }
    }
    let base = base_url(shared, headers);
    let view = shared.tripo.with_own_task(id, &key, |t| {
        t.polled();
        t.view(std::time::Instant::now(), &base)
    })?;
    Ok(view)
}

/// `POST /v2/openapi/upload` and `POST /v2/openapi/upload/sts` (multipart, part `file`).
pub(crate) async fn upload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    let mut info = LogInfo::default();
    let result = upload_inner(&shared, &headers, mp, &mut info, "")
        .await
        .map(|token| ok(json!({"image_token": token})));
    finish(result, info)
}

/// An upload; its token (`token_prefix` + a UUID: v3 tokens are `file_<uuid>`).
pub(crate) async fn upload_inner(
    shared: &Shared,
    headers: &HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
    info: &mut LogInfo,
    token_prefix: &str,
) -> Result<String, TripoError> {
    let key = auth(shared, headers)?;
    let mp = mp.map_err(|_| TripoError::new(1003, "expected a multipart/form-data body"))?;
    let parts = read_parts(mp).await.map_err(|f| match f {
        MultipartFailure::TooLarge => TripoError::new(1004, "the file is larger than 20 MB"),
        MultipartFailure::Malformed(m) => TripoError::new(1003, m),
    })?;
    info.body = Some(summarize_parts(&parts));
    if let Some(p) = parts.iter().find(|p| p.name != "file") {
        return Err(TripoError::new(
            1004,
            format!("unknown parameter '{}'", p.name),
        ));
    }
    let file = match parts.as_slice() {
        [only] if only.is_file() => only,
        [_] => {
            return Err(TripoError::new(
                1004,
                "'file' must be a file part (with a filename)",
            ))
        }
        [] => return Err(TripoError::new(1004, "missing required part 'file'")),
        _ => return Err(TripoError::new(1004, "send exactly one 'file' part")),
    };
    if file.data.is_empty() {
        return Err(TripoError::new(2003, ""));
    }
    if file.data.len() > MAX_UPLOAD_BYTES {
        return Err(TripoError::new(
            1004,
            format!("the file is {} bytes; the limit is 20 MB", file.data.len()),
        ));
    }
    let ct = file.content_type.as_deref().unwrap_or_default();
    let declared = ImageFormat::from_mime(ct).or((ct == "image/jpg").then_some(ImageFormat::Jpeg));
    if declared.is_none() {
        return Err(TripoError::new(
            2004,
            format!("content type '{ct}' is not image/png, image/jpeg or image/webp"),
        ));
    }
    if ImageFormat::sniff(&file.data).is_none() {
        return Err(TripoError::new(
            2004,
            "the bytes are not a png, jpeg or webp image",
        ));
    }
    let mut found: Vec<Directive> = Vec::new();
    found.extend(scan_bytes(&file.data).map_err(TripoError::fake)?);
    found.extend(shared.matches.matching(&file.data));
    let directive = Directive::merge(found);
    info.directive = directive.as_ref().map(|d| d.text().to_string());
    slow(directive.as_ref()).await;
    let token = format!("{token_prefix}{}", uuid::Uuid::new_v4());
    let texts: Vec<String> = crate::png::png_texts(&file.data)
        .into_iter()
        .map(|(k, t)| format!("{k}: {t}").chars().take(1000).collect())
        .collect();
    let summary = json!({
        "image_token": token,
        "filename": file.filename,
        "content_type": file.content_type,
        "size": file.data.len(),
        "sha256": crate::util::sha256_hex(&file.data),
        "texts": texts,
    });
    info.inputs = Some(Value::Array(vec![summary.clone()]));
    shared.tripo.add_upload(
        token.clone(),
        Upload {
            owner: key,
            directive,
            summary,
        },
    );
    Ok(token)
}

/// `POST /v2/openapi/upload/sts/token`: fake STS credentials for `{format}`.
pub(crate) async fn sts_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut info = LogInfo::default();
    let result = (|| {
        let key = auth(&shared, &headers)?;
        require_json(&headers)?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| TripoError::new(1003, format!("invalid JSON: {e}")))?;
        info.body = Some(v.clone());
        let obj = v
            .as_object()
            .ok_or_else(|| TripoError::new(1003, "the body must be a JSON object"))?;
        if let Some(k) = obj.keys().find(|k| *k != "format") {
            return Err(TripoError::new(1004, format!("unknown parameter '{k}'")));
        }
        const FORMATS: &[&str] = &["webp", "jpeg", "png", "glb", "obj", "fbx", "stl"];
        let format = match obj.get("format") {
            Some(Value::String(f)) if FORMATS.contains(&f.as_str()) => f.clone(),
            Some(other) => {
                return Err(TripoError::new(
                    1004,
                    format!("'format' must be one of {}, got {other}", FORMATS.join("|")),
                ))
            }
            None => return Err(TripoError::new(1004, "missing required parameter 'format'")),
        };
        let day = crate::util::unix_now() / 86_400;
        let resource_uri = format!("tcli_fake/{day}/{}/input.{format}", uuid::Uuid::new_v4());
        shared.tripo.add_object(resource_uri.clone(), &key);
        let secret = uuid::Uuid::new_v4().simple().to_string();
        Ok(ok(json!({
            "s3_host": "s3.us-west-2.amazonaws.com",
            "resource_bucket": "tripo-data",
            "resource_uri": resource_uri,
            "session_token": format!("IQoJb3JpZ2luX2VjEFAKE{secret}"),
            "sts_ak": format!("ASIAFAKE{}", &secret[..12].to_ascii_uppercase()),
            "sts_sk": format!("fake/{secret}"),
        })))
    })();
    finish(result, info)
}

/// `GET /v2/openapi/user/balance`.
pub(crate) async fn balance(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let result = auth(&shared, &headers).map(|key| {
        let (balance, frozen) = shared.tripo.balance(&key);
        ok(json!({"balance": balance, "frozen": frozen}))
    });
    finish(result, LogInfo::default())
}

/// Fallback for unknown `/v2/openapi/...` routes.
pub(crate) fn not_found(method: &str, path: &str) -> Response {
    let mut e = TripoError::new(1004, format!("no route {method} {path}"));
    e.status = StatusCode::NOT_FOUND;
    e.into_response()
}
