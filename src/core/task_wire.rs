//! The wire contract between callers and a task's Durable Object (`task_client` and
//! `task_object` both import it): its binding, one JSON command per request (`POST /cmd` →
//! [`CmdReply`] or 409 [`RefusalReply`]; `POST /state` → [`StateReply`]; `POST /view` with a
//! [`LiveRequest`] → the status view's JSON, or 404 for another owner or nothing to show), the
//! live-status subscriptions (`POST /events`, `GET /ws` with [`LIVE_HEADER`]), and the typed
//! error of a command ([`DoError`]).

use serde::{Deserialize, Serialize};

use super::error::{DepError, Dependency};
use super::retry::{Failure, FailureClass};
use super::task::{Command, Outcome, Refusal, TaskState};

/// Binding of the task Durable Object namespace (wrangler.toml).
pub const BINDING: &str = "TASKS";

/// The object's paths (a request goes to `https://object{path}`).
pub const CMD_PATH: &str = "/cmd";
pub const STATE_PATH: &str = "/state";
pub const VIEW_PATH: &str = "/view";
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

impl CmdReply {
    /// The reply's JSON. `stored` is the state's JSON text as the object just stored it (the same
    /// state): it goes in as it is instead of being serialized a second time.
    pub fn to_json(&self, stored: Option<&str>) -> serde_json::Result<String> {
        match stored {
            Some(state) => {
                let outcome = serde_json::to_string(&self.outcome)?;
                Ok(format!("{{\"outcome\":{outcome},\"state\":{state}}}"))
            }
            None => serde_json::to_string(self),
        }
    }
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
    /// The request of `owner` for the view `query` selects (`POST /view`, or a subscription
    /// from its start).
    pub fn new(owner: super::ids::UserId, query: super::status::StatusQuery) -> LiveRequest {
        use super::status::StatusQuery;
        let (step, service) = match query {
            StatusQuery::Latest => (None, None),
            StatusQuery::Step(step) => (Some(step), None),
            StatusQuery::Service(service) => (None, Some(service)),
        };
        LiveRequest {
            owner,
            step,
            service,
            last_event_id: None,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use crate::request::{parse, Endpoint};
    use crate::task::{apply, Submission};

    fn created() -> CmdReply {
        let valid = parse(
            Endpoint::TextToModel,
            br#"{"task_id": "wire-1", "prompt": "a \"quoted\" cat", "texture": false}"#,
        )
        .expect("a valid request");
        let cmd = Command::Submit(Submission {
            owner: UserId(uuid::Uuid::from_u128(7)),
            task_id: valid.task_id,
            request: valid.request,
            deadline_ms: 60_000,
        });
        let (state, outcome) = apply(None, cmd, 1_000).expect("a new task");
        CmdReply { outcome, state }
    }

    #[test]
    fn a_reply_around_the_stored_text_reads_as_the_serialized_reply() {
        let reply = created();
        let stored = serde_json::to_string(&reply.state).expect("state JSON");
        let around = reply.to_json(Some(&stored)).expect("reply JSON");
        let whole = reply.to_json(None).expect("reply JSON");
        let read: CmdReply = serde_json::from_str(&around).expect("the reply reads back");
        assert_eq!(read, reply);
        let as_value = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("JSON");
        assert_eq!(as_value(&around), as_value(&whole));
    }

    #[test]
    fn the_stored_text_is_sent_as_it_is() {
        // The object's stored text, not the reply's own state, is what the caller reads: a
        // state that differs from it (which the object never passes) shows through.
        let reply = created();
        let mut other = reply.state.clone();
        other.version += 1;
        let stored = serde_json::to_string(&other).expect("state JSON");
        let read: CmdReply =
            serde_json::from_str(&reply.to_json(Some(&stored)).expect("reply JSON"))
                .expect("the reply reads back");
        assert_eq!(read.state.version, reply.state.version + 1);
        assert_eq!(read.outcome, reply.outcome);
    }

    #[test]
    fn a_view_request_carries_the_callers_query_over_the_wire() {
        use crate::status::StatusQuery;
        use crate::step::{Service, Step};
        let owner = UserId(uuid::Uuid::from_u128(9));
        for query in [
            StatusQuery::Latest,
            StatusQuery::Step(Step::Concepts),
            StatusQuery::Step(Step::Model),
            StatusQuery::Service(Service::Tripo),
            StatusQuery::Step(Step::Refine),
            StatusQuery::Service(Service::OpenAi),
        ] {
            let sent = serde_json::to_string(&LiveRequest::new(owner, query)).expect("JSON");
            let read: LiveRequest = serde_json::from_str(&sent).expect("reads back");
            assert_eq!(read.query(), query, "{sent}");
            assert_eq!(read.owner, owner);
            assert_eq!(read.last_event_id, None);
        }
    }
}
