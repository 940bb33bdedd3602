//! Kubernetes' autoscaling/v2 HorizontalPodAutoscaler decision logic, as a pure library.
//!
//! Given the very `HorizontalPodAutoscaler` manifest a cluster would get, this crate reaches the
//! decisions the Kubernetes HPA controller would reach: the same API defaults and validation,
//! the same per-metric formulas, tolerances, stabilization windows, rate limits, histories and
//! status conditions. What differs by release (feature gates, flags) is a [`ControllerConfig`],
//! one constructor per release line; the default is Kubernetes 1.37. It does no I/O and reads no clock: time is a
//! [`Timestamp`] the caller passes in, so a simulation can replay hours in milliseconds.
//!
//! # Using it
//!
//! 1. Build an [`Autoscaler`] from the manifest with [`Autoscaler::from_yaml`] (parse strictly,
//!    apply the API defaults, validate; errors name the field, e.g. `spec.maxReplicas`), or
//!    [`Autoscaler::from_yaml_with`] for another release's [`ControllerConfig`].
//! 2. At each tick (the controller syncs every 15 s), read each metric listed by
//!    [`Autoscaler::metric_specs`] and call [`Autoscaler::evaluate`] with the time, the scale
//!    target ([`ScaleTarget::workers`] for `current` live and `ready` ready workers) and one
//!    [`MetricObservation`] per metric, in order. An External metric is
//!    [`MetricObservation::External`] (values in thousandths; [`MetricObservation::external_units`]
//!    for whole numbers); a metric that could not be read is
//!    [`MetricObservation::Unavailable`], which the controller treats as an invalid metric
//!    (`ScalingActive` False, reason `FailedGetExternalMetric`, no scaling when no other metric
//!    is valid).
//! 3. When the [`ScaleDecision`] says `rescale`, set the worker count to `desired_replicas`.
//!    Its `conditions` and per-metric `metrics` say why.
//! 4. To survive a restart, store [`Autoscaler::state`] (serde data) and resume with
//!    [`Autoscaler::from_state`], as the controller resumes from the HPA's status.
//!
//! ```
//! use warren_hpa::{Autoscaler, ConditionType, MetricObservation, ScaleTarget, Timestamp};
//!
//! let manifest = r#"
//! apiVersion: autoscaling/v2
//! kind: HorizontalPodAutoscaler
//! metadata:
//!   name: workers
//! spec:
//!   scaleTargetRef:
//!     apiVersion: apps/v1
//!     kind: Deployment
//!     name: worker
//!   minReplicas: 1
//!   maxReplicas: 10
//!   metrics:
//!   - type: External
//!     external:
//!       metric:
//!         name: queue_depth
//!       target:
//!         type: AverageValue
//!         averageValue: "30"
//! "#;
//! let mut hpa = Autoscaler::from_yaml(manifest)?;
//! assert_eq!(hpa.metric_specs().len(), 1);
//!
//! // 120 messages waiting for one worker: 4 workers at 30 messages each.
//! let d = hpa.evaluate(Timestamp::from_secs(0), &ScaleTarget::workers(1, 1), &[MetricObservation::external_units(120)]);
//! assert!(d.rescale);
//! assert_eq!(d.desired_replicas, 4);
//!
//! // The queue halves: 2 workers would do, but the 5-minute downscale window holds 4.
//! let d = hpa.evaluate(Timestamp::from_secs(15), &ScaleTarget::workers(4, 4), &[MetricObservation::external_units(60)]);
//! assert!(!d.rescale);
//! assert_eq!(d.condition(ConditionType::AbleToScale).map(|c| c.reason.as_str()), Some("ScaleDownStabilized"));
//!
//! // The broker cannot be reached: no metric is valid, nothing changes.
//! let d = hpa.evaluate(Timestamp::from_secs(30), &ScaleTarget::workers(4, 4), &[MetricObservation::Unavailable("connection refused".into())]);
//! assert!(!d.rescale);
//! let active = d.condition(ConditionType::ScalingActive).map(|c| c.reason.as_str());
//! assert_eq!(active, Some("FailedGetExternalMetric"));
//!
//! // Once the window has passed, the scale-down happens.
//! let d = hpa.evaluate(Timestamp::from_secs(330), &ScaleTarget::workers(4, 4), &[MetricObservation::external_units(60)]);
//! assert!(d.rescale);
//! assert_eq!(d.desired_replicas, 2);
//! # Ok::<(), warren_hpa::ManifestError>(())
//! ```
//!
//! # Modules
//!
//! Each mirrors one part of Kubernetes, and each controller step is a public function named
//! after the Go function it mirrors (see `README.md` beside this crate for the map):
//!
//! - [`manifest`]: parse a manifest, default and validate it.
//! - [`defaults`]: the autoscaling/v2 API defaults (`defaults.go`).
//! - [`validation`]: the API server's validation (`validation.go`).
//! - [`replica_calculator`]: per-metric replica calculation (`replica_calculator.go`).
//! - [`horizontal`]: per-metric dispatch, combining metrics, tolerances, and the stateful
//!   [`Autoscaler`] (`horizontal.go`, reconcile half).
//! - [`normalization`]: stabilization, rate limits, histories (`horizontal.go`, normalization
//!   half).
//! - [`conditions`]: status conditions and their reasons.
//! - [`quantity`]: Kubernetes quantities as the controller reads them.
//! - [`time`]: the caller-supplied [`Timestamp`].
#![deny(missing_docs)]

pub mod conditions;
pub mod defaults;
pub mod horizontal;
pub mod manifest;
pub mod normalization;
pub mod quantity;
pub mod replica_calculator;
pub mod time;
pub mod validation;

pub use conditions::{Condition, ConditionChange, ConditionStatus, ConditionType};
pub use horizontal::{
    Autoscaler, AutoscalerState, ControllerConfig, CurrentMetricValue, FeatureGates, MetricFailure,
    MetricObservation, MetricProposal, ScaleDecision, ScaleTarget,
};
pub use manifest::{parse_manifest, read_manifest, ManifestError};
pub use replica_calculator::{Pod, PodMetric, PodMetricsInfo, Tolerances};
pub use time::Timestamp;
pub use validation::FieldError;
