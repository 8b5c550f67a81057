//! The task Durable Object: one per `task_id` (`idFromName`), SQLite-backed. It holds the task's
//! state (steps, status, progress, provider ids, asset URLs, errors, attempts), answers the status
//! endpoint, guards idempotency, and drives Tripo polling with its alarm.
//!
//! It only translates: load state → apply one `core::task` command → persist → set the alarm
//! (after every command, a skipped one too: `core::task::effects`). The alarm sweeps every
//! unfinished step (`Command::Sweep`: lost messages sent again, deadlines enforced), then polls.
//! Requests: `POST /cmd` `{"command": Command, "now_ms": …}` → `{"outcome", "state"}` or 409
//! `{"refusal"}`; `POST /state` → `{"state": TaskState | null}`.

use std::time::Duration;

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::config::Config;
use crate::core::task::{apply, effects, Command, Refusal, TaskState};
use crate::core::task_wire::{CmdReply, CmdRequest, RefusalReply, StateReply};
use crate::flow::{self, Setup};
use crate::http::lookup;
use crate::log::{self, Level};
use crate::runtime::{Runtime, Tasks};

/// Storage key of the serialized task state.
pub const STATE_KEY: &str = "task";

#[durable_object]
pub struct TaskObject {
    state: State,
    env: Env,
}

impl TaskObject {
    pub async fn load(&self) -> Result<Option<TaskState>> {
        self.state.storage().get::<TaskState>(STATE_KEY).await
    }

    /// Applies one command and persists the result; the alarm follows the state.
    pub async fn command(
        &self,
        cmd: Command,
        now_ms: u64,
    ) -> Result<std::result::Result<CmdReply, Refusal>> {
        let current = self.load().await?;
        let (state, outcome) = match apply(current, cmd, now_ms) {
            Ok(ok) => ok,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let effects = effects(&outcome);
        if effects.delete_task {
            self.state.storage().delete_all().await?;
            self.state.storage().delete_alarm().await?;
        }
        if effects.persist {
            self.state.storage().put(STATE_KEY, &state).await?;
        }
        if effects.arm {
            self.arm(&state, now_ms).await?;
        }
        Ok(Ok(CmdReply { outcome, state }))
    }

    /// Sets the alarm to the task's next poll, watchdog or deadline (`TaskState::next_alarm_ms`).
    async fn arm(&self, state: &TaskState, now_ms: u64) -> Result<()> {
        match state.next_alarm_ms() {
            Some(at) => {
                let delay = at.saturating_sub(now_ms).max(1);
                self.state
                    .storage()
                    .set_alarm(Duration::from_millis(delay))
                    .await
            }
            None => Ok(()),
        }
    }
}

impl DurableObject for TaskObject {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/cmd" => {
                let body: CmdRequest = req.json().await?;
                match self.command(body.command, body.now_ms).await? {
                    Ok(reply) => Response::from_json(&reply),
                    Err(refusal) => {
                        Ok(Response::from_json(&RefusalReply { refusal })?.with_status(409))
                    }
                }
            }
            "/state" => Response::from_json(&StateReply {
                state: self.load().await?,
            }),
            _ => Response::error("unknown task object command", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let Some(state) = self.load().await? else {
            return Response::empty();
        };
        let cfg = match Config::load(|n| lookup(&self.env, n)) {
            Ok(c) => Some(c),
            Err(problems) => {
                let names: Vec<_> = problems.iter().map(|p| p.name).collect();
                log::emit(
                    Level::Error,
                    "poll.misconfigured",
                    Some(state.task_id.as_str()),
                    None,
                    serde_json::json!({ "missing_or_invalid": names }),
                );
                None
            }
        };
        let setup = cfg.as_ref().and_then(|c| Setup::new(c).ok());
        let rt = Runtime::new(
            &self.env,
            setup.as_ref().map(|s| s.cfg),
            Tasks::Object(self),
        );
        flow::alarm::on_alarm(&rt, setup.as_ref(), &state).await;
        // Re-arm from whatever the polls left (poll first, re-arm after).
        if let Some(latest) = self.load().await? {
            self.arm(&latest, crate::net::now_ms()).await?;
        }
        Response::empty()
    }
}
