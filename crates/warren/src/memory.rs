//! Giving the system back the memory the allocator keeps after a burst.
//!
//! glibc's malloc (warren's allocator, see `main.rs`) returns freed memory to the system only
//! from the top of each arena. After a burst, the pages freed below a live allocation stay
//! resident: warren web held 16.2 MB after 50 x `count=1000` against 11.2 MB idle, and
//! `malloc_trim(0)` gave 3.8 MB of that back at once (bench/burst, docs/benchmarks.md).
//! [`release_when_quiet`] trims once when a busy process goes quiet, and now and then under a
//! long load: each trim walks the arenas under their locks, so it is kept rare while requests
//! need them.
//!
//! The only `unsafe` in warren is the one call in [`release_free_pages`];
//! `scripts/check-layers` fails on any other.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Asks the allocator to return its free pages to the system. Returns whether any came back.
/// Elsewhere than glibc it does nothing and returns false.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_pages() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition; glibc serialises it with
    // every other allocator call, arena by arena.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Asks the allocator to return its free pages to the system. Returns whether any came back.
/// Elsewhere than glibc it does nothing and returns false.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_pages() -> bool {
    false
}

/// Runs until `shutdown`. Every `period` it reads `activity` (a count that moves while the
/// process works, e.g. jobs published), and runs `release` on a blocking thread:
/// - once the count moved and then stayed still for a whole period: a burst is given back one
///   to two periods after its end;
/// - and every `busy_every` periods while the count keeps moving: under a steady load glibc's
///   arenas fragment too (warren web grew from 28 to 54 MB in a 10-minute soak, and one trim
///   at its end took it to 15 MB), so a long load is trimmed now and then, not only at its end.
pub async fn release_when_quiet(
    activity: impl Fn() -> u64,
    release: fn() -> bool,
    period: Duration,
    busy_every: u32,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = activity();
    // Periods in a row the count moved; 0 when quiet.
    let mut busy: u32 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = activity();
        let trim = if now != seen {
            seen = now;
            busy += 1;
            busy.is_multiple_of(busy_every.max(1))
        } else {
            std::mem::take(&mut busy) > 0
        };
        if trim {
            let started = std::time::Instant::now();
            match tokio::task::spawn_blocking(release).await {
                Ok(released) => tracing::debug!(
                    released,
                    busy = busy > 0,
                    took_us = started.elapsed().as_micros() as u64,
                    "allocator trimmed"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot trim the allocator"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    static RELEASES: AtomicU64 = AtomicU64::new(0);

    fn count_release() -> bool {
        RELEASES.fetch_add(1, Ordering::SeqCst);
        true
    }

    #[tokio::test(start_paused = true)]
    async fn trims_once_when_activity_stops_and_every_few_periods_while_it_moves() {
        let activity = Arc::new(AtomicU64::new(0));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let activity = activity.clone();
            let shutdown = shutdown.clone();
            async move {
                release_when_quiet(
                    move || activity.load(Ordering::SeqCst),
                    count_release,
                    Duration::from_secs(10),
                    4,
                    shutdown,
                )
                .await;
            }
        });
        let releases = || RELEASES.load(Ordering::SeqCst);
        // Busy for `periods` periods: the count moves between every two looks.
        let busy_for = |periods: u32| {
            let activity = activity.clone();
            async move {
                for _ in 0..periods {
                    activity.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }
        };
        // Quiet from the start: nothing to give back.
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(releases(), 0, "trimmed without any activity");
        // Busy for 30 s: under the 4 periods.
        busy_for(3).await;
        assert_eq!(releases(), 0, "trimmed under a short load");
        // Quiet again: one trim within two periods, then none.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(releases(), 1, "not trimmed once quiet");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(releases(), 1, "trimmed again without new activity");
        // A long load: one trim every 4 busy periods, 80 s busy -> 2.
        busy_for(8).await;
        assert_eq!(releases(), 3, "a long load is trimmed every 4 periods");
        shutdown.cancel();
        task.await.expect("the trim loop ends on shutdown");
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn gives_back_pages_freed_below_a_live_allocation() {
        // 64 MB in 4 KiB blocks, keeping one block in 256: what is freed lies between live
        // blocks, where free() alone returns nothing.
        let mut blocks: Vec<Option<Vec<u8>>> = (0..16_384).map(|_| Some(vec![1u8; 4096])).collect();
        for (i, block) in blocks.iter_mut().enumerate() {
            if i % 256 != 255 {
                *block = None;
            }
        }
        assert!(release_free_pages(), "malloc_trim gave nothing back");
        drop(blocks);
    }
}
