//! `GET /tasks/{task_id}/status`: the task's state as SPEC §4.2 shows it, read from its Durable
//! Object only (never a provider, never a row; a step waiting for a provider slot also asks the
//! gate's Durable Object for its place in line). Another user's task is a plain 404.

use std::collections::BTreeMap;

use worker::{Env, Request};

use crate::core::error::{ApiError, Dependency};
use crate::core::gate::{GateName, SlotKey};
use crate::core::gate_wire::{PositionReply, PositionRequest, BINDING as GATES, POSITION_PATH};
use crate::core::status::{view, StatusView};
use crate::core::task::TaskState;
use crate::reply::Reply;
use crate::supabase::storage::sign_private_urls;
use crate::{stub, task_client};

use super::{TaskRequest, Token};

pub async fn handle(raw_id: &str, req: Request, env: &Env) -> Result<Reply, ApiError> {
    let t = TaskRequest::open(raw_id, &req, env, Token::Header).await?;
    let state = task_client::state(env, &t.task_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut v = view(&state, t.query, t.user).map_err(|_| ApiError::NotFound)?;
    live_places(env, &state, &mut v).await;
    if !t.cfg.bucket_public {
        sign_private_urls(t.cfg, &mut v).await;
    }
    Reply::json(200, &v)
}

/// A step waiting for a provider slot shows its place in line as the gate has it now (the DO
/// keeps the place of its last ask, at most 20 s old); on no answer, that stored place.
async fn live_places(env: &Env, state: &TaskState, v: &mut StatusView) {
    let waiting: Vec<_> = std::iter::once(&v.current)
        .chain(&v.steps)
        .filter(|s| s.queue_position.is_some())
        .map(|s| s.step)
        .collect();
    let mut live = BTreeMap::new();
    for step in waiting {
        let (Some(s), false) = (state.steps.get(&step), live.contains_key(&step)) else {
            continue;
        };
        let req = PositionRequest {
            key: SlotKey {
                task_id: state.task_id.clone(),
                step,
                attempt: s.attempt,
            },
        };
        let gate = GateName::of(step).as_str();
        let dep = Dependency::ProviderGate;
        if let Ok(r) =
            stub::call::<_, PositionReply>(env, dep, GATES, gate, POSITION_PATH, &req).await
        {
            live.insert(step, r.position);
        }
    }
    for view in std::iter::once(&mut v.current).chain(v.steps.iter_mut()) {
        if let Some(p) = live.get(&view.step) {
            view.queue_position = *p;
        }
    }
}
