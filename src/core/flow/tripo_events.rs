//! A verified Tripo webhook (`POST /providers/tripo/webhook`, SPEC §11 "Tripo v3") fed into the
//! state machine exactly as a poll result would be.
//!
//! The delivery carries only Tripo's task id, so the step is found in two trusted places: the
//! `models` row whose `ai_service_task_id` is that id (PostgREST with the service key, an indexed
//! column) gives our task id; the task's Durable Object then gives the step whose
//! `provider_task_id` is that id. Nothing else in the body is trusted beyond the signature.
//!
//! Outcomes (the handler answers 200 to all of them: a well-formed, signed delivery is never
//! refused, so Tripo does not redeliver it forever):
//! - **Applied**: the step was awaiting Tripo; `alarm::apply` ran (finalize enqueued with the
//!   model URL, or the step failed with Tripo's reason).
//! - **Duplicate**: the step is no longer awaiting Tripo (an earlier delivery, a redelivery under
//!   the same `Tripo-Webhook-Delivery`, or a safety poll got there first): nothing changes. Two
//!   deliveries racing each other read the same poll number; the state machine takes the first
//!   and refuses the second.
//! - **Unknown**: no row carries the id yet (the webhook beat the run job's row write), or the
//!   task has no such step: logged; the safety-net poll moves the step.
//!
//! Errors reaching the rows or the Durable Object are returned (the handler answers 503 so Tripo
//! redelivers; the safety net covers it anyway).

use serde_json::json;

use super::alarm::{self, Source};
use super::ports::Ports;
use crate::config::Config;
use crate::error::DepError;
use crate::ids::TaskId;
use crate::log::Level;
use crate::rest;
use crate::task::{Outcome, Phase};
use crate::tripo::TaskDetail;

/// What a delivery led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// The step moved on (`Outcome::Finalize` or `Outcome::Failed`, or a refused stale command).
    Applied { task_id: TaskId, outcome: String },
    /// The step had already moved on: no effect.
    Duplicate { task_id: TaskId },
    /// No step waits for this Tripo task (yet): no effect; the safety net covers a race.
    Unknown { why: &'static str },
}

impl Handled {
    pub fn label(&self) -> &'static str {
        match self {
            Handled::Applied { .. } => "applied",
            Handled::Duplicate { .. } => "duplicate",
            Handled::Unknown { .. } => "unknown",
        }
    }
}

/// Our task for a Tripo task id, from the `models` rows.
async fn find_task<W: Ports>(
    w: &W,
    cfg: &Config,
    tripo_id: &str,
) -> Result<Option<TaskId>, DepError> {
    let body = w
        .rest(&rest::find_by_provider_task(&cfg.models_table, tripo_id))
        .await?;
    let ids = rest::task_ids(&body);
    match ids.as_slice() {
        [one] => Ok(TaskId::parse(one).ok()),
        _ => Ok(None),
    }
}

/// Applies a verified task event (`detail`: the final task, as a poll would return it).
pub async fn on_task_event<W: Ports>(
    w: &W,
    cfg: &Config,
    detail: &TaskDetail,
    delivery: &str,
) -> Result<Handled, DepError> {
    let Some(task) = find_task(w, cfg, &detail.task_id).await? else {
        return Ok(Handled::Unknown {
            why: "no row carries this Tripo task id (yet)",
        });
    };
    let Some(state) = w.task_state(&task).await? else {
        return Ok(Handled::Unknown {
            why: "the task has no state",
        });
    };
    let found = state
        .steps
        .iter()
        .find(|(_, s)| s.provider_task_id.as_deref() == Some(detail.task_id.as_str()));
    let Some((step, s)) = found else {
        return Ok(Handled::Unknown {
            why: "no step of the task has this Tripo task id",
        });
    };
    if s.phase() != Phase::AwaitingProvider {
        w.event(
            Level::Info,
            "tripo_webhook.duplicate",
            Some(&task),
            Some(*step),
            json!({ "delivery": delivery, "tripo_task_id": detail.task_id, "status": s.status.as_str() }),
        );
        return Ok(Handled::Duplicate { task_id: task });
    }
    let outcome = alarm::apply(
        w,
        Some(cfg),
        &task,
        *step,
        s,
        Some(Ok(detail.clone())),
        Source::Webhook { delivery },
    )
    .await;
    let outcome = match outcome {
        Some(Outcome::Finalize) => "finalize".to_owned(),
        Some(Outcome::Failed) => "failed".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "refused".to_owned(),
    };
    Ok(Handled::Applied {
        task_id: task,
        outcome,
    })
}
