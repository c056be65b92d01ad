//! The rate-limit layer: builds the key from vetted values, asks the store, answers 429 with
//! `Retry-After`, and reports the quota in IETF `RateLimit-Policy` / `RateLimit` fields and the
//! legacy `X-RateLimit-*` headers.
//!
//! Used twice per route: before authentication keyed by client IP (a flood never reaches JWKS,
//! the key store or the policy engine), and after authorization keyed by identity, API key,
//! tenant, header or route (forbidden calls spend no quota). Keys are built only from values the
//! gateway vouches for: the resolved client IP, the authenticated identity, the matched route —
//! never a raw credential header.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

use super::algorithm::{Quota, Verdict};
use super::store::{RateLimitStore, StoreError};
use crate::body::Body;
use crate::client_ip::{ClientIp, PeerAddr};
use crate::identity::{AuthMethod, Identity};
use crate::rejection::{Rejection, RejectionKind};
use crate::request_id::RequestId;
use crate::routing::MatchedRoute;

/// One component of a rate-limit key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPart {
    /// The resolved client IP (trusted-proxy aware).
    ClientIp,
    /// The authenticated subject.
    Subject,
    /// The API key id (only for API-key identities; others fall back to the subject).
    ApiKey,
    /// The identity's tenant.
    Tenant,
    /// A request header's value.
    Header(HeaderName),
    /// The matched route.
    Route,
}

/// A named limit: quota, key, and how it reports.
#[derive(Clone, Debug)]
pub struct Limit {
    /// Name in `RateLimit-Policy` / `RateLimit` and in keys.
    pub name: String,
    /// The quota.
    pub quota: Quota,
    /// Key components (joined).
    pub key: Vec<KeyPart>,
    /// Count and log, but never refuse.
    pub shadow: bool,
    /// Send the rate-limit headers.
    pub headers: bool,
}

impl Limit {
    fn key(&self, parts: &http::request::Parts) -> String {
        let identity = parts.extensions.get::<Arc<Identity>>();
        let ip = parts
            .extensions
            .get::<ClientIp>()
            .map(|c| c.ip)
            .or_else(|| parts.extensions.get::<PeerAddr>().map(|p| p.0.ip()));
        let mut key = format!("rl:{}", self.name);
        for part in &self.key {
            key.push(':');
            match part {
                KeyPart::ClientIp => key.push_str(&ip.map(|ip| ip.to_string()).unwrap_or_default()),
                KeyPart::Subject => match identity {
                    Some(who) => key.push_str(&who.subject),
                    // No identity (a public route): the client is the best key there is.
                    None => key.push_str(&format!(
                        "ip={}",
                        ip.map(|ip| ip.to_string()).unwrap_or_default()
                    )),
                },
                KeyPart::ApiKey => match identity {
                    Some(who) if who.method == AuthMethod::ApiKey => {
                        key.push_str(who.key_id.as_deref().unwrap_or(&who.subject))
                    }
                    Some(who) => key.push_str(&who.subject),
                    None => key.push_str(&format!(
                        "ip={}",
                        ip.map(|ip| ip.to_string()).unwrap_or_default()
                    )),
                },
                KeyPart::Tenant => {
                    key.push_str(identity.and_then(|w| w.tenant.as_deref()).unwrap_or("-"))
                }
                KeyPart::Header(name) => key.push_str(
                    parts
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-"),
                ),
                KeyPart::Route => key.push_str(
                    parts
                        .extensions
                        .get::<MatchedRoute>()
                        .map_or("-", |r| &r.name),
                ),
            }
        }
        key
    }
}

/// What to do when the store fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Refuse with 503 (default).
    #[default]
    FailClosed,
    /// Let the request through.
    FailOpen,
}

/// A limit with the header values that never change for it, built once (the per-request
/// work is then only the two numbers that do change).
#[derive(Debug)]
struct Prepared {
    limit: Limit,
    /// `RateLimit-Policy: "name";q=…;w=…`.
    policy: Option<HeaderValue>,
    /// `X-RateLimit-Limit`.
    quota: HeaderValue,
}

impl Prepared {
    fn new(limit: Limit) -> Self {
        let reported = limit.quota.reported_limit();
        let policy = HeaderValue::from_str(&format!(
            "\"{}\";q={reported};w={}",
            limit.name,
            ceil_secs(limit.quota.per)
        ))
        .ok();
        Prepared {
            policy,
            quota: HeaderValue::from(reported),
            limit,
        }
    }
}

/// Layer applying one [`Limit`] (or a tier chosen per request).
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    store: Arc<dyn RateLimitStore>,
    limit: Arc<Prepared>,
    tiers: Arc<Vec<(String, Vec<String>, Prepared)>>,
    on_error: OnStoreError,
}

impl RateLimitLayer {
    /// Applies `limit` with `store`.
    pub fn new(store: Arc<dyn RateLimitStore>, limit: Limit, on_error: OnStoreError) -> Self {
        RateLimitLayer {
            store,
            limit: Arc::new(Prepared::new(limit)),
            tiers: Arc::new(Vec::new()),
            on_error,
        }
    }

    /// Tiers `(name, roles, limit)`: a policy-chosen tier (`RateLimitTier`) or the first tier
    /// whose roles the identity holds replaces the base limit.
    pub fn with_tiers(mut self, tiers: Vec<(String, Vec<String>, Limit)>) -> Self {
        self.tiers = Arc::new(
            tiers
                .into_iter()
                .map(|(name, roles, limit)| (name, roles, Prepared::new(limit)))
                .collect(),
        );
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service produced by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S> Service<Request<Body>> for RateLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let prepared = layer.choose(&parts);
            let limit = &prepared.limit;
            let key = limit.key(&parts);
            let request_id = parts.extensions.get::<RequestId>().cloned();
            let verdict = match layer.store.hit(&key, &limit.quota, 1).await {
                Ok(verdict) => verdict,
                Err(error) => {
                    // An open circuit was logged once when it opened; don't repeat it per request.
                    if matches!(error, StoreError::CircuitOpen) {
                        tracing::debug!(target: "warden::ratelimit", error = %error, "rate-limit store unavailable");
                    } else {
                        tracing::error!(target: "warden::ratelimit", error = %error, "rate-limit store failed");
                    }
                    if layer.on_error == OnStoreError::FailOpen {
                        return inner.call(Request::from_parts(parts, body)).await;
                    }
                    return Ok(Rejection::new(RejectionKind::Unavailable)
                        .into_response(request_id.as_ref()));
                }
            };
            if !verdict.allowed {
                if limit.shadow {
                    tracing::info!(target: "warden::ratelimit", limit = %limit.name, "shadow limit exceeded (not enforced)");
                } else {
                    tracing::info!(target: "warden::ratelimit", limit = %limit.name, "rate limit exceeded");
                    let mut response = Rejection::new(RejectionKind::TooManyRequests)
                        .into_response(request_id.as_ref());
                    if let Some(retry) = verdict.retry_after {
                        response.headers_mut().insert(
                            http::header::RETRY_AFTER,
                            HeaderValue::from(ceil_secs(retry)),
                        );
                    }
                    set_headers(response.headers_mut(), prepared, &verdict);
                    return Ok(response);
                }
            }
            if let Some(delay) = verdict.delay {
                tokio::time::sleep(delay).await;
            }
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            set_headers(response.headers_mut(), prepared, &verdict);
            Ok(response)
        })
    }
}

impl RateLimitLayer {
    fn choose(&self, parts: &http::request::Parts) -> &Prepared {
        if self.tiers.is_empty() {
            return &self.limit;
        }
        let chosen = parts
            .extensions
            .get::<crate::authz::RateLimitTier>()
            .map(|t| t.0.as_str());
        let roles = parts
            .extensions
            .get::<Arc<Identity>>()
            .map(|w| w.roles.as_slice())
            .unwrap_or(&[]);
        self.tiers
            .iter()
            .find(|(name, tier_roles, _)| {
                chosen == Some(name.as_str()) || tier_roles.iter().any(|r| roles.contains(r))
            })
            .map_or(&self.limit, |(_, _, prepared)| prepared)
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

fn set_headers(headers: &mut HeaderMap, prepared: &Prepared, verdict: &Verdict) {
    if !prepared.limit.headers {
        return;
    }
    let reset = ceil_secs(verdict.reset_after);
    // `"name";r=…;t=…`: the one value that needs formatting per request.
    let name = &prepared.limit.name;
    let mut numbers = itoa::Buffer::new();
    let mut current = String::with_capacity(name.len() + 32);
    current.push('"');
    current.push_str(name);
    current.push_str("\";r=");
    current.push_str(numbers.format(verdict.remaining));
    current.push_str(";t=");
    current.push_str(numbers.format(reset));
    if let Some(policy) = &prepared.policy {
        headers.insert(HeaderName::from_static("ratelimit-policy"), policy.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&current) {
        headers.insert(HeaderName::from_static("ratelimit"), value);
    }
    headers.insert(
        HeaderName::from_static("x-ratelimit-limit"),
        prepared.quota.clone(),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderValue::from(verdict.remaining),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-reset"),
        HeaderValue::from(reset),
    );
}
