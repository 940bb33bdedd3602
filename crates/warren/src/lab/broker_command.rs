//! `warren broker`: a private RabbitMQ node ([`RabbitNode`]) kept in a directory.
//!
//! The directory holds the node's data and `warren-broker.json`: its node name and ports, the
//! owner's pid and the env file it wrote. A restart on the same directory takes the same name
//! and ports, so it comes back with its queues and messages and at the same URL; a saved port
//! that another process holds is an error, never a fresh empty node. The owner holds an
//! exclusive lock on `warren-broker.lock` while it runs: the kernel drops it when the owner
//! dies, however abruptly, so the next start knows a lock it can take is a dead owner's and
//! cleans up what that one left: its Erlang port mapper (epmd) and its env file. (The VM itself
//! dies with its owner: see [`crate::lab::rabbit_node`].)
//!
//! The env file (`AMQP_URL=...`) is written once the node answers, whole (temp file, then
//! rename), and removed when the broker stops. `--detach` starts the same command in the
//! background and returns once that file is there; `--stop` ends it and waits until it is gone.

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use crate::lab::rabbit_cluster::{RabbitCluster, MAX_NODES};
use crate::lab::rabbit_node::{stop_epmd, DirOnDrop, NodePorts, RabbitNode};

/// The file in the node's directory that keeps its identity.
const STATE_FILE: &str = "warren-broker.json";
/// The file the running owner holds locked.
const LOCK_FILE: &str = "warren-broker.lock";
/// The detached broker's own log, in its directory.
const LOG_FILE: &str = "warren-broker.log";
/// Temporary directories of `warren broker` runs without `--dir` start with this.
const TEMP_PREFIX: &str = "warren-broker-";

/// Options of `warren broker`.
#[derive(Debug, Args)]
pub struct BrokerNodeArgs {
    /// Directory of the node: its data, name and ports. A restart on the same directory comes
    /// back with its queues and messages at the same URL. Default: a fresh temporary directory,
    /// removed at exit.
    #[arg(long, env = "WARREN_BROKER_DIR")]
    pub dir: Option<PathBuf>,
    /// How many nodes: 1 is a lone node; 3 is a cluster whose quorum queues survive the loss of
    /// any one node (AMQP_URL then lists every node). A cluster runs in the foreground only;
    /// its --dir keeps the members' data, names and ports, as a lone node's does.
    #[arg(long, env = "WARREN_BROKER_NODES", default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_NODES)))]
    pub nodes: u8,
    /// Write AMQP_URL, RABBIT_PROMETHEUS_URL, RABBIT_MANAGEMENT_URL and WARREN_BROKER_PID to this
    /// file once the node is up (whole, never half written); removed when the broker stops.
    /// Default with --dir: DIR/broker.env.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Start in the background and return once the node is up and the env file written. The
    /// node runs until `warren broker --stop --dir DIR`; its log is DIR/warren-broker.log.
    #[arg(long, requires = "dir", conflicts_with = "stop")]
    pub detach: bool,
    /// Stop the broker running on --dir (SIGTERM to it; it stops the node in order) and wait
    /// until it has; clean up what a killed one left.
    #[arg(long, requires = "dir")]
    pub stop: bool,
}

/// What `warren-broker.json` keeps.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BrokerState {
    /// The Erlang node name: the data lives under `mnesia/<name>`.
    name: String,
    /// The node's ports: the same URL after a restart.
    ports: NodePorts,
    /// The process that runs (or last ran) the node.
    pid: u32,
    /// The env file it wrote, to remove when it is a dead owner's.
    env_file: Option<PathBuf>,
    /// Whether the directory is a run's temporary one (no `--dir`), removed once its owner is
    /// gone; a `--dir` is never removed.
    #[serde(default)]
    temporary: bool,
}

impl BrokerState {
    fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(STATE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("{} is not a warren broker state file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        write_atomically(&dir.join(STATE_FILE), &serde_json::to_string_pretty(self)?)
    }
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`: a reader sees
/// the old file, no file, or the whole new one.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let temp = path.with_file_name(format!(
        ".{}.{}.partial",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = File::create(&temp).with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))
}

/// The owner's lock on `dir`: held while this process runs the node; the kernel drops it when
/// the process dies.
struct OwnerLock {
    _lock: Flock<File>,
}

impl OwnerLock {
    /// Takes the lock, or says who holds it.
    fn take(dir: &Path) -> anyhow::Result<Self> {
        match Self::try_take(dir)? {
            Some(lock) => Ok(lock),
            None => {
                let pid = BrokerState::read(dir)
                    .ok()
                    .flatten()
                    .map_or_else(|| "?".to_owned(), |s| s.pid.to_string());
                bail!(
                    "a warren broker (pid {pid}) already runs on {dir}; `warren broker --stop --dir {dir}` stops it",
                    dir = dir.display()
                )
            }
        }
    }

    /// The lock, or `None` while another process holds it.
    fn try_take(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Self { _lock: lock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}

/// Removes what a dead owner of `dir` left running or lying around: its port mapper and its
/// env file. Called with the lock held, so the owner is known to be gone.
fn clean_up_after_dead_owner(state: &BrokerState) {
    if accepts_connections(state.ports.epmd) {
        tracing::info!(
            pid = state.pid,
            epmd = state.ports.epmd,
            "stopping the port mapper a killed warren broker left"
        );
        // epmd refuses `-kill` while a node is registered: the killed broker's VM halts on its
        // own once its input closes, which can take a moment.
        let started = Instant::now();
        while accepts_connections(state.ports.epmd) && started.elapsed() < Duration::from_secs(15) {
            stop_epmd(state.ports.epmd);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if let Some(env_file) = &state.env_file {
        if std::fs::remove_file(env_file).is_ok() {
            tracing::info!(pid = state.pid, env_file = %env_file.display(), "removed the env file a killed warren broker left");
        }
    }
}

fn accepts_connections(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The first of the saved ports some other process listens on, waiting up to `patience` for a
/// just-killed node's ports to be let go.
fn taken_port(ports: NodePorts, patience: Duration) -> Option<(&'static str, u16)> {
    let all = [
        ("AMQP", ports.amqp),
        ("management", ports.management),
        ("prometheus", ports.prometheus),
        ("Erlang distribution", ports.dist),
        ("epmd", ports.epmd),
    ];
    let started = Instant::now();
    loop {
        let taken = all
            .into_iter()
            .find(|(_, port)| TcpListener::bind(("127.0.0.1", *port)).is_err());
        if taken.is_none() || started.elapsed() >= patience {
            return taken;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes the temporary directories of earlier `warren broker` runs without `--dir` whose owner
/// is dead, after stopping what they left running.
fn clean_up_dead_temporary_brokers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_ours = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX));
        if !is_ours || !dir.join(STATE_FILE).is_file() {
            continue;
        }
        let Ok(Some(_lock)) = OwnerLock::try_take(&dir) else {
            continue;
        };
        // Only a temporary directory goes; a user's --dir that happens to share the prefix
        // keeps its data.
        if let Ok(Some(state)) = BrokerState::read(&dir) {
            if state.temporary {
                clean_up_after_dead_owner(&state);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}

/// Whether `dir/mnesia` holds the data of some node: starting a new name there would look like
/// the old broker, empty.
fn holds_node_data(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("mnesia"))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
}

/// `warren broker`: runs a private node until `shutdown` (or detaches, or stops one).
pub async fn run(args: BrokerNodeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.nodes > 1 {
        if args.detach || args.stop {
            bail!("--detach and --stop are for a lone node: run a cluster (--nodes > 1) in the foreground");
        }
        return run_cluster(args, shutdown).await;
    }
    if args.stop {
        let dir = args.dir.context("--stop needs --dir")?;
        return stop(&dir).await;
    }
    if args.detach {
        return detach(&args).await;
    }
    run_foreground(args, shutdown).await
}

/// `warren broker --nodes N`: runs a private cluster until `shutdown`, printing its addresses.
async fn run_cluster(args: BrokerNodeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (dir, on_drop) = match args.dir {
        Some(dir) => (dir, DirOnDrop::Keep),
        None => (
            std::env::temp_dir().join(format!("warren-cluster-{}", std::process::id())),
            DirOnDrop::Remove,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let Some(_lock) = OwnerLock::try_take(&dir)? else {
        anyhow::bail!(
            "a warren broker already runs on {}; stop it (Ctrl-C in its terminal) first",
            dir.display()
        );
    };
    let mut cluster = tokio::select! {
        cluster = RabbitCluster::start(dir.clone(), args.nodes, on_drop) => cluster?,
        () = shutdown.cancelled() => return Ok(()),
    };
    // The prometheus plugin reports a quorum queue's depth on its leader's node only, so
    // every member's endpoint is listed; RABBIT_PROMETHEUS_URL is the first.
    let prometheus: Vec<String> = cluster
        .nodes()
        .iter()
        .map(RabbitNode::prometheus_url)
        .collect();
    let env = format!(
        "AMQP_URL={}\nRABBIT_PROMETHEUS_URL={}\nRABBIT_PROMETHEUS_URLS={}\nRABBIT_MANAGEMENT_URL={}\n",
        cluster.amqp_url().expose(),
        prometheus[0],
        prometheus.join(","),
        cluster.node(0).management_url()
    );
    if let Some(path) = &args.env_file {
        // Written whole, then renamed, so a reader never sees half a file.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, &env)?;
        std::fs::rename(&partial, path)?;
    }
    let names: Vec<&str> = cluster.nodes().iter().map(RabbitNode::name).collect();
    println!(
        "RabbitMQ cluster of {} nodes is up ({}); Ctrl-C stops it.\n{env}management UI: {}/ (guest/guest)",
        cluster.len(),
        names.join(", "),
        cluster.node(0).management_url()
    );
    shutdown.cancelled().await;
    cluster.stop().await;
    if let Some(path) = &args.env_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

async fn run_foreground(args: BrokerNodeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    clean_up_dead_temporary_brokers();
    let (dir, on_drop) = match &args.dir {
        Some(dir) => (dir.clone(), DirOnDrop::Keep),
        None => (
            std::env::temp_dir().join(format!("{TEMP_PREFIX}{}", std::process::id())),
            DirOnDrop::Remove,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let env_file = env_file_path(&args, &dir);
    let _lock = OwnerLock::take(&dir)?;
    let (name, ports) = match BrokerState::read(&dir)? {
        Some(old) => {
            clean_up_after_dead_owner(&old);
            if let Some((what, port)) = taken_port(old.ports, Duration::from_secs(10)) {
                bail!(
                    "port {port} ({what}) of the broker kept in {} is taken by another process; free it and start again (its data and URL stay with that port)",
                    dir.display()
                );
            }
            (old.name, old.ports)
        }
        None if holds_node_data(&dir) => bail!(
            "{} holds a RabbitMQ node's data but no {STATE_FILE}: not starting an empty node over it (use another --dir)",
            dir.display()
        ),
        None => (RabbitNode::new_name(), NodePorts::free()?),
    };
    if let Some(path) = &env_file {
        // Whatever is there describes no running broker (the lock says so): a reader must
        // wait for the new file rather than read an old URL.
        let _ = std::fs::remove_file(path);
    }
    BrokerState {
        name: name.clone(),
        ports,
        pid: std::process::id(),
        env_file: env_file.clone(),
        temporary: on_drop == DirOnDrop::Remove,
    }
    .write(&dir)?;
    let mut node = tokio::select! {
        node = RabbitNode::start_as(&dir, &name, ports, on_drop) => node?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let env = format!(
        "AMQP_URL={}\nRABBIT_PROMETHEUS_URL={}\nRABBIT_MANAGEMENT_URL={}\nWARREN_BROKER_PID={}\n",
        node.amqp_url().expose(),
        node.prometheus_url(),
        node.management_url(),
        std::process::id()
    );
    if let Some(path) = &env_file {
        write_atomically(path, &env)?;
    }
    println!(
        "RabbitMQ node {} is up in {}; Ctrl-C stops it.\n{env}management UI: {}/ (guest/guest)",
        node.name(),
        dir.display(),
        node.management_url()
    );
    shutdown.cancelled().await;
    node.stop().await;
    if let Some(path) = &env_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn env_file_path(args: &BrokerNodeArgs, dir: &Path) -> Option<PathBuf> {
    match (&args.env_file, &args.dir) {
        (Some(path), _) => Some(absolute(path)),
        (None, Some(_)) => Some(dir.join("broker.env")),
        (None, None) => None,
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// `--detach`: runs `warren broker` in the background, in its own process group (so a Ctrl-C in
/// this terminal does not reach it), and returns once it has written its env file.
async fn detach(args: &BrokerNodeArgs) -> anyhow::Result<()> {
    let dir = args.dir.as_deref().context("--detach needs --dir")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    // Fail here, not in the background, when a broker already runs on this directory.
    drop(OwnerLock::take(&dir)?);
    let env_file = env_file_path(args, &dir).context("an env file")?;
    let log_path = dir.join(LOG_FILE);
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg("broker")
        .arg("--dir")
        .arg(&dir)
        .arg("--env-file")
        .arg(&env_file)
        .env_remove("WARREN_BROKER_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("starting warren broker")?;
    let marker = format!("WARREN_BROKER_PID={}\n", child.id());
    let started = Instant::now();
    loop {
        if std::fs::read_to_string(&env_file).is_ok_and(|text| text.contains(&marker)) {
            break;
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the broker exited ({status}) before it was up; {}:\n{}",
                log_path.display(),
                tail.join("\n")
            );
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            bail!(
                "the broker was not up within 120 s; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    print!("{}", std::fs::read_to_string(&env_file)?);
    println!(
        "warren broker (pid {}) runs in the background: env file {}, log {}; `warren broker --stop --dir {}` stops it",
        child.id(),
        env_file.display(),
        log_path.display(),
        dir.display()
    );
    Ok(())
}

/// `--stop`: SIGTERM to the broker running on `dir`, then waits until it has let go of the
/// directory (its node stopped in order, its env file removed).
async fn stop(dir: &Path) -> anyhow::Result<()> {
    if !dir.join(STATE_FILE).is_file() {
        bail!("no warren broker was ever started on {}", dir.display());
    }
    let state = BrokerState::read(dir)?.context("the state file went away")?;
    if let Some(_lock) = OwnerLock::try_take(dir)? {
        clean_up_after_dead_owner(&state);
        println!("no warren broker runs on {}", dir.display());
        return Ok(());
    }
    let pid = i32::try_from(state.pid).context("the saved pid")?;
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .with_context(|| format!("signalling warren broker pid {pid}"))?;
    let started = Instant::now();
    loop {
        if let Some(_lock) = OwnerLock::try_take(dir)? {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("warren broker pid {pid} did not stop within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("warren broker (pid {pid}) on {} stopped", dir.display());
    Ok(())
}
