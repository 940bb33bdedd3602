//! `warren load` against a small in-test HTTP server on 127.0.0.1 (no broker needed): counts,
//! accepted ids, open-loop timing, shedding over the in-flight cap, timeouts, Ctrl-C, the CSV,
//! and the command line.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use warren::lab::load::{self, LoadConfig, LoadStats, LoadSummary, Pattern, PatternKind};

/// A stand-in for `warren web`'s `/generate`: `Welcome! <id>`, or 503 for every
/// `unavailable_every`-th request, after `delay`.
#[derive(Default)]
struct FakeWeb {
    delay: Duration,
    unavailable_every: u64,
    requests: AtomicU64,
    concurrent: AtomicU64,
    max_concurrent: AtomicU64,
    issued: Mutex<Vec<String>>,
    arrivals: Mutex<Vec<Instant>>,
}

/// Counts a request out of `concurrent` also when the client gives up and the handler is
/// dropped.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn generate(State(web): State<Arc<FakeWeb>>) -> Response {
    let n = web.requests.fetch_add(1, Ordering::SeqCst);
    web.arrivals.lock().unwrap().push(Instant::now());
    let now = web.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(&web.concurrent);
    web.max_concurrent.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(web.delay).await;
    if web.unavailable_every > 0 && n % web.unavailable_every == web.unavailable_every - 1 {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy\n").into_response();
    }
    let id = format!("TEST{n:06}");
    web.issued.lock().unwrap().push(id.clone());
    format!("Welcome! {id}\n").into_response()
}

/// Starts the fake on 127.0.0.1:0 and returns its base URL.
async fn start(web: FakeWeb) -> (String, Arc<FakeWeb>) {
    let web = Arc::new(web);
    let app = Router::new()
        .route("/generate", get(generate))
        .with_state(web.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), web)
}

fn config(base: &str, kind: PatternKind, rate: f64, secs: f64) -> LoadConfig {
    let pattern = Pattern::builtin(kind, rate, Duration::from_secs_f64(secs)).unwrap();
    LoadConfig::new(load::generate_url(base).unwrap(), pattern)
}

fn temp_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::env::temp_dir().join(format!("warren-load-{name}-{}-{nanos}", std::process::id()))
}

fn assert_adds_up(s: &LoadSummary) {
    assert_eq!(s.scheduled, s.sent + s.dropped, "{s:?}");
    assert_eq!(
        s.sent,
        s.ok + s.unavailable + s.other_total() + s.errors + s.abandoned,
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_counts_answers_and_collects_the_accepted_ids() {
    let (base, web) = start(FakeWeb {
        unavailable_every: 5,
        ..FakeWeb::default()
    })
    .await;
    let csv = temp_path("counts.csv");
    let mut config = config(&base, PatternKind::Constant, 100.0, 1.0);
    config.csv = Some(csv.clone());
    let stats = Arc::new(LoadStats::default());
    let (ids_tx, mut ids_rx) = mpsc::unbounded_channel();

    let summary = load::run_with(
        config,
        CancellationToken::new(),
        stats.clone(),
        Some(ids_tx),
    )
    .await
    .unwrap();

    assert_adds_up(&summary);
    assert_eq!(summary.sent, 100, "{summary:?}");
    assert_eq!(summary.ok, 80);
    assert_eq!(summary.unavailable, 20);
    assert_eq!(
        (summary.errors, summary.dropped, summary.abandoned),
        (0, 0, 0)
    );
    assert!(summary.other.is_empty());
    assert_eq!(summary.latency.unwrap().count, 100);
    let live = stats.snapshot();
    assert_eq!((live.sent, live.ok, live.unavailable), (100, 80, 20));
    assert_eq!((live.in_flight, live.target_rate), (0, 0.0));

    let mut ids = Vec::new();
    while let Ok(id) = ids_rx.try_recv() {
        ids.push(id);
    }
    let issued: HashSet<String> = web.issued.lock().unwrap().iter().cloned().collect();
    assert_eq!(ids.len(), 80);
    assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), issued);

    let text = std::fs::read_to_string(&csv).unwrap();
    std::fs::remove_file(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("sent_at_ms,latency_ms,status,job_id"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 100);
    assert!(rows.iter().all(|r| r.len() == 4));
    assert_eq!(
        rows.iter()
            .filter(|r| r[2] == "503" && r[3].is_empty())
            .count(),
        20
    );
    let csv_ids: HashSet<String> = rows
        .iter()
        .filter(|r| r[2] == "200")
        .map(|r| r[3].to_owned())
        .collect();
    assert_eq!(csv_ids, issued);
    let mut sent_at: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    sent_at.sort_unstable();
    assert_eq!(
        (sent_at[0], sent_at[99]),
        (10, 1000),
        "every 10 ms from 10 ms to 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_keeps_its_schedule_when_the_server_is_slow() {
    // A closed loop of one would send 4 requests in 2 s to this server; open loop sends 100.
    let (base, web) = start(FakeWeb {
        delay: Duration::from_millis(500),
        ..FakeWeb::default()
    })
    .await;
    let started = Instant::now();
    let summary = load::run_with(
        config(&base, PatternKind::Constant, 50.0, 2.0),
        CancellationToken::new(),
        Arc::new(LoadStats::default()),
        None,
    )
    .await
    .unwrap();

    assert_adds_up(&summary);
    assert_eq!(
        (summary.sent, summary.ok, summary.dropped),
        (100, 100, 0),
        "{summary:?}"
    );
    let arrivals = web.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 100);
    let by = |secs: f64| {
        arrivals
            .iter()
            .filter(|&&a| a.duration_since(started).as_secs_f64() <= secs)
            .count()
    };
    // On schedule: about 50 by 1 s, all by 2 s (plus slack for a busy machine), although
    // each answer takes 500 ms.
    assert!((40..=55).contains(&by(1.0)), "{} by 1 s", by(1.0));
    assert_eq!(by(2.3), 100);
    assert!(web.max_concurrent.load(Ordering::SeqCst) >= 20);
    let latency = summary.latency.unwrap();
    assert!(latency.p50 >= Duration::from_millis(500), "{latency:?}");
    assert!(
        (45.0..=52.0).contains(&summary.achieved_rate),
        "{summary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_drops_requests_over_the_in_flight_cap_instead_of_delaying_them() {
    let (base, web) = start(FakeWeb {
        delay: Duration::from_millis(500),
        ..FakeWeb::default()
    })
    .await;
    let mut config = config(&base, PatternKind::Constant, 40.0, 1.0);
    config.max_in_flight = 5;
    let started = Instant::now();
    let summary = load::run_with(
        config,
        CancellationToken::new(),
        Arc::new(LoadStats::default()),
        None,
    )
    .await
    .unwrap();

    assert_adds_up(&summary);
    assert_eq!(summary.scheduled, 40);
    // 5 go out at once, the next 5 only once those are answered ~0.5 s later.
    assert!((5..=15).contains(&summary.sent), "{summary:?}");
    assert!(summary.dropped >= 25, "{summary:?}");
    assert_eq!(summary.ok, summary.sent);
    assert!(web.max_concurrent.load(Ordering::SeqCst) <= 5);
    // Sending ended on time: the schedule was not stretched to fit the cap.
    assert!(summary.elapsed < Duration::from_millis(1200), "{summary:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_counts_timeouts_as_errors() {
    let (base, _web) = start(FakeWeb {
        delay: Duration::from_secs(3),
        ..FakeWeb::default()
    })
    .await;
    let mut config = config(&base, PatternKind::Constant, 10.0, 0.5);
    config.timeout = Duration::from_millis(200);
    let summary = load::run_with(
        config,
        CancellationToken::new(),
        Arc::new(LoadStats::default()),
        None,
    )
    .await
    .unwrap();

    assert_adds_up(&summary);
    assert_eq!(
        (summary.sent, summary.errors, summary.timeouts),
        (5, 5, 5),
        "{summary:?}"
    );
    assert_eq!(summary.ok, 0);
    assert_eq!(summary.latency, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_stops_sending_on_cancel_and_still_summarises() {
    let (base, _web) = start(FakeWeb {
        delay: Duration::from_secs(10),
        ..FakeWeb::default()
    })
    .await;
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let summary = load::run_with(
        config(&base, PatternKind::Constant, 100.0, 30.0),
        shutdown,
        Arc::new(LoadStats::default()),
        None,
    )
    .await
    .unwrap();

    // Stopped sending at the cancel, waited the 2 s grace for answers, then gave up on them.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_adds_up(&summary);
    assert!((40..=60).contains(&summary.sent), "{summary:?}");
    assert_eq!(summary.abandoned, summary.sent);
    assert!(summary.elapsed < Duration::from_secs(1), "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_command_prints_progress_and_a_summary() {
    let (base, web) = start(FakeWeb::default()).await;
    let csv = temp_path("cli.csv");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "load",
            "--url",
            &base,
            "--rate",
            "20",
            "--duration",
            "1500ms",
        ])
        .arg("--csv")
        .arg(&csv)
        .env_remove("RUST_LOG")
        .env_remove("LOG_LEVEL")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} line in {stdout}"))
            .to_owned()
    };
    assert_eq!(field("sent "), "30");
    assert_eq!(field("200 "), "30");
    assert_eq!(field("dropped "), "0");
    assert!(field("latency ").starts_with("p50 "), "{stdout}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("load ") && l.contains("target 20.0/s")),
        "no progress line in {stderr}"
    );
    assert_eq!(web.requests.load(Ordering::SeqCst), 30);
    let rows = std::fs::read_to_string(&csv).unwrap().lines().count();
    std::fs::remove_file(&csv).unwrap();
    assert_eq!(rows, 31);
}

#[test]
fn load_command_refuses_bad_settings_with_exit_2_and_one_line() {
    let bad_file = temp_path("bad-pattern.csv");
    std::fs::write(&bad_file, "0,10\n5,lots\n").unwrap();
    let good_file = temp_path("good-pattern.csv");
    std::fs::write(&good_file, "0,10\n5,10\n").unwrap();
    let bad = bad_file.to_str().unwrap();
    let good = good_file.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--rate", "abc"], "--rate"),
        (&["--rate", "0"], "LOAD_RATE"),
        (&["--rate", "NaN"], "LOAD_RATE"),
        (&["--duration", "5x"], "not a duration"),
        (&["--duration", "0s"], "LOAD_DURATION"),
        (&["--pattern", "wobble"], "wobble"),
        (
            &["--pattern-file", "/nonexistent/pattern.csv"],
            "cannot read pattern file",
        ),
        (
            &["--pattern-file", bad],
            "line 2: rate \"lots\" is not a number",
        ),
        (&["--pattern-file", good, "--rate", "5"], "--rate"),
        (&["--pattern-file", good, "--pattern", "sine"], "--pattern"),
        (&["--url", "ftp://127.0.0.1"], "LOAD_URL"),
        (&["--url", "https://127.0.0.1"], "plain http"),
        (&["--timeout", "0s"], "LOAD_TIMEOUT"),
        (&["--speed", "0"], "LOAD_SPEED"),
        (&["--max-in-flight", "0"], "--max-in-flight"),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, wanted) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("load")
            .args(*args)
            .env_remove("RUST_LOG")
            .env_remove("LOG_LEVEL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("warren: "), "{stderr}");
        assert!(
            stderr.contains(wanted),
            "{args:?}: {stderr:?} lacks {wanted:?}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    // The same file through the environment is refused together with a rate as well.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("load")
        .env("LOAD_PATTERN_FILE", good)
        .env("LOAD_RATE", "5")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    std::fs::remove_file(&bad_file).unwrap();
    std::fs::remove_file(&good_file).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_counts_other_statuses_by_status() {
    let (base, _web) = start(FakeWeb::default()).await;
    // No route there: the fake answers 404.
    let summary = load::run_with(
        config(
            &format!("{base}/elsewhere"),
            PatternKind::Constant,
            20.0,
            0.25,
        ),
        CancellationToken::new(),
        Arc::new(LoadStats::default()),
        None,
    )
    .await
    .unwrap();

    assert_adds_up(&summary);
    assert_eq!(summary.sent, 5);
    assert_eq!(summary.other.get(&404), Some(&5), "{summary:?}");
    assert!(
        summary.to_string().contains("other          5 (404: 5)"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_counts_refused_connections_as_errors_and_says_why() {
    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let summary = load::run_with(
        config(
            &format!("http://{closed}"),
            PatternKind::Constant,
            20.0,
            0.25,
        ),
        CancellationToken::new(),
        Arc::new(LoadStats::default()),
        None,
    )
    .await
    .unwrap();

    assert_adds_up(&summary);
    assert_eq!(
        (summary.sent, summary.errors, summary.timeouts),
        (5, 5, 0),
        "{summary:?}"
    );
    let why = summary.first_error.as_deref().unwrap_or_default();
    assert!(why.to_lowercase().contains("refused"), "{why:?}");
    assert!(summary.to_string().contains("; first: "), "{summary}");
}
