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
//!   scrapes, at each read, the families [`CAPACITY_FAMILIES`] and keeps the queue's series
//!   (the selector's `vhost` and `queue`: [`queue_scrape`]), and `job_duration_seconds_sum`/
//!   `_count` from each worker of the pool that exports them; a [`CapacityScrapes`] hands them
//!   to `warren_policy::estimator::QueueEstimator`, the estimator the recording rules mirror
//!   (arrivals from RabbitMQ 4.x's per-queue counter or, on 3.10, by conservation; work time
//!   from the histogram, else by Little's law from the broker, else the default; per-channel
//!   counters kept as running totals that outlive their channels). So it works for any queue
//!   and any consumer, with no warren process on either side.
//! - [`MetricSource::Prometheus`] sends the query to Prometheus's HTTP API, as the adapter does.
//!
//! Any failure (unreachable, bad answer, no matching series) is an error string; the autoscaler
//! hands it to the engine as an unavailable metric, which keeps the worker count unchanged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::MetricSpec;
use serde::Deserialize;
use warren_policy::capacity::{Knobs, Needed};
use warren_policy::estimator::{Estimate, QueueEstimator, QueueScrape};

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
        let (series, aggregation) = if metric == warren_policy::capacity::METRIC_NAME {
            (metric.clone(), "max")
        } else {
            let suffix = metric.strip_prefix("rabbitmq_queue_").ok_or_else(|| {
                format!("external metric {metric:?} has no source; warren autoscale knows rabbitmq_queue_<x> (from rabbitmq_detailed_queue_<x>) and {}", warren_policy::capacity::METRIC_NAME)
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
    /// The capacity metric's knobs.
    knobs: Knobs,
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
            knobs: Knobs::default(),
        }
    }

    /// The same reader with these capacity knobs (default: the shipped rules').
    pub fn with_knobs(mut self, knobs: Knobs) -> Self {
        self.knobs = knobs;
        self
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
                if query.metric == warren_policy::capacity::METRIC_NAME =>
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
        let families: Vec<String> = CAPACITY_FAMILIES
            .iter()
            .map(|f| format!("family={f}"))
            .collect();
        let url = format!(
            "{}/metrics/detailed?{}",
            endpoint.trim_end_matches('/'),
            families.join("&")
        );
        let text = self.get(&url, &[]).await?;
        // As the rule: no series (a queue not declared yet, a leader moving) is the last
        // backlog seen within 2 minutes, else none; only a broker that does not answer is an
        // unavailable metric.
        let mut queue = queue_scrape(&parse_samples(&text), &query.matchers);
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
        queue.at_secs = at_secs;
        let scrape = CapacityScrape {
            queue,
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
            .or_insert_with(|| CapacityScrapes::new(self.knobs))
            .observe(&scrape)
            .needed;
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
    /// The broker's series for the queue, on the engine's clock; its measured maps are filled
    /// from `workers` by [`CapacityScrapes::observe`].
    pub queue: QueueScrape,
    /// The pool's workers at the time, answered or not.
    pub worker_ports: Vec<u16>,
    /// The totals of those that answered.
    pub workers: Vec<WorkerTotals>,
    /// The engine's clock rate: a wall-clock work time counts `speed` times on it.
    pub speed: f64,
}

/// The capacity metric's scrapes so far: the queue's estimator (`warren_policy::estimator`), and
/// the totals each worker of the pool last answered.
#[derive(Clone, Debug)]
pub struct CapacityScrapes {
    /// Per worker port: its last (jobs, work seconds on the engine's clock).
    workers: BTreeMap<u16, (f64, f64)>,
    estimator: QueueEstimator,
}

impl CapacityScrapes {
    /// No scrape yet (a cold start), with these knobs.
    pub fn new(knobs: Knobs) -> Self {
        Self {
            workers: BTreeMap::new(),
            estimator: QueueEstimator::new(knobs),
        }
    }

    /// Adds one scrape and gives the metric after it. A worker of the pool that did not answer
    /// is read as unchanged since its last answer, so a slow scrape is no reset.
    pub fn observe(&mut self, scrape: &CapacityScrape) -> Estimate {
        let mut queue = scrape.queue.clone();
        let mut live = BTreeMap::new();
        for port in &scrape.worker_ports {
            let answered = scrape.workers.iter().find(|w| w.port == *port);
            let totals = match answered {
                Some(w) => Some((w.jobs, w.work_secs * scrape.speed)),
                None => self.workers.get(port).copied(),
            };
            if let Some((jobs, secs)) = totals {
                live.insert(*port, (jobs, secs));
                queue.measured_jobs.insert(port.to_string(), jobs);
                queue.measured_work_secs.insert(port.to_string(), secs);
            }
        }
        self.workers = live;
        self.estimator.observe(&queue)
    }
}

/// The broker's series the capacity metric reads, by name (see `warren_policy::estimator`).
mod series {
    pub const READY: &str = "rabbitmq_detailed_queue_messages_ready";
    pub const UNACKED: &str = "rabbitmq_detailed_queue_messages_unacked";
    pub const MESSAGES: &str = "rabbitmq_detailed_queue_messages";
    pub const CONSUMERS: &str = "rabbitmq_detailed_queue_consumers";
    /// RabbitMQ 4.0+, family `queue_exchange_metrics`.
    pub const PUBLISHED: &str = "rabbitmq_detailed_queue_exchange_messages_published_total";
    /// RabbitMQ 4.0+, family `queue_delivery_metrics`.
    pub const FINISHED_PER_QUEUE: [&str; 3] = [
        "rabbitmq_detailed_queue_messages_acked_total",
        "rabbitmq_detailed_queue_messages_delivered_total",
        "rabbitmq_detailed_queue_get_total",
    ];
    /// RabbitMQ 3.10+, family `channel_queue_metrics` (labels `{channel, vhost, queue}`).
    pub const FINISHED_PER_CHANNEL: [&str; 3] = [
        "rabbitmq_detailed_channel_messages_acked_total",
        "rabbitmq_detailed_channel_messages_delivered_total",
        "rabbitmq_detailed_channel_get_total",
    ];
}

/// The families of `/metrics/detailed` the capacity metric reads.
pub const CAPACITY_FAMILIES: [&str; 5] = [
    "queue_coarse_metrics",
    "queue_consumer_count",
    "channel_queue_metrics",
    "queue_exchange_metrics",
    "queue_delivery_metrics",
];

/// One queue's series in a scrape of the broker's `/metrics/detailed`: the samples that match
/// every label of `matchers` (its `vhost` and `queue`). Where RabbitMQ 4.x's per-queue
/// delivery counters exist, the per-channel ones (which 4.x still has) are not added to them.
pub fn queue_scrape(samples: &[Sample], matchers: &BTreeMap<String, String>) -> QueueScrape {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| matchers.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    let gauge = |name: &str| {
        let values: Vec<f64> = matching
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    let counters = |names: &[&str]| -> BTreeMap<String, f64> {
        matching
            .iter()
            .filter(|s| names.contains(&s.name.as_str()))
            .map(|s| (format!("{}{:?}", s.name, s.labels), s.value))
            .collect()
    };
    let per_queue = counters(&series::FINISHED_PER_QUEUE);
    QueueScrape {
        at_secs: 0.0,
        ready: gauge(series::READY),
        unacked: gauge(series::UNACKED),
        messages: gauge(series::MESSAGES),
        consumers: gauge(series::CONSUMERS),
        published: counters(&[series::PUBLISHED]),
        finished: if per_queue.is_empty() {
            counters(&series::FINISHED_PER_CHANNEL)
        } else {
            per_queue
        },
        ..QueueScrape::default()
    }
}

/// The sum of an instant-vector answer of Prometheus's query API; an empty vector is an error,
/// as it is for the adapter.
pub fn prometheus_vector_sum(body: &str) -> Result<f64, String> {
    let series = api_answer(body).map_err(|e| match e {
        ApiError::NotAnAnswer(e) => format!("not JSON: {e}"),
        ApiError::Refused(why) => format!("Prometheus error: {why:?}"),
    })?;
    if series.is_empty() {
        return Err("the query returned no series".into());
    }
    series
        .iter()
        .map(|s| match s.points.as_slice() {
            [(_, v)] => v.parse::<f64>().map_err(|_| format!("bad sample {v:?}")),
            _ => Err("no result vector in Prometheus's answer".to_owned()),
        })
        .sum()
}

/// One series of an answer of Prometheus' HTTP API (`query` or `query_range`): its labels and
/// its `(unix seconds, value)` points, the value as Prometheus wrote it (a number, `NaN` or
/// `+Inf`). An instant vector's series have one point each.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiSeries {
    /// The series' labels, its name among them.
    pub labels: BTreeMap<String, String>,
    /// Its points.
    pub points: Vec<(f64, String)>,
}

/// Why a body is not an answer with series.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiError {
    /// Not an answer of Prometheus' API at all; serde's reason.
    NotAnAnswer(String),
    /// Prometheus refused the query; its reason.
    Refused(String),
}

/// The series of an answer of Prometheus' HTTP API: a matrix's or an instant vector's; none for
/// a scalar or a string.
pub fn api_answer(body: &str) -> Result<Vec<ApiSeries>, ApiError> {
    let answer: ApiAnswer =
        serde_json::from_str(body).map_err(|e| ApiError::NotAnAnswer(e.to_string()))?;
    if answer.status != "success" {
        return Err(ApiError::Refused(answer.error.unwrap_or_default()));
    }
    Ok(match answer.data {
        Some(ApiData::Matrix(series)) => series
            .into_iter()
            .map(|s| ApiSeries {
                labels: s.metric,
                points: s.values,
            })
            .collect(),
        Some(ApiData::Vector(samples)) => samples
            .into_iter()
            .map(|s| ApiSeries {
                labels: s.metric,
                points: vec![s.value],
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// One answer of Prometheus' HTTP API.
#[derive(Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Matrix(Vec<RangeSeries>),
    Vector(Vec<InstantSample>),
    Scalar(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct RangeSeries {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct InstantSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
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

    /// The broker's answer for queue `emails` in vhost `shop`, as RabbitMQ 3.10.8 gave it on
    /// this machine (`curl "$RABBIT_PROMETHEUS_URL/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count&family=channel_queue_metrics&family=channel_queue_exchange_metrics&family=queue_exchange_metrics&family=queue_delivery_metrics"`
    /// with warren web and one warren worker on the queue), HELP/TYPE lines and the dead-letter
    /// queue left out.
    const CAPTURED_310: &str = r#"rabbitmq_detailed_queue_messages_ready{vhost="shop",queue="emails"} 0
rabbitmq_detailed_queue_messages_unacked{vhost="shop",queue="emails"} 2
rabbitmq_detailed_queue_messages{vhost="shop",queue="emails"} 2
rabbitmq_detailed_queue_process_reductions_total{vhost="shop",queue="emails"} 46495
rabbitmq_detailed_queue_consumers{vhost="shop",queue="emails"} 1
rabbitmq_detailed_queue_messages_ready{vhost="/",queue="emails"} 7
rabbitmq_detailed_channel_get_ack_total{channel="<0.934.0>",vhost="shop",queue="emails"} 0
rabbitmq_detailed_channel_get_total{channel="<0.934.0>",vhost="shop",queue="emails"} 0
rabbitmq_detailed_channel_messages_delivered_ack_total{channel="<0.934.0>",vhost="shop",queue="emails"} 20
rabbitmq_detailed_channel_messages_delivered_total{channel="<0.934.0>",vhost="shop",queue="emails"} 0
rabbitmq_detailed_channel_messages_redelivered_total{channel="<0.934.0>",vhost="shop",queue="emails"} 0
rabbitmq_detailed_channel_messages_acked_total{channel="<0.934.0>",vhost="shop",queue="emails"} 20
rabbitmq_detailed_channel_get_empty_total{channel="<0.934.0>",vhost="shop",queue="emails"} 0
rabbitmq_detailed_queue_messages_published_total{channel="<0.951.0>",queue_vhost="shop",queue="emails",exchange_vhost="shop",exchange=""} 5
rabbitmq_detailed_queue_messages_published_total{channel="<0.946.0>",queue_vhost="shop",queue="emails",exchange_vhost="shop",exchange=""} 5
"#;

    /// The same queue as RabbitMQ 4.x names it (collector source at v4.0.0: families
    /// `queue_exchange_metrics` and `queue_delivery_metrics`, labels `{vhost, exchange, queue}`
    /// and `{vhost, queue}`), beside the per-channel counters 4.x still has.
    const SHAPED_4X: &str = r#"rabbitmq_detailed_queue_messages_ready{vhost="shop",queue="emails"} 3
rabbitmq_detailed_queue_messages_unacked{vhost="shop",queue="emails"} 2
rabbitmq_detailed_queue_messages{vhost="shop",queue="emails"} 5
rabbitmq_detailed_queue_consumers{vhost="shop",queue="emails"} 2
rabbitmq_detailed_channel_messages_acked_total{channel="<0.934.0>",vhost="shop",queue="emails"} 20
rabbitmq_detailed_queue_exchange_messages_published_total{vhost="shop",exchange="",queue="emails"} 25
rabbitmq_detailed_queue_exchange_messages_published_total{vhost="shop",exchange="mail",queue="emails"} 4
rabbitmq_detailed_queue_messages_acked_total{vhost="shop",queue="emails"} 20
rabbitmq_detailed_queue_messages_delivered_total{vhost="shop",queue="emails"} 0
rabbitmq_detailed_queue_get_total{vhost="shop",queue="emails"} 1
"#;

    fn shop_emails() -> BTreeMap<String, String> {
        [("vhost", "shop"), ("queue", "emails")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_310_scrape_gives_the_queues_counts_and_its_consumers_finished_counters() {
        let q = queue_scrape(&parse_samples(CAPTURED_310), &shop_emails());
        assert_eq!(
            q.ready,
            Some(0.0),
            "the same queue name in vhost / is another queue"
        );
        assert_eq!(q.unacked, Some(2.0));
        assert_eq!(q.messages, Some(2.0));
        assert_eq!(q.consumers, Some(1.0));
        // 3.10 has no per-queue publish counter; its per-channel ones (label queue_vhost,
        // not vhost) are not read.
        assert!(q.published.is_empty(), "{q:?}");
        // acked + auto-ack delivered + auto-ack gets of the one consumer channel.
        assert_eq!(q.finished.len(), 3, "{q:?}");
        assert_eq!(q.finished.values().sum::<f64>(), 20.0);
    }

    #[test]
    fn a_4x_scrape_takes_the_per_queue_counters_and_not_the_channels_too() {
        let q = queue_scrape(&parse_samples(SHAPED_4X), &shop_emails());
        assert_eq!(q.published.values().sum::<f64>(), 29.0);
        // 20 acked + 1 get, not the channel's 20 again.
        assert_eq!(q.finished.values().sum::<f64>(), 21.0);
    }

    /// 2 jobs/s of 4 s jobs on the engine's clock with 12 ready, scraped every `every` engine
    /// seconds from `from`, the work split over two workers of the pool, both replaced by new
    /// ones every minute (the old ones seen a last time with their final counts at the minute,
    /// beside the new ones at 0). The broker's finished counter is on one consumer channel.
    fn steady(scrapes: &mut CapacityScrapes, from: u32, to: u32, every: f64, speed: f64) -> Needed {
        let mut last = None;
        for i in from..=to {
            let t = every * f64::from(i);
            let minute = (t / 60.0).floor();
            let mut workers = Vec::new();
            let mut generations = vec![(minute, t - 60.0 * minute)];
            if minute > 0.0 && t == 60.0 * minute {
                generations.push((minute - 1.0, 60.0));
            }
            for (generation, since) in generations {
                let jobs = 2.0 * since;
                for n in 0..2u16 {
                    workers.push(WorkerTotals {
                        port: 1000 + 2 * generation as u16 + n,
                        jobs: jobs / 2.0,
                        work_secs: 4.0 * jobs / 2.0 / speed,
                    });
                }
            }
            last = Some(scrapes.observe(&CapacityScrape {
                queue: QueueScrape {
                    at_secs: t,
                    ready: Some(12.0),
                    unacked: Some(8.0),
                    messages: Some(20.0),
                    consumers: Some(8.0),
                    finished: [("channel".to_owned(), 2.0 * t)].into(),
                    ..QueueScrape::default()
                },
                worker_ports: workers.iter().map(|w| w.port).collect(),
                workers,
                speed,
            }));
        }
        last.unwrap().needed
    }

    #[test]
    fn capacity_from_scrapes_measures_work_over_workers_that_come_and_go() {
        let mut scrapes = CapacityScrapes::new(Knobs::OLD_DEFAULT);
        // As the rule's steady case: 2/s x 4 s / 0.8 + 12 x 4 / 30 = 11.6.
        let n = steady(&mut scrapes, 0, 40, 15.0, 1.0);
        assert!((n.arrival_rate - 2.0).abs() < 1e-9, "{n:?}");
        assert!((n.work_secs - 4.0).abs() < 1e-9, "{n:?}");
        assert!((n.workers_needed - 11.6).abs() < 1e-9, "{n:?}");
    }

    #[test]
    fn a_worker_that_does_not_answer_is_unchanged_not_restarted() {
        let mut scrapes = CapacityScrapes::new(Knobs::OLD_DEFAULT);
        steady(&mut scrapes, 0, 3, 15.0, 1.0);
        // 90 jobs of 4 s by 45 s. At 60 s both workers stop answering (a slow scrape); when
        // they answer again at 75 s they have done 60 more jobs of 6 s: (360 + 360) / 150 jobs
        // is 4.8 s. Counting their totals again as new workers would give 1080 / 240 = 4.5 s.
        let broker = |t: f64| QueueScrape {
            at_secs: t,
            ready: Some(12.0),
            unacked: Some(8.0),
            messages: Some(20.0),
            consumers: Some(8.0),
            finished: [("channel".to_owned(), 2.0 * t)].into(),
            ..QueueScrape::default()
        };
        scrapes.observe(&CapacityScrape {
            queue: broker(60.0),
            worker_ports: vec![1000, 1001],
            workers: vec![],
            speed: 1.0,
        });
        let back = scrapes.observe(&CapacityScrape {
            queue: broker(75.0),
            worker_ports: vec![1000, 1001],
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
            speed: 1.0,
        });
        assert!((back.needed.work_secs - 4.8).abs() < 1e-9, "{back:?}");
        assert!((back.needed.arrival_rate - 2.0).abs() < 1e-9, "{back:?}");
    }

    #[test]
    fn at_speed_k_the_wall_clock_work_time_counts_k_times_on_the_engines_clock() {
        // The same load as at 1x, run 10 times faster: 0.4 s jobs on the wall clock.
        let mut scrapes = CapacityScrapes::new(Knobs::OLD_DEFAULT);
        let n = steady(&mut scrapes, 0, 40, 15.0, 10.0);
        assert!((n.workers_needed - 11.6).abs() < 1e-9, "{n:?}");
    }

    #[test]
    fn without_a_pool_histogram_the_work_time_comes_from_the_broker() {
        // A foreign consumer pool: no metrics ports. 8 busy of 8 consumers, 2 finished per
        // second: 4 s by Little's law.
        let mut scrapes = CapacityScrapes::new(Knobs::OLD_DEFAULT);
        let mut last = None;
        for i in 0..=40u32 {
            let t = 15.0 * f64::from(i);
            last = Some(scrapes.observe(&CapacityScrape {
                queue: QueueScrape {
                    at_secs: t,
                    ready: Some(12.0),
                    unacked: Some(8.0),
                    messages: Some(20.0),
                    consumers: Some(8.0),
                    finished: [("channel".to_owned(), 2.0 * t)].into(),
                    ..QueueScrape::default()
                },
                worker_ports: vec![],
                workers: vec![],
                speed: 1.0,
            }));
        }
        let e = last.unwrap();
        assert_eq!(e.work, warren_policy::estimator::WorkSource::Broker);
        assert!((e.needed.workers_needed - 11.6).abs() < 1e-9, "{e:?}");
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
