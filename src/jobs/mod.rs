//! The queue consumer: AI jobs (`run`, `finalize`) and the dead-letter queue. Each message carries
//! ids only; every handler is idempotent (the task's Durable Object grants one claim per job), so
//! a redelivered message changes nothing. Messages are acknowledged one by one; a retry is a new
//! message with `try_no + 1` and a delay (workers-rs exposes no delivery count), decided by
//! `core::retry` from the classified failure.

pub mod concepts;
pub mod dead_letter;
pub mod finalize;
pub mod model;
pub mod poll;
pub mod rows;

use serde_json::json;
use worker::{Env, MessageBatch, MessageBuilder, MessageExt, QueueRetryOptionsBuilder};

use crate::config::Config;
use crate::core::jobs::{self as wire, delay_seconds, JobMessage};
use crate::core::retry::{self, decide, Attempts, Decision, Failure, RetryPolicy};
use crate::core::storage_path::Origin;
use crate::core::task::{Command, Outcome, StepError, StepState, DEFAULT_LEASE_MS, LEASE_RENEW_MS};
use crate::error::{DepError, Dependency};
use crate::http::lookup;
use crate::log::{self, Level};
use crate::task_client;

/// Binding of the jobs queue producer (wrangler.toml).
pub const QUEUE_BINDING: &str = "JOBS";
/// Name of the dead-letter queue (wrangler.toml).
pub const DEAD_LETTER_QUEUE: &str = "makeit3d-jobs-dlq";

/// Sends a job message, optionally delayed.
pub async fn enqueue(env: &Env, msg: &JobMessage, delay_seconds: u32) -> Result<(), DepError> {
    let dep = |e: worker::Error| DepError::new(Dependency::Queue, None, e.to_string());
    let queue = env.queue(QUEUE_BINDING).map_err(dep)?;
    // The body is the message's JSON text: a plain string crosses the JS boundary unchanged.
    let mut builder = MessageBuilder::new(msg.to_json());
    if delay_seconds > 0 {
        builder = builder.delay_seconds(delay_seconds);
    }
    queue.send(builder.build()).await.map_err(dep)
}

/// What a job works with: configuration, the message, and the step as the claim left it.
pub struct Job<'a> {
    pub env: &'a Env,
    pub cfg: &'a Config,
    pub origin: Origin,
    pub msg: &'a JobMessage,
    pub step: StepState,
}

impl Job<'_> {
    pub fn task(&self) -> &str {
        self.msg.task_id.as_str()
    }

    pub fn log(&self, level: Level, event: &str, fields: serde_json::Value) {
        log::emit(level, event, Some(self.task()), Some(self.msg.step), fields);
    }
}

/// Consumes one batch.
pub async fn consume(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let queue = batch.queue();
    let dead_letter = queue == DEAD_LETTER_QUEUE;
    let cfg = match Config::load(|n| lookup(&env, n)) {
        Ok(c) => c,
        Err(problems) => {
            let names: Vec<_> = problems.iter().map(|p| p.name).collect();
            log::emit(
                Level::Error,
                "job.misconfigured",
                None,
                None,
                json!({ "missing_or_invalid": names }),
            );
            batch.retry_all_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(retry::MISCONFIGURED_REDELIVERY_S)
                    .build(),
            );
            return Ok(());
        }
    };
    for msg in batch.messages()? {
        let job = match JobMessage::from_json(msg.body()) {
            Ok(job) => job,
            Err(e) => {
                log::emit(
                    Level::Error,
                    "job.malformed",
                    None,
                    None,
                    json!({ "queue": queue, "error": e.to_string() }),
                );
                msg.ack();
                continue;
            }
        };
        log::emit(
            Level::Info,
            "job.received",
            Some(job.task_id.as_str()),
            Some(job.step),
            json!({
                "queue": queue, "kind": job.kind.as_str(), "attempt": job.attempt, "try": job.try_no, "waits": job.waits, "dead_letter": dead_letter,
            }),
        );
        let result = if dead_letter {
            dead_letter::handle(&env, &cfg, &job).await
        } else {
            process(&env, &cfg, &job).await
        };
        match result {
            Ok(()) => msg.ack(),
            Err(e) => {
                // Infrastructure trouble (task state, queue, rows): let the runtime redeliver
                // after a delay that grows with the message's age; after `max_retries` the
                // message goes to the dead-letter queue (and the task's alarm covers the step
                // whatever happens to the message).
                let age_ms = crate::net::now_ms().saturating_sub(msg.timestamp().as_millis());
                let delay_s = retry::redelivery_delay_s(age_ms);
                log::emit(
                    Level::Warn,
                    "job.redeliver",
                    Some(job.task_id.as_str()),
                    Some(job.step),
                    json!({ "error": e.to_string(), "delay_s": delay_s }),
                );
                msg.retry_with_options(
                    &QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(delay_s)
                        .build(),
                );
            }
        }
    }
    Ok(())
}

/// Claims the job in the task's DO and runs it; failures are classified and retried or final.
async fn process(env: &Env, cfg: &Config, msg: &JobMessage) -> Result<(), DepError> {
    let origin = Origin::parse(&cfg.supabase_url).map_err(|_| {
        DepError::new(
            Dependency::Storage,
            None,
            "SUPABASE_URL is not a valid origin",
        )
    })?;
    let claim = Command::ClaimJob {
        step: msg.step,
        attempt: msg.attempt,
        kind: msg.kind,
        lease_ms: DEFAULT_LEASE_MS,
    };
    let reply = match task_client::command(env, &msg.task_id, claim).await? {
        Ok(r) => r,
        Err(refusal) => {
            log::emit(
                Level::Warn,
                "job.refused",
                Some(msg.task_id.as_str()),
                Some(msg.step),
                json!({ "refusal": refusal.to_string() }),
            );
            return Ok(());
        }
    };
    let Some(step) = reply.state.steps.get(&msg.step).cloned() else {
        return Ok(());
    };
    if !matches!(reply.outcome, Outcome::Run) {
        log::emit(
            Level::Info,
            "job.skipped",
            Some(msg.task_id.as_str()),
            Some(msg.step),
            json!({ "outcome": format!("{:?}", reply.outcome) }),
        );
        // A duplicate of a finished job: make sure the rows say what the DO says.
        if step.status.is_terminal() && step.attempt == msg.attempt {
            rows::sync(cfg, &origin, &msg.task_id, &step).await?;
        }
        return Ok(());
    }
    let job = Job {
        env,
        cfg,
        origin,
        msg,
        step,
    };
    let work = async {
        match (msg.kind, msg.step) {
            (wire::JobKind::Run, crate::core::step::Step::Concepts) => concepts::run(&job).await,
            (wire::JobKind::Run, _) => model::run(&job).await,
            (wire::JobKind::Finalize, _) => finalize::run(&job).await,
        }
    };
    let beat = heartbeat(env, msg);
    futures::pin_mut!(work, beat);
    // The heartbeat never ends on its own: the job's end decides.
    let result = match futures::future::select(work, beat).await {
        futures::future::Either::Left((result, _)) => result,
        futures::future::Either::Right(((), work)) => work.await,
    };
    match result {
        Ok(()) => Ok(()),
        Err(failure) => on_failure(&job, failure).await,
    }
}

/// Renews the job's claim every `LEASE_RENEW_MS` while it runs, so the lease can be short and a
/// dead job is run again soon (`core::task::DEFAULT_LEASE_MS`). A failed renewal is logged; the
/// job goes on (if the lease lapses meanwhile, a second delivery may run it: every command is
/// guarded by the step's phase and attempt).
async fn heartbeat(env: &Env, msg: &JobMessage) {
    loop {
        crate::net::sleep(LEASE_RENEW_MS).await;
        let renew = Command::RenewClaim {
            step: msg.step,
            attempt: msg.attempt,
        };
        if let Err(e) = task_client::command(env, &msg.task_id, renew).await {
            log::emit(
                Level::Warn,
                "job.renew_failed",
                Some(msg.task_id.as_str()),
                Some(msg.step),
                json!({ "error": e.to_string() }),
            );
        }
    }
}

/// A job failed: retry later (new message, delayed) or fail the step for good.
async fn on_failure(job: &Job<'_>, failure: Failure) -> Result<(), DepError> {
    let now = task_client::now_ms();
    let attempts = Attempts {
        attempt: job.msg.try_no,
        waits: job.msg.waits,
        elapsed_ms: now.saturating_sub(job.step.job_clock_start_ms(job.msg.kind)),
    };
    let policy = RetryPolicy {
        max_attempts: job.cfg.job_max_attempts,
        deadline_ms: job.cfg.tripo_deadline_s * 1000,
        ..RetryPolicy::default()
    };
    match decide(&failure, &attempts, &policy, js_sys::Math::random()) {
        Decision::Retry { after_ms, counted } => {
            job.log(Level::Warn, "job.retry", json!({
                "kind": job.msg.kind.as_str(), "try": job.msg.try_no, "after_ms": after_ms, "counted": counted,
                "dependency": failure.dependency.label(), "class": format!("{:?}", failure.class), "reason": failure.reason,
            }));
            let release = Command::ReleaseJob {
                step: job.msg.step,
                attempt: job.msg.attempt,
                message: failure.reason.clone(),
                retry_at_ms: Some(now.saturating_add(after_ms)),
            };
            task_client::command(job.env, &job.msg.task_id, release)
                .await?
                .ok();
            let next = if counted {
                job.msg.next_try()
            } else {
                job.msg.next_wait()
            };
            enqueue(job.env, &next, delay_seconds(after_ms)).await
        }
        Decision::Fail { code, message } => fail_step(job, code.as_str(), &message).await,
    }
}

/// Marks the step failed in the DO, then its rows.
pub async fn fail_step(job: &Job<'_>, code: &str, message: &str) -> Result<(), DepError> {
    job.log(
        Level::Error,
        "job.failed",
        json!({ "kind": job.msg.kind.as_str(), "code": code, "message": message }),
    );
    let cmd = Command::Fail {
        step: job.msg.step,
        attempt: job.msg.attempt,
        error: StepError::new(code, message),
    };
    if let Ok(reply) = task_client::command(job.env, &job.msg.task_id, cmd).await? {
        if let Some(step) = reply.state.steps.get(&job.msg.step) {
            rows::sync(job.cfg, &job.origin, &job.msg.task_id, step).await?;
        }
    }
    Ok(())
}

/// Maps a dependency error of the glue to a classified failure.
pub fn failure_of(e: &DepError) -> Failure {
    let dep = match e.dependency {
        Dependency::Storage => retry::Dependency::Storage,
        Dependency::OpenAi => retry::Dependency::OpenAi,
        Dependency::Tripo => retry::Dependency::Tripo,
        _ => retry::Dependency::Database,
    };
    let hint = e.retry_after_s.map(|s| s * 1000);
    match e.status {
        None => Failure::network(dep, &e.message),
        Some(status) => Failure::http(dep, status, &e.message, hint),
    }
}
