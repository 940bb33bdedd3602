//! Logging: one `tracing` subscriber for every subcommand, writing to stderr.

use tracing_subscriber::EnvFilter;

use crate::config::ConfigError;

/// The log filter: `RUST_LOG` when set (per-module directives), else the given level.
pub fn filter(level: &str) -> Result<EnvFilter, ConfigError> {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(&directives).map_err(|e| {
                ConfigError::new(format!(
                    "RUST_LOG {directives:?} is not a valid filter ({e})"
                ))
            })
        }
        // kube's client logs every failed request at error level; the worker's deletion-cost
        // module reports its own failures, once (`pipeline::deletion_cost`). lapin logs every
        // message the broker returns (a deleted queue) at WARN, about 1 KB each; the publisher
        // says once that the queue is gone instead. lapin also logs three ERROR lines for each
        // refused connection attempt; warren says why once per change of reason
        // (`pipeline::publisher`), and logs every lost connection itself.
        _ => EnvFilter::try_new(format!(
            "{level},lapin=off,lapin::returned_messages=error,amq_protocol=warn,kube_client=off"
        ))
        .map_err(|e| ConfigError::new(format!("LOG_LEVEL {level:?} is not a level ({e})"))),
    }
}

/// Installs the subscriber.
pub fn init(filter: EnvFilter) {
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // A log line that cannot be written (stderr a closed pipe: `warren web 2>&1 | head`)
        // is dropped. The subscriber's own report of it would be an `eprintln!`, which panics
        // on that stderr, in whatever task logged: the signal listener's panic left web
        // deaf to SIGTERM.
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Installs the subscriber writing to a file (created with its directory), for commands whose
/// terminal shows something else.
pub fn init_to_file(filter: EnvFilter, path: &std::path::Path) -> Result<(), ConfigError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ConfigError::new(format!("cannot create {}: {e}", dir.display())))?;
    }
    let file = std::fs::File::create(path)
        .map_err(|e| ConfigError::new(format!("cannot write {}: {e}", path.display())))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
    Ok(())
}
