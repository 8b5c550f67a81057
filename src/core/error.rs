//! The one error type of the HTTP API and its mapping to status codes and the JSON shape of
//! SPEC §4.4: `{"error":{"code":"…","message":"…","details":[{"field":"…","message":"…"}]}}`.
//!
//! Every handler returns `Result<_, ApiError>`; `http::respond` turns it into a response, so the
//! status-code mapping lives here and nowhere else. Pure: no `worker` import.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::Refused;
/// A problem with one field of a request (the `details` of a 422).
pub use crate::request::FieldError;

/// Every error the API can answer with. Messages are safe to show: never a secret, key or trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A valid Supabase anonymous sign-in while `ANONYMOUS_USERS` is not `allow`.
    #[error("anonymous sign-ins may not use this service; sign in with an account")]
    AnonymousNotAllowed,
    #[error("not found")]
    NotFound,
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method {method} is not allowed here; allowed: {allowed}")]
    MethodNotAllowed { method: String, allowed: String },
    #[error("{0}")]
    TaskConflict(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    #[error("input asset not found")]
    InputAssetNotFound(Vec<FieldError>),
    /// A per-user limit (SPEC §11): nothing was created.
    #[error("too many requests: {}", .0.message())]
    RateLimited(Refused),
    #[error("the service is not configured: missing or invalid {}", .0.join(", "))]
    Misconfigured(Vec<String>),
    #[error("{dependency} failed: {message}")]
    DependencyFailed { dependency: String, message: String },
    #[error("{dependency} is unavailable: {message}")]
    DependencyUnavailable { dependency: String, message: String },
    #[error("internal error")]
    Internal,
    /// `GET /tasks/{id}/ws` without `Upgrade: websocket`.
    #[error("this endpoint needs a WebSocket upgrade (Upgrade: websocket)")]
    UpgradeRequired,
}

/// A service the worker depends on: names it in API errors ([`Dependency::as_str`]) and in the
/// reasons of classified failures ([`Dependency::label`], `core::retry::Failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    Storage,
    Database,
    Queue,
    /// The task's Durable Object.
    TaskObject,
    /// The per-user limits Durable Object.
    UserLimits,
    /// A provider gate's Durable Object.
    ProviderGate,
    Auth,
    OpenAi,
    Tripo,
    /// Downloading a finished model from Tripo's CDN (not the Tripo API).
    TripoDownload,
}

impl Dependency {
    /// Its name in API error bodies, e.g. `"storage"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Storage => "storage",
            Dependency::Database => "database",
            Dependency::Queue => "queue",
            Dependency::TaskObject => "task state",
            Dependency::UserLimits => "user limits",
            Dependency::ProviderGate => "provider gate",
            Dependency::Auth => "auth",
            Dependency::OpenAi => "openai",
            Dependency::Tripo => "tripo",
            Dependency::TripoDownload => "tripo download",
        }
    }

    /// Its name in the human-readable reason of a failure, e.g. `"Supabase Storage"`.
    pub fn label(self) -> &'static str {
        match self {
            Dependency::OpenAi => "OpenAI",
            Dependency::Tripo => "Tripo",
            Dependency::TripoDownload => "Tripo model download",
            Dependency::Storage => "Supabase Storage",
            Dependency::Database => "Supabase database",
            Dependency::Queue => "Jobs queue",
            Dependency::TaskObject => "Task state",
            Dependency::UserLimits => "User limits",
            Dependency::ProviderGate => "Provider gate",
            Dependency::Auth => "Supabase Auth",
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A call to a dependency that failed: no answer (network, timeout) or an error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}: {message}", dependency.as_str(), status.map_or("unreachable".to_string(), |s| format!("HTTP {s}")))]
pub struct DepError {
    pub dependency: Dependency,
    /// HTTP status of the answer (the real one for Storage), `None` without an answer.
    pub status: Option<u16>,
    /// Safe to show; never a key or token.
    pub message: String,
    /// Seconds the dependency asked us to wait (`Retry-After`).
    pub retry_after_s: Option<u64>,
}

impl DepError {
    pub fn new(dependency: Dependency, status: Option<u16>, message: impl Into<String>) -> Self {
        DepError {
            dependency,
            status,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// No answer, 5xx, 408 or 429: worth trying again.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s >= 500 || s == 408 || s == 429,
        }
    }
}

impl From<DepError> for ApiError {
    fn from(e: DepError) -> ApiError {
        let dependency = e.dependency.as_str().to_owned();
        let message = e.to_string();
        if e.is_transient() {
            ApiError::DependencyUnavailable {
                dependency,
                message,
            }
        } else {
            ApiError::DependencyFailed {
                dependency,
                message,
            }
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Details::is_empty")]
    details: Details<'a>,
}

/// `details`: per-field problems (422), or the one limit that refused a submit (429):
/// `[{"limit":"active_steps","max":3,"message":"…"}]` (`max` absent for the binding).
#[derive(Serialize)]
#[serde(untagged)]
enum Details<'a> {
    Fields(&'a [FieldError]),
    Limit([LimitDetail; 1]),
}

impl Details<'_> {
    fn is_empty(&self) -> bool {
        matches!(self, Details::Fields(f) if f.is_empty())
    }
}

#[derive(Serialize)]
struct LimitDetail {
    limit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<u32>,
    message: String,
}

impl ApiError {
    /// HTTP status of SPEC §4.4.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::MalformedJson(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::AnonymousNotAllowed => 403,
            ApiError::NotFound | ApiError::RouteNotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::TaskConflict(_) => 409,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::Validation(_) | ApiError::InputAssetNotFound(_) => 422,
            ApiError::RateLimited(_) => 429,
            ApiError::Internal => 500,
            ApiError::UpgradeRequired => 426,
            ApiError::Misconfigured(_) | ApiError::DependencyUnavailable { .. } => 503,
            ApiError::DependencyFailed { .. } => 502,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::AnonymousNotAllowed => "anonymous_not_allowed",
            ApiError::NotFound | ApiError::RouteNotFound(_) => "not_found",
            ApiError::UpgradeRequired => "upgrade_required",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::TaskConflict(_) => "task_conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Validation(_) => "validation_error",
            ApiError::InputAssetNotFound(_) => "input_asset_not_found",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Misconfigured(_) => "misconfigured",
            ApiError::DependencyFailed { .. } => "dependency_failed",
            ApiError::DependencyUnavailable { .. } => "dependency_unavailable",
            ApiError::Internal => "internal_error",
        }
    }

    pub fn details(&self) -> &[FieldError] {
        match self {
            ApiError::Validation(d) | ApiError::InputAssetNotFound(d) => d,
            _ => &[],
        }
    }

    /// Extra response headers (`Allow` on 405, `Retry-After` on 429).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiError::MethodNotAllowed { allowed, .. } => vec![("allow", allowed.clone())],
            ApiError::RateLimited(r) => {
                vec![("retry-after", r.retry_after_s.to_string())]
            }
            _ => vec![],
        }
    }

    /// The JSON body of SPEC §4.4.
    pub fn body(&self) -> String {
        let body = Body {
            error: Inner {
                code: self.code(),
                message: self.to_string(),
                details: match self {
                    ApiError::RateLimited(r) => Details::Limit([LimitDetail {
                        limit: r.limit.as_str(),
                        max: r.max,
                        message: r.message(),
                    }]),
                    _ => Details::Fields(self.details()),
                },
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"error":{"code":"internal_error","message":"internal error"}}"#.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::LimitKind;
    use serde_json::Value;

    fn parse(e: &ApiError) -> Value {
        serde_json::from_str(&e.body()).unwrap()
    }

    #[test]
    fn every_error_has_the_one_shape() {
        let all = [
            ApiError::MalformedJson("expected value at line 1".into()),
            ApiError::Unauthorized("missing bearer token".into()),
            ApiError::AnonymousNotAllowed,
            ApiError::NotFound,
            ApiError::RouteNotFound("/nope".into()),
            ApiError::MethodNotAllowed {
                method: "DELETE".into(),
                allowed: "GET".into(),
            },
            ApiError::TaskConflict("different body".into()),
            ApiError::PayloadTooLarge { limit: 65536 },
            ApiError::UnsupportedMediaType,
            ApiError::Validation(vec![FieldError::new("n", "must be between 1 and 10")]),
            ApiError::InputAssetNotFound(vec![FieldError::new(
                "input_image_asset_url",
                "no such object",
            )]),
            ApiError::RateLimited(Refused {
                limit: LimitKind::ActiveSteps,
                max: Some(3),
                retry_after_s: 3,
            }),
            ApiError::Misconfigured(vec!["SUPABASE_URL".into()]),
            ApiError::DependencyFailed {
                dependency: "storage".into(),
                message: "HTTP 500".into(),
            },
            ApiError::DependencyUnavailable {
                dependency: "queue".into(),
                message: "send failed".into(),
            },
            ApiError::Internal,
        ];
        for e in &all {
            let v = parse(e);
            let obj = v.as_object().unwrap();
            assert_eq!(obj.len(), 1, "{e:?}");
            let inner = v["error"].as_object().unwrap();
            assert_eq!(inner["code"], e.code());
            assert!(!inner["message"].as_str().unwrap().is_empty());
            assert!((400..600).contains(&e.status()));
        }
    }

    #[test]
    fn validation_carries_field_details() {
        let e = ApiError::Validation(vec![
            FieldError::new("n", "must be between 1 and 10"),
            FieldError::new("colour", "unknown field"),
        ]);
        let v = parse(&e);
        assert_eq!(e.status(), 422);
        assert_eq!(v["error"]["details"][1]["field"], "colour");
        assert_eq!(
            v["error"]["details"][0]["message"],
            "must be between 1 and 10"
        );
    }

    #[test]
    fn statuses_follow_the_spec() {
        assert_eq!(ApiError::MalformedJson(String::new()).status(), 400);
        assert_eq!(ApiError::UnsupportedMediaType.status(), 415);
        assert_eq!(ApiError::PayloadTooLarge { limit: 1 }.status(), 413);
        assert_eq!(ApiError::TaskConflict(String::new()).status(), 409);
        assert_eq!(
            ApiError::InputAssetNotFound(vec![]).code(),
            "input_asset_not_found"
        );
        let e = ApiError::MethodNotAllowed {
            method: "DELETE".into(),
            allowed: "GET, HEAD".into(),
        };
        assert_eq!(e.headers(), vec![("allow", "GET, HEAD".to_string())]);
        let limited = ApiError::RateLimited(Refused {
            limit: LimitKind::SubmitsPerMinute,
            max: Some(5),
            retry_after_s: 7,
        });
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers(), vec![("retry-after", "7".to_string())]);
        let v = parse(&limited);
        assert_eq!(v["error"]["code"], "rate_limited");
        assert_eq!(v["error"]["details"][0]["limit"], "submits_per_minute");
        assert_eq!(v["error"]["details"][0]["max"], 5);
        assert!(v["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 5 submits per minute"));
        let binding = ApiError::RateLimited(Refused {
            limit: LimitKind::SubmitRequestsPerMinute,
            max: None,
            retry_after_s: 60,
        });
        let v = parse(&binding);
        assert_eq!(
            v["error"]["details"][0]["limit"],
            "submit_requests_per_minute"
        );
        assert!(v["error"]["details"][0].get("max").is_none());
    }

    #[test]
    fn dependency_errors_map_to_502_or_503() {
        let down = DepError::new(Dependency::Storage, None, "connection refused");
        assert!(down.is_transient());
        assert_eq!(ApiError::from(down).status(), 503);
        let busy = DepError::new(Dependency::Database, Some(503), "busy");
        assert_eq!(ApiError::from(busy).status(), 503);
        let refused = DepError::new(Dependency::Database, Some(403), "permission denied");
        let api = ApiError::from(refused);
        assert_eq!(api.status(), 502);
        assert!(api.body().contains("database HTTP 403"));
    }

    #[test]
    fn internal_errors_reveal_nothing() {
        let v = parse(&ApiError::Internal);
        assert_eq!(v["error"]["message"], "internal error");
        assert!(v["error"].get("details").is_none());
    }
}
