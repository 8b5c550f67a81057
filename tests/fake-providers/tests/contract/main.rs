//! Contract tests of the fake providers, over real HTTP with reqwest. One binary; each test
//! starts its own fake on a free port, so tests run in parallel without sharing state.

mod chaos;
mod common;
mod control;
mod files;
mod openai;
mod tripo;
