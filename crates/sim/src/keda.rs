//! A KEDA ScaledObject with rabbitmq triggers (and prometheus triggers on warren's capacity
//! metric), as KEDA runs it: the HPA it generates, its own scale loop beside that HPA, and what
//! its rabbitmq scaler reads from the broker.
//!
//! Read from KEDA's source (kedacore/keda `main` at 8b4f083, 2026-08-20, v2.20.1 + 117
//! commits), not guessed:
//! `apis/keda/v1alpha1` (defaults, `CheckReplicaCountBoundsAreValid`, `CheckFallbackValid`, the
//! annotations), `controllers/keda/hpa.go` (`newHPAForScaledObject`), `controllers/keda/
//! scaledobject_controller.go` (`handlePause`), `pkg/scaling/executor/scale_scaledobjects.go`
//! (`RequestScale`), `pkg/scaling/scale_handler.go` (`getScaledObjectState`: active when any
//! trigger is), `pkg/scalers/rabbitmq_scaler.go` (metadata, `Validate`, `GetMetricsAndActivity`,
//! `GetMetricSpecForScaling`), `pkg/scalers/prometheus_scaler.go` and `pkg/scalers/scaler.go`
//! (`GetMetricTargetMili`).
//!
//! What is refused, what is accepted and changes nothing a simulation shows, and why: see the
//! "KEDA" section of docs/simulation.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::error::PolicyError;
use crate::outcome::ScaleCause;

/// `autoscaling.keda.sh/paused`: stop the scale loop and delete the HPA, at the current count.
const PAUSED: &str = "autoscaling.keda.sh/paused";
/// `autoscaling.keda.sh/paused-replicas`: the same, at that count.
const PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// `autoscaling.keda.sh/paused-scale-in`: the HPA's scaleDown `selectPolicy: Disabled`, and no
/// deactivation.
const PAUSED_SCALE_IN: &str = "autoscaling.keda.sh/paused-scale-in";
/// `autoscaling.keda.sh/paused-scale-out`: the HPA's scaleUp `selectPolicy: Disabled`, and no
/// activation.
const PAUSED_SCALE_OUT: &str = "autoscaling.keda.sh/paused-scale-out";
/// `autoscaling.keda.sh/force-activation`: active whatever the triggers say.
const FORCE_ACTIVATION: &str = "autoscaling.keda.sh/force-activation";
/// Annotations that change only the HPA's labels or KEDA's admission checks.
const COSMETIC_ANNOTATIONS: [&str; 3] = [
    "scaledobject.keda.sh/hpa-excluded-labels",
    "scaledobject.keda.sh/transfer-hpa-ownership",
    "validations.keda.sh/hpa-ownership",
];

/// How often the management plugin samples a queue's counts and message counters
/// (`collect_statistics_interval`, 5 s); its `*_details.rate` is the difference of the last two
/// samples over that interval.
pub const MANAGEMENT_SAMPLE_SECS: f64 = 5.0;

/// For how long after a sample `GET /api/queues/{vhost}/{name}` answers its rates; after that
/// every `*_details.rate` reads 0 until the next sample. Measured by `bench/management-rate` on
/// RabbitMQ 3.10.8 (the 2-core Debian 12 machine, 2026-12-07; docs/simulation.md, "KEDA"): 10
/// jobs/s read 10.0 for 1.1 to 2.0 s after each refresh of the counts (the same length within a
/// run, another in the next), then 0.0 for the rest of the 5 s; the middle of that range.
pub const MANAGEMENT_RATE_VISIBLE_SECS: f64 = 1.5;

/// A ScaledObject as KEDA applies it.
#[derive(Clone, Debug)]
pub(crate) enum Applied {
    /// `paused-replicas`: no HPA, no loop; the target held at that count.
    PausedAt(u32),
    /// `paused`: no HPA, no loop; the target held at the count it has (in a simulation, the
    /// scenario's `workers.initial`, else `minReplicaCount`).
    Paused {
        /// The count without `workers.initial`.
        min_replica_count: u32,
    },
    /// The HPA KEDA generates, and its own loop beside it.
    Running {
        /// The autoscaling/v2 HPA manifest.
        hpa: Value,
        /// KEDA's loop and triggers.
        scale_loop: KedaLoop,
    },
}

/// KEDA's own loop beside the HPA it generates (`RequestScale` every `pollingInterval`): it
/// activates 0 -> minimum when a trigger is active, deactivates to 0 (or `idleReplicaCount`)
/// after `cooldownPeriod` without activity, and restores `minReplicaCount`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KedaLoop {
    /// `pollingInterval` (default 30 s).
    pub polling_secs: f64,
    /// `cooldownPeriod` (default 300 s).
    pub cooldown_secs: f64,
    /// `initialCooldownPeriod` (default 0).
    pub initial_cooldown_secs: f64,
    /// `minReplicaCount` (default 0).
    pub min_replica_count: u32,
    /// `idleReplicaCount`: the count when inactive, below `minReplicaCount`.
    pub idle_replica_count: Option<u32>,
    /// `autoscaling.keda.sh/paused-scale-in`.
    pub pause_scale_in: bool,
    /// `autoscaling.keda.sh/paused-scale-out`.
    pub pause_scale_out: bool,
    /// `autoscaling.keda.sh/force-activation`.
    pub force_activation: bool,
    /// The triggers, in order: trigger i feeds the HPA's metric `s{i}-...`.
    pub triggers: Vec<KedaTrigger>,
}

/// A trigger the simulator models.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum KedaTrigger {
    /// The rabbitmq scaler.
    Rabbit(RabbitTrigger),
    /// The prometheus scaler on warren's capacity metric.
    Capacity(CapacityTrigger),
}

impl KedaTrigger {
    /// `useCachedMetrics`: the HPA gets the value of the last poll.
    pub fn use_cached_metrics(&self) -> bool {
        match self {
            KedaTrigger::Rabbit(t) => t.use_cached_metrics,
            KedaTrigger::Capacity(t) => t.use_cached_metrics,
        }
    }
}

/// A prometheus trigger whose query is warren's recording rule `warren_workers_needed` (the
/// `keda-capacity` overlay's), computed by [`warren_policy::capacity::CapacityFormula`] from what the
/// simulated Prometheus (or, with `source: broker`, the broker) holds, as the capacity HPA's
/// metric is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CapacityTrigger {
    /// `threshold`: the target per replica.
    pub threshold: f64,
    /// `activationThreshold` (default 0): active when the value is above it.
    pub activation_threshold: f64,
    /// `ignoreNullValues` (default true): an empty answer is 0, not an error.
    pub ignore_null_values: bool,
    /// `useCachedMetrics`.
    pub use_cached_metrics: bool,
}

/// The rabbitmq scaler's modes (`rabbitModeQueueLength` ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RabbitMode {
    /// The queue's message count.
    QueueLength,
    /// The publish rate.
    MessageRate,
    /// The deliver-get rate.
    DeliverGetRate,
    /// Publish rate over deliver-get rate.
    PublishedToDeliveredRatio,
    /// Seconds to consume the backlog at the deliver-get rate.
    ExpectedQueueConsumptionTime,
}

/// How the scaler reads the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RabbitProtocol {
    /// A passive declare: the message count is the ready messages, live; no rates.
    Amqp,
    /// The management API: `messages` (ready + unacked, or `messages_ready` with
    /// `excludeUnacknowledged`) and the `message_stats` rates, as of its last sample.
    Http,
}

/// One rabbitmq trigger.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RabbitTrigger {
    /// `mode` (or QueueLength from `queueLength` or the defaults).
    pub mode: RabbitMode,
    /// The target per replica (`value`, `queueLength`, default 20).
    pub value: f64,
    /// `activationValue` (default 0): active when the metric is above it.
    pub activation_value: f64,
    /// `protocol`, or the scheme of `host`.
    pub protocol: RabbitProtocol,
    /// `excludeUnacknowledged` (HTTP only): count ready messages only.
    pub exclude_unacknowledged: bool,
    /// `useCachedMetrics`: the HPA gets the value of the last poll.
    pub use_cached_metrics: bool,
}

/// What `getQueueStatus` returns: the message count and the two rates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueStatus {
    /// The count the scaler reads.
    pub messages: f64,
    /// `message_stats.publish_details.rate` (0 over AMQP).
    pub publish_rate: f64,
    /// `message_stats.deliver_get_details.rate` (0 over AMQP).
    pub deliver_get_rate: f64,
}

impl RabbitTrigger {
    /// `GetMetricsAndActivity`: the metric the HPA gets (negative values sent as 0, as
    /// `quantityFromFloat64` does) and whether the trigger is active.
    pub fn metric_and_activity(&self, q: QueueStatus) -> (f64, bool) {
        let activation = self.activation_value;
        let (metric, active) = match self.mode {
            RabbitMode::QueueLength => (q.messages, q.messages > activation),
            RabbitMode::MessageRate => (
                q.publish_rate,
                q.publish_rate > activation || q.messages > activation,
            ),
            RabbitMode::DeliverGetRate => (q.deliver_get_rate, q.deliver_get_rate > activation),
            RabbitMode::PublishedToDeliveredRatio => {
                let stalled = q.publish_rate > 0.0 && q.deliver_get_rate == 0.0;
                let ratio = if stalled {
                    activation
                } else if q.publish_rate > 0.0 && q.deliver_get_rate > 0.0 {
                    q.publish_rate / q.deliver_get_rate
                } else {
                    0.0
                };
                (ratio, ratio > activation || stalled)
            }
            RabbitMode::ExpectedQueueConsumptionTime => {
                let eta = if q.messages == 0.0 {
                    0.0
                } else if q.deliver_get_rate == 0.0 {
                    activation
                } else {
                    (q.publish_rate - q.deliver_get_rate) / q.deliver_get_rate
                        + q.messages / q.deliver_get_rate
                };
                (
                    eta,
                    eta > activation || (q.deliver_get_rate == 0.0 && q.messages > 0.0),
                )
            }
        };
        let metric = if metric.is_finite() && metric > 0.0 {
            metric
        } else {
            0.0
        };
        (metric, active)
    }
}

/// A queue's counts and counters at one moment, as the broker keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueCounters {
    /// When, in simulated seconds.
    pub at_secs: f64,
    /// Messages ready.
    pub ready: u64,
    /// Messages delivered, not acked.
    pub unacked: u64,
    /// Messages published so far.
    pub published_total: u64,
    /// Deliveries so far, redeliveries included (`deliver_get`).
    pub delivered_total: u64,
}

/// The management plugin's view of the queue: a sample every [`MANAGEMENT_SAMPLE_SECS`]; the
/// counts are the last sample's, a rate the difference of the last two over their interval for
/// [`MANAGEMENT_RATE_VISIBLE_SECS`] after the last one and 0 after that (0 too before two
/// samples, as KEDA reads an absent `message_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ManagementStats {
    last: Option<QueueCounters>,
    previous: Option<QueueCounters>,
}

impl ManagementStats {
    /// Takes a sample.
    pub fn record(&mut self, sample: QueueCounters) {
        self.previous = self.last.replace(sample);
    }

    /// What `GET /api/queues/{vhost}/{name}` answers at `now`, as the scaler reads it.
    pub fn status(&self, now: f64, exclude_unacknowledged: bool) -> QueueStatus {
        let Some(last) = self.last else {
            return QueueStatus::default();
        };
        let messages = if exclude_unacknowledged {
            last.ready
        } else {
            last.ready + last.unacked
        };
        let (publish_rate, deliver_get_rate) = match self.previous {
            Some(p)
                if last.at_secs > p.at_secs
                    && now - last.at_secs < MANAGEMENT_RATE_VISIBLE_SECS =>
            {
                let dt = last.at_secs - p.at_secs;
                (
                    last.published_total.saturating_sub(p.published_total) as f64 / dt,
                    last.delivered_total.saturating_sub(p.delivered_total) as f64 / dt,
                )
            }
            _ => (0.0, 0.0),
        };
        QueueStatus {
            messages: messages as f64,
            publish_rate,
            deliver_get_rate,
        }
    }
}

impl KedaLoop {
    /// Whether any trigger reads the management API.
    pub fn uses_management_api(&self) -> bool {
        self.triggers
            .iter()
            .any(|t| matches!(t, KedaTrigger::Rabbit(r) if r.protocol == RabbitProtocol::Http))
    }

    /// Whether any trigger reads the capacity metric.
    pub fn uses_capacity_metric(&self) -> bool {
        self.triggers
            .iter()
            .any(|t| matches!(t, KedaTrigger::Capacity(_)))
    }

    /// `RequestScale` at `now` with `current` replicas: the count to set, if any, and why;
    /// `last_active` is the ScaledObject's `status.lastActiveTime`, which it updates.
    pub fn request_scale(
        &self,
        is_active: bool,
        current: u32,
        now: f64,
        last_active: &mut Option<f64>,
    ) -> Option<(u32, ScaleCause)> {
        let min = self.min_replica_count;
        if is_active || self.force_activation {
            let below_min_from_idle = self.idle_replica_count.is_some() && current < min;
            if below_min_from_idle || current == 0 {
                // scaleFromZeroOrIdle
                if self.pause_scale_out {
                    return None;
                }
                *last_active = Some(now);
                return Some((min.max(1), ScaleCause::KedaActivation));
            }
            *last_active = Some(now);
            return None;
        }
        let above_idle = self.idle_replica_count.is_some_and(|idle| current > idle);
        if above_idle || (current > 0 && min == 0) {
            // scaleToZeroOrIdle
            if self.pause_scale_in {
                return None;
            }
            let cooled = match *last_active {
                None => self.initial_cooldown_secs < now,
                Some(last) => last + self.cooldown_secs < now,
            };
            return cooled.then(|| {
                (
                    self.idle_replica_count.unwrap_or(min),
                    ScaleCause::KedaDeactivation,
                )
            });
        }
        if self.idle_replica_count.is_none() && current < min {
            return Some((min, ScaleCause::KedaActivation));
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// The ScaledObject as written, strict: every field KEDA's CRD has, a field the simulator cannot
// model refused by name when it is read.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaledObject {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: ScaledObjectSpec,
    // What the cluster reports (`kubectl get -o yaml`): a run starts from none of it.
    #[allow(dead_code)]
    #[serde(default)]
    status: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Metadata {
    name: String,
    // Where it lives changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    namespace: Option<String>,
    // The HPA's labels only.
    #[allow(dead_code)]
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    // Set by the API server (`kubectl get -o yaml`): they change nothing KEDA does.
    #[allow(dead_code)]
    #[serde(default)]
    uid: Option<Value>,
    #[allow(dead_code)]
    #[serde(default)]
    resource_version: Option<Value>,
    #[allow(dead_code)]
    #[serde(default)]
    generation: Option<Value>,
    #[allow(dead_code)]
    #[serde(default)]
    creation_timestamp: Option<Value>,
    #[allow(dead_code)]
    #[serde(default)]
    managed_fields: Option<Value>,
    #[allow(dead_code)]
    #[serde(default)]
    finalizers: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaledObjectSpec {
    scale_target_ref: ScaleTargetRef,
    #[serde(default)]
    polling_interval: Option<i64>,
    #[serde(default)]
    cooldown_period: Option<i64>,
    #[serde(default)]
    initial_cooldown_period: Option<i64>,
    #[serde(default)]
    idle_replica_count: Option<i64>,
    #[serde(default)]
    min_replica_count: Option<i64>,
    #[serde(default)]
    max_replica_count: Option<i64>,
    #[serde(default)]
    advanced: Option<Advanced>,
    triggers: Vec<Trigger>,
    #[serde(default)]
    fallback: Option<Fallback>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaleTargetRef {
    name: String,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    // Where KEDA reads `...FromEnv` values; the simulator reads none.
    #[allow(dead_code)]
    #[serde(default)]
    env_source_container_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Advanced {
    // What happens when the ScaledObject is deleted: after any simulation.
    #[allow(dead_code)]
    #[serde(default)]
    restore_to_original_replica_count: Option<bool>,
    #[serde(default)]
    horizontal_pod_autoscaler_config: Option<HpaConfig>,
    #[serde(default)]
    scaling_modifiers: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HpaConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    behavior: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fallback {
    failure_threshold: i64,
    replicas: i64,
    #[serde(default)]
    behavior: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Trigger {
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    name: Option<String>,
    /// Read strictly by the trigger's type.
    metadata: Value,
    #[serde(default)]
    authentication_ref: Option<AuthenticationRef>,
    #[serde(default)]
    metric_type: Option<String>,
    #[serde(default)]
    use_cached_metrics: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthenticationRef {
    // Credentials, TLS and possibly host, protocol, vhostName: the simulator reads none.
    #[allow(dead_code)]
    name: String,
    #[serde(default)]
    kind: Option<String>,
}

/// The rabbitmq scaler's trigger metadata (`rabbitMQMetadata`'s `triggerMetadata` keys); KEDA
/// gives every value as a string.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RabbitMetadata {
    #[serde(default)]
    queue_name: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    queue_length: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    activation_value: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    host_from_env: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    // A connection setting.
    #[allow(dead_code)]
    #[serde(default)]
    vhost_name: Option<String>,
    #[serde(default)]
    use_regex: Option<String>,
    #[serde(default)]
    exclude_unacknowledged: Option<String>,
    #[serde(default)]
    page_size: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    unsafe_ssl: Option<String>,
    // Connection settings, read from the target's environment.
    #[allow(dead_code)]
    #[serde(default)]
    username_from_env: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    password_from_env: Option<String>,
}

/// The prometheus scaler's trigger metadata (`prometheusMetadata`'s `triggerMetadata` keys).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrometheusMetadata {
    #[serde(default)]
    server_address: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    threshold: Option<String>,
    #[serde(default)]
    activation_threshold: Option<String>,
    #[serde(default)]
    ignore_null_values: Option<String>,
    #[serde(default)]
    unsafe_ssl: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    // Connection and tenancy settings.
    #[allow(dead_code)]
    #[serde(default)]
    namespace: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    custom_headers: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    query_parameters: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    aws_region: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    identity_owner: Option<String>,
}

/// A trigger's metadata, strictly, as its type reads it; a problem's path starts at the trigger.
fn metadata<T: serde::de::DeserializeOwned>(i: usize, value: &Value) -> Result<T, PolicyError> {
    warren_strict::from_value(value).map_err(|mut e| {
        for p in &mut e.problems {
            p.path = if p.path.is_empty() {
                format!("spec.triggers[{i}].metadata")
            } else {
                format!("spec.triggers[{i}].metadata.{}", p.path)
            };
        }
        PolicyError(e.to_string())
    })
}

/// Whether a PromQL query is warren's capacity metric alone: `warren_workers_needed`, with
/// label matchers or not, bare or inside one `max`, `min`, `sum` or `avg`.
fn is_capacity_query(query: &str) -> bool {
    let q: String = query.chars().filter(|c| !c.is_whitespace()).collect();
    let inner = ["max(", "min(", "sum(", "avg("]
        .iter()
        .find_map(|f| q.strip_prefix(f).and_then(|r| r.strip_suffix(')')))
        .unwrap_or(&q);
    let Some(rest) = inner.strip_prefix(warren_policy::capacity::METRIC_NAME) else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .is_some_and(|m| !m.contains(['{', '}', '(', ')']))
}

/// KEDA's metadata value: trimmed, and absent when empty (`configParamValue`).
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A float as KEDA's typed config reads one (a JSON number).
fn parse_float(s: &str) -> Option<f64> {
    serde_json::from_str::<f64>(s)
        .ok()
        .filter(|x| x.is_finite())
}

/// The scheme Go's `url.Parse` finds, lower-cased; None when it cannot parse one.
fn url_scheme(url: &str) -> Option<String> {
    let Some((scheme, _)) = url.split_once(':') else {
        return Some(String::new());
    };
    let mut chars = scheme.chars();
    match chars.next() {
        None => None,
        Some(c) if c.is_ascii_alphabetic() => {
            if chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
                Some(scheme.to_ascii_lowercase())
            } else {
                Some(String::new())
            }
        }
        Some(_) => Some(String::new()),
    }
}

/// `url.QueryEscape` then `NormalizeString`: the queue's part of the metric name.
pub fn metric_name(index: usize, queue: &str) -> String {
    let mut escaped = String::new();
    for b in queue.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                escaped.push(b as char)
            }
            b' ' => escaped.push('+'),
            _ => escaped.push_str(&format!("%{b:02X}")),
        }
    }
    metric_name_for(index, &format!("rabbitmq-{escaped}"))
}

/// Reads a ScaledObject and applies it as KEDA does; every refusal names the field.
pub(crate) fn apply(text: &str) -> Result<Applied, PolicyError> {
    let so: ScaledObject = warren_strict::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
    let err = |m: String| Err(PolicyError(m));
    if so.api_version != "keda.sh/v1alpha1" || so.kind != "ScaledObject" {
        return err(format!(
            "expected apiVersion keda.sh/v1alpha1, kind ScaledObject; got {} {}",
            so.api_version, so.kind
        ));
    }
    let spec = &so.spec;
    let advanced = spec.advanced.as_ref();
    let hpa_config = advanced.and_then(|a| a.horizontal_pod_autoscaler_config.as_ref());
    let hpa_name = hpa_config
        .and_then(|c| c.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("keda-hpa-{}", so.metadata.name));
    // verifyName: both are label values.
    if so.metadata.name.len() > 63 {
        return err(format!(
            "metadata.name: scaledobject name {:?} is {} characters long; must be no more than 63",
            so.metadata.name,
            so.metadata.name.len()
        ));
    }
    if hpa_name.len() > 63 {
        return err(format!(
            "spec.advanced.horizontalPodAutoscalerConfig.name: HPA name {hpa_name:?} derived from scaledobject is {} characters long; must be no more than 63",
            hpa_name.len()
        ));
    }
    let count = |field: &str, v: Option<i64>, least: i64| -> Result<Option<u32>, PolicyError> {
        match v {
            None => Ok(None),
            Some(n) if n >= least && n <= i64::from(i32::MAX) => Ok(Some(n as u32)),
            Some(n) => Err(PolicyError(format!(
                "spec.{field}: {n} is out of range; KEDA's CRD allows {least} to {}",
                i32::MAX
            ))),
        }
    };
    let polling = count("pollingInterval", spec.polling_interval, 1)?.unwrap_or(30);
    let cooldown = count("cooldownPeriod", spec.cooldown_period, 0)?.unwrap_or(300);
    let initial_cooldown =
        count("initialCooldownPeriod", spec.initial_cooldown_period, 0)?.unwrap_or(0);
    let idle = count("idleReplicaCount", spec.idle_replica_count, 0)?;
    let min_given = count("minReplicaCount", spec.min_replica_count, 0)?;
    let max = count("maxReplicaCount", spec.max_replica_count, 1)?.unwrap_or(100);
    let min = min_given.unwrap_or(0);
    let hpa_min = min.max(1);
    // CheckReplicaCountBoundsAreValid: the HPA's minimum, only when minReplicaCount is given.
    let checked_min = if min_given.is_some() { hpa_min } else { 0 };
    if checked_min > max {
        return err(format!(
            "spec.minReplicaCount: MinReplicaCount={checked_min} must be less than MaxReplicaCount={max}"
        ));
    }
    if let Some(idle) = idle {
        if idle >= checked_min {
            return err(format!(
                "spec.idleReplicaCount: IdleReplicaCount={idle} must be less than MinReplicaCount={checked_min}"
            ));
        }
    }
    if spec.scale_target_ref.name.is_empty() {
        return err(
            "spec.scaleTargetRef.name: ScaledObject.spec.scaleTargetRef.name is missing".into(),
        );
    }
    // IsUsingModifiers: an empty scalingModifiers is none.
    let modifiers = advanced.and_then(|a| a.scaling_modifiers.as_ref());
    if modifiers.is_some_and(|m| !m.is_null() && m.as_mapping().is_none_or(|m| !m.is_empty())) {
        return err(
            "spec.advanced.scalingModifiers: not simulated (its formulas are expr-lang expressions the simulator does not evaluate); remove it to simulate the triggers as they are"
                .into(),
        );
    }
    if let Some(f) = &spec.fallback {
        if f.failure_threshold < 0 || f.replicas < 0 {
            return err(format!(
                "spec.fallback: FailureThreshold={} & Replicas={} must both be greater than or equal to 0",
                f.failure_threshold, f.replicas
            ));
        }
        match f.behavior.as_deref() {
            None | Some("static" | "currentReplicas" | "currentReplicasIfHigher" | "currentReplicasIfLower") => {}
            Some("scalingModifiers") => {
                return err("spec.fallback.behavior: scalingModifiers fallback behavior requires scalingModifiers.formula to be defined".into())
            }
            Some(other) => {
                return err(format!(
                    "spec.fallback.behavior: {other:?} is not static, currentReplicas, currentReplicasIfHigher, currentReplicasIfLower or scalingModifiers"
                ))
            }
        }
    }
    // The annotations (NeedToBePausedByAnnotation, getBoolAnnotation: a value that is not a
    // bool counts as true).
    let annotations = &so.metadata.annotations;
    let flag = |key: &str| {
        annotations
            .get(key)
            .map(|v| parse_bool(v).unwrap_or(true))
            .unwrap_or(false)
    };
    for key in annotations.keys() {
        let known = [
            PAUSED,
            PAUSED_REPLICAS,
            PAUSED_SCALE_IN,
            PAUSED_SCALE_OUT,
            FORCE_ACTIVATION,
        ]
        .contains(&key.as_str())
            || COSMETIC_ANNOTATIONS.contains(&key.as_str());
        if !known && key.contains("keda.sh/") {
            return err(format!(
                "metadata.annotations.{key}: not a KEDA annotation the simulator knows"
            ));
        }
    }
    let mut triggers = Vec::new();
    let mut queues: Vec<(usize, String)> = Vec::new();
    for (i, t) in spec.triggers.iter().enumerate() {
        triggers.push(match t.type_.as_str() {
            "rabbitmq" => {
                let m: RabbitMetadata = metadata(i, &t.metadata)?;
                if let Some(q) = given(&m.queue_name) {
                    queues.push((i, q.to_owned()));
                }
                rabbit_trigger(i, t, &m)?
            }
            "prometheus" => capacity_trigger(i, t, &metadata(i, &t.metadata)?)?,
            other => {
                return err(format!(
                    "spec.triggers[{i}].type: {other:?} is not simulated; only rabbitmq, and prometheus on {}",
                    warren_policy::capacity::METRIC_NAME
                ))
            }
        });
    }
    if triggers.is_empty() {
        return err("spec.triggers: no triggers defined in the ScaledObject/ScaledJob".into());
    }
    // The scenario is one queue: every rabbitmq trigger must read it.
    if let Some((i, q)) = queues.iter().find(|(_, q)| *q != queues[0].1) {
        return err(format!(
            "spec.triggers[{i}].metadata.queueName: the scenario has one queue and spec.triggers[{}] reads {:?}, not {q:?}; a trigger on another queue is not simulated",
            queues[0].0, queues[0].1
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, t) in spec.triggers.iter().enumerate() {
        if let Some(name) = t.name.as_deref().filter(|n| !n.is_empty()) {
            if !names.insert(name) {
                return err(format!(
                    "spec.triggers[{i}].name: triggerName {name:?} is defined multiple times in the ScaledObject/ScaledJob, but it must be unique"
                ));
            }
        }
    }
    if let Some(value) = annotations.get(PAUSED_REPLICAS) {
        // GetPausedReplicaCount: strconv.ParseInt(val, 10, 32).
        let n: i32 = value.parse().map_err(|_| {
            PolicyError(format!(
                "metadata.annotations.{PAUSED_REPLICAS}: {value:?} is not a whole number"
            ))
        })?;
        let n = u32::try_from(n).map_err(|_| {
            PolicyError(format!(
                "metadata.annotations.{PAUSED_REPLICAS}: {n} is below 0"
            ))
        })?;
        return Ok(Applied::PausedAt(n));
    }
    if flag(PAUSED) {
        return Ok(Applied::Paused {
            min_replica_count: min,
        });
    }
    let pause_scale_in = flag(PAUSED_SCALE_IN);
    let pause_scale_out = flag(PAUSED_SCALE_OUT);

    // newHPAForScaledObject.
    let mut behavior = hpa_config
        .and_then(|c| c.behavior.clone())
        .unwrap_or(Value::Null);
    for (paused, direction) in [(pause_scale_in, "scaleDown"), (pause_scale_out, "scaleUp")] {
        if !paused {
            continue;
        }
        if !behavior.is_mapping() {
            behavior = Value::Mapping(Default::default());
        }
        let Some(b) = behavior.as_mapping_mut() else {
            continue;
        };
        let rules = b
            .entry(direction.into())
            .or_insert_with(|| Value::Mapping(Default::default()));
        if !rules.is_mapping() {
            *rules = Value::Mapping(Default::default());
        }
        if let Some(r) = rules.as_mapping_mut() {
            r.insert("selectPolicy".into(), "Disabled".into());
        }
    }
    let mut metrics = Vec::new();
    for (name, target_type, quantity, _) in &triggers {
        let target_key = if target_type == "Value" {
            "value"
        } else {
            "averageValue"
        };
        let metric: Value = serde_yaml::from_str(&format!(
            "type: External\nexternal:\n  metric:\n    name: {name:?}\n    selector:\n      matchLabels:\n        scaledobject.keda.sh/name: {:?}\n  target:\n    type: {target_type:?}\n    {target_key}: {quantity:?}\n",
            so.metadata.name
        ))
        .map_err(|e| PolicyError(e.to_string()))?;
        metrics.push(metric);
    }
    let target = &spec.scale_target_ref;
    let mut target_ref = serde_yaml::Mapping::new();
    target_ref.insert("name".into(), target.name.clone().into());
    target_ref.insert(
        "kind".into(),
        target
            .kind
            .clone()
            .unwrap_or_else(|| "Deployment".into())
            .into(),
    );
    target_ref.insert(
        "apiVersion".into(),
        target
            .api_version
            .clone()
            .unwrap_or_else(|| "apps/v1".into())
            .into(),
    );
    let mut hpa_spec = serde_yaml::Mapping::new();
    hpa_spec.insert("scaleTargetRef".into(), target_ref.into());
    hpa_spec.insert("minReplicas".into(), hpa_min.into());
    hpa_spec.insert("maxReplicas".into(), max.into());
    hpa_spec.insert("metrics".into(), Value::Sequence(metrics));
    if !behavior.is_null() {
        hpa_spec.insert("behavior".into(), behavior);
    }
    let mut meta = serde_yaml::Mapping::new();
    meta.insert("name".into(), hpa_name.into());
    let mut hpa = serde_yaml::Mapping::new();
    hpa.insert("apiVersion".into(), "autoscaling/v2".into());
    hpa.insert("kind".into(), "HorizontalPodAutoscaler".into());
    hpa.insert("metadata".into(), meta.into());
    hpa.insert("spec".into(), hpa_spec.into());
    let scale_loop = KedaLoop {
        polling_secs: f64::from(polling),
        cooldown_secs: f64::from(cooldown),
        initial_cooldown_secs: f64::from(initial_cooldown),
        min_replica_count: min,
        idle_replica_count: idle,
        pause_scale_in,
        pause_scale_out,
        force_activation: flag(FORCE_ACTIVATION),
        triggers: triggers.into_iter().map(|(.., t)| t).collect(),
    };
    Ok(Applied::Running {
        hpa: hpa.into(),
        scale_loop,
    })
}

type Parsed = (String, String, String, KedaTrigger);

/// GetMetricTargetType: AverageValue by default; Utilization refused.
fn target_type(i: usize, t: &Trigger) -> Result<String, PolicyError> {
    match t.metric_type.as_deref() {
        None | Some("") => Ok("AverageValue".to_owned()),
        Some("Utilization") => Err(PolicyError(format!(
            "spec.triggers[{i}].metricType: scaler doesn't support utilization metric type"
        ))),
        Some(other) => Ok(other.to_owned()),
    }
}

/// A prometheus trigger (pkg/scalers/prometheus_scaler.go): metric `s{i}-prometheus`, target
/// `threshold`, active above `activationThreshold`; only on warren's capacity metric.
fn capacity_trigger(i: usize, t: &Trigger, m: &PrometheusMetadata) -> Result<Parsed, PolicyError> {
    let at = |field: &str| format!("spec.triggers[{i}].metadata.{field}");
    let required = |field: &str, v: &Option<String>| {
        given(v).map(str::to_owned).ok_or_else(|| {
            PolicyError(format!(
                "{}: missing required parameter {field:?}",
                at(field)
            ))
        })
    };
    let float = |field: &str, s: &str| {
        parse_float(s).ok_or_else(|| {
            PolicyError(format!(
                "{}: unable to set param {field:?} value {s:?}: not a number",
                at(field)
            ))
        })
    };
    let boolean = |field: &str, v: &Option<String>, default: bool| match given(v) {
        None => Ok(default),
        Some(s) => parse_bool(s).ok_or_else(|| {
            PolicyError(format!(
                "{}: unable to parse boolean value {s:?}",
                at(field)
            ))
        }),
    };
    required("serverAddress", &m.server_address)?;
    let query = required("query", &m.query)?;
    let threshold = float("threshold", &required("threshold", &m.threshold)?)?;
    let activation_threshold = match given(&m.activation_threshold) {
        None => 0.0,
        Some(s) => float("activationThreshold", s)?,
    };
    let ignore_null_values = boolean("ignoreNullValues", &m.ignore_null_values, true)?;
    boolean("unsafeSsl", &m.unsafe_ssl, false)?;
    if let Some(s) = given(&m.timeout) {
        if !(s.parse::<i64>().map(|ms| ms >= 0).unwrap_or(false) || go_duration(s)) {
            return Err(PolicyError(format!(
                "{}: unable to parse duration value {s:?}",
                at("timeout")
            )));
        }
    }
    if !is_capacity_query(&query) {
        return Err(PolicyError(format!(
            "{}: {query:?} is not simulated; a prometheus trigger is simulated only on {} (e.g. max({}{{queue=\"Orders\"}}))",
            at("query"),
            warren_policy::capacity::METRIC_NAME,
            warren_policy::capacity::METRIC_NAME
        )));
    }
    if threshold <= 0.0 || activation_threshold < 0.0 {
        return Err(PolicyError(format!(
            "{}: a threshold of 0 or less is not simulated",
            at("threshold")
        )));
    }
    Ok((
        metric_name_for(i, "prometheus"),
        target_type(i, t)?,
        format!("{threshold:.3}"),
        KedaTrigger::Capacity(CapacityTrigger {
            threshold,
            activation_threshold,
            ignore_null_values,
            use_cached_metrics: t.use_cached_metrics.unwrap_or(false),
        }),
    ))
}

/// `GenerateMetricNameWithIndex(i, NormalizeString(name))`.
fn metric_name_for(i: usize, name: &str) -> String {
    format!("s{i}-{}", name.replace(['/', '.', ':', '%', '(', ')'], "-"))
}

/// One rabbitmq trigger: its metric name, target type, target quantity, and what it reads.
fn rabbit_trigger(i: usize, t: &Trigger, m: &RabbitMetadata) -> Result<Parsed, PolicyError> {
    let at = |field: &str| format!("spec.triggers[{i}].{field}");
    let err = |field: &str, m: String| Err(PolicyError(format!("{}: {m}", at(field))));
    if let Some(kind) = t
        .authentication_ref
        .as_ref()
        .and_then(|a| a.kind.as_deref())
    {
        if kind != "TriggerAuthentication" && kind != "ClusterTriggerAuthentication" {
            return err(
                "authenticationRef.kind",
                format!("{kind:?} is not TriggerAuthentication or ClusterTriggerAuthentication"),
            );
        }
    }
    let number = |field: &str, v: &Option<String>| -> Result<f64, PolicyError> {
        match given(v) {
            None => Ok(0.0),
            Some(s) => parse_float(s).ok_or_else(|| {
                PolicyError(format!(
                    "{}: unable to set param {field:?} value {s:?}: not a number",
                    at(&format!("metadata.{field}"))
                ))
            }),
        }
    };
    let boolean = |field: &str, v: &Option<String>| -> Result<bool, PolicyError> {
        match given(v) {
            None => Ok(false),
            Some(s) => parse_bool(s).ok_or_else(|| {
                PolicyError(format!(
                    "{}: unable to parse boolean value {s:?}",
                    at(&format!("metadata.{field}"))
                ))
            }),
        }
    };
    let Some(queue) = given(&m.queue_name) else {
        return err(
            "metadata.queueName",
            "missing required parameter \"queueName\"".into(),
        );
    };
    let host = given(&m.host);
    if host.is_none() && given(&m.host_from_env).is_none() && t.authentication_ref.is_none() {
        return err(
            "metadata.host",
            "missing required parameter \"host\" (give host, hostFromEnv or an authenticationRef)"
                .into(),
        );
    }
    let queue_length = number("queueLength", &m.queue_length)?;
    let mut value = number("value", &m.value)?;
    let activation_value = number("activationValue", &m.activation_value)?;
    let use_regex = boolean("useRegex", &m.use_regex)?;
    let exclude_unacknowledged = boolean("excludeUnacknowledged", &m.exclude_unacknowledged)?;
    boolean("unsafeSsl", &m.unsafe_ssl)?;
    if let Some(p) = given(&m.page_size) {
        match p.parse::<i64>() {
            Ok(n) if n >= 1 => {}
            Ok(_) => {
                return err(
                    "metadata.pageSize",
                    "pageSize should be 1 or greater".into(),
                )
            }
            Err(_) => {
                return err(
                    "metadata.pageSize",
                    format!("unable to set param \"pageSize\" value {p:?}"),
                )
            }
        }
    }
    let timeout_given = match given(&m.timeout) {
        None => false,
        Some(s) => {
            let ok = s.parse::<i64>().map(|ms| ms >= 0).unwrap_or(false) || go_duration(s);
            if !ok {
                return err(
                    "metadata.timeout",
                    format!("unable to parse duration value {s:?}: must be either a duration string (e.g. '30s', '5m') or a number of milliseconds"),
                );
            }
            true
        }
    };
    // Validate: the protocol, from `protocol` or else the scheme of `host`.
    let protocol = match given(&m.protocol).unwrap_or("auto") {
        "amqp" => RabbitProtocol::Amqp,
        "http" => RabbitProtocol::Http,
        "auto" => match host {
            Some(h) => match url_scheme(h).as_deref() {
                Some("amqp" | "amqps") => RabbitProtocol::Amqp,
                Some("http" | "https") => RabbitProtocol::Http,
                Some(other) => {
                    return err(
                        "metadata.host",
                        format!("unknown host URL scheme: `{other}` (protocol auto takes the protocol from it)"),
                    )
                }
                None => {
                    return err(
                        "metadata.host",
                        "can't parse host to find protocol".into(),
                    )
                }
            },
            None => {
                return err(
                    "metadata.protocol",
                    "auto (the default) takes the protocol from the host's scheme, and the host comes from hostFromEnv or the authenticationRef, which the simulator does not read; set protocol: amqp or http".into(),
                )
            }
        },
        other => {
            return err(
                "metadata.protocol",
                format!("the protocol has to be either `amqp`, `http`, or `auto` but is `{other}`"),
            )
        }
    };
    if use_regex && protocol != RabbitProtocol::Http {
        return err(
            "metadata.useRegex",
            "configure useRegex=true only with HTTP protocol".into(),
        );
    }
    if exclude_unacknowledged && protocol != RabbitProtocol::Http {
        return err(
            "metadata.excludeUnacknowledged",
            "configure excludeUnacknowledged=true only with HTTP protocol".into(),
        );
    }
    // validateTrigger. A value of 0 counts as not given, as in KEDA.
    let mode_given = given(&m.mode);
    let mode = match (mode_given, queue_length != 0.0, value != 0.0) {
        (None, false, false) => {
            value = 20.0;
            RabbitMode::QueueLength
        }
        (Some(_), true, _) | (_, true, true) => {
            return err(
                "metadata.queueLength",
                "queueLength is deprecated; use mode and value".into(),
            )
        }
        (None, true, false) => {
            value = queue_length;
            RabbitMode::QueueLength
        }
        (None, false, true) => return err("metadata.mode", "mode must be specified".into()),
        (Some(_), false, false) => return err("metadata.value", "value must be specified".into()),
        (Some(mode), false, true) => match mode {
            "QueueLength" => RabbitMode::QueueLength,
            "MessageRate" => RabbitMode::MessageRate,
            "DeliverGetRate" => RabbitMode::DeliverGetRate,
            "PublishedToDeliveredRatio" => RabbitMode::PublishedToDeliveredRatio,
            "ExpectedQueueConsumptionTime" => RabbitMode::ExpectedQueueConsumptionTime,
            other => return err(
                "metadata.mode",
                format!("trigger mode {other} must be one of QueueLength, MessageRate, DeliverGetRate, PublishedToDeliveredRatio or ExpectedQueueConsumptionTime"),
            ),
        },
    };
    if mode != RabbitMode::QueueLength && protocol != RabbitProtocol::Http {
        return err(
            "metadata.mode",
            format!("protocol amqp not supported; must be HTTP to use trigger mode {mode:?}"),
        );
    }
    if protocol == RabbitProtocol::Amqp && timeout_given {
        return err(
            "metadata.timeout",
            "AMQP protocol doesn't support custom timeouts".into(),
        );
    }
    if let Some(op) = given(&m.operation) {
        if !use_regex {
            // Read only with useRegex; KEDA accepts and ignores it otherwise.
        } else if !matches!(op, "sum" | "avg" | "max") {
            return err(
                "metadata.operation",
                format!("operation mode {op} must be one of sum, avg, max"),
            );
        }
    }
    if use_regex {
        return err(
            "metadata.useRegex",
            "the scenario has one queue; a regex over several queues is not simulated (set useRegex false and name the queue)".into(),
        );
    }
    if value < 0.0 || activation_value < 0.0 {
        return err(
            "metadata.value",
            "a negative target or activationValue is not simulated".into(),
        );
    }
    Ok((
        metric_name(i, queue),
        target_type(i, t)?,
        // GetMetricTargetMili: quantityFromFloat64, "%.3f".
        format!("{value:.3}"),
        KedaTrigger::Rabbit(RabbitTrigger {
            mode,
            value,
            activation_value,
            protocol,
            exclude_unacknowledged,
            use_cached_metrics: t.use_cached_metrics.unwrap_or(false),
        }),
    ))
}

/// Whether Go's `time.ParseDuration` takes `s` and gives a duration of 0 or more.
fn go_duration(s: &str) -> bool {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() || s.starts_with('-') {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 || rest[..digits].parse::<f64>().is_err() {
            return false;
        }
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..unit],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[unit..];
    }
    true
}
