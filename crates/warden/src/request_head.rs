//! Conformance of the request head, for what the HTTP parsers let through.
//!
//! In the global stack just above routing (see the gateway's `stack.rs`). hyper and h2 accept
//! some heads that RFC 9112 and RFC 9113 say a server must refuse, and an upstream behind the
//! gateway may read them differently than the gateway does. This layer closes those gaps:
//!
//! - `Host` (RFC 9112 §3.2): an HTTP/1.1 request without one, with several, or with a value
//!   that is not `host[:port]` is 400; an HTTP/2 `host` that differs from `:authority` is 400;
//!   an absolute-form target's authority wins over `Host`. With an allow-list of host names,
//!   any other host is 404 (as if no route matched).
//! - `Transfer-Encoding` other than exactly `chunked` (`gzip, chunked`, `identity`, repeated
//!   `chunked`) is 501 (RFC 9112 §6.1): the gateway would silently drop the coding.
//! - A field value with leading or trailing whitespace is 400 (RFC 9113 §8.2.1 makes such an
//!   HTTP/2 request malformed; the HTTP/1 parser already trims).
//! - Several HTTP/2 `cookie` fields are joined into one with `; ` (RFC 9113 §8.2.3) before any
//!   layer reads them, so the cookie seen by authentication is the one the upstream gets.

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::header::{COOKIE, HOST, TRANSFER_ENCODING};
use http::{HeaderValue, Request, Response, Version};
use tower::{Layer, Service};

use crate::body::Body;
use crate::rejection::{Rejection, RejectionKind};

/// Splits an authority (`host`, `host:port`, `[v6]`, `[v6]:port`) into host and port; `None`
/// when it is not one. Host names are limited to letters, digits, `-`, `.`, `_` and `~`: no
/// user information, no percent-escapes, no spaces or slashes, at most 255 bytes.
pub fn split_authority(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        inner.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (&text[..inner.len() + 2], port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 255
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')));
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.len() <= 5 => {
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// Checks and normalizes request heads; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct RequestHeadLayer {
    hosts: Arc<[String]>,
}

impl RequestHeadLayer {
    /// Serves every host.
    pub fn new() -> Self {
        RequestHeadLayer::default()
    }

    /// Serves only these host names (lowercase, without port); others are 404.
    pub fn with_hosts(mut self, hosts: Vec<String>) -> Self {
        self.hosts = hosts.into();
        self
    }

    fn check(&self, req: &mut Request<Body>) -> Result<(), Rejection> {
        let headers = req.headers();
        if headers.contains_key(TRANSFER_ENCODING) {
            let mut values = headers.get_all(TRANSFER_ENCODING).iter();
            let only_chunked = values
                .next()
                .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"))
                && values.next().is_none();
            if !only_chunked {
                tracing::info!("refused a transfer coding other than chunked");
                return Err(RejectionKind::NotImplemented.into());
            }
        }
        for value in headers.values() {
            let bytes = value.as_bytes();
            if bytes.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
                || bytes.last().is_some_and(|b| matches!(b, b' ' | b'\t'))
            {
                tracing::info!("refused a header value with surrounding whitespace");
                return Err(RejectionKind::BadRequest.into());
            }
        }
        let host = self.effective_host(req)?;
        if !self.hosts.is_empty() {
            let name = host.unwrap_or("");
            if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                tracing::info!("request for a host that is not served");
                return Err(RejectionKind::NotFound.into());
            }
        }
        if req.version() == Version::HTTP_2 && req.headers().get_all(COOKIE).iter().count() > 1 {
            join_cookies(req.headers_mut());
        }
        Ok(())
    }

    /// The host name the request is for (without port, as sent: compare it ignoring ASCII
    /// case), after the RFC 9112 §3.2 checks.
    fn effective_host<'r>(&self, req: &'r Request<Body>) -> Result<Option<&'r str>, Rejection> {
        let bad = |why: &'static str| {
            tracing::info!(reason = why, "refused the request's host");
            Rejection::new(RejectionKind::BadRequest)
        };
        let mut hosts = req.headers().get_all(HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err(bad("more than one Host header"));
        }
        let host = match host {
            Some(value) => {
                let text = value.to_str().map_err(|_| bad("Host is not ASCII"))?;
                let (name, _) = split_authority(text).ok_or_else(|| bad("invalid Host"))?;
                Some((text, name))
            }
            None => None,
        };
        let authority = req.uri().authority().map(|a| a.as_str());
        match (authority, host) {
            (Some(authority), host) => {
                let (name, _) =
                    split_authority(authority).ok_or_else(|| bad("invalid target authority"))?;
                if req.version() == Version::HTTP_2
                    && host.is_some_and(|(text, _)| !text.eq_ignore_ascii_case(authority))
                {
                    return Err(bad("HTTP/2 host differs from :authority"));
                }
                if req.version() == Version::HTTP_11 && host.is_none() {
                    return Err(bad("HTTP/1.1 request without Host"));
                }
                Ok(Some(name))
            }
            (None, Some((_, name))) => Ok(Some(name)),
            (None, None) if req.version() == Version::HTTP_10 => Ok(None),
            (None, None) => Err(bad("request without Host")),
        }
    }
}

fn join_cookies(headers: &mut http::HeaderMap) {
    let mut joined = Vec::new();
    for value in headers.get_all(COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

impl<S> Layer<S> for RequestHeadLayer {
    type Service = RequestHead<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestHead {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service produced by [`RequestHeadLayer`].
#[derive(Clone, Debug)]
pub struct RequestHead<S> {
    inner: S,
    layer: RequestHeadLayer,
}

impl<S> Service<Request<Body>> for RequestHead<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<std::future::Ready<Result<Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        match self.layer.check(&mut req) {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err(rejection) => Either::Left(std::future::ready(Ok(
                rejection.into_response_for(req.extensions())
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;

    #[test]
    fn authorities_are_host_and_optional_port() {
        for good in [
            "a",
            "api.example.com",
            "api.example.com:8080",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "under_score",
        ] {
            assert!(split_authority(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "a/admin",
            "a b",
            "user@evil",
            "a:",
            "a:99999",
            "a:80:80",
            "a:+80",
            "[::1",
            "[nothex]",
            "[::1]x",
            "%61",
            "a\\b",
            ":80",
        ] {
            assert!(split_authority(bad).is_none(), "{bad}");
        }
        assert_eq!(split_authority("[::1]:8080"), Some(("[::1]", Some(8080))));
    }

    fn req(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::builder().version(version).uri(uri);
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        builder.body(body::empty()).expect("request")
    }

    fn kind(layer: &RequestHeadLayer, mut r: Request<Body>) -> Option<RejectionKind> {
        layer.check(&mut r).err().map(|e| e.kind())
    }

    #[test]
    fn host_rules() {
        let layer = RequestHeadLayer::new();
        let h11 = Version::HTTP_11;
        assert_eq!(kind(&layer, req(h11, "/", &[("host", "a")])), None);
        assert_eq!(
            kind(&layer, req(h11, "/", &[])),
            Some(RejectionKind::BadRequest)
        );
        assert_eq!(kind(&layer, req(Version::HTTP_10, "/", &[])), None);
        let mut two = req(h11, "/", &[("host", "a")]);
        two.headers_mut()
            .append(HOST, HeaderValue::from_static("b"));
        assert_eq!(kind(&layer, two), Some(RejectionKind::BadRequest));
        assert_eq!(
            kind(&layer, req(Version::HTTP_2, "http://a/x", &[("host", "b")])),
            Some(RejectionKind::BadRequest)
        );
        assert_eq!(
            kind(&layer, req(Version::HTTP_2, "http://a/x", &[("host", "A")])),
            None
        );
        let only = RequestHeadLayer::new().with_hosts(vec!["api.example.com".into()]);
        assert_eq!(
            kind(&only, req(h11, "/", &[("host", "API.example.com:8080")])),
            None
        );
        assert_eq!(
            kind(&only, req(h11, "/", &[("host", "evil.example.com")])),
            Some(RejectionKind::NotFound)
        );
        // The absolute-form target wins over Host.
        assert_eq!(
            kind(
                &only,
                req(
                    h11,
                    "http://evil.example.com/",
                    &[("host", "api.example.com")]
                )
            ),
            Some(RejectionKind::NotFound)
        );
    }

    #[test]
    fn transfer_codings_other_than_chunked_are_501() {
        let layer = RequestHeadLayer::new();
        let with = |te: &str| {
            req(
                Version::HTTP_11,
                "/",
                &[("host", "a"), ("transfer-encoding", te)],
            )
        };
        assert_eq!(kind(&layer, with("chunked")), None);
        assert_eq!(kind(&layer, with("Chunked")), None);
        for te in ["gzip, chunked", "identity", "chunked, chunked", "gzip"] {
            assert_eq!(
                kind(&layer, with(te)),
                Some(RejectionKind::NotImplemented),
                "{te}"
            );
        }
    }

    #[test]
    fn h2_cookies_are_joined() {
        let layer = RequestHeadLayer::new();
        let mut r = req(
            Version::HTTP_2,
            "http://a/",
            &[("cookie", "a=1"), ("cookie", "b=2")],
        );
        layer.check(&mut r).expect("fine");
        let all: Vec<_> = r.headers().get_all(COOKIE).iter().collect();
        assert_eq!(all, vec!["a=1; b=2"]);
    }
}
