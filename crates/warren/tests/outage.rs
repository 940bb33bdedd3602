//! Broker outages, each on a private node of its own so the shared test broker is undisturbed.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// GETs `url` and returns the status and how long the answer took.
async fn timed_get(client: &reqwest::Client, url: &str) -> (u16, Duration, Option<String>) {
    let started = Instant::now();
    let response = client.get(url).send().await.unwrap();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), started.elapsed(), retry)
}

#[tokio::test]
async fn generate_and_readyz_answer_503_within_1s_while_the_broker_is_down_and_recover() {
    let mut node = own_node("outage").await;
    let url = node.amqp_url().expose().to_owned();
    let queue = unique_queue("outage");
    let kept = unique_queue("kept");
    let web = Warren::web(&url, &queue, &[]);
    let keeper = Warren::web(&url, &kept, &[]);
    let worker = Warren::worker(&url, &queue, 10, &[]);
    for process in [&web, &keeper] {
        process.wait_ready("/readyz", Duration::from_secs(15)).await;
    }
    worker.wait_ready("/readyz", Duration::from_secs(15)).await;
    let client = reqwest::Client::new();
    assert_eq!(timed_get(&client, &web.url("/generate")).await.0, 200);
    assert_eq!(
        get_text(&keeper.url("/generate?count=5"))
            .await
            .lines()
            .count(),
        5
    );

    node.stop().await;
    for _ in 0..5 {
        for path in ["/generate", "/readyz"] {
            let (status, took, retry) = timed_get(&client, &web.url(path)).await;
            assert_eq!(status, 503, "{path} while the broker is down");
            assert!(took < Duration::from_millis(1100), "{path} took {took:?}");
            assert_eq!(retry.as_deref(), Some("1"), "{path} carries Retry-After");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let worker_unready = wait_until(Duration::from_secs(5), || async {
        matches!(reqwest::get(worker.url("/readyz")).await, Ok(r) if r.status() == 503)
    })
    .await;
    assert!(worker_unready, "worker /readyz reports the lost broker");

    node.start_again().await.unwrap();
    let back = Instant::now();
    web.wait_ready("/readyz", Duration::from_secs(10)).await;
    worker.wait_ready("/readyz", Duration::from_secs(10)).await;
    assert!(
        back.elapsed() < Duration::from_secs(10),
        "recovered in {:?}",
        back.elapsed()
    );
    let id = generate(&web).await;
    let done = wait_until(Duration::from_secs(10), || async {
        worker
            .outcomes()
            .contains(&(id.clone(), "acked".to_owned()))
    })
    .await;
    assert!(
        done,
        "the worker consumes again after the restart; log:\n{}",
        worker.log_text()
    );

    // The durable quorum queue kept its persistent messages across the restart.
    let connection = amqp(&url).await;
    assert_eq!(queue_depth(&connection, &kept).await, Some(5));
    let metrics = get_text(&web.url("/metrics")).await;
    assert!(
        metric(
            &metrics,
            "publish_failures_total",
            r#"reason="not_connected""#
        ) + metric(
            &metrics,
            "publish_failures_total",
            r#"reason="channel_error""#
        ) >= 5.0
    );
    node.stop().await;
}

#[tokio::test]
async fn generate_answers_503_when_the_broker_does_not_confirm_in_time() {
    let node = own_node("blocked").await;
    let url = node.amqp_url().expose().to_owned();
    let queue = unique_queue("blocked");
    let web = Warren::web(&url, &queue, &[("CONFIRM_TIMEOUT_MS", "500")]);
    web.wait_ready("/readyz", Duration::from_secs(15)).await;
    let client = reqwest::Client::new();
    assert_eq!(timed_get(&client, &web.url("/generate")).await.0, 200);

    // A memory alarm makes the broker block publishers: no confirm ever comes.
    let alarm = node
        .ctl(&["set_vm_memory_high_watermark", "0.000001"])
        .unwrap();
    assert!(
        alarm.status.success(),
        "{}",
        String::from_utf8_lossy(&alarm.stderr)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..3 {
        let (status, took, _) = timed_get(&client, &web.url("/generate")).await;
        assert_eq!(status, 503);
        assert!(
            took < Duration::from_millis(900),
            "answered in {took:?}, bound 500 ms"
        );
    }
    // The publish that meets the alarm waits out its confirm bound; the broker then tells the
    // connection it is blocked, and later requests are refused at once (tests/faults.rs).
    let metrics = get_text(&web.url("/metrics")).await;
    let timed_out = metric(
        &metrics,
        "publish_failures_total",
        r#"reason="confirm_timeout""#,
    );
    let blocked = metric(&metrics, "publish_failures_total", r#"reason="blocked""#);
    assert!(timed_out >= 1.0, "{metrics}");
    assert_eq!(timed_out + blocked, 3.0, "{metrics}");
    assert_eq!(metric(&metrics, "jobs_published_total", ""), 1.0);
    assert!(node
        .ctl(&["set_vm_memory_high_watermark", "0.4"])
        .unwrap()
        .status
        .success());
}

/// `warren web` with a broker that refuses it, or cannot be reached: `/generate`'s 503 and
/// `/readyz` say why; the log says it once, not once per retry; the password is never shown.
async fn refusal_is_explained(url: String, why: &str) {
    let queue = support::unique_queue("refusal");
    let web = support::Warren::web(&url, &queue, &[]);
    let readyz = web.url("/readyz");
    let explained = support::wait_until(Duration::from_secs(10), || async {
        match reqwest::get(&readyz).await {
            Ok(r) => r.status() == 503 && r.text().await.unwrap_or_default().contains(why),
            Err(_) => false,
        }
    })
    .await;
    let body = reqwest::get(&readyz)
        .await
        .map(|r| futures_util::FutureExt::now_or_never(r.text()))
        .ok();
    assert!(
        explained,
        "/readyz never said {why:?}: {body:?}\n{}",
        web.log_text()
    );
    let response = reqwest::get(web.url("/generate")).await.unwrap();
    assert_eq!(response.status(), 503);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["reason"], "not_connected", "{json}");
    let error = json["error"].as_str().unwrap();
    assert!(
        error.starts_with("not connected to the broker: ") && error.contains(why),
        "{json}"
    );
    // Several retries later (100 ms doubling), still one line for the one reason.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = web.log_text();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot reach the broker"))
        .collect();
    assert_eq!(said.len(), 1, "once per reason, not per retry:\n{log}");
    assert!(said[0].contains(why), "{log}");
    assert!(!log.contains("hunter2"), "a password in the log:\n{log}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[tokio::test]
async fn web_says_why_the_broker_refuses_it_in_503_readyz_and_the_log_once() {
    let mut wrong_password = url::Url::parse(&support::broker_url()).unwrap();
    wrong_password.set_password(Some("hunter2")).unwrap();
    let mut missing_vhost = url::Url::parse(&support::broker_url()).unwrap();
    missing_vhost.set_path("/no-such-vhost");
    let closed_port = format!(
        "amqp://guest:hunter2@127.0.0.1:{}/%2F",
        support::free_port()
    );
    tokio::join!(
        refusal_is_explained(wrong_password.to_string(), "access refused by 127.0.0.1:"),
        refusal_is_explained(missing_vhost.to_string(), "vhost not found: 127.0.0.1:"),
        refusal_is_explained(
            "amqp://guest:hunter2@no-such-host.invalid:5672/%2F".into(),
            "host unknown: no-such-host.invalid:5672 does not resolve"
        ),
        refusal_is_explained(
            closed_port,
            "connection refused: nothing listens at 127.0.0.1:"
        ),
    );
}
