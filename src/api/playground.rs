//! The playground (docs/playground.md): `GET /` serves the page from the static assets (the
//! `ASSETS` binding) with a Content-Security-Policy that names the configured Supabase origin,
//! and `GET /playground/config.json` the page's public configuration.

use worker::{Env, Headers, Request, Response};

use crate::core::error::ApiError;
use crate::core::playground;
use crate::reply::{internal, Reply};
use crate::settings;

/// The static-assets binding of `wrangler.toml` (`[assets] binding`).
const ASSETS_BINDING: &str = "ASSETS";

/// `GET /`: the page, as the assets hold it, with the security headers of a document.
pub async fn page(req: Request, env: &Env) -> Result<Reply, ApiError> {
    let not_found = || ApiError::RouteNotFound("/".into());
    // Without the assets (a deployment that left them out) there is no page.
    let assets = env.assets(ASSETS_BINDING).map_err(|_| not_found())?;
    let mut asset = assets
        .fetch(req.inner().url(), None)
        .await
        .map_err(internal)?;
    if asset.status_code() != 200 {
        return Err(not_found());
    }
    let html = asset.text().await.map_err(internal)?;
    // An invalid configuration still gets the page (it shows /playground/config.json's error).
    let origin = settings::loaded(env)
        .as_ref()
        .ok()
        .map(|c| &c.supabase_origin);
    let headers = Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).map_err(internal);
    set("content-type", "text/html; charset=utf-8")?;
    set("content-security-policy", &playground::csp(origin))?;
    set("x-content-type-options", "nosniff")?;
    set("referrer-policy", "no-referrer")?;
    set("cache-control", "no-cache")?;
    Ok(Reply::Raw(
        Response::ok(html).map_err(internal)?.with_headers(headers),
    ))
}

/// `GET /playground/config.json`: the Supabase URL, its publishable key and the auth mode; a
/// misconfigured worker answers 503 `misconfigured` naming the settings.
pub fn config_json(env: &Env) -> Result<Reply, ApiError> {
    let c = settings::config(env)?;
    Reply::json(200, &playground::config_json(c))
}
