//! Supabase over `fetch`: Storage (inputs, outputs) and PostgREST (rows). Requests are built from
//! `core` descriptions and authenticated with the service key, which never leaves the worker.

pub mod rest;
pub mod storage;
