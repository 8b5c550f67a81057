//! Scenario "tripo" (issue P15): Tripo API requests per 20 s text-to-model task, v2 (polling,
//! the bench's worker) beside v3 with signed webhooks (a worker of its own: same release build,
//! `TRIPO_API_VERSION=v3`, its own Tripo key at the fake with the webhook registered, production
//! safety-net default of 60 s). Counted from the fake's request log: every create and task query
//! (`/v2/openapi/task…`, `/v3/generation/…`, `/v3/tasks/…`); model downloads are not API
//! requests and are not counted. Target: ≤ 2 with webhooks (the create and at most one safety
//! poll). About a minute: both sides run their tasks at once.

use std::time::{Duration, Instant};

use e2e::{WorkerOptions, WorkerProcess};
use serde_json::{json, Value};

use crate::env::Env;
use crate::report::{Report, Verdict};

/// Tasks per side.
const TASKS: usize = 3;
/// Fake seconds a task runs.
const RUN_S: u32 = 20;
const SECRET: &str = "whsec_bench_tripo_v3_0123456789abcdef";

fn is_api_call(e: &Value) -> bool {
    let p = e["path"].as_str().unwrap_or_default();
    p.starts_with("/v2/openapi/task")
        || p.starts_with("/v3/generation/")
        || p.starts_with("/v3/tasks/")
}

/// Submits `TASKS` 20 s text tasks to `base`, waits until their rows are final; the API
/// requests per task (mean) and how many completed.
fn side(env: &Env, base: &str, tag: &str) -> Result<(f64, usize, Vec<f64>), String> {
    let prompt = format!("a bench kettle [[fake:run_s={RUN_S},queue_s=0,no_limit,nonce={tag}]]");
    for i in 0..TASKS {
        let body = json!({"task_id": format!("{tag}-{i}"), "prompt": prompt, "texture": false});
        let r = env.rt.block_on(async {
            env.http
                .post(format!("{base}/generate/text-to-model"))
                .bearer_auth(&env.token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
        });
        match r {
            Ok(r) if r.status().as_u16() == 202 => {}
            Ok(r) => return Err(format!("{tag}: submit answered {}", r.status())),
            Err(e) => return Err(format!("{tag}: submit failed: {e}")),
        }
    }
    let t0 = Instant::now();
    let rows = loop {
        let rows = env
            .rt
            .block_on(env.rows("models", &format!("{tag}-"), "task_id,status"))
            .map_err(|e| e.to_string())?;
        let done = rows.len() == TASKS
            && rows
                .iter()
                .all(|r| r["status"] == "complete" || r["status"] == "failed");
        if done || t0.elapsed() > Duration::from_secs(150) {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let complete = rows.iter().filter(|r| r["status"] == "complete").count();
    // Per Tripo task: creates and queries of that id.
    let log = env.fake_log(&format!("nonce={tag}"));
    let mut per_task: std::collections::BTreeMap<String, f64> = Default::default();
    for e in log.iter().filter(|e| is_api_call(e)) {
        let id = e["tripo_task_id"].as_str().unwrap_or_default().to_string();
        *per_task.entry(id).or_default() += 1.0;
    }
    let counts: Vec<f64> = per_task.values().copied().collect();
    let total: f64 = counts.iter().sum();
    Ok((total / TASKS as f64, complete, counts))
}

fn v3_worker(env: &Env, key: &str) -> Result<WorkerProcess, String> {
    let stack = env.stack.as_ref().ok_or("no stack")?;
    let mut settings: Vec<(String, String)> = stack
        .worker_vars()
        .into_iter()
        .filter(|(k, _)| !["TRIPO_API_KEY", "TRIPO_MAX_CONCURRENT_TASKS"].contains(k))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    settings.push(("TRIPO_API_KEY".into(), key.into()));
    settings.push(("TRIPO_MAX_CONCURRENT_TASKS".into(), "0".into()));
    settings.push(("TRIPO_API_VERSION".into(), "v3".into()));
    settings.push(("TRIPO_WEBHOOK_SECRET".into(), SECRET.into()));
    WorkerProcess::start(WorkerOptions {
        settings,
        // The bench's release build is in build/ already; `--version` only prints.
        build_profile: "--version".into(),
        persist_to: None,
        port: None,
    })
    .map_err(|e| e.to_string())
}

pub fn run(env: &Env, rep: &mut Report) {
    let sc = "Tripo requests per task";
    let check = "P15: Tripo requests per 20 s task with v3 + webhooks ≤ 2";
    let key = format!("tsk_bench_v3_{}", env.run.replace('-', "_"));
    env.fakes().add_key(&key);
    let mut w = match v3_worker(env, &key) {
        Ok(w) => w,
        Err(e) => {
            rep.note(format!("{sc}: could not start the v3 worker: {e}"));
            rep.check(check, Verdict::Skip, "no v3 worker");
            return;
        }
    };
    env.fakes().set_tripo_webhook(
        &key,
        &format!("{}/providers/tripo/webhook", w.base_url),
        SECRET,
    );
    // Both sides at once: the v2 side on the bench's worker in a thread of its own.
    let base_v3 = w.base_url.clone();
    let (v2, v3) = std::thread::scope(|s| {
        let v2 = s.spawn(|| side(env, &env.base, &format!("{}-tr2", env.run)));
        let v3 = side(env, &base_v3, &format!("{}-tr3", env.run));
        (
            v2.join().unwrap_or_else(|_| Err("v2 side panicked".into())),
            v3,
        )
    });
    w.stop();
    for (label, r) in [("v2, polling", &v2), ("v3 + webhooks", &v3)] {
        match r {
            Ok((mean, complete, counts)) => {
                rep.add(
                    sc,
                    &format!("{label}: API requests per 20 s task"),
                    "req",
                    vec![*mean],
                );
                if *complete < TASKS {
                    rep.note(format!(
                        "{sc}: {label}: {complete} of {TASKS} tasks complete"
                    ));
                }
                eprintln!("bench: {sc}: {label}: per Tripo task {counts:?}");
            }
            Err(e) => rep.note(format!("{sc}: {label}: {e}")),
        }
    }
    match &v3 {
        Ok((_, complete, counts)) if *complete == TASKS => {
            let worst = counts.iter().copied().fold(0.0, f64::max);
            rep.check(
                check,
                if worst <= 2.0 {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
                format!("worst {worst} (per task {counts:?})"),
            );
        }
        Ok((_, complete, _)) => {
            rep.check(
                check,
                Verdict::Fail,
                format!("{complete} of {TASKS} complete"),
            );
        }
        Err(e) => rep.check(check, Verdict::Fail, e.clone()),
    }
}
