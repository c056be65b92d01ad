//! The upstream leg: header hygiene, forwarding headers, streaming, failure mapping.
//!
//! The last step of every route. Before forwarding, hop-by-hop headers and every header the
//! client named in `Connection` are removed, *then* the gateway sets its own headers, so
//! `Connection` can never remove a header the gateway sets (and the request id, already set, is
//! protected explicitly). The client's `Host`, `Forwarded` and `X-Forwarded-*` are replaced by
//! values the gateway vouches for. Bodies stream both ways without buffering; a body-limit
//! breach aborts the upstream request and answers 413; connection failures answer 502 and
//! timeouts 504, with the cause logged and never sent to the client.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use warden::body::{self, Body};
use warden::client_ip::{ClientIp, PeerAddr};
use warden::identity::Identity;
use warden::limit::is_length_limit_error;
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

/// Forwards requests to the configured upstream through a pooled client.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: Client<HttpConnector, Body>,
    upstream: Upstream,
    response_timeout: Duration,
    scheme: &'static str,
    identity_headers: IdentityHeaders,
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
        set(&self.roles, &identity.roles.join(","));
        set(&self.scopes, &identity.scopes.join(" "));
        set(&self.method, identity.method.as_str());
    }
}

impl Proxy {
    /// A proxy for `config`'s upstream; `scheme` is the listener's (`http` or `https`).
    pub fn new(config: &Config, scheme: &'static str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.server.timeouts.upstream_connect));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Proxy {
            client,
            upstream: config.upstream.clone(),
            response_timeout: config.server.timeouts.upstream_response,
            scheme,
            identity_headers: IdentityHeaders::new(config.upstream.identity_prefix.as_str()),
        }
    }

    /// Forwards `req` (whose path is already canonical) and relays the response.
    pub async fn forward(&self, req: Request<Body>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let request_id = parts.extensions.get::<RequestId>().cloned();
        let uri = match self.upstream_uri(&parts.uri) {
            Ok(uri) => uri,
            Err(_) => {
                return Rejection::new(RejectionKind::BadRequest)
                    .into_response(request_id.as_ref());
            }
        };
        let forwarded_host = original_host(&parts);
        let client_ip = parts.extensions.get::<ClientIp>().copied();
        let peer = parts.extensions.get::<PeerAddr>().copied();
        strip_hop_by_hop(&mut parts.headers, &[&X_REQUEST_ID]);
        let headers = &mut parts.headers;
        headers.remove(header::HOST);
        headers.remove(header::FORWARDED);
        let trusted_proto = headers
            .remove(&X_FORWARDED_PROTO)
            .filter(|v| v == "https" || v == "http")
            .filter(|_| client_ip.is_some_and(|c| c.forwarded));
        headers.remove(&X_FORWARDED_HOST);
        headers.remove(&X_FORWARDED_FOR);
        if let Some(value) = forwarded_for(client_ip, peer) {
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

        let sent =
            tokio::time::timeout(self.response_timeout, self.client.request(upstream_req)).await;
        let id = request_id.as_ref().map(RequestId::as_str);
        match sent {
            Ok(Ok(response)) => {
                let (mut parts, incoming) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers, &[]);
                parts.extensions.insert(Outcome::Forwarded);
                Response::from_parts(parts, body::boxed(incoming))
            }
            Ok(Err(error)) if is_length_limit_error(&error) => {
                tracing::info!(
                    request_id = id,
                    "request body exceeded the limit while streaming"
                );
                Rejection::new(RejectionKind::PayloadTooLarge).into_response(request_id.as_ref())
            }
            Ok(Err(error)) => {
                let kind = if is_timeout(&error) {
                    RejectionKind::GatewayTimeout
                } else {
                    RejectionKind::BadGateway
                };
                tracing::warn!(request_id = id, error = %error_chain(&error), "upstream request failed");
                Rejection::new(kind).into_response(request_id.as_ref())
            }
            Err(_) => {
                tracing::warn!(request_id = id, timeout = ?self.response_timeout, "upstream response timed out");
                Rejection::new(RejectionKind::GatewayTimeout).into_response(request_id.as_ref())
            }
        }
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

fn original_host(parts: &http::request::Parts) -> Option<HeaderValue> {
    parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// `client` alone, or `client, peer` when a trusted proxy vouched for the client.
fn forwarded_for(client: Option<ClientIp>, peer: Option<PeerAddr>) -> Option<HeaderValue> {
    let text = match (client, peer) {
        (Some(c), Some(p)) if c.forwarded => format!("{}, {}", c.ip, p.0.ip()),
        (Some(c), _) => c.ip.to_string(),
        (None, Some(p)) => p.0.ip().to_string(),
        (None, None) => return None,
    };
    HeaderValue::from_str(&text).ok()
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
        let peer = PeerAddr("10.0.0.1:5000".parse().expect("addr"));
        let direct = ClientIp {
            ip: "10.0.0.1".parse().expect("ip"),
            forwarded: false,
        };
        let via = ClientIp {
            ip: "203.0.113.9".parse().expect("ip"),
            forwarded: true,
        };
        assert_eq!(
            forwarded_for(Some(direct), Some(peer)).expect("value"),
            "10.0.0.1"
        );
        assert_eq!(
            forwarded_for(Some(via), Some(peer)).expect("value"),
            "203.0.113.9, 10.0.0.1"
        );
        assert!(forwarded_for(None, None).is_none());
    }
}
