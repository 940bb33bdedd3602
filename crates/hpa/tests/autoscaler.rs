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

fn not_scaled_to_zero_state(at_secs: u64) -> AutoscalerState {
    let mut state = scaled_to_zero_state(at_secs);
    state.conditions[0].status = False;
    state.conditions[0].reason = "NotScaledToZero".into();
    state
}

// TestScaleToZeroBehavior "from zero without condition, FG on" / "FG off": a target at zero
// that the controller did not take there stays there, whatever the metric says.
#[test]
fn from_zero_without_condition() {
    for on in [true, false] {
        let mut hpa = stored(QUEUE_TO_ZERO, gate(on), AutoscalerState::default());
        let d = hpa.evaluate(
            at(0),
            &ScaleTarget::workers(0, 0),
            &[Obs::external_units(50)],
        );
        assert_eq!((d.rescale, d.desired_replicas), (false, 0), "FG {on}");
        assert_eq!(
            condition(&d, ScalingActive),
            (False, "ScalingDisabled".to_string()),
            "FG {on}"
        );
        assert!(d.condition(ScaledToZero).is_none(), "FG {on}");
        assert!(d.metrics.is_empty(), "FG {on}: no metric is read");
    }
}

// TestScaleToZeroBehavior "manual scale to zero disables HPA, FG on" / "FG off": the status
// says the controller did not take the target to zero (someone else did).
#[test]
fn manual_scale_to_zero_disables_hpa() {
    for on in [true, false] {
        let mut hpa = stored(QUEUE_TO_ZERO, gate(on), not_scaled_to_zero_state(0));
        let d = hpa.evaluate(
            at(15),
            &ScaleTarget::workers(0, 0),
            &[Obs::external_units(50)],
        );
        assert_eq!((d.rescale, d.desired_replicas), (false, 0), "FG {on}");
        assert_eq!(
            condition(&d, ScalingActive),
            (False, "ScalingDisabled".to_string()),
            "FG {on}"
        );
        let kept = d
            .condition(ScaledToZero)
            .map(|c| (c.status, c.reason.clone()));
        let expected = on.then(|| (False, "NotScaledToZero".to_string()));
        assert_eq!(
            kept, expected,
            "FG {on}: kept with the gate, removed without"
        );
    }
}

// TestScaleDownCM "scale down to zero external metric with feature gate enabled" / "disabled":
// the controller records that it took the target to zero only with the gate on.
#[test]
fn scale_down_to_zero_external_metric() {
    for on in [true, false] {
        let mut hpa = stored(QUEUE_TO_ZERO, gate(on), AutoscalerState::default());
        let d = hpa.evaluate(
            at(0),
            &ScaleTarget::workers(2, 2),
            &[Obs::external_units(0)],
        );
        assert_eq!((d.rescale, d.desired_replicas), (true, 0), "FG {on}");
        let c = d
            .condition(ScaledToZero)
            .map(|c| (c.status, c.reason.clone(), c.message.clone()));
        let expected = on.then(|| {
            (
                True,
                "ScaledToZero".to_string(),
                "the HPA controller scaled the workload to zero".to_string(),
            )
        });
        assert_eq!(c, expected, "FG {on}");
    }
}

// TestScaleDownCM "scale down to zero object metric with feature gate enabled".
#[test]
fn scale_down_to_zero_object_metric() {
    let spec = "  minReplicas: 0\n  maxReplicas: 10\n  metrics:\n  - type: Object\n    object:\n      describedObject:\n        apiVersion: v1\n        kind: Service\n        name: queue\n      metric:\n        name: depth\n      target:\n        type: Value\n        value: \"10\"\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 0\n";
    let mut hpa = autoscaler(spec);
    let d = hpa.evaluate(at(0), &ScaleTarget::workers(3, 3), &[Obs::Object(0)]);
    assert_eq!((d.rescale, d.desired_replicas), (true, 0));
    assert_eq!(
        condition(&d, ScaledToZero),
        (True, "ScaledToZero".to_string())
    );
}

// TestScaleUpCMObject "scale up from zero with feature gate enabled" / "disabled": a target the
// controller took to zero is woken by its metric only with the gate on. Per-pod usage at 0
// status replicas is 0; the count is the total over the per-pod target.
#[test]
fn scale_up_from_zero() {
    let mut hpa = stored(QUEUE_TO_ZERO, gate(true), scaled_to_zero_state(0));
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(12)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 3));
    assert_eq!(
        d.metrics[0].as_ref().map(|p| p.current.average_value),
        Ok(Some(0))
    );
    assert_eq!(
        condition(&d, ScaledToZero),
        (False, "NotScaledToZero".to_string())
    );

    let mut hpa = stored(QUEUE_TO_ZERO, gate(false), scaled_to_zero_state(0));
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(12)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (false, 0));
    assert_eq!(
        condition(&d, ScalingActive),
        (False, "ScalingDisabled".to_string())
    );
    assert!(d.condition(ScaledToZero).is_none());
}

// TestScaleUpCMObject "scale up from zero ignores tolerance with feature gate enabled": at zero
// the count is ceil(usage / target), even within the tolerance of the target.
#[test]
fn scale_up_from_zero_ignores_tolerance() {
    let spec = "  minReplicas: 0\n  maxReplicas: 10\n  metrics:\n  - type: Object\n    object:\n      describedObject:\n        apiVersion: v1\n        kind: Service\n        name: queue\n      metric:\n        name: depth\n      target:\n        type: Value\n        value: \"10\"\n";
    let mut hpa = stored(spec, gate(true), scaled_to_zero_state(0));
    let d = hpa.evaluate(at(15), &ScaleTarget::workers(0, 0), &[Obs::Object(10_500)]);
    assert_eq!((d.rescale, d.desired_replicas), (true, 2));
}

#[test]
fn from_zero_with_condition_and_an_idle_metric_stays_at_zero() {
    let mut hpa = stored(QUEUE_TO_ZERO, gate(true), scaled_to_zero_state(0));
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(0)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (false, 0));
    assert_eq!(
        condition(&d, ScalingActive),
        (True, "ValidMetricFound".to_string())
    );
    assert_eq!(
        condition(&d, ScaledToZero),
        (True, "ScaledToZero".to_string())
    );
}

// TestScaleWithOneInvalidMetric "from zero with invalid metric, FG on" / "FG off".
#[test]
fn from_zero_with_invalid_metric() {
    let mut hpa = stored(QUEUE_TO_ZERO, gate(true), scaled_to_zero_state(0));
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(0, 0),
        &[Obs::Unavailable("no series".into())],
    );
    assert_eq!((d.rescale, d.desired_replicas), (false, 0));
    assert_eq!(
        condition(&d, ScalingActive),
        (False, "FailedGetExternalMetric".to_string())
    );
    assert_eq!(
        condition(&d, ScaledToZero),
        (True, "ScaledToZero".to_string())
    );

    let mut hpa = stored(QUEUE_TO_ZERO, gate(false), scaled_to_zero_state(0));
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(0, 0),
        &[Obs::Unavailable("no series".into())],
    );
    assert_eq!(
        condition(&d, ScalingActive),
        (False, "ScalingDisabled".to_string())
    );
    assert!(d.condition(ScaledToZero).is_none());
}

// TestScaleToZeroBehavior "stale ScaledToZero condition cleared on normal rescale, FG on" /
// "stale ScaledToZero condition removed on normal rescale, FG off": the target was brought up
// by hand while the status still said ScaledToZero.
#[test]
fn stale_scaled_to_zero_condition_on_normal_rescale() {
    for on in [true, false] {
        let mut hpa = stored(QUEUE_TO_ZERO, gate(on), scaled_to_zero_state(0));
        let d = hpa.evaluate(
            at(15),
            &ScaleTarget::workers(2, 2),
            &[Obs::external_units(20)],
        );
        assert_eq!((d.rescale, d.desired_replicas), (true, 4), "FG {on}");
        let c = d
            .condition(ScaledToZero)
            .map(|c| (c.status, c.reason.clone()));
        let expected = on.then(|| (False, "NotScaledToZero".to_string()));
        assert_eq!(c, expected, "FG {on}");
    }
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

// TestScaleToZeroBehavior "minReplicas increased with ScaledToZero condition, FG on" / "FG off":
// after minReplicas is raised above 0 while the controller holds the target at zero, the
// target is evaluated and brought up to at least minReplicas, even with an idle metric; with
// the gate off it stays at zero.
#[test]
fn min_replicas_increased_with_scaled_to_zero_condition() {
    let spec = QUEUE_TO_ZERO.replace("minReplicas: 0", "minReplicas: 3");
    let mut hpa = stored(&spec, gate(true), scaled_to_zero_state(0));
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(0)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (true, 3));
    assert_eq!(
        condition(&d, ScaledToZero),
        (False, "NotScaledToZero".to_string())
    );

    let mut hpa = stored(&spec, gate(false), scaled_to_zero_state(0));
    let d = hpa.evaluate(
        at(15),
        &ScaleTarget::workers(0, 0),
        &[Obs::external_units(0)],
    );
    assert_eq!((d.rescale, d.desired_replicas), (false, 0));
    assert_eq!(
        condition(&d, ScalingActive),
        (False, "ScalingDisabled".to_string())
    );
}

// TestConfigurableTolerance: the manifest's per-direction tolerance is read only with
// HPAConfigurableTolerance on; the controller-wide one applies otherwise.
#[test]
fn configurable_tolerance() {
    let spec = |behavior: &str, tolerance: f64| {
        let mut config = ControllerConfig::kubernetes_1_35();
        config.tolerance = tolerance;
        (
            format!("  maxReplicas: 100\n{}{behavior}", queue("10")),
            config,
        )
    };
    let run = |(spec, config): (String, ControllerConfig), queue: i64| {
        let d = autoscaler_with(&spec, config).evaluate(
            at(0),
            &ScaleTarget::workers(10, 10),
            &[Obs::external_units(queue)],
        );
        (d.rescale, d.desired_replicas)
    };
    // "scaling up because of a 1% configurable tolerance": 2 % above target, outside 1 %.
    let up = "  behavior:\n    scaleUp:\n      tolerance: \"0.01\"\n";
    assert_eq!(run(spec(up, 0.1), 102), (true, 11));
    // "no scale-down because of a 90% configurable tolerance": 50 % below target, within 90 %.
    let down = "  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 0\n      tolerance: \"0.9\"\n";
    assert_eq!(run(spec(down, 0.1), 50), (false, 10));
    // "no scaling because of the large default tolerance": 50 % above target, within 60 %.
    assert_eq!(run(spec("", 0.6), 150), (false, 10));
    // "no scaling because the configurable tolerance is ignored when feature gate is disabled".
    let (yaml, mut config) = spec(up, 0.1);
    config.feature_gates.hpa_configurable_tolerance = false;
    assert_eq!(run((yaml, config), 102), (false, 10));
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
