//! The stack's private PostgreSQL 15 cluster: finding (or installing) the
//! binaries, `initdb` in the state dir, start/stop with `pg_ctl`, and `psql` as
//! the superuser for the bootstrap, the migrations and the tests. As root the
//! server runs as the `postgres` OS user (initdb refuses root); otherwise as
//! the current user. Authentication is `trust`, on 127.0.0.1 only.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::process::{log_tail, open_log, signal_group, signal_pid, wait_gone};
use crate::StackError;

/// Debian's location of the PostgreSQL 15 server binaries.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The cluster's superuser (initdb `-U`), as on Supabase.
pub const SUPERUSER: &str = "postgres";

/// Where the PostgreSQL binaries are.
#[derive(Debug, Clone)]
pub struct PgInstall {
    pub bin_dir: PathBuf,
    pub psql: PathBuf,
}

impl PgInstall {
    /// Finds the binaries in `STACK_PG_BIN_DIR` or [`DEFAULT_BIN_DIR`]; if `initdb`
    /// is missing and we are root, installs `postgresql-15` with apt-get (only then).
    pub async fn locate_or_install() -> Result<Self, StackError> {
        let bin_dir = std::env::var_os("STACK_PG_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN_DIR));
        let initdb = bin_dir.join("initdb");
        if !initdb.exists() {
            if !is_root() {
                return Err(StackError::MissingBinary {
                    what: "PostgreSQL 15 (initdb)",
                    path: initdb,
                    hint: "install it: sudo apt-get install -y postgresql-15 \
                           (or set STACK_PG_BIN_DIR)"
                        .into(),
                });
            }
            apt_install_postgresql().await?;
            if !initdb.exists() {
                return Err(StackError::MissingBinary {
                    what: "PostgreSQL 15 (initdb)",
                    path: initdb,
                    hint: "apt-get install -y postgresql-15 did not provide it".into(),
                });
            }
        }
        // The versioned psql avoids Debian's perl wrapper (/usr/bin/psql).
        let psql = [bin_dir.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|p| p.exists())
            .ok_or_else(|| StackError::MissingBinary {
                what: "psql",
                path: bin_dir.join("psql"),
                hint: "install postgresql-client-15".into(),
            })?;
        Ok(PgInstall { bin_dir, psql })
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

async fn apt_install_postgresql() -> Result<(), StackError> {
    let install = || {
        let mut cmd = tokio::process::Command::new("apt-get");
        cmd.args(["install", "-y", "postgresql-15"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        cmd
    };
    if run_checked(install(), "apt-get install -y postgresql-15")
        .await
        .is_ok()
    {
        return Ok(());
    }
    // The package lists may be missing or stale: refresh once and retry.
    let mut update = tokio::process::Command::new("apt-get");
    update.arg("update").stdin(Stdio::null());
    run_checked(update, "apt-get update").await?;
    run_checked(install(), "apt-get install -y postgresql-15").await
}

/// The OS user the server runs as when we are root.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `Some(postgres user)` when running as root, `None` otherwise.
pub fn run_as() -> Result<Option<RunAs>, StackError> {
    if !is_root() {
        return Ok(None);
    }
    lookup_user(SUPERUSER)
        .map(Some)
        .ok_or_else(|| StackError::MissingBinary {
            what: "OS user `postgres`",
            path: PathBuf::from("/etc/passwd"),
            hint:
                "running as root needs the `postgres` user (created by the postgresql-15 package)"
                    .into(),
        })
}

fn lookup_user(name: &str) -> Option<RunAs> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwnam_r writes into `pwd` and `buf` (whose length we pass) and
    // sets `result` to &pwd on success or NULL; all pointers outlive the call.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(RunAs {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// Gives `path` to the server's OS user (no-op when not root).
pub fn chown_to(path: &Path, run_as: Option<RunAs>) -> Result<(), StackError> {
    if let Some(user) = run_as {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(|e| StackError::io(format!("chown {}", path.display()), e))?;
    }
    Ok(())
}

/// A running cluster. Stopped by [`Postgres::stop`], or (immediate mode) on drop.
#[derive(Debug)]
pub struct Postgres {
    install: PgInstall,
    run_as: Option<RunAs>,
    pg_dir: PathBuf,
    port: u16,
    running: bool,
}

impl Postgres {
    /// Initialises `pg_dir/data` if it holds no cluster yet, writes the stack's
    /// settings (port, loopback only, socket dir, fsync off) and starts the
    /// server with `pg_ctl start -w`.
    pub async fn start(install: PgInstall, pg_dir: &Path, port: u16) -> Result<Self, StackError> {
        let run_as = run_as()?;
        std::fs::create_dir_all(pg_dir)
            .map_err(|e| StackError::io(format!("creating {}", pg_dir.display()), e))?;
        chown_to(pg_dir, run_as)?;
        let mut pg = Postgres {
            install,
            run_as,
            pg_dir: pg_dir.to_path_buf(),
            port,
            running: false,
        };
        if !pg.data_dir().join("PG_VERSION").exists() {
            pg.initdb().await?;
        } else {
            pg.stop_stale().await;
        }
        pg.write_settings()?;
        pg.pg_ctl_start().await?;
        Ok(pg)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.pg_dir.join("data")
    }

    /// The server log.
    pub fn log_path(&self) -> PathBuf {
        self.pg_dir.join("postgres.log")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth: no password).
    pub fn superuser_url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's pid (also its process group: pg_ctl starts it with setsid).
    pub fn postmaster_pid(&self) -> Option<u32> {
        read_postmaster_pid(&self.data_dir())
    }

    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        clear_pg_env(cmd.as_std_mut());
        cmd.current_dir(&self.pg_dir).stdin(Stdio::null());
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    async fn initdb(&self) -> Result<(), StackError> {
        let mut cmd = self.command(&self.install.bin("initdb"));
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ]);
        run_checked(cmd, "initdb").await
    }

    /// A server left running by a killed earlier run on the same state dir.
    async fn stop_stale(&self) {
        if let Some(pid) = self.postmaster_pid() {
            if crate::process::pid_alive(pid) {
                let mut cmd = self.command(&self.install.bin("pg_ctl"));
                cmd.arg("stop").arg("-D").arg(self.data_dir()).args([
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "10",
                ]);
                let _ = run_checked(cmd, "pg_ctl stop (stale server)").await;
            }
        }
    }

    fn write_settings(&self) -> Result<(), StackError> {
        let data = self.data_dir();
        let conf = data.join("postgresql.conf");
        let include = "include_if_exists = 'stack.conf'";
        let current = std::fs::read_to_string(&conf)
            .map_err(|e| StackError::io(format!("reading {}", conf.display()), e))?;
        if !current.lines().any(|l| l.trim() == include) {
            std::fs::write(&conf, format!("{current}\n{include}\n"))
                .map_err(|e| StackError::io(format!("writing {}", conf.display()), e))?;
        }
        // A Unix socket path is limited to 107 bytes; without one, pg_ctl -w still
        // works (it reads postmaster.pid) and every client uses TCP anyway.
        let sock = self.pg_dir.join("sock");
        let socket_dirs = if sock.as_os_str().len() + 20 < 107 {
            std::fs::create_dir_all(&sock)
                .map_err(|e| StackError::io(format!("creating {}", sock.display()), e))?;
            chown_to(&sock, self.run_as)?;
            sock.display().to_string()
        } else {
            String::new()
        };
        let settings = format!(
            "# Written by the stack at every start.\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dirs}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 50\n\
             shared_buffers = 32MB\n\
             log_min_duration_statement = -1\n",
            port = self.port,
            socket_dirs = socket_dirs.replace('\'', "''"),
        );
        let path = data.join("stack.conf");
        std::fs::write(&path, settings)
            .map_err(|e| StackError::io(format!("writing {}", path.display()), e))?;
        chown_to(&path, self.run_as)
    }

    async fn pg_ctl_start(&mut self) -> Result<(), StackError> {
        let ctl_log = self.pg_dir.join("pg_ctl.log");
        let out = open_log(&ctl_log)?;
        let err = out
            .try_clone()
            .map_err(|e| StackError::io("cloning the pg_ctl log", e))?;
        let mut cmd = self.command(&self.install.bin("pg_ctl"));
        cmd.arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60"])
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let status = cmd
            .status()
            .await
            .map_err(|e| StackError::io("running pg_ctl start", e))?;
        // From here on a server may be running: let Drop stop it if we fail.
        self.running = true;
        if !status.success() {
            return Err(StackError::Command {
                program: "pg_ctl start".into(),
                status: status.to_string(),
                output: format!(
                    "{}\n--- postgres.log ---\n{}",
                    log_tail(&ctl_log, 2000),
                    log_tail(&self.log_path(), 4000)
                ),
            });
        }
        Ok(())
    }

    /// Runs `sql` (any number of statements) as the superuser; returns stdout
    /// in `-At` form (unaligned, tuples only, `|` between columns).
    pub async fn psql(&self, sql: &str) -> Result<String, StackError> {
        self.run_psql(&["-f", "-"], Some(sql)).await
    }

    /// Runs a file in one transaction (`-1`), with psql variables `vars`.
    pub async fn psql_file(
        &self,
        path: &Path,
        vars: &[(&str, &str)],
    ) -> Result<String, StackError> {
        let mut args: Vec<String> = vec!["-1".into()];
        for (name, value) in vars {
            args.push("-v".into());
            args.push(format!("{name}={value}"));
        }
        args.push("-f".into());
        args.push(path.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_psql(&args, None).await
    }

    /// Runs an SQL script given as text in one transaction, with psql variables.
    pub async fn psql_script(
        &self,
        sql: &str,
        vars: &[(&str, &str)],
    ) -> Result<String, StackError> {
        let mut args: Vec<String> = vec!["-1".into()];
        for (name, value) in vars {
            args.push("-v".into());
            args.push(format!("{name}={value}"));
        }
        args.extend(["-f".into(), "-".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_psql(&args, Some(sql)).await
    }

    async fn run_psql(&self, extra: &[&str], stdin: Option<&str>) -> Result<String, StackError> {
        let mut cmd = tokio::process::Command::new(&self.install.psql);
        clear_pg_env(cmd.as_std_mut());
        let port = self.port.to_string();
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
        ])
        .args(extra)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| StackError::io(format!("spawning {}", self.install.psql.display()), e))?;
        let input = child.stdin.take();
        let feed = async move {
            if let (Some(mut pipe), Some(sql)) = (input, stdin) {
                // psql stops reading on error; a broken pipe is reported by its exit status.
                let _ = pipe.write_all(sql.as_bytes()).await;
                let _ = pipe.shutdown().await;
            }
        };
        let (_, output) = tokio::join!(feed, child.wait_with_output());
        let output = output.map_err(|e| StackError::io("waiting for psql", e))?;
        if !output.status.success() {
            return Err(StackError::Psql {
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if stdout.ends_with('\n') {
            stdout.pop();
        }
        Ok(stdout)
    }

    /// `pg_ctl stop -m fast`; falls back to immediate mode, then to SIGKILL.
    pub async fn stop(&mut self) {
        if !self.running {
            return;
        }
        let pid = self.postmaster_pid();
        let mut cmd = self.command(&self.install.bin("pg_ctl"));
        cmd.arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let ok = matches!(cmd.status().await, Ok(s) if s.success());
        if !ok {
            self.stop_blocking();
        } else if let Some(pid) = pid {
            // pg_ctl returns once postmaster.pid is gone; backends exit just before.
            let _ =
                tokio::task::spawn_blocking(move || wait_gone(pid, Duration::from_secs(5))).await;
        }
        self.running = false;
    }

    /// Synchronous stop for Drop: immediate mode, then SIGKILL to the group.
    fn stop_blocking(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let pid = self.postmaster_pid();
        let mut cmd = std::process::Command::new(self.install.bin("pg_ctl"));
        clear_pg_env(&mut cmd);
        cmd.current_dir(&self.pg_dir)
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "10"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(user) = self.run_as {
            std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, user.gid);
        }
        let _ = cmd.status();
        if let Some(pid) = pid {
            if !wait_gone(pid, Duration::from_secs(3)) {
                signal_pid(pid as libc::pid_t, libc::SIGKILL);
                signal_group(pid as libc::pid_t, libc::SIGKILL);
                wait_gone(pid, Duration::from_secs(2));
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

fn read_postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Removes every inherited `PG*` variable, so the caller's environment
/// (PGHOST, PGPASSWORD, PGDATA, PGOPTIONS…) cannot redirect or alter our calls.
fn clear_pg_env(cmd: &mut std::process::Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

/// Runs a command to completion; an error carries its combined output.
pub(crate) async fn run_checked(
    mut cmd: tokio::process::Command,
    what: &str,
) -> Result<(), StackError> {
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| StackError::io(format!("running {what}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(StackError::Command {
        program: what.to_string(),
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// Quotes `value` as an SQL string literal (standard_conforming_strings is on).
pub fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
