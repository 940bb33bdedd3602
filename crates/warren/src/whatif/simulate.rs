//! `warren simulate`: what an HPA manifest or a KEDA ScaledObject would do to queue wait, worker
//! count and cost under a scenario, in a second, with the very engine `warren autoscale` runs.
//!
//! Every policy runs against every scenario ([`warren_sim::run`]); stdout gets one row per
//! policy x scenario, and the report directory one sub-directory per scenario, written by the
//! demo's report code ([`crate::report::write_comparison`]): the policies overlaid on the demo's
//! charts, one comparison table, `timeseries.csv`, `totals.json` and every decision.
//!
//! Every file is read and checked before the first run: a bad one is one line and exit 2.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use warren_sim::{PolicySpec, RunOutcome, Scenario};

use crate::config::ConfigError;
use crate::report::{self, Series, Table};
use crate::whatif::capture::Observed;

/// Options of `warren simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// An autoscaling/v2 HorizontalPodAutoscaler manifest; repeat to compare several.
    #[arg(long = "hpa", value_name = "FILE")]
    pub hpa: Vec<PathBuf>,
    /// A KEDA ScaledObject with rabbitmq triggers (or prometheus ones on warren_workers_needed),
    /// simulated as KEDA 2.20 runs it: the HPA it
    /// generates, its scale loop (activation, cooldown, idleReplicaCount, the pause and
    /// force-activation annotations), every mode; repeat to compare several. What KEDA refuses,
    /// and what the simulator cannot model (scalingModifiers, useRegex, other scalers), is one
    /// line naming the field; connection settings (host, hostFromEnv, vhostName, TLS,
    /// authenticationRef, timeout) are read for KEDA's checks and otherwise ignored
    /// (docs/simulation.md, "KEDA").
    #[arg(long = "scaledobject", value_name = "FILE")]
    pub scaledobject: Vec<PathBuf>,
    /// A scenario file (see scenarios/); repeat to run several.
    #[arg(long = "scenario", value_name = "FILE", required = true)]
    pub scenario: Vec<PathBuf>,
    /// Directory for the report (default: reports/simulate-<UTC time>); one sub-directory per
    /// scenario.
    #[arg(long, env = "REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
    /// Print the table only; write no report.
    #[arg(long)]
    pub no_report: bool,
    /// The capacity metric's target utilisation, in (0, 1], for every HPA on
    /// `warren_workers_needed` (default: the shipped rules' 0.8).
    #[arg(long, value_name = "RATIO")]
    pub capacity_utilisation: Option<f64>,
    /// The capacity metric's drain time, e.g. 30s, for every HPA on `warren_workers_needed`
    /// (default: the shipped rules' 30s).
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub capacity_drain: Option<Duration>,
    /// How the capacity metric's inputs are measured, for every HPA on
    /// `warren_workers_needed`: `histogram` (warren's own workers: the publish counter and the
    /// workers' work-time histogram) or `broker` (a queue whose workers export nothing: the
    /// broker's counts and acks alone, arrivals by conservation, work time by Little's law,
    /// as `warren rules` and `warren autoscale` estimate them; warren_policy::estimator).
    #[arg(long, default_value = "histogram", value_parser = ["histogram", "broker"])]
    pub capacity_estimate: String,
}

/// Settings of `warren simulate`, validated.
#[derive(Debug)]
pub struct SimulateConfig {
    /// The policies, each with a short name for the table and the legends.
    pub policies: Vec<PolicySpec>,
    /// The scenarios, each with the name of its file.
    pub scenarios: Vec<(String, Scenario)>,
    /// Where the report goes, if anywhere.
    pub report_dir: Option<PathBuf>,
    /// What happened on the live system, by scenario name, for the scenarios that name an
    /// `observed` file (`warren capture`'s): set beside each run.
    pub observed: std::collections::BTreeMap<String, Observed>,
}

impl SimulateArgs {
    /// Reads and checks every file; each error is one line naming the file.
    pub fn to_config(&self) -> Result<SimulateConfig, ConfigError> {
        if self.hpa.is_empty() && self.scaledobject.is_empty() {
            return Err(ConfigError::new(
                "warren simulate needs at least one --hpa FILE or --scaledobject FILE",
            ));
        }
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))
        };
        let knobs = self.capacity_knobs()?;
        let mut policies = Vec::new();
        let mut knobs_used = false;
        let files: Vec<(&PathBuf, bool)> = self
            .hpa
            .iter()
            .map(|p| (p, false))
            .chain(self.scaledobject.iter().map(|p| (p, true)))
            .collect();
        let names = policy_names(&files.iter().map(|(p, _)| p.as_path()).collect::<Vec<_>>());
        for ((path, keda), name) in files.into_iter().zip(names) {
            let text = read(path)?;
            let capacity = if keda {
                Vec::new()
            } else {
                capacity_metrics(&text)
            };
            let from_broker = self.capacity_estimate == "broker";
            let chosen = knobs.or(from_broker.then(warren_policy::capacity::Knobs::default));
            let policy = match chosen {
                Some(knobs) if !capacity.is_empty() => {
                    let factory: warren_sim::FormulaFactory = if from_broker {
                        std::sync::Arc::new(move || {
                            Box::new(warren_policy::estimator::QueueEstimator::new(knobs))
                        })
                    } else {
                        std::sync::Arc::new(move || {
                            Box::new(warren_policy::capacity::CapacityFormula::new(knobs))
                        })
                    };
                    let formulas = capacity.iter().map(|&i| (i, factory.clone())).collect();
                    PolicySpec::from_hpa_yaml_with_formulas(&name, &text, formulas)
                }
                _ if keda => PolicySpec::from_scaledobject_yaml(&name, &text),
                _ => PolicySpec::from_hpa_yaml(&name, &text),
            }
            .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
            knobs_used |= !capacity.is_empty();
            policies.push(policy);
        }
        if self.capacity_estimate == "broker" && !knobs_used {
            return Err(ConfigError::new(format!(
                "--capacity-estimate broker applies to an HPA whose metric is {}; no --hpa given has one",
                warren_policy::capacity::METRIC_NAME
            )));
        }
        if knobs.is_some() && !knobs_used {
            return Err(ConfigError::new(format!(
                "--capacity-utilisation and --capacity-drain apply to an HPA whose metric is {}; no --hpa given has one",
                warren_policy::capacity::METRIC_NAME
            )));
        }
        let mut scenarios = Vec::new();
        let mut observed = std::collections::BTreeMap::new();
        let mut scenario_names = Vec::new();
        for path in &self.scenario {
            let name = unique_name(&mut scenario_names, path);
            let scenario = Scenario::from_yaml(&read(path)?)
                .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
            // A policy may not fit a scenario (its metric.signal, its min/max): find out now.
            for policy in &policies {
                if let Err(e) = warren_sim::sim::check(&scenario, policy) {
                    return Err(ConfigError::new(format!(
                        "{} with {}: {e}",
                        path.display(),
                        policy.name()
                    )));
                }
            }
            if let Some(file) = &scenario.observed {
                let csv = path.parent().unwrap_or(Path::new("")).join(file);
                let seen = Observed::parse(&read(&csv)?)
                    .map_err(|e| ConfigError::new(format!("{}: {e}", csv.display())))?;
                observed.insert(name.clone(), seen);
            }
            scenarios.push((name, scenario));
        }
        let report_dir = (!self.no_report).then(|| {
            self.report_dir
                .clone()
                .unwrap_or_else(|| report::default_dir("simulate"))
        });
        Ok(SimulateConfig {
            policies,
            scenarios,
            report_dir,
            observed,
        })
    }
}

impl SimulateArgs {
    /// The capacity knobs given, over the shipped ones; `None` when neither is given.
    fn capacity_knobs(&self) -> Result<Option<warren_policy::capacity::Knobs>, ConfigError> {
        if self.capacity_utilisation.is_none() && self.capacity_drain.is_none() {
            return Ok(None);
        }
        let shipped = warren_policy::capacity::Knobs::default();
        let knobs = warren_policy::capacity::Knobs {
            target_utilisation: self
                .capacity_utilisation
                .unwrap_or(shipped.target_utilisation),
            drain_secs: self
                .capacity_drain
                .map_or(shipped.drain_secs, |d| d.as_secs_f64()),
            ..shipped
        };
        knobs.validate().map_err(|e| {
            ConfigError::new(format!("--capacity-utilisation/--capacity-drain: {e}"))
        })?;
        Ok(Some(knobs))
    }
}

/// The indexes of an HPA manifest's External metrics named `warren_workers_needed`; none for a
/// text that does not parse (the policy's own parse then says why).
fn capacity_metrics(text: &str) -> Vec<usize> {
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return Vec::new();
    };
    doc["spec"]["metrics"]
        .as_sequence()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, m)| {
            m["external"]["metric"]["name"].as_str() == Some(warren_policy::capacity::METRIC_NAME)
        })
        .map(|(i, _)| i)
        .collect()
}

/// A sentence ends with a full stop (or another mark), so the next one can follow it.
fn with_full_stop(text: &str) -> String {
    let text = text.trim_end();
    if text.is_empty() || text.ends_with(['.', '!', '?']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// Each policy's name: its file's stem; where two files share a stem, their folder and stem
/// (`prometheus-adapter/hpa`, `prometheus-adapter-capacity/hpa`), with `-2`, `-3`, ... when
/// even that is shared.
fn policy_names(paths: &[&Path]) -> Vec<String> {
    let stem = |p: &Path| {
        p.file_stem()
            .map_or_else(|| "policy".to_owned(), |s| s.to_string_lossy().into_owned())
    };
    let mut taken = Vec::new();
    paths
        .iter()
        .map(|path| {
            let shared = paths.iter().filter(|p| stem(p) == stem(path)).count() > 1;
            let folder = path
                .parent()
                .and_then(Path::file_name)
                .map(|f| f.to_string_lossy().into_owned());
            let name = match folder {
                Some(folder) if shared => format!("{folder}/{}", stem(path)),
                _ => stem(path),
            };
            unique_name_of(&mut taken, name)
        })
        .collect()
}

/// `name`, with `-2`, `-3`, ... when it is taken.
fn unique_name_of(taken: &mut Vec<String>, base: String) -> String {
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}-{n}");
    }
    taken.push(name.clone());
    name
}

/// The file's stem, with `-2`, `-3`, ... when two files share one.
fn unique_name(taken: &mut Vec<String>, path: &Path) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "policy".to_owned(), |s| s.to_string_lossy().into_owned());
    let mut name = stem.clone();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{stem}-{n}");
    }
    taken.push(name.clone());
    name
}

/// The summary table's columns.
const COLUMNS: [&str; 13] = [
    "scenario",
    "policy",
    "jobs",
    "wait p50 s",
    "wait p95 s",
    "wait p99 s",
    "wait max s",
    "within SLO",
    "worker-s",
    "work floor s",
    "cost ratio",
    "peak workers",
    "deepest backlog",
];

/// The columns a replay adds: each run against what was observed.
const REPLAY_COLUMNS: [&str; 3] = [
    "replicas within 1 of observed",
    "wait p95 s sim vs observed",
    "worker-s sim vs observed",
];

/// A run against what was observed: the share of observed steps at which the simulated
/// replicas were within 1 of the observed, the wait p95 and the worker-seconds of both with
/// their difference.
fn replay_cells(outcome: &RunOutcome, observed: &Observed) -> Vec<String> {
    let samples = &outcome.samples;
    let mut compared = 0usize;
    let mut within = 0usize;
    for step in &observed.steps {
        let Some(replicas) = step.replicas else {
            continue;
        };
        let at = samples.partition_point(|s| s.t_secs <= step.t_secs + 1e-9);
        let Some(sample) = samples.get(at.saturating_sub(1)) else {
            continue;
        };
        compared += 1;
        if (f64::from(sample.workers_current) - replicas).abs() <= 1.0 {
            within += 1;
        }
    }
    let share = if compared == 0 {
        "-".to_owned()
    } else {
        format!(
            "{:.0}% of {compared} steps",
            within as f64 / compared as f64 * 100.0
        )
    };
    let t = &outcome.totals;
    let wait = match observed.wait_p95_secs() {
        Some(seen) => format!(
            "{:.2} vs {seen:.2} ({:+.2})",
            t.wait_p95_secs,
            t.wait_p95_secs - seen
        ),
        None => format!("{:.2} vs -", t.wait_p95_secs),
    };
    let seen = observed.worker_seconds();
    let workers = if seen > 0.0 {
        format!(
            "{:.0} vs {seen:.0} ({:+.1}%)",
            t.worker_seconds,
            (t.worker_seconds - seen) / seen * 100.0
        )
    } else {
        format!("{:.0} vs {seen:.0}", t.worker_seconds)
    };
    vec![share, wait, workers]
}

/// The observed run's row, in the columns a simulated run fills where it has the figure.
fn observed_row(scenario: &str, observed: &Observed, replay: bool) -> Vec<String> {
    let max = |f: fn(&crate::whatif::capture::ObservedStep) -> Option<f64>| {
        observed
            .steps
            .iter()
            .filter_map(f)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
    };
    let dash = || "-".to_owned();
    let mut row = vec![
        scenario.to_owned(),
        OBSERVED.to_owned(),
        format!("{:.0}", observed.jobs()),
        dash(),
        observed
            .wait_p95_secs()
            .map_or_else(dash, |w| format!("{w:.2}")),
        dash(),
        dash(),
        dash(),
        format!("{:.0}", observed.worker_seconds()),
        dash(),
        dash(),
        max(|s| s.replicas),
        max(|s| s.backlog),
    ];
    if replay {
        row.extend([dash(), dash(), dash()]);
    }
    row
}

/// The observed run's name in the table and on the charts.
const OBSERVED: &str = "observed";

fn row(scenario: &str, outcome: &RunOutcome) -> Vec<String> {
    let t = &outcome.totals;
    vec![
        scenario.to_owned(),
        t.policy.clone(),
        t.jobs_arrived.to_string(),
        format!("{:.2}", t.wait_p50_secs),
        format!("{:.2}", t.wait_p95_secs),
        format!("{:.2}", t.wait_p99_secs),
        format!("{:.2}", t.wait_max_secs),
        format!("{:.1}% of {} s", t.within_slo * 100.0, t.slo_secs),
        format!("{:.0}", t.worker_seconds),
        format!("{:.0}", t.floor_worker_seconds),
        format!("{:.2}", t.cost_ratio),
        t.peak_workers.to_string(),
        t.deepest_backlog.to_string(),
    ]
}

/// Runs every policy against every scenario, prints the table and writes the report.
pub fn run(config: SimulateConfig) -> anyhow::Result<()> {
    let replay = !config.observed.is_empty();
    let mut table = Table {
        columns: COLUMNS
            .iter()
            .chain(if replay { &REPLAY_COLUMNS[..] } else { &[] })
            .map(|c| (*c).to_owned())
            .collect(),
        rows: Vec::new(),
    };
    for (name, scenario) in &config.scenarios {
        let mut outcomes = Vec::new();
        for policy in &config.policies {
            let started = Instant::now();
            let mut shown = false;
            let mut progress = |done: f64| {
                if started.elapsed() > Duration::from_secs(1) {
                    shown = true;
                    eprint!(
                        "\rwarren simulate: {name} with {}: {:.0}% of {} s simulated",
                        policy.name(),
                        done * 100.0,
                        scenario.duration_secs
                    );
                    let _ = std::io::stderr().flush();
                }
            };
            let outcome = warren_sim::run_with_progress(scenario, policy, &mut progress)?;
            if shown {
                eprintln!(
                    "\rwarren simulate: {name} with {}: done in {:.1} s{:20}",
                    policy.name(),
                    started.elapsed().as_secs_f64(),
                    ""
                );
            }
            let mut cells = row(name, &outcome);
            if replay {
                cells.extend(match config.observed.get(name) {
                    Some(observed) => replay_cells(&outcome, observed),
                    None => vec!["-".to_owned(); REPLAY_COLUMNS.len()],
                });
            }
            table.rows.push(cells);
            outcomes.push(outcome);
        }
        let observed = config.observed.get(name);
        if let Some(observed) = observed {
            table.rows.push(observed_row(name, observed, replay));
        }
        if let Some(dir) = &config.report_dir {
            write_scenario_report(&dir.join(name), name, scenario, &outcomes, observed, &table)?;
        }
    }
    print!("{}", text_table(&table));
    if let Some(dir) = &config.report_dir {
        let comparisons: Vec<(String, String)> = config
            .scenarios
            .iter()
            .map(|(name, s)| (name.clone(), with_full_stop(&s.description)))
            .collect();
        let index = report::write_comparison_index(
            dir,
            "warren simulate",
            &format!(
                "{} policies in {} scenarios: one page per scenario, every run in the table below.",
                config.policies.len(),
                config.scenarios.len()
            ),
            &comparisons,
            &table,
        )?;
        println!("report: {}", index.display());
    }
    Ok(())
}

fn write_scenario_report(
    dir: &Path,
    name: &str,
    scenario: &Scenario,
    outcomes: &[RunOutcome],
    observed: Option<&Observed>,
    table: &Table,
) -> anyhow::Result<()> {
    let samples: Vec<Vec<report::Sample>> = outcomes
        .iter()
        .map(|o| o.samples.iter().map(to_report_sample).collect())
        .collect();
    let observed_samples = observed.map(observed_report_samples);
    let series: Vec<Series<'_>> = outcomes
        .iter()
        .zip(&samples)
        .map(|(o, s)| Series {
            label: &o.totals.policy,
            samples: s,
        })
        .chain(observed_samples.as_ref().map(|s| Series {
            label: OBSERVED,
            samples: s,
        }))
        .collect();
    let rows = Table {
        columns: table.columns[1..].to_vec(),
        rows: table
            .rows
            .iter()
            .filter(|r| r[0] == name)
            .map(|r| r[1..].to_vec())
            .collect(),
    };
    let decisions: Vec<String> = outcomes
        .iter()
        .flat_map(|o| {
            o.decisions
                .iter()
                .map(|d| format!("{}: {}", o.totals.policy, d.line(&o.metric_names)))
        })
        .collect();
    let totals: Vec<&warren_sim::Totals> = outcomes.iter().map(|o| &o.totals).collect();
    let totals_json = serde_json::to_string_pretty(&serde_json::json!({
        "scenario": name,
        "description": scenario.description,
        "runs": totals,
        "scale_events": outcomes.iter().map(|o| (&o.totals.policy, &o.scale_events)).collect::<Vec<_>>(),
    }))?;
    let policies: Vec<&str> = outcomes.iter().map(|o| o.totals.policy.as_str()).collect();
    let info = report::RunInfo {
        title: format!("warren simulate: {name}"),
        settings: vec![
            ("scenario".to_owned(), name.to_owned()),
            (
                "simulated time".to_owned(),
                format!("{} s", scenario.duration_secs),
            ),
            ("seed".to_owned(), scenario.seed.to_string()),
            (
                "SLO on queue wait".to_owned(),
                format!("{} s", scenario.slo_secs),
            ),
            ("policies".to_owned(), policies.join(", ")),
        ]
        .into_iter()
        .chain(scenario.observed.as_ref().map(|file| {
            (
                "observed".to_owned(),
                format!("{file} (what happened live, overlaid as \"{OBSERVED}\")"),
            )
        }))
        .collect(),
        notes: outcomes.iter().filter_map(cut_off_note).collect(),
        ..report::RunInfo::default()
    };
    report::write_comparison(
        dir,
        &info,
        &format!(
            "{} Simulated {} s, seed {}, SLO {} s on queue wait.",
            with_full_stop(&scenario.description),
            scenario.duration_secs,
            scenario.seed,
            scenario.slo_secs
        ),
        &series,
        &totals_json,
        &rows,
        &decisions,
    )?;
    Ok(())
}

/// A note when a run ends with more workers up than it had at its fewest: the scenario's end
/// cut it off before its pool scaled down, so its worker-seconds and cost ratio stop there.
fn cut_off_note(outcome: &RunOutcome) -> Option<String> {
    let last = outcome.samples.last()?;
    let fewest = outcome.samples.iter().map(|s| s.workers_current).min()?;
    (last.workers_current > fewest).then(|| {
        format!(
            "{}: the run is cut off at {} s with {} workers still up (its fewest were {}): \
             its worker-seconds and cost ratio end there, before the pool scaled back down.",
            outcome.totals.policy, last.t_secs, last.workers_current, fewest
        )
    })
}

/// The observed steps as report samples, to overlay on the runs' charts: replicas as the
/// workers, messages ready as the depth; jobs processed estimated as the arrivals so far less
/// the backlog's growth (the live workers' acks are not in the capture).
fn observed_report_samples(observed: &Observed) -> Vec<report::Sample> {
    let first_backlog = observed
        .steps
        .first()
        .and_then(|s| s.backlog)
        .unwrap_or(0.0);
    let mut arrived = 0.0;
    let mut processed = 0u64;
    let mut last: Option<&crate::whatif::capture::ObservedStep> = None;
    observed
        .steps
        .iter()
        .map(|s| {
            if let Some(prev) = last {
                arrived += (prev.arrival_rate.unwrap_or(0.0) + s.arrival_rate.unwrap_or(0.0)) / 2.0
                    * (s.t_secs - prev.t_secs);
            }
            last = Some(s);
            let done = arrived - (s.backlog.unwrap_or(first_backlog) - first_backlog);
            processed = processed.max(done.max(0.0).round() as u64);
            let replicas = s.replicas.unwrap_or(0.0).round() as u32;
            report::Sample {
                t_secs: s.t_secs,
                queue_ready: s.backlog.unwrap_or(0.0),
                queue_unacked: 0.0,
                arrival_rate: s.arrival_rate.unwrap_or(0.0),
                target_rate: s.arrival_rate.unwrap_or(0.0),
                workers_current: replicas,
                workers_ready: replicas,
                workers_desired: replicas,
                processed_total: processed,
                queue_wait_p95_secs: s.wait_p95_secs,
            }
        })
        .collect()
}

fn to_report_sample(s: &warren_sim::Sample) -> report::Sample {
    report::Sample {
        t_secs: s.t_secs,
        queue_ready: s.queue_ready as f64,
        queue_unacked: s.queue_unacked as f64,
        arrival_rate: s.arrival_rate,
        target_rate: s.target_rate,
        workers_current: s.workers_current,
        workers_ready: s.workers_ready,
        workers_desired: s.workers_desired,
        processed_total: s.processed_total,
        queue_wait_p95_secs: s.queue_wait_p95_secs,
    }
}

/// The table as aligned text: text columns to the left, numbers to the right.
fn text_table(table: &Table) -> String {
    let widths: Vec<usize> = (0..table.columns.len())
        .map(|i| {
            table
                .rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([table.columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i < 2 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&table.columns);
    for row in &table.rows {
        out.push_str(&line(row));
    }
    out
}
