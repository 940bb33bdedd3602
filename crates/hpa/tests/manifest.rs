//! Parsing, defaulting and validating manifests: errors name the field as the API server does.

use warren_hpa::{parse_manifest, FieldError, ManifestError};

fn manifest(spec: &str) -> String {
    format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: workers\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: worker\n{spec}"
    )
}

const EXTERNAL: &str = "  metrics:\n  - type: External\n    external:\n      metric:\n        name: queue_depth\n      target:\n        type: AverageValue\n        averageValue: \"30\"\n";

fn errors(spec: &str) -> Vec<FieldError> {
    match parse_manifest(&manifest(spec)) {
        Err(ManifestError::Invalid(errors)) => errors,
        Err(other) => panic!("expected validation errors, got {other}"),
        Ok(_) => panic!("expected validation errors, the manifest was accepted"),
    }
}

fn fields(spec: &str) -> Vec<String> {
    errors(spec).into_iter().map(|e| e.field).collect()
}

#[test]
fn defaults_are_applied_to_a_minimal_manifest() {
    let hpa = parse_manifest(&manifest("  maxReplicas: 5\n")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hpa.spec.min_replicas, Some(1));
    let metrics = hpa.spec.metrics.unwrap_or_default();
    assert_eq!(metrics.len(), 1);
    let resource = metrics[0].resource.clone().unwrap_or_default();
    assert_eq!(
        (resource.name.as_str(), resource.target.average_utilization),
        ("cpu", Some(80))
    );
    assert!(hpa.spec.behavior.is_none());
}

#[test]
fn an_empty_behavior_gets_both_default_directions() {
    let hpa = parse_manifest(&manifest(&format!(
        "  maxReplicas: 5\n{EXTERNAL}  behavior: {{}}\n"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    let behavior = hpa.spec.behavior.unwrap_or_default();
    let up = behavior.scale_up.unwrap_or_default();
    let down = behavior.scale_down.unwrap_or_default();
    assert_eq!(up.stabilization_window_seconds, Some(0));
    assert_eq!(up.policies.map(|p| p.len()), Some(2));
    assert_eq!(down.stabilization_window_seconds, None);
    assert_eq!(down.select_policy.as_deref(), Some("Max"));
}

#[test]
fn a_user_policy_list_replaces_the_default_list() {
    let spec = format!(
        "  maxReplicas: 5\n{EXTERNAL}  behavior:\n    scaleUp:\n      policies:\n      - type: Pods\n        value: 1\n        periodSeconds: 60\n"
    );
    let hpa = parse_manifest(&manifest(&spec)).unwrap_or_else(|e| panic!("{e}"));
    let up = hpa
        .spec
        .behavior
        .and_then(|b| b.scale_up)
        .unwrap_or_default();
    let policies = up.policies.unwrap_or_default();
    assert_eq!(policies.len(), 1);
    assert_eq!(
        (
            policies[0].type_.as_str(),
            policies[0].value,
            policies[0].period_seconds
        ),
        ("Pods", 1, 60)
    );
}

#[test]
fn max_replicas_below_one_is_rejected() {
    assert_eq!(
        fields(&format!("  minReplicas: 0\n  maxReplicas: 0\n{EXTERNAL}")),
        vec!["spec.maxReplicas"]
    );
}

#[test]
fn min_replicas_above_max_replicas_is_rejected() {
    let errs = errors(&format!("  minReplicas: 6\n  maxReplicas: 5\n{EXTERNAL}"));
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0].to_string(),
        "spec.maxReplicas: Invalid value: 5: must be greater than or equal to `minReplicas`"
    );
}

#[test]
fn min_replicas_zero_needs_an_object_or_external_metric() {
    assert_eq!(
        fields("  minReplicas: 0\n  maxReplicas: 5\n"),
        vec!["spec.metrics"]
    );
    assert!(parse_manifest(&manifest(&format!(
        "  minReplicas: 0\n  maxReplicas: 5\n{EXTERNAL}"
    )))
    .is_ok());
}

fn behavior(rules: &str) -> String {
    format!("  maxReplicas: 5\n{EXTERNAL}  behavior:\n    scaleUp:\n{rules}")
}

#[test]
fn policy_period_outside_1_to_1800_is_rejected() {
    let zero = behavior(
        "      policies:\n      - type: Pods\n        value: 1\n        periodSeconds: 0\n",
    );
    assert_eq!(
        fields(&zero),
        vec!["spec.behavior.scaleUp.policies[0].periodSeconds"]
    );
    let long = behavior(
        "      policies:\n      - type: Percent\n        value: 1\n        periodSeconds: 1801\n",
    );
    let errs = errors(&long);
    assert_eq!(
        errs[0].to_string(),
        "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 1801: must be less than or equal to 1800"
    );
}

#[test]
fn policy_value_of_zero_is_rejected() {
    let spec = behavior(
        "      policies:\n      - type: Pods\n        value: 0\n        periodSeconds: 15\n",
    );
    assert_eq!(
        fields(&spec),
        vec!["spec.behavior.scaleUp.policies[0].value"]
    );
}

#[test]
fn unknown_policy_type_and_select_policy_are_rejected() {
    let spec = behavior("      selectPolicy: Fastest\n      policies:\n      - type: Replicas\n        value: 1\n        periodSeconds: 15\n");
    assert_eq!(
        fields(&spec),
        vec![
            "spec.behavior.scaleUp.selectPolicy",
            "spec.behavior.scaleUp.policies[0].type"
        ]
    );
}

#[test]
fn stabilization_window_outside_0_to_3600_is_rejected() {
    assert_eq!(
        fields(&behavior("      stabilizationWindowSeconds: 3601\n")),
        vec!["spec.behavior.scaleUp.stabilizationWindowSeconds"]
    );
    assert_eq!(
        fields(&behavior("      stabilizationWindowSeconds: -1\n")),
        vec!["spec.behavior.scaleUp.stabilizationWindowSeconds"]
    );
}

#[test]
fn an_empty_policy_list_is_rejected() {
    assert_eq!(
        fields(&behavior("      policies: []\n")),
        vec!["spec.behavior.scaleUp.policies"]
    );
}

#[test]
fn a_negative_tolerance_is_rejected() {
    assert_eq!(
        fields(&behavior("      tolerance: \"-0.1\"\n")),
        vec!["spec.behavior.scaleUp.tolerance"]
    );
}

#[test]
fn a_target_whose_type_does_not_match_its_value_is_rejected() {
    let spec = "  maxReplicas: 5\n  metrics:\n  - type: External\n    external:\n      metric:\n        name: q\n      target:\n        type: Value\n        averageValue: \"30\"\n";
    assert_eq!(fields(spec), vec!["spec.metrics[0].external.target.value"]);
}

#[test]
fn a_target_type_unsuited_to_its_source_is_rejected() {
    let spec = "  maxReplicas: 5\n  metrics:\n  - type: Pods\n    pods:\n      metric:\n        name: q\n      target:\n        type: Value\n        value: \"30\"\n        averageValue: \"30\"\n";
    assert_eq!(fields(spec), vec!["spec.metrics[0].pods.target.type"]);
}

#[test]
fn a_non_positive_target_is_rejected() {
    let spec = "  maxReplicas: 5\n  metrics:\n  - type: External\n    external:\n      metric:\n        name: q\n      target:\n        type: Value\n        value: \"0\"\n";
    assert_eq!(fields(spec), vec!["spec.metrics[0].external.target.value"]);
}

#[test]
fn a_metric_without_its_source_is_rejected() {
    let spec = "  maxReplicas: 5\n  metrics:\n  - type: External\n";
    assert_eq!(fields(spec), vec!["spec.metrics[0].external"]);
}

#[test]
fn a_metric_with_two_sources_is_rejected() {
    let spec = format!(
        "  maxReplicas: 5\n{EXTERNAL}    pods:\n      metric:\n        name: q\n      target:\n        type: AverageValue\n        averageValue: \"1\"\n"
    );
    assert_eq!(fields(&spec), vec!["spec.metrics[0].pods"]);
}

#[test]
fn a_metric_name_with_a_slash_is_rejected() {
    let spec = EXTERNAL.replace("queue_depth", "queue/depth");
    assert_eq!(
        fields(&format!("  maxReplicas: 5\n{spec}")),
        vec!["spec.metrics[0].external.metric.name"]
    );
}

#[test]
fn a_missing_scale_target_name_is_rejected() {
    let yaml = manifest(&format!("  maxReplicas: 5\n{EXTERNAL}"))
        .replace("    name: worker\n", "    name: \"\"\n");
    match parse_manifest(&yaml) {
        Err(ManifestError::Invalid(errs)) => {
            assert_eq!(
                errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
                vec!["spec.scaleTargetRef.name"]
            )
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn another_kind_of_object_is_a_parse_error() {
    let yaml =
        manifest("  maxReplicas: 5\n").replace("kind: HorizontalPodAutoscaler", "kind: Deployment");
    assert!(matches!(
        parse_manifest(&yaml),
        Err(ManifestError::Parse(_))
    ));
}

#[test]
fn every_error_is_reported_at_once() {
    let spec = "  minReplicas: -1\n  maxReplicas: 0\n  behavior:\n    scaleDown:\n      policies:\n      - type: Pods\n        value: -2\n        periodSeconds: 2000\n";
    assert_eq!(
        fields(spec),
        vec![
            "spec.minReplicas",
            "spec.maxReplicas",
            "spec.behavior.scaleDown.policies[0].value",
            "spec.behavior.scaleDown.policies[0].periodSeconds",
        ]
    );
}

fn parse_error(yaml: &str) -> String {
    match parse_manifest(yaml) {
        Err(ManifestError::Parse(e)) => e.to_string(),
        Err(other) => panic!("expected a parse error, got {other}"),
        Ok(_) => panic!("expected a parse error, the manifest was accepted"),
    }
}

#[test]
fn a_misspelled_stabilization_window_names_its_path_and_the_field_meant() {
    let spec = format!(
        "  maxReplicas: 5\n{EXTERNAL}  behavior:\n    scaleDown:\n      stabilizationWindowSecond: 60\n"
    );
    assert_eq!(
        parse_error(&manifest(&spec)),
        "spec.behavior.scaleDown.stabilizationWindowSecond: unknown field (did you mean stabilizationWindowSeconds?)"
    );
}

#[test]
fn a_misspelled_max_replicas_is_named_rather_than_reported_as_zero() {
    assert_eq!(
        parse_error(&manifest(&format!("  maxReplica: 10\n{EXTERNAL}"))),
        "spec.maxReplica: unknown field (did you mean maxReplicas?)"
    );
}

#[test]
fn a_misspelled_metric_field_is_named() {
    let spec = "  maxReplicas: 5\n  metrics:\n  - type: External\n    external:\n      metric:\n        name: q\n      target:\n        type: AverageValue\n        averageValu: \"30\"\n";
    assert_eq!(
        parse_error(&manifest(spec)),
        "spec.metrics[0].external.target.averageValu: unknown field (did you mean averageValue?)"
    );
}

#[test]
fn a_misspelled_field_of_a_nested_list_item_names_its_index() {
    let spec = format!("  maxReplicas: 5\n{EXTERNAL}  - type: External\n    external:\n      metric:\n        nme: other\n      target:\n        type: Value\n        value: \"1\"\n");
    let message = parse_error(&manifest(&spec));
    assert!(
        message
            .starts_with("spec.metrics[1].external.metric.nme: unknown field (did you mean name?)"),
        "{message}"
    );
}

#[test]
fn a_wrong_type_names_the_field_and_the_type_expected() {
    assert_eq!(
        parse_error(&manifest(&format!("  maxReplicas: \"ten\"\n{EXTERNAL}"))),
        r#"spec.maxReplicas: invalid type: string "ten", expected i32"#
    );
}

#[test]
fn an_unknown_top_level_field_is_named() {
    let yaml =
        manifest(&format!("  maxReplicas: 5\n{EXTERNAL}")).replace("spec:", "specs: {}\nspec:");
    assert_eq!(
        parse_error(&yaml),
        "specs: unknown field (did you mean spec?)"
    );
}

#[test]
fn the_shipped_overlay_manifest_parses_strictly() {
    let yaml = include_str!("../../../deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml");
    parse_manifest(yaml).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn status_and_metadata_of_a_stored_object_are_known_fields() {
    let yaml = format!(
        "{}status:\n  currentReplicas: 2\n  desiredReplicas: 3\n  conditions:\n  - type: ScaledToZero\n    status: \"False\"\n    reason: NotScaledToZero\n    lastTransitionTime: \"2026-12-01T00:00:00Z\"\n",
        manifest(&format!("  maxReplicas: 5\n{EXTERNAL}"))
    )
    .replace("  name: workers\n", "  name: workers\n  labels:\n    app: worker\n  resourceVersion: \"7\"\n");
    parse_manifest(&yaml).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn quantities_may_be_written_as_numbers_as_kubectl_takes_them() {
    let spec = "  maxReplicas: 5\n  metrics:\n  - type: External\n    external:\n      metric:\n        name: q\n      target:\n        type: AverageValue\n        averageValue: 30\n  behavior:\n    scaleUp:\n      tolerance: 0.05\n";
    let hpa = parse_manifest(&manifest(spec)).unwrap_or_else(|e| panic!("{e}"));
    let metrics = hpa.spec.metrics.unwrap_or_default();
    let target = metrics[0].external.as_ref().map(|e| e.target.clone());
    assert_eq!(
        target.and_then(|t| t.average_value).map(|q| q.0),
        Some("30".to_string())
    );
    let up = hpa.spec.behavior.and_then(|b| b.scale_up);
    assert_eq!(
        up.and_then(|u| u.tolerance).map(|q| q.0),
        Some("0.05".to_string())
    );
}

#[test]
fn another_kind_says_which_kind_was_expected() {
    let yaml =
        manifest("  maxReplicas: 5\n").replace("kind: HorizontalPodAutoscaler", "kind: Deployment");
    assert_eq!(
        parse_error(&yaml),
        r#"invalid value: string "Deployment", expected HorizontalPodAutoscaler"#
    );
}
