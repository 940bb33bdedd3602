//! `warren-bench`: what the broker itself can do, to hold warren's figures against.
//!
//! - `publish`: the broker's ceiling for persistent, confirmed publishes to the work queue,
//!   declared exactly as warren declares it ([`warren::pipeline::broker::declare_topology`]), with the
//!   message warren sends ([`warren::pipeline::job::message_properties`]): several connections, each
//!   with a window of unconfirmed messages. With `--count` it fills a queue instead.
//! - `consume`: the ceiling of a raw consumer (consume and ack one by one, with a prefetch),
//!   to hold `warren worker` against.
//! - `ready`: how many messages are ready in the queue.
//! - `delete`: deletes the queue and its dead-letter queue and exchange.
//!
//! Every command prints one `key=value` line on stdout for `bench/run` to read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Confirmation, Connection};
use warren::config::{parse_duration, AmqpUrl, BrokerConfig, QueueName};
use warren::pipeline::job::{message_properties, now_ms, JobIdGenerator};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "warren-bench",
    about = "The broker's own ceilings, for warren's benchmarks"
)]
struct Cli {
    /// What to measure.
    #[command(subcommand)]
    command: Command,
}

/// The broker and the queue every command works on.
#[derive(Debug, Args)]
struct Target {
    /// The broker's URL.
    #[arg(long, env = "AMQP_URL")]
    url: String,
    /// The work queue (declared as warren declares it).
    #[arg(long, env = "QUEUE", default_value = "bench")]
    queue: String,
}

impl Target {
    fn config(&self) -> anyhow::Result<BrokerConfig> {
        Ok(BrokerConfig::new(
            AmqpUrl::parse(&self.url).map_err(|e| anyhow::anyhow!("{}", e.0))?,
            QueueName::parse(&self.queue).map_err(|e| anyhow::anyhow!("{}", e.0))?,
        ))
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Persistent, confirmed publishes from several connections, for a time or a count.
    Publish {
        /// Broker and queue.
        #[command(flatten)]
        target: Target,
        /// Connections.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Confirm-mode channels on each connection.
        #[arg(long, default_value_t = 1)]
        channels: usize,
        /// Unconfirmed messages each channel keeps in flight.
        #[arg(long, default_value_t = 128)]
        window: usize,
        /// How long to publish (e.g. 10s).
        #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
        duration: Option<Duration>,
        /// Publish this many messages, then stop (to fill a queue).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Consume and ack one by one with a prefetch until `count` messages were acked.
    Consume {
        /// Broker and queue.
        #[command(flatten)]
        target: Target,
        /// The prefetch (basic.qos).
        #[arg(long, default_value_t = 256)]
        prefetch: u16,
        /// Stop after this many acks.
        #[arg(long)]
        count: u64,
        /// Give up when no message came for this long.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        idle_timeout: Duration,
    },
    /// Prints the number of ready messages in the queue.
    Ready {
        /// Broker and queue.
        #[command(flatten)]
        target: Target,
    },
    /// Deletes the queue, its dead-letter queue and its dead-letter exchange.
    Delete {
        /// Broker and queue.
        #[command(flatten)]
        target: Target,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Publish {
            target,
            connections,
            channels,
            window,
            duration,
            count,
        } => {
            let budget = match (duration, count) {
                (Some(d), None) => Budget::Time(d),
                (None, Some(n)) => Budget::Count(n),
                _ => bail!("give --duration or --count"),
            };
            let shape = Shape {
                connections: connections.max(1),
                channels: channels.max(1),
                window: window.max(1),
            };
            publish(&target.config()?, shape, budget).await
        }
        Command::Consume {
            target,
            prefetch,
            count,
            idle_timeout,
        } => consume(&target.config()?, prefetch, count, idle_timeout).await,
        Command::Ready { target } => {
            let config = target.config()?;
            let connection = warren::pipeline::broker::connect(&config, "bench").await?;
            let ready =
                warren::pipeline::broker::ready_messages(&connection, config.queue.as_str())
                    .await?;
            println!("ready={ready}");
            Ok(())
        }
        Command::Delete { target } => delete(&target.config()?).await,
    }
}

/// When a publish run ends.
#[derive(Clone, Copy, Debug)]
enum Budget {
    /// At this time after the start (outstanding confirms are still awaited).
    Time(Duration),
    /// After this many messages in all.
    Count(u64),
}

/// How publishes are spread: connections, channels on each, unconfirmed messages on each.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// Connections.
    connections: usize,
    /// Confirm-mode channels per connection.
    channels: usize,
    /// Unconfirmed messages per channel.
    window: usize,
}

async fn publish(config: &BrokerConfig, shape: Shape, budget: Budget) -> anyhow::Result<()> {
    let Shape {
        connections,
        channels,
        window,
    } = shape;
    let setup = warren::pipeline::broker::connect(config, "bench-setup").await?;
    warren::pipeline::broker::declare_topology(&setup, config).await?;
    let mut connections_open = Vec::with_capacity(connections);
    let mut links = Vec::with_capacity(connections * channels);
    for _ in 0..connections {
        let connection = warren::pipeline::broker::connect(config, "bench-publish").await?;
        for _ in 0..channels {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            links.push(channel);
        }
        connections_open.push(connection);
    }
    let issued = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(JobIdGenerator::new());
    let start = Instant::now();
    let deadline = match budget {
        Budget::Time(d) => Some(start + d),
        Budget::Count(_) => None,
    };
    let limit = match budget {
        Budget::Count(n) => n,
        Budget::Time(_) => u64::MAX,
    };
    let mut tasks = Vec::with_capacity(links.len());
    for channel in &links {
        let channel = channel.clone();
        let queue = config.queue.as_str().to_owned();
        let issued = issued.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut in_flight = FuturesUnordered::new();
            let (mut acked, mut failed) = (0u64, 0u64);
            loop {
                let open = deadline.is_none_or(|d| Instant::now() < d);
                while open && in_flight.len() < window {
                    if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                        break;
                    }
                    let id = ids.next_id();
                    let confirm = channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions {
                                mandatory: true,
                                ..BasicPublishOptions::default()
                            },
                            id.as_str().as_bytes(),
                            message_properties(&id, now_ms()),
                        )
                        .await?;
                    in_flight.push(confirm);
                }
                match in_flight.next().await {
                    None => break,
                    Some(Ok(Confirmation::Ack(None))) => acked += 1,
                    Some(_) => failed += 1,
                }
            }
            Ok::<_, lapin::Error>((acked, failed))
        }));
    }
    let (mut acked, mut failed) = (0u64, 0u64);
    for task in tasks {
        let (a, f) = task.await.context("publisher task")??;
        acked += a;
        failed += f;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(links);
    for connection in connections_open {
        let _ = connection.close(200, "done".into()).await;
    }
    let _ = setup.close(200, "done".into()).await;
    println!(
        "publish confirmed={acked} failed={failed} secs={secs:.3} rate={:.0} connections={connections} channels={channels} window={window}",
        acked as f64 / secs
    );
    if failed > 0 {
        bail!("{failed} publishes were not confirmed");
    }
    Ok(())
}

async fn consume(
    config: &BrokerConfig,
    prefetch: u16,
    count: u64,
    idle_timeout: Duration,
) -> anyhow::Result<()> {
    let connection: Connection = warren::pipeline::broker::connect(config, "bench-consume").await?;
    warren::pipeline::broker::declare_topology(&connection, config).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            "warren-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // Acks are sent without waiting for one another (as `warren worker`'s per-job tasks do),
    // so the consumer is bounded by the broker and the prefetch, not by one ack at a time.
    let mut first = None;
    let (mut received, mut acked) = (0u64, 0u64);
    let mut acks = FuturesUnordered::new();
    while acked < count {
        tokio::select! {
            Some(result) = acks.next(), if !acks.is_empty() => {
                result?;
                acked += 1;
            }
            next = tokio::time::timeout(idle_timeout, consumer.next()), if received < count => {
                let delivery = match next {
                    Ok(Some(delivery)) => delivery?,
                    Ok(None) => bail!("the consumer was cancelled after {acked} acks"),
                    Err(_) => bail!("no message for {idle_timeout:?} after {acked} acks"),
                };
                first.get_or_insert_with(Instant::now);
                received += 1;
                acks.push(async move { delivery.acker.ack(BasicAckOptions::default()).await });
            }
        }
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let _ = connection.close(200, "done".into()).await;
    println!(
        "consume acked={acked} secs={secs:.3} rate={:.0} prefetch={prefetch}",
        acked as f64 / secs.max(1e-9)
    );
    Ok(())
}

async fn delete(config: &BrokerConfig) -> anyhow::Result<()> {
    let connection = warren::pipeline::broker::connect(config, "bench-delete").await?;
    let channel = connection.create_channel().await?;
    for queue in [
        config.queue.as_str().to_owned(),
        config.queue.dead_letter_queue(),
    ] {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    channel
        .exchange_delete(
            config.queue.dead_letter_exchange().as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await?;
    let _ = connection.close(200, "done".into()).await;
    println!("deleted={}", config.queue);
    Ok(())
}
