//! The local scale target of `warren autoscale`: a pool of `warren worker` child processes.
//!
//! `current` is the number of live workers not asked to stop, `ready` those whose `/readyz`
//! answers 200 (what a Deployment's status would report). Scaling down is drain-aware: workers
//! still starting go first, then idle ones (`jobs_in_flight` 0), then the least busy; each gets
//! SIGTERM, finishes its job in hand, acks it and exits. Only a worker still alive after its
//! grace time (plus a margin) gets SIGKILL, and even then the broker requeues its unacked job.
//! A worker that exits without being asked is replaced and counted as a restart.
//!
//! Every worker gets `WARREN_PARENT_PID`, so it drains and exits by itself if the autoscaler
//! dies: no worker outlives its pool.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How a worker process is started.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The `warren` executable.
    pub exe: PathBuf,
    /// Environment for `warren worker` (broker, queue, work time, ...). Secrets go here, never
    /// in arguments, so they stay out of `ps`.
    pub env: Vec<(String, String)>,
    /// The workers' drain grace; a stopping worker is killed after it plus [`KILL_MARGIN`].
    pub grace: Duration,
    /// Where each worker's log goes (`worker-<n>.log`); `None` passes it through to our stderr.
    pub log_dir: Option<PathBuf>,
    /// Where to write a Prometheus `file_sd` target list of the workers' metrics ports.
    pub file_sd: Option<PathBuf>,
}

/// Extra time a stopping worker gets beyond its own grace before SIGKILL.
pub const KILL_MARGIN: Duration = Duration::from_secs(5);

/// One worker process.
#[derive(Debug)]
struct PoolWorker {
    /// Sequence number, for logs and log file names.
    id: u32,
    /// The process.
    child: Child,
    /// Its metrics port on 127.0.0.1.
    port: u16,
    /// When it was started.
    started: Instant,
    /// When it was sent SIGTERM, if it was.
    stopping_since: Option<Instant>,
    /// Whether `/readyz` answered 200 at the last probe.
    ready: bool,
}

/// Counts the autoscaler feeds to the engine, and more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Live workers not asked to stop (the scale target's replicas).
    pub current: u32,
    /// Of those, the ones whose `/readyz` answers 200.
    pub ready: u32,
    /// Workers draining after SIGTERM.
    pub stopping: u32,
    /// Workers that exited unasked and were replaced, since the pool started.
    pub restarts: u64,
}

/// A pool of `warren worker` processes.
pub struct WorkerPool {
    spec: WorkerSpec,
    workers: Vec<PoolWorker>,
    next_id: u32,
    restarts: u64,
    /// Seconds lived by workers that have exited.
    finished_worker_secs: f64,
    http: reqwest::Client,
    last_targets: Vec<u16>,
}

impl WorkerPool {
    /// An empty pool.
    pub fn new(spec: WorkerSpec) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(800))
            .build()
            .unwrap_or_default();
        Self {
            spec,
            workers: Vec::new(),
            next_id: 0,
            restarts: 0,
            finished_worker_secs: 0.0,
            http,
            last_targets: Vec::new(),
        }
    }

    /// The metrics ports of live workers (for scraping).
    pub fn metrics_ports(&self) -> Vec<u16> {
        self.workers.iter().map(|w| w.port).collect()
    }

    /// Seconds lived by every worker so far, the living included.
    pub fn worker_seconds(&self) -> f64 {
        self.finished_worker_secs
            + self
                .workers
                .iter()
                .map(|w| w.started.elapsed().as_secs_f64())
                .sum::<f64>()
    }

    /// The counts as of the last [`WorkerPool::refresh`].
    pub fn status(&self) -> PoolStatus {
        let active = self.workers.iter().filter(|w| w.stopping_since.is_none());
        PoolStatus {
            current: count(active.clone()),
            ready: count(active.filter(|w| w.ready)),
            stopping: count(self.workers.iter().filter(|w| w.stopping_since.is_some())),
            restarts: self.restarts,
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let id = self.next_id;
        self.next_id += 1;
        let mut command = Command::new(&self.spec.exe);
        command
            .arg("worker")
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("METRICS_PORT", port.to_string())
            .env("METRICS_BIND", "127.0.0.1")
            .env("WARREN_PARENT_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = &self.spec.log_dir {
            std::fs::create_dir_all(dir)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("worker-{id}.log")))?;
            command.stderr(file);
        }
        let child = command.spawn()?;
        tracing::info!(
            worker = id,
            metrics_port = port,
            pid = child.id().unwrap_or(0),
            "worker started"
        );
        self.workers.push(PoolWorker {
            id,
            child,
            port,
            started: Instant::now(),
            stopping_since: None,
            ready: false,
        });
        Ok(())
    }

    /// Reaps exited workers (replacing crashed ones), kills workers past their grace, probes
    /// readiness, and rewrites the scrape target list when it changed.
    pub async fn refresh(&mut self) -> PoolStatus {
        let mut crashed = 0;
        let mut index = 0;
        while index < self.workers.len() {
            let worker = &mut self.workers[index];
            match worker.child.try_wait() {
                Ok(Some(status)) => {
                    let lived = worker.started.elapsed().as_secs_f64();
                    if worker.stopping_since.is_some() {
                        tracing::info!(worker = worker.id, %status, "worker stopped");
                    } else {
                        tracing::warn!(worker = worker.id, %status, "worker exited unasked; replacing it");
                        crashed += 1;
                    }
                    self.finished_worker_secs += lived;
                    self.workers.swap_remove(index);
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(worker = worker.id, error = %e, "cannot check worker"),
            }
            if let Some(since) = worker.stopping_since {
                if since.elapsed() > self.spec.grace + KILL_MARGIN {
                    tracing::warn!(worker = worker.id, "worker still draining after its grace; killing it (the broker requeues its job)");
                    let _ = worker.child.start_kill();
                }
            }
            index += 1;
        }
        for _ in 0..crashed {
            self.restarts += 1;
            if let Err(e) = self.spawn() {
                tracing::error!(error = %e, "cannot start a replacement worker");
            }
        }
        let probes = self
            .workers
            .iter()
            .filter(|w| w.stopping_since.is_none())
            .map(|w| {
                let url = format!("http://127.0.0.1:{}/readyz", w.port);
                let http = self.http.clone();
                async move { matches!(http.get(url).send().await, Ok(r) if r.status().is_success()) }
            })
            .collect::<Vec<_>>();
        let results = futures_util::future::join_all(probes).await;
        for (worker, ready) in self
            .workers
            .iter_mut()
            .filter(|w| w.stopping_since.is_none())
            .zip(results)
        {
            worker.ready = ready;
        }
        self.write_file_sd();
        self.status()
    }

    /// Starts or stops workers until `target` are active; stops drain, preferring workers that
    /// are not ready yet, then idle ones.
    pub async fn scale_to(&mut self, target: u32) {
        let active = self.status().current;
        if target > active {
            for _ in active..target {
                if let Err(e) = self.spawn() {
                    tracing::error!(error = %e, "cannot start a worker");
                }
            }
        } else if target < active {
            let mut candidates = Vec::new();
            for (index, worker) in self.workers.iter().enumerate() {
                if worker.stopping_since.is_some() {
                    continue;
                }
                let in_flight = if worker.ready {
                    self.in_flight(worker.port).await
                } else {
                    0.0
                };
                candidates.push((worker.ready, in_flight, index));
            }
            // Not ready first, then fewest jobs in flight, then the youngest.
            candidates.sort_by(|a, b| {
                (a.0, a.1)
                    .partial_cmp(&(b.0, b.1))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.2.cmp(&a.2))
            });
            for &(_, in_flight, index) in candidates.iter().take((active - target) as usize) {
                let worker = &mut self.workers[index];
                if let Some(pid) = worker.child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
                worker.stopping_since = Some(Instant::now());
                tracing::info!(
                    worker = worker.id,
                    jobs_in_flight = in_flight,
                    "stopping worker (SIGTERM, drains its jobs)"
                );
            }
        }
        self.write_file_sd();
    }

    async fn in_flight(&self, port: u16) -> f64 {
        let url = format!("http://127.0.0.1:{port}/metrics");
        match self.http.get(url).send().await {
            Ok(response) => match response.text().await {
                Ok(text) => crate::scaling::metric_source::parse_samples(&text)
                    .into_iter()
                    .find(|s| s.name == "jobs_in_flight")
                    .map_or(f64::INFINITY, |s| s.value),
                Err(_) => f64::INFINITY,
            },
            // An unreadable worker may be mid-job: stop it last.
            Err(_) => f64::INFINITY,
        }
    }

    /// Stops every worker with a drain, waiting up to the grace (plus margin), then kills.
    pub async fn shutdown(&mut self) {
        for worker in &mut self.workers {
            if worker.stopping_since.is_none() {
                if let Some(pid) = worker.child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
                worker.stopping_since = Some(Instant::now());
            }
        }
        let deadline = Instant::now() + self.spec.grace + KILL_MARGIN;
        while !self.workers.is_empty() {
            let waits = self.workers.iter_mut().map(|w| w.child.wait());
            let remaining = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(remaining, futures_util::future::join_all(waits))
                .await
                .is_err()
            {
                for worker in &mut self.workers {
                    tracing::warn!(
                        worker = worker.id,
                        "worker did not drain in time; killing it"
                    );
                    let _ = worker.child.kill().await;
                }
            }
            for worker in self.workers.drain(..) {
                self.finished_worker_secs += worker.started.elapsed().as_secs_f64();
            }
        }
        self.write_file_sd();
        tracing::info!("all workers stopped");
    }

    fn write_file_sd(&mut self) {
        let Some(path) = &self.spec.file_sd else {
            return;
        };
        let ports = self.metrics_ports();
        if ports == self.last_targets {
            return;
        }
        let targets: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let json =
            serde_json::json!([{ "targets": targets, "labels": { "job": "warren-worker" } }]);
        let partial = path.with_extension("partial");
        let written = std::fs::write(&partial, json.to_string())
            .and_then(|()| std::fs::rename(&partial, path));
        match written {
            Ok(()) => self.last_targets = ports,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the scrape target list")
            }
        }
    }
}

fn count<'a>(workers: impl Iterator<Item = &'a PoolWorker>) -> u32 {
    u32::try_from(workers.count()).unwrap_or(u32::MAX)
}
