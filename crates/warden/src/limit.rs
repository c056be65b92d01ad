//! Request-head and body limits, enforced on what actually arrives.
//!
//! Per-route, before authentication (cheapest rejection first). [`HeadLimits`] bounds the number
//! and total size of request headers (431) and refuses a declared `Content-Length` above the
//! route's ceiling (413) before any byte is read. [`BodyLimitLayer`] then caps the *streamed*
//! body: chunked HTTP/1.1 and HTTP/2 bodies carry no length, so the only honest limit counts
//! bytes as they flow. When the cap is crossed the body yields a [`LengthLimitError`]; the proxy
//! sees it in the upstream error's source chain, aborts the upstream request (so nothing partial
//! is forwarded as if complete) and answers 413.

use std::task::{Context, Poll};

use http::{Request, Response, header};
use http_body_util::Limited;
use tower::{Layer, Service};

use crate::body::{self, Body};
use crate::rejection::{Rejection, RejectionKind};

pub use http_body_util::LengthLimitError;

/// Whether `error` or anything in its source chain is a body-limit breach.
pub fn is_length_limit_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(err) = current {
        if err.is::<LengthLimitError>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// Limits on the request head, checked before anything else in a route.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// Most header fields (each repeated line counts).
    pub max_headers: usize,
    /// Most bytes of header names plus values.
    pub max_header_bytes: usize,
    /// Largest declared `Content-Length` (and streamed body) accepted.
    pub max_body_bytes: u64,
}

impl HeadLimits {
    /// Checks the head of a request against these limits.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), Rejection> {
        let headers = req.headers();
        if headers.len() > self.max_headers {
            return Err(RejectionKind::HeadersTooLarge.into());
        }
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if bytes > self.max_header_bytes {
            return Err(RejectionKind::HeadersTooLarge.into());
        }
        for value in headers.get_all(header::CONTENT_LENGTH) {
            let declared = value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| Rejection::new(RejectionKind::BadRequest))?;
            if declared > self.max_body_bytes {
                return Err(RejectionKind::PayloadTooLarge.into());
            }
        }
        Ok(())
    }
}

/// Layer enforcing [`HeadLimits`] and the streamed body limit.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer {
    limits: HeadLimits,
}

impl BodyLimitLayer {
    /// Enforces `limits`.
    pub fn new(limits: HeadLimits) -> Self {
        BodyLimitLayer { limits }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            limits: self.limits,
        }
    }
}

/// Service produced by [`BodyLimitLayer`].
#[derive(Clone, Debug)]
pub struct BodyLimit<S> {
    inner: S,
    limits: HeadLimits,
}

impl<S> Service<Request<Body>> for BodyLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response<Body>, S::Error>>,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        if let Err(rejection) = self.limits.check(&req) {
            let response = rejection.into_response_for(req.extensions());
            return Either::Left(std::future::ready(Ok(response)));
        }
        let max = usize::try_from(self.limits.max_body_bytes).unwrap_or(usize::MAX);
        let req = req.map(|b| body::boxed(Limited::new(b, max)));
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn limits() -> HeadLimits {
        HeadLimits {
            max_headers: 4,
            max_header_bytes: 64,
            max_body_bytes: 8,
        }
    }

    #[test]
    fn declared_length_over_the_ceiling_is_413() {
        let req = Request::builder()
            .header("content-length", "9")
            .body(())
            .expect("request");
        let err = limits().check(&req).expect_err("too large");
        assert_eq!(err.kind(), RejectionKind::PayloadTooLarge);
    }

    #[test]
    fn too_many_or_too_large_headers_are_431() {
        let mut builder = Request::builder();
        for i in 0..5 {
            builder = builder.header(format!("x-h{i}"), "v");
        }
        let err = limits()
            .check(&builder.body(()).expect("request"))
            .expect_err("count");
        assert_eq!(err.kind(), RejectionKind::HeadersTooLarge);
        let req = Request::builder()
            .header("x-big", "v".repeat(100))
            .body(())
            .expect("request");
        assert_eq!(
            limits().check(&req).expect_err("size").kind(),
            RejectionKind::HeadersTooLarge
        );
    }

    #[tokio::test]
    async fn streamed_bytes_over_the_limit_error_with_a_recognizable_cause() {
        let limited = body::boxed(Limited::new(body::full("0123456789"), 8));
        let err = limited.collect().await.expect_err("over the limit");
        assert!(is_length_limit_error(err.as_ref()));
    }
}
