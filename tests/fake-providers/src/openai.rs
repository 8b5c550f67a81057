//! Fake of the OpenAI Images API: `POST /v1/images/edits` (multipart/form-data) exactly as in
//! providers.md PART 2: bearer auth, field-by-field validation with OpenAI's error shape
//! `{"error":{"message","type","param","code"}}`, the §2.4 success body with real images
//! ([`crate::concept_png`] and friends), optional SSE streaming, `x-request-id` /
//! `openai-*` / `x-ratelimit-*` headers, and the OpenAI fault directives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::directives::{scan_text, Directive};
use crate::image_formats::{concept_image, ImageFormat};
use crate::log::LogInfo;
use crate::png::png_dimensions;
use crate::util::{
    bearer, host, openai_duration, read_parts, summarize_parts, unix_now, MultipartFailure, Part,
};
use crate::Shared;

/// Requests per minute advertised in `x-ratelimit-limit-requests` (never enforced; faults come
/// from directives only, so concurrent tests cannot starve each other).
const RPM: u64 = 5_000;
/// Tokens per minute advertised in `x-ratelimit-limit-tokens`.
const TPM: u64 = 4_000_000;

const EDIT_FIELDS: &[&str] = &[
    "image",
    "image[]",
    "mask",
    "prompt",
    "model",
    "n",
    "size",
    "quality",
    "background",
    "output_format",
    "output_compression",
    "input_fidelity",
    "partial_images",
    "stream",
    "response_format",
    "user",
    "moderation",
];

const MODELS: &[&str] = &[
    "gpt-image-1",
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "gpt-image-2",
    "gpt-image-2-2026-04-21",
    "chatgpt-image-latest",
    "dall-e-2",
    "dall-e-3",
];

/// The model used when the request names none (the SDK's documented edits default).
const DEFAULT_MODEL: &str = "gpt-image-1.5";

/// Per-key request/token windows for the `x-ratelimit-*` headers, and dall-e-2 hosted images.
#[derive(Default)]
pub(crate) struct OpenAiState {
    windows: Mutex<HashMap<String, Window>>,
    hosted: Mutex<HashMap<String, Vec<u8>>>,
}

struct Window {
    start: Instant,
    requests: u64,
    tokens: u64,
}

impl OpenAiState {
    fn with_window<T>(&self, key: &str, f: impl FnOnce(&mut Window) -> T) -> T {
        let mut g = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = g.entry(key.to_string()).or_insert(Window {
            start: Instant::now(),
            requests: 0,
            tokens: 0,
        });
        if w.start.elapsed() >= Duration::from_secs(60) {
            *w = Window {
                start: Instant::now(),
                requests: 0,
                tokens: 0,
            };
        }
        f(w)
    }

    fn rate_headers(&self, key: &str, headers: &mut HeaderMap) {
        let (requests, tokens, left) = self.with_window(key, |w| {
            (
                w.requests,
                w.tokens,
                Duration::from_secs(60).saturating_sub(w.start.elapsed()),
            )
        });
        let reset = openai_duration(left);
        for (name, value) in [
            ("x-ratelimit-limit-requests", RPM.to_string()),
            (
                "x-ratelimit-remaining-requests",
                RPM.saturating_sub(requests).to_string(),
            ),
            ("x-ratelimit-reset-requests", reset.clone()),
            ("x-ratelimit-limit-tokens", TPM.to_string()),
            (
                "x-ratelimit-remaining-tokens",
                TPM.saturating_sub(tokens).to_string(),
            ),
            ("x-ratelimit-reset-tokens", reset),
        ] {
            if !headers.contains_key(name) {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
        }
    }
}

/// An OpenAI error response (boxed: it travels through many `Result`s).
struct ApiError(Box<ApiErrorBody>);

struct ApiErrorBody {
    status: StatusCode,
    message: String,
    ty: &'static str,
    param: Option<String>,
    code: Option<String>,
    extra: Option<(&'static str, Value)>,
    headers: Vec<(&'static str, String)>,
}

impl std::ops::Deref for ApiError {
    type Target = ApiErrorBody;
    fn deref(&self) -> &ApiErrorBody {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorBody {
        &mut self.0
    }
}

impl ApiError {
    fn new(status: StatusCode, ty: &'static str, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(ApiErrorBody {
            status,
            message: message.into(),
            ty,
            param: None,
            code: None,
            extra: None,
            headers: Vec::new(),
        }))
    }

    /// 400 `invalid_request_error`.
    fn invalid(message: impl Into<String>, param: Option<&str>, code: Option<&str>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = param.map(str::to_string);
        e.code = code.map(str::to_string);
        e
    }

    fn invalid_value(param: &str, value: &str, allowed: &[&str]) -> ApiError {
        let list = allowed
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        ApiError::invalid(
            format!("Invalid value: '{value}'. Supported values are: {list}."),
            Some(param),
            Some("invalid_value"),
        )
    }

    fn unsupported(param: &str, model: &str) -> ApiError {
        ApiError::invalid(
            format!("Unsupported parameter: '{param}' is not supported with the model '{model}'."),
            Some(param),
            Some("unsupported_parameter"),
        )
    }

    fn auth(message: String) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message);
        e.code = Some("invalid_api_key".into());
        e
    }

    /// A problem with a test's directive: loud, and clearly not OpenAI's.
    fn fake(message: String) -> ApiError {
        ApiError::invalid(
            format!("fake-providers: {message}"),
            Some("prompt"),
            Some("fake_directive_error"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = *self.0;
        let mut err = json!({
            "message": e.message,
            "type": e.ty,
            "param": e.param,
            "code": e.code,
        });
        if let (Some((k, v)), Some(obj)) = (e.extra, err.as_object_mut()) {
            obj.insert(k.to_string(), v);
        }
        let mut resp = (e.status, axum::Json(json!({ "error": err }))).into_response();
        for (name, value) in e.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

/// Adds `x-request-id` and the `openai-*` headers to every `/v1` response; returns the id.
pub(crate) fn stamp_headers(resp: &mut Response, started: Instant) -> String {
    let id = format!("req_{}", uuid::Uuid::new_v4().simple());
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-request-id", id.clone()),
        ("openai-version", "2020-10-01".to_string()),
        ("openai-organization", "user-fake-providers".to_string()),
        (
            "openai-processing-ms",
            started.elapsed().as_millis().to_string(),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    id
}

/// `POST /v1/images/edits`.
pub(crate) async fn images_edits(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    let mut info = LogInfo::default();
    let mut key = None;
    let mut resp = match edits(&shared, &headers, mp, &mut info, &mut key).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Some(key) = key {
        shared.openai.rate_headers(&key, resp.headers_mut());
    }
    resp.extensions_mut().insert(info);
    resp
}

/// A validated edit request.
struct Edit<'a> {
    images: Vec<&'a Part>,
    prompt: String,
    model: String,
    gpt: bool,
    n: u32,
    size: String,
    quality: String,
    background: String,
    output_format: ImageFormat,
    stream: bool,
    partial_images: u32,
    response_format: Option<String>,
}

async fn edits(
    shared: &Shared,
    headers: &HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
    info: &mut LogInfo,
    limits_key: &mut Option<String>,
) -> Result<Response, ApiError> {
    let key = match bearer(headers) {
        None => {
            return Err(ApiError::auth(
                "You didn't provide an API key. You need to provide your API key in an Authorization header \
                 using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                    .into(),
            ))
        }
        Some(t) if !shared.openai_key_ok(t) => return Err(incorrect_key(t)),
        Some(t) => t.to_string(),
    };
    shared.openai.with_window(&key, |w| w.requests += 1);
    *limits_key = Some(key.clone());

    let mp = mp.map_err(|_| {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        ApiError::invalid(
            format!("Invalid Content-Type header ({ct}), expected multipart/form-data."),
            None,
            None,
        )
    })?;
    let parts = read_parts(mp).await.map_err(|f| match f {
        MultipartFailure::TooLarge => {
            let mut e =
                ApiError::invalid("Request body too large.", None, Some("request_too_large"));
            e.status = StatusCode::PAYLOAD_TOO_LARGE;
            e
        }
        MultipartFailure::Malformed(m) => {
            ApiError::invalid(format!("Could not parse multipart form: {m}"), None, None)
        }
    })?;
    info.body = Some(summarize_parts(&parts));
    let prompt = parts
        .iter()
        .find(|p| p.name == "prompt")
        .and_then(Part::text);
    info.prompt = prompt.map(str::to_string);

    // Directives: embedded in the prompt, then control-route rules matching prompt or images.
    let mut found: Vec<Directive> = Vec::new();
    if let Some(p) = prompt {
        found.extend(scan_text(p).map_err(ApiError::fake)?);
        found.extend(shared.matches.matching(p.as_bytes()));
    }
    for p in parts.iter().filter(|p| p.is_file()) {
        found.extend(shared.matches.matching(&p.data));
    }
    let directive = Directive::merge(found);
    info.directive = directive.as_ref().map(|d| d.text().to_string());
    let d = directive.as_ref();

    if let Some(ms) = d.and_then(|d| d.count("openai_delay_ms")) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if d.is_some_and(|d| d.has("invalid_key")) {
        return Err(incorrect_key(&key));
    }

    let edit = validate(&parts)?;

    if shared.counters.fire(d, "openai_429") {
        let secs = d.and_then(|d| d.count("retry_after")).unwrap_or(1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            format!(
                "Rate limit reached for {} in organization org-fake on images per minute (IPM): Limit 5, \
                 Used 5, Requested 1. Please try again in {secs}s. Visit \
                 https://platform.openai.com/account/rate-limits to learn more.",
                edit.model
            ),
        );
        e.code = Some("rate_limit_exceeded".into());
        e.headers = vec![
            ("retry-after", secs.to_string()),
            ("retry-after-ms", secs.saturating_mul(1000).to_string()),
            ("x-ratelimit-remaining-requests", "0".into()),
            (
                "x-ratelimit-reset-requests",
                openai_duration(Duration::from_secs(secs)),
            ),
            (
                "x-ratelimit-reset-tokens",
                openai_duration(Duration::from_secs(secs)),
            ),
        ];
        return Err(e);
    }
    if d.is_some_and(|d| d.has("quota")) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details. For more \
             information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        );
        e.code = Some("insufficient_quota".into());
        return Err(e);
    }
    if shared.counters.fire(d, "openai_500") {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        ));
    }
    if d.is_some_and(|d| d.has("moderation")) {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "image_generation_user_error",
            "Your request was rejected by the safety system. If you believe this is an error, contact us \
             at help.openai.com and include the request ID.",
        );
        e.code = Some("moderation_blocked".into());
        e.extra = Some((
            "moderation_details",
            json!({"moderation_stage": "input", "categories": ["other"]}),
        ));
        return Err(e);
    }
    if d.is_some_and(|d| d.has("invalid_image")) {
        return Err(invalid_image(1));
    }

    let usage = usage(&edit);
    shared.openai.with_window(&key, |w| {
        w.tokens += usage["total_tokens"].as_u64().unwrap_or(0)
    });
    // `image_bytes=N`: every PNG image of the answer is N bytes (at most 64 MiB), like a
    // large real image, so the worker's memory can be measured with realistic replies.
    let pad = d
        .and_then(|d| d.count("image_bytes"))
        .map(|n| n.min(64 << 20) as usize);
    Ok(success(shared, headers, &edit, usage, pad))
}

fn incorrect_key(key: &str) -> ApiError {
    let chars: Vec<char> = key.chars().collect();
    let shown: String = if chars.len() > 8 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}******{tail}")
    } else {
        "*".repeat(chars.len())
    };
    ApiError::auth(format!(
        "Incorrect API key provided: {shown}. You can find your API key at https://platform.openai.com/account/api-keys."
    ))
}

fn invalid_image(index: usize) -> ApiError {
    ApiError::invalid(
        format!("Invalid image file or mode for image {index}, please check your image file."),
        Some("image"),
        Some("invalid_image_file"),
    )
}

fn parse_int(param: &str, raw: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    let v: i64 = raw.trim().parse().map_err(|_| {
        ApiError::invalid(
            format!("Invalid type for '{param}': expected an integer, but got a string instead."),
            Some(param),
            Some("invalid_type"),
        )
    })?;
    if v < min {
        return Err(ApiError::invalid(
            format!("{v} is less than the minimum of {min} - '{param}'"),
            Some(param),
            Some("integer_below_min_value"),
        ));
    }
    if v > max {
        return Err(ApiError::invalid(
            format!("{v} is greater than the maximum of {max} - '{param}'"),
            Some(param),
            Some("integer_above_max_value"),
        ));
    }
    Ok(v)
}

fn enum_value<'a>(param: &str, raw: &'a str, allowed: &[&str]) -> Result<&'a str, ApiError> {
    if allowed.contains(&raw) {
        Ok(raw)
    } else {
        Err(ApiError::invalid_value(param, raw, allowed))
    }
}

/// `WxH` for gpt-image-2: both divisible by 16, aspect within 1:3..3:1, at most 3840x2160 pixels
/// and 3840 on the long edge.
fn custom_size_ok(size: &str) -> bool {
    let Some((w, h)) = size.split_once('x') else {
        return false;
    };
    let (Ok(w), Ok(h)) = (w.parse::<u64>(), h.parse::<u64>()) else {
        return false;
    };
    w > 0
        && h > 0
        && w % 16 == 0
        && h % 16 == 0
        && w <= 3 * h
        && h <= 3 * w
        && w.max(h) <= 3840
        && w * h <= 3840 * 2160
}

fn validate(parts: &[Part]) -> Result<Edit<'_>, ApiError> {
    let mut images: Vec<&Part> = Vec::new();
    let mut mask: Option<&Part> = None;
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for p in parts {
        let name = p.name.as_str();
        if !EDIT_FIELDS.contains(&name) {
            return Err(ApiError::invalid(
                format!("Unknown parameter: '{name}'."),
                Some(name),
                Some("unknown_parameter"),
            ));
        }
        match name {
            "image" | "image[]" | "mask" => {
                if !p.is_file() {
                    return Err(ApiError::invalid(
                        format!(
                            "Invalid type for '{name}': expected a file, but got a string instead."
                        ),
                        Some(name),
                        Some("invalid_type"),
                    ));
                }
                if name == "mask" {
                    if mask.is_some() {
                        return Err(duplicate(name));
                    }
                    mask = Some(p);
                } else {
                    images.push(p);
                }
            }
            _ => {
                let Some(text) = p.text() else {
                    return Err(ApiError::invalid(
                        format!(
                            "Invalid type for '{name}': expected a string, but got a file instead."
                        ),
                        Some(name),
                        Some("invalid_type"),
                    ));
                };
                if fields.insert(name, text).is_some() {
                    return Err(duplicate(name));
                }
            }
        }
    }

    let prompt = *fields.get("prompt").ok_or_else(|| missing("prompt"))?;
    if prompt.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty string instead.",
            Some("prompt"),
            Some("empty_string"),
        ));
    }
    if images.is_empty() {
        return Err(missing("image"));
    }
    let model = fields.get("model").copied().unwrap_or(DEFAULT_MODEL);
    enum_value("model", model, MODELS)?;
    if model == "dall-e-3" {
        return Err(ApiError::invalid(
            "Invalid value: 'dall-e-3'. The model 'dall-e-3' does not support image edits.",
            Some("model"),
            Some("invalid_value"),
        ));
    }
    let gpt = model != "dall-e-2";
    let (max_prompt, max_images, max_image_bytes) = if gpt {
        (32_000, 16, 50 * 1024 * 1024)
    } else {
        (1_000, 1, 4 * 1024 * 1024)
    };
    let prompt_len = prompt.chars().count();
    if prompt_len > max_prompt {
        return Err(ApiError::invalid(
            format!(
                "Invalid 'prompt': string too long. Expected a string with maximum length {max_prompt}, \
                 but got a string with length {prompt_len} instead."
            ),
            Some("prompt"),
            Some("string_above_max_length"),
        ));
    }
    if images.len() > max_images {
        return Err(ApiError::invalid(
            format!(
                "Invalid 'image': too many images. Expected at most {max_images}, got {}.",
                images.len()
            ),
            Some("image"),
            Some("too_many_images"),
        ));
    }
    for (i, p) in images.iter().enumerate() {
        let param = p.name.as_str();
        let mime = p
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        let allowed = if gpt {
            ImageFormat::from_mime(mime)
        } else {
            ImageFormat::from_mime(mime).filter(|f| *f == ImageFormat::Png)
        };
        if allowed.is_none() {
            let supported = if gpt {
                "'image/jpeg', 'image/png', and 'image/webp'"
            } else {
                "'image/png'"
            };
            return Err(ApiError::invalid(
                format!(
                    "Invalid file '{param}': unsupported mimetype ('{mime}'). Supported file formats are {supported}."
                ),
                Some(param),
                Some("unsupported_file_mimetype"),
            ));
        }
        if p.data.len() >= max_image_bytes {
            return Err(ApiError::invalid(
                format!(
                    "Invalid file '{param}': file too large ({} bytes). Each image must be smaller than {} MB.",
                    p.data.len(),
                    max_image_bytes / (1024 * 1024)
                ),
                Some(param),
                Some("image_too_large"),
            ));
        }
        let sniffed = ImageFormat::sniff(&p.data);
        if sniffed.is_none() || (!gpt && sniffed != Some(ImageFormat::Png)) {
            return Err(invalid_image(i + 1));
        }
        if !gpt {
            match png_dimensions(&p.data) {
                Some((w, h)) if w == h => {}
                _ => {
                    return Err(ApiError::invalid(
                        "Invalid input image - format must be in ['RGBA', 'LA', 'L'], got RGB. The image must be square.",
                        Some("image"),
                        Some("invalid_image_format"),
                    ))
                }
            }
        }
    }
    if let Some(m) = mask {
        let mime = m
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        if ImageFormat::from_mime(mime) != Some(ImageFormat::Png) {
            return Err(ApiError::invalid(
                format!("Invalid file 'mask': unsupported mimetype ('{mime}'). Supported file formats are 'image/png'."),
                Some("mask"),
                Some("unsupported_file_mimetype"),
            ));
        }
        if m.data.len() >= 4 * 1024 * 1024 || ImageFormat::sniff(&m.data) != Some(ImageFormat::Png)
        {
            return Err(ApiError::invalid(
                "Invalid mask image: it must be a PNG smaller than 4 MB.",
                Some("mask"),
                Some("invalid_image_file"),
            ));
        }
        let first = images.first().and_then(|p| png_dimensions(&p.data));
        if let (Some(img), Some(msk)) = (first, png_dimensions(&m.data)) {
            if img != msk {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid mask image: the mask ({}x{}) must have the same dimensions as the image ({}x{}).",
                        msk.0, msk.1, img.0, img.1
                    ),
                    Some("mask"),
                    Some("invalid_mask_dimensions"),
                ));
            }
        }
    }

    let n = match fields.get("n") {
        Some(raw) => parse_int("n", raw, 1, 10)? as u32,
        None => 1,
    };
    let size = match fields.get("size").copied() {
        None => if gpt { "auto" } else { "1024x1024" }.to_string(),
        Some(s) if !gpt => enum_value("size", s, &["256x256", "512x512", "1024x1024"])?.to_string(),
        Some(s) if model.starts_with("gpt-image-2") && (s == "auto" || custom_size_ok(s)) => s.to_string(),
        Some(s) if model.starts_with("gpt-image-2") => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid value: '{s}'. Size must be 'auto' or WxH with both sides divisible by 16, an aspect \
                     ratio between 1:3 and 3:1 and at most 3840x2160."
                ),
                Some("size"),
                Some("invalid_value"),
            ))
        }
        Some(s) => enum_value("size", s, &["1024x1024", "1536x1024", "1024x1536", "auto"])?.to_string(),
    };
    let quality = match fields.get("quality").copied() {
        None => "auto".to_string(),
        Some(q) if gpt => enum_value("quality", q, &["low", "medium", "high", "auto"])?.to_string(),
        Some(q) => enum_value("quality", q, &["standard", "auto"])?.to_string(),
    };
    for gpt_only in [
        "background",
        "output_format",
        "output_compression",
        "input_fidelity",
        "partial_images",
        "stream",
        "moderation",
    ] {
        if !gpt && fields.contains_key(gpt_only) {
            return Err(ApiError::unsupported(gpt_only, model));
        }
    }
    let background = match fields.get("background").copied() {
        None => "auto",
        Some(b) => enum_value("background", b, &["transparent", "opaque", "auto"])?,
    };
    let output_format = match fields.get("output_format").copied() {
        None => ImageFormat::Png,
        Some(f) => match enum_value("output_format", f, &["png", "jpeg", "webp"])? {
            "jpeg" => ImageFormat::Jpeg,
            "webp" => ImageFormat::Webp,
            _ => ImageFormat::Png,
        },
    };
    if background == "transparent" && output_format == ImageFormat::Jpeg {
        return Err(ApiError::invalid(
            "Invalid value: 'transparent'. Transparent background requires output_format 'png' or 'webp'.",
            Some("background"),
            Some("invalid_value"),
        ));
    }
    if let Some(raw) = fields.get("output_compression") {
        let c = parse_int("output_compression", raw, 0, 100)?;
        if output_format == ImageFormat::Png && c < 100 {
            return Err(ApiError::invalid(
                "Compression less than 100 is not supported for PNG output format.",
                Some("output_compression"),
                Some("invalid_value"),
            ));
        }
    }
    if let Some(f) = fields.get("input_fidelity").copied() {
        enum_value("input_fidelity", f, &["high", "low"])?;
        if model == "gpt-image-1-mini" {
            return Err(ApiError::unsupported("input_fidelity", model));
        }
    }
    let stream = match fields.get("stream").copied() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid type for 'stream': expected a boolean, but got '{other}' instead."
                ),
                Some("stream"),
                Some("invalid_type"),
            ))
        }
    };
    let partial_images = match fields.get("partial_images") {
        Some(raw) => parse_int("partial_images", raw, 0, 3)? as u32,
        None => 0,
    };
    let response_format = match fields.get("response_format").copied() {
        None => None,
        Some(_) if gpt => {
            return Err(ApiError::invalid(
                "Unknown parameter: 'response_format'.",
                Some("response_format"),
                Some("unknown_parameter"),
            ))
        }
        Some(r) => Some(enum_value("response_format", r, &["url", "b64_json"])?.to_string()),
    };
    if let Some(m) = fields.get("moderation").copied() {
        enum_value("moderation", m, &["auto", "low"])?;
    }

    let resolved_size = if size == "auto" {
        "1024x1024".to_string()
    } else {
        size
    };
    let resolved_quality = match quality.as_str() {
        "auto" if gpt => "medium".to_string(),
        "auto" => "standard".to_string(),
        q => q.to_string(),
    };
    let resolved_background = if background == "auto" {
        "opaque"
    } else {
        background
    };
    Ok(Edit {
        images,
        prompt: prompt.to_string(),
        model: model.to_string(),
        gpt,
        n,
        size: resolved_size,
        quality: resolved_quality,
        background: resolved_background.to_string(),
        output_format,
        stream,
        partial_images,
        response_format,
    })
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(
        format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

fn duplicate(param: &str) -> ApiError {
    ApiError::invalid(
        format!("Duplicate parameter: '{param}'. Send it once."),
        Some(param),
        Some("duplicate_parameter"),
    )
}

/// A plausible, deterministic `usage` object (GPT image token tables for the output side).
fn usage(edit: &Edit) -> Value {
    let text_tokens = (edit.prompt.chars().count() as u64).div_ceil(4).max(1);
    let image_in = 194 * edit.images.len() as u64;
    let square = edit.size == "1024x1024";
    let per_image = match (edit.quality.as_str(), square) {
        ("low", true) => 272,
        ("low", false) => 408,
        ("high", true) => 4160,
        ("high", false) => 6240,
        (_, true) => 1056,
        (_, false) => 1584,
    };
    let output = per_image * u64::from(edit.n);
    json!({
        "input_tokens": text_tokens + image_in,
        "input_tokens_details": {"image_tokens": image_in, "text_tokens": text_tokens},
        "output_tokens": output,
        "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
        "total_tokens": text_tokens + image_in + output,
    })
}

fn success(
    shared: &Shared,
    headers: &HeaderMap,
    edit: &Edit,
    usage: Value,
    pad: Option<usize>,
) -> Response {
    let created = unix_now();
    let b64 = |i: u32| {
        let image = concept_image(&edit.prompt, i, edit.output_format);
        let image = match pad {
            Some(total) if edit.output_format == ImageFormat::Png => {
                crate::png::pad_png(image, total)
            }
            _ => image,
        };
        base64::engine::general_purpose::STANDARD.encode(image)
    };
    if edit.stream {
        return sse(edit, created, usage, &b64);
    }
    if !edit.gpt {
        let as_url = edit.response_format.as_deref() != Some("b64_json");
        let base = host(headers)
            .map(|h| format!("http://{h}"))
            .unwrap_or_default();
        let data: Vec<Value> = (0..edit.n)
            .map(|i| {
                if as_url {
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    let bytes = concept_image(&edit.prompt, i, ImageFormat::Png);
                    shared
                        .openai
                        .hosted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.clone(), bytes);
                    json!({"url": format!("{base}/__fake/openai-files/{id}.png")})
                } else {
                    json!({"b64_json": b64(i)})
                }
            })
            .collect();
        return axum::Json(json!({"created": created, "data": data})).into_response();
    }
    let data: Vec<Value> = (0..edit.n).map(|i| json!({"b64_json": b64(i)})).collect();
    axum::Json(json!({
        "created": created,
        "data": data,
        "background": edit.background,
        "output_format": edit.output_format.name(),
        "quality": edit.quality,
        "size": edit.size,
        "usage": usage,
    }))
    .into_response()
}

/// `stream=true`: `image_edit.partial_image` events (as many as `partial_images`) then one
/// `image_edit.completed` event per image.
fn sse(edit: &Edit, created: u64, usage: Value, b64: &dyn Fn(u32) -> String) -> Response {
    let mut body = String::new();
    for i in 0..edit.n {
        let image = b64(i);
        for p in 0..edit.partial_images {
            let ev = json!({
                "type": "image_edit.partial_image", "b64_json": image, "partial_image_index": p,
                "background": edit.background, "output_format": edit.output_format.name(),
                "quality": edit.quality, "size": edit.size, "created_at": created,
            });
            body.push_str(&format!("event: image_edit.partial_image\ndata: {ev}\n\n"));
        }
        let ev = json!({
            "type": "image_edit.completed", "b64_json": image,
            "background": edit.background, "output_format": edit.output_format.name(),
            "quality": edit.quality, "size": edit.size, "created_at": created, "usage": usage,
        });
        body.push_str(&format!("event: image_edit.completed\ndata: {ev}\n\n"));
    }
    (
        [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `GET /__fake/openai-files/{id}.png`: images returned by URL (dall-e-2 `response_format=url`).
pub(crate) async fn hosted_image(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
) -> Response {
    let id = file.trim_end_matches(".png");
    let bytes = shared
        .openai
        .hosted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .cloned();
    match bytes {
        Some(b) => ([(header::CONTENT_TYPE, "image/png")], b).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Fallback for unknown `/v1/...` routes, in OpenAI's words.
pub(crate) fn not_found(method: &str, path: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("Invalid URL ({method} {path})"),
    )
    .into_response()
}
