//! The capacity HPA (deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml) in the
//! simulator: its External metric `warren_workers_needed` is computed from the delayed signals.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};

use warren_sim::{PolicySpec, Scenario};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn policy(path: &str) -> PolicySpec {
    PolicySpec::from_hpa_yaml(path, &std::fs::read_to_string(repo(path)).unwrap()).unwrap()
}

fn scenario(path: &str) -> Scenario {
    Scenario::from_yaml(&std::fs::read_to_string(repo(path)).unwrap()).unwrap()
}

const CAPACITY: &str = "deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml";
const QUEUE_LENGTH: &str = "deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml";

#[test]
fn the_capacity_hpa_runs_and_names_its_formula() {
    let outcome = warren_sim::run(&scenario("scenarios/steady.yaml"), &policy(CAPACITY)).unwrap();
    assert!(
        outcome.metric_names[0].starts_with("warren_workers_needed = busy / 1 + 0.58 x sqrt(busy)"),
        "{:?}",
        outcome.metric_names
    );
}

/// The queue-length target makes jobs wait about target x work time (25 s); sizing on the
/// arrivals does not, at a cost near busy-seconds / utilisation (1.25x).
#[test]
fn capacity_waits_far_less_than_queue_length_in_steady_and_step() {
    for (path, max_ratio) in [("scenarios/steady.yaml", 1.3), ("scenarios/step.yaml", 1.6)] {
        let s = scenario(path);
        let capacity = warren_sim::run(&s, &policy(CAPACITY)).unwrap().totals;
        let queue = warren_sim::run(&s, &policy(QUEUE_LENGTH)).unwrap().totals;
        assert!(
            capacity.wait_p95_secs < queue.wait_p95_secs / 2.0,
            "{path}: p95 wait {} (capacity) vs {} (queue length)",
            capacity.wait_p95_secs,
            queue.wait_p95_secs
        );
        assert!(capacity.within_slo >= 0.95, "{path}: {capacity:?}");
        let ratio = capacity.worker_seconds / capacity.busy_seconds;
        assert!(
            ratio <= max_ratio,
            "{path}: worker-seconds / busy-seconds {ratio}"
        );
    }
}
