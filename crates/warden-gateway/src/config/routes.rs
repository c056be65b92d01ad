//! `routes:` — the route table: each route's path template, methods, whether it needs an
//! identity, its body limit, step-up, authorization requirements (checked against `authz:`),
//! policy mode and rate limit (the per-route override of `rate_limits:`). Deny by default: a
//! protected route must name what it requires.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use warden::authz::rbac::RoleTable;
use warden::authz::{PolicyCheck, Requirement};

use super::auth::AuthConfig;
use super::authz::PolicyConfig;
use super::body::{self, RawBody};
use super::guards::{GuardsConfig, RawRouteGuards};
use super::rate_limits::{RawRouteLimit, RouteLimit, compile_route_limit};
use super::server::Limits;
use super::toolkit::{Compiler, Scalar, Switch};

/// One entry of `routes:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Name for logs and metrics (default: the path template).
    #[serde(default)]
    pub name: Option<String>,
    /// Path template: `/api/v1/agents/{agent_id}`, `/files/{*rest}`.
    pub path: String,
    /// Methods (default `[GET]`; `HEAD` follows `GET`).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// `none` makes the route public; `required` (or absent, with `auth.required`) needs identity.
    #[serde(default)]
    pub auth: Option<String>,
    /// Body limit and body rules for this route.
    #[serde(default)]
    pub body: Option<RawBody>,
    /// Content rules for this route (`models`), replacing the global ones.
    #[serde(default)]
    pub guards: Option<RawRouteGuards>,
    /// RFC 9470 step-up requirement.
    #[serde(default)]
    pub step_up: Option<RawStepUp>,
    /// Forward the client's credentials upstream (default false).
    #[serde(default)]
    pub forward_credentials: Option<bool>,
    /// One permission the identity's roles must grant.
    #[serde(default)]
    pub permission: Option<String>,
    /// Permissions: all or any.
    #[serde(default)]
    pub permissions: Option<RawAllAny>,
    /// Lowest role in the hierarchy that may call the route.
    #[serde(default)]
    pub roles_at_least: Option<String>,
    /// OAuth scopes: all or any.
    #[serde(default)]
    pub scopes: Option<RawAllAny>,
    /// Path parameter that must equal the identity's tenant.
    #[serde(default)]
    pub tenant_param: Option<String>,
    /// Request header that must equal the identity's tenant.
    #[serde(default)]
    pub tenant_header: Option<String>,
    /// `enforce` (default when `authz.policy` is set), `shadow` (evaluate and log only) or `off`.
    #[serde(default)]
    pub policy: Option<Switch>,
    /// This route's token budget, or `off` (default: `token_budgets.default` on LLM routes).
    #[serde(default)]
    pub token_budget: Option<super::token_budgets::RawRouteBudget>,
    /// This route's rate limit, or `off` (default: `rate_limits.default`).
    #[serde(default)]
    pub rate_limit: Option<RawRouteLimit>,
    /// `authenticated`: any authenticated identity may call the route (an explicit choice:
    /// without it, a protected route must name a requirement).
    #[serde(default)]
    pub authorize: Option<String>,
}

/// `routes[].step_up:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStepUp {
    /// Acceptable `acr` values.
    pub acr: Vec<String>,
    /// Longest time since authentication.
    pub max_age: Option<Scalar>,
}

/// `{ all: [...] }` or `{ any: [...] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAllAny {
    /// Every one of these.
    pub all: Option<Vec<String>>,
    /// At least one of these.
    pub any: Option<Vec<String>>,
}

/// One route, compiled.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// Name for logs and metrics.
    pub name: String,
    /// Path template for matchit.
    pub path: String,
    /// Allowed methods.
    pub methods: Vec<Method>,
    /// `auth: none`.
    pub public: bool,
    /// Body limit.
    pub max_body_bytes: u64,
    /// Body rules (the body is buffered and checked), if any.
    pub body: Option<warden::body::rules::BodyRules>,
    /// RFC 9470 step-up requirement.
    pub step_up: Option<warden::authn::StepUpRequirement>,
    /// Forward the client's credentials upstream.
    pub forward_credentials: bool,
    /// Authorization requirements (empty: any authenticated identity, by explicit choice).
    pub requirements: Vec<Requirement>,
    /// Rate limit.
    pub rate_limit: RouteLimit,
    /// Its token budget (an LLM route's own, or `token_budgets.default`).
    pub token_budget: Option<warden::budget::BudgetLimit>,
}

/// The template with each whole-segment parameter replaced by a plain segment.
fn template_probe(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.len() > 2 && segment.starts_with('{') && segment.ends_with('}') {
                "p"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Paths of the common LLM APIs (OpenAI, Anthropic, and the many servers that copy them).
fn looks_like_model_traffic(path: &str) -> bool {
    [
        "/chat/completions",
        "/completions",
        "/responses",
        "/messages",
        "/embeddings",
    ]
    .iter()
    .any(|suffix| path.ends_with(suffix))
}

/// Parameter names of a route template (`{id}`, `{*rest}`).
fn template_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*'))
        .collect()
}

fn compile_requirements(
    c: &mut Compiler,
    i: usize,
    route: &RawRoute,
    roles: &RoleTable,
) -> Vec<Requirement> {
    let at = |field: &str| format!("routes[{i}].{field}");
    let mut requirements = Vec::new();
    let check_permissions = |c: &mut Compiler, field: &str, list: &[String]| {
        for (j, permission) in list.iter().enumerate() {
            if !roles.grantable(permission) {
                c.error(
                    format!("routes[{i}].{field}[{j}]"),
                    format!("no role in authz.roles grants {permission:?}"),
                );
            }
        }
    };
    if let Some(permission) = &route.permission {
        check_permissions(c, "permission", std::slice::from_ref(permission));
        requirements.push(Requirement::AllPermissions(vec![permission.clone()]));
    }
    if let Some(p) = &route.permissions {
        match (&p.all, &p.any) {
            (Some(all), None) if !all.is_empty() => {
                check_permissions(c, "permissions.all", all);
                requirements.push(Requirement::AllPermissions(all.clone()));
            }
            (None, Some(any)) if !any.is_empty() => {
                check_permissions(c, "permissions.any", any);
                requirements.push(Requirement::AnyPermission(any.clone()));
            }
            _ => c.error(
                at("permissions"),
                "give exactly one non-empty list: all or any",
            ),
        }
    }
    if let Some(role) = &route.roles_at_least {
        match roles.rank(role) {
            Some(rank) => requirements.push(Requirement::RoleAtLeast(rank, role.clone())),
            None => c.error(
                at("roles_at_least"),
                format!("{role:?} is not in authz.role_hierarchy"),
            ),
        }
    }
    if let Some(s) = &route.scopes {
        match (&s.all, &s.any) {
            (Some(all), None) if !all.is_empty() => {
                requirements.push(Requirement::AllScopes(all.clone()))
            }
            (None, Some(any)) if !any.is_empty() => {
                requirements.push(Requirement::AnyScope(any.clone()))
            }
            _ => c.error(at("scopes"), "give exactly one non-empty list: all or any"),
        }
    }
    if let Some(param) = &route.tenant_param {
        if template_params(&route.path).contains(&param.as_str()) {
            requirements.push(Requirement::TenantParam(param.clone()));
        } else {
            c.error(
                at("tenant_param"),
                format!("{:?} has no parameter {param:?}", route.path),
            );
        }
    }
    if let Some(header) = &route.tenant_header
        && let Some(name) = c.header_name(&at("tenant_header"), header)
    {
        requirements.push(Requirement::TenantHeader(name));
    }
    requirements
}

/// `routes[].policy`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PolicyMode {
    Enforce,
    Shadow,
    Off,
}

/// What compiling routes reads of the sections compiled before them.
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)]
pub struct Sections<'a> {
    /// `auth:`.
    pub auth: &'a AuthConfig,
    /// `authz.roles`.
    pub roles: &'a RoleTable,
    /// `authz.policy`.
    pub policy: Option<&'a PolicyConfig>,
    /// `server.limits`.
    pub limits: &'a Limits,
    /// `guards:`.
    pub guards: &'a GuardsConfig,
    /// `token_budgets:`.
    pub budgets: &'a super::token_budgets::TokenBudgetsConfig,
}

/// Compiles `routes:` against the sections they refer to.
pub fn compile(c: &mut Compiler, raw: &[RawRoute], sections: Sections<'_>) -> Vec<RouteConfig> {
    let Sections {
        auth,
        roles,
        policy,
        limits,
        guards,
        budgets,
    } = sections;
    let mut routes: Vec<RouteConfig> = Vec::new();
    let mut seen: Vec<(String, Method)> = Vec::new();
    let mut router = matchit::Router::new();
    if raw.is_empty() && !c.section_failed("routes") {
        c.error(
            "routes",
            "no routes: every path would be 404 (deny by default); add at least one route",
        );
    }
    for (i, route) in raw.iter().enumerate() {
        let at = |field: &str| format!("routes[{i}].{field}");
        // Parameters (`{id}`, `{*rest}`) stand for one canonical segment each.
        let probe = template_probe(&route.path);
        let template_ok = route.path.starts_with('/')
            && warden::canonical::canonicalize(&probe).is_ok_and(|p| p == probe);
        if !template_ok {
            c.error(
                at("path"),
                format!(
                    "{:?} is not a canonical absolute path (no //, dot-segments, %-escapes or ;)",
                    route.path
                ),
            );
            continue;
        }
        let methods: Vec<Method> = match &route.methods {
            None => vec![Method::GET],
            Some(list) if list.is_empty() => {
                c.error(at("methods"), "must list at least one method");
                continue;
            }
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(j, m)| c.method(&format!("routes[{i}].methods[{j}]"), m))
                .collect(),
        };
        let public = match route.auth.as_deref() {
            None => !auth.required,
            Some(word) => match c.choose(&at("auth"), word, &[("none", true), ("required", false)])
            {
                Some(public) => public,
                None => continue,
            },
        };
        if !public && !auth.has_authenticators() {
            c.error(
                at("auth"),
                "this route requires authentication but no authenticator is configured; \
                 configure auth.jwt or auth.api_keys, or mark the route `auth: none` to make it public",
            );
        }
        let step_up = route
            .step_up
            .as_ref()
            .map(|raw| warden::authn::StepUpRequirement {
                acr: raw.acr.clone(),
                max_age: raw.max_age.as_ref().map(|v| {
                    c.duration(
                        &format!("routes[{i}].step_up.max_age"),
                        Some(v),
                        Duration::ZERO,
                    )
                }),
            });
        if step_up.is_some() && public {
            c.error(
                at("step_up"),
                "a public route (auth: none) cannot require step-up authentication",
            );
        }
        let mut requirements = compile_requirements(c, i, route, roles);
        let mode = match &route.policy {
            // Absent: enforced wherever a policy is configured and an identity is required.
            None => (policy.is_some() && !public).then_some(PolicyMode::Enforce),
            Some(word) => match c.choose(
                &at("policy"),
                word.as_word(),
                &[
                    ("enforce", PolicyMode::Enforce),
                    ("shadow", PolicyMode::Shadow),
                    ("off", PolicyMode::Off),
                ],
            ) {
                None | Some(PolicyMode::Off) => None,
                Some(_) if policy.is_none() => {
                    c.error(at("policy"), "no authz.policy is configured");
                    None
                }
                Some(_) if public => {
                    c.error(
                        at("policy"),
                        "a public route (auth: none) is not evaluated by the policy",
                    );
                    None
                }
                Some(mode) => Some(mode),
            },
        };
        if let (Some(mode), Some(p)) = (mode, policy) {
            requirements.push(Requirement::Policy(Arc::new(PolicyCheck {
                policy: p.policy.clone(),
                shadow: mode == PolicyMode::Shadow,
                headers: p.headers.clone(),
                tenant_param: route.tenant_param.clone(),
            })));
        }
        if let Some(word) = route.authorize.as_deref() {
            c.choose(&at("authorize"), word, &[("authenticated", ())]);
        }
        if public && (!requirements.is_empty() || route.authorize.is_some()) {
            c.error(
                at("auth"),
                "a public route (auth: none) cannot carry authorization requirements",
            );
        }
        // Deny by default: a protected route names what it requires, or says that any
        // authenticated caller will do.
        if !public
            && requirements.is_empty()
            && route.authorize.is_none()
            && auth.has_authenticators()
        {
            c.error(
                at("authorize"),
                "this route names no requirement: add permission, permissions, roles_at_least, scopes \
                 or tenant_param, or `authorize: authenticated` to allow any authenticated caller",
            );
        }
        let max_body_bytes = c.size(
            &at("body.max_bytes"),
            route.body.as_ref().and_then(|b| b.max_bytes.as_ref()),
            limits.max_request_bytes,
        );
        // Conflicting templates (`/a/{x}` vs `/a/{y}`) are caught here, not at request time.
        let first_use = !routes.iter().any(|r| r.path == route.path);
        if first_use && let Err(e) = router.insert(route.path.as_str(), ()) {
            c.error(at("path"), format!("conflicts with another route: {e}"));
            continue;
        }
        for method in &methods {
            if seen.iter().any(|(p, m)| p == &route.path && m == method) {
                c.error(
                    at("methods"),
                    format!("{method} {} is already routed", route.path),
                );
            }
            seen.push((route.path.clone(), method.clone()));
        }
        let body = {
            let rules = body::compile(c, i, route.body.as_ref(), route.guards.as_ref(), guards);
            if rules.is_none()
                && methods.contains(&Method::POST)
                && looks_like_model_traffic(&route.path)
            {
                c.warn(
                    at("body.format"),
                    "this route looks like model traffic but declares no body format: body rules, model rules and guards do not apply to it",
                );
            }
            rules
        };
        routes.push(RouteConfig {
            name: route.name.clone().unwrap_or_else(|| route.path.clone()),
            path: route.path.clone(),
            methods,
            public,
            max_body_bytes,
            step_up,
            forward_credentials: route.forward_credentials.unwrap_or(false),
            requirements,
            rate_limit: compile_route_limit(
                c,
                i,
                route.name.as_deref().unwrap_or(&route.path),
                route.rate_limit.as_ref(),
            ),
            token_budget: super::token_budgets::compile_route(
                c,
                i,
                route.name.as_deref().unwrap_or(&route.path),
                route.token_budget.as_ref(),
                body.as_ref().map(|rules| &rules.format),
                budgets,
            ),
            body,
        });
    }
    routes
}
