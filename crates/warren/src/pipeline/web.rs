//! `warren web`: the HTTP server that turns `GET /generate` into confirmed jobs.
//!
//! [`app`] builds the whole HTTP surface (tested in-process with `oneshot`); [`run`] binds it,
//! starts the [`Publisher`] and drains on shutdown: stop accepting, let in-flight requests finish
//! (their publishes confirmed or answered 503), then close the AMQP connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Json, Router};
use clap::Args;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::config::{BrokerConfig, ConfigError};
use crate::metrics;
use crate::pipeline::broker::BrokerArgs;
use crate::pipeline::idempotency::{IdempotencyKey, KeyError, KeyedOutcome, Window};
use crate::pipeline::job::JobId;
use crate::pipeline::publisher::{PublishError, Publisher, PublisherOptions};

/// The request header naming a request, so that its retries publish nothing again.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The most jobs one `/generate?count=N` call may ask for.
pub const MAX_BATCH: u16 = 1000;

/// Settings of `warren web`, validated.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Address to listen on (port 0 picks a free one, which is logged).
    pub listen: SocketAddr,
    /// Broker and queue.
    pub broker: BrokerConfig,
    /// Publisher tuning (confirm bound, channels).
    pub publisher: PublisherOptions,
    /// Longest time a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Most requests served at once; more are answered 503 at once.
    pub max_concurrent_requests: usize,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// Most job ids the idempotency window remembers (its memory bound).
    pub idempotency_max_jobs: usize,
}

/// The web server's metrics, named as the original application's README states.
pub struct WebMetrics {
    /// `http_request_total{path}`: requests by route template.
    pub requests: Family<PathLabel, Counter>,
    /// `request_status_total{path,status}`: responses by route and the status code really sent.
    pub statuses: Family<StatusLabels, Counter>,
    /// `http_request_duration_seconds{path}`.
    pub durations: Family<PathLabel, Histogram, fn() -> Histogram>,
    /// `jobs_published_total`: jobs the broker confirmed.
    pub published: Counter,
    /// `publish_failures_total{reason}`: jobs not accepted, by reason.
    pub publish_failures: Family<ReasonLabel, Counter>,
    /// `idempotent_replays_total`: requests answered from an earlier one with the same key.
    pub replays: Counter,
}

/// Label set `{path}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// The route template, or `other` for unknown paths (bounded cardinality).
    pub path: &'static str,
}

/// Label set `{path,status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The route template, or `other`.
    pub path: &'static str,
    /// The HTTP status code sent.
    pub status: u16,
}

/// Label set `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the publish failed.
    pub reason: &'static str,
}

impl WebMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self {
            requests: Family::default(),
            statuses: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(metrics::latency_buckets())),
            published: Counter::default(),
            publish_failures: Family::default(),
            replays: Counter::default(),
        };
        registry.register(
            "http_request",
            "HTTP requests by route",
            metrics.requests.clone(),
        );
        registry.register(
            "request_status",
            "HTTP responses by route and status code sent",
            metrics.statuses.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration by route",
            metrics.durations.clone(),
        );
        registry.register(
            "jobs_published",
            "Jobs confirmed by the broker",
            metrics.published.clone(),
        );
        registry.register(
            "publish_failures",
            "Jobs not accepted (answered 503), by reason",
            metrics.publish_failures.clone(),
        );
        registry.register(
            "idempotent_replays",
            "Requests answered with an earlier request's jobs (same Idempotency-Key), publishing nothing",
            metrics.replays.clone(),
        );
        Arc::new(metrics)
    }
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Publishes jobs.
    pub publisher: Publisher,
    /// The web server's metrics.
    pub metrics: Arc<WebMetrics>,
    /// The registry `/metrics` renders.
    pub registry: Arc<Registry>,
    /// The `Idempotency-Key`s seen recently.
    pub idempotency: Arc<Window>,
    /// How long a retry waits for an earlier request's confirm (the confirm bound).
    pub confirm_timeout: Duration,
}

/// HTTP limits applied to every request.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Most requests served at once.
    pub max_concurrent_requests: usize,
}

/// The whole HTTP surface of `warren web`.
pub fn app(state: AppState, limits: HttpLimits) -> Router {
    let overload = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|error: BoxError| async move {
            if error.is::<tower::timeout::error::Elapsed>() {
                unavailable("request timed out")
            } else {
                unavailable("server overloaded")
            }
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests,
        ))
        .timeout(limits.request_timeout);
    Router::new()
        .route("/generate", get(generate))
        .route(
            "/metrics",
            get(|State(s): State<AppState>, headers: HeaderMap| async move {
                metrics::render(&s.registry, &headers)
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such path") })
        .method_not_allowed_fallback(|| async {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(overload)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts every request by route template and the status code really sent.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = route_label(request.extensions().get::<MatchedPath>());
    let started = Instant::now();
    let response = next.run(request).await;
    let m = &state.metrics;
    m.requests.get_or_create(&PathLabel { path }).inc();
    m.statuses
        .get_or_create(&StatusLabels {
            path,
            status: response.status().as_u16(),
        })
        .inc();
    m.durations
        .get_or_create(&PathLabel { path })
        .observe(started.elapsed().as_secs_f64());
    response
}

fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    match matched.map(MatchedPath::as_str) {
        Some("/generate") => "/generate",
        Some("/metrics") => "/metrics",
        Some("/healthz") => "/healthz",
        Some("/readyz") => "/readyz",
        _ => "other",
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.publisher.not_ready() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => unavailable(&why),
    }
}

/// The request's `Idempotency-Key`, if it sent one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, KeyError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    IdempotencyKey::parse(value).map(Some)
}

async fn generate(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let count = match parse_generate_query(uri.query()) {
        Ok(count) => count,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let json = accepts_json(&headers);
    if let Some(key) = key {
        return generate_keyed(&state, &key, count, json).await;
    }
    let m = &state.metrics;
    match count {
        None => match state.publisher.publish().await {
            Ok(id) => {
                m.published.inc();
                if json {
                    Json(json!({ "id": id.as_str() })).into_response()
                } else {
                    format!("Welcome! {id}\n").into_response()
                }
            }
            Err(unaccepted) => {
                let e = unaccepted.error;
                m.publish_failures
                    .get_or_create(&ReasonLabel { reason: e.reason() })
                    .inc();
                let pending: Vec<JobId> = unaccepted.late.into_iter().map(|l| l.id).collect();
                publish_unavailable(&e, &[], e.may_run(), &pending)
            }
        },
        Some(count) => match state.publisher.publish_batch(usize::from(count)).await {
            Ok(ids) => {
                m.published.inc_by(ids.len() as u64);
                list_ids(&ids, json)
            }
            Err(batch) => {
                m.published.inc_by(batch.confirmed.len() as u64);
                let failed = usize::from(count) - batch.confirmed.len();
                m.publish_failures
                    .get_or_create(&ReasonLabel {
                        reason: batch.error.reason(),
                    })
                    .inc_by(failed as u64);
                let pending: Vec<JobId> = batch.late.into_iter().map(|l| l.id).collect();
                publish_unavailable(&batch.error, &batch.confirmed, batch.may_run > 0, &pending)
            }
        },
    }
}

/// `/generate` with an `Idempotency-Key`: the first request publishes, its retries repeat it.
async fn generate_keyed(
    state: &AppState,
    key: &IdempotencyKey,
    count: Option<u16>,
    json: bool,
) -> Response {
    let m = &state.metrics;
    let n = count.unwrap_or(1);
    let outcome = state
        .idempotency
        .publish(&state.publisher, key, n, state.confirm_timeout)
        .await;
    match outcome {
        KeyedOutcome::Confirmed { ids, replayed } => {
            if replayed {
                m.replays.inc();
            } else {
                m.published.inc_by(ids.len() as u64);
            }
            match (count, ids.first()) {
                (None, Some(id)) if json => Json(json!({ "id": id.as_str() })).into_response(),
                (None, Some(id)) => format!("Welcome! {id}\n").into_response(),
                _ => list_ids(&ids, json),
            }
        }
        KeyedOutcome::Unavailable {
            error,
            confirmed,
            may_run,
            pending,
        } => {
            m.publish_failures
                .get_or_create(&ReasonLabel {
                    reason: error.reason(),
                })
                .inc_by(u64::from(n).saturating_sub(confirmed.len() as u64));
            publish_unavailable(&error, &confirmed, may_run, &pending)
        }
        KeyedOutcome::InProgress { confirmed } => {
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "error": "an earlier request with this Idempotency-Key is still waiting for the broker's confirm; nothing was published",
                    "reason": "in_progress",
                    "outcome": "unknown",
                    "confirmed": confirmed.iter().map(JobId::as_str).collect::<Vec<_>>(),
                })),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        KeyedOutcome::Unknown { confirmed, unknown } => (
            StatusCode::CONFLICT,
            Json(json!({
                "error": format!("the broker never answered for {unknown} job(s) of the first request with this Idempotency-Key: they may run; retry with a new key to publish again"),
                "outcome": "unknown",
                "confirmed": confirmed.iter().map(JobId::as_str).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        KeyedOutcome::CountMismatch { first } => json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("this Idempotency-Key was first used with count={first}; a retry must ask for the same count"),
        ),
    }
}

fn list_ids(ids: &[JobId], json: bool) -> Response {
    if json {
        Json(ids.iter().map(JobId::as_str).collect::<Vec<_>>()).into_response()
    } else {
        let mut body = String::with_capacity(ids.len() * 27);
        for id in ids {
            body.push_str(id.as_str());
            body.push('\n');
        }
        body.into_response()
    }
}

/// Why a `/generate` query string is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A parameter other than `count`.
    #[error("unknown query parameter {0}; only count is accepted")]
    UnknownParameter(String),
    /// `count` given more than once.
    #[error("count given more than once")]
    RepeatedCount,
    /// `count` not a whole number in range.
    #[error("count must be a whole number from 1 to {MAX_BATCH}, not {0}")]
    BadCount(String),
}

/// Parses `/generate`'s query: nothing (one job) or `count=N` with N in 1..=1000.
pub fn parse_generate_query(query: Option<&str>) -> Result<Option<u16>, QueryError> {
    let mut count = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key != "count" {
            return Err(QueryError::UnknownParameter(quoted(&key)));
        }
        if count.is_some() {
            return Err(QueryError::RepeatedCount);
        }
        let n: u16 = value
            .parse()
            .ok()
            .filter(|n| (1..=MAX_BATCH).contains(n))
            .ok_or_else(|| QueryError::BadCount(quoted(&value)))?;
        count = Some(n);
    }
    Ok(count)
}

/// Client input quoted for an error message, cut to a bounded length.
fn quoted(raw: &str) -> String {
    let mut shown = format!("{raw:?}");
    if shown.chars().count() > 64 {
        shown = shown.chars().take(60).collect::<String>() + "…\"";
    }
    shown
}

fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().starts_with("application/json"))
        })
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unavailable(message: &str) -> Response {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 503 for jobs not accepted. `outcome` tells the client whether a retry may duplicate:
/// `not_queued` (none of the unconfirmed jobs will run) or `unknown` (some may still run);
/// `pending` lists the jobs whose confirm is still awaited.
fn publish_unavailable(
    error: &PublishError,
    confirmed: &[JobId],
    may_run: bool,
    pending: &[JobId],
) -> Response {
    let (outcome, meaning) = if may_run {
        ("unknown", "the broker did not answer in time: the job may still run; retry with the same Idempotency-Key to avoid a duplicate")
    } else {
        (
            "not_queued",
            "the job was not queued and will not run; retry",
        )
    };
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "error": error.to_string(),
            "reason": error.reason(),
            "outcome": outcome,
            "meaning": meaning,
            "confirmed": confirmed.iter().map(JobId::as_str).collect::<Vec<_>>(),
            "pending": pending.iter().map(JobId::as_str).collect::<Vec<_>>(),
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// How often web looks whether it went quiet, to give a burst's memory back
/// ([`crate::memory::release_when_quiet`]): a burst's pages return 10-20 s after its end.
const TRIM_PERIOD: Duration = Duration::from_secs(10);

/// Under a load that does not stop, web trims every this many [`TRIM_PERIOD`]s (a minute).
const TRIM_BUSY_EVERY: u32 = 6;

/// Runs `warren web` until `shutdown` is cancelled, then drains.
pub async fn run(config: WebConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr()?;
    let mut registry = Registry::default();
    let web_metrics = WebMetrics::register(&mut registry);
    let published = web_metrics.published.clone();
    let (publisher, supervisor) = Publisher::start(config.broker.clone(), config.publisher.clone());
    publisher.metrics().register(&mut registry);
    let state = AppState {
        publisher: publisher.clone(),
        metrics: web_metrics,
        registry: Arc::new(registry),
        idempotency: Arc::new(Window::new(
            config.idempotency_window,
            config.idempotency_max_jobs,
        )),
        confirm_timeout: config.publisher.confirm_timeout,
    };
    let limits = HttpLimits {
        request_timeout: config.request_timeout,
        max_concurrent_requests: config.max_concurrent_requests,
    };
    tracing::info!(listen = %local, broker = %config.broker.url, queue = %config.broker.queue, "warren web listening");
    let trim = tokio::spawn(crate::memory::release_when_quiet(
        {
            let published = published.clone();
            move || published.get()
        },
        crate::memory::release_free_pages,
        TRIM_PERIOD,
        TRIM_BUSY_EVERY,
        shutdown.clone(),
    ));
    serve(listener, app(state, limits), shutdown).await;
    let _ = trim.await;
    tracing::info!("in-flight requests finished; closing the broker connection");
    publisher.close().await;
    let _ = supervisor.await;
    tracing::info!(jobs_published = published.get(), "warren web stopped");
    Ok(())
}

/// Longest time a client may take to send a request's headers, counted from the end of the
/// previous response (or from the connection's start): a client sending headers slowly, or an
/// idle connection, is closed after it, so it cannot hold a connection and its memory for ever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves HTTP/1.1 on `listener` until `shutdown`; then stops accepting, lets requests in
/// flight finish and closes idle connections.
///
/// Not `axum::serve`: it sets no header read timeout, so a client sending its headers a byte
/// at a time (or nothing at all) kept its connection open indefinitely.
async fn serve(listener: tokio::net::TcpListener, app: Router, shutdown: CancellationToken) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // keep serving the connections we have, and try again shortly.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(app.clone()),
        );
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// Options of `warren web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Broker and queue.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// HTTP port (0 picks a free port and logs it).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// How long /generate waits for the broker's confirm before answering 503, in ms.
    #[arg(long, env = "CONFIRM_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub confirm_timeout_ms: u64,
    /// Longest time any request may take before it is answered 503, in ms.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=300_000))]
    pub request_timeout_ms: u64,
    /// Most requests served at once; beyond it requests are answered 503 at once.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_concurrent_requests: u64,
    /// AMQP channels (in confirm mode) that publishes are spread over.
    #[arg(long, env = "PUBLISH_CHANNELS", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub publish_channels: u64,
    /// How long an Idempotency-Key is remembered, in ms (a retry within it publishes nothing).
    #[arg(long, env = "IDEMPOTENCY_WINDOW_MS", default_value_t = 600_000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub idempotency_window_ms: u64,
    /// Most job ids the Idempotency-Key window remembers (a key and its record: 100 to 400 bytes a
    /// job, depending on the key's length); beyond it the
    /// least recently used keys are forgotten, and their retries publish again.
    #[arg(long, env = "IDEMPOTENCY_MAX_JOBS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub idempotency_max_jobs: u64,
}

impl WebArgs {
    /// The validated config.
    pub fn to_config(&self) -> Result<WebConfig, ConfigError> {
        if self.confirm_timeout_ms >= self.request_timeout_ms {
            return Err(ConfigError::new(
                "CONFIRM_TIMEOUT_MS must be shorter than REQUEST_TIMEOUT_MS",
            ));
        }
        Ok(WebConfig {
            listen: SocketAddr::new(self.bind, self.port),
            broker: self.broker.to_config()?,
            publisher: PublisherOptions {
                confirm_timeout: Duration::from_millis(self.confirm_timeout_ms),
                channels: usize::try_from(self.publish_channels).unwrap_or(4),
            },
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_concurrent_requests: usize::try_from(self.max_concurrent_requests).unwrap_or(4096),
            idempotency_window: Duration::from_millis(self.idempotency_window_ms),
            idempotency_max_jobs: usize::try_from(self.idempotency_max_jobs).unwrap_or(100_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generate_query_accepts_nothing_or_a_count_in_range() {
        assert_eq!(parse_generate_query(None), Ok(None));
        assert_eq!(parse_generate_query(Some("")), Ok(None));
        assert_eq!(parse_generate_query(Some("count=1")), Ok(Some(1)));
        assert_eq!(parse_generate_query(Some("count=1000")), Ok(Some(1000)));
    }

    #[test]
    fn generate_query_rejects_bad_counts_and_unknown_parameters() {
        for bad in [
            "count=0",
            "count=1001",
            "count=abc",
            "count=-1",
            "count=",
            "count=1.5",
            "count=99999999999",
        ] {
            assert!(
                matches!(
                    parse_generate_query(Some(bad)),
                    Err(QueryError::BadCount(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse_generate_query(Some("n=3")),
            Err(QueryError::UnknownParameter("\"n\"".into()))
        );
        assert_eq!(
            parse_generate_query(Some("count=1&count=2")),
            Err(QueryError::RepeatedCount)
        );
    }

    /// Percent-encodes every byte of `text`, as a client may.
    fn percent_encoded(text: &str) -> String {
        text.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    proptest! {
        #[test]
        fn a_count_is_accepted_exactly_when_it_is_1_to_1000(n in any::<u64>()) {
            let result = parse_generate_query(Some(&format!("count={n}")));
            if (1..=u64::from(MAX_BATCH)).contains(&n) {
                prop_assert_eq!(result, Ok(Some(u16::try_from(n).unwrap_or(0))));
            } else {
                prop_assert!(matches!(result, Err(QueryError::BadCount(_))));
            }
        }

        #[test]
        fn a_percent_encoded_query_means_the_same_as_a_plain_one(n in 1..=MAX_BATCH) {
            let encoded = format!("{}={}", percent_encoded("count"), percent_encoded(&n.to_string()));
            prop_assert_eq!(parse_generate_query(Some(&encoded)), Ok(Some(n)));
        }

        #[test]
        fn any_other_parameter_is_refused(key in "[A-Za-z0-9_.%-]{1,20}", value in "[a-z0-9]{0,5}") {
            let decoded: String = url::form_urlencoded::parse(key.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            prop_assume!(decoded != "count");
            let query = format!("{key}={value}");
            let result = parse_generate_query(Some(&query));
            prop_assert!(matches!(result, Err(QueryError::UnknownParameter(_))), "{query}: {result:?}");
        }

        #[test]
        fn a_long_query_of_any_bytes_never_panics_and_gets_a_short_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            repeat in 1usize..15,
        ) {
            // Any bytes, as a client may send them percent-encoded, up to about 100 KB.
            let query = percent_encoded(&String::from_utf8_lossy(&bytes)).repeat(repeat);
            match parse_generate_query(Some(&query)) {
                Ok(Some(n)) => prop_assert!((1..=MAX_BATCH).contains(&n)),
                Ok(None) => {}
                Err(e) => prop_assert!(e.to_string().chars().count() < 200),
            }
        }

        #[test]
        fn generate_query_accepts_exactly_counts_in_range(query in ".{0,80}") {
            match parse_generate_query(Some(&query)) {
                Ok(Some(n)) => prop_assert!((1..=MAX_BATCH).contains(&n)),
                Ok(None) => prop_assert!(url::form_urlencoded::parse(query.as_bytes()).next().is_none()),
                Err(e) => prop_assert!(e.to_string().chars().count() < 200),
            }
        }
    }
}
