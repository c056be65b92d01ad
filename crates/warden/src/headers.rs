//! Security response headers: OWASP-style profiles plus operator overrides.
//!
//! Sits in the global stack outside routing, so every response (forwarded or rejected) gets the
//! same headers. Profile headers fill in what the upstream did not set; headers named in `set`
//! always win; headers in `remove` (and always `Server` and `X-Powered-By`, which only help
//! attackers fingerprint the upstream) are dropped from every response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response, header};
use tower::{Layer, Service};

/// Which set of default headers to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Profile {
    /// For JSON APIs (OWASP REST Security / Secure Headers): nothing may render or frame a
    /// response, nothing is cached.
    #[default]
    Api,
    /// For HTML served to browsers: a helmet-like policy that allows same-origin resources.
    Browser,
    /// No defaults; only `set`/`remove`.
    None,
}

const API: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-permitted-cross-domain-policies", "none"),
];

const BROWSER: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; base-uri 'self'; font-src 'self' https: data:; form-action 'self'; \
         frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; \
         script-src-attr 'none'; style-src 'self' https: 'unsafe-inline'; upgrade-insecure-requests",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("origin-agent-cluster", "?1"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-dns-prefetch-control", "off"),
    ("x-download-options", "noopen"),
    ("x-frame-options", "SAMEORIGIN"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
];

/// `Strict-Transport-Security` sent when the listener serves TLS (two years, subdomains).
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// The compiled header policy applied to every response.
#[derive(Clone, Debug, Default)]
pub struct HeaderPolicy {
    defaults: Vec<(HeaderName, HeaderValue)>,
    forced: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderPolicy {
    /// The defaults of `profile`; `tls` adds HSTS (never sent over cleartext, RFC 6797 §7.2).
    pub fn new(profile: Profile, tls: bool) -> Self {
        let table: &[(&str, &str)] = match profile {
            Profile::Api => API,
            Profile::Browser => BROWSER,
            Profile::None => &[],
        };
        let mut defaults: Vec<(HeaderName, HeaderValue)> = table
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect();
        if tls && profile != Profile::None {
            defaults.push((
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            ));
        }
        HeaderPolicy {
            defaults,
            forced: Vec::new(),
            remove: vec![header::SERVER, HeaderName::from_static("x-powered-by")],
        }
    }

    /// Always sets `name: value`, replacing what the upstream or the profile set.
    pub fn set(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.defaults.retain(|(n, _)| n != name);
        self.remove.retain(|n| n != name);
        self.forced.push((name, value));
        self
    }

    /// Removes `name` from every response (and from the profile defaults).
    pub fn remove(mut self, name: HeaderName) -> Self {
        self.defaults.retain(|(n, _)| n != name);
        self.forced.retain(|(n, _)| n != name);
        if !self.remove.contains(&name) {
            self.remove.push(name);
        }
        self
    }

    /// Applies the policy to a response's headers.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        // One growth step instead of several as the profile's headers go in.
        headers.reserve(self.defaults.len() + self.forced.len());
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.defaults {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.forced {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Layer that applies [`HeaderPolicy`].
#[derive(Clone, Debug)]
pub struct SecurityHeadersLayer {
    policy: Arc<HeaderPolicy>,
}

impl SecurityHeadersLayer {
    /// Applies `policy` to every response.
    pub fn new(policy: HeaderPolicy) -> Self {
        SecurityHeadersLayer {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeadersService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeadersService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Service produced by [`SecurityHeadersLayer`].
#[derive(Clone, Debug)]
pub struct SecurityHeadersService<S> {
    inner: S,
    policy: Arc<HeaderPolicy>,
}

impl<S, B, RB> Service<Request<B>> for SecurityHeadersService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            policy: self.policy.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`SecurityHeadersService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        policy: Arc<HeaderPolicy>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        this.policy.apply(response.headers_mut());
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn api_profile_fills_in_and_strips_fingerprints() {
        let policy = HeaderPolicy::new(Profile::Api, false);
        let mut headers = HeaderMap::new();
        headers.insert(header::SERVER, "uvicorn".parse().expect("value"));
        headers.insert("x-powered-by", "FastAPI".parse().expect("value"));
        headers.insert(header::CACHE_CONTROL, "max-age=5".parse().expect("value"));
        policy.apply(&mut headers);
        assert!(!headers.contains_key(header::SERVER));
        assert!(!headers.contains_key("x-powered-by"));
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers[header::CACHE_CONTROL], "max-age=5");
        assert!(!headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
    }

    #[test]
    fn hsts_only_over_tls_and_overrides_win() {
        let policy = HeaderPolicy::new(Profile::Api, true)
            .set(header::CACHE_CONTROL, HeaderValue::from_static("private"))
            .remove(HeaderName::from_static("x-frame-options"));
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, "public".parse().expect("value"));
        headers.insert("x-frame-options", "ALLOW".parse().expect("value"));
        policy.apply(&mut headers);
        assert_eq!(headers[header::STRICT_TRANSPORT_SECURITY], HSTS);
        assert_eq!(headers[header::CACHE_CONTROL], "private");
        assert!(!headers.contains_key("x-frame-options"));
    }
}
