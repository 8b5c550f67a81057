//! Calls to a Durable Object over its stub: one JSON request to `https://object{path}` of the
//! object named `name` (`idFromName`) in namespace `binding`. The one helper behind every call
//! to the task, gate and user-limits objects; their wire contracts are in `core::*_wire` and
//! `user_limits`; [`read_json`] is the objects' side of that wire.

use serde::{de::DeserializeOwned, Serialize};
use wasm_bindgen::JsCast;
use worker::{Env, Request, Response};

use crate::core::error::{DepError, Dependency};

/// An object's answer: its status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body decoded; `dependency` names the object in the error.
    pub fn decode<R: DeserializeOwned>(&self, dependency: Dependency) -> Result<R, DepError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| DepError::new(dependency, None, e.to_string()))
    }

    /// The answer as a failure of `dependency`, with the object's status and body.
    pub fn into_error(self, dependency: Dependency) -> DepError {
        DepError::new(
            dependency,
            Some(self.status),
            String::from_utf8_lossy(&self.body).into_owned(),
        )
    }
}

fn failed(dependency: Dependency) -> impl Fn(worker::Error) -> DepError {
    move |e| DepError::new(dependency, None, e.to_string())
}

/// POSTs `body` as JSON to the object at `path` and reads its whole answer, whatever its status.
pub async fn post<B: Serialize + ?Sized>(
    env: &Env,
    dependency: Dependency,
    binding: &str,
    name: &str,
    path: &str,
    body: &B,
) -> Result<Answer, DepError> {
    let text =
        serde_json::to_string(body).map_err(|e| DepError::new(dependency, None, e.to_string()))?;
    let ns = env.durable_object(binding).map_err(failed(dependency))?;
    let stub: wasm_bindgen::JsValue = ns.get_by_name(name).map_err(failed(dependency))?.into_rpc();
    let url = format!("https://object{path}");
    let reply = wasm_bindgen_futures::JsFuture::from(js::post_json(&stub, &url, &text))
        .await
        .map_err(|e| failed(dependency)(worker::Error::from(e)))?;
    let reply: js_sys::Array = reply.unchecked_into();
    // An HTTP status is an integer in 100..=599; anything else reads as 0 (not a success).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let status = reply
        .get(0)
        .as_f64()
        .filter(|s| (100.0..=599.0).contains(s))
        .map_or(0, |s| s as u16);
    let body = reply.get(1).unchecked_into::<js_sys::Uint8Array>().to_vec();
    Ok(Answer { status, body })
}

/// [`post`], with a 2xx answer decoded and any other a failure carrying its status and body.
pub async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
    env: &Env,
    dependency: Dependency,
    binding: &str,
    name: &str,
    path: &str,
    body: &B,
) -> Result<R, DepError> {
    let answer = post(env, dependency, binding, name, path, body).await?;
    if answer.is_success() {
        answer.decode(dependency)
    } else {
        Err(answer.into_error(dependency))
    }
}

/// Sends `req` to the object as it is and returns its raw answer (a stream or a WebSocket
/// upgrade is passed through, never read).
pub async fn forward(
    env: &Env,
    dependency: Dependency,
    binding: &str,
    name: &str,
    req: Request,
) -> Result<Response, DepError> {
    let ns = env.durable_object(binding).map_err(failed(dependency))?;
    let stub = ns.get_by_name(name).map_err(failed(dependency))?;
    stub.fetch_with_request(req)
        .await
        .map_err(failed(dependency))
}

/// An object's side of the wire: the request's JSON body as `T`, read as text in one call and
/// parsed inside WebAssembly (`Request::json` parses in JavaScript, then walks the object graph
/// field by field through `serde_wasm_bindgen`).
pub async fn read_json<T: DeserializeOwned>(req: &mut Request) -> worker::Result<T> {
    let text = req.text().await?;
    serde_json::from_str(&text).map_err(worker::Error::from)
}

/// The request and its answer in one call into JavaScript: a plain init object instead of
/// `Headers`, `RequestInit` and `Request` built field by field across the boundary, and the
/// answer's status and bytes back together.
mod js {
    use wasm_bindgen::prelude::wasm_bindgen;
    use wasm_bindgen::JsValue;

    #[wasm_bindgen(
        inline_js = "export async function post_json(stub, url, text) { const r = await stub.fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text }); return [r.status, new Uint8Array(await r.arrayBuffer())]; }"
    )]
    extern "C" {
        pub fn post_json(stub: &JsValue, url: &str, text: &str) -> js_sys::Promise;
    }
}
