//! The open-loop request loop of `warren load`: request `i` leaves when the pattern's integral
//! reaches `i`, answered or not; outcomes are collected off the async workers into the
//! histogram, the counters and the `--csv` file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::{
    wall_offset, LatencyHistogram, LoadConfig, LoadError, LoadStats, LoadSummary, Pattern,
};
use crate::pipeline::job::MAX_ID_LEN;

/// How much of a response body is kept to find the job id; the rest is read and discarded so
/// the connection can be reused.
const MAX_KEPT_BODY: usize = 4096;
/// After Ctrl-C, the longest wait for answers to requests already sent.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How often the current target rate in [`LoadStats`] is refreshed.
const TARGET_REFRESH: Duration = Duration::from_millis(100);

/// What became of one sent request.
struct Outcome {
    /// Scheduled send time, from the start of the run.
    sent_at: Duration,
    /// From the scheduled send time to the end of the answer (or the failure).
    latency: Duration,
    answer: Result<Answer, Failure>,
}

struct Answer {
    status: u16,
    job_id: Option<String>,
}

enum Failure {
    Timeout,
    /// No answer, and why (the error with its causes).
    Error(String),
    Abandoned,
}

/// Runs the load of `config` until its pattern ends or `shutdown` is cancelled, counting in
/// `stats` as it goes, and sends each job id answered 200 to `on_accepted`. Prints nothing.
///
/// After the last request is due it waits for the answers still outstanding (each ends by
/// `config.timeout`); after a cancel it waits at most 2 s and then abandons them.
pub async fn run_with(
    config: LoadConfig,
    shutdown: CancellationToken,
    stats: Arc<LoadStats>,
    on_accepted: Option<mpsc::UnboundedSender<String>>,
) -> Result<LoadSummary, LoadError> {
    config.check()?;
    // No proxy: the load is for warren web itself, and a proxy would measure something else.
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(LoadError::Client)?;
    let csv = match &config.csv {
        Some(path) => Some(CsvSink::create(path).map_err(|source| LoadError::Csv {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
    // Histogram and file writes happen off the async workers, so a slow disk cannot delay sends.
    let collector = tokio::task::spawn_blocking(move || collect(outcomes_rx, csv, on_accepted));

    let start = Instant::now();
    let sending_done = CancellationToken::new();
    let refresher = tokio::spawn(refresh_target_rate(
        config.pattern.clone(),
        config.speed,
        start,
        stats.clone(),
        sending_done.clone(),
    ));
    let permits = Arc::new(Semaphore::new(config.max_in_flight));
    let requests = TaskTracker::new();
    let abandon = CancellationToken::new();
    let target = Arc::new(config.target.clone());

    let mut cancelled = false;
    for pattern_t in config.pattern.send_times() {
        let due = start + wall_offset(pattern_t, config.speed);
        if due > Instant::now() {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => { cancelled = true; break; }
                () = tokio::time::sleep_until(due) => {}
            }
        } else if shutdown.is_cancelled() {
            cancelled = true;
            break;
        } else {
            // Catching up on requests already due: let the runtime run the ones just spawned.
            tokio::task::consume_budget().await;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            LoadStats::add(&stats.dropped);
            continue;
        };
        LoadStats::add(&stats.sent);
        LoadStats::add(&stats.in_flight);
        let (client, target, stats, outcomes, abandon) = (
            client.clone(),
            target.clone(),
            stats.clone(),
            outcomes.clone(),
            abandon.clone(),
        );
        let timeout = config.timeout;
        requests.spawn(async move {
            let answer = tokio::select! {
                answer = request(&client, &target, timeout) => answer,
                () = abandon.cancelled() => Err(Failure::Abandoned),
            };
            let latency = due.elapsed();
            drop(permit);
            match &answer {
                Ok(a) if a.status == 200 => LoadStats::add(&stats.ok),
                Ok(a) if a.status == 503 => LoadStats::add(&stats.unavailable),
                Ok(_) => LoadStats::add(&stats.other),
                Err(Failure::Timeout) => {
                    LoadStats::add(&stats.errors);
                    LoadStats::add(&stats.timeouts);
                }
                Err(Failure::Error(_)) => LoadStats::add(&stats.errors),
                Err(Failure::Abandoned) => {}
            }
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            // The collector lives until every sender is gone, so this cannot fail.
            let _ = outcomes.send(Outcome {
                sent_at: due - start,
                latency,
                answer,
            });
        });
    }
    if !cancelled {
        // The last request may be due before the end (a low rate at the end of the pattern);
        // the run still lasts the whole pattern, so the achieved rate is comparable.
        tokio::select! {
            () = shutdown.cancelled() => cancelled = true,
            () = tokio::time::sleep_until(start + config.wall_duration()) => {}
        }
    }
    let elapsed = start.elapsed();
    sending_done.cancel();
    let _ = refresher.await;
    stats.set_target_rate(0.0);

    requests.close();
    // Without a cancel every request ends by its own timeout; the margin covers scheduling.
    let grace = if cancelled {
        CANCEL_GRACE.min(config.timeout)
    } else {
        config.timeout + Duration::from_secs(1)
    };
    if tokio::time::timeout(grace, requests.wait()).await.is_err() {
        abandon.cancel();
        requests.wait().await;
    }
    drop(outcomes);
    let collected = collector.await.map_err(LoadError::Collector)?;

    let s = stats.snapshot();
    let abandoned = s
        .sent
        .saturating_sub(s.ok + s.unavailable + s.other + s.errors);
    Ok(LoadSummary {
        elapsed,
        scheduled: s.sent + s.dropped,
        sent: s.sent,
        ok: s.ok,
        unavailable: s.unavailable,
        other: collected.other,
        errors: s.errors,
        timeouts: s.timeouts,
        dropped: s.dropped,
        abandoned,
        achieved_rate: if elapsed.is_zero() {
            0.0
        } else {
            s.sent as f64 / elapsed.as_secs_f64()
        },
        latency: collected.latency.summary(),
        first_error: collected.first_error,
        csv_error: collected.csv_error,
    })
}

async fn refresh_target_rate(
    pattern: Pattern,
    speed: f64,
    start: Instant,
    stats: Arc<LoadStats>,
    done: CancellationToken,
) {
    let mut ticks = tokio::time::interval(TARGET_REFRESH);
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let pattern_t = start.elapsed().as_secs_f64() * speed;
        stats.set_target_rate(pattern.rate_at(pattern_t) * speed);
    }
}

/// One `GET /generate`: the status and the job id of a `Welcome! <id>` answer.
async fn request(
    client: &reqwest::Client,
    target: &Url,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let failure = |e: reqwest::Error| {
        if e.is_timeout() {
            return Failure::Timeout;
        }
        // reqwest's own message says only which request failed; the causes say why.
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            why.push_str(": ");
            why.push_str(&cause.to_string());
            source = cause.source();
        }
        Failure::Error(why)
    };
    let mut response = client
        .get(target.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(failure)?;
    let status = response.status().as_u16();
    // The whole body is read so the connection goes back to the pool, but only its start is
    // kept: warren's answers are short, and anything else must not grow memory.
    let mut kept = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failure)? {
        let room = MAX_KEPT_BODY.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    let job_id = if status == 200 {
        parse_welcome(&kept)
    } else {
        None
    };
    Ok(Answer { status, job_id })
}

/// The job id of a `Welcome! <id>` body: 1 to 128 ASCII letters and digits.
pub fn parse_welcome(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let id = text.trim_end().strip_prefix("Welcome! ")?;
    let valid =
        !id.is_empty() && id.len() <= MAX_ID_LEN && id.chars().all(|c| c.is_ascii_alphanumeric());
    valid.then(|| id.to_owned())
}

struct Collected {
    latency: LatencyHistogram,
    other: BTreeMap<u16, u64>,
    first_error: Option<String>,
    csv_error: Option<String>,
}

fn collect(
    mut outcomes: mpsc::UnboundedReceiver<Outcome>,
    mut csv: Option<CsvSink>,
    on_accepted: Option<mpsc::UnboundedSender<String>>,
) -> Collected {
    let mut collected = Collected {
        latency: LatencyHistogram::new(),
        other: BTreeMap::new(),
        first_error: None,
        csv_error: None,
    };
    while let Some(outcome) = outcomes.blocking_recv() {
        if let Ok(answer) = &outcome.answer {
            collected.latency.record(outcome.latency);
            if answer.status != 200 && answer.status != 503 {
                *collected.other.entry(answer.status).or_default() += 1;
            }
            if let (Some(tx), Some(id)) = (&on_accepted, &answer.job_id) {
                // A receiver that went away no longer wants ids; the load goes on.
                let _ = tx.send(id.clone());
            }
        }
        if let (Err(Failure::Error(why)), None) = (&outcome.answer, &collected.first_error) {
            collected.first_error = Some(why.clone());
        }
        if let Some(sink) = &mut csv {
            if let Err(e) = sink.write(&outcome) {
                collected.csv_error = Some(e.to_string());
                csv = None;
            }
        }
    }
    if let Some(sink) = csv {
        if let Err(e) = sink.finish() {
            collected.csv_error = Some(e.to_string());
        }
    }
    collected
}

/// The `--csv` file: `sent_at_ms,latency_ms,status,job_id`, one line per request.
struct CsvSink(BufWriter<File>);

impl CsvSink {
    fn create(path: &std::path::Path) -> std::io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "sent_at_ms,latency_ms,status,job_id")?;
        Ok(Self(out))
    }

    fn write(&mut self, outcome: &Outcome) -> std::io::Result<()> {
        let status = match &outcome.answer {
            Ok(a) => a.status.to_string(),
            Err(Failure::Timeout) => "timeout".into(),
            Err(Failure::Error(_)) => "error".into(),
            Err(Failure::Abandoned) => "abandoned".into(),
        };
        let job_id = match &outcome.answer {
            Ok(Answer {
                job_id: Some(id), ..
            }) => id.as_str(),
            _ => "",
        };
        writeln!(
            self.0,
            "{},{:.3},{status},{job_id}",
            outcome.sent_at.as_millis(),
            outcome.latency.as_secs_f64() * 1000.0
        )
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_reads_ids_from_welcome_bodies_only() {
        assert_eq!(
            parse_welcome(b"Welcome! 01J9ZQ3\n").as_deref(),
            Some("01J9ZQ3")
        );
        assert_eq!(
            parse_welcome(b"Welcome! 01J9ZQ3").as_deref(),
            Some("01J9ZQ3")
        );
        for bad in [
            &b"Welcome! "[..],
            b"welcome! abc",
            b"Welcome! a b",
            b"{\"id\":\"x\"}",
            b"\xff",
        ] {
            assert_eq!(parse_welcome(bad), None, "{bad:?}");
        }
    }
}
