//! The finalize job (SPEC §6 "Finalize"): the finished model copied from Tripo into Storage.
//!
//! The Tripo task is queried again for fresh output URLs (they expire after about 5 minutes),
//! unless the message carries the URL a webhook (or a safety poll) gave moments ago (first try
//! only, webhooks on);
//! the model is picked (`pbr_model`, else `base_model`, else `model`), and streamed into
//! `models/{task_id}/model.glb` (`refined_model.glb` for a refine) by the runtime
//! ([`ObjectStore::copy_model`](super::ports::ObjectStore::copy_model)): the bytes never enter
//! WebAssembly memory, whatever the size. Then the DO step and the row become `complete` with the
//! non-expiring URL. A refused model URL (expired) is a transient failure: the retry queries the
//! task again. The copy overwrites, so a finalize run twice writes the same object.

use serde_json::json;

use super::ports::Ports;
use super::{rows, Job};
use crate::error::Dependency;
use crate::log::Level;
use crate::retry::{Failure, FailureClass};
use crate::storage_path::{asset_url, output_content_type, output_path};
use crate::task::{Command, Outcome};
use crate::tripo::{pick_model_url, TaskStatus};

/// The host of a URL, for logs (signed URLs carry credentials in their query).
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

/// Asks Tripo for the task again: its model URL, fresh.
async fn fresh_model_url<W: Ports>(job: &Job<'_, W>, tripo_id: &str) -> Result<String, Failure> {
    let detail = job.w.tripo_task(job.task(), job.msg.step, tripo_id).await?;
    if detail.status != TaskStatus::Success {
        return Err(Failure::bad_response(
            Dependency::Tripo,
            &format!(
                "the task is reported as `{}`, no longer `success`",
                detail.status.as_str()
            ),
        ));
    }
    pick_model_url(&detail.output)
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::new(
                Dependency::Tripo,
                FailureClass::TaskFailed,
                "the task succeeded but returned no model URL",
            )
        })
}

pub async fn run<W: Ports>(job: &Job<'_, W>) -> Result<(), Failure> {
    let (w, cfg) = (job.w, job.cfg());
    let step = job.msg.step;
    let Some(tripo_id) = job.step.provider_task_id.clone() else {
        return Err(Failure::new(
            Dependency::Tripo,
            FailureClass::Rejected,
            "no Tripo task to finalize",
        ));
    };
    // The row carries the Tripo id even if the run job's row write was lost (best effort: the
    // final write carries it too).
    rows::mark_running(w, cfg, job.task(), &job.step).await;

    let url = match job.msg.model_url.clone() {
        // Given with the success moments ago (webhooks on); a retry asks Tripo again.
        Some(url) => url,
        None => fresh_model_url(job, &tripo_id).await?,
    };

    // A cancelled step gets no model (SPEC §11 "Cancel"): checked right before the copy.
    if !super::concepts::still_running(job).await? {
        return super::concepts::cancelled(job, &[]).await;
    }
    let started = w.now_ms();
    let path = output_path(job.task(), step, 0);
    // One connection streamed into another: a bulky part (`Bulk`), one at a time per batch.
    let length = w
        .bulk(w.copy_model(job.task(), step, &url, &path, output_content_type(step)))
        .await?;
    job.log(
        Level::Info,
        "finalize.copied",
        json!({ "path": path, "bytes": length, "ms": w.now_ms().saturating_sub(started), "host": host_of(&url) }),
    );

    let url = asset_url(
        &job.cfg().supabase_origin,
        &cfg.bucket,
        &path,
        cfg.bucket_public,
    );
    let cmd = Command::Complete {
        step,
        attempt: job.msg.attempt,
        asset_urls: vec![url],
    };
    let reply = job.command_syncing_rows(cmd).await?;
    let Some(after) = reply.state.steps.get(&step) else {
        return Ok(());
    };
    if !matches!(reply.outcome, Outcome::Completed)
        && super::concepts::cancelled_in(&reply.state, job)
    {
        // Cancelled during the copy: the model landed; remove it again.
        return super::concepts::cancelled(job, &[path]).await;
    }
    if matches!(reply.outcome, Outcome::Completed) || after.status.is_terminal() {
        rows::sync(w, cfg, job.task(), after).await?;
    }
    if matches!(reply.outcome, Outcome::Completed) {
        super::webhook::kick(w, job.task(), after).await;
    }
    job.log(
        Level::Info,
        "finalize.complete",
        json!({ "outcome": format!("{:?}", reply.outcome), "tripo_task_id": tripo_id }),
    );
    Ok(())
}
