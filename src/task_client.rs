//! Calls from the worker (HTTP handlers, queue jobs, the other objects) to a task's Durable Object,
//! the object named by the task id (`idFromName`), over the contract of `core::task_wire`.

use worker::{Env, Request, Response};

use crate::core::error::{DepError, Dependency};
use crate::core::ids::{TaskId, UserId};
use crate::core::status::StatusQuery;
use crate::core::task::{Command, TaskState};
use crate::core::task_wire::{
    CmdReply, CmdRequest, DoError, LiveRequest, RefusalReply, StateReply, BINDING, CMD_PATH,
    STATE_PATH, VIEW_PATH,
};
use crate::stub;

/// Applies one command in the task's DO at the caller's time `now_ms` (one request is applied
/// at one time): its reply, or [`DoError::Refused`] when the state machine refused it (409,
/// nothing persisted).
pub async fn command(
    env: &Env,
    task: &TaskId,
    command: Command,
    now_ms: u64,
) -> Result<CmdReply, DoError> {
    send(env, task, command, now_ms, false).await
}

/// [`command`] for a command that ends a step: the object also writes the step's rows when it
/// can (`CmdRequest::sync_rows`).
pub async fn command_syncing_rows(
    env: &Env,
    task: &TaskId,
    command: Command,
    now_ms: u64,
) -> Result<CmdReply, DoError> {
    send(env, task, command, now_ms, true).await
}

async fn send(
    env: &Env,
    task: &TaskId,
    command: Command,
    now_ms: u64,
    sync_rows: bool,
) -> Result<CmdReply, DoError> {
    let req = CmdRequest {
        command,
        now_ms,
        sync_rows,
    };
    let dep = Dependency::TaskObject;
    let answer = stub::post(env, dep, BINDING, task.as_str(), CMD_PATH, &req).await?;
    match answer.status {
        200..=299 => Ok(answer.decode::<CmdReply>(dep)?),
        409 => Err(DoError::Refused(
            answer.decode::<RefusalReply>(dep)?.refusal,
        )),
        _ => Err(answer.into_error(dep).into()),
    }
}

/// The task's state, `None` for an unknown task.
pub async fn state(env: &Env, task: &TaskId) -> Result<Option<TaskState>, DepError> {
    let reply: StateReply = stub::call(
        env,
        Dependency::TaskObject,
        BINDING,
        task.as_str(),
        STATE_PATH,
        &(),
    )
    .await?;
    Ok(reply.state)
}

/// The status view (SPEC §4.2) of `query` as `caller` may see it, made by the task's DO from the
/// state it holds (the owner compared there, `view::present` applied): its JSON text, or `None`
/// when there is nothing to show — no task, another owner, no such step — all one 404.
pub async fn view(
    env: &Env,
    task: &TaskId,
    caller: UserId,
    query: StatusQuery,
) -> Result<Option<String>, DepError> {
    let dep = Dependency::TaskObject;
    let req = LiveRequest::new(caller, query);
    let answer = stub::post(env, dep, BINDING, task.as_str(), VIEW_PATH, &req).await?;
    match answer.status {
        404 => Ok(None),
        _ if answer.is_success() => String::from_utf8(answer.body)
            .map(Some)
            .map_err(|e| DepError::new(dep, None, e.to_string())),
        _ => Err(answer.into_error(dep)),
    }
}

/// Sends `req` to the task's DO as it is and returns its raw answer (a stream or a WebSocket
/// upgrade is passed through, never read).
pub async fn forward(env: &Env, task: &TaskId, req: Request) -> Result<Response, DepError> {
    stub::forward(env, Dependency::TaskObject, BINDING, task.as_str(), req).await
}
