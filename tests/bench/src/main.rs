//! `bench`: the benchmarks of makeit3d-bff (`bash scripts/bench.sh`; README "Benchmarks").
//!
//! One local stack and one release build of the worker under `wrangler dev` serve every
//! scenario, in this order (the slow, timing-sensitive ones first, the floods last):
//! 6 bundle (read from `scripts/bundle-size.sh`), 6 concepts memory, 7 live (1,000 SSE
//! subscribers on 100 tasks, on a second worker of the same build), 3 Tripo jobs, Tripo
//! requests per task (v2 vs v3 + webhooks, `tripo_requests.rs`), 5 model
//! copies, 4 concept jobs, 2 status, the submit profile, 1 submit vs health, 8 ours vs the
//! floor (a fresh worker of ours and the floor worker, `tests/bench/floor`), then the limits on
//! vs off (three more workers). Each figure is the median of its runs with min and max; the table is printed and written to `target/bench/results.json`.

mod cfg;
mod cpu;
mod env;
mod floor;
mod limits;
mod live;
mod quick;
mod report;
mod rss;
mod slow;
mod stats;
mod tripo_requests;
mod wrk;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use cfg::Cfg;
use env::{Env, Res};
use report::{Report, Verdict};

/// Unix time in milliseconds.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn main() {
    let code = match run() {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(e) => {
            eprintln!("bench: error: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Cores, memory, CPU model, kernel and load, from /proc.
fn machine() -> serde_json::Value {
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    let mem_kib = |key: &str| -> Option<u64> {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    json!({
        "cores": cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
        "available_parallelism": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()),
        "mem_total_mib": mem_kib("MemTotal:").map(|k| k / 1024),
        "mem_available_mib_at_start": mem_kib("MemAvailable:").map(|k| k / 1024),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "loadavg_at_start": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

fn run() -> Res<bool> {
    let cfg = Cfg::from_env();
    let mut rep = Report {
        machine: machine(),
        ..Default::default()
    };
    rep.machine["per_user_limits"] = json!(cfg.limits);
    eprintln!("bench: machine {}", rep.machine);
    if cfg.wants("bundle") {
        match &cfg.bundle_file {
            Some(p) => quick::bundle(&mut rep, &std::fs::read_to_string(p).unwrap_or_default()),
            None => rep.note("6 bundle: skipped (no BENCH_BUNDLE_FILE; scripts/bench.sh sets it)"),
        }
    }
    let env = Env::start()?;
    rep.timings
        .push(("stack start".into(), env.stack_startup_s));
    rep.timings.push((
        "release build + wrangler dev ready".into(),
        env.worker_startup_s,
    ));
    let script = wrk::write_script(env.scratch.path())?;
    let outcome = scenarios(&env, &mut rep, &cfg, &script);
    if let Err(e) = outcome {
        rep.note(format!("bench stopped early: {e}"));
        rep.check("every scenario ran", Verdict::Fail, e.to_string());
    }
    rep.machine["loadavg_at_end"] = json!(read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" "));
    rep.timings.push(("bench total".into(), cfg.elapsed_s()));
    let worker_log_bytes = std::fs::metadata(&env.worker.log_path)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!("bench: stopping (worker log {worker_log_bytes} bytes)");
    env.stop();

    std::fs::create_dir_all(&cfg.out_dir)?;
    let out = cfg.out_dir.join("results.json");
    let mut json = rep.json();
    json["settings"] = json!({
        "runs": cfg.runs, "seconds_per_load": cfg.secs, "concurrency": cfg.concurrency,
        "status_concurrency": cfg.status_concurrency, "status_tasks": cfg.status_tasks,
        "jobs": cfg.jobs, "concept_jobs": cfg.concept_jobs, "copy_mib": cfg.copy_mib,
        "budget_s": cfg.budget_s, "worker_build": "--release",
        "floor_seconds_per_load": cfg.floor_secs,
        "floor_dir": cfg.floor_dir.as_ref().map(|d| d.display().to_string()),
        "floor_contract_io": cfg.floor_contract_io(),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    println!();
    println!(
        "makeit3d-bff benchmarks — {} cores, {} MiB, {} (load {} → {})",
        rep.machine["cores"],
        rep.machine["mem_total_mib"],
        rep.machine["cpu"].as_str().unwrap_or("?"),
        rep.machine["loadavg_at_start"].as_str().unwrap_or("?"),
        rep.machine["loadavg_at_end"].as_str().unwrap_or("?"),
    );
    println!(
        "release worker under wrangler dev; provider fakes at zero added latency unless stated; \
         each figure: median of its runs (min, max)\n"
    );
    print!("{}", rep.table());
    println!();
    for (k, v) in &rep.timings {
        println!("time: {k}: {v:.1} s");
    }
    println!("results: {}", out.display());
    Ok(rep.failed())
}

fn scenarios(env: &Env, rep: &mut Report, cfg: &Cfg, script: &std::path::Path) -> Res<()> {
    let reserve = cfg.quick_reserve_s();
    let phase = |rep: &mut Report, name: &str, t: std::time::Instant| {
        rep.timings.push((name.into(), t.elapsed().as_secs_f64()));
    };
    let mut complete_models = None;
    if cfg.wants("memory") {
        // First: a fresh isolate, so its WebAssembly memory is this job's high-water mark.
        let t = std::time::Instant::now();
        slow::memory(env, rep);
        phase(rep, "6 concepts memory", t);
    }
    if cfg.wants("live") {
        let t = std::time::Instant::now();
        live::live(env, rep);
        phase(rep, "7 live", t);
    }
    if cfg.wants("jobs") {
        let t = std::time::Instant::now();
        // The copies and concepts come after: keep time for their runs.
        complete_models = slow::jobs(env, rep, cfg, reserve + 90.0);
        phase(rep, "3 jobs", t);
    }
    if cfg.wants("tripo") {
        let t = std::time::Instant::now();
        tripo_requests::run(env, rep);
        phase(rep, "Tripo requests per task", t);
    }
    if cfg.wants("copy") {
        let t = std::time::Instant::now();
        slow::copy(env, rep, cfg, reserve + 20.0);
        phase(rep, "5 copy", t);
    }
    if cfg.wants("concepts") {
        let t = std::time::Instant::now();
        slow::concepts(env, rep, cfg, reserve);
        phase(rep, "4 concepts", t);
    }
    let mut status_ids = None;
    if cfg.wants("status") {
        let t = std::time::Instant::now();
        status_ids = quick::create_status_tasks(env, rep, cfg);
        if let Some(ids) = &status_ids {
            quick::status(env, rep, cfg, script, ids);
        }
        phase(rep, "2 status", t);
    }
    if cfg.wants("profile") {
        let t = std::time::Instant::now();
        // Resubmitting a complete task answers 200 without an insert or an enqueue.
        let repeat = complete_models.and_then(|(ids, prompt)| {
            let path = env.scratch.path().join("complete-ids.txt");
            std::fs::write(&path, ids.join("\n")).ok()?;
            Some((path, prompt))
        });
        if repeat.is_none() {
            rep.note("profile submit: no complete text-to-model task (scenario 3) to resubmit; the repeated-submit load was skipped");
        }
        quick::profile(
            env,
            rep,
            cfg,
            script,
            repeat.as_ref().map(|(p, s)| (p.as_path(), s.as_str())),
            status_ids.as_deref(),
        );
        phase(rep, "profile", t);
    }
    if cfg.wants("submit") {
        let t = std::time::Instant::now();
        let accepted = quick::submit(env, rep, cfg, script);
        let prefix = format!("\"task_id\":\"{}", quick::load_prefix(env));
        let logged = env
            .worker
            .log()
            .lines()
            .filter(|l| l.contains("\"event\":\"submit.accepted\"") && l.contains(&prefix))
            .count() as f64;
        rep.add(
            "1 submit (all)",
            "answers 202 counted by wrk",
            "req",
            vec![accepted],
        );
        rep.add(
            "1 submit (all)",
            "submit.accepted in the worker log",
            "req",
            vec![logged],
        );
        // wrk does not count the answers still in flight when a load ends.
        let in_flight: f64 =
            cfg.concurrency.iter().map(|c| f64::from(*c)).sum::<f64>() * cfg.runs as f64;
        if logged < accepted || logged > accepted + in_flight {
            rep.note(format!(
                "1 submit: wrk counted {accepted} answers 202 but the worker logged {logged} submit.accepted"
            ));
        }
        phase(rep, "1 submit", t);
    }
    if cfg.wants("floor") {
        let t = std::time::Instant::now();
        floor::run(env, rep, cfg, script);
        phase(rep, "8 ours vs the floor", t);
    }
    if cfg.wants("limits") {
        let t = std::time::Instant::now();
        limits::run(env, rep, cfg, script);
        phase(rep, "limits on vs off", t);
    }
    Ok(())
}
