//! The fake's CDN: `GET /__fake/files/{task_id}/{kind}.{glb|webp}?expires=<unix>` serves the
//! outputs of successful Tripo tasks. Models are streamed GLBs generated on the fly
//! ([`crate::glb`], seed `"<task_id>:<kind>"`, size from `glb_bytes`), with `Content-Length`,
//! `content-type: model/gltf-binary` and single-range support; `rendered_image.webp` is a small
//! real WebP. Expired or missing `expires` → 403, unknown file → 404, both with S3-style XML.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::glb::{model_seed, Glb};
use crate::image_formats::webp_solid;
use crate::log::LogInfo;
use crate::util::{fnv1a64, unix_now};
use crate::Shared;

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let request_id = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_ascii_uppercase();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
         <RequestId>{request_id}</RequestId></Error>"
    );
    let mut resp = (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    resp
}

/// Parses a single `bytes=` range against `len`: `Ok(None)` = whole file, `Err(())` = 416.
fn parse_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: serve the whole file
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            len - 1
        } else {
            b.parse().map_err(|_| ())?
        };
        (start, end.min(len - 1))
    };
    if start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// `GET /__fake/files/{task_id}/{file}`.
pub(crate) async fn serve(
    State(shared): State<Arc<Shared>>,
    Path((task_id, file)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut info = LogInfo {
        tripo_task_id: Some(task_id.clone()),
        ..LogInfo::default()
    };
    let mut resp = serve_inner(&shared, &task_id, &file, &query, &headers, &mut info).await;
    resp.extensions_mut().insert(info);
    resp
}

async fn serve_inner(
    shared: &Shared,
    task_id: &str,
    file: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    info: &mut LogInfo,
) -> Response {
    let kind = match file {
        "pbr_model.glb" => "pbr_model",
        "model.glb" => "model",
        "base_model.glb" => "base_model",
        "rendered_image.webp" => "rendered_image",
        _ => {
            return s3_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            )
        }
    };
    let now = Instant::now();
    let found = shared.tripo.with_task(task_id, |t| {
        (
            t.serves(kind, now),
            t.glb_bytes,
            t.prompt.clone(),
            t.directive.clone(),
            t.inputs.clone(),
        )
    });
    let Some((serves, glb_bytes, prompt, directive, inputs)) = found else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    info.prompt = prompt;
    info.directive = directive.as_ref().map(|d| d.text().to_string());
    if !inputs.is_empty() {
        info.inputs = Some(serde_json::Value::Array(inputs));
    }
    if let Some(ms) = directive.as_ref().and_then(|d| d.count("slow_ms")) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match query.get("expires").and_then(|e| e.parse::<u64>().ok()) {
        None => {
            return s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Query-string authentication requires expires",
            )
        }
        Some(exp) if unix_now() > exp => {
            return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired")
        }
        Some(_) => {}
    }
    if !serves {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    }

    if kind == "rendered_image" {
        let v = fnv1a64(task_id.as_bytes()).to_le_bytes();
        let bytes = webp_solid(256, 256, [v[0], v[1], v[2], 255]);
        return ([(header::CONTENT_TYPE, "image/webp")], bytes).into_response();
    }

    let seed = model_seed(task_id, kind);
    let glb = Arc::new(Glb::new(&seed, glb_bytes));
    let len = glb.len();
    let etag = format!("\"{:016x}-{len}\"", fnv1a64(seed.as_bytes()));
    let range = match parse_range(headers, len) {
        Ok(r) => r,
        Err(()) => {
            let mut resp = s3_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    let (status, start, end) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e + 1),
        None => (StatusCode::OK, 0, len),
    };
    let mut resp = Response::new(Body::from_stream(glb.stream(start, end)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("model/gltf-binary"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        parse_range(&h, len)
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(range("bytes=0-3", 10), Ok(Some((0, 3))));
        assert_eq!(range("bytes=5-", 10), Ok(Some((5, 9))));
        assert_eq!(range("bytes=-4", 10), Ok(Some((6, 9))));
        assert_eq!(range("bytes=8-100", 10), Ok(Some((8, 9))));
        assert_eq!(range("bytes=10-", 10), Err(()));
        assert_eq!(range("bytes=4-2", 10), Err(()));
        assert_eq!(range("bytes=0-1,4-5", 10), Ok(None));
        assert_eq!(range("bytes=x-1", 10), Err(()));
    }
}
