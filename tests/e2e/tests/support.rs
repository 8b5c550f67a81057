//! The shared context of the suite: the local stack, the worker under `wrangler dev`, an HTTP
//! client, and helpers that make assertions read like the contract.

use std::sync::Mutex;

use e2e::{WorkerOptions, WorkerProcess};
use libtest_mimic::Failed;
use serde_json::Value;

pub type CaseResult = Result<(), Failed>;
pub type Case = fn(&Ctx) -> CaseResult;

pub struct Ctx {
    pub rt: tokio::runtime::Runtime,
    pub http: reqwest::Client,
    pub worker: Mutex<WorkerProcess>,
    pub base: String,
}

/// A response with its status, headers and body read.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Result<Value, Failed> {
        serde_json::from_str(&self.text).map_err(|e| format!("body is not JSON ({e}): {}", self.text).into())
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

impl Ctx {
    pub fn start() -> std::io::Result<Ctx> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let settings = vec![("AUTH_MODE".to_string(), "supabase".to_string())];
        let worker = WorkerProcess::start(WorkerOptions { settings, ..Default::default() })?;
        let base = worker.base_url.clone();
        let http = reqwest::Client::builder().build().map_err(std::io::Error::other)?;
        Ok(Ctx { rt, http, worker: Mutex::new(worker), base })
    }

    pub fn stop(self) {
        if let Ok(mut w) = self.worker.lock() {
            w.stop();
        }
    }

    pub fn worker_log_tail(&self, n: usize) -> String {
        self.worker.lock().map(|w| w.log_tail(n)).unwrap_or_default()
    }

    /// Sends a request to the worker and reads the whole reply.
    pub fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Result<Reply, Failed> {
        let url = format!("{}{}", self.base, path);
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        self.rt.block_on(async {
            let mut req = self.http.request(method, &url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.body(b.to_owned());
            }
            let resp = req.send().await.map_err(|e| format!("request failed: {e}"))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            Ok(Reply { status, headers, text })
        })
    }
}

/// Fails with a message when `cond` is false.
pub fn check(cond: bool, msg: impl FnOnce() -> String) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

/// Asserts the error shape of SPEC §4.4 with the given status and code.
pub fn expect_error(r: &Reply, status: u16, code: &str) -> CaseResult {
    check(r.status == status, || format!("expected {status}, got {}: {}", r.status, r.text))?;
    let v = r.json()?;
    check(v["error"]["code"] == code, || format!("expected code {code}: {}", r.text))?;
    check(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), || format!("no message: {}", r.text))?;
    check(v.as_object().is_some_and(|o| o.len() == 1), || format!("extra top-level keys: {}", r.text))
}
