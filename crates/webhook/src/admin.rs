//! Admin port (plain HTTP): `/healthz`, `/readyz`, `/metrics`.
//!
//! Kept off the TLS port so kubelet probes and Prometheus need no
//! certificates, and so readiness can say "draining" while the TLS listener
//! is already closed.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the admin endpoints report.
#[derive(Default)]
pub struct AdminState {
    ready: AtomicBool,
    pub metrics: Arc<Metrics>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            ready: AtomicBool::new(false),
            metrics,
        }
    }

    /// Ready once the TLS listener is bound; not ready again once draining.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

/// The admin router, independent of any socket.
pub fn handle<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n");
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n"),
        "/readyz" if state.is_ready() => text(StatusCode::OK, PLAIN, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "not ready\n"),
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(),
        ),
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
    }
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let resp = handle(&state, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http1_only()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
            if let Err(e) = conn {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(state: &AdminState, path: &str) -> StatusCode {
        handle(state, &Request::get(path).body(()).unwrap()).status()
    }

    #[test]
    fn readiness_follows_the_flag_and_health_does_not() {
        let state = AdminState::new(Arc::new(Metrics::new()));
        assert_eq!(get(&state, "/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(&state, "/healthz"), StatusCode::OK);
        state.set_ready(true);
        assert_eq!(get(&state, "/readyz"), StatusCode::OK);
        state.set_ready(false);
        assert_eq!(get(&state, "/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(&state, "/healthz"), StatusCode::OK);
        assert_eq!(get(&state, "/metrics"), StatusCode::OK);
        assert_eq!(get(&state, "/nope"), StatusCode::NOT_FOUND);
        let post = handle(&state, &Request::post("/healthz").body(()).unwrap());
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
