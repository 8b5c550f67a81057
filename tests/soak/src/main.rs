//! The chaos soak (`bash scripts/soak.sh`): the release worker under `wrangler dev` against the
//! local stack, with about 20 % of its provider, Storage and PostgREST calls faulted at random
//! (seeded), `wrangler dev` killed with SIGKILL and restarted on the same state three times,
//! PostgREST stopped for 60 s and Storage down for 60 s. It submits mixed steps (concepts n = 1–4,
//! the four model kinds, refines of drafts finished before the chaos starts) as users of the local Supabase would,
//! repeating submits that failed with 5xx or network errors, waits (bounded) until every step is
//! final, then checks the outcome and prints one table (also `target/soak/results.json`).
//!
//! Settings (environment): `SOAK_STEPS` (200), `SOAK_MINUTES` (12: the chaos window, from the
//! first submit), `SOAK_SETTLE_S` (240: after the chaos window the chaos stops and every step must
//! be final within this), `SOAK_RATE` (0.2), `SOAK_SEED`, `SOAK_OUTAGE_S` (60),
//! `SOAK_RESTARTS` (3), `SOAK_USERS` (3), `SOAK_TIME_SCALE` (4: speed of the Tripo fake),
//! `SOAK_TRIPO_DEADLINE_S` (300: the worker's `TRIPO_DEADLINE_SECONDS`, shorter than production's
//! 1800 so that a step the chaos keeps failing reaches its deadline inside the run), `SOAK_HOLD_MS`
//! (310000: how long a provider `timeout` fault holds a request at most), `SOAK_OUT`
//! (`target/soak`).
//!
//! Exit status: 0 every check passed, 1 a check failed, 2 the soak itself broke.

mod check;
mod driver;
mod plan;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, BoxError>;

/// The soak's settings.
#[derive(Clone, Debug)]
pub struct Cfg {
    pub steps: usize,
    pub budget: Duration,
    pub rate: f64,
    pub seed: u64,
    pub outage: Duration,
    pub restarts: usize,
    pub users: usize,
    pub time_scale: f64,
    pub tripo_deadline_s: u64,
    pub hold_ms: u64,
    pub settle: Duration,
    pub out: PathBuf,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}: cannot parse {v:?}")),
        _ => Ok(default),
    }
}

impl Cfg {
    pub fn from_env() -> Result<Cfg, String> {
        let minutes: f64 = env("SOAK_MINUTES", 12.0)?;
        let cfg = Cfg {
            steps: env("SOAK_STEPS", 200)?,
            budget: Duration::from_secs_f64(minutes * 60.0),
            rate: env("SOAK_RATE", 0.2)?,
            seed: env("SOAK_SEED", 20_261_203)?,
            outage: Duration::from_secs_f64(env("SOAK_OUTAGE_S", 60.0)?),
            restarts: env("SOAK_RESTARTS", 3)?,
            users: env("SOAK_USERS", 3)?,
            time_scale: env("SOAK_TIME_SCALE", 4.0)?,
            tripo_deadline_s: env("SOAK_TRIPO_DEADLINE_S", 300)?,
            hold_ms: env("SOAK_HOLD_MS", 310_000)?,
            settle: Duration::from_secs_f64(env("SOAK_SETTLE_S", 240.0)?),
            out: PathBuf::from(env(
                "SOAK_OUT",
                stack::default_repo_root()
                    .join("target/soak")
                    .display()
                    .to_string(),
            )?),
        };
        if cfg.steps == 0 || cfg.users == 0 || !(0.0..=1.0).contains(&cfg.rate) || minutes <= 0.0 {
            return Err(format!("bad settings: {cfg:?}"));
        }
        Ok(cfg)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let cfg = match Cfg::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match driver::run(cfg) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: broke: {e}");
            ExitCode::from(2)
        }
    }
}
