//! Outbound HTTP for every dependency (Supabase Storage, PostgREST, OpenAI, Tripo): one place that
//! builds `fetch` requests, applies a timeout (workers-rs' `Fetch` has none), and reads replies.
//! Small JSON replies are read whole; model files stay streams (`send_streaming`).

use futures::future::{select, Either};
use std::time::Duration;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, Response};

/// A request body.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    Text(String),
    /// A JS stream handed straight to the runtime (never read into WebAssembly memory).
    Stream(web_sys::ReadableStream),
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("network error: {0}")]
    Network(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// A reply with its body read.
pub struct Reply {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).ok().flatten()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn build(method: Method, url: &str, headers: &[(&str, &str)], body: Body) -> Result<Request, NetError> {
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v).map_err(|e| NetError::Invalid(format!("header {k}: {e}")))?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(h);
    match body {
        Body::Empty => {}
        Body::Bytes(b) => {
            let arr = js_sys::Uint8Array::from(b.as_slice());
            init.with_body(Some(arr.into()));
        }
        Body::Text(t) => {
            init.with_body(Some(wasm_bindgen::JsValue::from_str(&t)));
        }
        Body::Stream(s) => {
            init.with_body(Some(s.into()));
        }
    }
    Request::new_with_init(url, &init).map_err(|e| NetError::Invalid(e.to_string()))
}

/// Sends a request; the reply's body is not read (use for downloads that are streamed on).
pub async fn send_streaming(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
    timeout_ms: u64,
) -> Result<Response, NetError> {
    let req = build(method, url, headers, body)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetcher = Fetch::Request(req);
    let fetch = fetcher.send_with_signal(&signal);
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    futures::pin_mut!(fetch);
    futures::pin_mut!(timer);
    match select(fetch, timer).await {
        Either::Left((Ok(resp), _)) => Ok(resp),
        Either::Left((Err(e), _)) => Err(NetError::Network(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(NetError::Timeout(timeout_ms))
        }
    }
}

/// Sends a request and reads the whole (small) reply.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
    timeout_ms: u64,
) -> Result<Reply, NetError> {
    let mut resp = send_streaming(method, url, headers, body, timeout_ms).await?;
    let status = resp.status_code();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| NetError::Network(format!("reading body: {e}")))?;
    Ok(Reply { status, headers, body })
}
