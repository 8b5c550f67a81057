//! Per-user limits (SPEC §11, issue P10): submits per minute and unfinished steps per user, with
//! lower limits for anonymous sign-ins, and the Rate Limiting binding as a flood guard. Every
//! refusal is 429 `rate_limited` with `Retry-After` and `details[0].limit`, and creates nothing:
//! no step in the task's Durable Object, no row, no job message, no provider request.
//!
//! The suite's worker runs with generous limits (the stack's settings); each case here starts a
//! worker of its own on the suite's stack with small ones, and uses users of its own.

use std::time::{Duration, Instant};

use e2e::{WorkerOptions, WorkerProcess};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use crate::support::{check, deliveries_in, expect_error, Case, CaseResult, Ctx, Reply, User};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "limits::active_steps_429_until_a_step_completes_or_fails_anonymous_lower",
            active_steps,
        ),
        (
            "limits::submits_per_minute_429_repeats_free_anonymous_lower_flood_guard",
            submits_per_minute,
        ),
    ]
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A worker of this case on the suite's stack (reusing the suite's build), with `extra`
/// settings over the stack's and anonymous sign-ins admitted.
fn own_worker(ctx: &Ctx, extra: &[(&str, &str)]) -> Result<WorkerProcess, Failed> {
    let mut settings: Vec<(String, String)> = ctx
        .stack
        .worker_vars()
        .into_iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    settings.push(("ANONYMOUS_USERS".into(), "allow".into()));
    for (k, v) in extra {
        settings.push(((*k).into(), (*v).into()));
    }
    WorkerProcess::start(WorkerOptions {
        settings,
        build_profile: "--version".into(),
        ..Default::default()
    })
    .map_err(|e| format!("could not start a worker: {e}").into())
}

/// A fresh signed-in user, or (`anonymous`) a fresh anonymous sign-in (an `auth.users` row, as
/// Supabase makes for one, and a token with `is_anonymous: true`).
fn fresh_user(ctx: &Ctx, label: &str, anonymous: bool) -> Result<User, Failed> {
    let email = format!("{label}-{}@limits.test", nonce());
    let (id, token) = ctx
        .rt
        .block_on(ctx.stack.create_user(&email))
        .map_err(|e| format!("creating a user: {e}"))?;
    let token = if anonymous {
        ctx.stack.anonymous_token(id, 600)
    } else {
        token
    };
    Ok(User { id, token })
}

struct On<'a> {
    ctx: &'a Ctx,
    worker: &'a WorkerProcess,
}

impl On<'_> {
    fn generate(&self, user: &User, endpoint: &str, body: &Value) -> Result<Reply, Failed> {
        let auth = format!("Bearer {}", user.token);
        self.ctx.request(
            "POST",
            &format!("{}/generate/{endpoint}", self.worker.base_url),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body.to_string().into_bytes()),
        )
    }

    /// A text-to-model submit whose Tripo task runs `directive` (`run_s=…`, `final=…`).
    fn model(&self, user: &User, task: &str, n: &str, directive: &str) -> Result<Reply, Failed> {
        self.generate(
            user,
            "text-to-model",
            &json!({"task_id": task, "prompt": format!("a lamp [[fake:{directive},nonce={n}]]")}),
        )
    }

    fn status(&self, user: &User, task: &str) -> Result<Reply, Failed> {
        let auth = format!("Bearer {}", user.token);
        self.ctx.request(
            "GET",
            &format!("{}/tasks/{task}/status?step=model", self.worker.base_url),
            &[("authorization", &auth)],
            None,
        )
    }

    fn wait_final(&self, user: &User, task: &str, want: &str) -> CaseResult {
        let start = Instant::now();
        loop {
            let r = self.status(user, task)?;
            let v = r.json()?;
            if v["status"] == want {
                return Ok(());
            }
            check(v["status"] != "complete" && v["status"] != "failed", || {
                format!("{task} ended {} instead of {want}: {}", v["status"], r.text)
            })?;
            check(start.elapsed() < Duration::from_secs(90), || {
                format!("{task} not {want} after 90 s: {}", r.text)
            })?;
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The 429 of `limit` with `max` (`None`: no `max`), its `Retry-After` within `1..=retry_max`.
    fn expect_limited(
        &self,
        r: &Reply,
        limit: &str,
        max: Option<u64>,
        retry_max: u64,
    ) -> CaseResult {
        expect_error(r, 429, "rate_limited")?;
        let retry = r
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("no Retry-After: {:?}", r.headers))?;
        check((1..=retry_max).contains(&retry), || {
            format!("Retry-After {retry} not in 1..={retry_max}")
        })?;
        let v = r.json()?;
        let d = &v["error"]["details"][0];
        check(d["limit"] == limit, || {
            format!("details name {limit}: {}", r.text)
        })?;
        check(d["max"].as_u64() == max, || {
            format!("details max {max:?}: {}", r.text)
        })?;
        check(d["message"].as_str().is_some_and(|m| !m.is_empty()), || {
            format!("details message: {}", r.text)
        })
    }

    /// Nothing of `task` exists: no rows, no step (404), no job message, no Tripo request.
    fn nothing_created(&self, user: &User, task: &str, n: &str) -> CaseResult {
        // A message would have been sent during the submit; give the consumer time to log it.
        std::thread::sleep(Duration::from_millis(1200));
        let rows = self.ctx.rows("models", task)?;
        check(rows.is_empty(), || {
            format!("models rows of {task}: {rows:?}")
        })?;
        expect_error(&self.status(user, task)?, 404, "not_found")?;
        let log = self.worker.log();
        let jobs = deliveries_in(&log, task).len();
        check(jobs == 0, || format!("{jobs} job messages for {task}"))?;
        let fakes = self
            .ctx
            .stack
            .fakes()
            .ok_or("the stack runs no provider fakes")?;
        let calls = fakes.log(Some(n));
        check(calls.is_empty(), || {
            format!("Tripo requests for {task}: {calls:?}")
        })
    }
}

fn expect_status(r: &Reply, status: u16, what: &str) -> CaseResult {
    check(r.status == status, || {
        format!("{what}: expected {status}, got {} {}", r.status, r.text)
    })
}

/// `MAX_ACTIVE_STEPS_PER_USER=2` (anonymous 1), the per-minute limits off.
fn active_steps(ctx: &Ctx) -> CaseResult {
    let worker = own_worker(
        ctx,
        &[
            ("RATE_LIMIT_SUBMITS_PER_MINUTE", "0"),
            ("RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS", "0"),
            ("MAX_ACTIVE_STEPS_PER_USER", "2"),
            ("MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS", "1"),
        ],
    )?;
    let on = On {
        ctx,
        worker: &worker,
    };
    let user = fresh_user(ctx, "active", false)?;
    let t = |s: &str| ctx.task_id(&format!("lim-act-{s}"));
    let (done, fails, third, fourth) = (t("done"), t("fails"), t("third"), t("fourth"));
    let (nd, nf, n3, n4) = (nonce(), nonce(), nonce(), nonce());
    expect_status(&on.model(&user, &done, &nd, "run_s=4")?, 202, "first")?;
    expect_status(
        &on.model(&user, &fails, &nf, "run_s=30,final=failed")?,
        202,
        "second",
    )?;
    // Two unfinished: the third is refused, and nothing of it exists.
    let r = on.model(&user, &third, &n3, "run_s=0")?;
    on.expect_limited(&r, "active_steps", Some(2), 10)?;
    on.nothing_created(&user, &third, &n3)?;
    // An identical repeat of an unfinished step is answered by its task, not refused.
    let again = on.model(&user, &done, &nd, "run_s=4")?;
    expect_status(&again, 200, "repeat at the limit")?;
    // The first completes: its slot is free for the third.
    on.wait_final(&user, &done, "complete")?;
    expect_status(
        &on.model(&user, &third, &n3, "run_s=0")?,
        202,
        "after a step completed",
    )?;
    on.wait_final(&user, &third, "complete")?;
    // One unfinished (the failing one): the fourth fits, the fifth does not.
    let r = on.model(&user, &fourth, &n4, "run_s=40")?;
    expect_status(&r, 202, "fourth")?;
    let fifth = t("fifth");
    let n5 = nonce();
    let r = on.model(&user, &fifth, &n5, "run_s=0")?;
    on.expect_limited(&r, "active_steps", Some(2), 10)?;
    // A failed step frees its slot too.
    on.wait_final(&user, &fails, "failed")?;
    expect_status(
        &on.model(&user, &fifth, &n5, "run_s=0")?,
        202,
        "after a step failed",
    )?;
    // Anonymous sign-ins: one unfinished step at a time.
    let anon = fresh_user(ctx, "active-anon", true)?;
    let (a1, a2) = (t("anon1"), t("anon2"));
    let (na1, na2) = (nonce(), nonce());
    expect_status(
        &on.model(&anon, &a1, &na1, "run_s=6")?,
        202,
        "anonymous first",
    )?;
    let r = on.model(&anon, &a2, &na2, "run_s=0")?;
    on.expect_limited(&r, "active_steps", Some(1), 10)?;
    on.nothing_created(&anon, &a2, &na2)?;
    // A signed-in user is not affected by anyone else's count.
    let other = fresh_user(ctx, "active-other", false)?;
    let o = t("other");
    expect_status(
        &on.model(&other, &o, &nonce(), "run_s=0")?,
        202,
        "another user",
    )?;
    let events = worker
        .log()
        .lines()
        .filter(|l| l.contains("limits.refused") && l.contains(&user.id.to_string()))
        .count();
    check(events >= 2, || {
        format!("{events} limits.refused events for the user")
    })
}

/// `RATE_LIMIT_SUBMITS_PER_MINUTE=3` (anonymous 2), the active-steps limits off, the flood guard
/// on (wrangler.toml: 30 and 10 requests per minute).
fn submits_per_minute(ctx: &Ctx) -> CaseResult {
    let worker = own_worker(
        ctx,
        &[
            ("RATE_LIMIT_SUBMITS_PER_MINUTE", "3"),
            ("RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS", "2"),
            ("MAX_ACTIVE_STEPS_PER_USER", "0"),
            ("MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS", "0"),
            ("RATE_LIMIT_USE_BINDING", "true"),
        ],
    )?;
    let on = On {
        ctx,
        worker: &worker,
    };
    let user = fresh_user(ctx, "minute", false)?;
    let t = |s: &str| ctx.task_id(&format!("lim-min-{s}"));
    // An identical repeat does not count: A, A again, B, C are three submits.
    let (a, b, c, d) = (t("a"), t("b"), t("c"), t("d"));
    let (na, nb, nc, nd) = (nonce(), nonce(), nonce(), nonce());
    expect_status(&on.model(&user, &a, &na, "run_s=0")?, 202, "a")?;
    expect_status(&on.model(&user, &a, &na, "run_s=0")?, 200, "a again")?;
    expect_status(&on.model(&user, &b, &nb, "run_s=0")?, 202, "b")?;
    expect_status(&on.model(&user, &a, &na, "run_s=0")?, 200, "a a third time")?;
    expect_status(&on.model(&user, &c, &nc, "run_s=0")?, 202, "c")?;
    // The fourth submit of the minute is refused and creates nothing.
    let r = on.model(&user, &d, &nd, "run_s=0")?;
    on.expect_limited(&r, "submits_per_minute", Some(3), 60)?;
    on.nothing_created(&user, &d, &nd)?;
    // At the limit, the same request again is still answered by its task.
    expect_status(
        &on.model(&user, &b, &nb, "run_s=0")?,
        200,
        "b again at the limit",
    )?;
    // A different body for an existing step is still a conflict, not a 429.
    let other_body = on.model(&user, &b, &nonce(), "run_s=1")?;
    expect_error(&other_body, 409, "task_conflict")?;
    // Anonymous sign-ins: two per minute.
    let anon = fresh_user(ctx, "minute-anon", true)?;
    let (x, y, z) = (t("x"), t("y"), t("z"));
    let nz = nonce();
    expect_status(&on.model(&anon, &x, &nonce(), "run_s=0")?, 202, "anon x")?;
    expect_status(&on.model(&anon, &y, &nonce(), "run_s=0")?, 202, "anon y")?;
    let r = on.model(&anon, &z, &nz, "run_s=0")?;
    on.expect_limited(&r, "submits_per_minute", Some(2), 60)?;
    on.nothing_created(&anon, &z, &nz)?;
    // The flood guard counts every authenticated submit request, refused ones too: 21 requests
    // in at most two of its one-minute windows put at least 11 in one, over its limit of 10.
    let flooder = fresh_user(ctx, "minute-flood", true)?;
    let missing = format!(
        "{}/storage/v1/object/authenticated/{}/{}/missing-{}.png",
        ctx.stack.supabase_url,
        ctx.stack.input_bucket,
        flooder.id,
        nonce()
    );
    let mut statuses = Vec::new();
    let mut guarded = None;
    for i in 0..21 {
        let body = json!({"task_id": t(&format!("flood{i}")), "input_image_asset_urls": [missing]});
        let r = on.generate(&flooder, "image-to-model", &body)?;
        statuses.push(r.status);
        if r.status == 429 && guarded.is_none() {
            guarded = Some(r);
        } else if r.status != 429 {
            expect_error(&r, 422, "input_asset_not_found")?;
        }
    }
    let r = guarded.ok_or_else(|| format!("the flood guard never refused: {statuses:?}"))?;
    on.expect_limited(&r, "submit_requests_per_minute", None, 60)?;
    check(r.header("retry-after").as_deref() == Some("60"), || {
        format!(
            "Retry-After of the flood guard: {:?}",
            r.header("retry-after")
        )
    })
}
