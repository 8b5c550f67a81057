//! Settings of a bench run (environment variables, all optional) and its time budget.

use std::path::PathBuf;
use std::time::Instant;

pub struct Cfg {
    /// Runs of each figure (`BENCH_RUNS`, 3).
    pub runs: usize,
    /// Seconds of each wrk load (`BENCH_SECONDS`, 5).
    pub secs: u32,
    /// Connections of the submit / health loads (`BENCH_CONCURRENCY`, `1,16`; P13 measures at 16,
    /// and `1,16,64` adds the flood).
    pub concurrency: Vec<u32>,
    /// Connections of the status loads (`BENCH_STATUS_CONCURRENCY`, `16,64`).
    pub status_concurrency: Vec<u32>,
    /// Existing tasks the status load reads (`BENCH_STATUS_TASKS`, 500).
    pub status_tasks: usize,
    /// Text-to-model jobs submitted at once (`BENCH_JOBS`, 60: six times what the Tripo account
    /// runs at once; each 10 more add 20 s).
    pub jobs: usize,
    /// Image-to-image jobs with n = 4 (`BENCH_CONCEPT_JOBS`, 50).
    pub concept_jobs: usize,
    /// Model sizes copied, MiB (`BENCH_COPY_MIB`, `10,100,300`).
    pub copy_mib: Vec<u64>,
    /// Seconds of each load of the floor comparison (`BENCH_FLOOR_SECONDS`, 6).
    pub floor_secs: u32,
    /// The worker on the floor's side (`BENCH_FLOOR_DIR`, `tests/bench/floor`). Another checkout
    /// of this repository there turns the floor scenario into an A/B comparison of two builds of
    /// ours, taken in the same paired turns ("floor" then names build B).
    pub floor_dir: Option<PathBuf>,
    /// The floor worker does the I/O of each path as the contract makes it (`FLOOR_CONTRACT_IO=1`;
    /// tests/bench/floor/src/lib.rs): P10's per-user limits and provider gate, the watchdog
    /// alarm, the rows written by the task's object, the log lines — so the ratios say what
    /// ours' own code costs over the same I/O. The default; `BENCH_FLOOR_CONTRACT=0` gives the
    /// floor of P13's list only (written before P10 added that I/O).
    pub floor_contract: bool,
    /// Longest wait for the submit loads' jobs to finish between runs (`BENCH_DRAIN_S`, 15).
    pub drain_s: u64,
    /// Per-user limits (`BENCH_LIMITS`, `on`): `on` = the stack's generous limits (every
    /// submit reserves in the user's UserLimits object, nothing is refused), `off` = none (read
    /// by `env.rs`; recorded in results.json).
    pub limits: String,
    /// Scenarios to run (`BENCH_ONLY`, all): bundle, memory, live, jobs, tripo, copy, concepts,
    /// status, profile, submit, floor, limits.
    pub only: Option<Vec<String>>,
    /// Seconds this process may take (`BENCH_BUDGET_S`, 1020); extra runs of the slow
    /// scenarios are skipped when they would not fit.
    pub budget_s: f64,
    /// `scripts/bundle-size.sh` output (`BENCH_BUNDLE_FILE`).
    pub bundle_file: Option<PathBuf>,
    /// Where results.json goes (`BENCH_OUT`, `<repo>/target/bench`).
    pub out_dir: PathBuf,
    pub started: Instant,
}

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    let raw = std::env::var(name).unwrap_or_else(|_| default.to_string());
    raw.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

impl Cfg {
    /// Whether the floor's side runs the floor worker with the contract's I/O: asked for, and
    /// not an A/B run (`BENCH_FLOOR_DIR` puts another build of ours there instead).
    pub fn floor_contract_io(&self) -> bool {
        self.floor_contract && self.floor_dir.is_none()
    }

    pub fn from_env() -> Cfg {
        Cfg {
            runs: var("BENCH_RUNS", 3usize).max(1),
            secs: var("BENCH_SECONDS", 5u32).max(1),
            concurrency: list("BENCH_CONCURRENCY", "1,16"),
            status_concurrency: list("BENCH_STATUS_CONCURRENCY", "16,64"),
            status_tasks: var("BENCH_STATUS_TASKS", 500usize).max(1),
            jobs: var("BENCH_JOBS", 60usize).max(1),
            concept_jobs: var("BENCH_CONCEPT_JOBS", 50usize).max(1),
            copy_mib: list("BENCH_COPY_MIB", "10,100,300"),
            floor_secs: var("BENCH_FLOOR_SECONDS", 6u32).max(2),
            floor_dir: std::env::var("BENCH_FLOOR_DIR")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(PathBuf::from),
            floor_contract: std::env::var("BENCH_FLOOR_CONTRACT").map_or(true, |v| v.trim() != "0"),
            drain_s: var("BENCH_DRAIN_S", 15u64),
            limits: std::env::var("BENCH_LIMITS").unwrap_or_else(|_| "on".into()),
            only: std::env::var("BENCH_ONLY")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
            budget_s: var("BENCH_BUDGET_S", 1020.0f64),
            bundle_file: std::env::var("BENCH_BUNDLE_FILE").ok().map(PathBuf::from),
            out_dir: std::env::var("BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|_| e2e::repo_root().join("target").join("bench")),
            started: Instant::now(),
        }
    }

    pub fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == scenario))
    }

    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Seconds the quick scenarios (status, profile, submit) still need, estimated.
    pub fn quick_reserve_s(&self) -> f64 {
        let runs = self.runs as f64;
        let secs = f64::from(self.secs);
        let mut s = 0.0;
        if self.wants("submit") {
            let per = 2.0 * (secs + 1.0) + (self.drain_s as f64).min(6.0);
            s += runs * self.concurrency.len() as f64 * per;
        }
        if self.wants("status") {
            s += 30.0 + runs * self.status_concurrency.len() as f64 * (secs + 1.0);
        }
        if self.wants("profile") {
            s += runs * (2.0 * (secs + 1.0) + 6.0);
        }
        if self.wants("floor") {
            // Two workers to start, 2 × 100 status tasks, then per side and turn a submit load,
            // its drain and a status load (the warm-up turn shorter).
            let fsecs = f64::from(self.floor_secs);
            let drain = (2.0 * self.drain_s as f64).min(12.0);
            s += 120.0 + 2.0 * runs * (2.0 * (fsecs + 1.0) + drain) + 2.0 * (6.0 + drain);
        }
        if self.wants("limits") {
            // Three workers to start, then a warm-up and two loads on each side, each drained.
            s += 90.0 + 3.0 * (runs.min(2.0) + 1.0) * (secs + 1.0 + (self.drain_s as f64).min(6.0));
        }
        s + 10.0
    }

    /// Whether something taking `need_s` more still leaves `reserve_s` within the budget.
    pub fn time_allows(&self, need_s: f64, reserve_s: f64) -> bool {
        self.elapsed_s() + need_s + reserve_s <= self.budget_s
    }
}
