//! The capacity metric `warren_workers_needed`: the workers a queue needs, by Little's law.
//!
//! ```text
//! busy           = arrival rate x mean work time
//! workers needed = busy / target utilisation + beta x sqrt(busy)
//!                + ready backlog x mean work time / drain time
//! ```
//!
//! The headroom is square-root staffing (`busy + beta x sqrt(busy)`, [`crate::staffing`]): the
//! spare workers a wait SLO needs grow as the square root of the busy ones, and beta is derived
//! from the SLO ([`Knobs::for_slo`]), which makes a p95 wait the knob. The shipped default is
//! [`Knobs::default`] (utilisation 1, beta for a 5 s p95); the formula before 2026-12-08 is
//! [`Knobs::OLD_DEFAULT`] (utilisation 0.8, no square-root term), kept to compare with.
//!
//! The one definition for warren's own code: [`workers_needed`] is the arithmetic of the
//! recording rules of group `warren-capacity` in `deploy/kubernetes/base/prometheus/rules.yml`,
//! with the same fallbacks for a missing input ([`Inputs`]), and a test
//! (`tests/capacity_promql.rs`) runs both on the same samples. [`CapacityFormula`] evaluates it
//! from scraped counters with the rules' windows: in the simulator from the delayed signals,
//! and in `warren autoscale --metric-source broker` from the broker's and the workers' metrics.
//! Pure: no I/O.

use std::collections::VecDeque;

use crate::signals::{MetricFormula, Signals};
use crate::staffing::{beta_for_slo, Load, StaffingError, SLO_QUANTILE};

/// The External metric's name, as the recording rule and the capacity HPA name it.
pub const METRIC_NAME: &str = "warren_workers_needed";

/// The window of the arrival rate (`rate(jobs_published_total[1m])`).
pub const ARRIVAL_WINDOW_SECS: f64 = 60.0;
/// The window of the mean work time, and of the arrival rate's fallback to its last two samples
/// (`rate(job_duration_seconds_sum[5m])`, `irate(jobs_published_total[5m])`).
pub const WORK_WINDOW_SECS: f64 = 300.0;

/// The p95 wait the shipped beta is derived for ([`Knobs::default`]).
pub const DEFAULT_SLO_SECS: f64 = 5.0;
/// The busy workers of the load a beta is derived at by default: 0.8 x the capacity HPA's
/// maxReplicas (10), the suite's steady load. Beta depends on the load through the square root
/// of the busy workers: at a higher load the same beta waits less, at a lower one more.
pub const DESIGN_BUSY_WORKERS: f64 = 8.0;
/// The squared coefficient of variation of the work time a beta is derived for by default:
/// 0.5, between fixed work (0) and exponential work (1); the suite's lognormal work is 0.18.
/// More variable work waits longer at the same count.
pub const DESIGN_WORK_SCV: f64 = 0.5;

/// The policy's knobs, as the rules' constants hold them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knobs {
    /// The busy share each worker is sized for (`warren_capacity_target_utilisation`), in (0, 1].
    pub target_utilisation: f64,
    /// Square-root staffing's beta (`warren_capacity_beta`): `beta x sqrt(busy)` spare
    /// workers, >= 0; [`Knobs::for_slo`] derives it from a p95 wait.
    pub beta: f64,
    /// The time a backlog is given to drain (`warren_capacity_drain_seconds`), > 0.
    pub drain_secs: f64,
    /// The work time assumed while no job has finished (`warren_capacity_default_work_seconds`).
    pub default_work_secs: f64,
    /// How many messages one consumer works on at once (`warren_capacity_concurrency`): the
    /// broker-side work-time estimate counts at most consumers x this as busy, since with
    /// prefetch > 1 the rest of the unacked messages wait in the consumer's buffer
    /// ([`crate::estimator`]).
    pub concurrency_per_consumer: f64,
}

impl Default for Knobs {
    /// The shipped rules' values: utilisation 1 and the beta of [`DEFAULT_BETA`], a 5 s p95
    /// wait at the design load.
    fn default() -> Self {
        Knobs {
            target_utilisation: 1.0,
            beta: DEFAULT_BETA,
            ..Knobs::OLD_DEFAULT
        }
    }
}

/// The shipped beta: [`Knobs::for_slo`] at [`DEFAULT_SLO_SECS`] with the default work time
/// (5 s), [`DESIGN_BUSY_WORKERS`] and [`DESIGN_WORK_SCV`], rounded to two decimals (a test
/// holds it to the derivation).
pub const DEFAULT_BETA: f64 = 0.58;

impl Knobs {
    /// The shipped knobs until 2026-12-08: a fixed target utilisation of 0.8 and no
    /// square-root term; `bench/scaling` runs it as "the old default".
    pub const OLD_DEFAULT: Knobs = Knobs {
        target_utilisation: 0.8,
        beta: 0.0,
        drain_secs: 30.0,
        default_work_secs: 5.0,
        concurrency_per_consumer: 1.0,
    };

    /// The knobs whose square-root staffing meets a p95 wait of `slo_secs` at a load of
    /// `design_busy` busy workers of this work time (mean, squared coefficient of variation)
    /// under Poisson arrivals: utilisation 1 and beta by [`beta_for_slo`], so that
    /// `ceil(busy + beta x sqrt(busy))` is Erlang C's fewest workers for the SLO at that load.
    /// The other knobs are `self`'s.
    pub fn for_slo(
        &self,
        slo_secs: f64,
        design_busy: f64,
        work_secs: f64,
        work_scv: f64,
    ) -> Result<Knobs, StaffingError> {
        let load = Load::poisson(design_busy / work_secs, work_secs, work_scv);
        Ok(Knobs {
            target_utilisation: 1.0,
            beta: beta_for_slo(&load, slo_secs, SLO_QUANTILE)?,
            ..*self
        })
    }

    /// Checks that every knob is in range; the message names the knob.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.target_utilisation > 0.0 && self.target_utilisation <= 1.0) {
            return Err(format!(
                "target utilisation {} is not in (0, 1]",
                self.target_utilisation
            ));
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err(format!("beta {} is not 0 or more", self.beta));
        }
        if !(self.drain_secs > 0.0 && self.drain_secs.is_finite()) {
            return Err(format!("drain time {} s is not positive", self.drain_secs));
        }
        if !(self.default_work_secs > 0.0 && self.default_work_secs.is_finite()) {
            return Err(format!(
                "default work time {} s is not positive",
                self.default_work_secs
            ));
        }
        if !(self.concurrency_per_consumer >= 1.0 && self.concurrency_per_consumer.is_finite()) {
            return Err(format!(
                "concurrency per consumer {} is not at least 1",
                self.concurrency_per_consumer
            ));
        }
        Ok(())
    }
}

/// What was measured; `None` where the rule's input is missing (no series, no job finished).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Inputs {
    /// Jobs accepted per second.
    pub arrival_rate: Option<f64>,
    /// Mean work time of the jobs finished in the window: see [`mean_work_secs`].
    pub work_secs: Option<f64>,
    /// Ready messages.
    pub backlog: Option<f64>,
}

/// The metric and its terms, as the recording rules name them.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Needed {
    /// `warren_capacity_arrival_rate`.
    pub arrival_rate: f64,
    /// `warren_capacity_work_seconds`.
    pub work_secs: f64,
    /// `warren_capacity_backlog`.
    pub backlog: f64,
    /// `warren_capacity_busy_workers`: arrival rate x work time.
    pub busy_workers: f64,
    /// `warren_capacity_headroom_workers`: beta x sqrt(busy workers).
    pub headroom_workers: f64,
    /// `warren_capacity_drain_workers`: backlog x work time / drain time.
    pub drain_workers: f64,
    /// `warren_workers_needed`.
    pub workers_needed: f64,
}

/// Mean work time from a window's increase of the work-seconds and job counters; `None` when
/// no job finished in it (the rule's `> 0` guard against 0/0).
pub fn mean_work_secs(work_secs_increase: f64, jobs_increase: f64) -> Option<f64> {
    (jobs_increase > 0.0).then(|| work_secs_increase / jobs_increase)
}

/// The workers needed, with the rules' fallbacks: no arrival rate or backlog is 0, no work
/// time is the default. A non-finite or negative input counts as missing, so the result is
/// always finite and >= 0.
pub fn workers_needed(knobs: &Knobs, inputs: &Inputs) -> Needed {
    let usable = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
    let arrival_rate = usable(inputs.arrival_rate).unwrap_or(0.0);
    let work_secs = usable(inputs.work_secs).unwrap_or(knobs.default_work_secs);
    let backlog = usable(inputs.backlog).unwrap_or(0.0);
    let busy_workers = arrival_rate * work_secs;
    let headroom_workers = knobs.beta * busy_workers.sqrt();
    let drain_workers = backlog * work_secs / knobs.drain_secs;
    Needed {
        arrival_rate,
        work_secs,
        backlog,
        busy_workers,
        headroom_workers,
        drain_workers,
        workers_needed: busy_workers / knobs.target_utilisation + headroom_workers + drain_workers,
    }
}

/// [`workers_needed`] over the simulator's delayed signals: each sync delivers the counters as
/// of the last scrape, and the formula keeps the scrapes of the last [`WORK_WINDOW_SECS`] to
/// take the rules' rates over their windows (the increase between the oldest and newest scrape
/// in the window, over their time apart; PromQL's `rate` also extrapolates to the window's
/// edges, which a steady counter makes no difference to).
pub struct CapacityFormula {
    knobs: Knobs,
    scrapes: VecDeque<Signals>,
}

impl CapacityFormula {
    /// A formula with these knobs and no scrape seen yet (a cold start).
    pub fn new(knobs: Knobs) -> Self {
        CapacityFormula {
            knobs,
            scrapes: VecDeque::new(),
        }
    }

    fn remember(&mut self, seen: &Signals) {
        if self
            .scrapes
            .back()
            .is_none_or(|last| seen.at_secs > last.at_secs)
        {
            self.scrapes.push_back(*seen);
        }
        while self
            .scrapes
            .front()
            .is_some_and(|s| s.at_secs < seen.at_secs - WORK_WINDOW_SECS)
        {
            self.scrapes.pop_front();
        }
    }

    /// The metric and its terms after one more scrape (or the same scrape again, which
    /// changes nothing): what [`MetricFormula::value`] returns, with the terms for a log.
    pub fn needed(&mut self, seen: &Signals) -> Needed {
        self.remember(seen);
        workers_needed(&self.knobs, &self.inputs())
    }

    /// The inputs as the rules would see them after the scrapes so far.
    fn inputs(&self) -> Inputs {
        let Some(newest) = self.scrapes.back() else {
            return Inputs::default();
        };
        let rate_between = |old: &Signals| {
            let dt = newest.at_secs - old.at_secs;
            (dt > 0.0).then(|| (newest.arrived_total - old.arrived_total) as f64 / dt)
        };
        // rate over 1 m, or, with fewer than two scrapes in it, the last two scrapes' (irate).
        let in_minute = self
            .scrapes
            .iter()
            .find(|s| s.at_secs > newest.at_secs - ARRIVAL_WINDOW_SECS)
            .filter(|s| s.at_secs < newest.at_secs);
        let arrival_rate = match in_minute {
            Some(oldest) => rate_between(oldest),
            None => self
                .scrapes
                .len()
                .checked_sub(2)
                .and_then(|i| self.scrapes.get(i))
                .and_then(rate_between),
        };
        let work_secs = self.scrapes.front().and_then(|oldest| {
            mean_work_secs(
                newest.busy_secs_total - oldest.busy_secs_total,
                (newest.acked_total - oldest.acked_total) as f64,
            )
        });
        Inputs {
            arrival_rate,
            work_secs,
            backlog: Some(newest.ready as f64),
        }
    }
}

impl MetricFormula for CapacityFormula {
    fn describe(&self) -> String {
        format!(
            "busy / {} + {} x sqrt(busy) + ready x work time / {} s (busy = arrival rate x work time)",
            self.knobs.target_utilisation, self.knobs.beta, self.knobs.drain_secs
        )
    }

    fn value(&mut self, seen: &Signals) -> f64 {
        self.needed(seen).workers_needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needed(arrival: Option<f64>, work: Option<f64>, backlog: Option<f64>) -> f64 {
        workers_needed(
            &Knobs::OLD_DEFAULT,
            &Inputs {
                arrival_rate: arrival,
                work_secs: work,
                backlog,
            },
        )
        .workers_needed
    }

    // The cases of capacity.test.yml, same numbers.
    #[test]
    fn steady_load_is_busy_workers_with_headroom_plus_the_drain_term() {
        let n = workers_needed(
            &Knobs::OLD_DEFAULT,
            &Inputs {
                arrival_rate: Some(2.0),
                work_secs: Some(4.0),
                backlog: Some(12.0),
            },
        );
        assert_eq!(n.busy_workers, 8.0);
        assert!((n.drain_workers - 1.6).abs() < 1e-12);
        assert!((n.workers_needed - 11.6).abs() < 1e-12);
    }

    #[test]
    fn missing_inputs_take_the_rules_fallbacks() {
        // Cold start: no rate, no job finished, 6 ready: 6 x 5 / 30.
        assert_eq!(needed(None, None, Some(6.0)), 1.0);
        // Nothing scraped.
        assert_eq!(needed(None, None, None), 0.0);
        // Jobs arrive, none finished: the default work time.
        assert_eq!(
            needed(Some(2.0), mean_work_secs(0.0, 0.0), Some(600.0)),
            112.5
        );
        // A NaN never comes out.
        assert_eq!(needed(Some(f64::NAN), Some(f64::INFINITY), Some(-1.0)), 0.0);
    }

    #[test]
    fn the_square_root_term_grows_with_the_root_of_the_busy_workers() {
        let knobs = Knobs {
            beta: 1.0,
            target_utilisation: 1.0,
            ..Knobs::OLD_DEFAULT
        };
        let at = |rate: f64| {
            workers_needed(
                &knobs,
                &Inputs {
                    arrival_rate: Some(rate),
                    work_secs: Some(4.0),
                    backlog: Some(0.0),
                },
            )
        };
        // 4 busy: 4 + 1 x 2; 16 busy: 16 + 1 x 4, so the spare share halves.
        assert_eq!(at(1.0).workers_needed, 6.0);
        assert_eq!(at(4.0).headroom_workers, 4.0);
        assert_eq!(at(4.0).workers_needed, 20.0);
        // Arrivals stopped: no headroom either.
        assert_eq!(at(0.0).workers_needed, 0.0);
    }

    #[test]
    fn the_shipped_beta_is_the_derivation_at_the_design_load() {
        let k = Knobs::OLD_DEFAULT
            .for_slo(
                DEFAULT_SLO_SECS,
                DESIGN_BUSY_WORKERS,
                Knobs::OLD_DEFAULT.default_work_secs,
                DESIGN_WORK_SCV,
            )
            .expect("a beta");
        assert!((k.beta - DEFAULT_BETA).abs() < 0.005, "{}", k.beta);
        assert_eq!(Knobs::default().target_utilisation, 1.0);
        // A longer SLO, less headroom.
        let slower = Knobs::default()
            .for_slo(20.0, 8.0, 5.0, 1.0)
            .expect("a beta");
        assert!(slower.beta < k.beta);
        assert!(Knobs::default().for_slo(-1.0, 8.0, 5.0, 1.0).is_err());
    }

    #[test]
    fn knobs_out_of_range_are_named() {
        let bad = Knobs {
            target_utilisation: 1.5,
            ..Knobs::default()
        };
        assert!(bad.validate().unwrap_err().contains("target utilisation"));
        let bad = Knobs {
            drain_secs: 0.0,
            ..Knobs::default()
        };
        assert!(bad.validate().unwrap_err().contains("drain time"));
        let bad = Knobs {
            beta: -0.5,
            ..Knobs::default()
        };
        assert!(bad.validate().unwrap_err().contains("beta"));
        assert!(Knobs::default().validate().is_ok());
    }

    fn scrape(at: f64, arrived: u64, acked: u64, busy: f64, ready: u64) -> Signals {
        Signals {
            at_secs: at,
            ready,
            arrived_total: arrived,
            acked_total: acked,
            busy_secs_total: busy,
            ..Signals::default()
        }
    }

    #[test]
    fn the_formula_takes_rates_over_the_rules_windows() {
        let mut f = CapacityFormula::new(Knobs::OLD_DEFAULT);
        // Cold start: one scrape, the backlog term alone (6 x 5 / 30).
        assert_eq!(f.value(&scrape(0.0, 0, 0, 0.0, 6)), 1.0);
        // 2 jobs/s of 4 s jobs, 12 ready, scraped every 15 s.
        let mut last = 0.0;
        for i in 1..=20u32 {
            let t = 15.0 * f64::from(i);
            let n = u64::from(30 * i);
            last = f.value(&scrape(t, n, n, 4.0 * n as f64, 12));
        }
        assert!((last - 11.6).abs() < 1e-9, "{last}");
        // The same signals again (a sync without a new scrape) change nothing.
        assert!((f.value(&scrape(300.0, 600, 600, 2400.0, 12)) - 11.6).abs() < 1e-9);
        // A 105 s scrape gap: the next scrape has no other in its minute; the last two give
        // the rate.
        let v = f.value(&scrape(405.0, 810, 810, 3240.0, 12));
        assert!((v - 11.6).abs() < 1e-9, "{v}");
    }
}
