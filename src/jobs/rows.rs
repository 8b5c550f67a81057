//! Keeps a step's rows in line with the task's Durable Object (the DO is written first; rows
//! follow). Every write is guarded (`status` and `metadata.attempt` filters), so syncing twice, or
//! late, changes nothing: a failed row write is simply retried by syncing again.

use crate::config::Config;
use crate::core::ids::TaskId;
use crate::core::rest::{mark_complete, mark_failed, mark_processing, RestRequest, RowError};
use crate::core::rows::metadata;
use crate::core::step::Status;
use crate::core::storage_path::Origin;
use crate::core::task::StepState;
use crate::error::DepError;
use crate::supabase;

/// The row writes that bring the rows to the step's state.
pub fn writes(cfg: &Config, step: &StepState) -> Vec<RestRequest> {
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
        Status::Complete => step
            .row_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let meta = metadata(req, step.attempt, i as u32);
                match step.asset_urls.get(i) {
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
            step.row_ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    mark_failed(
                        &table,
                        *id,
                        &metadata(req, step.attempt, i as u32),
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

/// Writes the rows of `step` as the DO has it.
pub async fn sync(
    cfg: &Config,
    _origin: &Origin,
    _task: &TaskId,
    step: &StepState,
) -> Result<(), DepError> {
    supabase::rest::send_all(cfg, &writes(cfg, step)).await
}
