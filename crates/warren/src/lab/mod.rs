//! The one-machine lab: everything needed to run, load and watch the system on one machine
//! without a cluster: private broker and Prometheus nodes, the load generator, the demo, its
//! live view and its report.
//!
//! May use [`crate::scaling`], [`crate::pipeline`] and the shared leaf modules. Nothing below
//! it uses it.
//!
//! - [`rabbit_node`]: a private RabbitMQ node for `warren broker`, the demo and the tests.
//! - [`broker_command`]: `warren broker`, a private node kept in a directory (same name, ports
//!   and data on restart), `--detach` and `--stop`.
//! - [`rabbit_cluster`]: several private nodes as one cluster, for `warren broker --nodes 3`
//!   and the node-loss test.
//! - [`prometheus_node`]: a private Prometheus scraping broker, web, autoscaler and workers.
//! - [`rules`]: the recording and alerting rules that Prometheus loads, rendered for the demo's
//!   speed.
//! - [`capacity_rules`]: `warren rules`, the capacity metric's recording rules for every
//!   queue of a cluster (the PromQL mirror of `warren_sim::estimator`), and per queue its own
//!   rules, HPA or KEDA ScaledObject.
//! - [`load`]: `warren load`, open-loop load on `/generate` with rate patterns and a summary.
//! - [`ledger`]: job outcomes tailed from the workers' logs: lost and duplicate jobs.
//! - [`demo`]: `warren demo`, the whole system on one machine: broker, Prometheus, web,
//!   autoscaler, load, live view, report.
//! - [`dashboard`]: the demo's live terminal view.
//! - [`report`]: the demo's report: time-series CSV, charts, HTML page; also `warren simulate`'s.
//! - [`simulate`]: `warren simulate`, policies x scenarios in the simulator ([`warren_sim`]): a
//!   table and a report.
//! - [`recommend`]: `warren recommend`, a search of the queue-length and capacity policies in
//!   the simulator for the cheapest manifest that meets a queue-wait SLO.

pub mod broker_command;
pub mod capacity_rules;
pub mod dashboard;
pub mod demo;
pub mod ledger;
pub mod load;
pub mod ports;
pub mod prometheus_node;
pub mod rabbit_cluster;
pub mod rabbit_node;
pub mod recommend;
pub mod report;
pub mod rules;
pub mod simulate;
