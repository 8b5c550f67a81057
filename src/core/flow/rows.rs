//! Keeps a step's rows in line with the task's Durable Object (the DO is written first; rows
//! follow). Every write is guarded (`status` and `metadata.attempt` filters), so syncing twice, or
//! late, changes nothing: a failed row write is simply retried by syncing again. Once the rows of
//! a final step are written, `RowsSynced` settles the DO's rows check (`core::task::RowsCheck`);
//! until then the alarm writes them again.

use serde_json::json;

use super::ports::Ports;
use crate::config::Config;
use crate::error::DepError;
use crate::ids::{TaskId, UserId};
use crate::log::Level;
use crate::rest::{
    mark_complete, mark_failed, mark_processing, with_ai_service_task_id, RestRequest, RowError,
};
use crate::rows::{self, metadata};
use crate::step::Status;
use crate::task::{Command, StepState};
use crate::task_wire::DoError;

/// The row writes that bring the rows to the step's state. The final writes of a model row carry
/// its Tripo id as well (its `processing` write is best effort).
pub fn writes(cfg: &Config, step: &StepState) -> Vec<RestRequest> {
    let out = state_writes(cfg, step);
    match (step.status.is_terminal(), step.provider_task_id.as_deref()) {
        (true, Some(id)) => out
            .into_iter()
            .map(|r| with_ai_service_task_id(r, id))
            .collect(),
        _ => out,
    }
}

fn state_writes(cfg: &Config, step: &StepState) -> Vec<RestRequest> {
    let t = cfg.tables();
    let table = t.of(step.step()).to_owned();
    let req = &step.request;
    match step.status {
        Status::Pending => Vec::new(),
        Status::Processing => mark_processing(
            &table,
            &step.row_ids,
            step.attempt,
            step.provider_task_id.as_deref(),
        )
        .into_iter()
        .collect(),
        Status::Complete => (0u32..)
            .zip(&step.row_ids)
            .map(|(i, id)| {
                let meta = metadata(req, step.attempt, i);
                match step.asset_urls.get(i as usize) {
                    Some(url) => mark_complete(&table, *id, url, &meta),
                    None => mark_failed(
                        &table,
                        *id,
                        &meta,
                        RowError {
                            code: "missing_output".into(),
                            message: "the provider returned fewer outputs than requested".into(),
                        },
                    ),
                }
            })
            .collect(),
        Status::Failed => {
            let (code, message) = step
                .error
                .as_ref()
                .map_or(("failed".to_string(), "failed".to_string()), |e| {
                    (e.code.clone(), e.message.clone())
                });
            (0u32..)
                .zip(&step.row_ids)
                .map(|(i, id)| {
                    mark_failed(
                        &table,
                        *id,
                        &metadata(req, step.attempt, i),
                        RowError {
                            code: code.clone(),
                            message: message.clone(),
                        },
                    )
                })
                .collect()
        }
    }
}

/// Writes the rows of `step` as the DO has it; for a final step, then confirms it to the DO
/// (a lost confirmation only costs one more guarded write by the alarm). A final step whose rows
/// are confirmed already (the object wrote them: `TaskStore::command_syncing_rows`) needs
/// nothing.
pub async fn sync<W: Ports>(
    w: &W,
    cfg: &Config,
    task: &TaskId,
    step: &StepState,
) -> Result<(), DepError> {
    if step.status.is_terminal() && step.rows.is_settled() {
        return Ok(());
    }
    w.rest_all(&writes(cfg, step)).await?;
    if step.status.is_terminal() && !step.rows.is_settled() {
        let cmd = Command::RowsSynced {
            step: step.step(),
            attempt: step.attempt,
        };
        if let Err(DoError::Unavailable(e)) = w.command(task, cmd, w.now_ms()).await {
            w.event(
                Level::Warn,
                "rows.confirm_failed",
                Some(task),
                Some(step.step()),
                json!({ "error": e.to_string() }),
            );
        }
    }
    Ok(())
}

/// The rows a run job makes sure of before its first write: when the alarm's sweep sent its
/// message (`job.requeued_at_ms`), the submit may have died between the DO and the rows, so the
/// `pending` rows are inserted (a no-op for rows that exist) and, for a retry, reset (guarded:
/// only `failed` rows of the earlier attempt match). Otherwise the submit wrote them: nothing.
pub fn ensure(cfg: &Config, task: &TaskId, owner: UserId, step: &StepState) -> Vec<RestRequest> {
    if step.job.requeued_at_ms.is_none() {
        return Vec::new();
    }
    let t = cfg.tables();
    let mut out = vec![rows::insert(&t, task, owner, &step.request, step.attempt)];
    if step.attempt > 1 {
        out.extend(rows::reset(
            &t,
            task,
            owner,
            &step.request,
            &step.row_ids,
            step.attempt,
        ));
    }
    out
}

/// A run job's first row writes: [`ensure`] (which must succeed: without rows, no later write
/// matches), then `processing` ([`mark_running`]) — unless the provider task is created at once
/// (`StepRequest::creates_at_claim`): then the row's `processing` write is the one that carries
/// the Tripo id a moment later (one PostgREST write less per job; SPEC §6 "Run" in
/// docs/architecture.md).
pub async fn start<W: Ports>(
    w: &W,
    cfg: &Config,
    task: &TaskId,
    owner: UserId,
    step: &StepState,
) -> Result<(), DepError> {
    w.rest_all(&ensure(cfg, task, owner, step)).await?;
    if !step.request.creates_at_claim() {
        mark_running(w, cfg, task, step).await;
    }
    Ok(())
}

/// Writes the rows of a running step (`processing`, with the Tripo id once known), best effort: a
/// failure is logged and the job goes on — the final write (guarded to match `pending` and
/// `processing` rows) supersedes it, and a flaky database must not cost a paid step its retries.
pub async fn mark_running<W: Ports>(w: &W, cfg: &Config, task: &TaskId, step: &StepState) {
    if let Err(e) = w.rest_all(&writes(cfg, step)).await {
        w.event(
            Level::Warn,
            "rows.processing_failed",
            Some(task),
            Some(step.step()),
            json!({ "error": e.to_string() }),
        );
    }
}
