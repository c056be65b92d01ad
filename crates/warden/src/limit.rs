//! Request-head and body limits, enforced on what actually arrives.
//!
//! Per-route, before authentication (cheapest rejection first). [`RequestLimitsLayer`] enforces
//! [`RequestLimits`] on the head — the number and total size of request headers (431), a declared
//! `Content-Length` above the route's ceiling (413) before any byte is read — and then caps the
//! *streamed* body: chunked HTTP/1.1 and HTTP/2 bodies carry no length, so the only honest limit
//! counts bytes as they flow. When the cap is crossed the body yields a [`LengthLimitError`]; the proxy
//! sees it in the upstream error's source chain, aborts the upstream request (so nothing partial
//! is forwarded as if complete) and answers 413.
//!
//! [`ClientBody`] wraps every request body where the connection is accepted: it ends a body
//! whose client pauses longer than `body_read` between two pieces ([`BodyReadTimeout`], 408),
//! and tags the client's own transport errors (a malformed chunk, a hang-up mid-body) as
//! [`ClientBodyError`], so the proxy answers them as client errors (400) instead of blaming the
//! upstream with a 502.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, header};
use http_body::Frame;
use http_body_util::Limited;
use tower::{Layer, Service};

use crate::body::{self, Body, BoxError};
use crate::rejection::{Rejection, RejectionKind};

pub use http_body_util::LengthLimitError;

/// Whether `error` or anything in its source chain is a `T`.
pub fn caused_by<T: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
) -> bool {
    let mut current = Some(error);
    while let Some(err) = current {
        if err.is::<T>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// Whether `error` or anything in its source chain is a body-limit breach.
pub fn is_length_limit_error(error: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<LengthLimitError>(error)
}

/// The rejection for a request body that failed while it was read or forwarded, or `None`
/// when the failure was not the client's (the upstream's, then).
pub fn client_body_failure(error: &(dyn std::error::Error + 'static)) -> Option<RejectionKind> {
    if caused_by::<LengthLimitError>(error) {
        Some(RejectionKind::PayloadTooLarge)
    } else if caused_by::<BodyReadTimeout>(error) {
        Some(RejectionKind::BodyTimeout)
    } else if caused_by::<ClientBodyError>(error) {
        Some(RejectionKind::BadRequest)
    } else {
        None
    }
}

/// The client paused longer than the body-read timeout between two pieces of its body.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no body data within {0:?}")]
pub struct BodyReadTimeout(pub Duration);

/// The client's body failed in transport (malformed chunked coding, reset, hang-up).
#[derive(Debug, thiserror::Error)]
#[error("client body: {0}")]
pub struct ClientBodyError(#[source] pub BoxError);

pin_project_lite::pin_project! {
    /// A request body as the client sends it, with an idle timeout between frames.
    pub struct ClientBody<B> {
        #[pin]
        inner: B,
        idle: Duration,
        // Created on the first wait: bodies that arrive at once never allocate a timer.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        // Whether `sleep` counts the current wait (re-armed when the next wait begins, so
        // time the gateway spent not polling, e.g. under upstream backpressure, never counts).
        armed: bool,
    }
}

impl<B> ClientBody<B> {
    /// Wraps `inner`; a pause longer than `idle` between frames ends it with an error.
    pub fn new(inner: B, idle: Duration) -> Self {
        ClientBody {
            inner,
            idle,
            sleep: None,
            armed: false,
        }
    }
}

impl<B> http_body::Body for ClientBody<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.armed = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(Box::new(ClientBodyError(error.into())))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + *this.idle;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !*this.armed {
                    sleep.as_mut().reset(deadline);
                    *this.armed = true;
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(Box::new(BodyReadTimeout(*this.idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Limits on a request: its head (fields, bytes) and its body (declared and streamed).
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// Most header fields (each repeated line counts).
    pub max_headers: usize,
    /// Most bytes of header names plus values.
    pub max_header_bytes: usize,
    /// Largest declared `Content-Length` (and streamed body) accepted.
    pub max_body_bytes: u64,
}

impl RequestLimits {
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

/// Layer enforcing [`RequestLimits`] and the streamed body limit.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimitsLayer {
    limits: RequestLimits,
}

impl RequestLimitsLayer {
    /// Enforces `limits`.
    pub fn new(limits: RequestLimits) -> Self {
        RequestLimitsLayer { limits }
    }
}

impl<S> Layer<S> for RequestLimitsLayer {
    type Service = RequestLimitsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestLimitsService {
            inner,
            limits: self.limits,
        }
    }
}

/// Service produced by [`RequestLimitsLayer`].
#[derive(Clone, Debug)]
pub struct RequestLimitsService<S> {
    inner: S,
    limits: RequestLimits,
}

impl<S> Service<Request<Body>> for RequestLimitsService<S>
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

    fn limits() -> RequestLimits {
        RequestLimits {
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

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_ends_after_the_idle_timeout_and_errors_are_classified() {
        let (tx, rx) = futures_channel_body();
        let body = ClientBody::new(rx, Duration::from_secs(15));
        let reader = tokio::spawn(async move { body.collect().await });
        tx.send(Ok(Frame::data(bytes::Bytes::from_static(b"x"))))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(14)).await;
        tx.send(Ok(Frame::data(bytes::Bytes::from_static(b"y"))))
            .await
            .expect("send");
        // 14 s, then 14 s again: each pause is under the limit.
        tokio::time::sleep(Duration::from_secs(14)).await;
        assert!(!reader.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let err = reader.await.expect("join").expect_err("timed out");
        assert_eq!(
            client_body_failure(err.as_ref()),
            Some(RejectionKind::BodyTimeout)
        );
        drop(tx);

        let failing = ClientBody::new(
            http_body_util::StreamBody::new(futures_util::stream::iter(vec![Err::<
                Frame<bytes::Bytes>,
                std::io::Error,
            >(
                std::io::Error::other("invalid chunk size"),
            )])),
            Duration::from_secs(1),
        );
        let err = failing.collect().await.expect_err("client error");
        assert_eq!(
            client_body_failure(err.as_ref()),
            Some(RejectionKind::BadRequest)
        );
        let other = std::io::Error::other("connection refused");
        assert_eq!(client_body_failure(&other), None);
    }

    type FrameResult = Result<Frame<bytes::Bytes>, std::io::Error>;

    fn futures_channel_body() -> (
        tokio::sync::mpsc::Sender<FrameResult>,
        http_body_util::StreamBody<tokio_stream_shim::Receiver>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (
            tx,
            http_body_util::StreamBody::new(tokio_stream_shim::Receiver(rx)),
        )
    }

    mod tokio_stream_shim {
        use super::FrameResult;
        use std::pin::Pin;
        use std::task::{Context, Poll};

        pub struct Receiver(pub tokio::sync::mpsc::Receiver<FrameResult>);

        impl futures_util::Stream for Receiver {
            type Item = FrameResult;
            fn poll_next(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                self.0.poll_recv(cx)
            }
        }
    }

    #[tokio::test]
    async fn streamed_bytes_over_the_limit_error_with_a_recognizable_cause() {
        let limited = body::boxed(Limited::new(body::full("0123456789"), 8));
        let err = limited.collect().await.expect_err("over the limit");
        assert!(is_length_limit_error(err.as_ref()));
    }
}
