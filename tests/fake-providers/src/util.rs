//! Small shared helpers: clocks, hashing (FNV-1a, SplitMix64, SHA-256), byte search, bearer
//! tokens, multipart reading with file summaries for the log, and OpenAI-style durations.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Multipart;
use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// 64-bit FNV-1a: a stable, dependency-free hash for seeds.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64 finaliser: a good 64-bit mix of `x` (counter-mode pseudo-random bytes).
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether `needle` occurs in `hay` (naive search; inputs are at most a few tens of MB).
pub(crate) fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    find_bytes(hay, needle, 0).is_some()
}

/// Position of the first `needle` in `hay` at or after `from`.
pub(crate) fn find_bytes(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from.min(hay.len()));
    }
    let first = needle[0];
    let mut i = from;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|b| *b == first)
        {
            None => return None,
            Some(off) => {
                let at = i + off;
                if &hay[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(token.trim())
    } else {
        None
    }
}

/// The `Host` header (used to build absolute URLs that point back at this server).
pub(crate) fn host(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
}

/// One part of a multipart/form-data body.
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

impl Part {
    /// Whether the part was sent as a file (it has a filename).
    pub fn is_file(&self) -> bool {
        self.filename.is_some()
    }

    /// The part's text, if it is not a file and is UTF-8.
    pub fn text(&self) -> Option<&str> {
        if self.is_file() {
            None
        } else {
            std::str::from_utf8(&self.data).ok()
        }
    }
}

/// Why a multipart body could not be read.
pub(crate) enum MultipartFailure {
    /// The body exceeded the server's body limit.
    TooLarge,
    /// Any other framing problem, with the parser's message.
    Malformed(String),
}

/// Reads every part of a multipart body into memory.
pub(crate) async fn read_parts(mut mp: Multipart) -> Result<Vec<Part>, MultipartFailure> {
    let fail = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            MultipartFailure::TooLarge
        } else {
            MultipartFailure::Malformed(e.body_text())
        }
    };
    let mut parts = Vec::new();
    while let Some(field) = mp.next_field().await.map_err(fail)? {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        let data = field.bytes().await.map_err(fail)?;
        parts.push(Part {
            name,
            filename,
            content_type,
            data,
        });
    }
    Ok(parts)
}

/// The request-log view of a multipart body: text fields by value (repeated names become
/// arrays), file parts as `{filename, content_type, size, sha256}`.
pub(crate) fn summarize_parts(parts: &[Part]) -> Value {
    let mut map = Map::new();
    for p in parts {
        let v = if p.is_file() {
            json!({
                "filename": p.filename,
                "content_type": p.content_type,
                "size": p.data.len(),
                "sha256": sha256_hex(&p.data),
            })
        } else {
            Value::String(String::from_utf8_lossy(&p.data).into_owned())
        };
        let array_name = p.name.ends_with("[]");
        match map.get_mut(&p.name) {
            None => {
                let first = if array_name { Value::Array(vec![v]) } else { v };
                map.insert(p.name.clone(), first);
            }
            Some(existing) => {
                // Text values and file summaries are never arrays, so an array here is a
                // repeated field that was already collected.
                let prev = existing.take();
                *existing = match prev {
                    Value::Array(mut items) => {
                        items.push(v);
                        Value::Array(items)
                    }
                    other => Value::Array(vec![other, v]),
                };
            }
        }
    }
    Value::Object(map)
}

/// OpenAI's rate-limit reset format: `12ms`, `6s`, `1.5s`, `1m0s`.
pub(crate) fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", ms as f64 / 1000.0);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}s")
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Now as ISO-8601 UTC (`2026-05-06T12:00:00Z`), for webhook bodies.
pub(crate) fn iso_now() -> String {
    let secs = unix_now();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_bytes_finds_overlapping_prefixes() {
        assert_eq!(find_bytes(b"aaab", b"aab", 0), Some(1));
        assert_eq!(find_bytes(b"abc", b"abcd", 0), None);
        assert!(contains_bytes(b"xx[[fake:a]]", b"[[fake:"));
        assert!(!contains_bytes(b"xx[[fak", b"[[fake:"));
    }

    #[test]
    fn openai_durations_look_like_openai() {
        assert_eq!(openai_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(openai_duration(Duration::from_secs(6)), "6s");
        assert_eq!(openai_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(openai_duration(Duration::from_secs(60)), "1m0s");
    }

    #[test]
    fn hashes_are_stable() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(splitmix64(1), splitmix64(2));
    }
}
