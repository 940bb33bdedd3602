//! `warren-scaling`: writes docs/scaling.md, the scenario suite's results for every policy
//! family, and the fronts as SVG charts beside it. Run by `bench/scaling`.
//!
//! Every scenario of `scenarios/suite/` (pod start 10 s, Prometheus scrape 15 s, HPA sync 15 s)
//! runs under: the original HPA, KEDA's rabbitmq defaults, the shipped queue-length HPA at several
//! targets, the capacity HPA at a grid of knob settings, fixed worker counts, and the oracle
//! (`warren_sim::oracle`, which knows the true arrival rate) at a grid of SLOs. Each row's cost
//! is also given against the oracle's at the same p95 wait. The targets of docs/scaling.md are
//! then checked on the results, and each miss is named with its figures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use plotters::prelude::*;
use warren_policy::capacity::{
    CapacityFormula, Knobs, DEFAULT_SLO_SECS, DESIGN_BUSY_WORKERS, DESIGN_WORK_SCV,
};
use warren_sim::{FormulaFactory, PolicySpec, Scenario, Totals};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "warren-scaling",
    about = "Writes docs/scaling.md from the scenario suite"
)]
struct Cli {
    /// The repository's root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The page to write, relative to the root.
    #[arg(long, default_value = "docs/scaling.md")]
    out: PathBuf,
    /// The machine, for the page's header.
    #[arg(long, default_value = "2-core Debian 12 VM")]
    machine: String,
    /// The date, for the page's header.
    #[arg(long)]
    date: String,
}

/// The live figures bench/fidelity writes with `--live-results`.
const LIVE_RESULTS: &str = "bench/results/scaling-live.md";

const SCENARIOS: [&str; 5] = ["steady", "step", "spikes", "day", "overload"];
/// The scenarios the Pareto target is about (overload shows the physical limit).
const PARETO_SCENARIOS: [&str; 4] = ["steady", "step", "spikes", "day"];
/// The scenarios `bench/scaling` gives `warren recommend`.
const RECOMMEND_SCENARIOS: [&str; 3] = ["steady", "step", "day"];
const QUEUE_TARGETS: [u32; 6] = [1, 2, 3, 5, 10, 20];
const UTILISATIONS: [f64; 4] = [0.6, 0.7, 0.8, 0.9];
const DRAINS: [f64; 4] = [15.0, 30.0, 60.0, 120.0];
/// The p95 SLOs (s) square-root staffing's beta is derived for, beside the default's 5 s.
const SQRT_SLOS: [f64; 4] = [2.0, 3.0, 8.0, 12.0];
/// Fixed worker counts: what no autoscaling at all does.
const FIXED_COUNTS: [u32; 7] = [4, 6, 8, 9, 10, 11, 12];
/// The oracle's SLOs (p95 wait, s): dense enough that every policy's p95 has an oracle run
/// close below it.
const ORACLE_SLOS: [f64; 24] = [
    0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 15.0,
    20.0, 25.0, 30.0, 45.0, 60.0, 120.0,
];
/// The oracle's bounds: the HPAs' minReplicas and maxReplicas.
const ORACLE_MIN: u32 = 1;
const ORACLE_MAX: u32 = 10;
/// The scenarios of the target "within 15 % of the oracle's worker-seconds at the same p95".
const ORACLE_TARGET_SCENARIOS: [&str; 3] = ["step", "day", "spikes"];

const QUEUE_HPA: &str = "deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml";
const CAPACITY_HPA: &str = "deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml";
const ORIGINAL_HPA: &str = "scenarios/policies/original-hpa.yaml";
const KEDA_DEFAULTS: &str = "scenarios/policies/keda-rabbitmq-defaults.yaml";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Original,
    Keda,
    QueueLength,
    Capacity,
    Fixed,
    Oracle,
}

impl Family {
    fn label(self) -> &'static str {
        match self {
            Family::Original => "original HPA",
            Family::Keda => "KEDA defaults",
            Family::QueueLength => "queue length",
            Family::Capacity => "capacity",
            Family::Fixed => "fixed count",
            Family::Oracle => "oracle",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Family::Original => RGBColor(127, 127, 127),
            Family::Keda => RGBColor(214, 39, 40),
            Family::QueueLength => RGBColor(255, 127, 14),
            Family::Capacity => RGBColor(31, 119, 180),
            Family::Fixed => RGBColor(44, 160, 44),
            Family::Oracle => RGBColor(0, 0, 0),
        }
    }
}

struct Policy {
    family: Family,
    name: String,
    /// The capacity policy's knobs.
    knobs: Option<Knobs>,
    /// The oracle's SLO, s.
    oracle_slo: Option<f64>,
    spec: PolicySpec,
}

struct Result {
    policy: usize,
    totals: Totals,
}

impl Result {
    fn cost(&self) -> f64 {
        self.totals.worker_seconds / self.totals.busy_seconds.max(f64::MIN_POSITIVE)
    }
}

/// The capacity HPA as shipped until 2026-12-08: scale-down by at most 50 % per 15 s, as the
/// queue-length HPA's.
fn old_capacity_hpa(hpa: &str) -> anyhow::Result<String> {
    let at_once = "type: Percent\n          value: 100\n          periodSeconds: 15";
    let scale_down = hpa
        .find("scaleDown:")
        .context("the capacity HPA has no scaleDown")?;
    let (up, down) = hpa.split_at(scale_down);
    anyhow::ensure!(
        down.contains(at_once),
        "{CAPACITY_HPA}: no 100 % scale-down policy"
    );
    Ok(format!(
        "{up}{}",
        down.replacen(
            at_once,
            "type: Percent\n          value: 50\n          periodSeconds: 15",
            1
        )
    ))
}

fn read(root: &Path, path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"))
}

fn policies(root: &Path) -> anyhow::Result<Vec<Policy>> {
    let mut out = vec![
        Policy {
            family: Family::Original,
            name: "original HPA".into(),
            knobs: None,
            oracle_slo: None,
            spec: PolicySpec::from_hpa_yaml("original HPA", &read(root, ORIGINAL_HPA)?)?,
        },
        Policy {
            family: Family::Keda,
            name: "KEDA defaults".into(),
            knobs: None,
            oracle_slo: None,
            spec: PolicySpec::from_scaledobject_yaml("KEDA defaults", &read(root, KEDA_DEFAULTS)?)?,
        },
    ];
    let queue = read(root, QUEUE_HPA)?;
    anyhow::ensure!(
        queue.contains("averageValue: \"5\""),
        "{QUEUE_HPA}: no averageValue \"5\" to vary"
    );
    for target in QUEUE_TARGETS {
        let name = format!("queue length {target}");
        let text = queue.replace(
            "averageValue: \"5\"",
            &format!("averageValue: \"{target}\""),
        );
        out.push(Policy {
            family: Family::QueueLength,
            spec: PolicySpec::from_hpa_yaml(&name, &text)?,
            name,
            knobs: None,
            oracle_slo: None,
        });
    }
    let capacity = read(root, CAPACITY_HPA)?;
    for target_utilisation in UTILISATIONS {
        for drain_secs in DRAINS {
            let knobs = Knobs {
                target_utilisation,
                drain_secs,
                ..Knobs::OLD_DEFAULT
            };
            let name = if knobs == Knobs::OLD_DEFAULT {
                format!("capacity u={target_utilisation} D={drain_secs}s (the old default)")
            } else {
                format!("capacity u={target_utilisation} D={drain_secs}s")
            };
            let factory: FormulaFactory =
                std::sync::Arc::new(move || Box::new(CapacityFormula::new(knobs)));
            out.push(Policy {
                family: Family::Capacity,
                spec: PolicySpec::from_hpa_yaml_with_formulas(
                    &name,
                    &capacity,
                    vec![(0, factory)],
                )?,
                name,
                knobs: Some(knobs),
                oracle_slo: None,
            });
        }
    }
    // Square-root staffing, beta derived from a p95 SLO as `warren rules --slo` derives it;
    // the shipped knobs are its 5 s one, rounded.
    let mut sqrt_knobs = vec![("the new default: SLO 5 s".to_owned(), Knobs::default())];
    for slo in SQRT_SLOS {
        let knobs = Knobs::default().for_slo(
            slo,
            DESIGN_BUSY_WORKERS,
            Knobs::default().default_work_secs,
            DESIGN_WORK_SCV,
        )?;
        sqrt_knobs.push((format!("SLO {slo} s"), knobs));
    }
    for (label, knobs) in sqrt_knobs {
        let name = format!("capacity sqrt {label}, beta={:.2}", knobs.beta);
        let factory: FormulaFactory =
            std::sync::Arc::new(move || Box::new(CapacityFormula::new(knobs)));
        out.push(Policy {
            family: Family::Capacity,
            spec: PolicySpec::from_hpa_yaml_with_formulas(&name, &capacity, vec![(0, factory)])?,
            name,
            knobs: Some(knobs),
            oracle_slo: None,
        });
    }
    {
        let name = "capacity u=0.8 D=30s, scale-down 50 % per 15 s (as shipped until 2026-12-08)"
            .to_owned();
        let factory: FormulaFactory =
            std::sync::Arc::new(|| Box::new(CapacityFormula::new(Knobs::OLD_DEFAULT)));
        out.push(Policy {
            family: Family::Capacity,
            spec: PolicySpec::from_hpa_yaml_with_formulas(
                &name,
                &old_capacity_hpa(&capacity)?,
                vec![(0, factory)],
            )?,
            name,
            knobs: None,
            oracle_slo: None,
        });
    }
    for count in FIXED_COUNTS {
        let spec = PolicySpec::fixed(count);
        out.push(Policy {
            family: Family::Fixed,
            name: spec.name().to_owned(),
            knobs: None,
            oracle_slo: None,
            spec,
        });
    }
    for slo in ORACLE_SLOS {
        let spec = PolicySpec::oracle(slo, ORACLE_MIN, Some(ORACLE_MAX))?;
        out.push(Policy {
            family: Family::Oracle,
            name: format!("oracle, SLO {slo} s"),
            knobs: None,
            oracle_slo: Some(slo),
            spec,
        });
    }
    Ok(out)
}

/// The results no other result of the same family beats on both p95 wait and cost.
fn front<'a>(results: &'a [&'a Result]) -> Vec<&'a Result> {
    let mut front: Vec<&Result> = results
        .iter()
        .copied()
        .filter(|r| {
            !results.iter().any(|o| {
                o.totals.wait_p95_secs <= r.totals.wait_p95_secs
                    && o.cost() <= r.cost()
                    && (o.totals.wait_p95_secs < r.totals.wait_p95_secs || o.cost() < r.cost())
            })
        })
        .collect();
    front.sort_by(|a, b| a.cost().total_cmp(&b.cost()));
    front
}

/// "The oracle at the same p95": of the oracle's runs (one per SLO of [`ORACLE_SLOS`]) that
/// waited no longer at the p95 than `p95`, the one with the fewest worker-seconds; none when
/// every oracle run waited longer. The oracle's cost at exactly that p95 is at most this one's,
/// so a ratio to it errs in the policy's favour by at most the gap between two oracle runs.
fn oracle_at<'a>(policies: &[Policy], results: &'a [Result], p95: f64) -> Option<&'a Result> {
    results
        .iter()
        .filter(|r| policies[r.policy].family == Family::Oracle && r.totals.wait_p95_secs <= p95)
        .min_by(|a, b| {
            // Of equal runs, the loosest SLO, as the tables show them.
            a.totals
                .worker_seconds
                .total_cmp(&b.totals.worker_seconds)
                .then(b.totals.wait_p95_secs.total_cmp(&a.totals.wait_p95_secs))
                .then(
                    policies[b.policy]
                        .oracle_slo
                        .partial_cmp(&policies[a.policy].oracle_slo)
                        .unwrap_or(std::cmp::Ordering::Equal),
                )
        })
}

/// A row's worker-seconds over the oracle's at its p95, for the table ("-" when no oracle run
/// waited as little).
fn oracle_ratio(policies: &[Policy], results: &[Result], r: &Result) -> String {
    match oracle_at(policies, results, r.totals.wait_p95_secs) {
        Some(o) => format!(
            "{:.2} ({})",
            r.totals.worker_seconds / o.totals.worker_seconds,
            policies[o.policy]
                .oracle_slo
                .map_or_else(String::new, |slo| format!("SLO {slo} s"))
        ),
        None => "-".into(),
    }
}

fn chart(path: &Path, title: &str, policies: &[Policy], results: &[Result]) -> anyhow::Result<()> {
    // The fixed counts too few to keep up wait for ever: they are left off the chart, whose
    // range the other families set.
    let y_max = results
        .iter()
        .filter(|r| policies[r.policy].family != Family::Fixed)
        .map(|r| r.totals.wait_p95_secs)
        .fold(1.0, f64::max)
        * 1.05;
    let results: Vec<&Result> = results
        .iter()
        .filter(|r| r.totals.wait_p95_secs <= y_max)
        .collect();
    let x_max = results.iter().map(|r| r.cost()).fold(1.0, f64::max) * 1.05;
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(1.0..x_max, 0.0..y_max)?;
    c.configure_mesh()
        .x_desc("worker-seconds / busy-seconds")
        .y_desc("queue wait p95 (s)")
        .draw()?;
    for family in [
        Family::Original,
        Family::Keda,
        Family::QueueLength,
        Family::Capacity,
        Family::Fixed,
        Family::Oracle,
    ] {
        let color = family.color();
        let mine: Vec<&Result> = results
            .iter()
            .copied()
            .filter(|r| policies[r.policy].family == family)
            .collect();
        c.draw_series(
            mine.iter()
                .map(|r| Circle::new((r.cost(), r.totals.wait_p95_secs), 4, color.filled())),
        )?
        .label(family.label())
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
        let line: Vec<(f64, f64)> = front(&mine)
            .iter()
            .map(|r| (r.cost(), r.totals.wait_p95_secs))
            .collect();
        c.draw_series(LineSeries::new(line, color.stroke_width(2)))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = &cli.root;
    let policies = policies(root)?;
    let out_path = root.join(&cli.out);
    let chart_dir = out_path.with_extension("");
    std::fs::create_dir_all(&chart_dir)?;
    let chart_rel = chart_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let mut body = String::new();
    let mut all: Vec<(&str, Scenario, Vec<Result>)> = Vec::new();
    for name in SCENARIOS {
        let path = format!("scenarios/suite/{name}.yaml");
        let scenario = Scenario::from_yaml(&read(root, &path)?).with_context(|| path.clone())?;
        let mut results = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            eprint!(
                "\rwarren-scaling: {name}: {}/{} policies",
                i + 1,
                policies.len()
            );
            let outcome = warren_sim::run(&scenario, &p.spec)
                .with_context(|| format!("{path} with {}", p.name))?;
            results.push(Result {
                policy: i,
                totals: outcome.totals,
            });
        }
        eprintln!();
        chart(
            &chart_dir.join(format!("{name}.svg")),
            &format!(
                "{name}: p95 wait against cost, one point per setting; lines: each family's front"
            ),
            &policies,
            &results,
        )?;
        all.push((name, scenario, results));
    }

    for (name, scenario, results) in &all {
        writeln!(
            body,
            "### {name}\n\n{} (`scenarios/suite/{name}.yaml`, seed {}, SLO {} s)\n",
            scenario.description, scenario.seed, scenario.slo_secs
        )?;
        writeln!(body, "![{name}: fronts]({chart_rel}/{name}.svg)\n")?;
        writeln!(
            body,
            "| policy | wait p95 s | wait max s | within SLO | worker-s / busy-s | worker-s / oracle's at this p95 | scale events |"
        )?;
        writeln!(body, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")?;
        // Every policy, then the oracle's front: its runs that no other of its runs beats on
        // both p95 and cost.
        let oracle: Vec<&Result> = results
            .iter()
            .filter(|r| policies[r.policy].family == Family::Oracle)
            .collect();
        // Several SLOs give the same staffing: the loosest of them stands for it.
        let mut oracle_front = front(&oracle);
        oracle_front.dedup_by(|later, kept| {
            later.totals.wait_p95_secs == kept.totals.wait_p95_secs
                && later.totals.worker_seconds == kept.totals.worker_seconds
                && {
                    if policies[later.policy].oracle_slo > policies[kept.policy].oracle_slo {
                        std::mem::swap(later, kept);
                    }
                    true
                }
        });
        let shown = results
            .iter()
            .filter(|r| policies[r.policy].family != Family::Oracle)
            .chain(oracle_front.iter().rev().copied());
        for r in shown {
            let t = &r.totals;
            writeln!(
                body,
                "| {} | {:.1} | {:.1} | {:.1}% | {:.2} | {} | {} |",
                policies[r.policy].name,
                t.wait_p95_secs,
                t.wait_max_secs,
                t.within_slo * 100.0,
                r.cost(),
                oracle_ratio(&policies, results, r),
                t.scale_events
            )?;
        }
        body.push('\n');
    }

    // The targets.
    let mut targets = String::new();
    let of = |results: &'_ [Result], family: Family| -> Vec<usize> {
        (0..results.len())
            .filter(|&i| policies[results[i].policy].family == family)
            .collect()
    };
    for (name, _, results) in all.iter().filter(|(n, _, _)| PARETO_SCENARIOS.contains(n)) {
        let capacity: Vec<&Result> = of(results, Family::Capacity)
            .iter()
            .map(|&i| &results[i])
            .collect();
        let capacity_front = front(&capacity);
        // A queue-length setting that beats a point of the capacity front on both axes.
        let mut beaten = Vec::new();
        for &q in &of(results, Family::QueueLength) {
            let q = &results[q];
            for c in &capacity_front {
                if q.totals.wait_p95_secs < c.totals.wait_p95_secs && q.cost() <= c.cost() {
                    beaten.push(format!(
                        "{} ({:.1} s at {:.2}x) beats {} ({:.1} s at {:.2}x)",
                        policies[q.policy].name,
                        q.totals.wait_p95_secs,
                        q.cost(),
                        policies[c.policy].name,
                        c.totals.wait_p95_secs,
                        c.cost()
                    ));
                }
            }
        }
        if beaten.is_empty() {
            writeln!(targets, "- **Pareto, {name}: met.** No queue-length setting has a lower p95 wait at no more worker-seconds than a setting of the capacity front.")?;
        } else {
            writeln!(
                targets,
                "- **Pareto, {name}: missed:** {}.",
                beaten.join("; ")
            )?;
        }
        for family in [Family::Original, Family::Keda] {
            let other = &results[of(results, family)[0]];
            let better = capacity
                .iter()
                .filter(|c| {
                    c.totals.wait_p95_secs < other.totals.wait_p95_secs && c.cost() <= other.cost()
                })
                .min_by(|a, b| a.totals.wait_p95_secs.total_cmp(&b.totals.wait_p95_secs));
            match better {
                Some(c) => writeln!(targets, "- **Beats {}, {name}: met:** {} waits {:.1} s p95 at {:.2}x against {:.1} s at {:.2}x.", family.label(), policies[c.policy].name, c.totals.wait_p95_secs, c.cost(), other.totals.wait_p95_secs, other.cost())?,
                None => writeln!(targets, "- **Beats {}, {name}: missed:** no capacity setting waits less than its {:.1} s p95 at no more than its {:.2}x.", family.label(), other.totals.wait_p95_secs, other.cost())?,
            }
        }
    }
    for name in ["steady", "step"] {
        let (_, _, results) = all
            .iter()
            .find(|(n, _, _)| *n == name)
            .context("scenario")?;
        let d = results
            .iter()
            .find(|r| policies[r.policy].knobs == Some(Knobs::default()))
            .context("the default knobs are in the grid")?;
        let (p95, cost) = (d.totals.wait_p95_secs, d.cost());
        let verdict = if p95 <= 5.0 && cost <= 1.25 {
            "met"
        } else {
            "missed"
        };
        writeln!(targets, "- **Defaults, {name}: {verdict}:** p95 wait {p95:.1} s (target <= 5 s), worker-seconds {cost:.2}x busy-seconds (target <= 1.25x).")?;
    }
    let defaults = |results: &'_ [Result]| -> anyhow::Result<usize> {
        results
            .iter()
            .position(|r| policies[r.policy].knobs == Some(Knobs::default()))
            .context("the default knobs are in the grid")
    };
    {
        let (_, _, results) = all
            .iter()
            .find(|(n, _, _)| *n == "steady")
            .context("scenario")?;
        let d = &results[defaults(results)?];
        let dominating: Vec<String> = of(results, Family::Fixed)
            .iter()
            .map(|&i| &results[i])
            .filter(|f| {
                f.totals.wait_p95_secs < d.totals.wait_p95_secs
                    && f.totals.worker_seconds <= d.totals.worker_seconds
            })
            .map(|f| {
                format!(
                    "{} ({:.1} s at {:.2}x)",
                    policies[f.policy].name,
                    f.totals.wait_p95_secs,
                    f.cost()
                )
            })
            .collect();
        if dominating.is_empty() {
            writeln!(targets, "- **Not beaten by a fixed count, steady: met.** No fixed count of {FIXED_COUNTS:?} has both a lower p95 wait and no more worker-seconds than the defaults ({:.1} s at {:.2}x).", d.totals.wait_p95_secs, d.cost())?;
        } else {
            writeln!(targets, "- **Not beaten by a fixed count, steady: missed:** against the defaults' {:.1} s at {:.2}x, {}.", d.totals.wait_p95_secs, d.cost(), dominating.join(", "))?;
        }
    }
    // The oracle, like a fixed count, starts with its workers ready; the HPAs start at
    // minReplicas. The same oracle from their cold start says what that start alone costs.
    for name in ["steady", "step"] {
        let (_, scenario, results) = all
            .iter()
            .find(|(n, _, _)| *n == name)
            .context("scenario")?;
        let mut cold = scenario.clone();
        cold.workers.initial = Some(ORACLE_MIN);
        let warm = results
            .iter()
            .filter(|r| policies[r.policy].family == Family::Oracle)
            .map(|r| r.totals.wait_p95_secs)
            .fold(f64::INFINITY, f64::min);
        let mut best: Option<(f64, f64, f64)> = None;
        for p in policies.iter().filter(|p| p.family == Family::Oracle) {
            let t = warren_sim::run(&cold, &p.spec)
                .with_context(|| format!("{name} from a cold start with {}", p.name))?
                .totals;
            let cost = t.worker_seconds / t.busy_seconds.max(f64::MIN_POSITIVE);
            if best.is_none_or(|(p95, c, _)| {
                t.wait_p95_secs < p95 || (t.wait_p95_secs == p95 && cost < c)
            }) {
                best = Some((t.wait_p95_secs, cost, p.oracle_slo.unwrap_or_default()));
            }
        }
        let d = &results[defaults(results)?];
        if let Some((p95, cost, slo)) = best {
            // And the defaults started warm, with maxReplicas ready, as a fixed count starts.
            let mut warm_start = scenario.clone();
            warm_start.workers.initial = Some(ORACLE_MAX);
            let w = warren_sim::run(&warm_start, &policies[d.policy].spec)
                .with_context(|| format!("{name} from a warm start with the defaults"))?
                .totals;
            let w_cost = w.worker_seconds / w.busy_seconds.max(f64::MIN_POSITIVE);
            writeln!(targets, "- **The cold start, {name}:** started as the HPAs are ({ORACLE_MIN} worker ready at 0 s; the pod start 10 s), the oracle waits {p95:.1} s p95 at best (SLO {slo} s, {cost:.2}x busy-seconds), against {warm:.1} s started with its workers ready as in the table; the defaults wait {:.1} s at {:.2}x from the cold start, and {:.1} s at {w_cost:.2}x started with {ORACLE_MAX} workers ready.", d.totals.wait_p95_secs, d.cost(), w.wait_p95_secs)?;
        }
    }
    for name in ORACLE_TARGET_SCENARIOS {
        let (_, _, results) = all
            .iter()
            .find(|(n, _, _)| *n == name)
            .context("scenario")?;
        let d = &results[defaults(results)?];
        let p95 = d.totals.wait_p95_secs;
        match oracle_at(&policies, results, p95) {
            Some(o) => {
                let ratio = d.totals.worker_seconds / o.totals.worker_seconds;
                let verdict = if ratio <= 1.15 { "met" } else { "missed" };
                writeln!(targets, "- **Within 15 % of the oracle, {name}: {verdict}:** the defaults spend {ratio:.2}x the worker-seconds of the oracle at the same p95 (defaults {p95:.1} s at {:.2}x busy-seconds; {} {:.1} s at {:.2}x).", d.cost(), policies[o.policy].name, o.totals.wait_p95_secs, o.cost())?;
            }
            None => writeln!(targets, "- **Within 15 % of the oracle, {name}: missed:** no oracle run waits as little as the defaults' {p95:.1} s p95.")?,
        }
    }

    // After the load stops: the demo's scenario under the capacity HPA, old and new defaults.
    {
        let path = "scenarios/demo.yaml";
        let demo = Scenario::from_yaml(&read(root, path)?).with_context(|| path.to_owned())?;
        let load_ends = demo.arrivals.pattern_secs.unwrap_or(demo.duration_secs);
        let window = 60.0;
        let sync = demo.metrics.sync_period_secs;
        let mut seen = Vec::new();
        let hpa = read(root, CAPACITY_HPA)?;
        let old_hpa = old_capacity_hpa(&hpa)?;
        for (label, knobs, hpa) in [
            ("the new default", Knobs::default(), &hpa),
            ("the old default", Knobs::OLD_DEFAULT, &hpa),
            (
                "the old default with the old scale-down policy (50 % per 15 s)",
                Knobs::OLD_DEFAULT,
                &old_hpa,
            ),
        ] {
            let factory: FormulaFactory =
                std::sync::Arc::new(move || Box::new(CapacityFormula::new(knobs)));
            let spec = PolicySpec::from_hpa_yaml_with_formulas(label, hpa, vec![(0, factory)])?;
            let outcome = warren_sim::run(&demo, &spec)?;
            // The last time the pool was above minReplicas, after the load.
            let back = outcome
                .samples
                .iter()
                .filter(|s| s.t_secs >= load_ends && s.workers_current > ORACLE_MIN)
                .map(|s| s.t_secs)
                .fold(load_ends, f64::max);
            let idle_after: f64 = outcome
                .samples
                .windows(2)
                .filter(|w| w[0].t_secs >= load_ends)
                .map(|w| {
                    let busy = w[0].queue_unacked.min(u64::from(w[0].workers_current)) as f64;
                    (f64::from(w[0].workers_current) - busy).max(0.0) * (w[1].t_secs - w[0].t_secs)
                })
                .sum();
            seen.push(format!(
                "{label} is back at {ORACLE_MIN} worker {:.0} s after the last arrival ({idle_after:.0} idle worker-seconds after it)",
                back - load_ends
            ));
            if label == "the new default" {
                let bound = window + 2.0 * sync;
                let verdict = if back - load_ends <= bound {
                    "met"
                } else {
                    "missed"
                };
                seen.insert(0, format!("**After the load stops, demo: {verdict}:** bound {bound:.0} s (the 60 s scale-down window plus two {sync:.0} s syncs)"));
            }
        }
        writeln!(
            targets,
            "- {}; simulated on `{path}` (its own metric source and delays).",
            seen.join("; ")
        )?;
    }

    // `warren recommend`'s result, when bench/scaling ran it first.
    let recommended = match std::fs::read_to_string(chart_dir.join("recommend/hpa.yaml")) {
        Ok(manifest) => format!(
            "## The `warren recommend` result\n\n\
             `bench/scaling` runs `warren recommend --slo 10s` over {RECOMMEND_SCENARIOS:?} \
             (spikes is left out: no candidate keeps its p95 within 10 s, see above). It prints:\n\n\
             ```yaml\n{manifest}```\n\n\
             Every candidate it tried: [{chart_rel}/recommend/candidates.md]({chart_rel}/recommend/candidates.md); \
             the fronts (worst p95 wait against worker-seconds over those scenarios):\n\n\
             ![warren recommend: fronts]({chart_rel}/recommend/fronts.svg)\n\n"
        ),
        Err(_) => String::new(),
    };
    // The live runs beside their simulation, as bench/fidelity measured them.
    let live = match std::fs::read_to_string(root.join(LIVE_RESULTS)) {
        Ok(results) => format!(
            "## Live, next to the simulator\n\n\
             The queue-length HPA and the capacity HPA (shipped knobs) on one machine, each in the same \
             scenario live and simulated; the table is `{LIVE_RESULTS}`, written by `bench/fidelity`.\n\n{results}\n"
        ),
        Err(_) => format!(
            "## Live, next to the simulator\n\nNo live results: `{LIVE_RESULTS}` is written by \
             `bench/fidelity --live-results {LIVE_RESULTS}` (see its usage).\n\n"
        ),
    };
    let intro = read(root, "bench/ceiling/src/scaling-intro.md")?;
    let page = format!(
        "<!-- Generated by bench/scaling: edit bench/ceiling/src/scaling-intro.md or the suite, not this file. -->\n\n\
         {intro}\n## The scenario suite's results\n\n\
         Generated by `bench/scaling` ({}, {}); do not edit by hand. Every scenario runs with pod start 10 s, \
         Prometheus scrape 15 s and HPA sync 15 s (`metrics.source: prometheus`). Policies: the original HPA \
         (`{ORIGINAL_HPA}`), KEDA's rabbitmq defaults (`{KEDA_DEFAULTS}`), the shipped queue-length HPA (`{QUEUE_HPA}`) \
         at targets {QUEUE_TARGETS:?} ready messages per worker, and the capacity HPA (`{CAPACITY_HPA}`) at target \
         utilisation u in {UTILISATIONS:?} and drain time D in {DRAINS:?} s with no square-root term (u=0.8 D=30s: the old default; \
         with the capacity HPA's old scale-down policy, 50 % per 15 s, it is the policy shipped until 2026-12-08), and with square-root staffing (u=1, beta from a p95 SLO of {DEFAULT_SLO_SECS} s, the new default, and {SQRT_SLOS:?} s \
         at {DESIGN_BUSY_WORKERS} busy workers of 5 s work, `Knobs::for_slo`; D=30s), \
         fixed worker counts {FIXED_COUNTS:?}, and the oracle (`warren_sim::oracle`, measuring only: it knows the \
         true arrival rate at every instant and the work-time distribution, with no metric delay, and keeps the \
         fewest workers, {ORACLE_MIN} to {ORACLE_MAX}, whose p95 wait meets its SLO by Erlang C; its workers still \
         take the 10 s pod start) at SLOs {ORACLE_SLOS:?} s, of which the tables show the front (the charts leave off the fixed counts too few to keep up). \
         Cost is worker-seconds / busy-seconds: 1 is no idle worker. \
         **The oracle at the same p95** is, of the oracle's runs whose p95 wait is no longer than the row's, the one \
         with the fewest worker-seconds (named in brackets); a row's worker-seconds over that run's say how far the \
         row is from what knowing the load would cost. The oracle at exactly the row's p95 would cost at most as \
         much, so the ratio errs in the row's favour. The oracle is a reference, not a lower bound: it \
         meets its SLO at every instant (pointwise stationary staffing), where a row's p95 is over the whole run, and \
         it never lets the queue grow without bound. A ratio below 1 is a row that waits longer than the oracle in \
         some hours and less in others, or longer than any oracle run (its slowest is the fewest workers that keep \
         up). The oracle and the fixed counts start with their workers ready; the HPAs start at minReplicas (1), and \
         the targets give the oracle from that cold start too. All figures are simulated.\n\n\
         ### Targets\n\n{targets}\n{body}{live}{recommended}",
        cli.machine, cli.date
    );
    std::fs::write(&out_path, page)?;
    eprintln!("warren-scaling: wrote {}", out_path.display());
    Ok(())
}
