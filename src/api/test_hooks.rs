//! `POST /__test/enqueue`: sends a raw job message (the end-to-end suite forces duplicate
//! deliveries with it). Only with `TEST_HOOKS=true`, which the configuration accepts only with
//! `AUTH_MODE=none` (with real auth the worker reports itself misconfigured); a 404 otherwise.

use worker::{Env, Request};

use crate::core::error::ApiError;
use crate::core::jobs::JobMessage;
use crate::queue;
use crate::reply::{internal, Reply};
use crate::settings;

pub async fn enqueue(mut req: Request, env: &Env) -> Result<Reply, ApiError> {
    if !settings::config(env)?.test_hooks {
        return Err(ApiError::RouteNotFound("/__test/enqueue".into()));
    }
    let text = req.text().await.map_err(internal)?;
    let msg = JobMessage::from_json(&text).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    queue::enqueue(env, &msg, 0).await?;
    Ok(Reply::Json {
        status: 202,
        body: r#"{"enqueued":true}"#.to_owned(),
    })
}
