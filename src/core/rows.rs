//! The `concept_images` / `models` rows of a step, derived from its validated request: what the
//! submit path inserts (`pending`) and what the jobs write back (metadata is always written
//! whole, so it is recomputed here from the request rather than read back from the database).

use serde_json::{json, Value};
use uuid::Uuid;

use super::ids::{row_id, TaskId, UserId};
use super::request::{ConceptsRequest, StepRequest, TripoTaskType, MAX_CONCEPTS};
use super::rest::{self, ConceptRows, ModelRow, RestRequest, RowMetadata};
use super::step::Step;
use super::tripo::TaskType;

/// The three table names of SPEC §8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub concept_images: String,
    pub models: String,
}

impl Tables {
    /// The table of a step's rows.
    pub fn of(&self, step: Step) -> &str {
        match step {
            Step::Concepts => &self.concept_images,
            Step::Model | Step::Refine => &self.models,
        }
    }
}

fn task_type(t: TripoTaskType) -> TaskType {
    match t {
        TripoTaskType::TextToModel => TaskType::TextToModel,
        TripoTaskType::ImageToModel => TaskType::ImageToModel,
        TripoTaskType::MultiviewToModel => TaskType::MultiviewToModel,
        TripoTaskType::RefineModel => TaskType::RefineModel,
    }
}

/// `metadata.params`: the request's options as the client sent them (defaults applied), without
/// the prompt and style, which have their own columns.
fn params(req: &StepRequest) -> Value {
    let mut v = serde_json::to_value(req).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.remove("prompt");
        map.remove("style");
        map.remove("step");
    }
    v
}

/// The insert of a step's pending rows (n concept rows, or one model row), idempotent.
pub fn insert(
    tables: &Tables,
    task: &TaskId,
    user: UserId,
    req: &StepRequest,
    attempt: u32,
) -> RestRequest {
    match req {
        StepRequest::Concepts(c) => rest::insert_concept_rows(
            &tables.concept_images,
            &concept_rows(task, user, c, attempt, params(req)),
        ),
        StepRequest::Model(_) | StepRequest::Refine(_) => {
            rest::insert_model_row(&tables.models, &model_row(task, user, req, attempt))
        }
    }
}

fn concept_rows<'a>(
    task: &'a TaskId,
    user: UserId,
    c: &'a ConceptsRequest,
    attempt: u32,
    params: Value,
) -> ConceptRows<'a> {
    ConceptRows {
        task_id: task,
        user_id: user,
        prompt: &c.prompt,
        style: c.style.as_deref(),
        n: c.n,
        source_input_asset_id: None,
        attempt,
        params,
    }
}

fn model_row<'a>(
    task: &'a TaskId,
    user: UserId,
    req: &'a StepRequest,
    attempt: u32,
) -> ModelRow<'a> {
    let (kind, source_input, source_concept) = match req {
        StepRequest::Model(m) => (
            task_type(m.tripo_task_type()),
            m.image_options().and_then(|o| o.source_input_asset_id),
            m.image_options().and_then(|o| o.source_concept_image_id),
        ),
        _ => (TaskType::RefineModel, None, None),
    };
    ModelRow {
        task_id: task,
        user_id: user,
        step: req.step(),
        kind,
        prompt: req.prompt(),
        style: req.style(),
        source_input_asset_id: source_input,
        source_concept_image_id: source_concept,
        attempt,
        params: params(req),
    }
}

/// The metadata of row `index` of a step (written whole by every update that touches it).
pub fn metadata(req: &StepRequest, attempt: u32, index: u32) -> RowMetadata {
    match req {
        StepRequest::Concepts(c) => RowMetadata::concept(attempt, c.n, index, params(req)),
        StepRequest::Model(m) => RowMetadata::model(
            Step::Model,
            attempt,
            task_type(m.tripo_task_type()),
            params(req),
        ),
        StepRequest::Refine(_) => {
            RowMetadata::model(Step::Refine, attempt, TaskType::RefineModel, params(req))
        }
    }
}

/// The concept rows of `task` from index `n` up to the largest `n` a request may ask for:
/// the rows an earlier attempt with a larger `n` may have left.
fn concept_ids_beyond(task: &TaskId, n: u32) -> Vec<Uuid> {
    let max = u32::try_from(MAX_CONCEPTS).unwrap_or(0);
    (n..max).map(|i| row_id(task, Step::Concepts, i)).collect()
}

/// The row writes of a resubmitted (`Retry`) step, after [`insert`] (which adds the rows a
/// larger `n` needs): each `failed` row of the new attempt is reset to `pending` with every
/// column the worker owns rewritten from the new request (prompt, style, source ids, metadata
/// with the new attempt); the `failed` concept rows beyond the new `n` are deleted (documented
/// decision: the rows of a task are exactly those of its current attempt). Every write only
/// matches `failed` rows, so none can touch a row an attempt is running.
pub fn reset(
    tables: &Tables,
    task: &TaskId,
    user: UserId,
    req: &StepRequest,
    row_ids: &[Uuid],
    attempt: u32,
) -> Vec<RestRequest> {
    let table = tables.of(req.step());
    let mut out: Vec<RestRequest> = match req {
        StepRequest::Concepts(c) => {
            let rows = concept_rows(task, user, c, attempt, params(req));
            let columns = rows.columns();
            row_ids
                .iter()
                .zip(0u32..)
                .map(|(id, i)| rest::reset_pending(table, *id, &columns, &rows.metadata(i)))
                .collect()
        }
        StepRequest::Model(_) | StepRequest::Refine(_) => {
            let row = model_row(task, user, req, attempt);
            let columns = row.columns();
            row_ids
                .iter()
                .map(|id| rest::reset_pending(table, *id, &columns, &row.metadata()))
                .collect()
        }
    };
    if let StepRequest::Concepts(_) = req {
        let extra = concept_ids_beyond(task, req.output_count());
        out.extend(rest::delete_failed(table, &extra));
    }
    out
}

/// Undoes the row writes of a submission that failed before its job was enqueued: a new step's
/// `pending` rows are deleted; a resubmitted step's rows go back to `failed` with the cause.
pub fn undo(
    tables: &Tables,
    req: &StepRequest,
    row_ids: &[Uuid],
    attempt: u32,
    retry: bool,
    cause: &str,
) -> Vec<RestRequest> {
    let table = tables.of(req.step());
    if !retry {
        return rest::delete_pending(table, row_ids).into_iter().collect();
    }
    (0u32..)
        .zip(row_ids)
        .map(|(i, id)| {
            let error = rest::RowError {
                code: "submission_aborted".into(),
                message: cause.to_owned(),
            };
            rest::mark_failed(table, *id, &metadata(req, attempt, i), error)
        })
        .collect()
}

/// A short summary of the rows for logs.
pub fn describe(req: &StepRequest) -> Value {
    json!({ "step": req.step().as_str(), "rows": req.output_count() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse, Endpoint};

    fn tables() -> Tables {
        Tables {
            concept_images: "concept_images".into(),
            models: "models".into(),
        }
    }

    fn user() -> UserId {
        UserId(Uuid::parse_str("8f1e6f2a-0c1d-4b7e-9a51-3f0c2b9d7e11").unwrap())
    }

    #[test]
    fn concepts_insert_n_rows_with_deterministic_ids() {
        let v = parse(
            Endpoint::ImageToImage,
            br#"{"task_id":"t-1","input_image_asset_url":"https://x.supabase.co/storage/v1/object/public/b/a.png","prompt":"a cat","style":"clay","n":3}"#,
        )
        .unwrap();
        let r = insert(&tables(), &v.task_id, user(), &v.request, 1);
        assert_eq!(r.path, "/rest/v1/concept_images?on_conflict=id");
        let body: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        let rows = body.as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[2]["id"],
            row_id(&v.task_id, Step::Concepts, 2).to_string()
        );
        assert_eq!(rows[0]["prompt"], "a cat");
        assert_eq!(rows[0]["style"], "clay");
        assert_eq!(rows[0]["status"], "pending");
        assert_eq!(rows[1]["metadata"]["index"], 1);
        assert!(rows[0]["metadata"]["params"].get("prompt").is_none());
        assert_eq!(
            r.header("prefer"),
            Some("resolution=ignore-duplicates,return=minimal")
        );
    }

    #[test]
    fn undo_deletes_new_rows_and_refails_retried_ones() {
        let v = parse(Endpoint::TextToModel, br#"{"task_id":"t-3","prompt":"x"}"#).unwrap();
        let ids = vec![row_id(&v.task_id, Step::Model, 0)];
        let new = undo(&tables(), &v.request, &ids, 1, false, "queue down");
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].method, rest::Method::Delete);
        assert!(new[0].path.contains("status=eq.pending"));
        let again = undo(&tables(), &v.request, &ids, 2, true, "queue down");
        assert_eq!(again[0].method, rest::Method::Patch);
        let body: Value = serde_json::from_str(again[0].body.as_deref().unwrap()).unwrap();
        assert_eq!(body["status"], "failed");
        assert_eq!(body["metadata"]["attempt"], 2);
        assert_eq!(body["metadata"]["error"]["message"], "queue down");
    }

    fn body(r: &RestRequest) -> Value {
        serde_json::from_str(r.body.as_deref().unwrap()).unwrap()
    }

    // P9 finding 7: a failed n=3 step resubmitted with n=1 and another prompt and style.
    #[test]
    fn a_new_attempt_rewrites_the_request_columns_of_its_rows() {
        let v = parse(
            Endpoint::ImageToImage,
            br#"{"task_id":"t-r","input_image_asset_url":"https://x.supabase.co/storage/v1/object/public/b/a.png","prompt":"a dog","style":"ink","n":1}"#,
        )
        .unwrap();
        let ids = vec![row_id(&v.task_id, Step::Concepts, 0)];
        let writes = reset(&tables(), &v.task_id, user(), &v.request, &ids, 2);
        let resets: Vec<&RestRequest> = writes
            .iter()
            .filter(|r| r.method == rest::Method::Patch)
            .collect();
        assert_eq!(resets.len(), 1);
        assert!(resets[0].path.contains(&format!("id=eq.{}", ids[0])));
        assert!(resets[0].path.ends_with("status=eq.failed"));
        let b = body(resets[0]);
        assert_eq!(b["prompt"], "a dog");
        assert_eq!(b["style"], "ink");
        assert_eq!(b["source_input_asset_id"], Value::Null);
        assert!(
            b.get("source_concept_image_id").is_none(),
            "not a concept_images column"
        );
        assert_eq!(b["status"], "pending");
        assert_eq!(b["metadata"]["attempt"], 2);
        assert_eq!(b["metadata"]["n"], 1);
        assert_eq!(b["metadata"]["index"], 0);
    }

    #[test]
    fn a_new_attempt_with_a_smaller_n_deletes_the_failed_rows_beyond_it() {
        let v = parse(
            Endpoint::ImageToImage,
            br#"{"task_id":"t-r","input_image_asset_url":"https://x.supabase.co/storage/v1/object/public/b/a.png","prompt":"a dog","n":1}"#,
        )
        .unwrap();
        let ids = vec![row_id(&v.task_id, Step::Concepts, 0)];
        let writes = reset(&tables(), &v.task_id, user(), &v.request, &ids, 2);
        let deletes: Vec<&RestRequest> = writes
            .iter()
            .filter(|r| r.method == rest::Method::Delete)
            .collect();
        assert_eq!(deletes.len(), 1);
        let path = &deletes[0].path;
        assert!(
            path.starts_with("/rest/v1/concept_images?id=in.("),
            "{path}"
        );
        assert!(path.ends_with("&status=eq.failed"), "{path}");
        assert!(
            !path.contains(&ids[0].to_string()),
            "the new attempt's row is kept"
        );
        for i in 1..10 {
            assert!(path.contains(&row_id(&v.task_id, Step::Concepts, i).to_string()));
        }
        // n = 10 leaves nothing beyond it.
        let full = parse(
            Endpoint::ImageToImage,
            br#"{"task_id":"t-r","input_image_asset_url":"https://x.supabase.co/storage/v1/object/public/b/a.png","prompt":"a dog","n":10}"#,
        )
        .unwrap();
        let ids: Vec<Uuid> = (0..10)
            .map(|i| row_id(&full.task_id, Step::Concepts, i))
            .collect();
        let writes = reset(&tables(), &full.task_id, user(), &full.request, &ids, 2);
        assert_eq!(writes.len(), 10);
        assert!(writes.iter().all(|r| r.method == rest::Method::Patch));
    }

    #[test]
    fn a_new_model_attempt_rewrites_prompt_style_and_source_ids() {
        let v = parse(
            Endpoint::ImageToModel,
            br#"{"task_id":"t-m","input_image_asset_urls":["https://x.supabase.co/storage/v1/object/public/b/a.png"],"style":"clay","source_concept_image_id":"00000000-0000-4000-8000-000000000007"}"#,
        )
        .unwrap();
        let ids = vec![row_id(&v.task_id, Step::Model, 0)];
        let writes = reset(&tables(), &v.task_id, user(), &v.request, &ids, 3);
        assert_eq!(writes.len(), 1, "no delete for a model step");
        assert!(writes[0].path.starts_with("/rest/v1/models?"));
        let b = body(&writes[0]);
        // An image model has no prompt: the earlier attempt's prompt is cleared, not kept.
        assert_eq!(b["prompt"], Value::Null);
        assert_eq!(b["style"], "clay");
        assert_eq!(b["source_input_asset_id"], Value::Null);
        assert_eq!(
            b["source_concept_image_id"],
            "00000000-0000-4000-8000-000000000007"
        );
        assert_eq!(b["ai_service_task_id"], Value::Null);
        assert_eq!(b["metadata"]["attempt"], 3);
        assert_eq!(b["metadata"]["kind"], "image_to_model");
    }

    #[test]
    fn image_model_row_has_null_prompt_and_kind() {
        let v = parse(
            Endpoint::ImageToModel,
            br#"{"task_id":"t-2","input_image_asset_urls":["https://x.supabase.co/storage/v1/object/public/b/a.png","https://x.supabase.co/storage/v1/object/public/b/b.png"]}"#,
        )
        .unwrap();
        let r = insert(&tables(), &v.task_id, user(), &v.request, 1);
        let body: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(body[0]["prompt"], Value::Null);
        assert_eq!(body[0]["metadata"]["kind"], "multiview_to_model");
        assert_eq!(body[0]["user_id"], user().to_string());
        assert_eq!(metadata(&v.request, 2, 0).attempt, 2);
        assert_eq!(tables().of(Step::Refine), "models");
    }
}
