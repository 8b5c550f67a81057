//! In-memory ports for native tests of the orchestration: the task Durable Object (the real
//! state machine, `core::task::apply`, with the alarm armed after every command as the glue
//! does), a queue with delivery times, a small PostgREST interpreter (the filters and guards
//! `core::rest` writes), Storage objects, Tripo and OpenAI fakes, a virtual clock, and the log.
//!
//! Faults: any port call can be made to fail (`fail_next`), and the run can be *stopped* at the
//! n-th port call, before or after its effect (`crash_at`): the call never returns, as when the
//! isolate dies there. [`drive`] polls a future on the virtual clock and reports such a stop.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use futures::stream::{self, LocalBoxStream, StreamExt};
use serde_json::{json, Map, Value};

use super::ports::{
    Bulk, Clock, Events, JobQueue, ObjectStore, OpenAiApi, RowStore, SlotGate, TaskStore, TripoApi,
    WebhookSender,
};
use crate::config::Config;
use crate::error::{DepError, Dependency};
use crate::gate::{Acquire, Gate, GateName, SlotKey};
use crate::ids::TaskId;
use crate::jobs::JobMessage;
use crate::log::Level;
use crate::openai::EditRequest;
use crate::rest::{Method, RestRequest};
use crate::retry::Failure;
use crate::step::Step;
use crate::storage_path::InputObject;
use crate::task::{alarm_op, apply, effects, AlarmOp, Command, Outcome, Refusal, TaskState};
use crate::task_wire::{CmdReply, DoError};
use crate::tripo::{parse_task, CreateTask, ImageFormat, TaskDetail};

/// A PNG the fakes hand out (signature and an `IHDR` chunk: enough for every check we make).
pub const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// Where a stop happens relative to the call's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The call never reaches its dependency.
    Before,
    /// The dependency acted; the answer is lost.
    After,
}

/// The port calls that can be faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Command,
    State,
    Enqueue,
    Rest,
    Download,
    Upload,
    Copy,
    TripoUpload,
    TripoCreate,
    TripoTask,
    OpenAi,
    Gate,
    Delete,
    Webhook,
}

/// One webhook delivery the in-memory receiver got.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub url: String,
    pub id: String,
    pub timestamp_s: u64,
    pub body: String,
    pub signature: String,
}

#[derive(Debug, Clone)]
pub struct Queued {
    pub msg: JobMessage,
    pub at_ms: u64,
}

#[derive(Debug, Clone)]
pub struct TripoTask {
    pub polls_left: u32,
}

#[derive(Default)]
pub struct World {
    pub now: u64,
    timers: Vec<u64>,
    pub tasks: BTreeMap<TaskId, TaskState>,
    pub alarms: BTreeMap<TaskId, u64>,
    pub queue: Vec<Queued>,
    /// `(table, id)` → row.
    pub rows: BTreeMap<(String, String), Map<String, Value>>,
    /// Storage objects of the generated-assets bucket, by path.
    pub objects: BTreeMap<String, Vec<u8>>,
    pub tripo: BTreeMap<String, TripoTask>,
    pub tripo_creates: u32,
    /// Commands that ended a step and had the object write its rows (`command_syncing_rows`).
    pub object_row_syncs: u32,
    /// `GET /task/{id}` answered (polls and finalize queries).
    pub tripo_queries: u32,
    pub openai_calls: u32,
    /// Applied commands and their outcomes, in order.
    pub applied: Vec<(Command, Outcome)>,
    pub events: Vec<(String, Option<Step>, Value)>,
    pub calls: usize,
    pub crash: Option<(usize, Stop)>,
    pub crashed: bool,
    pub faults: BTreeMap<Op, VecDeque<DepError>>,
    /// Polls Tripo answers `running` before `success`.
    pub tripo_polls: u32,
    /// PostgREST requests whose body contains the text fail (503), this many times.
    pub rest_outage: Option<(String, u32)>,
    /// The provider gates (their Durable Objects) and their capacity.
    pub gates: BTreeMap<GateName, (Gate, u32)>,
    /// Most Tripo tasks running at once (created, success or failure not yet seen).
    pub tripo_peak: usize,
    /// Webhook deliveries received, in order.
    pub webhooks: Vec<Delivered>,
    /// The receiver's next answers (`Err`: no answer); 204 when empty.
    pub webhook_answers: VecDeque<Result<u16, String>>,
    /// Signing a private bucket's URLs for a webhook body fails this many more times.
    pub sign_failures: VecDeque<()>,
    /// At this port call (before it acts), every task's owner cancels every unfinished step
    /// (`Command::Cancel`), as a concurrent `POST /tasks/{id}/cancel` would.
    pub cancel_at: Option<usize>,
    /// Bulky parts (`Bulk`) under way now, and entered so far.
    pub bulky: u32,
    pub bulk_parts: u32,
    /// Transfers that hold a whole body (input downloads, Tripo uploads, OpenAI calls, model
    /// copies) made outside a bulky part.
    pub outside_bulk: Vec<Op>,
}

pub struct Mem {
    pub w: RefCell<World>,
    pub cfg: Config,
}

/// The webhook secret of the test configuration.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn config() -> Config {
    let pairs = [
        ("SUPABASE_URL", "https://abc.supabase.co"),
        ("SUPABASE_SERVICE_KEY", "sb_secret_x"),
        ("OPENAI_API_KEY", "sk-x"),
        ("TRIPO_API_KEY", "tsk_x"),
        ("WEBHOOK_ALLOWED_HOSTS", "hooks.example.com"),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    Config::load(|n| {
        pairs
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("the test configuration is complete")
}

impl Mem {
    pub fn new() -> Mem {
        Mem {
            w: RefCell::new(World {
                now: 1_000_000,
                tripo_polls: 2,
                ..World::default()
            }),
            cfg: config(),
        }
    }

    pub fn now(&self) -> u64 {
        self.w.borrow().now
    }

    /// Notes a transfer that must run inside a bulky part when it does not.
    fn bulky_op(&self, op: Op) {
        let mut w = self.w.borrow_mut();
        if w.bulky == 0 {
            w.outside_bulk.push(op);
        }
    }

    pub fn advance_to(&self, at: u64) {
        let mut w = self.w.borrow_mut();
        w.now = w.now.max(at);
    }

    /// Makes the next call of `op` fail with `e` (in order, one per call).
    pub fn fail_next(&self, op: Op, e: DepError) {
        self.w
            .borrow_mut()
            .faults
            .entry(op)
            .or_default()
            .push_back(e);
    }

    /// Stops the run at the `n`-th port call from now (1-based).
    pub fn crash_at(&self, n: usize, stop: Stop) {
        let mut w = self.w.borrow_mut();
        let at = w.calls + n;
        w.crash = Some((at, stop));
        w.crashed = false;
    }

    pub fn crashed(&self) -> bool {
        self.w.borrow().crashed
    }

    /// After a stop: the runtime goes on with a fresh isolate (pending timers die with it).
    pub fn recover(&self) {
        let mut w = self.w.borrow_mut();
        w.crashed = false;
        w.timers.clear();
    }

    pub fn events(&self, name: &str) -> usize {
        self.w
            .borrow()
            .events
            .iter()
            .filter(|(e, _, _)| e == name)
            .count()
    }

    fn fault(&self, op: Op) -> Option<DepError> {
        self.w
            .borrow_mut()
            .faults
            .get_mut(&op)
            .and_then(VecDeque::pop_front)
    }

    /// One port call: counts it, stops there when asked, applies `f` (unless the stop comes
    /// before it) and returns its answer (unless the stop comes after it).
    async fn io<T>(
        &self,
        op: Op,
        f: impl FnOnce(&Mem) -> Result<T, DepError>,
    ) -> Result<T, DepError> {
        let cancel = {
            let w = self.w.borrow();
            w.cancel_at == Some(w.calls + 1)
        };
        if cancel {
            let tasks: Vec<_> = self.w.borrow().tasks.clone().into_iter().collect();
            for (task, state) in tasks {
                let cmd = Command::Cancel {
                    owner: state.owner,
                    step: None,
                };
                let now = self.now();
                let _ = self.apply(&task, cmd, now);
            }
        }
        let stop = {
            let mut w = self.w.borrow_mut();
            w.calls += 1;
            match w.crash {
                Some((at, stop)) if at == w.calls => {
                    w.crashed = true;
                    Some(stop)
                }
                _ => None,
            }
        };
        if stop == Some(Stop::Before) {
            futures::future::pending::<()>().await;
        }
        let out = match self.fault(op) {
            Some(e) => Err(e),
            None => f(self),
        };
        if stop == Some(Stop::After) {
            futures::future::pending::<()>().await;
        }
        out
    }

    fn apply(&self, task: &TaskId, cmd: Command, now_ms: u64) -> Result<CmdReply, Refusal> {
        self.apply_with(task, cmd, now_ms, true)
    }

    fn apply_with(
        &self,
        task: &TaskId,
        cmd: Command,
        now_ms: u64,
        arm: bool,
    ) -> Result<CmdReply, Refusal> {
        let (state, outcome) = {
            let mut w = self.w.borrow_mut();
            let current = w.tasks.get(task).cloned();
            let (state, outcome) = apply(current, cmd.clone(), now_ms)?;
            let fx = effects(&outcome);
            if fx.delete_task {
                w.tasks.remove(task);
                w.alarms.remove(task);
            }
            if fx.persist {
                w.tasks.insert(task.clone(), state.clone());
            }
            w.applied.push((cmd, outcome.clone()));
            if !(fx.arm && arm) {
                return Ok(CmdReply { outcome, state });
            }
            (state, outcome)
        };
        self.arm(task, &state);
        Ok(CmdReply { outcome, state })
    }

    /// As the object does (`task_object::arm`), knowing the alarm it set.
    fn arm(&self, task: &TaskId, state: &TaskState) {
        let mut w = self.w.borrow_mut();
        match alarm_op(w.alarms.get(task).copied(), state.next_alarm_ms()) {
            AlarmOp::Keep => {}
            AlarmOp::Set(at) => {
                w.alarms.insert(task.clone(), at);
            }
            AlarmOp::Delete => {
                w.alarms.remove(task);
            }
        }
    }

    pub fn state(&self, task: &TaskId) -> Option<TaskState> {
        self.w.borrow().tasks.get(task).cloned()
    }

    /// Applies `f` to gate `name` (created empty), at the clock's time.
    fn with_gate<T>(
        &self,
        name: GateName,
        capacity: u32,
        f: impl FnOnce(&mut Gate, u64) -> T,
    ) -> T {
        let mut w = self.w.borrow_mut();
        let now = w.now;
        let entry = w
            .gates
            .entry(name)
            .or_insert_with(|| (Gate::default(), capacity));
        entry.1 = capacity;
        f(&mut entry.0, now)
    }

    pub fn model_bytes(tripo_id: &str) -> Vec<u8> {
        format!("glTF model of {tripo_id}").into_bytes()
    }

    pub fn tripo_json(id: &str, t: &TripoTask) -> String {
        let data = if t.polls_left > 0 {
            json!({ "task_id": id, "type": "image_to_model", "status": "running", "progress": 50,
                    "input": {}, "output": {} })
        } else {
            json!({ "task_id": id, "type": "image_to_model", "status": "success", "progress": 100,
                    "input": {}, "output": { "pbr_model": format!("https://tripo.test/{id}.glb") } })
        };
        json!({ "code": 0, "data": data }).to_string()
    }

    fn openai_reply(n: u8) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(PNG);
        let data: Vec<Value> = (0..n).map(|_| json!({ "b64_json": b64 })).collect();
        json!({ "created": 1, "data": data })
            .to_string()
            .into_bytes()
    }

    // --- PostgREST --------------------------------------------------------------------------

    fn rest_apply(&self, req: &RestRequest) -> Result<Vec<u8>, DepError> {
        if let Some((text, left)) = self.w.borrow_mut().rest_outage.as_mut() {
            if *left > 0
                && req
                    .body
                    .as_deref()
                    .is_some_and(|b| b.contains(text.as_str()))
            {
                *left -= 1;
                return Err(DepError::new(
                    Dependency::Database,
                    Some(503),
                    "PostgREST is down",
                ));
            }
        }
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let table = path.trim_start_matches("/rest/v1/").to_owned();
        let filters: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect();
        let mut w = self.w.borrow_mut();
        match req.method {
            Method::Post => {
                let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or("[]"))
                    .map_err(|e| DepError::new(Dependency::Database, Some(400), e.to_string()))?;
                let rows = match body {
                    Value::Array(rows) => rows,
                    one => vec![one],
                };
                for row in rows {
                    let Value::Object(row) = row else { continue };
                    let id = row
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    // `resolution=ignore-duplicates`: an existing row is left alone.
                    w.rows.entry((table.clone(), id)).or_insert(row);
                }
                Ok(Vec::new())
            }
            Method::Patch => {
                let Some(Value::Object(body)) = req
                    .body
                    .as_deref()
                    .and_then(|b| serde_json::from_str(b).ok())
                else {
                    return Err(DepError::new(Dependency::Database, Some(400), "no body"));
                };
                for ((t, _), row) in &mut w.rows {
                    if *t == table && matches(row, &filters) {
                        for (k, v) in &body {
                            row.insert(k.clone(), v.clone());
                        }
                    }
                }
                Ok(Vec::new())
            }
            Method::Delete => {
                w.rows
                    .retain(|(t, _), row| !(*t == table && matches(row, &filters)));
                Ok(Vec::new())
            }
            Method::Get => {
                let found: Vec<Value> = w
                    .rows
                    .iter()
                    .filter(|((t, _), row)| *t == table && matches(row, &filters))
                    .map(|(_, row)| Value::Object(row.clone()))
                    .collect();
                Ok(Value::Array(found).to_string().into_bytes())
            }
        }
    }

    /// The rows of `table` with task `task`, by id.
    pub fn rows_of(&self, table: &str, task: &TaskId) -> Vec<Map<String, Value>> {
        self.w
            .borrow()
            .rows
            .iter()
            .filter(|((t, _), row)| {
                t == table && row.get("task_id").and_then(Value::as_str) == Some(task.as_str())
            })
            .map(|(_, row)| row.clone())
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value a PostgREST filter key names in a row (`metadata->>attempt` as text).
fn column(row: &Map<String, Value>, key: &str) -> Option<String> {
    let v = match key.split_once("->>") {
        Some((col, field)) => row.get(col)?.get(field)?,
        None => row.get(key)?,
    };
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn matches(row: &Map<String, Value>, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(key, cond)| {
        if matches!(key.as_str(), "select" | "limit" | "on_conflict") {
            return true;
        }
        let value = column(row, key);
        if let Some(v) = cond.strip_prefix("eq.") {
            value.as_deref() == Some(v)
        } else if let Some(list) = cond.strip_prefix("in.(").and_then(|l| l.strip_suffix(')')) {
            value.is_some_and(|v| list.split(',').any(|x| x == v))
        } else {
            panic!("filter not understood by the in-memory PostgREST: {key}={cond}")
        }
    })
}

/// Sleeps on the virtual clock: pending until [`drive`] moves the clock past `until`.
struct Sleep<'a> {
    mem: &'a Mem,
    until: u64,
    registered: bool,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let mut w = self.mem.w.borrow_mut();
        if w.now >= self.until {
            if let Some(i) = w.timers.iter().position(|t| *t == self.until) {
                w.timers.remove(i);
            }
            return Poll::Ready(());
        }
        if !self.registered {
            let until = self.until;
            w.timers.push(until);
            drop(w);
            self.registered = true;
        }
        Poll::Pending
    }
}

/// Polls `fut` to its end on the virtual clock (moving it to the next timer whenever every
/// branch waits); `None` when the run was stopped (`crash_at`).
pub fn drive<F: Future>(mem: &Mem, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        if mem.crashed() {
            return None;
        }
        let next = mem.w.borrow().timers.iter().copied().min();
        match next {
            Some(at) => mem.advance_to(at),
            None => panic!("the run waits for nothing: a port never answered"),
        }
    }
    panic!("the run did not end")
}

impl Clock for Mem {
    fn now_ms(&self) -> u64 {
        self.now()
    }

    fn random(&self) -> f64 {
        0.5
    }

    async fn sleep(&self, ms: u64) {
        let until = self.now().saturating_add(ms);
        Sleep {
            mem: self,
            until,
            registered: false,
        }
        .await;
    }
}

impl TaskStore for Mem {
    async fn command(&self, task: &TaskId, cmd: Command, now_ms: u64) -> Result<CmdReply, DoError> {
        self.io(Op::Command, |m| Ok(m.apply(task, cmd, now_ms)))
            .await?
            .map_err(DoError::Refused)
    }

    /// As the object does (`task_object::sync_rows`): the command, then the rows of the step it
    /// ended and `RowsSynced` (each a port call, so a stop can fall between them). With an
    /// alarm already set, the command leaves it (it is the way out if the object stops before
    /// its rows are written) and the alarm follows the state after the rows.
    async fn command_syncing_rows(
        &self,
        task: &TaskId,
        cmd: Command,
        now_ms: u64,
    ) -> Result<CmdReply, DoError> {
        let ends = cmd.ends_step();
        let defer_arm = self.w.borrow().alarms.contains_key(task);
        let mut reply = self
            .io(Op::Command, |m| {
                Ok(m.apply_with(task, cmd, now_ms, !defer_arm))
            })
            .await?
            .map_err(DoError::Refused)?;
        let ended = ends.and_then(|step| reply.state.steps.get(&step).cloned());
        if let Some(s) = ended.filter(|s| s.status.is_terminal() && !s.rows.is_settled()) {
            self.w.borrow_mut().object_row_syncs += 1;
            if super::rows::sync(self, &self.cfg, task, &s).await.is_ok() {
                if let Some(latest) = self.state(task) {
                    reply.state = latest;
                }
            }
        }
        if defer_arm {
            self.arm(task, &reply.state);
        }
        Ok(reply)
    }

    async fn task_state(&self, task: &TaskId) -> Result<Option<TaskState>, DepError> {
        self.io(Op::State, |m| Ok(m.state(task))).await
    }
}

impl JobQueue for Mem {
    async fn enqueue(&self, msg: &JobMessage, delay_s: u32) -> Result<(), DepError> {
        self.io(Op::Enqueue, |m| {
            let mut w = m.w.borrow_mut();
            let at_ms = w.now + u64::from(delay_s) * 1000;
            w.queue.push(Queued {
                msg: msg.clone(),
                at_ms,
            });
            Ok(())
        })
        .await
    }
}

impl RowStore for Mem {
    async fn rest(&self, req: &RestRequest) -> Result<Vec<u8>, DepError> {
        self.io(Op::Rest, |m| m.rest_apply(req)).await
    }
}

impl ObjectStore for Mem {
    type Blob = Vec<u8>;

    async fn download_input(&self, _obj: &InputObject) -> Result<Vec<u8>, DepError> {
        self.bulky_op(Op::Download);
        self.io(Op::Download, |_| Ok(PNG.to_vec())).await
    }

    fn hold(&self, bytes: Vec<u8>) -> Vec<u8> {
        bytes
    }

    async fn upload(&self, path: &str, _ct: &str, blob: &Vec<u8>) -> Result<(), DepError> {
        self.io(Op::Upload, |m| {
            m.w.borrow_mut()
                .objects
                .insert(path.to_owned(), blob.clone());
            Ok(())
        })
        .await
    }

    async fn copy_model(
        &self,
        _task: &TaskId,
        _step: Step,
        url: &str,
        path: &str,
        _ct: &str,
    ) -> Result<Option<u64>, Failure> {
        self.bulky_op(Op::Copy);
        let id = url
            .trim_start_matches("https://tripo.test/")
            .trim_end_matches(".glb")
            .to_owned();
        self.io(Op::Copy, |m| {
            let bytes = Mem::model_bytes(&id);
            let len = bytes.len() as u64;
            m.w.borrow_mut().objects.insert(path.to_owned(), bytes);
            Ok(Some(len))
        })
        .await
        .map_err(Failure::from)
    }

    async fn delete_outputs(&self, paths: &[String]) -> Result<(), DepError> {
        self.io(Op::Delete, |m| {
            let mut w = m.w.borrow_mut();
            for p in paths {
                w.objects.remove(p);
            }
            Ok(())
        })
        .await
    }
}

impl WebhookSender for Mem {
    async fn send_webhook(
        &self,
        url: &str,
        id: &str,
        timestamp_s: u64,
        body: &str,
    ) -> Result<u16, String> {
        use crate::webhook::{signature_header, signed_content, tests::hmac_sha256};
        let key = self.cfg.webhook_key.clone().ok_or("no secret")?;
        let signature =
            signature_header(&hmac_sha256(&key, &signed_content(id, timestamp_s, body)));
        self.io(Op::Webhook, |m| {
            let mut w = m.w.borrow_mut();
            w.webhooks.push(Delivered {
                url: url.to_owned(),
                id: id.to_owned(),
                timestamp_s,
                body: body.to_owned(),
                signature,
            });
            Ok(w.webhook_answers.pop_front().unwrap_or(Ok(204)))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn present_view(
        &self,
        _state: &crate::task::TaskState,
        view: &mut crate::status::StatusView,
    ) -> Result<(), String> {
        // A private bucket's URLs become "signed" ones here (`?token=mem`), or signing fails
        // when the test asks for it.
        if self.cfg.bucket_public {
            return Ok(());
        }
        if self.w.borrow_mut().sign_failures.pop_front().is_some() {
            return Err("storage is unavailable".into());
        }
        view.map_asset_urls(|u| format!("{u}?token=mem"));
        Ok(())
    }
}

fn tripo_failure(e: DepError) -> Failure {
    Failure::from(DepError {
        dependency: Dependency::Tripo,
        ..e
    })
}

impl TripoApi for Mem {
    async fn tripo_upload(
        &self,
        _task: &TaskId,
        _step: Step,
        _bytes: &[u8],
        _format: ImageFormat,
    ) -> Result<String, Failure> {
        self.bulky_op(Op::TripoUpload);
        self.io(Op::TripoUpload, |_| Ok("image-token".to_owned()))
            .await
            .map_err(tripo_failure)
    }

    async fn tripo_create(
        &self,
        _task: &TaskId,
        _step: Step,
        _req: &CreateTask,
    ) -> Result<String, Failure> {
        self.io(Op::TripoCreate, |m| {
            let mut w = m.w.borrow_mut();
            w.tripo_creates += 1;
            let id = format!("tripo-{}", w.tripo_creates);
            let polls_left = w.tripo_polls;
            w.tripo.insert(id.clone(), TripoTask { polls_left });
            // Tripo tasks running: steps waiting on their provider task, and this one.
            let running = 1 + w
                .tasks
                .values()
                .flat_map(|t| t.steps.values())
                .filter(|s| s.phase() == crate::task::Phase::AwaitingProvider)
                .count();
            w.tripo_peak = w.tripo_peak.max(running);
            Ok(id)
        })
        .await
        .map_err(tripo_failure)
    }

    async fn tripo_task(
        &self,
        _task: &TaskId,
        _step: Step,
        id: &str,
    ) -> Result<TaskDetail, Failure> {
        let body = self
            .io(Op::TripoTask, |m| {
                let mut w = m.w.borrow_mut();
                let Some(t) = w.tripo.get_mut(id) else {
                    return Err(DepError::new(Dependency::Tripo, Some(404), "no such task"));
                };
                let body = Mem::tripo_json(id, t);
                t.polls_left = t.polls_left.saturating_sub(1);
                w.tripo_queries += 1;
                Ok(body)
            })
            .await
            .map_err(tripo_failure)?;
        parse_task(&body).map_err(|e| e.to_failure(200))
    }
}

impl OpenAiApi for Mem {
    type Reply = LocalBoxStream<'static, Result<Vec<u8>, Failure>>;

    async fn openai_edit(
        &self,
        req: &EditRequest,
        _image: Vec<u8>,
        _format: ImageFormat,
    ) -> Result<Self::Reply, Failure> {
        self.bulky_op(Op::OpenAi);
        let n = req.n();
        let body = self
            .io(Op::OpenAi, |m| {
                m.w.borrow_mut().openai_calls += 1;
                Ok(Mem::openai_reply(n))
            })
            .await
            .map_err(|e| {
                Failure::from(DepError {
                    dependency: Dependency::OpenAi,
                    ..e
                })
            })?;
        let chunks: Vec<Result<Vec<u8>, Failure>> =
            body.chunks(37).map(|c| Ok(c.to_vec())).collect();
        Ok(stream::iter(chunks).boxed_local())
    }
}

impl SlotGate for Mem {
    async fn acquire_slot(
        &self,
        gate: GateName,
        key: &SlotKey,
        capacity: u32,
        deadline_ms: u64,
    ) -> Result<Acquire, DepError> {
        self.io(Op::Gate, |m| {
            Ok(m.with_gate(gate, capacity, |g, now| {
                g.acquire(key, capacity, deadline_ms, now)
            }))
        })
        .await
    }

    async fn release_slot(
        &self,
        gate: GateName,
        key: &SlotKey,
        capacity: u32,
    ) -> Result<(), DepError> {
        self.io(Op::Gate, |m| {
            let woken = m.with_gate(gate, capacity, |g, now| g.release(key, capacity, now));
            // As the gate's Durable Object does: the entitled waiters' run messages.
            let mut w = m.w.borrow_mut();
            let now = w.now;
            for k in woken {
                w.queue.push(Queued {
                    msg: JobMessage::run(k.task_id, k.step, k.attempt),
                    at_ms: now,
                });
            }
            Ok(())
        })
        .await
    }
}

/// Counts the bulky parts (one runs at a time: the flow never nests them, and a test drives one
/// job at a time); the count drops when the part ends or is dropped half-way (a stopped job).
impl Bulk for Mem {
    async fn bulk<T>(&self, work: impl Future<Output = T>) -> T {
        struct Part<'a>(&'a Mem);
        impl Drop for Part<'_> {
            fn drop(&mut self) {
                self.0.w.borrow_mut().bulky -= 1;
            }
        }
        {
            let mut w = self.w.borrow_mut();
            w.bulky += 1;
            w.bulk_parts += 1;
        }
        let _part = Part(self);
        work.await
    }
}

impl Events for Mem {
    fn event(
        &self,
        _level: Level,
        event: &str,
        _task: Option<&TaskId>,
        step: Option<Step>,
        fields: Value,
    ) {
        self.w
            .borrow_mut()
            .events
            .push((event.to_owned(), step, fields));
    }
}
