//! The jobs queue's producer: every job message (submit, retries, the alarm's sweep, gate
//! wake-ups, the test hook) is sent here. The consumer is `jobs`.

use worker::{Env, MessageBuilder};

use crate::core::error::{DepError, Dependency};
use crate::core::jobs::JobMessage;

/// Binding of the jobs queue producer (wrangler.toml).
pub const BINDING: &str = "JOBS";

/// Sends a job message, optionally delayed.
pub async fn enqueue(env: &Env, msg: &JobMessage, delay_seconds: u32) -> Result<(), DepError> {
    let failed = |e: worker::Error| DepError::new(Dependency::Queue, None, e.to_string());
    let queue = env.queue(BINDING).map_err(failed)?;
    // The body is the message's JSON text: a plain string crosses the JS boundary unchanged.
    let mut builder = MessageBuilder::new(msg.to_json());
    if delay_seconds > 0 {
        builder = builder.delay_seconds(delay_seconds);
    }
    queue.send(builder.build()).await.map_err(failed)
}
