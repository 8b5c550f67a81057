//! Requests of the five generation endpoints (SPEC §4.1): the field table, validation, the typed
//! request that is persisted in the task's Durable Object, and its fingerprint.
//!
//! * [`fields`] is the **single source of truth** for every accepted field: name, type, bounds,
//!   enum values, default, alias and description. [`parse`] is driven by it (a field that is not
//!   in the table is refused as unknown) and [`FieldSpec::json_schema`] renders it for
//!   `/openapi.json`, so the document and the validator cannot drift apart.
//! * [`parse`] turns raw JSON bytes into a [`ValidRequest`]: `Malformed` (→ 400) when the body is
//!   not a JSON object, else `Invalid` (→ 422) with **every** field problem at once.
//! * Optional fields accept `null` as "absent" (the original service's clients send nulls). An
//!   optional text field (`style`, an optional `prompt`) that is empty or whitespace is absent
//!   too; a required one is an error.
//! * [`fingerprint`] hashes the canonical form of the typed request (defaults applied, key order
//!   and aliases gone), so `{"n":1}` and `{}` are the same request for idempotency.
//! * Input URLs are checked for shape here (string, length); the origin policy needs the
//!   configuration and is applied by [`resolve_urls`] (see `storage_path`).

use std::collections::BTreeMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::ids::TaskId;
use super::step::Step;
use super::storage_path::{self, InputObject, Origin};

/// Longest prompt sent to, or stored for, a Tripo step (Tripo's own limit).
pub const MAX_TRIPO_PROMPT_CHARS: usize = 1024;
/// Longest OpenAI prompt, including the appended `" Style: <style>"`.
pub const MAX_OPENAI_PROMPT_CHARS: usize = 32_000;
/// Longest `style`.
pub const MAX_STYLE_CHARS: usize = 256;
/// What joins the style to the prompt of a concepts request.
pub const STYLE_SEPARATOR: &str = " Style: ";
/// Longest concepts `prompt`: with the longest style appended it still fits OpenAI's limit, so
/// the limit is one `maxLength` per field and no rule across fields.
pub const MAX_CONCEPTS_PROMPT_CHARS: usize =
    MAX_OPENAI_PROMPT_CHARS - STYLE_SEPARATOR.len() - MAX_STYLE_CHARS;
/// Largest `face_limit` of any Tripo model version.
pub const MAX_FACE_LIMIT: i64 = 2_000_000;
/// Most concept images per request (`n`).
pub const MAX_CONCEPTS: i64 = 10;
/// Most views of a multiview model.
pub const MAX_VIEWS: usize = 4;
/// Longest Tripo task id accepted (Tripo ids are UUIDs).
pub const MAX_PROVIDER_ID_LEN: usize = 128;

// ---------------------------------------------------------------------------------------------
// Endpoints and enumerations
// ---------------------------------------------------------------------------------------------

/// One of the five generation endpoints, `POST /generate/{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    ImageToImage,
    TextToModel,
    ImageToModel,
    SketchToModel,
    RefineModel,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::ImageToImage,
        Endpoint::TextToModel,
        Endpoint::ImageToModel,
        Endpoint::SketchToModel,
        Endpoint::RefineModel,
    ];

    /// The last path segment, e.g. `image-to-image`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ImageToImage => "image-to-image",
            Endpoint::TextToModel => "text-to-model",
            Endpoint::ImageToModel => "image-to-model",
            Endpoint::SketchToModel => "sketch-to-model",
            Endpoint::RefineModel => "refine-model",
        }
    }

    /// The route, e.g. `/generate/image-to-image`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ImageToImage => "/generate/image-to-image",
            Endpoint::TextToModel => "/generate/text-to-model",
            Endpoint::ImageToModel => "/generate/image-to-model",
            Endpoint::SketchToModel => "/generate/sketch-to-model",
            Endpoint::RefineModel => "/generate/refine-model",
        }
    }

    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The endpoint of a route (`/generate/{name}`), if any.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// The step this endpoint submits (SPEC §3).
    pub fn step(self) -> Step {
        match self {
            Endpoint::ImageToImage => Step::Concepts,
            Endpoint::TextToModel | Endpoint::ImageToModel | Endpoint::SketchToModel => Step::Model,
            Endpoint::RefineModel => Step::Refine,
        }
    }
}

/// A closed set of wire strings: the enum, its names (for the field table) and serde.
macro_rules! str_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $s)] $variant),+
        }

        impl $name {
            /// Every value, in the order of [`Self::NAMES`].
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The wire names, as listed in the field table.
            pub const NAMES: &'static [&'static str] = &[$($s),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

str_enum! {
    /// OpenAI `background` of the concept images.
    Background { Transparent = "transparent", Opaque = "opaque", Auto = "auto" }
}

str_enum! {
    /// Tripo `texture_quality` (`extreme` is not offered: SPEC §4.1).
    TextureQuality { Standard = "standard", Detailed = "detailed" }
}

str_enum! {
    /// Tripo `orientation` of image-based models.
    Orientation { Default = "default", AlignImage = "align_image" }
}

str_enum! {
    /// Tripo `model_version` values (providers.md §1.5 "Model versions"). Deprecated versions are
    /// accepted and passed on: Tripo answers them with its own error (2015), which fails the step.
    ModelVersion {
        P1 = "P1-20260311",
        V3_1 = "v3.1-20260211",
        V3_0 = "v3.0-20250812",
        V2_5 = "v2.5-20250123",
        V2_0 = "v2.0-20240919",
        TurboV1_0 = "Turbo-v1.0-20250506",
        V1_4 = "v1.4-20240625",
        V1_3 = "v1.3-20240522",
    }
}

impl ModelVersion {
    /// The `face_limit` range Tripo documents for this version.
    pub fn face_limit_range(self) -> (i64, i64) {
        match self {
            ModelVersion::P1 => (48, 20_000),
            ModelVersion::V3_1 | ModelVersion::V3_0 | ModelVersion::V1_4 | ModelVersion::V1_3 => {
                (1, MAX_FACE_LIMIT)
            }
            ModelVersion::V2_5 | ModelVersion::V2_0 => (1, 500_000),
            ModelVersion::TurboV1_0 => (1, 50_000),
        }
    }

    /// Whether `multiview_to_model` accepts this version (Turbo and v1.4 do not).
    pub fn supports_multiview(self) -> bool {
        !matches!(self, ModelVersion::TurboV1_0 | ModelVersion::V1_4)
    }
}

// ---------------------------------------------------------------------------------------------
// The typed request (persisted in the Durable Object)
// ---------------------------------------------------------------------------------------------

/// A validated request: the client's task id and what to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidRequest {
    pub task_id: TaskId,
    pub request: StepRequest,
}

/// What one step runs, normalised: defaults applied, aliases resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum StepRequest {
    Concepts(ConceptsRequest),
    Model(ModelRequest),
    Refine(RefineRequest),
}

/// `image-to-image`: OpenAI image edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConceptsRequest {
    pub input_image_asset_url: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// 1–10.
    pub n: u8,
    /// `None`: not sent (OpenAI's default, `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Background>,
    /// Where the final status is POSTed (SPEC §11 "Webhooks"); part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

/// `text-to-model`, `image-to-model` or `sketch-to-model`: a Tripo model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRequest {
    pub source: ModelSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    pub options: ModelOptions,
    /// Where the final status is POSTed (SPEC §11 "Webhooks"); part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

/// What the model is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// `text-to-model`.
    Text { prompt: String },
    /// `image-to-model`: 1 URL, or 2–4 as [front, left, back, right].
    Image {
        urls: Vec<String>,
        image: ImageOptions,
    },
    /// `sketch-to-model`.
    Sketch { url: String, image: ImageOptions },
}

/// Fields of the image-based model endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOptions {
    /// Stored in the row only; Tripo's image task types take no prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation: Option<Orientation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_concept_image_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_input_asset_id: Option<Uuid>,
}

/// The Tripo options shared by the model and refine endpoints. `None` means "not sent": Tripo's
/// default applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOptions {
    pub texture: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pbr: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<ModelVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_size: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texture_quality: Option<TextureQuality>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            texture: true,
            pbr: None,
            model_version: None,
            face_limit: None,
            auto_size: None,
            texture_quality: None,
        }
    }
}

/// `refine-model`: Tripo `refine_model` of a draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefineRequest {
    /// The Tripo task id of the draft model (wire alias `draft_model_task_id`).
    pub tripo_draft_task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Stored in the row's metadata only; never downloaded nor sent to Tripo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_model_asset_url: Option<String>,
    pub options: ModelOptions,
    /// Where the final status is POSTed (SPEC §11 "Webhooks"); part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

/// The Tripo task type a model request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TripoTaskType {
    TextToModel,
    ImageToModel,
    MultiviewToModel,
    RefineModel,
}

impl TripoTaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            TripoTaskType::TextToModel => "text_to_model",
            TripoTaskType::ImageToModel => "image_to_model",
            TripoTaskType::MultiviewToModel => "multiview_to_model",
            TripoTaskType::RefineModel => "refine_model",
        }
    }
}

impl ConceptsRequest {
    /// The prompt sent to OpenAI: `"<prompt> Style: <style>"` when a style is given.
    pub fn openai_prompt(&self) -> String {
        match &self.style {
            Some(style) => format!("{}{STYLE_SEPARATOR}{}", self.prompt, style),
            None => self.prompt.clone(),
        }
    }
}

impl ModelRequest {
    /// The endpoint this request came from.
    pub fn endpoint(&self) -> Endpoint {
        match self.source {
            ModelSource::Text { .. } => Endpoint::TextToModel,
            ModelSource::Image { .. } => Endpoint::ImageToModel,
            ModelSource::Sketch { .. } => Endpoint::SketchToModel,
        }
    }

    /// `text_to_model`; `image_to_model` for one image or a sketch; `multiview_to_model` for 2–4.
    pub fn tripo_task_type(&self) -> TripoTaskType {
        match &self.source {
            ModelSource::Text { .. } => TripoTaskType::TextToModel,
            ModelSource::Image { urls, .. } if urls.len() > 1 => TripoTaskType::MultiviewToModel,
            ModelSource::Image { .. } | ModelSource::Sketch { .. } => TripoTaskType::ImageToModel,
        }
    }

    /// The prompt stored in the row: the text prompt, or the optional one of an image request.
    pub fn prompt(&self) -> Option<&str> {
        match &self.source {
            ModelSource::Text { prompt } => Some(prompt),
            ModelSource::Image { image, .. } | ModelSource::Sketch { image, .. } => {
                image.prompt.as_deref()
            }
        }
    }

    /// The image-only fields, `None` for text.
    pub fn image_options(&self) -> Option<&ImageOptions> {
        match &self.source {
            ModelSource::Text { .. } => None,
            ModelSource::Image { image, .. } | ModelSource::Sketch { image, .. } => Some(image),
        }
    }
}

impl StepRequest {
    /// Whether the provider task is created straight after the job's claim, with nothing
    /// uploaded first (text-to-model, refine): the claim then records the creation as starting
    /// (`core::task::Command::ClaimJob`'s `create`), one Durable Object round trip less.
    pub fn creates_at_claim(&self) -> bool {
        match self {
            StepRequest::Model(m) => matches!(m.source, ModelSource::Text { .. }),
            StepRequest::Refine(_) => true,
            StepRequest::Concepts(_) => false,
        }
    }

    pub fn step(&self) -> Step {
        match self {
            StepRequest::Concepts(_) => Step::Concepts,
            StepRequest::Model(_) => Step::Model,
            StepRequest::Refine(_) => Step::Refine,
        }
    }

    /// The step's `webhook_url`, if any.
    pub fn webhook_url(&self) -> Option<&str> {
        match self {
            StepRequest::Concepts(r) => r.webhook_url.as_deref(),
            StepRequest::Model(r) => r.webhook_url.as_deref(),
            StepRequest::Refine(r) => r.webhook_url.as_deref(),
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        match self {
            StepRequest::Concepts(_) => Endpoint::ImageToImage,
            StepRequest::Model(m) => m.endpoint(),
            StepRequest::Refine(_) => Endpoint::RefineModel,
        }
    }

    /// The prompt stored in the row (`models.prompt` is nullable).
    pub fn prompt(&self) -> Option<&str> {
        match self {
            StepRequest::Concepts(c) => Some(&c.prompt),
            StepRequest::Model(m) => m.prompt(),
            StepRequest::Refine(r) => r.prompt.as_deref(),
        }
    }

    /// The style stored in the row.
    pub fn style(&self) -> Option<&str> {
        match self {
            StepRequest::Concepts(c) => c.style.as_deref(),
            StepRequest::Model(m) => m.style.as_deref(),
            StepRequest::Refine(r) => r.style.as_deref(),
        }
    }

    /// How many rows (and outputs) the step has: `n` for concepts, else 1.
    pub fn output_count(&self) -> u32 {
        match self {
            StepRequest::Concepts(c) => u32::from(c.n),
            StepRequest::Model(_) | StepRequest::Refine(_) => 1,
        }
    }
}

/// The URLs the job downloads and hands to the provider, in provider order (multiview:
/// front, left, back, right). The refine `input_model_asset_url` is not among them.
pub fn input_urls(req: &StepRequest) -> Vec<&str> {
    match req {
        StepRequest::Concepts(c) => vec![c.input_image_asset_url.as_str()],
        StepRequest::Model(m) => match &m.source {
            ModelSource::Text { .. } => Vec::new(),
            ModelSource::Image { urls, .. } => urls.iter().map(String::as_str).collect(),
            ModelSource::Sketch { url, .. } => vec![url.as_str()],
        },
        StepRequest::Refine(_) => Vec::new(),
    }
}

/// Every Storage URL of the request with its field path (e.g. `input_image_asset_urls[1]`):
/// the inputs of [`input_urls`] plus the refine `input_model_asset_url`. All of them are subject
/// to the URL policy and to the existence check at submit.
pub fn url_fields(req: &StepRequest) -> Vec<(String, &str)> {
    match req {
        StepRequest::Concepts(c) => vec![(
            "input_image_asset_url".to_owned(),
            c.input_image_asset_url.as_str(),
        )],
        StepRequest::Model(m) => match &m.source {
            ModelSource::Text { .. } => Vec::new(),
            ModelSource::Image { urls, .. } => urls
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("input_image_asset_urls[{i}]"), u.as_str()))
                .collect(),
            ModelSource::Sketch { url, .. } => {
                vec![("input_sketch_asset_url".to_owned(), url.as_str())]
            }
        },
        StepRequest::Refine(r) => r
            .input_model_asset_url
            .iter()
            .map(|u| ("input_model_asset_url".to_owned(), u.as_str()))
            .collect(),
    }
}

/// The Storage objects of a request, resolved against the configured origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedInputs {
    /// The objects of [`input_urls`], in the same order.
    pub downloads: Vec<InputObject>,
    /// The refine `input_model_asset_url`, when given.
    pub model: Option<InputObject>,
}

impl ResolvedInputs {
    /// Every object, for the existence check at submit.
    pub fn all(&self) -> impl Iterator<Item = &InputObject> {
        self.downloads.iter().chain(self.model.iter())
    }
}

/// Applies the input URL policy (SPEC §4.1) to every URL of the request; each refused URL is a
/// 422 field error.
pub fn resolve_urls(req: &StepRequest, origin: &Origin) -> Result<ResolvedInputs, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut downloads = Vec::new();
    let mut model = None;
    for (field, url) in url_fields(req) {
        match storage_path::parse_input_url(url, origin) {
            Ok(obj) if field == "input_model_asset_url" => model = Some(obj),
            Ok(obj) => downloads.push(obj),
            Err(e) => errors.push(FieldError::new(field, e.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(ResolvedInputs { downloads, model })
    } else {
        Err(errors)
    }
}

/// A stable hash of the canonical request (SPEC §4.1 idempotency): the request's canonical JSON
/// (defaults applied, aliases resolved, absent options omitted, struct field order) hashed with
/// SHA-1 as a UUID v5, rendered as 32 hex digits. Adding a new optional field later does not
/// change the fingerprint of requests that do not use it.
pub fn fingerprint(req: &StepRequest) -> String {
    let canonical = serde_json::to_vec(req).unwrap_or_else(|_| format!("{req:?}").into_bytes());
    let mut bytes = b"fingerprint/v1\n".to_vec();
    bytes.extend_from_slice(&canonical);
    Uuid::new_v5(&FINGERPRINT_NAMESPACE, &bytes)
        .simple()
        .to_string()
}

/// Namespace of request fingerprints (fixed; changing it changes every fingerprint).
const FINGERPRINT_NAMESPACE: Uuid = Uuid::from_u128(0x0b8e_52c4_7d1a_4f06_8a3e_94f1_c2d7_6e10);

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One problem with one field, as in the `details` of a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not a JSON object → 400.
    #[error("malformed JSON body: {0}")]
    Malformed(String),
    /// Field problems, all of them → 422 `validation_error`.
    #[error("invalid request ({} problem(s))", .0.len())]
    Invalid(Vec<FieldError>),
}

// ---------------------------------------------------------------------------------------------
// The field table
// ---------------------------------------------------------------------------------------------

/// The type and bounds of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// The client's task id (`TaskId::parse`).
    TaskId,
    /// Free text: not empty nor whitespace-only, at most `max_chars` characters.
    Text {
        max_chars: usize,
    },
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    Bool,
    /// An integer in `min..=max`.
    Integer {
        min: i64,
        max: i64,
    },
    /// A UUID string.
    Uuid,
    /// A Supabase Storage URL (shape here; origin policy in [`resolve_urls`]).
    StorageUrl,
    /// A list of Storage URLs.
    StorageUrls {
        min_items: usize,
        max_items: usize,
    },
    /// A provider (Tripo) task id: 1–128 of `A-Z a-z 0-9 - _`.
    ProviderTaskId,
    /// A webhook URL: https, or http for a loopback host (`core::webhook::check_url`; the
    /// `WEBHOOK_ALLOWED_HOSTS` list is checked after parsing).
    WebhookUrl,
}

/// A default applied when a field is absent or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    Bool(bool),
    Integer(i64),
}

impl DefaultValue {
    pub fn to_json(self) -> Value {
        match self {
            DefaultValue::Bool(b) => Value::Bool(b),
            DefaultValue::Integer(i) => Value::from(i),
        }
    }
}

/// One accepted field of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: FieldType,
    /// Required fields may not be absent or null. For an aliased field, either name satisfies it.
    pub required: bool,
    pub default: Option<DefaultValue>,
    /// This name is a deprecated alias of another field of the same endpoint.
    pub alias_of: Option<&'static str>,
    pub description: &'static str,
}

impl FieldSpec {
    const fn required(name: &'static str, ty: FieldType, description: &'static str) -> FieldSpec {
        FieldSpec {
            name,
            ty,
            required: true,
            default: None,
            alias_of: None,
            description,
        }
    }

    const fn optional(name: &'static str, ty: FieldType, description: &'static str) -> FieldSpec {
        FieldSpec {
            required: false,
            ..FieldSpec::required(name, ty, description)
        }
    }

    const fn with_default(self, default: DefaultValue) -> FieldSpec {
        FieldSpec {
            default: Some(default),
            ..self
        }
    }

    const fn alias_of(self, canonical: &'static str) -> FieldSpec {
        FieldSpec {
            alias_of: Some(canonical),
            ..self
        }
    }

    /// The name the value is stored under (the canonical name of an alias).
    pub fn canonical_name(&self) -> &'static str {
        self.alias_of.unwrap_or(self.name)
    }

    /// JSON Schema (2020-12, as used by OpenAPI 3.1) of this field. Optional fields also accept
    /// `null`; an optional text also accepts an empty or blank string (both mean "absent").
    pub fn json_schema(&self) -> Value {
        let mut schema = match self.ty {
            FieldType::Text { max_chars } if !self.required => {
                json!({ "type": "string", "maxLength": max_chars, "pattern": OPTIONAL_TEXT_PATTERN })
            }
            _ => self.ty.json_schema(),
        };
        if !self.required {
            schema = json!({ "anyOf": [schema, { "type": "null" }] });
        }
        if let Value::Object(map) = &mut schema {
            map.insert("description".into(), Value::from(self.description));
            if let Some(d) = self.default {
                map.insert("default".into(), d.to_json());
            }
            if let Some(canonical) = self.alias_of {
                map.insert("deprecated".into(), Value::Bool(true));
                map.insert(
                    "description".into(),
                    Value::from(format!("Deprecated alias of `{canonical}`.")),
                );
            }
        }
        schema
    }
}

impl FieldType {
    /// JSON Schema of a value of this type.
    pub fn json_schema(&self) -> Value {
        match *self {
            FieldType::TaskId => task_id_schema(),
            FieldType::Text { max_chars } => {
                json!({ "type": "string", "minLength": 1, "maxLength": max_chars, "pattern": REQUIRED_TEXT_PATTERN })
            }
            FieldType::Enum(names) => json!({ "type": "string", "enum": names }),
            FieldType::Bool => json!({ "type": "boolean" }),
            FieldType::Integer { min, max } => {
                json!({ "type": "integer", "minimum": min, "maximum": max })
            }
            FieldType::Uuid => json!({ "type": "string", "format": "uuid" }),
            FieldType::StorageUrl => url_schema(),
            FieldType::StorageUrls {
                min_items,
                max_items,
            } => json!({
                "type": "array", "items": url_schema(),
                "minItems": min_items, "maxItems": max_items
            }),
            FieldType::ProviderTaskId => json!({
                "type": "string", "minLength": 1, "maxLength": MAX_PROVIDER_ID_LEN,
                "pattern": "^[A-Za-z0-9_-]+$"
            }),
            FieldType::WebhookUrl => json!({
                "type": "string", "format": "uri", "maxLength": super::webhook::MAX_WEBHOOK_URL_LEN,
                "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"
            }),
        }
    }
}

/// The characters `str::trim` removes (Unicode `White_Space`), as the body of a regex class.
macro_rules! whitespace_class {
    () => {
        "\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
    };
}
pub const WHITESPACE_CLASS: &str = whitespace_class!();
/// A required text: no NUL, and at least one character that is not whitespace. Written so that
/// a regex engine matches it in linear time (the leading blanks and the first other character
/// are disjoint classes).
pub const REQUIRED_TEXT_PATTERN: &str = concat!(
    "^[",
    whitespace_class!(),
    "]*[^\\u0000",
    whitespace_class!(),
    "][^\\u0000]*$"
);
/// An optional text: no NUL (empty or blank means absent).
pub const OPTIONAL_TEXT_PATTERN: &str = "^[^\\u0000]*$";
/// `TaskId::parse` as a regex: a letter or digit, then letters, digits, `_ . : -` with no `..`
/// (every dot is followed by another allowed character, or ends the id); 1–128 characters is
/// `minLength`/`maxLength`.
pub const TASK_ID_PATTERN: &str = "^[A-Za-z0-9](?:\\.?[A-Za-z0-9_:-])*\\.?$";

/// The JSON Schema of a task id (request field and path parameter).
pub fn task_id_schema() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 128, "pattern": TASK_ID_PATTERN })
}

fn url_schema() -> Value {
    json!({ "type": "string", "format": "uri", "maxLength": storage_path::MAX_URL_LEN })
}

/// The JSON Schema of an endpoint's body (unknown fields refused), with the rules across fields:
/// a field and its alias (exactly one of them, as a string), and the `model_version` limits
/// (`face_limit` range, multiview support) as `if`/`then`.
pub fn body_schema(endpoint: Endpoint) -> Value {
    body_schema_with_url_pattern(endpoint, None)
}

/// [`body_schema`], with `url_pattern` (the input URL policy for the configured origin,
/// [`storage_path::input_url_pattern`]) as the `pattern` of every Storage URL field.
pub fn body_schema_with_url_pattern(endpoint: Endpoint, url_pattern: Option<&str>) -> Value {
    let specs = fields(endpoint);
    let has_alias = |name: &str| specs.iter().any(|s| s.alias_of == Some(name));
    let mut properties = serde_json::Map::new();
    for f in specs {
        let mut schema = f.json_schema();
        if f.required && has_alias(f.name) {
            // Either name may carry the value; the `oneOf` below requires exactly one of them.
            schema = json!({ "anyOf": [schema, { "type": "null" }], "description": f.description });
        }
        properties.insert(f.name.to_owned(), schema);
    }
    let required: Vec<&str> = specs
        .iter()
        .filter(|f| f.required && f.alias_of.is_none() && !has_alias(f.name))
        .map(|f| f.name)
        .collect();
    let mut all_of = Vec::new();
    for f in specs.iter().filter(|f| f.required && has_alias(f.name)) {
        let names = specs.iter().filter(|s| s.canonical_name() == f.name);
        let branches: Vec<Value> = names
            .map(
                |s| json!({ "required": [s.name], "properties": { s.name: { "type": "string" } } }),
            )
            .collect();
        all_of.push(json!({ "oneOf": branches }));
    }
    let has = |name: &str| specs.iter().any(|s| s.name == name);
    if has("model_version") {
        for &version in ModelVersion::ALL {
            let (min, max) = version.face_limit_range();
            let mut then = serde_json::Map::new();
            if has("face_limit") && (min, max) != (1, MAX_FACE_LIMIT) {
                then.insert(
                    "face_limit".into(),
                    json!({ "anyOf": [{ "type": "integer", "minimum": min, "maximum": max }, { "type": "null" }] }),
                );
            }
            if has("input_image_asset_urls") && !version.supports_multiview() {
                then.insert("input_image_asset_urls".into(), json!({ "maxItems": 1 }));
            }
            if !then.is_empty() {
                all_of.push(json!({
                    "if": { "required": ["model_version"], "properties": { "model_version": { "const": version.as_str() } } },
                    "then": { "properties": then },
                }));
            }
        }
    }
    let mut schema = json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    });
    if !all_of.is_empty() {
        schema["allOf"] = Value::Array(all_of);
    }
    if let Some(pattern) = url_pattern {
        add_url_pattern(&mut schema["properties"], pattern);
    }
    schema
}

/// Puts `pattern` on every URL string schema (`format: uri`) under `v`.
/// Puts `pattern` on every URL (`format: uri`) schema under `v`.
pub fn add_url_pattern(v: &mut Value, pattern: &str) {
    match v {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("uri") {
                map.insert("pattern".into(), Value::from(pattern));
            }
            for child in map.values_mut() {
                add_url_pattern(child, pattern);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| add_url_pattern(i, pattern)),
        _ => {}
    }
}

const TASK_ID: FieldSpec = FieldSpec::required(
    "task_id",
    FieldType::TaskId,
    "The client's id of the generation workflow; names the storage paths and rows.",
);
const STYLE: FieldSpec = FieldSpec::optional(
    "style",
    FieldType::Text {
        max_chars: MAX_STYLE_CHARS,
    },
    "Free-text style, stored in the row. Concepts: appended to the prompt as \"<prompt> Style: <style>\". Text-to-model: a Tripo style preset (e.g. object:clay) is sent as Tripo's `style`; other text is appended to the prompt when it fits. Image, sketch and refine tasks: not sent to Tripo.",
);
const TRIPO_PROMPT_TEXT: FieldType = FieldType::Text {
    max_chars: MAX_TRIPO_PROMPT_CHARS,
};
const OPTIONAL_TRIPO_PROMPT: FieldSpec = FieldSpec::optional(
    "prompt",
    TRIPO_PROMPT_TEXT,
    "Description stored in the row (not sent to Tripo for image, sketch and refine tasks).",
);
const TEXTURE: FieldSpec = FieldSpec::optional(
    "texture",
    FieldType::Bool,
    "Textured model (Tripo `texture`).",
)
.with_default(DefaultValue::Bool(true));
const PBR: FieldSpec = FieldSpec::optional(
    "pbr",
    FieldType::Bool,
    "PBR materials (Tripo `pbr`; true forces texture). Tripo's default when absent.",
);
const MODEL_VERSION: FieldSpec = FieldSpec::optional(
    "model_version",
    FieldType::Enum(ModelVersion::NAMES),
    "Tripo model version. Tripo's default (v2.5-20250123) when absent.",
);
const FACE_LIMIT: FieldSpec = FieldSpec::optional(
    "face_limit",
    FieldType::Integer {
        min: 1,
        max: MAX_FACE_LIMIT,
    },
    "Maximum number of faces (Tripo `face_limit`); the range also depends on model_version.",
);
const AUTO_SIZE: FieldSpec = FieldSpec::optional(
    "auto_size",
    FieldType::Bool,
    "Scale the model to real-world size in metres (Tripo `auto_size`).",
);
const TEXTURE_QUALITY: FieldSpec = FieldSpec::optional(
    "texture_quality",
    FieldType::Enum(TextureQuality::NAMES),
    "Tripo `texture_quality`.",
);
const ORIENTATION: FieldSpec = FieldSpec::optional(
    "orientation",
    FieldType::Enum(Orientation::NAMES),
    "Tripo `orientation` (effective with texture).",
);
const SOURCE_CONCEPT_IMAGE_ID: FieldSpec = FieldSpec::optional(
    "source_concept_image_id",
    FieldType::Uuid,
    "The concept_images row the input came from (flow B), stored in the row.",
);
const WEBHOOK_URL: FieldSpec = FieldSpec::optional(
    "webhook_url",
    FieldType::WebhookUrl,
    "Called with the step's final status view, signed the Standard Webhooks way (https; plain http only for a loopback host; the host must be in WEBHOOK_ALLOWED_HOSTS, else 422).",
);
const SOURCE_INPUT_ASSET_ID: FieldSpec = FieldSpec::optional(
    "source_input_asset_id",
    FieldType::Uuid,
    "The input_assets row of the input, stored in the row.",
);

static IMAGE_TO_IMAGE_FIELDS: [FieldSpec; 7] = [
    TASK_ID,
    FieldSpec::required(
        "input_image_asset_url",
        FieldType::StorageUrl,
        "Supabase Storage URL of the input image (PNG, JPEG or WebP, at most 20 MB).",
    ),
    FieldSpec::required(
        "prompt",
        FieldType::Text {
            max_chars: MAX_CONCEPTS_PROMPT_CHARS,
        },
        "What to make of the image (with ` Style: <style>` appended, it fits OpenAI's 32000 characters).",
    ),
    STYLE,
    FieldSpec::optional(
        "n",
        FieldType::Integer {
            min: 1,
            max: MAX_CONCEPTS,
        },
        "Number of concept images.",
    )
    .with_default(DefaultValue::Integer(1)),
    FieldSpec::optional(
        "background",
        FieldType::Enum(Background::NAMES),
        "OpenAI `background`. OpenAI's default (auto) when absent.",
    ),
    WEBHOOK_URL,
];

static TEXT_TO_MODEL_FIELDS: [FieldSpec; 10] = [
    TASK_ID,
    FieldSpec::required(
        "prompt",
        TRIPO_PROMPT_TEXT,
        "What to model (sent to Tripo).",
    ),
    STYLE,
    TEXTURE,
    PBR,
    MODEL_VERSION,
    FACE_LIMIT,
    AUTO_SIZE,
    TEXTURE_QUALITY,
    WEBHOOK_URL,
];

static IMAGE_TO_MODEL_FIELDS: [FieldSpec; 14] = [
    TASK_ID,
    FieldSpec::required(
        "input_image_asset_urls",
        FieldType::StorageUrls {
            min_items: 1,
            max_items: MAX_VIEWS,
        },
        "Supabase Storage URLs: 1 image, or 2-4 views as [front, left, back, right].",
    ),
    OPTIONAL_TRIPO_PROMPT,
    STYLE,
    TEXTURE,
    PBR,
    MODEL_VERSION,
    FACE_LIMIT,
    AUTO_SIZE,
    TEXTURE_QUALITY,
    ORIENTATION,
    SOURCE_CONCEPT_IMAGE_ID,
    SOURCE_INPUT_ASSET_ID,
    WEBHOOK_URL,
];

static SKETCH_TO_MODEL_FIELDS: [FieldSpec; 14] = [
    TASK_ID,
    FieldSpec::required(
        "input_sketch_asset_url",
        FieldType::StorageUrl,
        "Supabase Storage URL of the sketch (PNG, JPEG or WebP).",
    ),
    OPTIONAL_TRIPO_PROMPT,
    STYLE,
    TEXTURE,
    PBR,
    MODEL_VERSION,
    FACE_LIMIT,
    AUTO_SIZE,
    TEXTURE_QUALITY,
    ORIENTATION,
    SOURCE_CONCEPT_IMAGE_ID,
    SOURCE_INPUT_ASSET_ID,
    WEBHOOK_URL,
];

static REFINE_MODEL_FIELDS: [FieldSpec; 13] = [
    TASK_ID,
    FieldSpec::required(
        "tripo_draft_task_id",
        FieldType::ProviderTaskId,
        "Tripo task id of the draft model to refine.",
    ),
    FieldSpec::optional("draft_model_task_id", FieldType::ProviderTaskId, "")
        .alias_of("tripo_draft_task_id"),
    OPTIONAL_TRIPO_PROMPT,
    STYLE,
    FieldSpec::optional(
        "input_model_asset_url",
        FieldType::StorageUrl,
        "Supabase Storage URL of the draft .glb, stored in the row's metadata (not downloaded).",
    ),
    TEXTURE,
    PBR,
    MODEL_VERSION,
    FACE_LIMIT,
    AUTO_SIZE,
    TEXTURE_QUALITY,
    WEBHOOK_URL,
];

/// The accepted fields of an endpoint, in documentation order.
pub fn fields(endpoint: Endpoint) -> &'static [FieldSpec] {
    match endpoint {
        Endpoint::ImageToImage => &IMAGE_TO_IMAGE_FIELDS,
        Endpoint::TextToModel => &TEXT_TO_MODEL_FIELDS,
        Endpoint::ImageToModel => &IMAGE_TO_MODEL_FIELDS,
        Endpoint::SketchToModel => &SKETCH_TO_MODEL_FIELDS,
        Endpoint::RefineModel => &REFINE_MODEL_FIELDS,
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Validates the body of `endpoint`. See the module doc for the rules.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<ValidRequest, RequestError> {
    let Members(members) =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let specs = fields(endpoint);
    let mut values = Values::default();
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();

    for (name, value) in &members {
        let Some(spec) = specs.iter().find(|s| s.name == name.as_str()) else {
            errors.push(FieldError::new(echo_name(name), "unknown field"));
            continue;
        };
        if seen.contains(&spec.name) {
            errors.push(FieldError::new(spec.name, "is given more than once"));
            continue;
        }
        seen.push(spec.name);
        match check_value(spec, value) {
            Ok(Some(parsed)) => {
                if values.insert(spec, parsed).is_err() {
                    errors.push(alias_conflict(specs, spec.canonical_name()));
                }
            }
            Ok(None) => {}
            Err(mut field_errors) => errors.append(&mut field_errors),
        }
    }
    for spec in specs.iter().filter(|s| s.alias_of.is_none()) {
        if values.contains(spec.name) {
            continue;
        }
        let mut given = members
            .iter()
            .filter(|(n, _)| field_of(specs, n) == spec.name)
            .map(|(_, v)| v)
            .peekable();
        if spec.required {
            if given.peek().is_none() {
                errors.push(FieldError::new(spec.name, "is required"));
            } else if given.all(Value::is_null) {
                errors.push(FieldError::new(spec.name, "must not be null"));
            } // else: the invalid value was reported already
        } else if let Some(default) = spec.default {
            values.set_default(spec.name, default);
        }
    }
    errors.extend(cross_checks(&values));
    if !errors.is_empty() {
        return Err(RequestError::Invalid(errors));
    }
    build(endpoint, &values).map_err(|e| RequestError::Invalid(vec![e]))
}

/// A client-supplied key as echoed in an error: at most 64 characters.
fn echo_name(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}

/// The error for a field given under two names, reported on the canonical name.
fn alias_conflict(specs: &[FieldSpec], canonical: &'static str) -> FieldError {
    let names: Vec<&str> = specs
        .iter()
        .filter(|s| s.canonical_name() == canonical)
        .map(|s| s.name)
        .collect();
    FieldError::new(
        canonical,
        format!(
            "give only one of {} (they name the same field)",
            names.join(" and ")
        ),
    )
}

/// The canonical field name of a wire name.
fn field_of(specs: &[FieldSpec], wire: &str) -> &'static str {
    specs
        .iter()
        .find(|s| s.name == wire)
        .map_or("", FieldSpec::canonical_name)
}

/// The members of a JSON object in document order, duplicates kept (serde_json's `Value` would
/// silently keep the last of two equal keys).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    members.push((k, v));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

/// A validated field value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    TaskId(TaskId),
    Text(String),
    Enum(&'static str),
    Bool(bool),
    Integer(i64),
    Uuid(Uuid),
    Url(String),
    Urls(Vec<String>),
}

/// Validated values by canonical field name.
#[derive(Debug, Default)]
struct Values(BTreeMap<&'static str, Parsed>);

impl Values {
    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Stores a value under its canonical name. `Err` when the field was already given under
    /// another name (an alias): exactly one of the names may carry it (the document's `oneOf`).
    fn insert(&mut self, spec: &FieldSpec, value: Parsed) -> Result<(), ()> {
        if self.0.contains_key(spec.canonical_name()) {
            return Err(());
        }
        self.0.insert(spec.canonical_name(), value);
        Ok(())
    }

    fn set_default(&mut self, name: &'static str, default: DefaultValue) {
        let value = match default {
            DefaultValue::Bool(b) => Parsed::Bool(b),
            DefaultValue::Integer(i) => Parsed::Integer(i),
        };
        self.0.insert(name, value);
    }

    fn text(&self, name: &str) -> Option<String> {
        match self.0.get(name) {
            Some(Parsed::Text(s) | Parsed::Url(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn bool(&self, name: &str) -> Option<bool> {
        match self.0.get(name) {
            Some(Parsed::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn int(&self, name: &str) -> Option<i64> {
        match self.0.get(name) {
            Some(Parsed::Integer(i)) => Some(*i),
            _ => None,
        }
    }

    fn enum_str(&self, name: &str) -> Option<&'static str> {
        match self.0.get(name) {
            Some(Parsed::Enum(s)) => Some(s),
            _ => None,
        }
    }

    fn uuid(&self, name: &str) -> Option<Uuid> {
        match self.0.get(name) {
            Some(Parsed::Uuid(u)) => Some(*u),
            _ => None,
        }
    }

    fn urls(&self, name: &str) -> Option<Vec<String>> {
        match self.0.get(name) {
            Some(Parsed::Urls(u)) => Some(u.clone()),
            _ => None,
        }
    }

    fn task_id(&self) -> Option<TaskId> {
        match self.0.get("task_id") {
            Some(Parsed::TaskId(t)) => Some(t.clone()),
            _ => None,
        }
    }

    fn model_version(&self) -> Option<ModelVersion> {
        self.enum_str("model_version").and_then(ModelVersion::parse)
    }
}

/// Checks one value against its spec: `Ok(None)` when it counts as absent (null, or an empty
/// optional text).
fn check_value(spec: &FieldSpec, value: &Value) -> Result<Option<Parsed>, Vec<FieldError>> {
    if value.is_null() {
        return Ok(None); // a null required field is reported by the caller
    }
    let one = |message: String| vec![FieldError::new(spec.name, message)];
    match spec.ty {
        FieldType::TaskId => {
            let s = value.as_str().ok_or_else(|| one(must_be_string()))?;
            TaskId::parse(s)
                .map(|t| Some(Parsed::TaskId(t)))
                .map_err(|e| one(e.to_string()))
        }
        FieldType::Text { max_chars } => {
            let s = value.as_str().ok_or_else(|| one(must_be_string()))?;
            check_text(s, max_chars, spec.required).map_err(one)
        }
        FieldType::Enum(names) => {
            let s = value.as_str().ok_or_else(|| one(must_be_string()))?;
            names
                .iter()
                .find(|n| **n == s)
                .map(|n| Some(Parsed::Enum(n)))
                .ok_or_else(|| one(format!("must be one of: {}", names.join(", "))))
        }
        FieldType::Bool => value
            .as_bool()
            .map(|b| Some(Parsed::Bool(b)))
            .ok_or_else(|| one("must be a boolean".into())),
        FieldType::Integer { min, max } => check_integer(value, min, max)
            .map(|i| Some(Parsed::Integer(i)))
            .map_err(one),
        FieldType::Uuid => {
            let s = value.as_str().ok_or_else(|| one(must_be_string()))?;
            // `format: uuid` is the hyphenated form only (RFC 9562), the only 36-character
            // form `Uuid::try_parse` reads (it also takes braced, URN and unhyphenated ones).
            Uuid::try_parse(s)
                .ok()
                .filter(|_| s.len() == 36)
                .map(|u| Some(Parsed::Uuid(u)))
                .ok_or_else(|| one("must be a UUID (8-4-4-4-12 hexadecimal digits)".into()))
        }
        FieldType::StorageUrl => check_url(value).map(|u| Some(Parsed::Url(u))).map_err(one),
        FieldType::StorageUrls {
            min_items,
            max_items,
        } => check_urls(spec.name, value, min_items, max_items).map(|u| Some(Parsed::Urls(u))),
        FieldType::ProviderTaskId => {
            let s = value.as_str().ok_or_else(|| one(must_be_string()))?;
            check_provider_id(s)
                .map(|()| Some(Parsed::Text(s.to_owned())))
                .map_err(one)
        }
        FieldType::WebhookUrl => {
            let s = value.as_str().ok_or_else(|| one(must_be_string()))?;
            super::webhook::check_url(s)
                .map(|_| Some(Parsed::Url(s.to_owned())))
                .map_err(|e| one(e.to_string()))
        }
    }
}

fn must_be_string() -> String {
    "must be a string".to_owned()
}

/// The document's rules in the same order of precedence: `maxLength`, then the pattern (no NUL;
/// a required text has a non-blank character, an optional blank one means absent).
fn check_text(s: &str, max_chars: usize, required: bool) -> Result<Option<Parsed>, String> {
    if s.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if s.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    if s.trim().is_empty() {
        return if required {
            Err("must not be empty".into())
        } else {
            Ok(None)
        };
    }
    Ok(Some(Parsed::Text(s.to_owned())))
}

/// JSON Schema's `integer`: any number with a zero fractional part, so `1.0` and `1e2` are
/// integers too (a client generated from the document may send them).
#[allow(clippy::cast_possible_truncation)] // a whole number within [min, max]
fn check_integer(value: &Value, min: i64, max: i64) -> Result<i64, String> {
    let i = match (value.as_i64(), value.as_u64(), value.as_f64()) {
        (Some(i), _, _) => i,
        (None, Some(_), _) => return Err(format!("must be at most {max}")),
        (None, None, Some(f)) if f.is_finite() && f.fract() == 0.0 => {
            if f < min as f64 {
                return Err(format!("must be at least {min}"));
            }
            if f > max as f64 {
                return Err(format!("must be at most {max}"));
            }
            f as i64
        }
        _ => return Err("must be an integer".into()),
    };
    if i < min {
        Err(format!("must be at least {min}"))
    } else if i > max {
        Err(format!("must be at most {max}"))
    } else {
        Ok(i)
    }
}

fn check_url(value: &Value) -> Result<String, String> {
    let s = value.as_str().ok_or_else(must_be_string)?;
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > storage_path::MAX_URL_LEN {
        return Err(format!(
            "must be at most {} characters",
            storage_path::MAX_URL_LEN
        ));
    }
    Ok(s.to_owned())
}

fn check_urls(
    name: &str,
    value: &Value,
    min_items: usize,
    max_items: usize,
) -> Result<Vec<String>, Vec<FieldError>> {
    let items = value
        .as_array()
        .ok_or_else(|| vec![FieldError::new(name, "must be an array of URLs")])?;
    let mut errors = Vec::new();
    if items.len() < min_items {
        errors.push(FieldError::new(
            name,
            format!("must have at least {min_items} item(s)"),
        ));
    }
    if items.len() > max_items {
        errors.push(FieldError::new(
            name,
            format!("must have at most {max_items} items"),
        ));
    }
    let mut urls = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match check_url(item) {
            Ok(u) => urls.push(u),
            Err(m) => errors.push(FieldError::new(format!("{name}[{i}]"), m)),
        }
    }
    if errors.is_empty() {
        Ok(urls)
    } else {
        Err(errors)
    }
}

fn check_provider_id(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_PROVIDER_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be a Tripo task id (1 to {MAX_PROVIDER_ID_LEN} letters, digits, '-' or '_')"
        ))
    }
}

/// Rules that involve more than one field (only on fields that were valid on their own); the
/// `allOf` of [`body_schema`] states them.
fn cross_checks(v: &Values) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(version) = v.model_version() {
        if let Some(faces) = v.int("face_limit") {
            let (min, max) = version.face_limit_range();
            if faces < min || faces > max {
                errors.push(FieldError::new(
                    "face_limit",
                    format!(
                        "must be between {min} and {max} for model_version {}",
                        version.as_str()
                    ),
                ));
            }
        }
        let views = v.urls("input_image_asset_urls").map_or(0, |u| u.len());
        if views > 1 && !version.supports_multiview() {
            errors.push(FieldError::new(
                "model_version",
                format!(
                    "{} does not support multiview input (2-4 images)",
                    version.as_str()
                ),
            ));
        }
    }
    errors
}

fn missing(name: &str) -> FieldError {
    FieldError::new(name, "is required")
}

/// Builds the typed request from values that passed every check.
fn build(endpoint: Endpoint, v: &Values) -> Result<ValidRequest, FieldError> {
    let task_id = v.task_id().ok_or_else(|| missing("task_id"))?;
    let request = match endpoint {
        Endpoint::ImageToImage => StepRequest::Concepts(ConceptsRequest {
            input_image_asset_url: v
                .text("input_image_asset_url")
                .ok_or_else(|| missing("input_image_asset_url"))?,
            prompt: v.text("prompt").ok_or_else(|| missing("prompt"))?,
            style: v.text("style"),
            n: v.int("n")
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| missing("n"))?,
            background: v.enum_str("background").and_then(Background::parse),
            webhook_url: v.text("webhook_url"),
        }),
        Endpoint::TextToModel => StepRequest::Model(ModelRequest {
            source: ModelSource::Text {
                prompt: v.text("prompt").ok_or_else(|| missing("prompt"))?,
            },
            style: v.text("style"),
            options: model_options(v)?,
            webhook_url: v.text("webhook_url"),
        }),
        Endpoint::ImageToModel => StepRequest::Model(ModelRequest {
            source: ModelSource::Image {
                urls: v
                    .urls("input_image_asset_urls")
                    .ok_or_else(|| missing("input_image_asset_urls"))?,
                image: image_options(v),
            },
            style: v.text("style"),
            options: model_options(v)?,
            webhook_url: v.text("webhook_url"),
        }),
        Endpoint::SketchToModel => StepRequest::Model(ModelRequest {
            source: ModelSource::Sketch {
                url: v
                    .text("input_sketch_asset_url")
                    .ok_or_else(|| missing("input_sketch_asset_url"))?,
                image: image_options(v),
            },
            style: v.text("style"),
            options: model_options(v)?,
            webhook_url: v.text("webhook_url"),
        }),
        Endpoint::RefineModel => StepRequest::Refine(RefineRequest {
            tripo_draft_task_id: v
                .text("tripo_draft_task_id")
                .ok_or_else(|| missing("tripo_draft_task_id"))?,
            prompt: v.text("prompt"),
            style: v.text("style"),
            input_model_asset_url: v.text("input_model_asset_url"),
            options: model_options(v)?,
            webhook_url: v.text("webhook_url"),
        }),
    };
    Ok(ValidRequest { task_id, request })
}

fn model_options(v: &Values) -> Result<ModelOptions, FieldError> {
    let face_limit = match v.int("face_limit") {
        Some(f) => {
            Some(u32::try_from(f).map_err(|_| FieldError::new("face_limit", "is out of range"))?)
        }
        None => None,
    };
    Ok(ModelOptions {
        texture: v.bool("texture").ok_or_else(|| missing("texture"))?,
        pbr: v.bool("pbr"),
        model_version: v.model_version(),
        face_limit,
        auto_size: v.bool("auto_size"),
        texture_quality: v
            .enum_str("texture_quality")
            .and_then(TextureQuality::parse),
    })
}

fn image_options(v: &Values) -> ImageOptions {
    ImageOptions {
        prompt: v.text("prompt"),
        orientation: v.enum_str("orientation").and_then(Orientation::parse),
        source_concept_image_id: v.uuid("source_concept_image_id"),
        source_input_asset_id: v.uuid("source_input_asset_id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "https://abc.supabase.co/storage/v1/object/public/inputs/u/a.png";
    const URL2: &str = "https://abc.supabase.co/storage/v1/object/public/inputs/u/b.png";
    const UUID_A: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

    fn parse_json(endpoint: Endpoint, body: Value) -> Result<ValidRequest, RequestError> {
        parse(endpoint, body.to_string().as_bytes())
    }

    fn ok(endpoint: Endpoint, body: Value) -> StepRequest {
        match parse_json(endpoint, body.clone()) {
            Ok(v) => v.request,
            Err(e) => panic!("{body}: {e:?}"),
        }
    }

    /// The field errors of a refused body, as (field, message) pairs.
    fn errors(endpoint: Endpoint, body: Value) -> Vec<(String, String)> {
        match parse_json(endpoint, body.clone()) {
            Err(RequestError::Invalid(errs)) => {
                errs.into_iter().map(|e| (e.field, e.message)).collect()
            }
            other => panic!("{body}: expected Invalid, got {other:?}"),
        }
    }

    fn has_error(errs: &[(String, String)], field: &str, needle: &str) -> bool {
        errs.iter().any(|(f, m)| f == field && m.contains(needle))
    }

    fn assert_error(endpoint: Endpoint, body: Value, field: &str, needle: &str) {
        let errs = errors(endpoint, body.clone());
        assert!(
            has_error(&errs, field, needle),
            "{body}: want {field} ~ {needle:?}, got {errs:?}"
        );
    }

    fn origin() -> Origin {
        Origin::parse("https://abc.supabase.co").unwrap()
    }

    // --- Endpoints ---------------------------------------------------------------------------

    #[test]
    fn endpoints_have_names_paths_and_steps() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_name(e.name()), Some(e));
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
            assert_eq!(e.path(), format!("/generate/{}", e.name()));
        }
        assert_eq!(Endpoint::from_path("/generate/nope"), None);
        assert_eq!(Endpoint::ImageToImage.step(), Step::Concepts);
        assert_eq!(Endpoint::SketchToModel.step(), Step::Model);
        assert_eq!(Endpoint::RefineModel.step(), Step::Refine);
        assert_eq!(
            serde_json::to_string(&Endpoint::TextToModel).unwrap(),
            "\"text-to-model\""
        );
    }

    // --- Valid bodies ------------------------------------------------------------------------

    #[test]
    fn minimal_image_to_image_gets_defaults() {
        let v = parse_json(
            Endpoint::ImageToImage,
            json!({"task_id": "t-1", "input_image_asset_url": URL, "prompt": "a toy"}),
        )
        .unwrap();
        assert_eq!(v.task_id.as_str(), "t-1");
        assert_eq!(
            v.request,
            StepRequest::Concepts(ConceptsRequest {
                input_image_asset_url: URL.into(),
                prompt: "a toy".into(),
                style: None,
                n: 1,
                background: None,
                webhook_url: None,
            })
        );
        assert_eq!(v.request.output_count(), 1);
    }

    #[test]
    fn full_image_to_image() {
        let r = ok(
            Endpoint::ImageToImage,
            json!({"task_id": "t-1", "input_image_asset_url": URL, "prompt": "a toy",
                   "style": "cute", "n": 4, "background": "transparent"}),
        );
        let StepRequest::Concepts(c) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(c.n, 4);
        assert_eq!(c.background, Some(Background::Transparent));
        assert_eq!(c.openai_prompt(), "a toy Style: cute");
        assert_eq!(r.output_count(), 4);
        assert_eq!(r.style(), Some("cute"));
    }

    #[test]
    fn text_to_model_minimal_and_full() {
        let min = ok(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "a cat"}),
        );
        assert_eq!(
            min,
            StepRequest::Model(ModelRequest {
                source: ModelSource::Text {
                    prompt: "a cat".into()
                },
                style: None,
                options: ModelOptions::default(),
                webhook_url: None,
            })
        );
        let full = ok(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "a cat", "style": "clay", "texture": false,
                   "pbr": true, "model_version": "v3.0-20250812", "face_limit": 10000,
                   "auto_size": true, "texture_quality": "detailed"}),
        );
        let StepRequest::Model(m) = &full else {
            panic!()
        };
        assert_eq!(
            m.options,
            ModelOptions {
                texture: false,
                pbr: Some(true),
                model_version: Some(ModelVersion::V3_0),
                face_limit: Some(10_000),
                auto_size: Some(true),
                texture_quality: Some(TextureQuality::Detailed),
            }
        );
        assert_eq!(m.style.as_deref(), Some("clay"));
        assert_eq!(m.tripo_task_type(), TripoTaskType::TextToModel);
        assert_eq!(full.prompt(), Some("a cat"));
        assert_eq!(m.image_options(), None);
    }

    #[test]
    fn image_to_model_single_and_multiview() {
        let one = ok(
            Endpoint::ImageToModel,
            json!({"task_id": "t", "input_image_asset_urls": [URL]}),
        );
        let StepRequest::Model(m) = &one else {
            panic!()
        };
        assert_eq!(m.tripo_task_type(), TripoTaskType::ImageToModel);
        assert_eq!(one.prompt(), None);
        assert_eq!(one.endpoint(), Endpoint::ImageToModel);

        let multi = ok(
            Endpoint::ImageToModel,
            json!({"task_id": "t", "input_image_asset_urls": [URL, URL2, URL],
                   "prompt": "chair", "orientation": "align_image",
                   "source_concept_image_id": UUID_A, "source_input_asset_id": UUID_A}),
        );
        let StepRequest::Model(m) = &multi else {
            panic!()
        };
        assert_eq!(m.tripo_task_type(), TripoTaskType::MultiviewToModel);
        let image = m.image_options().unwrap();
        assert_eq!(image.orientation, Some(Orientation::AlignImage));
        assert_eq!(
            image.source_concept_image_id,
            Some(Uuid::parse_str(UUID_A).unwrap())
        );
        assert_eq!(multi.prompt(), Some("chair"));
        assert_eq!(input_urls(&multi), vec![URL, URL2, URL]);
    }

    #[test]
    fn sketch_to_model() {
        let r = ok(
            Endpoint::SketchToModel,
            json!({"task_id": "t", "input_sketch_asset_url": URL, "prompt": "a house",
                   "orientation": "default", "texture": true}),
        );
        let StepRequest::Model(m) = &r else { panic!() };
        assert_eq!(m.tripo_task_type(), TripoTaskType::ImageToModel);
        assert_eq!(r.endpoint(), Endpoint::SketchToModel);
        assert_eq!(input_urls(&r), vec![URL]);
        assert_eq!(
            url_fields(&r),
            vec![("input_sketch_asset_url".to_owned(), URL)]
        );
    }

    #[test]
    fn refine_accepts_name_and_alias() {
        let canonical = ok(
            Endpoint::RefineModel,
            json!({"task_id": "t", "tripo_draft_task_id": "1ec04ced-4b87-44f6-a296-beee80777941"}),
        );
        let alias = ok(
            Endpoint::RefineModel,
            json!({"task_id": "t", "draft_model_task_id": "1ec04ced-4b87-44f6-a296-beee80777941"}),
        );
        assert_eq!(canonical, alias);
        assert_eq!(fingerprint(&canonical), fingerprint(&alias));
        let both = ok(
            Endpoint::RefineModel,
            json!({"task_id": "t", "tripo_draft_task_id": "abc", "draft_model_task_id": null,
                   "input_model_asset_url": URL, "prompt": "p", "style": "s",
                   "pbr": false, "face_limit": 5}),
        );
        let StepRequest::Refine(r) = &both else {
            panic!()
        };
        assert_eq!(r.tripo_draft_task_id, "abc");
        assert_eq!(r.input_model_asset_url.as_deref(), Some(URL));
        assert_eq!(r.options.pbr, Some(false));
        assert!(r.options.texture);
        // The model URL is policy-checked but never downloaded.
        assert!(input_urls(&both).is_empty());
        assert_eq!(
            url_fields(&both),
            vec![("input_model_asset_url".to_owned(), URL)]
        );
    }

    #[test]
    fn refine_alias_conflict_and_absence() {
        assert_error(
            Endpoint::RefineModel,
            json!({"task_id": "t", "tripo_draft_task_id": "a", "draft_model_task_id": "b"}),
            "tripo_draft_task_id",
            "give only one of tripo_draft_task_id and draft_model_task_id",
        );
        // The document says exactly one of the two names (`oneOf`), so equal values are refused
        // too; a null one counts as absent.
        assert_error(
            Endpoint::RefineModel,
            json!({"task_id": "t", "tripo_draft_task_id": "a", "draft_model_task_id": "a"}),
            "tripo_draft_task_id",
            "give only one of",
        );
        assert!(parse_json(
            Endpoint::RefineModel,
            json!({"task_id": "t", "tripo_draft_task_id": null, "draft_model_task_id": "a"})
        )
        .is_ok());
        assert_error(
            Endpoint::RefineModel,
            json!({"task_id": "t"}),
            "tripo_draft_task_id",
            "is required",
        );
        assert_error(
            Endpoint::RefineModel,
            json!({"task_id": "t", "draft_model_task_id": null}),
            "tripo_draft_task_id",
            "must not be null",
        );
        assert_error(
            Endpoint::RefineModel,
            json!({"task_id": "t", "tripo_draft_task_id": "a/b"}),
            "tripo_draft_task_id",
            "Tripo task id",
        );
        let long = "a".repeat(MAX_PROVIDER_ID_LEN + 1);
        assert_error(
            Endpoint::RefineModel,
            json!({"task_id": "t", "draft_model_task_id": long}),
            "draft_model_task_id",
            "Tripo task id",
        );
    }

    #[test]
    fn alias_conflict_is_reported_whatever_the_key_order() {
        for body in [
            &br#"{"task_id":"t","tripo_draft_task_id":"a","draft_model_task_id":"b"}"#[..],
            br#"{"draft_model_task_id":"b","task_id":"t","tripo_draft_task_id":"a"}"#,
        ] {
            let Err(RequestError::Invalid(errs)) = parse(Endpoint::RefineModel, body) else {
                panic!("{}", String::from_utf8_lossy(body));
            };
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].field, "tripo_draft_task_id");
        }
    }

    #[test]
    fn nulls_mean_absent_for_optional_fields() {
        let with_nulls = ok(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "p", "style": null, "texture": null, "pbr": null,
                   "model_version": null, "face_limit": null, "auto_size": null,
                   "texture_quality": null}),
        );
        assert_eq!(
            with_nulls,
            ok(
                Endpoint::TextToModel,
                json!({"task_id": "t", "prompt": "p"})
            )
        );
    }

    #[test]
    fn empty_optional_text_is_absent_required_is_error() {
        let r = ok(
            Endpoint::ImageToModel,
            json!({"task_id": "t", "input_image_asset_urls": [URL], "prompt": "  ", "style": ""}),
        );
        assert_eq!(r.prompt(), None);
        assert_eq!(r.style(), None);
        assert_error(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": " \n\t"}),
            "prompt",
            "must not be empty",
        );
        assert_error(
            Endpoint::ImageToImage,
            json!({"task_id": "t", "input_image_asset_url": URL, "prompt": ""}),
            "prompt",
            "must not be empty",
        );
    }

    // --- Malformed and invalid bodies --------------------------------------------------------

    #[test]
    fn malformed_bodies_are_400() {
        for body in [
            &b""[..],
            b"not json",
            b"[]",
            b"\"x\"",
            b"42",
            b"null",
            b"{\"task_id\":",
            b"{} {}",
        ] {
            assert!(
                matches!(
                    parse(Endpoint::TextToModel, body),
                    Err(RequestError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn collects_every_problem_at_once() {
        let errs = errors(
            Endpoint::ImageToImage,
            json!({"task_id": "../x", "prompt": 5, "n": 0, "background": "none",
                   "output_image_size": "1024x1024"}),
        );
        assert!(has_error(&errs, "task_id", "must start with"), "{errs:?}");
        assert!(has_error(&errs, "prompt", "must be a string"), "{errs:?}");
        assert!(has_error(&errs, "n", "at least 1"), "{errs:?}");
        assert!(has_error(
            &errs,
            "background",
            "one of: transparent, opaque, auto"
        ));
        assert!(has_error(&errs, "output_image_size", "unknown field"));
        assert!(has_error(&errs, "input_image_asset_url", "is required"));
        assert_eq!(errs.len(), 6, "{errs:?}");
    }

    #[test]
    fn unknown_fields_are_refused_per_endpoint() {
        // Valid elsewhere, unknown here.
        assert_error(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "p", "orientation": "default"}),
            "orientation",
            "unknown field",
        );
        assert_error(
            Endpoint::ImageToImage,
            json!({"task_id": "t", "input_image_asset_url": URL, "prompt": "p", "texture": true}),
            "texture",
            "unknown field",
        );
        assert_error(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "p", "Prompt": "p"}),
            "Prompt",
            "unknown field",
        );
    }

    #[test]
    fn unknown_field_names_are_echoed_short() {
        let errs = errors(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "p", "x".repeat(500): 1}),
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, format!("{}…", "x".repeat(64)));
        assert_eq!(errs[0].1, "unknown field");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let body = br#"{"task_id":"t","prompt":"a","prompt":"b"}"#;
        match parse(Endpoint::TextToModel, body) {
            Err(RequestError::Invalid(errs)) => {
                assert_eq!(
                    errs,
                    vec![FieldError::new("prompt", "is given more than once")]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn required_fields_are_required_and_not_null() {
        assert_error(
            Endpoint::TextToModel,
            json!({"prompt": "p"}),
            "task_id",
            "is required",
        );
        assert_error(
            Endpoint::TextToModel,
            json!({"task_id": null, "prompt": "p"}),
            "task_id",
            "must not be null",
        );
        assert_error(
            Endpoint::ImageToModel,
            json!({"task_id": "t"}),
            "input_image_asset_urls",
            "is required",
        );
        assert_error(
            Endpoint::SketchToModel,
            json!({"task_id": "t"}),
            "input_sketch_asset_url",
            "is required",
        );
    }

    #[test]
    fn wrong_types_are_reported() {
        let t = Endpoint::TextToModel;
        assert_error(t, json!({"task_id": 7, "prompt": "p"}), "task_id", "string");
        assert_error(
            t,
            json!({"task_id": "t", "prompt": ["p"]}),
            "prompt",
            "string",
        );
        assert_error(
            t,
            json!({"task_id": "t", "prompt": "p", "texture": "true"}),
            "texture",
            "boolean",
        );
        assert_error(
            t,
            json!({"task_id": "t", "prompt": "p", "texture": 1}),
            "texture",
            "boolean",
        );
        assert_error(
            t,
            json!({"task_id": "t", "prompt": "p", "face_limit": "5"}),
            "face_limit",
            "integer",
        );
        assert_error(
            t,
            json!({"task_id": "t", "prompt": "p", "face_limit": 5.5}),
            "face_limit",
            "integer",
        );
        assert_error(
            t,
            json!({"task_id": "t", "prompt": "p", "model_version": 2.5}),
            "model_version",
            "string",
        );
        let i = Endpoint::ImageToModel;
        assert_error(
            i,
            json!({"task_id": "t", "input_image_asset_urls": URL}),
            "input_image_asset_urls",
            "array",
        );
        assert_error(
            i,
            json!({"task_id": "t", "input_image_asset_urls": [URL, 3]}),
            "input_image_asset_urls[1]",
            "string",
        );
        assert_error(
            i,
            json!({"task_id": "t", "input_image_asset_urls": [URL, ""]}),
            "input_image_asset_urls[1]",
            "empty",
        );
        assert_error(
            i,
            json!({"task_id": "t", "input_image_asset_urls": [URL], "source_concept_image_id": "x"}),
            "source_concept_image_id",
            "UUID",
        );
        assert_error(
            i,
            json!({"task_id": "t", "input_image_asset_urls": [URL], "source_input_asset_id": 5}),
            "source_input_asset_id",
            "string",
        );
    }

    #[test]
    fn n_bounds() {
        let body =
            |n: Value| json!({"task_id": "t", "input_image_asset_url": URL, "prompt": "p", "n": n});
        for n in [1, 10] {
            let StepRequest::Concepts(c) = ok(Endpoint::ImageToImage, body(json!(n))) else {
                panic!()
            };
            assert_eq!(i64::from(c.n), n);
        }
        assert_error(Endpoint::ImageToImage, body(json!(0)), "n", "at least 1");
        assert_error(Endpoint::ImageToImage, body(json!(-3)), "n", "at least 1");
        assert_error(Endpoint::ImageToImage, body(json!(11)), "n", "at most 10");
        assert_error(
            Endpoint::ImageToImage,
            body(json!(u64::MAX)),
            "n",
            "at most 10",
        );
        assert_error(Endpoint::ImageToImage, body(json!("2")), "n", "integer");
        assert_error(Endpoint::ImageToImage, body(json!(1.5)), "n", "integer");
        // JSON Schema `integer` is any number with a zero fractional part: 1.0 and 1e1 are
        // integers (a client generated from the document may send them).
        for (n, want) in [(json!(1.0), 1), (json!(1e1), 10), (json!(4.0), 4)] {
            let StepRequest::Concepts(c) = ok(Endpoint::ImageToImage, body(n.clone())) else {
                panic!()
            };
            assert_eq!(c.n, want, "{n}");
        }
        assert_error(
            Endpoint::ImageToImage,
            body(json!(1e300)),
            "n",
            "at most 10",
        );
        assert_error(Endpoint::ImageToImage, body(json!(-0.0)), "n", "at least 1");
        assert_eq!(
            fingerprint(&ok(Endpoint::ImageToImage, body(json!(2.0)))),
            fingerprint(&ok(Endpoint::ImageToImage, body(json!(2))))
        );
    }

    #[test]
    fn face_limit_bounds_global_and_per_version() {
        let body = |f: Value, v: Value| json!({"task_id": "t", "prompt": "p", "face_limit": f, "model_version": v});
        assert!(parse_json(Endpoint::TextToModel, body(json!(1), Value::Null)).is_ok());
        assert!(parse_json(
            Endpoint::TextToModel,
            body(json!(MAX_FACE_LIMIT), Value::Null)
        )
        .is_ok());
        assert_error(
            Endpoint::TextToModel,
            body(json!(0), Value::Null),
            "face_limit",
            "at least 1",
        );
        assert_error(
            Endpoint::TextToModel,
            body(json!(MAX_FACE_LIMIT + 1), Value::Null),
            "face_limit",
            "at most",
        );
        assert!(parse_json(Endpoint::TextToModel, body(json!(48), json!("P1-20260311"))).is_ok());
        assert_error(
            Endpoint::TextToModel,
            body(json!(47), json!("P1-20260311")),
            "face_limit",
            "between 48 and 20000",
        );
        assert_error(
            Endpoint::TextToModel,
            body(json!(20_001), json!("P1-20260311")),
            "face_limit",
            "between 48 and 20000",
        );
        assert_error(
            Endpoint::TextToModel,
            body(json!(500_001), json!("v2.5-20250123")),
            "face_limit",
            "500000",
        );
        assert_error(
            Endpoint::TextToModel,
            body(json!(50_001), json!("Turbo-v1.0-20250506")),
            "face_limit",
            "50000",
        );
        assert!(parse_json(
            Endpoint::TextToModel,
            body(json!(2_000_000), json!("v3.1-20260211"))
        )
        .is_ok());
    }

    #[test]
    fn url_list_bounds() {
        let body = |urls: Vec<&str>| json!({"task_id": "t", "input_image_asset_urls": urls});
        assert_error(
            Endpoint::ImageToModel,
            body(vec![]),
            "input_image_asset_urls",
            "at least 1",
        );
        assert_error(
            Endpoint::ImageToModel,
            body(vec![URL; 5]),
            "input_image_asset_urls",
            "at most 4",
        );
        assert!(parse_json(Endpoint::ImageToModel, body(vec![URL; 4])).is_ok());
        let long = format!("{URL}{}", "a".repeat(storage_path::MAX_URL_LEN));
        assert_error(
            Endpoint::ImageToModel,
            body(vec![URL, &long]),
            "input_image_asset_urls[1]",
            "at most 2048",
        );
    }

    #[test]
    fn multiview_is_refused_for_turbo_and_v1_4() {
        for version in ["Turbo-v1.0-20250506", "v1.4-20240625"] {
            assert_error(
                Endpoint::ImageToModel,
                json!({"task_id": "t", "input_image_asset_urls": [URL, URL2], "model_version": version}),
                "model_version",
                "multiview",
            );
            assert!(parse_json(
                Endpoint::ImageToModel,
                json!({"task_id": "t", "input_image_asset_urls": [URL], "model_version": version})
            )
            .is_ok());
        }
    }

    #[test]
    fn enums_accept_exactly_their_values() {
        for v in ModelVersion::NAMES {
            let r = ok(
                Endpoint::TextToModel,
                json!({"task_id": "t", "prompt": "p", "model_version": v}),
            );
            let StepRequest::Model(m) = r else { panic!() };
            assert_eq!(m.options.model_version.map(ModelVersion::as_str), Some(*v));
        }
        let t = Endpoint::TextToModel;
        assert_error(
            t,
            json!({"task_id": "t", "prompt": "p", "model_version": "v9"}),
            "model_version",
            "one of",
        );
        assert_error(
            t,
            json!({"task_id": "t", "prompt": "p", "model_version": "V2.5-20250123"}),
            "model_version",
            "one of",
        );
        assert_error(
            t,
            json!({"task_id": "t", "prompt": "p", "texture_quality": "extreme"}),
            "texture_quality",
            "standard, detailed",
        );
        assert_error(
            Endpoint::ImageToImage,
            json!({"task_id": "t", "input_image_asset_url": URL, "prompt": "p", "background": "AUTO"}),
            "background",
            "one of",
        );
        assert_error(
            Endpoint::SketchToModel,
            json!({"task_id": "t", "input_sketch_asset_url": URL, "orientation": "left"}),
            "orientation",
            "default, align_image",
        );
    }

    #[test]
    fn str_enums_are_consistent_with_serde() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + Serialize>(
            all: &[T],
            names: &[&str],
            as_str: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            assert_eq!(all.len(), names.len());
            for (v, n) in all.iter().zip(names) {
                assert_eq!(as_str(*v), *n);
                assert_eq!(parse(n), Some(*v));
                assert_eq!(serde_json::to_value(v).unwrap(), json!(n));
            }
        }
        check(
            ModelVersion::ALL,
            ModelVersion::NAMES,
            ModelVersion::as_str,
            ModelVersion::parse,
        );
        check(
            Background::ALL,
            Background::NAMES,
            Background::as_str,
            Background::parse,
        );
        check(
            TextureQuality::ALL,
            TextureQuality::NAMES,
            TextureQuality::as_str,
            TextureQuality::parse,
        );
        check(
            Orientation::ALL,
            Orientation::NAMES,
            Orientation::as_str,
            Orientation::parse,
        );
    }

    #[test]
    fn prompt_and_style_lengths() {
        let tripo = |p: String| json!({"task_id": "t", "prompt": p});
        assert!(parse_json(
            Endpoint::TextToModel,
            tripo("é".repeat(MAX_TRIPO_PROMPT_CHARS))
        )
        .is_ok());
        assert_error(
            Endpoint::TextToModel,
            tripo("a".repeat(MAX_TRIPO_PROMPT_CHARS + 1)),
            "prompt",
            "at most 1024",
        );
        let image_prompt =
            json!({"task_id": "t", "input_image_asset_urls": [URL], "prompt": "a".repeat(1025)});
        assert_error(
            Endpoint::ImageToModel,
            image_prompt,
            "prompt",
            "at most 1024",
        );

        let openai = |p: String, s: Option<String>| json!({"task_id": "t", "input_image_asset_url": URL, "prompt": p, "style": s});
        assert_eq!(MAX_CONCEPTS_PROMPT_CHARS, 31_736);
        // The longest prompt with the longest style is exactly OpenAI's limit.
        let longest = parse_json(
            Endpoint::ImageToImage,
            openai(
                "a".repeat(MAX_CONCEPTS_PROMPT_CHARS),
                Some("s".repeat(MAX_STYLE_CHARS)),
            ),
        )
        .unwrap();
        let StepRequest::Concepts(c) = longest.request else {
            panic!("not concepts")
        };
        assert_eq!(c.openai_prompt().chars().count(), MAX_OPENAI_PROMPT_CHARS);
        assert_error(
            Endpoint::ImageToImage,
            openai("a".repeat(MAX_CONCEPTS_PROMPT_CHARS + 1), None),
            "prompt",
            "at most 31736",
        );
        assert_error(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "p", "style": "s".repeat(MAX_STYLE_CHARS + 1)}),
            "style",
            "at most 256",
        );
        assert_error(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "a\u{0}b"}),
            "prompt",
            "NUL",
        );
    }

    // --- Fingerprint -------------------------------------------------------------------------

    #[test]
    fn fingerprint_ignores_defaults_key_order_and_nulls() {
        let a = ok(
            Endpoint::ImageToImage,
            json!({"task_id": "t", "input_image_asset_url": URL, "prompt": "p"}),
        );
        let b = ok(
            Endpoint::ImageToImage,
            json!({"n": 1, "prompt": "p", "input_image_asset_url": URL, "task_id": "t", "style": null}),
        );
        let c = parse(
            Endpoint::ImageToImage,
            format!(r#"{{ "prompt" : "p", "input_image_asset_url":"{URL}", "style":"", "task_id":"t" }}"#).as_bytes(),
        )
        .unwrap()
        .request;
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&c));
        let t = ok(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "p"}),
        );
        let t2 = ok(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "p", "texture": true}),
        );
        assert_eq!(fingerprint(&t), fingerprint(&t2));
        assert_eq!(fingerprint(&a).len(), 32);
    }

    #[test]
    fn fingerprint_changes_with_any_meaningful_value() {
        let base = json!({"task_id": "t", "input_image_asset_urls": [URL, URL2]});
        let fp = |patch: Value| {
            let mut body = base.clone();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            fingerprint(&ok(Endpoint::ImageToModel, body))
        };
        let reference = fp(json!({}));
        let variants = [
            json!({"input_image_asset_urls": [URL2, URL]}),
            json!({"input_image_asset_urls": [URL]}),
            json!({"prompt": "x"}),
            json!({"style": "x"}),
            json!({"texture": false}),
            json!({"pbr": true}),
            json!({"pbr": false}),
            json!({"model_version": "v2.5-20250123"}),
            json!({"face_limit": 100}),
            json!({"auto_size": false}),
            json!({"texture_quality": "standard"}),
            json!({"orientation": "default"}),
            json!({"source_concept_image_id": UUID_A}),
            json!({"source_input_asset_id": UUID_A}),
        ];
        let mut seen = vec![reference.clone()];
        for v in variants {
            let f = fp(v.clone());
            assert!(!seen.contains(&f), "{v} collides");
            seen.push(f);
        }
        // Same fields on different endpoints differ too (sketch vs single image).
        let image = ok(
            Endpoint::ImageToModel,
            json!({"task_id": "t", "input_image_asset_urls": [URL]}),
        );
        let sketch = ok(
            Endpoint::SketchToModel,
            json!({"task_id": "t", "input_sketch_asset_url": URL}),
        );
        assert_ne!(fingerprint(&image), fingerprint(&sketch));
    }

    #[test]
    fn fingerprint_is_stable_across_releases() {
        // A changed value here breaks idempotency of every stored task: bump deliberately only.
        let r = ok(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "a cat"}),
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"step":"model","source":{"kind":"text","prompt":"a cat"},"options":{"texture":true}}"#
        );
        assert_eq!(fingerprint(&r), GOLDEN_FINGERPRINT);
    }

    const GOLDEN_FINGERPRINT: &str = "1d867b34520558ffa119d8a153b30875";

    #[test]
    fn step_requests_round_trip_through_serde() {
        let bodies = [
            (
                Endpoint::ImageToImage,
                json!({"task_id": "t", "input_image_asset_url": URL, "prompt": "p", "style": "s", "n": 3, "background": "opaque"}),
            ),
            (
                Endpoint::TextToModel,
                json!({"task_id": "t", "prompt": "p", "pbr": true, "model_version": "P1-20260311", "face_limit": 500}),
            ),
            (
                Endpoint::ImageToModel,
                json!({"task_id": "t", "input_image_asset_urls": [URL, URL2], "orientation": "align_image", "source_concept_image_id": UUID_A}),
            ),
            (
                Endpoint::SketchToModel,
                json!({"task_id": "t", "input_sketch_asset_url": URL, "prompt": "p"}),
            ),
            (
                Endpoint::RefineModel,
                json!({"task_id": "t", "draft_model_task_id": "d-1", "input_model_asset_url": URL, "texture_quality": "detailed"}),
            ),
        ];
        for (e, body) in bodies {
            let v = parse_json(e, body).unwrap();
            let json = serde_json::to_string(&v).unwrap();
            let back: ValidRequest = serde_json::from_str(&json).unwrap();
            assert_eq!(back, v);
            assert_eq!(fingerprint(&back.request), fingerprint(&v.request));
            assert_eq!(v.request.endpoint(), e);
            assert_eq!(v.request.step(), e.step());
        }
    }

    // --- URLs --------------------------------------------------------------------------------

    #[test]
    fn resolve_urls_applies_the_policy_with_field_paths() {
        let r = ok(
            Endpoint::ImageToModel,
            json!({"task_id": "t", "input_image_asset_urls": [URL, "https://evil.com/storage/v1/object/public/b/a.png", URL2, "https://abc.supabase.co/x"]}),
        );
        let errs = resolve_urls(&r, &origin()).unwrap_err();
        assert_eq!(
            errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            vec!["input_image_asset_urls[1]", "input_image_asset_urls[3]"]
        );
        assert!(errs[0].message.contains("Supabase origin"), "{errs:?}");

        let good = ok(
            Endpoint::ImageToModel,
            json!({"task_id": "t", "input_image_asset_urls": [URL, URL2]}),
        );
        let inputs = resolve_urls(&good, &origin()).unwrap();
        assert_eq!(inputs.downloads.len(), 2);
        assert_eq!(inputs.downloads[1].path(), "u/b.png");
        assert!(inputs.model.is_none());

        let refine = ok(
            Endpoint::RefineModel,
            json!({"task_id": "t", "tripo_draft_task_id": "d", "input_model_asset_url": URL}),
        );
        let inputs = resolve_urls(&refine, &origin()).unwrap();
        assert!(inputs.downloads.is_empty());
        assert_eq!(
            inputs.model.as_ref().map(InputObject::bucket),
            Some("inputs")
        );
        assert_eq!(inputs.all().count(), 1);

        let text = ok(
            Endpoint::TextToModel,
            json!({"task_id": "t", "prompt": "p"}),
        );
        assert_eq!(resolve_urls(&text, &origin()).unwrap().all().count(), 0);
        let concepts = ok(
            Endpoint::ImageToImage,
            json!({"task_id": "t", "input_image_asset_url": "http://abc.supabase.co/storage/v1/object/public/b/a.png", "prompt": "p"}),
        );
        assert_eq!(
            resolve_urls(&concepts, &origin()).unwrap_err()[0].field,
            "input_image_asset_url"
        );
    }

    // --- The field table ---------------------------------------------------------------------

    #[test]
    fn field_tables_are_well_formed() {
        for e in Endpoint::ALL {
            let specs = fields(e);
            assert_eq!(specs[0].name, "task_id", "{e:?}");
            assert!(specs[0].required);
            for (i, s) in specs.iter().enumerate() {
                assert!(
                    specs[i + 1..].iter().all(|o| o.name != s.name),
                    "{e:?}: duplicate {}",
                    s.name
                );
                if let Some(target) = s.alias_of {
                    assert!(specs
                        .iter()
                        .any(|o| o.name == target && o.alias_of.is_none()));
                } else {
                    assert!(!s.description.is_empty(), "{}", s.name);
                }
                assert!(!(s.required && s.default.is_some()), "{}", s.name);
            }
        }
    }

    #[test]
    fn every_table_field_reaches_the_typed_request() {
        // Sets each optional field alone to a non-default value; the canonical JSON must change.
        for e in Endpoint::ALL {
            let base = minimal_body(e);
            let reference = fingerprint(&ok(e, base.clone()));
            for spec in fields(e)
                .iter()
                .filter(|s| !s.required && s.alias_of.is_none())
            {
                let mut body = base.clone();
                body[spec.name] = sample(spec);
                let got = fingerprint(&ok(e, body));
                assert_ne!(got, reference, "{e:?}.{} is dropped", spec.name);
            }
        }
    }

    fn minimal_body(e: Endpoint) -> Value {
        let mut body = json!({});
        for spec in fields(e).iter().filter(|s| s.required) {
            body[spec.name] = sample(spec);
        }
        body
    }

    /// A valid, non-default value of a field.
    fn sample(spec: &FieldSpec) -> Value {
        match spec.ty {
            FieldType::TaskId => json!("t-1"),
            FieldType::Text { .. } => json!("text"),
            FieldType::Enum(names) => json!(names[0]),
            FieldType::Bool => json!(spec.default != Some(DefaultValue::Bool(true))),
            FieldType::Integer { max, .. } => json!(max.min(5)),
            FieldType::Uuid => json!(UUID_A),
            FieldType::StorageUrl => json!(URL),
            FieldType::StorageUrls { .. } => json!([URL]),
            FieldType::ProviderTaskId => json!("draft-1"),
            FieldType::WebhookUrl => json!("https://hooks.example.com/h"),
        }
    }

    #[test]
    fn body_schema_reflects_the_table() {
        let s = body_schema(Endpoint::RefineModel);
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["required"], json!(["task_id"]));
        assert_eq!(
            s["allOf"][0]["oneOf"],
            json!([
                { "required": ["tripo_draft_task_id"], "properties": { "tripo_draft_task_id": { "type": "string" } } },
                { "required": ["draft_model_task_id"], "properties": { "draft_model_task_id": { "type": "string" } } },
            ])
        );
        assert_eq!(
            s["properties"]["draft_model_task_id"]["deprecated"],
            json!(true)
        );
        assert_eq!(s["properties"]["texture"]["default"], json!(true));
        let i = body_schema(Endpoint::ImageToImage);
        assert_eq!(i["properties"]["n"]["default"], json!(1));
        assert_eq!(i["properties"]["n"]["anyOf"][0]["maximum"], json!(10));
        assert_eq!(
            i["properties"]["background"]["anyOf"][0]["enum"],
            json!(["transparent", "opaque", "auto"])
        );
        assert_eq!(i["properties"]["prompt"]["maxLength"], json!(31736));
        let m = body_schema(Endpoint::ImageToModel);
        assert_eq!(
            m["properties"]["input_image_asset_urls"]["maxItems"],
            json!(4)
        );
        assert_eq!(
            m["properties"].as_object().unwrap().len(),
            fields(Endpoint::ImageToModel).len()
        );
    }
}
