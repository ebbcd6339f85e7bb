//! The HTTP endpoint: `/metrics` for Prometheus, `/healthz` and `/readyz` for
//! the service manager and load balancers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::metrics;

use super::DaemonState;

/// The metrics, with the gauges read at scrape time set first: the bytes the
/// memory budget holds now and the heap in use.
fn scrape(state: &DaemonState) -> String {
    let m = metrics();
    m.buffered_bytes
        .set(i64::try_from(state.budget.used()).unwrap_or(i64::MAX));
    if let Some(bytes) = crate::heap::bytes_in_use() {
        m.heap_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    m.render()
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn serve_http(
    addr: SocketAddr,
    state: Arc<DaemonState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(listen = %addr, "metrics endpoint listening");
    let h1 = state.clone();
    let h2 = state.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = scrape(&state);
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let ok = h1.healthy();
                async move {
                    if ok {
                        (StatusCode::OK, "ok\n".to_owned()).into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n".to_owned()).into_response()
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = h2.ready();
                async move {
                    match ready {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        )
                            .into_response(),
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
