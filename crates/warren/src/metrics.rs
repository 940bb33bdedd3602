//! The one metrics pattern: a `prometheus-client` registry per process, rendered on `/metrics`,
//! and the small operations router (`/metrics`, `/healthz`, `/readyz`) that worker and
//! autoscaler serve on their metrics port.
//!
//! Each component keeps its own metrics struct beside the code it measures (`WebMetrics` in
//! `pipeline/web.rs`, `WorkerMetrics` in `pipeline/worker.rs`) and registers it here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// Content type of the OpenMetrics text format, served to clients that ask for it (Prometheus).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format, served to everyone else.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders a registry: OpenMetrics when the `Accept` header asks for it, else the classic text
/// format that `curl` users and `promtool check metrics` expect.
pub fn render(registry: &Registry, headers: &HeaderMap) -> Response {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        )
            .into_response();
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            to_prometheus_text(&body),
        )
            .into_response()
    }
}

/// Turns OpenMetrics text into the classic format: a counter family `x` is announced as
/// `x_total` (its samples' name), and the `# UNIT` and `# EOF` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let counters: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in lines {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Histogram buckets for durations from 0.5 ms to about 65 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 18)
}

/// Histogram buckets for job work time and queue wait: 10 ms to about 40 minutes.
pub fn job_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.0, 18)
}

/// Whether the process is ready to take work; asked on every `/readyz`.
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    ready: Readiness,
}

/// `/metrics`, `/healthz` (always 200 while the process serves) and `/readyz` (200 while
/// `ready` says so, 503 otherwise).
pub fn ops_router(registry: Arc<Registry>, ready: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<OpsState>, headers: HeaderMap| async move {
                render(&s.registry, &headers)
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<OpsState>| async move {
                if (s.ready)() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .with_state(OpsState { registry, ready })
}

/// What an [`OpsServer`]'s `/readyz` answers: 200 when `Ready`, 503 when `NotReady`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyState {
    /// Ready for work: `/readyz` answers 200.
    Ready,
    /// Not (yet, or no longer) ready: `/readyz` answers 503.
    NotReady,
}

/// A running operations server: [`ops_router`] on its own port, its `/readyz` following
/// [`OpsServer::set_ready`].
pub struct OpsServer {
    /// The address it listens on (the real port when 0 was asked).
    addr: std::net::SocketAddr,
    /// What `/readyz` answers.
    ready: Arc<AtomicBool>,
    /// Stops it.
    stop: tokio_util::sync::CancellationToken,
    /// The serving task.
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    /// Binds `listen` and serves `registry` there until [`OpsServer::stop`], `/readyz`
    /// answering as `ready` says until [`OpsServer::set_ready`].
    pub async fn start(
        listen: std::net::SocketAddr,
        registry: Registry,
        ready: ReadyState,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        let ready = Arc::new(AtomicBool::new(ready == ReadyState::Ready));
        let readiness = ready.clone();
        let router = ops_router(
            Arc::new(registry),
            Arc::new(move || readiness.load(Ordering::Relaxed)),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        });
        Ok(Self {
            addr,
            ready,
            stop,
            task,
        })
    }

    /// Makes `/readyz` answer as `ready` says from now on.
    pub fn set_ready(&self, ready: ReadyState) {
        self.ready
            .store(ready == ReadyState::Ready, Ordering::Relaxed);
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the server to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readyz_follows_set_ready_and_stop_closes_the_port() {
        let ops = OpsServer::start(
            ([127, 0, 0, 1], 0).into(),
            Registry::default(),
            ReadyState::NotReady,
        )
        .await
        .expect("bind a free port");
        let url = format!("http://{}/readyz", ops.addr());
        let status = || async { reqwest::get(&url).await.map(|r| r.status().as_u16()) };
        assert_eq!(status().await.expect("readyz answers"), 503);
        ops.set_ready(ReadyState::Ready);
        assert_eq!(status().await.expect("readyz answers"), 200);
        ops.set_ready(ReadyState::NotReady);
        assert_eq!(status().await.expect("readyz answers"), 503);
        ops.stop().await;
        assert!(status().await.is_err(), "the port still answers after stop");
    }

    #[test]
    fn classic_text_names_counter_families_after_their_samples() {
        let om = "# HELP jobs Jobs.\n# TYPE jobs counter\njobs_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# UNIT g seconds\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
