//! The one body type that flows through every Warden layer.
//!
//! Requests arrive as hyper's `Incoming` and responses come back from the upstream the same way;
//! both are boxed once at the edge into [`Body`] so that every layer, rejection and route service
//! shares a single concrete type. Boxing costs one allocation per body and keeps the route table
//! (whose services differ per route) expressible as one type.
//!
//! Submodules inspect request bodies on routes that declare body rules: [`json`] (safety limits,
//! one parse), [`schema`] (JSON Schema), [`format`] (LLM request formats, extracted into one
//! typed [`format::ExtractedBody`]) and [`rules`] (the per-route layer that runs them).

pub mod format;
pub mod json;
pub mod rules;
pub mod schema;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// Boxed error carried by bodies; the gateway inspects its source chain (for example to tell a
/// body-limit breach from an upstream failure).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response inside the pipeline.
///
/// A newtype rather than an alias of the boxed body: a type without a trait object in its
/// parameters keeps rustc's lifetime inference for `Send` futures happy in async middleware
/// (the same reason axum's `Body` is a newtype).
#[derive(Default)]
pub struct Body(UnsyncBoxBody<Bytes, BoxError>);

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Body")
    }
}

impl Body {
    /// Boxes any body whose errors convert into [`BoxError`].
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body(body.map_err(Into::into).boxed_unsync())
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Body::new(body)
}

/// A complete body from bytes held in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body::new(Full::new(bytes.into()))
}

/// An empty body.
pub fn empty() -> Body {
    Body::new(Empty::<Bytes>::new())
}

pin_project_lite::pin_project! {
    /// A body that holds `guard` until it is dropped: a permit or counter that must live as
    /// long as the body streams (an upstream connection slot, a request in flight).
    pub struct Guarded<B, G> {
        #[pin]
        inner: B,
        guard: G,
    }
}

impl<B, G> http_body::Body for Guarded<B, G>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project()
            .inner
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body`, holding `guard` until the body is dropped (fully sent or abandoned). Boxed once:
/// pass an unboxed body (hyper's `Incoming`) where there is one.
pub fn with_guard<B, G>(body: B, guard: G) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    G: Send + 'static,
{
    Body::new(Guarded { inner: body, guard })
}

pin_project_lite::pin_project! {
    /// Frames already read, replayed before the rest of the body (request buffering).
    pub struct Replay {
        frames: std::collections::VecDeque<Frame<Bytes>>,
        #[pin]
        rest: Body,
    }
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => this.rest.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.is_end_stream()
    }
}

/// Reads `body` until it ends or more than `max` bytes arrived. `Ok(full)` when it ended
/// within `max` (a complete in-memory body); otherwise the frames read so far replay before
/// the rest. Errors are the body's own (a limit breach, a client timeout).
pub async fn buffer_up_to(mut body: Body, max: usize) -> Result<Body, BoxError> {
    let mut frames = std::collections::VecDeque::new();
    let mut bytes = 0usize;
    while bytes <= max {
        match body.frame().await {
            Some(frame) => {
                let frame = frame?;
                if let Some(data) = frame.data_ref() {
                    bytes += data.len();
                }
                frames.push_back(frame);
            }
            None => {
                // Complete: one data frame (and trailers, if any) from memory. A body that
                // arrived in one piece is not copied.
                let mut chunks = Vec::with_capacity(frames.len());
                let mut trailers = None;
                for frame in frames {
                    match frame.into_data() {
                        Ok(chunk) => chunks.push(chunk),
                        Err(frame) => trailers = frame.into_trailers().ok(),
                    }
                }
                let data = match chunks.len() {
                    1 => chunks.pop().unwrap_or_default(),
                    _ => chunks.concat().into(),
                };
                let full = Full::new(data);
                return Ok(match trailers {
                    None => Body::new(full),
                    Some(t) => Body::new(full.with_trailers(std::future::ready(Some(Ok(t))))),
                });
            }
        }
    }
    Ok(Body::new(Replay { frames, rest: body }))
}
