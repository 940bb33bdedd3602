//! The live lab: everything needed to run, load and watch the real system on one machine
//! without a cluster: private broker and Prometheus nodes, the load generator, the demo and its
//! live view. The demo's report is drawn by [`crate::report`]; the offline what-if tools that
//! run the simulator instead of the system are [`crate::whatif`], beside this layer.
//!
//! May use [`crate::report`], [`crate::scaling`], [`crate::pipeline`] and the shared leaf
//! modules; not [`crate::whatif`]. Only the door ([`crate::cli`]) uses it.
//!
//! - [`rabbit_node`]: a private RabbitMQ node for `warren broker`, the demo and the tests.
//! - [`broker_command`]: `warren broker`, a private node kept in a directory (same name, ports
//!   and data on restart), `--detach` and `--stop`.
//! - [`rabbit_cluster`]: several private nodes as one cluster, for `warren broker --nodes 3`
//!   and the node-loss test.
//! - [`prometheus_node`]: a private Prometheus scraping broker, web, autoscaler and workers.
//! - [`rules`]: the recording and alerting rules that Prometheus loads, rendered for the demo's
//!   speed.
//! - [`load`]: `warren load`, open-loop load on `/generate` with rate patterns and a summary.
//! - [`ledger`]: job outcomes tailed from the workers' logs: lost and duplicate jobs.
//! - [`demo`]: `warren demo`, the whole system on one machine: broker, Prometheus, web,
//!   autoscaler, load, live view, report.
//! - [`dashboard`]: the demo's live terminal view.

pub mod broker_command;
pub mod dashboard;
pub mod demo;
pub mod ledger;
pub mod load;
pub mod ports;
pub mod prometheus_node;
pub mod rabbit_cluster;
pub mod rabbit_node;
pub mod rules;
