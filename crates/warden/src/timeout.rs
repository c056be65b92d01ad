//! Overall request timeout: the response head must be ready within the configured time.
//!
//! Wraps everything from routing to the upstream's response head, answering 504 problem+json when
//! it elapses. The response *body* is not timed here: a server-sent-events stream may legitimately
//! run for minutes, and idle bodies are bounded by the connection's own timeouts instead.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::rejection::{Rejection, RejectionKind};
use crate::request_id::RequestId;

/// Layer that bounds the time to a response head.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Answers 504 when no response head is ready after `limit`.
    pub fn new(limit: Duration) -> Self {
        TimeoutLayer { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// Service produced by [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: tokio::time::sleep(self.limit),
            id,
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Timeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: tokio::time::Sleep,
        id: Option<RequestId>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        std::task::ready!(this.sleep.poll(cx));
        tracing::warn!(
            request_id = this.id.as_ref().map(RequestId::as_str),
            "request timed out"
        );
        let rejection = Rejection::new(RejectionKind::RequestTimeout);
        Poll::Ready(Ok(rejection.into_response(this.id.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt};

    #[tokio::test(start_paused = true)]
    async fn slow_handlers_get_504() {
        let svc = ServiceBuilder::new()
            .layer(TimeoutLayer::new(Duration::from_secs(1)))
            .service_fn(|_req: Request<()>| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, Infallible>(Response::new(crate::body::empty()))
            });
        let response = svc.oneshot(Request::new(())).await.expect("infallible");
        assert_eq!(response.status(), 504);
    }
}
