//! The provider gate Durable Object: one per provider account (`idFromName("tripo")`,
//! `"openai"`), SQLite-backed, holding a `core::gate::Gate`. It only translates: load → apply →
//! persist → alarm, and sends the run messages of the waiters a release entitled to a slot. Its
//! alarm heals: holders past their limit and silent waiters leave; while anyone waits, holders are
//! verified against their task's Durable Object (a final step or another attempt frees the slot).
//!
//! Requests: the contract of `core::gate_wire` (acquire, release, position).

use std::cell::Cell;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::core::flow;
use crate::core::gate::Gate;
use crate::core::gate::{Acquire, SlotKey};
use crate::core::gate_wire::{
    AcquireManyReply, AcquireManyRequest, AcquireReply, AcquireRequest, PositionReply,
    PositionRequest, ReleaseManyRequest, ReleaseReply, ReleaseRequest, ACQUIRE_MANY_PATH,
    ACQUIRE_PATH, POSITION_PATH, RELEASE_MANY_PATH, RELEASE_PATH,
};
use crate::net::now_ms;
use crate::record::Record;
use crate::runtime::{Runtime, Tasks};

/// Storage key of the gate's state.
const STATE_KEY: &str = "gate";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GateRecord {
    gate: Gate,
    /// The capacity of the last request (the alarm has no request).
    capacity: u32,
}

#[durable_object]
pub struct ProviderGate {
    state: State,
    env: Env,
    /// The gate: JSON in storage, cached here after the first read (`record`).
    record: Record<GateRecord>,
    /// The alarm time this instance last set: the same time is not set again (cleared when the
    /// alarm fires; a new instance sets it again).
    armed: Cell<Option<u64>>,
}

impl ProviderGate {
    async fn load(&self) -> Result<GateRecord> {
        Ok(self
            .record
            .get(&self.state.storage())
            .await?
            .unwrap_or_default())
    }

    /// The ports the gate uses: task state reads and the jobs queue (no settings needed).
    fn runtime(&self) -> Runtime<'_> {
        Runtime::new(&self.env, None, Tasks::Stub)
    }

    async fn save(&self, r: &GateRecord, now: u64) -> Result<()> {
        self.record.put(&self.state.storage(), r).await?;
        if let Some(at) = r.gate.next_alarm_ms() {
            if self.armed.get() != Some(at) {
                let delay = at.saturating_sub(now).max(1);
                self.state
                    .storage()
                    .set_alarm(Duration::from_millis(delay))
                    .await?;
                self.armed.set(Some(at));
            }
        }
        Ok(())
    }
}

impl ProviderGate {
    /// Acquires for `keys` in order (one write for all); one answer per key.
    async fn acquire(
        &self,
        keys: &[SlotKey],
        capacity: u32,
        deadline_ms: u64,
        now: u64,
    ) -> Result<Vec<Acquire>> {
        let mut r = self.load().await?;
        r.capacity = capacity;
        let acquire = keys
            .iter()
            .map(|k| r.gate.acquire(k, capacity, deadline_ms, now))
            .collect();
        self.save(&r, now).await?;
        Ok(acquire)
    }

    /// Releases `keys` (one write for all) and wakes each waiter now entitled to a slot once;
    /// how many were woken.
    async fn release(&self, keys: &[SlotKey], capacity: u32, now: u64) -> Result<usize> {
        let mut r = self.load().await?;
        r.capacity = capacity;
        let mut woken = Vec::new();
        for key in keys {
            for k in r.gate.release(key, capacity, now) {
                if !woken.contains(&k) {
                    woken.push(k);
                }
            }
        }
        self.save(&r, now).await?;
        Ok(flow::gate::wake(&self.runtime(), woken).await)
    }
}

impl DurableObject for ProviderGate {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            record: Record::new(STATE_KEY),
            armed: Cell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let now = now_ms();
        match req.path().as_str() {
            ACQUIRE_PATH => {
                let body: AcquireRequest = crate::stub::read_json(&mut req).await?;
                let keys = std::slice::from_ref(&body.key);
                let acquire = self
                    .acquire(keys, body.capacity, body.deadline_ms, now)
                    .await?;
                match acquire.into_iter().next() {
                    Some(acquire) => Response::from_json(&AcquireReply { acquire }),
                    None => Response::error("no answer", 500),
                }
            }
            ACQUIRE_MANY_PATH => {
                let body: AcquireManyRequest = crate::stub::read_json(&mut req).await?;
                let acquire = self
                    .acquire(&body.keys, body.capacity, body.deadline_ms, now)
                    .await?;
                Response::from_json(&AcquireManyReply { acquire })
            }
            RELEASE_PATH => {
                let body: ReleaseRequest = crate::stub::read_json(&mut req).await?;
                let woken = self
                    .release(std::slice::from_ref(&body.key), body.capacity, now)
                    .await?;
                Response::from_json(&ReleaseReply { woken })
            }
            RELEASE_MANY_PATH => {
                let body: ReleaseManyRequest = crate::stub::read_json(&mut req).await?;
                let woken = self.release(&body.keys, body.capacity, now).await?;
                Response::from_json(&ReleaseReply { woken })
            }
            POSITION_PATH => {
                let body: PositionRequest = crate::stub::read_json(&mut req).await?;
                let r = self.load().await?;
                Response::from_json(&PositionReply {
                    position: r.gate.position(&body.key),
                })
            }
            _ => Response::error("unknown gate command", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.armed.set(None);
        let now = now_ms();
        let mut r = self.load().await?;
        let rt = self.runtime();
        let capacity = r.capacity;
        let woken = flow::gate::heal(&rt, &mut r.gate, capacity, now).await;
        self.save(&r, now).await?;
        flow::gate::wake(&rt, woken).await;
        Response::empty()
    }
}
