//! Authentication end to end (SPEC §5): asymmetric Supabase tokens (ES256, RS256) verified
//! against the project's JWKS, cached, refetched on an unknown `kid` (key rotation); tokens of
//! unknown keys refused.

use std::time::Duration;

use serde_json::json;

use crate::support::{check, expect_error, Case, CaseResult, Ctx, User};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![(
        "auth::jwks_tokens_es256_rs256_rotation_and_cache",
        jwks_tokens,
    )]
}

fn as_user(ctx: &Ctx, token: String) -> User {
    User {
        id: ctx.alice.id,
        token,
    }
}

fn jwks_tokens(ctx: &Ctx) -> CaseResult {
    let gw = ctx.stack.gateway().ok_or("the stack has no gateway")?;
    let keys = gw.keys();
    let iss = gw.auth_issuer();
    let sub = ctx.alice.id.to_string();

    // ES256 and RS256 tokens of the project work for submit and status.
    for (alg, token) in [
        ("es256", keys.user_token_es256(&sub, 600, Some(&iss))),
        ("rs256", keys.user_token_rs256(&sub, 600, Some(&iss))),
    ] {
        let user = as_user(ctx, token);
        let task = ctx.task_id(alg);
        let r = ctx.generate(
            &user,
            "text-to-model",
            &json!({"task_id": task, "prompt": "a teapot"}),
        )?;
        check(r.status == 202, || {
            format!("{alg}: {} {}", r.status, r.text)
        })?;
        let s = ctx.status(&user, &task, "")?;
        check(s.status == 200, || {
            format!("{alg} status: {} {}", s.status, s.text)
        })?;
        let rows = ctx.rows("models", &task)?;
        check(
            rows.len() == 1 && rows[0]["user_id"] == sub.as_str(),
            || format!("{alg} rows: {rows:?}"),
        )?;
    }

    // The JWKS is cached: many requests, few fetches.
    let before = gw.jwks_hits();
    let user = as_user(ctx, keys.user_token_es256(&sub, 600, Some(&iss)));
    for _ in 0..10 {
        let s = ctx.call(
            "GET",
            "/tasks/none-such/status",
            &[("authorization", &format!("Bearer {}", user.token))],
            None,
        )?;
        expect_error(&s, 404, "not_found")?;
    }
    let fetched = gw.jwks_hits() - before;
    check(fetched <= 1, || {
        format!("10 requests fetched the JWKS {fetched} times")
    })?;

    // A token of an unknown key set is refused (after at most one refetch).
    let stranger = fake_storage::SigningKeys::new();
    let bad = as_user(ctx, stranger.user_token_es256(&sub, 600, Some(&iss)));
    let r = ctx.generate(
        &bad,
        "text-to-model",
        &json!({"task_id": ctx.task_id("stranger"), "prompt": "x"}),
    )?;
    expect_error(&r, 401, "unauthorized")?;

    // Rotation: a new signing key is picked up by refetching on its unknown kid.
    std::thread::sleep(Duration::from_millis(2200));
    keys.rotate_es256();
    let rotated = as_user(ctx, keys.user_token_es256(&sub, 600, Some(&iss)));
    let task = ctx.task_id("rotated");
    let r = ctx.generate(
        &rotated,
        "text-to-model",
        &json!({"task_id": task, "prompt": "a kettle"}),
    )?;
    check(r.status == 202, || {
        format!("after rotation: {} {}", r.status, r.text)
    })?;

    // An ES256 token whose issuer is another project is refused even with a known key.
    let other = as_user(
        ctx,
        keys.user_token_es256(&sub, 600, Some("https://other.supabase.co/auth/v1")),
    );
    let r = ctx.generate(
        &other,
        "text-to-model",
        &json!({"task_id": ctx.task_id("iss"), "prompt": "x"}),
    )?;
    expect_error(&r, 401, "unauthorized")
}
