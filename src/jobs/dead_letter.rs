//! The dead-letter queue reconciles: a message that exhausted its deliveries marks its unfinished
//! step `failed` (with a reason), so no step stays `processing` forever; for a step that is
//! already final it writes the rows again from the Durable Object, so a database outage that
//! outlasted the job's redeliveries does not leave rows disagreeing with the status endpoint.

use serde_json::json;
use worker::Env;

use super::rows;
use crate::config::Config;
use crate::core::jobs::{dead_letter_action, DeadLetterAction, JobMessage, StepSnapshot};
use crate::core::storage_path::Origin;
use crate::core::task::{Command, StepError};
use crate::error::{DepError, Dependency};
use crate::log::{self, Level};
use crate::task_client;

pub async fn handle(env: &Env, cfg: &Config, msg: &JobMessage) -> Result<(), DepError> {
    let state = task_client::state(env, &msg.task_id).await?;
    let snapshot = state
        .as_ref()
        .and_then(|s| s.steps.get(&msg.step))
        .map(|s| StepSnapshot {
            attempt: s.attempt,
            status: s.status,
        });
    match dead_letter_action(Some(msg), snapshot) {
        DeadLetterAction::Ignore { reason } => {
            log::emit(
                Level::Info,
                "dead_letter.ignored",
                Some(msg.task_id.as_str()),
                Some(msg.step),
                json!({ "reason": reason }),
            );
            Ok(())
        }
        DeadLetterAction::ResyncRows => {
            let Some(step) = state.as_ref().and_then(|s| s.steps.get(&msg.step)) else {
                return Ok(());
            };
            let origin = Origin::parse(&cfg.supabase_url)
                .map_err(|_| DepError::new(Dependency::Storage, None, "bad SUPABASE_URL"))?;
            log::emit(
                Level::Warn,
                "dead_letter.resynced",
                Some(msg.task_id.as_str()),
                Some(msg.step),
                json!({ "status": step.status.as_str(), "attempt": step.attempt }),
            );
            // A failure here redelivers the dead letter (with its delay), up to the dead-letter
            // queue's own max_retries.
            rows::sync(cfg, &origin, &msg.task_id, step).await
        }
        DeadLetterAction::MarkFailed { code, message } => {
            log::emit(
                Level::Error,
                "dead_letter.failed",
                Some(msg.task_id.as_str()),
                Some(msg.step),
                json!({ "code": code.as_str(), "message": message }),
            );
            let cmd = Command::Fail {
                step: msg.step,
                attempt: msg.attempt,
                error: StepError::new(code.as_str(), message),
            };
            if let Ok(reply) = task_client::command(env, &msg.task_id, cmd).await? {
                if let Some(step) = reply.state.steps.get(&msg.step) {
                    let origin = Origin::parse(&cfg.supabase_url).map_err(|_| {
                        DepError::new(Dependency::Storage, None, "bad SUPABASE_URL")
                    })?;
                    rows::sync(cfg, &origin, &msg.task_id, step).await?;
                }
            }
            Ok(())
        }
    }
}
