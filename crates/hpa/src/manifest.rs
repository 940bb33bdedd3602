//! Reading a HorizontalPodAutoscaler manifest as `kubectl apply` takes it: parse, default,
//! validate.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use thiserror::Error;

use crate::defaults::set_defaults_horizontal_pod_autoscaler;
use crate::validation::{validate_horizontal_pod_autoscaler, FieldError};

/// Why a manifest cannot be used.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// The text is not YAML for an autoscaling/v2 HorizontalPodAutoscaler.
    #[error("not an autoscaling/v2 HorizontalPodAutoscaler: {0}")]
    Parse(#[from] serde_yaml::Error),
    /// The API server would reject the object; every failing field is listed.
    #[error("invalid HorizontalPodAutoscaler: {}", join(.0))]
    Invalid(Vec<FieldError>),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses an autoscaling/v2 HorizontalPodAutoscaler from YAML (or JSON), applies the API
/// defaults and validates it as the API server would.
pub fn parse_manifest(yaml: &str) -> Result<HorizontalPodAutoscaler, ManifestError> {
    let hpa: HorizontalPodAutoscaler = serde_yaml::from_str(yaml)?;
    prepare(hpa)
}

/// Applies the API defaults to an already-parsed object and validates it.
pub fn prepare(mut hpa: HorizontalPodAutoscaler) -> Result<HorizontalPodAutoscaler, ManifestError> {
    set_defaults_horizontal_pod_autoscaler(&mut hpa);
    let errors = validate_horizontal_pod_autoscaler(&hpa);
    if errors.is_empty() {
        Ok(hpa)
    } else {
        Err(ManifestError::Invalid(errors))
    }
}
