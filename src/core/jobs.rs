//! The queue message of the job side (SPEC §2, §6) and what to do with one: stale detection,
//! re-enqueue with a delay, and the dead-letter decision.
//!
//! Messages carry ids only (and, for a first finalize, the model URL to copy), never bytes
//! (Queues limit a message to 128 KB): the task's Durable
//! Object holds everything else. Wire form (JSON):
//! `{"kind":"run","task_id":"t-1","step":"model","attempt":1,"try_no":1}`.
//!
//! - `attempt` is the step's *submission* attempt (a failed step may be submitted again). A
//!   message whose attempt is not the step's current one is stale and is acked without effect.
//! - `try_no` is the delivery try of this job (1-based). workers-rs exposes no `attempts()` on a
//!   queue message, so retries are done by acking and sending [`JobMessage::next_try`] with
//!   [`delay_seconds`] rather than `message.retry()` (which would redeliver the same body).
//!   The queue's own retries (uncaught errors, crashes) still end in the dead-letter queue,
//!   handled by [`dead_letter_action`].

use serde::{Deserialize, Serialize};

use super::ids::TaskId;
use super::retry::ErrorCode;
use super::step::{Status, Step};

/// Queues' limit on one message.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// Longest delay we ask of the queue (Queues accept up to 12 h on every plan we know of).
pub const MAX_DELAY_SECONDS: u32 = 12 * 60 * 60;

/// What the consumer must do: the state machine's job kinds, on the wire.
pub use super::task::JobKind;

/// One queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub kind: JobKind,
    pub task_id: TaskId,
    pub step: Step,
    /// The step's submission attempt (1-based).
    pub attempt: u32,
    /// Delivery try of this job (1-based).
    #[serde(default = "first_try")]
    pub try_no: u32,
    /// Waits on a provider's concurrency limit so far (not counted as tries).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waits: u32,
    /// Finalize only, first try only: the model URL Tripo gave with the success (a webhook or a
    /// safety poll, webhooks on), so the job need not ask Tripo again. A retry drops it (the URL
    /// may have expired) and asks. Never logged (signed URLs carry credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_url: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn first_try() -> u32 {
    1
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("invalid job message: {0}")]
    Json(String),
    #[error("job message is {0} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("a finalize job only exists for Tripo steps, not `{0}`")]
    FinalizeWithoutModel(&'static str),
    #[error("attempt and try_no start at 1")]
    ZeroCounter,
}

impl JobMessage {
    /// The first Run of `step`'s attempt `attempt`.
    pub fn run(task_id: TaskId, step: Step, attempt: u32) -> JobMessage {
        JobMessage {
            kind: JobKind::Run,
            task_id,
            step,
            attempt,
            try_no: 1,
            waits: 0,
            model_url: None,
        }
    }

    /// The first Finalize of a Tripo step's attempt `attempt`.
    pub fn finalize(task_id: TaskId, step: Step, attempt: u32) -> Result<JobMessage, JobError> {
        let m = JobMessage {
            kind: JobKind::Finalize,
            task_id,
            step,
            attempt,
            try_no: 1,
            waits: 0,
            model_url: None,
        };
        m.validate()?;
        Ok(m)
    }

    /// A message the alarm's sweep sends again ([`Requeue`](crate::task::Requeue)): the
    /// step's job, carrying the try number its retry budget has reached.
    pub fn resend(task_id: TaskId, r: &crate::task::Requeue) -> Result<JobMessage, JobError> {
        let m = JobMessage {
            kind: r.kind,
            task_id,
            step: r.step,
            attempt: r.attempt,
            try_no: r.try_no.max(1),
            waits: 0,
            model_url: None,
        };
        m.validate()?;
        Ok(m)
    }

    /// The first delivery try of a final step's webhook.
    pub fn webhook(task_id: TaskId, step: Step, attempt: u32) -> JobMessage {
        JobMessage {
            kind: JobKind::Webhook,
            task_id,
            step,
            attempt,
            try_no: 1,
            waits: 0,
            model_url: None,
        }
    }

    /// The same job after a wait on a concurrency limit (the try is not counted).
    pub fn next_wait(&self) -> JobMessage {
        JobMessage {
            waits: self.waits.saturating_add(1),
            model_url: None,
            ..self.clone()
        }
    }

    /// The same job, next delivery try.
    pub fn next_try(&self) -> JobMessage {
        JobMessage {
            try_no: self.try_no.saturating_add(1),
            model_url: None,
            ..self.clone()
        }
    }

    /// The same finalize job carrying the model URL to copy (see [`JobMessage::model_url`]).
    #[must_use]
    pub fn with_model_url(self, model_url: Option<String>) -> JobMessage {
        JobMessage { model_url, ..self }
    }

    fn validate(&self) -> Result<(), JobError> {
        if self.attempt == 0 || self.try_no == 0 {
            return Err(JobError::ZeroCounter);
        }
        if self.kind == JobKind::Finalize && self.step == Step::Concepts {
            return Err(JobError::FinalizeWithoutModel(self.step.as_str()));
        }
        Ok(())
    }

    /// The JSON body to send.
    pub fn to_json(&self) -> String {
        // Strings and integers only: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads and validates a body (size, shape, task id, counters).
    pub fn from_json(body: &str) -> Result<JobMessage, JobError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(JobError::TooLarge(body.len()));
        }
        let m: JobMessage =
            serde_json::from_str(body).map_err(|e| JobError::Json(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Validates a message already deserialized by the glue (e.g. through serde-wasm-bindgen).
    pub fn checked(self) -> Result<JobMessage, JobError> {
        self.validate()?;
        Ok(self)
    }

    /// True if the step has moved on to another attempt: ack and drop.
    pub fn is_stale(&self, current_attempt: u32) -> bool {
        self.attempt != current_attempt
    }

    /// A key naming this job (not the try), for logs and de-duplication:
    /// `"{task_id}/{step}/{attempt}/{kind}"`.
    pub fn job_key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.task_id,
            self.step.as_str(),
            self.attempt,
            self.kind.as_str()
        )
    }
}

/// A retry delay in ms → the queue's `delay_seconds` (rounded up, capped at
/// [`MAX_DELAY_SECONDS`]).
pub fn delay_seconds(after_ms: u64) -> u32 {
    let secs = after_ms.div_ceil(1_000);
    u32::try_from(secs)
        .unwrap_or(MAX_DELAY_SECONDS)
        .min(MAX_DELAY_SECONDS)
}

/// What the Durable Object says about the message's step, for [`dead_letter_action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSnapshot {
    pub attempt: u32,
    pub status: Status,
}

/// What to do with a dead-lettered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// The job is lost for good: mark the step `failed` (DO first, then rows) so it never stays
    /// `processing` (SPEC §6 "No job is lost").
    MarkFailed { code: ErrorCode, message: String },
    /// The step is final: write its rows again from the Durable Object (the message may have
    /// died writing them, e.g. during a database outage), so rows and DO agree at rest.
    ResyncRows,
    /// Nothing to do (log and ack).
    Ignore { reason: &'static str },
}

/// Decides on a message from the dead-letter queue. `message` is `None` when the body could not
/// be read; `current` is `None` when the task or step is unknown to the Durable Object.
pub fn dead_letter_action(
    message: Option<&JobMessage>,
    current: Option<StepSnapshot>,
) -> DeadLetterAction {
    let Some(m) = message else {
        return DeadLetterAction::Ignore {
            reason: "unreadable message",
        };
    };
    let Some(cur) = current else {
        return DeadLetterAction::Ignore {
            reason: "unknown task or step",
        };
    };
    if m.kind == JobKind::Webhook {
        // The task's alarm sends an undelivered webhook again by itself.
        return DeadLetterAction::Ignore {
            reason: "webhook message",
        };
    }
    if m.is_stale(cur.attempt) {
        return DeadLetterAction::Ignore {
            reason: "stale attempt",
        };
    }
    if cur.status.is_terminal() {
        return DeadLetterAction::ResyncRows;
    }
    let what = match m.kind {
        JobKind::Run => "the job could not be started",
        JobKind::Finalize => "the finished model could not be copied to storage",
        JobKind::Webhook => "the webhook could not be delivered",
    };
    DeadLetterAction::MarkFailed {
        code: ErrorCode::Internal,
        message: format!("{what}: the queue gave up delivering it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TaskId {
        TaskId::parse("t-1").unwrap()
    }

    #[test]
    fn round_trips_as_small_json() {
        let m = JobMessage::run(t(), Step::Model, 2);
        let json = m.to_json();
        assert_eq!(
            json,
            r#"{"kind":"run","task_id":"t-1","step":"model","attempt":2,"try_no":1}"#
        );
        assert!(json.len() < 200);
        assert_eq!(JobMessage::from_json(&json).unwrap(), m);
        let next = m.next_try();
        assert_eq!(next.try_no, 2);
        assert_eq!(next.job_key(), m.job_key());
        assert_eq!(m.job_key(), "t-1/model/2/run");
    }

    #[test]
    fn refuses_bad_messages() {
        assert!(matches!(
            JobMessage::from_json(r#"{"kind":"run","task_id":"../x","step":"model","attempt":1}"#),
            Err(JobError::Json(_))
        ));
        assert!(matches!(
            JobMessage::from_json(r#"{"kind":"poll","task_id":"t","step":"model","attempt":1}"#),
            Err(JobError::Json(_))
        ));
        assert_eq!(
            JobMessage::from_json(
                r#"{"kind":"finalize","task_id":"t","step":"concepts","attempt":1}"#
            ),
            Err(JobError::FinalizeWithoutModel("concepts"))
        );
        assert_eq!(
            JobMessage::from_json(r#"{"kind":"run","task_id":"t","step":"model","attempt":0}"#),
            Err(JobError::ZeroCounter)
        );
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_MESSAGE_BYTES));
        assert!(matches!(
            JobMessage::from_json(&big),
            Err(JobError::TooLarge(_))
        ));
        // try_no defaults to 1 for messages written without it.
        let m = JobMessage::from_json(
            r#"{"kind":"finalize","task_id":"t","step":"refine","attempt":1}"#,
        )
        .unwrap();
        assert_eq!(m.try_no, 1);
        assert!(JobMessage::finalize(t(), Step::Concepts, 1).is_err());
    }

    #[test]
    fn stale_and_delay() {
        let m = JobMessage::run(t(), Step::Concepts, 1);
        assert!(!m.is_stale(1));
        assert!(m.is_stale(2));
        assert_eq!(delay_seconds(0), 0);
        assert_eq!(delay_seconds(1), 1);
        assert_eq!(delay_seconds(1_000), 1);
        assert_eq!(delay_seconds(1_001), 2);
        assert_eq!(delay_seconds(u64::MAX), MAX_DELAY_SECONDS);
    }

    #[test]
    fn dead_letters_fail_only_the_current_running_step() {
        let m = JobMessage::finalize(t(), Step::Model, 3).unwrap();
        let running = StepSnapshot {
            attempt: 3,
            status: Status::Processing,
        };
        match dead_letter_action(Some(&m), Some(running)) {
            DeadLetterAction::MarkFailed { code, message } => {
                assert_eq!(code, ErrorCode::Internal);
                assert!(message.contains("copied"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            dead_letter_action(
                Some(&m),
                Some(StepSnapshot {
                    attempt: 4,
                    ..running
                })
            ),
            DeadLetterAction::Ignore {
                reason: "stale attempt"
            }
        );
        assert_eq!(
            dead_letter_action(
                Some(&m),
                Some(StepSnapshot {
                    status: Status::Complete,
                    ..running
                })
            ),
            DeadLetterAction::ResyncRows,
            "a final step's rows are written again, never ignored"
        );
        assert!(matches!(
            dead_letter_action(None, Some(running)),
            DeadLetterAction::Ignore { .. }
        ));
        assert!(matches!(
            dead_letter_action(Some(&m), None),
            DeadLetterAction::Ignore { .. }
        ));
    }

    #[test]
    fn a_finalize_carries_its_model_url_on_the_first_try_only() {
        let t = TaskId::parse("t-1").unwrap();
        let m = JobMessage::finalize(t, Step::Model, 1)
            .unwrap()
            .with_model_url(Some("https://cdn/m.glb".into()));
        let back = JobMessage::from_json(&m.to_json()).unwrap();
        assert_eq!(back.model_url.as_deref(), Some("https://cdn/m.glb"));
        assert_eq!(back.next_try().model_url, None, "a retry asks Tripo again");
        assert_eq!(back.next_wait().model_url, None);
        // Absent on the wire when there is none (older messages read the same).
        let plain = JobMessage::finalize(TaskId::parse("t-1").unwrap(), Step::Model, 1).unwrap();
        assert!(!plain.to_json().contains("model_url"));
    }
}
