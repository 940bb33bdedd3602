//! `warren recommend` on the real binary: the manifest it prints is a valid HPA, and it is the
//! candidate of fewest worker-seconds among those its table marks as meeting the SLO.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::process::Command;

const STEADY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scenarios/suite/steady.yaml"
);
const BASE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml"
);

fn recommend(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("recommend")
        .args(["--hpa", BASE])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn prints_the_cheapest_manifest_that_meets_the_slo() {
    let dir = std::env::temp_dir().join(format!("warren-test-recommend-{}", std::process::id()));
    let (code, stdout, stderr) = recommend(&[
        "--scenario",
        STEADY,
        "--slo",
        "10s",
        "--report-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    // A manifest the HPA engine (and so the API server's rules) accepts: stdout itself for a
    // queue-length winner; for a capacity one, the HPA among the documents of the complete
    // set (its rules with the chosen knobs, the adapter rule, the ScaledObject).
    let hpa_doc = stdout
        .split("\n---\n")
        .find(|d| d.contains("kind: HorizontalPodAutoscaler"))
        .unwrap_or_else(|| panic!("no HPA in {stdout}"));
    let hpa = warren_hpa::Autoscaler::from_yaml(hpa_doc).unwrap();
    if stdout.contains("warren_workers_needed") {
        for part in [
            "name: warren-capacity\n",
            "kind: PrometheusRule",
            "externalRules:",
            "kind: ScaledObject",
            "warren_capacity_drain_seconds",
        ] {
            assert!(
                stdout.contains(part),
                "the capacity set misses {part}:\n{stdout}"
            );
        }
    }
    assert_eq!(hpa.hpa().spec.max_replicas, 10);
    // The table: | family | settings | worst p95 | worker-seconds | meets |
    let rows: Vec<Vec<String>> = stderr
        .lines()
        .filter(|l| l.starts_with("| queue length |") || l.starts_with("| capacity |"))
        .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    assert_eq!(rows.len(), 104, "every candidate is in the table");
    // The square-root candidates carry the beta Erlang C gives for the 10 s SLO at 8 busy
    // workers (0.8 x maxReplicas 10) of the default work time.
    let beta = warren_policy::capacity::Knobs::default()
        .for_slo(10.0, 8.0, 5.0, warren_policy::capacity::DESIGN_WORK_SCV)
        .unwrap()
        .beta;
    let named = format!("beta={beta:.3} (the SLO's)");
    assert_eq!(
        rows.iter().filter(|r| r[2].starts_with(&named)).count(),
        16,
        "{named} in 4 drain times x 2 minReplicas x 2 windows:\n{stderr}"
    );
    let meeting: Vec<&Vec<String>> = rows.iter().filter(|r| r[5] == "yes").collect();
    assert!(!meeting.is_empty());
    for r in &meeting {
        assert!(r[3].parse::<f64>().unwrap() <= 10.0, "{r:?}");
    }
    let cheapest = meeting
        .iter()
        .min_by(|a, b| {
            let ws = |r: &Vec<String>| r[4].parse::<f64>().unwrap();
            ws(a).total_cmp(&ws(b))
        })
        .unwrap();
    let header = stdout.lines().next().unwrap();
    assert!(
        header.contains(&format!("{} ({})", cheapest[1], cheapest[2])),
        "{header} is not the cheapest {cheapest:?}"
    );
    for file in ["hpa.yaml", "candidates.md", "fronts.svg"] {
        assert!(dir.join(file).is_file(), "{file} missing from the report");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_slo_nothing_meets_is_an_error_and_prints_no_manifest() {
    let (code, stdout, stderr) = recommend(&["--scenario", STEADY, "--slo", "1ms"]);
    assert_ne!(code, Some(0));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("no candidate keeps the p95 queue wait within"),
        "{stderr}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    for args in [
        &["--scenario", STEADY, "--slo", "0s"][..],
        &["--scenario", "/nonexistent.yaml", "--slo", "10s"][..],
        &[
            "--scenario",
            STEADY,
            "--slo",
            "10s",
            "--capacity-estimate",
            "guess",
        ][..],
    ] {
        let (code, stdout, stderr) = recommend(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stdout.is_empty());
    }
}

#[test]
fn with_the_brokers_estimate_the_capacity_candidates_are_judged_on_it() {
    // A queue whose workers export nothing: the capacity candidates run on the broker's
    // estimate (warren_policy::estimator), and some of their results differ from the histogram's.
    let table = |estimate: &str| {
        let (code, _, stderr) = recommend(&[
            "--scenario",
            STEADY,
            "--slo",
            "10s",
            "--capacity-estimate",
            estimate,
        ]);
        assert_eq!(code, Some(0), "{stderr}");
        stderr
            .lines()
            .filter(|l| l.starts_with("| capacity |"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (histogram, broker) = (table("histogram"), table("broker"));
    assert_eq!(histogram.len(), broker.len());
    assert_ne!(
        histogram, broker,
        "the broker's estimate changed no capacity result"
    );
}

#[test]
fn runs_from_any_directory_on_its_built_in_base_and_keeps_progress_to_one_line_off_a_terminal() {
    // No checkout here, no --hpa: the base is the capacity overlay's manifest, compiled in.
    let cwd =
        std::env::temp_dir().join(format!("warren-test-recommend-cwd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cwd);
    std::fs::create_dir_all(&cwd).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["recommend", "--scenario", STEADY, "--slo", "10s"])
        .current_dir(&cwd)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The HPA among the documents printed (a capacity winner comes with its complete set).
    let hpa_doc = stdout
        .split("\n---\n")
        .find(|d| d.contains("kind: HorizontalPodAutoscaler"))
        .unwrap_or_else(|| panic!("no HPA in {stdout}"));
    let hpa = warren_hpa::Autoscaler::from_yaml(hpa_doc).unwrap();
    // The capacity overlay's name and maxReplicas, kept from the base.
    assert_eq!(hpa.hpa().spec.max_replicas, 10);
    assert_eq!(
        hpa.hpa().metadata.name.as_deref(),
        Some("warren-worker"),
        "{stdout}"
    );
    // stderr is a pipe here: no carriage returns, one progress line.
    assert!(!stderr.contains('\r'), "{stderr:?}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warren recommend: "))
        .collect();
    assert_eq!(
        progress,
        ["warren recommend: 104 runs (104 candidates x 1 scenarios)"],
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&cwd);
}
