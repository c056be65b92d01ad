//! Authorization: may this identity do this thing (DESIGN.md §2 step 12)?
//!
//! Per route, right after authentication. Each route carries its requirements, compiled at
//! configuration load: permissions (all/any), a minimum role, OAuth scopes (all/any) and tenant
//! bindings. Deny by default: every requirement must hold; the first that fails answers 403 with
//! a generic problem body, and its reason goes to the log and the response extensions (for the
//! audit trail), never to the client. A tenant mismatch is 403 whether or not the other
//! tenant's resource exists, so the answer reveals nothing about other tenants.

pub mod rbac;
#[cfg(feature = "rego")]
pub mod rego;

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderName, Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::identity::Identity;
use crate::rejection::{Rejection, RejectionKind};
use crate::request_id::RequestId;
use crate::routing::MatchedRoute;
use rbac::RoleTable;

/// One condition a route imposes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Requirement {
    /// Every one of these permissions.
    AllPermissions(Vec<String>),
    /// At least one of these permissions.
    AnyPermission(Vec<String>),
    /// A role at or above this hierarchy rank (the name is for messages).
    RoleAtLeast(usize, String),
    /// Every one of these scopes.
    AllScopes(Vec<String>),
    /// At least one of these scopes.
    AnyScope(Vec<String>),
    /// The path parameter must equal the identity's tenant.
    TenantParam(String),
    /// The request header must equal the identity's tenant.
    TenantHeader(HeaderName),
    /// A Rego policy must allow (or, in shadow mode, is only evaluated and logged).
    #[cfg(feature = "rego")]
    Policy(Arc<PolicyCheck>),
}

/// A route's use of the Rego policy.
#[cfg(feature = "rego")]
#[derive(Clone, Debug)]
pub struct PolicyCheck {
    /// The compiled policy.
    pub policy: Arc<rego::RegoPolicy>,
    /// Evaluate and log, but do not enforce.
    pub shadow: bool,
    /// Request headers exposed to the policy as `input.request.headers`.
    pub headers: Vec<HeaderName>,
    /// Path parameter exposed as `input.resource.tenant_id`.
    pub tenant_param: Option<String>,
}

#[cfg(feature = "rego")]
impl PolicyCheck {
    /// The input document: the caller, the request, the resource, built directly as policy
    /// values.
    pub fn input(&self, who: &Identity, parts: &http::request::Parts) -> rego::Value {
        use rego::Value;
        use std::collections::BTreeMap;
        let strings = |items: &[String]| -> Value {
            Value::from(
                items
                    .iter()
                    .map(|s| Value::from(s.as_str()))
                    .collect::<Vec<_>>(),
            )
        };
        let text = |s: Option<&str>| s.map_or(Value::Null, Value::from);
        let object = |fields: Vec<(&str, Value)>| -> Value {
            Value::from(
                fields
                    .into_iter()
                    .map(|(k, v)| (Value::from(k), v))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        let route = parts.extensions.get::<MatchedRoute>();
        let params: BTreeMap<Value, Value> = route
            .map(|r| {
                r.params
                    .iter()
                    .map(|(k, v)| (Value::from(&**k), Value::from(v.as_str())))
                    .collect()
            })
            .unwrap_or_default();
        let headers: BTreeMap<Value, Value> = self
            .headers
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((Value::from(name.as_str()), Value::from(value)))
            })
            .collect();
        // What the body rules extracted, when the route has them (they run before authorization).
        let body = parts
            .extensions
            .get::<Arc<crate::body::format::ExtractedBody>>()
            .map_or(Value::Null, |b| {
                object(vec![
                    ("model", text(b.model.as_deref())),
                    ("provider", text(b.provider.as_deref())),
                    (
                        "max_output_tokens",
                        b.max_output_tokens.map_or(Value::Null, Value::from),
                    ),
                    ("stream", Value::Bool(b.stream)),
                ])
            });
        let resource_tenant = self
            .tenant_param
            .as_deref()
            .and_then(|param| route.and_then(|r| r.param(param)));
        object(vec![
            (
                "token",
                object(vec![
                    ("subject", Value::from(who.subject.as_str())),
                    ("tenant_id", text(who.tenant.as_deref())),
                    ("roles", strings(&who.roles)),
                    ("scopes", strings(&who.scopes)),
                    ("method", Value::from(who.method.as_str())),
                    ("claims", rego::from_json_object(&who.claims)),
                ]),
            ),
            (
                "request",
                object(vec![
                    ("method", Value::from(parts.method.as_str())),
                    ("path", Value::from(parts.uri.path())),
                    ("route", text(route.map(|r| &*r.name))),
                    ("params", Value::from(params)),
                    ("headers", Value::from(headers)),
                    ("body", body),
                ]),
            ),
            (
                "resource",
                object(vec![("tenant_id", text(resource_tenant))]),
            ),
        ])
    }
}

/// Metric names.
pub mod names {
    /// Counter: authorization decisions by `decision` (`allow`, `deny`) and the denying `rule`.
    pub const DECISIONS: &str = "warden_authz_decisions_total";
}

/// A denial, for logs and audit: the authorization layer puts it in the rejection's response
/// extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// Which kind of rule denied (`permission`, `role`, `scope`, `tenant`).
    pub rule: &'static str,
    /// Why, in words (never sent to the client).
    pub reason: String,
}

/// The rate-limit tier a policy chose for this request (request extensions; the rate limiter
/// reads it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitTier(pub String);

/// What an allowed decision carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// A rate-limit tier chosen by the policy.
    pub tier: Option<String>,
}

/// A route's compiled requirements.
#[derive(Clone, Debug)]
pub struct RouteAuthorizer {
    roles: Arc<RoleTable>,
    requirements: Vec<Requirement>,
}

fn deny<T>(rule: &'static str, reason: String) -> Result<T, Denied> {
    Err(Denied { rule, reason })
}

impl RouteAuthorizer {
    /// Requirements over a role table.
    pub fn new(roles: Arc<RoleTable>, requirements: Vec<Requirement>) -> Self {
        RouteAuthorizer {
            roles,
            requirements,
        }
    }

    /// Checks every requirement against `who` for the request in `parts`.
    pub fn authorize(&self, who: &Identity, parts: &http::request::Parts) -> Result<Grant, Denied> {
        let mut grant = Grant::default();
        for requirement in &self.requirements {
            match requirement {
                Requirement::AllPermissions(wanted) => {
                    if let Some(missing) = wanted.iter().find(|p| !self.roles.allows(&who.roles, p))
                    {
                        return deny(
                            "permission",
                            format!("roles {:?} lack permission {missing:?}", who.roles),
                        );
                    }
                }
                Requirement::AnyPermission(wanted) => {
                    if !wanted.iter().any(|p| self.roles.allows(&who.roles, p)) {
                        return deny(
                            "permission",
                            format!("roles {:?} lack all of {wanted:?}", who.roles),
                        );
                    }
                }
                Requirement::RoleAtLeast(rank, name) => {
                    if self
                        .roles
                        .highest_rank(&who.roles)
                        .is_none_or(|have| have < *rank)
                    {
                        return deny("role", format!("roles {:?} are below {name:?}", who.roles));
                    }
                }
                Requirement::AllScopes(wanted) => {
                    if let Some(missing) = wanted.iter().find(|s| !who.scopes.contains(s)) {
                        return deny("scope", format!("scope {missing:?} missing"));
                    }
                }
                Requirement::AnyScope(wanted) => {
                    if !wanted.iter().any(|s| who.scopes.contains(s)) {
                        return deny("scope", format!("none of the scopes {wanted:?}"));
                    }
                }
                Requirement::TenantParam(param) => {
                    let value = parts
                        .extensions
                        .get::<MatchedRoute>()
                        .and_then(|route| route.param(param));
                    tenant_matches(who, value, param)?;
                }
                #[cfg(feature = "rego")]
                Requirement::Policy(check) => {
                    let started = std::time::Instant::now();
                    let verdict = check.policy.evaluate(check.input(who, parts));
                    let micros = started.elapsed().as_micros() as u64;
                    match verdict {
                        Ok(v) if v.allowed => {
                            if !check.shadow {
                                grant.tier = v.tier;
                            }
                        }
                        Ok(v) if check.shadow => tracing::info!(
                            target: "warden::authz",
                            reasons = ?v.reasons,
                            micros,
                            "shadow policy would deny (not enforced)"
                        ),
                        Ok(v) => return deny("policy", format!("policy denied: {:?}", v.reasons)),
                        Err(e) if check.shadow => tracing::warn!(
                            target: "warden::authz",
                            error = %e,
                            "shadow policy failed (not enforced)"
                        ),
                        // Fail closed.
                        Err(e) => return deny("policy_error", format!("policy error: {e}")),
                    }
                }
                Requirement::TenantHeader(header) => {
                    let mut values = parts.headers.get_all(header).iter();
                    let value = match (values.next(), values.next()) {
                        (Some(v), None) => v.to_str().ok(),
                        _ => None,
                    };
                    tenant_matches(who, value, header.as_str())?;
                }
            }
        }
        Ok(grant)
    }
}

/// Exact, case-sensitive comparison of the canonical value with the identity's tenant.
fn tenant_matches(who: &Identity, value: Option<&str>, source: &str) -> Result<(), Denied> {
    let Some(tenant) = who.tenant.as_deref() else {
        return deny(
            "tenant",
            format!("identity {:?} has no tenant", who.subject),
        );
    };
    match value {
        Some(value) if value == tenant => Ok(()),
        Some(value) => deny(
            "tenant",
            format!("{source} {value:?} is not the identity's tenant {tenant:?}"),
        ),
        None => deny("tenant", format!("{source} missing or ambiguous")),
    }
}

/// Layer applying a [`RouteAuthorizer`] to authenticated requests.
#[derive(Clone, Debug)]
pub struct AuthzLayer {
    authorizer: Arc<RouteAuthorizer>,
    decisions: Arc<DecisionCounters>,
}

/// `warden_authz_decisions_total` handles by decision and rule.
type DecisionCounters =
    crate::metric_handles::Handles<(&'static str, &'static str), metrics::Counter>;

impl AuthzLayer {
    /// Enforces `authorizer`.
    pub fn new(authorizer: RouteAuthorizer) -> Self {
        AuthzLayer {
            authorizer: Arc::new(authorizer),
            decisions: Arc::default(),
        }
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            authorizer: self.authorizer.clone(),
            decisions: self.decisions.clone(),
        }
    }
}

/// Service produced by [`AuthzLayer`].
#[derive(Clone, Debug)]
pub struct Authz<S> {
    inner: S,
    authorizer: Arc<RouteAuthorizer>,
    decisions: Arc<DecisionCounters>,
}

impl<S> Authz<S> {
    fn count(&self, decision: &'static str, rule: &'static str) {
        self.decisions
            .get(
                (decision, rule),
                || metrics::counter!(names::DECISIONS, "decision" => decision, "rule" => rule),
            )
            .increment(1);
    }
}

impl<S> Service<Request<Body>> for Authz<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<std::future::Ready<Result<Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        // Authentication runs first and always leaves an identity; without one, deny.
        let verdict = match parts.extensions.get::<Arc<Identity>>() {
            Some(who) => self.authorizer.authorize(who, &parts),
            None => Err(Denied {
                rule: "identity",
                reason: "no authenticated identity".into(),
            }),
        };
        match verdict {
            Ok(grant) => {
                self.count("allow", "");
                if let Some(tier) = grant.tier {
                    parts.extensions.insert(RateLimitTier(tier));
                }
                Either::Right(self.inner.call(Request::from_parts(parts, body)))
            }
            Err(denied) => {
                let request_id = parts.extensions.get::<RequestId>();
                tracing::info!(
                    target: "warden::authz",
                    request_id = request_id.map(RequestId::as_str),
                    rule = denied.rule,
                    reason = %denied.reason,
                    "request denied"
                );
                self.count("deny", denied.rule);
                let mut response =
                    Rejection::new(RejectionKind::Forbidden).into_response(request_id);
                response.extensions_mut().insert(denied);
                Either::Left(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AuthMethod, CredentialSource};

    fn identity(roles: &[&str], scopes: &[&str], tenant: Option<&str>) -> Identity {
        let mut id = Identity::new(
            "alice",
            AuthMethod::Jwt,
            CredentialSource::AuthorizationHeader,
        );
        id.roles = roles.iter().map(|s| (*s).to_owned()).collect();
        id.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        id.tenant = tenant.map(str::to_owned);
        id
    }

    fn parts(params: &[(&str, &str)], headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = Request::builder();
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        let (mut parts, _) = builder.body(()).expect("request").into_parts();
        parts.extensions.insert(MatchedRoute {
            name: "r".into(),
            params: params
                .iter()
                .map(|(k, v)| (Arc::from(*k), (*v).to_owned()))
                .collect(),
        });
        parts
    }

    fn table() -> Arc<RoleTable> {
        let roles = vec![
            ("viewer".to_owned(), vec!["read:agent".to_owned()]),
            ("admin".to_owned(), vec!["delete:agent".to_owned()]),
        ];
        Arc::new(RoleTable::new(&roles, &["viewer".into(), "admin".into()]).expect("table"))
    }

    #[test]
    fn every_requirement_must_hold() {
        let authz = RouteAuthorizer::new(
            table(),
            vec![
                Requirement::AllPermissions(vec!["read:agent".into()]),
                Requirement::AnyScope(vec!["agents".into(), "all".into()]),
                Requirement::TenantParam("tenant_id".into()),
            ],
        );
        let p = parts(&[("tenant_id", "acme")], &[]);
        assert!(
            authz
                .authorize(&identity(&["viewer"], &["agents"], Some("acme")), &p)
                .is_ok()
        );
        assert_eq!(
            authz
                .authorize(&identity(&[], &["agents"], Some("acme")), &p)
                .expect_err("no role")
                .rule,
            "permission"
        );
        assert_eq!(
            authz
                .authorize(&identity(&["admin"], &[], Some("acme")), &p)
                .expect_err("no scope")
                .rule,
            "scope"
        );
        for tenant in [Some("other"), Some("ACME"), None] {
            let err = authz
                .authorize(&identity(&["admin"], &["all"], tenant), &p)
                .expect_err("tenant");
            assert_eq!(err.rule, "tenant");
        }
    }

    #[test]
    fn minimum_role_and_tenant_header() {
        let authz = RouteAuthorizer::new(
            table(),
            vec![
                Requirement::RoleAtLeast(1, "admin".into()),
                Requirement::TenantHeader(HeaderName::from_static("x-tenant-id")),
            ],
        );
        let good = parts(&[], &[("x-tenant-id", "acme")]);
        assert!(
            authz
                .authorize(&identity(&["admin"], &[], Some("acme")), &good)
                .is_ok()
        );
        assert!(
            authz
                .authorize(&identity(&["viewer"], &[], Some("acme")), &good)
                .is_err()
        );
        let mut twice = parts(&[], &[("x-tenant-id", "acme")]);
        twice
            .headers
            .append("x-tenant-id", "other".parse().expect("value"));
        assert!(
            authz
                .authorize(&identity(&["admin"], &[], Some("acme")), &twice)
                .is_err()
        );
        assert!(
            authz
                .authorize(&identity(&["admin"], &[], Some("acme")), &parts(&[], &[]))
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_layer_records_decisions_for_the_audit_trail() {
        use tower::{ServiceBuilder, ServiceExt};
        let authorizer = RouteAuthorizer::new(
            table(),
            vec![Requirement::AllPermissions(vec!["delete:agent".into()])],
        );
        let svc = ServiceBuilder::new()
            .layer(AuthzLayer::new(authorizer))
            .service_fn(|_req: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(Response::new(crate::body::empty()))
            });
        let request = |roles: &[&str]| {
            let mut req = Request::new(crate::body::empty());
            req.extensions_mut()
                .insert(Arc::new(identity(roles, &[], None)));
            req
        };
        let allowed = svc
            .clone()
            .oneshot(request(&["admin"]))
            .await
            .expect("infallible");
        assert_eq!(allowed.status(), 200);
        let denied = svc
            .clone()
            .oneshot(request(&["viewer"]))
            .await
            .expect("infallible");
        assert_eq!(denied.status(), 403);
        let anonymous = svc
            .oneshot(Request::new(crate::body::empty()))
            .await
            .expect("infallible");
        assert_eq!(anonymous.status(), 403, "no identity, no access");
    }

    /// The input a policy sees is the documented document, field for field.
    #[cfg(feature = "rego")]
    #[test]
    fn the_policy_input_is_the_documented_document() {
        let policy = rego::RegoPolicy::compile(
            &[(
                "p.rego".into(),
                "package p\ndefault allow := false\n".into(),
            )],
            None,
            rego::Rules {
                allow: "data.p.allow",
                reasons: None,
                tier: None,
            },
            std::time::Duration::from_millis(100),
            rego::EngineChoice::Vm,
        )
        .expect("compiles");
        let check = PolicyCheck {
            policy: Arc::new(policy),
            shadow: false,
            headers: vec![
                HeaderName::from_static("x-team"),
                HeaderName::from_static("x-absent"),
            ],
            tenant_param: Some("tenant_id".into()),
        };
        let mut who = identity(&["user"], &["read:agent"], Some("acme"));
        let claims = serde_json::json!({ "exp": 1_900_000_000u64, "org": { "tier": 2.5 } });
        who.claims = Arc::new(claims.as_object().expect("object").clone());
        let parts = parts(&[("tenant_id", "acme"), ("id", "7")], &[("x-team", "blue")]);
        let expected = serde_json::json!({
            "token": { "subject": "alice", "tenant_id": "acme", "roles": ["user"], "scopes": ["read:agent"],
                       "method": "jwt", "claims": claims },
            "request": { "method": "GET", "path": "/", "route": "r", "params": { "tenant_id": "acme", "id": "7" },
                         "headers": { "x-team": "blue" }, "body": null },
            "resource": { "tenant_id": "acme" },
        });
        assert_eq!(check.input(&who, &parts), rego::from_json(&expected));
    }
}
