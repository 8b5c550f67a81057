//! Tripo's signed v3 webhooks (providers.md §1.10), pure: the secret's form, the
//! `Tripo-Webhook-Signature` header, the replay window, the comparison, the delivery id and the
//! event body. The HMAC itself is computed by the runtime's WebCrypto
//! (`auth::webcrypto::hmac_sha256`, as for the JWTs and our own webhooks), so no crypto crate
//! enters the WebAssembly bundle; the native tests compute it with the `hmac` dev-dependency.
//!
//! The scheme [T11 `webhook.rs`, T10]: `Tripo-Webhook-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`,
//! `v1 = lowercase_hex(HMAC-SHA256(key = the whole "whsec_…" secret as UTF-8,
//! msg = "<t>.<raw body>"))`, every `v1` tried (secret rotation), ±5 minutes. Deliveries carry
//! `Tripo-Webhook-Delivery` (unique per delivery: the deduplication key) and
//! `Tripo-Webhook-Event`; the body is `{"id","type","created_at","data":{…task…}}`, a failure
//! with `data.error = {code, message}`.

use serde_json::Value;

use super::tripo::{TaskDetail, TaskStatus, WireError};
use super::tripo_v3::v3_task_from_data;

/// The signature header (lower case: how the runtime's `Headers` hands names back).
pub const HEADER_SIGNATURE: &str = "tripo-webhook-signature";
/// The delivery id header: unique per delivery, the same on a redelivery of it.
pub const HEADER_DELIVERY: &str = "tripo-webhook-delivery";
/// The event type header (same as the body's `type`).
pub const HEADER_EVENT: &str = "tripo-webhook-event";
/// Accepted distance between the signed timestamp and now, either way.
pub const TOLERANCE_S: u64 = 5 * 60;
/// Largest body accepted (a task object with a few URLs is a few KB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest delivery id kept (logged and compared).
const MAX_DELIVERY_CHARS: usize = 128;
/// Shortest secret after `whsec_` accepted.
const MIN_SECRET_CHARS: usize = 16;

/// Checks `TRIPO_WEBHOOK_SECRET`: `whsec_` then at least 16 visible ASCII characters. The whole
/// string (prefix included) is the HMAC key. The problem never quotes the value.
pub fn parse_secret(s: &str) -> Result<String, String> {
    let s = s.trim();
    let Some(rest) = s.strip_prefix("whsec_") else {
        return Err("must be the whsec_… signing secret from Tripo's console".into());
    };
    if rest.chars().count() < MIN_SECRET_CHARS || !rest.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "must be whsec_ followed by at least {MIN_SECRET_CHARS} visible characters"
        ));
    }
    Ok(s.to_owned())
}

/// Why a delivery was refused (answered 401). Never quotes the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Tripo-Webhook-Signature header")]
    Missing,
    #[error("malformed Tripo-Webhook-Signature header")]
    Malformed,
    #[error("the signature header has no t=")]
    NoTimestamp,
    #[error("the signature header has no v1=")]
    NoSignature,
    #[error("the signed timestamp is {0} s away from now (more than {TOLERANCE_S} s): refused as a replay")]
    OutsideTolerance(u64),
    #[error("no v1 signature matches")]
    Mismatch,
}

/// A parsed `t=…,v1=…` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `t` verbatim (it is part of the signed content).
    timestamp: String,
    unix_s: u64,
    /// Every well-formed `v1` (64 lower-case hex digits), decoded.
    v1: Vec<[u8; 32]>,
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Lower-case hex of a MAC (the fake and the tests sign with it).
pub fn hex(mac: &[u8]) -> String {
    use std::fmt::Write;
    mac.iter()
        .fold(String::with_capacity(mac.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl Signature {
    /// Parses the header. Unknown keys are ignored; a repeated `t` is malformed.
    pub fn parse(header: Option<&str>) -> Result<Signature, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        if header.len() > 4096 {
            return Err(SignatureError::Malformed);
        }
        let mut timestamp: Option<&str> = None;
        let mut v1 = Vec::new();
        let mut any_v1 = false;
        for part in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or(SignatureError::Malformed)?;
            match k.trim() {
                "t" if timestamp.is_some() => return Err(SignatureError::Malformed),
                "t" => timestamp = Some(v.trim()),
                "v1" => {
                    any_v1 = true;
                    if let Some(mac) = decode_hex32(v.trim()) {
                        v1.push(mac);
                    }
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::NoTimestamp)?;
        let unix_s = timestamp
            .parse::<u64>()
            .map_err(|_| SignatureError::Malformed)?;
        if !any_v1 {
            return Err(SignatureError::NoSignature);
        }
        Ok(Signature {
            timestamp: timestamp.to_owned(),
            unix_s,
            v1,
        })
    }

    /// The bytes the HMAC covers: `"<t>.<raw body>"`.
    pub fn signed_content(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.timestamp.len() + 1 + body.len());
        out.extend_from_slice(self.timestamp.as_bytes());
        out.push(b'.');
        out.extend_from_slice(body);
        out
    }

    /// Refuses a timestamp more than [`TOLERANCE_S`] from `now_s` (a replay, or a clock gone).
    pub fn check_time(&self, now_s: u64) -> Result<(), SignatureError> {
        let gap = now_s.abs_diff(self.unix_s);
        if gap > TOLERANCE_S {
            Err(SignatureError::OutsideTolerance(gap))
        } else {
            Ok(())
        }
    }

    /// Whether one `v1` equals `mac` (the HMAC of [`Signature::signed_content`]); each
    /// comparison takes the same time whatever the bytes.
    pub fn matches(&self, mac: &[u8]) -> Result<(), SignatureError> {
        let hit = self.v1.iter().fold(false, |hit, sig| {
            let same = mac.len() == sig.len()
                && sig.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            hit | same
        });
        if hit {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// The signed timestamp (unix seconds).
    pub fn unix_s(&self) -> u64 {
        self.unix_s
    }
}

/// The delivery id for deduplication and logs: trimmed, at most 128 visible ASCII characters;
/// `None` when absent or unusable.
pub fn delivery_id(header: Option<&str>) -> Option<String> {
    let v = header?.trim();
    (!v.is_empty()
        && v.chars().count() <= MAX_DELIVERY_CHARS
        && v.chars().all(|c| c.is_ascii_graphic()))
    .then(|| v.to_owned())
}

/// The kind of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    TaskCompleted,
    TaskFailed,
    /// `balance.low` and anything newer: acknowledged, not acted on.
    Other(String),
}

impl EventKind {
    pub fn parse(s: &str) -> EventKind {
        match s {
            "task.completed" => EventKind::TaskCompleted,
            "task.failed" => EventKind::TaskFailed,
            other => EventKind::Other(other.chars().take(64).collect()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            EventKind::TaskCompleted => "task.completed",
            EventKind::TaskFailed => "task.failed",
            EventKind::Other(s) => s,
        }
    }
}

/// A verified delivery's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The task's final detail (task events only), in the same form a poll gives.
    pub task: Option<TaskDetail>,
}

/// Parses a (verified) body. A task event must carry a task object with a plain `task_id`;
/// its `status` defaults to the event's (`success` / `failed`); `data.error = {code, message}`
/// fills `error_code` (when a number) and `error_msg`.
pub fn parse_event(body: &[u8]) -> Result<Event, WireError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| WireError::Malformed("the webhook body is not JSON".into()))?;
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .map(EventKind::parse)
        .ok_or_else(|| WireError::Malformed("no `type` in the webhook body".into()))?;
    let default_status = match kind {
        EventKind::TaskCompleted => "success",
        EventKind::TaskFailed => "failed",
        EventKind::Other(_) => return Ok(Event { kind, task: None }),
    };
    let mut data = match v.get("data") {
        Some(d @ Value::Object(_)) => d.clone(),
        _ => return Err(WireError::Malformed("no `data` object".into())),
    };
    if let Value::Object(m) = &mut data {
        if !m.get("status").is_some_and(Value::is_string) {
            m.insert("status".into(), Value::from(default_status));
        }
    }
    let mut task = v3_task_from_data(&data)?;
    if !super::tripo::is_plain_id(&task.task_id) {
        return Err(WireError::Malformed(
            "`data.task_id` is not a plain id".into(),
        ));
    }
    if let Some(err) = data.get("error").filter(|e| e.is_object()) {
        if task.error_code.is_none() {
            task.error_code = err.get("code").and_then(Value::as_i64);
        }
        if task.error_msg.is_none() {
            task.error_msg = err
                .get("message")
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned);
        }
    }
    // A task event names a final task: a `task.failed` cannot report success.
    if kind == EventKind::TaskFailed && task.status == TaskStatus::Success {
        task.status = TaskStatus::Failed;
    }
    Ok(Event {
        kind,
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    const SECRET: &str = "whsec_test_0123456789abcdef";

    fn mac(secret: &str, content: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        m.update(content);
        m.finalize().into_bytes().to_vec()
    }

    fn header(secret: &str, t: u64, body: &[u8]) -> String {
        let mut content = format!("{t}.").into_bytes();
        content.extend_from_slice(body);
        format!("t={t},v1={}", hex(&mac(secret, &content)))
    }

    /// The whole check as the worker makes it (the MAC from WebCrypto there).
    fn verify(
        secret: &str,
        h: Option<&str>,
        body: &[u8],
        now_s: u64,
    ) -> Result<(), SignatureError> {
        let sig = Signature::parse(h)?;
        sig.check_time(now_s)?;
        sig.matches(&mac(secret, &sig.signed_content(body)))
    }

    #[test]
    fn secrets_must_have_the_whsec_form() {
        assert_eq!(parse_secret(&format!(" {SECRET} ")), Ok(SECRET.to_owned()));
        assert!(parse_secret("0123456789abcdef0123").is_err());
        assert!(parse_secret("whsec_short").is_err());
        assert!(parse_secret("whsec_has a space in it!!").is_err());
        let e = parse_secret("whsec_x").unwrap_err();
        assert!(!e.contains("whsec_x"), "the problem never quotes the value");
    }

    #[test]
    fn a_good_signature_verifies_and_anything_else_is_refused() {
        let body = br#"{"type":"task.completed","data":{"task_id":"t-1"}}"#;
        let now = 1_800_000_000;
        let h = header(SECRET, now, body);
        assert_eq!(verify(SECRET, Some(&h), body, now), Ok(()));
        assert_eq!(verify(SECRET, Some(&h), body, now + 300), Ok(()));
        assert_eq!(verify(SECRET, Some(&h), body, now - 300), Ok(()));
        // Replays outside ±5 min.
        assert_eq!(
            verify(SECRET, Some(&h), body, now + 301),
            Err(SignatureError::OutsideTolerance(301))
        );
        assert_eq!(
            verify(SECRET, Some(&h), body, now - 3600),
            Err(SignatureError::OutsideTolerance(3600))
        );
        // Another secret, another body, another timestamp.
        assert_eq!(
            verify("whsec_other_0123456789abcdef", Some(&h), body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some(&h), b"{}", now),
            Err(SignatureError::Mismatch)
        );
        let moved = h.replacen(&format!("t={now}"), &format!("t={}", now + 1), 1);
        assert_eq!(
            verify(SECRET, Some(&moved), body, now),
            Err(SignatureError::Mismatch)
        );
        // Upper-case hex is not what Tripo sends: refused.
        let upper = format!(
            "t={now},v1={}",
            h.split("v1=").nth(1).unwrap().to_uppercase()
        );
        assert_eq!(
            verify(SECRET, Some(&upper), body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, None, body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some("v1=abc"), body, now),
            Err(SignatureError::NoTimestamp)
        );
        assert_eq!(
            verify(SECRET, Some(&format!("t={now}")), body, now),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            verify(SECRET, Some("t=1,t=2,v1=00"), body, now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some("garbage"), body, now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn any_of_several_v1_signatures_may_match() {
        let body = b"{}";
        let now = 1_800_000_000;
        let good = header(SECRET, now, body);
        let good_sig = good.split("v1=").nth(1).unwrap();
        let old = header("whsec_rotated_out_0123456789", now, body);
        let old_sig = old.split("v1=").nth(1).unwrap();
        let h = format!("t={now},v1={old_sig},v1=nothex,v1={good_sig},x=ignored");
        assert_eq!(verify(SECRET, Some(&h), body, now), Ok(()));
        let h = format!("t={now}, v1={old_sig}");
        assert_eq!(
            verify(SECRET, Some(&h), body, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn delivery_ids_are_bounded() {
        assert_eq!(delivery_id(Some(" dlv_1 ")), Some("dlv_1".into()));
        assert_eq!(delivery_id(Some("")), None);
        assert_eq!(delivery_id(None), None);
        assert_eq!(delivery_id(Some("a b")), None);
        assert_eq!(delivery_id(Some(&"x".repeat(129))), None);
    }

    #[test]
    fn task_events_parse_into_a_task_detail() {
        let ok = br#"{"id":"t-1:task.completed","type":"task.completed","created_at":"2026-05-06T12:00:00Z",
            "data":{"task_id":"t-1","type":"text_to_model","status":"success",
            "output":{"model_url":"https://cdn/m.glb"}}}"#;
        let e = parse_event(ok).unwrap();
        assert_eq!(e.kind, EventKind::TaskCompleted);
        let t = e.task.unwrap();
        assert_eq!(t.task_id, "t-1");
        assert_eq!(t.status, TaskStatus::Success);
        assert_eq!(t.output.model.as_deref(), Some("https://cdn/m.glb"));

        let failed = br#"{"id":"t-2:task.failed","type":"task.failed","created_at":"x",
            "data":{"task_id":"t-2","type":"image_to_model","error":{"code":2008,"message":"policy"}}}"#;
        let t = parse_event(failed).unwrap().task.unwrap();
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(t.error_code, Some(2008));
        assert_eq!(t.error_msg.as_deref(), Some("policy"));
        // A string code (T11's fixture) keeps the message only.
        let failed = br#"{"type":"task.failed","data":{"task_id":"t-3","status":"cancelled",
            "error":{"code":"task_failed","message":"cancelled by user"}}}"#;
        let t = parse_event(failed).unwrap().task.unwrap();
        assert_eq!(t.status, TaskStatus::Cancelled);
        assert_eq!(t.error_code, None);

        let low = br#"{"type":"balance.low","data":{"balance":3.0,"threshold":10.0}}"#;
        let e = parse_event(low).unwrap();
        assert_eq!(e.kind, EventKind::Other("balance.low".into()));
        assert!(e.task.is_none());

        for bad in [
            &b"not json"[..],
            br#"{"data":{}}"#,
            br#"{"type":"task.completed"}"#,
            br#"{"type":"task.completed","data":{"task_id":"../x","status":"success"}}"#,
            br#"{"type":"task.completed","data":{"status":"success"}}"#,
        ] {
            assert!(
                parse_event(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
