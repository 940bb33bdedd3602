//! The scaling loop: the Kubernetes HPA algorithm (`warren-hpa`) reading the queue's metrics and
//! sizing a local pool of workers, as the cluster's controller sizes a Deployment.
//!
//! May use [`crate::pipeline`] and the shared leaf modules; never [`crate::lab`].
//!
//! - [`metric_source`]: reads the HPA's metrics from the broker or from Prometheus.
//! - [`pool`]: the local scale target, a pool of `warren worker` processes with drain-aware scale-down.
//! - [`autoscale`]: `warren autoscale`, the HPA engine driving the pool.
//! - [`state_file`]: the engine's state saved after each decision, to resume from after a restart.

pub mod autoscale;
pub mod metric_source;
pub mod pool;
pub mod state_file;
