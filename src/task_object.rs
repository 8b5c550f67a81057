//! The task Durable Object: one per `task_id` (`idFromName`), SQLite-backed. It holds the task's
//! state (steps, status, progress, provider ids, asset URLs, errors, attempts), answers the status
//! endpoint, guards idempotency, and drives Tripo polling with its alarm.
//!
//! It only translates: load state → apply a `core::task` transition → persist → set the alarm.

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::log::{self, Level};

/// Storage key of the serialized task state.
pub const STATE_KEY: &str = "task";

#[durable_object]
pub struct TaskObject {
    state: State,
    env: Env,
}

impl DurableObject for TaskObject {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let _ = &self.env;
        match (req.method().to_string().as_str(), req.path().as_str()) {
            ("GET", "/state") => match self.state.storage().get::<serde_json::Value>(STATE_KEY).await? {
                Some(v) => Response::from_json(&v),
                None => Response::error("no such task", 404),
            },
            _ => Response::error("unknown task object command", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        log::emit(Level::Info, "task.alarm", None, None, serde_json::Value::Null);
        Response::empty()
    }
}
