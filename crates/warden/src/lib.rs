//! # warden
//!
//! The security pipeline of the Warden gateway as tower layers, for Rust services built on
//! hyper or axum. The `warden` binary (crate `warden-gateway`) assembles these same layers
//! behind a configuration file; this crate knows nothing of files or CLIs.
//!
//! The modules are the pipeline's steps: [`identity_headers`], [`request_id`], [`client_ip`],
//! [`overload`], [`headers`], [`catch_panic`], [`timeout`], [`request_head`], [`canonical`],
//! [`limit`], [`authn`], [`authz`], [`ratelimit`]. Their order, and the reason for each
//! position, is written once, in the gateway's `stack.rs`; a Rust service can assemble the
//! same layers in the same order.
//!
//! Every refusal is a [`rejection::Rejection`] rendered as RFC 9457 problem+json.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use warden::{body, headers, identity_headers, limit, request_id};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(identity_headers::StripIdentityHeadersLayer::new(
//!         identity_headers::IdentityPrefix::new("X-Warden-").unwrap(),
//!     ))
//!     .layer(request_id::RequestIdLayer)
//!     .layer(warden::catch_panic::CatchPanicLayer)
//!     .layer(headers::SecurityHeadersLayer::new(headers::HeaderPolicy::new(
//!         headers::Profile::Api,
//!         false,
//!     )))
//!     .layer(limit::RequestLimitsLayer::new(limit::RequestLimits {
//!         max_headers: 100,
//!         max_header_bytes: 16 * 1024,
//!         max_body_bytes: 1 << 20,
//!     }))
//!     .service_fn(|req: Request<body::Body>| async move {
//!         assert!(req.headers().get("x-warden-subject").is_none());
//!         Ok::<_, Infallible>(Response::new(body::full("ok")))
//!     });
//! let req = Request::builder()
//!     .header("X-Warden-Subject", "forged")
//!     .body(body::empty())
//!     .unwrap();
//! let response = svc.oneshot(req).await.unwrap();
//! assert_eq!(response.headers()["x-content-type-options"], "nosniff");
//! assert!(response.headers().contains_key("x-request-id"));
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod authn;
pub mod authz;
pub mod body;
pub mod budget;
pub mod canonical;
pub mod catch_panic;
pub mod client_ip;
pub mod clock;
pub mod future;
pub mod guard;
pub mod headers;
pub mod identity;
pub mod identity_headers;
pub mod limit;
pub mod metric_handles;
pub mod overload;
pub mod ratelimit;
pub mod rejection;
pub mod request_head;
pub mod request_id;
pub mod routing;
pub mod timeout;
pub mod trace_context;
