//! Webhook delivery (SPEC §11 "Webhooks"): at least once, through the jobs queue, the same
//! `webhook-id` on every try.
//!
//! A step that becomes final with a `webhook_url` records a [`WebhookDue`] in the Durable Object
//! with its final state (`core::task`), so the webhook survives a crash right after. Whoever
//! made the step final then sends the first delivery message ([`kick`]); if that send or any later
//! try is lost, the task's alarm sends the message again once the due record's check time passes
//! with no news (`Outcome::Swept::webhooks`). A delivery ([`deliver`]) POSTs the step's status
//! view: 2xx ends it (`webhook.delivered`); a 4xx other than 408/429 ends it as refused
//! (`webhook.failed`); anything else is tried again with a growing delay
//! (`core::webhook::retry_delay_s`, `webhook.retry`) until 24 h after the step became final
//! (`webhook.gave_up`). Every end is reported with `Command::WebhookDelivered`, which clears the
//! due record.
//!
//! [`WebhookDue`]: crate::task::WebhookDue

use serde_json::json;

use super::ports::Ports;
use crate::error::DepError;
use crate::ids::TaskId;
use crate::jobs::{JobMessage, MAX_DELAY_SECONDS};
use crate::log::Level;
use crate::status::{view, StatusQuery};
use crate::task::{Command, StepState};
use crate::task_wire::DoError;
use crate::webhook::{classify, event_id, retry_delay_s, Delivery, WEBHOOK_WINDOW_MS};

/// Sends the first delivery message of a step that just became final, if it has a webhook due.
/// A failed send is logged: the alarm sends it later.
pub async fn kick<W: Ports>(w: &W, task: &TaskId, s: &StepState) {
    if s.webhook.is_none() || !s.status.is_terminal() {
        return;
    }
    let msg = JobMessage::webhook(task.clone(), s.step(), s.attempt);
    if let Err(e) = w.enqueue(&msg, 0).await {
        w.event(
            Level::Warn,
            "webhook.enqueue_failed",
            Some(task),
            Some(s.step()),
            json!({ "error": e.to_string() }),
        );
    }
}

/// One delivery try of a webhook message. `Err`: the Durable Object or the queue could not be
/// reached (the message is redelivered).
pub async fn deliver<W: Ports>(w: &W, msg: &JobMessage) -> Result<(), DepError> {
    let task = &msg.task_id;
    let step = msg.step;
    let skip = |reason: &str| {
        w.event(
            Level::Info,
            "webhook.skipped",
            Some(task),
            Some(step),
            json!({ "reason": reason, "attempt": msg.attempt }),
        );
    };
    let Some(state) = w.task_state(task).await? else {
        skip("unknown task");
        return Ok(());
    };
    let Some(s) = state.steps.get(&step) else {
        skip("unknown step");
        return Ok(());
    };
    let (Some(due), Some(url), true) = (
        s.webhook,
        s.request.webhook_url(),
        s.attempt == msg.attempt && s.status.is_terminal(),
    ) else {
        skip("no webhook due");
        return Ok(());
    };
    let Ok(mut v) = view(&state, StatusQuery::Step(step), state.owner) else {
        skip("no view");
        return Ok(());
    };
    let id = event_id(task, step, msg.attempt);
    // The body is the status view as the status endpoint shows it at this try: for a private
    // bucket, URLs signed now (valid for an hour), which the receiver can download. If they
    // cannot be signed, nothing is sent: this try counts as unanswered and is retried.
    let answer = match w.present_view(&state, &mut v).await {
        Ok(()) => {
            let body = serde_json::to_string(&v).unwrap_or_default();
            w.send_webhook(url, &id, w.now_ms() / 1000, &body).await
        }
        Err(e) => Err(format!("the asset URLs could not be signed: {e}")),
    };
    let now = w.now_ms();
    let status = answer.as_ref().ok().copied();
    let host = super::finalize::host_of(url);
    let fields = json!({
        "webhook_id": id, "host": host, "http_status": status, "try": msg.try_no,
        "error": answer.as_ref().err(),
    });
    let delivered = Command::WebhookDelivered {
        step,
        attempt: msg.attempt,
    };
    let cmd = match classify(status) {
        Delivery::Delivered => {
            w.event(
                Level::Info,
                "webhook.delivered",
                Some(task),
                Some(step),
                fields,
            );
            delivered
        }
        Delivery::Refused => {
            w.event(
                Level::Warn,
                "webhook.failed",
                Some(task),
                Some(step),
                fields,
            );
            delivered
        }
        Delivery::Retry => {
            let delay_s = retry_delay_s(msg.try_no, w.random()).min(MAX_DELAY_SECONDS);
            let retry_at = now.saturating_add(u64::from(delay_s) * 1000);
            if retry_at >= due.since_ms.saturating_add(WEBHOOK_WINDOW_MS) {
                w.event(
                    Level::Error,
                    "webhook.gave_up",
                    Some(task),
                    Some(step),
                    fields,
                );
                delivered
            } else {
                let mut fields = fields;
                fields["after_s"] = json!(delay_s);
                w.event(Level::Warn, "webhook.retry", Some(task), Some(step), fields);
                w.enqueue(&msg.next_try(), delay_s).await?;
                Command::WebhookRetry {
                    step,
                    attempt: msg.attempt,
                    retry_at_ms: retry_at,
                }
            }
        }
    };
    // A lost report only means one more delivery (same id) or one more alarm.
    match w.command(task, cmd, w.now_ms()).await {
        Ok(_) | Err(DoError::Refused(_)) => Ok(()),
        Err(DoError::Unavailable(e)) => Err(e),
    }
}
