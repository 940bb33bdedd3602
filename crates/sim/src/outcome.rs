//! What a run produces: totals, a time series, every decision and every scale event.

use serde::Serialize;
pub use warren_policy::Decision;

/// The totals of one run (`totals.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// The scenario's description.
    pub scenario: String,
    /// The policy's name.
    pub policy: String,
    /// Simulated seconds (less than the scenario's with `end_when_settled`).
    pub duration_secs: f64,
    /// Jobs that arrived.
    pub jobs_arrived: u64,
    /// Jobs acked.
    pub jobs_done: u64,
    /// Jobs still ready or in hand at the end.
    pub jobs_unfinished: u64,
    /// Jobs whose worker stopped while working on them (0 with drain and no grace limit).
    pub jobs_interrupted: u64,
    /// Deliveries beyond the first.
    pub jobs_redelivered: u64,
    /// Jobs dead-lettered at the delivery limit.
    pub jobs_dead_lettered: u64,
    /// The SLO on queue wait, in seconds.
    pub slo_secs: f64,
    /// Queue wait (arrival to the delivery that was acked) of the acked jobs: p50, s.
    pub wait_p50_secs: f64,
    /// p95, s.
    pub wait_p95_secs: f64,
    /// p99, s.
    pub wait_p99_secs: f64,
    /// The longest wait, s: of an acked job, or of a job still waiting at the end.
    pub wait_max_secs: f64,
    /// Share of acked jobs that waited at most the SLO.
    pub within_slo: f64,
    /// Sum of every worker's life from its start to its stop (or the end), in seconds.
    pub worker_seconds: f64,
    /// Seconds of work of the acked jobs.
    pub busy_seconds: f64,
    /// The fewest worker-seconds that could have done that work: busy seconds / prefetch.
    pub floor_worker_seconds: f64,
    /// worker_seconds / floor_worker_seconds.
    pub cost_ratio: f64,
    /// HPA syncs.
    pub decisions: u64,
    /// Changes of the worker count.
    pub scale_events: u64,
    /// The most workers running at once (stopping ones included).
    pub peak_workers: u32,
    /// The most messages ready at once.
    pub deepest_ready: u64,
    /// The most messages ready or unacked at once.
    pub deepest_backlog: u64,
    /// For each burst, seconds until no message was ready any more; none if that never happened.
    pub burst_drain_secs: Vec<Option<f64>>,
    /// Desired replicas at each sync, in order (for comparing with a live run).
    pub desired_per_sync: Vec<u32>,
}

/// One sample of the time series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Simulated seconds.
    pub t_secs: f64,
    /// Messages ready.
    pub queue_ready: u64,
    /// Messages delivered, not acked.
    pub queue_unacked: u64,
    /// Jobs arrived per second since the previous sample.
    pub arrival_rate: f64,
    /// The pattern's rate at this time.
    pub target_rate: f64,
    /// Jobs acked per second since the previous sample.
    pub processed_rate: f64,
    /// Jobs acked so far.
    pub processed_total: u64,
    /// Workers asked for and not stopping.
    pub workers_current: u32,
    /// Workers ready.
    pub workers_ready: u32,
    /// The autoscaler's last desired count.
    pub workers_desired: u32,
    /// p95 of the queue wait of the jobs acked since the previous sample.
    pub queue_wait_p95_secs: Option<f64>,
}

/// Who changed the worker count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleCause {
    /// The HPA engine.
    Hpa,
    /// KEDA's activation: 0 -> minimum.
    KedaActivation,
    /// KEDA's deactivation after the cooldown: -> 0.
    KedaDeactivation,
    /// The oracle ([`crate::oracle`]), which is no autoscaler.
    Oracle,
}

/// One change of the worker count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ScaleEvent {
    /// Simulated seconds.
    pub at_secs: f64,
    /// Workers before.
    pub from: u32,
    /// Workers after.
    pub to: u32,
    /// Who asked.
    pub cause: ScaleCause,
}

/// Everything a run produces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunOutcome {
    /// The totals.
    pub totals: Totals,
    /// The time series.
    pub samples: Vec<Sample>,
    /// Every sync, with the controller's reasons.
    pub decisions: Vec<Decision>,
    /// Every change of the worker count.
    pub scale_events: Vec<ScaleEvent>,
    /// The HPA's metric names (with a formula's description).
    pub metric_names: Vec<String>,
}
