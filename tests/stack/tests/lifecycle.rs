//! Start/stop of the stack: `stop` and drop (e.g. a panicking test) leave no
//! process behind and remove a temp state dir; a kept state dir is reused by the
//! next start; the generated `.dev.vars` and env file name every setting; the
//! buckets and the provider fakes are up.

mod common;

use std::time::Duration;

use stack::process::{descendants, group_alive, pid_alive, wait_gone};
use stack::{Stack, StackOptions};

/// The stack's processes and all their descendants (PostgreSQL's backends
/// call setsid, so they are not in the postmaster's process group).
fn all_processes(stack: &Stack) -> Vec<(&'static str, u32)> {
    let top = stack.processes();
    assert_eq!(top.len(), 2, "{top:?}");
    let mut all = top.clone();
    for (name, pid) in top {
        all.extend(descendants(pid).into_iter().map(|child| (name, child)));
    }
    all
}

/// The stack's own processes run, and PostgreSQL has children (its backends
/// and workers; some come and go, so only their presence is checked).
fn assert_all_alive(processes: &[(&'static str, u32)]) {
    assert!(processes.len() > 2, "postgres has children: {processes:?}");
    for (name, pid) in &processes[..2] {
        assert!(pid_alive(*pid), "{name} ({pid}) should be running");
    }
}

fn assert_all_gone(processes: &[(&'static str, u32)]) {
    for (name, pid) in processes {
        // `stop` waits; drop as well, but give the kernel a moment to reap.
        assert!(
            wait_gone(*pid, Duration::from_secs(2)),
            "{name} ({pid}) or its process group is still running"
        );
        assert!(!pid_alive(*pid) && !group_alive(*pid), "{name} ({pid})");
    }
}

#[tokio::test]
async fn stop_leaves_no_process_and_removes_the_temp_dir() {
    let stack = common::start("stop").await;
    let backends = stack
        .psql("select count(*) from pg_stat_activity where usename = 'authenticator';")
        .await
        .expect("psql");
    assert_ne!(backends, "0", "PostgREST holds connections");
    let processes = all_processes(&stack);
    assert_all_alive(&processes);
    let state_dir = stack.state_dir.clone();
    assert!(state_dir.join("pg/data/PG_VERSION").exists());

    let dev_vars = stack.dev_vars();
    for key in [
        "SUPABASE_URL=",
        "SUPABASE_SERVICE_KEY=",
        "SUPABASE_JWT_SECRET=",
        "OPENAI_API_KEY=",
        "OPENAI_BASE_URL=",
        "TRIPO_API_KEY=",
        "TRIPO_BASE_URL=",
        "AUTH_MODE=supabase",
    ] {
        assert!(
            dev_vars.lines().any(|l| l.starts_with(key)),
            "{key} missing:\n{dev_vars}"
        );
    }
    assert!(dev_vars.contains(&format!("SUPABASE_URL={}\n", stack.supabase_url)));
    let env = stack.env_file(Some((uuid::Uuid::nil(), "tok")));
    assert!(env.contains("export STACK_USER_TOKEN='tok'"), "{env}");
    assert!(env.contains("export SUPABASE_ANON_KEY='"), "{env}");

    // The buckets exist with the right visibility; the provider fakes answer.
    let client = reqwest::Client::new();
    for (bucket, public) in [(&stack.bucket, true), (&stack.input_bucket, false)] {
        let info: serde_json::Value = client
            .get(format!("{}/storage/v1/bucket/{bucket}", stack.supabase_url))
            .bearer_auth(&stack.service_key)
            .send()
            .await
            .expect("GET bucket")
            .json()
            .await
            .expect("JSON");
        assert_eq!(info["public"], public, "{bucket}: {info}");
    }
    let fakes = stack.fakes().expect("fakes run");
    assert!(stack.openai_base_url.starts_with(&fakes.base_url()));
    let health = client
        .get(format!("{}/__fake/health", fakes.base_url()))
        .send()
        .await
        .expect("fakes health");
    assert_eq!(health.status(), 200);

    stack.stop().await;
    assert_all_gone(&processes);
    assert!(
        !state_dir.exists(),
        "temp state dir {state_dir:?} left behind"
    );
}

#[tokio::test]
async fn drop_without_stop_kills_everything() {
    let stack = common::start("drop").await;
    let processes = all_processes(&stack);
    assert_all_alive(&processes);
    let state_dir = stack.state_dir.clone();
    // What a panicking test does: the Stack is dropped, never stopped.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _owned = stack;
        panic!("expected: a simulated test failure while the stack runs");
    }));
    assert!(panicked.is_err());
    assert_all_gone(&processes);
    assert!(
        !state_dir.exists(),
        "temp state dir {state_dir:?} left behind"
    );
}

#[tokio::test]
async fn a_kept_state_dir_is_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let opts = StackOptions {
        state_dir: Some(state.clone()),
        ..StackOptions::default()
    };

    let first = Stack::start(opts.clone()).await.expect("first start");
    let (id, _) = first.create_user("keep@example.com").await.expect("user");
    first
        .psql(&format!(
            "insert into public.models (task_id, user_id) values ('kept', '{id}');"
        ))
        .await
        .expect("insert");
    let first_processes = all_processes(&first);
    first.stop().await;
    assert_all_gone(&first_processes);
    assert!(
        state.join("pg/data/PG_VERSION").exists(),
        "kept dir removed"
    );

    // Second start: no initdb, bootstrap and migrations re-applied, data kept,
    // new ports and a new JWT secret; the same email is the same user.
    let second = Stack::start(opts).await.expect("second start");
    eprintln!(
        "restart on a kept dir took {:.2}s",
        second.startup.as_secs_f64()
    );
    let (again, token) = second.create_user("keep@example.com").await.expect("user");
    assert_eq!(again, id);
    let rows = reqwest::Client::new()
        .get(format!(
            "{}/rest/v1/models?select=task_id",
            second.supabase_url
        ))
        .header("apikey", &second.anon_key)
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET models")
        .json::<serde_json::Value>()
        .await
        .expect("JSON");
    assert_eq!(rows, serde_json::json!([{"task_id": "kept"}]));
    let second_processes = all_processes(&second);
    second.stop().await;
    assert_all_gone(&second_processes);
    assert!(state.exists(), "a kept state dir stays");
}

#[tokio::test]
async fn postgrest_and_storage_go_down_and_come_back_on_the_same_ports_with_their_data() {
    let stack = common::start("outage").await;
    let http = reqwest::Client::new();
    let (id, token) = stack.create_user("down@example.com").await.expect("user");
    stack
        .psql(&format!(
            "insert into public.models (task_id, user_id) values ('survives', '{id}');"
        ))
        .await
        .expect("insert");
    let rows = |stack_url: String| {
        let http = http.clone();
        let anon = stack.anon_key.clone();
        let token = token.clone();
        async move {
            http.get(format!("{stack_url}/rest/v1/models?select=task_id"))
                .header("apikey", anon)
                .bearer_auth(token)
                .send()
                .await
                .expect("GET models")
        }
    };
    let object = format!(
        "{}/storage/v1/object/{}/o.bin",
        stack.supabase_url, stack.bucket
    );
    let put = http
        .post(&object)
        .bearer_auth(&stack.service_key)
        .body(vec![5u8; 1000])
        .send()
        .await
        .expect("upload");
    assert_eq!(put.status(), 200);

    let old_pid = stack.postgrest_pid();
    stack.stop_postgrest();
    assert!(wait_gone(old_pid, Duration::from_secs(5)));
    let r = rows(stack.supabase_url.clone()).await;
    assert_eq!(r.status(), 502, "Kong's answer for a dead upstream");
    stack.start_postgrest().await.expect("PostgREST back");
    assert_ne!(stack.postgrest_pid(), old_pid);
    let r = rows(stack.supabase_url.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!([{"task_id": "survives"}])
    );

    stack.storage_outage(0.5, false);
    let r = http
        .get(&object)
        .bearer_auth(&stack.service_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = http
        .get(&object)
        .bearer_auth(&stack.service_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
    let processes = all_processes(&stack);
    stack.stop().await;
    assert_all_gone(&processes);
}
