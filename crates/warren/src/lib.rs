//! warren: queue-driven autoscaling for RabbitMQ workers.
//!
//! The `warren` binary is a thin `main.rs` over this library. The modules sit in layers, and a
//! module uses only its own layer and the ones below it:
//!
//! - [`cli`]: the door. Assembles every command's arguments into the command line; each
//!   command's `Args` and their checking live with the command. Nothing imports it.
//! - [`lab`]: the live lab, the real system on one machine: private broker and Prometheus
//!   nodes ([`lab::rabbit_node`], [`lab::prometheus_node`]), `warren load` ([`lab::load`]), job
//!   outcomes from the workers' logs ([`lab::ledger`]), `warren demo` ([`lab::demo`]) with its
//!   live view ([`lab::dashboard`]). Uses `report`, `scaling` and `pipeline`.
//! - [`whatif`], beside `lab`: the what-if tools, which run the simulator ([`warren_sim`])
//!   instead of the system: `warren simulate` ([`whatif::simulate`]), `warren recommend`
//!   ([`whatif::recommend`]), `warren rules` ([`whatif::capacity_rules`]). Uses `report`,
//!   `scaling` and `pipeline`; `lab` and `whatif` do not use each other.
//! - [`report`]: the report of a run, live or simulated: time-series CSV, charts, HTML page.
//!   Uses only the shared leaves.
//! - [`scaling`]: the scaling loop: the HPA's metrics ([`scaling::metric_source`]), the local
//!   worker pool ([`scaling::pool`]), `warren autoscale` ([`scaling::autoscale`]). Uses
//!   `pipeline`.
//! - [`pipeline`]: the production pipeline: a job on the wire ([`pipeline::job`]), the AMQP
//!   connection and topology ([`pipeline::broker`]), confirmed publishes
//!   ([`pipeline::publisher`]), `warren web` ([`pipeline::web`]), `warren worker`
//!   ([`pipeline::worker`]) and its pod's deletion cost ([`pipeline::deletion_cost`]).
//! - Shared leaves, below all of them, using none of them:
//!   - [`config`]: typed configuration shared by the subcommands ([`config::AmqpUrl`] redacts
//!     secrets).
//!   - [`metrics`]: the metrics registry pattern and the operations router (`/metrics`, probes).
//!   - [`telemetry`]: the logging subscriber.
//!   - [`shutdown`]: the one SIGTERM/SIGINT helper (first signal drains, second exits at once).
//!   - [`memory`]: gives the allocator's free pages back when a busy process goes quiet.
//!   - [`records`]: the decision and job-outcome records logged as JSON, and their one parser.
//!
//! `scripts/check-layers` (run by `scripts/test`) fails on any `crate::` path that points up or
//! across to a side layer, and on any import circle between the modules of one folder.
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod lab;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod records;
pub mod report;
pub mod scaling;
pub mod shutdown;
pub mod telemetry;
pub mod whatif;
