//! Child processes of the stack: each spawned in its own process group with its
//! output in a log file, and killed (the whole group) on `stop` and on drop, so
//! a panic or an early return leaves nothing running. Also the probes the tests
//! use to prove that (is a pid or a process group still alive?).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::StackError;

/// A running child process that owns its process group.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Option<Child>,
    pid: u32,
    log_path: PathBuf,
}

impl ChildProcess {
    /// Spawns `cmd` in a new process group (its pgid is its pid), stdin from
    /// /dev/null, stdout and stderr appended to `log_path`.
    pub fn spawn(name: &str, mut cmd: Command, log_path: &Path) -> Result<Self, StackError> {
        let log = open_log(log_path)?;
        let log_err = log
            .try_clone()
            .map_err(|e| StackError::io(format!("cloning {}", log_path.display()), e))?;
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd
            .spawn()
            .map_err(|e| StackError::io(format!("spawning {name}"), e))?;
        Ok(ChildProcess {
            name: name.to_string(),
            pid: child.id(),
            child: Some(child),
            log_path: log_path.to_path_buf(),
        })
    }

    /// The child's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The log file that receives the child's output.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(status)` if the child has exited (it is then reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// An error describing an unexpected exit, with the log tail.
    pub fn exited_error(&self, status: ExitStatus) -> StackError {
        StackError::Exited {
            what: self.name.clone(),
            status: status.to_string(),
            log_tail: log_tail(&self.log_path, 4000),
        }
    }

    /// SIGTERM to the whole group, up to `grace` for the leader to exit, then
    /// SIGKILL to the group; the leader is reaped. Idempotent.
    pub fn kill(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = self.pid as libc::pid_t;
        signal_group(pgid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    break;
                }
            }
        }
        // Whatever else is left in the group (grandchildren) goes too.
        signal_group(pgid, libc::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill(Duration::from_secs(2));
    }
}

/// Sends `sig` to every process of group `pgid` (errors, e.g. an empty group, ignored).
pub fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Sends `sig` to process `pid` (errors ignored).
pub fn signal_pid(pid: libc::pid_t, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill(2) on a single pid; no memory is involved.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match proc_stat(pid) {
        Some((state, _)) => state != 'Z' && state != 'X',
        None => false,
    }
}

/// Whether any live (non-zombie) process belongs to process group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .any(|(state, group)| group == pgid && state != 'Z' && state != 'X')
}

/// Every live descendant of `pid` (children, their children…). PostgreSQL's
/// backends are the postmaster's children but each calls setsid, so a process
/// group does not cover them; this does.
pub fn descendants(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| proc_fields(p).map(|f| (p, f.ppid)))
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

struct ProcFields {
    state: char,
    ppid: u32,
    pgrp: u32,
}

/// (state, pgid) of a process from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    proc_fields(pid).map(|f| (f.state, f.pgrp))
}

fn proc_fields(pid: u32) -> Option<ProcFields> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp …"; comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcFields { state, ppid, pgrp })
}

/// Waits until neither `pid` nor its group has a live process, up to `timeout`.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pid_alive(pid) && !group_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens (creating) a log file for appending.
pub fn open_log(path: &Path) -> Result<File, StackError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| StackError::io(format!("opening log {}", path.display()), e))
}

/// The last `max_bytes` of a log file (lossy UTF-8), for error messages.
pub fn log_tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
