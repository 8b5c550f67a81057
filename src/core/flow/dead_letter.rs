//! The dead-letter queue reconciles: a message that exhausted its deliveries marks its unfinished
//! step `failed` (with a reason), so no step stays `processing` forever; for a step that is
//! already final it writes the rows again from the Durable Object, so a database outage that
//! outlasted the job's redeliveries does not leave rows disagreeing with the status endpoint.

use serde_json::json;

use super::ports::Ports;
use super::rows;
use crate::config::Config;
use crate::error::DepError;
use crate::jobs::{dead_letter_action, DeadLetterAction, JobMessage, StepSnapshot};
use crate::log::Level;
use crate::task::{Command, StepError};
use crate::task_wire::DoError;

pub async fn handle<W: Ports>(w: &W, cfg: &Config, msg: &JobMessage) -> Result<(), DepError> {
    let task = &msg.task_id;
    let state = w.task_state(task).await?;
    let current = state.as_ref().and_then(|s| s.steps.get(&msg.step));
    let snapshot = current.map(|s| StepSnapshot {
        attempt: s.attempt,
        status: s.status,
    });
    match dead_letter_action(Some(msg), snapshot) {
        DeadLetterAction::Ignore { reason } => {
            w.event(
                Level::Info,
                "dead_letter.ignored",
                Some(task),
                Some(msg.step),
                json!({ "reason": reason }),
            );
            Ok(())
        }
        DeadLetterAction::ResyncRows => {
            let Some(step) = current else {
                return Ok(());
            };
            w.event(
                Level::Warn,
                "dead_letter.resynced",
                Some(task),
                Some(msg.step),
                json!({ "status": step.status.as_str(), "attempt": step.attempt }),
            );
            // A failure here redelivers the dead letter (with its delay), up to the dead-letter
            // queue's own max_retries; the DO's rows check goes on regardless.
            rows::sync(w, cfg, task, step).await
        }
        DeadLetterAction::MarkFailed { code, message } => {
            w.event(
                Level::Error,
                "dead_letter.failed",
                Some(task),
                Some(msg.step),
                json!({ "code": code.as_str(), "message": message }),
            );
            let cmd = Command::Fail {
                step: msg.step,
                attempt: msg.attempt,
                error: StepError::new(code.as_str(), message),
            };
            let reply = match w.command(task, cmd, w.now_ms()).await {
                Ok(reply) => reply,
                Err(DoError::Refused(_)) => return Ok(()),
                Err(DoError::Unavailable(e)) => return Err(e),
            };
            if let Some(step) = reply.state.steps.get(&msg.step) {
                super::gate::release_if_done(w, cfg, task, step).await;
                rows::sync(w, cfg, task, step).await?;
                super::webhook::kick(w, task, step).await;
            }
            Ok(())
        }
    }
}
