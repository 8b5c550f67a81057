//! Test-only fakes of the two providers of makeit3d-bff, on one local HTTP port, following
//! `shared/reference/providers.md`:
//!
//! * **OpenAI Images** — `POST /v1/images/edits` (PART 2), see `openai.rs`.
//! * **Tripo v2** — `/v2/openapi/{task, task/{id}, upload, upload/sts, upload/sts/token,
//!   user/balance}` (PART 1, recipe §1.13), see `tripo/`.
//! * **Tripo v3** — `/v3/{generation/*-to-model, models/refine, tasks/{id}, files,
//!   account/balance}` (§1.14) and signed webhooks to a registered endpoint (§1.10), with the
//!   `webhook_*` faults, see `tripo/v3.rs`.
//! * **Output files** — `GET /__fake/files/{task_id}/{kind}.glb|.webp?expires=<unix>`: streamed,
//!   deterministic GLB models ([`glb_chunk`], [`glb_sha256_hex`]) and WebP previews.
//! * **Test control** — `/__fake/directives`, `/__fake/log`, `/__fake/keys`, `/__fake/tasks/{id}`,
//!   `/__fake/health` (see `control.rs`), `/__fake/chaos` (seeded random faults on every provider
//!   route, see `chaos.rs`; never on the control routes).
//!
//! Never compiled into the worker. Every request to a provider route is logged
//! (`GET /__fake/log?contains=<nonce>`).
//!
//! # Fault directives
//!
//! Tests run concurrently against one fake, so there are no global switches: each request
//! carries its own faults as a **directive**, `[[fake:item,item,...]]`, where an item is `key` or
//! `key=value` (spaces around items are ignored; unknown keys and bad values are rejected with
//! a 400 whose message starts with `fake-providers:`, so typos fail loudly).
//!
//! Where a directive is read from:
//!
//! * OpenAI: the `prompt` text.
//! * Tripo `text_to_model`: the `prompt` text.
//! * Tripo image tasks: the uploaded image bytes — put `[[fake:...]]` in, e.g., a PNG `tEXt`
//!   chunk ([`png_with_text`]); the upload token carries it to every task that uses it
//!   (multiview: the slots' directives are merged, front first). A `url` file object's URL
//!   text is scanned too.
//! * Tripo `refine_model`: the draft task's directive, unless a control rule matches the
//!   refine request itself.
//! * Control rules: `POST /__fake/directives {"match":"<substring>","directive":"..."}` applies
//!   the directive to any request whose prompt or uploaded file (Tripo: or raw JSON body)
//!   contains the substring. Embedded directives come first; for a key set by both, the
//!   embedded value wins.
//!
//! Several directives for one request are merged (first value of each key wins); the merged
//! **text** (e.g. `openai_429=2,nonce=abc`) keys the "first N calls" counters, so two tests
//! with different nonces never share a counter.
//!
//! | key | provider | effect |
//! |---|---|---|
//! | `nonce=<text>` | both | no effect; makes the directive (and so its counters and log entries) unique |
//! | `openai_429=N` | OpenAI | the first N calls → 429 `rate_limit_exceeded`, `Retry-After`, `retry-after-ms`, `x-ratelimit-remaining-requests: 0`, `x-ratelimit-reset-*` |
//! | `retry_after=S` | both | seconds for `Retry-After` of `openai_429` / `create_2000` (default 1) |
//! | `openai_500=N` | OpenAI | the first N calls (that got past `openai_429`) → 500 `server_error` |
//! | `moderation` | both | OpenAI → 400 `moderation_blocked` (with `moderation_details`); Tripo create → 400/2008 |
//! | `invalid_key` | OpenAI | → 401 `invalid_api_key` |
//! | `quota` | OpenAI | → 429 `insufficient_quota` (no `Retry-After`) |
//! | `openai_delay_ms=N` | OpenAI | wait N ms before answering (real time) |
//! | `invalid_image` | OpenAI | → 400 `invalid_image_file` |
//! | `create_2000=N` | Tripo | the first N creates → 429/2000 with `Retry-After: retry_after` |
//! | `create_5xx=N` | Tripo | the first N creates (that got past `create_2000`) → 500/1000 |
//! | `no_credits` | Tripo | create → 403/2010 |
//! | `final=success\|failed\|banned\|expired\|cancelled\|unknown` | Tripo | the status the task ends in (`failed` gets `error_code` 1001, `banned` 2008; `unknown` stays `unknown` forever) |
//! | `error_code=N` | Tripo | `error_code` of the final status |
//! | `queue_s=X` / `run_s=X` | Tripo | fake seconds in `queued` / `running` (defaults 1 and 2) |
//! | `poll_5xx=N` | Tripo | the first N `GET /task/{id}` of this task → 500/1000 |
//! | `glb_bytes=N` | Tripo | size of the task's model files (default 65536; see [`glb_bytes_len`]) |
//! | `no_left_time` | Tripo | `running_left_time` stays -1 while running |
//! | `no_limit` | Tripo | the task neither counts against nor is refused by the per-key concurrency limit (benchmarks) |
//! | `progress=A/B/…` | Tripo | a plan instead of the clock: poll `k` answers `running` with the `k`-th value (0–99) and `running_left_time` 1, every later poll the final status (`final`, default `success`) |
//! | `slow_ms=N` | Tripo | wait N ms before answering any request about this upload / task (create, poll, file download) |
//! | `url_ttl_s=X` | Tripo | lifetime of the task's output URLs in real seconds (default 300) |
//!
//! OpenAI faults are checked in this order, after authentication and validation:
//! `openai_delay_ms` (first of all), `invalid_key`, `openai_429`, `quota`, `openai_500`,
//! `moderation`, `invalid_image`. Tripo create: validation, input lookup, `slow_ms`,
//! `create_2000`, `create_5xx`, `moderation`, `no_credits`, concurrency (429/2000), balance.
//!
//! # Time
//!
//! [`FakeConfig::time_scale`] is a speed factor for Tripo task timelines only: fake seconds
//! (`queue_s`, `run_s`) are divided by it, so `10.0` turns the default 3-second task into
//! 0.3 s. Reported `running_left_time` is in real seconds. Delays (`*_ms`), `Retry-After`
//! and URL lifetimes are real time.
//!
//! # Reproducible outputs
//!
//! * OpenAI `data[i].b64_json` is [`concept_png`]`(prompt, i)` (or its WebP / JPEG twin, see
//!   [`concept_image`], when `output_format` asks for one): 64×64, solid colour.
//! * A Tripo model file is [`Glb::new`]`(`[`model_seed`]`(task_id, kind), glb_bytes)`: a
//!   textured cube that a glTF viewer shows (a triangle below [`TEXTURED_MIN_BYTES`]); a test
//!   can check a copy with [`glb_info`] (structure, seed, size) and [`glb_sha256_hex`] without
//!   downloading from the fake.

mod chaos;
mod control;
mod directives;
mod files;
mod glb;
mod image_formats;
mod log;
mod openai;
mod png;
mod tripo;
mod util;
pub mod webhooks;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use directives::{scan_text, Directive, FINAL_STATUSES};
pub use glb::{
    glb_bytes, glb_bytes_len, glb_chunk, glb_info, glb_sha256_hex, model_seed, Glb, GlbInfo,
    DEFAULT_GLB_BYTES, MAX_GLB_BYTES, MIN_GLB_BYTES, TEXTURED_MIN_BYTES,
};
pub use image_formats::{concept_image, jpeg_solid, webp_solid, ImageFormat};
pub use log::LogEntry;
pub use png::{
    concept_png, concept_rgb, encode_rgb, pad_png, png_dimensions, png_texts, png_with_text,
    solid_png, CONCEPT_SIZE,
};
pub use tripo::v3::sign as sign_tripo_webhook;

/// Largest request body accepted (OpenAI allows 16 images of < 50 MB; tests stay far below).
const BODY_LIMIT: usize = 160 * 1024 * 1024;

/// How to start the fakes.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The OpenAI key the fake accepts (`Authorization: Bearer <key>`).
    pub openai_key: String,
    /// The Tripo key the fake accepts; must start with `tsk_`.
    pub tripo_key: String,
    /// Speed factor of Tripo task timelines (1.0 = real time, 10.0 = ten times faster).
    pub time_scale: f64,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            openai_key: "sk-fake-openai-0123456789".to_string(),
            tripo_key: "tsk_fake_tripo_0123456789".to_string(),
            time_scale: 1.0,
        }
    }
}

/// State shared by every handler.
pub(crate) struct Shared {
    pub cfg: FakeConfig,
    pub addr: SocketAddr,
    pub counters: directives::Counters,
    pub matches: directives::MatchRules,
    pub log: log::RequestLog,
    pub openai: openai::OpenAiState,
    pub tripo: tripo::tasks::TripoState,
    pub tripo_webhooks: tripo::v3::Webhooks,
    pub chaos: ::chaos::Chaos,
    extra_keys: Mutex<HashSet<String>>,
}

impl Shared {
    fn extra_key(&self, key: &str) -> bool {
        self.extra_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    pub fn openai_key_ok(&self, key: &str) -> bool {
        key == self.cfg.openai_key || self.extra_key(key)
    }

    pub fn tripo_key_ok(&self, key: &str) -> bool {
        key == self.cfg.tripo_key || self.extra_key(key)
    }

    pub fn add_key(&self, key: &str) {
        self.extra_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string());
    }

    /// `host:port` to reach this server when a request carries no `Host` header.
    pub fn local_authority(&self) -> String {
        authority(self.addr)
    }
}

fn authority(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        match addr.ip() {
            IpAddr::V6(_) => "[::1]".to_string(),
            IpAddr::V4(_) => "127.0.0.1".to_string(),
        }
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("{ip}:{}", addr.port())
}

/// Unknown routes: answered in the style of whichever provider owns the prefix.
async fn fallback(req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    if path == "/v1" || path.starts_with("/v1/") {
        openai::not_found(&method, &path)
    } else if path.starts_with("/v2/openapi") {
        tripo::not_found(&method, &path)
    } else if path == "/v3" || path.starts_with("/v3/") {
        tripo::v3::not_found(&method, &path)
    } else {
        (axum::http::StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/images/edits", post(openai::images_edits))
        .route("/v2/openapi/task", post(tripo::create_task))
        .route("/v2/openapi/task/{id}", get(tripo::get_task))
        .route("/v2/openapi/upload", post(tripo::upload))
        .route("/v2/openapi/upload/sts", post(tripo::upload))
        .route("/v2/openapi/upload/sts/token", post(tripo::sts_token))
        .route("/v2/openapi/user/balance", get(tripo::balance))
        .route("/__fake/files/{task_id}/{file}", get(files::serve))
        .route("/__fake/openai-files/{file}", get(openai::hosted_image))
        .merge(tripo::v3::routes())
        .merge(control::routes())
        .merge(webhooks::routes())
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Inside the log's edge, so the log records what chaos answered (and marks it).
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            chaos::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            log::edge,
        ))
        .with_state(shared)
}

/// The running fakes. Dropping it without [`Fakes::stop`] aborts the server.
pub struct Fakes {
    /// The bound address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Fakes {
    /// Binds `cfg.listen` and serves both fakes until [`Fakes::stop`].
    pub async fn start(cfg: FakeConfig) -> std::io::Result<Fakes> {
        if !(cfg.time_scale.is_finite() && cfg.time_scale > 0.0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "time_scale must be a positive number, got {}",
                    cfg.time_scale
                ),
            ));
        }
        if !cfg.tripo_key.starts_with("tsk_") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "tripo_key must start with tsk_ (real Tripo keys do)",
            ));
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            addr,
            counters: Default::default(),
            matches: Default::default(),
            log: Default::default(),
            openai: Default::default(),
            tripo: Default::default(),
            tripo_webhooks: Default::default(),
            chaos: ::chaos::Chaos::new(chaos::KINDS, chaos::DEFAULT_HOLD),
            extra_keys: Mutex::new(HashSet::new()),
        });
        let app = router(Arc::clone(&shared));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Fakes {
            addr,
            shared,
            shutdown: Some(tx),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT` (or the bound IP when it is not a wildcard).
    pub fn base_url(&self) -> String {
        format!("http://{}", authority(self.addr))
    }

    /// `http://127.0.0.1:PORT/v1`; the worker calls `{base}/images/edits`.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// `http://127.0.0.1:PORT/v2/openapi`; the worker calls `{base}/task`, `{base}/upload/sts`, ...
    pub fn tripo_base_url(&self) -> String {
        format!("{}/v2/openapi", self.base_url())
    }

    /// `http://127.0.0.1:PORT/v3`: the Tripo v3 fake (`TRIPO_V3_BASE_URL`).
    pub fn tripo_v3_base_url(&self) -> String {
        format!("{}/v3", self.base_url())
    }

    /// In-process twin of `PUT /__fake/tripo/webhook`: Tripo webhooks of `key`'s v3 tasks go to
    /// `url`, signed with `secret` (`whsec_…`).
    pub fn set_tripo_webhook(&self, key: &str, url: &str, secret: &str) {
        self.shared.tripo_webhooks.register(key, url, secret);
    }

    /// In-process twin of `GET /__fake/tripo/webhooks?task=`: the webhook delivery attempts.
    pub fn tripo_webhook_deliveries(&self, tripo_task_id: Option<&str>) -> Vec<serde_json::Value> {
        self.shared.tripo_webhooks.deliveries(tripo_task_id)
    }

    /// The OpenAI key the fake accepts.
    pub fn openai_key(&self) -> &str {
        &self.shared.cfg.openai_key
    }

    /// The Tripo key the fake accepts.
    pub fn tripo_key(&self) -> &str {
        &self.shared.cfg.tripo_key
    }

    /// In-process twin of `POST /__fake/directives`; returns the rule id.
    pub fn add_directive(&self, matching: &str, directive: &str) -> Result<u64, String> {
        let d = Directive::parse(directive)?;
        self.shared.matches.add(matching, d)
    }

    /// In-process twin of `GET /__fake/log?contains=`.
    pub fn log(&self, contains: Option<&str>) -> Vec<serde_json::Value> {
        self.shared.log.query(contains)
    }

    /// In-process twin of `POST /__fake/chaos`: switches chaos mode on (see the `chaos` crate).
    pub fn set_chaos(&self, spec: ::chaos::ChaosSpec) -> Result<(), String> {
        self.shared.chaos.set(spec)
    }

    /// In-process twin of `DELETE /__fake/chaos`: switches chaos off; the session's counters.
    pub fn clear_chaos(&self) -> ::chaos::ChaosStats {
        self.shared.chaos.clear()
    }

    /// In-process twin of `GET /__fake/chaos`.
    pub fn chaos_stats(&self) -> ::chaos::ChaosStats {
        self.shared.chaos.stats()
    }

    /// In-process twin of `POST /__fake/keys`: accept another key (for either provider).
    pub fn add_key(&self, key: &str) {
        self.shared.add_key(key);
    }

    /// Stops accepting connections and waits (at most 2 s) for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
