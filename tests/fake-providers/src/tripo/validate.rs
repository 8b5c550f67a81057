//! Strict validation of `POST /task` bodies against the fields providers.md documents for each
//! task type (§1.5.1–§1.5.4): any other field, any wrong JSON type (including `null`), any value
//! outside its documented set is a 400/1004 naming the field. Pure: lookups of file tokens,
//! STS objects and draft tasks happen in the caller.

use serde_json::{Map, Value};

use super::TripoError;

/// The task types the fake runs (named after Tripo's `type` values, hence the shared suffix).
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskType {
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

/// Real Tripo task types this fake does not run (answered with 2002).
const OTHER_TYPES: &[&str] = &[
    "texture_model",
    "convert_model",
    "stylize_model",
    "animate_prerigcheck",
    "animate_rig",
    "animate_retarget",
    "mesh_segmentation",
    "mesh_completion",
    "highpoly_to_lowpoly",
    "import_model",
    "text_to_image",
    "generate_image",
    "generate_multiview_image",
    "edit_multiview_image",
];

/// A reference to an input image.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FileRef {
    Token(String),
    Url(String),
    Object { bucket: String, key: String },
}

/// A validated create request.
#[derive(Debug)]
pub(crate) struct CreateSpec {
    pub ty: TaskType,
    /// Empty for `refine_model` (taken from the draft).
    pub model_version: String,
    pub prompt: Option<String>,
    /// Input images in order (multiview: the non-empty slots, front first).
    pub files: Vec<FileRef>,
    /// Multiview `original_task_id`.
    pub original_task_id: Option<String>,
    /// Refine `draft_model_task_id` (or its legacy alias).
    pub draft: Option<String>,
    /// Effective `texture` / `pbr` (`pbr` defaults to true and forces `texture`).
    pub texture: bool,
    pub pbr: bool,
    pub credits: f64,
    /// The request minus `type`, echoed as the task's `input`.
    pub input: Value,
}

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    File,
    Files,
    OneOf(&'static [&'static str]),
}

/// The legacy `style` presets (§1.5.1); free text is rejected.
pub(crate) const STYLES: &[&str] = &[
    "person:person2cartoon",
    "animal:venom",
    "object:clay",
    "object:steampunk",
    "object:christmas",
    "object:barbie",
    "gold",
    "ancient_bronze",
];

const GEN_COMMON: &[(&str, Ty)] = &[
    ("model_version", Ty::Str),
    ("model_seed", Ty::Int),
    ("texture_seed", Ty::Int),
    ("texture", Ty::Bool),
    ("pbr", Ty::Bool),
    (
        "texture_quality",
        Ty::OneOf(&["standard", "detailed", "extreme"]),
    ),
    ("geometry_quality", Ty::OneOf(&["standard", "detailed"])),
    ("face_limit", Ty::Int),
    ("auto_size", Ty::Bool),
    ("quad", Ty::Bool),
    ("smart_low_poly", Ty::Bool),
    ("generate_parts", Ty::Bool),
    ("compress", Ty::OneOf(&["geometry"])),
    ("export_uv", Ty::Bool),
    ("style", Ty::OneOf(STYLES)),
];

const TEXT_ONLY: &[(&str, Ty)] = &[
    ("prompt", Ty::Str),
    ("negative_prompt", Ty::Str),
    ("image_seed", Ty::Int),
];

const IMAGE_COMMON: &[(&str, Ty)] = &[
    ("enable_image_autofix", Ty::Bool),
    (
        "texture_alignment",
        Ty::OneOf(&["original_image", "geometry"]),
    ),
    ("orientation", Ty::OneOf(&["default", "align_image"])),
];

const IMAGE_ONLY: &[(&str, Ty)] = &[("file", Ty::File)];

const MULTI_ONLY: &[(&str, Ty)] = &[
    ("files", Ty::Files),
    ("original_task_id", Ty::Str),
    ("mode", Ty::OneOf(&["LEFT", "RIGHT"])),
    ("orthographic_projection", Ty::Bool),
];

const REFINE: &[(&str, Ty)] = &[
    ("draft_model_task_id", Ty::Str),
    ("rough_model_task_id", Ty::Str),
];

/// Model versions accepted on v2.
pub(crate) const VERSIONS: &[&str] = &[
    "P1-20260311",
    "v3.1-20260211",
    "v3.0-20250812",
    "v2.5-20250123",
    "v2.0-20240919",
    "Turbo-v1.0-20250506",
];
const DEPRECATED_VERSIONS: &[&str] = &["v1.4-20240625", "v1.3-20240522"];
/// The version used when a request names none.
pub(crate) const DEFAULT_VERSION: &str = "v2.5-20250123";

fn fields_of(ty: TaskType) -> Vec<(&'static str, Ty)> {
    let parts: &[&[(&str, Ty)]] = match ty {
        TaskType::TextToModel => &[GEN_COMMON, TEXT_ONLY],
        TaskType::ImageToModel => &[GEN_COMMON, IMAGE_COMMON, IMAGE_ONLY],
        TaskType::MultiviewToModel => &[GEN_COMMON, IMAGE_COMMON, MULTI_ONLY],
        TaskType::RefineModel => &[REFINE],
    };
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

fn invalid(detail: impl AsRef<str>) -> TripoError {
    TripoError::new(1004, detail)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_type(field: &str, ty: Ty, v: &Value) -> Result<(), TripoError> {
    let ok = match ty {
        Ty::Str => v.is_string(),
        Ty::Int => v.is_i64() || v.is_u64(),
        Ty::Bool => v.is_boolean(),
        Ty::File => v.is_object(),
        Ty::Files => v.is_array(),
        Ty::OneOf(allowed) => {
            let Some(s) = v.as_str() else {
                return Err(invalid(format!(
                    "'{field}' must be a string, got {}",
                    json_kind(v)
                )));
            };
            if !allowed.contains(&s) {
                return Err(invalid(format!(
                    "'{field}' must be one of {}, got '{s}'",
                    allowed.join("|")
                )));
            }
            true
        }
    };
    if ok {
        return Ok(());
    }
    let want = match ty {
        Ty::Str => "a string",
        Ty::Int => "an integer",
        Ty::Bool => "a boolean",
        Ty::File => "a file object",
        Ty::Files => "an array of 4 file objects",
        Ty::OneOf(_) => "a string",
    };
    Err(invalid(format!(
        "'{field}' must be {want}, got {}",
        json_kind(v)
    )))
}

/// Whether `c` is an emoji or another character Tripo rejects in prompts (2009).
fn forbidden_char(c: char) -> bool {
    let u = c as u32;
    matches!(u,
        0x1F000..=0x1FAFF   // emoji, symbols & pictographs, flags
        | 0x2600..=0x27BF   // misc symbols, dingbats
        | 0x2B00..=0x2BFF   // arrows & stars (⭐)
        | 0xFE00..=0xFE0F   // variation selectors
        | 0x200D            // zero-width joiner
        | 0xE000..=0xF8FF   // private use
        | 0xE0000..=0xE007F // tags
        | 0xF0000..=0x10FFFF)
        || (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

fn check_prompt(field: &str, p: &str, max: usize, too_long_code: i64) -> Result<(), TripoError> {
    if p.trim().is_empty() {
        return Err(invalid(format!("'{field}' must not be empty")));
    }
    let n = p.chars().count();
    if n > max {
        return Err(TripoError::new(
            too_long_code,
            format!("'{field}' is {n} characters long; the limit is {max}"),
        ));
    }
    if let Some(c) = p.chars().find(|c| forbidden_char(*c)) {
        return Err(TripoError::new(
            2009,
            format!(
                "'{field}' contains the unsupported character U+{:04X}",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// Validates one file object; `field` names it in errors (`file`, `files[2]`).
fn file_ref(field: &str, v: &Value) -> Result<FileRef, TripoError> {
    let Some(obj) = v.as_object() else {
        return Err(invalid(format!(
            "'{field}' must be a file object, got {}",
            json_kind(v)
        )));
    };
    for (k, val) in obj {
        match k.as_str() {
            "type" | "file_token" | "url" => {
                if !val.is_string() {
                    return Err(invalid(format!(
                        "'{field}.{k}' must be a string, got {}",
                        json_kind(val)
                    )));
                }
            }
            "object" => {}
            other => return Err(invalid(format!("unknown parameter '{field}.{other}'"))),
        }
    }
    let present: Vec<&str> = ["file_token", "url", "object"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if present.len() != 1 {
        return Err(invalid(format!(
            "'{field}' needs exactly one of file_token, url, object (got {})",
            if present.is_empty() {
                "none".to_string()
            } else {
                present.join(", ")
            }
        )));
    }
    match present[0] {
        "file_token" => {
            let t = obj["file_token"].as_str().unwrap_or_default();
            if t.is_empty() {
                return Err(invalid(format!("'{field}.file_token' must not be empty")));
            }
            Ok(FileRef::Token(t.to_string()))
        }
        "url" => {
            let u = obj["url"].as_str().unwrap_or_default();
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
                return Err(invalid(format!(
                    "'{field}.url' must be an http(s) URL, got '{u}'"
                )));
            }
            Ok(FileRef::Url(u.to_string()))
        }
        _ => {
            let o = &obj["object"];
            let Some(map) = o.as_object() else {
                return Err(invalid(format!(
                    "'{field}.object' must be an object, got {}",
                    json_kind(o)
                )));
            };
            for k in map.keys() {
                if k != "bucket" && k != "key" {
                    return Err(invalid(format!("unknown parameter '{field}.object.{k}'")));
                }
            }
            match (
                map.get("bucket").and_then(Value::as_str),
                map.get("key").and_then(Value::as_str),
            ) {
                (Some(b), Some(k)) if !b.is_empty() && !k.is_empty() => Ok(FileRef::Object {
                    bucket: b.to_string(),
                    key: k.to_string(),
                }),
                _ => Err(invalid(format!(
                    "'{field}.object' needs non-empty string 'bucket' and 'key'"
                ))),
            }
        }
    }
}

fn version_line(v: &str) -> &'static str {
    if v.starts_with("P1-") {
        "P1"
    } else if v.starts_with("v3.") {
        "H3"
    } else if v.starts_with("Turbo-") {
        "Turbo"
    } else {
        "H2"
    }
}

/// Validates a parsed `POST /task` body.
pub(crate) fn validate(body: &Value) -> Result<CreateSpec, TripoError> {
    let Some(obj) = body.as_object() else {
        return Err(TripoError::new(1003, "the body must be a JSON object"));
    };
    let ty = match obj.get("type") {
        None => return Err(invalid("missing required parameter 'type'")),
        Some(Value::String(s)) => match s.as_str() {
            "text_to_model" => TaskType::TextToModel,
            "image_to_model" => TaskType::ImageToModel,
            "multiview_to_model" => TaskType::MultiviewToModel,
            "refine_model" => TaskType::RefineModel,
            other if OTHER_TYPES.contains(&other) => {
                return Err(TripoError::new(
                    2002,
                    format!("'{other}' is not run by this fake"),
                ))
            }
            other => return Err(TripoError::new(2002, format!("unknown type '{other}'"))),
        },
        Some(v) => {
            return Err(invalid(format!(
                "'type' must be a string, got {}",
                json_kind(v)
            )))
        }
    };
    let allowed = fields_of(ty);
    for (k, v) in obj {
        if k == "type" {
            continue;
        }
        let Some((_, fty)) = allowed.iter().find(|(name, _)| name == k) else {
            return Err(invalid(format!(
                "unknown parameter '{k}' for type {}",
                ty.as_str()
            )));
        };
        check_type(k, *fty, v)?;
    }
    let mut input = Map::new();
    for (k, v) in obj {
        if k != "type" {
            input.insert(k.clone(), v.clone());
        }
    }
    let input = Value::Object(input);

    if ty == TaskType::RefineModel {
        let draft = match (
            obj.get("draft_model_task_id"),
            obj.get("rough_model_task_id"),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "send only one of 'draft_model_task_id' and 'rough_model_task_id'",
                ))
            }
            (Some(v), None) | (None, Some(v)) => v.as_str().unwrap_or_default().to_string(),
            (None, None) => {
                return Err(invalid("missing required parameter 'draft_model_task_id'"))
            }
        };
        if draft.is_empty() {
            return Err(invalid("'draft_model_task_id' must not be empty"));
        }
        return Ok(CreateSpec {
            ty,
            model_version: String::new(),
            prompt: None,
            files: Vec::new(),
            original_task_id: None,
            draft: Some(draft),
            texture: true,
            pbr: true,
            credits: 30.0,
            input,
        });
    }

    let str_field = |k: &str| obj.get(k).and_then(Value::as_str);
    let bool_field = |k: &str| obj.get(k).and_then(Value::as_bool);
    let int_field = |k: &str| obj.get(k).and_then(Value::as_i64);

    let model_version = str_field("model_version")
        .unwrap_or(DEFAULT_VERSION)
        .to_string();
    if DEPRECATED_VERSIONS.contains(&model_version.as_str()) {
        return Err(TripoError::new(
            2015,
            format!("model_version '{model_version}' is deprecated"),
        ));
    }
    if !VERSIONS.contains(&model_version.as_str()) {
        return Err(TripoError::new(
            2017,
            format!("model_version '{model_version}' is not valid"),
        ));
    }
    let line = version_line(&model_version);
    if ty == TaskType::MultiviewToModel && line == "Turbo" {
        return Err(TripoError::new(
            2017,
            format!("model_version '{model_version}' is not valid for multiview_to_model"),
        ));
    }
    if line == "P1" {
        for k in [
            "quad",
            "smart_low_poly",
            "generate_parts",
            "geometry_quality",
        ] {
            if obj.contains_key(k) {
                return Err(invalid(format!(
                    "'{k}' is not supported by {model_version}; omit it"
                )));
            }
        }
    }
    if obj.contains_key("geometry_quality") && line != "H3" {
        return Err(invalid(format!(
            "'geometry_quality' is only supported by v3.x models, not {model_version}"
        )));
    }
    for k in ["model_seed", "texture_seed", "image_seed"] {
        if int_field(k).is_some_and(|v| v < 0)
            || obj
                .get(k)
                .is_some_and(|v| v.is_u64() && v.as_i64().is_none())
        {
            return Err(invalid(format!(
                "'{k}' must be a non-negative 32-bit integer"
            )));
        }
    }

    let pbr = bool_field("pbr").unwrap_or_else(|| bool_field("texture").unwrap_or(true));
    let texture = bool_field("texture").unwrap_or(true) || pbr;
    let quad = bool_field("quad").unwrap_or(false);
    let smart = bool_field("smart_low_poly").unwrap_or(false);
    if bool_field("generate_parts") == Some(true)
        && !(bool_field("texture") == Some(false) && bool_field("pbr") == Some(false) && !quad)
    {
        return Err(invalid(
            "'generate_parts' requires texture=false, pbr=false and quad=false",
        ));
    }
    if str_field("texture_quality") == Some("standard") && !texture && !pbr {
        return Err(invalid(
            "'texture_quality'='standard' is rejected with texture=false and pbr=false",
        ));
    }
    if let Some(v) = obj.get("face_limit") {
        let n = v.as_i64().unwrap_or(i64::MAX);
        let (min, max) = if smart && quad {
            (500, 10_000)
        } else if smart {
            (1_000, 20_000)
        } else {
            match line {
                "P1" => (48, 20_000),
                "H3" if str_field("geometry_quality") == Some("detailed") => (1, 2_000_000),
                "H3" => (1, 1_500_000),
                "Turbo" => (1, 50_000),
                _ => (1, 500_000),
            }
        };
        if n < min || n > max {
            return Err(invalid(format!(
                "'face_limit' must be between {min} and {max} for {model_version}, got {v}"
            )));
        }
    }

    let mut prompt = None;
    let mut files = Vec::new();
    let mut original_task_id = None;
    match ty {
        TaskType::TextToModel => {
            let p = str_field("prompt")
                .ok_or_else(|| invalid("missing required parameter 'prompt'"))?;
            check_prompt("prompt", p, 1024, 2009)?;
            if let Some(n) = str_field("negative_prompt") {
                check_prompt("negative_prompt", n, 255, 1004)?;
            }
            prompt = Some(p.to_string());
        }
        TaskType::ImageToModel => {
            let f = obj
                .get("file")
                .ok_or_else(|| invalid("missing required parameter 'file'"))?;
            files.push(file_ref("file", f)?);
        }
        TaskType::MultiviewToModel => match (obj.get("files"), str_field("original_task_id")) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "'files' and 'original_task_id' are mutually exclusive",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "missing required parameter 'files' (or 'original_task_id')",
                ))
            }
            (None, Some(id)) => original_task_id = Some(id.to_string()),
            (Some(list), None) => {
                let slots = list.as_array().map(Vec::as_slice).unwrap_or_default();
                if slots.len() != 4 {
                    return Err(invalid(format!(
                        "'files' must have exactly 4 entries [front, left, back, right], got {}",
                        slots.len()
                    )));
                }
                for (i, slot) in slots.iter().enumerate() {
                    let field = format!("files[{i}]");
                    if slot.as_object().is_some_and(Map::is_empty) {
                        if i == 0 {
                            return Err(invalid(
                                "'files[0]' (front) is mandatory and must not be {}",
                            ));
                        }
                        continue;
                    }
                    files.push(file_ref(&field, slot)?);
                }
                if files.len() < 2 {
                    return Err(invalid(format!(
                        "'files' needs at least 2 real images, got {}",
                        files.len()
                    )));
                }
            }
        },
        TaskType::RefineModel => {}
    }

    let image_task = ty != TaskType::TextToModel;
    let mut credits: f64 = match (line == "P1", image_task, texture) {
        (false, false, false) => 10.0,
        (false, false, true) => 20.0,
        (false, true, false) => 20.0,
        (false, true, true) => 30.0,
        (true, false, false) => 30.0,
        (true, false, true) => 40.0,
        (true, true, false) => 40.0,
        (true, true, true) => 50.0,
    };
    if texture {
        credits += match str_field("texture_quality") {
            Some("standard") => 10.0,
            Some("detailed") => 20.0,
            Some("extreme") => 30.0,
            _ => 0.0,
        };
    }
    if str_field("geometry_quality") == Some("detailed") {
        credits += 20.0;
    }
    if quad {
        credits += 5.0;
    }
    if smart {
        credits += 10.0;
    }
    if bool_field("generate_parts") == Some(true) {
        credits += 20.0;
    }

    Ok(CreateSpec {
        ty,
        model_version,
        prompt,
        files,
        original_task_id,
        draft: None,
        texture,
        pbr,
        credits,
        input,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(body: Value) -> (i64, String) {
        match validate(&body) {
            Ok(_) => (0, String::new()),
            Err(e) => (e.code, e.message),
        }
    }

    #[test]
    fn text_to_model_minimal_and_full() {
        let spec = validate(&json!({"type": "text_to_model", "prompt": "a small cat"})).unwrap();
        assert_eq!(spec.model_version, DEFAULT_VERSION);
        assert!(spec.pbr && spec.texture);
        assert_eq!(spec.input, json!({"prompt": "a small cat"}));
        let full = json!({"type": "text_to_model", "prompt": "a small cat", "model_version": "v2.5-20250123",
            "texture": true, "pbr": true, "texture_quality": "standard", "face_limit": 10000,
            "negative_prompt": "blurry", "image_seed": 1, "model_seed": 2, "texture_seed": 3,
            "auto_size": false, "quad": false, "smart_low_poly": false, "compress": "geometry",
            "export_uv": true, "style": "object:clay"});
        assert_eq!(code(full).0, 0);
    }

    #[test]
    fn unknown_fields_and_types_name_the_field() {
        let (c, m) = code(json!({"type": "text_to_model", "prompt": "x", "task_id": "y"}));
        assert_eq!(c, 1004);
        assert!(m.contains("task_id"), "{m}");
        let (c, m) = code(json!({"type": "text_to_model", "prompt": "x", "texture": "true"}));
        assert_eq!(c, 1004);
        assert!(m.contains("texture"), "{m}");
        let (c, m) = code(json!({"type": "text_to_model", "prompt": "x", "pbr": null}));
        assert_eq!(c, 1004);
        assert!(m.contains("pbr") && m.contains("null"), "{m}");
        let (c, m) = code(json!({"type": "text_to_model", "prompt": "x", "style": "cute cartoon"}));
        assert_eq!(c, 1004);
        assert!(m.contains("style"), "{m}");
        let (c, m) = code(json!({"type": "image_to_model", "prompt": "x",
            "file": {"type": "png", "url": "https://e.com/a.png"}}));
        assert_eq!(c, 1004);
        assert!(m.contains("prompt"), "{m}");
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x", "face_limit": 1.5})).0,
            1004
        );
    }

    #[test]
    fn prompts() {
        assert_eq!(code(json!({"type": "text_to_model"})).0, 1004);
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": " "})).0,
            1004
        );
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x".repeat(1024)})).0,
            0
        );
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x".repeat(1025)})).0,
            2009
        );
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "a cat 🐱"})).0,
            2009
        );
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "un chat élégant"})).0,
            0
        );
        assert_eq!(
            code(
                json!({"type": "text_to_model", "prompt": "x", "negative_prompt": "n".repeat(256)})
            )
            .0,
            1004
        );
    }

    #[test]
    fn types_and_versions() {
        assert_eq!(code(json!({"prompt": "x"})).0, 1004);
        assert_eq!(code(json!({"type": 3})).0, 1004);
        assert_eq!(code(json!({"type": "sketch_to_model"})).0, 2002);
        assert_eq!(code(json!({"type": "convert_model"})).0, 2002);
        assert_eq!(code(json!([1])).0, 1003);
        let v =
            |mv: &str| code(json!({"type": "text_to_model", "prompt": "x", "model_version": mv})).0;
        assert_eq!(v("v1.4-20240625"), 2015);
        assert_eq!(v("v9"), 2017);
        assert_eq!(v("P1-20260311"), 0);
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x", "model_version": "P1-20260311", "quad": false})).0,
            1004
        );
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x", "geometry_quality": "detailed"})).0,
            1004
        );
    }

    #[test]
    fn combination_rules() {
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x", "generate_parts": true})).0,
            1004
        );
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x", "generate_parts": true, "texture": false, "pbr": false}))
                .0,
            0
        );
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x", "texture": false, "pbr": false, "texture_quality": "standard"}))
                .0,
            1004
        );
        let spec =
            validate(&json!({"type": "text_to_model", "prompt": "x", "texture": false})).unwrap();
        assert!(!spec.texture && !spec.pbr);
        let spec =
            validate(&json!({"type": "text_to_model", "prompt": "x", "pbr": false})).unwrap();
        assert!(spec.texture && !spec.pbr);
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x", "face_limit": 600_000})).0,
            1004
        );
        assert_eq!(
            code(json!({"type": "text_to_model", "prompt": "x", "face_limit": 0})).0,
            1004
        );
    }

    #[test]
    fn file_objects() {
        let f = |file: Value| code(json!({"type": "image_to_model", "file": file})).0;
        assert_eq!(f(json!({"type": "png", "file_token": "abc"})), 0);
        assert_eq!(
            f(json!({"type": "png", "url": "https://example.com/a.png"})),
            0
        );
        assert_eq!(
            f(json!({"type": "png", "object": {"bucket": "tripo-data", "key": "k"}})),
            0
        );
        assert_eq!(f(json!({"type": "png"})), 1004);
        assert_eq!(
            f(json!({"type": "png", "file_token": "a", "url": "https://example.com/a.png"})),
            1004
        );
        assert_eq!(f(json!({"type": "png", "url": "ftp://x/y.png"})), 1004);
        assert_eq!(
            f(json!({"type": "png", "file_token": "a", "data": "AAAA"})),
            1004
        );
        assert_eq!(f(json!({"type": "png", "object": {"bucket": "b"}})), 1004);
        assert_eq!(f(json!("token")), 1004);
        assert_eq!(code(json!({"type": "image_to_model"})).0, 1004);
    }

    #[test]
    fn multiview_slots() {
        let t = |s: &str| json!({"type": "png", "file_token": s});
        let m = |files: Value| code(json!({"type": "multiview_to_model", "files": files}));
        assert_eq!(m(json!([t("a"), {}, t("b"), {}])).0, 0);
        assert_eq!(m(json!([t("a"), t("b"), t("c"), t("d")])).0, 0);
        let (c, msg) = m(json!([{}, t("a"), t("b"), t("c")]));
        assert_eq!(c, 1004);
        assert!(msg.contains("front"), "{msg}");
        assert_eq!(m(json!([t("a"), {}, {}, {}])).0, 1004);
        assert_eq!(m(json!([t("a"), t("b"), t("c")])).0, 1004);
        assert_eq!(m(json!([t("a"), t("b"), t("c"), t("d"), t("e")])).0, 1004);
        assert_eq!(m(json!([t("a"), {"type": "png"}, t("c"), {}])).0, 1004);
        let spec =
            validate(&json!({"type": "multiview_to_model", "files": [t("a"), {}, t("b"), {}]}))
                .unwrap();
        assert_eq!(
            spec.files,
            vec![FileRef::Token("a".into()), FileRef::Token("b".into())]
        );
        assert_eq!(code(json!({"type": "multiview_to_model"})).0, 1004);
        assert_eq!(
            code(json!({"type": "multiview_to_model", "files": [t("a"), t("b"), {}, {}], "original_task_id": "x"})).0,
            1004
        );
        assert_eq!(
            code(
                json!({"type": "multiview_to_model", "model_version": "Turbo-v1.0-20250506",
                "files": [t("a"), t("b"), {}, {}]})
            )
            .0,
            2017
        );
    }

    #[test]
    fn refine_fields() {
        assert_eq!(
            code(json!({"type": "refine_model", "draft_model_task_id": "d"})).0,
            0
        );
        assert_eq!(
            code(json!({"type": "refine_model", "rough_model_task_id": "d"})).0,
            0
        );
        assert_eq!(code(json!({"type": "refine_model"})).0, 1004);
        let (c, m) =
            code(json!({"type": "refine_model", "draft_model_task_id": "d", "prompt": "p"}));
        assert_eq!(c, 1004);
        assert!(m.contains("prompt"));
        assert_eq!(
            code(json!({"type": "refine_model", "draft_model_task_id": "d", "model_version": "v2.5-20250123"})).0,
            1004
        );
    }
}
