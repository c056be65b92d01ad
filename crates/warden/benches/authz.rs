//! Authorization decision cost: a permission granted through the hierarchy, through a wildcard,
//! a denial, and a permission plus tenant binding.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use warden::authz::rbac::RoleTable;
use warden::authz::{Requirement, RouteAuthorizer};
use warden::identity::{AuthMethod, CredentialSource, Identity};
use warden::routing::MatchedRoute;

fn bench(c: &mut Criterion) {
    let roles = vec![
        (
            "viewer".to_owned(),
            vec!["read:agent".to_owned(), "read:run".to_owned()],
        ),
        (
            "user".to_owned(),
            vec!["create:agent".to_owned(), "update:agent".to_owned()],
        ),
        (
            "admin".to_owned(),
            vec!["delete:agent".to_owned(), "admin:*".to_owned()],
        ),
    ];
    let table = Arc::new(
        RoleTable::new(&roles, &["viewer".into(), "user".into(), "admin".into()]).expect("table"),
    );
    let mut who = Identity::new(
        "alice",
        AuthMethod::Jwt,
        CredentialSource::AuthorizationHeader,
    );
    who.roles = vec!["user".into()];
    who.tenant = Some("acme".into());
    let (mut parts, _) = http::Request::builder()
        .body(())
        .expect("request")
        .into_parts();
    parts.extensions.insert(MatchedRoute {
        name: "r".into(),
        params: vec![("tenant_id".into(), "acme".into())],
    });
    let case = |requirements: Vec<Requirement>| RouteAuthorizer::new(table.clone(), requirements);
    let inherited = case(vec![Requirement::AllPermissions(vec!["read:agent".into()])]);
    let denied = case(vec![Requirement::AllPermissions(vec![
        "delete:agent".into(),
    ])]);
    let tenant = case(vec![
        Requirement::AllPermissions(vec!["read:agent".into()]),
        Requirement::TenantParam("tenant_id".into()),
    ]);
    let mut admin = who.clone();
    admin.roles = vec!["admin".into()];
    let wildcard = case(vec![Requirement::AllPermissions(vec![
        "admin:console".into(),
    ])]);

    let mut group = c.benchmark_group("authz");
    group.bench_function("permission_via_hierarchy", |b| {
        b.iter(|| inherited.authorize(black_box(&who), &parts).is_ok())
    });
    group.bench_function("permission_via_wildcard", |b| {
        b.iter(|| wildcard.authorize(black_box(&admin), &parts).is_ok())
    });
    group.bench_function("denied", |b| {
        b.iter(|| denied.authorize(black_box(&who), &parts).is_err())
    });
    group.bench_function("permission_and_tenant", |b| {
        b.iter(|| tenant.authorize(black_box(&who), &parts).is_ok())
    });
    group.finish();

    // The shipped example policy, allowed and denied.
    let modules = [(
        "api_authz.rego".to_owned(),
        include_str!("../../../examples/policies/api_authz.rego").to_owned(),
    )];
    use warden::authz::rego::{EngineChoice, RegoPolicy, Rules, from_json};
    let compile = |choice| {
        RegoPolicy::compile(
            &modules,
            None,
            Rules {
                allow: "data.api.authz.allow",
                reasons: Some("data.api.authz.reasons"),
                tier: None,
            },
            std::time::Duration::from_millis(50),
            choice,
        )
        .expect("policy")
    };
    let (vm, interpreter) = (
        compile(EngineChoice::Vm),
        compile(EngineChoice::Interpreter),
    );
    let input = |roles: &[&str], method: &str, tenant: &str| {
        serde_json::json!({
            "token": { "subject": "alice", "tenant_id": "acme", "roles": roles, "scopes": [], "method": "jwt", "claims": {} },
            "request": { "method": method, "path": format!("/api/v1/tenants/{tenant}/agents"), "route": "r", "params": { "tenant_id": tenant }, "headers": {} },
            "resource": { "tenant_id": tenant },
        })
    };
    let allowed = input(&["user"], "GET", "acme");
    let denied = input(&["viewer"], "DELETE", "globex");
    // The input as the gateway builds it: policy values, converted once per request.
    let mut group = c.benchmark_group("rego_example_policy");
    for (name, policy) in [("vm", &vm), ("interpreter", &interpreter)] {
        group.bench_function(format!("{name}/allow"), |b| {
            b.iter(|| {
                policy
                    .evaluate(from_json(black_box(&allowed)))
                    .expect("eval")
                    .allowed
            })
        });
        group.bench_function(format!("{name}/deny_with_reasons"), |b| {
            b.iter(|| {
                policy
                    .evaluate(from_json(black_box(&denied)))
                    .expect("eval")
                    .allowed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
