//! The wire contract between callers and a task's Durable Object (`task_client` and
//! `task_object` both import it): its binding, one JSON command per request (`POST /cmd` →
//! [`CmdReply`] or 409 [`RefusalReply`]; `POST /state` → [`StateReply`]), the live-status
//! subscriptions (`POST /events`, `GET /ws` with [`LIVE_HEADER`]), and the typed error of a
//! command ([`DoError`]).

use serde::{Deserialize, Serialize};

use super::error::{DepError, Dependency};
use super::retry::{Failure, FailureClass};
use super::task::{Command, Outcome, Refusal, TaskState};

/// Binding of the task Durable Object namespace (wrangler.toml).
pub const BINDING: &str = "TASKS";

/// The object's paths (a request goes to `https://object{path}`).
pub const CMD_PATH: &str = "/cmd";
pub const STATE_PATH: &str = "/state";
pub const EVENTS_PATH: &str = "/events";
pub const WS_PATH: &str = "/ws";

/// Header carrying the [`LiveRequest`] of a WebSocket upgrade (its request has no body).
pub const LIVE_HEADER: &str = "x-live";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CmdRequest {
    pub command: Command,
    /// The caller's clock: one request is applied at one time.
    pub now_ms: u64,
    /// When the command leaves a step final with its rows unconfirmed (a job's `Fail` or
    /// `Complete`), the object writes the rows itself after persisting (`flow::rows::sync`: the
    /// DO first, rows follow) and settles its rows check before it answers — one round trip
    /// less than the job's own write and `RowsSynced`. A failed write leaves the check
    /// unsettled: the caller writes them, and the alarm after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync_rows: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmdReply {
    pub outcome: Outcome,
    pub state: TaskState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusalReply {
    pub refusal: Refusal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateReply {
    pub state: Option<TaskState>,
}

/// A live-status subscription (`POST /events`, or `/ws` with this JSON in the `x-live` header):
/// who asks, which step's view (as the status endpoint's `step`/`service`, else the latest), and
/// the last event id the client saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveRequest {
    pub owner: super::ids::UserId,
    #[serde(default)]
    pub step: Option<super::step::Step>,
    #[serde(default)]
    pub service: Option<super::step::Service>,
    #[serde(default)]
    pub last_event_id: Option<u64>,
}

impl LiveRequest {
    pub fn query(&self) -> super::status::StatusQuery {
        use super::status::StatusQuery;
        match (self.step, self.service) {
            (Some(step), _) => StatusQuery::Step(step),
            (None, Some(service)) => StatusQuery::Service(service),
            (None, None) => StatusQuery::Latest,
        }
    }
}

/// Why a command to a task's Durable Object did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoError {
    /// The state machine refused it (`409` [`RefusalReply`]): nothing was persisted.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// No usable answer: the object was unreachable, failed, or answered what we cannot read.
    #[error(transparent)]
    Unavailable(#[from] DepError),
}

/// A job's command that did not apply, classified: a refusal is final (`Rejected`), an
/// unavailable object a failure of `Dependency::TaskObject` like any other call.
impl From<DoError> for Failure {
    fn from(e: DoError) -> Failure {
        match e {
            DoError::Refused(r) => Failure::new(
                Dependency::TaskObject,
                FailureClass::Rejected,
                &r.to_string(),
            ),
            DoError::Unavailable(e) => Failure::from(e),
        }
    }
}
