//! The admin listener (loopback by default): `/healthz`, `/readyz`, `/metrics`.
//!
//! Separate from the public listener so probes and scrapes never pass through (or count against)
//! the security pipeline, and so the metrics are not exposed to clients.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use warden::body::{self, Body};

use crate::observe::names;

type Check = Box<dyn Fn() -> bool + Send + Sync>;

/// What `/readyz` reports.
#[derive(Default)]
pub struct Readiness {
    /// The public listener is accepting (config loaded, stack built).
    pub serving: AtomicBool,
    /// The last upstream probe connected.
    pub upstream_up: AtomicBool,
    /// Shutdown has begun.
    pub shutting_down: AtomicBool,
    /// Further conditions (signing keys loaded...).
    checks: std::sync::RwLock<Vec<Check>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("serving", &self.serving)
            .field("upstream_up", &self.upstream_up)
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Adds a condition that must hold for readiness.
    pub fn add_check(&self, check: impl Fn() -> bool + Send + Sync + 'static) {
        self.checks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Box::new(check));
    }

    /// Ready to take traffic.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
            && self.upstream_up.load(Ordering::SeqCst)
            && !self.shutting_down.load(Ordering::SeqCst)
            && self
                .checks
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .all(|check| check())
    }
}

/// The process-wide Prometheus recorder (installed once; later gateways in the same process,
/// as in tests, share it).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::DURATION.to_owned()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0,
                ],
            )
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .ok();
        handle
    })
}

/// Serves the admin endpoints until shutdown.
pub async fn serve(
    listener: TcpListener,
    readiness: std::sync::Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    let handle = metrics_handle();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let readiness = readiness.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let response = respond(&req, &readiness, handle);
            std::future::ready(Ok::<_, std::convert::Infallible>(response))
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    readiness: &Readiness,
    handle: &PrometheusHandle,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => text(
            StatusCode::OK,
            "application/json",
            "{\"status\":\"ok\"}\n".into(),
        ),
        "/readyz" => {
            if readiness.is_ready() {
                text(
                    StatusCode::OK,
                    "application/json",
                    "{\"status\":\"ready\"}\n".into(),
                )
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    "{\"status\":\"not ready\"}\n".into(),
                )
            }
        }
        "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4", handle.render()),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn text(status: StatusCode, content_type: &'static str, content: String) -> Response<Body> {
    let mut response = Response::new(body::full(content));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}
