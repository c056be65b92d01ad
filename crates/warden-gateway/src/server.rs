//! Listeners: accept loop, connection limits, HTTP/1.1 + HTTP/2 serving, graceful shutdown.
//!
//! Outside the tower stack. Each accepted connection holds a permit of a semaphore sized by
//! `max_connections` (the loop stops accepting while none is free, so excess clients wait in the
//! kernel backlog instead of exhausting memory). HTTP/1.1 gets a header-read timeout (a
//! slow-headers client cannot hold a connection) and a read-buffer cap; HTTP/2 a header-list cap.
//! Shutdown stops accepting at once, marks the gateway not ready, and lets in-flight requests
//! finish for up to `shutdown_grace`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;
use warden::body;
use warden::canonical::MAX_PATH_LEN;
use warden::client_ip::PeerAddr;

use crate::admin::{self, Readiness};
use crate::config::Config;
use crate::config::auth::{AuthBuildError, Startup};
use crate::observe::names;
use crate::proxy::Proxy;
use crate::stack::{self, Auth, GatewayService, StackError};
use warden::authn::Authenticator;
use warden::clock::{Clock, SystemClock};

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The service stack could not be assembled.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// The authenticators could not be built.
    #[error(transparent)]
    Auth(#[from] AuthBuildError),
    /// A provider configured `startup: wait` got no keys in time.
    #[error("provider {0}: no signing keys after {1:?} (key server unreachable?)")]
    KeysUnavailable(String, Duration),
    /// The rate-limit store could not be set up.
    #[error("{0}")]
    RateLimitStore(String),
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The public listener's bound address.
    pub addr: SocketAddr,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    readiness: Arc<Readiness>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    refreshers: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Binds both listeners and starts serving `config` on the system clock.
    pub async fn start(config: Config) -> Result<Gateway, ServerError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Gateway::start`], with an injected clock (tests move time instead of sleeping).
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Gateway, ServerError> {
        let built = config.auth.build(clock.clone())?;
        let mut refreshers = Vec::new();
        for (name, source, startup, timeout) in &built.remote {
            refreshers.push(source.spawn_refresh());
            if *startup == Startup::Wait && !source.wait_ready(*timeout).await {
                for handle in &refreshers {
                    handle.abort();
                }
                return Err(ServerError::KeysUnavailable(name.clone(), *timeout));
            }
        }
        let mut chain: Vec<Arc<dyn Authenticator>> = Vec::new();
        if let Some(jwt) = &built.jwt {
            chain.push(Arc::new(jwt.clone()));
        }
        if let Some((keys, touch_interval)) = &built.api_keys {
            chain.push(Arc::new(keys.clone()));
            refreshers.push(spawn_usage_flusher(keys.clone(), *touch_interval));
        }
        let memory = Arc::new(warden::ratelimit::memory::MemoryStore::new(clock.clone()));
        refreshers.push(spawn_sweeper(memory.clone()));
        let store = rate_limit_store(&config, memory).await?;
        let auth = Auth {
            chain,
            store,
            clock,
        };
        let listener = bind(config.server.listen).await?;
        let admin_listener = bind(config.server.admin_listen).await?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.server.listen,
            source,
        })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: config.server.admin_listen,
                source,
            })?;

        // Install the metrics recorder before the first request can record anything.
        admin::metrics_handle();
        let service = stack::build(&config, &auth, Proxy::new(&config, "http"))?;
        let readiness = Arc::new(Readiness::default());
        if let Some(jwt) = built.jwt {
            readiness.add_check(move || jwt.is_ready());
        }
        let (shutdown, shutdown_rx) = watch::channel(false);

        tokio::spawn(admin::serve(
            admin_listener,
            readiness.clone(),
            shutdown_rx.clone(),
        ));
        tokio::spawn(probe_upstream(
            config.clone(),
            readiness.clone(),
            shutdown_rx.clone(),
        ));
        let task = tokio::spawn(accept_loop(
            listener,
            service,
            config,
            readiness.clone(),
            shutdown_rx,
        ));
        tracing::info!(%addr, %admin_addr, "warden listening");
        Ok(Gateway {
            addr,
            admin_addr,
            readiness,
            shutdown,
            task,
            refreshers,
        })
    }

    /// Starts graceful shutdown: stop accepting, finish in-flight requests, then return.
    pub async fn shutdown(self) {
        self.readiness.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        for handle in self.refreshers {
            handle.abort();
        }
    }

    /// Waits until the accept loop ends (after a shutdown).
    pub async fn wait(self) {
        let _ = self.task.await;
        for handle in self.refreshers {
            handle.abort();
        }
    }

    /// A handle that triggers shutdown from elsewhere (signal handlers).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            sender: self.shutdown.clone(),
            readiness: self.readiness.clone(),
        }
    }
}

/// Triggers a gateway's graceful shutdown.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    sender: watch::Sender<bool>,
    readiness: Arc<Readiness>,
}

impl ShutdownHandle {
    /// Begins shutdown.
    pub fn trigger(&self) {
        self.readiness.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.sender.send(true);
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

fn connection_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let limits = &config.server.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper answers 431 itself past this buffer; the head guard in each route enforces the
    // exact configured byte and count limits with a problem+json body before that.
    let buffer = (limits.max_header_bytes + MAX_PATH_LEN + 1024).max(8192);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.timeouts.header_read)
        .max_buf_size(buffer)
        .max_headers(limits.max_headers.saturating_mul(2).max(8));
    builder
        .http2()
        .timer(TokioTimer::new())
        // HPACK counts 32 bytes of overhead per field (RFC 7541 §4.1); leave room for it so the
        // head guard, not the h2 codec, answers requests near the limit (with problem+json).
        .max_header_list_size(
            u32::try_from(limits.max_header_bytes + 32 * limits.max_headers).unwrap_or(u32::MAX),
        )
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30));
    builder
}

async fn accept_loop(
    listener: TcpListener,
    service: GatewayService,
    config: Config,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(connection_builder(&config));
    let permits = Arc::new(Semaphore::new(config.server.limits.max_connections));
    let graceful = GracefulShutdown::new();
    readiness.serving.store(true, Ordering::SeqCst);

    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        serve_connection(&builder, &graceful, stream, peer, service.clone(), permit);
    }

    drop(listener);
    readiness.serving.store(false, Ordering::SeqCst);
    let grace = config.server.timeouts.shutdown_grace;
    tracing::info!(
        open = graceful.count(),
        ?grace,
        "shutting down: draining connections"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period elapsed with requests still in flight");
    }
}

fn serve_connection(
    builder: &Arc<auto::Builder<TokioExecutor>>,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    peer: SocketAddr,
    service: GatewayService,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let hyper_service = service_fn(move |req: Request<Incoming>| {
        let mut req = req.map(body::boxed);
        req.extensions_mut().insert(PeerAddr(peer));
        service.clone().oneshot(req)
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), hyper_service)
        .into_owned();
    let connection = graceful.watch(connection);
    let gauge = metrics::gauge!(names::OPEN_CONNECTIONS);
    gauge.increment(1.0);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%peer, error = %error, "connection ended with an error");
        }
        gauge.decrement(1.0);
        drop(permit);
    });
}

/// Marks the upstream up or down by opening a TCP connection every two seconds.
async fn probe_upstream(
    config: Config,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    let authority = &config.upstream.authority;
    let target = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let timeout = config.server.timeouts.upstream_connect;
    loop {
        let up = matches!(
            tokio::time::timeout(timeout, TcpStream::connect(&target)).await,
            Ok(Ok(_))
        );
        let was = readiness.upstream_up.swap(up, Ordering::SeqCst);
        if was != up {
            tracing::info!(upstream = %target, up, "upstream reachability changed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Writes API-key last-use times in batches.
fn spawn_usage_flusher(
    keys: warden::authn::api_key::ApiKeyAuthenticator,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(error) = keys.flush_usage().await {
                tracing::warn!(error = %error, "could not record API key usage");
            }
        }
    })
}

/// The configured rate-limit store. A Redis server that does not answer at start is not fatal:
/// decisions follow `on_store_error` until it does (the connection retries by itself).
async fn rate_limit_store(
    config: &Config,
    memory: Arc<warden::ratelimit::memory::MemoryStore>,
) -> Result<Arc<dyn warden::ratelimit::store::RateLimitStore>, ServerError> {
    use crate::config::ratelimit::{StoreConfig, StoreFailure};
    let StoreConfig::Redis(settings) = &config.rate_limits.store else {
        return Ok(memory);
    };
    if settings.is_plaintext_remote() {
        tracing::warn!(
            "rate_limits.store uses redis:// to a remote host: traffic and any password travel unencrypted; use rediss://"
        );
    }
    let redis = Arc::new(
        warden::ratelimit::redis::RedisStore::connect(settings)
            .map_err(|e| ServerError::RateLimitStore(e.to_string()))?,
    );
    match redis.ping().await {
        Ok(()) => tracing::info!(endpoint = redis.endpoint(), "rate-limit store connected"),
        Err(error) => tracing::error!(
            endpoint = redis.endpoint(),
            %error,
            on_store_error = ?config.rate_limits.on_error,
            "rate-limit store unreachable at start; decisions follow on_store_error until it answers"
        ),
    }
    Ok(match config.rate_limits.on_error {
        StoreFailure::Local => Arc::new(warden::ratelimit::fallback::LocalFallback::new(
            redis, memory,
        )),
        StoreFailure::FailClosed | StoreFailure::FailOpen => redis,
    })
}

/// Drops idle rate-limit keys every 10 seconds (memory stays bounded by active keys).
fn spawn_sweeper(store: Arc<warden::ratelimit::memory::MemoryStore>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let active = store.sweep();
            metrics::gauge!("warden_ratelimit_active_keys").set(active as f64);
        }
    })
}
