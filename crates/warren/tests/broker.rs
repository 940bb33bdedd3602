//! `warren broker`, the real binary: a restart on the same directory comes back with its data at
//! the same URL, `--detach` / `--stop` leave nothing behind, and a killed broker's port mapper
//! and env file are cleaned up by the next start.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use warren::config::{AmqpUrl, BrokerConfig, QueueName};
use warren::pipeline::publisher::{Publisher, PublisherOptions};

fn warren(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("RUST_LOG")
        .env_remove("WARREN_BROKER_DIR")
        .output()
        .unwrap()
}

fn detach(dir: &Path) -> HashMap<String, String> {
    let out = warren(&["broker", "--detach"], dir);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    read_env(&dir.join("broker.env")).expect("--detach returns once the env file is written")
}

fn stop(dir: &Path) {
    let out = warren(&["broker", "--stop"], dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the broker on its directory and removes the directory when dropped, so that a failed
/// assertion leaves no broker running behind it (a detached one would outlive the test).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = warren(&["broker", "--stop"], &self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a foreground broker child when dropped, for the same reason.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Only a child not yet reaped: its pid cannot belong to anyone else.
        if let Ok(None) = self.0.try_wait() {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
}

fn read_env(path: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn pid_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn saved_epmd_port(dir: &Path) -> u16 {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("warren-broker.json")).unwrap())
            .unwrap();
    u16::try_from(state["ports"]["epmd"].as_u64().unwrap()).unwrap()
}

/// Publishes one confirmed job on `queue`.
async fn publish_one(url: &str, queue: &str) {
    let (publisher, task) = Publisher::start(
        BrokerConfig::new(
            AmqpUrl::parse(url).unwrap(),
            QueueName::parse(queue).unwrap(),
        ),
        PublisherOptions::default(),
    );
    assert!(publisher.wait_connected(Duration::from_secs(10)).await);
    publisher.publish().await.expect("a confirmed job");
    publisher.close().await;
    task.abort();
}

/// Takes one message from `queue` (no ack), retrying while a restarted quorum queue recovers:
/// whether the job is there, for real.
async fn job_is_there(url: &str, queue: &str) -> bool {
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let started = Instant::now();
    let found = loop {
        let got = channel
            .basic_get(queue.into(), lapin::options::BasicGetOptions::default())
            .await
            .unwrap();
        if got.is_some() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = connection.close(200, "done".into()).await;
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_the_same_dir_keeps_a_published_job_and_the_url() {
    let dir = temp_dir("broker-restart");
    let _cleanup = Cleanup(dir.clone());
    let first = detach(&dir);
    let url = first["AMQP_URL"].clone();
    let queue = "broker-restart";
    publish_one(&url, queue).await;

    stop(&dir);
    assert!(
        !dir.join("broker.env").exists(),
        "--stop removes the env file"
    );
    let first_pid: i32 = first["WARREN_BROKER_PID"].parse().unwrap();
    assert!(!pid_alive(first_pid), "the broker process is gone");
    assert!(!port_open(saved_epmd_port(&dir)), "its epmd is gone");

    let second = detach(&dir);
    assert_eq!(second["AMQP_URL"], url, "same URL after a restart");
    assert!(job_is_there(&url, queue).await, "the job survived");
    stop(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_start_after_a_sigkill_cleans_up_its_epmd_and_env_file_and_keeps_the_data() {
    let dir = temp_dir("broker-sigkill");
    let _cleanup = Cleanup(dir.clone());
    let first = detach(&dir);
    let url = first["AMQP_URL"].clone();
    let queue = "broker-sigkill";
    publish_one(&url, queue).await;

    // A SIGKILL half a second after the queue's declare lost the queue here (its Raft server
    // was not among those RabbitMQ 3.10 recovered), whoever started the node. The test is about
    // a queue that existed before the crash, so it lets one settle first.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pid: i32 = first["WARREN_BROKER_PID"].parse().unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    while pid_alive(pid) && killed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let epmd = saved_epmd_port(&dir);
    // What a SIGKILL leaves: the env file and the node's port mapper.
    assert!(dir.join("broker.env").exists());
    assert!(port_open(epmd), "a killed broker leaves its epmd");

    // `--stop` on a dead owner cleans up without starting anything.
    stop(&dir);
    assert!(
        !dir.join("broker.env").exists(),
        "the stale env file is removed"
    );
    assert!(!port_open(epmd), "the stale epmd is stopped");

    let second = detach(&dir);
    assert_eq!(second["AMQP_URL"], url);
    assert_ne!(second["WARREN_BROKER_PID"], first["WARREN_BROKER_PID"]);
    assert!(job_is_there(&url, queue).await, "the job survived");
    stop(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_temporary_broker_is_cleaned_up_by_the_next_start() {
    let env_file = temp_dir("broker-temp").with_extension("env");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["broker", "--env-file"])
            .arg(&env_file)
            .env_remove("WARREN_BROKER_DIR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let wait_env = |pid: u32| {
        let started = Instant::now();
        loop {
            if let Some(env) = read_env(&env_file) {
                if env.get("WARREN_BROKER_PID") == Some(&pid.to_string()) {
                    return env;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(90), "no env file");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut first = KillOnDrop(start());
    wait_env(first.0.id());
    let dir = std::env::temp_dir().join(format!("warren-broker-{}", first.0.id()));
    let epmd = saved_epmd_port(&dir);
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert!(port_open(epmd), "a killed broker leaves its epmd");
    assert!(env_file.exists(), "and its env file");

    let mut second = KillOnDrop(start());
    wait_env(second.0.id());
    assert!(!port_open(epmd), "the next start stopped the old epmd");
    assert!(!dir.exists(), "and removed the old directory");
    kill(Pid::from_raw(second.0.id() as i32), Signal::SIGTERM).unwrap();
    assert!(second.0.wait().unwrap().success());
    assert!(!env_file.exists(), "a stopped broker removes its env file");
}

#[test]
fn a_saved_port_taken_by_another_process_is_a_clear_error_not_an_empty_node() {
    let dir = temp_dir("broker-taken");
    let _cleanup = Cleanup(dir.clone());
    let first = detach(&dir);
    stop(&dir);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("warren-broker.json")).unwrap())
            .unwrap();
    let amqp = u16::try_from(state["ports"]["amqp"].as_u64().unwrap()).unwrap();
    assert!(first["AMQP_URL"].contains(&format!(":{amqp}/")));
    let squatter = std::net::TcpListener::bind(("127.0.0.1", amqp)).unwrap();
    let out = warren(&["broker", "--detach"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("port {amqp} (AMQP)")) && stderr.contains("taken"),
        "{stderr}"
    );
    assert!(
        !dir.join("broker.env").exists(),
        "no env file for a node that never ran"
    );
    drop(squatter);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node whose AMQP port another process holds fails to start, and says so as `port_taken`
/// (what `RabbitNode::start` retries on other ports), read from its own log where the error
/// is made, so no caller reads the text.
#[tokio::test]
async fn a_node_whose_port_is_taken_fails_to_start_with_port_taken() {
    use warren::lab::rabbit_node::{DirOnDrop, NodeError, NodePorts, RabbitNode};
    let ports = NodePorts::free().unwrap();
    let _holder = std::net::TcpListener::bind(("127.0.0.1", ports.amqp)).unwrap();
    let dir = std::env::temp_dir().join(format!("warren-test-port-taken-{}", std::process::id()));
    let name = format!("warren-test-taken-{}@localhost", std::process::id());
    match RabbitNode::start_as(&dir, &name, ports, DirOnDrop::Remove).await {
        Err(NodeError::StartFailed {
            port_taken, tail, ..
        }) => {
            assert!(
                port_taken,
                "not told as a taken port; the log's tail:\n{tail}"
            );
        }
        Err(other) => panic!("expected StartFailed, got {other}"),
        Ok(_) => panic!("the node started on a port another process holds"),
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", ports.epmd)).is_err(),
        "the failed node left its port mapper running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
