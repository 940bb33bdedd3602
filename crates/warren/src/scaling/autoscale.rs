//! `warren autoscale`: the Kubernetes HPA, on one machine.
//!
//! Reads the very autoscaling/v2 manifest the cluster gets, and every sync period (15 s, as the
//! controller) reads its metrics ([`crate::scaling::metric_source`]), takes the control step
//! ([`warren_policy::sync`]: the engine, [`warren_hpa::Autoscaler`], Kubernetes' algorithm, the
//! step the simulator takes too) and applies its decision to a [`WorkerPool`] of local
//! `warren worker` processes. [`drive`] is that loop, over a [`ReadMetric`], a [`Pool`] and a
//! [`WallClock`] it is given, so tests run it in-process on tokio's paused clock. One log line
//! per decision: metric values, proposals, the result and the controller's condition reasons
//! for people, and the same as a [`DecisionRecord`] in its `record` field for programs
//! ([`crate::records`]).
//!
//! A metric that cannot be read becomes an unavailable metric for the engine, which keeps the
//! worker count (ScalingActive False, `FailedGetExternalMetric`), as the controller would.
//!
//! The capacity metric `warren_workers_needed` from the broker is computed at each read from
//! the broker's and the pool's workers' metrics (their ports come from the pool), and the
//! decision line carries its terms.
//!
//! `speed` runs the engine's clock K times faster than the wall clock (and divides the sync
//! period by K): windows and policy periods of the manifest then pass K times faster, for demos
//! and tests, while the manifest itself stays as written.
//!
//! With a state file ([`crate::scaling::state_file`]) the engine's state is saved after each
//! decision, and a restart resumes from it: the pool starts at the count last decided and the
//! engine's clock and history go on, so a stabilization window outlives the process, as it
//! outlives a controller restart on a cluster (the HPA's status and the Deployment's replicas
//! stay). Without one, or when it cannot be read (one warning), the pool starts at
//! `minReplicas` but at least 1, as a Deployment starts at its own replica count (1 when
//! unset) before the HPA takes over; so with `minReplicas: 0` it is the controller that takes
//! the pool to 0, which is what lets it wake the pool again (ScaledToZero).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warren_hpa::{
    Autoscaler, ConditionStatus, ConditionType, ControllerConfig, ScaleDecision, Timestamp,
};
use warren_policy::{one_line, PoolCounts, Synced};

use crate::config::ConfigError;
use crate::metrics;
use crate::pipeline::broker::BrokerArgs;
use crate::pipeline::worker::WorkArgs;
use crate::records::{DecisionRecord, MetricRecord, Record, SummaryRecord};
use crate::scaling::metric_source::{MetricReader, MetricSource, SeriesQuery};
use crate::scaling::pool::{PoolStatus, WorkerCommand, WorkerPool, WorkerSpec, KILL_MARGIN};
use crate::scaling::state_file::{self, SavedState, StateFile};
use warren_policy::capacity::{Knobs, Needed};
use warren_policy::Decision;

/// The HPA manifest the Kubernetes overlay applies, compiled into the binary so that the
/// default on one machine cannot drift from what the cluster runs, and so that warren needs no
/// checkout to find it.
pub const BUILTIN_HPA: &str =
    include_str!("../../../../deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml");

/// How logs and errors name [`BUILTIN_HPA`].
pub const BUILTIN_HPA_NAME: &str =
    "deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml (built in)";

/// The capacity overlay's HPA (`warren_workers_needed`, 1 per worker), compiled in for the
/// same reasons: `warren demo`'s default.
pub const BUILTIN_CAPACITY_HPA: &str =
    include_str!("../../../../deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml");

/// How logs and errors name [`BUILTIN_CAPACITY_HPA`].
pub const BUILTIN_CAPACITY_HPA_NAME: &str =
    "deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml (built in)";

/// Reads the manifest at `path`, or gives the built-in one when there is none: its name (for
/// logs and errors) and its text.
pub fn read_manifest(path: Option<&Path>) -> Result<(String, String), ConfigError> {
    match path {
        None => Ok((BUILTIN_HPA_NAME.to_owned(), BUILTIN_HPA.to_owned())),
        Some(path) => {
            let yaml = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(format!(
                    "cannot read the HPA manifest {}: {e}",
                    path.display()
                ))
            })?;
            Ok((path.display().to_string(), yaml))
        }
    }
}

/// The built-in manifest for `queue` in `vhost`: every External metric's selector is set to
/// `matchLabels: {queue, vhost}`, so the one built-in HPA serves whatever queue warren
/// autoscale is given.
pub fn builtin_for_queue(yaml: &str, queue: &str, vhost: &str) -> Result<String, ConfigError> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(yaml)
        .map_err(|e| ConfigError::new(format!("the built-in HPA does not parse: {e}")))?;
    if let Some(metrics) = doc
        .get_mut("spec")
        .and_then(|s| s.get_mut("metrics"))
        .and_then(serde_yaml::Value::as_sequence_mut)
    {
        for metric in metrics {
            if let Some(m) = metric
                .get_mut("external")
                .and_then(|e| e.get_mut("metric"))
                .and_then(serde_yaml::Value::as_mapping_mut)
            {
                let labels: serde_yaml::Mapping = [("queue", queue), ("vhost", vhost)]
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect();
                let mut selector = serde_yaml::Mapping::new();
                selector.insert("matchLabels".into(), labels.into());
                m.insert("selector".into(), selector.into());
            }
        }
    }
    serde_yaml::to_string(&doc)
        .map_err(|e| ConfigError::new(format!("the built-in HPA does not render: {e}")))
}

/// Settings of `warren autoscale`, validated.
#[derive(Clone, Debug)]
pub struct AutoscaleConfig {
    /// Where the manifest came from (for logs): its path, or [`BUILTIN_HPA_NAME`].
    pub hpa_origin: String,
    /// The manifest's text, already checked to parse and validate.
    pub hpa_yaml: String,
    /// The Kubernetes release line whose controller settings apply (for logs).
    pub release: String,
    /// That release's controller settings: feature gates, tolerance, windows.
    pub controller: ControllerConfig,
    /// How to start a worker.
    pub worker: WorkerSpec,
    /// Where the metrics come from.
    pub source: MetricSource,
    /// How often to decide (wall clock, before `speed`).
    pub sync_period: Duration,
    /// How long the first decision waits for every metric to have a sample (before `speed`).
    pub first_metric_wait: Duration,
    /// How much faster than the wall clock the engine's clock runs.
    pub speed: f64,
    /// Where the autoscaler's own `/metrics`, `/healthz`, `/readyz` are served.
    pub metrics_listen: SocketAddr,
    /// Where the engine's state is saved after each decision and resumed from at start.
    pub state_file: Option<PathBuf>,
    /// The capacity metric's knobs, when warren computes it from the broker.
    pub capacity_knobs: Knobs,
}

impl AutoscaleConfig {
    /// Checks a manifest the way `run` will use it: it must parse and validate as the API
    /// server of `controller`'s release would (`minReplicas: 0` needs HPAScaleToZero), and
    /// each metric must have a source. `origin` names the manifest in errors.
    pub fn check_manifest(
        origin: &str,
        yaml: &str,
        controller: ControllerConfig,
    ) -> Result<Vec<SeriesQuery>, ConfigError> {
        let engine = Autoscaler::from_yaml_with(yaml, controller)
            .map_err(|e| ConfigError::new(format!("{origin}: {}", one_line(&e.to_string()))))?;
        engine
            .metric_specs()
            .iter()
            .map(SeriesQuery::from_spec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new(format!("{origin}: {e}")))
    }
}

/// The JSON `warren autoscale --print-queries` prints: per metric of the manifest, its name,
/// the PromQL query and the selector's labels, which each answer's series carries.
pub fn queries_json(config: &AutoscaleConfig) -> Result<String, ConfigError> {
    let queries =
        AutoscaleConfig::check_manifest(&config.hpa_origin, &config.hpa_yaml, config.controller)?;
    let list: Vec<serde_json::Value> = queries
        .iter()
        .map(|q| {
            serde_json::json!({
                "metric": q.metric,
                "query": q.promql(),
                "labels": q.matchers,
            })
        })
        .collect();
    serde_json::to_string_pretty(&list)
        .map_err(|e| ConfigError::new(format!("cannot render the queries: {e}")))
}

/// What happened at one sync, for the demo's view and report: the record the simulator keeps
/// of a decision, and what only a live run has.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoscaleEvent {
    /// The decision; its `at_secs` are wall-clock seconds since the autoscaler started, at the
    /// instant the sync was due.
    pub decision: Decision,
    /// When the decision was made, to place it on another clock (the demo's).
    pub at: std::time::Instant,
    /// The whole log line.
    pub line: String,
}

/// The autoscaler's own metrics.
pub struct AutoscaleMetrics {
    /// `autoscaler_current_replicas`.
    pub current: Gauge,
    /// `autoscaler_ready_replicas`.
    pub ready: Gauge,
    /// `autoscaler_desired_replicas`.
    pub desired: Gauge,
    /// `autoscaler_metric_value{metric}` (last value read).
    pub metric_value: Family<MetricLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `autoscaler_decisions_total{reason}`.
    pub decisions: Family<ReasonLabel, Counter>,
    /// `autoscaler_worker_restarts_total`.
    pub restarts: Counter,
}

/// Label set `{metric}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabel {
    /// The HPA's metric name.
    pub metric: String,
}

/// Label set `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The deciding condition's reason.
    pub reason: String,
}

impl AutoscaleMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            current: Gauge::default(),
            ready: Gauge::default(),
            desired: Gauge::default(),
            metric_value: Family::default(),
            decisions: Family::default(),
            restarts: Counter::default(),
        };
        registry.register(
            "autoscaler_current_replicas",
            "Live workers",
            m.current.clone(),
        );
        registry.register(
            "autoscaler_ready_replicas",
            "Workers whose /readyz answers 200",
            m.ready.clone(),
        );
        registry.register(
            "autoscaler_desired_replicas",
            "Workers the HPA engine wants",
            m.desired.clone(),
        );
        registry.register(
            "autoscaler_metric_value",
            "Last value read of each HPA metric",
            m.metric_value.clone(),
        );
        registry.register(
            "autoscaler_decisions",
            "Decisions by reason (AbleToScale's, or ScalingActive's when no metric was valid)",
            m.decisions.clone(),
        );
        registry.register(
            "autoscaler_worker_restarts",
            "Workers that exited unasked and were replaced",
            m.restarts.clone(),
        );
        Arc::new(m)
    }
}

/// Totals at the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AutoscaleSummary {
    /// Decisions taken.
    pub decisions: u64,
    /// Rescales applied.
    pub rescales: u64,
    /// Workers replaced after exiting unasked.
    pub restarts: u64,
    /// Sum of the workers' lifetimes, in seconds.
    pub worker_seconds: f64,
}

/// Runs `warren autoscale` until `shutdown`, then stops every worker with a drain.
pub async fn run(config: AutoscaleConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let summary = run_with(config, shutdown, None).await?;
    tracing::info!(
        decisions = summary.decisions,
        rescales = summary.rescales,
        restarts = summary.restarts,
        worker_seconds = summary.worker_seconds.round() as u64,
        record = %Record::Summary(SummaryRecord {
            decisions: summary.decisions,
            rescales: summary.rescales,
            restarts: summary.restarts,
            worker_seconds: summary.worker_seconds,
        })
        .to_json(),
        "warren autoscale stopped"
    );
    Ok(())
}

/// Runs the autoscaler, sending each sync's [`AutoscaleEvent`] to `events` if given.
pub async fn run_with(
    config: AutoscaleConfig,
    shutdown: CancellationToken,
    events: Option<mpsc::UnboundedSender<AutoscaleEvent>>,
) -> anyhow::Result<AutoscaleSummary> {
    let reader =
        MetricReader::new(config.source.clone(), config.speed).with_knobs(config.capacity_knobs);
    let pool = WorkerPool::new(config.worker.clone());
    drive(config, reader, pool, &SystemClock, shutdown, events).await
}

/// Where the live loop reads the HPA's metrics: [`MetricReader`] (the broker or Prometheus),
/// or a script in tests.
pub trait ReadMetric: Send + Sync {
    /// The metric's value now, and the capacity metric's terms where warren computes it;
    /// the error says why it could not be read. `worker_ports` are the pool's workers'.
    fn read(
        &self,
        query: &SeriesQuery,
        worker_ports: &[u16],
    ) -> impl Future<Output = Result<(f64, Option<Needed>), String>> + Send;
}

impl ReadMetric for MetricReader {
    async fn read(
        &self,
        query: &SeriesQuery,
        worker_ports: &[u16],
    ) -> Result<(f64, Option<Needed>), String> {
        self.read_with_terms(query, worker_ports).await
    }
}

/// What the live loop scales: [`WorkerPool`] (local processes), or a fake in tests.
pub trait Pool: Send {
    /// Starts or stops workers until `target` are running.
    fn scale_to(&mut self, target: u32) -> impl Future<Output = ()> + Send;
    /// Reaps exited workers, replaces crashed ones, probes readiness; the counts after.
    fn refresh(&mut self) -> impl Future<Output = PoolStatus> + Send;
    /// The counts as last seen.
    fn status(&self) -> PoolStatus;
    /// The workers' metrics ports (the capacity metric reads their `job_duration_seconds`).
    fn metrics_ports(&self) -> Vec<u16>;
    /// Stops every worker, each draining its jobs in hand.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send;
    /// The sum of the workers' lifetimes so far, in seconds.
    fn worker_seconds(&self) -> f64;
}

impl Pool for WorkerPool {
    async fn scale_to(&mut self, target: u32) {
        WorkerPool::scale_to(self, target).await;
    }
    async fn refresh(&mut self) -> PoolStatus {
        WorkerPool::refresh(self).await
    }
    fn status(&self) -> PoolStatus {
        WorkerPool::status(self)
    }
    fn metrics_ports(&self) -> Vec<u16> {
        WorkerPool::metrics_ports(self)
    }
    async fn shutdown(&mut self) {
        WorkerPool::shutdown(self).await;
    }
    fn worker_seconds(&self) -> f64 {
        WorkerPool::worker_seconds(self)
    }
}

/// The wall clock, which only the state file reads: the time a saved state was written and
/// the time it is resumed at. Everything else runs on tokio's clock, which tests pause.
pub trait WallClock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn unix_ms(&self) -> u64;
}

/// The system's clock.
pub struct SystemClock;

impl WallClock for SystemClock {
    fn unix_ms(&self) -> u64 {
        state_file::unix_ms_now()
    }
}

/// The live loop: hands each sync's metric values and the pool's counts to the one control
/// step ([`warren_policy::sync`]) on the engine's clock, and carries out what it decided
/// (scale the pool, log the decision, save the state). It decides nothing itself.
///
/// A sync's engine time is the instant its tick was due, not the moment its metrics were
/// read: syncs are exactly one sync period apart on the engine's clock, however long each
/// read took. A behavior policy whose period is the sync period (the shipped HPAs' 15 s) then
/// allows one step at every sync, as in the simulator; with the read's time instead, a sync
/// whose read was a few ms quicker than the one before came less than a period after that
/// step, and the rate limit held the scale-up for a whole sync (a coin flip per step, which
/// cost the live capacity HPA 7 s of queue-wait p95 in half of `bench/fidelity`'s runs).
pub async fn drive(
    config: AutoscaleConfig,
    reader: impl ReadMetric,
    mut pool: impl Pool,
    clock: &impl WallClock,
    shutdown: CancellationToken,
    events: Option<mpsc::UnboundedSender<AutoscaleEvent>>,
) -> anyhow::Result<AutoscaleSummary> {
    let mut engine = Autoscaler::from_yaml_with(&config.hpa_yaml, config.controller)?;
    let queries = engine
        .metric_specs()
        .iter()
        .map(SeriesQuery::from_spec)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let spec = engine.hpa().spec.clone();
    let min_replicas = spec.min_replicas.unwrap_or(1).max(0);
    let hpa_name = format!(
        "{}/{}",
        engine
            .hpa()
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default"),
        engine.hpa().metadata.name.as_deref().unwrap_or_default()
    );
    let mut state_file = config.state_file.clone().map(StateFile::new);
    let resumed = state_file.as_ref().and_then(|file| match file.load(&hpa_name) {
        Ok(Some(saved)) => {
            tracing::info!(state_file = %file.path().display(), saved_engine_ms = saved.engine_ms,
                replicas = saved.state.desired_replicas, recommendations = saved.state.recommendations.len(),
                scaled_to_zero = saved.state.scaled_to_zero(), "resuming from the saved state");
            Some(saved)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("{e}; starting afresh, as the controller does without the HPA's status");
            None
        }
    });
    let mut registry = Registry::default();
    let m = AutoscaleMetrics::register(&mut registry);
    // Ready until it stops its workers.
    let ops =
        metrics::OpsServer::start(config.metrics_listen, registry, metrics::ReadyState::Ready)
            .await?;
    let metrics_addr = ops.addr();

    tracing::info!(hpa = %config.hpa_origin, kubernetes_release = %config.release, source = ?config.source, metrics = %metrics_addr,
        sync_period_ms = config.sync_period.as_millis() as u64, speed = config.speed,
        min = min_replicas, max = spec.max_replicas, queries = ?queries.iter().map(SeriesQuery::promql).collect::<Vec<_>>(),
        "warren autoscale starting");

    let (engine_origin, initial_replicas) = match resumed {
        Some(saved) => {
            let origin = saved.engine_time_at(clock.unix_ms(), config.speed);
            let mut replicas = saved.state.desired_replicas.max(0);
            if replicas == 0 && !wakes_from_zero(&engine, &saved.state) {
                // Nothing here can scale it from 0 (no kubectl scale): start as a fresh
                // Deployment would rather than stay at 0 for good.
                replicas = min_replicas.max(1);
                tracing::warn!(replicas,
                    "the saved state has the pool at 0, where these settings would leave it (no ScaledToZero condition, HPAScaleToZero off, or no External metric); starting it at {replicas}");
            }
            engine.set_state(saved.state);
            (origin, replicas)
        }
        None => (Duration::ZERO, min_replicas.max(1)),
    };
    pool.scale_to(u32::try_from(initial_replicas).unwrap_or(0))
        .await;
    m.current.set(i64::from(pool.status().current));
    // A metric that does not exist yet (a queue nobody declared, a scrape not yet taken) would
    // make the first decision an alarming FailedGetExternalMetric for a start-up race: give it
    // a moment. The controller has no such wait; after it, a missing metric is reported as the
    // controller reports it.
    wait_for_first_sample(
        &reader,
        &queries,
        &pool.metrics_ports(),
        config.first_metric_wait.div_f64(config.speed),
        &shutdown,
    )
    .await;
    let started = Instant::now();
    let wall_period = config.sync_period.div_f64(config.speed);
    let mut sync = tokio::time::interval_at(started, wall_period);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut housekeeping = tokio::time::interval(Duration::from_millis(500));
    let mut summary = AutoscaleSummary::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = housekeeping.tick() => {
                let status = pool.refresh().await;
                m.current.set(i64::from(status.current));
                m.ready.set(i64::from(status.ready));
                m.restarts.inc_by(status.restarts.saturating_sub(m.restarts.get()));
            }
            due = sync.tick() => {
                let status = pool.refresh().await;
                let mut readings = Vec::with_capacity(queries.len());
                let mut terms = Vec::with_capacity(queries.len());
                let worker_ports = pool.metrics_ports();
                for query in &queries {
                    match reader.read(query, &worker_ports).await {
                        Ok((value, needed)) => {
                            m.metric_value.get_or_create(&MetricLabel { metric: query.metric.clone() }).set(value);
                            readings.push(Ok(value));
                            terms.push(needed);
                        }
                        Err(e) => {
                            readings.push(Err(e));
                            terms.push(None);
                        }
                    }
                }
                let since_start = due.saturating_duration_since(started);
                let engine_time = engine_origin + since_start.mul_f64(config.speed);
                let engine_now = Timestamp::from_millis(u64::try_from(engine_time.as_millis()).unwrap_or(u64::MAX));
                let counts = PoolCounts { current: status.current, ready: status.ready };
                let Synced { decision, record } = warren_policy::sync(&mut engine, engine_now, since_start.as_secs_f64(), counts, &readings);
                let values = &record.metric_values;
                let line = format!("{} engine_ms={}", describe(&queries, values, &terms, &decision, &status), engine_now.as_nanos() / 1_000_000);
                let logged = DecisionRecord {
                    decision: record.clone(),
                    engine_ms: u64::try_from(engine_time.as_millis()).unwrap_or(u64::MAX),
                    metrics: metric_records(&queries, values, &terms, &decision),
                };
                // Saved before it is logged: whoever reads the decision in the log (a restart's
                // operator, a test killing the process on it) finds the state file saved with it.
                if let Some(file) = state_file.as_mut() {
                    file.save(&SavedState {
                        version: state_file::VERSION,
                        hpa: hpa_name.clone(),
                        engine_ms: u64::try_from(engine_time.as_millis()).unwrap_or(u64::MAX),
                        saved_at_unix_ms: clock.unix_ms(),
                        state: engine.state().clone(),
                    });
                }
                tracing::info!(record = %Record::from(logged).to_json(), "{line}");
                summary.decisions += 1;
                let desired = u32::try_from(decision.desired_replicas.max(0)).unwrap_or(0);
                m.desired.set(i64::from(desired));
                m.decisions.get_or_create(&ReasonLabel { reason: deciding_reason(&decision) }).inc();
                if decision.rescale {
                    summary.rescales += 1;
                    pool.scale_to(desired).await;
                }
                // Both counts at once: workers asked to stop leave `ready` with `current`, so
                // ready is never shown above current.
                let after = pool.status();
                m.current.set(i64::from(after.current));
                m.ready.set(i64::from(after.ready));
                if let Some(events) = &events {
                    let _ = events.send(AutoscaleEvent {
                        decision: record,
                        at: Instant::now().into_std(),
                        line,
                    });
                }
            }
        }
    }
    ops.set_ready(metrics::ReadyState::NotReady);
    tracing::info!("stopping all workers (each drains its jobs in flight)");
    pool.shutdown().await;
    ops.stop().await;
    summary.restarts = pool.status().restarts;
    summary.worker_seconds = pool.worker_seconds();
    Ok(summary)
}

/// Each metric's part of the decision record: name, value, proposal or why none, and the
/// capacity metric's terms where they were computed here.
fn metric_records(
    queries: &[SeriesQuery],
    values: &[Option<f64>],
    terms: &[Option<Needed>],
    decision: &ScaleDecision,
) -> Vec<MetricRecord> {
    queries
        .iter()
        .enumerate()
        .map(|(i, query)| {
            let proposal = decision.metrics.get(i);
            MetricRecord {
                name: query.metric.clone(),
                value: values.get(i).copied().flatten(),
                proposal: proposal.and_then(|p| p.as_ref().ok()).map(|p| p.replicas),
                error: proposal
                    .and_then(|p| p.as_ref().err())
                    .map(|f| f.error.clone()),
                terms: terms.get(i).copied().flatten(),
            }
        })
        .collect()
}

/// Returns once every query reads a value, after `wait`, or on shutdown.
async fn wait_for_first_sample(
    reader: &impl ReadMetric,
    queries: &[SeriesQuery],
    worker_ports: &[u16],
    wait: Duration,
    shutdown: &CancellationToken,
) {
    if wait.is_zero() {
        return;
    }
    let started = Instant::now();
    let mut logged = false;
    loop {
        let mut missing = None;
        for query in queries {
            if let Err(e) = reader
                .read(query, worker_ports)
                .await
                .map(|(value, _)| value)
            {
                missing = Some((query, e));
                break;
            }
        }
        let Some((query, error)) = missing else {
            tracing::info!(
                waited_ms = started.elapsed().as_millis() as u64,
                "first metric sample read"
            );
            return;
        };
        if started.elapsed() >= wait {
            tracing::warn!(metric = %query.metric, waited_ms = started.elapsed().as_millis() as u64,
                error = %error, "no metric sample yet; deciding without it, as the controller would");
            return;
        }
        if !logged {
            tracing::info!(metric = %query.metric, wait_ms = wait.as_millis() as u64, "waiting for the first metric sample");
            logged = true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Whether `engine`, resumed from `state` with its target at 0 replicas, would read its
/// metrics there (and so could wake it) rather than report ScalingDisabled.
fn wakes_from_zero(engine: &Autoscaler, state: &warren_hpa::AutoscalerState) -> bool {
    let scaled_to_zero = engine.config().feature_gates.hpa_scale_to_zero && state.scaled_to_zero();
    warren_hpa::horizontal::should_compute_metrics_for_zero_replicas(
        engine.hpa().spec.min_replicas.unwrap_or(1),
        scaled_to_zero,
        scaled_to_zero
            && warren_hpa::horizontal::has_object_or_external_metrics(engine.metric_specs()),
    )
}

/// The reason that decided: ScalingActive's when it is False (no valid metric), else AbleToScale's.
fn deciding_reason(decision: &ScaleDecision) -> String {
    match decision.condition(ConditionType::ScalingActive) {
        Some(c) if c.status == ConditionStatus::False => c.reason.clone(),
        _ => decision
            .condition(ConditionType::AbleToScale)
            .map_or_else(|| "Unknown".to_owned(), |c| c.reason.clone()),
    }
}

/// A metric value as the engine reads it: to the milli-unit (the HPA's quantities are whole
/// milli-units), without trailing zeros; `3.4285714285714284` is `3.429`.
fn milli(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn describe(
    queries: &[SeriesQuery],
    values: &[Option<f64>],
    terms: &[Option<Needed>],
    decision: &ScaleDecision,
    status: &crate::scaling::pool::PoolStatus,
) -> String {
    let mut parts = Vec::new();
    for (((query, value), proposal), needed) in
        queries.iter().zip(values).zip(&decision.metrics).zip(terms)
    {
        let value = value.map_or_else(|| "unavailable".to_owned(), milli);
        let proposal = match proposal {
            Ok(p) => p.replicas.to_string(),
            Err(f) => format!("none ({})", f.error),
        };
        parts.push(format!(
            "metric={} value={value} proposal={proposal}",
            query.metric
        ));
        // The capacity metric computed here: its terms, on the engine's clock.
        if let Some(n) = needed {
            parts.push(format!(
                "arrival_rate={:.4} work_secs={:.3} backlog={} busy_workers={:.3} drain_workers={:.3}",
                n.arrival_rate, n.work_secs, n.backlog, n.busy_workers, n.drain_workers
            ));
        }
    }
    if decision.metrics.is_empty() {
        for (query, value) in queries.iter().zip(values) {
            let value = value.map_or_else(|| "unavailable".to_owned(), milli);
            parts.push(format!("metric={} value={value}", query.metric));
        }
    }
    format!(
        "decision {} current={} ready={} desired={} rescale={} {}",
        parts.join(" "),
        status.current,
        status.ready,
        decision.desired_replicas,
        decision.rescale,
        decision.reasons()
    )
}

/// The Kubernetes release lines `--kubernetes-release` takes (see `warren_hpa::ControllerConfig`).
pub const KUBERNETES_RELEASES: [&str; 6] = ["1.33", "1.34", "1.35", "1.36", "1.37", "development"];

/// The default release line: the newest stable one.
pub const DEFAULT_KUBERNETES_RELEASE: &str = "1.37";

/// Which Kubernetes release's HPA controller to follow; shared by `warren autoscale` and
/// `warren demo`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The Kubernetes release whose HPA controller settings apply: its feature gates
    /// (HPAScaleToZero, on from 1.37; HPAConfigurableTolerance, on from 1.35) and rules.
    /// `development` is master after 1.37.
    #[arg(long, env = "KUBERNETES_RELEASE", default_value = DEFAULT_KUBERNETES_RELEASE,
          value_parser = KUBERNETES_RELEASES)]
    pub kubernetes_release: String,
}

impl ReleaseArgs {
    /// The release's controller settings.
    pub fn controller(&self) -> Result<ControllerConfig, ConfigError> {
        ControllerConfig::for_release(&self.kubernetes_release).ok_or_else(|| {
            ConfigError::new(format!(
                "KUBERNETES_RELEASE {:?} is not one of {}",
                self.kubernetes_release,
                KUBERNETES_RELEASES.join(", ")
            ))
        })
    }
}

/// Options of `warren autoscale`.
#[derive(Debug, Args)]
pub struct AutoscaleArgs {
    /// The autoscaling/v2 HorizontalPodAutoscaler manifest, the same file the cluster applies.
    /// Default: the prometheus-adapter overlay's hpa.yaml, built into warren (queue Orders,
    /// 1 to 10 workers).
    #[arg(long, env = "HPA_FILE")]
    pub hpa: Option<PathBuf>,
    /// The Kubernetes release to follow.
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Broker and queue, passed to the workers.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Where the HPA's metrics are read: `broker` (the broker's prometheus plugin, no
    /// Prometheus needed; `warren_workers_needed` is computed from it and the workers'
    /// metrics) or `prometheus` (the query prometheus-adapter runs).
    #[arg(long, env = "METRIC_SOURCE", default_value = "broker", value_parser = ["broker", "prometheus"])]
    pub metric_source: String,
    /// The broker's prometheus plugin, for `--metric-source broker`.
    #[arg(
        long,
        env = "RABBIT_PROMETHEUS_URL",
        default_value = "http://127.0.0.1:15692"
    )]
    pub rabbit_prometheus_url: String,
    /// Prometheus, for `--metric-source prometheus`.
    #[arg(long, env = "PROMETHEUS_URL", default_value = "http://127.0.0.1:9090")]
    pub prometheus_url: String,
    /// How often to read the metrics and decide (the controller's --horizontal-pod-autoscaler-sync-period).
    #[arg(long, env = "SYNC_PERIOD", default_value = "15s", value_parser = crate::config::parse_duration)]
    pub sync_period: Duration,
    /// How long the first decision waits for the metric's first sample (before --speed), so
    /// that a queue or scrape not there yet at start-up is not reported as a failed metric.
    /// 0s decides at once, as the controller does.
    #[arg(long, env = "FIRST_METRIC_WAIT", default_value = "30s", value_parser = crate::config::parse_duration)]
    pub first_metric_wait: Duration,
    /// Run the engine's clock K times faster than the wall clock (0.1 to 100): windows and
    /// policy periods pass K times faster, and the sync period is divided by K. For demos and
    /// tests.
    #[arg(long, env = "SPEED", default_value = "1", value_name = "K",
          value_parser = crate::config::parse_speed, allow_negative_numbers = true)]
    pub speed: f64,
    /// The workers' work time, prefetch and drain grace.
    #[command(flatten)]
    pub work: WorkArgs,
    /// Port of the autoscaler's own /metrics, /healthz and /readyz (0 picks a free port).
    #[arg(long, env = "AUTOSCALER_METRICS_PORT", default_value_t = 9200)]
    pub metrics_port: u16,
    /// Address of the autoscaler's metrics port.
    #[arg(long, env = "AUTOSCALER_METRICS_BIND", default_value = "127.0.0.1")]
    pub metrics_bind: IpAddr,
    /// Write each worker's log to DIR/worker-<n>.log instead of this process's stderr.
    #[arg(long, env = "WORKER_LOG_DIR")]
    pub worker_log_dir: Option<PathBuf>,
    /// Keep a Prometheus file_sd target list of the workers' metrics ports in this file.
    #[arg(long, env = "PROMETHEUS_FILE_SD")]
    pub prometheus_file_sd: Option<PathBuf>,
    /// Scale this consumer program instead of `warren worker`: the program and its arguments,
    /// the rest of the command line (so put it last), or one value split as a shell splits
    /// words (WORKER_COMMAND="python3 consumer.py --prefetch 4"). Each worker gets
    /// WARREN_WORKER_INDEX, WARREN_AMQP_URL, WARREN_QUEUE, WARREN_VHOST, WARREN_METRICS_PORT
    /// and WARREN_PARENT_PID in its environment; WORK_MS and PREFETCH are warren worker's and
    /// are not passed on.
    #[arg(long, env = "WORKER_COMMAND", num_args = 1.., allow_hyphen_values = true,
          value_name = "CMD [ARGS...]")]
    pub worker_command: Vec<String>,
    /// With --worker-command: the name of a gauge of the jobs a worker has in hand, which each
    /// worker serves as Prometheus text at http://127.0.0.1:$WARREN_METRICS_PORT/metrics. Then
    /// idle workers are stopped first, and a worker is ready once that URL answers; without
    /// it the youngest workers are stopped first and a worker is ready once it runs.
    #[arg(long, env = "WORKER_BUSY_METRIC")]
    pub worker_busy_metric: Option<String>,
    /// How long a stopping worker has between SIGTERM and SIGKILL. Default: GRACE_MS plus 5 s.
    #[arg(long, env = "WORKER_STOP_TIMEOUT", value_parser = crate::config::parse_duration)]
    pub worker_stop_timeout: Option<Duration>,
    /// Save the controller's state (recommendations, scale events, conditions, last scale
    /// time) to this JSON file after each decision, and resume from it at start, as the
    /// controller resumes from the HPA's status. Off when unset. An unreadable file is one
    /// warning and a fresh start.
    #[arg(long, env = "AUTOSCALER_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// The capacity metric's knobs, for `--metric-source broker` (Prometheus holds its own in
    /// the rules).
    #[command(flatten)]
    pub capacity: CapacityArgs,
    /// Print, as JSON, the PromQL query of each of the HPA's metrics (the one prometheus-adapter
    /// sends for it, and `--metric-source prometheus` runs) and exit: nothing is started.
    #[arg(long)]
    pub print_queries: bool,
}

/// The knobs of the capacity metric `warren_workers_needed` when warren computes it from the
/// broker (`warren_policy::estimator`); the defaults are the shipped rules'.
#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// The busy share each worker is sized for, in (0, 1].
    #[arg(long, env = "CAPACITY_UTILISATION", default_value_t = Knobs::default().target_utilisation)]
    pub capacity_utilisation: f64,
    /// Square-root staffing's beta: `beta x sqrt(busy workers)` spare workers, >= 0 (the
    /// default is the shipped rules', a 5 s p95 wait at 8 busy workers; `warren rules --slo`
    /// derives one for another SLO).
    #[arg(long, env = "CAPACITY_BETA", default_value_t = Knobs::default().beta)]
    pub capacity_beta: f64,
    /// The time a backlog is given to drain.
    #[arg(long, env = "CAPACITY_DRAIN", default_value = "30s", value_parser = crate::config::parse_duration)]
    pub capacity_drain: Duration,
    /// The work time assumed while neither the workers' histogram nor the broker gives one
    /// (no message finished in the last 5 minutes).
    #[arg(long, env = "CAPACITY_DEFAULT_WORK", default_value = "5s", value_parser = crate::config::parse_duration)]
    pub capacity_default_work: Duration,
    /// How many messages one consumer works on at once. The broker's work-time estimate counts
    /// at most consumers x this as busy: with a prefetch above 1, the rest of the unacked
    /// messages wait in the consumer's buffer and are not being worked on.
    #[arg(long, env = "CAPACITY_CONCURRENCY", default_value_t = 1.0)]
    pub capacity_concurrency: f64,
}

impl CapacityArgs {
    /// The checked knobs; the message names the flag.
    pub fn knobs(&self) -> Result<Knobs, ConfigError> {
        let knobs = Knobs {
            target_utilisation: self.capacity_utilisation,
            beta: self.capacity_beta,
            drain_secs: self.capacity_drain.as_secs_f64(),
            default_work_secs: self.capacity_default_work.as_secs_f64(),
            concurrency_per_consumer: self.capacity_concurrency,
        };
        knobs.validate().map_err(|e| {
            ConfigError::new(format!(
                "--capacity-utilisation/--capacity-beta/--capacity-drain/--capacity-default-work/--capacity-concurrency: {e}"
            ))
        })?;
        Ok(knobs)
    }
}

impl AutoscaleArgs {
    /// The validated config; the manifest is read and checked here.
    pub fn to_config(&self) -> Result<AutoscaleConfig, ConfigError> {
        let broker = self.broker.to_config()?;
        let controller = self.release.controller()?;
        let (hpa_origin, mut hpa_yaml) = read_manifest(self.hpa.as_deref())?;
        if self.hpa.is_none() {
            hpa_yaml = builtin_for_queue(&hpa_yaml, broker.queue.as_str(), &broker.url.vhost())?;
        }
        let capacity_knobs = self.capacity.knobs()?;
        AutoscaleConfig::check_manifest(&hpa_origin, &hpa_yaml, controller)?;
        if self.sync_period < Duration::from_millis(100) {
            return Err(ConfigError::new("SYNC_PERIOD must be at least 100ms"));
        }
        let source = match self.metric_source.as_str() {
            "prometheus" => MetricSource::Prometheus {
                url: http_url("PROMETHEUS_URL", &self.prometheus_url)?,
            },
            _ => MetricSource::Broker {
                endpoint: http_url("RABBIT_PROMETHEUS_URL", &self.rabbit_prometheus_url)?,
            },
        };
        let command = self.worker_command()?;
        Ok(AutoscaleConfig {
            hpa_origin,
            hpa_yaml,
            release: self.release.kubernetes_release.clone(),
            controller,
            worker: WorkerSpec {
                command,
                broker,
                stop_timeout: self
                    .worker_stop_timeout
                    .unwrap_or(Duration::from_millis(self.work.grace_ms) + KILL_MARGIN),
                log_dir: self.worker_log_dir.clone(),
                file_sd: self.prometheus_file_sd.clone(),
            },
            source,
            sync_period: self.sync_period,
            first_metric_wait: self.first_metric_wait,
            speed: self.speed,
            metrics_listen: SocketAddr::new(self.metrics_bind, self.metrics_port),
            state_file: self.state_file.clone(),
            capacity_knobs,
        })
    }

    /// What the workers run: `warren worker`, or the program of `--worker-command`, which must
    /// be found now rather than fail at every start.
    fn worker_command(&self) -> Result<WorkerCommand, ConfigError> {
        let argv = match self.worker_command.as_slice() {
            [] => {
                if self.worker_busy_metric.is_some() {
                    return Err(ConfigError::new(
                        "WORKER_BUSY_METRIC needs WORKER_COMMAND (warren worker's own is jobs_in_flight)",
                    ));
                }
                let exe = std::env::current_exe().map_err(|e| {
                    ConfigError::new(format!(
                        "cannot find the warren executable to start workers: {e}"
                    ))
                })?;
                let env = vec![
                    ("WORK_MS".to_owned(), self.work.work_ms.to_string()),
                    ("PREFETCH".to_owned(), self.work.prefetch.to_string()),
                    ("GRACE_MS".to_owned(), self.work.grace_ms.to_string()),
                ];
                return Ok(WorkerCommand::Warren { exe, env });
            }
            // Not echoed: the arguments may hold a secret.
            [one] => shlex::split(one).ok_or_else(|| {
                ConfigError::new("WORKER_COMMAND is not a command line (an unclosed quote?)")
            })?,
            many => many.to_vec(),
        };
        let Some(program) = argv.first() else {
            return Err(ConfigError::new("WORKER_COMMAND is empty"));
        };
        which::which(program).map_err(|e| {
            ConfigError::new(format!("WORKER_COMMAND: cannot run {program:?} ({e})"))
        })?;
        if let Some(name) = &self.worker_busy_metric {
            let valid = name.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            });
            if name.is_empty() || !valid {
                return Err(ConfigError::new(format!(
                    "WORKER_BUSY_METRIC {name:?} is not a Prometheus metric name"
                )));
            }
        }
        Ok(WorkerCommand::Program {
            argv,
            busy_metric: self.worker_busy_metric.clone(),
        })
    }
}

/// Checks an http:// URL setting.
fn http_url(name: &str, raw: &str) -> Result<String, ConfigError> {
    match url::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(raw.trim_end_matches('/').to_owned())
        }
        _ => Err(ConfigError::new(format!(
            "{name} {raw:?} is not an http:// URL"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_hpa_selects_the_queue_and_vhost_it_is_given() {
        for builtin in [BUILTIN_HPA, BUILTIN_CAPACITY_HPA] {
            let yaml = builtin_for_queue(builtin, "emails", "shop").unwrap();
            let queries =
                AutoscaleConfig::check_manifest("built in", &yaml, ControllerConfig::default())
                    .unwrap();
            assert!(!queries.is_empty());
            for q in queries {
                assert_eq!(q.matchers.get("queue").map(String::as_str), Some("emails"));
                assert_eq!(q.matchers.get("vhost").map(String::as_str), Some("shop"));
            }
        }
    }

    #[test]
    fn metric_values_are_logged_to_the_milli_unit() {
        assert_eq!(milli(3.428_571_428_571_428_4), "3.429");
        assert_eq!(milli(5.0), "5");
        assert_eq!(milli(0.25), "0.25");
        assert_eq!(milli(0.0), "0");
        assert_eq!(milli(-0.0001), "0");
        assert_eq!(milli(120.0), "120");
    }
}
