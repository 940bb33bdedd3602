//! A ScaledObject simulated as KEDA runs it, held to KEDA's own expected values: each test names
//! the KEDA test (kedacore/keda at 8b4f083, v2.20 line, 2026-08-20) its cases come from.

use warren_sim::keda::{
    metric_name, KedaTrigger, ManagementStats, QueueCounters, QueueStatus, RabbitMode,
    RabbitProtocol, RabbitTrigger,
};
use warren_sim::{run, PolicySpec, ScaleCause, Scenario};

/// A ScaledObject on queue Orders with `metadata` (flow-mapping entries) for its one trigger,
/// and `extra` lines under `spec`.
fn so(annotations: &str, spec_extra: &str, metadata: &str) -> String {
    format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: w\n  annotations: {{{annotations}}}\nspec:\n  scaleTargetRef: {{ name: worker }}\n{spec_extra}  triggers:\n    - type: rabbitmq\n      metadata: {{ {metadata} }}\n"
    )
}

fn policy(text: &str) -> Result<PolicySpec, String> {
    PolicySpec::from_scaledobject_yaml("so", text).map_err(|e| e.to_string())
}

fn trigger(mode: RabbitMode, activation_value: f64) -> RabbitTrigger {
    RabbitTrigger {
        mode,
        value: 100.0,
        activation_value,
        protocol: RabbitProtocol::Http,
        exclude_unacknowledged: false,
        use_cached_metrics: false,
    }
}

fn status(messages: f64, publish_rate: f64, deliver_get_rate: f64) -> QueueStatus {
    QueueStatus {
        messages,
        publish_rate,
        deliver_get_rate,
    }
}

// ---------------------------------------------------------------------------------------------
// The scaler: GetMetricsAndActivity

/// `TestExpectedQueueConsumptionTime` (pkg/scalers/rabbitmq_scaler_test.go): value 1,
/// activationValue 1, each response's metric in thousandths and activity.
#[test]
fn expected_queue_consumption_time_gives_keda_s_metric_and_activity() {
    let cases = [
        ("empty idle queue", status(0.0, 0.0, 0.0), 0, false),
        (
            "empty queue, delivery decaying",
            status(0.0, 0.0, 2.0),
            0,
            false,
        ),
        (
            "backlog without consumers",
            status(10.0, 3.0, 0.0),
            1000,
            true,
        ),
        ("backlog with consumers", status(10.0, 3.0, 2.0), 5500, true),
        ("draining backlog", status(4.0, 0.0, 2.0), 1000, false),
    ];
    let t = trigger(RabbitMode::ExpectedQueueConsumptionTime, 1.0);
    for (name, q, milli, active) in cases {
        let (metric, is_active) = t.metric_and_activity(q);
        assert_eq!(
            ((metric * 1000.0).round() as i64, is_active),
            (milli, active),
            "{name}"
        );
    }
}

/// `TestGetQueueInfo`'s `testQueueInfoTestData` (pkg/scalers/rabbitmq_scaler_test.go): over
/// HTTP, activationValue 0, the activity KEDA expects for QueueLength, MessageRate and
/// DeliverGetRate; `messages` is what the API answers (ready + unacked).
#[test]
fn queue_length_message_rate_and_deliver_get_rate_activity_is_keda_s() {
    use RabbitMode::*;
    let cases = [
        (QueueLength, status(4.0, 0.0, 0.0), true),
        (QueueLength, status(1.0, 0.0, 0.0), true),
        (QueueLength, status(0.0, 0.0, 0.0), false),
        (QueueLength, status(4.0, 1.4, 0.8), true),
        (QueueLength, status(0.0, 1.4, 2.0), false),
        (QueueLength, status(0.0, 1.4, 0.0), false),
        (MessageRate, status(4.0, 0.0, 1.3), true),
        (MessageRate, status(1.0, 0.0, 1.0), true),
        (MessageRate, status(0.0, 0.0, 0.0), false),
        (MessageRate, status(4.0, 1.4, 1.3), true),
        (MessageRate, status(0.0, 1.4, 0.0), true),
        (DeliverGetRate, status(30.0, 5.0, 1.0), true),
        (DeliverGetRate, status(20.0, 0.0, 10.0), true),
        (DeliverGetRate, status(10.0, 0.0, 12.5), true),
        (DeliverGetRate, status(0.0, 0.0, 0.0), false),
        (DeliverGetRate, status(3.0, 0.0, 18.5), true),
    ];
    for (mode, q, active) in cases {
        let (metric, is_active) = trigger(mode, 0.0).metric_and_activity(q);
        assert_eq!(is_active, active, "{mode:?} {q:?}");
        let expected = match mode {
            QueueLength => q.messages,
            MessageRate => q.publish_rate,
            _ => q.deliver_get_rate,
        };
        assert_eq!(metric, expected, "{mode:?} {q:?}");
    }
    // PublishedToDeliveredRatio, from GetMetricsAndActivity's branch: publishing with no
    // delivery reports the activation value and is active.
    let ratio = trigger(PublishedToDeliveredRatio, 2.0);
    assert_eq!(
        ratio.metric_and_activity(status(5.0, 3.0, 0.0)),
        (2.0, true)
    );
    assert_eq!(
        ratio.metric_and_activity(status(5.0, 3.0, 1.0)),
        (3.0, true)
    );
    assert_eq!(
        ratio.metric_and_activity(status(5.0, 1.0, 1.0)),
        (1.0, false)
    );
    assert_eq!(
        ratio.metric_and_activity(status(5.0, 0.0, 1.0)),
        (0.0, false)
    );
}

/// The management API's rates: the last two samples' difference over their interval, answered
/// for 1.5 s after the last sample and 0 after that (as measured on RabbitMQ 3.10.8); the counts
/// the last sample's, ready only with `excludeUnacknowledged` (`getQueueStatus`).
#[test]
fn the_management_api_reports_the_last_samples_rates_and_counts() {
    let mut stats = ManagementStats::default();
    assert_eq!(stats.status(0.0, false), QueueStatus::default());
    let sample = |at_secs, ready, unacked, published_total, delivered_total| QueueCounters {
        at_secs,
        ready,
        unacked,
        published_total,
        delivered_total,
    };
    stats.record(sample(0.0, 3, 1, 100, 90));
    // One sample: counts, no rate yet (no message_stats).
    assert_eq!(stats.status(0.5, false), status(4.0, 0.0, 0.0));
    stats.record(sample(5.0, 7, 2, 150, 110));
    assert_eq!(stats.status(6.0, false), status(9.0, 10.0, 4.0));
    assert_eq!(stats.status(6.4, true), status(7.0, 10.0, 4.0));
    // 1.5 s after the sample the rates read 0; the counts stay.
    assert_eq!(stats.status(6.5, false), status(9.0, 0.0, 0.0));
    assert_eq!(stats.status(9.9, false), status(9.0, 0.0, 0.0));
}

// ---------------------------------------------------------------------------------------------
// The scaler's metadata: parseRabbitMQMetadata and Validate

/// `TestRabbitMQParseMetadata`'s `testRabbitMQMetadata` (pkg/scalers/rabbitmq_scaler_test.go):
/// every case KEDA refuses is refused naming the field; every case it accepts is accepted,
/// except where the simulator cannot see what KEDA would read, refused naming that field.
#[test]
fn keda_s_metadata_cases_are_accepted_or_refused_as_keda_does() {
    // (metadata, Ok or the field the refusal names)
    let cases: [(&str, Result<(), &str>); 30] = [
        ("", Err("metadata.queueName")),
        (
            r#"queueLength: "10", queueName: sample, hostFromEnv: H, protocol: amqp"#,
            Ok(()),
        ),
        (
            r#"queueLength: "AA", queueName: sample, hostFromEnv: H, protocol: amqp"#,
            Err("metadata.queueLength"),
        ),
        (
            r#"queueLength: "10", hostFromEnv: H"#,
            Err("metadata.queueName"),
        ),
        (
            r#"queueLength: "10", queueName: sample, host: H, protocol: http"#,
            Ok(()),
        ),
        // Auto protocol with the host out of sight: KEDA reads its scheme, the simulator cannot.
        (
            r#"queueName: sample, hostFromEnv: H"#,
            Err("metadata.protocol"),
        ),
        (
            r#"queueName: sample, host: "something://""#,
            Err("metadata.host"),
        ),
        (r#"queueName: sample, host: "http://""#, Ok(())),
        (r#"queueName: sample, host: "https://""#, Ok(())),
        (
            r#"queueLength: "10", mode: QueueLength, queueName: sample, host: "https://""#,
            Err("metadata.queueLength"),
        ),
        (
            r#"queueLength: "10", value: "20", queueName: sample, host: "https://""#,
            Err("metadata.queueLength"),
        ),
        (
            r#"queueLength: "10", mode: QueueLength, value: "20", queueName: sample, host: "https://""#,
            Err("metadata.queueLength"),
        ),
        (
            r#"mode: QueueLength, queueName: sample, host: "https://""#,
            Err("metadata.value"),
        ),
        (
            r#"value: "20", queueName: sample, host: "https://""#,
            Err("metadata.mode"),
        ),
        (
            r#"mode: QueueLength, value: "20", queueName: sample, host: "https://""#,
            Ok(()),
        ),
        (
            r#"mode: Feelings, value: "20", queueName: sample, host: "https://""#,
            Err("metadata.mode"),
        ),
        (
            r#"mode: QueueLength, value: lots, queueName: sample, host: "https://""#,
            Err("metadata.value"),
        ),
        (
            r#"mode: QueueLength, value: "20", queueName: sample, host: "amqps://""#,
            Ok(()),
        ),
        (
            r#"mode: MessageRate, value: "1000", queueName: sample, host: "amqps://""#,
            Err("metadata.mode"),
        ),
        (
            r#"mode: MessageRate, value: "1000", queueName: sample, host: "http://""#,
            Ok(()),
        ),
        (
            r#"mode: DeliverGetRate, value: "1000", queueName: sample, host: "amqp://""#,
            Err("metadata.mode"),
        ),
        (
            r#"mode: DeliverGetRate, value: "1000", queueName: sample, host: "https://""#,
            Ok(()),
        ),
        (
            r#"queueName: sample, host: "amqps://", useRegex: "true""#,
            Err("metadata.useRegex"),
        ),
        // KEDA accepts a regex over HTTP; the scenario has one queue.
        (
            r#"queueName: sample, host: "http://", useRegex: "true""#,
            Err("metadata.useRegex"),
        ),
        (
            r#"mode: QueueLength, value: "1000", queueName: sample, host: "http://", timeout: "1000""#,
            Ok(()),
        ),
        (
            r#"mode: QueueLength, value: "1000", queueName: sample, host: "http://", timeout: "-10""#,
            Err("metadata.timeout"),
        ),
        (
            r#"mode: QueueLength, value: "1000", queueName: sample, host: "amqp://", timeout: "10""#,
            Err("metadata.timeout"),
        ),
        (
            r#"activationValue: AA, queueLength: "10", queueName: sample, host: "amqp://""#,
            Err("metadata.activationValue"),
        ),
        (
            r#"mode: QueueLength, value: "1000", queueName: sample, host: "amqp://", excludeUnacknowledged: "true""#,
            Err("metadata.excludeUnacknowledged"),
        ),
        (
            r#"queueName: sample, host: "https://", unsafeSsl: random"#,
            Err("metadata.unsafeSsl"),
        ),
    ];
    for (metadata, expected) in cases {
        let got = policy(&so("", "", metadata));
        match (expected, got) {
            (Ok(()), Ok(_)) => {}
            (Err(field), Err(e)) => {
                let path = format!("spec.triggers[0].{field}");
                assert!(e.starts_with(&path), "{metadata}: {e} should name {path}");
                assert!(!e.contains('\n'), "{e}");
            }
            (expected, got) => panic!("{metadata}: expected {expected:?}, got {:?}", got.err()),
        }
    }
}

/// `TestParseDefaultQueueLength` and `validateTrigger`: nothing given is QueueLength 20; a
/// `queueLength` is QueueLength at that value; the target goes to the HPA in thousandths
/// (`GetMetricTargetMili`), AverageValue unless `metricType` says Value.
#[test]
fn defaults_and_targets_are_keda_s() {
    let hpa = |metadata: &str, trigger_extra: &str| {
        let text = so("", "", metadata).replace(
            "      metadata:",
            &format!("{trigger_extra}      metadata:"),
        );
        policy(&text)
            .expect("valid")
            .hpa_yaml(&Default::default())
            .expect("an HPA")
    };
    let default = hpa("queueName: q, host: \"amqp://x\"", "");
    assert!(default.contains("averageValue: '20.000'"), "{default}");
    assert!(default.contains("name: s0-rabbitmq-q"), "{default}");
    assert!(default.contains("minReplicas: 1"), "{default}");
    assert!(default.contains("maxReplicas: 100"), "{default}");
    let legacy = hpa("queueName: q, host: \"amqp://x\", queueLength: \"7\"", "");
    assert!(legacy.contains("averageValue: '7.000'"), "{legacy}");
    let value = hpa(
        "queueName: q, host: \"http://x\", mode: MessageRate, value: \"2.5\"",
        "      metricType: Value\n",
    );
    assert!(value.contains("type: Value"), "{value}");
    assert!(value.contains("value: '2.500'"), "{value}");
    let loop_ = policy(&so("", "", "queueName: q, host: \"amqp://x\""))
        .expect("valid")
        .keda_loop()
        .cloned()
        .expect("running");
    assert_eq!(
        (
            loop_.polling_secs,
            loop_.cooldown_secs,
            loop_.initial_cooldown_secs,
            loop_.min_replica_count
        ),
        (30.0, 300.0, 0.0, 0)
    );
    let KedaTrigger::Rabbit(t) = loop_.triggers[0] else {
        panic!("a rabbitmq trigger: {loop_:?}");
    };
    assert_eq!((t.mode, t.value), (RabbitMode::QueueLength, 20.0));
}

/// `TestRabbitMQGetMetricSpecForScaling` (pkg/scalers/rabbitmq_scaler_test.go): index 0 of
/// queue "sample" is `s0-rabbitmq-sample`, index 1 of "namespace/name" is
/// `s1-rabbitmq-namespace-2Fname` (`url.QueryEscape`, then `NormalizeString`).
#[test]
fn metric_names_are_escaped_as_keda_escapes_them() {
    assert_eq!(metric_name(0, "sample"), "s0-rabbitmq-sample");
    assert_eq!(
        metric_name(1, "namespace/name"),
        "s1-rabbitmq-namespace-2Fname"
    );
    assert_eq!(metric_name(0, "a.b:c(d)"), "s0-rabbitmq-a-b-3Ac-28d-29");
    let hpa = policy(&so("", "", "queueName: namespace/name, host: \"amqp://x\""))
        .expect("valid")
        .hpa_yaml(&Default::default())
        .expect("an HPA");
    assert!(hpa.contains("name: s0-rabbitmq-namespace-2Fname"), "{hpa}");
}

/// The `http://` scheme of `host` with no `protocol` reads the management API: ready + unacked
/// (`Validate` with protocol auto, `getQueueStatus`); `amqp://` reads ready only.
#[test]
fn the_host_s_scheme_chooses_what_is_counted() {
    let s = Scenario::from_yaml(
        "description: steady work\nduration_secs: 120\nslo_secs: 60\narrivals: { pattern: constant, rate: 1 }\nwork: { distribution: fixed, secs: 2.5 }\nworkers: { initial: 3 }\n",
    )
    .expect("valid");
    let values = |host: &str| {
        let text = so(
            "",
            "  minReplicaCount: 3\n",
            &format!("queueName: Orders, host: {host:?}"),
        );
        let outcome = run(&s, &policy(&text).expect("valid")).expect("runs");
        outcome
            .decisions
            .iter()
            .skip(2)
            .map(|d| d.metric_values[0].expect("a value"))
            .collect::<Vec<_>>()
    };
    // 3 workers of 2.5 s jobs at 1 job/s: none ready, 2 or 3 in hand.
    let amqp = values("amqp://rabbitmq:5672/");
    let http = values("http://rabbitmq:15672/");
    assert!(amqp.iter().all(|v| *v == 0.0), "{amqp:?}");
    assert!(http.iter().all(|v| *v >= 2.0), "{http:?}");
}

// ---------------------------------------------------------------------------------------------
// The ScaledObject: CRD, webhook and annotation checks

/// `TestCheckReplicaCountBoundsAreValid` and `TestCheckFallbackValid`
/// (apis/keda/v1alpha1/scaledobject_types_test.go), `ValidateTriggers`, and the fields the
/// simulator cannot model: each refused naming its path, in one line.
#[test]
fn what_keda_refuses_and_what_cannot_be_simulated_is_refused_by_name() {
    let m = "queueName: Orders, host: \"amqp://x\"";
    let cases = [
        (so("", "  minReplicaCount: 5\n  maxReplicaCount: 3\n", m), "spec.minReplicaCount"),
        (so("", "  idleReplicaCount: 2\n  minReplicaCount: 2\n", m), "spec.idleReplicaCount"),
        // Without minReplicaCount the bound is 0, so any idle count is refused.
        (so("", "  idleReplicaCount: 0\n", m), "spec.idleReplicaCount"),
        (so("", "  fallback: { failureThreshold: -1, replicas: 2 }\n", m), "spec.fallback"),
        (so("", "  fallback: { failureThreshold: 3, replicas: 2, behavior: scalingModifiers }\n", m), "spec.fallback.behavior"),
        (so("", "  advanced: { scalingModifiers: { formula: \"s0 * 2\", target: \"2\" } }\n", m), "spec.advanced.scalingModifiers"),
        (so("", "  pollingInterval: 0\n", m), "spec.pollingInterval"),
        // The HPA's behavior is checked as the API server checks the generated HPA.
        (so("", "  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior: { scaleUp: { stabilizationWindowSeconds: 9999 } }\n", m), "the HPA KEDA generates: invalid HorizontalPodAutoscaler: spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.stabilizationWindowSeconds"),
        // verifyName: the name is a label value, and so is the generated HPA's.
        (so("", "", m).replace("name: w\n", &format!("name: {}\n", "w".repeat(64))), "metadata.name"),
        (so("", "", m).replace("name: w\n", &format!("name: {}\n", "w".repeat(60))), "spec.advanced.horizontalPodAutoscalerConfig.name"),
        (so("", "", m).replace("type: rabbitmq", "type: kafka"), "spec.triggers[0].type"),
        (so("", "", m).replace("type: rabbitmq", "type: rabbitmq\n      metadata: { queueName: Orders, host: \"amqp://x\", vhost: v }\n      name: x").replace("      metadata: { queueName: Orders, host: \"amqp://x\" }\n", ""), "spec.triggers[0].metadata.vhost"),
        (so("", "", m).replace("type: rabbitmq", "type: prometheus").replace(m, "serverAddress: \"http://p:9090\", query: \"sum(rate(jobs_published_total[1m]))\", threshold: \"3\""), "spec.triggers[0].metadata.query"),
        (so("", "", m).replace("type: rabbitmq", "type: prometheus").replace(m, "serverAddress: \"http://p:9090\", query: \"max(warren_workers_needed)\""), "spec.triggers[0].metadata.threshold"),
        (so("", "", m).replace("type: rabbitmq", "type: rabbitmq\n      metricType: Utilization"), "spec.triggers[0].metricType"),
        (so("\"autoscaling.keda.sh/paused-replicas\": \"two\"", "", m), "metadata.annotations.autoscaling.keda.sh/paused-replicas"),
        (so("\"autoscaling.keda.sh/pause\": \"true\"", "", m), "metadata.annotations.autoscaling.keda.sh/pause"),
        (so("", "", m).replace("      metadata:", "      name: a\n      metadata:") + "    - type: rabbitmq\n      name: a\n      metadata: { queueName: Orders, host: \"http://x\", mode: MessageRate, value: \"5\" }\n", "spec.triggers[1].name"),
        (so("", "", m) + "    - type: rabbitmq\n      metadata: { queueName: Invoices, host: \"amqp://x\" }\n", "spec.triggers[1].metadata.queueName"),
    ];
    for (text, path) in cases {
        let e = policy(&text).expect_err(path);
        assert!(e.starts_with(path), "{e} should name {path}");
        assert!(!e.contains('\n'), "{e}");
    }
    // Accepted: a valid idle count, a static fallback (a simulated broker never fails).
    assert!(policy(&so("", "  idleReplicaCount: 0\n  minReplicaCount: 2\n", m)).is_ok());
    assert!(policy(&so(
        "",
        "  fallback: { failureThreshold: 3, replicas: 6 }\n",
        m
    ))
    .is_ok());
}

// ---------------------------------------------------------------------------------------------
// The scale loop: RequestScale

/// The loop of a ScaledObject with these annotations and spec lines.
fn scale_loop(annotations: &str, spec_extra: &str) -> warren_sim::KedaLoop {
    policy(&so(
        annotations,
        spec_extra,
        "queueName: Orders, host: \"amqp://x\"",
    ))
    .expect("valid")
    .keda_loop()
    .cloned()
    .expect("running")
}

/// pkg/scaling/executor/scale_scaledobjects_test.go, each case by its KEDA test name: the count
/// `RequestScale` sets from `current` replicas, active or not, and whether it records the time
/// as the last active one.
#[test]
fn request_scale_sets_the_counts_keda_s_executor_tests_expect() {
    let force = r#""autoscaling.keda.sh/force-activation": "true""#;
    let scale_in = r#""autoscaling.keda.sh/paused-scale-in": "true""#;
    let scale_out = r#""autoscaling.keda.sh/paused-scale-out": "true""#;
    let idle = "  idleReplicaCount: 0\n  minReplicaCount: 5\n";
    let min5 = "  minReplicaCount: 5\n";
    let min0 = "  minReplicaCount: 0\n";
    // (KEDA test, annotations, spec, active, current, expected count, last active recorded)
    let cases = [
        (
            "TestScaleToMinReplicasWhenNotActive",
            "",
            min0,
            false,
            10,
            Some(0),
            false,
        ),
        (
            "TestScaleToMinReplicasFromLowerInitialReplicaCount",
            "",
            min5,
            false,
            1,
            Some(5),
            false,
        ),
        (
            "TestScaleFromMinReplicasWhenActive",
            "",
            min0,
            true,
            0,
            Some(1),
            true,
        ),
        (
            "TestScaleToIdleReplicasWhenNotActive",
            "",
            idle,
            false,
            10,
            Some(0),
            false,
        ),
        (
            "TestScaleFromIdleToMinReplicasWhenActive",
            "",
            idle,
            true,
            0,
            Some(5),
            true,
        ),
        (
            "TestNoScaleToMinReplicasWhenNotActiveAndPauseScaleInAnnotationSet",
            scale_in,
            min0,
            false,
            10,
            None,
            false,
        ),
        (
            "TestNoScaleToIdleReplicasWhenNotActiveAndPauseScaleInAnnotationSet",
            scale_in,
            idle,
            false,
            10,
            None,
            false,
        ),
        (
            "TestScaleFromMinReplicasWhenActivationForced",
            force,
            min0,
            false,
            0,
            Some(1),
            true,
        ),
        (
            "TestNoScaleFromMinReplicasWhenActiveAndPausedScaleOutAnnotationSet",
            scale_out,
            min0,
            true,
            0,
            None,
            false,
        ),
        (
            "TestNoScaleFromIdleReplicasToMinReplicasWhenActiveAndPausedScaleOutAnnotationSet",
            scale_out,
            idle,
            true,
            0,
            None,
            false,
        ),
    ];
    for (name, annotations, spec, active, current, expected, recorded) in cases {
        let mut last_active = None;
        let got =
            scale_loop(annotations, spec).request_scale(active, current, 100.0, &mut last_active);
        assert_eq!(got.map(|(to, _)| to), expected, "{name}");
        assert_eq!(last_active.is_some(), recorded, "{name}");
    }
    // Inside the cooldown nothing moves; past it, the count goes to the minimum.
    let l = scale_loop("", "  minReplicaCount: 0\n  cooldownPeriod: 60\n");
    let mut last = Some(50.0);
    assert_eq!(l.request_scale(false, 3, 100.0, &mut last), None);
    assert_eq!(
        l.request_scale(false, 3, 111.0, &mut last),
        Some((0, ScaleCause::KedaDeactivation))
    );
}

/// `newHPAForScaledObject` (controllers/keda/hpa.go): paused-scale-in and paused-scale-out set
/// the generated HPA's `selectPolicy: Disabled`, over the user's own `Max`.
#[test]
fn pause_annotations_disable_the_generated_hpa_s_direction_over_the_user_s_policy() {
    let behavior = "  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleUp: { selectPolicy: Max, policies: [{ type: Pods, value: 4, periodSeconds: 15 }] }\n        scaleDown: { selectPolicy: Max, policies: [{ type: Percent, value: 50, periodSeconds: 15 }] }\n";
    let hpa = |annotations: &str| {
        policy(&so(
            annotations,
            behavior,
            "queueName: Orders, host: \"amqp://x\"",
        ))
        .expect("valid")
        .hpa_yaml(&Default::default())
        .expect("an HPA")
    };
    let plain = hpa("");
    assert_eq!(plain.matches("selectPolicy: Max").count(), 2, "{plain}");
    let both = hpa(
        r#""autoscaling.keda.sh/paused-scale-in": "true", "autoscaling.keda.sh/paused-scale-out": "yes""#,
    );
    // "yes" is not a Go bool: getBoolAnnotation counts it as true.
    assert_eq!(both.matches("selectPolicy: Disabled").count(), 2, "{both}");
    assert!(
        both.contains("value: 4"),
        "the user's policies stay: {both}"
    );
}

// ---------------------------------------------------------------------------------------------
// Whole runs

fn burst_scenario() -> Scenario {
    Scenario::from_yaml(
        "description: a burst\nduration_secs: 900\nslo_secs: 60\narrivals: { bursts: [{ at_secs: 100, jobs: 400 }] }\nwork: { distribution: fixed, secs: 1 }\n",
    )
    .expect("valid")
}

/// `handlePause` (controllers/keda/scaledobject_controller.go): paused-replicas deletes the HPA
/// and holds the target at that count; `TestScaleToPausedReplicasCount`.
#[test]
fn paused_replicas_holds_the_count_with_no_hpa() {
    let text = so(
        r#""autoscaling.keda.sh/paused-replicas": "3""#,
        "  minReplicaCount: 1\n  maxReplicaCount: 10\n",
        r#"queueName: Orders, host: "amqp://x", value: "5", mode: QueueLength"#,
    );
    let p = policy(&text).expect("valid");
    assert!(p.hpa_yaml(&Default::default()).is_none());
    let outcome = run(&burst_scenario(), &p).expect("runs");
    assert!(
        outcome.scale_events.is_empty(),
        "{:?}",
        outcome.scale_events
    );
    assert_eq!(outcome.totals.peak_workers, 3);
    assert!(outcome.decisions.is_empty());
}

/// A paused scale-out predicts no scale-up under a burst, paused scale-in no scale-down after
/// it; without them the same ScaledObject scales both ways.
#[test]
fn paused_scale_out_and_scale_in_hold_their_direction_through_a_burst() {
    let spec = "  minReplicaCount: 1\n  maxReplicaCount: 10\n  pollingInterval: 15\n";
    let m = r#"queueName: Orders, host: "amqp://x", value: "5", mode: QueueLength"#;
    let events = |annotations: &str| {
        run(
            &burst_scenario(),
            &policy(&so(annotations, spec, m)).expect("valid"),
        )
        .expect("runs")
        .scale_events
    };
    let free = events("");
    assert!(free.iter().any(|e| e.to > e.from) && free.iter().any(|e| e.to < e.from));
    let out = events(r#""autoscaling.keda.sh/paused-scale-out": "true""#);
    assert!(out.iter().all(|e| e.to <= e.from), "{out:?}");
    let scale_in = events(r#""autoscaling.keda.sh/paused-scale-in": "true""#);
    assert!(scale_in.iter().any(|e| e.to > e.from));
    assert!(scale_in.iter().all(|e| e.to >= e.from), "{scale_in:?}");
}

/// force-activation: at minReplicaCount 0 with an empty queue, KEDA still activates to 1 at its
/// first poll and never deactivates (`TestScaleFromMinReplicasWhenActivationForced`).
#[test]
fn force_activation_activates_an_idle_queue() {
    let s = Scenario::from_yaml(
        "description: one late job\nduration_secs: 900\nslo_secs: 60\narrivals: { bursts: [{ at_secs: 850, jobs: 1 }] }\nwork: { distribution: fixed, secs: 1 }\n",
    )
    .expect("valid");
    let text = so(
        r#""autoscaling.keda.sh/force-activation": "true""#,
        "  minReplicaCount: 0\n  cooldownPeriod: 60\n",
        r#"queueName: Orders, host: "amqp://x""#,
    );
    let outcome = run(&s, &policy(&text).expect("valid")).expect("runs");
    let first = outcome.scale_events.first().expect("activated");
    assert_eq!((first.at_secs, first.from, first.to), (0.0, 0, 1));
    assert_eq!(outcome.scale_events.len(), 1, "{:?}", outcome.scale_events);
    let without = so(
        "",
        "  minReplicaCount: 0\n  cooldownPeriod: 60\n",
        r#"queueName: Orders, host: "amqp://x""#,
    );
    let plain = run(&s, &policy(&without).expect("valid")).expect("runs");
    // Without it: nothing until the job at 850 s, activated at the poll after it.
    let first = plain.scale_events.first().expect("activated");
    assert_eq!((first.at_secs, first.to), (870.0, 1));
}

/// idleReplicaCount 0 with minReplicaCount 2: idle at the start goes to 0 (initialCooldownPeriod
/// 0), a burst brings it back to 2, then the HPA above, then 0 after the cooldown.
#[test]
fn idle_replica_count_is_the_count_between_bursts() {
    let text = so(
        "",
        "  idleReplicaCount: 0\n  minReplicaCount: 2\n  maxReplicaCount: 10\n  cooldownPeriod: 120\n",
        r#"queueName: Orders, host: "amqp://x", mode: QueueLength, value: "5""#,
    );
    let outcome = run(&burst_scenario(), &policy(&text).expect("valid")).expect("runs");
    let e = &outcome.scale_events;
    assert_eq!(
        (e[0].from, e[0].to, e[0].cause),
        (2, 0, ScaleCause::KedaDeactivation)
    );
    let up = e
        .iter()
        .find(|x| x.cause == ScaleCause::KedaActivation)
        .expect("activated");
    assert_eq!((up.at_secs, up.from, up.to), (120.0, 0, 2));
    assert!(e.iter().any(|x| x.cause == ScaleCause::Hpa && x.to > 2));
    let last = e.last().expect("events");
    assert_eq!((last.to, last.cause), (0, ScaleCause::KedaDeactivation));
    assert_eq!(outcome.totals.jobs_done, 400);
}

/// MessageRate over HTTP reads the publish rate as the management API reports it: 12 jobs/s
/// evenly, value 3 per replica. With the plugin sampling 1 s before each read the rate is seen
/// and the HPA settles at 12 / 3 = 4 replicas; sampling 2.5 s before (the default phase), every
/// read comes after the rate's 1.5 s and is 0, and the HPA stays at its minimum.
#[test]
fn message_rate_scales_on_the_management_api_s_publish_rate() {
    let s = Scenario::from_yaml(
        "description: steady\nduration_secs: 600\nslo_secs: 60\narrivals: { pattern: constant, rate: 12 }\nwork: { distribution: fixed, secs: 0.1 }\nmetrics: { management_phase_secs: 4 }\n",
    )
    .expect("valid");
    let text = so(
        "",
        "  minReplicaCount: 1\n  maxReplicaCount: 20\n",
        r#"queueName: Orders, host: "http://rabbitmq:15672/", mode: MessageRate, value: "3""#,
    );
    let outcome = run(&s, &policy(&text).expect("valid")).expect("runs");
    let late: Vec<_> = outcome
        .decisions
        .iter()
        .filter(|d| d.at_secs >= 60.0)
        .collect();
    let mut unseen = s.clone();
    unseen.metrics.management_phase_secs = None;
    let blind = run(&unseen, &policy(&text).expect("valid")).expect("runs");
    assert!(
        blind
            .decisions
            .iter()
            .all(|d| d.metric_values[0] == Some(0.0) && d.desired == 1),
        "{:?}",
        blind
            .decisions
            .iter()
            .map(|d| d.metric_values[0])
            .collect::<Vec<_>>()
    );
    assert!(
        late.iter().all(|d| d.metric_values[0] == Some(12.0)),
        "{:?}",
        late[0]
    );
    assert!(
        late.iter().all(|d| d.desired == 4),
        "{:?}",
        late.iter().map(|d| d.desired).collect::<Vec<_>>()
    );
}

/// Several triggers: one External metric each, and the HPA takes the largest proposal
/// (`getScaledObjectMetricSpecs`, the HPA's max over metrics): QueueLength 1000 per replica
/// proposes 1, MessageRate 2 per replica proposes 12 / 2 = 6.
#[test]
fn several_triggers_scale_on_the_largest_proposal() {
    let s = Scenario::from_yaml(
        "description: steady\nduration_secs: 600\nslo_secs: 60\narrivals: { pattern: constant, rate: 12 }\nwork: { distribution: fixed, secs: 0.1 }\nmetrics: { management_phase_secs: 4 }\n",
    )
    .expect("valid");
    let text = so(
        "",
        "  minReplicaCount: 1\n  maxReplicaCount: 20\n",
        r#"queueName: Orders, host: "amqp://x", mode: QueueLength, value: "1000""#,
    ) + "    - type: rabbitmq\n      metadata: { queueName: Orders, host: \"http://x\", mode: MessageRate, value: \"2\" }\n";
    let p = policy(&text).expect("valid");
    let hpa = p.hpa_yaml(&Default::default()).expect("an HPA");
    assert!(
        hpa.contains("s0-rabbitmq-Orders") && hpa.contains("s1-rabbitmq-Orders"),
        "{hpa}"
    );
    let outcome = run(&s, &p).expect("runs");
    let late: Vec<_> = outcome
        .decisions
        .iter()
        .filter(|d| d.at_secs >= 60.0)
        .collect();
    assert!(
        late.iter()
            .all(|d| d.metric_values.len() == 2 && d.desired == 6),
        "{:?}",
        late[0]
    );
}

/// The prometheus scaler on warren's capacity metric (pkg/scalers/prometheus_scaler.go,
/// `GetMetricSpecForScaling`): metric `s0-prometheus`, target `threshold`; it reads the capacity
/// formula the capacity HPA reads, so the same ScaledObject and HPA give the same decisions.
#[test]
fn a_prometheus_trigger_on_the_capacity_metric_runs_as_the_capacity_hpa() {
    let s = Scenario::from_yaml(
        "description: steady\nduration_secs: 600\nslo_secs: 60\narrivals: { pattern: constant, rate: 2 }\nwork: { distribution: fixed, secs: 4 }\nmetrics: { source: prometheus }\n",
    )
    .expect("valid");
    let text = so(
        "",
        "  minReplicaCount: 1\n  maxReplicaCount: 30\n  pollingInterval: 15\n",
        r#"serverAddress: "http://prometheus:9090", query: "max(warren_workers_needed{queue=\"Orders\"})", threshold: "1""#,
    )
    .replace("type: rabbitmq", "type: prometheus");
    let keda = policy(&text).expect("valid");
    let hpa_text = keda.hpa_yaml(&Default::default()).expect("an HPA");
    assert!(hpa_text.contains("name: s0-prometheus"), "{hpa_text}");
    let hpa = PolicySpec::from_hpa_yaml(
        "hpa",
        &hpa_text.replace("s0-prometheus", "warren_workers_needed"),
    )
    .expect("valid");
    let (a, b) = (run(&s, &keda).expect("runs"), run(&s, &hpa).expect("runs"));
    let desired =
        |o: &warren_sim::RunOutcome| o.decisions.iter().map(|d| d.desired).collect::<Vec<_>>();
    assert_eq!(desired(&a), desired(&b));
    // 2 jobs/s of 4 s jobs at 0.8 utilisation: 10 workers, plus the ready backlog's drain term.
    let last = a.decisions.last().map_or(0, |d| d.desired);
    assert!((10..=11).contains(&last), "{last}");
}

/// The keda-scale-to-zero overlay: the keda overlay's ScaledObject with its component's patch
/// (minReplicaCount 0, activationValue "0"): it starts at 0, the poll after a burst activates
/// 0 -> 1, the HPA scales above, and 120 s after the last ready message KEDA removes the last
/// worker.
#[test]
fn the_keda_scale_to_zero_overlay_rests_at_zero_and_wakes_on_a_burst() {
    let overlay = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes/overlays/keda/scaledobject.yaml");
    let text = std::fs::read_to_string(overlay).expect("the keda overlay");
    let patched = text
        .replace("minReplicaCount: 1", "minReplicaCount: 0")
        .replace(
            "value: \"5\"",
            "value: \"5\"\n        activationValue: \"0\"",
        );
    assert_ne!(patched, text);
    let p = policy(&patched).expect("valid");
    let outcome = run(&burst_scenario(), &p).expect("runs");
    let e = &outcome.scale_events;
    // pollingInterval 15: the poll after the burst at 100 s.
    assert_eq!(
        (e[0].at_secs, e[0].from, e[0].to, e[0].cause),
        (105.0, 0, 1, ScaleCause::KedaActivation)
    );
    assert!(e.iter().any(|x| x.cause == ScaleCause::Hpa && x.to > 1));
    let last = e.last().expect("events");
    assert_eq!((last.to, last.cause), (0, ScaleCause::KedaDeactivation));
    assert_eq!(outcome.totals.jobs_done, 400);
}

/// `kubectl get scaledobject -o yaml` output runs: the API server's metadata and the status are
/// accepted and change nothing; `autoscaling.keda.sh/paused: "true"` holds the count the run
/// starts with (`handlePause` with no paused-replicas: the scale loop stopped, the HPA deleted).
#[test]
fn a_paused_scaledobject_from_the_cluster_holds_its_starting_count() {
    let m = r#"queueName: Orders, host: "amqp://x", mode: QueueLength, value: "5""#;
    let from_cluster = so(r#""autoscaling.keda.sh/paused": "true""#, "  minReplicaCount: 2\n", m)
        .replace(
            "  name: w\n",
            "  name: w\n  uid: 9e1c\n  resourceVersion: \"1234\"\n  generation: 3\n  creationTimestamp: \"2026-12-01T10:00:00Z\"\n  finalizers: [finalizer.keda.sh]\n",
        )
        + "status:\n  lastActiveTime: \"2026-12-01T10:05:00Z\"\n  hpaName: keda-hpa-w\n";
    let p = policy(&from_cluster).expect("valid");
    assert!(p.hpa_yaml(&Default::default()).is_none());
    let outcome = run(&burst_scenario(), &p).expect("runs");
    assert!(
        outcome.scale_events.is_empty(),
        "{:?}",
        outcome.scale_events
    );
    assert_eq!(outcome.totals.peak_workers, 2);
    let mut s = burst_scenario();
    s.workers.initial = Some(4);
    let outcome = run(&s, &p).expect("runs");
    assert_eq!(outcome.totals.peak_workers, 4);
    assert!(outcome.scale_events.is_empty());
}

/// `TestCheckReplicaCountBoundsAreValid` and the rabbitmq-applicable cases of
/// `TestCheckFallbackValid` (apis/keda/v1alpha1/scaledobject_types_test.go), case by case, with
/// KEDA's own messages.
#[test]
fn replica_bounds_and_fallback_are_checked_with_keda_s_cases() {
    let m = r#"queueName: Orders, host: "amqp://x""#;
    let cases: [(&str, &str, Option<&str>); 9] = [
        (
            "Valid: min 1, max 5, no idle",
            "  minReplicaCount: 1\n  maxReplicaCount: 5\n",
            None,
        ),
        (
            "Valid: min 1, max 5, idle 0",
            "  minReplicaCount: 1\n  maxReplicaCount: 5\n  idleReplicaCount: 0\n",
            None,
        ),
        (
            "Invalid: min 2 > max 1",
            "  minReplicaCount: 2\n  maxReplicaCount: 1\n",
            Some("MinReplicaCount=2 must be less than MaxReplicaCount=1"),
        ),
        (
            "Invalid: idle 1 == min 1",
            "  minReplicaCount: 1\n  maxReplicaCount: 5\n  idleReplicaCount: 1\n",
            Some("IdleReplicaCount=1 must be less than MinReplicaCount=1"),
        ),
        (
            "Invalid: idle 2 > min 1",
            "  minReplicaCount: 1\n  maxReplicaCount: 5\n  idleReplicaCount: 2\n",
            Some("IdleReplicaCount=2 must be less than MinReplicaCount=1"),
        ),
        (
            "Implicit AverageValue metricType - valid",
            "  fallback: { failureThreshold: 3, replicas: 1 }\n",
            None,
        ),
        (
            "Negative FailureThreshold - invalid",
            "  fallback: { failureThreshold: -1, replicas: 1 }\n",
            Some("FailureThreshold=-1 & Replicas=1 must both be greater than or equal to 0"),
        ),
        (
            "Negative Replicas - invalid",
            "  fallback: { failureThreshold: 3, replicas: -1 }\n",
            Some("FailureThreshold=3 & Replicas=-1 must both be greater than or equal to 0"),
        ),
        (
            "a behavior KEDA's CRD lists",
            "  fallback: { failureThreshold: 3, replicas: 1, behavior: currentReplicasIfHigher }\n",
            None,
        ),
    ];
    for (name, spec, error) in cases {
        match (policy(&so("", spec, m)), error) {
            (Ok(_), None) => {}
            (Err(e), Some(wanted)) => assert!(e.contains(wanted), "{name}: {e}"),
            (got, _) => panic!("{name}: {:?}", got.err()),
        }
    }
}

/// The rate modes wake a ScaledObject at 0 as `GetMetricsAndActivity` says: a backlog with no
/// delivery is active for ExpectedQueueConsumptionTime, publishing with no delivery for
/// PublishedToDeliveredRatio. Over HTTP the scaler sees the arrivals from 100 s in the next
/// management sample (102.5 s at the default phase, 104 s at phase 4, where the trickle's rate
/// is seen), so the poll of 120 s activates.
#[test]
fn rate_modes_activate_from_zero_through_the_management_api() {
    let trickle = Scenario::from_yaml(
        "description: a trickle from 100 s\nduration_secs: 300\nslo_secs: 60\narrivals: { points: [[0, 0], [99.9, 0], [100, 1], [300, 1]] }\nwork: { distribution: fixed, secs: 1 }\nmetrics: { management_phase_secs: 4 }\n",
    );
    for (mode, scenario) in [
        ("ExpectedQueueConsumptionTime", burst_scenario()),
        ("PublishedToDeliveredRatio", trickle.expect("valid")),
    ] {
        let text = so(
            "",
            "  minReplicaCount: 0\n  maxReplicaCount: 10\n",
            &format!(r#"queueName: Orders, host: "http://x", mode: {mode}, value: "5""#),
        );
        let outcome = run(&scenario, &policy(&text).expect("valid")).expect("runs");
        let first = outcome.scale_events.first().expect("activated");
        assert_eq!(
            (first.at_secs, first.from, first.to, first.cause),
            (120.0, 0, 1, ScaleCause::KedaActivation),
            "{mode}"
        );
    }
}
