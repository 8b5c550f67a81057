//! The task Durable Object's alarm: the sweep, then Tripo polling (SPEC §6 "Poll").
//!
//! For every step awaiting Tripo whose poll is due: `GET /task/{id}` (v3: `/tasks/{id}`), then one `PollResult` (or
//! `Fail`) applied through the task store the alarm is given (in the Worker, the Durable Object
//! itself: a DO calling itself over fetch deadlocks). The next poll comes from `core::retry::next_poll_delay_ms`
//! (`max(2 s, running_left_time / 2)` with an estimate, else 2 s doubling to 15 s), never later
//! than the deadline; poll errors back off with `decide_poll_error` until the deadline. Success
//! enqueues the finalize job; a failure status fails the step and its row with Tripo's reason.
//!
//! With Tripo's webhooks on (v3 and `TRIPO_WEBHOOK_SECRET`), a verified delivery feeds the same
//! [`apply`] (`flow::tripo_events`), and the alarm only polls as a safety net: first
//! `TRIPO_SAFETY_POLL_SECONDS` after creation, then widening (`retry::safety_poll_delay_ms`).
//!
//! Poll first, re-arm after: the DO's `alarm()` re-arms from the state this leaves (and every
//! command applied here arms too). A duplicate alarm is harmless: a poll is only made when due,
//! and `PollResult` carries the poll number, so a late duplicate is skipped by the state machine.
//!
//! The sweep comes first (`Command::Sweep`, `core::task::sweep`): every unfinished step whose job
//! message may have been lost (a pending step never claimed, a claim whose lease ended, a retry
//! that never came, a finalize with no live claim for `FINALIZE_WATCHDOG_MS`) gets it sent again,
//! and every step past its deadline fails with the reason, rows included; a final step whose
//! rows were never confirmed (`core::task::RowsCheck`) gets them written.

use serde_json::json;

use super::ports::Ports;
use super::rows;
use crate::config::Config;
use crate::ids::TaskId;
use crate::jobs::JobMessage;
use crate::log::Level;
use crate::retry::{
    decide_poll_error, next_poll_delay_ms, safety_poll_delay_ms, Deadline, Decision, ErrorCode,
    Failure, FailureClass, PollPolicy,
};
use crate::step::Step;
use crate::task::{
    Command, Observation, Outcome, Phase, ProviderStatus, StepError, StepState, TaskState,
};
use crate::task_wire::DoError;
use crate::tripo::{poll_outcome, PollOutcome, TaskDetail, TaskStatus};

/// A poll due within this much is made now (saves a wake-up for a few ms).
const DUE_SLACK_MS: u64 = 200;
/// Next try when the worker's configuration cannot be read (the deadline still applies).
const MISCONFIGURED_RETRY_MS: u64 = 15_000;

/// Sweeps the task (lost messages sent again, deadlines enforced, unconfirmed rows written),
/// then polls every step whose provider task is due, applies the results and enqueues finalize
/// jobs. `cfg` is `None` when the worker's configuration is invalid: the sweep still runs,
/// polls record the problem, rows wait for the next alarm.
pub async fn on_alarm<W: Ports>(w: &W, cfg: Option<&Config>, state: &TaskState) {
    let now_ms = w.now_ms();
    let state = &sweep(w, cfg, state, now_ms).await;
    for (step, s) in &state.steps {
        let due = s.phase() == Phase::AwaitingProvider
            && s.poll
                .as_ref()
                .and_then(|p| p.next_poll_at_ms)
                .is_some_and(|at| at <= now_ms.saturating_add(DUE_SLACK_MS));
        if due {
            poll_step(w, cfg, &state.task_id, *step, s).await;
        }
    }
}

/// Applies `Command::Sweep` and carries it out: sends each job message the sweep wants sent again
/// (`watchdog.requeued`), and writes the rows of each step it failed (`watchdog.failed`) or whose
/// rows are unconfirmed (`rows.resync`). Returns the state to poll from (the given one if the
/// sweep could not be applied).
async fn sweep<W: Ports>(w: &W, cfg: Option<&Config>, state: &TaskState, now_ms: u64) -> TaskState {
    let task = &state.task_id;
    let reply = match w.command(task, Command::Sweep, now_ms).await {
        Ok(reply) => reply,
        Err(DoError::Refused(_)) => return state.clone(),
        Err(DoError::Unavailable(e)) => {
            w.event(
                Level::Error,
                "watchdog.apply_error",
                Some(task),
                None,
                json!({ "error": e.to_string() }),
            );
            return state.clone();
        }
    };
    if let Outcome::Swept {
        requeue,
        failed,
        resync,
        webhooks,
    } = &reply.outcome
    {
        for r in requeue {
            let sent = match JobMessage::resend(task.clone(), r) {
                Ok(msg) => w.enqueue(&msg, 0).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            // A failed send is retried by the next sweep (the watchdog moved one interval on).
            w.event(
                if sent.is_ok() {
                    Level::Warn
                } else {
                    Level::Error
                },
                "watchdog.requeued",
                Some(task),
                Some(r.step),
                json!({ "kind": r.kind.as_str(), "attempt": r.attempt, "try": r.try_no, "error": sent.err() }),
            );
        }
        for step in failed {
            if let Some(after) = reply.state.steps.get(step) {
                w.event(
                    Level::Error,
                    "watchdog.failed",
                    Some(task),
                    Some(*step),
                    json!({ "attempt": after.attempt, "error": after.error }),
                );
            }
        }
        for step in failed {
            if let (Some(cfg), Some(after)) = (cfg, reply.state.steps.get(step)) {
                super::gate::release_if_done(w, cfg, task, after).await;
            }
        }
        for step in failed.iter().chain(resync) {
            let Some(after) = reply.state.steps.get(step) else {
                continue;
            };
            if resync.contains(step) {
                w.event(
                    Level::Warn,
                    "rows.resync",
                    Some(task),
                    Some(*step),
                    json!({ "status": after.status.as_str(), "attempt": after.attempt, "resyncs": after.rows.resyncs }),
                );
            }
            sync_final_rows(w, cfg, task, after).await;
            if failed.contains(step) {
                super::webhook::kick(w, task, after).await;
            }
        }
        for step in webhooks {
            if let Some(after) = reply.state.steps.get(step) {
                w.event(
                    Level::Warn,
                    "webhook.resent",
                    Some(task),
                    Some(*step),
                    json!({ "attempt": after.attempt }),
                );
                super::webhook::kick(w, task, after).await;
            }
        }
    }
    reply.state
}

/// Writes a final step's rows (and confirms them to the DO); a failure is left to the DO's rows
/// check, which brings the alarm back.
async fn sync_final_rows<W: Ports>(w: &W, cfg: Option<&Config>, task: &TaskId, step: &StepState) {
    let result = match cfg {
        Some(cfg) => rows::sync(w, cfg, task, step)
            .await
            .map_err(|e| e.to_string()),
        None => Err("the worker's configuration is invalid".to_owned()),
    };
    if let Err(e) = result {
        w.event(
            Level::Warn,
            "rows.sync_failed",
            Some(task),
            Some(step.step()),
            json!({ "error": e, "next_check_at_ms": step.rows.check_at_ms }),
        );
    }
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

/// Where a task detail came from: the alarm's own `GET`, or a verified Tripo webhook
/// (`flow::tripo_events`), which feeds the same state machine.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Poll,
    Webhook { delivery: &'a str },
}

/// One poll of one step, applied; problems are logged (the alarm keeps going for other steps).
async fn poll_step<W: Ports>(
    w: &W,
    cfg: Option<&Config>,
    task: &TaskId,
    step: Step,
    s: &StepState,
) {
    let Some(tripo_id) = s.provider_task_id.as_deref() else {
        return;
    };
    let result = match cfg {
        None => None,
        Some(_) => Some(w.tripo_task(task, step, tripo_id).await),
    };
    apply(w, cfg, task, step, s, result, Source::Poll).await;
}

/// Applies what Tripo said about a step's task (`None`: the configuration is invalid, nothing
/// was asked): one `PollResult` (or `Fail`), then the finalize job or the failed rows. The poll
/// number makes a poll and a webhook for the same news apply once. Returns the state machine's
/// outcome, `None` when nothing was applied.
pub async fn apply<W: Ports>(
    w: &W,
    cfg: Option<&Config>,
    task: &TaskId,
    step: Step,
    s: &StepState,
    result: Option<Result<TaskDetail, Failure>>,
    source: Source<'_>,
) -> Option<Outcome> {
    let (Some(p), Some(tripo_id)) = (s.poll.as_ref(), s.provider_task_id.as_deref()) else {
        return None;
    };
    let poll_no = s.next_poll_number();
    let policy = PollPolicy::default();
    let deadline = Deadline::new(
        p.started_at_ms,
        p.deadline_ms.saturating_sub(p.started_at_ms),
    );
    let mut model_url: Option<String> = None;
    let next = match (cfg, result) {
        (None, _) | (Some(_), None) => Next::Poll(
            Observation::Unreachable {
                message: "the worker's configuration is invalid".into(),
            },
            deadline.next_alarm_ms(w.now_ms(), MISCONFIGURED_RETRY_MS),
        ),
        (Some(cfg), Some(result)) => {
            let at = w.now_ms();
            match result {
                Ok(detail) => match poll_outcome(&detail, s.unknown_for_ms(at)) {
                    PollOutcome::InProgress {
                        progress,
                        running_left_time,
                    } => {
                        // This poll included: 2 s (first, at creation), then 4, 8, 15, 15, … s;
                        // with webhooks on, the slow safety net instead.
                        let made = p.polls.saturating_add(1);
                        let delay = if cfg.tripo_webhooks() {
                            safety_poll_delay_ms(made, cfg.tripo_safety_poll_s.saturating_mul(1000))
                        } else {
                            next_poll_delay_ms(made, running_left_time, &policy)
                        };
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
                    PollOutcome::Succeeded { model_url: url } => {
                        // With webhooks on, the finalize job copies this fresh URL instead of
                        // asking Tripo again (its retries do ask): one request saved per task.
                        if cfg.tripo_webhooks() {
                            model_url = Some(url);
                        }
                        Next::Poll(Observation::Succeeded, at)
                    }
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
                    w.random(),
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
    let at = w.now_ms();
    let source_label = match source {
        Source::Poll => json!("poll"),
        Source::Webhook { delivery } => json!({ "webhook": delivery }),
    };
    let (cmd, fields) = match next {
        Next::Poll(observation, next_poll_at_ms) => {
            let fields = json!({
                "poll": poll_no, "tripo_task_id": tripo_id, "observation": observation_label(&observation),
                "next_poll_in_ms": next_poll_at_ms.saturating_sub(at), "source": source_label,
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
                "source": source_label,
            });
            let cmd = Command::Fail {
                step,
                attempt: s.attempt,
                error,
            };
            (cmd, fields)
        }
    };
    let reply = match w.command(task, cmd, at).await {
        Ok(reply) => reply,
        Err(DoError::Refused(refusal)) => {
            w.event(
                Level::Warn,
                "poll.refused",
                Some(task),
                Some(step),
                json!({ "poll": poll_no, "refusal": refusal.to_string(), "source": source_label }),
            );
            return None;
        }
        Err(DoError::Unavailable(e)) => {
            w.event(
                Level::Error,
                "poll.apply_error",
                Some(task),
                Some(step),
                json!({ "poll": poll_no, "error": e.to_string(), "source": source_label }),
            );
            return None;
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
    w.event(level, "poll.result", Some(task), Some(step), fields);
    // Tripo's part is over (success or failure): its slot goes back at once.
    if let (Outcome::Finalize | Outcome::Failed, Some(cfg), Some(after)) =
        (&reply.outcome, cfg, after)
    {
        super::gate::release_if_done(w, cfg, task, after).await;
    }
    match (&reply.outcome, after) {
        (Outcome::Finalize, _) => enqueue_finalize(w, task, step, s.attempt, model_url).await,
        (Outcome::Failed, Some(after)) => {
            sync_final_rows(w, cfg, task, after).await;
            super::webhook::kick(w, task, after).await;
        }
        _ => {}
    }
    Some(reply.outcome)
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

/// Sends the finalize job (with the model URL Tripo just gave, when there is one to reuse). If
/// the queue is unavailable the watchdog sends it later (without a URL: finalize asks Tripo).
async fn enqueue_finalize<W: Ports>(
    w: &W,
    task: &TaskId,
    step: Step,
    attempt: u32,
    model_url: Option<String>,
) {
    let result = match JobMessage::finalize(task.clone(), step, attempt) {
        Ok(msg) => {
            let msg = msg.with_model_url(model_url);
            w.enqueue(&msg, 0).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let (level, fields) = match &result {
        Ok(()) => (Level::Info, json!({ "attempt": attempt })),
        Err(e) => (Level::Error, json!({ "attempt": attempt, "error": e })),
    };
    w.event(level, "finalize.enqueued", Some(task), Some(step), fields);
}
