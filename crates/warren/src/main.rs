//! The `warren` binary: parse the command line, then run one subcommand. (`warren-worker`,
//! in `bin/warren-worker.rs`, is the worker alone.)

use std::process::ExitCode;

use warren::cli::{self, run_until_shutdown as run, Cli, Command};

// No `#[global_allocator]`: the system allocator (glibc malloc), measured against mimalloc (docs/benchmarks.md, "Lean
// processes"): an idle worker 11.2 MB against 16.2 MB, warren web 12.0 MB idle against 16.9 MB,
// and after a burst glibc kept less. mimalloc's reservation per thread was most of the
// difference at rest. Choosing one per subcommand would need an unsafe `GlobalAlloc` of our
// own. What glibc keeps after a burst, `warren::memory` gives back once the process is quiet.

fn main() -> ExitCode {
    cli::start_process();
    let cli: Cli = cli::parse();
    let filter = warren::telemetry::filter(&cli.log.log_level)
        .unwrap_or_else(|e| cli::exit_config_error(&e));
    // Every config is checked here, before logging starts and before any network call.
    let result = match cli.command {
        Command::Demo(args) => {
            let config = args
                .to_config()
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            if args.print_pattern {
                println!(
                    "{}",
                    warren::lab::demo::pattern_json(args.rate, args.duration)
                );
                return ExitCode::SUCCESS;
            }
            // The live view owns the terminal; logs go to a file beside the report.
            warren::telemetry::init_to_file(filter, &config.report_dir.join("warren.log"))
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            run(true, |shutdown| warren::lab::demo::run(config, shutdown))
        }
        Command::Web(args) => {
            let config = args
                .to_config()
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            warren::telemetry::init(filter);
            run(true, |shutdown| {
                warren::pipeline::web::run(config, shutdown)
            })
        }
        Command::Worker(args) => cli::run_worker(args, filter),
        Command::Autoscale(args) => {
            let config = args
                .to_config()
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            if args.print_queries {
                let json = warren::scaling::autoscale::queries_json(&config)
                    .unwrap_or_else(|e| cli::exit_config_error(&e));
                println!("{json}");
                return ExitCode::SUCCESS;
            }
            warren::telemetry::init(filter);
            run(true, |shutdown| {
                warren::scaling::autoscale::run(config, shutdown)
            })
        }
        Command::Load(args) => {
            let config = args
                .to_config()
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            warren::telemetry::init(filter);
            run(true, |shutdown| warren::lab::load::run(config, shutdown))
        }
        Command::Recommend(args) => {
            let config = args
                .to_config()
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            warren::whatif::recommend::run(config)
        }
        Command::Rules(args) => {
            let config = args
                .to_config()
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            warren::whatif::capacity_rules::run(&config)
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            Ok(())
        }
        Command::Capture(args) => {
            let config = args
                .to_config()
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            run(false, |shutdown| async move {
                tokio::select! {
                    captured = warren::whatif::capture::run(&config) => {
                        let summary = captured.unwrap_or_else(|e| cli::exit_config_error(&e));
                        eprintln!("{summary}");
                        Ok(())
                    }
                    () = shutdown.cancelled() => anyhow::bail!("interrupted; nothing written"),
                }
            })
        }
        Command::Records(args) => {
            args.check().unwrap_or_else(|e| cli::exit_config_error(&e));
            warren::records::print(&args)
        }
        Command::Simulate(args) => {
            let config = args
                .to_config()
                .unwrap_or_else(|e| cli::exit_config_error(&e));
            // Pure computation: no runtime, no signal handler.
            warren::whatif::simulate::run(config)
        }
        Command::Broker(args) => {
            warren::telemetry::init(filter);
            run(false, |shutdown| {
                warren::lab::broker_command::run(args, shutdown)
            })
        }
    };
    cli::exit_code(result)
}
