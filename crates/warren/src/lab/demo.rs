//! `warren demo`: the whole system on one machine, one command.
//!
//! Starts a private RabbitMQ node and (when installed) a private Prometheus, `warren web`, and
//! `warren autoscale` with a shipped HPA manifest (the capacity overlay's by default,
//! `--policy queue-length` for the backward-compatible one); drives a load that scales the workers up
//! and, once it stops, back down; shows it live ([`crate::lab::dashboard`]); and writes a report
//! ([`crate::report`]). Everything it started is stopped at the end, also on Ctrl-C or failure:
//! the broker and Prometheus die with this process (see their modules), the workers drain.
//!
//! `speed` divides every time by K: the workers' work time, the autoscaler's clock (so the
//! manifest's sync period, windows and policy periods) and the load pattern. What the demo
//! shows and reports is in its own time, before `speed` (times multiplied by K, rates divided
//! by K), so a run at any speed reads like the same run at 1x, and the speed is stated. Its
//! Prometheus gets the rules rendered for the speed ([`crate::lab::rules`]) for the same reason.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerConfig, ConfigError, QueueName};
use crate::lab::dashboard::{Dashboard, Decision, MetricReading, View};
use crate::lab::ledger::{quantile, Ledger};
use crate::lab::load::{LoadConfig, LoadError, LoadStats, LoadSummary, Pattern};
use crate::lab::prometheus_node::{PrometheusNode, ScrapeTargets};
use crate::lab::rabbit_node::{DirOnDrop, RabbitNode};
use crate::pipeline::web::WebConfig;
use crate::report::{DecisionEntry, RunInfo, Sample, Totals, WaitSummary};
use crate::scaling::autoscale::{
    read_manifest, AutoscaleConfig, AutoscaleEvent, AutoscaleSummary, ReleaseArgs,
    BUILTIN_CAPACITY_HPA, BUILTIN_CAPACITY_HPA_NAME,
};
use crate::scaling::metric_source::{parse_samples, MetricSource};
use crate::scaling::pool::{WorkerCommand, WorkerSpec, KILL_MARGIN};

/// Writes the recording rules (compiled in as the default HPA is, so the demo's Prometheus has
/// the capacity metric from any directory and from an installed binary), rendered for `speed`,
/// into the run's directory for the private Prometheus; returns its path.
fn write_rules(work_dir: &std::path::Path, text: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(work_dir)?;
    let path = work_dir.join("rules.yml");
    std::fs::write(&path, text)?;
    // Prometheus reads a relative path from its config file's directory.
    std::fs::canonicalize(path)
}

/// Options of `warren demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run K times faster than real time (0.1 to 100): the work time, the autoscaler's clock
    /// (sync period, windows, policy periods) and the load pattern are each divided by K. What
    /// the demo shows and reports stays in its own time. 10 runs the demo in under a minute.
    #[arg(long, env = "DEMO_SPEED", default_value = "1", value_name = "K",
          value_parser = crate::config::parse_speed, allow_negative_numbers = true)]
    pub speed: f64,
    /// Length of the load (before speed), e.g. 75s. After it the demo waits for the queue to
    /// empty and the workers to scale back down.
    #[arg(long, env = "DEMO_DURATION", default_value = "75s", value_parser = crate::config::parse_duration)]
    pub duration: Duration,
    /// Peak arrival rate of the load, jobs per second (before speed).
    #[arg(long, env = "DEMO_RATE", default_value_t = 2.0)]
    pub rate: f64,
    /// The HPA manifest; takes the place of --policy.
    #[arg(long, env = "HPA_FILE")]
    pub hpa: Option<PathBuf>,
    /// Which built-in HPA runs without --hpa, each the very file a cluster overlay applies:
    /// `capacity` (the prometheus-adapter-capacity overlay: `warren_workers_needed`, 1 per
    /// worker; it waits least in the scenario suite, docs/scaling.md) or `queue-length` (the
    /// prometheus-adapter overlay: 5 ready messages per worker, scaling on the queue's length as
    /// the HPA of the application warren grew from did).
    #[arg(long, env = "DEMO_POLICY", default_value = "capacity", value_parser = ["capacity", "queue-length"])]
    pub policy: String,
    /// The Kubernetes release the autoscaler follows.
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Work time per job in ms (before speed): a sleep standing in for real processing.
    #[arg(long, env = "WORK_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub work_ms: u64,
    /// Where the HPA's metric is read: `broker` (the capacity metric computed from the broker's
    /// and the workers' metrics) or `prometheus` (the adapter's query on the recording rule).
    #[arg(long, env = "METRIC_SOURCE", default_value = "broker", value_parser = ["broker", "prometheus"])]
    pub metric_source: String,
    /// Directory for the report (default: reports/demo-<UTC time>).
    #[arg(long, env = "REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
    /// Print plain lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Longest wait after the load for the queue to empty and the workers to scale down (before
    /// speed).
    #[arg(long, env = "DEMO_COOLDOWN", default_value = "300s", value_parser = crate::config::parse_duration)]
    pub cooldown: Duration,
    /// Print the load's pattern for --rate and --duration as JSON `[secs, rate]` points (a
    /// scenario's `arrivals.points`, linear between them) and exit: nothing is started.
    #[arg(long)]
    pub print_pattern: bool,
    /// Keep the private Prometheus' TSDB in DIR (a new or empty directory) after the run, with
    /// `warren-run.json` (the run's UTC range, queue and vhost) beside its blocks, for `warren
    /// capture`; the demo prints how to serve it again. Needs Prometheus installed.
    #[arg(long, value_name = "DIR")]
    pub keep_prometheus: Option<PathBuf>,
}

/// Settings of `warren demo`, validated.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Where the HPA manifest came from: its path, or the built-in one.
    pub hpa_origin: String,
    /// Its text.
    pub hpa_yaml: String,
    /// The Kubernetes release line the autoscaler follows.
    pub release: String,
    /// Its controller settings.
    pub controller: warren_hpa::ControllerConfig,
    /// The queue the manifest's metric selects.
    pub queue: QueueName,
    /// Speed factor.
    pub speed: f64,
    /// The load (pattern time).
    pub pattern: Pattern,
    /// The load in words, for the report.
    pub pattern_description: String,
    /// Work time per job (before speed).
    pub work: Duration,
    /// Read the metric from Prometheus rather than the broker.
    pub via_prometheus: bool,
    /// Report directory.
    pub report_dir: PathBuf,
    /// Ratatui screen (true) or plain lines.
    pub interactive: bool,
    /// Longest wait for the scale-down after the load (before speed).
    pub cooldown: Duration,
    /// Where to keep Prometheus' TSDB after the run, if anywhere.
    pub keep_prometheus: Option<PathBuf>,
}

impl DemoArgs {
    /// The validated config.
    pub fn to_config(&self) -> Result<DemoConfig, ConfigError> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1000.0) {
            return Err(ConfigError::new(
                "DEMO_RATE must be above 0 and at most 1000",
            ));
        }
        if self.duration < Duration::from_secs(5) {
            return Err(ConfigError::new("DEMO_DURATION must be at least 5s"));
        }
        if let Some(dir) = &self.keep_prometheus {
            check_keep_dir(dir)?;
        }
        let controller = self.release.controller()?;
        let (hpa_origin, hpa_yaml) = match (&self.hpa, self.policy.as_str()) {
            (None, "capacity") => (
                BUILTIN_CAPACITY_HPA_NAME.to_owned(),
                BUILTIN_CAPACITY_HPA.to_owned(),
            ),
            (hpa, _) => read_manifest(hpa.as_deref())?,
        };
        let queries = AutoscaleConfig::check_manifest(&hpa_origin, &hpa_yaml, controller)?;
        let queue = queries
            .iter()
            .find_map(|q| q.matchers.get("queue"))
            .map_or_else(|| QueueName::parse("Orders"), |q| QueueName::parse(q))?;
        Ok(DemoConfig {
            hpa_origin,
            hpa_yaml,
            release: self.release.kubernetes_release.clone(),
            controller,
            queue,
            speed: self.speed,
            pattern: demo_pattern(self.rate, self.duration)?,
            pattern_description: format!(
                "{:.2}/s (30% of the peak) for {:.0} s, then the peak {}/s until {:.0} s; then nothing until the pool is back at its minimum",
                self.rate * 0.3,
                self.duration.as_secs_f64() / 5.0,
                self.rate,
                self.duration.as_secs_f64()
            ),
            work: Duration::from_millis(self.work_ms),
            via_prometheus: self.metric_source == "prometheus",
            report_dir: self
                .report_dir
                .clone()
                .unwrap_or_else(|| crate::report::default_dir("demo")),
            interactive: !self.plain && std::io::IsTerminal::is_terminal(&std::io::stdout()),
            cooldown: self.cooldown,
            keep_prometheus: self.keep_prometheus.clone(),
        })
    }
}

/// `--keep-prometheus DIR` must be a directory Prometheus can own: new, or empty; and
/// Prometheus must be installed to fill it.
fn check_keep_dir(dir: &std::path::Path) -> Result<(), ConfigError> {
    if crate::lab::prometheus_node::find_prometheus().is_none() {
        return Err(ConfigError::new(
            "--keep-prometheus needs Prometheus installed (scripts/setup installs it)",
        ));
    }
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => Err(ConfigError::new(format!(
            "--keep-prometheus {} is not empty; give a new or empty directory",
            dir.display()
        ))),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ConfigError::new(format!(
            "--keep-prometheus {}: {e}",
            dir.display()
        ))),
    }
}

/// What `--keep-prometheus` leaves beside the TSDB: the run's range and queue, in wall time,
/// for `warren capture --from --to --queue --vhost`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptRun {
    /// The start of the run (the autoscaler's and the load's start), RFC 3339, UTC.
    pub from: String,
    /// When Prometheus stopped, RFC 3339, UTC.
    pub to: String,
    /// The demo's queue.
    pub queue: String,
    /// Its vhost.
    pub vhost: String,
    /// The speed the demo ran at: Prometheus' timestamps are wall time, the demo's report is
    /// in its own time (wall time x speed).
    pub speed: f64,
    /// Jobs `/generate` accepted during the run.
    pub accepted: u64,
}

/// The file [`KeptRun`] is written to in the kept directory.
pub const KEPT_RUN_FILE: &str = "warren-run.json";

/// The demo's load as `[secs, rate]` points, linear between them: a fifth of the time at 30 %
/// of the peak, then the peak; then nothing. `warren demo --print-pattern` prints them, for
/// `bench/fidelity`'s scenario.
pub fn demo_points(peak: f64, length: Duration) -> Vec<[f64; 2]> {
    let t = length.as_secs_f64();
    let warm = t / 5.0;
    let low = peak * 0.3;
    vec![[0.0, low], [warm, low], [warm, peak], [t, peak]]
}

/// The demo's load as a pattern: [`demo_points`].
pub fn demo_pattern(peak: f64, length: Duration) -> Result<Pattern, ConfigError> {
    let csv: String = demo_points(peak, length)
        .iter()
        .map(|[t, rate]| format!("{t},{rate}\n"))
        .collect();
    Pattern::parse_csv(&csv, None).map_err(|e| ConfigError::new(e.to_string()))
}

/// What `warren demo --print-pattern` prints: [`demo_points`] as JSON.
pub fn pattern_json(peak: f64, length: Duration) -> String {
    // Finite numbers (checked by `to_config`) always serialize.
    serde_json::to_string(&demo_points(peak, length)).unwrap_or_default()
}

/// Runs the demo to its end (or until `shutdown`), then stops everything and writes the report:
/// its four phases, [`start`], [`drive`], [`Started::stop`] and [`report`].
pub async fn run(config: DemoConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some((mut started, setup)) = start(&config, &shutdown).await? else {
        return Ok(());
    };
    let mut drove = drive(&config, &setup, &mut started, &shutdown).await?;
    eprintln!("warren demo: {}; stopping the load, the workers (they drain), web, Prometheus and RabbitMQ...", drove.outcome);
    let stopped = started.stop(&mut drove).await?;
    report(&config, &setup, drove, stopped)
}

/// What the demo started and stops at the end.
struct Started {
    /// The private RabbitMQ node.
    node: RabbitNode,
    /// The demo's queue on it.
    broker: BrokerConfig,
    /// The node's and Prometheus's files, removed at the end.
    work_dir: PathBuf,
    /// The private Prometheus, when it is installed and started.
    prometheus: Option<PrometheusNode>,
    /// Where its TSDB is kept after the run (`--keep-prometheus`).
    keep_prometheus: Option<PathBuf>,
    /// The wall-clock start of the run, for the kept TSDB's range.
    started_at: jiff::Timestamp,
    /// The demo's speed factor.
    speed: f64,
    /// `warren web`, in this process, and what stops it.
    web: JoinHandle<anyhow::Result<()>>,
    web_stop: CancellationToken,
    /// `warren autoscale`, in this process (it starts the workers), and what stops it.
    autoscale: JoinHandle<anyhow::Result<AutoscaleSummary>>,
    autoscale_stop: CancellationToken,
    /// The autoscaler's decisions as it takes them.
    events: mpsc::UnboundedReceiver<AutoscaleEvent>,
    /// The load, and what stops it.
    load: JoinHandle<Result<LoadSummary, LoadError>>,
    load_stop: CancellationToken,
    /// The load's live counters.
    stats: Arc<LoadStats>,
    /// The id of each job `/generate` accepted.
    accepted: mpsc::UnboundedReceiver<String>,
}

/// What the run is, as the live view and the report state it.
struct Setup {
    /// The autoscaler's engine, as built from the manifest (its spec and targets).
    engine: warren_hpa::Autoscaler,
    /// The manifest's minReplicas and maxReplicas.
    min_replicas: u32,
    max_replicas: u32,
    /// Each metric's name and target, in the manifest's order.
    targets: Vec<(String, f64)>,
    /// Where the autoscaler reads its metric, in words.
    source_description: String,
    /// The rules rendered for the speed, when the metric is read through them.
    rules_description: Option<String>,
    /// The start of the run: t=0 of every chart.
    started: Instant,
    /// Where the workers write their logs (the ledger reads them).
    worker_logs: PathBuf,
    /// `warren web`'s address.
    web_url: String,
    /// The autoscaler's `/metrics` (the pool's counts).
    pool_metrics: String,
    /// The private node's management UI and its queue metrics.
    management_url: String,
    queue_metrics: String,
    /// Prometheus's address, when it runs.
    prometheus_url: Option<String>,
}

/// What driving the run saw.
struct Drove {
    /// How the run ended, in words.
    outcome: &'static str,
    /// One sample a tick, in the demo's own time.
    samples: Vec<Sample>,
    /// The autoscaler's decisions.
    decisions: Vec<DecisionEntry>,
    /// Job outcomes read from the workers' logs.
    ledger: Ledger,
    /// The ids of the jobs `/generate` accepted.
    accepted: Vec<String>,
    /// Every processed job's queue wait (ms, wall time), for the run's overall figures.
    all_waits: Vec<u64>,
}

/// What stopping everything left to report.
struct Stopped {
    /// The load's own summary.
    load: Result<Result<LoadSummary, LoadError>, tokio::task::JoinError>,
    /// The autoscaler's summary.
    autoscale: AutoscaleSummary,
    /// The ids still in the queue once the workers drained.
    queued: std::collections::HashSet<String>,
    /// The kept Prometheus TSDB and its run's range (`--keep-prometheus`).
    kept: Option<(PathBuf, KeptRun)>,
}

/// Starts the private node, web, Prometheus (when installed), the autoscaler and the load.
/// `None` when `shutdown` came while the node was starting.
async fn start(
    config: &DemoConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(Started, Setup)>> {
    let speed = config.speed;
    std::fs::create_dir_all(&config.report_dir)?;
    let work_dir = std::env::temp_dir().join(format!("warren-demo-{}", std::process::id()));
    let worker_logs = config.report_dir.join("workers");
    let _ = std::fs::remove_dir_all(&worker_logs);
    // The engine's state, saved after each decision; a new demo starts its own.
    let state_file = config.report_dir.join("autoscaler-state.json");
    let _ = std::fs::remove_file(&state_file);
    eprintln!("warren demo: starting a private RabbitMQ node (about 10 s)...");
    let node = tokio::select! {
        node = RabbitNode::start(work_dir.join("rabbitmq"), DirOnDrop::Remove) => node?,
        () = shutdown.cancelled() => return Ok(None),
    };
    let broker = BrokerConfig::new(node.amqp_url(), config.queue.clone());
    // warren web, in this process.
    let web_port = crate::lab::ports::free_port()?;
    let web_stop = CancellationToken::new();
    let web_config = WebConfig {
        listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), web_port),
        broker: broker.clone(),
        publisher: crate::pipeline::publisher::PublisherOptions::default(),
        request_timeout: Duration::from_secs(10),
        max_concurrent_requests: 4096,
        idempotency_window: Duration::from_secs(600),
        idempotency_max_jobs: 100_000,
    };
    let web = tokio::spawn(crate::pipeline::web::run(web_config, web_stop.clone()));

    // Prometheus, when installed.
    let autoscaler_port = crate::lab::ports::free_port()?;
    let file_sd = work_dir.join("workers.json");
    let mut prometheus = None;
    let (rules_text, rules_scaled) = crate::lab::rules::render(crate::lab::rules::RULES, speed);
    if let Some(executable) = crate::lab::prometheus_node::find_prometheus() {
        let targets = ScrapeTargets {
            rabbitmq: format!("127.0.0.1:{}", node.ports().prometheus),
            web: format!("127.0.0.1:{web_port}"),
            autoscaler: format!("127.0.0.1:{autoscaler_port}"),
            workers_file_sd: file_sd.clone(),
            rule_files: write_rules(&work_dir, &rules_text)
                .map_err(|e| tracing::warn!(error = %e, "cannot write the recording rules; Prometheus runs without them"))
                .into_iter()
                .collect(),
            interval: Duration::from_secs(2)
                .div_f64(speed)
                .max(Duration::from_millis(250)),
        };
        let dir = work_dir.join("prometheus");
        let storage = config
            .keep_prometheus
            .clone()
            .unwrap_or_else(|| dir.join("data"));
        match PrometheusNode::start_with_storage(&executable, &dir, &storage, &targets).await {
            Ok(p) => prometheus = Some(p),
            // Asked to keep its data, the run is worth nothing without it.
            Err(e) if config.keep_prometheus.is_some() => {
                return Err(e.context("Prometheus did not start (--keep-prometheus needs it)"))
            }
            Err(e) => {
                eprintln!("warren demo: Prometheus did not start, going on without it: {e:#}")
            }
        }
    } else {
        eprintln!("warren demo: Prometheus is not installed (scripts/setup installs it); going on without it");
    }
    // The rules matter to the report only when the metric is read through them.
    let rules_description = prometheus
        .as_ref()
        .filter(|_| config.via_prometheus)
        .map(|_| crate::lab::rules::describe(speed, &rules_scaled));
    let source = match (&prometheus, config.via_prometheus) {
        (Some(p), true) => MetricSource::Prometheus { url: p.url() },
        _ => MetricSource::Broker {
            endpoint: node.prometheus_url(),
        },
    };
    let source_description = match (&source, config.via_prometheus) {
        (MetricSource::Prometheus { .. }, _) => {
            "Prometheus, with prometheus-adapter's query".to_owned()
        }
        (MetricSource::Broker { .. }, false) => {
            "the broker's prometheus plugin (no Prometheus in between)".to_owned()
        }
        (MetricSource::Broker { .. }, true) => {
            "the broker's prometheus plugin: Prometheus was asked for but did not run".to_owned()
        }
    };

    // The autoscaler, in this process; it starts the workers.
    let work = config.work.div_f64(speed);
    let grace = (work * 3).max(Duration::from_secs(5));
    let autoscale_config = AutoscaleConfig {
        hpa_origin: config.hpa_origin.clone(),
        hpa_yaml: config.hpa_yaml.clone(),
        release: config.release.clone(),
        controller: config.controller,
        worker: WorkerSpec {
            command: WorkerCommand::Warren {
                exe: std::env::current_exe()?,
                env: vec![
                    ("WORK_MS".into(), work.as_millis().to_string()),
                    ("PREFETCH".into(), "1".into()),
                    ("GRACE_MS".into(), grace.as_millis().to_string()),
                    ("LOG_LEVEL".into(), "info".into()),
                ],
            },
            broker: broker.clone(),
            stop_timeout: grace + KILL_MARGIN,
            log_dir: Some(worker_logs.clone()),
            file_sd: Some(file_sd),
        },
        source,
        sync_period: Duration::from_secs(15),
        first_metric_wait: Duration::from_secs(30),
        speed,
        metrics_listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), autoscaler_port),
        state_file: Some(state_file),
        capacity_knobs: warren_policy::capacity::Knobs::default(),
    };
    if let (MetricSource::Prometheus { url }, Some(_)) = (&autoscale_config.source, &prometheus) {
        wait_for_first_scrape(url, &config.queue.to_string()).await;
    }
    let engine = warren_hpa::Autoscaler::from_yaml_with(&config.hpa_yaml, config.controller)?;
    let hpa_spec = engine.hpa().spec.clone();
    let min_replicas = u32::try_from(hpa_spec.min_replicas.unwrap_or(1)).unwrap_or(1);
    let max_replicas = u32::try_from(hpa_spec.max_replicas).unwrap_or(1);
    let targets = metric_targets(&engine);
    let (events_tx, events) = mpsc::unbounded_channel::<AutoscaleEvent>();
    let autoscale_stop = CancellationToken::new();
    // The demo's clock starts with the autoscaler (its first worker) and the load, once the
    // broker and web are up: t=0 on every chart is the start of the run, not of RabbitMQ.
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    let autoscale = tokio::spawn(crate::scaling::autoscale::run_with(
        autoscale_config,
        autoscale_stop.clone(),
        Some(events_tx),
    ));

    // The load.
    let web_url = format!("http://127.0.0.1:{web_port}");
    let mut load_config = LoadConfig::new(
        crate::lab::load::generate_url(&web_url)?,
        config.pattern.clone(),
    );
    load_config.speed = speed;
    let stats = Arc::new(LoadStats::default());
    let (accepted_tx, accepted) = mpsc::unbounded_channel::<String>();
    let load_stop = CancellationToken::new();
    let load = tokio::spawn(crate::lab::load::run_with(
        load_config,
        load_stop.clone(),
        stats.clone(),
        Some(accepted_tx),
    ));

    eprintln!(
        "warren demo: web {web_url}  RabbitMQ management {}/ (guest/guest){}  report {}",
        node.management_url(),
        prometheus
            .as_ref()
            .map_or(String::new(), |p| format!("  Prometheus {}", p.url())),
        config.report_dir.display()
    );

    let setup = Setup {
        engine,
        min_replicas,
        max_replicas,
        targets,
        source_description,
        rules_description,
        started,
        worker_logs,
        web_url,
        pool_metrics: format!("http://127.0.0.1:{autoscaler_port}/metrics"),
        management_url: node.management_url(),
        queue_metrics: format!(
            "{}/metrics/detailed?family=queue_coarse_metrics",
            node.prometheus_url()
        ),
        prometheus_url: prometheus.as_ref().map(PrometheusNode::url),
    };
    let started = Started {
        node,
        broker,
        work_dir,
        prometheus,
        keep_prometheus: config.keep_prometheus.clone(),
        started_at,
        speed,
        web,
        web_stop,
        autoscale,
        autoscale_stop,
        events,
        load,
        load_stop,
        stats,
        accepted,
    };
    Ok(Some((started, setup)))
}

/// Drives the run: each tick reads the queue, the pool, the load and the workers' logs, takes
/// one sample and shows it, until the load is over and the pool is back at its minimum (or the
/// cool-down runs out, or the user stops it).
async fn drive(
    config: &DemoConfig,
    setup: &Setup,
    started: &mut Started,
    shutdown: &CancellationToken,
) -> anyhow::Result<Drove> {
    let speed = config.speed;
    let mut dashboard = Dashboard::start(config.interactive)?;
    let quit = dashboard.quit_token();
    let interval = Duration::from_secs(1)
        .div_f64(speed)
        .clamp(Duration::from_millis(250), Duration::from_secs(1));
    let mut view = View {
        speed,
        history_step: interval.mul_f64(speed),
        min_replicas: setup.min_replicas,
        max_replicas: setup.max_replicas,
        // Until the first decision the pool is at minReplicas, as the autoscaler starts it.
        workers_desired: setup.min_replicas,
        web_url: Some(setup.web_url.clone()),
        prometheus_url: setup.prometheus_url.clone(),
        rabbitmq_url: Some(setup.management_url.clone()),
        report_dir: Some(config.report_dir.clone()),
        ..View::default()
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut ledger = Ledger::new();
    let mut accepted: Vec<String> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut decisions: Vec<DecisionEntry> = Vec::new();
    let mut history: VecDeque<(f64, u32)> = VecDeque::new();
    let mut last_ok = 0u64;
    // Every processed job's queue wait (ms, wall time), for the run's overall figures.
    let mut all_waits: Vec<u64> = Vec::new();
    let mut last_sample = Instant::now();
    let mut load_ended_at: Option<Instant> = None;
    let cooldown = config.cooldown.div_f64(speed);
    let mut tick = tokio::time::interval(interval);
    let outcome = loop {
        tokio::select! {
            () = shutdown.cancelled() => break "stopped (Ctrl-C or SIGTERM)",
            () = quit.cancelled() => break "stopped by the user",
            _ = tick.tick() => {}
        }
        while let Ok(id) = started.accepted.try_recv() {
            accepted.push(id);
        }
        while let Ok(event) = started.events.try_recv() {
            // On the samples' clock.
            let at_demo_secs = event
                .at
                .saturating_duration_since(setup.started)
                .as_secs_f64()
                * speed;
            let decision = &event.decision;
            view.workers_desired = decision.desired;
            view.last_decision = Some(Decision {
                at: Duration::from_secs_f64(at_demo_secs),
                current: decision.current,
                desired: decision.desired,
                reasons: decision
                    .reasons
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                summary: decision.summary.clone(),
                metrics: setup
                    .targets
                    .iter()
                    .zip(&decision.metric_values)
                    .map(|((name, target), value)| MetricReading {
                        name: name.clone(),
                        value: value.unwrap_or(f64::NAN),
                        target: *target,
                    })
                    .collect(),
            });
            decisions.push(DecisionEntry {
                t_secs: at_demo_secs,
                rescale: decision.rescale,
                reasons: decision
                    .reasons
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                line: event.line.clone(),
            });
        }
        let _ = ledger.read_dir(&setup.worker_logs);
        let (ready, unacked) =
            queue_depth(&http, &setup.queue_metrics, config.queue.as_str()).await;
        let (current, ready_workers) = pool_counts(&http, &setup.pool_metrics).await;
        let snapshot = started.stats.snapshot();
        let dt = last_sample.elapsed().as_secs_f64().max(1e-3);
        last_sample = Instant::now();
        // Per second of demo time: K times fewer than per wall second.
        let arrival = (snapshot.ok - last_ok) as f64 / dt / speed;
        last_ok = snapshot.ok;
        let mut waits = ledger.take_recent_waits();
        all_waits.extend_from_slice(&waits);
        let load_running = !started.load.is_finished();
        if !load_running && load_ended_at.is_none() {
            load_ended_at = Some(Instant::now());
        }
        let demo_secs = setup.started.elapsed().as_secs_f64() * speed;
        view.elapsed = Duration::from_secs_f64(demo_secs);
        view.phase = match load_ended_at {
            None => format!("load {:.1}/s", snapshot.target_rate / speed),
            Some(_) if ready + unacked > 0.0 => "load over: draining the queue".into(),
            Some(_) => "load over: scaling down".into(),
        };
        view.queue_ready = ready;
        view.queue_unacked = unacked;
        view.arrival_rate = arrival;
        view.target_rate = snapshot.target_rate / speed;
        view.workers_current = current;
        view.workers_ready = ready_workers;
        view.jobs_accepted = snapshot.ok;
        view.jobs_processed = ledger.acked_ids() as u64;
        history.push_back((ready + unacked, current));
        if history.len() > 120 {
            history.pop_front();
        }
        view.queue_history = history.iter().map(|h| h.0).collect();
        view.workers_history = history.iter().map(|h| h.1).collect();
        samples.push(Sample {
            t_secs: demo_secs,
            queue_ready: ready,
            queue_unacked: unacked,
            arrival_rate: arrival,
            target_rate: snapshot.target_rate / speed,
            workers_current: current,
            workers_ready: ready_workers,
            workers_desired: view.workers_desired,
            processed_total: ledger.acks(),
            queue_wait_p95_secs: quantile(&mut waits, 0.95).map(|ms| ms as f64 / 1000.0 * speed),
        });
        dashboard.update(&view)?;
        if let Some(ended) = load_ended_at {
            let settled = ready + unacked == 0.0
                && current == setup.min_replicas
                && ledger.acked_ids() >= accepted.len();
            if settled && ended.elapsed() > interval * 2 {
                break "finished";
            }
            if ended.elapsed() > cooldown {
                break "cool-down limit reached before the pool was back at its minimum";
            }
        }
    };
    dashboard.finish();
    Ok(Drove {
        outcome,
        samples,
        decisions,
        ledger,
        accepted,
        all_waits,
    })
}

impl Started {
    /// Stops the load, the autoscaler (its workers drain), web, Prometheus and the node, and
    /// takes what is still queued off the queue. Ids accepted meanwhile go to `drove`.
    async fn stop(mut self, drove: &mut Drove) -> anyhow::Result<Stopped> {
        self.load_stop.cancel();
        let load = self.load.await;
        while let Ok(id) = self.accepted.try_recv() {
            drove.accepted.push(id);
        }
        self.autoscale_stop.cancel();
        let autoscale = self.autoscale.await??;
        self.web_stop.cancel();
        self.web.await??;
        // The workers have drained: what is still in the queue was waiting, not lost. Taken off
        // the queue here to be told apart by id, since the private node goes with the demo.
        let queued = take_queued_ids(&self.broker).await;
        if let Some(p) = self.prometheus.as_mut() {
            p.stop().await;
        }
        // Stopped cleanly, Prometheus has written its head to the WAL: the kept directory
        // answers for the whole run once served again.
        let kept = match self.keep_prometheus {
            Some(dir) => {
                let run = KeptRun {
                    // Whole seconds, the run inside them: `warren capture` reads seconds.
                    from: jiff::Timestamp::from_second(self.started_at.as_second())?.to_string(),
                    to: jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 1)?
                        .to_string(),
                    queue: self.broker.queue.to_string(),
                    vhost: "/".into(),
                    speed: self.speed,
                    accepted: drove.accepted.len() as u64,
                };
                std::fs::write(dir.join(KEPT_RUN_FILE), serde_json::to_string_pretty(&run)?)?;
                Some((dir, run))
            }
            None => None,
        };
        self.node.stop().await;
        drop(self.node);
        let _ = std::fs::remove_dir_all(&self.work_dir);
        Ok(Stopped {
            load,
            autoscale,
            queued,
            kept,
        })
    }
}

/// Counts the jobs (processed, still queued, lost, duplicates) and writes the report; an
/// accepted job neither processed nor still queued fails the run.
fn report(
    config: &DemoConfig,
    setup: &Setup,
    drove: Drove,
    stopped: Stopped,
) -> anyhow::Result<()> {
    let speed = config.speed;
    let Drove {
        outcome,
        samples,
        decisions,
        mut ledger,
        accepted,
        mut all_waits,
    } = drove;
    // The run's length is up to its last sample, what the charts span, not the stop after it.
    let run_secs = samples.last().map_or(0.0, |s| s.t_secs);
    ledger.read_dir(&setup.worker_logs)?;
    let (still_queued, lost): (Vec<String>, Vec<String>) = ledger
        .lost(&accepted)
        .into_iter()
        .partition(|id| stopped.queued.contains(id));
    let still_queued_where = format!(
        "in queue {} of the demo's private RabbitMQ node, which is removed with the demo",
        config.queue
    );
    let totals = Totals {
        accepted: accepted.len() as u64,
        processed: (accepted.len() - lost.len() - still_queued.len()) as u64,
        lost: lost.len() as u64,
        still_queued: still_queued.len() as u64,
        still_queued_where: if still_queued.is_empty() {
            String::new()
        } else {
            still_queued_where.clone()
        },
        duplicates: ledger.duplicates(),
        dead_lettered: ledger.dead_lettered() as u64,
        worker_seconds: stopped.autoscale.worker_seconds * speed,
        duration_secs: run_secs,
        queue_wait_secs: {
            all_waits.extend(ledger.take_recent_waits());
            let secs = |ms: Option<u64>| ms.map(|ms| ms as f64 / 1000.0 * speed);
            match (
                secs(quantile(&mut all_waits, 0.5)),
                secs(quantile(&mut all_waits, 0.95)),
                secs(all_waits.iter().max().copied()),
            ) {
                (Some(p50), Some(p95), Some(max)) => Some(WaitSummary { p50, p95, max }),
                _ => None,
            }
        },
    };
    let info = RunInfo {
        title: "warren demo report".into(),
        settings: settings(
            config,
            &setup.engine,
            &setup.source_description,
            setup.rules_description.as_deref(),
            setup.started.elapsed(),
        ),
        links: log_links(&config.report_dir),
        notes: metric_failures(&decisions),
    };
    let page =
        crate::report::write_report(&config.report_dir, &info, &samples, &totals, &decisions)?;
    let peak = samples.iter().map(|s| s.workers_current).max().unwrap_or(0);
    println!(
        "warren demo {outcome}: accepted {} processed {} still queued {} lost {} duplicates {} | workers {}..{} (peak {peak}) | {} decisions, {} rescales | {:.0} worker-seconds (demo time, x{speed})",
        totals.accepted, totals.processed, totals.still_queued, totals.lost, totals.duplicates, setup.min_replicas, setup.max_replicas,
        stopped.autoscale.decisions, stopped.autoscale.rescales, totals.worker_seconds
    );
    if let Ok(Ok(summary)) = stopped.load {
        println!(
            "load (duration and rate in demo time, x{speed}; latency as measured):\n{}",
            summary.in_run_time(speed)
        );
    }
    if totals.still_queued > 0 {
        println!(
            "still queued: {} accepted jobs had not been processed yet when the demo stopped; they were {still_queued_where} (not lost)",
            totals.still_queued
        );
    }
    println!("report: {}", page.display());
    if let Some((dir, run)) = &stopped.kept {
        println!(
            "Prometheus' data kept in {dir}: the run is {from} to {to} (wall time), queue {queue} on vhost {vhost}, in {dir}/{KEPT_RUN_FILE}; serve it again with\n  prometheus --storage.tsdb.path={dir} --config.file=/dev/null --storage.tsdb.retention.time=10y --web.listen-address=127.0.0.1:9090\nand capture it with\n  warren capture --prometheus http://127.0.0.1:9090 --queue {queue} --vhost {vhost} --from {from} --to {to}",
            dir = dir.display(),
            from = run.from,
            to = run.to,
            queue = run.queue,
            vhost = run.vhost,
        );
    }
    if totals.lost > 0 {
        anyhow::bail!(
            "{} accepted jobs were never processed and were no longer queued: {:?}",
            totals.lost,
            &lost[..lost.len().min(5)]
        );
    }
    Ok(())
}

/// How long the demo takes, at most, to read what is left in its queue at the end.
const QUEUED_READ_WAIT: Duration = Duration::from_secs(10);

/// The job ids still in the queue (each message's body is its id), taken off it. Empty when
/// the broker cannot be read: then every job not acked counts as lost, never the other way.
async fn take_queued_ids(broker: &BrokerConfig) -> std::collections::HashSet<String> {
    let read = async {
        let connection = crate::pipeline::broker::connect(broker, "demo").await?;
        let channel = connection.create_channel().await?;
        let mut ids = std::collections::HashSet::new();
        while let Some(message) = channel
            .basic_get(
                broker.queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await?
        {
            ids.insert(String::from_utf8_lossy(&message.delivery.data).into_owned());
        }
        let _ = connection.close(200, "demo over".into()).await;
        Ok::<_, crate::pipeline::broker::BrokerError>(ids)
    };
    match tokio::time::timeout(QUEUED_READ_WAIT, read).await {
        Ok(Ok(ids)) => ids,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the jobs left in the queue");
            std::collections::HashSet::new()
        }
        Err(_) => {
            tracing::warn!("reading the jobs left in the queue took too long");
            std::collections::HashSet::new()
        }
    }
}

/// How long the demo waits for its Prometheus to have scraped the queue and the web server.
const FIRST_SCRAPE_WAIT: Duration = Duration::from_secs(30);

/// Waits until Prometheus holds the queue's ready count and the web server's accepted jobs, so
/// that the run starts on a Prometheus that sees it, as a cluster's long-running one does.
/// Without the wait the first seconds of load meet an empty Prometheus: the capacity rules
/// answer their no-data fallback (0 workers needed), and a queue-length query no series.
async fn wait_for_first_scrape(prometheus: &str, queue: &str) {
    let reader = crate::scaling::metric_source::MetricReader::new(
        MetricSource::Prometheus {
            url: prometheus.to_owned(),
        },
        1.0,
    );
    let promql = format!(
        "count(rabbitmq_detailed_queue_messages_ready{{queue={queue:?}}}) + count(jobs_published_total)"
    );
    let started = Instant::now();
    while started.elapsed() < FIRST_SCRAPE_WAIT {
        if reader.instant_query(&promql).await.is_ok() {
            tracing::info!(
                waited_ms = started.elapsed().as_millis() as u64,
                "Prometheus has scraped the queue and the web server"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "warren demo: Prometheus has not scraped the queue and the web server within {} s; starting anyway",
        FIRST_SCRAPE_WAIT.as_secs()
    );
}

/// The settings in force, as the report opens with them: all times in the demo's own time.
fn settings(
    config: &DemoConfig,
    engine: &warren_hpa::Autoscaler,
    source: &str,
    rules: Option<&str>,
    wall: Duration,
) -> Vec<(String, String)> {
    let spec = &engine.hpa().spec;
    let mut rows: Vec<(String, String)> = vec![
        (
            "speed".into(),
            format!(
                "x{}: every time ran {0} times faster on the wall clock ({:.0} s); every figure                  here is in the demo's own time",
                config.speed,
                wall.as_secs_f64()
            ),
        ),
        ("HPA manifest".into(), config.hpa_origin.clone()),
    ];
    for metric in engine.metric_specs() {
        let (name, target) = match &metric.external {
            Some(e) => {
                let selector = e
                    .metric
                    .selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .map(|labels| {
                        labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .map_or_else(String::new, |l| format!("{{{l}}}"));
                let value = e
                    .target
                    .average_value
                    .as_ref()
                    .or(e.target.value.as_ref())
                    .map_or_else(String::new, |q| q.0.clone());
                (
                    format!("External {}{selector}", e.metric.name),
                    format!("{} {value}", e.target.type_),
                )
            }
            None => (metric.type_.clone(), String::new()),
        };
        rows.push(("metric".into(), name));
        rows.push(("target".into(), target));
    }
    rows.push((
        "replicas".into(),
        format!(
            "min {}, max {}",
            spec.min_replicas.unwrap_or(1),
            spec.max_replicas
        ),
    ));
    let behavior = spec.behavior.as_ref();
    for (name, rules) in [
        ("scale up", behavior.and_then(|b| b.scale_up.as_ref())),
        ("scale down", behavior.and_then(|b| b.scale_down.as_ref())),
    ] {
        let text = match rules {
            None => "Kubernetes' default".to_owned(),
            Some(rules) => {
                let policies = rules
                    .policies
                    .iter()
                    .flatten()
                    .map(|p| {
                        let unit = if p.type_ == "Percent" { "%" } else { " pods" };
                        format!("{}{unit} per {} s", p.value, p.period_seconds)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "stabilization window {}, policies {} (select {})",
                    rules
                        .stabilization_window_seconds
                        .map_or_else(|| "default".to_owned(), |s| format!("{s} s")),
                    if policies.is_empty() {
                        "default".into()
                    } else {
                        policies
                    },
                    rules.select_policy.as_deref().unwrap_or("Max"),
                )
            }
        };
        rows.push((format!("behavior: {name}"), text));
    }
    rows.extend([
        ("sync period".into(), "15 s".into()),
        (
            "work time".into(),
            format!("{} ms per job, prefetch 1", config.work.as_millis()),
        ),
        ("load".into(), config.pattern_description.clone()),
        ("metric source".into(), source.to_owned()),
    ]);
    if let Some(rules) = rules {
        rows.push(("Prometheus rules".into(), rules.to_owned()));
    }
    rows
}

/// The logs the demo wrote beside the report, relative to it: its own, then each worker's.
fn log_links(report_dir: &std::path::Path) -> Vec<(String, String)> {
    let mut links = vec![(
        "warren.log (web, autoscaler, demo)".to_owned(),
        "warren.log".to_owned(),
    )];
    let mut workers: Vec<(u64, String)> = std::fs::read_dir(report_dir.join("workers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| {
            let n = name
                .strip_prefix("worker-")?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((n, name))
        })
        .collect();
    workers.sort();
    links.extend(
        workers
            .into_iter()
            .map(|(_, name)| (name.clone(), format!("workers/{name}"))),
    );
    links
}

/// A note for each stretch of decisions whose metric could not be read: why, from the line.
fn metric_failures(decisions: &[DecisionEntry]) -> Vec<String> {
    let failed: Vec<&DecisionEntry> = decisions
        .iter()
        .filter(|d| d.reasons.iter().any(|r| r == "FailedGetExternalMetric"))
        .collect();
    match failed.first() {
        None => Vec::new(),
        Some(first) => vec![format!(
            "{} of {} decisions could not read the metric (FailedGetExternalMetric: the worker count was kept). The first, at t={:.1}s: {}",
            failed.len(),
            decisions.len(),
            first.t_secs,
            first.line
        )],
    }
}

/// Each metric's name and target value (AverageValue or Value), from the manifest.
fn metric_targets(engine: &warren_hpa::Autoscaler) -> Vec<(String, f64)> {
    engine
        .metric_specs()
        .iter()
        .map(|spec| {
            let external = spec.external.as_ref();
            let name = external.map_or_else(|| spec.type_.clone(), |e| e.metric.name.clone());
            let target = external
                .and_then(|e| e.target.average_value.as_ref().or(e.target.value.as_ref()))
                .and_then(|q| warren_hpa::quantity::approximate_f64(&q.0).ok())
                .unwrap_or(f64::NAN);
            (name, target)
        })
        .collect()
}

async fn queue_depth(http: &reqwest::Client, url: &str, queue: &str) -> (f64, f64) {
    let Ok(response) = http.get(url).send().await else {
        return (0.0, 0.0);
    };
    let text = response.text().await.unwrap_or_default();
    let samples = parse_samples(&text);
    let find = |name: &str| {
        samples
            .iter()
            .filter(|s| s.name == name && s.labels.get("queue").map(String::as_str) == Some(queue))
            .fold(0.0, |sum, s| sum + s.value)
    };
    (
        find("rabbitmq_detailed_queue_messages_ready"),
        find("rabbitmq_detailed_queue_messages_unacked"),
    )
}

async fn pool_counts(http: &reqwest::Client, url: &str) -> (u32, u32) {
    let Ok(response) = http.get(url).send().await else {
        return (0, 0);
    };
    let text = response.text().await.unwrap_or_default();
    let samples = parse_samples(&text);
    let find = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.value as u32)
    };
    (
        find("autoscaler_current_replicas"),
        find("autoscaler_ready_replicas"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The note counts decisions by their condition reason, not by what their line says.
    #[test]
    fn the_report_notes_decisions_that_could_not_read_the_metric_by_their_reason() {
        let entry = |t_secs: f64, reasons: &[&str], line: &str| DecisionEntry {
            t_secs,
            rescale: false,
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
            line: line.to_owned(),
        };
        let decisions = [
            entry(
                15.0,
                &["ScaleUpStabilized"],
                "current=1 desired=1 (FailedGetExternalMetric was yesterday)",
            ),
            entry(
                30.0,
                &["FailedGetExternalMetric"],
                "current=1 desired=1 metric unavailable",
            ),
            entry(
                45.0,
                &["ScaleUpStabilized", "FailedGetExternalMetric"],
                "current=1 desired=1",
            ),
        ];
        let notes = metric_failures(&decisions);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("2 of 3 decisions could not read the metric")
                && notes[0].contains("at t=30.0s: current=1 desired=1 metric unavailable"),
            "{notes:?}"
        );
        assert!(metric_failures(&decisions[..1]).is_empty());
    }

    #[test]
    fn the_demo_pattern_warms_up_then_peaks() {
        let pattern = demo_pattern(2.0, Duration::from_secs(75)).unwrap();
        assert!((pattern.rate_at(5.0) - 0.6).abs() < 1e-9);
        assert!((pattern.rate_at(40.0) - 2.0).abs() < 1e-9);
        assert!((pattern.duration() - 75.0).abs() < 1e-9);
    }
}
