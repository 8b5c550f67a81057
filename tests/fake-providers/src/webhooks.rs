//! A webhook receiver for the worker's outbound webhooks: `POST /__fake/webhooks/{channel}`
//! verifies the Standard Webhooks signature exactly as the `standardwebhooks` npm package does
//! (HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}.{body}"` with the base64 key after
//! `whsec_`, compared with each space-separated `v1,<base64>` of `webhook-signature`, timestamp
//! within 5 minutes) and records every delivery; `GET /__fake/webhooks/{channel}` lists them.
//! `PUT /__fake/webhooks/{channel}` `{"secret":"whsec_…","fail":["500","timeout",…]}` sets the
//! channel's secret and the answers of its next deliveries (`"500"`/any status: that status;
//! `"timeout"`: no answer for 15 s, then 200; `"redirect:<url>"`: 307 to that URL); later
//! deliveries get 204.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// One delivery as received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    /// Whether the signature verified.
    pub valid: bool,
    /// What the receiver answered (`0`: it held the request past the sender's timeout).
    pub answered: u16,
}

#[derive(Default)]
struct Channel {
    secret: String,
    fail: Vec<String>,
    received: Vec<Received>,
}

fn channels() -> &'static Mutex<HashMap<String, Channel>> {
    static C: OnceLock<Mutex<HashMap<String, Channel>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The Standard Webhooks check (as `standardwebhooks`' `Webhook.verify`), `now_s` for the
/// timestamp tolerance (5 minutes either way).
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &str,
    signature: &str,
    now_s: i64,
) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (now_s - ts).abs() > 300 {
        return false;
    }
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let Ok(key) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signature
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .any(|(v, sig)| v == "v1" && sig == expected)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Deserialize)]
struct Setup {
    secret: String,
    #[serde(default)]
    fail: Vec<String>,
}

async fn configure(Path(channel): Path<String>, Json(setup): Json<Setup>) -> Response {
    let mut all = channels().lock().unwrap_or_else(|e| e.into_inner());
    let c = all.entry(channel).or_default();
    c.secret = setup.secret;
    c.fail = setup.fail;
    StatusCode::NO_CONTENT.into_response()
}

async fn list(Path(channel): Path<String>) -> Response {
    let all = channels().lock().unwrap_or_else(|e| e.into_inner());
    let received = all
        .get(&channel)
        .map(|c| c.received.clone())
        .unwrap_or_default();
    Json(received).into_response()
}

async fn receive(Path(channel): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let body = String::from_utf8_lossy(&body).into_owned();
    let plan = {
        let mut all = channels().lock().unwrap_or_else(|e| e.into_inner());
        let c = all.entry(channel).or_default();
        let valid = verify(&c.secret, &id, &timestamp, &body, &signature, now_s());
        let plan = if c.fail.is_empty() {
            None
        } else {
            Some(c.fail.remove(0))
        };
        let answered = match plan.as_deref() {
            None => 204,
            Some("timeout") => 0,
            Some(p) if p.starts_with("redirect:") => 307,
            Some(code) => code.parse().unwrap_or(500),
        };
        c.received.push(Received {
            id,
            timestamp,
            signature,
            body,
            valid,
            answered,
        });
        plan
    };
    match plan.as_deref() {
        None => StatusCode::NO_CONTENT.into_response(),
        Some("timeout") => {
            tokio::time::sleep(Duration::from_secs(15)).await;
            StatusCode::OK.into_response()
        }
        Some(p) if p.starts_with("redirect:") => (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", p.trim_start_matches("redirect:").to_owned())],
        )
            .into_response(),
        Some(code) => StatusCode::from_u16(code.parse().unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
    }
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(
        "/__fake/webhooks/{channel}",
        post(receive).get(list).put(configure),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let body = r#"{"test": 2432232314}"#;
        assert!(verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            body,
            sig,
            1_614_265_330
        ));
        assert!(!verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            "{}",
            sig,
            1_614_265_330
        ));
        assert!(!verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            body,
            sig,
            1_614_275_330
        ));
    }
}
