//! The command line: every setting is a flag and an environment variable, parsed and checked
//! here, once, into the typed configs of `config.rs`, `web.rs` and `worker.rs`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{AmqpUrl, BrokerConfig, ConfigError, QueueName};
use crate::job::MAX_WORK_MS;
use crate::publisher::PublisherOptions;
use crate::web::WebConfig;
use crate::worker::WorkerConfig;

/// warren: queue-driven autoscaling for RabbitMQ workers.
///
/// `web` turns GET /generate into confirmed jobs on a RabbitMQ queue, `worker` does them, and
/// `broker` runs a private RabbitMQ node for local use. Every option can also be set through the
/// environment variable shown beside it.
#[derive(Debug, Parser)]
#[command(
    name = "warren",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log level: error, warn, info, debug or trace. RUST_LOG, when set, overrides it with
    /// per-module directives.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true,
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GET /generate: publish a job, answer 200 only once the broker confirmed it.
    Web(WebArgs),
    /// Consume jobs: do the work, ack after it, dead-letter bad messages, drain on SIGTERM.
    Worker(WorkerArgs),
    /// Run a private RabbitMQ node (own name, data dir and free ports) until Ctrl-C.
    Broker(BrokerNodeArgs),
}

/// Where the broker is and which queue to use.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Full broker URL, amqp://user:password@host:port/vhost. When unset it is built from the
    /// RABBIT_* settings below. Prefer the environment variable: a flag is visible in `ps`.
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
        })
    }
}

/// Options of `warren web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Broker and queue.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// HTTP port (0 picks a free port and logs it).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// How long /generate waits for the broker's confirm before answering 503, in ms.
    #[arg(long, env = "CONFIRM_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub confirm_timeout_ms: u64,
    /// Longest time any request may take before it is answered 503, in ms.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=300_000))]
    pub request_timeout_ms: u64,
    /// Most requests served at once; beyond it requests are answered 503 at once.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_concurrent_requests: u64,
    /// AMQP channels (in confirm mode) that publishes are spread over.
    #[arg(long, env = "PUBLISH_CHANNELS", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub publish_channels: u64,
}

impl WebArgs {
    /// The validated config.
    pub fn to_config(&self) -> Result<WebConfig, ConfigError> {
        if self.confirm_timeout_ms >= self.request_timeout_ms {
            return Err(ConfigError::new(
                "CONFIRM_TIMEOUT_MS must be shorter than REQUEST_TIMEOUT_MS",
            ));
        }
        Ok(WebConfig {
            listen: SocketAddr::new(self.bind, self.port),
            broker: self.broker.to_config()?,
            publisher: PublisherOptions {
                confirm_timeout: Duration::from_millis(self.confirm_timeout_ms),
                channels: usize::try_from(self.publish_channels).unwrap_or(4),
            },
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_concurrent_requests: usize::try_from(self.max_concurrent_requests).unwrap_or(4096),
        })
    }
}

/// Options of `warren worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Broker and queue.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// How long one job takes, in ms (the seed's 5 s); a job's x-work-ms header overrides it.
    #[arg(long, env = "WORK_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(0..=MAX_WORK_MS))]
    pub work_ms: u64,
    /// How many jobs run at once (the AMQP prefetch count).
    #[arg(long, env = "PREFETCH", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub prefetch: u16,
    /// Port of /metrics, /healthz and /readyz (0 picks a free port and logs it).
    #[arg(long, env = "METRICS_PORT", default_value_t = 9100)]
    pub metrics_port: u16,
    /// Address the metrics port listens on.
    #[arg(long, env = "METRICS_BIND", default_value = "0.0.0.0")]
    pub metrics_bind: IpAddr,
    /// After SIGTERM, how long jobs in flight may take to finish, in ms; then the worker exits
    /// without acking them and the broker requeues them.
    #[arg(long, env = "GRACE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub grace_ms: u64,
}

impl WorkerArgs {
    /// The validated config.
    pub fn to_config(&self) -> Result<WorkerConfig, ConfigError> {
        Ok(WorkerConfig {
            broker: self.broker.to_config()?,
            work: Duration::from_millis(self.work_ms),
            prefetch: self.prefetch,
            metrics_listen: SocketAddr::new(self.metrics_bind, self.metrics_port),
            grace: Duration::from_millis(self.grace_ms),
        })
    }
}

/// Options of `warren broker`.
#[derive(Debug, Args)]
pub struct BrokerNodeArgs {
    /// Data directory of the node; by default a fresh temporary one, removed at exit.
    #[arg(long, env = "WARREN_BROKER_DIR")]
    pub dir: Option<PathBuf>,
    /// Also write AMQP_URL, RABBIT_PROMETHEUS_URL and RABBIT_MANAGEMENT_URL to this file, once
    /// the node is up (for scripts).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
}

/// Parses the command line; on a bad value prints one line and exits with code 2.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
                _ => {
                    let rendered = e.render().to_string();
                    let line = rendered.lines().next().unwrap_or("invalid arguments");
                    let line = line.strip_prefix("error: ").unwrap_or(line);
                    exit_config_error(&ConfigError::new(line));
                }
            }
        }
    }
}

/// Prints a configuration error as one line on stderr and exits with code 2.
pub fn exit_config_error(error: &ConfigError) -> ! {
    eprintln!("warren: {error}");
    std::process::exit(2)
}
