//! The pod-deletion-cost feature: a real `warren worker` against the real test broker, its
//! Kubernetes API pointed (by `KUBECONFIG`) at an in-process fake API server that records every
//! request and answers as each test needs.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::Connection;
use support::*;
use warren::pipeline::job::{message_properties, now_ms, JobIdGenerator};

const NAMESPACE: &str = "warren-test";
const POD: &str = "worker-5d8f7-x2x9q";
const PATCH_PATH: &str = "/api/v1/namespaces/warren-test/pods/worker-5d8f7-x2x9q";

/// How the fake API server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 with the pod.
    Ok,
    /// 403, as when the Role is missing.
    Forbidden,
    /// Never, as a black-holed API server.
    Hang,
}

/// One request the fake API server received.
#[derive(Clone, Debug)]
struct Recorded {
    at: Instant,
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: serde_json::Value,
}

#[derive(Clone)]
struct Fake {
    answer: Answer,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Fake {
    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The deletion costs the PATCHes so far asked for.
    fn costs(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                r.body["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect()
    }
}

async fn record(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.requests.lock().unwrap().push(Recorded {
        at: Instant::now(),
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    match fake.answer {
        Answer::Ok => axum::Json(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": POD, "namespace": NAMESPACE },
        }))
        .into_response(),
        Answer::Forbidden => (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                "message": "pods \"worker-5d8f7-x2x9q\" is forbidden: User \"system:serviceaccount:warren-test:worker\" cannot patch resource \"pods\"",
            })),
        )
            .into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// Starts the fake API server; returns it and a kubeconfig file that points at it.
async fn fake_api_server(answer: Answer) -> (Fake, tempfile_path::TempPath) {
    let fake = Fake {
        answer,
        requests: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(record)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, kubeconfig_for(port))
}

/// A kubeconfig file whose cluster is `http://127.0.0.1:<port>`, no credentials.
fn kubeconfig_for(port: u16) -> tempfile_path::TempPath {
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NAMESPACE}\n\
         users:\n- name: fake\n  user: {{}}\n"
    );
    let path = tempfile_path::TempPath::new("kubeconfig");
    std::fs::write(&path.0, kubeconfig).unwrap();
    path
}

/// A file path removed on drop.
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);
    impl TempPath {
        pub fn new(what: &str) -> Self {
            Self(std::env::temp_dir().join(format!(
                "warren-test-{what}-{}-{}",
                std::process::id(),
                super::free_port()
            )))
        }
        pub fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// A worker with the feature on (`debounce_ms`), its API server at `kubeconfig`.
fn worker_with_cost(
    queue: &str,
    work_ms: u64,
    debounce_ms: u64,
    kubeconfig: &tempfile_path::TempPath,
) -> Warren {
    let debounce = debounce_ms.to_string();
    Warren::worker(
        &broker_url(),
        queue,
        work_ms,
        &[
            ("POD_DELETION_COST", "true"),
            ("POD_DELETION_COST_DEBOUNCE_MS", &debounce),
            ("POD_NAME", POD),
            ("POD_NAMESPACE", NAMESPACE),
            ("KUBECONFIG", kubeconfig.as_str()),
        ],
    )
}

/// Publishes `n` jobs to `queue` as `warren web` would, all before waiting for the confirms
/// (so they are queued faster than a worker takes them); returns their ids.
async fn publish_jobs(connection: &Connection, queue: &str, n: usize) -> Vec<String> {
    let ids = JobIdGenerator::new();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut published = Vec::new();
    let mut confirms = Vec::new();
    for _ in 0..n {
        let id = ids.next_id();
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                id.as_str().as_bytes(),
                message_properties(&id, now_ms()),
            )
            .await
            .unwrap();
        confirms.push(confirm);
        published.push(id.as_str().to_owned());
    }
    for confirm in confirms {
        assert!(confirm.await.unwrap().is_ack());
    }
    let _ = channel.close(200, "".into()).await;
    published
}

/// The time of day of a log line (its RFC 3339 timestamp), in seconds.
fn logged_at(line: &str) -> f64 {
    let time = &line[11..26]; // HH:MM:SS.ffffff
    let h: f64 = time[0..2].parse().unwrap();
    let m: f64 = time[3..5].parse().unwrap();
    let s: f64 = time[6..].parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

/// The first log line that contains every needle.
fn line_with<'a>(log: &'a str, needles: &[&str]) -> &'a str {
    log.lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no log line with {needles:?}:\n{log}"))
}

async fn wait_acked(worker: &Warren, ids: &[String], timeout: Duration) {
    let all = wait_until(timeout, || async {
        let outcomes = worker.outcomes();
        ids.iter()
            .all(|id| outcomes.contains(&(id.clone(), "acked".to_owned())))
    })
    .await;
    assert!(all, "not every job was acked; log:\n{}", worker.log_text());
}

async fn wait_requests(fake: &Fake, n: usize, timeout: Duration, worker: &Warren) {
    let reached = wait_until(timeout, || async { fake.requests().len() >= n }).await;
    assert!(
        reached,
        "the fake API server got {:?}, not {n} requests; log:\n{}",
        fake.costs(),
        worker.log_text()
    );
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Log lines at warning or error level, whoever wrote them (the kube client too).
fn problems(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count()
}

#[tokio::test]
async fn the_worker_patches_its_pod_cheap_when_idle_and_dear_when_busy() {
    let queue = unique_queue("cost-values");
    let (fake, kubeconfig) = fake_api_server(Answer::Ok).await;
    let worker = worker_with_cost(&queue, 1500, 300, &kubeconfig);
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    // Idle from the start: one patch to the idle cost, since the pod may still say busy from a
    // container that ran before.
    wait_requests(&fake, 1, Duration::from_secs(10), &worker).await;

    let connection = amqp(&broker_url()).await;
    let published = Instant::now();
    let ids = publish_jobs(&connection, &queue, 1).await;
    wait_acked(&worker, &ids, Duration::from_secs(15)).await;
    wait_requests(&fake, 3, Duration::from_secs(10), &worker).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let requests = fake.requests();
    assert_eq!(fake.costs(), ["0", "100", "0"], "idle, busy, idle");
    for r in &requests {
        assert_eq!(r.method, Method::PATCH);
        assert_eq!(r.path, PATCH_PATH);
        assert_eq!(r.content_type, "application/merge-patch+json");
        assert!(
            r.query.contains("fieldManager=warren-worker"),
            "{}",
            r.query
        );
        // Nothing but the one annotation is written.
        assert_eq!(
            r.body["metadata"]["annotations"].as_object().unwrap().len(),
            1
        );
        assert_eq!(r.body.as_object().unwrap().len(), 1);
    }
    // Busy is written only once the job has run for the debounce time, and while it still
    // runs; idle only once the worker has been idle for the debounce time after the job.
    assert!(requests[1].at - published >= Duration::from_millis(300));
    let log = worker.log_text();
    let done = logged_at(line_with(&log, &["job done", &ids[0]]));
    let busy = logged_at(line_with(&log, &["pod-deletion-cost patched", "cost=100"]));
    let idle_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pod-deletion-cost patched") && l.contains("cost=0"))
        .collect();
    assert_eq!(idle_lines.len(), 2, "{log}");
    let idle = logged_at(idle_lines[1]);
    assert!(busy < done, "busy written while the job ran: {log}");
    assert!(
        idle - done >= 0.3,
        "idle written 300 ms after the job at the earliest: {log}"
    );
    assert_eq!(count(&log, "pod-deletion-cost patched"), 3);
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn short_jobs_and_short_gaps_between_jobs_make_no_calls() {
    let queue = unique_queue("cost-debounce");
    let (fake, kubeconfig) = fake_api_server(Answer::Ok).await;
    // The default debounce, 2 s.
    let worker = worker_with_cost(&queue, 250, 2000, &kubeconfig);
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    wait_requests(&fake, 1, Duration::from_secs(10), &worker).await;
    assert_eq!(fake.costs(), ["0"]);

    // One job shorter than the debounce: busy never lasts long enough to be written.
    let connection = amqp(&broker_url()).await;
    let ids = publish_jobs(&connection, &queue, 1).await;
    wait_acked(&worker, &ids, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(fake.costs(), ["0"], "a 250 ms job must not be written");

    // 20 jobs back to back (5 s of steady load): one busy patch, one idle patch after, none per
    // job, though the worker is idle for a moment between any two jobs.
    let ids = publish_jobs(&connection, &queue, 20).await;
    wait_acked(&worker, &ids, Duration::from_secs(30)).await;
    wait_requests(&fake, 3, Duration::from_secs(10), &worker).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(fake.costs(), ["0", "100", "0"]);
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn a_forbidden_patch_is_logged_once_and_the_jobs_still_get_done() {
    let queue = unique_queue("cost-403");
    let (fake, kubeconfig) = fake_api_server(Answer::Forbidden).await;
    let worker = worker_with_cost(&queue, 200, 200, &kubeconfig);
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    let connection = amqp(&broker_url()).await;
    let ids = publish_jobs(&connection, &queue, 5).await;
    wait_acked(&worker, &ids, Duration::from_secs(15)).await;
    // Retries at growing intervals (0.2 s, then 1 s, 2 s later): three refused patches.
    wait_requests(&fake, 3, Duration::from_secs(15), &worker).await;
    let log = worker.log_text();
    assert_eq!(count(&log, "pod-deletion-cost patch failed"), 1, "{log}");
    assert_eq!(problems(&log), 1, "one warning, nothing else: {log}");
    assert!(log.contains("403"), "the warning says why: {log}");
    assert_eq!(count(&log, "pod-deletion-cost patched"), 0, "{log}");
    // The retries do back off: not one per sample.
    assert!(fake.requests().len() <= 4, "{:?}", fake.costs());
    let metrics = get_text(&worker.url("/metrics")).await;
    assert_eq!(metric(&metrics, "jobs_processed_total", ""), 5.0);
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn an_api_server_that_never_answers_times_out_once_and_the_jobs_still_get_done() {
    let queue = unique_queue("cost-timeout");
    let (fake, kubeconfig) = fake_api_server(Answer::Hang).await;
    let worker = worker_with_cost(&queue, 300, 200, &kubeconfig);
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    wait_requests(&fake, 1, Duration::from_secs(10), &worker).await;
    // The patch hangs, and the work goes on meanwhile.
    let connection = amqp(&broker_url()).await;
    let ids = publish_jobs(&connection, &queue, 3).await;
    wait_acked(&worker, &ids, Duration::from_secs(10)).await;
    assert_eq!(
        count(&worker.log_text(), "pod-deletion-cost patch failed"),
        0,
        "the patch timeout is 5 s"
    );
    let timed_out = wait_until(Duration::from_secs(15), || async {
        worker.log_text().contains("pod-deletion-cost patch failed")
    })
    .await;
    assert!(timed_out, "no timeout logged:\n{}", worker.log_text());
    // A retry comes, and hangs too; still one warning.
    wait_requests(&fake, 2, Duration::from_secs(15), &worker).await;
    let ids = publish_jobs(&connection, &queue, 2).await;
    wait_acked(&worker, &ids, Duration::from_secs(10)).await;
    let log = worker.log_text();
    assert_eq!(count(&log, "pod-deletion-cost patch failed"), 1, "{log}");
    assert_eq!(problems(&log), 1, "one warning, nothing else: {log}");
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn an_unreachable_api_server_is_logged_once_and_the_jobs_still_get_done() {
    let queue = unique_queue("cost-refused");
    // Nothing listens there: every patch is refused at connect.
    let kubeconfig = kubeconfig_for(free_port());
    let worker = worker_with_cost(&queue, 200, 200, &kubeconfig);
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    let connection = amqp(&broker_url()).await;
    let ids = publish_jobs(&connection, &queue, 5).await;
    wait_acked(&worker, &ids, Duration::from_secs(15)).await;
    // Attempts at about 0.2 s, 1.2 s and 3.2 s after the start.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let log = worker.log_text();
    assert_eq!(count(&log, "pod-deletion-cost patch failed"), 1, "{log}");
    assert_eq!(problems(&log), 1, "one warning, nothing else: {log}");
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn with_the_flag_off_no_call_is_made() {
    let queue = unique_queue("cost-off");
    let (fake, kubeconfig) = fake_api_server(Answer::Ok).await;
    // Everything else is in place, as a pod of the overlays without the flag would have it.
    let worker = Warren::worker(
        &broker_url(),
        &queue,
        1000,
        &[
            ("POD_DELETION_COST", "false"),
            ("POD_DELETION_COST_DEBOUNCE_MS", "100"),
            ("POD_NAME", POD),
            ("POD_NAMESPACE", NAMESPACE),
            ("KUBECONFIG", kubeconfig.as_str()),
        ],
    );
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    let connection = amqp(&broker_url()).await;
    let ids = publish_jobs(&connection, &queue, 2).await;
    wait_acked(&worker, &ids, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    assert!(!worker.log_text().contains("pod-deletion-cost"));
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn the_flag_without_the_pod_name_is_a_config_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("worker")
        .env("POD_DELETION_COST", "true")
        .env_remove("POD_NAME")
        .env("POD_NAMESPACE", NAMESPACE)
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("POD_NAME"), "{stderr}");
}
