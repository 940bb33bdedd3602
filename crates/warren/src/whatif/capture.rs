//! `warren capture`: a queue's past, read from Prometheus, as a scenario file `warren simulate`
//! and `warren recommend` read unchanged, with what happened beside it.
//!
//! Over `--from`..`--to` at `--step`, through the HTTP API (`query_range`, `query`):
//!
//! - the jobs that arrived within each step, as a rate held over the step (a point at each of
//!   its edges): RabbitMQ 4.x's per-queue publish counter, else 3.10's conservation, each
//!   series read as raw samples, taken linear between them at the steps' edges and differenced
//!   (a counter's reset counted on), so that the steps add up to the counters' own increase;
//!   a `--step` shorter than 2 scrape intervals is raised to them, said on stderr;
//! - the work time: `empirical` from the work-time histogram's bucket increases over the
//!   range (values spread in each bucket so that their mean is the histogram's `_sum/_count`);
//!   else `fixed` at the broker's Little's-law estimate (mean busy consumers over mean
//!   messages finished per second, as `warren_policy::estimator`), or at `--work-secs`;
//! - the metric pipeline: `source: prometheus`, the scrape interval measured from the queue's
//!   raw samples (median gap), the sync period given, the pod start time from kube-state-metrics
//!   (median of `kube_pod_status_ready_time - kube_pod_created` for `--pod-regex`), else given;
//! - beside it, a CSV of what happened per step: replicas (kube-state-metrics' Deployment
//!   replicas, else the queue's consumers), messages ready, arrival rate, queue wait p95 (where
//!   the workers export a wait histogram).
//!
//! Every check comes first; a failure is one line (exit 2) and writes nothing: both files are
//! written to temporary names and renamed at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::config::{parse_duration, ConfigError};
use crate::scaling::metric_source::{api_answer, ApiError};
use crate::whatif::capacity_rules::{promql_string, yaml_string, Histogram, QueuePromql};

/// The most points Prometheus answers per series in one `query_range` (its
/// `11,000 points` limit).
pub const MAX_POINTS: u64 = 11_000;

/// Past this many points a capture says each query on stderr.
pub const PROGRESS_POINTS: usize = 1000;

/// The most values of an empirical work-time distribution written to the file.
pub const MAX_WORK_VALUES: usize = 1000;

/// Options of `warren capture`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
The scenario file (--out) holds, with comment lines saying where each part came from:
  arrivals.points   [seconds from --from, jobs/s] at both edges of each step: the jobs that
                    arrived within the step (RabbitMQ 4.x's per-queue publish counter, else
                    3.10's conservation: the change of the queue's messages plus its consumers'
                    acks), read from the raw samples so that the steps add up to the counters'
                    increase; a --step under 2 scrape intervals is raised to them
  work              empirical from --work-histogram's buckets (mean = _sum/_count); else fixed
                    at the broker's estimate (busy consumers / messages finished per second);
                    or fixed at --work-secs
  metrics           source: prometheus; scrape_interval_secs measured from the queue's raw
                    samples; sync_period_secs from --sync-period
  workers           startup_secs from kube-state-metrics (--pod-regex), else --pod-start
  duration_secs     the range; slo_secs --slo; seed 1; end_when_settled false; replicas only
                    with --min/--max
  observed          the CSV beside it, <stem>.observed.csv: t_secs, replicas (--deployment's,
                    else the queue's consumers), backlog (messages ready), arrival_rate,
                    wait_p95_secs (--wait-histogram's, else empty), one row per step
A bad capture (no such queue, an empty range, Prometheus unreachable, more than 11,000 steps)
is one line on stderr, exit 2, and writes nothing.")]
pub struct CaptureArgs {
    /// Prometheus' base URL, e.g. http://prometheus:9090 (its HTTP API is read, never written).
    #[arg(long, env = "PROMETHEUS_URL", value_name = "URL")]
    pub prometheus: String,
    /// The queue's vhost.
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// The queue whose past to capture (label `queue` of the broker's series).
    #[arg(long)]
    pub queue: String,
    /// Start of the range: RFC 3339 (2026-12-08T03:00:00Z), `now`, or relative to now (-2h).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub from: String,
    /// End of the range, as --from.
    #[arg(
        long,
        value_name = "TIME",
        default_value = "now",
        allow_hyphen_values = true
    )]
    pub to: String,
    /// Seconds between two steps; the range may hold at most 11,000 (Prometheus' limit). At
    /// least 2 scrape intervals: a shorter one is raised to them, said on stderr.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub step: Duration,
    /// The workers' work-time histogram, `name` or `name{matchers}` (without `_bucket`); its
    /// bucket increases over the range give the empirical distribution.
    #[arg(long, value_name = "NAME", default_value = "job_duration_seconds")]
    pub work_histogram: String,
    /// A fixed work time instead of the histogram or the broker's estimate, e.g. 5s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub work_secs: Option<Duration>,
    /// The workers' queue-wait histogram, `name` or `name{matchers}`: its p95 per step goes into
    /// the observed CSV (left empty where it has no series).
    #[arg(long, value_name = "NAME", default_value = "job_queue_wait_seconds")]
    pub wait_histogram: String,
    /// The workers' Deployment: replicas from kube-state-metrics'
    /// `kube_deployment_status_replicas`; without it, the queue's consumer count.
    #[arg(long, value_name = "NAME")]
    pub deployment: Option<String>,
    /// The workers' pods, a regex on label `pod`: their start time (created to ready) from
    /// kube-state-metrics; without it, or without those series, --pod-start.
    #[arg(long, value_name = "REGEX")]
    pub pod_regex: Option<String>,
    /// A worker's start time when kube-state-metrics does not give it.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub pod_start: Duration,
    /// The HPA controller's sync period that ran.
    #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = parse_duration)]
    pub sync_period: Duration,
    /// The queue-wait SLO the scenario states, e.g. 10s.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub slo: Duration,
    /// replicas.min of the scenario (else the policy's).
    #[arg(long)]
    pub min: Option<u32>,
    /// replicas.max of the scenario (else the policy's).
    #[arg(long)]
    pub max: Option<u32>,
    /// The scenario file to write; the observed CSV goes beside it as `<stem>.observed.csv`.
    #[arg(long, value_name = "FILE", default_value = "captured.yaml")]
    pub out: PathBuf,
}

/// `warren capture`'s settings, checked.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Prometheus' base URL.
    pub prometheus: Url,
    /// The queue's vhost.
    pub vhost: String,
    /// The queue.
    pub queue: String,
    /// Start of the range, Unix seconds.
    pub from: i64,
    /// End of the range, Unix seconds.
    pub to: i64,
    /// Seconds between points.
    pub step_secs: f64,
    /// The work-time histogram.
    pub work_histogram: Histogram,
    /// A given work time.
    pub work_secs: Option<f64>,
    /// The queue-wait histogram.
    pub wait_histogram: Histogram,
    /// The workers' Deployment.
    pub deployment: Option<String>,
    /// The workers' pods.
    pub pod_regex: Option<String>,
    /// The start time given.
    pub pod_start_secs: f64,
    /// The sync period given.
    pub sync_period_secs: f64,
    /// The SLO.
    pub slo_secs: f64,
    /// replicas.min.
    pub min: Option<u32>,
    /// replicas.max.
    pub max: Option<u32>,
    /// The scenario file.
    pub out: PathBuf,
}

/// A time of `--from`/`--to`: RFC 3339, `now`, or `-<duration>` before `now`.
pub fn parse_time(raw: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    let text = raw.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ago = parse_duration(ago)?;
        let span = jiff::SignedDuration::try_from(ago).map_err(|e| format!("{raw:?}: {e}"))?;
        return now.checked_sub(span).map_err(|e| format!("{raw:?}: {e}"));
    }
    text.parse::<jiff::Timestamp>().map_err(|_| {
        format!("{raw:?} is not a time; use RFC 3339 (2026-12-08T03:00:00Z), now, or -2h")
    })
}

impl CaptureArgs {
    /// Checks every option before any request.
    pub fn to_config(&self) -> Result<CaptureConfig, ConfigError> {
        self.to_config_at(jiff::Timestamp::now())
    }

    /// [`Self::to_config`] with `now` given.
    pub fn to_config_at(&self, now: jiff::Timestamp) -> Result<CaptureConfig, ConfigError> {
        let err = |m: String| ConfigError::new(m);
        let prometheus = Url::parse(&self.prometheus)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                err(format!(
                    "--prometheus {:?} is not an http(s) URL",
                    shown(&self.prometheus)
                ))
            })?;
        let from = parse_time(&self.from, now).map_err(|e| err(format!("--from {e}")))?;
        let to = parse_time(&self.to, now).map_err(|e| err(format!("--to {e}")))?;
        if from >= to {
            return Err(err(format!(
                "the range is empty: --from {from} is not before --to {to}"
            )));
        }
        let step_secs = self.step.as_secs_f64();
        if step_secs < 1.0 {
            return Err(err("--step must be at least 1s".into()));
        }
        let (from, to) = (from.as_second(), to.as_second());
        if ((to - from) as f64) < step_secs {
            return Err(err(format!(
                "the range ({} s) is shorter than one --step ({step_secs} s)",
                to - from
            )));
        }
        let points = ((to - from) as f64 / step_secs).floor() as u64 + 1;
        if points > MAX_POINTS {
            return Err(err(format!(
                "the range holds {points} steps of {step_secs} s; Prometheus answers at most \
                 {MAX_POINTS}: take a longer --step (at least {} s) or a shorter range",
                ((to - from) as f64 / (MAX_POINTS - 1) as f64).ceil()
            )));
        }
        if self.queue.is_empty() {
            return Err(err("--queue must not be empty".into()));
        }
        let histogram = |flag: &str, raw: &str| {
            Histogram::parse(raw).map_err(|e| err(e.0.replacen("--histogram", flag, 1)))
        };
        let secs = |flag: &str, d: Duration, least: f64| {
            let s = d.as_secs_f64();
            if s >= least {
                Ok(s)
            } else {
                Err(err(format!("{flag} must be at least {least} s")))
            }
        };
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min > max {
                return Err(err(format!("--min {min} is above --max {max}")));
            }
        }
        if self.out.file_name().is_none() {
            return Err(err(format!(
                "--out {}: not a file name",
                self.out.display()
            )));
        }
        Ok(CaptureConfig {
            prometheus,
            vhost: self.vhost.clone(),
            queue: self.queue.clone(),
            from,
            to,
            step_secs,
            work_histogram: histogram("--work-histogram", &self.work_histogram)?,
            work_secs: self
                .work_secs
                .map(|d| secs("--work-secs", d, 0.001))
                .transpose()?,
            wait_histogram: histogram("--wait-histogram", &self.wait_histogram)?,
            deployment: self.deployment.clone(),
            pod_regex: self.pod_regex.clone(),
            pod_start_secs: secs("--pod-start", self.pod_start, 0.0)?,
            sync_period_secs: secs("--sync-period", self.sync_period, 0.1)?,
            slo_secs: secs("--slo", self.slo, 0.0)?,
            min: self.min,
            max: self.max,
            out: self.out.clone(),
        })
    }
}

/// A URL as it may be shown: without user and password.
fn shown(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

impl CaptureConfig {
    /// The observed CSV: `<stem>.observed.csv` beside the scenario file.
    pub fn observed_path(&self) -> PathBuf {
        let stem = self
            .out
            .file_stem()
            .map_or_else(|| "captured".into(), |s| s.to_string_lossy().into_owned());
        self.out.with_file_name(format!("{stem}.observed.csv"))
    }

    fn duration_secs(&self) -> i64 {
        self.to - self.from
    }

    /// The range as PromQL writes it, `[<seconds>s]`.
    fn range(&self) -> String {
        format!("[{}s]", self.duration_secs())
    }

    fn steps(&self) -> Vec<f64> {
        let n = (self.duration_secs() as f64 / self.step_secs).floor() as usize;
        (0..=n).map(|i| i as f64 * self.step_secs).collect()
    }
}

/// A series of an answer: its labels and `(unix seconds, value)` points.
struct Series {
    labels: BTreeMap<String, String>,
    points: Vec<(f64, f64)>,
}

/// Prometheus' HTTP API, read.
struct Prometheus {
    client: reqwest::Client,
    base: Url,
    shown: String,
    /// Whether each query says so on stderr: a long range, once the first query was answered
    /// (so that a bad capture stays one line).
    progress: std::cell::Cell<bool>,
}

impl Prometheus {
    fn new(base: &Url) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ConfigError::new(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            client,
            base: base.clone(),
            shown: shown(base.as_str()),
            progress: std::cell::Cell::new(false),
        })
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Vec<Series>, ConfigError> {
        let mut url = self.base.clone();
        let joined = format!("{}/api/v1/{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let response = self.client.get(url).send().await.map_err(|e| {
            ConfigError::new(format!(
                "cannot reach Prometheus at {}: {}",
                self.shown,
                root_cause(&e.without_url())
            ))
        })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            ConfigError::new(format!(
                "reading Prometheus' answer from {}: {}",
                self.shown,
                root_cause(&e.without_url())
            ))
        })?;
        let answer = api_answer(&body).map_err(|e| match e {
            ApiError::NotAnAnswer(_) => ConfigError::new(format!(
                "{} answered {status} with no Prometheus API answer: is it Prometheus?",
                self.shown
            )),
            ApiError::Refused(why) => ConfigError::new(format!(
                "Prometheus at {} refused a query ({status}): {why}",
                self.shown
            )),
        })?;
        let number = |v: &str| v.parse::<f64>().unwrap_or(f64::NAN);
        Ok(answer
            .into_iter()
            .map(|s| Series {
                labels: s.labels,
                points: s.points.iter().map(|(t, v)| (*t, number(v))).collect(),
            })
            .collect())
    }

    async fn range(
        &self,
        c: &CaptureConfig,
        what: &str,
        promql: &str,
    ) -> Result<Vec<Series>, ConfigError> {
        if self.progress.get() {
            eprintln!(
                "capture: {what}, {} points from {}",
                c.steps().len(),
                self.shown
            );
        }
        self.get(
            "query_range",
            &[
                ("query", promql.to_owned()),
                ("start", c.from.to_string()),
                ("end", c.to.to_string()),
                ("step", c.step_secs.to_string()),
            ],
        )
        .await
    }

    async fn instant(&self, what: &str, promql: &str, at: i64) -> Result<Vec<Series>, ConfigError> {
        if self.progress.get() {
            eprintln!("capture: {what} from {}", self.shown);
        }
        self.get(
            "query",
            &[("query", promql.to_owned()), ("time", at.to_string())],
        )
        .await
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A range answer's first series as one value per step (`None` where it has no point).
fn per_step(c: &CaptureConfig, series: &[Series]) -> Vec<Option<f64>> {
    let mut values = vec![None; c.steps().len()];
    if let Some(s) = series.first() {
        for &(t, v) in &s.points {
            let i = ((t - c.from as f64) / c.step_secs).round();
            if i >= 0.0 && (i as usize) < values.len() && v.is_finite() {
                values[i as usize] = Some(v);
            }
        }
    }
    values
}

/// Where the work time came from.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkSource {
    /// The histogram's buckets: its name and the jobs it counted over the range.
    Histogram {
        /// The histogram's name.
        name: String,
        /// Jobs counted.
        jobs: f64,
    },
    /// Little's law on the broker's counts.
    Broker,
    /// `--work-secs`.
    Given,
}

/// The work time captured.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedWork {
    /// `fixed` at this mean, or `empirical` with these values.
    pub values: Vec<f64>,
    /// The mean, in seconds.
    pub mean_secs: f64,
    /// Where it came from.
    pub source: WorkSource,
}

/// The observed CSV's header: what happened on the live system at each step.
pub const OBSERVED_HEADER: &str = "t_secs,replicas,backlog,arrival_rate,wait_p95_secs";

/// One step of what happened.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObservedStep {
    /// Seconds from the start of the range.
    pub t_secs: f64,
    /// The workers' replicas (or the queue's consumers).
    pub replicas: Option<f64>,
    /// Messages ready.
    pub backlog: Option<f64>,
    /// Arrivals per second.
    pub arrival_rate: Option<f64>,
    /// The queue wait's p95 over the minute before, seconds.
    pub wait_p95_secs: Option<f64>,
}

/// What happened over a captured range, one row per step: the observed CSV, written by
/// `warren capture` and read back by `warren simulate` to set beside the simulation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The steps, in time order.
    pub steps: Vec<ObservedStep>,
}

impl Observed {
    /// The CSV text: [`OBSERVED_HEADER`], then a row per step, an empty cell where there was
    /// no value.
    pub fn to_csv(&self) -> String {
        let cell = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
        let mut csv = format!("{OBSERVED_HEADER}\n");
        for s in &self.steps {
            let _ = writeln!(
                csv,
                "{},{},{},{},{}",
                s.t_secs,
                cell(s.replicas),
                cell(s.backlog),
                cell(s.arrival_rate),
                cell(s.wait_p95_secs)
            );
        }
        csv
    }

    /// Reads the CSV strictly: the header as written, five cells a row, numbers of 0 or more
    /// (empty but for `t_secs`), times rising; the error names the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, header)) if header.trim() == OBSERVED_HEADER => {}
            _ => return Err(format!("line 1: the header must be {OBSERVED_HEADER}")),
        }
        let names: Vec<&str> = OBSERVED_HEADER.split(',').collect();
        let mut steps: Vec<ObservedStep> = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != names.len() {
                return Err(format!(
                    "line {n}: {} cells, expected {}",
                    cells.len(),
                    names.len()
                ));
            }
            let mut values = [None; 5];
            for (k, cell) in cells.iter().enumerate() {
                if cell.is_empty() {
                    continue;
                }
                match cell.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => values[k] = Some(v),
                    _ => {
                        return Err(format!(
                            "line {n}: {}: {cell:?} is not a number of 0 or more",
                            names[k]
                        ))
                    }
                }
            }
            let Some(t_secs) = values[0] else {
                return Err(format!("line {n}: t_secs is empty"));
            };
            if steps.last().is_some_and(|last| last.t_secs >= t_secs) {
                return Err(format!(
                    "line {n}: t_secs {t_secs} does not come after the line before"
                ));
            }
            steps.push(ObservedStep {
                t_secs,
                replicas: values[1],
                backlog: values[2],
                arrival_rate: values[3],
                wait_p95_secs: values[4],
            });
        }
        if steps.is_empty() {
            return Err("no rows".into());
        }
        Ok(Self { steps })
    }

    /// Replica-seconds: each step's replicas until the next step.
    pub fn worker_seconds(&self) -> f64 {
        self.steps
            .windows(2)
            .map(|w| w[0].replicas.unwrap_or(0.0) * (w[1].t_secs - w[0].t_secs))
            .sum()
    }

    /// Jobs arrived: the arrival rate integrated over the steps (trapezoids).
    pub fn jobs(&self) -> f64 {
        self.steps
            .windows(2)
            .map(|w| {
                (w[0].arrival_rate.unwrap_or(0.0) + w[1].arrival_rate.unwrap_or(0.0)) / 2.0
                    * (w[1].t_secs - w[0].t_secs)
            })
            .sum()
    }

    /// The queue wait's p95 over the range, from the steps' p95s: their 95th percentile, each
    /// weighted by its step's arrival rate (a job-weighted estimate; the jobs' own waits are not
    /// in Prometheus). `None` without a wait.
    pub fn wait_p95_secs(&self) -> Option<f64> {
        let mut weighted: Vec<(f64, f64)> = self
            .steps
            .iter()
            .filter_map(|s| Some((s.wait_p95_secs?, s.arrival_rate.unwrap_or(0.0))))
            .collect();
        let total: f64 = weighted.iter().map(|w| w.1).sum();
        if weighted.is_empty() {
            return None;
        }
        weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
        if total <= 0.0 {
            let i = ((weighted.len() as f64 * 0.95).ceil() as usize).clamp(1, weighted.len());
            return Some(weighted[i - 1].0);
        }
        let mut seen = 0.0;
        for (wait, weight) in &weighted {
            seen += weight;
            if seen >= 0.95 * total {
                return Some(*wait);
            }
        }
        weighted.last().map(|w| w.0)
    }
}

/// An empirical distribution from a histogram's bucket increases `(upper bound, cumulative
/// count)`: at most [`MAX_WORK_VALUES`] values, each bucket's share of them spread evenly
/// between its bounds, then moved toward one bound (all by the same share of their bucket's
/// width) so that the mean is `mean`. The `+Inf` bucket's values lie between the last finite
/// bound and twice it; where even the bounds cannot give `mean`, the values are scaled to it.
pub fn empirical_from_buckets(buckets: &[(f64, f64)], mean: f64) -> Vec<f64> {
    let mut sorted: Vec<(f64, f64)> = buckets
        .iter()
        .copied()
        .filter(|(_, n)| n.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Per bucket: lower, upper, jobs (cumulative counts differenced, never below 0).
    let mut parts = Vec::new();
    let (mut lower, mut below) = (0.0_f64, 0.0_f64);
    let last_finite = sorted
        .iter()
        .rev()
        .map(|b| b.0)
        .find(|le| le.is_finite())
        .unwrap_or(1.0);
    for &(le, cumulative) in &sorted {
        let upper = if le.is_finite() {
            le
        } else {
            2.0 * last_finite.max(f64::MIN_POSITIVE)
        };
        let jobs = (cumulative - below).max(0.0);
        below = below.max(cumulative);
        parts.push((lower, upper, jobs));
        lower = upper;
    }
    let total: f64 = parts.iter().map(|p| p.2).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let n = (total.round() as usize).clamp(1, MAX_WORK_VALUES);
    // Largest remainder: each bucket's share of n values.
    let exact: Vec<f64> = parts.iter().map(|p| p.2 / total * n as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let short = n - counts.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        counts[i] += 1;
    }
    let mut base = Vec::with_capacity(n);
    for (&(lo, hi, _), &k) in parts.iter().zip(&counts) {
        for j in 0..k {
            base.push((lo, hi, lo + (hi - lo) * (j as f64 + 0.5) / k as f64));
        }
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let spread: Vec<f64> = base.iter().map(|b| b.2).collect();
    let now = avg(&spread);
    // Mean is linear in the share moved toward the bound: solve for it, within [0, 1].
    let toward = |share: f64, up: bool| -> Vec<f64> {
        base.iter()
            .map(|&(lo, hi, v)| {
                if up {
                    v + share * (hi - v)
                } else {
                    v - share * (v - lo)
                }
            })
            .collect()
    };
    let up = mean > now;
    let full = avg(&toward(1.0, up));
    let share = if (full - now).abs() > 0.0 {
        ((mean - now) / (full - now)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut values = toward(share, up);
    let got = avg(&values);
    if got > 0.0 && ((got - mean) / mean).abs() > 1e-9 {
        for v in &mut values {
            *v *= mean / got;
        }
    }
    values
}

/// What a capture found, for the summary line.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureSummary {
    /// Arrival points written.
    pub points: usize,
    /// Jobs the arrival points amount to.
    pub jobs: f64,
    /// Mean arrival rate, jobs/s.
    pub mean_rate: f64,
    /// The work time.
    pub work: CapturedWork,
    /// The scrape interval measured (or assumed), seconds.
    pub scrape_interval_secs: f64,
    /// The scenario file written.
    pub scenario: PathBuf,
    /// The observed CSV written.
    pub observed: PathBuf,
}

impl std::fmt::Display for CaptureSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.work.source {
            WorkSource::Histogram { name, .. } => format!("histogram {name}"),
            WorkSource::Broker => "the broker (Little's law)".into(),
            WorkSource::Given => "--work-secs".into(),
        };
        write!(
            f,
            "captured {} points, {:.0} jobs, {:.3} jobs/s on average; work time {:.3} s mean from \
             {source}; scrape interval {} s; wrote {} and {}",
            self.points,
            self.jobs,
            self.mean_rate,
            self.work.mean_secs,
            self.scrape_interval_secs,
            self.scenario.display(),
            self.observed.display()
        )
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn selector(h: &Histogram, suffix: &str) -> String {
    if h.matchers.is_empty() {
        format!("{}{suffix}", h.name)
    } else {
        format!("{}{suffix}{{{}}}", h.name, h.matchers)
    }
}

/// Reads the range from Prometheus and writes the scenario and the observed CSV; every failure
/// is one line, and then nothing is written.
pub async fn run(c: &CaptureConfig) -> Result<CaptureSummary, ConfigError> {
    let prom = Prometheus::new(&c.prometheus)?;
    let q = QueuePromql::new(&c.vhost, &c.queue);

    let backlog = prom.range(c, "messages ready", &q.backlog()).await?;
    if backlog.is_empty() {
        return Err(ConfigError::new(format!(
            "no series rabbitmq_detailed_queue_messages_ready{{{}}} in Prometheus at {} between \
             {} and {}: no such queue (check --queue and --vhost), or not scraped then",
            q.matchers(),
            prom.shown,
            show_time(c.from),
            show_time(c.to)
        )));
    }
    let (scrape_interval_secs, scrape_note) = scrape_interval(c, &prom, &q).await?;
    // A step must hold two samples of each series, or its arrivals are one scrape's.
    let least = (2.0 * scrape_interval_secs).ceil();
    let raised;
    let c = if c.step_secs < least {
        if (c.duration_secs() as f64) < least {
            return Err(ConfigError::new(format!(
                "the range ({} s) is shorter than 2 scrape intervals ({scrape_interval_secs} s \
                 measured)",
                c.duration_secs()
            )));
        }
        eprintln!(
            "capture: --step {} s is shorter than 2 scrape intervals ({scrape_interval_secs} s \
             measured): taking {least} s",
            c.step_secs
        );
        raised = CaptureConfig {
            step_secs: least,
            ..c.clone()
        };
        &raised
    } else {
        c
    };
    let backlog = per_step(c, &prom.range(c, "messages ready", &q.backlog()).await?);
    prom.progress.set(c.steps().len() > PROGRESS_POINTS);
    let step_jobs = arrivals_per_step(c, &prom, &q).await?;
    let replicas_promql = match &c.deployment {
        Some(d) => format!(
            "max(kube_deployment_status_replicas{{deployment={}}})",
            promql_string(d)
        ),
        None => format!(
            "max by (vhost, queue) (rabbitmq_detailed_queue_consumers{{{}}})",
            q.matchers()
        ),
    };
    let replicas_found = prom.range(c, "replicas", &replicas_promql).await?;
    if replicas_found.is_empty() {
        if let Some(d) = &c.deployment {
            return Err(ConfigError::new(format!(
                "no series kube_deployment_status_replicas{{deployment={d:?}}} in the range: is \
                 kube-state-metrics scraped, and is the Deployment's name right?"
            )));
        }
    }
    let replicas = per_step(c, &replicas_found);
    let wait = per_step(
        c,
        &prom
            .range(
                c,
                "queue wait p95",
                &format!(
                    "histogram_quantile(0.95, sum by (le) (rate({}[1m])))",
                    selector(&c.wait_histogram, "_bucket")
                ),
            )
            .await?,
    );

    let work = capture_work(c, &prom, &q).await?;
    let (startup_secs, startup_note) = startup(c, &prom).await?;

    let steps = c.steps();
    let rates: Vec<f64> = step_jobs.iter().map(|j| j / c.step_secs).collect();
    // A step function: each step's rate at both of its edges.
    let points: Vec<(f64, f64)> = rates
        .iter()
        .enumerate()
        .flat_map(|(i, &r)| [(steps[i], r), (steps[i + 1], r)])
        .collect();
    // Row i of the observed CSV: the step ending at its time (the first row: the first step's).
    let arrivals: Vec<Option<f64>> = (0..steps.len())
        .map(|i| rates.get(i.saturating_sub(1)).copied())
        .collect();
    let jobs: f64 = step_jobs.iter().sum();
    let covered = steps.last().copied().unwrap_or(0.0);
    let mean_rate = if covered > 0.0 { jobs / covered } else { 0.0 };

    let observed = c.observed_path();
    let observed_name = observed
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let scenario = scenario_text(
        c,
        &ScenarioParts {
            points: &points,
            work: &work,
            scrape_interval_secs,
            scrape_note: &scrape_note,
            startup_secs,
            startup_note: &startup_note,
            observed_name: &observed_name,
        },
    );
    // What `warren simulate` will read: refuse to write a file it would refuse.
    warren_sim::Scenario::from_yaml(&scenario)
        .map_err(|e| ConfigError::new(format!("the captured scenario does not check: {e}")))?;
    let csv = Observed {
        steps: steps
            .iter()
            .enumerate()
            .map(|(i, &t_secs)| ObservedStep {
                t_secs,
                replicas: replicas[i],
                backlog: backlog[i],
                arrival_rate: arrivals[i],
                wait_p95_secs: wait[i],
            })
            .collect(),
    }
    .to_csv();
    write_both(&c.out, &scenario, &observed, &csv)?;
    Ok(CaptureSummary {
        points: points.len(),
        jobs,
        mean_rate,
        work,
        scrape_interval_secs,
        scenario: c.out.clone(),
        observed,
    })
}

/// Writes both files to temporary names beside them, then renames both.
fn write_both(out: &Path, scenario: &str, observed: &Path, csv: &str) -> Result<(), ConfigError> {
    let temp = |p: &Path| {
        let name = p
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        p.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
    };
    let (t1, t2) = (temp(out), temp(observed));
    let written = std::fs::write(&t1, scenario)
        .and_then(|()| std::fs::write(&t2, csv))
        .and_then(|()| std::fs::rename(&t2, observed))
        .and_then(|()| std::fs::rename(&t1, out));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&t1);
        let _ = std::fs::remove_file(&t2);
        ConfigError::new(format!("cannot write {}: {e}", out.display()))
    })
}

fn show_time(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string())
}

/// The jobs that arrived within each step `[t, t + step]` of the range: RabbitMQ 4.x's
/// per-queue publish counter where it has a series in the range, else 3.10's conservation (the
/// change of the queue's messages plus the messages its consumers finished: the per-queue
/// acked, delivered and get counters where they exist, else the per-channel ones).
///
/// Each series is read as its raw samples and taken, linear between two samples, at each step's
/// edges; a counter's drop is a reset (it counts on from its value before), and a series that
/// appears within the range starts from 0. So the steps add up to the counters' own increases
/// over the range, with none of `increase`'s extrapolation to a window's edges. A step whose
/// conservation comes out below 0 (the gauge and the counters scraped at different moments) is
/// 0 and its deficit is taken from the next steps (what is left at the end, from the last steps
/// before), so that the total stays the samples'.
async fn arrivals_per_step(
    c: &CaptureConfig,
    prom: &Prometheus,
    q: &QueuePromql,
) -> Result<Vec<f64>, ConfigError> {
    let m = q.matchers();
    let raw = |selector: String| format!("{selector}[{}s]", c.duration_secs() + LOOKBACK_SECS);
    let published = prom
        .instant(
            "publish counter",
            &raw(format!(
                "rabbitmq_detailed_queue_exchange_messages_published_total{{{m}}}"
            )),
            c.to,
        )
        .await?;
    if !published.is_empty() {
        return Ok(differences(&summed_at_edges(c, &published, true)));
    }
    let finished = |prefix: &str| {
        raw(format!(
            "{{__name__=~\"rabbitmq_detailed_{prefix}_(messages_acked|messages_delivered|get)_total\",{m}}}"
        ))
    };
    let mut counters = prom
        .instant("per-queue finish counters", &finished("queue"), c.to)
        .await?;
    if counters.is_empty() {
        counters = prom
            .instant("per-channel finish counters", &finished("channel"), c.to)
            .await?;
    }
    let messages = prom
        .instant(
            "messages",
            &raw(format!("rabbitmq_detailed_queue_messages{{{m}}}")),
            c.to,
        )
        .await?;
    // One node's series of the queue: the first (as `max by` over nodes, for one node).
    let messages = differences(&summed_at_edges(
        c,
        &messages[..messages.len().min(1)],
        false,
    ));
    let finished = differences(&summed_at_edges(c, &counters, true));
    Ok(conserved(&finished, &messages))
}

/// Arrivals per step by conservation, from the messages finished and the change of the queue's
/// messages per step: never below 0, a deficit taken from the next steps and, what is left at
/// the end (the counters ahead of the gauge), from the last steps before; so the total stays
/// theirs whenever it is 0 or more.
fn conserved(finished: &[f64], messages: &[f64]) -> Vec<f64> {
    let mut owed = 0.0;
    let mut jobs: Vec<f64> = finished
        .iter()
        .zip(messages)
        .map(|(f, m)| {
            let jobs = m + f + owed;
            owed = jobs.min(0.0);
            jobs.max(0.0)
        })
        .collect();
    for step in jobs.iter_mut().rev() {
        let taken = step.min(-owed);
        *step -= taken;
        owed += taken;
    }
    jobs
}

/// How far before the range a series' raw samples are read: Prometheus' lookback.
const LOOKBACK_SECS: i64 = 300;

fn differences(v: &[f64]) -> Vec<f64> {
    v.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The series' sum at each step's edge, each series linear between its raw samples and held
/// past its last. A counter (`counter`) counts on across a drop (a reset), and one whose first
/// sample falls within the range is 0 until it; a gauge is its first sample until it.
fn summed_at_edges(c: &CaptureConfig, series: &[Series], counter: bool) -> Vec<f64> {
    let edges: Vec<f64> = c.steps().iter().map(|t| c.from as f64 + t).collect();
    sum_at(&edges, c.from as f64, series, counter)
}

/// [`summed_at_edges`] at the Unix times `edges`, the range starting at `from`.
fn sum_at(edges: &[f64], from: f64, series: &[Series], counter: bool) -> Vec<f64> {
    let mut sums = vec![0.0; edges.len()];
    for s in series {
        let mut samples: Vec<(f64, f64)> = Vec::with_capacity(s.points.len());
        let mut carried = 0.0;
        for &(t, v) in s.points.iter().filter(|p| p.1.is_finite()) {
            if counter {
                if let Some(&(_, before)) = samples.last() {
                    if v + carried < before {
                        carried = before;
                    }
                }
            }
            samples.push((t, v + carried));
        }
        let Some(&(first_t, first_v)) = samples.first() else {
            continue;
        };
        let before_first = if counter && first_t > from {
            0.0
        } else {
            first_v
        };
        for (sum, &t) in sums.iter_mut().zip(edges) {
            let after = samples.partition_point(|p| p.0 <= t);
            *sum += match (after.checked_sub(1).map(|i| samples[i]), samples.get(after)) {
                (None, _) => before_first,
                (Some((_, v)), None) => v,
                (Some((t0, v0)), Some(&(t1, v1))) => v0 + (v1 - v0) * (t - t0) / (t1 - t0),
            };
        }
    }
    sums
}

async fn capture_work(
    c: &CaptureConfig,
    prom: &Prometheus,
    q: &QueuePromql,
) -> Result<CapturedWork, ConfigError> {
    if let Some(secs) = c.work_secs {
        return Ok(CapturedWork {
            values: vec![secs],
            mean_secs: secs,
            source: WorkSource::Given,
        });
    }
    let h = &c.work_histogram;
    let increase = |suffix: &str, by: &str| {
        format!("sum {by}(increase({}{}))", selector(h, suffix), c.range())
    };
    let buckets = prom
        .instant(
            &format!("work-time histogram {}", h.name),
            &increase("_bucket", "by (le) "),
            c.to,
        )
        .await?;
    let total = |s: &[Series]| s.first().and_then(|s| s.points.first()).map(|p| p.1);
    let sum = total(&prom.instant("its sum", &increase("_sum", ""), c.to).await?);
    let count = total(
        &prom
            .instant("its count", &increase("_count", ""), c.to)
            .await?,
    );
    if let (Some(sum), Some(count)) = (sum, count) {
        let pairs: Vec<(f64, f64)> = buckets
            .iter()
            .filter_map(|s| {
                let le = s.labels.get("le")?.parse::<f64>().ok()?;
                Some((le, s.points.first()?.1))
            })
            .collect();
        if count > 0.0 && sum > 0.0 && !pairs.is_empty() {
            let mean = sum / count;
            let values = empirical_from_buckets(&pairs, mean);
            if !values.is_empty() {
                return Ok(CapturedWork {
                    values,
                    mean_secs: mean,
                    source: WorkSource::Histogram {
                        name: h.name.clone(),
                        jobs: count,
                    },
                });
            }
        }
    }
    // Little's law, as the estimator: mean busy consumers over mean messages finished per second.
    let mean = |s: Vec<Series>| {
        let v: Vec<f64> = s
            .first()
            .map(|s| {
                s.points
                    .iter()
                    .map(|p| p.1)
                    .filter(|v| v.is_finite())
                    .collect()
            })
            .unwrap_or_default();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let busy = mean(prom.range(c, "busy consumers", &q.busy_consumers()).await?);
    let finished = mean(prom.range(c, "messages finished", &q.finish_rate()).await?);
    match (busy, finished) {
        (Some(b), Some(f)) if f > 0.0 && b > 0.0 => Ok(CapturedWork {
            values: vec![b / f],
            mean_secs: b / f,
            source: WorkSource::Broker,
        }),
        _ => Err(ConfigError::new(format!(
            "no work time: no histogram {} counted a job in the range, and the broker saw no \
             message finished by a busy consumer; give --work-secs",
            h.name
        ))),
    }
}

/// The queue's scrape interval: the median gap between the raw samples of its ready series
/// over the last hour of the range at most; with fewer than two samples, 15 s, said so.
async fn scrape_interval(
    c: &CaptureConfig,
    prom: &Prometheus,
    q: &QueuePromql,
) -> Result<(f64, String), ConfigError> {
    let window = c.duration_secs().min(3600);
    let raw = prom
        .instant(
            "raw samples of the ready series",
            &format!(
                "rabbitmq_detailed_queue_messages_ready{{{}}}[{window}s]",
                q.matchers()
            ),
            c.to,
        )
        .await?;
    let gaps: Vec<f64> = raw
        .iter()
        .flat_map(|s| s.points.windows(2).map(|w| w[1].0 - w[0].0))
        .collect();
    Ok(match median(gaps) {
        Some(gap) => (
            (gap * 1000.0).round() / 1000.0,
            format!(
                "the median gap between the raw samples of the queue's ready series (last {window} s of the range)"
            ),
        ),
        None => (
            15.0,
            "assumed 15 s: the queue's ready series had fewer than two samples at the range's end".into(),
        ),
    })
}

/// A worker's start time: kube-state-metrics' ready time minus creation time, median over the
/// pods `--pod-regex` matches; else `--pod-start`.
async fn startup(c: &CaptureConfig, prom: &Prometheus) -> Result<(f64, String), ConfigError> {
    let given = (
        c.pod_start_secs,
        format!("--pod-start ({} s)", c.pod_start_secs),
    );
    let Some(regex) = &c.pod_regex else {
        return Ok(given);
    };
    let pods = format!("{{pod=~{}}}", promql_string(regex));
    let last = |name: &str| {
        format!(
            "max by (namespace, pod) (last_over_time({name}{pods}{}))",
            c.range()
        )
    };
    let found = prom
        .instant(
            "pod start times (kube-state-metrics)",
            &format!(
                "{} - on (namespace, pod) {}",
                last("kube_pod_status_ready_time"),
                last("kube_pod_created")
            ),
            c.to,
        )
        .await?;
    let starts: Vec<f64> = found
        .iter()
        .filter_map(|s| s.points.first().map(|p| p.1))
        .filter(|v| *v >= 0.0)
        .collect();
    let pods_seen = starts.len();
    Ok(match median(starts) {
        Some(m) => (
            m,
            format!(
                "kube-state-metrics: median of kube_pod_status_ready_time - kube_pod_created over {pods_seen} pods matching {regex:?}"
            ),
        ),
        None => (
            given.0,
            format!("{} (kube-state-metrics had no pod matching {regex:?})", given.1),
        ),
    })
}

struct ScenarioParts<'a> {
    points: &'a [(f64, f64)],
    work: &'a CapturedWork,
    scrape_interval_secs: f64,
    scrape_note: &'a str,
    startup_secs: f64,
    startup_note: &'a str,
    observed_name: &'a str,
}

fn scenario_text(c: &CaptureConfig, p: &ScenarioParts<'_>) -> String {
    let work_note = match &p.work.source {
        WorkSource::Histogram { name, jobs } => format!(
            "empirical, from histogram {name}'s bucket increases over the range ({jobs:.0} jobs; \
             mean {:.4} s = _sum / _count)",
            p.work.mean_secs
        ),
        WorkSource::Broker => format!(
            "fixed at {:.4} s, the broker's estimate (Little's law: mean busy consumers / mean \
             messages finished per second); no histogram {} in the range",
            p.work.mean_secs, c.work_histogram.name
        ),
        WorkSource::Given => format!("fixed at {} s, given by --work-secs", p.work.mean_secs),
    };
    let description = format!(
        "captured from Prometheus: queue {} in vhost {}, {} to {}, step {} s; work time {}",
        c.queue,
        c.vhost,
        show_time(c.from),
        show_time(c.to),
        c.step_secs,
        match p.work.source {
            WorkSource::Histogram { .. } => "empirical from the histogram",
            WorkSource::Broker => "fixed at the broker's estimate",
            WorkSource::Given => "fixed as given",
        }
    );
    let mut out = String::new();
    let _ = writeln!(out, "# Written by `warren capture`.");
    let _ = writeln!(
        out,
        "# arrivals: the jobs that arrived within each step, as a rate held over the step (a \
         point at each of its edges)."
    );
    let _ = writeln!(out, "# work: {work_note}");
    let _ = writeln!(out, "# metrics.scrape_interval_secs: {}", p.scrape_note);
    let _ = writeln!(out, "# workers.startup_secs: {}", p.startup_note);
    let _ = writeln!(out, "description: {}", yaml_string(&description));
    let _ = writeln!(out, "duration_secs: {}", c.duration_secs());
    let _ = writeln!(out, "end_when_settled: false");
    let _ = writeln!(out, "seed: 1");
    let _ = writeln!(out, "slo_secs: {}", c.slo_secs);
    let _ = writeln!(out, "observed: {}", yaml_string(p.observed_name));
    let _ = writeln!(out, "arrivals:");
    let _ = writeln!(out, "  points:");
    for (t, r) in p.points {
        let _ = writeln!(out, "    - [{t}, {r}]");
    }
    let _ = writeln!(out, "work:");
    if matches!(p.work.source, WorkSource::Given | WorkSource::Broker) {
        let _ = writeln!(out, "  distribution: fixed");
        let _ = writeln!(out, "  secs: {}", p.work.mean_secs);
    } else {
        let _ = writeln!(out, "  distribution: empirical");
        let values: Vec<String> = p.work.values.iter().map(|v| format!("{v}")).collect();
        let _ = writeln!(out, "  values_secs: [{}]", values.join(", "));
    }
    let _ = writeln!(out, "workers:");
    let _ = writeln!(out, "  startup_secs: {}", p.startup_secs);
    let _ = writeln!(out, "metrics:");
    let _ = writeln!(out, "  source: prometheus");
    let _ = writeln!(out, "  scrape_interval_secs: {}", p.scrape_interval_secs);
    let _ = writeln!(out, "  sync_period_secs: {}", c.sync_period_secs);
    if c.min.is_some() || c.max.is_some() {
        let _ = writeln!(out, "replicas:");
        if let Some(min) = c.min {
            let _ = writeln!(out, "  min: {min}");
        }
        if let Some(max) = c.max {
            let _ = writeln!(out, "  max: {max}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    #[test]
    fn bucket_values_keep_the_histograms_mean_and_stay_in_their_buckets() {
        // 10 jobs in (0, 1], 30 in (1, 5], 10 in (5, +Inf); mean 3.
        let buckets = [(1.0, 10.0), (5.0, 40.0), (f64::INFINITY, 50.0)];
        let values = empirical_from_buckets(&buckets, 3.0);
        assert_eq!(values.len(), 50);
        assert!((mean(&values) - 3.0).abs() < 1e-9, "{}", mean(&values));
        assert_eq!(values.iter().filter(|v| **v <= 1.0).count(), 10);
        assert_eq!(
            values.iter().filter(|v| **v > 1.0 && **v <= 5.0).count(),
            30
        );
    }

    #[test]
    fn many_jobs_give_at_most_the_cap_of_values_in_their_proportions() {
        let buckets = [(0.5, 25_000.0), (2.0, 100_000.0)];
        let values = empirical_from_buckets(&buckets, 1.0);
        assert_eq!(values.len(), MAX_WORK_VALUES);
        assert_eq!(values.iter().filter(|v| **v <= 0.5).count(), 250);
        assert!((mean(&values) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn no_jobs_give_no_values() {
        assert!(empirical_from_buckets(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 1.0).is_empty());
    }

    #[test]
    fn the_observed_csv_reads_back_what_was_written() {
        let step = |t_secs, replicas, wait| ObservedStep {
            t_secs,
            replicas,
            backlog: Some(3.0),
            arrival_rate: Some(t_secs / 10.0),
            wait_p95_secs: wait,
        };
        let observed = Observed {
            steps: vec![
                step(0.0, Some(1.0), None),
                step(10.0, None, Some(0.25)),
                step(20.0, Some(3.0), Some(9.0)),
            ],
        };
        assert_eq!(Observed::parse(&observed.to_csv()), Ok(observed.clone()));
        // 1 replica for 10 s, none said for 10 s.
        assert_eq!(observed.worker_seconds(), 10.0);
        // Rates 0, 1, 2 over two 10 s steps: 5 + 15 jobs.
        assert_eq!(observed.jobs(), 20.0);
        // Waits 0.25 (weight 1) and 9 (weight 2): 95 % of the arrivals waited at most 9 s.
        assert_eq!(observed.wait_p95_secs(), Some(9.0));
    }

    fn series(points: &[(f64, f64)]) -> Series {
        Series {
            labels: BTreeMap::new(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn counters_are_linear_between_samples_count_on_past_a_reset_and_start_from_0_when_born() {
        // Sampled every 10 s: 100, 110, then a reset to 5, 15. Born at 20 s: 4, 8.
        let old = series(&[(0.0, 100.0), (10.0, 110.0), (20.0, 5.0), (30.0, 15.0)]);
        let born = series(&[(20.0, 4.0), (30.0, 8.0)]);
        let edges = [0.0, 15.0, 30.0, 40.0];
        let sums = sum_at(&edges, 0.0, &[old, born], true);
        // 15 s: 110 + (115 - 110) / 2; 30 s: 110 + 15 + 8; held past the last sample.
        assert_eq!(sums, vec![100.0, 112.5, 133.0, 133.0]);
        // A gauge is its first sample before it, and may fall.
        let gauge = series(&[(10.0, 7.0), (20.0, 3.0)]);
        assert_eq!(
            sum_at(&[0.0, 15.0, 20.0], 0.0, &[gauge], false),
            vec![7.0, 5.0, 3.0]
        );
    }

    #[test]
    fn a_negative_conservation_step_is_netted_against_its_neighbours() {
        // Acks ahead of the gauge: +3, then -2 (taken from the next step's +2), then -1 left at
        // the end (taken from the first step): the total, 2, kept.
        let jobs = conserved(&[3.0, 0.0, 1.0, 0.0], &[0.0, -2.0, 1.0, -1.0]);
        assert_eq!(jobs, vec![2.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn times_are_rfc3339_now_or_before_now() {
        let now: jiff::Timestamp = "2026-12-08T04:00:00Z".parse().unwrap();
        assert_eq!(
            parse_time("-2h", now).unwrap().to_string(),
            "2026-12-08T02:00:00Z"
        );
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(
            parse_time("2026-12-08T03:00:00+01:00", now)
                .unwrap()
                .to_string(),
            "2026-12-08T02:00:00Z"
        );
        assert!(parse_time("yesterday", now).is_err());
    }
}
