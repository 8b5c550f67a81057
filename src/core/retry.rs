//! Failure classification, retry decisions and schedules (SPEC §6 "Retries", "Poll").
//!
//! This module owns:
//! - [`Failure`]: one observed failure, already classified ([`FailureClass`]) with a reason that is
//!   safe to show to the client. Provider-specific constructors live next to the wire types
//!   (`tripo::failure`, `openai::failure`, `rest::postgrest_failure`); the generic ones
//!   (network, HTTP status, Supabase Storage) live here.
//! - [`decide`]: given a failure, the attempt counters and a [`RetryPolicy`], either
//!   `Retry { after_ms }` (exponential backoff with full jitter, never earlier than the
//!   provider's `Retry-After` / `x-ratelimit-reset-*` hint) or `Fail { code, message }`.
//! - [`RetryHints`]: parsing of `Retry-After` (seconds or HTTP-date), `retry-after-ms` and
//!   OpenAI's `x-ratelimit-reset-requests` / `-tokens` durations (`1s`, `6m0s`, `20ms`).
//! - The Tripo polling schedule ([`next_poll_delay_ms`], [`decide_poll_error`]) and the task
//!   deadline ([`Deadline`], default 30 min).
//!
//! Budgets (documented decision):
//! - Transient failures (network, 408, 425, 5xx, Tripo 1000/1001/2014, a response we cannot parse)
//!   and rate limits (429, Tripo 1007, OpenAI `rate_limit_exceeded`) consume one attempt each;
//!   after `max_attempts` the step fails with "gave up after N attempts: <last reason>".
//! - Tripo's concurrency limit (2000) means "your other tasks are still running": it is *waited
//!   out*, not counted. It has its own schedule (5 s doubling to 60 s, full jitter, never below
//!   `Retry-After`) and is bounded only by the task deadline.
//! - Every retry is also bounded by the deadline: a retry that would start after it fails now with
//!   [`ErrorCode::Timeout`].
//! - A hint longer than `max_hint_ms` (default 10 min) is not waited for: the step fails with the
//!   provider's reason rather than sleeping for an unbounded time.
//!
//! Pure: the caller passes the clock (`now_ms`) and the random number (`rand01`, e.g.
//! `Math.random()`), so every schedule is reproducible in tests.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DepError, Dependency};

/// One second, in the milliseconds every schedule here uses.
const SEC: u64 = 1_000;
/// One minute.
const MIN: u64 = 60 * SEC;

/// Longest reason kept from a provider message (characters).
pub const MAX_REASON_CHARS: usize = 300;

/// What kind of failure this is; decides retry or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Network error, timeout, 408, 425, 5xx, an unparsable answer: retry, counted.
    Transient,
    /// 429 and equivalents: retry honouring the hint, counted.
    RateLimited,
    /// Tripo 2000 (too many tasks at once): wait and retry, not counted, bounded by the deadline.
    Concurrency,
    /// Moderation: OpenAI `moderation_blocked`, Tripo 2008, task status `banned`. Final.
    ContentPolicy,
    /// The input cannot be processed (bad image, unsupported type, invalid parameter). Final.
    InvalidInput,
    /// Our credentials were refused (401/403). Final; an operator must fix the configuration.
    Auth,
    /// No credits / quota exhausted (Tripo 2010, OpenAI `insufficient_quota`). Final.
    NoCredits,
    /// Any other 4xx. Final.
    Rejected,
    /// The provider ran the job and it failed (Tripo `failed`, `expired`, `cancelled`, ...). Final.
    TaskFailed,
    /// The step's deadline passed. Final.
    Timeout,
}

impl FailureClass {
    /// True for the classes [`decide`] may retry.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureClass::Transient | FailureClass::RateLimited | FailureClass::Concurrency
        )
    }

    /// The client-facing error code when a failure of this class ends the step.
    pub fn error_code(self) -> ErrorCode {
        match self {
            FailureClass::Transient => ErrorCode::ProviderUnavailable,
            FailureClass::RateLimited | FailureClass::Concurrency => ErrorCode::RateLimited,
            FailureClass::ContentPolicy => ErrorCode::ContentPolicy,
            FailureClass::InvalidInput => ErrorCode::InvalidInput,
            FailureClass::Auth => ErrorCode::ProviderAuth,
            FailureClass::NoCredits => ErrorCode::ProviderQuota,
            FailureClass::Rejected => ErrorCode::ProviderRejected,
            FailureClass::TaskFailed => ErrorCode::ProviderFailed,
            FailureClass::Timeout => ErrorCode::Timeout,
        }
    }
}

/// Client-facing code of a failed step (`error.code` in the status view, `metadata.error.code` in
/// the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The provider's safety system refused the input or the output.
    ContentPolicy,
    /// The input image or a parameter was refused.
    InvalidInput,
    /// The service's provider credentials were refused (configuration problem).
    ProviderAuth,
    /// The provider account has no credits or quota left.
    ProviderQuota,
    /// The provider refused the request for another reason.
    ProviderRejected,
    /// The provider accepted the job, then reported that it failed.
    ProviderFailed,
    /// A dependency kept failing; we gave up after the allowed attempts.
    ProviderUnavailable,
    /// A dependency kept rate-limiting us; we gave up.
    RateLimited,
    /// The step did not finish before its deadline.
    Timeout,
    /// A bug or an impossible state on our side.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ContentPolicy => "content_policy",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::ProviderAuth => "provider_auth",
            ErrorCode::ProviderQuota => "provider_quota",
            ErrorCode::ProviderRejected => "provider_rejected",
            ErrorCode::ProviderFailed => "provider_failed",
            ErrorCode::ProviderUnavailable => "provider_unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One classified failure. `reason` is safe to show to the client (no keys, no tokens, bounded
/// length) and already names the dependency, e.g. `"Tripo: You don't have enough credit (2010)"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub dependency: Dependency,
    pub class: FailureClass,
    pub reason: String,
    /// The smallest delay the dependency asked for (`Retry-After` & co.), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A failed call of the glue, classified: no answer is a network failure, an answer by its HTTP
/// status (with the dependency's `Retry-After`).
impl From<DepError> for Failure {
    fn from(e: DepError) -> Failure {
        match e.status {
            None => Failure::network(e.dependency, &e.message),
            Some(status) => Failure::http(
                e.dependency,
                status,
                &e.message,
                e.retry_after_s.map(|s| s.saturating_mul(1000)),
            ),
        }
    }
}

impl Failure {
    /// A failure with a reason; `detail` is sanitised and prefixed with the dependency's name.
    pub fn new(dependency: Dependency, class: FailureClass, detail: &str) -> Failure {
        Failure {
            dependency,
            class,
            reason: format!("{}: {}", dependency.label(), sanitize_message(detail)),
            retry_after_ms: None,
        }
    }

    /// Sets the provider's minimum delay.
    pub fn with_retry_after(mut self, retry_after_ms: Option<u64>) -> Failure {
        self.retry_after_ms = retry_after_ms;
        self
    }

    /// A network-level failure (connection refused/reset, DNS, timeout): transient.
    pub fn network(dependency: Dependency, detail: &str) -> Failure {
        Failure::new(
            dependency,
            FailureClass::Transient,
            &format!("network error: {detail}"),
        )
    }

    /// A 2xx answer we could not understand: transient (a proxy glitch or a truncated body).
    pub fn bad_response(dependency: Dependency, detail: &str) -> Failure {
        Failure::new(
            dependency,
            FailureClass::Transient,
            &format!("unexpected response: {detail}"),
        )
    }

    /// An HTTP error with no provider-specific body we understand: classified by status alone.
    /// `body_excerpt` (may be empty) is included in the reason, except for 401/403.
    /// Exception: a 401/403/404/410 on [`Dependency::TripoDownload`] is transient (an expired
    /// signed URL); the glue re-`GET`s the Tripo task for fresh URLs before retrying.
    pub fn http(
        dependency: Dependency,
        status: u16,
        body_excerpt: &str,
        retry_after_ms: Option<u64>,
    ) -> Failure {
        let class = match (dependency, status) {
            // Tripo's signed model URLs expire (providers.md §1.9): re-query the task for a fresh
            // URL and try again, rather than failing a finished model.
            (Dependency::TripoDownload, 401 | 403 | 404 | 410) => {
                return Failure::new(
                    dependency,
                    FailureClass::Transient,
                    &format!("the model URL was refused (HTTP {status}); it has probably expired"),
                )
                .with_retry_after(retry_after_ms);
            }
            _ => classify_status(status),
        };
        let detail = if class == FailureClass::Auth {
            format!("credentials refused (HTTP {status})")
        } else if body_excerpt.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", body_excerpt.trim())
        };
        Failure::new(dependency, class, &detail).with_retry_after(retry_after_ms)
    }

    /// A Supabase Storage error. Storage sends every 4xx as HTTP 400 with the real status as a
    /// string in `statusCode` (supabase-http.md §2.1); 5xx keep their status; the gateway's 413 is
    /// HTML. Missing objects and oversize bodies are input problems (final).
    pub fn storage(http_status: u16, body: &str, retry_after_ms: Option<u64>) -> Failure {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct StorageError {
            #[serde(default)]
            status_code: Option<serde_json::Value>,
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            message: Option<String>,
            #[serde(default)]
            code: Option<String>,
        }
        let parsed: Option<StorageError> = serde_json::from_str(body).ok();
        let Some(err) = parsed else {
            let excerpt = if http_status == 413 {
                "payload too large"
            } else {
                body
            };
            return Failure::http(Dependency::Storage, http_status, excerpt, retry_after_ms);
        };
        let real_status = err
            .status_code
            .as_ref()
            .and_then(|v| match v {
                serde_json::Value::String(s) => s.trim().parse::<u16>().ok(),
                serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                _ => None,
            })
            .unwrap_or(http_status);
        let code = err.code.unwrap_or_default();
        let message = err.message.or(err.error).unwrap_or_default();
        let class = match (real_status, code.as_str()) {
            // A missing bucket is a configuration problem, not the user's input.
            (_, "NoSuchBucket") => FailureClass::Rejected,
            (_, "NoSuchKey" | "EntityTooLarge") | (404 | 413, _) => FailureClass::InvalidInput,
            (s, _) => classify_status(s),
        };
        let detail = match class {
            FailureClass::Auth => format!("credentials refused ({real_status})"),
            _ if code.is_empty() => format!("{message} ({real_status})"),
            _ => format!("{message} ({real_status} {code})"),
        };
        Failure::new(Dependency::Storage, class, &detail).with_retry_after(retry_after_ms)
    }

    /// The final failure for a missed deadline.
    pub fn timeout(dependency: Dependency, detail: &str) -> Failure {
        Failure::new(dependency, FailureClass::Timeout, detail)
    }

    /// The client-facing code if this failure ends the step.
    pub fn error_code(&self) -> ErrorCode {
        self.class.error_code()
    }
}

/// Classifies an HTTP status the way SPEC §6 does for every dependency.
pub fn classify_status(status: u16) -> FailureClass {
    match status {
        408 | 425 | 500..=599 => FailureClass::Transient,
        429 => FailureClass::RateLimited,
        401 | 403 => FailureClass::Auth,
        413 | 415 | 422 => FailureClass::InvalidInput,
        400..=499 => FailureClass::Rejected,
        // 1xx/2xx/3xx handed to us as an error: something between us and the dependency is odd.
        _ => FailureClass::Transient,
    }
}

/// Makes a provider message safe and short: control characters become spaces, anything that looks
/// like a credential (`sk-…`, `tsk_…`, `sb_secret_…`, `eyJ…` JWTs, `Bearer …`) is redacted, and
/// the result is cut at [`MAX_REASON_CHARS`].
pub fn sanitize_message(s: &str) -> String {
    const SECRET_PREFIXES: [&str; 6] = [
        "sk-",
        "tsk_",
        "sb_secret_",
        "sb_publishable_",
        "eyJ",
        "whsec_",
    ];
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = String::with_capacity(cleaned.len().min(MAX_REASON_CHARS + 8));
    let mut redact_next = false;
    for (i, word) in cleaned.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let bare = word.trim_start_matches(['\'', '"', '(', '`']);
        let is_secret = redact_next || SECRET_PREFIXES.iter().any(|p| bare.starts_with(p));
        redact_next = word.eq_ignore_ascii_case("bearer");
        if is_secret && !bare.is_empty() {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
    }
    let trimmed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.chars().count() > MAX_REASON_CHARS {
        let mut cut: String = trimmed.chars().take(MAX_REASON_CHARS).collect();
        cut.push('…');
        cut
    } else {
        trimmed
    }
}

// ---------------------------------------------------------------------------------------------
// Retry hints
// ---------------------------------------------------------------------------------------------

/// The raw values of the response headers that carry a retry hint. All optional; the glue copies
/// them from the response as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryHints<'a> {
    /// `Retry-After`: delay-seconds or an HTTP-date.
    pub retry_after: Option<&'a str>,
    /// `retry-after-ms` (OpenAI): milliseconds, possibly fractional.
    pub retry_after_ms: Option<&'a str>,
    /// `x-ratelimit-reset-requests` (OpenAI): a Go-style duration.
    pub reset_requests: Option<&'a str>,
    /// `x-ratelimit-reset-tokens` (OpenAI): a Go-style duration.
    pub reset_tokens: Option<&'a str>,
}

impl RetryHints<'_> {
    /// The minimum delay these headers ask for, in ms. `retry-after-ms` wins over `Retry-After`
    /// (as in OpenAI's SDK); the `x-ratelimit-reset-*` durations only count on a 429 (they are
    /// sent on every response and say nothing about a 5xx). Unparsable values are ignored.
    pub fn min_delay_ms(&self, http_status: u16, now_ms: u64) -> Option<u64> {
        let explicit = self
            .retry_after_ms
            .and_then(parse_retry_after_ms)
            .or_else(|| self.retry_after.and_then(|v| parse_retry_after(v, now_ms)));
        let reset = if http_status == 429 {
            [self.reset_requests, self.reset_tokens]
                .into_iter()
                .flatten()
                .filter_map(parse_go_duration_ms)
                .max()
        } else {
            None
        };
        match (explicit, reset) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `Retry-After` as delay-seconds (`"120"`) or an HTTP-date (IMF-fixdate, RFC 850 or asctime,
/// RFC 9110 §5.6.7), relative to `now_ms`. A date in the past is a delay of 0.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(|s| s.saturating_mul(SEC));
    }
    let at_s = parse_http_date(v)?;
    let at_ms = u64::try_from(at_s).ok()?.saturating_mul(SEC);
    Some(at_ms.saturating_sub(now_ms))
}

/// `retry-after-ms`: a non-negative number of milliseconds (fractions rounded up).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // finite, ≥ 0; `as` saturates
pub fn parse_retry_after_ms(value: &str) -> Option<u64> {
    let ms: f64 = value.trim().parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| ms.ceil() as u64)
}

/// A Go `time.Duration` string as OpenAI sends it (`"1s"`, `"6m0s"`, `"20ms"`, `"1h2m3.5s"`),
/// in ms rounded up.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // finite, ≥ 0; `as` saturates
pub fn parse_go_duration_ms(value: &str) -> Option<u64> {
    let s = value.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(0);
    }
    let mut total_ms = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            "ms" => 1.0,
            "us" | "µs" | "μs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_ms += number * factor;
    }
    (total_ms.is_finite() && total_ms >= 0.0).then(|| total_ms.ceil() as u64)
}

/// Parses an HTTP-date to unix seconds. Accepts the three formats of RFC 9110 §5.6.7:
/// `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT`, `Sun Nov  6 08:49:37 1994`.
#[allow(clippy::many_single_char_names)] // d, m, y, t: the date's own fields
pub fn parse_http_date(value: &str) -> Option<i64> {
    let v = value.trim();
    let (day, month, year, time) = if let Some((_, rest)) = v.split_once(',') {
        let parts: Vec<&str> = rest.split_whitespace().collect();
        match parts.as_slice() {
            // IMF-fixdate: 06 Nov 1994 08:49:37 GMT
            [d, m, y, t, "GMT"] => (d.parse::<u32>().ok()?, *m, y.parse::<i64>().ok()?, *t),
            // RFC 850: 06-Nov-94 08:49:37 GMT
            [dmy, t, "GMT"] => {
                let mut it = dmy.split('-');
                let d = it.next()?.parse::<u32>().ok()?;
                let m = it.next()?;
                let yy = it.next()?;
                if it.next().is_some() {
                    return None;
                }
                let y = yy.parse::<i64>().ok()?;
                let y = match yy.len() {
                    2 if y < 70 => 2000 + y,
                    2 => 1900 + y,
                    4 => y,
                    _ => return None,
                };
                (d, m, y, *t)
            }
            _ => return None,
        }
    } else {
        // asctime: Sun Nov  6 08:49:37 1994
        let parts: Vec<&str> = v.split_whitespace().collect();
        match parts.as_slice() {
            [_, m, d, t, y] => (d.parse::<u32>().ok()?, *m, y.parse::<i64>().ok()?, *t),
            _ => return None,
        }
    };
    let month = match month {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    if !(1..=31).contains(&day) {
        return None;
    }
    let mut hms = time.split(':');
    let h = hms.next()?.parse::<i64>().ok()?;
    let mi = hms.next()?.parse::<i64>().ok()?;
    let s = hms.next()?.parse::<i64>().ok()?;
    if hms.next().is_some() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3_600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------------------------
// Retry decisions
// ---------------------------------------------------------------------------------------------

/// Limits of the retry schedule. `Default` gives the documented values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Counted attempts (the first try included) before giving up. Default 5.
    pub max_attempts: u32,
    /// First backoff ceiling. Default 1 s.
    pub base_ms: u64,
    /// Largest backoff ceiling. Default 60 s.
    pub cap_ms: u64,
    /// First wait on Tripo's concurrency limit. Default 5 s.
    pub concurrency_base_ms: u64,
    /// Largest wait on Tripo's concurrency limit. Default 60 s.
    pub concurrency_cap_ms: u64,
    /// A provider hint longer than this is not waited for: the step fails. Default 10 min.
    pub max_hint_ms: u64,
    /// The step's deadline, from its submission. Default 30 min.
    pub deadline_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_ms: SEC,
            cap_ms: 60 * SEC,
            concurrency_base_ms: 5 * SEC,
            concurrency_cap_ms: 60 * SEC,
            max_hint_ms: 10 * MIN,
            deadline_ms: DEFAULT_DEADLINE_MS,
        }
    }
}

/// Where a step stands when a failure is decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attempts {
    /// The counted attempt that just failed, 1-based (the first try is 1).
    pub attempt: u32,
    /// Concurrency waits so far (not counted in `attempt`), before this failure.
    pub waits: u32,
    /// Time since the step was submitted.
    pub elapsed_ms: u64,
}

/// What to do after a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Try again after `after_ms`. `counted`: the retry consumes an attempt (increment
    /// `Attempts::attempt`); otherwise it is a concurrency wait (increment `Attempts::waits`).
    Retry { after_ms: u64, counted: bool },
    /// Give up: mark the step and its rows `failed` with this code and message.
    Fail { code: ErrorCode, message: String },
}

impl Decision {
    fn fail(code: ErrorCode, message: String) -> Decision {
        Decision::Fail { code, message }
    }
}

/// Full-jitter exponential backoff: a uniform delay in `[0, min(cap, base·2^(n-1))]` for the
/// `n`-th retry (`n` ≥ 1). `rand01` is a number in `[0, 1)` (out-of-range values are clamped).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in [0, cap_ms]
pub fn backoff_ms(n: u32, base_ms: u64, cap_ms: u64, rand01: f64) -> u64 {
    let exp = n.saturating_sub(1).min(32);
    let ceiling = base_ms.saturating_mul(1u64 << exp).min(cap_ms);
    let r = if rand01.is_finite() {
        rand01.clamp(0.0, 1.0)
    } else {
        0.5
    };
    (ceiling as f64 * r).round() as u64
}

/// Shortest delay before the queue delivers a message again after infrastructure trouble.
pub const REDELIVERY_MIN_S: u32 = 5;
/// Longest such delay.
pub const REDELIVERY_MAX_S: u32 = 300;
/// Delay of every redelivery while the worker's configuration is broken.
pub const MISCONFIGURED_REDELIVERY_S: u32 = 60;

/// Delay before the queue delivers again a message whose handling hit infrastructure trouble
/// (the task's Durable Object, the queue, the rows), from the message's age (the runtime gives
/// the first send's time, not a delivery count): twice its age, between
/// [`REDELIVERY_MIN_S`] and [`REDELIVERY_MAX_S`]. Without a delay a few seconds of trouble used
/// up `max_retries` and sent the job to the dead-letter queue; with it five redeliveries span
/// about seven minutes, longer than a typical outage.
pub fn redelivery_delay_s(age_ms: u64) -> u32 {
    let twice = age_ms.saturating_mul(2) / 1000;
    u32::try_from(twice)
        .unwrap_or(u32::MAX)
        .clamp(REDELIVERY_MIN_S, REDELIVERY_MAX_S)
}

/// Decides what to do after `failure` (see the module doc for the budgets).
pub fn decide(failure: &Failure, at: &Attempts, policy: &RetryPolicy, rand01: f64) -> Decision {
    let code = failure.error_code();
    if !failure.class.is_retryable() {
        return Decision::fail(code, failure.reason.clone());
    }
    let hint = failure.retry_after_ms.unwrap_or(0);
    if hint > policy.max_hint_ms {
        return Decision::fail(
            code,
            format!(
                "{} (asked to retry after {} s, longer than the {} s we wait)",
                failure.reason,
                hint.div_ceil(SEC),
                policy.max_hint_ms / SEC
            ),
        );
    }
    let (delay, counted) = if failure.class == FailureClass::Concurrency {
        let jittered = backoff_ms(
            at.waits.saturating_add(1),
            policy.concurrency_base_ms,
            policy.concurrency_cap_ms,
            rand01,
        );
        // Never below half the base: a slot frees when another task finishes (minutes).
        (
            jittered.max(policy.concurrency_base_ms / 2).max(hint),
            false,
        )
    } else {
        if at.attempt >= policy.max_attempts {
            return Decision::fail(
                code,
                format!("gave up after {} attempts: {}", at.attempt, failure.reason),
            );
        }
        let jittered = backoff_ms(at.attempt.max(1), policy.base_ms, policy.cap_ms, rand01);
        (jittered.max(hint), true)
    };
    if at.elapsed_ms.saturating_add(delay) > policy.deadline_ms {
        let what = if counted {
            format!("after {} attempts", at.attempt)
        } else {
            "while waiting for a free Tripo slot".to_owned()
        };
        return Decision::fail(
            ErrorCode::Timeout,
            format!(
                "did not finish within {} min {what}: {}",
                policy.deadline_ms / MIN,
                failure.reason
            ),
        );
    }
    Decision::Retry {
        after_ms: delay,
        counted,
    }
}

// ---------------------------------------------------------------------------------------------
// Tripo polling and the deadline
// ---------------------------------------------------------------------------------------------

/// The default deadline of a step, from its submission (SPEC §6: 30 min).
pub const DEFAULT_DEADLINE_MS: u64 = 30 * MIN;

/// The polling schedule. `Default` gives the documented values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollPolicy {
    /// Shortest interval, and the first interval without an estimate. Default 2 s.
    pub min_ms: u64,
    /// Cap of the doubling schedule used without an estimate. Default 15 s.
    pub cap_ms: u64,
    /// Cap of the estimate-driven interval (`running_left_time / 2`), so that progress keeps
    /// moving on a long task and a wild estimate cannot park the task. Default 60 s.
    pub estimate_cap_ms: u64,
    /// Cap of the backoff after poll errors. Default 60 s.
    pub error_cap_ms: u64,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            min_ms: 2 * SEC,
            cap_ms: 15 * SEC,
            estimate_cap_ms: 60 * SEC,
            error_cap_ms: 60 * SEC,
        }
    }
}

/// Delay before the next `GET /task/{id}`.
///
/// - With an estimate (`running_left_time` > 0 seconds): `max(min, running_left_time / 2)`,
///   capped at `estimate_cap_ms` (the Python SDK's rule, plus the cap).
/// - Without one (queued, `-1`, absent): `min · 2^poll_index`, capped at `cap_ms`
///   (2, 4, 8, 15, 15, … s).
///
/// `poll_index` is the number of polls already made for this Tripo task (0 before the first).
pub fn next_poll_delay_ms(
    poll_index: u32,
    running_left_time_s: Option<i64>,
    policy: &PollPolicy,
) -> u64 {
    match running_left_time_s {
        Some(left) if left > 0 => {
            let half = u64::try_from(left).unwrap_or(0).saturating_mul(SEC) / 2;
            half.max(policy.min_ms)
                .min(policy.estimate_cap_ms.max(policy.min_ms))
        }
        _ => policy
            .min_ms
            .saturating_mul(1u64 << poll_index.min(32))
            .min(policy.cap_ms.max(policy.min_ms)),
    }
}

/// Longest gap between two safety-net polls (webhooks on).
pub const SAFETY_POLL_CAP_MS: u64 = 10 * 60 * SEC;

/// The poll schedule when Tripo's signed webhooks are on (SPEC §11 "Tripo v3"): the webhook
/// moves the step, and the alarm only checks as a safety net: first `first_ms` after the task
/// was created (about the expected duration), then `first · 2^polls_made`, capped at
/// [`SAFETY_POLL_CAP_MS`] (never below `first_ms`). A lost webhook costs at most one wait; a
/// delivered one costs no poll at all when the task ends before `first_ms`.
///
/// `polls_made` is the number of safety polls already made for this Tripo task (0 at creation).
pub fn safety_poll_delay_ms(polls_made: u32, first_ms: u64) -> u64 {
    first_ms
        .saturating_mul(1u64 << polls_made.min(32))
        .min(SAFETY_POLL_CAP_MS.max(first_ms))
}

/// After a failed poll (the `GET` itself failed): transient, rate-limit and concurrency failures
/// back off (`min · 2^(n-1)` with full jitter, floor `min`, cap `error_cap_ms`, never below the
/// hint) and are *not* counted: the task fails only at its deadline. Final failures (401, 404
/// task not found, ...) fail at once.
///
/// `consecutive_errors` counts this one (≥ 1); `at_ms`/`deadline` say where the task stands.
pub fn decide_poll_error(
    failure: &Failure,
    consecutive_errors: u32,
    now_ms: u64,
    deadline: &Deadline,
    policy: &PollPolicy,
    rand01: f64,
) -> Decision {
    if !failure.class.is_retryable() {
        return Decision::fail(failure.error_code(), failure.reason.clone());
    }
    let delay = backoff_ms(
        consecutive_errors.max(1),
        policy.min_ms,
        policy.error_cap_ms,
        rand01,
    )
    .max(policy.min_ms)
    .max(failure.retry_after_ms.unwrap_or(0));
    if now_ms.saturating_add(delay) > deadline.at_ms() {
        return Decision::fail(
            ErrorCode::Timeout,
            format!(
                "did not finish within {} min; polling kept failing ({} errors in a row): {}",
                deadline.budget_ms / MIN,
                consecutive_errors,
                failure.reason
            ),
        );
    }
    Decision::Retry {
        after_ms: delay,
        counted: false,
    }
}

/// The deadline of a step: `started_at_ms + budget_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub started_at_ms: u64,
    pub budget_ms: u64,
}

impl Deadline {
    pub fn new(started_at_ms: u64, budget_ms: u64) -> Deadline {
        Deadline {
            started_at_ms,
            budget_ms,
        }
    }

    /// A deadline of [`DEFAULT_DEADLINE_MS`].
    pub fn default_from(started_at_ms: u64) -> Deadline {
        Deadline::new(started_at_ms, DEFAULT_DEADLINE_MS)
    }

    pub fn at_ms(&self) -> u64 {
        self.started_at_ms.saturating_add(self.budget_ms)
    }

    pub fn is_past(&self, now_ms: u64) -> bool {
        now_ms >= self.at_ms()
    }

    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.at_ms().saturating_sub(now_ms)
    }

    /// When to fire the next alarm: `now + delay`, but never after the deadline (the alarm at the
    /// deadline then fails the task with [`Deadline::failure`]).
    pub fn next_alarm_ms(&self, now_ms: u64, delay_ms: u64) -> u64 {
        now_ms
            .saturating_add(delay_ms)
            .min(self.at_ms().max(now_ms))
    }

    /// The final failure when the deadline has passed; `last_state` describes what we last saw,
    /// e.g. `"running, 42%"`.
    pub fn failure(&self, dependency: Dependency, last_state: &str) -> Failure {
        Failure::timeout(
            dependency,
            &format!(
                "the task did not finish within {} min (last seen: {last_state})",
                self.budget_ms / MIN
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> Failure {
        Failure::http(Dependency::Tripo, 503, "Service Unavailable", None)
    }

    #[test]
    fn classifies_statuses() {
        for s in [408, 425, 500, 502, 503, 504] {
            assert_eq!(classify_status(s), FailureClass::Transient, "{s}");
        }
        assert_eq!(classify_status(429), FailureClass::RateLimited);
        assert_eq!(classify_status(401), FailureClass::Auth);
        assert_eq!(classify_status(403), FailureClass::Auth);
        assert_eq!(classify_status(404), FailureClass::Rejected);
        assert_eq!(classify_status(400), FailureClass::Rejected);
        assert_eq!(classify_status(415), FailureClass::InvalidInput);
    }

    #[test]
    fn parses_retry_after_seconds_and_all_three_date_formats() {
        // 1994-11-06T08:49:37Z = 784111777
        let now = 784_111_777_000 - 30_000;
        assert_eq!(parse_retry_after("120", now), Some(120_000));
        assert_eq!(parse_retry_after(" 0 ", now), Some(0));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(30_000)
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            Some(30_000)
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", now),
            Some(30_000)
        );
        // A date in the past: no wait.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now + 60_000),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", now),
            None
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
    }

    #[test]
    fn parses_openai_durations() {
        assert_eq!(parse_go_duration_ms("1s"), Some(1_000));
        assert_eq!(parse_go_duration_ms("6m0s"), Some(360_000));
        assert_eq!(parse_go_duration_ms("20ms"), Some(20));
        assert_eq!(parse_go_duration_ms("1h2m3.5s"), Some(3_723_500));
        assert_eq!(parse_go_duration_ms("1.5ms"), Some(2));
        assert_eq!(parse_go_duration_ms("0"), Some(0));
        assert_eq!(parse_go_duration_ms("12"), None);
        assert_eq!(parse_go_duration_ms("5 days"), None);
        assert_eq!(parse_go_duration_ms(""), None);
    }

    #[test]
    fn hints_take_the_largest_applicable_value() {
        let hints = RetryHints {
            retry_after: Some("2"),
            retry_after_ms: None,
            reset_requests: Some("6s"),
            reset_tokens: Some("20ms"),
        };
        assert_eq!(hints.min_delay_ms(429, 0), Some(6_000));
        // x-ratelimit-* say nothing about a 503.
        assert_eq!(hints.min_delay_ms(503, 0), Some(2_000));
        let ms_first = RetryHints {
            retry_after: Some("9"),
            retry_after_ms: Some("1500.2"),
            ..Default::default()
        };
        assert_eq!(ms_first.min_delay_ms(503, 0), Some(1_501));
        assert_eq!(RetryHints::default().min_delay_ms(429, 0), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_ms(1, 1_000, 60_000, 0.999_999), 1_000);
        assert_eq!(backoff_ms(2, 1_000, 60_000, 0.999_999), 2_000);
        assert_eq!(backoff_ms(6, 1_000, 60_000, 0.999_999), 32_000);
        assert_eq!(backoff_ms(7, 1_000, 60_000, 0.999_999), 60_000);
        assert_eq!(backoff_ms(40, 1_000, 60_000, 1.0), 60_000);
        assert_eq!(backoff_ms(3, 1_000, 60_000, 0.5), 2_000);
        assert_eq!(backoff_ms(3, 1_000, 60_000, 0.0), 0);
        assert_eq!(backoff_ms(3, 1_000, 60_000, f64::NAN), 2_000);
    }

    #[test]
    fn transient_failures_retry_then_give_up() {
        let p = RetryPolicy::default();
        let f = transient();
        let d = decide(
            &f,
            &Attempts {
                attempt: 1,
                waits: 0,
                elapsed_ms: 0,
            },
            &p,
            0.5,
        );
        assert_eq!(
            d,
            Decision::Retry {
                after_ms: 500,
                counted: true
            }
        );
        let d = decide(
            &f,
            &Attempts {
                attempt: 4,
                waits: 0,
                elapsed_ms: 0,
            },
            &p,
            0.5,
        );
        assert_eq!(
            d,
            Decision::Retry {
                after_ms: 4_000,
                counted: true
            }
        );
        match decide(
            &f,
            &Attempts {
                attempt: 5,
                waits: 0,
                elapsed_ms: 0,
            },
            &p,
            0.5,
        ) {
            Decision::Fail { code, message } => {
                assert_eq!(code, ErrorCode::ProviderUnavailable);
                assert_eq!(
                    message,
                    "gave up after 5 attempts: Tripo: HTTP 503: Service Unavailable"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hint_is_a_floor_and_too_long_a_hint_fails() {
        let p = RetryPolicy::default();
        let f = Failure::http(Dependency::OpenAi, 429, "slow down", Some(7_000));
        let d = decide(
            &f,
            &Attempts {
                attempt: 1,
                ..Default::default()
            },
            &p,
            0.9,
        );
        assert_eq!(
            d,
            Decision::Retry {
                after_ms: 7_000,
                counted: true
            }
        );
        let long = Failure::http(Dependency::OpenAi, 429, "slow down", Some(3_600_000));
        match decide(
            &long,
            &Attempts {
                attempt: 1,
                ..Default::default()
            },
            &p,
            0.9,
        ) {
            Decision::Fail { code, message } => {
                assert_eq!(code, ErrorCode::RateLimited);
                assert!(message.contains("3600 s"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn final_classes_fail_at_once_with_the_reason() {
        let p = RetryPolicy::default();
        let f = Failure::new(
            Dependency::OpenAi,
            FailureClass::ContentPolicy,
            "rejected by the safety system",
        );
        let d = decide(
            &f,
            &Attempts {
                attempt: 1,
                ..Default::default()
            },
            &p,
            0.1,
        );
        assert_eq!(
            d,
            Decision::Fail {
                code: ErrorCode::ContentPolicy,
                message: "OpenAI: rejected by the safety system".into()
            }
        );
        let auth = Failure::http(Dependency::Tripo, 401, "key tsk_abc is bad", None);
        assert_eq!(auth.reason, "Tripo: credentials refused (HTTP 401)");
        // An expired model URL is not a credentials problem: retry (after re-querying the task).
        let expired = Failure::http(Dependency::TripoDownload, 403, "AccessDenied", None);
        assert_eq!(expired.class, FailureClass::Transient);
        assert!(expired.reason.contains("expired"), "{}", expired.reason);
    }

    #[test]
    fn concurrency_waits_are_not_counted_but_bounded_by_the_deadline() {
        let p = RetryPolicy::default();
        let f = Failure::new(Dependency::Tripo, FailureClass::Concurrency, "limit")
            .with_retry_after(Some(10_000));
        // Far beyond max_attempts: still waiting.
        let at = Attempts {
            attempt: 1,
            waits: 50,
            elapsed_ms: 10 * MIN,
        };
        match decide(&f, &at, &p, 0.99) {
            Decision::Retry { after_ms, counted } => {
                assert!(!counted);
                assert!((10_000..=60_000).contains(&after_ms), "{after_ms}");
            }
            other => panic!("{other:?}"),
        }
        // Floor: half the base even with rand 0 and no hint.
        let no_hint = Failure::new(Dependency::Tripo, FailureClass::Concurrency, "limit");
        assert_eq!(
            decide(
                &no_hint,
                &Attempts {
                    attempt: 1,
                    waits: 0,
                    elapsed_ms: 0
                },
                &p,
                0.0
            ),
            Decision::Retry {
                after_ms: 2_500,
                counted: false
            }
        );
        let late = Attempts {
            attempt: 1,
            waits: 50,
            elapsed_ms: 30 * MIN - 5_000,
        };
        match decide(&f, &late, &p, 0.99) {
            Decision::Fail { code, message } => {
                assert_eq!(code, ErrorCode::Timeout);
                assert!(message.contains("free Tripo slot"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn storage_errors_use_the_status_in_the_body() {
        let missing = Failure::storage(
            400,
            r#"{"statusCode":"404","error":"not_found","message":"Object not found","code":"NoSuchKey"}"#,
            None,
        );
        assert_eq!(missing.class, FailureClass::InvalidInput);
        assert_eq!(
            missing.reason,
            "Supabase Storage: Object not found (404 NoSuchKey)"
        );
        let denied = Failure::storage(
            400,
            r#"{"statusCode":"403","error":"Unauthorized","message":"signature verification failed","code":"AccessDenied"}"#,
            None,
        );
        assert_eq!(denied.class, FailureClass::Auth);
        let dup = Failure::storage(
            400,
            r#"{"statusCode":"409","error":"Duplicate","message":"The resource already exists","code":"KeyAlreadyExists"}"#,
            None,
        );
        assert_eq!(dup.class, FailureClass::Rejected);
        let bucket = Failure::storage(
            400,
            r#"{"statusCode":"404","error":"Bucket not found","message":"Bucket not found","code":"NoSuchBucket"}"#,
            None,
        );
        assert_eq!(bucket.class, FailureClass::Rejected);
        assert_eq!(
            Failure::storage(503, "upstream", None).class,
            FailureClass::Transient
        );
        let html = Failure::storage(413, "<html>413 Request Entity Too Large</html>", None);
        assert_eq!(html.class, FailureClass::InvalidInput);
        assert!(!html.reason.contains("<html>"));
    }

    #[test]
    fn sanitizes_messages() {
        assert_eq!(
            sanitize_message("Incorrect API key provided: sk-proj-abc123. You can find"),
            "Incorrect API key provided: [redacted] You can find"
        );
        assert_eq!(
            sanitize_message("Bearer abc.def\nnext"),
            "Bearer [redacted] next"
        );
        assert_eq!(sanitize_message("key 'tsk_live'"), "key [redacted]");
        let long = "x".repeat(1_000);
        assert_eq!(
            sanitize_message(&long).chars().count(),
            MAX_REASON_CHARS + 1
        );
    }

    #[test]
    fn poll_schedule_follows_estimate_or_doubles() {
        let p = PollPolicy::default();
        assert_eq!(next_poll_delay_ms(0, None, &p), 2_000);
        assert_eq!(next_poll_delay_ms(1, Some(-1), &p), 4_000);
        assert_eq!(next_poll_delay_ms(2, None, &p), 8_000);
        assert_eq!(next_poll_delay_ms(3, None, &p), 15_000);
        assert_eq!(next_poll_delay_ms(40, None, &p), 15_000);
        assert_eq!(next_poll_delay_ms(5, Some(30), &p), 15_000);
        assert_eq!(next_poll_delay_ms(5, Some(3), &p), 2_000);
        assert_eq!(next_poll_delay_ms(0, Some(0), &p), 2_000);
        assert_eq!(next_poll_delay_ms(0, Some(100_000), &p), 60_000);
    }

    /// Simulates a Tripo task that runs `duration_s` after `queue_s` in the queue, reporting an
    /// exact `running_left_time` while running (-1 while queued, as Tripo does). Returns the
    /// number of polls until `success` is seen, and the lag between completion and that poll.
    fn simulate(queue_s: f64, duration_s: f64, estimates: bool) -> (u32, f64) {
        let p = PollPolicy::default();
        let mut t = 0.0;
        let mut polls = 0u32;
        let mut left: Option<i64> = None;
        loop {
            t += next_poll_delay_ms(polls, left, &p) as f64 / 1000.0;
            polls += 1;
            let done_at = queue_s + duration_s;
            if t >= done_at {
                return (polls, t - done_at);
            }
            left = if t < queue_s || !estimates {
                Some(-1)
            } else {
                Some((done_at - t).ceil() as i64)
            };
            assert!(polls < 1_000);
        }
    }

    #[test]
    fn poll_counts_for_20_s_and_60_s_tasks() {
        let (n20, lag20) = simulate(0.0, 20.0, true);
        let (n60, lag60) = simulate(0.0, 60.0, true);
        assert!(n20 <= 12, "20 s task polled {n20} times");
        assert!(n60 <= 15, "60 s task polled {n60} times");
        // With an estimate the result is seen within the 2 s floor.
        assert!(lag20 <= 2.0 && lag60 <= 2.0, "{lag20} {lag60}");
        // Figures for the docs: 5 polls for 20 s, 7 for 60 s.
        assert_eq!((n20, n60), (5, 7));
        // Without any estimate (2, 4, 8, 15, 15 ... s): fewer polls, up to 15 s late.
        let (m20, mlag20) = simulate(0.0, 20.0, false);
        let (m60, _) = simulate(0.0, 60.0, false);
        assert_eq!((m20, m60), (4, 7));
        assert!(mlag20 <= 15.0);
        // Queued 30 s, then 60 s of running: still bounded.
        let (q, _) = simulate(30.0, 60.0, true);
        assert!(q <= 15, "{q}");
    }

    #[test]
    fn poll_errors_back_off_until_the_deadline() {
        let p = PollPolicy::default();
        let dl = Deadline::default_from(0);
        let f = transient();
        match decide_poll_error(&f, 20, 60_000, &dl, &p, 0.999) {
            Decision::Retry { after_ms, counted } => {
                assert!(!counted);
                assert!((2_000..=60_000).contains(&after_ms));
            }
            other => panic!("{other:?}"),
        }
        match decide_poll_error(&f, 3, 30 * MIN - 1_000, &dl, &p, 0.999) {
            Decision::Fail { code, .. } => assert_eq!(code, ErrorCode::Timeout),
            other => panic!("{other:?}"),
        }
        let gone = Failure::http(Dependency::Tripo, 404, "task not found", None);
        assert!(matches!(
            decide_poll_error(&gone, 1, 0, &dl, &p, 0.5),
            Decision::Fail {
                code: ErrorCode::ProviderRejected,
                ..
            }
        ));
    }

    #[test]
    fn deadline_helpers() {
        let dl = Deadline::new(1_000, 10_000);
        assert_eq!(dl.at_ms(), 11_000);
        assert!(!dl.is_past(10_999));
        assert!(dl.is_past(11_000));
        assert_eq!(dl.remaining_ms(5_000), 6_000);
        assert_eq!(dl.next_alarm_ms(5_000, 2_000), 7_000);
        assert_eq!(dl.next_alarm_ms(10_000, 15_000), 11_000);
        let f = Deadline::default_from(0).failure(Dependency::Tripo, "running, 42%");
        assert_eq!(f.error_code(), ErrorCode::Timeout);
        assert_eq!(
            f.reason,
            "Tripo: the task did not finish within 30 min (last seen: running, 42%)"
        );
    }

    #[test]
    fn redeliveries_are_delayed_and_outlast_a_short_outage() {
        assert_eq!(redelivery_delay_s(0), REDELIVERY_MIN_S);
        assert_eq!(redelivery_delay_s(10_000), 20);
        assert_eq!(redelivery_delay_s(3_600_000), REDELIVERY_MAX_S);
        assert_eq!(redelivery_delay_s(u64::MAX), REDELIVERY_MAX_S);
        // Five redeliveries (wrangler.toml's max_retries) of a message that meets trouble each
        // time: the dead-letter queue is reached only after more than five minutes.
        let mut age_ms = 0u64;
        for _ in 0..5 {
            let d = redelivery_delay_s(age_ms);
            assert!(d >= REDELIVERY_MIN_S);
            age_ms += u64::from(d) * 1000;
        }
        assert!(age_ms > 5 * 60_000, "{age_ms}");
    }

    #[test]
    fn safety_polls_start_at_the_expected_duration_and_widen() {
        let first = 60 * SEC;
        assert_eq!(safety_poll_delay_ms(0, first), 60 * SEC);
        assert_eq!(safety_poll_delay_ms(1, first), 120 * SEC);
        assert_eq!(safety_poll_delay_ms(2, first), 240 * SEC);
        assert_eq!(safety_poll_delay_ms(3, first), 480 * SEC);
        assert_eq!(safety_poll_delay_ms(4, first), SAFETY_POLL_CAP_MS);
        assert_eq!(safety_poll_delay_ms(40, first), SAFETY_POLL_CAP_MS);
        // A first check longer than the cap is kept (never more often than asked).
        assert_eq!(safety_poll_delay_ms(3, 20 * 60 * SEC), 20 * 60 * SEC);
    }
}
