//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, and nothing else.
//!
//! It starts before the pipeline connects, so the probes answer during start-up (not ready), and
//! stops after the drain. Handlers only read shared state; nothing here touches Redis or
//! PostgreSQL, so a slow database can never make a probe time out.

mod probe;

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Encoder;

use crate::metrics::Metrics;
use crate::status::Status;

pub use probe::probe;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    status: Arc<Status>,
}

/// The routes.
pub fn router(metrics: Arc<Metrics>, status: Arc<Status>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, status })
}

/// Serves `router` on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let families = state.metrics.registry.gather();
    let encoder = prometheus::TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&families, &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type())], body).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    let liveness = state.status.liveness();
    probe_answer(liveness.alive, liveness)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.status.readiness();
    probe_answer(readiness.ready, readiness)
}

/// 200 when the probe passes, 503 when it does not; the body says why either way.
fn probe_answer(ok: bool, body: impl serde::Serialize) -> Response {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
