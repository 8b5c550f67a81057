//! The shared context of the suite: the local stack, the worker under `wrangler dev`, an HTTP
//! client, users, and helpers that make assertions read like the contract.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use e2e::{WorkerOptions, WorkerProcess};
use libtest_mimic::Failed;
use serde_json::Value;
use stack::{Stack, StackOptions};

pub type CaseResult = Result<(), Failed>;

thread_local! {
    /// Set while a case runs on the hooks worker: its base URL.
    static ON_HOOKS: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}
pub type Case = fn(&Ctx) -> CaseResult;

/// A user of the local Supabase: id and access token.
#[derive(Clone)]
pub struct User {
    pub id: uuid::Uuid,
    pub token: String,
}

pub struct Ctx {
    pub rt: tokio::runtime::Runtime,
    pub http: reqwest::Client,
    pub stack: Stack,
    pub worker: Mutex<WorkerProcess>,
    /// A second worker with `AUTH_MODE=none` and `TEST_HOOKS=true` (the only mode in which the
    /// worker honours test hooks), started by the first case that needs forced deliveries.
    pub hooks: Mutex<Option<WorkerProcess>>,
    /// Workers that several cases share (e.g. the Tripo v3 ones, `tripo_v3.rs`), by name.
    pub shared_workers: Mutex<std::collections::BTreeMap<&'static str, WorkerProcess>>,
    pub base: String,
    pub alice: User,
    pub bob: User,
    /// A unique prefix for this run's task ids.
    pub run: String,
}

/// A response with its status, headers and body read.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Result<Value, Failed> {
        serde_json::from_str(&self.text)
            .map_err(|e| format!("body is not JSON ({e}): {}", self.text).into())
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Ctx {
    pub fn start() -> std::io::Result<Ctx> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let t0 = Instant::now();
        let stack = rt
            .block_on(Stack::start(StackOptions::default()))
            .map_err(io)?;
        eprintln!(
            "e2e: stack up in {:.1}s at {}",
            t0.elapsed().as_secs_f64(),
            stack.supabase_url
        );
        let alice = rt
            .block_on(stack.create_user("alice@e2e.test"))
            .map_err(io)?;
        let bob = rt.block_on(stack.create_user("bob@e2e.test")).map_err(io)?;
        let mut settings: Vec<(String, String)> = stack
            .worker_vars()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        // Key-rotation cases should not wait the production 30 s between JWKS fetches.
        settings.push(("JWKS_REFETCH_SECONDS".into(), "2".into()));
        // Webhooks to the fake receiver (tests/fake-providers `/__fake/webhooks/…`).
        settings.push(("WEBHOOK_ALLOWED_HOSTS".into(), "127.0.0.1".into()));
        settings.push(("WEBHOOK_SECRET".into(), crate::live::WEBHOOK_SECRET.into()));
        let worker = match WorkerProcess::start(WorkerOptions {
            settings,
            ..Default::default()
        }) {
            Ok(w) => w,
            Err(e) => {
                rt.block_on(stack.stop());
                return Err(e);
            }
        };
        let base = worker.base_url.clone();
        let http = reqwest::Client::builder().build().map_err(io)?;
        let run = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Ok(Ctx {
            rt,
            http,
            stack,
            worker: Mutex::new(worker),
            hooks: Mutex::new(None),
            shared_workers: Mutex::new(std::collections::BTreeMap::new()),
            base,
            alice: User {
                id: alice.0,
                token: alice.1,
            },
            bob: User {
                id: bob.0,
                token: bob.1,
            },
            run,
        })
    }

    pub fn stop(self) {
        if let Ok(mut w) = self.worker.lock() {
            w.stop();
        }
        if let Ok(mut h) = self.hooks.lock() {
            if let Some(w) = h.as_mut() {
                w.stop();
            }
        }
        if let Ok(mut shared) = self.shared_workers.lock() {
            for w in shared.values_mut() {
                w.stop();
            }
        }
        self.rt.block_on(self.stack.stop());
    }

    pub fn worker_log_tail(&self, n: usize) -> String {
        self.worker
            .lock()
            .map(|w| w.log_tail(n))
            .unwrap_or_default()
    }

    /// The log of the worker this thread's case talks to (see [`Ctx::on_hooks_worker`]).
    pub fn current_log(&self) -> String {
        if ON_HOOKS.with(|h| h.borrow().is_some()) {
            if let Ok(h) = self.hooks.lock() {
                return h.as_ref().map(WorkerProcess::log).unwrap_or_default();
            }
        }
        self.worker.lock().map(|w| w.log()).unwrap_or_default()
    }

    /// The base URL of the worker this thread's case talks to.
    pub fn current_base(&self) -> String {
        ON_HOOKS
            .with(|h| h.borrow().clone())
            .unwrap_or_else(|| self.base.clone())
    }

    /// Runs `case` against the hooks worker (`AUTH_MODE=none`, `TEST_HOOKS=true`): every
    /// `Ctx` request and log read made on this thread goes there until it returns. Cases run on
    /// threads of their own, so others keep the suite's worker.
    pub fn on_hooks_worker(&self, case: impl FnOnce() -> CaseResult) -> CaseResult {
        let base = {
            let mut h = self
                .hooks
                .lock()
                .map_err(|_| "hooks worker lock poisoned")?;
            if h.is_none() {
                let mut settings: Vec<(String, String)> = self
                    .stack
                    .worker_vars()
                    .into_iter()
                    .filter(|(k, _)| *k != "AUTH_MODE")
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                settings.push(("AUTH_MODE".into(), "none".into()));
                settings.push(("TEST_HOOKS".into(), "true".into()));
                let w = WorkerProcess::start(WorkerOptions {
                    settings,
                    // The suite's worker built `build/` already (see models.rs `own_worker`).
                    build_profile: "--version".into(),
                    ..Default::default()
                })
                .map_err(|e| format!("could not start the hooks worker: {e}"))?;
                *h = Some(w);
            }
            h.as_ref().map(|w| w.base_url.clone()).unwrap_or_default()
        };
        ON_HOOKS.with(|h| *h.borrow_mut() = Some(base));
        let result = case();
        ON_HOOKS.with(|h| *h.borrow_mut() = None);
        result
    }

    /// The `user_id` the worker records for `user`: theirs, or the fixed local user on the
    /// hooks worker (`AUTH_MODE=none`).
    pub fn owner_id(&self, user: &User) -> String {
        if ON_HOOKS.with(|h| h.borrow().is_some()) {
            stack::LOCAL_USER_ID.to_string()
        } else {
            user.id.to_string()
        }
    }

    /// The worker's structured log lines (JSON objects) that mention `needle`.
    pub fn worker_events(&self, needle: &str) -> Vec<Value> {
        events_in(&self.current_log(), needle)
    }

    /// A fresh task id for one case.
    pub fn task_id(&self, case: &str) -> String {
        format!(
            "{}-{}-{}",
            self.run,
            case,
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        )
    }

    /// Any request to any URL; the whole reply is read.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, Failed> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        self.rt.block_on(async {
            let mut req = self.http.request(method, url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.body(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| format!("request to {url} failed: {e}"))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            Ok(Reply {
                status,
                headers,
                text,
            })
        })
    }

    /// A request to the worker.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Reply, Failed> {
        self.request(
            method,
            &format!("{}{}", self.current_base(), path),
            headers,
            body.map(|b| b.as_bytes().to_vec()),
        )
    }

    /// `POST /generate/{endpoint}` as `user` with a JSON body.
    pub fn generate(&self, user: &User, endpoint: &str, body: &Value) -> Result<Reply, Failed> {
        let auth = format!("Bearer {}", user.token);
        self.call(
            "POST",
            &format!("/generate/{endpoint}"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(&body.to_string()),
        )
    }

    /// `GET /tasks/{id}/status{query}` as `user`.
    pub fn status(&self, user: &User, task_id: &str, query: &str) -> Result<Reply, Failed> {
        let auth = format!("Bearer {}", user.token);
        self.call(
            "GET",
            &format!("/tasks/{task_id}/status{query}"),
            &[("authorization", &auth)],
            None,
        )
    }

    /// Uploads `bytes` to the input bucket at `{user}/{name}` with the service key; returns the
    /// authenticated object URL the client would send.
    pub fn upload_input(
        &self,
        user: &User,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, Failed> {
        let path = format!("{}/{}", user.id, name);
        let url = format!(
            "{}/storage/v1/object/{}/{}",
            self.stack.supabase_url, self.stack.input_bucket, path
        );
        let auth = format!("Bearer {}", self.stack.service_key);
        let r = self.request(
            "POST",
            &url,
            &[
                ("authorization", &auth),
                ("content-type", content_type),
                ("x-upsert", "true"),
            ],
            Some(bytes),
        )?;
        check(r.status == 200, || {
            format!("upload failed: {} {}", r.status, r.text)
        })?;
        Ok(format!(
            "{}/storage/v1/object/authenticated/{}/{}",
            self.stack.supabase_url, self.stack.input_bucket, path
        ))
    }

    /// Rows of `table` for `task_id`, read with the service key through PostgREST.
    pub fn rows(&self, table: &str, task_id: &str) -> Result<Vec<Value>, Failed> {
        let url = format!(
            "{}/rest/v1/{table}?task_id=eq.{}&order=created_at.asc,id.asc",
            self.stack.supabase_url,
            urlencode(task_id)
        );
        let auth = format!("Bearer {}", self.stack.service_key);
        let r = self.request(
            "GET",
            &url,
            &[
                ("apikey", &self.stack.service_key),
                ("authorization", &auth),
            ],
            None,
        )?;
        check(r.status == 200, || {
            format!("rows query failed: {} {}", r.status, r.text)
        })?;
        Ok(r.json()?.as_array().cloned().unwrap_or_default())
    }

    /// Inserts a finished `models` row of `user` whose Tripo id is `tripo_id` (with the service
    /// key, as the worker would have): a draft that user may refine.
    pub fn seed_model_row(&self, user: &User, task_id: &str, tripo_id: &str) -> CaseResult {
        let url = format!("{}/rest/v1/models", self.stack.supabase_url);
        let auth = format!("Bearer {}", self.stack.service_key);
        let row = serde_json::json!({
            "task_id": task_id, "user_id": user.id.to_string(), "status": "complete",
            "ai_service_task_id": tripo_id, "prompt": "a seeded draft",
            "metadata": {"step": "model", "attempt": 1},
        });
        let r = self.request(
            "POST",
            &url,
            &[
                ("apikey", &self.stack.service_key),
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("prefer", "return=minimal"),
            ],
            Some(row.to_string().into_bytes()),
        )?;
        check(r.status == 201, || {
            format!("seeding a models row: {} {}", r.status, r.text)
        })
    }

    /// Waits until `f` returns `Some`, polling every 200 ms, up to `limit`.
    pub fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        mut f: impl FnMut() -> Result<Option<T>, Failed>,
    ) -> Result<T, Failed> {
        let start = Instant::now();
        loop {
            if let Some(v) = f()? {
                return Ok(v);
            }
            if start.elapsed() > limit {
                return Err(format!("timed out after {limit:?} waiting for {what}").into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The queue deliveries the worker handled for `task_id`: one line each carries its receipt
    /// (`delivery`; `core::log::Carry`).
    pub fn jobs_received(&self, task_id: &str) -> Vec<Value> {
        deliveries_in(&self.current_log(), task_id)
    }
}

/// Minimal percent-encoding for query values.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A tiny valid PNG (1×1), optionally carrying text (a tEXt chunk) so fakes can read directives.
pub fn png(text: &str) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32(&c).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
    if !text.is_empty() {
        let mut t = b"Comment\0".to_vec();
        t.extend_from_slice(text.as_bytes());
        chunk(&mut out, b"tEXt", &t);
    }
    // zlib stream of one stored block: filter byte 0 + RGB(255,0,0).
    let raw = [0u8, 255, 0, 0];
    let mut z = vec![0x78, 0x01, 0x01, 4, 0, !4u8, 0xff];
    z.extend_from_slice(&raw);
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
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
    check(r.status == status, || {
        format!("expected {status} {code}, got {}: {}", r.status, r.text)
    })?;
    let v = r.json()?;
    check(v["error"]["code"] == code, || {
        format!("expected code {code}: {}", r.text)
    })?;
    check(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        || format!("no message: {}", r.text),
    )?;
    check(v.as_object().is_some_and(|o| o.len() == 1), || {
        format!("extra top-level keys: {}", r.text)
    })
}

/// The structured lines (JSON objects) of a worker log that mention `needle`.
/// The lines of `log` that carry a queue delivery's receipt (`delivery`) for `task_id`: one per
/// delivery handled, in the line of the first event it led to, or its own `job.handled`.
pub fn deliveries_in(log: &str, task_id: &str) -> Vec<Value> {
    events_in(log, task_id)
        .into_iter()
        .filter(|v| v["delivery"].is_object() && v["task_id"] == task_id)
        .collect()
}

pub fn events_in(log: &str, needle: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.contains(needle))
        // wrangler wraps warn/error lines in colour codes: keep only `{ … }`.
        .filter_map(|l| {
            let (i, j) = (l.find('{')?, l.rfind('}')?);
            (i < j)
                .then(|| serde_json::from_str::<Value>(&l[i..=j]).ok())
                .flatten()
        })
        .collect()
}
