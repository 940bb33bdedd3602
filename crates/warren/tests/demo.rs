//! `warren demo --speed 10`, end to end and headless, as CI runs it.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Processes that belong to the demo with process id `pid`: its workers (which carry
/// `WARREN_PARENT_PID`) and anything using its private work directory (RabbitMQ, Prometheus).
fn leftovers(pid: u32) -> Vec<String> {
    let marker_dir = format!("warren-demo-{pid}");
    let marker_env = format!("WARREN_PARENT_PID={pid}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .all(|c| c.is_ascii_digit())
        {
            continue;
        }
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(path.join("environ")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let environ = String::from_utf8_lossy(&environ).replace('\0', " ");
        if cmdline.contains(&marker_dir) || environ.split(' ').any(|v| v == marker_env) {
            found.push(format!("{}: {cmdline}", path.display()));
        }
    }
    found
}

#[test]
fn demo_at_speed_10_scales_up_and_down_loses_nothing_and_leaves_nothing_running() {
    let report = std::env::temp_dir().join(format!("warren-test-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&report);
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["demo", "--speed", "10", "--plain", "--report-dir"])
        .arg(&report)
        .current_dir(workspace_root())
        .env_remove("RUST_LOG")
        .env_remove("AMQP_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let child = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("lost 0"), "{stdout}");

    // The report exists, with its charts and totals.
    for file in [
        "index.html",
        "timeseries.csv",
        "queue_depth.svg",
        "workers.svg",
        "arrival_rate.svg",
        "queue_wait_p95.svg",
    ] {
        assert!(
            report.join(file).is_file(),
            "{file} in {}",
            report.display()
        );
    }
    let totals: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("totals.json")).unwrap())
            .unwrap();
    assert_eq!(totals["lost"], 0, "{totals}");
    assert!(totals["accepted"].as_u64().unwrap() > 50, "{totals}");
    assert_eq!(totals["processed"], totals["accepted"], "{totals}");

    // The pool went up to several workers and came back down to the minimum (1).
    let csv = std::fs::read_to_string(report.join("timeseries.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "workers_current").unwrap();
    let workers: Vec<u32> = lines
        .map(|l| l.split(',').nth(column).unwrap().parse().unwrap())
        .collect();
    let peak = *workers.iter().max().unwrap();
    assert!(peak >= 4, "peak {peak} workers: {workers:?}");
    let after_peak = workers.iter().skip_while(|w| **w < peak);
    assert_eq!(after_peak.last(), Some(&1), "back to 1 worker: {workers:?}");

    // Nothing the demo started is still running.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let left = leftovers(pid);
    assert!(left.is_empty(), "left running: {left:#?}");
    let _ = std::fs::remove_dir_all(&report);
}

#[test]
fn demo_with_the_scale_to_zero_manifest_ends_at_0_workers_and_its_report_says_scaled_to_zero() {
    let report = std::env::temp_dir().join(format!("warren-test-demo-zero-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&report);
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "demo",
            "--speed",
            "10",
            "--duration",
            "30s",
            "--plain",
            "--hpa",
            "deploy/local/hpa-scale-to-zero.yaml",
            "--report-dir",
        ])
        .arg(&report)
        .current_dir(workspace_root())
        .env_remove("RUST_LOG")
        .env_remove("AMQP_URL")
        .env_remove("KUBERNETES_RELEASE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let child = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("warren demo finished"), "{stdout}");
    assert!(stdout.contains("lost 0"), "{stdout}");

    // The pool went up, then all the way down to 0 workers.
    let csv = std::fs::read_to_string(report.join("timeseries.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "workers_current").unwrap();
    let workers: Vec<u32> = lines
        .map(|l| l.split(',').nth(column).unwrap().parse().unwrap())
        .collect();
    assert!(*workers.iter().max().unwrap() >= 2, "{workers:?}");
    assert_eq!(workers.last(), Some(&0), "ends at 0 workers: {workers:?}");

    // The live view's last lines and the report's decisions carry the condition.
    let view = stdout
        .lines()
        .chain(stderr.lines())
        .rfind(|l| l.starts_with("t="))
        .unwrap_or_default();
    assert!(
        view.contains("workers=0 ") && view.contains("ScaledToZero=ScaledToZero"),
        "{view}"
    );
    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        page.contains("desired=0 rescale=true") && page.contains("ScaledToZero=ScaledToZero"),
        "the report's decisions show the scale to 0"
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("autoscaler-state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["hpa"], "warren/warren-worker", "{state}");

    std::thread::sleep(std::time::Duration::from_millis(500));
    let left = leftovers(pid);
    assert!(left.is_empty(), "left running: {left:#?}");
    let _ = std::fs::remove_dir_all(&report);
}
