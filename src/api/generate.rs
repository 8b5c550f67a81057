//! `POST /generate/{endpoint}`: the submit path of SPEC §6 — validate → authenticate → prove the
//! caller may read every input (SPEC §4.1) and owns a refine's draft → create or look up the step in the task's Durable Object → insert the `pending`
//! rows → enqueue the job → 202. A repeat of the same request answers 200 with the step's state
//! and starts nothing; a dependency failure before the enqueue undoes the step (502/503) so the
//! same request can simply be sent again.

use serde_json::json;
use worker::{Env, Request, Response};

use crate::auth;
use crate::config::Config;
use crate::core::ids::UserId;
use crate::core::jwt::Caller;
use crate::core::request::{self, Endpoint, RequestError, StepRequest, ValidRequest};
use crate::core::rest as rows_query;
use crate::core::status::submit_response;
use crate::core::step::Status;
use crate::core::storage_path::{InputObject, Origin, ReadRights};
use crate::core::supabase::ProofOutcome;
use crate::error::{ApiError, FieldError};
use crate::flow::{self, submit::Submitted};
use crate::http::{config, internal, json};
use crate::log::{self, Level};
use crate::net::{self, RequestBody};
use crate::runtime::{Runtime, Tasks};
use crate::supabase;
use crate::supabase::storage::Rights;
use crate::task_client;

/// Reads and checks the body: JSON content type and the size limit, before any token work. A
/// declared `Content-Length` over `MAX_BODY_BYTES` is refused unread; otherwise the body is read
/// as a stream and nothing past the limit is kept, with or without `Content-Length` (chunked
/// bodies too; see `net::read_request_capped`).
async fn read_body(req: &mut Request, cfg: &Config) -> Result<Vec<u8>, ApiError> {
    let ct = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" {
        return Err(ApiError::UnsupportedMediaType);
    }
    let limit = cfg.max_body_bytes;
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match net::read_request_capped(req, limit).await {
        Ok(RequestBody::Complete(body)) => Ok(body),
        Ok(RequestBody::TooLarge { held, read }) => {
            log::emit(
                Level::Warn,
                "http.body_too_large",
                None,
                None,
                json!({ "limit": limit, "held": held, "read": read, "content_length": declared }),
            );
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(_) => Err(ApiError::MalformedJson("could not read the body".into())),
    }
}

/// Proves that the caller may read every input (SPEC §4.1): each object is read through the
/// route its URL names, with that route's rights — the caller's own token for `authenticated/`
/// and bare URLs (the service key only under `AUTH_MODE=none`, which has no token), nothing for
/// `public/` and `sign/` URLs. This task's own outputs are readable by the task's owner (flow B).
/// A missing object and one the caller cannot read get the same 422 `input_asset_not_found`,
/// and only a readable object is checked for type and size, so nothing is learned about objects
/// the caller cannot read. Storage failures are 502/503.
async fn check_inputs(
    cfg: &Config,
    env: &Env,
    origin: &Origin,
    v: &ValidRequest,
    caller: &Caller,
) -> Result<(), ApiError> {
    let resolved = request::resolve_urls(&v.request, origin).map_err(ApiError::Validation)?;
    let fields = request::url_fields(&v.request);
    let objects: Vec<&InputObject> = resolved.all().collect();
    // The flow-B exception needs the task's owner: asked of the DO only when an input names
    // this task's outputs.
    let owns_task = if objects
        .iter()
        .any(|o| o.is_output_of(&cfg.bucket, &v.task_id))
    {
        task_client::state(env, &v.task_id)
            .await?
            .is_some_and(|t| t.owner == caller.user)
    } else {
        false
    };
    let mut invalid = Vec::new();
    let mut missing = Vec::new();
    for (obj, (field, _)) in objects.iter().zip(fields.iter()) {
        let read = if owns_task && obj.is_output_of(&cfg.bucket, &v.task_id) {
            obj.service_proof()
        } else {
            obj.proof()
        };
        let rights = match (read.rights, &caller.token) {
            (ReadRights::Anonymous, _) => Rights::Anonymous,
            (ReadRights::Caller, Some(token)) => Rights::Caller(token),
            (ReadRights::Caller, None) | (ReadRights::Service, _) => Rights::Service,
        };
        match supabase::storage::prove_input(cfg, &read, rights).await? {
            ProofOutcome::Readable(info) => {
                // The refine model input is stored as a reference only: no image checks.
                if field != "input_model_asset_url" {
                    if let Err(msg) = info.check_input(cfg.max_input_bytes) {
                        invalid.push(FieldError::new(field.clone(), msg));
                    }
                }
            }
            ProofOutcome::Unreadable | ProofOutcome::Failed(_) => missing.push(FieldError::new(
                field.clone(),
                "no such object in Supabase Storage",
            )),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::InputAssetNotFound(missing));
    }
    if !invalid.is_empty() {
        return Err(ApiError::Validation(invalid));
    }
    Ok(())
}

/// `refine-model`: the draft must be the Tripo id of one of the caller's own `models` rows,
/// read with the caller's own token (row-level security agrees); otherwise 422 and nothing
/// reaches Tripo. Another user's draft and an unknown id get the same answer.
async fn check_draft(cfg: &Config, v: &ValidRequest, caller: &Caller) -> Result<(), ApiError> {
    let StepRequest::Refine(r) = &v.request else {
        return Ok(());
    };
    let query =
        rows_query::find_owned_model(&cfg.models_table, &r.tripo_draft_task_id, caller.user);
    let body = match &caller.token {
        Some(token) => supabase::rest::send_as_caller(cfg, &query, token).await?,
        None => supabase::rest::send(cfg, &query).await?,
    };
    if rows_query::has_rows(&body) {
        Ok(())
    } else {
        Err(ApiError::Validation(vec![FieldError::new(
            "tripo_draft_task_id",
            "no model of yours has this Tripo task id",
        )]))
    }
}

pub async fn handle(name: &str, mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let endpoint = Endpoint::from_name(name).ok_or(ApiError::NotFound)?;
    let cfg = config(env)?;
    let body = read_body(&mut req, &cfg).await?;
    let valid = request::parse(endpoint, &body).map_err(|e| match e {
        RequestError::Malformed(m) => ApiError::MalformedJson(m),
        RequestError::Invalid(errs) => ApiError::Validation(errs),
    })?;
    let caller = auth::authenticate(req.headers(), &cfg).await?;
    if let Some(url) = valid.request.webhook_url() {
        crate::core::webhook::check_allowed(url, &cfg.webhook_allowed_hosts).map_err(|e| {
            ApiError::Validation(vec![FieldError::new("webhook_url", e.to_string())])
        })?;
    }
    let origin = Origin::parse(&cfg.supabase_url)
        .map_err(|_| ApiError::Misconfigured(vec!["SUPABASE_URL".into()]))?;
    check_inputs(&cfg, env, &origin, &valid, &caller).await?;
    check_draft(&cfg, &valid, &caller).await?;
    submit(&cfg, env, valid, caller.user).await
}

/// Runs the submit (`flow::submit`) and answers: 202 for an accepted step, 200 with the step's
/// status for a repeat of the same request.
async fn submit(
    cfg: &Config,
    env: &Env,
    valid: ValidRequest,
    user: UserId,
) -> Result<Response, ApiError> {
    let task_id = valid.task_id.clone();
    let rt = Runtime::new(env, Some(cfg), Tasks::Stub);
    let (code, step, status) = match flow::submit::submit(&rt, cfg, valid, user).await? {
        Submitted::Accepted { step, .. } => (202, step, Status::Pending),
        Submitted::Existing { step, status } => (200, step, status),
    };
    let body = submit_response(&task_id, step, status);
    json(
        code,
        serde_json::to_string(&body).map_err(|_| ApiError::Internal)?,
    )
    .map_err(internal)
}
