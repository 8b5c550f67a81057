//! OpenAI Images: `POST {OPENAI_BASE_URL}/images/edits` (multipart, built by `core::openai`).

use worker::Method;

use crate::core::config::Config;
use crate::core::error::Dependency;
use crate::core::openai::{edit_multipart_around, failure, EditRequest};
use crate::core::retry::{Failure, RetryHints};
use crate::core::tripo::{boundary, multipart_content_type, ImageFormat};
use crate::net::{self, Body, Reply};

/// Image edits can take minutes for several large images.
pub const TIMEOUT_MS: u64 = 5 * 60_000;

fn hint_ms(reply: &Reply) -> Option<u64> {
    let ra = reply.header("retry-after");
    let ram = reply.header("retry-after-ms");
    let rr = reply.header("x-ratelimit-reset-requests");
    let rt = reply.header("x-ratelimit-reset-tokens");
    RetryHints {
        retry_after: ra.as_deref(),
        retry_after_ms: ram.as_deref(),
        reset_requests: rr.as_deref(),
        reset_tokens: rt.as_deref(),
    }
    .min_delay_ms(reply.status, net::now_ms())
}

/// Calls images/edits; on success the reply with its body unread (JSON with `b64_json`
/// images: read it in chunks with `core::openai::ReplyScanner`, never whole). The input is
/// taken by value: it is copied into the JS request body between the multipart head and tail
/// and dropped before the reply is awaited, so it is never held twice nor alongside the reply.
/// An error reply is read up to 64 KiB.
pub async fn edit(
    cfg: &Config,
    req: &EditRequest,
    image: Vec<u8>,
    format: ImageFormat,
) -> Result<worker::Response, Failure> {
    let b = boundary(net::random_u128());
    let (head, tail) = edit_multipart_around(&b, req, format);
    let body = Body::Parts(vec![head, image, tail]);
    let url = format!("{}/images/edits", cfg.openai_base_url);
    let auth = format!("Bearer {}", cfg.openai_api_key);
    let ct = multipart_content_type(&b);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", ct.as_str()),
    ];
    let net_failure = |e: net::NetError| match e {
        net::NetError::Timeout(ms) => {
            Failure::timeout(Dependency::OpenAi, &format!("no answer in {ms} ms"))
        }
        other => Failure::network(Dependency::OpenAi, &other.to_string()),
    };
    let resp = net::send_streaming(Method::Post, &url, &headers, body, TIMEOUT_MS)
        .await
        .map_err(net_failure)?;
    if (200..300).contains(&resp.status_code()) {
        return Ok(resp);
    }
    let reply = net::into_small_reply(resp, net::SMALL_BODY_LIMIT)
        .await
        .map_err(net_failure)?;
    Err(failure(reply.status, &reply.text(), hint_ms(&reply)))
}
