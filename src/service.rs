//! The whole service in one call: HTTP probes, background checks, and the pipeline.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{self, Faults, RunError, RunReport};
use crate::shutdown::Shutdown;
use crate::status::Status;

/// Serves `/metrics`, `/healthz`, `/readyz` on `listener` from the start, runs the pipeline until
/// `shutdown` and its drain complete, then stops the HTTP server. From the shutdown trigger on,
/// `/readyz` reports not ready while the drain runs.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<RunReport, RunError> {
    serve_with_faults(config, listener, metrics, shutdown, Faults::default()).await
}

/// [`serve`], with faults a test injects.
#[doc(hidden)]
pub async fn serve_with_faults(
    config: Config,
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    faults: Faults,
) -> Result<RunReport, RunError> {
    let status = Arc::new(Status::new(config.ops.stall));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    }
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(crate::http::serve(
        listener,
        crate::http::router(Arc::clone(&metrics), Arc::clone(&status)),
        async move {
            let _ = http_stopped.await;
        },
    ));
    let monitor = tokio::spawn(crate::monitor::run(
        config.clone(),
        Arc::clone(&status),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    let draining = {
        let (status, shutdown) = (Arc::clone(&status), shutdown.clone());
        tokio::spawn(async move {
            shutdown.triggered().await;
            status.set_draining();
        })
    };

    let result = pipeline::run(config, metrics, Arc::clone(&status), shutdown, faults).await;

    monitor.abort();
    draining.abort();
    let _ = stop_http.send(());
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(error = %error, "http server ended with an error"),
        Err(error) => tracing::warn!(error = %error, "http server task failed"),
    }
    result
}
