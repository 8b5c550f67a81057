//! `GET /tasks/{task_id}/status`: the task's state as SPEC §4.2 shows it, read from its Durable
//! Object only (never a provider, never a row). Another user's task is a plain 404.

use worker::{Env, Request, Response};

use crate::auth;
use crate::core::ids::TaskId;
use crate::core::status::{parse_query, view};
use crate::error::ApiError;
use crate::http::{config, internal, json};
use crate::task_client;

pub async fn handle(raw_id: &str, req: Request, env: &Env) -> Result<Response, ApiError> {
    let cfg = config(env)?;
    let user = auth::authenticate(req.headers(), &cfg).await?;
    let task_id = TaskId::parse(raw_id).map_err(|_| ApiError::NotFound)?;
    let url = req.url().map_err(internal)?;
    let query =
        parse_query(url.query().unwrap_or("")).map_err(|e| ApiError::Validation(vec![e]))?;
    let state = task_client::state(env, &task_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let v = view(&state, query, user).map_err(|_| ApiError::NotFound)?;
    json(
        200,
        serde_json::to_string(&v).map_err(|_| ApiError::Internal)?,
    )
    .map_err(internal)
}
