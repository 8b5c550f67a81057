//! The task state machine persisted in the task's Durable Object (one per `task_id`).
//!
//! [`apply`] is the only way state changes: `(old state, command, now) → (new state, outcome)` or
//! a [`Refusal`]. The Durable Object loads its state, applies one command, persists the result
//! unless the outcome is [`Outcome::Skip`], and acts on the outcome (insert rows, enqueue, arm the
//! alarm). Every job command carries the step's submission `attempt`, so a late message of an
//! earlier attempt never touches a newer one, and every job command is idempotent: applied twice,
//! the second application is a `Skip` that changes nothing.
//!
//! Life of a step (SPEC §6):
//!
//! ```text
//! Submit ─► pending ─MarkEnqueued─► pending(enqueued) ─ClaimJob(Run)─► processing
//!   processing, OpenAI:  ─Complete─► complete
//!   processing, Tripo:   ─ProviderTaskCreated─► awaiting provider ─PollResult…─►
//!                        ─PollResult(Succeeded)─► finalizing ─ClaimJob(Finalize)─► ─Complete─► complete
//!   finalizing, no live claim for FINALIZE_WATCHDOG_MS: ─RequeueFinalize─► finalizing (the alarm
//!                        sends the finalize message again: it may have been lost)
//!   pending | processing ─Fail─► failed ─Submit─► pending (attempt + 1, same rows)
//! ```
//!
//! A claim is a lease: a duplicate delivery while the lease is live is skipped; after a crash
//! the lease expires and a redelivery may take the job again. `ReleaseJob` gives the lease back
//! at once when the job hands the message back to the queue for a retry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ids::{row_id, TaskId, UserId};
use super::request::{fingerprint, StepRequest};
use super::step::{Status, Step};

/// A job's lease: a job that holds its claim renews it every [`LEASE_RENEW_MS`] while it runs
/// (`RenewClaim`), so a job that died (evicted, out of memory, past the consumer's wall clock)
/// is presumed dead two minutes after its last sign of life and the alarm runs it again.
pub const DEFAULT_LEASE_MS: u64 = 2 * 60 * 1000;
/// How often a running job renews its lease: three renewals fit in one lease.
pub const LEASE_RENEW_MS: u64 = 40 * 1000;
const _: () = assert!(DEFAULT_LEASE_MS >= 3 * LEASE_RENEW_MS);
/// A repeat of a submission whose step is still pending and not known to be enqueued resumes it
/// (rows again, enqueue again) only after this long: the submit path does not record the enqueue
/// (the job's claim does), so within this window the first submit is presumed alive and a repeat
/// is the idempotent `Existing`. After it, the first submit is presumed dead (crashed between
/// creating the step and sending the message) and the repeat finishes its work.
pub const RESUME_AFTER_MS: u64 = 30_000;
/// Error messages kept in the state (and shown on the status endpoint) are cut to this length.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1000;
/// Error code of a provider task that did not finish before its deadline.
pub const PROVIDER_TIMEOUT_CODE: &str = "provider_timeout";
/// Highest progress before the outputs are stored; 100 means complete.
const MAX_UNFINISHED_PROGRESS: u8 = 99;
/// A step waiting for its finalize job with no live claim for this long gets its finalize message
/// sent again by the alarm (the message may have been lost, e.g. on a restart).
pub const FINALIZE_WATCHDOG_MS: u64 = 2 * 60 * 1000;
/// A pending step whose run message was sent but never claimed gets it sent again this long
/// after its last send (the message may have been lost).
pub const QUEUED_WATCHDOG_MS: u64 = 2 * 60 * 1000;
/// A released job's retry message is presumed lost this long after it was due.
pub const RETRY_GRACE_MS: u64 = 60 * 1000;
/// The budget of a step when the sweep is given none: SPEC §6's default deadline (30 min).
pub const DEFAULT_STEP_DEADLINE_MS: u64 = 30 * 60 * 1000;
/// A provider task whose polls stopped (the alarm could not poll) fails this long after its
/// polling deadline.
pub const POLL_GRACE_MS: u64 = 2 * 60 * 1000;
/// Error code of a step that did not finish before its deadline for another reason than the
/// provider (its jobs kept failing or were lost).
pub const TIMEOUT_CODE: &str = "timeout";
/// A step waiting for a provider slot (`core::gate`) asks again this often (its place in line is
/// refreshed, and the gate hears it is still there).
pub const SLOT_RECHECK_MS: u64 = 20 * 1000;
/// After a step becomes final, the alarm checks this long after that its rows were written
/// (`Command::RowsSynced`); unconfirmed, it writes them itself, then again with a doubling
/// interval up to [`ROWS_CHECK_MAX_MS`], [`MAX_ROW_RESYNCS`] times.
pub const ROWS_CHECK_MS: u64 = 60 * 1000;
/// The longest interval between two row re-syncs of a final step.
pub const ROWS_CHECK_MAX_MS: u64 = 15 * 60 * 1000;
/// Row re-syncs the alarm makes for a final step before it gives up (about a day: the database
/// was down longer than any outage we plan for; the dead-letter queue and the next command
/// that reaches the task are the last ways out).
pub const MAX_ROW_RESYNCS: u32 = 100;

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// Everything the Durable Object knows about one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    pub task_id: TaskId,
    pub owner: UserId,
    pub steps: BTreeMap<Step, StepState>,
    /// Submissions so far (new steps and retries): orders the steps by recency.
    pub submissions: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Changes clients can see so far (`core::live::changed`): the id of live status events.
    /// It only grows.
    #[serde(default)]
    pub version: u64,
}

/// One step of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    pub status: Status,
    /// 0–100; never goes backwards within an attempt; 100 only when complete.
    pub progress: u8,
    pub request: StepRequest,
    pub fingerprint: String,
    /// The rows of the step: `n` for concepts, else one (`ids::row_id`, index order).
    pub row_ids: Vec<Uuid>,
    pub provider_task_id: Option<String>,
    pub asset_urls: Vec<String>,
    pub error: Option<StepError>,
    /// Submission attempt, 1-based; a resubmission after `failed` increments it.
    pub attempt: u32,
    /// The task's submission counter when this attempt was submitted.
    pub submission: u64,
    /// A queue message exists for this attempt (set by `MarkEnqueued` or by the first claim).
    pub enqueued: bool,
    pub job: JobProgress,
    /// Present once a provider task exists.
    pub poll: Option<PollState>,
    pub submitted_at_ms: u64,
    pub updated_at_ms: u64,
    /// The failed attempt this one retries, kept until the retry is enqueued so that
    /// `AbortSubmit` can restore it.
    pub previous: Option<Box<StepState>>,
    /// The step's budget: see [`StepState::deadline_at_ms`].
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Whether the rows are known to show this final step (see [`RowsCheck`]).
    #[serde(default, skip_serializing_if = "RowsCheck::is_settled")]
    pub rows: RowsCheck,
    /// A webhook event of this final step not yet acknowledged (see [`WebhookDue`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookDue>,
}

/// The webhook of a final step (SPEC §11 "Webhooks"): recorded with the final state, so it is
/// not lost if the process dies right after. The job that made the step final sends the
/// delivery message; until a delivery ends (`Command::WebhookDelivered`), the alarm sends it
/// again whenever `check_at_ms` passes without news, for [`WEBHOOK_WINDOW_MS`] after `since_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDue {
    /// When the step became final.
    pub since_ms: u64,
    /// When the alarm sends the delivery message again.
    pub check_at_ms: u64,
}

pub use super::webhook::{WEBHOOK_CHECK_MS, WEBHOOK_WINDOW_MS};

/// The error code of a step cancelled by its owner.
pub const CANCELLED_CODE: &str = "cancelled";

/// The rows of a final step: the Durable Object is written first and the rows follow, so until
/// a row write of the final state is confirmed (`Command::RowsSynced`) the alarm keeps a check
/// due and writes the rows itself when it comes (SPEC §6: rows agree with the status endpoint
/// even after a database outage that outlasts every job message).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowsCheck {
    /// When the alarm writes the rows again; `None` once confirmed (or for an unfinished step,
    /// or after [`MAX_ROW_RESYNCS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_at_ms: Option<u64>,
    /// Re-syncs the alarm has made so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resyncs: u32,
}

impl RowsCheck {
    /// Nothing to check: confirmed, not final yet, or given up.
    pub fn is_settled(&self) -> bool {
        self.check_at_ms.is_none()
    }

    /// A step that just became final at `now_ms`: its job writes the rows at once; the alarm
    /// checks [`ROWS_CHECK_MS`] later.
    fn due_after_final(now_ms: u64) -> RowsCheck {
        RowsCheck {
            check_at_ms: Some(now_ms.saturating_add(ROWS_CHECK_MS)),
            resyncs: 0,
        }
    }

    /// The alarm re-synced (or tried) at `now_ms`: the next check, after a doubling interval.
    fn after_resync(&self, now_ms: u64) -> RowsCheck {
        let resyncs = self.resyncs.saturating_add(1);
        let interval = ROWS_CHECK_MS
            .saturating_mul(1u64 << resyncs.min(10))
            .min(ROWS_CHECK_MAX_MS);
        RowsCheck {
            check_at_ms: (resyncs < MAX_ROW_RESYNCS).then(|| now_ms.saturating_add(interval)),
            resyncs,
        }
    }
}

/// A failure shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    pub code: String,
    pub message: String,
}

impl StepError {
    /// An error with its message cut to [`MAX_ERROR_MESSAGE_CHARS`].
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> StepError {
        let message: String = message.into();
        let message = match message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message,
        };
        StepError {
            code: code.into(),
            message,
        }
    }
}

/// Queue-consumer bookkeeping of the current attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// When the live claim was taken; `None` when no job holds the step.
    pub claimed_at_ms: Option<u64>,
    /// Claims granted so far (first delivery, redeliveries, the finalize job).
    pub job_attempts: u32,
    /// The last transient failure a job reported when it released its claim.
    pub last_error: Option<String>,
    /// When the released job's retry message is due (set by `ReleaseJob`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
    /// When the alarm's sweep last sent this step's job message again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeued_at_ms: Option<u64>,
    /// Provider task creations started for this attempt (`CreateStarting`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub creates: u32,
    /// A creation was started and its answer never came back (a timeout, a 5xx, a crash): the
    /// provider may have created a task we do not know of.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_in_flight: bool,
    /// The step waits for a provider slot (`core::gate`): not claimed until one is free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_wait: Option<SlotWait>,
}

/// A step's wait for a provider slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotWait {
    pub since_ms: u64,
    /// Its place in line when it last asked (1 = first).
    pub position: u32,
    pub asked_at_ms: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Provider task creations allowed per attempt: the first, and at most one more after an
/// answer was lost (the first may have created a task, so each extra one may be paid twice).
pub const MAX_CREATES: u32 = 2;

/// Polling of a provider (Tripo) task, driven by the Durable Object's alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollState {
    /// Polls applied so far; the next `PollResult` must carry `poll = polls + 1`.
    pub polls: u32,
    pub started_at_ms: u64,
    /// After this, a provider task that is still waiting fails with `provider_timeout`.
    pub deadline_ms: u64,
    /// When the alarm should poll next; `None` once the provider has succeeded.
    pub next_poll_at_ms: Option<u64>,
    pub provider_status: ProviderStatus,
    /// Tripo's estimate of the seconds left.
    pub running_left_time: Option<u32>,
    /// Tripo's queue position.
    pub queuing_num: Option<u32>,
    pub succeeded_at_ms: Option<u64>,
    /// Since when the provider has reported `unknown` without interruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_since_ms: Option<u64>,
    /// Polls in a row that got no usable answer (`Observation::Unreachable`).
    #[serde(default)]
    pub consecutive_errors: u32,
}

/// The provider's view of its task while we wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    Queued,
    Running,
    Success,
    /// The provider reports `unknown`: tolerated for a bounded time (`tripo::UNKNOWN_GRACE_MS`).
    Unknown,
}

/// Where a `processing` step is (derived from its state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// `pending`: waiting for the queue consumer.
    Queued,
    /// `processing` without a provider task: the run job (OpenAI call, Tripo task creation).
    Running,
    /// `processing` with a provider task that has not succeeded: the alarm polls.
    AwaitingProvider,
    /// `processing`, the provider succeeded: the finalize job copies the output.
    Finalizing,
    /// `complete` or `failed`.
    Done,
}

/// The two kinds of queue job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Run the step: call OpenAI, or create the Tripo task.
    Run,
    /// Copy a finished Tripo model to Storage.
    Finalize,
    /// Deliver the webhook of a final step (never claimed: deliveries are at least once).
    Webhook,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Run => "run",
            JobKind::Finalize => "finalize",
            JobKind::Webhook => "webhook",
        }
    }
}

impl StepState {
    pub fn phase(&self) -> Phase {
        match self.status {
            Status::Pending => Phase::Queued,
            Status::Complete | Status::Failed => Phase::Done,
            Status::Processing => match &self.poll {
                None => Phase::Running,
                Some(p) if p.provider_status == ProviderStatus::Success => Phase::Finalizing,
                Some(_) => Phase::AwaitingProvider,
            },
        }
    }

    /// Whether a job holds a claim that has not expired at `now_ms`.
    pub fn has_live_claim(&self, now_ms: u64, lease_ms: u64) -> bool {
        self.job
            .claimed_at_ms
            .is_some_and(|at| now_ms < at.saturating_add(lease_ms))
    }

    /// When the alarm should look at a `Finalizing` step again: when the live claim's lease
    /// ends, else [`FINALIZE_WATCHDOG_MS`] after the step last changed. `None` in other phases.
    pub fn finalize_watchdog_at_ms(&self) -> Option<u64> {
        if self.phase() != Phase::Finalizing {
            return None;
        }
        Some(match self.job.claimed_at_ms {
            Some(at) => at.saturating_add(DEFAULT_LEASE_MS),
            None => self.updated_at_ms.saturating_add(FINALIZE_WATCHDOG_MS),
        })
    }

    /// When this unfinished step fails if it has not finished (SPEC §6: no job stays
    /// `processing` forever): its budget after its submission; while waiting for the provider,
    /// the polling deadline plus [`POLL_GRACE_MS`] (polls enforce the deadline themselves); while
    /// finalizing, its budget after the provider's success, so a model that succeeds late still
    /// has its whole budget to be copied. `None` once final.
    pub fn deadline_at_ms(&self) -> Option<u64> {
        let budget = self.deadline_ms;
        match self.phase() {
            Phase::Done => None,
            Phase::Queued | Phase::Running => Some(self.submitted_at_ms.saturating_add(budget)),
            Phase::AwaitingProvider => self
                .poll
                .as_ref()
                .map(|p| p.deadline_ms.saturating_add(POLL_GRACE_MS)),
            Phase::Finalizing => Some(
                self.poll
                    .as_ref()
                    .and_then(|p| p.succeeded_at_ms)
                    .unwrap_or(self.updated_at_ms)
                    .saturating_add(budget),
            ),
        }
    }

    /// Where a job's retry budget (`RetryPolicy::deadline_ms`) starts: the submission for a run
    /// job, the provider's success for a finalize job (a model that succeeds at minute 29 still
    /// gets its whole budget to be copied).
    pub fn job_clock_start_ms(&self, kind: JobKind) -> u64 {
        match kind {
            JobKind::Run | JobKind::Webhook => self.submitted_at_ms,
            JobKind::Finalize => self
                .poll
                .as_ref()
                .and_then(|p| p.succeeded_at_ms)
                .unwrap_or(self.submitted_at_ms),
        }
    }

    /// When the alarm must check that this step's job message was not lost: a pending step
    /// [`RESUME_AFTER_MS`] after its submission (its submit may have died before sending) and
    /// [`QUEUED_WATCHDOG_MS`] after each send since; a running step when its claim's lease ends,
    /// or, released for a retry, [`RETRY_GRACE_MS`] after the retry was due; a finalizing step
    /// by [`StepState::finalize_watchdog_at_ms`]. `None` while the provider is polled (the poll
    /// schedule covers it) and once final.
    pub fn watchdog_at_ms(&self) -> Option<u64> {
        let requeued = self.job.requeued_at_ms;
        if let (Some(wait), Phase::Queued | Phase::Running, None) =
            (self.job.slot_wait, self.phase(), self.job.claimed_at_ms)
        {
            // Waiting for a slot: ask again every SLOT_RECHECK_MS (from the last answer or the
            // last re-send, so a lost message does not make the alarm spin).
            return Some(
                wait.asked_at_ms
                    .max(requeued.unwrap_or(0))
                    .saturating_add(SLOT_RECHECK_MS),
            );
        }
        match self.phase() {
            Phase::Done | Phase::AwaitingProvider => None,
            Phase::Queued => Some(match requeued {
                Some(at) => at.saturating_add(QUEUED_WATCHDOG_MS),
                None => self.submitted_at_ms.saturating_add(RESUME_AFTER_MS),
            }),
            Phase::Running => Some(match self.job.claimed_at_ms {
                Some(at) => at.saturating_add(DEFAULT_LEASE_MS),
                None => {
                    let retry = self
                        .job
                        .retry_at_ms
                        .unwrap_or(self.updated_at_ms)
                        .saturating_add(RETRY_GRACE_MS);
                    let resent = requeued.map_or(0, |at| at.saturating_add(QUEUED_WATCHDOG_MS));
                    retry.max(resent)
                }
            }),
            Phase::Finalizing => self.finalize_watchdog_at_ms(),
        }
    }

    /// How long the provider has reported `unknown` without interruption, at `now_ms`.
    pub fn unknown_for_ms(&self, now_ms: u64) -> u64 {
        self.poll
            .as_ref()
            .and_then(|p| p.unknown_since_ms)
            .map_or(0, |since| now_ms.saturating_sub(since))
    }

    /// The `poll` number the next `PollResult` must carry.
    pub fn next_poll_number(&self) -> u32 {
        self.poll.as_ref().map_or(1, |p| p.polls + 1)
    }

    pub fn step(&self) -> Step {
        self.request.step()
    }
}

impl TaskState {
    /// The step submitted most recently (a retry counts as a new submission).
    pub fn last_submitted(&self) -> Option<Step> {
        self.steps
            .iter()
            .max_by_key(|(_, s)| s.submission)
            .map(|(step, _)| *step)
    }

    /// When the Durable Object's alarm should fire next: the earliest poll due, watchdog
    /// ([`StepState::watchdog_at_ms`]) or deadline ([`StepState::deadline_at_ms`]) of any
    /// unfinished step; `None` when every step is final. Every time is one that [`sweep`] or a
    /// poll acts on, so an alarm set to it never fires for nothing (one kept from earlier may,
    /// once: [`alarm_op`]).
    pub fn next_alarm_ms(&self) -> Option<u64> {
        self.steps
            .values()
            .flat_map(|s| {
                let poll = match s.phase() {
                    Phase::AwaitingProvider => s.poll.as_ref().and_then(|p| p.next_poll_at_ms),
                    _ => None,
                };
                let (rows, webhook) = match s.phase() {
                    Phase::Done => (s.rows.check_at_ms, s.webhook.map(|w| w.check_at_ms)),
                    _ => (None, None),
                };
                [poll, s.watchdog_at_ms(), s.deadline_at_ms(), rows, webhook]
            })
            .flatten()
            .min()
    }
}

// ---------------------------------------------------------------------------------------------
// Commands and outcomes
// ---------------------------------------------------------------------------------------------

/// A submission from `POST /generate/*` (after validation and authentication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub owner: UserId,
    pub task_id: TaskId,
    /// The step is `request.step()`; the fingerprint is computed from the request.
    pub request: StepRequest,
    /// The step's budget (`TRIPO_DEADLINE_SECONDS`): the alarm fails it when it has not finished
    /// this long after its submission (its provider task's success, while finalizing).
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
}

fn default_deadline_ms() -> u64 {
    DEFAULT_STEP_DEADLINE_MS
}

/// What a provider poll observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Observation {
    /// Queued or running. Failure statuses are reported with [`Command::Fail`].
    Waiting {
        status: ProviderStatus,
        progress: Option<u8>,
        running_left_time: Option<u32>,
        queuing_num: Option<u32>,
    },
    /// The provider finished: the outputs can be finalized.
    Succeeded,
    /// The poll itself failed transiently (network, 5xx, 429): try again later.
    Unreachable { message: String },
}

/// One change to a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create, look up, resume or retry a step.
    Submit(Submission),
    /// The submit path enqueued the run message.
    MarkEnqueued { step: Step, attempt: u32 },
    /// A dependency failed during submit, before anything was enqueued: undo the submission.
    AbortSubmit { step: Step, attempt: u32 },
    /// A queue consumer wants to run a job.
    ClaimJob {
        step: Step,
        attempt: u32,
        kind: JobKind,
        lease_ms: u64,
        /// A run job that creates its provider task straight away
        /// ([`StepRequest::creates_at_claim`]): a granted claim also records the creation as
        /// starting (as [`Command::CreateStarting`] would) when no earlier answer was lost, and
        /// answers [`Outcome::RunCreate`]; otherwise [`Outcome::Run`] and the job asks itself.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        create: bool,
    },
    /// The job holding the claim is alive: its lease starts again now.
    RenewClaim { step: Step, attempt: u32 },
    /// A job gives its claim back (it will be retried by a redelivery).
    ReleaseJob {
        step: Step,
        attempt: u32,
        message: String,
        /// When the retry message is due; the sweep sends it again if it never comes.
        #[serde(default)]
        retry_at_ms: Option<u64>,
        /// The provider refused the creation with a definite answer (as
        /// [`Command::CreateSettled`]): the next creation is not an uncertain one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        create_settled: bool,
    },
    /// The run job found every provider slot taken (`core::gate`): the step stays as it is
    /// (`pending`) with its place in line, and asks again every [`SLOT_RECHECK_MS`].
    AwaitSlot {
        step: Step,
        attempt: u32,
        position: u32,
    },
    /// The run job is about to ask the provider to create the task (`POST /task`): recorded
    /// first, so a lost answer is known afterwards (see [`MAX_CREATES`]).
    CreateStarting { step: Step, attempt: u32 },
    /// The provider refused the creation with a definite answer (e.g. 429, Tripo 2000): no task
    /// was created, the next creation is not an uncertain one. Jobs now say this in their
    /// `ReleaseJob` (`create_settled`); still applied for messages of an earlier build.
    CreateSettled { step: Step, attempt: u32 },
    /// The run job created the provider task; polling starts.
    ProviderTaskCreated {
        step: Step,
        attempt: u32,
        provider_task_id: String,
        /// Polling gives up this long after now.
        timeout_ms: u64,
        next_poll_at_ms: u64,
    },
    /// The alarm polled the provider.
    PollResult {
        step: Step,
        attempt: u32,
        /// Must be `next_poll_number()` of the step; a duplicate alarm is skipped.
        poll: u32,
        observation: Observation,
        /// When to poll again if still waiting.
        next_poll_at_ms: u64,
    },
    /// The alarm's watchdog: a `Finalizing` step has had no live claim for
    /// [`FINALIZE_WATCHDOG_MS`]; send its finalize message again (outcome `Finalize`).
    RequeueFinalize { step: Step, attempt: u32 },
    /// The alarm's sweep over every unfinished step (see [`sweep`]): each one whose job message
    /// may have been lost gets it sent again, each one past its deadline fails. `deadline_ms` is
    /// a step's own budget ([`StepState::deadline_ms`]).
    Sweep,
    /// The outputs are stored.
    Complete {
        step: Step,
        attempt: u32,
        asset_urls: Vec<String>,
    },
    /// The step failed for good.
    Fail {
        step: Step,
        attempt: u32,
        error: StepError,
    },
    /// The rows of this final step were written as the Durable Object has it: the alarm's
    /// rows check ([`RowsCheck`]) is settled.
    RowsSynced { step: Step, attempt: u32 },
    /// The owner cancels `step` (or every unfinished step): each becomes `failed` with code
    /// [`CANCELLED_CODE`]. Another owner is refused ([`Refusal::OtherOwner`], a 404 for clients).
    Cancel {
        owner: UserId,
        #[serde(default)]
        step: Option<Step>,
    },
    /// The webhook job will try again at `retry_at_ms`: the alarm waits that long (plus
    /// [`WEBHOOK_CHECK_MS`]) before sending the message again itself.
    WebhookRetry {
        step: Step,
        attempt: u32,
        retry_at_ms: u64,
    },
    /// The webhook's delivery ended (delivered, refused by the receiver, or given up).
    WebhookDelivered { step: Step, attempt: u32 },
}

impl Command {
    /// The step a job's command ends (`Fail`, `Complete`): the one whose rows the object may
    /// write itself (`task_wire::CmdRequest::sync_rows`).
    pub fn ends_step(&self) -> Option<Step> {
        match self {
            Command::Fail { step, .. } | Command::Complete { step, .. } => Some(*step),
            _ => None,
        }
    }
}

/// What the caller should do after a successful [`apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A new step: insert the rows, enqueue, then `MarkEnqueued`. Answer 202.
    Created,
    /// Same request, step pending but never enqueued (an earlier submit died): insert the rows
    /// again (idempotent), enqueue, `MarkEnqueued`. Answer 202.
    Resume,
    /// A failed step resubmitted: attempt + 1, same rows back to pending; enqueue. Answer 202.
    Retry,
    /// Same request again: nothing starts. Answer 200 with the current state.
    Existing,
    Enqueued,
    /// The submission was undone; delete the task's storage when `delete_task`.
    Aborted {
        delete_task: bool,
    },
    /// The claim is granted: run the job.
    Run,
    /// The claim is granted and the provider task's creation is recorded as starting (a
    /// `ClaimJob` with `create`; as [`Outcome::Create`] `{ uncertain: false }`): run the job and
    /// create without asking again.
    RunCreate,
    Released,
    /// Arm the alarm for this time.
    Polling {
        next_poll_at_ms: u64,
    },
    /// The provider succeeded: enqueue the finalize job.
    Finalize,
    Completed,
    /// The step failed (from `Fail`, or a provider deadline passed): mark the rows failed.
    Failed,
    /// Go on and create the provider task; `uncertain` when an earlier creation's answer was
    /// lost (log `provider.create_uncertain`: a second task may exist and be billed).
    Create {
        uncertain: bool,
    },
    /// Do not create: [`MAX_CREATES`] creations already started and the last answer was lost.
    /// Fail the step rather than risk paying a third time.
    CreateRefused,
    /// The sweep changed steps: send `requeue` (step, attempt, job kind, try number), and
    /// write the rows of `failed` (steps it failed) and `resync` (final steps whose rows are
    /// unconfirmed), each followed by `RowsSynced` once written.
    Swept {
        requeue: Vec<Requeue>,
        failed: Vec<Step>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resync: Vec<Step>,
        /// Final steps whose webhook delivery went silent: send the webhook message again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        webhooks: Vec<Step>,
    },
    /// `RowsSynced` applied: the rows check is settled.
    RowsConfirmed,
    /// `AwaitSlot` applied: acknowledge the message; the alarm asks again.
    AwaitingSlot,
    /// `Cancel` applied: these steps became `failed` (`cancelled`); write their rows, give their
    /// provider slots back, send their webhooks.
    Cancelled {
        steps: Vec<Step>,
    },
    /// `WebhookRetry` / `WebhookDelivered` applied.
    WebhookNoted,
    /// Nothing changed; acknowledge the message and do nothing.
    Skip(SkipReason),
}

/// A job message the sweep wants sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requeue {
    pub step: Step,
    pub attempt: u32,
    pub kind: JobKind,
    /// The try number the message carries (its retry budget goes on from the claims so far).
    pub try_no: u32,
}

/// Why a command changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkipReason {
    /// The command is for another attempt of the step.
    StaleAttempt,
    AlreadyEnqueued,
    /// Only a pending, never enqueued, never claimed step can be aborted.
    NotAbortable,
    /// Another job holds a live claim.
    AlreadyClaimed,
    /// The step is complete or failed.
    Terminal(Status),
    /// The command does not fit the step's phase.
    WrongPhase(Phase),
    /// No job holds the step.
    NotClaimed,
    /// The same provider task id is already recorded.
    AlreadyRecorded,
    /// A different provider task id is recorded: the caller's task is a duplicate.
    OtherProviderTask,
    /// The poll number does not follow the last one (duplicate or late alarm).
    StalePoll,
    /// `Complete` without any output.
    EmptyOutput,
    /// The watchdog is not due yet.
    NotDue,
    /// The rows of the step are already confirmed (or the step is not final).
    RowsSettled,
    /// No webhook delivery is pending for the step.
    NoWebhook,
}

/// Why a command was refused; nothing is persisted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    /// SPEC §4.1: 409 `task_conflict`.
    #[error("task_id belongs to another user")]
    OtherOwner,
    /// SPEC §4.1: 409 `task_conflict`.
    #[error("the {step} step is {status} with a different request", step = step.as_str(), status = status.as_str())]
    DifferentRequest { step: Step, status: Status },
    #[error("no such task")]
    UnknownTask,
    #[error("the task has no {} step", .0.as_str())]
    UnknownStep(Step),
    /// The Durable Object received a submission for another task id (a routing bug).
    #[error("submission for another task id")]
    WrongTask,
}

impl Refusal {
    /// Whether this is the client-facing 409 `task_conflict`.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Refusal::OtherOwner | Refusal::DifferentRequest { .. })
    }
}

// ---------------------------------------------------------------------------------------------
// Transitions
// ---------------------------------------------------------------------------------------------

/// Applies one command. On `Ok`, persist the state unless the outcome is `Skip` (then it is
/// unchanged); on `Err`, persist nothing.
pub fn apply(
    state: Option<TaskState>,
    cmd: Command,
    now_ms: u64,
) -> Result<(TaskState, Outcome), Refusal> {
    let before = state.clone();
    let (mut after, outcome) = apply_command(state, cmd, now_ms)?;
    if !matches!(outcome, Outcome::Skip(_)) && super::live::changed(before.as_ref(), &after) {
        after.version = before
            .as_ref()
            .map_or(0, |b| b.version.max(after.version))
            .saturating_add(1);
    }
    Ok((after, outcome))
}

fn apply_command(
    state: Option<TaskState>,
    cmd: Command,
    now_ms: u64,
) -> Result<(TaskState, Outcome), Refusal> {
    match cmd {
        Command::Submit(sub) => submit(state, sub, now_ms),
        Command::MarkEnqueued { step, attempt } => {
            on_step(state, step, attempt, now_ms, mark_enqueued)
        }
        Command::AbortSubmit { step, attempt } => abort_submit(state, step, attempt, now_ms),
        Command::ClaimJob {
            step,
            attempt,
            kind,
            lease_ms,
            create,
        } => on_step(state, step, attempt, now_ms, |s, now| {
            claim(s, kind, lease_ms, now)?;
            Ok(claim_create(s, kind, create))
        }),
        Command::ReleaseJob {
            step,
            attempt,
            message,
            retry_at_ms,
            create_settled,
        } => on_step(state, step, attempt, now_ms, |s, now| {
            if create_settled {
                s.job.create_in_flight = false;
            }
            release(s, message, retry_at_ms, now)
        }),
        Command::RenewClaim { step, attempt } => on_step(state, step, attempt, now_ms, renew_claim),
        Command::CreateStarting { step, attempt } => {
            on_step(state, step, attempt, now_ms, |s, _| create_starting(s))
        }
        Command::CreateSettled { step, attempt } => {
            on_step(state, step, attempt, now_ms, |s, _| create_settled(s))
        }
        Command::ProviderTaskCreated {
            step,
            attempt,
            provider_task_id,
            timeout_ms,
            next_poll_at_ms,
        } => on_step(state, step, attempt, now_ms, |s, now| {
            provider_created(s, provider_task_id, timeout_ms, next_poll_at_ms, now)
        }),
        Command::PollResult {
            step,
            attempt,
            poll,
            observation,
            next_poll_at_ms,
        } => on_step(state, step, attempt, now_ms, |s, now| {
            poll_result(s, poll, observation, next_poll_at_ms, now)
        }),
        Command::RequeueFinalize { step, attempt } => {
            on_step(state, step, attempt, now_ms, requeue_finalize)
        }
        Command::Sweep => sweep(state, now_ms),
        Command::Complete {
            step,
            attempt,
            asset_urls,
        } => on_step(state, step, attempt, now_ms, |s, now| {
            complete(s, asset_urls, now)
        }),
        Command::Fail {
            step,
            attempt,
            error,
        } => on_step(state, step, attempt, now_ms, |s, now| fail(s, error, now)),
        Command::RowsSynced { step, attempt } => rows_synced(state, step, attempt),
        Command::Cancel { owner, step } => cancel(state, owner, step, now_ms),
        Command::WebhookRetry {
            step,
            attempt,
            retry_at_ms,
        } => webhook_noted(state, step, attempt, Some(retry_at_ms)),
        Command::WebhookDelivered { step, attempt } => webhook_noted(state, step, attempt, None),
        Command::AwaitSlot {
            step,
            attempt,
            position,
        } => on_step(state, step, attempt, now_ms, |s, now| {
            await_slot(s, position, now)
        }),
    }
}

/// Cancels the owner's unfinished steps (all, or `only`). Nothing unfinished: `Skip`.
fn cancel(
    state: Option<TaskState>,
    owner: UserId,
    only: Option<Step>,
    now: u64,
) -> Result<(TaskState, Outcome), Refusal> {
    let mut state = state.ok_or(Refusal::UnknownTask)?;
    if state.owner != owner {
        return Err(Refusal::OtherOwner);
    }
    if let Some(step) = only {
        if !state.steps.contains_key(&step) {
            return Err(Refusal::UnknownStep(step));
        }
    }
    let mut steps = Vec::new();
    for (step, s) in &mut state.steps {
        if only.is_some_and(|o| o != *step) || s.status.is_terminal() {
            continue;
        }
        let error = StepError::new(CANCELLED_CODE, "cancelled by the user");
        if fail(s, error, now).is_ok() {
            s.updated_at_ms = now;
            steps.push(*step);
        }
    }
    if steps.is_empty() {
        let status = only
            .and_then(|o| state.steps.get(&o))
            .map_or(Status::Failed, |s| s.status);
        return Ok((state, Outcome::Skip(SkipReason::Terminal(status))));
    }
    state.updated_at_ms = now;
    Ok((state, Outcome::Cancelled { steps }))
}

/// The webhook job reports: a retry is scheduled (`retry_at`), or the delivery ended (`None`).
/// Nothing the client sees changes.
fn webhook_noted(
    state: Option<TaskState>,
    step: Step,
    attempt: u32,
    retry_at: Option<u64>,
) -> Result<(TaskState, Outcome), Refusal> {
    let mut state = state.ok_or(Refusal::UnknownTask)?;
    let s = state
        .steps
        .get_mut(&step)
        .ok_or(Refusal::UnknownStep(step))?;
    if s.attempt != attempt {
        return Ok((state, Outcome::Skip(SkipReason::StaleAttempt)));
    }
    let Some(due) = s.webhook.as_mut() else {
        return Ok((state, Outcome::Skip(SkipReason::NoWebhook)));
    };
    match retry_at {
        Some(at) => due.check_at_ms = at.saturating_add(WEBHOOK_CHECK_MS),
        None => s.webhook = None,
    }
    Ok((state, Outcome::WebhookNoted))
}

/// Settles the rows check of a final step. The step's `updated_at_ms` does not move: nothing
/// the client sees changed.
fn rows_synced(
    state: Option<TaskState>,
    step: Step,
    attempt: u32,
) -> Result<(TaskState, Outcome), Refusal> {
    let mut state = state.ok_or(Refusal::UnknownTask)?;
    let s = state
        .steps
        .get_mut(&step)
        .ok_or(Refusal::UnknownStep(step))?;
    if s.attempt != attempt {
        return Ok((state, Outcome::Skip(SkipReason::StaleAttempt)));
    }
    if !s.status.is_terminal() || s.rows.is_settled() {
        return Ok((state, Outcome::Skip(SkipReason::RowsSettled)));
    }
    s.rows = RowsCheck {
        check_at_ms: None,
        resyncs: s.rows.resyncs,
    };
    Ok((state, Outcome::RowsConfirmed))
}

/// Runs a job transition on one step. `Err(reason)` from `f` means "skip, nothing changed";
/// otherwise the step's and the task's `updated_at_ms` move to `now_ms`.
fn on_step(
    state: Option<TaskState>,
    step: Step,
    attempt: u32,
    now_ms: u64,
    f: impl FnOnce(&mut StepState, u64) -> Result<Outcome, SkipReason>,
) -> Result<(TaskState, Outcome), Refusal> {
    let mut state = state.ok_or(Refusal::UnknownTask)?;
    let current = state.steps.get(&step).ok_or(Refusal::UnknownStep(step))?;
    if current.attempt != attempt {
        return Ok((state, Outcome::Skip(SkipReason::StaleAttempt)));
    }
    let mut next = current.clone();
    match f(&mut next, now_ms) {
        Err(reason) => Ok((state, Outcome::Skip(reason))),
        Ok(outcome) => {
            next.updated_at_ms = now_ms;
            state.steps.insert(step, next);
            state.updated_at_ms = now_ms;
            Ok((state, outcome))
        }
    }
}

fn submit(
    state: Option<TaskState>,
    sub: Submission,
    now_ms: u64,
) -> Result<(TaskState, Outcome), Refusal> {
    let step = sub.request.step();
    let fp = fingerprint(&sub.request);
    let mut state = match state {
        Some(s) if s.task_id != sub.task_id => return Err(Refusal::WrongTask),
        Some(s) if s.owner != sub.owner => return Err(Refusal::OtherOwner),
        Some(s) => s,
        None => TaskState {
            task_id: sub.task_id.clone(),
            owner: sub.owner,
            steps: BTreeMap::new(),
            submissions: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            version: 0,
        },
    };
    let outcome = match state.steps.get(&step) {
        None => Outcome::Created,
        Some(existing) if existing.status == Status::Failed => Outcome::Retry,
        Some(existing) if existing.fingerprint != fp => {
            return Err(Refusal::DifferentRequest {
                step,
                status: existing.status,
            })
        }
        Some(existing)
            if existing.status == Status::Pending
                && !existing.enqueued
                && now_ms.saturating_sub(existing.submitted_at_ms) >= RESUME_AFTER_MS =>
        {
            return Ok((state, Outcome::Resume));
        }
        Some(_) => return Ok((state, Outcome::Existing)),
    };
    state.submissions += 1;
    let mut fresh = new_step(&state.task_id, sub.request, fp, state.submissions, now_ms);
    fresh.deadline_ms = sub.deadline_ms;
    if let Some(failed) = state.steps.remove(&step) {
        fresh.attempt = failed.attempt + 1;
        fresh.previous = Some(Box::new(StepState {
            previous: None,
            ..failed
        }));
    }
    state.steps.insert(step, fresh);
    state.updated_at_ms = now_ms;
    Ok((state, outcome))
}

fn new_step(
    task: &TaskId,
    request: StepRequest,
    fingerprint: String,
    submission: u64,
    now_ms: u64,
) -> StepState {
    let step = request.step();
    let row_ids = (0..request.output_count())
        .map(|i| row_id(task, step, i))
        .collect();
    StepState {
        status: Status::Pending,
        progress: 0,
        request,
        fingerprint,
        row_ids,
        provider_task_id: None,
        asset_urls: Vec::new(),
        error: None,
        attempt: 1,
        submission,
        enqueued: false,
        job: JobProgress::default(),
        poll: None,
        submitted_at_ms: now_ms,
        updated_at_ms: now_ms,
        previous: None,
        deadline_ms: DEFAULT_STEP_DEADLINE_MS,
        rows: RowsCheck::default(),
        webhook: None,
    }
}

fn mark_enqueued(s: &mut StepState, _now: u64) -> Result<Outcome, SkipReason> {
    if s.status != Status::Pending || s.enqueued {
        return Err(SkipReason::AlreadyEnqueued);
    }
    s.enqueued = true;
    s.previous = None;
    Ok(Outcome::Enqueued)
}

fn abort_submit(
    state: Option<TaskState>,
    step: Step,
    attempt: u32,
    now_ms: u64,
) -> Result<(TaskState, Outcome), Refusal> {
    let mut state = state.ok_or(Refusal::UnknownTask)?;
    let current = state.steps.get(&step).ok_or(Refusal::UnknownStep(step))?;
    if current.attempt != attempt {
        return Ok((state, Outcome::Skip(SkipReason::StaleAttempt)));
    }
    let abortable =
        current.status == Status::Pending && !current.enqueued && current.job.job_attempts == 0;
    if !abortable {
        return Ok((state, Outcome::Skip(SkipReason::NotAbortable)));
    }
    let removed = state.steps.remove(&step);
    if let Some(previous) = removed.and_then(|s| s.previous) {
        state.steps.insert(step, *previous);
    }
    state.updated_at_ms = now_ms;
    let delete_task = state.steps.is_empty();
    Ok((state, Outcome::Aborted { delete_task }))
}

fn claim(s: &mut StepState, kind: JobKind, lease_ms: u64, now: u64) -> Result<Outcome, SkipReason> {
    let phase = s.phase();
    let runnable = match (kind, phase) {
        (_, Phase::Done) => return Err(SkipReason::Terminal(s.status)),
        (JobKind::Run, Phase::Queued | Phase::Running) | (JobKind::Finalize, Phase::Finalizing) => {
            true
        }
        _ => false,
    };
    if !runnable {
        return Err(SkipReason::WrongPhase(phase));
    }
    if s.has_live_claim(now, lease_ms) {
        return Err(SkipReason::AlreadyClaimed);
    }
    s.status = Status::Processing;
    s.enqueued = true;
    s.previous = None;
    s.job.claimed_at_ms = Some(now);
    s.job.job_attempts += 1;
    s.job.retry_at_ms = None;
    s.job.slot_wait = None;
    Ok(Outcome::Run)
}

/// After a granted run claim with `create`: records the creation as starting when the step
/// creates at once and no earlier creation's answer was lost ([`Outcome::RunCreate`]); any other
/// case stays [`Outcome::Run`] (the job sends `CreateStarting` itself, which knows the rest).
fn claim_create(s: &mut StepState, kind: JobKind, create: bool) -> Outcome {
    let at_once = create
        && kind == JobKind::Run
        && s.provider_task_id.is_none()
        && !s.job.create_in_flight
        && s.request.creates_at_claim();
    if !at_once {
        return Outcome::Run;
    }
    s.job.creates = s.job.creates.saturating_add(1);
    s.job.create_in_flight = true;
    Outcome::RunCreate
}

fn await_slot(s: &mut StepState, position: u32, now: u64) -> Result<Outcome, SkipReason> {
    let phase = s.phase();
    if !matches!(phase, Phase::Queued | Phase::Running) {
        return Err(SkipReason::WrongPhase(phase));
    }
    if s.job.claimed_at_ms.is_some() {
        return Err(SkipReason::AlreadyClaimed);
    }
    s.enqueued = true;
    let since_ms = s.job.slot_wait.map_or(now, |w| w.since_ms);
    s.job.slot_wait = Some(SlotWait {
        since_ms,
        position,
        asked_at_ms: now,
    });
    Ok(Outcome::AwaitingSlot)
}

fn release(
    s: &mut StepState,
    message: String,
    retry_at_ms: Option<u64>,
    now: u64,
) -> Result<Outcome, SkipReason> {
    if s.status.is_terminal() {
        return Err(SkipReason::Terminal(s.status));
    }
    if s.job.claimed_at_ms.is_none() {
        return Err(SkipReason::NotClaimed);
    }
    s.job.claimed_at_ms = None;
    s.job.last_error = Some(StepError::new("", message).message);
    s.job.retry_at_ms = Some(retry_at_ms.unwrap_or(now));
    Ok(Outcome::Released)
}

fn renew_claim(s: &mut StepState, now: u64) -> Result<Outcome, SkipReason> {
    if s.status.is_terminal() {
        return Err(SkipReason::Terminal(s.status));
    }
    if s.job.claimed_at_ms.is_none() {
        return Err(SkipReason::NotClaimed);
    }
    s.job.claimed_at_ms = Some(now);
    Ok(Outcome::Run)
}

fn create_starting(s: &mut StepState) -> Result<Outcome, SkipReason> {
    match (&s.provider_task_id, s.phase()) {
        (_, Phase::Done) => return Err(SkipReason::Terminal(s.status)),
        (Some(_), _) => return Err(SkipReason::AlreadyRecorded),
        (None, Phase::Running) => {}
        (None, phase) => return Err(SkipReason::WrongPhase(phase)),
    }
    let uncertain = s.job.create_in_flight;
    if uncertain && s.job.creates >= MAX_CREATES {
        return Ok(Outcome::CreateRefused);
    }
    s.job.creates = s.job.creates.saturating_add(1);
    s.job.create_in_flight = true;
    Ok(Outcome::Create { uncertain })
}

fn create_settled(s: &mut StepState) -> Result<Outcome, SkipReason> {
    if s.status.is_terminal() {
        return Err(SkipReason::Terminal(s.status));
    }
    if !s.job.create_in_flight {
        return Err(SkipReason::NotClaimed);
    }
    s.job.create_in_flight = false;
    Ok(Outcome::Released)
}

fn provider_created(
    s: &mut StepState,
    provider_task_id: String,
    timeout_ms: u64,
    next_poll_at_ms: u64,
    now: u64,
) -> Result<Outcome, SkipReason> {
    match (&s.provider_task_id, s.phase()) {
        (_, Phase::Done) => return Err(SkipReason::Terminal(s.status)),
        (Some(id), _) if *id == provider_task_id => return Err(SkipReason::AlreadyRecorded),
        (Some(_), _) => return Err(SkipReason::OtherProviderTask),
        (None, Phase::Running) => {}
        (None, phase) => return Err(SkipReason::WrongPhase(phase)),
    }
    s.provider_task_id = Some(provider_task_id);
    s.job.claimed_at_ms = None; // the run job is done; the alarm takes over
    s.job.create_in_flight = false;
    s.poll = Some(PollState {
        polls: 0,
        started_at_ms: now,
        deadline_ms: now.saturating_add(timeout_ms),
        next_poll_at_ms: Some(next_poll_at_ms),
        provider_status: ProviderStatus::Queued,
        running_left_time: None,
        queuing_num: None,
        succeeded_at_ms: None,
        unknown_since_ms: None,
        consecutive_errors: 0,
    });
    Ok(Outcome::Polling { next_poll_at_ms })
}

fn poll_result(
    s: &mut StepState,
    poll: u32,
    observation: Observation,
    next_poll_at_ms: u64,
    now: u64,
) -> Result<Outcome, SkipReason> {
    let phase = s.phase();
    if phase == Phase::Done {
        return Err(SkipReason::Terminal(s.status));
    }
    if phase != Phase::AwaitingProvider {
        return Err(SkipReason::WrongPhase(phase));
    }
    let mut progress = s.progress;
    let p = s.poll.as_mut().ok_or(SkipReason::WrongPhase(phase))?;
    if poll != p.polls + 1 {
        return Err(SkipReason::StalePoll);
    }
    p.polls = poll;
    let outcome = match observation {
        Observation::Succeeded => {
            p.provider_status = ProviderStatus::Success;
            p.succeeded_at_ms = Some(now);
            p.next_poll_at_ms = None;
            p.running_left_time = None;
            p.queuing_num = None;
            p.unknown_since_ms = None;
            p.consecutive_errors = 0;
            progress = MAX_UNFINISHED_PROGRESS;
            Outcome::Finalize
        }
        Observation::Waiting {
            status,
            progress: reported,
            running_left_time,
            queuing_num,
        } => {
            if status != ProviderStatus::Success {
                p.provider_status = status;
            }
            if status == ProviderStatus::Unknown {
                p.unknown_since_ms.get_or_insert(now);
            } else {
                p.unknown_since_ms = None;
            }
            p.consecutive_errors = 0;
            p.running_left_time = running_left_time;
            p.queuing_num = queuing_num;
            if let Some(r) = reported {
                progress = progress.max(r.min(MAX_UNFINISHED_PROGRESS));
            }
            p.next_poll_at_ms = Some(next_poll_at_ms);
            Outcome::Polling { next_poll_at_ms }
        }
        Observation::Unreachable { message } => {
            p.consecutive_errors = p.consecutive_errors.saturating_add(1);
            s.job.last_error = Some(StepError::new("", message).message);
            p.next_poll_at_ms = Some(next_poll_at_ms);
            Outcome::Polling { next_poll_at_ms }
        }
    };
    let deadline = p.deadline_ms;
    let started = p.started_at_ms;
    s.progress = progress;
    if matches!(outcome, Outcome::Polling { .. }) && now >= deadline {
        let budget_s = deadline.saturating_sub(started) / 1000;
        let budget = match budget_s {
            60 => "1 minute".to_owned(),
            s if s % 60 == 0 => format!("{} minutes", s / 60),
            s => format!("{s} seconds"),
        };
        return fail(
            s,
            StepError::new(
                PROVIDER_TIMEOUT_CODE,
                format!("timed out: the provider did not finish within {budget}"),
            ),
            now,
        );
    }
    Ok(outcome)
}

fn requeue_finalize(s: &mut StepState, now: u64) -> Result<Outcome, SkipReason> {
    let phase = s.phase();
    if phase == Phase::Done {
        return Err(SkipReason::Terminal(s.status));
    }
    if phase != Phase::Finalizing {
        return Err(SkipReason::WrongPhase(phase));
    }
    if s.has_live_claim(now, DEFAULT_LEASE_MS) {
        return Err(SkipReason::AlreadyClaimed);
    }
    match s.finalize_watchdog_at_ms() {
        Some(at) if now >= at => {}
        _ => return Err(SkipReason::NotDue),
    }
    // An expired claim is dropped; `updated_at_ms` (set by the caller) restarts the watchdog.
    s.job.claimed_at_ms = None;
    Ok(Outcome::Finalize)
}

/// What the Durable Object does after an applied command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    /// Write the new state.
    pub persist: bool,
    /// Delete the task's storage (its only step was aborted).
    pub delete_task: bool,
    /// Set the alarm from [`TaskState::next_alarm_ms`]. Always, unless the task is deleted:
    /// also after a `Skip`, so an alarm lost by the runtime (or never set) is armed again by
    /// the next command that reaches the task.
    pub arm: bool,
}

/// The effects of `outcome` (see [`Effects`]).
pub fn effects(outcome: &Outcome) -> Effects {
    match outcome {
        Outcome::Skip(_) => Effects {
            persist: false,
            delete_task: false,
            arm: true,
        },
        Outcome::Aborted { delete_task: true } => Effects {
            persist: false,
            delete_task: true,
            arm: false,
        },
        _ => Effects {
            persist: true,
            delete_task: false,
            arm: true,
        },
    }
}

/// What the Durable Object does with its alarm after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmOp {
    /// The alarm already set serves: leave it.
    Keep,
    /// Set it to this time.
    Set(u64),
    /// Nothing is left to watch: delete the one set.
    Delete,
}

/// The alarm for a state whose next time is `wanted` ([`TaskState::next_alarm_ms`]), given the
/// one set already (`armed`; `None`: none, or not known). One set earlier is kept: it only wakes
/// the object for a sweep with nothing due, which sets the next time then — so a job's claim or
/// its lease renewals, which push the watchdog further out, cost no alarm write.
pub fn alarm_op(armed: Option<u64>, wanted: Option<u64>) -> AlarmOp {
    match (armed, wanted) {
        (Some(a), Some(w)) if a <= w => AlarmOp::Keep,
        (_, Some(w)) => AlarmOp::Set(w),
        (Some(_), None) => AlarmOp::Delete,
        (None, None) => AlarmOp::Keep,
    }
}

/// The alarm's sweep (SPEC §6: every state has a way out). For each unfinished step:
/// past its deadline → `failed` (`timeout`, or `provider_timeout` while waiting for the
/// provider); else, when its watchdog is due → its job message is sent again (a pending step's
/// run, a running step's run once its claim expired or its retry never came, a finalizing step's
/// finalize), and the watchdog moves on. A duplicate message is harmless: claims are leases.
fn sweep(state: Option<TaskState>, now: u64) -> Result<(TaskState, Outcome), Refusal> {
    let mut state = state.ok_or(Refusal::UnknownTask)?;
    let mut requeue = Vec::new();
    let mut failed = Vec::new();
    let mut resync = Vec::new();
    let mut webhooks = Vec::new();
    let mut webhooks_given_up = false;
    for (step, s) in &mut state.steps {
        let phase = s.phase();
        if phase == Phase::Done {
            if s.rows.check_at_ms.is_some_and(|at| now >= at) {
                s.rows = s.rows.after_resync(now);
                resync.push(*step);
            }
            if let Some(due) = s.webhook.as_mut().filter(|d| now >= d.check_at_ms) {
                if now >= due.since_ms.saturating_add(WEBHOOK_WINDOW_MS) {
                    // Given up: the job logs each failed try; the window is over.
                    s.webhook = None;
                    webhooks_given_up = true;
                } else {
                    due.check_at_ms = now.saturating_add(WEBHOOK_CHECK_MS);
                    webhooks.push(*step);
                }
            }
            continue;
        }
        if s.deadline_at_ms().is_some_and(|at| now >= at) {
            let error = if phase == Phase::AwaitingProvider {
                StepError::new(
                    PROVIDER_TIMEOUT_CODE,
                    "timed out: the provider task could not be checked before the deadline",
                )
            } else {
                let minutes = s.deadline_ms / 60_000;
                StepError::new(
                    TIMEOUT_CODE,
                    format!(
                        "timed out: the step did not finish within {minutes} minutes ({})",
                        s.job
                            .last_error
                            .as_deref()
                            .unwrap_or("its job never completed")
                    ),
                )
            };
            if fail(s, error, now).is_ok() {
                s.updated_at_ms = now;
                failed.push(*step);
            }
            continue;
        }
        if s.watchdog_at_ms().is_none_or(|at| now < at) {
            continue;
        }
        let kind = match phase {
            Phase::Queued | Phase::Running => JobKind::Run,
            Phase::Finalizing => JobKind::Finalize,
            Phase::AwaitingProvider | Phase::Done => continue,
        };
        // An expired claim is dropped: its job is presumed dead.
        s.job.claimed_at_ms = None;
        s.job.requeued_at_ms = Some(now);
        s.updated_at_ms = now;
        requeue.push(Requeue {
            step: *step,
            attempt: s.attempt,
            kind,
            try_no: s.job.job_attempts.saturating_add(1),
        });
    }
    if requeue.is_empty() && failed.is_empty() && resync.is_empty() && webhooks.is_empty() {
        // A webhook given up changed the state: persist it (nothing else to do).
        if !webhooks_given_up {
            return Ok((state, Outcome::Skip(SkipReason::NotDue)));
        }
    }
    if !requeue.is_empty() || !failed.is_empty() {
        state.updated_at_ms = now;
    }
    Ok((
        state,
        Outcome::Swept {
            requeue,
            failed,
            resync,
            webhooks,
        },
    ))
}

fn complete(s: &mut StepState, asset_urls: Vec<String>, now: u64) -> Result<Outcome, SkipReason> {
    let phase = s.phase();
    let expected = match s.step() {
        Step::Concepts => Phase::Running,
        Step::Model | Step::Refine => Phase::Finalizing,
    };
    if phase == Phase::Done {
        return Err(SkipReason::Terminal(s.status));
    }
    if phase != expected {
        return Err(SkipReason::WrongPhase(phase));
    }
    if asset_urls.is_empty() {
        return Err(SkipReason::EmptyOutput);
    }
    s.status = Status::Complete;
    s.rows = RowsCheck::due_after_final(now);
    s.webhook = webhook_due(s, now);
    s.progress = 100;
    s.asset_urls = asset_urls;
    s.error = None;
    s.job.claimed_at_ms = None;
    if let Some(p) = s.poll.as_mut() {
        p.next_poll_at_ms = None;
    }
    Ok(Outcome::Completed)
}

/// The webhook of a step that becomes final at `now`, if it has a `webhook_url`.
fn webhook_due(s: &StepState, now: u64) -> Option<WebhookDue> {
    s.request.webhook_url().map(|_| WebhookDue {
        since_ms: now,
        check_at_ms: now.saturating_add(WEBHOOK_CHECK_MS),
    })
}

fn fail(s: &mut StepState, error: StepError, now: u64) -> Result<Outcome, SkipReason> {
    if s.status.is_terminal() {
        return Err(SkipReason::Terminal(s.status));
    }
    s.status = Status::Failed;
    s.rows = RowsCheck::due_after_final(now);
    s.webhook = webhook_due(s, now);
    s.error = Some(StepError::new(error.code, error.message));
    s.job.claimed_at_ms = None;
    if let Some(p) = s.poll.as_mut() {
        p.next_poll_at_ms = None;
    }
    Ok(Outcome::Failed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_alarm_set_earlier_is_kept_a_later_one_moved_and_none_left_deleted() {
        assert_eq!(alarm_op(Some(10), Some(20)), AlarmOp::Keep);
        assert_eq!(alarm_op(Some(20), Some(20)), AlarmOp::Keep);
        assert_eq!(alarm_op(Some(30), Some(20)), AlarmOp::Set(20));
        assert_eq!(alarm_op(None, Some(20)), AlarmOp::Set(20));
        assert_eq!(alarm_op(Some(30), None), AlarmOp::Delete);
        assert_eq!(alarm_op(None, None), AlarmOp::Keep);
    }

    use super::*;
    use crate::request::{parse, Endpoint};

    const T0: u64 = 1_000_000;
    const LEASE: u64 = 60_000;
    const NEXT_POLL: u64 = T0 + 5_000;
    const TIMEOUT: u64 = 30 * 60_000;

    fn owner() -> UserId {
        UserId(Uuid::from_u128(1))
    }

    fn task_id() -> TaskId {
        TaskId::parse("t-1").unwrap()
    }

    fn request(endpoint: Endpoint, body: serde_json::Value) -> StepRequest {
        parse(endpoint, body.to_string().as_bytes())
            .unwrap()
            .request
    }

    fn model(prompt: &str) -> StepRequest {
        request(
            Endpoint::TextToModel,
            serde_json::json!({"task_id": "t-1", "prompt": prompt}),
        )
    }

    fn concepts(n: u8) -> StepRequest {
        request(
            Endpoint::ImageToImage,
            serde_json::json!({"task_id": "t-1", "prompt": "p", "n": n,
                "input_image_asset_url": "https://a.supabase.co/storage/v1/object/public/b/a.png"}),
        )
    }

    fn submit_cmd(req: StepRequest) -> Command {
        Command::Submit(Submission {
            owner: owner(),
            task_id: task_id(),
            request: req,
            deadline_ms: DEFAULT_STEP_DEADLINE_MS,
        })
    }

    /// Applies a command that must succeed.
    fn run(state: Option<TaskState>, cmd: Command, now: u64) -> (TaskState, Outcome) {
        apply(state, cmd.clone(), now).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    fn step_of(state: &TaskState, step: Step) -> &StepState {
        &state.steps[&step]
    }

    // Job commands on the model step, at the step's current attempt and poll number.
    fn claim(kind: JobKind, attempt: u32) -> Command {
        Command::ClaimJob {
            step: Step::Model,
            attempt,
            kind,
            lease_ms: LEASE,
            create: false,
        }
    }

    fn created(attempt: u32, id: &str) -> Command {
        Command::ProviderTaskCreated {
            step: Step::Model,
            attempt,
            provider_task_id: id.into(),
            timeout_ms: TIMEOUT,
            next_poll_at_ms: NEXT_POLL,
        }
    }

    fn polled(state: &TaskState, observation: Observation) -> Command {
        let s = step_of(state, Step::Model);
        Command::PollResult {
            step: Step::Model,
            attempt: s.attempt,
            poll: s.next_poll_number(),
            observation,
            next_poll_at_ms: NEXT_POLL,
        }
    }

    fn waiting(progress: u8) -> Observation {
        Observation::Waiting {
            status: ProviderStatus::Running,
            progress: Some(progress),
            running_left_time: Some(30),
            queuing_num: None,
        }
    }

    fn completed(attempt: u32) -> Command {
        Command::Complete {
            step: Step::Model,
            attempt,
            asset_urls: vec!["https://a/models/t-1/model.glb".into()],
        }
    }

    fn failed(attempt: u32) -> Command {
        Command::Fail {
            step: Step::Model,
            attempt,
            error: StepError::new("bad_input", "Tripo said no"),
        }
    }

    /// The model step driven to a named situation, each a step further than the previous.
    fn fixture(name: &str) -> TaskState {
        let (s, _) = run(None, submit_cmd(model("cat")), T0);
        if name == "pending" {
            return s;
        }
        if name == "claimed_unenqueued" {
            return run(Some(s), claim(JobKind::Run, 1), T0 + 1).0;
        }
        let mark = Command::MarkEnqueued {
            step: Step::Model,
            attempt: 1,
        };
        let (s, _) = run(Some(s), mark, T0 + 1);
        if name == "enqueued" {
            return s;
        }
        let (s, _) = run(Some(s), claim(JobKind::Run, 1), T0 + 2);
        if name == "running" {
            return s;
        }
        if name == "failed" || name == "retry" {
            let (s, _) = run(Some(s), failed(1), T0 + 3);
            if name == "failed" {
                return s;
            }
            return run(Some(s), submit_cmd(model("dog")), T0 + 4).0;
        }
        if name == "released" {
            let release = Command::ReleaseJob {
                step: Step::Model,
                attempt: 1,
                message: "503".into(),
                retry_at_ms: None,
                create_settled: false,
            };
            return run(Some(s), release, T0 + 3).0;
        }
        let (s, _) = run(Some(s), created(1, "tr-1"), T0 + 3);
        if name == "awaiting" {
            return s;
        }
        let cmd = polled(&s, Observation::Succeeded);
        let (s, _) = run(Some(s), cmd, T0 + 4);
        if name == "finalizing" {
            return s;
        }
        let (s, _) = run(Some(s), claim(JobKind::Finalize, 1), T0 + 5);
        if name == "finalize_claimed" {
            return s;
        }
        let (s, _) = run(Some(s), completed(1), T0 + 6);
        assert_eq!(name, "complete", "unknown fixture");
        s
    }

    fn label(result: &Result<(TaskState, Outcome), Refusal>) -> String {
        match result {
            Err(r) => format!("Refused({r:?})"),
            Ok((_, Outcome::Skip(reason))) => format!("{reason:?}"),
            Ok((_, Outcome::Aborted { delete_task })) => format!("Aborted({delete_task})"),
            Ok((_, Outcome::Polling { .. })) => "Polling".into(),
            Ok((_, o)) => format!("{o:?}"),
        }
    }

    const COMMANDS: [&str; 10] = [
        "mark",
        "abort",
        "claim_run",
        "claim_fin",
        "release",
        "created",
        "poll",
        "poll_ok",
        "complete",
        "fail",
    ];

    fn command(name: &str, state: &TaskState) -> Command {
        let attempt = step_of(state, Step::Model).attempt;
        match name {
            "mark" => Command::MarkEnqueued {
                step: Step::Model,
                attempt,
            },
            "abort" => Command::AbortSubmit {
                step: Step::Model,
                attempt,
            },
            "claim_run" => claim(JobKind::Run, attempt),
            "claim_fin" => claim(JobKind::Finalize, attempt),
            "release" => Command::ReleaseJob {
                step: Step::Model,
                attempt,
                message: "timeout".into(),
                retry_at_ms: None,
                create_settled: false,
            },
            "created" => created(attempt, "tr-1"),
            "poll" => polled(state, waiting(50)),
            "poll_ok" => polled(state, Observation::Succeeded),
            "complete" => completed(attempt),
            "fail" => failed(attempt),
            other => panic!("{other}"),
        }
    }

    /// Every (situation, command) pair and its expected outcome. Commands are applied at
    /// `T0 + 10`, inside the lease of any claim taken by the fixture.
    #[rustfmt::skip]
    const TABLE: [(&str, [&str; 10]); 10] = [
        //                      mark               abort                 claim_run                       claim_fin                              release       created                           poll                                  poll_ok                               complete                              fail
        ("pending",            ["Enqueued",        "Aborted(true)",      "Run",                          "WrongPhase(Queued)",                  "NotClaimed", "WrongPhase(Queued)",             "WrongPhase(Queued)",                 "WrongPhase(Queued)",                 "WrongPhase(Queued)",                 "Failed"]),
        ("claimed_unenqueued", ["AlreadyEnqueued", "NotAbortable",       "AlreadyClaimed",               "WrongPhase(Running)",                 "Released",   "Polling",                        "WrongPhase(Running)",                "WrongPhase(Running)",                "WrongPhase(Running)",                "Failed"]),
        ("enqueued",           ["AlreadyEnqueued", "NotAbortable",       "Run",                          "WrongPhase(Queued)",                  "NotClaimed", "WrongPhase(Queued)",             "WrongPhase(Queued)",                 "WrongPhase(Queued)",                 "WrongPhase(Queued)",                 "Failed"]),
        ("running",            ["AlreadyEnqueued", "NotAbortable",       "AlreadyClaimed",               "WrongPhase(Running)",                 "Released",   "Polling",                        "WrongPhase(Running)",                "WrongPhase(Running)",                "WrongPhase(Running)",                "Failed"]),
        ("released",           ["AlreadyEnqueued", "NotAbortable",       "Run",                          "WrongPhase(Running)",                 "NotClaimed", "Polling",                        "WrongPhase(Running)",                "WrongPhase(Running)",                "WrongPhase(Running)",                "Failed"]),
        ("awaiting",           ["AlreadyEnqueued", "NotAbortable",       "WrongPhase(AwaitingProvider)", "WrongPhase(AwaitingProvider)",        "NotClaimed", "AlreadyRecorded",                "Polling",                            "Finalize",                           "WrongPhase(AwaitingProvider)",       "Failed"]),
        ("finalizing",         ["AlreadyEnqueued", "NotAbortable",       "WrongPhase(Finalizing)",       "Run",                                 "NotClaimed", "AlreadyRecorded",                "WrongPhase(Finalizing)",             "WrongPhase(Finalizing)",             "Completed",                          "Failed"]),
        ("finalize_claimed",   ["AlreadyEnqueued", "NotAbortable",       "WrongPhase(Finalizing)",       "AlreadyClaimed",                      "Released",   "AlreadyRecorded",                "WrongPhase(Finalizing)",             "WrongPhase(Finalizing)",             "Completed",                          "Failed"]),
        ("complete",           ["AlreadyEnqueued", "NotAbortable",       "Terminal(Complete)",           "Terminal(Complete)",                  "Terminal(Complete)", "Terminal(Complete)",     "Terminal(Complete)",                 "Terminal(Complete)",                 "Terminal(Complete)",                 "Terminal(Complete)"]),
        ("failed",             ["AlreadyEnqueued", "NotAbortable",       "Terminal(Failed)",             "Terminal(Failed)",                    "Terminal(Failed)", "Terminal(Failed)",         "Terminal(Failed)",                   "Terminal(Failed)",                   "Terminal(Failed)",                   "Terminal(Failed)"]),
    ];

    #[test]
    fn every_job_command_in_every_situation() {
        let now = T0 + 10;
        for (situation, expected) in TABLE {
            let state = fixture(situation);
            for (name, want) in COMMANDS.iter().zip(expected) {
                let result = apply(Some(state.clone()), command(name, &state), now);
                assert_eq!(label(&result), want, "{situation} + {name}");
                let Ok((after, outcome)) = result else {
                    continue;
                };
                if matches!(outcome, Outcome::Skip(_)) {
                    assert_eq!(
                        after, state,
                        "{situation} + {name}: a skip changed the state"
                    );
                    continue;
                }
                check_invariants(&after);
                // Idempotency: the same command again changes nothing.
                let again = apply(Some(after.clone()), command(name, &state), now + 1);
                match again {
                    Ok((twice, Outcome::Skip(_))) => {
                        assert_eq!(twice, after, "{situation} + {name} twice");
                    }
                    Err(Refusal::UnknownStep(_)) if name == &"abort" => {}
                    other => panic!("{situation} + {name} twice: {:?}", label(&other)),
                }
            }
        }
    }

    fn check_invariants(state: &TaskState) {
        for s in state.steps.values() {
            assert!(s.progress <= 100);
            assert_eq!(s.progress == 100, s.status == Status::Complete, "{s:?}");
            assert_eq!(s.error.is_some(), s.status == Status::Failed, "{s:?}");
            assert_eq!(
                s.asset_urls.is_empty(),
                s.status != Status::Complete,
                "{s:?}"
            );
            assert_eq!(s.row_ids.len() as u32, s.request.output_count());
            if s.status.is_terminal() {
                assert_eq!(s.job.claimed_at_ms, None);
                assert_eq!(s.poll.as_ref().and_then(|p| p.next_poll_at_ms), None);
            }
            assert!(s.updated_at_ms <= state.updated_at_ms);
        }
    }

    // --- Submit ------------------------------------------------------------------------------

    #[test]
    fn submit_creates_the_task_and_its_rows() {
        let (state, outcome) = run(None, submit_cmd(concepts(3)), T0);
        assert_eq!(outcome, Outcome::Created);
        assert_eq!(state.task_id, task_id());
        assert_eq!(state.owner, owner());
        assert_eq!(state.created_at_ms, T0);
        let s = step_of(&state, Step::Concepts);
        assert_eq!(s.status, Status::Pending);
        assert_eq!(s.attempt, 1);
        assert!(!s.enqueued);
        assert_eq!(s.fingerprint, fingerprint(&concepts(3)));
        assert_eq!(
            s.row_ids,
            (0..3)
                .map(|i| row_id(&task_id(), Step::Concepts, i))
                .collect::<Vec<_>>()
        );
        assert_eq!(state.last_submitted(), Some(Step::Concepts));
        check_invariants(&state);
    }

    #[test]
    fn second_step_joins_the_task() {
        let (state, _) = run(None, submit_cmd(concepts(2)), T0);
        let (state, outcome) = run(Some(state), submit_cmd(model("cat")), T0 + 1);
        assert_eq!(outcome, Outcome::Created);
        assert_eq!(state.steps.len(), 2);
        assert_eq!(state.last_submitted(), Some(Step::Model));
        assert_eq!(state.created_at_ms, T0);
        assert_eq!(state.updated_at_ms, T0 + 1);
        assert_eq!(
            step_of(&state, Step::Model).row_ids,
            vec![row_id(&task_id(), Step::Model, 0)]
        );
    }

    #[test]
    fn same_request_resumes_until_enqueued_then_is_existing() {
        let pending = fixture("pending");
        // Within the window the first submit is presumed alive: the repeat starts nothing.
        let (after, outcome) = run(Some(pending.clone()), submit_cmd(model("cat")), T0 + 50);
        assert_eq!(outcome, Outcome::Existing);
        assert_eq!(after, pending);
        let late = pending.steps[&Step::Model].submitted_at_ms + RESUME_AFTER_MS;
        let (after, outcome) = run(Some(pending.clone()), submit_cmd(model("cat")), late);
        assert_eq!(outcome, Outcome::Resume);
        assert_eq!(after, pending);
        for situation in ["enqueued", "running", "awaiting", "finalizing", "complete"] {
            let state = fixture(situation);
            let (after, outcome) = run(Some(state.clone()), submit_cmd(model("cat")), T0 + 50);
            assert_eq!(outcome, Outcome::Existing, "{situation}");
            assert_eq!(after, state, "{situation}");
        }
    }

    #[test]
    fn different_request_conflicts_unless_failed() {
        for (situation, status) in [
            ("pending", Status::Pending),
            ("enqueued", Status::Pending),
            ("running", Status::Processing),
            ("finalizing", Status::Processing),
            ("complete", Status::Complete),
        ] {
            let refusal =
                apply(Some(fixture(situation)), submit_cmd(model("dog")), T0 + 50).unwrap_err();
            assert_eq!(
                refusal,
                Refusal::DifferentRequest {
                    step: Step::Model,
                    status
                },
                "{situation}"
            );
            assert!(refusal.is_conflict());
        }
    }

    #[test]
    fn another_owner_or_task_is_refused() {
        let state = fixture("complete");
        let other_owner = Command::Submit(Submission {
            owner: UserId(Uuid::from_u128(2)),
            task_id: task_id(),
            request: model("cat"),
            deadline_ms: DEFAULT_STEP_DEADLINE_MS,
        });
        let refusal = apply(Some(state.clone()), other_owner, T0 + 50).unwrap_err();
        assert_eq!(refusal, Refusal::OtherOwner);
        assert!(refusal.is_conflict());
        let other_task = Command::Submit(Submission {
            owner: owner(),
            task_id: TaskId::parse("t-2").unwrap(),
            request: model("cat"),
            deadline_ms: DEFAULT_STEP_DEADLINE_MS,
        });
        let refusal = apply(Some(state), other_task, T0 + 50).unwrap_err();
        assert_eq!(refusal, Refusal::WrongTask);
        assert!(!refusal.is_conflict());
    }

    #[test]
    fn failed_step_is_retried_with_same_rows() {
        let failed_state = fixture("failed");
        let before = step_of(&failed_state, Step::Model).clone();
        for req in [model("cat"), model("dog")] {
            let (state, outcome) =
                run(Some(failed_state.clone()), submit_cmd(req.clone()), T0 + 50);
            assert_eq!(outcome, Outcome::Retry);
            let s = step_of(&state, Step::Model);
            assert_eq!(s.attempt, 2);
            assert_eq!(s.status, Status::Pending);
            assert_eq!(s.progress, 0);
            assert_eq!(s.error, None);
            assert_eq!(s.provider_task_id, None);
            assert_eq!(s.job, JobProgress::default());
            assert!(!s.enqueued);
            assert_eq!(s.row_ids, before.row_ids);
            assert_eq!(s.request, req);
            assert_eq!(s.submitted_at_ms, T0 + 50);
            assert_eq!(s.previous.as_deref(), Some(&before));
            check_invariants(&state);
        }
    }

    #[test]
    fn retry_with_other_n_recomputes_rows() {
        let (state, _) = run(None, submit_cmd(concepts(4)), T0);
        let fail = Command::Fail {
            step: Step::Concepts,
            attempt: 1,
            error: StepError::new("moderation", "refused"),
        };
        let (state, _) = run(Some(state), fail, T0 + 1);
        let (state, _) = run(Some(state), submit_cmd(concepts(2)), T0 + 2);
        let s = step_of(&state, Step::Concepts);
        assert_eq!(s.row_ids.len(), 2);
        assert_eq!(s.row_ids[1], row_id(&task_id(), Step::Concepts, 1));
    }

    #[test]
    fn retry_counts_as_latest_submission() {
        let (state, _) = run(None, submit_cmd(model("cat")), T0);
        let (state, _) = run(Some(state), failed(1), T0 + 1);
        let (state, _) = run(Some(state), submit_cmd(concepts(1)), T0 + 2);
        assert_eq!(state.last_submitted(), Some(Step::Concepts));
        let (state, _) = run(Some(state), submit_cmd(model("cat")), T0 + 3);
        assert_eq!(state.last_submitted(), Some(Step::Model));
    }

    // --- AbortSubmit -------------------------------------------------------------------------

    #[test]
    fn abort_restores_the_failed_attempt_and_a_repeat_succeeds() {
        let failed_state = fixture("failed");
        let retry = fixture("retry");
        let abort = Command::AbortSubmit {
            step: Step::Model,
            attempt: 2,
        };
        let (restored, outcome) = run(Some(retry), abort, T0 + 60);
        assert_eq!(outcome, Outcome::Aborted { delete_task: false });
        assert_eq!(restored.steps, failed_state.steps);
        assert_eq!(restored.last_submitted(), Some(Step::Model));
        let (again, outcome) = run(Some(restored), submit_cmd(model("dog")), T0 + 70);
        assert_eq!(outcome, Outcome::Retry);
        assert_eq!(step_of(&again, Step::Model).attempt, 2);
    }

    #[test]
    fn abort_of_a_new_step_keeps_the_other_steps() {
        let (state, _) = run(None, submit_cmd(concepts(1)), T0);
        let (with_model, _) = run(Some(state.clone()), submit_cmd(model("cat")), T0 + 1);
        let abort = Command::AbortSubmit {
            step: Step::Model,
            attempt: 1,
        };
        let (after, outcome) = run(Some(with_model), abort, T0 + 2);
        assert_eq!(outcome, Outcome::Aborted { delete_task: false });
        assert_eq!(after.steps, state.steps);
        assert_eq!(after.last_submitted(), Some(Step::Concepts));
        // The repeat is a fresh creation.
        let (_, outcome) = run(Some(after), submit_cmd(model("cat")), T0 + 3);
        assert_eq!(outcome, Outcome::Created);
    }

    #[test]
    fn abort_of_the_only_step_deletes_the_task() {
        let (after, outcome) = run(
            Some(fixture("pending")),
            Command::AbortSubmit {
                step: Step::Model,
                attempt: 1,
            },
            T0 + 1,
        );
        assert_eq!(outcome, Outcome::Aborted { delete_task: true });
        assert!(after.steps.is_empty());
        assert_eq!(after.last_submitted(), None);
    }

    // --- Claims ------------------------------------------------------------------------------

    #[test]
    fn claim_before_mark_enqueued_marks_it() {
        let state = fixture("claimed_unenqueued");
        let s = step_of(&state, Step::Model);
        assert!(s.enqueued);
        assert_eq!(s.status, Status::Processing);
        assert_eq!(s.job.job_attempts, 1);
        assert_eq!(s.job.claimed_at_ms, Some(T0 + 1));
    }

    #[test]
    fn expired_lease_can_be_retaken() {
        let state = fixture("running"); // claimed at T0 + 2
        let (same, outcome) = run(
            Some(state.clone()),
            claim(JobKind::Run, 1),
            T0 + 2 + LEASE - 1,
        );
        assert_eq!(outcome, Outcome::Skip(SkipReason::AlreadyClaimed));
        assert_eq!(same, state);
        let (retaken, outcome) = run(Some(state), claim(JobKind::Run, 1), T0 + 2 + LEASE);
        assert_eq!(outcome, Outcome::Run);
        let s = step_of(&retaken, Step::Model);
        assert_eq!(s.job.job_attempts, 2);
        assert_eq!(s.job.claimed_at_ms, Some(T0 + 2 + LEASE));
    }

    #[test]
    fn release_records_the_reason_and_frees_the_claim() {
        let state = fixture("released");
        let s = step_of(&state, Step::Model);
        assert_eq!(s.job.claimed_at_ms, None);
        assert_eq!(s.job.last_error.as_deref(), Some("503"));
        assert_eq!(s.status, Status::Processing);
        let (state, outcome) = run(Some(state), claim(JobKind::Run, 1), T0 + 4);
        assert_eq!(outcome, Outcome::Run);
        assert_eq!(step_of(&state, Step::Model).job.job_attempts, 2);
    }

    #[test]
    fn commands_of_an_older_attempt_are_skipped() {
        let retry = fixture("retry"); // attempt 2, pending
        let mut stale = vec![
            Command::MarkEnqueued {
                step: Step::Model,
                attempt: 1,
            },
            Command::AbortSubmit {
                step: Step::Model,
                attempt: 1,
            },
            claim(JobKind::Run, 1),
            claim(JobKind::Finalize, 1),
            Command::ReleaseJob {
                step: Step::Model,
                attempt: 1,
                message: "x".into(),
                retry_at_ms: None,
                create_settled: false,
            },
            created(1, "tr-9"),
            completed(1),
            failed(1),
        ];
        stale.push(Command::PollResult {
            step: Step::Model,
            attempt: 1,
            poll: 1,
            observation: Observation::Succeeded,
            next_poll_at_ms: NEXT_POLL,
        });
        for cmd in stale {
            let (after, outcome) = run(Some(retry.clone()), cmd.clone(), T0 + 99);
            assert_eq!(outcome, Outcome::Skip(SkipReason::StaleAttempt), "{cmd:?}");
            assert_eq!(after, retry);
        }
        // A future attempt number is not current either.
        let (_, outcome) = run(Some(retry), claim(JobKind::Run, 3), T0 + 99);
        assert_eq!(outcome, Outcome::Skip(SkipReason::StaleAttempt));
    }

    #[test]
    fn unknown_task_or_step_is_refused() {
        assert_eq!(
            apply(None, failed(1), T0).unwrap_err(),
            Refusal::UnknownTask
        );
        let (concepts_only, _) = run(None, submit_cmd(concepts(1)), T0);
        assert_eq!(
            apply(Some(concepts_only), claim(JobKind::Run, 1), T0).unwrap_err(),
            Refusal::UnknownStep(Step::Model)
        );
    }

    // --- Provider task and polling -----------------------------------------------------------

    #[test]
    fn provider_task_starts_polling() {
        let state = fixture("awaiting"); // created at T0 + 3
        let s = step_of(&state, Step::Model);
        assert_eq!(s.provider_task_id.as_deref(), Some("tr-1"));
        assert_eq!(s.job.claimed_at_ms, None);
        assert_eq!(s.phase(), Phase::AwaitingProvider);
        let p = s.poll.as_ref().unwrap();
        assert_eq!(p.started_at_ms, T0 + 3);
        assert_eq!(p.deadline_ms, T0 + 3 + TIMEOUT);
        assert_eq!(p.next_poll_at_ms, Some(NEXT_POLL));
        assert_eq!(state.next_alarm_ms(), Some(NEXT_POLL));
        // A second, different provider task (a duplicate job) is not recorded.
        let (after, outcome) = run(Some(state.clone()), created(1, "tr-2"), T0 + 4);
        assert_eq!(outcome, Outcome::Skip(SkipReason::OtherProviderTask));
        assert_eq!(after, state);
    }

    #[test]
    fn progress_is_monotonic_and_below_100_until_complete() {
        let mut state = fixture("awaiting");
        for (reported, want) in [(40, 40), (20, 40), (70, 70), (100, 99), (0, 99)] {
            let cmd = polled(&state, waiting(reported));
            let (next, outcome) = run(Some(state), cmd, T0 + 10);
            assert_eq!(
                outcome,
                Outcome::Polling {
                    next_poll_at_ms: NEXT_POLL
                }
            );
            assert_eq!(
                step_of(&next, Step::Model).progress,
                want,
                "after {reported}"
            );
            state = next;
        }
        assert_eq!(step_of(&state, Step::Model).poll.as_ref().unwrap().polls, 5);
        let cmd = polled(&state, Observation::Succeeded);
        let (state, outcome) = run(Some(state), cmd, T0 + 11);
        assert_eq!(outcome, Outcome::Finalize);
        assert_eq!(step_of(&state, Step::Model).progress, 99);
        // No more polls; only the finalize watchdog keeps the alarm.
        assert_eq!(state.next_alarm_ms(), Some(T0 + 11 + FINALIZE_WATCHDOG_MS));
        let (state, _) = run(Some(state), claim(JobKind::Finalize, 1), T0 + 12);
        let (state, outcome) = run(Some(state), completed(1), T0 + 13);
        assert_eq!(outcome, Outcome::Completed);
        let s = step_of(&state, Step::Model);
        assert_eq!(s.progress, 100);
        assert_eq!(s.asset_urls.len(), 1);
    }

    #[test]
    fn waiting_poll_records_provider_figures() {
        let state = fixture("awaiting");
        let cmd = polled(
            &state,
            Observation::Waiting {
                status: ProviderStatus::Queued,
                progress: None,
                running_left_time: None,
                queuing_num: Some(7),
            },
        );
        let (state, _) = run(Some(state), cmd, T0 + 10);
        let p = step_of(&state, Step::Model).poll.clone().unwrap();
        assert_eq!(p.provider_status, ProviderStatus::Queued);
        assert_eq!(p.queuing_num, Some(7));
        assert_eq!(step_of(&state, Step::Model).progress, 0);
    }

    #[test]
    fn out_of_order_poll_is_skipped() {
        let state = fixture("awaiting");
        for poll in [0, 2, 9] {
            let cmd = Command::PollResult {
                step: Step::Model,
                attempt: 1,
                poll,
                observation: waiting(10),
                next_poll_at_ms: NEXT_POLL,
            };
            let (after, outcome) = run(Some(state.clone()), cmd, T0 + 10);
            assert_eq!(outcome, Outcome::Skip(SkipReason::StalePoll), "poll {poll}");
            assert_eq!(after, state);
        }
    }

    #[test]
    fn unreachable_provider_rearms_and_records_the_reason() {
        let state = fixture("awaiting");
        let cmd = polled(
            &state,
            Observation::Unreachable {
                message: "HTTP 502".into(),
            },
        );
        let (state, outcome) = run(Some(state), cmd, T0 + 10);
        assert_eq!(
            outcome,
            Outcome::Polling {
                next_poll_at_ms: NEXT_POLL
            }
        );
        let s = step_of(&state, Step::Model);
        assert_eq!(s.job.last_error.as_deref(), Some("HTTP 502"));
        assert_eq!(s.status, Status::Processing);
    }

    #[test]
    fn polling_past_the_deadline_fails_the_step() {
        let state = fixture("awaiting");
        let deadline = T0 + 3 + TIMEOUT;
        let cmd = polled(&state, waiting(10));
        let (_, outcome) = run(Some(state.clone()), cmd.clone(), deadline - 1);
        assert!(matches!(outcome, Outcome::Polling { .. }));
        let (after, outcome) = run(Some(state.clone()), cmd, deadline);
        assert_eq!(outcome, Outcome::Failed);
        let s = step_of(&after, Step::Model);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(s.error.as_ref().unwrap().code, PROVIDER_TIMEOUT_CODE);
        assert!(s.error.as_ref().unwrap().message.contains("30 minutes"));
        // No more polls: only the rows check.
        assert_eq!(after.next_alarm_ms(), Some(deadline + ROWS_CHECK_MS));
        let unreachable = polled(
            &state,
            Observation::Unreachable {
                message: "x".into(),
            },
        );
        assert_eq!(
            run(Some(state.clone()), unreachable, deadline).1,
            Outcome::Failed
        );
        // Success wins over the deadline.
        let ok = polled(&state, Observation::Succeeded);
        assert_eq!(run(Some(state), ok, deadline + 1).1, Outcome::Finalize);
    }

    #[test]
    fn next_alarm_is_the_earliest_poll() {
        let (state, _) = run(None, submit_cmd(model("cat")), T0);
        let (state, _) = run(Some(state), claim(JobKind::Run, 1), T0);
        let (state, _) = run(Some(state), created(1, "a"), T0);
        let refine = request(
            Endpoint::RefineModel,
            serde_json::json!({"task_id": "t-1", "tripo_draft_task_id": "a"}),
        );
        let (state, _) = run(Some(state), submit_cmd(refine), T0);
        let refine_claim = Command::ClaimJob {
            step: Step::Refine,
            attempt: 1,
            kind: JobKind::Run,
            lease_ms: LEASE,
            create: false,
        };
        let (state, _) = run(Some(state), refine_claim, T0);
        let refine_created = Command::ProviderTaskCreated {
            step: Step::Refine,
            attempt: 1,
            provider_task_id: "b".into(),
            timeout_ms: TIMEOUT,
            next_poll_at_ms: T0 + 1_000,
        };
        let (state, _) = run(Some(state), refine_created, T0);
        assert_eq!(state.next_alarm_ms(), Some(T0 + 1_000));
    }

    #[test]
    fn finalize_watchdog_requeues_a_lost_finalize_once_per_period() {
        let requeue = Command::RequeueFinalize {
            step: Step::Model,
            attempt: 1,
        };
        // Not in other phases.
        for (situation, want) in [
            ("running", "WrongPhase(Running)"),
            ("awaiting", "WrongPhase(AwaitingProvider)"),
            ("complete", "Terminal(Complete)"),
        ] {
            let state = fixture(situation);
            let result = apply(Some(state), requeue.clone(), T0 + 10 * FINALIZE_WATCHDOG_MS);
            assert_eq!(label(&result), want, "{situation}");
        }
        // Finalizing since T0 + 4 with no claim: the alarm is armed for the watchdog.
        let state = fixture("finalizing");
        let due = T0 + 4 + FINALIZE_WATCHDOG_MS;
        assert_eq!(state.next_alarm_ms(), Some(due));
        let early = apply(Some(state.clone()), requeue.clone(), due - 1);
        assert_eq!(label(&early), "NotDue");
        let (after, outcome) = run(Some(state), requeue.clone(), due);
        assert_eq!(outcome, Outcome::Finalize);
        check_invariants(&after);
        // The next watchdog is one period later; applying again now is a no-op.
        assert_eq!(after.next_alarm_ms(), Some(due + FINALIZE_WATCHDOG_MS));
        assert_eq!(
            label(&apply(Some(after.clone()), requeue.clone(), due + 1)),
            "NotDue"
        );
        // A live finalize claim holds the watchdog until its lease ends; then it may requeue.
        let claimed = fixture("finalize_claimed"); // claimed at T0 + 5
        assert_eq!(claimed.next_alarm_ms(), Some(T0 + 5 + DEFAULT_LEASE_MS));
        let held = apply(Some(claimed.clone()), requeue.clone(), due);
        assert_eq!(label(&held), "AlreadyClaimed");
        let (after, outcome) = run(Some(claimed), requeue, T0 + 5 + DEFAULT_LEASE_MS);
        assert_eq!(outcome, Outcome::Finalize);
        assert_eq!(step_of(&after, Step::Model).job.claimed_at_ms, None);
    }

    #[test]
    fn unknown_status_and_poll_errors_are_tracked() {
        let state = fixture("awaiting");
        let unknown = Observation::Waiting {
            status: ProviderStatus::Unknown,
            progress: None,
            running_left_time: None,
            queuing_num: None,
        };
        let cmd = polled(&state, unknown.clone());
        let (state, _) = run(Some(state), cmd, T0 + 10);
        let cmd = polled(
            &state,
            Observation::Unreachable {
                message: "503".into(),
            },
        );
        let (state, _) = run(Some(state), cmd, T0 + 20);
        let cmd = polled(&state, unknown);
        let (state, _) = run(Some(state), cmd, T0 + 30);
        let s = step_of(&state, Step::Model);
        assert_eq!(
            s.unknown_for_ms(T0 + 100),
            90,
            "unknown since the first report"
        );
        let p = s.poll.clone().unwrap();
        assert_eq!(p.provider_status, ProviderStatus::Unknown);
        assert_eq!(p.consecutive_errors, 0);
        let cmd = polled(
            &state,
            Observation::Unreachable {
                message: "503".into(),
            },
        );
        let (state, _) = run(Some(state), cmd, T0 + 40);
        let cmd = polled(
            &state,
            Observation::Unreachable {
                message: "503".into(),
            },
        );
        let (state, _) = run(Some(state), cmd, T0 + 50);
        assert_eq!(
            step_of(&state, Step::Model)
                .poll
                .as_ref()
                .unwrap()
                .consecutive_errors,
            2
        );
        // A real status ends both streaks.
        let cmd = polled(&state, waiting(20));
        let (state, _) = run(Some(state), cmd, T0 + 60);
        let s = step_of(&state, Step::Model);
        assert_eq!(s.unknown_for_ms(T0 + 100), 0);
        assert_eq!(s.poll.as_ref().unwrap().consecutive_errors, 0);
        // States persisted before these fields existed still load.
        let mut v = serde_json::to_value(&state).unwrap();
        let poll = &mut v["steps"]["model"]["poll"];
        poll.as_object_mut().unwrap().remove("consecutive_errors");
        poll.as_object_mut().unwrap().remove("unknown_since_ms");
        let back: TaskState = serde_json::from_value(v).unwrap();
        assert_eq!(back, state);
    }

    // --- Complete and Fail -------------------------------------------------------------------

    #[test]
    fn concepts_complete_straight_from_the_run_job() {
        let (state, _) = run(None, submit_cmd(concepts(2)), T0);
        let claim = Command::ClaimJob {
            step: Step::Concepts,
            attempt: 1,
            kind: JobKind::Run,
            lease_ms: LEASE,
            create: false,
        };
        let (state, _) = run(Some(state), claim, T0 + 1);
        let empty = Command::Complete {
            step: Step::Concepts,
            attempt: 1,
            asset_urls: vec![],
        };
        let (same, outcome) = run(Some(state.clone()), empty, T0 + 2);
        assert_eq!(outcome, Outcome::Skip(SkipReason::EmptyOutput));
        assert_eq!(same, state);
        let urls = vec!["u0".to_owned(), "u1".to_owned()];
        let done = Command::Complete {
            step: Step::Concepts,
            attempt: 1,
            asset_urls: urls.clone(),
        };
        let (state, outcome) = run(Some(state), done, T0 + 3);
        assert_eq!(outcome, Outcome::Completed);
        let s = step_of(&state, Step::Concepts);
        assert_eq!(s.asset_urls, urls);
        assert_eq!(s.updated_at_ms, T0 + 3);
        // Concepts never finalize.
        let fin = Command::ClaimJob {
            step: Step::Concepts,
            attempt: 1,
            kind: JobKind::Finalize,
            lease_ms: LEASE,
            create: false,
        };
        assert_eq!(
            run(Some(state), fin, T0 + 4).1,
            Outcome::Skip(SkipReason::Terminal(Status::Complete))
        );
    }

    #[test]
    fn fail_keeps_progress_and_truncates_long_messages() {
        let state = fixture("awaiting");
        let cmd = polled(&state, waiting(60));
        let (state, _) = run(Some(state), cmd, T0 + 10);
        let long = "é".repeat(MAX_ERROR_MESSAGE_CHARS + 50);
        let fail = Command::Fail {
            step: Step::Model,
            attempt: 1,
            error: StepError {
                code: "tripo_failed".into(),
                message: long,
            },
        };
        let (state, outcome) = run(Some(state), fail, T0 + 11);
        assert_eq!(outcome, Outcome::Failed);
        let s = step_of(&state, Step::Model);
        assert_eq!(s.progress, 60);
        let e = s.error.as_ref().unwrap();
        assert_eq!(e.code, "tripo_failed");
        assert_eq!(e.message.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(e.message.ends_with('…'));
        assert_eq!(state.next_alarm_ms(), Some(T0 + 11 + ROWS_CHECK_MS));
    }

    // --- Persistence -------------------------------------------------------------------------

    #[test]
    fn state_round_trips_through_json() {
        for situation in ["retry", "awaiting", "complete"] {
            let mut state = fixture(situation);
            let (with_concepts, _) = run(Some(state.clone()), submit_cmd(concepts(2)), T0 + 100);
            state = with_concepts;
            let json = serde_json::to_string(&state).unwrap();
            let back: TaskState = serde_json::from_str(&json).unwrap();
            assert_eq!(back, state, "{situation}");
        }
    }

    #[test]
    fn skips_do_not_touch_timestamps() {
        let state = fixture("complete");
        let (after, _) = run(Some(state.clone()), failed(1), T0 + 500);
        assert_eq!(after.updated_at_ms, state.updated_at_ms);
        let (after, _) = run(Some(state.clone()), submit_cmd(model("cat")), T0 + 500);
        assert_eq!(after.updated_at_ms, state.updated_at_ms);
    }

    // --- Every state has a way out (P9) ------------------------------------------------------

    fn sweep_at(state: &TaskState, now: u64) -> (TaskState, Outcome) {
        run(Some(state.clone()), Command::Sweep, now)
    }

    fn requeued(outcome: &Outcome) -> Vec<Requeue> {
        match outcome {
            Outcome::Swept { requeue, .. } => requeue.clone(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_pending_step_whose_message_never_came_is_sent_by_the_alarm() {
        // The submit died after creating the step (or its message was lost).
        let s = fixture("pending");
        assert_eq!(s.next_alarm_ms(), Some(T0 + RESUME_AFTER_MS));
        let (same, o) = sweep_at(&s, T0 + RESUME_AFTER_MS - 1);
        assert_eq!(o, Outcome::Skip(SkipReason::NotDue));
        assert_eq!(same, s);
        let (s, o) = sweep_at(&s, T0 + RESUME_AFTER_MS);
        assert_eq!(
            requeued(&o),
            vec![Requeue {
                step: Step::Model,
                attempt: 1,
                kind: JobKind::Run,
                try_no: 1
            }]
        );
        // The watchdog moved on: the next check is a full interval later, not now.
        let next = s.next_alarm_ms().unwrap();
        assert_eq!(next, T0 + RESUME_AFTER_MS + QUEUED_WATCHDOG_MS);
        // The message arrives: the claim is granted as usual.
        let (_, o) = run(Some(s), claim(JobKind::Run, 1), next - 1);
        assert_eq!(o, Outcome::Run);
    }

    #[test]
    fn a_run_that_died_after_its_claim_runs_again_when_its_lease_ends() {
        // Claimed at T0 + 2, then the isolate died: redeliveries meet the live lease.
        let s = fixture("running");
        let lease_end = T0 + 2 + DEFAULT_LEASE_MS;
        assert_eq!(s.next_alarm_ms(), Some(lease_end));
        let (_, o) = run(Some(s.clone()), claim(JobKind::Run, 1), T0 + 60_000);
        assert_eq!(o, Outcome::Skip(SkipReason::AlreadyClaimed));
        let (s, o) = sweep_at(&s, lease_end);
        assert_eq!(
            requeued(&o),
            vec![Requeue {
                step: Step::Model,
                attempt: 1,
                kind: JobKind::Run,
                try_no: 2
            }]
        );
        assert_eq!(step_of(&s, Step::Model).job.claimed_at_ms, None);
        let (_, o) = run(Some(s), claim(JobKind::Run, 1), lease_end + 1);
        assert_eq!(o, Outcome::Run);
    }

    #[test]
    fn a_released_job_whose_retry_never_came_is_sent_again() {
        let s = fixture("running");
        let release = Command::ReleaseJob {
            step: Step::Model,
            attempt: 1,
            message: "storage 503".into(),
            retry_at_ms: Some(T0 + 10_000),
            create_settled: false,
        };
        let (s, _) = run(Some(s), release, T0 + 3);
        assert_eq!(s.next_alarm_ms(), Some(T0 + 10_000 + RETRY_GRACE_MS));
        let (s2, o) = sweep_at(&s, T0 + 10_000 + RETRY_GRACE_MS - 1);
        assert_eq!(o, Outcome::Skip(SkipReason::NotDue));
        let (s2, o2) = sweep_at(&s2, T0 + 10_000 + RETRY_GRACE_MS);
        assert_eq!(requeued(&o2).len(), 1);
        let _ = s;
        // The retry arrives late after all: one claim, the copy is skipped.
        let (s3, o) = run(Some(s2), claim(JobKind::Run, 1), T0 + 80_000);
        assert_eq!(o, Outcome::Run);
        let (_, o) = run(Some(s3), claim(JobKind::Run, 1), T0 + 80_001);
        assert_eq!(o, Outcome::Skip(SkipReason::AlreadyClaimed));
    }

    #[test]
    fn a_step_past_its_deadline_fails_with_the_reason() {
        let s = fixture("running");
        let release = Command::ReleaseJob {
            step: Step::Model,
            attempt: 1,
            message: "openai: HTTP 503".into(),
            retry_at_ms: Some(T0 + 10_000),
            create_settled: false,
        };
        let (s, _) = run(Some(s), release, T0 + 3);
        let deadline = T0 + DEFAULT_STEP_DEADLINE_MS;
        assert_eq!(step_of(&s, Step::Model).deadline_at_ms(), Some(deadline));
        let (s, o) = sweep_at(&s, deadline);
        assert_eq!(
            o,
            Outcome::Swept {
                requeue: vec![],
                failed: vec![Step::Model],
                resync: vec![],
                webhooks: vec![],
            }
        );
        let st = step_of(&s, Step::Model);
        assert_eq!(st.status, Status::Failed);
        let e = st.error.as_ref().unwrap();
        assert_eq!(e.code, TIMEOUT_CODE);
        assert!(e.message.contains("30 minutes") && e.message.contains("openai: HTTP 503"));
        // Only the rows check is left; the rows written, nothing.
        assert_eq!(s.next_alarm_ms(), Some(deadline + ROWS_CHECK_MS));
        let synced = Command::RowsSynced {
            step: Step::Model,
            attempt: 1,
        };
        let (s, o) = run(Some(s), synced, deadline + 5);
        assert_eq!(o, Outcome::RowsConfirmed);
        assert_eq!(s.next_alarm_ms(), None);
        // A job that arrives later changes nothing.
        let (_, o) = run(Some(s), claim(JobKind::Run, 1), deadline + 1);
        assert_eq!(o, Outcome::Skip(SkipReason::Terminal(Status::Failed)));
    }

    #[test]
    fn the_submitted_budget_is_the_steps_deadline() {
        let sub = Command::Submit(Submission {
            owner: owner(),
            task_id: task_id(),
            request: model("cat"),
            deadline_ms: 60_000,
        });
        let (s, _) = run(None, sub, T0);
        assert_eq!(step_of(&s, Step::Model).deadline_at_ms(), Some(T0 + 60_000));
        // An old state without the field reads with the default budget.
        let mut v = serde_json::to_value(&s).unwrap();
        v["steps"]["model"]
            .as_object_mut()
            .unwrap()
            .remove("deadline_ms");
        let old: TaskState = serde_json::from_value(v).unwrap();
        assert_eq!(
            step_of(&old, Step::Model).deadline_ms,
            DEFAULT_STEP_DEADLINE_MS
        );
    }

    #[test]
    fn the_finalize_deadline_counts_from_the_providers_success() {
        // Submitted at T0; Tripo succeeds 29 minutes later; finalize then meets one Storage error.
        let (s, _) = run(None, submit_cmd(model("cat")), T0);
        let (s, _) = run(Some(s), claim(JobKind::Run, 1), T0 + 1);
        let (s, _) = run(Some(s), created(1, "tr-1"), T0 + 2);
        let late = T0 + 29 * 60_000;
        let (s, o) = run(Some(s.clone()), polled(&s, Observation::Succeeded), late);
        assert_eq!(o, Outcome::Finalize);
        let (s, _) = run(Some(s), claim(JobKind::Finalize, 1), late + 1);
        let release = Command::ReleaseJob {
            step: Step::Model,
            attempt: 1,
            message: "storage 503".into(),
            retry_at_ms: Some(late + 5_000),
            create_settled: false,
        };
        let (s, _) = run(Some(s), release, late + 2);
        let st = step_of(&s, Step::Model);
        assert_eq!(
            st.deadline_at_ms(),
            Some(late + DEFAULT_STEP_DEADLINE_MS),
            "not 30 minutes after the submission"
        );
        // The finalize job's retry budget starts at the success too.
        assert_eq!(st.job_clock_start_ms(JobKind::Finalize), late);
        assert_eq!(st.job_clock_start_ms(JobKind::Run), T0);
        // Minute 32 after the submit: still alive, and its finalize is sent again when due.
        let (s, o) = sweep_at(&s, T0 + 32 * 60_000);
        assert_eq!(step_of(&s, Step::Model).status, Status::Processing);
        assert_eq!(
            requeued(&o),
            vec![Requeue {
                step: Step::Model,
                attempt: 1,
                kind: JobKind::Finalize,
                try_no: 3
            }]
        );
    }

    #[test]
    fn a_provider_task_that_cannot_be_polled_fails_after_its_deadline() {
        let s = fixture("awaiting");
        let p = step_of(&s, Step::Model).poll.clone().unwrap();
        let at = p.deadline_ms + POLL_GRACE_MS;
        let (_, o) = sweep_at(&s, at - 1);
        assert_eq!(o, Outcome::Skip(SkipReason::NotDue));
        let (s, o) = sweep_at(&s, at);
        assert!(matches!(o, Outcome::Swept { ref failed, .. } if failed == &vec![Step::Model]));
        assert_eq!(
            step_of(&s, Step::Model).error.as_ref().unwrap().code,
            PROVIDER_TIMEOUT_CODE
        );
    }

    #[test]
    fn after_any_sweep_the_next_alarm_is_in_the_future() {
        // Whatever the phase, the alarm never fires for nothing in a loop: what is due is acted
        // on, and what is left is later than now.
        for name in [
            "pending",
            "claimed_unenqueued",
            "enqueued",
            "running",
            "released",
            "awaiting",
            "retry",
        ] {
            let mut s = fixture(name);
            for _ in 0..50 {
                let Some(at) = s.next_alarm_ms() else { break };
                let (next, _) = sweep_at(&s, at);
                if let Some(later) = next.next_alarm_ms() {
                    let polls_due = next.steps.values().any(|st| {
                        st.phase() == Phase::AwaitingProvider
                            && st.poll.as_ref().and_then(|p| p.next_poll_at_ms) == Some(later)
                    });
                    assert!(
                        later > at || polls_due,
                        "{name}: alarm at {at} again at {later}"
                    );
                }
                s = next;
                if !s
                    .steps
                    .values()
                    .any(|st| st.phase() != Phase::AwaitingProvider)
                {
                    break;
                }
            }
        }
    }

    #[test]
    fn the_alarm_is_armed_after_every_command_even_a_skip() {
        assert!(effects(&Outcome::Skip(SkipReason::AlreadyClaimed)).arm);
        assert!(!effects(&Outcome::Skip(SkipReason::AlreadyClaimed)).persist);
        assert!(effects(&Outcome::Run).arm && effects(&Outcome::Run).persist);
        let gone = effects(&Outcome::Aborted { delete_task: true });
        assert!(gone.delete_task && !gone.arm && !gone.persist);
        let undone = effects(&Outcome::Aborted { delete_task: false });
        assert!(undone.persist && undone.arm);
    }

    // --- A create is never blindly repeated (P9) ---------------------------------------------

    fn starting() -> Command {
        Command::CreateStarting {
            step: Step::Model,
            attempt: 1,
        }
    }

    #[test]
    fn a_lost_create_answer_allows_one_more_create_and_no_third() {
        let s = fixture("running");
        let (s, o) = run(Some(s), starting(), T0 + 10);
        assert_eq!(o, Outcome::Create { uncertain: false });
        // The POST /task timed out: the job is retried, and the next create is uncertain.
        let (s, o) = run(Some(s), starting(), T0 + 20);
        assert_eq!(o, Outcome::Create { uncertain: true });
        // Lost again: no third create.
        let (s, o) = run(Some(s), starting(), T0 + 30);
        assert_eq!(o, Outcome::CreateRefused);
        assert_eq!(step_of(&s, Step::Model).job.creates, MAX_CREATES);
    }

    #[test]
    fn a_definite_refusal_is_not_an_uncertain_create() {
        let s = fixture("running");
        let (s, _) = run(Some(s), starting(), T0 + 10);
        // 429 / Tripo 2000: nothing was created.
        let settle = Command::CreateSettled {
            step: Step::Model,
            attempt: 1,
        };
        let (s, o) = run(Some(s), settle, T0 + 11);
        assert_eq!(o, Outcome::Released);
        let (s, o) = run(Some(s), starting(), T0 + 20);
        assert_eq!(o, Outcome::Create { uncertain: false });
        // The answer came: the task is recorded, and no create is started again.
        let (s, _) = run(Some(s), created(1, "tr-1"), T0 + 21);
        assert!(!step_of(&s, Step::Model).job.create_in_flight);
        let (_, o) = run(Some(s), starting(), T0 + 30);
        assert_eq!(o, Outcome::Skip(SkipReason::AlreadyRecorded));
    }

    #[test]
    fn a_new_attempt_starts_with_no_creates() {
        let s = fixture("running");
        let (s, _) = run(Some(s), starting(), T0 + 10);
        let (s, _) = run(Some(s), starting(), T0 + 20);
        let (s, _) = run(Some(s), failed(1), T0 + 30);
        let (s, _) = run(Some(s), submit_cmd(model("dog")), T0 + 40);
        let (s, _) = run(Some(s), claim(JobKind::Run, 2), T0 + 50);
        let st = step_of(&s, Step::Model);
        assert_eq!((st.job.creates, st.job.create_in_flight), (0, false));
        let start2 = Command::CreateStarting {
            step: Step::Model,
            attempt: 2,
        };
        let (_, o) = run(Some(s), start2, T0 + 60);
        assert_eq!(o, Outcome::Create { uncertain: false });
    }

    #[test]
    fn a_live_job_renews_its_lease_and_a_dead_one_is_run_again_two_minutes_later() {
        let renew = Command::RenewClaim {
            step: Step::Model,
            attempt: 1,
        };
        // A long job (an OpenAI call of minutes) renews every LEASE_RENEW_MS: never swept.
        let mut s = fixture("running"); // claimed at T0 + 2
        let mut at = T0 + 2;
        for _ in 0..10 {
            at += LEASE_RENEW_MS;
            let (next, o) = run(Some(s), renew.clone(), at);
            assert_eq!(o, Outcome::Run);
            assert_eq!(sweep_at(&next, at + 1).1, Outcome::Skip(SkipReason::NotDue));
            s = next;
        }
        // It dies: the sweep sends it again when the lease ends.
        assert_eq!(s.next_alarm_ms(), Some(at + DEFAULT_LEASE_MS));
        let (_, o) = sweep_at(&s, at + DEFAULT_LEASE_MS);
        assert_eq!(requeued(&o).len(), 1);
        // A renewal after the step ended changes nothing.
        let (done, _) = run(Some(s), failed(1), at + 1);
        let (_, o) = run(Some(done), renew, at + 2);
        assert_eq!(o, Outcome::Skip(SkipReason::Terminal(Status::Failed)));
    }

    fn rows_synced(attempt: u32) -> Command {
        Command::RowsSynced {
            step: Step::Model,
            attempt,
        }
    }

    #[test]
    fn a_final_step_keeps_a_rows_check_until_its_rows_are_confirmed() {
        // P9 finding 3: rows that could not be written after the DO became final were left
        // `processing` for good.
        let s = fixture("finalizing");
        let (s, o) = run(Some(s), claim(JobKind::Finalize, 1), T0 + 100);
        assert_eq!(o, Outcome::Run);
        let (s, o) = run(Some(s), completed(1), T0 + 200);
        assert_eq!(o, Outcome::Completed);
        assert_eq!(
            step_of(&s, Step::Model).rows.check_at_ms,
            Some(T0 + 200 + ROWS_CHECK_MS)
        );
        assert_eq!(s.next_alarm_ms(), Some(T0 + 200 + ROWS_CHECK_MS));
        // Not due: nothing.
        let (s, o) = sweep_at(&s, T0 + 200 + ROWS_CHECK_MS - 1);
        assert_eq!(o, Outcome::Skip(SkipReason::NotDue));
        // Due: the alarm writes the rows itself; the next check backs off.
        let at = T0 + 200 + ROWS_CHECK_MS;
        let (s, o) = sweep_at(&s, at);
        assert_eq!(
            o,
            Outcome::Swept {
                requeue: vec![],
                failed: vec![],
                resync: vec![Step::Model],
                webhooks: vec![],
            }
        );
        let check = &step_of(&s, Step::Model).rows;
        assert_eq!(check.resyncs, 1);
        assert_eq!(check.check_at_ms, Some(at + 2 * ROWS_CHECK_MS));
        // A row check is bookkeeping: the client-visible `updated_at` does not move.
        assert_eq!(step_of(&s, Step::Model).updated_at_ms, T0 + 200);
        // Confirmed: settled, no alarm, and a repeat is a skip.
        let (s, o) = run(Some(s), rows_synced(1), at + 10);
        assert_eq!(o, Outcome::RowsConfirmed);
        assert_eq!(s.next_alarm_ms(), None);
        let (_, o) = run(Some(s), rows_synced(1), at + 20);
        assert_eq!(o, Outcome::Skip(SkipReason::RowsSettled));
    }

    #[test]
    fn rows_synced_of_an_unfinished_step_or_another_attempt_changes_nothing() {
        let s = fixture("running");
        let (s2, o) = run(Some(s.clone()), rows_synced(1), T0 + 10);
        assert_eq!(o, Outcome::Skip(SkipReason::RowsSettled));
        assert_eq!(s2, s);
        let (_, o) = run(Some(s), rows_synced(2), T0 + 10);
        assert_eq!(o, Outcome::Skip(SkipReason::StaleAttempt));
    }

    #[test]
    fn row_resyncs_back_off_to_the_cap_and_give_up_after_the_last() {
        let mut check = RowsCheck::due_after_final(0);
        let mut now = ROWS_CHECK_MS;
        let mut intervals = Vec::new();
        while let Some(at) = check.check_at_ms {
            assert!(at >= now);
            now = at;
            check = check.after_resync(now);
            if let Some(next) = check.check_at_ms {
                intervals.push(next - now);
            }
        }
        assert_eq!(check.resyncs, MAX_ROW_RESYNCS);
        assert_eq!(intervals[0], 2 * ROWS_CHECK_MS);
        assert!(intervals.iter().all(|i| *i <= ROWS_CHECK_MAX_MS));
        assert_eq!(intervals.last(), Some(&ROWS_CHECK_MAX_MS));
    }

    fn await_slot(position: u32) -> Command {
        Command::AwaitSlot {
            step: Step::Model,
            attempt: 1,
            position,
        }
    }

    #[test]
    fn a_step_waiting_for_a_slot_stays_pending_and_asks_again() {
        let (s, _) = run(None, submit_cmd(model("m")), T0);
        let (s, o) = run(Some(s), await_slot(4), T0 + 100);
        assert_eq!(o, Outcome::AwaitingSlot);
        let st = step_of(&s, Step::Model);
        assert_eq!(st.status, Status::Pending);
        assert!(st.enqueued);
        assert_eq!(st.job.slot_wait.map(|w| w.position), Some(4));
        assert_eq!(s.next_alarm_ms(), Some(T0 + 100 + SLOT_RECHECK_MS));
        // The sweep sends the run message again when the recheck is due, and not before.
        let (s, o) = sweep_at(&s, T0 + 100 + SLOT_RECHECK_MS - 1);
        assert_eq!(o, Outcome::Skip(SkipReason::NotDue));
        let (s, o) = sweep_at(&s, T0 + 100 + SLOT_RECHECK_MS);
        assert_eq!(requeued(&o).len(), 1);
        // The re-sent message was lost: the next check is one interval later, not at once.
        let at = T0 + 100 + 2 * SLOT_RECHECK_MS;
        assert_eq!(s.next_alarm_ms(), Some(at));
        // A closer place: updated, waiting since the first answer.
        let (s, _) = run(Some(s), await_slot(2), at);
        let wait = step_of(&s, Step::Model).job.slot_wait.unwrap();
        assert_eq!((wait.position, wait.since_ms), (2, T0 + 100));
        // Granted: the claim runs the job and the wait is over.
        let (s, o) = run(Some(s), claim(JobKind::Run, 1), at + 1);
        assert_eq!(o, Outcome::Run);
        assert_eq!(step_of(&s, Step::Model).job.slot_wait, None);
        // A late AwaitSlot of a claimed step changes nothing.
        let (_, o) = run(Some(s), await_slot(1), at + 2);
        assert_eq!(o, Outcome::Skip(SkipReason::AlreadyClaimed));
    }
}
