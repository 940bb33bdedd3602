//! Properties that must hold for any manifest and any sequence of observations.

mod common;

use std::time::Duration;

use common::{now, scaling_rules};
use proptest::prelude::*;
use warren_hpa::normalization::{stabilize_recommendation_with_behaviors, NormalizationArg};
use warren_hpa::replica_calculator::{
    get_external_metric_replicas, get_external_per_pod_metric_replicas,
    get_object_per_pod_metric_replicas, Pod, PodMetric, ReplicaCalculator, Tolerances,
};
use warren_hpa::{Autoscaler, MetricObservation, ScaleTarget, Timestamp};

/// An External AverageValue manifest with optional behavior rules.
fn manifest(min: i32, max: i32, behavior: &str) -> String {
    format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: p\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: w\n  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n  - type: External\n    external:\n      metric:\n        name: queue\n      target:\n        type: AverageValue\n        averageValue: \"10\"\n{behavior}"
    )
}

/// Behavior with no stabilization and a single policy in `direction`.
fn behavior_yaml(kind: u8, value: i32, period: i32, scale_up: bool) -> String {
    let policy = if kind == 0 { "Pods" } else { "Percent" };
    let policies = format!("      policies:\n      - type: {policy}\n        value: {value}\n        periodSeconds: {period}\n");
    let (up, down) = if scale_up {
        (policies.as_str(), "")
    } else {
        ("", policies.as_str())
    };
    format!(
        "  behavior:\n    scaleUp:\n      stabilizationWindowSeconds: 0\n{up}    scaleDown:\n      stabilizationWindowSeconds: 0\n{down}"
    )
}

fn build(yaml: &str) -> Autoscaler {
    Autoscaler::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever the metrics say, a decision never leaves [minReplicas, maxReplicas].
    #[test]
    fn result_never_outside_min_and_max(
        min in 1i32..5,
        extra in 0i32..20,
        with_behavior in any::<bool>(),
        start in 0i32..40,
        ticks in prop::collection::vec((0u64..60, prop::option::weighted(0.9, 0i64..2_000)), 1..40),
    ) {
        let max = min + extra;
        let behavior = if with_behavior { "  behavior: {}\n" } else { "" };
        let mut hpa = build(&manifest(min, max, behavior));
        let mut current = start.max(1);
        let mut t = 0;
        for (step, depth) in ticks {
            t += step;
            let observation = depth.map_or_else(|| MetricObservation::Unavailable("down".into()), MetricObservation::external_units);
            let d = hpa.evaluate(Timestamp::from_secs(t), &ScaleTarget::workers(current, current), &[observation]);
            if d.rescale || (min..=max).contains(&current) {
                prop_assert!((min..=max).contains(&d.desired_replicas), "desired {} outside [{min}, {max}]", d.desired_replicas);
            }
            current = d.desired_replicas;
        }
    }

    /// A usage ratio within the tolerance never changes the replica count.
    #[test]
    fn ratio_within_tolerance_never_changes_replicas(
        current in 1i32..100,
        target in 1i64..1_000_000,
        ratio in 0.9f64..=1.1,
        down in 0.0f64..0.5,
        up in 0.0f64..0.5,
    ) {
        let tolerances = Tolerances::default();
        let pods: Vec<Pod> = (0..current).map(|i| Pod::running(format!("p{i}"), true)).collect();

        let total = (target as f64 * ratio).floor() as i64;
        let r = total as f64 / target as f64;
        if tolerances.is_within(r) {
            let got = get_external_metric_replicas(current, target, tolerances, &[total], &pods);
            prop_assert_eq!(got.map(|m| m.replica_count), Ok(current));
        }

        let total = (target as f64 * f64::from(current) * ratio).floor() as i64;
        let r = total as f64 / (target as f64 * f64::from(current));
        if tolerances.is_within(r) {
            prop_assert_eq!(get_external_per_pod_metric_replicas(current, target, tolerances, &[total]).replica_count, current);
            prop_assert_eq!(get_object_per_pod_metric_replicas(current, target, tolerances, total).replica_count, current);
        }

        // Each pod at the same value, so the mean is exact.
        let per_pod = (target as f64 * ratio).floor() as i64;
        let r = per_pod as f64 / target as f64;
        let custom = Tolerances { scale_down: down, scale_up: up };
        if custom.is_within(r) {
            let samples = pods.iter().map(|p| (p.name.clone(), PodMetric::value(per_pod))).collect();
            let got = ReplicaCalculator::default().get_metric_replicas(current, target, custom, &pods, &samples, now());
            prop_assert_eq!(got.map(|m| m.replica_count), Ok(current));
        }
    }

    /// Under a single Pods or Percent policy, the replicas added (or removed) by the events inside
    /// any policy period never exceed what the policy allows from the count at its start.
    #[test]
    fn rate_limits_hold_over_every_policy_period(
        kind in 0u8..2,
        value in 1i32..300,
        period in 1i32..300,
        scale_up in any::<bool>(),
        steps in prop::collection::vec((1u64..90, 0i64..5_000), 1..40),
    ) {
        let value = if kind == 0 { value.min(20) } else { value.min(if scale_up { 300 } else { 99 }) };
        let mut hpa = build(&manifest(1, 1000, &behavior_yaml(kind, value, period, scale_up)));
        let mut current = if scale_up { 1 } else { 1000 };
        // Demand only moves one way, so every rescale is in the policy's direction.
        let mut depths: Vec<i64> = steps.iter().map(|s| s.1).collect();
        if scale_up { depths.sort_unstable(); } else { depths.sort_unstable_by(|a, b| b.cmp(a)); }
        let mut t = 0;
        let mut history: Vec<(u64, i32, i32)> = Vec::new(); // (time, before, after)
        for ((step, _), depth) in steps.iter().zip(depths) {
            t += step;
            let d = hpa.evaluate(Timestamp::from_secs(t), &ScaleTarget::workers(current, current), &[MetricObservation::external_units(depth * 10)]);
            if d.rescale {
                history.push((t, current, d.desired_replicas));
                // The events newer than one period before this one, this one included.
                let window: Vec<_> = history.iter().filter(|(at, _, _)| at + period as u64 > t).collect();
                let start = window[0].1;
                let end = d.desired_replicas;
                let allowed = match (kind, scale_up) {
                    (0, true) => start + value,
                    (0, false) => start - value,
                    (_, true) => (f64::from(start) * (1.0 + f64::from(value) / 100.0)).ceil() as i32,
                    (_, false) => (f64::from(start) * (1.0 - f64::from(value) / 100.0)) as i32,
                };
                if scale_up {
                    prop_assert!(end <= allowed.max(1), "{start} -> {end} within {period}s exceeds {allowed}");
                } else {
                    prop_assert!(end >= allowed.clamp(1, 1000), "{start} -> {end} within {period}s exceeds {allowed}");
                }
            }
            current = d.desired_replicas;
        }
    }

    /// A scale-down never goes below a recommendation still inside the stabilization window.
    #[test]
    fn stabilization_never_scales_below_a_recommendation_in_the_window(
        with_behavior in any::<bool>(),
        window in 0i32..600,
        steps in prop::collection::vec((1u64..120, 0i64..3_000), 1..40),
    ) {
        let (behavior, effective_window) = if with_behavior {
            (format!("  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: {window}\n"), u64::try_from(window).unwrap_or(0))
        } else {
            (String::new(), 300)
        };
        let mut hpa = build(&manifest(1, 500, &behavior));
        let mut current = 10;
        let mut t = 0;
        for (step, depth) in steps {
            t += step;
            let now = Timestamp::from_secs(t);
            let cutoff = now - Duration::from_secs(effective_window);
            let in_window: Vec<i32> = hpa
                .state()
                .recommendations
                .iter()
                .filter(|r| r.timestamp > cutoff)
                .map(|r| r.recommendation)
                .collect();
            let d = hpa.evaluate(now, &ScaleTarget::workers(current, current), &[MetricObservation::external_units(depth)]);
            for r in in_window {
                prop_assert!(d.desired_replicas >= r.min(current), "scaled to {} below {r} at {t}s", d.desired_replicas);
            }
            current = d.desired_replicas;
        }
    }

    /// The same for the stabilization step alone, with both windows.
    #[test]
    fn stabilize_with_behaviors_stays_between_the_window_extremes(
        current in 0i32..50,
        desired in 0i32..50,
        recs in prop::collection::vec((0i32..50, 0u64..900), 0..20),
        up_window in 0i32..600,
        down_window in 0i32..600,
    ) {
        let mut history: Vec<_> = recs.iter().map(|&(r, ago)| common::rec(r, ago)).collect();
        let before = history.clone();
        let up = scaling_rules(4, 15, 0, 0, up_window);
        let down = scaling_rules(0, 0, 100, 15, down_window);
        let args = NormalizationArg { scale_up_behavior: &up, scale_down_behavior: &down, min_replicas: 0, max_replicas: 100, current_replicas: current, desired_replicas: desired };
        let got = stabilize_recommendation_with_behaviors(&mut history, &args, now()).replicas;
        let down_cutoff = now() - Duration::from_secs(down_window as u64);
        let highest_in_down_window = before.iter().filter(|r| r.timestamp > down_cutoff).map(|r| r.recommendation).fold(desired, i32::max);
        prop_assert!(got >= highest_in_down_window.min(current));
        let up_cutoff = now() - Duration::from_secs(up_window as u64);
        let lowest_in_up_window = before.iter().filter(|r| r.timestamp > up_cutoff).map(|r| r.recommendation).fold(desired, i32::min);
        prop_assert!(got <= lowest_in_up_window.max(current));
    }
}
