//! The concepts job (SPEC §6, flow B): rows `processing` → download the input → OpenAI image
//! edits → each `b64_json` decoded as the reply arrives and uploaded to
//! `concepts/{task_id}/{i}.png`, one image at a time → DO `complete` with every URL → rows
//! `complete`. Uploads overwrite, so a retry after a crash half-way rewrites the same objects
//! and rows, never new ones.

use futures::StreamExt;
use serde_json::json;

use super::ports::Ports;
use super::{rows, Job};
use crate::error::Dependency;
use crate::log::Level;
use crate::openai::{Background as WireBackground, EditRequest, ReplyScanner};
use crate::request::{Background, ConceptsRequest, StepRequest};
use crate::retry::{Failure, FailureClass};
use crate::step::Step;
use crate::storage_path::{asset_url, output_path, parse_input_url};
use crate::task::{Command, Outcome};
use crate::tripo::ImageFormat;

/// In-job tries of one output upload before the whole job is retried (so a Storage hiccup does
/// not cost another paid OpenAI call).
pub const UPLOAD_TRIES: u32 = 4;

fn background(b: Background) -> WireBackground {
    match b {
        Background::Transparent => WireBackground::Transparent,
        Background::Opaque => WireBackground::Opaque,
        Background::Auto => WireBackground::Auto,
    }
}

pub async fn run<W: Ports>(job: &Job<'_, W>) -> Result<(), Failure> {
    let StepRequest::Concepts(req) = &job.step.request else {
        return Err(Failure::new(
            Dependency::OpenAi,
            FailureClass::InvalidInput,
            "not a concepts step",
        ));
    };
    let (w, cfg) = (job.w, job.cfg());
    rows::start(w, cfg, job.task(), job.owner, &job.step).await?;

    // The input, the call and OpenAI's images are one bulky part (`Bulk`): one per batch at once.
    let Images::Stored { urls, paths } = w.bulk(images(job, req)).await? else {
        return Ok(());
    };

    let cmd = Command::Complete {
        step: Step::Concepts,
        attempt: job.msg.attempt,
        asset_urls: urls,
    };
    let reply = job.command_syncing_rows(cmd).await?;
    if let (Outcome::Completed, Some(step)) =
        (&reply.outcome, reply.state.steps.get(&Step::Concepts))
    {
        super::gate::release_if_done(w, job.cfg(), job.task(), step).await;
        rows::sync(w, cfg, job.task(), step).await?;
        job.log(
            Level::Info,
            "concepts.complete",
            json!({ "images": step.asset_urls.len() }),
        );
        super::webhook::kick(w, job.task(), step).await;
    } else if cancelled_in(&reply.state, job) {
        // Cancelled while the last upload was in flight: it landed; remove it again.
        return cancelled(job, &paths).await;
    }
    Ok(())
}

/// What the OpenAI part of a concepts job left: the images stored, or a cancel cleaned up.
enum Images {
    Stored {
        urls: Vec<String>,
        paths: Vec<String>,
    },
    Cancelled,
}

/// Downloads the input, calls OpenAI and stores each image as soon as its base64 has arrived.
async fn images<W: Ports>(job: &Job<'_, W>, req: &ConceptsRequest) -> Result<Images, Failure> {
    let (w, cfg, origin) = (job.w, job.cfg(), &job.cfg().supabase_origin);
    let input = parse_input_url(&req.input_image_asset_url, origin).map_err(|e| {
        Failure::new(
            Dependency::Storage,
            FailureClass::InvalidInput,
            &e.to_string(),
        )
    })?;
    let bytes = w.download_input(&input).await?;
    let format = ImageFormat::sniff(&bytes).ok_or_else(|| {
        Failure::new(
            Dependency::Storage,
            FailureClass::InvalidInput,
            "the input is not a PNG, JPEG or WebP image",
        )
    })?;
    let edit = EditRequest::new(
        &req.prompt,
        req.style.as_deref(),
        req.n,
        req.background.map(background),
        Some(&cfg.openai_image_model),
        Some(&cfg.openai_image_size),
    )
    .map_err(|e| {
        Failure::new(
            Dependency::OpenAi,
            FailureClass::InvalidInput,
            &e.to_string(),
        )
    })?;
    let wasm_before = w.memory_bytes();
    job.log(
        Level::Info,
        "concepts.openai_call",
        json!({
            "n": req.n, "model": cfg.openai_image_model, "size": cfg.openai_image_size,
            "input_bytes": bytes.len(), "wasm_memory_bytes": wasm_before,
        }),
    );
    // The input moves into the request body and is dropped before the reply is read; the reply
    // is read in chunks and each image is uploaded as soon as its base64 has arrived, so at most
    // one image is held (P9 finding 8).
    let mut stream = w.openai_edit(&edit, bytes, format).await?;
    let mut scanner = ReplyScanner::new();
    let mut reply_bytes = 0usize;
    let mut urls = Vec::new();
    let mut paths = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        reply_bytes += chunk.len();
        for png in scanner.feed(&chunk).map_err(|e| e.to_failure())? {
            // A cancelled step stores nothing more (SPEC §11 "Cancel"); what was stored goes.
            if !still_running(job).await? {
                cancelled(job, &paths).await?;
                return Ok(Images::Cancelled);
            }
            // Handed to the runtime (a JS buffer) and dropped here before its upload.
            let blob = w.hold(png);
            let index = u32::try_from(urls.len()).unwrap_or(u32::MAX);
            let path = output_path(job.task(), Step::Concepts, index);
            paths.push(path.clone());
            upload_with_retries(job, &path, &blob).await?;
            urls.push(asset_url(origin, &cfg.bucket, &path, cfg.bucket_public));
        }
    }
    drop(stream);
    scanner.finish().map_err(|e| e.to_failure())?;
    job.log(
        Level::Info,
        "concepts.uploaded",
        json!({
            "images": urls.len(), "reply_bytes": reply_bytes,
            "wasm_memory_before_bytes": wasm_before, "wasm_memory_bytes": w.memory_bytes(),
        }),
    );
    Ok(Images::Stored { urls, paths })
}

/// Whether the job's step is still this attempt and unfinished (a DO that cannot be read is a
/// transient failure: the job is retried, and its claim then finds the step final).
pub(super) async fn still_running<W: Ports>(job: &Job<'_, W>) -> Result<bool, Failure> {
    super::cancel::still_running(job.w, job.task(), job.msg.step, job.msg.attempt)
        .await
        .map_err(|e| Failure::network(Dependency::Database, &e.to_string()))
}

/// Whether `state` shows the job's attempt cancelled.
pub(super) fn cancelled_in<W: Ports>(state: &crate::task::TaskState, job: &Job<'_, W>) -> bool {
    state.steps.get(&job.msg.step).is_some_and(|s| {
        s.attempt == job.msg.attempt
            && s.error
                .as_ref()
                .is_some_and(|e| e.code == crate::task::CANCELLED_CODE)
    })
}

/// The step was cancelled while the job ran: the outputs it wrote are deleted (best effort:
/// an upload in flight at the cancel may have landed) and the job ends without writing more.
pub(super) async fn cancelled<W: Ports>(job: &Job<'_, W>, paths: &[String]) -> Result<(), Failure> {
    let deleted = if paths.is_empty() {
        Ok(())
    } else {
        job.w.delete_outputs(paths).await
    };
    job.log(
        Level::Info,
        "job.cancelled",
        json!({ "deleted": paths.len(), "error": deleted.err().map(|e| e.to_string()) }),
    );
    Ok(())
}

async fn upload_with_retries<W: Ports>(
    job: &Job<'_, W>,
    path: &str,
    blob: &W::Blob,
) -> Result<(), Failure> {
    let mut delay = 500;
    for try_no in 1..=UPLOAD_TRIES {
        match job.w.upload(path, "image/png", blob).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && try_no < UPLOAD_TRIES => {
                job.log(
                    Level::Warn,
                    "concepts.upload_retry",
                    json!({ "path": path, "try": try_no, "error": e.to_string() }),
                );
                job.w.sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::new(
        Dependency::Storage,
        FailureClass::Transient,
        "upload failed",
    ))
}
