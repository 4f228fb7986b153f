//! `/metrics` (OpenMetrics text) and `/healthz`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// What `/healthz` reports: the agent loop's liveness.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// The loop runs and has seen its Node.
    pub running: bool,
    /// The last error reaching the API or the GPUs, if the last try failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: watch::Receiver<Health>,
}

pub fn app(registry: Arc<Registry>, health: watch::Receiver<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState { registry, health })
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

/// 200 while the loop runs; a blocked target is healthy (it waits by design).
async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let h = s.health.borrow().clone();
    match (h.running, h.last_error) {
        (true, None) => (StatusCode::OK, "ok".to_string()),
        (true, Some(e)) => (StatusCode::OK, format!("ok (last error: {e})")),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "agent loop not running".to_string()),
    }
}
