//! The Tripo run job (SPEC §6 "Run"): rows `processing` → inputs downloaded from Storage (service
//! key; signed URLs as given) and uploaded to Tripo one at a time for file tokens (a private input
//! is never exposed by URL) → the task created with only the fields Tripo documents for its type
//! (`core::tripo` builds the payload) → its id stored in the DO (which arms the polling alarm)
//! and on the row (`ai_service_task_id`).
//!
//! Idempotency: the framework grants the claim only while the step has no provider task (phase
//! `Running`) and one claim at a time, so a duplicate delivery never creates a second Tripo task.
//! A creation is recorded in the DO before `POST /task` (`CreateStarting`): when its answer is
//! lost (timeout, 5xx, crash) the retry knows it, logs `provider.create_uncertain`, and creates at
//! most once more; a definite refusal (429, 2000) settles it (in the retry's `ReleaseJob`). A text
//! or refine step's claim records the creation itself (`Outcome::RunCreate`).
//! Tripo 2000 (concurrency) and 429 come back as classified failures that `core::retry` waits out;
//! 2008 (moderation) and 2010 (no credits) fail the step at once.

use serde_json::json;

use super::consume::fail_step;
use super::ports::Ports;
use super::{rows, Job};
use crate::error::Dependency;
use crate::log::Level;
use crate::request::{
    ModelOptions, ModelRequest, ModelSource, Orientation as ReqOrientation, StepRequest,
    TextureQuality as ReqTextureQuality,
};
use crate::retry::{
    next_poll_delay_ms, safety_poll_delay_ms, ErrorCode, Failure, FailureClass, PollPolicy,
};
use crate::storage_path::parse_input_url;
use crate::task::{Command, Outcome, StepState};
use crate::task_wire::DoError;
use crate::tripo::{CreateTask, FileToken, ImageFormat, ModelParams, Orientation, TextureQuality};

/// In-job tries of the DO write that records the Tripo task (losing it would orphan a paid task,
/// and a retried job would create another).
const RECORD_TRIES: u32 = 4;
/// In-job tries of the row write that stores the Tripo id (the finalize job writes it again).
const ROW_TRIES: u32 = 3;

/// `request::ModelOptions` → the options Tripo documents (normalised by `core::tripo`).
pub fn model_params(o: &ModelOptions) -> ModelParams {
    ModelParams {
        model_version: o.model_version.map(|v| v.as_str().to_owned()),
        texture: Some(o.texture),
        pbr: o.pbr,
        texture_quality: o.texture_quality.map(|q| match q {
            ReqTextureQuality::Standard => TextureQuality::Standard,
            ReqTextureQuality::Detailed => TextureQuality::Detailed,
        }),
        face_limit: o.face_limit,
        auto_size: o.auto_size,
    }
}

fn orientation(o: Option<ReqOrientation>) -> Option<Orientation> {
    o.map(|o| match o {
        ReqOrientation::Default => Orientation::Default,
        ReqOrientation::AlignImage => Orientation::AlignImage,
    })
}

fn invalid(dep: Dependency, detail: &str) -> Failure {
    Failure::new(dep, FailureClass::InvalidInput, detail)
}

pub async fn run<W: Ports>(job: &Job<'_, W>) -> Result<(), Failure> {
    if let Some(id) = &job.step.provider_task_id {
        // The claim is not granted once a provider task exists; never create a second one.
        job.log(
            Level::Warn,
            "model.already_created",
            json!({ "tripo_task_id": id }),
        );
        return Ok(());
    }
    rows::start(job.w, job.cfg(), job.task(), job.owner, &job.step).await?;
    let task = match &job.step.request {
        StepRequest::Model(m) => model_task(job, m).await?,
        StepRequest::Refine(r) => CreateTask::RefineModel {
            draft_model_task_id: r.tripo_draft_task_id.clone(),
        },
        StepRequest::Concepts(_) => {
            return Err(Failure::new(
                Dependency::Tripo,
                FailureClass::Rejected,
                "not a Tripo step",
            ))
        }
    };
    if !job.create_started && !may_create(job).await? {
        return Ok(());
    }
    let tripo_id = match job.w.tripo_create(job.task(), job.msg.step, &task).await {
        Ok(id) => id,
        Err(f) => {
            if f.class != FailureClass::Transient {
                // A definite answer: nothing was created. A retry's `ReleaseJob` says so; a
                // final failure ends the step. (If that write is lost, the next create merely
                // counts as uncertain: the safe side.)
                job.create_settled.set(true);
            }
            return Err(f);
        }
    };
    record(job, &tripo_id, task.task_type().as_str()).await
}

/// Records in the DO that a creation starts (`CreateStarting`) before `POST /task`, so that a
/// lost answer is known: after one, at most one more creation (`provider.create_uncertain`),
/// then the step fails instead of paying a third time. `false`: do not create.
async fn may_create<W: Ports>(job: &Job<'_, W>) -> Result<bool, Failure> {
    let start = Command::CreateStarting {
        step: job.msg.step,
        attempt: job.msg.attempt,
    };
    let reply = match job.command(start).await {
        Ok(reply) => reply,
        Err(DoError::Refused(_)) => return Ok(false),
        Err(e @ DoError::Unavailable(_)) => return Err(e.into()),
    };
    let creates = reply
        .state
        .steps
        .get(&job.msg.step)
        .map_or(0, |s| s.job.creates);
    match reply.outcome {
        Outcome::Create { uncertain: false } => Ok(true),
        Outcome::Create { uncertain: true } => {
            job.log(
                Level::Warn,
                "provider.create_uncertain",
                json!({ "creates": creates, "note": "the previous create's answer was lost; a second Tripo task may exist" }),
            );
            Ok(true)
        }
        Outcome::CreateRefused => {
            let message = "Tripo did not answer two task creations; a third is not attempted \
                           (each may have created a billed task)";
            fail_step(job, ErrorCode::ProviderUnavailable.as_str(), message).await?;
            Ok(false)
        }
        other => {
            job.log(
                Level::Warn,
                "model.create_skipped",
                json!({ "outcome": format!("{other:?}") }),
            );
            Ok(false)
        }
    }
}

/// The `POST /task` of a model request: text, one image / a sketch, or 2–4 views.
async fn model_task<W: Ports>(job: &Job<'_, W>, m: &ModelRequest) -> Result<CreateTask, Failure> {
    let params = model_params(&m.options);
    let style = m.style.clone();
    Ok(match &m.source {
        ModelSource::Text { prompt } => CreateTask::TextToModel {
            prompt: prompt.clone(),
            style,
            params,
        },
        ModelSource::Image { urls, image } if urls.len() > 1 => {
            let mut files = Vec::with_capacity(urls.len());
            for (i, url) in urls.iter().enumerate() {
                files.push(upload_input(job, url, i).await?);
            }
            CreateTask::MultiviewToModel {
                files,
                style,
                params,
                orientation: orientation(image.orientation),
            }
        }
        ModelSource::Image { urls, image } => {
            let url = urls
                .first()
                .ok_or_else(|| invalid(Dependency::Storage, "no input image"))?;
            CreateTask::ImageToModel {
                file: upload_input(job, url, 0).await?,
                style,
                params,
                orientation: orientation(image.orientation),
            }
        }
        ModelSource::Sketch { url, image } => CreateTask::ImageToModel {
            file: upload_input(job, url, 0).await?,
            style,
            params,
            orientation: orientation(image.orientation),
        },
    })
}

/// Downloads one input from Storage and uploads it to Tripo; its file token. The bytes are
/// dropped before the next input is fetched, and the whole transfer is one bulky part
/// ([`Bulk`](super::ports::Bulk)): a batch holds one input at a time.
async fn upload_input<W: Ports>(
    job: &Job<'_, W>,
    url: &str,
    index: usize,
) -> Result<FileToken, Failure> {
    let obj = parse_input_url(url, &job.cfg().supabase_origin)
        .map_err(|e| invalid(Dependency::Storage, &e.to_string()))?;
    let (token, len, format) = job
        .w
        .bulk(async {
            let bytes = job.w.download_input(&obj).await?;
            let format = ImageFormat::sniff(&bytes).ok_or_else(|| {
                invalid(
                    Dependency::Storage,
                    "the input is not a PNG, JPEG or WebP image",
                )
            })?;
            let token = job
                .w
                .tripo_upload(job.task(), job.msg.step, &bytes, format)
                .await?;
            Ok::<_, Failure>((token, bytes.len(), format))
        })
        .await?;
    job.log(
        Level::Info,
        "model.input_uploaded",
        json!({ "index": index, "bytes": len, "format": format.extension() }),
    );
    Ok(FileToken::new(format, token))
}

/// When the alarm first checks a new Tripo task: 2 s, or with Tripo's webhooks on the safety
/// net's first check (`TRIPO_SAFETY_POLL_SECONDS`, about the expected duration).
fn first_poll_delay_ms(cfg: &crate::config::Config) -> u64 {
    if cfg.tripo_webhooks() {
        safety_poll_delay_ms(0, cfg.tripo_safety_poll_s.saturating_mul(1000))
    } else {
        next_poll_delay_ms(0, None, &PollPolicy::default())
    }
}

/// Stores the Tripo id in the DO (arming the alarm), then on the row.
async fn record<W: Ports>(job: &Job<'_, W>, tripo_id: &str, kind: &str) -> Result<(), Failure> {
    let mut delay = 250;
    let mut last = String::new();
    for try_no in 1..=RECORD_TRIES {
        let now = job.w.now_ms();
        let cmd = Command::ProviderTaskCreated {
            step: job.msg.step,
            attempt: job.msg.attempt,
            provider_task_id: tripo_id.to_owned(),
            timeout_ms: job.cfg().tripo_deadline_s.saturating_mul(1000),
            next_poll_at_ms: now + first_poll_delay_ms(job.cfg()),
        };
        match job.w.command(job.task(), cmd, now).await {
            Ok(reply) => {
                let step = reply.state.steps.get(&job.msg.step);
                return match (&reply.outcome, step) {
                    (Outcome::Polling { next_poll_at_ms }, Some(step)) => {
                        job.log(
                            Level::Info,
                            "model.polling",
                            json!({ "type": kind, "tripo_task_id": tripo_id, "next_poll_in_ms": next_poll_at_ms.saturating_sub(now) }),
                        );
                        sync_processing(job, step).await;
                        Ok(())
                    }
                    (outcome, _) => {
                        // Another delivery recorded its task first, or the step ended meanwhile.
                        job.log(
                            Level::Warn,
                            "model.record_skipped",
                            json!({ "tripo_task_id": tripo_id, "outcome": format!("{outcome:?}") }),
                        );
                        Ok(())
                    }
                };
            }
            Err(DoError::Refused(refusal)) => {
                job.log(
                    Level::Warn,
                    "model.record_refused",
                    json!({ "tripo_task_id": tripo_id, "refusal": refusal.to_string() }),
                );
                return Ok(());
            }
            Err(DoError::Unavailable(e)) => {
                last = e.to_string();
                job.log(
                    Level::Warn,
                    "model.record_retry",
                    json!({ "tripo_task_id": tripo_id, "try": try_no, "error": last }),
                );
                job.w.sleep(delay).await;
                delay *= 2;
            }
        }
    }
    Err(Failure::network(
        Dependency::TaskObject,
        &format!("could not record Tripo task {tripo_id}: {last}"),
    ))
}

/// Row `processing` with the Tripo id; a failure is logged (the finalize job writes it again).
async fn sync_processing<W: Ports>(job: &Job<'_, W>, step: &StepState) {
    let mut delay = 250;
    for try_no in 1..=ROW_TRIES {
        match rows::sync(job.w, job.cfg(), job.task(), step).await {
            Ok(()) => return,
            Err(e) if try_no < ROW_TRIES => {
                job.log(
                    Level::Warn,
                    "model.row_retry",
                    json!({ "try": try_no, "error": e.to_string() }),
                );
                job.w.sleep(delay).await;
                delay *= 2;
            }
            Err(e) => job.log(
                Level::Error,
                "model.row_failed",
                json!({ "error": e.to_string() }),
            ),
        }
    }
}
