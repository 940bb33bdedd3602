//! The report's SVG charts, drawn from the samples of one run or of several overlaid: queue
//! depth, workers, arrival and processed rate, queue wait p95.

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::Sample;

pub(super) const CHART_SIZE: (u32, u32) = (960, 380);
const BLUE_LINE: RGBColor = RGBColor(31, 119, 180);
const LIGHT_BLUE_LINE: RGBColor = RGBColor(150, 195, 235);
const ORANGE_LINE: RGBColor = RGBColor(255, 127, 14);
const GREEN_LINE: RGBColor = RGBColor(44, 160, 44);
const RED_LINE: RGBColor = RGBColor(214, 39, 40);

/// One chart: what it shows, before it is drawn.
pub(super) struct Chart {
    /// The title drawn on the chart and used as the image's alternative text.
    pub(super) title: &'static str,
    /// The y axis' description, with its unit.
    y_desc: &'static str,
    /// How to read the chart, under it on the page.
    pub(super) caption: &'static str,
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
    pub(super) fn render(&self) -> anyhow::Result<String> {
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
/// Jobs processed per second over the last [`RATE_WINDOW_SECS`] (or since the first sample):
/// workers that started together finish together, so a per-sample rate is a comb of spikes.
fn processed_rates(samples: &[Sample]) -> Vec<Option<(f64, f64)>> {
    let mut start = 0;
    samples
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, s)| {
            while start + 1 < i && samples[start + 1].t_secs <= s.t_secs - RATE_WINDOW_SECS {
                start += 1;
            }
            let from = &samples[start];
            let dt = s.t_secs - from.t_secs;
            let done = s.processed_total.saturating_sub(from.processed_total) as f64;
            (dt > 0.0).then(|| (s.t_secs, done / dt))
        })
        .collect()
}

/// The window of the processed rate, in seconds.
const RATE_WINDOW_SECS: f64 = 10.0;
const GREY_LINE: RGBColor = RGBColor(110, 110, 110);

/// The charts of [`CHART_FILES`], in order, for one run or several overlaid.
pub(super) fn charts(runs: &[Series<'_>]) -> [Chart; 4] {
    [
        queue_depth_chart(runs),
        workers_chart(runs),
        arrival_rate_chart(runs),
        queue_wait_chart(runs),
    ]
}

pub(super) fn queue_depth_chart(runs: &[Series<'_>]) -> Chart {
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

pub(super) fn workers_chart(runs: &[Series<'_>]) -> Chart {
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

pub(super) fn arrival_rate_chart(runs: &[Series<'_>]) -> Chart {
    let mut lines = Vec::new();
    // Compared runs share their arrivals; the first run's stand for all, in grey so that the
    // runs' colours stay theirs.
    let (arrival_color, target_color) = match runs {
        [_] => (BLUE_LINE, ORANGE_LINE),
        _ => (GREY_LINE, GREY_LINE),
    };
    if let Some(first) = runs.first() {
        lines.push(Line::new(
            "accepted (200) per second",
            arrival_color,
            false,
            first
                .samples
                .iter()
                .map(|s| Some((s.t_secs, s.arrival_rate)))
                .collect(),
        ));
        lines.push(Line::new(
            "load's target rate",
            target_color,
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
                "processed (acked) per second, 10 s mean",
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
                        run_color(i),
                        false,
                        processed_rates(run.samples),
                    )
                    .width(2),
                );
            }
        }
    }
    Chart {
        title: "Arrival rate and processed rate",
        y_desc: "jobs per second",
        caption: "Jobs accepted per second by /generate, against the rate the load aimed at \
                  (dashed), and jobs acked per second by the workers over the last 10 s.",
        whole_numbers: false,
        lines,
    }
}

pub(super) fn queue_wait_chart(runs: &[Series<'_>]) -> Chart {
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
