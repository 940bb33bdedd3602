//! The command line, at the door: it assembles the subcommands and nothing imports it.
//!
//! Every setting is a flag and an environment variable. Each command's `Args` and their checking
//! into a typed config live with the command ([`crate::pipeline::web::WebArgs`],
//! [`crate::scaling::autoscale::AutoscaleArgs`], ...); shared groups live in the lowest layer
//! that uses them ([`crate::pipeline::broker::BrokerArgs`], [`crate::pipeline::worker::WorkArgs`]).
//! `main.rs` checks every config once, before any network call.
//!
//! Two binaries come through this door: `warren` ([`Cli`], every subcommand) and
//! `warren-worker` ([`WorkerCli`], `warren worker` alone, for the worker's pods: a binary
//! without the other subcommands maps less code, 7.4 MB idle against 10.1 MB, see
//! docs/benchmarks.md). Both start the same way ([`start_process`], [`parse`],
//! [`run_until_shutdown`], [`exit_code`]).

use std::process::ExitCode;
use std::sync::OnceLock;

use clap::{Args, Parser, Subcommand};

use crate::config::ConfigError;
use crate::lab::broker_command::BrokerNodeArgs;
use crate::lab::demo::DemoArgs;
use crate::lab::load::LoadArgs;
use crate::pipeline::web::WebArgs;
use crate::pipeline::worker::WorkerArgs;
use crate::scaling::autoscale::AutoscaleArgs;

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
    /// The log level, global to every subcommand.
    #[command(flatten)]
    pub log: LogArgs,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// warren-worker: consume jobs from a RabbitMQ queue; the same as `warren worker`.
///
/// Does the work (a sleep of WORK_MS standing in for real processing), acks after it,
/// dead-letters bad messages, drains on SIGTERM. The worker's
/// container runs this binary: it holds no other subcommand, so it maps less memory. Every option
/// can also be set through the environment variable shown beside it.
#[derive(Debug, Parser)]
#[command(name = "warren-worker", version, max_term_width = 100)]
pub struct WorkerCli {
    /// The log level.
    #[command(flatten)]
    pub log: LogArgs,

    /// The worker's options.
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// The log level option, shared by both binaries.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log level: error, warn, info, debug or trace. RUST_LOG, when set, overrides it with
    /// per-module directives.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true,
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system on this machine: a private RabbitMQ and Prometheus, web, workers
    /// scaled by the HPA manifest, a load that scales them up and down, a live view, a report.
    Demo(DemoArgs),
    /// Serve GET /generate: publish a job, answer 200 only once the broker confirmed it.
    Web(WebArgs),
    /// Consume jobs: do the work (a sleep standing in for real processing), ack after it,
    /// dead-letter bad messages, drain on SIGTERM.
    Worker(WorkerArgs),
    /// Scale a local pool of workers with the Kubernetes HPA algorithm and an HPA manifest.
    Autoscale(Box<AutoscaleArgs>),
    /// Send open-loop load to GET /generate: requests leave on schedule, answered or not.
    Load(LoadArgs),
    /// Run a private RabbitMQ node (own name, data dir and free ports) until Ctrl-C, or in the
    /// background with --detach until --stop; on the same --dir it comes back with its data.
    Broker(BrokerNodeArgs),
    /// Predict what HPA manifests or KEDA ScaledObjects do to queue wait, workers and cost under
    /// scenario files, with the autoscaler's own engine, in simulated time: a table, a report.
    Simulate(crate::whatif::simulate::SimulateArgs),
    /// Search the queue-length and capacity policies with the simulator and print the HPA
    /// manifest that keeps the p95 queue wait within the SLO in every scenario, at the fewest
    /// worker-seconds.
    Recommend(crate::whatif::recommend::RecommendArgs),
    /// Print what a cluster applies to scale a queue's workers on the capacity metric: the
    /// recording rules (every queue at once, from the broker's own metrics; plain and as a
    /// PrometheusRule), the prometheus-adapter rule and HPA, or the KEDA ScaledObject.
    Rules(crate::whatif::capacity_rules::RulesArgs),
    /// Read a queue's past from Prometheus (arrival rate, work time, scrape interval, pod
    /// start) into a scenario file for `warren simulate` and `warren recommend`, with what
    /// happened (replicas, backlog, wait) in a CSV beside it.
    Capture(Box<crate::whatif::capture::CaptureArgs>),
    /// Print the decision and job-outcome records of warren's logs as JSON lines, one record a
    /// line, for scripts: what `warren autoscale` decided at each sync, what became of each
    /// job at a worker.
    Records(crate::records::RecordsArgs),
}

/// The binary's name, for its error lines: set by [`parse`].
static PROGRAM: OnceLock<String> = OnceLock::new();

/// What every warren binary does first. Transparent huge pages off for this process:
/// khugepaged collapsed the allocator's regions into 2 MB pages, so RSS grew while idle after a
/// burst (bench/burst with mimalloc: 190 MB with 117 MB of AnonHugePages, against 154 MB and
/// none without). Best effort: a kernel without the prctl leaves things as they were.
pub fn start_process() {
    let _ = nix::sys::prctl::set_thp_disable(true);
}

/// Parses the command line of `P` ([`Cli`] or [`WorkerCli`]); on a bad value prints one line and
/// exits with code 2.
pub fn parse<P: Parser>() -> P {
    let _ = PROGRAM.set(P::command().get_name().to_owned());
    match P::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
                _ => {
                    let command = command_path(&P::command(), std::env::args().skip(1));
                    exit_config_error(&ConfigError::new(clap_error_line(
                        &e.render().to_string(),
                        &command,
                    )))
                }
            }
        }
    }
}

/// Builds the runtime (one thread, or one per core), installs the shutdown signal and runs one
/// subcommand to its end.
pub fn run_until_shutdown<F, Fut>(multi_thread: bool, subcommand: F) -> anyhow::Result<()>
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async {
        let shutdown = crate::shutdown::install()?;
        subcommand(shutdown).await
    })
}

/// `warren worker` and `warren-worker`: checks the config (a bad one exits 2), starts logging
/// with `filter`, then runs the worker on one thread until it has drained.
pub fn run_worker(args: WorkerArgs, filter: tracing_subscriber::EnvFilter) -> anyhow::Result<()> {
    let config = args.to_config().unwrap_or_else(|e| exit_config_error(&e));
    crate::telemetry::init(filter);
    run_until_shutdown(false, |shutdown| {
        crate::pipeline::worker::run(config, shutdown)
    })
}

/// The process's exit code for a subcommand's result; an error is printed as one line first.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e:#}", program());
            ExitCode::FAILURE
        }
    }
}

fn program() -> &'static str {
    PROGRAM.get().map_or("warren", String::as_str)
}

/// Folds clap's several-line rendering into one line that keeps what it says: the message, the
/// arguments it names (`--hpa <HPA>`), its tip ("a similar argument exists: '--port'") and
/// where to look (`see 'warren autoscale --help'`). The usage synopsis is left out: `--help`
/// has it.
fn clap_error_line(rendered: &str, command: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut tips: Vec<String> = Vec::new();
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(tip) = line.strip_prefix("tip: ") {
            tips.push(tip.to_owned());
        } else if line.starts_with("Usage: ") || line.starts_with("For more information") {
        } else {
            let line = line.strip_prefix("error: ").unwrap_or(line);
            parts.push(line.to_owned());
        }
    }
    let mut text = parts.join(" ");
    if text.is_empty() {
        text.push_str("invalid arguments");
    }
    for tip in tips {
        text.push_str(&format!("; tip: {tip}"));
    }
    text.push_str(&format!("; see '{command} --help'"));
    text
}

/// The binary and the subcommand named on the command line, if any: what `--help` applies to.
fn command_path(cli: &clap::Command, args: impl Iterator<Item = String>) -> String {
    let sub = args
        .filter(|arg| !arg.starts_with('-'))
        .find(|arg| cli.find_subcommand(arg).is_some());
    match sub {
        Some(sub) => format!("{} {sub}", cli.get_name()),
        None => cli.get_name().to_owned(),
    }
}

/// Prints a configuration error as one line on stderr and exits with code 2.
pub fn exit_config_error(error: &ConfigError) -> ! {
    eprintln!("{}: {error}", program());
    std::process::exit(2)
}
