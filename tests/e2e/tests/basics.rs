//! Foundation cases: health, unknown routes, wrong methods, CORS.

use crate::support::{check, expect_error, Case, CaseResult, Ctx};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "basics::health_is_200_json_and_names_no_secret",
            health_is_200_json,
        ),
        (
            "basics::unknown_route_is_404_error_shape",
            unknown_route_is_404,
        ),
        (
            "basics::wrong_method_is_405_with_allow",
            wrong_method_is_405,
        ),
        ("basics::cors_preflight_and_headers", cors_preflight),
    ]
}

fn health_is_200_json(ctx: &Ctx) -> CaseResult {
    let r = ctx.call("GET", "/health", &[], None)?;
    check(r.status == 200, || format!("status {}", r.status))?;
    check(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        || "content-type".into(),
    )?;
    let v = r.json()?;
    check(v["service"] == "makeit3d-bff", || r.text.clone())?;
    check(
        v["status"] == "ok" || v["status"] == "misconfigured",
        || r.text.clone(),
    )?;
    check(v["problems"].is_array(), || r.text.clone())
}

fn unknown_route_is_404(ctx: &Ctx) -> CaseResult {
    let r = ctx.call("GET", "/nope", &[], None)?;
    expect_error(&r, 404, "not_found")?;
    let r = ctx.call(
        "POST",
        "/generate/select-concept",
        &[("content-type", "application/json")],
        Some("{}"),
    )?;
    expect_error(&r, 404, "not_found")
}

fn wrong_method_is_405(ctx: &Ctx) -> CaseResult {
    let r = ctx.call("DELETE", "/health", &[], None)?;
    expect_error(&r, 405, "method_not_allowed")?;
    check(r.header("allow").is_some_and(|a| a.contains("GET")), || {
        format!("allow: {:?}", r.header("allow"))
    })?;
    let r = ctx.call("GET", "/generate/text-to-model", &[], None)?;
    expect_error(&r, 405, "method_not_allowed")?;
    check(
        r.header("allow").as_deref() == Some("POST, OPTIONS"),
        || format!("allow: {:?}", r.header("allow")),
    )
}

fn cors_preflight(ctx: &Ctx) -> CaseResult {
    let r = ctx.call(
        "OPTIONS",
        "/generate/text-to-model",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ],
        None,
    )?;
    check(r.status == 204, || format!("preflight status {}", r.status))?;
    check(
        r.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")),
        || "allow-methods".into(),
    )?;
    check(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization")),
        || "allow-headers".into(),
    )?;
    let r = ctx.call("GET", "/nope", &[("origin", "https://app.example")], None)?;
    check(r.header("access-control-allow-origin").is_some(), || {
        "errors carry CORS headers too".into()
    })
}
