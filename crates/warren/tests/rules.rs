//! `warren rules`, the real binary: the repository's own rules are what it prints; for a queue
//! of the user's it prints a complete set that promtool and the HPA engine accept; bad input is
//! one line and exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warren::whatif::capacity_rules::MARKER;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn rules(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("rules")
        .args(args)
        .output()
        .expect("warren runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "warren rules failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-rules-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn promtool_check(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules", file])
        .current_dir(dir)
        .output()
        .expect("promtool is missing: scripts/setup installs Debian's prometheus package");
    assert!(
        out.status.success(),
        "promtool check rules {file}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_repositorys_rules_are_what_warren_rules_prints_for_orders() {
    let shipped =
        std::fs::read_to_string(repo("deploy/kubernetes/base/prometheus/rules.yml")).unwrap();
    let (_, generated) = shipped
        .split_once(&format!("{MARKER}\n"))
        .expect("rules.yml has the generated part's marker line");
    let printed = stdout(&rules(&[
        "--queue",
        "Orders",
        "--histogram",
        "job_duration_seconds",
        "--only",
        "rules",
    ]));
    let printed = printed.strip_prefix("groups:\n").unwrap();
    assert!(
        generated == printed,
        "deploy/kubernetes/base/prometheus/rules.yml differs from `warren rules` below its marker; \
         replace everything below the marker with `target/debug/warren rules --queue Orders \
         --histogram job_duration_seconds --only rules | tail -n +2`"
    );
}

#[test]
fn for_a_queue_of_the_users_it_prints_rules_a_prometheus_rule_an_hpa_and_a_scaled_object() {
    let dir = temp_dir("foreign");
    let args = [
        "--queue",
        "emails",
        "--vhost",
        "shop",
        "--deployment",
        "email-workers",
        "--namespace",
        "shop",
        "--min",
        "1",
        "--max",
        "8",
        "--concurrency",
        "4",
        "--histogram",
        "email_seconds{app=\"emails\"}",
    ];
    let only = |what: &str| {
        let mut a = args.to_vec();
        a.extend(["--only", what]);
        stdout(&rules(&a))
    };
    // The rules: the generic group and the queue's own (its concurrency and histogram).
    let rules_text = only("rules");
    promtool_check(&dir, "rules.yml", &rules_text);
    let doc: serde_yaml::Value = serde_yaml::from_str(&rules_text).unwrap();
    let groups = doc["groups"].as_sequence().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["warren-capacity", "warren-capacity:shop:emails"]);
    let own = serde_yaml::to_string(&groups[1]).unwrap();
    assert!(
        own.contains("email_seconds_sum{app=\"emails\"}[5m]"),
        "{own}"
    );
    assert!(own.contains("vector(4)"), "{own}");
    // The generic group alone serves a queue with nothing of its own.
    let generic = only("generic-rules");
    promtool_check(&dir, "generic.yml", &generic);
    assert!(!generic.contains("emails"), "{generic}");
    // The PrometheusRules hold the same groups: the generic one, and the queue's own in an
    // object of its own (another queue's set does not replace it).
    let text = only("prometheus-rule");
    let objects: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["warren-capacity", "warren-capacity-shop-emails"]);
    for (object, group) in objects.iter().zip(groups) {
        assert_eq!(object["kind"], "PrometheusRule");
        assert_eq!(object["metadata"]["namespace"], "shop");
        assert_eq!(&object["spec"]["groups"][0], group);
    }
    // The HPA: valid for the engine warren autoscale and the simulator run, on the queue.
    let hpa = only("hpa");
    let engine = warren_hpa::Autoscaler::from_yaml(&hpa).expect("a valid HPA");
    let spec = &engine.hpa().spec;
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 8));
    assert_eq!(spec.scale_target_ref.name, "email-workers");
    let metric = &engine.metric_specs()[0];
    let external = metric.external.as_ref().unwrap();
    assert_eq!(external.metric.name, "warren_workers_needed");
    let labels = external
        .metric
        .selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref()
        .unwrap();
    assert_eq!(labels["queue"], "emails");
    assert_eq!(labels["vhost"], "shop");
    // The ScaledObject: the same bounds and the queue's query.
    let so: serde_yaml::Value = serde_yaml::from_str(&only("scaled-object")).unwrap();
    assert_eq!(so["kind"], "ScaledObject");
    assert_eq!(so["spec"]["scaleTargetRef"]["name"], "email-workers");
    assert_eq!(so["spec"]["maxReplicaCount"], 8);
    assert_eq!(
        so["spec"]["triggers"][0]["metadata"]["query"],
        r#"max(warren_workers_needed{queue="emails",vhost="shop"})"#
    );
    // And `all` holds each of them.
    let all = only("all");
    for part in [&rules_text, &hpa] {
        assert!(all.contains(part.as_str()), "all misses a part:\n{part}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_options_are_one_line_and_exit_2() {
    for (args, says) in [
        (&["--min", "5", "--max", "2"][..], "--min 5 and --max 2"),
        (&["--histogram", "9lives"][..], "is not a metric name"),
        (&["--utilisation", "1.5"][..], "target utilisation"),
        (&["--concurrency", "0"][..], "concurrency per consumer"),
        (&["--slo", "0s"][..], "--slo must be above 0"),
        (&["--slo", "soon"][..], "--slo"),
        (&["--slo", "5s", "--utilisation", "0.8"][..], "--slo"),
    ] {
        let out = rules(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// The beta `warren rules --slo` wrote into the queue's group.
fn beta_of(rules_text: &str) -> f64 {
    let doc: serde_yaml::Value = serde_yaml::from_str(rules_text).unwrap();
    let expr = doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|g| g["name"].as_str() == Some("warren-capacity:shop:emails"))
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .find(|r| r["record"].as_str() == Some("warren_capacity_beta"))
        .unwrap_or_else(|| panic!("no beta in the queue's group:\n{rules_text}"))["expr"]
        .as_str()
        .unwrap()
        .to_owned();
    expr.trim()
        .strip_prefix("vector(")
        .and_then(|e| e.strip_suffix(')'))
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("{expr}"))
}

#[test]
fn slo_sets_the_queues_beta_by_erlang_c_at_its_design_load() {
    let dir = temp_dir("slo");
    let print = |slo: &str, max: &str| {
        stdout(&rules(&[
            "--queue", "emails", "--vhost", "shop", "--slo", slo, "--max", max, "--only", "rules",
        ]))
    };
    let three = print("3s", "10");
    promtool_check(&dir, "slo.yml", &three);
    // The queue's group holds utilisation 1 and the beta of Knobs::for_slo at 0.8 x max
    // busy workers of the default work time.
    assert!(
        three.contains("- record: warren_capacity_target_utilisation\n        expr: vector(1)\n        labels:"),
        "{three}"
    );
    let derived = warren_policy::capacity::Knobs::default()
        .for_slo(3.0, 8.0, 5.0, warren_policy::capacity::DESIGN_WORK_SCV)
        .unwrap()
        .beta;
    assert!((beta_of(&three) - derived).abs() < 1e-9, "{three}");
    // A longer SLO needs less headroom; a larger pool's design load, less beta for the same
    // SLO (the headroom grows as the square root of the busy workers).
    assert!(beta_of(&print("20s", "10")) < beta_of(&three));
    assert!(beta_of(&print("3s", "40")) < beta_of(&three));
    let _ = std::fs::remove_dir_all(&dir);
}
