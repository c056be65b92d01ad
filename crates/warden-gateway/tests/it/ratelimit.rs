//! Rate limits through real sockets (in-memory store): 429 with Retry-After and problem+json,
//! IETF and legacy headers, per-identity keys, pre-auth IP limits, tiers, shadow and off.

use crate::common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use warden_gateway::token::{SigningKey, now_unix};

const SECRET: &str = "ratelimit-test-hmac-secret-of-at-least-32-bytes";

const YAML: &str = r#"
cors: { origins: [https://app.example.com] }
auth:
  jwt:
    - { name: idp, issuer: https://idp.test, audiences: [api], secret: "${env:RL_SECRET}", algorithms: [HS256] }
rate_limits:
  default: { limit: 3, per: 1m, key: identity }
  tiers:
    premium: { limit: 6, per: 1m, roles: [premium] }
routes:
  - { path: /limited, authorize: authenticated }
  - { path: /shadow, authorize: authenticated, rate_limit: { limit: 1, per: 1m, shadow: true } }
  - { path: /healthz, auth: none, rate_limit: off }
  - { path: /quiet, authorize: authenticated, rate_limit: { limit: 1, per: 1m, headers: false } }
"#;

async fn gateway(extra: &str) -> TestGateway {
    let upstream = upstream().await;
    let config = config_with_env(
        &format!("{YAML}{extra}"),
        &upstream.url(),
        &[("RL_SECRET", SECRET)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    spawn_config(config, upstream).await
}

fn token(sub: &str, roles: &[&str]) -> String {
    let key = SigningKey::from_secret(SECRET.as_bytes(), Algorithm::HS256, None).expect("key");
    let now = now_unix();
    key.mint(&json!({ "iss": "https://idp.test", "aud": "api", "sub": sub, "exp": now + 600, "roles": roles }))
        .expect("mint")
}

async fn call(gw: &TestGateway, path: &str, token: &str) -> Reply {
    send(
        &client(),
        request("GET", &gw.url(path))
            .header("authorization", format!("Bearer {token}"))
            .header("origin", "https://app.example.com")
            .body(warden::body::empty())
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn the_fourth_call_is_429_with_headers_and_other_callers_are_unaffected() {
    let gw = gateway("").await;
    let alice = token("alice", &[]);
    for remaining in ["2", "1", "0"] {
        let reply = call(&gw, "/limited", &alice).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some("\"default\";q=3;w=60")
        );
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining));
        assert!(
            reply
                .header("ratelimit")
                .is_some_and(|v| v.starts_with(&format!("\"default\";r={remaining};t=")))
        );
    }
    let reply = call(&gw, "/limited", &alice).await;
    reply.assert_problem(429);
    assert_eq!(reply.json()["type"], "urn:warden:problem:rate-limited");
    let retry: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com"),
        "429 carries CORS"
    );
    assert_eq!(
        gw.upstream.requests().len(),
        3,
        "the refused call never reached the upstream"
    );

    assert_eq!(
        call(&gw, "/limited", &token("bob", &[])).await.status,
        200,
        "keys are per identity"
    );
}

#[tokio::test]
async fn tiers_shadow_off_and_header_opt_out() {
    let gw = gateway("").await;
    let vip = token("carol", &["premium"]);
    for _ in 0..6 {
        assert_eq!(call(&gw, "/limited", &vip).await.status, 200);
    }
    call(&gw, "/limited", &vip).await.assert_problem(429);

    let dave = token("dave", &[]);
    let shadow = "warden_ratelimit_shadow_exceeded_total{limit=\"/shadow\"}";
    let before = metric(&gw, shadow).await;
    for _ in 0..3 {
        assert_eq!(
            call(&gw, "/shadow", &dave).await.status,
            200,
            "shadow limits never refuse"
        );
    }
    // ...but they are evaluated: calls 2 and 3 were over the limit of 1.
    assert_eq!(metric(&gw, shadow).await - before, 2.0);
    for _ in 0..20 {
        assert_eq!(get(&gw.url("/healthz")).await.status, 200);
    }
    let reply = call(&gw, "/quiet", &dave).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("ratelimit").is_none() && reply.header("x-ratelimit-limit").is_none());
    call(&gw, "/quiet", &dave).await.assert_problem(429);
}

#[tokio::test]
async fn pre_auth_limits_by_ip_stop_floods_before_authentication() {
    let yaml = YAML.replace(
        "rate_limits:\n",
        "rate_limits:\n  pre_auth: { limit: 5, per: 1m, key: ip }\n",
    );
    let upstream = upstream().await;
    let config = config_with_env(&yaml, &upstream.url(), &[("RL_SECRET", SECRET)])
        .unwrap_or_else(|e| panic!("{e}"));
    let gw = spawn_config(config, upstream).await;
    // Garbage tokens: each costs an IP unit before any verification is attempted.
    for _ in 0..5 {
        assert_eq!(call(&gw, "/limited", "garbage").await.status, 401);
    }
    call(&gw, "/limited", "garbage").await.assert_problem(429);
    call(&gw, "/limited", &token("erin", &[]))
        .await
        .assert_problem(429);
}

#[test]
fn bad_limits_are_config_errors() {
    let routes = "routes:\n  - { path: /a, authorize: authenticated, rate_limit: { limit: 0, per: 1m } }\n  - { path: /b, authorize: authenticated, rate_limit: { limit: 20000, per: 1m, algorithm: sliding_window } }\n  - { path: /c, authorize: authenticated, rate_limit: { limit: 5, key: cookie } }\n  - { path: /d, authorize: authenticated, rate_limit: { limit: 5, algorithm: magic } }\n  - { path: /e, authorize: authenticated, rate_limit: { limit: 5, key: \"header:Authorization\" } }\n";
    let head = YAML.split("routes:").next().expect("head");
    let errors = config_with_env(
        &format!("{head}{routes}"),
        "http://127.0.0.1:1",
        &[("RL_SECRET", SECRET)],
    )
    .expect_err("invalid")
    .to_string();
    for expected in [
        "routes[0].rate_limit",
        "routes[1].rate_limit",
        "routes[2].rate_limit.key",
        "routes[3].rate_limit.algorithm",
        "routes[4].rate_limit.key: Authorization carries credentials",
    ] {
        assert!(errors.contains(expected), "missing {expected} in\n{errors}");
    }
}
