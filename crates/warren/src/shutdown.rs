//! The one shutdown signal helper, shared by every long-running subcommand.
//!
//! The first SIGTERM or SIGINT cancels the returned token: servers stop accepting and drain.
//! A second signal means "stop now": the process exits at once with code 130, without waiting
//! for a drain (the broker requeues whatever was not acked, so nothing is lost).

use std::sync::Mutex;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// What must run before the immediate exit, which skips destructors. Registered from above
/// (the demo's live view hands the terminal back) so this leaf module knows no caller.
static BEFORE_FORCED_EXIT: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Registers `hook` to run before the process exits at once on a second signal.
pub fn before_forced_exit(hook: fn()) {
    BEFORE_FORCED_EXIT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(hook);
}

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
        // `exit` skips destructors: run what was registered to stand in for them.
        let hooks = BEFORE_FORCED_EXIT
            .lock()
            .map(|hooks| hooks.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        for hook in hooks {
            hook();
        }
        std::process::exit(130);
    });
    Ok(token)
}
