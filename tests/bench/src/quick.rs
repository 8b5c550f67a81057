//! The request-path scenarios, driven by wrk: 1 (submit vs health at several concurrencies),
//! 2 (status over existing tasks), the submit profile, and 6 (the bundle, from
//! `scripts/bundle-size.sh`'s output).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cfg::Cfg;
use crate::cpu;
use crate::env::Env;
use crate::report::{Report, Verdict};
use crate::stats::median;
use crate::wrk::{self, Load, WrkResult};

/// The directive of every task the request-path loads create: Tripo refuses them at create
/// (moderation), so each job is one claim, one provider call and the failure writes. Real
/// tasks would hit the fake's Tripo limits (10 running tasks per key, 10,000 credits) and turn
/// thousands of submits into a retry backlog that lasts the whole bench.
pub const LOAD_DIRECTIVE: &str = "moderation";

fn load_prompt(nonce: &str) -> String {
    format!("a bench cat [[fake:{LOAD_DIRECTIVE},nonce={nonce}]]")
}

fn wrk_rows(rep: &mut Report, sc: &str, what: &str, runs: &[WrkResult]) {
    let col = |f: &dyn Fn(&WrkResult) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    rep.add(sc, &format!("{what} requests/s"), "req/s", col(&|x| x.rps));
    rep.add(sc, &format!("{what} p50"), "ms", col(&|x| x.p50_ms));
    rep.add(sc, &format!("{what} p95"), "ms", col(&|x| x.p95_ms));
    rep.add(sc, &format!("{what} p99"), "ms", col(&|x| x.p99_ms));
    rep.add(sc, &format!("{what} errors"), "req", col(&|x| x.errors()));
    rep.add(
        sc,
        &format!("{what} CPU/request, all processes"),
        "ms",
        col(&|x| x.cpu_total_ms()),
    );
}

fn run_wrk(env: &Env, rep: &mut Report, sc: &str, script: &Path, load: &Load) -> Option<WrkResult> {
    let before = cpu::snapshot(env.pgid);
    let result = wrk::run(script, load);
    let after = cpu::snapshot(env.pgid);
    match result {
        Ok(mut r) => {
            if r.requests > 0.0 {
                let mut d = cpu::delta(&before, &after);
                // wrk has exited by now: its share comes from getrusage.
                d.insert("wrk", r.wrk_cpu_s);
                r.cpu_ms = d
                    .into_iter()
                    .map(|(k, v)| (k, v * 1000.0 / r.requests))
                    .collect();
            }
            eprintln!(
                "bench: {sc} {}: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors {}, CPU {:.2} ms/req {:?}",
                load.mode,
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.errors(),
                r.codes,
                r.cpu_total_ms(),
                r.cpu_ms
            );
            Some(r)
        }
        Err(e) => {
            rep.note(format!("{sc}: wrk {} failed: {e}", load.mode));
            None
        }
    }
}

/// CPU of everything but "other processes" (what the bench runs), in the map's unit.
fn ours(m: &std::collections::BTreeMap<&'static str, f64>) -> f64 {
    m.iter()
        .filter(|(k, _)| **k != "other processes")
        .map(|(_, v)| v)
        .sum()
}

/// Rows of CPU milliseconds per request by component (components under 0.05 ms left out).
fn cpu_rows(rep: &mut Report, sc: &str, what: &str, runs: &[WrkResult]) {
    for c in cpu::COMPONENTS {
        let v: Vec<f64> = runs
            .iter()
            .map(|r| r.cpu_ms.get(c).copied().unwrap_or(0.0))
            .collect();
        if median(&v).unwrap_or(0.0) >= 0.05 {
            rep.add(sc, &format!("{what} CPU/request: {c}"), "ms", v);
        }
    }
}

// ------------------------------------------------------------------------------------------
// 1. Submit vs health
// ------------------------------------------------------------------------------------------

/// Task id prefix of the submit loads.
pub fn load_prefix(env: &Env) -> String {
    format!("{}-ld", env.run)
}

/// Returns the number of 202s wrk counted (to compare with the worker's `submit.accepted`).
pub fn submit(env: &Env, rep: &mut Report, cfg: &Cfg, script: &Path) -> f64 {
    let prefix = load_prefix(env);
    let prompt = load_prompt(&prefix);
    let mut accepted = 0.0;
    for &c in &cfg.concurrency {
        let sc = format!("1 submit c={c}");
        let (mut health, mut submit, mut open, mut drained) = (vec![], vec![], vec![], vec![]);
        let (mut job_cpu, mut path_cpu) = (vec![], vec![]);
        for r in 0..cfg.runs {
            eprintln!("bench: {sc}: run {}/{}", r + 1, cfg.runs);
            let h = run_wrk(
                env,
                rep,
                &sc,
                script,
                &Load {
                    mode: "health",
                    url: format!("{}/health", env.base),
                    connections: c,
                    seconds: cfg.secs,
                    expect: 200,
                    token: None,
                    tokens: &[],
                    tag: None,
                    prompt: None,
                    ids_file: None,
                },
            );
            open.push(
                env.rt
                    .block_on(env.open_rows("models", &prefix))
                    .unwrap_or(0) as f64,
            );
            let tag = format!("{prefix}{c}r{r}");
            let s = run_wrk(
                env,
                rep,
                &sc,
                script,
                &Load {
                    mode: "submit",
                    url: format!("{}/generate/text-to-model", env.base),
                    connections: c,
                    seconds: cfg.secs,
                    expect: 202,
                    token: Some(&env.token),
                    tokens: &env.submit_tokens,
                    tag: Some(&tag),
                    prompt: Some(&prompt),
                    ids_file: None,
                },
            );
            let open_end = env
                .rt
                .block_on(env.open_rows("models", &prefix))
                .unwrap_or(0) as f64;
            let before = cpu::snapshot(env.pgid);
            let (waited, left) = env.drain("models", &prefix, Duration::from_secs(cfg.drain_s));
            let used_ms = 1000.0 * ours(&cpu::delta(&before, &cpu::snapshot(env.pgid)));
            drained.push(waited);
            if let (Some(h), Some(s)) = (h, s) {
                accepted += s.ok;
                // The jobs left when the load ended ran alone during the drain: their CPU
                // per job, taken out of the load's CPU for the jobs that ran during the load,
                // leaves the submit path's own CPU.
                let finished_after = open_end - left as f64;
                if finished_after >= 5.0 && s.requests > 0.0 {
                    let per_job = used_ms / finished_after;
                    let load_ms = s.requests * ours(&s.cpu_ms);
                    let jobs_in_load =
                        (s.ok + open.last().copied().unwrap_or(0.0) - open_end).max(0.0);
                    job_cpu.push(per_job);
                    path_cpu.push((load_ms - jobs_in_load * per_job) / s.requests);
                }
                health.push(h);
                submit.push(s);
            }
            if left > 0 {
                eprintln!("bench: {sc}: {left} jobs still open after {waited:.0}s");
            }
        }
        wrk_rows(rep, &sc, "submit", &submit);
        wrk_rows(rep, &sc, "health", &health);
        let ratio = |f: &dyn Fn(&WrkResult) -> f64| {
            submit
                .iter()
                .zip(&health)
                .map(|(s, h)| f(s) / f(h))
                .collect::<Vec<f64>>()
        };
        rep.add(&sc, "submit/health requests/s", "ratio", ratio(&|x| x.rps));
        rep.add(&sc, "submit/health p50", "ratio", ratio(&|x| x.p50_ms));
        rep.add(&sc, "jobs still open when submit started", "jobs", open);
        rep.add(&sc, "wait for the jobs to finish after", "s", drained);
        rep.add(&sc, "CPU per job (jobs left after the load)", "ms", job_cpu);
        rep.add(
            &sc,
            "CPU per submit without its job (estimate)",
            "ms",
            path_cpu,
        );
        if c == 16 || Some(&c) == cfg.concurrency.iter().max() && !cfg.concurrency.contains(&16) {
            cpu_rows(rep, &sc, "submit", &submit);
            cpu_rows(rep, &sc, "health", &health);
        }
    }
    rep.note(format!(
        "1 submit: every submit enqueues a real job (prompt directive [[fake:{LOAD_DIRECTIVE}]]: \
         Tripo refuses it at create, so each costs a claim, one provider call and the failure \
         writes); that background work competes with the load, and wrk runs on the same 2 cores. \
         Health runs just before each submit run; the bench waits up to {} s for the jobs to \
         finish after each submit run. CPU/request = CPU seconds of each component during the \
         load (/proc/*/stat; wrk from getrusage) / requests answered; \"other processes\" is \
         whatever else ran on the machine. CPU per job = CPU of the bench's processes while the \
         jobs left at the end of a load finish / those jobs; the submit path's own CPU = the \
         load's CPU less that per job for the jobs that finished during the load.",
        cfg.drain_s
    ));
    accepted
}

// ------------------------------------------------------------------------------------------
// 2. Status
// ------------------------------------------------------------------------------------------

/// Creates the tasks the status load reads; returns the file of their ids.
pub fn create_status_tasks(env: &Env, rep: &mut Report, cfg: &Cfg) -> Option<std::path::PathBuf> {
    let tag = format!("{}-st", env.run);
    let prompt = load_prompt(&tag);
    let bodies: Vec<Value> = (0..cfg.status_tasks)
        .map(|i| json!({"task_id": format!("{tag}-{i:04}"), "prompt": prompt, "texture": false}))
        .collect();
    let t0 = std::time::Instant::now();
    let subs = env.rt.block_on(env.submit_all("text-to-model", bodies, 16));
    let ids: Vec<String> = subs
        .iter()
        .filter(|s| s.status == 202)
        .map(|s| s.task_id.clone())
        .collect();
    let created_s = t0.elapsed().as_secs_f64();
    let (waited, left) = env.drain("models", &tag, Duration::from_secs(60));
    eprintln!(
        "bench: created {} status tasks in {created_s:.1}s; their jobs finished {waited:.0}s later ({left} open)",
        ids.len()
    );
    if ids.is_empty() {
        rep.note("2 status: no task could be created");
        return None;
    }
    if ids.len() < cfg.status_tasks {
        rep.note(format!(
            "2 status: only {} of {} tasks were created",
            ids.len(),
            cfg.status_tasks
        ));
    }
    let path = env.scratch.path().join("status-ids.txt");
    std::fs::write(&path, ids.join("\n")).ok()?;
    rep.add(
        "2 status",
        &format!("creating the {} tasks (16 in flight)", ids.len()),
        "s",
        vec![created_s],
    );
    Some(path)
}

pub fn status(env: &Env, rep: &mut Report, cfg: &Cfg, script: &Path, ids: &Path) {
    for &c in &cfg.status_concurrency {
        let sc = format!("2 status c={c}");
        let mut runs = vec![];
        for r in 0..cfg.runs {
            eprintln!("bench: {sc}: run {}/{}", r + 1, cfg.runs);
            if let Some(x) = run_wrk(
                env,
                rep,
                &sc,
                script,
                &Load {
                    mode: "status",
                    url: format!("{}/", env.base),
                    connections: c,
                    seconds: cfg.secs,
                    expect: 200,
                    token: Some(&env.token),
                    tokens: &[],
                    tag: None,
                    prompt: None,
                    ids_file: Some(ids),
                },
            ) {
                runs.push(x);
            }
        }
        wrk_rows(rep, &sc, "status", &runs);
    }
}

// ------------------------------------------------------------------------------------------
// Submit profile
// ------------------------------------------------------------------------------------------

/// Where a submit spends its time, two ways:
/// * a timeline of sequential submits: client send → the row insert reaching PostgREST (the
///   bench gateway's log) → the worker's `submit.accepted` log line (after the queue send and
///   the DO's MarkEnqueued) → the answer at the client;
/// * wrk at 16 connections on requests that stop earlier on the same path: a 422 (body parsed
///   and validated, no auth), a repeated submit (validation, JWT, one DO command, answered 200
///   without insert or enqueue), next to health, status and new submits from scenarios 1–2.
pub fn profile(
    env: &Env,
    rep: &mut Report,
    cfg: &Cfg,
    script: &Path,
    repeat: Option<(&Path, &str)>,
    status_ids: Option<&Path>,
) {
    let sc = "profile submit";
    let per_run = 40;
    let (mut a, mut b, mut c, mut total) = (vec![], vec![], vec![], vec![]);
    let (mut health, mut status, mut insert) = (vec![], vec![], vec![]);
    let ids: Vec<String> = status_ids
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    for r in 0..cfg.runs {
        // The same client, one request at a time: GET /health, then a status read.
        let timed = |path: String, auth: bool| -> Vec<f64> {
            (0..per_run)
                .filter_map(|_| {
                    let t = std::time::Instant::now();
                    let mut req = env.http.get(format!("{}{path}", env.base));
                    if auth {
                        req = req.bearer_auth(&env.token);
                    }
                    let ok = env
                        .rt
                        .block_on(async { req.send().await?.bytes().await })
                        .is_ok();
                    ok.then(|| t.elapsed().as_secs_f64() * 1000.0)
                })
                .collect()
        };
        health.push(median(&timed("/health".into(), false)).unwrap_or(f64::NAN));
        if let Some(id) = ids.get(r) {
            status.push(median(&timed(format!("/tasks/{id}/status"), true)).unwrap_or(f64::NAN));
        }
        insert.push(median(&rest_inserts(env, r, per_run)).unwrap_or(f64::NAN));
        let tag = format!("{}-p{r}", env.run);
        let prompt = load_prompt(&tag);
        let mut sent: HashMap<String, (f64, f64)> = HashMap::new();
        for i in 0..per_run {
            let id = format!("{tag}-{i:02}");
            let s = env.rt.block_on(env.submit(
                "text-to-model",
                &json!({"task_id": id, "prompt": prompt, "texture": false}),
            ));
            if s.status == 202 {
                sent.insert(id, (s.sent_ms, s.done_ms));
            }
        }
        std::thread::sleep(Duration::from_millis(800));
        let inserts = env
            .rt
            .block_on(env.rest_log("/models", "POST", &tag))
            .unwrap_or_default();
        let mut insert_at: HashMap<String, f64> = HashMap::new();
        for e in &inserts {
            let body = e["body_excerpt"].as_str().unwrap_or_default();
            if let Some(id) = task_id_in(body) {
                let at = e["at_ms"].as_f64().unwrap_or(f64::NAN);
                insert_at.entry(id).or_insert(at);
            }
        }
        let accepted: HashMap<String, f64> = env
            .worker_events("submit.accepted")
            .into_iter()
            .filter_map(|v| {
                let id = v["task_id"].as_str()?.to_string();
                id.starts_with(&tag).then_some((id, v["ts"].as_f64()?))
            })
            .collect();
        let (mut ra, mut rb, mut rc, mut rt) = (vec![], vec![], vec![], vec![]);
        for (id, (s, d)) in &sent {
            if let (Some(i), Some(acc)) = (insert_at.get(id), accepted.get(id)) {
                ra.push(i - s);
                rb.push(acc - i);
                rc.push(d - acc);
                rt.push(d - s);
            }
        }
        if ra.is_empty() {
            rep.note(format!(
                "{sc}: run {r}: no timeline ({} inserts logged, {} submit.accepted events)",
                inserts.len(),
                accepted.len()
            ));
            continue;
        }
        a.push(median(&ra).unwrap_or(f64::NAN));
        b.push(median(&rb).unwrap_or(f64::NAN));
        c.push(median(&rc).unwrap_or(f64::NAN));
        total.push(median(&rt).unwrap_or(f64::NAN));
    }
    rep.add(sc, "c=1 GET /health p50", "ms", health);
    rep.add(sc, "c=1 GET /tasks/{id}/status p50", "ms", status);
    rep.add(sc, "c=1 send → row insert at PostgREST p50", "ms", a);
    rep.add(
        sc,
        "c=1 a models insert from the bench client p50",
        "ms",
        insert,
    );
    rep.add(sc, "c=1 insert → submit.accepted p50", "ms", b);
    rep.add(sc, "c=1 submit.accepted → answer p50", "ms", c);
    rep.add(sc, "c=1 whole submit p50", "ms", total);
    rep.note(format!(
        "{sc}: per run {per_run} sequential health, status, PostgREST insert and submit requests from one client; send → insert = body, validation, \
         JWT and the DO's Submit; insert → accepted = PostgREST insert, queue send and the DO's \
         MarkEnqueued; worker timestamps are workerd's Date.now() (advances on I/O)"
    ));
    let invalid_load = |c: u32| Load {
        mode: "invalid",
        url: format!("{}/generate/text-to-model", env.base),
        connections: c,
        seconds: cfg.secs,
        expect: 422,
        token: Some(&env.token),
        tokens: &[],
        tag: None,
        prompt: None,
        ids_file: None,
    };
    let mut inv = vec![];
    let mut rep_runs = vec![];
    for r in 0..cfg.runs {
        eprintln!("bench: {sc}: c=16 run {}/{}", r + 1, cfg.runs);
        if let Some(x) = run_wrk(env, rep, sc, script, &invalid_load(16)) {
            inv.push(x);
        }
        if let Some((ids, prompt)) = repeat {
            if let Some(x) = run_wrk(
                env,
                rep,
                sc,
                script,
                &Load {
                    mode: "repeat",
                    url: format!("{}/generate/text-to-model", env.base),
                    connections: 16,
                    seconds: cfg.secs,
                    expect: 200,
                    token: Some(&env.token),
                    tokens: &[],
                    tag: None,
                    prompt: Some(prompt),
                    ids_file: Some(ids),
                },
            ) {
                rep_runs.push(x);
            }
        }
    }
    wrk_rows(rep, sc, "c=16 invalid body (422)", &inv);
    wrk_rows(rep, sc, "c=16 repeated submit (200)", &rep_runs);
}

/// Round trips (ms) of `n` sequential one-row inserts into `models` through the gateway, shaped
/// like the worker's (service key, `resolution=ignore-duplicates`, `return=minimal`).
fn rest_inserts(env: &Env, r: usize, n: usize) -> Vec<f64> {
    (0..n)
        .filter_map(|i| {
            let body = json!([{
                "id": uuid::Uuid::new_v4().to_string(),
                "task_id": format!("{}-pi{r}-{i:02}", env.run),
                "user_id": env.user_id,
                "prompt": "a bench insert",
                "status": "pending",
                "metadata": {"step": "model", "attempt": 1},
            }]);
            let t = std::time::Instant::now();
            let ok = env.rt.block_on(async {
                let resp = env
                    .http
                    .post(format!("{}/rest/v1/models", env.gw))
                    .header("apikey", &env.service_key)
                    .bearer_auth(&env.service_key)
                    .header("prefer", "return=minimal,resolution=ignore-duplicates")
                    .json(&body)
                    .send()
                    .await?;
                Ok::<bool, reqwest::Error>(resp.status().is_success())
            });
            matches!(ok, Ok(true)).then(|| t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect()
}

/// The first `"task_id":"…"` value in a JSON excerpt.
fn task_id_in(body: &str) -> Option<String> {
    let start = body.find("\"task_id\":\"")? + "\"task_id\":\"".len();
    let end = body[start..].find('"')?;
    Some(body[start..start + end].to_string())
}

// ------------------------------------------------------------------------------------------
// 6. Bundle
// ------------------------------------------------------------------------------------------

/// Reads `scripts/bundle-size.sh` output: `Total Upload: X KiB / gzip: Y KiB` and
/// `bundle: wasm raw N bytes, gzip -9 M bytes (K KiB)`.
pub fn bundle(rep: &mut Report, text: &str) {
    let sc = "6 bundle";
    let mut gz = None;
    for line in text.lines() {
        if let Some(rest) = line.split("Total Upload:").nth(1) {
            let nums: Vec<f64> = rest
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .filter_map(|s| s.parse().ok())
                .collect();
            if let [upload, gzip, ..] = nums[..] {
                rep.add(sc, "wrangler upload size", "KiB", vec![upload]);
                rep.add(sc, "wrangler upload size, gzip", "KiB", vec![gzip]);
            }
        }
        if let Some(rest) = line.strip_prefix("bundle: wasm raw ") {
            let nums: Vec<f64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|s| s.parse().ok())
                .collect();
            // raw, 9 (of "-9"), gzip, KiB
            if let [raw, _, gzip, ..] = nums[..] {
                rep.add(sc, "WebAssembly raw", "KiB", vec![raw / 1024.0]);
                rep.add(sc, "WebAssembly gzip -9", "KiB", vec![gzip / 1024.0]);
                gz = Some(gzip);
            }
        }
    }
    match gz {
        Some(g) => {
            rep.check_max(
                "6: bundle under 1 MiB gzip (WebAssembly, gzip -9)",
                &[g / 1024.0],
                1024.0,
                "KiB",
            );
            // P13: a small WebAssembly keeps cold starts short.
            rep.check_max(
                "P13: bundle ≤ 500 KiB gzip (WebAssembly, gzip -9)",
                &[g / 1024.0],
                500.0,
                "KiB",
            );
        }
        None => rep.check(
            "6: bundle under 1 MiB gzip",
            Verdict::Fail,
            "no bundle-size output to read",
        ),
    }
    rep.note("6 bundle: one build (the size is deterministic), from scripts/bundle-size.sh");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bundle_output() {
        let mut rep = Report::default();
        bundle(
            &mut rep,
            "Total Upload: 573.61 KiB / gzip: 216.09 KiB\nbundle: wasm raw 538816 bytes, gzip -9 206883 bytes (202 KiB)\n",
        );
        let names: Vec<&str> = rep.rows.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(rep.rows[1].values, vec![216.09]);
        assert!((rep.rows[3].values[0] - 206883.0 / 1024.0).abs() < 1e-9);
        assert!(!rep.failed());
    }

    #[test]
    fn finds_task_ids() {
        assert_eq!(
            task_id_in(r#"[{"id":"x","task_id":"b1-p0-03","user_id":"u"}]"#).as_deref(),
            Some("b1-p0-03")
        );
        assert_eq!(task_id_in("{}"), None);
    }
}
