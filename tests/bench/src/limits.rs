//! Scenario `limits`: what the per-user limits cost the submit path. Three more release workers
//! over the same stack — the limits as deployed (the Rate Limiting binding as flood guard, then
//! the exact counts in the user's UserLimits object, set high enough that nothing is refused),
//! the exact counts alone, and every limit off — take the same submit load in turns, in a
//! rotating order, so drift on the machine falls on all alike. The figure the issue asks for is
//! the ratio of "on" to "off" throughput; the middle worker and the CPU per request of each say
//! where the difference goes.

use std::path::Path;

use e2e::{WorkerOptions, WorkerProcess};

use crate::cfg::Cfg;
use crate::cpu;
use crate::env::Env;
use crate::report::{Report, Verdict};
use crate::stats::median;
use crate::wrk::{self, Load, WrkResult};

/// Users the load spreads over: the flood guard allows 30 submits per user per minute
/// (wrangler.toml), and one load of 10 s at c=16 makes about 500.
const USERS: usize = 160;
/// Connections of the load (the 16).
const CONNECTIONS: u32 = 16;
/// Setting of the exact limits on the "on" worker: far above what the load submits.
const GENEROUS: &str = "100000";

struct Side {
    label: &'static str,
    worker: WorkerProcess,
    pgid: Option<i32>,
    runs: Vec<WrkResult>,
}

/// The three workers: the limits as deployed, the exact counts without the flood guard, none.
#[derive(Clone, Copy)]
enum Mode {
    On,
    ExactOnly,
    Off,
}

fn start(env: &Env, mode: Mode) -> Result<WorkerProcess, String> {
    let stack = env.stack.as_ref().ok_or("no stack")?;
    let mut settings: Vec<(String, String)> = stack
        .worker_vars()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let limits = [
        "RATE_LIMIT_SUBMITS_PER_MINUTE",
        "RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS",
        "MAX_ACTIVE_STEPS_PER_USER",
        "MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS",
        "RATE_LIMIT_USE_BINDING",
    ];
    settings.retain(|(k, _)| !limits.contains(&k.as_str()));
    let exact = if matches!(mode, Mode::Off) {
        "0"
    } else {
        GENEROUS
    };
    for name in &limits[..4] {
        settings.push(((*name).into(), exact.into()));
    }
    let binding = matches!(mode, Mode::On);
    settings.push(("RATE_LIMIT_USE_BINDING".into(), binding.to_string()));
    WorkerProcess::start(WorkerOptions {
        settings,
        build_profile: "--release".into(),
        persist_to: None,
        port: None,
    })
    .map_err(|e| e.to_string())
}

fn load<'a>(
    url: String,
    cfg: &Cfg,
    tokens: &'a [String],
    tag: &'a str,
    prompt: &'a str,
) -> Load<'a> {
    Load {
        mode: "submit",
        url,
        connections: CONNECTIONS,
        seconds: cfg.secs,
        expect: 202,
        token: tokens.first().map(String::as_str),
        tokens,
        tag: Some(tag),
        prompt: Some(prompt),
        ids_file: None,
    }
}

pub fn run(env: &Env, rep: &mut Report, cfg: &Cfg, script: &Path) {
    let sc = "limits on vs off";
    let Some(stack) = env.stack.as_ref() else {
        rep.check(
            "P13: limits on within 10 % of off (the glue of one DO call)",
            Verdict::Skip,
            "no stack",
        );
        return;
    };
    let mut tokens = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let email = format!("limits{i}-{}@bench.test", env.run);
        match env.rt.block_on(stack.create_user(&email)) {
            Ok((id, _)) => tokens.push(stack.user_token(id, &email, 4 * 3600)),
            Err(e) => {
                rep.note(format!("{sc}: creating the users failed: {e}"));
                rep.check(
                    "P13: limits on within 10 % of off (the glue of one DO call)",
                    Verdict::Skip,
                    "no users",
                );
                return;
            }
        }
    }
    let mut sides = Vec::new();
    for (label, mode) in [
        ("on", Mode::On),
        ("on without the flood guard", Mode::ExactOnly),
        ("off", Mode::Off),
    ] {
        match start(env, mode) {
            Ok(worker) => {
                let pgid = worker.process_group().map(|p| p as i32);
                sides.push(Side {
                    label,
                    worker,
                    pgid,
                    runs: Vec::new(),
                });
            }
            Err(e) => {
                rep.note(format!(
                    "{sc}: starting the limits-{label} worker failed: {e}"
                ));
                rep.check(
                    "P13: limits on within 10 % of off (the glue of one DO call)",
                    Verdict::Skip,
                    "no worker",
                );
                return;
            }
        }
    }
    let prefix = format!("{}-lim", env.run);
    // A warm-up submit load each (first requests compile and create objects), not counted.
    let mut round = 0;
    // Two counted rounds (three workers' loads and drains each): the bench's 20 minutes.
    for r in 0..=cfg.runs.min(2) {
        // The sides take turns in a rotating order, so none always goes first.
        let order: [usize; 3] = match r % 3 {
            0 => [0, 1, 2],
            1 => [2, 0, 1],
            _ => [1, 2, 0],
        };
        for &i in &order {
            round += 1;
            let side = &mut sides[i];
            let tag = format!("{prefix}{round}");
            let prompt = format!(
                "a bench cat [[fake:{},nonce={tag}]]",
                crate::quick::LOAD_DIRECTIVE
            );
            let url = format!("{}/generate/text-to-model", side.worker.base_url);
            let before = cpu::snapshot(side.pgid);
            let result = wrk::run(script, &load(url, cfg, &tokens, &tag, &prompt));
            let used = cpu::delta(&before, &cpu::snapshot(side.pgid));
            // The jobs of this load finish before the other side's load starts.
            let (_, left) = env.drain("models", &tag, std::time::Duration::from_secs(cfg.drain_s));
            match result {
                Ok(mut w) if w.requests > 0.0 => {
                    w.cpu_ms = used
                        .into_iter()
                        .map(|(k, v)| (k, v * 1000.0 / w.requests))
                        .collect();
                    eprintln!(
                        "bench: {sc} {} (round {round}{}): {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors {}, workerd CPU {:.2} ms/req, {left} jobs open after the drain",
                        side.label,
                        if r == 0 { ", warm-up" } else { "" },
                        w.rps,
                        w.p50_ms,
                        w.p99_ms,
                        w.errors(),
                        w.codes,
                        w.cpu_ms.get("workerd").copied().unwrap_or(f64::NAN),
                    );
                    if r > 0 {
                        side.runs.push(w);
                    }
                }
                Ok(_) => rep.note(format!("{sc}: the {} load answered nothing", side.label)),
                Err(e) => rep.note(format!("{sc}: wrk ({}) failed: {e}", side.label)),
            }
        }
    }
    for side in &sides {
        let col = |f: &dyn Fn(&WrkResult) -> f64| side.runs.iter().map(f).collect::<Vec<f64>>();
        let what = format!("limits {}", side.label);
        rep.add(
            sc,
            &format!("{what}: submit requests/s"),
            "req/s",
            col(&|x| x.rps),
        );
        rep.add(sc, &format!("{what}: submit p50"), "ms", col(&|x| x.p50_ms));
        rep.add(sc, &format!("{what}: submit p99"), "ms", col(&|x| x.p99_ms));
        rep.add(sc, &format!("{what}: errors"), "req", col(&|x| x.errors()));
        rep.add(
            sc,
            &format!("{what}: workerd CPU/request"),
            "ms",
            col(&|x| x.cpu_ms.get("workerd").copied().unwrap_or(f64::NAN)),
        );
    }
    let (on, exact, off) = (&sides[0].runs, &sides[1].runs, &sides[2].runs);
    // Run k of one side against run k of the other (taken back to back).
    let pair = |f: &dyn Fn(&WrkResult) -> f64| -> Vec<f64> {
        on.iter().zip(off).map(|(a, b)| f(a) / f(b)).collect()
    };
    let rps = pair(&|x| x.rps);
    let exact_rps: Vec<f64> = exact.iter().zip(off).map(|(a, b)| a.rps / b.rps).collect();
    rep.add(
        sc,
        "on without the flood guard/off submit requests/s",
        "ratio",
        exact_rps,
    );
    rep.add(sc, "on/off submit requests/s", "ratio", rps.clone());
    rep.add(sc, "on/off submit p99", "ratio", pair(&|x| x.p99_ms));
    rep.add(
        sc,
        "on/off workerd CPU/request",
        "ratio",
        pair(&|x| x.cpu_ms.get("workerd").copied().unwrap_or(f64::NAN)),
    );
    let errors: f64 = on
        .iter()
        .chain(exact)
        .chain(off)
        .map(WrkResult::errors)
        .sum();
    match median(&rps) {
        None => rep.check("P13: limits on within 10 % of off (the glue of one DO call)", Verdict::Skip, "not measured"),
        Some(m) => rep.check(
            "P13: limits on within 10 % of off (the glue of one DO call)",
            if m >= 0.90 && errors == 0.0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            format!(
                "median on/off submit requests/s {m:.3} over {} pair(s) (limit 0.90), {errors} non-202 answers",
                rps.len()
            ),
        ),
    }
}
