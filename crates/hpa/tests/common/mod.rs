//! Fixtures shared by the integration tests, after the helpers of the Kubernetes controller tests.

#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingPolicy, HPAScalingRules};
use warren_hpa::normalization::{TimestampedRecommendation, TimestampedScaleEvent};
use warren_hpa::Timestamp;

/// A fixed "now", far enough from the epoch that every window fits before it.
pub fn now() -> Timestamp {
    Timestamp::from_secs(1_000_000)
}

/// `now()` minus `secs` seconds.
pub fn ago(secs: u64) -> Timestamp {
    now() - Duration::from_secs(secs)
}

/// Rules with the given Pods and Percent policies (left out when zero), select Max, and the
/// stabilization window. Mirrors `generateScalingRules`.
pub fn scaling_rules(
    pods: i32,
    pods_period: i32,
    percent: i32,
    percent_period: i32,
    window: i32,
) -> HPAScalingRules {
    let mut policies = Vec::new();
    if pods != 0 {
        policies.push(HPAScalingPolicy {
            type_: "Pods".into(),
            value: pods,
            period_seconds: pods_period,
        });
    }
    if percent != 0 {
        policies.push(HPAScalingPolicy {
            type_: "Percent".into(),
            value: percent,
            period_seconds: percent_period,
        });
    }
    HPAScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some("Max".into()),
        policies: Some(policies),
        tolerance: None,
    }
}

/// Events spread evenly over the last `period_seconds`, each in the middle of its segment, oldest
/// first. Mirrors `generateEventsUniformDistribution` (whole seconds, truncated).
pub fn events_uniform(changes: &[i32], period_seconds: u64) -> Vec<TimestampedScaleEvent> {
    let segment = period_seconds as f64 / changes.len() as f64;
    changes
        .iter()
        .enumerate()
        .map(|(idx, &change)| {
            let boundary = period_seconds as f64 - segment * (idx + 1) as f64 + segment / 2.0;
            TimestampedScaleEvent {
                replica_change: change,
                timestamp: ago(boundary as u64),
                outdated: false,
            }
        })
        .collect()
}

/// A recommendation `secs` seconds before `now()`.
pub fn rec(recommendation: i32, secs_ago: u64) -> TimestampedRecommendation {
    TimestampedRecommendation {
        recommendation,
        timestamp: ago(secs_ago),
    }
}

/// A scale event `secs` seconds before `now()`.
pub fn event(replica_change: i32, secs_ago: u64) -> TimestampedScaleEvent {
    TimestampedScaleEvent {
        replica_change,
        timestamp: ago(secs_ago),
        outdated: false,
    }
}
