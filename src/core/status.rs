//! The client-facing views of a task: the body of `GET /tasks/{task_id}/status` (SPEC §4.2) and
//! the body of a generation endpoint's 202/200 answer (SPEC §4.1).
//!
//! Step selection ([`StatusQuery`]):
//! * `step=concepts|model|refine` names the step;
//! * `service=openai` means `concepts`; `service=tripoai` (or `tripo`) means whichever of `model`
//!   and `refine` was submitted **most recently** (a retry counts as a submission). Clients of the
//!   original service poll the same URL with `service=tripoai` for the model and then for the
//!   refine of one `task_id`, so they follow the latest Tripo step;
//! * neither means the most recently submitted step;
//! * with both, `step` wins and `service` is ignored (its value must still be valid): the
//!   document cannot state a rule across two query parameters, so there is none.
//!
//! Another user's task, and a step the task does not have, read as not found (404): the answer
//! never reveals that a task id exists for someone else.

use serde::Serialize;

use super::ids::{TaskId, UserId};
use super::request::FieldError;
use super::step::{Service, Status, Step};
use super::storage_path::percent_decode;
use super::task::{StepError, StepState, TaskState};

/// Which step a status request asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusQuery {
    /// Neither `step` nor `service`: the most recently submitted step.
    Latest,
    Step(Step),
    Service(Service),
}

/// Why there is nothing to show. Every variant is a 404 for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    #[error("the task belongs to another user")]
    OtherOwner,
    #[error("the task has no {} step", .0.as_str())]
    NoSuchStep(Step),
    #[error("the task has no step of service {}", .0.as_str())]
    NoStepOfService(Service),
    #[error("the task has no steps")]
    NoSteps,
}

/// One step as shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepView {
    pub step: Step,
    pub service: Service,
    pub status: Status,
    pub progress: u8,
    /// The first output, or `null`.
    pub asset_url: Option<String>,
    pub asset_urls: Vec<String>,
    pub error: Option<StepError>,
    /// While the step waits for a provider slot (`core::gate`, SPEC §11 "Limits"): its place in
    /// line, 1 = first, as of its last ask (at most `SLOT_RECHECK_MS` old). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
}

/// The body of `GET /tasks/{task_id}/status`: the selected step, its `updated_at`, and every
/// step in step order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    pub task_id: TaskId,
    #[serde(flatten)]
    pub current: StepView,
    /// RFC 3339 UTC, e.g. `2026-11-24T10:00:00.000Z` (milliseconds: the instant the change was applied).
    pub updated_at: String,
    pub steps: Vec<StepView>,
}

impl StatusView {
    /// Every asset URL of the view, without duplicates (e.g. to sign them for a private bucket).
    pub fn asset_urls(&self) -> Vec<&str> {
        let mut urls: Vec<&str> = Vec::new();
        let all = self
            .current
            .asset_urls
            .iter()
            .chain(self.steps.iter().flat_map(|s| &s.asset_urls));
        for url in all {
            if !urls.contains(&url.as_str()) {
                urls.push(url);
            }
        }
        urls
    }

    /// Replaces every asset URL (e.g. with a fresh signed URL), keeping `asset_url` the first.
    pub fn map_asset_urls(&mut self, mut f: impl FnMut(&str) -> String) {
        for view in std::iter::once(&mut self.current).chain(self.steps.iter_mut()) {
            view.asset_urls = view.asset_urls.iter().map(|u| f(u)).collect();
            view.asset_url = view.asset_urls.first().cloned();
        }
    }
}

/// Parses the query string of the status route (with or without the leading `?`). Unknown
/// parameters are ignored (cache busters); a bad `step` or `service` value is a 422 detail.
pub fn parse_query(qs: &str) -> Result<StatusQuery, FieldError> {
    let mut step: Option<Step> = None;
    let mut service: Option<Service> = None;
    for pair in qs.strip_prefix('?').unwrap_or(qs).split('&') {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(raw_key);
        let value = form_decode(raw_value);
        match key.as_deref() {
            Some("step") => {
                let parsed = value.as_deref().and_then(Step::parse).ok_or_else(|| {
                    FieldError::new("step", "must be one of: concepts, model, refine")
                })?;
                set_once(&mut step, parsed, "step")?;
            }
            Some("service") => {
                let parsed = value.as_deref().and_then(Service::parse).ok_or_else(|| {
                    FieldError::new("service", "must be one of: openai, tripoai, tripo")
                })?;
                set_once(&mut service, parsed, "service")?;
            }
            _ => {}
        }
    }
    match (step, service) {
        (Some(step), _) => Ok(StatusQuery::Step(step)),
        (None, Some(service)) => Ok(StatusQuery::Service(service)),
        (None, None) => Ok(StatusQuery::Latest),
    }
}

/// A repeated parameter must repeat the same value.
fn set_once<T: PartialEq>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), FieldError> {
    match slot {
        Some(existing) if *existing != value => Err(FieldError::new(
            name,
            "is given more than once with different values",
        )),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// `application/x-www-form-urlencoded` decoding of one key or value.
fn form_decode(s: &str) -> Option<String> {
    percent_decode(&s.replace('+', " "))
}

/// The status of `state` for `caller` (SPEC §4.2).
pub fn view(state: &TaskState, query: StatusQuery, caller: UserId) -> Result<StatusView, NotFound> {
    if state.owner != caller {
        return Err(NotFound::OtherOwner);
    }
    let step = select_step(state, query)?;
    let current = state.steps.get(&step).ok_or(NotFound::NoSuchStep(step))?;
    Ok(StatusView {
        task_id: state.task_id.clone(),
        current: step_view(step, current),
        updated_at: rfc3339(current.updated_at_ms),
        steps: state
            .steps
            .iter()
            .map(|(s, st)| step_view(*s, st))
            .collect(),
    })
}

fn select_step(state: &TaskState, query: StatusQuery) -> Result<Step, NotFound> {
    match query {
        StatusQuery::Latest => state.last_submitted().ok_or(NotFound::NoSteps),
        StatusQuery::Step(step) => Ok(step),
        StatusQuery::Service(service) => state
            .steps
            .iter()
            .filter(|(step, _)| step.service() == service)
            .max_by_key(|(_, s)| s.submission)
            .map(|(step, _)| *step)
            .ok_or(NotFound::NoStepOfService(service)),
    }
}

pub(crate) fn step_view(step: Step, s: &StepState) -> StepView {
    StepView {
        step,
        service: step.service(),
        status: s.status,
        progress: s.progress.min(100),
        asset_url: s.asset_urls.first().cloned(),
        asset_urls: s.asset_urls.clone(),
        error: s.error.clone(),
        queue_position: match s.job.slot_wait {
            Some(w) if !s.status.is_terminal() && s.job.claimed_at_ms.is_none() => Some(w.position),
            _ => None,
        },
    }
}

/// The body of a generation endpoint's answer (202 on a new submission, 200 on a repeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubmitResponse {
    pub task_id: TaskId,
    pub step: Step,
    pub status: Status,
    /// `/tasks/{task_id}/status?step={step}`.
    pub status_url: String,
    /// Deprecated: repeats `task_id` for clients of the original service.
    pub celery_task_id: TaskId,
}

/// Builds the submit answer. `task_id` needs no escaping in the URL: its characters are all
/// URL-safe (`TaskId`).
pub fn submit_response(task_id: &TaskId, step: Step, status: Status) -> SubmitResponse {
    SubmitResponse {
        task_id: task_id.clone(),
        step,
        status,
        status_url: format!("/tasks/{}/status?step={}", task_id.as_str(), step.as_str()),
        celery_task_id: task_id.clone(),
    }
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with millisecond precision,
/// e.g. `2026-11-24T10:00:00.042Z` (the instant the Durable Object applied the change: clients
/// and the live-status benchmark can time events by it).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1st
    let mp = (5 * doy + 2) / 153; // 0..=11, March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse, Endpoint, StepRequest};
    use crate::task::{apply, Command, JobKind, Observation, ProviderStatus, Submission};
    use serde_json::json;
    use uuid::Uuid;

    const T0: u64 = 1_795_514_400_000; // 2026-11-24T10:00:00Z

    fn owner() -> UserId {
        UserId(Uuid::from_u128(1))
    }

    fn req(endpoint: Endpoint, body: serde_json::Value) -> StepRequest {
        parse(endpoint, body.to_string().as_bytes())
            .unwrap()
            .request
    }

    fn concepts() -> StepRequest {
        req(
            Endpoint::ImageToImage,
            json!({"task_id": "t-1", "prompt": "p", "n": 2,
                   "input_image_asset_url": "https://a.supabase.co/storage/v1/object/public/b/in.png"}),
        )
    }

    fn model() -> StepRequest {
        req(
            Endpoint::TextToModel,
            json!({"task_id": "t-1", "prompt": "cat"}),
        )
    }

    fn refine() -> StepRequest {
        req(
            Endpoint::RefineModel,
            json!({"task_id": "t-1", "tripo_draft_task_id": "d"}),
        )
    }

    fn step_cmd(state: &Option<TaskState>, step: Step, f: impl Fn(u32) -> Command) -> Command {
        f(state.as_ref().unwrap().steps[&step].attempt)
    }

    /// Applies commands in order, one millisecond apart from `T0`.
    /// A command computed from the state so far.
    type CommandFn = Box<dyn Fn(&Option<TaskState>) -> Command>;

    fn build(cmds: Vec<CommandFn>) -> TaskState {
        let mut state = None;
        for (i, cmd) in cmds.into_iter().enumerate() {
            let c = cmd(&state);
            state = Some(apply(state, c, T0 + i as u64 * 1000).unwrap().0);
        }
        state.unwrap()
    }

    fn submit(r: StepRequest) -> CommandFn {
        Box::new(move |_| {
            Command::Submit(Submission {
                owner: owner(),
                task_id: TaskId::parse("t-1").unwrap(),
                request: r.clone(),
                deadline_ms: crate::task::DEFAULT_STEP_DEADLINE_MS,
            })
        })
    }

    fn claim(step: Step) -> CommandFn {
        Box::new(move |s| {
            step_cmd(s, step, |attempt| Command::ClaimJob {
                step,
                attempt,
                kind: JobKind::Run,
                lease_ms: 60_000,
                create: false,
            })
        })
    }

    fn fail(step: Step) -> CommandFn {
        Box::new(move |s| {
            step_cmd(s, step, |attempt| Command::Fail {
                step,
                attempt,
                error: StepError::new("moderation", "blocked"),
            })
        })
    }

    /// Concepts complete with two images, then the model processing at 42 %.
    fn sample_state() -> TaskState {
        build(vec![
            submit(concepts()),
            claim(Step::Concepts),
            Box::new(|_| Command::Complete {
                step: Step::Concepts,
                attempt: 1,
                asset_urls: vec![
                    "https://x/concepts/t-1/0.png".into(),
                    "https://x/concepts/t-1/1.png".into(),
                ],
            }),
            submit(model()),
            claim(Step::Model),
            Box::new(|_| Command::ProviderTaskCreated {
                step: Step::Model,
                attempt: 1,
                provider_task_id: "tr".into(),
                timeout_ms: 1_800_000,
                next_poll_at_ms: T0 + 10_000,
            }),
            Box::new(|_| Command::PollResult {
                step: Step::Model,
                attempt: 1,
                poll: 1,
                observation: Observation::Waiting {
                    status: ProviderStatus::Running,
                    progress: Some(42),
                    running_left_time: Some(20),
                    queuing_num: None,
                },
                next_poll_at_ms: T0 + 12_000,
            }),
        ])
    }

    // --- Query -------------------------------------------------------------------------------

    #[test]
    fn parses_step_service_and_nothing() {
        assert_eq!(parse_query(""), Ok(StatusQuery::Latest));
        assert_eq!(parse_query("?"), Ok(StatusQuery::Latest));
        assert_eq!(parse_query("_=1712&foo"), Ok(StatusQuery::Latest));
        assert_eq!(
            parse_query("step=model"),
            Ok(StatusQuery::Step(Step::Model))
        );
        assert_eq!(
            parse_query("?step=concepts"),
            Ok(StatusQuery::Step(Step::Concepts))
        );
        assert_eq!(
            parse_query("step=ref%69ne"),
            Ok(StatusQuery::Step(Step::Refine))
        );
        assert_eq!(
            parse_query("service=openai"),
            Ok(StatusQuery::Service(Service::OpenAi))
        );
        assert_eq!(
            parse_query("service=tripoai"),
            Ok(StatusQuery::Service(Service::Tripo))
        );
        assert_eq!(
            parse_query("service=tripo"),
            Ok(StatusQuery::Service(Service::Tripo))
        );
        assert_eq!(
            parse_query("service=tripoai&step=refine"),
            Ok(StatusQuery::Step(Step::Refine))
        );
        assert_eq!(
            parse_query("step=model&step=model&x=y"),
            Ok(StatusQuery::Step(Step::Model))
        );
        // `step` wins over a `service` of another step (the document states no rule across
        // the two parameters).
        assert_eq!(
            parse_query("service=openai&step=model"),
            Ok(StatusQuery::Step(Step::Model))
        );
        assert_eq!(
            parse_query("step=concepts&service=tripo"),
            Ok(StatusQuery::Step(Step::Concepts))
        );
    }

    #[test]
    fn refuses_bad_values() {
        for (qs, field) in [
            ("step=Model", "step"),
            ("step=", "step"),
            ("step", "step"),
            ("step=%zz", "step"),
            ("service=dalle", "service"),
            ("service=tripo+ai", "service"),
            ("service=", "service"),
            ("step=model&step=refine", "step"),
            ("service=openai&service=tripoai", "service"),
            ("service=dalle&step=model", "service"),
        ] {
            let err = parse_query(qs).expect_err(qs);
            assert_eq!(err.field, field, "{qs}");
            assert!(!err.message.is_empty());
        }
    }

    // --- View --------------------------------------------------------------------------------

    #[test]
    fn view_matches_the_spec_json_exactly() {
        let state = sample_state();
        let v = view(&state, StatusQuery::Service(Service::Tripo), owner()).unwrap();
        let got = serde_json::to_string(&v).unwrap();
        let want = concat!(
            r#"{"task_id":"t-1","step":"model","service":"tripoai","status":"processing","progress":42,"#,
            r#""asset_url":null,"asset_urls":[],"error":null,"updated_at":"2026-11-24T10:00:06.000Z","#,
            r#""steps":[{"step":"concepts","service":"openai","status":"complete","progress":100,"#,
            r#""asset_url":"https://x/concepts/t-1/0.png","#,
            r#""asset_urls":["https://x/concepts/t-1/0.png","https://x/concepts/t-1/1.png"],"error":null},"#,
            r#"{"step":"model","service":"tripoai","status":"processing","progress":42,"#,
            r#""asset_url":null,"asset_urls":[],"error":null}]}"#
        );
        assert_eq!(got, want);
    }

    #[test]
    fn failed_step_shows_code_and_message() {
        let state = build(vec![submit(model()), fail(Step::Model)]);
        let v = view(&state, StatusQuery::Latest, owner()).unwrap();
        assert_eq!(
            serde_json::to_value(&v).unwrap()["error"],
            json!({"code": "moderation", "message": "blocked"})
        );
        assert_eq!(v.current.status, Status::Failed);
        assert_eq!(v.updated_at, "2026-11-24T10:00:01.000Z");
    }

    #[test]
    fn selects_the_requested_step() {
        let state = sample_state();
        let by = |q| view(&state, q, owner()).unwrap().current.step;
        assert_eq!(by(StatusQuery::Latest), Step::Model);
        assert_eq!(by(StatusQuery::Step(Step::Concepts)), Step::Concepts);
        assert_eq!(by(StatusQuery::Service(Service::OpenAi)), Step::Concepts);
        assert_eq!(by(StatusQuery::Service(Service::Tripo)), Step::Model);
        let concepts_view = view(&state, StatusQuery::Step(Step::Concepts), owner()).unwrap();
        assert_eq!(
            concepts_view.current.asset_url.as_deref(),
            Some("https://x/concepts/t-1/0.png")
        );
        assert_eq!(concepts_view.current.progress, 100);
        assert_eq!(concepts_view.updated_at, "2026-11-24T10:00:02.000Z");
        assert_eq!(concepts_view.steps.len(), 2);
    }

    #[test]
    fn tripoai_follows_the_latest_tripo_step() {
        // model then refine → refine
        let state = build(vec![submit(model()), submit(refine())]);
        let pick = |s: &TaskState| {
            view(s, StatusQuery::Service(Service::Tripo), owner())
                .unwrap()
                .current
                .step
        };
        assert_eq!(pick(&state), Step::Refine);
        // refine then model → model
        let state = build(vec![submit(refine()), submit(model())]);
        assert_eq!(pick(&state), Step::Model);
        // model retried after refine → model; a later concepts submit does not matter
        let state = build(vec![
            submit(model()),
            fail(Step::Model),
            submit(refine()),
            submit(model()),
            submit(concepts()),
        ]);
        assert_eq!(pick(&state), Step::Model);
        assert_eq!(
            view(&state, StatusQuery::Latest, owner())
                .unwrap()
                .current
                .step,
            Step::Concepts
        );
        assert_eq!(state.steps[&Step::Model].attempt, 2);
    }

    #[test]
    fn not_found_cases() {
        let state = build(vec![submit(model())]);
        assert_eq!(
            view(&state, StatusQuery::Latest, UserId(Uuid::from_u128(2))),
            Err(NotFound::OtherOwner)
        );
        assert_eq!(
            view(&state, StatusQuery::Step(Step::Refine), owner()),
            Err(NotFound::NoSuchStep(Step::Refine))
        );
        assert_eq!(
            view(&state, StatusQuery::Service(Service::OpenAi), owner()),
            Err(NotFound::NoStepOfService(Service::OpenAi))
        );
        let mut empty = state.clone();
        empty.steps.clear();
        assert_eq!(
            view(&empty, StatusQuery::Latest, owner()),
            Err(NotFound::NoSteps)
        );
    }

    #[test]
    fn pending_step_reads_zero_progress() {
        let state = build(vec![submit(model())]);
        let v = view(&state, StatusQuery::Latest, owner()).unwrap();
        assert_eq!(v.current.status, Status::Pending);
        assert_eq!(v.current.progress, 0);
        assert_eq!(v.current.asset_url, None);
        assert_eq!(v.updated_at, "2026-11-24T10:00:00.000Z");
    }

    #[test]
    fn asset_urls_can_be_listed_and_replaced() {
        let mut v = view(&sample_state(), StatusQuery::Step(Step::Concepts), owner()).unwrap();
        assert_eq!(
            v.asset_urls(),
            vec![
                "https://x/concepts/t-1/0.png",
                "https://x/concepts/t-1/1.png"
            ]
        );
        v.map_asset_urls(|u| format!("{u}?token=s"));
        assert_eq!(
            v.current.asset_url.as_deref(),
            Some("https://x/concepts/t-1/0.png?token=s")
        );
        assert_eq!(
            v.current.asset_urls[1],
            "https://x/concepts/t-1/1.png?token=s"
        );
        assert_eq!(
            v.steps[0].asset_url.as_deref(),
            Some("https://x/concepts/t-1/0.png?token=s")
        );
        assert_eq!(v.steps[1].asset_url, None);
    }

    // --- Submit answer -----------------------------------------------------------------------

    #[test]
    fn submit_response_json() {
        let t = TaskId::parse("task-1:a.b").unwrap();
        let r = submit_response(&t, Step::Model, Status::Pending);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"task_id":"task-1:a.b","step":"model","status":"pending","status_url":"/tasks/task-1:a.b/status?step=model","celery_task_id":"task-1:a.b"}"#
        );
        let c = submit_response(&t, Step::Concepts, Status::Complete);
        assert_eq!(c.status_url, "/tasks/task-1:a.b/status?step=concepts");
        assert_eq!(
            parse_query(c.status_url.split_once('?').unwrap().1),
            Ok(StatusQuery::Step(Step::Concepts))
        );
    }

    // --- Dates -------------------------------------------------------------------------------

    #[test]
    fn formats_rfc3339() {
        for (ms, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (999, "1970-01-01T00:00:00.999Z"),
            (86_399_999, "1970-01-01T23:59:59.999Z"),
            (946_643_445_000, "1999-12-31T12:30:45.000Z"),
            (951_868_799_000, "2000-02-29T23:59:59.000Z"),
            (951_868_800_000, "2000-03-01T00:00:00.000Z"),
            (1_735_689_599_000, "2024-12-31T23:59:59.000Z"),
            (1_735_689_600_000, "2025-01-01T00:00:00.000Z"),
            (T0, "2026-11-24T10:00:00.000Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (4_107_542_399_000, "2100-02-28T23:59:59.000Z"),
        ] {
            assert_eq!(rfc3339(ms), want, "{ms}");
        }
    }

    fn month_len(y: u64, m: u64) -> u64 {
        let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let feb = if leap { 29 } else { 28 };
        [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(m - 1) as usize]
    }

    #[test]
    fn civil_dates_are_consecutive_for_centuries() {
        // Every day from 1970 to 2200 follows the previous one.
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for days in 1..84_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month =
                d == 1 && ((y, m) == (py, pm + 1) || (y == py + 1 && m == 1 && pm == 12));
            assert!(next_day || next_month, "{prev:?} -> {:?}", (y, m, d));
            assert!(d <= month_len(y, m));
            if next_month {
                assert_eq!(pd, month_len(py, pm), "{prev:?} is not the last day");
            }
            prev = (y, m, d);
        }
    }
}
