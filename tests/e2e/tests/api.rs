//! The API contract (SPEC §4–§5) end to end: every endpoint accepts a valid request, bad input is
//! refused with the right status and code and leaves nothing behind, a repeat is idempotent, a
//! different body conflicts, and another user's task is invisible.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{check, expect_error, png, Case, CaseResult, Ctx, User};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "api::each_endpoint_accepts_a_valid_request",
            each_endpoint_accepts,
        ),
        (
            "api::bad_input_table_leaves_nothing_behind",
            bad_input_table,
        ),
        (
            "api::same_request_twice_is_one_step_one_message",
            same_request_twice,
        ),
        (
            "api::different_body_for_the_same_step_is_409",
            different_body_conflicts,
        ),
        (
            "api::another_users_task_is_404_on_status_and_409_on_submit",
            other_user,
        ),
        (
            "api::status_query_forms_of_the_original_service",
            status_query_forms,
        ),
        (
            "api::openapi_document_lists_every_endpoint",
            openapi_document,
        ),
        (
            "api::input_check_storage_failure_is_503_and_nothing_is_left",
            storage_failure_leaves_nothing,
        ),
        (
            "api::row_insert_failure_is_503_and_nothing_is_left",
            row_insert_failure_leaves_nothing,
        ),
    ]
}

fn image(ctx: &Ctx, user: &User, name: &str) -> Result<String, libtest_mimic::Failed> {
    ctx.upload_input(user, name, "image/png", png(""))
}

/// Valid bodies of each endpoint for a fresh task id.
fn valid_bodies(
    ctx: &Ctx,
) -> Result<Vec<(&'static str, Value, &'static str, usize)>, libtest_mimic::Failed> {
    let a = image(ctx, &ctx.alice, &format!("{}/front.png", ctx.run))?;
    let b = image(ctx, &ctx.alice, &format!("{}/left.png", ctx.run))?;
    // A refine needs a draft of the caller's own: one of their `models` rows.
    let draft = uuid::Uuid::new_v4().to_string();
    ctx.seed_model_row(&ctx.alice, &ctx.task_id("draft"), &draft)?;
    Ok(vec![
        (
            "image-to-image",
            json!({"task_id": ctx.task_id("i2i"), "input_image_asset_url": a, "prompt": "a red chair", "style": "clay", "n": 2}),
            "concept_images",
            2,
        ),
        (
            "text-to-model",
            json!({"task_id": ctx.task_id("t2m"), "prompt": "a small cat", "texture": false}),
            "models",
            1,
        ),
        (
            "image-to-model",
            json!({"task_id": ctx.task_id("im2m"), "input_image_asset_urls": [a]}),
            "models",
            1,
        ),
        (
            "image-to-model",
            json!({"task_id": ctx.task_id("mv2m"), "input_image_asset_urls": [a, b], "prompt": "two views"}),
            "models",
            1,
        ),
        (
            "sketch-to-model",
            json!({"task_id": ctx.task_id("s2m"), "input_sketch_asset_url": b}),
            "models",
            1,
        ),
        (
            "refine-model",
            json!({"task_id": ctx.task_id("ref"), "draft_model_task_id": draft}),
            "models",
            1,
        ),
    ])
}

fn each_endpoint_accepts(ctx: &Ctx) -> CaseResult {
    for (endpoint, body, table, n) in valid_bodies(ctx)? {
        let task_id = body["task_id"].as_str().unwrap_or_default().to_string();
        let r = ctx.generate(&ctx.alice, endpoint, &body)?;
        check(r.status == 202, || {
            format!("{endpoint}: {} {}", r.status, r.text)
        })?;
        let v = r.json()?;
        let step = if endpoint == "image-to-image" {
            "concepts"
        } else if endpoint == "refine-model" {
            "refine"
        } else {
            "model"
        };
        check(
            v["task_id"] == task_id.as_str() && v["step"] == step && v["status"] == "pending",
            || r.text.clone(),
        )?;
        check(
            v["status_url"] == format!("/tasks/{task_id}/status?step={step}").as_str(),
            || r.text.clone(),
        )?;
        check(v["celery_task_id"] == task_id.as_str(), || r.text.clone())?;
        let rows = ctx.rows(table, &task_id)?;
        check(rows.len() == n, || {
            format!("{endpoint}: expected {n} rows, got {rows:?}")
        })?;
        for row in &rows {
            check(row["user_id"] == ctx.alice.id.to_string().as_str(), || {
                format!("{endpoint}: user_id {row}")
            })?;
            let status = row["status"].as_str().unwrap_or_default();
            // The consumer may already have picked the job up; it can only have done so after the message arrived.
            check(
                status == "pending" || !ctx.jobs_received(&task_id).is_empty(),
                || format!("{endpoint}: row {status} before any job"),
            )?;
            check(row["asset_url"].is_null(), || {
                format!("asset_url set early: {row}")
            })?;
        }
        if table == "concept_images" {
            check(
                rows[0]["prompt"] == "a red chair" && rows[0]["style"] == "clay",
                || format!("prompt/style: {}", rows[0]),
            )?;
        }
        ctx.wait_for(Duration::from_secs(20), "the job message", || {
            Ok((!ctx.jobs_received(&task_id).is_empty()).then_some(()))
        })?;
        let s = ctx.status(&ctx.alice, &task_id, "")?;
        check(s.status == 200, || {
            format!("status: {} {}", s.status, s.text)
        })?;
        let sv = s.json()?;
        check(
            sv["step"] == step && sv["task_id"] == task_id.as_str(),
            || s.text.clone(),
        )?;
    }
    Ok(())
}

struct Bad {
    name: &'static str,
    endpoint: &'static str,
    body: Option<String>,
    headers: Vec<(String, String)>,
    status: u16,
    code: &'static str,
}

fn token(ctx: &Ctx, claims: Value) -> String {
    fake_storage::jwt::sign(&claims, &ctx.stack.jwt_secret)
}

fn claims(ctx: &Ctx, user: &User, patch: Value) -> Value {
    let now = fake_storage::jwt::now_unix();
    let mut c = json!({
        "iss": format!("{}/auth/v1", ctx.stack.supabase_url), "aud": "authenticated", "role": "authenticated",
        "sub": user.id.to_string(), "iat": now, "exp": now + 600,
    });
    if let (Some(m), Some(p)) = (c.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            m.insert(k.clone(), v.clone());
        }
    }
    c
}

fn bad_cases(ctx: &Ctx, task: &str) -> Result<Vec<Bad>, libtest_mimic::Failed> {
    let url = image(ctx, &ctx.alice, &format!("{}/bad-input.png", ctx.run))?;
    let bobs = image(ctx, &ctx.bob, &format!("{}/private.png", ctx.run))?;
    let text_obj = ctx.upload_input(
        &ctx.alice,
        &format!("{}/notes.txt", ctx.run),
        "text/plain",
        b"hello".to_vec(),
    )?;
    let sb = ctx.stack.supabase_url.clone();
    let missing = format!(
        "{sb}/storage/v1/object/authenticated/{}/{}/{}/nope.png",
        ctx.stack.input_bucket, ctx.alice.id, ctx.run
    );
    let now = fake_storage::jwt::now_unix();
    let j = |v: Value| Some(v.to_string());
    let t = |extra: Value| -> Option<String> {
        let mut b = json!({"task_id": task, "prompt": "a cat"});
        if let (Some(m), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if v.is_null() {
                    m.remove(k);
                } else {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        Some(b.to_string())
    };
    let i2i = |extra: Value| -> Option<String> {
        let mut b = json!({"task_id": task, "prompt": "a cat", "input_image_asset_url": url});
        if let (Some(m), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if v.is_null() {
                    m.remove(k);
                } else {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        Some(b.to_string())
    };
    let v422 = |name, endpoint, body| Bad {
        name,
        endpoint,
        body,
        headers: vec![],
        status: 422,
        code: "validation_error",
    };
    let mut cases = vec![
        v422(
            "missing prompt",
            "text-to-model",
            t(json!({"prompt": null})),
        ),
        v422(
            "missing task_id",
            "text-to-model",
            t(json!({"task_id": null})),
        ),
        v422(
            "unknown field",
            "text-to-model",
            t(json!({"colour": "red"})),
        ),
        v422(
            "prompt is a number",
            "text-to-model",
            t(json!({"prompt": 5})),
        ),
        v422("empty prompt", "text-to-model", t(json!({"prompt": "   "}))),
        v422(
            "prompt over 1024 chars",
            "text-to-model",
            t(json!({"prompt": "x".repeat(1025)})),
        ),
        v422(
            "texture not a bool",
            "text-to-model",
            t(json!({"texture": "yes"})),
        ),
        v422(
            "face_limit zero",
            "text-to-model",
            t(json!({"face_limit": 0})),
        ),
        v422(
            "face_limit negative",
            "text-to-model",
            t(json!({"face_limit": -5})),
        ),
        v422(
            "face_limit fractional",
            "text-to-model",
            t(json!({"face_limit": 1.5})),
        ),
        v422(
            "texture_quality unknown",
            "text-to-model",
            t(json!({"texture_quality": "ultra"})),
        ),
        v422(
            "model_version unknown",
            "text-to-model",
            t(json!({"model_version": "v9"})),
        ),
        v422(
            "task_id starts with dash",
            "text-to-model",
            t(json!({"task_id": "-bad"})),
        ),
        v422(
            "task_id with ..",
            "text-to-model",
            t(json!({"task_id": "a..b"})),
        ),
        v422(
            "task_id with slash",
            "text-to-model",
            t(json!({"task_id": "a/b"})),
        ),
        v422(
            "task_id too long",
            "text-to-model",
            t(json!({"task_id": "x".repeat(129)})),
        ),
        v422(
            "task_id is a number",
            "text-to-model",
            t(json!({"task_id": 42})),
        ),
        v422("n zero", "image-to-image", i2i(json!({"n": 0}))),
        v422("n eleven", "image-to-image", i2i(json!({"n": 11}))),
        v422("n as a string", "image-to-image", i2i(json!({"n": "2"}))),
        v422(
            "background unknown",
            "image-to-image",
            i2i(json!({"background": "black"})),
        ),
        v422(
            "foreign host url",
            "image-to-image",
            i2i(
                json!({"input_image_asset_url": "https://evil.example/storage/v1/object/public/b/a.png"}),
            ),
        ),
        v422(
            "look-alike host url",
            "image-to-image",
            i2i(
                json!({"input_image_asset_url": sb.replace("127.0.0.1", "127.0.0.1.evil.example") + "/storage/v1/object/public/b/a.png"}),
            ),
        ),
        v422(
            "not a storage object url",
            "image-to-image",
            i2i(json!({"input_image_asset_url": format!("{sb}/rest/v1/models")})),
        ),
        v422(
            "url with userinfo",
            "image-to-image",
            i2i(
                json!({"input_image_asset_url": sb.replace("http://", "http://user:pw@") + "/storage/v1/object/public/b/a.png"}),
            ),
        ),
        v422(
            "url with dot-dot",
            "image-to-image",
            i2i(
                json!({"input_image_asset_url": format!("{sb}/storage/v1/object/public/b/../secret.png")}),
            ),
        ),
        v422(
            "url with encoded dot-dot",
            "image-to-image",
            i2i(
                json!({"input_image_asset_url": format!("{sb}/storage/v1/object/public/b/%2e%2e/secret.png")}),
            ),
        ),
        v422(
            "malformed url",
            "image-to-image",
            i2i(json!({"input_image_asset_url": "not a url"})),
        ),
        v422(
            "missing image-to-image prompt",
            "image-to-image",
            i2i(json!({"prompt": null})),
        ),
        v422(
            "empty url list",
            "image-to-model",
            j(json!({"task_id": task, "input_image_asset_urls": []})),
        ),
        v422(
            "five urls",
            "image-to-model",
            j(json!({"task_id": task, "input_image_asset_urls": [url, url, url, url, url]})),
        ),
        v422(
            "urls not a list",
            "image-to-model",
            j(json!({"task_id": task, "input_image_asset_urls": url})),
        ),
        v422(
            "orientation unknown",
            "image-to-model",
            j(json!({"task_id": task, "input_image_asset_urls": [url], "orientation": "sideways"})),
        ),
        v422(
            "source_concept_image_id not a uuid",
            "image-to-model",
            j(
                json!({"task_id": task, "input_image_asset_urls": [url], "source_concept_image_id": "nope"}),
            ),
        ),
        Bad {
            name: "another user's private object",
            endpoint: "image-to-model",
            body: j(json!({"task_id": task, "input_image_asset_urls": [bobs]})),
            headers: vec![],
            status: 422,
            code: "input_asset_not_found",
        },
        v422(
            "refine of a draft that is no model of the caller's",
            "refine-model",
            j(
                json!({"task_id": task, "tripo_draft_task_id": "0b7d3f4e-5a6b-4c8d-9e0f-112233445566"}),
            ),
        ),
        v422(
            "input is not an image",
            "image-to-model",
            j(json!({"task_id": task, "input_image_asset_urls": [text_obj]})),
        ),
        v422(
            "missing sketch url",
            "sketch-to-model",
            j(json!({"task_id": task})),
        ),
        v422(
            "sketch url with other scheme",
            "sketch-to-model",
            j(
                json!({"task_id": task, "input_sketch_asset_url": url.replace("http://", "https://")}),
            ),
        ),
        v422(
            "missing draft id",
            "refine-model",
            j(json!({"task_id": task})),
        ),
        v422(
            "draft id with spaces",
            "refine-model",
            j(json!({"task_id": task, "tripo_draft_task_id": "a b"})),
        ),
        v422(
            "alias and canonical differ",
            "refine-model",
            j(json!({"task_id": task, "tripo_draft_task_id": "abc", "draft_model_task_id": "def"})),
        ),
        Bad {
            name: "missing input object",
            endpoint: "image-to-model",
            body: j(json!({"task_id": task, "input_image_asset_urls": [missing]})),
            headers: vec![],
            status: 422,
            code: "input_asset_not_found",
        },
        Bad {
            name: "body is an array",
            endpoint: "text-to-model",
            body: Some("[1,2]".into()),
            headers: vec![],
            status: 400,
            code: "malformed_json",
        },
        Bad {
            name: "malformed json",
            endpoint: "text-to-model",
            body: Some("{\"task_id\":".into()),
            headers: vec![],
            status: 400,
            code: "malformed_json",
        },
        Bad {
            name: "wrong content type",
            endpoint: "text-to-model",
            body: t(json!({})),
            headers: vec![("content-type".into(), "text/plain".into())],
            status: 415,
            code: "unsupported_media_type",
        },
        Bad {
            name: "oversized body",
            endpoint: "text-to-model",
            body: t(json!({"style": "s".repeat(70_000)})),
            headers: vec![],
            status: 413,
            code: "payload_too_large",
        },
    ];
    let auth_cases: Vec<(&'static str, Option<String>)> = vec![
        ("no token", None),
        ("garbage token", Some("Bearer not.a.jwt".into())),
        (
            "bad signature",
            Some(format!(
                "Bearer {}",
                fake_storage::jwt::sign(
                    &claims(ctx, &ctx.alice, json!({})),
                    "wrong-secret-wrong-secret-wrong-secret"
                )
            )),
        ),
        (
            "expired token",
            Some(format!(
                "Bearer {}",
                token(
                    ctx,
                    claims(
                        ctx,
                        &ctx.alice,
                        json!({"exp": now - 3600, "iat": now - 7200})
                    )
                )
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                token(ctx, claims(ctx, &ctx.alice, json!({"aud": "other"})))
            )),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                token(
                    ctx,
                    claims(
                        ctx,
                        &ctx.alice,
                        json!({"iss": "https://evil.example/auth/v1"})
                    )
                )
            )),
        ),
        (
            "anon key as token",
            Some(format!("Bearer {}", ctx.stack.anon_key)),
        ),
        (
            "service key as token",
            Some(format!("Bearer {}", ctx.stack.service_key)),
        ),
        ("basic auth scheme", Some("Basic YWxpY2U6cHc=".into())),
    ];
    for (name, auth) in auth_cases {
        let headers = match auth {
            Some(a) => vec![("authorization".to_string(), a)],
            None => vec![("authorization".to_string(), String::new())],
        };
        cases.push(Bad {
            name,
            endpoint: "text-to-model",
            body: t(json!({})),
            headers,
            status: 401,
            code: "unauthorized",
        });
    }
    Ok(cases)
}

fn bad_input_table(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("bad");
    let cases = bad_cases(ctx, &task)?;
    check(cases.len() >= 40, || format!("only {} cases", cases.len()))?;
    let mut failures = Vec::new();
    for c in &cases {
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            (
                "authorization".into(),
                format!("Bearer {}", ctx.alice.token),
            ),
        ];
        for (k, v) in &c.headers {
            headers.retain(|(hk, _)| hk != k);
            if !v.is_empty() {
                headers.push((k.clone(), v.clone()));
            }
        }
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = ctx.call(
            "POST",
            &format!("/generate/{}", c.endpoint),
            &refs,
            c.body.as_deref(),
        )?;
        if let Err(e) = expect_error(&r, c.status, c.code) {
            failures.push(format!("{}: {e:?}", c.name));
            continue;
        }
        if c.code == "validation_error" && c.status == 422 {
            let v = r.json()?;
            if v["error"]["details"]
                .as_array()
                .is_none_or(|d| d.is_empty())
            {
                failures.push(format!("{}: no per-field details: {}", c.name, r.text));
            }
        }
    }
    check(failures.is_empty(), || {
        format!(
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        )
    })?;
    // None of them created a step or a row.
    let s = ctx.status(&ctx.alice, &task, "")?;
    expect_error(&s, 404, "not_found")?;
    for table in ["concept_images", "models"] {
        let rows = ctx.rows(table, &task)?;
        check(rows.is_empty(), || {
            format!("rows left in {table}: {rows:?}")
        })?;
    }
    check(ctx.jobs_received(&task).is_empty(), || {
        "a job was enqueued for a refused request".into()
    })
}

fn same_request_twice(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("twice");
    let body = json!({"task_id": task, "prompt": "a lamp", "texture": false});
    let first = ctx.generate(&ctx.alice, "text-to-model", &body)?;
    check(first.status == 202, || {
        format!("first: {} {}", first.status, first.text)
    })?;
    // Same fields in another order, with a default spelled out: the same request.
    let again = json!({"texture": false, "prompt": "a lamp", "task_id": task});
    let second = ctx.generate(&ctx.alice, "text-to-model", &again)?;
    check(second.status == 200, || {
        format!("second: {} {}", second.status, second.text)
    })?;
    let v = second.json()?;
    check(
        v["task_id"] == task.as_str() && v["step"] == "model",
        || second.text.clone(),
    )?;
    ctx.wait_for(Duration::from_secs(20), "the job message", || {
        Ok((!ctx.jobs_received(&task).is_empty()).then_some(()))
    })?;
    std::thread::sleep(Duration::from_millis(2500));
    let jobs: Vec<Value> = ctx
        .jobs_received(&task)
        .into_iter()
        .filter(|j| j["delivery"]["kind"] == "run" && j["delivery"]["try"] == 1)
        .collect();
    check(jobs.len() == 1, || {
        format!("expected one run message, got {jobs:?}")
    })?;
    let rows = ctx.rows("models", &task)?;
    check(rows.len() == 1, || format!("rows: {rows:?}"))
}

fn different_body_conflicts(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("conflict");
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": "a boat"}),
    )?;
    check(r.status == 202, || format!("{} {}", r.status, r.text))?;
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": "a plane"}),
    )?;
    expect_error(&r, 409, "task_conflict")?;
    // Another step of the same task is fine.
    let url = image(ctx, &ctx.alice, &format!("{}/conflict.png", ctx.run))?;
    let r = ctx.generate(
        &ctx.alice,
        "image-to-image",
        &json!({"task_id": task, "prompt": "a boat", "input_image_asset_url": url}),
    )?;
    check(r.status == 202, || {
        format!("concepts on the same task: {} {}", r.status, r.text)
    })?;
    let rows = ctx.rows("models", &task)?;
    check(rows.len() == 1 && rows[0]["prompt"] == "a boat", || {
        format!("rows: {rows:?}")
    })
}

fn other_user(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("owner");
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": "a vase"}),
    )?;
    check(r.status == 202, || format!("{} {}", r.status, r.text))?;
    let s = ctx.status(&ctx.bob, &task, "")?;
    expect_error(&s, 404, "not_found")?;
    let s = ctx.status(&ctx.bob, &task, "?step=model")?;
    expect_error(&s, 404, "not_found")?;
    let r = ctx.generate(
        &ctx.bob,
        "text-to-model",
        &json!({"task_id": task, "prompt": "a vase"}),
    )?;
    expect_error(&r, 409, "task_conflict")?;
    let rows = ctx.rows("models", &task)?;
    check(
        rows.len() == 1 && rows[0]["user_id"] == ctx.alice.id.to_string().as_str(),
        || format!("rows: {rows:?}"),
    )?;
    let s = ctx.status(&ctx.alice, &task, "")?;
    check(s.status == 200, || {
        format!("owner's status: {} {}", s.status, s.text)
    })
}

fn status_query_forms(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("query");
    let url = image(ctx, &ctx.alice, &format!("{}/query.png", ctx.run))?;
    let r = ctx.generate(
        &ctx.alice,
        "image-to-image",
        &json!({"task_id": task, "prompt": "a mug", "input_image_asset_url": url, "n": 3}),
    )?;
    check(r.status == 202, || format!("{} {}", r.status, r.text))?;
    let r = ctx.generate(
        &ctx.alice,
        "text-to-model",
        &json!({"task_id": task, "prompt": "a mug"}),
    )?;
    check(r.status == 202, || format!("{} {}", r.status, r.text))?;
    let latest = ctx.status(&ctx.alice, &task, "")?.json()?;
    check(
        latest["step"] == "model" && latest["service"] == "tripoai",
        || latest.to_string(),
    )?;
    check(
        latest["steps"].as_array().is_some_and(|s| s.len() == 2),
        || latest.to_string(),
    )?;
    for (q, step, service) in [
        ("?service=openai", "concepts", "openai"),
        ("?service=tripo", "model", "tripoai"),
        ("?service=tripoai", "model", "tripoai"),
        ("?step=concepts", "concepts", "openai"),
    ] {
        let v = ctx.status(&ctx.alice, &task, q)?.json()?;
        check(v["step"] == step && v["service"] == service, || {
            format!("{q}: {v}")
        })?;
        check(
            v["progress"].as_u64().is_some_and(|p| p <= 100) && v["asset_urls"].is_array(),
            || format!("{q}: {v}"),
        )?;
    }
    let bad = ctx.status(&ctx.alice, &task, "?step=paint")?;
    expect_error(&bad, 422, "validation_error")?;
    let none = ctx.status(&ctx.alice, &task, "?step=refine")?;
    expect_error(&none, 404, "not_found")
}

fn openapi_document(ctx: &Ctx) -> CaseResult {
    let r = ctx.call("GET", "/openapi.json", &[], None)?;
    check(r.status == 200, || format!("{} {}", r.status, r.text))?;
    let v = r.json()?;
    check(v["openapi"] == "3.1.0", || "version".into())?;
    for p in [
        "/generate/image-to-image",
        "/generate/text-to-model",
        "/generate/image-to-model",
        "/generate/sketch-to-model",
        "/generate/refine-model",
        "/tasks/{task_id}/status",
        "/health",
    ] {
        check(v["paths"].get(p).is_some(), || format!("{p} missing"))?;
    }
    Ok(())
}

fn storage_failure_leaves_nothing(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("dep");
    let name = format!("{}/dep-{}.png", ctx.run, &task[task.len() - 6..]);
    let url = image(ctx, &ctx.alice, &name)?;
    let prefix = format!(
        "/object/info/authenticated/{}/{}/{}",
        ctx.stack.input_bucket, ctx.alice.id, name
    );
    let fault = json!({"method": "GET", "path_prefix": prefix, "status": 503, "times": 1});
    let f = ctx.request(
        "POST",
        &format!("{}/__fake/storage/faults", ctx.stack.supabase_url),
        &[("content-type", "application/json")],
        Some(fault.to_string().into_bytes()),
    )?;
    check(f.status < 300, || format!("fault: {} {}", f.status, f.text))?;
    let body = json!({"task_id": task, "input_image_asset_urls": [url]});
    let r = ctx.generate(&ctx.alice, "image-to-model", &body)?;
    expect_error(&r, 503, "dependency_unavailable")?;
    check(!r.text.contains(&ctx.stack.service_key), || {
        "service key leaked".into()
    })?;
    expect_error(&ctx.status(&ctx.alice, &task, "")?, 404, "not_found")?;
    check(ctx.rows("models", &task)?.is_empty(), || "rows left".into())?;
    // The same request again succeeds.
    let r = ctx.generate(&ctx.alice, "image-to-model", &body)?;
    check(r.status == 202, || {
        format!("repeat: {} {}", r.status, r.text)
    })
}

fn row_insert_failure_leaves_nothing(ctx: &Ctx) -> CaseResult {
    let task = ctx.task_id("rowfail");
    // The gateway answers the worker's insert for this task (and only it) with a 503.
    let fault = json!({"method": "POST", "path_prefix": "/models", "status": 503, "times": 1, "match_body": task});
    let f = ctx.request(
        "POST",
        &format!("{}/__fake/rest/faults", ctx.stack.supabase_url),
        &[("content-type", "application/json")],
        Some(fault.to_string().into_bytes()),
    )?;
    check(f.status < 300, || format!("fault: {} {}", f.status, f.text))?;
    let body = json!({"task_id": task, "prompt": "a desk lamp"});
    let r = ctx.generate(&ctx.alice, "text-to-model", &body)?;
    expect_error(&r, 503, "dependency_unavailable")?;
    expect_error(&ctx.status(&ctx.alice, &task, "")?, 404, "not_found")?;
    check(ctx.rows("models", &task)?.is_empty(), || "rows left".into())?;
    check(ctx.jobs_received(&task).is_empty(), || {
        "a job was enqueued".into()
    })?;
    let r = ctx.generate(&ctx.alice, "text-to-model", &body)?;
    check(r.status == 202, || {
        format!("repeat: {} {}", r.status, r.text)
    })?;
    let rows = ctx.rows("models", &task)?;
    check(rows.len() == 1, || format!("rows after repeat: {rows:?}"))
}
