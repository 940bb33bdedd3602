//! `warren worker`: consumes jobs, does the work, acks only after it, drains on SIGTERM.
//!
//! One supervisor loop keeps a consumer alive (connect, declare, `basic.qos(prefetch)`,
//! `basic.consume`), reconnecting with backoff after a broker restart. Each delivery runs as its
//! own task, so up to `prefetch` jobs run at once. A delivery that fails the checks of
//! [`crate::pipeline::job::parse_delivery`] is rejected without requeue, which dead-letters it.
//!
//! Every outcome is one log line holding its [`JobRecord`] (`crate::records`: the job id and
//! `outcome` acked, dead_lettered, requeued or abandoned, with its queue wait and work time),
//! which the ledger and the tests read back.
//!
//! When the channel a job came on is lost (connection cut, broker gone), the broker has
//! already put the job back for redelivery, and the ack this worker would send can no longer
//! be sent; so the job is abandoned at once (outcome `abandoned`, `jobs_abandoned_total`)
//! rather than run on beside its redelivered copy. `--abandon-orphaned-jobs false` lets such
//! work run to its end instead, for work that must not be interrupted. When the broker cancels
//! the consumer while the channel stays up, the work queue was deleted: the worker says so and
//! declares it again.
//! On SIGTERM the consumer is cancelled, deliveries not yet started are requeued, running jobs
//! finish and are acked, and the process exits 0 within the grace time; if the grace runs out it
//! exits 1 without acking, and the broker requeues what was unacked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BrokerConfig, ConfigError};
use crate::metrics::{self, ReadyState};
use crate::pipeline::broker::BrokerArgs;
use crate::pipeline::broker::{self, Backoff};
use crate::pipeline::deletion_cost::{self, DeletionCostArgs, DeletionCostConfig};
use crate::pipeline::job::{now_ms, parse_delivery, Job, MAX_WORK_MS};
use crate::records::{self, JobOutcome, JobRecord, Record, WorkerEvent, WorkerRecord};

/// Settings of `warren worker`, validated.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Broker and queue.
    pub broker: BrokerConfig,
    /// How long one job takes, unless the job's header says otherwise.
    pub work: Duration,
    /// How many jobs run at once (the broker's prefetch count).
    pub prefetch: u16,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (port 0 picks a free one).
    pub metrics_listen: SocketAddr,
    /// How long a drain may take after SIGTERM before the worker exits without acking.
    pub grace: Duration,
    /// Drain and exit when this process (the pool that started us) is gone.
    pub parent_pid: Option<u32>,
    /// Keep the pod's deletion cost in step with idle/busy (`None`: off, no client is built).
    pub deletion_cost: Option<DeletionCostConfig>,
    /// Stop a job at once when its delivery's channel is lost (its redelivery is on its way).
    pub abandon_orphaned: bool,
}

/// The worker's metrics.
pub struct WorkerMetrics {
    /// `jobs_processed_total`: jobs done and acked.
    pub processed: Counter,
    /// `jobs_failed_total{reason}`: deliveries dead-lettered or whose ack was lost.
    pub failed: Family<ReasonLabel, Counter>,
    /// `jobs_in_flight`: jobs being worked on now.
    pub in_flight: Gauge,
    /// `job_duration_seconds`: work time of acked jobs.
    pub duration: Histogram,
    /// `job_queue_wait_seconds`: delivery time minus publish time.
    pub queue_wait: Histogram,
    /// `jobs_abandoned_total`: jobs stopped because their channel was lost (redelivered).
    pub abandoned: Counter,
}

/// Label set `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the job failed.
    pub reason: &'static str,
}

impl WorkerMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            processed: Counter::default(),
            failed: Family::default(),
            in_flight: Gauge::default(),
            duration: Histogram::new(metrics::job_buckets()),
            queue_wait: Histogram::new(metrics::job_buckets()),
            abandoned: Counter::default(),
        };
        registry.register("jobs_processed", "Jobs done and acked", m.processed.clone());
        registry.register(
            "jobs_failed",
            "Deliveries dead-lettered (bad message) or whose ack was lost, by reason",
            m.failed.clone(),
        );
        registry.register(
            "jobs_in_flight",
            "Jobs being worked on now",
            m.in_flight.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Work time of acked jobs",
            m.duration.clone(),
        );
        registry.register(
            "job_queue_wait_seconds",
            "Time from publish to delivery",
            m.queue_wait.clone(),
        );
        registry.register(
            "jobs_abandoned",
            "Jobs stopped mid-work because their channel was lost; the broker redelivers them",
            m.abandoned.clone(),
        );
        Arc::new(m)
    }
}

/// Runs `warren worker` until `shutdown` is cancelled and the drain is over.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let worker_metrics = WorkerMetrics::register(&mut registry);
    // Ready while consuming.
    let ops =
        metrics::OpsServer::start(config.metrics_listen, registry, ReadyState::NotReady).await?;
    let metrics_addr = ops.addr();
    tracing::info!(metrics = %metrics_addr, broker = %config.broker.url, queue = %config.broker.queue,
        work_ms = config.work.as_millis() as u64, prefetch = config.prefetch, "warren worker starting");

    if let Some(parent) = config.parent_pid {
        tokio::spawn(drain_when_orphaned(parent, shutdown.clone()));
    }
    if let Some(cost) = config.deletion_cost.clone() {
        let in_flight = worker_metrics.in_flight.clone();
        tokio::spawn(deletion_cost::run(cost, in_flight, shutdown.clone()));
    }
    let jobs = TaskTracker::new();
    let mut backoff = Backoff::default();
    let mut last_connection = None;
    // Why the last attempt failed: said once per change of reason, not once per retry.
    let mut unreachable: Option<String> = None;
    while !shutdown.is_cancelled() {
        let (connection, channel, consumer) = match open_consumer(&config).await {
            Ok(parts) => parts,
            Err(e) => {
                let delay = backoff.next_delay();
                let why = e.why_unreachable(&config.broker.url.authority());
                if unreachable.as_ref() != Some(&why) {
                    tracing::warn!(broker = %config.broker.url, why, error = %e, "worker cannot reach the broker; retrying (said again only when the reason changes)");
                    unreachable = Some(why);
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        backoff.reset();
        unreachable = None;
        ops.set_ready(ReadyState::Ready);
        tracing::info!(queue = %config.broker.queue, record = %worker_record(WorkerEvent::Consuming), "consuming");
        // Cancelled when this channel is lost: its jobs' deliveries are then void.
        let channel_lost = CancellationToken::new();
        let stopped = consume(
            &config,
            &channel,
            consumer,
            &jobs,
            &worker_metrics,
            &shutdown,
            &channel_lost,
        )
        .await;
        ops.set_ready(ReadyState::NotReady);
        match stopped {
            Stopped::Shutdown => {
                last_connection = Some((connection, channel));
                break;
            }
            Stopped::QueueDeleted => {
                // The queue's messages went with it, so nothing redelivers the jobs in hand:
                // they are not abandoned.
                tracing::warn!(queue = %config.broker.queue, "the work queue was deleted (the broker cancelled this consumer); declaring it again");
            }
            Stopped::Lost => {
                channel_lost.cancel();
                tracing::warn!(broker = %config.broker.url, record = %worker_record(WorkerEvent::LostBroker), "worker lost the broker; reconnecting");
            }
        }
        // Release the old connection's socket and I/O loop; jobs still running on it will find
        // their ack refused and be redelivered by the broker.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            connection.close(200, "reconnecting".into()),
        )
        .await;
    }

    jobs.close();
    let running = jobs.len();
    if running > 0 {
        tracing::info!(
            jobs = running,
            grace_ms = config.grace.as_millis() as u64,
            record = %worker_record(WorkerEvent::Draining),
            "draining: finishing jobs in flight"
        );
    }
    let drained = tokio::time::timeout(config.grace, jobs.wait())
        .await
        .is_ok();
    if let Some((connection, channel)) = last_connection {
        if drained {
            let _ = channel.close(200, "drained".into()).await;
            let _ = connection.close(200, "warren worker stopping".into()).await;
        }
    }
    ops.stop().await;
    if drained {
        tracing::info!("warren worker stopped");
        Ok(())
    } else {
        anyhow::bail!(
            "grace time of {:?} ran out with {} jobs in flight; exiting without acking them (the broker requeues them)",
            config.grace,
            jobs.len()
        )
    }
}

/// Cancels `shutdown` once `parent` is no longer our parent (it died and we were re-parented).
async fn drain_when_orphaned(parent: u32, shutdown: CancellationToken) {
    let parent = i32::try_from(parent).unwrap_or(0);
    loop {
        if nix::unistd::getppid().as_raw() != parent {
            tracing::warn!(
                parent,
                "the process that started this worker is gone; draining"
            );
            shutdown.cancel();
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn open_consumer(
    config: &WorkerConfig,
) -> Result<(Connection, Channel, Consumer), broker::BrokerError> {
    let connection = broker::connect(&config.broker, "worker").await?;
    broker::declare_topology(&connection, &config.broker).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let tag = format!("warren-worker-{}", std::process::id());
    let consumer = channel
        .basic_consume(
            config.broker.queue.as_str().into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((connection, channel, consumer))
}

/// Why [`consume`] stopped taking deliveries.
enum Stopped {
    /// SIGTERM: drain.
    Shutdown,
    /// The broker cancelled the consumer on a live channel: the queue was deleted.
    QueueDeleted,
    /// The channel or connection was lost.
    Lost,
}

/// Takes deliveries until shutdown, or until the channel is lost or the queue deleted.
async fn consume(
    config: &WorkerConfig,
    channel: &Channel,
    mut consumer: Consumer,
    jobs: &TaskTracker,
    metrics: &Arc<WorkerMetrics>,
    shutdown: &CancellationToken,
    channel_lost: &CancellationToken,
) -> Stopped {
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                if let Err(e) = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await {
                    tracing::warn!(error = %e, "cancelling the consumer");
                }
                // Deliveries that arrived but were not started go back to the queue at once.
                while let Ok(Some(Ok(delivery))) =
                    tokio::time::timeout(Duration::from_millis(200), consumer.next()).await
                {
                    requeue(&delivery).await;
                }
                return Stopped::Shutdown;
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let metrics = metrics.clone();
                    let work = config.work;
                    let abandon = config.abandon_orphaned.then(|| channel_lost.clone());
                    jobs.spawn(handle(delivery, work, metrics, abandon));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    return Stopped::Lost;
                }
                None => {
                    // A consumer stream ends on a live channel only when the broker sent
                    // basic.cancel, which it does when the queue is deleted.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return if channel.status().connected() {
                        Stopped::QueueDeleted
                    } else {
                        Stopped::Lost
                    };
                }
            },
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                if !channel.status().connected() {
                    return Stopped::Lost;
                }
            }
        }
    }
}

async fn requeue(delivery: &Delivery) {
    let id = loggable_id(delivery);
    let options = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    // `Ok(false)` means the channel had already closed and nothing was sent; the broker
    // requeues the delivery by itself then.
    match delivery.acker.nack(options).await {
        Ok(true) => {
            tracing::info!(record = %outcome(&id, JobOutcome::Requeued, |r| r.reason = Some("shutting down".into())), "job returned to the queue")
        }
        Ok(false) | Err(_) => {
            tracing::info!(record = %outcome(&id, JobOutcome::Requeued, |r| r.reason = Some("channel closed".into())), "job left to the broker")
        }
    }
}

/// Runs one delivery. `abandon`, when set, is cancelled once the delivery's channel is lost.
async fn handle(
    delivery: Delivery,
    default_work: Duration,
    metrics: Arc<WorkerMetrics>,
    abandon: Option<CancellationToken>,
) {
    let delivered_ms = now_ms();
    let job = match parse_delivery(&delivery.data, &delivery.properties) {
        Ok(job) => job,
        Err(reason) => {
            let id = loggable_id(&delivery);
            let options = BasicRejectOptions { requeue: false };
            match delivery.acker.reject(options).await {
                Ok(true) => {
                    metrics
                        .failed
                        .get_or_create(&ReasonLabel {
                            reason: reason.label(),
                        })
                        .inc();
                    tracing::warn!(record = %outcome(&id, JobOutcome::DeadLettered, |r| r.reason = Some(reason.label().into())), "bad message: {reason}");
                }
                // `Ok(false)`: the channel had already closed, so the reject was never sent.
                Ok(false) | Err(_) => {
                    tracing::warn!(record = %outcome(&id, JobOutcome::Requeued, |_| {}), "bad message, but the reject was lost with the channel; the broker redelivers it")
                }
            }
            return;
        }
    };
    work_and_ack(
        &delivery,
        &job,
        default_work,
        delivered_ms,
        &metrics,
        abandon.as_ref(),
    )
    .await;
}

async fn work_and_ack(
    delivery: &Delivery,
    job: &Job,
    default_work: Duration,
    delivered_ms: u64,
    metrics: &WorkerMetrics,
    abandon: Option<&CancellationToken>,
) {
    metrics.in_flight.inc();
    let started = Instant::now();
    let work = job.work_ms.map_or(default_work, Duration::from_millis);
    let channel_lost = async {
        match abandon {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    };
    // The work itself: the original application's 5 s of sleep, standing in for real processing.
    tokio::select! {
        () = tokio::time::sleep(work) => {}
        () = channel_lost => {
            metrics.abandoned.inc();
            metrics.in_flight.dec();
            tracing::warn!(record = %outcome(&job.id, JobOutcome::Abandoned, |r| r.work_ms = Some(started.elapsed().as_millis() as u64)), "job abandoned: its channel was lost, so the broker redelivers it and this copy could not be acked");
            return;
        }
    }
    let worked = started.elapsed();
    let wait = job.queue_wait(delivered_ms);
    let timed = |r: &mut JobRecord| {
        r.queue_wait_ms = wait.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX));
        r.work_ms = Some(worked.as_millis() as u64);
    };
    match delivery.acker.ack(BasicAckOptions::default()).await {
        Ok(true) => {
            metrics.processed.inc();
            metrics.duration.observe(worked.as_secs_f64());
            if let Some(wait) = wait {
                metrics.queue_wait.observe(wait.as_secs_f64());
            }
            tracing::info!(record = %outcome(&job.id, JobOutcome::Acked, |r| { timed(r); r.redelivered = Some(delivery.redelivered); }), "job done");
        }
        // `Ok(false)`: the channel had already closed, so the ack was never sent.
        Ok(false) | Err(_) => {
            metrics
                .failed
                .get_or_create(&ReasonLabel { reason: "ack_lost" })
                .inc();
            tracing::warn!(record = %outcome(&job.id, JobOutcome::Requeued, |r| { timed(r); r.reason = Some("ack lost".into()); }), "job done but the ack was lost with the channel; the broker redelivers it");
        }
    }
    metrics.in_flight.dec();
}

/// The job id for a log line: the body if it looks like an id, else the message id, else `-`.
fn loggable_id(delivery: &Delivery) -> String {
    let looks_like_id = |s: &str| {
        !s.is_empty()
            && s.len() <= crate::pipeline::job::MAX_ID_LEN
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
    };
    if let Ok(body) = std::str::from_utf8(&delivery.data) {
        if looks_like_id(body) {
            return body.to_owned();
        }
    }
    match delivery.properties.message_id() {
        Some(id) if looks_like_id(id.as_str()) => id.to_string(),
        _ => "-".to_owned(),
    }
}

/// How a worker works: shared by `warren worker` and the workers `warren autoscale` starts.
#[derive(Debug, Args)]
pub struct WorkArgs {
    /// How long one job takes, in ms: the work is a sleep that stands in for real processing.
    /// A job's x-work-ms header overrides it. 5 s by default, as the application warren grew
    /// from (the README's "original application") took.
    #[arg(long, env = "WORK_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(0..=MAX_WORK_MS))]
    pub work_ms: u64,
    /// How many jobs run at once (the AMQP prefetch count).
    #[arg(long, env = "PREFETCH", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub prefetch: u16,
    /// After SIGTERM, how long jobs in flight may take to finish, in ms; then the worker exits
    /// without acking them and the broker requeues them.
    #[arg(long, env = "GRACE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub grace_ms: u64,
}

/// Options of `warren worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Broker and queue.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Work time, prefetch and drain grace.
    #[command(flatten)]
    pub work: WorkArgs,
    /// Port of /metrics, /healthz and /readyz (0 picks a free port and logs it).
    #[arg(long, env = "METRICS_PORT", default_value_t = 9100)]
    pub metrics_port: u16,
    /// Address the metrics port listens on.
    #[arg(long, env = "METRICS_BIND", default_value = "0.0.0.0")]
    pub metrics_bind: IpAddr,
    /// Set by `warren autoscale`: drain and exit when this parent process is gone.
    #[arg(long, env = "WARREN_PARENT_PID", hide = true)]
    pub parent_pid: Option<u32>,
    /// Idle workers go first: the pod-deletion-cost annotation.
    #[command(flatten)]
    pub deletion_cost: DeletionCostArgs,
    /// Stop a job as soon as the channel it came on is lost (the broker redelivers it, and
    /// this copy can no longer be acked). Set to false for work that must not be interrupted:
    /// it then runs to its end beside the redelivered copy.
    #[arg(long, env = "ABANDON_ORPHANED_JOBS", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "true|false")]
    pub abandon_orphaned_jobs: bool,
}

impl WorkerArgs {
    /// The validated config.
    pub fn to_config(&self) -> Result<WorkerConfig, ConfigError> {
        Ok(WorkerConfig {
            broker: self.broker.to_config()?,
            work: Duration::from_millis(self.work.work_ms),
            prefetch: self.work.prefetch,
            metrics_listen: SocketAddr::new(self.metrics_bind, self.metrics_port),
            grace: Duration::from_millis(self.work.grace_ms),
            parent_pid: self.parent_pid,
            deletion_cost: self.deletion_cost.to_config()?,
            abandon_orphaned: self.abandon_orphaned_jobs,
        })
    }
}

/// A job's outcome record as its log line's `record` field holds it: `id`, `outcome`, and
/// what `fill` adds.
fn outcome(id: impl ToString, outcome: JobOutcome, fill: impl FnOnce(&mut JobRecord)) -> String {
    let mut record = JobRecord::new(id.to_string(), outcome);
    record.at_ms = Some(records::unix_ms());
    fill(&mut record);
    Record::from(record).to_json()
}

/// A step of this worker's life as its log line's `record` field holds it.
fn worker_record(event: WorkerEvent) -> String {
    Record::from(WorkerRecord::now(event)).to_json()
}
