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
//! (`deploy/kubernetes/base/prometheus/rules.yml`); it is read, as the capacity overlay's adapter
//! rule reads it, with `max(warren_workers_needed{<matchers>}) by (queue)`, from Prometheus only.
//!
//! - [`MetricSource::Broker`] reads the broker's prometheus plugin,
//!   `/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count`, and sums the
//!   matching samples itself: no Prometheus needed, one hop less lag.
//! - [`MetricSource::Prometheus`] sends the query to Prometheus's HTTP API, as the adapter does.
//!
//! Any failure (unreachable, bad answer, no matching series) is an error string; the autoscaler
//! hands it to the engine as an unavailable metric, which keeps the worker count unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::MetricSpec;

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

/// Reads metric values; cheap to clone.
#[derive(Clone, Debug)]
pub struct MetricReader {
    source: MetricSource,
    client: reqwest::Client,
}

impl MetricReader {
    /// A reader for `source`.
    pub fn new(source: MetricSource) -> Self {
        let client = reqwest::Client::builder()
            .timeout(READ_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self { source, client }
    }

    /// The source.
    pub fn source(&self) -> &MetricSource {
        &self.source
    }

    /// Reads one metric's current value.
    pub async fn read(&self, query: &SeriesQuery) -> Result<f64, String> {
        match &self.source {
            MetricSource::Broker { .. } if query.metric == warren_sim::capacity::METRIC_NAME => {
                Err(format!(
                    "{} is a Prometheus recording rule: use --metric-source prometheus",
                    query.metric
                ))
            }
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
            MetricSource::Prometheus { url } => {
                let api = format!("{}/api/v1/query", url.trim_end_matches('/'));
                let promql = query.promql();
                let body = self.get(&api, &[("query", promql.as_str())]).await?;
                prometheus_vector_sum(&body).map_err(|e| format!("{e} (query {promql} at {url})"))
            }
        }
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

    #[test]
    fn prometheus_answers_are_summed_and_empty_ones_refused() {
        let one = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"queue":"Orders"},"value":[1,"17"]}]}}"#;
        assert_eq!(prometheus_vector_sum(one), Ok(17.0));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(prometheus_vector_sum(empty).is_err());
        assert!(prometheus_vector_sum("<html>").is_err());
    }
}
