//! Live status (SPEC §11 "Live status"), the pure parts: when a change is visible to clients,
//! the event ids, `Last-Event-ID` resume, the Server-Sent Events framing, and when a stream ends.
//!
//! Every event carries the full status view (SPEC §4.2), so a client that missed events has lost
//! no state: resuming sends the current view at once when its id is older than the task's.
//! The id is the task's change counter (`TaskState::version`), persisted with the state by the
//! Durable Object: it only grows, across evictions and restarts.

use super::status::{step_view, StepView};
use super::step::Step;
use super::task::TaskState;

/// A comment line every this many ms keeps proxies from closing an idle stream.
pub const HEARTBEAT_MS: u64 = 15_000;
/// The SSE comment sent as heartbeat.
pub const HEARTBEAT: &str = ": heartbeat\n\n";
/// The largest event id a client may send back (JavaScript's largest exact integer).
pub const MAX_EVENT_ID: u64 = 9_007_199_254_740_991;

/// An event id as a client sends it: a decimal integer up to [`MAX_EVENT_ID`].
pub fn parse_event_id(v: &str) -> Option<u64> {
    v.trim().parse::<u64>().ok().filter(|n| *n <= MAX_EVENT_ID)
}

/// How long an `EventSource` waits before reconnecting (the `retry:` field of the first frame).
pub const RECONNECT_MS: u64 = 2_000;

/// What a client sees of a task: every step's view and which step is the latest. A command that
/// changes this is a change of the task (its `version` grows, subscribers get an event);
/// bookkeeping (claims, leases, row checks, `updated_at` alone) is not.
pub fn visible(state: &TaskState) -> (Option<Step>, Vec<StepView>) {
    (
        state.last_submitted(),
        state
            .steps
            .iter()
            .map(|(step, s)| step_view(*step, s))
            .collect(),
    )
}

/// Whether `after` shows clients something `before` did not.
pub fn changed(before: Option<&TaskState>, after: &TaskState) -> bool {
    before.is_none_or(|b| visible(b) != visible(after))
}

/// Whether every submitted step is final: the stream ends.
pub fn all_final(state: &TaskState) -> bool {
    state.steps.values().all(|s| s.status.is_terminal())
}

/// The id a reconnecting client last received: the `Last-Event-ID` header, else the
/// `last_event_id` query parameter (for clients that cannot set headers). Unparsable → `None`.
pub fn last_event_id(header: Option<&str>, query: Option<&str>) -> Option<u64> {
    header.or(query).and_then(parse_event_id)
}

/// What a new subscription starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Send the current view now (id `version`), then changes.
    SendCurrent,
    /// The client is up to date and the task is still running: changes only.
    Wait,
    /// The client is up to date and every step is final: nothing will come (answer 204, which
    /// tells an `EventSource` to stop reconnecting).
    NothingMore,
}

/// How a subscription with `last_seen` starts on a task at `version`.
pub fn start(last_seen: Option<u64>, version: u64, finished: bool) -> Start {
    match last_seen {
        Some(seen) if seen >= version => {
            if finished {
                Start::NothingMore
            } else {
                Start::Wait
            }
        }
        _ => Start::SendCurrent,
    }
}

/// One SSE `status` event. `json` is compact JSON (no line breaks), so it fits one `data:` line.
pub fn sse_event(id: u64, json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 40);
    out.push_str("id: ");
    out.push_str(&id.to_string());
    out.push_str("\nevent: status\n");
    for line in json.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The first bytes of a stream: the reconnect delay.
pub fn sse_preamble() -> String {
    format!("retry: {RECONNECT_MS}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(
            sse_event(7, r#"{"a":1}"#),
            "id: 7\nevent: status\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            sse_event(1, "a\nb"),
            "id: 1\nevent: status\ndata: a\ndata: b\n\n"
        );
        assert_eq!(sse_preamble(), "retry: 2000\n\n");
        assert!(HEARTBEAT.starts_with(':') && HEARTBEAT.ends_with("\n\n"));
    }

    #[test]
    fn resume() {
        assert_eq!(last_event_id(Some(" 12 "), Some("3")), Some(12));
        assert_eq!(last_event_id(None, Some("3")), Some(3));
        assert_eq!(last_event_id(Some("x"), None), None);
        assert_eq!(last_event_id(Some("9007199254740992"), None), None);
        assert_eq!(start(None, 5, false), Start::SendCurrent);
        assert_eq!(start(Some(4), 5, true), Start::SendCurrent);
        assert_eq!(start(Some(5), 5, false), Start::Wait);
        assert_eq!(start(Some(9), 5, true), Start::NothingMore);
    }
}
