//! The latency histogram behind `warren load`'s percentiles.

use std::time::Duration;

use super::LatencySummary;

/// A log-linear histogram of latencies in microseconds: exact below 256 µs, then 128 buckets
/// per power of two, so any value is known to within 1/128 (under 0.8 %). Fixed memory
/// (about 60 KB) however long the run.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

/// Values below this are counted exactly, one bucket each.
const EXACT_BELOW: u64 = 256;
/// Buckets per power of two above [`EXACT_BELOW`].
const PER_OCTAVE: u64 = 128;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        // Highest bucket: a value with bit 63 set, shifted by 56.
        let buckets = EXACT_BELOW + 56 * PER_OCTAVE;
        Self {
            counts: vec![0; usize::try_from(buckets).unwrap_or(usize::MAX)],
            total: 0,
            max: 0,
        }
    }

    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let index = bucket_of(micros);
        if let Some(count) = usize::try_from(index)
            .ok()
            .and_then(|i| self.counts.get_mut(i))
        {
            *count += 1;
        }
        self.total += 1;
        self.max = self.max.max(micros);
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency at quantile `q` (0 to 1): the highest value of the bucket holding it, never
    /// above the exact maximum. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        // The rank of the value wanted, from 1; ceil so p50 of 2 values is the first.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (_, high) = bucket_bounds(index as u64);
                return Some(Duration::from_micros(high.min(self.max)));
            }
        }
        Some(Duration::from_micros(self.max))
    }

    /// p50, p95, p99 and max; `None` when empty.
    pub fn summary(&self) -> Option<LatencySummary> {
        Some(LatencySummary {
            count: self.total,
            p50: self.quantile(0.50)?,
            p95: self.quantile(0.95)?,
            p99: self.quantile(0.99)?,
            max: Duration::from_micros(self.max),
        })
    }
}

fn bucket_of(value: u64) -> u64 {
    if value < EXACT_BELOW {
        return value;
    }
    let msb = 63 - u64::from(value.leading_zeros());
    // Keep the top 8 bits: `top` is in 128..256.
    let shift = msb - 7;
    let top = value >> shift;
    EXACT_BELOW + (shift - 1) * PER_OCTAVE + (top - PER_OCTAVE)
}

/// The lowest and highest value of a bucket.
fn bucket_bounds(index: u64) -> (u64, u64) {
    if index < EXACT_BELOW {
        return (index, index);
    }
    let k = index - EXACT_BELOW;
    let shift = k / PER_OCTAVE + 1;
    let top = k % PER_OCTAVE + PER_OCTAVE;
    let low = top << shift;
    (low, low + ((1u64 << shift) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn load_histogram_percentiles_are_within_one_percent() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.summary(), None);
        for micros in 1..=10_000u64 {
            h.record(Duration::from_micros(micros));
        }
        let s = h.summary().expect("not empty");
        assert_eq!(s.count, 10_000);
        assert_eq!(s.max, Duration::from_micros(10_000));
        for (got, want) in [(s.p50, 5000.0), (s.p95, 9500.0), (s.p99, 9900.0)] {
            let got = got.as_micros() as f64;
            assert!((got - want).abs() / want < 0.01, "{got} vs {want}");
        }
        let mut one = LatencyHistogram::new();
        one.record(Duration::from_millis(1234));
        assert_eq!(one.quantile(0.5), Some(Duration::from_millis(1234)));
    }

    proptest! {
        #[test]
        fn load_histogram_buckets_hold_their_values(value in any::<u64>()) {
            let index = bucket_of(value);
            prop_assert!(index < EXACT_BELOW + 56 * PER_OCTAVE);
            let (low, high) = bucket_bounds(index);
            prop_assert!(low <= value && value <= high, "{value} in [{low}, {high}]");
            prop_assert!((high - low) as f64 <= low as f64 / 128.0);
        }
    }
}
