//! Scenario `floor` (P13): the worker next to the platform's own floor. The floor worker
//! (`tests/bench/floor`, package `bench-floor`) is the smallest Worker that does exactly the I/O
//! of each path and nothing else — by default the I/O as the contract makes it (P10's limits
//! and gate, the watchdog alarm, the log lines; `BENCH_FLOOR_CONTRACT=0`: P13's list alone) —
//! and whose consumer runs a batch's jobs together, as ours does; it is built like ours
//! (worker-build --release) and runs under the same `wrangler dev`, on the same stack. A fresh worker of ours and the floor are started
//! one after the other (each one's first request after wrangler reports `Ready on` is its cold
//! start), then take the same loads in turns, in a rotating order (as `limits` does), so drift on
//! the machine falls on both alike:
//!
//! * submit at c=16 (wrk, `POST /generate/text-to-model`, the 16 users of scenario 1), every
//!   submit enqueuing a job that Tripo refuses at create (`[[fake:moderation]]`);
//! * the jobs left when that load ends, run alone while the bench waits for them: the CPU per
//!   job (the way scenario 1 measures it), and from it the submit's own CPU without its job;
//! * status at c=16 (wrk, `GET /tasks/{id}/status` over tasks made before the turns).
//!
//! Each figure is the median of the runs; each ratio is the median of ours/floor over the runs
//! taken back to back.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{WorkerOptions, WorkerProcess};
use serde_json::json;

use crate::cfg::Cfg;
use crate::cpu;
use crate::env::Env;
use crate::report::{Report, Verdict};
use crate::stats::median;
use crate::wrk::{self, Load, WrkResult};

/// The bound: ours within 1.25× the floor.
pub const LIMIT: f64 = 1.25;
/// Connections of the submit and status loads (the 16).
const CONNECTIONS: u32 = 16;
/// Tasks each worker's status load reads.
const STATUS_TASKS: usize = 100;
/// Fewest jobs left after a load for a CPU-per-job figure (fewer: too noisy to divide by).
pub const MIN_JOBS: f64 = 5.0;

/// Pairwise `a[k] / b[k]` (runs taken back to back); pairs with a non-finite or zero
/// denominator are left out.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite() && **y != 0.0)
        .map(|(x, y)| x / y)
        .collect()
}

/// The verdict of "ours ≤ `limit` × floor" from the paired ratios: their median decides.
pub fn ratio_verdict(ratios: &[f64], limit: f64) -> (Verdict, String) {
    match median(ratios) {
        None => (Verdict::Skip, "not measured".into()),
        Some(m) => (
            if m <= limit {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            format!(
                "median ours/floor {m:.2} over {} pair(s) (limit {limit})",
                ratios.len()
            ),
        ),
    }
}

/// CPU ms per job from the CPU (ms) used while `finished` jobs ran alone; `None` under
/// [`MIN_JOBS`].
pub fn per_job(cpu_ms: f64, finished: f64) -> Option<f64> {
    (finished >= MIN_JOBS && cpu_ms.is_finite()).then(|| cpu_ms / finished)
}

/// The submit path's own CPU per request: the load's CPU (ms) less `per_job` for each of the
/// `jobs_in_load` jobs that ran during it, over the `requests` answered (scenario 1's estimate).
pub fn without_jobs(load_cpu_ms: f64, requests: f64, jobs_in_load: f64, per_job: f64) -> f64 {
    if requests <= 0.0 {
        return f64::NAN;
    }
    (load_cpu_ms - jobs_in_load.max(0.0) * per_job) / requests
}

/// The order of the two sides in turn `r`: ours first in even turns, the floor first in odd.
pub fn order(r: usize) -> [usize; 2] {
    if r.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// One worker under test and what it measured.
struct Side {
    label: &'static str,
    worker: WorkerProcess,
    pgid: Option<i32>,
    ids: std::path::PathBuf,
    /// `wrangler dev` start → its `Ready on` line (the build included), s.
    ready_s: f64,
    cold_ms: f64,
    warm_ms: f64,
    submit: Vec<WrkResult>,
    status: Vec<WrkResult>,
    /// Per submit run: workerd / all-process CPU per job; the submit's own CPU without its job.
    job_workerd: Vec<f64>,
    job_all: Vec<f64>,
    jobs_measured: Vec<f64>,
    submit_workerd: Vec<f64>,
    submit_all: Vec<f64>,
    drained_s: Vec<f64>,
}

/// CPU of everything the bench runs (all but "other processes"), ms.
fn all_ms(m: &std::collections::BTreeMap<&'static str, f64>) -> f64 {
    1000.0
        * m.iter()
            .filter(|(k, _)| **k != "other processes")
            .map(|(_, v)| v)
            .sum::<f64>()
}

fn workerd_ms(m: &std::collections::BTreeMap<&'static str, f64>) -> f64 {
    1000.0 * m.get("workerd").copied().unwrap_or(0.0)
}

/// A GET timed on a fresh connection, ms (NaN if it failed or did not answer 200).
fn timed_get(env: &Env, url: &str) -> f64 {
    let Ok(client) = reqwest::Client::builder().build() else {
        return f64::NAN;
    };
    let t = Instant::now();
    let ok = env.rt.block_on(async {
        let r = client.get(url).send().await?;
        let s = r.status().as_u16();
        r.bytes().await.map(|_| s == 200)
    });
    match ok {
        Ok(true) => t.elapsed().as_secs_f64() * 1000.0,
        _ => f64::NAN,
    }
}

/// Starts one worker in `dir`, waits for `Ready on` and times its first two requests.
/// `extra` settings are added to the bench's own for this worker.
fn start(
    env: &Env,
    label: &'static str,
    dir: &Path,
    ids: std::path::PathBuf,
    extra: &[(String, String)],
) -> Result<Side, String> {
    let t = Instant::now();
    let mut settings = env.settings.clone();
    settings.extend_from_slice(extra);
    let mut worker = WorkerProcess::spawn_in(
        dir,
        WorkerOptions {
            settings,
            build_profile: "--release".into(),
            persist_to: None,
            port: None,
        },
    )
    .map_err(|e| e.to_string())?;
    worker
        .wait_log("Ready on", Duration::from_secs(600))
        .map_err(|e| e.to_string())?;
    let ready_s = t.elapsed().as_secs_f64();
    let url = format!("{}/health", worker.base_url);
    let cold_ms = timed_get(env, &url);
    let warm_ms = timed_get(env, &url);
    eprintln!(
        "bench: floor: {label} ready after {ready_s:.1}s; first GET /health {cold_ms:.1} ms, second {warm_ms:.1} ms"
    );
    let pgid = worker.process_group().map(|p| p as i32);
    Ok(Side {
        label,
        worker,
        pgid,
        ids,
        ready_s,
        cold_ms,
        warm_ms,
        submit: vec![],
        status: vec![],
        job_workerd: vec![],
        job_all: vec![],
        jobs_measured: vec![],
        submit_workerd: vec![],
        submit_all: vec![],
        drained_s: vec![],
    })
}

/// Submits `n` tasks as the bench's first user, 16 in flight; returns the accepted ids.
fn make_tasks(env: &Env, base: &str, tag: &str, n: usize) -> Vec<String> {
    use futures::stream::{self, StreamExt};
    let prompt = format!(
        "a bench cat [[fake:{},nonce={tag}]]",
        crate::quick::LOAD_DIRECTIVE
    );
    let url = format!("{base}/generate/text-to-model");
    let out: Vec<Option<String>> = env.rt.block_on(
        stream::iter(0..n)
            .map(|i| {
                let id = format!("{tag}-{i:04}");
                let body = json!({"task_id": id, "prompt": prompt, "texture": false});
                let req = env
                    .http
                    .post(&url)
                    .bearer_auth(&env.token)
                    .header("content-type", "application/json")
                    .body(body.to_string());
                async move {
                    let r = req.send().await.ok()?;
                    (r.status().as_u16() == 202).then_some(id)
                }
            })
            .buffer_unordered(16)
            .collect(),
    );
    out.into_iter().flatten().collect()
}

fn submit_load<'a>(
    url: String,
    secs: u32,
    env: &'a Env,
    tag: &'a str,
    prompt: &'a str,
) -> Load<'a> {
    Load {
        mode: "submit",
        url,
        connections: CONNECTIONS,
        seconds: secs,
        expect: 202,
        token: Some(&env.token),
        tokens: &env.submit_tokens,
        tag: Some(tag),
        prompt: Some(prompt),
        ids_file: None,
    }
}

fn status_load<'a>(url: String, secs: u32, env: &'a Env, ids: &'a Path) -> Load<'a> {
    Load {
        mode: "status",
        url,
        connections: CONNECTIONS,
        seconds: secs,
        expect: 200,
        token: Some(&env.token),
        tokens: &[],
        tag: None,
        prompt: None,
        ids_file: Some(ids),
    }
}

/// One wrk load with the CPU of each component over it (per request, ms, in `cpu_ms`).
fn measured(script: &Path, load: &Load, pgid: Option<i32>) -> Result<WrkResult, String> {
    let before = cpu::snapshot(pgid);
    let mut w = wrk::run(script, load)?;
    let mut d = cpu::delta(&before, &cpu::snapshot(pgid));
    d.insert("wrk", w.wrk_cpu_s);
    if w.requests > 0.0 {
        w.cpu_ms = d
            .into_iter()
            .map(|(k, v)| (k, v * 1000.0 / w.requests))
            .collect();
    }
    Ok(w)
}

/// One turn of one side: the submit load, its jobs drained, the status load.
fn turn(
    env: &Env,
    cfg: &Cfg,
    script: &Path,
    side: &mut Side,
    tag: &str,
    secs: u32,
    count: bool,
) -> Result<(), String> {
    let sc = "floor";
    let prompt = format!(
        "a bench cat [[fake:{},nonce={tag}]]",
        crate::quick::LOAD_DIRECTIVE
    );
    let open = |t: &str| env.rt.block_on(env.open_rows("models", t)).unwrap_or(0) as f64;
    let open_start = open(tag);
    let url = format!("{}/generate/text-to-model", side.worker.base_url);
    let s = measured(
        script,
        &submit_load(url, secs, env, tag, &prompt),
        side.pgid,
    )?;
    let open_end = open(tag);
    let before = cpu::snapshot(side.pgid);
    // Longer than scenario 1's wait: jobs still running would fall into the other side's turn.
    let (waited, left) = env.drain("models", tag, Duration::from_secs(2 * cfg.drain_s));
    let used = cpu::delta(&before, &cpu::snapshot(side.pgid));
    let finished = open_end - left as f64;
    let (job_w, job_a) = (
        per_job(workerd_ms(&used), finished),
        per_job(all_ms(&used), finished),
    );
    let jobs_in_load = (s.ok + open_start - open_end).max(0.0);
    let load_w = s.requests * s.cpu_ms.get("workerd").copied().unwrap_or(f64::NAN);
    let load_a: f64 = s.requests
        * s.cpu_ms
            .iter()
            .filter(|(k, _)| **k != "other processes")
            .map(|(_, v)| v)
            .sum::<f64>();
    let st = measured(
        script,
        &status_load(format!("{}/", side.worker.base_url), secs, env, &side.ids),
        side.pgid,
    )?;
    eprintln!(
        "bench: {sc} {} ({}): submit {:.0} req/s p50 {:.1} p99 {:.1} ms, {} errors {}, workerd {:.2} ms/req; {finished} jobs after the load in {waited:.1}s ({left} left), workerd {:.2} / all {:.2} ms per job; status {:.0} req/s p99 {:.1} ms, {} errors, workerd {:.2} ms/req",
        side.label,
        if count { "counted" } else { "warm-up" },
        s.rps,
        s.p50_ms,
        s.p99_ms,
        s.errors(),
        s.codes,
        s.cpu_ms.get("workerd").copied().unwrap_or(f64::NAN),
        job_w.unwrap_or(f64::NAN),
        job_a.unwrap_or(f64::NAN),
        st.rps,
        st.p99_ms,
        st.errors(),
        st.cpu_ms.get("workerd").copied().unwrap_or(f64::NAN),
    );
    if count {
        side.job_workerd.push(job_w.unwrap_or(f64::NAN));
        side.job_all.push(job_a.unwrap_or(f64::NAN));
        side.jobs_measured.push(finished);
        side.submit_workerd.push(job_w.map_or(f64::NAN, |j| {
            without_jobs(load_w, s.requests, jobs_in_load, j)
        }));
        side.submit_all.push(job_a.map_or(f64::NAN, |j| {
            without_jobs(load_a, s.requests, jobs_in_load, j)
        }));
        side.drained_s.push(waited);
        side.submit.push(s);
        side.status.push(st);
    }
    Ok(())
}

/// Rows "ours" and "floor" of one figure (counts, where a ratio says nothing).
fn pair(rep: &mut Report, sc: &str, what: &str, unit: &str, ours: &[f64], floor: &[f64]) {
    rep.add(sc, &format!("ours: {what}"), unit, ours.to_vec());
    rep.add(sc, &format!("floor: {what}"), unit, floor.to_vec());
}

/// Rows "ours", "floor" and "ours/floor" of one figure.
fn trio(
    rep: &mut Report,
    sc: &str,
    what: &str,
    unit: &str,
    ours: &[f64],
    floor: &[f64],
) -> Vec<f64> {
    rep.add(sc, &format!("ours: {what}"), unit, ours.to_vec());
    rep.add(sc, &format!("floor: {what}"), unit, floor.to_vec());
    let r = ratios(ours, floor);
    rep.add(sc, &format!("ours/floor: {what}"), "ratio", r.clone());
    r
}

fn col(runs: &[WrkResult], f: impl Fn(&WrkResult) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

const CHECKS: [&str; 4] = [
    "P13: submit CPU ≤ 1.25× floor (workerd, without its job)",
    "P13: status CPU ≤ 1.25× floor (workerd)",
    "P13: Tripo job CPU ≤ 1.25× floor (workerd)",
    "P13: submit p99 at c=16 ≤ 1.25× floor",
];

fn skip_all(rep: &mut Report, why: &str) {
    for c in CHECKS {
        rep.check(c, Verdict::Skip, why);
    }
}

pub fn run(env: &Env, rep: &mut Report, cfg: &Cfg, script: &Path) {
    let root = e2e::repo_root();
    let scratch = env.scratch.path();
    let mut sides = Vec::new();
    let floor_dir = cfg
        .floor_dir
        .clone()
        .unwrap_or_else(|| root.join("tests/bench/floor"));
    if cfg.floor_dir.is_some() {
        rep.note(format!(
            "floor: BENCH_FLOOR_DIR: the \"floor\" side is the worker in {} (an A/B run, not the floor)",
            floor_dir.display()
        ));
    }
    let contract = cfg.floor_contract_io();
    if cfg.floor_dir.is_none() {
        rep.note(if contract {
            "floor: the \"floor\" side does the I/O of each path as the contract makes it \
             (FLOOR_CONTRACT_IO=1, the default): besides P13's list, the per-user limits' object \
             with its SQL and the watchdog alarm on submit, the provider gate's calls per batch, \
             the row written by the task's object and confirmed with a second write and the \
             alarm deleted on a job, one log line per submit and per failed job. \
             BENCH_FLOOR_CONTRACT=0 measures against P13's list alone (written before P10 added \
             that I/O)."
        } else {
            "floor: BENCH_FLOOR_CONTRACT=0: the \"floor\" side does P13's list only (no per-user \
             limits, provider gate, watchdog alarm or log lines: the I/O P10 and the contract \
             added after the list was written). The P13 checks below are against that floor."
        });
    }
    let floor_extra = if contract {
        vec![("FLOOR_CONTRACT_IO".to_string(), "1".to_string())]
    } else {
        Vec::new()
    };
    for (label, dir, extra) in [
        ("ours", root.clone(), Vec::new()),
        ("floor", floor_dir, floor_extra),
    ] {
        match start(
            env,
            label,
            &dir,
            scratch.join(format!("floor-status-{label}.txt")),
            &extra,
        ) {
            Ok(s) => sides.push(s),
            Err(e) => {
                rep.note(format!("floor: starting the {label} worker failed: {e}"));
                skip_all(rep, "a worker did not start");
                return;
            }
        }
    }
    // The status loads' tasks (their jobs finish before the turns start).
    for side in &sides {
        let tag = format!("{}-fs{}", env.run, &side.label[..1]);
        let ids = make_tasks(env, &side.worker.base_url, &tag, STATUS_TASKS);
        let _ = env.drain("models", &tag, Duration::from_secs(60));
        eprintln!("bench: floor: {} status tasks on {}", ids.len(), side.label);
        if ids.is_empty() || std::fs::write(&side.ids, ids.join("\n")).is_err() {
            rep.note(format!(
                "floor: no status task could be made on {}",
                side.label
            ));
            skip_all(rep, "no status tasks");
            return;
        }
    }
    let secs = cfg.floor_secs;
    // Turn 0 is a short warm-up (first requests compile code and create objects), not counted.
    for r in 0..=cfg.runs {
        for i in order(r) {
            let side = &mut sides[i];
            let tag = format!("{}-f{}{r}", env.run, &side.label[..1]);
            let (s, count) = if r == 0 {
                (2.min(secs), false)
            } else {
                (secs, true)
            };
            if let Err(e) = turn(env, cfg, script, side, &tag, s, count) {
                rep.note(format!("floor: {} turn {r} failed: {e}", side.label));
            }
        }
    }
    let (ours, floor) = (&sides[0], &sides[1]);
    let sc = "8 floor: cold start";
    trio(
        rep,
        sc,
        "wrangler dev start → `Ready on` (build included)",
        "s",
        &[ours.ready_s],
        &[floor.ready_s],
    );
    trio(
        rep,
        sc,
        "first GET /health after `Ready on` (fresh isolate)",
        "ms",
        &[ours.cold_ms],
        &[floor.cold_ms],
    );
    trio(
        rep,
        sc,
        "second GET /health",
        "ms",
        &[ours.warm_ms],
        &[floor.warm_ms],
    );

    let sc = "8 floor: submit c=16";
    trio(
        rep,
        sc,
        "requests/s",
        "req/s",
        &col(&ours.submit, |x| x.rps),
        &col(&floor.submit, |x| x.rps),
    );
    trio(
        rep,
        sc,
        "p50",
        "ms",
        &col(&ours.submit, |x| x.p50_ms),
        &col(&floor.submit, |x| x.p50_ms),
    );
    let p99 = trio(
        rep,
        sc,
        "p99",
        "ms",
        &col(&ours.submit, |x| x.p99_ms),
        &col(&floor.submit, |x| x.p99_ms),
    );
    let wd = |x: &WrkResult| x.cpu_ms.get("workerd").copied().unwrap_or(f64::NAN);
    trio(
        rep,
        sc,
        "workerd CPU/request over the load (jobs that ran during it included)",
        "ms",
        &col(&ours.submit, wd),
        &col(&floor.submit, wd),
    );
    let submit_cpu = trio(
        rep,
        sc,
        "workerd CPU per submit without its job (estimate)",
        "ms",
        &ours.submit_workerd,
        &floor.submit_workerd,
    );
    trio(
        rep,
        sc,
        "CPU per submit without its job, all bench processes (estimate)",
        "ms",
        &ours.submit_all,
        &floor.submit_all,
    );
    pair(
        rep,
        sc,
        "errors (not 202)",
        "req",
        &col(&ours.submit, WrkResult::errors),
        &col(&floor.submit, WrkResult::errors),
    );

    let sc = "8 floor: Tripo job";
    let job_cpu = trio(
        rep,
        sc,
        "workerd CPU per job",
        "ms",
        &ours.job_workerd,
        &floor.job_workerd,
    );
    trio(
        rep,
        sc,
        "CPU per job, all bench processes",
        "ms",
        &ours.job_all,
        &floor.job_all,
    );
    pair(
        rep,
        sc,
        "jobs left after the load (measured)",
        "jobs",
        &ours.jobs_measured,
        &floor.jobs_measured,
    );
    trio(
        rep,
        sc,
        "wait for them",
        "s",
        &ours.drained_s,
        &floor.drained_s,
    );

    let sc = "8 floor: status c=16";
    trio(
        rep,
        sc,
        "requests/s",
        "req/s",
        &col(&ours.status, |x| x.rps),
        &col(&floor.status, |x| x.rps),
    );
    trio(
        rep,
        sc,
        "p50",
        "ms",
        &col(&ours.status, |x| x.p50_ms),
        &col(&floor.status, |x| x.p50_ms),
    );
    trio(
        rep,
        sc,
        "p99",
        "ms",
        &col(&ours.status, |x| x.p99_ms),
        &col(&floor.status, |x| x.p99_ms),
    );
    let status_cpu = trio(
        rep,
        sc,
        "workerd CPU/request",
        "ms",
        &col(&ours.status, wd),
        &col(&floor.status, wd),
    );
    trio(
        rep,
        sc,
        "CPU/request, all bench processes",
        "ms",
        &col(&ours.status, |x| all_ms(&x.cpu_ms) / 1000.0),
        &col(&floor.status, |x| all_ms(&x.cpu_ms) / 1000.0),
    );
    pair(
        rep,
        sc,
        "errors (not 200)",
        "req",
        &col(&ours.status, WrkResult::errors),
        &col(&floor.status, WrkResult::errors),
    );

    for (name, r) in CHECKS
        .iter()
        .zip([&submit_cpu, &status_cpu, &job_cpu, &p99])
    {
        let (v, mut detail) = ratio_verdict(r, LIMIT);
        if cfg.floor_dir.is_none() {
            detail.push_str(if contract {
                ", against the floor with the contract's I/O"
            } else {
                ", against P13's list alone (BENCH_FLOOR_CONTRACT=0)"
            });
        }
        rep.check(name, v, detail);
    }
    let errors: f64 = sides
        .iter()
        .flat_map(|s| s.submit.iter().chain(&s.status))
        .map(WrkResult::errors)
        .sum();
    if errors > 0.0 {
        rep.note(format!(
            "8 floor: {errors} answers were not the expected status (see the errors rows)"
        ));
    }
    rep.note(format!(
        "8 floor: the floor worker (tests/bench/floor) does only the I/O of each path: submit = one \
         HS256 verify (WebCrypto, key imported once per isolate), the task's Durable Object \
         created with a small record stored, one PostgREST insert of the models row, one queue \
         send; status = the verify and one Durable Object read; a Tripo job = one Durable Object \
         claim, one Tripo create, one Durable Object write, one row PATCH. A fresh worker of ours \
         and the floor run under the same wrangler dev, the same stack and the same loads, in \
         {} turns of {secs} s per load in a rotating order after a {}-s warm-up; ratios pair the \
         runs taken back to back. Every submit's job is refused by the Tripo fake at create \
         ([[fake:{}]]), so ours' job is the claim, the create and the failure writes (plus its \
         provider-gate calls) against the floor's claim, create, write and PATCH. CPU per job = \
         CPU while the jobs left at the end of a submit load run alone / those jobs (at least \
         {MIN_JOBS}); the submit's own CPU = the load's CPU less that per job for the jobs that \
         ran during the load, per request. Cold start = the first GET /health after wrangler dev \
         logs `Ready on` (fresh isolate, fresh connection), and a second one for comparison: one \
         start, so one sample, of each worker.",
        cfg.runs,
        2.min(secs),
        crate::quick::LOAD_DIRECTIVE
    ));
    for mut s in sides {
        s.worker.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_runs_and_skip_bad_ones() {
        assert_eq!(ratios(&[2.0, 3.0, 4.0], &[1.0, 0.0, 2.0]), vec![2.0, 2.0]);
        assert_eq!(ratios(&[1.0, f64::NAN], &[2.0, 1.0]), vec![0.5]);
        assert!(ratios(&[], &[1.0]).is_empty());
    }

    #[test]
    fn verdict_by_median_ratio() {
        assert_eq!(ratio_verdict(&[1.0, 1.3, 1.2], LIMIT).0, Verdict::Pass);
        assert_eq!(ratio_verdict(&[1.25], LIMIT).0, Verdict::Pass);
        let (v, d) = ratio_verdict(&[1.3, 2.0, 1.0], LIMIT);
        assert_eq!(v, Verdict::Fail);
        assert!(d.contains("1.30") && d.contains("3 pair"), "{d}");
        assert_eq!(ratio_verdict(&[], LIMIT).0, Verdict::Skip);
    }

    #[test]
    fn per_job_and_submit_without_its_job() {
        assert_eq!(per_job(100.0, 4.0), None);
        assert_eq!(per_job(100.0, 5.0), Some(20.0));
        // 1000 ms over 100 requests, 20 jobs of 10 ms among them: 8 ms per submit.
        assert_eq!(without_jobs(1000.0, 100.0, 20.0, 10.0), 8.0);
        assert_eq!(without_jobs(1000.0, 100.0, -3.0, 10.0), 10.0);
        assert!(without_jobs(1.0, 0.0, 0.0, 1.0).is_nan());
    }

    #[test]
    fn turns_rotate() {
        assert_eq!(order(0), [0, 1]);
        assert_eq!(order(1), [1, 0]);
        assert_eq!(order(2), [0, 1]);
    }
}
