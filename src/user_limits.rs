//! Per-user limits (SPEC §11): the `UserLimits` Durable Object (one per user, `idFromName(user
//! id)`, SQLite-backed) and the submit path's calls to it and to the Workers Rate Limiting
//! binding. Every decision is `core::limits`; this only stores and fetches.
//!
//! Requests: `POST /reserve` `ReserveRequest` → `ReserveReply`; `POST /release`
//! `ReleaseRequest` → `{}`. The object keeps two tables (`marks`: one row per accepted submit of
//! the last minute; `entries`: one row per unfinished `(task_id, step)`). SQL calls are
//! synchronous, so a check and its writes are atomic; the only awaits are the task reads of a
//! check at the limit, after which the counts are read again.

use std::cell::Cell;

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

use crate::core::error::{DepError, Dependency};
use crate::core::ids::{TaskId, UserId};
use crate::core::limits::{
    decide, plan_cancel, plan_reserve, verdict, Decision, Entry, EntryUndo, LimitKind, Refused,
    Reservation, Seen, Tier, Usage, BINDING_RETRY_AFTER_S, HEAL_BATCH, WINDOW_MS,
};
use crate::core::step::{Status, Step};
use crate::log::{self, Level};
use crate::{stub, task_client};

/// Stale marks and entries (past the window, past their deadline) left in the tables before a
/// reservation deletes them: uncounted meanwhile, so they cost only their rows.
const PRUNE_AT: u64 = 64;

/// Binding of the per-user Durable Object namespace (wrangler.toml).
pub const BINDING: &str = "USER_LIMITS";
/// The Rate Limiting bindings (wrangler.toml `[[ratelimits]]`): the flood guard of signed-in
/// and of anonymous callers.
pub const RATE_LIMITER: &str = "SUBMIT_RATE_LIMITER";
pub const RATE_LIMITER_ANONYMOUS: &str = "SUBMIT_RATE_LIMITER_ANONYMOUS";

#[derive(Debug, Serialize, Deserialize)]
pub struct ReserveRequest {
    /// The user (the object's name), to recognise their tasks.
    pub user: UserId,
    pub tier: Tier,
    pub task_id: String,
    pub step: Step,
    /// The step's budget (`TRIPO_DEADLINE_SECONDS`): the entry expires after it.
    pub budget_ms: u64,
    /// The submit's clock (the task's Durable Object records the same one).
    pub now_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReserveReply {
    Accepted { reservation: Reservation },
    Refused { refused: Refused },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub reservation: Reservation,
    /// Take only the mark back (an idempotent repeat that resumed a step already counted).
    pub keep_entry: bool,
}

#[durable_object]
pub struct UserLimits {
    state: State,
    env: Env,
    /// The tables exist (created once per instance).
    ready: Cell<bool>,
    /// The last reservation id given out by this instance.
    last_id: Cell<u64>,
}

fn v_int(n: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn v_str(s: &str) -> SqlStorageValue {
    SqlStorageValue::String(s.to_owned())
}

/// [`UserLimits::usage`]'s row: the counts, and the submitted step's entry when it has one.
#[derive(Deserialize)]
struct UsageRow {
    marks: u64,
    stale: u64,
    oldest: Option<u64>,
    active: u64,
    earliest: Option<u64>,
    task_id: Option<String>,
    step: Option<String>,
    since_ms: Option<u64>,
    deadline_at_ms: Option<u64>,
    reservation: Option<u64>,
}

impl UsageRow {
    fn entry(&self) -> Option<Entry> {
        Some(Entry {
            task_id: self.task_id.clone()?,
            step: Step::parse(self.step.as_deref()?)?,
            since_ms: self.since_ms?,
            deadline_at_ms: self.deadline_at_ms?,
            reservation: self.reservation?,
        })
    }
}

#[derive(Deserialize)]
struct EntryRow {
    task_id: String,
    step: String,
    since_ms: u64,
    deadline_at_ms: u64,
    reservation: u64,
}

impl EntryRow {
    fn entry(self) -> Option<Entry> {
        Some(Entry {
            task_id: self.task_id,
            step: Step::parse(&self.step)?,
            since_ms: self.since_ms,
            deadline_at_ms: self.deadline_at_ms,
            reservation: self.reservation,
        })
    }
}

// The SQL helpers are methods of the object whose storage they use, `self` or not.
#[allow(clippy::unused_self)]
impl UserLimits {
    fn sql(&self) -> Result<SqlStorage> {
        let sql = self.state.storage().sql();
        if !self.ready.get() {
            for stmt in [
                "CREATE TABLE IF NOT EXISTS marks (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL)",
                "CREATE INDEX IF NOT EXISTS marks_at ON marks (at_ms)",
                "CREATE TABLE IF NOT EXISTS entries (task_id TEXT NOT NULL, step TEXT NOT NULL, \
                 since_ms INTEGER NOT NULL, deadline_at_ms INTEGER NOT NULL, \
                 reservation INTEGER NOT NULL, PRIMARY KEY (task_id, step))",
                "CREATE INDEX IF NOT EXISTS entries_since ON entries (since_ms)",
                "CREATE INDEX IF NOT EXISTS entries_deadline ON entries (deadline_at_ms)",
            ] {
                sql.exec(stmt, None)?;
            }
            self.ready.set(true);
        }
        Ok(sql)
    }

    /// Drops the marks older than the window and the entries past their deadline once
    /// [`PRUNE_AT`] of them piled up: they are not counted ([`Self::usage`] counts only live
    /// rows), so a submit pays for no `DELETE` most of the time.
    fn prune(&self, sql: &SqlStorage, stale: u64, now_ms: u64) -> Result<()> {
        if stale < PRUNE_AT {
            return Ok(());
        }
        let cutoff = now_ms.saturating_sub(WINDOW_MS);
        sql.exec("DELETE FROM marks WHERE at_ms <= ?", vec![v_int(cutoff)])?;
        sql.exec(
            "DELETE FROM entries WHERE deadline_at_ms <= ?",
            vec![v_int(now_ms)],
        )?;
        Ok(())
    }

    fn entry(&self, sql: &SqlStorage, task_id: &str, step: Step) -> Result<Option<Entry>> {
        let rows: Vec<EntryRow> = sql
            .exec(
                "SELECT task_id, step, since_ms, deadline_at_ms, reservation FROM entries \
                 WHERE task_id = ? AND step = ?",
                vec![v_str(task_id), v_str(step.as_str())],
            )?
            .to_array()?;
        Ok(rows.into_iter().next().and_then(EntryRow::entry))
    }

    /// The counts of live rows (marks of the window, entries before their deadline), the stale
    /// ones left to prune, and the submitted step's live entry, in one statement (every `exec`
    /// crosses into the runtime and back; the submit path pays for each). Each count and minimum
    /// is a range of its table's time index, not a scan of the table (with 5,000 entries: about
    /// 0.1 ms against 0.3 for whole-table counts, in SQLite itself).
    fn usage(
        &self,
        sql: &SqlStorage,
        task_id: &str,
        step: Step,
        now_ms: u64,
    ) -> Result<(Usage, Option<Entry>, u64)> {
        let cutoff = v_int(now_ms.saturating_sub(WINDOW_MS));
        let now = v_int(now_ms);
        let row: UsageRow = sql
            .exec(
                "SELECT (SELECT COUNT(*) FROM marks WHERE at_ms > ?) AS marks, \
                 (SELECT MIN(at_ms) FROM marks WHERE at_ms > ?) AS oldest, \
                 (SELECT COUNT(*) FROM entries WHERE deadline_at_ms > ?) AS active, \
                 (SELECT MIN(deadline_at_ms) FROM entries WHERE deadline_at_ms > ?) AS earliest, \
                 (SELECT COUNT(*) FROM marks WHERE at_ms <= ?) \
                 + (SELECT COUNT(*) FROM entries WHERE deadline_at_ms <= ?) AS stale, \
                 x.task_id, x.step, x.since_ms, x.deadline_at_ms, x.reservation \
                 FROM (SELECT 1) AS one \
                 LEFT JOIN entries AS x ON x.task_id = ? AND x.step = ? AND x.deadline_at_ms > ?",
                vec![
                    cutoff.clone(),
                    cutoff.clone(),
                    now.clone(),
                    now.clone(),
                    cutoff,
                    now.clone(),
                    v_str(task_id),
                    v_str(step.as_str()),
                    now,
                ],
            )?
            .one()?;
        let entry = row.entry();
        let usage = Usage {
            submits_in_window: u32::try_from(row.marks).unwrap_or(u32::MAX),
            oldest_submit_ms: row.oldest,
            active: u32::try_from(row.active).unwrap_or(u32::MAX),
            has_entry: entry.is_some(),
            earliest_deadline_ms: row.earliest,
        };
        Ok((usage, entry, row.stale))
    }

    /// A reservation id that no live mark or entry has: increasing within this instance, and
    /// starting above every earlier instance's (`now_ms × 1000`, below 2^53 until the year 2255),
    /// so no write is needed for it.
    fn next_id(&self, now_ms: u64) -> u64 {
        let id = self
            .last_id
            .get()
            .saturating_add(1)
            .max(now_ms.saturating_mul(1000));
        self.last_id.set(id);
        id
    }

    fn put_entry(&self, sql: &SqlStorage, e: &Entry) -> Result<()> {
        sql.exec(
            "INSERT OR REPLACE INTO entries (task_id, step, since_ms, deadline_at_ms, reservation) \
             VALUES (?, ?, ?, ?, ?)",
            vec![
                v_str(&e.task_id),
                v_str(e.step.as_str()),
                v_int(e.since_ms),
                v_int(e.deadline_at_ms),
                v_int(e.reservation),
            ],
        )?;
        Ok(())
    }

    async fn reserve(&self, req: ReserveRequest) -> Result<ReserveReply> {
        let now = req.now_ms;
        let mut healed = false;
        loop {
            let sql = self.sql()?;
            let (usage, existing, stale) = self.usage(&sql, &req.task_id, req.step, now)?;
            self.prune(&sql, stale, now)?;
            match decide(req.tier, &usage, now, healed) {
                Decision::Refuse(refused) => return Ok(ReserveReply::Refused { refused }),
                Decision::Heal => {
                    self.heal(&req.user, now).await?;
                    healed = true;
                }
                Decision::Accept => {
                    let id = self.next_id(now);
                    let w = plan_reserve(
                        req.tier,
                        id,
                        &req.task_id,
                        req.step,
                        existing,
                        now,
                        req.budget_ms,
                    );
                    if let Some(at) = w.mark_at_ms {
                        sql.exec(
                            "INSERT INTO marks (id, at_ms) VALUES (?, ?)",
                            vec![v_int(id), v_int(at)],
                        )?;
                    }
                    if let Some(e) = &w.entry {
                        self.put_entry(&sql, e)?;
                    }
                    return Ok(ReserveReply::Accepted {
                        reservation: w.reservation,
                    });
                }
            }
        }
    }

    /// At the active-steps limit: checks the oldest entries against their tasks and drops the
    /// released ones (unless a reservation rewrote them meanwhile).
    async fn heal(&self, user: &UserId, now_ms: u64) -> Result<()> {
        let rows: Vec<EntryRow> = self
            .sql()?
            .exec(
                "SELECT task_id, step, since_ms, deadline_at_ms, reservation FROM entries \
                 WHERE deadline_at_ms > ? ORDER BY since_ms LIMIT ?",
                vec![v_int(now_ms), v_int(HEAL_BATCH as u64)],
            )?
            .to_array()?;
        let entries: Vec<Entry> = rows.into_iter().filter_map(EntryRow::entry).collect();
        let seen = join_all(entries.iter().map(|e| look(&self.env, user, e, now_ms))).await;
        let sql = self.sql()?;
        let mut released = 0;
        for (e, s) in entries.iter().zip(seen) {
            if !verdict(e, s, now_ms) {
                sql.exec(
                    "DELETE FROM entries WHERE task_id = ? AND step = ? AND reservation = ?",
                    vec![
                        v_str(&e.task_id),
                        v_str(e.step.as_str()),
                        v_int(e.reservation),
                    ],
                )?;
                released += 1;
            }
        }
        log::emit(
            Level::Info,
            "limits.checked",
            None,
            None,
            json!({ "checked": entries.len(), "released": released }),
        );
        Ok(())
    }

    fn release(&self, req: &ReleaseRequest) -> Result<()> {
        let sql = self.sql()?;
        let r = &req.reservation;
        if r.marked {
            sql.exec("DELETE FROM marks WHERE id = ?", vec![v_int(r.id)])?;
        }
        if req.keep_entry {
            return Ok(());
        }
        let current = self.entry(&sql, &r.task_id, r.step)?;
        match plan_cancel(r, current.as_ref()) {
            EntryUndo::Keep => {}
            EntryUndo::Delete => {
                sql.exec(
                    "DELETE FROM entries WHERE task_id = ? AND step = ? AND reservation = ?",
                    vec![v_str(&r.task_id), v_str(r.step.as_str()), v_int(r.id)],
                )?;
            }
            EntryUndo::Restore(prev) => self.put_entry(&sql, &prev)?,
        }
        Ok(())
    }
}

/// What the task's Durable Object says about an entry's step (read-only: its `/state`).
async fn look(env: &Env, user: &UserId, e: &Entry, now_ms: u64) -> Seen {
    let Ok(task) = TaskId::parse(&e.task_id) else {
        return Seen::NoStep;
    };
    match task_client::state(env, &task).await {
        Err(_) => Seen::Unreachable,
        Ok(None) => Seen::NoStep,
        Ok(Some(t)) if t.owner != *user => Seen::NoStep,
        Ok(Some(t)) => match t.steps.get(&e.step) {
            None => Seen::NoStep,
            Some(s) => Seen::Step {
                is_final: matches!(s.status, Status::Complete | Status::Failed)
                    || s.deadline_at_ms().is_some_and(|d| d <= now_ms),
                submitted_at_ms: s.submitted_at_ms,
            },
        },
    }
}

impl DurableObject for UserLimits {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            ready: Cell::new(false),
            last_id: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/reserve" => {
                let body: ReserveRequest = crate::stub::read_json(&mut req).await?;
                Response::from_json(&self.reserve(body).await?)
            }
            "/release" => {
                let body: ReleaseRequest = crate::stub::read_json(&mut req).await?;
                self.release(&body)?;
                Response::from_json(&json!({}))
            }
            _ => Response::error("unknown user limits command", 404),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Calls from the submit path
// ---------------------------------------------------------------------------------------------

/// One request to the user's object (`stub::call`, named by the user id).
async fn call<B: Serialize, R: serde::de::DeserializeOwned>(
    env: &Env,
    user: &UserId,
    path: &str,
    body: &B,
) -> std::result::Result<R, DepError> {
    stub::call(
        env,
        Dependency::UserLimits,
        BINDING,
        &user.to_string(),
        path,
        body,
    )
    .await
}

/// Asks the user's object for a slot (atomic check-and-add).
pub async fn reserve(
    env: &Env,
    req: &ReserveRequest,
) -> std::result::Result<ReserveReply, DepError> {
    call(env, &req.user, "/reserve", req).await
}

/// Gives a reservation back: entirely (`keep_entry` false: the submit created nothing), or only
/// its mark (an idempotent repeat). A failure is logged: the entry heals by itself.
pub async fn release(env: &Env, user: &UserId, reservation: Reservation, keep_entry: bool) {
    let task_id = reservation.task_id.clone();
    let step = reservation.step;
    let req = ReleaseRequest {
        reservation,
        keep_entry,
    };
    if let Err(e) = call::<_, serde_json::Value>(env, user, "/release", &req).await {
        log::emit(
            Level::Warn,
            "limits.release_failed",
            Some(&task_id),
            Some(step),
            json!({ "error": e.to_string() }),
        );
    }
}

thread_local! {
    /// Whether this isolate has said that a Rate Limiting binding is unusable.
    static BINDING_WARNED: Cell<bool> = const { Cell::new(false) };
}

/// The flood guard: the Rate Limiting binding of the caller's kind, keyed by the user id. A
/// missing or failing binding lets the submit through (the exact limits still apply) and is
/// logged once per isolate.
pub async fn flood_guard(env: &Env, user: &UserId, anonymous: bool) -> Option<Refused> {
    let name = if anonymous {
        RATE_LIMITER_ANONYMOUS
    } else {
        RATE_LIMITER
    };
    let outcome = match env.rate_limiter(name) {
        Ok(limiter) => limiter.limit(user.to_string()).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(o) if o.success => None,
        Ok(_) => Some(Refused {
            limit: LimitKind::SubmitRequestsPerMinute,
            max: None,
            retry_after_s: BINDING_RETRY_AFTER_S,
        }),
        Err(e) => {
            if !BINDING_WARNED.with(|w| w.replace(true)) {
                log::emit(
                    Level::Warn,
                    "limits.binding_unavailable",
                    None,
                    None,
                    json!({ "binding": name, "error": e.to_string() }),
                );
            }
            None
        }
    }
}
