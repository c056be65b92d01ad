//! The upstream leg: header hygiene, forwarding headers, a bounded pool, failure mapping.
//!
//! The last step of every route. Before forwarding, hop-by-hop headers and every header the
//! client named in `Connection` are removed, *then* the gateway sets its own headers, so
//! `Connection` can never remove a header the gateway sets (and the request id, already set, is
//! protected explicitly). The client's `Host`, `Forwarded` and `X-Forwarded-*` are replaced by
//! values the gateway vouches for, and rewrite and client-address headers (`X-Original-URL`,
//! `X-Real-IP`, `X-Forwarded-Prefix`...: `upstream.strip_headers`) are never forwarded.
//!
//! The upstream is protected like an Envoy cluster: at most `upstream.max_connections` requests
//! in flight (one connection each: the upstream leg is HTTP/1.1), at most `max_pending` waiting
//! for one, and the connector itself never holds more than `max_connections` connections; past
//! that the answer is 503, never an exhausted descriptor table. Bodies up to `request_buffer`
//! are read whole before a connection is taken (a slow client then holds none, as with nginx's
//! request buffering); larger ones stream. A body-limit breach answers 413, a client pausing
//! past `body_read` 408, a client's broken body 400 (logged as the client's fault); connection
//! failures answer 502 and timeouts 504, with the cause logged and never sent to the client.
//!
//! An `https://` upstream is reached through rustls with the verification `upstream.tls`
//! compiled (DESIGN.md §2 "Connection"); a handshake failure is a 502 of its own kind
//! (`upstream_tls`), and TCP connect plus handshake share `timeouts.upstream_connect`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warden::body::{self, Body};
use warden::client_ip::ClientIp;
use warden::identity::Identity;
use warden::limit::client_body_failure;
use warden::rejection::{Outcome, Rejection, RejectionKind};
use warden::request_id::{RequestId, X_REQUEST_ID};

use crate::config::{Config, Upstream};

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies must not forward.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Why the upstream gave no response, in the rejection's response extensions (for the audit
/// trail's `upstream-failure` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection could be made (refused, unreachable, DNS).
    Connect,
    /// A connect or I/O timeout.
    Timeout,
    /// No response head within `server.timeouts.upstream_response`.
    ResponseTimeout,
    /// The TLS handshake failed: the certificate did not verify for the upstream's name, the
    /// upstream refused the client certificate, or no version or suite was shared.
    Tls,
    /// The connection broke or the upstream answered something that is not HTTP.
    Protocol,
    /// The upstream connection cap was reached.
    Saturated,
}

impl UpstreamFailure {
    /// The `event.reason` code.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "upstream_connect",
            UpstreamFailure::Timeout => "upstream_timeout",
            UpstreamFailure::ResponseTimeout => "upstream_response_timeout",
            UpstreamFailure::Tls => "upstream_tls",
            UpstreamFailure::Protocol => "upstream_protocol",
            UpstreamFailure::Saturated => "upstream_saturated",
        }
    }
}

/// Forwards requests to the configured upstream through a pooled client.
#[derive(Clone, Debug)]
pub struct Proxy {
    pool: UpstreamPool,
    upstream: Upstream,
    response_timeout: Duration,
    pending_timeout: Duration,
    scheme: &'static str,
    identity_headers: IdentityHeaders,
    trust_forwarded_proto: bool,
}

/// The upstream connections and the cap on requests toward them: what a reload keeps when the
/// upstream's address, TLS, connection cap and connect timeout are unchanged (open connections
/// are reused, and requests of the old and new configuration share one cap).
#[derive(Clone, Debug)]
pub struct UpstreamPool {
    client: Client<CountingConnector, Body>,
    in_flight: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
}

/// The headers that tell the upstream who is calling, under the configured prefix.
#[derive(Clone, Debug)]
struct IdentityHeaders {
    subject: HeaderName,
    tenant: HeaderName,
    roles: HeaderName,
    scopes: HeaderName,
    method: HeaderName,
}

impl IdentityHeaders {
    fn new(prefix: &str) -> Self {
        let name = |suffix: &str| {
            HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes())
                .unwrap_or_else(|_| HeaderName::from_static("x-warden-invalid"))
        };
        IdentityHeaders {
            subject: name("subject"),
            tenant: name("tenant"),
            roles: name("roles"),
            scopes: name("scopes"),
            method: name("auth-method"),
        }
    }

    /// Sets the identity headers (values were checked for header safety by the authenticator).
    fn apply(&self, headers: &mut HeaderMap, identity: &Identity) {
        let mut set = |name: &HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), value);
            }
        };
        set(&self.subject, &identity.subject);
        if let Some(tenant) = &identity.tenant {
            set(&self.tenant, tenant);
        }
        // `join` allocates exactly the joined length, so the header takes that buffer as it is
        // (one allocation, no copy; a buffer with spare capacity would cost a second block).
        let mut joined = |name: &HeaderName, list: &[String], separator: &str| {
            let text = bytes::Bytes::from(list.join(separator));
            if let Ok(value) = HeaderValue::from_maybe_shared(text) {
                headers.insert(name.clone(), value);
            }
        };
        joined(&self.roles, &identity.roles, ",");
        joined(&self.scopes, &identity.scopes, " ");
        headers.insert(
            self.method.clone(),
            HeaderValue::from_static(identity.method.as_str()),
        );
    }
}

impl UpstreamPool {
    /// A pool for `config`'s upstream.
    pub fn new(config: &Config) -> Self {
        let connect_timeout = config.server.timeouts.upstream_connect;
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        // The TLS layer checks the scheme: `https` only when the upstream is `https://`.
        tcp.enforce_http(false);
        let connector = match &config.upstream.tls {
            Some(tls) => {
                let builder = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config((*tls.config).clone())
                    .https_only();
                let builder = match &tls.server_name {
                    Some(name) => builder.with_server_name_resolver(
                        hyper_rustls::FixedServerNameResolver::new(name.clone()),
                    ),
                    None => builder,
                };
                builder.enable_http1().wrap_connector(tcp)
            }
            // Plain `http://`: the TLS layer passes connections through (it would trust no
            // certificate, were it ever asked for `https`).
            None => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(trusting_nothing())
                .https_or_http()
                .enable_http1()
                .wrap_connector(tcp),
        };
        let max = config.upstream.max_connections;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(max.min(256))
            .build(CountingConnector::new(connector, max, connect_timeout));
        UpstreamPool {
            client,
            in_flight: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Proxy {
    /// A proxy for `config`'s upstream with a pool of its own; `scheme` is the listener's
    /// (`http` or `https`).
    pub fn new(config: &Config, scheme: &'static str) -> Self {
        Self::with_pool(config, scheme, UpstreamPool::new(config))
    }

    /// A proxy for `config`'s upstream through `pool` (kept across a reload).
    pub fn with_pool(config: &Config, scheme: &'static str, pool: UpstreamPool) -> Self {
        Proxy {
            pool,
            upstream: config.upstream.clone(),
            response_timeout: config.server.timeouts.upstream_response,
            pending_timeout: config.server.timeouts.upstream_connect,
            scheme,
            identity_headers: IdentityHeaders::new(config.upstream.identity_prefix.as_str()),
            trust_forwarded_proto: config.server.trust_forwarded_proto,
        }
    }

    /// A slot for one request toward the upstream: at once, after a bounded wait in the
    /// pending queue, or `None` (503) when the queue is full or the wait runs out.
    async fn upstream_slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.pool.in_flight.clone().try_acquire_owned() {
            return Some(permit);
        }
        // Counted out on drop: a waiter cancelled by the overall timeout or a vanished client
        // must leave the queue too, or the queue would fill with ghosts.
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let queued = Queued(&self.pool.pending);
        if self.pool.pending.fetch_add(1, Ordering::SeqCst) >= self.upstream.max_pending {
            return None;
        }
        let waited = tokio::time::timeout(
            self.pending_timeout,
            self.pool.in_flight.clone().acquire_owned(),
        )
        .await;
        drop(queued);
        waited.ok().and_then(Result::ok)
    }

    /// Forwards `req` (whose path is already canonical) and relays the response.
    pub async fn forward(&self, req: Request<Body>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let request_id = parts.extensions.get::<RequestId>().cloned();
        let id = request_id.as_ref().map(RequestId::as_str);
        let body = match self.buffer(body).await {
            Ok(body) => body,
            Err(error) => {
                let kind = client_body_failure(error.as_ref()).unwrap_or(RejectionKind::BadRequest);
                tracing::info!(request_id = id, error = %error, "request body failed before forwarding (client)");
                return Rejection::new(kind).into_response(request_id.as_ref());
            }
        };
        let uri = match self.upstream_uri(&parts.uri) {
            Ok(uri) => uri,
            Err(_) => {
                return Rejection::new(RejectionKind::BadRequest)
                    .into_response(request_id.as_ref());
            }
        };
        let forwarded_host = original_host(&parts);
        let client_ip = parts.extensions.get::<ClientIp>().copied();
        strip_hop_by_hop(&mut parts.headers, &[&X_REQUEST_ID]);
        let headers = &mut parts.headers;
        headers.remove(header::HOST);
        headers.remove(header::FORWARDED);
        // Believed only when configured, and only from a trusted proxy.
        let trusted_proto = headers
            .remove(&X_FORWARDED_PROTO)
            .filter(|v| v == "https" || v == "http")
            .filter(|_| self.trust_forwarded_proto && client_ip.is_some_and(|c| c.trusted_peer));
        headers.remove(&X_FORWARDED_HOST);
        headers.remove(&X_FORWARDED_FOR);
        self.upstream.strip_headers.apply(headers);
        if let Some(value) = client_ip.and_then(forwarded_for) {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            trusted_proto.unwrap_or_else(|| HeaderValue::from_static(self.scheme)),
        );
        if let Some(host) = forwarded_host {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        // Client-sent copies were stripped before anything ran; these are the gateway's own.
        if let Some(identity) = parts.extensions.get::<Arc<Identity>>() {
            self.identity_headers.apply(&mut parts.headers, identity);
        }
        parts.uri = uri;
        // The upstream leg is HTTP/1.1 whatever the client spoke.
        parts.version = Version::HTTP_11;
        let upstream_req = Request::from_parts(parts, body);

        let Some(slot) = self.upstream_slot().await else {
            tracing::warn!(
                request_id = id,
                max_connections = self.upstream.max_connections,
                max_pending = self.upstream.max_pending,
                "upstream connection limit reached: shedding"
            );
            metrics::counter!("warden_upstream_shed_total").increment(1);
            return Rejection::new(RejectionKind::Overloaded).into_response(request_id.as_ref());
        };
        let sent = tokio::time::timeout(
            self.response_timeout,
            self.pool.client.request(upstream_req),
        )
        .await;
        match sent {
            Ok(Ok(response)) => {
                let (mut parts, incoming) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers, &[]);
                parts.extensions.insert(Outcome::Forwarded);
                // The connection stays in use until the response body is read.
                Response::from_parts(parts, body::with_guard(incoming, slot))
            }
            Ok(Err(error)) => {
                if let Some(kind) = client_body_failure(&error) {
                    tracing::info!(request_id = id, error = %error_chain(&error), "request body failed while streaming (client)");
                    return Rejection::new(kind).into_response(request_id.as_ref());
                }
                // The connector's cap (the error chain says so), or the upstream itself.
                let (kind, failure) = if warden::limit::caused_by::<Saturated>(&error) {
                    (RejectionKind::Overloaded, UpstreamFailure::Saturated)
                } else if is_tls_failure(&error) {
                    (RejectionKind::BadGateway, UpstreamFailure::Tls)
                } else if is_timeout(&error) {
                    (RejectionKind::GatewayTimeout, UpstreamFailure::Timeout)
                } else if error.is_connect() {
                    (RejectionKind::BadGateway, UpstreamFailure::Connect)
                } else {
                    (RejectionKind::BadGateway, UpstreamFailure::Protocol)
                };
                tracing::warn!(request_id = id, error = %error_chain(&error), "upstream request failed");
                let mut response = Rejection::new(kind).into_response(request_id.as_ref());
                response.extensions_mut().insert(failure);
                response
            }
            Err(_) => {
                tracing::warn!(request_id = id, timeout = ?self.response_timeout, "upstream response timed out");
                let mut response = Rejection::new(RejectionKind::GatewayTimeout)
                    .into_response(request_id.as_ref());
                response
                    .extensions_mut()
                    .insert(UpstreamFailure::ResponseTimeout);
                response
            }
        }
    }

    /// Reads small bodies whole before an upstream connection is taken.
    async fn buffer(&self, body: Body) -> Result<Body, warden::body::BoxError> {
        use http_body::Body as _;
        let max = self.upstream.request_buffer;
        let declared_large = body.size_hint().lower() > max as u64;
        if max == 0 || body.is_end_stream() || declared_large {
            return Ok(body);
        }
        warden::body::buffer_up_to(body, max).await
    }

    fn upstream_uri(&self, incoming: &Uri) -> Result<Uri, http::Error> {
        let path = incoming.path();
        let mut target = String::with_capacity(self.upstream.base_path.len() + path.len() + 1);
        target.push_str(&self.upstream.base_path);
        target.push_str(path);
        if let Some(query) = incoming.query() {
            target.push('?');
            target.push_str(query);
        }
        Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(target)
            .build()
    }
}

/// Removes hop-by-hop headers and those named in `Connection`, except `protected` ones.
fn strip_hop_by_hop(headers: &mut HeaderMap, protected: &[&HeaderName]) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !protected.contains(&name))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The host the client asked for: an absolute-form target's (or HTTP/2 `:authority`'s)
/// authority wins over `Host` (RFC 9112 §3.2.2); both were validated before routing.
fn original_host(parts: &http::request::Parts) -> Option<HeaderValue> {
    parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(header::HOST).cloned())
}

/// A client TLS configuration with no trust anchors: every certificate fails verification.
fn trusting_nothing() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
        .expect("aws-lc-rs supports the default protocol versions")
}

/// The connector refused: `upstream.max_connections` connections are open.
#[derive(Debug, thiserror::Error)]
#[error("upstream connection limit reached")]
struct Saturated;

/// The TCP (and, for `https://`, TLS) connector.
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The connector, never holding more than `max` connections open at once, and giving up when
/// TCP and TLS together take longer than `server.timeouts.upstream_connect` (the TCP connector's
/// own timeout does not cover a handshake the upstream never finishes).
#[derive(Clone, Debug)]
struct CountingConnector {
    inner: Connector,
    live: Arc<Semaphore>,
    timeout: Duration,
}

impl CountingConnector {
    fn new(inner: Connector, max: usize, timeout: Duration) -> Self {
        CountingConnector {
            inner,
            live: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            timeout,
        }
    }
}

impl tower::Service<Uri> for CountingConnector {
    type Response = Counted;
    type Error = warden::body::BoxError;
    type Future = futures_util::future::BoxFuture<'static, Result<Counted, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let permit = self.live.clone().try_acquire_owned();
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            let permit = permit.map_err(|_| Box::new(Saturated) as warden::body::BoxError)?;
            let io = match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected?,
                Err(_) => {
                    return Err(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "upstream connect (TCP and TLS) timed out",
                    )) as warden::body::BoxError);
                }
            };
            let gauge = metrics::gauge!("warden_upstream_connections");
            gauge.increment(1.0);
            Ok(Counted {
                io,
                _permit: permit,
                gauge,
            })
        })
    }
}

pin_project_lite::pin_project! {
    /// An upstream connection holding its place under the connector's cap.
    struct Counted {
        #[pin]
        io: hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>,
        _permit: OwnedSemaphorePermit,
        gauge: metrics::Gauge,
    }

    impl PinnedDrop for Counted {
        fn drop(this: Pin<&mut Self>) {
            this.gauge.decrement(1.0);
        }
    }
}

impl hyper_util::client::legacy::connect::Connection for Counted {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.io.connected()
    }
}

impl hyper::rt::Read for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
}

/// `client` alone, or `client, peer` when a trusted proxy vouched for the client.
fn forwarded_for(client: ClientIp) -> Option<HeaderValue> {
    use std::io::Write;
    // Formatted on the stack (two IPv6 addresses fit): the value's own bytes are the only
    // allocation.
    const CAP: usize = 96;
    let mut buf = [0u8; CAP];
    let mut out = &mut buf[..];
    let written = if client.forwarded {
        write!(out, "{}, {}", client.ip, client.peer)
    } else {
        write!(out, "{}", client.ip)
    };
    let len = CAP - out.len();
    written.ok()?;
    HeaderValue::from_bytes(&buf[..len]).ok()
}

fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// Whether a TLS error is in `error`'s chain. tokio-rustls wraps it in an `io::Error`, and the
/// TLS connector wraps that in another; `io::Error::source()` skips the wrapped error, so each
/// one is unwrapped here.
fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(err) = current {
        let mut inner: &(dyn std::error::Error + 'static) = err;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        if inner.is::<rustls::Error>() {
            return true;
        }
        current = err.source();
    }
    false
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(err) = current {
        text.push_str(": ");
        text.push_str(&err.to_string());
        current = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cannot_remove_protected_or_later_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            "x-request-id, x-secret, keep-alive".parse().expect("v"),
        );
        headers.insert("x-request-id", "abc".parse().expect("v"));
        headers.insert("x-secret", "1".parse().expect("v"));
        headers.insert("keep-alive", "timeout=5".parse().expect("v"));
        headers.insert("te", "trailers".parse().expect("v"));
        strip_hop_by_hop(&mut headers, &[&X_REQUEST_ID]);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-request-id"], "abc");
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn connect_timeouts_are_told_apart_from_refusals() {
        let timed_out = Wrapper(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timeout",
        ));
        assert!(is_timeout(&timed_out));
        let refused = Wrapper(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(!is_timeout(&refused));
        assert_eq!(error_chain(&refused), "client error (Connect): refused");
    }

    #[test]
    fn forwarded_for_lists_only_vouched_addresses() {
        let peer = "10.0.0.1".parse().expect("ip");
        let direct = ClientIp {
            ip: peer,
            forwarded: false,
            peer,
            trusted_peer: false,
        };
        let via = ClientIp {
            ip: "203.0.113.9".parse().expect("ip"),
            forwarded: true,
            peer,
            trusted_peer: true,
        };
        assert_eq!(forwarded_for(direct).expect("value"), "10.0.0.1");
        assert_eq!(forwarded_for(via).expect("value"), "203.0.113.9, 10.0.0.1");
    }
}
