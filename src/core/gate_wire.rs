//! The wire contract between callers and a provider gate's Durable Object (`gate_object` and its
//! callers both import it): its binding, and one JSON request per call — `POST /acquire`
//! [`AcquireRequest`] → [`AcquireReply`]; `POST /release` [`ReleaseRequest`] → `{"woken": n}`;
//! `POST /position` [`PositionRequest`] → [`PositionReply`] (the status endpoint's live
//! `queue_position`); for a queue batch, `POST /acquire-many` [`AcquireManyRequest`] →
//! [`AcquireManyReply`] and `POST /release-many` [`ReleaseManyRequest`] → `{"woken": n}` (one
//! call for the batch's messages instead of one each). One object per gate (`idFromName(GateName::as_str())`).

use serde::{Deserialize, Serialize};

use crate::gate::{Acquire, SlotKey};

/// Binding name of the gate namespace (wrangler.toml).
pub const BINDING: &str = "GATES";

/// The object's paths (a request goes to `https://object{path}`).
pub const ACQUIRE_PATH: &str = "/acquire";
pub const RELEASE_PATH: &str = "/release";
pub const POSITION_PATH: &str = "/position";
pub const ACQUIRE_MANY_PATH: &str = "/acquire-many";
pub const RELEASE_MANY_PATH: &str = "/release-many";

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

/// Acquires for several keys in order, as that many [`AcquireRequest`]s would.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcquireManyRequest {
    pub keys: Vec<SlotKey>,
    pub capacity: u32,
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcquireManyReply {
    /// One answer per key, in the request's order.
    pub acquire: Vec<Acquire>,
}

/// Releases several keys, as that many [`ReleaseRequest`]s would (each waiter entitled to a
/// slot is woken once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseManyRequest {
    pub keys: Vec<SlotKey>,
    pub capacity: u32,
}
