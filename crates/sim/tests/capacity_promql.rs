//! The capacity metric's two definitions agree: the recording rules of group `warren-capacity`
//! (deploy/kubernetes/base/prometheus/rules.yml), run by `promtool test rules`, and
//! `warren_sim::capacity` (the simulator's formula), fed the same synthetic scrapes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use warren_sim::capacity::{CapacityFormula, Knobs};
use warren_sim::{MetricFormula, Signals};

const SCRAPE_SECS: u32 = 15;
const SAMPLES: u32 = 41;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rules_file() -> PathBuf {
    repo().join("deploy/kubernetes/base/prometheus/rules.yml")
}

/// The knobs as the rules' constants hold them (`expr: vector(X)`).
fn rule_knobs() -> Knobs {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let constant = |record: &str| -> f64 {
        let rule = doc["groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_sequence().unwrap())
            .find(|r| r["record"].as_str() == Some(record))
            .unwrap_or_else(|| panic!("no recording rule {record}"));
        let expr = rule["expr"].as_str().unwrap().trim();
        expr.strip_prefix("vector(")
            .and_then(|e| e.strip_suffix(')'))
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| panic!("{record}: expected vector(<number>), got {expr}"))
    };
    Knobs {
        target_utilisation: constant("warren_capacity_target_utilisation"),
        drain_secs: constant("warren_capacity_drain_seconds"),
        default_work_secs: constant("warren_capacity_default_work_seconds"),
        ..Knobs::default()
    }
}

/// One synthetic run: per-scrape counters and the backlog, some scrapes missing.
struct Case {
    name: String,
    /// Jobs accepted per scrape interval, by each of `web_pods` pods; `None`: no web series.
    published_per_scrape: Option<u64>,
    web_pods: u64,
    /// Jobs finished per scrape interval and their work time.
    finished_per_scrape: u64,
    work_secs: f64,
    /// Ready messages; `None`: no broker series.
    ready: Option<u64>,
    /// Scrape indexes missing from every series (a scrape gap).
    gap: std::ops::Range<u32>,
    eval_at_secs: Vec<u32>,
}

impl Case {
    fn present(&self, i: u32) -> bool {
        !self.gap.contains(&i)
    }

    fn values(&self, per_scrape: impl Fn(u32) -> String) -> String {
        (0..SAMPLES)
            .map(|i| {
                if self.present(i) {
                    per_scrape(i)
                } else {
                    "_".into()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The simulator's formula after every scrape up to `at`, as the HPA would read it.
    fn formula_value(&self, knobs: Knobs, at: u32) -> f64 {
        let mut formula = CapacityFormula::new(knobs);
        let mut value = f64::NAN;
        for i in (0..SAMPLES).filter(|&i| self.present(i) && i * SCRAPE_SECS <= at) {
            let n = u64::from(i);
            let finished = n * self.finished_per_scrape;
            value = formula.value(&Signals {
                at_secs: f64::from(i * SCRAPE_SECS),
                ready: self.ready.unwrap_or(0),
                arrived_total: n * self.published_per_scrape.unwrap_or(0) * self.web_pods,
                acked_total: finished,
                busy_secs_total: finished as f64 * self.work_secs,
                ..Signals::default()
            });
        }
        value
    }

    fn promtool_test(&self, knobs: Knobs) -> String {
        let mut out = format!(
            "  # {}\n  - interval: {SCRAPE_SECS}s\n    input_series:\n",
            self.name
        );
        let mut series = |name: &str, values: String| {
            writeln!(out, "      - series: '{name}'\n        values: '{values}'").unwrap();
        };
        // An unrelated series keeps the case valid when every other input is absent.
        series("up{job=\"warren-web\"}", self.values(|_| "1".into()));
        if let Some(per) = self.published_per_scrape {
            for pod in 0..self.web_pods {
                series(
                    &format!("jobs_published_total{{instance=\"web-{pod}\"}}"),
                    self.values(|i| (u64::from(i) * per).to_string()),
                );
            }
        }
        series(
            "job_duration_seconds_sum{instance=\"worker-0\"}",
            self.values(|i| {
                (u64::from(i) as f64 * self.finished_per_scrape as f64 * self.work_secs).to_string()
            }),
        );
        series(
            "job_duration_seconds_count{instance=\"worker-0\"}",
            self.values(|i| (u64::from(i) * self.finished_per_scrape).to_string()),
        );
        if let Some(ready) = self.ready {
            series(
                "rabbitmq_detailed_queue_messages_ready{vhost=\"/\",queue=\"Orders\",instance=\"rabbitmq-0\"}",
                self.values(|_| ready.to_string()),
            );
        }
        out.push_str("    promql_expr_test:\n");
        for &at in &self.eval_at_secs {
            let expected = self.formula_value(knobs, at);
            assert!(
                expected.is_finite(),
                "{}: formula gave {expected}",
                self.name
            );
            writeln!(
                out,
                "      # the simulator's formula: {expected}\n      - expr: 'abs(warren_workers_needed - {expected:?}) < bool 1e-9'\n        eval_time: {at}s\n        exp_samples: [{{labels: '{{queue=\"Orders\"}}', value: 1}}]"
            )
            .unwrap();
        }
        out
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for published in [None, Some(0), Some(6), Some(30), Some(90)] {
        for (finished, work) in [(0, 5.0), (6, 0.5), (30, 4.0), (90, 12.0)] {
            for ready in [None, Some(0), Some(12), Some(300)] {
                for (gap, evals) in [(0..0, vec![0, 300]), (11..18, vec![225, 360])] {
                    cases.push(Case {
                        name: format!(
                            "published {published:?}/15s, finished {finished}/15s of {work} s, \
                             ready {ready:?}, gap {gap:?}"
                        ),
                        published_per_scrape: published,
                        web_pods: 1 + u64::from(published == Some(30)),
                        finished_per_scrape: finished,
                        work_secs: work,
                        ready,
                        gap,
                        eval_at_secs: evals,
                    });
                }
            }
        }
    }
    cases
}

#[test]
fn the_knobs_of_the_rules_are_the_formulas_defaults() {
    assert_eq!(rule_knobs(), Knobs::default());
}

#[test]
fn the_recording_rule_and_the_formula_agree_on_the_same_samples() {
    let knobs = rule_knobs();
    let dir = std::env::temp_dir().join(format!("warren-capacity-promql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(rules_file(), dir.join("rules.yml")).unwrap();
    let cases = cases();
    let mut tests =
        format!("rule_files: [rules.yml]\nevaluation_interval: {SCRAPE_SECS}s\ntests:\n");
    for case in &cases {
        tests.push_str(&case.promtool_test(knobs));
    }
    std::fs::write(dir.join("capacity.test.yml"), &tests).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "capacity.test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool is missing: scripts/setup installs Debian's prometheus package");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the rule and the formula disagree ({} cases, file {}):\n{report}",
        cases.len(),
        dir.join("capacity.test.yml").display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
