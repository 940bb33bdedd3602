//! Reading a HorizontalPodAutoscaler manifest as `kubectl apply --validate=strict` takes it:
//! parse strictly (an unknown field or a wrong type is an error naming its path), default,
//! validate.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use thiserror::Error;

use crate::defaults::set_defaults_horizontal_pod_autoscaler;
use crate::validation::{validate_horizontal_pod_autoscaler_with, FieldError};

/// Why a manifest cannot be used.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// The text is not YAML for an autoscaling/v2 HorizontalPodAutoscaler: not YAML, a field
    /// the type does not have (with the nearest known one), or a value of the wrong type.
    #[error("not a valid autoscaling/v2 HorizontalPodAutoscaler manifest: {0}")]
    Parse(#[from] warren_strict::Error),
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

/// Parses an autoscaling/v2 HorizontalPodAutoscaler from YAML (or JSON) strictly, applies the
/// API defaults and validates it as the API server would.
pub fn parse_manifest(yaml: &str) -> Result<HorizontalPodAutoscaler, ManifestError> {
    prepare(read_manifest(yaml)?)
}

/// Parses an autoscaling/v2 HorizontalPodAutoscaler strictly, without defaults or validation:
/// what the API server stores may be read back this way.
pub fn read_manifest(yaml: &str) -> Result<HorizontalPodAutoscaler, ManifestError> {
    Ok(warren_strict::from_str(yaml)?)
}

/// Applies the API defaults to an already-parsed object and validates it (with HPAScaleToZero
/// on).
pub fn prepare(hpa: HorizontalPodAutoscaler) -> Result<HorizontalPodAutoscaler, ManifestError> {
    prepare_with(hpa, true)
}

/// [`prepare`] with the HPAScaleToZero gate given: while it is off, `minReplicas: 0` is
/// refused as the API server refuses it.
pub fn prepare_with(
    mut hpa: HorizontalPodAutoscaler,
    scale_to_zero: bool,
) -> Result<HorizontalPodAutoscaler, ManifestError> {
    set_defaults_horizontal_pod_autoscaler(&mut hpa);
    let errors = validate_horizontal_pod_autoscaler_with(&hpa, scale_to_zero);
    if errors.is_empty() {
        Ok(hpa)
    } else {
        Err(ManifestError::Invalid(errors))
    }
}
