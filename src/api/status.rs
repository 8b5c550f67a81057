//! `GET /tasks/{task_id}/status`: the task's state as SPEC §4.2 shows it, read from its Durable
//! Object only (never a provider, never a row; a step waiting for a provider slot also asks the
//! gate's Durable Object for its place in line). Another user's task is a plain 404.

use worker::{Env, Request};

use crate::core::error::ApiError;
use crate::core::status::view;
use crate::reply::Reply;
use crate::task_client;

use super::{TaskRequest, Token};

pub async fn handle(raw_id: &str, req: Request, env: &Env) -> Result<Reply, ApiError> {
    let t = TaskRequest::open(raw_id, &req, env, Token::Header).await?;
    let state = task_client::state(env, &t.task_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut v = view(&state, t.query, t.user).map_err(|_| ApiError::NotFound)?;
    crate::view::present_or_stored(env, t.cfg, &state, &mut v).await;
    Reply::json(200, &v)
}
