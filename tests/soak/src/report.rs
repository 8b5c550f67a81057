//! The soak's table (stdout) and `results.json`.

use serde_json::{json, Value};

use crate::check::{failures_by_code, step_json, Outcome};
use crate::driver::Env;
use crate::plan::ALL;
use crate::{Cfg, Res};

pub struct Report<'a> {
    pub cfg: &'a Cfg,
    pub env: &'a Env,
    pub outcome: &'a Outcome,
    pub chaos: &'a Value,
    pub run_s: f64,
    pub worker_start_s: f64,
    pub total_s: f64,
}

fn surface(v: &Value) -> String {
    let seen = v["seen"].as_u64().unwrap_or(0);
    let faulted = v["faulted"].as_u64().unwrap_or(0);
    let kinds: Vec<String> = v["by_kind"]
        .as_object()
        .map(|m| m.iter().map(|(k, n)| format!("{k} {n}")).collect())
        .unwrap_or_default();
    format!(
        "{faulted}/{seen} faulted ({:.1} %): {}",
        if seen == 0 {
            0.0
        } else {
            100.0 * faulted as f64 / seen as f64
        },
        kinds.join(", ")
    )
}

impl Report<'_> {
    /// Prints the table, writes `results.json`; whether every check passed.
    pub fn print_and_save(&self) -> Res<bool> {
        let o = self.outcome;
        let steps = &o.steps;
        let count =
            |f: &dyn Fn(&crate::check::StepResult) -> bool| steps.iter().filter(|s| f(s)).count();
        let mut figures: Vec<(String, String)> = Vec::new();
        let mut mix = Vec::new();
        for k in ALL {
            let n = self.env.plan.iter().filter(|s| s.kind == k).count();
            mix.push(format!("{} {n}", k.name()));
        }
        figures.push((
            "steps planned".into(),
            format!("{} ({})", steps.len(), mix.join(", ")),
        ));
        figures.push(("steps accepted".into(), count(&|s| s.accepted).to_string()));
        let sends: u32 = steps.iter().map(|s| s.sends).sum();
        let repeats = steps.iter().map(|s| s.sends.saturating_sub(1)).sum::<u32>();
        let mut answers = std::collections::BTreeMap::new();
        for s in steps {
            for a in &s.answers {
                *answers.entry(*a).or_insert(0u32) += 1;
            }
        }
        let answers: Vec<String> = answers
            .iter()
            .map(|(s, n)| {
                format!(
                    "{} ×{n}",
                    if *s == 0 {
                        "network".to_string()
                    } else {
                        s.to_string()
                    }
                )
            })
            .collect();
        figures.push((
            "submits sent (repeats)".into(),
            format!("{sends} ({repeats}): {}", answers.join(", ")),
        ));
        figures.push((
            "complete".into(),
            count(&|s| s.status.as_deref() == Some("complete")).to_string(),
        ));
        let by_code: Vec<String> = failures_by_code(o)
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        figures.push((
            "failed (by code)".into(),
            format!(
                "{} {}",
                count(&|s| s.status.as_deref() == Some("failed")),
                if by_code.is_empty() {
                    String::new()
                } else {
                    format!("({})", by_code.join(", "))
                }
            ),
        ));
        figures.push(("stuck".into(), count(&|s| s.stuck).to_string()));
        let mut last_of_stuck = std::collections::BTreeMap::new();
        for s in steps.iter().filter(|s| s.stuck) {
            let last = s
                .last_events
                .last()
                .and_then(|e| e["event"].as_str())
                .unwrap_or("(no event)")
                .to_string();
            *last_of_stuck.entry(last).or_insert(0u32) += 1;
        }
        if !last_of_stuck.is_empty() {
            let v: Vec<String> = last_of_stuck
                .iter()
                .map(|(e, n)| format!("{e} {n}"))
                .collect();
            figures.push(("stuck: last worker event".into(), v.join(", ")));
        }
        figures.push((
            "never sent (refine without a completed draft) / not accepted / refused".into(),
            format!(
                "{} / {} / {}",
                count(&|s| s.sends == 0),
                count(&|s| s.sends > 0 && !s.accepted && s.refused.is_none()),
                count(&|s| s.refused.is_some())
            ),
        ));
        let mut finals: Vec<f64> = steps.iter().filter_map(|s| s.final_at).collect();
        finals.sort_by(f64::total_cmp);
        if let Some(last) = finals.last() {
            figures.push(("last step final at".into(), format!("{last:.0} s")));
        }
        figures.push((
            "Tripo creates".into(),
            format!(
                "{} ({} answers lost) for {} Tripo steps; provider.create_uncertain {}",
                o.tripo_creates, o.tripo_creates_answer_lost, o.tripo_steps, o.uncertain
            ),
        ));
        figures.push(("chaos: providers".into(), surface(&self.chaos["providers"])));
        figures.push(("chaos: Storage".into(), surface(&self.chaos["storage"])));
        figures.push(("chaos: PostgREST".into(), surface(&self.chaos["rest"])));
        let events = self
            .env
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for e in &events {
            figures.push((
                format!("t={:.0}s", e.at_s),
                format!(
                    "{} ({:.1} s){}",
                    e.what,
                    e.took_s,
                    if e.ok { "" } else { " FAILED" }
                ),
            ));
        }
        figures.push((
            "time".into(),
            format!(
                "run {:.0} s, worker build+start {:.0} s, total {:.0} s",
                self.run_s, self.worker_start_s, self.total_s
            ),
        ));

        let width = figures
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(10);
        println!();
        println!(
            "== soak {}: {} steps, chaos {:.0} %, seed {}, {} restarts, outages {:.0} s ==",
            self.env.run,
            self.cfg.steps,
            self.cfg.rate * 100.0,
            self.cfg.seed,
            self.cfg.restarts,
            self.cfg.outage.as_secs_f64()
        );
        for (k, v) in &figures {
            println!("  {k:<width$}  {v}");
        }
        println!();
        for c in &o.checks {
            println!(
                "  {} {}{}",
                if c.ok { "✓" } else { "✗" },
                c.name,
                if c.detail.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", c.detail)
                }
            );
        }
        let passed = o.checks.iter().all(|c| c.ok);
        println!();
        println!(
            "soak: {} (details: {}/results.json, worker log: {})",
            if passed { "PASSED" } else { "FAILED" },
            self.cfg.out.display(),
            self.env.log_path().display()
        );

        let interesting: Vec<Value> = steps
            .iter()
            .filter(|s| {
                s.stuck
                    || !s.output_problems.is_empty()
                    || !s.row_mismatches.is_empty()
                    || s.status.as_deref() != Some("complete")
            })
            .map(step_json)
            .collect();
        let doc = json!({
            "passed": passed,
            "settings": {
                "steps": self.cfg.steps, "minutes": self.cfg.budget.as_secs_f64() / 60.0,
                "rate": self.cfg.rate, "seed": self.cfg.seed, "outage_s": self.cfg.outage.as_secs_f64(),
                "restarts": self.cfg.restarts, "users": self.cfg.users, "time_scale": self.cfg.time_scale,
                "tripo_deadline_s": self.cfg.tripo_deadline_s, "hold_ms": self.cfg.hold_ms,
            },
            "figures": figures.iter().map(|(k, v)| json!({"figure": k, "value": v})).collect::<Vec<_>>(),
            "checks": o.checks.iter().map(|c| json!({"check": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
            "chaos": self.chaos,
            "failed_by_code": failures_by_code(o),
            "tripo": {"creates": o.tripo_creates, "answers_lost": o.tripo_creates_answer_lost,
                      "steps": o.tripo_steps, "create_uncertain": o.uncertain},
            "steps_not_complete_or_broken": interesting,
            "steps": steps.iter().map(step_json).collect::<Vec<_>>(),
        });
        std::fs::write(
            self.cfg.out.join("results.json"),
            serde_json::to_string_pretty(&doc)?,
        )?;
        Ok(passed)
    }
}
