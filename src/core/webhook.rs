//! Outbound webhooks (SPEC §11 "Webhooks"), the pure parts: the URL policy, the Standard
//! Webhooks signing scheme (<https://www.standardwebhooks.com>: headers `webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! secret `whsec_<base64>`), the event id, what an answer means and the retry schedule.
//!
//! The HMAC itself is computed by the runtime's WebCrypto (`crate::runtime`), which keeps a hash
//! implementation out of the WebAssembly bundle; the native tests compute it with the `hmac`
//! crate and check the scheme against the Standard Webhooks test vector.

use base64::Engine;
use uuid::Uuid;

use super::ids::TaskId;
use super::step::Step;

/// Longest accepted `webhook_url`.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// A webhook event is retried for this long after its step became final.
pub const WEBHOOK_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// Time allowed for the receiver to answer one delivery.
pub const DELIVERY_TIMEOUT_MS: u64 = 10_000;
/// First retry delay; it doubles up to [`MAX_RETRY_DELAY_S`].
pub const FIRST_RETRY_DELAY_S: u32 = 5;
/// Longest wait between two tries.
pub const MAX_RETRY_DELAY_S: u32 = 3600;
/// When the Durable Object's alarm sends the webhook message again if no delivery reported back
/// (the message or the job was lost): this long after it was last sent.
pub const WEBHOOK_CHECK_MS: u64 = 120_000;

/// Namespace of webhook event ids (UUID v5).
const WEBHOOK_NAMESPACE: Uuid = Uuid::from_u128(0x0b5e_77a1_2c4d_4e8f_9a10_5c6d_7e8f_9a0b);

/// Why a `webhook_url` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must be at most {MAX_WEBHOOK_URL_LEN} characters")]
    TooLong,
    #[error("must be an https URL (plain http only for a loopback host)")]
    Scheme,
    #[error("must be an absolute URL with a host and no user information")]
    Shape,
    #[error("webhooks are not enabled on this service (WEBHOOK_ALLOWED_HOSTS is empty)")]
    Disabled,
    #[error("host `{0}` is not in WEBHOOK_ALLOWED_HOSTS")]
    HostNotAllowed(String),
}

/// The host (lower case, without port; an IPv6 literal keeps its brackets) of an http(s) URL.
fn split_url(url: &str) -> Result<(&str, String), UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::Shape)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || url.chars().any(char::is_whitespace) {
        return Err(UrlError::Shape);
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let (inner, after) = v6.split_once(']').ok_or(UrlError::Shape)?;
        if !(after.is_empty() || after.starts_with(':')) {
            return Err(UrlError::Shape);
        }
        format!("[{}]", inner.to_ascii_lowercase())
    } else {
        let (host, port) = authority
            .split_once(':')
            .map_or((authority, None), |(h, p)| (h, Some(p)));
        if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(UrlError::Shape);
        }
        host.to_ascii_lowercase()
    };
    if host.is_empty() {
        return Err(UrlError::Shape);
    }
    Ok((scheme, host))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host
            .strip_prefix("127.")
            .is_some_and(|r| r.split('.').count() == 3)
}

/// The shape of a `webhook_url` (request validation): https, or http for a loopback host.
/// Returns its host.
pub fn check_url(url: &str) -> Result<String, UrlError> {
    if url.len() > MAX_WEBHOOK_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let (scheme, host) = split_url(url)?;
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(host),
        "http" if is_loopback(&host) => Ok(host),
        _ => Err(UrlError::Scheme),
    }
}

/// `WEBHOOK_ALLOWED_HOSTS`: a comma list of hosts (lower-cased, blanks dropped).
pub fn parse_allowed_hosts(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// A `webhook_url` against the allow-list: its host must be listed exactly; an empty list
/// refuses every webhook.
pub fn check_allowed(url: &str, allowed: &[String]) -> Result<(), UrlError> {
    let host = check_url(url)?;
    if allowed.is_empty() {
        return Err(UrlError::Disabled);
    }
    if allowed.contains(&host) {
        Ok(())
    } else {
        Err(UrlError::HostNotAllowed(host))
    }
}

/// A regex (ECMA, for `/openapi.json`) that matches exactly the `webhook_url`s this deployment
/// accepts with `allowed` hosts: `https://` (or `http://` for a loopback host) + one of them
/// (any letter case) + an optional port + a path, query or fragment without blanks. `None` when
/// the list is empty (no `webhook_url` is accepted).
pub fn url_pattern(allowed: &[String]) -> Option<String> {
    fn host_re(h: &str) -> String {
        h.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                } else if c.is_ascii_alphanumeric() || c == '-' {
                    c.to_string()
                } else {
                    format!("\\{c}")
                }
            })
            .collect()
    }
    if allowed.is_empty() {
        return None;
    }
    let any: Vec<String> = allowed.iter().map(|h| host_re(h)).collect();
    let loopback: Vec<String> = allowed
        .iter()
        .filter(|h| is_loopback(h))
        .map(|h| host_re(h))
        .collect();
    let mut schemes = format!("[Hh][Tt][Tt][Pp][Ss]://(?:{})", any.join("|"));
    if !loopback.is_empty() {
        schemes = format!(
            "(?:{schemes}|[Hh][Tt][Tt][Pp]://(?:{}))",
            loopback.join("|")
        );
    }
    Some(format!("^{schemes}(?::[0-9]+)?(?:[/?#]\\S*)?$"))
}

/// `WEBHOOK_SECRET` (`whsec_<base64>`, the prefix optional) → the HMAC key bytes.
pub fn parse_secret(raw: &str) -> Result<Vec<u8>, String> {
    let b64 = raw.trim().strip_prefix("whsec_").unwrap_or(raw.trim());
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "must be whsec_ followed by base64".to_owned())?;
    if key.len() < 16 {
        return Err("must hold at least 16 bytes of key".into());
    }
    Ok(key)
}

/// The event id of a step attempt's final state: the same for every retry of its delivery, so
/// receivers deduplicate by it.
pub fn event_id(task: &TaskId, step: Step, attempt: u32) -> String {
    let name = format!("{}/{}/{attempt}", task.as_str(), step.as_str());
    format!(
        "msg_{}",
        Uuid::new_v5(&WEBHOOK_NAMESPACE, name.as_bytes()).simple()
    )
}

/// What is signed: `"{id}.{timestamp}.{body}"`.
pub fn signed_content(id: &str, timestamp_s: u64, body: &str) -> String {
    format!("{id}.{timestamp_s}.{body}")
}

/// The `webhook-signature` header of an HMAC-SHA256 `mac`.
pub fn signature_header(mac: &[u8]) -> String {
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

/// What an answer of the receiver means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx: done.
    Delivered,
    /// A 4xx other than 408/429, or a redirect (3xx: never followed, the URL is the one the
    /// client gave — following it would send the worker to any host): the receiver refuses it;
    /// retrying will not help.
    Refused,
    /// Anything else (no answer, timeout, 408, 429, 5xx, 1xx): try again later.
    Retry,
}

/// Classifies a delivery's HTTP status (`None`: no answer).
pub fn classify(status: Option<u16>) -> Delivery {
    match status {
        Some(200..=299) => Delivery::Delivered,
        Some(408 | 429) => Delivery::Retry,
        Some(300..=499) => Delivery::Refused,
        _ => Delivery::Retry,
    }
}

/// The delay before try `try_no + 1` (`try_no` ≥ 1): 5 s doubling to an hour, with jitter in
/// `[½, 1]` of it (`random` in `[0, 1)`).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // at most an hour, positive
pub fn retry_delay_s(try_no: u32, random: f64) -> u32 {
    let base = FIRST_RETRY_DELAY_S
        .saturating_mul(1u32 << try_no.saturating_sub(1).min(20))
        .min(MAX_RETRY_DELAY_S);
    let jitter = 0.5 + 0.5 * random.clamp(0.0, 1.0);
    ((f64::from(base) * jitter).ceil() as u32).max(1)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// The HMAC the runtime computes with WebCrypto.
    pub fn hmac_sha256(key: &[u8], content: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(content.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    #[test]
    fn standard_webhooks_test_vector() {
        // From the Standard Webhooks reference libraries' tests.
        let key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let content = signed_content(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(
            signature_header(&hmac_sha256(&key, &content)),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            check_url("https://Hooks.Example.com/a?b=1").unwrap(),
            "hooks.example.com"
        );
        assert_eq!(check_url("http://127.0.0.1:9000/x").unwrap(), "127.0.0.1");
        assert_eq!(check_url("http://localhost:9/x").unwrap(), "localhost");
        assert_eq!(check_url("http://[::1]:9/x").unwrap(), "[::1]");
        assert_eq!(check_url("http://example.com/x"), Err(UrlError::Scheme));
        assert_eq!(
            check_url("http://127.0.0.1.evil.com/"),
            Err(UrlError::Scheme)
        );
        assert_eq!(check_url("ftp://example.com/"), Err(UrlError::Scheme));
        assert_eq!(check_url("https://u:p@example.com/"), Err(UrlError::Shape));
        assert_eq!(check_url("https:///x"), Err(UrlError::Shape));
        assert_eq!(check_url("example.com"), Err(UrlError::Shape));
        assert_eq!(check_url("https://a.com:x/"), Err(UrlError::Shape));
        assert_eq!(
            check_url(&format!("https://a.com/{}", "a".repeat(3000))),
            Err(UrlError::TooLong)
        );
        let allowed = parse_allowed_hosts(" Hooks.example.com ,127.0.0.1,");
        assert_eq!(allowed, ["hooks.example.com", "127.0.0.1"]);
        assert!(check_allowed("https://hooks.example.com/x", &allowed).is_ok());
        assert_eq!(
            check_allowed("https://other.example.com/x", &allowed),
            Err(UrlError::HostNotAllowed("other.example.com".into()))
        );
        assert_eq!(
            check_allowed("https://a.com/", &[]),
            Err(UrlError::Disabled)
        );
    }

    #[test]
    fn the_openapi_pattern_names_the_allowed_hosts() {
        assert_eq!(url_pattern(&[]), None);
        let p = url_pattern(&parse_allowed_hosts("a.io,127.0.0.1")).unwrap();
        assert_eq!(
            p,
            "^(?:[Hh][Tt][Tt][Pp][Ss]://(?:[aA]\\.[iI][oO]|127\\.0\\.0\\.1)|[Hh][Tt][Tt][Pp]://(?:127\\.0\\.0\\.1))(?::[0-9]+)?(?:[/?#]\\S*)?$"
        );
    }

    #[test]
    fn answers_and_delays() {
        assert_eq!(classify(Some(204)), Delivery::Delivered);
        assert_eq!(classify(Some(410)), Delivery::Refused);
        assert_eq!(classify(Some(408)), Delivery::Retry);
        assert_eq!(classify(Some(429)), Delivery::Retry);
        assert_eq!(classify(Some(500)), Delivery::Retry);
        // A redirect is not followed and not retried: the URL is wrong (or hostile).
        for redirect in [301, 302, 303, 307, 308] {
            assert_eq!(classify(Some(redirect)), Delivery::Refused);
        }
        assert_eq!(classify(None), Delivery::Retry);
        assert_eq!(retry_delay_s(1, 0.999_999), 5);
        assert_eq!(retry_delay_s(1, 0.0), 3);
        assert_eq!(retry_delay_s(3, 0.999_999), 20);
        assert_eq!(retry_delay_s(30, 0.999_999), 3600);
        let id = event_id(&TaskId::parse("t-1").unwrap(), Step::Model, 1);
        assert_eq!(id, event_id(&TaskId::parse("t-1").unwrap(), Step::Model, 1));
        assert_ne!(id, event_id(&TaskId::parse("t-1").unwrap(), Step::Model, 2));
        assert!(id.starts_with("msg_") && id.len() == 36);
        assert!(parse_secret("whsec_c2hvcnQ=").is_err());
        assert!(parse_secret("nope!").is_err());
    }
}
