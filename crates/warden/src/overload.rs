//! Load shedding: a cap on requests in flight across every connection and stream.
//!
//! In the global stack right under request id and access log (see the gateway's `stack.rs`),
//! so a shed request is still logged and answered with problem+json. Connection caps alone do
//! not bound the work: one HTTP/2 connection carries up to `max_concurrent_streams` requests.
//! This layer counts requests, not connections: when `max` are in flight the next one is
//! answered 503 at once (Envoy's overload manager sheds the same way) instead of queueing. A
//! request stays counted until its response body has been sent or abandoned, so long streams
//! (server-sent events) count for as long as they hold resources.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use crate::body::{self, Body};
use crate::rejection::{Rejection, RejectionKind};

/// Caps requests in flight; see the module docs.
#[derive(Clone, Debug)]
pub struct InFlightLimitLayer {
    permits: Arc<Semaphore>,
}

impl InFlightLimitLayer {
    /// At most `max` requests in flight.
    pub fn new(max: usize) -> Self {
        InFlightLimitLayer {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// Service produced by [`InFlightLimitLayer`].
#[derive(Clone, Debug)]
pub struct InFlightLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S> Service<Request<Body>> for InFlightLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => ResponseFuture::Admitted {
                inner: self.inner.call(req),
                permit: Some(permit),
            },
            Err(_) => {
                tracing::warn!(
                    target: "warden::overload",
                    "requests in flight at server.limits.max_requests: shedding"
                );
                metrics::counter!("warden_requests_shed_total").increment(1);
                ResponseFuture::Shed {
                    response: Some(
                        Rejection::new(RejectionKind::Overloaded)
                            .into_response_for(req.extensions()),
                    ),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`InFlightLimit`] (its fields are private in all but name).
    #[project = Projection]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F> {
        /// Admitted: the permit moves into the response body.
        Admitted { #[pin] inner: F, permit: Option<OwnedSemaphorePermit> },
        /// Shed: the 503.
        Shed { response: Option<Response<Body>> },
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projection::Admitted { inner, permit } => {
                let response = std::task::ready!(inner.poll(cx))?;
                Poll::Ready(Ok(match permit.take() {
                    Some(permit) => response.map(|b| body::with_guard(b, permit)),
                    None => response,
                }))
            }
            Projection::Shed { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_request_counts_until_its_body_is_done() {
        let layer = InFlightLimitLayer::new(1);
        let svc = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_req: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(Response::new(body::full("streaming")))
            });
        let first = svc
            .clone()
            .oneshot(Request::new(body::empty()))
            .await
            .expect("ok");
        assert_eq!(first.status(), 200);
        // The first body is still unsent: the second request is shed.
        let second = svc
            .clone()
            .oneshot(Request::new(body::empty()))
            .await
            .expect("ok");
        assert_eq!(second.status(), 503);
        first.into_body().collect().await.expect("body");
        let third = svc.oneshot(Request::new(body::empty())).await.expect("ok");
        assert_eq!(third.status(), 200);
    }
}
