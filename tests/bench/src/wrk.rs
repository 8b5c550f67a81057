//! Runs `wrk` (Debian's package) with `lua/bench.lua` and reads the JSON line its `done()`
//! prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The wrk script, written next to the other scratch files at start.
pub const SCRIPT: &str = include_str!("../lua/bench.lua");

/// One load of wrk.
pub struct Load<'a> {
    pub mode: &'a str,
    /// The URL, path included (`/health`, `/generate/text-to-model`; status: any path).
    pub url: String,
    pub connections: u32,
    pub seconds: u32,
    pub expect: u16,
    pub token: Option<&'a str>,
    /// Submit loads: several users' tokens used in turn (`BENCH_TOKENS`).
    pub tokens: &'a [String],
    pub tag: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub ids_file: Option<&'a Path>,
}

/// What wrk measured.
#[derive(Debug, Clone)]
pub struct WrkResult {
    pub requests: f64,
    pub rps: f64,
    /// Answers with the expected status.
    pub ok: f64,
    /// Answers with another status.
    pub bad: f64,
    /// Socket errors (connect, read, write) and timeouts.
    pub socket_errors: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub codes: Value,
    /// CPU seconds wrk itself used.
    pub wrk_cpu_s: f64,
    /// CPU milliseconds per request by component (filled by the caller; see `cpu`).
    pub cpu_ms: std::collections::BTreeMap<&'static str, f64>,
}

impl WrkResult {
    /// Everything that is not the expected answer.
    pub fn errors(&self) -> f64 {
        self.bad + self.socket_errors
    }

    /// CPU milliseconds per request, all components.
    pub fn cpu_total_ms(&self) -> f64 {
        self.cpu_ms.values().sum()
    }
}

/// Writes the script once; returns its path.
pub fn write_script(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("bench.lua");
    std::fs::write(&path, SCRIPT)?;
    Ok(path)
}

/// Runs one load (blocking). wrk gets 2 threads (the machine's cores) unless there is one
/// connection, and a 10 s request timeout.
pub fn run(script: &Path, load: &Load) -> Result<WrkResult, String> {
    let threads = load.connections.clamp(1, 2);
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &threads.to_string(),
        "-c",
        &load.connections.to_string(),
        "-d",
        &format!("{}s", load.seconds),
        "--timeout",
        "10s",
        "-s",
    ])
    .arg(script)
    .arg(&load.url)
    .env("BENCH_MODE", load.mode)
    .env("BENCH_EXPECT", load.expect.to_string());
    if let Some(t) = load.token {
        cmd.env("BENCH_TOKEN", t);
    }
    if !load.tokens.is_empty() {
        cmd.env("BENCH_TOKENS", load.tokens.join(" "));
    }
    if let Some(t) = load.tag {
        cmd.env("BENCH_TAG", t);
    }
    if let Some(p) = load.prompt {
        cmd.env("BENCH_PROMPT", p);
    }
    if let Some(f) = load.ids_file {
        cmd.env("BENCH_IDS", f);
    }
    let before = children_cpu_s();
    let out = cmd
        .output()
        .map_err(|e| format!("could not run wrk ({e}); install it: apt-get install -y wrk"))?;
    let wrk_cpu_s = children_cpu_s() - before;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .ok_or_else(|| {
            format!(
                "wrk printed no result ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let mut r = parse(line)?;
    r.wrk_cpu_s = wrk_cpu_s;
    Ok(r)
}

/// CPU seconds (user + system) of this process's finished children, i.e. the wrk runs.
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Parses the `BENCH_JSON` object.
pub fn parse(line: &str) -> Result<WrkResult, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("bad wrk JSON ({e}): {line}"))?;
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let seconds = f("duration_us") / 1e6;
    let requests = f("requests");
    Ok(WrkResult {
        requests,
        rps: if seconds > 0.0 {
            requests / seconds
        } else {
            0.0
        },
        ok: f("ok"),
        bad: f("bad"),
        socket_errors: f("connect") + f("read") + f("write") + f("timeout"),
        p50_ms: f("p50_us") / 1000.0,
        p95_ms: f("p95_us") / 1000.0,
        p99_ms: f("p99_us") / 1000.0,
        codes: v["codes"].clone(),
        wrk_cpu_s: 0.0,
        cpu_ms: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_done_line() {
        let r = parse(
            r#"{"requests":1000,"duration_us":5000000,"ok":990,"bad":10,"codes":{"202":990,"503":10},"connect":0,"read":1,"write":0,"status":10,"timeout":2,"p50_us":1500,"p90_us":2500,"p95_us":3000,"p99_us":9000,"mean_us":1700.5,"max_us":12000}"#,
        )
        .unwrap();
        assert_eq!(r.rps, 200.0);
        assert_eq!(r.p95_ms, 3.0);
        assert_eq!(r.errors(), 13.0);
        assert_eq!(r.codes["503"], 10);
    }
}
