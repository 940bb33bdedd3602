//! What a run of `warren load` reports: live counters, the progress line every second, and
//! the summary at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Live counters of a run, shared through an `Arc` and read with [`LoadStats::snapshot`].
#[derive(Debug, Default)]
pub struct LoadStats {
    pub(super) sent: AtomicU64,
    pub(super) ok: AtomicU64,
    pub(super) unavailable: AtomicU64,
    pub(super) other: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) in_flight: AtomicU64,
    /// The wall-clock target rate, as `f64` bits.
    pub(super) target_rate: AtomicU64,
}

/// The counters of a run at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadSnapshot {
    /// Requests sent.
    pub sent: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered 503.
    pub unavailable: u64,
    /// Answered with any other status.
    pub other: u64,
    /// Failed without an answer (connection errors and timeouts).
    pub errors: u64,
    /// The part of `errors` that were timeouts.
    pub timeouts: u64,
    /// Due but not sent, because `max_in_flight` requests were already in flight.
    pub dropped: u64,
    /// Sent and not yet answered.
    pub in_flight: u64,
    /// The current target rate on the wall clock, in requests per second (the pattern's rate
    /// times the speed); 0 once sending has stopped.
    pub target_rate: f64,
}

impl LoadStats {
    /// The counters now. Each is read on its own, so a snapshot taken while requests complete
    /// may be off by the few requests in between.
    pub fn snapshot(&self) -> LoadSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LoadSnapshot {
            sent: get(&self.sent),
            ok: get(&self.ok),
            unavailable: get(&self.unavailable),
            other: get(&self.other),
            errors: get(&self.errors),
            timeouts: get(&self.timeouts),
            dropped: get(&self.dropped),
            in_flight: get(&self.in_flight),
            target_rate: self.target_rate(),
        }
    }

    /// The current target rate on the wall clock, in requests per second.
    pub fn target_rate(&self) -> f64 {
        f64::from_bits(self.target_rate.load(Ordering::Relaxed))
    }

    pub(super) fn set_target_rate(&self, rate: f64) {
        self.target_rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    pub(super) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Latency percentiles of the answered requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencySummary {
    /// Answered requests measured.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest (exact).
    pub max: Duration,
}

/// The outcome of a whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSummary {
    /// How long sending lasted (the pattern's wall-clock length, or until Ctrl-C).
    pub elapsed: Duration,
    /// Requests that came due: `sent + dropped`.
    pub scheduled: u64,
    /// Requests sent.
    pub sent: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered 503.
    pub unavailable: u64,
    /// Answered with any other status, by status.
    pub other: BTreeMap<u16, u64>,
    /// Failed without an answer (connection errors and timeouts).
    pub errors: u64,
    /// The part of `errors` that were timeouts.
    pub timeouts: u64,
    /// Due but not sent because `max_in_flight` requests were in flight.
    pub dropped: u64,
    /// Sent but still unanswered when the run stopped waiting (after Ctrl-C).
    pub abandoned: u64,
    /// Requests sent per second of `elapsed`.
    pub achieved_rate: f64,
    /// Latency of answered requests (any status), from the scheduled send time to the end of
    /// the body; `None` when nothing was answered.
    pub latency: Option<LatencySummary>,
    /// Why the first request without an answer failed (timeouts aside).
    pub first_error: Option<String>,
    /// The first error writing the CSV file; writing stopped there, the load went on.
    pub csv_error: Option<String>,
}

impl LoadSummary {
    /// Requests answered with a status other than 200 and 503.
    pub fn other_total(&self) -> u64 {
        self.other.values().sum()
    }

    /// The same summary in the time of a run made `speed` times faster than the wall clock
    /// (the demo's own time): the duration times `speed`, the rate divided by it. Request
    /// latencies stay as measured: HTTP is not slowed down.
    pub fn in_run_time(&self, speed: f64) -> Self {
        Self {
            elapsed: self.elapsed.mul_f64(speed),
            achieved_rate: self.achieved_rate / speed,
            ..self.clone()
        }
    }
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "duration       {:.2} s", self.elapsed.as_secs_f64())?;
        writeln!(f, "scheduled      {}", self.scheduled)?;
        writeln!(f, "sent           {}", self.sent)?;
        writeln!(f, "200            {}", self.ok)?;
        writeln!(f, "503            {}", self.unavailable)?;
        write!(f, "other          {}", self.other_total())?;
        if !self.other.is_empty() {
            let each: Vec<String> = self
                .other
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            write!(f, " ({})", each.join(", "))?;
        }
        writeln!(f)?;
        write!(
            f,
            "errors         {} (timeouts {})",
            self.errors, self.timeouts
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "; first: {e}")?;
        }
        writeln!(f)?;
        writeln!(f, "dropped        {}", self.dropped)?;
        writeln!(f, "abandoned      {}", self.abandoned)?;
        writeln!(f, "achieved rate  {:.2} req/s", self.achieved_rate)?;
        match &self.latency {
            Some(l) => {
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                writeln!(
                    f,
                    "latency        p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} answered)",
                    ms(l.p50),
                    ms(l.p95),
                    ms(l.p99),
                    ms(l.max),
                    l.count
                )
            }
            None => writeln!(f, "latency        none answered"),
        }
    }
}

/// Prints the counters on stderr every second until `finished`.
pub(super) async fn print_progress(stats: Arc<LoadStats>, finished: CancellationToken) {
    let start = Instant::now();
    let mut ticks =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tokio::select! {
            () = finished.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let s = stats.snapshot();
        eprintln!(
            "load {:>6.1}s  target {:.1}/s  sent {}  200 {}  503 {}  other {}  errors {}  dropped {}  in flight {}",
            start.elapsed().as_secs_f64(),
            s.target_rate,
            s.sent,
            s.ok,
            s.unavailable,
            s.other,
            s.errors,
            s.dropped,
            s.in_flight
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_in_run_time_scales_duration_and_rate_but_not_latency() {
        let wall = LoadSummary {
            elapsed: Duration::from_secs_f64(7.5),
            scheduled: 129,
            sent: 129,
            ok: 129,
            unavailable: 0,
            other: BTreeMap::new(),
            errors: 0,
            timeouts: 0,
            dropped: 0,
            abandoned: 0,
            achieved_rate: 17.2,
            latency: None,
            first_error: None,
            csv_error: None,
        };
        let demo = wall.in_run_time(10.0);
        assert!((demo.elapsed.as_secs_f64() - 75.0).abs() < 1e-9);
        assert!((demo.achieved_rate - 1.72).abs() < 1e-9);
        let text = demo.to_string();
        assert!(text.contains("duration       75.00 s"), "{text}");
        assert!(text.contains("achieved rate  1.72 req/s"), "{text}");
        assert_eq!(demo.sent, 129);
    }
}
