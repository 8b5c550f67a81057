//! The concepts job (SPEC §3, §4.2, §6; issue P4) end to end: `image-to-image` → queue → OpenAI
//! fake → Storage → rows and status. Every case has its own task id and its own fake nonce (in
//! the prompt), so cases run concurrently and count only their own provider calls.

use std::collections::BTreeSet;
use std::time::Duration;

use libtest_mimic::Failed;
use serde_json::{json, Value};

use crate::support::{check, png, urlencode, Case, CaseResult, Ctx};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "concepts::n3_gives_three_pngs_three_complete_rows_and_status",
            three_images,
        ),
        (
            "concepts::openai_429_twice_with_retry_after_then_complete",
            rate_limited_twice,
        ),
        ("concepts::openai_500_once_then_complete", server_error_once),
        (
            "concepts::moderation_fails_with_the_providers_message",
            moderation_fails,
        ),
        (
            "concepts::invalid_key_fails_without_leaking_the_key",
            invalid_key_fails,
        ),
        (
            "concepts::storage_5xx_twice_on_upload_still_completes_with_one_openai_call",
            storage_5xx_on_upload,
        ),
        (
            "concepts::duplicate_delivery_after_completion_changes_nothing",
            duplicate_after_completion,
        ),
        (
            "concepts::duplicate_delivery_while_running_is_one_openai_call",
            duplicate_while_running,
        ),
        (
            "concepts::failed_step_resubmitted_is_a_new_attempt_on_the_same_rows",
            resubmit_after_failure,
        ),
        (
            "concepts::failed_n3_resubmitted_with_n1_and_another_prompt_leaves_no_stale_row",
            resubmit_smaller_with_another_body,
        ),
    ]
}

const STYLE: &str = "clay";
const LIMIT: Duration = Duration::from_secs(60);
/// Rows follow the Durable Object; once the status is terminal they must catch up quickly.
const ROWS_LIMIT: Duration = Duration::from_secs(15);

/// One case's task: its id, its nonce, the request body and what the fake sees as the prompt.
struct Task {
    id: String,
    nonce: String,
    prompt: String,
    body: Value,
    n: usize,
}

impl Task {
    /// The prompt the worker sends: `"<prompt> Style: <style>"` (SPEC §4.1); the fake's images
    /// are `concept_png(<that prompt>, i)`.
    fn sent_prompt(&self) -> String {
        format!("{} Style: {STYLE}", self.prompt)
    }

    fn object_path(&self, i: usize) -> String {
        format!("concepts/{}/{i}.png", self.id)
    }

    /// The non-expiring public URL of output `i` (the suite's bucket is public).
    fn public_url(&self, ctx: &Ctx, i: usize) -> String {
        format!(
            "{}/storage/v1/object/public/{}/{}",
            ctx.stack.supabase_url,
            ctx.stack.bucket,
            self.object_path(i)
        )
    }

    /// The storage path prefix (after `/storage/v1`) of this task's outputs.
    fn storage_prefix(&self, ctx: &Ctx) -> String {
        format!("/object/{}/concepts/{}/", ctx.stack.bucket, self.id)
    }
}

/// A fresh task with `directive` (may be empty) and a nonce in the prompt, and its input image.
fn new_task(ctx: &Ctx, case: &str, directive: &str, n: usize) -> Result<Task, Failed> {
    let id = ctx.task_id(case);
    let nonce = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let items = if directive.is_empty() {
        format!("nonce={nonce}")
    } else {
        format!("{directive},nonce={nonce}")
    };
    let prompt = format!("a red chair [[fake:{items}]]");
    let input = ctx.upload_input(
        &ctx.alice,
        &format!("{}/{id}.png", ctx.run),
        "image/png",
        png(""),
    )?;
    let body = json!({
        "task_id": id, "input_image_asset_url": input, "prompt": prompt, "style": STYLE, "n": n,
    });
    Ok(Task {
        id,
        nonce,
        prompt,
        body,
        n,
    })
}

/// Submits the task and expects 202 `pending`.
fn submit(ctx: &Ctx, t: &Task) -> CaseResult {
    let r = ctx.generate(&ctx.alice, "image-to-image", &t.body)?;
    check(r.status == 202, || {
        format!("submit: expected 202, got {} {}", r.status, r.text)
    })?;
    let v = r.json()?;
    check(
        v["task_id"] == t.id.as_str() && v["step"] == "concepts" && v["status"] == "pending",
        || format!("submit answer: {}", r.text),
    )
}

/// The concepts status of the task (`?step=concepts`), as JSON.
fn status(ctx: &Ctx, t: &Task) -> Result<Value, Failed> {
    let r = ctx.status(&ctx.alice, &t.id, "?step=concepts")?;
    check(r.status == 200, || {
        format!("status: {} {}", r.status, r.text)
    })?;
    r.json()
}

/// Waits for the step to be `complete` or `failed`; returns the status body.
fn wait_terminal(ctx: &Ctx, t: &Task) -> Result<Value, Failed> {
    let mut last = Value::Null;
    ctx.wait_for(LIMIT, "a terminal concepts status", || {
        let v = status(ctx, t)?;
        let done = v["status"] == "complete" || v["status"] == "failed";
        last = v.clone();
        Ok(done.then_some(v))
    })
    .map_err(|e| {
        Failed::from(with_context(
            ctx,
            t,
            format!("{}; last status {last}", text(&e)),
        ))
    })
}

/// Waits until the task has `n` rows, none `pending`/`processing`; rows sorted by index.
fn wait_rows_terminal(ctx: &Ctx, t: &Task) -> Result<Vec<Value>, Failed> {
    let mut last = Vec::new();
    ctx.wait_for(ROWS_LIMIT, "every row complete or failed", || {
        let rows = ctx.rows("concept_images", &t.id)?;
        let done = rows.len() == t.n
            && rows
                .iter()
                .all(|r| r["status"] == "complete" || r["status"] == "failed");
        last = rows.clone();
        Ok(done.then_some(rows))
    })
    .map(sorted_by_index)
    .map_err(|e| Failed::from(with_context(ctx, t, format!("{}; rows {last:?}", text(&e)))))
}

fn sorted_by_index(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r["metadata"]["index"].as_u64().unwrap_or(u64::MAX));
    rows
}

/// The worker's structured events for `t`, at every level. (`Ctx::worker_events` misses
/// `warn`/`error` lines: wrangler wraps them in ANSI colour codes — `▲ [WARNING] {…}` plus a
/// trailing `ESC[0m` — so the text after the first `{` is not JSON. Here the object is cut
/// at the last `}`.)
fn events(ctx: &Ctx, t: &Task) -> Vec<Value> {
    ctx.worker_events(&t.id)
        .into_iter()
        .filter(|v| v["task_id"] == t.id.as_str())
        .collect()
}

/// A failure message with the task's worker events appended (the evidence for a report).
fn with_context(ctx: &Ctx, t: &Task, msg: String) -> String {
    let events: Vec<String> = events(ctx, t).iter().map(Value::to_string).collect();
    format!("{msg}\nworker events of {}:\n{}", t.id, events.join("\n"))
}

/// The text of a harness failure.
fn text(e: &Failed) -> String {
    e.message().unwrap_or("failed").to_string()
}

/// The fake's log of OpenAI image-edit calls carrying this task's nonce, in arrival order.
fn openai_calls(ctx: &Ctx, t: &Task) -> Result<Vec<Value>, Failed> {
    let fakes = ctx
        .stack
        .fakes()
        .ok_or("the stack runs no provider fakes")?;
    Ok(fakes
        .log(Some(&t.nonce))
        .into_iter()
        .filter(|e| {
            e["provider"] == "openai"
                && e["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/v1/images/edits"))
        })
        .collect())
}

fn statuses(calls: &[Value]) -> Vec<u64> {
    calls.iter().filter_map(|c| c["status"].as_u64()).collect()
}

/// Checks the exact sequence of HTTP statuses the fake answered this task's OpenAI calls with.
fn expect_openai_calls(ctx: &Ctx, t: &Task, expected: &[u64]) -> Result<Vec<Value>, Failed> {
    let calls = openai_calls(ctx, t)?;
    let got = statuses(&calls);
    check(got == expected, || {
        with_context(
            ctx,
            t,
            format!("OpenAI calls: expected statuses {expected:?}, got {got:?}"),
        )
    })?;
    Ok(calls)
}

/// The object names under `concepts/{task}/`, listed with the service key.
fn list_objects(ctx: &Ctx, t: &Task) -> Result<Vec<String>, Failed> {
    let url = format!(
        "{}/storage/v1/object/list/{}",
        ctx.stack.supabase_url, ctx.stack.bucket
    );
    let auth = format!("Bearer {}", ctx.stack.service_key);
    let body = json!({"prefix": format!("concepts/{}", t.id), "limit": 1000});
    let r = ctx.request(
        "POST",
        &url,
        &[
            ("authorization", &auth),
            ("apikey", &ctx.stack.service_key),
            ("content-type", "application/json"),
        ],
        Some(body.to_string().into_bytes()),
    )?;
    check(r.status == 200, || format!("list: {} {}", r.status, r.text))?;
    let mut names: Vec<String> = r
        .json()?
        .as_array()
        .ok_or_else(|| format!("list answer is not an array: {}", r.text))?
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

fn expected_names(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{i}.png")).collect();
    v.sort();
    v
}

/// The gateway's log of Storage requests under this task's output folder (`method` or all).
fn storage_log(ctx: &Ctx, t: &Task, method: &str) -> Result<Vec<Value>, Failed> {
    let url = format!(
        "{}/__fake/storage/log?path_prefix={}&method={method}",
        ctx.stack.supabase_url,
        urlencode(&t.storage_prefix(ctx))
    );
    let r = ctx.request("GET", &url, &[], None)?;
    check(r.status == 200, || {
        format!("storage log: {} {}", r.status, r.text)
    })?;
    Ok(r.json()?.as_array().cloned().unwrap_or_default())
}

/// GET with no credentials; the status and the raw bytes.
fn download(ctx: &Ctx, url: &str) -> Result<(u16, Vec<u8>), Failed> {
    ctx.rt.block_on(async {
        let resp = ctx
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        Ok((status, bytes.to_vec()))
    })
}

/// Sends a raw job message through the worker's test hook (a forced duplicate delivery).
fn enqueue_duplicate(ctx: &Ctx, t: &Task, attempt: u32) -> CaseResult {
    let msg = json!({"kind": "run", "task_id": t.id, "step": "concepts", "attempt": attempt, "try_no": 1});
    let r = ctx.call(
        "POST",
        "/__test/enqueue",
        &[("content-type", "application/json")],
        Some(&msg.to_string()),
    )?;
    check(r.status == 202, || {
        format!(
            "/__test/enqueue: {} {} (is this case running on the hooks worker?)",
            r.status, r.text
        )
    })
}

/// Checks that the worker logged `event` exactly `count` times for `t`.
fn expect_events(ctx: &Ctx, t: &Task, event: &str, count: usize) -> CaseResult {
    let got = events_named(ctx, t, event).len();
    check(got == count, || {
        with_context(
            ctx,
            t,
            format!("expected {count} `{event}` events, got {got}"),
        )
    })
}

fn events_named(ctx: &Ctx, t: &Task, event: &str) -> Vec<Value> {
    events(ctx, t)
        .into_iter()
        .filter(|v| v["event"] == event)
        .collect()
}

/// The whole success contract for `t`: status, rows, objects (bytes equal to the fake's), URLs.
fn expect_complete(ctx: &Ctx, t: &Task, st: &Value) -> CaseResult {
    let urls: Vec<String> = (0..t.n).map(|i| t.public_url(ctx, i)).collect();
    check(st["status"] == "complete", || {
        with_context(ctx, t, format!("expected complete: {st}")).to_string()
    })?;
    check(
        st["step"] == "concepts" && st["service"] == "openai" && st["task_id"] == t.id.as_str(),
        || format!("status identity: {st}"),
    )?;
    check(st["progress"] == 100, || format!("progress: {st}"))?;
    check(st["error"].is_null(), || format!("error on success: {st}"))?;
    let got: Vec<String> = st["asset_urls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    check(got == urls, || {
        format!("asset_urls: expected {urls:?}, got {got:?}")
    })?;
    check(st["asset_url"] == urls[0].as_str(), || {
        format!("asset_url is not the first output: {st}")
    })?;
    let distinct: BTreeSet<&String> = got.iter().collect();
    check(distinct.len() == t.n, || {
        format!("asset_urls not distinct: {got:?}")
    })?;

    let rows = wait_rows_terminal(ctx, t)?;
    let mut row_urls = BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        check(row["status"] == "complete", || {
            format!("row {i} not complete: {row}")
        })?;
        check(row["metadata"]["index"] == i as u64, || {
            format!("row indexes are not 0..{}: {rows:?}", t.n)
        })?;
        check(row["asset_url"] == urls[i].as_str(), || {
            format!("row {i} asset_url: expected {}, got {row}", urls[i])
        })?;
        check(row["metadata"].get("error").is_none(), || {
            format!("row {i} carries an error: {row}")
        })?;
        check(row["user_id"] == ctx.owner_id(&ctx.alice).as_str(), || {
            format!("row {i} user_id: {row}")
        })?;
        check(
            row["prompt"] == t.prompt.as_str() && row["style"] == STYLE,
            || format!("row {i} prompt/style: {row}"),
        )?;
        row_urls.insert(row["asset_url"].to_string());
    }
    check(row_urls.len() == t.n, || {
        format!("row URLs not distinct: {rows:?}")
    })?;

    let names = list_objects(ctx, t)?;
    check(names == expected_names(t.n), || {
        format!(
            "objects under concepts/{}/: expected {:?}, got {names:?}",
            t.id,
            expected_names(t.n)
        )
    })?;
    let sent = t.sent_prompt();
    let mut seen = BTreeSet::new();
    for (i, url) in urls.iter().enumerate() {
        let (code, bytes) = download(ctx, url)?;
        check(code == 200, || {
            format!("public URL {url} (no credentials) answered {code}")
        })?;
        check(
            fake_providers::png_dimensions(&bytes)
                == Some((fake_providers::CONCEPT_SIZE, fake_providers::CONCEPT_SIZE)),
            || format!("{url} is not the fake's PNG ({} bytes)", bytes.len()),
        )?;
        let expected = fake_providers::concept_png(&sent, i as u32);
        check(bytes == expected, || {
            format!(
                "{url}: {} bytes differ from concept_png({sent:?}, {i}) ({} bytes)",
                bytes.len(),
                expected.len()
            )
        })?;
        seen.insert(bytes);
    }
    check(seen.len() == t.n, || {
        "two outputs have the same bytes".into()
    })
}

/// The whole failure contract: status `failed` with `code` and a message containing `needle`,
/// every row `failed` with the same error in `metadata.error`, no output object.
fn expect_failed(ctx: &Ctx, t: &Task, st: &Value, code: &str, needle: &str) -> CaseResult {
    check(st["status"] == "failed", || {
        with_context(ctx, t, format!("expected failed: {st}")).to_string()
    })?;
    check(st["error"]["code"] == code, || {
        format!("status error code: expected {code}: {st}")
    })?;
    let message = st["error"]["message"].as_str().unwrap_or_default();
    check(message.contains(needle), || {
        format!("status error message should contain {needle:?}: {st}")
    })?;
    check(
        st["asset_url"].is_null() && st["asset_urls"] == json!([]),
        || format!("outputs on a failed step: {st}"),
    )?;
    let rows = wait_rows_terminal(ctx, t)?;
    for (i, row) in rows.iter().enumerate() {
        check(row["status"] == "failed", || {
            format!("row {i} not failed: {row}")
        })?;
        check(
            row["metadata"]["error"]["message"] == message
                && row["metadata"]["error"]["code"] == code,
            || format!("row {i} metadata.error differs from the status error {message:?}: {row}"),
        )?;
        check(row["asset_url"].is_null(), || {
            format!("row {i} has an asset_url: {row}")
        })?;
    }
    let names = list_objects(ctx, t)?;
    check(names.is_empty(), || {
        format!("objects left by a failed step: {names:?}")
    })
}

// ------------------------------------------------------------------------------------ cases

fn three_images(ctx: &Ctx) -> CaseResult {
    let t = new_task(ctx, "c-n3", "", 3)?;
    submit(ctx, &t)?;
    let st = wait_terminal(ctx, &t)?;
    expect_complete(ctx, &t, &st)?;
    let calls = expect_openai_calls(ctx, &t, &[200])?;
    check(calls[0]["prompt"] == t.sent_prompt().as_str(), || {
        format!(
            "the prompt sent to OpenAI should be {:?}: {}",
            t.sent_prompt(),
            calls[0]
        )
    })?;
    // The step in the `steps` list says the same as the top level.
    let all = ctx.status(&ctx.alice, &t.id, "")?.json()?;
    let step = all["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == "concepts"))
        .cloned()
        .unwrap_or(Value::Null);
    check(
        step["status"] == "complete" && step["asset_urls"] == st["asset_urls"],
        || format!("steps[] entry disagrees: {all}"),
    )?;
    // Each output uploaded once.
    let uploads = storage_log(ctx, &t, "POST")?;
    check(uploads.len() == 3, || {
        format!("expected 3 uploads, got {uploads:?}")
    })
}

fn rate_limited_twice(ctx: &Ctx) -> CaseResult {
    let t = new_task(ctx, "c-429", "openai_429=2,retry_after=1", 1)?;
    submit(ctx, &t)?;
    let st = wait_terminal(ctx, &t)?;
    expect_complete(ctx, &t, &st)?;
    let calls = expect_openai_calls(ctx, &t, &[429, 429, 200])?;
    // Retry-After (1 s) is honoured between the calls.
    for pair in calls.windows(2) {
        let gap = pair[1]["at_ms"].as_u64().unwrap_or(0) as i64
            - pair[0]["at_ms"].as_u64().unwrap_or(0) as i64;
        check(gap >= 950, || {
            format!("retried after {gap} ms, before the 1 s Retry-After")
        })?;
    }
    expect_events(ctx, &t, "job.retry", 2)
}

fn server_error_once(ctx: &Ctx) -> CaseResult {
    let t = new_task(ctx, "c-500", "openai_500=1", 1)?;
    submit(ctx, &t)?;
    let st = wait_terminal(ctx, &t)?;
    expect_complete(ctx, &t, &st)?;
    expect_openai_calls(ctx, &t, &[500, 200])?;
    expect_events(ctx, &t, "job.retry", 1)
}

/// The fake's moderation message (tests/fake-providers/src/openai.rs).
const SAFETY: &str = "Your request was rejected by the safety system";

fn moderation_fails(ctx: &Ctx) -> CaseResult {
    let t = new_task(ctx, "c-mod", "moderation", 2)?;
    submit(ctx, &t)?;
    let st = wait_terminal(ctx, &t)?;
    expect_failed(ctx, &t, &st, "content_policy", SAFETY)?;
    expect_openai_calls(ctx, &t, &[400])?;
    // Final at once: no retry, one failure.
    expect_events(ctx, &t, "job.retry", 0)?;
    expect_events(ctx, &t, "job.failed", 1)?;
    let uploads = storage_log(ctx, &t, "POST")?;
    check(uploads.is_empty(), || {
        format!("uploads after a refusal: {uploads:?}")
    })
}

fn invalid_key_fails(ctx: &Ctx) -> CaseResult {
    let t = new_task(ctx, "c-key", "invalid_key", 1)?;
    submit(ctx, &t)?;
    let st = wait_terminal(ctx, &t)?;
    expect_failed(ctx, &t, &st, "provider_auth", "")?;
    expect_openai_calls(ctx, &t, &[401])?;
    expect_events(ctx, &t, "job.retry", 0)?;
    let text = st.to_string();
    let key = &ctx.stack.openai_key;
    let tail = &key[key.len().saturating_sub(4)..];
    check(
        !text.contains(key.as_str()) && !text.contains(&format!("******{tail}")),
        || format!("the status quotes the API key: {text}"),
    )?;
    let rows = ctx.rows("concept_images", &t.id)?;
    check(
        !serde_json::to_string(&rows)
            .unwrap_or_default()
            .contains(&format!("******{tail}")),
        || format!("a row quotes the API key: {rows:?}"),
    )
}

fn storage_5xx_on_upload(ctx: &Ctx) -> CaseResult {
    let t = new_task(ctx, "c-s5xx", "", 2)?;
    let fault =
        json!({"method": "POST", "path_prefix": t.storage_prefix(ctx), "status": 503, "times": 2});
    let r = ctx.request(
        "POST",
        &format!("{}/__fake/storage/faults", ctx.stack.supabase_url),
        &[("content-type", "application/json")],
        Some(fault.to_string().into_bytes()),
    )?;
    check(r.status == 200, || {
        format!("fault rule: {} {}", r.status, r.text)
    })?;
    submit(ctx, &t)?;
    let st = wait_terminal(ctx, &t)?;
    expect_complete(ctx, &t, &st)?;
    expect_openai_calls(ctx, &t, &[200])?;
    let uploads = storage_log(ctx, &t, "POST")?;
    let codes: Vec<u64> = uploads
        .iter()
        .filter_map(|e| e["status"].as_u64())
        .collect();
    check(codes == [503, 503, 200, 200], || {
        format!("uploads: expected 503, 503, 200, 200, got {uploads:?}")
    })?;
    // Retried inside the job (the paid OpenAI call is not repeated), not as a new job.
    expect_events(ctx, &t, "concepts.upload_retry", 2)?;
    expect_events(ctx, &t, "job.retry", 0)
}

/// Row fields that a duplicate delivery must not touch.
fn row_snapshot(rows: &[Value]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            json!({"id": r["id"], "status": r["status"], "asset_url": r["asset_url"],
                   "updated_at": r["updated_at"], "metadata": r["metadata"]})
        })
        .collect()
}

/// Forced duplicate deliveries need the test hook, which only a worker with `AUTH_MODE=none`
/// honours: these cases run on the suite's hooks worker.
fn duplicate_after_completion(ctx: &Ctx) -> CaseResult {
    ctx.on_hooks_worker(|| duplicate_after_completion_on(ctx))
}

fn duplicate_after_completion_on(ctx: &Ctx) -> CaseResult {
    let t = new_task(ctx, "c-dup-done", "", 2)?;
    submit(ctx, &t)?;
    let st = wait_terminal(ctx, &t)?;
    expect_complete(ctx, &t, &st)?;
    let before = row_snapshot(&wait_rows_terminal(ctx, &t)?);
    let uploads_before = storage_log(ctx, &t, "POST")?.len();
    let received_before = ctx.jobs_received(&t.id).len();
    let skipped_before = events_named(ctx, &t, "job.skipped").len();

    enqueue_duplicate(ctx, &t, 1)?;
    ctx.wait_for(
        Duration::from_secs(30),
        "the duplicate to be handled",
        || {
            // Skipped (right), or run again (wrong: caught below with a clear message).
            let skipped = events_named(ctx, &t, "job.skipped").len() > skipped_before;
            let called_again = openai_calls(ctx, &t)?.len() > 1;
            Ok(
                (ctx.jobs_received(&t.id).len() > received_before && (skipped || called_again))
                    .then_some(()),
            )
        },
    )
    .map_err(|e| Failed::from(with_context(ctx, &t, text(&e))))?;
    // Let whatever the duplicate would write land before looking.
    std::thread::sleep(Duration::from_millis(1500));

    expect_openai_calls(ctx, &t, &[200])?;
    let after = row_snapshot(&sorted_by_index(ctx.rows("concept_images", &t.id)?));
    check(after == before, || {
        format!("rows changed by the duplicate:\nbefore {before:?}\nafter  {after:?}")
    })?;
    let uploads_after = storage_log(ctx, &t, "POST")?.len();
    check(uploads_after == uploads_before, || {
        format!("the duplicate uploaded again: {uploads_before} → {uploads_after} uploads")
    })?;
    check(list_objects(ctx, &t)? == expected_names(2), || {
        "objects changed".into()
    })?;
    let again = status(ctx, &t)?;
    check(
        again["status"] == "complete" && again["asset_urls"] == st["asset_urls"],
        || format!("status changed by the duplicate: {again}"),
    )?;
    expect_events(ctx, &t, "job.skipped", skipped_before + 1)
}

fn duplicate_while_running(ctx: &Ctx) -> CaseResult {
    ctx.on_hooks_worker(|| duplicate_while_running_on(ctx))
}

fn duplicate_while_running_on(ctx: &Ctx) -> CaseResult {
    // The OpenAI call takes 4 s, so the job is still running when the duplicates arrive.
    let t = new_task(ctx, "c-dup-run", "openai_delay_ms=4000", 2)?;
    submit(ctx, &t)?;
    // One duplicate right after the submit (likely in the same batch as the original) …
    enqueue_duplicate(ctx, &t, 1)?;
    // … and one once the original is running (a separate batch, concurrent with it).
    ctx.wait_for(Duration::from_secs(20), "the job to start", || {
        let running = status(ctx, &t)?["status"] == "processing";
        Ok(running.then_some(()))
    })
    .map_err(|e| Failed::from(with_context(ctx, &t, text(&e))))?;
    enqueue_duplicate(ctx, &t, 1)?;
    let st = wait_terminal(ctx, &t)?;
    expect_complete(ctx, &t, &st)?;
    ctx.wait_for(Duration::from_secs(30), "all three deliveries", || {
        Ok((ctx.jobs_received(&t.id).len() >= 3).then_some(()))
    })
    .map_err(|e| Failed::from(with_context(ctx, &t, text(&e))))?;
    std::thread::sleep(Duration::from_millis(1500));

    expect_openai_calls(ctx, &t, &[200])?;
    let received = ctx.jobs_received(&t.id).len();
    let skipped = events_named(ctx, &t, "job.skipped");
    // Under `wrangler dev` one queue's batches are delivered one at a time, so both duplicates
    // are seen after the original finished (`Terminal`); in production a concurrent delivery
    // meets the live claim (`AlreadyClaimed`). Either is a skip.
    let reasons: Vec<&str> = skipped
        .iter()
        .filter_map(|v| v["outcome"].as_str())
        .collect();
    eprintln!(
        "concepts: duplicate deliveries of {} skipped as {reasons:?}",
        t.id
    );
    check(received == 3 && skipped.len() == 2, || {
        with_context(
            ctx,
            &t,
            format!(
                "expected 3 deliveries, 2 skipped; got {received} and {}",
                skipped.len()
            ),
        )
    })?;
    let rows = ctx.rows("concept_images", &t.id)?;
    check(rows.len() == 2, || format!("rows duplicated: {rows:?}"))?;
    let uploads = storage_log(ctx, &t, "POST")?;
    check(uploads.len() == 2, || {
        format!("expected 2 uploads (one per image), got {uploads:?}")
    })?;
    check(list_objects(ctx, &t)? == expected_names(2), || {
        "objects duplicated".into()
    })
}

fn row_ids(rows: &[Value]) -> BTreeSet<String> {
    rows.iter().map(|r| r["id"].to_string()).collect()
}

fn resubmit_after_failure(ctx: &Ctx) -> CaseResult {
    let t = new_task(ctx, "c-resub", "moderation", 2)?;
    submit(ctx, &t)?;
    let st = wait_terminal(ctx, &t)?;
    expect_failed(ctx, &t, &st, "content_policy", SAFETY)?;
    let first = wait_rows_terminal(ctx, &t)?;
    let ids = row_ids(&first);
    check(ids.len() == 2, || format!("rows: {first:?}"))?;

    // The second attempt takes ≥ 3 s at the fake (then is refused again), so its
    // pending/processing phase is observable.
    let fakes = ctx
        .stack
        .fakes()
        .ok_or("the stack runs no provider fakes")?;
    fakes.add_directive(&t.nonce, "openai_delay_ms=3000")?;

    // The same body again: a new attempt (202), not the idempotent 200.
    submit(ctx, &t)?;
    let rows = sorted_by_index(ctx.rows("concept_images", &t.id)?);
    check(row_ids(&rows) == ids, || {
        format!("row ids changed: before {first:?}\nafter {rows:?}")
    })?;
    for (i, row) in rows.iter().enumerate() {
        check(
            row["status"] == "pending" || row["status"] == "processing",
            || format!("row {i} not back to pending/processing: {row}"),
        )?;
        check(row["metadata"]["attempt"] == 2, || {
            format!("row {i} attempt: {row}")
        })?;
        check(
            row["metadata"].get("error").is_none() && row["asset_url"].is_null(),
            || format!("row {i} still carries the old error: {row}"),
        )?;
    }
    let again = status(ctx, &t)?;
    check(
        (again["status"] == "pending" || again["status"] == "processing")
            && again["error"].is_null(),
        || format!("status after resubmit: {again}"),
    )?;
    ctx.wait_for(Duration::from_secs(20), "the new attempt to run", || {
        Ok((status(ctx, &t)?["status"] == "processing").then_some(()))
    })?;

    // It is refused again: failed, attempt 2, same rows, two OpenAI calls in all.
    let st = wait_terminal(ctx, &t)?;
    expect_failed(ctx, &t, &st, "content_policy", SAFETY)?;
    let last = wait_rows_terminal(ctx, &t)?;
    check(row_ids(&last) == ids, || {
        format!("row ids changed: {last:?}")
    })?;
    check(last.iter().all(|r| r["metadata"]["attempt"] == 2), || {
        format!("rows not on attempt 2: {last:?}")
    })?;
    expect_openai_calls(ctx, &t, &[400, 400])?;
    Ok(())
}

/// P9 finding 7: a failed n = 3 step resubmitted with n = 1, another prompt and another style.
/// The task's rows are then exactly the new attempt's: one row, with the new prompt and style
/// and attempt 2; the two rows beyond the new n are gone (deleted while `failed`).
fn resubmit_smaller_with_another_body(ctx: &Ctx) -> CaseResult {
    let t = new_task(ctx, "c-resub-n", "moderation", 3)?;
    submit(ctx, &t)?;
    let st = wait_terminal(ctx, &t)?;
    expect_failed(ctx, &t, &st, "content_policy", SAFETY)?;
    let first = wait_rows_terminal(ctx, &t)?;
    check(first.len() == 3, || format!("rows: {first:?}"))?;

    // Another body: no fault directive, n = 1, another prompt and style.
    let prompt = format!("a blue lamp [[fake:nonce={}]]", t.nonce);
    let mut body = t.body.clone();
    body["prompt"] = json!(prompt);
    body["style"] = json!("ink");
    body["n"] = json!(1);
    let second = Task {
        id: t.id.clone(),
        nonce: t.nonce.clone(),
        prompt: prompt.clone(),
        body,
        n: 1,
    };
    submit(ctx, &second)?;
    let st = wait_terminal(ctx, &second)?;
    check(st["status"] == "complete", || {
        with_context(ctx, &second, format!("expected complete: {st}")).to_string()
    })?;
    check(st["asset_urls"].as_array().map(Vec::len) == Some(1), || {
        format!("one image expected: {st}")
    })?;
    let rows = wait_rows_terminal(ctx, &second)?;
    check(rows.len() == 1, || format!("stale rows remain: {rows:?}"))?;
    let row = &rows[0];
    check(row["id"] == first[0]["id"], || {
        format!("row 0 changed id: before {}, after {row}", first[0])
    })?;
    check(
        row["status"] == "complete"
            && row["prompt"] == prompt.as_str()
            && row["style"] == "ink"
            && row["asset_url"] == second.public_url(ctx, 0).as_str(),
        || format!("row 0 does not carry the new attempt: {row}"),
    )?;
    check(
        row["metadata"]["attempt"] == 2
            && row["metadata"]["n"] == 1
            && row["metadata"]["index"] == 0
            && row["metadata"].get("error").is_none(),
        || format!("row 0 metadata: {row}"),
    )?;
    expect_openai_calls(ctx, &second, &[400, 200])?;
    Ok(())
}
