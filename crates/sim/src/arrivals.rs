//! The arrival stream: the times at which the shared pattern's integral reaches 1, 2, 3, ...
//! (evenly spaced) or a running sum of exponential draws (Poisson). Times come one at a time, so
//! memory does not grow with the number of jobs.

use rand::Rng;
use rand_distr::{Distribution, Exp1};
use warren_pattern::Pattern;

use crate::scenario::ArrivalProcess;

/// The next arrival times of a pattern.
#[derive(Debug)]
pub struct ArrivalStream {
    pattern: Option<Pattern>,
    process: ArrivalProcess,
    area: f64,
    last: f64,
    total: f64,
}

impl ArrivalStream {
    /// The arrivals of `pattern` (none without a pattern).
    pub fn new(pattern: Option<Pattern>, process: ArrivalProcess) -> Self {
        let total = pattern.as_ref().map_or(0.0, |p| p.integral(p.duration()));
        ArrivalStream {
            pattern,
            process,
            area: 0.0,
            last: 0.0,
            total,
        }
    }

    /// The next arrival time, in seconds, or none when the pattern has no more.
    pub fn next_time<R: Rng>(&mut self, rng: &mut R) -> Option<f64> {
        let pattern = self.pattern.as_ref()?;
        self.area += match self.process {
            ArrivalProcess::Even => 1.0,
            ArrivalProcess::Poisson => Exp1.sample(rng),
        };
        // The same tolerance as `Pattern::send_times`: the last job at the very end is kept.
        if self.area > self.total + 1e-9 {
            return None;
        }
        let t = time_at_integral(pattern, self.area, self.last);
        self.last = t;
        Some(t)
    }
}

/// The first time at or after `after` at which the pattern's integral reaches `area`, by Newton's
/// method on the pattern's own integral and rate, kept inside a bracket; where the rate is 0 or
/// the step leaves the bracket, the pattern's bisection ([`Pattern::time_at_integral`]) takes
/// over. Newton needs two or three evaluations where the bisection needs forty, which is what a
/// day at 50 jobs/s needs to stay under two seconds.
pub fn time_at_integral(pattern: &Pattern, area: f64, after: f64) -> f64 {
    let end = pattern.duration();
    let (mut lo, mut hi) = (after.clamp(0.0, end), end);
    let mut t = lo;
    for _ in 0..8 {
        let gap = area - pattern.integral(t);
        if gap.abs() <= 1e-9 * area.max(1.0) {
            return t;
        }
        if gap > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let rate = pattern.rate_at(t);
        let next = t + gap / rate;
        if !(rate > 0.0 && next > lo && next < hi) {
            return pattern.time_at_integral(area, lo);
        }
        t = next;
    }
    pattern.time_at_integral(area, lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use warren_pattern::PatternKind;

    #[test]
    fn arrivals_even_match_the_pattern_s_own_send_times() {
        for kind in [
            PatternKind::Constant,
            PatternKind::Step,
            PatternKind::Spike,
            PatternKind::Sine,
            PatternKind::Ramp,
        ] {
            let p = Pattern::builtin(kind, 7.0, Duration::from_secs(60)).expect("valid");
            let expected: Vec<f64> = p.send_times().collect();
            let mut stream = ArrivalStream::new(Some(p.clone()), ArrivalProcess::Even);
            let mut rng = rand_pcg::Pcg64Mcg::new(1);
            let got: Vec<f64> = std::iter::from_fn(|| stream.next_time(&mut rng)).collect();
            assert_eq!(got.len(), expected.len(), "{kind}");
            for (a, b) in got.iter().zip(&expected) {
                // Where the rate is near 0 a time is loose; the number of arrivals by it is not.
                assert!(
                    (p.integral(*a) - p.integral(*b)).abs() < 1e-6,
                    "{kind}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn arrivals_poisson_count_is_near_the_integral() {
        let p = Pattern::builtin(PatternKind::Constant, 50.0, Duration::from_secs(1000))
            .expect("valid");
        let mut stream = ArrivalStream::new(Some(p), ArrivalProcess::Poisson);
        let mut rng = rand_pcg::Pcg64Mcg::new(42);
        let n = std::iter::from_fn(|| stream.next_time(&mut rng)).count() as f64;
        // 50,000 expected, standard deviation about 224.
        assert!((n - 50_000.0).abs() < 1_000.0, "{n}");
    }
}
