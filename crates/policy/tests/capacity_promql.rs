//! The capacity metric's two definitions agree: the recording rules of
//! `deploy/kubernetes/base/prometheus/rules.yml` (printed by `warren rules`, group
//! `warren-capacity` and queue `Orders`'s own group), run by `promtool test rules`, and
//! `warren_policy::estimator` (what `warren autoscale --metric-source broker` and the simulator
//! compute), fed the same broker series shaped as RabbitMQ 3.10 and 4.x emit them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use warren_policy::capacity::Knobs;
use warren_policy::estimator::{QueueEstimator, QueueScrape};

const SCRAPE_SECS: u32 = 15;
const SAMPLES: u32 = 81;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rules_file() -> PathBuf {
    repo().join("deploy/kubernetes/base/prometheus/rules.yml")
}

/// The global knobs as the generic group's constants hold them (`expr: vector(X)`).
fn rule_knobs() -> Knobs {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let constant = |record: &str| -> f64 {
        let rule = doc["groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|g| g["name"].as_str() == Some("warren-capacity"))
            .flat_map(|g| g["rules"].as_sequence().unwrap())
            .find(|r| r["record"].as_str() == Some(record) && r.get("labels").is_none())
            .unwrap_or_else(|| panic!("no global recording rule {record}"));
        let expr = rule["expr"].as_str().unwrap().trim();
        expr.strip_prefix("vector(")
            .and_then(|e| e.strip_suffix(')'))
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| panic!("{record}: expected vector(<number>), got {expr}"))
    };
    Knobs {
        target_utilisation: constant("warren_capacity_target_utilisation"),
        beta: constant("warren_capacity_beta"),
        drain_secs: constant("warren_capacity_drain_seconds"),
        default_work_secs: constant("warren_capacity_default_work_seconds"),
        concurrency_per_consumer: constant("warren_capacity_concurrency"),
    }
}

/// One synthetic queue: per-scrape counts, some scrapes missing.
struct Case {
    name: String,
    /// RabbitMQ 4.x series (per-queue counters) or 3.10's (per channel).
    v4: bool,
    /// Queue Orders in vhost / with warren worker's histogram (its own group in rules.yml), or
    /// emails in vhost shop with none.
    orders: bool,
    /// Messages published, and finished by the consumers, per scrape interval.
    arrived_per_scrape: u64,
    finished_per_scrape: u64,
    /// Ready at the first scrape; grows by arrived - finished each scrape.
    ready0: u64,
    unacked: u64,
    consumers: u64,
    /// The histogram's work time, for Orders.
    work_secs: f64,
    /// Scrape indexes missing from every series (a scrape gap). Checked once its minutes have
    /// left every window: at a gap's edges PromQL's `rate` over `[1m]` extrapolates the few
    /// samples it has by half an interval only, and reads low (1/s for 2/s) in the rules'
    /// recorded finish rate, where the estimator, which has no scrape there, takes the
    /// difference of the last two; capacity.test.yml checks what the rules hold in a gap.
    gap: std::ops::Range<u32>,
    eval_at_secs: Vec<u32>,
}

impl Case {
    fn present(&self, i: u32) -> bool {
        !self.gap.contains(&i)
    }

    fn labels(&self) -> (&str, &str) {
        if self.orders {
            ("/", "Orders")
        } else {
            ("shop", "emails")
        }
    }

    fn ready(&self, i: u32) -> u64 {
        self.ready0 + (self.arrived_per_scrape - self.finished_per_scrape) * u64::from(i)
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

    fn scrape(&self, i: u32) -> QueueScrape {
        let n = u64::from(i);
        let finished = (n * self.finished_per_scrape) as f64;
        let mut s = QueueScrape {
            at_secs: f64::from(i * SCRAPE_SECS),
            ready: Some(self.ready(i) as f64),
            unacked: Some(self.unacked as f64),
            messages: Some((self.ready(i) + self.unacked) as f64),
            consumers: Some(self.consumers as f64),
            finished: BTreeMap::from([("acked".to_owned(), finished)]),
            ..QueueScrape::default()
        };
        if self.v4 {
            s.published = BTreeMap::from([("".to_owned(), (n * self.arrived_per_scrape) as f64)]);
        }
        if self.orders {
            s.measured_jobs = BTreeMap::from([("w".to_owned(), finished)]);
            s.measured_work_secs = BTreeMap::from([("w".to_owned(), finished * self.work_secs)]);
        }
        s
    }

    /// The estimator after every scrape up to `at`.
    fn estimate(&self, knobs: Knobs, at: u32) -> f64 {
        let mut e = QueueEstimator::new(knobs);
        let mut value = f64::NAN;
        for i in (0..SAMPLES).filter(|&i| self.present(i) && i * SCRAPE_SECS <= at) {
            value = e.observe(&self.scrape(i)).needed.workers_needed;
        }
        value
    }

    fn promtool_test(&self, knobs: Knobs) -> String {
        let (vhost, queue) = self.labels();
        let mut out = format!(
            "  # {}\n  - interval: {SCRAPE_SECS}s\n    input_series:\n",
            self.name
        );
        let mut series = |name: &str, labels: &str, values: String| {
            writeln!(
                out,
                "      - series: '{name}{{{labels}instance=\"rabbitmq-0\"}}'\n        values: '{values}'"
            )
            .unwrap();
        };
        let q = format!("vhost=\"{vhost}\",queue=\"{queue}\",");
        series(
            "rabbitmq_detailed_queue_messages_ready",
            &q,
            self.values(|i| self.ready(i).to_string()),
        );
        series(
            "rabbitmq_detailed_queue_messages_unacked",
            &q,
            self.values(|_| self.unacked.to_string()),
        );
        series(
            "rabbitmq_detailed_queue_messages",
            &q,
            self.values(|i| (self.ready(i) + self.unacked).to_string()),
        );
        series(
            "rabbitmq_detailed_queue_consumers",
            &q,
            self.values(|_| self.consumers.to_string()),
        );
        let finished = |i: u32| (u64::from(i) * self.finished_per_scrape).to_string();
        let zero = |_| "0".to_owned();
        let channel = format!("channel=\"<0.900.0>\",{q}");
        // 4.x still has the per-channel counters; the per-queue ones must win, not add.
        series(
            "rabbitmq_detailed_channel_messages_acked_total",
            &channel,
            self.values(finished),
        );
        series(
            "rabbitmq_detailed_channel_messages_delivered_total",
            &channel,
            self.values(zero),
        );
        series(
            "rabbitmq_detailed_channel_get_total",
            &channel,
            self.values(zero),
        );
        if self.v4 {
            series(
                "rabbitmq_detailed_queue_messages_acked_total",
                &q,
                self.values(finished),
            );
            series(
                "rabbitmq_detailed_queue_messages_delivered_total",
                &q,
                self.values(zero),
            );
            series("rabbitmq_detailed_queue_get_total", &q, self.values(zero));
            series(
                "rabbitmq_detailed_queue_exchange_messages_published_total",
                &format!("exchange=\"\",{q}"),
                self.values(|i| (u64::from(i) * self.arrived_per_scrape).to_string()),
            );
        } else {
            // A producer channel per scrape, never seen twice (3.10 shape; not an input).
            for i in (0..SAMPLES).step_by(7) {
                let values = (0..SAMPLES)
                    .map(|j| {
                        if j == i {
                            self.arrived_per_scrape.to_string()
                        } else {
                            "_".into()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                series(
                    "rabbitmq_detailed_queue_messages_published_total",
                    &format!("channel=\"<0.{i}.1>\",queue_vhost=\"{vhost}\",queue=\"{queue}\",exchange_vhost=\"{vhost}\",exchange=\"\","),
                    values,
                );
            }
        }
        if self.orders {
            series(
                "job_duration_seconds_sum",
                "job=\"warren-worker\",",
                self.values(|i| {
                    (u64::from(i) as f64 * self.finished_per_scrape as f64 * self.work_secs)
                        .to_string()
                }),
            );
            series(
                "job_duration_seconds_count",
                "job=\"warren-worker\",",
                self.values(finished),
            );
        }
        out.push_str("    promql_expr_test:\n");
        for &at in &self.eval_at_secs {
            let expected = self.estimate(knobs, at);
            assert!(
                expected.is_finite(),
                "{}: estimator gave {expected}",
                self.name
            );
            writeln!(
                out,
                "      # the estimator: {expected}\n      - expr: 'abs(warren_workers_needed - {expected:?}) < bool 1e-6'\n        eval_time: {at}s\n        exp_samples: [{{labels: '{{vhost=\"{vhost}\",queue=\"{queue}\"}}', value: 1}}]"
            )
            .unwrap();
        }
        out
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for v4 in [false, true] {
        for orders in [false, true] {
            // (arrived, finished) per 15 s: idle, steady, a growing backlog.
            for (arrived, finished) in [(0, 0), (30, 30), (45, 30)] {
                // (unacked, consumers): prefetch 1 with spare consumers, prefetch 10 clamped.
                for (unacked, consumers) in [(6, 8), (60, 6)] {
                    for ready0 in [0, 12] {
                        for (gap, evals) in [(0..0, vec![0, 600, 900]), (41..48, vec![1200])] {
                            cases.push(Case {
                                name: format!(
                                    "v4 {v4}, Orders {orders}, {arrived} in and {finished} out per 15 s, \
                                     {unacked} unacked of {consumers} consumers, ready {ready0}, gap {gap:?}"
                                ),
                                v4,
                                orders,
                                arrived_per_scrape: arrived,
                                finished_per_scrape: finished,
                                ready0,
                                unacked: if finished == 0 { 0 } else { unacked },
                                consumers,
                                work_secs: 2.5,
                                gap,
                                eval_at_secs: evals,
                            });
                        }
                    }
                }
            }
        }
    }
    cases
}

#[test]
fn the_knobs_of_the_rules_are_the_estimators_defaults() {
    assert_eq!(rule_knobs(), Knobs::default());
}

#[test]
fn the_recording_rules_and_the_estimator_agree_on_the_same_broker_series() {
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
        "the rules and the estimator disagree ({} cases, file {}):\n{report}",
        cases.len(),
        dir.join("capacity.test.yml").display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
