//! The one error type of the stack crate: what failed (a process, a command, an
//! HTTP call, a component), with enough context (stderr, log tail) to act on it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting, using or stopping the stack.
#[derive(Debug)]
pub enum StackError {
    /// A file-system or process-spawn operation failed.
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A program the stack needs is not installed and could not be installed.
    MissingBinary {
        what: &'static str,
        path: PathBuf,
        hint: String,
    },
    /// An external command (initdb, pg_ctl, apt-get, npm…) exited unsuccessfully.
    Command {
        program: String,
        status: String,
        output: String,
    },
    /// psql exited unsuccessfully; `stderr` carries the SQLSTATE (VERBOSITY verbose).
    Psql { status: String, stderr: String },
    /// A component did not become ready in time.
    Timeout {
        what: String,
        after: Duration,
        log_tail: String,
    },
    /// A child process exited while it should be running.
    Exited {
        what: String,
        status: String,
        log_tail: String,
    },
    /// An HTTP request to a component failed at the transport level.
    Http {
        context: String,
        source: reqwest::Error,
    },
    /// A component answered with an unexpected status or body.
    UnexpectedResponse {
        context: String,
        status: u16,
        body: String,
    },
    /// An in-process component (gateway, provider fakes) failed to start.
    Component { what: &'static str, message: String },
    /// A caller-supplied value is unusable.
    InvalidArgument(String),
}

impl StackError {
    /// A [`StackError::Io`] with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StackError::Io {
            context: context.into(),
            source,
        }
    }

    /// A [`StackError::Http`] with what was being done.
    pub fn http(context: impl Into<String>, source: reqwest::Error) -> Self {
        StackError::Http {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::Io { context, source } => write!(f, "{context}: {source}"),
            StackError::MissingBinary { what, path, hint } => {
                write!(f, "{what} not found at {}: {hint}", path.display())
            }
            StackError::Command {
                program,
                status,
                output,
            } => write!(f, "`{program}` failed ({status}): {}", output.trim_end()),
            StackError::Psql { status, stderr } => {
                write!(f, "psql failed ({status}): {}", stderr.trim_end())
            }
            StackError::Timeout {
                what,
                after,
                log_tail,
            } => write!(
                f,
                "{what} not ready after {:.1}s; log tail:\n{log_tail}",
                after.as_secs_f64()
            ),
            StackError::Exited {
                what,
                status,
                log_tail,
            } => write!(f, "{what} exited ({status}); log tail:\n{log_tail}"),
            StackError::Http { context, source } => write!(f, "{context}: {source}"),
            StackError::UnexpectedResponse {
                context,
                status,
                body,
            } => write!(f, "{context}: unexpected HTTP {status}: {body}"),
            StackError::Component { what, message } => write!(f, "{what}: {message}"),
            StackError::InvalidArgument(message) => write!(f, "invalid argument: {message}"),
        }
    }
}

impl std::error::Error for StackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StackError::Io { source, .. } => Some(source),
            StackError::Http { source, .. } => Some(source),
            _ => None,
        }
    }
}
