//! Security (SPEC §4.1, §5), tried as an attacker would with two ordinary users, alice (A) and
//! bob (B): inputs are read with the caller's rights and never more; a refusal says no more
//! than "not found"; bodies and downloads are bounded; refine drafts, anonymous sign-ins and test
//! hooks open nothing. Every refused case also checks that nothing was created: no row, no
//! step (status 404), no job message, and no request reached a provider.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use e2e::{WorkerOptions, WorkerProcess};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use crate::support::{check, deliveries_in, expect_error, png, Case, CaseResult, Ctx, Reply, User};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "security::another_users_private_object_is_not_found_in_every_url_form",
            foreign_object_every_form,
        ),
        (
            "security::a_signed_url_for_another_path_is_not_found",
            signed_url_for_another_path,
        ),
        (
            "security::own_objects_are_accepted_in_every_url_form",
            own_object_every_form,
        ),
        (
            "security::chunked_body_over_the_limit_without_length_is_413",
            chunked_body_over_limit,
        ),
        (
            "security::input_replaced_by_a_larger_one_after_submit_is_refused_unread",
            input_swapped_after_submit,
        ),
        (
            "security::refine_of_another_users_draft_is_422",
            foreign_refine_draft,
        ),
        (
            "security::anonymous_sign_in_is_403_unless_allowed",
            anonymous_sign_in,
        ),
        (
            "security::test_hook_under_real_auth_opens_nothing",
            test_hook_under_real_auth,
        ),
        (
            "security::a_private_output_is_an_input_only_for_its_own_task_and_owner",
            flow_b_private_outputs,
        ),
    ]
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A concepts request for `task` whose prompt carries `nonce`, so the fakes' logs tell whether
/// anything reached OpenAI.
fn concepts_body(task: &str, url: &str, nonce: &str) -> Value {
    json!({"task_id": task, "input_image_asset_url": url,
           "prompt": format!("a chair [[fake:nonce={nonce}]]")})
}

/// Nothing of `task` exists anywhere: no rows, no step in the Durable Object, no job message,
/// and no provider request carrying `nonce`.
fn nothing_created(ctx: &Ctx, user: &User, task: &str, nonce: &str) -> CaseResult {
    // A message would have been sent during the submit; give the consumer time to log it.
    std::thread::sleep(Duration::from_millis(1200));
    for table in ["concept_images", "models"] {
        let rows = ctx.rows(table, task)?;
        check(rows.is_empty(), || {
            format!("{table} rows of {task}: {rows:?}")
        })?;
    }
    let s = ctx.status(user, task, "")?;
    expect_error(&s, 404, "not_found")?;
    let jobs = ctx.jobs_received(task);
    check(jobs.is_empty(), || {
        format!("job messages for {task}: {jobs:?}")
    })?;
    let fakes = ctx
        .stack
        .fakes()
        .ok_or("the stack runs no provider fakes")?;
    let calls = fakes.log(Some(nonce));
    check(calls.is_empty(), || {
        format!("provider requests for {task}: {calls:?}")
    })
}

/// Uploads a PNG into `owner`'s folder of the private inputs bucket; its object path.
fn private_input(ctx: &Ctx, owner: &User, name: &str) -> Result<String, Failed> {
    let name = format!("{}/{name}-{}.png", ctx.run, nonce());
    ctx.upload_input(owner, &name, "image/png", png(""))?;
    Ok(format!("{}/{name}", owner.id))
}

/// A signed URL for `{bucket}/{path}` minted by `user` (Storage signs only what they may read).
fn sign_as(ctx: &Ctx, user: &User, bucket: &str, path: &str) -> Result<String, Failed> {
    let auth = format!("Bearer {}", user.token);
    let r = ctx.request(
        "POST",
        &format!(
            "{}/storage/v1/object/sign/{bucket}/{path}",
            ctx.stack.supabase_url
        ),
        &[
            ("authorization", &auth),
            ("apikey", &ctx.stack.anon_key),
            ("content-type", "application/json"),
        ],
        Some(br#"{"expiresIn":600}"#.to_vec()),
    )?;
    check(r.status == 200, || format!("sign: {} {}", r.status, r.text))?;
    let rel = r.json()?["signedURL"]
        .as_str()
        .map(str::to_owned)
        .ok_or("no signedURL")?;
    Ok(format!("{}/storage/v1{rel}", ctx.stack.supabase_url))
}

/// The four URL forms of `{bucket}/{path}`: authenticated, bare, public route, signed (junk).
fn url_forms(ctx: &Ctx, bucket: &str, path: &str) -> Vec<(&'static str, String)> {
    let o = format!("{}/storage/v1/object", ctx.stack.supabase_url);
    vec![
        (
            "authenticated/",
            format!("{o}/authenticated/{bucket}/{path}"),
        ),
        ("bare", format!("{o}/{bucket}/{path}")),
        (
            "public/ (private bucket)",
            format!("{o}/public/{bucket}/{path}"),
        ),
        (
            "sign/ with a junk token",
            format!("{o}/sign/{bucket}/{path}?token=eyJhbGciOiJIUzI1NiJ9.e30.junk"),
        ),
    ]
}

/// Submits as `user`; the reply.
fn submit(ctx: &Ctx, user: &User, endpoint: &str, body: &Value) -> Result<Reply, Failed> {
    ctx.generate(user, endpoint, body)
}

/// A concepts submit of `url` as `user` that must be accepted (a control case).
fn accepted(ctx: &Ctx, user: &User, case: &str, url: &str) -> CaseResult {
    let task = ctx.task_id(case);
    let r = submit(
        ctx,
        user,
        "image-to-image",
        &concepts_body(&task, url, &nonce()),
    )?;
    check(r.status == 202, || {
        format!("{case}: expected 202, got {} {}", r.status, r.text)
    })
}

fn foreign_object_every_form(ctx: &Ctx) -> CaseResult {
    let bucket = ctx.stack.input_bucket.clone();
    let alices = private_input(ctx, &ctx.alice, "photo")?;
    // The same name that does not exist at all, in alice's folder: what "missing" looks like.
    let missing = format!("{}/{}/nothing-{}.png", ctx.alice.id, ctx.run, nonce());
    for ((form, foreign), (_, absent)) in url_forms(ctx, &bucket, &alices)
        .into_iter()
        .zip(url_forms(ctx, &bucket, &missing))
    {
        let task = ctx.task_id("sec-foreign");
        let n = nonce();
        let r = submit(
            ctx,
            &ctx.bob,
            "image-to-image",
            &concepts_body(&task, &foreign, &n),
        )?;
        expect_error(&r, 422, "input_asset_not_found")
            .map_err(|e| format!("{form}: {}", e.message().unwrap_or_default()))?;
        let control = submit(
            ctx,
            &ctx.bob,
            "image-to-image",
            &concepts_body(&task, &absent, &n),
        )?;
        check(control.status == 422 && control.text == r.text, || {
            format!(
                "{form}: another user's object must read exactly like a missing one:\n{}\n{}",
                r.text, control.text
            )
        })?;
        nothing_created(ctx, &ctx.bob, &task, &n)
            .map_err(|e| Failed::from(format!("{form}: {}", e.message().unwrap_or_default())))?;
    }
    // And the owner gets the one she may read (a control: the object is there).
    let url = format!(
        "{}/storage/v1/object/authenticated/{bucket}/{alices}",
        ctx.stack.supabase_url
    );
    accepted(ctx, &ctx.alice, "sec-owner", &url)
}

fn signed_url_for_another_path(ctx: &Ctx) -> CaseResult {
    let bucket = ctx.stack.input_bucket.clone();
    let alices = private_input(ctx, &ctx.alice, "secret")?;
    let bobs = private_input(ctx, &ctx.bob, "mine")?;
    // Bob signs his own object, then points its token at alice's path.
    let signed = sign_as(ctx, &ctx.bob, &bucket, &bobs)?;
    let query = signed.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let forged = format!(
        "{}/storage/v1/object/sign/{bucket}/{alices}?{query}",
        ctx.stack.supabase_url
    );
    let task = ctx.task_id("sec-signed");
    let n = nonce();
    let r = submit(
        ctx,
        &ctx.bob,
        "image-to-image",
        &concepts_body(&task, &forged, &n),
    )?;
    expect_error(&r, 422, "input_asset_not_found")?;
    nothing_created(ctx, &ctx.bob, &task, &n)?;
    // The genuine signed URL works for its own path.
    accepted(ctx, &ctx.bob, "sec-signed-ok", &signed)
}

fn own_object_every_form(ctx: &Ctx) -> CaseResult {
    let bucket = ctx.stack.input_bucket.clone();
    let alices = private_input(ctx, &ctx.alice, "own")?;
    let o = format!("{}/storage/v1/object", ctx.stack.supabase_url);
    // The public bucket: the public route with no key at all.
    let public_path = format!("inputs/{}/{}.png", ctx.run, nonce());
    let auth = format!("Bearer {}", ctx.stack.service_key);
    let up = ctx.request(
        "POST",
        &format!("{o}/{}/{public_path}", ctx.stack.bucket),
        &[("authorization", &auth), ("content-type", "image/png")],
        Some(png("")),
    )?;
    check(up.status == 200, || {
        format!("upload: {} {}", up.status, up.text)
    })?;
    let forms = [
        (
            "authenticated/",
            format!("{o}/authenticated/{bucket}/{alices}"),
        ),
        ("bare", format!("{o}/{bucket}/{alices}")),
        ("sign/", sign_as(ctx, &ctx.alice, &bucket, &alices)?),
        (
            "public/ (public bucket)",
            format!("{o}/public/{}/{public_path}", ctx.stack.bucket),
        ),
    ];
    for (form, url) in forms {
        let task = ctx.task_id("sec-own");
        let r = submit(
            ctx,
            &ctx.alice,
            "image-to-model",
            &json!({"task_id": task, "input_image_asset_urls": [url]}),
        )?;
        check(r.status == 202, || {
            format!("{form}: expected 202, got {} {}", r.status, r.text)
        })?;
    }
    Ok(())
}

/// Sends a chunked request (no `Content-Length`) of `total` bytes over a raw socket; the status
/// line's code and the response body.
fn send_chunked(
    base: &str,
    path: &str,
    token: &str,
    total: usize,
) -> Result<(u16, String), Failed> {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    // A JSON string that never ends, in 8 KiB chunks.
    let start = b"{\"x\":\"";
    let mut body = format!("{:x}\r\n", start.len()).into_bytes();
    body.extend_from_slice(start);
    body.extend_from_slice(b"\r\n");
    let chunk = [format!("{:x}\r\n", 8192).as_bytes(), &[b'a'; 8192], b"\r\n"].concat();
    for _ in 0..total / 8192 {
        body.extend_from_slice(&chunk);
    }
    body.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&body)
        .map_err(|e| format!("sending the body: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

fn chunked_body_over_limit(ctx: &Ctx) -> CaseResult {
    // 1 MiB against the 64 KiB limit, with no Content-Length.
    const TOTAL: usize = 1 << 20;
    const LIMIT: u64 = 65_536;
    let (code, body) = send_chunked(
        &ctx.current_base(),
        "/generate/text-to-model",
        &ctx.alice.token,
        TOTAL,
    )?;
    check(code == 413, || format!("expected 413, got {code}: {body}"))?;
    check(body.contains("payload_too_large"), || {
        format!("413 without the error shape: {body}")
    })?;
    // The worker never held more than the limit; it read the rest only to drop it.
    let events: Vec<Value> =
        ctx.wait_for(Duration::from_secs(10), "http.body_too_large", || {
            let found: Vec<Value> = ctx
                .worker_events("http.body_too_large")
                .into_iter()
                .filter(|v| v["event"] == "http.body_too_large" && v["content_length"].is_null())
                .filter(|v| v["read"].as_u64().is_some_and(|r| r >= TOTAL as u64))
                .collect();
            Ok((!found.is_empty()).then_some(found))
        })?;
    let held = events
        .iter()
        .filter_map(|v| v["held"].as_u64())
        .max()
        .unwrap_or(u64::MAX);
    check(held <= LIMIT, || {
        format!("the worker held {held} bytes of a {TOTAL}-byte body (limit {LIMIT})")
    })
}

fn input_swapped_after_submit(ctx: &Ctx) -> CaseResult {
    let bucket = ctx.stack.input_bucket.clone();
    let name = format!("{}/swap-{}.png", ctx.run, nonce());
    let url = ctx.upload_input(&ctx.alice, &name, "image/png", png(""))?;
    let path = format!("{}/{name}", ctx.alice.id);
    // Hold the job's download (not the submit's proof, which uses the info route) for 6 s,
    // so the object is replaced before Storage serves it.
    let fault = json!({"method": "GET", "times": 1, "delay_ms": 6000,
                       "path_prefix": format!("/object/authenticated/{bucket}/{path}")});
    let f = ctx.request(
        "POST",
        &format!("{}/__fake/storage/faults", ctx.stack.supabase_url),
        &[("content-type", "application/json")],
        Some(fault.to_string().into_bytes()),
    )?;
    check(f.status < 300, || format!("fault: {} {}", f.status, f.text))?;
    let task = ctx.task_id("sec-swap");
    let n = nonce();
    let r = submit(
        ctx,
        &ctx.alice,
        "image-to-image",
        &concepts_body(&task, &url, &n),
    )?;
    check(r.status == 202, || {
        format!("submit: {} {}", r.status, r.text)
    })?;
    // 30 MB (the limit is 20 MiB), still a PNG by its first bytes.
    let mut big = png("");
    big.resize(30_000_000, 0);
    ctx.upload_input(&ctx.alice, &name, "image/png", big)?;
    let mut last = Value::Null;
    let st = ctx
        .wait_for(Duration::from_secs(60), "the step to fail", || {
            let v = ctx.status(&ctx.alice, &task, "?step=concepts")?.json()?;
            last = v.clone();
            Ok((v["status"] == "failed" || v["status"] == "complete").then_some(v))
        })
        .map_err(|e| format!("{}; last {last}", e.message().unwrap_or_default()))?;
    check(
        st["status"] == "failed"
            && st["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("larger than the limit")),
        || format!("expected a failure for the size: {st}"),
    )?;
    let fakes = ctx
        .stack
        .fakes()
        .ok_or("the stack runs no provider fakes")?;
    let calls = fakes.log(Some(&n));
    check(calls.is_empty(), || {
        format!("the swapped input reached OpenAI: {calls:?}")
    })?;
    // The download was refused by its length: Storage logged the GET, but the worker read
    // none of it (the bytes Storage counts as sent are what it wrote before the cancel).
    let log_url = format!(
        "{}/__fake/storage/log?path_prefix={}",
        ctx.stack.supabase_url,
        crate::support::urlencode(&format!("/object/authenticated/{bucket}/{path}"))
    );
    let log = ctx.request("GET", &log_url, &[], None)?;
    check(log.status == 200, || format!("storage log: {}", log.text))?;
    let gets: Vec<Value> = log
        .json()?
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["method"] == "GET")
        .collect();
    check(!gets.is_empty(), || "the job never downloaded".into())
}

fn foreign_refine_draft(ctx: &Ctx) -> CaseResult {
    let draft = uuid::Uuid::new_v4().to_string();
    ctx.seed_model_row(&ctx.alice, &ctx.task_id("sec-draft-of"), &draft)?;
    let task = ctx.task_id("sec-draft");
    let n = nonce();
    let body = json!({"task_id": task, "tripo_draft_task_id": draft,
                      "prompt": format!("steal it [[fake:nonce={n}]]")});
    let r = submit(ctx, &ctx.bob, "refine-model", &body)?;
    expect_error(&r, 422, "validation_error")?;
    check(r.text.contains("tripo_draft_task_id"), || {
        format!("the refusal names the field: {}", r.text)
    })?;
    // An id that belongs to nobody reads the same.
    let unknown = json!({"task_id": task, "tripo_draft_task_id": uuid::Uuid::new_v4().to_string(),
                         "prompt": format!("steal it [[fake:nonce={n}]]")});
    let u = submit(ctx, &ctx.bob, "refine-model", &unknown)?;
    check(u.text == r.text, || format!("{} vs {}", u.text, r.text))?;
    nothing_created(ctx, &ctx.bob, &task, &n)?;
    // Alice refines her own draft.
    let own = json!({"task_id": ctx.task_id("sec-draft-own"), "tripo_draft_task_id": draft});
    let r = submit(ctx, &ctx.alice, "refine-model", &own)?;
    check(r.status == 202, || {
        format!("own draft: {} {}", r.status, r.text)
    })
}

fn anonymous_sign_in(ctx: &Ctx) -> CaseResult {
    let token = ctx.stack.anonymous_token(uuid::Uuid::new_v4(), 600);
    let anon = User {
        id: uuid::Uuid::nil(),
        token,
    };
    let task = ctx.task_id("sec-anon");
    let n = nonce();
    let r = submit(
        ctx,
        &anon,
        "text-to-model",
        &json!({"task_id": task, "prompt": format!("a cat [[fake:nonce={n}]]")}),
    )?;
    expect_error(&r, 403, "anonymous_not_allowed")?;
    let s = ctx.status(&anon, &task, "")?;
    expect_error(&s, 403, "anonymous_not_allowed")?;
    nothing_created(ctx, &ctx.alice, &task, &n)
}

fn test_hook_under_real_auth(ctx: &Ctx) -> CaseResult {
    let mut settings: Vec<(String, String)> = ctx
        .stack
        .worker_vars()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    settings.push(("TEST_HOOKS".into(), "true".into()));
    let worker = WorkerProcess::start(WorkerOptions {
        settings,
        build_profile: "--version".into(),
        ..Default::default()
    })
    .map_err(|e| format!("could not start a worker: {e}"))?;
    let base = worker.base_url.clone();
    let task = ctx.task_id("sec-hook");
    let msg =
        json!({"kind": "run", "task_id": task, "step": "concepts", "attempt": 1, "try_no": 1});
    let r = ctx.request(
        "POST",
        &format!("{base}/__test/enqueue"),
        &[("content-type", "application/json")],
        Some(msg.to_string().into_bytes()),
    )?;
    expect_error(&r, 503, "misconfigured")?;
    check(r.text.contains("TEST_HOOKS"), || r.text.clone())?;
    let h = ctx.request("GET", &format!("{base}/health"), &[], None)?;
    let v = h.json()?;
    check(
        v["status"] == "misconfigured"
            && v["problems"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x["name"] == "TEST_HOOKS")),
        || format!("/health does not name TEST_HOOKS: {}", h.text),
    )?;
    // Not even a valid user can use this worker.
    let auth = format!("Bearer {}", ctx.alice.token);
    let g = ctx.request(
        "POST",
        &format!("{base}/generate/text-to-model"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(
            json!({"task_id": task, "prompt": "a cat"})
                .to_string()
                .into_bytes(),
        ),
    )?;
    expect_error(&g, 503, "misconfigured")?;
    std::thread::sleep(Duration::from_millis(1200));
    let received = deliveries_in(&worker.log(), &task).len();
    check(received == 0, || {
        format!("{received} job messages received")
    })
}

/// A request to `base` as `user`; the reply.
fn call_as(
    ctx: &Ctx,
    base: &str,
    user: &User,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Reply, Failed> {
    let auth = format!("Bearer {}", user.token);
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

/// Flow B with a **private** generated-assets bucket: the task's own concept image, addressed by
/// its authenticated URL (what the row holds), is an input of the same task for its owner (the
/// exception of SPEC §4.1), and of nothing else: not of another task of the same user, not of
/// another user's task.
fn flow_b_private_outputs(ctx: &Ctx) -> CaseResult {
    let bucket = format!("gen_private_{}", &nonce()[..6]);
    ctx.rt
        .block_on(ctx.stack.create_bucket(&bucket, false))
        .map_err(|e| format!("creating {bucket}: {e}"))?;
    let mut settings: Vec<(String, String)> = ctx
        .stack
        .worker_vars()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    settings.push(("GENERATED_ASSETS_BUCKET_NAME".into(), bucket.clone()));
    settings.push(("GENERATED_ASSETS_BUCKET_PUBLIC".into(), "false".into()));
    let worker = WorkerProcess::start(WorkerOptions {
        settings,
        build_profile: "--version".into(),
        ..Default::default()
    })
    .map_err(|e| format!("could not start a worker: {e}"))?;
    let base = worker.base_url.clone();
    // Alice's concepts.
    let task = ctx.task_id("sec-flowb");
    let input = ctx.upload_input(
        &ctx.alice,
        &format!("{}/flowb-{}.png", ctx.run, nonce()),
        "image/png",
        png(""),
    )?;
    let r = call_as(
        ctx,
        &base,
        &ctx.alice,
        "POST",
        "/generate/image-to-image",
        Some(&concepts_body(&task, &input, &nonce())),
    )?;
    check(r.status == 202, || {
        format!("concepts: {} {}", r.status, r.text)
    })?;
    let mut last = Value::Null;
    let st = ctx
        .wait_for(Duration::from_secs(60), "the concepts", || {
            let r = call_as(
                ctx,
                &base,
                &ctx.alice,
                "GET",
                &format!("/tasks/{task}/status?step=concepts"),
                None,
            )?;
            let v = r.json()?;
            last = v.clone();
            Ok((v["status"] == "complete" || v["status"] == "failed").then_some(v))
        })
        .map_err(|e| format!("{}; last {last}", e.message().unwrap_or_default()))?;
    check(st["status"] == "complete", || format!("concepts: {st}"))?;
    let rows = ctx.rows("concept_images", &task)?;
    let output = rows
        .first()
        .and_then(|r| r["asset_url"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no concept row URL: {rows:?}"))?;
    check(output.contains("/object/authenticated/"), || {
        format!("a private bucket's row URL is the authenticated form: {output}")
    })?;
    // Another task of alice, and a task of bob: not this task's outputs for them.
    for (who, user, other) in [
        (
            "alice, another task",
            &ctx.alice,
            ctx.task_id("sec-flowb-other"),
        ),
        ("bob", &ctx.bob, ctx.task_id("sec-flowb-bob")),
    ] {
        let n = nonce();
        let body = json!({"task_id": other, "input_image_asset_urls": [output],
                          "prompt": format!("a model [[fake:nonce={n}]]")});
        let r = call_as(
            ctx,
            &base,
            user,
            "POST",
            "/generate/image-to-model",
            Some(&body),
        )?;
        expect_error(&r, 422, "input_asset_not_found")
            .map_err(|e| format!("{who}: {}", e.message().unwrap_or_default()))?;
        for table in ["concept_images", "models"] {
            let rows = ctx.rows(table, &other)?;
            check(rows.is_empty(), || format!("{who}: {table} rows {rows:?}"))?;
        }
        let calls = ctx
            .stack
            .fakes()
            .ok_or("the stack runs no provider fakes")?
            .log(Some(&n));
        check(calls.is_empty(), || {
            format!("{who}: provider calls {calls:?}")
        })?;
    }
    // Bob naming alice's task itself: he does not own it, so its outputs are not his to read
    // (the inputs are checked before the task, so this is the same "not found").
    let body = json!({"task_id": task, "input_image_asset_urls": [output]});
    let r = call_as(
        ctx,
        &base,
        &ctx.bob,
        "POST",
        "/generate/image-to-model",
        Some(&body),
    )?;
    expect_error(&r, 422, "input_asset_not_found")?;
    // The owner, same task: the exception.
    let r = call_as(
        ctx,
        &base,
        &ctx.alice,
        "POST",
        "/generate/image-to-model",
        Some(&body),
    )?;
    check(r.status == 202, || {
        format!(
            "the owner's flow B on a private bucket: {} {}",
            r.status, r.text
        )
    })
}
