//! `GET /tasks/{task_id}/status`: the task's state as SPEC §4.2 shows it, read from its Durable
//! Object only (never a provider, never a row; a step waiting for a provider slot also asks the
//! gate's Durable Object for its place in line). The object makes the view (`POST /view`, the
//! owner compared there); another user's task is a plain 404.

use worker::{Env, Request};

use crate::core::error::ApiError;
use crate::reply::Reply;
use crate::task_client;

use super::{TaskRequest, Token};

pub async fn handle(raw_id: &str, req: Request, env: &Env) -> Result<Reply, ApiError> {
    let t = TaskRequest::open(raw_id, &req, env, Token::Header).await?;
    // The object makes the view from the state it holds and answers its JSON, which goes out as
    // it is: the state is not sent here, parsed and serialized again (`task_client::view`).
    let body = task_client::view(env, &t.task_id, t.user, t.query)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Reply::Json { status: 200, body })
}
