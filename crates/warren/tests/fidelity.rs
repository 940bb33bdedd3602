//! The simulator against the live system, short: `bench/fidelity --speed 10` runs `warren demo`
//! at speed 10 on its private broker and `warren simulate` on the same settings, and compares
//! the desired replicas at each sync, the queue-wait p95 and the worker-seconds.
//!
//! The guard keeps the full targets but compares with `--bracket`: against the range of the
//! simulator's two sides of one thing that varies from run to run and that no model can know in
//! advance. Each rate-limited step (scale-up 4 pods or 100 % per 15 s, scale-down 50 % per
//! 15 s) and the 60 s stabilization window land on a period boundary, and the few ms the live
//! sync's metric read takes decide whether the previous step is still inside the period, so
//! whether a step happens at this sync or the next: a coin flip per step, in the live system as
//! in a cluster's HPA. The simulator runs once with every step at once (syncs exactly 15 s
//! apart) and once with every step held (syncs 1 ms short); a live run falls between. Measured
//! at speed 10 on a loaded machine, one flip on the way up is 7 s of queue-wait p95 (25 %), so
//! the plain comparison would fail about every other run. A model that is wrong (the time base,
//! the metric lag, the start-up, the end of the run) falls outside the range.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
fn the_simulator_matches_the_live_demo_at_speed_10() {
    let out = std::env::temp_dir().join(format!("warren-test-fidelity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let done = Command::new("python3")
        .arg("bench/fidelity")
        .args(["--speed", "10", "--warren", env!("CARGO_BIN_EXE_warren")])
        .arg("--bracket")
        .arg("--out")
        .arg(&out)
        .current_dir(workspace_root())
        .env_remove("AMQP_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        done.status.success(),
        "fidelity missed:\n{stdout}\n{stderr}"
    );
    // Each figure was compared, and the live run lost nothing.
    for figure in ["desired within +-1", "queue-wait p95", "worker-seconds"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(figure) && l.ends_with("| ok |")),
            "{figure}:\n{stdout}"
        );
    }
    assert!(stdout.contains(", 0 lost;"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}
