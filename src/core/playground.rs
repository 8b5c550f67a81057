//! The playground page (`GET /`, docs/playground.md): its Content-Security-Policy and the
//! non-secret configuration it reads from `GET /playground/config.json`.
//!
//! Pure: the glue passes the validated [`Config`] (or nothing, when it is invalid).

use serde_json::{json, Value};

use crate::config::{AuthMode, Config};
use crate::storage_path::Origin;

/// The inputs bucket the page suggests (the source document's, and the default of
/// `migrations/0002_input_storage_policies.sql`); the page lets the user change it.
pub const DEFAULT_INPUT_BUCKET: &str = "user_input_files_bucket";

/// The SHA-256 of the one inline `<style>` the page runs: the stylesheet in the shadow root of
/// `<model-viewer>` (`lib/template.js` of @google/model-viewer 4.4.0). `scripts/playground-build.sh`
/// recomputes it from node_modules and fails when an upgrade changed it.
pub const MODEL_VIEWER_STYLE_SHA256: &str = "PXtZZkJMMyc18o/DN1ZEFOJ2qEGq95IQbVaJFMOXOb0=";

/// The page's Content-Security-Policy: everything from the worker's own origin only, plus the
/// Supabase project's origin for API calls and images (sign-in, uploads, concept images, the
/// model file), `blob:` for the viewer (three.js decodes the model's embedded textures from
/// blob URLs) and for previews of a chosen file, `data:` images. Two narrow allowances that
/// model-viewer needs, found by the Chromium test: `'wasm-unsafe-eval'` (three.js's meshopt
/// decoder compiles WebAssembly when it loads; JavaScript `eval` stays forbidden) and the hash
/// of model-viewer's own shadow-root `<style>`. No other inline script or style, no frames, no
/// plugins, no forms posted anywhere.
pub fn csp(supabase: Option<&Origin>) -> String {
    let sb = supabase
        .map(|o| format!(" {}", o.as_url()))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
         style-src 'self' 'sha256-{MODEL_VIEWER_STYLE_SHA256}'; \
         img-src 'self' blob: data:{sb}; connect-src 'self' blob: data:{sb}; \
         font-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; \
         manifest-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'; object-src 'none'"
    )
}

/// `GET /playground/config.json`: what the page needs to talk to Supabase and to say how the
/// worker authenticates. Only public values: the project URL, its publishable (anon) key —
/// never the service key — and the auth mode.
pub fn config_json(c: &Config) -> Value {
    json!({
        "supabase_url": c.supabase_url,
        "supabase_anon_key": c.supabase_anon_key,
        "auth_mode": c.auth_mode,
        "local_only": c.auth_mode == AuthMode::None,
        "anonymous_users": c.anonymous_users,
        "input_bucket": DEFAULT_INPUT_BUCKET,
        "max_input_bytes": c.max_input_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut vars = vec![
            ("SUPABASE_URL", "https://abc.supabase.co"),
            ("SUPABASE_SERVICE_KEY", "service-secret-xyz"),
            ("SUPABASE_JWT_SECRET", "jwt-secret-xyz"),
            ("OPENAI_API_KEY", "sk-secret-xyz"),
            ("TRIPO_API_KEY", "tsk-secret-xyz"),
        ];
        vars.extend_from_slice(extra);
        Config::load(|name| {
            vars.iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("valid config")
    }

    #[test]
    fn csp_allows_self_and_the_project_only() {
        let origin = Origin::parse("https://abc.supabase.co/").expect("origin");
        let p = csp(Some(&origin));
        assert!(p.starts_with("default-src 'none'; script-src 'self' 'wasm-unsafe-eval';"));
        assert!(p.contains(&format!(
            "style-src 'self' 'sha256-{MODEL_VIEWER_STYLE_SHA256}';"
        )));
        assert!(p.contains("connect-src 'self' blob: data: https://abc.supabase.co;"));
        assert!(p.contains("img-src 'self' blob: data: https://abc.supabase.co;"));
        assert!(
            !p.contains("unsafe-inline") && !p.contains("'unsafe-eval'"),
            "{p}"
        );
        assert!(p.contains("frame-ancestors 'none'"));
        let local = Origin::parse("http://127.0.0.1:54321").expect("origin");
        assert!(
            csp(Some(&local)).contains("connect-src 'self' blob: data: http://127.0.0.1:54321;")
        );
        assert!(csp(None).contains("connect-src 'self' blob: data:;"));
    }

    #[test]
    fn config_holds_no_secret() {
        let c = config(&[
            ("SUPABASE_ANON_KEY", "anon-public-key"),
            ("AUTH_MODE", "none"),
        ]);
        let v = config_json(&c);
        let text = v.to_string();
        for secret in [
            "service-secret-xyz",
            "jwt-secret-xyz",
            "sk-secret-xyz",
            "tsk-secret-xyz",
        ] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(v["supabase_url"], "https://abc.supabase.co");
        assert_eq!(v["supabase_anon_key"], "anon-public-key");
        assert_eq!(v["auth_mode"], "none");
        assert_eq!(v["local_only"], true);
        assert_eq!(v["input_bucket"], DEFAULT_INPUT_BUCKET);
        let v = config_json(&config(&[]));
        assert_eq!(v["supabase_anon_key"], Value::Null);
        assert_eq!(v["local_only"], false);
        assert_eq!(v["auth_mode"], "supabase");
    }
}
