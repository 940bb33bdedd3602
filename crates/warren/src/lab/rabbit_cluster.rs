//! A private RabbitMQ cluster on this machine: several [`RabbitNode`]s that find each other, so
//! a quorum queue keeps its messages and its service when one node is lost.
//!
//! What makes the nodes one cluster:
//!
//! - **One Erlang port mapper.** Nodes find each other's distribution port through epmd, so all
//!   members use the epmd port of the first; a member's `epmd -kill` on the way out is refused
//!   while the others are registered.
//! - **One private Erlang cookie**, random per cluster, in `<dir>/home/.erlang.cookie` (mode
//!   0400): the nodes and `rabbitmqctl` run with `HOME` there, so the cookie is on no command
//!   line and the user's own `~/.erlang.cookie` is left alone.
//! - **Classic config peer discovery.** The first node starts alone; the others start with
//!   `cluster_formation.classic_config.nodes.1 = <first>` and join it on their first boot. A
//!   restarted member already belongs to the cluster (its data says so) and rejoins by itself.
//!
//! Node names and ports are chosen at the first start and kept in `<dir>/warren-cluster.json`,
//! so a member killed and started again comes back as itself, with its data, and the whole
//! cluster started again on the same directory comes back with its queues at the same URLs.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::AmqpUrl;
use crate::lab::rabbit_node::{DirOnDrop, MemberSetup, NodeError, NodePorts, RabbitNode};

/// The most members `warren broker --nodes` starts.
pub const MAX_NODES: u8 = 7;

/// A running private cluster; its nodes die with this process, as a lone node does.
pub struct RabbitCluster {
    /// The members, in the order they were started (the first node is the one the others joined).
    nodes: Vec<RabbitNode>,
    /// Holds one directory per node and the private `HOME`.
    dir: PathBuf,
    /// What becomes of `dir` when the cluster is dropped.
    on_drop: DirOnDrop,
}

impl RabbitCluster {
    /// The members, in the order they were started.
    pub fn nodes(&self) -> &[RabbitNode] {
        &self.nodes
    }

    /// Starts a cluster of `size` nodes under `dir` (created if missing) and waits until every
    /// member serves AMQP and reports all `size` nodes running. `on_drop` says whether the
    /// directory is deleted on drop.
    pub async fn start(
        dir: impl Into<PathBuf>,
        size: u8,
        on_drop: DirOnDrop,
    ) -> Result<Self, NodeError> {
        let dir = dir.into();
        let home = dir.join("home");
        std::fs::create_dir_all(&home).map_err(io(format!("creating {}", home.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(io(format!("resolving {}", dir.display())))?;
        let home = dir.join("home");
        write_cookie(&home)?;

        let kept = ClusterState::read(&dir)?;
        let restart = kept.is_some();
        let (names, ports) = match kept {
            Some(state) => {
                if state.members.len() != usize::from(size) {
                    return Err(NodeError::Refused(format!(
                        "the cluster kept in {} has {} members: start it with --nodes {}",
                        dir.display(),
                        state.members.len(),
                        state.members.len()
                    )));
                }
                if let Some(port) = state.members.iter().find_map(|m| taken_port(m.ports)) {
                    return Err(NodeError::Refused(format!(
                        "port {port} of the cluster kept in {} is taken by another process; free it and start again (its data and URLs stay with that port)",
                        dir.display()
                    )));
                }
                state.members.into_iter().map(|m| (m.name, m.ports)).unzip()
            }
            None if (0..MAX_NODES).any(|i| holds_data(&dir.join(format!("node-{i}")))) => {
                return Err(NodeError::Refused(format!(
                    "{} holds RabbitMQ nodes' data but no {CLUSTER_FILE}: not starting an empty cluster over it (use another --dir)",
                    dir.display()
                )))
            }
            None => fresh_members(size)?,
        };
        let epmd = ports[0].epmd;
        let env: Vec<(String, OsString)> = vec![("HOME".into(), home.into_os_string())];
        let member = |i: usize| {
            let conf = if i == 0 {
                String::new()
            } else {
                format!(
                    "cluster_formation.peer_discovery_backend = classic_config\n\
                     cluster_formation.classic_config.nodes.1 = {}\n",
                    names[0]
                )
            };
            let node_ports = NodePorts { epmd, ..ports[i] };
            let setup = MemberSetup {
                conf,
                env: env.clone(),
            };
            RabbitNode::start_member(
                dir.join(format!("node-{i}")),
                names[i].clone(),
                node_ports,
                setup,
            )
        };
        let mut cluster = Self {
            nodes: Vec::new(),
            dir: dir.clone(),
            on_drop,
        };
        // A restarted member waits for the others' tables before it serves, so all start at
        // once; a new cluster's first node starts alone, then the others join it together (on two
        // cores that is about one node's start time).
        let first = if restart { 0 } else { 1 };
        if !restart {
            cluster.nodes.push(member(0).await?);
        }
        let joined = futures_util::future::join_all((first..usize::from(size)).map(member)).await;
        for (i, node) in (first..).zip(joined) {
            let node = match node {
                // RabbitMQ 3.10: a member restarted beside peers still booting can fail to
                // sync feature flags with one of them (`incompatible_feature_flags`, a badmap in
                // `enable_dependencies`) and exit. Once the others are up it starts: once more.
                Err(NodeError::StartFailed { reason, .. }) if restart => {
                    tracing::warn!(member = i, %reason, "cluster member failed to start beside the others; starting it again");
                    member(i).await
                }
                other => other,
            };
            cluster.nodes.push(node?);
        }
        let running = cluster.running_nodes(0);
        if running.len() != usize::from(size) {
            return Err(NodeError::Io {
                what: format!(
                    "forming a cluster of {size}: the first node reports {} running ({})",
                    running.len(),
                    running.join(", ")
                ),
                source: std::io::Error::other("the nodes did not join"),
            });
        }
        ClusterState {
            members: names
                .iter()
                .zip(&ports)
                .map(|(name, ports)| Member {
                    name: name.clone(),
                    ports: NodePorts { epmd, ..*ports },
                })
                .collect(),
        }
        .write(&dir)?;
        tracing::info!(nodes = size, names = %names.join(","), restart, "private RabbitMQ cluster is up");
        Ok(cluster)
    }

    /// How many members it has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Member `i`.
    pub fn node(&self, i: usize) -> &RabbitNode {
        &self.nodes[i]
    }

    /// Member `i`, to kill or start it again.
    pub fn node_mut(&mut self, i: usize) -> &mut RabbitNode {
        &mut self.nodes[i]
    }

    /// Every member's AMQP URL, comma-separated, as `AMQP_URL` takes them.
    pub fn amqp_url(&self) -> AmqpUrl {
        let all: Vec<String> = self
            .nodes
            .iter()
            .map(|n| n.amqp_url().expose().to_owned())
            .collect();
        AmqpUrl::parse(&all.join(","))
            .unwrap_or_else(|e| unreachable!("loopback URLs are valid: {e}"))
    }

    /// The member names that member `i` sees running (empty if it does not answer).
    pub fn running_nodes(&self, i: usize) -> Vec<String> {
        let Ok(out) = self.nodes[i].ctl(&["cluster_status", "--formatter", "json"]) else {
            return Vec::new();
        };
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|status| {
                status["running_nodes"].as_array().map(|nodes| {
                    nodes
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Stops every member in order (`rabbitmqctl stop`), all at once; their data stays.
    pub async fn stop(&mut self) {
        futures_util::future::join_all(self.nodes.iter_mut().map(RabbitNode::stop)).await;
    }

    /// The directory holding the members' data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        // Each node kills its VM on drop; only then can the directory go.
        self.nodes.clear();
        if self.on_drop == DirOnDrop::Remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The file in the cluster's directory that keeps its members' names and ports.
const CLUSTER_FILE: &str = "warren-cluster.json";

/// What `warren-cluster.json` keeps: the same names and ports bring back the same cluster.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterState {
    /// In start order; the others joined the first.
    members: Vec<Member>,
}

/// One member's identity.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    /// The Erlang node name: its data lives under `node-<i>/mnesia/<name>`.
    name: String,
    /// Its ports (the epmd port is the first node's, shared).
    ports: NodePorts,
}

impl ClusterState {
    fn read(dir: &Path) -> Result<Option<Self>, NodeError> {
        let path = dir.join(CLUSTER_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                NodeError::Refused(format!(
                    "{} is not a warren cluster state file: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    fn write(&self, dir: &Path) -> Result<(), NodeError> {
        let path = dir.join(CLUSTER_FILE);
        let partial = dir.join(format!(".{CLUSTER_FILE}.partial"));
        let text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("names and ports serialize: {e}"));
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(io(format!("writing {}", path.display())))
    }
}

/// New names and distinct free ports for `size` members.
fn fresh_members(size: u8) -> Result<(Vec<String>, Vec<NodePorts>), NodeError> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let names = (0..size)
        .map(|i| format!("warren-{}-c{n}-{i}@localhost", std::process::id()))
        .collect();
    // Drawn at once, so no two members share a port.
    let all =
        crate::lab::ports::free_ports(5 * usize::from(size)).map_err(io("finding free ports"))?;
    let ports = all
        .chunks(5)
        .map(|p| NodePorts {
            amqp: p[0],
            management: p[1],
            prometheus: p[2],
            dist: p[3],
            epmd: p[4],
        })
        .collect();
    Ok((names, ports))
}

/// The first of a member's ports another process listens on (the shared epmd port is checked
/// with the first node).
fn taken_port(ports: NodePorts) -> Option<u16> {
    [
        ports.amqp,
        ports.management,
        ports.prometheus,
        ports.dist,
        ports.epmd,
    ]
    .into_iter()
    .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_err())
}

/// Whether a member's directory holds a node's data.
fn holds_data(node_dir: &Path) -> bool {
    std::fs::read_dir(node_dir.join("mnesia")).is_ok_and(|mut entries| entries.next().is_some())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Io { what, source }
}

/// Writes a random cookie readable by its owner only, unless one is there from an earlier run.
fn write_cookie(home: &Path) -> Result<(), NodeError> {
    let path = home.join(".erlang.cookie");
    if path.exists() {
        return Ok(());
    }
    // Two ULIDs: 52 characters, 160 random bits.
    let cookie = format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&path)
        .and_then(|mut file| file.write_all(cookie.as_bytes()))
        .map_err(io(format!("writing {}", path.display())))
}
