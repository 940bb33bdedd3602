//! One autoscaler's reconcile loop: per-metric proposals, their combination, and the stateful
//! [`Autoscaler`] that steps a manifest through time. Mirrors the metric and reconcile half of
//! `pkg/controller/podautoscaler/horizontal.go`.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricTarget,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use crate::conditions::{
    remove_condition, Condition, ConditionChange, ConditionStatus, ConditionType,
};
use crate::manifest::{self, ManifestError};
use crate::normalization::{
    normalize_desired_replicas, normalize_desired_replicas_with_behaviors,
    record_initial_recommendation, store_scale_event, ScaleUpLimit, TimestampedRecommendation,
    TimestampedScaleEvent, DEFAULT_DOWNSCALE_STABILIZATION_WINDOW,
};
use crate::quantity;
use crate::replica_calculator::{
    get_external_metric_replicas, get_external_per_pod_metric_replicas, get_object_metric_replicas,
    get_object_per_pod_metric_replicas, Pod, PodMetricsInfo, ReplicaCalculator, Tolerances,
    DEFAULT_CPU_INITIALIZATION_PERIOD, DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS,
    DEFAULT_TOLERANCE,
};
use crate::time::Timestamp;

/// The kube-controller-manager feature gates the HPA controller reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FeatureGates {
    /// `HPAScaleToZero`: a target the controller took to 0 (condition `ScaledToZero` True) is
    /// still evaluated, from its Object and External metrics, and brought back up. While off,
    /// a target at 0 replicas means autoscaling is disabled, and the `ScaledToZero` condition is
    /// removed. Alpha (off) 1.16 to 1.36, beta (on) from 1.37.
    #[serde(rename = "HPAScaleToZero")]
    pub hpa_scale_to_zero: bool,
    /// `HPAConfigurableTolerance`: `behavior.scaleUp.tolerance` and
    /// `behavior.scaleDown.tolerance` are read; while off, the controller-wide tolerance
    /// applies in both directions. Alpha (off) 1.33 and 1.34, beta (on) from 1.35.
    #[serde(rename = "HPAConfigurableTolerance")]
    pub hpa_configurable_tolerance: bool,
}

/// The controller-wide settings of one Kubernetes release line: the kube-controller-manager
/// flags, the feature gates, and the release's fixed rules.
///
/// | setting | 1.33 | 1.35 | 1.37 | development |
/// |---|---|---|---|---|
/// | `HPAScaleToZero` | off | off | on | on |
/// | `HPAConfigurableTolerance` | off | on | on | on |
/// | Succeeded pods ignored | no | no | no | yes |
///
/// The flags have the same defaults on every line: tolerance 0.1, downscale stabilization
/// 5 min, CPU initialization 5 min, initial readiness delay 30 s, legacy scale-up limit
/// `max(2 × current, 4)`. [`ControllerConfig::default`] is the newest stable line, 1.37.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllerConfig {
    /// `--horizontal-pod-autoscaler-tolerance`: used in a direction whose rules set none (in
    /// both while HPAConfigurableTolerance is off).
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`: the legacy window, and the
    /// behavior scale-down window when the manifest sets none.
    #[serde(with = "seconds")]
    pub downscale_stabilization_window: Duration,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`.
    #[serde(with = "seconds")]
    pub cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`.
    #[serde(with = "seconds")]
    pub delay_of_initial_readiness_status: Duration,
    /// The legacy path's scale-up limit (no `behavior`).
    pub scale_up_limit: ScaleUpLimit,
    /// The feature gates.
    pub feature_gates: FeatureGates,
    /// Whether pods in phase Succeeded are left out like Failed ones (development line,
    /// kubernetes PR 141302); before, they counted as pods without metrics.
    pub ignore_succeeded_pods: bool,
}

/// Durations as whole or fractional seconds, as the controller's flags are written.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

impl Default for ControllerConfig {
    /// The newest stable release line's defaults: [`ControllerConfig::kubernetes_1_37`].
    fn default() -> Self {
        Self::kubernetes_1_37()
    }
}

impl ControllerConfig {
    /// Kubernetes 1.33: both gates alpha and off.
    pub fn kubernetes_1_33() -> Self {
        ControllerConfig {
            tolerance: DEFAULT_TOLERANCE,
            downscale_stabilization_window: DEFAULT_DOWNSCALE_STABILIZATION_WINDOW,
            cpu_initialization_period: DEFAULT_CPU_INITIALIZATION_PERIOD,
            delay_of_initial_readiness_status: DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS,
            scale_up_limit: ScaleUpLimit::default(),
            feature_gates: FeatureGates {
                hpa_scale_to_zero: false,
                hpa_configurable_tolerance: false,
            },
            ignore_succeeded_pods: false,
        }
    }

    /// Kubernetes 1.35: HPAConfigurableTolerance beta and on; HPAScaleToZero alpha and off.
    pub fn kubernetes_1_35() -> Self {
        let mut config = Self::kubernetes_1_33();
        config.feature_gates.hpa_configurable_tolerance = true;
        config
    }

    /// Kubernetes 1.37: both gates on (HPAScaleToZero beta).
    pub fn kubernetes_1_37() -> Self {
        let mut config = Self::kubernetes_1_35();
        config.feature_gates.hpa_scale_to_zero = true;
        config
    }

    /// Kubernetes' development line (master after 1.37): 1.37, and pods in phase Succeeded
    /// are ignored.
    pub fn development() -> Self {
        let mut config = Self::kubernetes_1_37();
        config.ignore_succeeded_pods = true;
        config
    }

    /// The settings of a release line named `1.33`, `1.35`, `1.37` or `development`; also
    /// `1.34` (as 1.33) and `1.36` (as 1.35), which differ in nothing modelled here.
    pub fn for_release(release: &str) -> Option<Self> {
        match release {
            "1.33" | "1.34" => Some(Self::kubernetes_1_33()),
            "1.35" | "1.36" => Some(Self::kubernetes_1_35()),
            "1.37" => Some(Self::kubernetes_1_37()),
            "development" | "master" => Some(Self::development()),
            _ => None,
        }
    }

    /// The per-metric calculator these settings give.
    pub fn replica_calculator(&self) -> ReplicaCalculator {
        ReplicaCalculator {
            cpu_initialization_period: self.cpu_initialization_period,
            delay_of_initial_readiness_status: self.delay_of_initial_readiness_status,
            ignore_succeeded_pods: self.ignore_succeeded_pods,
        }
    }

    /// The tolerances for `behavior` under these settings: the manifest's per-direction
    /// tolerances while HPAConfigurableTolerance is on, the controller-wide one otherwise.
    pub fn tolerances(&self, behavior: Option<&HorizontalPodAutoscalerBehavior>) -> Tolerances {
        let behavior = behavior.filter(|_| self.feature_gates.hpa_configurable_tolerance);
        tolerances_for_hpa(behavior, self.tolerance)
    }
}

/// The per-direction tolerances: `behavior.scaleUp.tolerance` / `behavior.scaleDown.tolerance`
/// where set, the controller-wide `default_tolerance` elsewhere (HPAConfigurableTolerance).
/// Mirrors `tolerancesForHpa`.
pub fn tolerances_for_hpa(
    behavior: Option<&HorizontalPodAutoscalerBehavior>,
    default_tolerance: f64,
) -> Tolerances {
    let mut tolerances = Tolerances::uniform(default_tolerance);
    let Some(behavior) = behavior else {
        return tolerances;
    };
    let read = |rules: Option<&k8s_openapi::api::autoscaling::v2::HPAScalingRules>| {
        rules
            .and_then(|r| r.tolerance.as_ref())
            .and_then(|q| quantity::approximate_f64(&q.0).ok())
    };
    if let Some(t) = read(behavior.scale_down.as_ref()) {
        tolerances.scale_down = t;
    }
    if let Some(t) = read(behavior.scale_up.as_ref()) {
        tolerances.scale_up = t;
    }
    tolerances
}

/// What was observed for one metric of the manifest, in the order of `spec.metrics`.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricObservation {
    /// An External metric: the value of every series the metric's selector matched, in
    /// thousandths of the unit (a queue depth of 120 is `120_000`). They are summed.
    External(Vec<i64>),
    /// An Object metric's value, in thousandths.
    Object(i64),
    /// A Pods metric: one sample per pod, in thousandths.
    Pods(PodMetricsInfo),
    /// A Resource or ContainerResource metric: usage per pod (of the named container for
    /// ContainerResource), in thousandths (millicores for CPU).
    Resource(PodMetricsInfo),
    /// The metric could not be read; the text says why. The metric is then invalid for this
    /// evaluation, as when the controller's metrics client fails.
    Unavailable(String),
}

impl MetricObservation {
    /// An External metric with a single series of `units` whole units (e.g. a queue depth).
    pub fn external_units(units: i64) -> Self {
        MetricObservation::External(vec![units.saturating_mul(1000)])
    }

    /// An External metric with a single series given as a Kubernetes quantity ("1.5", "200m").
    pub fn external_quantity(text: &str) -> Result<Self, quantity::QuantityError> {
        Ok(MetricObservation::External(vec![quantity::milli_value(
            text,
        )?]))
    }

    fn kind(&self) -> &'static str {
        match self {
            MetricObservation::External(_) => "External",
            MetricObservation::Object(_) => "Object",
            MetricObservation::Pods(_) => "Pods",
            MetricObservation::Resource(_) => "Resource",
            MetricObservation::Unavailable(_) => "Unavailable",
        }
    }
}

/// The current value the status reports for a metric (`status.currentMetrics[].*.current`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CurrentMetricValue {
    /// The total value, in thousandths, for Value targets.
    pub value: Option<i64>,
    /// The value per pod, in thousandths, for AverageValue and Utilization targets.
    pub average_value: Option<i64>,
    /// Percent of the requests, for Utilization targets.
    pub average_utilization: Option<i32>,
}

/// A valid metric's proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricProposal {
    /// The replica count this metric asks for.
    pub replicas: i32,
    /// The controller's description of the metric, e.g. `pods metric qps`.
    pub metric_name: String,
    /// The current value.
    pub current: CurrentMetricValue,
}

/// Why a metric gave no proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricFailure {
    /// The `ScalingActive` condition this failure sets when it decides the evaluation, e.g.
    /// reason `FailedGetExternalMetric`.
    pub condition: ConditionChange,
    /// The error the controller reports for the metric.
    pub error: String,
}

fn failure(reason: &str, error: impl Into<String>) -> MetricFailure {
    let error = error.into();
    MetricFailure {
        condition: ConditionChange::new(
            ConditionType::ScalingActive,
            ConditionStatus::False,
            reason,
            format!("the HPA was unable to compute the replica count: {error}"),
        ),
        error,
    }
}

/// The inputs every metric calculation shares.
#[derive(Clone, Copy, Debug)]
pub struct MetricContext<'a> {
    /// The scale target's `spec.replicas` (the current count).
    pub spec_replicas: i32,
    /// The scale target's `status.replicas` (pods that exist).
    pub status_replicas: i32,
    /// The pods the scale target's selector matches.
    pub pods: &'a [Pod],
    /// The tolerances in force.
    pub tolerances: Tolerances,
    /// The CPU timing settings.
    pub calculator: ReplicaCalculator,
    /// The HPA's namespace, for messages.
    pub namespace: &'a str,
    /// The time of the evaluation.
    pub now: Timestamp,
}

/// Formats a label selector as the controller's `%+v` does, for metric descriptions.
fn describe_selector(selector: Option<&LabelSelector>) -> String {
    let Some(selector) = selector else {
        return "nil".to_string();
    };
    let labels: String = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {v},"))
        .collect();
    let expressions: String = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                e.key,
                e.operator,
                e.values.as_deref().unwrap_or_default().join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}"
    )
}

fn target_milli(
    target: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    reason: &str,
) -> Result<Option<i64>, MetricFailure> {
    target
        .map(|q| quantity::milli_value(&q.0).map_err(|e| failure(reason, e.to_string())))
        .transpose()
}

fn mismatch(reason: &str, observation: &MetricObservation, spec_type: &str) -> MetricFailure {
    failure(
        reason,
        format!(
            "the observation is of kind {} but the metric is of type {spec_type}",
            observation.kind()
        ),
    )
}

/// The proposal of one metric, or why there is none. The metric's value comes in as
/// `observation` where the controller would query a metrics API. Mirrors
/// `computeReplicasForMetric` and the `computeStatusFor*Metric` functions.
pub fn compute_replicas_for_metric(
    spec: &MetricSpec,
    observation: &MetricObservation,
    ctx: &MetricContext<'_>,
) -> Result<MetricProposal, MetricFailure> {
    match spec.type_.as_str() {
        "Object" => compute_status_for_object_metric(spec, observation, ctx),
        "Pods" => compute_status_for_pods_metric(spec, observation, ctx),
        "Resource" => compute_status_for_resource_metric(spec, observation, ctx, false),
        "ContainerResource" => compute_status_for_resource_metric(spec, observation, ctx, true),
        "External" => compute_status_for_external_metric(spec, observation, ctx),
        other => Err(failure(
            "InvalidMetricSourceType",
            format!("unknown metric source type {other:?}"),
        )),
    }
}

fn compute_status_for_object_metric(
    spec: &MetricSpec,
    observation: &MetricObservation,
    ctx: &MetricContext<'_>,
) -> Result<MetricProposal, MetricFailure> {
    const REASON: &str = "FailedGetObjectMetric";
    let Some(object) = &spec.object else {
        return Err(failure(REASON, "invalid object metric source: neither a value target nor an average value target was set"));
    };
    let name = &object.metric.name;
    let usage = match observation {
        MetricObservation::Object(v) => *v,
        MetricObservation::Unavailable(e) => {
            return Err(failure(
                REASON,
                format!(
                    "unable to get metric {name}: {} on {} {}/{e}",
                    object.described_object.kind, ctx.namespace, object.described_object.name
                ),
            ))
        }
        other => return Err(mismatch(REASON, other, "Object")),
    };
    let target = &object.target;
    if let (true, Some(value)) = (
        target.type_ == "Value",
        target_milli(target.value.as_ref(), REASON)?,
    ) {
        let result =
            get_object_metric_replicas(ctx.spec_replicas, value, ctx.tolerances, usage, ctx.pods)
                .map_err(|e| failure(REASON, e.to_string()))?;
        return Ok(MetricProposal {
            replicas: result.replica_count,
            metric_name: format!("{} metric {name}", object.described_object.kind),
            current: CurrentMetricValue {
                value: Some(result.usage),
                ..CurrentMetricValue::default()
            },
        });
    }
    if let (true, Some(average)) = (
        target.type_ == "AverageValue",
        target_milli(target.average_value.as_ref(), REASON)?,
    ) {
        let result =
            get_object_per_pod_metric_replicas(ctx.status_replicas, average, ctx.tolerances, usage);
        return Ok(MetricProposal {
            replicas: result.replica_count,
            // The controller describes per-pod object metrics this way.
            metric_name: format!(
                "external metric {name}({})",
                describe_selector(object.metric.selector.as_ref())
            ),
            current: CurrentMetricValue {
                average_value: Some(result.usage),
                ..CurrentMetricValue::default()
            },
        });
    }
    Err(failure(
        REASON,
        "invalid object metric source: neither a value target nor an average value target was set",
    ))
}

fn compute_status_for_pods_metric(
    spec: &MetricSpec,
    observation: &MetricObservation,
    ctx: &MetricContext<'_>,
) -> Result<MetricProposal, MetricFailure> {
    const REASON: &str = "FailedGetPodsMetric";
    let Some(pods) = &spec.pods else {
        return Err(failure(
            REASON,
            "invalid pods metric source: no pods metric was set",
        ));
    };
    let name = &pods.metric.name;
    let metrics = match observation {
        MetricObservation::Pods(m) if m.is_empty() => {
            return Err(failure(
                REASON,
                format!("unable to get metric {name}: no metrics returned from custom metrics API"),
            ))
        }
        MetricObservation::Pods(m) => m,
        MetricObservation::Unavailable(e) => {
            return Err(failure(REASON, format!("unable to get metric {name}: {e}")))
        }
        other => return Err(mismatch(REASON, other, "Pods")),
    };
    let Some(target) = target_milli(pods.target.average_value.as_ref(), REASON)? else {
        return Err(failure(
            REASON,
            "invalid pods metric source: no average value target was set",
        ));
    };
    let result = ctx
        .calculator
        .get_metric_replicas(
            ctx.spec_replicas,
            target,
            ctx.tolerances,
            ctx.pods,
            metrics,
            ctx.now,
        )
        .map_err(|e| failure(REASON, e.to_string()))?;
    Ok(MetricProposal {
        replicas: result.replica_count,
        metric_name: format!("pods metric {name}"),
        current: CurrentMetricValue {
            average_value: Some(result.usage),
            ..CurrentMetricValue::default()
        },
    })
}

fn compute_status_for_resource_metric(
    spec: &MetricSpec,
    observation: &MetricObservation,
    ctx: &MetricContext<'_>,
    per_container: bool,
) -> Result<MetricProposal, MetricFailure> {
    let (reason, resource, container, target): (&str, &str, &str, &MetricTarget) =
        match (per_container, &spec.resource, &spec.container_resource) {
            (false, Some(r), _) => ("FailedGetResourceMetric", &r.name, "", &r.target),
            (true, _, Some(c)) => (
                "FailedGetContainerResourceMetric",
                &c.name,
                &c.container,
                &c.target,
            ),
            (false, None, _) => {
                return Err(failure(
                    "FailedGetResourceMetric",
                    "invalid resource metric source: no resource was set",
                ))
            }
            (true, _, None) => {
                return Err(failure(
                    "FailedGetContainerResourceMetric",
                    "invalid container resource metric source: no container resource was set",
                ))
            }
        };
    let what = if target.average_value.is_some() {
        "usage"
    } else {
        "utilization"
    };
    let fail = |error: String| failure(reason, format!("failed to get {resource} {what}: {error}"));
    let metrics = match observation {
        MetricObservation::Resource(m) if m.is_empty() => {
            return Err(fail(format!("unable to get metrics for resource {resource}: no metrics returned from resource metrics API")))
        }
        MetricObservation::Resource(m) => m,
        MetricObservation::Unavailable(e) => {
            return Err(fail(format!("unable to get metrics for resource {resource}: {e}")))
        }
        other => return Err(mismatch(reason, other, &spec.type_)),
    };
    if let Some(average) = target_milli(target.average_value.as_ref(), reason)? {
        let result = ctx
            .calculator
            .get_raw_resource_replicas(
                ctx.spec_replicas,
                average,
                resource,
                ctx.tolerances,
                ctx.pods,
                metrics,
                ctx.now,
            )
            .map_err(|e| fail(e.to_string()))?;
        return Ok(MetricProposal {
            replicas: result.replica_count,
            metric_name: format!("{resource} resource"),
            current: CurrentMetricValue {
                average_value: Some(result.usage),
                ..CurrentMetricValue::default()
            },
        });
    }
    let Some(target_utilization) = target.average_utilization else {
        return Err(failure(
            reason,
            "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set",
        ));
    };
    let result = ctx
        .calculator
        .get_resource_replicas(
            ctx.spec_replicas,
            target_utilization,
            resource,
            ctx.tolerances,
            ctx.pods,
            metrics,
            container,
            ctx.now,
        )
        .map_err(|e| fail(e.to_string()))?;
    let metric_name = if per_container {
        format!("{resource} container resource utilization (percentage of request)")
    } else {
        format!("{resource} resource utilization (percentage of request)")
    };
    Ok(MetricProposal {
        replicas: result.replica_count,
        metric_name,
        current: CurrentMetricValue {
            average_value: Some(result.raw_utilization),
            average_utilization: Some(result.utilization),
            ..CurrentMetricValue::default()
        },
    })
}

fn compute_status_for_external_metric(
    spec: &MetricSpec,
    observation: &MetricObservation,
    ctx: &MetricContext<'_>,
) -> Result<MetricProposal, MetricFailure> {
    const REASON: &str = "FailedGetExternalMetric";
    let Some(external) = &spec.external else {
        return Err(failure(REASON, "invalid external metric source: neither a value target nor an average value target was set"));
    };
    let name = &external.metric.name;
    let selector = describe_selector(external.metric.selector.as_ref());
    let values = match observation {
        MetricObservation::External(v) if v.is_empty() => {
            return Err(failure(
                REASON,
                format!("unable to get external metric {}/{name}/{selector}: no metrics returned from external metrics API", ctx.namespace),
            ))
        }
        MetricObservation::External(v) => v,
        MetricObservation::Unavailable(e) => {
            return Err(failure(REASON, format!("unable to get external metric {}/{name}/{selector}: {e}", ctx.namespace)))
        }
        other => return Err(mismatch(REASON, other, "External")),
    };
    let metric_name = format!("external metric {name}({selector})");
    if let Some(average) = target_milli(external.target.average_value.as_ref(), REASON)? {
        let result = get_external_per_pod_metric_replicas(
            ctx.status_replicas,
            average,
            ctx.tolerances,
            values,
        );
        return Ok(MetricProposal {
            replicas: result.replica_count,
            metric_name,
            current: CurrentMetricValue {
                average_value: Some(result.usage),
                ..CurrentMetricValue::default()
            },
        });
    }
    if let Some(value) = target_milli(external.target.value.as_ref(), REASON)? {
        let result = get_external_metric_replicas(
            ctx.spec_replicas,
            value,
            ctx.tolerances,
            values,
            ctx.pods,
        )
        .map_err(|e| failure(REASON, format!("unable to calculate ready pods: {e}")))?;
        return Ok(MetricProposal {
            replicas: result.replica_count,
            metric_name,
            current: CurrentMetricValue {
                value: Some(result.usage),
                ..CurrentMetricValue::default()
            },
        });
    }
    Err(failure(REASON, "invalid external metric source: neither a value target nor an average value target was set"))
}

/// All metrics combined. Mirrors the results of `computeReplicasForMetrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsOutcome {
    /// The highest valid proposal, or `None` when the evaluation must stop (every metric is
    /// invalid, or some are and the valid ones would scale down).
    pub replicas: Option<i32>,
    /// The description of the metric that gave `replicas`.
    pub metric_name: String,
    /// Each metric's result, in the order of `spec.metrics`.
    pub metrics: Vec<Result<MetricProposal, MetricFailure>>,
    /// The `ScalingActive` condition: `ValidMetricFound`, or the first invalid metric's.
    pub scaling_active: ConditionChange,
    /// The controller's error when some metric was invalid.
    pub error: Option<String>,
}

/// Combines the metrics: the maximum over valid proposals. Invalid metrics are ignored while the
/// valid ones do not ask for fewer replicas than `spec_replicas`; otherwise (or when all are
/// invalid) nothing is proposed and the first invalid metric's condition is reported. Mirrors
/// `computeReplicasForMetrics`.
pub fn compute_replicas_for_metrics(
    specs: &[MetricSpec],
    observations: &[MetricObservation],
    ctx: &MetricContext<'_>,
) -> MetricsOutcome {
    let missing =
        MetricObservation::Unavailable("no observation was supplied for this metric".to_string());
    let metrics: Vec<_> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            compute_replicas_for_metric(spec, observations.get(i).unwrap_or(&missing), ctx)
        })
        .collect();

    let mut replicas = 0;
    let mut metric_name = String::new();
    let mut invalid = 0;
    let mut first_failure: Option<&MetricFailure> = None;
    for result in &metrics {
        match result {
            Err(failure) => {
                first_failure.get_or_insert(failure);
                invalid += 1;
            }
            Ok(proposal) => {
                if replicas == 0 || proposal.replicas > replicas {
                    replicas = proposal.replicas;
                    metric_name.clone_from(&proposal.metric_name);
                }
            }
        }
    }
    let error = first_failure.map(|f| {
        format!(
            "invalid metrics ({invalid} invalid out of {}), first error is: {}",
            specs.len(),
            f.error
        )
    });
    let scaling_active;
    let outcome_replicas;
    if invalid >= specs.len() || (invalid > 0 && replicas < ctx.spec_replicas) {
        scaling_active = first_failure
            .map(|f| f.condition.clone())
            .unwrap_or_else(|| {
                ConditionChange::new(
                    ConditionType::ScalingActive,
                    ConditionStatus::False,
                    "InvalidMetricSourceType",
                    "the HPA was unable to compute the replica count: no metrics are specified",
                )
            });
        outcome_replicas = None;
    } else {
        scaling_active = ConditionChange::new(
            ConditionType::ScalingActive,
            ConditionStatus::True,
            "ValidMetricFound",
            format!(
                "the HPA was able to successfully calculate a replica count from {metric_name}"
            ),
        );
        outcome_replicas = Some(replicas);
    }
    MetricsOutcome {
        replicas: outcome_replicas,
        metric_name,
        metrics,
        scaling_active,
        error,
    }
}

/// The scale target as the controller reads it each time: its scale subresource and its pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleTarget {
    /// `spec.replicas`: the replica count currently asked for (the controller's current count).
    pub spec_replicas: i32,
    /// `status.replicas`: how many replicas exist (used by AverageValue targets).
    pub status_replicas: i32,
    /// The pods the target's selector matches.
    pub pods: Vec<Pod>,
}

impl ScaleTarget {
    /// A target of `current` workers of which `ready` are ready: `current` running pods, the
    /// first `ready` of them ready. Enough for External and Object metrics, which only count
    /// ready pods.
    pub fn workers(current: i32, ready: i32) -> Self {
        let ready = ready.clamp(0, current.max(0));
        let pods = (0..current.max(0))
            .map(|i| Pod::running(format!("worker-{i}"), i < ready))
            .collect();
        ScaleTarget {
            spec_replicas: current,
            status_replicas: current,
            pods,
        }
    }
}

/// What one evaluation decided, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleDecision {
    /// The current replica count the decision started from.
    pub current_replicas: i32,
    /// The replica count the target should have (equal to `current_replicas` when not
    /// rescaling).
    pub desired_replicas: i32,
    /// Whether the target is to be rescaled to `desired_replicas` now.
    pub rescale: bool,
    /// The controller's rescale reason, e.g. `external metric queue(nil) above target`.
    pub reason: Option<String>,
    /// Each metric's result, in the order of `spec.metrics` (empty when no metric was read).
    pub metrics: Vec<Result<MetricProposal, MetricFailure>>,
    /// The status conditions after this evaluation (AbleToScale, ScalingActive,
    /// ScalingLimited, and ScaledToZero with HPAScaleToZero), as `kubectl describe hpa` would
    /// show them.
    pub conditions: Vec<Condition>,
    /// The error the controller would log for this evaluation, if any.
    pub error: Option<String>,
}

impl ScaleDecision {
    /// The condition of the given type, if set.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The reason of each condition set, as one line for a decision log:
    /// `AbleToScale=... ScalingActive=... ScalingLimited=... ScaledToZero=...`, always in that
    /// order, a condition not set left out (ScaledToZero appears only with HPAScaleToZero,
    /// from the first rescale on).
    pub fn reasons(&self) -> String {
        [
            ConditionType::AbleToScale,
            ConditionType::ScalingActive,
            ConditionType::ScalingLimited,
            ConditionType::ScaledToZero,
        ]
        .into_iter()
        .filter_map(|t| self.condition(t).map(|c| format!("{t}={}", c.reason)))
        .collect::<Vec<_>>()
        .join(" ")
    }
}

/// What the controller remembers about one autoscaler between evaluations: what a cluster keeps
/// in the HPA's status (conditions, last scale time, desired count) and in the controller's
/// memory (recommendations, scale events). Plain data, serializable, so that a driver can
/// store it and resume with [`Autoscaler::from_state`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalerState {
    /// Unstabilized recommendations, for the stabilization windows.
    #[serde(default)]
    pub recommendations: Vec<TimestampedRecommendation>,
    /// Scale-ups, for the scale-up rate limits (recorded only with `behavior`).
    #[serde(default)]
    pub scale_up_events: Vec<TimestampedScaleEvent>,
    /// Scale-downs, for the scale-down rate limits (recorded only with `behavior`).
    #[serde(default)]
    pub scale_down_events: Vec<TimestampedScaleEvent>,
    /// The status conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// When the target was last rescaled.
    #[serde(default)]
    pub last_scale_time: Option<Timestamp>,
    /// The desired replica count last reported in the status.
    #[serde(default)]
    pub desired_replicas: i32,
}

impl AutoscalerState {
    /// The state a controller starts from when it reads an HPA's `status`: its conditions
    /// (those of a type this crate knows), last scale time and desired count, with no history
    /// (the controller keeps recommendations and scale events in memory only). Times are read
    /// as since the Unix epoch, so evaluations must then use the same epoch.
    pub fn from_status(status: &HorizontalPodAutoscalerStatus) -> Self {
        let time = |t: Option<&Time>| t.map(|t| Timestamp::from_nanos(t.0.as_nanosecond()));
        let conditions = status
            .conditions
            .iter()
            .flatten()
            .filter_map(|c| {
                let type_ = match c.type_.as_str() {
                    "AbleToScale" => ConditionType::AbleToScale,
                    "ScalingActive" => ConditionType::ScalingActive,
                    "ScalingLimited" => ConditionType::ScalingLimited,
                    "ScaledToZero" => ConditionType::ScaledToZero,
                    _ => return None,
                };
                let status = match c.status.as_str() {
                    "True" => ConditionStatus::True,
                    "False" => ConditionStatus::False,
                    _ => ConditionStatus::Unknown,
                };
                Some(Condition {
                    type_,
                    status,
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                    last_transition_time: time(c.last_transition_time.as_ref()).unwrap_or_default(),
                })
            })
            .collect();
        AutoscalerState {
            conditions,
            last_scale_time: time(status.last_scale_time.as_ref()),
            desired_replicas: status.desired_replicas,
            ..AutoscalerState::default()
        }
    }

    /// Whether the status carries `ScaledToZero` True: the controller itself took the target
    /// to zero. Mirrors `getScaledToZeroConditionStatus`.
    pub fn scaled_to_zero(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == ConditionType::ScaledToZero && c.status == ConditionStatus::True)
    }
}

/// Whether any metric is of type Object or External, the metrics that can be read with no
/// pod running. Mirrors `hasObjectOrExternalMetrics`.
pub fn has_object_or_external_metrics(specs: &[MetricSpec]) -> bool {
    specs
        .iter()
        .any(|m| m.type_ == "Object" || m.type_ == "External")
}

/// Whether a target at 0 replicas is evaluated from its metrics (`true`) or left alone with
/// `ScalingActive` False, reason `ScalingDisabled` (`false`): only when the controller took it
/// to zero (`scaled_to_zero_condition`, which needs HPAScaleToZero) and either an Object or
/// External metric can wake it (`can_scale_from_zero`) or `minReplicas` has since been raised
/// above 0. Mirrors `shouldComputeMetricsForZeroReplicas`.
pub fn should_compute_metrics_for_zero_replicas(
    min_replicas: i32,
    scaled_to_zero_condition: bool,
    can_scale_from_zero: bool,
) -> bool {
    (min_replicas != 0 && scaled_to_zero_condition) || can_scale_from_zero
}

/// One HorizontalPodAutoscaler and the controller's memory of it: feed it the target and the
/// metric values at each tick, get a [`ScaleDecision`] back.
#[derive(Clone, Debug)]
pub struct Autoscaler {
    hpa: HorizontalPodAutoscaler,
    config: ControllerConfig,
    state: AutoscalerState,
}

impl Autoscaler {
    /// Parses (strictly), defaults and validates a manifest, with the newest stable release's
    /// settings ([`ControllerConfig::default`]).
    pub fn from_yaml(yaml: &str) -> Result<Self, ManifestError> {
        Self::from_yaml_with(yaml, ControllerConfig::default())
    }

    /// [`Autoscaler::from_yaml`] with the given controller settings; validation follows their
    /// HPAScaleToZero gate.
    pub fn from_yaml_with(yaml: &str, config: ControllerConfig) -> Result<Self, ManifestError> {
        Self::new(manifest::read_manifest(yaml)?, config)
    }

    /// Defaults and validates an already-parsed object.
    pub fn new(
        hpa: HorizontalPodAutoscaler,
        config: ControllerConfig,
    ) -> Result<Self, ManifestError> {
        let hpa = manifest::prepare_with(hpa, config.feature_gates.hpa_scale_to_zero)?;
        Ok(Self::from_state(hpa, config, AutoscalerState::default()))
    }

    /// An autoscaler for an object as the API server stores it, resuming from `state`: no
    /// defaults are applied and nothing is validated, as the controller reconciles whatever is
    /// stored, including objects that older API versions accepted.
    pub fn from_state(
        hpa: HorizontalPodAutoscaler,
        config: ControllerConfig,
        state: AutoscalerState,
    ) -> Self {
        Autoscaler { hpa, config, state }
    }

    /// The defaulted manifest.
    pub fn hpa(&self) -> &HorizontalPodAutoscaler {
        &self.hpa
    }

    /// The metrics to observe each tick, in the order [`Autoscaler::evaluate`] expects them.
    pub fn metric_specs(&self) -> &[MetricSpec] {
        self.hpa.spec.metrics.as_deref().unwrap_or_default()
    }

    /// The controller settings in use.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The remembered recommendations, scale events and conditions: store them to resume
    /// later with [`Autoscaler::from_state`].
    pub fn state(&self) -> &AutoscalerState {
        &self.state
    }

    /// An autoscaler for an object as the API server stores it, status included, as the
    /// controller meets it on its first reconcile: [`Autoscaler::from_state`] with
    /// [`AutoscalerState::from_status`] (Unix-epoch times).
    pub fn from_object(hpa: HorizontalPodAutoscaler, config: ControllerConfig) -> Self {
        let state = hpa
            .status
            .as_ref()
            .map(AutoscalerState::from_status)
            .unwrap_or_default();
        Self::from_state(hpa, config, state)
    }

    /// Replaces the remembered state, as a controller does when it reads the HPA's status.
    pub fn set_state(&mut self, state: AutoscalerState) {
        self.state = state;
    }

    /// One reconcile at `now`: `target` is the scale target as it is now and `observations`
    /// holds one entry per [`Autoscaler::metric_specs`] entry (a missing entry counts as
    /// unavailable). When the decision says `rescale`, the caller is expected to set the
    /// target to `desired_replicas`; the next evaluation reads whatever count the target then
    /// has. Mirrors `reconcileAutoscaler`.
    pub fn evaluate(
        &mut self,
        now: Timestamp,
        target: &ScaleTarget,
        observations: &[MetricObservation],
    ) -> ScaleDecision {
        let spec = &self.hpa.spec;
        let config = &self.config;
        let state = &mut self.state;
        let current_replicas = target.spec_replicas;
        ConditionChange::new(
            ConditionType::AbleToScale,
            ConditionStatus::True,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        )
        .apply(&mut state.conditions, now);
        record_initial_recommendation(&mut state.recommendations, current_replicas, now);

        let scale_to_zero_enabled = config.feature_gates.hpa_scale_to_zero;
        let metric_specs = spec.metrics.as_deref().unwrap_or_default();
        let has_object_or_external = has_object_or_external_metrics(metric_specs);
        let scaled_to_zero_condition = scale_to_zero_enabled && state.scaled_to_zero();
        let can_scale_from_zero = scaled_to_zero_condition && has_object_or_external;

        let min_replicas = spec.min_replicas.unwrap_or(1);
        let max_replicas = spec.max_replicas;
        let mut metrics = Vec::new();
        let mut error = None;
        let mut reason = None;
        let mut desired_replicas;
        let rescale;

        if current_replicas == 0
            && !should_compute_metrics_for_zero_replicas(
                min_replicas,
                scaled_to_zero_condition,
                can_scale_from_zero,
            )
        {
            desired_replicas = 0;
            rescale = false;
            ConditionChange::new(
                ConditionType::ScalingActive,
                ConditionStatus::False,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            )
            .apply(&mut state.conditions, now);
            if !scale_to_zero_enabled {
                remove_condition(&mut state.conditions, ConditionType::ScaledToZero);
            }
        } else if current_replicas != 0 && current_replicas > max_replicas {
            reason = Some("Current number of replicas above Spec.MaxReplicas".to_string());
            desired_replicas = max_replicas;
            rescale = desired_replicas != current_replicas;
        } else if current_replicas != 0 && current_replicas < min_replicas {
            reason = Some("Current number of replicas below Spec.MinReplicas".to_string());
            desired_replicas = min_replicas;
            rescale = desired_replicas != current_replicas;
        } else {
            let ctx = MetricContext {
                spec_replicas: current_replicas,
                status_replicas: target.status_replicas,
                pods: &target.pods,
                tolerances: config.tolerances(spec.behavior.as_ref()),
                calculator: config.replica_calculator(),
                namespace: self.hpa.metadata.namespace.as_deref().unwrap_or("default"),
                now,
            };
            let outcome = compute_replicas_for_metrics(metric_specs, observations, &ctx);
            outcome.scaling_active.apply(&mut state.conditions, now);
            metrics = outcome.metrics;
            error = outcome.error;
            let Some(metric_desired) = outcome.replicas else {
                // Nothing to act on: the status keeps its previous desired count.
                return ScaleDecision {
                    current_replicas,
                    desired_replicas: current_replicas,
                    rescale: false,
                    reason: None,
                    metrics,
                    conditions: state.conditions.clone(),
                    error,
                };
            };
            let prenormalized = metric_desired.max(0);
            if prenormalized > current_replicas {
                reason = Some(format!("{} above target", outcome.metric_name));
            } else if prenormalized < current_replicas {
                reason = Some("All metrics below target".to_string());
            }
            let normalized = match &spec.behavior {
                None => normalize_desired_replicas(
                    &mut state.recommendations,
                    current_replicas,
                    prenormalized,
                    min_replicas,
                    max_replicas,
                    config.downscale_stabilization_window,
                    config.scale_up_limit,
                    now,
                ),
                Some(behavior) => normalize_desired_replicas_with_behaviors(
                    &mut state.recommendations,
                    &state.scale_up_events,
                    &state.scale_down_events,
                    behavior,
                    current_replicas,
                    prenormalized,
                    min_replicas,
                    max_replicas,
                    config.downscale_stabilization_window,
                    now,
                ),
            };
            normalized.able_to_scale.apply(&mut state.conditions, now);
            normalized.scaling_limited.apply(&mut state.conditions, now);
            desired_replicas = normalized.desired_replicas;
            // Waking a target the controller took to zero, after minReplicas was raised.
            if current_replicas == 0
                && min_replicas != 0
                && scaled_to_zero_condition
                && desired_replicas < min_replicas
            {
                desired_replicas = min_replicas;
                if reason.is_none() {
                    reason = Some("Current number of replicas below Spec.MinReplicas".to_string());
                }
            }
            rescale = desired_replicas != current_replicas;
        }

        let desired_replicas = if rescale {
            ConditionChange::new(
                ConditionType::AbleToScale,
                ConditionStatus::True,
                "SucceededRescale",
                format!(
                    "the HPA controller was able to update the target scale to {desired_replicas}"
                ),
            )
            .apply(&mut state.conditions, now);
            // Set on every rescale so that it is never stale; removed while the gate is off.
            if scale_to_zero_enabled {
                scaled_to_zero_change(
                    current_replicas,
                    desired_replicas,
                    min_replicas,
                    has_object_or_external,
                )
                .apply(&mut state.conditions, now);
            } else {
                remove_condition(&mut state.conditions, ConditionType::ScaledToZero);
            }
            store_scale_event(
                spec.behavior.as_ref(),
                &mut state.scale_up_events,
                &mut state.scale_down_events,
                current_replicas,
                desired_replicas,
                now,
            );
            state.last_scale_time = Some(now);
            desired_replicas
        } else {
            reason = None;
            current_replicas
        };
        state.desired_replicas = desired_replicas;
        ScaleDecision {
            current_replicas,
            desired_replicas,
            rescale,
            reason,
            metrics,
            conditions: state.conditions.clone(),
            error,
        }
    }
}

/// The `ScaledToZero` condition after a rescale (HPAScaleToZero on): True when the controller
/// takes the target from above 0 to 0 with `minReplicas` 0 and an Object or External metric
/// to wake it, otherwise False with reason `NotScaledToZero`.
pub fn scaled_to_zero_change(
    current_replicas: i32,
    desired_replicas: i32,
    min_replicas: i32,
    has_object_or_external: bool,
) -> ConditionChange {
    if current_replicas > 0 && desired_replicas == 0 && min_replicas == 0 && has_object_or_external
    {
        ConditionChange::new(
            ConditionType::ScaledToZero,
            ConditionStatus::True,
            "ScaledToZero",
            "the HPA controller scaled the workload to zero",
        )
    } else {
        ConditionChange::new(
            ConditionType::ScaledToZero,
            ConditionStatus::False,
            "NotScaledToZero",
            "the HPA controller did not scale the workload to zero",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(conditions: &[(ConditionType, ConditionStatus, &str)]) -> ScaleDecision {
        ScaleDecision {
            current_replicas: 1,
            desired_replicas: 1,
            rescale: false,
            reason: None,
            metrics: Vec::new(),
            conditions: conditions
                .iter()
                .map(|(t, status, reason)| {
                    Condition::new(*t, *status, *reason, "", Timestamp::EPOCH)
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn reasons_name_each_condition_in_describe_order_with_scaled_to_zero_last() {
        // Stored out of order, as the state after a resume may be.
        let d = decision(&[
            (
                ConditionType::ScaledToZero,
                ConditionStatus::True,
                "ScaledToZero",
            ),
            (
                ConditionType::ScalingLimited,
                ConditionStatus::True,
                "TooFewReplicas",
            ),
            (
                ConditionType::AbleToScale,
                ConditionStatus::True,
                "SucceededRescale",
            ),
            (
                ConditionType::ScalingActive,
                ConditionStatus::True,
                "ValidMetricFound",
            ),
        ]);
        assert_eq!(
            d.reasons(),
            "AbleToScale=SucceededRescale ScalingActive=ValidMetricFound \
             ScalingLimited=TooFewReplicas ScaledToZero=ScaledToZero"
        );
    }

    #[test]
    fn reasons_leave_out_a_condition_not_set() {
        let d = decision(&[
            (
                ConditionType::ScalingActive,
                ConditionStatus::False,
                "ScalingDisabled",
            ),
            (
                ConditionType::AbleToScale,
                ConditionStatus::True,
                "SucceededGetScale",
            ),
        ]);
        assert_eq!(
            d.reasons(),
            "AbleToScale=SucceededGetScale ScalingActive=ScalingDisabled"
        );
        assert_eq!(decision(&[]).reasons(), "");
    }
}
