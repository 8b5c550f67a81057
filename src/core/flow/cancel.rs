//! `POST /tasks/{task_id}/cancel` (SPEC §11 "Cancel"): the owner's unfinished steps (all, or one)
//! become `failed` with code `cancelled` — in the Durable Object first (`Command::Cancel`: polling
//! stops, since a final step is never polled, and every later job, alarm or finalize is skipped by
//! the state machine), then the rows, the provider slot given back, and the webhook sent. The
//! provider task itself may still run: neither OpenAI nor Tripo can cancel one.

use serde_json::json;

use super::ports::Ports;
use super::{gate, rows, webhook};
use crate::config::Config;
use crate::error::DepError;
use crate::ids::{TaskId, UserId};
use crate::log::Level;
use crate::step::Step;
use crate::task::{Command, Outcome, TaskState};
use crate::task_wire::DoError;

/// Cancels and returns the state after it (`Err(DoError::Refused(_))`: unknown task, another
/// owner, or no such step — a 404 for the client). Repeating it changes nothing. A failed row write is
/// left to the DO's rows check (the alarm writes them), so it is not an error here.
pub async fn cancel<W: Ports>(
    w: &W,
    cfg: &Config,
    task: &TaskId,
    owner: UserId,
    step: Option<Step>,
) -> Result<TaskState, DoError> {
    let cmd = Command::Cancel { owner, step };
    let reply = w.command(task, cmd, w.now_ms()).await?;
    let Outcome::Cancelled { steps } = &reply.outcome else {
        return Ok(reply.state);
    };
    for step in steps {
        let Some(s) = reply.state.steps.get(step) else {
            continue;
        };
        w.event(
            Level::Info,
            "task.cancelled",
            Some(task),
            Some(*step),
            json!({ "attempt": s.attempt, "provider_task_id": s.provider_task_id }),
        );
        gate::release_if_done(w, cfg, task, s).await;
        if let Err(e) = rows::sync(w, cfg, task, s).await {
            w.event(
                Level::Warn,
                "rows.sync_failed",
                Some(task),
                Some(*step),
                json!({ "error": e.to_string(), "next_check_at_ms": s.rows.check_at_ms }),
            );
        }
        webhook::kick(w, task, s).await;
    }
    Ok(reply.state)
}

/// Whether the job's step is still this attempt and unfinished (a cancel makes it final): read
/// before every output is written, so a cancelled job stores nothing more. `Err` when the DO
/// cannot be read.
pub async fn still_running<W: Ports>(
    w: &W,
    task: &TaskId,
    step: Step,
    attempt: u32,
) -> Result<bool, DepError> {
    Ok(w.task_state(task)
        .await?
        .and_then(|t| t.steps.get(&step).cloned())
        .is_some_and(|s| s.attempt == attempt && !s.status.is_terminal()))
}
