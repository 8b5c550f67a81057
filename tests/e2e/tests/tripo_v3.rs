//! Tripo v3 end to end (issue P15, SPEC §11 "Tripo v3"): every model kind through the v3 wire
//! format, with signed webhooks on and with them off; a dropped webhook caught by the safety-net
//! poll; duplicated, reordered and late deliveries that change nothing; a bad signature, a replay
//! and a missing signature refused (401) and logged; an unknown task answered 200.
//!
//! Two workers on the suite's stack, shared by the cases (started by the first case that needs
//! one): `v3-webhooks` (`TRIPO_API_VERSION=v3`, `TRIPO_WEBHOOK_SECRET`, first safety poll after
//! 15 s) and `v3-polling` (v3 without a secret: the alarm polls as on v2). Each has its own Tripo
//! key at the fake, and the fake delivers the webhooks of the first one's key to its
//! `/providers/tripo/webhook`.

use std::time::{Duration, Instant};

use e2e::WorkerProcess;
use fake_providers::{model_seed, sign_tripo_webhook, DEFAULT_GLB_BYTES};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use crate::models::{check_complete_row, fakes, nonce, own_worker, stored_equals_glb, Target};
use crate::support::{check, events_in, png, Case, CaseResult, Ctx};

const SECRET: &str = "whsec_e2e_tripo_v3_0123456789abcdef";
const WEBHOOKS: &str = "v3-webhooks";
const POLLING: &str = "v3-polling";
/// `TRIPO_SAFETY_POLL_SECONDS` of the webhooks worker (fake tasks take 3 s).
const SAFETY_S: u64 = 15;

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "tripo_v3::every_kind_completes_byte_identical_with_webhooks_on_and_off",
            every_kind,
        ),
        (
            "tripo_v3::lost_duplicated_reordered_late_and_badly_signed_webhooks",
            webhook_faults,
        ),
        (
            "tripo_v3::the_webhook_route_refuses_bad_signatures_and_replays_and_answers_unknown_tasks",
            route_checks,
        ),
    ]
}

/// The shared worker `name` (started on first use): its target and its Tripo key.
fn worker(ctx: &Ctx, name: &'static str) -> Result<(Target, String), Failed> {
    let key = format!("tsk_{}_{}", name.replace('-', "_"), &ctx.run[4..]);
    let mut all = ctx
        .shared_workers
        .lock()
        .map_err(|_| "shared workers lock poisoned")?;
    if let Some(w) = all.get(name) {
        return Ok((Target::of(w), key));
    }
    let f = fakes(ctx)?;
    f.add_key(&key);
    let base = f.tripo_v3_base_url();
    let safety = SAFETY_S.to_string();
    let mut extra = vec![
        ("TRIPO_API_KEY", key.as_str()),
        ("TRIPO_API_VERSION", "v3"),
        ("TRIPO_V3_BASE_URL", base.as_str()),
    ];
    if name == WEBHOOKS {
        extra.push(("TRIPO_WEBHOOK_SECRET", SECRET));
        extra.push(("TRIPO_SAFETY_POLL_SECONDS", safety.as_str()));
    }
    let w = own_worker(ctx, None, None, &extra)?;
    if name == WEBHOOKS {
        f.set_tripo_webhook(
            &key,
            &format!("{}/providers/tripo/webhook", w.base_url),
            SECRET,
        );
    }
    let t = Target::of(&w);
    all.insert(name, w);
    Ok((t, key))
}

fn log_of(ctx: &Ctx, name: &str) -> String {
    ctx.shared_workers
        .lock()
        .ok()
        .and_then(|all| all.get(name).map(WorkerProcess::log))
        .unwrap_or_default()
}

/// The v3 creates the fake logged for `nonce`.
fn creates(ctx: &Ctx, nonce: &str) -> Result<Vec<Value>, Failed> {
    Ok(fakes(ctx)?
        .log(Some(nonce))
        .into_iter()
        .filter(|e| {
            e["method"] == "POST"
                && e["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/v3/generation/") || p == "/v3/models/refine")
        })
        .collect())
}

/// The Tripo id of the one successful create at `path` for `nonce`.
fn tripo_id(ctx: &Ctx, nonce: &str, path: &str) -> Result<String, Failed> {
    let ok: Vec<Value> = creates(ctx, nonce)?
        .into_iter()
        .filter(|e| e["status"] == 200 && e["path"] == path)
        .collect();
    check(ok.len() == 1, || {
        format!("expected one create at {path} for {nonce}: {ok:?}")
    })?;
    ok[0]["tripo_task_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "create without a task id".into())
}

/// `GET /v3/tasks/{id}` requests the fake answered for one task (safety polls and finalize).
fn polls(ctx: &Ctx, tripo_id: &str) -> Result<usize, Failed> {
    let path = format!("/v3/tasks/{tripo_id}");
    Ok(fakes(ctx)?
        .log(Some(tripo_id))
        .into_iter()
        .filter(|e| e["method"] == "GET" && e["path"] == path.as_str())
        .count())
}

/// A step complete with the fake's model byte for byte in Storage and its row.
fn check_model(ctx: &Ctx, task: &str, step: &str, status: &Value, tripo: &str) -> CaseResult {
    check(status["status"] == "complete", || {
        format!("{task}/{step}: {status}")
    })?;
    let file = if step == "refine" {
        "refined_model.glb"
    } else {
        "model.glb"
    };
    stored_equals_glb(
        ctx,
        &format!("models/{task}/{file}"),
        &model_seed(tripo, "pbr_model"),
        DEFAULT_GLB_BYTES,
    )?;
    check_complete_row(ctx, task, step, status, tripo)
}

/// The v3 body of a create, checked against the SDK's names for its endpoint.
fn check_v3_body(entry: &Value) -> CaseResult {
    let b = &entry["body"];
    let path = entry["path"].as_str().unwrap_or_default();
    check(
        b.get("type").is_none() && b.get("model_version").is_none(),
        || format!("v2 names sent to v3: {b}"),
    )?;
    let ok = match path {
        "/v3/generation/text-to-model" => b["prompt"].is_string() && b["model"].is_string(),
        "/v3/generation/image-to-model" => {
            b["input"].as_str().is_some_and(|t| t.starts_with("file_")) && b["model"].is_string()
        }
        "/v3/generation/multiview-to-model" => {
            b["inputs"].as_array().is_some_and(|a| a.len() == 4) && b["model"].is_string()
        }
        "/v3/models/refine" => b["draft_model_task_id"].is_string(),
        _ => false,
    };
    check(ok, || format!("{path}: {b}"))
}

// ---------------------------------------------------------------------------------------------

fn every_kind(ctx: &Ctx) -> CaseResult {
    let user = &ctx.alice;
    let upload = |name: &str, n: &str| {
        ctx.upload_input(
            user,
            &format!("{}/v3-{name}-{n}.png", ctx.run),
            "image/png",
            png(&format!("[[fake:nonce={n}]]")),
        )
    };
    // (worker, task, nonce, create path)
    let mut runs: Vec<(&'static str, Target, String, String, &str)> = Vec::new();
    for name in [WEBHOOKS, POLLING] {
        let (t, _) = worker(ctx, name)?;
        let n = nonce();
        let task = ctx.task_id(&format!("{name}-text"));
        t.generate(
            ctx,
            user,
            "text-to-model",
            &json!({"task_id": task, "prompt": format!("a v3 cat [[fake:nonce={n}]]"), "texture_quality": "detailed"}),
        )?;
        runs.push((name, t.clone(), task, n, "/v3/generation/text-to-model"));
        let n = nonce();
        let task = ctx.task_id(&format!("{name}-img"));
        t.generate(
            ctx,
            user,
            "image-to-model",
            &json!({"task_id": task, "input_image_asset_urls": [upload("front", &n)?], "orientation": "align_image"}),
        )?;
        runs.push((name, t.clone(), task, n, "/v3/generation/image-to-model"));
        let n = nonce();
        let task = ctx.task_id(&format!("{name}-mv"));
        t.generate(
            ctx,
            user,
            "image-to-model",
            &json!({"task_id": task, "input_image_asset_urls": [upload("front", &n)?, upload("left", &n)?]}),
        )?;
        runs.push((
            name,
            t.clone(),
            task,
            n,
            "/v3/generation/multiview-to-model",
        ));
        let n = nonce();
        let task = ctx.task_id(&format!("{name}-sketch"));
        t.generate(
            ctx,
            user,
            "sketch-to-model",
            &json!({"task_id": task, "input_sketch_asset_url": upload("sketch", &n)?}),
        )?;
        runs.push((name, t.clone(), task, n, "/v3/generation/image-to-model"));
    }
    let mut drafts = Vec::new();
    for (name, t, task, n, path) in &runs {
        let status = t.wait_done(ctx, user, task, "model", Duration::from_secs(90))?;
        let id = tripo_id(ctx, n, path)?;
        check_model(ctx, task, "model", &status, &id)?;
        for c in creates(ctx, n)? {
            check_v3_body(&c)?;
        }
        let uploads = fakes(ctx)?
            .log(Some(n))
            .into_iter()
            .filter(|e| e["path"] == "/v3/files" && e["status"] == 200)
            .count();
        let want = match *path {
            "/v3/generation/text-to-model" => 0,
            "/v3/generation/multiview-to-model" => 2,
            _ => 1,
        };
        check(uploads == want, || {
            format!("{task}: {uploads} uploads to /v3/files, want {want}")
        })?;
        let gets = polls(ctx, &id)?;
        let delivered = fakes(ctx)?.tripo_webhook_deliveries(Some(&id));
        if *name == WEBHOOKS {
            // The webhook moved the step: no poll, no finalize query; one create in all.
            check(gets == 0, || {
                format!("{task}: {gets} GET /v3/tasks with webhooks on")
            })?;
            check(
                delivered.len() == 1 && delivered[0]["answer"] == 200,
                || format!("{task}: deliveries {delivered:?}"),
            )?;
        } else {
            check(gets >= 1, || {
                format!("{task}: never polled without webhooks")
            })?;
            check(delivered.is_empty(), || {
                format!("{task}: webhooks without a secret: {delivered:?}")
            })?;
        }
        if *path == "/v3/generation/text-to-model" {
            drafts.push((*name, t.clone(), task.clone(), n.clone(), id));
        }
    }
    // Refine each text draft through /v3/models/refine.
    for (name, t, task, n, draft) in &drafts {
        t.generate(
            ctx,
            user,
            "refine-model",
            &json!({"task_id": task, "tripo_draft_task_id": draft}),
        )?;
        let status = t.wait_done(ctx, user, task, "refine", Duration::from_secs(90))?;
        let id = tripo_id(ctx, n, "/v3/models/refine")?;
        check_model(ctx, task, "refine", &status, &id)?;
        if *name == WEBHOOKS {
            check(polls(ctx, &id)? == 0, || format!("{task}: refine polled"))?;
        }
    }
    Ok(())
}

/// Waits until the fake recorded `n` delivery attempts for `tripo_id`.
fn deliveries(ctx: &Ctx, tripo_id: &str, n: usize, limit: Duration) -> Result<Vec<Value>, Failed> {
    let start = Instant::now();
    loop {
        let d = fakes(ctx)?.tripo_webhook_deliveries(Some(tripo_id));
        if d.len() >= n || start.elapsed() > limit {
            return Ok(d);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn webhook_faults(ctx: &Ctx) -> CaseResult {
    let user = &ctx.alice;
    let (t, _) = worker(ctx, WEBHOOKS)?;
    let faults = [
        "webhook_drop",
        "webhook_dup=2",
        "webhook_reorder",
        "webhook_delay_ms=22000",
        "webhook_bad_sig",
        "final=banned",
    ];
    let mut runs = Vec::new();
    for (i, fault) in faults.iter().enumerate() {
        let n = nonce();
        let task = ctx.task_id(&format!("v3-fault{i}"));
        t.generate(
            ctx,
            user,
            "text-to-model",
            &json!({"task_id": task, "prompt": format!("a v3 teapot [[fake:{fault},nonce={n}]]")}),
        )?;
        runs.push((*fault, task, n));
    }
    let log_events = |needle: &str, task: &str| {
        events_in(&log_of(ctx, WEBHOOKS), needle)
            .into_iter()
            .filter(|e| e["task_id"] == task)
            .count()
    };
    for (fault, task, n) in &runs {
        let status = t.wait_done(ctx, user, task, "model", Duration::from_secs(120))?;
        let id = tripo_id(ctx, n, "/v3/generation/text-to-model")?;
        if *fault == "final=banned" {
            // task.failed (2008) fails the step with the content-policy reason, no poll.
            check(
                status["status"] == "failed" && status["error"]["code"] == "content_policy",
                || format!("banned: {status}"),
            )?;
            check(polls(ctx, &id)? == 0, || "banned: polled".to_string())?;
            continue;
        }
        check_model(ctx, task, "model", &status, &id)?;
        let finalized = log_events("finalize.complete", task);
        check(finalized == 1, || {
            format!("{fault}: finalize.complete {finalized} times")
        })?;
        let gets = polls(ctx, &id)?;
        match *fault {
            "webhook_drop" | "webhook_bad_sig" => {
                // Caught by one safety poll; its URL is copied without asking again.
                check(gets == 1, || format!("{fault}: {gets} GETs"))?;
                let d = deliveries(ctx, &id, 1, Duration::from_secs(5))?;
                if *fault == "webhook_bad_sig" {
                    check(
                        !d.is_empty() && d.iter().all(|x| x["answer"] == 401),
                        || format!("bad signature answered: {d:?}"),
                    )?;
                    let refused: Vec<Value> =
                        events_in(&log_of(ctx, WEBHOOKS), "tripo_webhook.refused")
                            .into_iter()
                            .filter(|e| e["delivery"] == d[0]["delivery"])
                            .collect();
                    check(!refused.is_empty(), || {
                        "the refused delivery was not logged".to_string()
                    })?;
                } else {
                    check(d.len() == 1 && d[0]["fault"] == "dropped", || {
                        format!("drop: {d:?}")
                    })?;
                }
            }
            "webhook_delay_ms=22000" => {
                check(gets == 1, || format!("late: {gets} GETs"))?;
                // The late delivery still comes, is answered 200, and changes nothing.
                let d = deliveries(ctx, &id, 1, Duration::from_secs(30))?;
                check(d.len() == 1 && d[0]["answer"] == 200, || {
                    format!("late: {d:?}")
                })?;
                let dup = ctx.wait_for(Duration::from_secs(5), "the late duplicate", || {
                    Ok((log_events("tripo_webhook.received", task) >= 1).then_some(()))
                });
                dup?;
                let applied = events_in(&log_of(ctx, WEBHOOKS), "tripo_webhook.received")
                    .into_iter()
                    .filter(|e| e["task_id"] == task.as_str() && e["handled"] == "applied")
                    .count();
                check(applied == 0, || "the late webhook was applied".to_string())?;
            }
            _ => {
                // dup: 1 + 2 copies + 1 redelivery; reorder: 2. All 200, one applied.
                let want = if fault.starts_with("webhook_dup") {
                    4
                } else {
                    2
                };
                let d = deliveries(ctx, &id, want, Duration::from_secs(10))?;
                check(
                    d.len() == want && d.iter().all(|x| x["answer"] == 200),
                    || format!("{fault}: {d:?}"),
                )?;
                check(gets == 0, || format!("{fault}: {gets} GETs"))?;
                let received: Vec<Value> =
                    events_in(&log_of(ctx, WEBHOOKS), "tripo_webhook.received")
                        .into_iter()
                        .filter(|e| e["task_id"] == task.as_str())
                        .collect();
                let applied = received
                    .iter()
                    .filter(|e| e["handled"] == "applied")
                    .count();
                check(applied == 1, || {
                    format!("{fault}: applied {applied} times: {received:?}")
                })?;
            }
        }
    }
    Ok(())
}

/// A POST to the webhooks worker's route with `signature` (if any).
fn post_hook(
    ctx: &Ctx,
    base: &str,
    body: &str,
    signature: Option<&str>,
    delivery: &str,
) -> Result<crate::support::Reply, Failed> {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("tripo-webhook-delivery", delivery),
        ("tripo-webhook-event", "task.completed"),
    ];
    if let Some(s) = signature {
        headers.push(("tripo-webhook-signature", s));
    }
    ctx.request(
        "POST",
        &format!("{base}/providers/tripo/webhook"),
        &headers,
        Some(body.as_bytes().to_vec()),
    )
}

fn route_checks(ctx: &Ctx) -> CaseResult {
    let (t, _) = worker(ctx, WEBHOOKS)?;
    let n = nonce();
    let body = json!({"id": format!("unknown-{n}:task.completed"), "type": "task.completed",
        "created_at": "2026-12-03T00:00:00Z",
        "data": {"task_id": format!("unknown-{n}"), "type": "text_to_model", "status": "success",
                 "output": {"model_url": "http://127.0.0.1:9/never.glb"}}})
    .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let good = sign_tripo_webhook(SECRET, now, &body);
    // Well signed, unknown task: 200, logged.
    let r = post_hook(
        ctx,
        &t.base,
        &body,
        Some(&format!("t={now},v1={good}")),
        &format!("dlv-ok-{n}"),
    )?;
    check(r.status == 200 && r.text.contains("\"unknown\""), || {
        format!("unknown task: {} {}", r.status, r.text)
    })?;
    // Several v1, one of them right: accepted.
    let other = sign_tripo_webhook("whsec_rotated_away_000000000000", now, &body);
    let r = post_hook(
        ctx,
        &t.base,
        &body,
        Some(&format!("t={now},v1={other},v1={good}")),
        &format!("dlv-two-{n}"),
    )?;
    check(r.status == 200, || {
        format!("two v1: {} {}", r.status, r.text)
    })?;
    // Refused: no signature, wrong secret, a body changed after signing, a replay 10 min old.
    let old = now - 600;
    let replay = sign_tripo_webhook(SECRET, old, &body);
    let cases = [
        (None, "missing"),
        (Some(format!("t={now},v1={other}")), "wrong secret"),
        (Some(format!("t={old},v1={replay}")), "replay"),
        (Some("t=abc,v1=00".to_string()), "malformed"),
    ];
    for (sig, what) in &cases {
        let r = post_hook(ctx, &t.base, &body, sig.as_deref(), &format!("dlv-bad-{n}"))?;
        check(r.status == 401, || {
            format!("{what}: {} {}", r.status, r.text)
        })?;
    }
    let tampered = body.replace("never.glb", "other.glb");
    let r = post_hook(
        ctx,
        &t.base,
        &tampered,
        Some(&format!("t={now},v1={good}")),
        &format!("dlv-tamper-{n}"),
    )?;
    check(r.status == 401, || format!("tampered: {}", r.status))?;
    // Larger than any task event: refused before it is read.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    let sig = sign_tripo_webhook(SECRET, now, &big);
    let r = post_hook(
        ctx,
        &t.base,
        &big,
        Some(&format!("t={now},v1={sig}")),
        &format!("dlv-big-{n}"),
    )?;
    check(r.status == 413, || format!("oversized: {}", r.status))?;
    let log = log_of(ctx, WEBHOOKS);
    let refused = events_in(&log, "tripo_webhook.refused")
        .into_iter()
        .filter(|e| e["delivery"] == format!("dlv-bad-{n}").as_str())
        .count();
    check(refused == cases.len(), || {
        format!("{refused} refusals logged, want {}", cases.len())
    })?;
    let unknown = events_in(&log, "tripo_webhook.received")
        .into_iter()
        .any(|e| e["delivery"] == format!("dlv-ok-{n}").as_str() && e["handled"] == "unknown");
    check(unknown, || "the unknown task was not logged".to_string())?;
    check(!log.contains(&good) && !log.contains(SECRET), || {
        "a signature or the secret reached the log".to_string()
    })?;
    // Without a secret the route does not exist.
    let (p, _) = worker(ctx, POLLING)?;
    let r = post_hook(
        ctx,
        &p.base,
        &body,
        Some(&format!("t={now},v1={good}")),
        "dlv-off",
    )?;
    check(r.status == 404, || format!("webhooks off: {}", r.status))
}
