//! `makeit3d-core`: the pure core of makeit3d-bff — every decision the worker makes, and the
//! orchestration of its jobs over side-effect traits. No `worker`, `wasm-bindgen`, `web-sys` or
//! `js-sys` in its dependency tree (`scripts/test.sh` checks `cargo tree`), so the compiler keeps
//! it pure; everything here builds and is unit-tested natively (`cargo test -p makeit3d-core`).
//!
//! The worker crate (`src/`, the glue) reaches it as `crate::core`: it reads the runtime into
//! these types, asks these modules what to do, and acts on the runtime.

// Tests build fixtures from `json!` literals, compare floats and counts loosely and match the
// variants they expect: pedantic lints that fit the library (linted without these) but not them.
#![cfg_attr(
    test,
    allow(
        clippy::needless_pass_by_value,
        clippy::match_wildcard_for_single_variants,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::missing_panics_doc,
        clippy::ref_option
    )
)]

// Settings, errors, logs and the HTTP surface.
pub mod config;
pub mod error;
pub mod log;
pub mod openapi;
pub mod route;

// Identifiers, requests and the task.
pub mod ids;
pub mod request;
pub mod status;
pub mod step;
pub mod task;

// Policies: retries, gates, per-user limits, live status, webhooks.
pub mod gate;
pub mod limits;
pub mod live;
pub mod retry;
pub mod webhook;

// Wire formats: the Durable Objects' contracts, queue messages, providers, Supabase.
pub mod gate_wire;
pub mod jobs;
pub mod jwt;
pub mod openai;
pub mod playground;
pub mod rest;
pub mod rows;
pub mod storage_path;
pub mod supabase;
pub mod task_wire;
pub mod tripo;
pub mod tripo_v3;
pub mod tripo_webhook;

// The orchestration over ports (submit, jobs, alarm, dead letters), with in-memory ports for tests.
pub mod flow;
