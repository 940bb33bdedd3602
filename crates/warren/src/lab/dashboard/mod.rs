//! The demo's live view: a ratatui screen on a terminal, plain periodic lines otherwise.
//!
//! The demo fills a [`View`] about once a second and hands it to [`Dashboard::update`]. On a
//! terminal the dashboard takes over the screen (raw mode, alternate screen) and redraws it; the
//! user stops the demo with `q`, `Esc` or Ctrl-C, which the dashboard reports through
//! [`Dashboard::quit_token`] because raw mode turns Ctrl-C into a key press instead of SIGINT.
//! When stdout is not a terminal (CI, a pipe), it prints one [`plain_line`] every few seconds.
//!
//! The terminal is always given back: by [`Dashboard::finish`], by `Drop` on an early return, and
//! by a panic hook, which also makes a running dashboard fall back to plain lines so the panic
//! message stays readable.

use std::io::{IsTerminal as _, Stdout, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Padding, Paragraph, Sparkline};
use ratatui::{Frame, Terminal};
use tokio_util::sync::CancellationToken;

/// How often plain mode prints a line unless told otherwise.
pub const DEFAULT_PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// A snapshot of the demo, taken about once a second, that the dashboard shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// Time since the demo started.
    pub elapsed: Duration,
    /// What the demo is doing now, e.g. "ramping up" or "draining".
    pub phase: String,
    /// Messages ready in the work queue.
    pub queue_ready: f64,
    /// Messages delivered to a worker and not yet acked.
    pub queue_unacked: f64,
    /// Jobs accepted (answered 200) per second by `/generate`, over the last interval.
    pub arrival_rate: f64,
    /// The load's target rate now, in requests per second.
    pub target_rate: f64,
    /// Live worker processes.
    pub workers_current: u32,
    /// Workers whose `/readyz` answers 200.
    pub workers_ready: u32,
    /// The autoscaler's desired replica count.
    pub workers_desired: u32,
    /// The manifest's `minReplicas`.
    pub min_replicas: u32,
    /// The manifest's `maxReplicas`.
    pub max_replicas: u32,
    /// Jobs answered 200 by `/generate` so far.
    pub jobs_accepted: u64,
    /// Jobs acked by a worker so far.
    pub jobs_processed: u64,
    /// The autoscaler's most recent decision, once it made one.
    pub last_decision: Option<Decision>,
    /// Recent queue depth (ready + unacked), oldest first, one value per second.
    pub queue_history: Vec<f64>,
    /// Recent live worker counts, oldest first, one value per second.
    pub workers_history: Vec<u32>,
    /// Prometheus' address, when the demo runs one.
    pub prometheus_url: Option<String>,
    /// The RabbitMQ management UI's address.
    pub rabbitmq_url: Option<String>,
    /// Where the report will be written, once known.
    pub report_dir: Option<PathBuf>,
}

/// One autoscaler decision, as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Time since the demo started when the decision was taken.
    pub at: Duration,
    /// The replica count the decision started from.
    pub current: u32,
    /// The replica count the autoscaler asked for.
    pub desired: u32,
    /// The condition reasons, e.g. `ScaleUpStabilized`, `ValidMetricFound`, `TooManyReplicas`.
    pub reasons: Vec<String>,
    /// The controller's rescale reason, e.g. `external metric queue_messages_ready above target`.
    pub summary: Option<String>,
    /// The metrics the decision read, in the manifest's order.
    pub metrics: Vec<MetricReading>,
}

/// One metric's value and target in a decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricReading {
    /// The metric's name, e.g. `queue_messages_ready`.
    pub name: String,
    /// The value read.
    pub value: f64,
    /// The manifest's target for it.
    pub target: f64,
}

/// The demo's live view; see the [module documentation](self).
pub struct Dashboard {
    /// How updates are shown.
    output: Output,
    /// Cancelled when the user asks to stop (`q`, `Esc`, Ctrl-C on the screen).
    quit: CancellationToken,
}

enum Output {
    Screen(Screen),
    Plain(Plain),
}

impl Dashboard {
    /// Starts the live view: the full-screen view when `interactive` and stdout is a terminal,
    /// plain lines on stdout every [`DEFAULT_PLAIN_INTERVAL`] otherwise.
    ///
    /// While the full-screen view runs, nothing else may write to the terminal (route logs to a
    /// file, give child processes no inherited stdout or stderr): it would tear the screen.
    pub fn start(interactive: bool) -> anyhow::Result<Dashboard> {
        let quit = CancellationToken::new();
        let output = if interactive && std::io::stdout().is_terminal() {
            Output::Screen(Screen::enter(quit.clone())?)
        } else {
            Output::Plain(Plain::new(
                Box::new(std::io::stdout()),
                DEFAULT_PLAIN_INTERVAL,
            ))
        };
        Ok(Dashboard { output, quit })
    }

    /// A plain-lines dashboard that writes to `out` every `every` (of the views' elapsed time).
    pub fn plain(out: Box<dyn Write + Send>, every: Duration) -> Dashboard {
        Dashboard {
            output: Output::Plain(Plain::new(out, every)),
            quit: CancellationToken::new(),
        }
    }

    /// Sets how often plain mode prints a line; the full-screen view ignores it.
    pub fn plain_every(mut self, every: Duration) -> Dashboard {
        if let Output::Plain(plain) = &mut self.output {
            plain.every = every;
        }
        self
    }

    /// Whether the full-screen view is showing.
    pub fn is_interactive(&self) -> bool {
        matches!(self.output, Output::Screen(_))
    }

    /// A token cancelled when the user asks to stop the demo from the screen.
    pub fn quit_token(&self) -> CancellationToken {
        self.quit.clone()
    }

    /// Whether the user asked to stop the demo from the screen.
    pub fn quit_requested(&self) -> bool {
        self.quit.is_cancelled()
    }

    /// Shows `view`: redraws the screen, or prints a line when one is due.
    pub fn update(&mut self, view: &View) -> anyhow::Result<()> {
        if let Output::Screen(screen) = &mut self.output {
            if !TERMINAL_TAKEN.load(Ordering::SeqCst) {
                // The panic hook gave the terminal back: go on in plain lines, under the panic
                // message, instead of drawing over it.
                screen.stop_input();
                self.output = Output::Plain(Plain::new(
                    Box::new(std::io::stdout()),
                    DEFAULT_PLAIN_INTERVAL,
                ));
            }
        }
        let stopping = self.quit.is_cancelled();
        match &mut self.output {
            Output::Screen(screen) => screen.draw(view, stopping),
            Output::Plain(plain) => plain.update(view),
        }
    }

    /// Gives the terminal back (plain mode: prints the last view if its line was not due yet).
    pub fn finish(self) {
        // Drop does the work, so that an early return does it too.
        drop(self);
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        match &mut self.output {
            Output::Screen(screen) => {
                screen.stop_input();
                restore_terminal();
            }
            Output::Plain(plain) => plain.flush_pending(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The full-screen view

/// Whether the dashboard holds the terminal (raw mode, alternate screen), for the restore hooks.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);
static RESTORE_HOOKS: Once = Once::new();

/// Gives the terminal back if the dashboard holds it; safe to call more than once, and from
/// paths that skip `Drop` (registered with [`crate::shutdown::before_forced_exit`]).
pub fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
    }
}

/// Hands the terminal back on a panic and on the shutdown helper's immediate exit.
fn install_restore_hooks() {
    RESTORE_HOOKS.call_once(|| {
        crate::shutdown::before_forced_exit(restore_terminal);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}

struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    /// Tells the input thread to end.
    stop: Arc<AtomicBool>,
    input: Option<JoinHandle<()>>,
}

impl Screen {
    fn enter(quit: CancellationToken) -> anyhow::Result<Screen> {
        install_restore_hooks();
        terminal::enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let screen = (|| {
            execute!(
                std::io::stdout(),
                terminal::EnterAlternateScreen,
                cursor::Hide
            )?;
            let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
            terminal.clear()?;
            anyhow::Ok(terminal)
        })();
        let terminal = match screen {
            Ok(terminal) => terminal,
            Err(e) => {
                restore_terminal();
                return Err(e);
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let input = std::thread::Builder::new()
            .name("dashboard-keys".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || read_keys(&stop, &quit)
            });
        let input = match input {
            Ok(handle) => handle,
            Err(e) => {
                restore_terminal();
                return Err(e.into());
            }
        };
        Ok(Screen {
            terminal,
            stop,
            input: Some(input),
        })
    }

    fn draw(&mut self, view: &View, stopping: bool) -> anyhow::Result<()> {
        self.terminal.draw(|frame| render(frame, view, stopping))?;
        Ok(())
    }

    fn stop_input(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(input) = self.input.take() {
            let _ = input.join();
        }
    }
}

/// Watches the keyboard on its own thread, so a quit key is seen at once, not at the next update.
fn read_keys(stop: &AtomicBool, quit: &CancellationToken) {
    // The short poll bounds how long finishing waits for this thread.
    while !stop.load(Ordering::SeqCst) {
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => {}
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                        && matches!(key.code, KeyCode::Char('c' | 'C'));
                    if ctrl_c || matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
                        quit.cancel();
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            },
            Err(_) => return,
        }
    }
}

const ACCENT: Color = Color::Cyan;
const DIM: Style = Style::new().fg(Color::DarkGray);
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

/// Draws the whole view into `frame`.
fn render(frame: &mut Frame<'_>, view: &View, stopping: bool) {
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
    let second = address(
        "report     ",
        view.report_dir.as_ref().map(|d| d.display().to_string()),
        "written at the end",
    );
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

/// One slot per replica up to max: what each worker slot holds now.
fn replica_bar(view: &View, width: u16) -> Line<'static> {
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
            .block(queue_block.title(Line::from(vec![
                Span::styled(" Queue depth ", BOLD),
                Span::styled(format!("last {}s, peak {peak} ", depths.len()), DIM),
            ])))
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
            .block(workers_block.title(Line::from(vec![
                Span::styled(" Workers ", BOLD),
                Span::styled(format!("last {}s, scale 0–{ceiling} ", counts.len()), DIM),
            ])))
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

// ---------------------------------------------------------------------------------------------
// Plain lines

struct Plain {
    out: Box<dyn Write + Send>,
    /// How much of the demo's time passes between two lines.
    every: Duration,
    /// The elapsed time of the last printed view.
    printed_at: Option<Duration>,
    /// The phase of the last printed view: a new phase prints at once.
    printed_phase: String,
    /// The last view's line when it was not printed, for `finish`.
    pending: Option<String>,
}

impl Plain {
    fn new(out: Box<dyn Write + Send>, every: Duration) -> Plain {
        Plain {
            out,
            every,
            printed_at: None,
            printed_phase: String::new(),
            pending: None,
        }
    }

    fn update(&mut self, view: &View) -> anyhow::Result<()> {
        let due = match self.printed_at {
            None => true,
            Some(at) => {
                view.elapsed.saturating_sub(at) >= self.every || view.phase != self.printed_phase
            }
        };
        let line = plain_line(view);
        if due {
            writeln!(self.out, "{line}")?;
            self.out.flush()?;
            self.printed_at = Some(view.elapsed);
            self.printed_phase.clone_from(&view.phase);
            self.pending = None;
        } else {
            self.pending = Some(line);
        }
        Ok(())
    }

    fn flush_pending(&mut self) {
        if let Some(line) = self.pending.take() {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }
}

/// The one-line form of a view, as plain mode prints it, e.g.
/// `t=35s [ramping up] queue=12 ready/3 unacked arrival=2.0/s target=2.0/s workers=3 ready=3
/// desired=4 (min 1, max 10) accepted=60 processed=57 last=3->4(ScaleUpStabilized)`.
pub fn plain_line(view: &View) -> String {
    let mut line = format!(
        "t={} [{}] queue={} ready/{} unacked arrival={:.1}/s target={:.1}/s workers={} ready={} \
         desired={} (min {}, max {}) accepted={} processed={}",
        format_elapsed(view.elapsed),
        view.phase,
        format_count(view.queue_ready),
        format_count(view.queue_unacked),
        view.arrival_rate,
        view.target_rate,
        view.workers_current,
        view.workers_ready,
        view.workers_desired,
        view.min_replicas,
        view.max_replicas,
        view.jobs_accepted,
        view.jobs_processed,
    );
    match &view.last_decision {
        None => line.push_str(" last=none"),
        Some(d) => {
            line.push_str(&format!(
                " last={}->{}({})",
                d.current,
                d.desired,
                d.reasons.join(",")
            ));
            for m in &d.metrics {
                line.push_str(&format!(
                    " {}={}/{}",
                    m.name,
                    format_number(m.value),
                    format_number(m.target)
                ));
            }
        }
    }
    line
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// `95 s` -> `1m35s`; under a minute, `35s`.
fn format_elapsed(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// A message count: whole, and `?` when the metric was not a number.
fn format_count(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "?".to_string()
    }
}

/// A metric value: whole numbers without decimals, others with two.
fn format_number(v: f64) -> String {
    if !v.is_finite() {
        "?".to_string()
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// `part / whole`, within 0..=1 whatever the inputs (a gauge panics outside it).
fn fraction(part: f64, whole: f64) -> f64 {
    let ratio = part / whole;
    if ratio.is_finite() {
        ratio.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A sparkline bar height for a depth; negative or non-numbers show as empty.
fn to_bar(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        // Rounded and far below u64::MAX for any queue, so the cast is exact.
        v.round() as u64
    } else {
        0
    }
}

/// The last `n` items of `values`.
fn last<T>(values: &[T], n: u16) -> &[T] {
    &values[values.len().saturating_sub(usize::from(n))..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use std::sync::Mutex;

    fn busy_view() -> View {
        View {
            elapsed: Duration::from_secs(95),
            phase: "ramping up".into(),
            queue_ready: 12.0,
            queue_unacked: 3.0,
            arrival_rate: 2.0,
            target_rate: 2.5,
            workers_current: 3,
            workers_ready: 2,
            workers_desired: 4,
            min_replicas: 1,
            max_replicas: 10,
            jobs_accepted: 160,
            jobs_processed: 57,
            last_decision: Some(Decision {
                at: Duration::from_secs(90),
                current: 3,
                desired: 4,
                reasons: vec!["ScaleUpStabilized".into(), "ValidMetricFound".into()],
                summary: Some("external metric queue_messages_ready above target".into()),
                metrics: vec![MetricReading {
                    name: "queue_messages_ready".into(),
                    value: 12.0,
                    target: 3.0,
                }],
            }),
            queue_history: (0..200).map(|i| f64::from(i % 20)).collect(),
            workers_history: (0..200).map(|i| 1 + i / 60).collect(),
            prometheus_url: Some("http://127.0.0.1:9090".into()),
            rabbitmq_url: Some("http://127.0.0.1:15672".into()),
            report_dir: Some(PathBuf::from("target/demo-report")),
        }
    }

    fn screen_text(view: &View, width: u16, height: u16, stopping: bool) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal
            .draw(|frame| render(frame, view, stopping))
            .expect("draw");
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn dashboard_screen_shows_the_numbers_and_the_decision() {
        let text = screen_text(&busy_view(), 110, 32, false);
        for needle in [
            "1m35s",
            "ramping up",
            "http://127.0.0.1:9090",
            "http://127.0.0.1:15672",
            "target/demo-report",
            "12 ready",
            "3 unacked",
            "2.0/s",
            "target 2.5/s",
            "3 current",
            "2 ready",
            "4 desired",
            "min 1, max 10",
            "57 processed of 160 accepted",
            "3 → 4 workers",
            "scale up",
            "ScaleUpStabilized, ValidMetricFound",
            "queue_messages_ready = 12",
            "target 3",
            "above target",
            "Queue depth",
            "stop the demo",
        ] {
            assert!(
                text.contains(needle),
                "the screen lacks {needle:?}:\n{text}"
            );
        }
    }

    #[test]
    fn dashboard_screen_says_when_it_is_stopping_and_when_nothing_is_known() {
        let text = screen_text(&View::default(), 80, 30, true);
        assert!(text.contains("stopping"), "{text}");
        assert!(text.contains("none yet"), "{text}");
        assert!(text.contains("not running"), "{text}");
    }

    #[test]
    fn dashboard_screen_survives_tiny_terminals_and_odd_values() {
        let mut view = busy_view();
        view.queue_ready = f64::NAN;
        view.arrival_rate = f64::INFINITY;
        view.target_rate = 0.0;
        view.max_replicas = 0;
        view.workers_current = 200;
        for (w, h) in [(1, 1), (20, 5), (40, 12), (300, 80)] {
            screen_text(&view, w, h, false);
        }
    }

    #[test]
    fn dashboard_replica_bar_marks_each_slot() {
        let view = View {
            workers_current: 3,
            workers_ready: 2,
            workers_desired: 5,
            min_replicas: 1,
            max_replicas: 6,
            ..View::default()
        };
        let bar: String = replica_bar(&view, 6)
            .spans
            .iter()
            .map(|s| s.content.as_ref())
            .collect();
        assert_eq!(bar, "██▓░░·");
        let down = View {
            workers_desired: 1,
            ..view
        };
        let bar: String = replica_bar(&down, 6)
            .spans
            .iter()
            .map(|s| s.content.as_ref())
            .collect();
        assert_eq!(bar, "█▒▒···");
    }

    #[test]
    fn dashboard_plain_line_has_every_number() {
        assert_eq!(
            plain_line(&busy_view()),
            "t=1m35s [ramping up] queue=12 ready/3 unacked arrival=2.0/s target=2.5/s workers=3 \
             ready=2 desired=4 (min 1, max 10) accepted=160 processed=57 \
             last=3->4(ScaleUpStabilized,ValidMetricFound) queue_messages_ready=12/3"
        );
        let quiet = View {
            elapsed: Duration::from_millis(4_900),
            phase: "starting".into(),
            ..View::default()
        };
        assert_eq!(
            plain_line(&quiet),
            "t=4s [starting] queue=0 ready/0 unacked arrival=0.0/s target=0.0/s workers=0 ready=0 \
             desired=0 (min 0, max 0) accepted=0 processed=0 last=none"
        );
    }

    /// A writer the test can read back while the dashboard owns it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn dashboard_plain_mode_prints_every_interval_on_phase_changes_and_at_the_end() {
        let out = Shared::default();
        let mut dashboard = Dashboard::plain(Box::new(out.clone()), Duration::from_secs(5));
        assert!(!dashboard.is_interactive());
        let mut view = View {
            phase: "steady".into(),
            ..View::default()
        };
        for secs in 0..=12 {
            view.elapsed = Duration::from_secs(secs);
            if secs == 7 {
                view.phase = "draining".into();
            }
            dashboard.update(&view).expect("update");
        }
        assert!(!dashboard.quit_requested());
        dashboard.finish();
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let times: Vec<&str> = text
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or_default())
            .collect();
        assert_eq!(times, ["t=0s", "t=5s", "t=7s", "t=12s"]);
        // 12 was printed by the interval, so finish adds nothing; a pending view is printed.
        let out = Shared::default();
        let mut dashboard = Dashboard::plain(Box::new(out.clone()), Duration::from_secs(5));
        for secs in [0, 1, 2] {
            view.elapsed = Duration::from_secs(secs);
            dashboard.update(&view).expect("update");
        }
        drop(dashboard);
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().last().unwrap_or_default().starts_with("t=2s"));
    }

    #[test]
    fn dashboard_start_without_a_terminal_falls_back_to_plain_lines() {
        // Test runners capture stdout, so it is not a terminal here.
        if std::io::stdout().is_terminal() {
            return;
        }
        let dashboard = Dashboard::start(true).expect("start");
        assert!(!dashboard.is_interactive());
        dashboard.finish();
    }
}
