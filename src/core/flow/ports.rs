//! The side effects the orchestration needs, as small traits: the clock, the task's Durable
//! Object, the jobs queue, the rows (PostgREST), Storage, Tripo, OpenAI and the log. The `worker`
//! glue implements them over `fetch`, bindings and the console (`crate::runtime`); `flow::memory`
//! implements them in memory for native tests that stop the orchestration after any await.
//!
//! Futures are not `Send` (a Worker isolate is single-threaded), hence `async fn` in traits.
#![allow(async_fn_in_trait)]

use std::future::Future;

use futures::Stream;
use serde_json::Value;

use crate::error::DepError;
use crate::gate::{Acquire, GateName, SlotKey};
use crate::ids::TaskId;
use crate::jobs::JobMessage;
use crate::log::Level;
use crate::openai::EditRequest;
use crate::rest::RestRequest;
use crate::retry::Failure;
use crate::status::StatusView;
use crate::step::Step;
use crate::storage_path::InputObject;
use crate::task::{Command, TaskState};
use crate::task_wire::{CmdReply, DoError};
use crate::tripo::{CreateTask, ImageFormat, TaskDetail};

/// Time, randomness (retry jitter) and waiting.
pub trait Clock {
    fn now_ms(&self) -> u64;
    /// A number in `[0, 1)`.
    fn random(&self) -> f64;
    async fn sleep(&self, ms: u64);
}

/// The task's Durable Object: one command applied atomically, or the state read.
pub trait TaskStore {
    /// `Err(DoError::Refused(_))` when the state machine refused the command (nothing persisted).
    async fn command(&self, task: &TaskId, cmd: Command, now_ms: u64) -> Result<CmdReply, DoError>;
    /// [`TaskStore::command`] for a command that ends a step: the object also writes the step's
    /// rows and settles its rows check when it can (`task_wire::CmdRequest::sync_rows`). By
    /// default it does not, and the caller's `rows::sync` writes them.
    async fn command_syncing_rows(
        &self,
        task: &TaskId,
        cmd: Command,
        now_ms: u64,
    ) -> Result<CmdReply, DoError> {
        self.command(task, cmd, now_ms).await
    }
    async fn task_state(&self, task: &TaskId) -> Result<Option<TaskState>, DepError>;
}

/// The jobs queue.
pub trait JobQueue {
    async fn enqueue(&self, msg: &JobMessage, delay_s: u32) -> Result<(), DepError>;
}

/// PostgREST with the service key (the rows of `concept_images` and `models`).
pub trait RowStore {
    /// One request; its body on success.
    async fn rest(&self, req: &RestRequest) -> Result<Vec<u8>, DepError>;
    /// Several requests in order; the first failure stops them.
    async fn rest_all(&self, reqs: &[RestRequest]) -> Result<(), DepError> {
        for req in reqs {
            self.rest(req).await?;
        }
        Ok(())
    }
}

/// Supabase Storage: inputs read, outputs written (the generated-assets bucket, overwriting).
pub trait ObjectStore {
    /// Bytes handed to the runtime for an upload (in the Worker, a JS buffer: a retried upload
    /// sends it again without a copy staying in WebAssembly memory).
    type Blob;
    /// An input whose proof passed at submit, read through the route its URL names, capped at
    /// `MAX_INPUT_BYTES`.
    async fn download_input(&self, obj: &InputObject) -> Result<Vec<u8>, DepError>;
    fn hold(&self, bytes: Vec<u8>) -> Self::Blob;
    async fn upload(
        &self,
        path: &str,
        content_type: &str,
        blob: &Self::Blob,
    ) -> Result<(), DepError>;
    /// Streams the model at `url` (a provider's download URL) into `path`, never holding it
    /// whole; its length when the download declared one.
    async fn copy_model(
        &self,
        task: &TaskId,
        step: Step,
        url: &str,
        path: &str,
        content_type: &str,
    ) -> Result<Option<u64>, Failure>;
    /// Deletes outputs (the clean-up after a cancel); a missing object is not an error.
    async fn delete_outputs(&self, paths: &[String]) -> Result<(), DepError>;
}

/// Outbound webhooks (`core::webhook`).
pub trait WebhookSender {
    /// POSTs `body` to `url` with the Standard Webhooks headers for event `id` at
    /// `timestamp_s`, signed with `WEBHOOK_SECRET`: the receiver's HTTP status, or `Err` with
    /// the reason when no answer came (network error, timeout, no secret configured).
    async fn send_webhook(
        &self,
        url: &str,
        id: &str,
        timestamp_s: u64,
        body: &str,
    ) -> Result<u16, String>;
    /// Makes the view what the status endpoint would show now (`view::present` in the worker): the
    /// live place in line of a waiting step, and for a private bucket fresh signed URLs, so the
    /// receiver can download the outputs. `Err` when the URLs could not be signed.
    async fn present_view(&self, state: &TaskState, view: &mut StatusView) -> Result<(), String>;
}

/// Tripo's v2 API (`core::tripo` builds and parses the wire format).
pub trait TripoApi {
    /// `POST /upload/sts`: the image's token.
    async fn tripo_upload(
        &self,
        task: &TaskId,
        step: Step,
        bytes: &[u8],
        format: ImageFormat,
    ) -> Result<String, Failure>;
    /// `POST /task`: Tripo's task id.
    async fn tripo_create(
        &self,
        task: &TaskId,
        step: Step,
        req: &CreateTask,
    ) -> Result<String, Failure>;
    /// `GET /task/{id}`.
    async fn tripo_task(&self, task: &TaskId, step: Step, id: &str) -> Result<TaskDetail, Failure>;
}

/// OpenAI's image edits.
pub trait OpenAiApi {
    /// The reply body, chunk by chunk (read with `core::openai::ReplyScanner`, never whole).
    type Reply: Stream<Item = Result<Vec<u8>, Failure>> + Unpin;
    /// Calls images/edits with `image` (moved: dropped before the reply is read).
    async fn openai_edit(
        &self,
        req: &EditRequest,
        image: Vec<u8>,
        format: ImageFormat,
    ) -> Result<Self::Reply, Failure>;
}

/// The provider gates (`core::gate`), one Durable Object each.
pub trait SlotGate {
    /// Asks for a slot (idempotent); `capacity` and `deadline_ms` come from the configuration.
    async fn acquire_slot(
        &self,
        gate: GateName,
        key: &SlotKey,
        capacity: u32,
        deadline_ms: u64,
    ) -> Result<Acquire, DepError>;
    /// Gives a slot (or a place in line) back; the gate wakes the waiters now entitled to a slot
    /// by sending their run messages.
    async fn release_slot(
        &self,
        gate: GateName,
        key: &SlotKey,
        capacity: u32,
    ) -> Result<(), DepError>;
}

/// The structured log (`crate::log`): one JSON line per event.
pub trait Events {
    fn event(
        &self,
        level: Level,
        event: &str,
        task: Option<&TaskId>,
        step: Option<Step>,
        fields: Value,
    );
    /// Bytes of WebAssembly memory (for the memory figures of the concepts job); 0 natively.
    fn memory_bytes(&self) -> u64 {
        0
    }
}

/// Bulky transfers: a whole input image held in WebAssembly memory (downloaded from Storage for
/// Tripo's upload or OpenAI's edit, with OpenAI's images read after it), or a model streamed from
/// one connection into another. The messages of a queue batch run together (`crate::jobs`); the
/// runtime runs these parts one at a time per batch, so a batch holds at most one input in memory
/// and never has every one of its connections waiting on another (a Worker invocation has six).
pub trait Bulk {
    /// Runs `work` once no other bulky part of the batch runs (at once outside a batch).
    async fn bulk<T>(&self, work: impl Future<Output = T>) -> T {
        work.await
    }
}

/// Everything a job or the alarm may touch.
pub trait Ports:
    Clock
    + TaskStore
    + JobQueue
    + RowStore
    + ObjectStore
    + TripoApi
    + OpenAiApi
    + SlotGate
    + WebhookSender
    + Events
    + Bulk
{
}

impl<T> Ports for T where
    T: Clock
        + TaskStore
        + JobQueue
        + RowStore
        + ObjectStore
        + TripoApi
        + OpenAiApi
        + SlotGate
        + WebhookSender
        + Events
        + Bulk
{
}
