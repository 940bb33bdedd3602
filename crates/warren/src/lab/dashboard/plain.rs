//! The view as plain lines, for a stdout that is not a terminal (CI, a pipe).

use std::io::Write;
use std::time::Duration;

use super::{format_count, format_elapsed, format_number, speed_label, View};

pub(super) struct Plain {
    out: Box<dyn Write + Send>,
    /// How much of the demo's time passes between two lines.
    pub(super) every: Duration,
    /// The elapsed time of the last printed view.
    printed_at: Option<Duration>,
    /// The phase of the last printed view: a new phase prints at once.
    printed_phase: String,
    /// The last view's line when it was not printed, for `finish`.
    pending: Option<String>,
}

impl Plain {
    pub(super) fn new(out: Box<dyn Write + Send>, every: Duration) -> Plain {
        Plain {
            out,
            every,
            printed_at: None,
            printed_phase: String::new(),
            pending: None,
        }
    }

    pub(super) fn update(&mut self, view: &View) -> anyhow::Result<()> {
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

    pub(super) fn flush_pending(&mut self) {
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
    let speed = speed_label(view.speed).map_or_else(String::new, |x| format!(" ({x})"));
    let mut line = format!(
        "t={}{speed} [{}] queue={} ready/{} unacked arrival={:.1}/s target={:.1}/s workers={} ready={} \
         desired={} (min {}, max {}{}) accepted={} processed={}",
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
        if super::draw::at_max(view) { ", at max" } else { "" },
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
