//! The oracle: a reference policy that knows what no autoscaler can, for measuring how far a
//! real policy is from the physical limit. It is never a shipped policy: it cannot be read from
//! a file, `warren simulate` and `warren recommend` do not offer it, and nothing live runs it.
//!
//! It knows the scenario's true arrival rate at every instant, past and future (the pattern,
//! not a measurement of it), and the work-time distribution (its mean and squared coefficient
//! of variation), with no metric pipeline between them and the decision. Every second it asks
//! for the fewest workers whose p95 queue wait meets its SLO at the arrival rate of each
//! instant from now until its workers could be ready ([`crate::staffing::fewest_servers`]: Erlang C,
//! with the Allen-Cunneen and Kingman correction for arrivals and work that are not exponential).
//! Pod start-up still applies: a worker it asks for is ready after the scenario's
//! `workers.startup_secs` (plus jitter), so it asks that long ahead of a rise. Scale-down
//! is at once, to the workers the next seconds need; stopping workers drain as the scenario
//! says. It sizes for the rate (pointwise stationary staffing, as in Green and Kolesar,
//! "The pointwise stationary approximation for queues with nonstationary arrivals",
//! Management Science 37(1), 1991), not for the backlog that chance builds: it never looks at
//! the queue.
//!
//! Bursts (`arrivals.bursts`) are jobs without a rate: a scenario with bursts has no oracle.

use warren_pattern::Pattern;

use crate::scenario::{ArrivalProcess, Scenario, ScenarioError};
use crate::staffing::{fewest_servers, Load, SLO_QUANTILE};

/// How often the oracle decides, in simulated seconds.
pub const STEP_SECS: f64 = 1.0;

/// The step of the look-ahead over the rate, in seconds: fine enough to see a step of the
/// pattern between two decisions.
const LOOK_STEP_SECS: f64 = 0.25;

/// The oracle as given: its SLO and its bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OracleSpec {
    /// The p95 queue wait it staffs for, in seconds.
    pub slo_secs: f64,
    /// The fewest workers it keeps (as an HPA's minReplicas).
    pub min: u32,
    /// The most workers it asks for (as an HPA's maxReplicas); none is no bound.
    pub max: Option<u32>,
}

/// The oracle for one scenario: what it knows of it.
#[derive(Clone, Debug)]
pub struct Oracle {
    spec: OracleSpec,
    pattern: Option<Pattern>,
    mean_work_secs: f64,
    work_scv: f64,
    arrival_scv: f64,
    prefetch: u32,
    /// How far ahead it looks: the longest start-up and one step.
    lead_secs: f64,
}

impl Oracle {
    /// The oracle for `scenario`; an error for a scenario with bursts.
    pub fn new(spec: OracleSpec, scenario: &Scenario) -> Result<Self, ScenarioError> {
        if !scenario.arrivals.bursts.is_empty() {
            return Err(ScenarioError(
                "arrivals.bursts: the oracle knows arrival rates, not bursts; this scenario has no oracle"
                    .into(),
            ));
        }
        let w = &scenario.workers;
        Ok(Oracle {
            spec,
            pattern: scenario.pattern()?,
            mean_work_secs: scenario.work.mean(),
            work_scv: scenario.work.scv(),
            arrival_scv: match scenario.arrivals.process {
                ArrivalProcess::Poisson => 1.0,
                ArrivalProcess::Even => 0.0,
            },
            prefetch: w.prefetch.max(1),
            lead_secs: w.startup_secs + w.startup_jitter_secs + STEP_SECS,
        })
    }

    /// The true arrival rate at `t`.
    pub fn rate_at(&self, t: f64) -> f64 {
        self.pattern.as_ref().map_or(0.0, |p| p.rate_at(t))
    }

    /// The fewest workers whose p95 wait meets the SLO at a steady `rate`, within the bounds
    /// (each worker is `prefetch` servers).
    pub fn workers_for_rate(&self, rate: f64) -> u32 {
        let load = Load {
            arrival_rate: rate,
            mean_work_secs: self.mean_work_secs,
            arrival_scv: self.arrival_scv,
            work_scv: self.work_scv,
        };
        let servers = fewest_servers(&load, self.spec.slo_secs, SLO_QUANTILE);
        let workers = servers.div_ceil(self.prefetch);
        let workers = workers.max(self.spec.min);
        self.spec.max.map_or(workers, |max| workers.min(max))
    }

    /// The workers to have asked for at `t`: enough for every instant until a worker asked for
    /// now would be ready.
    pub fn workers_at(&self, t: f64) -> u32 {
        let steps = (self.lead_secs / LOOK_STEP_SECS).ceil() as u32;
        (0..=steps)
            .map(|i| (t + f64::from(i) * LOOK_STEP_SECS).min(t + self.lead_secs))
            .map(|at| self.workers_for_rate(self.rate_at(at)))
            .max()
            .unwrap_or(self.spec.min)
    }
}
