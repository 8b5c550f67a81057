//! Contract tests of the fake Supabase gateway: each starts a gateway on port 0 with its own
//! temp dir and drives it over HTTP with reqwest, as the worker would.

#![allow(clippy::unwrap_used)]

mod common;

mod auth;
mod chaos;
mod control;
mod jwks;
mod large;
mod policies;
mod rest;
mod storage;
