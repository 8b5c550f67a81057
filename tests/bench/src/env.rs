//! The benchmark's environment: the local stack, the release worker under `wrangler dev`, one
//! user, and the HTTP helpers the scenarios share.

use std::time::{Duration, Instant};

use e2e::{WorkerOptions, WorkerProcess};
use serde_json::{json, Value};
use stack::{Stack, StackOptions};

use crate::now_ms;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, BoxError>;

/// Users the submit loads spread over.
pub const SUBMIT_USERS: usize = 16;

pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub stack: Option<Stack>,
    /// The stack's gateway (the project URL): the worker's `SUPABASE_URL`.
    pub gw: String,
    pub worker: WorkerProcess,
    /// `wrangler dev`'s process group (for memory and CPU figures).
    pub pgid: Option<i32>,
    /// The worker's base URL.
    pub base: String,
    pub http: reqwest::Client,
    pub user_id: String,
    pub token: String,
    /// The tokens of the submit loads' users (the first is `token`'s user).
    pub submit_tokens: Vec<String>,
    pub service_key: String,
    pub bucket: String,
    pub input_bucket: String,
    /// Unique prefix of this run's task ids.
    pub run: String,
    /// Scratch files (wrk script, id lists).
    pub scratch: tempfile::TempDir,
    pub stack_startup_s: f64,
    pub worker_startup_s: f64,
    /// The worker's settings (its env file): more workers of the same build start with them.
    pub settings: Vec<(String, String)>,
}

/// A submit as the client saw it.
pub struct Submitted {
    pub task_id: String,
    pub status: u16,
    pub text: String,
    pub sent_ms: f64,
    pub done_ms: f64,
}

impl Env {
    pub fn start() -> Res<Env> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let scratch = tempfile::Builder::new()
            .prefix("makeit3d-bench-")
            .tempdir()?;
        let t0 = Instant::now();
        let stack = rt.block_on(Stack::start(StackOptions::default()))?;
        let stack_startup_s = t0.elapsed().as_secs_f64();
        eprintln!("bench: stack up in {stack_startup_s:.1}s");
        // The stack's gateway is the project URL (Storage allows 1 GiB uploads there, so the
        // 100 and 300 MiB model copies land).
        let gw = stack.supabase_url.clone();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        let (user, _) = rt.block_on(stack.create_user("bench@bench.test"))?;
        // Valid for the whole bench (the default user token lasts an hour).
        let token = stack.user_token(user, "bench@bench.test", 4 * 3600);
        // The submit loads spread over SUBMIT_USERS users, as a service's traffic is: the
        // per-user limits count each user in its own Durable Object (one user's submits are
        // handled one at a time there, and a real user submits a few a minute).
        let mut submit_tokens = vec![token.clone()];
        for i in 1..SUBMIT_USERS {
            let email = format!("bench{i}@bench.test");
            let (u, _) = rt.block_on(stack.create_user(&email))?;
            submit_tokens.push(stack.user_token(u, &email, 4 * 3600));
        }
        let mut settings: Vec<(String, String)> = stack
            .worker_vars()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        // The largest size of gpt-image-1/1.5 (the memory scenario's images are of that size).
        settings.push(("OPENAI_IMAGE_SIZE".into(), "1536x1024".into()));
        // BENCH_LIMITS=off: the per-user limits off (no UserLimits call per submit); otherwise
        // the stack's generous limits (every submit reserves a slot; nothing is refused).
        if std::env::var("BENCH_LIMITS").is_ok_and(|v| v.trim() == "off") {
            for name in [
                "RATE_LIMIT_SUBMITS_PER_MINUTE",
                "RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS",
                "MAX_ACTIVE_STEPS_PER_USER",
                "MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS",
            ] {
                settings.retain(|(k, _)| k != name);
                settings.push((name.into(), "0".into()));
            }
        }
        let t1 = Instant::now();
        eprintln!("bench: building the release worker and starting wrangler dev…");
        let worker = WorkerProcess::start(WorkerOptions {
            settings: settings.clone(),
            build_profile: "--release".into(),
            persist_to: None,
            port: None,
        })?;
        let worker_startup_s = t1.elapsed().as_secs_f64();
        let base = worker.base_url.clone();
        let pgid = worker.process_group().map(|p| p as i32);
        let run = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        Ok(Env {
            rt,
            service_key: stack.service_key.clone(),
            bucket: stack.bucket.clone(),
            input_bucket: stack.input_bucket.clone(),
            stack: Some(stack),
            gw,
            worker,
            pgid,
            base,
            http,
            user_id: user.to_string(),
            token,
            submit_tokens,
            run,
            scratch,
            stack_startup_s,
            worker_startup_s,
            settings,
        })
    }

    pub fn stop(mut self) {
        self.worker.stop();
        if let Some(s) = self.stack.take() {
            self.rt.block_on(s.stop());
        }
    }

    pub fn fakes(&self) -> &fake_providers::Fakes {
        self.stack
            .as_ref()
            .and_then(|s| s.fakes())
            .expect("the stack runs the provider fakes")
    }

    /// The provider fakes' request log entries that mention `needle`.
    pub fn fake_log(&self, needle: &str) -> Vec<Value> {
        self.fakes().log(Some(needle))
    }

    /// `POST /generate/{endpoint}`.
    pub async fn submit(&self, endpoint: &str, body: &Value) -> Submitted {
        let sent_ms = now_ms();
        let r = self
            .http
            .post(format!("{}/generate/{endpoint}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let (status, text) = match r {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        };
        Submitted {
            task_id: body["task_id"].as_str().unwrap_or_default().to_string(),
            status,
            text,
            sent_ms,
            done_ms: now_ms(),
        }
    }

    /// Submits `bodies` with at most `concurrency` in flight.
    pub async fn submit_all(
        &self,
        endpoint: &str,
        bodies: Vec<Value>,
        concurrency: usize,
    ) -> Vec<Submitted> {
        use futures::stream::{self, StreamExt};
        stream::iter(bodies)
            .map(|b| async move { self.submit(endpoint, &b).await })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    }

    async fn get_json(&self, url: &str) -> Res<(Value, reqwest::header::HeaderMap)> {
        let r = self
            .http
            .get(url)
            .header("apikey", &self.service_key)
            .bearer_auth(&self.service_key)
            .send()
            .await?;
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await?;
        if !status.is_success() {
            return Err(format!("GET {url}: {status} {text}").into());
        }
        Ok((serde_json::from_str(&text)?, headers))
    }

    /// Rows of `table` whose `task_id` starts with `prefix` (PostgREST `like`), via the gateway
    /// with the service key.
    pub async fn rows(&self, table: &str, prefix: &str, select: &str) -> Res<Vec<Value>> {
        let url = format!(
            "{}/rest/v1/{table}?select={select}&task_id=like.{}*",
            self.gw,
            urlencode(prefix)
        );
        let (v, _) = self.get_json(&url).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// How many rows of `table` under `prefix` are still `pending` or `processing`.
    pub async fn open_rows(&self, table: &str, prefix: &str) -> Res<u64> {
        let url = format!(
            "{}/rest/v1/{table}?select=task_id&status=in.(pending,processing)&task_id=like.{}*&limit=1",
            self.gw,
            urlencode(prefix)
        );
        let r = self
            .http
            .get(&url)
            .header("apikey", &self.service_key)
            .bearer_auth(&self.service_key)
            .header("prefer", "count=exact")
            .send()
            .await?;
        let range = r
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        range
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no count in content-range {range:?}").into())
    }

    /// Objects (not folders) directly under `prefix` in the generated-assets bucket: (name, size,
    /// updated_at ms).
    pub async fn objects(&self, prefix: &str) -> Res<Vec<(String, f64, f64)>> {
        let r = self
            .http
            .post(format!(
                "{}/storage/v1/object/list/{}",
                self.gw, self.bucket
            ))
            .header("apikey", &self.service_key)
            .bearer_auth(&self.service_key)
            .json(&json!({"prefix": prefix, "limit": 1000}))
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            return Err(format!("list {prefix}: {status} {text}").into());
        }
        let v: Value = serde_json::from_str(&text)?;
        Ok(v.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !e["id"].is_null())
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_string(),
                    e["metadata"]["size"].as_f64().unwrap_or(0.0),
                    e["updated_at"]
                        .as_str()
                        .and_then(crate::stats::parse_ts_ms)
                        .unwrap_or(f64::NAN),
                )
            })
            .collect())
    }

    /// The gateway's log of PostgREST requests under `path_prefix` whose body contains
    /// `contains`.
    pub async fn rest_log(
        &self,
        path_prefix: &str,
        method: &str,
        contains: &str,
    ) -> Res<Vec<Value>> {
        let url = format!(
            "{}/__fake/rest/log?path_prefix={}&method={method}&contains={}",
            self.gw,
            urlencode(path_prefix),
            urlencode(contains)
        );
        let (v, _) = self.get_json(&url).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Uploads an input image for the user; returns the URL a client would send.
    pub async fn upload_input(&self, name: &str, bytes: Vec<u8>) -> Res<String> {
        let path = format!("{}/{name}", self.user_id);
        let r = self
            .http
            .post(format!(
                "{}/storage/v1/object/{}/{path}",
                self.gw, self.input_bucket
            ))
            .bearer_auth(&self.service_key)
            .header("content-type", "image/png")
            .header("x-upsert", "true")
            .body(bytes)
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("upload: {} {}", r.status(), r.text().await?).into());
        }
        Ok(format!(
            "{}/storage/v1/object/authenticated/{}/{path}",
            self.gw, self.input_bucket
        ))
    }

    /// Waits until no row of `table` under `prefix` is open, at most `limit`; returns how long it
    /// took and how many were still open at the end.
    pub fn drain(&self, table: &str, prefix: &str, limit: Duration) -> (f64, u64) {
        let t0 = Instant::now();
        loop {
            let open = self.rt.block_on(self.open_rows(table, prefix)).unwrap_or(0);
            if open == 0 || t0.elapsed() >= limit {
                return (t0.elapsed().as_secs_f64(), open);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The worker's structured log lines (JSON) with `event`.
    pub fn worker_events(&self, event: &str) -> Vec<Value> {
        let needle = format!("\"event\":\"{event}\"");
        self.worker
            .log()
            .lines()
            .filter(|l| l.contains(&needle))
            // wrangler wraps warn/error lines in colour codes: keep only `{ … }`.
            .filter_map(|l| {
                let (i, j) = (l.find('{')?, l.rfind('}')?);
                (i < j)
                    .then(|| serde_json::from_str(&l[i..=j]).ok())
                    .flatten()
            })
            .collect()
    }
}

/// Percent-encoding for query values.
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
