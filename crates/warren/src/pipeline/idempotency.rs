//! `Idempotency-Key`: a retry of `/generate` with the same key publishes nothing again.
//!
//! A [`Window`] remembers, per key, the jobs its first request published: those the broker
//! confirmed, those whose confirm is still awaited (after a confirm timeout), and those whose
//! fate is unknown (a channel broke before the confirm). A retry with the same key
//!
//! - waits, up to the confirm bound, for confirms still awaited;
//! - answers the same ids, publishing nothing, once every job of the request is confirmed;
//! - publishes only the jobs of the request that definitely never reached the queue (refused,
//!   blocked, not connected), so that a batch is completed, never doubled;
//! - answers 409 when a job's fate is unknown: publishing it again could run it twice.
//!
//! With `count=N` the key names the whole batch: the retry must ask for the same N (another
//! count is a 422) and gets the same N ids.
//!
//! The window is bounded in time (a key is forgotten after the window) and in memory (at most
//! `max_jobs` remembered job ids; beyond it the least recently used keys are forgotten first). A
//! forgotten key is a new key: its retry publishes again. The window lives in this process
//! only; see the README for what that means with several web replicas.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use lru::LruCache;
use tokio::sync::watch;

use crate::pipeline::job::JobId;
use crate::pipeline::publisher::{PublishError, Publisher, Settled, Unaccepted};

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// A client's `Idempotency-Key`: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why an `Idempotency-Key` header is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty.
    #[error("Idempotency-Key is empty")]
    Empty,
    /// Longer than [`MAX_KEY_LEN`].
    #[error("Idempotency-Key is {0} bytes long; at most {MAX_KEY_LEN} are accepted")]
    TooLong(usize),
    /// A character outside visible ASCII (`!` to `~`): space, control or non-ASCII.
    #[error("Idempotency-Key may hold only visible ASCII characters (! to ~)")]
    NotVisible,
    /// Given more than once.
    #[error("Idempotency-Key given more than once")]
    Repeated,
}

impl IdempotencyKey {
    /// Checks one header value.
    pub fn parse(value: &HeaderValue) -> Result<Self, KeyError> {
        let bytes = value.as_bytes();
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(bytes.len()));
        }
        if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(KeyError::NotVisible);
        }
        Ok(Self(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is known of one key's jobs.
#[derive(Clone, Debug, Default)]
struct Jobs {
    /// Confirmed by the broker: they run.
    confirmed: Vec<JobId>,
    /// Confirm still awaited after its bound.
    awaited: usize,
    /// Never answered: they may run.
    unknown: usize,
}

/// One key's record.
struct Entry {
    /// The request's job count.
    count: u16,
    /// When the key was first seen; the window counts from here.
    since: Instant,
    /// The jobs, watched by retries waiting for late confirms.
    jobs: watch::Sender<Jobs>,
    /// Held by the request publishing for this key, so two retries never both publish.
    publishing: tokio::sync::Mutex<()>,
}

/// Remembered keys and the memory they take.
struct Keys {
    entries: LruCache<IdempotencyKey, Arc<Entry>>,
    /// Job ids remembered over all entries (each entry counts its request's `count`).
    jobs: usize,
}

/// The keys seen within the window, bounded in time and memory; shared by all requests.
pub struct Window {
    keys: Mutex<Keys>,
    ttl: Duration,
    max_jobs: usize,
}

/// How a keyed request ends.
#[derive(Debug)]
pub enum KeyedOutcome {
    /// Every job of the request is confirmed; `replayed` when this request published none.
    Confirmed {
        /// The request's job ids, in the order they were confirmed.
        ids: Vec<JobId>,
        /// Nothing was published by this request: it repeated an earlier one.
        replayed: bool,
    },
    /// Not all confirmed; the client may retry with the same key.
    Unavailable {
        /// Why.
        error: PublishError,
        /// The jobs confirmed so far: they run.
        confirmed: Vec<JobId>,
        /// Some jobs may still run (a confirm is awaited or never came).
        may_run: bool,
        /// The jobs whose confirm is still awaited.
        pending: Vec<JobId>,
    },
    /// An earlier request with this key is still publishing, or awaits confirms beyond the bound.
    InProgress {
        /// The jobs confirmed so far.
        confirmed: Vec<JobId>,
    },
    /// Some job's fate is unknown: the key cannot be completed without risking a duplicate.
    Unknown {
        /// The jobs confirmed.
        confirmed: Vec<JobId>,
        /// How many may or may not run.
        unknown: usize,
    },
    /// The key was first used with another count.
    CountMismatch {
        /// The first request's count.
        first: u16,
    },
}

impl Window {
    /// A window of `ttl`, remembering at most `max_jobs` job ids.
    pub fn new(ttl: Duration, max_jobs: usize) -> Self {
        Self {
            keys: Mutex::new(Keys {
                entries: LruCache::unbounded(),
                jobs: 0,
            }),
            ttl,
            max_jobs: max_jobs.max(1),
        }
    }

    /// How many keys are remembered now.
    pub fn len(&self) -> usize {
        self.keys.lock().map_or(0, |k| k.entries.len())
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key's entry, new if unknown or expired; evicts expired and, beyond the memory
    /// bound, least recently used keys.
    fn entry(&self, key: &IdempotencyKey, count: u16) -> Arc<Entry> {
        let now = Instant::now();
        let Ok(mut keys) = self.keys.lock() else {
            // A panic elsewhere poisoned the lock: serve without memory rather than not at all.
            return Arc::new(Entry::new(count, now));
        };
        if let Some(entry) = keys.entries.get(key) {
            if now.duration_since(entry.since) < self.ttl {
                return entry.clone();
            }
        }
        if let Some(old) = keys.entries.pop(key) {
            keys.jobs -= usize::from(old.count);
        }
        let entry = Arc::new(Entry::new(count, now));
        keys.jobs += usize::from(count);
        keys.entries.put(key.clone(), entry.clone());
        while keys.jobs > self.max_jobs || keys.peek_lru_expired(now, self.ttl) {
            match keys.entries.pop_lru() {
                Some((k, _)) if &k == key => {
                    // The new entry alone is over the bound: keep it; it is the one in use.
                    keys.entries.put(k, entry.clone());
                    break;
                }
                Some((_, old)) => keys.jobs -= usize::from(old.count),
                None => break,
            }
        }
        entry
    }

    /// Publishes `count` jobs for `key`, or repeats what its earlier request got.
    /// `bound` is how long to wait for an earlier request's confirms.
    pub async fn publish(
        &self,
        publisher: &Publisher,
        key: &IdempotencyKey,
        count: u16,
        bound: Duration,
    ) -> KeyedOutcome {
        let entry = self.entry(key, count);
        if entry.count != count {
            return KeyedOutcome::CountMismatch { first: entry.count };
        }
        let confirmed = || entry.jobs.borrow().confirmed.clone();
        let Ok(_publishing) = tokio::time::timeout(bound, entry.publishing.lock()).await else {
            return KeyedOutcome::InProgress {
                confirmed: confirmed(),
            };
        };
        let mut seen = entry.jobs.subscribe();
        if tokio::time::timeout(bound, seen.wait_for(|j| j.awaited == 0))
            .await
            .is_err()
        {
            return KeyedOutcome::InProgress {
                confirmed: confirmed(),
            };
        }
        let jobs = entry.jobs.borrow().clone();
        if jobs.unknown > 0 {
            return KeyedOutcome::Unknown {
                confirmed: jobs.confirmed,
                unknown: jobs.unknown,
            };
        }
        let missing = usize::from(count).saturating_sub(jobs.confirmed.len());
        if missing == 0 {
            return KeyedOutcome::Confirmed {
                ids: jobs.confirmed,
                replayed: true,
            };
        }
        let (ids, failure) = if missing == 1 {
            match publisher.publish().await {
                Ok(id) => (vec![id], None),
                Err(Unaccepted { error, late }) => {
                    let may_run = usize::from(error.may_run());
                    (
                        Vec::new(),
                        Some((error, late.into_iter().collect::<Vec<_>>(), may_run)),
                    )
                }
            }
        } else {
            match publisher.publish_batch(missing).await {
                Ok(ids) => (ids, None),
                Err(batch) => (
                    batch.confirmed,
                    Some((batch.error, batch.late, batch.may_run)),
                ),
            }
        };
        let Some((error, late, may_run)) = failure else {
            entry.jobs.send_modify(|j| j.confirmed.extend(ids));
            return KeyedOutcome::Confirmed {
                ids: confirmed(),
                replayed: false,
            };
        };
        let awaited = late.len();
        let pending: Vec<JobId> = late.iter().map(|l| l.id.clone()).collect();
        entry.jobs.send_modify(|j| {
            j.confirmed.extend(ids);
            j.awaited += awaited;
            j.unknown += may_run.saturating_sub(awaited);
        });
        for confirm in late {
            let entry = entry.clone();
            tokio::spawn(async move {
                let id = confirm.id.clone();
                let fate = confirm.settled().await;
                entry.jobs.send_modify(|j| {
                    j.awaited -= 1;
                    match fate {
                        Settled::Confirmed => j.confirmed.push(id),
                        Settled::NotQueued => {}
                        Settled::Unknown => j.unknown += 1,
                    }
                });
            });
        }
        KeyedOutcome::Unavailable {
            error,
            confirmed: confirmed(),
            may_run: may_run > 0,
            pending,
        }
    }
}

impl Entry {
    fn new(count: u16, since: Instant) -> Self {
        Self {
            count,
            since,
            jobs: watch::Sender::new(Jobs::default()),
            publishing: tokio::sync::Mutex::new(()),
        }
    }
}

impl Keys {
    fn peek_lru_expired(&self, now: Instant, ttl: Duration) -> bool {
        self.entries
            .peek_lru()
            .is_some_and(|(_, e)| now.duration_since(e.since) >= ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> IdempotencyKey {
        IdempotencyKey::parse(&HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("x")))
            .unwrap_or(IdempotencyKey("x".into()))
    }

    #[test]
    fn keys_of_visible_ascii_up_to_255_bytes_are_accepted() {
        for good in ["a", "order-42", "~!#$%&'*+-.^_`|", &"k".repeat(MAX_KEY_LEN)] {
            let parsed = IdempotencyKey::parse(
                &HeaderValue::from_str(good).unwrap_or(HeaderValue::from_static("")),
            );
            assert_eq!(parsed.map(|k| k.0), Ok(good.to_owned()));
        }
    }

    #[test]
    fn empty_long_and_invisible_keys_are_refused() {
        let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("-"));
        assert_eq!(IdempotencyKey::parse(&value("")), Err(KeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse(&value(&"k".repeat(MAX_KEY_LEN + 1))),
            Err(KeyError::TooLong(MAX_KEY_LEN + 1))
        );
        for bad in ["a b", "tab\there"] {
            assert_eq!(
                IdempotencyKey::parse(&value(bad)),
                Err(KeyError::NotVisible),
                "{bad:?}"
            );
        }
        let non_ascii =
            HeaderValue::from_bytes("clé".as_bytes()).unwrap_or(HeaderValue::from_static(" "));
        assert_eq!(IdempotencyKey::parse(&non_ascii), Err(KeyError::NotVisible));
    }

    #[test]
    fn the_same_key_within_the_window_is_the_same_entry() {
        let window = Window::new(Duration::from_secs(60), 100);
        let first = window.entry(&key("a"), 1);
        assert!(Arc::ptr_eq(&first, &window.entry(&key("a"), 1)));
        assert!(!Arc::ptr_eq(&first, &window.entry(&key("b"), 1)));
    }

    #[test]
    fn a_key_is_forgotten_after_the_window() {
        let window = Window::new(Duration::ZERO, 100);
        let first = window.entry(&key("a"), 1);
        assert!(!Arc::ptr_eq(&first, &window.entry(&key("a"), 1)));
        assert_eq!(window.len(), 1);
    }

    #[test]
    fn beyond_the_memory_bound_the_least_recently_used_keys_are_forgotten() {
        let window = Window::new(Duration::from_secs(60), 10);
        let a = window.entry(&key("a"), 4);
        window.entry(&key("b"), 4);
        // Using "a" again makes "b" the least recently used.
        window.entry(&key("a"), 4);
        window.entry(&key("c"), 4);
        assert_eq!(window.len(), 2);
        assert!(Arc::ptr_eq(&a, &window.entry(&key("a"), 4)));
        let keys = window.keys.lock().map(|k| k.jobs).unwrap_or(0);
        assert_eq!(keys, 8);
        assert!(!window
            .keys
            .lock()
            .is_ok_and(|k| k.entries.contains(&key("b"))));
    }

    #[test]
    fn a_single_request_larger_than_the_bound_is_still_remembered() {
        let window = Window::new(Duration::from_secs(60), 10);
        window.entry(&key("a"), 4);
        let big = window.entry(&key("big"), 1000);
        assert!(Arc::ptr_eq(&big, &window.entry(&key("big"), 1000)));
        assert_eq!(window.len(), 1);
    }
}
