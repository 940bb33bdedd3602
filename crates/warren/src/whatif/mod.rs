//! The what-if tools: questions about a deployment answered without running it. They run the
//! simulator ([`warren_sim`]) on scenarios, or render what a choice ships, and touch no broker
//! and no worker. The live lab ([`crate::lab`]) runs the real system instead; the two sit side
//! by side and neither uses the other. `capture` reads a live queue's past from Prometheus as
//! the simulator's input.
//!
//! May use [`crate::report`], [`crate::scaling`] (the built-in HPA manifests),
//! [`crate::pipeline`] and the shared leaf modules; not [`crate::lab`]. Only the door
//! ([`crate::cli`]) uses it.
//!
//! - [`simulate`]: `warren simulate`, policies x scenarios in the simulator: a table and a
//!   report.
//! - [`recommend`]: `warren recommend`, a search of the queue-length and capacity policies in
//!   the simulator for the cheapest manifest that meets a queue-wait SLO.
//! - [`capacity_rules`]: `warren rules`, the capacity metric's recording rules for every
//!   queue of a cluster (the PromQL mirror of `warren_policy::estimator`), and per queue its own
//!   rules, HPA or KEDA ScaledObject; what `recommend` prints for a capacity winner.
//! - [`capture`]: `warren capture`, a queue's past in Prometheus (arrivals, work time, the
//!   metric pipeline) as a scenario file, with what happened (replicas, backlog, wait) beside
//!   it.

pub mod capacity_rules;
pub mod capture;
pub mod recommend;
pub mod simulate;
