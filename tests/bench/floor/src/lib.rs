//! The benchmark's floor worker (P13; README "Benchmarks"): the smallest Worker that does exactly
//! the I/O of the worker's three hot paths and nothing else, built and run the same way
//! (worker-build --release, `wrangler dev`, the same stack), so `scripts/bench.sh` can say what
//! the platform itself costs and how far the worker is from it.
//!
//! * `POST /generate/text-to-model` (submit): one HS256 verify (WebCrypto, the key imported
//!   once per isolate), the task's Durable Object created with a small record stored, one
//!   PostgREST insert of the `models` row (the worker's row, minimal), one queue send.
//! * `GET /tasks/{id}/status`: the verify, one Durable Object read, the owner compared.
//! * The queue consumer (a Tripo job): one Durable Object claim, one Tripo create call, one
//!   Durable Object write, one PATCH of the row. A batch's jobs run together, as the worker's do.
//!
//! Every I/O is awaited and its status checked; an error answers 5xx (the job is retried).
//! Nothing else: no validation beyond what the I/O needs, no logs, no limits, no events.
//!
//! With `FLOOR_CONTRACT_IO=1` (the bench's default; README "Benchmarks") it also does the
//! I/O that the contract and our rules add to each path, the way the worker does it, and still
//! nothing else — a floor for "the same I/O as ours":
//!
//! * submit: the per-user limits' object (its own SQLite: one count, one submit mark, one
//!   unfinished-step entry; SPEC §11), the watchdog alarm with the task's record (the way out of
//!   a submit that dies after its object accepted it), one JSON log line;
//! * a Tripo job: the provider gate's object called once before a batch and once after it
//!   (SPEC §11, one write each); the failure written by the task's object, which then PATCHes
//!   the row itself, records that the row is written (a second write) and deletes the alarm
//!   (SPEC §6: the object first, rows after); one JSON log line.

pub mod jwt;

use std::cell::{OnceCell, RefCell};

use futures::future::join_all;
use js_sys::{Array, Object, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{
    durable_object, event, Context, DurableObject, Env, Fetch, Headers, MessageBatch, MessageExt,
    Method, Request, RequestInit, Response, Result, State,
};

/// Storage key of the task's record in its object.
const KEY: &str = "t";

/// The task's record, in its object (stored as its JSON text).
#[derive(Serialize, Deserialize)]
pub struct Record {
    pub user: String,
    pub prompt: String,
    /// `queued` → `claimed` → `running` (a Tripo task) or `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tripo: Option<String>,
}

/// The settings, read once per isolate.
struct Settings {
    supabase_url: String,
    service_key: String,
    jwt_secret: String,
    issuer: String,
    tripo_base: String,
    tripo_key: String,
    models: String,
    /// `FLOOR_CONTRACT_IO=1`: the contract's extra I/O too (module doc).
    contract: bool,
    /// The per-user limits are on (the worker's `LimitTier::is_off` is false): not both of
    /// `RATE_LIMIT_SUBMITS_PER_MINUTE` and `MAX_ACTIVE_STEPS_PER_USER` are 0.
    limits: bool,
}

thread_local! {
    static SETTINGS: OnceCell<&'static Settings> = const { OnceCell::new() };
    /// The HMAC key of `SUPABASE_JWT_SECRET`, imported once per isolate.
    static HMAC_KEY: RefCell<Option<web_sys::CryptoKey>> = const { RefCell::new(None) };
}

fn setting(env: &Env, name: &str) -> String {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|v| v.to_string()))
        .unwrap_or_default()
}

fn settings(env: &Env) -> &'static Settings {
    SETTINGS.with(|c| {
        *c.get_or_init(|| {
            let supabase_url = setting(env, "SUPABASE_URL")
                .trim_end_matches('/')
                .to_owned();
            let models = setting(env, "MODELS_TABLE_NAME");
            Box::leak(Box::new(Settings {
                issuer: format!("{supabase_url}/auth/v1"),
                supabase_url,
                service_key: setting(env, "SUPABASE_SERVICE_KEY"),
                jwt_secret: setting(env, "SUPABASE_JWT_SECRET"),
                tripo_base: setting(env, "TRIPO_BASE_URL")
                    .trim_end_matches('/')
                    .to_owned(),
                tripo_key: setting(env, "TRIPO_API_KEY"),
                models: if models.is_empty() {
                    "models".into()
                } else {
                    models
                },
                contract: setting(env, "FLOOR_CONTRACT_IO").trim() == "1",
                limits: ["RATE_LIMIT_SUBMITS_PER_MINUTE", "MAX_ACTIVE_STEPS_PER_USER"]
                    .iter()
                    .any(|name| setting(env, name).trim() != "0"),
            }))
        })
    })
}

fn now_s() -> i64 {
    // Milliseconds since 1970 fit an f64 exactly; seconds fit i64.
    #[allow(clippy::cast_possible_truncation)]
    let s = (js_sys::Date::now() / 1000.0).floor() as i64;
    s
}

fn now_ms() -> u64 {
    // Milliseconds since 1970: positive and below 2^53.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = js_sys::Date::now() as u64;
    ms
}

/// One JSON log line, the worker's shape (`core::log::line`).
fn log_line(level: &str, event: &str, task_id: &str, fields: serde_json::Value) {
    let mut line = serde_json::json!({
        "ts": now_ms(), "level": level, "event": event, "task_id": task_id, "step": "model",
    });
    if let (Some(o), serde_json::Value::Object(f)) = (line.as_object_mut(), fields) {
        o.extend(f);
    }
    if level == "info" {
        worker::console_log!("{}", line);
    } else {
        worker::console_warn!("{}", line);
    }
}

fn obj(pairs: &[(&str, &JsValue)]) -> std::result::Result<Object, JsValue> {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v)?;
    }
    Ok(o)
}

fn subtle() -> std::result::Result<web_sys::SubtleCrypto, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
    Ok(crypto.unchecked_into::<web_sys::Crypto>().subtle())
}

async fn hmac_key(secret: &str) -> std::result::Result<web_sys::CryptoKey, JsValue> {
    if let Some(k) = HMAC_KEY.with(|k| k.borrow().clone()) {
        return Ok(k);
    }
    let sha256 = obj(&[("name", &JsValue::from_str("SHA-256"))])?;
    let alg = obj(&[
        ("name", &JsValue::from_str("HMAC")),
        ("hash", &sha256.into()),
    ])?;
    let key: web_sys::CryptoKey = JsFuture::from(subtle()?.import_key_with_object(
        "raw",
        &Uint8Array::from(secret.as_bytes()),
        &alg,
        false,
        &Array::of1(&JsValue::from_str("verify")),
    )?)
    .await?
    .unchecked_into();
    HMAC_KEY.with(|k| *k.borrow_mut() = Some(key.clone()));
    Ok(key)
}

/// The caller's user id, from a verified HS256 token; `Err` = the 401 message.
async fn authenticate(req: &Request, s: &Settings) -> std::result::Result<String, String> {
    let header = req.headers().get("authorization").ok().flatten();
    let token = jwt::bearer(header.as_deref())?;
    let parsed = jwt::parse(token)?;
    jwt::check_claims(&parsed.claims, now_s(), &s.issuer)?;
    let verified = async {
        let key = hmac_key(&s.jwt_secret).await?;
        let ok = JsFuture::from(subtle()?.verify_with_str_and_u8_array_and_u8_array(
            "HMAC",
            &key,
            &parsed.signature,
            parsed.signing_input,
        )?)
        .await?;
        Ok::<bool, JsValue>(ok.as_bool() == Some(true))
    }
    .await;
    match verified {
        Ok(true) => Ok(parsed.claims.sub),
        _ => Err("invalid token signature".into()),
    }
}

fn error(status: u16, message: &str) -> Result<Response> {
    Ok(Response::from_json(&serde_json::json!({ "error": message }))?.with_status(status))
}

/// One request with a body, sent and its status checked (the body is read and dropped).
async fn send(method: Method, url: &str, headers: Headers, body: String) -> Result<Response> {
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(headers)
        .with_body(Some(body.into()));
    Fetch::Request(Request::new_with_init(url, &init)?)
        .send()
        .await
}

fn rest_headers(s: &Settings, prefer: &str) -> Result<Headers> {
    let h = Headers::new();
    h.set("apikey", &s.service_key)?;
    h.set("authorization", &format!("Bearer {}", s.service_key))?;
    h.set("content-type", "application/json")?;
    h.set("prefer", prefer)?;
    Ok(h)
}

/// The `models` row's id: derived from the task id (as the worker's rows are), so a retried
/// insert is a no-op.
fn row_id(task_id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, task_id.as_bytes())
}

/// A call to the task's object: `path` with `body` (POST) or none (GET).
async fn object(env: &Env, task_id: &str, path: &str, body: Option<String>) -> Result<Response> {
    object_in(env, "TASKS", task_id, path, body).await
}

/// A call to the object `name` of `binding`: `path` with `body` (POST) or none (GET).
async fn object_in(
    env: &Env,
    binding: &str,
    name: &str,
    path: &str,
    body: Option<String>,
) -> Result<Response> {
    let stub = env.durable_object(binding)?.get_by_name(name)?;
    let url = format!("https://object{path}");
    match body {
        None => stub.fetch_with_str(&url).await,
        Some(b) => {
            let mut init = RequestInit::new();
            init.with_method(Method::Post).with_body(Some(b.into()));
            stub.fetch_with_request(Request::new_with_init(&url, &init)?)
                .await
        }
    }
}

#[derive(Deserialize)]
struct Submit {
    task_id: String,
    prompt: String,
}

async fn submit(mut req: Request, env: &Env, s: &Settings) -> Result<Response> {
    let Ok(body) = serde_json::from_slice::<Submit>(&req.bytes().await?) else {
        return error(422, "task_id and prompt are required");
    };
    if body.task_id.is_empty() || body.task_id.len() > 128 {
        return error(422, "bad task_id");
    }
    let user = match authenticate(&req, s).await {
        Ok(u) => u,
        Err(m) => return error(401, &m),
    };
    if s.contract && s.limits {
        let reserve = serde_json::json!({ "task_id": body.task_id, "now_ms": now_ms() });
        let reserved =
            object_in(env, "USERS", &user, "/reserve", Some(reserve.to_string())).await?;
        if reserved.status_code() != 200 {
            return error(503, "limits object");
        }
    }
    let record = Record {
        user,
        prompt: body.prompt,
        state: "queued".into(),
        tripo: None,
    };
    let created = object(
        env,
        &body.task_id,
        "/create",
        Some(serde_json::to_string(&record)?),
    )
    .await?;
    if created.status_code() != 200 {
        return error(503, "task object");
    }
    let row = serde_json::json!([{
        "id": row_id(&body.task_id).to_string(),
        "task_id": body.task_id,
        "user_id": record.user,
        "prompt": record.prompt,
        "status": "pending",
        "metadata": { "attempt": 1 },
    }]);
    let url = format!("{}/rest/v1/{}?on_conflict=id", s.supabase_url, s.models);
    let headers = rest_headers(s, "resolution=ignore-duplicates,return=minimal")?;
    let inserted = send(Method::Post, &url, headers, row.to_string()).await?;
    if !(200..300).contains(&inserted.status_code()) {
        return error(503, "rows");
    }
    env.queue("JOBS")?.send(body.task_id.clone()).await?;
    if s.contract {
        log_line(
            "info",
            "submit.accepted",
            &body.task_id,
            serde_json::json!({ "attempt": 1, "outcome": "Created", "rows": 1 }),
        );
    }
    Ok(Response::from_json(&serde_json::json!({
        "task_id": body.task_id, "status": "pending",
    }))?
    .with_status(202))
}

async fn status(req: Request, env: &Env, s: &Settings, task_id: &str) -> Result<Response> {
    let user = match authenticate(&req, s).await {
        Ok(u) => u,
        Err(m) => return error(401, &m),
    };
    let mut read = object(env, task_id, "/get", None).await?;
    match read.status_code() {
        200 => {}
        404 => return error(404, "no such task"),
        _ => return error(503, "task object"),
    }
    let record: Record = read.json().await?;
    if record.user != user {
        return error(404, "no such task");
    }
    Response::from_json(&serde_json::json!({
        "task_id": task_id, "status": record.state, "tripo_task_id": record.tripo,
    }))
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let s = settings(&env);
    let path = req.path();
    match (req.method(), path.as_str()) {
        (Method::Get, "/health") => Response::from_json(&serde_json::json!({"status": "ok"})),
        (Method::Post, "/generate/text-to-model") => submit(req, &env, s).await,
        (Method::Get, p) => match p
            .strip_prefix("/tasks/")
            .and_then(|r| r.strip_suffix("/status"))
        {
            Some(id) if !id.is_empty() && !id.contains('/') => status(req, &env, s, id).await,
            _ => error(404, "not found"),
        },
        _ => error(404, "not found"),
    }
}

#[derive(Deserialize)]
struct TripoAnswer {
    code: i64,
    #[serde(default)]
    data: Option<TripoData>,
}

#[derive(Deserialize)]
struct TripoData {
    task_id: String,
}

/// One job: claim, create, record, row. `Err` = retry the message.
async fn job(env: &Env, s: &Settings, task_id: &str) -> Result<()> {
    let mut claim = object(env, task_id, "/claim", Some(String::new())).await?;
    match claim.status_code() {
        200 => {}
        // Claimed already (a redelivery): nothing to do.
        409 => return Ok(()),
        c => return Err(worker::Error::RustError(format!("claim: {c}"))),
    }
    let mut record: Record = claim.json().await?;
    let h = Headers::new();
    h.set("authorization", &format!("Bearer {}", s.tripo_key))?;
    h.set("content-type", "application/json")?;
    let body = serde_json::json!({"type": "text_to_model", "prompt": record.prompt});
    let mut created = send(
        Method::Post,
        &format!("{}/task", s.tripo_base),
        h,
        body.to_string(),
    )
    .await?;
    let http = created.status_code();
    let answer: Option<TripoAnswer> = created.json().await.ok();
    // Tripo's answer: a task id (200, code 0), or a refusal (4xx with its code, e.g. 2008
    // moderation); anything else (5xx, no JSON) is retried.
    let patch = match answer {
        Some(TripoAnswer {
            code: 0,
            data: Some(d),
        }) if http == 200 => {
            record.state = "running".into();
            record.tripo = Some(d.task_id.clone());
            serde_json::json!({"status": "processing", "ai_service_task_id": d.task_id})
        }
        Some(a) if (400..500).contains(&http) => {
            record.state = "failed".into();
            serde_json::json!({"status": "failed", "metadata": {"attempt": 1, "error": {"code": a.code}}})
        }
        _ => return Err(worker::Error::RustError(format!("tripo: {http}"))),
    };
    if s.contract {
        // The object writes the outcome, then the row, then that the row is written.
        let failed = record.state == "failed";
        let finish = Finish {
            task_id: task_id.to_owned(),
            record,
            patch,
        };
        let done = object(
            env,
            task_id,
            "/finish",
            Some(serde_json::to_string(&finish)?),
        )
        .await?;
        if done.status_code() != 200 {
            return Err(worker::Error::RustError("finish".into()));
        }
        if failed {
            log_line(
                "warn",
                "job.failed",
                task_id,
                serde_json::json!({ "attempt": 1, "code": "moderation" }),
            );
        }
        return Ok(());
    }
    let written = object(env, task_id, "/set", Some(serde_json::to_string(&record)?)).await?;
    if written.status_code() != 200 {
        return Err(worker::Error::RustError("set".into()));
    }
    patch_row(s, task_id, &patch).await
}

/// The PATCH of the task's `models` row.
async fn patch_row(s: &Settings, task_id: &str, patch: &serde_json::Value) -> Result<()> {
    let url = format!(
        "{}/rest/v1/{}?id=eq.{}",
        s.supabase_url,
        s.models,
        row_id(task_id)
    );
    let patched = send(
        Method::Patch,
        &url,
        rest_headers(s, "return=minimal")?,
        patch.to_string(),
    )
    .await?;
    if !(200..300).contains(&patched.status_code()) {
        return Err(worker::Error::RustError("rows".into()));
    }
    Ok(())
}

/// A job's outcome for the task's object to write (`FLOOR_CONTRACT_IO`).
#[derive(Serialize, Deserialize)]
struct Finish {
    task_id: String,
    record: Record,
    patch: serde_json::Value,
}

/// The provider gate's call for a batch's tasks (`FLOOR_CONTRACT_IO`): `/acquire` or `/release`.
async fn gate(env: &Env, path: &str, batch: &[String]) -> Result<()> {
    let body = serde_json::to_string(batch)?;
    let answer = object_in(env, "GATES", "tripo", path, Some(body)).await?;
    if answer.status_code() != 200 {
        return Err(worker::Error::RustError(format!("gate: {path}")));
    }
    Ok(())
}

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    let s = settings(&env);
    let messages = batch.messages()?;
    let ids: Vec<String> = messages.iter().map(|m| m.body().clone()).collect();
    if s.contract {
        gate(&env, "/acquire", &ids).await?;
    }
    // A batch's jobs run together, as the worker's consumer runs them (`jobs::consume`): the
    // same scheduling, so a load's jobs run during it on both sides alike.
    let outcomes = join_all(messages.iter().map(|m| job(&env, s, m.body()))).await;
    for (msg, outcome) in messages.iter().zip(outcomes) {
        match outcome {
            Ok(()) => msg.ack(),
            Err(_) => msg.retry(),
        }
    }
    if s.contract {
        gate(&env, "/release", &ids).await?;
    }
    Ok(())
}

/// The watchdog alarm of a new task (`FLOOR_CONTRACT_IO`), as the worker's `RESUME_AFTER_MS`.
const WATCHDOG_MS: u64 = 30_000;
/// Storage key of the record that the task's row is written (`FLOOR_CONTRACT_IO`).
const SYNCED_KEY: &str = "r";

/// One task: its record, as JSON text under one key.
#[durable_object]
pub struct FloorTask {
    state: State,
    env: Env,
}

impl DurableObject for FloorTask {
    fn new(state: State, env: Env) -> Self {
        FloorTask { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        match req.path().as_str() {
            // Create: store the record sent (and arm the watchdog, with the contract's I/O).
            "/create" => {
                storage.put(KEY, req.text().await?).await?;
                if settings(&self.env).contract {
                    storage
                        .set_alarm(std::time::Duration::from_millis(WATCHDOG_MS))
                        .await?;
                }
                Response::ok("")
            }
            // Set: store the record sent.
            "/set" => {
                storage.put(KEY, req.text().await?).await?;
                Response::ok("")
            }
            // Finish (`FLOOR_CONTRACT_IO`): the outcome, the row, that the row is written, and
            // no alarm left.
            "/finish" => {
                let finish: Finish = req.json().await?;
                storage
                    .put(KEY, serde_json::to_string(&finish.record)?)
                    .await?;
                patch_row(settings(&self.env), &finish.task_id, &finish.patch).await?;
                storage.put(SYNCED_KEY, true).await?;
                storage.delete_alarm().await?;
                Response::ok("")
            }
            "/get" => match storage.get::<String>(KEY).await? {
                Some(text) => Response::ok(text),
                None => error(404, "no such task"),
            },
            // The claim: a queued task becomes claimed, once.
            "/claim" => {
                let Some(text) = storage.get::<String>(KEY).await? else {
                    return error(404, "no such task");
                };
                let mut record: Record = serde_json::from_str(&text)?;
                if record.state != "queued" {
                    return error(409, "claimed already");
                }
                record.state = "claimed".into();
                let text = serde_json::to_string(&record)?;
                storage.put(KEY, &text).await?;
                Response::ok(text)
            }
            _ => error(404, "not found"),
        }
    }

    /// The watchdog (`FLOOR_CONTRACT_IO`): nothing to resume in the floor.
    async fn alarm(&self) -> Result<Response> {
        Response::ok("")
    }
}

/// One user's limits (`FLOOR_CONTRACT_IO`): the worker's `UserLimits` statements for a submit —
/// one count over its own SQLite tables, one submit mark, one unfinished-step entry.
#[durable_object]
pub struct FloorUser {
    state: State,
    ready: std::cell::Cell<bool>,
}

#[derive(Deserialize)]
struct Reserve {
    task_id: String,
    now_ms: u64,
}

#[derive(Deserialize)]
struct Counts {
    #[allow(dead_code)] // read as the worker reads its counts; the floor refuses nothing
    marks: i64,
    #[allow(dead_code)]
    active: i64,
}

/// An SQL integer (the times are below 2^53).
#[allow(clippy::cast_precision_loss)]
fn sql_int(n: u64) -> worker::SqlStorageValue {
    worker::SqlStorageValue::from(n as f64)
}

impl DurableObject for FloorUser {
    fn new(state: State, _env: Env) -> Self {
        FloorUser {
            state,
            ready: std::cell::Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path() != "/reserve" {
            return error(404, "not found");
        }
        let r: Reserve = req.json().await?;
        let sql = self.state.storage().sql();
        if !self.ready.get() {
            sql.exec(
                "CREATE TABLE IF NOT EXISTS marks (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL)",
                None,
            )?;
            // The worker's index on the marks' time: its count is a range, not a scan.
            sql.exec("CREATE INDEX IF NOT EXISTS marks_at ON marks (at_ms)", None)?;
            sql.exec(
                "CREATE TABLE IF NOT EXISTS entries (task_id TEXT PRIMARY KEY, since_ms INTEGER NOT NULL)",
                None,
            )?;
            self.ready.set(true);
        }
        let window_start = r.now_ms.saturating_sub(60_000);
        let _counts: Counts = sql
            .exec(
                "SELECT (SELECT COUNT(*) FROM marks WHERE at_ms > ?) AS marks, \
                 (SELECT COUNT(*) FROM entries) AS active",
                vec![sql_int(window_start)],
            )?
            .one()?;
        sql.exec(
            "INSERT INTO marks (at_ms) VALUES (?)",
            vec![sql_int(r.now_ms)],
        )?;
        sql.exec(
            "INSERT OR REPLACE INTO entries (task_id, since_ms) VALUES (?, ?)",
            vec![r.task_id.into(), sql_int(r.now_ms)],
        )?;
        Response::ok("")
    }
}

/// The provider gate (`FLOOR_CONTRACT_IO`): the slots of a batch's tasks, taken and given back,
/// one write each (its record as JSON text, cached here as the worker's gate caches its own).
#[durable_object]
pub struct FloorGate {
    state: State,
    held: RefCell<Option<Vec<String>>>,
}

impl DurableObject for FloorGate {
    fn new(state: State, _env: Env) -> Self {
        FloorGate {
            state,
            held: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let keys: Vec<String> = req.json().await?;
        let storage = self.state.storage();
        let cached = self.held.borrow().clone();
        let mut held = match cached {
            Some(h) => h,
            None => match storage.get::<String>(KEY).await? {
                Some(text) => serde_json::from_str(&text)?,
                None => Vec::new(),
            },
        };
        match path.as_str() {
            "/acquire" => held.extend(keys),
            "/release" => held.retain(|k| !keys.contains(k)),
            _ => return error(404, "not found"),
        }
        storage.put(KEY, serde_json::to_string(&held)?).await?;
        *self.held.borrow_mut() = Some(held);
        Response::ok("")
    }
}
