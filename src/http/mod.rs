//! The operations HTTP endpoint: `GET /healthz` and `GET /metrics`.
//!
//! `/healthz` answers `200 ok` while the process serves calls and
//! `503 draining` once the shared draining flag is set, so a load balancer
//! stops sending new work. `/metrics` renders [`Metrics`] as Prometheus text.
//!
//! Later modules add their own routes by merging into [`router`]'s result
//! and passing it to [`serve_router`]: [`api`] is the call-control API,
//! mounted only when `[http] api_token` is set.
//!
//! What this module must not do: expose anything that changes state without
//! the API's token, or do blocking work on the async runtime.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

pub mod api;

/// The Prometheus text exposition content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub metrics: Metrics,
    /// Set when the server drains: `/healthz` then answers 503.
    pub draining: Arc<AtomicBool>,
}

/// The built-in routes with their state applied; `.merge()` more onto it.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serve the built-in routes until `shutdown` resolves, then finish the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serve any router (the built-in one merged with others) with graceful
/// shutdown.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "http: listening");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    struct TestServer {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: JoinHandle<io::Result<()>>,
    }

    async fn start(state: HttpState) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve(listener, state, shutdown));
        TestServer { addr, stop, task }
    }

    impl TestServer {
        async fn stop(self) {
            self.stop.send(()).unwrap();
            self.task.await.unwrap().unwrap();
        }
    }

    /// A parsed HTTP/1.1 response: status, lowercase headers, body.
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            let found = self.headers.iter().find(|(n, _)| n == name);
            found.map(|(_, v)| v.as_str())
        }
    }

    async fn http_get(addr: SocketAddr, path: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"));
        let status = parts.next().unwrap().parse().unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    fn state() -> HttpState {
        HttpState {
            metrics: Metrics::new(),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    #[tokio::test]
    async fn healthz_reports_ok_then_draining() {
        let state = state();
        let draining = Arc::clone(&state.draining);
        let server = start(state).await;
        let reply = http_get(server.addr, "/healthz").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok");
        draining.store(true, Ordering::Relaxed);
        let reply = http_get(server.addr, "/healthz").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, "draining");
        server.stop().await;
    }

    #[tokio::test]
    async fn metrics_serves_the_exposition() {
        let state = state();
        state.metrics.calls_active().set(3);
        state.metrics.auth_failures().add(2);
        let server = start(state.clone()).await;
        let reply = http_get(server.addr, "/metrics").await;
        assert_eq!(reply.status, 200);
        let content_type = reply.header("content-type").unwrap();
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        let length: usize = reply.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, reply.body.len());
        assert!(reply.body.contains("# TYPE denwa_calls_active gauge\n"));
        assert!(reply.body.contains("\ndenwa_calls_active 3\n"));
        assert!(reply.body.contains("\ndenwa_auth_failures_total 2\n"));
        assert_eq!(reply.body, state.metrics.render());
        server.stop().await;
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_routes_can_be_merged() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let extra = Router::new().route("/version", get(|| async { "denwa" }));
        let app = router(state()).merge(extra);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_router(listener, app, async move {
            let _ = stopped.await;
        }));
        assert_eq!(http_get(addr, "/nope").await.status, 404);
        let reply = http_get(addr, "/version").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "denwa"));
        assert_eq!(http_get(addr, "/healthz").await.status, 200);
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
