//! A discrete-event simulation of warren's work queue and workers, scaled by the very engine
//! `warren autoscale` runs ([`warren_hpa::Autoscaler`]), with arrivals from the shared rate
//! patterns ([`warren_pattern::Pattern`]). Pure: no tokio, no sockets, no clock; a seeded run is
//! reproducible bit for bit, and a day at 50 jobs/s takes about a second.
//!
//! # Using it
//!
//! ```
//! use warren_sim::{PolicySpec, Scenario};
//!
//! let scenario = Scenario::from_yaml(r#"
//! description: 2 jobs/s of 5 s jobs for 10 minutes
//! duration_secs: 600
//! slo_secs: 10
//! arrivals: { pattern: constant, rate: 2 }
//! work: { distribution: fixed, secs: 5 }
//! "#)?;
//! let outcome = warren_sim::run(&scenario, &PolicySpec::fixed(12))?;
//! assert_eq!(outcome.totals.jobs_arrived, 1200);
//! assert!(outcome.totals.wait_p99_secs < 0.001);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Modules
//!
//! - [`scenario`]: the scenario file (load, work, workers, metric pipeline, SLO, seed, duration),
//!   read strictly by [`warren_strict`].
//! - [`arrivals`]: the arrival stream over a pattern, evenly spaced or Poisson.
//! - [`work`]: work-time distributions.
//! - [`capacity`], [`estimator`]: the capacity metric and its inputs from the broker's own
//!   metrics, re-exported from [`warren_policy`], where production takes them from too.
//! - [`staffing`]: Erlang C and square-root staffing: the workers a wait SLO needs, and the
//!   beta of `busy + beta x sqrt(busy)` from it.
//! - [`oracle`]: the reference policy that knows the true arrival rate, for measuring only.
//! - [`policy`]: a fixed count, an HPA manifest or a KEDA ScaledObject; metric signals and the
//!   [`MetricFormula`] extension point.
//! - [`keda`]: a ScaledObject with rabbitmq triggers (or prometheus on the capacity metric) as
//!   KEDA applies it: the generated HPA, the scale loop (activation, cooldown, idle count, the
//!   pause and force annotations), each mode's metric from the broker's counts or the
//!   management API's rates.
//! - [`promql`]: a scraped series and the PromQL functions over it (`rate`, `irate`,
//!   `last_over_time`, lookback, staleness) as Prometheus 2.x and 3.x evaluate them.
//! - [`sim`]: the event loop ([`run`]).
//! - [`outcome`]: what a run produces; its [`Decision`] is [`warren_policy`]'s record of a sync.
//! - [`error`]: the errors more than one module returns.
#![deny(missing_docs)]

pub mod arrivals;
pub mod error;
pub mod keda;
pub mod oracle;
pub mod outcome;
pub mod policy;
pub mod promql;
pub mod scenario;
pub mod sim;
pub mod work;

pub use keda::KedaLoop;
pub use outcome::{Decision, RunOutcome, Sample, ScaleCause, ScaleEvent, Totals};
pub use policy::{FormulaFactory, MetricFormula, PolicyError, PolicySpec, Signal, Signals};
pub use scenario::{Scenario, ScenarioError};
pub use sim::{run, run_with_progress, SimError};
pub use warren_policy::{capacity, estimator, staffing};
pub use work::WorkTime;
