//! The command line, at the door: it assembles the subcommands and nothing imports it.
//!
//! Every setting is a flag and an environment variable. Each command's `Args` and their checking
//! into a typed config live with the command ([`crate::pipeline::web::WebArgs`],
//! [`crate::scaling::autoscale::AutoscaleArgs`], ...); shared groups live in the lowest layer
//! that uses them ([`crate::pipeline::broker::BrokerArgs`], [`crate::pipeline::worker::WorkArgs`]).
//! `main.rs` checks every config once, before any network call.

use clap::{Parser, Subcommand};

use crate::config::ConfigError;
use crate::lab::demo::DemoArgs;
use crate::lab::load::LoadArgs;
use crate::lab::rabbit_node::BrokerNodeArgs;
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
    Demo(DemoArgs),
    /// Serve GET /generate: publish a job, answer 200 only once the broker confirmed it.
    Web(WebArgs),
    /// Consume jobs: do the work, ack after it, dead-letter bad messages, drain on SIGTERM.
    Worker(WorkerArgs),
    /// Scale a local pool of workers with the Kubernetes HPA algorithm and an HPA manifest.
    Autoscale(Box<AutoscaleArgs>),
    /// Send open-loop load to GET /generate: requests leave on schedule, answered or not.
    Load(LoadArgs),
    /// Run a private RabbitMQ node (own name, data dir and free ports) until Ctrl-C.
    Broker(BrokerNodeArgs),
    /// Predict what HPA manifests or KEDA ScaledObjects do to queue wait, workers and cost under
    /// scenario files, with the autoscaler's own engine, in simulated time: a table, a report.
    Simulate(crate::lab::simulate::SimulateArgs),
    /// Search the queue-length and capacity policies with the simulator and print the HPA
    /// manifest that keeps the p95 queue wait within the SLO in every scenario, at the fewest
    /// worker-seconds.
    Recommend(crate::lab::recommend::RecommendArgs),
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
                    // The message is the first paragraph: for a missing argument, its first
                    // line says "not provided:" and the next lines name the arguments.
                    let rendered = e.render().to_string();
                    let paragraph: Vec<&str> = rendered
                        .lines()
                        .map(str::trim)
                        .take_while(|l| !l.is_empty())
                        .collect();
                    let line = paragraph.join(" ");
                    let line = line.strip_prefix("error: ").unwrap_or(&line);
                    let line = if line.is_empty() {
                        "invalid arguments"
                    } else {
                        line
                    };
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
