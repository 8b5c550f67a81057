//! The results: rows of figures (each the median of its runs, with min and max), acceptance
//! checks and notes; printed as one table and written as JSON.

use serde_json::{json, Value};

use crate::stats;

pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub unit: String,
    /// One value per run.
    pub values: Vec<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

#[derive(Default)]
pub struct Report {
    pub machine: Value,
    pub rows: Vec<Row>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    pub timings: Vec<(String, f64)>,
}

impl Report {
    pub fn add(&mut self, scenario: &str, metric: &str, unit: &str, values: Vec<f64>) {
        self.rows.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            unit: unit.into(),
            values,
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("bench: note: {text}");
        self.notes.push(text);
    }

    pub fn check(&mut self, name: &str, verdict: Verdict, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            verdict,
            detail: detail.into(),
        });
    }

    /// A check of `value <= limit` over every run (the worst run decides).
    pub fn check_max(&mut self, name: &str, values: &[f64], limit: f64, unit: &str) {
        match stats::max(values) {
            None => self.check(name, Verdict::Skip, "not measured"),
            Some(worst) => self.check(
                name,
                if worst <= limit {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
                format!(
                    "worst of {} run(s) {} {unit} (limit {} {unit})",
                    values.len(),
                    fmt(worst),
                    fmt(limit)
                ),
            ),
        }
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let w_s = self
            .rows
            .iter()
            .map(|r| r.scenario.chars().count())
            .max()
            .unwrap_or(8)
            .max(8);
        let w_m = self
            .rows
            .iter()
            .map(|r| r.metric.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let head = format!(
            "{:<w_s$}  {:<w_m$}  {:>10}  {:>10}  {:>10}  {:>4}  unit\n",
            "scenario", "metric", "median", "min", "max", "runs"
        );
        out.push_str(&head);
        out.push_str(&"-".repeat(head.chars().count().saturating_sub(1)));
        out.push('\n');
        let mut last = "";
        for r in &self.rows {
            let unmeasured = self
                .rows
                .iter()
                .filter(|x| x.scenario == r.scenario)
                .all(|x| x.values.is_empty());
            if last == r.scenario && unmeasured {
                continue;
            }
            if !last.is_empty() && last != r.scenario {
                out.push('\n');
            }
            last = &r.scenario;
            if unmeasured {
                out.push_str(&format!(
                    "{:<w_s$}  (not measured: see the notes)\n",
                    r.scenario
                ));
                continue;
            }
            let cell = |v: Option<f64>| v.map(fmt).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "{:<w_s$}  {:<w_m$}  {:>10}  {:>10}  {:>10}  {:>4}  {}\n",
                r.scenario,
                r.metric,
                cell(stats::median(&r.values)),
                cell(stats::min(&r.values)),
                cell(stats::max(&r.values)),
                r.values.len(),
                r.unit
            ));
        }
        if !self.checks.is_empty() {
            out.push_str("\nacceptance\n");
            for c in &self.checks {
                out.push_str(&format!(
                    "  [{}] {} — {}\n",
                    c.verdict.as_str(),
                    c.name,
                    c.detail
                ));
            }
        }
        if !self.notes.is_empty() {
            out.push_str("\nnotes\n");
            for n in &self.notes {
                out.push_str(&format!("  - {n}\n"));
            }
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "machine": self.machine,
            "results": self.rows.iter().map(|r| json!({
                "scenario": r.scenario,
                "metric": r.metric,
                "unit": r.unit,
                "median": stats::median(&r.values),
                "min": stats::min(&r.values),
                "max": stats::max(&r.values),
                "runs": r.values,
            })).collect::<Vec<_>>(),
            "acceptance": self.checks.iter().map(|c| json!({
                "check": c.name, "verdict": c.verdict.as_str(), "detail": c.detail,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "timings_s": self.timings.iter().map(|(k, v)| json!({"phase": k, "seconds": v})).collect::<Vec<_>>(),
        })
    }
}

/// A figure with as many digits as it deserves.
pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if (v == v.trunc() && a < 1e12) || a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        assert_eq!(fmt(12.0), "12");
        assert_eq!(fmt(1234.56), "1235");
        assert_eq!(fmt(123.456), "123.5");
        assert_eq!(fmt(1.23456), "1.23");
        assert_eq!(fmt(0.012345), "0.012");
    }

    #[test]
    fn table_has_median_min_max() {
        let mut r = Report::default();
        r.add("submit c=1", "requests/s", "req/s", vec![3.0, 1.0, 2.0]);
        r.check_max("lost", &[0.0, 0.0], 0.0, "rows");
        let t = r.table();
        assert!(t.contains("submit c=1"), "{t}");
        assert!(t.contains("[PASS] lost"), "{t}");
        assert!(!r.failed());
        assert_eq!(r.json()["results"][0]["median"], 2.0);
    }
}
