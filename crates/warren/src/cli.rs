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
    /// Run the whole system on this machine: a private RabbitMQ and Prometheus, web, workers
    /// scaled by the HPA manifest, a load that scales them up and down, a live view, a report.
    Demo(crate::demo::DemoArgs),
    /// Serve GET /generate: publish a job, answer 200 only once the broker confirmed it.
    Web(WebArgs),
    /// Consume jobs: do the work, ack after it, dead-letter bad messages, drain on SIGTERM.
    Worker(WorkerArgs),
    /// Scale a local pool of workers with the Kubernetes HPA algorithm and an HPA manifest.
    Autoscale(AutoscaleArgs),
    /// Send open-loop load to GET /generate: requests leave on schedule, answered or not.
    Load(crate::load::LoadArgs),
    /// Run a private RabbitMQ node (own name, data dir and free ports) until Ctrl-C.
    Broker(BrokerNodeArgs),
    /// Predict what HPA manifests or KEDA ScaledObjects do to queue wait, workers and cost under
    /// scenario files, with the autoscaler's own engine, in simulated time: a table, a report.
    Simulate(crate::simulate::SimulateArgs),
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

/// How a worker works: shared by `warren worker` and the workers `warren autoscale` starts.
#[derive(Debug, Args)]
pub struct WorkArgs {
    /// How long one job takes, in ms (the seed's 5 s); a job's x-work-ms header overrides it.
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
        })
    }
}

/// Options of `warren autoscale`.
#[derive(Debug, Args)]
pub struct AutoscaleArgs {
    /// The autoscaling/v2 HorizontalPodAutoscaler manifest: the same file the cluster applies,
    /// e.g. deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml.
    #[arg(long, env = "HPA_FILE")]
    pub hpa: PathBuf,
    /// Broker and queue, passed to the workers.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Where the HPA's metrics are read: `broker` (the broker's prometheus plugin, no
    /// Prometheus needed) or `prometheus` (the query prometheus-adapter runs).
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
    /// Run the engine's clock this many times faster than the wall clock (windows and policy
    /// periods pass faster; the sync period is divided too). For demos and tests.
    #[arg(long, env = "SPEED", default_value_t = 1.0)]
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
}

impl AutoscaleArgs {
    /// The validated config; the manifest is read and checked here.
    pub fn to_config(&self) -> Result<crate::autoscale::AutoscaleConfig, ConfigError> {
        let broker = self.broker.to_config()?;
        let (hpa_yaml, _) = crate::autoscale::AutoscaleConfig::check_manifest(&self.hpa)?;
        if !(self.speed.is_finite() && (0.1..=1000.0).contains(&self.speed)) {
            return Err(ConfigError::new("SPEED must be between 0.1 and 1000"));
        }
        if self.sync_period < Duration::from_millis(100) {
            return Err(ConfigError::new("SYNC_PERIOD must be at least 100ms"));
        }
        let source = match self.metric_source.as_str() {
            "prometheus" => crate::metric_source::MetricSource::Prometheus {
                url: http_url("PROMETHEUS_URL", &self.prometheus_url)?,
            },
            _ => crate::metric_source::MetricSource::Broker {
                endpoint: http_url("RABBIT_PROMETHEUS_URL", &self.rabbit_prometheus_url)?,
            },
        };
        let exe = std::env::current_exe().map_err(|e| {
            ConfigError::new(format!(
                "cannot find the warren executable to start workers: {e}"
            ))
        })?;
        let env = vec![
            ("AMQP_URL".to_owned(), broker.url.expose().to_owned()),
            ("QUEUE".to_owned(), broker.queue.to_string()),
            ("WORK_MS".to_owned(), self.work.work_ms.to_string()),
            ("PREFETCH".to_owned(), self.work.prefetch.to_string()),
            ("GRACE_MS".to_owned(), self.work.grace_ms.to_string()),
        ];
        Ok(crate::autoscale::AutoscaleConfig {
            hpa_path: self.hpa.clone(),
            hpa_yaml,
            worker: crate::pool::WorkerSpec {
                exe,
                env,
                grace: Duration::from_millis(self.work.grace_ms),
                log_dir: self.worker_log_dir.clone(),
                file_sd: self.prometheus_file_sd.clone(),
            },
            source,
            sync_period: self.sync_period,
            speed: self.speed,
            metrics_listen: SocketAddr::new(self.metrics_bind, self.metrics_port),
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
