//! `POST /generate/{endpoint}`: the submit path of SPEC §6 — validate → authenticate → the flood
//! guard (Rate Limiting binding) → prove the caller may read every input (SPEC §4.1) and owns a
//! refine's draft → reserve a slot in the user's limits (SPEC §11) → create or look up the step in
//! the task's Durable Object → insert the `pending` rows → enqueue the job → 202. A repeat of the
//! same request answers 200 with the step's state, starts nothing and does not count; a
//! dependency failure before the enqueue undoes the step (502/503) and gives the slot back, so
//! the same request can simply be sent again. A limit refuses with 429 before anything exists.

use serde_json::json;
use worker::{Env, Request};

use crate::auth;
use crate::core::config::Config;
use crate::core::error::{ApiError, FieldError};
use crate::core::flow::{self, submit::Submitted};
use crate::core::ids::{TaskId, UserId};
use crate::core::jwt::Caller;
use crate::core::limits::{self, Refused, Reservation};
use crate::core::request::{self, Endpoint, RequestError, StepRequest, ValidRequest};
use crate::core::rest as rows_query;
use crate::core::status::submit_response;
use crate::core::step::{Status, Step};
use crate::core::storage_path::{InputObject, ReadRights};
use crate::core::supabase::proofs_verdict;
use crate::log::{self, Level};
use crate::net::{self, RequestBody};
use crate::reply::Reply;
use crate::runtime::{Runtime, Tasks};
use crate::settings;
use crate::supabase;
use crate::supabase::storage::Rights;
use crate::task_client;
use crate::user_limits::{self, ReserveReply, ReserveRequest};

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
    let declared = net::content_length(req.headers());
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
    v: &ValidRequest,
    caller: &Caller,
) -> Result<(), ApiError> {
    let resolved =
        request::resolve_urls(&v.request, &cfg.supabase_origin).map_err(ApiError::Validation)?;
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
    let mut proofs = Vec::with_capacity(objects.len());
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
        let outcome = supabase::storage::prove_input(cfg, &read, rights).await?;
        proofs.push((field.clone(), outcome));
    }
    proofs_verdict(&proofs, cfg.max_input_bytes)
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

pub async fn handle(endpoint: Endpoint, mut req: Request, env: &Env) -> Result<Reply, ApiError> {
    let cfg = settings::config(env)?;
    let body = read_body(&mut req, cfg).await?;
    let valid = request::parse(endpoint, &body).map_err(|e| match e {
        RequestError::Malformed(m) => ApiError::MalformedJson(m),
        RequestError::Invalid(errs) => ApiError::Validation(errs),
    })?;
    let caller = auth::authenticate(req.headers(), cfg).await?;
    if let Some(url) = valid.request.webhook_url() {
        crate::core::webhook::check_allowed(url, &cfg.webhook_allowed_hosts).map_err(|e| {
            ApiError::Validation(vec![FieldError::new("webhook_url", e.to_string())])
        })?;
    }
    let tier = cfg.limits.tier(caller.is_anonymous);
    // The flood guard, before any Storage or Durable Object work: every authenticated submit
    // request counts, repeats and refused ones included (its limit is in wrangler.toml).
    if cfg.limits.use_binding && tier.submits_per_minute > 0 {
        if let Some(refused) =
            user_limits::flood_guard(env, &caller.user, caller.is_anonymous).await
        {
            return Err(limited(
                &valid.task_id,
                valid.request.step(),
                &caller,
                refused,
            ));
        }
    }
    check_inputs(cfg, env, &valid, &caller).await?;
    check_draft(cfg, &valid, &caller).await?;
    submit(cfg, env, valid, &caller).await
}

/// The 429 of a limit, logged as `limits.refused` (the user id, never a token).
fn limited(task_id: &TaskId, step: Step, caller: &Caller, r: Refused) -> ApiError {
    log::emit(
        Level::Info,
        "limits.refused",
        Some(task_id.as_str()),
        Some(step),
        json!({
            "user_id": caller.user.to_string(), "anonymous": caller.is_anonymous,
            "limit": r.limit.as_str(), "max": r.max, "retry_after_s": r.retry_after_s,
        }),
    );
    ApiError::RateLimited(r)
}

/// How the submit stands with the user's limits.
enum Slot {
    /// The limits are off for this caller.
    Unlimited,
    /// A slot was reserved: given back if the submit creates nothing.
    Reserved(Reservation),
    /// A limit refused, but the task already has this step (not failed): the task answers the
    /// repeat (200, or 409 for another body). Should it create anything after all, it is undone.
    RepeatOnly(Refused),
}

/// Reserves a slot in the user's limits before anything is created.
async fn reserve_slot(
    cfg: &Config,
    env: &Env,
    task_id: &TaskId,
    step: Step,
    caller: &Caller,
) -> Result<Slot, ApiError> {
    let tier = cfg.limits.tier(caller.is_anonymous);
    if tier.is_off() {
        return Ok(Slot::Unlimited);
    }
    let req = ReserveRequest {
        user: caller.user,
        tier,
        task_id: task_id.as_str().to_owned(),
        step,
        budget_ms: cfg.tripo_deadline_s.saturating_mul(1000),
        now_ms: net::now_ms(),
    };
    match user_limits::reserve(env, &req).await? {
        ReserveReply::Accepted { reservation } => Ok(Slot::Reserved(reservation)),
        ReserveReply::Refused { refused } => {
            let existing = task_client::state(env, task_id).await?;
            let repeat = existing.as_ref().is_some_and(|t| {
                limits::is_repeat(
                    t.owner == caller.user,
                    t.steps.get(&step).map(|s| s.status == Status::Failed),
                )
            });
            if repeat {
                Ok(Slot::RepeatOnly(refused))
            } else {
                Err(limited(task_id, step, caller, refused))
            }
        }
    }
}

/// Gives a slot back: the whole reservation when the submit created nothing, only its
/// submits-per-minute mark when it resumed a step already counted.
async fn give_back(env: &Env, user: &UserId, slot: Slot, keep_entry: bool) {
    if let Slot::Reserved(r) = slot {
        user_limits::release(env, user, r, keep_entry).await;
    }
}

/// Runs the submit (`flow::submit`) and answers: 202 for an accepted step, 200 with the step's
/// status for a repeat of the same request.
async fn submit(
    cfg: &Config,
    env: &Env,
    valid: ValidRequest,
    caller: &Caller,
) -> Result<Reply, ApiError> {
    let user = caller.user;
    let task_id = valid.task_id.clone();
    let step = valid.request.step();
    let slot = reserve_slot(cfg, env, &task_id, step, caller).await?;
    let repeat_only = matches!(slot, Slot::RepeatOnly(_));
    let rt = Runtime::new(env, Some(cfg), Tasks::Stub);
    let (code, status) = match flow::submit::submit(&rt, cfg, valid, user, repeat_only).await {
        Err(e) => {
            give_back(env, &user, slot, false).await;
            return Err(e);
        }
        Ok(Submitted::Existing { status, .. }) => {
            // An idempotent repeat does not count.
            give_back(env, &user, slot, false).await;
            (200, status)
        }
        Ok(Submitted::NotARepeat { .. }) => {
            // The step failed or vanished between the repeat check and the command: a new submit
            // after all, over the limit; `flow::submit` undid it before anything else existed.
            return Err(match slot {
                Slot::RepeatOnly(refused) => limited(&task_id, step, caller, refused),
                _ => ApiError::Internal,
            });
        }
        Ok(Submitted::Accepted { resumed, .. }) => {
            if resumed {
                // Resuming a step whose first submit died: its step is counted already, and a
                // repeat is not a new submit.
                give_back(env, &user, slot, true).await;
            }
            (202, Status::Pending)
        }
    };
    Reply::json(code, &submit_response(&task_id, step, status))
}
