//! Tripo's two wire formats behind one interface (SPEC §11 "Tripo v3"), pure.
//!
//! `TRIPO_API_VERSION=v2|v3` picks an [`ApiVersion`]; the glue (`providers::tripo`) asks it for
//! the path, the body and the parser of every request, so the jobs, the alarm and the state
//! machine never see which one is in use. v2 is `core::tripo` unchanged; this module adds v3
//! (providers.md §1.14), mapped from the same [`CreateTask`] and parsed into the same
//! [`TaskDetail`] and [`Failure`] classes.
//!
//! Which source each v3 mapping follows (where sources differ, the official Rust SDK [T9] wins):
//!
//! | what | v3 | source |
//! |---|---|---|
//! | base URL | `https://openapi.tripo3d.ai/v3` (global; `.com` is China) | providers.md §1.0 [T9, T10] |
//! | text | `POST /generation/text-to-model`, `prompt` | [T9 `client.rs`, `params.rs` `TextToModelParams`] |
//! | image | `POST /generation/image-to-model`, `input: "<file_token>"` | [T9 `ImageToModelParams.input`] |
//! | multiview | `POST /generation/multiview-to-model`, `inputs: [front, left, back, right]`, each a file descriptor `{"type","file_token"}` or `{}` | [T9 `MultiviewInputs::Views`, `FileDescriptor`]; the form of an empty slot is [UNCERTAIN], `{}` as in v2 |
//! | sketch | an image task (there is no sketch type, §1.5.5) | providers.md §1.5.5 |
//! | refine | `POST /models/refine`, `draft_model_task_id` | [T10] (the SDK has no refine; refine is "effectively dead", §1.5.4) |
//! | version | `model` (not `model_version`), **required**: [`DEFAULT_V3_MODEL`] when the client gave none | [T9 `params.rs` `model`]; T10 says "model_version (or model)" |
//! | options | `texture`, `pbr`, `texture_quality`, `face_limit`, `auto_size`, `orientation`, `style` | same names as v2 [T9] |
//! | upload | `POST /files` (multipart `file`) → `data.file_token` (`file_<uuid>`) | [T9 `upload_file`, `UploadedFile`] |
//! | query | `GET /tasks/{id}` → `status`, `progress`, `output.model_url` (or `pbr_model`/`model`/`base_model`), `error_code`, `error_msg` | [T9 `models.rs` `Task`, `TaskOutput`]; T10's `error_message` is read as a fallback |
//! | envelope | `{code:0, status:"success", data}` / `{code, status:"error", message, suggestion, request_id}` | [T10, T9 `Envelope`] |
//! | errors | v2 codes (§1.7), plus `code: 2` with HTTP 401 for a refused key | [T10]; classified by HTTP status (401 → auth) like any unknown code |
//!
//! Decisions:
//! - **Default model.** v3 refuses a create without `model`; v2's documented default
//!   (`v2.5-20250123`) is sent so that the two formats make the same model.
//! - **Model URL.** v3 merges the three URLs into `output.model_url`; when only that is given it
//!   fills [`TaskOutput::model`], so `pick_model_url` keeps SPEC §6's order when more are given.
//! - **No client metadata.** No source documents a field Tripo echoes back; none is invented, so a
//!   webhook is matched to its step by Tripo's task id alone (`docs/architecture.md`).

use serde::Serialize;
use serde_json::{Map, Value};

use super::retry::Failure;
use super::tripo::{
    self, data_of, id_field, task_from_data, CreateTask, FileToken, ModelParams, Orientation,
    PayloadError, TaskDetail, TaskType, TextureQuality, WireError,
};

/// The v3 API's global base URL (providers.md §1.0).
pub const DEFAULT_V3_BASE_URL: &str = "https://openapi.tripo3d.ai/v3";
/// The `model` sent when the client chose none (v2's documented default, §1.5).
pub const DEFAULT_V3_MODEL: &str = "v2.5-20250123";
/// v3 upload (multipart, part `file`).
pub const V3_FILES_PATH: &str = "/files";

/// Which Tripo wire format the worker speaks (`TRIPO_API_VERSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    /// `POST /task` with a `type`, `GET /task/{id}`, `POST /upload/sts`; no webhooks.
    V2,
    /// One endpoint per capability, `GET /tasks/{id}`, `POST /files`; signed webhooks.
    V3,
}

impl ApiVersion {
    /// `v2` or `v3`.
    pub fn parse(s: &str) -> Option<ApiVersion> {
        match s.trim() {
            "v2" => Some(ApiVersion::V2),
            "v3" => Some(ApiVersion::V3),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2 => "v2",
            ApiVersion::V3 => "v3",
        }
    }

    /// Path of the image upload.
    pub fn upload_path(self) -> &'static str {
        match self {
            ApiVersion::V2 => tripo::UPLOAD_PATH,
            ApiVersion::V3 => V3_FILES_PATH,
        }
    }

    /// Path of the task creation for this task type.
    pub fn create_path(self, ty: TaskType) -> &'static str {
        match (self, ty) {
            (ApiVersion::V2, _) => tripo::CREATE_TASK_PATH,
            (ApiVersion::V3, TaskType::TextToModel) => "/generation/text-to-model",
            (ApiVersion::V3, TaskType::ImageToModel) => "/generation/image-to-model",
            (ApiVersion::V3, TaskType::MultiviewToModel) => "/generation/multiview-to-model",
            (ApiVersion::V3, TaskType::RefineModel) => "/models/refine",
        }
    }

    /// Path of one task's detail. The id comes from a parser that only accepts URL-safe ids.
    pub fn task_path(self, tripo_task_id: &str) -> String {
        match self {
            ApiVersion::V2 => tripo::task_path(tripo_task_id),
            ApiVersion::V3 => format!("/tasks/{tripo_task_id}"),
        }
    }

    /// The JSON body of the creation.
    pub fn create_body(self, task: &CreateTask) -> Result<Value, PayloadError> {
        match self {
            ApiVersion::V2 => task.to_json(),
            ApiVersion::V3 => v3_body(task),
        }
    }

    /// The upload's token: v2 `data.image_token`, v3 `data.file_token`.
    pub fn parse_upload(self, body: &str) -> Result<String, WireError> {
        match self {
            ApiVersion::V2 => tripo::parse_upload(body),
            ApiVersion::V3 => id_field(&data_of(body)?, "file_token"),
        }
    }

    /// The created task's id (`data.task_id` in both).
    pub fn parse_create(self, body: &str) -> Result<String, WireError> {
        tripo::parse_create(body)
    }

    /// A task's detail.
    pub fn parse_task(self, body: &str) -> Result<TaskDetail, WireError> {
        match self {
            ApiVersion::V2 => tripo::parse_task(body),
            ApiVersion::V3 => v3_task_from_data(&data_of(body)?),
        }
    }

    /// The classified failure of a non-2xx answer. v3 keeps v2's codes; its `code: 2` (refused
    /// key, HTTP 401) is unknown to `code_class` and so classified by the status: auth.
    pub fn failure(self, http_status: u16, body: &str, retry_after_ms: Option<u64>) -> Failure {
        tripo::failure(http_status, body, retry_after_ms)
    }
}

/// A v3 task object (`GET /tasks/{id}`'s `data`, or a webhook's `data`): v2's fields, plus
/// `output.model_url`, `output.rendered_image_url` and `error_message`.
pub(crate) fn v3_task_from_data(data: &Value) -> Result<TaskDetail, WireError> {
    let mut detail = task_from_data(data)?;
    let output = data.get("output").filter(|v| v.is_object());
    let text = |v: Option<&Value>, key: &str| {
        v.and_then(|o| o.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    if detail.output.model.is_none() {
        detail.output.model = text(output, "model_url");
    }
    if detail.output.rendered_image.is_none() {
        detail.output.rendered_image = text(output, "rendered_image_url");
    }
    if detail.error_msg.is_none() {
        detail.error_msg = text(Some(data), "error_message");
    }
    Ok(detail)
}

/// A file descriptor of the official SDK (`{"type": "png", "file_token": "…"}`) or `{}`.
fn descriptor(file: Option<&FileToken>) -> Value {
    let mut m = Map::new();
    if let Some(f) = file {
        m.insert("type".into(), Value::from(f.format.extension()));
        m.insert("file_token".into(), Value::from(f.token.as_str()));
    }
    Value::Object(m)
}

fn texture_quality(q: TextureQuality) -> &'static str {
    match q {
        TextureQuality::Standard => "standard",
        TextureQuality::Detailed => "detailed",
    }
}

fn orientation(o: Orientation) -> &'static str {
    match o {
        Orientation::Default => "default",
        Orientation::AlignImage => "align_image",
    }
}

/// The model options, v3 names: `model` (required), then what the client set (normalised as in
/// v2), and a preset `style` (never for `P1-*`, which rejects unknown fields).
fn put_params(m: &mut Map<String, Value>, params: &ModelParams, style: Option<&str>) {
    let p = params.normalised();
    let model = p
        .model_version
        .clone()
        .unwrap_or_else(|| DEFAULT_V3_MODEL.to_owned());
    let p1 = model.starts_with("P1-");
    m.insert("model".into(), Value::from(model));
    if let Some(v) = p.texture {
        m.insert("texture".into(), Value::from(v));
    }
    if let Some(v) = p.pbr {
        m.insert("pbr".into(), Value::from(v));
    }
    if let Some(v) = p.texture_quality {
        m.insert("texture_quality".into(), Value::from(texture_quality(v)));
    }
    if let Some(v) = p.face_limit {
        m.insert("face_limit".into(), Value::from(v));
    }
    if let Some(v) = p.auto_size {
        m.insert("auto_size".into(), Value::from(v));
    }
    if !p1 {
        if let Some(preset) = style.and_then(tripo::style_preset) {
            m.insert("style".into(), Value::from(preset));
        }
    }
}

/// The v3 body of a creation (no `type`: the endpoint says it).
pub fn v3_body(task: &CreateTask) -> Result<Value, PayloadError> {
    let mut m = Map::new();
    match task {
        CreateTask::TextToModel {
            prompt,
            style,
            params,
        } => {
            m.insert(
                "prompt".into(),
                Value::from(tripo::tripo_prompt(prompt, style.as_deref())?),
            );
            put_params(&mut m, params, style.as_deref());
        }
        CreateTask::ImageToModel {
            file,
            style,
            params,
            orientation: o,
        } => {
            m.insert("input".into(), Value::from(file.token.as_str()));
            put_params(&mut m, params, style.as_deref());
            if let Some(o) = o {
                m.insert("orientation".into(), Value::from(orientation(*o)));
            }
        }
        CreateTask::MultiviewToModel {
            files,
            style,
            params,
            orientation: o,
        } => {
            if !(2..=4).contains(&files.len()) {
                return Err(PayloadError::ViewCount(files.len()));
            }
            let slots: Vec<Value> = (0..4).map(|i| descriptor(files.get(i))).collect();
            m.insert("inputs".into(), Value::Array(slots));
            put_params(&mut m, params, style.as_deref());
            if let Some(o) = o {
                m.insert("orientation".into(), Value::from(orientation(*o)));
            }
        }
        CreateTask::RefineModel {
            draft_model_task_id,
        } => {
            let id = draft_model_task_id.trim();
            if id.is_empty() {
                return Err(PayloadError::EmptyDraftId);
            }
            m.insert("draft_model_task_id".into(), Value::from(id));
        }
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::FailureClass;
    use crate::tripo::ImageFormat;
    use serde_json::json;

    fn token(t: &str) -> FileToken {
        FileToken::new(ImageFormat::Png, t)
    }

    #[test]
    fn version_parses_and_names_paths() {
        assert_eq!(ApiVersion::parse("v2"), Some(ApiVersion::V2));
        assert_eq!(ApiVersion::parse(" v3 "), Some(ApiVersion::V3));
        assert_eq!(ApiVersion::parse("V3"), None);
        assert_eq!(ApiVersion::parse("3"), None);
        let v3 = ApiVersion::V3;
        assert_eq!(v3.upload_path(), "/files");
        assert_eq!(
            v3.create_path(TaskType::TextToModel),
            "/generation/text-to-model"
        );
        assert_eq!(
            v3.create_path(TaskType::ImageToModel),
            "/generation/image-to-model"
        );
        assert_eq!(
            v3.create_path(TaskType::MultiviewToModel),
            "/generation/multiview-to-model"
        );
        assert_eq!(v3.create_path(TaskType::RefineModel), "/models/refine");
        assert_eq!(v3.task_path("abc-1"), "/tasks/abc-1");
        let v2 = ApiVersion::V2;
        assert_eq!(v2.upload_path(), "/upload/sts");
        assert_eq!(v2.create_path(TaskType::ImageToModel), "/task");
        assert_eq!(v2.task_path("abc-1"), "/task/abc-1");
    }

    #[test]
    fn text_body_uses_the_sdk_names_and_a_default_model() {
        let t = CreateTask::TextToModel {
            prompt: "a cat".into(),
            style: Some("gold".into()),
            params: ModelParams {
                texture: Some(false),
                face_limit: Some(5000),
                ..ModelParams::default()
            },
        };
        let b = v3_body(&t).unwrap();
        assert_eq!(
            b,
            json!({"prompt": "a cat", "model": DEFAULT_V3_MODEL, "texture": false, "pbr": false,
                   "face_limit": 5000, "style": "gold"})
        );
        assert!(b.get("type").is_none(), "v3 has no type field");
        assert!(b.get("model_version").is_none());
        // The version the client chose is sent as `model`; P1 gets no style.
        let t = CreateTask::TextToModel {
            prompt: "a cat".into(),
            style: Some("gold".into()),
            params: ModelParams {
                model_version: Some("P1-20260311".into()),
                ..ModelParams::default()
            },
        };
        assert_eq!(
            v3_body(&t).unwrap(),
            json!({"prompt": "a cat", "model": "P1-20260311"})
        );
        // A free-text style joins the prompt, as in v2.
        let t = CreateTask::TextToModel {
            prompt: "a cat".into(),
            style: Some("watercolour".into()),
            params: ModelParams::default(),
        };
        assert_eq!(v3_body(&t).unwrap()["prompt"], "a cat, watercolour");
    }

    #[test]
    fn image_multiview_and_refine_bodies() {
        let t = CreateTask::ImageToModel {
            file: token("file_1"),
            style: None,
            params: ModelParams {
                texture_quality: Some(TextureQuality::Detailed),
                ..ModelParams::default()
            },
            orientation: Some(Orientation::AlignImage),
        };
        assert_eq!(
            v3_body(&t).unwrap(),
            json!({"input": "file_1", "model": DEFAULT_V3_MODEL, "texture_quality": "detailed",
                   "orientation": "align_image"})
        );
        let t = CreateTask::MultiviewToModel {
            files: vec![token("file_f"), token("file_l"), token("file_b")],
            style: None,
            params: ModelParams::default(),
            orientation: None,
        };
        assert_eq!(
            v3_body(&t).unwrap(),
            json!({"inputs": [
                {"type": "png", "file_token": "file_f"},
                {"type": "png", "file_token": "file_l"},
                {"type": "png", "file_token": "file_b"},
                {}], "model": DEFAULT_V3_MODEL})
        );
        let one = CreateTask::MultiviewToModel {
            files: vec![token("file_f")],
            style: None,
            params: ModelParams::default(),
            orientation: None,
        };
        assert_eq!(v3_body(&one), Err(PayloadError::ViewCount(1)));
        let r = CreateTask::RefineModel {
            draft_model_task_id: " d-1 ".into(),
        };
        assert_eq!(v3_body(&r).unwrap(), json!({"draft_model_task_id": "d-1"}));
        let r = CreateTask::RefineModel {
            draft_model_task_id: " ".into(),
        };
        assert_eq!(v3_body(&r), Err(PayloadError::EmptyDraftId));
        // The v2 body is unchanged behind the same interface.
        assert_eq!(
            ApiVersion::V2.create_body(&t).unwrap()["type"],
            "multiview_to_model"
        );
    }

    #[test]
    fn v3_responses_parse_into_the_same_detail() {
        let v3 = ApiVersion::V3;
        assert_eq!(
            v3.parse_upload(r#"{"code":0,"status":"success","data":{"file_token":"file_9a"}}"#),
            Ok("file_9a".into())
        );
        assert!(v3
            .parse_upload(r#"{"code":0,"data":{"image_token":"x"}}"#)
            .is_err());
        assert_eq!(
            v3.parse_create(r#"{"code":0,"status":"success","data":{"task_id":"t-1"}}"#),
            Ok("t-1".into())
        );
        let ok = r#"{"code":0,"status":"success","data":{"task_id":"t-1","type":"text_to_model",
            "status":"success","progress":100,"output":{"model_url":"https://x/m.glb",
            "rendered_image_url":"https://x/r.webp"},"created_at":"2026-01-01T00:00:00Z"}}"#;
        let d = v3.parse_task(ok).unwrap();
        assert_eq!(d.status, tripo::TaskStatus::Success);
        assert_eq!(tripo::pick_model_url(&d.output), Some("https://x/m.glb"));
        assert_eq!(d.output.rendered_image.as_deref(), Some("https://x/r.webp"));
        // A named pbr_model still wins over the merged model_url (SPEC §6's order).
        let both = r#"{"code":0,"data":{"task_id":"t-1","status":"success",
            "output":{"model_url":"https://x/m.glb","pbr_model":"https://x/p.glb"}}}"#;
        let d = v3.parse_task(both).unwrap();
        assert_eq!(tripo::pick_model_url(&d.output), Some("https://x/p.glb"));
        let failed = r#"{"code":0,"data":{"task_id":"t-1","status":"failed","error_code":2008,
            "error_message":"rejected"}}"#;
        let d = v3.parse_task(failed).unwrap();
        assert_eq!(d.error_code, Some(2008));
        assert_eq!(d.error_msg.as_deref(), Some("rejected"));
        assert!(matches!(
            v3.parse_task(r#"{"code":1004,"status":"error","message":"bad"}"#),
            Err(WireError::Api(_))
        ));
    }

    #[test]
    fn v3_errors_classify_like_v2() {
        let v3 = ApiVersion::V3;
        let auth = v3.failure(
            401,
            r#"{"code":2,"status":"error","message":"unauthorized","request_id":"r"}"#,
            None,
        );
        assert_eq!(auth.class, FailureClass::Auth);
        for (status, code, class) in [
            (429, 2000, FailureClass::Concurrency),
            (429, 1007, FailureClass::RateLimited),
            (403, 2010, FailureClass::NoCredits),
            (400, 2008, FailureClass::ContentPolicy),
            (400, 1004, FailureClass::InvalidInput),
            (500, 1001, FailureClass::Transient),
            (404, 2019, FailureClass::InvalidInput),
            (404, 2001, FailureClass::Rejected),
        ] {
            let body = format!(
                r#"{{"code":{code},"status":"error","message":"m","suggestion":"s","request_id":"r"}}"#
            );
            let v3f = v3.failure(status, &body, None);
            let v2f = ApiVersion::V2.failure(status, &body, None);
            assert_eq!(v3f.class, class, "code {code}");
            assert_eq!(v3f.class, v2f.class, "code {code}");
        }
        assert_eq!(
            v3.failure(502, "<html>bad gateway</html>", None).class,
            FailureClass::Transient
        );
    }
}
