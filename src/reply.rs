//! What a handler answers: [`Reply`] on success, `ApiError` otherwise. `http` turns both into a
//! `worker::Response` (CORS, `HEAD`), so handlers never build the JSON shape or status mapping
//! themselves and never import `http`.

use serde::Serialize;
use worker::{Headers, Response};

use crate::core::error::ApiError;
use crate::log::{self, Level};

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

    pub fn into_response(self) -> worker::Result<Response> {
        match self {
            Reply::Json { status, body } => json(status, body),
            Reply::Empty(status) => Ok(Response::empty()?.with_status(status)),
            Reply::Raw(resp) => Ok(resp),
        }
    }
}

/// A JSON response with the given status.
pub fn json(status: u16, body: String) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}

/// The JSON error response of SPEC §4.4 for `e`, with its extra headers.
pub fn error_response(e: &ApiError) -> worker::Result<Response> {
    let resp = json(e.status(), e.body())?;
    for (name, value) in e.headers() {
        resp.headers().set(name, &value)?;
    }
    Ok(resp)
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
