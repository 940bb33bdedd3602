//! Kubernetes' autoscaling/v2 HorizontalPodAutoscaler decision logic, as a pure library.
#![deny(missing_docs)]
