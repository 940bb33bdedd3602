//! What Prometheus does to a signal between the scrape and the query: one scraped series, and
//! the PromQL functions the capacity rules and the adapter use (`rate`, `increase`, `irate`,
//! `last_over_time`, and a plain instant selector with its lookback and staleness), evaluated
//! as Prometheus evaluates them.
//!
//! Read from Prometheus' own source, not guessed: `extrapolatedRate`, `instantValue` and
//! `funcLastOverTime` in `promql/functions.go`, `matrixIterSlice` and `vectorSelectorSingle` in
//! `promql/engine.go`, at the tags v2.42.0 (the release line this machine runs, and the one the
//! tests hold this module against) and v3.0.0. The two lines differ in three places, each
//! selected by [`Engine`]:
//!
//! - **A range's left edge.** 2.x selects the samples at `eval - range <= t <= eval`; 3.x leaves
//!   the left edge out (`eval - range < t`). With scrapes on a grid as even as the window (15 s
//!   scrapes, a `[1m]` window, an evaluation on a scrape), 2.x sees five samples where 3.x sees
//!   four.
//! - **The lookback's left edge**, the same way (2.x: `t >= eval - lookback`; 3.x: `t >`).
//! - **Extrapolating to a counter's zero.** Both extrapolate a rate to the window's edges when
//!   the first or last sample is within 1.1 average scrape intervals of them, and by half an
//!   interval otherwise, and never to before the counter would have been zero. 2.x compares the
//!   zero point with the raw distance to the window's start; 3.x compares it with the distance
//!   after the half-interval cap.
//!
//! A stale marker (what Prometheus writes when a target disappears or a series leaves a
//! scrape) ends the series for an instant selector at once, instead of after the 5 minute
//! lookback, and is never a sample of a range.
//!
//! Times are integer milliseconds, as Prometheus stores them, so that a window's edge falls on
//! a sample exactly when it would in Prometheus. Pure: no I/O.

use std::fmt;

/// Prometheus' default lookback delta (`--query.lookback-delta`): an instant selector finds
/// the newest sample no older than this.
pub const DEFAULT_LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Which Prometheus release line's evaluation to follow (see the module documentation for the
/// three places where they differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Prometheus 2.x (the behaviour at v2.42.0).
    V2,
    /// Prometheus 3.x (the behaviour at v3.0.0).
    V3,
}

impl Engine {
    /// Whether a sample at `at_ms` is inside a range or lookback that reaches back
    /// `span_ms` from `eval_ms`, on the left edge; the right edge (`at_ms <= eval_ms`) is the
    /// caller's.
    fn after_left_edge(self, at_ms: i64, eval_ms: i64, span_ms: i64) -> bool {
        match self {
            Engine::V2 => at_ms >= eval_ms - span_ms,
            Engine::V3 => at_ms > eval_ms - span_ms,
        }
    }
}

/// A sample could not be appended: Prometheus refuses a sample that is not newer than the
/// series' newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfOrder {
    /// The refused sample's time.
    pub at_ms: i64,
    /// The series' newest sample's time.
    pub newest_ms: i64,
}

impl fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a sample at {} ms is not newer than the series' newest at {} ms",
            self.at_ms, self.newest_ms
        )
    }
}

impl std::error::Error for OutOfOrder {}

/// One stored point: a value, or a stale marker (`None`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    at_ms: i64,
    value: Option<f64>,
}

/// One time series as Prometheus stores it: samples in time order, with stale markers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    points: Vec<Point>,
}

impl Series {
    /// An empty series.
    pub fn new() -> Self {
        Series::default()
    }

    /// Appends a scraped value.
    pub fn push(&mut self, at_ms: i64, value: f64) -> Result<(), OutOfOrder> {
        self.append(Point {
            at_ms,
            value: Some(value),
        })
    }

    /// Appends a stale marker: the series left the scrape, or its target went away.
    pub fn mark_stale(&mut self, at_ms: i64) -> Result<(), OutOfOrder> {
        self.append(Point { at_ms, value: None })
    }

    fn append(&mut self, point: Point) -> Result<(), OutOfOrder> {
        if let Some(newest) = self.points.last() {
            if point.at_ms <= newest.at_ms {
                return Err(OutOfOrder {
                    at_ms: point.at_ms,
                    newest_ms: newest.at_ms,
                });
            }
        }
        self.points.push(point);
        Ok(())
    }

    /// Drops the points older than `at_ms`, which no window ending later than `at_ms` plus its
    /// span can see; keeps a long run's memory bounded.
    pub fn forget_before(&mut self, at_ms: i64) {
        let keep_from = self.points.partition_point(|p| p.at_ms < at_ms);
        self.points.drain(..keep_from);
    }

    /// The number of points held, stale markers included.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the series holds no point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The samples a range selector `[range]` evaluated at `eval_ms` selects: stale markers
    /// left out.
    fn range(&self, engine: Engine, eval_ms: i64, range_ms: i64) -> Vec<(i64, f64)> {
        let end = self.points.partition_point(|p| p.at_ms <= eval_ms);
        self.points[..end]
            .iter()
            .rev()
            .take_while(|p| engine.after_left_edge(p.at_ms, eval_ms, range_ms))
            .filter_map(|p| p.value.map(|v| (p.at_ms, v)))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }

    /// The instant selector `series` evaluated at `eval_ms`: the newest point at or before it,
    /// if it is no older than the lookback and not a stale marker.
    pub fn instant(&self, engine: Engine, eval_ms: i64, lookback_ms: i64) -> Option<f64> {
        let end = self.points.partition_point(|p| p.at_ms <= eval_ms);
        let newest = self.points[..end].last()?;
        if !engine.after_left_edge(newest.at_ms, eval_ms, lookback_ms) {
            return None;
        }
        newest.value
    }

    /// `rate(series[range])` at `eval_ms`: the increase over the window, counter resets
    /// corrected, extrapolated to the window's edges as Prometheus does, per second. `None`
    /// with fewer than two samples in the window (Prometheus returns no value).
    pub fn rate(&self, engine: Engine, eval_ms: i64, range_ms: i64) -> Option<f64> {
        self.extrapolated(engine, eval_ms, range_ms, Some(range_ms as f64 / 1000.0))
    }

    /// `increase(series[range])` at `eval_ms`: [`Series::rate`] times the window.
    pub fn increase(&self, engine: Engine, eval_ms: i64, range_ms: i64) -> Option<f64> {
        self.extrapolated(engine, eval_ms, range_ms, None)
    }

    /// `irate(series[range])` at `eval_ms`: the per-second increase between the window's last
    /// two samples (a counter reset counts the last value as the increase).
    pub fn irate(&self, engine: Engine, eval_ms: i64, range_ms: i64) -> Option<f64> {
        let samples = self.range(engine, eval_ms, range_ms);
        let [.., (before_ms, before), (last_ms, last)] = samples[..] else {
            return None;
        };
        let increase = if last < before { last } else { last - before };
        let apart_ms = last_ms - before_ms;
        (apart_ms != 0).then(|| increase / (apart_ms as f64 / 1000.0))
    }

    /// `last_over_time(series[range])` at `eval_ms`: the window's newest sample.
    pub fn last_over_time(&self, engine: Engine, eval_ms: i64, range_ms: i64) -> Option<f64> {
        self.range(engine, eval_ms, range_ms)
            .last()
            .map(|&(_, value)| value)
    }

    /// `extrapolatedRate` for a counter, before the division by the window.
    /// With `per_second_over`, the factor is divided by the window in seconds before it
    /// multiplies, as `rate` does.
    fn extrapolated(
        &self,
        engine: Engine,
        eval_ms: i64,
        range_ms: i64,
        per_second_over: Option<f64>,
    ) -> Option<f64> {
        let samples = self.range(engine, eval_ms, range_ms);
        let (&(first_ms, first), &(last_ms, last)) = (samples.first()?, samples.last()?);
        if samples.len() < 2 {
            return None;
        }
        let mut increase = last - first;
        for pair in samples.windows(2) {
            if pair[1].1 < pair[0].1 {
                // A counter reset: what was counted before it still happened.
                increase += pair[0].1;
            }
        }

        let range_start_ms = eval_ms - range_ms;
        let mut to_start = (first_ms - range_start_ms) as f64 / 1000.0;
        let mut to_end = (eval_ms - last_ms) as f64 / 1000.0;
        let sampled = (last_ms - first_ms) as f64 / 1000.0;
        let average_gap = sampled / (samples.len() - 1) as f64;
        let threshold = average_gap * 1.1;
        let to_zero = (increase > 0.0 && first >= 0.0).then(|| sampled * (first / increase));

        match engine {
            Engine::V2 => {
                if let Some(to_zero) = to_zero {
                    to_start = to_start.min(to_zero);
                }
                if to_start >= threshold {
                    to_start = average_gap / 2.0;
                }
            }
            Engine::V3 => {
                if to_start >= threshold {
                    to_start = average_gap / 2.0;
                }
                if let Some(to_zero) = to_zero {
                    to_start = to_start.min(to_zero);
                }
            }
        }
        if to_end >= threshold {
            to_end = average_gap / 2.0;
        }
        // In Prometheus' order of operations, so that the result is the same to the bit.
        let mut extrapolate_to = sampled;
        extrapolate_to += to_start;
        extrapolate_to += to_end;
        let mut factor = extrapolate_to / sampled;
        if let Some(range_secs) = per_second_over {
            factor /= range_secs;
        }
        Some(increase * factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter scraped every `every_ms` from `from_ms`, counting `per_sec` a second.
    fn counter(from_ms: i64, every_ms: i64, scrapes: usize, per_sec: f64) -> Series {
        let mut series = Series::new();
        for i in 0..scrapes as i64 {
            let at = from_ms + i * every_ms;
            series.push(at, per_sec * at as f64 / 1000.0).unwrap();
        }
        series
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn rate_of_an_even_counter_is_its_slope_on_either_engine() {
        // 2 a second, scraped every 15 s from 7 s (a phase off the window's grid).
        let series = counter(7_000, 15_000, 40, 2.0);
        for engine in [Engine::V2, Engine::V3] {
            assert!(
                close(series.rate(engine, 300_000, 60_000), 2.0),
                "{engine:?}"
            );
            assert!(
                close(series.increase(engine, 300_000, 60_000), 120.0),
                "{engine:?}"
            );
            assert!(
                close(series.irate(engine, 300_000, 60_000), 2.0),
                "{engine:?}"
            );
        }
    }

    #[test]
    fn the_left_edge_is_in_on_2x_and_out_on_3x() {
        // Scrapes at 0, 15, ..., 300 s; evaluation at 300 s over [1m]: 2.x selects 240..=300
        // (5 samples), 3.x 255..=300 (4 samples).
        let series = counter(0, 15_000, 21, 1.0);
        assert_eq!(series.range(Engine::V2, 300_000, 60_000).len(), 5);
        assert_eq!(series.range(Engine::V3, 300_000, 60_000).len(), 4);
        // A counter at 100 that starts counting mid-window: 110 at 270 s, 120, 130.
        let mut step = Series::new();
        for i in 0..=20 {
            let at = i * 15_000;
            let counted = if at < 270_000 {
                0
            } else {
                (at - 255_000) / 15_000
            };
            step.push(at, 100.0 + 10.0 * counted as f64).unwrap();
        }
        // 2.x: 240..=300 reads 100, 100, 110, 120, 130: 30 over the 60 s sampled, the window's
        // edges on samples: 0.5 a second.
        assert!(close(step.rate(Engine::V2, 300_000, 60_000), 0.5));
        // 3.x: 255..=300 reads 100, 110, 120, 130: 30 over 45 s sampled, 15 s to the window's
        // start (within 1.1 x 15 s), so extrapolated by 60/45 to 40 over the minute.
        assert!(close(step.rate(Engine::V3, 300_000, 60_000), 40.0 / 60.0));
    }

    #[test]
    fn extrapolation_stops_at_the_counters_zero() {
        // Born at 50 s, counting 2 a second, scraped at 52, 67 and 82 s. At 90 s over [1m]
        // the window starts at 30 s, 22 s before the first sample, but the counter was zero
        // only 2 s before it: both lines extrapolate 2 s back, and 8 s forward to the end.
        // 60 counted in 30 s sampled: 60 x (30 + 2 + 8) / 30 = 80.
        let mut series = Series::new();
        for at in [52_000, 67_000, 82_000] {
            series
                .push(at, 2.0 * (at - 50_000) as f64 / 1000.0)
                .unwrap();
        }
        for engine in [Engine::V2, Engine::V3] {
            assert!(
                close(series.increase(engine, 90_000, 60_000), 80.0),
                "{engine:?}"
            );
        }
    }

    #[test]
    fn the_two_lines_cap_the_zero_point_in_a_different_order() {
        // 24 at 10 s, 54 at 25 s, 84 at 40 s: 2 a second, zero 12 s before the first sample.
        // At 45 s over [1m] the window starts 25 s before it, beyond 1.1 x 15 s.
        // 2.x: min(25, 12 to zero) = 12, within the threshold: 12 s back.
        // 3.x: 25 beyond the threshold -> half an interval, 7.5 s; min(7.5, 12) = 7.5 s back.
        let mut series = Series::new();
        for (at, v) in [(10_000, 24.0), (25_000, 54.0), (40_000, 84.0)] {
            series.push(at, v).unwrap();
        }
        assert!(close(
            series.increase(Engine::V2, 45_000, 60_000),
            60.0 * (30.0 + 12.0 + 5.0) / 30.0
        ));
        assert!(close(
            series.increase(Engine::V3, 45_000, 60_000),
            60.0 * (30.0 + 7.5 + 5.0) / 30.0
        ));
    }

    #[test]
    fn a_reset_counts_what_came_before_it() {
        let mut series = Series::new();
        for (at, v) in [
            (0, 10.0),
            (15_000, 20.0),
            (30_000, 5.0),
            (45_000, 15.0),
            (60_000, 25.0),
        ] {
            series.push(at, v).unwrap();
        }
        // As Prometheus counts it: last - first (15) plus the value before the reset (20),
        // over a window the samples span exactly.
        assert!(close(series.increase(Engine::V2, 60_000, 60_000), 35.0));
        // irate across a reset takes the last value.
        let mut reset = Series::new();
        reset.push(0, 50.0).unwrap();
        reset.push(15_000, 6.0).unwrap();
        assert!(close(reset.irate(Engine::V2, 15_000, 60_000), 6.0 / 15.0));
    }

    #[test]
    fn fewer_than_two_samples_give_no_rate() {
        let series = counter(0, 15_000, 1, 1.0);
        assert_eq!(series.rate(Engine::V2, 10_000, 60_000), None);
        assert_eq!(series.irate(Engine::V2, 10_000, 60_000), None);
        assert!(close(
            series.last_over_time(Engine::V2, 10_000, 60_000),
            0.0
        ));
        assert_eq!(Series::new().rate(Engine::V3, 10_000, 60_000), None);
    }

    #[test]
    fn an_instant_selector_looks_back_and_stops_at_a_stale_marker() {
        let mut series = Series::new();
        series.push(0, 3.0).unwrap();
        // Found until the lookback runs out: 2.x includes the edge, 3.x does not.
        assert_eq!(
            series.instant(Engine::V2, DEFAULT_LOOKBACK_MS, DEFAULT_LOOKBACK_MS),
            Some(3.0)
        );
        assert_eq!(
            series.instant(Engine::V3, DEFAULT_LOOKBACK_MS, DEFAULT_LOOKBACK_MS),
            None
        );
        assert_eq!(
            series.instant(Engine::V2, 60_000, DEFAULT_LOOKBACK_MS),
            Some(3.0)
        );
        // Not before the sample.
        assert_eq!(
            Series::new().instant(Engine::V2, 0, DEFAULT_LOOKBACK_MS),
            None
        );
        // A stale marker ends it at once, and a range skips it.
        series.mark_stale(15_000).unwrap();
        assert_eq!(
            series.instant(Engine::V2, 20_000, DEFAULT_LOOKBACK_MS),
            None
        );
        assert_eq!(
            series.instant(Engine::V2, 10_000, DEFAULT_LOOKBACK_MS),
            Some(3.0)
        );
        assert!(close(
            series.last_over_time(Engine::V2, 20_000, 60_000),
            3.0
        ));
        series.push(30_000, 4.0).unwrap();
        assert_eq!(
            series.instant(Engine::V2, 31_000, DEFAULT_LOOKBACK_MS),
            Some(4.0)
        );
        assert_eq!(series.range(Engine::V2, 31_000, 60_000).len(), 2);
    }

    #[test]
    fn samples_are_refused_out_of_order_and_forgotten_in_order() {
        let mut series = counter(0, 15_000, 10, 1.0);
        assert_eq!(
            series.push(135_000, 1.0),
            Err(OutOfOrder {
                at_ms: 135_000,
                newest_ms: 135_000
            })
        );
        series.forget_before(60_000);
        assert_eq!(series.len(), 6);
        assert!(close(series.rate(Engine::V2, 135_000, 60_000), 1.0));
    }
}
