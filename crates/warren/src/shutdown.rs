//! The one shutdown signal helper, shared by every long-running subcommand.
//!
//! The first SIGTERM or SIGINT cancels the returned token: servers stop accepting and drain.
//! A second signal means "stop now": the process exits at once with code 130, without waiting
//! for a drain (the broker requeues whatever was not acked, so nothing is lost).

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Spawns the signal listener and returns the token it cancels on the first signal.
pub fn install() -> std::io::Result<CancellationToken> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutdown requested; draining (send it again to stop at once)"
        );
        cancel.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(signal = name, "second signal: exiting now without draining");
        // `exit` skips destructors: hand the terminal back if the demo's live view holds it.
        crate::lab::dashboard::restore_terminal();
        std::process::exit(130);
    });
    Ok(token)
}
