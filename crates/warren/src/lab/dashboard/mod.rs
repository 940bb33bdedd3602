//! The demo's live view: a ratatui screen on a terminal, plain periodic lines otherwise.
//!
//! The demo fills a [`View`] about once a second and hands it to [`Dashboard::update`]. On a
//! terminal the dashboard takes over the screen (raw mode, alternate screen) and redraws it; the
//! user stops the demo with `q`, `Esc` or Ctrl-C, which the dashboard reports through
//! [`Dashboard::quit_token`] because raw mode turns Ctrl-C into a key press instead of SIGINT.
//! When stdout is not a terminal (CI, a pipe), it prints one [`plain_line`] every few seconds.
//!
//! One concern a file: this module holds the [`View`] and the [`Dashboard`] that shows it;
//! `terminal` takes and gives back the terminal and reads the keys; `draw` lays the view out on
//! the screen; `plain` prints it as lines.
//!
//! The terminal is always given back: by [`Dashboard::finish`], by `Drop` on an early return, and
//! by a panic hook, which also makes a running dashboard fall back to plain lines so the panic
//! message stays readable.

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

mod draw;
mod plain;
mod terminal;

pub use plain::plain_line;
pub use terminal::restore_terminal;

use plain::Plain;
use terminal::{Screen, TERMINAL_TAKEN};

/// How often plain mode prints a line unless told otherwise.
pub const DEFAULT_PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// A snapshot of the demo, taken about once a second, that the dashboard shows.
///
/// Times and rates are in the demo's own time, before `speed`: a job that takes 5 s takes 5 s
/// here, whatever the speed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// Time since the demo started (demo time).
    pub elapsed: Duration,
    /// How many times faster than the demo's own time the wall clock runs it (1 when 0).
    pub speed: f64,
    /// The demo time between two entries of the histories.
    pub history_step: Duration,
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
    /// Recent queue depth (ready + unacked), oldest first, one value per `history_step`.
    pub queue_history: Vec<f64>,
    /// Recent live worker counts, oldest first, one value per `history_step`.
    pub workers_history: Vec<u32>,
    /// The web server's address (`/generate` is under it).
    pub web_url: Option<String>,
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

/// How a history of `len` entries reads in a chart's title: `last 67s`, in demo time.
fn history_span(len: usize, step: Duration) -> String {
    let step = if step.is_zero() {
        Duration::from_secs(1)
    } else {
        step
    };
    format!(
        "last {}",
        format_elapsed(step * u32::try_from(len).unwrap_or(u32::MAX))
    )
}

/// How the speed reads beside the clock: `x10`; nothing at 1x (or unset).
fn speed_label(speed: f64) -> Option<String> {
    (speed.is_finite() && speed > 0.0 && (speed - 1.0).abs() > f64::EPSILON)
        .then(|| format!("x{speed}"))
}

/// The last `n` items of `values`.
fn last<T>(values: &[T], n: u16) -> &[T] {
    &values[values.len().saturating_sub(usize::from(n))..]
}

#[cfg(test)]
mod tests {
    use super::draw::{render, replica_bar};
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::sync::Arc;
    use std::sync::Mutex;

    fn busy_view() -> View {
        View {
            elapsed: Duration::from_secs(95),
            speed: 10.0,
            history_step: Duration::from_millis(2_500),
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
            web_url: Some("http://127.0.0.1:3000".into()),
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
            "(demo time, run at x10)",
            "ramping up",
            "http://127.0.0.1:9090",
            "http://127.0.0.1:15672",
            "web        http://127.0.0.1:3000",
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

    /// At speed 10 a sample every 250 ms of wall time is 2.5 s of demo time: 27 of them are
    /// 67 s, not 27.
    #[test]
    fn dashboard_history_titles_count_demo_time() {
        assert_eq!(history_span(27, Duration::from_millis(2_500)), "last 1m07s");
        assert_eq!(history_span(40, Duration::from_secs(1)), "last 40s");
        assert_eq!(history_span(5, Duration::ZERO), "last 5s");
        let text = screen_text(&busy_view(), 110, 32, false);
        let title = text
            .lines()
            .find(|l| l.contains("Queue depth"))
            .expect("the queue chart's title");
        let width = title.find("Workers").unwrap_or(title.len());
        assert!(
            !title[..width].contains("last 53s") && title.contains("last 2m"),
            "53 samples of 2.5 s read as minutes: {title}"
        );
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

    /// The history charts mark their y range at the right edge: the top value, and 0.
    #[test]
    fn dashboard_history_charts_show_their_y_range() {
        let text = screen_text(&busy_view(), 110, 32, false);
        let lines: Vec<&str> = text.lines().collect();
        let top = lines
            .iter()
            .position(|l| l.contains("Queue depth"))
            .expect("the charts' top border");
        let title = lines[top];
        let middle = title.find("┌ Workers ").expect("the workers chart");
        assert!(title[..middle].trim_end().ends_with("─ 19 ┐"), "{title}");
        assert!(title.trim_end().ends_with("─ 10 ┐"), "{title}");
        let bottom = lines[top + 1..]
            .iter()
            .find(|l| l.starts_with('└'))
            .expect("the charts' bottom border");
        assert_eq!(bottom.matches("─ 0 ┘").count(), 2, "{bottom}");
    }

    #[test]
    fn dashboard_says_when_the_pool_is_at_its_maximum() {
        let mut view = busy_view();
        assert!(!screen_text(&view, 110, 32, false).contains("at max"));
        assert!(!plain_line(&view).contains("at max"));
        view.workers_desired = 10;
        let text = screen_text(&view, 110, 32, false);
        assert!(text.contains("at max: the HPA can add no more"), "{text}");
        assert!(plain_line(&view).contains("(min 1, max 10, at max)"));
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
            "t=1m35s (x10) [ramping up] queue=12 ready/3 unacked arrival=2.0/s target=2.5/s workers=3 \
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
