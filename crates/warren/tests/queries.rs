//! The prometheus-adapter rules' queries (the capacity overlay's on the recording rule) and every
//! Grafana panel's expression, run by a real Prometheus evaluating the repository's rules.yml and
//! scraping the real broker, web, autoscaler and workers.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lapin::BasicProperties;
use support::*;
use warren::lab::prometheus_node::{find_prometheus, PrometheusNode, ScrapeTargets};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_and_dashboard_queries_return_series_with_their_labels() {
    let prometheus = find_prometheus()
        .expect("prometheus is missing: scripts/setup installs Debian's prometheus package");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("warren-test-queries-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The shipped manifest selects queue Orders; no other test uses that queue.
    let queue = "Orders";
    let url = broker_url();
    let rabbit_prometheus = std::env::var("WARREN_TEST_RABBIT_PROMETHEUS_URL").unwrap();
    let web = Warren::web(&url, queue, &[]);
    let autoscaler_port = free_port();
    let file_sd = dir.join("workers.json");
    let mut autoscale = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("autoscale")
        .env_remove("RUST_LOG")
        .env("AMQP_URL", &url)
        .env("QUEUE", queue)
        .env(
            "HPA_FILE",
            root.join("deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml"),
        )
        .env("RABBIT_PROMETHEUS_URL", &rabbit_prometheus)
        .env("SPEED", "10")
        .env("WORK_MS", "100")
        .env("GRACE_MS", "2000")
        .env("AUTOSCALER_METRICS_PORT", autoscaler_port.to_string())
        .env("WORKER_LOG_DIR", dir.join("workers"))
        .env("PROMETHEUS_FILE_SD", &file_sd)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("autoscale.log")).unwrap())
        .spawn()
        .unwrap();
    web.wait_ready("/readyz", Duration::from_secs(15)).await;

    let targets = ScrapeTargets {
        rabbitmq: rabbit_prometheus.trim_start_matches("http://").to_owned(),
        web: format!("127.0.0.1:{}", web.port),
        autoscaler: format!("127.0.0.1:{autoscaler_port}"),
        workers_file_sd: file_sd.clone(),
        rule_files: vec![root.join("deploy/kubernetes/base/prometheus/rules.yml")],
        interval: Duration::from_secs(1),
    };
    let mut node = PrometheusNode::start(&prometheus, &dir.join("prometheus"), &targets)
        .await
        .unwrap();

    // Traffic of every kind the dashboard shows: jobs, a 404, a poison message.
    let connection = amqp(&url).await;
    for _ in 0..5 {
        assert_eq!(
            get_text(&web.url("/generate?count=4"))
                .await
                .lines()
                .count(),
            4
        );
        let _ = reqwest::get(web.url("/nope")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    publish_raw(
        &connection,
        queue,
        &[0xff, 0x00],
        BasicProperties::default(),
    )
    .await;

    let check = tokio::task::spawn_blocking({
        let (root, prometheus_url) = (root.clone(), node.url());
        move || {
            Command::new("python3")
                .arg(root.join("deploy/check-queries.py"))
                .args(["--prometheus", &prometheus_url, "--wait", "60"])
                .args(["--warren", env!("CARGO_BIN_EXE_warren")])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    node.stop().await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(autoscale.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = tokio::task::spawn_blocking(move || autoscale.wait().unwrap())
        .await
        .unwrap();
    assert!(check.status.success(), "check-queries failed:\n{report}");
    assert!(stopped.success(), "autoscale exit: {stopped}");
    delete_queues(&connection, queue).await;
    let _ = std::fs::remove_dir_all(&dir);
}
