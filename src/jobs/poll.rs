//! Tripo polling from the task Durable Object's alarm (SPEC §6 "Poll").
//!
//! For every step awaiting Tripo whose poll is due: `GET /task/{id}`, then one `PollResult` (or
//! `Fail`) applied through [`TaskObject::command`] (never through `task_client`: a DO calling
//! itself over fetch deadlocks). The next poll comes from `core::retry::next_poll_delay_ms`
//! (`max(2 s, running_left_time / 2)` with an estimate, else 2 s doubling to 15 s), never later
//! than the deadline; poll errors back off with `decide_poll_error` until the deadline. Success
//! enqueues the finalize job; a failure status fails the step and its row with Tripo's reason.
//!
//! Poll first, re-arm after: the DO's `alarm()` re-arms from the state this leaves (and every
//! command applied here arms too). A duplicate alarm is harmless: a poll is only made when due,
//! and `PollResult` carries the poll number, so a late duplicate is skipped by the state machine.
//!
//! The sweep comes first (`Command::Sweep`, `core::task::sweep`): every unfinished step whose job
//! message may have been lost (a pending step never claimed, a claim whose lease ended, a retry
//! that never came, a finalize with no live claim for `FINALIZE_WATCHDOG_MS`) gets it sent again,
//! and every step past its deadline fails with the reason, rows included.

use serde_json::json;
use worker::Env;

use super::rows;
use crate::config::Config;
use crate::core::ids::TaskId;
use crate::core::jobs::JobMessage;
use crate::core::retry::{
    decide_poll_error, next_poll_delay_ms, Deadline, Decision, ErrorCode, FailureClass, PollPolicy,
};
use crate::core::step::Step;
use crate::core::storage_path::Origin;
use crate::core::task::{
    Command, Observation, Outcome, Phase, ProviderStatus, StepError, StepState, TaskState,
};
use crate::core::tripo::{poll_outcome, PollOutcome, TaskStatus};
use crate::http::lookup;
use crate::log::{self, Level};
use crate::providers::tripo::{self, CallCtx};
use crate::task_object::TaskObject;

/// A poll due within this much is made now (saves a wake-up for a few ms).
const DUE_SLACK_MS: u64 = 200;
/// Next try when the worker's configuration cannot be read (the deadline still applies).
const MISCONFIGURED_RETRY_MS: u64 = 15_000;
/// Delay of the message that repairs rows the alarm could not write.
const ROW_REPAIR_DELAY_S: u32 = 5;

use crate::net::now_ms as now;

/// Sweeps the task (lost messages sent again, deadlines enforced), then polls every step whose
/// provider task is due, applies the results and enqueues finalize jobs.
pub async fn on_alarm(
    obj: &TaskObject,
    env: &Env,
    state: &TaskState,
    now_ms: u64,
) -> worker::Result<()> {
    let cfg = match Config::load(|n| lookup(env, n)) {
        Ok(c) => Some(c),
        Err(problems) => {
            let names: Vec<_> = problems.iter().map(|p| p.name).collect();
            log::emit(
                Level::Error,
                "poll.misconfigured",
                Some(state.task_id.as_str()),
                None,
                json!({ "missing_or_invalid": names }),
            );
            None
        }
    };
    // The sweep first: lost messages sent again, steps past their deadline failed.
    let state = &sweep(obj, env, cfg.as_ref(), state, now_ms).await;
    for (step, s) in &state.steps {
        let due = s.phase() == Phase::AwaitingProvider
            && s.poll
                .as_ref()
                .and_then(|p| p.next_poll_at_ms)
                .is_some_and(|at| at <= now_ms.saturating_add(DUE_SLACK_MS));
        if due {
            poll_step(obj, env, cfg.as_ref(), &state.task_id, *step, s).await;
        }
    }
    Ok(())
}

/// Applies `Command::Sweep` and carries it out: sends each job message the sweep wants sent again
/// (`watchdog.requeued`), and writes the rows of each step it failed (`watchdog.failed`). Returns
/// the state to poll from (the given one if the sweep could not be applied).
async fn sweep(
    obj: &TaskObject,
    env: &Env,
    cfg: Option<&Config>,
    state: &TaskState,
    now_ms: u64,
) -> TaskState {
    let reply = match obj.command(Command::Sweep, now_ms).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => return state.clone(),
        Err(e) => {
            log::emit(
                Level::Error,
                "watchdog.apply_error",
                Some(state.task_id.as_str()),
                None,
                json!({ "error": e.to_string() }),
            );
            return state.clone();
        }
    };
    if let Outcome::Swept {
        requeue, failed, ..
    } = &reply.outcome
    {
        for r in requeue {
            let sent = match JobMessage::resend(state.task_id.clone(), r) {
                Ok(msg) => super::enqueue(env, &msg, 0)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            // A failed send is retried by the next sweep (the watchdog moved one interval on).
            log::emit(
                if sent.is_ok() {
                    Level::Warn
                } else {
                    Level::Error
                },
                "watchdog.requeued",
                Some(state.task_id.as_str()),
                Some(r.step),
                json!({ "kind": r.kind.as_str(), "attempt": r.attempt, "try": r.try_no, "error": sent.err() }),
            );
        }
        for step in failed {
            let Some(after) = reply.state.steps.get(step) else {
                continue;
            };
            log::emit(
                Level::Error,
                "watchdog.failed",
                Some(state.task_id.as_str()),
                Some(*step),
                json!({ "attempt": after.attempt, "error": after.error }),
            );
            if let Some(cfg) = cfg {
                sync_failed_rows(env, cfg, &state.task_id, after).await;
            }
        }
    }
    reply.state
}

fn provider_status(s: TaskStatus) -> ProviderStatus {
    match s {
        TaskStatus::Queued => ProviderStatus::Queued,
        TaskStatus::Running => ProviderStatus::Running,
        TaskStatus::Success => ProviderStatus::Success,
        _ => ProviderStatus::Unknown,
    }
}

/// What one poll leads to.
enum Next {
    Poll(Observation, u64),
    Fail(StepError),
}

/// One poll of one step, applied; problems are logged (the alarm keeps going for other steps).
async fn poll_step(
    obj: &TaskObject,
    env: &Env,
    cfg: Option<&Config>,
    task: &TaskId,
    step: Step,
    s: &StepState,
) {
    let (Some(p), Some(tripo_id)) = (s.poll.as_ref(), s.provider_task_id.as_deref()) else {
        return;
    };
    let poll_no = s.next_poll_number();
    let policy = PollPolicy::default();
    let deadline = Deadline::new(
        p.started_at_ms,
        p.deadline_ms.saturating_sub(p.started_at_ms),
    );
    let next = match cfg {
        None => Next::Poll(
            Observation::Unreachable {
                message: "the worker's configuration is invalid".into(),
            },
            deadline.next_alarm_ms(now(), MISCONFIGURED_RETRY_MS),
        ),
        Some(cfg) => {
            let cx = CallCtx {
                task_id: task,
                step,
            };
            let result = tripo::task(cx, cfg, tripo_id).await;
            let at = now();
            match result {
                Ok(detail) => match poll_outcome(&detail, s.unknown_for_ms(at)) {
                    PollOutcome::InProgress {
                        progress,
                        running_left_time,
                    } => {
                        // This poll included: 2 s (first, at creation), then 4, 8, 15, 15, … s.
                        let made = p.polls.saturating_add(1);
                        let delay = next_poll_delay_ms(made, running_left_time, &policy);
                        Next::Poll(
                            Observation::Waiting {
                                status: provider_status(detail.status),
                                progress: Some(progress),
                                running_left_time: running_left_time
                                    .and_then(|v| u32::try_from(v).ok()),
                                queuing_num: detail.queuing_num.and_then(|v| u32::try_from(v).ok()),
                            },
                            deadline.next_alarm_ms(at, delay),
                        )
                    }
                    PollOutcome::Succeeded { .. } => Next::Poll(Observation::Succeeded, at),
                    PollOutcome::Failed(f) => {
                        // A task Tripo reports as failed is over, whatever its error class (a
                        // server-side 1000/1001 inside the task is still "the provider failed").
                        let code = match f.class {
                            FailureClass::Transient => ErrorCode::ProviderFailed,
                            _ => f.error_code(),
                        };
                        Next::Fail(StepError::new(code.as_str(), f.reason))
                    }
                },
                Err(f) => match decide_poll_error(
                    &f,
                    p.consecutive_errors.saturating_add(1),
                    at,
                    &deadline,
                    &policy,
                    js_sys::Math::random(),
                ) {
                    Decision::Retry { after_ms, .. } => Next::Poll(
                        Observation::Unreachable { message: f.reason },
                        at.saturating_add(after_ms),
                    ),
                    Decision::Fail { code, message } => {
                        Next::Fail(StepError::new(code.as_str(), message))
                    }
                },
            }
        }
    };
    let at = now();
    let (cmd, fields) = match next {
        Next::Poll(observation, next_poll_at_ms) => {
            let fields = json!({
                "poll": poll_no, "tripo_task_id": tripo_id, "observation": observation_label(&observation),
                "next_poll_in_ms": next_poll_at_ms.saturating_sub(at),
            });
            let cmd = Command::PollResult {
                step,
                attempt: s.attempt,
                poll: poll_no,
                observation,
                next_poll_at_ms,
            };
            (cmd, fields)
        }
        Next::Fail(error) => {
            let fields = json!({
                "poll": poll_no, "tripo_task_id": tripo_id, "code": error.code, "message": error.message,
            });
            let cmd = Command::Fail {
                step,
                attempt: s.attempt,
                error,
            };
            (cmd, fields)
        }
    };
    let reply = match obj.command(cmd, at).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(refusal)) => {
            log::emit(
                Level::Warn,
                "poll.refused",
                Some(task.as_str()),
                Some(step),
                json!({ "poll": poll_no, "refusal": refusal.to_string() }),
            );
            return;
        }
        Err(e) => {
            log::emit(
                Level::Error,
                "poll.apply_error",
                Some(task.as_str()),
                Some(step),
                json!({ "poll": poll_no, "error": e.to_string() }),
            );
            return;
        }
    };
    let after = reply.state.steps.get(&step);
    let mut fields = fields;
    if let (Some(map), Some(after)) = (fields.as_object_mut(), after) {
        map.insert("outcome".into(), json!(outcome_label(&reply.outcome)));
        map.insert("progress".into(), json!(after.progress));
    }
    let level = match reply.outcome {
        Outcome::Failed => Level::Error,
        _ => Level::Info,
    };
    log::emit(
        level,
        "poll.result",
        Some(task.as_str()),
        Some(step),
        fields,
    );
    match (&reply.outcome, after) {
        (Outcome::Finalize, _) => enqueue_finalize(env, task, step, s.attempt).await,
        (Outcome::Failed, Some(after)) => {
            if let Some(cfg) = cfg {
                sync_failed_rows(env, cfg, task, after).await;
            }
        }
        _ => {}
    }
}

fn observation_label(o: &Observation) -> serde_json::Value {
    match o {
        Observation::Waiting {
            status,
            progress,
            running_left_time,
            queuing_num,
        } => json!({
            "status": status, "progress": progress, "running_left_time": running_left_time, "queuing_num": queuing_num,
        }),
        Observation::Succeeded => json!({ "status": "success" }),
        Observation::Unreachable { message } => {
            json!({ "status": "unreachable", "error": message })
        }
    }
}

fn outcome_label(o: &Outcome) -> String {
    match o {
        Outcome::Polling { .. } => "polling".into(),
        Outcome::Finalize => "finalize".into(),
        Outcome::Failed => "failed".into(),
        other => format!("{other:?}"),
    }
}

/// Sends the finalize job. If the queue is unavailable the watchdog sends it later.
async fn enqueue_finalize(env: &Env, task: &TaskId, step: Step, attempt: u32) {
    let result = match JobMessage::finalize(task.clone(), step, attempt) {
        Ok(msg) => super::enqueue(env, &msg, 0)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (level, fields) = match &result {
        Ok(()) => (Level::Info, json!({ "attempt": attempt })),
        Err(e) => (Level::Error, json!({ "attempt": attempt, "error": e })),
    };
    log::emit(
        level,
        "finalize.enqueued",
        Some(task.as_str()),
        Some(step),
        fields,
    );
}

/// Writes the failed step's row; if that fails, a message makes the consumer write it (a claim
/// of a finished step re-syncs its rows).
async fn sync_failed_rows(env: &Env, cfg: &Config, task: &TaskId, step: &StepState) {
    let result = match Origin::parse(&cfg.supabase_url) {
        Ok(origin) => rows::sync(cfg, &origin, task, step)
            .await
            .map_err(|e| e.to_string()),
        Err(_) => Err("SUPABASE_URL is not a valid origin".to_owned()),
    };
    if let Err(e) = result {
        let repair = JobMessage::run(task.clone(), step.step(), step.attempt);
        let sent = super::enqueue(env, &repair, ROW_REPAIR_DELAY_S).await;
        log::emit(
            Level::Warn,
            "poll.row_repair",
            Some(task.as_str()),
            Some(step.step()),
            json!({ "error": e, "repair_enqueued": sent.is_ok() }),
        );
    }
}
