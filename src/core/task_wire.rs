//! The wire contract between callers and a task's Durable Object: one JSON command per request
//! (`POST /cmd` → [`CmdReply`] or 409 [`RefusalReply`]; `POST /state` → [`StateReply`]).

use serde::{Deserialize, Serialize};

use super::task::{Command, Outcome, Refusal, TaskState};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CmdRequest {
    pub command: Command,
    /// The caller's clock: one request is applied at one time.
    pub now_ms: u64,
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
