//! PostgREST writes as data (supabase-http.md §3): the glue only sends what this module builds.
//!
//! This module owns:
//! - [`RestRequest`]: method, path and query (`/rest/v1/{table}?…`, filter values
//!   percent-encoded), the non-secret headers (`Content-Type`, `Prefer`) and the JSON body. The
//!   service key is added by the glue with [`auth_headers`], so a `RestRequest` is safe to log.
//! - [`auth_headers`]: a new `sb_secret_…` key goes in `apikey` only; a legacy service-role JWT
//!   goes in `apikey` and `Authorization: Bearer` (SPEC §8, supabase-http.md §1.1).
//! - The pending-row inserts of SPEC §6/§7: deterministic ids (`ids::row_id`), `POST
//!   /rest/v1/{table}?on_conflict=id` with `Prefer: resolution=ignore-duplicates,return=minimal`,
//!   so a retried insert is a no-op. n `concept_images` rows in one request (every object has the
//!   same keys, as PostgREST's bulk insert requires), one `models` row per model/refine step.
//! - The status updates: `PATCH` filtered on `id` **and** a guard, so a late or duplicate write
//!   cannot move a row backwards or touch another attempt's row:
//!   `status=in.(pending,processing)` and `metadata->>attempt=eq.{attempt}` for
//!   processing/complete/failed; `status=eq.failed` to reset a row for a new attempt.
//! - [`postgrest_failure`]: classification of PostgREST / gateway errors.
//!
//! Metadata (documented decision): PostgREST's PATCH replaces the whole `metadata` column, and
//! cannot merge JSON. So the row's metadata is a typed [`RowMetadata`] that the Durable Object
//! keeps for each row; every write that touches `metadata` writes all of it (a failure adds
//! `metadata.error = {code, message}` to the same value). `mark_processing` does not touch
//! `metadata` at all, which lets it update the n rows of a step in one request.
//!
//! Table names are configuration (SPEC §8) and are passed in; they are percent-encoded in paths.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::error::Dependency;
use super::ids::{row_id, TaskId, UserId};
use super::retry::{classify_status, Failure, FailureClass};
use super::step::{Status, Step};
use super::tripo::TaskType;

/// The `Prefer` header of inserts.
pub const PREFER_INSERT: &str = "resolution=ignore-duplicates,return=minimal";
/// The `Prefer` header of updates.
pub const PREFER_UPDATE: &str = "return=minimal";

/// HTTP methods used against PostgREST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One PostgREST request. `path` starts with `/rest/v1/`; prefix it with `SUPABASE_URL`
/// ([`RestRequest::url`]) and add [`auth_headers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRequest {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
}

impl RestRequest {
    /// `{supabase_url}{path}`, without a doubled slash.
    pub fn url(&self, supabase_url: &str) -> String {
        format!("{}{}", supabase_url.trim_end_matches('/'), self.path)
    }

    /// The value of header `name` (case-insensitive), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Which kind of service key is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKeyKind {
    /// `sb_secret_…`: not a JWT; `apikey` only.
    Secret,
    /// A legacy `service_role` JWT: `apikey` and `Authorization: Bearer`.
    LegacyJwt,
}

impl ServiceKeyKind {
    pub fn of(key: &str) -> ServiceKeyKind {
        if key.trim().starts_with("sb_") {
            ServiceKeyKind::Secret
        } else {
            ServiceKeyKind::LegacyJwt
        }
    }
}

/// The authentication headers for the service key (SPEC §8).
pub fn auth_headers(service_key: &str) -> Vec<(&'static str, String)> {
    let key = service_key.trim();
    match ServiceKeyKind::of(key) {
        ServiceKeyKind::Secret => vec![("apikey", key.to_owned())],
        ServiceKeyKind::LegacyJwt => vec![
            ("apikey", key.to_owned()),
            ("Authorization", format!("Bearer {key}")),
        ],
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (`A-Za-z0-9-._~`).
pub fn encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn table_path(table: &str) -> String {
    format!("/rest/v1/{}", encode(table))
}

fn json_headers(prefer: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_owned()),
        ("Prefer", prefer.to_owned()),
    ]
}

/// `{code, message}` stored in `metadata.error` of a failed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// An `ErrorCode` string, or another step error code (e.g. `provider_timeout`).
    pub code: String,
    pub message: String,
}

/// The `metadata` column of our rows. The Durable Object keeps it and writes it whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowMetadata {
    pub step: Step,
    /// The step's submission attempt (1-based); the row guard filters on it.
    pub attempt: u32,
    /// Tripo task type (model rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TaskType>,
    /// Number of images of the step (concept rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u8>,
    /// Position of this image (concept rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The request's options as stored (model params, size, background, ...).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
    /// Set when the row failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RowError>,
}

impl RowMetadata {
    /// Metadata of the `index`-th of `n` concept rows.
    pub fn concept(attempt: u32, n: u8, index: u32, params: Value) -> RowMetadata {
        RowMetadata {
            step: Step::Concepts,
            attempt,
            kind: None,
            n: Some(n),
            index: Some(index),
            params,
            error: None,
        }
    }

    /// Metadata of a model or refine row.
    pub fn model(step: Step, attempt: u32, kind: TaskType, params: Value) -> RowMetadata {
        RowMetadata {
            step,
            attempt,
            kind: Some(kind),
            n: None,
            index: None,
            params,
            error: None,
        }
    }

    /// The same metadata with `error` set.
    pub fn with_error(&self, error: RowError) -> RowMetadata {
        RowMetadata {
            error: Some(error),
            ..self.clone()
        }
    }

    /// The same metadata for a new attempt: `attempt` replaced, `error` cleared.
    pub fn for_attempt(&self, attempt: u32) -> RowMetadata {
        RowMetadata {
            attempt,
            error: None,
            ..self.clone()
        }
    }
}

/// What the concept rows of one `concepts` step are made of.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptRows<'a> {
    pub task_id: &'a TaskId,
    pub user_id: UserId,
    /// The client's prompt, without the style suffix.
    pub prompt: &'a str,
    pub style: Option<&'a str>,
    pub n: u8,
    pub source_input_asset_id: Option<Uuid>,
    pub attempt: u32,
    /// Stored in `metadata.params` of every row.
    pub params: Value,
}

impl ConceptRows<'_> {
    /// The id of row `index`.
    pub fn row_id(&self, index: u32) -> Uuid {
        row_id(self.task_id, Step::Concepts, index)
    }

    /// All row ids, in index order.
    pub fn row_ids(&self) -> Vec<Uuid> {
        (0..u32::from(self.n)).map(|i| self.row_id(i)).collect()
    }

    /// The metadata of row `index`.
    pub fn metadata(&self, index: u32) -> RowMetadata {
        RowMetadata::concept(self.attempt, self.n, index, self.params.clone())
    }

    /// The request's columns (every row of the step has the same).
    pub fn columns(&self) -> RowColumns<'_> {
        RowColumns {
            prompt: Some(self.prompt),
            style: self.style,
            source_input_asset_id: self.source_input_asset_id,
            source_concept_image_id: None,
        }
    }
}

/// What the row of one `model` or `refine` step is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow<'a> {
    pub task_id: &'a TaskId,
    pub user_id: UserId,
    /// `Step::Model` or `Step::Refine`.
    pub step: Step,
    pub kind: TaskType,
    /// Nullable: image inputs need no prompt.
    pub prompt: Option<&'a str>,
    pub style: Option<&'a str>,
    pub source_input_asset_id: Option<Uuid>,
    pub source_concept_image_id: Option<Uuid>,
    pub attempt: u32,
    pub params: Value,
}

impl ModelRow<'_> {
    pub fn row_id(&self) -> Uuid {
        row_id(self.task_id, self.step, 0)
    }

    pub fn metadata(&self) -> RowMetadata {
        RowMetadata::model(self.step, self.attempt, self.kind, self.params.clone())
    }

    /// The request's columns.
    pub fn columns(&self) -> RowColumns<'_> {
        RowColumns {
            prompt: self.prompt,
            style: self.style,
            source_input_asset_id: self.source_input_asset_id,
            source_concept_image_id: Some(self.source_concept_image_id),
        }
    }
}

#[derive(Serialize)]
struct ConceptInsert<'a> {
    id: Uuid,
    task_id: &'a TaskId,
    user_id: UserId,
    source_input_asset_id: Option<Uuid>,
    prompt: &'a str,
    style: Option<&'a str>,
    status: Status,
    metadata: RowMetadata,
}

#[derive(Serialize)]
struct ModelInsert<'a> {
    id: Uuid,
    task_id: &'a TaskId,
    user_id: UserId,
    source_input_asset_id: Option<Uuid>,
    source_concept_image_id: Option<Uuid>,
    prompt: Option<&'a str>,
    style: Option<&'a str>,
    status: Status,
    metadata: RowMetadata,
}

fn to_body<T: Serialize>(value: &T) -> String {
    // Our row structs hold strings, numbers, UUIDs and JSON values: serialization cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn insert(table: &str, body: String) -> RestRequest {
    RestRequest {
        method: Method::Post,
        path: format!("{}?on_conflict=id", table_path(table)),
        headers: json_headers(PREFER_INSERT),
        body: Some(body),
    }
}

/// Inserts the n `pending` concept rows (a no-op for rows that exist).
pub fn insert_concept_rows(table: &str, rows: &ConceptRows<'_>) -> RestRequest {
    let objects: Vec<ConceptInsert<'_>> = (0..u32::from(rows.n))
        .map(|i| ConceptInsert {
            id: rows.row_id(i),
            task_id: rows.task_id,
            user_id: rows.user_id,
            source_input_asset_id: rows.source_input_asset_id,
            prompt: rows.prompt,
            style: rows.style,
            status: Status::Pending,
            metadata: rows.metadata(i),
        })
        .collect();
    insert(table, to_body(&objects))
}

/// Inserts the `pending` model row (a no-op if it exists).
pub fn insert_model_row(table: &str, row: &ModelRow<'_>) -> RestRequest {
    let object = ModelInsert {
        id: row.row_id(),
        task_id: row.task_id,
        user_id: row.user_id,
        source_input_asset_id: row.source_input_asset_id,
        source_concept_image_id: row.source_concept_image_id,
        prompt: row.prompt,
        style: row.style,
        status: Status::Pending,
        metadata: row.metadata(),
    };
    insert(table, to_body(&[object]))
}

fn id_filter(ids: &[Uuid]) -> String {
    match ids {
        [one] => format!("id=eq.{one}"),
        many => {
            let list: Vec<String> = many.iter().map(Uuid::to_string).collect();
            format!("id=in.({})", list.join(","))
        }
    }
}

/// The guard of writes within an attempt: only rows still running, of this attempt.
fn attempt_guard(attempt: u32) -> String {
    format!(
        "status=in.(pending,processing)&{}=eq.{attempt}",
        encode("metadata->>attempt")
    )
}

fn patch(table: &str, filter: &str, body: &Value) -> RestRequest {
    RestRequest {
        method: Method::Patch,
        path: format!("{}?{filter}", table_path(table)),
        headers: json_headers(PREFER_UPDATE),
        body: Some(body.to_string()),
    }
}

/// Deletes the `pending` rows of a submission that was undone before its job was enqueued
/// (SPEC §4.4: nothing half-made). Rows another attempt already moved on are not matched.
pub fn delete_pending(table: &str, row_ids: &[Uuid]) -> Result<RestRequest, RestError> {
    delete_in_status(table, row_ids, Status::Pending)
}

/// `DELETE` of the rows `row_ids` that are still in `status` (the guard: a row another attempt
/// moved on is not matched).
fn delete_in_status(
    table: &str,
    row_ids: &[Uuid],
    status: Status,
) -> Result<RestRequest, RestError> {
    if row_ids.is_empty() {
        return Err(RestError::NoRows);
    }
    Ok(RestRequest {
        method: Method::Delete,
        path: format!(
            "{}?{}&status=eq.{}",
            table_path(table),
            id_filter(row_ids),
            status.as_str()
        ),
        headers: vec![("Prefer", PREFER_UPDATE.to_owned())],
        body: None,
    })
}

/// Why an update could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// An unfiltered PATCH would update every row (and Supabase refuses it).
    #[error("no row ids given")]
    NoRows,
}

/// Marks rows `processing` (and stores the provider's task id when known). Does not touch
/// `metadata`, so the rows of a step are updated in one request.
pub fn mark_processing(
    table: &str,
    row_ids: &[Uuid],
    attempt: u32,
    ai_service_task_id: Option<&str>,
) -> Result<RestRequest, RestError> {
    if row_ids.is_empty() {
        return Err(RestError::NoRows);
    }
    let mut body = serde_json::Map::new();
    body.insert("status".into(), Value::from(Status::Processing.as_str()));
    if let Some(id) = ai_service_task_id {
        body.insert("ai_service_task_id".into(), Value::from(id));
    }
    let filter = format!("{}&{}", id_filter(row_ids), attempt_guard(attempt));
    Ok(patch(table, &filter, &Value::Object(body)))
}

/// Marks one row `complete` with its permanent URL; `metadata` is written whole.
pub fn mark_complete(
    table: &str,
    row: Uuid,
    asset_url: &str,
    metadata: &RowMetadata,
) -> RestRequest {
    let body = serde_json::json!({
        "status": Status::Complete.as_str(),
        "asset_url": asset_url,
        "metadata": metadata,
    });
    let filter = format!("{}&{}", id_filter(&[row]), attempt_guard(metadata.attempt));
    patch(table, &filter, &body)
}

/// Marks one row `failed`; `metadata` is written whole with `metadata.error` set.
pub fn mark_failed(table: &str, row: Uuid, metadata: &RowMetadata, error: RowError) -> RestRequest {
    let body = serde_json::json!({
        "status": Status::Failed.as_str(),
        "metadata": metadata.with_error(error),
    });
    let filter = format!("{}&{}", id_filter(&[row]), attempt_guard(metadata.attempt));
    patch(table, &filter, &body)
}

/// Adds `ai_service_task_id` to a row write's JSON body: the final write of a model row carries
/// the Tripo id too, so a row whose `processing` write was lost still names its task (the
/// refine-draft check looks rows up by it).
pub fn with_ai_service_task_id(mut req: RestRequest, id: &str) -> RestRequest {
    let body = req
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str::<Value>(b).ok());
    if let Some(Value::Object(mut map)) = body {
        map.insert("ai_service_task_id".into(), Value::from(id));
        req.body = Some(Value::Object(map).to_string());
    }
    req
}

/// The columns of a row that come from the step's request (besides `metadata`): what a new
/// attempt rewrites, since a resubmission of a `failed` step may carry another body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowColumns<'a> {
    pub prompt: Option<&'a str>,
    pub style: Option<&'a str>,
    pub source_input_asset_id: Option<Uuid>,
    /// `Some(value)` for `models` rows (the column exists there only); `None` leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_concept_image_id: Option<Option<Uuid>>,
}

/// Puts a `failed` row back to `pending` for a new attempt (SPEC §4.1: a failed step may be
/// submitted again, same rows) and rewrites every column the worker owns from the new request:
/// `prompt`, `style`, the source ids and `metadata` (with the new attempt, written whole);
/// `asset_url`, `ai_service_task_id` and the error are cleared. Only matches a row that is
/// `failed`, so it never touches a row another attempt is running.
pub fn reset_pending(
    table: &str,
    row: Uuid,
    columns: &RowColumns<'_>,
    metadata: &RowMetadata,
) -> RestRequest {
    let clean = RowMetadata {
        error: None,
        ..metadata.clone()
    };
    let mut body = match serde_json::to_value(columns) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    body.insert("status".into(), Value::from(Status::Pending.as_str()));
    body.insert("asset_url".into(), Value::Null);
    body.insert("ai_service_task_id".into(), Value::Null);
    body.insert(
        "metadata".into(),
        serde_json::to_value(&clean).unwrap_or(Value::Null),
    );
    let filter = format!(
        "{}&status=eq.{}",
        id_filter(&[row]),
        Status::Failed.as_str()
    );
    patch(table, &filter, &Value::Object(body))
}

/// Deletes rows that are `failed` (documented decision, SPEC §4.1): the concept rows of an
/// earlier attempt beyond the new attempt's `n`. A row that is not `failed` (another attempt
/// moved it on) is not matched.
pub fn delete_failed(table: &str, row_ids: &[Uuid]) -> Result<RestRequest, RestError> {
    delete_in_status(table, row_ids, Status::Failed)
}

/// The refine-model draft check (SPEC §4.1, `refine-model`): is `draft` the Tripo id of one of
/// `user`'s own `models` rows? `GET /rest/v1/{models}?select=id&ai_service_task_id=eq.{draft}
/// &user_id=eq.{user}&limit=1`. The glue sends it with the caller's own token, so row-level
/// security agrees with the `user_id` filter (which alone decides under `AUTH_MODE=none`).
pub fn find_owned_model(table: &str, draft: &str, user: UserId) -> RestRequest {
    RestRequest {
        method: Method::Get,
        path: format!(
            "{}?select=id&ai_service_task_id=eq.{}&user_id=eq.{}&limit=1",
            table_path(table),
            encode(draft),
            user
        ),
        headers: vec![("Accept", "application/json".to_owned())],
        body: None,
    }
}

/// The task a Tripo webhook is about: `GET /rest/v1/{models}?select=task_id
/// &ai_service_task_id=eq.{tripo_id}&limit=2` (service key; the column is indexed,
/// `migrations/0001_init.sql`). Two rows would be a bug somewhere: the caller refuses to guess.
pub fn find_by_provider_task(table: &str, tripo_id: &str) -> RestRequest {
    RestRequest {
        method: Method::Get,
        path: format!(
            "{}?select=task_id&ai_service_task_id=eq.{}&limit=2",
            table_path(table),
            encode(tripo_id)
        ),
        headers: vec![("Accept", "application/json".to_owned())],
        body: None,
    }
}

/// The `task_id`s of a `select=task_id` answer (unusable entries skipped).
pub fn task_ids(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Vec<Value>>(body)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.get("task_id").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Whether a `select` answer (a JSON array) holds at least one row.
pub fn has_rows(body: &[u8]) -> bool {
    serde_json::from_slice::<Vec<Value>>(body).is_ok_and(|rows| !rows.is_empty())
}

/// Classifies a PostgREST (or gateway) error: 5xx, 408 and 429 retry; credentials and RLS
/// errors are `Auth`; any other 4xx (unknown table or column, constraint) is final.
pub fn postgrest_failure(http_status: u16, body: &str, retry_after_ms: Option<u64>) -> Failure {
    #[derive(Deserialize)]
    struct PgError {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let parsed = serde_json::from_str::<PgError>(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|e| e.code.clone())
        .unwrap_or_default();
    let message = parsed.and_then(|e| e.message).unwrap_or_default();
    let class = match code.as_str() {
        "PGRST301" | "PGRST302" | "42501" => FailureClass::Auth,
        _ => classify_status(http_status),
    };
    let detail = match class {
        FailureClass::Auth => format!("credentials refused (HTTP {http_status})"),
        _ if message.is_empty() => {
            let excerpt: String = body.trim().chars().take(200).collect();
            if excerpt.is_empty() {
                format!("HTTP {http_status}")
            } else {
                format!("HTTP {http_status}: {excerpt}")
            }
        }
        _ if code.is_empty() => format!("{message} (HTTP {http_status})"),
        _ => format!("{message} ({code})"),
    };
    Failure::new(Dependency::Database, class, &detail).with_retry_after(retry_after_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::ErrorCode;
    use serde_json::json;

    fn task() -> TaskId {
        TaskId::parse("t-1:a.b").unwrap()
    }

    fn user() -> UserId {
        UserId(Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888))
    }

    #[test]
    fn auth_headers_depend_on_the_key_kind() {
        assert_eq!(
            auth_headers("sb_secret_abc"),
            vec![("apikey", "sb_secret_abc".to_owned())]
        );
        assert_eq!(
            auth_headers("eyJhbGciOiJIUzI1NiJ9.e30.sig"),
            vec![
                ("apikey", "eyJhbGciOiJIUzI1NiJ9.e30.sig".to_owned()),
                (
                    "Authorization",
                    "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig".to_owned()
                ),
            ]
        );
        assert_eq!(ServiceKeyKind::of(" sb_secret_x "), ServiceKeyKind::Secret);
    }

    #[test]
    fn encodes_values() {
        assert_eq!(encode("t-1:a.b"), "t-1%3Aa.b");
        assert_eq!(encode("a b,(c)&d=é"), "a%20b%2C%28c%29%26d%3D%C3%A9");
        assert_eq!(encode("metadata->>attempt"), "metadata-%3E%3Eattempt");
    }

    #[test]
    fn inserts_concept_rows_with_deterministic_ids() {
        let t = task();
        let rows = ConceptRows {
            task_id: &t,
            user_id: user(),
            prompt: "a chair",
            style: Some("clay"),
            n: 2,
            source_input_asset_id: None,
            attempt: 1,
            params: json!({"size":"1024x1024"}),
        };
        let req = insert_concept_rows("concept_images", &rows);
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.path, "/rest/v1/concept_images?on_conflict=id");
        assert_eq!(
            req.header("prefer"),
            Some("resolution=ignore-duplicates,return=minimal")
        );
        assert_eq!(
            req.url("http://sb.local/"),
            "http://sb.local/rest/v1/concept_images?on_conflict=id"
        );
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
        let arr = body.as_array().unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[1]["id"], row_id(&t, Step::Concepts, 1).to_string());
        assert_eq!(arr[0]["task_id"], "t-1:a.b");
        assert_eq!(arr[0]["status"], "pending");
        assert_eq!(arr[0]["user_id"], "11112222-3333-4444-5555-666677778888");
        assert_eq!(arr[0]["source_input_asset_id"], Value::Null);
        assert_eq!(
            arr[1]["metadata"],
            json!({"step":"concepts","attempt":1,"n":2,"index":1,"params":{"size":"1024x1024"}})
        );
        // PostgREST bulk insert: every object has the same keys.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&arr[0]), keys(&arr[1]));
        assert!(!keys(&arr[0]).contains(&"asset_url".to_owned()));
        // Same input, same request: a retried insert is the same no-op.
        assert_eq!(insert_concept_rows("concept_images", &rows), req);
    }

    #[test]
    fn inserts_a_model_row_with_nullable_prompt() {
        let t = task();
        let row = ModelRow {
            task_id: &t,
            user_id: user(),
            step: Step::Refine,
            kind: TaskType::RefineModel,
            prompt: None,
            style: None,
            source_input_asset_id: None,
            source_concept_image_id: Some(Uuid::nil()),
            attempt: 2,
            params: Value::Null,
        };
        let req = insert_model_row("my models", &row);
        assert_eq!(req.path, "/rest/v1/my%20models?on_conflict=id");
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(body[0]["id"], row_id(&t, Step::Refine, 0).to_string());
        assert_eq!(body[0]["prompt"], Value::Null);
        assert_eq!(body[0]["source_concept_image_id"], Uuid::nil().to_string());
        assert_eq!(
            body[0]["metadata"],
            json!({"step":"refine","attempt":2,"kind":"refine_model"})
        );
    }

    #[test]
    fn updates_are_guarded() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let req = mark_processing("models", &[a, b], 3, Some("tripo-1")).unwrap();
        assert_eq!(req.method, Method::Patch);
        assert_eq!(
            req.path,
            format!("/rest/v1/models?id=in.({a},{b})&status=in.(pending,processing)&metadata-%3E%3Eattempt=eq.3")
        );
        assert_eq!(req.header("Prefer"), Some("return=minimal"));
        assert_eq!(
            serde_json::from_str::<Value>(req.body.as_deref().unwrap()).unwrap(),
            json!({"status":"processing","ai_service_task_id":"tripo-1"})
        );
        assert_eq!(
            mark_processing("models", &[], 1, None),
            Err(RestError::NoRows)
        );

        let meta = RowMetadata::concept(1, 2, 0, Value::Null);
        let done = mark_complete("concept_images", a, "https://x/0.png", &meta);
        assert_eq!(
            done.path,
            format!("/rest/v1/concept_images?id=eq.{a}&status=in.(pending,processing)&metadata-%3E%3Eattempt=eq.1")
        );
        assert_eq!(
            serde_json::from_str::<Value>(done.body.as_deref().unwrap()).unwrap(),
            json!({"status":"complete","asset_url":"https://x/0.png","metadata":{"step":"concepts","attempt":1,"n":2,"index":0}})
        );
    }

    #[test]
    fn failure_keeps_the_whole_metadata_and_adds_the_error() {
        let meta = RowMetadata::model(
            Step::Model,
            1,
            TaskType::ImageToModel,
            json!({"texture":true}),
        );
        let err = RowError {
            code: ErrorCode::ContentPolicy.as_str().into(),
            message: "Tripo: banned".into(),
        };
        let req = mark_failed("models", Uuid::nil(), &meta, err);
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"status":"failed","metadata":{"step":"model","attempt":1,"kind":"image_to_model",
                   "params":{"texture":true},"error":{"code":"content_policy","message":"Tripo: banned"}}})
        );
        assert!(req.path.contains("status=in.(pending,processing)"));
    }

    #[test]
    fn reset_only_matches_failed_rows_and_clears_outputs() {
        let old = RowMetadata::model(Step::Model, 1, TaskType::TextToModel, Value::Null)
            .with_error(RowError {
                code: ErrorCode::Timeout.as_str().into(),
                message: "late".into(),
            });
        let next = old.for_attempt(2);
        assert_eq!(next.error, None);
        let cols = RowColumns {
            prompt: Some("a new prompt"),
            style: None,
            source_input_asset_id: None,
            source_concept_image_id: Some(None),
        };
        let req = reset_pending("models", Uuid::nil(), &cols, &next);
        assert_eq!(
            req.path,
            format!("/rest/v1/models?id=eq.{}&status=eq.failed", Uuid::nil())
        );
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["status"], "pending");
        assert_eq!(body["asset_url"], Value::Null);
        assert_eq!(body["ai_service_task_id"], Value::Null);
        assert_eq!(body["metadata"]["attempt"], 2);
        assert!(body["metadata"].get("error").is_none());
    }

    #[test]
    fn reset_rewrites_the_request_columns_and_writes_nulls() {
        let t = task();
        let rows = ConceptRows {
            task_id: &t,
            user_id: user(),
            prompt: "second prompt",
            style: None,
            n: 1,
            source_input_asset_id: None,
            attempt: 2,
            params: Value::Null,
        };
        let req = reset_pending(
            "concept_images",
            rows.row_id(0),
            &rows.columns(),
            &rows.metadata(0),
        );
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
        // A style the first attempt had is cleared by an explicit null, not left behind.
        assert_eq!(
            body,
            json!({"prompt":"second prompt","style":null,"source_input_asset_id":null,
                   "status":"pending","asset_url":null,"ai_service_task_id":null,
                   "metadata":{"step":"concepts","attempt":2,"n":1,"index":0}})
        );
    }

    #[test]
    fn delete_failed_only_matches_failed_rows() {
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2)];
        let r = delete_failed("concept_images", &ids).unwrap();
        assert_eq!(r.method, Method::Delete);
        assert_eq!(
            r.path,
            format!(
                "/rest/v1/concept_images?id=in.({},{})&status=eq.failed",
                ids[0], ids[1]
            )
        );
        assert_eq!(r.body, None);
        assert_eq!(delete_failed("concept_images", &[]), Err(RestError::NoRows));
    }

    #[test]
    fn metadata_round_trips() {
        let m =
            RowMetadata::concept(4, 3, 2, json!({"background":"opaque"})).with_error(RowError {
                code: ErrorCode::ProviderUnavailable.as_str().into(),
                message: "x".into(),
            });
        let back: RowMetadata = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn delete_pending_is_filtered_and_guarded() {
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2)];
        let r = delete_pending("concept_images", &ids).unwrap();
        assert_eq!(r.method, Method::Delete);
        assert!(
            r.path.starts_with("/rest/v1/concept_images?id=in.("),
            "{}",
            r.path
        );
        assert!(r.path.ends_with("&status=eq.pending"), "{}", r.path);
        assert!(r.body.is_none());
        assert_eq!(delete_pending("models", &[]), Err(RestError::NoRows));
    }

    #[test]
    fn classifies_postgrest_errors() {
        let missing = postgrest_failure(
            404,
            r#"{"code":"42P01","details":null,"hint":null,"message":"relation \"public.nope\" does not exist"}"#,
            None,
        );
        assert_eq!(missing.class, FailureClass::Rejected);
        assert_eq!(
            missing.reason,
            "Supabase database: relation \"public.nope\" does not exist (42P01)"
        );
        let jwt = postgrest_failure(401, r#"{"code":"PGRST301","message":"JWT expired"}"#, None);
        assert_eq!(jwt.class, FailureClass::Auth);
        let rls = postgrest_failure(
            403,
            r#"{"code":"42501","message":"new row violates row-level security policy"}"#,
            None,
        );
        assert_eq!(rls.class, FailureClass::Auth);
        let gateway = postgrest_failure(
            401,
            r#"{"message":"Invalid authentication credentials"}"#,
            None,
        );
        assert_eq!(gateway.class, FailureClass::Auth);
        assert_eq!(
            postgrest_failure(503, "", None).class,
            FailureClass::Transient
        );
        assert_eq!(
            postgrest_failure(503, "", None).reason,
            "Supabase database: HTTP 503"
        );
        assert_eq!(
            postgrest_failure(
                400,
                r#"{"code":"21000","message":"UPDATE requires a WHERE clause"}"#,
                None
            )
            .class,
            FailureClass::Rejected
        );
    }

    #[test]
    fn owned_draft_query_filters_on_the_tripo_id_and_the_owner() {
        let user = UserId(Uuid::parse_str("11111111-2222-4333-8444-555555555555").unwrap());
        let r = find_owned_model("models", "draft id/&x=1", user);
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.path,
            "/rest/v1/models?select=id&ai_service_task_id=eq.draft%20id%2F%26x%3D1&user_id=eq.11111111-2222-4333-8444-555555555555&limit=1"
        );
        assert!(r.body.is_none());
        assert!(has_rows(br#"[{"id":"x"}]"#));
        assert!(!has_rows(b"[]"));
        assert!(!has_rows(b"{}"));
        assert!(!has_rows(b""));
    }

    #[test]
    fn a_final_model_row_write_can_carry_the_tripo_id() {
        let meta = RowMetadata::concept(1, 1, 0, serde_json::json!({}));
        let done = mark_complete("models", Uuid::nil(), "https://x/m.glb", &meta);
        let with = with_ai_service_task_id(done.clone(), "tripo-1");
        let body: Value = serde_json::from_str(with.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["ai_service_task_id"], "tripo-1");
        assert_eq!(body["status"], "complete");
        assert_eq!(with.path, done.path, "the guard is unchanged");
    }

    #[test]
    fn rows_are_found_by_their_tripo_task_id() {
        let r = find_by_provider_task("models", "a-1_b");
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.path,
            "/rest/v1/models?select=task_id&ai_service_task_id=eq.a-1_b&limit=2"
        );
        // Anything but unreserved characters is encoded (the filter cannot be widened).
        let r = find_by_provider_task("models", "x&user_id=neq.1");
        assert!(
            r.path.ends_with("eq.x%26user_id%3Dneq.1&limit=2"),
            "{}",
            r.path
        );
        assert_eq!(task_ids(br#"[{"task_id":"t-1"},{"x":1}]"#), vec!["t-1"]);
        assert!(task_ids(b"nope").is_empty());
    }
}
