//! SPEC §11 "Live status", "Cancel", "Webhooks": the events stream and the WebSocket each see
//! every value the task's Durable Object went through, one by one, in order, and end at
//! `complete`; a reconnect with `Last-Event-ID` loses nothing; another user's token is a 404; a
//! cancel during polling ends `failed`/`cancelled` with no model stored even when the provider
//! later succeeds; a cancel during a concepts job leaves no concept objects; a webhook arrives
//! once per final step, signed, retried after a 500 and a timeout with the same `webhook-id`, a
//! tampered body fails verification, a redirect is not followed, and a private bucket's webhook
//! carries URLs the receiver can download; a step waiting for a provider slot shows the same
//! place in line in the status, the events and the WebSocket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{WorkerOptions, WorkerProcess};
use libtest_mimic::Failed;
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
        (
            "live::websocket_follows_a_model_to_complete",
            websocket_follows_a_model,
        ),
        (
            "live::webhook_redirect_is_not_followed",
            webhook_redirect_not_followed,
        ),
        (
            "live::webhook_of_a_private_bucket_downloads",
            webhook_private_bucket,
        ),
        (
            "live::queue_position_agrees_in_status_events_and_websocket",
            queue_position_agrees,
        ),
    ]
}

/// The progress plan of the one-by-one cases (the fake Tripo answers poll `k` with value `k`).
const PLAN: [u64; 5] = [7, 23, 48, 76, 94];

/// A model step whose Tripo task walks through [`PLAN`], then succeeds.
fn plan_prompt(what: &str) -> String {
    let plan: Vec<String> = PLAN.iter().map(u64::to_string).collect();
    format!(
        "{what} [[fake:progress={},nonce={}]]",
        plan.join("/"),
        nonce()
    )
}

/// `(status, progress)` of each view, consecutive repeats merged (a change of another field,
/// e.g. the place in line, repeats the pair).
fn pairs<'a>(views: impl IntoIterator<Item = &'a Value>) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for v in views {
        let p = (
            v["status"].as_str().unwrap_or("?").to_owned(),
            v["progress"].as_u64().unwrap_or(999),
        );
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    out
}

/// The distinct `(status, progress)` values the task's Durable Object went through for a plan
/// task: `pending`, `processing` 0, the progress after each poll as the DO logged it
/// (`poll.result`; the plan's values, then 99 when Tripo succeeded), `complete` 100.
fn do_sequence(ctx: &Ctx, task: &str) -> Result<Vec<(String, u64)>, Failed> {
    let polled: Vec<u64> = ctx
        .worker_events(task)
        .into_iter()
        .filter(|v| v["event"] == "poll.result" && v["task_id"] == task)
        .filter_map(|v| v["progress"].as_u64())
        .collect();
    let mut want: Vec<u64> = PLAN.to_vec();
    want.push(99);
    check(polled == want, || {
        format!("the DO's progress after each poll {polled:?}, the plan {want:?}")
    })?;
    let mut seq = vec![("pending".to_owned(), 0), ("processing".to_owned(), 0)];
    for p in polled {
        if seq.last() != Some(&("processing".to_owned(), p)) {
            seq.push(("processing".to_owned(), p));
        }
    }
    seq.push(("complete".to_owned(), 100));
    Ok(seq)
}

/// `seen` (what a stream delivered) is the DO's sequence from where the stream started (its
/// first view, `pending` or already `processing`): no value skipped, none out of order.
fn one_by_one(what: &str, seen: &[(String, u64)], all: &[(String, u64)]) -> CaseResult {
    let start = seen
        .first()
        .and_then(|f| all.iter().position(|a| a == f))
        .ok_or_else(|| {
            format!(
                "{what}: first value {:?} is not one of {all:?}",
                seen.first()
            )
        })?;
    check(start <= 1 && seen == &all[start..], || {
        format!("{what} delivered {seen:?}; the Durable Object went through {all:?}")
    })
}

/// `part` appears in `all` in the same order (the status endpoint, read now and then, sees a
/// subsequence of the values).
fn subsequence(part: &[(String, u64)], all: &[(String, u64)]) -> bool {
    let mut it = all.iter();
    part.iter().all(|p| it.any(|a| a == p))
}

/// Reads `GET /tasks/{task}/status` every 100 ms until `stop`; the views seen.
async fn poll_status(ctx: &Ctx, task: &str, stop: Arc<AtomicBool>) -> Vec<Value> {
    let url = format!("{}/tasks/{task}/status", ctx.current_base());
    let auth = format!("Bearer {}", ctx.alice.token);
    let mut seen = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if let Ok(r) = ctx
            .http
            .get(&url)
            .header("authorization", &auth)
            .send()
            .await
        {
            if let Ok(v) = r.json::<Value>().await {
                seen.push(v);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
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
    ctx.rt.block_on(read_events_async(
        ctx, token, task, last_id, stop_after, limit,
    ))
}

async fn read_events_async(
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
}

fn events_follow_a_model(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("live-sse");
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": plan_prompt("a kettle")}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    // The stream, and meanwhile the status endpoint every 100 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = Arc::clone(&stop);
        let task = task.clone();
        async move { poll_status(ctx, &task, stop).await }
    };
    let reader = async {
        let r = read_events_async(
            ctx,
            &ctx.alice.token,
            &task,
            None,
            None,
            Duration::from_secs(90),
        )
        .await;
        stop.store(true, Ordering::SeqCst);
        r
    };
    let (read, polled) = ctx
        .rt
        .block_on(async { futures_join(reader, poller).await });
    let (status, events, ended) = read?;
    check(status == 200 && ended, || {
        format!("status {status}, ended {ended}")
    })?;
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    check(ids.windows(2).all(|w| w[0] < w[1]), || {
        format!("ids not strictly growing: {ids:?}")
    })?;
    // Every event is a change: no two in a row show the same view.
    check(events.windows(2).all(|w| w[0].data != w[1].data), || {
        "two events in a row show the same view".to_string()
    })?;
    let seen = pairs(events.iter().map(|e| &e.data));
    let all = do_sequence(ctx, &task)?;
    one_by_one("the events stream", &seen, &all)?;
    let by_status = pairs(&polled);
    check(subsequence(&by_status, &seen), || {
        format!("the status endpoint showed {by_status:?}, the stream {seen:?}")
    })?;
    // The last event is exactly the status endpoint's body.
    let last = &events.last().ok_or("no events")?.data;
    let s = ctx.status(&ctx.alice, &task, "")?.json()?;
    check(&s == last, || format!("status {s} vs last event {last}"))?;
    eprintln!("e2e: live: SSE delivered {seen:?} (ids {ids:?}); status polls saw {by_status:?}");
    Ok(())
}

/// Runs two futures to completion (the e2e crate has no `futures` dependency).
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

/// The WebSocket (`?access_token=`), read to the server's close; meanwhile the status endpoint
/// every 100 ms. Every message is a view; they follow the DO one by one; the server closes with
/// 1000 at `complete`, and the last message is the status endpoint's body.
fn websocket_follows_a_model(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("live-ws");
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": plan_prompt("a teapot")}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    let url = format!(
        "{}/tasks/{task}/ws?access_token={}",
        ctx.current_base().replacen("http://", "ws://", 1),
        ctx.alice.token
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let r = read_websocket(&url, Duration::from_secs(90));
            stop.store(true, Ordering::SeqCst);
            r
        })
    };
    let polled = ctx.rt.block_on(poll_status(ctx, &task, Arc::clone(&stop)));
    let (messages, close) = reader
        .join()
        .map_err(|_| "the WebSocket reader panicked")??;
    check(close == Some(1000), || {
        format!("the server did not close with 1000: {close:?}")
    })?;
    let seen = pairs(&messages);
    let all = do_sequence(ctx, &task)?;
    one_by_one("the WebSocket", &seen, &all)?;
    check(messages.windows(2).all(|w| w[0] != w[1]), || {
        "two messages in a row show the same view".to_string()
    })?;
    let by_status = pairs(&polled);
    check(subsequence(&by_status, &seen), || {
        format!("the status endpoint showed {by_status:?}, the WebSocket {seen:?}")
    })?;
    let last = messages.last().ok_or("no messages")?;
    let s = ctx.status(&ctx.alice, &task, "")?.json()?;
    check(&s == last, || format!("status {s} vs last message {last}"))?;
    // Another user: the upgrade is refused with 404.
    let bob = format!(
        "{}/tasks/{task}/ws?access_token={}",
        ctx.current_base().replacen("http://", "ws://", 1),
        ctx.bob.token
    );
    match tungstenite::connect(bob.as_str()) {
        Err(tungstenite::Error::Http(resp)) => check(resp.status().as_u16() == 404, || {
            format!("bob's upgrade: {}", resp.status())
        })?,
        Err(e) => return Err(format!("bob's upgrade: {e}").into()),
        Ok(_) => return Err("bob's upgrade was accepted".into()),
    }
    eprintln!("e2e: live: WebSocket delivered {seen:?}; status polls saw {by_status:?}");
    Ok(())
}

/// Text messages of a WebSocket until the server closes it: (views, close code).
fn read_websocket(url: &str, limit: Duration) -> Result<(Vec<Value>, Option<u16>), Failed> {
    let (mut ws, resp) =
        tungstenite::connect(url).map_err(|e| format!("WebSocket connect: {e}"))?;
    check(resp.status().as_u16() == 101, || {
        format!("upgrade answered {}", resp.status())
    })?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let mut views = Vec::new();
    loop {
        check(start.elapsed() < limit, || {
            format!("no close after {limit:?}; {} messages", views.len())
        })?;
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                views.push(serde_json::from_str::<Value>(t.as_str()).map_err(|e| e.to_string())?)
            }
            Ok(tungstenite::Message::Close(frame)) => {
                return Ok((views, frame.map(|f| u16::from(f.code))));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("WebSocket read: {e}").into()),
        }
    }
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

/// Sets up a receiver channel (secret, scripted answers).
fn configure_receiver(ctx: &Ctx, hook: &str, fail: &[String]) -> CaseResult {
    let r = ctx.request(
        "PUT",
        hook,
        &[("content-type", "application/json")],
        Some(
            json!({"secret": WEBHOOK_SECRET, "fail": fail})
                .to_string()
                .into_bytes(),
        ),
    )?;
    check(r.status == 204, || format!("receiver setup: {}", r.status))
}

fn deliveries(ctx: &Ctx, hook: &str) -> Result<Vec<Value>, Failed> {
    Ok(ctx
        .request("GET", hook, &[], None)?
        .json()?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// A receiver that answers 307 to another URL: the worker does not follow it (the webhook
/// never reaches the other URL), does not retry it, and logs `webhook.failed` with the 307.
fn webhook_redirect_not_followed(ctx: &Ctx) -> CaseResult {
    let first = receiver(ctx, &nonce());
    let elsewhere = receiver(ctx, &nonce());
    configure_receiver(ctx, &first, &[format!("redirect:{elsewhere}")])?;
    configure_receiver(ctx, &elsewhere, &[])?;
    let task = ctx.task_id("live-hook-redirect");
    let n = nonce();
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "webhook_url": first,
                "prompt": format!("a lamp [[fake:run_s=1,nonce={n}]]")}),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    let failed = ctx.wait_for(Duration::from_secs(90), "webhook.failed", || {
        Ok(ctx
            .worker_events(&task)
            .into_iter()
            .find(|v| v["event"] == "webhook.failed" && v["task_id"] == task.as_str()))
    })?;
    check(failed["http_status"] == 307, || {
        format!("webhook.failed: {failed}")
    })?;
    std::thread::sleep(Duration::from_secs(8));
    let at_first = deliveries(ctx, &first)?;
    let at_elsewhere = deliveries(ctx, &elsewhere)?;
    check(
        at_first.len() == 1 && at_first[0]["answered"] == 307,
        || format!("the first URL got {at_first:?}"),
    )?;
    check(at_elsewhere.is_empty(), || {
        format!("the redirect was followed: {at_elsewhere:?}")
    })?;
    let retries = ctx
        .worker_events(&task)
        .into_iter()
        .filter(|v| v["event"] == "webhook.retry")
        .count();
    check(retries == 0, || format!("{retries} retries of a redirect"))
}

/// A worker of its own with `extra` settings (and the suite's webhook settings).
fn own_worker(ctx: &Ctx, extra: &[(&str, String)]) -> Result<WorkerProcess, Failed> {
    let mut settings: Vec<(String, String)> = ctx
        .stack
        .worker_vars()
        .into_iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    settings.push(("WEBHOOK_ALLOWED_HOSTS".into(), "127.0.0.1".into()));
    settings.push(("WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()));
    for (k, v) in extra {
        settings.push(((*k).into(), v.clone()));
    }
    WorkerProcess::start(WorkerOptions {
        settings,
        // The suite's worker built `build/` already (see models.rs `own_worker`).
        build_profile: "--version".into(),
        ..Default::default()
    })
    .map_err(|e| format!("could not start a worker: {e}").into())
}

fn as_alice(
    ctx: &Ctx,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<crate::support::Reply, Failed> {
    let auth = format!("Bearer {}", ctx.alice.token);
    ctx.request(
        method,
        &format!("{base}{path}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.map(|b| b.to_string().into_bytes()),
    )
}

/// A private generated-assets bucket: the webhook body's URLs are signed ones that download
/// without any key (the stored authenticated URLs would not), like the status answer's.
fn webhook_private_bucket(ctx: &Ctx) -> CaseResult {
    let bucket = format!("gen_private_{}", &nonce()[..6]);
    ctx.rt
        .block_on(ctx.stack.create_bucket(&bucket, false))
        .map_err(|e| format!("creating {bucket}: {e}"))?;
    let worker = own_worker(
        ctx,
        &[
            ("GENERATED_ASSETS_BUCKET_NAME", bucket.clone()),
            ("GENERATED_ASSETS_BUCKET_PUBLIC", "false".into()),
        ],
    )?;
    let base = worker.base_url.clone();
    let hook = receiver(ctx, &nonce());
    configure_receiver(ctx, &hook, &[])?;
    let task = ctx.task_id("live-hook-private");
    let n = nonce();
    let r = as_alice(
        ctx,
        &base,
        "POST",
        "/generate/text-to-model",
        Some(&json!({"task_id": task, "webhook_url": hook,
                     "prompt": format!("a cup [[fake:run_s=1,nonce={n}]]")})),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    let got = ctx.wait_for(Duration::from_secs(90), "the webhook", || {
        let list = deliveries(ctx, &hook)?;
        Ok(list.into_iter().find(|d| d["answered"] == 204))
    })?;
    check(got["valid"] == true, || format!("delivery: {got}"))?;
    let body: Value =
        serde_json::from_str(got["body"].as_str().unwrap_or("")).map_err(|e| e.to_string())?;
    check(body["status"] == "complete", || format!("body: {body}"))?;
    let url = body["asset_url"].as_str().unwrap_or_default().to_owned();
    check(url.contains("/storage/v1/object/sign/"), || {
        format!("the webhook's URL is not a signed one: {url}")
    })?;
    // The receiver downloads it with no key at all.
    let r = ctx.request("GET", &url, &[], None)?;
    check(r.status == 200 && !r.text.is_empty(), || {
        format!(
            "downloading the webhook's URL: {} ({} bytes)",
            r.status,
            r.text.len()
        )
    })?;
    // The status answer shows the same object, signed too.
    let s = as_alice(ctx, &base, "GET", &format!("/tasks/{task}/status"), None)?.json()?;
    let status_url = s["asset_url"].as_str().unwrap_or_default();
    let path = |u: &str| u.split('?').next().unwrap_or_default().to_owned();
    check(path(status_url) == path(&url), || {
        format!("status {status_url} vs webhook {url}")
    })?;
    drop(worker);
    Ok(())
}

/// SPEC §11 "Limits" and "Live status": a step waiting for a provider slot shows the same place
/// in line in the status answer, the events stream and the WebSocket — the gate's live one —
/// also right after the line moved (before the step asks again and stores its new place).
fn queue_position_agrees(ctx: &Ctx) -> CaseResult {
    let key = format!("tsk_live_{}", nonce());
    ctx.stack
        .fakes()
        .ok_or("the stack runs no provider fakes")?
        .add_key(&key);
    let worker = own_worker(
        ctx,
        &[
            ("TRIPO_API_KEY", key),
            ("TRIPO_MAX_CONCURRENT_TASKS", "1".into()),
        ],
    )?;
    let base = worker.base_url.clone();
    let n = nonce();
    let [holder, first, second] =
        ["live-q-holder", "live-q-first", "live-q-second"].map(|c| ctx.task_id(c));
    for (task, run_s) in [(&holder, 4), (&first, 30), (&second, 30)] {
        let r = as_alice(
            ctx,
            &base,
            "POST",
            "/generate/text-to-model",
            Some(&json!({"task_id": task,
                         "prompt": format!("a chair [[fake:run_s={run_s},nonce={n}]]")})),
        )?;
        check(r.status == 202, || {
            format!("submit {task}: {} {}", r.status, r.text)
        })?;
    }
    let status = |task: &str| -> Result<Value, Failed> {
        as_alice(ctx, &base, "GET", &format!("/tasks/{task}/status"), None)?.json()
    };
    ctx.wait_for(Duration::from_secs(30), "the second in line at 2", || {
        Ok((status(&second)?["queue_position"] == 2).then_some(()))
    })?;
    // The holder's Tripo task ends: its slot goes to the first waiter; the second is now 1.
    ctx.wait_for(Duration::from_secs(60), "the first waiter to run", || {
        Ok((status(&first)?["status"] == "processing").then_some(()))
    })?;
    let s = status(&second)?;
    check(s["queue_position"] == 1 && s["status"] == "pending", || {
        format!("status after the line moved: {s}")
    })?;
    // The events stream's first view and the WebSocket's first message, right away.
    let url = format!(
        "{base}/tasks/{second}/events?access_token={}",
        ctx.alice.token
    );
    let sse: Value = ctx.rt.block_on(async {
        let mut resp = ctx.http.get(&url).send().await.map_err(|e| e.to_string())?;
        let mut buf = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await {
                Ok(Ok(Some(c))) => buf.push_str(&String::from_utf8_lossy(&c)),
                _ => break,
            }
            if let Some(line) = buf.lines().find(|l| l.starts_with("data: ")) {
                return serde_json::from_str::<Value>(&line["data: ".len()..])
                    .map_err(|e| Failed::from(e.to_string()));
            }
        }
        Err(Failed::from(format!("no event: {buf}")))
    })?;
    let ws_url = format!(
        "{}/tasks/{second}/ws?access_token={}",
        base.replacen("http://", "ws://", 1),
        ctx.alice.token
    );
    let (mut ws, _) =
        tungstenite::connect(ws_url.as_str()).map_err(|e| format!("WebSocket: {e}"))?;
    let ws_view: Value = match ws.read().map_err(|e| format!("WebSocket read: {e}"))? {
        tungstenite::Message::Text(t) => {
            serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?
        }
        other => return Err(format!("WebSocket sent {other:?}").into()),
    };
    let _ = ws.close(None);
    let again = status(&second)?;
    for (what, v) in [
        ("events", &sse),
        ("WebSocket", &ws_view),
        ("status again", &again),
    ] {
        check(v["queue_position"] == s["queue_position"], || {
            format!(
                "{what} shows place {} where the status showed {}: {v}",
                v["queue_position"], s["queue_position"]
            )
        })?;
    }
    // Clean up: nothing of these tasks keeps running.
    for task in [&first, &second] {
        let _ = as_alice(ctx, &base, "POST", &format!("/tasks/{task}/cancel"), None);
    }
    drop(worker);
    Ok(())
}
