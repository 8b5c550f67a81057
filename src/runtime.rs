//! The `worker` side of `flow::ports`: the clock and timers of the runtime, the task Durable
//! Object (over its stub, or the object itself inside its alarm), the jobs queue binding,
//! PostgREST, Storage, Tripo and OpenAI over `fetch`, and the console log. Translation only: what
//! to do lives in `flow`.

use std::cell::RefCell;
use std::future::Future;

use futures::future::LocalBoxFuture;
use futures::stream::{LocalBoxStream, StreamExt};
use serde_json::Value;
use worker::{Env, Method, ResponseBody};

use crate::core::config::Config;
use crate::core::error::{DepError, Dependency};
use crate::core::flow::finalize::host_of;
use crate::core::flow::gate as gate_flow;
use crate::core::flow::gate::{BatchReleases, Releases};
use crate::core::flow::ports::{
    Bulk, Clock, Events, JobQueue, ObjectStore, OpenAiApi, RowStore, SlotGate, TaskStore, TripoApi,
    WebhookSender,
};
use crate::core::flow::turns::Turns;
use crate::core::gate::{Acquire, GateName, SlotKey};
use crate::core::gate_wire::{
    AcquireManyReply, AcquireManyRequest, AcquireReply, AcquireRequest, ReleaseManyRequest,
    ReleaseReply, ReleaseRequest, ACQUIRE_MANY_PATH, ACQUIRE_PATH, BINDING as GATES,
    RELEASE_MANY_PATH, RELEASE_PATH,
};
use crate::core::ids::TaskId;
use crate::core::jobs::JobMessage;
use crate::core::log::Carry;
use crate::core::openai::EditRequest;
use crate::core::rest::RestRequest;
use crate::core::retry::{parse_retry_after, Failure};
use crate::core::step::Step;
use crate::core::storage_path::InputObject;
use crate::core::task::{Command, TaskState};
use crate::core::task_wire::{CmdReply, DoError};
use crate::core::tripo::{CreateTask, ImageFormat, TaskDetail};
use crate::log::{self, Level};
use crate::net::{self, Body, NetError};
use crate::providers::{openai, tripo};
use crate::supabase;
use crate::task_client;
use crate::{queue, stub};

/// Time allowed for the model download to start answering (the copy itself is bounded by the
/// Storage upload's timeout).
const DOWNLOAD_HEAD_TIMEOUT_MS: u64 = 60_000;

/// How the task's Durable Object is reached.
pub enum Tasks<'a> {
    /// Over its stub (`task_client`): handlers, queue jobs, the other objects.
    Stub,
    /// The object itself: its own alarm (a DO calling itself over fetch deadlocks).
    Object(&'a dyn TaskHost),
}

/// The task object seen from inside (`task_object::TaskObject` implements it): what its alarm's
/// ports need of it. Boxed futures: only the alarm takes this path.
pub trait TaskHost {
    /// Applies one command and persists the result (the object's `POST /cmd`).
    fn apply(&self, cmd: Command, now_ms: u64) -> LocalBoxFuture<'_, Result<CmdReply, DoError>>;
    /// The stored state (the object's `POST /state`).
    fn stored(&self) -> LocalBoxFuture<'_, Result<Option<TaskState>, DepError>>;
}

/// The ports over the Workers runtime. `cfg` is `None` only for an alarm under an invalid
/// configuration: then every call that needs a setting fails as misconfigured.
pub struct Runtime<'a> {
    pub env: &'a Env,
    pub cfg: Option<&'a Config>,
    pub tasks: Tasks<'a>,
    /// The queue batch this runtime's message belongs to ([`Batch`]).
    pub batch: Option<&'a Batch<'a>>,
    /// The log context of the queue delivery under way (`core::log::Carry`): its receipt and
    /// Tripo calls go in the line of the event they lead to.
    pub carry: RefCell<Carry>,
}

impl<'a> Runtime<'a> {
    pub fn new(env: &'a Env, cfg: Option<&'a Config>, tasks: Tasks<'a>) -> Runtime<'a> {
        Runtime {
            env,
            cfg,
            tasks,
            batch: None,
            carry: RefCell::new(Carry::default()),
        }
    }

    /// This runtime for one message of a queue batch: gate calls gathered, bulky parts in turn.
    pub fn in_batch(self, batch: &'a Batch<'a>) -> Runtime<'a> {
        Runtime {
            batch: Some(batch),
            ..self
        }
    }

    fn cfg(&self, dependency: Dependency) -> Result<&'a Config, DepError> {
        self.cfg
            .ok_or_else(|| DepError::new(dependency, None, "the worker's configuration is invalid"))
    }

    fn cfg_for(&self, dependency: Dependency) -> Result<&'a Config, Failure> {
        self.cfg
            .ok_or_else(|| Failure::network(dependency, "the worker's configuration is invalid"))
    }
}

impl Clock for Runtime<'_> {
    fn now_ms(&self) -> u64 {
        net::now_ms()
    }

    fn random(&self) -> f64 {
        js_sys::Math::random()
    }

    async fn sleep(&self, ms: u64) {
        net::sleep(ms).await;
    }
}

impl TaskStore for Runtime<'_> {
    async fn command(&self, task: &TaskId, cmd: Command, now_ms: u64) -> Result<CmdReply, DoError> {
        match self.tasks {
            Tasks::Stub => task_client::command(self.env, task, cmd, now_ms).await,
            Tasks::Object(obj) => obj.apply(cmd, now_ms).await,
        }
    }

    async fn command_syncing_rows(
        &self,
        task: &TaskId,
        cmd: Command,
        now_ms: u64,
    ) -> Result<CmdReply, DoError> {
        match self.tasks {
            Tasks::Stub => task_client::command_syncing_rows(self.env, task, cmd, now_ms).await,
            Tasks::Object(obj) => obj.apply(cmd, now_ms).await,
        }
    }

    async fn task_state(&self, task: &TaskId) -> Result<Option<TaskState>, DepError> {
        match self.tasks {
            Tasks::Stub => task_client::state(self.env, task).await,
            Tasks::Object(obj) => obj.stored().await,
        }
    }
}

impl JobQueue for Runtime<'_> {
    async fn enqueue(&self, msg: &JobMessage, delay_s: u32) -> Result<(), DepError> {
        queue::enqueue(self.env, msg, delay_s).await
    }
}

impl RowStore for Runtime<'_> {
    async fn rest(&self, req: &RestRequest) -> Result<Vec<u8>, DepError> {
        supabase::rest::send(self.cfg(Dependency::Database)?, req).await
    }
}

impl ObjectStore for Runtime<'_> {
    type Blob = js_sys::Uint8Array;

    async fn download_input(&self, obj: &InputObject) -> Result<Vec<u8>, DepError> {
        let cfg = self.cfg(Dependency::Storage)?;
        Ok(supabase::storage::download_input(cfg, obj).await?.0)
    }

    fn hold(&self, bytes: Vec<u8>) -> js_sys::Uint8Array {
        js_sys::Uint8Array::from(bytes.as_slice())
    }

    async fn upload(
        &self,
        path: &str,
        content_type: &str,
        blob: &js_sys::Uint8Array,
    ) -> Result<(), DepError> {
        let cfg = self.cfg(Dependency::Storage)?;
        supabase::storage::upload_array(cfg, path, content_type, blob).await
    }

    async fn copy_model(
        &self,
        task: &TaskId,
        step: Step,
        url: &str,
        path: &str,
        content_type: &str,
    ) -> Result<Option<u64>, Failure> {
        let cfg = self.cfg_for(Dependency::Storage)?;
        let started = net::now_ms();
        let resp =
            net::send_streaming(Method::Get, url, &[], Body::Empty, DOWNLOAD_HEAD_TIMEOUT_MS)
                .await
                .map_err(|e| match e {
                    NetError::Timeout(ms) => Failure::network(
                        Dependency::TripoDownload,
                        &format!("no answer in {ms} ms"),
                    ),
                    other => Failure::network(Dependency::TripoDownload, &other.to_string()),
                })?;
        let status = resp.status_code();
        let header = |name: &str| resp.headers().get(name).ok().flatten();
        if !(200..300).contains(&status) {
            let hint = header("retry-after").and_then(|v| parse_retry_after(&v, started));
            log::emit(
                Level::Warn,
                "finalize.download_refused",
                Some(task.as_str()),
                Some(step),
                serde_json::json!({ "status": status, "host": host_of(url) }),
            );
            return Err(Failure::http(Dependency::TripoDownload, status, "", hint));
        }
        let length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        let (_, body) = resp.into_parts();
        let ResponseBody::Stream(stream) = body else {
            return Err(Failure::bad_response(
                Dependency::TripoDownload,
                "the model download has no body",
            ));
        };
        supabase::storage::upload_stream(cfg, path, content_type, length, stream).await?;
        Ok(length)
    }

    async fn delete_outputs(&self, paths: &[String]) -> Result<(), DepError> {
        supabase::storage::delete_outputs(self.cfg(Dependency::Storage)?, paths).await
    }
}

impl WebhookSender for Runtime<'_> {
    async fn send_webhook(
        &self,
        url: &str,
        id: &str,
        timestamp_s: u64,
        body: &str,
    ) -> Result<u16, String> {
        use crate::core::webhook::{signature_header, signed_content, DELIVERY_TIMEOUT_MS};
        let key = self
            .cfg
            .and_then(|c| c.webhook_key.as_deref())
            .ok_or("WEBHOOK_SECRET is not configured")?;
        let content = signed_content(id, timestamp_s, body);
        let mac = crate::auth::webcrypto::hmac_sha256(key, content.as_bytes()).await?;
        let signature = signature_header(&mac);
        let timestamp = timestamp_s.to_string();
        let headers = [
            ("content-type", "application/json"),
            ("user-agent", "makeit3d-bff-webhooks"),
            ("webhook-id", id),
            ("webhook-timestamp", timestamp.as_str()),
            ("webhook-signature", signature.as_str()),
        ];
        // Never follow a redirect: a 3xx is the answer (see `core::webhook::classify`).
        let resp = net::send_no_redirect(
            Method::Post,
            url,
            &headers,
            Body::Text(body.to_owned()),
            DELIVERY_TIMEOUT_MS,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(resp.status_code())
    }

    async fn present_view(
        &self,
        state: &TaskState,
        view: &mut crate::core::status::StatusView,
    ) -> Result<(), String> {
        let cfg = self.cfg.ok_or("the worker's configuration is invalid")?;
        crate::view::present(self.env, cfg, state, view).await
    }
}

impl TripoApi for Runtime<'_> {
    async fn tripo_upload(
        &self,
        task: &TaskId,
        step: Step,
        bytes: &[u8],
        format: ImageFormat,
    ) -> Result<String, Failure> {
        let cx = tripo::CallCtx {
            task_id: task,
            step,
            carry: Some(&self.carry),
        };
        tripo::upload(cx, self.cfg_for(Dependency::Tripo)?, bytes, format).await
    }

    async fn tripo_create(
        &self,
        task: &TaskId,
        step: Step,
        req: &CreateTask,
    ) -> Result<String, Failure> {
        let cx = tripo::CallCtx {
            task_id: task,
            step,
            carry: Some(&self.carry),
        };
        tripo::create(cx, self.cfg_for(Dependency::Tripo)?, req).await
    }

    async fn tripo_task(&self, task: &TaskId, step: Step, id: &str) -> Result<TaskDetail, Failure> {
        let cx = tripo::CallCtx {
            task_id: task,
            step,
            carry: Some(&self.carry),
        };
        tripo::task(cx, self.cfg_for(Dependency::Tripo)?, id).await
    }
}

impl OpenAiApi for Runtime<'_> {
    type Reply = LocalBoxStream<'static, Result<Vec<u8>, Failure>>;

    async fn openai_edit(
        &self,
        req: &EditRequest,
        image: Vec<u8>,
        format: ImageFormat,
    ) -> Result<Self::Reply, Failure> {
        let cfg = self.cfg_for(Dependency::OpenAi)?;
        let mut resp = openai::edit(cfg, req, image, format).await?;
        let stream = resp.stream().map_err(|e| {
            Failure::network(Dependency::OpenAi, &format!("reading the reply: {e}"))
        })?;
        Ok(stream
            .map(|chunk| {
                chunk.map_err(|e| {
                    Failure::network(Dependency::OpenAi, &format!("reading the reply: {e}"))
                })
            })
            .boxed_local())
    }
}

/// What a queue batch's messages share while they run together (`crate::jobs`).
///
/// - Its provider-gate calls, gathered (P13): the slots of the batch's run messages are asked for
///   in one call per gate before the messages start ([`Batch::prefetch`]); the slots given back
///   go back in one call per gate once the batch's last message about that gate's steps is over
///   ([`Batch::done`], `core::flow::gate::BatchReleases`), the rest after the last message
///   ([`Batch::flush`]). A batch that dies before then leaves those releases to the gate's own
///   healing (`core::gate`: a holder whose step is over is freed), as any lost release.
/// - Its bulky parts ([`Bulk`]): one at a time.
pub struct Batch<'a> {
    cfg: &'a Config,
    /// Answers of the prefetch not yet taken by their message.
    granted: RefCell<Vec<(GateName, SlotKey, Acquire)>>,
    /// Releases not sent yet.
    released: RefCell<BatchReleases>,
    bulk: Turns,
}

impl<'a> Batch<'a> {
    pub fn new<'m>(cfg: &'a Config, msgs: impl IntoIterator<Item = &'m JobMessage>) -> Batch<'a> {
        Batch {
            cfg,
            granted: RefCell::new(Vec::new()),
            released: RefCell::new(BatchReleases::new(cfg, msgs)),
            bulk: Turns::default(),
        }
    }

    /// Asks each gate once for the slots of `msgs`' run messages. A failed call prefetches
    /// nothing for its gate: each message then asks for itself.
    pub async fn prefetch(&self, env: &Env, msgs: &[&JobMessage]) {
        let deadline_ms = self.cfg.tripo_deadline_s.saturating_mul(1000);
        for (gate, capacity, keys) in gate_flow::batch_keys(self.cfg, msgs.iter().copied()) {
            if keys.len() < 2 {
                continue;
            }
            let req = AcquireManyRequest {
                keys,
                capacity,
                deadline_ms,
            };
            let dep = Dependency::ProviderGate;
            let answer: Result<AcquireManyReply, DepError> =
                stub::call(env, dep, GATES, gate.as_str(), ACQUIRE_MANY_PATH, &req).await;
            if let Ok(reply) = answer {
                let mut granted = self.granted.borrow_mut();
                for (key, acquire) in req.keys.into_iter().zip(reply.acquire) {
                    granted.push((gate, key, acquire));
                }
            }
        }
    }

    fn take(&self, gate: GateName, key: &SlotKey) -> Option<Acquire> {
        let mut granted = self.granted.borrow_mut();
        let i = granted
            .iter()
            .position(|(g, k, _)| *g == gate && k == key)?;
        Some(granted.swap_remove(i).2)
    }

    /// `msg` is over: gives back its gate's slots if no other message of the batch is about that
    /// gate's steps.
    pub async fn done(&self, env: &Env, msg: &JobMessage) {
        let due = self.released.borrow_mut().done(self.cfg, msg);
        if let Some(releases) = due {
            release_many(env, releases).await;
        }
    }

    /// Gives back every slot not given back yet (the batch is over).
    pub async fn flush(&self, env: &Env) {
        let rest = self.released.borrow_mut().rest();
        for releases in rest {
            release_many(env, releases).await;
        }
    }
}

/// One call giving a gate's slots back; a failure is logged (the gate heals lost releases).
async fn release_many(env: &Env, (gate, capacity, keys): Releases) {
    let n = keys.len();
    let req = ReleaseManyRequest { keys, capacity };
    let dep = Dependency::ProviderGate;
    let answer: Result<ReleaseReply, DepError> =
        stub::call(env, dep, GATES, gate.as_str(), RELEASE_MANY_PATH, &req).await;
    if let Err(e) = answer {
        log::emit(
            Level::Warn,
            "gate.release_failed",
            None,
            None,
            serde_json::json!({ "gate": gate.as_str(), "slots": n, "error": e.to_string() }),
        );
    }
}

impl Bulk for Runtime<'_> {
    async fn bulk<T>(&self, work: impl Future<Output = T>) -> T {
        let _turn = match self.batch {
            Some(b) => Some(b.bulk.take().await),
            None => None,
        };
        work.await
    }
}

impl SlotGate for Runtime<'_> {
    async fn acquire_slot(
        &self,
        gate: GateName,
        key: &SlotKey,
        capacity: u32,
        deadline_ms: u64,
    ) -> Result<Acquire, DepError> {
        if let Some(acquire) = self.batch.and_then(|b| b.take(gate, key)) {
            return Ok(acquire);
        }
        let req = AcquireRequest {
            key: key.clone(),
            capacity,
            deadline_ms,
        };
        let dep = Dependency::ProviderGate;
        let reply: AcquireReply =
            stub::call(self.env, dep, GATES, gate.as_str(), ACQUIRE_PATH, &req).await?;
        Ok(reply.acquire)
    }

    async fn release_slot(
        &self,
        gate: GateName,
        key: &SlotKey,
        capacity: u32,
    ) -> Result<(), DepError> {
        if let Some(batch) = self.batch {
            batch
                .released
                .borrow_mut()
                .push(gate, capacity, key.clone());
            return Ok(());
        }
        let req = ReleaseRequest {
            key: key.clone(),
            capacity,
        };
        let dep = Dependency::ProviderGate;
        let _: ReleaseReply =
            stub::call(self.env, dep, GATES, gate.as_str(), RELEASE_PATH, &req).await?;
        Ok(())
    }
}

impl Events for Runtime<'_> {
    fn event(
        &self,
        level: Level,
        event: &str,
        task: Option<&TaskId>,
        step: Option<Step>,
        fields: Value,
    ) {
        let task = task.map(TaskId::as_str);
        let (level, fields) = self.carry.borrow_mut().merge(level, task, step, fields);
        log::emit(level, event, task, step, fields);
    }

    fn memory_bytes(&self) -> u64 {
        net::wasm_memory_bytes()
    }
}
