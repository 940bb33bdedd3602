//! `warren simulate`, the real binary: the scenario library against the policies to compare,
//! the table, the report files; bad input is one line and exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("warren runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-simulate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const POLICIES: [(&str, &str); 4] = [
    ("--hpa", "scenarios/policies/original-hpa.yaml"),
    (
        "--hpa",
        "deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml",
    ),
    (
        "--scaledobject",
        "scenarios/policies/keda-rabbitmq-defaults.yaml",
    ),
    (
        "--scaledobject",
        "deploy/kubernetes/overlays/keda/scaledobject.yaml",
    ),
];
const POLICY_NAMES: [&str; 4] = [
    "original-hpa",
    "hpa",
    "keda-rabbitmq-defaults",
    "scaledobject",
];
// day-50 is the speed benchmark's (4.3 million jobs): bench/sim-speed runs it, in release.
const SCENARIOS: [&str; 6] = ["steady", "step", "burst", "spikes", "day", "demo"];

#[test]
fn simulate_runs_the_scenario_library_against_every_policy() {
    let dir = temp_dir("library");
    let mut args: Vec<String> = Vec::new();
    for (flag, file) in POLICIES {
        args.push(flag.into());
        args.push(repo(file).display().to_string());
    }
    for name in SCENARIOS {
        args.push("--scenario".into());
        args.push(
            repo(&format!("scenarios/{name}.yaml"))
                .display()
                .to_string(),
        );
    }
    args.push("--report-dir".into());
    args.push(dir.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = simulate(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The table: a header, then one row per scenario x policy, in order.
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("scenario") && lines[0].contains("wait p95 s"),
        "{stdout}"
    );
    let rows: Vec<Vec<&str>> = lines[1..=SCENARIOS.len() * POLICIES.len()]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], SCENARIOS[i / POLICIES.len()], "{stdout}");
        assert_eq!(row[1], POLICY_NAMES[i % POLICIES.len()], "{stdout}");
    }
    // The shipped HPA and the KEDA overlay are the same policy: the same row of figures.
    for s in 0..SCENARIOS.len() {
        let hpa = &rows[s * POLICIES.len() + 1][2..];
        let keda_overlay = &rows[s * POLICIES.len() + 3][2..];
        assert_eq!(hpa, keda_overlay, "{}", SCENARIOS[s]);
    }
    assert!(stdout.contains(&format!("report: {}", dir.display())));

    // The report: one directory per scenario, every file, every policy in it.
    for name in SCENARIOS {
        let sub = dir.join(name);
        for file in [
            "index.html",
            "timeseries.csv",
            "totals.json",
            "queue_depth.svg",
            "workers.svg",
            "arrival_rate.svg",
            "queue_wait_p95.svg",
        ] {
            assert!(sub.join(file).is_file(), "{name}/{file} is missing");
        }
        let totals: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sub.join("totals.json")).expect("totals"),
        )
        .expect("totals.json is JSON");
        let runs = totals["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), POLICIES.len());
        for (run, policy) in runs.iter().zip(POLICY_NAMES) {
            assert_eq!(run["policy"], policy);
            assert!(run["jobs_arrived"].as_u64().expect("jobs") > 0);
            assert!(!run["desired_per_sync"]
                .as_array()
                .expect("syncs")
                .is_empty());
        }
        let csv = std::fs::read_to_string(sub.join("timeseries.csv")).expect("csv");
        assert!(csv.starts_with("run,t_secs,queue_ready,"));
        for policy in POLICY_NAMES {
            assert!(
                csv.contains(&format!("\n{policy},")),
                "{name}: no {policy} rows"
            );
        }
        let html = std::fs::read_to_string(sub.join("index.html")).expect("page");
        assert!(html.contains("id=\"comparison\""));
        assert!(html.contains("ScalingActive=ValidMetricFound"));
        let workers = std::fs::read_to_string(sub.join("workers.svg")).expect("svg");
        for policy in POLICY_NAMES {
            assert!(
                workers.contains(&format!("{policy}: desired")),
                "{name}: {policy}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn assert_one_line_exit_2(out: &Output, wanted: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for w in wanted {
        assert!(stderr.contains(w), "{stderr:?} lacks {w:?}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn simulate_refuses_an_unknown_scenario_field_with_one_line_and_exit_2() {
    let dir = temp_dir("unknown");
    std::fs::create_dir_all(&dir).expect("dir");
    let steady = std::fs::read_to_string(repo("scenarios/steady.yaml")).expect("steady");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        steady.replace("slo_secs: 10", "slo_secs: 10\nslo_sec: 5"),
    )
    .expect("write");
    let hpa = repo("deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml");
    let out = simulate(&[
        "--hpa",
        &hpa.display().to_string(),
        "--scenario",
        &bad.display().to_string(),
        "--report-dir",
        &dir.join("report").display().to_string(),
    ]);
    assert_one_line_exit_2(
        &out,
        &[
            "bad.yaml",
            "slo_sec: unknown field (did you mean slo_secs?)",
        ],
    );
    assert!(
        !dir.join("report").exists(),
        "a report was written for bad input"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_refuses_bad_values_and_policies_with_one_line_and_exit_2() {
    let dir = temp_dir("bad");
    std::fs::create_dir_all(&dir).expect("dir");
    let steady = std::fs::read_to_string(repo("scenarios/steady.yaml")).expect("steady");
    let hpa = repo("deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml")
        .display()
        .to_string();
    let scenario = repo("scenarios/steady.yaml").display().to_string();

    let bad = dir.join("negative.yaml");
    std::fs::write(&bad, steady.replace("secs: 5", "secs: -5")).expect("write");
    let out = simulate(&[
        "--hpa",
        &hpa,
        "--scenario",
        &bad.display().to_string(),
        "--no-report",
    ]);
    assert_one_line_exit_2(&out, &["negative.yaml", "work.secs: must be above 0"]);

    let so = dir.join("so.yaml");
    let keda = std::fs::read_to_string(repo("deploy/kubernetes/overlays/keda/scaledobject.yaml"))
        .expect("so");
    std::fs::write(&so, keda.replace("pollingInterval", "pollingIntervall")).expect("write");
    let out = simulate(&[
        "--scaledobject",
        &so.display().to_string(),
        "--scenario",
        &scenario,
        "--no-report",
    ]);
    assert_one_line_exit_2(
        &out,
        &[
            "so.yaml",
            "spec.pollingIntervall: unknown field (did you mean pollingInterval?)",
        ],
    );

    // What KEDA refuses is refused with the field named: queueLength beside mode (KEDA's
    // validateTrigger), and what the simulator cannot model: scalingModifiers.
    for (edit, wanted) in [
        (
            keda.replace("mode: QueueLength", "mode: QueueLength\n        queueLength: \"5\""),
            "spec.triggers[0].metadata.queueLength: queueLength is deprecated; use mode and value",
        ),
        (
            keda.replace(
                "    restoreToOriginalReplicaCount: false",
                "    restoreToOriginalReplicaCount: false\n    scalingModifiers: { formula: \"s0\", target: \"5\" }",
            ),
            "spec.advanced.scalingModifiers: not simulated",
        ),
    ] {
        std::fs::write(&so, edit).expect("write");
        let out = simulate(&[
            "--scaledobject",
            &so.display().to_string(),
            "--scenario",
            &scenario,
            "--no-report",
        ]);
        assert_one_line_exit_2(&out, &["so.yaml", wanted]);
    }

    let invalid = dir.join("hpa.yaml");
    let text = std::fs::read_to_string(&hpa).expect("hpa");
    std::fs::write(&invalid, text.replace("maxReplicas: 10", "maxReplicas: 0")).expect("write");
    let out = simulate(&[
        "--hpa",
        &invalid.display().to_string(),
        "--scenario",
        &scenario,
        "--no-report",
    ]);
    assert_one_line_exit_2(&out, &["hpa.yaml", "spec.maxReplicas"]);

    let out = simulate(&["--hpa", &hpa, "--no-report"]);
    assert_one_line_exit_2(
        &out,
        &["the following required arguments were not provided: --scenario <FILE>"],
    );

    let out = simulate(&["--scenario", &scenario, "--no-report"]);
    assert_one_line_exit_2(&out, &["at least one --hpa FILE or --scaledobject FILE"]);

    let out = simulate(&[
        "--hpa",
        &hpa,
        "--scenario",
        &dir.join("missing.yaml").display().to_string(),
    ]);
    assert_one_line_exit_2(&out, &["cannot read", "missing.yaml"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The row of `policy` in a table on stdout, split on whitespace.
fn row(out: &Output, policy: &str) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cols| cols.get(1).map(String::as_str) == Some(policy))
        .unwrap_or_else(|| panic!("no row {policy}: {out:?}"))
}

#[test]
fn the_capacity_knobs_are_the_users_to_set_and_bad_ones_are_one_line_and_exit_2() {
    let capacity = repo("deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml")
        .display()
        .to_string();
    let scenario = repo("scenarios/step.yaml").display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["--hpa", &capacity, "--scenario", &scenario, "--no-report"];
        args.extend_from_slice(extra);
        simulate(&args)
    };
    let shipped = run(&[]);
    assert!(shipped.status.success(), "{shipped:?}");
    // The shipped knobs given by hand are the shipped run.
    let same = run(&["--capacity-utilisation", "1", "--capacity-drain", "30s"]);
    assert_eq!(same.stdout, shipped.stdout);
    // More headroom and a faster drain: less wait, more worker-seconds (p95 is the 5th word,
    // worker-s the 12th: "within SLO" is three).
    let eager = run(&["--capacity-utilisation", "0.5", "--capacity-drain", "10s"]);
    assert!(eager.status.success(), "{eager:?}");
    let (a, b) = (row(&shipped, "hpa"), row(&eager, "hpa"));
    let num = |r: &[String], i: usize| r[i].parse::<f64>().unwrap();
    assert!(num(&b, 4) < num(&a, 4), "p95 wait: {a:?} vs {b:?}");
    assert!(num(&b, 11) > num(&a, 11), "worker-seconds: {a:?} vs {b:?}");

    for (extra, wanted) in [
        (
            &["--capacity-utilisation", "1.5"][..],
            "target utilisation 1.5 is not in (0, 1]",
        ),
        (
            &["--capacity-utilisation", "NaN"][..],
            "target utilisation NaN",
        ),
        (
            &["--capacity-drain", "0s"][..],
            "drain time 0 s is not positive",
        ),
        (&["--capacity-drain", "soon"][..], "--capacity-drain"),
        (
            &["--capacity-utilisation", "most"][..],
            "--capacity-utilisation",
        ),
    ] {
        assert_one_line_exit_2(&run(extra), &[wanted]);
    }
    // Knobs with no capacity HPA to apply them to are a mistake, not silently ignored.
    let queue_length = repo("deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml")
        .display()
        .to_string();
    let out = simulate(&[
        "--hpa",
        &queue_length,
        "--scenario",
        &scenario,
        "--no-report",
        "--capacity-drain",
        "10s",
    ]);
    assert_one_line_exit_2(&out, &["warren_workers_needed"]);
}

#[test]
fn simulate_names_two_hpa_yaml_by_folder_and_writes_an_index_over_the_scenarios() {
    let dir = temp_dir("index");
    let queue_length = repo("deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml");
    let capacity = repo("deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml");
    let burst = repo("scenarios/burst.yaml");
    let demo = repo("scenarios/demo.yaml");
    let args = [
        "--hpa",
        queue_length.to_str().unwrap(),
        "--hpa",
        capacity.to_str().unwrap(),
        "--scenario",
        burst.to_str().unwrap(),
        "--scenario",
        demo.to_str().unwrap(),
        "--report-dir",
        dir.to_str().unwrap(),
    ];
    let out = simulate(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for policy in ["prometheus-adapter/hpa", "prometheus-adapter-capacity/hpa"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(policy)),
            "no row for {policy}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("hpa-2"), "{stdout}");
    assert!(
        stdout.contains(&format!("report: {}", dir.join("index.html").display())),
        "{stdout}"
    );
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    for scenario in ["burst", "demo"] {
        assert!(
            index.contains(&format!(
                "<a href=\"{scenario}/index.html\">{scenario}</a>: "
            )),
            "{index}"
        );
    }
    assert!(index.contains("id=\"comparison\""), "{index}");
    assert!(
        index.contains("<td>prometheus-adapter-capacity/hpa</td>"),
        "{index}"
    );
    // The scenario's description is a sentence: a full stop before "Simulated".
    let page = std::fs::read_to_string(dir.join("burst/index.html")).unwrap();
    assert!(
        page.contains("5 s jobs. Simulated "),
        "the subtitle's full stop"
    );
    // The captions say what the comparison draws: no /readyz line for several runs.
    assert!(
        page.contains("desired count (thin dashed)"),
        "the workers caption"
    );
    assert!(
        !page.contains("answering /readyz"),
        "a caption for a line not drawn"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_cut_off_with_workers_still_up_is_noted_on_its_page() {
    // The original HPA waits 300 s before it scales down; the demo's scenario ends at 375 s.
    let dir = temp_dir("cut-off");
    let original = repo("scenarios/policies/original-hpa.yaml");
    let demo = repo("scenarios/demo.yaml");
    let out = simulate(&[
        "--hpa",
        original.to_str().unwrap(),
        "--scenario",
        demo.to_str().unwrap(),
        "--report-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(dir.join("demo/index.html")).unwrap();
    assert!(
        page.contains("original-hpa: the run is cut off at ") && page.contains(" workers still up"),
        "no cut-off note"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_broker_estimate_is_simulated_for_workers_that_export_nothing() {
    let capacity = repo("deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml")
        .display()
        .to_string();
    let scenario = repo("scenarios/step.yaml").display().to_string();
    let run = |estimate: &str| {
        simulate(&[
            "--hpa",
            &capacity,
            "--scenario",
            &scenario,
            "--no-report",
            "--capacity-estimate",
            estimate,
        ])
    };
    let histogram = run("histogram");
    let broker = run("broker");
    assert!(broker.status.success(), "{broker:?}");
    // The same jobs, sized from other inputs: the broker's estimate lags the histogram's
    // (Little's law over 5 minutes of counts), so the step is met later.
    let (h, b) = (row(&histogram, "hpa"), row(&broker, "hpa"));
    assert_eq!(h[2], b[2], "jobs");
    assert_ne!(
        h[4..],
        b[4..],
        "the estimate changed nothing: {h:?} vs {b:?}"
    );
    // Asked of a policy with no capacity metric, it is a mistake, not ignored.
    let queue_length = repo("deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml")
        .display()
        .to_string();
    let out = simulate(&[
        "--hpa",
        &queue_length,
        "--scenario",
        &scenario,
        "--no-report",
        "--capacity-estimate",
        "broker",
    ]);
    assert_one_line_exit_2(
        &out,
        &["--capacity-estimate broker", "warren_workers_needed"],
    );
}

#[test]
fn a_scaledobject_paused_for_scale_out_is_predicted_not_to_scale_out() {
    let dir = temp_dir("paused");
    std::fs::create_dir_all(&dir).expect("dir");
    let overlay = repo("deploy/kubernetes/overlays/keda/scaledobject.yaml");
    let keda = std::fs::read_to_string(&overlay).expect("so");
    let paused = dir.join("paused.yaml");
    std::fs::write(
        &paused,
        keda.replace(
            "  namespace: warren\n",
            "  namespace: warren\n  annotations:\n    autoscaling.keda.sh/paused-scale-out: \"true\"\n",
        ),
    )
    .expect("write");
    let out = simulate(&[
        "--scaledobject",
        &overlay.display().to_string(),
        "--scaledobject",
        &paused.display().to_string(),
        "--scenario",
        &repo("scenarios/burst.yaml").display().to_string(),
        "--no-report",
    ]);
    assert!(out.status.success(), "{out:?}");
    // Peak workers is the 15th word ("within SLO" is three).
    let peak = |policy: &str| row(&out, policy)[14].parse::<u32>().expect("peak");
    assert!(peak("scaledobject") > 1, "{out:?}");
    assert_eq!(peak("paused"), 1, "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_keda_capacity_overlay_gives_the_figures_of_its_hpa_twin() {
    let hpa = repo("deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml");
    let so = repo("deploy/kubernetes/overlays/keda-capacity/scaledobject.yaml");
    for scenario in ["step", "burst", "demo"] {
        let out = simulate(&[
            "--hpa",
            &hpa.display().to_string(),
            "--scaledobject",
            &so.display().to_string(),
            "--scenario",
            &repo(&format!("scenarios/{scenario}.yaml"))
                .display()
                .to_string(),
            "--no-report",
        ]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            row(&out, "hpa")[2..],
            row(&out, "scaledobject")[2..],
            "{scenario}"
        );
    }
}
