//! Publishing jobs with publisher confirms, over a connection that heals itself.
//!
//! A [`Publisher`] owns one supervisor task that keeps a [`Link`] (a connection plus a few
//! confirm-mode channels) alive: it connects, declares the topology, and after a loss reconnects
//! with backoff. `publish` never waits for a connection: with no link it fails at once with
//! [`PublishError::NotConnected`], and a confirm that does not come within the bound fails with
//! [`PublishError::NotConfirmed`]; the web server answers both with 503.
//!
//! The supervisor also follows the broker's flow control: while the broker blocks the
//! connection (`connection.blocked`, a memory or disk alarm) `publish` fails at once with
//! [`PublishError::Blocked`] and publishes nothing, since a message sent then would be held by
//! the broker and run after its request was answered 503. A publish that comes back unroutable
//! (the work queue was deleted) makes the supervisor re-declare the topology, with backoff.
//!
//! A publish whose confirm did not come in time is not forgotten: its confirm is still awaited
//! in the background ([`LateConfirm`]), counted in `late_confirms_total` when it is an ack.
//!
//! Requests spread over the link's channels round-robin, and each channel has many publishes in
//! flight: a confirm is awaited per message, but nothing waits for another request's confirm.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::pipeline::broker::{self, Backoff};
use crate::pipeline::job::{message_properties, now_ms, JobId, JobIdGenerator};

/// How long a confirm that missed its bound is still awaited in the background, so a late
/// confirm is counted and an idempotency key learns the job's fate.
pub const LATE_CONFIRM_BOUND: Duration = Duration::from_secs(600);

/// Most publishes of one `/generate?count=N` batch awaiting their confirm at once. Every job in
/// flight holds its frames, its confirm and its timer, and the allocator keeps what a burst
/// took: 50 batches of 1 000 published all at once held about 150 MB, and a window of 64 per
/// batch still 30 MB against 12 MB at rest (docs/benchmarks.md, "After a burst"). 16 per batch
/// still keeps the broker busy: 50 such batches are 800 messages in flight.
pub const BATCH_WINDOW: usize = 16;

/// Most publishes of all batches together awaiting their confirm at once: however many batches
/// arrive together, the memory they hold (and the allocator keeps) stays that of this many
/// jobs. The broker's confirm rate, not this bound, sets how long a burst takes: 64 in flight
/// keep it busy on this machine.
pub const BATCHES_IN_FLIGHT: usize = 64;

/// Why a job was not accepted; every variant means "answer 503". [`PublishError::may_run`]
/// tells the variants after which the job may still run from those where it never will.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No connection to the broker right now (down, unreachable, or reconnecting); with why,
    /// when the last attempt said (access refused, vhost not found, host unknown, ...).
    #[error("not connected to the broker{}", .0.as_ref().map_or_else(String::new, |why| format!(": {why}")))]
    NotConnected(Option<String>),
    /// The broker blocks publishing (a memory or disk alarm); nothing was published.
    #[error("the broker blocks publishing ({0}); nothing was published")]
    Blocked(String),
    /// The broker did not confirm within the bound.
    #[error("the broker did not confirm within {0:?}")]
    NotConfirmed(Duration),
    /// The broker refused the message (nack), e.g. the queue is over its limits.
    #[error("the broker refused the message")]
    Nacked,
    /// The message reached no queue (the queue was deleted after it was declared).
    #[error("the message reached no queue")]
    Unroutable,
    /// The channel or connection failed while publishing.
    #[error("publish failed: {0}")]
    Broken(lapin::Error),
}

impl PublishError {
    /// The reason as a metric label value (`publish_failures_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotConnected(_) => "not_connected",
            Self::Blocked(_) => "blocked",
            Self::NotConfirmed(_) => "confirm_timeout",
            Self::Nacked => "nacked",
            Self::Unroutable => "unroutable",
            Self::Broken(_) => "channel_error",
        }
    }

    /// Whether the job may still run: the message may have reached the broker, but no answer
    /// came (a confirm timeout, a broken channel). The others mean it never will.
    pub fn may_run(&self) -> bool {
        matches!(self, Self::NotConfirmed(_) | Self::Broken(_))
    }
}

/// A job not accepted in time: why, and, when its confirm may still come, a way to learn it.
#[derive(Debug)]
pub struct Unaccepted {
    /// Why the request is answered 503.
    pub error: PublishError,
    /// Set after a confirm timeout: the job's id and its eventual fate.
    pub late: Option<LateConfirm>,
}

impl From<PublishError> for Unaccepted {
    fn from(error: PublishError) -> Self {
        Self { error, late: None }
    }
}

/// What finally became of a job whose confirm missed its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The broker confirmed it late: it will run.
    Confirmed,
    /// The broker refused it (nack, unroutable): it never runs.
    NotQueued,
    /// No answer ever came (the channel broke, or [`LATE_CONFIRM_BOUND`] passed): it may run.
    Unknown,
}

/// The eventual fate of one job whose confirm did not come within the bound.
#[derive(Debug)]
pub struct LateConfirm {
    /// The job's id.
    pub id: JobId,
    settled: oneshot::Receiver<Settled>,
}

impl LateConfirm {
    /// Waits for the confirm (or the end of the wait for it).
    pub async fn settled(self) -> Settled {
        self.settled.await.unwrap_or(Settled::Unknown)
    }
}

/// The publisher's own metrics, registered by whoever serves `/metrics`.
#[derive(Clone, Default)]
pub struct PublisherMetrics {
    /// `broker_blocked`: 1 while the broker blocks this publisher's connection.
    pub blocked: Gauge,
    /// `late_confirms_total`: confirms that arrived after their request was answered 503.
    pub late_confirms: Counter,
    /// `topology_redeclared_total`: times the work queue was found gone and declared again.
    pub redeclared: Counter,
    /// `queue_missing`: 1 while the work queue is gone and not yet declared again.
    pub queue_missing: Gauge,
}

impl PublisherMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "broker_blocked",
            "1 while the broker blocks publishing (a resource alarm); /generate answers 503 reason=blocked",
            self.blocked.clone(),
        );
        registry.register(
            "late_confirms",
            "Broker confirms that arrived after their request was answered 503: jobs that run although the client saw 503",
            self.late_confirms.clone(),
        );
        registry.register(
            "topology_redeclared",
            "Times the work queue was found deleted and its topology declared again",
            self.redeclared.clone(),
        );
        registry.register(
            "queue_missing",
            "1 while the work queue is gone and not yet declared again",
            self.queue_missing.clone(),
        );
    }
}

/// Some jobs of a batch failed; the ones the broker confirmed are listed.
#[derive(Debug)]
pub struct BatchError {
    /// Jobs the broker confirmed before the failure: they will be processed.
    pub confirmed: Vec<JobId>,
    /// The first failure.
    pub error: PublishError,
    /// Jobs whose confirm missed the bound and may still come.
    pub late: Vec<LateConfirm>,
    /// Jobs that failed in a way after which they may still run (late ones included).
    pub may_run: usize,
}

/// Tuning of a [`Publisher`].
#[derive(Clone, Debug)]
pub struct PublisherOptions {
    /// How long a publish may wait for the broker's confirm.
    pub confirm_timeout: Duration,
    /// How many confirm-mode channels to spread publishes over.
    pub channels: usize,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            confirm_timeout: Duration::from_secs(1),
            channels: 4,
        }
    }
}

/// A live connection and its confirm-mode channels.
struct Link {
    /// The connection; closed cleanly by [`Publisher::close`].
    connection: Connection,
    /// Channels in confirm mode, used round-robin.
    channels: Vec<Channel>,
}

struct Shared {
    /// Broker and queue.
    config: BrokerConfig,
    /// Bounds and channel count.
    options: PublisherOptions,
    /// The current link; `None` while disconnected.
    link: watch::Sender<Option<Arc<Link>>>,
    /// Round-robin cursor over the channels.
    cursor: AtomicUsize,
    /// Woken by a publish that saw the link fail, so the supervisor reconnects at once.
    broken: Notify,
    /// Woken by a publish that came back unroutable: the work queue may be gone.
    queue_missing: Notify,
    /// Whether the broker blocks the current connection (`connection.blocked`).
    blocked: AtomicBool,
    /// The reason the broker gave for the block.
    blocked_reason: std::sync::Mutex<String>,
    /// Why the last connection attempt failed (cleared once connected): the 503s and
    /// `/readyz` say it, and the log says it once per change.
    unreachable: std::sync::Mutex<Option<String>>,
    /// False while the work queue is known gone and not yet declared again.
    topology_ok: AtomicBool,
    /// The publisher's metrics.
    metrics: PublisherMetrics,
    /// Stops the supervisor; cancelled by `close`.
    stop: CancellationToken,
    /// Job ids.
    ids: JobIdGenerator,
    /// The publishes batches may have awaiting a confirm, all together ([`BATCHES_IN_FLIGHT`]).
    batch_slots: Arc<tokio::sync::Semaphore>,
}

/// Publishes jobs to the work queue; cheap to clone, shared by all requests.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// Starts the supervisor that connects (and reconnects) in the background.
    pub fn start(config: BrokerConfig, options: PublisherOptions) -> (Self, JoinHandle<()>) {
        let (link, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            config,
            options,
            link,
            cursor: AtomicUsize::new(0),
            broken: Notify::new(),
            queue_missing: Notify::new(),
            blocked: AtomicBool::new(false),
            blocked_reason: std::sync::Mutex::new(String::new()),
            unreachable: std::sync::Mutex::new(None),
            topology_ok: AtomicBool::new(true),
            metrics: PublisherMetrics::default(),
            stop: CancellationToken::new(),
            ids: JobIdGenerator::new(),
            batch_slots: Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT)),
        });
        let task = tokio::spawn(supervise(shared.clone()));
        (Self { shared }, task)
    }

    /// Whether a connection to the broker is up.
    pub fn is_connected(&self) -> bool {
        self.shared.link.borrow().is_some()
    }

    /// Why the publisher cannot take jobs now, if it cannot (the web server's readiness): no
    /// connection (and why, when the last attempt said), the broker blocks publishing, or the
    /// work queue is gone.
    pub fn not_ready(&self) -> Option<String> {
        if !self.is_connected() {
            Some(PublishError::NotConnected(self.why_not_connected()).to_string())
        } else if self.shared.blocked.load(Ordering::Relaxed) {
            Some("the broker blocks publishing (resource alarm)".into())
        } else if !self.shared.topology_ok.load(Ordering::Relaxed) {
            Some("the work queue is gone; declaring it again".into())
        } else {
            None
        }
    }

    /// Why the last connection attempt failed, while none is up.
    fn why_not_connected(&self) -> Option<String> {
        self.shared
            .unreachable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The publisher's metrics, to register where `/metrics` is served.
    pub fn metrics(&self) -> &PublisherMetrics {
        &self.shared.metrics
    }

    /// Waits until connected, or until `timeout` passes; returns whether connected.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.link.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Publishes one job and returns its id once the broker confirmed it.
    ///
    /// While the broker blocks the connection nothing is published. After a confirm timeout
    /// the confirm is still awaited in the background: [`Unaccepted::late`] says how it ends.
    pub async fn publish(&self) -> Result<JobId, Unaccepted> {
        let link = self
            .shared
            .link
            .borrow()
            .clone()
            .ok_or_else(|| PublishError::NotConnected(self.why_not_connected()))?;
        if self.shared.blocked.load(Ordering::Relaxed) {
            let reason = self
                .shared
                .blocked_reason
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default();
            return Err(PublishError::Blocked(reason).into());
        }
        let id = self.shared.ids.next_id();
        let bound = self.shared.options.confirm_timeout;
        let mut confirm = Box::pin(publish_on(self.shared.clone(), link.clone(), id.clone()));
        match tokio::time::timeout(bound, &mut confirm).await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(self.failed(e, &link).into()),
            Err(_) => {
                // A confirm that misses its bound may be a quorum leader lost with its node:
                // renew the link (unless the broker blocked it), and still await the confirm.
                self.renew(&link);
                let (tx, settled) = oneshot::channel();
                let publisher = self.clone();
                tokio::spawn(async move {
                    let fate = match tokio::time::timeout(LATE_CONFIRM_BOUND, confirm).await {
                        Ok(Ok(())) => {
                            publisher.shared.metrics.late_confirms.inc();
                            Settled::Confirmed
                        }
                        Ok(Err(e)) if e.may_run() => {
                            publisher.failed(e, &link);
                            Settled::Unknown
                        }
                        Ok(Err(e)) => {
                            publisher.failed(e, &link);
                            Settled::NotQueued
                        }
                        Err(_) => Settled::Unknown,
                    };
                    let _ = tx.send(fate);
                });
                Err(Unaccepted {
                    error: PublishError::NotConfirmed(bound),
                    late: Some(LateConfirm { id, settled }),
                })
            }
        }
    }

    /// Tells the supervisor what a failed publish means for the link; returns the error.
    fn failed(&self, error: PublishError, link: &Arc<Link>) -> PublishError {
        match &error {
            PublishError::Broken(e) if broker::is_not_found(e) => {
                self.shared.queue_missing.notify_one();
                self.shared.broken.notify_one();
            }
            PublishError::Broken(_) => self.shared.broken.notify_one(),
            PublishError::Unroutable => self.shared.queue_missing.notify_one(),
            PublishError::Nacked => self.renew(link),
            _ => {}
        }
        error
    }

    /// Replaces a link that missed a confirm or got a nack. After a cluster node is lost, the
    /// quorum queue's client on a channel may still address the old leader: RabbitMQ's client
    /// then nacks, or resends only after 10 s, while a new connection finds the new leader at
    /// once. A connection the broker blocked (a resource alarm) is kept: any new one would
    /// be blocked too.
    fn renew(&self, link: &Arc<Link>) {
        if link.connection.status().blocked() {
            return;
        }
        if link.connection.status().connected() {
            let link = link.clone();
            tokio::spawn(async move {
                let _ = link.connection.close(200, "renewing the link".into()).await;
            });
        }
        self.shared.broken.notify_one();
    }

    /// Publishes `count` jobs, at most [`BATCH_WINDOW`] awaiting their confirm at a time (and
    /// at most [`BATCHES_IN_FLIGHT`] of all batches together); all confirmed, or the error and
    /// those that were. After the first failure no further job of the batch is published: those
    /// are not queued and never run.
    pub async fn publish_batch(&self, count: usize) -> Result<Vec<JobId>, BatchError> {
        let mut confirmed = Vec::with_capacity(count);
        let mut first_error = None;
        let mut late = Vec::new();
        let mut may_run = 0;
        let mut started = 0;
        let mut in_flight = FuturesOrdered::new();
        loop {
            while first_error.is_none() && started < count && in_flight.len() < BATCH_WINDOW {
                let slots = self.shared.batch_slots.clone();
                // A batch with nothing in flight holds no slot, so it may wait for one; one with
                // publishes in flight must poll them (they free its slots), so it only takes a
                // slot that is free now.
                let slot = if in_flight.is_empty() {
                    slots.acquire_owned().await.ok()
                } else {
                    match slots.try_acquire_owned() {
                        Ok(slot) => Some(slot),
                        Err(_) => break,
                    }
                };
                in_flight.push_back(async move {
                    let result = self.publish().await;
                    drop(slot);
                    result
                });
                started += 1;
            }
            let Some(result) = in_flight.next().await else {
                break;
            };
            match result {
                Ok(id) => confirmed.push(id),
                Err(unaccepted) => {
                    if unaccepted.error.may_run() {
                        may_run += 1;
                    }
                    late.extend(unaccepted.late);
                    first_error.get_or_insert(unaccepted.error);
                }
            }
        }
        match first_error {
            None => Ok(confirmed),
            Some(error) => Err(BatchError {
                confirmed,
                error,
                late,
                may_run,
            }),
        }
    }

    /// Stops reconnecting and closes the connection cleanly. Call after in-flight requests end.
    pub async fn close(&self) {
        self.shared.stop.cancel();
        let link = self.shared.link.send_replace(None);
        if let Some(link) = link {
            if let Err(e) = link
                .connection
                .close(200, "warren web shutting down".into())
                .await
            {
                tracing::debug!(error = %e, "closing the AMQP connection");
            }
        }
    }
}

/// Publishes one message on the link and awaits its confirm; owned, so that a confirm that
/// misses its bound can still be awaited by a task of its own.
async fn publish_on(shared: Arc<Shared>, link: Arc<Link>, id: JobId) -> Result<(), PublishError> {
    let index = shared.cursor.fetch_add(1, Ordering::Relaxed) % link.channels.len();
    let channel = &link.channels[index];
    let confirm = channel
        .basic_publish(
            "".into(),
            shared.config.queue.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            id.as_str().as_bytes(),
            message_properties(&id, now_ms()),
        )
        .await
        .map_err(PublishError::Broken)?
        .await
        .map_err(PublishError::Broken)?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        // Confirm mode is selected on every channel before it is used.
        Confirmation::NotRequested => Err(PublishError::Nacked),
    }
}

/// Records the broker's flow control: blocked or not, with one log line per change.
fn set_blocked(shared: &Shared, blocked: Option<String>) {
    let was = shared.blocked.swap(blocked.is_some(), Ordering::Relaxed);
    shared.metrics.blocked.set(i64::from(blocked.is_some()));
    match blocked {
        Some(reason) => {
            if let Ok(mut r) = shared.blocked_reason.lock() {
                r.clone_from(&reason);
            }
            if !was {
                tracing::warn!(broker = %shared.config.url, reason = %reason, "the broker blocks publishing (resource alarm); /generate answers 503 reason=blocked and /readyz 503 until it lifts");
            }
        }
        None if was => {
            tracing::info!(broker = %shared.config.url, "the broker unblocked publishing");
        }
        None => {}
    }
}

/// After an unroutable publish: if the work queue is really gone, declares the topology
/// again, with backoff, `/readyz` answering 503 until it is back. Returns when the queue
/// exists, or when the connection is lost or the publisher stops.
async fn heal_topology(shared: &Shared, link: &Link) {
    let queue = shared.config.queue.as_str();
    match broker::ready_messages(&link.connection, queue).await {
        Ok(_) => return,
        Err(e) if !e.is_not_found() => {
            tracing::debug!(error = %e, "checking the work queue");
            return;
        }
        Err(_) => {}
    }
    shared.topology_ok.store(false, Ordering::Relaxed);
    shared.metrics.queue_missing.set(1);
    tracing::warn!(
        queue,
        "the work queue is gone (deleted?): publishes come back unroutable; declaring it again"
    );
    let mut backoff = Backoff::default();
    loop {
        match broker::declare_topology(&link.connection, &shared.config).await {
            Ok(()) => {
                shared.metrics.redeclared.inc();
                tracing::info!(queue, "the work queue is declared again");
                break;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(queue, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot declare the work queue again");
                tokio::select! {
                    () = shared.stop.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
                if !link.connection.status().connected() {
                    break;
                }
            }
        }
    }
    shared.topology_ok.store(true, Ordering::Relaxed);
    shared.metrics.queue_missing.set(0);
}

async fn supervise(shared: Arc<Shared>) {
    let mut backoff = Backoff::default();
    while !shared.stop.is_cancelled() {
        match open_link(&shared).await {
            Ok(link) => {
                backoff.reset();
                set_unreachable(&shared, None);
                tracing::info!(broker = %shared.config.url, queue = %shared.config.queue, channels = link.channels.len(), "publisher connected");
                let mut events = link.connection.events_listener();
                let link = Arc::new(link);
                set_blocked(&shared, None);
                shared.link.send_replace(Some(link.clone()));
                loop {
                    tokio::select! {
                        () = shared.stop.cancelled() => return,
                        () = shared.broken.notified() => {}
                        () = shared.queue_missing.notified() => heal_topology(&shared, &link).await,
                        event = events.next() => match event {
                            Some(lapin::Event::ConnectionBlocked(reason)) => set_blocked(&shared, Some(reason)),
                            Some(lapin::Event::ConnectionUnblocked) => set_blocked(&shared, None),
                            Some(lapin::Event::Error(e)) => tracing::debug!(error = %e, "connection event"),
                            _ => {}
                        },
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                    if !link.connection.status().connected()
                        || link.channels.iter().any(|c| !c.status().connected())
                    {
                        break;
                    }
                }
                shared.link.send_replace(None);
                set_blocked(&shared, None);
                tracing::warn!(broker = %shared.config.url, "publisher lost the broker; reconnecting");
                let _ = link.connection.close(200, "reconnecting".into()).await;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                let why = e.why_unreachable(&shared.config.url.authority());
                if set_unreachable(&shared, Some(why.clone())) {
                    tracing::warn!(broker = %shared.config.url, why, error = %e, "publisher cannot reach the broker; retrying (said again only when the reason changes)");
                } else {
                    tracing::debug!(broker = %shared.config.url, why, retry_in_ms = delay.as_millis() as u64, "publisher cannot reach the broker");
                }
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Records why the broker cannot be reached (`None`: it can); returns whether that changed.
fn set_unreachable(shared: &Shared, why: Option<String>) -> bool {
    let mut last = shared
        .unreachable
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let changed = *last != why;
    *last = why;
    changed
}

async fn open_link(shared: &Shared) -> Result<Link, broker::BrokerError> {
    let connection = broker::connect(&shared.config, "web").await?;
    broker::declare_topology(&connection, &shared.config).await?;
    let mut channels = Vec::with_capacity(shared.options.channels);
    for _ in 0..shared.options.channels.max(1) {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(channel);
    }
    Ok(Link {
        connection,
        channels,
    })
}
