//! Authentication: who is calling (DESIGN.md §2 step 11).
//!
//! Per route, after the head limits and before authorization. An [`AuthnLayer`] runs a chain of
//! [`Authenticator`]s: the first that recognizes credentials decides (`Ok(Some)` accepts,
//! `Err` stops the chain: present-but-invalid credentials are never passed over to a weaker
//! authenticator); a later one that also finds credentials must agree on the subject (a bearer
//! token and an API key for different callers are refused as ambiguous); when none recognizes
//! any, the request is unauthenticated. The accepted
//! [`Identity`] goes into request extensions as `Arc<Identity>` and the credential is removed
//! from the request unless it is to be forwarded. [`StepUpLayer`] (in [`step_up`]) checks an RFC 9470 step-up
//! requirement later, after authorization. Failures become 401 (with an RFC 6750 challenge), 400 for ambiguous credentials, or
//! 503 when keys cannot be had; the precise reason is logged, never sent.

pub mod api_key;
#[cfg(feature = "sqlite")]
pub mod api_key_sqlite;
pub mod client_cert;
pub mod jwt;
pub mod keys;
pub mod sources;
pub mod step_up;

pub use step_up::{StepUpLayer, StepUpRequirement, StepUpService};
pub(crate) mod strict_json;

#[cfg(feature = "jwks")]
pub mod jwks;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::future::ResponseFuture;
use crate::identity::{AuthMethod, Identity};
use crate::rejection::{Rejection, RejectionKind};
use crate::request_id::RequestId;

/// Recognizes and verifies one kind of credential.
pub trait Authenticator: fmt::Debug + Send + Sync + 'static {
    /// `Ok(None)`: no credentials of this kind (try the next). `Err`: present but invalid (stop).
    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Arc<Identity>>, AuthnError>>;

    /// Removes this authenticator's credentials from a request before it is forwarded.
    fn strip_credentials(&self, _req: &mut Parts) {}

    /// The method this authenticator verifies (the `method` label of its metrics).
    fn method(&self) -> Option<AuthMethod> {
        None
    }
}

/// Metric names.
pub mod names {
    /// Counter: authentication results by `method`, `result` (`success`, `failure`, `missing`)
    /// and `reason` (the failure's code).
    pub const RESULTS: &str = "warden_authn_results_total";
}

/// `warden_authn_results_total` handles by method, result and reason.
type ResultCounters = crate::metric_handles::Handles<
    (Option<AuthMethod>, &'static str, &'static str),
    metrics::Counter,
>;

fn count(
    counters: &ResultCounters,
    method: Option<AuthMethod>,
    result: &'static str,
    reason: &'static str,
) {
    counters
        .get((method, result, reason), || {
            let method = method.map_or("none", AuthMethod::as_str);
            metrics::counter!(names::RESULTS, "method" => method, "result" => result, "reason" => reason)
        })
        .increment(1);
}

/// Why authentication failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    /// Credentials were presented and are invalid (401 `invalid_token`).
    #[error("invalid credentials: {0}")]
    Invalid(InvalidReason),
    /// The request carries ambiguous credentials (400 `invalid_request`).
    #[error("ambiguous credentials: {0}")]
    Ambiguous(&'static str),
    /// The provider's keys cannot be had (key server down beyond the staleness limit): 503.
    #[error("keys of provider {0} are unavailable")]
    KeysUnavailable(String),
    /// The credential store failed (locked, corrupt or missing database): 503.
    #[error("credential store unavailable: {0}")]
    StoreUnavailable(String),
}

impl AuthnError {
    /// The reason as a code of a closed vocabulary, for the audit trail's `event.reason`
    /// (never the credential, never text from the request).
    pub fn code(&self) -> &'static str {
        match self {
            AuthnError::Invalid(reason) => reason.code(),
            AuthnError::Ambiguous(_) => "ambiguous_credentials",
            AuthnError::KeysUnavailable(_) => "keys_unavailable",
            AuthnError::StoreUnavailable(_) => "store_unavailable",
        }
    }
}

impl InvalidReason {
    /// The reason as a code (see [`AuthnError::code`]).
    pub fn code(&self) -> &'static str {
        match self {
            InvalidReason::Malformed(_) => "malformed",
            InvalidReason::CriticalHeader => "crit_header",
            InvalidReason::EmbeddedKey(_) => "embedded_key",
            InvalidReason::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            InvalidReason::UnknownIssuer => "unknown_issuer",
            InvalidReason::UnknownKid => "unknown_kid",
            InvalidReason::BadSignature => "bad_signature",
            InvalidReason::Expired => "expired",
            InvalidReason::NotYetValid => "not_yet_valid",
            InvalidReason::IssuedInFuture => "issued_in_future",
            InvalidReason::WrongAudience => "wrong_audience",
            InvalidReason::MissingClaim(_) => "missing_claim",
            InvalidReason::WrongClaimType(_) => "wrong_claim_type",
            InvalidReason::SessionTooOld => "session_too_old",
            InvalidReason::UnknownKey => "unknown_key",
            InvalidReason::Revoked => "revoked",
            InvalidReason::CertificateSubject(_) => "certificate_subject_missing",
            InvalidReason::CertificateBinding(_) => "certificate_binding",
        }
    }
}

/// Why a request's credentials were refused, as a code: in the rejection's response
/// extensions, for the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthnFailure(pub &'static str);

/// The precise reason a credential was refused. For logs and audit only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// Structurally broken (size, segments, encoding, JSON).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// A `crit` header (no extension is understood, so any is refused).
    #[error("crit header present")]
    CriticalHeader,
    /// A header parameter that would supply its own key.
    #[error("embedded key source {0:?} in header")]
    EmbeddedKey(&'static str),
    /// `alg` is not one the provider (and the key) accepts.
    #[error("algorithm {0:?} not allowed")]
    AlgorithmNotAllowed(String),
    /// No provider for the token's `iss`.
    #[error("unknown or wrong issuer")]
    UnknownIssuer,
    /// `kid` not in the provider's keys (after a refresh, where allowed).
    #[error("unknown key id")]
    UnknownKid,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    /// No configured audience in `aud`.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is missing.
    #[error("missing claim {0:?}")]
    MissingClaim(String),
    /// A claim has the wrong JSON type.
    #[error("claim {0:?} has the wrong type")]
    WrongClaimType(&'static str),
    /// The session (`auth_time`, else `iat`) is older than `max_token_age`.
    #[error("session older than max_token_age")]
    SessionTooOld,
    /// A well-formed API key that is not in the store.
    #[error("unknown API key")]
    UnknownKey,
    /// The API key was revoked.
    #[error("API key revoked")]
    Revoked,
    /// RFC 8705: the token is bound to a certificate this connection does not present (or a
    /// provider that requires bound tokens got an unbound one).
    #[error("certificate binding: {0}")]
    CertificateBinding(&'static str),
    /// The verified client certificate holds no subject of the configured kind.
    #[error("client certificate has no {0}")]
    CertificateSubject(&'static str),
}

fn rejection_for(error: &AuthnError) -> Rejection {
    match error {
        AuthnError::Invalid(_) => Rejection::invalid_credentials(),
        AuthnError::Ambiguous(_) => Rejection::invalid_auth_request(),
        AuthnError::KeysUnavailable(_) | AuthnError::StoreUnavailable(_) => {
            Rejection::new(RejectionKind::AuthUnavailable)
        }
    }
}

/// Layer that authenticates requests with a chain of authenticators.
#[derive(Clone, Debug)]
pub struct AuthnLayer {
    chain: Arc<[Arc<dyn Authenticator>]>,
    forward_credentials: bool,
    counters: Arc<ResultCounters>,
}

impl AuthnLayer {
    /// Requires an identity from one of `chain`.
    pub fn new(chain: Vec<Arc<dyn Authenticator>>) -> Self {
        AuthnLayer {
            chain: chain.into(),
            forward_credentials: false,
            counters: Arc::default(),
        }
    }

    /// Forwards the credential to the upstream (off by default).
    pub fn forward_credentials(mut self, forward: bool) -> Self {
        self.forward_credentials = forward;
        self
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = Authn<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authn {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service produced by [`AuthnLayer`].
#[derive(Clone, Debug)]
pub struct Authn<S> {
    inner: S,
    layer: AuthnLayer,
}

impl<S> Service<Request<Body>> for Authn<S>
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
        // Keep the service that was polled ready; the clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture::new(async move {
            let (mut parts, body) = req.into_parts();
            let request_id = parts.extensions.get::<RequestId>().cloned();
            match authenticate(&layer, &mut parts).await {
                Ok(()) => {
                    // Who it was travels back on the response, for the request's audit record.
                    let identity = parts.extensions.get::<Arc<Identity>>().cloned();
                    let mut response = inner.call(Request::from_parts(parts, body)).await?;
                    if let Some(identity) = identity {
                        response.extensions_mut().insert(identity);
                    }
                    Ok(response)
                }
                Err((rejection, failure)) => {
                    let mut response = rejection.into_response(request_id.as_ref());
                    if let Some(error) = &failure {
                        log_failure(request_id.as_ref(), error);
                        response.extensions_mut().insert(AuthnFailure(error.code()));
                    }
                    Ok(response)
                }
            }
        })
    }
}

async fn authenticate(
    layer: &AuthnLayer,
    parts: &mut Parts,
) -> Result<(), (Rejection, Option<AuthnError>)> {
    let mut accepted: Option<Arc<Identity>> = None;
    for authenticator in layer.chain.iter() {
        match authenticator.authenticate(parts).await {
            Ok(Some(identity)) => match &accepted {
                None => accepted = Some(identity),
                // A second credential for someone else (say an API key beside a bearer token):
                // which caller is this? Refuse rather than pick one.
                Some(first) if first.subject != identity.subject => {
                    let error = AuthnError::Ambiguous("credentials for different subjects");
                    count(&layer.counters, None, "failure", error.code());
                    return Err((rejection_for(&error), Some(error)));
                }
                Some(_) => {}
            },
            Ok(None) => continue,
            Err(error) => {
                count(
                    &layer.counters,
                    authenticator.method(),
                    "failure",
                    error.code(),
                );
                return Err((rejection_for(&error), Some(error)));
            }
        }
    }
    let Some(identity) = accepted else {
        count(&layer.counters, None, "missing", "");
        return Err((Rejection::unauthenticated(), None));
    };
    count(&layer.counters, Some(identity.method), "success", "");
    if !(layer.forward_credentials || identity.forward_credentials) {
        // Every authenticator strips its own kind: no credential of any kind travels upstream.
        for authenticator in layer.chain.iter() {
            authenticator.strip_credentials(parts);
        }
    }
    parts.extensions.insert(identity);
    Ok(())
}

fn log_failure(request_id: Option<&RequestId>, error: &AuthnError) {
    let request_id = request_id.map(RequestId::as_str);
    match error {
        AuthnError::KeysUnavailable(provider) => tracing::error!(
            target: "warden::authn",
            request_id,
            provider = %provider,
            "key server unavailable: cannot verify tokens (answering 503)"
        ),
        other => {
            tracing::info!(target: "warden::authn", request_id, reason = %other, "authentication failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::CredentialSource;
    use http::HeaderValue;
    use tower::ServiceExt;

    /// Authenticates `header: subject`; strips that header.
    #[derive(Debug)]
    struct Fake {
        header: &'static str,
        fail: bool,
    }

    impl Authenticator for Fake {
        fn authenticate<'a>(
            &'a self,
            req: &'a Parts,
        ) -> BoxFuture<'a, Result<Option<Arc<Identity>>, AuthnError>> {
            Box::pin(async move {
                let Some(value) = req.headers.get(self.header) else {
                    return Ok(None);
                };
                if self.fail {
                    return Err(AuthnError::Invalid(InvalidReason::Malformed("fake")));
                }
                let subject = value.to_str().unwrap_or("?").to_owned();
                Ok(Some(Arc::new(Identity::new(
                    subject,
                    AuthMethod::ApiKey,
                    CredentialSource::AuthorizationHeader,
                ))))
            })
        }

        fn strip_credentials(&self, req: &mut Parts) {
            req.headers.remove(self.header);
        }
    }

    async fn run(
        chain: Vec<Arc<dyn Authenticator>>,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<String>) {
        let svc = tower::ServiceBuilder::new()
            .layer(AuthnLayer::new(chain))
            .service_fn(|req: Request<Body>| async move {
                let seen: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
                let who = req
                    .extensions()
                    .get::<Arc<Identity>>()
                    .map(|i| i.subject.clone());
                let mut response = Response::new(crate::body::empty());
                response.headers_mut().insert(
                    "x-seen",
                    HeaderValue::from_str(&seen.join(",")).expect("value"),
                );
                response.headers_mut().insert(
                    "x-who",
                    HeaderValue::from_str(&who.unwrap_or_default()).expect("value"),
                );
                Ok::<_, std::convert::Infallible>(response)
            });
        let mut builder = Request::builder();
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        let response = svc
            .oneshot(builder.body(crate::body::empty()).expect("request"))
            .await
            .expect("infallible");
        let seen = response
            .headers()
            .get("x-seen")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        (response.status().as_u16(), seen)
    }

    fn chain() -> Vec<Arc<dyn Authenticator>> {
        vec![
            Arc::new(Fake {
                header: "x-a",
                fail: false,
            }),
            Arc::new(Fake {
                header: "x-b",
                fail: false,
            }),
        ]
    }

    #[tokio::test]
    async fn one_credential_passes_and_every_kind_is_stripped() {
        let (status, seen) = run(chain(), &[("x-a", "alice"), ("x-other", "1")]).await;
        assert_eq!(status, 200);
        assert_eq!(seen, vec!["x-other"]);
        // The same subject twice is one caller; both credentials are stripped.
        let (status, seen) = run(chain(), &[("x-a", "alice"), ("x-b", "alice")]).await;
        assert_eq!(status, 200);
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[tokio::test]
    async fn credentials_for_two_subjects_are_ambiguous_and_nothing_passes() {
        let (status, _) = run(chain(), &[("x-a", "alice"), ("x-b", "mallory")]).await;
        assert_eq!(status, 400);
    }

    #[tokio::test]
    async fn present_but_invalid_stops_the_chain_and_none_is_401() {
        let failing: Vec<Arc<dyn Authenticator>> = vec![
            Arc::new(Fake {
                header: "x-a",
                fail: true,
            }),
            Arc::new(Fake {
                header: "x-b",
                fail: false,
            }),
        ];
        // A valid later credential does not rescue an invalid earlier one.
        let (status, _) = run(failing, &[("x-a", "junk"), ("x-b", "alice")]).await;
        assert_eq!(status, 401);
        let (status, _) = run(chain(), &[]).await;
        assert_eq!(status, 401);
    }
}
