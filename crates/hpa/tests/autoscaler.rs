//! The stateful `Autoscaler` over whole reconciles, after the cases of the Kubernetes
//! `horizontal_test.go` that run the controller end to end.

use std::collections::BTreeMap;
use std::time::Duration;

use warren_hpa::replica_calculator::{Container, ContainerKind, Pod, PodMetric, PodMetricsInfo};
use warren_hpa::{
    Autoscaler, AutoscalerState, ConditionStatus, ConditionType, ControllerConfig,
    MetricObservation as Obs, ScaleDecision, ScaleTarget, Timestamp,
};

fn manifest(spec: &str) -> String {
    format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: test-hpa\n  namespace: test-namespace\nspec:\n  scaleTargetRef:\n    apiVersion: v1\n    kind: ReplicationController\n    name: test-rc\n{spec}"
    )
}

fn autoscaler(spec: &str) -> Autoscaler {
    Autoscaler::from_yaml(&manifest(spec)).unwrap_or_else(|e| panic!("{e}"))
}

fn autoscaler_with(spec: &str, config: ControllerConfig) -> Autoscaler {
    Autoscaler::from_yaml_with(&manifest(spec), config).unwrap_or_else(|e| panic!("{e}"))
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
use ConditionType::{AbleToScale, ScaledToZero, ScalingActive, ScalingLimited};

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
            (ScaledToZero, False, "NotScaledToZero".to_string()),
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

// HPAScaleToZero as Kubernetes implements it since the ScaledToZero condition (KEP-2021).

const QUEUE_TO_ZERO: &str = "  minReplicas: 0\n  maxReplicas: 10\n  metrics:\n  - type: External\n    external:\n      metric:\n        name: queue\n      target:\n        type: AverageValue\n        averageValue: \"5\"\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 0\n";

fn scaled_to_zero_state(at_secs: u64) -> AutoscalerState {
    AutoscalerState {
        conditions: vec![warren_hpa::Condition::new(
            ScaledToZero,
            True,
            "ScaledToZero",
            "the HPA controller scaled the workload to zero",
            at(at_secs),
        )],
        ..AutoscalerState::default()
    }
}

/// An object as the API server stores it (defaulted, not validated again), resumed from
/// `state` under `config`: the way to hold `minReplicas: 0` with HPAScaleToZero off, as a
/// cluster does after the gate is turned off.
fn stored(spec: &str, config: ControllerConfig, state: AutoscalerState) -> Autoscaler {
    let mut object = warren_hpa::read_manifest(&manifest(spec)).expect("parses");
    warren_hpa::defaults::set_defaults_horizontal_pod_autoscaler(&mut object);
    Autoscaler::from_state(object, config, state)
}

fn gate(on: bool) -> ControllerConfig {
    if on {
        ControllerConfig::kubernetes_1_37()
    } else {
        ControllerConfig::kubernetes_1_35()
    }
}

/// The settings Kubernetes' controller tests run with: the development line, HPAScaleToZero
/// as the case sets it, and `scaleUpLimitFactor = 8`.
fn go_test_config(scale_to_zero: bool) -> ControllerConfig {
    let mut config = ControllerConfig::development();
    config.feature_gates.hpa_scale_to_zero = scale_to_zero;
    config.scale_up_limit.factor = 8.0;
    config
}

/// The Go tests' `recommendations: []timestampedRecommendation{}`: a history that exists but
/// holds nothing recent, so no initial recommendation holds a scale-down back. (A stale entry
/// stands for Go's empty, non-nil slice.)
fn no_recent_recommendations() -> AutoscalerState {
    AutoscalerState {
        recommendations: vec![warren_hpa::normalization::TimestampedRecommendation {
            recommendation: 0,
            timestamp: Timestamp::from_secs(0),
        }],
        ..AutoscalerState::default()
    }
}

/// The Object metric of the Go tests: `qps` of Deployment `some-deployment`, Value target.
fn object_qps(min: i32, max: i32, target: &str) -> String {
    format!("  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n  - type: Object\n    object:\n      describedObject:\n        apiVersion: apps/v1\n        kind: Deployment\n        name: some-deployment\n      metric:\n        name: qps\n      target:\n        type: Value\n        value: \"{target}\"\n")
}

/// The External metric of the Go tests: `qps` with an empty selector, Value target.
fn external_qps(min: i32, max: i32, target: &str) -> String {
    format!("  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n  - type: External\n    external:\n      metric:\n        name: qps\n        selector: {{}}\n      target:\n        type: Value\n        value: \"{target}\"\n")
}

fn cpu_utilization(min: i32, max: i32, target: i32) -> String {
    format!("  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: {target}\n")
}

/// Running, ready pods started long ago with the given CPU requests (millicores), and their
/// samples.
fn cpu_pods_requesting(levels: &[i64], requests: &[i64]) -> (ScaleTarget, PodMetricsInfo) {
    let (mut target, metrics) = cpu_pods(levels);
    for (pod, &request) in target.pods.iter_mut().zip(requests) {
        pod.containers[0]
            .requests
            .insert("cpu".to_string(), request);
    }
    (target, metrics)
}

fn expect_conditions(d: &ScaleDecision, expected: &[(ConditionType, ConditionStatus, &str)]) {
    let expected: Vec<_> = expected
        .iter()
        .map(|(t, s, r)| (*t, *s, r.to_string()))
        .collect();
    assert_eq!(reasons(d), expected);
}

const GOT_SCALE: (ConditionType, ConditionStatus, &str) = (AbleToScale, True, "SucceededGetScale");
const DISABLED: (ConditionType, ConditionStatus, &str) = (ScalingActive, False, "ScalingDisabled");
const RESCALED: (ConditionType, ConditionStatus, &str) = (AbleToScale, True, "SucceededRescale");
const VALID: (ConditionType, ConditionStatus, &str) = (ScalingActive, True, "ValidMetricFound");
const WITHIN_RANGE: (ConditionType, ConditionStatus, &str) =
    (ScalingLimited, False, "DesiredWithinRange");
const NOT_SCALED_TO_ZERO: (ConditionType, ConditionStatus, &str) =
    (ScaledToZero, False, "NotScaledToZero");
const SCALED_TO_ZERO: (ConditionType, ConditionStatus, &str) = (ScaledToZero, True, "ScaledToZero");

// TestScaleUpCMObject "scale up from zero with feature gate enabled" / "... disabled".
#[test]
fn scale_up_from_zero() {
    let spec = object_qps(0, 6, "15");
    let mut on = stored(&spec, go_test_config(true), scaled_to_zero_state(0));
    let d = on.evaluate(at(0), &ScaleTarget::workers(0, 0), &[Obs::Object(20_000)]);
    assert_eq!((d.rescale, d.desired_replicas), (true, 2));
    expect_conditions(&d, &[NOT_SCALED_TO_ZERO, RESCALED, VALID, WITHIN_RANGE]);

    let mut off = stored(&spec, go_test_config(false), scaled_to_zero_state(0));
    let d = off.evaluate(at(0), &ScaleTarget::workers(0, 0), &[Obs::Object(20_000)]);
    assert_eq!((d.rescale, d.desired_replicas), (false, 0));
    expect_conditions(&d, &[GOT_SCALE, DISABLED]);
}

// TestScaleUpCMObject "scale up from zero ignores tolerance with feature gate enabled" /
// "... disabled": a usage exactly at the target gives ceil(1.0) = 1 from zero.
#[test]
fn scale_up_from_zero_ignores_tolerance() {
    let spec = object_qps(0, 6, "1");
    let mut on = stored(&spec, go_test_config(true), scaled_to_zero_state(0));
    let d = on.evaluate(at(0), &ScaleTarget::workers(0, 0), &[Obs::Object(1_000)]);
    assert_eq!((d.rescale, d.desired_replicas), (true, 1));
    expect_conditions(&d, &[NOT_SCALED_TO_ZERO, RESCALED, VALID, WITHIN_RANGE]);

    let mut off = stored(&spec, go_test_config(false), scaled_to_zero_state(0));
    let d = off.evaluate(at(0), &ScaleTarget::workers(0, 0), &[Obs::Object(1_000)]);
    assert_eq!((d.rescale, d.desired_replicas), (false, 0));
    expect_conditions(&d, &[GOT_SCALE, DISABLED]);
}

// TestScaleDownCM "scale down to zero object metric with feature gate enabled" / "... disabled"
// and the same for an External metric: 5 replicas, a metric at 0, minReplicas 0.
#[test]
fn scale_down_to_zero() {
    let cases = [
        (object_qps(0, 6, "20"), Obs::Object(0)),
        (external_qps(0, 6, "14400m"), Obs::External(vec![0])),
    ];
    for (spec, observation) in cases {
        for on in [true, false] {
            let mut hpa = stored(&spec, go_test_config(on), no_recent_recommendations());
            let d = hpa.evaluate(
                at(0),
                &ScaleTarget::workers(5, 5),
                std::slice::from_ref(&observation),
            );
            assert_eq!((d.rescale, d.desired_replicas), (true, 0), "FG {on}");
            if on {
                expect_conditions(&d, &[RESCALED, VALID, WITHIN_RANGE, SCALED_TO_ZERO]);
            } else {
                expect_conditions(&d, &[RESCALED, VALID, WITHIN_RANGE]);
            }
        }
    }
}

// TestScaleUpFromZeroWithoutCondition (TestScaleToZeroBehavior "from zero without condition,
// FG on" / "FG off"): without ScaledToZero, a target at zero stays there.
#[test]
fn from_zero_without_condition() {
    for on in [true, false] {
        let mut hpa = stored(
            &object_qps(0, 6, "15"),
            go_test_config(on),
            AutoscalerState::default(),
        );
        let d = hpa.evaluate(at(0), &ScaleTarget::workers(0, 0), &[Obs::Object(20_000)]);
        assert_eq!((d.rescale, d.desired_replicas), (false, 0), "FG {on}");
        expect_conditions(&d, &[GOT_SCALE, DISABLED]);
        assert!(d.metrics.is_empty(), "FG {on}: no metric is read");
    }
}

// TestScaleUpFromZeroWhenMinReplicasIncreased (TestScaleToZeroBehavior "minReplicas increased
// with ScaledToZero condition, FG on" / "FG off"): the metric asks for 1, minReplicas is 2.
#[test]
fn min_replicas_increased_with_scaled_to_zero_condition() {
    let spec = object_qps(2, 6, "15000m");
    let mut on = stored(&spec, go_test_config(true), scaled_to_zero_state(0));
    let d = on.evaluate(at(0), &ScaleTarget::workers(0, 0), &[Obs::Object(10_000)]);
    assert_eq!((d.rescale, d.desired_replicas), (true, 2));
    expect_conditions(
        &d,
        &[
            NOT_SCALED_TO_ZERO,
            RESCALED,
            VALID,
            (ScalingLimited, True, "TooFewReplicas"),
        ],
    );

    let mut off = stored(&spec, go_test_config(false), scaled_to_zero_state(0));
    let d = off.evaluate(at(0), &ScaleTarget::workers(0, 0), &[Obs::Object(10_000)]);
    assert_eq!((d.rescale, d.desired_replicas), (false, 0));
    expect_conditions(&d, &[GOT_SCALE, DISABLED]);
}

// With `behavior`, the rate limits leave an idle target at 0 (no change is asked for), and
// only the raise to minReplicas wakes it; the rescale reason then says so.
#[test]
fn a_target_woken_only_by_min_replicas_says_so() {
    let spec = format!("{}  behavior: {{}}\n", object_qps(2, 6, "15000m"));
    let mut hpa = stored(&spec, go_test_config(true), scaled_to_zero_state(0));
    let d = hpa.evaluate(at(0), &ScaleTarget::workers(0, 0), &[Obs::Object(0)]);
    assert_eq!((d.rescale, d.desired_replicas), (true, 2));
    assert_eq!(
        d.reason.as_deref(),
        Some("Current number of replicas below Spec.MinReplicas")
    );
}

// TestScaledToZeroConditionHandledOnNormalRescale (TestScaleToZeroBehavior "stale ScaledToZero
// condition cleared on normal rescale, FG on" / "... removed on normal rescale, FG off").
#[test]
fn scaled_to_zero_condition_handled_on_normal_rescale() {
    for on in [true, false] {
        let (target, samples) = cpu_pods(&[300, 500, 700]);
        let mut hpa = stored(
            &cpu_utilization(1, 6, 30),
            go_test_config(on),
            scaled_to_zero_state(0),
        );
        let d = hpa.evaluate(at(0), &target, &[Obs::Resource(samples)]);
        assert_eq!((d.rescale, d.desired_replicas), (true, 5), "FG {on}");
        if on {
            expect_conditions(&d, &[NOT_SCALED_TO_ZERO, RESCALED, VALID, WITHIN_RANGE]);
        } else {
            expect_conditions(&d, &[RESCALED, VALID, WITHIN_RANGE]);
        }
    }
}

// TestManualScaleToZeroDisablesHPA (TestScaleToZeroBehavior "manual scale to zero disables
// HPA, FG on" / "FG off"): minReplicas 1, the target set to zero by hand.
#[test]
fn manual_scale_to_zero_disables_hpa() {
    for on in [true, false] {
        let mut hpa = stored(
            &cpu_utilization(1, 6, 50),
            go_test_config(on),
            AutoscalerState::default(),
        );
        let d = hpa.evaluate(
            at(0),
            &ScaleTarget::workers(0, 0),
            &[Obs::Resource(PodMetricsInfo::new())],
        );
        assert_eq!((d.rescale, d.desired_replicas), (false, 0), "FG {on}");
        expect_conditions(&d, &[GOT_SCALE, DISABLED]);
    }
}

// TestScaleUpFromZeroOneMetricInvalid (TestScaleWithOneInvalidMetric "from zero with invalid
// metric, FG on" / "FG off"): CPU and an unknown metric type cannot wake a target at zero.
#[test]
fn from_zero_with_invalid_metric() {
    let spec = format!("{}  - type: CheddarCheese\n", cpu_utilization(0, 6, 30));
    for on in [true, false] {
        let (_, samples) = cpu_pods(&[300, 400, 500]);
        let mut hpa = stored(&spec, go_test_config(on), no_recent_recommendations());
        let d = hpa.evaluate(
            at(0),
            &ScaleTarget::workers(0, 0),
            &[
                Obs::Resource(samples),
                Obs::Unavailable("no such type".into()),
            ],
        );
        assert_eq!((d.rescale, d.desired_replicas), (false, 0), "FG {on}");
        expect_conditions(&d, &[GOT_SCALE, DISABLED]);
    }
}

// A target the controller took to zero stays there while its metric is idle, and keeps the
// condition that lets it wake.
#[test]
fn from_zero_with_condition_and_an_idle_metric_stays_at_zero() {
    let mut hpa = stored(
        &object_qps(0, 6, "15"),
        go_test_config(true),
        scaled_to_zero_state(0),
    );
    let d = hpa.evaluate(at(0), &ScaleTarget::workers(0, 0), &[Obs::Object(0)]);
    assert_eq!((d.rescale, d.desired_replicas), (false, 0));
    expect_conditions(
        &d,
        &[
            SCALED_TO_ZERO,
            (AbleToScale, True, "ReadyForNewScale"),
            VALID,
            WITHIN_RANGE,
        ],
    );
}

// With the gate off and no rescale, the controller leaves a ScaledToZero condition where it
// is: it removes it only when it disables scaling at zero or after a rescale.
#[test]
fn gate_off_keeps_the_condition_when_nothing_is_rescaled() {
    let (target, samples) = cpu_pods(&[300, 300, 300]);
    let mut hpa = stored(
        &cpu_utilization(1, 6, 30),
        go_test_config(false),
        scaled_to_zero_state(0),
    );
    let d = hpa.evaluate(at(0), &target, &[Obs::Resource(samples)]);
    assert!(!d.rescale);
    assert_eq!(
        condition(&d, ScaledToZero),
        (True, "ScaledToZero".to_string())
    );
}

#[test]
fn gate_off_refuses_min_replicas_zero_as_the_api_server_does() {
    let err = Autoscaler::from_yaml_with(&manifest(QUEUE_TO_ZERO), gate(false))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("invalid HorizontalPodAutoscaler: spec.minReplicas: Invalid value: 0: must be greater than or equal to 1")
    );
}

// TestConfigurableTolerance, its four cases: 3 replicas, CPU target 100 %. (Its expected
// conditions carry no ScaledToZero: the test ran with HPAScaleToZero at its alpha default.)
#[test]
fn configurable_tolerance() {
    let case = |gate_on: bool, behavior: &str, levels: &[i64], requests: &[i64]| {
        let mut config = go_test_config(false);
        config.feature_gates.hpa_configurable_tolerance = gate_on;
        let spec = format!("{}{behavior}", cpu_utilization(1, 5, 100));
        let (target, samples) = cpu_pods_requesting(levels, requests);
        autoscaler_with(&spec, config).evaluate(at(0), &target, &[Obs::Resource(samples)])
    };
    let up_1_percent = "  behavior:\n    scaleUp:\n      tolerance: \"0.01\"\n";
    let down_90_percent = "  behavior:\n    scaleDown:\n      tolerance: \"0.9\"\n";
    let near = [1010, 1030, 1020];
    let uneven = [900, 1000, 1100];

    // "Scaling up because of a 1% configurable tolerance"
    let d = case(true, up_1_percent, &near, &uneven);
    assert_eq!(d.desired_replicas, 4);
    expect_conditions(&d, &[RESCALED, VALID, WITHIN_RANGE]);
    // "No scale-down because of a 90% configurable tolerance"
    let d = case(true, down_90_percent, &[300, 300, 300], &[1000, 1000, 1000]);
    assert_eq!((d.rescale, d.desired_replicas), (false, 3));
    expect_conditions(
        &d,
        &[(AbleToScale, True, "ReadyForNewScale"), VALID, WITHIN_RANGE],
    );
    // "No scaling because of the large default tolerance"
    let d = case(true, "", &near, &uneven);
    assert_eq!((d.rescale, d.desired_replicas), (false, 3));
    // "No scaling because the configurable tolerance is ignored as the feature gate is disabled"
    let d = case(false, up_1_percent, &near, &uneven);
    assert_eq!((d.rescale, d.desired_replicas), (false, 3));
    expect_conditions(
        &d,
        &[(AbleToScale, True, "ReadyForNewScale"), VALID, WITHIN_RANGE],
    );
}

// The legacy scale-up limit is the controller's scaleUpLimitFactor and scaleUpLimitMinimum;
// Kubernetes' own tests raise the factor to 8.
#[test]
fn legacy_scale_up_limit_takes_its_factor_and_minimum() {
    let spec = format!("  maxReplicas: 100\n{}", queue("1"));
    let target = ScaleTarget::workers(3, 3);
    let default = autoscaler(&spec).evaluate(at(0), &target, &[Obs::external_units(90)]);
    assert_eq!(default.desired_replicas, 6);
    assert_eq!(
        condition(&default, ScalingLimited),
        (True, "ScaleUpLimit".to_string())
    );
    let mut config = ControllerConfig::default();
    config.scale_up_limit.factor = 8.0;
    let eight = autoscaler_with(&spec, config).evaluate(at(0), &target, &[Obs::external_units(90)]);
    assert_eq!(eight.desired_replicas, 24);
    config.scale_up_limit.minimum = 40.0;
    let minimum =
        autoscaler_with(&spec, config).evaluate(at(0), &target, &[Obs::external_units(90)]);
    assert_eq!(minimum.desired_replicas, 40);
}

#[test]
fn release_lines_carry_their_gates() {
    let gates = |release: &str| {
        let c = ControllerConfig::for_release(release).expect("a known release");
        (
            c.feature_gates.hpa_scale_to_zero,
            c.feature_gates.hpa_configurable_tolerance,
            c.ignore_succeeded_pods,
        )
    };
    assert_eq!(gates("1.33"), (false, false, false));
    assert_eq!(gates("1.35"), (false, true, false));
    assert_eq!(gates("1.37"), (true, true, false));
    assert_eq!(gates("development"), (true, true, true));
    assert_eq!(
        ControllerConfig::default(),
        ControllerConfig::kubernetes_1_37()
    );
    assert!(ControllerConfig::for_release("1.32").is_none());
}

// State in and out: an autoscaler resumed from its serialized state remembers when the
// stabilization window opened; a fresh one would open a new one at its first evaluation.
#[test]
fn state_resumed_from_json_keeps_the_stabilization_window() {
    let spec = format!("  maxReplicas: 10\n{}", queue("30"));
    let mut first = autoscaler(&spec);
    let d = first.evaluate(
        at(0),
        &ScaleTarget::workers(1, 1),
        &[Obs::external_units(120)],
    );
    assert_eq!(d.desired_replicas, 4);
    let json = serde_json::to_string(first.state()).expect("serializes");
    let state: AutoscalerState = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(&state, first.state());

    let mut resumed = Autoscaler::from_state(first.hpa().clone(), *first.config(), state);
    let d = resumed.evaluate(
        at(60),
        &ScaleTarget::workers(4, 4),
        &[Obs::external_units(30)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (false, 4));
    assert_eq!(
        condition(&d, AbleToScale),
        (True, "ScaleDownStabilized".to_string())
    );
    assert_eq!(resumed.state().last_scale_time, Some(at(0)));

    let d = resumed.evaluate(
        at(301),
        &ScaleTarget::workers(4, 4),
        &[Obs::external_units(30)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 1));

    let mut fresh = autoscaler(&spec);
    fresh.evaluate(
        at(60),
        &ScaleTarget::workers(4, 4),
        &[Obs::external_units(30)],
    );
    let d = fresh.evaluate(
        at(301),
        &ScaleTarget::workers(4, 4),
        &[Obs::external_units(30)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (false, 4));
}

#[test]
fn state_json_names_its_fields_and_refuses_unknown_ones() {
    let mut hpa = autoscaler(QUEUE_TO_ZERO);
    hpa.evaluate(
        at(0),
        &ScaleTarget::workers(1, 1),
        &[Obs::external_units(0)],
    );
    let json = serde_json::to_value(hpa.state()).expect("serializes");
    assert_eq!(json["conditions"][3]["type"], "ScaledToZero");
    assert_eq!(json["conditions"][3]["status"], "True");
    assert_eq!(json["desiredReplicas"], 0);
    let mut bad = json.clone();
    bad["desiredReplica"] = 1.into();
    assert!(serde_json::from_value::<AutoscalerState>(bad).is_err());
}

// The controller reconciles whatever is stored: minReplicas above maxReplicas would be refused
// by validation, but a stored object with it is still evaluated.
#[test]
fn an_object_validation_would_refuse_is_still_evaluated() {
    let spec = format!("  minReplicas: 5\n  maxReplicas: 3\n{}", queue("10"));
    assert!(Autoscaler::from_yaml(&manifest(&spec)).is_err());
    let object = warren_hpa::read_manifest(&manifest(&spec)).expect("parses");
    let mut hpa = Autoscaler::from_state(
        object,
        ControllerConfig::default(),
        AutoscalerState::default(),
    );
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(4, 4),
        &[Obs::external_units(40)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 3));
    assert_eq!(
        d.reason.as_deref(),
        Some("Current number of replicas above Spec.MaxReplicas")
    );
}

// What `warren autoscale` does with `minReplicas: 0`: the idle pool goes to zero, the first
// message wakes one worker, and a restart that keeps the state keeps that ability.
#[test]
fn a_pool_scales_to_zero_and_wakes_on_the_first_message() {
    let mut hpa = autoscaler(QUEUE_TO_ZERO);
    let d = hpa.evaluate(
        at(0),
        &ScaleTarget::workers(1, 1),
        &[Obs::external_units(0)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 0));
    let saved = serde_json::to_string(hpa.state()).expect("serializes");

    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(0)],
    );
    assert!(!d.rescale);
    let d = hpa.evaluate(
        at(30),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(1)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 1));

    let state = serde_json::from_str(&saved).expect("deserializes");
    let mut resumed = Autoscaler::from_state(hpa.hpa().clone(), *hpa.config(), state);
    let d = resumed.evaluate(
        at(30),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(1)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 1));
    let mut forgetful = autoscaler(QUEUE_TO_ZERO);
    let d = forgetful.evaluate(
        at(30),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(1)],
    );
    assert_eq!(
        (d.rescale, condition(&d, ScalingActive).1.as_str()),
        (false, "ScalingDisabled")
    );
}

// The controller reads the status from the object on every reconcile: an object stored with
// ScaledToZero True at zero replicas is woken by its metric.
#[test]
fn an_object_read_with_its_status_resumes_its_conditions() {
    let yaml = format!(
        "{}status:\n  desiredReplicas: 0\n  lastScaleTime: \"2026-12-01T10:00:00Z\"\n  conditions:\n  - type: ScaledToZero\n    status: \"True\"\n    reason: ScaledToZero\n    message: the HPA controller scaled the workload to zero\n    lastTransitionTime: \"2026-12-01T10:00:00Z\"\n  - type: SomethingNewer\n    status: \"True\"\n",
        manifest(QUEUE_TO_ZERO)
    );
    let object = warren_hpa::read_manifest(&yaml).expect("parses");
    let mut hpa = Autoscaler::from_object(object, ControllerConfig::default());
    let scaled_at = Timestamp::from_secs(1_796_119_200);
    assert_eq!(hpa.state().last_scale_time, Some(scaled_at));
    assert!(hpa.state().scaled_to_zero());
    assert_eq!(hpa.state().conditions.len(), 1);
    let d = hpa.evaluate(
        scaled_at + Duration::from_secs(60),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(7)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 2));
}

// The settings are plain data too, so that a driver can read a release's flags from a file,
// strictly.
#[test]
fn controller_config_reads_and_writes_as_named_fields() {
    let json = serde_json::to_value(ControllerConfig::kubernetes_1_35()).expect("serializes");
    assert_eq!(json["featureGates"]["HPAScaleToZero"], false);
    assert_eq!(json["featureGates"]["HPAConfigurableTolerance"], true);
    assert_eq!(json["downscaleStabilizationWindow"], 300.0);
    assert_eq!(json["scaleUpLimit"]["factor"], 2.0);
    let back: ControllerConfig = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, ControllerConfig::kubernetes_1_35());

    let text = serde_json::to_string_pretty(&ControllerConfig::default())
        .expect("serializes")
        .replace("\"tolerance\"", "\"tolerence\"");
    let err = warren_strict::from_str::<ControllerConfig>(&text)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("tolerence: unknown field (did you mean tolerance?)")
    );
}
