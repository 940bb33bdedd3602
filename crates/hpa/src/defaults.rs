//! The autoscaling/v2 API defaults, applied the way the API server applies them before storing a
//! HorizontalPodAutoscaler. Mirrors `pkg/apis/autoscaling/v2/defaults.go`.

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior,
    MetricSpec, MetricTarget, ResourceMetricSource,
};

/// `HPAScalingPolicy.type` for a policy counted in pods.
pub const PODS_SCALING_POLICY: &str = "Pods";
/// `HPAScalingPolicy.type` for a policy counted in percent of the current replicas.
pub const PERCENT_SCALING_POLICY: &str = "Percent";
/// `selectPolicy` that picks the policy allowing the largest change.
pub const MAX_CHANGE_POLICY_SELECT: &str = "Max";
/// `selectPolicy` that picks the policy allowing the smallest change.
pub const MIN_CHANGE_POLICY_SELECT: &str = "Min";
/// `selectPolicy` that forbids scaling in that direction.
pub const DISABLED_POLICY_SELECT: &str = "Disabled";

/// `minReplicas` when the manifest leaves it out.
pub const DEFAULT_MIN_REPLICAS: i32 = 1;
/// The CPU utilization target of the metric added when a manifest lists no metrics.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

const SCALE_UP_LIMIT_PERCENT: i32 = 100;
const SCALE_UP_LIMIT_MINIMUM_PODS: i32 = 4;
const SCALE_UP_PERIOD_SECONDS: i32 = 15;
const SCALE_DOWN_LIMIT_PERCENT: i32 = 100;
const SCALE_DOWN_PERIOD_SECONDS: i32 = 15;

fn policy(type_: &str, value: i32, period_seconds: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.to_string(),
        value,
        period_seconds,
    }
}

/// The scale-up rules used when the manifest gives none: no stabilization, and per 15 s at most
/// 4 pods or 100 %, whichever allows more.
pub fn default_hpa_scale_up_rules() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some(MAX_CHANGE_POLICY_SELECT.to_string()),
        policies: Some(vec![
            policy(
                PODS_SCALING_POLICY,
                SCALE_UP_LIMIT_MINIMUM_PODS,
                SCALE_UP_PERIOD_SECONDS,
            ),
            policy(
                PERCENT_SCALING_POLICY,
                SCALE_UP_LIMIT_PERCENT,
                SCALE_UP_PERIOD_SECONDS,
            ),
        ]),
        tolerance: None,
    }
}

/// The scale-down rules used when the manifest gives none: 100 % per 15 s. The stabilization
/// window stays unset on purpose: the controller fills it from its own downscale-stabilization
/// setting (300 s by default), see `maybe_init_scale_down_stabilization_window`.
pub fn default_hpa_scale_down_rules() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: None,
        select_policy: Some(MAX_CHANGE_POLICY_SELECT.to_string()),
        policies: Some(vec![policy(
            PERCENT_SCALING_POLICY,
            SCALE_DOWN_LIMIT_PERCENT,
            SCALE_DOWN_PERIOD_SECONDS,
        )]),
        tolerance: None,
    }
}

/// Applies every autoscaling/v2 default: `minReplicas` 1, a CPU 80 % utilization metric when no
/// metric is listed, and the behavior defaults. Mirrors `SetDefaults_HorizontalPodAutoscaler`.
pub fn set_defaults_horizontal_pod_autoscaler(hpa: &mut HorizontalPodAutoscaler) {
    let spec = &mut hpa.spec;
    if spec.min_replicas.is_none() {
        spec.min_replicas = Some(DEFAULT_MIN_REPLICAS);
    }
    if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
        spec.metrics = Some(vec![MetricSpec {
            type_: "Resource".to_string(),
            resource: Some(ResourceMetricSource {
                name: "cpu".to_string(),
                target: MetricTarget {
                    type_: "Utilization".to_string(),
                    average_utilization: Some(DEFAULT_CPU_UTILIZATION),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        }]);
    }
    set_defaults_horizontal_pod_autoscaler_behavior(hpa);
}

/// Fills every unset field of both scaling directions when `behavior` is present at all; an absent
/// `behavior` stays absent (the controller then uses its legacy normalization). Mirrors
/// `SetDefaults_HorizontalPodAutoscalerBehavior`.
pub fn set_defaults_horizontal_pod_autoscaler_behavior(hpa: &mut HorizontalPodAutoscaler) {
    if let Some(behavior) = hpa.spec.behavior.as_mut() {
        set_defaults_behavior_rules(behavior);
    }
}

/// Fills both scaling directions of a present `behavior` with
/// [`generate_hpa_scale_up_rules`] and [`generate_hpa_scale_down_rules`].
pub fn set_defaults_behavior_rules(behavior: &mut HorizontalPodAutoscalerBehavior) {
    behavior.scale_up = Some(generate_hpa_scale_up_rules(behavior.scale_up.as_ref()));
    behavior.scale_down = Some(generate_hpa_scale_down_rules(behavior.scale_down.as_ref()));
}

/// Scale-up rules with every unset field taken from the defaults. Mirrors
/// `GenerateHPAScaleUpRules`.
pub fn generate_hpa_scale_up_rules(rules: Option<&HPAScalingRules>) -> HPAScalingRules {
    copy_hpa_scaling_rules(rules, default_hpa_scale_up_rules())
}

/// Scale-down rules with every unset field except the stabilization window taken from the
/// defaults. Mirrors `GenerateHPAScaleDownRules`.
pub fn generate_hpa_scale_down_rules(rules: Option<&HPAScalingRules>) -> HPAScalingRules {
    copy_hpa_scaling_rules(rules, default_hpa_scale_down_rules())
}

/// Copies every set field of `from` over `to`. A policy list, once given, replaces the default
/// list whole (even when empty, which validation then rejects). Mirrors `copyHPAScalingRules`.
pub fn copy_hpa_scaling_rules(
    from: Option<&HPAScalingRules>,
    mut to: HPAScalingRules,
) -> HPAScalingRules {
    let Some(from) = from else {
        return to;
    };
    if from.select_policy.is_some() {
        to.select_policy.clone_from(&from.select_policy);
    }
    if from.stabilization_window_seconds.is_some() {
        to.stabilization_window_seconds = from.stabilization_window_seconds;
    }
    if from.policies.is_some() {
        to.policies.clone_from(&from.policies);
    }
    if from.tolerance.is_some() {
        to.tolerance.clone_from(&from.tolerance);
    }
    to
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(
        window: Option<i32>,
        select: Option<&str>,
        policies: Option<Vec<HPAScalingPolicy>>,
    ) -> HPAScalingRules {
        HPAScalingRules {
            stabilization_window_seconds: window,
            select_policy: select.map(str::to_string),
            policies,
            tolerance: None,
        }
    }

    // Cases of TestGenerateScaleUpRules in the Kubernetes defaults tests.
    #[test]
    fn generate_scale_up_rules_without_user_rules_is_the_default() {
        let generated = generate_hpa_scale_up_rules(None);
        assert_eq!(generated.stabilization_window_seconds, Some(0));
        assert_eq!(generated.select_policy.as_deref(), Some("Max"));
        assert_eq!(
            generated.policies,
            Some(vec![policy("Pods", 4, 15), policy("Percent", 100, 15)])
        );
    }

    #[test]
    fn generate_scale_up_rules_keeps_user_policies_whole() {
        let user = rules(None, None, Some(vec![policy("Pods", 1, 60)]));
        let generated = generate_hpa_scale_up_rules(Some(&user));
        assert_eq!(generated.policies, Some(vec![policy("Pods", 1, 60)]));
        assert_eq!(generated.stabilization_window_seconds, Some(0));
        assert_eq!(generated.select_policy.as_deref(), Some("Max"));
    }

    #[test]
    fn generate_scale_up_rules_keeps_user_window_and_select_policy() {
        let user = rules(Some(25), Some("Min"), None);
        let generated = generate_hpa_scale_up_rules(Some(&user));
        assert_eq!(generated.stabilization_window_seconds, Some(25));
        assert_eq!(generated.select_policy.as_deref(), Some("Min"));
        assert_eq!(generated.policies, default_hpa_scale_up_rules().policies);
    }

    #[test]
    fn generate_scale_down_rules_leaves_the_window_to_the_controller() {
        let generated = generate_hpa_scale_down_rules(None);
        assert_eq!(generated.stabilization_window_seconds, None);
        assert_eq!(generated.policies, Some(vec![policy("Percent", 100, 15)]));
        assert_eq!(generated.select_policy.as_deref(), Some("Max"));
    }

    #[test]
    fn defaults_fill_min_replicas_metrics_and_both_directions() {
        let mut hpa = HorizontalPodAutoscaler::default();
        hpa.spec.behavior = Some(HorizontalPodAutoscalerBehavior::default());
        set_defaults_horizontal_pod_autoscaler(&mut hpa);
        assert_eq!(hpa.spec.min_replicas, Some(1));
        let metrics = hpa.spec.metrics.as_deref().unwrap_or_default();
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].type_, "Resource");
        let behavior = hpa.spec.behavior.unwrap_or_default();
        assert_eq!(behavior.scale_up, Some(default_hpa_scale_up_rules()));
        assert_eq!(behavior.scale_down, Some(default_hpa_scale_down_rules()));
    }

    #[test]
    fn absent_behavior_stays_absent() {
        let mut hpa = HorizontalPodAutoscaler::default();
        set_defaults_horizontal_pod_autoscaler(&mut hpa);
        assert_eq!(hpa.spec.behavior, None);
    }
}
