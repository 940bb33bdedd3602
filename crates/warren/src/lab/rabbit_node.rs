//! A private RabbitMQ node: its own node name, data dir, Erlang port mapper and free ports, so it
//! neither needs nor disturbs a broker that may already run on 5672.
//!
//! Used by `warren broker` ([`crate::lab::broker_command`]), by `warren demo` and by the tests. The node runs as this process's
//! child with its standard input on a pipe: if this process dies, however abruptly, the pipe
//! closes and the Erlang VM halts, so no node outlives its owner. [`RabbitNode::stop`] stops it
//! gracefully (SIGTERM, which the VM turns into an orderly shutdown).
//!
//! Facts this relies on (Debian's rabbitmq-server 3.10): the scripts in `/usr/lib/rabbitmq/bin`
//! run as the calling user (the `/usr/sbin` wrapper would switch to the `rabbitmq` user);
//! `RABBITMQ_ALLOW_INPUT` makes the script `exec` the VM, so the child is the VM itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::config::AmqpUrl;

/// Where Debian installs the RabbitMQ scripts that run as the calling user.
pub const DEFAULT_SERVER_SCRIPT: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// How long a node may take to start before we give up.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a node could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// RabbitMQ is not installed where we look.
    #[error("RabbitMQ is not installed ({0} not found); run scripts/setup, or apt-get install rabbitmq-server")]
    NotInstalled(PathBuf),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Starting would not bring back what the directory holds (the reason says what).
    #[error("{0}")]
    Refused(String),
    /// The node exited or did not answer in time; the tail of its log says why.
    #[error("RabbitMQ node {node} did not start: {reason}\n--- last lines of {log} ---\n{tail}")]
    StartFailed {
        /// Node name.
        node: String,
        /// What we saw.
        reason: String,
        /// Its log file.
        log: String,
        /// The log's last lines.
        tail: String,
        /// Whether the node said a port was taken before it bound it (`eaddrinuse`): a start
        /// on other ports may succeed.
        port_taken: bool,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Io { what, source }
}

/// The ports a node listens on, all on 127.0.0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodePorts {
    /// AMQP 0-9-1.
    pub amqp: u16,
    /// The management API and UI.
    pub management: u16,
    /// The prometheus plugin's endpoint.
    pub prometheus: u16,
    /// Erlang distribution.
    pub dist: u16,
    /// The node's own Erlang port mapper daemon.
    pub epmd: u16,
}

impl NodePorts {
    /// Five distinct free ports (see [`crate::lab::ports`]).
    pub fn free() -> Result<Self, NodeError> {
        let ports = crate::lab::ports::free_ports(5).map_err(io("finding free ports"))?;
        Ok(Self {
            amqp: ports[0],
            management: ports[1],
            prometheus: ports[2],
            dist: ports[3],
            epmd: ports[4],
        })
    }
}

/// What becomes of a node's (or a cluster's) directory when it is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirOnDrop {
    /// Kept, with the data: a later start on it brings the same broker back.
    Keep,
    /// Removed: a run's temporary node.
    Remove,
}

/// A running private RabbitMQ node.
pub struct RabbitNode {
    /// Erlang node name, `warren-<pid>-<n>@localhost`.
    name: String,
    /// Data, logs and config live here.
    dir: PathBuf,
    /// What becomes of `dir` when the node is dropped.
    on_drop: DirOnDrop,
    /// Its ports.
    ports: NodePorts,
    /// The VM, while running.
    child: Option<Child>,
    /// The server script.
    script: PathBuf,
    /// What a cluster member adds to a lone node's set-up (none for a lone node).
    member: MemberSetup,
}

/// What makes a node one of a cluster's members (see `lab/rabbit_cluster.rs`).
#[derive(Clone, Debug, Default)]
pub struct MemberSetup {
    /// Lines appended to its `rabbitmq.conf` (peer discovery).
    pub conf: String,
    /// Environment of the node and of `rabbitmqctl` against it (`HOME` for the shared cookie).
    pub env: Vec<(String, std::ffi::OsString)>,
}

impl RabbitNode {
    /// Starts a node with its data in `dir` (created if missing) and waits until it serves AMQP
    /// and its prometheus endpoint. `on_drop` says whether the directory is removed on drop.
    ///
    /// Should another process take one of its ports before the node binds it, the node is
    /// started again on other ports (up to three times).
    pub async fn start(dir: impl Into<PathBuf>, on_drop: DirOnDrop) -> Result<Self, NodeError> {
        let dir = dir.into();
        let mut attempt = 1;
        loop {
            match Self::start_as(&dir, &Self::new_name(), NodePorts::free()?, on_drop).await {
                Err(NodeError::StartFailed {
                    port_taken: true,
                    node,
                    ..
                }) if attempt < 3 => {
                    tracing::warn!(%node, attempt, "a port was taken before the node bound it; trying other ports");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// A node name no other node of this process has, `warren-<pid>-<n>@localhost`.
    pub fn new_name() -> String {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("warren-{}-{n}@localhost", std::process::id())
    }

    /// Starts a node under a given name and ports, as [`RabbitNode::start`] does. A node keeps
    /// its data under `mnesia/<name>`: the same name and ports on the same `dir` bring back the
    /// same broker, with its queues and messages.
    pub async fn start_as(
        dir: impl Into<PathBuf>,
        name: &str,
        ports: NodePorts,
        on_drop: DirOnDrop,
    ) -> Result<Self, NodeError> {
        Self::launch(
            dir.into(),
            name.to_owned(),
            ports,
            on_drop,
            MemberSetup::default(),
        )
        .await
    }

    /// Starts a cluster member: a node with the given name and ports (the epmd port shared
    /// with the other members, so they find each other) and the member's extra set-up.
    pub async fn start_member(
        dir: impl Into<PathBuf>,
        name: String,
        ports: NodePorts,
        member: MemberSetup,
    ) -> Result<Self, NodeError> {
        Self::launch(dir.into(), name, ports, DirOnDrop::Keep, member).await
    }

    /// Writes the node's config into `dir` (created if missing), starts it and waits until it
    /// serves.
    async fn launch(
        dir: PathBuf,
        name: String,
        ports: NodePorts,
        on_drop: DirOnDrop,
        member: MemberSetup,
    ) -> Result<Self, NodeError> {
        let script = std::env::var_os("WARREN_RABBITMQ_SERVER")
            .map_or_else(|| PathBuf::from(DEFAULT_SERVER_SCRIPT), PathBuf::from);
        if !script.exists() {
            return Err(NodeError::NotInstalled(script));
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(io(format!("resolving {}", dir.display())))?;
        let mut node = Self {
            name,
            dir,
            on_drop,
            ports,
            child: None,
            script,
            member,
        };
        node.write_config()?;
        node.spawn_and_wait().await?;
        Ok(node)
    }

    /// The node's Erlang name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its ports.
    pub fn ports(&self) -> NodePorts {
        self.ports
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2F` (guest is allowed from loopback only).
    pub fn amqp_url(&self) -> AmqpUrl {
        AmqpUrl::from_parts("127.0.0.1", self.ports.amqp, "guest", "guest", "/")
            .unwrap_or_else(|e| unreachable!("a loopback URL is valid: {e}"))
    }

    /// The prometheus plugin's base URL.
    pub fn prometheus_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.prometheus)
    }

    /// The management API's base URL (user guest, password guest).
    pub fn management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.management)
    }

    /// Where the node's own log lives.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("log").join(format!("{}.log", self.name))
    }

    /// Whether the VM is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn write_config(&self) -> Result<(), NodeError> {
        let p = self.ports;
        let conf = format!(
            "listeners.tcp.default = 127.0.0.1:{}\n\
             management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {}\n\
             prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {}\n\
             loopback_users.guest = true\n\
             collect_statistics_interval = 1000\n",
            p.amqp, p.management, p.prometheus
        ) + &self.member.conf;
        let write = |name: &str, text: &str| {
            let path = self.dir.join(name);
            std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
        };
        write("rabbitmq.conf", &conf)?;
        write(
            "enabled_plugins",
            "[rabbitmq_management,rabbitmq_prometheus].\n",
        )?;
        for sub in ["mnesia", "log"] {
            let path = self.dir.join(sub);
            std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
        }
        Ok(())
    }

    async fn spawn_and_wait(&mut self) -> Result<(), NodeError> {
        let d = &self.dir;
        let child = Command::new(&self.script)
            .current_dir(d)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_DIST_PORT", self.ports.dist.to_string())
            .env("ERL_EPMD_PORT", self.ports.epmd.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("node.pid"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_ALLOW_INPUT", "1")
            .envs(self.member.env.iter().cloned())
            // Quorum queues report their depth every tick (5 s by default); 1 s keeps the
            // autoscaler's view fresh at the demo's speeds.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-rabbit quorum_tick_interval 1000",
            )
            // The VM halts when this pipe closes, i.e. when this process goes away.
            .stdin(Stdio::piped())
            .stdout(
                std::fs::File::create(d.join("console.log")).map_err(io("creating console.log"))?,
            )
            .stderr(Stdio::from(
                std::fs::File::create(d.join("console.err")).map_err(io("creating console.err"))?,
            ))
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting {}", self.script.display())))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                // The port mapper the VM started would outlive it.
                self.stop_epmd();
                return Err(self.start_failed(format!("the VM exited with {status}")));
            }
            if self.answers().await {
                tracing::info!(node = %self.name, amqp = self.ports.amqp, management = self.ports.management,
                    prometheus = self.ports.prometheus, dir = %self.dir.display(),
                    startup_ms = started.elapsed().as_millis() as u64, "private RabbitMQ node is up");
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill();
                return Err(self.start_failed(format!("no answer within {START_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether AMQP and the prometheus endpoint both answer.
    async fn answers(&self) -> bool {
        let amqp = tokio::time::timeout(
            Duration::from_secs(2),
            lapin::Connection::connect(
                self.amqp_url().expose(),
                lapin::ConnectionProperties::default(),
            ),
        )
        .await;
        let Ok(Ok(connection)) = amqp else {
            return false;
        };
        let _ = connection.close(200, "probe".into()).await;
        let url = format!("{}/metrics", self.prometheus_url());
        matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success())
    }

    fn start_failed(&self, reason: String) -> NodeError {
        let log = self.log_file();
        let mut tail = String::new();
        for file in [
            log.clone(),
            self.dir.join("console.log"),
            self.dir.join("console.err"),
        ] {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(15);
                tail.push_str(&lines[from..].join("\n"));
                tail.push('\n');
            }
        }
        // The node's own log is the only place it says why; a taken port is told apart here,
        // where the log is read, so callers decide on the field, not on the text.
        NodeError::StartFailed {
            node: self.name.clone(),
            reason,
            log: log.display().to_string(),
            port_taken: tail.contains("eaddrinuse"),
            tail,
        }
    }

    /// Stops the node in order (`rabbitmqctl stop`, then SIGTERM, then SIGKILL); its data stays.
    ///
    /// `rabbitmqctl stop` rather than a signal: after a SIGTERM, Debian's 3.10 node was seen to
    /// restart with a quorum queue whose leader never came back.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let ordered = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::from(self.ctl_command(&["stop"])).output(),
        )
        .await;
        if !matches!(ordered, Ok(Ok(ref out)) if out.status.success()) {
            tracing::warn!(node = %self.name, "rabbitmqctl stop failed; sending SIGTERM");
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            tracing::warn!(node = %self.name, "node did not stop within 30 s; killing it");
            let _ = child.kill().await;
        }
        self.stop_epmd();
        tracing::info!(node = %self.name, "private RabbitMQ node stopped");
    }

    /// Kills the node at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // SIGKILL is immediate; reap the VM so no zombie is left behind.
            for _ in 0..100 {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.stop_epmd();
    }

    /// Starts the stopped node again with the same ports and data (messages survive).
    pub async fn restart(&mut self) -> Result<(), NodeError> {
        self.stop().await;
        self.spawn_and_wait().await
    }

    /// Starts the node again after [`RabbitNode::stop`] or [`RabbitNode::kill`].
    pub async fn start_again(&mut self) -> Result<(), NodeError> {
        if self.is_running() {
            return Ok(());
        }
        self.spawn_and_wait().await
    }

    /// Ends the node's private port mapper, which the VM started and which would outlive it.
    fn stop_epmd(&self) {
        stop_epmd(self.ports.epmd);
    }

    /// The node's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Ends the Erlang port mapper listening on `port`, if any (`epmd -kill`).
pub fn stop_epmd(port: u16) {
    let _ = std::process::Command::new(find_epmd())
        .arg("-kill")
        .env("ERL_EPMD_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn find_epmd() -> PathBuf {
    let direct = PathBuf::from("/usr/bin/epmd");
    if direct.exists() {
        return direct;
    }
    std::fs::read_dir("/usr/lib/erlang")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/epmd"))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("epmd"))
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
        if self.on_drop == DirOnDrop::Remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl RabbitNode {
    /// Runs `rabbitmqctl` against this node (e.g. to raise a memory alarm in a test).
    pub fn ctl(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        self.ctl_command(args).output()
    }

    fn ctl_command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(self.script.with_file_name("rabbitmqctl"));
        command
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .env("ERL_EPMD_PORT", self.ports.epmd.to_string())
            .env("RABBITMQ_DIST_PORT", self.ports.dist.to_string())
            .envs(self.member.env.iter().cloned())
            .stdin(Stdio::null());
        command
    }
}
