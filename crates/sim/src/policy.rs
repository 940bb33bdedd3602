//! What decides the worker count: a fixed count, an HPA manifest, or a KEDA ScaledObject (read as
//! KEDA applies it: the HPA it generates, plus its own 0 <-> 1 activation); and what each of the
//! HPA's metrics reads from the simulated signals.
//!
//! A metric reads a [`Signal`] (ready, unacked, or both: by default the one its name says), or a
//! [`MetricFormula`] over the delayed [`Signals`]: the extension point for metrics computed from
//! more than one signal. The External metric `warren_workers_needed` reads
//! [`crate::capacity::CapacityFormula`] with the shipped knobs, as its recording rule computes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use warren_hpa::Autoscaler;

use crate::scenario::ReplicaOverrides;

/// A policy that cannot be used; the message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub(crate) String);

/// A queue count the broker exposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Messages ready (`rabbitmq_queue_messages_ready`, KEDA's QueueLength over AMQP).
    Ready,
    /// Messages delivered and not acked.
    Unacked,
    /// Both (`rabbitmq_queue_messages`, the seed's exporter, KEDA over HTTP).
    ReadyUnacked,
}

impl Signal {
    /// The signal an External metric's name stands for, as the adapter rule and the seed's
    /// exporter map them.
    pub fn for_metric_name(name: &str) -> Option<Signal> {
        match name {
            "rabbitmq_queue_messages_ready" => Some(Signal::Ready),
            "rabbitmq_queue_messages_unacked" | "rabbitmq_queue_messages_unacknowledged" => {
                Some(Signal::Unacked)
            }
            "rabbitmq_queue_messages" | "rabbitmq_queue_length" => Some(Signal::ReadyUnacked),
            _ => None,
        }
    }

    /// This signal's value in `seen`.
    pub fn read(self, seen: &Signals) -> f64 {
        match self {
            Signal::Ready => seen.ready as f64,
            Signal::Unacked => seen.unacked as f64,
            Signal::ReadyUnacked => (seen.ready + seen.unacked) as f64,
        }
    }
}

/// What the metric pipeline delivers: the simulated system's counts and counters as of
/// `at_secs` (a broker refresh, a scrape), which is earlier than the moment they are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Signals {
    /// When these values were taken, in simulated seconds.
    pub at_secs: f64,
    /// Messages ready.
    pub ready: u64,
    /// Messages delivered, not acked.
    pub unacked: u64,
    /// Jobs arrived so far (a counter: a rate is its difference over time).
    pub arrived_total: u64,
    /// Jobs acked so far.
    pub acked_total: u64,
    /// Seconds of work done by the acked jobs so far (mean work time = its difference over
    /// `acked_total`'s).
    pub busy_secs_total: f64,
    /// Workers asked for and not stopping.
    pub workers_current: u32,
    /// Workers ready.
    pub workers_ready: u32,
}

/// A metric computed from the delayed signals; its value goes to the HPA as an External metric.
/// It keeps whatever state it needs (earlier readings, for rates).
pub trait MetricFormula: Send {
    /// What it computes, for the report.
    fn describe(&self) -> String;
    /// The metric's value, from what the pipeline delivers at this sync.
    fn value(&mut self, seen: &Signals) -> f64;
}

/// Makes a fresh formula for each run.
pub type FormulaFactory = Arc<dyn Fn() -> Box<dyn MetricFormula> + Send + Sync>;

/// What one of the HPA's metrics reads.
pub(crate) enum MetricInput {
    Signal(Signal),
    Formula(Box<dyn MetricFormula>),
}

impl MetricInput {
    pub(crate) fn value(&mut self, seen: &Signals) -> f64 {
        match self {
            MetricInput::Signal(s) => s.read(seen),
            MetricInput::Formula(f) => f.value(seen),
        }
    }
}

/// KEDA's own loop beside the HPA it generates: every `polling_secs` it checks the trigger, scales
/// 0 -> 1 when it is active and back to 0 after `cooldown_secs` without activity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KedaActivation {
    /// `pollingInterval` (default 30 s).
    pub polling_secs: f64,
    /// `cooldownPeriod` (default 300 s).
    pub cooldown_secs: f64,
    /// `initialCooldownPeriod` (default 0).
    pub initial_cooldown_secs: f64,
    /// `minReplicaCount` (default 0).
    pub min_replica_count: u32,
    /// The trigger's `activationValue` (default 0): active when the metric is above it.
    pub activation_value: f64,
    /// The trigger's `useCachedMetrics`: the HPA gets the value of the last poll.
    pub use_cached_metrics: bool,
    /// What the trigger counts.
    pub signal: Signal,
}

#[derive(Clone)]
enum Kind {
    Fixed(u32),
    Hpa(Value),
    Keda {
        hpa: Value,
        activation: KedaActivation,
    },
    Oracle(crate::oracle::OracleSpec),
}

/// A policy as given: build a fresh controller for each run with [`PolicySpec::build`].
#[derive(Clone)]
pub struct PolicySpec {
    name: String,
    kind: Kind,
    formulas: Vec<(usize, FormulaFactory)>,
}

impl std::fmt::Debug for PolicySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A policy ready to run.
pub(crate) struct Controller {
    pub(crate) engine: Option<Autoscaler>,
    pub(crate) inputs: Vec<MetricInput>,
    pub(crate) metric_names: Vec<String>,
    pub(crate) keda: Option<KedaActivation>,
    pub(crate) fixed: Option<u32>,
    pub(crate) oracle: Option<crate::oracle::OracleSpec>,
    pub(crate) min: u32,
    pub(crate) max: u32,
}

impl PolicySpec {
    /// A fixed worker count: no autoscaler.
    pub fn fixed(replicas: u32) -> Self {
        PolicySpec {
            name: format!("fixed {replicas}"),
            kind: Kind::Fixed(replicas),
            formulas: Vec::new(),
        }
    }

    /// The oracle ([`crate::oracle`]): the fewest workers for a p95 wait of `slo_secs` at the
    /// true arrival rate, within `min..=max`. For measuring only, never a policy to deploy.
    pub fn oracle(slo_secs: f64, min: u32, max: Option<u32>) -> Result<Self, PolicyError> {
        if !(slo_secs >= 0.0 && slo_secs.is_finite()) {
            return Err(PolicyError(format!(
                "the oracle's SLO must be 0 s or more, not {slo_secs}"
            )));
        }
        if max.is_some_and(|max| max < min) {
            return Err(PolicyError("the oracle's max is below its min".into()));
        }
        Ok(PolicySpec {
            name: format!("oracle p95 <= {slo_secs} s"),
            kind: Kind::Oracle(crate::oracle::OracleSpec { slo_secs, min, max }),
            formulas: Vec::new(),
        })
    }

    /// An autoscaling/v2 HorizontalPodAutoscaler manifest, checked as the API server would.
    pub fn from_hpa_yaml(name: &str, text: &str) -> Result<Self, PolicyError> {
        let manifest: Value =
            serde_yaml::from_str(text).map_err(|e| PolicyError(one_line(&e.to_string())))?;
        let spec = PolicySpec {
            name: name.to_owned(),
            kind: Kind::Hpa(manifest),
            formulas: Vec::new(),
        };
        spec.build(&ReplicaOverrides::default(), None)?;
        Ok(spec)
    }

    /// An HPA manifest whose metrics at the given indexes read formulas; the others read the
    /// signal their name says.
    pub fn from_hpa_yaml_with_formulas(
        name: &str,
        text: &str,
        formulas: Vec<(usize, FormulaFactory)>,
    ) -> Result<Self, PolicyError> {
        let manifest: Value =
            serde_yaml::from_str(text).map_err(|e| PolicyError(one_line(&e.to_string())))?;
        let spec = PolicySpec {
            name: name.to_owned(),
            kind: Kind::Hpa(manifest),
            formulas,
        };
        spec.build(&ReplicaOverrides::default(), None)?;
        Ok(spec)
    }

    /// A KEDA ScaledObject with one rabbitmq trigger (mode QueueLength), strict: a field KEDA
    /// has that the simulator does not model is an error naming it.
    pub fn from_scaledobject_yaml(name: &str, text: &str) -> Result<Self, PolicyError> {
        let so: ScaledObject =
            warren_strict::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let (hpa, activation) = so.into_hpa()?;
        let spec = PolicySpec {
            name: name.to_owned(),
            kind: Kind::Keda { hpa, activation },
            formulas: Vec::new(),
        };
        spec.build(&ReplicaOverrides::default(), None)?;
        Ok(spec)
    }

    /// The policy's name, for tables and charts.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The HPA manifest this policy runs (a ScaledObject's generated one), as YAML; none for a
    /// fixed count.
    pub fn hpa_yaml(&self, overrides: &ReplicaOverrides) -> Option<String> {
        let manifest = match &self.kind {
            Kind::Fixed(_) | Kind::Oracle(_) => return None,
            Kind::Hpa(m) | Kind::Keda { hpa: m, .. } => m,
        };
        serde_yaml::to_string(&with_overrides(manifest, overrides, self.keda_min())).ok()
    }

    fn keda_min(&self) -> Option<u32> {
        match &self.kind {
            Kind::Keda { activation, .. } => Some(activation.min_replica_count),
            _ => None,
        }
    }

    pub(crate) fn build(
        &self,
        overrides: &ReplicaOverrides,
        signal: Option<Signal>,
    ) -> Result<Controller, PolicyError> {
        let (manifest, mut keda) = match &self.kind {
            Kind::Fixed(n) => {
                return Ok(Controller {
                    engine: None,
                    inputs: Vec::new(),
                    metric_names: Vec::new(),
                    keda: None,
                    fixed: Some(*n),
                    oracle: None,
                    min: *n,
                    max: *n,
                })
            }
            Kind::Oracle(spec) => {
                let mut spec = *spec;
                spec.min = overrides.min.unwrap_or(spec.min);
                spec.max = overrides.max.or(spec.max);
                return Ok(Controller {
                    engine: None,
                    inputs: Vec::new(),
                    metric_names: Vec::new(),
                    keda: None,
                    fixed: None,
                    oracle: Some(spec),
                    min: spec.min,
                    max: spec.max.unwrap_or(u32::MAX),
                });
            }
            Kind::Hpa(m) => (m, None),
            Kind::Keda { hpa, activation } => (hpa, Some(*activation)),
        };
        if let (Some(k), Some(min)) = (keda.as_mut(), overrides.min) {
            k.min_replica_count = min;
        }
        let manifest = with_overrides(manifest, overrides, self.keda_min());
        let text = serde_yaml::to_string(&manifest).map_err(|e| PolicyError(e.to_string()))?;
        let engine =
            Autoscaler::from_yaml(&text).map_err(|e| PolicyError(one_line(&e.to_string())))?;
        let mut inputs = Vec::new();
        let mut metric_names = Vec::new();
        for (index, spec) in engine.metric_specs().iter().enumerate() {
            let external = spec.external.as_ref();
            let metric = external.map_or_else(|| spec.type_.clone(), |e| e.metric.name.clone());
            if let Some((_, factory)) = self.formulas.iter().rev().find(|(i, _)| *i == index) {
                let formula = factory();
                metric_names.push(format!("{metric} = {}", formula.describe()));
                inputs.push(MetricInput::Formula(formula));
                continue;
            }
            // The capacity metric is computed from the signals, as its recording rule does.
            if external.is_some() && metric == crate::capacity::METRIC_NAME && signal.is_none() {
                let formula = crate::capacity::CapacityFormula::new(Default::default());
                metric_names.push(format!("{metric} = {}", formula.describe()));
                inputs.push(MetricInput::Formula(Box::new(formula)));
                continue;
            }
            if external.is_none() {
                return Err(PolicyError(format!(
                    "spec.metrics[{index}]: a {} metric has no simulated value; use an External metric",
                    spec.type_
                )));
            }
            let chosen = signal
                .or_else(|| keda.map(|k| k.signal))
                .or_else(|| Signal::for_metric_name(&metric))
                .ok_or_else(|| {
                    PolicyError(format!(
                        "spec.metrics[{index}]: the External metric {metric:?} has no simulated value; \
                         known: rabbitmq_queue_messages_ready, rabbitmq_queue_messages_unacked, \
                         rabbitmq_queue_messages, rabbitmq_queue_length, warren_workers_needed \
                         (or set metrics.signal)"
                    ))
                })?;
            metric_names.push(metric);
            inputs.push(MetricInput::Signal(chosen));
        }
        let spec = &engine.hpa().spec;
        let min = u32::try_from(spec.min_replicas.unwrap_or(1)).unwrap_or(1);
        let max = u32::try_from(spec.max_replicas).unwrap_or(1);
        Ok(Controller {
            engine: Some(engine),
            inputs,
            metric_names,
            keda,
            fixed: None,
            oracle: None,
            min: keda.map_or(min, |k| k.min_replica_count),
            max,
        })
    }
}

/// The manifest with the scenario's min/max; for KEDA the HPA's minimum is at least 1, as KEDA's
/// `GetHPAMinReplicas` makes it.
fn with_overrides(manifest: &Value, overrides: &ReplicaOverrides, keda_min: Option<u32>) -> Value {
    let mut manifest = manifest.clone();
    if let Some(spec) = manifest.get_mut("spec").and_then(Value::as_mapping_mut) {
        if let Some(min) = overrides.min {
            let min = if keda_min.is_some() { min.max(1) } else { min };
            spec.insert("minReplicas".into(), min.into());
        }
        if let Some(max) = overrides.max {
            spec.insert("maxReplicas".into(), max.into());
        }
    }
    manifest
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// KEDA's ScaledObject, the fields the simulator models. Defaults and the generated HPA follow
// KEDA's source: apis/keda/v1alpha1 (defaultPollingInterval 30, defaultHPAMinReplicas 1,
// defaultHPAMaxReplicas 100), pkg/scaling/executor (defaultCooldownPeriod 300,
// defaultInitialCooldownPeriod 0), controllers/keda/hpa.go and pkg/scalers/rabbitmq_scaler.go
// (defaultRabbitMQQueueLength 20; AMQP counts ready messages, HTTP ready + unacked unless
// excludeUnacknowledged).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaledObject {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: ScaledObjectSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    // Accepted as KEDA has it; it changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    namespace: Option<String>,
    // Accepted as KEDA has it; it changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    // Accepted as KEDA has it; it changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaledObjectSpec {
    scale_target_ref: Value,
    #[serde(default)]
    polling_interval: Option<u32>,
    #[serde(default)]
    cooldown_period: Option<u32>,
    #[serde(default)]
    initial_cooldown_period: Option<u32>,
    #[serde(default)]
    min_replica_count: Option<u32>,
    #[serde(default)]
    max_replica_count: Option<u32>,
    #[serde(default)]
    advanced: Option<Advanced>,
    triggers: Vec<Trigger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Advanced {
    // Accepted as KEDA has it; it changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    restore_to_original_replica_count: Option<bool>,
    #[serde(default)]
    horizontal_pod_autoscaler_config: Option<HpaConfig>,
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
struct Trigger {
    #[serde(rename = "type")]
    type_: String,
    // Accepted as KEDA has it; it changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    name: Option<String>,
    metadata: RabbitMetadata,
    // Accepted as KEDA has it; it changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    authentication_ref: Option<Value>,
    #[serde(default)]
    metric_type: Option<String>,
    #[serde(default)]
    use_cached_metrics: Option<bool>,
}

/// The rabbitmq scaler's metadata (KEDA gives every value as a string).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RabbitMetadata {
    queue_name: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    queue_length: Option<String>,
    #[serde(default)]
    activation_value: Option<String>,
    #[serde(default)]
    exclude_unacknowledged: Option<String>,
    // Accepted as KEDA has it; it changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    host: Option<String>,
    // Accepted as KEDA has it; it changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    host_from_env: Option<String>,
    // Accepted as KEDA has it; it changes nothing the simulator models.
    #[allow(dead_code)]
    #[serde(default)]
    vhost_name: Option<String>,
}

impl ScaledObject {
    fn into_hpa(self) -> Result<(Value, KedaActivation), PolicyError> {
        let err = |m: String| Err(PolicyError(m));
        if self.api_version != "keda.sh/v1alpha1" || self.kind != "ScaledObject" {
            return err(format!(
                "expected apiVersion keda.sh/v1alpha1, kind ScaledObject; got {} {}",
                self.api_version, self.kind
            ));
        }
        let spec = self.spec;
        let [trigger] = &spec.triggers[..] else {
            return err(format!(
                "spec.triggers: the simulator models one rabbitmq trigger, not {}",
                spec.triggers.len()
            ));
        };
        if trigger.type_ != "rabbitmq" {
            return err(format!(
                "spec.triggers[0].type: {:?} is not simulated; only rabbitmq",
                trigger.type_
            ));
        }
        let m = &trigger.metadata;
        let number = |field: &str, v: &Option<String>| -> Result<Option<f64>, PolicyError> {
            v.as_ref()
                .map(|s| {
                    s.trim().parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(
                        || {
                            PolicyError(format!(
                                "spec.triggers[0].metadata.{field}: {s:?} is not a number of 0 or more"
                            ))
                        },
                    )
                })
                .transpose()
        };
        let value = number("value", &m.value)?;
        let queue_length = number("queueLength", &m.queue_length)?;
        let mode = m.mode.as_deref();
        // rabbitmq_scaler.go: no queueLength, mode nor value means QueueLength 20; the older
        // queueLength field is QueueLength with that value.
        let value = match (mode, value, queue_length) {
            (None, None, None) => 20.0,
            (None | Some("QueueLength"), None, Some(q)) => q,
            (Some("QueueLength"), Some(v), None) => v,
            (Some("QueueLength"), None, None) => {
                return err("spec.triggers[0].metadata.value: needed with mode QueueLength".into())
            }
            (Some(other), _, None) if other != "QueueLength" => {
                return err(format!(
                    "spec.triggers[0].metadata.mode: {other:?} is not simulated; only QueueLength"
                ))
            }
            _ => {
                return err(
                    "spec.triggers[0].metadata: give mode and value, or queueLength, not both"
                        .into(),
                )
            }
        };
        let exclude_unacked = match m.exclude_unacknowledged.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return err(format!(
                "spec.triggers[0].metadata.excludeUnacknowledged: {other:?} is not true or false"
            ))
            }
        };
        let signal = match m.protocol.as_deref() {
            // "auto" takes the protocol from the host's scheme; warren's authentication gives an
            // amqp:// URL.
            None | Some("auto") | Some("amqp") => {
                if exclude_unacked {
                    return err("spec.triggers[0].metadata.excludeUnacknowledged: KEDA allows it only with protocol http".into());
                }
                Signal::Ready
            }
            Some("http") if exclude_unacked => Signal::Ready,
            Some("http") => Signal::ReadyUnacked,
            Some(other) => {
                return err(format!(
                    "spec.triggers[0].metadata.protocol: {other:?} is not amqp, http or auto"
                ))
            }
        };
        let activation_value = number("activationValue", &m.activation_value)?.unwrap_or(0.0);
        let target_type = trigger.metric_type.as_deref().unwrap_or("AverageValue");
        if target_type != "AverageValue" && target_type != "Value" {
            return err(format!(
                "spec.triggers[0].metricType: {target_type:?} is not AverageValue or Value"
            ));
        }
        // GetMetricTargetMili: the target in thousandths.
        let quantity = format!("{}m", (value * 1000.0).round() as i64);
        let target_key = if target_type == "Value" {
            "value"
        } else {
            "averageValue"
        };
        let metric_name = format!(
            "s0-rabbitmq-{}",
            m.queue_name.replace(['/', '.', ':', '%'], "-")
        );
        let min_count = spec.min_replica_count.unwrap_or(0);
        let hpa_min = if min_count > 0 { min_count } else { 1 };
        let hpa_max = spec.max_replica_count.unwrap_or(100);
        let hpa_config = spec
            .advanced
            .as_ref()
            .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref());
        let hpa_name = hpa_config
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| format!("keda-hpa-{}", self.metadata.name));
        let mut hpa = serde_yaml::Mapping::new();
        hpa.insert("apiVersion".into(), "autoscaling/v2".into());
        hpa.insert("kind".into(), "HorizontalPodAutoscaler".into());
        let mut meta = serde_yaml::Mapping::new();
        meta.insert("name".into(), hpa_name.into());
        hpa.insert("metadata".into(), meta.into());
        let metric: Value = serde_yaml::from_str(&format!(
            "type: External\nexternal:\n  metric:\n    name: {metric_name:?}\n    selector:\n      matchLabels:\n        scaledobject.keda.sh/name: {:?}\n  target:\n    type: {target_type}\n    {target_key}: {quantity:?}\n",
            self.metadata.name
        ))
        .map_err(|e| PolicyError(e.to_string()))?;
        let mut hpa_spec = serde_yaml::Mapping::new();
        // KEDA's defaults for the target: a Deployment.
        let mut target = spec.scale_target_ref.clone();
        if let Some(t) = target.as_mapping_mut() {
            if !t.contains_key("kind") {
                t.insert("kind".into(), "Deployment".into());
            }
            if !t.contains_key("apiVersion") {
                t.insert("apiVersion".into(), "apps/v1".into());
            }
        }
        hpa_spec.insert("scaleTargetRef".into(), target);
        hpa_spec.insert("minReplicas".into(), hpa_min.into());
        hpa_spec.insert("maxReplicas".into(), hpa_max.into());
        hpa_spec.insert("metrics".into(), Value::Sequence(vec![metric]));
        if let Some(behavior) = hpa_config.and_then(|c| c.behavior.clone()) {
            hpa_spec.insert("behavior".into(), behavior);
        }
        hpa.insert("spec".into(), hpa_spec.into());
        let activation = KedaActivation {
            polling_secs: f64::from(spec.polling_interval.unwrap_or(30).max(1)),
            cooldown_secs: f64::from(spec.cooldown_period.unwrap_or(300)),
            initial_cooldown_secs: f64::from(spec.initial_cooldown_period.unwrap_or(0)),
            min_replica_count: min_count,
            activation_value,
            use_cached_metrics: trigger.use_cached_metrics.unwrap_or(false),
            signal,
        };
        Ok((hpa.into(), activation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SO: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: w
spec:
  scaleTargetRef:
    name: worker
  triggers:
    - type: rabbitmq
      metadata:
        queueName: Orders
"#;

    #[test]
    fn keda_defaults_are_keda_s_rabbitmq_defaults() {
        let so: ScaledObject = warren_strict::from_str(SO).expect("valid");
        let (hpa, activation) = so.into_hpa().expect("valid");
        assert_eq!(activation.polling_secs, 30.0);
        assert_eq!(activation.cooldown_secs, 300.0);
        assert_eq!(activation.min_replica_count, 0);
        assert_eq!(activation.signal, Signal::Ready);
        let text = serde_yaml::to_string(&hpa).expect("yaml");
        let engine = Autoscaler::from_yaml(&text).expect("a valid HPA");
        let spec = &engine.hpa().spec;
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 100));
        let target = &engine.metric_specs()[0]
            .external
            .as_ref()
            .expect("external")
            .target;
        assert_eq!(target.type_, "AverageValue");
        assert_eq!(
            target.average_value.as_ref().map(|q| q.0.as_str()),
            Some("20000m")
        );
    }

    #[test]
    fn keda_http_counts_unacked_and_unknown_fields_are_named() {
        let http = SO.replace(
            "queueName: Orders",
            "queueName: Orders\n        protocol: http",
        );
        let so: ScaledObject = warren_strict::from_str(&http).expect("valid");
        assert_eq!(so.into_hpa().expect("valid").1.signal, Signal::ReadyUnacked);
        let typo = SO.replace(
            "queueName: Orders",
            "queueName: Orders\n        activationValu: \"2\"",
        );
        let err = PolicySpec::from_scaledobject_yaml("x", &typo)
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("spec.triggers[0].metadata.activationValu"),
            "{err}"
        );
        assert!(err.contains("did you mean activationValue?"), "{err}");
    }

    #[test]
    fn hpa_metric_names_map_to_signals_or_are_refused() {
        let hpa = |metric: &str| {
            format!(
                "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: w}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: w}}\n  maxReplicas: 5\n  metrics:\n  - type: External\n    external:\n      metric: {{name: {metric}}}\n      target: {{type: Value, value: \"20\"}}\n"
            )
        };
        assert!(PolicySpec::from_hpa_yaml("seed", &hpa("rabbitmq_queue_length")).is_ok());
        let err = PolicySpec::from_hpa_yaml("x", &hpa("cpu_seconds")).expect_err("unknown");
        assert!(
            err.to_string()
                .contains("\"cpu_seconds\" has no simulated value"),
            "{err}"
        );
    }
}
