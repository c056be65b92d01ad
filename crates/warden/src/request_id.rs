//! Request ids: accept a well-formed incoming `X-Request-Id`, otherwise generate one; and the
//! W3C trace context beside it (`trace_context`).
//!
//! Sits near the top of the global stack so every later layer, log line, rejection body and the
//! upstream see the same id. Incoming ids are accepted only when they are short and made of a
//! conservative character set, so a client cannot inject log-breaking or oversized values.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::trace_context::TraceContext;

/// The header that carries the request id both ways.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id that is accepted as is.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A validated request id, stored in request and response extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Accepts `1..=128` characters from `[A-Za-z0-9._:-]`; anything else is refused.
    pub fn parse(value: &str) -> Option<Self> {
        Self::from_header(&HeaderValue::from_str(value).ok()?)
    }

    fn from_header(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        well_formed.then(|| RequestId(value.clone()))
    }

    /// A fresh random (UUID v4) id.
    pub fn generate() -> Self {
        /// The id's 36 bytes, owned by the header value's buffer.
        struct Text([u8; 36]);
        impl AsRef<[u8]> for Text {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        let mut text = Text([0; 36]);
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text.0);
        // One allocation, shared by every clone (the id goes upstream, into the extensions and
        // back on the response): a value copied from a slice would allocate again when first
        // cloned.
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text));
        RequestId(value.unwrap_or_else(|_| HeaderValue::from_static("-")))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Validated as ASCII on construction, so this never falls back.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// Layer that assigns [`RequestId`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// Service produced by [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(RequestId::from_header)
            .unwrap_or_else(RequestId::generate);
        // Overwrite (not append): exactly one id travels upstream, the one we log.
        req.headers_mut()
            .insert(X_REQUEST_ID.clone(), id.header_value().clone());
        req.extensions_mut().insert(id.clone());
        // The trace context travels with the id: kept when well formed, else generated.
        let trace = TraceContext::of_request(req.headers_mut());
        req.extensions_mut().insert(trace);
        ResponseFuture {
            inner: self.inner.call(req),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`RequestIdService`]: stamps the id on the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        id: Option<RequestId>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response
                .headers_mut()
                .insert(X_REQUEST_ID.clone(), id.header_value().clone());
            response.extensions_mut().insert(id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_conservative_ids_only() {
        assert!(RequestId::parse("0f3c-ab:12_x.y").is_some());
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse("a b").is_none());
        assert!(RequestId::parse("a\"b").is_none());
        assert!(RequestId::parse(&"a".repeat(129)).is_none());
        assert!(RequestId::parse(&"a".repeat(128)).is_some());
    }

    #[test]
    fn generated_ids_are_unique_and_valid() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
        assert!(RequestId::parse(a.as_str()).is_some());
    }
}
