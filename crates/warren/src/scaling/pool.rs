//! The local scale target of `warren autoscale`: a pool of worker processes, `warren worker`
//! by default or any consumer program (`--worker-command`).
//!
//! `current` is the number of live workers not asked to stop, `ready` those that are ready
//! (what a Deployment's status would report): a `warren worker` whose `/readyz` answers 200; a
//! program with a busy gauge ([`WorkerCommand::Program`]) whose metrics URL answers; any other
//! program as soon as it runs, as a pod without a readiness probe. Scaling down goes to workers
//! still starting first, then idle ones (busy gauge 0), then the least busy, the youngest first
//! among equals; a program with no busy gauge cannot tell, so its youngest go first. Each gets
//! SIGTERM, finishes its job in hand, acks it and exits; one still alive after the stop timeout
//! gets SIGKILL, and even then the broker requeues its unacked job. A worker that exits without
//! being asked is replaced and counted as a restart: at once, unless workers keep dying young
//! (within [`STABLE_AFTER`] of their start), when each replacement waits twice as long as the
//! one before, from 1 s up to [`MAX_RESTART_DELAY`], as a kubelet backs off a crash-looping
//! container; a replacement that waits counts as a replica that is not ready.
//!
//! Every worker runs in a process group of its own, so that a signal meant for the
//! autoscaler's group (Ctrl-C, a shell's `kill %1`) reaches only the autoscaler, which then
//! drains the workers once (a second SIGTERM straight from the terminal would make them exit
//! without finishing their jobs in hand); the pool's SIGTERM and SIGKILL go to that whole
//! group, so a program started through a shell script is stopped with its children.
//!
//! The environment every worker gets (the contract with a program warren did not write):
//!
//! | variable | value |
//! | --- | --- |
//! | `WARREN_WORKER_INDEX` | the lowest index, from 0, that no live worker of the pool holds: a replacement takes the index of the worker it replaces |
//! | `WARREN_AMQP_URL` | the broker's URL, password included (never logged by warren) |
//! | `WARREN_QUEUE` | the queue to consume |
//! | `WARREN_VHOST` | the queue's virtual host (the URL's path, decoded; `/` when it has none) |
//! | `WARREN_METRICS_PORT` | a free port on 127.0.0.1, the worker's own, where it may serve `/metrics` |
//! | `WARREN_PARENT_PID` | the autoscaler's pid: a worker should drain and exit when it is gone |
//!
//! `warren worker` also gets its own settings (`AMQP_URL`, `QUEUE`, `METRICS_PORT`,
//! `WORK_MS`, ...), and drains and exits by itself when `WARREN_PARENT_PID` is gone, so no
//! worker outlives its pool.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::config::BrokerConfig;
use crate::records::{Record, WorkerEvent, WorkerRecord};

/// The program a worker runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerCommand {
    /// `warren worker`, from the `warren` executable at `exe`.
    Warren {
        /// The `warren` executable.
        exe: PathBuf,
        /// `warren worker`'s settings beyond the broker and queue (work time, prefetch, grace,
        /// ...). Secrets go in the environment, never in arguments, so they stay out of `ps`.
        env: Vec<(String, String)>,
    },
    /// Any consumer program, started as `argv[0] argv[1..]` with the pool's environment.
    Program {
        /// The program and its arguments (at least the program).
        argv: Vec<String>,
        /// The name of a gauge of the jobs the worker has in hand, served as Prometheus text
        /// at `http://127.0.0.1:$WARREN_METRICS_PORT/metrics`: 0 is idle. With it the pool
        /// stops idle workers first and counts a worker ready once that URL answers; without
        /// it, the youngest go first and a worker is ready once it runs.
        busy_metric: Option<String>,
    },
}

/// The gauge of jobs in hand that `warren worker` serves.
pub const WARREN_BUSY_METRIC: &str = "jobs_in_flight";

/// How a worker process is started and stopped.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// What runs.
    pub command: WorkerCommand,
    /// The broker and queue handed to every worker (the URL's password stays out of logs).
    pub broker: BrokerConfig,
    /// How long a worker has between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// Where each worker's log goes (`worker-<n>.log`, its stderr, and its stdout for a
    /// program); `None` passes stderr through to ours.
    pub log_dir: Option<PathBuf>,
    /// Where to write a Prometheus `file_sd` target list of the workers' metrics ports.
    pub file_sd: Option<PathBuf>,
}

/// Extra time a stopping `warren worker` gets beyond its own drain grace before SIGKILL.
pub const KILL_MARGIN: Duration = Duration::from_secs(5);

/// A worker that lived this long before it died ends a crash loop: its replacement starts at
/// once.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The longest a replacement waits in a crash loop.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// One worker process.
#[derive(Debug)]
struct PoolWorker {
    /// Sequence number, for logs and log file names.
    id: u32,
    /// `WARREN_WORKER_INDEX`.
    index: u32,
    /// The process, leader of its own process group.
    child: Child,
    /// Its pid, which is also its process group's id; `None` once reaped.
    pid: Option<Pid>,
    /// Its metrics port on 127.0.0.1.
    port: u16,
    /// When it was started.
    started: Instant,
    /// When it was sent SIGTERM, if it was.
    stopping_since: Option<Instant>,
    /// Whether SIGKILL was sent.
    killed: bool,
    /// Whether it was ready at the last probe.
    ready: bool,
}

impl PoolWorker {
    /// Sends `signal` to the worker's process group (a program's children too).
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid {
            if let Err(e) = killpg(pid, signal) {
                tracing::debug!(worker = self.id, error = %e, "cannot signal the worker");
            }
        }
    }
}

/// Counts the autoscaler feeds to the engine, and more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Live workers not asked to stop, and replacements waiting out a crash loop's delay (the
    /// scale target's replicas).
    pub current: u32,
    /// Of those, the ones that are ready.
    pub ready: u32,
    /// Workers draining after SIGTERM.
    pub stopping: u32,
    /// Workers that exited unasked and were replaced, since the pool started.
    pub restarts: u64,
}

/// A pool of worker processes.
pub struct WorkerPool {
    spec: WorkerSpec,
    workers: Vec<PoolWorker>,
    next_id: u32,
    restarts: u64,
    /// Workers that died young in a row (1: the last one lived [`STABLE_AFTER`], or the one
    /// before died long ago).
    crash_streak: u32,
    /// When a worker last died unasked.
    last_crash: Option<Instant>,
    /// Replacements waiting out their delay: when each may start.
    pending: Vec<Instant>,
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
            crash_streak: 0,
            last_crash: None,
            pending: Vec::new(),
            finished_worker_secs: 0.0,
            http,
            last_targets: Vec::new(),
        }
    }

    /// The metrics ports of live workers (for scraping).
    pub fn metrics_ports(&self) -> Vec<u16> {
        self.workers.iter().map(|w| w.port).collect()
    }

    /// The pids of live workers not asked to stop, by `WARREN_WORKER_INDEX`.
    pub fn active_pids(&self) -> Vec<(u32, u32)> {
        let mut pids: Vec<(u32, u32)> = self
            .workers
            .iter()
            .filter(|w| w.stopping_since.is_none())
            .filter_map(|w| Some((w.index, u32::try_from(w.pid?.as_raw()).ok()?)))
            .collect();
        pids.sort_unstable();
        pids
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
            current: count(active.clone())
                .saturating_add(u32::try_from(self.pending.len()).unwrap_or(u32::MAX)),
            ready: count(active.filter(|w| w.ready)),
            stopping: count(self.workers.iter().filter(|w| w.stopping_since.is_some())),
            restarts: self.restarts,
        }
    }

    /// The lowest index no live worker holds.
    fn free_index(&self) -> u32 {
        (0..)
            .find(|i| self.workers.iter().all(|w| w.index != *i))
            .unwrap_or(u32::MAX)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let id = self.next_id;
        self.next_id += 1;
        let index = self.free_index();
        let broker = &self.spec.broker;
        let mut command = match &self.spec.command {
            WorkerCommand::Warren { exe, env } => {
                let mut command = Command::new(exe);
                command
                    .arg("worker")
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .env("AMQP_URL", broker.url.expose())
                    .env("QUEUE", broker.queue.to_string())
                    .env("METRICS_PORT", port.to_string())
                    .env("METRICS_BIND", "127.0.0.1");
                command
            }
            WorkerCommand::Program { argv, .. } => {
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| anyhow::anyhow!("the worker command is empty"))?;
                let mut command = Command::new(program);
                command.args(args);
                command
            }
        };
        command
            .env("WARREN_WORKER_INDEX", index.to_string())
            .env("WARREN_AMQP_URL", broker.url.expose())
            .env("WARREN_QUEUE", broker.queue.to_string())
            .env("WARREN_VHOST", broker.url.vhost())
            .env("WARREN_METRICS_PORT", port.to_string())
            .env("WARREN_PARENT_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.spec.log_dir {
            std::fs::create_dir_all(dir)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("worker-{id}.log")))?;
            if matches!(self.spec.command, WorkerCommand::Program { .. }) {
                command.stdout(file.try_clone()?);
            }
            command.stderr(file);
        }
        let child = command.spawn()?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw);
        let mut started = WorkerRecord::now(WorkerEvent::Started);
        started.worker = Some(u64::from(id));
        tracing::info!(
            worker = id,
            index,
            metrics_port = port,
            pid = child.id().unwrap_or(0),
            record = %Record::from(started).to_json(),
            "worker started"
        );
        self.workers.push(PoolWorker {
            id,
            index,
            child,
            pid,
            port,
            started: Instant::now(),
            stopping_since: None,
            killed: false,
            ready: false,
        });
        Ok(())
    }

    /// Reaps exited workers (replacing crashed ones), kills workers past their stop timeout,
    /// probes readiness, and rewrites the scrape target list when it changed.
    pub async fn refresh(&mut self) -> PoolStatus {
        let mut crashed = Vec::new();
        let mut index = 0;
        while index < self.workers.len() {
            let worker = &mut self.workers[index];
            match worker.child.try_wait() {
                Ok(Some(status)) => {
                    let lived = worker.started.elapsed().as_secs_f64();
                    if worker.stopping_since.is_some() {
                        tracing::info!(worker = worker.id, %status, "worker stopped");
                    } else {
                        crashed.push((worker.id, status, worker.started.elapsed()));
                    }
                    self.finished_worker_secs += lived;
                    self.workers.swap_remove(index);
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(worker = worker.id, error = %e, "cannot check worker"),
            }
            if let Some(since) = worker.stopping_since {
                if !worker.killed && since.elapsed() > self.spec.stop_timeout {
                    tracing::warn!(worker = worker.id, "worker still running after its stop timeout; killing it (the broker requeues its job)");
                    worker.signal(Signal::SIGKILL);
                    worker.killed = true;
                }
            }
            index += 1;
        }
        for (id, status, lived) in crashed {
            self.restarts += 1;
            let in_a_loop = self
                .last_crash
                .is_some_and(|at| at.elapsed() < STABLE_AFTER + MAX_RESTART_DELAY);
            self.crash_streak = if lived < STABLE_AFTER && in_a_loop {
                self.crash_streak.saturating_add(1)
            } else {
                1
            };
            self.last_crash = Some(Instant::now());
            let delay = restart_delay(self.crash_streak);
            tracing::warn!(worker = id, %status, lived_ms = lived.as_millis() as u64,
                restart_delay_ms = delay.as_millis() as u64, "worker exited unasked; replacing it");
            self.pending.push(Instant::now() + delay);
        }
        let now = Instant::now();
        let due = self.pending.iter().filter(|at| **at <= now).count();
        self.pending.retain(|at| *at > now);
        for _ in 0..due {
            if let Err(e) = self.spawn() {
                tracing::error!(error = %e, "cannot start a replacement worker");
            }
        }
        let probes = self
            .workers
            .iter()
            .filter(|w| w.stopping_since.is_none())
            .map(|w| self.probe(w.port))
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

    /// Whether the worker serving on `port` is ready.
    async fn probe(&self, port: u16) -> bool {
        let path = match &self.spec.command {
            WorkerCommand::Warren { .. } => "readyz",
            WorkerCommand::Program {
                busy_metric: Some(_),
                ..
            } => "metrics",
            WorkerCommand::Program {
                busy_metric: None, ..
            } => return true,
        };
        let url = format!("http://127.0.0.1:{port}/{path}");
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// Starts or stops workers until `target` are active. Stops drain: workers not ready yet
    /// go first, then the idle ones, then the least busy; among equals the youngest.
    pub async fn scale_to(&mut self, target: u32) {
        let active = self.status().current;
        if target > active {
            for _ in active..target {
                if let Err(e) = self.spawn() {
                    tracing::error!(error = %e, "cannot start a worker");
                }
            }
        } else if target < active {
            // Replacements not started yet go first: they are replicas that are not ready.
            let cancelled = self.pending.len().min((active - target) as usize);
            self.pending.truncate(self.pending.len() - cancelled);
            let active = active - u32::try_from(cancelled).unwrap_or(0);
            let mut candidates = Vec::new();
            for (index, worker) in self.workers.iter().enumerate() {
                if worker.stopping_since.is_some() {
                    continue;
                }
                let busy = if worker.ready {
                    self.busy(worker.port).await
                } else {
                    Some(0.0)
                };
                candidates.push((worker.ready, busy, worker.started, index));
            }
            // Not ready first, then fewest jobs in hand (unknown counts as 0: all equal), then
            // the youngest.
            candidates.sort_by(|a, b| {
                (a.0, a.1.unwrap_or(0.0))
                    .partial_cmp(&(b.0, b.1.unwrap_or(0.0)))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.2.cmp(&a.2))
            });
            for &(_, busy, _, index) in candidates
                .iter()
                .take(active.saturating_sub(target) as usize)
            {
                let worker = &mut self.workers[index];
                worker.signal(Signal::SIGTERM);
                worker.stopping_since = Some(Instant::now());
                tracing::info!(
                    worker = worker.id,
                    index = worker.index,
                    jobs_in_hand = busy.map_or_else(|| "unknown".to_owned(), |b| b.to_string()),
                    "stopping worker (SIGTERM, drains its jobs)"
                );
            }
        }
        self.write_file_sd();
    }

    /// The worker's jobs in hand, from its busy gauge; `None` when it has no busy gauge.
    /// A worker whose gauge cannot be read may be mid-job: it counts as very busy.
    async fn busy(&self, port: u16) -> Option<f64> {
        let name = match &self.spec.command {
            WorkerCommand::Warren { .. } => WARREN_BUSY_METRIC,
            WorkerCommand::Program { busy_metric, .. } => busy_metric.as_deref()?,
        };
        let url = format!("http://127.0.0.1:{port}/metrics");
        let text = async { self.http.get(url).send().await?.text().await }.await;
        let Ok(text) = text else {
            return Some(f64::INFINITY);
        };
        let values: Vec<f64> = crate::scaling::metric_source::parse_samples(&text)
            .into_iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .collect();
        Some(if values.is_empty() {
            f64::INFINITY
        } else {
            values.iter().sum()
        })
    }

    /// Stops every worker with a drain, waiting up to the stop timeout, then kills.
    pub async fn shutdown(&mut self) {
        self.pending.clear();
        for worker in &mut self.workers {
            if worker.stopping_since.is_none() {
                worker.signal(Signal::SIGTERM);
                worker.stopping_since = Some(Instant::now());
            }
        }
        let deadline = Instant::now() + self.spec.stop_timeout;
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
                    worker.signal(Signal::SIGKILL);
                    let _ = worker.child.wait().await;
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

/// How long the replacement of the `streak`-th worker in a row to die young waits: none for
/// the first, then 1 s, 2 s, 4 s, ... up to [`MAX_RESTART_DELAY`].
pub fn restart_delay(streak: u32) -> Duration {
    match streak {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 2).min(5)).min(MAX_RESTART_DELAY),
    }
}

fn count<'a>(workers: impl Iterator<Item = &'a PoolWorker>) -> u32 {
    u32::try_from(workers.count()).unwrap_or(u32::MAX)
}
