//! The record of one sync: what the engine was given and what it decided. The simulator keeps
//! one of each sync in its outcome; `warren autoscale` logs one of each.

use serde::{Deserialize, Serialize};
use warren_hpa::ScaleDecision;

/// One HPA sync: the record the simulator keeps of each, and `warren autoscale` sends of each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Seconds since the run started: simulated ones here, wall-clock ones in `warren autoscale`.
    pub at_secs: f64,
    /// Workers before the decision.
    pub current: u32,
    /// Ready workers before it.
    pub ready: u32,
    /// The engine's desired count.
    pub desired: u32,
    /// Whether the count was changed.
    pub rescale: bool,
    /// Each metric's value as the HPA saw it; none when unavailable.
    pub metric_values: Vec<Option<f64>>,
    /// The controller's rescale reason, if any, e.g. `external metric ... above target`.
    pub summary: Option<String>,
    /// The condition reasons, [`ScaleDecision::reasons`]: `AbleToScale=... ScalingActive=...
    /// ScalingLimited=...` and, with HPAScaleToZero, `ScaledToZero=...`.
    pub reasons: String,
}

impl Decision {
    /// The record of the engine's `decision` at `at_secs`, from `current` workers of which
    /// `ready` were ready, with the metric values it was given.
    pub fn new(
        at_secs: f64,
        current: u32,
        ready: u32,
        metric_values: Vec<Option<f64>>,
        decision: &ScaleDecision,
    ) -> Self {
        Decision {
            at_secs,
            current,
            ready,
            desired: u32::try_from(decision.desired_replicas.max(0)).unwrap_or(0),
            rescale: decision.rescale,
            metric_values,
            summary: decision.reason.clone(),
            reasons: decision.reasons(),
        }
    }

    /// The decision as one line, as `warren autoscale` logs it.
    pub fn line(&self, metric_names: &[String]) -> String {
        let metrics: Vec<String> = metric_names
            .iter()
            .zip(&self.metric_values)
            .map(|(name, v)| match v {
                Some(v) => format!("metric={name} value={v}"),
                None => format!("metric={name} value=unavailable"),
            })
            .collect();
        format!(
            "t={:.1}s decision {} current={} ready={} desired={} rescale={} {}{}",
            self.at_secs,
            metrics.join(" "),
            self.current,
            self.ready,
            self.desired,
            self.rescale,
            self.reasons,
            self.summary
                .as_ref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        )
    }
}
