//! warren: queue-driven autoscaling for RabbitMQ workers.
//!
//! The `warren` binary is a thin `main.rs` over this library. Modules, one concern each:
//!
//! - [`cli`]: the command line; every flag also an environment variable; parsed and checked once.
//! - [`config`]: typed configuration shared by the subcommands ([`config::AmqpUrl`] redacts secrets).
//! - [`telemetry`]: the logging subscriber.
//! - [`shutdown`]: the one SIGTERM/SIGINT helper (first signal drains, second exits at once).
//! - [`job`]: a job on the wire: [`job::JobId`], message properties, checks on a delivery.
//! - [`broker`]: the one AMQP connection helper and the queue topology (quorum queue, dead letters).
//! - [`publisher`]: publishes jobs with confirms over a self-healing connection.
//! - [`web`]: `warren web`, the HTTP surface (`GET /generate`, `/metrics`, probes).
//! - [`worker`]: `warren worker`, the consumer that does the jobs and drains on SIGTERM.
//! - [`load`]: `warren load`, open-loop load on `/generate` with rate patterns and a summary.
//! - [`autoscale`]: `warren autoscale`, the HPA engine driving a local worker pool.
//! - [`metric_source`]: reads the HPA's metrics from the broker or from Prometheus.
//! - [`pool`]: the local scale target, a pool of `warren worker` processes with drain-aware scale-down.
//! - [`ledger`]: job outcomes tailed from the workers' logs: lost and duplicate jobs.
//! - [`prometheus_node`]: a private Prometheus scraping broker, web, autoscaler and workers.
//! - [`metrics`]: the metrics registry pattern and the operations router (`/metrics`, probes).
//! - [`demo`]: `warren demo`, the whole system on one machine: broker, Prometheus, web, autoscaler, load, live view, report.
//! - [`report`]: the demo's report: time-series CSV, charts, HTML page; also `warren simulate`'s.
//! - [`simulate`]: `warren simulate`, policies x scenarios in the simulator ([`warren_sim`]): a table, a report.
//! - [`dashboard`]: the demo's live terminal view.
//! - [`rabbit_node`]: a private RabbitMQ node for `warren broker`, the demo and the tests.
#![warn(missing_docs)]

pub mod autoscale;
pub mod broker;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod job;
pub mod ledger;
pub mod load;
pub mod metric_source;
pub mod metrics;
pub mod pool;
pub mod prometheus_node;
pub mod publisher;
pub mod rabbit_node;
pub mod report;
pub mod shutdown;
pub mod simulate;
pub mod telemetry;
pub mod web;
pub mod worker;
