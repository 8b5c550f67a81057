//! Per-user limits (SPEC §11 "Limits"): accepted submits per rolling minute and unfinished steps
//! at once, with their own (lower) values for anonymous sign-ins. Pure: the decisions of the
//! per-user Durable Object (`user_limits.rs`) and of the submit path, tested natively.
//!
//! The Durable Object keeps two tables: one *mark* per accepted submit (kept for
//! [`WINDOW_MS`]) and one *entry* per unfinished `(task_id, step)` of the user. A submit
//! reserves before anything is created ([`decide`] then [`plan_reserve`]); a submit that then
//! creates nothing (a refusal, a dependency failure) cancels its reservation ([`plan_cancel`]),
//! and an idempotent repeat takes its mark back. Entries leave when their step is final: when the
//! user is at the limit, the entries are checked against the task Durable Objects ([`verdict`]),
//! which is both the normal release and the healing of a lost cancel. An entry also leaves on its
//! own after its deadline ([`entry_deadline_ms`]), so nothing stays counted forever.

use serde::{Deserialize, Serialize};

use crate::step::Step;

/// The rolling window of the submits-per-minute limit.
pub const WINDOW_MS: u64 = 60_000;
/// A reservation younger than this may belong to a submit still running: its step may not be in
/// the task's Durable Object yet, so a check that does not see it keeps the entry.
pub const IN_FLIGHT_MS: u64 = 60_000;
/// An entry is dropped without any check this long after its step's own deadline
/// (`TRIPO_DEADLINE_SECONDS` after its submit), when the task's alarm has failed it anyway.
pub const DEADLINE_GRACE_MS: u64 = 5 * 60_000;
/// `Retry-After` of an active-steps refusal is at most this (a step may finish any time).
pub const ACTIVE_RETRY_AFTER_MAX_S: u64 = 10;
/// `Retry-After` of a refusal by the Rate Limiting binding (its period).
pub const BINDING_RETRY_AFTER_S: u64 = 60;
/// At most this many entries are checked against their tasks per refused reservation (the
/// oldest first), so the cost of a check is bounded whatever the limit.
pub const HEAL_BATCH: usize = 16;
/// The largest value of any limit setting.
pub const MAX_SETTING: u32 = 100_000;

/// The limits of one kind of caller. 0 = that limit is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Accepted submits (new steps and retries of failed ones) in any rolling minute.
    pub submits_per_minute: u32,
    /// Steps submitted and not yet final (complete, failed, or past their deadline).
    pub active_steps: u32,
}

impl Tier {
    pub const OFF: Tier = Tier {
        submits_per_minute: 0,
        active_steps: 0,
    };

    /// Neither limit applies: the submit path asks no Durable Object.
    pub fn is_off(self) -> bool {
        self.submits_per_minute == 0 && self.active_steps == 0
    }
}

/// Every per-user limit of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Signed-in users.
    pub user: Tier,
    /// Supabase anonymous sign-ins (`is_anonymous: true`, admitted with `ANONYMOUS_USERS=allow`).
    pub anonymous: Tier,
    /// Consult the Workers Rate Limiting binding (the flood guard) before anything else.
    pub use_binding: bool,
}

impl Limits {
    pub fn tier(&self, anonymous: bool) -> Tier {
        if anonymous {
            self.anonymous
        } else {
            self.user
        }
    }

    /// Settings whose values contradict each other: an anonymous limit looser than the signed-in
    /// one (anonymous limits are meant to be lower; 0 = off is the loosest of all).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (name, user_name, user, anon) in [
            (
                "RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS",
                "RATE_LIMIT_SUBMITS_PER_MINUTE",
                self.user.submits_per_minute,
                self.anonymous.submits_per_minute,
            ),
            (
                "MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS",
                "MAX_ACTIVE_STEPS_PER_USER",
                self.user.active_steps,
                self.anonymous.active_steps,
            ),
        ] {
            if user > 0 && (anon == 0 || anon > user) {
                out.push((
                    name,
                    format!("must be from 1 to {user_name} while {user_name} is on"),
                ));
            }
        }
        out
    }
}

/// Which limit refused a submit (the `details[].limit` of the 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// `RATE_LIMIT_SUBMITS_PER_MINUTE`: accepted submits in the last 60 s (exact).
    SubmitsPerMinute,
    /// `MAX_ACTIVE_STEPS_PER_USER`: unfinished steps (exact).
    ActiveSteps,
    /// The Rate Limiting binding: every authenticated submit request, repeats and refused ones
    /// included (the flood guard; its limit is in `wrangler.toml`).
    SubmitRequestsPerMinute,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::SubmitsPerMinute => "submits_per_minute",
            LimitKind::ActiveSteps => "active_steps",
            LimitKind::SubmitRequestsPerMinute => "submit_requests_per_minute",
        }
    }
}

/// A submit refused by a limit: 429 `rate_limited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub limit: LimitKind,
    /// The configured maximum (`None` for the binding, whose limit the code cannot read).
    pub max: Option<u32>,
    /// Seconds until a submit may succeed (`Retry-After`), ≥ 1.
    pub retry_after_s: u64,
}

impl Refused {
    /// The refusal's message (safe to show).
    pub fn message(&self) -> String {
        match (self.limit, self.max) {
            (LimitKind::SubmitsPerMinute, Some(m)) => {
                format!(
                    "at most {m} submits per minute; try again in {} s",
                    self.retry_after_s
                )
            }
            (LimitKind::ActiveSteps, Some(m)) => format!(
                "at most {m} unfinished steps at once; try again when one is complete or failed"
            ),
            _ => format!(
                "too many submit requests; try again in {} s",
                self.retry_after_s
            ),
        }
    }
}

/// What the Durable Object knows when a reservation arrives (after dropping what expired).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Marks of the last [`WINDOW_MS`].
    pub submits_in_window: u32,
    /// The oldest of them.
    pub oldest_submit_ms: Option<u64>,
    /// Entries (unfinished steps).
    pub active: u32,
    /// The submitted `(task_id, step)` is already counted (a repeat, a resumed submit, or the
    /// retry of a failed step whose entry was not released yet): it needs no new slot.
    pub has_entry: bool,
    /// The earliest entry deadline.
    pub earliest_deadline_ms: Option<u64>,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// At the active-steps limit: check the entries against their tasks, then decide again.
    Heal,
    Refuse(Refused),
}

fn ceil_s(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// Whether a submit may be accepted now. `healed`: the entries were just checked (no second
/// check: refuse).
pub fn decide(tier: Tier, u: &Usage, now_ms: u64, healed: bool) -> Decision {
    let per_min = tier.submits_per_minute;
    if per_min > 0 && u.submits_in_window >= per_min {
        let free_at = u
            .oldest_submit_ms
            .map_or(now_ms, |t| t.saturating_add(WINDOW_MS));
        return Decision::Refuse(Refused {
            limit: LimitKind::SubmitsPerMinute,
            max: Some(per_min),
            retry_after_s: ceil_s(free_at.saturating_sub(now_ms)).clamp(1, WINDOW_MS / 1000),
        });
    }
    let active = tier.active_steps;
    if active > 0 && !u.has_entry && u.active >= active {
        if !healed {
            return Decision::Heal;
        }
        let wait = u
            .earliest_deadline_ms
            .map_or(ACTIVE_RETRY_AFTER_MAX_S, |d| {
                ceil_s(d.saturating_sub(now_ms))
            });
        return Decision::Refuse(Refused {
            limit: LimitKind::ActiveSteps,
            max: Some(active),
            retry_after_s: wait.clamp(1, ACTIVE_RETRY_AFTER_MAX_S),
        });
    }
    Decision::Accept
}

/// One unfinished step of the user, as the Durable Object stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub task_id: String,
    pub step: Step,
    /// When the reservation that last wrote it was made (the submit's clock).
    pub since_ms: u64,
    /// Dropped without a check after this ([`entry_deadline_ms`]).
    pub deadline_at_ms: u64,
    /// The reservation that last wrote it.
    pub reservation: u64,
}

/// When an entry made at `since_ms` for a step with a budget of `budget_ms` is dropped at the
/// latest.
pub fn entry_deadline_ms(since_ms: u64, budget_ms: u64) -> u64 {
    since_ms
        .saturating_add(budget_ms)
        .saturating_add(DEADLINE_GRACE_MS)
}

/// An accepted reservation: what the submit sends back to cancel it or to take its mark back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: u64,
    pub task_id: String,
    pub step: Step,
    /// A mark was written (the submits-per-minute limit is on).
    pub marked: bool,
    /// An entry was written (the active-steps limit is on).
    pub entered: bool,
    /// The entry of the same `(task_id, step)` it replaced, restored by a cancel.
    pub previous: Option<Entry>,
}

/// What an accepted reservation writes: its mark (if any) and its entry (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveWrites {
    pub mark_at_ms: Option<u64>,
    pub entry: Option<Entry>,
    pub reservation: Reservation,
}

/// The writes of an accepted reservation `id` for `(task_id, step)`, given the entry already
/// there (if any).
pub fn plan_reserve(
    tier: Tier,
    id: u64,
    task_id: &str,
    step: Step,
    existing: Option<Entry>,
    now_ms: u64,
    budget_ms: u64,
) -> ReserveWrites {
    let marked = tier.submits_per_minute > 0;
    let entered = tier.active_steps > 0;
    let entry = entered.then(|| Entry {
        task_id: task_id.to_owned(),
        step,
        since_ms: now_ms,
        deadline_at_ms: entry_deadline_ms(now_ms, budget_ms),
        reservation: id,
    });
    ReserveWrites {
        mark_at_ms: marked.then_some(now_ms),
        entry,
        reservation: Reservation {
            id,
            task_id: task_id.to_owned(),
            step,
            marked,
            entered,
            previous: if entered { existing } else { None },
        },
    }
}

/// What happens to the entry of a cancelled reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryUndo {
    /// Another reservation wrote it since (or there was none): leave it.
    Keep,
    Delete,
    Restore(Entry),
}

/// Undoing reservation `r` entirely (its submit created nothing): its mark goes, and its entry
/// goes back to what it replaced, unless a later reservation wrote it since.
pub fn plan_cancel(r: &Reservation, current: Option<&Entry>) -> EntryUndo {
    match current {
        Some(e) if r.entered && e.reservation == r.id => match &r.previous {
            Some(prev) => EntryUndo::Restore(prev.clone()),
            None => EntryUndo::Delete,
        },
        _ => EntryUndo::Keep,
    }
}

/// What a check of an entry saw in the task's Durable Object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The task could not be read: keep the entry (it expires on its own).
    Unreachable,
    /// No such task, a task of another user, or no such step in it.
    NoStep,
    /// The step: final or not, and when its current attempt was submitted.
    Step {
        is_final: bool,
        submitted_at_ms: u64,
    },
}

/// Whether a checked entry still counts.
///
/// A step that is not final counts. A final step whose current attempt was submitted at or after
/// the entry's reservation is the entry's own attempt (or a later one): released. A final older
/// attempt, or no step at all, means the reserving submit has not reached the task yet (kept
/// while it may still be running, [`IN_FLIGHT_MS`]) or never will (released).
#[allow(clippy::match_same_arms)] // one arm per case: the table of the doc above
pub fn verdict(e: &Entry, seen: Seen, now_ms: u64) -> bool {
    let in_flight = now_ms < e.since_ms.saturating_add(IN_FLIGHT_MS);
    match seen {
        Seen::Unreachable => true,
        Seen::NoStep => in_flight,
        Seen::Step {
            is_final: false, ..
        } => true,
        Seen::Step {
            is_final: true,
            submitted_at_ms,
        } => submitted_at_ms < e.since_ms && in_flight,
    }
}

/// The repeat check of a refused submit: whether the caller's task already has this step
/// unfinished or complete (not failed), so that the same request again is answered by the task
/// (200 for an identical body, 409 for another) instead of 429. A failed step would be retried:
/// that is a new submit and counts.
pub fn is_repeat(owner_matches: bool, step_status_failed: Option<bool>) -> bool {
    owner_matches && step_status_failed == Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tier = Tier {
        submits_per_minute: 3,
        active_steps: 2,
    };

    fn usage(submits: u32, oldest: Option<u64>, active: u32) -> Usage {
        Usage {
            submits_in_window: submits,
            oldest_submit_ms: oldest,
            active,
            has_entry: false,
            earliest_deadline_ms: None,
        }
    }

    #[test]
    fn under_both_limits_is_accepted() {
        assert_eq!(
            decide(T, &usage(2, Some(1_000), 1), 5_000, false),
            Decision::Accept
        );
    }

    #[test]
    fn the_n_plus_first_submit_in_a_minute_is_refused_until_the_oldest_leaves() {
        let d = decide(T, &usage(3, Some(10_000), 0), 25_500, false);
        assert_eq!(
            d,
            Decision::Refuse(Refused {
                limit: LimitKind::SubmitsPerMinute,
                max: Some(3),
                retry_after_s: 45, // 10 s + 60 s − 25.5 s, rounded up
            })
        );
        // One millisecond before the oldest mark leaves the window: 1 s, never 0.
        let d = decide(T, &usage(3, Some(10_000), 0), 69_999, false);
        assert!(matches!(d, Decision::Refuse(r) if r.retry_after_s == 1));
    }

    #[test]
    fn at_the_active_limit_a_check_comes_first_then_a_refusal() {
        let u = Usage {
            earliest_deadline_ms: Some(1_000_000),
            ..usage(0, None, 2)
        };
        assert_eq!(decide(T, &u, 1_000, false), Decision::Heal);
        assert_eq!(
            decide(T, &u, 1_000, true),
            Decision::Refuse(Refused {
                limit: LimitKind::ActiveSteps,
                max: Some(2),
                retry_after_s: ACTIVE_RETRY_AFTER_MAX_S,
            })
        );
        // An entry about to expire: retry when it has.
        let soon = Usage {
            earliest_deadline_ms: Some(3_200),
            ..u
        };
        assert!(
            matches!(decide(T, &soon, 1_000, true), Decision::Refuse(r) if r.retry_after_s == 3)
        );
    }

    #[test]
    fn a_step_already_counted_needs_no_slot() {
        let u = Usage {
            has_entry: true,
            ..usage(0, None, 2)
        };
        assert_eq!(decide(T, &u, 1_000, false), Decision::Accept);
    }

    #[test]
    fn the_per_minute_limit_is_checked_before_the_active_one() {
        let d = decide(T, &usage(3, Some(0), 5), 1_000, false);
        assert!(matches!(d, Decision::Refuse(r) if r.limit == LimitKind::SubmitsPerMinute));
    }

    #[test]
    fn zero_is_off() {
        assert!(Tier::OFF.is_off());
        let u = usage(1_000, Some(0), 1_000);
        assert_eq!(decide(Tier::OFF, &u, 1, true), Decision::Accept);
        let only_active = Tier {
            submits_per_minute: 0,
            active_steps: 1,
        };
        assert!(!only_active.is_off());
        assert_eq!(
            decide(only_active, &u, 1, true),
            Decision::Refuse(Refused {
                limit: LimitKind::ActiveSteps,
                max: Some(1),
                retry_after_s: ACTIVE_RETRY_AFTER_MAX_S,
            })
        );
        // Off limits write nothing.
        let w = plan_reserve(Tier::OFF, 1, "t", Step::Model, None, 5, 10);
        assert_eq!(w.mark_at_ms, None);
        assert_eq!(w.entry, None);
    }

    fn entry(task: &str, since: u64, reservation: u64) -> Entry {
        Entry {
            task_id: task.into(),
            step: Step::Model,
            since_ms: since,
            deadline_at_ms: entry_deadline_ms(since, 1_800_000),
            reservation,
        }
    }

    #[test]
    fn a_reservation_writes_a_mark_and_an_entry_and_remembers_what_it_replaced() {
        let old = entry("t-1", 100, 7);
        let w = plan_reserve(
            T,
            9,
            "t-1",
            Step::Model,
            Some(old.clone()),
            5_000,
            1_800_000,
        );
        assert_eq!(w.mark_at_ms, Some(5_000));
        let e = w.entry.unwrap();
        assert_eq!((e.since_ms, e.reservation), (5_000, 9));
        assert_eq!(e.deadline_at_ms, 5_000 + 1_800_000 + DEADLINE_GRACE_MS);
        assert_eq!(w.reservation.previous, Some(old));
        assert!(w.reservation.marked && w.reservation.entered);
    }

    #[test]
    fn a_cancel_restores_the_entry_unless_another_reservation_wrote_it() {
        let old = entry("t-1", 100, 7);
        let w = plan_reserve(
            T,
            9,
            "t-1",
            Step::Model,
            Some(old.clone()),
            5_000,
            1_800_000,
        );
        let mine = w.entry.clone().unwrap();
        assert_eq!(
            plan_cancel(&w.reservation, Some(&mine)),
            EntryUndo::Restore(old)
        );
        let fresh = plan_reserve(T, 10, "t-2", Step::Model, None, 5_000, 1_800_000);
        let e = fresh.entry.clone().unwrap();
        assert_eq!(plan_cancel(&fresh.reservation, Some(&e)), EntryUndo::Delete);
        // A later reservation (a concurrent repeat) took the entry over: it is theirs now.
        let theirs = entry("t-2", 5_001, 11);
        assert_eq!(
            plan_cancel(&fresh.reservation, Some(&theirs)),
            EntryUndo::Keep
        );
        assert_eq!(plan_cancel(&fresh.reservation, None), EntryUndo::Keep);
    }

    #[test]
    fn a_final_step_releases_its_entry() {
        let e = entry("t", 10_000, 1);
        let done = |at| Seen::Step {
            is_final: true,
            submitted_at_ms: at,
        };
        // Its own attempt (submitted after the reservation, on the same clock) is final.
        assert!(!verdict(&e, done(10_000), 11_000));
        assert!(!verdict(&e, done(10_050), 500_000));
        // Running: counts, however old.
        let running = Seen::Step {
            is_final: false,
            submitted_at_ms: 10_050,
        };
        assert!(verdict(&e, running, 11_000));
        assert!(verdict(&e, running, 10_000_000));
    }

    #[test]
    fn a_submit_still_running_keeps_its_entry_until_it_cannot_be_running() {
        let e = entry("t", 10_000, 1);
        // The task has not seen it yet, or shows the failed attempt it retries.
        let older = Seen::Step {
            is_final: true,
            submitted_at_ms: 2_000,
        };
        assert!(verdict(&e, Seen::NoStep, 10_500));
        assert!(verdict(&e, older, 10_500));
        // A submit that died (its cancel lost): released once it cannot be running any more.
        assert!(!verdict(&e, Seen::NoStep, 10_000 + IN_FLIGHT_MS));
        assert!(!verdict(&e, older, 10_000 + IN_FLIGHT_MS));
        // An unreadable task keeps the entry (it expires at its deadline).
        assert!(verdict(&e, Seen::Unreachable, 10_000_000));
    }

    #[test]
    fn anonymous_limits_must_be_lower() {
        let ok = Limits {
            user: T,
            anonymous: Tier {
                submits_per_minute: 1,
                active_steps: 2,
            },
            use_binding: true,
        };
        assert!(ok.problems().is_empty());
        assert_eq!(ok.tier(true).submits_per_minute, 1);
        assert_eq!(ok.tier(false).submits_per_minute, 3);
        let looser = Limits {
            anonymous: Tier {
                submits_per_minute: 4,
                active_steps: 0,
            },
            ..ok
        };
        let names: Vec<_> = looser.problems().into_iter().map(|p| p.0).collect();
        assert_eq!(
            names,
            [
                "RATE_LIMIT_SUBMITS_PER_MINUTE_ANONYMOUS",
                "MAX_ACTIVE_STEPS_PER_USER_ANONYMOUS"
            ]
        );
        // Signed-in users unlimited: anything goes for anonymous ones.
        let open = Limits {
            user: Tier::OFF,
            ..looser
        };
        assert!(open.problems().is_empty());
    }

    #[test]
    fn repeats_are_steps_that_exist_and_did_not_fail() {
        assert!(is_repeat(true, Some(false)));
        assert!(!is_repeat(true, Some(true)));
        assert!(!is_repeat(true, None));
        assert!(!is_repeat(false, Some(false)));
    }

    #[test]
    fn refusals_name_their_limit() {
        let r = Refused {
            limit: LimitKind::ActiveSteps,
            max: Some(2),
            retry_after_s: 10,
        };
        assert!(r.message().contains("at most 2 unfinished steps"));
        assert_eq!(
            LimitKind::SubmitRequestsPerMinute.as_str(),
            "submit_requests_per_minute"
        );
        assert_eq!(
            serde_json::to_value(LimitKind::SubmitsPerMinute).unwrap(),
            "submits_per_minute"
        );
    }
}
