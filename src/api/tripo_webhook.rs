//! `POST /providers/tripo/webhook`: Tripo's signed v3 webhooks (SPEC §11 "Tripo v3").
//!
//! Order: the route exists only with webhooks on (`TRIPO_API_VERSION=v3` and
//! `TRIPO_WEBHOOK_SECRET`, else 404); the raw body is read (at most
//! `tripo_webhook::MAX_BODY_BYTES`, else 413); `Tripo-Webhook-Signature` is checked before
//! anything is parsed (timestamp within ±5 min, HMAC-SHA256 by the runtime's WebCrypto, any
//! `v1` may match) — 401 and a `tripo_webhook.refused` line otherwise; the body is parsed (400
//! if a signed body is not a task event we can read); then `flow::tripo_events` finds the step
//! (row, then Durable Object) and feeds the state machine. Every signed, well-formed delivery is
//! answered 200, whatever it led to (applied, duplicate, unknown task, or rows/DO unreachable
//! — then the safety-net poll moves the step): a 5xx would only make Tripo redeliver.
//! Logs carry the delivery id, never the signature or the secret.

use serde_json::json;
use worker::{Env, Request};

use crate::auth::webcrypto;
use crate::core::error::ApiError;
use crate::core::flow::tripo_events;
use crate::core::tripo_webhook::{
    delivery_id, parse_event, Signature, HEADER_DELIVERY, HEADER_EVENT, HEADER_SIGNATURE,
    MAX_BODY_BYTES,
};
use crate::log::{self, Level};
use crate::reply::{internal, Reply};
use crate::runtime::{Runtime, Tasks};
use crate::settings;

const PATH: &str = "/providers/tripo/webhook";

fn refused(delivery: Option<&str>, reason: &str) -> ApiError {
    log::emit(
        Level::Warn,
        "tripo_webhook.refused",
        None,
        None,
        json!({ "delivery": delivery, "reason": reason }),
    );
    ApiError::Unauthorized(format!("webhook refused: {reason}"))
}

pub async fn handle(mut req: Request, env: &Env) -> Result<Reply, ApiError> {
    let cfg = settings::config(env)?;
    let Some(secret) = cfg
        .tripo_webhook_secret
        .as_deref()
        .filter(|_| cfg.tripo_webhooks())
    else {
        return Err(ApiError::RouteNotFound(PATH.into()));
    };
    let header = |name: &str| req.headers().get(name).ok().flatten();
    // A declared length over the limit is refused before the body is read.
    let declared = header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let delivery = delivery_id(header(HEADER_DELIVERY).as_deref());
    let event_header = header(HEADER_EVENT);
    let signature = header(HEADER_SIGNATURE);
    let body = req.bytes().await.map_err(internal)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let d = delivery.as_deref();
    let sig = Signature::parse(signature.as_deref()).map_err(|e| refused(d, &e.to_string()))?;
    sig.check_time(crate::net::now_ms() / 1000)
        .map_err(|e| refused(d, &e.to_string()))?;
    let mac = webcrypto::hmac_sha256(secret.as_bytes(), &sig.signed_content(&body))
        .await
        .map_err(|_| ApiError::Internal)?;
    sig.matches(&mac).map_err(|e| refused(d, &e.to_string()))?;

    let event = parse_event(&body).map_err(|e| {
        log::emit(
            Level::Warn,
            "tripo_webhook.malformed",
            None,
            None,
            json!({ "delivery": d, "event": event_header, "error": e.to_string() }),
        );
        ApiError::MalformedJson(e.to_string())
    })?;
    let delivery = delivery.unwrap_or_else(|| "-".to_owned());
    let Some(detail) = event.task.as_ref() else {
        log::emit(
            Level::Info,
            "tripo_webhook.ignored",
            None,
            None,
            json!({ "delivery": delivery, "event": event.kind.as_str() }),
        );
        return Reply::json(200, &json!({ "received": true, "handled": "ignored" }));
    };
    let rt = Runtime::new(env, Some(cfg), Tasks::Stub);
    let result = tripo_events::on_task_event(&rt, cfg, detail, &delivery).await;
    let fields = json!({
        "delivery": delivery, "event": event.kind.as_str(), "tripo_task_id": detail.task_id,
        "tripo_status": detail.status.as_str(),
    });
    let handled = match result {
        Ok(h) => h,
        Err(e) => {
            let mut fields = fields;
            if let Some(m) = fields.as_object_mut() {
                m.insert("error".into(), json!(e.to_string()));
            }
            // Answered 200 all the same: the safety-net poll moves the step.
            log::emit(Level::Error, "tripo_webhook.deferred", None, None, fields);
            return Reply::json(200, &json!({ "received": true, "handled": "deferred" }));
        }
    };
    let (task_id, level, extra) = match &handled {
        tripo_events::Handled::Applied { task_id, outcome } => {
            (Some(task_id.as_str()), Level::Info, json!(outcome))
        }
        tripo_events::Handled::Duplicate { task_id } => {
            (Some(task_id.as_str()), Level::Info, json!(null))
        }
        tripo_events::Handled::Unknown { why } => (None, Level::Warn, json!(why)),
    };
    let mut fields = fields;
    if let Some(m) = fields.as_object_mut() {
        m.insert("handled".into(), json!(handled.label()));
        m.insert("detail".into(), extra);
    }
    log::emit(level, "tripo_webhook.received", task_id, None, fields);
    Reply::json(
        200,
        &json!({ "received": true, "handled": handled.label() }),
    )
}
