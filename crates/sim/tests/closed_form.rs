//! Cases whose answer is known in closed form, determinism, drain, KEDA's 0 <-> 1, the HPA's own scale to 0.

use warren_sim::{run, PolicySpec, ScaleCause, Scenario};

fn scenario(extra: &str) -> Scenario {
    Scenario::from_yaml(&format!(
        "description: test\nduration_secs: 300\nslo_secs: 10\n{extra}"
    ))
    .expect("valid scenario")
}

const SHIPPED_HPA: &str =
    include_str!("../../../deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml");

#[test]
fn backlog_grows_at_arrival_rate_minus_capacity_with_too_few_workers() {
    // 10 jobs/s of 1 s jobs on 4 workers: capacity 4/s, the backlog grows by 6/s.
    let s = scenario(
        "arrivals: { pattern: constant, rate: 10 }\nwork: { distribution: fixed, secs: 1 }\n",
    );
    let outcome = run(&s, &PolicySpec::fixed(4)).expect("runs");
    let at = |t: f64| {
        outcome
            .samples
            .iter()
            .find(|x| (x.t_secs - t).abs() < 1e-9)
            .map(|x| x.queue_ready as f64)
            .expect("a sample at t")
    };
    let growth = (at(250.0) - at(50.0)) / 200.0;
    assert!((growth - 6.0).abs() <= 0.01, "grew {growth}/s");
    assert_eq!(
        outcome.totals.jobs_unfinished,
        3000 - outcome.totals.jobs_done
    );
    assert!(outcome.samples.iter().all(|x| x.queue_unacked <= 4));
}

#[test]
fn many_workers_above_the_load_give_near_zero_wait() {
    let s = scenario(
        "arrivals: { pattern: constant, rate: 5, process: poisson }\nwork: { distribution: exponential, mean_secs: 0.5 }\nseed: 3\n",
    );
    let outcome = run(&s, &PolicySpec::fixed(40)).expect("runs");
    let t = &outcome.totals;
    assert!(t.jobs_done > 1300, "{}", t.jobs_done);
    assert!(t.wait_p99_secs < 0.001, "p99 {}", t.wait_p99_secs);
    assert_eq!(t.within_slo, 1.0);
}

#[test]
fn busy_seconds_floor_is_jobs_times_work_time() {
    let s = scenario(
        "arrivals: { pattern: sine, rate: 4 }\nwork: { distribution: fixed, secs: 0.25 }\n",
    );
    let outcome = run(&s, &PolicySpec::fixed(3)).expect("runs");
    let t = &outcome.totals;
    assert_eq!(t.jobs_arrived, 600);
    assert!((t.busy_seconds - t.jobs_done as f64 * 0.25).abs() < 1e-6);
    assert_eq!(t.floor_worker_seconds, t.busy_seconds);
    // Three workers for the whole 300 s.
    assert!(
        (t.worker_seconds - 900.0).abs() < 1e-6,
        "{}",
        t.worker_seconds
    );
    assert!((t.cost_ratio - 900.0 / t.busy_seconds).abs() < 1e-9);
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let text = "arrivals: { pattern: step, rate: 3, process: poisson }\nwork: { distribution: lognormal, mean_secs: 5, p95_secs: 9 }\nseed: 11\n";
    let policy = PolicySpec::from_hpa_yaml("shipped", SHIPPED_HPA).expect("valid");
    let a = run(&scenario(text), &policy).expect("runs");
    let b = run(&scenario(text), &policy).expect("runs");
    assert_eq!(a, b);
    let c = run(&scenario(&text.replace("seed: 11", "seed: 12")), &policy).expect("runs");
    assert_ne!(a.totals, c.totals);
}

#[test]
fn drain_interrupts_no_job_and_no_drain_interrupts_some() {
    // A load that drops from 12/s to 3/s: the HPA scales 10 workers down while they still work.
    let base = "arrivals: { points: [[0, 12], [120, 12], [120, 3], [600, 3]] }\nwork: { distribution: fixed, secs: 1 }\nduration_secs: 660\n";
    let drained =
        Scenario::from_yaml(&format!("description: d\nslo_secs: 10\n{base}")).expect("valid");
    let policy = PolicySpec::from_hpa_yaml("shipped", SHIPPED_HPA).expect("valid");
    let outcome = run(&drained, &policy).expect("runs");
    assert!(
        outcome.scale_events.iter().any(|e| e.to < e.from),
        "never scaled down"
    );
    assert_eq!(outcome.totals.jobs_interrupted, 0);
    assert_eq!(
        outcome.totals.jobs_done + outcome.totals.jobs_unfinished,
        outcome.totals.jobs_arrived
    );

    let killed = Scenario::from_yaml(&format!(
        "description: k\nslo_secs: 10\n{base}workers: {{ drain: false, victim_order: replicaset }}\n"
    ))
    .expect("valid");
    let outcome = run(&killed, &policy).expect("runs");
    assert!(outcome.totals.jobs_interrupted > 0);
    assert!(outcome.totals.jobs_redelivered > 0);
    // Interrupted jobs are requeued, not lost.
    assert_eq!(
        outcome.totals.jobs_done
            + outcome.totals.jobs_dead_lettered
            + outcome.totals.jobs_unfinished,
        outcome.totals.jobs_arrived
    );

    // Stopping idle workers first, as WorkerPool does, interrupts fewer jobs than a ReplicaSet,
    // which does not look at the jobs in hand.
    let idle_first = Scenario::from_yaml(&format!(
        "description: i\nslo_secs: 10\n{base}workers: {{ drain: false, victim_order: idle_first }}\n"
    ))
    .expect("valid");
    let idle = run(&idle_first, &policy).expect("runs");
    assert!(
        idle.totals.jobs_interrupted < outcome.totals.jobs_interrupted,
        "idle first {} vs replicaset {}",
        idle.totals.jobs_interrupted,
        outcome.totals.jobs_interrupted
    );
}

#[test]
fn keda_activates_from_zero_and_deactivates_after_the_cooldown() {
    let so = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: { name: w }
spec:
  scaleTargetRef: { name: worker }
  minReplicaCount: 0
  maxReplicaCount: 10
  pollingInterval: 30
  cooldownPeriod: 300
  triggers:
    - type: rabbitmq
      metadata: { queueName: Orders, mode: QueueLength, value: "20", host: "amqp://rabbitmq:5672/" }
"#;
    let s = Scenario::from_yaml(
        "description: a burst\nduration_secs: 900\nslo_secs: 60\narrivals: { bursts: [{ at_secs: 100, jobs: 200 }] }\nwork: { distribution: fixed, secs: 1 }\n",
    )
    .expect("valid");
    let outcome = run(
        &s,
        &PolicySpec::from_scaledobject_yaml("keda", so).expect("valid"),
    )
    .expect("runs");
    let events = &outcome.scale_events;
    let up = events
        .iter()
        .find(|e| e.cause == ScaleCause::KedaActivation)
        .expect("activated");
    // The poll after the burst: at 120 s.
    assert_eq!((up.at_secs, up.from, up.to), (120.0, 0, 1));
    let down = events
        .iter()
        .find(|e| e.cause == ScaleCause::KedaDeactivation)
        .expect("deactivated");
    assert_eq!(down.to, 0);
    // The last active poll, then 300 s, then the next poll.
    let last_active = down.at_secs - 300.0;
    assert!(last_active > 120.0 && down.at_secs < 900.0, "{down:?}");
    assert_eq!(outcome.totals.jobs_done, 200);
    // The HPA syncs while at 0 say so.
    assert!(outcome
        .decisions
        .iter()
        .any(|d| d.reasons.contains("ScalingDisabled")));
    assert!(outcome.totals.burst_drain_secs[0].is_some());
}

#[test]
fn an_hpa_at_min_replicas_0_records_scaled_to_zero_in_its_reasons_as_the_live_line_does() {
    let s = scenario(
        "arrivals: { pattern: constant, rate: 2, pattern_secs: 60 }\nwork: { distribution: fixed, secs: 1 }\nworkers: { initial: 1 }\n",
    );
    let hpa = SHIPPED_HPA.replace("minReplicas: 1", "minReplicas: 0");
    let outcome = run(
        &s,
        &PolicySpec::from_hpa_yaml("to zero", &hpa).expect("valid"),
    )
    .expect("runs");
    let to_zero = outcome
        .decisions
        .iter()
        .find(|d| d.rescale && d.desired == 0)
        .expect("scaled to 0 once idle");
    assert!(
        to_zero.reasons.ends_with(" ScaledToZero=ScaledToZero"),
        "{}",
        to_zero.reasons
    );
    let up = outcome
        .decisions
        .iter()
        .find(|d| d.rescale && d.desired > 0)
        .expect("scaled up under load");
    assert!(
        up.reasons.ends_with(" ScaledToZero=NotScaledToZero"),
        "{}",
        up.reasons
    );
}

#[test]
fn unknown_scenario_field_names_its_path() {
    let err = Scenario::from_yaml(
        "description: x\nduration_secs: 10\nslo_secs: 1\narrivals: {}\nwork: { distribution: fixed, secs: 1 }\nworkers: { startup_sec: 3 }\n",
    )
    .expect_err("unknown field")
    .to_string();
    assert_eq!(
        err,
        "workers.startup_sec: unknown field (did you mean startup_secs?)"
    );
}

/// Arrival rate x mean work time, from the differences of the delayed counters between syncs.
struct WorkersNeeded {
    previous: Option<warren_sim::Signals>,
}

impl warren_sim::MetricFormula for WorkersNeeded {
    fn describe(&self) -> String {
        "arrival rate x mean work time".into()
    }

    fn value(&mut self, seen: &warren_sim::Signals) -> f64 {
        let value = match self.previous {
            Some(p) if seen.at_secs > p.at_secs && seen.acked_total > p.acked_total => {
                let rate =
                    (seen.arrived_total - p.arrived_total) as f64 / (seen.at_secs - p.at_secs);
                let work = (seen.busy_secs_total - p.busy_secs_total)
                    / (seen.acked_total - p.acked_total) as f64;
                rate * work
            }
            _ => f64::from(seen.workers_current),
        };
        self.previous = Some(*seen);
        value
    }
}

#[test]
fn a_formula_metric_drives_the_hpa() {
    let hpa = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: { name: w }
spec:
  scaleTargetRef: { apiVersion: apps/v1, kind: Deployment, name: w }
  minReplicas: 1
  maxReplicas: 30
  metrics:
    - type: External
      external:
        metric: { name: workers_needed }
        target: { type: AverageValue, averageValue: "1" }
"#;
    let factory: warren_sim::FormulaFactory =
        std::sync::Arc::new(|| Box::new(WorkersNeeded { previous: None }));
    let policy =
        PolicySpec::from_hpa_yaml("needed", hpa).expect_err("no signal is named workers_needed");
    assert!(policy.to_string().contains("workers_needed"));
    let s = scenario(
        "arrivals: { pattern: constant, rate: 2 }\nwork: { distribution: fixed, secs: 5 }\n",
    );
    let outcome = warren_sim::run(&s, &policy_with_formula(hpa, factory)).expect("runs");
    // 2 jobs/s x 5 s = 10 workers, once the first jobs are done.
    let last = outcome.decisions.last().expect("decisions");
    assert_eq!(last.desired, 10, "{last:?}");
    assert!(outcome.metric_names[0].contains("arrival rate x mean work time"));
}

fn policy_with_formula(hpa: &str, factory: warren_sim::FormulaFactory) -> PolicySpec {
    PolicySpec::from_hpa_yaml_with_formulas("needed", hpa, vec![(0, factory)])
        .expect("valid with a formula")
}

#[test]
fn the_demo_scenario_ends_when_the_pool_is_back_at_its_minimum() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/demo.yaml"
    ))
    .expect("the demo scenario");
    let demo = Scenario::from_yaml(&text).expect("valid");
    let policy = PolicySpec::from_hpa_yaml("shipped", SHIPPED_HPA).expect("valid");
    let outcome = run(&demo, &policy).expect("runs");
    let t = &outcome.totals;
    assert!(t.duration_secs < demo.duration_secs, "{}", t.duration_secs);
    assert!(t.duration_secs > 75.0);
    assert_eq!((t.jobs_done, t.jobs_unfinished), (t.jobs_arrived, 0));
    let last = outcome.samples.last().expect("samples");
    assert_eq!((last.t_secs, last.workers_current), (t.duration_secs, 1));
}

#[test]
fn a_scenario_too_big_for_memory_is_refused() {
    let err = Scenario::from_yaml(
        "description: x\nduration_secs: 86400\nslo_secs: 1\narrivals: { pattern: constant, rate: 1000 }\nwork: { distribution: fixed, secs: 1 }\n",
    )
    .expect_err("86 million jobs")
    .to_string();
    assert!(err.starts_with("arrivals: asks for 86400000 jobs"), "{err}");
    let err = Scenario::from_yaml(
        "description: x\nduration_secs: 86400\nslo_secs: 1\nsample_secs: 0.01\narrivals: {}\nwork: { distribution: fixed, secs: 1 }\n",
    )
    .expect_err("8.6 million samples")
    .to_string();
    assert!(err.starts_with("sample_secs: gives more than"), "{err}");
}

#[test]
fn a_sync_reads_the_broker_s_last_refresh_half_a_refresh_old_by_default() {
    // 1 job/s (the first at 1 s) onto one worker that keeps the first for good: at each sync
    // the ready count is the arrivals up to the broker's last refresh, less that one.
    let base = "arrivals: { pattern: constant, rate: 1 }\nwork: { distribution: fixed, secs: 1000 }\nreplicas: { min: 1, max: 1 }\n";
    let policy = PolicySpec::from_hpa_yaml("shipped", SHIPPED_HPA).expect("valid");
    let read_at_15 = |metrics: &str| {
        let outcome =
            run(&scenario(&format!("{base}metrics: {metrics}\n")), &policy).expect("runs");
        let sync = outcome
            .decisions
            .iter()
            .find(|d| d.at_secs == 15.0)
            .expect("sync at 15 s");
        sync.metric_values[0].expect("a value")
    };
    // Refreshes at 0, 10, 20 ...: the sync at 15 s sees the 10 jobs of t <= 10 s.
    assert_eq!(
        read_at_15("{ broker_refresh_secs: 10, broker_phase_secs: 0 }"),
        9.0
    );
    // By default at 5, 15, 25 ...: the refresh at 15 s comes before the sync.
    assert_eq!(read_at_15("{ broker_refresh_secs: 10 }"), 14.0);
    // Refreshes at 8, 18 ...: 8 jobs.
    assert_eq!(
        read_at_15("{ broker_refresh_secs: 10, broker_phase_secs: 8 }"),
        7.0
    );
    let err = Scenario::from_yaml(&format!(
        "description: x\nduration_secs: 60\nslo_secs: 1\n{base}metrics: {{ broker_refresh_secs: 1, broker_phase_secs: 1 }}\n"
    ))
    .expect_err("a phase of a whole refresh")
    .to_string();
    assert!(err.starts_with("metrics.broker_phase_secs: "), "{err}");
}
