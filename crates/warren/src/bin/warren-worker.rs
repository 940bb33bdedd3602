//! The `warren-worker` binary: `warren worker` alone, for the worker's pods.
//!
//! The same options, environment, logs and exit codes as `warren worker`; the linker keeps only
//! the worker's code, so an idle worker maps 7.4 MB instead of 10.1 MB (docs/benchmarks.md,
//! "Lean processes"). Workers are what the autoscaler replicates, so their memory is the bill.

use std::process::ExitCode;

use warren::cli::{self, WorkerCli};

fn main() -> ExitCode {
    cli::start_process();
    let cli: WorkerCli = cli::parse();
    let filter = warren::telemetry::filter(&cli.log.log_level)
        .unwrap_or_else(|e| cli::exit_config_error(&e));
    cli::exit_code(cli::run_worker(cli.worker, filter))
}
