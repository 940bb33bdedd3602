//! `warren demo --speed 10`, end to end and headless, as CI runs it, from a directory outside
//! the repository, as a user who installed the binary would run it.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::process::Command;

use warren::records::{DecisionRecord, Record};

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
    // No checkout here: the HPA manifest must come from the binary, the report from `reports/`
    // under this directory.
    let cwd = std::env::temp_dir().join(format!("warren-test-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cwd);
    std::fs::create_dir_all(&cwd).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["demo", "--speed", "10", "--plain"])
        .current_dir(&cwd)
        .env_remove("HPA_FILE")
        .env_remove("REPORT_DIR")
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
    let reports: Vec<_> = std::fs::read_dir(cwd.join("reports"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(reports.len(), 1, "one report under ./reports: {reports:?}");
    let report = reports[0].clone();
    assert!(
        report
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("demo-"),
        "{}",
        report.display()
    );

    // The report exists, with its charts and totals.
    for file in [
        "index.html",
        "timeseries.csv",
        "queue_depth.svg",
        "workers.svg",
        "arrival_rate.svg",
        "processed_rate.svg",
        "queue_wait_p95.svg",
        "warren.log",
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
    // Ready workers are among the current ones, also while the pool scales down.
    let ready_column = header.iter().position(|h| *h == "workers_ready").unwrap();
    for line in csv.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let (current, ready): (u32, u32) = (
            cells[column].parse().unwrap(),
            cells[ready_column].parse().unwrap(),
        );
        assert!(ready <= current, "ready above current: {line}");
    }
    let peak = *workers.iter().max().unwrap();
    assert!(peak >= 4, "peak {peak} workers: {workers:?}");
    let after_peak = workers.iter().skip_while(|w| **w < peak);
    assert_eq!(after_peak.last(), Some(&1), "back to 1 worker: {workers:?}");

    // Figures in the demo's own time: the default load is 75 s (0.6/s, then 2/s), whatever the
    // speed. In wall time the run lasts about a tenth of that and the rates are ten times more.
    let column_of = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|v| v.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    let last_t = rows.last().unwrap()[column_of("t_secs")];
    assert!(
        last_t > 75.0,
        "the run reaches past the 75 s load: t={last_t}"
    );
    let peak_target = rows
        .iter()
        .map(|r| r[column_of("target_rate")])
        .fold(0.0_f64, f64::max);
    assert!(
        (peak_target - 2.0).abs() < 0.01,
        "the load's peak is 2/s in demo time, got {peak_target}"
    );
    let duration = totals["duration_secs"].as_f64().unwrap();
    assert!(duration > 75.0, "duration in demo time: {duration}");
    // The run's duration is what the charts span: up to the last sample, not the stop.
    assert!(
        (duration - last_t).abs() < 0.01,
        "{duration} against {last_t}"
    );
    // The run's queue wait over every job, in demo time: at 5 s jobs and a backlog, seconds.
    let wait = &totals["queue_wait_secs"];
    let (p50, p95, max) = (
        wait["p50"].as_f64().unwrap(),
        wait["p95"].as_f64().unwrap(),
        wait["max"].as_f64().unwrap(),
    );
    assert!(p50 <= p95 && p95 <= max && p95 > 1.0, "{wait}");
    // Before the first decision the pool is at minReplicas: desired 1, no worker "to stop".
    let first = stdout.lines().next().unwrap();
    assert!(first.contains(" desired=1 "), "{first}");
    let worker_seconds = totals["worker_seconds"].as_f64().unwrap();
    assert!(
        worker_seconds > duration,
        "worker-seconds in demo time (at least one worker the whole run): {worker_seconds} vs {duration}"
    );
    assert!(stdout.contains("(demo time, x10)"), "{stdout}");
    // The load's summary too is in demo time: the 75 s load at a peak of 2/s, not 7.5 s of
    // wall time at 10 times the rate.
    assert!(
        stdout.contains("load (duration and rate in demo time, x10; latency as measured):"),
        "{stdout}"
    );
    let load_secs: f64 = stdout
        .split("\nduration ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no load duration: {stdout}"));
    assert!((70.0..80.0).contains(&load_secs), "{stdout}");
    let rate: f64 = stdout
        .split("achieved rate ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no achieved rate: {stdout}"));
    assert!(rate > 0.5 && rate <= 2.0, "demo-time rate {rate}: {stdout}");

    // The page states the speed and the settings in force, links the logs.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for needle in [
        "<th>speed</th><td>x10:",
        // The default HPA is the capacity overlay's, its metric computed from the broker's
        // and the workers' metrics (no --metric-source prometheus).
        "prometheus-adapter-capacity/hpa.yaml (built in)",
        "External warren_workers_needed{queue=Orders}",
        "<th>target</th><td>AverageValue 1</td>",
        "<th>replicas</th><td>min 1, max 10</td>",
        "<th>behavior: scale up</th><td>stabilization window 0 s, policies 4 pods per 15 s, 100% per 15 s (select Max)</td>",
        "<th>behavior: scale down</th><td>stabilization window 60 s",
        "<th>sync period</th><td>15 s</td>",
        "<th>work time</th><td>5000 ms per job",
        "<th>load</th><td>0.60/s (30% of the peak) for 15 s, then the peak 2/s until 75 s",
        "<th>metric source</th>",
        "queue wait p50 / p95 / max",
        "<a href=\"warren.log\">",
        "<a href=\"workers/worker-0.log\">worker-0.log</a>",
    ] {
        assert!(html.contains(needle), "the page lacks {needle:?}");
    }
    // The metric came from the broker: the page does not list the rules it did not read.
    assert!(!html.contains("<th>Prometheus rules</th>"), "rules row");
    // Decision values to the milli-unit, not 16 digits.
    assert!(
        !html.lines().any(|l| l.contains(" decision ")
            && l.contains("value=")
            && l.split("value=")
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .is_some_and(|v| v.split('.').nth(1).is_some_and(|d| d.len() > 3))),
        "a value with more than 3 decimals"
    );
    // Each decision carries the capacity metric's terms, and the load was seen: a decision
    // while it ran had a non-zero arrival rate.
    let log = std::fs::read_to_string(report.join("warren.log")).unwrap();
    let decisions: Vec<DecisionRecord> = warren::records::parse_log(&log)
        .into_iter()
        .filter_map(|r| match r {
            Record::Decision(d) => Some(d),
            _ => None,
        })
        .collect();
    assert!(!decisions.is_empty(), "no decision record in the log");
    let arrival_rates: Vec<Option<f64>> = decisions
        .iter()
        .map(|d| {
            d.metrics
                .first()
                .and_then(|m| m.terms)
                .map(|t| t.arrival_rate)
        })
        .collect();
    assert!(arrival_rates.iter().all(Option::is_some), "{decisions:#?}");
    assert!(
        arrival_rates.iter().flatten().any(|&rate| rate >= 0.00005),
        "{decisions:#?}"
    );
    // The first decision waited for the metric: no start-up FailedGetExternalMetric.
    assert!(
        !html.contains("FailedGetExternalMetric"),
        "a decision failed to read the metric"
    );
    // Every rescale of the run is marked on the workers chart.
    let workers_svg = std::fs::read_to_string(report.join("workers.svg")).unwrap();
    assert!(workers_svg.contains("rescale decision"));

    // Nothing the demo started is still running.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let left = leftovers(pid);
    assert!(left.is_empty(), "left running: {left:#?}");
    let _ = std::fs::remove_dir_all(&cwd);
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

#[test]
fn demo_stopped_by_the_user_with_jobs_queued_exits_0_and_reports_them_as_queued_not_lost() {
    use std::io::BufRead;
    let cwd = std::env::temp_dir().join(format!("warren-test-demo-quit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cwd);
    std::fs::create_dir_all(&cwd).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["demo", "--speed", "10", "--plain"])
        .current_dir(&cwd)
        .env_remove("HPA_FILE")
        .env_remove("REPORT_DIR")
        .env_remove("RUST_LOG")
        .env_remove("AMQP_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The demo prints its addresses once the load has started; 4 s later (40 s of demo time,
    // the peak load running) the queue holds jobs the pool has not reached. Then Ctrl-C, which
    // is how a user quits the plain view (`q` on the full screen takes the same way out).
    let stderr = child.stderr.take().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.starts_with("warren demo: web ") {
                let _ = started_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    started_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the demo started its load");
    std::thread::sleep(std::time::Duration::from_secs(4));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = reader.join().unwrap();
    assert!(
        output.status.success(),
        "a user's stop is no failure:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("warren demo stopped (Ctrl-C or SIGTERM): "),
        "{stdout}"
    );
    let queued: u64 = stdout
        .split(" still queued ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no still-queued count: {stdout}"));
    assert!(queued > 0, "jobs were still queued at the stop: {stdout}");
    assert!(stdout.contains(" lost 0 "), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "still queued: {queued} accepted jobs had not been processed yet when the demo stopped; they were in queue Orders of the demo's private RabbitMQ node"
        )),
        "{stdout}"
    );

    let report = std::fs::read_dir(cwd.join("reports"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap();
    let totals: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("totals.json")).unwrap())
            .unwrap();
    assert_eq!(totals["lost"], 0, "{totals}");
    assert_eq!(totals["still_queued"], queued, "{totals}");
    assert_eq!(
        totals["processed"].as_u64().unwrap() + queued,
        totals["accepted"].as_u64().unwrap(),
        "{totals}"
    );
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("verdict stopped"), "the page's verdict");
    assert!(
        html.contains(&format!("Stopped with {queued} accepted jobs still queued")),
        "the page's verdict"
    );
    assert!(!html.contains("verdict bad"), "the page claims a loss");

    std::thread::sleep(std::time::Duration::from_millis(500));
    let left = leftovers(pid);
    assert!(left.is_empty(), "left running: {left:#?}");
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn a_hang_up_of_the_demo_s_process_group_leaves_no_prometheus_running() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("Prometheus is not installed: nothing to leave running");
        return;
    }
    let cwd = std::env::temp_dir().join(format!("warren-test-demo-hup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cwd);
    std::fs::create_dir_all(&cwd).unwrap();
    // Its own process group, as a terminal's job is: closing the terminal hangs it up whole.
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["demo", "--speed", "10", "--plain"])
        .current_dir(&cwd)
        .env_remove("HPA_FILE")
        .env_remove("REPORT_DIR")
        .env_remove("RUST_LOG")
        .env_remove("AMQP_URL")
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            if line.unwrap_or_default().starts_with("warren demo: web ") {
                let _ = started_tx.send(());
            }
        }
    });
    started_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the demo started");
    let group = nix::unistd::Pid::from_raw(pid as i32);
    assert!(
        !leftovers(pid).is_empty(),
        "the demo's private processes are found while it runs"
    );
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGHUP).unwrap();
    let _ = child.wait().unwrap();
    reader.join().unwrap();
    // Prometheus takes SIGHUP for "reload": its guard must stop it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut left = leftovers(pid);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        left = leftovers(pid);
    }
    // A failure leaves nothing behind either: what is left is stopped before the verdict.
    for entry in &left {
        let leftover = entry
            .strip_prefix("/proc/")
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse::<i32>().ok());
        if let Some(leftover) = leftover {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(leftover),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    // The demo itself dies of the hang-up without its destructors, so its broker's port mapper
    // (epmd, which daemonizes out of the group) outlives it, found by its working directory:
    // stopped here so the suite leaves nothing running, and not counted above, which is about
    // Prometheus.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let marker = format!(
            "PWD={}/",
            std::env::temp_dir()
                .join(format!("warren-demo-{pid}"))
                .display()
        );
        let stray = String::from_utf8_lossy(&environ)
            .split('\0')
            .any(|v| v.starts_with(&marker));
        let leftover = entry.file_name().to_string_lossy().parse::<i32>().ok();
        if let (true, Some(leftover)) = (stray, leftover) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(leftover),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&cwd);
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("warren-demo-{pid}")));
    assert!(left.is_empty(), "left running: {left:#?}");
}
