//! Rate patterns: how many jobs per second arrive, over time. Pure data and arithmetic, no I/O
//! and no clock, so `warren load` (which sends real requests on this schedule) and the
//! simulator (which feeds simulated arrivals from it) share one definition.
//!
//! A [`Pattern`] is a built-in shape ([`PatternKind`]: constant, step, ramp, spike, sine) or a
//! piecewise-linear list of `time_secs,rate` points ([`Pattern::parse_csv`]). It gives the rate
//! at a time ([`Pattern::rate_at`]), the number of arrivals up to a time ([`Pattern::integral`]),
//! and the inverse of that ([`Pattern::time_at_integral`]): evenly spaced arrivals are the times
//! the integral reaches 1, 2, 3, ... ([`Pattern::send_times`]); Poisson arrivals are the times it
//! reaches a running sum of exponential draws.
#![deny(missing_docs)]

use std::fmt;
use std::time::Duration;

/// The highest rate a pattern may ask for, in requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The longest pattern, in seconds (30 days): long enough for any soak, short enough that
/// every time stays exact in `f64` and `Duration`.
pub const MAX_PATTERN_SECS: f64 = 30.0 * 24.0 * 3600.0;
/// The built-in rate patterns; `RATE` is `--rate`, `T` is `--duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum PatternKind {
    /// RATE the whole time.
    Constant,
    /// RATE/4 for the first quarter of T, then RATE.
    Step,
    /// From 0 up to RATE, linearly over T.
    Ramp,
    /// RATE/10, and RATE during the middle tenth of T (from 45% to 55%).
    Spike,
    /// RATE*(1-cos(2*pi*t/T))/2: one period, 0 at the start and the end, RATE at T/2.
    Sine,
}

impl fmt::Display for PatternKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Constant => "constant",
            Self::Step => "step",
            Self::Ramp => "ramp",
            Self::Spike => "spike",
            Self::Sine => "sine",
        })
    }
}

/// A pattern that cannot be used; the message says why (with the line, for a CSV).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(String);

/// The target rate (requests per second) over the pattern's time (seconds from its start).
///
/// Times are pattern time: a caller that runs faster than the wall clock (`warren load --speed`)
/// maps them itself.
#[derive(Clone, Debug)]
pub struct Pattern {
    shape: Shape,
    duration: f64,
    label: String,
}

#[derive(Clone, Debug)]
enum Shape {
    /// Linear between points, the last rate held after the last point. Two points at one time
    /// make a step. `areas[i]` is the integral from 0 to `times[i]`.
    Points {
        times: Vec<f64>,
        rates: Vec<f64>,
        areas: Vec<f64>,
    },
    /// `peak * (1 - cos(2 pi t / period)) / 2`.
    Sine { peak: f64, period: f64 },
}

impl Pattern {
    /// A built-in pattern at `rate` requests per second, lasting `duration`.
    pub fn builtin(kind: PatternKind, rate: f64, duration: Duration) -> Result<Self, PatternError> {
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
            return Err(PatternError(format!(
                "LOAD_RATE must be above 0 and at most {MAX_RATE}, not {rate}"
            )));
        }
        let t = duration.as_secs_f64();
        if !(t > 0.0 && t <= MAX_PATTERN_SECS) {
            return Err(PatternError(
                "LOAD_DURATION must be longer than 0 and at most 30 days".into(),
            ));
        }
        let points = match kind {
            PatternKind::Constant => vec![(0.0, rate), (t, rate)],
            PatternKind::Step => vec![
                (0.0, rate / 4.0),
                (t / 4.0, rate / 4.0),
                (t / 4.0, rate),
                (t, rate),
            ],
            PatternKind::Ramp => vec![(0.0, 0.0), (t, rate)],
            PatternKind::Spike => vec![
                (0.0, rate / 10.0),
                (t * 9.0 / 20.0, rate / 10.0),
                (t * 9.0 / 20.0, rate),
                (t * 11.0 / 20.0, rate),
                (t * 11.0 / 20.0, rate / 10.0),
                (t, rate / 10.0),
            ],
            PatternKind::Sine => {
                return Ok(Self {
                    shape: Shape::Sine {
                        peak: rate,
                        period: t,
                    },
                    duration: t,
                    label: format!("sine {rate}/s over {t} s"),
                })
            }
        };
        Self::from_points(&points, None, format!("{kind} {rate}/s"))
    }

    /// Parses a pattern file: lines of `time_secs,rate`. A first line that is not numbers is a
    /// header; blank lines and `#` comments are skipped. The first point must be at time 0 and
    /// times must not decrease. The pattern lasts until the last point, or `duration` when given
    /// (cut short, or the last rate held to its end).
    pub fn parse_csv(text: &str, duration: Option<Duration>) -> Result<Self, PatternError> {
        let mut points: Vec<(f64, f64)> = Vec::new();
        let mut first_line = true;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let is_first = std::mem::replace(&mut first_line, false);
            let fields: Vec<&str> = content.split(',').map(str::trim).collect();
            let [time, rate] = fields[..] else {
                return Err(PatternError(format!(
                    "line {line}: expected time_secs,rate, got {}",
                    quoted(content)
                )));
            };
            if is_first && time.parse::<f64>().is_err() && rate.parse::<f64>().is_err() {
                continue; // a header
            }
            let time = parse_number(line, "time", time)?;
            let rate = parse_number(line, "rate", rate)?;
            if time > MAX_PATTERN_SECS {
                return Err(PatternError(format!(
                    "line {line}: time {time} is past the 30 days allowed"
                )));
            }
            if rate > MAX_RATE {
                return Err(PatternError(format!(
                    "line {line}: rate {rate} is above the {MAX_RATE} allowed"
                )));
            }
            match points.last() {
                None if time != 0.0 => {
                    return Err(PatternError(format!(
                        "line {line}: the first point must be at time 0, not {time}"
                    )))
                }
                Some(&(previous, _)) if time < previous => {
                    return Err(PatternError(format!(
                        "line {line}: time {time} comes before the previous point's {previous}; \
                         times must not decrease"
                    )))
                }
                _ => {}
            }
            points.push((time, rate));
        }
        if points.is_empty() {
            return Err(PatternError(
                "has no points; expected lines of time_secs,rate".into(),
            ));
        }
        let duration = duration.map(|d| d.as_secs_f64());
        Self::from_points(&points, duration, format!("{} points", points.len()))
    }

    fn from_points(
        points: &[(f64, f64)],
        duration: Option<f64>,
        label: String,
    ) -> Result<Self, PatternError> {
        let last = points.last().map_or(0.0, |&(t, _)| t);
        let duration = duration.unwrap_or(last);
        if !(duration > 0.0 && duration <= MAX_PATTERN_SECS) {
            return Err(PatternError(format!(
                "lasts {duration} s; add a later point or give a duration (at most 30 days)"
            )));
        }
        let times: Vec<f64> = points.iter().map(|&(t, _)| t).collect();
        let rates: Vec<f64> = points.iter().map(|&(_, r)| r).collect();
        let mut areas = Vec::with_capacity(points.len());
        let mut area = 0.0;
        for (i, &(t, r)) in points.iter().enumerate() {
            if i > 0 {
                let (t0, r0) = points[i - 1];
                area += (t - t0) * (r0 + r) / 2.0;
            }
            areas.push(area);
        }
        Ok(Self {
            shape: Shape::Points {
                times,
                rates,
                areas,
            },
            duration,
            label: format!("{label} over {duration} s"),
        })
    }

    /// How long the pattern lasts, in seconds of pattern time.
    pub fn duration(&self) -> f64 {
        self.duration
    }

    /// The target rate at `t` seconds of pattern time, in requests per second; 0 outside the
    /// pattern. At a step, the rate after it.
    pub fn rate_at(&self, t: f64) -> f64 {
        if !(0.0..=self.duration).contains(&t) {
            return 0.0;
        }
        match &self.shape {
            Shape::Points { times, rates, .. } => {
                let i = times.partition_point(|&x| x <= t).saturating_sub(1);
                match (times.get(i + 1), rates.get(i + 1)) {
                    (Some(&t1), Some(&r1)) => {
                        let (t0, r0) = (times[i], rates[i]);
                        r0 + (r1 - r0) * (t - t0) / (t1 - t0)
                    }
                    _ => rates[i],
                }
            }
            Shape::Sine { peak, period } => {
                peak * (1.0 - (std::f64::consts::TAU * t / period).cos()) / 2.0
            }
        }
    }

    /// How many requests the pattern asks for from its start to `t` (the rate's integral).
    pub fn integral(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.duration);
        match &self.shape {
            Shape::Points {
                times,
                rates,
                areas,
            } => {
                // The last point at or before `t`; the segment after it has a width above 0.
                let i = times.partition_point(|&x| x <= t).saturating_sub(1);
                let (t0, r0) = (times[i], rates[i]);
                let rate_t = match (times.get(i + 1), rates.get(i + 1)) {
                    (Some(&t1), Some(&r1)) => r0 + (r1 - r0) * (t - t0) / (t1 - t0),
                    _ => r0,
                };
                areas[i] + (t - t0) * (r0 + rate_t) / 2.0
            }
            Shape::Sine { peak, period } => {
                let tau = std::f64::consts::TAU;
                peak / 2.0 * (t - period / tau * (tau * t / period).sin())
            }
        }
    }

    /// The first time, at or after `after`, at which the integral reaches `area`, to within
    /// 0.1 µs; the pattern's end when it never does. The integral never decreases, so this is a
    /// bisection between `after` and the end.
    pub fn time_at_integral(&self, area: f64, after: f64) -> f64 {
        let (mut lo, mut hi) = (after.clamp(0.0, self.duration), self.duration);
        while hi - lo > 1e-7 {
            let mid = lo + (hi - lo) / 2.0;
            if self.integral(mid) < area {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    /// The send times of the whole pattern, in seconds of pattern time: request `i` (from 1)
    /// leaves when the integral reaches `i`, so their number is the integral, rounded down.
    pub fn send_times(&self) -> SendTimes<'_> {
        SendTimes {
            pattern: self,
            next: 1,
            total: self.integral(self.duration),
            previous: 0.0,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// Iterator over a pattern's send times; see [`Pattern::send_times`].
#[derive(Debug)]
pub struct SendTimes<'a> {
    pattern: &'a Pattern,
    next: u64,
    total: f64,
    previous: f64,
}

impl Iterator for SendTimes<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        let wanted = self.next as f64;
        // The tolerance keeps a request whose time is the very end despite rounding (50/s for
        // 2 s must give 100, even if the integral comes out as 99.999999999).
        if wanted > self.total + 1e-9 {
            return None;
        }
        let hi = self.pattern.time_at_integral(wanted, self.previous);
        self.previous = hi;
        self.next += 1;
        Some(hi)
    }
}

fn parse_number(line: usize, what: &str, raw: &str) -> Result<f64, PatternError> {
    match raw.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        Ok(_) => Err(PatternError(format!(
            "line {line}: {what} {} must be a number of 0 or more",
            quoted(raw)
        ))),
        Err(_) => Err(PatternError(format!(
            "line {line}: {what} {} is not a number",
            quoted(raw)
        ))),
    }
}

/// File content quoted for an error message, cut to a bounded length.
fn quoted(raw: &str) -> String {
    let mut shown = format!("{raw:?}");
    if shown.chars().count() > 64 {
        shown = shown.chars().take(60).collect::<String>() + "…\"";
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn builtin(kind: PatternKind, rate: f64, duration: f64) -> Pattern {
        Pattern::builtin(kind, rate, secs(duration)).expect("valid pattern")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * (1.0 + b.abs())
    }

    #[test]
    fn load_patterns_give_the_documented_rates() {
        let c = builtin(PatternKind::Constant, 40.0, 100.0);
        assert!(close(c.rate_at(0.0), 40.0) && close(c.rate_at(100.0), 40.0));
        assert_eq!(c.rate_at(100.1), 0.0);
        assert_eq!(c.rate_at(-1.0), 0.0);

        let s = builtin(PatternKind::Step, 40.0, 100.0);
        assert!(close(s.rate_at(0.0), 10.0) && close(s.rate_at(24.9), 10.0));
        assert!(close(s.rate_at(25.0), 40.0) && close(s.rate_at(99.0), 40.0));

        let r = builtin(PatternKind::Ramp, 40.0, 100.0);
        assert!(close(r.rate_at(0.0), 0.0));
        assert!(close(r.rate_at(50.0), 20.0));
        assert!(close(r.rate_at(100.0), 40.0));

        let p = builtin(PatternKind::Spike, 40.0, 100.0);
        assert!(close(p.rate_at(10.0), 4.0) && close(p.rate_at(44.9), 4.0));
        assert!(close(p.rate_at(45.0), 40.0) && close(p.rate_at(54.9), 40.0));
        assert!(close(p.rate_at(55.0), 4.0) && close(p.rate_at(90.0), 4.0));

        let w = builtin(PatternKind::Sine, 40.0, 100.0);
        assert!(close(w.rate_at(0.0), 0.0));
        assert!(close(w.rate_at(25.0), 20.0));
        assert!(close(w.rate_at(50.0), 40.0));
        assert!(w.rate_at(100.0).abs() < 1e-9);
    }

    #[test]
    fn load_pattern_integrals_match_their_areas() {
        let cases = [
            (PatternKind::Constant, 4000.0),
            (PatternKind::Step, 10.0 * 25.0 + 40.0 * 75.0),
            (PatternKind::Ramp, 2000.0),
            (PatternKind::Spike, 4.0 * 90.0 + 40.0 * 10.0),
            (PatternKind::Sine, 2000.0),
        ];
        for (kind, area) in cases {
            let p = builtin(kind, 40.0, 100.0);
            assert!(
                close(p.integral(100.0), area),
                "{kind}: {}",
                p.integral(100.0)
            );
            assert!(close(p.integral(1e9), area), "{kind}: clamped to the end");
        }
        let step = builtin(PatternKind::Step, 40.0, 100.0);
        assert!(close(step.integral(25.0), 250.0));
        assert!(close(step.integral(30.0), 450.0));
    }

    #[test]
    fn load_schedule_sends_on_the_integral() {
        // 50/s for 2 s: exactly 100 requests, every 20 ms, the last at the end.
        let p = builtin(PatternKind::Constant, 50.0, 2.0);
        let times: Vec<f64> = p.send_times().collect();
        assert_eq!(times.len(), 100);
        for (i, t) in times.iter().enumerate() {
            assert!(
                (t - (i + 1) as f64 * 0.02).abs() < 1e-6,
                "request {i} at {t}"
            );
        }
        // A step: a quarter of the rate in the first quarter.
        let s = builtin(PatternKind::Step, 40.0, 100.0);
        let early = s.send_times().filter(|&t| t <= 25.0).count();
        assert!((249..=250).contains(&early), "{early}");
    }

    proptest! {
        // Each case walks a whole schedule; 64 keep the test under a second in debug builds.
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn load_schedule_count_equals_the_integral_within_one(
            kind in prop::sample::select(vec![
                PatternKind::Constant, PatternKind::Step, PatternKind::Ramp,
                PatternKind::Spike, PatternKind::Sine,
            ]),
            rate in 0.01f64..500.0,
            duration in 0.01f64..30.0,
        ) {
            let p = builtin(kind, rate, duration);
            let times: Vec<f64> = p.send_times().collect();
            let total = p.integral(duration);
            prop_assert!((times.len() as f64 - total).abs() <= 1.0, "{} vs {total}", times.len());
            prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(times.iter().all(|&t| (0.0..=duration).contains(&t)));
        }
    }

    #[test]
    fn load_pattern_file_is_linear_between_points_with_steps() {
        let text = "time_secs,rate\n# warm up\n0,10\n10,10\n10,50  # jump\n20,0\n\n";
        let p = Pattern::parse_csv(text, None).expect("valid file");
        assert!(close(p.duration(), 20.0));
        assert!(close(p.rate_at(5.0), 10.0));
        assert!(close(p.rate_at(10.0), 50.0));
        assert!(close(p.rate_at(15.0), 25.0));
        assert!(close(p.integral(20.0), 100.0 + 250.0));
        // A longer duration holds the last rate; a shorter one cuts the pattern.
        let held = Pattern::parse_csv("0,5\n2,8\n", Some(secs(10.0))).expect("valid file");
        assert!(close(held.rate_at(9.0), 8.0));
        assert!(close(held.integral(10.0), 13.0 + 64.0));
        let cut = Pattern::parse_csv("0,5\n20,5\n", Some(secs(4.0))).expect("valid file");
        assert!(close(cut.integral(100.0), 20.0));
        assert_eq!(cut.rate_at(5.0), 0.0);
    }

    #[test]
    fn load_pattern_file_errors_name_the_line() {
        let cases = [
            ("", "has no points"),
            ("# only a comment\n", "has no points"),
            ("time,rate\n", "has no points"),
            ("0,10\n5\n", "line 2: expected time_secs,rate"),
            ("0,10,3\n", "line 1: expected time_secs,rate"),
            ("0,10\n5,fast\n", "line 2: rate \"fast\" is not a number"),
            ("0,10\nsoon,5\n", "line 2: time \"soon\" is not a number"),
            (
                "0,-1\n",
                "line 1: rate \"-1\" must be a number of 0 or more",
            ),
            (
                "0,NaN\n",
                "line 1: rate \"NaN\" must be a number of 0 or more",
            ),
            ("0,inf\n", "must be a number of 0 or more"),
            ("5,10\n", "line 1: the first point must be at time 0"),
            (
                "0,1\n10,1\n5,1\n",
                "line 3: time 5 comes before the previous point's 10",
            ),
            ("0,2000000\n1,1\n", "line 1: rate 2000000 is above"),
            ("0,10\n", "lasts 0 s"),
            ("0,10\n99999999,1\n", "past the 30 days"),
        ];
        for (text, wanted) in cases {
            let err = Pattern::parse_csv(text, None).expect_err(text).to_string();
            assert!(err.contains(wanted), "{text:?}: {err:?} lacks {wanted:?}");
            assert_eq!(err.lines().count(), 1, "{err:?}");
        }
        // One point is enough when the duration is given.
        assert!(Pattern::parse_csv("0,10\n", Some(secs(3.0))).is_ok());
    }

    #[test]
    fn load_builtin_patterns_refuse_bad_rates_and_durations() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
            assert!(
                Pattern::builtin(PatternKind::Constant, rate, secs(1.0)).is_err(),
                "{rate}"
            );
        }
        assert!(Pattern::builtin(PatternKind::Constant, 1.0, Duration::ZERO).is_err());
    }

    #[test]
    fn time_at_integral_inverts_the_integral() {
        let step = builtin(PatternKind::Step, 40.0, 100.0);
        // 250 arrivals by the step at 25 s, 40/s after it.
        assert!((step.time_at_integral(250.0, 0.0) - 25.0).abs() < 1e-6);
        assert!((step.time_at_integral(450.0, 0.0) - 30.0).abs() < 1e-6);
        // Never before `after`, and the end when the area is never reached.
        assert!((step.time_at_integral(1.0, 50.0) - 50.0).abs() < 1e-6);
        assert!((step.time_at_integral(1e9, 0.0) - 100.0).abs() < 1e-6);
    }
}
