//! `WorkerPool` with programs warren did not write: the environment each worker gets, crash
//! replacement, SIGTERM then SIGKILL after the stop timeout, and which workers a scale-down
//! stops (idle first with a busy gauge, the youngest first without). Real processes (`sh`,
//! `python3`), no broker: the workers only report what the pool gave them.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use warren::config::{AmqpUrl, BrokerConfig, QueueName};
use warren::scaling::pool::{restart_delay, PoolStatus, WorkerCommand, WorkerPool, WorkerSpec};

const URL: &str = "amqp://pool-user:s3cret-pw@127.0.0.1:5672/mail%2Fteam";

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-pool-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pool(argv: &[&str], busy_metric: Option<&str>, stop_timeout: Duration) -> WorkerPool {
    WorkerPool::new(WorkerSpec {
        command: WorkerCommand::Program {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            busy_metric: busy_metric.map(str::to_owned),
        },
        broker: BrokerConfig::new(
            AmqpUrl::parse(URL).unwrap(),
            QueueName::parse("emails").unwrap(),
        ),
        stop_timeout,
        log_dir: None,
        file_sd: None,
    })
}

/// Refreshes the pool until `done` holds of its status, for at most `timeout`.
async fn refresh_until(
    pool: &mut WorkerPool,
    timeout: Duration,
    done: impl Fn(&PoolStatus) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let status = pool.refresh().await;
        if done(&status) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A shell worker: `script` runs with the scratch directory as `$0`.
fn sh<'a>(script: &'a str, dir: &'a Path) -> [&'a str; 4] {
    ["sh", "-c", script, dir.to_str().unwrap()]
}

async fn wait_file(path: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} was not written", path.display());
}

#[tokio::test]
async fn every_worker_gets_its_index_queue_vhost_url_and_port() {
    let dir = scratch("env");
    let script = r#"env | grep '^WARREN_' > "$0/env-$WARREN_WORKER_INDEX.tmp"; mv "$0/env-$WARREN_WORKER_INDEX.tmp" "$0/env-$WARREN_WORKER_INDEX"; exec sleep 60"#;
    let mut pool = pool(&sh(script, &dir), None, Duration::from_secs(2));
    pool.scale_to(2).await;
    let mut ports = Vec::new();
    for index in 0..2 {
        let env = wait_file(&dir.join(format!("env-{index}")), Duration::from_secs(10)).await;
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} missing from {env}"))
                .to_owned()
        };
        assert_eq!(var("WARREN_WORKER_INDEX"), index.to_string());
        assert_eq!(var("WARREN_QUEUE"), "emails");
        assert_eq!(var("WARREN_VHOST"), "mail/team");
        assert_eq!(var("WARREN_AMQP_URL"), URL);
        assert_eq!(var("WARREN_PARENT_PID"), std::process::id().to_string());
        ports.push(var("WARREN_METRICS_PORT").parse::<u16>().unwrap());
    }
    assert_ne!(ports[0], ports[1], "each worker has a port of its own");
    let status = pool.refresh().await;
    assert_eq!(
        (status.current, status.ready),
        (2, 2),
        "a program with no busy gauge is ready once it runs"
    );
    pool.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_crashed_worker_is_replaced_under_its_index() {
    let mut pool = pool(&["sleep", "60"], None, Duration::from_secs(2));
    pool.scale_to(3).await;
    pool.refresh().await;
    let before = pool.active_pids();
    assert_eq!(before.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1, 2]);
    let (index, pid) = before[1];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        refresh_until(&mut pool, Duration::from_secs(5), |s| s.restarts == 1).await,
        "the crash was seen and the worker replaced"
    );
    let after = pool.active_pids();
    assert_eq!(after.len(), 3, "{after:?}");
    let replacement = after.iter().find(|p| p.0 == index).unwrap();
    assert_ne!(replacement.1, pid, "a new process holds index {index}");
    assert_eq!(pool.status().current, 3);
    pool.shutdown().await;
}

#[tokio::test]
async fn stopping_is_sigterm_then_sigkill_after_the_stop_timeout() {
    let dir = scratch("stop");
    // Index 0 finishes and exits on SIGTERM; index 1 notes SIGTERM and keeps going, as a
    // worker stuck in a job would.
    let script = r#"if [ "$WARREN_WORKER_INDEX" = 0 ]; then trap 'echo term > "$0/term-0"; exit 0' TERM;
else trap 'echo term > "$0/term-1"' TERM; fi
echo up > "$0/up-$WARREN_WORKER_INDEX"
while :; do sleep 0.1; done"#;
    let stop_timeout = Duration::from_millis(2500);
    let mut pool = pool(&sh(script, &dir), None, stop_timeout);
    pool.scale_to(2).await;
    wait_file(&dir.join("up-0"), Duration::from_secs(10)).await;
    wait_file(&dir.join("up-1"), Duration::from_secs(10)).await;
    let stopped_at = Instant::now();
    pool.scale_to(0).await;
    assert!(
        refresh_until(&mut pool, Duration::from_secs(2), |s| s.stopping == 1).await,
        "the worker that exits on SIGTERM is gone well before the stop timeout"
    );
    assert_eq!(
        wait_file(&dir.join("term-0"), Duration::from_secs(1)).await,
        "term\n"
    );
    let polite = stopped_at.elapsed();
    assert!(polite < stop_timeout, "{polite:?}");
    assert!(
        refresh_until(&mut pool, Duration::from_secs(10), |s| s.stopping == 0).await,
        "the stuck worker was killed"
    );
    let stuck = stopped_at.elapsed();
    assert_eq!(
        wait_file(&dir.join("term-1"), Duration::from_secs(1)).await,
        "term\n",
        "it got SIGTERM first"
    );
    assert!(
        stuck >= stop_timeout && stuck < stop_timeout + Duration::from_secs(2),
        "killed after the stop timeout ({stop_timeout:?}), not before nor much later: {stuck:?}"
    );
    assert_eq!(
        pool.status().restarts,
        0,
        "stopped workers are not replaced"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts three workers one after the other (index 0 the oldest) and scales to one.
async fn survivor_of_scale_down(busy_metric: Option<&str>) -> u32 {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/foreign/busy_gauge.py");
    // The youngest worker (index 2) is the busy one.
    let mut pool = pool(
        &["python3", script, "2"],
        busy_metric,
        Duration::from_secs(5),
    );
    for n in 1..=3 {
        pool.scale_to(n).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refresh_until(&mut pool, Duration::from_secs(15), |s| s.ready == 3).await,
        "three workers ready"
    );
    pool.scale_to(1).await;
    let survivors = pool.active_pids();
    assert_eq!(survivors.len(), 1, "{survivors:?}");
    pool.shutdown().await;
    survivors[0].0
}

#[tokio::test]
async fn with_a_busy_gauge_idle_workers_stop_first() {
    assert_eq!(
        survivor_of_scale_down(Some("jobs_in_hand")).await,
        2,
        "the busy worker stays, young as it is"
    );
}

#[tokio::test]
async fn without_a_busy_gauge_the_youngest_workers_stop_first() {
    assert_eq!(
        survivor_of_scale_down(None).await,
        0,
        "the oldest worker stays"
    );
}

#[tokio::test]
async fn a_worker_that_keeps_dying_young_is_restarted_with_a_growing_delay() {
    assert_eq!(
        (1..=8)
            .map(restart_delay)
            .map(|d| d.as_secs())
            .collect::<Vec<_>>(),
        [0, 1, 2, 4, 8, 16, 30, 30]
    );
    // A program that fails at once, as one with a wrong queue name or password would.
    let mut pool = pool(&["sh", "-c", "exit 3"], None, Duration::from_secs(2));
    pool.scale_to(1).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let status = pool.refresh().await;
        assert_eq!(
            status.current, 1,
            "a replacement waiting its turn is still a replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Crashes at about 0, 0.1, 1.2 and 3.3 s: the replacements wait 0, 1, 2, then 4 s.
    let restarts = pool.status().restarts;
    assert!(
        (3..=5).contains(&restarts),
        "{restarts} restarts in 6 s (every 100 ms without the delay)"
    );
    pool.scale_to(0).await;
    assert_eq!(
        pool.status().current,
        0,
        "a waiting replacement is cancelled first"
    );
    pool.shutdown().await;
}
