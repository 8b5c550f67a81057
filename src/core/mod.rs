//! The pure core of the service: every decision the worker makes, with no `worker` import.
//!
//! Everything here compiles and is unit-tested natively (`cargo test`). The glue in `http/`,
//! `api/`, `jobs/`, `task_object.rs`, `providers/` and `supabase/` calls into these modules to
//! decide, then acts on the runtime.

pub mod ids;
pub mod step;

pub mod jwt;
pub mod limits;
pub mod playground;
pub mod request;
pub mod rows;
pub mod status;
pub mod storage_path;
pub mod supabase;
pub mod task;
pub mod task_wire;

pub mod gate;

pub mod jobs;
pub mod live;
pub mod openai;
pub mod rest;
pub mod retry;
pub mod tripo;
pub mod webhook;
