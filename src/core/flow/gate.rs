//! The provider gates in the job flow (SPEC §11 "Limits"): a run job asks its provider's gate
//! for a slot before it claims its step (`Tripo` for models and refines, `OpenAI` for concepts,
//! each only when its setting is above 0); without one, the step stays `pending` with its place
//! in line (`Command::AwaitSlot`) and the alarm asks again. The slot is given back as soon as the
//! provider's part is over: Tripo's task succeeded or failed, the concepts step ended, or the step
//! failed in any way. A lost give-back is healed by the gate itself (`core::gate`).

use serde_json::json;

use super::ports::Ports;

use crate::config::Config;
use crate::gate::{Gate, GateName, SlotKey, TRIPO_REFINE_LIMIT};
use crate::ids::TaskId;
use crate::jobs::{JobKind, JobMessage};
use crate::log::Level;
use crate::step::Step;
use crate::task::{Phase, StepState};

/// The gate a step passes and its capacity, or `None` when that gate is off. Refines share
/// `TRIPO_MAX_CONCURRENT_TASKS` capped at Tripo's refine limit (5); text, image and multiview
/// tasks of the `P1` model (whose own limit is 5) pass the generation gate, so more than 5 of
/// them at once may still meet Tripo's 2000, which the job waits out like any concurrency answer.
pub fn gate_of(cfg: &Config, step: Step) -> Option<(GateName, u32)> {
    let gate = GateName::of(step);
    let capacity = match gate {
        GateName::Tripo => cfg.tripo_max_concurrent_tasks,
        GateName::TripoRefine => cfg.tripo_max_concurrent_tasks.min(TRIPO_REFINE_LIMIT),
        GateName::OpenAi => cfg.openai_max_concurrent_requests,
    };
    (capacity > 0).then_some((gate, capacity))
}

/// The slots a queue batch's run messages will ask for, by gate (in the messages' order), so the
/// glue can ask each gate once for the whole batch (`gate_wire::AcquireManyRequest`).
pub fn batch_keys<'m>(
    cfg: &Config,
    msgs: impl IntoIterator<Item = &'m JobMessage>,
) -> Vec<(GateName, u32, Vec<SlotKey>)> {
    let mut out: Vec<(GateName, u32, Vec<SlotKey>)> = Vec::new();
    for m in msgs {
        if m.kind != JobKind::Run {
            continue;
        }
        let Some((gate, capacity)) = gate_of(cfg, m.step) else {
            continue;
        };
        let k = key(&m.task_id, m.step, m.attempt);
        match out.iter_mut().find(|(g, _, _)| *g == gate) {
            Some((_, _, keys)) if !keys.contains(&k) => keys.push(k),
            Some(_) => {}
            None => out.push((gate, capacity, vec![k])),
        }
    }
    out
}

/// Slots one gate gives back in one call: the gate, its capacity, the keys.
pub type Releases = (GateName, u32, Vec<SlotKey>);

/// The slots a queue batch gives back while its messages run together (`crate::jobs` in the
/// worker), gathered per gate: a gate's releases go in one call once the batch's last message
/// about a step behind that gate is over, not at the batch's end, so a long message of another
/// gate (a concepts run, a model copy) does not keep them from the steps waiting in line.
#[derive(Debug, Default)]
pub struct BatchReleases {
    /// Per gate: the batch's messages about its steps not yet over.
    open: Vec<(GateName, usize)>,
    pending: Vec<Releases>,
}

impl BatchReleases {
    /// The batch of `msgs` (every kind counts: a finalize, a webhook or a dead letter may end a
    /// step and give its slot back).
    pub fn new<'m>(cfg: &Config, msgs: impl IntoIterator<Item = &'m JobMessage>) -> Self {
        let mut open: Vec<(GateName, usize)> = Vec::new();
        for m in msgs {
            let Some((gate, _)) = gate_of(cfg, m.step) else {
                continue;
            };
            match open.iter_mut().find(|(g, _)| *g == gate) {
                Some((_, n)) => *n += 1,
                None => open.push((gate, 1)),
            }
        }
        BatchReleases {
            open,
            pending: Vec::new(),
        }
    }

    /// A slot given back during the batch.
    pub fn push(&mut self, gate: GateName, capacity: u32, key: SlotKey) {
        match self.pending.iter_mut().find(|(g, _, _)| *g == gate) {
            Some((_, _, keys)) => keys.push(key),
            None => self.pending.push((gate, capacity, vec![key])),
        }
    }

    /// `msg` is over: the releases to send now (its gate has no other message left), if any.
    pub fn done(&mut self, cfg: &Config, msg: &JobMessage) -> Option<Releases> {
        let (gate, _) = gate_of(cfg, msg.step)?;
        let (_, n) = self.open.iter_mut().find(|(g, _)| *g == gate)?;
        *n = n.saturating_sub(1);
        if *n > 0 {
            return None;
        }
        let i = self.pending.iter().position(|(g, _, _)| *g == gate)?;
        Some(self.pending.swap_remove(i))
    }

    /// Every release not sent yet (the batch is over).
    pub fn rest(&mut self) -> Vec<Releases> {
        std::mem::take(&mut self.pending)
    }
}

pub fn key(task: &TaskId, step: Step, attempt: u32) -> SlotKey {
    SlotKey {
        task_id: task.clone(),
        step,
        attempt,
    }
}

/// Whether a step no longer needs its provider slot: final, or Tripo's task has succeeded.
pub fn slot_done(s: &StepState) -> bool {
    matches!(s.phase(), Phase::Done | Phase::Finalizing)
}

/// Gives the step's slot back when it no longer needs it (best effort: logged; the gate heals).
pub async fn release_if_done<W: Ports>(w: &W, cfg: &Config, task: &TaskId, s: &StepState) {
    if slot_done(s) {
        release(w, cfg, task, s.step(), s.attempt).await;
    }
}

/// Gives `attempt`'s slot of `step` back (best effort).
pub async fn release<W: Ports>(w: &W, cfg: &Config, task: &TaskId, step: Step, attempt: u32) {
    let Some((gate, capacity)) = gate_of(cfg, step) else {
        return;
    };
    if let Err(e) = w
        .release_slot(gate, &key(task, step, attempt), capacity)
        .await
    {
        w.event(
            Level::Warn,
            "gate.release_failed",
            Some(task),
            Some(step),
            json!({ "gate": gate.as_str(), "attempt": attempt, "error": e.to_string() }),
        );
    }
}

/// The gate's alarm (`gate_object`): holders past their limit and silent waiters leave; while
/// anyone waits, holders due a check are verified against their task (a final step, a step whose
/// provider part is over, another attempt, or a task that is gone frees the slot; an unreachable
/// task keeps it). Returns the waiters now entitled to a slot, to be woken by [`wake`].
pub async fn heal<W: Ports>(w: &W, gate: &mut Gate, capacity: u32, now_ms: u64) -> Vec<SlotKey> {
    let mut changed = gate.expire(now_ms);
    for key in gate.due_checks(now_ms) {
        let over = match w.task_state(&key.task_id).await {
            Ok(state) => state
                .and_then(|t| t.steps.get(&key.step).cloned())
                .is_none_or(|s| s.attempt != key.attempt || slot_done(&s)),
            Err(_) => false,
        };
        if over {
            w.event(
                Level::Warn,
                "gate.healed",
                Some(&key.task_id),
                Some(key.step),
                json!({ "attempt": key.attempt, "note": "the slot's release was lost; its step is over" }),
            );
            gate.release(&key, capacity, now_ms);
            changed = true;
        } else {
            gate.checked(&key, now_ms);
        }
    }
    if changed {
        gate.entitled(capacity)
    } else {
        Vec::new()
    }
}

/// Sends the run message of each waiter entitled to a slot: it asks again and is granted. A lost
/// message is covered by the waiter's own re-ask (`core::task::SLOT_RECHECK_MS`).
pub async fn wake<W: Ports>(w: &W, keys: Vec<SlotKey>) -> usize {
    let mut sent = 0;
    for k in keys {
        let msg = JobMessage::run(k.task_id.clone(), k.step, k.attempt);
        match w.enqueue(&msg, 0).await {
            Ok(()) => sent += 1,
            Err(e) => w.event(
                Level::Warn,
                "gate.wake_failed",
                Some(&k.task_id),
                Some(k.step),
                json!({ "attempt": k.attempt, "error": e.to_string() }),
            ),
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batchs_releases_go_per_gate_once_its_last_message_for_that_gate_is_over() {
        let cfg = super::super::memory::config();
        let t = |s: &str| TaskId::parse(s).unwrap();
        let (tripo, capacity) = gate_of(&cfg, Step::Model).unwrap();
        let a = JobMessage::run(t("a"), Step::Model, 1);
        let b = JobMessage::run(t("b"), Step::Model, 1);
        let c = JobMessage::finalize(t("c"), Step::Model, 1).unwrap();
        let concepts = JobMessage::run(t("d"), Step::Concepts, 1);
        let mut batch = BatchReleases::new(&cfg, [&a, &b, &c, &concepts]);
        // `a` was refused at create: its slot waits for the gate's other messages.
        batch.push(tripo, capacity, key(&a.task_id, a.step, 1));
        assert_eq!(batch.done(&cfg, &a), None);
        assert_eq!(batch.done(&cfg, &b), None);
        batch.push(tripo, capacity, key(&c.task_id, c.step, 1));
        // The gate's last message: both slots in one call, while the concepts run goes on.
        let (gate, cap, keys) = batch.done(&cfg, &c).unwrap();
        assert_eq!((gate, cap), (tripo, capacity));
        assert_eq!(
            keys.iter().map(|k| k.task_id.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        // Nothing twice; a gate with nothing to give back sends nothing.
        assert_eq!(batch.done(&cfg, &concepts), None);
        assert!(batch.rest().is_empty());
        // A release after its gate's messages are over waits for the end of the batch.
        batch.push(tripo, capacity, key(&t("e"), Step::Model, 2));
        assert_eq!(batch.done(&cfg, &concepts), None);
        assert_eq!(batch.rest().len(), 1);
        assert!(batch.rest().is_empty());
    }

    #[test]
    fn a_batch_asks_each_gate_once_for_its_run_messages() {
        let cfg = super::super::memory::config();
        let t = |s: &str| TaskId::parse(s).unwrap();
        let msgs = [
            JobMessage::run(t("a"), Step::Model, 1),
            JobMessage::run(t("b"), Step::Concepts, 1),
            JobMessage::run(t("c"), Step::Model, 2),
            JobMessage::run(t("a"), Step::Model, 1),
            JobMessage::webhook(t("d"), Step::Model, 1),
            JobMessage::run(t("e"), Step::Refine, 1),
        ];
        let batch = batch_keys(&cfg, &msgs);
        let model = gate_of(&cfg, Step::Model).unwrap();
        let by_gate = |g: GateName| batch.iter().find(|(x, _, _)| *x == g);
        let (_, capacity, keys) = by_gate(model.0).unwrap();
        assert_eq!(*capacity, model.1);
        // In order, a duplicate once, the webhook not at all.
        assert_eq!(
            keys.iter().map(|k| k.task_id.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(keys[1].attempt, 2);
        for (gate, _, keys) in &batch {
            assert!(keys.iter().all(|k| GateName::of(k.step) == *gate));
        }
        assert_eq!(
            batch.iter().map(|(_, _, k)| k.len()).sum::<usize>(),
            msgs.iter()
                .filter(|m| m.kind == JobKind::Run && gate_of(&cfg, m.step).is_some())
                .count()
                - 1
        );
    }
}
