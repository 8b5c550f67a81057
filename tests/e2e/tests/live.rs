//! SPEC §11 "Live status", "Cancel", "Webhooks": the events stream sees every progress value in
//! order and ends at `complete`; a reconnect with `Last-Event-ID` loses nothing; another user's
//! token is a 404; a cancel during polling ends `failed`/`cancelled` with no model stored even
//! when the provider later succeeds; a cancel during a concepts job leaves no concept objects;
//! a webhook arrives once per final step, signed, retried after a 500 and a timeout with the same
//! `webhook-id`, and a tampered body fails verification.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{check, Case, CaseResult, Ctx};

pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "live::events_stream_follows_a_model_to_complete",
            events_follow_a_model,
        ),
        (
            "live::events_resume_and_owner_only",
            events_resume_and_owner_only,
        ),
        (
            "live::cancel_during_polling_stores_nothing",
            cancel_during_polling,
        ),
        (
            "live::cancel_during_concepts_leaves_no_objects",
            cancel_during_concepts,
        ),
        ("live::webhook_signed_retried_same_id", webhook_retried),
    ]
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

/// One parsed SSE event: its id and JSON data.
#[derive(Debug, Clone)]
struct Event {
    id: u64,
    data: Value,
}

/// Reads the events stream of `task` as `token` until it ends (or `limit`), with `last_id` as
/// `Last-Event-ID`; `stop_after`: stop after this many events (a client going away).
fn read_events(
    ctx: &Ctx,
    token: &str,
    task: &str,
    last_id: Option<u64>,
    stop_after: Option<usize>,
    limit: Duration,
) -> Result<(u16, Vec<Event>, bool), libtest_mimic::Failed> {
    let url = format!(
        "{}/tasks/{task}/events?access_token={token}",
        ctx.current_base()
    );
    ctx.rt.block_on(async {
        let mut req = ctx.http.get(&url);
        if let Some(id) = last_id {
            req = req.header("last-event-id", id.to_string());
        }
        let mut resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Ok((status, Vec::new(), true));
        }
        let mut buf = String::new();
        let mut events = Vec::new();
        let start = Instant::now();
        let ended = loop {
            let left = limit.saturating_sub(start.elapsed());
            let chunk = match tokio::time::timeout(left, resp.chunk()).await {
                Err(_) => break false,
                Ok(Err(e)) => return Err(format!("stream error: {e}").into()),
                Ok(Ok(None)) => break true,
                Ok(Ok(Some(c))) => c,
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.trim().parse::<u64>().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if let (Some(id), false) = (id, data.is_empty()) {
                    let data: Value = serde_json::from_str(&data).map_err(|e| e.to_string())?;
                    events.push(Event { id, data });
                }
            }
            if stop_after.is_some_and(|n| events.len() >= n) {
                break false;
            }
        };
        Ok((status, events, ended))
    })
}

fn events_follow_a_model(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("live-sse");
    let n = nonce();
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": format!("a kettle [[fake:run_s=8,nonce={n}]]")}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    let (status, events, ended) = read_events(
        ctx,
        &ctx.alice.token,
        &task,
        None,
        None,
        Duration::from_secs(90),
    )?;
    check(status == 200 && ended, || {
        format!("status {status}, ended {ended}")
    })?;
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    check(ids.windows(2).all(|w| w[0] < w[1]), || {
        format!("ids not growing: {ids:?}")
    })?;
    let progress: Vec<u64> = events
        .iter()
        .filter_map(|e| e.data["progress"].as_u64())
        .collect();
    check(progress.windows(2).all(|w| w[0] <= w[1]), || {
        format!("progress went backwards: {progress:?}")
    })?;
    let between = progress.iter().filter(|p| **p > 0 && **p < 100).count();
    check(between >= 3, || {
        format!("few progress values: {progress:?}")
    })?;
    let last = &events.last().ok_or("no events")?.data;
    check(
        last["status"] == "complete" && last["progress"] == 100,
        || format!("last event: {last}"),
    )?;
    // The last event is exactly the status endpoint's body.
    let s = ctx.status(&ctx.alice, &task, "")?.json()?;
    check(&s == last, || format!("status {s} vs last event {last}"))?;
    eprintln!("e2e: live: progress seen over SSE {progress:?}");
    Ok(())
}

fn events_resume_and_owner_only(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("live-resume");
    let n = nonce();
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": format!("a stool [[fake:run_s=6,nonce={n}]]")}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    // Another user: 404, as for the status endpoint.
    let (status, _, _) = read_events(
        ctx,
        &ctx.bob.token,
        &task,
        None,
        None,
        Duration::from_secs(5),
    )?;
    check(status == 404, || format!("bob got {status}"))?;
    // Read two events, go away, come back with the last id: the rest follows, nothing lost.
    let (_, first, _) = read_events(
        ctx,
        &ctx.alice.token,
        &task,
        None,
        Some(2),
        Duration::from_secs(30),
    )?;
    let last_id = first.last().ok_or("no first events")?.id;
    std::thread::sleep(Duration::from_secs(2));
    let (_, rest, ended) = read_events(
        ctx,
        &ctx.alice.token,
        &task,
        Some(last_id),
        None,
        Duration::from_secs(90),
    )?;
    check(ended, || "the resumed stream did not end".to_string())?;
    let first_rest = rest.first().ok_or("nothing after the resume")?;
    check(first_rest.id > last_id, || {
        format!(
            "resume repeated an old id: {} after {last_id}",
            first_rest.id
        )
    })?;
    let last = &rest.last().ok_or("no events")?.data;
    check(last["status"] == "complete", || format!("last: {last}"))?;
    // Up to date and final: 204 (EventSource stops reconnecting).
    let end_id = rest.last().map(|e| e.id);
    let (status, _, _) = read_events(
        ctx,
        &ctx.alice.token,
        &task,
        end_id,
        None,
        Duration::from_secs(5),
    )?;
    check(status == 204, || {
        format!("expected 204 at the end, got {status}")
    })?;
    Ok(())
}

fn cancel(ctx: &Ctx, task: &str) -> Result<Value, libtest_mimic::Failed> {
    let auth = format!("Bearer {}", ctx.alice.token);
    let r = ctx.call(
        "POST",
        &format!("/tasks/{task}/cancel"),
        &[("authorization", &auth)],
        None,
    )?;
    check(r.status == 200, || {
        format!("cancel: {} {}", r.status, r.text)
    })?;
    r.json()
}

fn object_exists(ctx: &Ctx, path: &str) -> Result<bool, libtest_mimic::Failed> {
    let url = format!(
        "{}/storage/v1/object/{}/{path}",
        ctx.stack.supabase_url, ctx.stack.bucket
    );
    let auth = format!("Bearer {}", ctx.stack.service_key);
    let r = ctx.request(
        "GET",
        &url,
        &[("authorization", &auth), ("apikey", &ctx.stack.service_key)],
        None,
    )?;
    Ok(r.status == 200)
}

fn polls(ctx: &Ctx, task: &str) -> usize {
    ctx.worker_events(task)
        .into_iter()
        .filter(|v| v["event"] == "poll.result" && v["task_id"] == task)
        .count()
}

fn cancel_during_polling(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("live-cancel");
    let n = nonce();
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": format!("a vase [[fake:run_s=8,nonce={n}]]")}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    ctx.wait_for(Duration::from_secs(30), "a first poll", || {
        Ok((polls(ctx, &task) >= 1).then_some(()))
    })?;
    let v = cancel(ctx, &task)?;
    check(
        v["status"] == "failed" && v["error"]["code"] == "cancelled",
        || format!("cancel answer: {v}"),
    )?;
    let at_cancel = polls(ctx, &task);
    // Repeat: harmless.
    let again = cancel(ctx, &task)?;
    check(again["error"]["code"] == "cancelled", || {
        format!("repeat: {again}")
    })?;
    // Past the fake task's success: no poll, no model.
    std::thread::sleep(Duration::from_secs(12));
    let after = polls(ctx, &task);
    check(after <= at_cancel + 1, || {
        format!("{} polls after the cancel", after - at_cancel)
    })?;
    check(
        !object_exists(ctx, &format!("models/{task}/model.glb"))?,
        || "a model object was written after the cancel".to_string(),
    )?;
    let s = ctx.status(&ctx.alice, &task, "")?.json()?;
    check(
        s["status"] == "failed" && s["error"]["code"] == "cancelled",
        || format!("status: {s}"),
    )?;
    // Bob cannot cancel it (404).
    let auth = format!("Bearer {}", ctx.bob.token);
    let r = ctx.call(
        "POST",
        &format!("/tasks/{task}/cancel"),
        &[("authorization", &auth)],
        None,
    )?;
    check(r.status == 404, || format!("bob's cancel: {}", r.status))?;
    Ok(())
}

fn cancel_during_concepts(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("live-cancel-c");
    let n = nonce();
    let url = ctx.upload_input(
        &ctx.alice,
        &format!("{}/{task}.png", ctx.run),
        "image/png",
        crate::support::png(""),
    )?;
    let r = ctx.generate(
        &ctx.alice,
        "image-to-image",
        &json!({"task_id": task, "input_image_asset_url": url, "n": 3,
                "prompt": format!("a robot [[fake:openai_delay_ms=4000,nonce={n}]]")}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    std::thread::sleep(Duration::from_millis(1500));
    let v = cancel(ctx, &task)?;
    check(v["error"]["code"] == "cancelled", || format!("cancel: {v}"))?;
    std::thread::sleep(Duration::from_secs(8));
    for i in 0..3 {
        check(
            !object_exists(ctx, &format!("concepts/{task}/{i}.png"))?,
            || format!("concept {i} was stored after the cancel"),
        )?;
    }
    Ok(())
}

/// The fake receiver's base (the fake providers' origin).
fn receiver(ctx: &Ctx, channel: &str) -> String {
    let base = ctx.stack.tripo_base_url.trim_end_matches("/v2/openapi");
    format!("{base}/__fake/webhooks/{channel}")
}

fn webhook_retried(ctx: &Ctx) -> CaseResult {
    let channel = nonce();
    let hook = receiver(ctx, &channel);
    let r = ctx.request(
        "PUT",
        &hook,
        &[("content-type", "application/json")],
        Some(
            json!({"secret": WEBHOOK_SECRET, "fail": ["500", "timeout"]})
                .to_string()
                .into_bytes(),
        ),
    )?;
    check(r.status == 204, || format!("receiver setup: {}", r.status))?;
    let task = ctx.task_id("live-hook");
    let n = nonce();
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "webhook_url": hook,
                "prompt": format!("a lamp [[fake:run_s=2,nonce={n}]]")}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    let received: Vec<Value> =
        ctx.wait_for(Duration::from_secs(120), "three deliveries", || {
            let l = ctx.request("GET", &hook, &[], None)?.json()?;
            let list = l.as_array().cloned().unwrap_or_default();
            Ok((list.iter().any(|d| d["answered"] == 204)).then_some(list))
        })?;
    check(received.len() == 3, || format!("deliveries: {received:?}"))?;
    let id = received[0]["id"].clone();
    for d in &received {
        check(d["id"] == id && d["valid"] == true, || {
            format!("delivery: {d}")
        })?;
        let body: Value =
            serde_json::from_str(d["body"].as_str().unwrap_or("")).map_err(|e| e.to_string())?;
        check(
            body["status"] == "complete" && body["task_id"] == task.as_str(),
            || format!("body: {body}"),
        )?;
    }
    let answers: Vec<&Value> = received.iter().map(|d| &d["answered"]).collect();
    check(answers == [&json!(500), &json!(0), &json!(204)], || {
        format!("answers {answers:?}")
    })?;
    // A tampered body fails verification (the receiver's algorithm is standardwebhooks').
    let d = &received[2];
    let tampered = d["body"]
        .as_str()
        .unwrap_or("")
        .replace("complete", "failed");
    let ok = fake_providers::webhooks::verify(
        WEBHOOK_SECRET,
        d["id"].as_str().unwrap_or(""),
        d["timestamp"].as_str().unwrap_or(""),
        &tampered,
        d["signature"].as_str().unwrap_or(""),
        d["timestamp"].as_str().unwrap_or("0").parse().unwrap_or(0),
    );
    check(!ok, || "a tampered body verified".to_string())?;
    // Once per final step: no further delivery.
    std::thread::sleep(Duration::from_secs(3));
    let l = ctx.request("GET", &hook, &[], None)?.json()?;
    check(l.as_array().map(Vec::len) == Some(3), || {
        format!("more deliveries: {l}")
    })?;
    // A host outside WEBHOOK_ALLOWED_HOSTS: 422.
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": ctx.task_id("live-hook-bad"), "webhook_url": "https://evil.example.com/h", "prompt": "x"}),
    )?;
    check(r.status == 422, || {
        format!("bad host: {} {}", r.status, r.text)
    })?;
    Ok(())
}
