//! The job scenarios: 3 (`BENCH_JOBS` Tripo jobs at once, 60), 4 (50 concept jobs with n = 4) and 5 (model
//! copies of 10–300 MiB with the worker's memory sampled). Each run gets its own nonce, so the
//! fakes' request log tells its provider calls apart.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cfg::Cfg;
use crate::env::{Env, Res};
use crate::report::{Report, Verdict};
use crate::rss;
use crate::stats::{self, parse_ts_ms, percentile};

/// Fake seconds a Tripo task of scenario 3 runs.
const RUN_S: f64 = 20.0;
/// Generation tasks the Tripo fake (like Tripo, providers.md §1.8) runs at once per API key;
/// more are refused with 429/2000 until a slot frees.
const TRIPO_CONCURRENCY: usize = 10;

fn ts(v: &Value) -> f64 {
    v.as_str().and_then(parse_ts_ms).unwrap_or(f64::NAN)
}

fn terminal(row: &Value) -> bool {
    row["status"] == "complete" || row["status"] == "failed"
}

/// Polls `table` until every one of `expect_tasks` tasks under `prefix` has `per_task` rows and
/// all are terminal, or `limit` passes. Returns the rows.
fn wait_rows(
    env: &Env,
    table: &str,
    prefix: &str,
    expect_tasks: usize,
    per_task: usize,
    limit: Duration,
) -> Res<(Vec<Value>, bool)> {
    let t0 = Instant::now();
    let select = "task_id,status,updated_at,created_at,ai_service_task_id,metadata";
    loop {
        let rows = env.rt.block_on(env.rows(table, prefix, select))?;
        let done = rows.len() >= expect_tasks * per_task && rows.iter().all(terminal);
        if done || t0.elapsed() >= limit {
            return Ok((rows, done));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The first failure of a set of rows, for the notes: task id and the row's error.
fn first_failure(rows: &[Value]) -> Option<String> {
    rows.iter().find(|r| r["status"] == "failed").map(|r| {
        let e = &r["metadata"]["error"];
        let why = if e.is_null() {
            r["metadata"].to_string()
        } else {
            format!(
                "{}: {}",
                e["code"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("?")
            )
        };
        format!("{} {why}", r["task_id"].as_str().unwrap_or("?"))
    })
}

/// Objects under `{folder}/{task}` for each task (16 listings in flight).
fn objects_per_task(env: &Env, folder: &str, tasks: &[String]) -> Res<HashMap<String, usize>> {
    use futures::stream::{self, StreamExt};
    type Listing = (String, Res<Vec<(String, f64, f64)>>);
    let listed: Vec<Listing> = env.rt.block_on(
        stream::iter(tasks.iter().cloned())
            .map(|t| async move {
                let r = env.objects(&format!("{folder}/{t}")).await;
                (t, r)
            })
            .buffer_unordered(16)
            .collect(),
    );
    let mut out = HashMap::new();
    for (t, r) in listed {
        out.insert(t, r?.len());
    }
    Ok(out)
}

fn path_of(e: &Value) -> &str {
    e["path"].as_str().unwrap_or_default()
}

// ------------------------------------------------------------------------------------------
// 3. Tripo jobs
// ------------------------------------------------------------------------------------------

struct JobsRun {
    complete_ids: Vec<String>,
    prompt: String,
    lat: Vec<f64>,
    wall_s: f64,
    submit_s: f64,
    accepted: f64,
    polls_mean: f64,
    polls_max: f64,
    calls: f64,
    creates: f64,
    refused: f64,
    uncertain: f64,
    polls: f64,
    downloads: f64,
    not_complete: f64,
    rows_lost: f64,
    rows_dup: f64,
    objects_lost: f64,
    objects_dup: f64,
    extra_tripo_tasks: f64,
}

fn jobs_run(env: &Env, cfg: &Cfg, r: usize, reserve_s: f64) -> Res<JobsRun> {
    let n = cfg.jobs;
    let tag = format!("{}-j{r}", env.run);
    let prompt = format!("a bench teapot [[fake:run_s={RUN_S},queue_s=0,nonce={tag}]]");
    let bodies: Vec<Value> = (0..n)
        .map(|i| json!({"task_id": format!("{tag}-{i:03}"), "prompt": prompt, "texture": false}))
        .collect();
    let t0 = crate::now_ms();
    let subs = env.rt.block_on(env.submit_all("text-to-model", bodies, n));
    let submit_s = (crate::now_ms() - t0) / 1000.0;
    let accepted: Vec<String> = subs
        .iter()
        .filter(|s| s.status == 202)
        .map(|s| s.task_id.clone())
        .collect();
    if let Some(bad) = subs.iter().find(|s| s.status != 202) {
        eprintln!(
            "bench: jobs run {r}: {} of {n} submits not accepted, e.g. {} {}",
            n - accepted.len(),
            bad.status,
            bad.text
        );
    }
    // At most TRIPO_CONCURRENCY tasks run at once: the last ones cannot end before this.
    let floor_s = n.div_ceil(TRIPO_CONCURRENCY) as f64 * RUN_S;
    let left_s = cfg.budget_s - cfg.elapsed_s() - reserve_s;
    // Never less than the floor and a margin, even if the budget suffers.
    let limit = Duration::from_secs_f64((floor_s * 1.5 + 60.0).min(left_s).max(floor_s + 90.0));
    let (rows, done) = wait_rows(env, "models", &format!("{tag}-"), accepted.len(), 1, limit)?;
    if !rows.is_empty() && rows.iter().all(|r| r["status"] == "failed") {
        return Err(format!(
            "all {} model jobs failed: {}",
            rows.len(),
            first_failure(&rows).unwrap_or_default()
        )
        .into());
    }
    if !done {
        eprintln!("bench: jobs run {r}: not every job finished within {limit:?}");
    }
    let log = env.fake_log(&format!("nonce={tag}"));
    let mut created: HashMap<String, f64> = HashMap::new();
    let mut polls: HashMap<String, f64> = HashMap::new();
    let (mut creates, mut refused, mut n_polls, mut downloads) = (0.0, 0.0, 0.0, 0.0);
    for e in &log {
        let p = path_of(e);
        let id = e["tripo_task_id"].as_str().unwrap_or_default().to_string();
        if e["method"] == "POST" && p.starts_with("/v2/openapi/task") {
            creates += 1.0;
            if e["status"] == 429 {
                refused += 1.0;
            }
            if e["status"] == 200 && !id.is_empty() {
                let at = e["at_ms"].as_f64().unwrap_or(f64::NAN)
                    + e["duration_ms"].as_f64().unwrap_or(0.0);
                created.insert(id, at);
            }
        } else if e["method"] == "GET" && p.starts_with("/v2/openapi/task/") {
            n_polls += 1.0;
            *polls.entry(id).or_default() += 1.0;
        } else if p.starts_with("/__fake/files/") {
            downloads += 1.0;
        }
    }
    let mut by_task: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for row in &rows {
        by_task
            .entry(row["task_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(row);
    }
    let mut lat = Vec::new();
    let mut per_job_polls = Vec::new();
    let mut complete_tasks = Vec::new();
    let mut last_complete = f64::NAN;
    let mut on_rows = 0usize;
    for row in &rows {
        let tripo = row["ai_service_task_id"].as_str().unwrap_or_default();
        if !tripo.is_empty() {
            on_rows += 1;
            per_job_polls.push(polls.get(tripo).copied().unwrap_or(0.0));
        }
        if row["status"] != "complete" {
            continue;
        }
        let done_at = ts(&row["updated_at"]);
        last_complete = if last_complete.is_nan() {
            done_at
        } else {
            last_complete.max(done_at)
        };
        complete_tasks.push(row["task_id"].as_str().unwrap_or_default().to_string());
        if let Some(c) = created.get(tripo) {
            lat.push(done_at - (c + RUN_S * 1000.0));
        }
    }
    let rows_lost = accepted
        .iter()
        .filter(|t| !by_task.contains_key(*t))
        .count();
    let rows_dup = by_task.values().filter(|v| v.len() > 1).count();
    let not_complete = accepted.len() - complete_tasks.len().min(accepted.len());
    let objects = objects_per_task(env, "models", &complete_tasks)?;
    let objects_lost = objects.values().filter(|c| **c == 0).count();
    let objects_dup = objects.values().filter(|c| **c > 1).count();
    if let Some(f) = first_failure(&rows) {
        eprintln!("bench: jobs run {r}: a failed row: {f}");
    }
    Ok(JobsRun {
        complete_ids: complete_tasks.clone(),
        prompt,
        lat,
        wall_s: (last_complete - t0) / 1000.0,
        submit_s,
        accepted: accepted.len() as f64,
        polls_mean: stats::mean(&per_job_polls).unwrap_or(f64::NAN),
        polls_max: stats::max(&per_job_polls).unwrap_or(f64::NAN),
        calls: log.len() as f64,
        creates,
        refused,
        // Creates made after a lost answer (the worker's own count: at most one per step).
        uncertain: env
            .worker_events("provider.create_uncertain")
            .iter()
            .filter(|e| e["task_id"].as_str().is_some_and(|t| t.starts_with(&tag)))
            .count() as f64,
        polls: n_polls,
        downloads,
        not_complete: not_complete as f64,
        rows_lost: rows_lost as f64,
        rows_dup: rows_dup as f64,
        objects_lost: objects_lost as f64,
        objects_dup: objects_dup as f64,
        extra_tripo_tasks: (created.len() as f64 - on_rows as f64).max(0.0),
    })
}

/// Runs scenario 3; returns the ids of the first run's complete tasks and their prompt (the
/// profile resubmits them).
pub fn jobs(
    env: &Env,
    rep: &mut Report,
    cfg: &Cfg,
    reserve_s: f64,
) -> Option<(Vec<String>, String)> {
    let sc = format!("3 jobs ×{}", cfg.jobs);
    let mut runs: Vec<JobsRun> = Vec::new();
    let mut last_s = RUN_S + 30.0;
    let mut error = None;
    for r in 0..cfg.runs {
        if r > 0 && !cfg.time_allows(last_s, reserve_s) {
            rep.note(format!(
                "{sc}: {r} run(s) only — another would not fit the time budget"
            ));
            break;
        }
        eprintln!("bench: {sc}: run {}/{}", r + 1, cfg.runs);
        let t = Instant::now();
        match jobs_run(env, cfg, r, reserve_s) {
            Ok(x) => runs.push(x),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
        last_s = t.elapsed().as_secs_f64() + 3.0;
    }
    if let Some(e) = &error {
        rep.note(format!("{sc}: stopped: {e}"));
    }
    let col = |f: &dyn Fn(&JobsRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let pct = |p: f64| col(&|x: &JobsRun| percentile(&x.lat, p).unwrap_or(f64::NAN));
    rep.add(&sc, "submit phase (all at once)", "s", col(&|x| x.submit_s));
    rep.add(&sc, "accepted (202)", "jobs", col(&|x| x.accepted));
    rep.add(&sc, "fake success → row complete p50", "ms", pct(50.0));
    rep.add(&sc, "fake success → row complete p95", "ms", pct(95.0));
    rep.add(&sc, "fake success → row complete p99", "ms", pct(99.0));
    rep.add(&sc, "wall time until all complete", "s", col(&|x| x.wall_s));
    rep.add(
        &sc,
        &format!("  floor: {TRIPO_CONCURRENCY} Tripo tasks at once × {RUN_S} s"),
        "s",
        vec![cfg.jobs.div_ceil(TRIPO_CONCURRENCY) as f64 * RUN_S],
    );
    let floor = cfg.jobs.div_ceil(TRIPO_CONCURRENCY) as f64 * RUN_S;
    rep.add(
        &sc,
        "  wall / floor (target ≤ 1.15, SPEC §11 gate)",
        "×",
        col(&|x| x.wall_s / floor),
    );
    rep.add(
        &sc,
        "GET /task per job (mean)",
        "calls",
        col(&|x| x.polls_mean),
    );
    rep.add(
        &sc,
        "GET /task per job (max)",
        "calls",
        col(&|x| x.polls_max),
    );
    rep.add(&sc, "provider calls total", "calls", col(&|x| x.calls));
    rep.add(&sc, "  Tripo creates", "calls", col(&|x| x.creates));
    rep.add(
        &sc,
        "    refused 429/2000 (concurrency)",
        "calls",
        col(&|x| x.refused),
    );
    rep.add(
        &sc,
        "    after a lost answer (provider.create_uncertain)",
        "calls",
        col(&|x| x.uncertain),
    );
    rep.add(&sc, "  Tripo polls", "calls", col(&|x| x.polls));
    rep.add(&sc, "  GLB downloads", "calls", col(&|x| x.downloads));
    rep.add(&sc, "jobs not complete", "jobs", col(&|x| x.not_complete));
    rep.add(&sc, "rows lost", "rows", col(&|x| x.rows_lost));
    rep.add(&sc, "rows duplicated", "tasks", col(&|x| x.rows_dup));
    rep.add(&sc, "objects lost", "tasks", col(&|x| x.objects_lost));
    rep.add(&sc, "objects duplicated", "tasks", col(&|x| x.objects_dup));
    rep.add(
        &sc,
        "Tripo tasks not on a row",
        "tasks",
        col(&|x| x.extra_tripo_tasks),
    );
    if runs.is_empty() {
        let v = if error
            .as_deref()
            .is_some_and(|e| e.contains("not available"))
        {
            Verdict::Skip
        } else {
            Verdict::Fail
        };
        let why = error.unwrap_or_else(|| "no run".into());
        rep.check("3: zero rows/objects lost or duplicated", v, why.clone());
        rep.check("3: GET /task per 20 s job ≤ 12", v, why);
        return None;
    }
    let lost_dup =
        col(&|x| x.rows_lost + x.rows_dup + x.objects_lost + x.objects_dup + x.not_complete);
    rep.check_max(
        "3: zero rows/objects lost or duplicated (and every job complete)",
        &lost_dup,
        0.0,
        "problems",
    );
    rep.check_max(
        "3: GET /task per 20 s job ≤ 12",
        &col(&|x| x.polls_max),
        12.0,
        "calls",
    );
    runs.first()
        .filter(|x| !x.complete_ids.is_empty())
        .map(|x| (x.complete_ids.clone(), x.prompt.clone()))
}

// ------------------------------------------------------------------------------------------
// 4. Concept jobs
// ------------------------------------------------------------------------------------------

struct ConceptsRun {
    wall_s: f64,
    openai: f64,
    job_ms: Vec<f64>,
    not_complete: f64,
    rows_lost: f64,
    rows_dup: f64,
    objects_bad: f64,
}

const CONCEPTS_N: usize = 4;

fn concepts_run(env: &Env, cfg: &Cfg, input: &str, r: usize) -> Res<ConceptsRun> {
    let n = cfg.concept_jobs;
    let tag = format!("{}-c{r}", env.run);
    let prompt = format!("a bench chair [[fake:nonce={tag}]]");
    let bodies: Vec<Value> = (0..n)
        .map(|i| {
            json!({"task_id": format!("{tag}-{i:02}"), "input_image_asset_url": input,
                   "prompt": prompt, "n": CONCEPTS_N})
        })
        .collect();
    let t0 = crate::now_ms();
    let subs = env.rt.block_on(env.submit_all("image-to-image", bodies, n));
    let sent: HashMap<String, f64> = subs
        .iter()
        .filter(|s| s.status == 202)
        .map(|s| (s.task_id.clone(), s.sent_ms))
        .collect();
    if let Some(bad) = subs.iter().find(|s| s.status != 202) {
        eprintln!(
            "bench: concepts run {r}: a submit got {} {}",
            bad.status, bad.text
        );
    }
    let (rows, _) = wait_rows(
        env,
        "concept_images",
        &format!("{tag}-"),
        sent.len(),
        CONCEPTS_N,
        Duration::from_secs(180),
    )?;
    let mut by_task: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for row in &rows {
        by_task
            .entry(row["task_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(row);
    }
    let mut job_ms = Vec::new();
    let mut last = f64::NAN;
    let mut complete = Vec::new();
    for (task, rs) in &by_task {
        if rs.iter().all(|r| r["status"] == "complete") {
            let end = rs
                .iter()
                .map(|r| ts(&r["updated_at"]))
                .fold(f64::NAN, f64::max);
            last = if last.is_nan() { end } else { last.max(end) };
            if let Some(s) = sent.get(task) {
                job_ms.push(end - s);
            }
            complete.push(task.clone());
        }
    }
    let objects = objects_per_task(env, "concepts", &complete)?;
    let openai = env
        .fake_log(&format!("nonce={tag}"))
        .iter()
        .filter(|e| e["provider"] == "openai")
        .count();
    if let Some(f) = first_failure(&rows) {
        eprintln!("bench: concepts run {r}: a failed row: {f}");
    }
    Ok(ConceptsRun {
        wall_s: (last - t0) / 1000.0,
        openai: openai as f64,
        job_ms,
        not_complete: (sent.len() - complete.len().min(sent.len())) as f64,
        rows_lost: sent.keys().filter(|t| !by_task.contains_key(*t)).count() as f64,
        rows_dup: by_task.values().filter(|v| v.len() > CONCEPTS_N).count() as f64,
        objects_bad: objects.values().filter(|c| **c != CONCEPTS_N).count() as f64,
    })
}

pub fn concepts(env: &Env, rep: &mut Report, cfg: &Cfg, reserve_s: f64) {
    let sc = format!("4 concepts ×{} n=4", cfg.concept_jobs);
    let input = match env.rt.block_on(env.upload_input(
        "bench/input.png",
        fake_providers::solid_png(64, 64, [200, 40, 40]),
    )) {
        Ok(u) => u,
        Err(e) => {
            rep.note(format!("{sc}: could not upload the input image: {e}"));
            return;
        }
    };
    let mut runs = Vec::new();
    let mut last_s = 30.0;
    for r in 0..cfg.runs {
        if r > 0 && !cfg.time_allows(last_s, reserve_s) {
            rep.note(format!(
                "{sc}: {r} run(s) only — another would not fit the time budget"
            ));
            break;
        }
        eprintln!("bench: {sc}: run {}/{}", r + 1, cfg.runs);
        let t = Instant::now();
        match concepts_run(env, cfg, &input, r) {
            Ok(x) => runs.push(x),
            Err(e) => {
                rep.note(format!("{sc}: stopped: {e}"));
                break;
            }
        }
        last_s = t.elapsed().as_secs_f64() + 2.0;
    }
    let col = |f: &dyn Fn(&ConceptsRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    rep.add(&sc, "wall time until all complete", "s", col(&|x| x.wall_s));
    rep.add(&sc, "OpenAI calls", "calls", col(&|x| x.openai));
    rep.add(
        &sc,
        "job time (submit → last row) p50",
        "ms",
        col(&|x| percentile(&x.job_ms, 50.0).unwrap_or(f64::NAN)),
    );
    rep.add(
        &sc,
        "job time (submit → last row) p99",
        "ms",
        col(&|x| percentile(&x.job_ms, 99.0).unwrap_or(f64::NAN)),
    );
    rep.add(&sc, "jobs not complete", "jobs", col(&|x| x.not_complete));
    rep.add(
        &sc,
        "rows lost / duplicated",
        "tasks",
        col(&|x| x.rows_lost + x.rows_dup),
    );
    rep.add(
        &sc,
        "tasks without exactly 4 objects",
        "tasks",
        col(&|x| x.objects_bad),
    );
}

// ------------------------------------------------------------------------------------------
// 5. Model copy
// ------------------------------------------------------------------------------------------

struct CopyRun {
    mib_s: f64,
    copy_s: f64,
    to_complete_s: f64,
    group_mib: f64,
    workerd_mib: f64,
    base_mib: f64,
    intact: Option<bool>,
}

fn copy_run(env: &Env, sampler: &rss::Sampler, mib: u64, r: usize, verify: bool) -> Res<CopyRun> {
    let bytes = mib * 1024 * 1024;
    let task = format!("{}-m{mib}-{r}", env.run);
    let prompt =
        format!("a bench statue [[fake:run_s=1,queue_s=0,glb_bytes={bytes},nonce={task}]]");
    let sub = env.rt.block_on(env.submit(
        "text-to-model",
        &json!({"task_id": task, "prompt": prompt, "texture": false}),
    ));
    if sub.status != 202 {
        return Err(format!("submit: {} {}", sub.status, sub.text).into());
    }
    let limit = Duration::from_secs(90 + mib);
    let (rows, _) = wait_rows(env, "models", &task, 1, 1, limit)?;
    let row = rows
        .iter()
        .find(|r| r["task_id"] == task.as_str())
        .ok_or("no row")?;
    if row["status"] != "complete" {
        return Err(format!(
            "the {mib} MiB job ended {}: {}",
            row["status"],
            first_failure(&rows).unwrap_or_default()
        )
        .into());
    }
    let complete_ms = ts(&row["updated_at"]);
    // Let the sampler see the second after the copy too.
    std::thread::sleep(Duration::from_millis(300));
    let log = env.fake_log(&format!("nonce={task}"));
    let download = log
        .iter()
        .filter(|e| path_of(e).starts_with("/__fake/files/") && path_of(e).contains(".glb"))
        .min_by(|a, b| {
            a["at_ms"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["at_ms"].as_f64().unwrap_or(0.0))
        })
        .ok_or("the fake saw no GLB download")?;
    let dl_at = download["at_ms"].as_f64().unwrap_or(f64::NAN);
    let objects = env.rt.block_on(env.objects(&format!("models/{task}")))?;
    let (name, size, stored_ms) = objects.first().cloned().ok_or("no object stored")?;
    let expected = fake_providers::glb_bytes_len(bytes) as f64;
    if size != expected {
        return Err(format!("stored {size} bytes, expected {expected}").into());
    }
    let copy_s = (stored_ms - dl_at) / 1000.0;
    let (group_mib, workerd_mib, base_mib) =
        rss::growth(&sampler.samples(), dl_at, complete_ms + 250.0)
            .ok_or("no memory samples around the copy")?;
    let intact = if verify {
        Some(verify_copy(env, download, &task, &name, bytes)?)
    } else {
        None
    };
    Ok(CopyRun {
        mib_s: mib as f64 / copy_s,
        copy_s,
        to_complete_s: (complete_ms - dl_at) / 1000.0,
        group_mib,
        workerd_mib,
        base_mib,
        intact,
    })
}

/// Whether the stored object's SHA-256 is the fake model's.
fn verify_copy(env: &Env, download: &Value, task: &str, name: &str, bytes: u64) -> Res<bool> {
    use futures::StreamExt;
    use sha2::{Digest, Sha256};
    // /__fake/files/{tripo_task}/{kind}.glb
    let p = path_of(download);
    let mut parts = p.trim_start_matches("/__fake/files/").split('/');
    let tripo = parts.next().unwrap_or_default();
    let kind = parts
        .next()
        .unwrap_or_default()
        .split(['.', '?'])
        .next()
        .unwrap_or_default();
    let want = fake_providers::glb_sha256_hex(&fake_providers::model_seed(tripo, kind), bytes);
    let url = format!(
        "{}/storage/v1/object/public/{}/models/{task}/{name}",
        env.gw, env.bucket
    );
    let got = env.rt.block_on(async {
        let resp = env.http.get(&url).send().await?;
        let mut stream = resp.bytes_stream();
        let mut h = Sha256::new();
        while let Some(chunk) = stream.next().await {
            h.update(chunk?);
        }
        Ok::<_, reqwest::Error>(h.finalize())
    })?;
    let got: String = got.iter().map(|b| format!("{b:02x}")).collect();
    Ok(got == want)
}

pub fn copy(env: &Env, rep: &mut Report, cfg: &Cfg, reserve_s: f64) {
    let Some(pgid) = env.pgid else {
        rep.note("5 copy: wrangler's process group was not found; no memory figures");
        return;
    };
    let sampler = rss::Sampler::start(pgid, Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(1200));
    let mut biggest = Vec::new();
    let mut error = None;
    for &mib in &cfg.copy_mib {
        let sc = format!("5 copy {mib} MiB");
        let mut runs: Vec<CopyRun> = Vec::new();
        let mut last_s = 10.0 + mib as f64 / 10.0;
        for r in 0..cfg.runs {
            if r > 0 && !cfg.time_allows(last_s, reserve_s) {
                rep.note(format!(
                    "{sc}: {r} run(s) only — another would not fit the time budget"
                ));
                break;
            }
            eprintln!("bench: {sc}: run {}/{}", r + 1, cfg.runs);
            let t = Instant::now();
            match copy_run(env, &sampler, mib, r, r == 0) {
                Ok(x) => runs.push(x),
                Err(e) => {
                    rep.note(format!("{sc}: stopped: {e}"));
                    error = Some(e.to_string());
                    break;
                }
            }
            last_s = t.elapsed().as_secs_f64() + 1.0;
            std::thread::sleep(Duration::from_secs(1));
        }
        let col = |f: &dyn Fn(&CopyRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        rep.add(
            &sc,
            "copy throughput (GET at fake → object stored)",
            "MiB/s",
            col(&|x| x.mib_s),
        );
        rep.add(&sc, "copy time", "s", col(&|x| x.copy_s));
        rep.add(
            &sc,
            "GET at fake → row complete",
            "s",
            col(&|x| x.to_complete_s),
        );
        rep.add(
            &sc,
            "RSS growth, wrangler group",
            "MiB",
            col(&|x| x.group_mib),
        );
        rep.add(
            &sc,
            "RSS growth, workerd only",
            "MiB",
            col(&|x| x.workerd_mib),
        );
        rep.add(
            &sc,
            "RSS baseline, wrangler group",
            "MiB",
            col(&|x| x.base_mib),
        );
        for x in &runs {
            if x.intact == Some(false) {
                rep.note(format!(
                    "{sc}: the stored model's SHA-256 differs from the fake's"
                ));
            }
        }
        if runs.iter().any(|x| x.intact == Some(true)) {
            rep.note(format!("{sc}: stored model verified (size and SHA-256)"));
        }
        if Some(&mib) == cfg.copy_mib.iter().max() {
            biggest = col(&|x| x.group_mib);
        }
    }
    let _ = sampler.stop();
    let big = cfg.copy_mib.iter().max().copied().unwrap_or(0);
    if biggest.is_empty() {
        let v = if error
            .as_deref()
            .is_some_and(|e| e.contains("not available"))
        {
            Verdict::Skip
        } else {
            Verdict::Fail
        };
        rep.check(
            &format!("5: memory growth < 64 MiB copying {big} MiB"),
            v,
            error.unwrap_or_else(|| "not measured".into()),
        );
    } else {
        rep.check_max(
            &format!("5: memory growth < 64 MiB copying {big} MiB (wrangler group)"),
            &biggest,
            64.0,
            "MiB",
        );
    }
}

// ------------------------------------------------------------------------------------------
// 6. Memory of one concepts job at its largest (P9 finding 8)
// ------------------------------------------------------------------------------------------

/// n of the memory job: the most OpenAI allows.
const MEMORY_N: usize = 10;
/// The input: just under `MAX_INPUT_BYTES` (20 MiB).
const MEMORY_INPUT_BYTES: usize = 20_000_000;
/// Each output image: an incompressible 1536x1024 RGBA PNG (4 bytes a pixel plus a filter
/// byte a row), the largest image of the largest size gpt-image-1/1.5 make; its base64 is
/// 8.4 MB, so the reply of n = 10 is ≈ 84 MB.
const MEMORY_IMAGE_BYTES: u64 = 1536 * 1024 * 4 + 1024 + 4096;

/// One image-to-image job, n = 10, 20 MB input, 6.3 MB images (`BENCH_ONLY=memory`): the
/// WebAssembly memory of the isolate before the OpenAI call and after the uploads (from the
/// job's `concepts.openai_call` and `concepts.uploaded` events), and the RSS growth of workerd
/// while it ran. Run it alone (a fresh isolate): WebAssembly memory never shrinks, so "after"
/// is the high-water mark of everything the isolate did before too.
pub fn memory(env: &Env, rep: &mut Report) {
    let sc = format!("6 concepts memory n={MEMORY_N}");
    let Some(pgid) = env.pgid else {
        rep.note(format!("{sc}: wrangler's process group was not found"));
        return;
    };
    let input = fake_providers::pad_png(
        fake_providers::solid_png(64, 64, [10, 120, 200]),
        MEMORY_INPUT_BYTES,
    );
    let input = match env
        .rt
        .block_on(env.upload_input("bench/memory-input.png", input))
    {
        Ok(u) => u,
        Err(e) => {
            rep.note(format!("{sc}: could not upload the input image: {e}"));
            return;
        }
    };
    let sampler = rss::Sampler::start(pgid, Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(1200));
    let task = format!("{}-mem", env.run);
    let prompt = format!("a bench vase [[fake:image_bytes={MEMORY_IMAGE_BYTES},nonce={task}]]");
    let t0 = crate::now_ms();
    let sub = env.rt.block_on(env.submit(
        "image-to-image",
        &json!({"task_id": task, "input_image_asset_url": input, "prompt": prompt,
                "n": MEMORY_N}),
    ));
    if sub.status != 202 {
        rep.note(format!("{sc}: submit: {} {}", sub.status, sub.text));
        let _ = sampler.stop();
        return;
    }
    let waited = wait_rows(
        env,
        "concept_images",
        &task,
        1,
        MEMORY_N,
        Duration::from_secs(300),
    );
    std::thread::sleep(Duration::from_millis(500));
    let samples = sampler.stop();
    let rows = match waited {
        Ok((rows, _)) => rows,
        Err(e) => {
            rep.note(format!("{sc}: {e}"));
            return;
        }
    };
    let complete = rows.iter().filter(|r| r["status"] == "complete").count();
    if let Some(f) = first_failure(&rows) {
        rep.note(format!("{sc}: a failed row: {f}"));
    }
    let end = rows
        .iter()
        .map(|r| ts(&r["updated_at"]))
        .fold(f64::NAN, f64::max);
    let of_task = |event: &str| {
        env.worker_events(event)
            .into_iter()
            .rfind(|e| e["task_id"] == task.as_str())
    };
    let mib = |v: &Value| v.as_f64().map_or(f64::NAN, |b| b / (1024.0 * 1024.0));
    let call = of_task("concepts.openai_call");
    let done = of_task("concepts.uploaded");
    let before = call
        .as_ref()
        .map_or(f64::NAN, |e| mib(&e["wasm_memory_bytes"]));
    let after = done
        .as_ref()
        .map_or(f64::NAN, |e| mib(&e["wasm_memory_bytes"]));
    let reply = done.as_ref().map_or(f64::NAN, |e| mib(&e["reply_bytes"]));
    let (group, workerd, _) =
        rss::growth(&samples, t0, end + 250.0).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    rep.add(&sc, "rows complete", "rows", vec![complete as f64]);
    rep.add(&sc, "OpenAI reply", "MiB", vec![reply]);
    rep.add(
        &sc,
        "WASM memory before the OpenAI call",
        "MiB",
        vec![before],
    );
    rep.add(&sc, "WASM memory after the uploads", "MiB", vec![after]);
    rep.add(&sc, "WASM memory growth", "MiB", vec![after - before]);
    rep.add(&sc, "RSS growth, workerd only", "MiB", vec![workerd]);
    rep.add(&sc, "RSS growth, wrangler group", "MiB", vec![group]);
    rep.add(
        &sc,
        "job time (submit → last row)",
        "s",
        vec![(end - t0) / 1000.0],
    );
    if after.is_nan() {
        rep.check(
            "6: WASM memory < 64 MiB, concepts n = 10 at 1536x1024",
            Verdict::Fail,
            "not measured (no concepts.uploaded event with wasm_memory_bytes)",
        );
    } else {
        rep.check_max(
            "6: WASM memory < 64 MiB, concepts n = 10 at 1536x1024",
            &[after],
            64.0,
            "MiB",
        );
    }
}
