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
//!
//! This module holds the command's settings and its entry; the rest, one concern each:
//! - `open_loop`: the request loop: the schedule, the requests, collecting their outcomes, the
//!   `--csv` file.
//! - `summary`: the live counters, the progress line and the summary.
//! - `histogram`: the latency histogram behind the summary's percentiles.
//! - the rate patterns are the pure crate `warren-pattern`, re-exported here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{parse_duration, ConfigError};

mod histogram;
mod open_loop;
mod summary;

pub use histogram::LatencyHistogram;
pub use open_loop::{parse_welcome, run_with};
pub use summary::{LatencySummary, LoadSnapshot, LoadStats, LoadSummary};
pub use warren_pattern::{
    Pattern, PatternError, PatternKind, SendTimes, MAX_PATTERN_SECS, MAX_RATE,
};

/// The highest `--speed`.
pub const MAX_SPEED: f64 = 10_000.0;
/// Rate used when neither `--rate` nor `--pattern-file` is given.
const DEFAULT_RATE: f64 = 10.0;
/// Length used when neither `--duration` nor `--pattern-file` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(60);
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
    let progress = tokio::spawn(summary::print_progress(stats.clone(), finished.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

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
