//! Bad configuration: one line on stderr, exit code 2, nothing started.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
    command
        .args(args)
        .env_remove("AMQP_URL")
        .env_remove("RUST_LOG")
        .env_remove("LOG_LEVEL");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn each_invalid_setting_exits_2_with_one_line() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (&["web"], &[("PORT", "70000")]),
        (&["web", "--port", "-1"], &[]),
        (&["worker"], &[("WORK_MS", "-5")]),
        (&["worker"], &[("WORK_MS", "99999999999")]),
        (&["worker"], &[("PREFETCH", "0")]),
        (&["worker"], &[("METRICS_PORT", "65536")]),
        (&["worker"], &[("GRACE_MS", "soon")]),
        (&["web"], &[("AMQP_URL", "not a url")]),
        (&["web"], &[("AMQP_URL", "http://guest:hunter2@host")]),
        (&["web"], &[("RABBIT_PORT", "0")]),
        (&["web"], &[("RABBIT_HOST", "bad host/name")]),
        (&["web"], &[("LOG_LEVEL", "loud")]),
        (&["worker"], &[("RUST_LOG", "warren=[[[")]),
        (&["web"], &[("QUEUE", "amq.reserved")]),
        (&["web"], &[("BIND", "localhost:80")]),
        (&["web"], &[("CONFIRM_TIMEOUT_MS", "0")]),
        (&["web", "--no-such-flag"], &[]),
        (&["web"], &[("QUORUM_GROUP_SIZE", "16")]),
        (&["worker"], &[("QUORUM_GROUP_SIZE", "three")]),
        (
            &["web"],
            &[("AMQP_URL", "amqp://u:hunter2@a:5672/,http://u:hunter2@b")],
        ),
        (&["web"], &[("AMQP_URL", "amqp://u:hunter2@a:5672/,")]),
        (&["broker", "--nodes", "0"], &[]),
        (&["broker", "--nodes", "8"], &[]),
        (&["demo", "--policy", "fastest"], &[]),
    ];
    for (args, env) in cases {
        let (code, stderr) = run(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?} {env:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("warren: "), "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "a password must never be printed: {stderr}"
        );
    }
}

#[test]
fn help_explains_every_subcommand() {
    let (code, _) = run(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for sub in ["web", "worker", "broker", "rules"] {
        let output = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("Usage: warren"), "{text}");
    }
}

/// Runs `warren` like [`run`], but kills it after 10 s: a setting wrongly accepted would start
/// the command, which then runs until stopped.
fn run_bounded(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
    command
        .args(args)
        .env_remove("AMQP_URL")
        .env_remove("RUST_LOG")
        .env_remove("LOG_LEVEL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "warren {args:?} with {env:?} was accepted and started: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn each_invalid_web_limit_and_autoscale_and_load_setting_exits_2_with_one_line() {
    let bad_pattern = std::env::temp_dir().join(format!(
        "warren-test-bad-pattern-{}.csv",
        std::process::id()
    ));
    std::fs::write(&bad_pattern, "0,abc\n").unwrap();
    let bad_pattern = bad_pattern.to_str().unwrap();
    let long_queue = "q".repeat(201);
    type Case<'a> = (&'a [&'a str], Vec<(&'a str, &'a str)>);
    let mut cases: Vec<Case> = vec![
        (&["web"], vec![("REQUEST_TIMEOUT_MS", "0")]),
        (&["web"], vec![("REQUEST_TIMEOUT_MS", "300001")]),
        (&["web"], vec![("MAX_CONCURRENT_REQUESTS", "0")]),
        (&["web"], vec![("PUBLISH_CHANNELS", "0")]),
        (&["web"], vec![("PUBLISH_CHANNELS", "257")]),
        (&["web"], vec![("CONFIRM_TIMEOUT_MS", "60001")]),
        (
            &["web"],
            vec![
                ("CONFIRM_TIMEOUT_MS", "5000"),
                ("REQUEST_TIMEOUT_MS", "5000"),
            ],
        ),
        (&["web"], vec![("PORT", "abc")]),
        (&["web"], vec![("BIND", "999.1.1.1")]),
        (&["web"], vec![("QUEUE", "")]),
        (&["web"], vec![("QUEUE", long_queue.as_str())]),
        (&["web"], vec![("AMQP_URL", "amqp://host:99999")]),
        (&["web"], vec![("RABBIT_USERNAME", "")]),
        (&["worker"], vec![("PREFETCH", "1001")]),
        (&["worker"], vec![("GRACE_MS", "3600001")]),
        (&["worker"], vec![("METRICS_BIND", "nope")]),
        (&["worker"], vec![("WORK_MS", "1.5")]),
        (&["autoscale"], vec![("HPA_FILE", "/nonexistent/hpa.yaml")]),
        (
            &["autoscale"],
            vec![(
                "HPA_FILE",
                concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
            )],
        ),
    ];
    let autoscale: &[(&str, &str)] = &[
        ("METRIC_SOURCE", "graphite"),
        ("RABBIT_PROMETHEUS_URL", "ftp://x"),
        ("SYNC_PERIOD", "soon"),
        ("SYNC_PERIOD", "10ms"),
        ("SPEED", "0"),
        ("SPEED", "NaN"),
        ("SPEED", "5000"),
        ("WORK_MS", "-1"),
        ("PREFETCH", "0"),
        ("GRACE_MS", "-1"),
        ("AUTOSCALER_METRICS_PORT", "70000"),
        ("AUTOSCALER_METRICS_BIND", "here"),
        ("QUEUE", "amq.reserved"),
        ("WORKER_COMMAND", "/nonexistent/consumer --work 2"),
        ("WORKER_COMMAND", "python3 'unclosed"),
        ("WORKER_BUSY_METRIC", "jobs_in_hand"),
        ("WORKER_STOP_TIMEOUT", "soon"),
        ("CAPACITY_UTILISATION", "1.5"),
        ("CAPACITY_DRAIN", "0s"),
        ("CAPACITY_DEFAULT_WORK", "soon"),
        ("CAPACITY_CONCURRENCY", "0.5"),
    ];
    // Without HPA_FILE, from the test's directory: the built-in manifest passes its checks, so
    // the setting is what fails.
    for setting in autoscale {
        cases.push((&["autoscale"], vec![*setting]));
    }
    cases.push((
        &["autoscale"],
        vec![
            ("METRIC_SOURCE", "prometheus"),
            ("PROMETHEUS_URL", "not-a-url"),
        ],
    ));
    cases.push((
        &["autoscale"],
        vec![
            ("WORKER_COMMAND", "sh"),
            ("WORKER_BUSY_METRIC", "9 in hand"),
        ],
    ));
    for setting in [
        ("LOAD_URL", "ftp://x"),
        ("LOAD_URL", "https://x"),
        ("LOAD_URL", "http://x/?a=1"),
        ("LOAD_URL", "not a url"),
        ("LOAD_RATE", "0"),
        ("LOAD_RATE", "-3"),
        ("LOAD_RATE", "NaN"),
        ("LOAD_RATE", "2000000"),
        ("LOAD_DURATION", "soon"),
        ("LOAD_DURATION", "0"),
        ("LOAD_PATTERN", "zigzag"),
        ("LOAD_PATTERN_FILE", "/nonexistent/pattern.csv"),
        ("LOAD_PATTERN_FILE", bad_pattern),
        ("LOAD_MAX_IN_FLIGHT", "0"),
        ("LOAD_TIMEOUT", "0"),
        ("LOAD_SPEED", "0"),
        ("LOAD_SPEED", "20000"),
    ] {
        cases.push((&["load"], vec![setting]));
    }
    cases.push((
        &["load"],
        vec![("LOAD_PATTERN_FILE", bad_pattern), ("LOAD_RATE", "3")],
    ));
    for (args, env) in &cases {
        let (code, stderr) = run_bounded(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?} {env:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("warren: "), "{stderr}");
    }
    let _ = std::fs::remove_file(bad_pattern);
}

/// clap's message folded into one line keeps what it knew: the argument it names, its
/// "did you mean" tip and which `--help` to read.
#[test]
fn argument_errors_keep_clap_content_on_one_line() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["autoscale", "--hpa"],
            &["--hpa <HPA>", "see 'warren autoscale --help'"],
        ),
        (
            &["web", "--prot", "3"],
            &[
                "'--prot'",
                "similar argument exists: '--port'",
                "see 'warren web --help'",
            ],
        ),
        (
            &["worker", "--prefetch", "many"],
            &[
                "'many'",
                "--prefetch <PREFETCH>",
                "see 'warren worker --help'",
            ],
        ),
        (
            &["loadd"],
            &[
                "'loadd'",
                "similar subcommand exists: 'load'",
                "see 'warren --help'",
            ],
        ),
    ];
    for (args, wanted) in cases {
        let (code, stderr) = run(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("warren: "), "{stderr}");
        for part in *wanted {
            assert!(
                stderr.contains(part),
                "{args:?}: {part:?} missing from {stderr:?}"
            );
        }
    }
}

/// `warren-worker` (the worker's pods run it) checks the same settings as `warren worker`, and
/// says its own name: one line, exit code 2, nothing started.
#[test]
fn warren_worker_checks_the_worker_settings_and_names_itself() {
    // Arguments, environment, a part the error line must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&[], &[("PREFETCH", "0")], "PREFETCH"),
        (&[], &[("WORK_MS", "-5")], "WORK_MS"),
        (&[], &[("AMQP_URL", "http://guest:hunter2@host")], "amqp"),
        (&[], &[("LOG_LEVEL", "loud")], "loud"),
        (&["--prefetch", "many"], &[], "see 'warren-worker --help'"),
        // The worker alone: another subcommand is not an argument it knows.
        (&["web"], &[], "'web'"),
    ];
    for (args, env, wanted) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warren-worker"));
        command
            .args(*args)
            .env_remove("AMQP_URL")
            .env_remove("RUST_LOG")
            .env_remove("LOG_LEVEL")
            .envs(env.iter().copied());
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} {env:?}: {stderr:?}");
        assert!(stderr.starts_with("warren-worker: "), "{stderr}");
        assert!(
            stderr.contains(wanted),
            "{wanted:?} missing from {stderr:?}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "a password was printed: {stderr}"
        );
    }
    let help = Command::new(env!("CARGO_BIN_EXE_warren-worker"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for wanted in [
        "Usage: warren-worker",
        "--prefetch",
        "[env: WORK_MS=]",
        "--log-level",
    ] {
        assert!(
            text.contains(wanted),
            "{wanted:?} missing from --help:\n{text}"
        );
    }
}

#[test]
fn a_bad_speed_names_the_flag_and_demo_and_autoscale_share_its_bounds() {
    for command in ["demo", "autoscale"] {
        for value in ["0", "-1", "100.5", "fast"] {
            let (code, stderr) = run(&[command, "--speed", value], &[]);
            assert_eq!(code, Some(2), "{command} --speed {value}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            // A negative value is a value of --speed, not an unknown argument.
            assert!(
                stderr.contains(&format!("invalid value '{value}' for '--speed <K>'")),
                "{command} --speed {value}: {stderr}"
            );
            assert!(stderr.contains("from 0.1 to 100"), "{stderr}");
        }
    }
    // From the variable, the message names the flag it stands for, as the help shows both.
    let (code, stderr) = run(&["demo"], &[("DEMO_SPEED", "0")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("'--speed <K>'"), "{stderr}");
    assert!(!stderr.contains("DEMO_SPEED must"), "{stderr}");
}

#[test]
fn worker_help_says_the_work_is_a_sleep_and_help_never_leans_on_the_original_application() {
    for args in [
        &["worker", "--help"][..],
        &["demo", "--help"][..],
        &["autoscale", "--help"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(args)
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for outside in ["the seed", "the original application"] {
            assert!(!help.contains(outside), "{args:?}:\n{help}");
        }
        if args[0] != "demo" {
            assert!(
                help.contains("a sleep that stands in for real processing"),
                "{args:?}:\n{help}"
            );
        }
    }
}

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .env_remove("AMQP_URL")
        .env_remove("HPA_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn demo_prints_its_load_pattern_for_rate_and_duration_and_starts_nothing() {
    let points: Vec<[f64; 2]> = serde_json::from_str(&stdout_of(&[
        "demo",
        "--print-pattern",
        "--rate",
        "3",
        "--duration",
        "50s",
    ]))
    .unwrap();
    // A fifth of the time at 30 % of the peak, then the peak until the end.
    let expected = [[0.0, 0.9], [10.0, 0.9], [10.0, 3.0], [50.0, 3.0]];
    assert_eq!(points.len(), expected.len(), "{points:?}");
    for (got, want) in points.iter().zip(expected) {
        assert!(
            (got[0] - want[0]).abs() < 1e-9 && (got[1] - want[1]).abs() < 1e-9,
            "{points:?}"
        );
    }
}

#[test]
fn autoscale_prints_the_adapter_query_of_each_hpa_metric() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let queries = |hpa: &std::path::Path| -> Vec<serde_json::Value> {
        serde_json::from_str(&stdout_of(&[
            "autoscale",
            "--print-queries",
            "--hpa",
            hpa.to_str().unwrap(),
        ]))
        .unwrap()
    };
    let overlays = root.join("deploy/kubernetes/overlays");
    let queue_length = queries(&overlays.join("prometheus-adapter/hpa.yaml"));
    assert_eq!(
        queue_length,
        vec![serde_json::json!({
            "metric": "rabbitmq_queue_messages_ready",
            "query": r#"sum(rabbitmq_detailed_queue_messages_ready{queue="Orders"}) by (queue)"#,
            "labels": {"queue": "Orders"},
        })]
    );
    let capacity = queries(&overlays.join("prometheus-adapter-capacity/hpa.yaml"));
    assert_eq!(
        capacity[0]["query"],
        r#"max(warren_workers_needed{queue="Orders"}) by (queue)"#
    );
    // A user's queue, as `warren rules` prints its HPA: the selector's vhost is a matcher too.
    let hpa = std::env::temp_dir().join(format!("warren-test-queries-{}.yaml", std::process::id()));
    std::fs::write(
        &hpa,
        stdout_of(&[
            "rules", "--queue", "emails", "--vhost", "shop", "--only", "hpa",
        ]),
    )
    .unwrap();
    let user = queries(&hpa);
    let _ = std::fs::remove_file(&hpa);
    assert_eq!(
        user[0]["query"],
        r#"max(warren_workers_needed{queue="emails",vhost="shop"}) by (queue)"#
    );
}
