//! Scenario 7 `live`: 1,000 concurrent Server-Sent Events subscribers on 100 running model tasks
//! (10 per task), on a worker of its own (the release build, a Tripo key of its own at the fake,
//! the provider gate off so that all 100 Tripo tasks run at once).
//!
//! Each task's Tripo task walks through a planned progress (`[[fake:progress=10/20/…/90]]`, one
//! value per poll, a poll every 2 s), so every task changes 11 times while its subscribers listen.
//!
//! **Change → event** is measured per pushed event (not the first view of a stream, which is the
//! state at connect time): the subscriber's clock when the event's last byte arrived, minus the
//! view's `updated_at` — the millisecond the task's Durable Object stamped on the change: for a
//! progress change, the instant its alarm had Tripo's answer and issued the command (before the
//! DO applied, persisted and pushed it); for `complete`, when the finalize job issued it. So it
//! covers apply + persist + push + the worker's pass-through stream + wrangler dev's proxy + the
//! client. Same machine, same clock.
//!
//! **Memory**: the resident memory of the worker's process group and of its workerd processes
//! (`rss.rs`, sampled every 100 ms), growth over the run against the second before it, as the
//! memory scenario measures it; and the peak.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{WorkerOptions, WorkerProcess};
use serde_json::{json, Value};

use crate::env::Env;
use crate::report::{Report, Verdict};
use crate::{now_ms, rss, stats};

/// The scenario's name in the table.
pub const SCENARIO: &str = "7 live: 1,000 SSE on 100 tasks";
const TASKS: usize = 100;
const PER_TASK: usize = 10;
/// Tripo progress per poll (then success → 99, then complete → 100).
const PLAN: &str = "10/20/30/40/50/60/70/80/90";
/// A subscriber gives up after this long.
const LIMIT: Duration = Duration::from_secs(150);

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    /// Change → event (ms) of each pushed event.
    latencies: Vec<f64>,
    ids: Vec<u64>,
    complete: bool,
    error: Option<String>,
}

async fn subscribe(http: reqwest::Client, url: String, token: String) -> Seen {
    let mut seen = Seen::default();
    let resp = match http.get(&url).bearer_auth(&token).send().await {
        Ok(r) if r.status().as_u16() == 200 => r,
        Ok(r) => {
            seen.error = Some(format!("HTTP {}", r.status()));
            return seen;
        }
        Err(e) => {
            seen.error = Some(e.to_string());
            return seen;
        }
    };
    let mut resp = resp;
    let mut buf = String::new();
    let start = Instant::now();
    loop {
        let left = LIMIT.saturating_sub(start.elapsed());
        let chunk = match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                seen.error = Some(e.to_string());
                break;
            }
            Err(_) => {
                seen.error = Some("no end in time".into());
                break;
            }
        };
        let at = now_ms();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            let (Some(id), Ok(view)) = (id, serde_json::from_str::<Value>(&data)) else {
                continue;
            };
            // The first view is the state at connect time, not a pushed change.
            if !seen.ids.is_empty() {
                if let Some(changed) = view["updated_at"].as_str().and_then(stats::parse_ts_ms) {
                    seen.latencies.push(at - changed);
                }
            }
            seen.ids.push(id);
            if view["status"] == "complete" {
                seen.complete = true;
            }
        }
        if seen.complete {
            break;
        }
    }
    seen
}

pub fn live(env: &Env, rep: &mut Report) {
    let sc = SCENARIO;
    let Some(stack) = env.stack.as_ref() else {
        rep.note(format!("{sc}: no stack"));
        return;
    };
    let key = format!("tsk_live_{}", env.run);
    env.fakes().add_key(&key);
    let mut settings: Vec<(String, String)> = stack
        .worker_vars()
        .into_iter()
        .filter(|(k, _)| !["TRIPO_API_KEY", "TRIPO_MAX_CONCURRENT_TASKS"].contains(k))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    settings.push(("TRIPO_API_KEY".into(), key));
    settings.push(("TRIPO_MAX_CONCURRENT_TASKS".into(), "0".into()));
    let t_start = Instant::now();
    let worker = match WorkerProcess::start(WorkerOptions {
        settings,
        // The bench's release build is in build/ already; `--version` only prints.
        build_profile: "--version".into(),
        persist_to: None,
        port: None,
    }) {
        Ok(w) => w,
        Err(e) => {
            rep.note(format!("{sc}: could not start its worker: {e}"));
            return;
        }
    };
    eprintln!(
        "bench: live: worker up in {:.1}s",
        t_start.elapsed().as_secs_f64()
    );
    let base = worker.base_url.clone();
    let Some(pgid) = worker.process_group().map(|p| p as i32) else {
        rep.note(format!("{sc}: no process group"));
        return;
    };
    let sampler = rss::Sampler::start(pgid, Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(1200));
    let t0 = now_ms();
    let http = match reqwest::Client::builder()
        .pool_max_idle_per_host(TASKS * PER_TASK + 16)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            rep.note(format!("{sc}: {e}"));
            return;
        }
    };
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen: Vec<Seen> = env.rt.block_on(async {
        let mut handles = Vec::with_capacity(TASKS * PER_TASK);
        for i in 0..TASKS {
            let task = format!("{}-live-{i}", env.run);
            let body = json!({"task_id": task,
                "prompt": format!("a bench lamp {i} [[fake:progress={PLAN},no_limit,nonce={task}]]")});
            let r = http
                .post(format!("{base}/generate/text-to-model"))
                .bearer_auth(&env.token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 202 => {}
                Ok(r) => {
                    let s = r.status();
                    let t = r.text().await.unwrap_or_default();
                    if let Ok(mut g) = refused.lock() {
                        g.push(format!("{task}: {s} {t}"));
                    }
                    continue;
                }
                Err(e) => {
                    if let Ok(mut g) = refused.lock() {
                        g.push(format!("{task}: {e}"));
                    }
                    continue;
                }
            }
            let url = format!("{base}/tasks/{task}/events?step=model");
            for _ in 0..PER_TASK {
                handles.push(tokio::spawn(subscribe(
                    http.clone(),
                    url.clone(),
                    env.token.clone(),
                )));
            }
        }
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.unwrap_or_else(|e| Seen {
                error: Some(e.to_string()),
                ..Seen::default()
            }));
        }
        out
    });
    let end = now_ms();
    std::thread::sleep(Duration::from_millis(300));
    let samples = sampler.stop();
    drop(worker);

    let refused = refused.lock().map(|g| g.clone()).unwrap_or_default();
    if !refused.is_empty() {
        rep.note(format!(
            "{sc}: {} submits refused, e.g. {}",
            refused.len(),
            refused[0]
        ));
    }
    let latencies: Vec<f64> = seen.iter().flat_map(|s| s.latencies.clone()).collect();
    let complete = seen.iter().filter(|s| s.complete).count();
    let ordered = seen
        .iter()
        .filter(|s| s.ids.windows(2).all(|w| w[0] < w[1]))
        .count();
    let errors: Vec<&String> = seen.iter().filter_map(|s| s.error.as_ref()).collect();
    if let Some(e) = errors.first() {
        rep.note(format!(
            "{sc}: {} subscribers had an error, e.g. {e}",
            errors.len()
        ));
    }
    let subscribers = seen.len() as f64;
    let pct = |p: f64| stats::percentile(&latencies, p).unwrap_or(f64::NAN);
    rep.add(
        sc,
        "subscribers (10 per task)",
        "streams",
        vec![subscribers],
    );
    rep.add(
        sc,
        "streams that saw `complete`",
        "streams",
        vec![complete as f64],
    );
    rep.add(
        sc,
        "pushed events received",
        "events",
        vec![latencies.len() as f64],
    );
    rep.add(
        sc,
        "DO change → event at the client, p50",
        "ms",
        vec![pct(50.0)],
    );
    rep.add(
        sc,
        "DO change → event at the client, p99",
        "ms",
        vec![pct(99.0)],
    );
    rep.add(
        sc,
        "DO change → event at the client, max",
        "ms",
        vec![stats::max(&latencies).unwrap_or(f64::NAN)],
    );
    let (group, workerd, base_group) =
        rss::growth(&samples, t0, end).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let peak_workerd = samples
        .iter()
        .map(|s| s.workerd_kib as f64 / 1024.0)
        .fold(f64::NAN, f64::max);
    rep.add(sc, "workerd RSS growth", "MiB", vec![workerd]);
    rep.add(sc, "workerd RSS peak", "MiB", vec![peak_workerd]);
    rep.add(
        sc,
        "wrangler dev group RSS growth (base)",
        "MiB",
        vec![group],
    );
    rep.add(sc, "wrangler dev group RSS before", "MiB", vec![base_group]);
    rep.add(sc, "run time", "s", vec![(end - t0) / 1000.0]);
    let all = TASKS * PER_TASK;
    rep.check(
        "live: every one of 1,000 streams saw its task complete, ids growing",
        if complete == all && ordered == all {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        format!("{complete} of {all} complete, {ordered} in order"),
    );
}
