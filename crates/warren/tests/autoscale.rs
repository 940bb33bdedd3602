//! `warren autoscale` against the real broker: the HPA engine scales a pool of real workers.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;
use warren_hpa::{Autoscaler, MetricObservation, ScaleTarget, Timestamp};

/// An HPA like the shipped one, on the test's queue, with windows short enough for a test.
fn manifest(queue: &str, max: u32, scale_down_window: u32) -> String {
    format!(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: test-workers
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: warren-worker
  minReplicas: 1
  maxReplicas: {max}
  metrics:
    - type: External
      external:
        metric:
          name: rabbitmq_queue_messages_ready
          selector:
            matchLabels:
              queue: {queue}
        target:
          type: AverageValue
          averageValue: "5"
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies:
        - type: Pods
          value: 4
          periodSeconds: 15
    scaleDown:
      stabilizationWindowSeconds: {scale_down_window}
      policies:
        - type: Percent
          value: 100
          periodSeconds: 15
"#
    )
}

struct AutoscaleProcess {
    child: Child,
    log: PathBuf,
    worker_logs: PathBuf,
    port: u16,
}

impl AutoscaleProcess {
    fn start(dir: &Path, hpa: &str, queue: &str, rabbit_prometheus: &str, work_ms: u64) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let hpa_path = dir.join("hpa.yaml");
        std::fs::write(&hpa_path, hpa).unwrap();
        let log = dir.join("autoscale.log");
        let worker_logs = dir.join("workers");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("autoscale")
            .env_remove("RUST_LOG")
            .env("AMQP_URL", broker_url())
            .env("QUEUE", queue)
            .env("HPA_FILE", &hpa_path)
            .env("RABBIT_PROMETHEUS_URL", rabbit_prometheus)
            .env("SPEED", "10")
            .env("WORK_MS", work_ms.to_string())
            .env("GRACE_MS", "5000")
            .env("AUTOSCALER_METRICS_PORT", port.to_string())
            .env("WORKER_LOG_DIR", &worker_logs)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            log,
            worker_logs,
            port,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn gauge(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(metric(&text, name, ""))
    }

    fn decisions(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(" decision "))
            .map(str::to_owned)
            .collect()
    }

    async fn stop(&mut self) -> Option<i32> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("autoscale did not stop within 20 s:\n{}", self.log_text());
    }
}

impl Drop for AutoscaleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- autoscale log:\n{}", self.log_text());
        }
    }
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {line}"))
        + key.len();
    line[start..].split_whitespace().next().unwrap()
}

fn rabbit_prometheus_url() -> String {
    std::env::var("WARREN_TEST_RABBIT_PROMETHEUS_URL")
        .expect("WARREN_TEST_RABBIT_PROMETHEUS_URL is not set: run the tests with scripts/test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_scales_the_pool_up_and_back_down_losing_nothing_with_the_engines_decisions() {
    let queue = unique_queue("burst");
    let dir = std::env::temp_dir().join(format!("warren-test-{queue}"));
    let hpa = manifest(&queue, 4, 30);
    let mut autoscale = AutoscaleProcess::start(&dir, &hpa, &queue, &rabbit_prometheus_url(), 400);
    let web = Warren::web(&broker_url(), &queue, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    let started = wait_until(Duration::from_secs(15), || async {
        autoscale.gauge("autoscaler_current_replicas").await == Some(1.0)
    })
    .await;
    assert!(started, "the pool starts at minReplicas");

    let accepted: Vec<String> = get_text(&web.url("/generate?count=80"))
        .await
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(accepted.len(), 80);
    let peak = Arc::new(AtomicI64::new(0));
    let scaled_up = wait_until(Duration::from_secs(30), || {
        let peak = peak.clone();
        let autoscale = &autoscale;
        async move {
            let current = autoscale
                .gauge("autoscaler_current_replicas")
                .await
                .unwrap_or(0.0) as i64;
            peak.fetch_max(current, Ordering::Relaxed);
            current >= 4
        }
    })
    .await;
    assert!(
        scaled_up,
        "scaled up to 4 workers; decisions:\n{}",
        autoscale.decisions().join("\n")
    );

    let connection = amqp(&broker_url()).await;
    let drained = wait_until(Duration::from_secs(60), || async {
        queue_depth(&connection, &queue).await == Some(0)
    })
    .await;
    assert!(drained, "the workers emptied the queue");
    let scaled_down = wait_until(Duration::from_secs(40), || async {
        autoscale.gauge("autoscaler_current_replicas").await == Some(1.0)
    })
    .await;
    assert!(
        scaled_down,
        "back to minReplicas; decisions:\n{}",
        autoscale.decisions().join("\n")
    );
    assert_eq!(
        autoscale.stop().await,
        Some(0),
        "autoscale exits 0 after draining its workers"
    );

    // Nothing lost: every accepted job was acked by some worker.
    let mut ledger = warren::lab::ledger::Ledger::new();
    ledger.read_dir(&autoscale.worker_logs).unwrap();
    assert_eq!(ledger.lost(&accepted), Vec::<String>::new());
    assert!(autoscale
        .log_text()
        .contains("stopping worker (SIGTERM, drains its jobs)"));

    // Every decision is the engine's for the inputs the autoscaler observed.
    let mut engine = Autoscaler::from_yaml(&hpa).unwrap();
    let decisions = autoscale.decisions();
    assert!(decisions.len() >= 5, "{decisions:?}");
    for line in &decisions {
        let value = field(line, "value");
        let observation = match value.parse::<f64>() {
            Ok(v) => MetricObservation::External(vec![(v * 1000.0).round() as i64]),
            Err(_) => MetricObservation::Unavailable(value.to_owned()),
        };
        let target = ScaleTarget::workers(
            field(line, "current").parse().unwrap(),
            field(line, "ready").parse().unwrap(),
        );
        let at = Timestamp::from_millis(field(line, "engine_ms").parse().unwrap());
        let replayed = engine.evaluate(at, &target, &[observation]);
        assert_eq!(
            replayed.desired_replicas.to_string(),
            field(line, "desired"),
            "{line}"
        );
        assert_eq!(
            replayed.rescale.to_string(),
            field(line, "rescale"),
            "{line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    delete_queues(&connection, &queue).await;
}

/// A stand-in for the broker's metrics endpoint that the test can take down and bring back.
async fn metrics_endpoint(queue: String, ready: Arc<AtomicI64>) -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics/detailed",
        get(move || {
            let (queue, ready) = (queue.clone(), ready.clone());
            async move {
                match ready.load(Ordering::Relaxed) {
                    n if n < 0 => (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
                    n => (
                        axum::http::StatusCode::OK,
                        format!("rabbitmq_detailed_queue_messages_ready{{vhost=\"/\",queue=\"{queue}\"}} {n}\n"),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_scaling_while_the_metric_source_is_down_and_normal_scaling_once_it_returns() {
    let queue = unique_queue("source-down");
    let dir = std::env::temp_dir().join(format!("warren-test-{queue}"));
    let ready = Arc::new(AtomicI64::new(-1));
    let endpoint = metrics_endpoint(queue.clone(), ready.clone()).await;
    let mut autoscale =
        AutoscaleProcess::start(&dir, &manifest(&queue, 4, 0), &queue, &endpoint, 100);

    let failing = wait_until(Duration::from_secs(20), || async {
        autoscale
            .decisions()
            .iter()
            .filter(|l| l.contains("ScalingActive=FailedGetExternalMetric"))
            .count()
            >= 3
    })
    .await;
    assert!(
        failing,
        "decisions report the unreadable metric:\n{}",
        autoscale.log_text()
    );
    assert_eq!(
        autoscale.gauge("autoscaler_current_replicas").await,
        Some(1.0),
        "no scaling while down"
    );
    assert!(autoscale
        .decisions()
        .iter()
        .all(|l| field(l, "rescale") == "false"));

    ready.store(20, Ordering::Relaxed);
    let scaled = wait_until(Duration::from_secs(15), || async {
        autoscale.gauge("autoscaler_current_replicas").await == Some(4.0)
    })
    .await;
    assert!(
        scaled,
        "scales once the source is back:\n{}",
        autoscale.decisions().join("\n")
    );
    assert!(autoscale
        .decisions()
        .iter()
        .any(|l| l.contains("ScalingActive=ValidMetricFound")));
    assert_eq!(autoscale.stop().await, Some(0));
    let _ = std::fs::remove_dir_all(&dir);
    delete_queues(&amqp(&broker_url()).await, &queue).await;
}

#[test]
fn a_misspelled_manifest_field_exits_2_naming_its_path_and_the_field_meant() {
    let dir = std::env::temp_dir().join(format!("warren-test-typohpa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hpa.yaml");
    std::fs::write(
        &path,
        manifest("q", 4, 30).replace(
            "stabilizationWindowSeconds: 30",
            "stabilizationWindowSecond: 30",
        ),
    )
    .unwrap();
    for command in ["autoscale", "demo"] {
        let output = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args([command, "--hpa"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
        assert!(
            stderr.contains(
                "spec.behavior.scaleDown.stabilizationWindowSecond: unknown field (did you mean stabilizationWindowSeconds?)"
            ),
            "{command}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_manifest_the_api_server_would_reject_exits_2_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("warren-test-badhpa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hpa.yaml");
    std::fs::write(
        &path,
        manifest("q", 4, 30).replace("maxReplicas: 4", "maxReplicas: 0"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["autoscale", "--hpa"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("spec.maxReplicas"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
