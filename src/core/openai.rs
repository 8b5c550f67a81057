//! OpenAI Images `POST {OPENAI_BASE_URL}/images/edits` wire contract (providers.md PART 2), pure.
//!
//! This module owns:
//! - [`EditRequest`] (validated on construction) and the hand-built `multipart/form-data` body
//!   ([`edit_multipart`]): one `image` part with a real filename and content type
//!   (`input.png|jpg|webp`, never `application/octet-stream`, which OpenAI refuses), then
//!   `prompt` (`"<prompt> Style: <style>"`, SPEC §4.1), `model` (default `gpt-image-1`), `n`,
//!   `size` (default `1024x1024`) and `background` only when given. Nothing else is sent
//!   (`output_format` stays at its default, PNG, which is verified on decode).
//! - The success response: [`parse_edit_response`] borrows the `b64_json` strings from the body
//!   (no copy) and [`EditResponse::decode`] / [`EditResponse::into_images`] decode **one image at a
//!   time**, checking that it is a PNG, so the glue never holds more than one decoded image.
//! - The error body `{"error":{message,type,param,code,moderation_details}}`, its [`ErrorKind`]
//!   and the classified [`retry::Failure`](super::retry::Failure) ([`failure`]).
//!
//! Memory (P9 finding 8, docs/architecture.md "Memory of a concepts job"): the request body is
//! built around the image ([`edit_multipart_around`]) so the glue never copies the input
//! (≤ 20 MB) inside WebAssembly memory, and drops it before the reply is read; the reply (n
//! base64 images) is read once as bytes and parsed in place ([`parse_edit_response`] borrows
//! every `b64_json` from those bytes), then decoded one image at a time.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use super::error::Dependency;
use super::retry::{classify_status, Failure, FailureClass};
use super::tripo::{ImageFormat, Multipart};

/// Path under `OPENAI_BASE_URL` (which ends in `/v1`).
pub const EDITS_PATH: &str = "/images/edits";
/// Model when `OPENAI_IMAGE_MODEL` is not set.
pub const DEFAULT_MODEL: &str = "gpt-image-1";
/// Output size when none is configured.
pub const DEFAULT_SIZE: &str = "1024x1024";
/// Most images per request.
pub const MAX_N: u8 = 10;
/// Longest prompt of the GPT image models, in characters (style included).
pub const MAX_PROMPT_CHARS: usize = 32_000;

/// `background` values (SPEC §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Background {
    Transparent,
    Opaque,
    Auto,
}

impl Background {
    pub fn as_str(self) -> &'static str {
        match self {
            Background::Transparent => "transparent",
            Background::Opaque => "opaque",
            Background::Auto => "auto",
        }
    }
}

/// Why an [`EditRequest`] could not be built (the request layer should have caught it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("prompt must not be empty")]
    EmptyPrompt,
    #[error("prompt and style must be at most {MAX_PROMPT_CHARS} characters (got {0})")]
    PromptTooLong(usize),
    #[error("n must be between 1 and {MAX_N} (got {0})")]
    N(u8),
    #[error("model and size must not be empty")]
    EmptySetting,
}

/// A validated image-edit request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditRequest {
    model: String,
    prompt: String,
    n: u8,
    size: String,
    background: Option<Background>,
}

/// `"<prompt> Style: <style>"` when a non-blank style is given, else the prompt (SPEC §4.1).
pub fn full_prompt(prompt: &str, style: Option<&str>) -> String {
    let prompt = prompt.trim();
    match style.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => format!("{prompt} Style: {s}"),
        None => prompt.to_owned(),
    }
}

impl EditRequest {
    /// Validates and builds. `model`/`size` `None` → [`DEFAULT_MODEL`] / [`DEFAULT_SIZE`].
    pub fn new(
        prompt: &str,
        style: Option<&str>,
        n: u8,
        background: Option<Background>,
        model: Option<&str>,
        size: Option<&str>,
    ) -> Result<EditRequest, EditError> {
        if prompt.trim().is_empty() {
            return Err(EditError::EmptyPrompt);
        }
        let prompt = full_prompt(prompt, style);
        let chars = prompt.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return Err(EditError::PromptTooLong(chars));
        }
        if !(1..=MAX_N).contains(&n) {
            return Err(EditError::N(n));
        }
        let model = model.map_or(DEFAULT_MODEL, str::trim);
        let size = size.map_or(DEFAULT_SIZE, str::trim);
        if model.is_empty() || size.is_empty() {
            return Err(EditError::EmptySetting);
        }
        Ok(EditRequest {
            model: model.to_owned(),
            prompt,
            n,
            size: size.to_owned(),
            background,
        })
    }

    /// The prompt as sent (style included).
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn n(&self) -> u8 {
        self.n
    }

    pub fn size(&self) -> &str {
        &self.size
    }

    pub fn background(&self) -> Option<Background> {
        self.background
    }
}

/// The multipart body of `POST /images/edits` without the image bytes: `(head, tail)` such that
/// `head + image + tail` is [`edit_multipart`]`(boundary, req, image, format)` (the image part
/// comes first). The glue copies the three pieces into one JS buffer and drops the image, so the
/// input is never held twice in WebAssembly memory and not at all while the reply is awaited.
pub fn edit_multipart_around(
    boundary: &str,
    req: &EditRequest,
    format: ImageFormat,
) -> (Vec<u8>, Vec<u8>) {
    let mut full = edit_multipart(boundary, req, &[], format);
    // The image part is the first part: its bytes start after the first blank line.
    let at = full
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(full.len(), |p| p + 4);
    let tail = full.split_off(at);
    (full, tail)
}

/// The multipart body of `POST /images/edits`. Send it with
/// `Content-Type: tripo::multipart_content_type(boundary)`.
pub fn edit_multipart(
    boundary: &str,
    req: &EditRequest,
    image: &[u8],
    format: ImageFormat,
) -> Vec<u8> {
    let mut m = Multipart::with_capacity(boundary, image.len() + req.prompt.len() + 1024);
    m.file("image", &format.upload_filename(), format.mime(), image)
        .text("prompt", &req.prompt)
        .text("model", &req.model)
        .text("n", &req.n.to_string())
        .text("size", &req.size);
    if let Some(bg) = req.background {
        m.text("background", bg.as_str());
    }
    m.finish()
}

// ---------------------------------------------------------------------------------------------
// Success response
// ---------------------------------------------------------------------------------------------

/// Why a success response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed OpenAI response: {0}")]
    Malformed(String),
    #[error("OpenAI did not return any images")]
    NoImages,
    #[error("OpenAI returned image URLs instead of base64 data (is the model a GPT image model?)")]
    NotBase64,
    #[error("image {0} is not valid base64")]
    InvalidBase64(usize),
    #[error("image {0} is not a PNG")]
    NotPng(usize),
    #[error("there is no image {0}")]
    NoSuchImage(usize),
}

impl ResponseError {
    /// The classified failure: a malformed answer is transient (retry); anything else means the
    /// answer is unusable as asked and is final.
    pub fn to_failure(&self) -> Failure {
        let class = match self {
            ResponseError::Malformed(_) => FailureClass::Transient,
            _ => FailureClass::TaskFailed,
        };
        Failure::new(Dependency::OpenAi, class, &self.to_string())
    }
}

/// A parsed edit response: the base64 images, borrowed from the body when possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditResponse<'a> {
    images: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawResponse<'a> {
    #[serde(borrow)]
    data: Option<Vec<RawImage<'a>>>,
}

/// A `Cow<str>` that serde borrows from the input when it can: `#[serde(borrow)]` borrows only
/// a bare `Cow<str>` field, not one inside an `Option` (that one was always copied).
#[derive(Deserialize)]
struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct RawImage<'a> {
    #[serde(borrow, default)]
    b64_json: Option<Borrowed<'a>>,
    #[serde(default)]
    url: Option<serde::de::IgnoredAny>,
}

/// Parses the body of a 2xx `images/edits` answer, straight from the bytes read (no UTF-8
/// `String` copy of a body that holds n base64 images). At least one image is required.
pub fn parse_edit_response(body: &[u8]) -> Result<EditResponse<'_>, ResponseError> {
    let raw: RawResponse<'_> = serde_json::from_slice(body)
        .map_err(|e| ResponseError::Malformed(format!("not the expected JSON ({e})")))?;
    let data = raw.data.unwrap_or_default();
    if data.is_empty() {
        return Err(ResponseError::NoImages);
    }
    let mut images = Vec::with_capacity(data.len());
    for item in data {
        match item.b64_json {
            Some(Borrowed(b)) => images.push(b),
            None if item.url.is_some() => return Err(ResponseError::NotBase64),
            None => return Err(ResponseError::Malformed("an image has no b64_json".into())),
        }
    }
    Ok(EditResponse { images })
}

/// Decodes one base64 image and checks that it is a PNG (signature, then an `IHDR` chunk).
fn decode_png(index: usize, b64: &str) -> Result<Vec<u8>, ResponseError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ResponseError::InvalidBase64(index))?;
    check_png(index, bytes)
}

/// `bytes` if they are a PNG (signature, then an `IHDR` chunk).
fn check_png(index: usize, bytes: Vec<u8>) -> Result<Vec<u8>, ResponseError> {
    let is_png = ImageFormat::sniff(&bytes) == Some(ImageFormat::Png)
        && bytes.get(12..16) == Some(b"IHDR".as_slice());
    if is_png {
        Ok(bytes)
    } else {
        Err(ResponseError::NotPng(index))
    }
}

impl<'a> EditResponse<'a> {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Never true for a value from [`parse_edit_response`].
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Whether every base64 image is a slice of `body` (none was copied by the parse).
    pub fn borrows_from(&self, body: &[u8]) -> bool {
        let range = body.as_ptr_range();
        self.images.iter().all(|b| match b {
            Cow::Borrowed(s) => {
                let r = s.as_bytes().as_ptr_range();
                range.start <= r.start && r.end <= range.end
            }
            Cow::Owned(_) => false,
        })
    }

    /// Decodes image `index` (a PNG). Only that image is decoded.
    pub fn decode(&self, index: usize) -> Result<Vec<u8>, ResponseError> {
        let b64 = self
            .images
            .get(index)
            .ok_or(ResponseError::NoSuchImage(index))?;
        decode_png(index, b64)
    }

    /// Consumes the response, decoding lazily: each base64 string is dropped once decoded.
    pub fn into_images(self) -> impl Iterator<Item = Result<Vec<u8>, ResponseError>> + 'a {
        self.images
            .into_iter()
            .enumerate()
            .map(|(i, b64)| decode_png(i, &b64))
    }
}

/// Most bytes of an edit reply outside its base64 images (its "skeleton": `created`, `usage`,
/// the echoes). A reply with more is refused as malformed.
pub const MAX_SKELETON_BYTES: usize = 1 << 20;
/// Base64 characters decoded at once (a multiple of 4).
const DECODE_BLOCK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Ordinary JSON, copied to the skeleton.
    Json,
    /// After the key `"b64_json"`: a `:` is expected.
    AfterKey,
    /// After `"b64_json":`: a string is expected.
    AfterColon,
    /// Inside a `b64_json` string.
    Image { escape: bool },
}

/// Reads an `images/edits` reply as it arrives, in chunks, and hands out each image as soon as
/// its `b64_json` string has ended: decoded, checked to be a PNG, and never more than one image
/// at a time (P9 finding 8). The base64 is decoded in blocks of 64 KiB as it comes, so the
/// reply is never held whole. Everything outside the images (the skeleton, `"b64_json":""`
/// for each image) is kept and parsed by [`ReplyScanner::finish`] with
/// [`parse_edit_response`], so a reply is judged as before: malformed JSON, no images, URLs
/// instead of base64.
#[derive(Debug)]
pub struct ReplyScanner {
    skeleton: Vec<u8>,
    scan: Scan,
    in_string: bool,
    escape: bool,
    string_start: usize,
    b64: Vec<u8>,
    image: Vec<u8>,
    images: usize,
}

impl Default for ReplyScanner {
    fn default() -> Self {
        ReplyScanner::new()
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl ReplyScanner {
    pub fn new() -> ReplyScanner {
        ReplyScanner {
            skeleton: Vec::new(),
            scan: Scan::Json,
            in_string: false,
            escape: false,
            string_start: 0,
            b64: Vec::new(),
            image: Vec::new(),
            images: 0,
        }
    }

    /// Images handed out so far.
    pub fn images(&self) -> usize {
        self.images
    }

    fn keep(&mut self, b: u8) -> Result<(), ResponseError> {
        if self.skeleton.len() >= MAX_SKELETON_BYTES {
            return Err(ResponseError::Malformed(
                "the reply has too much besides its images".into(),
            ));
        }
        self.skeleton.push(b);
        Ok(())
    }

    /// One byte of ordinary JSON.
    fn json(&mut self, b: u8) -> Result<(), ResponseError> {
        self.keep(b)?;
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                let end = self.skeleton.len() - 1;
                if &self.skeleton[self.string_start..end] == b"b64_json" {
                    self.scan = Scan::AfterKey;
                }
            }
        } else if b == b'"' {
            self.in_string = true;
            self.string_start = self.skeleton.len();
        }
        Ok(())
    }

    fn decode_pending(&mut self, all: bool) -> Result<(), ResponseError> {
        let n = if all {
            self.b64.len()
        } else {
            self.b64.len() / 4 * 4
        };
        if n == 0 {
            return Ok(());
        }
        base64::engine::general_purpose::STANDARD
            .decode_vec(&self.b64[..n], &mut self.image)
            .map_err(|_| ResponseError::InvalidBase64(self.images))?;
        self.b64.drain(..n);
        Ok(())
    }

    /// Feeds the next chunk of the reply; returns the images (PNG bytes) it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, ResponseError> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.scan {
                Scan::Json => self.json(b)?,
                Scan::AfterKey => {
                    if is_ws(b) {
                        self.keep(b)?;
                    } else if b == b':' {
                        self.keep(b)?;
                        self.scan = Scan::AfterColon;
                    } else {
                        // It was a string value, not a key.
                        self.scan = Scan::Json;
                        self.json(b)?;
                    }
                }
                Scan::AfterColon => {
                    if is_ws(b) {
                        self.keep(b)?;
                    } else if b == b'"' {
                        self.keep(b)?;
                        self.scan = Scan::Image { escape: false };
                        self.image = Vec::new();
                        self.b64.clear();
                    } else {
                        self.scan = Scan::Json;
                        self.json(b)?;
                    }
                }
                Scan::Image { escape: true } => {
                    // Only `\/` can occur in base64 (an escaped slash).
                    if b != b'/' {
                        return Err(ResponseError::InvalidBase64(self.images));
                    }
                    self.b64.push(b);
                    self.scan = Scan::Image { escape: false };
                }
                Scan::Image { escape: false } => {
                    let rest = &chunk[i..];
                    let stop = rest.iter().position(|c| *c == b'"' || *c == b'\\');
                    let run = stop.unwrap_or(rest.len());
                    self.b64.extend_from_slice(&rest[..run]);
                    if self.b64.len() >= DECODE_BLOCK {
                        self.decode_pending(false)?;
                    }
                    i += run;
                    match stop.map(|_| chunk[i]) {
                        Some(b'\\') => self.scan = Scan::Image { escape: true },
                        Some(_) => {
                            let trimmed = self
                                .b64
                                .iter()
                                .rposition(|c| !is_ws(*c))
                                .map_or(0, |p| p + 1);
                            self.b64.truncate(trimmed);
                            self.decode_pending(true)?;
                            let png = check_png(self.images, std::mem::take(&mut self.image))?;
                            done.push(png);
                            self.images += 1;
                            self.keep(b'"')?;
                            self.scan = Scan::Json;
                        }
                        None => continue,
                    }
                }
            }
            i += 1;
        }
        Ok(done)
    }

    /// The end of the reply: parses the skeleton as [`parse_edit_response`] does and checks
    /// that it names as many images as were handed out. Returns that number.
    pub fn finish(self) -> Result<usize, ResponseError> {
        if self.scan != Scan::Json || self.in_string {
            return Err(ResponseError::Malformed("the reply ended early".into()));
        }
        let parsed = parse_edit_response(&self.skeleton)?;
        if parsed.len() != self.images {
            return Err(ResponseError::Malformed(format!(
                "{} images in the reply, {} read",
                parsed.len(),
                self.images
            )));
        }
        Ok(self.images)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// `error.moderation_details` of a safety rejection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationDetails {
    #[serde(default)]
    pub moderation_stage: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

/// The `error` object of an OpenAI error body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub error_type: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub moderation_details: Option<ModerationDetails>,
}

/// What an OpenAI error means for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `moderation_blocked` (or the legacy `content_policy_violation`). Final.
    ModerationBlocked,
    /// `invalid_api_key` or HTTP 401. Final; the reason never repeats the message (it quotes the
    /// key's tail).
    InvalidApiKey,
    /// `insufficient_quota` (a 429 that must not be retried). Final.
    InsufficientQuota,
    /// `rate_limit_exceeded`, `slow_down`, other 429s. Retried.
    RateLimited,
    /// `unsupported_file_mimetype`. Final.
    UnsupportedMimetype,
    /// Another refusal of the image (`invalid_image*`, `image_*`, or a 400 with `param: image`).
    InvalidImage,
    /// 5xx. Retried.
    ServerError,
    /// Anything else: classified by HTTP status.
    Other,
}

impl ErrorBody {
    pub fn kind(&self, http_status: u16) -> ErrorKind {
        let code = self.code.as_deref().unwrap_or("");
        let ty = self.error_type.as_deref().unwrap_or("");
        match code {
            "moderation_blocked" | "content_policy_violation" => ErrorKind::ModerationBlocked,
            "invalid_api_key" => ErrorKind::InvalidApiKey,
            "insufficient_quota" => ErrorKind::InsufficientQuota,
            "rate_limit_exceeded" | "slow_down" => ErrorKind::RateLimited,
            "unsupported_file_mimetype" => ErrorKind::UnsupportedMimetype,
            c if c.starts_with("invalid_image") || c.starts_with("image_") => {
                ErrorKind::InvalidImage
            }
            _ if ty == "insufficient_quota" => ErrorKind::InsufficientQuota,
            _ if http_status == 401 => ErrorKind::InvalidApiKey,
            _ if http_status == 429 => ErrorKind::RateLimited,
            _ if http_status >= 500 => ErrorKind::ServerError,
            _ if http_status == 400
                && self
                    .param
                    .as_deref()
                    .is_some_and(|p| p.starts_with("image")) =>
            {
                ErrorKind::InvalidImage
            }
            _ => ErrorKind::Other,
        }
    }

    /// The classified failure. The reason carries OpenAI's message (sanitised) and code.
    pub fn to_failure(&self, http_status: u16, retry_after_ms: Option<u64>) -> Failure {
        let kind = self.kind(http_status);
        let class = match kind {
            ErrorKind::ModerationBlocked => FailureClass::ContentPolicy,
            ErrorKind::InvalidApiKey => FailureClass::Auth,
            ErrorKind::InsufficientQuota => FailureClass::NoCredits,
            ErrorKind::RateLimited => FailureClass::RateLimited,
            ErrorKind::UnsupportedMimetype | ErrorKind::InvalidImage => FailureClass::InvalidInput,
            ErrorKind::ServerError => FailureClass::Transient,
            // OpenAI's SDK also retries 409 (a conflict while processing).
            ErrorKind::Other if http_status == 409 => FailureClass::Transient,
            ErrorKind::Other => classify_status(http_status),
        };
        let message = self.message.trim();
        let tag = self
            .code
            .as_deref()
            .or(self.error_type.as_deref())
            .filter(|t| !t.is_empty());
        let detail = match (class, kind) {
            (FailureClass::Auth, _) => format!("credentials refused (HTTP {http_status})"),
            (_, ErrorKind::ModerationBlocked) => {
                let stage = self
                    .moderation_details
                    .as_ref()
                    .and_then(|d| d.moderation_stage.as_deref())
                    .map(|s| format!(", {s} stage"))
                    .unwrap_or_default();
                let text = if message.is_empty() {
                    "the request was rejected by the safety system"
                } else {
                    message
                };
                format!("{text} (moderation_blocked{stage})")
            }
            _ => match (message.is_empty(), tag) {
                (false, Some(t)) => format!("{message} ({t})"),
                (false, None) => format!("{message} (HTTP {http_status})"),
                (true, Some(t)) => format!("HTTP {http_status} ({t})"),
                (true, None) => format!("HTTP {http_status}"),
            },
        };
        Failure::new(Dependency::OpenAi, class, &detail).with_retry_after(retry_after_ms)
    }
}

/// Parses an error body; a body that is not OpenAI's shape gives an `ErrorBody` whose message is
/// an excerpt of the body.
pub fn parse_error(body: &str) -> ErrorBody {
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(e) => e.error,
        Err(_) => ErrorBody {
            message: body.trim().chars().take(200).collect(),
            ..ErrorBody::default()
        },
    }
}

/// The classified failure of a non-2xx `images/edits` response.
pub fn failure(http_status: u16, body: &str, retry_after_ms: Option<u64>) -> Failure {
    parse_error(body).to_failure(http_status, retry_after_ms)
}

#[cfg(test)]
mod tests {
    use super::super::retry::ErrorCode;
    use super::*;

    /// A 1×1 PNG (signature + IHDR + IDAT + IEND).
    const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

    #[test]
    fn prompt_gets_the_style_suffix() {
        assert_eq!(
            full_prompt("a chair", Some("pixel art")),
            "a chair Style: pixel art"
        );
        assert_eq!(full_prompt(" a chair ", Some("  ")), "a chair");
        assert_eq!(full_prompt("a chair", None), "a chair");
    }

    #[test]
    fn validates_the_request() {
        assert_eq!(
            EditRequest::new(" ", None, 1, None, None, None),
            Err(EditError::EmptyPrompt)
        );
        assert_eq!(
            EditRequest::new("x", None, 0, None, None, None),
            Err(EditError::N(0))
        );
        assert_eq!(
            EditRequest::new("x", None, 11, None, None, None),
            Err(EditError::N(11))
        );
        assert_eq!(
            EditRequest::new(&"x".repeat(32_000), Some("y"), 1, None, None, None),
            Err(EditError::PromptTooLong(32_009))
        );
        assert_eq!(
            EditRequest::new("x", None, 1, None, Some(""), None),
            Err(EditError::EmptySetting)
        );
        let r = EditRequest::new("x", None, 10, None, None, None).unwrap();
        assert_eq!(
            (r.model(), r.size(), r.n()),
            (DEFAULT_MODEL, DEFAULT_SIZE, 10)
        );
    }

    #[test]
    fn builds_the_multipart_body() {
        let req = EditRequest::new(
            "a chair",
            Some("clay"),
            2,
            Some(Background::Transparent),
            Some("gpt-image-1.5"),
            Some("1536x1024"),
        )
        .unwrap();
        let body = edit_multipart("B", &req, b"\xff\xd8\xffJPEG", ImageFormat::Jpeg);
        let mut want = b"--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"input.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xffJPEG\r\n".to_vec();
        want.extend_from_slice(
            b"--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na chair Style: clay\r\n\
              --B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-image-1.5\r\n\
              --B\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n2\r\n\
              --B\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n1536x1024\r\n\
              --B\r\nContent-Disposition: form-data; name=\"background\"\r\n\r\ntransparent\r\n--B--\r\n",
        );
        assert_eq!(body, want);
        let no_bg = EditRequest::new("a", None, 1, None, None, None).unwrap();
        let text =
            String::from_utf8_lossy(&edit_multipart("B", &no_bg, b"\x89PNG", ImageFormat::Png))
                .into_owned();
        assert!(!text.contains("background"));
        assert!(text.contains("filename=\"input.png\"\r\nContent-Type: image/png"));
    }

    #[test]
    fn the_body_built_around_the_image_is_the_same_body() {
        let req = EditRequest::new(
            "a chair",
            Some("clay"),
            3,
            Some(Background::Transparent),
            None,
            None,
        )
        .unwrap();
        let image = b"\x89PNG\r\n\x1a\n-image-bytes-\r\n\r\n-";
        let (head, tail) = edit_multipart_around("B", &req, ImageFormat::Png);
        let mut joined = head.clone();
        joined.extend_from_slice(image);
        joined.extend_from_slice(&tail);
        assert_eq!(joined, edit_multipart("B", &req, image, ImageFormat::Png));
        assert!(head.ends_with(b"Content-Type: image/png\r\n\r\n"));
        assert!(tail.starts_with(b"\r\n--B\r\n"));
        assert!(tail.ends_with(b"--B--\r\n"));
    }

    #[test]
    fn decodes_images_one_at_a_time() {
        let body = format!(
            r#"{{"created":1,"data":[{{"b64_json":"{PNG_1X1}"}},{{"b64_json":"/9j/4AAQ"}}],"usage":{{"total_tokens":3}}}}"#
        );
        let resp = parse_edit_response(body.as_bytes()).unwrap();
        assert_eq!(resp.len(), 2);
        // Every image borrows from the body: parsing holds no second copy of the base64.
        assert!(resp.borrows_from(body.as_bytes()));
        // Borrowed from the body: no copy of the base64.
        let first = resp.decode(0).unwrap();
        assert_eq!(&first[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(resp.decode(1), Err(ResponseError::NotPng(1)));
        assert_eq!(resp.decode(2), Err(ResponseError::NoSuchImage(2)));
        let all: Vec<_> = resp.into_images().collect();
        assert!(all[0].is_ok());
        assert_eq!(all[1], Err(ResponseError::NotPng(1)));
    }

    /// A "PNG" of `len` bytes (signature and IHDR, then filler): enough for `check_png`.
    fn big_png(len: usize, seed: u8) -> Vec<u8> {
        let mut png = base64::engine::general_purpose::STANDARD
            .decode(PNG_1X1)
            .unwrap();
        png.extend((0..len.saturating_sub(png.len())).map(|i| (i as u8).wrapping_mul(31) ^ seed));
        png
    }

    fn reply(images: &[Vec<u8>]) -> String {
        let data: Vec<String> = images
            .iter()
            .map(|p| {
                format!(
                    r#"{{"b64_json": "{}", "revised_prompt":"say \"b64_json\""}}"#,
                    base64::engine::general_purpose::STANDARD.encode(p)
                )
            })
            .collect();
        format!(
            r#"{{"created":1,"note":"b64_json","data":[{}],"usage":{{"total_tokens":3}}}}"#,
            data.join(",")
        )
    }

    fn scan(body: &[u8], chunk: usize) -> Result<(Vec<Vec<u8>>, usize), ResponseError> {
        let mut sc = ReplyScanner::new();
        let mut out = Vec::new();
        for c in body.chunks(chunk.max(1)) {
            out.extend(sc.feed(c)?);
        }
        let n = sc.finish()?;
        Ok((out, n))
    }

    #[test]
    fn the_scanner_hands_out_each_image_whatever_the_chunks() {
        let images = vec![big_png(200_000, 1), big_png(70, 2), big_png(100_003, 3)];
        let body = reply(&images);
        for chunk in [1, 2, 3, 7, 64, 4096, 65_537, body.len()] {
            let (got, n) = scan(body.as_bytes(), chunk).unwrap();
            assert_eq!(n, 3, "chunk {chunk}");
            assert_eq!(got, images, "chunk {chunk}");
        }
        // The same images as the whole-body parse.
        let whole = parse_edit_response(body.as_bytes()).unwrap();
        assert_eq!(whole.decode(0).unwrap(), images[0]);
        // An escaped slash, split from its backslash by a chunk boundary.
        let escaped = body.replace('/', "\\/");
        let (got, _) = scan(escaped.as_bytes(), 5).unwrap();
        assert_eq!(got, images);
    }

    #[test]
    fn the_scanner_keeps_only_one_image_and_a_small_skeleton() {
        let images = vec![big_png(300_000, 1), big_png(300_000, 2)];
        let body = reply(&images);
        let mut sc = ReplyScanner::new();
        let mut most = 0;
        for c in body.as_bytes().chunks(16 * 1024) {
            for png in sc.feed(c).unwrap() {
                assert_eq!(png.len(), 300_000);
            }
            // Pending base64 stays under one block and a chunk; the skeleton under 1 KiB.
            most = most.max(sc.b64.capacity());
            assert!(sc.skeleton.len() < 1024);
            assert!(sc.image.len() <= 300_000);
        }
        assert!(most <= 2 * (DECODE_BLOCK + 16 * 1024), "{most}");
        assert_eq!(sc.finish(), Ok(2));
    }

    #[test]
    fn the_scanner_judges_a_reply_as_the_parser_does() {
        assert_eq!(scan(br#"{"data":[]}"#, 3), Err(ResponseError::NoImages));
        assert_eq!(
            scan(br#"{"data":[{"url":"https://x"}]}"#, 3),
            Err(ResponseError::NotBase64)
        );
        assert!(matches!(
            scan(b"<html>", 2),
            Err(ResponseError::Malformed(_))
        ));
        assert_eq!(
            scan(br#"{"data":[{"b64_json":"%%%"}]}"#, 4),
            Err(ResponseError::InvalidBase64(0))
        );
        assert_eq!(
            scan(br#"{"data":[{"b64_json":"/9j/4AAQ"}]}"#, 4),
            Err(ResponseError::NotPng(0))
        );
        assert_eq!(
            scan(br#"{"data":[{"b64_json":"ab\ncd"}]}"#, 4),
            Err(ResponseError::InvalidBase64(0))
        );
        // Cut off inside an image, or after it.
        let body = reply(&[big_png(1000, 1)]);
        let cut = &body.as_bytes()[..body.len() / 2];
        assert!(matches!(scan(cut, 100), Err(ResponseError::Malformed(_))));
        let cut = &body.as_bytes()[..body.len() - 3];
        assert!(matches!(scan(cut, 100), Err(ResponseError::Malformed(_))));
        // `"b64_json"` as a value is not a key; `null` after the key is no image.
        assert_eq!(
            scan(br#"{"x":"b64_json","data":[{"b64_json":null}]}"#, 1),
            Err(ResponseError::Malformed("an image has no b64_json".into()))
        );
    }

    #[test]
    fn rejects_unusable_success_bodies() {
        assert_eq!(
            parse_edit_response(r#"{"data":[]}"#.as_bytes()),
            Err(ResponseError::NoImages)
        );
        assert_eq!(
            parse_edit_response(r#"{"created":1}"#.as_bytes()),
            Err(ResponseError::NoImages)
        );
        assert_eq!(
            parse_edit_response(r#"{"data":[{"url":"https://x"}]}"#.as_bytes()),
            Err(ResponseError::NotBase64)
        );
        assert!(matches!(
            parse_edit_response("<html>".as_bytes()),
            Err(ResponseError::Malformed(_))
        ));
        let bad = parse_edit_response(r#"{"data":[{"b64_json":"%%%"}]}"#.as_bytes()).unwrap();
        assert_eq!(bad.decode(0), Err(ResponseError::InvalidBase64(0)));
        assert_eq!(
            ResponseError::NoImages.to_failure().error_code(),
            ErrorCode::ProviderFailed
        );
        assert_eq!(
            ResponseError::Malformed("x".into()).to_failure().class,
            FailureClass::Transient
        );
        // An escaped slash forces an owned string; it still decodes.
        let escaped = format!(
            r#"{{"data":[{{"b64_json":"{}"}}]}}"#,
            PNG_1X1.replace('/', "\\/")
        );
        assert!(parse_edit_response(escaped.as_bytes())
            .unwrap()
            .decode(0)
            .is_ok());
        let slash = r#"{"data":[{"b64_json":"ab\/c"}]}"#;
        assert!(!parse_edit_response(slash.as_bytes())
            .unwrap()
            .borrows_from(slash.as_bytes()));
    }

    #[test]
    fn classifies_errors() {
        let moderation = failure(
            400,
            r#"{"error":{"message":"Your request was rejected by the safety system.","type":"image_generation_user_error","param":null,"code":"moderation_blocked","moderation_details":{"moderation_stage":"input","categories":["other"]}}}"#,
            None,
        );
        assert_eq!(moderation.class, FailureClass::ContentPolicy);
        assert_eq!(
            moderation.reason,
            "OpenAI: Your request was rejected by the safety system. (moderation_blocked, input stage)"
        );
        let key = failure(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-abc****wxyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            None,
        );
        assert_eq!(key.class, FailureClass::Auth);
        assert_eq!(key.reason, "OpenAI: credentials refused (HTTP 401)");
        let quota = failure(
            429,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            Some(1_000),
        );
        assert_eq!(quota.class, FailureClass::NoCredits);
        let rate = failure(
            429,
            r#"{"error":{"message":"Rate limit reached. Please try again in 6s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            Some(6_000),
        );
        assert_eq!(rate.class, FailureClass::RateLimited);
        assert_eq!(rate.retry_after_ms, Some(6_000));
        let mime = failure(
            400,
            r#"{"error":{"message":"Invalid file 'image': unsupported mimetype ('application/octet-stream').","type":"invalid_request_error","param":"image","code":"unsupported_file_mimetype"}}"#,
            None,
        );
        assert_eq!(mime.class, FailureClass::InvalidInput);
        assert!(
            mime.reason.ends_with("(unsupported_file_mimetype)"),
            "{}",
            mime.reason
        );
        let image = parse_error(
            r#"{"error":{"message":"bad image","type":"invalid_request_error","param":"image","code":null}}"#,
        );
        assert_eq!(image.kind(400), ErrorKind::InvalidImage);
        let server = failure(
            500,
            r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
            None,
        );
        assert_eq!(server.class, FailureClass::Transient);
        assert_eq!(
            server.reason,
            "OpenAI: The server had an error (server_error)"
        );
        assert_eq!(
            failure(503, "upstream connect error", None).class,
            FailureClass::Transient
        );
        assert_eq!(failure(409, "{}", None).class, FailureClass::Transient);
        let other = failure(
            400,
            r#"{"error":{"message":"Invalid size","type":"invalid_request_error","param":"size","code":"invalid_value"}}"#,
            None,
        );
        assert_eq!(other.class, FailureClass::Rejected);
        assert_eq!(other.reason, "OpenAI: Invalid size (invalid_value)");
    }
}
