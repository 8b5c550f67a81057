//! Storage routes and handlers: buckets, upload (raw and multipart), download (authenticated,
//! public, signed; `HEAD`, `Range`, `?download=`), info, sign, list, copy, move and delete.
//!
//! Paths are routed on the raw (percent-encoded) storage path; bucket ids and object keys are
//! percent-decoded once (`with%20space.png` is the key `with space.png`).

use std::cmp::Ordering;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use futures_util::StreamExt;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::auth::Principal;
use super::errors::StorageError;
use super::store::{Bucket, Finished, NewObject, ObjectMeta};
use super::{drain, LoggedBytes, Storage};
use crate::jwt;
use crate::util::{json_response, query_param};

type Resp = Response<Body>;
type Result<T> = std::result::Result<T, StorageError>;

/// Largest JSON body accepted by the non-upload routes.
const JSON_LIMIT: usize = 1 << 20;
const DEFAULT_CACHE_CONTROL: &str = "no-cache";
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// What JavaScript's `encodeURIComponent` escapes.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

pub(crate) async fn route(s: &Storage, req: Request<Body>, raw_path: &str) -> Resp {
    let rest = raw_path.strip_prefix('/').unwrap_or(raw_path).to_string();
    match dispatch(s, req, &rest).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Fastify's answer for an unknown route.
fn route_not_found(method: &Method, rest: &str) -> Resp {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({
            "statusCode": "404",
            "error": "Not Found",
            "message": format!("Route {method}:/{rest} not found"),
        }),
    )
}

async fn dispatch(s: &Storage, req: Request<Body>, rest: &str) -> Result<Resp> {
    let method = req.method().clone();
    let (first, tail) = match rest.split_once('/') {
        Some((f, t)) => (f, Some(t)),
        None => (rest, None),
    };
    match (first, tail) {
        ("bucket", None) | ("bucket", Some("")) => match method {
            Method::POST => create_bucket(s, req).await,
            Method::GET => list_buckets(s, req),
            _ => Ok(route_not_found(&method, rest)),
        },
        ("bucket", Some(t)) => {
            let (id, sub) = match t.split_once('/') {
                Some((id, sub)) => (id, Some(sub)),
                None => (t, None),
            };
            let id = decode(id)?;
            match (&method, sub) {
                (&Method::GET, None) => get_bucket(s, req, &id),
                (&Method::DELETE, None) => delete_bucket(s, req, &id),
                (&Method::POST, Some("empty")) => empty_bucket(s, req, &id).await,
                _ => Ok(route_not_found(&method, rest)),
            }
        }
        ("object", Some(t)) => object_route(s, req, &method, t, rest).await,
        _ => Ok(route_not_found(&method, rest)),
    }
}

async fn object_route(
    s: &Storage,
    req: Request<Body>,
    method: &Method,
    t: &str,
    rest: &str,
) -> Result<Resp> {
    let (a, after) = match t.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (t, None),
    };
    match (method, a, after) {
        (&Method::POST, "list", Some(b)) if !b.contains('/') => {
            let bucket = decode(b)?;
            return list_objects(s, req, &bucket).await;
        }
        (&Method::GET, "info", Some(p)) => {
            return match p.split_once('/') {
                Some(("public", p)) => info(s, req, p, Access::Public).await,
                Some(("authenticated", p)) => info(s, req, p, Access::Authenticated).await,
                _ => info(s, req, p, Access::Authenticated).await,
            };
        }
        (&Method::POST, "sign", Some(p)) => {
            return match p.split_once('/') {
                Some((b, key)) if !key.is_empty() => sign_one(s, req, b, key).await,
                _ => sign_many(s, req, p.trim_end_matches('/')).await,
            };
        }
        (&Method::GET | &Method::HEAD, "sign", Some(p)) => {
            return download(s, req, p, Access::Signed).await;
        }
        (&Method::GET | &Method::HEAD, "public", Some(p)) => {
            return download(s, req, p, Access::Public).await;
        }
        (&Method::GET | &Method::HEAD, "authenticated", Some(p)) => {
            return download(s, req, p, Access::Authenticated).await;
        }
        (&Method::POST, "copy", None) => return copy_object(s, req).await,
        (&Method::POST, "move", None) => return move_object(s, req).await,
        _ => {}
    }
    // `/object/{bucket}` and `/object/{bucket}/{*path}`.
    match (method, after) {
        (&Method::DELETE, None) => delete_many(s, req, &decode(a)?).await,
        (&Method::POST, Some(_)) => upload(s, req, t, false).await,
        (&Method::PUT, Some(_)) => upload(s, req, t, true).await,
        (&Method::GET | &Method::HEAD, Some(_)) => download(s, req, t, Access::Authenticated).await,
        (&Method::DELETE, Some(_)) => delete_one(s, req, t).await,
        _ => Ok(route_not_found(method, rest)),
    }
}

// ---------------------------------------------------------------- helpers

fn decode(s: &str) -> Result<String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| StorageError::invalid_key(s))
}

/// Splits `bucket/key` (raw), decodes both and validates the key.
fn bucket_and_key(raw: &str) -> Result<(String, String)> {
    let (b, k) = raw
        .split_once('/')
        .ok_or_else(|| StorageError::invalid_key(""))?;
    let bucket = decode(b)?;
    let key = decode(k)?;
    validate_key(&key)?;
    Ok((bucket, key))
}

fn validate_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.len() > 1024
        || key.chars().any(char::is_control)
        || key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        Err(StorageError::invalid_key(key))
    } else {
        Ok(())
    }
}

fn validate_bucket_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_-.!*'() &$@=;:+,?".contains(c);
    let ok = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name.trim() == name
        && name.chars().all(ok_char);
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid_bucket_name())
    }
}

fn auth(s: &Storage, headers: &HeaderMap) -> Result<Principal> {
    Principal::from_headers(headers, &s.jwt_secret, &s.keys)
}

/// Reads a JSON object body (an empty body counts as `{}`).
async fn read_json(body: Body) -> Result<Map<String, Value>> {
    let bytes = axum::body::to_bytes(body, JSON_LIMIT)
        .await
        .map_err(|_| StorageError::invalid_request("Request body is too large"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(StorageError::invalid_request("body must be object")),
        Err(_) => Err(StorageError::invalid_request(
            "Body is not valid JSON but content-type is set to 'application/json'",
        )),
    }
}

fn required<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a Value> {
    body.get(field).ok_or_else(|| {
        StorageError::invalid_request(format!("body must have required property '{field}'"))
    })
}

fn required_str<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str> {
    required(body, field)?
        .as_str()
        .ok_or_else(|| StorageError::invalid_request(format!("body/{field} must be string")))
}

fn optional_u64(body: &Map<String, Value>, field: &str, min: u64) -> Result<Option<u64>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= min => Ok(Some(n)),
            Some(_) => Err(StorageError::invalid_request(format!(
                "body/{field} must be >= {min}"
            ))),
            None => Err(StorageError::invalid_request(format!(
                "body/{field} must be integer"
            ))),
        },
    }
}

fn with_bytes(mut resp: Resp, bytes: u64) -> Resp {
    resp.extensions_mut().insert(LoggedBytes(bytes));
    resp
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn x_upsert(headers: &HeaderMap) -> bool {
    header_str(headers, "x-upsert").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

// ---------------------------------------------------------------- buckets

async fn create_bucket(s: &Storage, req: Request<Body>) -> Result<Resp> {
    let (parts, body) = req.into_parts();
    let p = auth(s, &parts.headers)?;
    let body = read_json(body).await?;
    let name = required_str(&body, "name")?.to_string();
    let id = match body.get("id") {
        Some(Value::String(id)) => id.clone(),
        _ => name.clone(),
    };
    validate_bucket_name(&id)?;
    let public = body.get("public").and_then(Value::as_bool).unwrap_or(false);
    let limit = match body.get("file_size_limit") {
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<u64>()
                .map_err(|_| StorageError::invalid_request("Invalid file size format"))?,
        ),
        _ => optional_u64(&body, "file_size_limit", 0)?,
    };
    let mimes = match body.get("allowed_mime_types") {
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    StorageError::invalid_request("body/allowed_mime_types must be array of string")
                })?,
        ),
        _ => None,
    };
    if !p.is_service() {
        return Err(StorageError::rls_violation());
    }
    s.store
        .create_bucket(Bucket::new(id.clone(), public, limit, mimes))?;
    Ok(json_response(StatusCode::OK, &json!({ "name": id })))
}

fn get_bucket(s: &Storage, req: Request<Body>, id: &str) -> Result<Resp> {
    let p = auth(s, req.headers())?;
    // No policy on storage.buckets: only the service role sees rows.
    match s.store.bucket(id) {
        Some(b) if p.is_service() => Ok(json_response(StatusCode::OK, &b.to_json(false))),
        _ => Err(StorageError::no_such_bucket()),
    }
}

fn list_buckets(s: &Storage, req: Request<Body>) -> Result<Resp> {
    let p = auth(s, req.headers())?;
    let list: Vec<Value> = if p.is_service() {
        s.store.buckets().iter().map(|b| b.to_json(true)).collect()
    } else {
        Vec::new()
    };
    Ok(json_response(StatusCode::OK, &Value::Array(list)))
}

fn delete_bucket(s: &Storage, req: Request<Body>, id: &str) -> Result<Resp> {
    let p = auth(s, req.headers())?;
    if !p.is_service() {
        return Err(StorageError::no_such_bucket());
    }
    s.store.delete_bucket(id)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Successfully deleted"}),
    ))
}

async fn empty_bucket(s: &Storage, req: Request<Body>, id: &str) -> Result<Resp> {
    let p = auth(s, req.headers())?;
    if !p.is_service() || s.store.bucket(id).is_none() {
        return Err(StorageError::no_such_bucket());
    }
    for m in s.store.with_prefix(id, "") {
        s.store.delete(id, &m.name).await;
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Successfully emptied"}),
    ))
}

// ---------------------------------------------------------------- upload

/// `POST` (upsert per `x-upsert`) or `PUT` (always upsert) `/object/{bucket}/{*path}`.
async fn upload(s: &Storage, req: Request<Body>, raw: &str, is_put: bool) -> Result<Resp> {
    let (parts, body) = req.into_parts();
    let checked = upload_checks(s, &parts, raw, is_put);
    let (p, bucket, key, upsert, limit) = match checked {
        Ok(c) => c,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let is_multipart = header_str(&parts.headers, "content-type").is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    });
    let (finished, new) = if is_multipart {
        let headers = parts.headers.clone();
        let mut mp = Multipart::from_request(Request::from_parts(parts, body), &())
            .await
            .map_err(|e| StorageError::invalid_request(e.body_text()))?;
        let res = read_multipart(s, &mut mp, &headers, &bucket, limit, &p).await;
        match res {
            Ok(r) => r,
            Err(e) => {
                drain_multipart(&mut mp).await;
                return Err(e);
            }
        }
    } else {
        let content_type = header_str(&parts.headers, "content-type")
            .unwrap_or(DEFAULT_CONTENT_TYPE)
            .to_string();
        if !bucket.allows_mime(&content_type) {
            drain(body).await;
            return Err(StorageError::invalid_mime_type(&content_type));
        }
        let new = NewObject {
            content_type,
            cache_control: header_str(&parts.headers, "cache-control")
                .unwrap_or(DEFAULT_CACHE_CONTROL)
                .to_string(),
            owner: p.owner(),
            user_metadata: x_metadata(&parts.headers),
        };
        let mut stream = body.into_data_stream();
        let mut up = s.store.begin_upload(limit).await?;
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(StorageError::invalid_request(format!(
                        "error reading the body: {e}"
                    )));
                    break;
                }
            };
            if let Err(e) = up.write(&chunk).await {
                failure = Some(e);
                break;
            }
        }
        if let Some(e) = failure {
            drop(up); // deletes the partial temp file
            drain(Body::from_stream(stream)).await;
            return Err(e);
        }
        (up.finish().await?, new)
    };
    let size = finished.size;
    let meta = s
        .store
        .commit(&bucket.id, &key, finished, new, upsert)
        .await?;
    Ok(with_bytes(
        json_response(
            StatusCode::OK,
            &json!({"Key": format!("{}/{}", bucket.id, key), "Id": meta.id}),
        ),
        size,
    ))
}

type UploadPlan = (Principal, Bucket, String, bool, u64);

/// Everything that can be refused before reading the body.
fn upload_checks(s: &Storage, parts: &Parts, raw: &str, is_put: bool) -> Result<UploadPlan> {
    let p = auth(s, &parts.headers)?;
    let (bucket_id, key) = bucket_and_key(raw)?;
    let bucket = s
        .store
        .bucket(&bucket_id)
        .ok_or_else(StorageError::no_such_bucket)?;
    if !s.policy.can_write(&p, &bucket.id, &key) {
        return Err(StorageError::rls_violation());
    }
    let upsert = is_put || x_upsert(&parts.headers);
    if !upsert && s.store.object(&bucket.id, &key).is_some() {
        return Err(StorageError::key_already_exists());
    }
    let limit = bucket
        .file_size_limit
        .map_or(s.upload_limit, |l| l.min(s.upload_limit));
    let declared = header_str(&parts.headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let multipart_overhead = 64 * 1024; // boundaries and small fields around the file part
    let is_multipart = header_str(&parts.headers, "content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("multipart/"));
    let allowed = if is_multipart {
        limit.saturating_add(multipart_overhead)
    } else {
        limit
    };
    if declared.is_some_and(|n| n > allowed) {
        return Err(StorageError::entity_too_large());
    }
    Ok((p, bucket, key, upsert, limit))
}

/// `x-metadata`: base64-encoded JSON user metadata.
fn x_metadata(headers: &HeaderMap) -> Option<Value> {
    use base64::Engine as _;
    let raw = header_str(headers, "x-metadata")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Reads a multipart upload: the first file part (named `file`, empty, or with a filename) is
/// streamed to disk; `cacheControl` (seconds, stored as `max-age=N`) and `metadata` (JSON) are
/// read from the text fields.
async fn read_multipart(
    s: &Storage,
    mp: &mut Multipart,
    headers: &HeaderMap,
    bucket: &Bucket,
    limit: u64,
    p: &Principal,
) -> Result<(Finished, NewObject)> {
    let mp_err = |e: axum::extract::multipart::MultipartError| {
        StorageError::invalid_request(format!("invalid multipart body: {}", e.body_text()))
    };
    let mut cache_control = None;
    let mut user_metadata = x_metadata(headers);
    let mut file: Option<(Finished, String)> = None;
    while let Some(mut field) = mp.next_field().await.map_err(mp_err)? {
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some() || name == "file" || name.is_empty();
        if is_file && file.is_none() {
            let ct = field
                .content_type()
                .unwrap_or(DEFAULT_CONTENT_TYPE)
                .to_string();
            if !bucket.allows_mime(&ct) {
                return Err(StorageError::invalid_mime_type(&ct));
            }
            let mut up = s.store.begin_upload(limit).await?;
            while let Some(chunk) = field.chunk().await.map_err(mp_err)? {
                up.write(&chunk).await?;
            }
            file = Some((up.finish().await?, ct));
        } else {
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(mp_err)? {
                if text.len() < 64 * 1024 {
                    text.extend_from_slice(&chunk);
                }
            }
            let text = String::from_utf8_lossy(&text).trim().to_string();
            match name.as_str() {
                "cacheControl" if !text.is_empty() => {
                    cache_control = Some(if text.chars().all(|c| c.is_ascii_digit()) {
                        format!("max-age={text}")
                    } else {
                        text
                    });
                }
                "metadata" => user_metadata = serde_json::from_str(&text).ok(),
                _ => {}
            }
        }
    }
    let (finished, content_type) =
        file.ok_or_else(|| StorageError::invalid_request("No file part found in the form"))?;
    Ok((
        finished,
        NewObject {
            content_type,
            cache_control: cache_control.unwrap_or_else(|| DEFAULT_CACHE_CONTROL.to_string()),
            owner: p.owner(),
            user_metadata,
        },
    ))
}

/// Reads and discards the rest of a multipart body (bounded, like [`drain`]).
async fn drain_multipart(mp: &mut Multipart) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut seen = 0usize;
        while let Ok(Some(mut field)) = mp.next_field().await {
            while let Ok(Some(chunk)) = field.chunk().await {
                seen += chunk.len();
                if seen > 64 << 20 {
                    return;
                }
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------- download and info

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `Authorization` required; RLS-style read check.
    Authenticated,
    /// No auth; the bucket must be public.
    Public,
    /// No auth; `?token=` must be a valid signed-URL token for this path.
    Signed,
}

/// Finds the object a read route names, applying that route's access rules.
fn check_read(
    s: &Storage,
    headers: &HeaderMap,
    query: Option<&str>,
    access: Access,
    bucket: &str,
    key: &str,
) -> Result<()> {
    match access {
        Access::Authenticated => {
            let p = auth(s, headers)?;
            match s.store.bucket(bucket) {
                Some(b) if s.policy.can_read(&p, &b, key) => Ok(()),
                _ => Err(StorageError::no_such_key()),
            }
        }
        Access::Public => match s.store.bucket(bucket) {
            None => Err(StorageError::no_such_key()),
            Some(b) if !b.public => Err(StorageError::no_such_bucket()),
            Some(_) => Ok(()),
        },
        Access::Signed => {
            let token = query_param(query, "token").ok_or_else(|| {
                StorageError::invalid_request("querystring must have required property 'token'")
            })?;
            let claims = jwt::verify(&token, &s.jwt_secret, jwt::now_unix())
                .map_err(|e| StorageError::invalid_jwt(e.to_string()))?;
            if claims.get("url").and_then(Value::as_str) != Some(&format!("{bucket}/{key}")) {
                return Err(StorageError::invalid_signature());
            }
            Ok(())
        }
    }
}

async fn download(s: &Storage, req: Request<Body>, raw: &str, access: Access) -> Result<Resp> {
    let (bucket, key) = bucket_and_key(raw)?;
    let query = req.uri().query();
    check_read(s, req.headers(), query, access, &bucket, &key)?;
    let (meta, file) = s.store.open_object(&bucket, &key).await?;
    serve(req.method(), req.headers(), query, &meta, file).await
}

/// Streams an object (or a `Range` of it) from disk.
async fn serve(
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    meta: &ObjectMeta,
    mut file: tokio::fs::File,
) -> Result<Resp> {
    let range = match header_str(headers, "range") {
        Some(v) => parse_range(v, meta.size)?,
        None => None,
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, meta.size),
    };
    let is_head = method == Method::HEAD;
    let body = if is_head {
        Body::empty()
    } else {
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start)).await?;
        }
        Body::from_stream(ReaderStream::with_capacity(file.take(len), 256 * 1024))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, meta.content_type.clone());
    set(header::CONTENT_LENGTH, len.to_string());
    set(header::ETAG, meta.etag());
    set(
        header::LAST_MODIFIED,
        httpdate::fmt_http_date(meta.updated_at),
    );
    set(header::CACHE_CONTROL, meta.cache_control.clone());
    set(header::ACCEPT_RANGES, "bytes".to_string());
    set(
        header::HeaderName::from_static("x-robots-tag"),
        "none".to_string(),
    );
    if let Some((a, b)) = range {
        set(
            header::CONTENT_RANGE,
            format!("bytes {a}-{b}/{}", meta.size),
        );
    }
    if let Some(name) = query_param(query, "download") {
        let name = if name.is_empty() {
            meta.name
                .rsplit('/')
                .next()
                .unwrap_or(&meta.name)
                .to_string()
        } else {
            name
        };
        let encoded = utf8_percent_encode(&name, URI_COMPONENT).to_string();
        let value = format!("attachment; filename={name}; filename*=UTF-8''{encoded}");
        match HeaderValue::from_str(&value) {
            Ok(v) => {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            Err(_) => {
                if let Ok(v) =
                    HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
                {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
            }
        }
    }
    Ok(with_bytes(resp, if is_head { 0 } else { len }))
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → the inclusive range, clamped to the object. Other units
/// and multi-range requests are ignored (the whole object is sent).
fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(StorageError::invalid_range)?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| StorageError::invalid_range())
    };
    if size == 0 {
        return Err(StorageError::invalid_range());
    }
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Err(StorageError::invalid_range()),
        (true, false) => {
            let n = num(b)?;
            if n == 0 {
                return Err(StorageError::invalid_range());
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, true) => (num(a)?, size - 1),
        (false, false) => (num(a)?, num(b)?.min(size - 1)),
    };
    if start > end || start >= size {
        return Err(StorageError::invalid_range());
    }
    Ok(Some((start, end)))
}

async fn info(s: &Storage, req: Request<Body>, raw: &str, access: Access) -> Result<Resp> {
    let (bucket, key) = bucket_and_key(raw)?;
    check_read(s, req.headers(), req.uri().query(), access, &bucket, &key)?;
    let meta = s
        .store
        .object(&bucket, &key)
        .ok_or_else(StorageError::no_such_key)?;
    Ok(json_response(StatusCode::OK, &meta.info_json()))
}

// ---------------------------------------------------------------- signed URLs

fn expires_in(body: &Map<String, Value>) -> Result<i64> {
    required(body, "expiresIn")?;
    optional_u64(body, "expiresIn", 1)?
        .map(|n| n.min(i64::MAX as u64 / 2) as i64)
        .ok_or_else(|| StorageError::invalid_request("body/expiresIn must be integer"))
}

/// The signed-URL token and path for a readable, existing object, or `None`.
fn signed_url(s: &Storage, p: &Principal, bucket: &str, key: &str, expires: i64) -> Option<String> {
    let b = s.store.bucket(bucket)?;
    if !s.policy.can_read(p, &b, key) {
        return None;
    }
    s.store.object(bucket, key)?;
    let now = jwt::now_unix();
    let url = format!("{bucket}/{key}");
    let token = jwt::sign(
        &json!({"url": url, "iat": now, "exp": now + expires}),
        &s.jwt_secret,
    );
    // As Storage does: the path is the decoded `bucket/key`, relative to `/storage/v1`.
    Some(format!("/object/sign/{url}?token={token}"))
}

async fn sign_one(
    s: &Storage,
    req: Request<Body>,
    raw_bucket: &str,
    raw_key: &str,
) -> Result<Resp> {
    let (parts, body) = req.into_parts();
    let p = auth(s, &parts.headers)?;
    let body = read_json(body).await?;
    let expires = expires_in(&body)?;
    let bucket = decode(raw_bucket)?;
    let key = decode(raw_key)?;
    validate_key(&key)?;
    let url = signed_url(s, &p, &bucket, &key, expires).ok_or_else(StorageError::no_such_key)?;
    Ok(json_response(StatusCode::OK, &json!({ "signedURL": url })))
}

/// `POST /object/sign/{bucket}` `{"expiresIn", "paths": [...]}`.
async fn sign_many(s: &Storage, req: Request<Body>, raw_bucket: &str) -> Result<Resp> {
    let (parts, body) = req.into_parts();
    let p = auth(s, &parts.headers)?;
    let body = read_json(body).await?;
    let expires = expires_in(&body)?;
    let paths = required(&body, "paths")?
        .as_array()
        .ok_or_else(|| StorageError::invalid_request("body/paths must be array"))?;
    let bucket = decode(raw_bucket)?;
    let out: Vec<Value> = paths
        .iter()
        .map(|path| {
            let key = path.as_str().unwrap_or_default();
            match signed_url(s, &p, &bucket, key, expires) {
                Some(url) => json!({"error": null, "path": key, "signedURL": url}),
                None => json!({
                    "error": "Either the object does not exist or you do not have access to it",
                    "path": key,
                    "signedURL": null,
                }),
            }
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

// ---------------------------------------------------------------- list

#[derive(Clone, Copy, PartialEq, Eq)]
enum SortColumn {
    Name,
    UpdatedAt,
    CreatedAt,
    LastAccessedAt,
}

struct Entry<'a> {
    name: String,
    object: Option<&'a ObjectMeta>,
}

/// `POST /object/list/{bucket}`: the immediate children of the folder `prefix`: objects, and
/// folders as `{"name", "id": null, ..., "metadata": null}`.
async fn list_objects(s: &Storage, req: Request<Body>, bucket: &str) -> Result<Resp> {
    let (parts, body) = req.into_parts();
    let p = auth(s, &parts.headers)?;
    let body = read_json(body).await?;
    let prefix = required_str(&body, "prefix")?;
    let limit = optional_u64(&body, "limit", 1)?.unwrap_or(100) as usize;
    let offset = optional_u64(&body, "offset", 0)?.unwrap_or(0) as usize;
    let search = match body.get("search") {
        Some(Value::String(s)) => s.to_lowercase(),
        _ => String::new(),
    };
    let (column, descending) = match body.get("sortBy") {
        Some(Value::Object(sort)) => {
            let column = match sort.get("column").and_then(Value::as_str) {
                Some("name") => SortColumn::Name,
                Some("updated_at") => SortColumn::UpdatedAt,
                Some("created_at") => SortColumn::CreatedAt,
                Some("last_accessed_at") => SortColumn::LastAccessedAt,
                _ => {
                    return Err(StorageError::invalid_request(
                        "body/sortBy/column must be equal to one of the allowed values",
                    ))
                }
            };
            let desc = match sort.get("order").and_then(Value::as_str) {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(_) => {
                    return Err(StorageError::invalid_request(
                        "body/sortBy/order must be equal to one of the allowed values",
                    ))
                }
            };
            (column, desc)
        }
        _ => (SortColumn::Name, false),
    };
    let Some(b) = s.store.bucket(bucket) else {
        return Ok(json_response(StatusCode::OK, &json!([])));
    };
    let folder = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let objects: Vec<ObjectMeta> = s
        .store
        .with_prefix(bucket, &folder)
        .into_iter()
        .filter(|m| s.policy.can_read(&p, &b, &m.name))
        .collect();
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen_folders = std::collections::BTreeSet::new();
    for m in &objects {
        let rest = &m.name[folder.len()..];
        if !rest.to_lowercase().starts_with(&search) {
            continue;
        }
        match rest.split_once('/') {
            None => entries.push(Entry {
                name: rest.to_string(),
                object: Some(m),
            }),
            Some((dir, _)) => {
                if seen_folders.insert(dir.to_string()) {
                    entries.push(Entry {
                        name: dir.to_string(),
                        object: None,
                    });
                }
            }
        }
    }
    let time = |e: &Entry| {
        e.object.map(|m| match column {
            SortColumn::CreatedAt => m.created_at,
            _ => m.updated_at,
        })
    };
    entries.sort_by(|x, y| {
        let ord = match column {
            SortColumn::Name => Ordering::Equal,
            // PostgreSQL: NULLS LAST ascending, NULLS FIRST descending.
            _ => match (time(x), time(y)) {
                (Some(a), Some(b)) => a.cmp(&b),
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (None, None) => Ordering::Equal,
            },
        };
        let ord = ord.then_with(|| x.name.as_bytes().cmp(y.name.as_bytes()));
        if descending {
            ord.reverse()
        } else {
            ord
        }
    });
    let out: Vec<Value> = entries
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| match e.object {
            Some(m) => m.list_json(&e.name),
            None => json!({
                "name": e.name,
                "id": null,
                "updated_at": null,
                "created_at": null,
                "last_accessed_at": null,
                "metadata": null,
            }),
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

// ---------------------------------------------------------------- copy, move, delete

fn copy_move_args(body: &Map<String, Value>) -> Result<(String, String, String, String)> {
    let bucket = required_str(body, "bucketId")?.to_string();
    let src = required_str(body, "sourceKey")?.to_string();
    let dst = required_str(body, "destinationKey")?.to_string();
    let dst_bucket = body
        .get("destinationBucket")
        .and_then(Value::as_str)
        .unwrap_or(&bucket)
        .to_string();
    validate_key(&src)?;
    validate_key(&dst)?;
    Ok((bucket, src, dst_bucket, dst))
}

/// `POST /object/copy` `{"bucketId","sourceKey","destinationKey"[,"destinationBucket"]}`.
async fn copy_object(s: &Storage, req: Request<Body>) -> Result<Resp> {
    let (parts, body) = req.into_parts();
    let p = auth(s, &parts.headers)?;
    let body = read_json(body).await?;
    let (bucket, src, dst_bucket, dst) = copy_move_args(&body)?;
    let src_bucket = s
        .store
        .bucket(&bucket)
        .ok_or_else(StorageError::no_such_key)?;
    if !s.policy.can_read(&p, &src_bucket, &src) {
        return Err(StorageError::no_such_key());
    }
    s.store
        .bucket(&dst_bucket)
        .ok_or_else(StorageError::no_such_bucket)?;
    if !s.policy.can_write(&p, &dst_bucket, &dst) {
        return Err(StorageError::rls_violation());
    }
    let source = s
        .store
        .object(&bucket, &src)
        .ok_or_else(StorageError::no_such_key)?;
    let finished = s.store.duplicate(&source).await?;
    let new = NewObject {
        content_type: source.content_type.clone(),
        cache_control: source.cache_control.clone(),
        owner: p.owner(),
        user_metadata: source.user_metadata.clone(),
    };
    let meta = s
        .store
        .commit(&dst_bucket, &dst, finished, new, x_upsert(&parts.headers))
        .await?;
    let mut row = meta.row_json();
    if let Some(obj) = row.as_object_mut() {
        obj.insert("Key".into(), Value::String(format!("{dst_bucket}/{dst}")));
        obj.insert("Id".into(), json!(meta.id));
    }
    Ok(json_response(StatusCode::OK, &row))
}

/// `POST /object/move` `{"bucketId","sourceKey","destinationKey"[,"destinationBucket"]}`.
async fn move_object(s: &Storage, req: Request<Body>) -> Result<Resp> {
    let (parts, body) = req.into_parts();
    let p = auth(s, &parts.headers)?;
    let body = read_json(body).await?;
    let (bucket, src, dst_bucket, dst) = copy_move_args(&body)?;
    if s.store.object(&bucket, &src).is_none() || !s.policy.can_write(&p, &bucket, &src) {
        return Err(StorageError::no_such_key());
    }
    if !s.policy.can_write(&p, &dst_bucket, &dst) {
        return Err(StorageError::rls_violation());
    }
    s.store.rename(&bucket, &src, &dst_bucket, &dst)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Successfully moved"}),
    ))
}

/// `DELETE /object/{bucket}/{*path}`. An object the caller may not delete is invisible to it
/// (RLS), so that is `NoSuchKey` too.
async fn delete_one(s: &Storage, req: Request<Body>, raw: &str) -> Result<Resp> {
    let p = auth(s, req.headers())?;
    let (bucket, key) = bucket_and_key(raw)?;
    if !s.policy.can_write(&p, &bucket, &key) || s.store.delete(&bucket, &key).await.is_none() {
        return Err(StorageError::no_such_key());
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Successfully deleted"}),
    ))
}

/// `DELETE /object/{bucket}` `{"prefixes": [...]}`: exact names; missing or forbidden ones are
/// skipped. Answers the deleted rows.
async fn delete_many(s: &Storage, req: Request<Body>, bucket: &str) -> Result<Resp> {
    let (parts, body) = req.into_parts();
    let p = auth(s, &parts.headers)?;
    let body = read_json(body).await?;
    let prefixes = required(&body, "prefixes")?
        .as_array()
        .ok_or_else(|| StorageError::invalid_request("body/prefixes must be array"))?;
    if prefixes.is_empty() {
        return Err(StorageError::invalid_request(
            "body/prefixes must NOT have fewer than 1 items",
        ));
    }
    if prefixes.len() > 1000 {
        return Err(StorageError::invalid_request(
            "body/prefixes must NOT have more than 1000 items",
        ));
    }
    let mut deleted = Vec::new();
    for name in prefixes.iter().filter_map(Value::as_str) {
        if s.policy.can_write(&p, bucket, name) {
            if let Some(m) = s.store.delete(bucket, name).await {
                deleted.push(m.row_json());
            }
        }
    }
    Ok(json_response(StatusCode::OK, &Value::Array(deleted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100).unwrap(), Some((95, 99)));
        assert_eq!(parse_range("items=0-1", 100).unwrap(), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(
            parse_range("bytes=100-", 100).unwrap_err().code,
            "InvalidRange"
        );
        assert!(parse_range("bytes=5-4", 100).is_err());
        assert!(parse_range("bytes=0-0", 0).is_err());
    }

    #[test]
    fn keys() {
        assert!(validate_key("concepts/t-1/0.png").is_ok());
        assert!(validate_key("with space.png").is_ok());
        assert!(validate_key("a/../b").is_err());
        assert!(validate_key("..").is_err());
        assert!(validate_key("a//b").is_err());
        assert!(validate_key("").is_err());
        assert!(validate_bucket_name("makeit3d_app_assets").is_ok());
        assert!(validate_bucket_name("a/b").is_err());
        assert!(validate_bucket_name("..").is_err());
    }
}
