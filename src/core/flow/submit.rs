//! The submit path of SPEC §6 after validation, authentication and the input proofs: create or
//! look up the step in the task's Durable Object → insert the `pending` rows (reset them for a
//! retry) → enqueue the run job. A repeat of the same request changes nothing; a dependency
//! failure before the message is out undoes the step (rows, then the DO) so the same request can
//! simply be sent again — never a half-made task. A submit that dies before it undoes leaves a
//! `pending` step the alarm resumes (`core::task::RESUME_AFTER_MS`).

use serde_json::json;

use super::ports::Ports;
use crate::config::Config;
use crate::error::{ApiError, DepError};
use crate::ids::{TaskId, UserId};
use crate::jobs::JobMessage;
use crate::log::Level;
use crate::request::{StepRequest, ValidRequest};
use crate::rest::RestRequest;
use crate::rows;
use crate::step::{Status, Step};
use crate::task::{Command, Outcome, Refusal, Submission};
use crate::task_wire::DoError;

/// What a submit led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A new step, a resumed one or a retry: its rows are written and its job is enqueued (202).
    /// `resumed`: the same request finished a step whose first submit died (not a new step).
    Accepted {
        step: Step,
        attempt: u32,
        resumed: bool,
    },
    /// The same request again: nothing started (200 with the step's status).
    Existing { step: Step, status: Status },
    /// Only a repeat was allowed (`repeat_only`: the caller is over a limit) but the submit would
    /// have created a step or a new attempt: undone in the DO before anything else existed.
    NotARepeat { step: Step },
}

/// Submits `valid` for `user`. With `repeat_only` (the caller is over a per-user limit), only a
/// repeat of an existing step is answered; anything new is undone ([`Submitted::NotARepeat`]).
pub async fn submit<W: Ports>(
    w: &W,
    cfg: &Config,
    valid: ValidRequest,
    user: UserId,
    repeat_only: bool,
) -> Result<Submitted, ApiError> {
    let ValidRequest {
        task_id,
        request: step_req,
    } = valid;
    let step = step_req.step();
    let cmd = Command::Submit(Submission {
        owner: user,
        task_id: task_id.clone(),
        request: step_req.clone(),
        deadline_ms: cfg.tripo_deadline_s.saturating_mul(1000),
    });
    let reply = match w.command(&task_id, cmd, w.now_ms()).await {
        Ok(r) => r,
        Err(DoError::Refused(refusal)) => return Err(refusal_error(&refusal)),
        Err(DoError::Unavailable(e)) => return Err(e.into()),
    };
    let Some(state) = reply.state.steps.get(&step) else {
        return Err(ApiError::Internal);
    };
    let attempt = state.attempt;
    match reply.outcome {
        Outcome::Existing => {
            return Ok(Submitted::Existing {
                step,
                status: state.status,
            })
        }
        Outcome::Created | Outcome::Retry if repeat_only => {
            abort(w, &task_id, step, attempt).await;
            return Ok(Submitted::NotARepeat { step });
        }
        Outcome::Created | Outcome::Resume | Outcome::Retry => {}
        other => {
            w.event(
                Level::Error,
                "submit.unexpected_outcome",
                Some(&task_id),
                Some(step),
                json!({ "outcome": format!("{other:?}") }),
            );
            return Err(ApiError::Internal);
        }
    }
    let retry = matches!(reply.outcome, Outcome::Retry);
    let row_ids = state.row_ids.clone();
    if let Err(e) = write_rows(w, cfg, &task_id, user, &step_req, &row_ids, attempt, retry).await {
        let undo_rows = rows::undo(
            &cfg.tables(),
            &step_req,
            &row_ids,
            attempt,
            retry,
            &e.to_string(),
        );
        undo(w, &task_id, step, attempt, &e, &undo_rows).await;
        return Err(e.into());
    }
    w.event(
        Level::Info,
        "submit.accepted",
        Some(&task_id),
        Some(step),
        json!({
            "attempt": attempt, "outcome": format!("{:?}", reply.outcome), "rows": row_ids.len(),
        }),
    );
    Ok(Submitted::Accepted {
        step,
        attempt,
        resumed: matches!(reply.outcome, Outcome::Resume),
    })
}

/// Rows (inserted, or reset for a retry), then the job message.
#[allow(clippy::too_many_arguments)]
async fn write_rows<W: Ports>(
    w: &W,
    cfg: &Config,
    task_id: &TaskId,
    user: UserId,
    step_req: &StepRequest,
    row_ids: &[uuid::Uuid],
    attempt: u32,
    retry: bool,
) -> Result<(), DepError> {
    let t = cfg.tables();
    w.rest(&rows::insert(&t, task_id, user, step_req, attempt))
        .await?;
    if retry {
        w.rest_all(&rows::reset(&t, task_id, user, step_req, row_ids, attempt))
            .await?;
    }
    let msg = JobMessage::run(task_id.clone(), step_req.step(), attempt);
    w.enqueue(&msg, 0).await?;
    // The message is out: from here the job owns the step. Its claim records the enqueue in the
    // DO (one DO round trip less per submit than a `MarkEnqueued` here; see RESUME_AFTER_MS).
    Ok(())
}

/// Undoes a submission whose rows or message could not be written: the rows (best effort;
/// guarded writes), then the step in the DO, so the same request can simply be sent again.
async fn undo<W: Ports>(
    w: &W,
    task_id: &TaskId,
    step: Step,
    attempt: u32,
    cause: &DepError,
    undo_rows: &[RestRequest],
) {
    if let Err(e) = w.rest_all(undo_rows).await {
        w.event(
            Level::Warn,
            "submit.undo_rows_failed",
            Some(task_id),
            Some(step),
            json!({ "error": e.to_string() }),
        );
    }
    w.event(
        Level::Warn,
        "submit.aborted",
        Some(task_id),
        Some(step),
        json!({ "attempt": attempt, "cause": cause.to_string() }),
    );
    abort(w, task_id, step, attempt).await;
}

/// Undoes the step's submission in the DO (`AbortSubmit`); a failure is logged (the step is
/// pending and never enqueued: the alarm resumes it, `core::task::RESUME_AFTER_MS`).
async fn abort<W: Ports>(w: &W, task_id: &TaskId, step: Step, attempt: u32) {
    let abort = Command::AbortSubmit { step, attempt };
    if let Err(DoError::Unavailable(e)) = w.command(task_id, abort, w.now_ms()).await {
        w.event(
            Level::Error,
            "submit.abort_failed",
            Some(task_id),
            Some(step),
            json!({ "error": e.to_string() }),
        );
    }
}

fn refusal_error(r: &Refusal) -> ApiError {
    match r {
        Refusal::OtherOwner => ApiError::TaskConflict("this task_id is already used".into()),
        Refusal::DifferentRequest { .. } => ApiError::TaskConflict(r.to_string()),
        _ => ApiError::Internal,
    }
}
