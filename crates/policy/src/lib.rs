//! warren's control step as a pure library: what a sync reads, the metrics it computes, the
//! one sync step both `warren autoscale` and the simulator (`warren-sim`) run, and the record
//! it leaves. Pure: no tokio, no I/O, no clock; time is a parameter. Production (`warren
//! autoscale`) depends on this crate and on `warren-hpa`, never on the simulator.
//!
//! # Modules
//!
//! - [`signals`]: what the metric pipeline delivers ([`Signals`]), a count by name
//!   ([`Signal`]), and a metric computed over them ([`MetricFormula`]).
//! - [`capacity`]: the capacity metric `warren_workers_needed` (the recording rule's arithmetic)
//!   and its [`MetricFormula`] over the signals.
//! - [`estimator`]: the capacity metric's inputs for any queue from the broker's own metrics
//!   (RabbitMQ 3.10 and 4.x): arrivals by per-queue counter or by conservation, work time by
//!   histogram, by Little's law, or by default.
//! - [`record`]: the record of one sync ([`Decision`]).
#![deny(missing_docs)]

pub mod capacity;
pub mod estimator;
pub mod record;
pub mod signals;

pub use record::Decision;
pub use signals::{MetricFormula, Signal, Signals};
