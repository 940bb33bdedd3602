//! The capacity metric for any RabbitMQ queue, from the broker's own metrics: the inputs of
//! [`crate::capacity::workers_needed`] per (vhost, queue), for producers and consumers that
//! export nothing themselves.
//!
//! # The contract
//!
//! [`QueueEstimator::observe`] takes one scrape of one queue ([`QueueScrape`]) and returns the
//! metric after it ([`Estimate`]). Its inputs are the series of the broker's prometheus plugin
//! (`/metrics/detailed`, collector
//! `deps/rabbitmq_prometheus/src/collectors/prometheus_rabbitmq_core_metrics_collector.erl` in
//! rabbitmq-server, read at tags v3.10.8 and v4.0.0), filtered to the queue's `vhost` and
//! `queue` labels, plus, where the workers export one, their work-time histogram:
//!
//! - **backlog**: `rabbitmq_detailed_queue_messages_ready` (family `queue_coarse_metrics`, labels
//!   `{vhost, queue}`, the same in 3.10 and 4.x); the newest count within
//!   [`BACKLOG_LOOKBACK_SECS`], else 0.
//! - **arrival rate**, over [`ARRIVAL_WINDOW_SECS`] (between the last two scrapes when a scrape
//!   gap left fewer than two in it):
//!   - RabbitMQ 4.0 and later: the per-queue publish counter
//!     `rabbitmq_detailed_queue_exchange_messages_published_total` (family
//!     `queue_exchange_metrics`, labels `{vhost, exchange, queue}`), summed over exchanges. It
//!     wins wherever it exists.
//!   - RabbitMQ 3.10-3.13 has only per-channel publish counters (family
//!     `channel_queue_exchange_metrics`, labels `{channel, queue_vhost, queue, exchange_vhost,
//!     exchange}`): a producer's series vanishes with its channel, so a producer that
//!     reconnects more often than the scrape interval is never seen at all. So on 3.10 the rate
//!     is by conservation instead: arrivals = the change of the queue's messages (ready +
//!     unacked, `rabbitmq_detailed_queue_messages`) + the messages that left it, finished by
//!     consumers (acked, auto-ack deliveries and auto-ack gets: `channel_messages_acked_total`,
//!     `channel_messages_delivered_total`, `channel_get_total` of family
//!     `channel_queue_metrics`, labels `{channel, vhost, queue}`). Those come from the
//!     consumers' channels, which live as long as the consumers, and a [`RunningTotal`] keeps
//!     what a closed channel counted. Not counted: messages rejected, expired or dropped by a
//!     length limit (the broker has no per-queue counter for them in 3.10), so a queue that
//!     dead-letters much reads a lower arrival rate. Clamped at 0 (a deleted and re-created
//!     queue's count falls). The change is taken between the oldest and newest scrapes of the
//!     window that have a count: a count missing once the queue was seen (a leader moving) is
//!     skipped, as PromQL's `deriv` skips it. Before the broker first reports the queue (not
//!     declared yet, or declared less than one statistics interval ago: a quorum queue's
//!     first tick), it holds 0 messages, so the backlog found at its first report arrived
//!     since. Reading that first missing count as "no change" instead made `warren demo`'s
//!     first minute read 0.13 jobs/s for 0.6 (only the finished ones), and the live loop ask
//!     for 2 workers where the simulator asked for 5. This is one place where the estimator
//!     knows more than the rules: it knows when it began to watch, and Prometheus' `deriv` on
//!     a new queue starts from its first sample, so the rules read a new queue's first backlog
//!     as no arrival for its first minute.
//! - **work time**, over [`WORK_WINDOW_SECS`], the first that exists:
//!   1. measured: the increase of the workers' histogram `_sum` over its `_count`
//!      (warren worker's `job_duration_seconds`, or the user's), when a job finished;
//!   2. from the broker alone, by Little's law: the mean number of busy consumers over the
//!      window / the mean rate messages finished over the same window (each scrape's rate
//!      over the minute before it, 0 when idle), where busy = min(unacked, consumers x
//!      concurrency per consumer). With prefetch > 1 the unacked count also holds messages
//!      waiting in a consumer's buffer, which no one works on; the clamp by consumers x
//!      [`Knobs::concurrency_per_consumer`] (1 for a consumer that works on one message at a
//!      time, whatever its prefetch) bounds that. Without the clamp, prefetch p on a loaded
//!      queue would read up to p times the real work time. Taken only when positive;
//!   3. else the declared default ([`Knobs::default_work_secs`]).
//!
//!   The broker estimate lags the measured one: it is a mean over the window, and RabbitMQ
//!   refreshes the queue's counts every `collect_statistics_interval` (5 s by default), so the
//!   unacked count is up to 5 s old.
//! - **knobs** ([`Knobs`]): one set per queue; the caller resolves the global defaults and
//!   the queue's overrides.
//! - **sanity**: every output is finite and >= 0; no traffic is 0 arrivals and the default
//!   work time; a cold start (one scrape) is the backlog term at the default work time; a
//!   missing queue series keeps the last backlog for 2 minutes.
//!
//! Who uses it: `warren autoscale --metric-source broker` (the `warren` crate's
//! `scaling::metric_source`: `queue_scrape` picks one queue's series out of a scrape, and
//! `CapacityScrapes` adds the pool's workers' `job_duration_seconds` where they answer, so a
//! pool of programs that export nothing is sized from the broker alone; the knobs are
//! `--capacity-utilisation`, `--capacity-beta`, `--capacity-drain`, `--capacity-default-work`,
//! `--capacity-concurrency`), and the simulator (`warren simulate --capacity-estimate broker`,
//! through [`MetricFormula`]). The recording rules that compute the same per (vhost, queue) for
//! a whole cluster are printed by `warren rules` (`lab::capacity_rules` in the `warren` crate),
//! their windows the constants below; `tests/capacity_promql.rs` checks that both agree on the
//! same series. Pure: no I/O.

use std::collections::{BTreeMap, VecDeque};

use crate::capacity::{workers_needed, Inputs, Knobs, Needed};
pub use crate::capacity::{ARRIVAL_WINDOW_SECS, WORK_WINDOW_SECS};
use crate::signals::{MetricFormula, Signals};

/// How long a ready count stands in for a missing one (the rule's `last_over_time(...[2m])`).
pub const BACKLOG_LOOKBACK_SECS: f64 = 120.0;

/// What one scrape of the broker (and the queue's workers, if they export a histogram) gave
/// for one queue. A map's keys name series (a channel, an exchange, a worker): series come
/// and go, and each map is read as a [`RunningTotal`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueScrape {
    /// When, in seconds, on the caller's clock.
    pub at_secs: f64,
    /// `queue_messages_ready`; `None` when the broker had no series for the queue.
    pub ready: Option<f64>,
    /// `queue_messages_unacked`.
    pub unacked: Option<f64>,
    /// `queue_messages` (ready + unacked, as the broker counts them).
    pub messages: Option<f64>,
    /// `queue_consumers`.
    pub consumers: Option<f64>,
    /// RabbitMQ 4.x: `queue_exchange_messages_published_total` by exchange; empty on 3.10.
    pub published: BTreeMap<String, f64>,
    /// Messages finished by consumers, by series: on 4.x the queue's
    /// `queue_messages_acked_total`, `queue_messages_delivered_total` and `queue_get_total`;
    /// on 3.10 the same counters per channel (`channel_messages_acked_total`, ...).
    pub finished: BTreeMap<String, f64>,
    /// The workers' histogram `_sum` (seconds of work), by worker; empty where none exports one.
    pub measured_work_secs: BTreeMap<String, f64>,
    /// The workers' histogram `_count` (jobs), by worker.
    pub measured_jobs: BTreeMap<String, f64>,
}

/// Where the work time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkSource {
    /// The workers' histogram.
    Measured,
    /// The broker, by Little's law.
    Broker,
    /// The declared default.
    Default,
}

/// Where the arrival rate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrivalSource {
    /// RabbitMQ 4.x's per-queue publish counter.
    PerQueue,
    /// Conservation: change of the queue's messages + messages finished.
    Conservation,
    /// Fewer than two scrapes: no rate yet, 0.
    None,
}

/// The metric after a scrape, with where its inputs came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The metric and its terms.
    pub needed: Needed,
    /// Where the arrival rate came from.
    pub arrival: ArrivalSource,
    /// Where the work time came from.
    pub work: WorkSource,
    /// Consumers counted busy at this scrape (min(unacked, consumers x concurrency)).
    pub busy: f64,
}

/// A counter summed over series that come and go (channels that close, workers that stop):
/// each series adds what it rose by since its last sample, a series seen for the first time
/// adds its value (a new channel or worker counts from 0), and one that fell was restarted and
/// adds its new value, as PromQL's `rate` reads a counter reset. So the sum only rises, and a
/// window's increase of it is what the series did in that window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunningTotal {
    last: BTreeMap<String, f64>,
    total: f64,
}

impl RunningTotal {
    /// Takes the current value of every live series (those missing are gone for good) and
    /// returns the total.
    pub fn observe(&mut self, current: BTreeMap<String, f64>) -> f64 {
        for (key, value) in &current {
            if !value.is_finite() || *value < 0.0 {
                continue;
            }
            self.total += match self.last.get(key) {
                Some(last) if value >= last => value - last,
                _ => *value,
            };
        }
        self.last = current;
        self.total
    }

    /// The value last seen of one series.
    pub fn last(&self, key: &str) -> Option<f64> {
        self.last.get(key).copied()
    }
}

/// One scrape, reduced to totals and gauges.
#[derive(Clone, Copy, Debug)]
struct Point {
    at_secs: f64,
    messages: Option<f64>,
    /// The 4.x running total, when its series were there.
    published: Option<f64>,
    finished: f64,
    /// Messages finished per second over the minute before (as the rules record it), 0 with
    /// no rate.
    finish_rate: f64,
    busy: f64,
    measured_work_secs: f64,
    measured_jobs: f64,
}

/// The estimator of one queue: its scrapes of the last [`WORK_WINDOW_SECS`] and running totals.
#[derive(Clone, Debug)]
pub struct QueueEstimator {
    knobs: Knobs,
    last_ready: Option<(f64, f64)>,
    published: RunningTotal,
    finished: RunningTotal,
    measured_work_secs: RunningTotal,
    measured_jobs: RunningTotal,
    points: VecDeque<Point>,
    /// Whether the broker has reported the queue's message count yet.
    queue_reported: bool,
}

fn usable(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v >= 0.0)
}

impl QueueEstimator {
    /// An estimator with this queue's knobs and no scrape yet (a cold start).
    pub fn new(knobs: Knobs) -> Self {
        Self {
            knobs,
            last_ready: None,
            published: RunningTotal::default(),
            finished: RunningTotal::default(),
            measured_work_secs: RunningTotal::default(),
            measured_jobs: RunningTotal::default(),
            points: VecDeque::new(),
            queue_reported: false,
        }
    }

    /// The knobs in force.
    pub fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    /// Consumers counted busy: min(unacked, consumers x concurrency); the unacked count alone
    /// when the broker gave no consumer count.
    pub fn busy(knobs: &Knobs, unacked: Option<f64>, consumers: Option<f64>) -> f64 {
        let unacked = usable(unacked).unwrap_or(0.0);
        match usable(consumers) {
            Some(c) => unacked.min(c * knobs.concurrency_per_consumer),
            None => unacked,
        }
    }

    /// Adds one scrape (a scrape no newer than the last one changes nothing) and returns the
    /// metric after it.
    pub fn observe(&mut self, scrape: &QueueScrape) -> Estimate {
        let newest_at = self.points.back().map(|p| p.at_secs);
        if newest_at.is_none_or(|at| scrape.at_secs > at) {
            if let Some(ready) = usable(scrape.ready) {
                self.last_ready = Some((scrape.at_secs, ready));
            }
            let published = (!scrape.published.is_empty())
                .then(|| self.published.observe(scrape.published.clone()));
            let finished = self.finished.observe(scrape.finished.clone());
            let finish_rate = self.rate_base(scrape.at_secs).map_or(0.0, |old| {
                (finished - old.finished) / (scrape.at_secs - old.at_secs)
            });
            // Until the broker first reports the queue (a queue not declared yet, or one whose
            // process has not yet emitted its first stats: up to one statistics interval after
            // its declaration), it holds no messages, as far as anyone can know: so what it
            // holds when it first appears arrived since, and counts in the arrival rate.
            // Afterwards a missing count (a leader moving) is unknown, not 0.
            let messages = usable(scrape.messages);
            self.queue_reported |= messages.is_some();
            let point = Point {
                at_secs: scrape.at_secs,
                messages: messages.or((!self.queue_reported).then_some(0.0)),
                published,
                finished,
                finish_rate,
                busy: Self::busy(&self.knobs, scrape.unacked, scrape.consumers),
                measured_work_secs: self
                    .measured_work_secs
                    .observe(scrape.measured_work_secs.clone()),
                measured_jobs: self.measured_jobs.observe(scrape.measured_jobs.clone()),
            };
            self.points.push_back(point);
            while self
                .points
                .front()
                .is_some_and(|p| p.at_secs < scrape.at_secs - WORK_WINDOW_SECS)
            {
                self.points.pop_front();
            }
        }
        self.estimate()
    }

    /// The scrape a rate at `at` is taken from: the oldest within the minute before, or, when
    /// a scrape gap left none there, the one before `at` (PromQL's `irate` over the last two
    /// samples). `None` before the second scrape.
    fn rate_base(&self, at: f64) -> Option<Point> {
        let earlier = |p: &&Point| p.at_secs < at;
        self.points
            .iter()
            .filter(earlier)
            .find(|p| p.at_secs > at - ARRIVAL_WINDOW_SECS)
            .or_else(|| self.points.iter().rfind(earlier))
            .copied()
    }

    /// Arrivals per second by conservation between `from` and `to`: the change of the queue's
    /// messages + the messages finished, clamped at 0. The change is taken between the oldest
    /// and newest scrapes of that span that have a message count (PromQL's `deriv` too uses
    /// only the samples there are), with the messages finished over the same scrapes: a scrape
    /// without a count at either end would otherwise read as no change at all, and a growing
    /// backlog as no arrivals. With fewer than two counts, the messages finished alone.
    fn conserved_rate(&self, from: Point, to: Point) -> f64 {
        let mut counted = self
            .points
            .iter()
            .filter(|p| p.at_secs >= from.at_secs && p.at_secs <= to.at_secs)
            .filter_map(|p| p.messages.map(|m| (p, m)));
        let first = counted.next();
        let last = counted.next_back();
        let rate = match (first, last) {
            (Some((a, ma)), Some((b, mb))) => {
                (mb - ma + b.finished - a.finished) / (b.at_secs - a.at_secs)
            }
            _ => (to.finished - from.finished) / (to.at_secs - from.at_secs),
        };
        rate.max(0.0)
    }

    /// The metric as the scrapes so far give it.
    fn estimate(&self) -> Estimate {
        let Some(newest) = self.points.back().copied() else {
            return Estimate {
                needed: workers_needed(&self.knobs, &Inputs::default()),
                arrival: ArrivalSource::None,
                work: WorkSource::Default,
                busy: 0.0,
            };
        };
        let backlog = match self.last_ready {
            Some((at, ready)) if newest.at_secs - at <= BACKLOG_LOOKBACK_SECS => ready,
            _ => 0.0,
        };
        let arrival_from = self.rate_base(newest.at_secs);
        let (arrival_rate, arrival) = match arrival_from {
            None => (None, ArrivalSource::None),
            Some(old) => {
                let dt = newest.at_secs - old.at_secs;
                match (newest.published, old.published) {
                    (Some(new), Some(old)) => (Some((new - old) / dt), ArrivalSource::PerQueue),
                    _ => (
                        Some(self.conserved_rate(old, newest)),
                        ArrivalSource::Conservation,
                    ),
                }
            }
        };
        let oldest = self.points.front().copied().unwrap_or(newest);
        let jobs = newest.measured_jobs - oldest.measured_jobs;
        let measured = (jobs > 0.0)
            .then(|| (newest.measured_work_secs - oldest.measured_work_secs) / jobs)
            .filter(|w| w.is_finite() && *w > 0.0);
        // Little's law over the window: mean busy over mean finish rate, idle time included
        // (`avg_over_time` of both recorded series).
        let window: Vec<&Point> = self
            .points
            .iter()
            .filter(|p| p.at_secs > newest.at_secs - WORK_WINDOW_SECS)
            .collect();
        let mean = |f: fn(&Point) -> f64| {
            window.iter().map(|p| f(p)).sum::<f64>() / window.len().max(1) as f64
        };
        let mean_finish_rate = mean(|p| p.finish_rate);
        let little = (mean_finish_rate > 0.0)
            .then(|| mean(|p| p.busy) / mean_finish_rate)
            .filter(|w| w.is_finite() && *w > 0.0);
        let (work_secs, work) = match (measured, little) {
            (Some(m), _) => (Some(m), WorkSource::Measured),
            (None, Some(l)) => (Some(l), WorkSource::Broker),
            (None, None) => (None, WorkSource::Default),
        };
        Estimate {
            needed: workers_needed(
                &self.knobs,
                &Inputs {
                    arrival_rate,
                    work_secs,
                    backlog: Some(backlog),
                },
            ),
            arrival,
            work,
            busy: newest.busy,
        }
    }
}

/// In the simulator, the estimator sees what a RabbitMQ 3.10 broker would report of the
/// simulated queue and nothing from the workers: its ready and unacked counts, its consumers
/// (the ready workers) and its consumers' acks; no publish counter (so arrivals by
/// conservation) and no histogram (so the work time by Little's law). So `warren simulate
/// --capacity-estimate broker` predicts a queue whose workers export nothing, with the broker
/// estimate's own lag and bias.
impl MetricFormula for QueueEstimator {
    fn describe(&self) -> String {
        format!(
            "from the broker alone: busy / {} + {} x sqrt(busy) + ready x work time / {} s (busy = arrivals by conservation x work time by Little's law)",
            self.knobs.target_utilisation, self.knobs.beta, self.knobs.drain_secs
        )
    }

    fn value(&mut self, seen: &Signals) -> f64 {
        let scrape = QueueScrape {
            at_secs: seen.at_secs,
            ready: Some(seen.ready as f64),
            unacked: Some(seen.unacked as f64),
            messages: Some((seen.ready + seen.unacked) as f64),
            consumers: Some(f64::from(seen.workers_ready)),
            finished: BTreeMap::from([("acked".to_owned(), seen.acked_total as f64)]),
            ..QueueScrape::default()
        };
        self.observe(&scrape).needed.workers_needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn a_running_total_outlives_its_series_and_reads_a_fall_as_a_restart() {
        let mut t = RunningTotal::default();
        assert_eq!(t.observe(map(&[("a", 10.0)])), 10.0);
        assert_eq!(t.observe(map(&[("a", 15.0), ("b", 2.0)])), 17.0);
        // a is gone (a closed channel, a stopped worker): what it did stays.
        assert_eq!(t.observe(map(&[("b", 4.0)])), 19.0);
        // b fell: it restarted, and counts from 0 again.
        assert_eq!(t.observe(map(&[("b", 1.0)])), 20.0);
        // A NaN or negative sample adds nothing.
        assert_eq!(t.observe(map(&[("b", f64::NAN)])), 20.0);
    }

    /// A steady queue on RabbitMQ 3.10 as the broker reports it: `rate` jobs/s of `work` s
    /// each, `consumers` consumers of prefetch `prefetch` (each working on one message), the
    /// queue holding `ready` ready messages. The producers may reconnect at any pace: on 3.10
    /// the estimate does not read their channels.
    struct Steady {
        rate: f64,
        work: f64,
        consumers: f64,
        prefetch: f64,
        ready: f64,
    }

    impl Steady {
        fn scrape_310(&self, at: f64) -> QueueScrape {
            let finished = self.rate * at;
            let busy = self.rate * self.work;
            // The consumers hold their prefetch full while a backlog waits.
            let unacked = if self.ready > 0.0 {
                self.consumers * self.prefetch
            } else {
                busy
            };
            // Each consumer's channel lives for the whole run, and finishes its share.
            let finished = (0..self.consumers as u32)
                .map(|c| (format!("channel <0.{c}.0>"), finished / self.consumers))
                .collect();
            // The producers' per-channel publish counters are not an input on 3.10 (see the
            // contract): `published` stays empty, as a 3.10 broker gives no per-queue counter.
            QueueScrape {
                at_secs: at,
                ready: Some(self.ready),
                unacked: Some(unacked),
                messages: Some(self.ready + unacked),
                consumers: Some(self.consumers),
                finished,
                ..QueueScrape::default()
            }
        }

        fn scrape_4x(&self, at: f64) -> QueueScrape {
            let mut s = self.scrape_310(at);
            s.published = map(&[("amq.default", self.rate * at)]);
            s.finished = map(&[("acked", self.rate * at), ("delivered", 0.0), ("get", 0.0)]);
            s
        }
    }

    fn run(
        estimator: &mut QueueEstimator,
        from: u32,
        to: u32,
        scrape: impl Fn(f64) -> QueueScrape,
    ) -> Estimate {
        let mut last = None;
        for i in from..=to {
            last = Some(estimator.observe(&scrape(15.0 * f64::from(i))));
        }
        last.expect("at least one scrape")
    }

    #[test]
    fn on_310_the_arrival_rate_is_conserved_while_producers_reconnect_and_work_is_littles_law() {
        let load = Steady {
            rate: 2.0,
            work: 3.0,
            consumers: 8.0,
            prefetch: 1.0,
            ready: 0.0,
        };
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        let n = run(&mut e, 0, 40, |t| load.scrape_310(t));
        assert_eq!(n.arrival, ArrivalSource::Conservation);
        assert_eq!(n.work, WorkSource::Broker);
        assert!((n.needed.arrival_rate - 2.0).abs() < 1e-9, "{n:?}");
        assert!((n.needed.work_secs - 3.0).abs() < 1e-9, "{n:?}");
        // 2/s x 3 s / 0.8.
        assert!((n.needed.workers_needed - 7.5).abs() < 1e-9, "{n:?}");
    }

    /// A 3.10 scrape of a queue holding `messages` (all ready) whose consumers finished
    /// `finished`; no count at all when `messages` is None (no series for the queue).
    fn counts(at: f64, messages: Option<f64>, finished: f64) -> QueueScrape {
        QueueScrape {
            at_secs: at,
            ready: messages,
            unacked: messages.map(|_| 0.0),
            messages,
            consumers: messages.map(|_| 1.0),
            finished: map(&[("channel <0.1.0>", finished)]),
            ..QueueScrape::default()
        }
    }

    #[test]
    fn a_queue_not_reported_yet_holds_no_messages_so_its_first_count_arrived_since() {
        // The load starts with the estimator: at 0 s the broker has no series for the queue
        // (declared a moment ago, its first stats not out yet); at 15 s it holds 6 and 2 were
        // finished, so 8 arrived in 15 s, and 27 in 30 s. Reading the missing count as "no
        // change" gave 2/15 and 7/30: the finished ones alone.
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        e.observe(&counts(0.0, None, 0.0));
        let n = e.observe(&counts(15.0, Some(6.0), 2.0));
        assert_eq!(n.arrival, ArrivalSource::Conservation);
        assert!((n.needed.arrival_rate - 8.0 / 15.0).abs() < 1e-9, "{n:?}");
        let n = e.observe(&counts(30.0, Some(20.0), 7.0));
        assert!((n.needed.arrival_rate - 27.0 / 30.0).abs() < 1e-9, "{n:?}");
    }

    #[test]
    fn a_count_missing_after_the_queue_was_seen_is_skipped_not_read_as_zero_or_no_change() {
        // 3 jobs/s arrive, 2 are finished and 1 stays in the queue. At 60 s the queue's series
        // is missing (its leader moving): until that scrape leaves the window, the change is
        // taken between the scrapes that have a count.
        let steady = |i: u32| {
            let t = 15.0 * f64::from(i);
            counts(t, (i != 4).then_some(10.0 + t), 2.0 * t)
        };
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        for i in 0..=3 {
            e.observe(&steady(i));
        }
        // The newest scrape has no count: the rate up to the last one that has.
        let n = e.observe(&steady(4));
        assert!((n.needed.arrival_rate - 3.0).abs() < 1e-9, "{n:?}");
        // The oldest scrape of the window has no count: the rate from the next one.
        for i in 5..=7 {
            let n = e.observe(&steady(i));
            assert!((n.needed.arrival_rate - 3.0).abs() < 1e-9, "at {i}: {n:?}");
        }
    }

    #[test]
    fn on_4x_the_per_queue_publish_counter_wins() {
        let load = Steady {
            rate: 2.0,
            work: 3.0,
            consumers: 8.0,
            prefetch: 1.0,
            ready: 0.0,
        };
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        // A growing queue whose message count the broker reports stale would fool conservation;
        // the per-queue counter does not depend on it.
        let n = run(&mut e, 0, 40, |t| {
            let mut s = load.scrape_4x(t);
            s.messages = Some(0.0);
            s
        });
        assert_eq!(n.arrival, ArrivalSource::PerQueue);
        assert!((n.needed.arrival_rate - 2.0).abs() < 1e-9, "{n:?}");
    }

    #[test]
    fn prefetch_above_one_is_clamped_by_consumers_times_concurrency() {
        // 6 consumers of prefetch 10 behind a backlog: 60 unacked, only 6 worked on. Each
        // works 3 s, so 2 finish per second.
        let load = Steady {
            rate: 2.0,
            work: 3.0,
            consumers: 6.0,
            prefetch: 10.0,
            ready: 30.0,
        };
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        let n = run(&mut e, 0, 40, |t| load.scrape_310(t));
        assert!((n.needed.work_secs - 3.0).abs() < 1e-9, "{n:?}");
        assert_eq!(n.busy, 6.0);
        // Without the clamp (a concurrency as large as the prefetch) it reads 10 times the
        // work time: what the clamp is for.
        let unclamped = Knobs {
            concurrency_per_consumer: 10.0,
            ..Knobs::OLD_DEFAULT
        };
        let mut e = QueueEstimator::new(unclamped);
        let n = run(&mut e, 0, 40, |t| load.scrape_310(t));
        assert!((n.needed.work_secs - 30.0).abs() < 1e-9, "{n:?}");
    }

    #[test]
    fn a_histogram_wins_over_the_broker_estimate_and_the_default_is_last() {
        let load = Steady {
            rate: 2.0,
            work: 3.0,
            consumers: 8.0,
            prefetch: 1.0,
            ready: 0.0,
        };
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        // The workers say 2.5 s (the broker's 3 s includes the round trip to the ack).
        let n = run(&mut e, 0, 40, |t| {
            let mut s = load.scrape_310(t);
            s.measured_jobs = map(&[("w0", 2.0 * t)]);
            s.measured_work_secs = map(&[("w0", 5.0 * t)]);
            s
        });
        assert_eq!(n.work, WorkSource::Measured);
        assert!((n.needed.work_secs - 2.5).abs() < 1e-9, "{n:?}");
        // Nothing finished: the default.
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        let idle = QueueScrape {
            ready: Some(0.0),
            unacked: Some(0.0),
            messages: Some(0.0),
            consumers: Some(2.0),
            finished: map(&[("c", 0.0)]),
            ..QueueScrape::default()
        };
        let n = run(&mut e, 0, 40, |t| QueueScrape {
            at_secs: t,
            ..idle.clone()
        });
        assert_eq!(n.work, WorkSource::Default);
        assert_eq!(n.needed.work_secs, Knobs::OLD_DEFAULT.default_work_secs);
        assert_eq!(n.needed.workers_needed, 0.0);
    }

    #[test]
    fn in_the_simulator_it_reads_only_what_the_broker_reports() {
        // 2 jobs/s of 3 s jobs on 8 workers, 6 busy, nothing ready: 7.5 once the window is
        // full, from the counts and acks alone.
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        let mut value = 0.0;
        for i in 0..=40u32 {
            let t = 15.0 * f64::from(i);
            value = e.value(&Signals {
                at_secs: t,
                ready: 0,
                unacked: 6,
                acked_total: (2.0 * t) as u64,
                arrived_total: 999_999, // not read: no per-queue counter on 3.10
                busy_secs_total: 1.0e9, // not read: no histogram
                workers_ready: 8,
                ..Signals::default()
            });
        }
        assert!((value - 7.5).abs() < 1e-9, "{value}");
    }

    #[test]
    fn a_cold_start_is_the_backlog_term_at_the_default_work_time() {
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        // Nothing scraped yet.
        assert_eq!(
            e.estimate().needed.workers_needed,
            0.0,
            "no scrape, no metric"
        );
        let n = e.observe(&QueueScrape {
            at_secs: 0.0,
            ready: Some(6.0),
            messages: Some(6.0),
            ..QueueScrape::default()
        });
        // 6 x 5 / 30.
        assert_eq!(n.needed.workers_needed, 1.0);
        assert_eq!(n.arrival, ArrivalSource::None);
    }

    #[test]
    fn a_recreated_queue_and_a_scrape_gap_give_no_nan_and_no_drop_to_zero() {
        let load = Steady {
            rate: 2.0,
            work: 3.0,
            consumers: 8.0,
            prefetch: 1.0,
            ready: 40.0,
        };
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        run(&mut e, 0, 20, |t| load.scrape_310(t));
        // Deleted and re-created at 300 s: the consumers' channels were cancelled and new ones
        // count from 0, the message count fell from 48 to 0 and 12 arrived since: a fall is no
        // negative rate, and the backlog term stays.
        let after = e.observe(&QueueScrape {
            at_secs: 315.0,
            ready: Some(12.0),
            unacked: Some(0.0),
            messages: Some(12.0),
            consumers: Some(0.0),
            finished: map(&[("channel new", 0.0)]),
            ..QueueScrape::default()
        });
        assert!(after.needed.arrival_rate >= 0.0, "{after:?}");
        assert!(after.needed.workers_needed.is_finite(), "{after:?}");
        assert!(after.needed.drain_workers > 0.0, "{after:?}");
        // A 105 s gap: the rate comes from the work window, still 2/s of steady load.
        let mut e = QueueEstimator::new(Knobs::OLD_DEFAULT);
        run(&mut e, 0, 10, |t| load.scrape_310(t));
        let gap = e.observe(&load.scrape_310(255.0));
        assert!((gap.needed.arrival_rate - 2.0).abs() < 1e-9, "{gap:?}");
        // The queue series gone: the last backlog for 2 minutes, then none.
        let gone = QueueScrape {
            at_secs: 300.0,
            ..QueueScrape::default()
        };
        assert_eq!(e.observe(&gone).needed.backlog, 40.0);
        let later = e.observe(&QueueScrape {
            at_secs: 400.0,
            ..QueueScrape::default()
        });
        assert_eq!(later.needed.backlog, 0.0);
        assert!(later.needed.workers_needed.is_finite());
    }
}
