//! Live status and cancel (SPEC §11): `GET /tasks/{task_id}/events` (Server-Sent Events),
//! `GET /tasks/{task_id}/ws` (a WebSocket) — both served by the task's Durable Object, which
//! pushes every change as it applies it (`TaskObject::push`) — and `POST /tasks/{task_id}/cancel`.
//! Owner only: another user's task is a 404, as for the status endpoint. Browsers' EventSource
//! and WebSocket cannot set headers, so the token may come as `?access_token=`; request URLs are
//! never logged (only paths), so the token is not either.

use worker::{Env, Headers, Method, Request, RequestInit, Response};

use crate::core::error::{ApiError, DepError, Dependency, FieldError};
use crate::core::flow;
use crate::core::ids::TaskId;
use crate::core::live;
use crate::core::status::{view, StatusQuery};
use crate::core::task::Refusal;
use crate::core::task_wire::{DoError, LiveRequest, EVENTS_PATH, LIVE_HEADER, WS_PATH};
use crate::reply::{internal, Reply};
use crate::runtime::{Runtime, Tasks};
use crate::task_client;

use super::{query_param, TaskRequest, Token};

/// Validates the request and builds the subscription.
async fn subscription(
    raw_id: &str,
    req: &Request,
    env: &Env,
) -> Result<(TaskId, LiveRequest), ApiError> {
    let TaskRequest {
        user,
        task_id,
        query: q,
        raw_query: query,
        ..
    } = TaskRequest::open(raw_id, req, env, Token::HeaderOrQuery).await?;
    let (step, service) = match q {
        StatusQuery::Latest => (None, None),
        StatusQuery::Step(s) => (Some(s), None),
        StatusQuery::Service(s) => (None, Some(s)),
    };
    let header = req.headers().get("last-event-id").ok().flatten();
    let from_query = query_param(&query, "last_event_id");
    if from_query
        .as_deref()
        .is_some_and(|v| live::parse_event_id(v).is_none())
    {
        return Err(ApiError::Validation(vec![FieldError::new(
            "last_event_id",
            "must be an integer from 0 to 9007199254740991",
        )]));
    }
    let last_event_id = live::last_event_id(header.as_deref(), from_query.as_deref());
    Ok((
        task_id,
        LiveRequest {
            owner: user,
            step,
            service,
            last_event_id,
        },
    ))
}

/// `GET /tasks/{task_id}/events`.
pub async fn events(raw_id: &str, req: Request, env: &Env) -> Result<Reply, ApiError> {
    let (task_id, sub) = subscription(raw_id, &req, env).await?;
    let headers = Headers::new();
    headers
        .set("content-type", "application/json")
        .map_err(internal)?;
    let body = serde_json::to_string(&sub).map_err(|_| ApiError::Internal)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let inner =
        Request::new_with_init(&format!("https://object{EVENTS_PATH}"), &init).map_err(internal)?;
    let resp = task_client::forward(env, &task_id, inner).await?;
    match resp.status_code() {
        404 => Err(ApiError::NotFound),
        204 => Ok(Reply::Empty(204)),
        200 => {
            let (_, body) = resp.into_parts();
            let out = Response::from_body(body).map_err(internal)?;
            let h = out.headers();
            for (k, v) in [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("cache-control", "no-store"),
                ("x-accel-buffering", "no"),
            ] {
                h.set(k, v).map_err(internal)?;
            }
            Ok(Reply::Raw(out))
        }
        status => Err(DepError::new(
            Dependency::TaskObject,
            Some(status),
            "the task object refused the event stream",
        )
        .into()),
    }
}

/// `GET /tasks/{task_id}/ws` (with `Upgrade: websocket`).
pub async fn websocket(raw_id: &str, req: Request, env: &Env) -> Result<Reply, ApiError> {
    let upgrade = req
        .headers()
        .get("upgrade")
        .ok()
        .flatten()
        .unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::UpgradeRequired);
    }
    let (task_id, sub) = subscription(raw_id, &req, env).await?;
    let headers = Headers::new();
    headers.set("upgrade", "websocket").map_err(internal)?;
    let live = serde_json::to_string(&sub).map_err(|_| ApiError::Internal)?;
    headers.set(LIVE_HEADER, &live).map_err(internal)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let inner =
        Request::new_with_init(&format!("https://object{WS_PATH}"), &init).map_err(internal)?;
    let resp = task_client::forward(env, &task_id, inner).await?;
    if resp.status_code() == 404 {
        return Err(ApiError::NotFound);
    }
    match resp.websocket() {
        Some(ws) => Response::from_websocket(ws)
            .map(Reply::Raw)
            .map_err(internal),
        None => Err(ApiError::Internal),
    }
}

/// `POST /tasks/{task_id}/cancel[?step=]`: 200 with the status view (of `step`, else the latest).
pub async fn cancel(raw_id: &str, req: Request, env: &Env) -> Result<Reply, ApiError> {
    let TaskRequest {
        cfg,
        user,
        task_id,
        query,
        ..
    } = TaskRequest::open(raw_id, &req, env, Token::Header).await?;
    let only = match query {
        StatusQuery::Step(s) => Some(s),
        // `service=` names a step only through the task: resolved below from its state.
        StatusQuery::Latest | StatusQuery::Service(_) => None,
    };
    let rt = Runtime::new(env, Some(cfg), Tasks::Stub);
    let only = match (only, query) {
        (None, StatusQuery::Service(_)) => {
            let state = task_client::state(env, &task_id)
                .await?
                .ok_or(ApiError::NotFound)?;
            Some(
                view(&state, query, user)
                    .map_err(|_| ApiError::NotFound)?
                    .current
                    .step,
            )
        }
        (only, _) => only,
    };
    let state = match flow::cancel::cancel(&rt, cfg, &task_id, user, only).await {
        Ok(state) => state,
        Err(DoError::Refused(
            Refusal::OtherOwner | Refusal::UnknownTask | Refusal::UnknownStep(_),
        )) => return Err(ApiError::NotFound),
        Err(DoError::Refused(_)) => return Err(ApiError::Internal),
        Err(DoError::Unavailable(e)) => return Err(e.into()),
    };
    let v = view(&state, query, user).map_err(|_| ApiError::NotFound)?;
    Reply::json(200, &v)
}
