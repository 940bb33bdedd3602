//! What decides the worker count: a fixed count, an HPA manifest, or a KEDA ScaledObject (applied
//! as KEDA applies it, [`crate::keda`]: the HPA it generates, plus its own scale loop); and what
//! each of the HPA's metrics reads from the simulated signals.
//!
//! A metric reads a [`Signal`] (ready, unacked, or both: by default the one its name says), or a
//! [`MetricFormula`] over the delayed [`Signals`]: the extension point for metrics computed from
//! more than one signal. The External metric `warren_workers_needed` reads
//! [`warren_policy::capacity::CapacityFormula`] with the shipped knobs, as its recording rule computes it.

use std::sync::Arc;

use serde_yaml::Value;
use warren_hpa::Autoscaler;
use warren_policy::one_line;
pub use warren_policy::{MetricFormula, Signal, Signals};

pub use crate::error::PolicyError;
use crate::keda::{Applied, KedaLoop, KedaTrigger};
use crate::scenario::ReplicaOverrides;

/// Makes a fresh formula for each run.
pub type FormulaFactory = Arc<dyn Fn() -> Box<dyn MetricFormula> + Send + Sync>;

/// What one of the HPA's metrics reads.
pub(crate) enum MetricInput {
    Signal(Signal),
    Formula(Box<dyn MetricFormula>),
    /// A ScaledObject's trigger, by index: KEDA's metrics server answers it.
    Keda(usize),
}

#[derive(Clone)]
enum Kind {
    Fixed(u32),
    Hpa(Value),
    /// A paused ScaledObject (`autoscaling.keda.sh/paused`): held at the count it starts with.
    Frozen(u32),
    Keda {
        hpa: Value,
        scale_loop: KedaLoop,
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
    pub(crate) keda: Option<KedaLoop>,
    /// The capacity formula of each KEDA trigger on `warren_workers_needed`, by trigger index.
    pub(crate) keda_formulas: Vec<Option<Box<dyn MetricFormula>>>,
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

    /// A KEDA ScaledObject with rabbitmq triggers, applied as KEDA applies it
    /// ([`crate::keda`]); strict: a field KEDA refuses, or one the simulator cannot model, is an
    /// error naming it.
    pub fn from_scaledobject_yaml(name: &str, text: &str) -> Result<Self, PolicyError> {
        let applied = crate::keda::apply(text)?;
        let kind = match applied {
            Applied::PausedAt(n) => Kind::Fixed(n),
            Applied::Paused { min_replica_count } => Kind::Frozen(min_replica_count),
            Applied::Running { hpa, scale_loop } => Kind::Keda { hpa, scale_loop },
        };
        let spec = PolicySpec {
            name: name.to_owned(),
            kind,
            formulas: Vec::new(),
        };
        // The HPA's behavior is the ScaledObject's: name it where the user wrote it.
        spec.build(&ReplicaOverrides::default(), None)
            .map_err(|e| {
                PolicyError(format!(
                    "the HPA KEDA generates: {}",
                    e.0.replace(
                        "spec.behavior",
                        "spec.advanced.horizontalPodAutoscalerConfig.behavior"
                    )
                ))
            })?;
        Ok(spec)
    }

    /// The loop KEDA runs beside its HPA, for a running ScaledObject.
    pub fn keda_loop(&self) -> Option<&KedaLoop> {
        match &self.kind {
            Kind::Keda { scale_loop, .. } => Some(scale_loop),
            _ => None,
        }
    }

    /// The policy's name, for tables and charts.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The HPA manifest this policy runs (a ScaledObject's generated one), as YAML; none for a
    /// fixed count.
    pub fn hpa_yaml(&self, overrides: &ReplicaOverrides) -> Option<String> {
        let manifest = match &self.kind {
            Kind::Fixed(_) | Kind::Frozen(_) | Kind::Oracle(_) => return None,
            Kind::Hpa(m) | Kind::Keda { hpa: m, .. } => m,
        };
        serde_yaml::to_string(&with_overrides(manifest, overrides, self.keda_min())).ok()
    }

    fn keda_min(&self) -> Option<u32> {
        match &self.kind {
            Kind::Keda { scale_loop, .. } => Some(scale_loop.min_replica_count),
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
                    keda_formulas: Vec::new(),
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
                    keda_formulas: Vec::new(),
                    fixed: None,
                    oracle: Some(spec),
                    min: spec.min,
                    max: spec.max.unwrap_or(u32::MAX),
                });
            }
            Kind::Frozen(n) => {
                // Held at the scenario's `workers.initial`, else at `n`: no maximum caps it.
                let n = overrides.min.unwrap_or(*n);
                return Ok(Controller {
                    engine: None,
                    inputs: Vec::new(),
                    metric_names: Vec::new(),
                    keda: None,
                    keda_formulas: Vec::new(),
                    fixed: Some(n),
                    oracle: None,
                    min: n,
                    max: u32::MAX,
                });
            }
            Kind::Hpa(m) => (m, None),
            Kind::Keda { hpa, scale_loop } => {
                if signal.is_some() {
                    return Err(PolicyError(
                        "metrics.signal: a ScaledObject's triggers say what they read; remove metrics.signal"
                            .into(),
                    ));
                }
                (hpa, Some(scale_loop.clone()))
            }
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
            if keda.is_some() {
                // Trigger `index` of the ScaledObject feeds this metric.
                metric_names.push(metric);
                inputs.push(MetricInput::Keda(index));
                continue;
            }
            if let Some((_, factory)) = self.formulas.iter().rev().find(|(i, _)| *i == index) {
                let formula = factory();
                metric_names.push(format!("{metric} = {}", formula.describe()));
                inputs.push(MetricInput::Formula(formula));
                continue;
            }
            // The capacity metric is computed from the signals, as its recording rule does.
            if external.is_some()
                && metric == warren_policy::capacity::METRIC_NAME
                && signal.is_none()
            {
                let formula = warren_policy::capacity::CapacityFormula::new(Default::default());
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
            min: keda.as_ref().map_or(min, |k| k.min_replica_count),
            keda_formulas: keda
                .iter()
                .flat_map(|k| k.triggers.iter())
                .map(|t| match t {
                    KedaTrigger::Capacity(_) => Some(Box::new(
                        warren_policy::capacity::CapacityFormula::new(Default::default()),
                    )
                        as Box<dyn MetricFormula>),
                    KedaTrigger::Rabbit(_) => None,
                })
                .collect(),
            keda,
            fixed: None,
            oracle: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_metric_names_map_to_signals_or_are_refused() {
        let hpa = |metric: &str| {
            format!(
                "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: w}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: w}}\n  maxReplicas: 5\n  metrics:\n  - type: External\n    external:\n      metric: {{name: {metric}}}\n      target: {{type: Value, value: \"20\"}}\n"
            )
        };
        assert!(PolicySpec::from_hpa_yaml("original", &hpa("rabbitmq_queue_length")).is_ok());
        let err = PolicySpec::from_hpa_yaml("x", &hpa("cpu_seconds")).expect_err("unknown");
        assert!(
            err.to_string()
                .contains("\"cpu_seconds\" has no simulated value"),
            "{err}"
        );
    }
}
