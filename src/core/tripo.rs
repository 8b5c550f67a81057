//! Tripo 3D API v2 wire contract (providers.md PART 1), pure.
//!
//! This module owns:
//! - the `POST /task` payloads, one per task type, carrying **only** the fields Tripo documents for
//!   that type (providers.md §1.5.1–§1.5.4): never our `task_id`, never a free-text `style`;
//! - the normalisation of the texture options (`pbr=true` forces texture; `texture=false` needs
//!   `pbr=false`; no `texture_quality` on an untextured model);
//! - parsing of the upload (`data.image_token`), create (`data.task_id`) and task-detail responses
//!   (status, progress, estimates, error code, output URLs with the `result.*.url` fallback) and of
//!   the error envelope `{code, message, suggestion}` (also non-JSON bodies);
//! - the classification of Tripo error codes into [`retry::Failure`]s, and the outcome of a poll
//!   ([`poll_outcome`]);
//! - two helpers shared with `openai.rs`: image sniffing ([`ImageFormat`]) and a hand-built
//!   `multipart/form-data` body ([`Multipart`]). (Candidates for a `core::media` module.)
//!
//! Decisions:
//! - **Style.** Prompt and style are always stored in the row (SPEC §4.1). For Tripo, a style that
//!   is one of Tripo's documented presets (`object:clay`, `gold`, ... see [`STYLE_PRESETS`]) is
//!   sent as `style` (text, image and multiview; not for `P1-*` versions, whose pages list no
//!   `style` and which reject unknown fields). A free-text style is appended to a text prompt as
//!   `"<prompt>, <style>"` when the result fits Tripo's 1024 characters, else dropped from the
//!   Tripo prompt. For image inputs a free-text style has nowhere to go and is not sent.
//! - **Refine.** Only `draft_model_task_id` is sent; the options SPEC accepts on `refine-model`
//!   are stored, not forwarded (Tripo documents none).
//! - **Multiview.** 2–4 inputs fill `[front, left, back, right]` in order; missing slots are `{}`.
//! - **Model URL.** [`pick_model_url`]: `pbr_model`, else `base_model`, else `model` (SPEC §6).
//! - **Failed task with error 1000/1001** (a server-side error inside the task): classed
//!   `Transient`, so the step's Run may create a new Tripo task within the attempt budget (failed
//!   tasks are not charged). Every other failure status is final.
//! - **`unknown` status** is non-terminal for [`UNKNOWN_GRACE_MS`], then fails (the docs call it
//!   final, both SDKs keep polling).

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

use super::error::Dependency;
use super::retry::{sanitize_message, Failure, FailureClass};

/// Path of the direct multipart upload (current docs; `/upload` is the older alias).
pub const UPLOAD_PATH: &str = "/upload/sts";
/// Path of task creation.
pub const CREATE_TASK_PATH: &str = "/task";
/// Longest prompt Tripo accepts, in characters.
pub const MAX_PROMPT_CHARS: usize = 1024;
/// How long a task may report `unknown` before we fail it.
pub const UNKNOWN_GRACE_MS: u64 = 5 * 60 * 1000;
/// Tripo's documented `style` presets (providers.md §1.5.1, legacy but still listed).
pub const STYLE_PRESETS: [&str; 8] = [
    "person:person2cartoon",
    "animal:venom",
    "object:clay",
    "object:steampunk",
    "object:christmas",
    "object:barbie",
    "gold",
    "ancient_bronze",
];

/// Path of one task's detail: `/task/{id}`. The id comes from [`parse_create`], which only
/// accepts URL-safe ids.
pub fn task_path(tripo_task_id: &str) -> String {
    format!("/task/{tripo_task_id}")
}

// ---------------------------------------------------------------------------------------------
// Images and multipart (shared with openai.rs)
// ---------------------------------------------------------------------------------------------

/// An accepted input image format (SPEC §4.1: PNG, JPEG or WebP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

impl ImageFormat {
    /// Recognises the format from the magic bytes (never from a name or a declared type).
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        if bytes.starts_with(&[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n']) {
            Some(ImageFormat::Png)
        } else if bytes.len() >= 4 && bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(ImageFormat::Jpeg)
        } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageFormat::Webp)
        } else {
            None
        }
    }

    /// File extension, also Tripo's file-object `type`: `png`, `jpg`, `webp`.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Webp => "webp",
        }
    }

    /// MIME type: `image/png`, `image/jpeg`, `image/webp`.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Webp => "image/webp",
        }
    }

    /// `input.png`, `input.jpg`, `input.webp`: the filename of an upload part.
    pub fn upload_filename(self) -> String {
        format!("input.{}", self.extension())
    }
}

/// A `multipart/form-data` body built in memory (RFC 7578). Parts are appended in order; the
/// caller picks a boundary with [`boundary`] (128 random bits, so a collision with the content is
/// negligible; the body is not scanned for it).
#[derive(Debug)]
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

/// A boundary from 128 random bits: `makeit3d-` + 32 hex digits.
pub fn boundary(random: u128) -> String {
    format!("makeit3d-{random:032x}")
}

/// The `Content-Type` header value for a body built with `boundary`.
pub fn multipart_content_type(boundary: &str) -> String {
    format!("multipart/form-data; boundary={boundary}")
}

/// Escapes a name or filename for a `Content-Disposition` parameter (HTML's rule: `"`, CR, LF
/// percent-encoded).
fn escape_param(s: &str) -> String {
    s.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

impl Multipart {
    pub fn new(boundary: &str) -> Multipart {
        Multipart::with_capacity(boundary, 1024)
    }

    /// Reserves `capacity` bytes up front (e.g. the image size + 1 KiB).
    pub fn with_capacity(boundary: &str, capacity: usize) -> Multipart {
        Multipart {
            boundary: boundary.to_owned(),
            body: Vec::with_capacity(capacity),
        }
    }

    fn start_part(&mut self, disposition: &str) {
        self.body.extend_from_slice(b"--");
        self.body.extend_from_slice(self.boundary.as_bytes());
        self.body
            .extend_from_slice(b"\r\nContent-Disposition: form-data; ");
        self.body.extend_from_slice(disposition.as_bytes());
        self.body.extend_from_slice(b"\r\n");
    }

    /// A text field.
    pub fn text(&mut self, name: &str, value: &str) -> &mut Multipart {
        self.start_part(&format!("name=\"{}\"", escape_param(name)));
        self.body.extend_from_slice(b"\r\n");
        self.body.extend_from_slice(value.as_bytes());
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// A file field with its filename and content type.
    pub fn file(
        &mut self,
        name: &str,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> &mut Multipart {
        self.start_part(&format!(
            "name=\"{}\"; filename=\"{}\"",
            escape_param(name),
            escape_param(filename)
        ));
        self.body.extend_from_slice(b"Content-Type: ");
        self.body.extend_from_slice(content_type.as_bytes());
        self.body.extend_from_slice(b"\r\n\r\n");
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// Closes the body.
    pub fn finish(mut self) -> Vec<u8> {
        self.body.extend_from_slice(b"--");
        self.body.extend_from_slice(self.boundary.as_bytes());
        self.body.extend_from_slice(b"--\r\n");
        self.body
    }
}

/// The body of `POST /upload/sts`: one part named `file`. Send it with
/// `Content-Type: multipart_content_type(boundary)`.
pub fn upload_multipart(
    boundary: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> Vec<u8> {
    let mut m = Multipart::with_capacity(boundary, bytes.len() + 256);
    m.file("file", filename, content_type, bytes);
    m.finish()
}

// ---------------------------------------------------------------------------------------------
// Task payloads
// ---------------------------------------------------------------------------------------------

/// The Tripo task types this service creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    TextToModel,
    ImageToModel,
    MultiviewToModel,
    RefineModel,
}

impl TaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::TextToModel => "text_to_model",
            TaskType::ImageToModel => "image_to_model",
            TaskType::MultiviewToModel => "multiview_to_model",
            TaskType::RefineModel => "refine_model",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `texture_quality` values SPEC §4.1 accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextureQuality {
    Standard,
    Detailed,
}

/// `orientation` values (image and multiview only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Orientation {
    Default,
    AlignImage,
}

/// The model options of a generation request, as the client gave them (`None` = not given, Tripo's
/// default applies). The lead maps `core::request` into this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texture: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pbr: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texture_quality: Option<TextureQuality>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_size: Option<bool>,
}

impl ModelParams {
    /// The options as they are sent: `pbr=true` forces `texture=true`; `texture=false` without
    /// `pbr` sends `pbr=false` (Tripo's `pbr` defaults to true and would force the texture back);
    /// an untextured model gets no `texture_quality` (Tripo rejects `standard` there).
    pub fn normalised(&self) -> ModelParams {
        let mut p = self.clone();
        if p.pbr == Some(true) {
            if p.texture == Some(false) {
                p.texture = Some(true);
            }
        } else if p.texture == Some(false) && p.pbr.is_none() {
            p.pbr = Some(false);
        }
        if p.texture == Some(false) && p.pbr == Some(false) {
            p.texture_quality = None;
        }
        p
    }

    fn is_p1(&self) -> bool {
        self.model_version
            .as_deref()
            .is_some_and(|v| v.starts_with("P1-"))
    }
}

/// An uploaded image, sent as the file object `{"type": "png", "file_token": "…"}` (the `type` is
/// the extension: `png`, `jpg`, `webp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileToken {
    pub format: ImageFormat,
    pub token: String,
}

impl FileToken {
    pub fn new(format: ImageFormat, token: impl Into<String>) -> FileToken {
        FileToken {
            format,
            token: token.into(),
        }
    }
}

/// The wire form of an `ImageFormat` in a file object (`jpg`, not `jpeg`).
struct ImageFormatWire(ImageFormat);

impl Serialize for ImageFormatWire {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.extension())
    }
}

#[derive(Serialize)]
struct FileObject<'a> {
    #[serde(rename = "type")]
    format: ImageFormatWire,
    file_token: &'a str,
}

impl<'a> From<&'a FileToken> for FileObject<'a> {
    fn from(f: &'a FileToken) -> Self {
        FileObject {
            format: ImageFormatWire(f.format),
            file_token: &f.token,
        }
    }
}

/// One multiview slot: a file object or `{}`.
enum Slot<'a> {
    Empty,
    File(FileObject<'a>),
}

impl Serialize for Slot<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Slot::Empty => s.serialize_map(Some(0))?.end(),
            Slot::File(f) => f.serialize(s),
        }
    }
}

/// The task to create, with everything it needs. Built by the lead from the validated request
/// and the upload tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateTask {
    TextToModel {
        prompt: String,
        style: Option<String>,
        params: ModelParams,
    },
    ImageToModel {
        file: FileToken,
        style: Option<String>,
        params: ModelParams,
        orientation: Option<Orientation>,
    },
    /// 2–4 views, in the order front, left, back, right.
    MultiviewToModel {
        files: Vec<FileToken>,
        style: Option<String>,
        params: ModelParams,
        orientation: Option<Orientation>,
    },
    RefineModel {
        draft_model_task_id: String,
    },
}

/// Why a payload could not be built (the request layer should have caught it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("prompt must not be empty")]
    EmptyPrompt,
    #[error("prompt must be at most {MAX_PROMPT_CHARS} characters (got {0})")]
    PromptTooLong(usize),
    #[error("multiview needs 2 to 4 images (got {0})")]
    ViewCount(usize),
    #[error("draft_model_task_id must not be empty")]
    EmptyDraftId,
}

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    task_type: TaskType,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<FileObject<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<Slot<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    draft_model_task_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    texture: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pbr: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    texture_quality: Option<TextureQuality>,
    #[serde(skip_serializing_if = "Option::is_none")]
    face_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_size: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orientation: Option<Orientation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    style: Option<&'static str>,
}

impl<'a> Payload<'a> {
    fn new(task_type: TaskType) -> Payload<'a> {
        Payload {
            task_type,
            prompt: None,
            file: None,
            files: None,
            draft_model_task_id: None,
            model_version: None,
            texture: None,
            pbr: None,
            texture_quality: None,
            face_limit: None,
            auto_size: None,
            orientation: None,
            style: None,
        }
    }

    fn with_params(mut self, params: &ModelParams, style: Option<&str>) -> Payload<'a> {
        let p = params.normalised();
        self.style = if p.is_p1() {
            None
        } else {
            style.and_then(style_preset)
        };
        self.model_version = p.model_version;
        self.texture = p.texture;
        self.pbr = p.pbr;
        self.texture_quality = p.texture_quality;
        self.face_limit = p.face_limit;
        self.auto_size = p.auto_size;
        self
    }
}

/// The preset this style names, if it is one of [`STYLE_PRESETS`] (exact, after trimming).
pub fn style_preset(style: &str) -> Option<&'static str> {
    let s = style.trim();
    STYLE_PRESETS.iter().copied().find(|p| *p == s)
}

/// The prompt sent to Tripo for `text_to_model`: the prompt, plus `", <style>"` for a free-text
/// style when the whole fits in [`MAX_PROMPT_CHARS`].
pub fn tripo_prompt(prompt: &str, style: Option<&str>) -> Result<String, PayloadError> {
    let prompt = prompt.trim();
    if prompt.is_empty() {
        return Err(PayloadError::EmptyPrompt);
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(PayloadError::PromptTooLong(chars));
    }
    match style.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if style_preset(s).is_none() => {
            let joined = format!("{prompt}, {s}");
            if joined.chars().count() <= MAX_PROMPT_CHARS {
                Ok(joined)
            } else {
                Ok(prompt.to_owned())
            }
        }
        _ => Ok(prompt.to_owned()),
    }
}

impl CreateTask {
    pub fn task_type(&self) -> TaskType {
        match self {
            CreateTask::TextToModel { .. } => TaskType::TextToModel,
            CreateTask::ImageToModel { .. } => TaskType::ImageToModel,
            CreateTask::MultiviewToModel { .. } => TaskType::MultiviewToModel,
            CreateTask::RefineModel { .. } => TaskType::RefineModel,
        }
    }

    /// The JSON body of `POST /task`.
    pub fn to_json(&self) -> Result<Value, PayloadError> {
        let payload = match self {
            CreateTask::TextToModel {
                prompt,
                style,
                params,
            } => {
                let mut p =
                    Payload::new(TaskType::TextToModel).with_params(params, style.as_deref());
                p.prompt = Some(tripo_prompt(prompt, style.as_deref())?);
                p
            }
            CreateTask::ImageToModel {
                file,
                style,
                params,
                orientation,
            } => {
                let mut p =
                    Payload::new(TaskType::ImageToModel).with_params(params, style.as_deref());
                p.file = Some(file.into());
                p.orientation = *orientation;
                p
            }
            CreateTask::MultiviewToModel {
                files,
                style,
                params,
                orientation,
            } => {
                let mut p =
                    Payload::new(TaskType::MultiviewToModel).with_params(params, style.as_deref());
                p.files = Some(multiview_slots(files)?);
                p.orientation = *orientation;
                p
            }
            CreateTask::RefineModel {
                draft_model_task_id,
            } => {
                let id = draft_model_task_id.trim();
                if id.is_empty() {
                    return Err(PayloadError::EmptyDraftId);
                }
                let mut p = Payload::new(TaskType::RefineModel);
                p.draft_model_task_id = Some(id);
                p
            }
        };
        // Serializing plain structs of strings, bools and numbers into a Value cannot fail.
        Ok(serde_json::to_value(payload).unwrap_or(Value::Null))
    }
}

/// `[front, left, back, right]` from 2–4 views given in that order; missing views are `{}`.
fn multiview_slots(files: &[FileToken]) -> Result<Vec<Slot<'_>>, PayloadError> {
    if !(2..=4).contains(&files.len()) {
        return Err(PayloadError::ViewCount(files.len()));
    }
    let mut slots: Vec<Slot<'_>> = files.iter().map(|f| Slot::File(f.into())).collect();
    while slots.len() < 4 {
        slots.push(Slot::Empty);
    }
    Ok(slots)
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// Tripo's error envelope `{code, message, suggestion}`, or what we could get from a non-JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Tripo's code (e.g. 2000); `None` when the body was not Tripo JSON.
    pub code: Option<i64>,
    pub message: String,
    pub suggestion: Option<String>,
}

/// A 2xx response we could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// `code != 0` inside a 2xx response.
    #[error("Tripo error {}: {}", .0.code.unwrap_or(-1), .0.message)]
    Api(ErrorBody),
    /// Not JSON, or a field is missing or has the wrong type.
    #[error("malformed Tripo response: {0}")]
    Malformed(String),
}

impl WireError {
    /// The classified failure, for [`retry::decide`](super::retry::decide).
    pub fn to_failure(&self, http_status: u16) -> Failure {
        match self {
            WireError::Api(e) => e.to_failure(http_status, None),
            WireError::Malformed(m) => Failure::bad_response(Dependency::Tripo, m),
        }
    }
}

fn excerpt(body: &str) -> String {
    let t = body.trim();
    if t.is_empty() {
        String::new()
    } else {
        sanitize_message(&t.chars().take(200).collect::<String>())
    }
}

/// Parses an error body: Tripo's envelope, or else the raw text (gateway pages).
pub fn parse_error(body: &str) -> ErrorBody {
    #[derive(Deserialize)]
    struct Envelope {
        code: Option<i64>,
        message: Option<String>,
        suggestion: Option<String>,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(e) if e.code.is_some() || e.message.is_some() => ErrorBody {
            code: e.code,
            message: e.message.unwrap_or_default(),
            suggestion: e.suggestion,
        },
        _ => ErrorBody {
            code: None,
            message: excerpt(body),
            suggestion: None,
        },
    }
}

/// The class and a description of a Tripo error code (providers.md §1.7).
pub fn code_class(code: i64) -> Option<(FailureClass, &'static str)> {
    use FailureClass::{
        Auth, Concurrency, ContentPolicy, InvalidInput, NoCredits, RateLimited, Rejected, Transient,
    };
    Some(match code {
        1000 => (Transient, "unknown error on the server side"),
        1001 => (Transient, "fatal error on the server side"),
        1002 => (Auth, "authentication failed"),
        1003 => (Rejected, "the request body is malformed"),
        1004 => (InvalidInput, "one or more parameters are invalid"),
        1005 => (Auth, "not allowed to access this resource"),
        1007 => (RateLimited, "rate limit exceeded"),
        2000 => (Concurrency, "too many tasks running at once"),
        2001 => (Rejected, "the task was not found"),
        2002 => (Rejected, "this task type is not supported"),
        2003 => (InvalidInput, "the image file is empty"),
        2004 => (InvalidInput, "this image file type is not supported"),
        2005 => (InvalidInput, "the draft task is not a successful task"),
        2006 => (InvalidInput, "the original task type is not supported"),
        2007 => (InvalidInput, "the original task has not succeeded"),
        2008 => (
            ContentPolicy,
            "the input was rejected by the content policy",
        ),
        2009 => (InvalidInput, "the prompt contains invalid characters"),
        2010 => (NoCredits, "not enough credit to create this task"),
        2014 => (Transient, "error while auditing the input"),
        2015 => (InvalidInput, "the model version has been deprecated"),
        2016 => (InvalidInput, "the request type has been deprecated"),
        2017 => (InvalidInput, "the model version is invalid"),
        2018 => (InvalidInput, "the model is too complex to remesh"),
        2019 => (InvalidInput, "the uploaded file was not found"),
        _ => return None,
    })
}

impl ErrorBody {
    /// Classifies by Tripo code when known, else by HTTP status. The provider's message is kept
    /// (except for credential errors); the code is appended, e.g. `"Tripo: … (2010)"`.
    pub fn to_failure(&self, http_status: u16, retry_after_ms: Option<u64>) -> Failure {
        let known = self.code.and_then(code_class);
        let class = match known {
            Some((class, _)) => class,
            None => super::retry::classify_status(http_status),
        };
        let text = if self.message.trim().is_empty() {
            known.map(|(_, d)| d.to_owned()).unwrap_or_default()
        } else {
            self.message.trim().to_owned()
        };
        let detail = match (class, self.code) {
            (FailureClass::Auth, _) => format!("credentials refused (HTTP {http_status})"),
            (_, Some(code)) => format!("{text} ({code})"),
            (_, None) if text.is_empty() => format!("HTTP {http_status}"),
            (_, None) => format!("HTTP {http_status}: {text}"),
        };
        Failure::new(Dependency::Tripo, class, &detail).with_retry_after(retry_after_ms)
    }
}

/// The classified failure of a non-2xx Tripo response.
pub fn failure(http_status: u16, body: &str, retry_after_ms: Option<u64>) -> Failure {
    parse_error(body).to_failure(http_status, retry_after_ms)
}

/// Parses the `{code, data}` envelope of a 2xx body and returns `data` (v2; v3 adds a
/// `status` string beside `code`, which this ignores).
pub(crate) fn data_of(body: &str) -> Result<Value, WireError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|_| WireError::Malformed(format!("not JSON: {}", excerpt(body))))?;
    let code = v.get("code").and_then(Value::as_i64);
    match code {
        Some(0) => {}
        Some(_) => return Err(WireError::Api(parse_error(body))),
        None => return Err(WireError::Malformed("no `code` in the envelope".into())),
    }
    match v {
        Value::Object(mut m) => match m.remove("data") {
            Some(d @ Value::Object(_)) => Ok(d),
            _ => Err(WireError::Malformed("no `data` object".into())),
        },
        _ => Err(WireError::Malformed("the body is not an object".into())),
    }
}

/// True for ids we put in a URL path or a JSON file object: 1–128 of `[A-Za-z0-9_-]`.
pub fn is_plain_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn id_field(data: &Value, field: &str) -> Result<String, WireError> {
    match data.get(field).and_then(Value::as_str) {
        Some(s) if is_plain_id(s) => Ok(s.to_owned()),
        Some(_) => Err(WireError::Malformed(format!(
            "`data.{field}` is not a plain id"
        ))),
        None => Err(WireError::Malformed(format!("no `data.{field}`"))),
    }
}

/// `data.image_token` of the upload response.
pub fn parse_upload(body: &str) -> Result<String, WireError> {
    id_field(&data_of(body)?, "image_token")
}

/// `data.task_id` of the create response.
pub fn parse_create(body: &str) -> Result<String, WireError> {
    id_field(&data_of(body)?, "task_id")
}

/// Status of a Tripo task. Strings we do not know parse as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Success,
    Failed,
    Banned,
    Expired,
    Cancelled,
    Unknown,
}

impl TaskStatus {
    pub fn parse(s: &str) -> TaskStatus {
        match s {
            "queued" => TaskStatus::Queued,
            "running" => TaskStatus::Running,
            "success" => TaskStatus::Success,
            "failed" => TaskStatus::Failed,
            "banned" => TaskStatus::Banned,
            "expired" => TaskStatus::Expired,
            "cancelled" | "canceled" => TaskStatus::Cancelled,
            _ => TaskStatus::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Success => "success",
            TaskStatus::Failed => "failed",
            TaskStatus::Banned => "banned",
            TaskStatus::Expired => "expired",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Unknown => "unknown",
        }
    }
}

impl<'de> Deserialize<'de> for TaskStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(TaskStatus::parse(&s))
    }
}

/// Output URLs of a task (`output.*`, else `result.*.url`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutput {
    pub pbr_model: Option<String>,
    pub base_model: Option<String>,
    pub model: Option<String>,
    pub rendered_image: Option<String>,
}

/// The fields of `GET /task/{id}` we use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDetail {
    pub task_id: String,
    pub status: TaskStatus,
    /// 0–100 (clamped); `None` when absent.
    pub progress: Option<u8>,
    /// Seconds left; `None` when absent or `-1`.
    pub running_left_time: Option<i64>,
    /// Queue position; `None` when absent or `-1`.
    pub queuing_num: Option<i64>,
    pub error_code: Option<i64>,
    pub error_msg: Option<String>,
    pub output: TaskOutput,
}

fn url_field(output: Option<&Value>, result: Option<&Value>, key: &str) -> Option<String> {
    let direct = output
        .and_then(|o| o.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let nested = || {
        result
            .and_then(|r| r.get(key))
            .and_then(|e| e.get("url"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    direct.or_else(nested).map(str::to_owned)
}

#[allow(clippy::cast_possible_truncation)] // a whole number sent as a float; `as` saturates
fn int_field(data: &Value, key: &str) -> Option<i64> {
    let v = data.get(key)?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f.round() as i64))
}

/// Parses `GET /task/{id}`.
pub fn parse_task(body: &str) -> Result<TaskDetail, WireError> {
    task_from_data(&data_of(body)?)
}

/// The task detail in a `data` object (v2 field names; `core::tripo_v3` adds the v3 ones).
pub(crate) fn task_from_data(data: &Value) -> Result<TaskDetail, WireError> {
    let status = data
        .get("status")
        .and_then(Value::as_str)
        .map(TaskStatus::parse)
        .ok_or_else(|| WireError::Malformed("no `data.status`".into()))?;
    let task_id = data
        .get("task_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let non_negative = |k: &str| int_field(data, k).filter(|n| *n >= 0);
    let output = data.get("output").filter(|v| v.is_object());
    let result = data.get("result").filter(|v| v.is_object());
    Ok(TaskDetail {
        task_id,
        status,
        progress: int_field(data, "progress").and_then(|p| u8::try_from(p.clamp(0, 100)).ok()),
        running_left_time: non_negative("running_left_time"),
        queuing_num: non_negative("queuing_num"),
        error_code: int_field(data, "error_code"),
        error_msg: data
            .get("error_msg")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned),
        output: TaskOutput {
            pbr_model: url_field(output, result, "pbr_model"),
            base_model: url_field(output, result, "base_model"),
            model: url_field(output, result, "model"),
            rendered_image: url_field(output, result, "rendered_image"),
        },
    })
}

/// The model to copy: `pbr_model`, else `base_model`, else `model` (SPEC §6).
pub fn pick_model_url(output: &TaskOutput) -> Option<&str> {
    output
        .pbr_model
        .as_deref()
        .or(output.base_model.as_deref())
        .or(output.model.as_deref())
}

impl TaskDetail {
    /// Progress for our status view: 100 on success, 0 while queued, else Tripo's value.
    pub fn progress_percent(&self) -> u8 {
        match self.status {
            TaskStatus::Success => 100,
            TaskStatus::Queued => 0,
            _ => self.progress.unwrap_or(0).min(100),
        }
    }

    /// A short description for logs and deadline messages: `"running, 42%"`, `"queued (#3)"`.
    pub fn describe(&self) -> String {
        match (self.status, self.queuing_num) {
            (TaskStatus::Queued, Some(n)) => format!("queued (#{n})"),
            (TaskStatus::Running, _) => format!("running, {}%", self.progress_percent()),
            (s, _) => s.as_str().to_owned(),
        }
    }
}

/// What a poll says about the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// Still going: keep `progress`, re-arm with `retry::next_poll_delay_ms(_, running_left_time)`.
    InProgress {
        progress: u8,
        running_left_time: Option<i64>,
    },
    /// Done: enqueue Finalize to copy this URL.
    Succeeded { model_url: String },
    /// Over: decide with `retry::decide` (final unless error 1000/1001, see the module doc).
    Failed(Failure),
}

/// Interprets a task detail. `unknown_for_ms`: how long the task has been reporting `unknown`
/// without interruption (0 the first time).
pub fn poll_outcome(detail: &TaskDetail, unknown_for_ms: u64) -> PollOutcome {
    let in_progress = || PollOutcome::InProgress {
        progress: detail.progress_percent(),
        running_left_time: detail.running_left_time,
    };
    match detail.status {
        TaskStatus::Queued | TaskStatus::Running => in_progress(),
        TaskStatus::Unknown if unknown_for_ms < UNKNOWN_GRACE_MS => in_progress(),
        TaskStatus::Success => match pick_model_url(&detail.output) {
            Some(url) => PollOutcome::Succeeded {
                model_url: url.to_owned(),
            },
            None => PollOutcome::Failed(Failure::new(
                Dependency::Tripo,
                FailureClass::TaskFailed,
                "the task succeeded but returned no model URL",
            )),
        },
        _ => PollOutcome::Failed(task_failure(detail, unknown_for_ms)),
    }
}

/// The failure of a task in a terminal, unsuccessful status.
fn task_failure(detail: &TaskDetail, unknown_for_ms: u64) -> Failure {
    let known = detail.error_code.and_then(code_class);
    let msg = detail
        .error_msg
        .clone()
        .or_else(|| known.map(|(_, d)| d.to_owned()));
    let with_code = |base: &str| match (msg.as_deref(), detail.error_code) {
        (Some(m), Some(c)) => format!("{base}: {m} (error {c})"),
        (Some(m), None) => format!("{base}: {m}"),
        (None, Some(c)) => format!("{base} (error {c})"),
        (None, None) => base.to_owned(),
    };
    let (class, text) = match detail.status {
        TaskStatus::Banned => (
            FailureClass::ContentPolicy,
            "the input was rejected by Tripo's content policy".to_owned(),
        ),
        TaskStatus::Failed => match known {
            Some((FailureClass::ContentPolicy, _)) => {
                (FailureClass::ContentPolicy, with_code("the task failed"))
            }
            Some((FailureClass::Transient, _)) => {
                (FailureClass::Transient, with_code("the task failed"))
            }
            _ => (FailureClass::TaskFailed, with_code("the task failed")),
        },
        TaskStatus::Expired => (FailureClass::TaskFailed, with_code("the task expired")),
        TaskStatus::Cancelled => (
            FailureClass::TaskFailed,
            with_code("the task was cancelled"),
        ),
        TaskStatus::Unknown => (
            FailureClass::TaskFailed,
            format!(
                "the task reported status `unknown` for {} min",
                unknown_for_ms / 60_000
            ),
        ),
        // Not terminal; callers only get here for the statuses above.
        TaskStatus::Queued | TaskStatus::Running | TaskStatus::Success => (
            FailureClass::TaskFailed,
            with_code("the task ended unexpectedly"),
        ),
    };
    Failure::new(Dependency::Tripo, class, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tok(f: ImageFormat, t: &str) -> FileToken {
        FileToken::new(f, t)
    }

    #[test]
    fn sniffs_images() {
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(&[0xff, 0xd8, 0xff, 0xe0, 0, 0x10]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::sniff(b"RIFF\x24\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(ImageFormat::sniff(b"RIFF\x24\0\0\0WAVEfmt "), None);
        assert_eq!(ImageFormat::sniff(b"GIF89a"), None);
        assert_eq!(ImageFormat::sniff(b""), None);
        assert_eq!(ImageFormat::Jpeg.extension(), "jpg");
        assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
        assert_eq!(ImageFormat::Webp.upload_filename(), "input.webp");
    }

    #[test]
    fn builds_upload_multipart() {
        let b = boundary(0xabc);
        assert_eq!(b, "makeit3d-00000000000000000000000000000abc");
        let body = upload_multipart(&b, "input.png", "image/png", b"\x89PNG..");
        let mut want = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"input.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        want.extend_from_slice(b"\x89PNG..");
        want.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        assert_eq!(body, want);
        assert_eq!(
            multipart_content_type(&b),
            format!("multipart/form-data; boundary={b}")
        );
        let mut m = Multipart::new("x");
        m.text("a\"b", "v");
        assert_eq!(
            m.finish(),
            b"--x\r\nContent-Disposition: form-data; name=\"a%22b\"\r\n\r\nv\r\n--x--\r\n"
        );
    }

    #[test]
    fn text_to_model_sends_only_documented_fields() {
        let t = CreateTask::TextToModel {
            prompt: "a small cat".into(),
            style: Some("watercolor".into()),
            params: ModelParams {
                model_version: Some("v2.5-20250123".into()),
                texture: Some(true),
                pbr: Some(true),
                texture_quality: Some(TextureQuality::Standard),
                face_limit: Some(10_000),
                auto_size: None,
            },
        };
        assert_eq!(
            t.to_json().unwrap(),
            json!({"type":"text_to_model","prompt":"a small cat, watercolor","model_version":"v2.5-20250123",
                   "texture":true,"pbr":true,"texture_quality":"standard","face_limit":10000})
        );
    }

    #[test]
    fn style_presets_go_to_the_style_field_except_on_p1() {
        let mk = |version: &str| CreateTask::TextToModel {
            prompt: "a cat".into(),
            style: Some(" object:clay ".into()),
            params: ModelParams {
                model_version: Some(version.into()),
                ..Default::default()
            },
        };
        let v = mk("v2.5-20250123").to_json().unwrap();
        assert_eq!(v["style"], "object:clay");
        assert_eq!(v["prompt"], "a cat");
        let p1 = mk("P1-20260311").to_json().unwrap();
        assert!(p1.get("style").is_none());
        assert_eq!(p1["prompt"], "a cat");
    }

    #[test]
    fn free_text_style_is_dropped_when_it_does_not_fit() {
        let long = "p".repeat(1_020);
        assert_eq!(tripo_prompt(&long, Some("noir")).unwrap(), long);
        let fits = "p".repeat(1_018);
        assert_eq!(
            tripo_prompt(&fits, Some("noir")).unwrap().chars().count(),
            1_024
        );
        assert_eq!(
            tripo_prompt(&"é".repeat(1_024), None)
                .unwrap()
                .chars()
                .count(),
            1_024
        );
        assert_eq!(
            tripo_prompt(&"p".repeat(1_025), None),
            Err(PayloadError::PromptTooLong(1_025))
        );
        assert_eq!(
            tripo_prompt("  ", Some("x")),
            Err(PayloadError::EmptyPrompt)
        );
        assert_eq!(tripo_prompt("cat", Some("  ")).unwrap(), "cat");
    }

    #[test]
    fn texture_options_are_normalised() {
        // pbr=true forces texture.
        let p = ModelParams {
            texture: Some(false),
            pbr: Some(true),
            ..Default::default()
        }
        .normalised();
        assert_eq!((p.texture, p.pbr), (Some(true), Some(true)));
        // texture=false alone: send pbr=false too, and drop texture_quality.
        let p = ModelParams {
            texture: Some(false),
            texture_quality: Some(TextureQuality::Standard),
            ..Default::default()
        }
        .normalised();
        assert_eq!(
            (p.texture, p.pbr, p.texture_quality),
            (Some(false), Some(false), None)
        );
        // Untouched otherwise.
        let q = ModelParams {
            texture: Some(true),
            texture_quality: Some(TextureQuality::Detailed),
            ..Default::default()
        };
        assert_eq!(q.normalised(), q);
    }

    #[test]
    fn image_to_model_has_file_and_orientation_but_no_prompt() {
        let t = CreateTask::ImageToModel {
            file: tok(ImageFormat::Jpeg, "ce85f375-3ccc-440b-b847-571588872ec2"),
            style: Some("cozy".into()),
            params: ModelParams {
                texture: Some(true),
                ..Default::default()
            },
            orientation: Some(Orientation::AlignImage),
        };
        assert_eq!(
            t.to_json().unwrap(),
            json!({"type":"image_to_model","file":{"type":"jpg","file_token":"ce85f375-3ccc-440b-b847-571588872ec2"},
                   "texture":true,"orientation":"align_image"})
        );
    }

    #[test]
    fn multiview_fills_front_left_back_right() {
        let t = CreateTask::MultiviewToModel {
            files: vec![tok(ImageFormat::Png, "a"), tok(ImageFormat::Webp, "b")],
            style: None,
            params: ModelParams::default(),
            orientation: None,
        };
        assert_eq!(
            t.to_json().unwrap(),
            json!({"type":"multiview_to_model","files":[{"type":"png","file_token":"a"},
                   {"type":"webp","file_token":"b"},{},{}]})
        );
        let four = CreateTask::MultiviewToModel {
            files: ["a", "b", "c", "d"]
                .iter()
                .map(|t| tok(ImageFormat::Png, t))
                .collect(),
            style: None,
            params: ModelParams::default(),
            orientation: None,
        };
        assert_eq!(four.to_json().unwrap()["files"][3]["file_token"], "d");
        let one = CreateTask::MultiviewToModel {
            files: vec![tok(ImageFormat::Png, "a")],
            style: None,
            params: ModelParams::default(),
            orientation: None,
        };
        assert_eq!(one.to_json(), Err(PayloadError::ViewCount(1)));
    }

    #[test]
    fn refine_sends_only_the_draft_id() {
        let t = CreateTask::RefineModel {
            draft_model_task_id: "1ec04ced-4b87".into(),
        };
        assert_eq!(
            t.to_json().unwrap(),
            json!({"type":"refine_model","draft_model_task_id":"1ec04ced-4b87"})
        );
        assert_eq!(t.task_type(), TaskType::RefineModel);
        let empty = CreateTask::RefineModel {
            draft_model_task_id: " ".into(),
        };
        assert_eq!(empty.to_json(), Err(PayloadError::EmptyDraftId));
    }

    #[test]
    fn parses_upload_and_create() {
        assert_eq!(
            parse_upload(
                r#"{"code":0,"data":{"image_token":"ce85f375-3ccc-440b-b847-571588872ec2"}}"#
            )
            .unwrap(),
            "ce85f375-3ccc-440b-b847-571588872ec2"
        );
        assert_eq!(
            parse_create(r#"{"code":0,"data":{"task_id":"1ec04ced-4b87-44f6-a296-beee80777941"}}"#)
                .unwrap(),
            "1ec04ced-4b87-44f6-a296-beee80777941"
        );
        assert!(matches!(
            parse_create(r#"{"code":0,"data":{"task_id":"../x"}}"#),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            parse_create(r#"{"code":0,"data":{}}"#),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            parse_create("<html>"),
            Err(WireError::Malformed(_))
        ));
        match parse_create(r#"{"code":2010,"message":"You don't have enough credit"}"#) {
            Err(e @ WireError::Api(_)) => {
                assert_eq!(e.to_failure(200).class, FailureClass::NoCredits);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(task_path("abc-1"), "/task/abc-1");
    }

    #[test]
    fn classifies_error_envelopes() {
        let f = failure(
            429,
            r#"{"code":2000,"message":"You have exceeded the limit of generation","suggestion":"Try again later"}"#,
            Some(3_000),
        );
        assert_eq!(f.class, FailureClass::Concurrency);
        assert_eq!(f.retry_after_ms, Some(3_000));
        assert_eq!(
            f.reason,
            "Tripo: You have exceeded the limit of generation (2000)"
        );
        assert_eq!(
            failure(429, r#"{"code":1007,"message":"Rate limit"}"#, None).class,
            FailureClass::RateLimited
        );
        assert_eq!(
            failure(500, r#"{"code":1001,"message":"Fatal"}"#, None).class,
            FailureClass::Transient
        );
        assert_eq!(
            failure(400, r#"{"code":2008,"message":"content policy"}"#, None).class,
            FailureClass::ContentPolicy
        );
        assert_eq!(
            failure(403, r#"{"code":2010,"message":"credit"}"#, None).class,
            FailureClass::NoCredits
        );
        let auth = failure(
            401,
            r#"{"code":1002,"message":"Authentication failed for tsk_123"}"#,
            None,
        );
        assert_eq!(auth.class, FailureClass::Auth);
        assert!(!auth.reason.contains("tsk_"));
        let gw = failure(502, "<html>Bad Gateway</html>", None);
        assert_eq!(gw.class, FailureClass::Transient);
        assert_eq!(gw.reason, "Tripo: HTTP 502: <html>Bad Gateway</html>");
        // Unknown code: by HTTP status.
        assert_eq!(
            failure(418, r#"{"code":9999,"message":"teapot"}"#, None).class,
            FailureClass::Rejected
        );
        let no_msg = failure(400, r#"{"code":2004}"#, None);
        assert_eq!(
            no_msg.reason,
            "Tripo: this image file type is not supported (2004)"
        );
        assert_eq!(no_msg.class, FailureClass::InvalidInput);
    }

    const RUNNING: &str = r#"{ "code": 0, "data": { "task_id": "ef731ad6", "type": "text_to_model", "status": "running",
      "input": { "prompt": "a small cat" }, "output": {}, "progress": 99, "consumed_credit": 60,
      "queuing_num": -1, "running_left_time": 12, "create_time": 1709048933 } }"#;

    #[test]
    fn parses_running_task() {
        let d = parse_task(RUNNING).unwrap();
        assert_eq!(d.status, TaskStatus::Running);
        assert_eq!(d.progress, Some(99));
        assert_eq!(d.running_left_time, Some(12));
        assert_eq!(d.queuing_num, None);
        assert_eq!(d.describe(), "running, 99%");
        assert_eq!(
            poll_outcome(&d, 0),
            PollOutcome::InProgress {
                progress: 99,
                running_left_time: Some(12)
            }
        );
    }

    #[test]
    fn parses_success_with_output_and_result_fallback() {
        let body = r#"{"code":0,"data":{"task_id":"6a41","status":"success","progress":100,
          "output":{"model":"https://cdn/m.glb","rendered_image":"https://cdn/r.webp"},
          "result":{"pbr_model":{"type":"glb","url":"https://cdn/pbr.glb"},"model":{"type":"glb","url":"https://cdn/other.glb"}}}}"#;
        let d = parse_task(body).unwrap();
        // output.* wins over result.*; result fills the gaps.
        assert_eq!(d.output.model.as_deref(), Some("https://cdn/m.glb"));
        assert_eq!(d.output.pbr_model.as_deref(), Some("https://cdn/pbr.glb"));
        assert_eq!(pick_model_url(&d.output), Some("https://cdn/pbr.glb"));
        assert_eq!(
            poll_outcome(&d, 0),
            PollOutcome::Succeeded {
                model_url: "https://cdn/pbr.glb".into()
            }
        );
        let base_only = TaskOutput {
            base_model: Some("b".into()),
            model: Some("m".into()),
            ..Default::default()
        };
        assert_eq!(pick_model_url(&base_only), Some("b"));
        assert_eq!(pick_model_url(&TaskOutput::default()), None);
    }

    #[test]
    fn success_without_url_fails() {
        let d = parse_task(
            r#"{"code":0,"data":{"task_id":"x","status":"success","output":{},"result":{}}}"#,
        )
        .unwrap();
        match poll_outcome(&d, 0) {
            PollOutcome::Failed(f) => assert_eq!(f.class, FailureClass::TaskFailed),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn maps_terminal_statuses() {
        let failed = parse_task(
            r#"{ "code": 0, "data": { "task_id": "916e", "type": "text_to_model", "status": "failed",
              "output": {}, "progress": 100, "error_code": 1001, "queuing_num": -1, "running_left_time": -1, "result": {} } }"#,
        )
        .unwrap();
        assert_eq!(failed.running_left_time, None);
        match poll_outcome(&failed, 0) {
            PollOutcome::Failed(f) => {
                assert_eq!(f.class, FailureClass::Transient);
                assert_eq!(
                    f.reason,
                    "Tripo: the task failed: fatal error on the server side (error 1001)"
                );
            }
            other => panic!("{other:?}"),
        }
        let with_msg = parse_task(r#"{"code":0,"data":{"task_id":"a","status":"failed","error_code":2018,"error_msg":"too complex"}}"#).unwrap();
        match poll_outcome(&with_msg, 0) {
            PollOutcome::Failed(f) => {
                assert_eq!(f.class, FailureClass::TaskFailed);
                assert_eq!(f.reason, "Tripo: the task failed: too complex (error 2018)");
            }
            other => panic!("{other:?}"),
        }
        let banned = parse_task(r#"{"code":0,"data":{"task_id":"a","status":"banned"}}"#).unwrap();
        assert!(
            matches!(poll_outcome(&banned, 0), PollOutcome::Failed(f) if f.class == FailureClass::ContentPolicy)
        );
        let expired =
            parse_task(r#"{"code":0,"data":{"task_id":"a","status":"expired"}}"#).unwrap();
        assert!(
            matches!(poll_outcome(&expired, 0), PollOutcome::Failed(f) if f.reason == "Tripo: the task expired")
        );
        let cancelled =
            parse_task(r#"{"code":0,"data":{"task_id":"a","status":"cancelled"}}"#).unwrap();
        assert!(
            matches!(poll_outcome(&cancelled, 0), PollOutcome::Failed(f) if f.class == FailureClass::TaskFailed)
        );
    }

    #[test]
    fn unknown_is_tolerated_for_a_bounded_time() {
        let d = parse_task(r#"{"code":0,"data":{"task_id":"a","status":"weird","progress":"x"}}"#)
            .unwrap();
        assert_eq!(d.status, TaskStatus::Unknown);
        assert_eq!(d.progress, None);
        assert!(matches!(
            poll_outcome(&d, 60_000),
            PollOutcome::InProgress { progress: 0, .. }
        ));
        match poll_outcome(&d, UNKNOWN_GRACE_MS) {
            PollOutcome::Failed(f) => assert_eq!(
                f.reason,
                "Tripo: the task reported status `unknown` for 5 min"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn queued_task_and_odd_numbers() {
        let d = parse_task(r#"{"code":0,"data":{"task_id":"a","status":"queued","progress":250.4,"queuing_num":3,"running_left_time":-1}}"#).unwrap();
        assert_eq!(d.progress, Some(100));
        assert_eq!(d.progress_percent(), 0);
        assert_eq!(d.queuing_num, Some(3));
        assert_eq!(d.describe(), "queued (#3)");
        assert!(matches!(
            parse_task(r#"{"code":0,"data":{"task_id":"a"}}"#),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            parse_task(r#"{"code":1,"message":"x"}"#),
            Err(WireError::Api(_))
        ));
    }
}
