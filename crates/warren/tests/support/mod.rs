//! Fixtures for the integration tests: the real broker `scripts/test` starts, `warren` processes,
//! queue inspection and waiting helpers. Each test uses its own queue, so tests run in parallel.
#![allow(dead_code)] // Each test binary uses a different part of the fixtures.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use warren::lab::ledger::Ledger;

/// The shared test broker's URL (set by `scripts/test`).
pub fn broker_url() -> String {
    std::env::var("WARREN_TEST_AMQP_URL").expect(
        "WARREN_TEST_AMQP_URL is not set: run the tests with scripts/test, which starts a private RabbitMQ node",
    )
}

/// A queue name no other test uses.
pub fn unique_queue(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("test-{test}-{}-{nanos}", std::process::id())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    warren::lab::ports::free_port().unwrap()
}

/// A `warren` child process whose stderr (its log) goes to a file; killed when dropped.
pub struct Warren {
    pub child: Child,
    pub log: PathBuf,
    /// The HTTP port it serves (web: `PORT`, worker: `METRICS_PORT`).
    pub port: u16,
    /// Leave the log file in place when dropped (its owner reads or removes it).
    pub keep_log: bool,
}

impl Warren {
    fn spawn(subcommand: &str, envs: &[(&str, String)], port: u16) -> Self {
        let log = std::env::temp_dir().join(format!(
            "warren-test-{subcommand}-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        Self::spawn_logging_to(subcommand, envs, port, log, false)
    }

    fn spawn_logging_to(
        subcommand: &str,
        envs: &[(&str, String)],
        port: u16,
        log: PathBuf,
        keep_log: bool,
    ) -> Self {
        // `warren-worker` is the worker alone: no subcommand.
        let mut command = if subcommand == "warren-worker" {
            Command::new(env!("CARGO_BIN_EXE_warren-worker"))
        } else {
            let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
            command.arg(subcommand);
            command
        };
        command
            .env_remove("AMQP_URL")
            .env_remove("RUST_LOG")
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in envs {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        Self {
            child,
            log,
            port,
            keep_log,
        }
    }

    /// Starts `warren web` on a free port against `amqp_url`, queue `queue`.
    pub fn web(amqp_url: &str, queue: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut envs = vec![
            ("AMQP_URL", amqp_url.to_owned()),
            ("QUEUE", queue.to_owned()),
            ("PORT", port.to_string()),
            ("BIND", "127.0.0.1".to_owned()),
        ];
        envs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        Self::spawn("web", &envs, port)
    }

    /// Starts `warren web` on `port` (e.g. the port of a web server that was stopped, to
    /// restart it where its clients expect it).
    pub fn web_on_port(amqp_url: &str, queue: &str, port: u16, extra: &[(&str, &str)]) -> Self {
        let mut envs = vec![
            ("AMQP_URL", amqp_url.to_owned()),
            ("QUEUE", queue.to_owned()),
            ("PORT", port.to_string()),
            ("BIND", "127.0.0.1".to_owned()),
        ];
        envs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        Self::spawn("web", &envs, port)
    }

    /// Starts `warren worker` logging to `log`, which is kept when the process is dropped (so a
    /// ledger can read the logs of workers that were killed or replaced).
    pub fn worker_logging_to(
        amqp_url: &str,
        queue: &str,
        work_ms: u64,
        extra: &[(&str, &str)],
        log: PathBuf,
    ) -> Self {
        let (envs, port) = worker_env(amqp_url, queue, work_ms, extra);
        Self::spawn_logging_to("worker", &envs, port, log, true)
    }

    /// Starts `warren worker` against `amqp_url`, queue `queue`.
    pub fn worker(amqp_url: &str, queue: &str, work_ms: u64, extra: &[(&str, &str)]) -> Self {
        let (envs, port) = worker_env(amqp_url, queue, work_ms, extra);
        Self::spawn("worker", &envs, port)
    }

    /// Starts `warren-worker` (`warren worker` alone, as the worker's pods run it) against
    /// `amqp_url`, queue `queue`.
    pub fn worker_binary(
        amqp_url: &str,
        queue: &str,
        work_ms: u64,
        extra: &[(&str, &str)],
    ) -> Self {
        let (envs, port) = worker_env(amqp_url, queue, work_ms, extra);
        Self::spawn("warren-worker", &envs, port)
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit; returns its exit code (None if killed by a signal).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {timeout:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `path` answers 200.
    pub async fn wait_ready(&self, path: &str, timeout: Duration) {
        let url = self.url(path);
        let ok = wait_until(timeout, || async {
            matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200)
        })
        .await;
        assert!(
            ok,
            "{url} did not answer 200 within {timeout:?}; log:\n{}",
            self.log_text()
        );
    }

    /// The `(job_id, outcome)` pairs of its log lines.
    pub fn outcomes(&self) -> Vec<(String, String)> {
        parse_outcomes(&self.log_text())
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            if !self.keep_log {
                let _ = std::fs::remove_file(&self.log);
            }
        } else if self.keep_log {
            eprintln!("--- log of a warren process kept in {}", self.log.display());
        } else {
            eprintln!(
                "--- log of a warren process ({}):\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// The `(job_id, outcome)` of the job records in worker log lines (`warren::records`).
pub fn parse_outcomes(log: &str) -> Vec<(String, String)> {
    job_records(log)
        .into_iter()
        .map(|o| (o.job_id, o.outcome.as_str().to_owned()))
        .collect()
}

/// The job records of a log.
pub fn job_records(log: &str) -> Vec<warren::records::JobRecord> {
    warren::records::parse_log(log)
        .into_iter()
        .filter_map(|r| match r {
            warren::records::Record::Job(job) => Some(job),
            _ => None,
        })
        .collect()
}

/// The decision records of a log (`warren autoscale`'s).
pub fn decision_records(log: &str) -> Vec<warren::records::DecisionRecord> {
    warren::records::parse_log(log)
        .into_iter()
        .filter_map(|r| match r {
            warren::records::Record::Decision(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// The environment of a `warren worker` on a free metrics port, and that port.
fn worker_env<'a>(
    amqp_url: &str,
    queue: &str,
    work_ms: u64,
    extra: &[(&'a str, &str)],
) -> (Vec<(&'a str, String)>, u16) {
    let port = free_port();
    let mut envs = vec![
        ("AMQP_URL", amqp_url.to_owned()),
        ("QUEUE", queue.to_owned()),
        ("WORK_MS", work_ms.to_string()),
        ("METRICS_PORT", port.to_string()),
        ("METRICS_BIND", "127.0.0.1".to_owned()),
    ];
    envs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    (envs, port)
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A direct AMQP connection for inspecting queues.
pub async fn amqp(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap()
}

/// Messages in `queue` (ready ones; unacked are not counted), or None if it does not exist.
pub async fn queue_depth(connection: &Connection, queue: &str) -> Option<u32> {
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .ok()?;
    let _ = channel.close(200, "".into()).await;
    Some(declared.message_count())
}

/// Publishes a raw message to `queue` with confirms.
pub async fn publish_raw(
    connection: &Connection,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) {
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let _ = channel.close(200, "".into()).await;
}

/// Takes every message from `queue`, returning their bodies.
pub async fn drain_queue(connection: &Connection, queue: &str) -> Vec<Vec<u8>> {
    let channel = connection.create_channel().await.unwrap();
    let mut bodies = Vec::new();
    while let Ok(Some(message)) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
    {
        bodies.push(message.delivery.data.clone());
    }
    bodies
}

/// Deletes a test's queues.
pub async fn delete_queues(connection: &Connection, queue: &str) {
    let channel = connection.create_channel().await.unwrap();
    for name in [queue.to_owned(), format!("{queue}.dead")] {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// One sample's value, 0 if absent; `labels` as the exposition writes them
/// (`path="/generate",status="200"`, or `""` for none).
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    // The wanted labels go through the same parser as the exposition, so their order is moot.
    let wanted = warren::scaling::metric_source::parse_samples(&format!("wanted{{{labels}}} 0"))
        .pop()
        .map(|s| s.labels)
        .unwrap_or_default();
    warren::scaling::metric_source::parse_samples(text)
        .into_iter()
        .find(|s| s.name == name && s.labels == wanted)
        .map_or(0.0, |s| s.value)
}

/// GETs a URL and returns the body text.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// A private RabbitMQ node of a test's own (for tests that change broker-wide settings or stop
/// the broker); its directory goes with it.
pub async fn own_node(name: &str) -> warren::lab::rabbit_node::RabbitNode {
    let dir = std::env::temp_dir().join(format!("warren-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    warren::lab::rabbit_node::RabbitNode::start(dir, warren::lab::rabbit_node::DirOnDrop::Remove)
        .await
        .expect("private RabbitMQ node")
}

/// `GET /generate` on `web`: the id of the job it accepted.
pub async fn generate(web: &Warren) -> String {
    let body = get_text(&web.url("/generate")).await;
    body.trim()
        .strip_prefix("Welcome! ")
        .unwrap_or_else(|| panic!("not a job's answer: {body:?}"))
        .to_owned()
}

/// `GET /generate?count=N` on `web`: the ids of the `count` jobs it accepted, one a line.
pub async fn generate_many(web: &Warren, count: usize) -> Vec<String> {
    let ids: Vec<String> = get_text(&web.url(&format!("/generate?count={count}")))
        .await
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), count, "every job of the batch accepted");
    ids
}

/// Waits up to `timeout` until `worker` reports `jobs` jobs in hand.
pub async fn wait_in_flight(worker: &Warren, jobs: f64, timeout: Duration) -> bool {
    wait_until(timeout, || async {
        metric(
            &get_text(&worker.url("/metrics")).await,
            "jobs_in_flight",
            "",
        ) == jobs
    })
    .await
}

/// The ids a load run reported accepted so far (`lab::load::run_with`'s channel).
pub fn accepted_ids(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> HashSet<String> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// Waits up to `timeout` until the work is done: every id in `accepted` acked in the worker
/// logs under `logs`, `queue` empty on the broker at `amqp_url`, and no job in hand at any of
/// `worker_metrics` (the workers' `/metrics` URLs).
pub async fn wait_drained(
    logs: &Path,
    accepted: &HashSet<String>,
    amqp_url: &str,
    queue: &str,
    worker_metrics: &[String],
    timeout: Duration,
) -> bool {
    let mut ledger = Ledger::new();
    wait_until(timeout, || {
        ledger.read_dir(logs).unwrap();
        let acked = ledger.lost(accepted).is_empty();
        async move {
            if !acked {
                return false;
            }
            let connection = amqp(amqp_url).await;
            let empty = queue_depth(&connection, queue).await == Some(0);
            let _ = connection.close(200, "".into()).await;
            let mut idle = true;
            for worker in worker_metrics {
                idle &= metric(&get_text(worker).await, "jobs_in_flight", "") == 0.0;
            }
            empty && idle
        }
    })
    .await
}

/// Decision records for a failure message, one JSON object a line.
pub fn show_decisions(decisions: &[warren::records::DecisionRecord]) -> String {
    decisions
        .iter()
        .map(|d| warren::records::Record::from(d.clone()).to_json())
        .collect::<Vec<_>>()
        .join("\n")
}
