//! `/metrics` (Prometheus text format) and `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::manager::PluginHandle;

#[derive(Debug, Clone)]
struct AppState {
    registry: Arc<Registry>,
    plugin: PluginHandle,
}

pub fn router(registry: Arc<Registry>, plugin: PluginHandle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState { registry, plugin })
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

/// 200 while the control loop runs and every resource is registered.
async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let st = s.plugin.status();
    let missing: Vec<&String> = st.resources.iter().filter(|r| !st.registered.contains(*r)).collect();
    if st.running && missing.is_empty() {
        (StatusCode::OK, "ok".to_string())
    } else if !st.running {
        (StatusCode::SERVICE_UNAVAILABLE, "control loop not running".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not registered with kubelet: {missing:?}"),
        )
    }
}

pub async fn serve(addr: SocketAddr, app: Router) -> std::io::Result<()> {
    serve_on(tokio::net::TcpListener::bind(addr).await?, app).await
}

pub async fn serve_on(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app).await
}
