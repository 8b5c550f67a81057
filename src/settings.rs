//! The worker's settings: read from the environment (`[vars]` and secrets) and validated by
//! `core::config` once per isolate, then kept for the isolate's life — the environment of an
//! isolate never changes. Every entry point (HTTP, queue, Durable Objects) reads them from here.

use std::cell::OnceCell;

use worker::Env;

use crate::core::config::{AuthMode, Config, Invalid};
use crate::core::error::ApiError;

/// The configuration, or what is wrong with it.
pub type Loaded = Result<Config, Invalid>;

thread_local! {
    /// This isolate's settings (Workers isolates are single-threaded). Leaked once per isolate,
    /// so every request borrows them for as long as it likes.
    static LOADED: OnceCell<&'static Loaded> = const { OnceCell::new() };
}

/// Reads a setting from `[vars]` or a secret, whichever holds it.
pub fn lookup(env: &Env, name: &str) -> Option<String> {
    if let Ok(v) = env.var(name) {
        return Some(v.to_string());
    }
    env.secret(name).ok().map(|s| s.to_string())
}

/// This isolate's settings, loaded by the first call.
pub fn loaded(env: &Env) -> &'static Loaded {
    LOADED.with(|cell| {
        *cell.get_or_init(|| Box::leak(Box::new(Config::load(|name| lookup(env, name)))))
    })
}

/// The configuration, or the misconfiguration error naming every bad setting.
pub fn config(env: &Env) -> Result<&'static Config, ApiError> {
    loaded(env).as_ref().map_err(|invalid| {
        ApiError::Misconfigured(invalid.names().into_iter().map(str::to_owned).collect())
    })
}

/// `Access-Control-Allow-Origin` of every response, a misconfigured worker's too.
pub fn cors_allow_origin(env: &Env) -> &'static str {
    match loaded(env) {
        Ok(c) => &c.cors_allow_origin,
        Err(invalid) => &invalid.cors_allow_origin,
    }
}

/// Whether `AUTH_MODE=none` (every caller is the local user), valid configuration or not.
pub fn auth_off(env: &Env) -> bool {
    let mode = match loaded(env) {
        Ok(c) => c.auth_mode,
        Err(invalid) => invalid.auth_mode,
    };
    mode == AuthMode::None
}
