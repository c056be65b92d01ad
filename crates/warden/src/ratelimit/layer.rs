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

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

use super::algorithm::{Quota, Verdict};
use super::store::{RateLimitStore, StoreError};
use crate::body::Body;
use crate::client_ip::ClientIp;
use crate::future::ResponseFuture;
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
    /// The key: `rl:NAME` then `|tag:value` per part, each value escaped (`%`, `|` and every
    /// byte outside printable ASCII as `%XX`), so no value can imitate another part or a
    /// separator. A part the request lacks has its own marker (`|h!`, `|tenant!`): every such
    /// request shares that one documented bucket. Without an identity, subject and API-key
    /// parts key by client IP under the tag `anon`, never to be confused with a subject.
    fn key(&self, parts: &http::request::Parts) -> String {
        build_key("rl:", &self.name, &self.key, parts)
    }
}

/// `prefix NAME`, then `|tag:value` per part (see [`Limit::key`]); token budgets key the same
/// way under their own prefix.
pub(crate) fn build_key(
    prefix: &str,
    name: &str,
    key_parts: &[KeyPart],
    parts: &http::request::Parts,
) -> String {
    let identity = parts.extensions.get::<Arc<Identity>>();
    let ip = parts.extensions.get::<ClientIp>().map(|c| c.ip);
    let mut key = String::with_capacity(64);
    key.push_str(prefix);
    push_escaped(&mut key, name.as_bytes());
    let ip_text = |key: &mut String, tag: &str| match ip {
        Some(ip) => {
            use std::fmt::Write;
            let _ = write!(key, "|{tag}:{ip}");
        }
        None => {
            key.push('|');
            key.push_str(tag);
            key.push('!');
        }
    };
    for part in key_parts {
        let value: Option<&[u8]> = match part {
            KeyPart::ClientIp => {
                ip_text(&mut key, "ip");
                continue;
            }
            KeyPart::Subject | KeyPart::ApiKey => match identity {
                Some(who) if *part == KeyPart::ApiKey && who.method == AuthMethod::ApiKey => {
                    key.push_str("|key:");
                    Some(who.key_id.as_deref().unwrap_or(&who.subject).as_bytes())
                }
                Some(who) => {
                    key.push_str("|sub:");
                    Some(who.subject.as_bytes())
                }
                None => {
                    ip_text(&mut key, "anon");
                    continue;
                }
            },
            KeyPart::Tenant => match identity.and_then(|w| w.tenant.as_deref()) {
                Some(tenant) => {
                    key.push_str("|tenant:");
                    Some(tenant.as_bytes())
                }
                None => {
                    key.push_str("|tenant!");
                    None
                }
            },
            KeyPart::Header(name) => match parts.headers.get(name) {
                Some(value) => {
                    key.push_str("|h:");
                    Some(value.as_bytes())
                }
                None => {
                    key.push_str("|h!");
                    None
                }
            },
            KeyPart::Route => match parts.extensions.get::<MatchedRoute>() {
                Some(route) => {
                    key.push_str("|route:");
                    Some(route.name.as_bytes())
                }
                None => {
                    key.push_str("|route!");
                    None
                }
            },
        };
        if let Some(value) = value {
            push_escaped(&mut key, value);
        }
    }
    key
}

/// Appends `bytes` with `%`, `|` and everything outside printable ASCII as `%XX`.
fn push_escaped(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if (0x21..0x7f).contains(&b) && b != b'%' && b != b'|' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
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
    /// The name, shared by metric labels and [`RateLimited`] records without a copy.
    label: Arc<str>,
    /// `RateLimit-Policy: "name";q=…;w=…`.
    policy: Option<HeaderValue>,
    /// `X-RateLimit-Limit`.
    quota: HeaderValue,
    /// `warden_ratelimit_decisions_total` handles by decision.
    decisions: crate::metric_handles::Handles<&'static str, metrics::Counter>,
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
            label: Arc::from(limit.name.as_str()),
            limit,
            decisions: Default::default(),
        }
    }

    fn count(&self, decision: &'static str) {
        self.decisions
            .get(decision, || {
                metrics::counter!(names::DECISIONS, "limit" => metrics::SharedString::from(self.label.clone()), "decision" => decision)
            })
            .increment(1);
    }
}

/// Metric names.
pub mod names {
    /// Counter: decisions by `limit` and `decision` (`allowed`, `limited`, `shadow_limited`,
    /// `store_error`).
    pub const DECISIONS: &str = "warden_ratelimit_decisions_total";
}

/// A limit that was exceeded, in the response extensions (for the audit trail): refused, or
/// let through because the limit is a shadow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// The limit's name.
    pub limit: Arc<str>,
    /// A shadow limit: counted, not enforced.
    pub shadow: bool,
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
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture::new(async move {
            let (parts, body) = req.into_parts();
            let prepared = layer.choose(&parts);
            let limit = &prepared.limit;
            let key = limit.key(&parts);
            let request_id = parts.extensions.get::<RequestId>().cloned();
            let decision = |decision: &'static str| prepared.count(decision);
            let verdict = match layer.store.hit(&key, &limit.quota, 1).await {
                Ok(verdict) => verdict,
                Err(error) => {
                    decision("store_error");
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
            let exceeded = (!verdict.allowed).then(|| RateLimited {
                limit: prepared.label.clone(),
                shadow: limit.shadow,
            });
            match &exceeded {
                Some(_) if limit.shadow => {
                    decision("shadow_limited");
                    tracing::info!(target: "warden::ratelimit", limit = %limit.name, "shadow limit exceeded (not enforced)");
                    metrics::counter!("warden_ratelimit_shadow_exceeded_total", "limit" => metrics::SharedString::from(prepared.label.clone()))
                        .increment(1);
                }
                Some(exceeded) => {
                    decision("limited");
                    tracing::info!(target: "warden::ratelimit", limit = %limit.name, "rate limit exceeded");
                    let mut response = Rejection::too_many_requests(verdict.retry_after)
                        .into_response(request_id.as_ref());
                    set_headers(response.headers_mut(), prepared, &verdict);
                    response.extensions_mut().insert(exceeded.clone());
                    return Ok(response);
                }
                None => decision("allowed"),
            }
            if let Some(delay) = verdict.delay {
                tokio::time::sleep(delay).await;
            }
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            set_headers(response.headers_mut(), prepared, &verdict);
            if let Some(exceeded) = exceeded {
                response.extensions_mut().insert(exceeded);
            }
            Ok(response)
        })
    }
}

impl RateLimitLayer {
    fn choose(&self, parts: &http::request::Parts) -> &Prepared {
        choose_tier(parts, &*self.limit, &self.tiers)
    }
}

/// `base`, or the tier that replaces it for this request: the one a policy chose
/// (`RateLimitTier`), else the first whose roles the identity holds.
pub(crate) fn choose_tier<'a, T>(
    parts: &http::request::Parts,
    base: &'a T,
    tiers: &'a [(String, Vec<String>, T)],
) -> &'a T {
    if tiers.is_empty() {
        return base;
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
    // The policy's choice wins; only without one does the first tier by role apply.
    let by_policy = chosen.and_then(|c| tiers.iter().find(|(name, _, _)| name == c));
    by_policy
        .or_else(|| {
            tiers
                .iter()
                .find(|(_, tier_roles, _)| tier_roles.iter().any(|r| roles.contains(r)))
        })
        .map_or(base, |(_, _, tier)| tier)
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Reports this limit on a response. `RateLimit-Policy` and `RateLimit` are lists: a limit
/// whose item is already there (a layer nearer the upstream) keeps it, and this one appends
/// its own. The single-valued `X-RateLimit-*` headers report the most restrictive limit: the
/// one with the fewest remaining, which on a 429 is always the refusing one.
fn set_headers(headers: &mut HeaderMap, prepared: &Prepared, verdict: &Verdict) {
    if !prepared.limit.headers {
        return;
    }
    let reset = ceil_secs(verdict.reset_after);
    // `"name";r=…;t=…`: the one value that needs formatting per request.
    // Built at its exact length, so the header takes the buffer (one allocation, no copy).
    let name = &prepared.limit.name;
    let (mut remaining, mut resets) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (remaining, reset_text) = (remaining.format(verdict.remaining), resets.format(reset));
    let mut current =
        String::with_capacity(name.len() + "\"\";r=;t=".len() + remaining.len() + reset_text.len());
    current.push('"');
    current.push_str(name);
    current.push_str("\";r=");
    current.push_str(remaining);
    current.push_str(";t=");
    current.push_str(reset_text);
    if let Some(policy) = &prepared.policy {
        append_item(headers, &RATELIMIT_POLICY, policy.clone());
    }
    if let Ok(current) = HeaderValue::from_maybe_shared(bytes::Bytes::from(current)) {
        append_item(headers, &RATELIMIT, current);
    }
    let more_restrictive = headers
        .get(&X_RATELIMIT_REMAINING)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_none_or(|theirs| verdict.remaining < theirs);
    if more_restrictive {
        headers.insert(X_RATELIMIT_LIMIT, prepared.quota.clone());
        headers.insert(X_RATELIMIT_REMAINING, number(verdict.remaining));
        headers.insert(X_RATELIMIT_RESET, number(reset));
    }
}

/// A number as a header value; those below 1,024 (seconds to a reset, small remainders) come
/// from a table built once, without an allocation per request.
fn number(n: u64) -> HeaderValue {
    static SMALL: std::sync::LazyLock<Vec<HeaderValue>> =
        std::sync::LazyLock::new(|| (0..1024u64).map(HeaderValue::from).collect());
    usize::try_from(n)
        .ok()
        .and_then(|i| SMALL.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(n))
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Appends `item` to a structured-field list header (`a, b`), or sets it (no copy then: the
/// common case of one limit costs what it did before lists).
pub(crate) fn append_item(headers: &mut HeaderMap, name: &HeaderName, item: HeaderValue) {
    let joined = match headers.get(name) {
        None => {
            headers.insert(name.clone(), item);
            return;
        }
        Some(existing) => {
            let mut joined = Vec::with_capacity(existing.len() + 2 + item.len());
            joined.extend_from_slice(existing.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(item.as_bytes());
            joined
        }
    };
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(name.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::algorithm::{Algorithm, Quota};

    fn limit(key: Vec<KeyPart>) -> Limit {
        Limit {
            name: "l".into(),
            quota: Quota::new(10, Duration::from_secs(60), Algorithm::FixedWindow),
            key,
            shadow: false,
            headers: true,
        }
    }

    fn parts(headers: &[(&str, &[u8])], identity: Option<Identity>) -> http::request::Parts {
        let mut builder = Request::builder();
        for (n, v) in headers {
            builder = builder.header(*n, HeaderValue::from_bytes(v).expect("value"));
        }
        let (mut parts, ()) = builder.body(()).expect("request").into_parts();
        let ip = "1.2.3.4".parse().expect("ip");
        parts.extensions.insert(ClientIp {
            ip,
            forwarded: false,
            peer: ip,
            trusted_peer: false,
        });
        if let Some(identity) = identity {
            parts.extensions.insert(Arc::new(identity));
        }
        parts
    }

    fn subject(name: &str) -> Identity {
        Identity::new(
            name,
            AuthMethod::Jwt,
            crate::identity::CredentialSource::AuthorizationHeader,
        )
    }

    #[test]
    fn keys_cannot_collide_across_parts_or_spellings() {
        let header = limit(vec![KeyPart::Header(HeaderName::from_static("x-client"))]);
        let missing = header.key(&parts(&[], None));
        let dash = header.key(&parts(&[("x-client", b"-")], None));
        let latin1 = header.key(&parts(&[("x-client", b"caf\xe9")], None));
        let latin1_other = header.key(&parts(&[("x-client", b"caf\xe8")], None));
        let pipe = header.key(&parts(&[("x-client", b"a|h:b")], None));
        let all = [&missing, &dash, &latin1, &latin1_other, &pipe];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(missing, "rl:l|h!");
        assert_eq!(latin1, "rl:l|h:caf%E9");

        let by_subject = limit(vec![KeyPart::Subject]);
        let anonymous = by_subject.key(&parts(&[], None));
        let spoof = by_subject.key(&parts(&[], Some(subject("ip=1.2.3.4"))));
        let spoof2 = by_subject.key(&parts(&[], Some(subject("anon:1.2.3.4"))));
        assert_eq!(anonymous, "rl:l|anon:1.2.3.4");
        assert_ne!(anonymous, spoof);
        assert_ne!(anonymous, spoof2);
        let two = limit(vec![KeyPart::Subject, KeyPart::Tenant]);
        let mut a = subject("a|tenant:b");
        a.tenant = None;
        let mut b = subject("a");
        b.tenant = Some("b".into());
        assert_ne!(two.key(&parts(&[], Some(a))), two.key(&parts(&[], Some(b))));
    }

    #[test]
    fn the_most_restrictive_limit_is_reported_and_lists_carry_both() {
        let mut headers = HeaderMap::new();
        let verdict = |remaining| Verdict {
            allowed: remaining > 0,
            limit: 10,
            remaining,
            reset_after: Duration::from_secs(30),
            retry_after: None,
            delay: None,
        };
        let inner = Prepared::new(Limit {
            name: "route".into(),
            ..limit(vec![])
        });
        let outer = Prepared::new(Limit {
            name: "pre_auth".into(),
            ..limit(vec![])
        });
        set_headers(&mut headers, &inner, &verdict(0));
        set_headers(&mut headers, &outer, &verdict(864));
        assert_eq!(headers[&X_RATELIMIT_REMAINING], "0");
        assert_eq!(
            headers[&RATELIMIT],
            "\"route\";r=0;t=30, \"pre_auth\";r=864;t=30"
        );
        assert!(
            headers[&RATELIMIT_POLICY]
                .to_str()
                .expect("ascii")
                .starts_with("\"route\";q=10")
        );
    }

    #[test]
    fn a_tier_is_chosen_by_policy_first_then_by_role() {
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let store = Arc::new(crate::ratelimit::memory::MemoryStore::new(clock));
        let named = |name: &str| Limit {
            name: name.into(),
            ..limit(vec![])
        };
        let layer =
            RateLimitLayer::new(store, named("base"), OnStoreError::FailClosed).with_tiers(vec![
                ("gold".into(), vec!["premium".into()], named("gold")),
                ("bulk".into(), vec![], named("bulk")),
            ]);
        let mut premium = subject("p");
        premium.roles = vec!["premium".into()];
        assert_eq!(
            layer.choose(&parts(&[], Some(subject("x")))).limit.name,
            "base"
        );
        assert_eq!(
            layer.choose(&parts(&[], Some(premium.clone()))).limit.name,
            "gold"
        );
        let mut chosen = parts(&[], Some(premium));
        chosen
            .extensions
            .insert(crate::authz::RateLimitTier("bulk".into()));
        assert_eq!(layer.choose(&chosen).limit.name, "bulk");
        assert_eq!(layer.choose(&parts(&[], None)).limit.name, "base");
    }
}
