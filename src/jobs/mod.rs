//! The queue consumer: AI jobs (`run`, `finalize`) and the dead-letter queue. Each message carries
//! ids only; every handler is idempotent (the task's Durable Object grants one claim per job), so
//! a redelivered message changes nothing. Messages are acknowledged one by one; a retry is a new
//! message with `try_no + 1` and a delay (workers-rs exposes no delivery count).

pub mod poll;

use serde_json::json;
use worker::{Env, MessageBatch, MessageBuilder, MessageExt};

use crate::core::jobs::JobMessage;
use crate::error::{DepError, Dependency};
use crate::log::{self, Level};

/// Binding of the jobs queue producer (wrangler.toml).
pub const QUEUE_BINDING: &str = "JOBS";
/// Name of the dead-letter queue (wrangler.toml).
pub const DEAD_LETTER_QUEUE: &str = "makeit3d-jobs-dlq";

/// Sends a job message, optionally delayed.
pub async fn enqueue(env: &Env, msg: &JobMessage, delay_seconds: u32) -> Result<(), DepError> {
    let dep = |e: worker::Error| DepError::new(Dependency::Queue, None, e.to_string());
    let queue = env.queue(QUEUE_BINDING).map_err(dep)?;
    // The body is the message's JSON text: a plain string crosses the JS boundary unchanged.
    let mut builder = MessageBuilder::new(msg.to_json());
    if delay_seconds > 0 {
        builder = builder.delay_seconds(delay_seconds);
    }
    queue.send(builder.build()).await.map_err(dep)
}

/// Consumes one batch.
pub async fn consume(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let queue = batch.queue();
    let dead_letter = queue == DEAD_LETTER_QUEUE;
    for msg in batch.messages()? {
        let parsed = JobMessage::from_json(msg.body());
        let job = match parsed {
            Ok(job) => job,
            Err(e) => {
                log::emit(
                    Level::Error,
                    "job.malformed",
                    None,
                    None,
                    json!({ "queue": queue, "error": e.to_string() }),
                );
                msg.ack();
                continue;
            }
        };
        log::emit(
            Level::Info,
            "job.received",
            Some(job.task_id.as_str()),
            Some(job.step),
            json!({
                "queue": queue, "kind": job.kind.as_str(), "attempt": job.attempt, "try": job.try_no, "dead_letter": dead_letter,
            }),
        );
        let _ = &env;
        msg.ack();
    }
    Ok(())
}
