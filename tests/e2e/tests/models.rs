//! Tripo steps end to end (issue P5): run job (inputs uploaded to Tripo, task created with only
//! documented fields), polling from the task DO's alarm, finalize (model streamed into Storage),
//! faults, poll budget, bounded memory on a 300 MB model, duplicate deliveries and a restart of
//! `wrangler dev` while a task is processing.
//!
//! Every case uses its own task ids and a `nonce` in its Tripo directives, so cases running in
//! parallel never share fake counters or log entries. Long tasks run concurrently inside a case.
//! Cases that need their own worker (restart, memory, duplicate deliveries) start one on the
//! suite's stack, reusing the suite's build (`worker-build --version` as the build command).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{free_port, group_rss_bytes, WorkerOptions, WorkerProcess};
use fake_providers::{glb_bytes_len, glb_chunk, model_seed, Fakes, DEFAULT_GLB_BYTES};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use crate::support::{check, png, Case, CaseResult, Ctx, User};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        // Longest first: the harness runs as many trials at once as there are cores.
        (
            "models::a_60s_task_is_polled_at_most_15_times_and_the_deadline_fails_a_late_one",
            polls_per_long_task_and_deadline,
        ),
        (
            "models::restart_of_wrangler_dev_while_processing_still_completes",
            restart_while_processing,
        ),
        (
            "models::every_kind_completes_byte_identical_with_documented_fields",
            every_kind_completes,
        ),
        ("models::faults_wait_retry_or_fail_with_the_reason", faults),
        (
            "models::a_300mb_model_is_streamed_with_bounded_memory",
            large_model_bounded_memory,
        ),
        ("models::progress_rises_while_tripo_runs", progress_rises),
        (
            "models::the_tripo_gate_runs_25_jobs_within_10_tasks_and_shows_their_place",
            tripo_gate,
        ),
        (
            "models::duplicate_deliveries_create_one_tripo_task",
            duplicate_deliveries,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

pub(crate) fn fakes(ctx: &Ctx) -> Result<&Fakes, Failed> {
    ctx.stack
        .fakes()
        .ok_or_else(|| Failed::from("the stack runs no provider fakes"))
}

pub(crate) fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Where the worker under test answers: the suite's, or one of a case's own.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) base: String,
}

impl Target {
    fn suite(ctx: &Ctx) -> Target {
        Target {
            base: ctx.base.clone(),
        }
    }

    pub(crate) fn of(w: &WorkerProcess) -> Target {
        Target {
            base: w.base_url.clone(),
        }
    }

    pub(crate) fn generate(
        &self,
        ctx: &Ctx,
        user: &User,
        endpoint: &str,
        body: &Value,
    ) -> Result<Value, Failed> {
        let auth = format!("Bearer {}", user.token);
        let r = ctx.request(
            "POST",
            &format!("{}/generate/{endpoint}", self.base),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body.to_string().into_bytes()),
        )?;
        check(r.status == 202, || {
            format!("{endpoint}: expected 202, got {} {}", r.status, r.text)
        })?;
        r.json()
    }

    pub(crate) fn status(
        &self,
        ctx: &Ctx,
        user: &User,
        task: &str,
        step: &str,
    ) -> Result<Value, Failed> {
        let auth = format!("Bearer {}", user.token);
        let r = ctx.request(
            "GET",
            &format!("{}/tasks/{task}/status?step={step}", self.base),
            &[("authorization", &auth)],
            None,
        )?;
        check(r.status == 200, || {
            format!("status of {task}: {} {}", r.status, r.text)
        })?;
        r.json()
    }

    /// Waits until the step is `complete` or `failed`; its status view.
    pub(crate) fn wait_done(
        &self,
        ctx: &Ctx,
        user: &User,
        task: &str,
        step: &str,
        limit: Duration,
    ) -> Result<Value, Failed> {
        let mut last = Value::Null;
        let r = ctx.wait_for(limit, &format!("{task}/{step} to finish"), || {
            let v = self.status(ctx, user, task, step)?;
            let done = v["status"] == "complete" || v["status"] == "failed";
            last = v.clone();
            Ok(done.then_some(v))
        });
        r.map_err(|e| format!("{e:?}; last status: {last}").into())
    }

    fn enqueue(&self, ctx: &Ctx, msg: &Value) -> CaseResult {
        let r = ctx.request(
            "POST",
            &format!("{}/__test/enqueue", self.base),
            &[("content-type", "application/json")],
            Some(msg.to_string().into_bytes()),
        )?;
        check(r.status == 202, || {
            format!("__test/enqueue: {} {}", r.status, r.text)
        })
    }
}

/// A `wrangler dev` of its own on the suite's stack, reusing the suite's build; `extra`
/// settings replace the stack's. `persist_to`/`port` fixed for a restart on the same state.
pub(crate) fn own_worker(
    ctx: &Ctx,
    persist_to: Option<PathBuf>,
    port: Option<u16>,
    extra: &[(&str, &str)],
) -> Result<WorkerProcess, Failed> {
    let mut settings: Vec<(String, String)> = ctx
        .stack
        .worker_vars()
        .into_iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for (k, v) in extra {
        settings.push(((*k).into(), (*v).into()));
    }
    WorkerProcess::start(WorkerOptions {
        settings,
        // The suite's worker built `build/` already; rebuilding it under a running
        // `wrangler dev` would make that one reload. `worker-build --version` only prints.
        build_profile: "--version".into(),
        persist_to,
        port,
    })
    .map_err(|e| format!("could not start a worker: {e}").into())
}

/// Streams `{bucket}/{path}` out of Storage (service key) and compares it with the fake's model
/// `(seed, size)` byte for byte; the number of bytes compared.
pub(crate) fn stored_equals_glb(
    ctx: &Ctx,
    path: &str,
    seed: &str,
    size: u64,
) -> Result<u64, Failed> {
    let url = format!(
        "{}/storage/v1/object/{}/{path}",
        ctx.stack.supabase_url, ctx.stack.bucket
    );
    let want_len = glb_bytes_len(size);
    ctx.rt.block_on(async {
        let mut resp = ctx
            .http
            .get(&url)
            .header("apikey", &ctx.stack.service_key)
            .bearer_auth(&ctx.stack.service_key)
            .send()
            .await
            .map_err(|e| format!("download {path}: {e}"))?;
        if resp.status().as_u16() != 200 {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("download {path}: {status} {text}").into());
        }
        let mut offset = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("download {path}: {e}"))?
        {
            let want = glb_chunk(seed, size, offset, chunk.len());
            if want.as_slice() != &chunk[..] {
                let at = want
                    .iter()
                    .zip(chunk.iter())
                    .position(|(a, b)| a != b)
                    .map_or(want.len(), |p| p);
                return Err(format!(
                    "{path}: differs from the fake's model at byte {}",
                    offset + at as u64
                )
                .into());
            }
            offset += chunk.len() as u64;
        }
        if offset != want_len {
            return Err(format!("{path}: {offset} bytes stored, {want_len} expected").into());
        }
        Ok(offset)
    })
}

/// The fake's log entries of POST /task that carry `nonce`.
fn creates(ctx: &Ctx, nonce: &str) -> Result<Vec<Value>, Failed> {
    Ok(fakes(ctx)?
        .log(Some(nonce))
        .into_iter()
        .filter(|e| e["method"] == "POST" && e["path"] == "/v2/openapi/task")
        .collect())
}

/// `GET /task/{id}` entries of the fake's log for one Tripo task.
fn polls_of(ctx: &Ctx, tripo_id: &str) -> Result<Vec<Value>, Failed> {
    let path = format!("/v2/openapi/task/{tripo_id}");
    Ok(fakes(ctx)?
        .log(Some(tripo_id))
        .into_iter()
        .filter(|e| e["method"] == "GET" && e["path"] == path.as_str())
        .collect())
}

/// Tripo's documented `style` presets (providers.md §1.5.1); any other style is free text.
const STYLE_PRESETS: [&str; 8] = [
    "person:person2cartoon",
    "animal:venom",
    "object:clay",
    "object:steampunk",
    "object:christmas",
    "object:barbie",
    "gold",
    "ancient_bronze",
];

/// Documented fields of each Tripo task type (providers.md §1.5) that this service may send.
fn documented(kind: &str) -> &'static [&'static str] {
    match kind {
        "text_to_model" => &[
            "type",
            "prompt",
            "model_version",
            "texture",
            "pbr",
            "texture_quality",
            "face_limit",
            "auto_size",
            "style",
        ],
        "image_to_model" => &[
            "type",
            "file",
            "orientation",
            "model_version",
            "texture",
            "pbr",
            "texture_quality",
            "face_limit",
            "auto_size",
            "style",
        ],
        "multiview_to_model" => &[
            "type",
            "files",
            "orientation",
            "model_version",
            "texture",
            "pbr",
            "texture_quality",
            "face_limit",
            "auto_size",
            "style",
        ],
        "refine_model" => &["type", "draft_model_task_id"],
        _ => &[],
    }
}

/// Every logged create body is of `kind`, has only documented fields, no `task_id`, and no
/// free-text `style`.
fn check_create_bodies(entries: &[Value], kind: &str) -> CaseResult {
    check(!entries.is_empty(), || format!("no {kind} create logged"))?;
    for e in entries {
        let body = &e["body"];
        let obj = body
            .as_object()
            .ok_or_else(|| Failed::from(format!("create body is not an object: {e}")))?;
        check(body["type"] == kind, || format!("expected {kind}: {body}"))?;
        for key in obj.keys() {
            check(documented(kind).contains(&key.as_str()), || {
                format!("undocumented field `{key}` sent to Tripo: {body}")
            })?;
        }
        check(obj.get("task_id").is_none(), || {
            format!("task_id leaked: {body}")
        })?;
        if let Some(style) = obj.get("style") {
            check(
                style.as_str().is_some_and(|s| STYLE_PRESETS.contains(&s)),
                || format!("free-text style leaked: {body}"),
            )?;
        }
    }
    Ok(())
}

/// The row of a step, checked `complete` with its URL and Tripo id.
pub(crate) fn check_complete_row(
    ctx: &Ctx,
    task: &str,
    step: &str,
    status: &Value,
    tripo_id: &str,
) -> CaseResult {
    let rows = ctx.rows("models", task)?;
    let row = rows
        .iter()
        .find(|r| r["metadata"]["step"] == step)
        .ok_or_else(|| Failed::from(format!("no {step} row for {task}: {rows:?}")))?;
    check(row["status"] == "complete", || {
        format!("row not complete: {row}")
    })?;
    check(
        row["asset_url"] == status["asset_url"] && row["asset_url"].is_string(),
        || {
            format!(
                "row URL {} vs status {}",
                row["asset_url"], status["asset_url"]
            )
        },
    )?;
    check(row["ai_service_task_id"] == tripo_id, || {
        format!("row Tripo id {} vs {tripo_id}", row["ai_service_task_id"])
    })
}

/// The Tripo id of a step, from the create the fake logged for `nonce` (the successful one).
fn tripo_id_of(ctx: &Ctx, nonce: &str) -> Result<String, Failed> {
    let ok: Vec<Value> = creates(ctx, nonce)?
        .into_iter()
        .filter(|e| e["status"] == 200)
        .collect();
    check(ok.len() == 1, || {
        format!(
            "expected one successful create for {nonce}, got {}: {ok:?}",
            ok.len()
        )
    })?;
    ok[0]["tripo_task_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "create without a task id".into())
}

/// Checks a finished step end to end: complete, bytes in Storage, row, one Tripo task.
fn check_done(
    ctx: &Ctx,
    task: &str,
    step: &str,
    status: &Value,
    nonce: &str,
    glb_size: u64,
) -> Result<String, Failed> {
    check(
        status["status"] == "complete" && status["progress"] == 100,
        || format!("{task}/{step} did not complete: {status}"),
    )?;
    let tripo_id = tripo_id_of(ctx, nonce)?;
    let file = if step == "refine" {
        "refined_model.glb"
    } else {
        "model.glb"
    };
    let path = format!("models/{task}/{file}");
    check(
        status["asset_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/{}/{path}", ctx.stack.bucket))),
        || format!("asset_url: {status}"),
    )?;
    stored_equals_glb(ctx, &path, &model_seed(&tripo_id, "pbr_model"), glb_size)?;
    check_complete_row(ctx, task, step, status, &tripo_id)?;
    Ok(tripo_id)
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

fn every_kind_completes(ctx: &Ctx) -> CaseResult {
    let t = Target::suite(ctx);
    let user = &ctx.alice;
    let upload = |name: &str, n: &str| {
        ctx.upload_input(
            user,
            &format!("{}/{name}-{n}.png", ctx.run),
            "image/png",
            png(&format!("[[fake:nonce={n}]]")),
        )
    };
    // (task, endpoint, body, nonce, expected Tripo type)
    let mut runs: Vec<(String, Value, String, &str)> = Vec::new();
    let n = nonce();
    let task = ctx.task_id("m-text");
    let body = json!({"task_id": task, "prompt": format!("a small cat [[fake:nonce={n}]]"),
                      "style": "watercolor", "texture_quality": "detailed", "face_limit": 20000});
    t.generate(ctx, user, "text-to-model", &body)?;
    runs.push((task, body, n, "text_to_model"));
    let n = nonce();
    let task = ctx.task_id("m-img1");
    let body = json!({"task_id": task, "input_image_asset_urls": [upload("front", &n)?],
                      "orientation": "align_image", "prompt": "stored only", "style": "object:clay"});
    t.generate(ctx, user, "image-to-model", &body)?;
    runs.push((task, body, n, "image_to_model"));
    for views in [2usize, 4] {
        let n = nonce();
        let task = ctx.task_id(&format!("m-mv{views}"));
        let names = ["front", "left", "back", "right"];
        let mut urls = Vec::new();
        for name in &names[..views] {
            urls.push(upload(name, &n)?);
        }
        let body = json!({"task_id": task, "input_image_asset_urls": urls, "model_version": "v2.5-20250123"});
        t.generate(ctx, user, "image-to-model", &body)?;
        runs.push((task, body, n, "multiview_to_model"));
    }
    let n = nonce();
    let task = ctx.task_id("m-sketch");
    let body =
        json!({"task_id": task, "input_sketch_asset_url": upload("sketch", &n)?, "pbr": true});
    t.generate(ctx, user, "sketch-to-model", &body)?;
    runs.push((task, body, n, "image_to_model"));

    let mut text_tripo_id = String::new();
    for (task, body, n, kind) in &runs {
        let status = t.wait_done(ctx, user, task, "model", Duration::from_secs(90))?;
        let tripo_id = check_done(ctx, task, "model", &status, n, DEFAULT_GLB_BYTES)?;
        let created = creates(ctx, n)?;
        check_create_bodies(&created, kind)?;
        let sent = &created[0]["body"];
        match *kind {
            "text_to_model" => {
                text_tripo_id = tripo_id.clone();
                check(
                    sent["prompt"].as_str().is_some_and(|p| {
                        p.starts_with("a small cat") && p.ends_with(", watercolor")
                    }),
                    || format!("prompt: {sent}"),
                )?;
                check(
                    sent["texture_quality"] == "detailed" && sent["face_limit"] == 20000,
                    || format!("options: {sent}"),
                )?;
            }
            "image_to_model" => {
                check(
                    sent["file"]["type"] == "png" && sent["file"]["file_token"].is_string(),
                    || format!("file: {sent}"),
                )?;
                check(sent.get("prompt").is_none(), || {
                    format!("prompt sent: {sent}")
                })?;
            }
            _ => {
                let files = sent["files"].as_array().cloned().unwrap_or_default();
                let views = body["input_image_asset_urls"]
                    .as_array()
                    .map_or(0, Vec::len);
                check(files.len() == 4, || format!("files: {sent}"))?;
                for (i, f) in files.iter().enumerate() {
                    let ok = if i < views {
                        f["file_token"].is_string()
                    } else {
                        f.as_object().is_some_and(|o| o.is_empty())
                    };
                    check(ok, || format!("slot {i} of {views} views: {sent}"))?;
                }
            }
        }
        // Private inputs went to Tripo as uploads, never as URLs.
        let uploads = fakes(ctx)?
            .log(Some(n))
            .into_iter()
            .filter(|e| e["path"] == "/v2/openapi/upload/sts" && e["status"] == 200)
            .count();
        let want = body["input_image_asset_urls"].as_array().map_or(
            usize::from(body.get("input_sketch_asset_url").is_some()),
            Vec::len,
        );
        check(uploads == want, || {
            format!("{task}: {uploads} uploads for {want} inputs")
        })?;
        check(!sent.to_string().contains("/storage/v1/"), || {
            format!("a Storage URL was sent to Tripo: {sent}")
        })?;
    }

    // Refine the text draft under the same task id, with the draft's Tripo id from its row.
    let (task, _, n, _) = &runs[0];
    let rows = ctx.rows("models", task)?;
    let draft = rows[0]["ai_service_task_id"].as_str().unwrap_or_default();
    check(draft == text_tripo_id, || format!("row Tripo id {draft}"))?;
    t.generate(
        ctx,
        user,
        "refine-model",
        &json!({"task_id": task, "tripo_draft_task_id": draft, "prompt": "more detail"}),
    )?;
    let status = t.wait_done(ctx, user, task, "refine", Duration::from_secs(90))?;
    check(status["status"] == "complete", || {
        format!("refine: {status}")
    })?;
    let refines: Vec<Value> = creates(ctx, n)?
        .into_iter()
        .filter(|e| e["body"]["type"] == "refine_model")
        .collect();
    check_create_bodies(&refines, "refine_model")?;
    check(
        refines
            .iter()
            .all(|e| e["body"]["draft_model_task_id"] == draft),
        || format!("refine bodies: {refines:?}"),
    )?;
    let refine_id = refines
        .iter()
        .find(|e| e["status"] == 200)
        .and_then(|e| e["tripo_task_id"].as_str())
        .ok_or_else(|| Failed::from("no successful refine create"))?
        .to_string();
    let path = format!("models/{task}/refined_model.glb");
    stored_equals_glb(
        ctx,
        &path,
        &model_seed(&refine_id, "pbr_model"),
        DEFAULT_GLB_BYTES,
    )?;
    check_complete_row(ctx, task, "refine", &status, &refine_id)
}

fn progress_rises(ctx: &Ctx) -> CaseResult {
    let t = Target::suite(ctx);
    let n = nonce();
    let task = ctx.task_id("m-progress");
    t.generate(
        ctx,
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": format!("a kettle [[fake:run_s=8,nonce={n}]]")}),
    )?;
    let mut seen: Vec<u64> = Vec::new();
    let start = Instant::now();
    let last = loop {
        let v = t.status(ctx, &ctx.alice, &task, "model")?;
        let p = v["progress"].as_u64().unwrap_or(0);
        if seen.last() != Some(&p) {
            seen.push(p);
        }
        if v["status"] == "complete" || v["status"] == "failed" {
            break v;
        }
        check(start.elapsed() < Duration::from_secs(60), || {
            format!("no end after 60 s; progress {seen:?}")
        })?;
        std::thread::sleep(Duration::from_millis(300));
    };
    check_done(ctx, &task, "model", &last, &n, DEFAULT_GLB_BYTES)?;
    check(seen.windows(2).all(|w| w[0] < w[1]), || {
        format!("progress went backwards: {seen:?}")
    })?;
    let between: Vec<&u64> = seen.iter().filter(|p| **p > 0 && **p < 100).collect();
    check(between.len() >= 3 && seen.last() == Some(&100), || {
        format!("expected at least three values between 0 and 100, then 100: {seen:?}")
    })?;
    eprintln!("e2e: models: progress seen {seen:?}");
    Ok(())
}

/// SPEC §11 "Limits": 25 model jobs at once on a worker with its own Tripo key (a bucket of its
/// own at the fake, which refuses an 11th running task with 2000) and the gate at 10: Tripo never
/// refuses a create, every job completes, and a waiting step shows its place going down. The
/// fake answers each create 2 s after it arrives: a queue batch's run messages go together, so
/// several creates are under way at once (run one after another, a batch's never overlap).
fn tripo_gate(ctx: &Ctx) -> CaseResult {
    let key = format!("tsk_gate_{}", nonce());
    fakes(ctx)?.add_key(&key);
    let w = own_worker(
        ctx,
        None,
        None,
        &[
            ("TRIPO_API_KEY", key.as_str()),
            ("TRIPO_MAX_CONCURRENT_TASKS", "10"),
        ],
    )?;
    let t = Target::of(&w);
    let n = nonce();
    let tasks: Vec<String> = (0..25)
        .map(|i| ctx.task_id(&format!("m-gate{i}")))
        .collect();
    for task in &tasks {
        t.generate(
            ctx,
            &ctx.alice,
            "text-to-model",
            &json!({"task_id": task, "prompt": format!("a stool [[fake:run_s=6,slow_ms=2000,nonce={n}]]")}),
        )?;
    }
    let mut places: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let start = Instant::now();
    loop {
        let mut open = 0;
        for task in &tasks {
            let v = t.status(ctx, &ctx.alice, task, "model")?;
            if let Some(p) = v["queue_position"].as_u64() {
                check(v["status"] == "pending", || {
                    format!("{task}: queue_position on a {} step", v["status"])
                })?;
                let seen = places.entry(task.clone()).or_default();
                if seen.last() != Some(&p) {
                    seen.push(p);
                }
            }
            if v["status"] != "complete" && v["status"] != "failed" {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        check(start.elapsed() < Duration::from_secs(180), || {
            format!("{open} of 25 still open after 180 s")
        })?;
        std::thread::sleep(Duration::from_millis(500));
    }
    for task in &tasks {
        let v = t.status(ctx, &ctx.alice, task, "model")?;
        check(v["status"] == "complete", || format!("{task}: {v}"))?;
    }
    let all = creates(ctx, &n)?;
    let refused = all.iter().filter(|e| e["status"] != 200).count();
    check(all.len() == 25 && refused == 0, || {
        let codes: Vec<&Value> = all.iter().map(|e| &e["status"]).collect();
        format!("{} creates, {refused} refused: {codes:?}", all.len())
    })?;
    // Most creates under way at one time (each from its arrival to its answer).
    let spans: Vec<(u64, u64)> = all
        .iter()
        .filter_map(|e| {
            let at = e["at_ms"].as_u64()?;
            Some((at, at + e["duration_ms"].as_u64()?))
        })
        .collect();
    let together = spans
        .iter()
        .map(|(t, _)| spans.iter().filter(|(a, b)| a <= t && t < b).count())
        .max()
        .unwrap_or(0);
    check(together >= 5, || {
        format!("at most {together} creates were under way at once: {spans:?}")
    })?;
    check(places.len() >= 10, || {
        format!("only {} steps were seen waiting: {places:?}", places.len())
    })?;
    check(
        places.values().all(|p| p.windows(2).all(|w| w[1] < w[0])),
        || format!("a place in line went up: {places:?}"),
    )?;
    check(places.values().any(|p| p.len() >= 2), || {
        format!("no waiting step was seen moving up the line: {places:?}")
    })?;
    eprintln!(
        "e2e: models: gate: 25 jobs in {:.1} s, at most {together} creates at once, places seen {places:?}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn polls_per_long_task_and_deadline(ctx: &Ctx) -> CaseResult {
    let t = Target::suite(ctx);
    let n = nonce();
    let task = ctx.task_id("m-long");
    let started = Instant::now();
    t.generate(
        ctx,
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": format!("a castle [[fake:run_s=60,nonce={n}]]")}),
    )?;
    // Meanwhile, on a worker whose deadline is the shortest allowed (60 s), a task that would
    // take 10 minutes fails as timed out.
    let short = own_worker(ctx, None, None, &[("TRIPO_DEADLINE_SECONDS", "60")])?;
    let st = Target::of(&short);
    let late_n = nonce();
    let late = ctx.task_id("m-deadline");
    st.generate(
        ctx,
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": late, "prompt": format!("a tower [[fake:run_s=600,nonce={late_n}]]")}),
    )?;
    let status = t.wait_done(ctx, &ctx.alice, &task, "model", Duration::from_secs(150))?;
    let timed_out = st.wait_done(ctx, &ctx.alice, &late, "model", Duration::from_secs(120))?;
    check(
        timed_out["status"] == "failed"
            && timed_out["error"]["code"] == "provider_timeout"
            && timed_out["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("timed out")),
        || format!("deadline: {timed_out}"),
    )?;
    let rows = ctx.rows("models", &late)?;
    check(
        rows.len() == 1
            && rows[0]["status"] == "failed"
            && rows[0]["metadata"]["error"]["code"] == "provider_timeout",
        || format!("deadline row: {rows:?}"),
    )?;
    let late_polls = polls_of(ctx, &tripo_id_of(ctx, &late_n)?)?.len();
    eprintln!(
        "e2e: models: deadline 60 s: failed with {} after {late_polls} polls",
        timed_out["error"]
    );
    let tripo_id = check_done(ctx, &task, "model", &status, &n, DEFAULT_GLB_BYTES)?;
    let polls = polls_of(ctx, &tripo_id)?;
    eprintln!(
        "e2e: models: a 60 s Tripo task took {} GET /task/{{id}} (polls + finalize), done in {:.1} s",
        polls.len(),
        started.elapsed().as_secs_f64()
    );
    check(polls.len() <= 15, || {
        format!("{} polls of a 60 s task: {polls:?}", polls.len())
    })
}

fn faults(ctx: &Ctx) -> CaseResult {
    let t = Target::suite(ctx);
    let user = &ctx.alice;
    // (label, directive, expected status, expected error code, text in the reason)
    let table: [(&str, &str, &str, &str, &str); 9] = [
        ("c2000", "create_2000=2,retry_after=2", "complete", "", ""),
        // A create whose answer is lost (a 5xx) may have created a task: one more create,
        // logged as uncertain; a second loss fails the step rather than create a third.
        ("c5xx1", "create_5xx=1", "complete", "", ""),
        (
            "c5xx2",
            "create_5xx=2",
            "failed",
            "provider_unavailable",
            "a third is not attempted",
        ),
        ("poll5xx", "poll_5xx=3", "complete", "", ""),
        (
            "failed",
            "final=failed",
            "failed",
            "provider_failed",
            "the task failed",
        ),
        (
            "banned",
            "final=banned",
            "failed",
            "content_policy",
            "content policy",
        ),
        (
            "expired",
            "final=expired",
            "failed",
            "provider_failed",
            "expired",
        ),
        (
            "moderation",
            "moderation",
            "failed",
            "content_policy",
            "content policy",
        ),
        (
            "credits",
            "no_credits",
            "failed",
            "provider_quota",
            "credit",
        ),
    ];
    let mut runs = Vec::new();
    for (label, directive, ..) in &table {
        let n = nonce();
        let task = ctx.task_id(&format!("m-{label}"));
        let prompt = format!("a chair [[fake:{directive},queue_s=0.5,run_s=1,nonce={n}]]");
        t.generate(
            ctx,
            user,
            "text-to-model",
            &json!({"task_id": task, "prompt": prompt}),
        )?;
        runs.push((task, n));
    }
    let mut problems = Vec::new();
    for ((label, directive, want, code, reason), (task, n)) in table.iter().zip(&runs) {
        let result = (|| -> CaseResult {
            let status = t.wait_done(ctx, user, task, "model", Duration::from_secs(90))?;
            check(status["status"] == *want, || format!("{status}"))?;
            if *want == "complete" {
                check_done(ctx, task, "model", &status, n, DEFAULT_GLB_BYTES)?;
            } else {
                let err = &status["error"];
                check(
                    err["code"] == *code
                        && err["message"].as_str().is_some_and(|m| m.contains(reason)),
                    || format!("error {err}"),
                )?;
                let rows = ctx.rows("models", task)?;
                check(
                    rows.len() == 1
                        && rows[0]["status"] == "failed"
                        && rows[0]["metadata"]["error"]["code"] == err["code"]
                        && rows[0]["metadata"]["error"]["message"] == err["message"],
                    || format!("row: {rows:?}"),
                )?;
            }
            let log = fakes(ctx)?.log(Some(n));
            let count = |path: &str, status: u64| {
                log.iter()
                    .filter(|e| {
                        e["path"].as_str().is_some_and(|p| p.starts_with(path))
                            && e["status"] == status
                    })
                    .count()
            };
            match *label {
                "c2000" => check(
                    count("/v2/openapi/task", 429) == 2 && creates(ctx, n)?.len() == 3,
                    || format!("creates: {:?}", creates(ctx, n)),
                )?,
                "c5xx1" | "c5xx2" => {
                    let uncertain = ctx
                        .worker_events(task)
                        .into_iter()
                        .filter(|v| v["event"] == "provider.create_uncertain")
                        .count();
                    check(creates(ctx, n)?.len() == 2 && uncertain == 1, || {
                        format!(
                            "{} creates, {uncertain} provider.create_uncertain",
                            creates(ctx, n).map(|c| c.len()).unwrap_or(0)
                        )
                    })?
                }
                "poll5xx" => check(count("/v2/openapi/task/", 500) == 3, || {
                    format!("polls: {log:?}")
                })?,
                "moderation" | "credits" => {
                    let made = creates(ctx, n)?;
                    check(made.len() == 1, || {
                        format!("a final create failure was retried: {log:?}")
                    })?;
                    // One line says it all: the delivery, the refused create with Tripo's
                    // trace id (for their support), and the failure (`core::log::Carry`).
                    let lines = ctx.worker_events(task);
                    let failed: Vec<&Value> = lines
                        .iter()
                        .filter(|v| v["event"] == "job.failed")
                        .collect();
                    // Refused content is the caller's doing (a warning); no credits is ours.
                    let level = if *label == "moderation" {
                        "warn"
                    } else {
                        "error"
                    };
                    let ok = failed.len() == 1
                        && failed[0]["level"] == level
                        && failed[0]["delivery"]["kind"] == "run"
                        && failed[0]["calls"].as_array().is_some_and(|c| {
                            c.len() == 1
                                && c[0]["path"] == "/task"
                                && c[0]["status"] == made[0]["status"]
                                && c[0]["trace_id"] == made[0]["request_id"]
                        });
                    check(ok, || format!("job.failed lines: {failed:?}"))?;
                    check(!lines.iter().any(|v| v["event"] == "tripo.call"), || {
                        format!("a carried call was logged on its own too: {lines:?}")
                    })?;
                }
                _ => {}
            }
            Ok(())
        })();
        if let Err(e) = result {
            problems.push(format!("{label} ({directive}): {e:?}"));
        }
    }
    check(problems.is_empty(), || problems.join("\n"))
}

fn large_model_bounded_memory(ctx: &Ctx) -> CaseResult {
    const SIZE: u64 = 300 * 1024 * 1024;
    const LIMIT: u64 = 64 * 1024 * 1024;
    let worker = own_worker(ctx, None, None, &[])?;
    let pgid = worker
        .process_group()
        .ok_or_else(|| Failed::from("no process group"))?;
    let t = Target::of(&worker);
    // Warm up every path first (request, queue consumer, DO, alarm, finalize) with a small
    // model, so that the baseline includes the worker's fixed cost and the growth is the copy's.
    let warm_n = nonce();
    let warm = ctx.task_id("m-warm");
    t.generate(
        ctx,
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": warm, "prompt": format!("a cup [[fake:run_s=1,nonce={warm_n}]]")}),
    )?;
    let warmed = t.wait_done(ctx, &ctx.alice, &warm, "model", Duration::from_secs(60))?;
    check(warmed["status"] == "complete", || {
        format!("warm-up: {warmed}")
    })?;
    let n = nonce();
    let task = ctx.task_id("m-large");
    std::thread::sleep(Duration::from_millis(500));
    let baseline = group_rss_bytes(pgid, Some("workerd"));
    check(baseline > 0, || {
        "no workerd process found in the worker's group".into()
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            let mut samples = 0u32;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(group_rss_bytes(pgid, Some("workerd")));
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (peak, samples)
        })
    };
    let started = Instant::now();
    let result = t
        .generate(
            ctx,
            &ctx.alice,
            "text-to-model",
            &json!({"task_id": task, "prompt": format!("a ship [[fake:glb_bytes={SIZE},run_s=1,nonce={n}]]")}),
        )
        .and_then(|_| t.wait_done(ctx, &ctx.alice, &task, "model", Duration::from_secs(100)));
    stop.store(true, Ordering::Relaxed);
    let (peak, samples) = sampler
        .join()
        .map_err(|_| Failed::from("the RSS sampler panicked"))?;
    let status = result?;
    let copy_s = started.elapsed().as_secs_f64();
    let growth = peak.saturating_sub(baseline);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "e2e: models: 300 MB model: workerd RSS growth {:.1} MiB (baseline {:.1} MiB, peak {:.1} MiB, {samples} samples every 100 ms), submit to complete {copy_s:.1} s",
        mib(growth),
        mib(baseline),
        mib(peak)
    );
    let tripo_id = tripo_id_of(ctx, &n)?;
    check(status["status"] == "complete", || format!("{status}"))?;
    let compared = stored_equals_glb(
        ctx,
        &format!("models/{task}/model.glb"),
        &model_seed(&tripo_id, "pbr_model"),
        SIZE,
    )?;
    check(compared == glb_bytes_len(SIZE), || {
        format!("{compared} bytes")
    })?;
    check_complete_row(ctx, &task, "model", &status, &tripo_id)?;
    check(growth < LIMIT, || {
        format!(
            "workerd grew by {:.1} MiB while copying 300 MB",
            mib(growth)
        )
    })
}

fn duplicate_deliveries(ctx: &Ctx) -> CaseResult {
    // Forced deliveries need the test hook: honoured only with AUTH_MODE=none.
    let worker = own_worker(
        ctx,
        None,
        None,
        &[("AUTH_MODE", "none"), ("TEST_HOOKS", "true")],
    )?;
    let t = Target::of(&worker);
    let n = nonce();
    let task = ctx.task_id("m-dup");
    // A slow upload keeps the run job busy while the duplicates arrive.
    let url = ctx.upload_input(
        &ctx.alice,
        &format!("{}/dup-{n}.png", ctx.run),
        "image/png",
        png(&format!("[[fake:slow_ms=1500,nonce={n}]]")),
    )?;
    t.generate(
        ctx,
        &ctx.alice,
        "image-to-model",
        &json!({"task_id": task, "input_image_asset_urls": [url]}),
    )?;
    let run = json!({"kind": "run", "task_id": task, "step": "model", "attempt": 1, "try_no": 1});
    for _ in 0..3 {
        t.enqueue(ctx, &run)?;
    }
    // More duplicates once the Tripo task exists (the claim is refused from then on).
    ctx.wait_for(Duration::from_secs(30), "the Tripo task", || {
        Ok((!creates(ctx, &n)?.is_empty()).then_some(()))
    })?;
    t.enqueue(ctx, &run)?;
    let status = t.wait_done(ctx, &ctx.alice, &task, "model", Duration::from_secs(60))?;
    // And a duplicate finalize after completion: nothing changes.
    let fin =
        json!({"kind": "finalize", "task_id": task, "step": "model", "attempt": 1, "try_no": 1});
    t.enqueue(ctx, &fin)?;
    t.enqueue(ctx, &run)?;
    std::thread::sleep(Duration::from_secs(3));
    let created = creates(ctx, &n)?;
    check(created.len() == 1, || {
        format!("{} Tripo tasks created: {created:?}", created.len())
    })?;
    let downloads = fakes(ctx)?
        .log(Some(&n))
        .into_iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/__fake/files/"))
        })
        .count();
    check(downloads == 1, || format!("{downloads} model downloads"))?;
    check_done(ctx, &task, "model", &status, &n, DEFAULT_GLB_BYTES)?;
    let after = t.status(ctx, &ctx.alice, &task, "model")?;
    check(
        after["status"] == "complete" && after["asset_url"] == status["asset_url"],
        || format!("changed after duplicates: {after}"),
    )?;
    let events: BTreeMap<String, usize> = worker
        .log()
        .lines()
        .filter(|l| l.contains(&task))
        .filter_map(|l| {
            l.find('{')
                .and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok())
        })
        .filter_map(|v| v["event"].as_str().map(str::to_owned))
        .fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e).or_default() += 1;
            m
        });
    check(events.get("job.skipped").copied().unwrap_or(0) >= 3, || {
        format!("expected skipped duplicates: {events:?}")
    })
}

fn restart_while_processing(ctx: &Ctx) -> CaseResult {
    let state = tempfile::Builder::new()
        .prefix("makeit3d-e2e-restart-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let persist = state.path().join("state");
    let port = free_port().map_err(|e| e.to_string())?;
    let mut first = own_worker(ctx, Some(persist.clone()), Some(port), &[])?;
    let t = Target::of(&first);
    let n = nonce();
    let task = ctx.task_id("m-restart");
    t.generate(
        ctx,
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": format!("a lighthouse [[fake:run_s=12,nonce={n}]]")}),
    )?;
    // Processing, with the Tripo id on the row: the run job is done, the alarm carries the task.
    let tripo_id = ctx.wait_for(Duration::from_secs(30), "the Tripo id on the row", || {
        let rows = ctx.rows("models", &task)?;
        Ok(rows
            .first()
            .filter(|r| r["status"] == "processing")
            .and_then(|r| r["ai_service_task_id"].as_str().map(str::to_owned)))
    })?;
    let before = t.status(ctx, &ctx.alice, &task, "model")?;
    check(before["status"] == "processing", || format!("{before}"))?;
    first.stop();
    let stopped = Instant::now();
    let second = own_worker(ctx, Some(persist), Some(port), &[])?;
    eprintln!(
        "e2e: models: worker restarted in {:.1} s",
        stopped.elapsed().as_secs_f64()
    );
    let t = Target::of(&second);
    let status = t.wait_done(ctx, &ctx.alice, &task, "model", Duration::from_secs(90))?;
    let id = check_done(ctx, &task, "model", &status, &n, DEFAULT_GLB_BYTES)?;
    check(id == tripo_id, || {
        format!("Tripo id changed: {tripo_id} → {id}")
    })?;
    drop(second);
    drop(state);
    Ok(())
}
