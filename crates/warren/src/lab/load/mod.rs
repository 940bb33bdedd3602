//! `warren load`: open-loop load on `GET /generate`.
//!
//! A [`Pattern`] gives the target rate over time. Request `i` (counting from 1) leaves when the
//! pattern's integral reaches `i`, whether or not earlier requests were answered: the schedule
//! comes from the pattern alone, never from the responses. A request that would exceed the cap
//! on requests in flight is counted as dropped instead of waiting, so a slow server cannot bend
//! the schedule (no coordinated omission), and latency is measured from the scheduled send time.
//!
//! [`run`] is the command line's entry: a progress line every second on stderr, a summary on
//! stdout. [`run_with`] is the same load for programs (the demo): live counters in a shared
//! [`LoadStats`], the ids answered 200 sent on a channel, and a [`LoadSummary`] at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::config::{parse_duration, ConfigError};
use crate::pipeline::job::MAX_ID_LEN;

pub use warren_pattern::{
    Pattern, PatternError, PatternKind, SendTimes, MAX_PATTERN_SECS, MAX_RATE,
};

/// The highest `--speed`.
pub const MAX_SPEED: f64 = 10_000.0;
/// Rate used when neither `--rate` nor `--pattern-file` is given.
const DEFAULT_RATE: f64 = 10.0;
/// Length used when neither `--duration` nor `--pattern-file` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// How much of a response body is kept to find the job id; the rest is read and discarded so
/// the connection can be reused.
const MAX_KEPT_BODY: usize = 4096;
/// After Ctrl-C, the longest wait for answers to requests already sent.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How often the current target rate in [`LoadStats`] is refreshed.
const TARGET_REFRESH: Duration = Duration::from_millis(100);

/// Options of `warren load`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Open loop: request i leaves when the integral of the rate pattern reaches i, answered or not; a
request that would exceed --max-in-flight is counted as dropped, never delayed. Latency runs from
the scheduled send time until the whole response is read; the summary's percentiles come from a
log-linear histogram (under 1% error) of every answered request. Ctrl-C stops sending, waits up
to 2 s for answers, and prints the summary.

--pattern-file: lines of time_secs,rate (a header line, blank lines and # comments are allowed).
The first point is at time 0; the rate is linear between points, and a time given twice makes a
step. The run lasts until the last point, or --duration (the last rate holds to its end).

--csv: one line per request, sent_at_ms,latency_ms,status,job_id. sent_at_ms counts from the start
of the run; status is the HTTP status, or timeout, error, or abandoned (still unanswered when
the run stopped); job_id is the id of a `Welcome! <id>` answer, else empty.")]
pub struct LoadArgs {
    /// Base URL of warren web; requests go to <URL>/generate. Plain http:// only.
    #[arg(long, env = "LOAD_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Target rate of the built-in patterns, in requests per second [default: 10].
    #[arg(long, env = "LOAD_RATE", conflicts_with = "pattern_file")]
    pub rate: Option<f64>,
    /// Length of the run, e.g. 90s, 2m, 1m30s, 500ms (a bare number is seconds)
    /// [default: 60s, or the pattern file's last time].
    #[arg(long, env = "LOAD_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Shape of the rate over the run [default: constant].
    #[arg(
        long,
        env = "LOAD_PATTERN",
        value_enum,
        conflicts_with = "pattern_file"
    )]
    pub pattern: Option<PatternKind>,
    /// Take the rate over time from a CSV file of time_secs,rate points instead (see below).
    #[arg(long, env = "LOAD_PATTERN_FILE")]
    pub pattern_file: Option<PathBuf>,
    /// Most requests in flight at once; a request due beyond it is dropped, not delayed.
    #[arg(long, env = "LOAD_MAX_IN_FLIGHT", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_in_flight: u64,
    /// Longest wait for one whole response; then the request counts as an error (timeout).
    #[arg(long, env = "LOAD_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Play the pattern K times faster: the same requests in 1/K of the time, so K times the
    /// rate on the wall clock.
    #[arg(long, env = "LOAD_SPEED", default_value_t = 1.0, value_name = "K")]
    pub speed: f64,
    /// Also write one line per request to this CSV file.
    #[arg(long, env = "LOAD_CSV")]
    pub csv: Option<PathBuf>,
}

/// Settings of `warren load`, validated.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The full URL requested, `<base>/generate`.
    pub target: Url,
    /// The target rate over the pattern's time.
    pub pattern: Pattern,
    /// How many times faster than the pattern the load plays: pattern time `t` is sent at wall
    /// time `t / speed`, so the same requests arrive in `1 / speed` of the time. Above 0.
    pub speed: f64,
    /// Most requests in flight at once; a request due beyond it is counted as dropped.
    pub max_in_flight: usize,
    /// Longest wait for one whole response.
    pub timeout: Duration,
    /// Where to write one line per request, if anywhere.
    pub csv: Option<PathBuf>,
}

impl LoadConfig {
    /// A config with the command line's defaults: speed 1, 1024 in flight, 5 s timeout, no CSV.
    pub fn new(target: Url, pattern: Pattern) -> Self {
        Self {
            target,
            pattern,
            speed: 1.0,
            max_in_flight: 1024,
            timeout: Duration::from_secs(5),
            csv: None,
        }
    }

    /// How long the load runs on the wall clock: the pattern's duration divided by the speed.
    pub fn wall_duration(&self) -> Duration {
        wall_offset(self.pattern.duration(), self.speed)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= MAX_SPEED) {
            return Err(ConfigError::new(format!(
                "LOAD_SPEED must be above 0 and at most {MAX_SPEED}, not {}",
                self.speed
            )));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::new("LOAD_MAX_IN_FLIGHT must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("LOAD_TIMEOUT must be longer than 0"));
        }
        Ok(())
    }
}

impl LoadArgs {
    /// The validated config. Reads the pattern file, if any; makes no network call.
    pub fn to_config(&self) -> Result<LoadConfig, ConfigError> {
        let target = generate_url(&self.url)?;
        let pattern = match &self.pattern_file {
            Some(path) => {
                // clap already refuses these together on the command line; this also covers
                // values that came from the environment.
                if self.rate.is_some() || self.pattern.is_some() {
                    return Err(ConfigError::new(
                        "LOAD_PATTERN_FILE gives the rates; do not also set LOAD_RATE or LOAD_PATTERN",
                    ));
                }
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(format!("cannot read pattern file {}: {e}", path.display()))
                })?;
                Pattern::parse_csv(&text, self.duration).map_err(|e| {
                    ConfigError::new(format!("pattern file {}: {e}", path.display()))
                })?
            }
            None => Pattern::builtin(
                self.pattern.unwrap_or(PatternKind::Constant),
                self.rate.unwrap_or(DEFAULT_RATE),
                self.duration.unwrap_or(DEFAULT_DURATION),
            )
            .map_err(|e| ConfigError::new(e.to_string()))?,
        };
        let config = LoadConfig {
            target,
            pattern,
            speed: self.speed,
            max_in_flight: usize::try_from(self.max_in_flight).unwrap_or(1024),
            timeout: self.timeout,
            csv: self.csv.clone(),
        };
        config.check()?;
        Ok(config)
    }
}

/// `<base>/generate` for a base URL of warren web (`http://host:port`, optionally with a path).
pub fn generate_url(base: &str) -> Result<Url, ConfigError> {
    let mut url = Url::parse(base)
        .map_err(|e| ConfigError::new(format!("LOAD_URL {base:?} is not a valid URL ({e})")))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(ConfigError::new(
                "LOAD_URL uses https://, but this build of warren speaks plain http:// only",
            ))
        }
        other => {
            return Err(ConfigError::new(format!(
                "LOAD_URL must start with http://, not {other}://"
            )))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new("LOAD_URL has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            "LOAD_URL is the base URL of warren web and must not carry a query string or fragment",
        ));
    }
    url.path_segments_mut()
        .map_err(|()| ConfigError::new("LOAD_URL cannot take a path"))?
        .pop_if_empty()
        .push("generate");
    Ok(url)
}

/// Pattern seconds to a wall-clock offset. Inputs are validated (finite, at most 30 days,
/// speed above 0), so the fallback is never taken.
fn wall_offset(pattern_secs: f64, speed: f64) -> Duration {
    Duration::try_from_secs_f64(pattern_secs / speed).unwrap_or(Duration::ZERO)
}

/// Live counters of a run, shared through an `Arc` and read with [`LoadStats::snapshot`].
#[derive(Debug, Default)]
pub struct LoadStats {
    sent: AtomicU64,
    ok: AtomicU64,
    unavailable: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    dropped: AtomicU64,
    in_flight: AtomicU64,
    /// The wall-clock target rate, as `f64` bits.
    target_rate: AtomicU64,
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

    fn set_target_rate(&self, rate: f64) {
        self.target_rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A setting of [`LoadConfig`] is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The CSV file could not be created.
    #[error("cannot create the CSV file {path}")]
    Csv {
        /// The file asked for.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The task that collects responses stopped before the end (a bug).
    #[error("the response collector stopped unexpectedly")]
    Collector(#[source] tokio::task::JoinError),
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

/// Runs `warren load` until its pattern ends or `shutdown` is cancelled: a progress line every
/// second on stderr, the summary on stdout.
pub async fn run(config: LoadConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(
        target = %config.target,
        pattern = %config.pattern,
        speed = config.speed,
        max_in_flight = config.max_in_flight,
        "warren load starting"
    );
    let stats = Arc::new(LoadStats::default());
    let finished = CancellationToken::new();
    let progress = tokio::spawn(print_progress(stats.clone(), finished.clone()));
    let summary = run_with(config, shutdown, stats, None).await;
    finished.cancel();
    let _ = progress.await;
    let summary = summary?;
    print!("{summary}");
    if let Some(e) = &summary.csv_error {
        anyhow::bail!("writing the CSV file failed: {e}");
    }
    Ok(())
}

async fn print_progress(stats: Arc<LoadStats>, finished: CancellationToken) {
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

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn builtin(kind: PatternKind, rate: f64, duration: f64) -> Pattern {
        Pattern::builtin(kind, rate, secs(duration)).expect("valid pattern")
    }

    #[test]
    fn load_durations_parse_with_units() {
        let ok = [
            ("60s", 60.0),
            ("2m", 120.0),
            ("1m30s", 90.0),
            ("500ms", 0.5),
            ("1.5s", 1.5),
            ("1h", 3600.0),
            ("45", 45.0),
            (" 10s ", 10.0),
            ("0s", 0.0),
        ];
        for (raw, want) in ok {
            assert_eq!(parse_duration(raw), Ok(secs(want)), "{raw}");
        }
        for bad in [
            "",
            "s",
            "5x",
            "-5s",
            "1m30",
            "five",
            "1e400",
            "nan",
            "31d",
            "99999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn load_target_is_the_generate_path_of_an_http_base() {
        let url = |raw| generate_url(raw).map(|u| u.to_string());
        assert_eq!(
            url("http://127.0.0.1:3000").ok().as_deref(),
            Some("http://127.0.0.1:3000/generate")
        );
        assert_eq!(
            url("http://127.0.0.1:3000/").ok().as_deref(),
            Some("http://127.0.0.1:3000/generate")
        );
        assert_eq!(
            url("http://h:1/api/").ok().as_deref(),
            Some("http://h:1/api/generate")
        );
        for bad in [
            "https://h",
            "ftp://h",
            "http://h/?x=1",
            "not a url",
            "http://h/#f",
        ] {
            assert!(generate_url(bad).is_err(), "{bad}");
        }
    }

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

    #[test]
    fn load_config_refuses_bad_speeds() {
        let pattern = builtin(PatternKind::Constant, 1.0, 1.0);
        let base = generate_url("http://127.0.0.1:1").expect("valid url");
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            let mut config = LoadConfig::new(base.clone(), pattern.clone());
            config.speed = speed;
            assert!(config.check().is_err(), "{speed}");
        }
        let mut fast = LoadConfig::new(base, pattern);
        fast.speed = 4.0;
        assert_eq!(fast.wall_duration(), Duration::from_millis(250));
    }
}
