//! Calls from the worker (HTTP handlers, queue jobs) to a task's Durable Object: one JSON command
//! per request to `https://task/{path}`, the DO named by the task id (`idFromName`).

use serde::{de::DeserializeOwned, Serialize};
use worker::{Env, Headers, Method, Request, RequestInit};

use crate::core::error::{DepError, Dependency};
use crate::core::ids::TaskId;

/// Binding name of the task Durable Object namespace (wrangler.toml).
pub const BINDING: &str = "TASKS";

fn dep(e: impl std::fmt::Display) -> DepError {
    DepError::new(Dependency::TaskObject, None, e.to_string())
}

/// Sends `body` to the task's DO at `path` and decodes its JSON answer. A non-2xx answer is a
/// `DepError` carrying the DO's status and body (the DO answers refusals with 409 / 404).
pub async fn call<B: Serialize, R: DeserializeOwned>(
    env: &Env,
    task: &TaskId,
    path: &str,
    body: &B,
) -> Result<R, DepError> {
    call_object(env, BINDING, task.as_str(), path, body).await
}

/// Sends `body` to the Durable Object `name` of namespace `binding` at `path` (see [`call`]).
pub async fn call_object<B: Serialize, R: DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    path: &str,
    body: &B,
) -> Result<R, DepError> {
    let ns = env.durable_object(binding).map_err(dep)?;
    let stub = ns.get_by_name(name).map_err(dep)?;
    let headers = Headers::new();
    headers
        .set("content-type", "application/json")
        .map_err(dep)?;
    let text = serde_json::to_string(body).map_err(dep)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(text.into()));
    let req = Request::new_with_init(&format!("https://object/{path}"), &init).map_err(dep)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(dep)?;
    let status = resp.status_code();
    let bytes = resp.bytes().await.map_err(dep)?;
    if !(200..300).contains(&status) {
        return Err(DepError::new(
            Dependency::TaskObject,
            Some(status),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    serde_json::from_slice(&bytes).map_err(dep)
}

use crate::core::task::{Command, Refusal, TaskState};
use crate::core::task_wire::{CmdReply, CmdRequest, RefusalReply, StateReply};

/// Current time in ms (the DO applies commands at the caller's clock, so one request sees one time).
pub use crate::net::now_ms;

/// Applies one command in the task's DO: `Ok(Ok(reply))`, or `Ok(Err(refusal))` when the state
/// machine refused it (nothing persisted).
pub async fn command(
    env: &Env,
    task: &TaskId,
    command: Command,
) -> Result<Result<CmdReply, Refusal>, DepError> {
    command_at(env, task, command, now_ms()).await
}

/// [`command`] applied at the caller's time `now_ms`.
pub async fn command_at(
    env: &Env,
    task: &TaskId,
    command: Command,
    now_ms: u64,
) -> Result<Result<CmdReply, Refusal>, DepError> {
    let req = CmdRequest { command, now_ms };
    match call::<_, CmdReply>(env, task, "cmd", &req).await {
        Ok(reply) => Ok(Ok(reply)),
        Err(e) if e.status == Some(409) => match serde_json::from_str::<RefusalReply>(&e.message) {
            Ok(r) => Ok(Err(r.refusal)),
            Err(_) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The task's state, `None` for an unknown task.
pub async fn state(env: &Env, task: &TaskId) -> Result<Option<TaskState>, DepError> {
    Ok(
        call::<_, StateReply>(env, task, "state", &serde_json::Value::Null)
            .await?
            .state,
    )
}

/// Sends `req` to the task's DO as it is and returns its raw answer (a stream or a WebSocket
/// upgrade is passed through, never read).
pub async fn forward(env: &Env, task: &TaskId, req: Request) -> Result<worker::Response, DepError> {
    let ns = env.durable_object(BINDING).map_err(dep)?;
    let stub = ns.get_by_name(task.as_str()).map_err(dep)?;
    stub.fetch_with_request(req).await.map_err(dep)
}
