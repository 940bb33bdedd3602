//! Workers warren did not write: a Python producer and consumer (pika, from the project's
//! `.venv`, which `scripts/setup` fills from `tests/foreign/requirements.txt`) on a queue not
//! named Orders, in a vhost of their own, with a 2 s job. `warren autoscale --worker-command`
//! scales the consumer on the capacity metric computed from the broker alone: up under load,
//! back down to min, nothing the producer had confirmed left unacked. And under steady load
//! that metric's arrival rate and work time agree with the producer's own rate and the
//! consumer's own sleep, while the producer reconnects every second (on RabbitMQ 3.10 its
//! per-channel series come and go) and with prefetch 4 (unacked messages waiting in a
//! consumer's buffer are not work). Each test prints its figures (`--no-capture`).
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;
use warren::records::DecisionRecord;

/// The consumer's job, in seconds: not warren's 5 s.
const WORK_SECS: f64 = 2.0;

fn foreign(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/foreign")
        .join(file)
}

/// The project's `.venv` python, with pika.
fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (scripts/test does), which installs pika there",
        python.display()
    );
    python
}

fn rabbit_prometheus_url() -> String {
    std::env::var("WARREN_TEST_RABBIT_PROMETHEUS_URL")
        .expect("WARREN_TEST_RABBIT_PROMETHEUS_URL is not set: run the tests with scripts/test")
}

/// A vhost of the test's own on the test broker, the broker's user allowed in it; its URL.
struct Vhost {
    name: String,
    url: String,
    management: String,
    user: (String, String),
}

impl Vhost {
    async fn create(test: &str) -> Self {
        let management = std::env::var("WARREN_TEST_RABBIT_MANAGEMENT_URL").expect(
            "WARREN_TEST_RABBIT_MANAGEMENT_URL is not set: run the tests with scripts/test",
        );
        let name = unique_queue(&format!("vhost-{test}"));
        let mut url = url::Url::parse(&broker_url()).unwrap();
        let user = (
            url.username().to_owned(),
            url.password().unwrap_or_default().to_owned(),
        );
        url.path_segments_mut().unwrap().clear().push(&name);
        let vhost = Self {
            url: url.to_string(),
            name,
            management,
            user,
        };
        let http = reqwest::Client::new();
        let encoded =
            url::form_urlencoded::byte_serialize(vhost.name.as_bytes()).collect::<String>();
        for (path, body) in [
            (format!("/api/vhosts/{encoded}"), serde_json::json!({})),
            (
                format!("/api/permissions/{encoded}/{}", vhost.user.0),
                serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
            ),
        ] {
            let response = http
                .put(format!("{}{path}", vhost.management))
                .basic_auth(&vhost.user.0, Some(&vhost.user.1))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "PUT {path}: {}",
                response.status()
            );
        }
        vhost
    }

    async fn delete(&self) {
        let encoded =
            url::form_urlencoded::byte_serialize(self.name.as_bytes()).collect::<String>();
        let _ = reqwest::Client::new()
            .delete(format!("{}/api/vhosts/{encoded}", self.management))
            .basic_auth(&self.user.0, Some(&self.user.1))
            .send()
            .await;
    }

    /// The queue's ready and unacked counts, from the management API.
    async fn queue_counts(&self, queue: &str) -> Option<(u64, u64)> {
        let encoded =
            url::form_urlencoded::byte_serialize(self.name.as_bytes()).collect::<String>();
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/queues/{encoded}/{queue}", self.management))
            .basic_auth(&self.user.0, Some(&self.user.1))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some((
            body.get("messages_ready")?.as_u64()?,
            body.get("messages_unacknowledged")?.as_u64()?,
        ))
    }
}

/// The foreign producer, running: publishes `rate` a second for `seconds`.
struct Producer {
    child: Child,
    confirmed: PathBuf,
}

impl Producer {
    fn start(
        vhost: &Vhost,
        queue: &str,
        rate: f64,
        seconds: f64,
        reconnect_every: f64,
        dir: &Path,
    ) -> Self {
        let confirmed = dir.join(format!("confirmed-{}.txt", free_port()));
        let child = Command::new(python())
            .arg(foreign("producer.py"))
            .args([
                "--queue",
                queue,
                "--rate",
                &rate.to_string(),
                "--seconds",
                &seconds.to_string(),
            ])
            .args(["--reconnect-every", &reconnect_every.to_string()])
            .arg("--confirmed")
            .arg(&confirmed)
            .env("AMQP_URL", &vhost.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child, confirmed }
    }

    /// Waits for the end; its summary line.
    fn finish(self) -> (serde_json::Value, HashSet<String>) {
        let output = self.child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "the producer failed: {:?}",
            output.status
        );
        let summary = serde_json::from_slice(&output.stdout).unwrap();
        (summary, read_ids(&self.confirmed))
    }
}

fn read_ids(path: &Path) -> HashSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every id the consumers acked (their files in `dir`), and how many acks there were.
fn acked(dir: &Path) -> (HashSet<String>, usize) {
    let mut ids = HashSet::new();
    let mut acks = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("acked-")
        {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                acks += 1;
                ids.insert(line.to_owned());
            }
        }
    }
    (ids, acks)
}

/// `warren autoscale --worker-command <the foreign consumer>`, logging to `dir/autoscale.log`.
struct Autoscale {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Autoscale {
    fn start(
        dir: &Path,
        hpa: &str,
        vhost: &Vhost,
        queue: &str,
        source: &[(&str, String)],
        consumer: &[&str],
    ) -> Self {
        let hpa_path = dir.join("hpa.yaml");
        std::fs::write(&hpa_path, hpa).unwrap();
        let log = dir.join("autoscale.log");
        let port = free_port();
        let acked_dir = dir.join("acked");
        std::fs::create_dir_all(&acked_dir).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("autoscale")
            .envs(source.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("RUST_LOG")
            .env("AMQP_URL", &vhost.url)
            .env("QUEUE", queue)
            .env("HPA_FILE", &hpa_path)
            .env("AUTOSCALER_METRICS_PORT", port.to_string())
            .env("WORKER_LOG_DIR", dir.join("workers"))
            .env("WORKER_BUSY_METRIC", "jobs_in_hand")
            .env("WORKER_STOP_TIMEOUT", "15s")
            .arg("--worker-command")
            .arg(python())
            .arg(foreign("consumer.py"))
            .args(["--work", &WORK_SECS.to_string(), "--metrics", "--acked"])
            .arg(&acked_dir)
            .args(consumer)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log, port }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The decision records logged so far.
    fn decision_lines(&self) -> Vec<DecisionRecord> {
        decision_records(&self.log_text())
    }

    async fn replicas(&self) -> Option<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(metric(&text, "autoscaler_current_replicas", ""))
    }

    fn decisions(&self) -> String {
        show_decisions(&self.decision_lines())
    }

    async fn stop(&mut self) -> Option<i32> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("autoscale did not stop within 30 s:\n{}", self.log_text());
    }
}

impl Drop for Autoscale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- autoscale log:\n{}", self.log_text());
        }
    }
}

/// An HPA on one External metric of the queue in its vhost, 1 to `max` workers, windows short
/// enough for a test (at SPEED 10).
fn manifest(metric: &str, vhost: &str, queue: &str, target: &str, max: u32) -> String {
    format!(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: emails-consumer
  namespace: mail
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: emails-consumer
  minReplicas: 1
  maxReplicas: {max}
  metrics:
    - type: External
      external:
        metric:
          name: {metric}
          selector:
            matchLabels:
              vhost: "{vhost}"
              queue: "{queue}"
        target:
          type: AverageValue
          averageValue: "{target}"
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies:
        - type: Pods
          value: 4
          periodSeconds: 15
    scaleDown:
      stabilizationWindowSeconds: 30
      policies:
        - type: Percent
          value: 100
          periodSeconds: 15
"#
    )
}

/// Runs the load through an autoscaled pool of the foreign consumer and checks it scaled up,
/// drained, came back to 1 and lost nothing.
/// `back_to_min` bounds the wait for 1 consumer once the queue is empty.
async fn scales_up_and_back_down(
    load: &Load,
    hpa: &str,
    source: &[(&str, String)],
    back_to_min: Duration,
) {
    let Load { vhost, queue, dir } = load;
    let mut autoscale = Autoscale::start(dir, hpa, vhost, queue, source, &["--prefetch", "1"]);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            autoscale.replicas().await == Some(1.0)
        })
        .await,
        "the pool starts at minReplicas"
    );
    let started = Instant::now();
    // 4 a second for 15 s against 0.5 a second per worker.
    let producer = Producer::start(vhost, queue, 4.0, 15.0, 0.0, dir);
    let peak = std::cell::Cell::new(0.0_f64);
    let (peak, autoscale_ref) = (&peak, &autoscale);
    let scaled_up = wait_until(Duration::from_secs(40), || async move {
        peak.set(
            peak.get()
                .max(autoscale_ref.replicas().await.unwrap_or(0.0)),
        );
        peak.get() >= 4.0
    })
    .await;
    assert!(
        scaled_up,
        "scaled up to at least 4 consumers (peak {}); decisions:\n{}",
        peak.get(),
        autoscale.decisions()
    );
    let (summary, confirmed) = tokio::task::spawn_blocking(move || producer.finish())
        .await
        .unwrap();
    let drained = wait_until(Duration::from_secs(60), || async {
        vhost.queue_counts(queue).await == Some((0, 0))
    })
    .await;
    assert!(
        drained,
        "the consumers emptied the queue; decisions:\n{}",
        autoscale.decisions()
    );
    let drained_after = started.elapsed();
    assert!(
        wait_until(back_to_min, || async move {
            autoscale_ref.replicas().await == Some(1.0)
        })
        .await,
        "back to minReplicas once the queue was empty; decisions:\n{}",
        autoscale.decisions()
    );
    let at_min_after = started.elapsed();
    assert_eq!(
        autoscale.stop().await,
        Some(0),
        "autoscale exits 0 after stopping its consumers"
    );
    let log = autoscale.log_text();
    assert!(
        log.contains("stopping worker (SIGTERM, drains its jobs)"),
        "{log}"
    );
    assert!(
        !log.contains(&format!("{}:{}@", vhost.user.0, vhost.user.1)),
        "the broker password stays out of the log"
    );

    let peak = peak.get();
    let (acked, acks) = acked(&dir.join("acked"));
    let lost: Vec<&String> = confirmed.difference(&acked).collect();
    assert!(
        lost.is_empty(),
        "{} confirmed ids never acked: {lost:?}",
        lost.len()
    );
    assert!(!confirmed.is_empty());
    println!(
        "foreign consumer, warren_workers_needed from {}: {} confirmed ({:.2}/s), {acks} acks of {} ids, peak {peak} consumers, queue empty after {:.1} s, back at 1 after {:.1} s",
        source[0].1,
        confirmed.len(),
        summary["rate"].as_f64().unwrap_or(0.0),
        acked.len(),
        drained_after.as_secs_f64(),
        at_min_after.as_secs_f64(),
    );
}

/// A vhost, queue and scratch directory of one test's own.
struct Load {
    vhost: Vhost,
    queue: String,
    dir: PathBuf,
}

impl Load {
    async fn new(test: &str) -> Self {
        let vhost = Vhost::create(test).await;
        let queue = unique_queue("emails");
        let dir = std::env::temp_dir().join(format!("warren-test-{queue}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self { vhost, queue, dir }
    }

    async fn remove(self) {
        self.vhost.delete().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_consumers_scale_up_and_back_down_on_the_broker_only_capacity_metric_losing_nothing(
) {
    let source = [
        ("METRIC_SOURCE", "broker".to_owned()),
        ("RABBIT_PROMETHEUS_URL", rabbit_prometheus_url()),
        ("SPEED", "10".to_owned()),
    ];
    let load = Load::new("capacity").await;
    let hpa = manifest(
        "warren_workers_needed",
        &load.vhost.name,
        &load.queue,
        "1",
        6,
    );
    scales_up_and_back_down(&load, &hpa, &source, Duration::from_secs(40)).await;
    load.remove().await;
}

/// `warren rules` for the queue: the given document (`--only`).
fn warren_rules(load: &Load, only: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["rules", "--queue", &load.queue, "--vhost", &load.vhost.name])
        .args([
            "--deployment",
            "emails-consumer",
            "--namespace",
            "mail",
            "--max",
            "6",
        ])
        .args(["--only", only])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The same, through a private Prometheus evaluating the rules `warren rules` printed for the
/// queue, with the HPA it printed (its scale-down window, 60 s, passes in 6 s at SPEED 10; the
/// rules' windows are Prometheus's, in wall-clock time: the arrival rate's minute must pass
/// after the load before the metric falls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_consumers_scale_up_and_back_down_through_prometheus_on_the_rules_warren_rules_printed(
) {
    use warren::lab::prometheus_node::{find_prometheus, PrometheusNode, ScrapeTargets};
    let prometheus = find_prometheus()
        .expect("prometheus is missing: scripts/setup installs Debian's prometheus package");
    let load = Load::new("prometheus").await;
    let rules = load.dir.join("rules.yml");
    std::fs::write(&rules, warren_rules(&load, "rules")).unwrap();
    let hpa = warren_rules(&load, "hpa");
    let targets = ScrapeTargets {
        rabbitmq: rabbit_prometheus_url()
            .trim_start_matches("http://")
            .to_owned(),
        // No web server here: a target that is down is all it costs.
        web: format!("127.0.0.1:{}", free_port()),
        autoscaler: format!("127.0.0.1:{}", free_port()),
        workers_file_sd: load.dir.join("workers.json"),
        rule_files: vec![rules],
        interval: Duration::from_secs(1),
    };
    let mut node = PrometheusNode::start(&prometheus, &load.dir.join("prometheus"), &targets)
        .await
        .unwrap();
    let source = [
        ("METRIC_SOURCE", "prometheus".to_owned()),
        ("PROMETHEUS_URL", node.url()),
        ("SPEED", "10".to_owned()),
        // The rules' series appear once the broker reports the queue a consumer declares.
        ("FIRST_METRIC_WAIT", "300s".to_owned()),
    ];
    scales_up_and_back_down(&load, &hpa, &source, Duration::from_secs(120)).await;
    node.stop().await;
    load.remove().await;
}

/// A capacity term of a decision record: `arrival_rate`, `work_secs` or `backlog`.
fn field(d: &DecisionRecord, name: &str) -> f64 {
    let terms = d
        .metrics
        .first()
        .and_then(|m| m.terms)
        .unwrap_or_else(|| panic!("no capacity terms in {d:?}"));
    match name {
        "arrival_rate" => terms.arrival_rate,
        "work_secs" => terms.work_secs,
        "backlog" => terms.backlog,
        _ => panic!("no term {name}"),
    }
}

/// Runs a fixed pool of `consumers` foreign consumers (an HPA with min = max, on the
/// broker-only capacity metric) under a steady producer, and compares the metric's arrival
/// rate and work time, from every decision taken once the arrival window lay wholly inside the
/// load, with the producer's own rate and the consumer's own sleep.
async fn estimate_matches_ground_truth(
    test: &str,
    consumers: u32,
    prefetch: u32,
    rate: f64,
    reconnect_every: f64,
) {
    // The engine's clock at 10x: a decision every second of wall time; the 60 s arrival
    // window is 6 s of it. The work time is a mean over 300 s of each scrape's finish rate over
    // the minute before it (as the rules compute it), so it is steady 360 s (36 s of wall
    // time) into the load, once the minute in which that rate was still rising has left it.
    const SPEED: f64 = 10.0;
    const LOAD_SECS: f64 = 60.0;
    let vhost = Vhost::create(test).await;
    let queue = unique_queue("emails");
    let dir = std::env::temp_dir().join(format!("warren-test-{queue}"));
    std::fs::create_dir_all(&dir).unwrap();
    let hpa = manifest("warren_workers_needed", &vhost.name, &queue, "1", consumers)
        .replace("minReplicas: 1", &format!("minReplicas: {consumers}"));
    let env = [
        ("METRIC_SOURCE", "broker".to_owned()),
        ("RABBIT_PROMETHEUS_URL", rabbit_prometheus_url()),
        ("SPEED", SPEED.to_string()),
        ("SYNC_PERIOD", "10s".to_owned()),
    ];
    let prefetch = prefetch.to_string();
    let autoscale = Autoscale::start(&dir, &hpa, &vhost, &queue, &env, &["--prefetch", &prefetch]);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            autoscale.replicas().await == Some(f64::from(consumers))
        })
        .await,
        "{consumers} consumers"
    );
    let producer = Producer::start(&vhost, &queue, rate, LOAD_SECS, reconnect_every, &dir);
    let started = Instant::now();
    // Decisions whose windows lie wholly inside the load, each taken at most a second before
    // it is seen here.
    let arrival_window = Duration::from_secs_f64(60.0 / SPEED + 1.0);
    let work_window = Duration::from_secs_f64(360.0 / SPEED + 1.0);
    tokio::time::sleep(arrival_window).await;
    let arrival_from = autoscale.decision_lines().len();
    tokio::time::sleep(work_window - arrival_window).await;
    let work_from = autoscale.decision_lines().len();
    tokio::time::sleep(Duration::from_secs_f64(LOAD_SECS - 1.0) - work_window).await;
    let all = autoscale.decision_lines();
    let lines: Vec<DecisionRecord> = all[arrival_from..].to_vec();
    let work_lines: Vec<DecisionRecord> = all[work_from..].to_vec();
    assert!(
        started.elapsed() < Duration::from_secs_f64(LOAD_SECS),
        "judged within the load"
    );
    let (summary, confirmed) = tokio::task::spawn_blocking(move || producer.finish())
        .await
        .unwrap();
    let true_rate = summary["rate"].as_f64().unwrap();
    let connections = summary["connections"].as_f64().unwrap();
    assert!(
        work_lines.len() >= 15,
        "a decision a second: {work_lines:?}"
    );
    let arrivals: Vec<f64> = lines
        .iter()
        .map(|l| field(l, "arrival_rate") * SPEED)
        .collect();
    let works: Vec<f64> = work_lines
        .iter()
        .map(|l| field(l, "work_secs") / SPEED)
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (arrival, work) = (mean(&arrivals), mean(&works));
    let arrival_error = (arrival - true_rate).abs() / true_rate;
    let work_error = (work - WORK_SECS).abs() / WORK_SECS;
    let range = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{min:.3}..{max:.3}")
    };
    println!(
        "estimate vs ground truth ({test}: {consumers} consumers, prefetch {prefetch}, producer reconnecting every {reconnect_every} s, {connections} connections, {} confirmed): \
         arrival rate {arrival:.3}/s (each decision {}) vs the producer's {true_rate:.3}/s: {:.1} % off; \
         work time {work:.3} s (each decision {}) vs the consumer's sleep {WORK_SECS} s: {:.1} % off; \
         means over the {} and {} decisions taken once each window lay within the load, at --speed {SPEED}",
        confirmed.len(),
        range(&arrivals),
        arrival_error * 100.0,
        range(&works),
        work_error * 100.0,
        lines.len(),
        work_lines.len(),
    );
    assert!(
        arrival_error < 0.10,
        "arrival rate {arrival} vs {true_rate}; decisions:\n{}",
        show_decisions(&lines)
    );
    assert!(
        work_error < 0.10,
        "work time {work} vs {WORK_SECS}; decisions:\n{}",
        show_decisions(&work_lines)
    );
    drop(autoscale);
    vhost.delete().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// 1.5 a second against 4 consumers of 2 s (75 % busy), the producer on a new connection every
/// second: on RabbitMQ 3.10 its per-channel publish counters come and go faster than the
/// metric reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_estimate_matches_the_producers_rate_and_the_consumers_sleep_while_the_producer_reconnects(
) {
    estimate_matches_ground_truth("reconnecting", 4, 1, 1.5, 1.0).await;
}

/// 1.5 a second against 2 consumers of 2 s with prefetch 4: a backlog builds, each consumer
/// holds 4 unacked messages but works on one; the work time still reads 2 s, not up to 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_prefetch_4_the_broker_work_time_is_the_sleep_not_the_time_in_the_buffer() {
    estimate_matches_ground_truth("prefetch", 2, 4, 1.5, 1.0).await;
}
