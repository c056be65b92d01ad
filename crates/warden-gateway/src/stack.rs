//! The ONE place where layers are ordered (DESIGN.md §2).
//!
//! Global stack, outermost first:
//! 1. strip client-sent identity headers (before anything else can read them);
//! 2. request id (every later log line, rejection and the upstream cite it);
//! 3. client IP, resolved once from the one header the trusted proxies write (so the access log
//!    below names the real client);
//! 4. access log and metrics (see the final status of everything below);
//! 5. requests in flight capped (`max_requests`; a shed request is still logged);
//! 6. CORS (real preflights to routed paths answered before any auth; rejections below carry
//!    CORS headers); any other `OPTIONS` goes past it to the router (404/405, or the route);
//! 7. security headers (on forwarded and rejected responses alike);
//! 8. catch panic (under CORS and headers, so even a 500 carries them);
//! 9. overall request timeout;
//! 10. request-head conformance: Host, transfer codings, field whitespace, HTTP/2 cookies;
//! 11. router: canonical path, route match (404/405).
//!
//! Per-route stack: head limits and streamed body limit, authentication (unless the route is
//! `auth: none`), body rules where the route declares them (media type, JSON safety, schema,
//! format extraction, input length, model allow/deny, sanitizing), authorization (permissions, minimum role, scopes, tenant binding), RFC 9470
//! step-up where configured (after authorization: no re-authentication prompt for a caller who
//! may not use the route anyway), the route's rate limit (after authorization, so forbidden
//! calls spend no quota), credentials stripped (unless `forward_credentials`), then the proxy.
//! A pre-authentication limit by client IP, when configured, runs first of all.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use tower::Layer;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::cors::{AllowOrigin, CorsLayer};
use warden::authn::{Authenticator, AuthnLayer, StepUpLayer};
use warden::authz::{AuthzLayer, RouteAuthorizer};
use warden::body::Body;
use warden::body::rules::BodyRulesLayer;
use warden::budget::TokenBudgetLayer;
use warden::catch_panic::CatchPanicLayer;
use warden::client_ip::ClientIpLayer;
use warden::clock::{Clock, SystemClock};
use warden::headers::SecurityHeadersLayer;
use warden::identity_headers::StripIdentityHeadersLayer;
use warden::limit::{RequestLimits, RequestLimitsLayer};
use warden::overload::InFlightLimitLayer;
use warden::ratelimit::layer::RateLimitLayer;
use warden::ratelimit::memory::MemoryStore;
use warden::ratelimit::store::RateLimitStore;
use warden::request_head::RequestHeadLayer;
use warden::request_id::RequestIdLayer;
use warden::timeout::TimeoutLayer;

use crate::config::rate_limits::RouteLimit;
use crate::config::upstream::StripHeaders;
use crate::config::{Config, CorsConfig};
use crate::observe::ObserveLayer;
use crate::proxy::Proxy;
use crate::route::{RouteService, Router, RouterBuilder};
use warden::audit::AuditSink;
use warden::audit::sink::FileSink;

/// The complete gateway service for one listener.
pub type GatewayService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Errors assembling the stack (config compilation normally catches these first).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// Two route templates conflict.
    #[error("route table: {0}")]
    Route(#[from] matchit::InsertError),
}

/// What route stacks share at run time: the authenticators, the rate-limit store, the clock.
#[derive(Clone, Debug)]
pub struct Shared {
    /// Authenticators in order (JWT, API keys).
    pub chain: Vec<Arc<dyn Authenticator>>,
    /// Rate-limit state.
    pub store: Arc<dyn RateLimitStore>,
    /// Token-budget state (the same store: in-process, or Redis).
    pub budgets: Arc<dyn warden::budget::BudgetStore>,
    /// Injected time.
    pub clock: Arc<dyn Clock>,
    /// The audit trail's sink, if one is configured.
    pub audit: Option<Arc<FileSink>>,
}

impl Shared {
    /// No authenticators (every route must be public), an in-memory rate-limit store.
    pub fn none() -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let memory = Arc::new(MemoryStore::new(clock.clone()));
        Shared {
            chain: Vec::new(),
            store: memory.clone(),
            budgets: memory,
            clock,
            audit: None,
        }
    }
}

/// Builds the global stack over the route table for `config`, forwarding through `proxy`.
pub fn build(config: &Config, shared: &Shared, proxy: Proxy) -> Result<GatewayService, StackError> {
    let proxy = Forward(Arc::new(proxy));
    build_with_leaf(config, shared, move || proxy.clone())
}

/// The end of every route: the proxy. A concrete service (not a boxed one) so that the layers
/// above it, which clone their inner service per request, clone a reference count rather
/// than allocate a box each.
#[derive(Clone)]
struct Forward(Arc<Proxy>);

impl tower::Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let proxy = self.0.clone();
        Box::pin(async move { Ok(proxy.forward(req).await) })
    }
}

/// What may end a route in place of the proxy: a cloneable service answering every request.
pub trait Leaf:
    tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Leaf for T where
    T: tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Builds the same stack with `leaf()` in place of the proxy at the end of every route
/// (in-process benchmarks and tests of the pipeline without sockets).
pub fn build_with_leaf<L: Leaf>(
    config: &Config,
    shared: &Shared,
    leaf: impl Fn() -> L,
) -> Result<GatewayService, StackError> {
    let router = build_router(config, shared, leaf)?;
    let inner = ServiceBuilder::new()
        // On forwarded and rejected responses alike (everything below answers through it).
        .layer(SecurityHeadersLayer::new(config.headers.clone()))
        // Under CORS and the security headers, so even a 500 carries them.
        .layer(CatchPanicLayer)
        // Bounds everything that can wait: authentication fetches, stores, the upstream.
        .layer(TimeoutLayer::new(config.server.timeouts.request))
        // Before routing: a request for another host, or with a head an upstream could read
        // differently, never reaches route matching.
        .layer(RequestHeadLayer::new().with_hosts(config.server.hosts.clone()))
        .service(router.clone());
    // CORS over the rest, so 401/403/429 carry CORS headers; preflights answered before auth.
    let dispatch = match config.cors.as_ref() {
        Some(cors) => tower::util::Either::Left(PreflightGate {
            cors: cors_layer(cors).layer(inner.clone()),
            plain: inner,
            router,
        }),
        None => tower::util::Either::Right(inner),
    };
    let service = ServiceBuilder::new()
        // First of all: no layer may read a forged identity header.
        .layer(StripIdentityHeadersLayer::new(
            config.upstream.identity_prefix.clone(),
        ))
        // Every later log line, rejection and the upstream cite this id.
        .layer(RequestIdLayer)
        // Resolved once, before the access log: every line names the real client.
        .layer(ClientIpLayer::new(config.server.trusted_proxies.clone()))
        // Sees the final status of everything below, sheds included.
        .layer(ObserveLayer::new(
            shared.audit.clone().map(|sink| sink as Arc<dyn AuditSink>),
            config.audit.as_ref().and_then(|a| a.redactor.clone()),
        ))
        // Counts requests, not connections: HTTP/2 streams are bounded too.
        .layer(InFlightLimitLayer::new(config.server.limits.max_requests))
        .service(dispatch);
    Ok(BoxCloneSyncService::new(service))
}

/// Sends only real CORS preflights (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) for routed paths through the CORS layer, which answers
/// every `OPTIONS` itself; any other `OPTIONS` is routed like any request (404, 405 or a route
/// that allows it), so the gateway does not answer 200 for paths and requests it does not serve.
#[derive(Clone, Debug)]
struct PreflightGate<C, P> {
    cors: C,
    plain: P,
    router: Router,
}

impl<C, P> tower::Service<Request<Body>> for PreflightGate<C, P>
where
    C: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    P: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::Either<C::Future, P::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        // Both must be ready: which one serves is decided only by the request.
        std::task::ready!(self.cors.poll_ready(cx))?;
        self.plain.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let headers = req.headers();
        let through_cors = req.method() != http::Method::OPTIONS
            || (headers.contains_key(http::header::ORIGIN)
                && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
                && self.router.has_path(req.uri().path()));
        if through_cors {
            futures_util::future::Either::Left(self.cors.call(req))
        } else {
            futures_util::future::Either::Right(self.plain.call(req))
        }
    }
}

fn build_router<L: Leaf>(
    config: &Config,
    shared: &Shared,
    leaf: impl Fn() -> L,
) -> Result<Router, StackError> {
    let mut builder = RouterBuilder::default();
    let credentials = credential_headers(config);
    for route in &config.routes {
        let limits = RequestLimits {
            max_headers: config.server.limits.max_headers,
            max_header_bytes: config.server.limits.max_header_bytes,
            max_body_bytes: route.max_body_bytes,
        };
        let authn = (!route.public).then(|| {
            AuthnLayer::new(shared.chain.clone()).forward_credentials(route.forward_credentials)
        });
        let step_up = route
            .step_up
            .clone()
            .filter(|_| !route.public)
            .map(|requirement| StepUpLayer::new(requirement, shared.clock.clone()));
        let authz = (!route.public && !route.requirements.is_empty()).then(|| {
            AuthzLayer::new(RouteAuthorizer::new(
                config.roles.clone(),
                route.requirements.clone(),
            ))
        });
        let limits_config = &config.rate_limits;
        let pre_auth = limits_config
            .pre_auth
            .clone()
            .filter(|_| !matches!(route.rate_limit, RouteLimit::Off))
            .map(|limit| {
                RateLimitLayer::new(
                    shared.store.clone(),
                    limit,
                    limits_config.on_error.layer_policy(),
                )
            });
        let route_limit = match &route.rate_limit {
            RouteLimit::Off => None,
            RouteLimit::Custom(limit) => Some(limit.clone()),
            RouteLimit::Inherit => limits_config.default.clone(),
        }
        .map(|limit| {
            RateLimitLayer::new(
                shared.store.clone(),
                limit,
                limits_config.on_error.layer_policy(),
            )
            .with_tiers(limits_config.tiers.clone())
        });
        let token_budget = route
            .token_budget
            .clone()
            .zip(route.body.as_ref().map(|rules| rules.format.clone()))
            .map(|(limit, format)| {
                TokenBudgetLayer::new(
                    shared.budgets.clone(),
                    limit,
                    format,
                    limits_config.on_error.layer_policy(),
                )
                .with_tiers(config.token_budgets.tiers.clone())
                .with_audit(
                    shared
                        .audit
                        .clone()
                        .map(|sink| sink as Arc<dyn warden::audit::AuditSink>),
                )
            });
        // Credentials never reach the upstream unless the route says so, public routes
        // included, in any spelling a framework might fold into the real header.
        let strip_credentials = (!route.forward_credentials).then(|| {
            let strip = credentials.clone();
            tower::util::MapRequestLayer::new(move |mut req: Request<Body>| {
                // A provider configured to forward its tokens keeps them (authn decided).
                let forwarded_by_provider = req
                    .extensions()
                    .get::<Arc<warden::identity::Identity>>()
                    .is_some_and(|who| who.forward_credentials);
                if !forwarded_by_provider {
                    strip.apply(req.headers_mut());
                }
                req
            })
        });
        let service = ServiceBuilder::new()
            // Cheapest refusal first: a flood never reaches JWKS, the key store or policies.
            .option_layer(pre_auth)
            // Head limits before any authentication work; the body is counted as it streams.
            .layer(RequestLimitsLayer::new(limits))
            .option_layer(authn)
            // After authentication (no anonymous caller makes the gateway read a body), before
            // authorization (a policy may read `input.request.body`).
            .option_layer(route.body.clone().map(BodyRulesLayer::new))
            .option_layer(authz)
            // After authorization: no re-authentication prompt for a caller who may not pass.
            .option_layer(step_up)
            // After authorization: forbidden calls spend no quota.
            .option_layer(route_limit)
            // Last before the upstream: only a request that passed everything reserves tokens.
            .option_layer(token_budget)
            .option_layer(strip_credentials)
            .service(leaf());
        let service: RouteService = BoxCloneSyncService::new(service);
        builder.route(&route.name, &route.path, &route.methods, service);
    }
    Ok(builder.build()?)
}

/// `Authorization`, `Proxy-Authorization` and the API-key header (`_` spellings included).
fn credential_headers(config: &Config) -> Arc<StripHeaders> {
    let api_key = config
        .auth
        .api_keys
        .as_ref()
        .map_or("x-api-key", |k| k.settings.header.as_str());
    Arc::new(StripHeaders::new(&[
        "authorization",
        "proxy-authorization",
        api_key,
    ]))
}

fn cors_layer(cors: &CorsConfig) -> CorsLayer {
    let origin = if cors.any_origin {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(cors.origins.iter().cloned())
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods(cors.methods.clone())
        .allow_headers(cors.headers.clone())
        .expose_headers(cors.expose_headers.clone())
        .allow_credentials(cors.credentials)
        .max_age(cors.max_age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, load};
    use tower::ServiceExt;
    use warden::body;

    fn config() -> Config {
        let yaml = "upstream: { url: 'http://127.0.0.1:9' }\ncors: { origins: [https://app.example.com] }\nroutes: [{ path: /boom, auth: none }]\n";
        let parsed = load::parse_raw(yaml, load::Format::Yaml, &Vec::new(), &[]).expect("parse");
        compile::compile_parsed(parsed).expect("compile")
    }

    #[tokio::test]
    async fn a_panicking_route_answers_500_with_cors_security_headers_and_request_id() {
        let service = build_with_leaf(&config(), &Shared::none(), || {
            BoxCloneSyncService::new(tower::service_fn(|_req: Request<Body>| async {
                if true {
                    panic!("bug in a route");
                }
                Ok::<_, Infallible>(Response::new(body::empty()))
            }))
        })
        .expect("stack");
        let req = Request::builder()
            .uri("/boom")
            .header("host", "gw.test")
            .header("origin", "https://app.example.com")
            .body(body::empty())
            .expect("request");
        let response = service.oneshot(req).await.expect("infallible");
        assert_eq!(response.status(), 500);
        let headers = response.headers();
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers.contains_key("x-request-id"));
        assert_eq!(headers["content-type"], "application/problem+json");
    }
}
