//! The broker's fault modes against real brokers: resource alarms (flow control), a deleted
//! queue, a connection closed mid-job, and idempotent retries. Tests that change broker-wide
//! settings (alarms, permissions, closing every connection) run a private node of their own.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::*;
use warren::lab::rabbit_node::RabbitNode;

fn ctl(node: &RabbitNode, args: &[&str]) {
    let out = node.ctl(args).unwrap();
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn status(client: &reqwest::Client, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

/// What the load loop saw during an alarm.
#[derive(Default)]
struct Seen {
    /// Ids answered 200.
    accepted: HashSet<String>,
    /// Ids of 503s whose confirm was still awaited (`outcome: unknown`).
    pending: HashSet<String>,
    /// 503s by reason.
    reasons: Vec<String>,
    /// 503s that said the job may still run.
    unknown: usize,
}

/// Sends `/generate` one after another for `span`, sorting the answers.
async fn generate_for(client: &reqwest::Client, web: &Warren, span: Duration, seen: &mut Seen) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        let response = client
            .get(web.url("/generate"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        match code {
            200 => {
                seen.accepted
                    .insert(body["id"].as_str().unwrap().to_owned());
            }
            503 => {
                seen.reasons
                    .push(body["reason"].as_str().unwrap().to_owned());
                if body["outcome"] == "unknown" {
                    seen.unknown += 1;
                }
                for id in body["pending"].as_array().unwrap() {
                    seen.pending.insert(id.as_str().unwrap().to_owned());
                }
            }
            other => panic!("/generate answered {other}: {body}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Raises an alarm with `raise`, checks that web answers 503 `blocked` and `/readyz` 503
/// while it lasts, clears it with `clear`; then checks that every 200 ran and nothing else did
/// but the jobs whose 503 said their confirm was still awaited.
async fn alarm_blocks_publishing(node: &RabbitNode, kind: &str, raise: &[&str], clear: &[&str]) {
    let url = node.amqp_url().expose().to_owned();
    let queue = unique_queue(kind);
    let web = Warren::web(&url, &queue, &[]);
    let worker = Warren::worker(&url, &queue, 10, &[("PREFETCH", "20")]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    let client = reqwest::Client::new();
    let mut seen = Seen::default();
    generate_for(&client, &web, Duration::from_secs(1), &mut seen).await;
    assert!(
        !seen.accepted.is_empty(),
        "{kind}: jobs accepted before the alarm"
    );

    ctl(node, raise);
    // The broker blocks a connection when it next publishes: the publishes in flight then
    // are held (503 `unknown`, their ids `pending`), and web refuses the rest at once.
    let until = Instant::now() + Duration::from_secs(30);
    let mut blocked = false;
    while !blocked && Instant::now() < until {
        generate_for(&client, &web, Duration::from_millis(200), &mut seen).await;
        let metrics = get_text(&web.url("/metrics")).await;
        blocked = metric(&metrics, "broker_blocked", "") == 1.0;
    }
    assert!(
        blocked,
        "{kind}: web saw connection.blocked; log:\n{}",
        web.log_text()
    );
    let before = seen.reasons.len();
    // Publishes are refused at once now: none of them is held by the broker.
    let started = Instant::now();
    generate_for(&client, &web, Duration::from_secs(3), &mut seen).await;
    assert_eq!(
        status(&client, &web.url("/readyz")).await,
        503,
        "{kind}: /readyz while blocked"
    );
    let during = &seen.reasons[before..];
    assert!(
        during.len() > 20,
        "{kind}: {} answers in {:?}",
        during.len(),
        started.elapsed()
    );
    assert!(
        during.iter().all(|r| r == "blocked"),
        "{kind}: reasons while blocked: {during:?}"
    );

    ctl(node, clear);
    web.wait_ready("/readyz", Duration::from_secs(30)).await;
    let accepted_before_clear = seen.accepted.len();
    generate_for(&client, &web, Duration::from_secs(1), &mut seen).await;
    assert!(
        seen.accepted.len() > accepted_before_clear,
        "{kind}: 200s after the alarm"
    );

    // Every 200 runs; the only other jobs that run are those a 503 named as pending.
    let done = wait_until(Duration::from_secs(30), || async {
        let acked: HashSet<String> = worker
            .outcomes()
            .into_iter()
            .filter(|(_, o)| o == "acked")
            .map(|(id, _)| id)
            .collect();
        seen.accepted.is_subset(&acked)
    })
    .await;
    assert!(
        done,
        "{kind}: every 200 ran; worker log:\n{}",
        worker.log_text()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked: Vec<String> = worker
        .outcomes()
        .into_iter()
        .filter(|(_, o)| o == "acked")
        .map(|(id, _)| id)
        .collect();
    let unexpected: Vec<&String> = acked
        .iter()
        .filter(|id| !seen.accepted.contains(*id) && !seen.pending.contains(*id))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{kind}: jobs answered 503 (not pending) that ran: {unexpected:?}"
    );
    let late = metric(
        &get_text(&web.url("/metrics")).await,
        "late_confirms_total",
        "",
    );
    let pending_run = acked.iter().filter(|id| seen.pending.contains(*id)).count();
    assert_eq!(late as usize, pending_run, "{kind}: late confirms counted");
    assert!(
        web.log_text().contains("the broker blocks publishing"),
        "{kind}: one log line says so"
    );
    println!(
        "{kind} alarm: {} accepted, {} answered 503 blocked, {} 503 unknown, {} late confirms",
        seen.accepted.len(),
        seen.reasons.iter().filter(|r| *r == "blocked").count(),
        seen.unknown,
        late
    );
}

#[tokio::test]
async fn memory_and_disk_alarms_answer_503_blocked_for_jobs_that_never_run() {
    let node = own_node("alarms").await;
    alarm_blocks_publishing(
        &node,
        "memory",
        &["set_vm_memory_high_watermark", "0.0000001"],
        &["set_vm_memory_high_watermark", "0.4"],
    )
    .await;
    alarm_blocks_publishing(
        &node,
        "disk",
        &["set_disk_free_limit", "100000GB"],
        &["set_disk_free_limit", "50MB"],
    )
    .await;
}

#[tokio::test]
async fn a_deleted_queue_is_declared_again_and_readyz_is_503_until_it_is() {
    let node = own_node("deleted").await;
    let url = node.amqp_url().expose().to_owned();
    let queue = unique_queue("deleted");
    let web = Warren::web(&url, &queue, &[]);
    let worker = Warren::worker(&url, &queue, 10, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    // No kept-alive connections: a slow rabbitmqctl below can outlast web's idle keep-alive,
    // and a request on a connection web has just closed fails on the client's side.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert_eq!(status(&client, &web.url("/generate")).await, 200);

    // Without the right to declare, the queue cannot come back: the gap is visible.
    ctl(&node, &["set_permissions", "guest", "^$", ".*", ".*"]);
    ctl(&node, &["delete_queue", &queue]);
    let gone = wait_until(Duration::from_secs(10), || async {
        client
            .get(web.url("/generate"))
            .send()
            .await
            .unwrap()
            .status()
            == 503
            && status(&client, &web.url("/readyz")).await == 503
    })
    .await;
    assert!(
        gone,
        "web notices the queue is gone; log:\n{}",
        web.log_text()
    );
    for _ in 0..50 {
        assert_eq!(status(&client, &web.url("/generate")).await, 503);
    }
    assert_eq!(
        status(&client, &web.url("/readyz")).await,
        503,
        "not ready until declared"
    );

    ctl(&node, &["set_permissions", "guest", ".*", ".*", ".*"]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    let id = generate(&web).await;
    let ran = wait_until(Duration::from_secs(20), || async {
        worker
            .outcomes()
            .iter()
            .any(|(j, o)| *j == id && o == "acked")
    })
    .await;
    assert!(
        ran,
        "a job after the heal runs; worker log:\n{}",
        worker.log_text()
    );

    let web_log = web.log_text();
    assert_eq!(
        web_log.matches("the work queue is gone").count(),
        1,
        "one line per event:\n{web_log}"
    );
    assert!(web_log.contains("the work queue is declared again"));
    assert!(
        !web_log.contains("returned us a message"),
        "lapin's per-message warnings are filtered"
    );
    let metrics = get_text(&web.url("/metrics")).await;
    assert_eq!(metric(&metrics, "topology_redeclared_total", ""), 1.0);
    let worker_log = worker.log_text();
    assert!(
        worker_log.contains("the work queue was deleted"),
        "worker log:\n{worker_log}"
    );
}

/// Publishes one job of `work_ms` on `web`, waits until `worker` has it in hand, closes every
/// connection of the broker; returns the job id and the most jobs seen in hand at once until
/// the job is acked.
async fn close_connections_mid_job(
    node: &RabbitNode,
    web: &Warren,
    worker: &Warren,
) -> (String, f64) {
    let id = generate(web).await;
    let in_hand = wait_in_flight(worker, 1.0, Duration::from_secs(10)).await;
    assert!(in_hand, "the worker took the job");
    ctl(
        node,
        &["close_all_connections", "test: connection cut mid-job"],
    );
    let mut most = 0.0_f64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let metrics = get_text(&worker.url("/metrics")).await;
        most = most.max(metric(&metrics, "jobs_in_flight", ""));
        if worker
            .outcomes()
            .iter()
            .any(|(j, o)| *j == id && o == "acked")
        {
            return (id, most);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "job {id} was not acked after the cut; worker log:\n{}",
        worker.log_text()
    );
}

#[tokio::test]
async fn a_job_whose_channel_closed_is_abandoned_not_run_twice_at_once() {
    let node = own_node("cut").await;
    let url = node.amqp_url().expose().to_owned();
    let queue = unique_queue("cut");
    let web = Warren::web(&url, &queue, &[]);
    // 10 s jobs: `rabbitmqctl` starts a VM of its own, which takes seconds on a loaded machine, and
    // the cut must land while the job is still in hand.
    let worker = Warren::worker(&url, &queue, 10_000, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    let (id, most) = close_connections_mid_job(&node, &web, &worker).await;
    assert_eq!(
        most,
        1.0,
        "never two copies at once; log:\n{}",
        worker.log_text()
    );
    let outcomes: Vec<String> = worker
        .outcomes()
        .into_iter()
        .filter(|(j, _)| *j == id)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        outcomes,
        ["abandoned", "acked"],
        "log:\n{}",
        worker.log_text()
    );
    let metrics = get_text(&worker.url("/metrics")).await;
    assert_eq!(metric(&metrics, "jobs_abandoned_total", ""), 1.0);
    drop(worker);

    // Work that must not be interrupted runs on beside its redelivered copy.
    let keeper = Warren::worker(&url, &queue, 10_000, &[("ABANDON_ORPHANED_JOBS", "false")]);
    keeper.wait_ready("/readyz", Duration::from_secs(15)).await;
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    let (_, most) = close_connections_mid_job(&node, &web, &keeper).await;
    assert_eq!(
        most,
        2.0,
        "the old copy ran on; log:\n{}",
        keeper.log_text()
    );
    let metrics = get_text(&keeper.url("/metrics")).await;
    assert_eq!(metric(&metrics, "jobs_abandoned_total", ""), 0.0);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_gets_the_same_id_and_publishes_nothing() {
    let url = broker_url();
    let queue = unique_queue("idempotent");
    let web = Warren::web(&url, &queue, &[]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    let client = reqwest::Client::new();
    let get = |key: &str, query: &str| {
        client
            .get(web.url(&format!("/generate{query}")))
            .header("idempotency-key", key)
            .header("accept", "application/json")
            .send()
    };
    let first: serde_json::Value = get("order-1", "").await.unwrap().json().await.unwrap();
    let again: serde_json::Value = get("order-1", "").await.unwrap().json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    let other: serde_json::Value = get("order-2", "").await.unwrap().json().await.unwrap();
    assert_ne!(first["id"], other["id"]);

    let batch: serde_json::Value = get("batch-1", "?count=5")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let batch_again: serde_json::Value = get("batch-1", "?count=5")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch.as_array().unwrap().len(), 5);
    assert_eq!(batch, batch_again);
    let mismatch = get("batch-1", "?count=6").await.unwrap();
    assert_eq!(mismatch.status(), 422);

    let connection = amqp(&url).await;
    let depth = wait_until(Duration::from_secs(5), || async {
        queue_depth(&connection, &queue).await == Some(7)
    })
    .await;
    assert!(
        depth,
        "one message per key and job: {:?}",
        queue_depth(&connection, &queue).await
    );

    for bad in ["a b", &"k".repeat(256)] {
        let response = get(bad, "").await.unwrap();
        assert_eq!(response.status(), 400, "{bad:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("Idempotency-Key"),
            "{body}"
        );
    }
    let metrics = get_text(&web.url("/metrics")).await;
    assert_eq!(metric(&metrics, "idempotent_replays_total", ""), 2.0);
    assert_eq!(metric(&metrics, "jobs_published_total", ""), 7.0);
    assert_eq!(
        queue_depth(&connection, &queue).await,
        Some(7),
        "the refused keys published nothing"
    );
    delete_queues(&connection, &queue).await;
}
