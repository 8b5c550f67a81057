//! The checks after the run (chaos off): every step final, none stuck, every output in Storage
//! byte-identical to what the fakes produced, no duplicated rows or extra objects, rows equal to
//! the Durable Object's view, Tripo creates bounded, failures actionable.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::driver::{worker_events, Env};
use crate::plan::{Kind, Step};

/// Failure codes a client can act on (retry later, or resubmit: SPEC's error table).
pub const ACTIONABLE: &[&str] = &[
    "provider_unavailable",
    "rate_limited",
    "timeout",
    "provider_timeout",
    "dependency_unavailable",
];

/// What the checks found for one step.
#[derive(Clone, Debug, Default)]
pub struct StepResult {
    pub index: usize,
    pub kind: &'static str,
    pub task_id: String,
    /// The nonce in the step's prompt / inputs (find its requests in the fakes' log).
    pub nonce: String,
    pub accepted: bool,
    pub refused: Option<String>,
    pub sends: u32,
    pub answers: Vec<u16>,
    /// The Durable Object's status (`None`: the status endpoint did not answer).
    pub status: Option<String>,
    pub status_error: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub stuck: bool,
    pub output_problems: Vec<String>,
    pub rows: usize,
    pub rows_expected: usize,
    pub extra_objects: Vec<String>,
    pub row_mismatches: Vec<String>,
    pub final_at: Option<f64>,
    /// The step's last worker log events (for stuck or broken steps).
    pub last_events: Vec<Value>,
}

pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

pub struct Outcome {
    pub steps: Vec<StepResult>,
    pub tripo_creates: usize,
    pub tripo_creates_answer_lost: usize,
    pub tripo_steps: usize,
    pub uncertain: usize,
    pub checks: Vec<Check>,
}

fn service(env: &Env, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("apikey", &env.stack.service_key)
        .bearer_auth(&env.stack.service_key)
        .timeout(Duration::from_secs(60))
}

fn object_url(env: &Env, path: &str) -> String {
    format!(
        "{}/storage/v1/object/{}/{path}",
        env.stack.supabase_url, env.stack.bucket
    )
}

/// The stored concept `i` equals the fake's image.
async fn concept_ok(env: &Env, step: &Step, i: usize) -> Result<(), String> {
    let path = format!("{}/{i}.png", step.folder());
    let r = service(env, env.http.get(object_url(env, &path)))
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = r.status().as_u16();
    let bytes = r.bytes().await.map_err(|e| format!("{path}: {e}"))?;
    if status != 200 {
        return Err(format!("{path}: missing ({status})"));
    }
    if bytes.as_ref() != step.concept_bytes(i).as_slice() {
        return Err(format!("{path}: differs from the fake's image"));
    }
    Ok(())
}

/// The stored model equals the fake's model of Tripo task `tripo_id`, streamed and compared.
async fn model_ok(env: &Env, step: &Step, tripo_id: &str) -> Result<(), String> {
    let name = &step.output_names()[0];
    let path = format!("{}/{name}", step.folder());
    let seed = fake_providers::model_seed(tripo_id, "pbr_model");
    let size = fake_providers::DEFAULT_GLB_BYTES;
    let want_len = fake_providers::glb_bytes_len(size);
    let mut r = service(env, env.http.get(object_url(env, &path)))
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    if r.status().as_u16() != 200 {
        return Err(format!("{path}: missing ({})", r.status()));
    }
    let mut offset = 0u64;
    while let Some(chunk) = r.chunk().await.map_err(|e| format!("{path}: {e}"))? {
        let want = fake_providers::glb_chunk(&seed, size, offset, chunk.len());
        if want.as_slice() != chunk.as_ref() {
            return Err(format!(
                "{path}: differs from Tripo task {tripo_id}'s model near byte {offset}"
            ));
        }
        offset += chunk.len() as u64;
    }
    if offset != want_len {
        return Err(format!("{path}: {offset} bytes, {want_len} expected"));
    }
    Ok(())
}

/// Row `row` against the status view `view` (the Durable Object's); `index` is the concept
/// index (`asset_urls[index]`).
fn row_vs_do(row: &Value, view: &Value, index: usize, kind: Kind) -> Option<String> {
    let id = row["id"].as_str().unwrap_or("?");
    if row["status"] != view["status"] {
        return Some(format!(
            "row {id}: status {} vs DO {}",
            row["status"], view["status"]
        ));
    }
    if view["status"] == "complete" {
        let want = if kind == Kind::Concepts {
            &view["asset_urls"][index]
        } else {
            &view["asset_url"]
        };
        if row["asset_url"] != *want || !want.is_string() {
            return Some(format!(
                "row {id}: asset_url {} vs DO {want}",
                row["asset_url"]
            ));
        }
    } else if !row["asset_url"].is_null() {
        return Some(format!(
            "row {id}: asset_url {} on a {} step",
            row["asset_url"], view["status"]
        ));
    }
    if view["status"] == "failed" {
        let (r, d) = (&row["metadata"]["error"]["code"], &view["error"]["code"]);
        if r != d {
            return Some(format!("row {id}: error {r} vs DO {d}"));
        }
    }
    None
}

async fn check_step(env: &Env, i: usize) -> StepResult {
    let step = &env.plan[i];
    let tr = env.track(i);
    let mut res = StepResult {
        index: i,
        kind: step.kind.name(),
        task_id: step.task_id.clone(),
        nonce: step.nonce.clone(),
        accepted: tr.accepted_at.is_some(),
        refused: tr.refused.clone(),
        sends: tr.sends,
        answers: tr.answers.clone(),
        rows_expected: step.rows_expected(),
        final_at: tr.final_at,
        ..StepResult::default()
    };
    if tr.sends == 0 {
        return res;
    }
    // The Durable Object's view and the rows (one read; `run` reads again the steps whose rows
    // disagree, since rows follow the DO "within moments").
    let mut view = None;
    let mut rows: Vec<Value> = Vec::new();
    {
        match env.status(step).await {
            Ok(v) => {
                view = Some(v);
                res.status_error = None;
            }
            Err(e) => res.status_error = Some(e),
        }
        match env.rows(step.kind.table(), &step.task_id).await {
            Ok(r) => rows = r,
            Err(e) => res.row_mismatches = vec![format!("rows unreadable: {e}")],
        }
        rows.sort_by_key(|r| r["metadata"]["index"].as_u64().unwrap_or(0));
        res.row_mismatches = match &view {
            Some(v) => rows
                .iter()
                .enumerate()
                .filter_map(|(k, r)| {
                    let idx = r["metadata"]["index"].as_u64().map_or(k, |x| x as usize);
                    row_vs_do(r, v, idx, step.kind)
                })
                .collect(),
            None => vec![],
        };
    }
    res.rows = rows.len();
    if let Some(v) = &view {
        res.status = v["status"].as_str().map(str::to_owned);
        res.error_code = v["error"]["code"].as_str().map(str::to_owned);
        res.error_message = v["error"]["message"].as_str().map(str::to_owned);
    }
    let open = |s: &Value| s == "pending" || s == "processing";
    res.stuck = res.accepted
        && (view.as_ref().is_some_and(|v| open(&v["status"]))
            || rows.iter().any(|r| open(&r["status"])));

    // Objects: only the expected names, and all of them when complete.
    let expected = step.output_names();
    match env.objects(&step.folder()).await {
        Ok(names) => {
            res.extra_objects = names
                .iter()
                .filter(|n| !expected.contains(n))
                .cloned()
                .collect();
        }
        Err(e) => res.output_problems.push(format!("list failed: {e}")),
    }
    if res.status.as_deref() == Some("complete") {
        match step.kind {
            Kind::Concepts => {
                for k in 0..step.n {
                    if let Err(e) = concept_ok(env, step, k).await {
                        res.output_problems.push(e);
                    }
                }
            }
            _ => match rows.first().and_then(|r| r["ai_service_task_id"].as_str()) {
                Some(tripo_id) => {
                    if let Err(e) = model_ok(env, step, tripo_id).await {
                        res.output_problems.push(e);
                    }
                }
                None => res
                    .output_problems
                    .push("complete row without a Tripo id".into()),
            },
        }
    }
    if res.stuck
        || !res.output_problems.is_empty()
        || !res.row_mismatches.is_empty()
        || view.is_none()
    {
        let mut ev = worker_events(&env.log_path(), &step.task_id);
        let keep = ev.len().saturating_sub(8);
        res.last_events = ev.split_off(keep);
    }
    res
}

fn verdict(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_string(),
        ok,
        detail,
    }
}

fn list(items: impl IntoIterator<Item = String>, max: usize) -> String {
    let all: Vec<String> = items.into_iter().collect();
    let n = all.len();
    let mut shown: Vec<String> = all.into_iter().take(max).collect();
    if n > max {
        shown.push(format!("… {} more", n - max));
    }
    shown.join("; ")
}

pub async fn run(env: &Env) -> Outcome {
    let mut steps: Vec<StepResult> = stream::iter(0..env.plan.len())
        .map(|i| check_step(env, i))
        .buffered(16)
        .collect()
        .await;
    // Rows that disagree with the DO get up to 3 minutes to follow it (the DO is written first;
    // a row write lost to the chaos is made again by the step's rows check, a minute after its
    // end and then after 2 and 4 minutes: `core::task::RowsCheck`).
    for _ in 0..18 {
        let again: Vec<usize> = steps
            .iter()
            .filter(|s| !s.row_mismatches.is_empty())
            .map(|s| s.index)
            .collect();
        if again.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let fresh: Vec<StepResult> = stream::iter(again)
            .map(|i| check_step(env, i))
            .buffered(16)
            .collect()
            .await;
        for r in fresh {
            let i = r.index;
            steps[i] = r;
        }
    }

    // Tripo creates that made a task (the answer may have been lost), from the fake's log.
    let creates: Vec<Value> = env
        .stack
        .fakes()
        .map(|f| f.log(Some("/v2/openapi/task")))
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e["method"] == "POST"
                && e["path"] == "/v2/openapi/task"
                && e["tripo_task_id"].is_string()
                // The refines' drafts, made by the soak itself before the chaos (`seed_drafts`).
                && !e["body"]["prompt"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(crate::driver::DRAFT_PROMPT))
        })
        .collect();
    let answer_lost = creates
        .iter()
        .filter(|e| e["chaos"].as_str().is_some_and(|c| c.ends_with("+after")))
        .count();
    let tripo_steps = steps
        .iter()
        .filter(|s| s.sends > 0 && env.plan[s.index].kind.tripo())
        .count();
    let uncertain = worker_events(&env.log_path(), "provider.create_uncertain")
        .iter()
        .filter(|e| e["event"] == "provider.create_uncertain")
        .count();

    let mut checks = Vec::new();
    let not_final: Vec<&StepResult> = steps
        .iter()
        .filter(|s| !matches!(s.status.as_deref(), Some("complete") | Some("failed")))
        .collect();
    checks.push(verdict(
        "every step final (complete or failed) on the status endpoint",
        not_final.is_empty(),
        list(
            not_final.iter().map(|s| {
                let why = if s.sends == 0 {
                    "never submitted".to_string()
                } else if let Some(r) = &s.refused {
                    format!("submit refused: {r}")
                } else if !s.accepted {
                    format!("never accepted ({} tries: {:?})", s.sends, s.answers)
                } else {
                    match (&s.status, &s.status_error) {
                        (Some(st), _) => st.clone(),
                        (None, Some(e)) => format!("status endpoint: {e}"),
                        _ => "unknown".into(),
                    }
                };
                format!("{} {}: {why}", s.task_id, s.kind)
            }),
            8,
        ),
    ));
    let stuck: Vec<&StepResult> = steps.iter().filter(|s| s.stuck).collect();
    checks.push(verdict(
        "0 stuck (DO or a row still pending/processing)",
        stuck.is_empty(),
        list(
            stuck
                .iter()
                .map(|s| format!("{} ({})", s.task_id, s.status.clone().unwrap_or_default())),
            8,
        ),
    ));
    let lost: Vec<&StepResult> = steps
        .iter()
        .filter(|s| !s.output_problems.is_empty())
        .collect();
    checks.push(verdict(
        "0 lost outputs (complete ⇒ byte-identical in Storage)",
        lost.is_empty(),
        list(lost.iter().map(|s| s.output_problems.join(", ")), 8),
    ));
    let dup: Vec<String> = steps
        .iter()
        .filter(|s| s.sends > 0)
        .filter(|s| {
            s.rows > s.rows_expected
                || !s.extra_objects.is_empty()
                || (s.accepted && s.rows < s.rows_expected)
        })
        .map(|s| {
            format!(
                "{}: {} rows (want {}), extra objects {:?}",
                s.task_id, s.rows, s.rows_expected, s.extra_objects
            )
        })
        .collect();
    checks.push(verdict(
        "0 duplicated rows or objects (rows = n or 1, no extra objects)",
        dup.is_empty(),
        list(dup, 8),
    ));
    let mism: Vec<String> = steps
        .iter()
        .filter(|s| !s.row_mismatches.is_empty())
        .map(|s| format!("{}: {}", s.task_id, s.row_mismatches.join(", ")))
        .collect();
    checks.push(verdict(
        "rows equal the Durable Object (status, asset_url, error)",
        mism.is_empty(),
        list(mism, 8),
    ));
    checks.push(verdict(
        "Tripo creates ≤ Tripo steps + provider.create_uncertain",
        creates.len() <= tripo_steps + uncertain,
        format!(
            "{} creates ({} with the answer lost) for {tripo_steps} steps + {uncertain} uncertain",
            creates.len(),
            answer_lost
        ),
    ));
    let bad_fail: Vec<String> = steps
        .iter()
        .filter(|s| s.status.as_deref() == Some("failed"))
        .filter(|s| {
            !s.error_code
                .as_deref()
                .is_some_and(|c| ACTIONABLE.contains(&c))
                || s.error_message.as_deref().is_none_or(str::is_empty)
        })
        .map(|s| format!("{}: {:?} {:?}", s.task_id, s.error_code, s.error_message))
        .chain(steps.iter().filter_map(|s| {
            s.refused
                .as_ref()
                .map(|r| format!("{}: submit refused {r}", s.task_id))
        }))
        .collect();
    checks.push(verdict(
        "failures carry a reason a client can act on",
        bad_fail.is_empty(),
        list(bad_fail, 8),
    ));
    let events = env.events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let restarts = events
        .iter()
        .filter(|e| e.what.starts_with("wrangler") && e.ok)
        .count();
    let outages = events
        .iter()
        .filter(|e| !e.what.starts_with("wrangler") && e.ok)
        .count();
    let want_outages = if env.cfg.outage.is_zero() { 0 } else { 2 };
    checks.push(verdict(
        "every disruption happened (SIGKILL restarts, PostgREST stop, Storage outage)",
        restarts == env.cfg.restarts && outages == want_outages,
        format!(
            "{restarts}/{} restarts, {outages}/{want_outages} outages",
            env.cfg.restarts
        ),
    ));

    Outcome {
        steps,
        tripo_creates: creates.len(),
        tripo_creates_answer_lost: answer_lost,
        tripo_steps,
        uncertain,
        checks,
    }
}

/// Failed steps by error code.
pub fn failures_by_code(o: &Outcome) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in o
        .steps
        .iter()
        .filter(|s| s.status.as_deref() == Some("failed"))
    {
        *m.entry(s.error_code.clone().unwrap_or_else(|| "(none)".into()))
            .or_insert(0) += 1;
    }
    m
}

/// One step as JSON (for results.json).
pub fn step_json(s: &StepResult) -> Value {
    json!({
        "index": s.index, "kind": s.kind, "task_id": s.task_id, "nonce": s.nonce, "accepted": s.accepted,
        "refused": s.refused, "sends": s.sends, "answers": s.answers, "status": s.status,
        "status_error": s.status_error, "error_code": s.error_code, "error_message": s.error_message,
        "stuck": s.stuck, "output_problems": s.output_problems, "rows": s.rows,
        "rows_expected": s.rows_expected, "extra_objects": s.extra_objects,
        "row_mismatches": s.row_mismatches, "final_at_s": s.final_at, "last_events": s.last_events,
    })
}
