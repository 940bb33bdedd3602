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
//! - [`metrics`]: the metrics registry pattern and the operations router (`/metrics`, probes).
//! - [`rabbit_node`]: a private RabbitMQ node for `warren broker`, the demo and the tests.
#![warn(missing_docs)]

pub mod broker;
pub mod cli;
pub mod config;
pub mod job;
pub mod metrics;
pub mod publisher;
pub mod rabbit_node;
pub mod shutdown;
pub mod telemetry;
pub mod web;
pub mod worker;
