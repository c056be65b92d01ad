//! The one body type that flows through every Warden layer.
//!
//! Requests arrive as hyper's `Incoming` and responses come back from the upstream the same way;
//! both are boxed once at the edge into [`Body`] so that every layer, rejection and route service
//! shares a single concrete type. Boxing costs one allocation per body and keeps the route table
//! (whose services differ per route) expressible as one type.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// Boxed error carried by bodies; the gateway inspects its source chain (for example to tell a
/// body-limit breach from an upstream failure).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response inside the pipeline.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A complete body from bytes held in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}
