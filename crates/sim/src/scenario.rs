//! A scenario file: the load, the work, the workers, the metric pipeline, the SLO, the seed and
//! the simulated duration. YAML, strict ([`warren_strict`]: an unknown field names its path and the field meant); [`Scenario::check`] then refuses
//! values that parse but make no sense.
//!
//! Every default matches the live local system (`warren autoscale` with its worker pool on a
//! private broker): workers ready in 0.02 s, prefetch 1, drain on scale-down, idle workers
//! stopped first, the metric read straight from the broker's prometheus plugin (refreshed by the
//! quorum queue's 1 s tick), a 15 s sync period, a delivery limit of 5.

use serde::{Deserialize, Serialize};
use warren_pattern::{Pattern, PatternKind};

use crate::work::WorkTime;

/// A scenario that cannot be simulated; the message is one line naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub(crate) String);

impl From<warren_strict::Error> for ScenarioError {
    fn from(e: warren_strict::Error) -> Self {
        ScenarioError(e.to_string())
    }
}

/// One scenario, as its file says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One line: what this scenario stands for.
    pub description: String,
    /// How long to simulate, in seconds (at most, with `end_when_settled`).
    pub duration_secs: f64,
    /// End at the first sample after the load is over with the queue empty and the workers back
    /// at the policy's minimum, as `warren demo` does.
    #[serde(default)]
    pub end_when_settled: bool,
    /// The seed of every random draw; the same seed gives the same run, bit for bit.
    #[serde(default)]
    pub seed: u64,
    /// When jobs arrive.
    pub arrivals: Arrivals,
    /// How long each job takes.
    pub work: WorkTime,
    /// The workers.
    #[serde(default)]
    pub workers: Workers,
    /// The queue.
    #[serde(default)]
    pub queue: QueueSettings,
    /// What the autoscaler sees, and when.
    #[serde(default)]
    pub metrics: MetricPipeline,
    /// Overrides of the policy's minimum and maximum replicas.
    #[serde(default)]
    pub replicas: ReplicaOverrides,
    /// The queue wait a job should not exceed, in seconds (the report gives the share within it).
    pub slo_secs: f64,
    /// Seconds between two samples of the time series; by default 1 s, or more for runs longer
    /// than 2 hours (at most 7,200 samples).
    #[serde(default)]
    pub sample_secs: Option<f64>,
    /// What happened on the live system this scenario was captured from (`warren capture`): a
    /// CSV of `t_secs,replicas,backlog,arrival_rate,wait_p95_secs`, its path relative to the
    /// scenario file; `warren simulate` reads it beside the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

/// When jobs arrive: a rate pattern, and bursts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrivals {
    /// A built-in pattern of `warren load` (constant, step, ramp, spike, sine) at `rate`.
    #[serde(default)]
    pub pattern: Option<PatternKind>,
    /// The built-in pattern's rate, jobs per second.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Instead of a built-in pattern: `[time_secs, rate]` points, linear between them (two points
    /// at one time make a step), as `warren load --pattern-file`.
    #[serde(default)]
    pub points: Option<Vec<[f64; 2]>>,
    /// How long the pattern lasts, in seconds; by default the whole duration. After it, no job
    /// arrives but bursts.
    #[serde(default)]
    pub pattern_secs: Option<f64>,
    /// Evenly spaced arrivals (as `warren load` sends) or a Poisson process at the pattern's rate.
    #[serde(default)]
    pub process: ArrivalProcess,
    /// Jobs that arrive all at once.
    #[serde(default)]
    pub bursts: Vec<Burst>,
}

/// How arrivals are spaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalProcess {
    /// Job `i` arrives when the pattern's integral reaches `i`.
    #[default]
    Even,
    /// Exponential gaps at the pattern's rate (an inhomogeneous Poisson process).
    Poisson,
}

/// `jobs` jobs arriving at `at_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    /// When, in seconds from the start.
    pub at_secs: f64,
    /// How many jobs.
    pub jobs: u32,
}

/// The workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workers {
    /// Seconds from a worker's start until it is ready and consumes (local process about 0.02 s;
    /// a cluster pod 5-60 s).
    pub startup_secs: f64,
    /// A uniform extra start-up time in `[0, startup_jitter_secs)`, drawn per worker.
    pub startup_jitter_secs: f64,
    /// Unacked deliveries a worker holds, each worked at once (warren worker's `PREFETCH`).
    pub prefetch: u32,
    /// On scale-down a worker finishes the jobs in hand, then stops; without drain they are
    /// interrupted and requeued.
    pub drain: bool,
    /// With drain, the longest a stopping worker may take (Kubernetes'
    /// `terminationGracePeriodSeconds`); the jobs still in hand then are interrupted. None waits
    /// as long as it takes, as warren's pool does for its grace.
    pub drain_grace_secs: Option<f64>,
    /// Which workers go first on scale-down.
    pub victim_order: VictimOrder,
    /// With `victim_order: deletion_cost`, how long idle or busy must last before the worker
    /// writes it to its pod's annotation (`POD_DELETION_COST_DEBOUNCE_MS`, 2 s).
    pub deletion_cost_debounce_secs: f64,
    /// Workers running (and ready) at the start; by default the policy's minimum.
    pub initial: Option<u32>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            startup_secs: 0.02,
            startup_jitter_secs: 0.0,
            prefetch: 1,
            drain: true,
            drain_grace_secs: None,
            victim_order: VictimOrder::IdleFirst,
            deletion_cost_debounce_secs: 2.0,
            initial: None,
        }
    }
}

/// Which workers a scale-down stops first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VictimOrder {
    /// As warren's `WorkerPool`: not ready first, then the fewest jobs in hand, then the youngest.
    #[default]
    IdleFirst,
    /// As a Deployment's ReplicaSet: not ready first, then ready for the shortest time, then the
    /// youngest; jobs in hand do not count.
    Replicaset,
    /// As a ReplicaSet whose workers run with `--pod-deletion-cost`: not ready first, then the
    /// lower `controller.kubernetes.io/pod-deletion-cost` (0 idle, 100 busy, as each worker last
    /// wrote it: a state is written once it has lasted `deletion_cost_debounce_secs`), then the
    /// ReplicaSet's own order.
    DeletionCost,
}

/// The queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Deliveries after which a message is dead-lettered instead of requeued (warren's quorum
    /// queue: 5).
    pub delivery_limit: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings { delivery_limit: 5 }
    }
}

/// Where the autoscaler reads its metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricSource {
    /// The broker's prometheus plugin at each sync (`warren autoscale`'s default; KEDA's scaler
    /// reads the broker itself too).
    #[default]
    Broker,
    /// Prometheus' last scrape of the plugin, through prometheus-adapter's query.
    Prometheus,
}

/// What the autoscaler sees, and when: broker refresh, then the scrape (with Prometheus), then
/// the HPA's sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricPipeline {
    /// How often the broker refreshes the queue's counts that its plugin exposes (a quorum queue
    /// ticks every 1 s); 0 reads them live.
    pub broker_refresh_secs: f64,
    /// When the broker's first refresh comes, in `[0, broker_refresh_secs)`. The broker's tick
    /// is not in step with the HPA's sync: by default half a refresh, so a sync reads counts
    /// half a refresh old, the mean lag of the live system (bench/fidelity measures it).
    pub broker_phase_secs: Option<f64>,
    /// When the management plugin's first statistics sample comes, in `[0, 5)` s (it samples
    /// every 5 s; KEDA's rabbitmq scaler over HTTP reads it). By default half an interval. A
    /// sample's rates are answered for [`crate::keda::MANAGEMENT_RATE_VISIBLE_SECS`] after it,
    /// then 0, so the phase decides whether KEDA's reads see them (docs/simulation.md, "KEDA").
    pub management_phase_secs: Option<f64>,
    /// Broker, or Prometheus then the adapter.
    pub source: MetricSource,
    /// Prometheus' scrape interval, with `source: prometheus`.
    pub scrape_interval_secs: f64,
    /// The HPA controller's sync period (`--horizontal-pod-autoscaler-sync-period`, 15 s).
    pub sync_period_secs: f64,
    /// The metric every policy metric reads, instead of the one its name says.
    pub signal: Option<warren_policy::Signal>,
}

impl Default for MetricPipeline {
    fn default() -> Self {
        MetricPipeline {
            broker_refresh_secs: 1.0,
            broker_phase_secs: None,
            management_phase_secs: None,
            source: MetricSource::Broker,
            scrape_interval_secs: 15.0,
            sync_period_secs: 15.0,
            signal: None,
        }
    }
}

/// Overrides of the policy's replica bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaOverrides {
    /// `minReplicas` (an HPA) or `minReplicaCount` (a ScaledObject).
    #[serde(default)]
    pub min: Option<u32>,
    /// `maxReplicas` or `maxReplicaCount`.
    #[serde(default)]
    pub max: Option<u32>,
}

/// The most jobs one run may have: each may wait in memory at once (24 bytes each).
pub const MAX_JOBS: f64 = 50_000_000.0;
/// The most samples one run's time series may have.
pub const MAX_SAMPLES: f64 = 1_000_000.0;
/// The longest simulated run: 30 days, as the longest pattern.
pub const MAX_DURATION_SECS: f64 = warren_pattern::MAX_PATTERN_SECS;

impl Scenario {
    /// Parses and checks a scenario file's text.
    pub fn from_yaml(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = warren_strict::from_str(text)?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Refuses values that parse but cannot be simulated.
    pub fn check(&self) -> Result<(), ScenarioError> {
        let bad = |field: &str, why: &str| Err(ScenarioError(format!("{field}: {why}")));
        if !(self.duration_secs > 0.0 && self.duration_secs <= MAX_DURATION_SECS) {
            return bad("duration_secs", "must be above 0 and at most 30 days");
        }
        if !(self.slo_secs.is_finite() && self.slo_secs >= 0.0) {
            return bad("slo_secs", "must be a number of 0 or more");
        }
        if let Some(s) = self.sample_secs {
            if !(s.is_finite() && s >= 0.01) {
                return bad("sample_secs", "must be at least 0.01");
            }
        }
        if self.duration_secs / self.sample_interval() > MAX_SAMPLES {
            return bad(
                "sample_secs",
                &format!("gives more than {MAX_SAMPLES} samples; take a longer interval"),
            );
        }
        let pattern_jobs = self.pattern()?.map_or(0.0, |p| p.integral(p.duration()));
        let burst_jobs: f64 = self.arrivals.bursts.iter().map(|b| f64::from(b.jobs)).sum();
        if pattern_jobs + burst_jobs > MAX_JOBS {
            return bad(
                "arrivals",
                &format!(
                    "asks for {:.0} jobs; a run takes at most {MAX_JOBS} (every one may wait in \
                     memory at once)",
                    pattern_jobs + burst_jobs
                ),
            );
        }
        for (i, burst) in self.arrivals.bursts.iter().enumerate() {
            if !(burst.at_secs.is_finite() && burst.at_secs >= 0.0) {
                return bad(
                    &format!("arrivals.bursts[{i}].at_secs"),
                    "must be 0 or more",
                );
            }
        }
        self.work
            .check()
            .map_err(|e| ScenarioError(format!("work.{e}")))?;
        let w = &self.workers;
        if !(w.startup_secs.is_finite() && w.startup_secs >= 0.0) {
            return bad("workers.startup_secs", "must be 0 or more");
        }
        if !(w.startup_jitter_secs.is_finite() && w.startup_jitter_secs >= 0.0) {
            return bad("workers.startup_jitter_secs", "must be 0 or more");
        }
        if !(1..=1000).contains(&w.prefetch) {
            return bad("workers.prefetch", "must be between 1 and 1000");
        }
        if let Some(g) = w.drain_grace_secs {
            if !(g.is_finite() && g >= 0.0) {
                return bad("workers.drain_grace_secs", "must be 0 or more");
            }
        }
        if self.queue.delivery_limit == 0 {
            return bad("queue.delivery_limit", "must be at least 1");
        }
        let m = &self.metrics;
        if !(m.broker_refresh_secs.is_finite() && m.broker_refresh_secs >= 0.0) {
            return bad("metrics.broker_refresh_secs", "must be 0 or more");
        }
        if let Some(phase) = m.broker_phase_secs {
            if !(phase.is_finite()
                && phase >= 0.0
                && (phase < m.broker_refresh_secs || phase == 0.0))
            {
                return bad(
                    "metrics.broker_phase_secs",
                    "must be 0 or more and below broker_refresh_secs",
                );
            }
        }
        if let Some(phase) = m.management_phase_secs {
            if !(0.0..crate::keda::MANAGEMENT_SAMPLE_SECS).contains(&phase) {
                return bad(
                    "metrics.management_phase_secs",
                    "must be 0 or more and below 5 (the management plugin's sample interval)",
                );
            }
        }
        if !(m.scrape_interval_secs.is_finite() && m.scrape_interval_secs >= 0.1) {
            return bad("metrics.scrape_interval_secs", "must be at least 0.1");
        }
        if !(m.sync_period_secs.is_finite() && m.sync_period_secs >= 0.1) {
            return bad("metrics.sync_period_secs", "must be at least 0.1");
        }
        if let (Some(min), Some(max)) = (self.replicas.min, self.replicas.max) {
            if min > max {
                return bad("replicas.min", "is above replicas.max");
            }
        }
        Ok(())
    }

    /// The arrival pattern, if the scenario has one (a scenario may have bursts only).
    pub fn pattern(&self) -> Result<Option<Pattern>, ScenarioError> {
        let a = &self.arrivals;
        let length = a.pattern_secs.unwrap_or(self.duration_secs);
        if !(length > 0.0 && length <= MAX_DURATION_SECS) {
            return Err(ScenarioError(
                "arrivals.pattern_secs: must be above 0 and at most 30 days".into(),
            ));
        }
        let length = std::time::Duration::from_secs_f64(length);
        match (a.pattern, a.rate, &a.points) {
            (Some(_), _, Some(_)) => Err(ScenarioError(
                "arrivals: give either pattern and rate, or points, not both".into(),
            )),
            (Some(kind), Some(rate), None) => Pattern::builtin(kind, rate, length)
                .map(Some)
                .map_err(|e| ScenarioError(format!("arrivals: {e}"))),
            (Some(_), None, None) => Err(ScenarioError(
                "arrivals.rate: a pattern needs a rate (jobs per second)".into(),
            )),
            (None, Some(_), None) => Err(ScenarioError(
                "arrivals.pattern: a rate needs a pattern (constant, step, ramp, spike, sine)"
                    .into(),
            )),
            (None, _, Some(points)) => {
                let csv: String = points.iter().map(|[t, r]| format!("{t},{r}\n")).collect();
                Pattern::parse_csv(&csv, Some(length))
                    .map(Some)
                    .map_err(|e| ScenarioError(format!("arrivals.points: {e}")))
            }
            (None, None, None) => Ok(None),
        }
    }

    /// Seconds between two samples of the time series.
    pub fn sample_interval(&self) -> f64 {
        self.sample_secs
            .unwrap_or_else(|| (self.duration_secs / 7200.0).max(1.0))
    }
}
