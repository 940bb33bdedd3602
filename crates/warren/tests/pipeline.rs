//! The core pipeline against the real broker: web publishes with confirms, workers do the jobs.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use nix::sys::signal::Signal;
use support::*;

#[tokio::test]
async fn a_generated_job_is_consumed_and_acked_by_a_worker() {
    let url = broker_url();
    let queue = unique_queue("roundtrip");
    let web = Warren::web(&url, &queue, &[]);
    let worker = Warren::worker(&url, &queue, 50, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;

    let body = get_text(&web.url("/generate")).await;
    let id = body
        .strip_prefix("Welcome! ")
        .and_then(|r| r.strip_suffix('\n'))
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 26, "a ULID: {body:?}");

    let acked = wait_until(Duration::from_secs(15), || async {
        worker
            .outcomes()
            .contains(&(id.clone(), "acked".to_owned()))
    })
    .await;
    assert!(
        acked,
        "worker never acked {id}; log:\n{}",
        worker.log_text()
    );
    let connection = amqp(&url).await;
    assert_eq!(queue_depth(&connection, &queue).await, Some(0));
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn generate_answers_200_only_after_the_message_is_on_the_queue() {
    let url = broker_url();
    let queue = unique_queue("confirmed");
    let web = Warren::web(&url, &queue, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    let connection = amqp(&url).await;
    let client = reqwest::Client::new();
    for expected in 1..=20u32 {
        let response = client
            .get(web.url("/generate"))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let json: serde_json::Value = response.json().await.unwrap();
        assert!(
            json["id"].as_str().is_some_and(|id| id.len() == 26),
            "{json}"
        );
        // No worker runs: every confirmed job must already be counted by the broker.
        assert_eq!(queue_depth(&connection, &queue).await, Some(expected));
    }
    let ids = get_text(&web.url("/generate?count=5")).await;
    assert_eq!(ids.lines().count(), 5);
    assert_eq!(queue_depth(&connection, &queue).await, Some(25));
    // Messages are persistent and carry the id and publish time.
    let message = drain_queue(&connection, &queue).await;
    assert_eq!(message.len(), 25);
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn a_batch_larger_than_its_window_is_confirmed_whole_and_every_job_is_queued() {
    let url = broker_url();
    let queue = unique_queue("batch-window");
    let web = Warren::web(&url, &queue, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    let connection = amqp(&url).await;
    // 1000 jobs, published at most BATCH_WINDOW at a time: all confirmed, none twice.
    let body = get_text(&web.url("/generate?count=1000")).await;
    let ids: HashSet<&str> = body.lines().collect();
    assert_eq!(body.lines().count(), 1000);
    assert_eq!(ids.len(), 1000, "every id distinct");
    const { assert!(warren::pipeline::publisher::BATCH_WINDOW < 1000) };
    assert_eq!(queue_depth(&connection, &queue).await, Some(1000));
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn warren_connections_ask_for_small_frames() {
    let url = broker_url();
    let config = warren::config::BrokerConfig::new(
        warren::config::AmqpUrl::parse(&url).unwrap(),
        warren::config::QueueName::parse(&unique_queue("frames")).unwrap(),
    );
    let connection = warren::pipeline::broker::connect(&config, "test")
        .await
        .unwrap();
    // The broker offers 128 KiB; lapin's two 32-frame buffers follow what is agreed.
    assert_eq!(
        connection.configuration().frame_max(),
        warren::pipeline::broker::FRAME_MAX
    );
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn a_bad_query_is_answered_400_and_publishes_nothing() {
    let url = broker_url();
    let queue = unique_queue("badquery");
    let web = Warren::web(&url, &queue, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    for query in [
        "count=0",
        "count=1001",
        "count=abc",
        "size=3",
        "count=2&count=3",
    ] {
        let response = reqwest::get(web.url(&format!("/generate?{query}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{query}"
        );
        let json: serde_json::Value = response.json().await.unwrap();
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}: {json}"
        );
    }
    let connection = amqp(&url).await;
    assert_eq!(queue_depth(&connection, &queue).await, Some(0));
    let metrics = get_text(&web.url("/metrics")).await;
    assert_eq!(
        metric(
            &metrics,
            "request_status_total",
            r#"path="/generate",status="400""#
        ),
        5.0
    );
    assert_eq!(metric(&metrics, "jobs_published_total", ""), 0.0);
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_worker_keeps_working() {
    let url = broker_url();
    let queue = unique_queue("poison");
    let worker = Warren::worker(&url, &queue, 10, &[]);
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    let connection = amqp(&url).await;

    let mut out_of_range = FieldTable::default();
    out_of_range.insert("x-work-ms".into(), AMQPValue::LongLongInt(10_000_000));
    let poison: Vec<(&[u8], BasicProperties)> = vec![
        (&[0xff, 0xfe, 0x00], BasicProperties::default()),
        (
            b"good-id-1",
            BasicProperties::default().with_headers(out_of_range),
        ),
        (
            b"{\"id\":1}",
            BasicProperties::default().with_content_type("application/json".into()),
        ),
    ];
    for (body, properties) in poison {
        publish_raw(&connection, &queue, body, properties).await;
    }
    publish_raw(&connection, &queue, b"fine-job", BasicProperties::default()).await;

    let done = wait_until(Duration::from_secs(15), || async {
        worker
            .outcomes()
            .contains(&("fine-job".to_owned(), "acked".to_owned()))
    })
    .await;
    assert!(done, "log:\n{}", worker.log_text());
    let dead_lettered = wait_until(Duration::from_secs(10), || async {
        queue_depth(&connection, &format!("{queue}.dead")).await == Some(3)
    })
    .await;
    assert!(dead_lettered, "3 messages in {queue}.dead");
    let metrics = get_text(&worker.url("/metrics")).await;
    assert_eq!(
        metric(&metrics, "jobs_failed_total", r#"reason="body_not_utf8""#),
        1.0
    );
    assert_eq!(
        metric(&metrics, "jobs_failed_total", r#"reason="bad_header""#),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "jobs_failed_total",
            r#"reason="wrong_content_type""#
        ),
        1.0
    );
    assert_eq!(metric(&metrics, "jobs_processed_total", ""), 1.0);
    let outcomes = worker.outcomes();
    assert_eq!(
        outcomes
            .iter()
            .filter(|(_, o)| o == "dead_lettered")
            .count(),
        3,
        "{outcomes:?}"
    );
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn worker_sigterm_finishes_jobs_in_flight_acks_them_and_exits_0() {
    let url = broker_url();
    let queue = unique_queue("drain");
    let web = Warren::web(&url, &queue, &[]);
    // The binary the worker's pods run drains; `warren worker` then does the rest.
    let mut worker = Warren::worker_binary(&url, &queue, 1500, &[("PREFETCH", "2")]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    let ids: Vec<String> = get_text(&web.url("/generate?count=6"))
        .await
        .lines()
        .map(str::to_owned)
        .collect();

    let busy = wait_in_flight(&worker, 2.0, Duration::from_secs(5)).await;
    assert!(busy, "two jobs in flight");
    worker.signal(Signal::SIGTERM);
    assert_eq!(
        worker.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "log:\n{}",
        worker.log_text()
    );
    let acked: HashSet<String> = worker
        .outcomes()
        .into_iter()
        .filter(|(_, o)| o == "acked")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        acked.len(),
        2,
        "the two jobs in flight were finished and acked"
    );

    // Nothing lost: the rest are still on the queue, and a new worker does them all.
    let connection = amqp(&url).await;
    assert_eq!(queue_depth(&connection, &queue).await, Some(4));
    let second = Warren::worker(&url, &queue, 10, &[]);
    let all_done = wait_until(Duration::from_secs(15), || async {
        let done: HashSet<String> = second
            .outcomes()
            .into_iter()
            .filter(|(_, o)| o == "acked")
            .map(|(id, _)| id)
            .collect();
        ids.iter().all(|id| acked.contains(id) || done.contains(id))
    })
    .await;
    assert!(all_done, "every job acked once the second worker ran");
    delete_queues(&connection, &queue).await;
}

#[tokio::test]
async fn a_job_whose_worker_is_killed_mid_job_is_redelivered_to_another_worker() {
    let url = broker_url();
    let queue = unique_queue("sigkill");
    let web = Warren::web(&url, &queue, &[]);
    let victim = Warren::worker(&url, &queue, 60_000, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    victim.wait_ready("/readyz", Duration::from_secs(15)).await;
    let id = generate(&web).await;
    let taken = wait_in_flight(&victim, 1.0, Duration::from_secs(5)).await;
    assert!(taken);
    let survivor = Warren::worker(&url, &queue, 10, &[]);
    survivor
        .wait_ready("/readyz", Duration::from_secs(15))
        .await;
    victim.signal(Signal::SIGKILL);
    let redelivered = wait_until(Duration::from_secs(15), || async {
        survivor
            .outcomes()
            .contains(&(id.clone(), "acked".to_owned()))
    })
    .await;
    assert!(redelivered, "survivor log:\n{}", survivor.log_text());
    assert!(
        job_records(&survivor.log_text())
            .iter()
            .any(|job| job.job_id == id && job.redelivered == Some(true)),
        "the survivor's ack of {id} is of a redelivery"
    );
    delete_queues(&amqp(&url).await, &queue).await;
}

#[tokio::test]
async fn metrics_count_every_request_by_route_and_status() {
    let url = broker_url();
    let queue = unique_queue("metrics");
    let web = Warren::web(&url, &queue, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    let client = reqwest::Client::new();
    for _ in 0..7 {
        assert_eq!(
            client
                .get(web.url("/generate"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        client
            .get(web.url("/generate?count=3"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for path in ["/nope", "/nope/deeper", "/admin"] {
        assert_eq!(
            client.get(web.url(path)).send().await.unwrap().status(),
            404
        );
    }
    assert_eq!(
        client
            .post(web.url("/generate"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    let text = get_text(&web.url("/metrics")).await;
    assert_eq!(
        metric(&text, "http_request_total", r#"path="/generate""#),
        9.0
    );
    assert_eq!(metric(&text, "http_request_total", r#"path="other""#), 3.0);
    assert_eq!(
        metric(
            &text,
            "request_status_total",
            r#"path="/generate",status="200""#
        ),
        8.0
    );
    assert_eq!(
        metric(
            &text,
            "request_status_total",
            r#"path="/generate",status="405""#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "request_status_total",
            r#"path="other",status="404""#
        ),
        3.0
    );
    assert_eq!(metric(&text, "jobs_published_total", ""), 10.0);
    assert_eq!(
        metric(
            &text,
            "http_request_duration_seconds_count",
            r#"path="/generate""#
        ),
        9.0
    );
    // Unknown paths share one label value: cardinality stays bounded.
    assert!(!text.contains("/nope"));
    delete_queues(&amqp(&url).await, &queue).await;
}

#[tokio::test]
async fn promtool_finds_both_metrics_outputs_clean() {
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("promtool is missing: scripts/setup installs Debian's prometheus package");
    }
    let url = broker_url();
    let queue = unique_queue("promtool");
    let web = Warren::web(&url, &queue, &[]);
    let worker = Warren::worker(&url, &queue, 1, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    get_text(&web.url("/generate?count=3")).await;
    get_text(&web.url("/nope")).await;
    let connection = amqp(&url).await;
    publish_raw(&connection, &queue, &[0xff], BasicProperties::default()).await;
    wait_until(Duration::from_secs(10), || async {
        metric(
            &get_text(&worker.url("/metrics")).await,
            "jobs_processed_total",
            "",
        ) == 3.0
    })
    .await;
    for target in [web.url("/metrics"), worker.url("/metrics")] {
        let text = get_text(&target).await;
        let mut check = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = check.wait_with_output().unwrap();
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "promtool on {target}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    delete_queues(&connection, &queue).await;
}

/// The issue's acceptance run: 1000 calls at concurrency 32, web + 4 workers, WORK_MS=50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_at_concurrency_32_are_each_processed_exactly_once() {
    let url = broker_url();
    let queue = unique_queue("thousand");
    let web = Warren::web(&url, &queue, &[]);
    let workers: Vec<Warren> = (0..4)
        .map(|_| Warren::worker(&url, &queue, 50, &[]))
        .collect();
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    for worker in &workers {
        worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    }
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let generate = web.url("/generate");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, next, generate) = (client.clone(), next.clone(), generate.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 1000 {
                    let response = client.get(&generate).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    let body = response.text().await.unwrap();
                    ids.push(body.trim().strip_prefix("Welcome! ").unwrap().to_owned());
                }
                ids
            })
        })
        .collect();
    let mut accepted = HashSet::new();
    for task in tasks {
        accepted.extend(task.await.unwrap());
    }
    assert_eq!(accepted.len(), 1000, "1000 distinct ids answered");

    let all_done = wait_until(Duration::from_secs(60), || async {
        workers
            .iter()
            .map(|w| w.outcomes().iter().filter(|(_, o)| o == "acked").count())
            .sum::<usize>()
            >= 1000
    })
    .await;
    assert!(all_done, "1000 jobs acked within 60 s");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let processed: Vec<String> = workers
        .iter()
        .flat_map(|w| w.outcomes())
        .filter(|(_, o)| o == "acked")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(processed.len(), 1000, "no job processed twice");
    assert_eq!(processed.iter().cloned().collect::<HashSet<_>>(), accepted);

    let connection = amqp(&url).await;
    assert_eq!(queue_depth(&connection, &queue).await, Some(0));
    let web_metrics = get_text(&web.url("/metrics")).await;
    assert_eq!(metric(&web_metrics, "jobs_published_total", ""), 1000.0);
    assert_eq!(
        metric(
            &web_metrics,
            "request_status_total",
            r#"path="/generate",status="200""#
        ),
        1000.0
    );
    let mut worker_total = 0.0;
    for worker in &workers {
        let text = get_text(&worker.url("/metrics")).await;
        worker_total += metric(&text, "jobs_processed_total", "");
        assert_eq!(metric(&text, "jobs_in_flight", ""), 0.0);
    }
    assert_eq!(worker_total, 1000.0);
    delete_queues(&connection, &queue).await;
}

/// `warren web 2>&1 | head -1`: once the reader is gone every log line fails to be written,
/// and web must still stop on SIGTERM.
#[tokio::test]
async fn web_whose_stderr_is_a_closed_pipe_still_stops_on_sigterm() {
    let queue = unique_queue("closed-stderr");
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("web")
        .env("AMQP_URL", broker_url())
        .env("QUEUE", &queue)
        .env("PORT", port.to_string())
        .env("BIND", "127.0.0.1")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end: from now on, writing a log line fails (EPIPE).
    drop(child.stderr.take());
    let ready = format!("http://127.0.0.1:{port}/readyz");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            matches!(reqwest::get(&ready).await, Ok(r) if r.status() == 200)
        })
        .await,
        "web never got ready"
    );
    // A request logs nothing by default; the signal's own log line is the first to fail.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(status.is_some(), "web did not stop within 10 s of SIGTERM");
    let connection = amqp(&broker_url()).await;
    delete_queues(&connection, &queue).await;
}

/// A queue that exists with other arguments than warren declares (here a classic queue of the
/// same name) is told apart by the broker's reply code, 406 PRECONDITION_FAILED, as a topology
/// mismatch naming the queue, and is left as it was.
#[tokio::test]
async fn a_queue_declared_with_other_arguments_is_a_topology_mismatch() {
    use warren::config::{AmqpUrl, BrokerConfig, QueueName};
    use warren::pipeline::broker::{declare_topology, BrokerError};
    let queue = unique_queue("mismatch");
    let connection = amqp(&broker_url()).await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish_raw(&connection, &queue, b"kept", BasicProperties::default()).await;
    let config = BrokerConfig::new(
        AmqpUrl::parse(&broker_url()).unwrap(),
        QueueName::parse(&queue).unwrap(),
    );
    let error = declare_topology(&connection, &config).await.unwrap_err();
    match &error {
        BrokerError::TopologyMismatch { queue: named, .. } => assert_eq!(named, &queue),
        other => panic!("expected a topology mismatch, got {other:?}"),
    }
    assert_eq!(
        queue_depth(&connection, &queue).await,
        Some(1),
        "the queue was touched"
    );
    delete_queues(&connection, &queue).await;
    let _ = channel
        .exchange_delete(
            format!("{queue}.dlx").as_str().into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await;
}
