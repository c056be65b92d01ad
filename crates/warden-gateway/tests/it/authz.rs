//! Authorization through real sockets: permissions (all/any), hierarchy, wildcards, minimum role,
//! scopes, tenant binding by path and header, and attempts to smuggle authority.

use crate::common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use warden_gateway::token::{SigningKey, now_unix};

const SECRET: &str = "authz-test-hmac-secret-of-at-least-32-bytes";

const YAML: &str = r#"
auth:
  jwt:
    - name: idp
      issuer: https://idp.test
      audiences: [api]
      secret: ${env:AUTHZ_SECRET}
      algorithms: [HS256]
      claims: { tenant: tenant_id }
authz:
  roles:
    viewer: [read:agent]
    user: [create:agent, update:agent]
    editor: [publish:agent]
    admin: [delete:agent, "admin:*"]
    auditor: ["read:*"]
  role_hierarchy: [viewer, user, editor, admin]
routes:
  - { path: /agents, methods: [GET], permission: read:agent }
  - { path: /agents, methods: [POST], permission: create:agent }
  - { path: "/agents/{id}", methods: [DELETE], permission: delete:agent }
  - { path: /both, permissions: { all: [read:agent, create:agent] } }
  - { path: /either, permissions: { any: [delete:agent, publish:agent] } }
  - { path: /publish, roles_at_least: editor }
  - { path: "/admin/{*rest}", permission: "admin:console" }
  - { path: /billing, permission: "read:billing" }
  - { path: /scoped-all, scopes: { all: [agents:read, agents:write] } }
  - { path: /scoped-any, scopes: { any: [agents:admin, agents:write] } }
  - { path: "/tenants/{tenant_id}/agents", permission: read:agent, tenant_param: tenant_id }
  - { path: /by-header, permission: read:agent, tenant_header: X-Tenant-Id }
  - { path: /anyone, authorize: authenticated }
  - { path: /public, auth: none }
"#;

async fn gateway() -> TestGateway {
    let upstream = upstream().await;
    let config = config_with_env(YAML, &upstream.url(), &[("AUTHZ_SECRET", SECRET)])
        .unwrap_or_else(|e| panic!("{e}"));
    spawn_config(config, upstream).await
}

fn token(roles: &[&str], scope: &str, tenant: Option<&str>) -> String {
    let key = SigningKey::from_secret(SECRET.as_bytes(), Algorithm::HS256, None).expect("key");
    let now = now_unix();
    let mut claims = json!({ "iss": "https://idp.test", "aud": "api", "sub": "alice", "exp": now + 600, "roles": roles, "scope": scope });
    if let Some(tenant) = tenant {
        claims["tenant_id"] = json!(tenant);
    }
    key.mint(&claims).expect("mint")
}

async fn call(
    gw: &TestGateway,
    method: &str,
    target: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> u16 {
    let mut builder =
        request(method, &gw.url(target)).header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let reply = send(
        &client(),
        builder.body(warden::body::empty()).expect("request"),
    )
    .await;
    if reply.status == 403 {
        reply.assert_problem(403);
        assert_eq!(reply.json()["type"], "urn:warden:problem:forbidden");
    }
    reply.status.as_u16()
}

#[tokio::test]
async fn permissions_hierarchy_and_wildcards() {
    let gw = gateway().await;
    let viewer = token(&["viewer"], "", None);
    let user = token(&["user"], "", None);
    let editor = token(&["editor"], "", None);
    let admin = token(&["admin"], "", None);
    let auditor = token(&["auditor"], "", None);
    let nobody = token(&["intern"], "", None);
    let cases: &[(&str, &str, &str, u16)] = &[
        ("GET", "/agents", &viewer, 200),
        ("POST", "/agents", &viewer, 403),
        ("POST", "/agents", &user, 200),
        ("GET", "/agents", &admin, 200),
        ("DELETE", "/agents/7", &user, 403),
        ("DELETE", "/agents/7", &admin, 200),
        ("GET", "/both", &viewer, 403),
        ("GET", "/both", &user, 200),
        ("GET", "/either", &user, 403),
        ("GET", "/either", &editor, 200),
        ("GET", "/publish", &user, 403),
        ("GET", "/publish", &editor, 200),
        ("GET", "/publish", &admin, 200),
        ("GET", "/publish", &auditor, 403),
        ("GET", "/admin/console", &admin, 200),
        ("GET", "/admin/console", &editor, 403),
        ("GET", "/billing", &auditor, 200),
        ("GET", "/billing", &admin, 403),
        ("GET", "/agents", &nobody, 403),
        ("GET", "/anyone", &nobody, 200),
    ];
    for (method, path, token, expected) in cases {
        assert_eq!(
            call(&gw, method, path, token, &[]).await,
            *expected,
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn scopes_all_and_any() {
    let gw = gateway().await;
    let cases = [
        ("/scoped-all", "agents:read agents:write", 200),
        ("/scoped-all", "agents:read", 403),
        ("/scoped-any", "agents:write", 200),
        ("/scoped-any", "agents:read", 403),
    ];
    for (path, scope, expected) in cases {
        assert_eq!(
            call(&gw, "GET", path, &token(&[], scope, None), &[]).await,
            expected,
            "{path} {scope}"
        );
    }
}

#[tokio::test]
async fn tenant_isolation_by_path_and_header() {
    let gw = gateway().await;
    let acme = token(&["viewer"], "", Some("acme"));
    let no_tenant = token(&["viewer"], "", None);
    assert_eq!(
        call(&gw, "GET", "/tenants/acme/agents", &acme, &[]).await,
        200
    );
    assert_eq!(gw.upstream.last().headers["x-warden-tenant"], "acme");
    for (target, expected) in [
        ("/tenants/globex/agents", 403),
        ("/tenants/ACME/agents", 403),
        ("/tenants/Acme/agents", 403),
        ("/tenants/acme%20/agents", 403),
        // Refused before routing: double encoding, a NUL.
        ("/tenants/%2541cme/agents", 400),
        ("/tenants/acme%00/agents", 400),
    ] {
        let status = call(&gw, "GET", target, &acme, &[]).await;
        assert_eq!(status, expected, "{target}");
    }
    // Canonically the same tenant: %61 is "a".
    assert_eq!(
        call(&gw, "GET", "/tenants/%61cme/agents", &acme, &[]).await,
        200
    );
    assert_eq!(
        call(&gw, "GET", "/tenants/acme/agents", &no_tenant, &[]).await,
        403
    );

    assert_eq!(
        call(&gw, "GET", "/by-header", &acme, &[("x-tenant-id", "acme")]).await,
        200
    );
    assert_eq!(
        call(
            &gw,
            "GET",
            "/by-header",
            &acme,
            &[("x-tenant-id", "globex")]
        )
        .await,
        403
    );
    assert_eq!(call(&gw, "GET", "/by-header", &acme, &[]).await, 403);
}

#[tokio::test]
async fn authority_cannot_be_smuggled_in_headers_query_or_paths() {
    let gw = gateway().await;
    let viewer = token(&["viewer"], "", Some("acme"));
    let forged = [
        ("x-warden-roles", "admin"),
        ("x_warden_roles", "admin"),
        ("x-warden-tenant", "globex"),
        ("x-roles", "admin"),
        ("x-warden-scopes", "agents:admin"),
    ];
    assert_eq!(
        call(&gw, "DELETE", "/agents/7", &viewer, &forged).await,
        403
    );
    assert_eq!(
        call(
            &gw,
            "DELETE",
            "/agents/7?roles=admin&role=admin",
            &viewer,
            &[]
        )
        .await,
        403
    );
    assert_eq!(
        call(
            &gw,
            "GET",
            "/tenants/globex/agents?tenant_id=acme",
            &viewer,
            &forged
        )
        .await,
        403
    );
    assert_eq!(
        call(
            &gw,
            "GET",
            "/scoped-any?scope=agents:admin",
            &viewer,
            &forged
        )
        .await,
        403
    );
    // Path tricks that canonicalize to the admin route still meet its permission check.
    for target in [
        "/agents/../admin/console",
        "//admin/console",
        "/public/../admin/console",
        "/%61dmin/console",
    ] {
        assert_eq!(
            call(&gw, "GET", target, &viewer, &[]).await,
            403,
            "{target}"
        );
    }
    assert_eq!(
        call(&gw, "GET", "/admin/..%2fconsole", &viewer, &[]).await,
        400
    );
    assert!(
        gw.upstream.requests().is_empty(),
        "a denied request reached the upstream"
    );
}

#[test]
fn unknown_roles_and_permissions_in_routes_are_config_errors() {
    let base = YAML.split("routes:").next().expect("head");
    let routes = r#"routes:
  - { path: /a, permission: fly:agent }
  - { path: /b, roles_at_least: superuser }
  - { path: /c, permissions: { all: [] } }
  - { path: "/d/{id}", permission: read:agent, tenant_param: tenant }
  - { path: /e }
  - { path: /f, auth: none, permission: read:agent }
"#;
    let errors = config_with_env(
        &format!("{base}{routes}"),
        "http://127.0.0.1:1",
        &[("AUTHZ_SECRET", SECRET)],
    )
    .expect_err("invalid")
    .to_string();
    for expected in [
        "routes[0].permission[0]: no role in authz.roles grants \"fly:agent\"",
        "routes[1].roles_at_least",
        "routes[2].permissions",
        "routes[3].tenant_param",
        "routes[4].authorize: this route names no requirement",
        "routes[5].auth: a public route",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in\n{errors}"
        );
    }
}
