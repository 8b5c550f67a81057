//! Resident memory of `wrangler dev`'s process group (wrangler's node processes, the workerd
//! runtimes, esbuild), summed from `/proc/*/status` `VmRSS`, sampled every 100 ms on a thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One sample: when, the whole group, and its workerd processes only (KiB).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at_ms: f64,
    pub group_kib: u64,
    pub workerd_kib: u64,
}

fn processes() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// (process group, command name) from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(i32, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 2..)?.split_whitespace();
    let _state = rest.next()?;
    let _ppid = rest.next()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some((pgrp, comm))
}

fn vm_rss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One reading of the group: (all processes, workerd only), KiB.
pub fn read_group(pgid: i32) -> (u64, u64) {
    let mut all = 0;
    let mut workerd = 0;
    for pid in processes() {
        let Some((pgrp, comm)) = stat(pid) else {
            continue;
        };
        if pgrp != pgid {
            continue;
        }
        let kib = vm_rss_kib(pid).unwrap_or(0);
        all += kib;
        if comm.starts_with("workerd") {
            workerd += kib;
        }
    }
    (all, workerd)
}

/// A background sampler.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    handle: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(pgid: i32, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (Arc::clone(&stop), Arc::clone(&samples));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let (group_kib, workerd_kib) = read_group(pgid);
                let at_ms = crate::now_ms();
                if let Ok(mut g) = v.lock() {
                    g.push(Sample {
                        at_ms,
                        group_kib,
                        workerd_kib,
                    });
                }
                std::thread::sleep(every);
            }
        });
        Sampler {
            stop,
            samples,
            handle: Some(handle),
        }
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.samples()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Growth (MiB) of the group and of workerd over `[from, to]` against the median of the samples
/// in the second before `from`: (group, workerd, baseline group MiB).
pub fn growth(samples: &[Sample], from: f64, to: f64) -> Option<(f64, f64, f64)> {
    let base: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_ms < from && s.at_ms >= from - 1000.0)
        .collect();
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_ms >= from && s.at_ms <= to)
        .collect();
    if base.is_empty() || during.is_empty() {
        return None;
    }
    let mib = |k: u64| k as f64 / 1024.0;
    let base_g = crate::stats::median(&base.iter().map(|s| mib(s.group_kib)).collect::<Vec<_>>())?;
    let base_w =
        crate::stats::median(&base.iter().map(|s| mib(s.workerd_kib)).collect::<Vec<_>>())?;
    let peak_g = during.iter().map(|s| mib(s.group_kib)).fold(0.0, f64::max);
    let peak_w = during
        .iter()
        .map(|s| mib(s.workerd_kib))
        .fold(0.0, f64::max);
    Some((peak_g - base_g, peak_w - base_w, base_g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id() as i32;
        let (pgrp, comm) = stat(pid).unwrap();
        assert!(pgrp > 0);
        assert!(!comm.is_empty());
        assert!(vm_rss_kib(pid).unwrap() > 0);
        assert!(read_group(pgrp).0 > 0);
    }

    #[test]
    fn growth_against_the_second_before() {
        let s = |at: f64, g: u64| Sample {
            at_ms: at,
            group_kib: g,
            workerd_kib: g / 2,
        };
        let samples = vec![
            s(0.0, 1024),
            s(500.0, 1024),
            s(1000.0, 4096),
            s(1100.0, 2048),
        ];
        let (g, w, base) = growth(&samples, 1000.0, 2000.0).unwrap();
        assert_eq!(base, 1.0);
        assert_eq!(g, 3.0);
        assert_eq!(w, 1.5);
    }
}
