//! `stack up`: starts the local stack, writes `.dev.vars` and a shell env file,
//! prints the URLs and the start time, and runs until SIGINT / SIGTERM / SIGHUP,
//! then stops everything (no process left behind).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use stack::{Stack, StackError, StackOptions};

/// Token lifetime of the ready-made user in the env file: a working day.
const ENV_USER_TOKEN_TTL_SECS: i64 = 24 * 3600;
const ENV_USER_EMAIL: &str = "stack-user@example.com";

const USAGE: &str = "\
usage: stack up [--state-dir DIR] [--dev-vars PATH] [--env-out PATH]
                [--repo-root DIR] [--time-scale F] [--supabase-port N]

Starts PostgreSQL (+ migrations), PostgREST, the Supabase-style gateway with
Storage, and the OpenAI/Tripo fakes on 127.0.0.1, then waits for Ctrl-C.

  --state-dir DIR   keep state (cluster, objects, logs) in DIR and reuse it;
                    default: a temp dir removed on exit
  --dev-vars PATH   where to write wrangler's .dev.vars (default STATE/.dev.vars)
  --env-out PATH    where to write the shell env file (default STATE/stack.env);
                    it adds SUPABASE_ANON_KEY, STACK_USER_ID, STACK_USER_TOKEN…
  --repo-root DIR   the repository (migrations/, node_modules/); default: the
                    one this binary was built from
  --time-scale F    speed of the provider fakes' simulated work (default 1.0)
  --supabase-port N the project URL's port (e.g. 54321, as the Supabase CLI);
                    a free port, with a warning, when N is taken; default: free
";

#[derive(Debug, Default)]
struct UpArgs {
    state_dir: Option<PathBuf>,
    dev_vars: Option<PathBuf>,
    env_out: Option<PathBuf>,
    repo_root: Option<PathBuf>,
    time_scale: Option<f64>,
    supabase_port: Option<u16>,
}

fn parse_args(args: &[String]) -> Result<UpArgs, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("missing command".into());
    };
    if command != "up" {
        return Err(format!("unknown command {command:?}"));
    }
    let mut out = UpArgs::default();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--state-dir" => out.state_dir = Some(value()?.into()),
            "--dev-vars" => out.dev_vars = Some(value()?.into()),
            "--env-out" => out.env_out = Some(value()?.into()),
            "--repo-root" => out.repo_root = Some(value()?.into()),
            "--time-scale" => {
                let v = value()?;
                out.time_scale = Some(
                    v.parse()
                        .map_err(|_| format!("--time-scale: not a number: {v}"))?,
                );
            }
            "--supabase-port" => {
                let v = value()?;
                out.supabase_port = Some(
                    v.parse()
                        .map_err(|_| format!("--supabase-port: not a port: {v}"))?,
                );
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let up = match parse_args(&args) {
        Ok(up) => up,
        Err(message) => {
            eprintln!("stack: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stack: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(up)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stack: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(up: UpArgs) -> Result<(), StackError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before starting, so a Ctrl-C during start still stops cleanly.
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| StackError::io("SIGINT", e))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| StackError::io("SIGTERM", e))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| StackError::io("SIGHUP", e))?;

    let opts = StackOptions {
        state_dir: up.state_dir,
        repo_root: up.repo_root.unwrap_or_else(stack::default_repo_root),
        time_scale: up.time_scale.unwrap_or(1.0),
        supabase_port: up.supabase_port,
    };

    let stack = tokio::select! {
        started = Stack::start(opts) => started?,
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
        _ = sighup.recv() => return Ok(()),
    };
    let written = write_files(&stack, up.dev_vars, up.env_out).await;
    let (dev_vars, env_out) = match written {
        Ok(paths) => paths,
        Err(e) => {
            stack.stop().await;
            return Err(e);
        }
    };

    println!("stack: started in {:.2}s", stack.startup.as_secs_f64());
    if let (true, Some(port)) = (stack.preferred_port_taken, up.supabase_port) {
        println!(
            "stack: WARNING port {port} is taken (another local Supabase?); the project URL is {} instead",
            stack.supabase_url
        );
    }
    println!("  SUPABASE_URL     {}", stack.supabase_url);
    println!("  PostgREST        {}", stack.postgrest_url);
    println!("  PostgreSQL       {}", stack.database_url);
    println!("  OpenAI fake      {}", stack.openai_base_url);
    println!("  Tripo fake       {}", stack.tripo_base_url);
    println!("  Tripo v3 fake    {}", stack.tripo_v3_base_url);
    println!(
        "  buckets          {} (public), {} (private)",
        stack.bucket, stack.input_bucket
    );
    println!("  state dir        {}", stack.state_dir.display());
    println!("  .dev.vars        {}", dev_vars.display());
    println!(
        "  env file         {}  (. it for SUPABASE_*, STACK_USER_TOKEN…)",
        env_out.display()
    );
    println!("stack: Ctrl-C to stop");

    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
        _ = sighup.recv() => {}
    }
    println!("stack: stopping");
    stack.stop().await;
    println!("stack: stopped");
    Ok(())
}

/// Writes `.dev.vars` and the env file (with a ready-made user); returns their paths.
async fn write_files(
    stack: &Stack,
    dev_vars: Option<PathBuf>,
    env_out: Option<PathBuf>,
) -> Result<(PathBuf, PathBuf), StackError> {
    let dev_vars = dev_vars.unwrap_or_else(|| stack.state_dir.join(".dev.vars"));
    let env_out = env_out.unwrap_or_else(|| stack.state_dir.join("stack.env"));
    let (user_id, token) = stack
        .create_user_with_ttl(ENV_USER_EMAIL, ENV_USER_TOKEN_TTL_SECS)
        .await?;
    write_atomically(&dev_vars, &stack.dev_vars())?;
    write_atomically(&env_out, &stack.env_file(Some((user_id, &token))))?;
    Ok((dev_vars, env_out))
}

/// Writes through a temp file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, content: &str) -> Result<(), StackError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content)
        .map_err(|e| StackError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| StackError::io(format!("renaming to {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_up_with_options() {
        let up = parse_args(&args(
            "up --state-dir /tmp/s --dev-vars d --env-out e --time-scale 0.5 --supabase-port 54321",
        ))
        .unwrap();
        assert_eq!(up.supabase_port, Some(54321));
        assert_eq!(up.state_dir, Some(PathBuf::from("/tmp/s")));
        assert_eq!(up.dev_vars, Some(PathBuf::from("d")));
        assert_eq!(up.env_out, Some(PathBuf::from("e")));
        assert_eq!(up.time_scale, Some(0.5));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_args(&args("")).is_err());
        assert!(parse_args(&args("down")).is_err());
        assert!(parse_args(&args("up --state-dir")).is_err());
        assert!(parse_args(&args("up --nope")).is_err());
        assert!(parse_args(&args("up --time-scale x")).is_err());
        assert!(parse_args(&args("up --supabase-port 70000")).is_err());
    }
}
