//! Where `warren autoscale` reads the HPA's metrics: straight from the broker, or from
//! Prometheus with the very query prometheus-adapter would run.
//!
//! The mapping mirrors the adapter rule shipped in
//! `deploy/kubernetes/overlays/prometheus-adapter/adapter-config.yaml`: an External metric named
//! `rabbitmq_queue_<x>` is the series `rabbitmq_detailed_queue_<x>` (for example
//! `rabbitmq_queue_messages_ready` is `rabbitmq_detailed_queue_messages_ready`), its selector's
//! `matchLabels` become label matchers, and the value is
//! `sum(<series>{<matchers>}) by (queue)`. So for the shipped HPA the query is
//! `sum(rabbitmq_detailed_queue_messages_ready{queue="Orders"}) by (queue)`.
//!
//! The capacity metric `warren_workers_needed` is a Prometheus recording rule
//! (`deploy/kubernetes/base/prometheus/rules.yml`); from Prometheus it is read, as the capacity
//! overlay's adapter rule reads it, with `max(warren_workers_needed{<matchers>}) by (queue)`.
//!
//! - [`MetricSource::Broker`] reads the broker's prometheus plugin,
//!   `/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count`, and sums the
//!   matching samples itself: no Prometheus needed, one hop less lag. For the capacity metric it
//!   scrapes, at each read, the queue's ready count and its per-channel publish counters
//!   (`rabbitmq_detailed_queue_messages_published_total`, family
//!   `channel_queue_exchange_metrics`: every producer's, not only warren web's) from the broker,
//!   and `job_duration_seconds_sum`/`_count` from each worker of the pool; a
//!   [`CapacityScrapes`] keeps them as counters that outlive the channels and workers they came
//!   from, and hands them to `warren_sim::capacity::CapacityFormula`, the formula and windows
//!   the simulator uses, so the rules' fallbacks hold here too.
//! - [`MetricSource::Prometheus`] sends the query to Prometheus's HTTP API, as the adapter does.
//!
//! Any failure (unreachable, bad answer, no matching series) is an error string; the autoscaler
//! hands it to the engine as an unavailable metric, which keeps the worker count unchanged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::MetricSpec;
use warren_sim::capacity::{CapacityFormula, Knobs, Needed};
use warren_sim::policy::Signals;

/// How long one metric read may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where metric values come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricSource {
    /// The broker's prometheus plugin, e.g. `http://127.0.0.1:15692`.
    Broker {
        /// Base URL of the plugin's listener.
        endpoint: String,
    },
    /// A Prometheus server, e.g. `http://127.0.0.1:9090`.
    Prometheus {
        /// Base URL of Prometheus.
        url: String,
    },
}

/// One External metric of the HPA, as a series and label matchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesQuery {
    /// The metric's name in the HPA, e.g. `rabbitmq_queue_messages_ready`.
    pub metric: String,
    /// The Prometheus series, e.g. `rabbitmq_detailed_queue_messages_ready`.
    pub series: String,
    /// How the adapter rule aggregates the series: `sum` (queue counts, over the broker's
    /// nodes) or `max` (the recording rule's one series per queue).
    pub aggregation: &'static str,
    /// Label equality matchers from the selector's `matchLabels`, sorted by label.
    pub matchers: BTreeMap<String, String>,
}

impl SeriesQuery {
    /// Maps one of the HPA's metric specs; only External metrics named `rabbitmq_queue_*` with
    /// `matchLabels` selectors are known, as with the shipped adapter rule.
    pub fn from_spec(spec: &MetricSpec) -> Result<Self, String> {
        let external = spec.external.as_ref().ok_or_else(|| {
            format!(
                "{} metrics are not available to warren autoscale; use an External metric named rabbitmq_queue_*",
                spec.type_
            )
        })?;
        let metric = external.metric.name.clone();
        let (series, aggregation) = if metric == warren_sim::capacity::METRIC_NAME {
            (metric.clone(), "max")
        } else {
            let suffix = metric.strip_prefix("rabbitmq_queue_").ok_or_else(|| {
                format!("external metric {metric:?} has no source; warren autoscale knows rabbitmq_queue_<x> (from rabbitmq_detailed_queue_<x>) and {}", warren_sim::capacity::METRIC_NAME)
            })?;
            (format!("rabbitmq_detailed_queue_{suffix}"), "sum")
        };
        let mut matchers = BTreeMap::new();
        if let Some(selector) = &external.metric.selector {
            if selector
                .match_expressions
                .as_ref()
                .is_some_and(|e| !e.is_empty())
            {
                return Err(format!(
                    "external metric {metric:?}: selector matchExpressions are not supported; use matchLabels"
                ));
            }
            if let Some(labels) = &selector.match_labels {
                matchers.extend(labels.clone());
            }
        }
        Ok(Self {
            series,
            aggregation,
            metric,
            matchers,
        })
    }

    /// The PromQL query prometheus-adapter sends for this metric.
    pub fn promql(&self) -> String {
        let matchers: Vec<String> = self
            .matchers
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!(
            "{}({}{{{}}}) by (queue)",
            self.aggregation,
            self.series,
            matchers.join(",")
        )
    }
}

/// How long one worker's `/metrics` may take: a worker that does not answer in time is read as
/// unchanged, so that a stuck one does not hold up the decision.
pub const WORKER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The broker's series of jobs published to a queue, one per publishing channel.
pub const PUBLISHED_SERIES: &str = "rabbitmq_detailed_queue_messages_published_total";

/// Reads metric values; cheap to clone (clones share the capacity metric's scrapes).
#[derive(Clone, Debug)]
pub struct MetricReader {
    source: MetricSource,
    client: reqwest::Client,
    worker_client: reqwest::Client,
    /// The capacity metric's scrapes so far, per query.
    capacity: Arc<Mutex<BTreeMap<String, CapacityScrapes>>>,
    /// The clock the capacity metric's windows run on, and how fast it runs.
    started: Instant,
    speed: f64,
}

impl MetricReader {
    /// A reader for `source`. `speed` is the autoscaler's: the capacity metric's windows and
    /// drain time are on the engine's clock, which runs `speed` times the wall clock.
    pub fn new(source: MetricSource, speed: f64) -> Self {
        let client = reqwest::Client::builder()
            .timeout(READ_TIMEOUT)
            .build()
            .unwrap_or_default();
        let worker_client = reqwest::Client::builder()
            .timeout(WORKER_READ_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            source,
            client,
            worker_client,
            capacity: Arc::default(),
            started: Instant::now(),
            speed,
        }
    }

    /// The source.
    pub fn source(&self) -> &MetricSource {
        &self.source
    }

    /// Reads one metric's current value; `worker_ports` are the pool's workers' metrics ports
    /// on 127.0.0.1 (the capacity metric from the broker reads their work times).
    pub async fn read(&self, query: &SeriesQuery, worker_ports: &[u16]) -> Result<f64, String> {
        self.read_with_terms(query, worker_ports)
            .await
            .map(|(value, _)| value)
    }

    /// [`MetricReader::read`], with the capacity metric's terms when this reader computed it.
    pub async fn read_with_terms(
        &self,
        query: &SeriesQuery,
        worker_ports: &[u16],
    ) -> Result<(f64, Option<Needed>), String> {
        match &self.source {
            MetricSource::Broker { endpoint }
                if query.metric == warren_sim::capacity::METRIC_NAME =>
            {
                let needed = self.read_capacity(endpoint, query, worker_ports).await?;
                Ok((needed.workers_needed, Some(needed)))
            }
            _ => self.read_value(query).await.map(|value| (value, None)),
        }
    }

    /// The sum of a PromQL query's answer, from a Prometheus source; an empty answer is an error.
    pub async fn instant_query(&self, promql: &str) -> Result<f64, String> {
        let MetricSource::Prometheus { url } = &self.source else {
            return Err("not a Prometheus source".into());
        };
        let api = format!("{}/api/v1/query", url.trim_end_matches('/'));
        let body = self.get(&api, &[("query", promql)]).await?;
        prometheus_vector_sum(&body).map_err(|e| format!("{e} (query {promql} at {url})"))
    }

    async fn read_value(&self, query: &SeriesQuery) -> Result<f64, String> {
        match &self.source {
            MetricSource::Broker { endpoint } => {
                let url = format!(
                    "{}/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count",
                    endpoint.trim_end_matches('/')
                );
                let text = self.get(&url, &[]).await?;
                let matching: Vec<f64> = parse_samples(&text)
                    .into_iter()
                    .filter(|s| {
                        s.name == query.series
                            && query
                                .matchers
                                .iter()
                                .all(|(k, v)| s.labels.get(k) == Some(v))
                    })
                    .map(|s| s.value)
                    .collect();
                if matching.is_empty() {
                    // The adapter answers "not found" for a series that does not exist yet.
                    return Err(format!(
                        "no series {} matches {:?} at {endpoint}",
                        query.series, query.matchers
                    ));
                }
                Ok(matching.iter().fold(0.0, |sum, v| sum + v))
            }
            MetricSource::Prometheus { .. } => self.instant_query(&query.promql()).await,
        }
    }

    /// One scrape of the broker and the workers for the capacity metric, and the metric after it.
    async fn read_capacity(
        &self,
        endpoint: &str,
        query: &SeriesQuery,
        worker_ports: &[u16],
    ) -> Result<Needed, String> {
        let url = format!(
            "{}/metrics/detailed?family=queue_coarse_metrics&family=channel_queue_exchange_metrics",
            endpoint.trim_end_matches('/')
        );
        let text = self.get(&url, &[]).await?;
        let matches = |s: &Sample| {
            query
                .matchers
                .iter()
                .all(|(k, v)| s.labels.get(k) == Some(v))
        };
        let samples = parse_samples(&text);
        let ready: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == "rabbitmq_detailed_queue_messages_ready" && matches(s))
            .map(|s| s.value)
            .collect();
        // As the rule: no series (a queue not declared yet, a leader moving) is the last
        // backlog seen within 2 minutes, else none; only a broker that does not answer is an
        // unavailable metric.
        let ready = (!ready.is_empty()).then(|| ready.iter().sum());
        let published: BTreeMap<String, f64> = samples
            .iter()
            .filter(|s| s.name == PUBLISHED_SERIES && matches(s))
            .map(|s| (format!("{:?}", s.labels), s.value))
            .collect();
        let reads = worker_ports.iter().map(|&port| {
            let client = self.worker_client.clone();
            async move {
                let url = format!("http://127.0.0.1:{port}/metrics");
                let text = async { client.get(url).send().await?.text().await }
                    .await
                    .ok()?;
                let samples = parse_samples(&text);
                let value = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
                Some(WorkerTotals {
                    port,
                    work_secs: value("job_duration_seconds_sum")?,
                    jobs: value("job_duration_seconds_count")?,
                })
            }
        });
        let workers: Vec<Option<WorkerTotals>> = futures_util::future::join_all(reads).await;
        let at_secs = self.started.elapsed().as_secs_f64() * self.speed;
        let scrape = CapacityScrape {
            at_secs,
            ready,
            published,
            worker_ports: worker_ports.to_vec(),
            workers: workers.into_iter().flatten().collect(),
            speed: self.speed,
        };
        let mut all = self
            .capacity
            .lock()
            .map_err(|_| "the capacity metric's state is poisoned".to_owned())?;
        let needed = all
            .entry(query.promql())
            .or_insert_with(|| CapacityScrapes::new(Knobs::default()))
            .observe(&scrape);
        Ok(needed)
    }

    async fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<String, String> {
        let mut target = url::Url::parse(url).map_err(|e| format!("bad URL {url}: {e}"))?;
        if !query.is_empty() {
            target.query_pairs_mut().extend_pairs(query);
        }
        let response = self
            .client
            .get(target)
            .send()
            .await
            .map_err(|e| format!("cannot read {url}: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        Ok(text)
    }
}

/// How long a ready count stands in for a missing one (the rule's `last_over_time(...[2m])`).
pub const BACKLOG_LOOKBACK_SECS: f64 = 120.0;

/// One worker's totals, as its `/metrics` gave them (wall-clock seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkerTotals {
    /// Its metrics port, which names it while it lives.
    pub port: u16,
    /// `job_duration_seconds_sum`.
    pub work_secs: f64,
    /// `job_duration_seconds_count`.
    pub jobs: f64,
}

/// What one read of the capacity metric scraped.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityScrape {
    /// When, on the engine's clock, in seconds.
    pub at_secs: f64,
    /// The queue's ready messages; `None` when the broker had no series for the queue.
    pub ready: Option<f64>,
    /// Each publishing channel's count of messages published to the queue, by its labels.
    pub published: BTreeMap<String, f64>,
    /// The pool's workers at the time, answered or not.
    pub worker_ports: Vec<u16>,
    /// The totals of those that answered.
    pub workers: Vec<WorkerTotals>,
    /// The engine's clock rate: a wall-clock work time counts `speed` times on it.
    pub speed: f64,
}

/// A counter summed over series that come and go (channels that close, workers that stop):
/// each series adds what it rose by since its last sample, a series seen for the first time
/// adds its value (a new channel or worker counts from 0), and one that fell was restarted and
/// adds its new value, as PromQL's `rate` reads a counter reset. So the sum only rises, and a
/// window's increase of it is what the series did in that window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunningTotal {
    last: BTreeMap<String, f64>,
    total: f64,
}

impl RunningTotal {
    /// Takes the current value of every live series (those missing are gone for good) and
    /// returns the total.
    pub fn observe(&mut self, current: BTreeMap<String, f64>) -> f64 {
        for (key, value) in &current {
            if !value.is_finite() || *value < 0.0 {
                continue;
            }
            self.total += match self.last.get(key) {
                Some(last) if value >= last => value - last,
                _ => *value,
            };
        }
        self.last = current;
        self.total
    }

    /// The value last seen of one series.
    pub fn last(&self, key: &str) -> Option<f64> {
        self.last.get(key).copied()
    }
}

/// The capacity metric's scrapes so far: running totals of arrivals, finished jobs and their
/// work time, and the formula that keeps their window.
pub struct CapacityScrapes {
    /// The last ready count seen, and when.
    last_ready: Option<(f64, f64)>,
    arrived: RunningTotal,
    jobs: RunningTotal,
    work_secs: RunningTotal,
    formula: CapacityFormula,
}

impl std::fmt::Debug for CapacityScrapes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapacityScrapes")
            .field("arrived", &self.arrived)
            .field("jobs", &self.jobs)
            .field("work_secs", &self.work_secs)
            .finish_non_exhaustive()
    }
}

impl CapacityScrapes {
    /// No scrape yet (a cold start), with these knobs.
    pub fn new(knobs: Knobs) -> Self {
        Self {
            last_ready: None,
            arrived: RunningTotal::default(),
            jobs: RunningTotal::default(),
            work_secs: RunningTotal::default(),
            formula: CapacityFormula::new(knobs),
        }
    }

    /// The backlog as `max(last_over_time(ready[2m])) or vector(0)` reads it: the newest count
    /// within [`BACKLOG_LOOKBACK_SECS`], else 0.
    fn backlog(&mut self, scrape: &CapacityScrape) -> f64 {
        if let Some(ready) = scrape.ready {
            self.last_ready = Some((scrape.at_secs, ready));
        }
        match self.last_ready {
            Some((at, ready)) if scrape.at_secs - at <= BACKLOG_LOOKBACK_SECS => ready,
            _ => 0.0,
        }
    }

    /// Adds one scrape and gives the metric after it. A worker of the pool that did not answer
    /// is read as unchanged since its last answer, so a slow scrape is no reset.
    pub fn observe(&mut self, scrape: &CapacityScrape) -> Needed {
        let mut jobs = BTreeMap::new();
        let mut work = BTreeMap::new();
        for port in &scrape.worker_ports {
            let key = port.to_string();
            let answered = scrape.workers.iter().find(|w| w.port == *port);
            let (n, secs) = match answered {
                Some(w) => (Some(w.jobs), Some(w.work_secs * scrape.speed)),
                None => (self.jobs.last(&key), self.work_secs.last(&key)),
            };
            if let (Some(n), Some(secs)) = (n, secs) {
                jobs.insert(key.clone(), n);
                work.insert(key, secs);
            }
        }
        let signals = Signals {
            at_secs: scrape.at_secs,
            ready: to_count(self.backlog(scrape)),
            arrived_total: to_count(self.arrived.observe(scrape.published.clone())),
            acked_total: to_count(self.jobs.observe(jobs)),
            busy_secs_total: self.work_secs.observe(work),
            ..Signals::default()
        };
        self.formula.needed(&signals)
    }
}

fn to_count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

/// The sum of an instant-vector answer of Prometheus's query API; an empty vector is an error,
/// as it is for the adapter.
pub fn prometheus_vector_sum(body: &str) -> Result<f64, String> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if json["status"] != "success" {
        return Err(format!("Prometheus error: {}", json["error"]));
    }
    let result = json["data"]["result"]
        .as_array()
        .ok_or("no result vector in Prometheus's answer")?;
    if result.is_empty() {
        return Err("the query returned no series".into());
    }
    result
        .iter()
        .map(|series| {
            series["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("bad sample in {series}"))
        })
        .sum()
}

/// One sample of the Prometheus text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses the samples of a Prometheus (or OpenMetrics) text exposition; comments and lines
/// that do not parse are skipped.
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_sample_line).collect()
}

fn parse_sample_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = BTreeMap::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside)?;
        labels = parsed;
        rest = after;
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",...}` (the text after `{`); returns the labels and the text after `}`.
fn parse_labels(mut rest: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_eq) = rest.split_once('=')?;
        let quoted = after_eq.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                }
                other => value.push(other),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        rest = &quoted[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn external_spec(name: &str, labels: &[(&str, &str)]) -> MetricSpec {
        let yaml = format!(
            "type: External\nexternal:\n  metric:\n    name: {name}\n    selector:\n      matchLabels:\n{}  target:\n    type: AverageValue\n    averageValue: \"5\"\n",
            labels.iter().map(|(k, v)| format!("        {k}: {v}\n")).collect::<String>()
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    #[test]
    fn the_shipped_metric_maps_to_the_adapters_query() {
        let query = SeriesQuery::from_spec(&external_spec(
            "rabbitmq_queue_messages_ready",
            &[("queue", "Orders")],
        ))
        .unwrap();
        assert_eq!(query.series, "rabbitmq_detailed_queue_messages_ready");
        assert_eq!(
            query.promql(),
            r#"sum(rabbitmq_detailed_queue_messages_ready{queue="Orders"}) by (queue)"#
        );
    }

    #[test]
    fn the_capacity_metric_maps_to_the_capacity_adapters_query() {
        let query = SeriesQuery::from_spec(&external_spec(
            "warren_workers_needed",
            &[("queue", "Orders")],
        ))
        .unwrap();
        // As deploy/kubernetes/overlays/prometheus-adapter-capacity/adapter-config.yaml renders it.
        assert_eq!(
            query.promql(),
            r#"max(warren_workers_needed{queue="Orders"}) by (queue)"#
        );
    }

    #[test]
    fn unknown_metrics_are_refused_with_a_reason() {
        let err = SeriesQuery::from_spec(&external_spec("http_requests", &[])).unwrap_err();
        assert!(err.contains("rabbitmq_queue_"), "{err}");
    }

    #[test]
    fn samples_parse_with_labels_escapes_and_without_labels() {
        let text = "# HELP x y\nrabbitmq_detailed_queue_messages_ready{vhost=\"/\",queue=\"Orders\"} 12\nup 1\nweird{a=\"q\\\"uote\",b=\"x,y}\"} 2.5e1\n";
        let samples = parse_samples(text);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].labels["queue"], "Orders");
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(samples[1].name, "up");
        assert_eq!(samples[2].labels["a"], "q\"uote");
        assert_eq!(samples[2].labels["b"], "x,y}");
        assert_eq!(samples[2].value, 25.0);
    }

    fn totals(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn a_running_total_outlives_its_series_and_reads_a_fall_as_a_restart() {
        let mut t = RunningTotal::default();
        assert_eq!(t.observe(totals(&[("a", 10.0)])), 10.0);
        assert_eq!(t.observe(totals(&[("a", 15.0), ("b", 2.0)])), 17.0);
        // a is gone (a closed channel, a stopped worker): what it did stays.
        assert_eq!(t.observe(totals(&[("b", 4.0)])), 19.0);
        // b fell: it restarted, and counts from 0 again.
        assert_eq!(t.observe(totals(&[("b", 1.0)])), 20.0);
        // A NaN or negative sample adds nothing.
        assert_eq!(t.observe(totals(&[("b", f64::NAN)])), 20.0);
    }

    /// 2 jobs/s of 4 s jobs on the engine's clock with 12 ready, scraped every `every` engine
    /// seconds from `from`, with the work split over two workers and published on one channel,
    /// all three replaced by new ones every minute (the old ones seen a last time with their
    /// final counts at the minute, beside the new ones at 0).
    fn steady(scrapes: &mut CapacityScrapes, from: u32, to: u32, every: f64, speed: f64) -> Needed {
        let mut last = None;
        for i in from..=to {
            let t = every * f64::from(i);
            let minute = (t / 60.0).floor();
            let mut published = BTreeMap::new();
            let mut workers = Vec::new();
            let mut generations = vec![(minute, t - 60.0 * minute)];
            if minute > 0.0 && t == 60.0 * minute {
                generations.push((minute - 1.0, 60.0));
            }
            for (generation, since) in generations {
                let jobs = 2.0 * since;
                published.insert(format!("channel {generation}"), jobs);
                for n in 0..2u16 {
                    workers.push(WorkerTotals {
                        port: 1000 + 2 * generation as u16 + n,
                        jobs: jobs / 2.0,
                        work_secs: 4.0 * jobs / 2.0 / speed,
                    });
                }
            }
            last = Some(scrapes.observe(&CapacityScrape {
                at_secs: t,
                ready: Some(12.0),
                published,
                worker_ports: workers.iter().map(|w| w.port).collect(),
                workers,
                speed,
            }));
        }
        last.unwrap()
    }

    #[test]
    fn capacity_from_scrapes_takes_the_rules_windows_over_channels_and_workers_that_come_and_go() {
        let mut scrapes = CapacityScrapes::new(Knobs::default());
        // Cold start: nothing published, no worker, 6 ready: the backlog term at the default
        // work time, 6 x 5 / 30.
        let cold = scrapes.observe(&CapacityScrape {
            at_secs: 0.0,
            ready: Some(6.0),
            published: BTreeMap::new(),
            worker_ports: vec![],
            workers: vec![],
            speed: 1.0,
        });
        assert_eq!(cold.workers_needed, 1.0);
        // As the rule's steady case: 2/s x 4 s / 0.8 + 12 x 4 / 30 = 11.6.
        let n = steady(&mut scrapes, 1, 40, 15.0, 1.0);
        assert!((n.arrival_rate - 2.0).abs() < 1e-9, "{n:?}");
        assert!((n.work_secs - 4.0).abs() < 1e-9, "{n:?}");
        assert!((n.workers_needed - 11.6).abs() < 1e-9, "{n:?}");
    }

    #[test]
    fn a_worker_that_does_not_answer_is_unchanged_not_restarted() {
        let mut scrapes = CapacityScrapes::new(Knobs::default());
        steady(&mut scrapes, 0, 3, 15.0, 1.0);
        // 90 jobs of 4 s by 45 s. At 60 s both workers stop answering (a slow scrape); when
        // they answer again at 75 s they have done 60 more jobs of 6 s: (360 + 360) / 150 jobs
        // is 4.8 s. Counting their totals again as new workers would give 1080 / 240 = 4.5 s.
        let silent = CapacityScrape {
            at_secs: 60.0,
            ready: Some(12.0),
            published: totals(&[("channel 0", 120.0)]),
            worker_ports: vec![1000, 1001],
            workers: vec![],
            speed: 1.0,
        };
        scrapes.observe(&silent);
        let back = scrapes.observe(&CapacityScrape {
            at_secs: 75.0,
            published: totals(&[("channel 0", 150.0)]),
            workers: vec![
                WorkerTotals {
                    port: 1000,
                    jobs: 75.0,
                    work_secs: 360.0,
                },
                WorkerTotals {
                    port: 1001,
                    jobs: 75.0,
                    work_secs: 360.0,
                },
            ],
            ..silent
        });
        assert!((back.work_secs - 4.8).abs() < 1e-9, "{back:?}");
        assert!((back.arrival_rate - 2.0).abs() < 1e-9, "{back:?}");
    }

    #[test]
    fn at_speed_k_the_wall_clock_work_time_counts_k_times_on_the_engines_clock() {
        // The same load as at 1x, run 10 times faster: 0.4 s jobs on the wall clock.
        let mut scrapes = CapacityScrapes::new(Knobs::default());
        let n = steady(&mut scrapes, 0, 40, 15.0, 10.0);
        assert!((n.workers_needed - 11.6).abs() < 1e-9, "{n:?}");
    }

    #[test]
    fn a_scrape_gap_takes_the_last_two_scrapes_and_traffic_stopped_is_no_nan() {
        let mut scrapes = CapacityScrapes::new(Knobs::default());
        steady(&mut scrapes, 0, 3, 15.0, 1.0);
        // 105 s without a scrape: no other scrape in the minute before, so the rate is taken
        // between the last two (45 s and 150 s); the channel kept publishing 2/s.
        let after_gap = scrapes.observe(&CapacityScrape {
            at_secs: 150.0,
            ready: Some(12.0),
            published: totals(&[("channel 0", 300.0)]),
            worker_ports: vec![1000, 1001],
            workers: vec![
                WorkerTotals {
                    port: 1000,
                    jobs: 150.0,
                    work_secs: 600.0,
                },
                WorkerTotals {
                    port: 1001,
                    jobs: 150.0,
                    work_secs: 600.0,
                },
            ],
            speed: 1.0,
        });
        assert!((after_gap.arrival_rate - 2.0).abs() < 1e-9, "{after_gap:?}");
        // Then nothing more arrives or finishes for 10 minutes, the queue empty: 0 arrivals,
        // the default work time, 0 workers needed, and no NaN on the way.
        let mut idle = after_gap;
        for i in 1..=40u32 {
            idle = scrapes.observe(&CapacityScrape {
                at_secs: 150.0 + 15.0 * f64::from(i),
                ready: Some(0.0),
                published: totals(&[("channel 0", 300.0)]),
                worker_ports: vec![1000],
                workers: vec![WorkerTotals {
                    port: 1000,
                    jobs: 150.0,
                    work_secs: 600.0,
                }],
                speed: 1.0,
            });
            assert!(idle.workers_needed.is_finite());
        }
        assert_eq!(idle.arrival_rate, 0.0);
        assert_eq!(idle.work_secs, Knobs::default().default_work_secs);
        assert_eq!(idle.workers_needed, 0.0);
    }

    #[test]
    fn a_missing_queue_series_is_the_last_backlog_for_2_minutes_then_none() {
        let mut scrapes = CapacityScrapes::new(Knobs::default());
        let at = |at_secs: f64, ready: Option<f64>| CapacityScrape {
            at_secs,
            ready,
            published: BTreeMap::new(),
            worker_ports: vec![],
            workers: vec![],
            speed: 1.0,
        };
        // A queue not declared yet: no backlog, no error.
        assert_eq!(scrapes.observe(&at(0.0, None)).backlog, 0.0);
        assert_eq!(scrapes.observe(&at(15.0, Some(30.0))).backlog, 30.0);
        // The series gone (a leader moving): the last count stands for 2 minutes.
        assert_eq!(scrapes.observe(&at(30.0, None)).backlog, 30.0);
        assert_eq!(scrapes.observe(&at(135.0, None)).backlog, 30.0);
        assert_eq!(scrapes.observe(&at(150.0, None)).backlog, 0.0);
    }

    #[test]
    fn prometheus_answers_are_summed_and_empty_ones_refused() {
        let one = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"queue":"Orders"},"value":[1,"17"]}]}}"#;
        assert_eq!(prometheus_vector_sum(one), Ok(17.0));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(prometheus_vector_sum(empty).is_err());
        assert!(prometheus_vector_sum("<html>").is_err());
    }
}
