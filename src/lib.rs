//! makeit3d-bff: the backend-for-frontend of MakeIt3D, a Cloudflare Worker.
//!
//! Entry points only. The pure core — every decision, the wire formats, and the orchestration of
//! the jobs over side-effect traits — is the `makeit3d-core` crate (`src/core/`), reached here as
//! `crate::core`. This crate is the glue: `http` routes to the `api` handlers; `jobs` consumes
//! the queue; `task_object`, `gate_object` and `user_limits` are the Durable Objects; `runtime`
//! implements the core's ports over the Workers runtime; `task_client`, `stub`, `queue`,
//! `supabase`, `providers`, `auth` and `net` are the clients; `settings`, `reply` and `log` are
//! the shared glue below them all. Dependencies run one way (`scripts/module-graph.py`).

/// The pure core crate (`src/core/`, `makeit3d-core`), as `crate::core`.
pub use makeit3d_core as core;

// Entry layer: routing, the handlers, the queue consumer, the Durable Objects.
pub mod api;
pub mod gate_object;
pub mod http;
pub mod jobs;
pub mod task_object;
pub mod user_limits;

// The core's ports over the runtime, and the clients.
pub mod auth;
pub mod net;
pub mod providers;
pub mod queue;
pub mod record;
pub mod runtime;
pub mod stub;
pub mod supabase;
pub mod task_client;
pub mod view;

// Shared glue.
pub mod log;
pub mod reply;
pub mod settings;

pub use gate_object::ProviderGate;
pub use task_object::TaskObject;
pub use user_limits::UserLimits;

use worker::{event, Context, Env, MessageBatch, Request};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    http::handle(req, env, ctx).await
}

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    jobs::consume(batch, env).await
}
