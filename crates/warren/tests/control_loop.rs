//! The live loop (`scaling::autoscale::drive`) in-process on tokio's paused clock: a scripted
//! metric, a pool that records each scale call, and a wall clock that follows tokio's, so
//! minutes of syncs take milliseconds and every time below is exact. What `tests/autoscale.rs`
//! proves with real processes (the wiring), this proves of the loop's behaviour: stabilization
//! across a restart (the state file), waking from zero, a metric outage, syncs a period apart
//! on the engine's clock however long each metric read takes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warren::scaling::autoscale::{
    drive, AutoscaleArgs, AutoscaleConfig, AutoscaleEvent, Pool, ReadMetric, WallClock,
};
use warren::scaling::metric_source::SeriesQuery;
use warren::scaling::pool::PoolStatus;
use warren_policy::capacity::Needed;

/// An HPA on the queue's ready messages, 10 per worker, up to 10 workers, with this minimum and
/// this `behavior` (YAML indented under it).
fn hpa(min_replicas: u32, behavior: &str) -> String {
    format!(
        "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: workers}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: workers}}
  minReplicas: {min_replicas}
  maxReplicas: 10
  metrics:
  - type: External
    external:
      metric: {{name: rabbitmq_queue_messages_ready}}
      target: {{type: AverageValue, averageValue: \"10\"}}
  behavior:
{behavior}"
    )
}

/// Scale-up at once, scale-down after a 300 s window.
fn stabilized() -> String {
    hpa(
        1,
        "    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Pods, value: 10, periodSeconds: 15}]
    scaleDown:
      stabilizationWindowSeconds: 300
",
    )
}

/// Doubling at most per 15 s (the shipped HPAs' scale-up policy), no stabilization.
fn doubling() -> String {
    hpa(
        1,
        "    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 100, periodSeconds: 15}]
",
    )
}

/// `minReplicas: 0` and no scale-down window.
fn to_zero() -> String {
    hpa(
        0,
        "    scaleDown:
      stabilizationWindowSeconds: 0
",
    )
}

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: AutoscaleArgs,
}

/// A fresh directory under the system's temp dir, for one test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("warren-control-loop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(dir: &Path, hpa: &str, state_file: bool) -> AutoscaleConfig {
    let manifest = dir.join("hpa.yaml");
    std::fs::write(&manifest, hpa).unwrap();
    let state = dir.join("state.json");
    let mut argv = vec![
        "autoscale".to_owned(),
        "--hpa".to_owned(),
        manifest.display().to_string(),
        "--sync-period=15s".to_owned(),
        "--first-metric-wait=0s".to_owned(),
        "--metrics-port=0".to_owned(),
    ];
    if state_file {
        argv.push(format!("--state-file={}", state.display()));
    }
    Cmd::try_parse_from(argv).unwrap().args.to_config().unwrap()
}

/// The test's one clock: seconds since it started, on tokio's (paused) clock.
#[derive(Clone, Copy)]
struct TestTime(Instant);

impl TestTime {
    fn secs(self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// The wall clock the state file reads, moving with tokio's, so the time between two runs
/// counts as a restart's downtime does.
struct TestWallClock(TestTime);

impl WallClock for TestWallClock {
    fn unix_ms(&self) -> u64 {
        1_800_000_000_000 + self.0 .0.elapsed().as_millis() as u64
    }
}

/// The metric's value at each second of the test, or why it cannot be read.
struct Script {
    time: TestTime,
    value: fn(f64) -> Result<f64, String>,
}

impl ReadMetric for Script {
    async fn read(
        &self,
        _query: &SeriesQuery,
        _worker_ports: &[u16],
    ) -> Result<(f64, Option<Needed>), String> {
        (self.value)(self.time.secs()).map(|v| (v, None))
    }
}

/// A metric of 1000 whose read takes 30 ms at even syncs and 10 ms at odd ones, as a live
/// read's time moves with the machine's load.
struct SlowRead {
    time: TestTime,
}

impl ReadMetric for SlowRead {
    async fn read(
        &self,
        _query: &SeriesQuery,
        _worker_ports: &[u16],
    ) -> Result<(f64, Option<Needed>), String> {
        let sync = (self.time.secs() / 15.0).round() as u64;
        let ms = if sync.is_multiple_of(2) { 30 } else { 10 };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok((1000.0, None))
    }
}

/// A pool whose workers are ready at once; it records each scale call: (second, target).
struct FakePool {
    time: TestTime,
    current: u32,
    calls: Arc<Mutex<Vec<(f64, u32)>>>,
}

impl Pool for FakePool {
    async fn scale_to(&mut self, target: u32) {
        self.calls.lock().unwrap().push((self.time.secs(), target));
        self.current = target;
    }
    async fn refresh(&mut self) -> PoolStatus {
        self.status()
    }
    fn status(&self) -> PoolStatus {
        PoolStatus {
            current: self.current,
            ready: self.current,
            stopping: 0,
            restarts: 0,
        }
    }
    fn metrics_ports(&self) -> Vec<u16> {
        Vec::new()
    }
    async fn shutdown(&mut self) {}
    fn worker_seconds(&self) -> f64 {
        0.0
    }
}

/// What one run did: its scale calls and its decision events.
struct Run {
    calls: Vec<(f64, u32)>,
    events: Vec<(f64, AutoscaleEvent)>,
}

/// Runs the loop from now until `until_secs` of test time, then stops it.
async fn run_until(
    time: TestTime,
    config: AutoscaleConfig,
    value: fn(f64) -> Result<f64, String>,
    until_secs: f64,
) -> Run {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let pool = FakePool {
        time,
        current: 0,
        calls: calls.clone(),
    };
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            drive(
                config,
                Script { time, value },
                pool,
                &TestWallClock(time),
                shutdown,
                Some(tx),
            )
            .await
        }
    });
    let mut events = Vec::new();
    let deadline = time.0 + Duration::from_secs_f64(until_secs);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            event = rx.recv() => events.push((time.secs(), event.expect("the loop runs"))),
        }
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let calls = calls.lock().unwrap().clone();
    Run { calls, events }
}

fn high_then_idle(t: f64) -> Result<f64, String> {
    Ok(if t < 60.0 { 50.0 } else { 0.0 })
}

#[tokio::test(start_paused = true)]
async fn a_restart_inside_the_stabilization_window_keeps_the_window_with_the_state_file() {
    let dir = scratch("restart");
    let time = TestTime(Instant::now());
    // 50 ready at 10 per worker: 5 workers until 60 s, then nothing to do.
    let first = run_until(
        time,
        config(&dir, &stabilized(), true),
        high_then_idle,
        120.0,
    )
    .await;
    assert_eq!(first.calls, vec![(0.0, 1), (0.0, 5)], "{:?}", first.calls);
    // Restarted at 120 s: it resumes at 5 and holds them until 300 s after the last sync that
    // saw the load (45 s), as the controller would have had it not restarted.
    let second = run_until(
        time,
        config(&dir, &stabilized(), true),
        high_then_idle,
        600.0,
    )
    .await;
    assert_eq!(
        second.calls.first(),
        Some(&(120.0, 5)),
        "{:?}",
        second.calls
    );
    let down: Vec<_> = second.calls[1..].to_vec();
    assert_eq!(down.len(), 1, "one scale-down: {down:?}");
    let (at, to) = down[0];
    assert_eq!(to, 1);
    assert!((345.0..=360.0).contains(&at), "scaled down at {at} s");
    for (t, event) in &second.events {
        if *t < 345.0 {
            assert!(
                event.decision.reasons.contains("ScaleDownStabilized"),
                "{t}: {}",
                event.decision.reasons
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_restart_without_the_state_file_forgets_the_window() {
    let dir = scratch("no-state");
    let time = TestTime(Instant::now());
    let first = run_until(
        time,
        config(&dir, &stabilized(), false),
        high_then_idle,
        120.0,
    )
    .await;
    assert_eq!(first.calls, vec![(0.0, 1), (0.0, 5)], "{:?}", first.calls);
    // A fresh controller at 120 s: it starts the pool at its minimum, and nothing holds 5.
    let second = run_until(
        time,
        config(&dir, &stabilized(), false),
        high_then_idle,
        600.0,
    )
    .await;
    assert_eq!(second.calls, vec![(120.0, 1)], "{:?}", second.calls);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_pool_scaled_to_zero_is_woken_by_the_metric() {
    let dir = scratch("zero");
    let time = TestTime(Instant::now());
    // Nothing to do for 200 s, then 30 ready.
    let run = run_until(
        time,
        config(&dir, &to_zero(), false),
        |t| Ok(if t < 200.0 { 0.0 } else { 30.0 }),
        300.0,
    )
    .await;
    // Starts at 1 (a Deployment's own count), the controller takes it to 0, and the first
    // sync that sees the messages wakes it to 3.
    assert_eq!(
        run.calls,
        vec![(0.0, 1), (0.0, 0), (210.0, 3)],
        "{:?}",
        run.calls
    );
    let at_zero: Vec<_> = run
        .events
        .iter()
        .filter(|(t, _)| (15.0..200.0).contains(t))
        .collect();
    assert!(!at_zero.is_empty());
    for (t, event) in at_zero {
        assert_eq!(event.decision.current, 0, "{t}");
        assert!(
            event.decision.reasons.contains("ScaledToZero=ScaledToZero"),
            "{t}: {}",
            event.decision.reasons
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_metric_outage_keeps_the_count_until_the_metric_returns() {
    let dir = scratch("outage");
    let time = TestTime(Instant::now());
    // 5 workers' worth until 60 s, the source down until 600 s, then an empty queue.
    let run = run_until(
        time,
        config(&dir, &stabilized(), false),
        |t| match t {
            t if t < 60.0 => Ok(50.0),
            t if t < 600.0 => Err("connection refused".to_owned()),
            _ => Ok(0.0),
        },
        700.0,
    )
    .await;
    // Nothing changes during the outage, though the window ran out long before it ended; the
    // first sync with a value scales down.
    assert_eq!(
        run.calls,
        vec![(0.0, 1), (0.0, 5), (600.0, 1)],
        "{:?}",
        run.calls
    );
    let outage: Vec<_> = run
        .events
        .iter()
        .filter(|(t, _)| (60.0..600.0).contains(t))
        .collect();
    assert_eq!(outage.len(), 36, "a sync every 15 s");
    for (t, event) in outage {
        assert_eq!(event.decision.metric_values, vec![None], "{t}");
        assert!(!event.decision.rescale, "{t}");
        assert!(
            event.decision.reasons.contains("FailedGetExternalMetric"),
            "{t}: {}",
            event.decision.reasons
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_quicker_read_does_not_put_a_sync_inside_the_last_steps_period() {
    let dir = scratch("slow-read");
    let time = TestTime(Instant::now());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let pool = FakePool {
        time,
        current: 0,
        calls: calls.clone(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        let config = config(&dir, &doubling(), false);
        async move {
            drive(
                config,
                SlowRead { time },
                pool,
                &TestWallClock(time),
                shutdown,
                None,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_secs(50)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    // The sync at 15 s reads 20 ms quicker than the one at 0 s did: on the read's clock it
    // would come 14.98 s after the step to 2, inside the policy's 15 s, and be held at 2.
    let targets: Vec<u32> = calls.lock().unwrap().iter().map(|&(_, n)| n).collect();
    assert_eq!(targets, vec![1, 2, 4, 8, 10], "{:?}", calls.lock().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}
