//! Structured logs: `emit` writes one JSON line per event (formatted by `core::log::line`) to the
//! Workers console.
//!
//! Never pass secrets, tokens or request bodies here: the fields are logged as given.

use serde_json::Value;

use crate::core::log::line;
pub use crate::core::log::Level;
use crate::core::step::Step;

/// Writes one event line to the console (the Workers log). Only callable inside the runtime.
#[cfg(target_arch = "wasm32")]
pub fn emit(level: Level, event: &str, task_id: Option<&str>, step: Option<Step>, fields: Value) {
    let text = line(level, event, task_id, step, fields, crate::net::now_ms());
    match level {
        Level::Info => worker::console_log!("{}", text),
        Level::Warn => worker::console_warn!("{}", text),
        Level::Error => worker::console_error!("{}", text),
    }
}

/// Native builds (unit tests) print to stderr.
#[cfg(not(target_arch = "wasm32"))]
pub fn emit(level: Level, event: &str, task_id: Option<&str>, step: Option<Step>, fields: Value) {
    eprintln!("{}", line(level, event, task_id, step, fields, 0));
}
