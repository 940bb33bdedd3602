//! Turning a metric proposal into the replica count to apply: stabilization, rate limits and the
//! min/max clamp, with and without `behavior`, and the histories they read. Mirrors the
//! normalization half of `pkg/controller/podautoscaler/horizontal.go`.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

use crate::conditions::{ConditionChange, ConditionStatus, ConditionType};
use crate::defaults::{
    generate_hpa_scale_down_rules, generate_hpa_scale_up_rules, DISABLED_POLICY_SELECT,
    MIN_CHANGE_POLICY_SELECT, PERCENT_SCALING_POLICY, PODS_SCALING_POLICY,
};
use crate::time::{seconds, Timestamp};

/// The legacy scale-up limit: at most this factor times the current replicas...
pub const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
/// ...or this many replicas, whichever is more.
pub const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;
/// The controller's default `--horizontal-pod-autoscaler-downscale-stabilization`.
pub const DEFAULT_DOWNSCALE_STABILIZATION_WINDOW: Duration = Duration::from_secs(300);

/// The legacy path's scale-up limit, `max(factor × current, minimum)`: the controller's
/// package variables `scaleUpLimitFactor` and `scaleUpLimitMinimum` (2 and 4; Kubernetes' own
/// tests set other values).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleUpLimit {
    /// How many times the current count one rescale may reach.
    pub factor: f64,
    /// The limit when the factor gives less.
    pub minimum: f64,
}

impl Default for ScaleUpLimit {
    fn default() -> Self {
        ScaleUpLimit {
            factor: SCALE_UP_LIMIT_FACTOR,
            minimum: SCALE_UP_LIMIT_MINIMUM,
        }
    }
}

/// A metric proposal remembered for stabilization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimestampedRecommendation {
    /// The unstabilized replica count the metrics proposed.
    pub recommendation: i32,
    /// When it was proposed.
    pub timestamp: Timestamp,
}

/// A rescale remembered for the rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimestampedScaleEvent {
    /// How many replicas were added (scale-up history) or removed (scale-down history).
    pub replica_change: i32,
    /// When the rescale happened.
    pub timestamp: Timestamp,
    /// Older than every policy period, so the slot may be reused.
    pub outdated: bool,
}

/// What a normalization step decided, with the reason and message of its condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    /// The replica count after this step.
    pub replicas: i32,
    /// The condition reason, e.g. `ScaleUpLimit`.
    pub reason: &'static str,
    /// The condition message.
    pub message: &'static str,
}

impl Limited {
    fn new(replicas: i32, reason: &'static str, message: &'static str) -> Self {
        Limited {
            replicas,
            reason,
            message,
        }
    }

    fn within_range(replicas: i32) -> Self {
        Limited::new(
            replicas,
            DESIRED_WITHIN_RANGE,
            "the desired count is within the acceptable range",
        )
    }
}

const DESIRED_WITHIN_RANGE: &str = "DesiredWithinRange";
const TOO_MANY_REPLICAS: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW_REPLICAS: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const SCALE_UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const SCALE_DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

/// Seeds the recommendation history with the current count the first time an autoscaler is seen,
/// so a fresh controller does not scale down at once. Mirrors `recordInitialRecommendation`.
pub fn record_initial_recommendation(
    recommendations: &mut Vec<TimestampedRecommendation>,
    current_replicas: i32,
    now: Timestamp,
) {
    if recommendations.is_empty() {
        recommendations.push(TimestampedRecommendation {
            recommendation: current_replicas,
            timestamp: now,
        });
    }
}

/// Legacy stabilization: the highest recommendation not older than the window (the new one
/// included), then records the new one, reusing the slot of an expired entry. Mirrors
/// `stabilizeRecommendation`.
pub fn stabilize_recommendation(
    recommendations: &mut Vec<TimestampedRecommendation>,
    prenormalized_desired_replicas: i32,
    downscale_stabilisation_window: Duration,
    now: Timestamp,
) -> i32 {
    let cutoff = now - downscale_stabilisation_window;
    let mut max_recommendation = prenormalized_desired_replicas;
    let mut old_sample = None;
    for (i, rec) in recommendations.iter().enumerate() {
        if rec.timestamp < cutoff {
            old_sample = Some(i);
        } else if rec.recommendation > max_recommendation {
            max_recommendation = rec.recommendation;
        }
    }
    store_recommendation(
        recommendations,
        old_sample,
        prenormalized_desired_replicas,
        now,
    );
    max_recommendation
}

fn store_recommendation(
    recommendations: &mut Vec<TimestampedRecommendation>,
    reuse: Option<usize>,
    recommendation: i32,
    now: Timestamp,
) {
    let entry = TimestampedRecommendation {
        recommendation,
        timestamp: now,
    };
    match reuse {
        Some(i) => recommendations[i] = entry,
        None => recommendations.push(entry),
    }
}

/// The legacy bounds: at least `min_replicas`, at most `max_replicas` and the scale-up limit
/// (`max(2 × current, 4)` by default). Mirrors `convertDesiredReplicasWithRules`.
pub fn convert_desired_replicas_with_rules(
    current_replicas: i32,
    desired_replicas: i32,
    hpa_min_replicas: i32,
    hpa_max_replicas: i32,
    limit: ScaleUpLimit,
) -> Limited {
    let scale_up_limit = calculate_scale_up_limit(current_replicas, limit);
    let (maximum_allowed, (reason, message)) = if hpa_max_replicas > scale_up_limit {
        (scale_up_limit, SCALE_UP_LIMIT)
    } else {
        (hpa_max_replicas, TOO_MANY_REPLICAS)
    };
    if desired_replicas < hpa_min_replicas {
        let (reason, message) = TOO_FEW_REPLICAS;
        return Limited::new(hpa_min_replicas, reason, message);
    }
    if desired_replicas > maximum_allowed {
        return Limited::new(maximum_allowed, reason, message);
    }
    Limited::within_range(desired_replicas)
}

/// `max(factor × current, minimum)`. Mirrors `calculateScaleUpLimit`.
pub fn calculate_scale_up_limit(current_replicas: i32, limit: ScaleUpLimit) -> i32 {
    (limit.factor * f64::from(current_replicas)).max(limit.minimum) as i32
}

/// Everything the behavior normalization needs. Mirrors `NormalizationArg` (without the key: the
/// histories are passed in directly).
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizationArg<'a> {
    /// The defaulted scale-up rules.
    pub scale_up_behavior: &'a HPAScalingRules,
    /// The defaulted scale-down rules (stabilization window filled in).
    pub scale_down_behavior: &'a HPAScalingRules,
    /// `spec.minReplicas` after defaulting.
    pub min_replicas: i32,
    /// `spec.maxReplicas`.
    pub max_replicas: i32,
    /// The scale target's current `spec.replicas`.
    pub current_replicas: i32,
    /// The replica count to normalize.
    pub desired_replicas: i32,
}

/// Behavior stabilization: the count is held between the lowest recommendation of the scale-up
/// window and the highest of the scale-down window (both including the new one), starting from
/// the current count; then the new recommendation is recorded, reusing a slot older than both
/// windows. Returns the stabilized count with the `ScaleUpStabilized`/`ScaleDownStabilized`
/// reason and message. Mirrors `stabilizeRecommendationWithBehaviors`.
pub fn stabilize_recommendation_with_behaviors(
    recommendations: &mut Vec<TimestampedRecommendation>,
    args: &NormalizationArg<'_>,
    now: Timestamp,
) -> Limited {
    let up_cutoff = now
        - seconds(
            args.scale_up_behavior
                .stabilization_window_seconds
                .unwrap_or(0),
        );
    let down_cutoff = now
        - seconds(
            args.scale_down_behavior
                .stabilization_window_seconds
                .unwrap_or(0),
        );
    let mut up_recommendation = args.desired_replicas;
    let mut down_recommendation = args.desired_replicas;
    let mut old_sample = None;
    for (i, rec) in recommendations.iter().enumerate() {
        if rec.timestamp > up_cutoff {
            up_recommendation = up_recommendation.min(rec.recommendation);
        }
        if rec.timestamp > down_cutoff {
            down_recommendation = down_recommendation.max(rec.recommendation);
        }
        if rec.timestamp < up_cutoff && rec.timestamp < down_cutoff {
            old_sample = Some(i);
        }
    }
    let recommendation = args
        .current_replicas
        .max(up_recommendation)
        .min(down_recommendation);
    store_recommendation(recommendations, old_sample, args.desired_replicas, now);

    if args.desired_replicas >= args.current_replicas {
        Limited::new(
            recommendation,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        Limited::new(
            recommendation,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    }
}

/// Behavior rate limits and bounds: a scale-up is held to the policies' limit (never below the
/// current count) and `max_replicas`, a scale-down to the policies' limit (never above the
/// current count) and `min_replicas`. Mirrors `convertDesiredReplicasWithBehaviorRate`.
pub fn convert_desired_replicas_with_behavior_rate(
    args: &NormalizationArg<'_>,
    scale_up_events: &[TimestampedScaleEvent],
    scale_down_events: &[TimestampedScaleEvent],
    now: Timestamp,
) -> Limited {
    if args.desired_replicas > args.current_replicas {
        let scale_up_limit = calculate_scale_up_limit_with_scaling_rules(
            args.current_replicas,
            scale_up_events,
            scale_down_events,
            args.scale_up_behavior,
            now,
        )
        // Until earlier scale-ups leave their periods, do not go further up.
        .max(args.current_replicas);
        let (maximum_allowed, (reason, message)) = if args.max_replicas > scale_up_limit {
            (scale_up_limit, SCALE_UP_LIMIT)
        } else {
            (args.max_replicas, TOO_MANY_REPLICAS)
        };
        if args.desired_replicas > maximum_allowed {
            return Limited::new(maximum_allowed, reason, message);
        }
    } else if args.desired_replicas < args.current_replicas {
        let scale_down_limit = calculate_scale_down_limit_with_behaviors(
            args.current_replicas,
            scale_up_events,
            scale_down_events,
            args.scale_down_behavior,
            now,
        )
        // Until earlier scale-downs leave their periods, do not go further down.
        .min(args.current_replicas);
        let (minimum_allowed, (reason, message)) = if args.min_replicas < scale_down_limit {
            (scale_down_limit, SCALE_DOWN_LIMIT)
        } else {
            (args.min_replicas, TOO_FEW_REPLICAS)
        };
        if args.desired_replicas < minimum_allowed {
            return Limited::new(minimum_allowed, reason, message);
        }
    }
    Limited::within_range(args.desired_replicas)
}

/// The replica count reached at the start of each policy period, by undoing the changes recorded
/// since, and the policy it is measured for.
fn period_start_replicas(
    current_replicas: i32,
    period_seconds: i32,
    scale_up_events: &[TimestampedScaleEvent],
    scale_down_events: &[TimestampedScaleEvent],
    now: Timestamp,
) -> i32 {
    current_replicas - get_replicas_change_per_period(period_seconds, scale_up_events, now)
        + get_replicas_change_per_period(period_seconds, scale_down_events, now)
}

/// The highest count the scale-up policies allow now: per policy, the count at the start of its
/// period plus `value` pods or `value` percent (rounded up); `selectPolicy` Max takes the largest,
/// Min the smallest, Disabled keeps the current count. Mirrors
/// `calculateScaleUpLimitWithScalingRules`.
pub fn calculate_scale_up_limit_with_scaling_rules(
    current_replicas: i32,
    scale_up_events: &[TimestampedScaleEvent],
    scale_down_events: &[TimestampedScaleEvent],
    scaling_rules: &HPAScalingRules,
    now: Timestamp,
) -> i32 {
    let select = scaling_rules.select_policy.as_deref().unwrap_or_default();
    if select == DISABLED_POLICY_SELECT {
        return current_replicas;
    }
    let pick_min = select == MIN_CHANGE_POLICY_SELECT;
    let mut result = if pick_min { i32::MAX } else { i32::MIN };
    // Like the controller, an unknown policy type repeats the previous proposal.
    let mut proposed: i32 = 0;
    for policy in scaling_rules.policies.as_deref().unwrap_or_default() {
        let start = period_start_replicas(
            current_replicas,
            policy.period_seconds,
            scale_up_events,
            scale_down_events,
            now,
        );
        if policy.type_ == PODS_SCALING_POLICY {
            proposed = start.saturating_add(policy.value);
        } else if policy.type_ == PERCENT_SCALING_POLICY {
            // Rounded up so that a small percentage can still add a pod.
            proposed = (f64::from(start) * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32;
        }
        result = if pick_min {
            result.min(proposed)
        } else {
            result.max(proposed)
        };
    }
    result
}

/// The lowest count the scale-down policies allow now: per policy, the count at the start of
/// its period minus `value` pods or `value` percent (rounded toward zero); `selectPolicy` Max
/// takes the smallest count, Min the largest, Disabled keeps the current count. Mirrors
/// `calculateScaleDownLimitWithBehaviors`.
pub fn calculate_scale_down_limit_with_behaviors(
    current_replicas: i32,
    scale_up_events: &[TimestampedScaleEvent],
    scale_down_events: &[TimestampedScaleEvent],
    scaling_rules: &HPAScalingRules,
    now: Timestamp,
) -> i32 {
    let select = scaling_rules.select_policy.as_deref().unwrap_or_default();
    if select == DISABLED_POLICY_SELECT {
        return current_replicas;
    }
    let pick_max = select == MIN_CHANGE_POLICY_SELECT;
    let mut result = if pick_max { i32::MIN } else { i32::MAX };
    let mut proposed: i32 = 0;
    for policy in scaling_rules.policies.as_deref().unwrap_or_default() {
        let start = period_start_replicas(
            current_replicas,
            policy.period_seconds,
            scale_up_events,
            scale_down_events,
            now,
        );
        if policy.type_ == PODS_SCALING_POLICY {
            proposed = start.saturating_sub(policy.value);
        } else if policy.type_ == PERCENT_SCALING_POLICY {
            proposed = (f64::from(start) * (1.0 - f64::from(policy.value) / 100.0)) as i32;
        }
        result = if pick_max {
            result.max(proposed)
        } else {
            result.min(proposed)
        };
    }
    result
}

/// The replicas changed by events newer than `period_seconds` ago. Mirrors
/// `getReplicasChangePerPeriod`.
pub fn get_replicas_change_per_period(
    period_seconds: i32,
    scale_events: &[TimestampedScaleEvent],
    now: Timestamp,
) -> i32 {
    let cutoff = now - seconds(period_seconds);
    scale_events
        .iter()
        .filter(|event| event.timestamp > cutoff)
        .map(|event| event.replica_change)
        .sum()
}

/// The longest policy period of a direction, in seconds. Mirrors `getLongestPolicyPeriod`.
pub fn get_longest_policy_period(scaling_rules: &HPAScalingRules) -> i32 {
    scaling_rules
        .policies
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|policy| policy.period_seconds)
        .fold(0, i32::max)
}

/// Flags events older than the longest policy period so their slots can be reused. Mirrors
/// `markScaleEventsOutdated`.
pub fn mark_scale_events_outdated(
    scale_events: &mut [TimestampedScaleEvent],
    longest_policy_period: i32,
    now: Timestamp,
) {
    let cutoff = now - seconds(longest_policy_period);
    for event in scale_events.iter_mut() {
        if event.timestamp < cutoff {
            event.outdated = true;
        }
    }
}

/// Records a rescale in the history of its direction, replacing the last outdated event if any.
/// Without `behavior` nothing is recorded, since only the behavior rate limits read it. Mirrors
/// `storeScaleEvent`.
pub fn store_scale_event(
    behavior: Option<&HorizontalPodAutoscalerBehavior>,
    scale_up_events: &mut Vec<TimestampedScaleEvent>,
    scale_down_events: &mut Vec<TimestampedScaleEvent>,
    prev_replicas: i32,
    new_replicas: i32,
    now: Timestamp,
) {
    let Some(behavior) = behavior else {
        return;
    };
    let (events, rules, replica_change) = if new_replicas > prev_replicas {
        (
            scale_up_events,
            behavior.scale_up.as_ref(),
            new_replicas - prev_replicas,
        )
    } else {
        (
            scale_down_events,
            behavior.scale_down.as_ref(),
            prev_replicas - new_replicas,
        )
    };
    let longest_policy_period = rules.map_or(0, get_longest_policy_period);
    mark_scale_events_outdated(events, longest_policy_period, now);
    let new_event = TimestampedScaleEvent {
        replica_change,
        timestamp: now,
        outdated: false,
    };
    match events.iter().rposition(|event| event.outdated) {
        Some(i) => events[i] = new_event,
        None => events.push(new_event),
    }
}

/// The outcome of a whole normalization: the count to apply and the `AbleToScale` and
/// `ScalingLimited` conditions it sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// The replica count to apply.
    pub desired_replicas: i32,
    /// `AbleToScale`: `ReadyForNewScale`, `ScaleUpStabilized` or `ScaleDownStabilized`.
    pub able_to_scale: ConditionChange,
    /// `ScalingLimited`: true with the limiting reason when the count was clamped.
    pub scaling_limited: ConditionChange,
}

fn able_to_scale(stabilized: &Limited, prenormalized: i32) -> ConditionChange {
    if stabilized.replicas != prenormalized {
        ConditionChange::new(
            ConditionType::AbleToScale,
            ConditionStatus::True,
            stabilized.reason,
            stabilized.message,
        )
    } else {
        ConditionChange::new(
            ConditionType::AbleToScale,
            ConditionStatus::True,
            "ReadyForNewScale",
            "recommended size matches current size",
        )
    }
}

fn scaling_limited(limited: &Limited, stabilized: i32) -> ConditionChange {
    let status = if limited.replicas == stabilized {
        ConditionStatus::False
    } else {
        ConditionStatus::True
    };
    ConditionChange::new(
        ConditionType::ScalingLimited,
        status,
        limited.reason,
        limited.message,
    )
}

/// The legacy normalization used when `behavior` is absent: downscale stabilization over
/// `downscale_stabilisation_window`, then [`convert_desired_replicas_with_rules`]. Mirrors
/// `normalizeDesiredReplicas`.
#[allow(clippy::too_many_arguments)]
pub fn normalize_desired_replicas(
    recommendations: &mut Vec<TimestampedRecommendation>,
    current_replicas: i32,
    prenormalized_desired_replicas: i32,
    min_replicas: i32,
    max_replicas: i32,
    downscale_stabilisation_window: Duration,
    scale_up_limit: ScaleUpLimit,
    now: Timestamp,
) -> Normalized {
    let stabilized = stabilize_recommendation(
        recommendations,
        prenormalized_desired_replicas,
        downscale_stabilisation_window,
        now,
    );
    let stabilized_limited = Limited::new(
        stabilized,
        "ScaleDownStabilized",
        "recent recommendations were higher than current one, applying the highest recent recommendation",
    );
    let able = able_to_scale(&stabilized_limited, prenormalized_desired_replicas);
    let limited = convert_desired_replicas_with_rules(
        current_replicas,
        stabilized,
        min_replicas,
        max_replicas,
        scale_up_limit,
    );
    Normalized {
        desired_replicas: limited.replicas,
        able_to_scale: able,
        scaling_limited: scaling_limited(&limited, stabilized),
    }
}

/// Fills an unset scale-down stabilization window with the controller's own setting. Mirrors
/// `maybeInitScaleDownStabilizationWindow`.
pub fn maybe_init_scale_down_stabilization_window(
    behavior: &mut HorizontalPodAutoscalerBehavior,
    downscale_stabilisation_window: Duration,
) {
    if let Some(scale_down) = behavior.scale_down.as_mut() {
        init_scale_down_window(scale_down, downscale_stabilisation_window);
    }
}

fn init_scale_down_window(scale_down: &mut HPAScalingRules, window: Duration) {
    if scale_down.stabilization_window_seconds.is_none() {
        scale_down.stabilization_window_seconds =
            Some(i32::try_from(window.as_secs()).unwrap_or(i32::MAX));
    }
}

/// The normalization used when `behavior` is present: [`stabilize_recommendation_with_behaviors`]
/// then [`convert_desired_replicas_with_behavior_rate`]. `behavior` should be defaulted (see
/// [`crate::defaults::set_defaults_horizontal_pod_autoscaler_behavior`]); unset fields fall back
/// to the defaults. Mirrors `normalizeDesiredReplicasWithBehaviors`.
#[allow(clippy::too_many_arguments)]
pub fn normalize_desired_replicas_with_behaviors(
    recommendations: &mut Vec<TimestampedRecommendation>,
    scale_up_events: &[TimestampedScaleEvent],
    scale_down_events: &[TimestampedScaleEvent],
    behavior: &HorizontalPodAutoscalerBehavior,
    current_replicas: i32,
    prenormalized_desired_replicas: i32,
    min_replicas: i32,
    max_replicas: i32,
    downscale_stabilisation_window: Duration,
    now: Timestamp,
) -> Normalized {
    let scale_up = generate_hpa_scale_up_rules(behavior.scale_up.as_ref());
    let mut scale_down = generate_hpa_scale_down_rules(behavior.scale_down.as_ref());
    init_scale_down_window(&mut scale_down, downscale_stabilisation_window);
    let mut args = NormalizationArg {
        scale_up_behavior: &scale_up,
        scale_down_behavior: &scale_down,
        min_replicas,
        max_replicas,
        current_replicas,
        desired_replicas: prenormalized_desired_replicas,
    };
    let stabilized = stabilize_recommendation_with_behaviors(recommendations, &args, now);
    args.desired_replicas = stabilized.replicas;
    let able = able_to_scale(&stabilized, prenormalized_desired_replicas);
    let limited =
        convert_desired_replicas_with_behavior_rate(&args, scale_up_events, scale_down_events, now);
    Normalized {
        desired_replicas: limited.replicas,
        able_to_scale: able,
        scaling_limited: scaling_limited(&limited, stabilized.replicas),
    }
}
