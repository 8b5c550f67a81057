//! One job message (SPEC §6): the claim in the task's Durable Object, the job it grants (run or
//! finalize) with a heartbeat that renews the claim's lease, and what a failure leads to — a
//! delayed retry message (decided by `core::retry` from the classified failure) or the step
//! failed for good, rows included. A message for a finished step re-syncs its rows.
//!
//! Idempotent: the DO grants one claim per job at a time, guarded by the step's phase and
//! attempt, so a redelivered message changes nothing.

use futures::future::{select, Either};
use serde_json::json;

use super::ports::Ports;
use super::{concepts, finalize, gate, model, rows, Job};
use crate::config::Config;
use crate::error::DepError;
use crate::gate::Acquire;
use crate::jobs::{delay_seconds, JobKind, JobMessage};
use crate::log::Level;
use crate::retry::{decide, Attempts, Decision, ErrorCode, Failure, RetryPolicy};
use crate::step::Step;
use crate::task::{Command, Outcome, StepError, DEFAULT_LEASE_MS, LEASE_RENEW_MS};
use crate::task_wire::DoError;

/// Claims the job in the task's DO and runs it; failures are classified and retried or final.
/// `Err`: infrastructure trouble (the DO, the queue, the rows) — the message is redelivered.
pub async fn process<W: Ports>(w: &W, cfg: &Config, msg: &JobMessage) -> Result<(), DepError> {
    if msg.kind == JobKind::Webhook {
        return super::webhook::deliver(w, msg).await;
    }
    // A run job passes its provider's gate first: without a slot the step stays pending.
    let gated = match (msg.kind, gate::gate_of(cfg, msg.step)) {
        (JobKind::Run, Some(g)) => Some(g),
        _ => None,
    };
    if let Some((name, capacity)) = gated {
        let key = gate::key(&msg.task_id, msg.step, msg.attempt);
        let deadline_ms = cfg.tripo_deadline_s.saturating_mul(1000);
        if let Acquire::Waiting { position } =
            w.acquire_slot(name, &key, capacity, deadline_ms).await?
        {
            let wait = Command::AwaitSlot {
                step: msg.step,
                attempt: msg.attempt,
                position,
            };
            let reply = match w.command(&msg.task_id, wait, w.now_ms()).await {
                Err(DoError::Unavailable(e)) => return Err(e),
                answer => answer,
            };
            w.event(
                Level::Info,
                "gate.waiting",
                Some(&msg.task_id),
                Some(msg.step),
                json!({ "gate": name.as_str(), "position": position, "outcome": reply.as_ref().map(|r| format!("{:?}", r.outcome)).ok() }),
            );
            // A step that is over (or gone) leaves the line at once.
            let over = match &reply {
                Ok(r) => r
                    .state
                    .steps
                    .get(&msg.step)
                    .is_none_or(|s| s.attempt != msg.attempt || s.status.is_terminal()),
                Err(_) => true,
            };
            if over {
                gate::release(w, cfg, &msg.task_id, msg.step, msg.attempt).await;
            }
            return Ok(());
        }
    }
    let claim = Command::ClaimJob {
        step: msg.step,
        attempt: msg.attempt,
        kind: msg.kind,
        lease_ms: DEFAULT_LEASE_MS,
        create: msg.kind == JobKind::Run,
    };
    let reply = match w.command(&msg.task_id, claim, w.now_ms()).await {
        Ok(r) => r,
        Err(DoError::Unavailable(e)) => return Err(e),
        Err(DoError::Refused(refusal)) => {
            w.event(
                Level::Warn,
                "job.refused",
                Some(&msg.task_id),
                Some(msg.step),
                json!({ "refusal": refusal.to_string() }),
            );
            return Ok(());
        }
    };
    let Some(step) = reply.state.steps.get(&msg.step).cloned() else {
        return Ok(());
    };
    if !matches!(reply.outcome, Outcome::Run | Outcome::RunCreate) {
        w.event(
            Level::Info,
            "job.skipped",
            Some(&msg.task_id),
            Some(msg.step),
            json!({ "outcome": format!("{:?}", reply.outcome) }),
        );
        // A slot just granted to a step that is over, or to an older attempt, goes back.
        if gated.is_some() && (step.attempt != msg.attempt || gate::slot_done(&step)) {
            gate::release(w, cfg, &msg.task_id, msg.step, msg.attempt).await;
        }
        // A duplicate of a finished job: make sure the rows say what the DO says.
        if step.status.is_terminal() && step.attempt == msg.attempt {
            rows::sync(w, cfg, &msg.task_id, &step).await?;
        }
        return Ok(());
    }
    let job = Job {
        w,
        cfg,
        msg,
        owner: reply.state.owner,
        step,
        create_started: reply.outcome == Outcome::RunCreate,
        create_settled: std::cell::Cell::new(false),
    };
    let work = async {
        match (msg.kind, msg.step) {
            (JobKind::Run, Step::Concepts) => concepts::run(&job).await,
            (JobKind::Run, _) => model::run(&job).await,
            (JobKind::Finalize, _) => finalize::run(&job).await,
            (JobKind::Webhook, _) => Ok(()), // delivered above, never claimed
        }
    };
    let beat = heartbeat(w, msg);
    futures::pin_mut!(work, beat);
    // The heartbeat never ends on its own: the job's end decides.
    let result = match select(work, beat).await {
        Either::Left((result, _)) => result,
        Either::Right(((), work)) => work.await,
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
async fn heartbeat<W: Ports>(w: &W, msg: &JobMessage) {
    loop {
        w.sleep(LEASE_RENEW_MS).await;
        let renew = Command::RenewClaim {
            step: msg.step,
            attempt: msg.attempt,
        };
        if let Err(DoError::Unavailable(e)) = w.command(&msg.task_id, renew, w.now_ms()).await {
            w.event(
                Level::Warn,
                "job.renew_failed",
                Some(&msg.task_id),
                Some(msg.step),
                json!({ "error": e.to_string() }),
            );
        }
    }
}

/// A job failed: retry later (new message, delayed) or fail the step for good.
async fn on_failure<W: Ports>(job: &Job<'_, W>, failure: Failure) -> Result<(), DepError> {
    let now = job.w.now_ms();
    let attempts = Attempts {
        attempt: job.msg.try_no,
        waits: job.msg.waits,
        elapsed_ms: now.saturating_sub(job.step.job_clock_start_ms(job.msg.kind)),
    };
    let policy = RetryPolicy {
        max_attempts: job.cfg().job_max_attempts,
        deadline_ms: job.cfg().tripo_deadline_s * 1000,
        ..RetryPolicy::default()
    };
    match decide(&failure, &attempts, &policy, job.w.random()) {
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
                create_settled: job.create_settled.get(),
            };
            match job.command(release).await {
                Ok(_) => {}
                // A refusal (the task is gone) leaves nothing to retry for.
                Err(DoError::Refused(_)) => return Ok(()),
                Err(DoError::Unavailable(e)) => return Err(e),
            }
            if job.msg.kind == JobKind::Run && job.step.request.creates_at_claim() {
                // Its rows were left `pending` for the create (`rows::start`): while the retry
                // waits they say `processing`, as the DO does.
                rows::mark_running(job.w, job.cfg, job.task(), &job.step).await;
            }
            let next = if counted {
                job.msg.next_try()
            } else {
                job.msg.next_wait()
            };
            job.w.enqueue(&next, delay_seconds(after_ms)).await
        }
        Decision::Fail { code, message } => fail_step(job, code.as_str(), &message).await,
    }
}

/// Marks the step failed in the DO, then its rows.
pub async fn fail_step<W: Ports>(
    job: &Job<'_, W>,
    code: &str,
    message: &str,
) -> Result<(), DepError> {
    // The caller's own input refused (moderation, a bad image) is no fault of ours: a warning.
    let caller_caused = [ErrorCode::ContentPolicy, ErrorCode::InvalidInput]
        .iter()
        .any(|c| c.as_str() == code);
    job.log(
        if caller_caused {
            Level::Warn
        } else {
            Level::Error
        },
        "job.failed",
        json!({ "kind": job.msg.kind.as_str(), "code": code, "message": message }),
    );
    let cmd = Command::Fail {
        step: job.msg.step,
        attempt: job.msg.attempt,
        error: StepError::new(code, message),
    };
    let reply = match job.command_syncing_rows(cmd).await {
        Ok(reply) => reply,
        Err(DoError::Refused(_)) => return Ok(()),
        Err(DoError::Unavailable(e)) => return Err(e),
    };
    if let Some(step) = reply.state.steps.get(&job.msg.step) {
        if step.status.is_terminal() && step.attempt == job.msg.attempt {
            gate::release_if_done(job.w, job.cfg, job.task(), step).await;
            rows::sync(job.w, job.cfg, job.task(), step).await?;
            super::webhook::kick(job.w, job.task(), step).await;
        }
    }
    Ok(())
}
