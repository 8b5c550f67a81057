//! Tripo state: upload tokens, issued STS objects, tasks with their time-driven timeline
//! (`queued` → `running` → final status), the task JSON of `GET /task/{id}`, per-key
//! concurrency buckets and balances.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::validate::TaskType;
use super::TripoError;
use crate::directives::Directive;
use crate::glb::DEFAULT_GLB_BYTES;
use crate::util::unix_now;

/// Credits every key starts with.
pub(crate) const INITIAL_BALANCE: f64 = 10_000.0;
/// Default `queue_s` / `run_s` (fake seconds).
pub(crate) const DEFAULT_QUEUE_S: f64 = 1.0;
pub(crate) const DEFAULT_RUN_S: f64 = 2.0;
/// Default lifetime of output URLs (real seconds).
pub(crate) const DEFAULT_URL_TTL_S: f64 = 300.0;

/// An uploaded image.
pub(crate) struct Upload {
    pub owner: String,
    pub directive: Option<Directive>,
    /// `{image_token, filename, content_type, size, sha256, texts}` for the request log.
    pub summary: Value,
}

/// Concurrency buckets (providers.md §1.8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Bucket {
    /// text/image/multiview with any non-P1 version: 10.
    Generation,
    /// text/image/multiview with P1: 5.
    GenerationP1,
    /// refine_model: 5.
    Refine,
}

impl Bucket {
    fn limit(self) -> usize {
        match self {
            Bucket::Generation => 10,
            Bucket::GenerationP1 | Bucket::Refine => 5,
        }
    }
}

/// Where a task is on its timeline.
#[derive(Debug, PartialEq)]
pub(crate) enum Phase {
    Queued { position: i64 },
    Running { progress: i64, left_s: i64 },
    Done,
}

/// A created task.
pub(crate) struct Task {
    pub id: String,
    pub owner: String,
    pub ty: TaskType,
    pub model_version: String,
    pub input: Value,
    pub prompt: Option<String>,
    /// Summaries of the uploads the task uses (request-log attribution of image tasks).
    pub inputs: Vec<Value>,
    pub directive: Option<Directive>,
    pub texture: bool,
    pub pbr: bool,
    pub credits: f64,
    pub bucket: Bucket,
    pub created: Instant,
    pub create_time: u64,
    /// Real durations (fake seconds divided by the time scale).
    pub queue: Duration,
    pub run: Duration,
    pub time_scale: f64,
    pub final_status: &'static str,
    pub error_code: Option<i64>,
    pub glb_bytes: u64,
    pub no_left_time: bool,
    pub url_ttl_s: f64,
    /// `progress=a/b/c`: the task ignores the clock; poll `k` (1-based) answers `running` with
    /// the `k`-th value and `running_left_time` 1, every poll after the last one the final status.
    pub plan: Option<Vec<i64>>,
    /// Polls (`GET /task/{id}`) answered so far (plan tasks).
    pub polls: std::sync::atomic::AtomicUsize,
    /// `no_limit`: the task neither counts against nor is refused by the concurrency limit (a
    /// benchmark's hundred tasks at once).
    pub unlimited: bool,
}

impl Task {
    /// Builds a task, reading its script from `directive`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        owner: String,
        ty: TaskType,
        model_version: String,
        input: Value,
        prompt: Option<String>,
        directive: Option<Directive>,
        texture: bool,
        pbr: bool,
        credits: f64,
        time_scale: f64,
    ) -> Task {
        let d = directive.as_ref();
        let real = |fake_s: f64| Duration::from_secs_f64((fake_s / time_scale).min(1.0e9));
        let final_status = d
            .and_then(|d| d.value("final"))
            .and_then(|f| {
                crate::directives::FINAL_STATUSES
                    .iter()
                    .find(|s| **s == f)
                    .copied()
            })
            .unwrap_or("success");
        let error_code = d.and_then(|d| d.int("error_code")).or(match final_status {
            "failed" => Some(1001),
            "banned" => Some(2008),
            _ => None,
        });
        let bucket = if ty == TaskType::RefineModel {
            Bucket::Refine
        } else if model_version.starts_with("P1-") {
            Bucket::GenerationP1
        } else {
            Bucket::Generation
        };
        Task {
            id,
            owner,
            ty,
            model_version,
            input,
            prompt,
            inputs: Vec::new(),
            texture,
            pbr,
            credits,
            bucket,
            created: Instant::now(),
            create_time: unix_now(),
            queue: real(d.and_then(|d| d.secs("queue_s")).unwrap_or(DEFAULT_QUEUE_S)),
            run: real(d.and_then(|d| d.secs("run_s")).unwrap_or(DEFAULT_RUN_S)),
            time_scale,
            final_status,
            error_code,
            glb_bytes: d
                .and_then(|d| d.count("glb_bytes"))
                .unwrap_or(DEFAULT_GLB_BYTES),
            no_left_time: d.is_some_and(|d| d.has("no_left_time")),
            url_ttl_s: d
                .and_then(|d| d.secs("url_ttl_s"))
                .unwrap_or(DEFAULT_URL_TTL_S),
            plan: d.and_then(|d| d.plan("progress")),
            unlimited: d.is_some_and(|d| d.has("no_limit")),
            polls: std::sync::atomic::AtomicUsize::new(0),
            directive,
        }
    }

    /// When the task leaves `running`.
    pub fn ends_at(&self) -> Instant {
        self.created + self.queue + self.run
    }

    /// Counts one poll of the task (a plan task moves on by one value).
    pub fn polled(&self) {
        self.polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The timeline at `now`.
    pub fn phase(&self, now: Instant) -> Phase {
        if let Some(plan) = &self.plan {
            let k = self.polls.load(std::sync::atomic::Ordering::SeqCst);
            return match plan.get(k.saturating_sub(1)) {
                Some(p) if k <= plan.len() => Phase::Running {
                    progress: *p,
                    left_s: 1,
                },
                _ if k == 0 => Phase::Running {
                    progress: 0,
                    left_s: 1,
                },
                _ => Phase::Done,
            };
        }
        let elapsed = now.saturating_duration_since(self.created);
        if elapsed < self.queue {
            let left_fake = (self.queue - elapsed).as_secs_f64() * self.time_scale;
            return Phase::Queued {
                position: (left_fake.ceil() as i64).max(1),
            };
        }
        let in_run = elapsed - self.queue;
        if in_run < self.run {
            let frac = in_run.as_secs_f64() / self.run.as_secs_f64();
            return Phase::Running {
                progress: (1 + (frac * 99.0) as i64).clamp(1, 99),
                left_s: ((self.run - in_run).as_secs_f64().ceil() as i64).max(1),
            };
        }
        Phase::Done
    }

    /// The API status at `now`.
    pub fn status(&self, now: Instant) -> &'static str {
        match self.phase(now) {
            Phase::Queued { .. } => "queued",
            Phase::Running { .. } => "running",
            Phase::Done => self.final_status,
        }
    }

    /// Queued or running at `now` (counts against concurrency and holds credit).
    pub fn is_active(&self, now: Instant) -> bool {
        self.phase(now) != Phase::Done
    }

    /// The model outputs a successful task has (`pbr_model`; `model` when pbr=false;
    /// `base_model` when texture=false).
    pub fn model_kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.pbr {
            kinds.push("pbr_model");
        } else {
            kinds.push("model");
        }
        if !self.texture {
            kinds.push("base_model");
        }
        kinds
    }

    /// Whether `kind` (a model kind or `rendered_image`) can be downloaded at `now`.
    pub fn serves(&self, kind: &str, now: Instant) -> bool {
        self.status(now) == "success"
            && (kind == "rendered_image" || self.model_kinds().contains(&kind))
    }

    /// The `data` of `GET /task/{id}`; file URLs start with `base` (e.g. `http://127.0.0.1:1234`).
    pub fn view(&self, now: Instant, base: &str) -> Value {
        let phase = self.phase(now);
        let status = self.status(now);
        let (progress, queuing_num, left) = match phase {
            Phase::Queued { position } => (0, position, -1),
            Phase::Running { progress, left_s } => {
                (progress, -1, if self.no_left_time { -1 } else { left_s })
            }
            Phase::Done if status == "unknown" => (0, -1, -1),
            Phase::Done => (100, -1, -1),
        };
        let mut data = json!({
            "task_id": self.id,
            "type": self.ty.as_str(),
            "status": status,
            "input": self.input,
            "output": {},
            "progress": progress,
            "create_time": self.create_time,
            "consumed_credit": if matches!(status, "queued" | "running" | "success") { self.credits } else { 0.0 },
            "queuing_num": queuing_num,
            "running_left_time": left,
        });
        let Some(obj) = data.as_object_mut() else {
            return data;
        };
        if status == "success" {
            let expires = unix_now().saturating_add(self.url_ttl_s.ceil() as u64);
            let url =
                |name: &str| format!("{base}/__fake/files/{}/{name}?expires={expires}", self.id);
            let mut output = Map::new();
            let mut result = Map::new();
            for kind in self.model_kinds() {
                let u = url(&format!("{kind}.glb"));
                output.insert(kind.to_string(), Value::String(u.clone()));
                result.insert(kind.to_string(), json!({"type": "glb", "url": u}));
            }
            let preview = url("rendered_image.webp");
            output.insert("rendered_image".into(), Value::String(preview.clone()));
            result.insert(
                "rendered_image".into(),
                json!({"type": "webp", "url": preview}),
            );
            obj.insert("output".into(), Value::Object(output));
            obj.insert("result".into(), Value::Object(result));
            obj.insert("thumbnail".into(), Value::String(preview));
        } else if phase == Phase::Done {
            obj.insert("result".into(), json!({}));
            if let Some(code) = self.error_code {
                obj.insert("error_code".into(), json!(code));
            }
        }
        data
    }
}

/// Everything Tripo-side, behind one lock.
#[derive(Default)]
pub(crate) struct TripoState {
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    tasks: HashMap<String, Task>,
    uploads: HashMap<String, Upload>,
    /// STS object key → owner key.
    objects: HashMap<String, String>,
}

impl TripoState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an upload; returns its token.
    pub fn add_upload(&self, token: String, upload: Upload) {
        self.lock().uploads.insert(token, upload);
    }

    /// The directive and log summary of upload `token` if it belongs to `owner`; 404/2019 if
    /// unknown (or another key's).
    pub fn upload_input(
        &self,
        token: &str,
        owner: &str,
    ) -> Result<(Option<Directive>, Value), TripoError> {
        match self.lock().uploads.get(token) {
            Some(u) if u.owner == owner => Ok((u.directive.clone(), u.summary.clone())),
            _ => Err(TripoError::new(
                2019,
                format!("file_token '{token}' not found"),
            )),
        }
    }

    /// Records an STS object key issued to `owner`.
    pub fn add_object(&self, key: String, owner: &str) {
        self.lock().objects.insert(key, owner.to_string());
    }

    /// Whether STS object `key` was issued to `owner`.
    pub fn object_known(&self, key: &str, owner: &str) -> bool {
        self.lock().objects.get(key).is_some_and(|o| o == owner)
    }

    /// Runs `f` on task `id` if it exists (any owner).
    pub fn with_task<T>(&self, id: &str, f: impl FnOnce(&Task) -> T) -> Option<T> {
        self.lock().tasks.get(id).map(f)
    }

    /// Runs `f` on task `id` if it belongs to `owner`; 404/2001 otherwise.
    pub fn with_own_task<T>(
        &self,
        id: &str,
        owner: &str,
        f: impl FnOnce(&Task) -> T,
    ) -> Result<T, TripoError> {
        match self.lock().tasks.get(id) {
            Some(t) if t.owner == owner => Ok(f(t)),
            _ => Err(TripoError::new(2001, format!("task '{id}' not found"))),
        }
    }

    /// Inserts `task` unless its owner is over the concurrency limit of its bucket (429/2000
    /// with a retry-after of the seconds until a slot frees) or short of credit (403/2010).
    pub fn insert(&self, task: Task) -> Result<(), TripoError> {
        let now = Instant::now();
        let mut store = self.lock();
        let active: Vec<&Task> = store
            .tasks
            .values()
            .filter(|t| {
                t.owner == task.owner && t.bucket == task.bucket && !t.unlimited && t.is_active(now)
            })
            .collect();
        if !task.unlimited && active.len() >= task.bucket.limit() {
            let wait = active
                .iter()
                .map(|t| t.ends_at().saturating_duration_since(now))
                .min()
                .unwrap_or_default();
            let mut e = TripoError::new(
                2000,
                format!(
                    "{} tasks of this kind are already queued or running",
                    active.len()
                ),
            );
            e.retry_after = Some((wait.as_secs_f64().ceil() as u64).max(1));
            return Err(e);
        }
        let (balance, frozen) = balance_of(&store, &task.owner, now);
        if balance - frozen < task.credits {
            return Err(TripoError::new(
                2010,
                format!(
                    "balance {balance} (frozen {frozen}) is less than {}",
                    task.credits
                ),
            ));
        }
        store.tasks.insert(task.id.clone(), task);
        Ok(())
    }

    /// `(balance, frozen)` of `owner`.
    pub fn balance(&self, owner: &str) -> (f64, f64) {
        balance_of(&self.lock(), owner, Instant::now())
    }
}

fn balance_of(store: &Store, owner: &str, now: Instant) -> (f64, f64) {
    let mut spent = 0.0;
    let mut frozen = 0.0;
    for t in store.tasks.values().filter(|t| t.owner == owner) {
        if t.is_active(now) {
            frozen += t.credits;
        } else if t.final_status == "success" {
            spent += t.credits;
        }
    }
    (INITIAL_BALANCE - spent, frozen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(directive: &str, scale: f64) -> Task {
        let d = if directive.is_empty() {
            None
        } else {
            Some(Directive::parse(directive).unwrap())
        };
        Task::new(
            "t1".into(),
            "tsk_a".into(),
            TaskType::TextToModel,
            "v2.5-20250123".into(),
            json!({"prompt": "p"}),
            Some("p".into()),
            d,
            true,
            true,
            20.0,
            scale,
        )
    }

    #[test]
    fn timeline_moves_through_phases() {
        let t = task("queue_s=2,run_s=10", 1.0);
        let at = |s: f64| t.created + Duration::from_secs_f64(s);
        assert_eq!(t.phase(at(0.0)), Phase::Queued { position: 2 });
        assert_eq!(t.phase(at(1.5)), Phase::Queued { position: 1 });
        assert_eq!(
            t.phase(at(2.0)),
            Phase::Running {
                progress: 1,
                left_s: 10
            }
        );
        assert_eq!(
            t.phase(at(7.0)),
            Phase::Running {
                progress: 50,
                left_s: 5
            }
        );
        assert_eq!(
            t.phase(at(11.99)),
            Phase::Running {
                progress: 99,
                left_s: 1
            }
        );
        assert_eq!(t.phase(at(12.0)), Phase::Done);
        assert_eq!(t.status(at(12.0)), "success");
    }

    #[test]
    fn time_scale_shortens_real_durations() {
        let t = task("queue_s=2,run_s=10", 10.0);
        assert_eq!(t.queue, Duration::from_millis(200));
        assert_eq!(t.run, Duration::from_secs(1));
        assert_eq!(t.phase(t.created), Phase::Queued { position: 2 });
    }

    #[test]
    fn final_statuses_and_views() {
        let t = task("queue_s=0,run_s=0,final=banned", 1.0);
        let v = t.view(Instant::now(), "http://h");
        assert_eq!(v["status"], "banned");
        assert_eq!(v["error_code"], 2008);
        assert_eq!(v["consumed_credit"], 0.0);
        assert_eq!(v["output"], json!({}));
        let t = task("queue_s=0,run_s=0", 1.0);
        let v = t.view(Instant::now(), "http://h");
        assert_eq!(v["status"], "success");
        assert_eq!(v["progress"], 100);
        let url = v["output"]["pbr_model"].as_str().unwrap();
        assert!(
            url.starts_with("http://h/__fake/files/t1/pbr_model.glb?expires="),
            "{url}"
        );
        assert_eq!(v["result"]["pbr_model"]["url"], url);
        assert_eq!(v["result"]["pbr_model"]["type"], "glb");
        assert!(v.get("error_code").is_none());
    }

    #[test]
    fn model_kinds_follow_texture_and_pbr() {
        let mut t = task("", 1.0);
        assert_eq!(t.model_kinds(), ["pbr_model"]);
        t.pbr = false;
        assert_eq!(t.model_kinds(), ["model"]);
        t.texture = false;
        assert_eq!(t.model_kinds(), ["model", "base_model"]);
    }
}
