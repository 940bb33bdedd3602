//! The production pipeline: what runs in the cluster. `warren web` turns `GET /generate` into
//! confirmed jobs on a RabbitMQ queue; `warren worker` does them.
//!
//! May use the shared leaf modules ([`crate::config`], [`crate::metrics`], [`crate::telemetry`],
//! [`crate::shutdown`]) and its own modules; never [`crate::scaling`] or [`crate::lab`].
//!
//! - [`job`]: a job on the wire: [`job::JobId`], message properties, checks on a delivery.
//! - [`broker`]: the one AMQP connection helper and the queue topology (quorum queue, dead letters).
//! - [`publisher`]: publishes jobs with confirms over a self-healing connection.
//! - [`idempotency`]: the `Idempotency-Key` window: a retry with the same key publishes nothing again.
//! - [`web`]: `warren web`, the HTTP surface (`GET /generate`, `/metrics`, probes).
//! - [`worker`]: `warren worker`, the consumer that does the jobs and drains on SIGTERM.
//! - [`deletion_cost`]: the worker's opt-in pod-deletion-cost annotation (idle pods go first).

pub mod broker;
pub mod deletion_cost;
pub mod idempotency;
pub mod job;
pub mod publisher;
pub mod web;
pub mod worker;
