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
