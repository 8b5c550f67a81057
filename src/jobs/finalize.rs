//! The finalize job (SPEC §6 "Finalize"): the finished model streamed from Tripo into Storage.
//!
//! The Tripo task is queried again for fresh output URLs (they expire after about 5 minutes),
//! the model is picked (`pbr_model`, else `base_model`, else `model`), and its download is handed
//! as a JS `ReadableStream` straight to the Storage upload of `models/{task_id}/model.glb`
//! (`refined_model.glb` for a refine): the bytes never enter WebAssembly memory, whatever the
//! size. Then the DO step and the row become `complete` with the non-expiring URL. A refused
//! model URL (expired) is a transient failure: the retry queries the task again.

use serde_json::json;
use worker::{Method, ResponseBody};

use super::{failure_of, rows, Job};
use crate::core::retry::{parse_retry_after, Dependency, Failure, FailureClass};
use crate::core::storage_path::{asset_url, output_content_type, output_path};
use crate::core::task::{Command, Outcome};
use crate::core::tripo::{pick_model_url, TaskStatus};
use crate::log::Level;
use crate::net::{self, Body, NetError};
use crate::providers::tripo::{self, CallCtx};
use crate::supabase::storage;
use crate::task_client;

/// Time allowed for the model download to start answering (the copy itself is bounded by the
/// Storage upload's timeout).
const DOWNLOAD_HEAD_TIMEOUT_MS: u64 = 60_000;

/// The host of a URL, for logs (signed URLs carry credentials in their query).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

pub async fn run(job: &Job<'_>) -> Result<(), Failure> {
    let cfg = job.cfg;
    let step = job.msg.step;
    let Some(tripo_id) = job.step.provider_task_id.clone() else {
        return Err(Failure::new(
            Dependency::Tripo,
            FailureClass::Rejected,
            "no Tripo task to finalize",
        ));
    };
    // The row carries the Tripo id even if the run job's row write was lost.
    rows::sync(cfg, &job.origin, &job.msg.task_id, &job.step)
        .await
        .map_err(|e| failure_of(&e))?;

    let cx = CallCtx {
        task_id: &job.msg.task_id,
        step,
    };
    let detail = tripo::task(cx, cfg, &tripo_id).await?;
    if detail.status != TaskStatus::Success {
        return Err(Failure::bad_response(
            Dependency::Tripo,
            &format!(
                "the task is reported as `{}`, no longer `success`",
                detail.status.as_str()
            ),
        ));
    }
    let Some(url) = pick_model_url(&detail.output).map(str::to_owned) else {
        return Err(Failure::new(
            Dependency::Tripo,
            FailureClass::TaskFailed,
            "the task succeeded but returned no model URL",
        ));
    };

    let started = task_client::now_ms();
    let resp = net::send_streaming(
        Method::Get,
        &url,
        &[],
        Body::Empty,
        DOWNLOAD_HEAD_TIMEOUT_MS,
    )
    .await
    .map_err(|e| match e {
        NetError::Timeout(ms) => {
            Failure::network(Dependency::TripoDownload, &format!("no answer in {ms} ms"))
        }
        other => Failure::network(Dependency::TripoDownload, &other.to_string()),
    })?;
    let status = resp.status_code();
    let header = |name: &str| resp.headers().get(name).ok().flatten();
    if !(200..300).contains(&status) {
        let hint = header("retry-after").and_then(|v| parse_retry_after(&v, started));
        job.log(
            Level::Warn,
            "finalize.download_refused",
            json!({ "status": status, "host": host_of(&url) }),
        );
        return Err(Failure::http(Dependency::TripoDownload, status, "", hint));
    }
    let length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let (_, body) = resp.into_parts();
    let ResponseBody::Stream(stream) = body else {
        return Err(Failure::bad_response(
            Dependency::TripoDownload,
            "the model download has no body",
        ));
    };
    let path = output_path(&job.msg.task_id, step, 0);
    storage::upload_stream(
        cfg,
        &job.origin,
        &path,
        output_content_type(step),
        length,
        stream,
    )
    .await
    .map_err(|e| failure_of(&e))?;
    job.log(
        Level::Info,
        "finalize.copied",
        json!({ "path": path, "bytes": length, "ms": task_client::now_ms().saturating_sub(started), "host": host_of(&url) }),
    );

    let url = asset_url(&job.origin, &cfg.bucket, &path, cfg.bucket_public);
    let cmd = Command::Complete {
        step,
        attempt: job.msg.attempt,
        asset_urls: vec![url],
    };
    let reply = task_client::command(job.env, &job.msg.task_id, cmd)
        .await
        .map_err(|e| Failure::network(Dependency::Database, &e.to_string()))?
        .map_err(|r| Failure::new(Dependency::Database, FailureClass::Rejected, &r.to_string()))?;
    let Some(after) = reply.state.steps.get(&step) else {
        return Ok(());
    };
    if matches!(reply.outcome, Outcome::Completed) || after.status.is_terminal() {
        rows::sync(cfg, &job.origin, &job.msg.task_id, after)
            .await
            .map_err(|e| failure_of(&e))?;
    }
    job.log(
        Level::Info,
        "finalize.complete",
        json!({ "outcome": format!("{:?}", reply.outcome), "tripo_task_id": tripo_id }),
    );
    Ok(())
}
