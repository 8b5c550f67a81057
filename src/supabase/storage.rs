//! Supabase Storage calls: the submit-time proof that the caller may read each input (made with
//! the caller's rights, SPEC §4.1), bounded input downloads, output uploads (bytes for concept
//! images, a JS stream for models so no model is ever held in WebAssembly memory), signed URLs
//! of a private bucket's outputs, and the clean-up after a cancel.

use worker::Method;

use crate::core::config::Config;
use crate::core::error::{DepError, Dependency};
use crate::core::jwt::AccessToken;
use crate::core::rest::auth_headers;
use crate::core::status::StatusView;
use crate::core::storage_path::{
    encode_path, encode_segment, percent_decode, upload_url, InputObject, InputRead, ReadRights,
};
use crate::core::supabase::{proof_outcome, ProofOutcome, StorageError};
use crate::net::{self, Body, Capped, NetError, Reply};

/// Timeout of one Storage call that moves small bodies.
pub const TIMEOUT_MS: u64 = 30_000;
/// Timeout of a streamed model upload.
pub const STREAM_TIMEOUT_MS: u64 = 15 * 60_000;

#[allow(clippy::needless_pass_by_value)] // the shape of `map_err`
fn dep(e: NetError) -> DepError {
    DepError::new(Dependency::Storage, None, e.to_string())
}

fn reply_error(reply: &Reply) -> DepError {
    let e = StorageError::parse(reply.status, &reply.body);
    let mut d = DepError::new(
        Dependency::Storage,
        Some(e.status),
        format!("{} {}", e.code, e.message).trim().to_owned(),
    );
    d.retry_after_s = reply
        .header("retry-after")
        .and_then(|v| v.trim().parse().ok());
    d
}

fn headers<'a>(cfg: &'a Config, extra: &[(&'static str, &'a str)]) -> Vec<(&'static str, String)> {
    let mut h = auth_headers(&cfg.supabase_service_key);
    for (k, v) in extra {
        h.push((k, (*v).to_owned()));
    }
    h
}

fn as_refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Whose credentials a read carries.
#[derive(Debug, Clone, Copy)]
pub enum Rights<'a> {
    /// None: the public route, or a signed URL's own token.
    Anonymous,
    /// The caller's own access token (and the project's publishable key as `apikey`, when set).
    Caller(&'a AccessToken),
    /// The service key.
    Service,
}

fn read_headers(cfg: &Config, rights: Rights<'_>) -> Vec<(&'static str, String)> {
    match rights {
        Rights::Anonymous => Vec::new(),
        Rights::Caller(token) => {
            let mut h = vec![("authorization", format!("Bearer {}", token.as_str()))];
            if let Some(key) = &cfg.supabase_anon_key {
                h.push(("apikey", key.clone()));
            }
            h
        }
        Rights::Service => auth_headers(&cfg.supabase_service_key),
    }
}

/// Proves at submit that `read.rights` may read the object (SPEC §4.1): its metadata, or
/// [`ProofOutcome::Unreadable`] for a missing object and for one these rights cannot read alike.
/// Never reads an object's body: info routes answer with metadata, and the signed route is read
/// with a one-byte `Range` whose body is cancelled.
pub async fn prove_input(
    cfg: &Config,
    read: &InputRead,
    rights: Rights<'_>,
) -> Result<ProofOutcome, DepError> {
    let h = read_headers(cfg, rights);
    let mut refs = as_refs(&h);
    if read.range_probe {
        refs.push(("range", "bytes=0-0"));
    }
    let resp = net::send_streaming(Method::Get, &read.url, &refs, Body::Empty, TIMEOUT_MS)
        .await
        .map_err(dep)?;
    let limit = if read.range_probe && (200..300).contains(&resp.status_code()) {
        // The one byte asked for, or nothing at all from a server that ignored the Range.
        1
    } else {
        net::SMALL_BODY_LIMIT
    };
    let reply = net::into_small_reply(resp, limit).await.map_err(dep)?;
    match proof_outcome(reply.status, &reply.body, |n| reply.header(n)) {
        ProofOutcome::Failed(_) => Err(reply_error(&reply)),
        other => Ok(other),
    }
}

/// Downloads an input object whose proof passed at submit, through the route its URL names
/// ([`InputObject::download`]). Refused before its body is read when `Content-Length` says it
/// is over `MAX_INPUT_BYTES`, and cut off there when it has no length or lies about it, so an
/// object swapped for a larger one after the submit cannot exhaust the isolate's memory.
pub async fn download_input(
    cfg: &Config,
    obj: &InputObject,
) -> Result<(Vec<u8>, Option<String>), DepError> {
    let read = obj.download();
    let rights = match read.rights {
        ReadRights::Service => Rights::Service,
        ReadRights::Anonymous | ReadRights::Caller => Rights::Anonymous,
    };
    let h = read_headers(cfg, rights);
    let mut resp = net::send_streaming(
        Method::Get,
        &read.url,
        &as_refs(&h),
        Body::Empty,
        TIMEOUT_MS,
    )
    .await
    .map_err(dep)?;
    if !(200..300).contains(&resp.status_code()) {
        let reply = net::into_small_reply(resp, net::SMALL_BODY_LIMIT)
            .await
            .map_err(dep)?;
        return Err(reply_error(&reply));
    }
    let limit = cfg.max_input_bytes;
    let too_large = || {
        DepError::new(
            Dependency::Storage,
            Some(413),
            format!("the input object is larger than the limit of {limit} bytes"),
        )
    };
    let declared = net::content_length(resp.headers());
    if declared.is_some_and(|n| n > limit) {
        // Dropping the response cancels its body unread.
        return Err(too_large());
    }
    let ct = resp.headers().get("content-type").ok().flatten();
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match net::read_capped(&mut resp, cap).await.map_err(dep)? {
        Capped::Complete(bytes) => Ok((bytes, ct)),
        Capped::TooLarge { .. } => Err(too_large()),
    }
}

/// Uploads bytes already copied into a JS buffer (a retry sends the same buffer: no copy of it
/// stays in WebAssembly memory between tries).
pub async fn upload_array(
    cfg: &Config,
    path: &str,
    content_type: &str,
    bytes: &js_sys::Uint8Array,
) -> Result<(), DepError> {
    upload(
        cfg,
        path,
        content_type,
        None,
        Body::Array(bytes.clone()),
        TIMEOUT_MS,
    )
    .await
}

/// Uploads a JS stream to `{bucket}/{path}` without reading it into WebAssembly memory.
pub async fn upload_stream(
    cfg: &Config,
    path: &str,
    content_type: &str,
    content_length: Option<u64>,
    stream: web_sys::ReadableStream,
) -> Result<(), DepError> {
    let body = Body::Stream(stream);
    upload(
        cfg,
        path,
        content_type,
        content_length,
        body,
        STREAM_TIMEOUT_MS,
    )
    .await
}

/// `POST /storage/v1/object/{bucket}/{path}` with `x-upsert: true`.
async fn upload(
    cfg: &Config,
    path: &str,
    content_type: &str,
    content_length: Option<u64>,
    body: Body,
    timeout_ms: u64,
) -> Result<(), DepError> {
    let url = upload_url(&cfg.supabase_origin, &cfg.bucket, path);
    let len = content_length.map(|l| l.to_string());
    let mut extra = vec![
        ("content-type", content_type),
        ("x-upsert", "true"),
        ("cache-control", "max-age=3600"),
    ];
    if let Some(l) = len.as_deref() {
        extra.push(("content-length", l));
    }
    let h = headers(cfg, &extra);
    let reply = net::send(Method::Post, &url, &as_refs(&h), body, timeout_ms)
        .await
        .map_err(dep)?;
    if reply.is_success() {
        Ok(())
    } else {
        Err(reply_error(&reply))
    }
}

/// Signed GET URLs (valid `expires_in_s`) for objects of the generated-assets bucket, in the
/// order of `paths` (decoded object paths); `None` for a path Storage could not sign.
pub async fn sign_outputs(
    cfg: &Config,
    paths: &[String],
    expires_in_s: u64,
) -> Result<Vec<Option<String>>, DepError> {
    let url = format!(
        "{}/storage/v1/object/sign/{}",
        cfg.supabase_url,
        encode_segment(&cfg.bucket)
    );
    let body = serde_json::json!({ "expiresIn": expires_in_s, "paths": paths }).to_string();
    let h = headers(cfg, &[("content-type", "application/json")]);
    let reply = net::send(
        Method::Post,
        &url,
        &as_refs(&h),
        Body::Text(body),
        TIMEOUT_MS,
    )
    .await
    .map_err(dep)?;
    if !reply.is_success() {
        return Err(reply_error(&reply));
    }
    let items: Vec<serde_json::Value> = serde_json::from_slice(&reply.body).unwrap_or_default();
    Ok(paths
        .iter()
        .map(|p| {
            items
                .iter()
                .find(|i| i["path"].as_str() == Some(p.as_str()))
                .and_then(|i| i["signedURL"].as_str().or_else(|| i["signedUrl"].as_str()))
                .map(|s| {
                    if s.starts_with("http") {
                        s.to_owned()
                    } else {
                        format!("{}/storage/v1{}", cfg.supabase_url, s)
                    }
                })
        })
        .collect())
}

/// How long the signed URLs of a private bucket stay valid.
const SIGNED_URL_TTL_S: u64 = 3600;

/// A private bucket's outputs are stored as authenticated URLs (they do not expire but need a
/// key); every view gives fresh signed URLs instead (SPEC §7). `Err` when Storage cannot sign
/// (the view keeps the stored URLs).
pub async fn sign_private_urls(cfg: &Config, v: &mut StatusView) -> Result<(), String> {
    let prefix = format!(
        "{}/storage/v1/object/authenticated/{}/",
        cfg.supabase_url,
        encode_segment(&cfg.bucket)
    );
    let urls: Vec<String> = v.asset_urls().into_iter().map(str::to_owned).collect();
    let paths: Vec<String> = urls
        .iter()
        .filter_map(|u| u.strip_prefix(&prefix))
        .map(|p| percent_decode(p).unwrap_or_else(|| p.to_owned()))
        .collect();
    if paths.is_empty() {
        return Ok(());
    }
    let signed = sign_outputs(cfg, &paths, SIGNED_URL_TTL_S)
        .await
        .map_err(|e| e.to_string())?;
    let map: std::collections::HashMap<String, String> = paths
        .iter()
        .zip(signed)
        .filter_map(|(p, s)| s.map(|s| (format!("{prefix}{}", encode_path(p)), s)))
        .collect();
    v.map_asset_urls(|u| map.get(u).cloned().unwrap_or_else(|| u.to_owned()));
    Ok(())
}

/// Deletes objects of the generated-assets bucket (decoded paths); missing ones are fine.
pub async fn delete_outputs(cfg: &Config, paths: &[String]) -> Result<(), DepError> {
    let url = format!(
        "{}/storage/v1/object/{}",
        cfg.supabase_url,
        encode_segment(&cfg.bucket)
    );
    let body = serde_json::json!({ "prefixes": paths }).to_string();
    let h = headers(cfg, &[("content-type", "application/json")]);
    let reply = net::send(
        Method::Delete,
        &url,
        &as_refs(&h),
        Body::Text(body),
        TIMEOUT_MS,
    )
    .await
    .map_err(dep)?;
    if !reply.is_success() {
        return Err(reply_error(&reply));
    }
    Ok(())
}
