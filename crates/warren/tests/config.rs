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
    for sub in ["web", "worker", "broker"] {
        let output = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("Usage: warren"), "{text}");
    }
}
