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
pub mod tripo_events;
pub mod turns;
pub mod webhook;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

use std::cell::Cell;

use serde_json::Value;

use crate::config::Config;
use crate::ids::{TaskId, UserId};
use crate::jobs::JobMessage;
use crate::log::Level;
use crate::task::{Command, StepState};
use crate::task_wire::{CmdReply, DoError};
pub use ports::Ports;

/// What a job works with: the ports, the configuration, its message, and the step as the claim
/// left it.
pub struct Job<'a, W> {
    pub w: &'a W,
    pub cfg: &'a Config,
    pub msg: &'a JobMessage,
    /// The task's owner (the rows' `user_id`).
    pub owner: UserId,
    pub step: StepState,
    /// The claim recorded the provider task's creation as starting (`Outcome::RunCreate`).
    pub create_started: bool,
    /// The provider refused the creation with a definite answer: no task exists, so a retry's
    /// `ReleaseJob` says the creation is settled (a final failure needs no word of it).
    pub create_settled: Cell<bool>,
}

impl<W: Ports> Job<'_, W> {
    pub fn cfg(&self) -> &Config {
        self.cfg
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
    pub async fn command(&self, cmd: Command) -> Result<CmdReply, DoError> {
        self.w
            .command(&self.msg.task_id, cmd, self.w.now_ms())
            .await
    }

    /// Applies a command that ends the job's step; the object writes its rows when it can
    /// (`TaskStore::command_syncing_rows`; `rows::sync` afterwards writes whatever it did not).
    pub async fn command_syncing_rows(&self, cmd: Command) -> Result<CmdReply, DoError> {
        self.w
            .command_syncing_rows(&self.msg.task_id, cmd, self.w.now_ms())
            .await
    }
}
