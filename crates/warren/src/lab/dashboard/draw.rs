//! The full-screen view's layout: header, numbers, workers, queue history, last decision.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Padding, Paragraph, Sparkline};
use ratatui::Frame;

use super::{
    format_count, format_elapsed, format_number, fraction, history_span, last, speed_label, to_bar,
    View,
};

const ACCENT: Color = Color::Cyan;
const DIM: Style = Style::new().fg(Color::DarkGray);
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

/// Draws the whole view into `frame`.
pub(super) fn render(frame: &mut Frame<'_>, view: &View, stopping: bool) {
    let [header, numbers, workers, history, decision, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Min(5),
        Constraint::Length(7),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    render_header(frame, header, view);
    render_numbers(frame, numbers, view);
    render_workers(frame, workers, view);
    render_history(frame, history, view);
    render_decision(frame, decision, view);

    let footer_text = if stopping {
        Line::styled(
            " stopping: workers finish their jobs, then everything the demo started stops…",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        )
    } else {
        Line::from(vec![
            Span::styled(" q", BOLD),
            Span::raw(" / "),
            Span::styled("Ctrl-C", BOLD),
            Span::styled(": stop the demo and write the report", DIM),
        ])
    };
    frame.render_widget(Paragraph::new(footer_text), footer);
}

fn render_header(frame: &mut Frame<'_>, area: Rect, view: &View) {
    let title = Line::from(vec![
        Span::styled(" warren demo ", BOLD.fg(ACCENT)),
        Span::raw(format!("· {} ", format_elapsed(view.elapsed))),
        Span::styled(
            speed_label(view.speed)
                .map_or_else(String::new, |x| format!("(demo time, run at {x}) ")),
            DIM,
        ),
        Span::styled(format!("· {} ", view.phase), Style::new().fg(Color::Yellow)),
    ]);
    let address = |label: &'static str, value: Option<String>, missing: &'static str| {
        let mut spans = vec![Span::styled(label, DIM)];
        spans.push(match value {
            Some(v) => Span::styled(v, Style::new().fg(ACCENT)),
            None => Span::styled(missing, DIM),
        });
        spans
    };
    let mut first = address("Prometheus ", view.prometheus_url.clone(), "not running");
    first.push(Span::raw("   "));
    first.extend(address("RabbitMQ ", view.rabbitmq_url.clone(), "starting"));
    let mut second = address("web        ", view.web_url.clone(), "starting");
    second.push(Span::raw("   "));
    second.extend(address(
        "report ",
        view.report_dir.as_ref().map(|d| d.display().to_string()),
        "written at the end",
    ));
    frame.render_widget(
        Paragraph::new(vec![Line::from(first), Line::from(second)]).block(
            Block::bordered()
                .title(title)
                .padding(Padding::horizontal(1)),
        ),
        area,
    );
}

fn render_numbers(frame: &mut Frame<'_>, area: Rect, view: &View) {
    let [queue, arrival, jobs] = Layout::horizontal([
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
    ])
    .areas(area);

    let depth = view.queue_ready + view.queue_unacked;
    let peak = view
        .queue_history
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(depth, f64::max);
    render_counter(
        frame,
        queue,
        "Queue",
        vec![
            Span::styled(format_count(view.queue_ready), BOLD),
            Span::raw(" ready  "),
            Span::styled(format_count(view.queue_unacked), BOLD),
            Span::raw(" unacked"),
        ],
        fraction(depth, peak),
        format!("{} of peak {}", format_count(depth), format_count(peak)),
        Color::Blue,
    );
    render_counter(
        frame,
        arrival,
        "Arrival rate",
        vec![
            Span::styled(format!("{:.1}/s", view.arrival_rate), BOLD),
            Span::raw(format!("  target {:.1}/s", view.target_rate)),
        ],
        fraction(view.arrival_rate, view.target_rate.max(view.arrival_rate)),
        match view.arrival_rate / view.target_rate {
            r if r.is_finite() => format!("{:.0}% of target", r * 100.0),
            _ => "no target".to_string(),
        },
        Color::Magenta,
    );
    let backlog = view.jobs_accepted.saturating_sub(view.jobs_processed);
    render_counter(
        frame,
        jobs,
        "Jobs",
        vec![
            Span::styled(view.jobs_processed.to_string(), BOLD),
            Span::raw(" processed of "),
            Span::styled(view.jobs_accepted.to_string(), BOLD),
            Span::raw(" accepted"),
        ],
        // Precision loss is irrelevant for a progress bar.
        fraction(view.jobs_processed as f64, view.jobs_accepted as f64),
        format!("{backlog} to go"),
        Color::Green,
    );
}

#[allow(clippy::too_many_arguments)]
fn render_counter(
    frame: &mut Frame<'_>,
    area: Rect,
    title: &'static str,
    numbers: Vec<Span<'static>>,
    ratio: f64,
    gauge_label: String,
    color: Color,
) {
    let block = Block::bordered()
        .title(Span::styled(format!(" {title} "), BOLD))
        .padding(Padding::horizontal(1));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [text, _, bar] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(Line::from(numbers)), text);
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(gauge_label)
            .gauge_style(Style::new().fg(color).bg(Color::Black)),
        bar,
    );
}

fn render_workers(frame: &mut Frame<'_>, area: Rect, view: &View) {
    let title = Line::from(vec![
        Span::styled(" Workers ", BOLD),
        Span::styled(
            format!("{} current", view.workers_current),
            BOLD.fg(Color::Green),
        ),
        Span::raw(" · "),
        Span::raw(format!("{} ready", view.workers_ready)),
        Span::raw(" · "),
        Span::styled(
            format!("{} desired", view.workers_desired),
            BOLD.fg(Color::Yellow),
        ),
        Span::styled(
            format!(" (min {}, max {}) ", view.min_replicas, view.max_replicas),
            DIM,
        ),
    ]);
    let title = if at_max(view) {
        let mut spans = title.spans;
        spans.push(Span::styled(
            "at max: the HPA can add no more ",
            BOLD.fg(Color::Red),
        ));
        Line::from(spans)
    } else {
        title
    };
    let block = Block::bordered()
        .title(title)
        .padding(Padding::horizontal(1));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [bar, _, legend] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(replica_bar(view, bar.width)), bar);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("█", Style::new().fg(Color::Green)),
            Span::styled(" ready  ", DIM),
            Span::styled("▓", Style::new().fg(Color::Cyan)),
            Span::styled(" starting  ", DIM),
            Span::styled("░", Style::new().fg(Color::Yellow)),
            Span::styled(" wanted  ", DIM),
            Span::styled("▒", Style::new().fg(Color::Red)),
            Span::styled(" to stop  ", DIM),
            Span::styled("·", DIM),
            Span::styled(" room up to max;  ", DIM),
            Span::styled("|", BOLD),
            Span::styled(" min", DIM),
        ])),
        legend,
    );
}

/// Whether the autoscaler wants the most workers the manifest allows.
pub(super) fn at_max(view: &View) -> bool {
    view.max_replicas > 0 && view.workers_desired >= view.max_replicas
}

/// One slot per replica up to max: what each worker slot holds now.
pub(super) fn replica_bar(view: &View, width: u16) -> Line<'static> {
    let slots = view
        .max_replicas
        .max(view.workers_current)
        .max(view.workers_desired)
        .max(1);
    // Each slot gets the same width, a space between slots when there is room for one.
    let cell = (u32::from(width) / slots).clamp(1, 8);
    let gap = u32::from(cell >= 3);
    let fill = (cell - gap) as usize;
    let mut spans = Vec::with_capacity(slots as usize * 2);
    for slot in 1..=slots {
        let (symbol, color) = if slot <= view.workers_current {
            if slot > view.workers_desired {
                ("▒", Color::Red)
            } else if slot <= view.workers_ready {
                ("█", Color::Green)
            } else {
                ("▓", Color::Cyan)
            }
        } else if slot <= view.workers_desired {
            ("░", Color::Yellow)
        } else {
            ("·", Color::DarkGray)
        };
        spans.push(Span::styled(symbol.repeat(fill), Style::new().fg(color)));
        if gap > 0 {
            let separator = if slot == view.min_replicas { "|" } else { " " };
            spans.push(Span::styled(separator, BOLD));
        }
    }
    Line::from(spans)
}

fn render_history(frame: &mut Frame<'_>, area: Rect, view: &View) {
    let [queue, workers] =
        Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(area);

    let queue_block = Block::bordered();
    let queue_inner = queue_block.inner(queue);
    let depths: Vec<u64> = last(&view.queue_history, queue_inner.width)
        .iter()
        .map(|&v| to_bar(v))
        .collect();
    let peak = depths.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Sparkline::default()
            .block(
                queue_block
                    .title(Line::from(vec![
                        Span::styled(" Queue depth ", BOLD),
                        Span::styled(
                            format!(
                                "{}, peak {peak} ",
                                history_span(depths.len(), view.history_step)
                            ),
                            DIM,
                        ),
                    ]))
                    .title_top(Line::styled(format!(" {} ", peak.max(1)), DIM).right_aligned())
                    .title_bottom(Line::styled(" 0 ", DIM).right_aligned()),
            )
            .data(depths)
            .max(peak.max(1))
            .style(Style::new().fg(Color::Blue)),
        queue,
    );

    let workers_block = Block::bordered();
    let workers_inner = workers_block.inner(workers);
    let counts: Vec<u64> = last(&view.workers_history, workers_inner.width)
        .iter()
        .map(|&v| u64::from(v))
        .collect();
    // Scaled to max replicas, so a full column means the pool is at its ceiling.
    let ceiling =
        u64::from(view.max_replicas.max(1)).max(counts.iter().copied().max().unwrap_or(0));
    frame.render_widget(
        Sparkline::default()
            .block(
                workers_block
                    .title(Line::from(vec![
                        Span::styled(" Workers ", BOLD),
                        Span::styled(
                            format!(
                                "{}, scale 0–{ceiling} ",
                                history_span(counts.len(), view.history_step)
                            ),
                            DIM,
                        ),
                    ]))
                    .title_top(Line::styled(format!(" {ceiling} "), DIM).right_aligned())
                    .title_bottom(Line::styled(" 0 ", DIM).right_aligned()),
            )
            .data(counts)
            .max(ceiling)
            .style(Style::new().fg(Color::Green)),
        workers,
    );
}

fn render_decision(frame: &mut Frame<'_>, area: Rect, view: &View) {
    let block = Block::bordered()
        .title(Span::styled(" Last autoscaler decision ", BOLD))
        .padding(Padding::horizontal(1));
    let lines = match &view.last_decision {
        None => vec![Line::styled(
            "none yet: the first comes after one sync period",
            DIM,
        )],
        Some(d) => {
            let change = match d.desired.cmp(&d.current) {
                std::cmp::Ordering::Greater => Span::styled("scale up", BOLD.fg(Color::Green)),
                std::cmp::Ordering::Less => Span::styled("scale down", BOLD.fg(Color::Red)),
                std::cmp::Ordering::Equal => Span::styled("no change", DIM),
            };
            let mut lines = vec![
                Line::from(vec![
                    Span::styled(format!("at {}  ", format_elapsed(d.at)), DIM),
                    Span::styled(format!("{} → {} workers  ", d.current, d.desired), BOLD),
                    change,
                ]),
                Line::from(vec![
                    Span::styled("reasons  ", DIM),
                    Span::styled(
                        if d.reasons.is_empty() {
                            "-".to_string()
                        } else {
                            d.reasons.join(", ")
                        },
                        Style::new().fg(Color::Yellow),
                    ),
                ]),
            ];
            for metric in &d.metrics {
                lines.push(Line::from(vec![
                    Span::styled("metric   ", DIM),
                    Span::raw(format!("{} = ", metric.name)),
                    Span::styled(format_number(metric.value), BOLD),
                    Span::raw(format!("  target {}", format_number(metric.target))),
                ]));
            }
            if let Some(summary) = &d.summary {
                lines.push(Line::from(vec![
                    Span::styled("why      ", DIM),
                    Span::raw(summary.clone()),
                ]));
            }
            lines
        }
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
