//! The report's SVG charts, drawn from the samples: queue depth, workers (with a mark at each
//! rescale), arrival rate, processed per second, queue wait p95. All share one time axis.

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
    /// Whether the y axis counts things (workers), so only whole numbers are labelled.
    whole_numbers: bool,
    /// The lines, in legend order.
    lines: Vec<Line>,
    /// Times marked by a vertical line (the rescale decisions), with the legend's text.
    marks: Option<(&'static str, Vec<f64>)>,
    /// The time axis, shared by every chart of a report.
    x_range: (f64, f64),
}

/// One line of a chart.
struct Line {
    /// The legend's text.
    label: &'static str,
    color: RGBColor,
    /// Dashed lines are the wanted values (desired workers, the load's target), solid the
    /// observed ones.
    dashed: bool,
    /// Stroke width in pixels; the wider line goes under a narrower one that often equals it.
    width: u32,
    /// Runs of points; a gap between runs is time with no value (no job finished, or a value
    /// that was not a number).
    runs: Vec<Vec<(f64, f64)>>,
}

impl Line {
    fn new(
        label: &'static str,
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
            label,
            color,
            dashed,
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
    fn steps(label: &'static str, color: RGBColor, dashed: bool, points: Vec<(f64, f64)>) -> Self {
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
    fn new(
        title: &'static str,
        y_desc: &'static str,
        caption: &'static str,
        whole_numbers: bool,
        lines: Vec<Line>,
    ) -> Self {
        Chart {
            title,
            y_desc,
            caption,
            whole_numbers,
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
                let annotation = if line.dashed {
                    chart.draw_series(DashedLineSeries::new(run.iter().copied(), 8, 5, style))?
                } else {
                    chart.draw_series(LineSeries::new(run.iter().copied(), style))?
                };
                if i == 0 {
                    let dashed = line.dashed;
                    annotation.label(line.label).legend(move |(x, y)| {
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

pub(super) fn queue_depth_chart(samples: &[Sample]) -> Chart {
    Chart::new(
        "Queue depth",
        "messages",
        "Messages waiting in the work queue (ready) and delivered to a worker, \
         not yet acked (unacked).",
        false,
        vec![
            Line::new(
                "ready",
                BLUE_LINE,
                false,
                samples
                    .iter()
                    .map(|s| Some((s.t_secs, s.queue_ready)))
                    .collect(),
            ),
            Line::new(
                "unacked (being worked on)",
                ORANGE_LINE,
                false,
                samples
                    .iter()
                    .map(|s| Some((s.t_secs, s.queue_unacked)))
                    .collect(),
            ),
        ],
    )
}

/// `rescales`: when the autoscaler rescaled, each marked by a vertical line.
pub(super) fn workers_chart(samples: &[Sample], rescales: Vec<f64>) -> Chart {
    let series = |f: fn(&Sample) -> u32| {
        samples
            .iter()
            .map(|s| (s.t_secs, f64::from(f(s))))
            .collect()
    };
    Chart {
        marks: Some(("rescale decision", rescales)),
        ..Chart::new(
            "Workers: current vs desired",
            "workers",
            "The autoscaler's desired count (dashed), the live workers following it, \
             and those of them answering /readyz; a thin grey line marks each rescale decision.",
            true,
            vec![
                Line::steps(
                    "current (live)",
                    LIGHT_BLUE_LINE,
                    false,
                    series(|s| s.workers_current),
                )
                .width(5),
                Line::steps("ready", GREEN_LINE, false, series(|s| s.workers_ready)),
                Line::steps(
                    "desired (autoscaler)",
                    RED_LINE,
                    true,
                    series(|s| s.workers_desired),
                ),
            ],
        )
    }
}

pub(super) fn arrival_rate_chart(samples: &[Sample]) -> Chart {
    Chart::new(
        "Arrival rate",
        "jobs per second",
        "Jobs accepted per second by /generate, against the rate the load aimed at \
         (dashed).",
        false,
        vec![
            Line::new(
                "accepted (200) per second",
                BLUE_LINE,
                false,
                samples
                    .iter()
                    .map(|s| Some((s.t_secs, s.arrival_rate)))
                    .collect(),
            ),
            Line::new(
                "load's target rate",
                ORANGE_LINE,
                true,
                samples
                    .iter()
                    .map(|s| Some((s.t_secs, s.target_rate)))
                    .collect(),
            ),
        ],
    )
}

/// The window of the processed-per-second chart, in seconds of the run.
const PROCESSED_WINDOW_SECS: f64 = 10.0;

/// Jobs acked per second over the last [`PROCESSED_WINDOW_SECS`]: what the workers kept up
/// with, to read beside the arrival rate. A window rather than sample to sample, since jobs of
/// one length finish in bursts that a short interval shows as a saw.
pub(super) fn processed_rate_chart(samples: &[Sample]) -> Chart {
    Chart::new(
        "Processed per second",
        "jobs per second",
        "Jobs acked per second by all workers together, over the last 10 s: above the \
         arrival rate, the queue shrinks.",
        false,
        vec![Line::new(
            "acked per second (10 s window)",
            GREEN_LINE,
            false,
            processed_rates(samples),
        )],
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

pub(super) fn queue_wait_chart(samples: &[Sample]) -> Chart {
    Chart::new(
        "Queue wait p95",
        "seconds",
        "How long 95% of the jobs that finished in each interval had waited in the \
         queue; a gap is an interval in which no job finished.",
        false,
        vec![Line::new(
            "p95 of time in queue",
            BLUE_LINE,
            false,
            samples
                .iter()
                .map(|s| s.queue_wait_p95_secs.map(|v| (s.t_secs, v)))
                .collect(),
        )
        .lone_points_as_segments(sample_step(samples))],
    )
}
