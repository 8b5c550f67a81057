//! Identifiers: the client's `TaskId` (validated once, then trusted everywhere), the user id
//! taken from the token, and the deterministic row ids (UUID v5) that make inserts idempotent.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use super::step::Step;

/// Namespace of every row id we derive (a fixed random UUID; never change it: ids would move).
pub const ROW_NAMESPACE: Uuid = Uuid::from_u128(0x6d3b_1f0e_8f4a_4c1b_9a52_1c0d_7e3a_5b21);

/// Why a `task_id` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskIdError {
    #[error("task_id must be 1 to 128 characters")]
    Length,
    #[error("task_id must start with a letter or digit and contain only letters, digits, '_', '.', ':' and '-'")]
    Charset,
    #[error("task_id must not contain '..'")]
    DotDot,
}

/// The client's task id: `^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$` without `..` (SPEC §4).
/// It becomes a storage path segment and a Durable Object name, so it is checked once here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    pub fn parse(s: &str) -> Result<TaskId, TaskIdError> {
        if s.is_empty() || s.len() > 128 {
            return Err(TaskIdError::Length);
        }
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok =
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !first_ok || !rest_ok {
            return Err(TaskIdError::Charset);
        }
        if s.contains("..") {
            return Err(TaskIdError::DotDot);
        }
        Ok(TaskId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TaskId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The owner of a task: the `sub` of the verified token (a Supabase user UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of the `index`-th row of `step` of `task`: UUID v5 of `"{task_id}/{step}/{index}"`.
/// A retried insert of the same row is then a no-op (`resolution=ignore-duplicates`).
pub fn row_id(task: &TaskId, step: Step, index: u32) -> Uuid {
    let name = format!("{}/{}/{}", task.as_str(), step.as_str(), index);
    Uuid::new_v5(&ROW_NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_task_ids() {
        for ok in ["a", "t-1", "Task_2024.11:abc-def", &"x".repeat(128), "0"] {
            assert!(TaskId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_task_ids() {
        assert_eq!(TaskId::parse(""), Err(TaskIdError::Length));
        assert_eq!(TaskId::parse(&"x".repeat(129)), Err(TaskIdError::Length));
        for bad in [
            "-a", ".a", "_a", "a/b", "a b", "a%2e", "é", "a\n", "a?b", "a#b",
        ] {
            assert_eq!(TaskId::parse(bad), Err(TaskIdError::Charset), "{bad}");
        }
        assert_eq!(TaskId::parse("a..b"), Err(TaskIdError::DotDot));
        assert!(serde_json::from_str::<TaskId>("\"../x\"").is_err());
    }

    #[test]
    fn row_ids_are_deterministic_and_distinct() {
        let t = TaskId::parse("t-1").unwrap();
        assert_eq!(row_id(&t, Step::Concepts, 0), row_id(&t, Step::Concepts, 0));
        assert_ne!(row_id(&t, Step::Concepts, 0), row_id(&t, Step::Concepts, 1));
        assert_ne!(row_id(&t, Step::Model, 0), row_id(&t, Step::Refine, 0));
        let other = TaskId::parse("t-2").unwrap();
        assert_ne!(row_id(&t, Step::Model, 0), row_id(&other, Step::Model, 0));
        assert_eq!(row_id(&t, Step::Model, 0).get_version_num(), 5);
    }
}
