//! Runs the soak: stack, worker, users, inputs, chaos, submissions with repeats, status polling,
//! the timed disruptions (SIGKILL restarts, PostgREST stopped, Storage down), then the checks.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{WorkerOptions, WorkerProcess};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use stack::{Stack, StackOptions};

use crate::plan::{self, Kind, Step};
use crate::{Cfg, Res};

/// A user of the local Supabase.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// What happened to one step, as the client saw it.
#[derive(Clone, Debug, Default)]
pub struct Track {
    pub urls: Vec<String>,
    pub body: Option<Value>,
    /// Model steps: the Tripo id of the models row, once complete.
    pub tripo_id: Option<String>,
    /// Refines run as the owner of their draft (made by `seed_drafts`).
    pub owner: Option<usize>,
    /// Submits sent, and their answers (HTTP status; 0 = network error).
    pub sends: u32,
    pub answers: Vec<u16>,
    pub accepted_at: Option<f64>,
    pub refused: Option<String>,
    pub next_try: f64,
    pub in_flight: bool,
    /// The last status view, and when it became final.
    pub last: Option<Value>,
    pub final_at: Option<f64>,
}

/// A disruption, when it started and how long it took.
#[derive(Clone, Debug)]
pub struct Event {
    pub what: String,
    pub at_s: f64,
    pub took_s: f64,
    pub ok: bool,
}

/// Everything the run shares.
pub struct Env {
    pub cfg: Cfg,
    pub stack: Arc<Stack>,
    pub http: reqwest::Client,
    pub base: String,
    pub port: u16,
    pub persist: PathBuf,
    pub settings: Vec<(String, String)>,
    pub worker: Mutex<Option<WorkerProcess>>,
    /// How many `wrangler dev` processes ran so far (their logs are in `worker.log`).
    pub incarnations: Mutex<u32>,
    pub users: Vec<User>,
    pub run: String,
    pub plan: Vec<Step>,
    pub tracks: Mutex<Vec<Track>>,
    pub events: Mutex<Vec<Event>>,
    pub t0: Mutex<Option<Instant>>,
}

impl Env {
    /// Seconds since the run started.
    pub fn t(&self) -> f64 {
        self.t0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    pub fn log_path(&self) -> PathBuf {
        self.cfg.out.join("worker.log")
    }

    /// Appends the log of a `wrangler dev` to `worker.log`.
    fn save_log(&self, w: &WorkerProcess, why: &str) {
        let mut n = self.incarnations.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
        {
            let _ = writeln!(f, "===== soak: wrangler dev #{} ({why}) =====", *n);
            let _ = f.write_all(w.log().as_bytes());
        }
    }

    fn start_worker(&self, profile: &str) -> std::io::Result<WorkerProcess> {
        WorkerProcess::start(WorkerOptions {
            settings: self.settings.clone(),
            build_profile: profile.into(),
            persist_to: Some(self.persist.clone()),
            port: Some(self.port),
        })
    }

    /// SIGKILL to `wrangler dev`'s whole process group (workerd included), then a new one on the
    /// same persist dir and port, reusing the build.
    fn kill_and_restart(&self) -> Res<()> {
        let mut guard = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut w) = guard.take() {
            if let Some(pgid) = w.process_group() {
                // SAFETY: kill(2) on the process group of our own child.
                unsafe {
                    libc::kill(-(pgid as i32), libc::SIGKILL);
                }
            }
            w.stop();
            self.save_log(&w, "killed with SIGKILL");
        }
        *guard = Some(self.start_worker("--version")?);
        Ok(())
    }

    fn service_get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http
            .get(url)
            .header("apikey", &self.stack.service_key)
            .bearer_auth(&self.stack.service_key)
            .header(chaos::EXEMPT_HEADER, "soak")
            .timeout(Duration::from_secs(20))
    }

    /// Rows of `table` for a task (service key, exempt from chaos).
    pub async fn rows(&self, table: &str, task: &str) -> Res<Vec<Value>> {
        let url = format!(
            "{}/rest/v1/{table}?task_id=eq.{task}&select=id,status,asset_url,ai_service_task_id,metadata,user_id",
            self.stack.supabase_url
        );
        let r = self.service_get(&url).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            return Err(format!("rows of {task}: {status} {text}").into());
        }
        Ok(serde_json::from_str::<Value>(&text)?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Object names directly under `prefix` in the generated-assets bucket.
    pub async fn objects(&self, prefix: &str) -> Res<Vec<String>> {
        let r = self
            .http
            .post(format!(
                "{}/storage/v1/object/list/{}",
                self.stack.supabase_url, self.stack.bucket
            ))
            .header("apikey", &self.stack.service_key)
            .bearer_auth(&self.stack.service_key)
            .header(chaos::EXEMPT_HEADER, "soak")
            .json(&json!({"prefix": prefix, "limit": 1000}))
            .timeout(Duration::from_secs(20))
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            return Err(format!("list {prefix}: {status} {text}").into());
        }
        let v: Value = serde_json::from_str(&text)?;
        let mut names: Vec<String> = v
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|e| !e["id"].is_null())
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// `GET /tasks/{task}/status?step=…` as the step's owner: the view, or why not.
    pub async fn status(&self, step: &Step) -> Result<Value, String> {
        let user = &self.users[self.user_of(step.index)];
        let r = self
            .http
            .get(format!(
                "{}/tasks/{}/status?step={}",
                self.base,
                step.task_id,
                step.kind.step()
            ))
            .bearer_auth(&user.token)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| format!("network: {e}"))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| format!("network: {e}"))?;
        if status != 200 {
            return Err(format!("{status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))
    }

    /// The user a step runs as.
    pub fn user_of(&self, i: usize) -> usize {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())[i]
            .owner
            .unwrap_or(self.plan[i].user)
    }

    pub fn track(&self, i: usize) -> Track {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())[i].clone()
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut Track)) {
        f(&mut self.tracks.lock().unwrap_or_else(|e| e.into_inner())[i]);
    }

    fn event(&self, what: String, at_s: f64, ok: bool) {
        let took_s = self.t() - at_s;
        eprintln!(
            "soak: t={at_s:.0}s {what} ({took_s:.1}s{})",
            if ok { "" } else { ", FAILED" }
        );
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Event {
                what,
                at_s,
                took_s,
                ok,
            });
    }
}

fn is_final(v: &Value) -> bool {
    v["status"] == "complete" || v["status"] == "failed"
}

/// Sends one submit of step `i`; records the answer and what to do next.
async fn submit(env: Arc<Env>, i: usize) {
    let step = &env.plan[i];
    let tr = env.track(i);
    let Some(body) = tr.body.clone() else {
        env.update(i, |t| t.in_flight = false);
        return;
    };
    let user = &env.users[env.user_of(i)];
    let r = env
        .http
        .post(format!("{}/generate/{}", env.base, step.kind.endpoint()))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(90))
        .send()
        .await;
    let (status, text) = match r {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    };
    let now = env.t();
    env.update(i, |t| {
        t.in_flight = false;
        t.sends += 1;
        t.answers.push(status);
        match status {
            200 | 202 => t.accepted_at = Some(now),
            0 | 429 | 500..=599 => {
                // A client repeats the identical submit, backing off.
                let wait = (2.0 * 1.6f64.powi(t.sends as i32 - 1)).min(20.0);
                t.next_try = now + wait;
            }
            _ => {
                t.refused = Some(format!(
                    "{status} {}",
                    text.chars().take(300).collect::<String>()
                ))
            }
        }
    });
}

async fn submitter(env: Arc<Env>, until_s: f64) {
    let permits = Arc::new(tokio::sync::Semaphore::new(6));
    while env.t() < until_s {
        let now = env.t();
        for i in 0..env.plan.len() {
            let step = &env.plan[i];
            let tr = env.track(i);
            if tr.accepted_at.is_some()
                || tr.refused.is_some()
                || tr.in_flight
                || now < step.at_s
                || now < tr.next_try
            {
                continue;
            }
            if tr.body.is_none() {
                continue;
            }
            env.update(i, |t| t.in_flight = true);
            let env = Arc::clone(&env);
            let permits = Arc::clone(&permits);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                submit(env, i).await;
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls the status of accepted steps until they are final; learns the Tripo id of completed
/// drafts (from their row) for refines.
async fn poller(env: Arc<Env>, until_s: f64) {
    while env.t() < until_s {
        let open: Vec<usize> = (0..env.plan.len())
            .filter(|&i| {
                let t = env.track(i);
                t.accepted_at.is_some()
                    && (t.final_at.is_none()
                        || (env.plan[i].kind.draft()
                            && t.tripo_id.is_none()
                            && t.last.as_ref().is_some_and(|v| v["status"] == "complete")))
            })
            .collect();
        stream::iter(open)
            .for_each_concurrent(8, |i| {
                let env = Arc::clone(&env);
                async move {
                    let step = &env.plan[i];
                    if let Ok(v) = env.status(step).await {
                        let now = env.t();
                        let done = is_final(&v);
                        let complete = v["status"] == "complete";
                        env.update(i, |t| {
                            t.last = Some(v);
                            if done && t.final_at.is_none() {
                                t.final_at = Some(now);
                            }
                        });
                        if complete && step.kind.draft() {
                            if let Ok(rows) = env.rows("models", &step.task_id).await {
                                let id = rows
                                    .first()
                                    .and_then(|r| r["ai_service_task_id"].as_str())
                                    .map(str::to_owned);
                                env.update(i, |t| t.tripo_id = id);
                            }
                        }
                    }
                }
            })
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Everything final (or refused, or given up after the submit window)?
fn all_settled(env: &Env, submit_until: f64) -> bool {
    let now = env.t();
    let tracks = env.tracks.lock().unwrap_or_else(|e| e.into_inner());
    tracks.iter().all(|t| {
        t.refused.is_some()
            || t.final_at.is_some()
            || (t.accepted_at.is_none() && now > submit_until)
    })
}

/// The disruptions, in time order: SIGKILL restarts, PostgREST stopped, Storage down.
async fn disruptions(env: Arc<Env>) {
    let b = env.cfg.budget.as_secs_f64();
    let mut plan: Vec<(f64, &'static str)> = Vec::new();
    for i in 0..env.cfg.restarts {
        plan.push((b * (0.12 + 0.18 * i as f64), "restart"));
    }
    if !env.cfg.outage.is_zero() {
        plan.push((b * 0.20, "postgrest"));
        plan.push((b * 0.38, "storage"));
    }
    plan.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (at, what) in plan {
        let wait = at - env.t();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
        let start = env.t();
        match what {
            "restart" => {
                let e = Arc::clone(&env);
                let r = tokio::task::spawn_blocking(move || e.kill_and_restart()).await;
                let ok = matches!(r, Ok(Ok(())));
                if let Ok(Err(e)) = &r {
                    eprintln!("soak: restart failed: {e}");
                }
                env.event("wrangler dev SIGKILL + restart".into(), start, ok);
            }
            "postgrest" => {
                let r = env.stack.pause_postgrest(env.cfg.outage).await;
                if let Err(e) = &r {
                    eprintln!("soak: PostgREST did not come back: {e}");
                }
                env.event(
                    format!("PostgREST stopped for {:.0}s", env.cfg.outage.as_secs_f64()),
                    start,
                    r.is_ok(),
                );
            }
            _ => {
                env.stack
                    .storage_outage(env.cfg.outage.as_secs_f64(), false);
                tokio::time::sleep(env.cfg.outage).await;
                env.event(
                    format!("Storage down for {:.0}s", env.cfg.outage.as_secs_f64()),
                    start,
                    true,
                );
            }
        }
    }
}

async fn upload_inputs(env: &Env) -> Res<()> {
    let jobs: Vec<(usize, usize)> = env
        .plan
        .iter()
        .flat_map(|s| (0..s.inputs.len()).map(move |k| (s.index, k)))
        .collect();
    let results: Vec<Res<(usize, usize, String)>> = stream::iter(jobs)
        .map(|(i, k)| async move {
            let step = &env.plan[i];
            let user = &env.users[step.user];
            let (name, bytes) = &step.inputs[k];
            let path = format!("{}/{name}", user.id);
            let r = env
                .http
                .post(format!(
                    "{}/storage/v1/object/{}/{path}",
                    env.stack.supabase_url, env.stack.input_bucket
                ))
                .bearer_auth(&env.stack.service_key)
                .header("content-type", "image/png")
                .header("x-upsert", "true")
                .body(bytes.clone())
                .send()
                .await?;
            if !r.status().is_success() {
                return Err(format!("upload {path}: {} {}", r.status(), r.text().await?).into());
            }
            Ok((
                i,
                k,
                format!(
                    "{}/storage/v1/object/authenticated/{}/{path}",
                    env.stack.supabase_url, env.stack.input_bucket
                ),
            ))
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut tracks = env.tracks.lock().unwrap_or_else(|e| e.into_inner());
    for r in results {
        let (i, k, url) = r?;
        let urls = &mut tracks[i].urls;
        if urls.len() <= k {
            urls.resize(k + 1, String::new());
        }
        urls[k] = url;
    }
    for (i, step) in env.plan.iter().enumerate() {
        if step.kind != Kind::Refine {
            let urls = tracks[i].urls.clone();
            tracks[i].body = Some(step.body(&urls, None));
        }
    }
    Ok(())
}

/// The prompt of the drafts the soak makes for its refines (their creates are not the worker's).
pub const DRAFT_PROMPT: &str = "soak draft of";

/// Makes one finished draft per refine before the chaos starts: a Tripo text task (created at the
/// fake directly, waited until `success`) and a `complete` models row of the refine's user that
/// carries its id — what a completed draft leaves. Refines so run whatever happened to this run's
/// own model steps under the chaos (which fails many of them on purpose).
async fn seed_drafts(env: &Env) -> Res<()> {
    let fakes = env.stack.fakes().ok_or("the stack has no provider fakes")?;
    let (base, key) = (fakes.tripo_base_url(), fakes.tripo_key().to_owned());
    let refines: Vec<usize> = env
        .plan
        .iter()
        .filter(|s| s.kind == Kind::Refine)
        .map(|s| s.index)
        .collect();
    let results: Vec<Res<(usize, String)>> = stream::iter(refines)
        .map(|i| {
            let (base, key) = (base.clone(), key.clone());
            async move {
                let step = &env.plan[i];
                let created: Value = env
                    .http
                    .post(format!("{base}/task"))
                    .bearer_auth(&key)
                    .json(&json!({"type": "text_to_model", "prompt": format!("{DRAFT_PROMPT} {}", step.task_id)}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let id = created["data"]["task_id"]
                    .as_str()
                    .ok_or_else(|| format!("draft create: {created}"))?
                    .to_owned();
                let deadline = Instant::now() + Duration::from_secs(180);
                loop {
                    let v: Value = env
                        .http
                        .get(format!("{base}/task/{id}"))
                        .bearer_auth(&key)
                        .send()
                        .await?
                        .json()
                        .await?;
                    if v["data"]["status"] == "success" {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(format!("draft {id} never succeeded: {v}").into());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let user = &env.users[step.user];
                let r = env
                    .http
                    .post(format!("{}/rest/v1/models", env.stack.supabase_url))
                    .header("apikey", &env.stack.service_key)
                    .bearer_auth(&env.stack.service_key)
                    .json(&json!({
                        "task_id": format!("{}-draft", step.task_id), "user_id": user.id,
                        "status": "complete", "ai_service_task_id": id, "prompt": "soak draft",
                    }))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    return Err(format!("draft row: {} {}", r.status(), r.text().await?).into());
                }
                Ok((i, id))
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut tracks = env.tracks.lock().unwrap_or_else(|e| e.into_inner());
    for r in results {
        let (i, id) = r?;
        tracks[i].owner = Some(env.plan[i].user);
        tracks[i].body = Some(env.plan[i].body(&[], Some(&id)));
    }
    Ok(())
}

fn chaos_spec(
    rate: f64,
    seed: u64,
    kinds: &[chaos::Kind],
    hold_ms: Option<u64>,
) -> chaos::ChaosSpec {
    chaos::ChaosSpec {
        rate,
        seed,
        kinds: kinds.to_vec(),
        hold_ms,
        slow_ms: None,
    }
}

/// The whole soak; `Ok(true)` when every check passed.
pub fn run(cfg: Cfg) -> Res<bool> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    std::fs::create_dir_all(&cfg.out)?;
    let persist = cfg.out.join("state");
    let _ = std::fs::remove_dir_all(&persist);
    let _ = std::fs::remove_file(cfg.out.join("worker.log"));
    std::fs::create_dir_all(&persist)?;

    eprintln!("soak: {cfg:?}");
    let stack = rt.block_on(Stack::start(StackOptions {
        time_scale: cfg.time_scale,
        ..StackOptions::default()
    }))?;
    eprintln!("soak: stack up in {:.1}s", stack.startup.as_secs_f64());
    let mut users = Vec::new();
    for u in 0..cfg.users {
        let email = format!("soak-{u}@soak.test");
        let (id, _) = rt.block_on(stack.create_user(&email))?;
        users.push(User {
            id: id.to_string(),
            token: stack.user_token(id, &email, 4 * 3600),
        });
    }
    let mut settings: Vec<(String, String)> = stack
        .worker_vars()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    settings.retain(|(k, _)| k != "TEST_HOOKS");
    settings.push((
        "TRIPO_DEADLINE_SECONDS".into(),
        cfg.tripo_deadline_s.to_string(),
    ));
    let port = e2e::free_port()?;
    let run_id = format!("soak{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let b = cfg.budget.as_secs_f64();
    let steps = plan::plan(&run_id, cfg.steps, cfg.users, b * 0.5, cfg.seed);
    let env = Arc::new(Env {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(32)
            .build()?,
        base: format!("http://127.0.0.1:{port}"),
        port,
        persist,
        settings,
        worker: Mutex::new(None),
        incarnations: Mutex::new(0),
        users,
        run: run_id,
        tracks: Mutex::new(vec![Track::default(); steps.len()]),
        plan: steps,
        events: Mutex::new(Vec::new()),
        t0: Mutex::new(None),
        stack: Arc::new(stack),
        cfg: cfg.clone(),
    });

    let t_build = Instant::now();
    eprintln!("soak: building the release worker and starting wrangler dev on port {port}…");
    let worker = env.start_worker("--release")?;
    let worker_start_s = t_build.elapsed().as_secs_f64();
    *env.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(worker);
    rt.block_on(upload_inputs(&env))?;
    rt.block_on(seed_drafts(&env))?;
    eprintln!("soak: {} steps planned, inputs uploaded", env.plan.len());

    let all_provider = [
        chaos::Kind::ServerError,
        chaos::Kind::RateLimited,
        chaos::Kind::Slow,
        chaos::Kind::Timeout,
        chaos::Kind::Reset,
        chaos::Kind::SlowBody,
    ];
    let rest_kinds = [
        chaos::Kind::ServerError,
        chaos::Kind::Unavailable,
        chaos::Kind::Reset,
    ];
    env.stack.set_chaos(
        Some(chaos_spec(
            cfg.rate,
            cfg.seed,
            &all_provider,
            Some(cfg.hold_ms),
        )),
        Some(chaos_spec(
            cfg.rate,
            cfg.seed.wrapping_add(1),
            &all_provider,
            None,
        )),
        Some(chaos_spec(
            cfg.rate,
            cfg.seed.wrapping_add(2),
            &rest_kinds,
            None,
        )),
    )?;
    *env.t0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    eprintln!(
        "soak: chaos on at {:.0} %; run budget {b:.0}s",
        cfg.rate * 100.0
    );

    let submit_until = b * 0.75;
    // After the chaos window, the chaos stops and every step must become final within the settle
    // window: a step still open then is stuck (a late step may need its whole budget per phase
    // under the chaos, longer than the window; without it, it must finish promptly).
    let settle = cfg.settle.as_secs_f64();
    let mut chaos_stats = None;
    rt.block_on(async {
        let sub = tokio::spawn(submitter(Arc::clone(&env), submit_until));
        let pol = tokio::spawn(poller(Arc::clone(&env), b + settle));
        let dis = tokio::spawn(disruptions(Arc::clone(&env)));
        let mut last_note = 0.0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let t = env.t();
            if dis.is_finished() && all_settled(&env, submit_until) {
                eprintln!("soak: every step settled at t={t:.0}s");
                break;
            }
            if t >= b && chaos_stats.is_none() {
                chaos_stats = Some(env.stack.clear_chaos());
                eprintln!("soak: chaos window over at t={t:.0}s; chaos off, settling for up to {settle:.0}s");
            }
            if t >= b + settle {
                eprintln!("soak: stall deadline reached at t={t:.0}s");
                break;
            }
            if t - last_note >= 30.0 {
                last_note = t;
                let tracks = env.tracks.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let accepted = tracks.iter().filter(|t| t.accepted_at.is_some()).count();
                let fin = tracks.iter().filter(|t| t.final_at.is_some()).count();
                eprintln!(
                    "soak: t={t:.0}s accepted {accepted}/{} final {fin}",
                    tracks.len()
                );
            }
        }
        sub.abort();
        pol.abort();
        dis.abort();
    });
    let run_s = env.t();
    let chaos_stats = chaos_stats.unwrap_or_else(|| env.stack.clear_chaos());
    eprintln!("soak: chaos off; checking…");
    if let Some(w) = env
        .worker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        env.save_log(w, "at the checks");
    }
    let outcome = rt.block_on(crate::check::run(&env));
    let report = crate::report::Report {
        cfg: &cfg,
        env: &env,
        outcome: &outcome,
        chaos: &chaos_stats,
        run_s,
        worker_start_s,
        total_s: started.elapsed().as_secs_f64(),
    };
    let passed = report.print_and_save()?;
    if let Some(mut w) = env.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
        w.stop();
    }
    let env = Arc::into_inner(env).ok_or("env still shared")?;
    if let Some(stack) = Arc::into_inner(env.stack) {
        rt.block_on(stack.stop());
    }
    Ok(passed)
}

/// Lines of the saved worker logs that mention `needle`, as JSON objects.
pub fn worker_events(log: &Path, needle: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let (i, j) = (l.find('{')?, l.rfind('}')?);
            (i < j)
                .then(|| serde_json::from_str::<Value>(&l[i..=j]).ok())
                .flatten()
        })
        .collect()
}
