//! The one AMQP connection helper: connect, declare the queue topology, retry with backoff.
//!
//! Web, worker and tests all reach the broker through here, so they agree on the topology:
//!
//! - `<queue>`: a durable quorum queue (survives a broker restart with its messages), whose
//!   messages are dead-lettered to `<queue>.dlx` after [`DELIVERY_LIMIT`] failed deliveries or
//!   when a worker rejects them;
//! - `<queue>.dlx`: a durable fanout exchange;
//! - `<queue>.dead`: a durable quorum queue bound to it, where poison messages wait for a human.
//!
//! Both quorum queues ask for [`BrokerConfig::quorum_group_size`] members
//! (`x-quorum-initial-group-size`), so on a cluster a node can be lost without losing a message.
//! `AMQP_URL` may name several nodes: [`connect`] tries them in turn.
//!
//! Declaring is idempotent. A queue that already exists with other arguments (a classic queue
//! left by the original application, say) is reported as [`BrokerError::TopologyMismatch`], not silently used.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use clap::Args;

use crate::config::{AmqpUrl, BrokerConfig, ConfigError, QueueName};

/// How many times the broker delivers a message before dead-lettering it.
pub const DELIVERY_LIMIT: i64 = 5;

/// How long to wait for the TCP connect and AMQP handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest AMQP frame warren asks for (`frame_max`). lapin keeps a send and a receive
/// buffer of 32 frames each, zero-filled once the size is agreed: at RabbitMQ's default of
/// 128 KiB that was 8 MiB of every process's resting memory, for job messages of a few hundred
/// bytes. At 8 KiB it is 512 KiB (docs/benchmarks.md, "Lean processes").
pub const FRAME_MAX: u32 = 8192;

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker did not answer the connect in time.
    #[error("no answer from the broker at {0} within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout(String),
    /// An AMQP error (connection refused, access refused, channel closed, ...).
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    /// The queue exists with arguments other than warren's.
    #[error("queue {queue} exists with other arguments than warren declares ({detail}); delete it or choose another --queue")]
    TopologyMismatch {
        /// The queue's name.
        queue: String,
        /// The broker's words.
        detail: String,
    },
}

impl BrokerError {
    /// Why the broker could not be reached, in words a user can act on: the credentials, the
    /// vhost, the host name, the port. `at` is where it was tried (`host:port`, no password).
    pub fn why_unreachable(&self, at: &str) -> String {
        let Self::Amqp(error) = self else {
            return match self {
                Self::ConnectTimeout(_) => {
                    format!("no answer from {at} within {CONNECT_TIMEOUT:?}")
                }
                other => format!("{other} ({at})"),
            };
        };
        match error.kind() {
            lapin::ErrorKind::ProtocolError(refusal) => match refusal.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => format!("access refused by {at}: the user name or password is wrong (RABBIT_USERNAME, RABBIT_PASSWORD or AMQP_URL)"),
                AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
                    vhost_refusal(refusal.get_message().as_str(), at)
                }
                _ => format!("{self} ({at})"),
            },
            lapin::ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                format!("connection refused: nothing listens at {at} (RABBIT_PORT or AMQP_URL)")
            }
            // A failed name lookup has no error kind of its own (std reports it as
            // uncategorized), so the name is looked up again to tell.
            lapin::ErrorKind::IOError(_) if at.to_socket_addrs().is_err() => {
                format!("host unknown: {at} does not resolve (RABBIT_HOST or AMQP_URL)")
            }
            _ => format!("{self} ({at})"),
        }
    }

    /// Whether the broker answered that the queue (or exchange) does not exist: 404 NOT_FOUND.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Amqp(e) if is_not_found(e))
    }
}

/// RabbitMQ closes a connection with 530 NOT_ALLOWED both for a vhost that does not exist and
/// for one the user may not use; only its reply text (`vhost x not found`, `access to vhost 'x'
/// refused for user 'u'`) tells which, and names the vhost, so the text is read here, as the
/// broker's message to show, after the code has said what kind of refusal it is.
fn vhost_refusal(reply: &str, at: &str) -> String {
    match reply
        .split_once("vhost ")
        .and_then(|(_, rest)| rest.split_once(" not found"))
    {
        Some((vhost, _)) => format!("vhost not found: {at} has no virtual host {vhost:?} (RABBIT_VHOST or the path of AMQP_URL)"),
        None => format!("access refused to the vhost by {at}: the user has no permission on it"),
    }
}

/// Whether the broker closed the channel because the queue (or exchange) does not exist:
/// 404 NOT_FOUND.
pub fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        reply_code(error),
        Some(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}

/// The broker's reply code when it refused an operation and closed the channel or the
/// connection over it (404 NOT_FOUND, 406 PRECONDITION_FAILED, 530 NOT_ALLOWED, ...).
fn reply_code(error: &lapin::Error) -> Option<&AMQPErrorKind> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(refusal) => Some(refusal.kind()),
        _ => None,
    }
}

/// Where the next [`connect`] starts in the list of nodes; moved past each node that
/// connected, so a reconnect after a loss tries the other nodes first.
static NEXT_NODE: AtomicUsize = AtomicUsize::new(0);

/// Opens a connection named after the process's role (shown in the management UI).
///
/// With several nodes in `AMQP_URL`, tries each in turn until one answers. Processes start at
/// different nodes (by process id), which spreads a fleet's connections over the cluster.
pub async fn connect(config: &BrokerConfig, role: &str) -> Result<Connection, BrokerError> {
    let name = format!("warren-{role}-{}", std::process::id());
    let nodes = config.url.nodes();
    let first = (std::process::id() as usize).wrapping_add(NEXT_NODE.load(Ordering::Relaxed));
    let mut last_error = None;
    for offset in 0..nodes.len() {
        let node = &nodes[first.wrapping_add(offset) % nodes.len()];
        let properties = ConnectionProperties::default().with_connection_name(name.clone().into());
        let connect = async {
            match node.expose().parse::<AMQPUri>() {
                Ok(mut uri) => {
                    uri.query.frame_max = Some(FRAME_MAX);
                    Connection::connect_uri(uri, properties).await
                }
                // The URL was checked when the config was read; lapin gives the error.
                Err(_) => Connection::connect(node.expose(), properties).await,
            }
        };
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| BrokerError::ConnectTimeout(node.authority()))
            .and_then(|connected| connected.map_err(BrokerError::from));
        match attempt {
            Ok(connection) => {
                NEXT_NODE.fetch_add(offset + 1, Ordering::Relaxed);
                if nodes.len() > 1 {
                    tracing::info!(role, node = %node.authority(), "connected to broker node");
                }
                return Ok(connection);
            }
            Err(e) => {
                if nodes.len() > 1 {
                    tracing::warn!(role, node = %node.authority(), error = %e, "broker node unreachable; trying the next");
                }
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| BrokerError::ConnectTimeout(config.url.authority())))
}

/// The arguments every quorum queue of the topology shares.
fn quorum_arguments(config: &BrokerConfig) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    // 0 leaves the size to the broker: the way to keep using a queue declared without it.
    if config.quorum_group_size > 0 {
        args.insert(
            "x-quorum-initial-group-size".into(),
            AMQPValue::LongInt(i32::from(config.quorum_group_size)),
        );
    }
    args
}

/// The arguments of the work queue; declared the same way by everyone.
fn work_queue_arguments(config: &BrokerConfig) -> FieldTable {
    let queue = &config.queue;
    let mut args = quorum_arguments(config);
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(queue.dead_letter_exchange().into()),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    args
}

/// Declares the work queue, the dead-letter exchange and the dead-letter queue.
///
/// A mismatch closes the channel it happened on, so this takes a channel of its own.
pub async fn declare_topology(
    connection: &Connection,
    config: &BrokerConfig,
) -> Result<(), BrokerError> {
    let queue = &config.queue;
    let channel = connection.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let quorum = quorum_arguments(config);
    let result = async {
        channel
            .exchange_declare(
                queue.dead_letter_exchange().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(queue.dead_letter_queue().into(), durable, quorum)
            .await?;
        channel
            .queue_bind(
                queue.dead_letter_queue().into(),
                queue.dead_letter_exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(queue.as_str().into(), durable, work_queue_arguments(config))
            .await?;
        Ok::<(), lapin::Error>(())
    }
    .await;
    match result {
        Ok(()) => {
            let _ = channel.close(200, "topology declared".into()).await;
            Ok(())
        }
        Err(e) if is_precondition_failed(&e) => Err(BrokerError::TopologyMismatch {
            queue: queue.to_string(),
            detail: e.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(
        reply_code(error),
        Some(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}

/// Opens a channel on `connection` and counts the messages ready in `queue` (passive declare).
pub async fn ready_messages(connection: &Connection, queue: &str) -> Result<u32, BrokerError> {
    let channel: Channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let _ = channel.close(200, "done".into()).await;
    Ok(declared.message_count())
}

/// Exponential backoff with jitter for reconnects: 100 ms doubling up to 2 s, so a client is
/// back within about 2.5 s of the broker.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    /// The delay before the next attempt; each call doubles the following one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        // Up to 25 % jitter, so a fleet of workers does not reconnect in lockstep.
        let random = RandomState::new().hash_one(self.next);
        let quarter_ms = u64::try_from(base.as_millis() / 4).unwrap_or(0);
        base + Duration::from_millis(random % (quarter_ms + 1))
    }

    /// Back to the first, short delay after a success.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Where the broker is and which queue to use.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Full broker URL, amqp://user:password@host:port/vhost, or a cluster's nodes' URLs separated
    /// by commas (tried in turn). When unset it is built from the RABBIT_* settings below.
    /// Prefer the environment variable: a flag is visible in `ps`.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Broker host, used when AMQP_URL is unset.
    #[arg(long, env = "RABBIT_HOST", default_value = "127.0.0.1")]
    pub rabbit_host: String,
    /// Broker AMQP port, used when AMQP_URL is unset.
    #[arg(long, env = "RABBIT_PORT", default_value_t = 5672, value_parser = clap::value_parser!(u16).range(1..))]
    pub rabbit_port: u16,
    /// Broker user name, used when AMQP_URL is unset.
    #[arg(long, env = "RABBIT_USERNAME", default_value = "guest")]
    pub rabbit_username: String,
    /// Broker password, used when AMQP_URL is unset. Never logged.
    #[arg(
        long,
        env = "RABBIT_PASSWORD",
        default_value = "guest",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub rabbit_password: String,
    /// Broker virtual host, used when AMQP_URL is unset.
    #[arg(long, env = "RABBIT_VHOST", default_value = "/")]
    pub rabbit_vhost: String,
    /// The work queue (a durable quorum queue; bad messages go to `<queue>.dead`).
    #[arg(long, env = "QUEUE", default_value = "Orders")]
    pub queue: String,
    /// How many broker nodes hold a copy of each quorum queue (x-quorum-initial-group-size); the
    /// broker caps it at the cluster's size, so the default suits one node and three alike.
    /// The broker checks it on every declare: a queue that exists with another value (or none)
    /// is an error; 0 sends none, for queues declared before this setting existed.
    #[arg(long, env = "QUORUM_GROUP_SIZE", default_value_t = BrokerConfig::DEFAULT_QUORUM_GROUP_SIZE,
        value_parser = clap::value_parser!(u8).range(0..=15))]
    pub quorum_group_size: u8,
}

impl BrokerArgs {
    /// The validated broker config.
    pub fn to_config(&self) -> Result<BrokerConfig, ConfigError> {
        let url = match &self.amqp_url {
            Some(raw) => AmqpUrl::parse(raw)?,
            None => AmqpUrl::from_parts(
                &self.rabbit_host,
                self.rabbit_port,
                &self.rabbit_username,
                &self.rabbit_password,
                &self.rabbit_vhost,
            )?,
        };
        Ok(BrokerConfig {
            url,
            queue: QueueName::parse(&self.queue)?,
            quorum_group_size: self.quorum_group_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RabbitMQ's two 530 NOT_ALLOWED replies at connect: the vhost is named when it does not
    /// exist; a vhost the user may not use is said as such.
    #[test]
    fn a_not_allowed_reply_tells_a_missing_vhost_from_a_refused_one() {
        assert_eq!(
            vhost_refusal("NOT_ALLOWED - vhost shop not found", "rabbit:5672"),
            "vhost not found: rabbit:5672 has no virtual host \"shop\" (RABBIT_VHOST or the path of AMQP_URL)"
        );
        assert_eq!(
            vhost_refusal(
                "NOT_ALLOWED - access to vhost 'shop' refused for user 'app'",
                "rabbit:5672"
            ),
            "access refused to the vhost by rabbit:5672: the user has no permission on it"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] <= Duration::from_millis(125));
        assert!(delays[1] >= Duration::from_millis(200));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(2500)));
        assert!(delays[9] >= Duration::from_secs(2));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(125));
    }
}
