//! The orchestration stopped at every await (SPEC §6: every state has a way out). Each scenario
//! submits a step and lets the in-memory platform deliver messages and fire alarms until nothing
//! is left, with the run stopped once at the n-th port call — before the call reaches its
//! dependency, or after it acted and before its answer came back — for every n of the
//! undisturbed run. The stopped message is lost, or redelivered as Queues would after a crash.
//! Whatever the stop, the step ends `complete`, exactly once, with its outputs stored, its rows
//! equal to the Durable Object, and at most one extra Tripo task, logged as uncertain.

use serde_json::{json, Value};
use uuid::Uuid;

use super::memory::{drive, Mem, Op, Queued, Stop};
use super::{alarm, consume, dead_letter, gate, submit};
use crate::config::Config;
use crate::error::{DepError, Dependency};
use crate::ids::{TaskId, UserId};
use crate::request::{parse, Endpoint};
use crate::step::{Status, Step};
use crate::storage_path::output_path;
use crate::task::{Command, Outcome, Phase};
use crate::task_wire::DoError;

const INPUT: &str = "https://abc.supabase.co/storage/v1/object/public/inputs/u/in.png";

fn owner() -> UserId {
    UserId(Uuid::from_u128(7))
}

#[derive(Clone, Copy)]
struct Scenario {
    endpoint: Endpoint,
    body: fn() -> Value,
}

fn concepts() -> Value {
    json!({ "task_id": "t-flow", "prompt": "a cat", "n": 3, "input_image_asset_url": INPUT })
}

fn image_model() -> Value {
    json!({ "task_id": "t-flow", "input_image_asset_urls": [INPUT] })
}

fn text_model() -> Value {
    json!({ "task_id": "t-flow", "prompt": "a chair" })
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        endpoint: Endpoint::ImageToImage,
        body: concepts,
    },
    Scenario {
        endpoint: Endpoint::ImageToModel,
        body: image_model,
    },
    Scenario {
        endpoint: Endpoint::TextToModel,
        body: text_model,
    },
];

/// What the platform does with a message whose run was stopped or ended in an error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Delivery {
    /// Redelivered a few seconds later (Queues after a crash or an uncaught error).
    Redelivered,
    /// Gone (a lost message, or one whose redeliveries all failed).
    Lost,
}

/// Delivers due messages and fires due alarms, moving the clock on, until nothing is left.
fn settle(mem: &Mem, cfg: &Config, delivery: Delivery) {
    for _ in 0..20_000 {
        let now = mem.now();
        let due = {
            let mut w = mem.w.borrow_mut();
            let first = w
                .queue
                .iter()
                .enumerate()
                .filter(|(_, q)| q.at_ms <= now)
                .min_by_key(|(_, q)| q.at_ms)
                .map(|(i, _)| i);
            first.map(|i| w.queue.remove(i))
        };
        if let Some(q) = due {
            let outcome = drive(mem, consume::process(mem, cfg, &q.msg));
            let again = match outcome {
                Some(Ok(())) => false,
                Some(Err(_)) => delivery == Delivery::Redelivered,
                None => {
                    mem.recover();
                    delivery == Delivery::Redelivered
                }
            };
            if again {
                mem.w.borrow_mut().queue.push(Queued {
                    msg: q.msg,
                    at_ms: now + 5_000,
                });
            }
            continue;
        }
        let alarm_due = {
            let mut w = mem.w.borrow_mut();
            let task = w
                .alarms
                .iter()
                .find(|(_, at)| **at <= now)
                .map(|(t, _)| t.clone());
            if let Some(t) = &task {
                w.alarms.remove(t);
            }
            task
        };
        if let Some(task) = alarm_due {
            let Some(state) = mem.state(&task) else {
                continue;
            };
            match drive(mem, alarm::on_alarm(mem, Some(cfg), &state)) {
                Some(()) => {
                    // The glue re-arms from the state the alarm left.
                    if let Some(at) = mem.state(&task).and_then(|s| s.next_alarm_ms()) {
                        mem.w.borrow_mut().alarms.insert(task, at.max(now + 1));
                    }
                }
                None => {
                    // The runtime retries an alarm whose handler did not finish.
                    mem.recover();
                    mem.w.borrow_mut().alarms.insert(task, now + 1_000);
                }
            }
            continue;
        }
        if heal_gates(mem, now) {
            continue;
        }
        match next_event_at(mem) {
            Some(at) => mem.advance_to(at),
            None => return,
        }
    }
    panic!("the platform never became idle");
}

/// When the next message, task alarm or gate alarm is due.
fn next_event_at(mem: &Mem) -> Option<u64> {
    let w = mem.w.borrow();
    w.queue
        .iter()
        .map(|q| q.at_ms)
        .chain(w.alarms.values().copied())
        .chain(w.gates.values().filter_map(|(g, _)| g.next_alarm_ms()))
        .min()
}

/// Runs each gate's alarm that is due (as its Durable Object does); whether one ran.
fn heal_gates(mem: &Mem, now: u64) -> bool {
    let due: Vec<_> = mem
        .w
        .borrow()
        .gates
        .iter()
        .filter(|(_, (g, _))| g.next_alarm_ms().is_some_and(|at| at <= now))
        .map(|(name, (g, cap))| (*name, g.clone(), *cap))
        .collect();
    for (name, mut gate, cap) in due.iter().cloned() {
        let woken = drive(mem, gate::heal(mem, &mut gate, cap, now)).unwrap_or_default();
        mem.w.borrow_mut().gates.insert(name, (gate, cap));
        drive(mem, gate::wake(mem, woken));
    }
    !due.is_empty()
}

fn task() -> TaskId {
    TaskId::parse("t-flow").unwrap()
}

/// Submits `body` to `endpoint`; it must be accepted.
fn submit_ok(mem: &Mem, endpoint: Endpoint, body: Value) {
    let valid = parse(endpoint, body.to_string().as_bytes()).unwrap();
    drive(mem, submit::submit(mem, &mem.cfg, valid, owner(), false))
        .unwrap()
        .unwrap();
}

/// Submits `scenario` (the client does not retry if its submit is stopped) and settles.
fn run(mem: &Mem, scenario: Scenario, delivery: Delivery) -> Option<()> {
    let cfg = mem.cfg.clone();
    let body = (scenario.body)().to_string();
    let valid = parse(scenario.endpoint, body.as_bytes()).unwrap();
    let answer = drive(mem, submit::submit(mem, &mem.cfg, valid, owner(), false));
    if answer.is_none() {
        mem.recover();
    }
    settle(mem, &cfg, delivery);
    answer.map(|_| ())
}

/// Every step final and `complete`, completed once, outputs stored, rows equal to the DO, the
/// rows check settled, Tripo creates bounded. A task that never reached the DO left nothing.
fn check(mem: &Mem, label: &str) {
    let task = task();
    let tables = mem.cfg.tables();
    let Some(state) = mem.state(&task) else {
        for step in [Step::Concepts, Step::Model] {
            assert!(
                mem.rows_of(tables.of(step), &task).is_empty(),
                "{label}: rows without a task"
            );
        }
        assert!(mem.w.borrow().queue.is_empty(), "{label}");
        return;
    };
    for (step, s) in &state.steps {
        assert_eq!(s.status, Status::Complete, "{label}: {s:?}");
        assert!(s.rows.is_settled(), "{label}: rows unconfirmed");
        let completions = mem
            .w
            .borrow()
            .applied
            .iter()
            .filter(|(c, o)| {
                matches!(c, Command::Complete { step: st, .. } if st == step)
                    && *o == Outcome::Completed
            })
            .count();
        assert_eq!(completions, 1, "{label}: completed {completions} times");
        let rows = mem.rows_of(tables.of(*step), &task);
        assert_eq!(rows.len(), s.row_ids.len(), "{label}: rows");
        for (i, id) in s.row_ids.iter().enumerate() {
            let row = rows
                .iter()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(&id.to_string()))
                .unwrap_or_else(|| panic!("{label}: row {i} missing"));
            assert_eq!(row["status"], json!("complete"), "{label}: row {i}");
            assert_eq!(row["asset_url"], json!(s.asset_urls[i]), "{label}: row {i}");
            assert_eq!(row["metadata"]["attempt"], json!(s.attempt), "{label}");
            let path = output_path(&task, *step, i as u32);
            let objects = &mem.w.borrow().objects;
            let stored = objects
                .get(&path)
                .unwrap_or_else(|| panic!("{label}: no object at {path}"));
            if *step != Step::Concepts {
                let id = s.provider_task_id.as_deref().unwrap();
                assert_eq!(*stored, Mem::model_bytes(id), "{label}: model bytes");
            }
            assert!(s.asset_urls[i].ends_with(&path), "{label}");
        }
        if *step == Step::Concepts {
            assert!(mem.w.borrow().openai_calls <= 2, "{label}");
        } else {
            let creates = mem.w.borrow().tripo_creates as usize;
            let uncertain = mem.events("provider.create_uncertain");
            assert!(
                creates <= 1 + uncertain,
                "{label}: {creates} creates, {uncertain} uncertain"
            );
        }
    }
    assert!(
        mem.w.borrow().alarms.is_empty(),
        "{label}: an alarm is left"
    );
    let w = mem.w.borrow();
    assert!(
        w.outside_bulk.is_empty(),
        "{label}: transfers outside a bulky part: {:?}",
        w.outside_bulk
    );
    assert_eq!(w.bulky, 0, "{label}: a bulky part never ended");
}

#[test]
fn undisturbed_runs_complete_with_the_expected_calls() {
    for scenario in SCENARIOS {
        let mem = Mem::new();
        run(&mem, scenario, Delivery::Lost).unwrap();
        check(&mem, "undisturbed");
        let w = mem.w.borrow();
        assert!(w.calls > 10, "{} calls", w.calls);
        assert_eq!(w.tripo_creates + w.openai_calls, 1);
        // Concepts: the OpenAI part; a model: its copy, and an image model its input's upload.
        assert!(w.bulk_parts >= 1, "no bulky part");
    }
}

#[test]
fn a_run_stopped_at_any_await_is_finished_exactly_once_by_the_next_delivery_or_alarm() {
    let mut runs = 0;
    for scenario in SCENARIOS {
        let clean = Mem::new();
        run(&clean, scenario, Delivery::Lost).unwrap();
        let calls = clean.w.borrow().calls;
        eprintln!(
            "flow: {:?}: {calls} port calls undisturbed",
            scenario.endpoint
        );
        for n in 1..=calls {
            for stop in [Stop::Before, Stop::After] {
                for delivery in [Delivery::Lost, Delivery::Redelivered] {
                    let mem = Mem::new();
                    mem.crash_at(n, stop);
                    run(&mem, scenario, delivery);
                    let label = format!(
                        "{:?} stopped at call {n}/{calls} ({stop:?}), message {delivery:?}",
                        scenario.endpoint
                    );
                    check(&mem, &label);
                    runs += 1;
                }
            }
        }
    }
    assert!(runs > 100, "{runs} runs");
    eprintln!("flow: {runs} runs, each stopped at one await, all finished exactly once");
}

#[test]
fn rows_that_could_not_be_written_after_the_end_are_written_by_the_alarm() {
    // P9 finding 3: PostgREST fails for every write after the model is stored, and every
    // message that could repair the rows is lost; the DO's rows check is the way out.
    let mem = Mem::new();
    let cfg = mem.cfg.clone();
    submit_ok(&mem, Endpoint::ImageToModel, image_model());
    // Run until the provider succeeded (the finalize message is queued).
    for _ in 0..200 {
        let finalizing = mem
            .state(&task())
            .is_some_and(|s| s.steps[&Step::Model].phase() == Phase::Finalizing);
        if finalizing {
            break;
        }
        step_once(&mem, &cfg);
    }
    // Every write of the final state fails 20 times: the job's own retries give up first.
    mem.w.borrow_mut().rest_outage = Some(("\"complete\"".into(), 20));
    settle(&mem, &cfg, Delivery::Lost);
    assert_eq!(mem.w.borrow().rest_outage.as_ref().map(|o| o.1), Some(0));
    assert!(mem.events("rows.resync") >= 1);
    check(&mem, "rows outage");
}

/// Delivers one due message or fires one due alarm (or moves the clock on).
fn step_once(mem: &Mem, cfg: &Config) {
    let now = mem.now();
    let msg = {
        let mut w = mem.w.borrow_mut();
        let i = w.queue.iter().position(|q| q.at_ms <= now);
        i.map(|i| w.queue.remove(i))
    };
    if let Some(q) = msg {
        let _ = drive(mem, consume::process(mem, cfg, &q.msg));
        return;
    }
    let due = mem
        .w
        .borrow()
        .alarms
        .iter()
        .find(|(_, at)| **at <= now)
        .map(|(t, _)| t.clone());
    if let Some(task) = due {
        mem.w.borrow_mut().alarms.remove(&task);
        if let Some(state) = mem.state(&task) {
            drive(mem, alarm::on_alarm(mem, Some(cfg), &state));
            if let Some(at) = mem.state(&task).and_then(|s| s.next_alarm_ms()) {
                mem.w.borrow_mut().alarms.insert(task, at);
            }
        }
        return;
    }
    if let Some(at) = next_event_at(mem) {
        mem.advance_to(at);
    }
}

#[test]
fn a_duplicate_message_or_alarm_after_the_end_changes_nothing() {
    let mem = Mem::new();
    let cfg = mem.cfg.clone();
    run(&mem, SCENARIOS[1], Delivery::Lost).unwrap();
    let before = mem.state(&task());
    let rows_before = mem.w.borrow().rows.clone();
    let creates = mem.w.borrow().tripo_creates;
    let run_msg = crate::jobs::JobMessage::run(task(), Step::Model, 1);
    let fin_msg = crate::jobs::JobMessage::finalize(task(), Step::Model, 1).unwrap();
    for msg in [&run_msg, &fin_msg, &run_msg] {
        drive(&mem, consume::process(&mem, &cfg, msg))
            .unwrap()
            .unwrap();
    }
    let state = mem.state(&task()).unwrap();
    drive(&mem, alarm::on_alarm(&mem, Some(&cfg), &state)).unwrap();
    drive(&mem, alarm::on_alarm(&mem, Some(&cfg), &state)).unwrap();
    assert_eq!(mem.state(&task()), before);
    assert_eq!(mem.w.borrow().rows, rows_before);
    assert_eq!(mem.w.borrow().tripo_creates, creates);
}

#[test]
fn the_dead_letter_queue_fails_an_unfinished_step_and_resyncs_a_final_one() {
    let mem = Mem::new();
    let cfg = mem.cfg.clone();
    submit_ok(&mem, Endpoint::TextToModel, text_model());
    // The run message exhausted its deliveries without ever running.
    let dead = mem.w.borrow_mut().queue.remove(0).msg;
    drive(&mem, dead_letter::handle(&mem, &cfg, &dead))
        .unwrap()
        .unwrap();
    let s = mem.state(&task()).unwrap().steps[&Step::Model].clone();
    assert_eq!(s.status, Status::Failed);
    assert!(s.rows.is_settled(), "the rows were written and confirmed");
    let rows = mem.rows_of(mem.cfg.tables().of(Step::Model), &task());
    assert_eq!(rows[0]["status"], json!("failed"));
    assert_eq!(
        rows[0]["metadata"]["error"]["code"],
        json!(s.error.as_ref().unwrap().code)
    );
    // The same dead letter again: the step is final; its rows are written again, nothing else.
    let rows_before = mem.w.borrow().rows.clone();
    drive(&mem, dead_letter::handle(&mem, &cfg, &dead))
        .unwrap()
        .unwrap();
    assert_eq!(mem.w.borrow().rows, rows_before);
    assert_eq!(mem.state(&task()).unwrap().steps[&Step::Model], s);
}

#[test]
fn a_lost_create_answer_is_retried_once_as_uncertain_and_a_storage_blip_is_retried() {
    let mem = Mem::new();
    let e503 = |dep| DepError::new(dep, Some(503), "unavailable");
    mem.fail_next(Op::Download, e503(Dependency::Storage));
    mem.fail_next(Op::TripoCreate, e503(Dependency::Tripo));
    run(&mem, SCENARIOS[1], Delivery::Lost).unwrap();
    check(&mem, "faults");
    // The 503 may have created a task: the second create is logged as uncertain.
    assert_eq!(mem.events("provider.create_uncertain"), 1);
    assert_eq!(mem.events("job.retry"), 2);
    assert_eq!(mem.w.borrow().tripo_creates, 1);
}

#[test]
fn the_tripo_gate_never_lets_more_tasks_run_than_its_capacity_and_every_step_completes() {
    let mut mem = Mem::new();
    mem.cfg.tripo_max_concurrent_tasks = 2;
    mem.w.borrow_mut().tripo_polls = 4;
    let cfg = mem.cfg.clone();
    let ids: Vec<String> = (0..7).map(|i| format!("t-gate-{i}")).collect();
    for id in &ids {
        submit_ok(
            &mem,
            Endpoint::TextToModel,
            json!({ "task_id": id, "prompt": "a chair" }),
        );
    }
    // Watch the places in line while the platform runs.
    let mut positions: Vec<(String, u32)> = Vec::new();
    for _ in 0..5_000 {
        step_once(&mem, &cfg);
        heal_gates(&mem, mem.now());
        for id in &ids {
            let t = TaskId::parse(id).unwrap();
            if let Some(w) = mem
                .state(&t)
                .and_then(|s| s.steps[&Step::Model].job.slot_wait)
            {
                if positions.last() != Some(&(id.clone(), w.position)) {
                    positions.push((id.clone(), w.position));
                }
            }
        }
        let idle = {
            let w = mem.w.borrow();
            w.queue.is_empty() && w.alarms.is_empty()
        };
        if idle {
            break;
        }
    }
    for id in &ids {
        let s = mem.state(&TaskId::parse(id).unwrap()).unwrap();
        assert_eq!(s.steps[&Step::Model].status, Status::Complete, "{id}");
    }
    let w = mem.w.borrow();
    assert_eq!(w.tripo_creates, 7);
    assert!(
        w.tripo_peak <= 2,
        "{} Tripo tasks ran at once",
        w.tripo_peak
    );
    assert!(w.tripo_peak == 2, "the gate let two run at once");
    let (gate, _) = &w.gates[&crate::gate::GateName::Tripo];
    assert!(
        gate.holders.is_empty() && gate.waiting.is_empty(),
        "{gate:?}"
    );
    // The last in line saw its place go down, never up.
    let mut last: Vec<u32> = positions
        .iter()
        .filter(|(id, _)| id == "t-gate-6")
        .map(|(_, p)| *p)
        .collect();
    last.dedup();
    assert!(
        last.len() >= 2 && last.windows(2).all(|p| p[1] < p[0]),
        "{last:?}"
    );
}

#[test]
fn a_lost_release_is_healed_by_the_gate() {
    let mut mem = Mem::new();
    mem.cfg.tripo_max_concurrent_tasks = 1;
    let cfg = mem.cfg.clone();
    // A slot held by a step whose release never came (its task is final).
    run(&mem, SCENARIOS[2], Delivery::Lost).unwrap();
    let key = gate::key(&task(), Step::Model, 1);
    let now = mem.now();
    mem.w
        .borrow_mut()
        .gates
        .get_mut(&crate::gate::GateName::Tripo)
        .unwrap()
        .0
        .acquire(&key, 1, 30 * 60_000, now);
    // Another task must wait, and completes once the gate has checked the holder.
    submit_ok(
        &mem,
        Endpoint::TextToModel,
        json!({ "task_id": "t-next", "prompt": "a lamp" }),
    );
    settle(&mem, &cfg, Delivery::Lost);
    let next = mem.state(&TaskId::parse("t-next").unwrap()).unwrap();
    assert_eq!(next.steps[&Step::Model].status, Status::Complete);
    assert_eq!(mem.events("gate.healed"), 1);
    assert!(mem.events("gate.waiting") >= 1);
}

fn with_webhook(mut body: Value) -> Value {
    body["webhook_url"] = json!("https://hooks.example.com/h");
    body
}

/// Checks the deliveries the receiver got: at least one, all of one event (one id), each
/// signed as Standard Webhooks verifies it, each body the step's final status view.
fn check_webhooks(mem: &Mem, label: &str, status: &str) {
    use crate::webhook::{parse_secret, signature_header, signed_content, tests::hmac_sha256};
    let key = parse_secret(super::memory::WEBHOOK_SECRET).unwrap();
    let w = mem.w.borrow();
    assert!(!w.webhooks.is_empty(), "{label}: no webhook");
    let id = &w.webhooks[0].id;
    for d in &w.webhooks {
        assert_eq!(&d.id, id, "{label}: one event, one id");
        assert_eq!(d.url, "https://hooks.example.com/h");
        let expected = signature_header(&hmac_sha256(
            &key,
            &signed_content(&d.id, d.timestamp_s, &d.body),
        ));
        assert_eq!(d.signature, expected, "{label}: signature");
        let body: Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(body["status"], json!(status), "{label}: {body}");
        assert_eq!(body["task_id"], json!("t-flow"));
    }
    let state = w.tasks.get(&task()).unwrap();
    assert!(
        state.steps.values().all(|s| s.webhook.is_none()),
        "{label}: a webhook is still due"
    );
}

#[test]
fn a_webhook_is_sent_once_per_final_step_and_survives_a_stop_at_any_await() {
    let mut runs = 0;
    for scenario in SCENARIOS {
        let body = with_webhook((scenario.body)());
        let clean = Mem::new();
        let cfg = clean.cfg.clone();
        submit_ok(&clean, scenario.endpoint, body.clone());
        settle(&clean, &cfg, Delivery::Lost);
        check(&clean, "webhook, undisturbed");
        check_webhooks(&clean, "undisturbed", "complete");
        assert_eq!(clean.w.borrow().webhooks.len(), 1, "exactly one delivery");
        let calls = clean.w.borrow().calls;
        for n in 2..=calls {
            for stop in [Stop::Before, Stop::After] {
                let mem = Mem::new();
                submit_ok(&mem, scenario.endpoint, body.clone());
                mem.crash_at(n, stop);
                settle(&mem, &cfg, Delivery::Lost);
                let label = format!("{:?} stopped at {n}/{calls} {stop:?}", scenario.endpoint);
                if mem.state(&task()).is_some() {
                    check(&mem, &label);
                    check_webhooks(&mem, &label, "complete");
                }
                runs += 1;
            }
        }
    }
    assert!(runs > 50, "{runs}");
}

#[test]
fn a_webhook_is_retried_after_a_500_and_a_timeout_with_the_same_id() {
    let mem = Mem::new();
    let cfg = mem.cfg.clone();
    mem.w.borrow_mut().webhook_answers = [
        Ok(500),
        Err("timed out after 10000 ms".to_owned()),
        Ok(429),
        Ok(200),
    ]
    .into();
    submit_ok(&mem, Endpoint::TextToModel, with_webhook(text_model()));
    settle(&mem, &cfg, Delivery::Lost);
    check(&mem, "retried");
    check_webhooks(&mem, "retried", "complete");
    assert_eq!(mem.w.borrow().webhooks.len(), 4);
    assert_eq!(mem.events("webhook.retry"), 3);
    assert_eq!(mem.events("webhook.delivered"), 1);
    // A refusal (4xx) ends it at once.
    let mem = Mem::new();
    mem.w.borrow_mut().webhook_answers = [Ok(410)].into();
    submit_ok(&mem, Endpoint::TextToModel, with_webhook(text_model()));
    settle(&mem, &cfg, Delivery::Lost);
    assert_eq!(mem.w.borrow().webhooks.len(), 1);
    assert_eq!(mem.events("webhook.failed"), 1);
    check_webhooks(&mem, "refused", "complete");
}

/// A private bucket: the webhook body carries URLs the receiver can download (signed at the
/// try), never the stored authenticated ones; a try whose URLs cannot be signed sends nothing
/// and is retried with the same id.
#[test]
fn a_private_buckets_webhook_carries_signed_urls_and_a_signing_failure_is_retried() {
    let mut mem = Mem::new();
    mem.cfg.bucket_public = false;
    mem.w.borrow_mut().sign_failures = [()].into();
    let cfg = mem.cfg.clone();
    submit_ok(&mem, Endpoint::TextToModel, with_webhook(text_model()));
    settle(&mem, &cfg, Delivery::Lost);
    check(&mem, "private bucket");
    assert_eq!(
        mem.events("webhook.retry"),
        1,
        "the unsigned try is retried"
    );
    let w = mem.w.borrow();
    assert_eq!(w.webhooks.len(), 1, "nothing is sent without signed URLs");
    let body: Value = serde_json::from_str(&w.webhooks[0].body).unwrap();
    let url = body["asset_url"].as_str().unwrap_or_default();
    assert!(
        url.contains("/object/authenticated/") && url.ends_with("?token=mem"),
        "the body's URL is the signed one: {body}"
    );
    for u in body["asset_urls"].as_array().unwrap() {
        assert!(u.as_str().unwrap().ends_with("?token=mem"), "{body}");
    }
    drop(w);
    check_webhooks(&mem, "private bucket", "complete");
}

#[test]
fn a_receiver_that_never_answers_is_given_up_after_a_day() {
    let mem = Mem::new();
    let cfg = mem.cfg.clone();
    mem.w.borrow_mut().webhook_answers = (0..200).map(|_| Ok(503)).collect();
    submit_ok(&mem, Endpoint::TextToModel, with_webhook(text_model()));
    settle(&mem, &cfg, Delivery::Lost);
    let sent = mem.w.borrow().webhooks.len();
    assert!((10..60).contains(&sent), "{sent} tries");
    assert_eq!(mem.events("webhook.gave_up"), 1);
    assert!(mem.w.borrow().alarms.is_empty());
    check_webhooks(&mem, "gave up", "complete");
}

/// A cancel at any await: the step ends `failed`/`cancelled` with nothing stored and its rows
/// failed — or, when the cancel came after the step completed, `complete` as usual.
#[test]
fn a_cancel_at_any_await_stores_nothing_and_ends_failed_cancelled() {
    let mut cancelled_runs = 0;
    for scenario in SCENARIOS {
        let body = with_webhook((scenario.body)());
        let clean = Mem::new();
        let cfg = clean.cfg.clone();
        submit_ok(&clean, scenario.endpoint, body.clone());
        settle(&clean, &cfg, Delivery::Lost);
        let calls = clean.w.borrow().calls;
        for n in 2..=calls {
            let mem = Mem::new();
            submit_ok(&mem, scenario.endpoint, body.clone());
            let base = mem.w.borrow().calls;
            mem.w.borrow_mut().cancel_at = Some(n.max(base + 1));
            settle(&mem, &cfg, Delivery::Redelivered);
            let label = format!("{:?} cancelled at call {n}/{calls}", scenario.endpoint);
            let state = mem.state(&task()).unwrap();
            let s = state.steps.values().next().unwrap();
            if s.status == Status::Complete {
                check(&mem, &label);
                continue;
            }
            cancelled_runs += 1;
            assert_eq!(s.status, Status::Failed, "{label}");
            assert_eq!(s.error.as_ref().unwrap().code, "cancelled", "{label}");
            let w = mem.w.borrow();
            assert!(w.objects.is_empty(), "{label}: {:?}", w.objects.keys());
            let completes = w
                .applied
                .iter()
                .filter(|(c, o)| matches!(c, Command::Complete { .. }) && *o == Outcome::Completed)
                .count();
            assert_eq!(completes, 0, "{label}");
            assert!(w.alarms.is_empty(), "{label}: alarm left");
            drop(w);
            let tables = mem.cfg.tables();
            for row in mem.rows_of(tables.of(s.step()), &task()) {
                assert_eq!(row["status"], json!("failed"), "{label}: {row:?}");
                assert_eq!(
                    row["metadata"]["error"]["code"],
                    json!("cancelled"),
                    "{label}"
                );
            }
            check_webhooks(&mem, &label, "failed");
            // Polling stopped: no poll applied after the cancel (one already in flight at the
            // cancel is skipped by the state machine).
            let polls_after = {
                let w = mem.w.borrow();
                let at = w
                    .applied
                    .iter()
                    .position(|(c, _)| matches!(c, Command::Cancel { .. }))
                    .unwrap();
                w.applied[at..]
                    .iter()
                    .filter(|(c, o)| {
                        matches!(c, Command::PollResult { .. }) && !matches!(o, Outcome::Skip(_))
                    })
                    .count()
            };
            assert_eq!(polls_after, 0, "{label}");
        }
    }
    assert!(cancelled_runs > 20, "{cancelled_runs}");
}

#[test]
fn cancel_through_the_flow_is_owner_only_and_repeatable() {
    let mem = Mem::new();
    let cfg = mem.cfg.clone();
    submit_ok(&mem, Endpoint::TextToModel, text_model());
    let other = UserId(Uuid::from_u128(8));
    let refused = drive(
        &mem,
        super::cancel::cancel(&mem, &cfg, &task(), other, None),
    )
    .unwrap();
    assert!(matches!(refused, Err(DoError::Refused(_))));
    let missing = drive(
        &mem,
        super::cancel::cancel(&mem, &cfg, &task(), owner(), Some(Step::Refine)),
    )
    .unwrap();
    assert!(matches!(missing, Err(DoError::Refused(_))));
    for _ in 0..2 {
        let state = drive(
            &mem,
            super::cancel::cancel(&mem, &cfg, &task(), owner(), None),
        )
        .unwrap()
        .unwrap();
        let s = &state.steps[&Step::Model];
        assert_eq!(s.status, Status::Failed);
        assert_eq!(s.error.as_ref().unwrap().code, "cancelled");
    }
    assert_eq!(mem.events("task.cancelled"), 1);
    settle(&mem, &cfg, Delivery::Lost);
    let s = &mem.state(&task()).unwrap().steps[&Step::Model];
    assert_eq!(s.error.as_ref().unwrap().code, "cancelled");
    assert_eq!(mem.w.borrow().tripo_creates, 0);
    let rows = mem.rows_of(mem.cfg.tables().of(Step::Model), &task());
    assert_eq!(rows[0]["status"], json!("failed"));
}

// --- Tripo v3 with signed webhooks (SPEC §11 "Tripo v3") ----------------------------------------

/// The test configuration with Tripo v3 and its webhook secret (first safety poll at 60 s).
fn webhook_config() -> Config {
    let pairs = [
        ("SUPABASE_URL", "https://abc.supabase.co"),
        ("SUPABASE_SERVICE_KEY", "sb_secret_x"),
        ("OPENAI_API_KEY", "sk-x"),
        ("TRIPO_API_KEY", "tsk_x"),
        ("TRIPO_API_VERSION", "v3"),
        ("TRIPO_WEBHOOK_SECRET", "whsec_0123456789abcdef0123"),
        ("TRIPO_SAFETY_POLL_SECONDS", "60"),
    ];
    Config::load(|n| {
        pairs
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
}

/// Submits a text model and delivers messages (no alarm) until the step awaits Tripo.
fn awaiting_tripo(mem: &mut Mem) -> u64 {
    mem.cfg = webhook_config();
    mem.w.borrow_mut().tripo_polls = 0;
    submit_ok(mem, Endpoint::TextToModel, text_model());
    for _ in 0..100 {
        let q = {
            let mut w = mem.w.borrow_mut();
            (!w.queue.is_empty()).then(|| w.queue.remove(0))
        };
        let Some(q) = q else { break };
        mem.advance_to(q.at_ms);
        drive(mem, consume::process(mem, &mem.cfg, &q.msg))
            .unwrap()
            .unwrap();
    }
    let state = mem.state(&task()).unwrap();
    let s = &state.steps[&Step::Model];
    assert_eq!(s.phase(), Phase::AwaitingProvider);
    let next = s.poll.as_ref().and_then(|p| p.next_poll_at_ms).unwrap();
    assert!(
        next >= mem.now() + 59_000,
        "with webhooks the first poll waits for the expected duration"
    );
    next
}

/// The success a webhook reports for `id` (the same task object a poll returns).
fn success_detail(id: &str) -> crate::tripo::TaskDetail {
    let body = Mem::tripo_json(id, &super::memory::TripoTask { polls_left: 0 });
    crate::tripo::parse_task(&body).unwrap()
}

#[test]
fn a_webhook_finishes_the_step_without_a_poll_and_a_repeat_changes_nothing() {
    let mut mem = Mem::new();
    awaiting_tripo(&mut mem);
    let cfg = mem.cfg.clone();
    let detail = success_detail("tripo-1");
    let first = drive(
        &mem,
        super::tripo_events::on_task_event(&mem, &cfg, &detail, "dlv-1"),
    )
    .unwrap()
    .unwrap();
    assert!(
        matches!(&first, super::tripo_events::Handled::Applied { outcome, .. } if outcome == "finalize"),
        "{first:?}"
    );
    // The same delivery again, and a redelivery under another id: no effect.
    for delivery in ["dlv-1", "dlv-2"] {
        let again = drive(
            &mem,
            super::tripo_events::on_task_event(&mem, &cfg, &detail, delivery),
        )
        .unwrap()
        .unwrap();
        assert_eq!(again.label(), "duplicate", "{again:?}");
    }
    settle(&mem, &cfg, Delivery::Redelivered);
    check(&mem, "webhook");
    let w = mem.w.borrow();
    assert_eq!(w.tripo_creates, 1);
    assert_eq!(
        w.tripo_queries, 0,
        "the finalize job copied the webhook's URL: no GET at all"
    );
    let finalizes = w
        .applied
        .iter()
        .filter(|(_, o)| *o == Outcome::Finalize)
        .count();
    assert_eq!(finalizes, 1);
}

#[test]
fn a_lost_webhook_is_caught_by_one_safety_poll() {
    let mut mem = Mem::new();
    let first_poll_at = awaiting_tripo(&mut mem);
    let cfg = mem.cfg.clone();
    settle(&mem, &cfg, Delivery::Redelivered);
    check(&mem, "lost webhook");
    assert_eq!(
        mem.w.borrow().tripo_queries,
        1,
        "one safety poll, and finalize reused its URL"
    );
    assert!(mem.now() >= first_poll_at);
}

#[test]
fn a_webhook_before_the_row_has_the_tripo_id_is_unknown_and_the_safety_poll_covers_it() {
    let mut mem = Mem::new();
    awaiting_tripo(&mut mem);
    let cfg = mem.cfg.clone();
    // The row write that carries the Tripo id has not happened yet.
    for row in mem.w.borrow_mut().rows.values_mut() {
        row.insert("ai_service_task_id".into(), Value::Null);
    }
    let detail = success_detail("tripo-1");
    let handled = drive(
        &mem,
        super::tripo_events::on_task_event(&mem, &cfg, &detail, "dlv-early"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(handled.label(), "unknown");
    settle(&mem, &cfg, Delivery::Redelivered);
    check(&mem, "early webhook");
    assert_eq!(mem.w.borrow().tripo_queries, 1);
}

#[test]
fn a_failed_task_webhook_fails_the_step_with_tripos_reason() {
    let mut mem = Mem::new();
    awaiting_tripo(&mut mem);
    let cfg = mem.cfg.clone();
    let body = br#"{"type":"task.failed","data":{"task_id":"tripo-1","error":{"code":2008,"message":"policy"}}}"#;
    let event = crate::tripo_webhook::parse_event(body).unwrap();
    let detail = event.task.unwrap();
    let handled = drive(
        &mem,
        super::tripo_events::on_task_event(&mem, &cfg, &detail, "dlv-f"),
    )
    .unwrap()
    .unwrap();
    assert!(
        matches!(&handled, super::tripo_events::Handled::Applied { outcome, .. } if outcome == "failed"),
        "{handled:?}"
    );
    // A late success for the same task changes nothing.
    let late = drive(
        &mem,
        super::tripo_events::on_task_event(&mem, &cfg, &success_detail("tripo-1"), "dlv-s"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(late.label(), "duplicate");
    settle(&mem, &cfg, Delivery::Redelivered);
    let state = mem.state(&task()).unwrap();
    let s = &state.steps[&Step::Model];
    assert_eq!(s.status, Status::Failed);
    let e = s.error.as_ref().unwrap();
    assert_eq!(e.code, "content_policy", "{e:?}");
    let rows = mem.rows_of(mem.cfg.tables().of(Step::Model), &task());
    assert_eq!(rows[0]["status"], json!("failed"));
    assert_eq!(mem.w.borrow().tripo_queries, 0);
}

/// The commands applied so far that match `f`.
fn applied_count(mem: &Mem, f: impl Fn(&Command, &Outcome) -> bool) -> usize {
    mem.w
        .borrow()
        .applied
        .iter()
        .filter(|(c, o)| f(c, o))
        .count()
}

#[test]
fn a_text_model_refused_at_create_is_claimed_failed_and_its_rows_written_by_the_object() {
    let mem = Mem::new();
    mem.fail_next(
        Op::TripoCreate,
        DepError::new(Dependency::Tripo, Some(400), "content policy"),
    );
    run(&mem, SCENARIOS[2], Delivery::Lost).unwrap();
    let state = mem.state(&task()).unwrap();
    let s = &state.steps[&Step::Model];
    assert_eq!(s.status, Status::Failed);
    assert!(s.rows.is_settled(), "rows unconfirmed");
    let rows = mem.rows_of(mem.cfg.tables().of(Step::Model), &task());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], json!("failed"));
    // The claim recorded the creation; nothing else of it was sent to the object.
    let claims = applied_count(&mem, |c, o| {
        matches!(c, Command::ClaimJob { create: true, .. }) && *o == Outcome::RunCreate
    });
    assert_eq!(claims, 1);
    let bookkeeping = applied_count(&mem, |c, _| {
        matches!(
            c,
            Command::CreateStarting { .. } | Command::CreateSettled { .. }
        )
    });
    assert_eq!(bookkeeping, 0);
    assert_eq!(mem.w.borrow().object_row_syncs, 1);
    assert_eq!(mem.events("provider.create_uncertain"), 0);
}

#[test]
fn a_definite_429_at_create_settles_it_in_the_release_and_the_retry_is_not_uncertain() {
    let mem = Mem::new();
    mem.fail_next(
        Op::TripoCreate,
        DepError::new(Dependency::Tripo, Some(429), "slow down"),
    );
    run(&mem, SCENARIOS[2], Delivery::Lost).unwrap();
    check(&mem, "429 at create");
    let settled = applied_count(&mem, |c, _| {
        matches!(
            c,
            Command::ReleaseJob {
                create_settled: true,
                ..
            }
        )
    });
    assert_eq!(settled, 1);
    // Both claims recorded their creation; the second is not an uncertain one.
    let claims = applied_count(&mem, |c, o| {
        matches!(c, Command::ClaimJob { create: true, .. }) && *o == Outcome::RunCreate
    });
    assert_eq!(claims, 2);
    assert_eq!(mem.events("provider.create_uncertain"), 0);
    assert_eq!(mem.w.borrow().tripo_creates, 1);
}

#[test]
fn a_lost_text_create_answer_makes_the_next_claim_ask_and_log_it_as_uncertain() {
    let mem = Mem::new();
    mem.fail_next(
        Op::TripoCreate,
        DepError::new(Dependency::Tripo, Some(503), "unavailable"),
    );
    run(&mem, SCENARIOS[2], Delivery::Lost).unwrap();
    check(&mem, "503 at create");
    // The second claim finds the creation in flight: plain `Run`, then `CreateStarting`.
    let asked = applied_count(&mem, |c, o| {
        matches!(c, Command::CreateStarting { .. }) && *o == (Outcome::Create { uncertain: true })
    });
    assert_eq!(asked, 1);
    assert_eq!(mem.events("provider.create_uncertain"), 1);
}
