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
//!   Durable Object write, one PATCH of the row.
//!
//! Every I/O is awaited and its status checked; an error answers 5xx (the job is retried).
//! Nothing else: no validation beyond what the I/O needs, no logs, no limits, no events.

pub mod jwt;

use std::cell::{OnceCell, RefCell};

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
    let stub = env.durable_object("TASKS")?.get_by_name(task_id)?;
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
    let written = object(env, task_id, "/set", Some(serde_json::to_string(&record)?)).await?;
    if written.status_code() != 200 {
        return Err(worker::Error::RustError("set".into()));
    }
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

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    let s = settings(&env);
    for msg in batch.messages()? {
        match job(&env, s, msg.body()).await {
            Ok(()) => msg.ack(),
            Err(_) => msg.retry(),
        }
    }
    Ok(())
}

/// One task: its record, as JSON text under one key.
#[durable_object]
pub struct FloorTask {
    state: State,
}

impl DurableObject for FloorTask {
    fn new(state: State, _env: Env) -> Self {
        FloorTask { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        match req.path().as_str() {
            // Create and set: store the record sent.
            "/create" | "/set" => {
                storage.put(KEY, req.text().await?).await?;
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
}
