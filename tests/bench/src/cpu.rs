//! CPU time by component, from `/proc/*/stat` (user + system ticks of every process, threads
//! included), to say where a request's cost goes: workerd, wrangler's node, PostgreSQL,
//! PostgREST, this process (the gateway with Storage, and the provider fakes), wrk, and everything
//! else on the machine.

use std::collections::BTreeMap;

/// The components, in the order they are reported.
pub const COMPONENTS: [&str; 7] = [
    "workerd",
    "wrangler node",
    "postgres",
    "postgrest",
    "bench (gateway, fakes)",
    "wrk",
    "other processes",
];

/// Clock ticks per second of `/proc/*/stat` (USER_HZ; 100 on Linux x86-64).
const TICKS: f64 = 100.0;

/// CPU seconds used so far per component (live processes only).
pub fn snapshot(wrangler_pgid: Option<i32>) -> BTreeMap<&'static str, f64> {
    let me = std::process::id() as i32;
    let mut out: BTreeMap<&'static str, f64> = COMPONENTS.iter().map(|c| (*c, 0.0)).collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            continue;
        };
        let comm = &text[open + 1..close];
        let f: Vec<&str> = text[close + 2..].split_whitespace().collect();
        // After the comm: state(0) ppid(1) pgrp(2) … utime(11) stime(12).
        let (Some(pgrp), Some(ut), Some(st)) = (
            f.get(2).and_then(|v| v.parse::<i32>().ok()),
            f.get(11).and_then(|v| v.parse::<f64>().ok()),
            f.get(12).and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let secs = (ut + st) / TICKS;
        let in_wrangler = wrangler_pgid == Some(pgrp);
        let component = if pid == me {
            "bench (gateway, fakes)"
        } else if in_wrangler && comm.starts_with("workerd") {
            "workerd"
        } else if in_wrangler {
            "wrangler node"
        } else if comm == "postgrest" {
            "postgrest"
        } else if comm.starts_with("postgres") {
            "postgres"
        } else if comm == "wrk" {
            "wrk"
        } else {
            "other processes"
        };
        *out.entry(component).or_default() += secs;
    }
    out
}

/// `after - before`, per component (never negative: processes that ended are simply gone).
pub fn delta(
    before: &BTreeMap<&'static str, f64>,
    after: &BTreeMap<&'static str, f64>,
) -> BTreeMap<&'static str, f64> {
    COMPONENTS
        .iter()
        .map(|c| {
            let d = after.get(c).copied().unwrap_or(0.0) - before.get(c).copied().unwrap_or(0.0);
            (*c, d.max(0.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_counted() {
        let a = snapshot(None);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = snapshot(None);
        let d = delta(&a, &b);
        assert!(d["bench (gateway, fakes)"] >= 0.0);
        assert_eq!(d.len(), COMPONENTS.len());
    }
}
