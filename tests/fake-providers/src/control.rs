//! Test-control routes under `/__fake/` (never part of either provider's API):
//!
//! | route | purpose |
//! |---|---|
//! | `POST /__fake/directives` `{"match","directive"}` | apply `directive` to every request whose prompt, body or uploaded file contains `match`; → `201 {"id",...}` |
//! | `GET /__fake/directives` | the registered rules |
//! | `DELETE /__fake/directives/{id}` | remove a rule (204, or 404) |
//! | `GET /__fake/log?contains=<s>` | the request log, filtered by substring |
//! | `POST /__fake/keys` `{"provider":"openai"\|"tripo","key"}` | accept another API key (e.g. a second Tripo account) |
//! | `GET /__fake/tasks/{id}` | a Tripo task as the fake sees it (owner-agnostic), with model seeds and sizes |
//! | `GET /__fake/health` | `{"ok":true}` |
//! | `POST /__fake/chaos` `{"rate","seed","kinds","hold_ms","slow_ms"}` / `DELETE` / `GET` | chaos mode on / off (its counters) / counters, see `chaos.rs` |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::directives::Directive;
use crate::glb::{glb_bytes_len, model_seed};
use crate::Shared;

fn bad(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.into()})),
    )
        .into_response()
}

/// The control routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/__fake/directives",
            post(add_directive).get(list_directives),
        )
        .route("/__fake/directives/{id}", delete(remove_directive))
        .route("/__fake/log", get(log))
        .route("/__fake/keys", post(add_key))
        .route("/__fake/tasks/{id}", get(task))
        .route(
            "/__fake/chaos",
            get(crate::chaos::control)
                .post(crate::chaos::control)
                .delete(crate::chaos::control),
        )
        .route(
            "/__fake/health",
            get(|| async { Json(json!({"ok": true})) }),
        )
}

async fn add_directive(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("body must be JSON: {\"match\":\"...\",\"directive\":\"...\"}");
    };
    let (Some(needle), Some(text)) = (v["match"].as_str(), v["directive"].as_str()) else {
        return bad("'match' and 'directive' must be strings");
    };
    let directive = match Directive::parse(text) {
        Ok(d) => d,
        Err(e) => return bad(e),
    };
    match shared.matches.add(needle, directive) {
        Ok(id) => (
            StatusCode::CREATED,
            Json(json!({"id": id, "match": needle, "directive": text})),
        )
            .into_response(),
        Err(e) => bad(e),
    }
}

async fn list_directives(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.matches.list()).into_response()
}

async fn remove_directive(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> StatusCode {
    if shared.matches.remove(id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn log(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    Json(Value::Array(
        shared.log.query(q.get("contains").map(String::as_str)),
    ))
    .into_response()
}

async fn add_key(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("body must be JSON: {\"provider\":\"openai|tripo\",\"key\":\"...\"}");
    };
    match (v["provider"].as_str(), v["key"].as_str()) {
        (Some("openai"), Some(k)) if !k.is_empty() => {
            shared.add_key(k);
            StatusCode::NO_CONTENT.into_response()
        }
        (Some("tripo"), Some(k)) if k.starts_with("tsk_") => {
            shared.add_key(k);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => bad("'provider' must be openai or tripo, and a tripo 'key' must start with tsk_"),
    }
}

async fn task(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let now = Instant::now();
    let found = shared.tripo.with_task(&id, |t| {
        let models: serde_json::Map<String, Value> = t
            .model_kinds()
            .into_iter()
            .map(|k| {
                (
                    k.to_string(),
                    json!({"seed": model_seed(&t.id, k), "bytes": glb_bytes_len(t.glb_bytes)}),
                )
            })
            .collect();
        json!({
            "task_id": t.id,
            "type": t.ty.as_str(),
            "status": t.status(now),
            "model_version": t.model_version,
            "prompt": t.prompt,
            "directive": t.directive.as_ref().map(|d| d.text().to_string()),
            "input": t.input,
            "credits": t.credits,
            "models": models,
        })
    });
    match found {
        Some(v) => Json(v).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such task"})),
        )
            .into_response(),
    }
}
