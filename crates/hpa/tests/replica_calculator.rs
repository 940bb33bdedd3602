//! Per-metric replica calculation against the cases of the Kubernetes `replica_calculator_test.go`
//! (numbers per pod: the tests' per-container levels and requests summed per pod give the same
//! ratios and replica counts).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::now;
use warren_hpa::replica_calculator::*;
use warren_hpa::{ConditionStatus, Timestamp};

/// The testing defaults of the Kubernetes tests: 2 min CPU initialization, 10 s readiness delay.
fn calculator() -> ReplicaCalculator {
    ReplicaCalculator {
        cpu_initialization_period: Duration::from_secs(120),
        delay_of_initial_readiness_status: Duration::from_secs(10),
        ignore_succeeded_pods: true,
    }
}

fn cool() -> Timestamp {
    now() - Duration::from_secs(180)
}

fn hot() -> Timestamp {
    now()
}

/// A pod set as `replicaCalcTestCase` builds it: one pod per phase (or `count` running pods),
/// each requesting `requests[i]` millicores of CPU, with the given readiness and start time (its
/// Ready condition last changed when it started).
#[derive(Default)]
struct Case {
    count: usize,
    requests: Vec<i64>,
    readiness: Vec<ConditionStatus>,
    phases: Vec<PodPhase>,
    start: Vec<Timestamp>,
    deleting: Vec<bool>,
}

impl Case {
    fn pods(&self) -> Vec<Pod> {
        let count = if self.phases.is_empty() {
            self.count
        } else {
            self.phases.len()
        };
        (0..count)
            .map(|i| {
                let start = self.start.get(i).copied().unwrap_or_else(cool);
                Pod {
                    name: format!("test-pod-{i}"),
                    phase: self.phases.get(i).copied().unwrap_or(PodPhase::Running),
                    deleting: self.deleting.get(i).copied().unwrap_or(false),
                    start_time: Some(start),
                    ready: Some(PodReadyCondition {
                        status: self
                            .readiness
                            .get(i)
                            .copied()
                            .unwrap_or(ConditionStatus::True),
                        last_transition_time: start,
                    }),
                    containers: vec![Container {
                        name: "container1".into(),
                        kind: ContainerKind::App,
                        requests: BTreeMap::from([(
                            "cpu".to_string(),
                            self.requests.get(i).copied().unwrap_or(1000),
                        )]),
                    }],
                    pod_requests: None,
                }
            })
            .collect()
    }
}

/// Samples for `test-pod-0..`, taken now over a one-minute window.
fn levels(values: &[i64]) -> PodMetricsInfo {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            (
                format!("test-pod-{i}"),
                PodMetric {
                    value: v,
                    timestamp: now(),
                    window: Duration::from_secs(60),
                },
            )
        })
        .collect()
}

const T: ConditionStatus = ConditionStatus::True;
const F: ConditionStatus = ConditionStatus::False;

fn cpu(
    case: &Case,
    current: i32,
    target_utilization: i32,
    values: &[i64],
) -> Result<ResourceReplicas, ReplicaCalcError> {
    calculator().get_resource_replicas(
        current,
        target_utilization,
        "cpu",
        Tolerances::default(),
        &case.pods(),
        &levels(values),
        "",
        now(),
    )
}

fn pods_metric(case: &Case, current: i32, target: i64, values: &[i64]) -> MetricReplicas {
    calculator()
        .get_metric_replicas(
            current,
            target,
            Tolerances::default(),
            &case.pods(),
            &levels(values),
            now(),
        )
        .unwrap_or_else(|e| panic!("calculation failed: {e}"))
}

fn running(count: usize) -> Case {
    Case {
        count,
        ..Case::default()
    }
}

fn expect(
    result: Result<ResourceReplicas, ReplicaCalcError>,
    replicas: i32,
    utilization: i32,
    raw: i64,
) {
    assert_eq!(
        result,
        Ok(ResourceReplicas {
            replica_count: replicas,
            utilization,
            raw_utilization: raw
        })
    );
}

#[test]
fn scale_up() {
    expect(cpu(&running(3), 3, 30, &[300, 500, 700]), 5, 50, 500);
}

#[test]
fn scale_up_unready_less_scale() {
    let case = Case {
        count: 3,
        readiness: vec![F, T, T],
        ..Case::default()
    };
    expect(cpu(&case, 3, 30, &[300, 500, 700]), 4, 60, 600);
}

#[test]
fn scale_up_hot_cpu_less_scale() {
    let case = Case {
        count: 3,
        start: vec![hot(), cool(), cool()],
        ..Case::default()
    };
    expect(cpu(&case, 3, 30, &[300, 500, 700]), 4, 60, 600);
}

#[test]
fn scale_up_unready_no_scale() {
    let case = Case {
        count: 3,
        readiness: vec![T, F, F],
        ..Case::default()
    };
    expect(cpu(&case, 3, 30, &[400, 500, 700]), 3, 40, 400);
}

#[test]
fn scale_hot_cpu_no_scale() {
    let case = Case {
        count: 3,
        readiness: vec![T, F, F],
        start: vec![cool(), hot(), hot()],
        ..Case::default()
    };
    expect(cpu(&case, 3, 30, &[400, 500, 700]), 3, 40, 400);
}

#[test]
fn scale_up_ignores_failed_pods() {
    let case = Case {
        readiness: vec![T, T, F, F],
        phases: vec![
            PodPhase::Running,
            PodPhase::Running,
            PodPhase::Failed,
            PodPhase::Failed,
        ],
        ..Case::default()
    };
    expect(cpu(&case, 2, 30, &[500, 700]), 4, 60, 600);
}

fn cpu_with_succeeded_pods_counted(
    case: &Case,
    current: i32,
    target_utilization: i32,
    values: &[i64],
) -> Result<ResourceReplicas, ReplicaCalcError> {
    ReplicaCalculator {
        ignore_succeeded_pods: false,
        ..calculator()
    }
    .get_resource_replicas(
        current,
        target_utilization,
        "cpu",
        Tolerances::default(),
        &case.pods(),
        &levels(values),
        "",
        now(),
    )
}

// TestReplicaCalcResourceScale "scale up: succeeded pods ignored" (kubernetes PR 141302): the
// failed-pods case with Succeeded pods, 4 replicas, 60 %, 600 m. Before that change they
// counted as missing and damped the scale-up to 2.
#[test]
fn scale_up_ignores_succeeded_pods() {
    let case = Case {
        readiness: vec![T, T, F, F],
        phases: vec![
            PodPhase::Running,
            PodPhase::Running,
            PodPhase::Succeeded,
            PodPhase::Succeeded,
        ],
        ..Case::default()
    };
    expect(cpu(&case, 2, 30, &[500, 700]), 4, 60, 600);
    let older = cpu_with_succeeded_pods_counted(&case, 2, 30, &[500, 700]);
    assert_eq!(older.map(|r| r.replica_count), Ok(2));
}

#[test]
fn scale_up_ignores_deletion_pods() {
    let case = Case {
        readiness: vec![T, T, F, F],
        phases: vec![PodPhase::Running; 4],
        deleting: vec![false, false, true, true],
        ..Case::default()
    };
    expect(cpu(&case, 2, 30, &[500, 700]), 4, 60, 600);
}

#[test]
fn scale_down() {
    expect(
        cpu(&running(5), 5, 50, &[100, 300, 500, 250, 250]),
        3,
        28,
        280,
    );
}

#[test]
fn scale_down_include_unready_pods() {
    let case = Case {
        count: 5,
        readiness: vec![T, T, T, F, F],
        ..Case::default()
    };
    expect(cpu(&case, 5, 50, &[100, 300, 500, 250, 250]), 2, 30, 300);
}

#[test]
fn scale_down_exclude_unscheduled_pods() {
    let case = Case {
        readiness: vec![T, F, F, F, F],
        phases: vec![
            PodPhase::Running,
            PodPhase::Pending,
            PodPhase::Pending,
            PodPhase::Pending,
            PodPhase::Pending,
        ],
        ..Case::default()
    };
    expect(cpu(&case, 5, 50, &[100]), 1, 10, 100);
}

#[test]
fn scale_down_ignore_hot_cpu_pods() {
    let case = Case {
        count: 5,
        start: vec![cool(), cool(), cool(), hot(), hot()],
        ..Case::default()
    };
    expect(cpu(&case, 5, 50, &[100, 300, 500, 250, 250]), 2, 30, 300);
}

#[test]
fn scale_down_ignores_failed_pods() {
    let mut phases = vec![PodPhase::Running; 5];
    phases.extend([PodPhase::Failed, PodPhase::Failed]);
    let case = Case {
        readiness: vec![T, T, T, T, T, F, F],
        phases,
        ..Case::default()
    };
    expect(cpu(&case, 5, 50, &[100, 300, 500, 250, 250]), 3, 28, 280);
}

// TestReplicaCalcResourceScale "scale down: succeeded pods ignored" (kubernetes PR 141302): 3
// replicas, 28 %, 280 m. Counted as missing, the two Succeeded pods held the scale-down at 5.
#[test]
fn scale_down_ignores_succeeded_pods() {
    let mut phases = vec![PodPhase::Running; 5];
    phases.extend([PodPhase::Succeeded, PodPhase::Succeeded]);
    let case = Case {
        readiness: vec![T, T, T, T, T, F, F],
        phases,
        ..Case::default()
    };
    expect(cpu(&case, 5, 50, &[100, 300, 500, 250, 250]), 3, 28, 280);
    let older = cpu_with_succeeded_pods_counted(&case, 5, 50, &[100, 300, 500, 250, 250]);
    assert_eq!(older.map(|r| r.replica_count), Ok(5));
}

#[test]
fn tolerance() {
    let case = Case {
        count: 3,
        requests: vec![900, 1000, 1100],
        ..Case::default()
    };
    expect(cpu(&case, 3, 100, &[1010, 1030, 1020]), 3, 102, 1020);
}

#[test]
fn superfluous_metrics() {
    expect(
        cpu(&running(4), 4, 100, &[4000, 9500, 3000, 7000, 3200, 2000]),
        24,
        587,
        5875,
    );
}

#[test]
fn missing_metrics() {
    expect(cpu(&running(4), 4, 100, &[400, 95]), 3, 24, 247);
}

#[test]
fn missing_metrics_no_change_eq() {
    expect(cpu(&running(2), 2, 100, &[1000]), 2, 100, 1000);
}

#[test]
fn missing_metrics_no_change_gt() {
    expect(cpu(&running(2), 2, 100, &[1900]), 2, 190, 1900);
}

#[test]
fn missing_metrics_no_change_lt() {
    expect(cpu(&running(2), 2, 100, &[600]), 2, 60, 600);
}

#[test]
fn missing_metrics_unready_change() {
    let case = Case {
        count: 3,
        readiness: vec![F, T, T],
        ..Case::default()
    };
    expect(cpu(&case, 3, 50, &[100, 450]), 3, 45, 450);
}

#[test]
fn missing_metrics_hot_cpu_no_change() {
    let case = Case {
        count: 3,
        start: vec![hot(), cool(), cool()],
        ..Case::default()
    };
    expect(cpu(&case, 3, 50, &[100, 450]), 3, 45, 450);
}

#[test]
fn missing_metrics_unready_scale_up() {
    let case = Case {
        count: 3,
        readiness: vec![F, T, T],
        ..Case::default()
    };
    expect(cpu(&case, 3, 50, &[100, 2000]), 4, 200, 2000);
}

#[test]
fn missing_metrics_hot_cpu_scale_up() {
    let case = Case {
        count: 3,
        readiness: vec![F, T, T],
        start: vec![hot(), cool(), cool()],
        ..Case::default()
    };
    expect(cpu(&case, 3, 50, &[100, 2000]), 4, 200, 2000);
}

#[test]
fn missing_metrics_unready_scale_down() {
    let case = Case {
        count: 4,
        readiness: vec![F, T, T, T],
        ..Case::default()
    };
    expect(cpu(&case, 4, 50, &[100, 100, 100]), 3, 10, 100);
}

#[test]
fn during_rolling_update_with_max_surge() {
    expect(cpu(&running(3), 2, 50, &[100, 100]), 2, 10, 100);
}

#[test]
fn missing_metrics_above_100_percent_target_count_at_the_target() {
    // A missing pod on a scale-down counts at max(100 %, target) of its request: at 200 % the
    // adjusted utilization is (300 + 2000) / 4000 = 57 % -> ceil(0.285 * 4) = 2 (at 100 % it
    // would be 32 % -> 1).
    expect(cpu(&running(4), 4, 200, &[100, 100, 100]), 2, 10, 100);
}

#[test]
fn disjoint_resource_metrics_fail() {
    let mut metrics = PodMetricsInfo::new();
    metrics.insert("an-older-pod-name".into(), PodMetric::value(100));
    let got = calculator().get_resource_replicas(
        1,
        100,
        "cpu",
        Tolerances::default(),
        &running(1).pods(),
        &metrics,
        "",
        now(),
    );
    assert_eq!(got, Err(ReplicaCalcError::NoMetricsMatchedKnownPods));
}

#[test]
fn empty_cpu_request_fails() {
    let mut pods = running(1).pods();
    pods[0].containers[0].requests.clear();
    let got = calculator().get_resource_replicas(
        1,
        100,
        "cpu",
        Tolerances::default(),
        &pods,
        &levels(&[200]),
        "",
        now(),
    );
    assert_eq!(
        got.map_err(|e| e.to_string()),
        Err("missing request for cpu in container container1 of Pod test-pod-0".to_string())
    );
}

#[test]
fn no_pods_fails() {
    let got = calculator().get_resource_replicas(
        1,
        100,
        "cpu",
        Tolerances::default(),
        &[],
        &levels(&[200]),
        "",
        now(),
    );
    assert_eq!(got, Err(ReplicaCalcError::NoPods));
}

// TestReplicaCalcComputedToleranceAlgImplementation: a target just past the tolerance scales,
// one just inside it does not.
#[test]
fn computed_tolerance_alg_implementation() {
    let start_pods = 10;
    let total_used: i64 = 150 * start_pods;
    let total_requested = 2 * total_used;
    let requested_to_used = (total_requested / total_used) as f64;
    let per_pod_requested = total_requested / start_pods;
    let requests = vec![
        per_pod_requested + 100,
        per_pod_requested - 100,
        per_pod_requested + 10,
        per_pod_requested - 10,
        per_pod_requested + 2,
        per_pod_requested - 2,
        per_pod_requested + 1,
        per_pod_requested - 1,
        per_pod_requested,
        per_pod_requested,
    ];
    let case = Case {
        count: 10,
        requests,
        ..Case::default()
    };
    let samples = vec![total_used / 10; 10];

    let target = (1.0 / (requested_to_used * (1.0 - DEFAULT_TOLERANCE))).abs() + 0.01;
    let target_percent = (target * 100.0) as i32;
    let used_ratio = total_used as f64 / (total_requested as f64 * target);
    let final_pods = (used_ratio * start_pods as f64).ceil() as i32;
    let got = cpu(&case, 10, target_percent, &samples).map(|r| r.replica_count);
    assert_eq!(got, Ok(final_pods));
    assert!(final_pods < 10);

    let target = (1.0 / (requested_to_used * (1.0 - DEFAULT_TOLERANCE))).abs() + 0.004;
    let got = cpu(&case, 10, (target * 100.0) as i32, &samples).map(|r| r.replica_count);
    assert_eq!(got, Ok(10));
}

#[test]
fn scale_up_cm() {
    assert_eq!(
        pods_metric(&running(3), 3, 15000, &[20000, 10000, 30000]),
        MetricReplicas {
            replica_count: 4,
            usage: 20000
        }
    );
}

#[test]
fn scale_up_cm_unready_hot_cpu_no_less_scale() {
    let case = Case {
        count: 3,
        readiness: vec![T, T, F],
        start: vec![cool(), cool(), hot()],
        ..Case::default()
    };
    assert_eq!(
        pods_metric(&case, 3, 15000, &[50000, 10000, 30000]),
        MetricReplicas {
            replica_count: 6,
            usage: 30000
        }
    );
}

#[test]
fn scale_up_cm_unready_hot_cpu_scale_would_scale_down() {
    let case = Case {
        count: 3,
        readiness: vec![F, T, F],
        start: vec![hot(), cool(), hot()],
        ..Case::default()
    };
    assert_eq!(
        pods_metric(&case, 3, 15000, &[50000, 15000, 30000]),
        MetricReplicas {
            replica_count: 7,
            usage: 31666
        }
    );
}

#[test]
fn scale_down_cm() {
    assert_eq!(
        pods_metric(&running(5), 5, 20000, &[12000; 5]),
        MetricReplicas {
            replica_count: 3,
            usage: 12000
        }
    );
}

#[test]
fn tolerance_cm() {
    assert_eq!(
        pods_metric(&running(3), 3, 20000, &[20000, 21000, 21000]),
        MetricReplicas {
            replica_count: 3,
            usage: 20666
        }
    );
}

#[test]
fn pods_metric_missing_pod_counts_at_target_on_scale_down() {
    // 2 pods sampled at half the target, one missing: (5+5+10)/3 = 6.67 of 10 -> ceil(0.666 * 3) = 2.
    assert_eq!(
        pods_metric(&running(3), 3, 10000, &[5000, 5000]),
        MetricReplicas {
            replica_count: 2,
            usage: 5000
        }
    );
}

#[test]
fn scale_up_cm_object() {
    let got =
        get_object_metric_replicas(3, 15000, Tolerances::default(), 20000, &running(3).pods());
    assert_eq!(
        got,
        Ok(MetricReplicas {
            replica_count: 4,
            usage: 20000
        })
    );
}

#[test]
fn scale_up_cm_object_ignores_unready_pods() {
    let case = Case {
        count: 3,
        readiness: vec![F, T, F],
        ..Case::default()
    };
    let got = get_object_metric_replicas(3, 10000, Tolerances::default(), 50000, &case.pods());
    assert_eq!(
        got,
        Ok(MetricReplicas {
            replica_count: 5,
            usage: 50000
        })
    );
}

#[test]
fn scale_down_cm_object() {
    let got =
        get_object_metric_replicas(5, 20000, Tolerances::default(), 12000, &running(5).pods());
    assert_eq!(
        got,
        Ok(MetricReplicas {
            replica_count: 3,
            usage: 12000
        })
    );
}

#[test]
fn tolerance_cm_object() {
    let got =
        get_object_metric_replicas(3, 20000, Tolerances::default(), 20666, &running(3).pods());
    assert_eq!(
        got,
        Ok(MetricReplicas {
            replica_count: 3,
            usage: 20666
        })
    );
}

#[test]
fn scale_up_cm_per_pod_object() {
    let got = get_object_per_pod_metric_replicas(3, 5000, Tolerances::default(), 20000);
    assert_eq!(
        got,
        MetricReplicas {
            replica_count: 4,
            usage: 6667
        }
    );
}

#[test]
fn scale_down_per_pod_cm_object() {
    let got = get_object_per_pod_metric_replicas(5, 2000, Tolerances::default(), 6000);
    assert_eq!(
        got,
        MetricReplicas {
            replica_count: 3,
            usage: 1200
        }
    );
}

#[test]
fn tolerance_per_pod_cm_object() {
    let got = get_object_per_pod_metric_replicas(4, 5000, Tolerances::default(), 20166);
    assert_eq!(
        got,
        MetricReplicas {
            replica_count: 4,
            usage: 5042
        }
    );
}

#[test]
fn scale_up_cm_external_ignores_unready_pods() {
    let case = Case {
        count: 3,
        readiness: vec![F, T, F],
        ..Case::default()
    };
    let got = get_external_metric_replicas(3, 4400, Tolerances::default(), &[8600], &case.pods());
    assert_eq!(
        got,
        Ok(MetricReplicas {
            replica_count: 2,
            usage: 8600
        })
    );
}

#[test]
fn scale_down_cm_external() {
    let got =
        get_external_metric_replicas(5, 14334, Tolerances::default(), &[8600], &running(5).pods());
    assert_eq!(
        got,
        Ok(MetricReplicas {
            replica_count: 3,
            usage: 8600
        })
    );
}

#[test]
fn tolerance_cm_external() {
    let got =
        get_external_metric_replicas(3, 8888, Tolerances::default(), &[8600], &running(3).pods());
    assert_eq!(
        got,
        Ok(MetricReplicas {
            replica_count: 3,
            usage: 8600
        })
    );
}

#[test]
fn external_values_of_every_series_are_summed() {
    let got = get_external_metric_replicas(
        1,
        1000,
        Tolerances::default(),
        &[1500, 2500],
        &running(1).pods(),
    );
    assert_eq!(
        got,
        Ok(MetricReplicas {
            replica_count: 4,
            usage: 4000
        })
    );
}

#[test]
fn external_sum_saturates_instead_of_overflowing() {
    let got = get_external_metric_replicas(
        1,
        1000,
        Tolerances::default(),
        &[i64::MAX, 5],
        &running(1).pods(),
    );
    assert_eq!(got.map(|r| r.usage), Ok(i64::MAX));
}

#[test]
fn external_with_zero_current_replicas_scales_from_zero_by_the_ratio() {
    // Scale to zero: no pods are needed, and the tolerance does not apply.
    assert_eq!(
        get_external_metric_replicas(0, 1000, Tolerances::default(), &[0], &[]),
        Ok(MetricReplicas {
            replica_count: 0,
            usage: 0
        })
    );
    assert_eq!(
        get_external_metric_replicas(0, 1000, Tolerances::default(), &[1050], &[]),
        Ok(MetricReplicas {
            replica_count: 2,
            usage: 1050
        })
    );
}

#[test]
fn external_value_target_without_pods_fails() {
    assert_eq!(
        get_external_metric_replicas(2, 1000, Tolerances::default(), &[5000], &[]),
        Err(ReplicaCalcError::NoPods)
    );
}

// TestGetPerPodUsage: "zero replicas returns zero", "normal division with ceiling", "overflow
// returns MaxInt64".
#[test]
fn get_per_pod_usage_cases() {
    assert_eq!(get_per_pod_usage(20_000, 0), 0);
    assert_eq!(get_per_pod_usage(1_000, 3), 334);
    assert_eq!(get_per_pod_usage(i64::MAX, 1), i64::MAX);
}

// The per-pod calculations at 0 status replicas report a usage of 0 (not a division by zero
// saturated to i64::MAX), and the count is the total over the per-pod target.
#[test]
fn per_pod_usage_is_zero_with_zero_status_replicas() {
    assert_eq!(get_per_pod_usage(i64::MAX, 0), i64::MAX);
    assert_eq!(
        get_external_per_pod_metric_replicas(0, 2150, Tolerances::default(), &[8600]),
        MetricReplicas {
            replica_count: 4,
            usage: 0
        }
    );
    assert_eq!(
        get_object_per_pod_metric_replicas(0, 5000, Tolerances::default(), 20000),
        MetricReplicas {
            replica_count: 4,
            usage: 0
        }
    );
}

#[test]
fn scale_up_per_pod_cm_external() {
    let got = get_external_per_pod_metric_replicas(3, 2150, Tolerances::default(), &[8600]);
    assert_eq!(
        got,
        MetricReplicas {
            replica_count: 4,
            usage: 2867
        }
    );
}

#[test]
fn scale_down_per_pod_cm_external() {
    let got = get_external_per_pod_metric_replicas(5, 2867, Tolerances::default(), &[8600]);
    assert_eq!(
        got,
        MetricReplicas {
            replica_count: 3,
            usage: 1720
        }
    );
}

#[test]
fn tolerance_per_pod_cm_external() {
    let got = get_external_per_pod_metric_replicas(3, 2900, Tolerances::default(), &[8600]);
    assert_eq!(
        got,
        MetricReplicas {
            replica_count: 3,
            usage: 2867
        }
    );
}

#[test]
fn per_direction_tolerances_apply_separately() {
    let tolerances = Tolerances {
        scale_down: 0.5,
        scale_up: 0.0,
    };
    assert!(tolerances.is_within(0.6));
    assert!(!tolerances.is_within(1.01));
    let got = get_external_per_pod_metric_replicas(10, 1000, tolerances, &[6000]);
    assert_eq!(got.replica_count, 10);
    let got = get_external_per_pod_metric_replicas(10, 1000, tolerances, &[10_100]);
    assert_eq!(got.replica_count, 11);
}

// TestGroupPods.
fn group(pod: Pod, metric: Option<PodMetric>, resource: &str) -> GroupedPods {
    let metrics: PodMetricsInfo = metric.map(|m| (pod.name.clone(), m)).into_iter().collect();
    group_pods(
        &[pod],
        &metrics,
        resource,
        Duration::from_secs(120),
        Duration::from_secs(10),
        true,
        now(),
    )
}

// TestGroupPods built its pods in phase Succeeded, which counted like Running until Succeeded
// pods were ignored (PR 141302); the readiness cases here are about readiness, so Running.
fn pod(name: &str, start: Option<Timestamp>, ready: Option<(ConditionStatus, Timestamp)>) -> Pod {
    Pod {
        name: name.into(),
        phase: PodPhase::Running,
        deleting: false,
        start_time: start,
        ready: ready.map(|(status, last_transition_time)| PodReadyCondition {
            status,
            last_transition_time,
        }),
        containers: Vec::new(),
        pod_requests: None,
    }
}

fn secs_ago(s: u64) -> Timestamp {
    now() - Duration::from_secs(s)
}

fn sample(timestamp: Timestamp, window_secs: u64) -> Option<PodMetric> {
    Some(PodMetric {
        value: 1,
        timestamp,
        window: Duration::from_secs(window_secs),
    })
}

// TestGroupPods "ignore pods in a failed state", "ignore pods in a succeeded state": ignored
// even with a sample.
#[test]
fn group_ignores_pods_in_a_failed_or_succeeded_state() {
    for phase in [PodPhase::Failed, PodPhase::Succeeded] {
        let got = group(
            Pod {
                phase,
                ..pod("failed", None, None)
            },
            sample(now(), 60),
            "cpu",
        );
        assert_eq!(
            (
                got.ready_pod_count,
                got.unready_pods.len(),
                got.missing_pods.len()
            ),
            (0, 0, 0),
            "{phase:?}"
        );
        assert_eq!(got.ignored_pods.len(), 1, "{phase:?}");
    }
}

#[test]
fn group_counts_in_a_ready_pod_for_memory() {
    let got = group(pod("bentham", None, None), sample(now(), 60), "memory");
    assert_eq!((got.ready_pod_count, got.unready_pods.len()), (1, 0));
}

#[test]
fn group_ignores_a_pod_without_ready_condition_for_cpu() {
    let got = group(
        pod("lucretius", Some(now()), None),
        Some(PodMetric::value(1)),
        "cpu",
    );
    assert_eq!(got.ready_pod_count, 0);
    assert!(got.unready_pods.contains("lucretius"));
}

#[test]
fn group_counts_in_a_ready_pod_with_fresh_metrics_during_initialization() {
    let p = pod("bentham", Some(secs_ago(60)), Some((T, secs_ago(30))));
    assert_eq!(group(p, sample(now(), 30), "cpu").ready_pod_count, 1);
}

#[test]
fn group_ignores_a_ready_pod_without_fresh_metrics_during_initialization() {
    let p = pod("bentham", Some(secs_ago(60)), Some((T, secs_ago(30))));
    let got = group(p, sample(now(), 60), "cpu");
    assert_eq!(got.ready_pod_count, 0);
    assert!(got.unready_pods.contains("bentham"));
}

#[test]
fn group_ignores_an_unready_pod_that_never_became_ready() {
    let p = pod("lucretius", Some(secs_ago(600)), Some((F, secs_ago(594))));
    let got = group(p, Some(PodMetric::value(1)), "cpu");
    assert!(got.unready_pods.contains("lucretius"));
}

#[test]
fn group_counts_in_a_ready_pod_without_fresh_metrics_after_initialization() {
    let p = pod("bentham", Some(secs_ago(180)), Some((T, secs_ago(180))));
    assert_eq!(
        group(p, sample(secs_ago(120), 60), "cpu").ready_pod_count,
        1
    );
}

#[test]
fn group_counts_in_an_unready_pod_that_was_ready_after_initialization() {
    let p = pod("lucretius", Some(secs_ago(600)), Some((F, secs_ago(540))));
    assert_eq!(
        group(p, Some(PodMetric::value(1)), "cpu").ready_pod_count,
        1
    );
}

#[test]
fn group_counts_in_a_pod_whose_readiness_changed_exactly_at_the_delay() {
    let p = pod("lucretius", Some(secs_ago(600)), Some((F, secs_ago(590))));
    assert_eq!(
        group(p, Some(PodMetric::value(1)), "cpu").ready_pod_count,
        1
    );
}

#[test]
fn group_reports_a_missing_pod() {
    let got = group(pod("epicurus", Some(secs_ago(180)), None), None, "cpu");
    assert!(got.missing_pods.contains("epicurus"));
}

#[test]
fn group_treats_pending_pods_as_unready() {
    let mut p = pod("unscheduled", None, None);
    p.phase = PodPhase::Pending;
    let got = group(p, None, "cpu");
    assert!(got.unready_pods.contains("unscheduled"));
    assert!(got.missing_pods.is_empty());
}

// calculateRequests.
fn container(name: &str, kind: ContainerKind, cpu: Option<i64>) -> Container {
    Container {
        name: name.into(),
        kind,
        requests: cpu.map(|c| ("cpu".to_string(), c)).into_iter().collect(),
    }
}

#[test]
fn requests_sum_app_and_sidecar_containers_but_not_plain_init_containers() {
    let mut p = pod("p", None, None);
    p.containers = vec![
        container("app", ContainerKind::App, Some(300)),
        container("init", ContainerKind::Init, Some(5000)),
        container("sidecar", ContainerKind::SidecarInit, Some(200)),
    ];
    assert_eq!(
        calculate_requests(&[p], "", "cpu"),
        Ok(BTreeMap::from([("p".to_string(), 500)]))
    );
}

#[test]
fn requests_of_a_named_container_only() {
    let mut p = pod("p", None, None);
    p.containers = vec![
        container("app", ContainerKind::App, Some(300)),
        container("other", ContainerKind::App, None),
    ];
    assert_eq!(
        calculate_requests(std::slice::from_ref(&p), "app", "cpu"),
        Ok(BTreeMap::from([("p".to_string(), 300)]))
    );
    assert_eq!(
        calculate_requests(&[p], "missing", "cpu"),
        Err(ReplicaCalcError::ContainerNotFound {
            container: "missing".into(),
            pod: "p".into()
        })
    );
}

#[test]
fn pod_level_requests_take_precedence_unless_a_container_is_named() {
    let mut p = pod("p", None, None);
    p.containers = vec![container("app", ContainerKind::App, Some(300))];
    p.pod_requests = Some(BTreeMap::from([("cpu".to_string(), 1000)]));
    assert_eq!(
        calculate_requests(std::slice::from_ref(&p), "", "cpu"),
        Ok(BTreeMap::from([("p".to_string(), 1000)]))
    );
    assert_eq!(
        calculate_requests(std::slice::from_ref(&p), "app", "cpu"),
        Ok(BTreeMap::from([("p".to_string(), 300)]))
    );
    assert_eq!(
        calculate_requests(&[p], "", "memory"),
        Err(ReplicaCalcError::MissingPodLevelRequest {
            resource: "memory".into(),
            pod: "p".into()
        })
    );
}

#[test]
fn resource_utilization_ratio_truncates_to_a_whole_percent() {
    let metrics = levels(&[333, 333]);
    let requests = BTreeMap::from([
        ("test-pod-0".to_string(), 1000),
        ("test-pod-1".to_string(), 1000),
    ]);
    assert_eq!(
        get_resource_utilization_ratio(&metrics, &requests, 50),
        Ok((33.0 / 50.0, 33, 333))
    );
}
