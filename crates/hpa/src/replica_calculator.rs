//! Per-metric replica calculation. Mirrors `pkg/controller/podautoscaler/replica_calculator.go`
//! and the ratio helpers of `metrics/utilization.go`; the pods and metric samples the controller
//! would list from the API are passed in as plain values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use thiserror::Error;

use crate::conditions::ConditionStatus;
use crate::time::Timestamp;

/// The default tolerance: no change while the usage ratio is within 10 % of 1.
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// The controller's default `--horizontal-pod-autoscaler-cpu-initialization-period`.
pub const DEFAULT_CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(5 * 60);
/// The controller's default `--horizontal-pod-autoscaler-initial-readiness-delay`.
pub const DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS: Duration = Duration::from_secs(30);

/// The resource name whose samples are subject to the CPU readiness rules.
pub const RESOURCE_CPU: &str = "cpu";

/// How far the usage ratio may sit below and above 1 before the replica count changes.
/// Mirrors `Tolerances`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// Allowed shortfall below a ratio of 1 (scale-down side).
    pub scale_down: f64,
    /// Allowed excess above a ratio of 1 (scale-up side).
    pub scale_up: f64,
}

impl Tolerances {
    /// The same tolerance in both directions.
    pub fn uniform(tolerance: f64) -> Self {
        Tolerances {
            scale_down: tolerance,
            scale_up: tolerance,
        }
    }

    /// Whether `usage_ratio` is close enough to 1 to keep the current count. Mirrors
    /// `Tolerances.isWithin`.
    pub fn is_within(&self, usage_ratio: f64) -> bool {
        (1.0 - self.scale_down) <= usage_ratio && usage_ratio <= (1.0 + self.scale_up)
    }
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances::uniform(DEFAULT_TOLERANCE)
    }
}

/// One metric sample for one pod, as the metrics APIs return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodMetric {
    /// The value in thousandths of the metric's unit (millicores for CPU, milli-bytes for memory).
    pub value: i64,
    /// When the sample was taken (the end of its window).
    pub timestamp: Timestamp,
    /// The window the sample was averaged over.
    pub window: Duration,
}

impl PodMetric {
    /// A sample with no timing information, for metrics the readiness rules do not look at.
    pub fn value(value: i64) -> Self {
        PodMetric {
            value,
            timestamp: Timestamp::EPOCH,
            window: Duration::ZERO,
        }
    }
}

/// Samples by pod name. Mirrors `PodMetricsInfo`.
pub type PodMetricsInfo = BTreeMap<String, PodMetric>;

/// A pod's lifecycle phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    /// Accepted but not all containers are running yet.
    Pending,
    /// Bound to a node with at least one container running.
    Running,
    /// All containers terminated successfully.
    Succeeded,
    /// All containers terminated, at least one in failure.
    Failed,
    /// The state could not be obtained.
    Unknown,
}

/// The pod's `Ready` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodReadyCondition {
    /// Whether the pod is ready.
    pub status: ConditionStatus,
    /// When the readiness last changed.
    pub last_transition_time: Timestamp,
}

/// How a container takes part in its pod, which decides whether its requests count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerKind {
    /// A regular container: its requests count.
    App,
    /// An init container with `restartPolicy: Always` (a sidecar): its requests count.
    SidecarInit,
    /// A plain init container: its requests do not count.
    Init,
}

/// A container and its resource requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The container's name.
    pub name: String,
    /// Whether it is a regular, sidecar or init container.
    pub kind: ContainerKind,
    /// Requests by resource name, in thousandths (millicores, milli-bytes).
    pub requests: BTreeMap<String, i64>,
}

/// The parts of a pod the controller looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// The pod's name, which keys its metric samples.
    pub name: String,
    /// Its phase.
    pub phase: PodPhase,
    /// Whether a deletion timestamp is set (the pod is shutting down).
    pub deleting: bool,
    /// When the kubelet started the pod.
    pub start_time: Option<Timestamp>,
    /// Its `Ready` condition, when reported.
    pub ready: Option<PodReadyCondition>,
    /// Its containers, init containers included.
    pub containers: Vec<Container>,
    /// Pod-level requests (`spec.resources.requests`), which take precedence for Resource
    /// metrics when set.
    pub pod_requests: Option<BTreeMap<String, i64>>,
}

impl Pod {
    /// A running pod whose readiness is `ready`, started at the epoch, with no containers.
    pub fn running(name: impl Into<String>, ready: bool) -> Self {
        Pod {
            name: name.into(),
            phase: PodPhase::Running,
            deleting: false,
            start_time: Some(Timestamp::EPOCH),
            ready: Some(PodReadyCondition {
                status: if ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                last_transition_time: Timestamp::EPOCH,
            }),
            containers: Vec::new(),
            pod_requests: None,
        }
    }

    /// Whether the pod is running and its `Ready` condition is true, as `getReadyPodsCount`
    /// counts it.
    pub fn is_running_and_ready(&self) -> bool {
        self.phase == PodPhase::Running
            && self
                .ready
                .is_some_and(|ready| ready.status == ConditionStatus::True)
    }
}

/// Why a replica count could not be calculated; the messages are the controller's.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReplicaCalcError {
    /// The scale target's selector matched no pods.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// Every sample belonged to an ignored or unready pod.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetricsForTargetedPods,
    /// None of the samples belonged to a pod with a request.
    #[error("no metrics returned matched known pods")]
    NoMetricsMatchedKnownPods,
    /// A counted container has no request for the resource.
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        /// The resource.
        resource: String,
        /// The container without a request.
        container: String,
        /// The pod.
        pod: String,
    },
    /// Pod-level requests are set but lack the resource.
    #[error("missing pod-level request for {resource} in Pod {pod}")]
    MissingPodLevelRequest {
        /// The resource.
        resource: String,
        /// The pod.
        pod: String,
    },
    /// A ContainerResource metric names a container the pod does not have.
    #[error("container {container} not found in Pod {pod}")]
    ContainerNotFound {
        /// The container named by the metric.
        container: String,
        /// The pod.
        pod: String,
    },
}

/// The result of a utilization calculation. Mirrors the values `GetResourceReplicas` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceReplicas {
    /// The proposed replica count.
    pub replica_count: i32,
    /// The current utilization, in percent of the requests.
    pub utilization: i32,
    /// The current average usage per pod, in thousandths.
    pub raw_utilization: i64,
}

/// The result of a value-based calculation: proposal and the current usage the status reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricReplicas {
    /// The proposed replica count.
    pub replica_count: i32,
    /// The current usage (total, or per pod for average targets), in thousandths.
    pub usage: i64,
}

/// How pods split up for a calculation. Mirrors the results of `groupPods`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupedPods {
    /// Pods whose samples count.
    pub ready_pod_count: usize,
    /// Pending pods, and for CPU pods still initializing or never ready.
    pub unready_pods: BTreeSet<String>,
    /// Countable pods without a sample.
    pub missing_pods: BTreeSet<String>,
    /// Deleting and failed pods.
    pub ignored_pods: BTreeSet<String>,
}

/// Splits pods into ready, unready, missing and ignored (deleting and failed pods, and with
/// `ignore_succeeded_pods` succeeded ones too). For CPU, a pod still inside the
/// initialization period counts only when ready and sampled a full window after becoming ready;
/// after it, an unready pod is left out only when it never became ready within
/// `delay_of_initial_readiness_status` of starting. Mirrors `groupPods`.
pub fn group_pods(
    pods: &[Pod],
    metrics: &PodMetricsInfo,
    resource: &str,
    cpu_initialization_period: Duration,
    delay_of_initial_readiness_status: Duration,
    ignore_succeeded_pods: bool,
    now: Timestamp,
) -> GroupedPods {
    let mut grouped = GroupedPods::default();
    for pod in pods {
        let terminal = pod.phase == PodPhase::Failed
            || (ignore_succeeded_pods && pod.phase == PodPhase::Succeeded);
        if pod.deleting || terminal {
            grouped.ignored_pods.insert(pod.name.clone());
            continue;
        }
        if pod.phase == PodPhase::Pending {
            grouped.unready_pods.insert(pod.name.clone());
            continue;
        }
        let Some(metric) = metrics.get(&pod.name) else {
            grouped.missing_pods.insert(pod.name.clone());
            continue;
        };
        if resource == RESOURCE_CPU {
            let unready = match (pod.ready, pod.start_time) {
                (Some(condition), Some(start)) => {
                    let not_ready = condition.status == ConditionStatus::False;
                    if start + cpu_initialization_period > now {
                        not_ready
                            || metric.timestamp < condition.last_transition_time + metric.window
                    } else {
                        not_ready
                            && start + delay_of_initial_readiness_status
                                > condition.last_transition_time
                    }
                }
                _ => true,
            };
            if unready {
                grouped.unready_pods.insert(pod.name.clone());
                continue;
            }
        }
        grouped.ready_pod_count += 1;
    }
    grouped
}

fn remove_metrics_for_pods(metrics: &mut PodMetricsInfo, pods: &BTreeSet<String>) {
    for pod in pods {
        metrics.remove(pod);
    }
}

/// Each pod's request for `resource`: from the named container, else from the pod-level
/// requests when set, else summed over app and sidecar containers. Mirrors `calculateRequests`.
pub fn calculate_requests(
    pods: &[Pod],
    container: &str,
    resource: &str,
) -> Result<BTreeMap<String, i64>, ReplicaCalcError> {
    let mut requests = BTreeMap::new();
    for pod in pods {
        let use_pod_level = container.is_empty()
            && pod
                .pod_requests
                .as_ref()
                .is_some_and(|requests| !requests.is_empty());
        let request = if use_pod_level {
            pod.pod_requests
                .as_ref()
                .and_then(|requests| requests.get(resource).copied())
                .ok_or_else(|| ReplicaCalcError::MissingPodLevelRequest {
                    resource: resource.to_string(),
                    pod: pod.name.clone(),
                })?
        } else {
            container_requests(pod, container, resource)?
        };
        requests.insert(pod.name.clone(), request);
    }
    Ok(requests)
}

fn container_requests(pod: &Pod, container: &str, resource: &str) -> Result<i64, ReplicaCalcError> {
    // App containers first, then sidecars, as the controller appends them.
    let counted = pod
        .containers
        .iter()
        .filter(|c| c.kind == ContainerKind::App)
        .chain(
            pod.containers
                .iter()
                .filter(|c| c.kind == ContainerKind::SidecarInit),
        );
    let mut total: i64 = 0;
    for c in counted {
        if container.is_empty() || container == c.name {
            let request = c.requests.get(resource).copied().ok_or_else(|| {
                ReplicaCalcError::MissingRequest {
                    resource: resource.to_string(),
                    container: c.name.clone(),
                    pod: pod.name.clone(),
                }
            })?;
            total += request;
        }
        if container == c.name {
            return Ok(total);
        }
    }
    if !container.is_empty() {
        return Err(ReplicaCalcError::ContainerNotFound {
            container: container.to_string(),
            pod: pod.name.clone(),
        });
    }
    Ok(total)
}

/// The usage ratio for a utilization target: total usage over total requests of the sampled
/// pods, truncated to a whole percent. Returns (ratio, utilization %, average raw usage).
/// Mirrors `GetResourceUtilizationRatio`.
pub fn get_resource_utilization_ratio(
    metrics: &PodMetricsInfo,
    requests: &BTreeMap<String, i64>,
    target_utilization: i32,
) -> Result<(f64, i32, i64), ReplicaCalcError> {
    let mut metrics_total: i64 = 0;
    let mut requests_total: i64 = 0;
    let mut entries: i64 = 0;
    for (pod, metric) in metrics {
        // Samples for pods without a request are extraneous (e.g. pods no longer selected).
        let Some(request) = requests.get(pod) else {
            continue;
        };
        metrics_total += metric.value;
        requests_total += request;
        entries += 1;
    }
    if requests_total == 0 {
        return Err(ReplicaCalcError::NoMetricsMatchedKnownPods);
    }
    let utilization = ((metrics_total * 100) / requests_total) as i32;
    Ok((
        f64::from(utilization) / f64::from(target_utilization),
        utilization,
        metrics_total / entries,
    ))
}

/// The usage ratio for an average-value target: the integer mean of all samples over the
/// target. Returns (ratio, mean usage). Mirrors `GetMetricUsageRatio`.
pub fn get_metric_usage_ratio(metrics: &PodMetricsInfo, target_usage: i64) -> (f64, i64) {
    let total: i64 = metrics.values().map(|m| m.value).sum();
    let count = i64::try_from(metrics.len()).unwrap_or(i64::MAX).max(1);
    let usage = total / count;
    (usage as f64 / target_usage as f64, usage)
}

/// Running-and-ready pods among those selected. Mirrors `getReadyPodsCount`.
pub fn get_ready_pods_count(pods: &[Pod]) -> Result<i64, ReplicaCalcError> {
    if pods.is_empty() {
        return Err(ReplicaCalcError::NoPods);
    }
    Ok(pods.iter().filter(|p| p.is_running_and_ready()).count() as i64)
}

/// `ceil(x)` as a replica count, saturating at the `i32` range.
fn ceil_replicas(x: f64) -> i32 {
    x.ceil() as i32
}

/// The per-metric calculations, with the controller's two timing settings and its release's
/// pod filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaCalculator {
    /// How long after a pod starts its CPU samples are treated with suspicion.
    pub cpu_initialization_period: Duration,
    /// How long after start an unready pod is still considered never to have been ready.
    pub delay_of_initial_readiness_status: Duration,
    /// Whether pods in phase Succeeded are ignored like Failed ones (Kubernetes' development
    /// line, PR 141302); before, they counted as missing.
    pub ignore_succeeded_pods: bool,
}

impl Default for ReplicaCalculator {
    fn default() -> Self {
        ReplicaCalculator {
            cpu_initialization_period: DEFAULT_CPU_INITIALIZATION_PERIOD,
            delay_of_initial_readiness_status: DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS,
            ignore_succeeded_pods: true,
        }
    }
}

impl ReplicaCalculator {
    /// Replicas for a Resource or ContainerResource `Utilization` target (percent of requests).
    /// Missing pods count as at the request (or the target, when above 100 %) on a scale-down
    /// and as idle on a scale-up; unready pods count as idle on a scale-up; no change when the
    /// adjusted ratio is within tolerance or flips direction. Mirrors `GetResourceReplicas`.
    #[allow(clippy::too_many_arguments)]
    pub fn get_resource_replicas(
        &self,
        current_replicas: i32,
        target_utilization: i32,
        resource: &str,
        tolerances: Tolerances,
        pods: &[Pod],
        metrics: &PodMetricsInfo,
        container: &str,
        now: Timestamp,
    ) -> Result<ResourceReplicas, ReplicaCalcError> {
        if pods.is_empty() {
            return Err(ReplicaCalcError::NoPods);
        }
        let mut metrics = metrics.clone();
        let grouped = self.group(pods, &metrics, resource, now);
        remove_metrics_for_pods(&mut metrics, &grouped.ignored_pods);
        remove_metrics_for_pods(&mut metrics, &grouped.unready_pods);
        if metrics.is_empty() {
            return Err(ReplicaCalcError::NoMetricsForTargetedPods);
        }
        let requests = calculate_requests(pods, container, resource)?;
        let (usage_ratio, utilization, raw_utilization) =
            get_resource_utilization_ratio(&metrics, &requests, target_utilization)?;
        let result = |replica_count| ResourceReplicas {
            replica_count,
            utilization,
            raw_utilization,
        };

        let scale_up_with_unready = !grouped.unready_pods.is_empty() && usage_ratio > 1.0;
        if !scale_up_with_unready && grouped.missing_pods.is_empty() {
            if tolerances.is_within(usage_ratio) {
                return Ok(result(current_replicas));
            }
            return Ok(result(ceil_replicas(
                usage_ratio * grouped.ready_pod_count as f64,
            )));
        }

        if !grouped.missing_pods.is_empty() {
            if usage_ratio < 1.0 {
                let fallback_utilization = i64::from(target_utilization.max(100));
                for pod in &grouped.missing_pods {
                    let request = requests.get(pod).copied().unwrap_or(0);
                    metrics.insert(
                        pod.clone(),
                        PodMetric::value(request * fallback_utilization / 100),
                    );
                }
            } else if usage_ratio > 1.0 {
                for pod in &grouped.missing_pods {
                    metrics.insert(pod.clone(), PodMetric::value(0));
                }
            }
        }
        if scale_up_with_unready {
            for pod in &grouped.unready_pods {
                metrics.insert(pod.clone(), PodMetric::value(0));
            }
        }

        let (new_usage_ratio, _, _) =
            get_resource_utilization_ratio(&metrics, &requests, target_utilization)?;
        if tolerances.is_within(new_usage_ratio)
            || (usage_ratio < 1.0 && new_usage_ratio > 1.0)
            || (usage_ratio > 1.0 && new_usage_ratio < 1.0)
        {
            return Ok(result(current_replicas));
        }
        let new_replicas = ceil_replicas(new_usage_ratio * metrics.len() as f64);
        if (new_usage_ratio < 1.0 && new_replicas > current_replicas)
            || (new_usage_ratio > 1.0 && new_replicas < current_replicas)
        {
            return Ok(result(current_replicas));
        }
        Ok(result(new_replicas))
    }

    /// Replicas for a Resource or ContainerResource `AverageValue` target. Mirrors
    /// `GetRawResourceReplicas`.
    #[allow(clippy::too_many_arguments)]
    pub fn get_raw_resource_replicas(
        &self,
        current_replicas: i32,
        target_usage: i64,
        resource: &str,
        tolerances: Tolerances,
        pods: &[Pod],
        metrics: &PodMetricsInfo,
        now: Timestamp,
    ) -> Result<MetricReplicas, ReplicaCalcError> {
        self.calc_plain_metric_replicas(
            metrics,
            current_replicas,
            target_usage,
            tolerances,
            pods,
            resource,
            now,
        )
    }

    /// Replicas for a Pods metric `AverageValue` target. Mirrors `GetMetricReplicas`.
    pub fn get_metric_replicas(
        &self,
        current_replicas: i32,
        target_usage: i64,
        tolerances: Tolerances,
        pods: &[Pod],
        metrics: &PodMetricsInfo,
        now: Timestamp,
    ) -> Result<MetricReplicas, ReplicaCalcError> {
        self.calc_plain_metric_replicas(
            metrics,
            current_replicas,
            target_usage,
            tolerances,
            pods,
            "",
            now,
        )
    }

    /// Replicas for an average-value target over per-pod samples: missing pods count as at the
    /// target on a scale-down and as idle on a scale-up, unready pods as idle on a scale-up.
    /// Mirrors `calcPlainMetricReplicas`.
    #[allow(clippy::too_many_arguments)]
    pub fn calc_plain_metric_replicas(
        &self,
        metrics: &PodMetricsInfo,
        current_replicas: i32,
        target_usage: i64,
        tolerances: Tolerances,
        pods: &[Pod],
        resource: &str,
        now: Timestamp,
    ) -> Result<MetricReplicas, ReplicaCalcError> {
        if pods.is_empty() {
            return Err(ReplicaCalcError::NoPods);
        }
        let mut metrics = metrics.clone();
        let grouped = self.group(pods, &metrics, resource, now);
        remove_metrics_for_pods(&mut metrics, &grouped.ignored_pods);
        remove_metrics_for_pods(&mut metrics, &grouped.unready_pods);
        if metrics.is_empty() {
            return Err(ReplicaCalcError::NoMetricsForTargetedPods);
        }
        let (usage_ratio, usage) = get_metric_usage_ratio(&metrics, target_usage);
        let result = |replica_count| MetricReplicas {
            replica_count,
            usage,
        };

        let scale_up_with_unready = !grouped.unready_pods.is_empty() && usage_ratio > 1.0;
        if !scale_up_with_unready && grouped.missing_pods.is_empty() {
            if tolerances.is_within(usage_ratio) {
                return Ok(result(current_replicas));
            }
            return Ok(result(ceil_replicas(
                usage_ratio * grouped.ready_pod_count as f64,
            )));
        }

        if !grouped.missing_pods.is_empty() {
            let fill = if usage_ratio < 1.0 {
                Some(target_usage)
            } else if usage_ratio > 1.0 {
                Some(0)
            } else {
                None
            };
            if let Some(fill) = fill {
                for pod in &grouped.missing_pods {
                    metrics.insert(pod.clone(), PodMetric::value(fill));
                }
            }
        }
        if scale_up_with_unready {
            for pod in &grouped.unready_pods {
                metrics.insert(pod.clone(), PodMetric::value(0));
            }
        }

        let (new_usage_ratio, _) = get_metric_usage_ratio(&metrics, target_usage);
        if tolerances.is_within(new_usage_ratio)
            || (usage_ratio < 1.0 && new_usage_ratio > 1.0)
            || (usage_ratio > 1.0 && new_usage_ratio < 1.0)
        {
            return Ok(result(current_replicas));
        }
        let new_replicas = ceil_replicas(new_usage_ratio * metrics.len() as f64);
        if (new_usage_ratio < 1.0 && new_replicas > current_replicas)
            || (new_usage_ratio > 1.0 && new_replicas < current_replicas)
        {
            return Ok(result(current_replicas));
        }
        Ok(result(new_replicas))
    }

    fn group(
        &self,
        pods: &[Pod],
        metrics: &PodMetricsInfo,
        resource: &str,
        now: Timestamp,
    ) -> GroupedPods {
        group_pods(
            pods,
            metrics,
            resource,
            self.cpu_initialization_period,
            self.delay_of_initial_readiness_status,
            self.ignore_succeeded_pods,
            now,
        )
    }
}

/// Replicas for an Object metric `Value` target: the usage ratio scales the ready pods.
/// Mirrors `GetObjectMetricReplicas`.
pub fn get_object_metric_replicas(
    current_replicas: i32,
    target_usage: i64,
    tolerances: Tolerances,
    usage: i64,
    pods: &[Pod],
) -> Result<MetricReplicas, ReplicaCalcError> {
    let usage_ratio = usage as f64 / target_usage as f64;
    let replica_count =
        get_usage_ratio_replica_count(current_replicas, usage_ratio, tolerances, pods)?;
    Ok(MetricReplicas {
        replica_count,
        usage,
    })
}

/// Replicas from a usage ratio: unchanged within tolerance, else the ratio times the ready pods;
/// with zero current replicas (scale to zero) simply `ceil(ratio)`. Mirrors
/// `getUsageRatioReplicaCount`.
pub fn get_usage_ratio_replica_count(
    current_replicas: i32,
    usage_ratio: f64,
    tolerances: Tolerances,
    pods: &[Pod],
) -> Result<i32, ReplicaCalcError> {
    if current_replicas == 0 {
        return Ok(ceil_replicas(usage_ratio));
    }
    if tolerances.is_within(usage_ratio) {
        return Ok(current_replicas);
    }
    let ready_pods = get_ready_pods_count(pods)?;
    let replicas = usage_ratio * ready_pods as f64;
    if replicas > f64::from(i32::MAX) {
        return Ok(i32::MAX);
    }
    Ok(ceil_replicas(replicas))
}

/// Replicas for an Object metric `AverageValue` target: the total over the per-pod target,
/// judged against the status replica count. Returns the per-pod usage. Mirrors
/// `GetObjectPerPodMetricReplicas`.
pub fn get_object_per_pod_metric_replicas(
    status_replicas: i32,
    target_average_usage: i64,
    tolerances: Tolerances,
    usage: i64,
) -> MetricReplicas {
    let mut replica_count = status_replicas;
    let usage_ratio = usage as f64 / (target_average_usage as f64 * f64::from(replica_count));
    if !tolerances.is_within(usage_ratio) {
        replica_count = ceil_replicas(usage as f64 / target_average_usage as f64);
    }
    MetricReplicas {
        replica_count,
        usage: get_per_pod_usage(usage, status_replicas),
    }
}

/// The usage per replica reported for an AverageValue target: `ceil(usage / status_replicas)`,
/// 0 when no replica exists (a target scaled to zero), and `i64::MAX` for a total that
/// saturated, whatever the count. Mirrors `getPerPodUsage`.
pub fn get_per_pod_usage(usage: i64, status_replicas: i32) -> i64 {
    if usage as f64 >= i64::MAX as f64 {
        return i64::MAX;
    }
    if status_replicas == 0 {
        return 0;
    }
    (usage as f64 / f64::from(status_replicas)).ceil() as i64
}

/// Replicas for an External metric `Value` target: the values of every matching series are
/// summed (saturating) and the ratio scales the ready pods. Mirrors `GetExternalMetricReplicas`.
pub fn get_external_metric_replicas(
    current_replicas: i32,
    target_usage: i64,
    tolerances: Tolerances,
    values: &[i64],
    pods: &[Pod],
) -> Result<MetricReplicas, ReplicaCalcError> {
    let mut usage: i64 = 0;
    for &value in values {
        if value > 0 && usage > i64::MAX - value {
            usage = i64::MAX;
            break;
        }
        usage += value;
    }
    let usage_ratio = usage as f64 / target_usage as f64;
    let replica_count =
        get_usage_ratio_replica_count(current_replicas, usage_ratio, tolerances, pods)?;
    Ok(MetricReplicas {
        replica_count,
        usage,
    })
}

/// Replicas for an External metric `AverageValue` target: the summed value over the per-pod
/// target, judged against the status replica count. Returns the per-pod usage. Mirrors
/// `GetExternalPerPodMetricReplicas`.
pub fn get_external_per_pod_metric_replicas(
    status_replicas: i32,
    target_usage_per_pod: i64,
    tolerances: Tolerances,
    values: &[i64],
) -> MetricReplicas {
    let mut usage: i64 = 0;
    for &value in values {
        usage = usage.wrapping_add(value);
        if usage < 0 {
            // Only an overflow gets here.
            usage = i64::MAX;
            break;
        }
    }
    let mut replica_count = status_replicas;
    let usage_ratio = usage as f64 / (target_usage_per_pod as f64 * f64::from(replica_count));
    if !tolerances.is_within(usage_ratio) {
        let wanted = (usage as f64 / target_usage_per_pod as f64).ceil();
        replica_count = if wanted > f64::from(i32::MAX) {
            i32::MAX
        } else {
            wanted as i32
        };
    }
    MetricReplicas {
        replica_count,
        usage: get_per_pod_usage(usage, status_replicas),
    }
}
