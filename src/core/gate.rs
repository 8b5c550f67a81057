//! A provider account's concurrency gate (SPEC §11 "Limits"): at most `capacity` provider tasks
//! running at once for the whole service (Tripo's own limit is 10; above it Tripo answers 2000),
//! handed out in the order steps asked, and taken back when a step's provider task is over.
//!
//! One gate lives in one Durable Object per provider (`TRIPO_MAX_CONCURRENT_TASKS`,
//! `OPENAI_MAX_CONCURRENT_REQUESTS`); this module is its whole logic. A slot is held by one
//! attempt of one step ([`SlotKey`]). Every way out is covered:
//! - the holder's release (its provider task succeeded or failed, its step failed) frees it and
//!   wakes the waiters now entitled to a slot ([`Gate::release`] returns them);
//! - a release that was lost: while anyone waits, holders not checked for [`HOLDER_CHECK_MS`] are
//!   verified against their task ([`Gate::due_checks`]; a final step or another attempt frees the
//!   slot), and a slot is never held past [`Gate::hold_limit_ms`] after it was granted;
//! - a waiter that stopped asking (its task was deleted, its step failed) leaves the line after
//!   [`WAITER_LEASE_MS`] without a word from it (waiting steps ask again every
//!   `core::task::SLOT_RECHECK_MS`).

use serde::{Deserialize, Serialize};

use super::ids::TaskId;
use super::step::Step;

/// While someone waits, a holder is verified against its task this long after its last check.
pub const HOLDER_CHECK_MS: u64 = 60 * 1000;
/// A waiter not heard from for this long leaves the line.
pub const WAITER_LEASE_MS: u64 = 3 * 60 * 1000;
/// Beyond the step's own deadline, how long a slot may still be held (a holder always fails by
/// its deadline, so this only matters when every release and every check was lost).
pub const HOLD_GRACE_MS: u64 = 5 * 60 * 1000;

/// The provider concurrency buckets with a gate; one Durable Object each, named by
/// [`GateName::as_str`]. Tripo counts refines apart from generation tasks (providers.md §1.8:
/// 10 generation tasks, 5 refines per account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateName {
    /// Tripo text/image/multiview tasks.
    Tripo,
    /// Tripo `refine_model` tasks.
    TripoRefine,
    OpenAi,
}

/// Tripo's own limit of `refine_model` tasks at once (providers.md §1.8).
pub const TRIPO_REFINE_LIMIT: u32 = 5;

impl GateName {
    pub fn as_str(self) -> &'static str {
        match self {
            GateName::Tripo => "tripo",
            GateName::TripoRefine => "tripo-refine",
            GateName::OpenAi => "openai",
        }
    }

    /// The gate a step's run job passes: OpenAI for concepts, Tripo's buckets for models and
    /// refines.
    pub fn of(step: Step) -> GateName {
        match step {
            Step::Concepts => GateName::OpenAi,
            Step::Model => GateName::Tripo,
            Step::Refine => GateName::TripoRefine,
        }
    }
}

/// Who holds or waits for a slot: one attempt of one step.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SlotKey {
    pub task_id: TaskId,
    pub step: Step,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub key: SlotKey,
    pub granted_at_ms: u64,
    /// Verified against its task at this time (or granted then).
    pub checked_at_ms: u64,
    /// The step's budget: the slot is freed at `granted_at_ms + deadline_ms + HOLD_GRACE_MS`.
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub key: SlotKey,
    pub since_ms: u64,
    pub seen_at_ms: u64,
    pub deadline_ms: u64,
}

/// The gate's state (persisted by its Durable Object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    pub holders: Vec<Holder>,
    /// In the order they first asked.
    pub waiting: Vec<Waiter>,
}

/// The answer to [`Gate::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "slot", rename_all = "snake_case")]
pub enum Acquire {
    /// Go on: the slot is this step's until it is released.
    Granted,
    /// Wait: `position` in line, 1 = first.
    Waiting { position: u32 },
}

impl Gate {
    fn holds(&self, key: &SlotKey) -> bool {
        self.holders.iter().any(|h| h.key == *key)
    }

    fn free(&self, capacity: u32) -> usize {
        (capacity as usize).saturating_sub(self.holders.len())
    }

    /// Asks for a slot for `key` (idempotent: a holder asking again is granted again; a waiter
    /// keeps its place). Slots go in order: only the first waiters, as many as there are free
    /// slots, may take one.
    pub fn acquire(
        &mut self,
        key: &SlotKey,
        capacity: u32,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Acquire {
        self.expire(now_ms);
        if self.holds(key) {
            return Acquire::Granted;
        }
        let index = match self.waiting.iter().position(|w| w.key == *key) {
            Some(i) => {
                self.waiting[i].seen_at_ms = now_ms;
                i
            }
            None => {
                self.waiting.push(Waiter {
                    key: key.clone(),
                    since_ms: now_ms,
                    seen_at_ms: now_ms,
                    deadline_ms,
                });
                self.waiting.len() - 1
            }
        };
        if index < self.free(capacity) {
            let w = self.waiting.remove(index);
            self.holders.push(Holder {
                key: w.key,
                granted_at_ms: now_ms,
                checked_at_ms: now_ms,
                deadline_ms: w.deadline_ms,
            });
            return Acquire::Granted;
        }
        Acquire::Waiting {
            position: u32::try_from(index + 1).unwrap_or(u32::MAX),
        }
    }

    /// Frees `key`'s slot (or its place in line). Returns the waiters that may now take a slot
    /// (the first ones, as many as are free), to be woken; empty when nothing was freed.
    pub fn release(&mut self, key: &SlotKey, capacity: u32, now_ms: u64) -> Vec<SlotKey> {
        let before = (self.holders.len(), self.waiting.len());
        self.holders.retain(|h| h.key != *key);
        self.waiting.retain(|w| w.key != *key);
        let changed = before != (self.holders.len(), self.waiting.len());
        let expired = self.expire(now_ms);
        if !changed && !expired {
            return Vec::new();
        }
        self.entitled(capacity)
    }

    /// The waiters entitled to a slot now.
    pub fn entitled(&self, capacity: u32) -> Vec<SlotKey> {
        self.waiting
            .iter()
            .take(self.free(capacity))
            .map(|w| w.key.clone())
            .collect()
    }

    /// The place of `key` in line (1 = first), `None` when it holds a slot or is not known.
    pub fn position(&self, key: &SlotKey) -> Option<u32> {
        let i = self.waiting.iter().position(|w| w.key == *key)?;
        Some(u32::try_from(i + 1).unwrap_or(u32::MAX))
    }

    /// Drops holders past their hold limit and waiters not heard from for [`WAITER_LEASE_MS`];
    /// whether anything was dropped.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let before = (self.holders.len(), self.waiting.len());
        self.holders.retain(|h| now_ms < Gate::hold_limit_ms(h));
        self.waiting
            .retain(|w| now_ms < w.seen_at_ms.saturating_add(WAITER_LEASE_MS));
        before != (self.holders.len(), self.waiting.len())
    }

    /// When a holder's slot is freed whatever happens.
    pub fn hold_limit_ms(h: &Holder) -> u64 {
        h.granted_at_ms
            .saturating_add(h.deadline_ms)
            .saturating_add(HOLD_GRACE_MS)
    }

    /// Holders to verify against their task now: only while someone waits (a full gate with a
    /// lost release is the only case where it matters), each at most every [`HOLDER_CHECK_MS`].
    pub fn due_checks(&self, now_ms: u64) -> Vec<SlotKey> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        self.holders
            .iter()
            .filter(|h| now_ms >= h.checked_at_ms.saturating_add(HOLDER_CHECK_MS))
            .map(|h| h.key.clone())
            .collect()
    }

    /// A holder was verified and still runs.
    pub fn checked(&mut self, key: &SlotKey, now_ms: u64) {
        if let Some(h) = self.holders.iter_mut().find(|h| h.key == *key) {
            h.checked_at_ms = now_ms;
        }
    }

    /// When the gate's alarm should run next: the next holder check (while someone waits), the
    /// next hold limit or waiter lease; `None` when the gate is empty.
    pub fn next_alarm_ms(&self) -> Option<u64> {
        let checks = (!self.waiting.is_empty()).then(|| {
            self.holders
                .iter()
                .map(|h| h.checked_at_ms.saturating_add(HOLDER_CHECK_MS))
                .min()
        });
        let limits = self.holders.iter().map(Gate::hold_limit_ms);
        let leases = self
            .waiting
            .iter()
            .map(|w| w.seen_at_ms.saturating_add(WAITER_LEASE_MS));
        limits.chain(leases).chain(checks.flatten()).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: u64 = 30 * 60 * 1000;

    fn key(i: u32) -> SlotKey {
        SlotKey {
            task_id: TaskId::parse(&format!("t-{i}")).unwrap(),
            step: Step::Model,
            attempt: 1,
        }
    }

    #[test]
    fn slots_go_in_order_and_come_back_on_release() {
        let mut g = Gate::default();
        for i in 0..3 {
            assert_eq!(g.acquire(&key(i), 3, DEADLINE, 10), Acquire::Granted);
        }
        assert_eq!(
            g.acquire(&key(3), 3, DEADLINE, 11),
            Acquire::Waiting { position: 1 }
        );
        assert_eq!(
            g.acquire(&key(4), 3, DEADLINE, 12),
            Acquire::Waiting { position: 2 }
        );
        // Asking again keeps the place; a holder asking again is granted.
        assert_eq!(
            g.acquire(&key(4), 3, DEADLINE, 13),
            Acquire::Waiting { position: 2 }
        );
        assert_eq!(g.acquire(&key(1), 3, DEADLINE, 13), Acquire::Granted);
        // A release wakes the first waiter only; a later one cannot jump the line.
        assert_eq!(g.release(&key(0), 3, 20), vec![key(3)]);
        assert_eq!(
            g.acquire(&key(4), 3, DEADLINE, 21),
            Acquire::Waiting { position: 2 }
        );
        assert_eq!(g.position(&key(4)), Some(2));
        assert_eq!(g.acquire(&key(3), 3, DEADLINE, 22), Acquire::Granted);
        assert_eq!(g.position(&key(4)), Some(1));
        // Releasing twice frees nothing more.
        assert!(g.release(&key(0), 3, 23).is_empty());
        assert_eq!(g.holders.len(), 3);
    }

    #[test]
    fn never_more_holders_than_capacity_whatever_the_order() {
        let mut g = Gate::default();
        let mut now = 0;
        for round in 0..50u32 {
            now += 100;
            let k = key(round % 17);
            if round % 3 == 0 {
                g.release(&key((round * 7) % 17), 4, now);
            } else {
                g.acquire(&k, 4, DEADLINE, now);
            }
            assert!(g.holders.len() <= 4);
            let mut keys: Vec<_> = g.holders.iter().map(|h| &h.key).collect();
            keys.extend(g.waiting.iter().map(|w| &w.key));
            let n = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), n, "a key is held or waits once");
        }
    }

    #[test]
    fn lost_releases_and_silent_waiters_heal() {
        let mut g = Gate::default();
        g.acquire(&key(0), 1, DEADLINE, 0);
        assert_eq!(
            g.due_checks(HOLDER_CHECK_MS),
            Vec::<SlotKey>::new(),
            "nobody waits"
        );
        assert_eq!(
            g.acquire(&key(1), 1, DEADLINE, 10),
            Acquire::Waiting { position: 1 }
        );
        assert_eq!(g.next_alarm_ms(), Some(HOLDER_CHECK_MS));
        assert_eq!(g.due_checks(HOLDER_CHECK_MS), vec![key(0)]);
        // Verified and still running: checked again a minute later.
        g.checked(&key(0), HOLDER_CHECK_MS);
        assert!(g.due_checks(HOLDER_CHECK_MS + 1).is_empty());
        // The waiter keeps asking; a second one goes silent and leaves.
        assert_eq!(
            g.acquire(&key(2), 1, DEADLINE, 20),
            Acquire::Waiting { position: 2 }
        );
        g.acquire(&key(1), 1, DEADLINE, WAITER_LEASE_MS);
        assert!(g.expire(WAITER_LEASE_MS + 20));
        assert_eq!(g.waiting.len(), 1);
        // Past its hold limit, the holder's slot is freed and the waiter entitled.
        let limit = DEADLINE + HOLD_GRACE_MS;
        g.acquire(&key(1), 1, DEADLINE, limit - 1);
        assert_eq!(g.release(&key(9), 1, limit), vec![key(1)]);
        assert!(g.holders.is_empty());
    }
}
