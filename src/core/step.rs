//! The vocabulary shared by every layer: steps of a task, their status, and the AI service of each.

use serde::{Deserialize, Serialize};

/// One step of a task. A task has at most one of each (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `POST /generate/image-to-image`: OpenAI concept images.
    Concepts,
    /// `POST /generate/{text,image,sketch}-to-model`: a Tripo model.
    Model,
    /// `POST /generate/refine-model`: a Tripo refine of a draft model.
    Refine,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Concepts, Step::Model, Step::Refine];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Concepts => "concepts",
            Step::Model => "model",
            Step::Refine => "refine",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        match s {
            "concepts" => Some(Step::Concepts),
            "model" => Some(Step::Model),
            "refine" => Some(Step::Refine),
            _ => None,
        }
    }

    /// The AI service that runs this step.
    pub fn service(self) -> Service {
        match self {
            Step::Concepts => Service::OpenAi,
            Step::Model | Step::Refine => Service::Tripo,
        }
    }
}

/// The AI provider behind a step. Serialized the way the original service named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "tripoai")]
    Tripo,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::OpenAi => "openai",
            Service::Tripo => "tripoai",
        }
    }

    /// Parses the original service's `?service=` values; `tripo` is accepted as an alias.
    pub fn parse(s: &str) -> Option<Service> {
        match s {
            "openai" => Some(Service::OpenAi),
            "tripoai" | "tripo" => Some(Service::Tripo),
            _ => None,
        }
    }
}

/// Status of a step and of its rows (`status` column CHECK in the migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Processing,
    Complete,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Complete => "complete",
            Status::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Complete | Status::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_round_trips_and_maps_to_service() {
        for s in Step::ALL {
            assert_eq!(Step::parse(s.as_str()), Some(s));
        }
        assert_eq!(Step::parse("Model"), None);
        assert_eq!(Step::Concepts.service(), Service::OpenAi);
        assert_eq!(Step::Refine.service(), Service::Tripo);
    }

    #[test]
    fn service_accepts_original_names_and_alias() {
        assert_eq!(Service::parse("tripo"), Some(Service::Tripo));
        assert_eq!(Service::parse("tripoai"), Some(Service::Tripo));
        assert_eq!(Service::parse("openai"), Some(Service::OpenAi));
        assert_eq!(Service::parse("dalle"), None);
        assert_eq!(
            serde_json::to_string(&Service::Tripo).unwrap(),
            "\"tripoai\""
        );
    }

    #[test]
    fn status_serializes_lowercase() {
        assert_eq!(
            serde_json::to_string(&Status::Processing).unwrap(),
            "\"processing\""
        );
        assert!(Status::Failed.is_terminal());
        assert!(!Status::Pending.is_terminal());
    }
}
