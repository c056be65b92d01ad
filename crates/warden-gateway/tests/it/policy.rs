//! Rego policies through real sockets: the shipped example policy (and its OPA-style tests),
//! allow, deny with reasons kept from the client, errors and timeouts failing closed, shadow mode.

use std::path::Path;

use crate::common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use warden_gateway::token::{SigningKey, now_unix};

const SECRET: &str = "policy-test-hmac-secret-of-at-least-32-bytes";

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

fn yaml(policy_file: &str, routes: &str) -> String {
    yaml_on(policy_file, routes, "vm")
}

fn yaml_on(policy_file: &str, routes: &str, engine: &str) -> String {
    format!(
        r#"
auth:
  jwt:
    - {{ name: idp, issuer: https://idp.test, audiences: [api], secret: "${{env:POLICY_SECRET}}", algorithms: [HS256], claims: {{ tenant: tenant_id }} }}
authz:
  policy:
    file: "{policy_file}"
    allow: data.api.authz.allow
    reasons: data.api.authz.reasons
    timeout: 50ms
    engine: {engine}
routes:
{routes}
"#
    )
}

const ROUTES: &str = r#"
  - { path: /api/v1/agents, methods: [GET, POST] }
  - { path: "/api/v1/agents/{id}", methods: [GET, DELETE] }
  - { path: "/api/v1/admin/{*rest}", methods: [GET] }
  - { path: "/api/v1/tenants/{tenant_id}/agents", methods: [GET], tenant_param: tenant_id }
  - { path: /api/v1/shadowed, methods: [DELETE], policy: shadow }
  - { path: /api/v1/unchecked, methods: [DELETE], policy: off, authorize: authenticated }
"#;

async fn gateway(policy_file: &str, routes: &str) -> TestGateway {
    gateway_on(policy_file, routes, "vm").await
}

/// A gateway whose policy runs on `engine`, which the test asserts the routes really got.
async fn gateway_on(policy_file: &str, routes: &str, engine: &str) -> TestGateway {
    let upstream = upstream().await;
    let config = config_with_env(
        &yaml_on(policy_file, routes, engine),
        &upstream.url(),
        &[("POLICY_SECRET", SECRET)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_engine(&config, engine);
    spawn_config(config, upstream).await
}

/// Every route's policy runs on `engine`.
fn assert_engine(config: &warden_gateway::config::Config, engine: &str) {
    let engines: Vec<&str> = config
        .routes
        .iter()
        .flat_map(|r| &r.requirements)
        .filter_map(|req| match req {
            warden::authz::Requirement::Policy(check) => Some(check.policy.engine()),
            _ => None,
        })
        .collect();
    assert!(
        !engines.is_empty() && engines.iter().all(|e| *e == engine),
        "{engines:?}"
    );
}

fn token(roles: &[&str], tenant: &str) -> String {
    let key = SigningKey::from_secret(SECRET.as_bytes(), Algorithm::HS256, None).expect("key");
    let now = now_unix();
    key.mint(&json!({ "iss": "https://idp.test", "aud": "api", "sub": "alice", "exp": now + 600, "roles": roles, "tenant_id": tenant }))
        .expect("mint")
}

async fn call(gw: &TestGateway, method: &str, path: &str, token: &str) -> Reply {
    send(
        &client(),
        request(method, &gw.url(path))
            .header("authorization", format!("Bearer {token}"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn the_example_policy_decides_and_keeps_its_reasons_private_on_either_engine() {
    for engine in ["vm", "interpreter"] {
        the_example_policy_decides_on(engine).await;
    }
}

async fn the_example_policy_decides_on(engine: &str) {
    let policy = examples().join("api_authz.rego");
    let gw = gateway_on(&policy.display().to_string(), ROUTES, engine).await;
    let viewer = token(&["viewer"], "acme");
    let admin = token(&["admin"], "acme");
    let cases: &[(&str, &str, &str, u16)] = &[
        ("GET", "/api/v1/agents", &viewer, 200),
        ("POST", "/api/v1/agents", &viewer, 403),
        ("DELETE", "/api/v1/agents/7", &viewer, 403),
        ("DELETE", "/api/v1/agents/7", &admin, 200),
        ("GET", "/api/v1/admin/users", &viewer, 403),
        ("GET", "/api/v1/admin/users", &admin, 200),
        ("GET", "/api/v1/tenants/acme/agents", &viewer, 200),
        ("GET", "/api/v1/tenants/globex/agents", &admin, 403),
        ("GET", "/api/v1/tenants/ACME/agents", &viewer, 403),
        // Path tricks canonicalize before the policy sees the path.
        ("GET", "/api/v1/agents/../admin/users", &viewer, 403),
        ("GET", "//api/v1/admin/users", &viewer, 403),
    ];
    for (method, path, token, expected) in cases {
        let reply = call(&gw, method, path, token).await;
        assert_eq!(
            reply.status.as_u16(),
            *expected,
            "{engine}: {method} {path}: {}",
            reply.text()
        );
        if *expected == 403 {
            reply.assert_problem(403);
            assert!(
                !reply.text().contains("may not"),
                "a policy reason reached the client"
            );
        }
    }
}

#[tokio::test]
async fn shadow_policies_log_but_do_not_enforce_and_off_skips() {
    let policy = examples().join("api_authz.rego");
    let gw = gateway(&policy.display().to_string(), ROUTES).await;
    let viewer = token(&["viewer"], "acme");
    assert_eq!(
        call(&gw, "DELETE", "/api/v1/shadowed", &viewer)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&gw, "DELETE", "/api/v1/unchecked", &viewer)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn evaluation_errors_and_timeouts_fail_closed() {
    let dir = temp_dir("policy");
    let slow = dir.join("slow.rego");
    std::fs::write(
        &slow,
        r#"package api.authz
import rego.v1
default allow := false
allow if {
    count([x | some x in numbers.range(1, 5000); some y in numbers.range(1, 5000); x == y + 7000]) > 0
}
reasons contains "never" if false
"#,
    )
    .expect("write");
    let gw = gateway(
        &slow.display().to_string(),
        "  - { path: /api/v1/agents, methods: [GET] }\n",
    )
    .await;
    let reply = call(&gw, "GET", "/api/v1/agents", &token(&["admin"], "acme")).await;
    reply.assert_problem(403);
    assert!(gw.upstream.requests().is_empty());
}

#[tokio::test]
async fn a_policy_the_vm_refuses_runs_on_the_interpreter_with_a_warning() {
    let dir = temp_dir("policy-with");
    let file = dir.join("with.rego");
    // `with` is not compiled by the virtual machine (yet): the policy still loads, and decides.
    std::fs::write(
        &file,
        "package api.authz\nimport rego.v1\ndefault allow := false\nallow if inner with data.q as 1\ninner if data.q == 1\nreasons contains \"never\" if false\n",
    )
    .expect("write");
    let text = yaml_on(
        &file.display().to_string(),
        "  - { path: /api/v1/agents, methods: [GET] }\n",
        "vm",
    );
    let upstream = upstream().await;
    let config = config_with_env(&text, &upstream.url(), &[("POLICY_SECRET", SECRET)])
        .unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("authz.policy: runs on the interpreter") && w.contains("with")),
        "{warnings:?}"
    );
    // The configuration asked for the machine; the routes got the interpreter.
    assert_engine(&config, "interpreter");
    let gw = spawn_config(config, upstream).await;
    let reply = call(&gw, "GET", "/api/v1/agents", &token(&["viewer"], "acme")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn the_policy_tier_rule_chooses_the_rate_limit_on_either_engine() {
    let dir = temp_dir("policy-tier");
    let file = dir.join("tier.rego");
    std::fs::write(
        &file,
        "package api.authz\nimport rego.v1\ndefault allow := false\nallow if input.token.subject != \"\"\ntier := \"premium\" if \"vip\" in input.token.roles\nreasons contains \"no subject\" if not allow\n",
    )
    .expect("write");
    for engine in ["vm", "interpreter"] {
        let text = yaml_on(
            &file.display().to_string(),
            "  - { path: /api/v1/agents, methods: [GET] }\nrate_limits:\n  default: { limit: 1, per: 1m, key: identity }\n  tiers:\n    premium: { limit: 3, per: 1m, roles: [nobody-holds-this] }\n",
            engine,
        )
        .replace("    timeout: 50ms\n", "    timeout: 50ms\n    tier: data.api.authz.tier\n");
        let upstream = upstream().await;
        let config = config_with_env(&text, &upstream.url(), &[("POLICY_SECRET", SECRET)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_engine(&config, engine);
        let gw = spawn_config(config, upstream).await;
        let vip = token(&["vip"], "acme");
        for _ in 0..3 {
            let reply = call(&gw, "GET", "/api/v1/agents", &vip).await;
            assert_eq!(reply.status, 200, "{engine}");
            assert_eq!(
                reply.header("ratelimit-policy"),
                Some("\"premium\";q=3;w=60"),
                "{engine}"
            );
        }
        call(&gw, "GET", "/api/v1/agents", &vip)
            .await
            .assert_problem(429);
        // Without the role, the policy names no tier: the default limit applies.
        let plain = token(&["viewer"], "acme");
        let reply = call(&gw, "GET", "/api/v1/agents", &plain).await;
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some("\"default\";q=1;w=60"),
            "{engine}"
        );
    }
}

#[test]
fn broken_policies_are_config_errors_with_file_and_line() {
    let dir = temp_dir("policy-broken");
    let broken = dir.join("broken.rego");
    std::fs::write(
        &broken,
        "package api.authz\n\nallow if {\n  input.x ==\n}\n",
    )
    .expect("write");
    let errors = config_with_env(
        &yaml(&broken.display().to_string(), "  - { path: /a }\n"),
        "http://127.0.0.1:1",
        &[("POLICY_SECRET", SECRET)],
    )
    .expect_err("broken policy")
    .to_string();
    assert!(
        errors.contains("authz.policy") && errors.contains("broken.rego"),
        "{errors}"
    );
    let errors = config_with_env(
        &yaml("/nonexistent/policy.rego", "  - { path: /a }\n"),
        "http://127.0.0.1:1",
        &[("POLICY_SECRET", SECRET)],
    )
    .expect_err("missing file")
    .to_string();
    assert!(
        errors.contains("authz.policy.file: cannot read"),
        "{errors}"
    );
    let policy = examples().join("api_authz.rego");
    let errors = config_with_env(
        &yaml_on(&policy.display().to_string(), "  - { path: /a }\n", "wasm"),
        "http://127.0.0.1:1",
        &[("POLICY_SECRET", SECRET)],
    )
    .expect_err("unknown engine")
    .to_string();
    assert!(
        errors.contains("authz.policy.engine: \"wasm\" is not an engine: vm or interpreter"),
        "{errors}"
    );
}

#[test]
fn the_example_policy_passes_its_own_tests() {
    let dir = examples();
    let modules: Vec<(String, String)> = ["api_authz.rego", "api_authz_test.rego"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(dir.join(f)).expect("read"),
            )
        })
        .collect();
    let tests: Vec<String> = modules[1]
        .1
        .lines()
        .filter_map(|l| l.strip_prefix("test_"))
        .map(|l| format!("test_{}", l.split_whitespace().next().expect("name")))
        .collect();
    assert!(tests.len() >= 5, "{tests:?}");
    for test in tests {
        let rule = format!("data.api.authz.{test}");
        let passed = warden::authz::rego::eval_bool_rule(&modules, None, &rule, &json!({}))
            .unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert!(passed, "{rule} failed");
    }
}
