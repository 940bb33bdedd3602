//! The report's SVG charts, drawn from the samples of one run or of several overlaid: queue
//! depth, workers (with a mark at each rescale), arrival rate, processed per second, queue wait
//! p95. All share one time axis.

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::Sample;

pub(super) const CHART_SIZE: (u32, u32) = (960, 380);
const BLUE_LINE: RGBColor = RGBColor(31, 119, 180);
const LIGHT_BLUE_LINE: RGBColor = RGBColor(150, 195, 235);
const ORANGE_LINE: RGBColor = RGBColor(255, 127, 14);
const GREEN_LINE: RGBColor = RGBColor(44, 160, 44);
const RED_LINE: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(120, 120, 120);

/// One chart: what it shows, before it is drawn.
pub(super) struct Chart {
    /// The title drawn on the chart and used as the image's alternative text.
    pub(super) title: &'static str,
    /// The y axis' description, with its unit.
    y_desc: &'static str,
    /// How to read the chart, under it on the page.
    pub(super) caption: &'static str,
    /// What the y axis counts: things (workers) are labelled in whole numbers only.
    y_axis: YAxis,
    /// The lines, in legend order.
    lines: Vec<Line>,
    /// Times marked by a vertical line (the rescale decisions), with the legend's text.
    marks: Option<(&'static str, Vec<f64>)>,
    /// The time axis, shared by every chart of a report.
    x_range: (f64, f64),
}

/// One line of a chart.
/// How a line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stroke {
    /// An observed value (workers, queue depth, rates).
    Solid,
    /// A wanted value (the desired workers, the load's target rate), or where several runs
    /// share a chart, each run's second series (its unacked messages).
    Dashed,
}

/// What a chart's y axis counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum YAxis {
    /// Amounts: any number is a label.
    Numbers,
    /// Things (workers): only whole numbers are labelled.
    WholeNumbers,
}

struct Line {
    /// The legend's text.
    label: String,
    color: RGBColor,
    /// Solid or dashed (see [`Stroke`]).
    stroke: Stroke,
    /// Stroke width in pixels; the wider line goes under a narrower one that often equals it.
    width: u32,
    /// Runs of points; a gap between runs is time with no value (no job finished, or a value
    /// that was not a number).
    runs: Vec<Vec<(f64, f64)>>,
}

impl Line {
    fn new(
        label: impl Into<String>,
        color: RGBColor,
        stroke: Stroke,
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
            stroke,
            width: 2,
            runs,
        }
    }

    fn width(self, width: u32) -> Self {
        Line { width, ..self }
    }

    /// Sparse values, where a run can be one point long: such a point is drawn as a short
    /// level segment `width` wide, so the chart draws lines only, as its legend says.
    fn lone_points_as_segments(mut self, width: f64) -> Self {
        for run in &mut self.runs {
            if let [(x, y)] = run[..] {
                *run = vec![(x - width / 2.0, y), (x + width / 2.0, y)];
            }
        }
        self
    }

    /// A count drawn as steps: it holds its value until the next sample, as a replica count does.
    fn steps(
        label: impl Into<String>,
        color: RGBColor,
        stroke: Stroke,
        points: Vec<(f64, f64)>,
    ) -> Self {
        let mut stepped = Vec::with_capacity(points.len() * 2);
        for (i, &(x, y)) in points.iter().enumerate() {
            if let Some(&(_, prev_y)) = i.checked_sub(1).and_then(|p| points.get(p)) {
                stepped.push(Some((x, prev_y)));
            }
            stepped.push(Some((x, y)));
        }
        Line::new(label, color, stroke, stepped)
    }
}

impl Chart {
    fn new(
        title: &'static str,
        y_desc: &'static str,
        caption: &'static str,
        y_axis: YAxis,
        lines: Vec<Line>,
    ) -> Self {
        Chart {
            title,
            y_desc,
            caption,
            y_axis,
            lines,
            marks: None,
            x_range: (0.0, 1.0),
        }
    }

    /// Draws the chart over `x_range` rather than its own points' extent.
    pub(super) fn over(self, x_range: (f64, f64)) -> Self {
        Chart { x_range, ..self }
    }

    pub(super) fn render(&self) -> anyhow::Result<String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
            self.draw(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
            root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(svg)
    }

    fn draw(
        &self,
        root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<<SVGBackend<'_> as DrawingBackend>::ErrorType>> {
        root.fill(&WHITE)?;
        let points = || self.lines.iter().flat_map(|l| l.runs.iter().flatten());
        let (x_min, x_max) = self.x_range;
        let y_max = points().fold(0.0_f64, |m, &(_, y)| m.max(y));
        // Headroom above the highest value keeps the legend in the upper right off the lines.
        let y_max = if self.y_axis == YAxis::WholeNumbers {
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
        if self.y_axis == YAxis::WholeNumbers {
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
                let annotation = if line.stroke == Stroke::Dashed {
                    chart.draw_series(DashedLineSeries::new(run.iter().copied(), 8, 5, style))?
                } else {
                    chart.draw_series(LineSeries::new(run.iter().copied(), style))?
                };
                if i == 0 {
                    let dashed = line.stroke == Stroke::Dashed;
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
        if let Some((label, times)) = &self.marks {
            let style = GREY.stroke_width(1);
            let mut first = true;
            for &t in times.iter().filter(|t| t.is_finite()) {
                let drawn = chart.draw_series(DashedLineSeries::new(
                    [(t, y_min), (t, y_max)],
                    3,
                    3,
                    style,
                ))?;
                if std::mem::take(&mut first) {
                    drawn.label(*label).legend(move |(x, y)| {
                        DashedPathElement::new(
                            vec![(x, y), (x + 24, y)],
                            3,
                            3,
                            GREY.stroke_width(2),
                        )
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

/// A compared run's line label: the run's name first; a single run's label as it is.
fn run_label(runs: &[Series<'_>], run: &Series<'_>, what: &str) -> String {
    if runs.len() == 1 {
        what.to_owned()
    } else {
        format!("{}: {what}", run.label)
    }
}

/// The charts of [`super::CHART_FILES`], in order, for one run or several overlaid, over one
/// time axis. `rescales`: when the autoscaler rescaled, marked on the workers chart.
pub(super) fn charts(runs: &[Series<'_>], rescales: Vec<f64>) -> [Chart; 5] {
    let x_range = time_axis(runs);
    [
        queue_depth_chart(runs),
        workers_chart(runs, rescales),
        arrival_rate_chart(runs),
        processed_rate_chart(runs),
        queue_wait_chart(runs),
    ]
    .map(|chart| chart.over(x_range))
}

/// The one time axis of every chart: from 0 (or an earlier sample) to the last sample of any run.
fn time_axis(runs: &[Series<'_>]) -> (f64, f64) {
    let times = runs
        .iter()
        .flat_map(|run| run.samples.iter().map(|s| s.t_secs))
        .filter(|t| t.is_finite());
    let (lo, hi) = times.fold((0.0_f64, f64::NEG_INFINITY), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo + 1.0)
    }
}

fn points(samples: &[Sample], f: fn(&Sample) -> f64) -> Vec<Option<(f64, f64)>> {
    samples.iter().map(|s| Some((s.t_secs, f(s)))).collect()
}

pub(super) fn queue_depth_chart(runs: &[Series<'_>]) -> Chart {
    let lines = match runs {
        [one] => vec![
            Line::new(
                "ready",
                BLUE_LINE,
                Stroke::Solid,
                points(one.samples, |s| s.queue_ready),
            ),
            Line::new(
                "unacked (being worked on)",
                ORANGE_LINE,
                Stroke::Solid,
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
                        Stroke::Solid,
                        points(run.samples, |s| s.queue_ready),
                    ),
                    Line::new(
                        format!("{}: unacked", run.label),
                        run_color(i),
                        Stroke::Dashed,
                        points(run.samples, |s| s.queue_unacked),
                    )
                    .width(1),
                ]
            })
            .collect(),
    };
    let caption = match runs {
        [_] => {
            "Messages waiting in the work queue (ready) and delivered to a worker, \
             not yet acked (unacked)."
        }
        _ => {
            "Each run's messages waiting in the work queue (ready, solid) and delivered to a \
             worker, not yet acked (unacked, thin dashed)."
        }
    };
    Chart::new("Queue depth", "messages", caption, YAxis::Numbers, lines)
}

/// `rescales`: when the autoscaler rescaled, each marked by a vertical line.
pub(super) fn workers_chart(runs: &[Series<'_>], rescales: Vec<f64>) -> Chart {
    let series = |samples: &[Sample], f: fn(&Sample) -> u32| {
        samples
            .iter()
            .map(|s| (s.t_secs, f64::from(f(s))))
            .collect::<Vec<_>>()
    };
    let lines = match runs {
        [one] => vec![
            Line::steps(
                "current (live)",
                LIGHT_BLUE_LINE,
                Stroke::Solid,
                series(one.samples, |s| s.workers_current),
            )
            .width(5),
            Line::steps(
                "ready",
                GREEN_LINE,
                Stroke::Solid,
                series(one.samples, |s| s.workers_ready),
            ),
            Line::steps(
                "desired (autoscaler)",
                RED_LINE,
                Stroke::Dashed,
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
                        Stroke::Solid,
                        series(run.samples, |s| s.workers_current),
                    )
                    .width(3),
                    Line::steps(
                        format!("{}: desired", run.label),
                        run_color(i),
                        Stroke::Dashed,
                        series(run.samples, |s| s.workers_desired),
                    )
                    .width(1),
                ]
            })
            .collect(),
    };
    let caption = if runs.len() > 1 {
        "Each run's desired count (thin dashed) and its live workers following it (solid)."
    } else if rescales.is_empty() {
        "The autoscaler's desired count (dashed), the live workers following it, \
         and those of them answering /readyz."
    } else {
        "The autoscaler's desired count (dashed), the live workers following it, \
         and those of them answering /readyz; a thin grey line marks each rescale decision."
    };
    Chart {
        marks: (!rescales.is_empty()).then_some(("rescale decision", rescales)),
        ..Chart::new(
            "Workers: current vs desired",
            "workers",
            caption,
            YAxis::WholeNumbers,
            lines,
        )
    }
}

pub(super) fn arrival_rate_chart(runs: &[Series<'_>]) -> Chart {
    // Compared runs share their arrivals; the first run's stand for all, in grey so that the
    // runs' colours stay theirs.
    let (arrival_color, target_color) = match runs {
        [_] => (BLUE_LINE, ORANGE_LINE),
        _ => (GREY, GREY),
    };
    let lines = runs
        .first()
        .map(|first| {
            vec![
                Line::new(
                    "accepted (200) per second",
                    arrival_color,
                    Stroke::Solid,
                    points(first.samples, |s| s.arrival_rate),
                ),
                Line::new(
                    "load's target rate",
                    target_color,
                    Stroke::Dashed,
                    points(first.samples, |s| s.target_rate),
                ),
            ]
        })
        .unwrap_or_default();
    let caption = match runs {
        [_] => {
            "Jobs accepted per second by /generate, against the rate the load aimed at \
             (dashed)."
        }
        _ => {
            "Jobs arriving per second, against the rate the load aimed at (dashed): the \
             same arrivals for every run, so drawn once, in grey."
        }
    };
    Chart::new(
        "Arrival rate",
        "jobs per second",
        caption,
        YAxis::Numbers,
        lines,
    )
}

/// The window of the processed-per-second chart, in seconds of the run.
const PROCESSED_WINDOW_SECS: f64 = 10.0;

/// Jobs acked per second over the last [`PROCESSED_WINDOW_SECS`]: what the workers kept up
/// with, to read beside the arrival rate. A window rather than sample to sample, since jobs of
/// one length finish in bursts that a short interval shows as a saw.
pub(super) fn processed_rate_chart(runs: &[Series<'_>]) -> Chart {
    let lines = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let color = if runs.len() == 1 {
                GREEN_LINE
            } else {
                run_color(i)
            };
            Line::new(
                run_label(runs, run, "acked per second (10 s window)"),
                color,
                Stroke::Solid,
                processed_rates(run.samples),
            )
        })
        .collect();
    Chart::new(
        "Processed per second",
        "jobs per second",
        "Jobs acked per second by all workers together, over the last 10 s: above the \
         arrival rate, the queue shrinks.",
        YAxis::Numbers,
        lines,
    )
}

/// The points of [`processed_rate_chart`]: (time, jobs per second over the window before it).
pub(super) fn processed_rates(samples: &[Sample]) -> Vec<Option<(f64, f64)>> {
    let mut from = 0;
    samples
        .iter()
        .enumerate()
        .map(|(i, now)| {
            while from < i && now.t_secs - samples[from].t_secs > PROCESSED_WINDOW_SECS {
                from += 1;
            }
            let then = &samples[from];
            let dt = now.t_secs - then.t_secs;
            let done = now.processed_total.saturating_sub(then.processed_total);
            (dt > 0.0).then(|| (now.t_secs, done as f64 / dt))
        })
        .collect()
}

/// The typical time between samples (their median gap), 1 s when unknown.
fn sample_step(samples: &[Sample]) -> f64 {
    let mut gaps: Vec<f64> = samples
        .windows(2)
        .map(|p| p[1].t_secs - p[0].t_secs)
        .filter(|g| g.is_finite() && *g > 0.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len() / 2).copied().unwrap_or(1.0)
}

/// Points of the p95 chart closer in time than this are joined by a line, though intervals in
/// which no job finished lie between them; farther apart, the line breaks.
const P95_JOIN_SECS: f64 = 10.0;

/// The points, with a break (`None`) wherever two are more than `join` seconds apart.
pub(super) fn joined_within(
    points: impl Iterator<Item = (f64, f64)>,
    join: f64,
) -> Vec<Option<(f64, f64)>> {
    let mut out = Vec::new();
    let mut last_x: Option<f64> = None;
    for (x, y) in points {
        if last_x.is_some_and(|last| x - last > join) {
            out.push(None);
        }
        out.push(Some((x, y)));
        last_x = Some(x);
    }
    out
}

pub(super) fn queue_wait_chart(runs: &[Series<'_>]) -> Chart {
    let lines = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            Line::new(
                run_label(runs, run, "p95 of time in queue"),
                run_color(i),
                Stroke::Solid,
                joined_within(
                    run.samples
                        .iter()
                        .filter_map(|s| s.queue_wait_p95_secs.map(|v| (s.t_secs, v))),
                    P95_JOIN_SECS,
                ),
            )
            .lone_points_as_segments(sample_step(run.samples))
        })
        .collect();
    Chart::new(
        "Queue wait p95",
        "seconds",
        "How long 95% of the jobs that finished in each interval had waited in the \
         queue, joined across intervals of up to 10 s in which none finished; a gap is a \
         longer stretch without a finished job.",
        YAxis::Numbers,
        lines,
    )
}
