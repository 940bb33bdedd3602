//! Publishing jobs with publisher confirms, over a connection that heals itself.
//!
//! A [`Publisher`] owns one supervisor task that keeps a [`Link`] (a connection plus a few
//! confirm-mode channels) alive: it connects, declares the topology, and after a loss reconnects
//! with backoff. `publish` never waits for a connection: with no link it fails at once with
//! [`PublishError::NotConnected`], and a confirm that does not come within the bound fails with
//! [`PublishError::NotConfirmed`]; the web server answers both with 503.
//!
//! Requests spread over the link's channels round-robin, and each channel has many publishes in
//! flight: a confirm is awaited per message, but nothing waits for another request's confirm.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::pipeline::broker::{self, Backoff};
use crate::pipeline::job::{message_properties, now_ms, JobId, JobIdGenerator};

/// Why a job was not accepted; every variant means "answer 503, the client may retry".
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No connection to the broker right now (down, unreachable, or reconnecting).
    #[error("not connected to the broker")]
    NotConnected,
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
            Self::NotConnected => "not_connected",
            Self::NotConfirmed(_) => "confirm_timeout",
            Self::Nacked => "nacked",
            Self::Unroutable => "unroutable",
            Self::Broken(_) => "channel_error",
        }
    }
}

/// Some jobs of a batch failed; the ones the broker confirmed are listed.
#[derive(Debug)]
pub struct BatchError {
    /// Jobs the broker confirmed before the failure: they will be processed.
    pub confirmed: Vec<JobId>,
    /// The first failure.
    pub error: PublishError,
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
    /// Stops the supervisor; cancelled by `close`.
    stop: CancellationToken,
    /// Job ids.
    ids: JobIdGenerator,
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
            stop: CancellationToken::new(),
            ids: JobIdGenerator::new(),
        });
        let task = tokio::spawn(supervise(shared.clone()));
        (Self { shared }, task)
    }

    /// Whether a connection to the broker is up (the web server's readiness).
    pub fn is_connected(&self) -> bool {
        self.shared.link.borrow().is_some()
    }

    /// Waits until connected, or until `timeout` passes; returns whether connected.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.link.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Publishes one job and returns its id once the broker confirmed it.
    pub async fn publish(&self) -> Result<JobId, PublishError> {
        let link = self
            .shared
            .link
            .borrow()
            .clone()
            .ok_or(PublishError::NotConnected)?;
        let id = self.shared.ids.next_id();
        let bound = self.shared.options.confirm_timeout;
        match tokio::time::timeout(bound, self.publish_on(&link, &id)).await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => {
                match e {
                    PublishError::Broken(_) => self.shared.broken.notify_one(),
                    PublishError::Nacked => self.renew(&link),
                    _ => {}
                }
                Err(e)
            }
            Err(_) => {
                self.renew(&link);
                Err(PublishError::NotConfirmed(bound))
            }
        }
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

    /// Publishes `count` jobs at once; all confirmed, or the error and those that were.
    pub async fn publish_batch(&self, count: usize) -> Result<Vec<JobId>, BatchError> {
        let results = join_all((0..count).map(|_| self.publish())).await;
        let mut confirmed = Vec::with_capacity(count);
        let mut first_error = None;
        for result in results {
            match result {
                Ok(id) => confirmed.push(id),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(confirmed),
            Some(error) => Err(BatchError { confirmed, error }),
        }
    }

    async fn publish_on(&self, link: &Link, id: &JobId) -> Result<(), PublishError> {
        let index = self.shared.cursor.fetch_add(1, Ordering::Relaxed) % link.channels.len();
        let channel = &link.channels[index];
        let confirm = channel
            .basic_publish(
                "".into(),
                self.shared.config.queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                id.as_str().as_bytes(),
                message_properties(id, now_ms()),
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

async fn supervise(shared: Arc<Shared>) {
    let mut backoff = Backoff::default();
    while !shared.stop.is_cancelled() {
        match open_link(&shared).await {
            Ok(link) => {
                backoff.reset();
                tracing::info!(broker = %shared.config.url, queue = %shared.config.queue, channels = link.channels.len(), "publisher connected");
                let mut events = link.connection.events_listener();
                let link = Arc::new(link);
                shared.link.send_replace(Some(link.clone()));
                loop {
                    tokio::select! {
                        () = shared.stop.cancelled() => return,
                        () = shared.broken.notified() => {}
                        event = events.next() => {
                            if let Some(lapin::Event::Error(e)) = &event {
                                tracing::debug!(error = %e, "connection event");
                            }
                        }
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                    if !link.connection.status().connected()
                        || link.channels.iter().any(|c| !c.status().connected())
                    {
                        break;
                    }
                }
                shared.link.send_replace(None);
                tracing::warn!(broker = %shared.config.url, "publisher lost the broker; reconnecting");
                let _ = link.connection.close(200, "reconnecting".into()).await;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(broker = %shared.config.url, error = %e, retry_in_ms = delay.as_millis() as u64, "publisher cannot reach the broker");
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
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
