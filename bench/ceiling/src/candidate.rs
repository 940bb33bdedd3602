//! `warren-candidate`: an experiment, not a shipped policy. A candidate capacity metric for the
//! capacity HPA, run in the simulator on the scenario suite beside the shipped capacity metric
//! and the oracle, with issue 24's targets checked on the results. It prints a Markdown
//! report on stdout.
//!
//! The candidate, over the same scraped counters as `warren_workers_needed`:
//!
//! ```text
//! rate   = rate over the short window, if it differs from the long window's by more than
//!          k Poisson standard deviations (sqrt(long rate / short window)); else the long one's
//! busy   = rate x mean work time (5 m)
//! needed = busy + beta x sqrt(busy) + ready x mean work time / drain time
//! ```
//!
//! The long window (2 m) keeps the Poisson noise of a steady rate out of the worker count; the
//! short one (30 s) follows a rise or a stop within a scrape or two; beta is
//! `warren_policy::staffing::beta_for_slo` at a design load. Every term has a PromQL form
//! (`rate`, `sqrt`, `abs`, comparison filters).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use warren_policy::capacity::{CapacityFormula, Knobs};
use warren_policy::staffing::{beta_for_slo, Load, SLO_QUANTILE};
use warren_sim::{FormulaFactory, MetricFormula, PolicySpec, Scenario, Signals, Totals};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "warren-candidate",
    about = "A candidate capacity metric on the scenario suite, against the shipped one and the oracle"
)]
struct Cli {
    /// The repository's root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The p95 wait the candidate's beta is derived for, in seconds.
    #[arg(long, default_value_t = 4.0)]
    slo: f64,
    /// The busy workers of the design load beta is derived at.
    #[arg(long, default_value_t = 8.0)]
    design_busy: f64,
    /// The drain time of the backlog term, in seconds.
    #[arg(long, default_value_t = 30.0)]
    drain: f64,
    /// How many Poisson standard deviations the short window's rate must differ by.
    #[arg(long, default_value_t = 3.0)]
    k: f64,
    /// Workers ready at the start of the HPAs' runs (default: minReplicas, as in the suite): to
    /// see what the cold start costs. The fixed counts and the oracle start with theirs.
    #[arg(long)]
    initial: Option<u32>,
    /// The HPAs' maxReplicas (default: the capacity overlay's): room for the backlog term to
    /// drain a cold start's backlog beyond the steady need.
    #[arg(long)]
    max_replicas: Option<u32>,
    /// The long window of the arrival rate, in seconds.
    #[arg(long, default_value_t = 120.0)]
    long: f64,
    /// The short window of the arrival rate, in seconds.
    #[arg(long, default_value_t = 30.0)]
    short: f64,
    /// Scenarios to run (default: steady, step, spikes, day).
    #[arg(long)]
    scenario: Vec<String>,
}

const SCENARIOS: [&str; 4] = ["steady", "step", "spikes", "day"];
const CAPACITY_HPA: &str = "deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml";
const WORK_SECS: f64 = 300.0;
const DEFAULT_WORK_SECS: f64 = 5.0;
const ORACLE_SLOS: [f64; 24] = [
    0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 15.0,
    20.0, 25.0, 30.0, 45.0, 60.0, 120.0,
];
const FIXED_COUNTS: [u32; 7] = [4, 6, 8, 9, 10, 11, 12];

#[derive(Clone, Copy, Debug)]
struct Settings {
    beta: f64,
    drain_secs: f64,
    k: f64,
    long: f64,
    short: f64,
}

struct Candidate {
    settings: Settings,
    scrapes: VecDeque<Signals>,
}

impl Candidate {
    /// The arrival rate between the oldest scrape within `window` and the newest (or the last
    /// two scrapes when the window holds fewer than two).
    fn rate(&self, window: f64) -> Option<f64> {
        let newest = self.scrapes.back()?;
        let between = |old: &Signals| {
            let dt = newest.at_secs - old.at_secs;
            (dt > 0.0).then(|| (newest.arrived_total - old.arrived_total) as f64 / dt)
        };
        match self
            .scrapes
            .iter()
            .find(|s| s.at_secs >= newest.at_secs - window && s.at_secs < newest.at_secs)
        {
            Some(oldest) => between(oldest),
            None => self
                .scrapes
                .len()
                .checked_sub(2)
                .and_then(|i| self.scrapes.get(i))
                .and_then(between),
        }
    }
}

impl MetricFormula for Candidate {
    fn describe(&self) -> String {
        let s = self.settings;
        format!(
            "busy + {:.3} x sqrt(busy) + ready x work time / {} s (rate: 30 s if {} sd from 2 m)",
            s.beta, s.drain_secs, s.k
        )
    }

    fn value(&mut self, seen: &Signals) -> f64 {
        if self.scrapes.back().is_none_or(|l| seen.at_secs > l.at_secs) {
            self.scrapes.push_back(*seen);
        }
        while self
            .scrapes
            .front()
            .is_some_and(|s| s.at_secs < seen.at_secs - WORK_SECS)
        {
            self.scrapes.pop_front();
        }
        let (long, short) = (
            self.rate(self.settings.long),
            self.rate(self.settings.short),
        );
        let rate = match (long, short) {
            (Some(l), Some(s))
                if (s - l).abs() > self.settings.k * (l / self.settings.short).sqrt() =>
            {
                s
            }
            (Some(l), _) => l,
            (None, s) => s.unwrap_or(0.0),
        };
        let work = match (self.scrapes.front(), self.scrapes.back()) {
            (Some(o), Some(n)) if n.acked_total > o.acked_total => {
                (n.busy_secs_total - o.busy_secs_total) / (n.acked_total - o.acked_total) as f64
            }
            _ => DEFAULT_WORK_SECS,
        };
        let busy = rate * work;
        busy + self.settings.beta * busy.sqrt()
            + seen.ready as f64 * work / self.settings.drain_secs
    }
}

fn read(root: &Path, path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"))
}

fn cost(t: &Totals) -> f64 {
    t.worker_seconds / t.busy_seconds.max(f64::MIN_POSITIVE)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = &cli.root;
    // Beta at the design load: Poisson arrivals of 5 s lognormal work (the suite's).
    let design = Load::poisson(cli.design_busy / 5.0, 5.0, 0.18);
    let beta = beta_for_slo(&design, cli.slo, SLO_QUANTILE)?;
    let settings = Settings {
        beta,
        drain_secs: cli.drain,
        k: cli.k,
        long: cli.long,
        short: cli.short,
    };
    let mut hpa = read(root, CAPACITY_HPA)?;
    if let Some(max) = cli.max_replicas {
        anyhow::ensure!(
            hpa.contains("maxReplicas: 10"),
            "no maxReplicas: 10 to vary"
        );
        hpa = hpa.replace("maxReplicas: 10", &format!("maxReplicas: {max}"));
    }
    let candidate_factory: FormulaFactory = Arc::new(move || {
        Box::new(Candidate {
            settings,
            scrapes: VecDeque::new(),
        })
    });
    let old_factory: FormulaFactory =
        Arc::new(|| Box::new(CapacityFormula::new(Knobs::OLD_DEFAULT)));
    let old = PolicySpec::from_hpa_yaml_with_formulas(
        "capacity (the old default)",
        &hpa,
        vec![(0, old_factory)],
    )?;
    let shipped_factory: FormulaFactory =
        Arc::new(|| Box::new(CapacityFormula::new(Knobs::default())));
    let candidate =
        PolicySpec::from_hpa_yaml_with_formulas("candidate", &hpa, vec![(0, candidate_factory)])?;
    let shipped = PolicySpec::from_hpa_yaml_with_formulas(
        "capacity (the default)",
        &hpa,
        vec![(0, shipped_factory)],
    )?;
    let mut out = String::new();
    writeln!(
        out,
        "Candidate: SLO {} s at {} busy workers: beta {beta:.3}; drain {} s; k {}; workers at the start: {}.\n",
        cli.slo,
        cli.design_busy,
        cli.drain,
        cli.k,
        cli.initial.map_or("minReplicas".to_owned(), |n| n.to_string())
    )?;
    writeln!(out, "| scenario | policy | wait p95 s | worker-s / busy-s | worker-s / oracle's at this p95 | not beaten by a fixed count |")?;
    writeln!(out, "| --- | --- | ---: | ---: | ---: | --- |")?;
    let names: Vec<String> = if cli.scenario.is_empty() {
        SCENARIOS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        cli.scenario.clone()
    };
    for name in &names {
        let path = format!("scenarios/suite/{name}.yaml");
        let scenario = Scenario::from_yaml(&read(root, &path)?).with_context(|| path.clone())?;
        // The start applies to the HPAs only: a fixed count and the oracle start with their
        // own workers ready.
        let mut started = scenario.clone();
        if cli.initial.is_some() {
            started.workers.initial = cli.initial;
        }
        let oracle: Vec<Totals> = ORACLE_SLOS
            .iter()
            .map(|&slo| {
                let spec = PolicySpec::oracle(slo, 1, Some(10))?;
                Ok(warren_sim::run(&scenario, &spec)?.totals)
            })
            .collect::<anyhow::Result<_>>()?;
        let fixed: Vec<Totals> = FIXED_COUNTS
            .iter()
            .map(|&n| Ok(warren_sim::run(&scenario, &PolicySpec::fixed(n))?.totals))
            .collect::<anyhow::Result<_>>()?;
        for policy in [&old, &shipped, &candidate] {
            let t = warren_sim::run(&started, policy)?.totals;
            let at = oracle
                .iter()
                .filter(|o| o.wait_p95_secs <= t.wait_p95_secs)
                .min_by(|a, b| a.worker_seconds.total_cmp(&b.worker_seconds));
            let ratio = at.map_or("-".into(), |o| {
                format!(
                    "{:.2} (oracle {:.1} s)",
                    t.worker_seconds / o.worker_seconds,
                    o.wait_p95_secs
                )
            });
            let beaten: Vec<String> = fixed
                .iter()
                .filter(|f| {
                    f.wait_p95_secs < t.wait_p95_secs && f.worker_seconds <= t.worker_seconds
                })
                .map(|f| f.policy.clone())
                .collect();
            writeln!(
                out,
                "| {name} | {} | {:.1} | {:.2} | {ratio} | {} |",
                policy.name(),
                t.wait_p95_secs,
                cost(&t),
                if beaten.is_empty() {
                    "yes".to_owned()
                } else {
                    format!("no: {}", beaten.join(", "))
                }
            )?;
        }
    }
    print!("{out}");
    Ok(())
}
