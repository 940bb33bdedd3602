//! The demo's report: a time-series CSV, charts and an HTML page; the same charts and page
//! for several simulated runs overlaid ([`write_comparison`], used by `warren simulate`).
//!
//! [`write_report`] writes, into one directory:
//!
//! - `timeseries.csv`: one row per [`Sample`], every field (read back with [`read_timeseries`]);
//! - `totals.json`: the [`Totals`], for scripts and tests;
//! - four SVG charts: queue depth, workers (current, ready, desired), arrival rate, queue wait p95;
//! - `index.html`: one self-contained page with the totals, the charts and the autoscaler's
//!   decisions.
//!
//! The charts are SVG so that nothing here needs a font: the SVG carries its text as `<text>`
//! elements and the browser (or any SVG viewer) lays it out with its own fonts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// One sample of the demo's state, taken about once a second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the demo started.
    pub t_secs: f64,
    /// Messages ready in the work queue.
    pub queue_ready: f64,
    /// Messages delivered and not yet acked.
    pub queue_unacked: f64,
    /// Jobs accepted (answered 200) per second by `/generate`, over the last interval.
    pub arrival_rate: f64,
    /// The load's target rate at this time (requests per second).
    pub target_rate: f64,
    /// Live worker processes.
    pub workers_current: u32,
    /// Workers whose `/readyz` answers 200.
    pub workers_ready: u32,
    /// The autoscaler's desired replica count.
    pub workers_desired: u32,
    /// Jobs acked so far, all workers together.
    pub processed_total: u64,
    /// 95th percentile of queue wait over the last interval, if any job finished in it.
    pub queue_wait_p95_secs: Option<f64>,
}

/// The demo's totals, shown at the top of the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Jobs answered 200 by `/generate`.
    pub accepted: u64,
    /// Distinct accepted jobs acked by a worker.
    pub processed: u64,
    /// Accepted jobs never acked.
    pub lost: u64,
    /// Acks beyond the first for the same job.
    pub duplicates: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Sum over workers of their lifetimes, in seconds.
    pub worker_seconds: f64,
    /// The demo's wall-clock duration, in seconds.
    pub duration_secs: f64,
}

/// The time series' file name inside the report directory.
pub const TIMESERIES_FILE: &str = "timeseries.csv";
/// The totals' file name inside the report directory.
pub const TOTALS_FILE: &str = "totals.json";
/// The HTML page's file name inside the report directory.
pub const INDEX_FILE: &str = "index.html";
/// The charts' file names inside the report directory, in the order the page shows them.
pub const CHART_FILES: [&str; 4] = [
    "queue_depth.svg",
    "workers.svg",
    "arrival_rate.svg",
    "queue_wait_p95.svg",
];

/// The CSV header: the [`Sample`] field names, in order.
const CSV_HEADER: [&str; 10] = [
    "t_secs",
    "queue_ready",
    "queue_unacked",
    "arrival_rate",
    "target_rate",
    "workers_current",
    "workers_ready",
    "workers_desired",
    "processed_total",
    "queue_wait_p95_secs",
];

/// Writes the report into `dir` (created if missing) and returns the HTML page's path.
///
/// `decisions` are the autoscaler's decisions, one human-readable line each; the page shows them
/// as text, never as markup.
pub fn write_report(
    dir: &Path,
    samples: &[Sample],
    totals: &Totals,
    decisions: &[String],
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the report directory {}", dir.display()))?;

    write_file(&dir.join(TIMESERIES_FILE), &timeseries_csv(samples))?;
    let totals_json = serde_json::to_string_pretty(totals).context("cannot encode the totals")?;
    write_file(&dir.join(TOTALS_FILE), &totals_json)?;

    let charts = charts(&[Series { label: "", samples }]);
    write_charts(dir, &charts)?;

    let index = dir.join(INDEX_FILE);
    write_file(&index, &index_html(samples, totals, decisions, &charts))?;
    Ok(index)
}

fn write_charts(dir: &Path, charts: &[Chart; 4]) -> anyhow::Result<()> {
    for (chart, file) in charts.iter().zip(CHART_FILES) {
        let svg = chart
            .render()
            .with_context(|| format!("cannot draw the chart {file}"))?;
        write_file(&dir.join(file), &svg)?;
    }
    Ok(())
}

/// A table for the page: a header row and rows of cells, all text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// The column names.
    pub columns: Vec<String>,
    /// The rows, one cell per column.
    pub rows: Vec<Vec<String>>,
}

/// Writes a report of several runs over one load into `dir`, with the demo's charts (every run
/// overlaid), a `timeseries.csv` whose first column names the run, `totals_json` as
/// `totals.json`, and a page with `title`, `summary`, the comparison `table` and the decisions.
/// Returns the page's path.
pub fn write_comparison(
    dir: &Path,
    title: &str,
    summary: &str,
    runs: &[Series<'_>],
    totals_json: &str,
    table: &Table,
    decisions: &[String],
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    let mut csv = format!("run,{}\n", CSV_HEADER.join(","));
    for run in runs {
        for line in timeseries_csv(run.samples).lines().skip(1) {
            let _ = writeln!(csv, "{},{line}", csv_field(run.label));
        }
    }
    write_file(&dir.join(TIMESERIES_FILE), &csv)?;
    write_file(&dir.join(TOTALS_FILE), totals_json)?;
    let charts = charts(runs);
    write_charts(dir, &charts)?;
    let mut html = page_head(title, summary);
    html.push_str(&table_html(table));
    html.push_str(&charts_html(&charts));
    html.push_str(&decisions_html(decisions));
    html.push_str("</body>\n</html>\n");
    let index = dir.join(INDEX_FILE);
    write_file(&index, &html)?;
    Ok(index)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Reads a `timeseries.csv` written by [`write_report`] back into samples.
pub fn read_timeseries(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_timeseries(&text)
        .with_context(|| format!("{} is not a warren time series", path.display()))
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn timeseries_csv(samples: &[Sample]) -> String {
    let mut csv = CSV_HEADER.join(",");
    csv.push('\n');
    for s in samples {
        // `{}` on f64 prints the shortest text that parses back to the same value, so the CSV
        // round-trips exactly. A missing p95 is an empty field.
        let p95 = s
            .queue_wait_p95_secs
            .map(|v| v.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{}",
            s.t_secs,
            s.queue_ready,
            s.queue_unacked,
            s.arrival_rate,
            s.target_rate,
            s.workers_current,
            s.workers_ready,
            s.workers_desired,
            s.processed_total,
            p95
        );
    }
    csv
}

fn parse_timeseries(text: &str) -> anyhow::Result<Vec<Sample>> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or_default();
    anyhow::ensure!(
        header == CSV_HEADER.join(","),
        "unexpected header {header:?}"
    );
    let mut samples = Vec::new();
    for (index, line) in lines {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        anyhow::ensure!(
            fields.len() == CSV_HEADER.len(),
            "line {line_no}: {} fields, expected {}",
            fields.len(),
            CSV_HEADER.len()
        );
        let field = |i: usize| (fields[i], CSV_HEADER[i], line_no);
        samples.push(Sample {
            t_secs: parse_field(field(0))?,
            queue_ready: parse_field(field(1))?,
            queue_unacked: parse_field(field(2))?,
            arrival_rate: parse_field(field(3))?,
            target_rate: parse_field(field(4))?,
            workers_current: parse_field(field(5))?,
            workers_ready: parse_field(field(6))?,
            workers_desired: parse_field(field(7))?,
            processed_total: parse_field(field(8))?,
            queue_wait_p95_secs: match fields[9] {
                "" => None,
                _ => Some(parse_field(field(9))?),
            },
        });
    }
    Ok(samples)
}

fn parse_field<T>((text, name, line_no): (&str, &str, usize)) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| anyhow::anyhow!("line {line_no}, column {name}: {text:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Charts

const CHART_SIZE: (u32, u32) = (960, 380);
const BLUE_LINE: RGBColor = RGBColor(31, 119, 180);
const LIGHT_BLUE_LINE: RGBColor = RGBColor(150, 195, 235);
const ORANGE_LINE: RGBColor = RGBColor(255, 127, 14);
const GREEN_LINE: RGBColor = RGBColor(44, 160, 44);
const RED_LINE: RGBColor = RGBColor(214, 39, 40);

/// One chart: what it shows, before it is drawn.
struct Chart {
    /// The title drawn on the chart and used as the image's alternative text.
    title: &'static str,
    /// The y axis' description, with its unit.
    y_desc: &'static str,
    /// How to read the chart, under it on the page.
    caption: &'static str,
    /// Whether the y axis counts things (workers), so only whole numbers are labelled.
    whole_numbers: bool,
    /// The lines, in legend order.
    lines: Vec<Line>,
}

/// One line of a chart.
struct Line {
    /// The legend's text.
    label: String,
    color: RGBColor,
    /// Dashed lines are the wanted values (desired workers, the load's target), solid the
    /// observed ones.
    dashed: bool,
    /// Stroke width in pixels; the wider line goes under a narrower one that often equals it.
    width: u32,
    /// Whether each point also gets a dot: for sparse values, where a run can be one point long.
    dots: bool,
    /// Runs of points; a gap between runs is time with no value (no job finished, or a value
    /// that was not a number).
    runs: Vec<Vec<(f64, f64)>>,
}

impl Line {
    fn new(
        label: impl Into<String>,
        color: RGBColor,
        dashed: bool,
        points: Vec<Option<(f64, f64)>>,
    ) -> Self {
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for point in points {
            match point {
                Some((x, y)) if x.is_finite() && y.is_finite() => {
                    if let Some(run) = runs.last_mut() {
                        run.push((x, y));
                    }
                }
                _ => {
                    if runs.last().is_some_and(|r| !r.is_empty()) {
                        runs.push(Vec::new());
                    }
                }
            }
        }
        runs.retain(|r| !r.is_empty());
        Line {
            label: label.into(),
            color,
            dashed,
            width: 2,
            dots: false,
            runs,
        }
    }

    fn width(self, width: u32) -> Self {
        Line { width, ..self }
    }

    fn dots(self) -> Self {
        Line { dots: true, ..self }
    }

    /// A count drawn as steps: it holds its value until the next sample, as a replica count does.
    fn steps(
        label: impl Into<String>,
        color: RGBColor,
        dashed: bool,
        points: Vec<(f64, f64)>,
    ) -> Self {
        let mut stepped = Vec::with_capacity(points.len() * 2);
        for (i, &(x, y)) in points.iter().enumerate() {
            if let Some(&(_, prev_y)) = i.checked_sub(1).and_then(|p| points.get(p)) {
                stepped.push(Some((x, prev_y)));
            }
            stepped.push(Some((x, y)));
        }
        Line::new(label, color, dashed, stepped)
    }
}

impl Chart {
    fn render(&self) -> anyhow::Result<String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
            self.draw(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
            root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(svg)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let points = || self.lines.iter().flat_map(|l| l.runs.iter().flatten());
        let (x_min, x_max) = points()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| {
                (lo.min(x), hi.max(x))
            });
        let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
            (x_min.min(0.0), x_max)
        } else {
            (0.0, x_max.max(1.0))
        };
        let y_max = points().fold(0.0_f64, |m, &(_, y)| m.max(y));
        // Headroom above the highest value keeps the legend in the upper right off the lines.
        let y_max = if self.whole_numbers {
            (y_max * 1.3).ceil().max(y_max + 1.0).max(2.0)
        } else if y_max > 0.0 {
            y_max * 1.3
        } else {
            1.0
        };
        let y_min = points().fold(0.0_f64, |m, &(_, y)| m.min(y));

        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x_min..x_max, y_min..y_max)?;

        let whole = |v: &f64| {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        };
        let decimal = |v: &f64| format_axis(*v);
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("time since start (s)")
            .y_desc(self.y_desc)
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .light_line_style(RGBColor(240, 240, 240))
            .max_light_lines(1)
            .x_label_formatter(&decimal);
        if self.whole_numbers {
            mesh.y_label_formatter(&whole);
        } else {
            mesh.y_label_formatter(&decimal);
        }
        mesh.draw()?;

        for line in &self.lines {
            let style = line.color.stroke_width(line.width);
            // A line with no point still gets its legend entry, so every chart explains itself.
            let empty = Vec::new();
            let runs: Vec<&Vec<(f64, f64)>> = if line.runs.is_empty() {
                vec![&empty]
            } else {
                line.runs.iter().collect()
            };
            for (i, run) in runs.into_iter().enumerate() {
                if line.dots {
                    chart
                        .draw_series(run.iter().map(|&p| Circle::new(p, 2, line.color.filled())))?;
                }
                let annotation = if line.dashed {
                    chart.draw_series(DashedLineSeries::new(run.iter().copied(), 8, 5, style))?
                } else {
                    chart.draw_series(LineSeries::new(run.iter().copied(), style))?
                };
                if i == 0 {
                    let dashed = line.dashed;
                    annotation.label(line.label.as_str()).legend(move |(x, y)| {
                        let ends = vec![(x, y), (x + 24, y)];
                        if dashed {
                            DashedPathElement::new(ends, 7, 4, style).into_dyn()
                        } else {
                            PathElement::new(ends, style).into_dyn()
                        }
                    });
                }
            }
        }

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .margin(10)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
        Ok(())
    }
}

/// An axis label: whole numbers without decimals, small numbers with as few as needed.
fn format_axis(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One run's samples, and its name in the legends (empty for a single run).
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// The run's name, e.g. the policy's.
    pub label: &'a str,
    /// Its samples.
    pub samples: &'a [Sample],
}

/// One colour per compared run.
const RUN_COLORS: [RGBColor; 6] = [
    BLUE_LINE,
    ORANGE_LINE,
    GREEN_LINE,
    RED_LINE,
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn run_color(index: usize) -> RGBColor {
    RUN_COLORS[index % RUN_COLORS.len()]
}

/// Jobs processed per second between one sample and the previous one.
fn processed_rates(samples: &[Sample]) -> Vec<Option<(f64, f64)>> {
    samples
        .windows(2)
        .map(|w| {
            let dt = w[1].t_secs - w[0].t_secs;
            let done = w[1].processed_total.saturating_sub(w[0].processed_total) as f64;
            (dt > 0.0).then(|| (w[1].t_secs, done / dt))
        })
        .collect()
}

/// The charts of [`CHART_FILES`], in order, for one run or several overlaid.
fn charts(runs: &[Series<'_>]) -> [Chart; 4] {
    [
        queue_depth_chart(runs),
        workers_chart(runs),
        arrival_rate_chart(runs),
        queue_wait_chart(runs),
    ]
}

fn queue_depth_chart(runs: &[Series<'_>]) -> Chart {
    let points = |samples: &[Sample], f: fn(&Sample) -> f64| {
        samples.iter().map(|s| Some((s.t_secs, f(s)))).collect()
    };
    let lines = match runs {
        [one] => vec![
            Line::new(
                "ready",
                BLUE_LINE,
                false,
                points(one.samples, |s| s.queue_ready),
            ),
            Line::new(
                "unacked (being worked on)",
                ORANGE_LINE,
                false,
                points(one.samples, |s| s.queue_unacked),
            ),
        ],
        _ => runs
            .iter()
            .enumerate()
            .flat_map(|(i, run)| {
                [
                    Line::new(
                        format!("{}: ready", run.label),
                        run_color(i),
                        false,
                        points(run.samples, |s| s.queue_ready),
                    ),
                    Line::new(
                        format!("{}: unacked", run.label),
                        run_color(i),
                        true,
                        points(run.samples, |s| s.queue_unacked),
                    )
                    .width(1),
                ]
            })
            .collect(),
    };
    Chart {
        title: "Queue depth",
        y_desc: "messages",
        caption: "Messages waiting in the work queue (ready) and delivered to a worker, \
                  not yet acked (unacked).",
        whole_numbers: false,
        lines,
    }
}

fn workers_chart(runs: &[Series<'_>]) -> Chart {
    let series = |samples: &[Sample], f: fn(&Sample) -> u32| {
        samples
            .iter()
            .map(|s| (s.t_secs, f64::from(f(s))))
            .collect()
    };
    let lines = match runs {
        [one] => vec![
            Line::steps(
                "current (live)",
                LIGHT_BLUE_LINE,
                false,
                series(one.samples, |s| s.workers_current),
            )
            .width(5),
            Line::steps(
                "ready",
                GREEN_LINE,
                false,
                series(one.samples, |s| s.workers_ready),
            ),
            Line::steps(
                "desired (autoscaler)",
                RED_LINE,
                true,
                series(one.samples, |s| s.workers_desired),
            ),
        ],
        _ => runs
            .iter()
            .enumerate()
            .flat_map(|(i, run)| {
                [
                    Line::steps(
                        format!("{}: current", run.label),
                        run_color(i),
                        false,
                        series(run.samples, |s| s.workers_current),
                    )
                    .width(3),
                    Line::steps(
                        format!("{}: desired", run.label),
                        run_color(i),
                        true,
                        series(run.samples, |s| s.workers_desired),
                    )
                    .width(1),
                ]
            })
            .collect(),
    };
    Chart {
        title: "Workers: current vs desired",
        y_desc: "workers",
        caption: "The autoscaler's desired count (dashed), the live workers following it, \
                  and those of them answering /readyz.",
        whole_numbers: true,
        lines,
    }
}

fn arrival_rate_chart(runs: &[Series<'_>]) -> Chart {
    let mut lines = Vec::new();
    // Compared runs share their arrivals; the first run's stand for all.
    if let Some(first) = runs.first() {
        lines.push(Line::new(
            "accepted (200) per second",
            BLUE_LINE,
            false,
            first
                .samples
                .iter()
                .map(|s| Some((s.t_secs, s.arrival_rate)))
                .collect(),
        ));
        lines.push(Line::new(
            "load's target rate",
            ORANGE_LINE,
            true,
            first
                .samples
                .iter()
                .map(|s| Some((s.t_secs, s.target_rate)))
                .collect(),
        ));
    }
    match runs {
        [one] => lines.push(
            Line::new(
                "processed (acked) per second",
                GREEN_LINE,
                false,
                processed_rates(one.samples),
            )
            .width(1),
        ),
        _ => {
            for (i, run) in runs.iter().enumerate() {
                lines.push(
                    Line::new(
                        format!("{}: processed per second", run.label),
                        run_color(i + 2),
                        false,
                        processed_rates(run.samples),
                    )
                    .width(1),
                );
            }
        }
    }
    Chart {
        title: "Arrival rate and processed rate",
        y_desc: "jobs per second",
        caption: "Jobs accepted per second by /generate, against the rate the load aimed at \
                  (dashed), and jobs acked per second by the workers.",
        whole_numbers: false,
        lines,
    }
}

fn queue_wait_chart(runs: &[Series<'_>]) -> Chart {
    let lines = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let label = if runs.len() == 1 {
                "p95 of time in queue".to_owned()
            } else {
                format!("{}: p95 of time in queue", run.label)
            };
            Line::new(
                label,
                run_color(i),
                false,
                run.samples
                    .iter()
                    .map(|s| s.queue_wait_p95_secs.map(|v| (s.t_secs, v)))
                    .collect(),
            )
            .dots()
        })
        .collect();
    Chart {
        title: "Queue wait p95",
        y_desc: "seconds",
        caption: "How long 95% of the jobs that finished in each interval had waited in the \
                  queue; a gap is an interval in which no job finished.",
        whole_numbers: false,
        lines,
    }
}

// ---------------------------------------------------------------------------------------------
// The page

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1000px; padding: 0 1rem; color: #1d2127; background: #fafbfc; }
h1 { margin-bottom: 0.2rem; }
.sub { color: #5a6270; margin-top: 0; }
.verdict { padding: 0.8rem 1rem; border-radius: 6px; font-weight: 600; margin: 1rem 0; }
.verdict.ok { background: #e6f4ea; color: #1e6b34; border: 1px solid #a8d5b5; }
.verdict.bad { background: #fdecea; color: #a11a12; border: 1px solid #f0a8a1; }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 0.8rem; margin: 1rem 0 2rem; }
.total { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 0.7rem 0.9rem; }
.total .value { font-size: 1.8rem; font-weight: 700; font-variant-numeric: tabular-nums; }
.total .label { color: #5a6270; font-size: 0.9rem; }
.total.bad { border-color: #d93025; background: #fdecea; }
.total.bad .value { color: #a11a12; }
figure { margin: 0 0 1.5rem; background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 0.5rem; }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: #5a6270; font-size: 0.9rem; padding: 0.3rem 0.5rem 0; }
ol.decisions { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 0.8rem 0.8rem 0.8rem 3rem; }
ol.decisions li { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.85rem; margin: 0.2rem 0; white-space: pre-wrap; word-break: break-word; }
.empty { color: #5a6270; font-style: italic; }
table.comparison { border-collapse: collapse; background: #fff; margin: 1rem 0 2rem; font-size: 0.9rem; }
table.comparison th, table.comparison td { border: 1px solid #dde1e6; padding: 0.3rem 0.6rem; text-align: right; font-variant-numeric: tabular-nums; }
table.comparison th:first-child, table.comparison td:first-child { text-align: left; }
"#;

fn index_html(
    samples: &[Sample],
    totals: &Totals,
    decisions: &[String],
    charts: &[Chart; 4],
) -> String {
    let mut html = page_head("warren demo report", &run_summary(samples, totals));

    if totals.lost > 0 || totals.duplicates > 0 {
        let _ = writeln!(
            html,
            "<p class=\"verdict bad\" id=\"verdict\">&#9888; {} lost, {} duplicate{}: \
             every accepted job should be processed exactly once.</p>",
            totals.lost,
            totals.duplicates,
            if totals.duplicates == 1 { "" } else { "s" }
        );
    } else {
        html.push_str(
            "<p class=\"verdict ok\" id=\"verdict\">&#10003; No job lost, no duplicate: \
             every accepted job was processed exactly once.</p>\n",
        );
    }

    html.push_str("<section class=\"totals\">\n");
    let cards: [(&str, String, bool); 7] = [
        ("accepted", totals.accepted.to_string(), false),
        ("processed", totals.processed.to_string(), false),
        ("lost", totals.lost.to_string(), totals.lost > 0),
        (
            "duplicates",
            totals.duplicates.to_string(),
            totals.duplicates > 0,
        ),
        ("dead-lettered", totals.dead_lettered.to_string(), false),
        (
            "worker-seconds",
            format!("{:.0}", totals.worker_seconds),
            false,
        ),
        ("duration", format_duration(totals.duration_secs), false),
    ];
    for (label, value, bad) in cards {
        let _ = writeln!(
            html,
            "<div class=\"total{}\" id=\"total-{label}\"><div class=\"value\">{}</div>\
             <div class=\"label\">{label}</div></div>",
            if bad { " bad" } else { "" },
            escape(&value)
        );
    }
    html.push_str("</section>\n<h2>Charts</h2>\n");

    html.push_str(&charts_html(charts));
    html.push_str(&decisions_html(decisions));
    html.push_str("</body>\n</html>\n");
    html
}

/// The page's head, its title and the sentence under it.
fn page_head(title: &str, summary: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n<p class=\"sub\">{summary}</p>\n",
        title = escape(title),
        summary = escape(summary)
    )
}

/// The charts as figures, then the links to the data files.
fn charts_html(charts: &[Chart; 4]) -> String {
    let mut html = String::new();
    for (chart, file) in charts.iter().zip(CHART_FILES) {
        let _ = writeln!(
            html,
            "<figure><img src=\"{file}\" alt=\"{title}\" width=\"{w}\" height=\"{h}\">\
             <figcaption>{caption}</figcaption></figure>",
            title = escape(chart.title),
            caption = escape(chart.caption),
            w = CHART_SIZE.0,
            h = CHART_SIZE.1,
        );
    }
    let _ = writeln!(
        html,
        "<p>Every sample: <a href=\"{TIMESERIES_FILE}\">{TIMESERIES_FILE}</a>; \
         the totals: <a href=\"{TOTALS_FILE}\">{TOTALS_FILE}</a>.</p>"
    );
    html
}

/// The autoscaler's decisions, as text.
fn decisions_html(decisions: &[String]) -> String {
    let mut html = format!("<h2>Autoscaler decisions ({})</h2>\n", decisions.len());
    if decisions.is_empty() {
        html.push_str("<p class=\"empty\">No decision was recorded.</p>\n");
    } else {
        html.push_str("<ol class=\"decisions\">\n");
        for line in decisions {
            let _ = writeln!(html, "<li>{}</li>", escape(line));
        }
        html.push_str("</ol>\n");
    }
    html
}

/// A table of text cells.
fn table_html(table: &Table) -> String {
    let mut html = String::from("<table class=\"comparison\" id=\"comparison\">\n<tr>");
    for column in &table.columns {
        let _ = write!(html, "<th>{}</th>", escape(column));
    }
    html.push_str("</tr>\n");
    for row in &table.rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{}</td>", escape(cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n<h2>Charts</h2>\n");
    html
}

/// One sentence on what the run did: its length and the pool's and queue's peaks.
fn run_summary(samples: &[Sample], totals: &Totals) -> String {
    if samples.is_empty() {
        return format!(
            "{} run; no sample was taken.",
            format_duration(totals.duration_secs)
        );
    }
    let peak_workers = samples.iter().map(|s| s.workers_current).max().unwrap_or(0);
    let min_workers = samples.iter().map(|s| s.workers_current).min().unwrap_or(0);
    let last_workers = samples.last().map_or(0, |s| s.workers_current);
    let peak_queue = samples
        .iter()
        .map(|s| s.queue_ready + s.queue_unacked)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    format!(
        "{} run, {} samples. Workers: {min_workers} to {peak_workers}, {last_workers} at the end. \
         Deepest queue: {peak_queue:.0} messages.",
        format_duration(totals.duration_secs),
        samples.len()
    )
}

/// `252.4` -> `4m 12s`.
fn format_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "unknown".to_string();
    }
    let whole = secs.round() as u64;
    match (whole / 3600, whole % 3600 / 60, whole % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}m {s:02}s"),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that scales from one worker up to four and back, with a gap in the queue wait.
    fn synthetic_series() -> Vec<Sample> {
        (0..120u32)
            .map(|i| {
                let t = f64::from(i);
                let up = i > 20 && i < 80;
                let workers = if up { 1 + (i - 20).min(30) / 10 } else { 1 };
                Sample {
                    t_secs: t + 0.25,
                    queue_ready: if up { f64::from(i % 17) * 1.5 } else { 0.0 },
                    queue_unacked: f64::from(workers),
                    arrival_rate: if up {
                        2.0 + f64::from(i % 3) / 3.0
                    } else {
                        0.2
                    },
                    target_rate: if up { 2.0 } else { 0.2 },
                    workers_current: workers,
                    workers_ready: workers.saturating_sub(u32::from(i % 10 == 0)),
                    workers_desired: if up { 4 } else { 1 },
                    processed_total: u64::from(i) * 3,
                    queue_wait_p95_secs: (i % 25 != 0).then(|| 0.1 + f64::from(i) / 7.0),
                }
            })
            .collect()
    }

    fn totals() -> Totals {
        Totals {
            accepted: 361,
            processed: 358,
            lost: 0,
            duplicates: 0,
            dead_lettered: 3,
            worker_seconds: 812.4,
            duration_secs: 252.4,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warren-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Checks that `text` is well-formed XML as far as tags go: every element that opens closes,
    /// in order, and attribute values are quoted. Enough to catch a broken writer without an XML
    /// parser in the dependencies.
    fn assert_well_formed_xml(text: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find('<') {
            let after = &rest[start + 1..];
            let end = after.find('>').expect("a tag that never closes");
            let tag = &after[..end];
            rest = &after[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().expect("a closing tag with no opening one");
                assert_eq!(open, name.trim(), "tags closed out of order");
                continue;
            }
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or_default();
            assert!(!name.is_empty(), "a tag without a name: <{tag}>");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "an unbalanced quote in <{tag}>"
            );
            if !tag.ends_with('/') {
                stack.push(name.to_string());
            }
        }
        assert!(stack.is_empty(), "tags left open: {stack:?}");
        assert!(text.trim_start().starts_with("<svg") || text.trim_start().starts_with("<?xml"));
    }

    #[test]
    fn report_writes_every_file_and_returns_the_page() {
        let dir = temp_dir("files");
        let index =
            write_report(&dir, &synthetic_series(), &totals(), &["one".into()]).expect("report");
        assert_eq!(index, dir.join(INDEX_FILE));
        for file in [INDEX_FILE, TIMESERIES_FILE, TOTALS_FILE]
            .into_iter()
            .chain(CHART_FILES)
        {
            let meta = std::fs::metadata(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(meta.len() > 0, "{file} is empty");
        }
        let totals_back: Totals =
            serde_json::from_str(&std::fs::read_to_string(dir.join(TOTALS_FILE)).expect("totals"))
                .expect("totals json");
        assert_eq!(totals_back, totals());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_csv_round_trips_every_sample() {
        let dir = temp_dir("csv");
        let mut samples = synthetic_series();
        samples[3].arrival_rate = 1.0 / 3.0;
        samples[4].queue_wait_p95_secs = Some(0.123_456_789_012_345_6);
        write_report(&dir, &samples, &totals(), &[]).expect("report");
        let back = read_timeseries(&dir.join(TIMESERIES_FILE)).expect("read back");
        assert_eq!(back, samples);
        let text = std::fs::read_to_string(dir.join(TIMESERIES_FILE)).expect("csv");
        assert_eq!(text.lines().next(), Some(CSV_HEADER.join(",").as_str()));
        assert_eq!(text.lines().count(), samples.len() + 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_timeseries_reader_names_the_bad_field() {
        let text = format!("{}\n1,2,3,4,5,6,7,eight,9,\n", CSV_HEADER.join(","));
        let err = parse_timeseries(&text)
            .expect_err("not a number")
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("workers_desired"),
            "{err}"
        );
        assert!(parse_timeseries("a,b\n").is_err());
    }

    #[test]
    fn report_page_shows_totals_and_escapes_decisions() {
        let dir = temp_dir("html");
        let decisions = vec![
            "t=30s 1 -> 4 ScaleUpStabilized queue_messages_ready=12 target 2".to_string(),
            "<script>alert('x')</script> & more".to_string(),
        ];
        let index = write_report(&dir, &synthetic_series(), &totals(), &decisions).expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        for needle in [
            ">361<",
            ">358<",
            ">3<",
            ">812<",
            "4m 12s",
            "accepted",
            "processed",
            "lost",
            "duplicates",
            "dead-lettered",
            "worker-seconds",
            "duration",
            "No job lost",
            "ScaleUpStabilized",
        ] {
            assert!(html.contains(needle), "the page lacks {needle:?}");
        }
        assert!(
            !html.contains("<script>"),
            "a decision line was not escaped"
        );
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
        for file in CHART_FILES {
            assert!(
                html.contains(&format!("src=\"{file}\"")),
                "the page does not show {file}"
            );
        }
        assert!(
            !html.contains("src=\"/"),
            "images must be referenced relatively"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_page_flags_lost_and_duplicate_jobs() {
        let dir = temp_dir("flags");
        let bad = Totals {
            lost: 2,
            duplicates: 1,
            ..totals()
        };
        let index = write_report(&dir, &synthetic_series(), &bad, &[]).expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        assert!(html.contains("verdict bad"));
        assert!(html.contains("class=\"total bad\" id=\"total-lost\""));
        assert!(html.contains("class=\"total bad\" id=\"total-duplicates\""));
        assert!(!html.contains("No job lost"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_charts_are_well_formed_svg_with_titles_and_legends() {
        let dir = temp_dir("svg");
        write_report(&dir, &synthetic_series(), &totals(), &[]).expect("report");
        let expected = [
            ("queue_depth.svg", ["Queue depth", "messages", "unacked"]),
            (
                "workers.svg",
                [
                    "Workers: current vs desired",
                    "workers",
                    "desired (autoscaler)",
                ],
            ),
            (
                "arrival_rate.svg",
                ["Arrival rate", "jobs per second", "target rate"],
            ),
            (
                "queue_wait_p95.svg",
                ["Queue wait p95", "seconds", "p95 of time in queue"],
            ),
        ];
        for (file, texts) in expected {
            let svg = std::fs::read_to_string(dir.join(file)).expect("svg");
            assert_well_formed_xml(&svg);
            assert!(
                svg.contains("time since start (s)"),
                "{file} lacks its x axis label"
            );
            for text in texts {
                assert!(svg.contains(text), "{file} lacks {text:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_without_samples_still_writes_a_page() {
        let dir = temp_dir("empty");
        let index =
            write_report(&dir.join("nested"), &[], &Totals::default(), &[]).expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        assert!(html.contains("No decision was recorded"));
        for file in CHART_FILES {
            let svg = std::fs::read_to_string(dir.join("nested").join(file)).expect("svg");
            assert_well_formed_xml(&svg);
        }
        assert_eq!(
            read_timeseries(&dir.join("nested").join(TIMESERIES_FILE)).expect("csv"),
            vec![]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_survives_values_that_are_not_numbers() {
        let dir = temp_dir("nan");
        let mut samples = synthetic_series();
        samples[5].queue_ready = f64::NAN;
        samples[6].arrival_rate = f64::INFINITY;
        samples[7].queue_wait_p95_secs = Some(f64::NAN);
        write_report(&dir, &samples, &totals(), &[]).expect("report");
        for file in CHART_FILES {
            let svg = std::fs::read_to_string(dir.join(file)).expect("svg");
            assert_well_formed_xml(&svg);
            assert!(
                !svg.contains("NaN") && !svg.contains("inf"),
                "{file} has a non-number"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_comparison_overlays_every_run_with_one_table() {
        let dir = temp_dir("comparison");
        let a = synthetic_series();
        let b: Vec<Sample> = a
            .iter()
            .map(|s| Sample {
                workers_desired: s.workers_desired + 1,
                ..s.clone()
            })
            .collect();
        let runs = [
            Series {
                label: "shipped",
                samples: &a,
            },
            Series {
                label: "seed, v2",
                samples: &b,
            },
        ];
        let table = Table {
            columns: vec!["policy".into(), "wait p95 s".into()],
            rows: vec![
                vec!["shipped".into(), "24.5".into()],
                vec!["seed, v2".into(), "<40>".into()],
            ],
        };
        let index = write_comparison(
            &dir,
            "warren simulate: demo",
            "two policies",
            &runs,
            "{\"runs\": []}",
            &table,
            &["shipped: t=0.0s decision".into()],
        )
        .expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        assert!(html.contains("<h1>warren simulate: demo</h1>"));
        assert!(html.contains("<td>&lt;40&gt;</td>"), "cells are escaped");
        assert!(html.contains("shipped: t=0.0s decision"));
        let csv = std::fs::read_to_string(dir.join(TIMESERIES_FILE)).expect("csv");
        assert_eq!(csv.lines().count(), 1 + a.len() + b.len());
        assert!(csv.starts_with("run,t_secs,"));
        assert!(
            csv.contains("\n\"seed, v2\",0.25,"),
            "a label with a comma is quoted"
        );
        let workers = std::fs::read_to_string(dir.join("workers.svg")).expect("svg");
        assert_well_formed_xml(&workers);
        for legend in ["shipped: desired", "seed, v2: current"] {
            assert!(workers.contains(legend), "workers.svg lacks {legend:?}");
        }
        let rates = std::fs::read_to_string(dir.join("arrival_rate.svg")).expect("svg");
        assert!(rates.contains("seed, v2: processed per second"));
        assert_eq!(
            std::fs::read_to_string(dir.join(TOTALS_FILE)).expect("totals"),
            "{\"runs\": []}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_durations_read_as_minutes_and_seconds() {
        assert_eq!(format_duration(7.4), "7s");
        assert_eq!(format_duration(252.4), "4m 12s");
        assert_eq!(format_duration(3725.0), "1h 02m 05s");
        assert_eq!(format_duration(f64::NAN), "unknown");
    }
}
