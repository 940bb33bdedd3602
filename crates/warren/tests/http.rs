//! The HTTP surface of `warren web`, in-process through `app()` and `oneshot`.
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use tower::ServiceExt;
use warren::config::{AmqpUrl, BrokerConfig, QueueName};
use warren::pipeline::idempotency::Window;
use warren::pipeline::publisher::{Publisher, PublisherOptions};
use warren::pipeline::web::{app, AppState, HttpLimits, WebMetrics};

const LIMITS: HttpLimits = HttpLimits {
    request_timeout: Duration::from_secs(5),
    max_concurrent_requests: 64,
};

fn state_for(url: AmqpUrl, queue: &str) -> AppState {
    let broker = BrokerConfig::new(url, QueueName::parse(queue).unwrap());
    let (publisher, _task) = Publisher::start(broker, PublisherOptions::default());
    let mut registry = Registry::default();
    let metrics = WebMetrics::register(&mut registry);
    AppState {
        publisher,
        metrics,
        registry: Arc::new(registry),
        idempotency: Arc::new(Window::new(Duration::from_secs(600), 1000)),
        confirm_timeout: PublisherOptions::default().confirm_timeout,
    }
}

/// A broker address where nothing listens.
fn unreachable_broker() -> AmqpUrl {
    AmqpUrl::from_parts("127.0.0.1", support::free_port(), "guest", "guest", "/").unwrap()
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    accept: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = app(state.clone(), LIMITS)
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn generate_answers_503_with_retry_after_when_the_broker_is_unreachable() {
    let state = state_for(unreachable_broker(), "unreachable");
    let (status, headers, body) = call(&state, "GET", "/generate", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["reason"], "not_connected");
    let (status, _, _) = call(&state, "GET", "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, body) = call(&state, "GET", "/healthz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (_, _, metrics) = call(&state, "GET", "/metrics", None).await;
    assert!(
        metrics.contains(r#"publish_failures_total{reason="not_connected"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"request_status_total{path="/generate",status="503"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_json_errors() {
    let state = state_for(unreachable_broker(), "errors");
    let (status, headers, body) = call(&state, "GET", "/does/not/exist", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["content-type"], "application/json");
    assert!(body.contains("\"error\""));
    for method in ["POST", "PUT", "DELETE"] {
        let (status, headers, body) = call(&state, method, "/generate", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers["content-type"], "application/json");
        assert!(body.contains("method not allowed"));
    }
}

#[tokio::test]
async fn a_bad_query_is_refused_before_any_publish() {
    // Unreachable broker: a 400 (not a 503) proves the query is checked first.
    let state = state_for(unreachable_broker(), "query");
    for uri in [
        "/generate?count=0",
        "/generate?count=1001",
        "/generate?count=abc",
        "/generate?x=1",
    ] {
        let (status, headers, body) = call(&state, "GET", uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(json["error"].is_string());
    }
    let (_, _, metrics) = call(&state, "GET", "/metrics", None).await;
    assert!(!metrics.contains("publish_failures_total{"), "{metrics}");
}

#[tokio::test]
async fn generate_answers_in_text_or_json_as_asked() {
    let url = AmqpUrl::parse(&support::broker_url()).unwrap();
    let queue = support::unique_queue("formats");
    let state = state_for(url, &queue);
    assert!(
        state
            .publisher
            .wait_connected(Duration::from_secs(10))
            .await
    );

    let (status, _, body) = call(&state, "GET", "/generate", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.starts_with("Welcome! ")
            && body.ends_with('\n')
            && body.len() == "Welcome! ".len() + 27
    );
    let (_, headers, body) = call(&state, "GET", "/generate", Some("application/json")).await;
    assert_eq!(headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["id"].as_str().unwrap().len(), 26);
    let (_, _, body) = call(
        &state,
        "GET",
        "/generate?count=4",
        Some("text/html, application/json;q=0.9"),
    )
    .await;
    let ids: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids sort by time");
    let (_, _, body) = call(&state, "GET", "/generate?count=3", None).await;
    assert_eq!(body.lines().count(), 3);

    let connection = support::amqp(&support::broker_url()).await;
    assert_eq!(support::queue_depth(&connection, &queue).await, Some(9));
    support::delete_queues(&connection, &queue).await;
}
