//! Structured logs: one JSON line per event with `task_id`, `step`, the event name and its
//! fields. This is the formatting (pure, tested natively); the worker's `log::emit` writes the
//! line to the Workers console.
//!
//! Never pass secrets, tokens or request bodies here: the fields are logged as given.

use serde_json::{Map, Value};

use crate::step::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Formats one log line. `fields` must be a JSON object (anything else is logged under `data`).
pub fn line(
    level: Level,
    event: &str,
    task_id: Option<&str>,
    step: Option<Step>,
    fields: Value,
    ts_ms: u64,
) -> String {
    let mut obj = Map::new();
    obj.insert("ts".into(), Value::from(ts_ms));
    obj.insert("level".into(), Value::from(level.as_str()));
    obj.insert("event".into(), Value::from(event));
    obj.insert("task_id".into(), task_id.map_or(Value::Null, Value::from));
    obj.insert(
        "step".into(),
        step.map_or(Value::Null, |s| Value::from(s.as_str())),
    );
    match fields {
        Value::Object(map) => {
            for (k, v) in map {
                obj.entry(k).or_insert(v);
            }
        }
        Value::Null => {}
        other => {
            obj.insert("data".into(), other);
        }
    }
    Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_json_object_per_line_with_task_and_step() {
        let l = line(
            Level::Warn,
            "job.retry",
            Some("t-1"),
            Some(Step::Model),
            json!({"attempt": 2, "event": "spoof"}),
            7,
        );
        assert!(!l.contains('\n'));
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(
            v["event"], "job.retry",
            "fields cannot overwrite the event name"
        );
        assert_eq!(v["task_id"], "t-1");
        assert_eq!(v["step"], "model");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["attempt"], 2);
        assert_eq!(v["ts"], 7);
    }

    #[test]
    fn missing_task_is_null_and_scalars_go_under_data() {
        let v: Value =
            serde_json::from_str(&line(Level::Info, "start", None, None, json!("x\ny"), 1))
                .unwrap();
        assert_eq!(v["task_id"], Value::Null);
        assert_eq!(v["data"], "x\ny");
    }
}
