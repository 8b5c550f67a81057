//! Outbound HTTP for every dependency (Supabase Storage, PostgREST, OpenAI, Tripo): one place that
//! builds `fetch` requests, applies a timeout (workers-rs' `Fetch` has none), and reads replies.
//! Small JSON replies are read whole; model files stay streams (`send_streaming`).

use futures::future::{select, Either};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{
    AbortController, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response,
};

/// A timer on the runtime's `setTimeout`, cleared when dropped. (`worker::Delay` unwraps the
/// timer id as a number, which this runtime's `setTimeout` does not always return.)
struct Timer {
    id: JsValue,
    fired: JsFuture,
}

impl Timer {
    fn new(ms: u64) -> Timer {
        let global = js_sys::global();
        let mut id = JsValue::UNDEFINED;
        let promise = Promise::new(&mut |resolve, _reject| {
            let set = Reflect::get(&global, &JsValue::from_str("setTimeout"))
                .ok()
                .and_then(|f| f.dyn_into::<Function>().ok());
            if let Some(set) = set {
                id = set
                    .call2(&global, &resolve, &JsValue::from_f64(ms as f64))
                    .unwrap_or(JsValue::UNDEFINED);
            }
        });
        Timer {
            id,
            fired: JsFuture::from(promise),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let global = js_sys::global();
        if let Some(clear) = Reflect::get(&global, &JsValue::from_str("clearTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
        {
            let _ = clear.call1(&global, &self.id);
        }
    }
}

/// The size of this isolate's WebAssembly memory (`WebAssembly.Memory.buffer.byteLength`), in
/// bytes. It only grows: after a job it is the high-water mark of everything so far.
pub fn wasm_memory_bytes() -> u64 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .ok()
        .and_then(|m| m.buffer().dyn_into::<js_sys::ArrayBuffer>().ok())
        .map_or(0, |b| u64::from(b.byte_length()))
}

/// The runtime's clock, in ms since the epoch.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // positive, below 2^53
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// 128 random bits from the runtime's `Math.random` (multipart boundaries; not for secrets).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in [0, 2^64)
pub fn random_u128() -> u128 {
    let hi = (js_sys::Math::random() * u64::MAX as f64) as u64;
    let lo = (js_sys::Math::random() * u64::MAX as f64) as u64;
    (u128::from(hi) << 64) | u128::from(lo)
}

/// Sleeps `ms` on the runtime's timer.
pub async fn sleep(ms: u64) {
    let mut t = Timer::new(ms);
    let _ = (&mut t.fired).await;
}

/// A request body.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Pieces copied one after another into one JS buffer, each dropped once copied (a body
    /// built around a large input without concatenating it in WebAssembly memory first).
    Parts(Vec<Vec<u8>>),
    /// Bytes already in a JS buffer (not copied again; the runtime copies a typed-array body
    /// when the request is built, so the same array can be sent again).
    Array(js_sys::Uint8Array),
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

/// A body as the value `fetch` takes (`None` for no body).
fn body_value(body: Body) -> Result<Option<JsValue>, NetError> {
    Ok(match body {
        Body::Empty => None,
        Body::Bytes(b) => Some(js_sys::Uint8Array::from(b.as_slice()).into()),
        Body::Parts(parts) => {
            let too_large = || NetError::Invalid("a request body over 4 GiB".into());
            let total: usize = parts.iter().map(Vec::len).sum();
            let arr =
                js_sys::Uint8Array::new_with_length(u32::try_from(total).map_err(|_| too_large())?);
            let mut at = 0u32;
            for part in parts {
                // Each part is at most the total, which fits.
                let end = at + u32::try_from(part.len()).map_err(|_| too_large())?;
                arr.subarray(at, end).copy_from(&part);
                at = end;
                // `part` is dropped here, before the next one is copied.
            }
            Some(arr.into())
        }
        Body::Array(arr) => Some(arr.into()),
        Body::Text(t) => Some(JsValue::from_str(&t)),
        Body::Stream(s) => Some(s.into()),
    })
}

fn build(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
    redirect: RequestRedirect,
) -> Result<Request, NetError> {
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v)
            .map_err(|e| NetError::Invalid(format!("header {k}: {e}")))?;
    }
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(h)
        .with_redirect(redirect)
        .with_body(body_value(body)?);
    Request::new_with_init(url, &init).map_err(|e| NetError::Invalid(e.to_string()))
}

/// Sends a request; the reply's body is not read (use for downloads that are streamed on).
/// Redirects are followed (Storage and the providers' download URLs may redirect).
pub async fn send_streaming(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
    timeout_ms: u64,
) -> Result<Response, NetError> {
    send_with_redirect(
        method,
        url,
        headers,
        body,
        timeout_ms,
        RequestRedirect::Follow,
    )
    .await
}

/// Sends a request and returns a redirect as it is (`3xx`, not followed): for URLs a client
/// chose (webhooks), where following a `Location` would let the receiver point the worker at
/// any other host (request forgery past `WEBHOOK_ALLOWED_HOSTS`).
pub async fn send_no_redirect(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
    timeout_ms: u64,
) -> Result<Response, NetError> {
    send_with_redirect(
        method,
        url,
        headers,
        body,
        timeout_ms,
        RequestRedirect::Manual,
    )
    .await
}

async fn send_with_redirect(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
    timeout_ms: u64,
    redirect: RequestRedirect,
) -> Result<Response, NetError> {
    let req = build(method, url, headers, body, redirect)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetcher = Fetch::Request(req);
    let fetch = fetcher.send_with_signal(&signal);
    let mut timer = Timer::new(timeout_ms);
    futures::pin_mut!(fetch);
    match select(fetch, &mut timer.fired).await {
        Either::Left((Ok(resp), _)) => Ok(resp),
        Either::Left((Err(e), _)) => Err(NetError::Network(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(NetError::Timeout(timeout_ms))
        }
    }
}

/// A reply's whole body in one runtime call (`new Response(body).arrayBuffer()`), copied once into
/// WebAssembly memory. `worker::Response::bytes` reads a stream chunk by chunk through
/// `wasm-streams`, a boundary crossing and a reallocation per chunk: several times the CPU for the
/// small JSON replies of PostgREST, the providers and the Durable Objects. For bodies whose size is
/// known to be small (or capped by their `Content-Length`); model files stay streams.
pub async fn body_bytes(resp: &Response) -> worker::Result<Vec<u8>> {
    match resp.body() {
        worker::ResponseBody::Empty => Ok(Vec::new()),
        worker::ResponseBody::Body(bytes) => Ok(bytes.clone()),
        worker::ResponseBody::Stream(stream) => {
            let whole = web_sys::Response::new_with_opt_readable_stream(Some(stream))?;
            let buf = JsFuture::from(whole.array_buffer()?).await?;
            Ok(js_sys::Uint8Array::new(&buf).to_vec())
        }
    }
}

/// The `Content-Length` a request or reply declares, if it is a number.
pub fn content_length(headers: &Headers) -> Option<u64> {
    headers
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// A body read with a size cap.
pub enum Capped {
    /// The whole body, at most the cap.
    Complete(Vec<u8>),
    /// The body went past the cap: reading stopped there. `read` is what was read by then (the
    /// cap plus at most one chunk).
    TooLarge { read: usize },
}

/// Reads a byte stream up to `limit` bytes. Past the limit it stops and drops the stream,
/// which cancels it, so no more than `limit` plus one chunk is ever held — whatever the sender
/// claimed in `Content-Length`, or if it sent none (chunked).
///
/// `expected` (a declared `Content-Length`, at most `limit`) is reserved up front: a 20 MB body
/// then takes 20 MB of WebAssembly memory, not the 16 + 32 MB of a buffer grown by doubling
/// (the old and the new buffer live together while it grows, and WebAssembly memory never
/// shrinks afterwards).
pub async fn collect_capped(
    mut stream: worker::ByteStream,
    limit: usize,
    expected: Option<usize>,
) -> Result<Capped, NetError> {
    use futures::StreamExt;
    let mut out = Vec::with_capacity(expected.map_or(0, |n| n.min(limit)));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| NetError::Network(format!("reading body: {e}")))?;
        if out.len() + chunk.len() > limit {
            // Dropping the stream cancels it.
            drop(stream);
            return Ok(Capped::TooLarge {
                read: out.len() + chunk.len(),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Capped::Complete(out))
}

/// After a request body went past its limit, at most this much more of it is read and dropped
/// (never held) before reading stops.
pub const REQUEST_DRAIN_BYTES: usize = 16 << 20;

/// A request body read with [`read_request_capped`].
pub enum RequestBody {
    /// The whole body, at most the limit.
    Complete(Vec<u8>),
    /// The body went past the limit. `held` is the most that was ever kept in memory (at most
    /// the limit); `read` is how much was read in all, the rest dropped chunk by chunk.
    TooLarge { held: usize, read: usize },
}

/// Reads a request's body up to `limit` bytes, with or without `Content-Length` (chunked too).
/// Past the limit nothing more is kept: up to [`REQUEST_DRAIN_BYTES`] more are read and dropped
/// on the JavaScript side (never copied into WebAssembly memory), then reading stops. Draining
/// lets the client read our 413 (a server that closes with unread request bytes makes TCP reset
/// the connection, which can discard the answer: `wrangler dev`'s proxy does exactly that), and
/// the cap keeps a huge body from costing more than a bounded read. A body whose
/// `Content-Length` is within the limit is read whole in one call.
pub async fn read_request_capped(req: &Request, limit: usize) -> Result<RequestBody, NetError> {
    use futures::StreamExt;
    let Some(raw) = req.inner().body() else {
        return Ok(RequestBody::Complete(Vec::new()));
    };
    if content_length(req.headers()).is_some_and(|n| n <= limit as u64) {
        // The runtime holds the body to its declared length: one call reads it whole.
        let buf = JsFuture::from(
            req.inner()
                .array_buffer()
                .map_err(|_| NetError::Network("reading the request body".into()))?,
        )
        .await
        .map_err(|_| NetError::Network("reading the request body".into()))?;
        return Ok(RequestBody::Complete(
            js_sys::Uint8Array::new(&buf).to_vec(),
        ));
    }
    let mut stream = wasm_streams::ReadableStream::from_raw(raw);
    let mut chunks = stream.get_reader().into_stream();
    let mut out = Vec::new();
    let mut held = 0;
    let mut read = 0usize;
    let mut over = false;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| NetError::Network("reading the request body".into()))?;
        let bytes = js_sys::Uint8Array::new(&chunk);
        let len = bytes.length() as usize;
        read = read.saturating_add(len);
        if over {
            if read > limit.saturating_add(REQUEST_DRAIN_BYTES) {
                break;
            }
            continue;
        }
        if out.len() + len > limit {
            over = true;
            held = out.len();
            out = Vec::new();
            continue;
        }
        let at = out.len();
        out.resize(at + len, 0);
        bytes.copy_to(&mut out[at..]);
    }
    Ok(if over {
        RequestBody::TooLarge { held, read }
    } else {
        RequestBody::Complete(out)
    })
}

/// Reads a reply's body up to `limit` bytes (see [`collect_capped`]; its `Content-Length`, if
/// any, is reserved up front); an empty body when the reply has none.
pub async fn read_capped(resp: &mut Response, limit: usize) -> Result<Capped, NetError> {
    let expected = content_length(resp.headers()).and_then(|n| usize::try_from(n).ok());
    if expected.is_some_and(|n| n <= limit) {
        // The runtime holds the body to its declared length: read it in one call.
        return Ok(Capped::Complete(
            body_bytes(resp)
                .await
                .map_err(|e| NetError::Network(format!("reading body: {e}")))?,
        ));
    }
    match resp.stream() {
        Ok(stream) => collect_capped(stream, limit, expected).await,
        Err(_) => {
            Ok(Capped::Complete(body_bytes(resp).await.map_err(|e| {
                NetError::Network(format!("reading body: {e}"))
            })?))
        }
    }
}

/// Largest error or metadata body read from a dependency (JSON error shapes, object info).
pub const SMALL_BODY_LIMIT: usize = 64 * 1024;

/// A reply with at most `limit` bytes of its body read; a longer body is cut there (the rest
/// is cancelled). For error and metadata replies whose size we do not control.
pub async fn into_small_reply(mut resp: Response, limit: usize) -> Result<Reply, NetError> {
    let status = resp.status_code();
    let headers = resp.headers().clone();
    let body = match read_capped(&mut resp, limit).await? {
        Capped::Complete(b) => b,
        Capped::TooLarge { .. } => Vec::new(),
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Headers as one string for [`js::fetch_small`] (and `reply`'s headers): name and value on
/// lines of their own. A line break cannot be part of a header, so one in a name or value is
/// refused here, as `Headers` would refuse it.
pub(crate) fn header_lines(headers: &[(&str, &str)]) -> Result<String, NetError> {
    let mut out = String::with_capacity(headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in headers {
        if k.contains(['\n', '\r']) || v.contains(['\n', '\r']) {
            return Err(NetError::Invalid(format!("header {k}: a line break")));
        }
        out.push_str(k);
        out.push('\n');
        out.push_str(v);
        out.push('\n');
    }
    Ok(out)
}

/// Sends a request and reads the whole (small) reply, redirects followed. The request is built,
/// sent and its reply read in one call into JavaScript ([`js::fetch_small`]): building it field by
/// field across the boundary (`Headers`, `RequestInit`, `Request`, then reading the body through
/// a second `Response`) cost about a quarter of a millisecond per request. `timeout_ms` covers
/// the reply's body as well as its head. Its timer is cleared as soon as the reply is read:
/// `AbortSignal.timeout` cannot be cleared, and in a Durable Object (whose timers outlive the
/// request) each call would leave one pending for the whole timeout. `setTimeout` is the
/// runtime's own (`no_nodejs_global_timers` in wrangler.toml: Node's, the default with
/// `nodejs_compat`, builds a `Timeout` object in JavaScript on every call).
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
    timeout_ms: u64,
) -> Result<Reply, NetError> {
    let lines = header_lines(headers)?;
    let body = body_value(body)?.unwrap_or(JsValue::UNDEFINED);
    #[allow(clippy::cast_precision_loss)] // a timeout in ms is far below 2^53
    let promise = js::fetch_small(url, method.as_ref(), &lines, &body, timeout_ms as f64);
    let reply = JsFuture::from(promise)
        .await
        .map_err(|e| NetError::Invalid(js_text(&e)))?;
    let reply: js_sys::Array = reply.unchecked_into();
    let code = reply.get(0).as_f64().unwrap_or(-1.0);
    if code < 0.0 {
        let why = reply.get(1).as_string().unwrap_or_default();
        return Err(if code <= -2.0 {
            NetError::Timeout(timeout_ms)
        } else {
            NetError::Network(why)
        });
    }
    // A status is an integer in 200..=599 (`fetch` never answers with less).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let status = code as u16;
    let headers = Headers(reply.get(1).unchecked_into());
    let body = reply.get(2).unchecked_into::<js_sys::Uint8Array>().to_vec();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A thrown JavaScript value as text (an `Error`'s message, or the value itself).
pub(crate) fn js_text(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "a non-error value thrown".into())
}

mod js {
    use wasm_bindgen::prelude::wasm_bindgen;
    use wasm_bindgen::JsValue;

    #[wasm_bindgen(inline_js = r#"
export async function fetch_small(url, method, lines, body, ms) {
  const headers = new Headers();
  const p = lines.split('\n');
  for (let i = 0; i + 1 < p.length; i += 2) headers.set(p[i], p[i + 1]);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms);
  try {
    const r = await fetch(url, { method, headers, body, redirect: 'follow', signal: ctl.signal });
    return [r.status, r.headers, new Uint8Array(await r.arrayBuffer())];
  } catch (e) {
    return [ctl.signal.aborted ? -2 : -1, String(e && e.message || e)];
  } finally {
    clearTimeout(timer);
  }
}
"#)]
    extern "C" {
        /// Resolves to `[status, Headers, Uint8Array]`, or `[-1, why]` when the request got no
        /// answer and `[-2, why]` when it timed out; rejects only when a header is refused.
        pub fn fetch_small(
            url: &str,
            method: &str,
            lines: &str,
            body: &JsValue,
            ms: f64,
        ) -> js_sys::Promise;
    }
}
