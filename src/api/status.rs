//! `GET /tasks/{task_id}/status`: the task's state as SPEC §4.2 shows it, read from its Durable
//! Object only (never a provider, never a row; a step waiting for a provider slot also asks the
//! gate's Durable Object for its place in line). Another user's task is a plain 404.

use worker::{Env, Request, Response};

use crate::auth;
use crate::core::error::ApiError;
use crate::core::gate::{GateName, SlotKey};
use crate::core::ids::TaskId;
use crate::core::status::{parse_query, view, StatusView};
use crate::core::storage_path::{encode_path, encode_segment, percent_decode};
use crate::core::task::TaskState;
use crate::gate_object::{PositionReply, PositionRequest, BINDING as GATES};
use crate::http::{config, internal, json};
use crate::log::{self, Level};
use crate::supabase::storage;
use crate::task_client;

pub async fn handle(raw_id: &str, req: Request, env: &Env) -> Result<Response, ApiError> {
    let cfg = config(env)?;
    let user = auth::authenticate(req.headers(), &cfg).await?.user;
    let task_id = TaskId::parse(raw_id).map_err(|_| ApiError::NotFound)?;
    let url = req.url().map_err(internal)?;
    let query =
        parse_query(url.query().unwrap_or("")).map_err(|e| ApiError::Validation(vec![e]))?;
    let state = task_client::state(env, &task_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut v = view(&state, query, user).map_err(|_| ApiError::NotFound)?;
    live_places(env, &state, &mut v).await;
    if !cfg.bucket_public {
        sign_private_urls(&cfg, &mut v).await;
    }
    json(
        200,
        serde_json::to_string(&v).map_err(|_| ApiError::Internal)?,
    )
    .map_err(internal)
}

/// A step waiting for a provider slot shows its place in line as the gate has it now (the DO
/// keeps the place of its last ask, at most 20 s old); on no answer, that stored place.
async fn live_places(env: &Env, state: &TaskState, v: &mut StatusView) {
    let waiting: Vec<_> = std::iter::once(&v.current)
        .chain(&v.steps)
        .filter(|s| s.queue_position.is_some())
        .map(|s| s.step)
        .collect();
    let mut live = std::collections::BTreeMap::new();
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
        if let Ok(r) =
            task_client::call_object::<_, PositionReply>(env, GATES, gate, "position", &req).await
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

/// How long the signed URLs of a private bucket stay valid.
const SIGNED_URL_TTL_S: u64 = 3600;

/// A private bucket's outputs are stored as authenticated URLs (they do not expire but need a
/// key); the status answer gives the client fresh signed URLs instead (SPEC §7). If Storage
/// cannot sign, the stored URLs are returned as they are.
pub async fn sign_private_urls(cfg: &crate::core::config::Config, v: &mut StatusView) {
    let prefix = format!(
        "{}/storage/v1/object/authenticated/{}/",
        cfg.supabase_url,
        encode_segment(&cfg.bucket)
    );
    let urls: Vec<String> = v.asset_urls().into_iter().map(str::to_owned).collect();
    let paths: Vec<String> = urls
        .iter()
        .filter_map(|u| u.strip_prefix(&prefix))
        .map(|p| percent_decode(p).unwrap_or_else(|| p.to_owned()))
        .collect();
    if paths.is_empty() {
        return;
    }
    match storage::sign_outputs(cfg, &paths, SIGNED_URL_TTL_S).await {
        Ok(signed) => {
            let map: std::collections::HashMap<String, String> = paths
                .iter()
                .zip(signed)
                .filter_map(|(p, s)| s.map(|s| (format!("{prefix}{}", encode_path(p)), s)))
                .collect();
            v.map_asset_urls(|u| map.get(u).cloned().unwrap_or_else(|| u.to_owned()));
        }
        Err(e) => log::emit(
            Level::Warn,
            "status.sign_failed",
            None,
            None,
            serde_json::json!({ "error": e.to_string() }),
        ),
    }
}
