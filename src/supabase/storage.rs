//! Supabase Storage calls: input existence checks, input downloads, and output uploads (bytes for
//! concept images, a JS stream for models so no model is ever held in WebAssembly memory).

use worker::Method;

use crate::config::Config;
use crate::core::rest::auth_headers;
use crate::core::storage_path::{upload_url, InputObject, Origin};
use crate::core::supabase::{ObjectInfo, StorageError};
use crate::error::{DepError, Dependency};
use crate::net::{self, Body, NetError, Reply};

/// Timeout of one Storage call that moves small bodies.
pub const TIMEOUT_MS: u64 = 30_000;
/// Timeout of a streamed model upload.
pub const STREAM_TIMEOUT_MS: u64 = 15 * 60_000;

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

/// Metadata of an input object, `Ok(None)` when it does not exist.
pub async fn input_info(cfg: &Config, obj: &InputObject) -> Result<Option<ObjectInfo>, DepError> {
    let h = headers(cfg, &[]);
    let reply = net::send(
        Method::Get,
        &obj.info_url(),
        &as_refs(&h),
        Body::Empty,
        TIMEOUT_MS,
    )
    .await
    .map_err(dep)?;
    if reply.is_success() {
        return Ok(Some(ObjectInfo::parse(&reply.body).unwrap_or(ObjectInfo {
            size: None,
            content_type: None,
        })));
    }
    let e = StorageError::parse(reply.status, &reply.body);
    if e.is_not_found() {
        return Ok(None);
    }
    Err(reply_error(&reply))
}

/// Downloads an input object whole (inputs are ≤ `MAX_INPUT_BYTES`, checked at submit and here).
pub async fn download_input(
    cfg: &Config,
    obj: &InputObject,
) -> Result<(Vec<u8>, Option<String>), DepError> {
    let h = if obj.needs_service_key() {
        headers(cfg, &[])
    } else {
        Vec::new()
    };
    let reply = net::send(
        Method::Get,
        &obj.fetch_url(),
        &as_refs(&h),
        Body::Empty,
        TIMEOUT_MS,
    )
    .await
    .map_err(dep)?;
    if !reply.is_success() {
        return Err(reply_error(&reply));
    }
    if reply.body.len() as u64 > cfg.max_input_bytes {
        return Err(DepError::new(
            Dependency::Storage,
            Some(413),
            "input object is larger than the limit",
        ));
    }
    let ct = reply.header("content-type");
    Ok((reply.body, ct))
}

/// Uploads bytes to `{bucket}/{path}`, overwriting (a retry rewrites the same object).
pub async fn upload_bytes(
    cfg: &Config,
    origin: &Origin,
    path: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Result<(), DepError> {
    upload(
        cfg,
        origin,
        path,
        content_type,
        None,
        Body::Bytes(bytes),
        TIMEOUT_MS,
    )
    .await
}

/// Uploads a JS stream to `{bucket}/{path}` without reading it into WebAssembly memory.
pub async fn upload_stream(
    cfg: &Config,
    origin: &Origin,
    path: &str,
    content_type: &str,
    content_length: Option<u64>,
    stream: web_sys::ReadableStream,
) -> Result<(), DepError> {
    let body = Body::Stream(stream);
    upload(
        cfg,
        origin,
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
    origin: &Origin,
    path: &str,
    content_type: &str,
    content_length: Option<u64>,
    body: Body,
    timeout_ms: u64,
) -> Result<(), DepError> {
    let url = upload_url(origin, &cfg.bucket, path);
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
        crate::core::storage_path::encode_segment(&cfg.bucket)
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
