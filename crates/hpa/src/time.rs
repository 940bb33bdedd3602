//! Time as a plain value: the engine never reads a clock.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, counted from an epoch the caller chooses (process start, Unix epoch, zero in a
/// simulation). Only differences between timestamps matter to the engine.
///
/// Stored as signed nanoseconds so that "now minus a window" stays exact even near the epoch,
/// where the controller's cut-offs would otherwise be clamped and change which samples count.
///
/// Serialized as its nanoseconds since the epoch.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp {
    nanos: i128,
}

impl Timestamp {
    /// The epoch itself.
    pub const EPOCH: Timestamp = Timestamp { nanos: 0 };

    /// The timestamp `since_epoch` after the epoch.
    pub fn from_duration(since_epoch: Duration) -> Self {
        Timestamp {
            nanos: since_epoch.as_nanos() as i128,
        }
    }

    /// The timestamp `secs` seconds after the epoch.
    pub fn from_secs(secs: u64) -> Self {
        Self::from_duration(Duration::from_secs(secs))
    }

    /// The timestamp `millis` milliseconds after the epoch.
    pub fn from_millis(millis: u64) -> Self {
        Self::from_duration(Duration::from_millis(millis))
    }

    /// The timestamp `nanos` nanoseconds after the epoch (before it when negative).
    pub fn from_nanos(nanos: i128) -> Self {
        Timestamp { nanos }
    }

    /// Signed nanoseconds since the epoch (negative before it).
    pub fn as_nanos(self) -> i128 {
        self.nanos
    }

    /// How long after `earlier` this timestamp is, or `None` when it is earlier.
    pub fn duration_since(self, earlier: Timestamp) -> Option<Duration> {
        let delta = self.nanos - earlier.nanos;
        if delta < 0 {
            return None;
        }
        let secs = (delta / 1_000_000_000) as u64;
        let nanos = (delta % 1_000_000_000) as u32;
        Some(Duration::new(secs, nanos))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp {
            nanos: self.nanos + rhs.as_nanos() as i128,
        }
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    fn sub(self, rhs: Duration) -> Timestamp {
        Timestamp {
            nanos: self.nanos - rhs.as_nanos() as i128,
        }
    }
}

impl From<Duration> for Timestamp {
    fn from(since_epoch: Duration) -> Self {
        Timestamp::from_duration(since_epoch)
    }
}

/// `seconds` as a [`Duration`], treating negative values as zero (the API forbids them anyway).
pub(crate) fn seconds(seconds: i32) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtracting_a_window_longer_than_the_epoch_distance_goes_negative() {
        let cutoff = Timestamp::from_secs(10) - Duration::from_secs(300);
        assert!(cutoff < Timestamp::EPOCH);
        assert_eq!(cutoff.as_nanos(), -290_000_000_000);
    }

    #[test]
    fn duration_since_is_none_for_a_later_timestamp() {
        let a = Timestamp::from_millis(1_500);
        let b = Timestamp::from_secs(1);
        assert_eq!(a.duration_since(b), Some(Duration::from_millis(500)));
        assert_eq!(b.duration_since(a), None);
    }
}
