//! Structured logs: one JSON line per event with `task_id`, `step`, the event name and its
//! fields. This is the formatting (pure, tested natively); the worker's `log::emit` writes the
//! line to the Workers console.
//!
//! Never pass secrets, tokens or request bodies here: the fields are logged as given.

use serde_json::{Map, Value};

use crate::step::Step;

/// Ordered by severity: a line that carries a warning is at least a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Level {
    #[default]
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

/// What a queue delivery has to say that belongs in the line of the event it leads to: its
/// receipt (`delivery`: queue, kind, attempt, try, waits) and the provider calls it made
/// (`calls`: one entry each, with its status and the provider's trace id). Each line costs CPU
/// (a console call per line), so a job that is claimed, calls Tripo once and fails writes one
/// line, `job.failed`, with all three in it, instead of three. What nothing took by the end of
/// the delivery is its own line (`job.handled`).
///
/// Only the delivery's own task and step take it: a line about anything else is left alone.
#[derive(Debug, Default)]
pub struct Carry {
    owner: Option<(String, Step)>,
    level: Level,
    delivery: Option<Value>,
    calls: Vec<Value>,
}

impl Carry {
    /// A delivery for `task_id`'s `step` starts: whatever an earlier one left is dropped.
    pub fn begin(&mut self, task_id: &str, step: Step, delivery: Value) {
        *self = Carry {
            owner: Some((task_id.to_owned(), step)),
            level: Level::Info,
            delivery: Some(delivery),
            calls: Vec::new(),
        };
    }

    fn owns(&self, task_id: Option<&str>, step: Option<Step>) -> bool {
        matches!((&self.owner, task_id, step), (Some((t, s)), Some(id), Some(st)) if t == id && *s == st)
    }

    /// A provider call of the delivery's step: kept for the next line (`None`), or handed back
    /// when no delivery of that step is under way (the caller logs it on its own line).
    pub fn call(&mut self, task_id: &str, step: Step, level: Level, call: Value) -> Option<Value> {
        if !self.owns(Some(task_id), Some(step)) {
            return Some(call);
        }
        self.level = self.level.max(level);
        self.calls.push(call);
        None
    }

    fn is_empty(&self) -> bool {
        self.delivery.is_none() && self.calls.is_empty()
    }

    /// The line of an event: when it is the delivery's step's, what is carried goes in it (and
    /// its level is raised to what the calls were).
    pub fn merge(
        &mut self,
        level: Level,
        task_id: Option<&str>,
        step: Option<Step>,
        fields: Value,
    ) -> (Level, Value) {
        if !self.owns(task_id, step) || self.is_empty() {
            return (level, fields);
        }
        let mut map = match fields {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => Map::from_iter([("data".to_string(), other)]),
        };
        if let Some(d) = self.delivery.take() {
            map.entry("delivery").or_insert(d);
        }
        if !self.calls.is_empty() {
            map.entry("calls")
                .or_insert(Value::Array(std::mem::take(&mut self.calls)));
        }
        let level = level.max(self.level);
        self.level = Level::Info;
        (level, Value::Object(map))
    }

    /// The delivery is over: what no line took, as the fields of its own line (`None`: nothing).
    pub fn finish(&mut self) -> Option<(Level, Value)> {
        let out = (!self.is_empty()).then(|| {
            let (task, step) = self.owner.clone().unzip();
            self.merge(Level::Info, task.as_deref(), step, Value::Null)
        });
        *self = Carry::default();
        out
    }
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

    #[test]
    fn a_delivery_and_its_calls_go_in_the_first_line_of_its_step_only() {
        let mut c = Carry::default();
        assert_eq!(
            c.call("t-1", Step::Model, Level::Info, json!({"status": 200})),
            Some(json!({"status": 200})),
            "no delivery under way: the call is its own line"
        );
        c.begin("t-1", Step::Model, json!({"try": 2}));
        assert!(c
            .call("t-2", Step::Model, Level::Warn, json!({"status": 500}))
            .is_some());
        assert!(c
            .call("t-1", Step::Concepts, Level::Warn, json!({"status": 500}))
            .is_some());
        assert!(c
            .call(
                "t-1",
                Step::Model,
                Level::Warn,
                json!({"status": 400, "trace_id": "x"})
            )
            .is_none());
        // Another task's line, or the task's line without its step, is left alone.
        let (l, other) = c.merge(Level::Info, Some("t-2"), Some(Step::Model), json!({"a": 1}));
        assert_eq!((l, other), (Level::Info, json!({"a": 1})));
        let (l, none) = c.merge(Level::Info, Some("t-1"), None, json!({}));
        assert_eq!((l, none), (Level::Info, json!({})));
        // The step's line takes all, at the calls' level at least.
        let (l, f) = c.merge(
            Level::Info,
            Some("t-1"),
            Some(Step::Model),
            json!({"code": "c"}),
        );
        assert_eq!(l, Level::Warn);
        assert_eq!(
            f,
            json!({"code": "c", "delivery": {"try": 2}, "calls": [{"status": 400, "trace_id": "x"}]})
        );
        // Taken once: the next line is plain, and nothing is left at the end.
        let (l, f) = c.merge(Level::Info, Some("t-1"), Some(Step::Model), json!({"b": 2}));
        assert_eq!((l, f), (Level::Info, json!({"b": 2})));
        assert_eq!(c.finish(), None);
    }

    #[test]
    fn what_no_line_took_is_the_deliverys_own_line_and_a_new_delivery_starts_clean() {
        let mut c = Carry::default();
        c.begin("t-1", Step::Model, json!({"try": 1}));
        assert!(c
            .call("t-1", Step::Model, Level::Info, json!({"status": 200}))
            .is_none());
        c.begin("t-1", Step::Model, json!({"try": 2}));
        assert_eq!(
            c.finish(),
            Some((Level::Info, json!({"delivery": {"try": 2}})))
        );
        assert_eq!(c.finish(), None);
        assert!(
            c.call("t-1", Step::Model, Level::Info, json!({})).is_some(),
            "after the end, calls are no longer carried"
        );
        // A scalar's fields keep it under `data`.
        c.begin("t-1", Step::Model, json!({}));
        let (_, f) = c.merge(Level::Error, Some("t-1"), Some(Step::Model), json!("x"));
        assert_eq!(f, json!({"data": "x", "delivery": {}}));
    }
}
