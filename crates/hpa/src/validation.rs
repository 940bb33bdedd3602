//! Rejects what the API server rejects, with errors naming the field. Mirrors
//! `pkg/apis/autoscaling/validation/validation.go` (with the HPAScaleToZero and
//! HPAConfigurableTolerance features on), plus the target checks described on
//! [`validate_horizontal_pod_autoscaler`].

use std::fmt;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, MetricIdentifier, MetricSpec, MetricTarget,
};

use crate::defaults::{
    DISABLED_POLICY_SELECT, MAX_CHANGE_POLICY_SELECT, MIN_CHANGE_POLICY_SELECT,
    PERCENT_SCALING_POLICY, PODS_SCALING_POLICY,
};
use crate::quantity;

/// The largest allowed scaling-policy period, in seconds.
pub const MAX_PERIOD_SECONDS: i32 = 1800;
/// The largest allowed stabilization window, in seconds.
pub const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;

/// What is wrong with a field, following the API server's `field.ErrorType`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// The value is present but not acceptable.
    Invalid(String),
    /// The field must be set.
    Required,
    /// The value is not one of the supported ones.
    NotSupported {
        /// The value given.
        value: String,
        /// The values accepted.
        supported: Vec<&'static str>,
    },
    /// The field must not be set here.
    Forbidden,
}

/// One validation failure: the field's path, what is wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, e.g. `spec.behavior.scaleUp.policies[0].periodSeconds`.
    pub field: String,
    /// What is wrong with it.
    pub kind: FieldErrorKind,
    /// The API server's explanation.
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FieldErrorKind::Invalid(value) => {
                write!(
                    f,
                    "{}: Invalid value: {}: {}",
                    self.field, value, self.detail
                )
            }
            FieldErrorKind::Required => {
                write!(f, "{}: Required value: {}", self.field, self.detail)
            }
            FieldErrorKind::NotSupported { value, supported } => {
                let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                write!(
                    f,
                    "{}: Unsupported value: {:?}: supported values: {}",
                    self.field,
                    value,
                    supported.join(", ")
                )
            }
            FieldErrorKind::Forbidden => write!(f, "{}: Forbidden: {}", self.field, self.detail),
        }
    }
}

/// Collects errors under a path, so each check reads as one line.
struct Errors(Vec<FieldError>);

impl Errors {
    fn invalid(&mut self, field: &str, value: impl fmt::Display, detail: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            kind: FieldErrorKind::Invalid(value.to_string()),
            detail: detail.into(),
        });
    }

    fn required(&mut self, field: &str, detail: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        });
    }

    fn not_supported(&mut self, field: &str, value: &str, supported: &[&'static str]) {
        self.0.push(FieldError {
            field: field.to_string(),
            kind: FieldErrorKind::NotSupported {
                value: value.to_string(),
                supported: supported.to_vec(),
            },
            detail: String::new(),
        });
    }

    fn forbidden(&mut self, field: &str, detail: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        });
    }
}

/// Validates a (defaulted) HorizontalPodAutoscaler spec and returns every error found, in the
/// API server's order; an empty list means the manifest is acceptable.
///
/// Besides the API server's checks, a metric target must carry the value its `type` names
/// (`Utilization` needs `averageUtilization`, `Value` needs `value`, `AverageValue` needs
/// `averageValue`) and the type must suit the source (Pods: `AverageValue`; Resource and
/// ContainerResource: `Utilization` or `AverageValue`; Object and External: `Value` or
/// `AverageValue`). The controller silently reads another field when they disagree, so a
/// manifest that relies on that is refused here rather than scaled on a number its author did
/// not mean.
///
/// This is the API server with HPAScaleToZero on (minReplicas may be 0);
/// [`validate_horizontal_pod_autoscaler_with`] takes the gate.
pub fn validate_horizontal_pod_autoscaler(hpa: &HorizontalPodAutoscaler) -> Vec<FieldError> {
    validate_horizontal_pod_autoscaler_with(hpa, true)
}

/// [`validate_horizontal_pod_autoscaler`] with the HPAScaleToZero gate given: while it is off,
/// `minReplicas` must be at least 1.
pub fn validate_horizontal_pod_autoscaler_with(
    hpa: &HorizontalPodAutoscaler,
    scale_to_zero: bool,
) -> Vec<FieldError> {
    let mut errs = Errors(Vec::new());
    let spec = &hpa.spec;
    // HPAScaleToZero: minReplicas may be 0 (and then needs an Object or External metric).
    let lower_bound = if scale_to_zero { 0 } else { 1 };
    if let Some(min) = spec.min_replicas {
        if min < lower_bound {
            errs.invalid(
                "spec.minReplicas",
                min,
                format!("must be greater than or equal to {lower_bound}"),
            );
        }
    }
    if spec.max_replicas < 1 {
        errs.invalid(
            "spec.maxReplicas",
            spec.max_replicas,
            "must be greater than 0",
        );
    }
    if let Some(min) = spec.min_replicas {
        if spec.max_replicas < min {
            errs.invalid(
                "spec.maxReplicas",
                spec.max_replicas,
                "must be greater than or equal to `minReplicas`",
            );
        }
    }
    validate_cross_version_object_reference(
        &mut errs,
        &spec.scale_target_ref,
        "spec.scaleTargetRef",
    );
    validate_metrics(
        &mut errs,
        spec.metrics.as_deref().unwrap_or_default(),
        spec.min_replicas,
    );
    if let Some(behavior) = &spec.behavior {
        validate_behavior(&mut errs, behavior);
    }
    errs.0
}

fn validate_cross_version_object_reference(
    errs: &mut Errors,
    r: &CrossVersionObjectReference,
    path: &str,
) {
    if r.kind.is_empty() {
        errs.required(&format!("{path}.kind"), "");
    } else {
        for msg in path_segment_name_errors(&r.kind) {
            errs.invalid(&format!("{path}.kind"), &r.kind, msg);
        }
    }
    if r.name.is_empty() {
        errs.required(&format!("{path}.name"), "");
    } else {
        for msg in path_segment_name_errors(&r.name) {
            errs.invalid(&format!("{path}.name"), &r.name, msg);
        }
    }
}

/// `IsValidPathSegmentName`: a name that can be one segment of a resource path.
fn path_segment_name_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

fn validate_metrics(errs: &mut Errors, metrics: &[MetricSpec], min_replicas: Option<i32>) {
    let mut has_object_or_external = false;
    for (i, metric) in metrics.iter().enumerate() {
        validate_metric_spec(errs, metric, &format!("spec.metrics[{i}]"));
        has_object_or_external |= metric.type_ == "Object" || metric.type_ == "External";
    }
    if min_replicas == Some(0) && !has_object_or_external {
        errs.forbidden(
            "spec.metrics",
            "must specify at least one Object or External metric to support scaling to zero replicas",
        );
    }
}

const METRIC_SOURCE_TYPES: [&str; 5] = [
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

fn validate_metric_spec(errs: &mut Errors, spec: &MetricSpec, path: &str) {
    if spec.type_.is_empty() {
        errs.required(&format!("{path}.type"), "must specify a metric source type");
    }
    if !METRIC_SOURCE_TYPES.contains(&spec.type_.as_str()) {
        errs.not_supported(&format!("{path}.type"), &spec.type_, &METRIC_SOURCE_TYPES);
    }

    let mut present: Vec<&str> = Vec::new();
    if let Some(object) = &spec.object {
        present.push("object");
        if present.len() == 1 {
            let p = format!("{path}.object");
            validate_cross_version_object_reference(
                errs,
                &object.described_object,
                &format!("{p}.describedObject"),
            );
            validate_metric_identifier(errs, &object.metric, &format!("{p}.metric"));
            validate_metric_target(
                errs,
                &object.target,
                &format!("{p}.target"),
                &["Value", "AverageValue"],
            );
            if object.target.value.is_none() && object.target.average_value.is_none() {
                errs.required(
                    &format!("{p}.target.averageValue"),
                    "must set either a target value or averageValue",
                );
            }
        }
    }
    if let Some(external) = &spec.external {
        present.push("external");
        if present.len() == 1 {
            let p = format!("{path}.external");
            validate_metric_identifier(errs, &external.metric, &format!("{p}.metric"));
            validate_metric_target(
                errs,
                &external.target,
                &format!("{p}.target"),
                &["Value", "AverageValue"],
            );
            let target = &external.target;
            if target.value.is_none() && target.average_value.is_none() {
                errs.required(
                    &format!("{p}.target.averageValue"),
                    "must set either a target value for metric or a per-pod target",
                );
            }
            if target.value.is_some() && target.average_value.is_some() {
                errs.forbidden(
                    &format!("{p}.target.value"),
                    "may not set both a target value for metric and a per-pod target",
                );
            }
        }
    }
    if let Some(pods) = &spec.pods {
        present.push("pods");
        if present.len() == 1 {
            let p = format!("{path}.pods");
            validate_metric_identifier(errs, &pods.metric, &format!("{p}.metric"));
            validate_metric_target(
                errs,
                &pods.target,
                &format!("{p}.target"),
                &["AverageValue"],
            );
            if pods.target.average_value.is_none() {
                errs.required(
                    &format!("{p}.target.averageValue"),
                    "must specify a positive target averageValue",
                );
            }
        }
    }
    if let Some(resource) = &spec.resource {
        present.push("resource");
        if present.len() == 1 {
            let p = format!("{path}.resource");
            if resource.name.is_empty() {
                errs.required(&format!("{p}.name"), "must specify a resource name");
            }
            validate_resource_target(errs, &resource.target, &format!("{p}.target"));
        }
    }
    if let Some(container) = &spec.container_resource {
        present.push("containerResource");
        if present.len() == 1 {
            let p = format!("{path}.containerResource");
            if container.name.is_empty() {
                errs.required(&format!("{p}.name"), "must specify a resource name");
            } else if !is_container_resource_name(&container.name) {
                errs.invalid(
                    &format!("{p}.name"),
                    &container.name,
                    "must be a standard resource for containers",
                );
            }
            if container.container.is_empty() {
                errs.required(&format!("{p}.container"), "must specify a container");
            } else if !is_dns1123_label(&container.container) {
                errs.invalid(
                    &format!("{p}.container"),
                    &container.container,
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                );
            }
            validate_resource_target(errs, &container.target, &format!("{p}.target"));
        }
    }

    let expected = match spec.type_.as_str() {
        "Object" => Some(("object", spec.object.is_none())),
        "Pods" => Some(("pods", spec.pods.is_none())),
        "Resource" => Some(("resource", spec.resource.is_none())),
        "External" => Some(("external", spec.external.is_none())),
        "ContainerResource" => Some(("containerResource", spec.container_resource.is_none())),
        _ => {
            errs.not_supported(&format!("{path}.type"), &spec.type_, &METRIC_SOURCE_TYPES);
            None
        }
    };
    if let Some((field, true)) = expected {
        errs.required(
            &format!("{path}.{field}"),
            "must populate information for the given metric source",
        );
    }
    if present.len() != 1 {
        let expected_field = expected.map(|(field, _)| field);
        for field in present.into_iter().filter(|f| Some(*f) != expected_field) {
            errs.forbidden(
                &format!("{path}.{field}"),
                "must populate the given metric source only",
            );
        }
    }
}

fn validate_resource_target(errs: &mut Errors, target: &MetricTarget, path: &str) {
    validate_metric_target(errs, target, path, &["Utilization", "AverageValue"]);
    if target.average_utilization.is_none() && target.average_value.is_none() {
        errs.required(
            &format!("{path}.averageUtilization"),
            "must set either a target raw value or a target utilization",
        );
    }
    if target.average_utilization.is_some() && target.average_value.is_some() {
        errs.forbidden(
            &format!("{path}.averageValue"),
            "may not set both a target raw value and a target utilization",
        );
    }
}

fn validate_metric_target(
    errs: &mut Errors,
    target: &MetricTarget,
    path: &str,
    types_for_source: &[&'static str],
) {
    let type_path = format!("{path}.type");
    if target.type_.is_empty() {
        errs.required(&type_path, "must specify a metric target type");
    }
    if !matches!(
        target.type_.as_str(),
        "Utilization" | "Value" | "AverageValue"
    ) {
        errs.invalid(
            &type_path,
            &target.type_,
            "must be either Utilization, Value, or AverageValue",
        );
    } else if !types_for_source.contains(&target.type_.as_str()) {
        errs.not_supported(&type_path, &target.type_, types_for_source);
    }
    if let Some(value) = &target.value {
        check_positive_quantity(errs, &format!("{path}.value"), &value.0);
    }
    if let Some(value) = &target.average_value {
        check_positive_quantity(errs, &format!("{path}.averageValue"), &value.0);
    }
    if let Some(utilization) = target.average_utilization {
        if utilization < 1 {
            errs.invalid(
                &format!("{path}.averageUtilization"),
                utilization,
                "must be greater than 0",
            );
        }
    }
    let missing = match target.type_.as_str() {
        "Utilization" if target.average_utilization.is_none() => Some("averageUtilization"),
        "Value" if target.value.is_none() => Some("value"),
        "AverageValue" if target.average_value.is_none() => Some("averageValue"),
        _ => None,
    };
    if let Some(field) = missing {
        errs.required(
            &format!("{path}.{field}"),
            format!("must be set when type is {}", target.type_),
        );
    }
}

fn check_positive_quantity(errs: &mut Errors, path: &str, text: &str) {
    match quantity::approximate_f64(text) {
        Ok(v) if v > 0.0 => {}
        Ok(_) => errs.invalid(path, text, "must be positive"),
        Err(e) => errs.invalid(path, text, e.to_string()),
    }
}

fn validate_metric_identifier(errs: &mut Errors, id: &MetricIdentifier, path: &str) {
    let name_path = format!("{path}.name");
    if id.name.is_empty() {
        errs.required(&name_path, "must specify a metric name");
    } else {
        for msg in path_segment_name_errors(&id.name) {
            errs.invalid(&name_path, &id.name, msg);
        }
    }
}

fn validate_behavior(errs: &mut Errors, behavior: &HorizontalPodAutoscalerBehavior) {
    if let Some(rules) = &behavior.scale_up {
        validate_scaling_rules(errs, rules, "spec.behavior.scaleUp");
    }
    if let Some(rules) = &behavior.scale_down {
        validate_scaling_rules(errs, rules, "spec.behavior.scaleDown");
    }
}

const SELECT_POLICIES: [&str; 3] = [
    DISABLED_POLICY_SELECT,
    MAX_CHANGE_POLICY_SELECT,
    MIN_CHANGE_POLICY_SELECT,
];
const POLICY_TYPES: [&str; 2] = [PERCENT_SCALING_POLICY, PODS_SCALING_POLICY];

fn validate_scaling_rules(errs: &mut Errors, rules: &HPAScalingRules, path: &str) {
    if let Some(window) = rules.stabilization_window_seconds {
        let window_path = format!("{path}.stabilizationWindowSeconds");
        if window < 0 {
            errs.invalid(
                &window_path,
                window,
                "must be greater than or equal to zero",
            );
        }
        if window > MAX_STABILIZATION_WINDOW_SECONDS {
            errs.invalid(
                &window_path,
                window,
                format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            );
        }
    }
    if let Some(select) = &rules.select_policy {
        if !SELECT_POLICIES.contains(&select.as_str()) {
            errs.not_supported(&format!("{path}.selectPolicy"), select, &SELECT_POLICIES);
        }
    }
    let policies = rules.policies.as_deref().unwrap_or_default();
    if policies.is_empty() {
        errs.required(
            &format!("{path}.policies"),
            "must specify at least one Policy",
        );
    }
    for (i, policy) in policies.iter().enumerate() {
        validate_scaling_policy(errs, policy, &format!("{path}.policies[{i}]"));
    }
    if let Some(tolerance) = &rules.tolerance {
        let tolerance_path = format!("{path}.tolerance");
        match quantity::approximate_f64(&tolerance.0) {
            Ok(v) if v >= 0.0 => {}
            Ok(_) => errs.invalid(
                &tolerance_path,
                &tolerance.0,
                "must be greater than or equal to zero",
            ),
            Err(e) => errs.invalid(&tolerance_path, &tolerance.0, e.to_string()),
        }
    }
}

fn validate_scaling_policy(errs: &mut Errors, policy: &HPAScalingPolicy, path: &str) {
    if !POLICY_TYPES.contains(&policy.type_.as_str()) {
        errs.not_supported(&format!("{path}.type"), &policy.type_, &POLICY_TYPES);
    }
    if policy.value <= 0 {
        errs.invalid(
            &format!("{path}.value"),
            policy.value,
            "must be greater than zero",
        );
    }
    let period_path = format!("{path}.periodSeconds");
    if policy.period_seconds <= 0 {
        errs.invalid(
            &period_path,
            policy.period_seconds,
            "must be greater than zero",
        );
    }
    if policy.period_seconds > MAX_PERIOD_SECONDS {
        errs.invalid(
            &period_path,
            policy.period_seconds,
            format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
        );
    }
}

/// The resource names a container may request: the standard ones, huge pages, and extended
/// resources outside the `kubernetes.io` domain.
fn is_container_resource_name(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
        || (name.contains('/') && !name.contains("kubernetes.io/"))
}

fn is_dns1123_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
}
