//! The wire contract between callers and a provider gate's Durable Object (`gate_object` and its
//! callers both import it): its binding, and one JSON request per call — `POST /acquire`
//! [`AcquireRequest`] → [`AcquireReply`]; `POST /release` [`ReleaseRequest`] → `{"woken": n}`;
//! `POST /position` [`PositionRequest`] → [`PositionReply`] (the status endpoint's live
//! `queue_position`). One object per gate (`idFromName(GateName::as_str())`).

use serde::{Deserialize, Serialize};

use crate::gate::{Acquire, SlotKey};

/// Binding name of the gate namespace (wrangler.toml).
pub const BINDING: &str = "GATES";

/// The object's paths (a request goes to `https://object{path}`).
pub const ACQUIRE_PATH: &str = "/acquire";
pub const RELEASE_PATH: &str = "/release";
pub const POSITION_PATH: &str = "/position";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcquireRequest {
    pub key: SlotKey,
    pub capacity: u32,
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcquireReply {
    pub acquire: Acquire,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PositionRequest {
    pub key: SlotKey,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PositionReply {
    /// The place in line, `None` when the key holds a slot or is not in line.
    pub position: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub key: SlotKey,
    pub capacity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseReply {
    /// How many waiters the release woke.
    pub woken: usize,
}
