//! Settings from the Worker's environment (SPEC §8), validated all at once, with every problem
//! reported by the setting's name and never with its value.
//!
//! Pure: the glue passes a lookup function (`env.var` / `env.secret`), so this is tested natively.
//! The worker loads it once per isolate and keeps it (`settings` in the worker crate).

use serde::Serialize;

use crate::limits::{Limits, Tier, MAX_SETTING};
use crate::storage_path::Origin;
use crate::tripo_v3::{ApiVersion, DEFAULT_V3_BASE_URL};

/// How callers are authenticated (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Verify a Supabase user access token (HS256 secret, else the project's JWKS).
    Supabase,
    /// No authentication: every caller is the fixed local user. Local development only.
    None,
}

/// The user every request runs as under `AUTH_MODE=none`.
pub const LOCAL_USER_ID: &str = "00000000-0000-4000-8000-000000000001";

/// Validated configuration of the worker.
#[derive(Debug, Clone)]
pub struct Config {
    /// `https://<ref>.supabase.co`, without a trailing slash.
    pub supabase_url: String,
    /// `SUPABASE_URL` parsed: the only origin input URLs may point to.
    pub supabase_origin: Origin,
    pub supabase_service_key: String,
    pub supabase_jwt_secret: Option<String>,
    /// The project's publishable (or legacy anon) key: the `apikey` of calls made with a user's
    /// own token. Not a secret. When unset, those calls send no `apikey` to Storage and the
    /// service key to PostgREST's gateway (the role still comes from the user's token).
    pub supabase_anon_key: Option<String>,
    pub bucket: String,
    /// Whether the generated-assets bucket is public (decides the non-expiring asset URL form).
    pub bucket_public: bool,
    pub input_assets_table: String,
    pub concept_images_table: String,
    pub models_table: String,
    pub openai_base_url: String,
    pub openai_api_key: String,
    pub openai_image_model: String,
    pub openai_image_size: String,
    pub tripo_base_url: String,
    pub tripo_api_key: String,
    /// Which Tripo wire format (`TRIPO_API_VERSION`, default v2; `core::tripo_v3`).
    pub tripo_api: ApiVersion,
    /// The v3 base URL (`TRIPO_V3_BASE_URL`), used when `tripo_api` is v3.
    pub tripo_v3_base_url: String,
    /// The `whsec_…` secret Tripo signs its webhooks with (`TRIPO_WEBHOOK_SECRET`); webhooks are
    /// on when it is set and `tripo_api` is v3 ([`Config::tripo_webhooks`]).
    pub tripo_webhook_secret: Option<String>,
    /// With webhooks on: the first safety-net poll this long after creation, then widening
    /// (`core::retry::safety_poll_delay_ms`).
    pub tripo_safety_poll_s: u64,
    pub auth_mode: AuthMode,
    /// Whether Supabase anonymous sign-ins (`is_anonymous: true`) are admitted (`ANONYMOUS_USERS=allow`).
    pub anonymous_users: bool,
    /// `POST /__test/enqueue` (end-to-end suite only). Valid only with `AUTH_MODE=none`.
    pub test_hooks: bool,
    pub jwt_leeway_s: u64,
    /// At most one JWKS fetch per this many seconds (a token with an unknown `kid` triggers one).
    pub jwks_refetch_s: u64,
    pub max_body_bytes: usize,
    pub max_input_bytes: u64,
    pub job_max_attempts: u32,
    pub tripo_deadline_s: u64,
    pub cors_allow_origin: String,
    /// Tripo tasks running at once for the whole service (`core::gate`); 0 = no gate.
    pub tripo_max_concurrent_tasks: u32,
    /// Concepts jobs calling OpenAI at once; 0 = no gate (the default).
    pub openai_max_concurrent_requests: u32,
    /// Per-user limits (SPEC §11): submits per minute and unfinished steps, 0 = off.
    pub limits: Limits,
    /// Hosts a `webhook_url` may point to (lower case); empty = webhooks refused.
    pub webhook_allowed_hosts: Vec<String>,
    /// The HMAC key of webhook signatures (`WEBHOOK_SECRET`, `whsec_<base64>` decoded).
    pub webhook_key: Option<Vec<u8>>,
}

/// One setting that is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub name: &'static str,
    pub problem: String,
}

/// A configuration that did not validate: every problem, and the two settings the worker still
/// needs to answer (the CORS origin of its error responses, and whether authentication is off).
#[derive(Debug, Clone)]
pub struct Invalid {
    pub problems: Vec<Problem>,
    pub cors_allow_origin: String,
    pub auth_mode: AuthMode,
}

impl Invalid {
    /// The names of the missing or invalid settings.
    pub fn names(&self) -> Vec<&'static str> {
        self.problems.iter().map(|p| p.name).collect()
    }
}

/// Every setting: name, whether it is a secret, default (None = required).
pub const SETTINGS: &[(&str, bool, Option<&str>)] = &[
    ("SUPABASE_URL", false, None),
    ("SUPABASE_SERVICE_KEY", true, None),
    ("SUPABASE_JWT_SECRET", true, Some("")),
    ("SUPABASE_ANON_KEY", false, Some("")),
    (
        "GENERATED_ASSETS_BUCKET_NAME",
        false,
        Some("makeit3d_app_assets"),
    ),
    ("GENERATED_ASSETS_BUCKET_PUBLIC", false, Some("true")),
    ("INPUT_ASSETS_TABLE_NAME", false, Some("input_assets")),
    ("CONCEPT_IMAGES_TABLE_NAME", false, Some("concept_images")),
    ("MODELS_TABLE_NAME", false, Some("models")),
    ("OPENAI_BASE_URL", false, Some("https://api.openai.com/v1")),
    ("OPENAI_API_KEY", true, None),
    ("OPENAI_IMAGE_MODEL", false, Some("gpt-image-1")),
    ("OPENAI_IMAGE_SIZE", false, Some("1024x1024")),
    (
        "TRIPO_BASE_URL",
        false,
        Some("https://api.tripo3d.ai/v2/openapi"),
    ),
    ("TRIPO_API_KEY", true, None),
    ("TRIPO_API_VERSION", false, Some("v2")),
    ("TRIPO_V3_BASE_URL", false, Some(DEFAULT_V3_BASE_URL)),
    ("TRIPO_WEBHOOK_SECRET", true, Some("")),
    ("TRIPO_SAFETY_POLL_SECONDS", false, Some("60")),
    ("AUTH_MODE", false, Some("supabase")),
    ("ANONYMOUS_USERS", false, Some("refuse")),
    ("TEST_HOOKS", false, Some("false")),
    ("JWT_LEEWAY_SECONDS", false, Some("30")),
    ("JWKS_REFETCH_SECONDS", false, Some("30")),
    ("MAX_BODY_BYTES", false, Some("65536")),
    ("MAX_INPUT_BYTES", false, Some("20971520")),
    ("JOB_MAX_ATTEMPTS", false, Some("5")),
    ("TRIPO_DEADLINE_SECONDS", false, Some("1800")),
    ("CORS_ALLOW_ORIGIN", false, Some("*")),
    ("TRIPO_MAX_CONCURRENT_TASKS", false, Some("10")),
    ("OPENAI_MAX_CONCURRENT_REQUESTS", false, Some("0")),
    ("RATE_LIMIT_SUBMITS_PER_MINUTE", false, Some("10")),
    ("RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS", false, Some("3")),
    ("MAX_ACTIVE_STEPS_PER_USER", false, Some("3")),
    ("MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS", false, Some("1")),
    ("RATE_LIMIT_USE_BINDING", false, Some("true")),
    ("WEBHOOK_ALLOWED_HOSTS", false, Some("")),
    ("WEBHOOK_SECRET", true, Some("")),
];

struct Reader<F> {
    lookup: F,
    problems: Vec<Problem>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn raw(&mut self, name: &'static str) -> Option<String> {
        let default = SETTINGS.iter().find(|s| s.0 == name).and_then(|s| s.2);
        match (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            Some(v) => Some(v),
            None => match default {
                Some(d) => Some(d.to_owned()),
                None => {
                    self.problems.push(Problem {
                        name,
                        problem: "missing".into(),
                    });
                    None
                }
            },
        }
    }

    fn has_problem(&self, name: &str) -> bool {
        self.problems.iter().any(|p| p.name == name)
    }

    fn string(&mut self, name: &'static str) -> String {
        self.raw(name).unwrap_or_default()
    }

    fn url(&mut self, name: &'static str) -> String {
        let v = self.string(name);
        if v.is_empty() {
            return v;
        }
        let ok = (v.starts_with("https://") || v.starts_with("http://"))
            && !v.contains(char::is_whitespace)
            && v.split("://")
                .nth(1)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('@'));
        if !ok {
            self.problems.push(Problem {
                name,
                problem: "must be an http(s) URL".into(),
            });
        }
        v.trim_end_matches('/').to_owned()
    }

    fn number<T>(&mut self, name: &'static str, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let v = self.string(name);
        match v.parse::<T>() {
            Ok(n) if n >= min && n <= max => n,
            _ => {
                self.problems.push(Problem {
                    name,
                    problem: format!("must be a number from {min} to {max}"),
                });
                min
            }
        }
    }

    fn boolean(&mut self, name: &'static str) -> bool {
        match self.string(name).as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                self.problems.push(Problem {
                    name,
                    problem: "must be true or false".into(),
                });
                false
            }
        }
    }

    fn identifier(&mut self, name: &'static str) -> String {
        let v = self.string(name);
        let ok = !v.is_empty()
            && v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            self.problems.push(Problem {
                name,
                problem: "must be 1–63 letters, digits, '_' or '-'".into(),
            });
        }
        v
    }
}

impl Config {
    /// The configured row tables.
    pub fn tables(&self) -> crate::rows::Tables {
        crate::rows::Tables {
            concept_images: self.concept_images_table.clone(),
            models: self.models_table.clone(),
        }
    }

    /// The base URL of the Tripo API in use.
    pub fn tripo_base(&self) -> &str {
        match self.tripo_api {
            ApiVersion::V2 => &self.tripo_base_url,
            ApiVersion::V3 => &self.tripo_v3_base_url,
        }
    }

    /// Whether Tripo's signed webhooks move the steps (v3 with a secret): the alarm then only
    /// polls as a safety net.
    pub fn tripo_webhooks(&self) -> bool {
        self.tripo_api == ApiVersion::V3 && self.tripo_webhook_secret.is_some()
    }

    /// Reads and validates every setting. `Err` lists every problem at once.
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Invalid> {
        let mut r = Reader {
            lookup,
            problems: Vec::new(),
        };
        let auth_mode = match r.string("AUTH_MODE").as_str() {
            "supabase" => AuthMode::Supabase,
            "none" => AuthMode::None,
            _ => {
                r.problems.push(Problem {
                    name: "AUTH_MODE",
                    problem: "must be supabase or none".into(),
                });
                AuthMode::Supabase
            }
        };
        let secret = r.string("SUPABASE_JWT_SECRET");
        let anon_key = r.string("SUPABASE_ANON_KEY");
        let anonymous_users = match r.string("ANONYMOUS_USERS").as_str() {
            "allow" => true,
            "refuse" => false,
            _ => {
                r.problems.push(Problem {
                    name: "ANONYMOUS_USERS",
                    problem: "must be allow or refuse".into(),
                });
                false
            }
        };
        let test_hooks = r.boolean("TEST_HOOKS");
        if test_hooks && auth_mode != AuthMode::None {
            // Fail closed: a deployment with real auth never serves with test hooks on.
            r.problems.push(Problem {
                name: "TEST_HOOKS",
                problem: "may be true only with AUTH_MODE=none (local test runs)".into(),
            });
        }
        let webhook_allowed_hosts =
            crate::webhook::parse_allowed_hosts(&r.string("WEBHOOK_ALLOWED_HOSTS"));
        let webhook_secret = r.string("WEBHOOK_SECRET");
        let webhook_key = if webhook_secret.is_empty() {
            if !webhook_allowed_hosts.is_empty() {
                r.problems.push(Problem {
                    name: "WEBHOOK_SECRET",
                    problem: "is required when WEBHOOK_ALLOWED_HOSTS is set".into(),
                });
            }
            None
        } else {
            match crate::webhook::parse_secret(&webhook_secret) {
                Ok(key) => Some(key),
                Err(problem) => {
                    r.problems.push(Problem {
                        name: "WEBHOOK_SECRET",
                        problem,
                    });
                    None
                }
            }
        };
        let tripo_api = ApiVersion::parse(&r.string("TRIPO_API_VERSION")).unwrap_or_else(|| {
            r.problems.push(Problem {
                name: "TRIPO_API_VERSION",
                problem: "must be v2 or v3".into(),
            });
            ApiVersion::V2
        });
        let tripo_webhook_secret = match r.string("TRIPO_WEBHOOK_SECRET") {
            s if s.is_empty() => None,
            s => match crate::tripo_webhook::parse_secret(&s) {
                Ok(secret) => Some(secret),
                Err(problem) => {
                    r.problems.push(Problem {
                        name: "TRIPO_WEBHOOK_SECRET",
                        problem,
                    });
                    None
                }
            },
        };
        let supabase_url = r.url("SUPABASE_URL");
        let supabase_origin = if supabase_url.is_empty() || r.has_problem("SUPABASE_URL") {
            Origin::unset()
        } else {
            Origin::parse(&supabase_url).unwrap_or_else(|_| {
                r.problems.push(Problem {
                    name: "SUPABASE_URL",
                    problem: "must be an origin: http(s)://host[:port], no path, query or userinfo"
                        .into(),
                });
                Origin::unset()
            })
        };
        let config = Config {
            supabase_url,
            supabase_origin,
            supabase_service_key: r.string("SUPABASE_SERVICE_KEY"),
            supabase_jwt_secret: (!secret.is_empty()).then_some(secret),
            supabase_anon_key: (!anon_key.is_empty()).then_some(anon_key),
            bucket: r.identifier("GENERATED_ASSETS_BUCKET_NAME"),
            bucket_public: r.boolean("GENERATED_ASSETS_BUCKET_PUBLIC"),
            input_assets_table: r.identifier("INPUT_ASSETS_TABLE_NAME"),
            concept_images_table: r.identifier("CONCEPT_IMAGES_TABLE_NAME"),
            models_table: r.identifier("MODELS_TABLE_NAME"),
            openai_base_url: r.url("OPENAI_BASE_URL"),
            openai_api_key: r.string("OPENAI_API_KEY"),
            openai_image_model: r.string("OPENAI_IMAGE_MODEL"),
            openai_image_size: r.string("OPENAI_IMAGE_SIZE"),
            tripo_base_url: r.url("TRIPO_BASE_URL"),
            tripo_api_key: r.string("TRIPO_API_KEY"),
            tripo_api,
            tripo_v3_base_url: r.url("TRIPO_V3_BASE_URL"),
            tripo_webhook_secret,
            tripo_safety_poll_s: r.number("TRIPO_SAFETY_POLL_SECONDS", 1, 3600),
            auth_mode,
            anonymous_users,
            test_hooks,
            jwt_leeway_s: r.number("JWT_LEEWAY_SECONDS", 0, 300),
            jwks_refetch_s: r.number("JWKS_REFETCH_SECONDS", 1, 3600),
            max_body_bytes: r.number("MAX_BODY_BYTES", 1024, 1 << 20),
            max_input_bytes: r.number("MAX_INPUT_BYTES", 1024, 50 << 20),
            job_max_attempts: r.number("JOB_MAX_ATTEMPTS", 1, 20),
            tripo_deadline_s: r.number("TRIPO_DEADLINE_SECONDS", 60, 24 * 3600),
            cors_allow_origin: r.string("CORS_ALLOW_ORIGIN"),
            tripo_max_concurrent_tasks: r.number("TRIPO_MAX_CONCURRENT_TASKS", 0, 1000),
            openai_max_concurrent_requests: r.number("OPENAI_MAX_CONCURRENT_REQUESTS", 0, 1000),
            limits: Limits {
                user: Tier {
                    submits_per_minute: r.number("RATE_LIMIT_SUBMITS_PER_MINUTE", 0, MAX_SETTING),
                    active_steps: r.number("MAX_ACTIVE_STEPS_PER_USER", 0, MAX_SETTING),
                },
                anonymous: Tier {
                    submits_per_minute: r.number(
                        "RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS",
                        0,
                        MAX_SETTING,
                    ),
                    active_steps: r.number("MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS", 0, MAX_SETTING),
                },
                use_binding: r.boolean("RATE_LIMIT_USE_BINDING"),
            },
            webhook_allowed_hosts,
            webhook_key,
        };
        // Only when each value is valid on its own: one problem per setting.
        if r.problems.is_empty() {
            for (name, problem) in config.limits.problems() {
                r.problems.push(Problem { name, problem });
            }
        }
        if r.problems.is_empty() {
            Ok(config)
        } else {
            Err(Invalid {
                problems: r.problems,
                cors_allow_origin: config.cors_allow_origin,
                auth_mode: config.auth_mode,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const COMPLETE: &[(&str, &str)] = &[
        ("SUPABASE_URL", "https://abc.supabase.co/"),
        ("SUPABASE_SERVICE_KEY", "sb_secret_x"),
        ("OPENAI_API_KEY", "sk-x"),
        ("TRIPO_API_KEY", "tsk_x"),
    ];

    #[test]
    fn defaults_apply_and_urls_are_trimmed() {
        let c = Config::load(env(COMPLETE)).unwrap();
        assert_eq!(c.supabase_url, "https://abc.supabase.co");
        assert_eq!(c.bucket, "makeit3d_app_assets");
        assert_eq!(c.openai_image_model, "gpt-image-1");
        assert_eq!(c.auth_mode, AuthMode::Supabase);
        assert_eq!(c.max_body_bytes, 65536);
        assert!(c.supabase_jwt_secret.is_none());
        assert!(c.bucket_public);
        assert_eq!(c.supabase_origin.as_url(), "https://abc.supabase.co");
    }

    #[test]
    fn supabase_url_must_be_an_origin() {
        let mut pairs = COMPLETE.to_vec();
        pairs[0] = ("SUPABASE_URL", "https://abc.supabase.co/rest/v1");
        pairs.push(("CORS_ALLOW_ORIGIN", "https://app.example"));
        pairs.push(("AUTH_MODE", "none"));
        let invalid = Config::load(env(&pairs)).unwrap_err();
        assert_eq!(invalid.names(), ["SUPABASE_URL"]);
        assert!(!invalid.problems[0].problem.contains("abc"));
        // What an invalid configuration still answers with.
        assert_eq!(invalid.cors_allow_origin, "https://app.example");
        assert_eq!(invalid.auth_mode, AuthMode::None);
        // One problem per setting: a URL that is no URL is not also a bad origin.
        pairs[0] = ("SUPABASE_URL", "ftp://abc");
        assert_eq!(Config::load(env(&pairs)).unwrap_err().problems.len(), 1);
    }

    #[test]
    fn missing_settings_are_named_not_valued() {
        let problems = Config::load(env(&[("OPENAI_API_KEY", "sk-secret-value")]))
            .unwrap_err()
            .problems;
        let names: Vec<_> = problems.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            vec!["SUPABASE_URL", "SUPABASE_SERVICE_KEY", "TRIPO_API_KEY"]
        );
        let text = serde_json::to_string(&problems).unwrap();
        assert!(!text.contains("sk-secret-value"));
    }

    #[test]
    fn invalid_values_are_reported() {
        let mut pairs = COMPLETE.to_vec();
        pairs.push(("AUTH_MODE", "open"));
        pairs.push(("JOB_MAX_ATTEMPTS", "0"));
        pairs.push(("MODELS_TABLE_NAME", "models; drop table x"));
        pairs[0] = ("SUPABASE_URL", "ftp://abc");
        let problems = Config::load(env(&pairs)).unwrap_err().problems;
        let names: Vec<_> = problems.iter().map(|p| p.name).collect();
        assert!(names.contains(&"AUTH_MODE"));
        assert!(names.contains(&"JOB_MAX_ATTEMPTS"));
        assert!(names.contains(&"MODELS_TABLE_NAME"));
        assert!(names.contains(&"SUPABASE_URL"));
    }

    #[test]
    fn test_hooks_are_refused_with_real_auth() {
        let mut pairs = COMPLETE.to_vec();
        pairs.push(("TEST_HOOKS", "true"));
        let problems = Config::load(env(&pairs)).unwrap_err().problems;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].name, "TEST_HOOKS");
        pairs.push(("AUTH_MODE", "none"));
        let c = Config::load(env(&pairs)).unwrap();
        assert!(c.test_hooks);
        assert!(!Config::load(env(COMPLETE)).unwrap().test_hooks);
    }

    #[test]
    fn anonymous_users_are_refused_unless_allowed() {
        assert!(!Config::load(env(COMPLETE)).unwrap().anonymous_users);
        let mut pairs = COMPLETE.to_vec();
        pairs.push(("ANONYMOUS_USERS", "allow"));
        assert!(Config::load(env(&pairs)).unwrap().anonymous_users);
        pairs.pop();
        pairs.push(("ANONYMOUS_USERS", "yes"));
        let problems = Config::load(env(&pairs)).unwrap_err().problems;
        assert_eq!(problems[0].name, "ANONYMOUS_USERS");
    }

    #[test]
    fn limits_default_on_and_zero_is_off() {
        let c = Config::load(env(COMPLETE)).unwrap();
        assert_eq!(
            c.limits.user,
            Tier {
                submits_per_minute: 10,
                active_steps: 3
            }
        );
        assert_eq!(
            c.limits.anonymous,
            Tier {
                submits_per_minute: 3,
                active_steps: 1
            }
        );
        assert!(c.limits.use_binding);
        let mut pairs = COMPLETE.to_vec();
        for name in [
            "RATE_LIMIT_SUBMITS_PER_MINUTE",
            "RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS",
            "MAX_ACTIVE_STEPS_PER_USER",
            "MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS",
        ] {
            pairs.push((name, "0"));
        }
        pairs.push(("RATE_LIMIT_USE_BINDING", "false"));
        let c = Config::load(env(&pairs)).unwrap();
        assert!(c.limits.user.is_off() && c.limits.anonymous.is_off());
        assert!(!c.limits.use_binding);
    }

    #[test]
    fn bad_limits_are_named() {
        let mut pairs = COMPLETE.to_vec();
        pairs.push(("MAX_ACTIVE_STEPS_PER_USER", "-1"));
        pairs.push(("RATE_LIMIT_SUBMITS_PER_MINUTE", "many"));
        pairs.push(("RATE_LIMIT_USE_BINDING", "maybe"));
        let names = Config::load(env(&pairs)).unwrap_err().names();
        assert_eq!(
            names,
            [
                "RATE_LIMIT_SUBMITS_PER_MINUTE",
                "MAX_ACTIVE_STEPS_PER_USER",
                "RATE_LIMIT_USE_BINDING"
            ]
        );
        // Anonymous callers looser than signed-in ones.
        let mut pairs = COMPLETE.to_vec();
        pairs.push(("MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS", "5"));
        let problems = Config::load(env(&pairs)).unwrap_err().problems;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].name, "MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS");
        assert!(!problems[0].problem.contains('5'));
    }

    #[test]
    fn every_setting_is_listed_once() {
        let mut names: Vec<_> = SETTINGS.iter().map(|s| s.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
    }

    #[test]
    fn tripo_v3_and_its_webhook_secret() {
        let c = Config::load(env(COMPLETE)).unwrap();
        assert_eq!(c.tripo_api, ApiVersion::V2);
        assert_eq!(c.tripo_base(), "https://api.tripo3d.ai/v2/openapi");
        assert!(!c.tripo_webhooks());
        assert_eq!(c.tripo_safety_poll_s, 60);

        let mut pairs = COMPLETE.to_vec();
        pairs.push(("TRIPO_API_VERSION", "v3"));
        let c = Config::load(env(&pairs)).unwrap();
        assert_eq!(c.tripo_base(), "https://openapi.tripo3d.ai/v3");
        assert!(!c.tripo_webhooks(), "no secret: polling as before");
        pairs.push(("TRIPO_WEBHOOK_SECRET", "whsec_0123456789abcdefXYZ"));
        pairs.push(("TRIPO_V3_BASE_URL", "http://127.0.0.1:9/v3/"));
        pairs.push(("TRIPO_SAFETY_POLL_SECONDS", "5"));
        let c = Config::load(env(&pairs)).unwrap();
        assert!(c.tripo_webhooks());
        assert_eq!(c.tripo_base(), "http://127.0.0.1:9/v3");
        assert_eq!(c.tripo_safety_poll_s, 5);

        let bad = Config::load(env(&[
            ("SUPABASE_URL", "https://abc.supabase.co"),
            ("SUPABASE_SERVICE_KEY", "sb_secret_x"),
            ("OPENAI_API_KEY", "sk-x"),
            ("TRIPO_API_KEY", "tsk_x"),
            ("TRIPO_API_VERSION", "v4"),
            ("TRIPO_WEBHOOK_SECRET", "not-a-whsec-secret-at-all"),
        ]))
        .unwrap_err();
        assert_eq!(
            bad.names(),
            vec!["TRIPO_API_VERSION", "TRIPO_WEBHOOK_SECRET"]
        );
        assert!(bad
            .problems
            .iter()
            .all(|p| !p.problem.contains("not-a-whsec")));
    }
}
