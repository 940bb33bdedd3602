//! `warren recommend`: searches each policy family with the simulator and prints the HPA
//! manifest that keeps the p95 queue wait within the SLO in every scenario given, at the fewest
//! worker-seconds.
//!
//! The families, each over the base manifest's target, maxReplicas and scale-up behavior:
//! the queue-length target (ready messages per worker), and the capacity metric
//! `warren_workers_needed` at a grid of knobs: the headroom from the SLO (square-root
//! staffing, beta derived from `--slo` by Erlang C at 0.8 x maxReplicas busy workers of the
//! default work time, `Knobs::for_slo`) or a fixed target utilisation, each at several drain
//! times; both at
//! minReplicas 1 and 2 and a scale-down stabilization window of 60 s or 300 s. stdout gets the
//! manifest alone (`warren recommend ... > hpa.yaml`), stderr the progress and the table of
//! every candidate; `--report-dir` also writes the table, the manifest and the fronts chart.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plotters::prelude::*;
use serde_yaml::Value;
use warren_policy::capacity::{CapacityFormula, Knobs};
use warren_sim::{FormulaFactory, PolicySpec, Scenario};

use crate::config::ConfigError;
use crate::scaling::autoscale::{BUILTIN_CAPACITY_HPA, BUILTIN_CAPACITY_HPA_NAME};
use crate::whatif::capacity_rules;

/// Options of `warren recommend`.
#[derive(Debug, clap::Args)]
pub struct RecommendArgs {
    /// A scenario file (see scenarios/); repeat for several. The result meets the SLO in each.
    #[arg(long = "scenario", value_name = "FILE", required = true)]
    pub scenario: Vec<PathBuf>,
    /// The p95 queue wait to keep, e.g. 10s: the candidates are judged by it, and the capacity
    /// candidates' square-root headroom (beta) is derived from it.
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub slo: Duration,
    /// The HPA manifest to start from: its scaleTargetRef, maxReplicas, scale-up behavior and
    /// the queue selector of its metric are kept. Default: the capacity overlay's
    /// (deploy/kubernetes/overlays/prometheus-adapter-capacity/hpa.yaml), built in.
    #[arg(long, value_name = "FILE")]
    pub hpa: Option<PathBuf>,
    /// Also write the table, the manifest and the fronts chart to this directory.
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// How the capacity candidates' metric is measured: `histogram` (warren's own workers) or
    /// `broker` (workers that export nothing: the broker's estimate, as `warren simulate
    /// --capacity-estimate broker` runs it).
    #[arg(long, default_value = "histogram", value_parser = ["histogram", "broker"])]
    pub capacity_estimate: String,
}

const QUEUE_TARGETS: [u32; 6] = [1, 2, 3, 5, 10, 20];
const UTILISATIONS: [f64; 4] = [0.6, 0.7, 0.8, 0.9];
const DRAINS: [f64; 4] = [15.0, 30.0, 60.0, 120.0];
const MIN_REPLICAS: [u32; 2] = [1, 2];
const SCALE_DOWN_WINDOWS: [u32; 2] = [60, 300];

/// One manifest to try.
struct Candidate {
    family: &'static str,
    settings: String,
    manifest: Value,
    knobs: Option<Knobs>,
    spec: PolicySpec,
}

/// What a candidate did over all scenarios.
struct Tried {
    worst_p95_secs: f64,
    worker_seconds: f64,
}

/// Settings of `warren recommend`, validated.
pub struct RecommendConfig {
    scenarios: Vec<(String, Scenario)>,
    slo_secs: f64,
    candidates: Vec<Candidate>,
    report_dir: Option<PathBuf>,
    /// The capacity metric from the broker alone (no work-time histogram).
    from_broker: bool,
}

impl RecommendArgs {
    /// Reads and checks every file and builds the candidates; each error is one line.
    pub fn to_config(&self) -> Result<RecommendConfig, ConfigError> {
        let slo_secs = self.slo.as_secs_f64();
        if slo_secs <= 0.0 {
            return Err(ConfigError::new("--slo must be above 0"));
        }
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))
        };
        // Built in, as `autoscale` and `demo` have theirs: no checkout needed.
        let (base_name, base_text) = match &self.hpa {
            Some(path) => (path.display().to_string(), read(path)?),
            None => (
                BUILTIN_CAPACITY_HPA_NAME.to_owned(),
                BUILTIN_CAPACITY_HPA.to_owned(),
            ),
        };
        let bad_base = |e: String| ConfigError::new(format!("{base_name}: {e}"));
        PolicySpec::from_hpa_yaml("base", &base_text).map_err(|e| bad_base(e.to_string()))?;
        let base: Value = serde_yaml::from_str(&base_text).map_err(|e| bad_base(e.to_string()))?;
        let selector = base["spec"]["metrics"][0]["external"]["metric"]["selector"].clone();
        let mut scenarios = Vec::new();
        for path in &self.scenario {
            let scenario = Scenario::from_yaml(&read(path)?)
                .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
            let name = path
                .file_stem()
                .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned());
            scenarios.push((name, scenario));
        }
        let from_broker = self.capacity_estimate == "broker";
        let max = base["spec"]["maxReplicas"].as_u64().unwrap_or(1) as f64;
        let for_slo = Knobs::default()
            .for_slo(
                slo_secs,
                capacity_rules::DESIGN_SHARE_OF_MAX * max,
                Knobs::default().default_work_secs,
                warren_policy::capacity::DESIGN_WORK_SCV,
            )
            .map_err(|e| ConfigError::new(format!("--slo: {e}")))?;
        let candidates =
            candidates(&base, &selector, from_broker, for_slo.beta).map_err(bad_base)?;
        Ok(RecommendConfig {
            scenarios,
            slo_secs,
            candidates,
            report_dir: self.report_dir.clone(),
            from_broker,
        })
    }
}

fn metric(name: &str, selector: &Value, average: &str) -> Value {
    let mut metric = serde_yaml::Mapping::new();
    metric.insert("name".into(), name.into());
    if !selector.is_null() {
        metric.insert("selector".into(), selector.clone());
    }
    serde_yaml::from_str::<Value>(&format!(
        "type: External\nexternal:\n  target: {{ type: AverageValue, averageValue: \"{average}\" }}\n"
    ))
    .map(|mut m| {
        m["external"]["metric"] = Value::Mapping(metric);
        m
    })
    .unwrap_or(Value::Null)
}

fn candidates(
    base: &Value,
    selector: &Value,
    from_broker: bool,
    slo_beta: f64,
) -> Result<Vec<Candidate>, String> {
    let mut out = Vec::new();
    let mut families: Vec<(&'static str, String, Value, Option<Knobs>)> = Vec::new();
    for target in QUEUE_TARGETS {
        families.push((
            "queue length",
            format!("target {target}"),
            metric(
                "rabbitmq_queue_messages_ready",
                selector,
                &target.to_string(),
            ),
            None,
        ));
    }
    for drain_secs in DRAINS {
        families.push((
            "capacity",
            format!("beta={slo_beta:.3} (the SLO's) D={drain_secs}s"),
            metric(warren_policy::capacity::METRIC_NAME, selector, "1"),
            Some(Knobs {
                target_utilisation: 1.0,
                beta: slo_beta,
                drain_secs,
                ..Knobs::default()
            }),
        ));
    }
    for target_utilisation in UTILISATIONS {
        for drain_secs in DRAINS {
            families.push((
                "capacity",
                format!("u={target_utilisation} D={drain_secs}s"),
                metric(warren_policy::capacity::METRIC_NAME, selector, "1"),
                Some(Knobs {
                    target_utilisation,
                    drain_secs,
                    ..Knobs::OLD_DEFAULT
                }),
            ));
        }
    }
    for (family, settings, metric, knobs) in families {
        for min in MIN_REPLICAS {
            for window in SCALE_DOWN_WINDOWS {
                let mut manifest = base.clone();
                manifest["spec"]["metrics"] = Value::Sequence(vec![metric.clone()]);
                manifest["spec"]["minReplicas"] = min.into();
                manifest["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] =
                    window.into();
                let settings = format!("{settings}, min {min}, scale-down window {window}s");
                let text = serde_yaml::to_string(&manifest).map_err(|e| e.to_string())?;
                let spec = match knobs {
                    Some(knobs) => {
                        let factory: FormulaFactory = if from_broker {
                            std::sync::Arc::new(move || {
                                Box::new(warren_policy::estimator::QueueEstimator::new(knobs))
                            })
                        } else {
                            std::sync::Arc::new(move || Box::new(CapacityFormula::new(knobs)))
                        };
                        PolicySpec::from_hpa_yaml_with_formulas(
                            &settings,
                            &text,
                            vec![(0, factory)],
                        )
                    }
                    None => PolicySpec::from_hpa_yaml(&settings, &text),
                }
                .map_err(|e| e.to_string())?;
                out.push(Candidate {
                    family,
                    settings,
                    manifest,
                    knobs,
                    spec,
                });
            }
        }
    }
    Ok(out)
}

/// Runs every candidate in every scenario, prints the best manifest on stdout.
pub fn run(config: RecommendConfig) -> anyhow::Result<()> {
    let total = config.candidates.len() * config.scenarios.len();
    // A progress line rewritten in place is for a terminal; a file gets one line.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !terminal {
        eprintln!(
            "warren recommend: {total} runs ({} candidates x {} scenarios)",
            config.candidates.len(),
            config.scenarios.len()
        );
    }
    let mut tried = Vec::new();
    for (i, c) in config.candidates.iter().enumerate() {
        let mut worst = 0.0_f64;
        let mut worker_seconds = 0.0;
        for (j, (name, scenario)) in config.scenarios.iter().enumerate() {
            if terminal {
                eprint!(
                    "\rwarren recommend: {}/{total} runs ({name})",
                    i * config.scenarios.len() + j + 1
                );
                let _ = std::io::stderr().flush();
            }
            let t = warren_sim::run(scenario, &c.spec)?.totals;
            worst = worst.max(t.wait_p95_secs);
            worker_seconds += t.worker_seconds;
        }
        tried.push(Tried {
            worst_p95_secs: worst,
            worker_seconds,
        });
    }
    if terminal {
        eprintln!();
    }
    let best = (0..tried.len())
        .filter(|&i| tried[i].worst_p95_secs <= config.slo_secs)
        .min_by(|&a, &b| tried[a].worker_seconds.total_cmp(&tried[b].worker_seconds));

    let mut table = String::from(
        "| family | settings | worst p95 wait s | worker-seconds | meets SLO |\n| --- | --- | ---: | ---: | --- |\n",
    );
    for (c, t) in config.candidates.iter().zip(&tried) {
        writeln!(
            table,
            "| {} | {} | {:.1} | {:.0} | {} |",
            c.family,
            c.settings,
            t.worst_p95_secs,
            t.worker_seconds,
            if t.worst_p95_secs <= config.slo_secs {
                "yes"
            } else {
                "no"
            }
        )?;
    }
    eprint!("{table}");
    let manifest = best.map(|i| manifest_text(&config.candidates[i], &tried[i], &config));
    if let Some(dir) = &config.report_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("candidates.md"), &table)?;
        chart(&dir.join("fronts.svg"), &config, &tried)?;
        if let Some(m) = &manifest {
            std::fs::write(
                dir.join("hpa.yaml"),
                m.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?,
            )?;
        }
        eprintln!("warren recommend: report in {}", dir.display());
    }
    match manifest {
        Some(m) => {
            print!("{}", m.map_err(|e| anyhow::anyhow!("{e}"))?);
            Ok(())
        }
        None => anyhow::bail!(
            "no candidate keeps the p95 queue wait within {} s in every scenario (the table above has the closest)",
            config.slo_secs
        ),
    }
}

fn manifest_text(c: &Candidate, t: &Tried, config: &RecommendConfig) -> Result<String, String> {
    let mut out = format!(
        "# warren recommend: {} ({}): worst p95 queue wait {:.1} s (SLO {} s), {:.0} worker-seconds\n# over {}.\n",
        c.family,
        c.settings,
        t.worst_p95_secs,
        config.slo_secs,
        t.worker_seconds,
        config
            .scenarios
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let hpa = serde_yaml::to_string(&c.manifest).map_err(|e| e.to_string())?;
    if let Some(k) = c.knobs {
        // The capacity policy needs its rules with these knobs: print the whole set
        // `warren rules` prints, the queue's group carrying the knobs.
        let labels =
            &c.manifest["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"];
        let queue = capacity_rules::QueueRules {
            vhost: labels["vhost"].as_str().unwrap_or("/").to_owned(),
            queue: labels["queue"].as_str().unwrap_or("Orders").to_owned(),
            overrides: capacity_rules::KnobOverrides {
                target_utilisation: Some(k.target_utilisation),
                beta: Some(k.beta),
                drain_secs: Some(k.drain_secs),
                ..Default::default()
            },
            // The candidates were judged with the workers' histogram unless from the broker:
            // the queue's group measures it (warren worker's), as the repository's does.
            histogram: (!config.from_broker).then(|| capacity_rules::Histogram {
                name: "job_duration_seconds".to_owned(),
                matchers: String::new(),
            }),
        };
        let namespace = c.manifest["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let set = capacity_rules::CapacitySet::new(
            &queue,
            &hpa,
            namespace,
            capacity_rules::DEFAULT_PROMETHEUS_URL,
        )
        .map_err(|e| e.to_string())?;
        out.push_str(&set.all(&queue.queue));
        return Ok(out);
    }
    out.push_str(&hpa);
    Ok(out)
}

fn chart(path: &Path, config: &RecommendConfig, tried: &[Tried]) -> anyhow::Result<()> {
    let x_max = tried.iter().map(|t| t.worker_seconds).fold(1.0, f64::max) * 1.05;
    let y_max = tried
        .iter()
        .map(|t| t.worst_p95_secs)
        .fold(config.slo_secs, f64::max)
        * 1.05;
    let x_min = tried.iter().map(|t| t.worker_seconds).fold(x_max, f64::min) * 0.95;
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            "warren recommend: worst p95 wait against worker-seconds; line: the SLO",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(x_min..x_max, 0.0..y_max)?;
    c.configure_mesh()
        .x_desc("worker-seconds, all scenarios")
        .y_desc("worst p95 queue wait (s)")
        .draw()?;
    for (family, color) in [
        ("queue length", RGBColor(255, 127, 14)),
        ("capacity", RGBColor(31, 119, 180)),
    ] {
        let points: Vec<(f64, f64)> = config
            .candidates
            .iter()
            .zip(tried)
            .filter(|(c, _)| c.family == family)
            .map(|(_, t)| (t.worker_seconds, t.worst_p95_secs))
            .collect();
        c.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?
            .label(family)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    }
    c.draw_series(LineSeries::new(
        [(x_min, config.slo_secs), (x_max, config.slo_secs)],
        BLACK.stroke_width(1),
    ))?;
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capacity_winner_is_printed_with_its_rules_so_nothing_is_edited_by_hand() {
        let base: Value = serde_yaml::from_str(
            &crate::whatif::capacity_rules::hpa(
                "shop",
                "emails",
                &crate::whatif::capacity_rules::Target {
                    deployment: "email-workers".into(),
                    namespace: "shop".into(),
                    min: 1,
                    max: 8,
                },
            )
            .unwrap(),
        )
        .unwrap();
        let selector = base["spec"]["metrics"][0]["external"]["metric"]["selector"].clone();
        let all = candidates(&base, &selector, true, 0.5).unwrap();
        let c = all
            .iter()
            .find(|c| {
                c.knobs
                    .is_some_and(|k| k.target_utilisation == 0.7 && k.drain_secs == 60.0)
            })
            .unwrap();
        let config = RecommendConfig {
            scenarios: Vec::new(),
            slo_secs: 10.0,
            candidates: Vec::new(),
            report_dir: None,
            from_broker: true,
        };
        let text = manifest_text(
            c,
            &Tried {
                worst_p95_secs: 5.0,
                worker_seconds: 100.0,
            },
            &config,
        )
        .unwrap();
        let docs: Vec<&str> = text.split("\n---\n").collect();
        assert_eq!(
            docs.len(),
            6,
            "rules, two PrometheusRules (generic, the queue's knobs), adapter, HPA, ScaledObject"
        );
        let rules: Value = serde_yaml::from_str(docs[0]).unwrap();
        let own = serde_yaml::to_string(&rules["groups"][1]).unwrap();
        assert!(own.contains("warren-capacity:shop:emails"), "{own}");
        assert!(
            own.contains("vector(0.7)") && own.contains("vector(60)"),
            "{own}"
        );
        let hpa = warren_hpa::Autoscaler::from_yaml(docs[4]).unwrap();
        assert_eq!(hpa.hpa().spec.scale_target_ref.name, "email-workers");
        assert!(docs[5].contains("kind: ScaledObject"), "{}", docs[5]);
    }
}
