//! The ReplicaSet's victim order with and without the workers' pod-deletion-cost annotation.

use warren_sim::{run, PolicySpec, RunOutcome, Scenario};

const SHIPPED_HPA: &str =
    include_str!("../../../deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml");

/// A burst of 400 jobs over a trickle of 0.6/s, with the worker's real 5 s jobs: after the
/// burst the HPA scales 10 workers down while some are busy with the trickle and some idle.
fn scale_down(workers: &str) -> RunOutcome {
    let s = Scenario::from_yaml(&format!(
        "description: scale-down\nslo_secs: 30\nduration_secs: 900\n\
         arrivals: {{ pattern: constant, rate: 0.6, process: poisson, bursts: [{{ at_secs: 60, jobs: 400 }}] }}\n\
         work: {{ distribution: fixed, secs: 5 }}\nseed: 7\nworkers: {workers}\n"
    ))
    .expect("valid scenario");
    let policy = PolicySpec::from_hpa_yaml("shipped", SHIPPED_HPA).expect("valid");
    let outcome = run(&s, &policy).expect("runs");
    assert!(
        outcome.scale_events.iter().any(|e| e.to < e.from),
        "never scaled down"
    );
    outcome
}

#[test]
fn deletion_cost_stops_fewer_busy_workers_than_the_replicaset_order() {
    // Without drain every busy victim's job is interrupted: the count of busy victims, directly.
    let replicaset = scale_down("{ drain: false, victim_order: replicaset }");
    let cost = scale_down("{ drain: false, victim_order: deletion_cost }");
    assert!(
        cost.totals.jobs_interrupted < replicaset.totals.jobs_interrupted,
        "deletion cost {} vs replicaset {}",
        cost.totals.jobs_interrupted,
        replicaset.totals.jobs_interrupted
    );
    // The debounce is what it costs: a worker busy for less than 2 s still reads as idle. With
    // none, the order is as good as the local pool's idle first.
    let instant =
        scale_down("{ drain: false, victim_order: deletion_cost, deletion_cost_debounce_secs: 0 }");
    let idle_first = scale_down("{ drain: false, victim_order: idle_first }");
    assert!(instant.totals.jobs_interrupted <= cost.totals.jobs_interrupted);
    assert_eq!(
        instant.totals.jobs_interrupted,
        idle_first.totals.jobs_interrupted
    );
}

#[test]
fn with_drain_deletion_cost_saves_worker_seconds_and_loses_nothing() {
    // With drain (as on Kubernetes), a busy victim runs on until its job is done.
    let replicaset = scale_down("{ victim_order: replicaset }");
    let cost = scale_down("{ victim_order: deletion_cost }");
    for o in [&replicaset, &cost] {
        assert_eq!(o.totals.jobs_interrupted, 0);
        assert_eq!(
            o.totals.jobs_done + o.totals.jobs_unfinished,
            o.totals.jobs_arrived
        );
    }
    assert!(
        cost.totals.worker_seconds < replicaset.totals.worker_seconds,
        "deletion cost {} vs replicaset {} worker-seconds",
        cost.totals.worker_seconds,
        replicaset.totals.worker_seconds
    );
}

#[test]
fn an_annotation_never_written_leaves_the_replicaset_order() {
    // A debounce longer than the run: no worker ever writes its cost, so every pod counts as 0
    // and the ReplicaSet's own order decides, victim for victim.
    let replicaset = scale_down("{ drain: false, victim_order: replicaset }");
    let never = scale_down(
        "{ drain: false, victim_order: deletion_cost, deletion_cost_debounce_secs: 100000 }",
    );
    assert_eq!(never.totals, replicaset.totals);
    assert_eq!(never.scale_events, replicaset.scale_events);
}
