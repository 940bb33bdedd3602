//! The stateful `Autoscaler` over whole reconciles, after the cases of the Kubernetes
//! `horizontal_test.go` that run the controller end to end.

use std::collections::BTreeMap;
use std::time::Duration;

use warren_hpa::replica_calculator::{Container, ContainerKind, Pod, PodMetric, PodMetricsInfo};
use warren_hpa::{
    Autoscaler, ConditionStatus, ConditionType, MetricObservation as Obs, ScaleDecision,
    ScaleTarget, Timestamp,
};

fn autoscaler(spec: &str) -> Autoscaler {
    let yaml = format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: test-hpa\n  namespace: test-namespace\nspec:\n  scaleTargetRef:\n    apiVersion: v1\n    kind: ReplicationController\n    name: test-rc\n{spec}"
    );
    Autoscaler::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}"))
}

const CPU_AND_EXTERNAL: &str = "  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: TARGET\n  - type: External\n    external:\n      metric:\n        name: qps\n      target:\n        type: Value\n        value: 100m\n";

fn queue(value: &str) -> String {
    format!("  metrics:\n  - type: External\n    external:\n      metric:\n        name: queue\n      target:\n        type: AverageValue\n        averageValue: \"{value}\"\n")
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(10_000 + secs)
}

/// Running, ready pods started long ago, each requesting one CPU, and their CPU samples.
fn cpu_pods(levels: &[i64]) -> (ScaleTarget, PodMetricsInfo) {
    let pods: Vec<Pod> = (0..levels.len())
        .map(|i| {
            let mut pod = Pod::running(format!("test-pod-{i}"), true);
            pod.containers.push(Container {
                name: "container1".into(),
                kind: ContainerKind::App,
                requests: BTreeMap::from([("cpu".to_string(), 1000)]),
            });
            pod
        })
        .collect();
    let metrics = levels
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            (
                format!("test-pod-{i}"),
                PodMetric {
                    value: v,
                    timestamp: at(0),
                    window: Duration::from_secs(60),
                },
            )
        })
        .collect();
    let n = levels.len() as i32;
    (
        ScaleTarget {
            spec_replicas: n,
            status_replicas: n,
            pods,
        },
        metrics,
    )
}

fn reasons(decision: &ScaleDecision) -> Vec<(ConditionType, ConditionStatus, String)> {
    decision
        .conditions
        .iter()
        .map(|c| (c.type_, c.status, c.reason.clone()))
        .collect()
}

fn condition(decision: &ScaleDecision, type_: ConditionType) -> (ConditionStatus, String) {
    decision
        .condition(type_)
        .map(|c| (c.status, c.reason.clone()))
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

use ConditionStatus::{False, True};
use ConditionType::{AbleToScale, ScalingActive, ScalingLimited};

#[test]
fn scale_up_sets_the_ok_conditions() {
    let mut hpa = autoscaler(&format!("  maxReplicas: 10\n{}", queue("30")));
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(2, 2),
        &[Obs::external_units(90)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 3));
    assert_eq!(
        reasons(&d),
        vec![
            (AbleToScale, True, "SucceededRescale".to_string()),
            (ScalingActive, True, "ValidMetricFound".to_string()),
            (ScalingLimited, False, "DesiredWithinRange".to_string()),
        ]
    );
    assert_eq!(
        d.reason.as_deref(),
        Some("external metric queue(nil) above target")
    );
    let proposal = d.metrics[0]
        .as_ref()
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert_eq!(proposal.current.average_value, Some(45_000));
}

#[test]
fn zero_replicas_disable_scaling() {
    let mut hpa = autoscaler(&format!(
        "  minReplicas: 1\n  maxReplicas: 5\n{}",
        queue("30")
    ));
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(900)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (false, 0));
    assert_eq!(
        reasons(&d),
        vec![
            (AbleToScale, True, "SucceededGetScale".to_string()),
            (ScalingActive, False, "ScalingDisabled".to_string()),
        ]
    );
}

#[test]
fn too_many_replicas_scale_down_to_max_immediately() {
    let mut hpa = autoscaler(&format!(
        "  minReplicas: 2\n  maxReplicas: 5\n{}",
        queue("30")
    ));
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(6, 6),
        &[Obs::external_units(10_000)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 5));
    assert_eq!(
        d.reason.as_deref(),
        Some("Current number of replicas above Spec.MaxReplicas")
    );
    assert_eq!(
        condition(&d, AbleToScale),
        (True, "SucceededRescale".to_string())
    );
}

#[test]
fn too_few_replicas_scale_up_to_min() {
    let mut hpa = autoscaler(&format!(
        "  minReplicas: 3\n  maxReplicas: 5\n{}",
        queue("30")
    ));
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(1, 1),
        &[Obs::external_units(0)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 3));
    assert_eq!(
        d.reason.as_deref(),
        Some("Current number of replicas below Spec.MinReplicas")
    );
}

// TestScaleUpOneMetricEmpty: a failing metric does not stop a scale-up the others ask for.
#[test]
fn scale_up_one_metric_empty() {
    let mut hpa = autoscaler(&format!(
        "  minReplicas: 2\n  maxReplicas: 6\n{}",
        CPU_AND_EXTERNAL.replace("TARGET", "30")
    ));
    let (target, cpu) = cpu_pods(&[300, 400, 500]);
    let d = hpa.evaluate(
        at(0),
        &target,
        &[
            Obs::Resource(cpu),
            Obs::Unavailable("something went wrong".into()),
        ],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 4));
    assert_eq!(
        condition(&d, ScalingActive),
        (True, "ValidMetricFound".to_string())
    );
    assert!(d
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("invalid metrics (1 invalid out of 2)")));
    let current = d.metrics[0].as_ref().map(|p| p.current.average_utilization);
    assert_eq!(current, Ok(Some(40)));
}

// TestNoScaleDownOneMetricEmpty: a failing metric blocks a scale-down.
#[test]
fn no_scale_down_one_metric_empty() {
    let mut hpa = autoscaler(&format!(
        "  minReplicas: 2\n  maxReplicas: 6\n{}",
        CPU_AND_EXTERNAL.replace("TARGET", "50")
    ));
    let (target, cpu) = cpu_pods(&[100, 300, 500, 250, 250]);
    let d = hpa.evaluate(
        at(0),
        &target,
        &[
            Obs::Resource(cpu),
            Obs::Unavailable("something went wrong".into()),
        ],
    );
    assert_eq!((d.rescale, d.desired_replicas), (false, 5));
    assert_eq!(
        reasons(&d),
        vec![
            (AbleToScale, True, "SucceededGetScale".to_string()),
            (ScalingActive, False, "FailedGetExternalMetric".to_string()),
        ]
    );
    let message = d
        .condition(ScalingActive)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.starts_with("the HPA was unable to compute the replica count: unable to get external metric test-namespace/qps/nil: something went wrong"));
}

#[test]
fn unavailable_only_metric_stops_scaling() {
    let mut hpa = autoscaler(&format!("  maxReplicas: 10\n{}", queue("30")));
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(3, 3),
        &[Obs::Unavailable("broker down".into())],
    );
    assert_eq!((d.rescale, d.desired_replicas), (false, 3));
    assert_eq!(
        condition(&d, ScalingActive),
        (False, "FailedGetExternalMetric".to_string())
    );
    assert!(d.error.is_some());
}

#[test]
fn a_missing_observation_counts_as_unavailable() {
    let mut hpa = autoscaler(&format!("  maxReplicas: 10\n{}", queue("30")));
    let d = hpa.evaluate(at(0), &ScaleTarget::workers(3, 3), &[]);
    assert_eq!(
        condition(&d, ScalingActive),
        (False, "FailedGetExternalMetric".to_string())
    );
}

#[test]
fn an_observation_of_the_wrong_kind_is_an_invalid_metric() {
    let mut hpa = autoscaler(&format!("  maxReplicas: 10\n{}", queue("30")));
    let d = hpa.evaluate(at(0), &ScaleTarget::workers(3, 3), &[Obs::Object(5)]);
    assert_eq!(
        condition(&d, ScalingActive),
        (False, "FailedGetExternalMetric".to_string())
    );
}

#[test]
fn legacy_scale_up_is_limited_to_twice_the_current_count_or_four() {
    let mut hpa = autoscaler(&format!("  maxReplicas: 100\n{}", queue("1")));
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(3, 3),
        &[Obs::external_units(50)],
    );
    assert_eq!(d.desired_replicas, 6);
    assert_eq!(
        condition(&d, ScalingLimited),
        (True, "ScaleUpLimit".to_string())
    );
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(1, 1),
        &[Obs::external_units(50)],
    );
    assert_eq!(d.desired_replicas, 4);
}

#[test]
fn legacy_scale_down_waits_for_the_five_minute_window() {
    let mut hpa = autoscaler(&format!("  maxReplicas: 10\n{}", queue("10")));
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(5, 5),
        &[Obs::external_units(50)],
    );
    assert!(!d.rescale);
    assert_eq!(
        condition(&d, AbleToScale),
        (True, "ReadyForNewScale".to_string())
    );
    for t in [15, 150, 300] {
        let d = hpa.evaluate(
            at(t),
            &ScaleTarget::workers(5, 5),
            &[Obs::external_units(10)],
        );
        assert!(
            !d.rescale,
            "at {t}s the 5-replica recommendation is still in the window"
        );
        assert_eq!(
            condition(&d, AbleToScale),
            (True, "ScaleDownStabilized".to_string())
        );
    }
    let d = hpa.evaluate(
        at(301),
        &ScaleTarget::workers(5, 5),
        &[Obs::external_units(10)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 1));
    assert_eq!(d.reason.as_deref(), Some("All metrics below target"));
}

#[test]
fn behavior_pods_policy_limits_scale_up_per_period() {
    let spec = format!(
        "  maxReplicas: 100\n{}  behavior:\n    scaleUp:\n      policies:\n      - type: Pods\n        value: 2\n        periodSeconds: 60\n",
        queue("1")
    );
    let mut hpa = autoscaler(&spec);
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(1, 1),
        &[Obs::external_units(50)],
    );
    assert_eq!(d.desired_replicas, 3);
    assert_eq!(
        condition(&d, ScalingLimited),
        (True, "ScaleUpLimit".to_string())
    );
    let d = hpa.evaluate(
        at(30),
        &ScaleTarget::workers(3, 3),
        &[Obs::external_units(50)],
    );
    assert!(!d.rescale, "the 2 pods of this period are used up");
    let d = hpa.evaluate(
        at(61),
        &ScaleTarget::workers(3, 3),
        &[Obs::external_units(50)],
    );
    assert_eq!(d.desired_replicas, 5);
    assert_eq!(
        hpa.state().scale_up_events.len(),
        1,
        "the outdated event's slot is reused"
    );
}

#[test]
fn behavior_scale_up_stabilization_uses_the_lowest_recent_recommendation() {
    let spec = format!(
        "  maxReplicas: 100\n{}  behavior:\n    scaleUp:\n      stabilizationWindowSeconds: 60\n",
        queue("1")
    );
    let mut hpa = autoscaler(&spec);
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(2, 2),
        &[Obs::external_units(4)],
    );
    assert!(
        !d.rescale,
        "the initial recommendation of 2 is in the window"
    );
    assert_eq!(
        condition(&d, AbleToScale),
        (True, "ScaleUpStabilized".to_string())
    );
    let d = hpa.evaluate(
        at(61),
        &ScaleTarget::workers(2, 2),
        &[Obs::external_units(4)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 4));
}

#[test]
fn disabled_scale_down_never_scales_down() {
    let spec = format!(
        "  maxReplicas: 100\n{}  behavior:\n    scaleDown:\n      selectPolicy: Disabled\n",
        queue("1")
    );
    let mut hpa = autoscaler(&spec);
    for t in [0, 400, 800] {
        let d = hpa.evaluate(
            at(t),
            &ScaleTarget::workers(8, 8),
            &[Obs::external_units(1)],
        );
        assert!(!d.rescale);
    }
    let d = hpa.evaluate(
        at(1200),
        &ScaleTarget::workers(8, 8),
        &[Obs::external_units(1)],
    );
    assert_eq!(
        condition(&d, ScalingLimited),
        (True, "ScaleDownLimit".to_string())
    );
}

#[test]
fn per_direction_tolerance_from_the_manifest() {
    let spec = format!(
        "  maxReplicas: 100\n{}  behavior:\n    scaleUp:\n      tolerance: \"0\"\n",
        queue("10")
    );
    let mut hpa = autoscaler(&spec);
    // 105 for 10 workers of 10: ratio 1.05, inside the default 10 % but not the 0 % scale-up one.
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(10, 10),
        &[Obs::external_units(105)],
    );
    assert_eq!(d.desired_replicas, 11);

    let mut default_tolerance = autoscaler(&format!("  maxReplicas: 100\n{}", queue("10")));
    let d = default_tolerance.evaluate(
        at(0),
        &ScaleTarget::workers(10, 10),
        &[Obs::external_units(105)],
    );
    assert!(!d.rescale);
}

#[test]
fn scale_to_zero_and_back_with_an_external_value_metric() {
    let spec = "  minReplicas: 0\n  maxReplicas: 10\n  metrics:\n  - type: External\n    external:\n      metric:\n        name: queue\n      target:\n        type: Value\n        value: \"1\"\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 0\n";
    let mut hpa = autoscaler(spec);
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(2, 2),
        &[Obs::external_units(0)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 0));
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(0)],
    );
    assert!(!d.rescale);
    assert_eq!(
        condition(&d, ScalingActive),
        (True, "ValidMetricFound".to_string())
    );
    let d = hpa.evaluate(
        at(30),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(3)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 3));
}

#[test]
fn object_value_metric_scales_the_ready_pods() {
    let spec = "  maxReplicas: 10\n  metrics:\n  - type: Object\n    object:\n      describedObject:\n        apiVersion: v1\n        kind: Service\n        name: web\n      metric:\n        name: qps\n      target:\n        type: Value\n        value: \"10\"\n";
    let mut hpa = autoscaler(spec);
    let d = hpa.evaluate(at(0), &ScaleTarget::workers(3, 2), &[Obs::Object(30_000)]);
    assert_eq!(d.desired_replicas, 6);
    assert_eq!(d.reason.as_deref(), Some("Service metric qps above target"));
}

#[test]
fn pods_metric_averages_the_samples() {
    let spec = "  maxReplicas: 10\n  metrics:\n  - type: Pods\n    pods:\n      metric:\n        name: inflight\n      target:\n        type: AverageValue\n        averageValue: \"5\"\n";
    let mut hpa = autoscaler(spec);
    let target = ScaleTarget::workers(2, 2);
    let samples = target
        .pods
        .iter()
        .map(|p| (p.name.clone(), PodMetric::value(10_000)))
        .collect();
    let d = hpa.evaluate(at(0), &target, &[Obs::Pods(samples)]);
    assert_eq!(d.desired_replicas, 4);
    assert_eq!(
        d.metrics[0].as_ref().map(|p| p.metric_name.clone()),
        Ok("pods metric inflight".to_string())
    );
}

#[test]
fn the_highest_valid_proposal_wins() {
    let spec = format!("  maxReplicas: 20\n{}  - type: External\n    external:\n      metric:\n        name: other\n      target:\n        type: AverageValue\n        averageValue: \"1\"\n", queue("10"));
    let mut hpa = autoscaler(&spec);
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(3, 3),
        &[Obs::external_units(40), Obs::external_units(6)],
    );
    assert_eq!(d.desired_replicas, 6);
    let proposals: Vec<i32> = d
        .metrics
        .iter()
        .filter_map(|m| m.as_ref().ok())
        .map(|p| p.replicas)
        .collect();
    assert_eq!(proposals, vec![4, 6]);
}

#[test]
fn transition_time_moves_only_when_a_status_changes() {
    let mut hpa = autoscaler(&format!("  maxReplicas: 10\n{}", queue("10")));
    hpa.evaluate(
        at(0),
        &ScaleTarget::workers(2, 2),
        &[Obs::external_units(20)],
    );
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(2, 2),
        &[Obs::external_units(20)],
    );
    let active = d.condition(ScalingActive).map(|c| c.last_transition_time);
    assert_eq!(active, Some(at(0)));
    let d = hpa.evaluate(
        at(30),
        &ScaleTarget::workers(2, 2),
        &[Obs::Unavailable("down".into())],
    );
    assert_eq!(
        d.condition(ScalingActive).map(|c| c.last_transition_time),
        Some(at(30))
    );
}
