//! The one named response future of Warden's async layers.
//!
//! Layers whose work before the inner call is asynchronous (authentication, rate limiting,
//! catching panics) box their future once. They all return this type, so a stack built from
//! them names one future type, not a `Pin<Box<dyn Future>>` per layer; layers that decide
//! synchronously use `Either` of a ready rejection and the inner future instead, and box nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use crate::body::Body;

/// A boxed future of a response (see the module docs).
pub struct ResponseFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>,
}

impl<E> ResponseFuture<E> {
    /// Boxes `future`.
    pub fn new(future: impl Future<Output = Result<Response<Body>, E>> + Send + 'static) -> Self {
        ResponseFuture {
            inner: Box::pin(future),
        }
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> std::fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}
