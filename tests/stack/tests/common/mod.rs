//! Helpers shared by the stack's integration tests: starting a stack for one
//! test, and a small PostgREST client that goes through the gateway.

#![allow(dead_code)]

use reqwest::Method;
use serde_json::Value;
use stack::{Stack, StackOptions};

/// Starts a temp-dir stack for the repository and prints how long it took.
pub async fn start(test: &str) -> Stack {
    let stack = Stack::start(StackOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{test}: Stack::start failed: {e}"));
    eprintln!(
        "{test}: Stack::start took {:.2}s",
        stack.startup.as_secs_f64()
    );
    stack
}

/// A response: status and JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The PostgREST error code (`code`), if the body is an error.
    pub fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }

    /// The body as an array (panics otherwise, with the reply shown).
    pub fn rows(&self) -> &Vec<Value> {
        self.body
            .as_array()
            .unwrap_or_else(|| panic!("expected an array: {self:?}"))
    }
}

/// Who is calling: the `apikey` is always the anon or service key; the bearer
/// token is the user's JWT, the service key, or nothing.
#[derive(Clone)]
pub struct Caller {
    pub apikey: String,
    pub bearer: Option<String>,
}

impl Caller {
    pub fn service(stack: &Stack) -> Self {
        Caller {
            apikey: stack.service_key.clone(),
            bearer: Some(stack.service_key.clone()),
        }
    }

    pub fn anon(stack: &Stack) -> Self {
        Caller {
            apikey: stack.anon_key.clone(),
            bearer: None,
        }
    }

    pub fn user(stack: &Stack, token: &str) -> Self {
        Caller {
            apikey: stack.anon_key.clone(),
            bearer: Some(token.to_string()),
        }
    }
}

/// `{supabase_url}/rest/v1/{path_and_query}` as `caller`.
pub async fn rest(
    stack: &Stack,
    caller: &Caller,
    method: Method,
    path_and_query: &str,
    body: Option<Value>,
    prefer: Option<&str>,
) -> Reply {
    let url = format!("{}/rest/v1/{path_and_query}", stack.supabase_url);
    let mut req = reqwest::Client::new()
        .request(method.clone(), &url)
        .header("apikey", &caller.apikey);
    if let Some(token) = &caller.bearer {
        req = req.bearer_auth(token);
    }
    if let Some(prefer) = prefer {
        req = req.header("Prefer", prefer);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("reading the body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply { status, body }
}
