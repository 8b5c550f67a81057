//! What every client sees of a task, wherever it goes — the status answer, the events stream,
//! the WebSocket and the webhook body (SPEC §11: each is exactly the status view): the view of
//! `core::status`, with the live `queue_position` of a step waiting for a provider slot (asked
//! of the gate's Durable Object) and, for a private bucket, fresh signed URLs.

use std::collections::BTreeMap;

use worker::Env;

use crate::core::config::Config;
use crate::core::error::Dependency;
use crate::core::gate::{GateName, SlotKey};
use crate::core::gate_wire::{PositionReply, PositionRequest, BINDING as GATES, POSITION_PATH};
use crate::core::status::StatusView;
use crate::core::task::TaskState;
use crate::log::{self, Level};
use crate::stub;
use crate::supabase::storage::sign_private_urls;

/// Makes a status view what every client sees: the live `queue_position` of a step waiting for a provider slot, and for a private
/// bucket fresh signed URLs. `Err` when a private bucket's URLs could not be signed (the view
/// keeps the stored, authenticated URLs).
pub async fn present(
    env: &Env,
    cfg: &Config,
    state: &TaskState,
    v: &mut StatusView,
) -> Result<(), String> {
    live_places(env, state, v).await;
    if cfg.bucket_public {
        return Ok(());
    }
    sign_private_urls(cfg, v).await
}

/// [`present`] for a reader (status, events, WebSocket): if signing fails, the stored URLs are
/// shown and `status.sign_failed` is logged.
pub async fn present_or_stored(env: &Env, cfg: &Config, state: &TaskState, v: &mut StatusView) {
    if let Err(e) = present(env, cfg, state, v).await {
        log::emit(
            Level::Warn,
            "status.sign_failed",
            Some(state.task_id.as_str()),
            None,
            serde_json::json!({ "error": e }),
        );
    }
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
