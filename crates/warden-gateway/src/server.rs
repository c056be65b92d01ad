//! Listeners: accept loop, connection limits, HTTP/1.1 + HTTP/2 serving, graceful shutdown.
//!
//! Outside the tower stack. Each accepted connection holds a permit of a semaphore sized by
//! `max_connections` (the loop stops accepting while none is free, so excess clients wait in the
//! kernel backlog instead of exhausting memory), and a slot of the optional per-address cap.
//! Every connection runs under a supervisor that bounds it in time from accept: a request head
//! within `header_read` (hyper's own timer starts only once it has sniffed the protocol), no
//! request in flight for at most `idle` (HTTP/2 connections without streams too), a drain after
//! `max_connection_age`. Near `max_connections` idle connections are shed first (their idle
//! allowance drops to one second, as Envoy's overload manager reduces timeouts). Request bodies
//! get the `body_read` idle timeout here. HTTP/1.1 has a read-buffer cap, HTTP/2 a header-list
//! cap and at most `max_concurrent_streams` streams. Shutdown stops accepting at once, marks the
//! gateway not ready, and lets in-flight requests finish for up to `shutdown_grace`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;
use warden::audit::sink::FileSink;
use warden::audit::{Action, AuditEvent, AuditSink, Outcome};
use warden::authn::client_cert::PeerCertificate;
use warden::body;
use warden::canonical::MAX_PATH_LEN;
use warden::client_ip::PeerAddr;
use warden::limit::ClientBody;

use crate::admin::{self, Readiness};
use crate::certificates::{self, Certificates, Trigger};
use crate::config::{Config, ConfigErrors};
use crate::observe::names;
use crate::reload::{self, Generation, Live, ReloadError, Reloaded, Reloader};
use crate::runtime::{BuildError, Runtime};
use crate::stack::StackError;
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
    /// The configuration could not be brought to life (authenticators, stores, keys).
    #[error(transparent)]
    Build(#[from] BuildError),
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
    live: Live,
    audit: Option<Arc<FileSink>>,
    reloader: Reloader,
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
        // The metrics recorder first: what the runtime registers as it is built (the breaker's
        // gauge, the build info) must not go to a no-op recorder.
        admin::metrics_handle();
        metrics::gauge!("warden_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let mut runtime = Runtime::build(&config, clock).await?;
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

        let scheme = if config.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let readiness = Arc::new(Readiness::default());
        readiness.set_checks(std::mem::take(&mut runtime.ready_checks));
        readiness.set_config(&config.fingerprint);
        let audit = runtime.shared.audit.clone();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let certificates = config.server.tls.as_ref().map(|tls| {
            let certificates = Certificates::new(tls.clone(), audit.clone());
            tokio::spawn(certificates::report_expiry(
                certificates.clone(),
                shutdown_rx.clone(),
            ));
            certificates
        });
        let fingerprint = config.fingerprint.clone();
        let routes = config.routes.len();
        let generation = Generation::new(config, runtime, scheme)?;
        let live: Live = Arc::new(ArcSwap::from_pointee(generation));
        let reloader = Reloader::new(
            live.clone(),
            certificates.clone(),
            readiness.clone(),
            scheme,
        );
        let config = live.load_full().config.clone();
        match (&config.source, &certificates) {
            // The file and everything it names (the certificates too) are watched.
            (Some(_), _) => {
                if let Some(interval) = config.server.watch_interval {
                    tokio::spawn(reload::watch(
                        reloader.clone(),
                        interval,
                        shutdown_rx.clone(),
                    ));
                }
            }
            // Compiled from text: only the certificates can be read again.
            (None, Some(certificates)) => {
                if let Some(interval) = config.server.tls.as_ref().and_then(|t| t.watch_interval) {
                    tokio::spawn(certificates::watch(
                        certificates.clone(),
                        interval,
                        shutdown_rx.clone(),
                    ));
                }
            }
            (None, None) => {}
        }

        tokio::spawn(admin::serve(
            admin_listener,
            readiness.clone(),
            reloader.clone(),
            shutdown_rx.clone(),
        ));
        tokio::spawn(probe_upstream(
            live.clone(),
            readiness.clone(),
            shutdown_rx.clone(),
        ));
        let task = tokio::spawn(accept_loop(
            listener,
            live.clone(),
            certificates.clone(),
            readiness.clone(),
            shutdown_rx,
        ));
        metrics::gauge!(names::CONFIG_LAST_RELOAD_OK).set(1.0);
        metrics::gauge!(names::CONFIG_LOADED_AT).set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        tracing::info!(%addr, %admin_addr, config_sha256 = %fingerprint, "warden listening");
        if let Some(sink) = &audit {
            let mut event = AuditEvent::new(Action::Startup, Outcome::Success, None);
            event
                .set("service.version", env!("CARGO_PKG_VERSION"))
                .set("server.address", addr.to_string());
            sink.record(event);
            let mut event = AuditEvent::new(Action::ConfigLoaded, Outcome::Success, None);
            event
                .set("warden.config.sha256", fingerprint.as_str())
                .set("warden.config.routes", routes);
            sink.record(event);
        }
        Ok(Gateway {
            addr,
            admin_addr,
            readiness,
            shutdown,
            task,
            live,
            audit,
            reloader,
        })
    }

    /// Starts graceful shutdown: stop accepting, finish in-flight requests, then return.
    pub async fn shutdown(self) {
        self.readiness.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// Waits until the accept loop ends (after a shutdown), then writes the audit trail's last
    /// record and everything still queued before it returns.
    pub async fn wait(self) {
        let _ = self.task.await;
        self.live.load().runtime.stop_tasks();
        if let Some(sink) = self.audit {
            sink.record(AuditEvent::new(Action::Shutdown, Outcome::Success, None));
            // Joining the writer blocks: off the async workers.
            let _ = tokio::task::spawn_blocking(move || sink.close()).await;
        }
    }

    /// The audit sink, if configured (SIGUSR1 asks it to reopen its file after a rotation).
    pub fn audit_sink(&self) -> Option<Arc<FileSink>> {
        self.audit.clone()
    }

    /// Reads `server.tls`'s files again and serves them to new handshakes if they are valid;
    /// `None` without TLS. On failure the certificates in service stay, and the problems are
    /// logged and returned.
    pub async fn reload_certificates(&self) -> Option<Result<usize, ConfigErrors>> {
        self.reloader.reload_certificates().await
    }

    /// Reads the configuration file again and puts it in service if it is valid (see
    /// [`crate::reload`]).
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.reloader.reload(Trigger::Signal).await
    }

    /// A handle that reloads from elsewhere (the SIGHUP handler).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
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

/// How connections are served under `config` (its limits and timeouts).
pub(crate) fn connection_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let limits = &config.server.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper answers 431 itself past this buffer; the head guard in each route enforces the
    // exact configured byte and count limits with a problem+json body before that.
    let buffer = (limits.max_header_bytes + MAX_PATH_LEN + 1024).max(8192);
    builder
        .http1()
        .timer(TokioTimer::new())
        // Runs whenever hyper waits for a request head, including between keep-alive requests;
        // the supervisor below covers the time before hyper sees the first byte.
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
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Open client connections, shared by the accept loop and every connection's supervisor.
#[derive(Debug)]
struct Connections {
    open: AtomicUsize,
    /// From this many open connections on, idle ones are shed (90% of `max_connections`).
    pressure_at: usize,
    /// `true` while under pressure; supervisors of idle connections watch it.
    pressure: watch::Sender<bool>,
    per_ip: Option<(usize, Mutex<HashMap<IpAddr, usize>>)>,
    all_closed: tokio::sync::Notify,
}

impl Connections {
    fn new(config: &Config) -> Self {
        let limits = &config.server.limits;
        Connections {
            open: AtomicUsize::new(0),
            pressure_at: (limits.max_connections - limits.max_connections / 10).max(1),
            pressure: watch::Sender::new(false),
            per_ip: limits
                .max_connections_per_ip
                .map(|max| (max, Mutex::new(HashMap::new()))),
            all_closed: tokio::sync::Notify::new(),
        }
    }

    /// Counts a new connection from `ip`; `None` when that address is at its cap.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        if let Some((max, counts)) = &self.per_ip {
            let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            let count = counts.entry(ip).or_insert(0);
            if *count >= *max {
                return None;
            }
            *count += 1;
        }
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        if open >= self.pressure_at {
            self.pressure
                .send_if_modified(|p| !std::mem::replace(p, true));
        }
        Some(ConnectionSlot {
            connections: self.clone(),
            ip,
        })
    }
}

/// One open connection's place in [`Connections`]; released on drop.
#[derive(Debug)]
struct ConnectionSlot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let c = &self.connections;
        if let Some((_, counts)) = &c.per_ip {
            let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = counts.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
        let open = c.open.fetch_sub(1, Ordering::SeqCst) - 1;
        if open < c.pressure_at {
            c.pressure.send_if_modified(|p| std::mem::replace(p, false));
        }
        if open == 0 {
            c.all_closed.notify_waiters();
        }
    }
}

/// Requests in flight on one connection (HTTP/2 streams, or the one HTTP/1.1 exchange).
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    active: AtomicUsize,
    /// Requests seen so far (the first one ends the from-accept head deadline).
    seen: AtomicUsize,
    /// When the connection last became idle, in milliseconds after `accepted`. Written by the
    /// request that ends last, so the supervisor never has to observe every transition (its
    /// wake-ups coalesce: a request can start and end between two of them).
    idle_since_ms: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
    /// The connection is being drained: every HTTP/1 response from now on says
    /// `Connection: close`, so the client sends nothing more on it.
    draining: std::sync::atomic::AtomicBool,
    /// It speaks HTTP/2 (drained with GOAWAY instead).
    http2: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Activity {
            accepted,
            active: AtomicUsize::new(0),
            seen: AtomicUsize::new(0),
            idle_since_ms: std::sync::atomic::AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            http2: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn idle_since(&self) -> Instant {
        self.accepted + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst))
    }
}

/// Marks a request in flight until its response body is done.
struct ActiveRequest(Arc<Activity>);

impl ActiveRequest {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.active.fetch_add(1, Ordering::SeqCst);
        activity.seen.fetch_add(1, Ordering::SeqCst);
        activity.changed.notify_one();
        ActiveRequest(activity.clone())
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            let ms = u64::try_from(activity.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
            activity.idle_since_ms.store(ms, Ordering::SeqCst);
            activity.changed.notify_one();
        }
    }
}

/// How long an idle HTTP/1 connection stays open once a drain begins, for a request already on
/// its way (its response then says `Connection: close`).
const DRAIN_IDLE: Duration = Duration::from_millis(500);

/// How long idle connections may stay when the gateway is near `max_connections`.
const IDLE_UNDER_PRESSURE: Duration = Duration::from_secs(1);

async fn accept_loop(
    listener: TcpListener,
    live: Live,
    tls: Option<Arc<Certificates>>,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The connection caps are fixed for the listener's life (a reload refuses to change them).
    let config = live.load_full().config.clone();
    let permits = Arc::new(Semaphore::new(config.server.limits.max_connections));
    let connections = Arc::new(Connections::new(&config));
    readiness.serving.store(true, Ordering::SeqCst);

    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Full: idle connections are shed first (their supervisors watch this).
                connections
                    .pressure
                    .send_if_modified(|p| !std::mem::replace(p, true));
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => break,
                }
            }
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
        let Some(slot) = connections.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: per-address connection cap");
            metrics::counter!("warden_connections_refused_total", "reason" => "per_ip")
                .increment(1);
            continue;
        };
        // Served under the configuration current at accept; each request takes the stack
        // current when it arrives.
        let generation = live.load();
        let connection = Supervised {
            builder: generation.builder.clone(),
            live: live.clone(),
            tls: tls.clone(),
            timeouts: generation.config.server.timeouts,
            pressure: connections.pressure.subscribe(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(connection.run(stream, peer, (permit, slot)));
    }

    drop(listener);
    readiness.serving.store(false, Ordering::SeqCst);
    let grace = live.load().config.server.timeouts.shutdown_grace;
    tracing::info!(
        open = connections.open.load(Ordering::SeqCst),
        ?grace,
        "shutting down: draining connections"
    );
    let drained = async {
        loop {
            let notified = connections.all_closed.notified();
            if connections.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("shutdown grace period elapsed with requests still in flight");
    }
}

/// One connection and the timers hyper does not run for it.
struct Supervised {
    builder: Arc<auto::Builder<TokioExecutor>>,
    live: Live,
    /// Handshakes first, when the listener terminates TLS (with what is in service now).
    tls: Option<Arc<Certificates>>,
    timeouts: crate::config::Timeouts,
    pressure: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
}

impl Supervised {
    /// Serves the connection until it ends, closing it when:
    /// - no request head arrived within `header_read` of accept (silent sockets, a partial
    ///   HTTP/2 preface, an HTTP/2 connection that opens no stream);
    /// - no request has been in flight for `idle` (1 s while near `max_connections`);
    /// - it is older than `max_connection_age` (drained: GOAWAY or close after the response);
    /// - the gateway shuts down (drained).
    ///
    /// A drain that does not finish within `shutdown_grace` ends the connection.
    async fn run<G: Send + 'static>(self, stream: TcpStream, peer: SocketAddr, guard: G) {
        let _ = stream.set_nodelay(true);
        let accepted = Instant::now();
        let Some(acceptor) = self.tls.as_ref().map(|tls| tls.acceptor()) else {
            return self.serve(stream, peer, None, guard, accepted).await;
        };
        // The handshake counts against the request head's deadline: a silent or slow client is
        // closed as it would be without TLS.
        let deadline = accepted + self.timeouts.header_read;
        match tokio::time::timeout_at(deadline.into(), handshake(acceptor, stream, peer)).await {
            Ok(Some(tls)) => {
                // Verified by the handshake (client_ca): every request of the connection
                // carries it, for the client_cert authenticator.
                let certificate = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(<[_]>::first)
                    .map(|leaf| PeerCertificate::new(leaf));
                self.serve(tls, peer, certificate, guard, accepted).await
            }
            Ok(None) => {}
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake not finished in time: closed");
                handshake_failed("timeout");
            }
        }
    }

    async fn serve<S, G>(
        mut self,
        stream: S,
        peer: SocketAddr,
        certificate: Option<PeerCertificate>,
        guard: G,
        accepted: Instant,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        G: Send + 'static,
    {
        let activity = Arc::new(Activity::new(accepted));
        let live = self.live.clone();
        let body_read = self.timeouts.body_read;
        let tracked = activity.clone();
        let hyper_service = service_fn(move |req: Request<Incoming>| {
            let active = ActiveRequest::start(&tracked);
            let http1 = req.version() < http::Version::HTTP_2;
            if !http1 {
                tracked.http2.store(true, Ordering::SeqCst);
            }
            let mut req = req.map(|b| body::boxed(ClientBody::new(b, body_read)));
            req.extensions_mut().insert(PeerAddr(peer));
            if let Some(certificate) = &certificate {
                req.extensions_mut().insert(certificate.clone());
            }
            // The generation in service now: a reload swaps it for the next request, while this
            // one finishes on the stack it started on.
            let response = live.load().service.clone().oneshot(req);
            let draining = tracked.clone();
            async move {
                let mut response = response.await?;
                // Decided when the answer is ready: a drain that began while it was being
                // produced still tells this client to go elsewhere for its next request.
                if http1 && draining.draining.load(Ordering::SeqCst) {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, std::convert::Infallible>(response.map(|b| body::with_guard(b, active)))
            }
        });
        let connection = self
            .builder
            .serve_connection(TokioIo::new(stream), hyper_service)
            .into_owned();
        tokio::pin!(connection);
        let gauge = metrics::gauge!(names::OPEN_CONNECTIONS);
        gauge.increment(1.0);

        let age_deadline = activity.accepted + self.timeouts.max_connection_age;
        let mut pressure_open = true;
        let mut draining: Option<Instant> = None;
        let mut idle_drain: Option<Instant> = None;
        loop {
            let active = activity.active.load(Ordering::SeqCst);
            let deadline = match draining {
                Some(drain_deadline) => drain_deadline,
                None if active > 0 => age_deadline,
                None => {
                    let under_pressure = *self.pressure.borrow();
                    let first = activity.seen.load(Ordering::SeqCst) == 0;
                    let mut allowed = if first {
                        self.timeouts.header_read
                    } else {
                        self.timeouts.idle
                    };
                    if under_pressure {
                        allowed = allowed.min(IDLE_UNDER_PRESSURE);
                    }
                    age_deadline.min(activity.idle_since() + allowed)
                }
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, error = %error, "connection ended with an error");
                    }
                    break;
                }
                _ = activity.changed.notified() => {}
                changed = self.pressure.changed(), if draining.is_none() && pressure_open => {
                    pressure_open = changed.is_ok();
                }
                _ = self.shutdown.changed(), if draining.is_none() => {
                    let now = Instant::now();
                    activity.draining.store(true, Ordering::SeqCst);
                    draining = Some(now + self.timeouts.shutdown_grace);
                    let silent = activity.seen.load(Ordering::SeqCst) == 0;
                    if silent || activity.http2.load(Ordering::SeqCst) {
                        // HTTP/2: GOAWAY, and in-flight streams finish. Nothing asked yet: close.
                        connection.as_mut().graceful_shutdown();
                    } else {
                        // HTTP/1: the next response says `Connection: close` and hyper closes
                        // after it. An idle connection gets a moment for a request already on
                        // its way (closing under it would lose it), then is closed.
                        idle_drain = Some(now + DRAIN_IDLE);
                    }
                }
                _ = tokio::time::sleep_until(idle_drain.unwrap_or(deadline).into()), if idle_drain.is_some() => {
                    idle_drain = None;
                    if activity.active.load(Ordering::SeqCst) == 0 {
                        connection.as_mut().graceful_shutdown();
                    } else {
                        // A request arrived: its response closes the connection.
                        idle_drain = Some(Instant::now() + DRAIN_IDLE);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if draining.is_some() {
                        tracing::debug!(%peer, "drain did not finish in time: closing");
                        break;
                    }
                    let now = Instant::now();
                    if now >= age_deadline {
                        tracing::debug!(%peer, "connection reached max_connection_age: draining");
                        activity.draining.store(true, Ordering::SeqCst);
                        draining = Some(now + self.timeouts.shutdown_grace);
                        if activity.http2.load(Ordering::SeqCst) {
                            connection.as_mut().graceful_shutdown();
                        } else {
                            idle_drain = Some(now + DRAIN_IDLE);
                        }
                    } else if activity.active.load(Ordering::SeqCst) == 0 {
                        let silent = activity.seen.load(Ordering::SeqCst) == 0;
                        tracing::debug!(%peer, silent, "idle connection closed");
                        metrics::counter!(
                            "warden_connections_closed_idle_total",
                            "before_first_request" => if silent { "true" } else { "false" }
                        )
                        .increment(1);
                        if silent {
                            // Nothing was asked: no answer is owed. Close at once.
                            break;
                        }
                        connection.as_mut().graceful_shutdown();
                        draining = Some(now + IDLE_UNDER_PRESSURE.max(Duration::from_secs(2)));
                    }
                }
            }
        }
        gauge.decrement(1.0);
        drop(guard);
    }
}

fn handshake_failed(reason: &'static str) {
    metrics::counter!(names::HANDSHAKE_FAILURES, "reason" => reason).increment(1);
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a plain-HTTP request to the TLS port is told before the connection closes.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 102\r\nconnection: close\r\n\r\n{\"type\":\"urn:warden:problem:tls-required\",\"title\":\"This port speaks HTTPS: use https://\",\"status\":400}";

/// How much of a plain-HTTP request the lingering close reads, and for how long at most.
const PLAIN_HTTP_DRAIN_BYTES: usize = 64 * 1024;
const PLAIN_HTTP_LINGER: Duration = Duration::from_secs(1);

/// Completes the TLS handshake, or answers a client that spoke plain HTTP to the TLS port with
/// a 400 it can read (instead of a handshake error it cannot), or gives up on anything else.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE => {}
        Ok(1) if first[0].is_ascii_alphabetic() => {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            tracing::debug!(%peer, "plain HTTP on the TLS port: answered 400");
            handshake_failed("plain_http");
            let mut stream = stream;
            let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
            let _ = stream.shutdown().await;
            // A lingering close: closing with the request unread would reset the connection,
            // and a reset can discard the answer before the client reads it. What the client
            // sent is read and dropped, a bounded amount for a bounded time.
            let mut sink = [0u8; 4096];
            let drain = async {
                let mut left = PLAIN_HTTP_DRAIN_BYTES;
                while left > 0 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            };
            let _ = tokio::time::timeout(PLAIN_HTTP_LINGER, drain).await;
            return None;
        }
        // Closed before a byte, or not TLS at all.
        _ => {
            handshake_failed("not_tls");
            return None;
        }
    }
    match acceptor.accept(stream).await {
        Ok(tls) => Some(tls),
        Err(error) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            handshake_failed("handshake");
            None
        }
    }
}

/// Marks the upstream up or down by opening a TCP connection every two seconds (to the
/// upstream of the configuration in service).
async fn probe_upstream(
    live: Live,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let config = live.load_full().config.clone();
        let authority = &config.upstream.authority;
        let target = format!(
            "{}:{}",
            authority.host(),
            authority
                .port_u16()
                .unwrap_or(if config.upstream.scheme == http::uri::Scheme::HTTPS {
                    443
                } else {
                    80
                })
        );
        let timeout = config.server.timeouts.upstream_connect;
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
