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
//! - [`staffing`]: Erlang C and square-root staffing: the workers a p95 wait SLO needs, and the
//!   beta of `busy + beta x sqrt(busy)` from it (the capacity metric's headroom).
//! - [`step`]: one sync of the HPA engine ([`step::sync`]): metric readings and the pool's
//!   counts in, the decision and its record out.
//! - [`record`]: the record of one sync ([`Decision`]).
#![deny(missing_docs)]

pub mod capacity;
pub mod estimator;
pub mod record;
pub mod signals;
pub mod staffing;
pub mod step;

pub use record::Decision;
pub use signals::{MetricFormula, Signal, Signals};
pub use step::{sync, PoolCounts, Synced};

/// An error's text on one line (a YAML or manifest error spans several), as a log line or a
/// one-line config error shows it.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
