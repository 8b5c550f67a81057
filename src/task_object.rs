//! The task Durable Object: one per `task_id` (`idFromName`), SQLite-backed. It holds the task's
//! state (steps, status, progress, provider ids, asset URLs, errors, attempts), answers the status
//! endpoint, guards idempotency, and drives Tripo polling with its alarm.
//!
//! It only translates: load state → apply one `core::task` command → persist → set the alarm
//! (after every command, a skipped one too: `core::task::effects`). The alarm sweeps every
//! unfinished step (`Command::Sweep`: lost messages sent again, deadlines enforced), then polls.
//! Requests: the contract of `core::task_wire` — `POST /cmd` `{"command": Command, "now_ms": …}`
//! → `{"outcome", "state"}` or 409 `{"refusal"}`; `POST /state` → `{"state": TaskState | null}`;
//! `POST /view` → the status view's JSON (the status endpoint's answer) or 404;
//! `POST /events` and `GET /ws` (live status).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc::{unbounded, UnboundedSender};
use futures::future::{select, Either, FutureExt, LocalBoxFuture};
use futures::StreamExt;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use crate::core::error::{DepError, Dependency};
use crate::core::flow;
use crate::core::ids::UserId;
use crate::core::live::{self, Start};
use crate::core::status::{view, StatusQuery};
use crate::core::step::Step;
use crate::core::task::{alarm_op, apply, effects, AlarmOp, Command, Refusal, TaskState};
use crate::core::task_wire::{
    CmdReply, CmdRequest, DoError, LiveRequest, RefusalReply, CMD_PATH, EVENTS_PATH, LIVE_HEADER,
    STATE_PATH, VIEW_PATH, WS_PATH,
};
use crate::log::{self, Level};
use crate::record::Record;
use crate::runtime::{Runtime, TaskHost, Tasks};
use crate::settings;

/// Storage key of the serialized task state.
pub const STATE_KEY: &str = "task";

#[durable_object]
pub struct TaskObject {
    state: State,
    env: Env,
    /// Open event streams (SSE) of this object, in memory only: after an eviction their
    /// clients reconnect with `Last-Event-ID`. WebSockets are kept by the runtime (hibernation).
    streams: RefCell<Vec<Subscriber>>,
    /// The task's state: JSON in storage, cached here after the first read (`record`).
    record: Record<TaskState>,
    /// The alarm time this instance last set (ms since 1970): setting the same time again is
    /// skipped (most commands leave it as it was). Cleared when the alarm fires or is deleted;
    /// a new instance sets it again.
    armed: Cell<Option<u64>>,
    /// This instance found no WebSocket open and accepted none since: a push need not ask the
    /// runtime for them. A new instance (after hibernation too) asks once.
    no_sockets: Cell<bool>,
}

/// One open event stream: which view it follows, where its frames go, and the version of the
/// last view it was sent (views are made with awaits — a gate or Storage call — so two pushes
/// may overlap; a subscriber is never sent an older view after a newer one).
struct Subscriber {
    query: StatusQuery,
    tx: UnboundedSender<String>,
    sent: Rc<Cell<u64>>,
}

/// A WebSocket's subscription, kept as its attachment (it survives hibernation), with the
/// version of the last view it was sent.
#[derive(serde::Serialize, serde::Deserialize)]
struct WsAttachment {
    live: LiveRequest,
    #[serde(default)]
    sent: u64,
}

/// Sends `json` (the view at `version`) to a WebSocket unless it was sent that version or a newer
/// one already; records it in the attachment.
fn ws_send(ws: &WebSocket, att: &mut WsAttachment, version: u64, json: &str) {
    if version <= att.sent {
        return;
    }
    att.sent = version;
    let _ = ws.serialize_attachment(&*att);
    let _ = ws.send_with_str(json);
}

impl TaskObject {
    pub async fn load(&self) -> Result<Option<TaskState>> {
        self.record.get(&self.state.storage()).await
    }

    /// Applies one command and persists the result; the alarm follows the state.
    pub async fn command(
        &self,
        cmd: Command,
        now_ms: u64,
    ) -> Result<std::result::Result<CmdReply, Refusal>> {
        Ok(self
            .command_with(cmd, now_ms, true)
            .await?
            .map(|(reply, _)| reply))
    }

    /// [`Self::command`]; `arm: false` leaves the alarm as it is (the caller arms later). With
    /// the reply comes the state's JSON text when this command stored it (the wire reply reuses
    /// it: `CmdReply::to_json`).
    async fn command_with(
        &self,
        cmd: Command,
        now_ms: u64,
        arm: bool,
    ) -> Result<std::result::Result<(CmdReply, Option<Rc<str>>), Refusal>> {
        let current = self.load().await?;
        let before = current.as_ref().map(|s| s.version);
        let (state, outcome) = match apply(current, cmd, now_ms) {
            Ok(ok) => ok,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let effects = effects(&outcome);
        if effects.delete_task {
            self.state.storage().delete_all().await?;
            self.record.forget();
            self.state.storage().delete_alarm().await?;
            self.armed.set(None);
        }
        let changed = effects.persist && before != Some(state.version);
        let stored = if effects.persist {
            Some(self.record.put(&self.state.storage(), &state).await?)
        } else {
            None
        };
        if effects.arm && arm {
            self.arm(&state, now_ms).await?;
        }
        if changed {
            self.push(&state).await;
        }
        Ok(Ok((CmdReply { outcome, state }, stored)))
    }

    /// Sends the new view to every open stream and WebSocket; when every step is final, ends
    /// them. Pushed by the command that changed the task: nothing polls. The views (one per
    /// query followed) are made first; a subscriber that meanwhile got a newer view (another
    /// command's push overtook this one) is skipped — every event is the whole view, so it
    /// loses nothing.
    async fn push(&self, state: &TaskState) {
        let finished = live::all_final(state);
        let sockets = if self.no_sockets.get() {
            Vec::new()
        } else {
            let open = self.state.get_websockets();
            self.no_sockets.set(open.is_empty());
            open
        };
        if sockets.is_empty() && self.streams.borrow().is_empty() {
            return;
        }
        let mut queries: Vec<StatusQuery> = self.streams.borrow().iter().map(|s| s.query).collect();
        let mut attachments: Vec<Option<WsAttachment>> = Vec::with_capacity(sockets.len());
        for ws in &sockets {
            let att = ws.deserialize_attachment::<WsAttachment>().ok().flatten();
            if let Some(a) = &att {
                queries.push(a.live.query());
            }
            attachments.push(att);
        }
        let mut views: Vec<(StatusQuery, Option<String>)> = Vec::new();
        for q in queries {
            if !views.iter().any(|(v, _)| *v == q) {
                let json = self.view_json(state, q).await;
                views.push((q, json));
            }
        }
        let json_of = |q: StatusQuery| {
            views
                .iter()
                .find(|(v, _)| *v == q)
                .and_then(|(_, j)| j.as_deref())
        };
        {
            let streams = self.streams.borrow();
            for sub in streams.iter() {
                if sub.sent.get() >= state.version {
                    continue;
                }
                if let Some(json) = json_of(sub.query) {
                    sub.sent.set(state.version);
                    let _ = sub.tx.unbounded_send(live::sse_event(state.version, json));
                }
            }
        }
        {
            let mut streams = self.streams.borrow_mut();
            streams.retain(|s| !s.tx.is_closed());
            if finished {
                // Dropping the senders ends the streams.
                streams.clear();
            }
        }
        for (ws, att) in sockets.iter().zip(attachments) {
            let Some(mut att) = att else {
                continue;
            };
            if let Some(json) = json_of(att.live.query()) {
                ws_send(ws, &mut att, state.version, json);
            }
            if finished {
                let _ = ws.close(Some(1000), Some("every step is final"));
            }
        }
    }

    /// The status view (SPEC §4.2) a subscriber follows, exactly as the status endpoint shows it
    /// (`view::present`: the live place in line of a step waiting for a provider slot,
    /// fresh signed URLs for a private bucket); `None` when it has nothing to show.
    async fn view_json(&self, state: &TaskState, query: StatusQuery) -> Option<String> {
        self.view_json_for(state, query, state.owner).await
    }

    /// [`Self::view_json`] as `caller` may see it: `None` for another owner too.
    async fn view_json_for(
        &self,
        state: &TaskState,
        query: StatusQuery,
        caller: UserId,
    ) -> Option<String> {
        let mut v = view(state, query, caller).ok()?;
        if let Ok(cfg) = settings::loaded(&self.env) {
            crate::view::present_or_stored(&self.env, cfg, state, &mut v).await;
        }
        serde_json::to_string(&v).ok()
    }

    /// `POST /events`: an SSE stream of the task's status (see `core::live`). 404 for another
    /// owner or nothing to show; 204 when the client is up to date and nothing more will come.
    async fn events(&self, live_req: LiveRequest) -> Result<Response> {
        let Some(state) = self.load().await? else {
            return Response::error("unknown task", 404);
        };
        let query = live_req.query();
        if view(&state, query, live_req.owner).is_err() {
            return Response::error("not found", 404);
        }
        let finished = live::all_final(&state);
        let start = live::start(live_req.last_event_id, state.version, finished);
        if start == Start::NothingMore {
            return Ok(Response::empty()?.with_status(204));
        }
        let (tx, rx) = unbounded::<String>();
        let _ = tx.unbounded_send(live::sse_preamble());
        // Subscribed before the first view is made (that may await a gate or Storage call): a
        // change applied meanwhile is pushed to this stream, and then the older first view is
        // not sent after it.
        let sent = Rc::new(Cell::new(0u64));
        if !finished {
            self.streams.borrow_mut().push(Subscriber {
                query,
                tx: tx.clone(),
                sent: Rc::clone(&sent),
            });
        }
        if start == Start::SendCurrent {
            if let Some(json) = self.view_json(&state, query).await {
                if sent.get() < state.version {
                    sent.set(state.version);
                    let _ = tx.unbounded_send(live::sse_event(state.version, &json));
                }
            }
        }
        drop(tx);
        // Frames as they come; a heartbeat comment whenever none came for HEARTBEAT_MS.
        let stream = futures::stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            let next = rx.next();
            let beat = crate::net::sleep(live::HEARTBEAT_MS);
            futures::pin_mut!(next, beat);
            match select(next, beat).await {
                Either::Left((Some(frame), _)) => {
                    Some((Ok::<Vec<u8>, worker::Error>(frame.into_bytes()), Some(rx)))
                }
                Either::Left((None, _)) => None,
                Either::Right(((), _)) => Some((Ok(live::HEARTBEAT.as_bytes().to_vec()), Some(rx))),
            }
        });
        let resp = Response::from_stream(stream)?;
        let h = resp.headers();
        h.set("content-type", "text/event-stream; charset=utf-8")?;
        h.set("cache-control", "no-store")?;
        h.set("x-accel-buffering", "no")?;
        Ok(resp)
    }

    /// `GET /ws` (an upgrade): a WebSocket accepted with the hibernation API, sent the current
    /// view now and on every change (the same JSON as the events stream), closed (1000) when
    /// every step is final.
    async fn websocket(&self, live_req: LiveRequest) -> Result<Response> {
        let Some(state) = self.load().await? else {
            return Response::error("unknown task", 404);
        };
        let query = live_req.query();
        if view(&state, query, live_req.owner).is_err() {
            return Response::error("not found", 404);
        }
        let pair = WebSocketPair::new()?;
        let server: WebSocket = pair.server;
        self.state.accept_web_socket(&server);
        self.no_sockets.set(false);
        server.serialize_attachment(WsAttachment {
            live: live_req,
            sent: 0,
        })?;
        if let Some(json) = self.view_json(&state, query).await {
            // A push while the view was made may have sent a newer one already.
            if let Ok(Some(mut att)) = server.deserialize_attachment::<WsAttachment>() {
                ws_send(&server, &mut att, state.version, &json);
            }
        }
        if live::all_final(&state) {
            server.close(Some(1000), Some("every step is final"))?;
        }
        Response::from_websocket(pair.client)
    }

    /// Writes the rows of `step` when the command just left it final with its rows unconfirmed
    /// (`CmdRequest::sync_rows`), then settles the rows check here (`RowsSynced`, applied
    /// locally); `reply` gets the state after it. The state was persisted first, and the
    /// object's output gate holds the row write until it is. A failed write is logged by
    /// nobody here: the check stays due and the caller writes the rows itself. `true` when
    /// `reply.state` was replaced by the stored state after the rows.
    async fn sync_rows(&self, reply: &mut CmdReply, step: Step) -> Result<bool> {
        let Some(s) = reply.state.steps.get(&step) else {
            return Ok(false);
        };
        if !s.status.is_terminal() || s.rows.is_settled() {
            return Ok(false);
        }
        let Ok(cfg) = settings::loaded(&self.env) else {
            return Ok(false);
        };
        let rt = Runtime::new(&self.env, Some(cfg), Tasks::Object(self));
        let task = reply.state.task_id.clone();
        if flow::rows::sync(&rt, cfg, &task, s).await.is_ok() {
            if let Some(latest) = self.load().await? {
                reply.state = latest;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sets the alarm to the task's next poll, watchdog or deadline (`TaskState::next_alarm_ms`),
    /// keeps one this instance set earlier, deletes it when nothing is left to watch
    /// (`core::task::alarm_op`).
    async fn arm(&self, state: &TaskState, now_ms: u64) -> Result<()> {
        match alarm_op(self.armed.get(), state.next_alarm_ms()) {
            AlarmOp::Keep => {}
            AlarmOp::Set(at) => {
                let delay = at.saturating_sub(now_ms).max(1);
                self.state
                    .storage()
                    .set_alarm(Duration::from_millis(delay))
                    .await?;
                self.armed.set(Some(at));
            }
            AlarmOp::Delete => {
                self.state.storage().delete_alarm().await?;
                self.armed.set(None);
            }
        }
        Ok(())
    }
}

/// The ports of the object's own alarm reach it directly (a DO calling itself over fetch
/// deadlocks).
impl TaskHost for TaskObject {
    fn apply(
        &self,
        cmd: Command,
        now_ms: u64,
    ) -> LocalBoxFuture<'_, std::result::Result<CmdReply, DoError>> {
        async move {
            match self.command(cmd, now_ms).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(refusal)) => Err(DoError::Refused(refusal)),
                Err(e) => Err(DoError::Unavailable(unavailable(&e))),
            }
        }
        .boxed_local()
    }

    fn stored(&self) -> LocalBoxFuture<'_, std::result::Result<Option<TaskState>, DepError>> {
        async move { self.load().await.map_err(|e| unavailable(&e)) }.boxed_local()
    }
}

/// A 200 whose body is JSON text made here (no second serialization).
fn json_text(body: String) -> Result<Response> {
    let resp = Response::ok(body)?;
    resp.headers().set("content-type", "application/json")?;
    Ok(resp)
}

fn unavailable(e: &worker::Error) -> DepError {
    DepError::new(Dependency::TaskObject, None, e.to_string())
}

impl DurableObject for TaskObject {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            streams: RefCell::new(Vec::new()),
            record: Record::new(STATE_KEY),
            armed: Cell::new(None),
            no_sockets: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            CMD_PATH => {
                let body: CmdRequest = crate::stub::read_json(&mut req).await?;
                let ends = body.sync_rows.then(|| body.command.ends_step()).flatten();
                // A step ending with its rows written here: the alarm this instance set stays
                // until the rows are (it is the way out if the object stops before), and then
                // follows the state after them — usually nothing left, so one write for both.
                let defer_arm = ends.is_some() && self.armed.get().is_some();
                match self
                    .command_with(body.command, body.now_ms, !defer_arm)
                    .await?
                {
                    Ok((mut reply, mut stored)) => {
                        if let Some(step) = ends {
                            if self.sync_rows(&mut reply, step).await? {
                                stored = self.record.get_text(&self.state.storage()).await?;
                            }
                        }
                        if defer_arm {
                            self.arm(&reply.state, body.now_ms).await?;
                        }
                        let json = reply
                            .to_json(stored.as_deref())
                            .map_err(worker::Error::from)?;
                        json_text(json)
                    }
                    Err(refusal) => {
                        Ok(Response::from_json(&RefusalReply { refusal })?.with_status(409))
                    }
                }
            }
            STATE_PATH => {
                // `StateReply` around the stored JSON text, not serialized again.
                let text = self.record.get_text(&self.state.storage()).await?;
                json_text(format!(
                    "{{\"state\":{}}}",
                    text.as_deref().unwrap_or("null")
                ))
            }
            VIEW_PATH => {
                // The status endpoint's view, made here from the state this instance holds.
                let body: LiveRequest = crate::stub::read_json(&mut req).await?;
                let state = self.load().await?;
                let json = match &state {
                    Some(state) => self.view_json_for(state, body.query(), body.owner).await,
                    None => None,
                };
                match json {
                    Some(json) => json_text(json),
                    None => Response::error("nothing to show", 404),
                }
            }
            EVENTS_PATH => {
                let body: LiveRequest = crate::stub::read_json(&mut req).await?;
                self.events(body).await
            }
            WS_PATH => {
                let raw = req.headers().get(LIVE_HEADER)?.unwrap_or_default();
                match serde_json::from_str::<LiveRequest>(&raw) {
                    Ok(body) => self.websocket(body).await,
                    Err(_) => Response::error("bad live request", 400),
                }
            }
            _ => Response::error("unknown task object command", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        // The alarm that fired is gone: the next `arm` sets one whatever its time.
        self.armed.set(None);
        let Some(state) = self.load().await? else {
            return Response::empty();
        };
        let cfg = match settings::loaded(&self.env) {
            Ok(c) => Some(c),
            Err(invalid) => {
                log::emit(
                    Level::Error,
                    "poll.misconfigured",
                    Some(state.task_id.as_str()),
                    None,
                    serde_json::json!({ "missing_or_invalid": invalid.names() }),
                );
                None
            }
        };
        let rt = Runtime::new(&self.env, cfg, Tasks::Object(self));
        flow::alarm::on_alarm(&rt, cfg, &state).await;
        // Re-arm from whatever the polls left (poll first, re-arm after).
        if let Some(latest) = self.load().await? {
            self.arm(&latest, crate::net::now_ms()).await?;
        }
        Response::empty()
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        // Clients only listen; a "ping" gets the current view (handy after a wake-up).
        if let WebSocketIncomingMessage::String(text) = message {
            if text.trim() == "ping" {
                if let (Some(state), Ok(Some(att))) = (
                    self.load().await?,
                    ws.deserialize_attachment::<WsAttachment>(),
                ) {
                    if let Some(json) = self.view_json(&state, att.live.query()).await {
                        // The current view again, even if this version was sent before.
                        ws.send_with_str(&json)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        let _ = ws.close(Some(1000), Some("closed"));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        Ok(())
    }
}
