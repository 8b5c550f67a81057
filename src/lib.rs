//! makeit3d-bff: the backend-for-frontend of MakeIt3D, a Cloudflare Worker.
//!
//! Entry points only. `core` decides (pure, tested natively); `flow` orchestrates the jobs over
//! side-effect traits (pure too, tested natively with in-memory ports); `runtime` implements those
//! traits; `http`, `api`, `jobs`, `task_object`, `providers` and `supabase` translate between
//! the runtime and the core.

/// The pure core crate (`src/core/`, `makeit3d-core`), as `crate::core`.
pub use makeit3d_core as core;

pub mod auth;
pub mod http;
pub mod log;
pub mod net;
pub mod providers;
pub mod supabase;

pub mod api;
pub mod gate_object;
pub mod jobs;
pub mod runtime;
pub mod task_client;
pub mod task_object;
pub mod user_limits;

pub use gate_object::ProviderGate;
pub use task_object::TaskObject;
pub use user_limits::UserLimits;

use worker::{event, Context, Env, MessageBatch, Request, Response};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    http::handle(req, env, ctx).await
}

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    jobs::consume(batch, env).await
}
