//! The admin listener (loopback by default): `/healthz`, `/readyz` (with the configuration's
//! fingerprint), `/metrics`, and `POST /reload` from the loopback interface.
//!
//! Separate from the public listener so probes and scrapes never pass through (or count against)
//! the security pipeline, and so the metrics are not exposed to clients.

use std::net::SocketAddr;
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

use crate::certificates::Trigger;
use crate::observe::names;
use crate::reload::{ReloadError, Reloader};

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
    /// The fingerprint of the configuration in service.
    config: arc_swap::ArcSwap<String>,
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

    /// Replaces the further conditions (a reload built new ones).
    pub fn set_checks(&self, checks: Vec<Check>) {
        *self
            .checks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = checks;
    }

    /// Records the fingerprint of the configuration in service.
    pub fn set_config(&self, sha256: &str) {
        self.config.store(std::sync::Arc::new(sha256.to_owned()));
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

/// Serves the admin endpoints until shutdown; `POST /reload` goes to `reloader`.
pub async fn serve(
    listener: TcpListener,
    readiness: std::sync::Arc<Readiness>,
    reloader: Reloader,
    mut shutdown: watch::Receiver<bool>,
) {
    let handle = metrics_handle();
    loop {
        let (stream, peer) = tokio::select! {
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
        let reloader = reloader.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let readiness = readiness.clone();
            let reloader = reloader.clone();
            async move {
                let response = if req.uri().path() == "/reload" {
                    reload(&req, peer, &reloader).await
                } else {
                    respond(&req, &readiness, handle)
                };
                Ok::<_, std::convert::Infallible>(response)
            }
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
            let (status, word) = if readiness.is_ready() {
                (StatusCode::OK, "ready")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready")
            };
            let body = serde_json::json!({
                "status": word,
                "config_sha256": readiness.config.load().as_str(),
            });
            text(status, "application/json", format!("{body}\n"))
        }
        "/metrics" => {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                metrics::gauge!(names::ALIVE_TASKS).set(runtime.metrics().num_alive_tasks() as f64);
            }
            text(StatusCode::OK, "text/plain; version=0.0.4", handle.render())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// `POST /reload`: reloads the configuration and reports the result. Only from the loopback
/// interface, whatever address the admin listener is bound to (probes may reach it from the
/// network; a reload is an operator's act on the host).
async fn reload(req: &Request<Incoming>, peer: SocketAddr, reloader: &Reloader) -> Response<Body> {
    if req.method() != Method::POST {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
        return response;
    }
    if !peer.ip().is_loopback() {
        return text(
            StatusCode::FORBIDDEN,
            "application/json",
            "{\"result\":\"refused\",\"reason\":\"loopback_only\"}\n".into(),
        );
    }
    let (status, body) = match reloader.reload(Trigger::Admin).await {
        Ok(reloaded) => (
            StatusCode::OK,
            serde_json::json!({
                "result": if reloaded.changed.is_empty() { "unchanged" } else { "reloaded" },
                "config_sha256": reloaded.sha256,
                "changed": reloaded.changed,
                "kept": {
                    "counters": reloaded.kept.counters,
                    "token_cache": reloaded.kept.token_cache,
                    "api_keys": reloaded.kept.api_keys,
                    "upstream_pool": reloaded.kept.upstream_pool,
                    "key_sources": reloaded.kept.key_sources,
                },
            }),
        ),
        Err(error) => {
            let status = match error {
                ReloadError::NoSource => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let errors: Vec<serde_json::Value> = error
                .problems()
                .into_iter()
                .map(|p| serde_json::json!({ "path": p.path, "message": p.message }))
                .collect();
            (
                status,
                serde_json::json!({ "result": "refused", "reason": error.code(), "errors": errors }),
            )
        }
    };
    text(status, "application/json", format!("{body}\n"))
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
