//! Fault-injection directives: parsing `[[fake:...]]` out of prompts and file bytes, merging
//! them with the rules registered through `POST /__fake/directives`, and the per-directive
//! counters behind `openai_429=N`, `create_2000=N`, `poll_5xx=N`, ... . The grammar is
//! documented in the crate's top comment.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::util::find_bytes;

const OPEN: &[u8] = b"[[fake:";
const CLOSE: &[u8] = b"]]";

/// What a directive key accepts as its value.
#[derive(Clone, Copy)]
enum Kind {
    /// No value: `moderation`.
    Flag,
    /// A non-negative integer: `openai_429=2`.
    Count,
    /// Non-negative seconds, fractions allowed: `run_s=0.5`.
    Secs,
    /// Any non-empty text: `nonce=abc`.
    Text,
    /// An integer, possibly negative: `error_code=2008`.
    Int,
    /// One of the Tripo final statuses.
    Final,
    /// Integers 0–99 separated by `/`: `progress=5/20/45`.
    Plan,
}

/// Every key the fakes understand. Anything else is rejected so that a typo in a test fails
/// loudly instead of silently injecting nothing.
const KEYS: &[(&str, Kind)] = &[
    ("nonce", Kind::Text),
    ("retry_after", Kind::Count),
    ("slow_ms", Kind::Count),
    ("moderation", Kind::Flag),
    // OpenAI
    ("openai_429", Kind::Count),
    ("openai_500", Kind::Count),
    ("invalid_key", Kind::Flag),
    ("quota", Kind::Flag),
    ("openai_delay_ms", Kind::Count),
    ("invalid_image", Kind::Flag),
    ("image_bytes", Kind::Count),
    // Tripo
    ("create_2000", Kind::Count),
    ("create_5xx", Kind::Count),
    ("no_credits", Kind::Flag),
    ("final", Kind::Final),
    ("error_code", Kind::Int),
    ("queue_s", Kind::Secs),
    ("run_s", Kind::Secs),
    ("poll_5xx", Kind::Count),
    ("glb_bytes", Kind::Count),
    ("no_left_time", Kind::Flag),
    ("url_ttl_s", Kind::Secs),
    ("progress", Kind::Plan),
    ("no_limit", Kind::Flag),
    // Tripo v3 webhooks (tripo/v3.rs)
    ("webhook_drop", Kind::Flag),
    ("webhook_dup", Kind::Count),
    ("webhook_reorder", Kind::Flag),
    ("webhook_bad_sig", Kind::Flag),
    ("webhook_delay_ms", Kind::Count),
];

/// The Tripo final statuses a task can be scripted to end in.
pub const FINAL_STATUSES: &[&str] = &[
    "success",
    "failed",
    "banned",
    "expired",
    "cancelled",
    "unknown",
];

/// A parsed directive: its full text (the key of its counters) and its `key[=value]` items.
#[derive(Clone, Debug, PartialEq)]
pub struct Directive {
    text: String,
    items: Vec<(String, Option<String>)>,
}

impl Directive {
    /// Parses the inside of `[[fake:...]]` (the wrapper itself is accepted and stripped).
    pub fn parse(raw: &str) -> Result<Directive, String> {
        let mut inner = raw.trim();
        if let Some(rest) = inner.strip_prefix("[[fake:") {
            inner = rest.strip_suffix("]]").unwrap_or(rest).trim();
        }
        let mut items: Vec<(String, Option<String>)> = Vec::new();
        for item in inner.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
                None => (item, None),
            };
            let kind = KEYS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, kind)| *kind)
                .ok_or_else(|| format!("unknown directive key '{key}' in [[fake:{inner}]]"))?;
            check_value(key, kind, value.as_deref())?;
            if items.iter().any(|(k, _)| k == key) {
                return Err(format!(
                    "directive key '{key}' repeated in [[fake:{inner}]]"
                ));
            }
            items.push((key.to_string(), value));
        }
        if items.is_empty() {
            return Err("empty directive [[fake:]]".to_string());
        }
        Ok(Directive {
            text: inner.to_string(),
            items,
        })
    }

    /// The directive's full text; counters are keyed by it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `key` is present (with or without a value).
    pub fn has(&self, key: &str) -> bool {
        self.items.iter().any(|(k, _)| k == key)
    }

    /// The raw value of `key`.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The integer value of a count key (validated at parse time).
    pub fn count(&self, key: &str) -> Option<u64> {
        self.value(key).and_then(|v| v.parse().ok())
    }

    /// The value of a seconds key (validated at parse time).
    pub fn secs(&self, key: &str) -> Option<f64> {
        self.value(key).and_then(|v| v.parse().ok())
    }

    /// The values of a plan key (validated at parse time): `progress=5/20/45` → `[5, 20, 45]`.
    pub fn plan(&self, key: &str) -> Option<Vec<i64>> {
        self.value(key)
            .map(|v| v.split('/').filter_map(|p| p.trim().parse().ok()).collect())
    }

    /// The value of an integer key (validated at parse time).
    pub fn int(&self, key: &str) -> Option<i64> {
        self.value(key).and_then(|v| v.parse().ok())
    }

    /// Merges directives: the first occurrence of each key wins; texts are joined with ` | `.
    pub fn merge(list: Vec<Directive>) -> Option<Directive> {
        let mut iter = list.into_iter();
        let mut merged = iter.next()?;
        for d in iter {
            if d.text == merged.text {
                continue;
            }
            merged.text = format!("{} | {}", merged.text, d.text);
            for (k, v) in d.items {
                if !merged.has(&k) {
                    merged.items.push((k, v));
                }
            }
        }
        Some(merged)
    }
}

fn check_value(key: &str, kind: Kind, value: Option<&str>) -> Result<(), String> {
    let bad = |what: &str| Err(format!("directive key '{key}' {what}"));
    match (kind, value) {
        (Kind::Flag, None) => Ok(()),
        (Kind::Flag, Some(_)) => bad("takes no value"),
        (_, None) => bad("needs a value (key=value)"),
        (Kind::Count, Some(v)) => match v.parse::<u64>() {
            Ok(_) => Ok(()),
            Err(_) => bad("needs a non-negative integer"),
        },
        (Kind::Secs, Some(v)) => match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(()),
            _ => bad("needs non-negative seconds"),
        },
        (Kind::Int, Some(v)) => match v.parse::<i64>() {
            Ok(_) => Ok(()),
            Err(_) => bad("needs an integer"),
        },
        (Kind::Text, Some(v)) => {
            if v.is_empty() {
                bad("needs a non-empty value")
            } else {
                Ok(())
            }
        }
        (Kind::Plan, Some(v)) => {
            let ok = v
                .split('/')
                .all(|p| p.trim().parse::<i64>().is_ok_and(|n| (0..=99).contains(&n)));
            if ok && !v.is_empty() {
                Ok(())
            } else {
                bad("needs integers 0-99 separated by '/'")
            }
        }
        (Kind::Final, Some(v)) => {
            if FINAL_STATUSES.contains(&v) {
                Ok(())
            } else {
                bad("must be one of success|failed|banned|expired|cancelled|unknown")
            }
        }
    }
}

/// Every `[[fake:...]]` in `text`, merged in order of appearance.
pub fn scan_text(text: &str) -> Result<Option<Directive>, String> {
    scan_bytes(text.as_bytes())
}

/// Every `[[fake:...]]` in `bytes` (e.g. a PNG `tEXt` chunk), merged in order of appearance.
pub fn scan_bytes(bytes: &[u8]) -> Result<Option<Directive>, String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = find_bytes(bytes, OPEN, from) {
        let body = start + OPEN.len();
        let end = find_bytes(bytes, CLOSE, body)
            .ok_or_else(|| "unterminated [[fake: directive (missing ]])".to_string())?;
        let inner = std::str::from_utf8(&bytes[body..end])
            .map_err(|_| "directive [[fake:...]] is not UTF-8".to_string())?;
        found.push(Directive::parse(inner)?);
        from = end + CLOSE.len();
    }
    Ok(Directive::merge(found))
}

/// "First N calls" counters, keyed by a scope string (usually `<directive text>#<key>`).
#[derive(Default)]
pub(crate) struct Counters {
    used: Mutex<HashMap<String, u64>>,
}

impl Counters {
    /// Consumes one use of `scope` if fewer than `limit` were used; returns whether it fired.
    pub fn take(&self, scope: &str, limit: u64) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let n = used.entry(scope.to_string()).or_insert(0);
        if *n < limit {
            *n += 1;
            true
        } else {
            false
        }
    }

    /// Fires `directive`'s count key `key` (`openai_429=N` ...) for this call if uses remain.
    pub fn fire(&self, directive: Option<&Directive>, key: &str) -> bool {
        match directive.and_then(|d| d.count(key).map(|n| (d, n))) {
            Some((d, n)) => self.take(&format!("{}#{key}", d.text()), n),
            None => false,
        }
    }
}

/// A rule registered through `POST /__fake/directives`.
#[derive(Clone)]
struct Rule {
    id: u64,
    needle: String,
    directive: Directive,
}

/// The rules registered through the control route, applied to any request whose prompt,
/// body or uploaded file contains the rule's substring.
#[derive(Default)]
pub(crate) struct MatchRules {
    rules: Mutex<(u64, Vec<Rule>)>,
}

impl MatchRules {
    /// Registers a rule; returns its id.
    pub fn add(&self, needle: &str, directive: Directive) -> Result<u64, String> {
        if needle.is_empty() {
            return Err("'match' must not be empty".to_string());
        }
        let mut g = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let id = g.0;
        g.1.push(Rule {
            id,
            needle: needle.to_string(),
            directive,
        });
        Ok(id)
    }

    /// Removes a rule; returns whether it existed.
    pub fn remove(&self, id: u64) -> bool {
        let mut g = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let before = g.1.len();
        g.1.retain(|r| r.id != id);
        g.1.len() != before
    }

    /// The rules as JSON, for `GET /__fake/directives`.
    pub fn list(&self) -> Value {
        let g = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        Value::Array(
            g.1.iter()
                .map(|r| json!({"id": r.id, "match": r.needle, "directive": r.directive.text()}))
                .collect(),
        )
    }

    /// The directives of every rule whose substring occurs in `hay`, in registration order.
    pub fn matching(&self, hay: &[u8]) -> Vec<Directive> {
        let g = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        g.1.iter()
            .filter(|r| crate::util::contains_bytes(hay, r.needle.as_bytes()))
            .map(|r| r.directive.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_items_and_wrapper() {
        let d =
            Directive::parse("[[fake:openai_429=2, retry_after=1,moderation,nonce=abc]]").unwrap();
        assert_eq!(d.text(), "openai_429=2, retry_after=1,moderation,nonce=abc");
        assert_eq!(d.count("openai_429"), Some(2));
        assert_eq!(d.count("retry_after"), Some(1));
        assert!(d.has("moderation"));
        assert_eq!(d.value("nonce"), Some("abc"));
        assert!(!d.has("quota"));
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        assert!(Directive::parse("openai429=2")
            .unwrap_err()
            .contains("openai429"));
        assert!(Directive::parse("openai_429").is_err());
        assert!(Directive::parse("openai_429=x").is_err());
        assert!(Directive::parse("moderation=1").is_err());
        assert!(Directive::parse("final=exploded").is_err());
        assert!(Directive::parse("run_s=-1").is_err());
        assert_eq!(
            Directive::parse("progress=5/20/95")
                .unwrap()
                .plan("progress"),
            Some(vec![5, 20, 95])
        );
        assert!(Directive::parse("progress=5/100").is_err());
        assert!(Directive::parse("progress=a").is_err());
        assert!(Directive::parse("").is_err());
        assert!(Directive::parse("quota,quota").is_err());
        assert_eq!(
            Directive::parse("run_s=0.25").unwrap().secs("run_s"),
            Some(0.25)
        );
        assert_eq!(
            Directive::parse("error_code=-3").unwrap().int("error_code"),
            Some(-3)
        );
    }

    #[test]
    fn scans_text_and_bytes_and_merges() {
        assert_eq!(scan_text("a plain prompt").unwrap(), None);
        let d = scan_text("a cat [[fake:run_s=1,nonce=x]] and [[fake:run_s=9,final=failed]]")
            .unwrap()
            .unwrap();
        assert_eq!(d.secs("run_s"), Some(1.0));
        assert_eq!(d.value("final"), Some("failed"));
        assert_eq!(d.text(), "run_s=1,nonce=x | run_s=9,final=failed");
        let mut bytes = vec![0u8, 0xff, 0x89];
        bytes.extend_from_slice(b"tEXtComment\0[[fake:moderation]]");
        bytes.push(0xfe);
        assert!(scan_bytes(&bytes).unwrap().unwrap().has("moderation"));
        assert!(scan_text("[[fake:moderation").is_err());
        assert!(scan_text("[[fake:bogus]]").is_err());
    }

    #[test]
    fn counters_fire_first_n_per_directive_text() {
        let c = Counters::default();
        let a = Directive::parse("openai_429=2,nonce=a").unwrap();
        let b = Directive::parse("openai_429=2,nonce=b").unwrap();
        assert!(c.fire(Some(&a), "openai_429"));
        assert!(c.fire(Some(&b), "openai_429"));
        assert!(c.fire(Some(&a), "openai_429"));
        assert!(!c.fire(Some(&a), "openai_429"));
        assert!(c.fire(Some(&b), "openai_429"));
        assert!(!c.fire(Some(&b), "openai_429"));
        assert!(!c.fire(Some(&a), "openai_500"));
        assert!(!c.fire(None, "openai_429"));
    }

    #[test]
    fn match_rules_match_substrings() {
        let r = MatchRules::default();
        let id = r
            .add("needle-1", Directive::parse("quota").unwrap())
            .unwrap();
        assert_eq!(r.matching(b"xx needle-1 yy").len(), 1);
        assert!(r.matching(b"needle-2").is_empty());
        assert!(r.remove(id));
        assert!(!r.remove(id));
        assert!(r.matching(b"needle-1").is_empty());
        assert!(r.add("", Directive::parse("quota").unwrap()).is_err());
    }
}
