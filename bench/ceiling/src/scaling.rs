//! `warren-scaling`: writes docs/scaling.md, the scenario suite's results for every policy
//! family, and the fronts as SVG charts beside it. Run by `bench/scaling`.
//!
//! Every scenario of `scenarios/suite/` (pod start 10 s, Prometheus scrape 15 s, HPA sync 15 s)
//! runs under: the seed's HPA, KEDA's rabbitmq defaults, the shipped queue-length HPA at several
//! targets, and the capacity HPA at a grid of knob settings. The targets of docs/scaling.md are
//! then checked on the results, and each miss is named with its figures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use plotters::prelude::*;
use warren_sim::capacity::{CapacityFormula, Knobs};
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

const QUEUE_HPA: &str = "deploy/kubernetes/overlays/prometheus-adapter/hpa.yaml";
const CAPACITY_HPA: &str = "deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml";
const SEED_HPA: &str = "scenarios/policies/seed-hpa.yaml";
const KEDA_DEFAULTS: &str = "scenarios/policies/keda-rabbitmq-defaults.yaml";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Seed,
    Keda,
    QueueLength,
    Capacity,
}

impl Family {
    fn label(self) -> &'static str {
        match self {
            Family::Seed => "seed HPA",
            Family::Keda => "KEDA defaults",
            Family::QueueLength => "queue length",
            Family::Capacity => "capacity",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Family::Seed => RGBColor(127, 127, 127),
            Family::Keda => RGBColor(214, 39, 40),
            Family::QueueLength => RGBColor(255, 127, 14),
            Family::Capacity => RGBColor(31, 119, 180),
        }
    }
}

struct Policy {
    family: Family,
    name: String,
    /// The capacity policy's knobs.
    knobs: Option<Knobs>,
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

fn read(root: &Path, path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"))
}

fn policies(root: &Path) -> anyhow::Result<Vec<Policy>> {
    let mut out = vec![
        Policy {
            family: Family::Seed,
            name: "seed HPA".into(),
            knobs: None,
            spec: PolicySpec::from_hpa_yaml("seed HPA", &read(root, SEED_HPA)?)?,
        },
        Policy {
            family: Family::Keda,
            name: "KEDA defaults".into(),
            knobs: None,
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
        });
    }
    let capacity = read(root, CAPACITY_HPA)?;
    for target_utilisation in UTILISATIONS {
        for drain_secs in DRAINS {
            let knobs = Knobs {
                target_utilisation,
                drain_secs,
                ..Knobs::default()
            };
            let name = format!("capacity u={target_utilisation} D={drain_secs}s");
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
            });
        }
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

fn chart(path: &Path, title: &str, policies: &[Policy], results: &[Result]) -> anyhow::Result<()> {
    let x_max = results.iter().map(Result::cost).fold(1.0, f64::max) * 1.05;
    let y_max = results
        .iter()
        .map(|r| r.totals.wait_p95_secs)
        .fold(1.0, f64::max)
        * 1.05;
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
        Family::Seed,
        Family::Keda,
        Family::QueueLength,
        Family::Capacity,
    ] {
        let color = family.color();
        let mine: Vec<&Result> = results
            .iter()
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
            "| policy | wait p95 s | wait max s | within SLO | worker-s / busy-s | scale events |"
        )?;
        writeln!(body, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
        for r in results {
            let t = &r.totals;
            writeln!(
                body,
                "| {} | {:.1} | {:.1} | {:.1}% | {:.2} | {} |",
                policies[r.policy].name,
                t.wait_p95_secs,
                t.wait_max_secs,
                t.within_slo * 100.0,
                r.cost(),
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
        for family in [Family::Seed, Family::Keda] {
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
         Prometheus scrape 15 s and HPA sync 15 s (`metrics.source: prometheus`). Policies: the seed's HPA \
         (`{SEED_HPA}`), KEDA's rabbitmq defaults (`{KEDA_DEFAULTS}`), the shipped queue-length HPA (`{QUEUE_HPA}`) \
         at targets {QUEUE_TARGETS:?} ready messages per worker, and the capacity HPA (`{CAPACITY_HPA}`) at target \
         utilisation u in {UTILISATIONS:?} and drain time D in {DRAINS:?} s (u=0.8 D=30s are the shipped knobs). \
         Cost is worker-seconds / busy-seconds: 1 is no idle worker.\n\n\
         ### Targets\n\n{targets}\n{body}{live}{recommended}",
        cli.machine, cli.date
    );
    std::fs::write(&out_path, page)?;
    eprintln!("warren-scaling: wrote {}", out_path.display());
    Ok(())
}
