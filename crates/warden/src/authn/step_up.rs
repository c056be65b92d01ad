//! RFC 9470 step-up: a route may demand a stronger (`acr`) or more recent (`auth_time`)
//! authentication than the token carries.
//!
//! Per-route, after authorization (see the gateway's `stack.rs`): a caller who may not use the
//! route at all gets 403, not a pointless prompt to re-authenticate. A caller who may, but whose
//! token falls short, gets 401 with `error="insufficient_user_authentication"`, `acr_values`
//! and `max_age` in the challenge.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::clock::Clock;
use crate::identity::Identity;
use crate::rejection::Rejection;

/// RFC 9470 step-up requirement of a route.
#[derive(Clone, Debug, Default)]
pub struct StepUpRequirement {
    /// Acceptable `acr` values (empty: any).
    pub acr: Vec<String>,
    /// Longest time since the user authenticated (`auth_time`).
    pub max_age: Option<Duration>,
}

impl StepUpRequirement {
    fn satisfied_by(&self, identity: &Identity, now: f64) -> bool {
        let acr_ok = self.acr.is_empty()
            || identity
                .acr
                .as_ref()
                .is_some_and(|acr| self.acr.iter().any(|wanted| wanted == acr));
        let age_ok = match self.max_age {
            None => true,
            Some(max_age) => identity
                .auth_time
                .is_some_and(|t| now - (t as f64) <= max_age.as_secs_f64()),
        };
        acr_ok && age_ok
    }
}

/// Layer enforcing an RFC 9470 step-up requirement. It runs after authorization, so a caller
/// who may not use the route at all gets 403 instead of a pointless request to re-authenticate.
#[derive(Clone, Debug)]
pub struct StepUpLayer {
    requirement: Arc<StepUpRequirement>,
    /// The RFC 9470 challenge, built once: it depends only on the requirement.
    challenge: HeaderValue,
    clock: Arc<dyn Clock>,
}

impl StepUpLayer {
    /// Requires `requirement`, judged against `clock`.
    pub fn new(requirement: StepUpRequirement, clock: Arc<dyn Clock>) -> Self {
        StepUpLayer {
            challenge: Rejection::step_up_challenge(&requirement.acr, requirement.max_age),
            requirement: Arc::new(requirement),
            clock,
        }
    }
}

impl<S> Layer<S> for StepUpLayer {
    type Service = StepUpService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StepUpService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service produced by [`StepUpLayer`].
#[derive(Clone, Debug)]
pub struct StepUpService<S> {
    inner: S,
    layer: StepUpLayer,
}

impl<S> Service<Request<Body>> for StepUpService<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response<Body>, S::Error>>,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let satisfied = req.extensions().get::<Arc<Identity>>().is_some_and(|who| {
            self.layer
                .requirement
                .satisfied_by(who, self.layer.clock.unix_seconds())
        });
        if satisfied {
            return Either::Right(self.inner.call(req));
        }
        if let Some(who) = req.extensions().get::<Arc<Identity>>() {
            tracing::info!(subject = %who.subject, acr = ?who.acr, "step-up authentication required");
        }
        let rejection = Rejection::step_up_required(self.layer.challenge.clone());
        Either::Left(std::future::ready(Ok(
            rejection.into_response_for(req.extensions())
        )))
    }
}
