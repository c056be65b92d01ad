//! Strips client-sent identity headers before anything else runs.
//!
//! The gateway tells the upstream who the caller is through headers with a configured prefix
//! (`X-Warden-` by default). A client must never be able to forge them, so the outermost layer
//! removes every incoming header whose name starts with that prefix in any letter case and with
//! `_` in place of `-` (some upstream frameworks, WSGI and CGI among them, fold `_` into `-`).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, Request};
use tower::{Layer, Service};

/// The prefix of gateway-owned identity headers, normalized to lowercase with `-`.
#[derive(Clone, Debug)]
pub struct IdentityPrefix(Arc<str>);

impl IdentityPrefix {
    /// Normalizes `prefix` (case, `_`) for comparison. An empty prefix is refused.
    pub fn new(prefix: &str) -> Option<Self> {
        if prefix.is_empty() || HeaderName::from_bytes(prefix.as_bytes()).is_err() {
            return None;
        }
        Some(IdentityPrefix(normalize(prefix).into()))
    }

    /// The normalized prefix (lowercase, `-`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` falls under the prefix, whatever its case or `_`/`-` spelling.
    pub fn matches(&self, name: &str) -> bool {
        let prefix = self.0.as_bytes();
        let name = name.as_bytes();
        name.len() >= prefix.len() && name.iter().zip(prefix).all(|(&n, &p)| fold(n) == p)
    }

    /// Removes every header under the prefix; returns how many names were removed.
    pub fn strip(&self, headers: &mut HeaderMap) -> usize {
        // Collect first (rare path): HeaderMap cannot be mutated while iterating its keys.
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.matches(name.as_str()))
            .cloned()
            .collect();
        for name in &doomed {
            headers.remove(name);
        }
        doomed.len()
    }
}

fn fold(byte: u8) -> u8 {
    match byte {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

fn normalize(text: &str) -> String {
    text.bytes().map(|b| char::from(fold(b))).collect()
}

/// Layer that strips identity-prefixed headers from requests.
#[derive(Clone, Debug)]
pub struct StripIdentityHeadersLayer {
    prefix: IdentityPrefix,
}

impl StripIdentityHeadersLayer {
    /// Strips headers under `prefix`.
    pub fn new(prefix: IdentityPrefix) -> Self {
        StripIdentityHeadersLayer { prefix }
    }
}

impl<S> Layer<S> for StripIdentityHeadersLayer {
    type Service = StripIdentityHeaders<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StripIdentityHeaders {
            inner,
            prefix: self.prefix.clone(),
        }
    }
}

/// Service produced by [`StripIdentityHeadersLayer`].
#[derive(Clone, Debug)]
pub struct StripIdentityHeaders<S> {
    inner: S,
    prefix: IdentityPrefix,
}

impl<S, B> Service<Request<B>> for StripIdentityHeaders<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let removed = self.prefix.strip(req.headers_mut());
        if removed > 0 {
            tracing::debug!(removed, "stripped client-sent identity headers");
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_spelling_and_keeps_the_rest() {
        let prefix = IdentityPrefix::new("X-Warden-").expect("valid");
        let mut headers = HeaderMap::new();
        for name in [
            "x-warden-subject",
            "X-WARDEN-TENANT",
            "x_warden_roles",
            "X_Warden-Scopes",
            "x-warden-",
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                "forged".parse().expect("value"),
            );
        }
        headers.insert("x-wardenx", "keep".parse().expect("value"));
        headers.insert("x-other", "keep".parse().expect("value"));
        assert_eq!(prefix.strip(&mut headers), 5);
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn empty_prefix_is_refused() {
        assert!(IdentityPrefix::new("").is_none());
        assert!(IdentityPrefix::new("bad prefix").is_none());
    }
}
