//! The queue consumer's glue: reads a batch, hands each message to `flow` (`flow::consume` for
//! the jobs queue, `flow::dead_letter` for the dead-letter queue) over the runtime's ports, and
//! acknowledges it or asks the runtime to redeliver it after a delay. A batch's messages run
//! together, sharing its gate calls and taking turns for their bulky parts
//! ([`Batch`](crate::runtime::Batch)). Every handler is
//! idempotent (the task's Durable Object grants one claim per job), so a redelivered message
//! changes nothing. A retry decided by the job is a new message with `try_no + 1` and a delay
//! (workers-rs exposes no delivery count), decided by `core::retry` from the classified failure.

use std::pin::Pin;

use serde_json::json;
use worker::{Env, Message, MessageBatch, MessageExt, QueueRetryOptionsBuilder};

use crate::core::config::Config;
use crate::core::flow;
use crate::core::flow::ports::Events;
use crate::core::flow::turns::together;
use crate::core::jobs::{JobError, JobMessage};
use crate::core::retry;
use crate::log::{self, Level};
use crate::runtime::{Batch, Runtime, Tasks};
use crate::settings;

/// Name of the dead-letter queue (wrangler.toml).
pub const DEAD_LETTER_QUEUE: &str = "makeit3d-jobs-dlq";

/// Consumes one batch.
pub async fn consume(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let queue = batch.queue();
    let dead_letter = queue == DEAD_LETTER_QUEUE;
    let cfg = match settings::loaded(&env) {
        Ok(c) => c,
        Err(invalid) => {
            log::emit(
                Level::Error,
                "job.misconfigured",
                None,
                None,
                json!({ "missing_or_invalid": invalid.names() }),
            );
            batch.retry_all_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(retry::MISCONFIGURED_REDELIVERY_S)
                    .build(),
            );
            return Ok(());
        }
    };
    // Each body parsed once: the gate prefetch and the messages read the same bodies.
    let messages: Vec<_> = batch
        .messages()?
        .into_iter()
        .map(|m| {
            let job = JobMessage::from_json(m.body());
            (m, job)
        })
        .collect();
    let jobs: Vec<&JobMessage> = messages
        .iter()
        .filter_map(|(_, j)| j.as_ref().ok())
        .collect();
    let shared = Batch::new(cfg, jobs.iter().copied());
    if !dead_letter {
        shared.prefetch(&env, &jobs).await;
    }
    // The messages run together: a batch takes about as long as its longest message, not the
    // sum, and a prefetched slot is used at once. Bulky parts still go one at a time (`Bulk`).
    let handled = messages
        .iter()
        .map(|(msg, parsed)| {
            Box::pin(handle(&env, cfg, &shared, &queue, dead_letter, msg, parsed)) as Pin<Box<_>>
        })
        .collect();
    together(handled).await;
    shared.flush(&env).await;
    Ok(())
}

/// One message of the batch, with a runtime of its own (its log context is its own).
async fn handle(
    env: &Env,
    cfg: &Config,
    shared: &Batch<'_>,
    queue: &str,
    dead_letter: bool,
    msg: &Message<String>,
    parsed: &Result<JobMessage, JobError>,
) {
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
            return;
        }
    };
    let rt = Runtime::new(env, Some(cfg), Tasks::Stub).in_batch(shared);
    // The receipt goes in the first line the delivery writes about its step (one line per
    // event, not one more per delivery: `core::log::Carry`); else in `job.handled`.
    rt.carry.borrow_mut().begin(
        job.task_id.as_str(),
        job.step,
        json!({
            "queue": queue, "kind": job.kind.as_str(), "attempt": job.attempt, "try": job.try_no, "waits": job.waits, "dead_letter": dead_letter,
        }),
    );
    let result = if dead_letter {
        flow::dead_letter::handle(&rt, cfg, job).await
    } else {
        flow::consume::process(&rt, cfg, job).await
    };
    match result {
        Ok(()) => msg.ack(),
        Err(e) => {
            // Infrastructure trouble (task state, queue, rows): let the runtime redeliver after a
            // delay that grows with the message's age; after `max_retries` the message goes to
            // the dead-letter queue (and the task's alarm covers the step whatever happens to
            // the message).
            let age_ms = crate::net::now_ms().saturating_sub(msg.timestamp().as_millis());
            let delay_s = retry::redelivery_delay_s(age_ms);
            rt.event(
                Level::Warn,
                "job.redeliver",
                Some(&job.task_id),
                Some(job.step),
                json!({ "error": e.to_string(), "delay_s": delay_s }),
            );
            msg.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(delay_s)
                    .build(),
            );
        }
    }
    let leftover = rt.carry.borrow_mut().finish();
    if let Some((level, fields)) = leftover {
        log::emit(
            level,
            "job.handled",
            Some(job.task_id.as_str()),
            Some(job.step),
            fields,
        );
    }
    shared.done(env, job).await;
}
