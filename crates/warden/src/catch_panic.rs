//! Turns a panic anywhere below into a 500 problem response instead of a dropped connection.
//!
//! A bug must never take the connection (and every other request multiplexed on it) down with
//! it. Anywhere under the request-id layer, the 500 body still cites the request id (where the
//! gateway puts it, and why, is said once, in its `stack.rs`). Unlike tower-http's `CatchPanic`,
//! the handler here sees the request's extensions, which is what lets the rejection carry the id.

use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::future::ResponseFuture;
use crate::rejection::{Rejection, RejectionKind};
use crate::request_id::RequestId;

/// Layer that catches panics.
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic { inner }
    }
}

/// Service produced by [`CatchPanicLayer`].
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CatchPanic<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req)));
        match called {
            Ok(future) => ResponseFuture::new(
                AssertUnwindSafe(future)
                    .catch_unwind()
                    .map(move |result| result.unwrap_or_else(|_| Ok(panic_response(id.as_ref())))),
            ),
            Err(_) => {
                let response = panic_response(id.as_ref());
                ResponseFuture::new(std::future::ready(Ok(response)))
            }
        }
    }
}

fn panic_response(id: Option<&RequestId>) -> Response<Body> {
    tracing::error!(
        request_id = id.map(RequestId::as_str),
        "a request handler panicked"
    );
    Rejection::new(RejectionKind::Internal).into_response(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt};

    #[tokio::test]
    async fn panics_in_call_and_in_the_future_become_500() {
        let svc = ServiceBuilder::new().layer(CatchPanicLayer).service_fn(
            |req: Request<()>| async move {
                if req.uri().path() == "/boom" {
                    panic!("bug");
                }
                Ok::<_, Infallible>(Response::new(crate::body::empty()))
            },
        );
        let ok = svc
            .clone()
            .oneshot(Request::new(()))
            .await
            .expect("infallible");
        assert_eq!(ok.status(), 200);
        let req = Request::builder().uri("/boom").body(()).expect("request");
        let boom = svc.oneshot(req).await.expect("infallible");
        assert_eq!(boom.status(), 500);
    }
}
