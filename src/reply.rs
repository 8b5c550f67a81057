//! What a handler answers: [`Reply`] on success, `ApiError` otherwise. [`respond`] (called by
//! `http`) turns both into the runtime's `Response` (CORS, `HEAD`), so handlers never build the
//! JSON shape or status mapping themselves and never import `http`.

use std::cell::RefCell;

use serde::Serialize;
use wasm_bindgen::JsValue;
use worker::Response;

use crate::core::error::ApiError;
use crate::log::{self, Level};
use crate::net;

/// A handler's answer.
pub enum Reply {
    /// A JSON body (`application/json`, `no-store`) with this status.
    Json { status: u16, body: String },
    /// No body.
    Empty(u16),
    /// A response the handler built as it is: an event stream, a WebSocket upgrade, the page.
    Raw(Response),
}

impl Reply {
    /// A JSON answer of `value`.
    pub fn json(status: u16, value: &impl Serialize) -> Result<Reply, ApiError> {
        let body = serde_json::to_string(value).map_err(|_| ApiError::Internal)?;
        Ok(Reply::Json { status, body })
    }
}

/// The headers of every JSON answer.
const JSON_HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/json; charset=utf-8"),
    ("cache-control", "no-store"),
];

/// The CORS headers of every answer (`CORS_ALLOW_ORIGIN`).
fn cors_headers(origin: &str) -> Vec<(&'static str, &str)> {
    let mut h = vec![
        ("access-control-allow-origin", origin),
        ("access-control-allow-methods", "GET, HEAD, POST, OPTIONS"),
        (
            "access-control-allow-headers",
            "authorization, content-type, apikey, x-client-info",
        ),
        ("access-control-max-age", "86400"),
    ];
    if origin != "*" {
        h.push(("vary", "origin"));
    }
    h
}

/// The response of `reply`, or of `error` when the reply is an error, with the CORS headers of
/// `origin` added; no body for `HEAD`. A JSON or empty answer is built in one call into
/// JavaScript ([`js::respond`]): `Headers` set one at a time, then `worker`'s conversion of its
/// `Response` (a `ResponseInit`, a copy of the body) cost about 0.5 ms of a submit under
/// `wrangler dev` (docs/architecture.md "The glue's own cost"). The headers of an answer
/// without headers of its own are one `Headers` per isolate ([`common_headers`]).
pub fn respond(
    reply: Result<Reply, ApiError>,
    origin: &str,
    head: bool,
) -> worker::Result<web_sys::Response> {
    let (status, body, extra) = match reply {
        Ok(Reply::Raw(resp)) => return raw_with_cors(resp, &cors_headers(origin), head),
        Ok(Reply::Empty(status)) => (status, None, Vec::new()),
        Ok(Reply::Json { status, body }) => (status, Some(body), Vec::new()),
        Err(e) => (e.status(), Some(e.body()), e.headers()),
    };
    // A JSON answer keeps its content type under `HEAD`, without its body.
    let json = body.is_some();
    let body = if head { None } else { body };
    let headers = if extra.is_empty() {
        common_headers(origin, json)?
    } else {
        headers_object(json, &extra, &cors_headers(origin))?
    };
    js::respond(status, body.as_deref(), &headers)
        .map_err(|e| worker::Error::JsError(net::js_text(&e)))
}

thread_local! {
    /// The headers object of every answer without headers of its own, by (origin, JSON or not):
    /// the origin is the isolate's setting, so this holds at most two entries.
    static COMMON: RefCell<Vec<(String, bool, JsValue)>> = const { RefCell::new(Vec::new()) };
}

/// The headers of an answer with no headers of its own (one `Headers`, made once per
/// isolate and passed to every such `Response`).
fn common_headers(origin: &str, json: bool) -> worker::Result<JsValue> {
    COMMON.with(|c| {
        if let Some((_, _, h)) = c
            .borrow()
            .iter()
            .find(|(o, j, _)| o == origin && *j == json)
        {
            return Ok(h.clone());
        }
        let h = headers_object(json, &[], &cors_headers(origin))?;
        c.borrow_mut().push((origin.to_owned(), json, h.clone()));
        Ok(h)
    })
}

/// A headers object: the JSON headers (when `json`), then `extra`, then `cors`.
fn headers_object(
    json: bool,
    extra: &[(&'static str, String)],
    cors: &[(&str, &str)],
) -> worker::Result<JsValue> {
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(JSON_HEADERS.len() + cors.len() + 2);
    if json {
        headers.extend(JSON_HEADERS);
    }
    headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    headers.extend(cors);
    let lines = net::header_lines(&headers).map_err(|e| worker::Error::RustError(e.to_string()))?;
    Ok(js::headers_object(&lines))
}

/// A response the handler built itself, with the CORS headers added (no body for `HEAD`).
fn raw_with_cors(
    resp: Response,
    cors: &[(&str, &str)],
    head: bool,
) -> worker::Result<web_sys::Response> {
    let h = resp.headers();
    for (k, v) in cors {
        h.set(k, v)?;
    }
    if head {
        let headers = h.clone();
        return Ok(Response::empty()?
            .with_status(resp.status_code())
            .with_headers(headers)
            .into());
    }
    Ok(resp.into())
}

mod js {
    use wasm_bindgen::prelude::wasm_bindgen;
    use wasm_bindgen::JsValue;

    #[wasm_bindgen(inline_js = r#"
export function headers_object(lines) {
  const headers = new Headers();
  const p = lines.split('\n');
  for (let i = 0; i + 1 < p.length; i += 2) headers.set(p[i], p[i + 1]);
  return headers;
}
export function respond(status, body, headers) {
  return new Response(body, { status, headers });
}
"#)]
    extern "C" {
        /// A `Headers` of the headers in `lines` (name and value on lines of their own), for
        /// [`respond`], which copies it into each `Response` (a plain object instead measured
        /// slower: the runtime reads it property by property).
        pub fn headers_object(lines: &str) -> JsValue;
        /// `new Response(body, {status, headers})`.
        #[wasm_bindgen(catch)]
        pub fn respond(
            status: u16,
            body: Option<&str>,
            headers: &JsValue,
        ) -> Result<web_sys::Response, JsValue>;
    }
}

/// Maps a runtime error to a 500 without leaking its text to the client (it is logged).
#[allow(clippy::needless_pass_by_value)] // the shape of `map_err`
pub fn internal(e: worker::Error) -> ApiError {
    log::emit(
        Level::Error,
        "runtime.error",
        None,
        None,
        serde_json::json!({ "error": e.to_string() }),
    );
    ApiError::Internal
}
