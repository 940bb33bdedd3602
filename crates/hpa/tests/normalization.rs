//! The normalization steps against the cases of the Kubernetes controller tests
//! (`TestScalingWithRules`, `TestNormalizeDesiredReplicas`,
//! `TestNormalizeDesiredReplicasWithBehavior`, `TestStoreScaleEvents`,
//! `TestConvertDesiredReplicasWithRules`, `TestCalculateScale{Up,Down}Limit*`).

mod common;

use std::time::Duration;

use common::{ago, event, events_uniform, now, rec, scaling_rules};
use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use warren_hpa::defaults::{generate_hpa_scale_down_rules, generate_hpa_scale_up_rules};
use warren_hpa::normalization::*;

/// One `TestScalingWithRules` case: `convert_desired_replicas_with_behavior_rate` with the
/// defaulted rules and the given histories.
#[allow(clippy::too_many_arguments)]
fn scaling_with_rules(
    up_events: Vec<TimestampedScaleEvent>,
    down_events: Vec<TimestampedScaleEvent>,
    min: i32,
    max: i32,
    up_rules: Option<HPAScalingRules>,
    down_rules: Option<HPAScalingRules>,
    current: i32,
    desired: i32,
) -> Limited {
    let up = generate_hpa_scale_up_rules(up_rules.as_ref());
    let down = generate_hpa_scale_down_rules(down_rules.as_ref());
    let args = NormalizationArg {
        scale_up_behavior: &up,
        scale_down_behavior: &down,
        min_replicas: min,
        max_replicas: max,
        current_replicas: current,
        desired_replicas: desired,
    };
    convert_desired_replicas_with_behavior_rate(&args, &up_events, &down_events, now())
}

macro_rules! scaling_with_rules_cases {
    ($($name:ident: up_events $ue:expr, down_events $de:expr, min $min:expr, max $max:expr,
       up $up:expr, down $down:expr, current $cur:expr, desired $des:expr
       => $replicas:expr, $reason:expr;)*) => {$(
        #[test]
        fn $name() {
            let got = scaling_with_rules($ue, $de, $min, $max, $up, $down, $cur, $des);
            assert_eq!((got.replicas, got.reason), ($replicas, $reason));
        }
    )*};
}

const NONE: Vec<TimestampedScaleEvent> = Vec::new();

scaling_with_rules_cases! {
    prenormalized_desired_replicas_within_range: up_events NONE, down_events NONE, min 3, max 8, up None, down None, current 5, desired 7 => 7, "DesiredWithinRange";
    prenormalized_desired_replicas_below_min_replicas: up_events NONE, down_events NONE, min 2, max 8, up None, down None, current 3, desired 1 => 2, "TooFewReplicas";
    prenormalized_desired_replicas_within_range_when_min_replicas_is_0: up_events NONE, down_events NONE, min 0, max 10, up None, down None, current 1, desired 0 => 0, "DesiredWithinRange";
    max_replicas_is_the_limit_because_max_replicas_below_scale_up_limit: up_events NONE, down_events NONE, min 1, max 10, up None, down None, current 20, desired 1000 => 10, "TooManyReplicas";
    desired_replica_count_is_more_than_the_maximum_replica_count: up_events NONE, down_events NONE, min 100, max 150, up None, down None, current 100, desired 1000 => 150, "TooManyReplicas";
    scale_up_limit_is_the_limit_with_user_policies: up_events NONE, down_events NONE, min 1, max 2000, up Some(scaling_rules(0, 0, 1, 60, 0)), down None, current 3, desired 1000 => 4, "ScaleUpLimit";
    scale_down_limit_is_the_limit_with_user_defined_policies: up_events NONE, down_events NONE, min 3, max 2000, up None, down Some(scaling_rules(20, 60, 0, 0, 0)), current 1000, desired 3 => 980, "ScaleDownLimit";
    scale_up_with_default_behavior: up_events NONE, down_events NONE, min 1, max 1000, up None, down None, current 10, desired 50 => 20, "ScaleUpLimit";
    scale_up_with_pods_policy_larger_than_percent_policy: up_events NONE, down_events NONE, min 1, max 1000, up Some(scaling_rules(100, 60, 100, 60, 0)), down None, current 10, desired 500 => 110, "ScaleUpLimit";
    scale_up_with_percent_policy_larger_than_pods_policy: up_events NONE, down_events NONE, min 1, max 1000, up Some(scaling_rules(2, 60, 100, 60, 0)), down None, current 10, desired 500 => 20, "ScaleUpLimit";
    scale_up_with_spec_max_replicas_limitation_with_large_pod_policy: up_events NONE, down_events NONE, min 1, max 1000, up Some(scaling_rules(100, 60, 0, 0, 0)), down None, current 10, desired 50 => 50, "DesiredWithinRange";
    scale_up_with_spec_max_replicas_limitation_with_large_percent_policy: up_events NONE, down_events NONE, min 1, max 1000, up Some(scaling_rules(10000, 60, 0, 0, 0)), down None, current 10, desired 50 => 50, "DesiredWithinRange";
    scale_up_with_pod_policy_limitation: up_events NONE, down_events NONE, min 1, max 1000, up Some(scaling_rules(30, 60, 0, 0, 0)), down None, current 10, desired 50 => 40, "ScaleUpLimit";
    scale_up_with_percent_policy_limitation: up_events NONE, down_events NONE, min 1, max 1000, up Some(scaling_rules(0, 0, 200, 60, 0)), down None, current 10, desired 50 => 30, "ScaleUpLimit";
    scale_down_with_percent_policy_larger_than_pod_policy: up_events NONE, down_events NONE, min 1, max 1000, up None, down Some(scaling_rules(20, 60, 1, 60, 300)), current 100, desired 2 => 80, "ScaleDownLimit";
    scale_down_with_pod_policy_larger_than_percent_policy: up_events NONE, down_events NONE, min 1, max 1000, up None, down Some(scaling_rules(2, 60, 1, 60, 300)), current 100, desired 2 => 98, "ScaleDownLimit";
    scale_down_with_spec_min_replicas_limitation_with_large_pod_policy: up_events NONE, down_events NONE, min 1, max 1000, up None, down Some(scaling_rules(100, 60, 0, 0, 300)), current 10, desired 0 => 1, "TooFewReplicas";
    scale_down_with_spec_min_replicas_limitation_with_large_percent_policy: up_events NONE, down_events NONE, min 5, max 1000, up None, down Some(scaling_rules(0, 0, 100, 60, 300)), current 10, desired 2 => 5, "TooFewReplicas";
    scale_down_with_pod_policy_limitation: up_events NONE, down_events NONE, min 1, max 1000, up None, down Some(scaling_rules(5, 60, 0, 0, 300)), current 10, desired 2 => 5, "ScaleDownLimit";
    scale_down_with_percent_policy_limitation: up_events NONE, down_events NONE, min 1, max 1000, up None, down Some(scaling_rules(0, 0, 50, 60, 300)), current 10, desired 5 => 5, "DesiredWithinRange";
    scale_up_with_max_replicas_limitation_with_large_pod_policy_and_events: up_events events_uniform(&[1, 5, 9], 120), down_events NONE, min 1, max 200, up Some(scaling_rules(300, 60, 0, 0, 0)), down None, current 100, desired 500 => 200, "TooManyReplicas";
    scale_up_with_max_replicas_limitation_with_large_percent_policy_and_events: up_events events_uniform(&[1, 5, 9], 120), down_events NONE, min 1, max 200, up Some(scaling_rules(0, 0, 10000, 60, 0)), down None, current 100, desired 500 => 200, "TooManyReplicas";
    scale_up_held_at_current_replicas_after_many_recent_scale_ups: up_events events_uniform(&[1, 5, 9], 120), down_events NONE, min 1, max 1000, up Some(scaling_rules(5, 120, 0, 0, 0)), down None, current 100, desired 500 => 100, "ScaleUpLimit";
    scale_up_with_pod_policy_and_previous_scale_up_events: up_events events_uniform(&[1, 5, 9], 120), down_events NONE, min 1, max 1000, up Some(scaling_rules(150, 120, 0, 0, 0)), down None, current 100, desired 500 => 235, "ScaleUpLimit";
    scale_up_with_percent_policy_and_previous_scale_up_events: up_events events_uniform(&[1, 5, 9], 120), down_events NONE, min 1, max 1000, up Some(scaling_rules(0, 0, 200, 120, 0)), down None, current 100, desired 500 => 255, "ScaleUpLimit";
    scale_up_with_percent_policy_and_previous_scale_up_and_down_events: up_events events_uniform(&[4], 120), down_events events_uniform(&[2], 120), min 1, max 1000, up Some(scaling_rules(0, 0, 300, 300, 0)), down None, current 6, desired 24 => 16, "ScaleUpLimit";
    scale_down_with_default_policy_and_previous_events: up_events NONE, down_events events_uniform(&[1, 5, 9], 120), min 1, max 1000, up None, down None, current 10, desired 5 => 5, "DesiredWithinRange";
    scale_down_with_min_replicas_limitation_with_large_pod_policy_and_previous_events: up_events NONE, down_events events_uniform(&[1, 5, 9], 120), min 1, max 1000, up None, down Some(scaling_rules(115, 120, 0, 0, 300)), current 100, desired 0 => 1, "TooFewReplicas";
    scale_down_with_min_replicas_5_limitation_with_large_pod_policy_and_previous_events: up_events NONE, down_events events_uniform(&[1, 5, 9], 120), min 5, max 1000, up None, down Some(scaling_rules(130, 120, 0, 0, 300)), current 100, desired 0 => 5, "TooFewReplicas";
    scale_down_with_min_replicas_limitation_with_large_percent_policy_and_previous_events: up_events NONE, down_events events_uniform(&[1, 5, 9], 120), min 5, max 1000, up None, down Some(scaling_rules(0, 0, 100, 120, 300)), current 100, desired 2 => 5, "TooFewReplicas";
    scale_down_with_pod_policy_limitation_and_previous_events: up_events NONE, down_events events_uniform(&[1, 5, 9], 120), min 1, max 1000, up None, down Some(scaling_rules(5, 120, 0, 0, 300)), current 100, desired 2 => 100, "ScaleDownLimit";
    scale_down_with_percent_policy_limitation_and_previous_events: up_events NONE, down_events events_uniform(&[2, 4, 6], 120), min 1, max 1000, up None, down Some(scaling_rules(0, 0, 50, 120, 300)), current 100, desired 0 => 56, "ScaleDownLimit";
    scale_down_with_percent_policy_and_previous_scale_up_and_down_events: up_events events_uniform(&[2], 120), down_events events_uniform(&[4], 120), min 1, max 1000, up None, down Some(scaling_rules(0, 0, 50, 180, 0)), current 10, desired 1 => 6, "ScaleDownLimit";
    scale_down_with_previous_events_preventing_further_scale_down: up_events NONE, down_events events_uniform(&[10, 10, 10], 120), min 1, max 1000, up None, down Some(scaling_rules(0, 0, 10, 120, 300)), current 100, desired 0 => 100, "ScaleDownLimit";
    scale_down_with_previous_events_still_allowing_more_scale_down: up_events NONE, down_events events_uniform(&[10, 10, 10], 120), min 1, max 1000, up None, down Some(scaling_rules(0, 0, 1000, 120, 300)), current 10, desired 5 => 5, "DesiredWithinRange";
    outdated_flag_for_events_for_one_behavior_for_up: up_events events_uniform(&[8, 12, 9, 11], 120), down_events NONE, min 1, max 1000, up Some(scaling_rules(1000, 60, 0, 0, 0)), down None, current 100, desired 200 => 200, "DesiredWithinRange";
    events_not_outdated_for_two_policies_for_up: up_events events_uniform(&[8, 12, 9, 11], 120), down_events NONE, min 1, max 1000, up Some(scaling_rules(1000, 120, 100, 60, 0)), down None, current 100, desired 200 => 200, "DesiredWithinRange";
    events_outdated_for_two_policies_for_up: up_events events_uniform(&[8, 12, 9, 11], 120), down_events NONE, min 1, max 1000, up Some(scaling_rules(1000, 30, 100, 60, 0)), down None, current 100, desired 200 => 200, "DesiredWithinRange";
    outdated_flag_for_events_for_one_behavior_for_down: up_events NONE, down_events events_uniform(&[8, 12, 9, 11], 120), min 1, max 1000, up None, down Some(scaling_rules(1000, 60, 0, 0, 300)), current 100, desired 5 => 5, "DesiredWithinRange";
    events_not_outdated_for_two_policies_for_down: up_events NONE, down_events events_uniform(&[8, 12, 9, 11], 120), min 1, max 1000, up None, down Some(scaling_rules(1000, 120, 100, 60, 300)), current 100, desired 5 => 5, "DesiredWithinRange";
    events_outdated_for_two_policies_for_down: up_events NONE, down_events events_uniform(&[8, 12, 9, 11], 120), min 1, max 1000, up None, down Some(scaling_rules(1000, 30, 100, 60, 300)), current 100, desired 5 => 5, "DesiredWithinRange";
}

#[test]
fn calculate_scale_up_limit_with_min_select_policy_picks_the_smaller_change() {
    let mut rules = scaling_rules(2, 60, 50, 60, 300);
    rules.select_policy = Some("Min".into());
    assert_eq!(
        calculate_scale_up_limit_with_scaling_rules(1, &[], &[], &rules, now()),
        2
    );
}

#[test]
fn calculate_scale_down_limit_with_min_select_policy_picks_the_smaller_change() {
    let mut rules = scaling_rules(2, 60, 50, 60, 300);
    rules.select_policy = Some("Min".into());
    assert_eq!(
        calculate_scale_down_limit_with_behaviors(5, &[], &[], &rules, now()),
        3
    );
}

#[test]
fn disabled_select_policy_keeps_the_current_count_both_ways() {
    let mut rules = scaling_rules(10, 60, 0, 0, 0);
    rules.select_policy = Some("Disabled".into());
    assert_eq!(
        calculate_scale_up_limit_with_scaling_rules(7, &[], &[], &rules, now()),
        7
    );
    assert_eq!(
        calculate_scale_down_limit_with_behaviors(7, &[], &[], &rules, now()),
        7
    );
}

// TestConvertDesiredReplicasWithRules.
#[test]
fn convert_with_rules_keeps_prenormalized_replicas_within_range() {
    let got = convert_desired_replicas_with_rules(5, 7, 3, 8, ScaleUpLimit::default());
    assert_eq!((got.replicas, got.reason), (7, "DesiredWithinRange"));
}

#[test]
fn convert_with_rules_raises_to_min_replicas() {
    let got = convert_desired_replicas_with_rules(3, 1, 2, 8, ScaleUpLimit::default());
    assert_eq!((got.replicas, got.reason), (2, "TooFewReplicas"));
}

#[test]
fn convert_with_rules_allows_zero_when_min_replicas_is_zero() {
    let got = convert_desired_replicas_with_rules(1, 0, 0, 10, ScaleUpLimit::default());
    assert_eq!((got.replicas, got.reason), (0, "DesiredWithinRange"));
}

#[test]
fn convert_with_rules_caps_at_max_replicas_below_scale_up_limit() {
    let got = convert_desired_replicas_with_rules(20, 1000, 1, 10, ScaleUpLimit::default());
    assert_eq!((got.replicas, got.reason), (10, "TooManyReplicas"));
}

#[test]
fn convert_with_rules_caps_at_scale_up_limit_below_max_replicas() {
    let got = convert_desired_replicas_with_rules(3, 1000, 1, 2000, ScaleUpLimit::default());
    assert_eq!(
        (got.replicas, got.reason),
        (
            calculate_scale_up_limit(3, ScaleUpLimit::default()),
            "ScaleUpLimit"
        )
    );
    assert_eq!(calculate_scale_up_limit(3, ScaleUpLimit::default()), 6);
    assert_eq!(calculate_scale_up_limit(1, ScaleUpLimit::default()), 4);
}

// TestNormalizeDesiredReplicas: legacy stabilization over a 5-minute window.
fn legacy(recs: Vec<TimestampedRecommendation>, desired: i32) -> (i32, usize) {
    let mut recs = recs;
    let got = stabilize_recommendation(&mut recs, desired, Duration::from_secs(300), now());
    (got, recs.len())
}

#[test]
fn legacy_stabilization_with_empty_log() {
    assert_eq!(legacy(vec![], 5), (5, 1));
}

#[test]
fn legacy_stabilization_holds_the_recent_maximum() {
    assert_eq!(legacy(vec![rec(4, 120), rec(5, 60)], 3), (5, 3));
}

#[test]
fn legacy_stabilization_does_not_hold_lower_recommendations() {
    assert_eq!(legacy(vec![rec(1, 120), rec(2, 60)], 3), (3, 3));
}

#[test]
fn legacy_stabilization_ignores_and_reuses_old_recommendations() {
    assert_eq!(legacy(vec![rec(10, 600), rec(9, 540)], 3), (3, 2));
}

#[test]
fn legacy_stabilization_mixes_old_and_recent_recommendations() {
    assert_eq!(
        legacy(vec![rec(10, 600), rec(4, 60), rec(5, 120), rec(9, 540)], 3),
        (5, 4)
    );
}

// TestNormalizeDesiredReplicasWithBehavior.
fn with_behaviors(
    recs: Vec<TimestampedRecommendation>,
    current: i32,
    desired: i32,
    up_window: i32,
    down_window: i32,
) -> (i32, Vec<i32>) {
    let mut recs = recs;
    let up = HPAScalingRules {
        stabilization_window_seconds: Some(up_window),
        ..HPAScalingRules::default()
    };
    let down = HPAScalingRules {
        stabilization_window_seconds: Some(down_window),
        ..HPAScalingRules::default()
    };
    let args = NormalizationArg {
        scale_up_behavior: &up,
        scale_down_behavior: &down,
        min_replicas: 0,
        max_replicas: 0,
        current_replicas: current,
        desired_replicas: desired,
    };
    let got = stabilize_recommendation_with_behaviors(&mut recs, &args, now());
    (
        got.replicas,
        recs.iter().map(|r| r.recommendation).collect(),
    )
}

#[test]
fn behavior_empty_recommendations_for_scaling_down() {
    assert_eq!(with_behaviors(vec![], 100, 5, 0, 0), (5, vec![5]));
}

#[test]
fn behavior_simple_scale_down_stabilization() {
    assert_eq!(
        with_behaviors(vec![rec(4, 120), rec(5, 60)], 100, 3, 0, 180),
        (5, vec![4, 5, 3])
    );
}

#[test]
fn behavior_simple_scale_up_stabilization() {
    assert_eq!(
        with_behaviors(vec![rec(4, 120), rec(5, 60)], 1, 7, 300, 0),
        (4, vec![4, 5, 7])
    );
}

#[test]
fn behavior_no_scale_down_stabilization() {
    assert_eq!(
        with_behaviors(vec![rec(1, 120), rec(2, 60)], 100, 3, 300, 0),
        (3, vec![1, 2, 3])
    );
}

#[test]
fn behavior_no_scale_up_stabilization() {
    assert_eq!(
        with_behaviors(vec![rec(4, 120), rec(5, 60)], 1, 3, 0, 300),
        (3, vec![4, 5, 3])
    );
}

#[test]
fn behavior_no_scale_down_stabilization_reuses_recommendation_element() {
    assert_eq!(
        with_behaviors(vec![rec(10, 600), rec(9, 540)], 100, 3, 0, 0),
        (3, vec![10, 3])
    );
}

#[test]
fn behavior_no_scale_up_stabilization_reuses_recommendation_element() {
    assert_eq!(
        with_behaviors(vec![rec(10, 600), rec(9, 540)], 1, 100, 0, 0),
        (100, vec![10, 100])
    );
}

#[test]
fn behavior_scale_down_stabilization_reuses_one_obsolete_element() {
    let recs = vec![rec(10, 600), rec(4, 60), rec(5, 120), rec(9, 540)];
    assert_eq!(with_behaviors(recs, 100, 3, 0, 180), (5, vec![10, 4, 5, 3]));
}

#[test]
fn behavior_scale_up_stabilization_reuses_one_obsolete_element() {
    let recs = vec![rec(10, 6000), rec(6, 60), rec(5, 120), rec(9, 180)];
    assert_eq!(
        with_behaviors(recs, 1, 100, 300, 0),
        (5, vec![100, 6, 5, 9])
    );
}

#[test]
fn behavior_does_not_scale_up_when_prenormalized_recommendation_goes_down() {
    let recs = vec![rec(2, 6000), rec(3, 180)];
    assert_eq!(with_behaviors(recs, 2, 1, 300, 300).0, 2);
}

#[test]
fn behavior_does_not_scale_down_when_prenormalized_recommendation_goes_up() {
    let recs = vec![rec(2, 6000), rec(1, 180)];
    assert_eq!(with_behaviors(recs, 2, 3, 300, 300).0, 2);
}

// TestStoreScaleEvents: the history before and after storing a change of 5, both directions.
fn store_both_ways(
    prev: Vec<TimestampedScaleEvent>,
    rules: Option<HPAScalingRules>,
    expected_change_in_60s: i32,
    expected: &[(i32, bool)],
) {
    for up in [true, false] {
        assert_eq!(
            get_replicas_change_per_period(60, &prev, now()),
            expected_change_in_60s
        );
        let behavior = rules.as_ref().map(|r| HorizontalPodAutoscalerBehavior {
            scale_up: up.then(|| r.clone()),
            scale_down: (!up).then(|| r.clone()),
        });
        let mut up_events = if up { prev.clone() } else { Vec::new() };
        let mut down_events = if up { Vec::new() } else { prev.clone() };
        let new = if up { 15 } else { 5 };
        store_scale_event(
            behavior.as_ref(),
            &mut up_events,
            &mut down_events,
            10,
            new,
            now(),
        );
        let stored = if up { &up_events } else { &down_events };
        let got: Vec<(i32, bool)> = stored
            .iter()
            .map(|e| (e.replica_change, e.outdated))
            .collect();
        assert_eq!(got, expected, "direction up={up}");
    }
}

#[test]
fn store_empty_entries_with_default_behavior() {
    store_both_ways(vec![], None, 0, &[]);
}

#[test]
fn store_empty_entries_with_two_policy_behavior() {
    store_both_ways(
        vec![],
        Some(scaling_rules(10, 60, 100, 60, 0)),
        0,
        &[(5, false)],
    );
}

#[test]
fn store_keeps_outdated_entry_untouched_without_behavior() {
    store_both_ways(vec![event(7, 61)], None, 0, &[(7, false)]);
}

#[test]
fn store_replaces_outdated_entry_with_behavior() {
    store_both_ways(
        vec![event(7, 61)],
        Some(scaling_rules(10, 60, 100, 60, 0)),
        0,
        &[(5, false)],
    );
}

#[test]
fn store_keeps_actual_entry_with_behavior() {
    store_both_ways(
        vec![event(7, 58)],
        Some(scaling_rules(10, 60, 100, 60, 0)),
        7,
        &[(7, false), (5, false)],
    );
}

#[test]
fn store_two_entries_one_of_them_replaced() {
    store_both_ways(
        vec![event(7, 61), event(6, 59)],
        Some(scaling_rules(10, 60, 0, 0, 0)),
        6,
        &[(5, false), (6, false)],
    );
}

#[test]
fn store_replaces_one_entry_with_policies_of_different_periods() {
    store_both_ways(
        vec![event(8, 29), event(6, 59), event(7, 61), event(9, 61)],
        Some(scaling_rules(10, 60, 100, 30, 0)),
        14,
        &[(8, false), (6, false), (7, true), (5, false)],
    );
}

#[test]
fn store_two_entries_both_actual() {
    store_both_ways(
        vec![event(7, 58), event(6, 59)],
        Some(scaling_rules(10, 120, 100, 30, 0)),
        13,
        &[(7, false), (6, false), (5, false)],
    );
}

#[test]
fn record_initial_recommendation_only_seeds_an_empty_history() {
    let mut recs = Vec::new();
    record_initial_recommendation(&mut recs, 3, ago(10));
    record_initial_recommendation(&mut recs, 7, now());
    assert_eq!(recs, vec![rec(3, 10)]);
}

#[test]
fn unset_scale_down_window_takes_the_controller_setting() {
    let mut behavior = HorizontalPodAutoscalerBehavior {
        scale_up: None,
        scale_down: Some(generate_hpa_scale_down_rules(None)),
    };
    maybe_init_scale_down_stabilization_window(&mut behavior, Duration::from_secs(120));
    let window = behavior
        .scale_down
        .and_then(|r| r.stabilization_window_seconds);
    assert_eq!(window, Some(120));
}
