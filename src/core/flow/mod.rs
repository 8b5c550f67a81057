//! The orchestration of SPEC §6 — submit, the run jobs (concepts, model), polling, finalize,
//! the alarm's sweep and the dead-letter queue — generic over the side-effect traits of
//! [`ports`], with no `worker` import. The `worker` glue (`crate::runtime`) implements the traits
//! and only translates; `memory` implements them in memory, so native tests can stop any of
//! these at any await and check that the next delivery or alarm finishes the step exactly once.

pub mod alarm;
pub mod cancel;
pub mod concepts;
pub mod consume;
pub mod dead_letter;
pub mod finalize;
pub mod gate;
pub mod model;
pub mod ports;
pub mod rows;
pub mod submit;
pub mod webhook;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::config::Config;
use crate::error::{DepError, Dependency};
use crate::ids::{TaskId, UserId};
use crate::jobs::JobMessage;
use crate::log::Level;
use crate::storage_path::Origin;
use crate::task::{Command, Refusal, StepState};
use crate::task_wire::CmdReply;
pub use ports::Ports;

/// The validated configuration with the parsed Supabase origin.
pub struct Setup<'a> {
    pub cfg: &'a Config,
    pub origin: Origin,
}

impl<'a> Setup<'a> {
    pub fn new(cfg: &'a Config) -> Result<Setup<'a>, DepError> {
        let origin = Origin::parse(&cfg.supabase_url).map_err(|_| {
            DepError::new(
                Dependency::Storage,
                None,
                "SUPABASE_URL is not a valid origin",
            )
        })?;
        Ok(Setup { cfg, origin })
    }
}

/// What a job works with: the ports, the configuration, its message, and the step as the claim
/// left it.
pub struct Job<'a, W> {
    pub w: &'a W,
    pub setup: &'a Setup<'a>,
    pub msg: &'a JobMessage,
    /// The task's owner (the rows' `user_id`).
    pub owner: UserId,
    pub step: StepState,
}

impl<W: Ports> Job<'_, W> {
    pub fn cfg(&self) -> &Config {
        self.setup.cfg
    }

    pub fn task(&self) -> &TaskId {
        &self.msg.task_id
    }

    pub fn log(&self, level: Level, event: &str, fields: Value) {
        self.w.event(
            level,
            event,
            Some(&self.msg.task_id),
            Some(self.msg.step),
            fields,
        );
    }

    /// Applies one command to the job's task, at the clock's time.
    pub async fn command(&self, cmd: Command) -> Result<Result<CmdReply, Refusal>, DepError> {
        self.w
            .command(&self.msg.task_id, cmd, self.w.now_ms())
            .await
    }
}
