//! What the metric pipeline delivers to a policy, and what a metric computed from it is: the
//! broker's counts and counters as of a refresh or a scrape ([`Signals`]), one of its counts by
//! name ([`Signal`]), and a metric over them ([`MetricFormula`]), such as the capacity metric
//! ([`crate::capacity::CapacityFormula`], [`crate::estimator::QueueEstimator`]). The simulator
//! feeds them from its model; `warren autoscale` from the broker's scrapes.

use serde::{Deserialize, Serialize};

/// A queue count the broker exposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Messages ready (`rabbitmq_queue_messages_ready`, KEDA's QueueLength over AMQP).
    Ready,
    /// Messages delivered and not acked.
    Unacked,
    /// Both (`rabbitmq_queue_messages`, the original application's exporter, KEDA over HTTP).
    ReadyUnacked,
}

impl Signal {
    /// The signal an External metric's name stands for, as the adapter rule and the original application's
    /// exporter map them.
    pub fn for_metric_name(name: &str) -> Option<Signal> {
        match name {
            "rabbitmq_queue_messages_ready" => Some(Signal::Ready),
            "rabbitmq_queue_messages_unacked" | "rabbitmq_queue_messages_unacknowledged" => {
                Some(Signal::Unacked)
            }
            "rabbitmq_queue_messages" | "rabbitmq_queue_length" => Some(Signal::ReadyUnacked),
            _ => None,
        }
    }

    /// This signal's value in `seen`.
    pub fn read(self, seen: &Signals) -> f64 {
        match self {
            Signal::Ready => seen.ready as f64,
            Signal::Unacked => seen.unacked as f64,
            Signal::ReadyUnacked => (seen.ready + seen.unacked) as f64,
        }
    }
}

/// What the metric pipeline delivers: the system's counts and counters as of
/// `at_secs` (a broker refresh, a scrape), which is earlier than the moment they are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Signals {
    /// When these values were taken, in seconds on the reader's clock (simulated ones in the simulator).
    pub at_secs: f64,
    /// Messages ready.
    pub ready: u64,
    /// Messages delivered, not acked.
    pub unacked: u64,
    /// Jobs arrived so far (a counter: a rate is its difference over time).
    pub arrived_total: u64,
    /// Jobs acked so far.
    pub acked_total: u64,
    /// Seconds of work done by the acked jobs so far (mean work time = its difference over
    /// `acked_total`'s).
    pub busy_secs_total: f64,
    /// Workers asked for and not stopping.
    pub workers_current: u32,
    /// Workers ready.
    pub workers_ready: u32,
}

/// A metric computed from the delayed signals; its value goes to the HPA as an External metric.
/// It keeps whatever state it needs (earlier readings, for rates).
pub trait MetricFormula: Send {
    /// What it computes, for the report.
    fn describe(&self) -> String;
    /// The metric's value, from what the pipeline delivers at this sync.
    fn value(&mut self, seen: &Signals) -> f64;
}
