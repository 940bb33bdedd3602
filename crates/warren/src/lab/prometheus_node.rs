//! A private Prometheus for the demo (and the tests), scraping the broker's per-queue metrics,
//! the web server, the autoscaler and the workers (through a `file_sd` list the pool keeps).
//!
//! Prometheus runs under a small `sh` guard whose standard input is a pipe from this process:
//! when the pipe closes (this process ends, however abruptly) the guard stops Prometheus, so it
//! never outlives the demo.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// What a private Prometheus scrapes.
#[derive(Clone, Debug)]
pub struct ScrapeTargets {
    /// The broker's prometheus plugin, `host:port`.
    pub rabbitmq: String,
    /// `warren web`, `host:port`.
    pub web: String,
    /// `warren autoscale`'s metrics port, `host:port`.
    pub autoscaler: String,
    /// The workers' `file_sd` list, kept by the pool.
    pub workers_file_sd: PathBuf,
    /// Rule files to evaluate (the repository's `rules.yml`: warren's alerts and the
    /// capacity metric's recording rules); none when empty.
    pub rule_files: Vec<PathBuf>,
    /// Scrape interval.
    pub interval: Duration,
}

/// The Prometheus configuration for `targets`; job names match `deploy/kubernetes`.
pub fn config_yaml(targets: &ScrapeTargets) -> String {
    let interval = format!("{}ms", targets.interval.as_millis().max(100));
    format!(
        r#"global:
  scrape_interval: {interval}
  evaluation_interval: {interval}
{rules}scrape_configs:
  - job_name: rabbitmq
    metrics_path: /metrics/detailed
    params:
      family: [queue_coarse_metrics, queue_consumer_count, channel_queue_metrics, queue_exchange_metrics, queue_delivery_metrics]
    static_configs:
      - targets: ["{rabbitmq}"]
  - job_name: warren-web
    static_configs:
      - targets: ["{web}"]
  - job_name: warren-autoscaler
    static_configs:
      - targets: ["{autoscaler}"]
  - job_name: warren-worker
    file_sd_configs:
      - files: ["{file_sd}"]
        refresh_interval: {interval}
"#,
        rabbitmq = targets.rabbitmq,
        web = targets.web,
        autoscaler = targets.autoscaler,
        file_sd = targets.workers_file_sd.display(),
        rules = if targets.rule_files.is_empty() {
            String::new()
        } else {
            let files: Vec<String> = targets
                .rule_files
                .iter()
                .map(|f| format!("\"{}\"", f.display()))
                .collect();
            format!("rule_files: [{}]\n", files.join(", "))
        },
    )
}

/// The `prometheus` executable, if installed.
pub fn find_prometheus() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("prometheus"))
        .find(|p| p.is_file())
}

/// A running private Prometheus.
pub struct PrometheusNode {
    /// The guard process (Prometheus is its child).
    guard: Option<Child>,
    /// Its port on 127.0.0.1.
    port: u16,
}

impl PrometheusNode {
    /// Writes the config and storage under `dir`, starts Prometheus on a free port and waits
    /// until it is ready.
    pub async fn start(
        executable: &Path,
        dir: &Path,
        targets: &ScrapeTargets,
    ) -> anyhow::Result<Self> {
        Self::start_with_storage(executable, dir, &dir.join("data"), targets).await
    }

    /// As [`Self::start`], with the TSDB in `storage` (which may outlive `dir`: a clean
    /// [`Self::stop`] leaves its head in the WAL, so a Prometheus started on it later answers
    /// for the whole run).
    pub async fn start_with_storage(
        executable: &Path,
        dir: &Path,
        storage: &Path,
        targets: &ScrapeTargets,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::create_dir_all(storage)?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets))?;
        if !targets.workers_file_sd.exists() {
            std::fs::write(&targets.workers_file_sd, "[]")?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        // The guard: start Prometheus, stop it when our end of stdin closes or on SIGTERM,
        // SIGINT or SIGHUP (a closed terminal hangs up the whole process group, and Prometheus
        // takes SIGHUP for "reload its config": it would outlive the demo).
        let script = r#""$@" & p=$!; trap 'kill $p 2>/dev/null; wait $p; exit 0' TERM INT HUP; read -r _; kill $p 2>/dev/null; wait $p"#;
        let guard = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("prometheus-guard")
            .arg(executable)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1d")
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let mut node = Self {
            guard: Some(guard),
            port,
        };
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Ok(response) = client.get(format!("{}/-/ready", node.url())).send().await {
                if response.status().is_success() {
                    tracing::info!(url = %node.url(), dir = %dir.display(), "private Prometheus is up");
                    return Ok(node);
                }
            }
            if let Some(guard) = node.guard.as_mut() {
                if let Ok(Some(status)) = guard.try_wait() {
                    anyhow::bail!(
                        "Prometheus exited ({status}); see {}",
                        dir.join("prometheus.log").display()
                    );
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                node.stop().await;
                anyhow::bail!(
                    "Prometheus did not become ready within 30 s; see {}",
                    dir.join("prometheus.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops Prometheus and waits for it.
    pub async fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            // Closing stdin makes the guard stop Prometheus and wait for it.
            drop(guard.stdin.take());
            if tokio::time::timeout(Duration::from_secs(15), guard.wait())
                .await
                .is_err()
            {
                let _ = guard.kill().await;
            }
            tracing::info!("private Prometheus stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_every_job_and_the_detailed_queue_families() {
        let yaml = config_yaml(&ScrapeTargets {
            rabbitmq: "127.0.0.1:1".into(),
            web: "127.0.0.1:2".into(),
            autoscaler: "127.0.0.1:3".into(),
            workers_file_sd: "/tmp/w.json".into(),
            rule_files: vec!["/repo/rules.yml".into()],
            interval: Duration::from_secs(2),
        });
        for needle in [
            "job_name: rabbitmq",
            "job_name: warren-web",
            "job_name: warren-autoscaler",
            "job_name: warren-worker",
            "queue_coarse_metrics",
            "rule_files: [\"/repo/rules.yml\"]",
            "scrape_interval: 2000ms",
        ] {
            assert!(yaml.contains(needle), "{needle} in\n{yaml}");
        }
    }
}
