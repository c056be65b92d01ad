//! CORS from configuration: exact origins, preflights before anything else, headers on errors.

use crate::common::*;

const CORS: &str = r#"
cors:
  origins: [https://app.example.com]
  development_origins: [http://localhost:3000]
  credentials: true
  max_age: 5m
"#;

fn preflight(gw: &TestGateway, path: &str, origin: &str) -> http::Request<warden::body::Body> {
    request("OPTIONS", &gw.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .body(warden::body::empty())
        .expect("request")
}

#[tokio::test]
async fn preflights_from_allowed_origins_are_answered_by_the_gateway() {
    let gw = spawn(&format!("{CORS}{BASIC}")).await;
    let reply = send(
        &client(),
        preflight(&gw, "/small", "https://app.example.com"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(reply.header("access-control-max-age"), Some("300"));
    assert!(
        reply
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST"))
    );
    assert!(
        reply
            .header("vary")
            .is_some_and(|v| v.to_ascii_lowercase().contains("origin"))
    );
    assert!(
        gw.upstream.requests().is_empty(),
        "preflight must not reach the upstream"
    );
}

#[tokio::test]
async fn other_origins_get_no_cors_grant() {
    let gw = spawn(&format!("{CORS}{BASIC}")).await;
    for origin in [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "http://app.example.com",
        "null",
        // development origins are not allowed in production
        "http://localhost:3000",
    ] {
        let reply = send(&client(), preflight(&gw, "/small", origin)).await;
        assert!(
            reply.header("access-control-allow-origin").is_none(),
            "{origin} was granted"
        );
        let reply = send(
            &client(),
            request("GET", &gw.url("/echo"))
                .header("origin", origin)
                .body(warden::body::empty())
                .expect("request"),
        )
        .await;
        assert!(
            reply.header("access-control-allow-origin").is_none(),
            "{origin} was granted"
        );
        assert_ne!(reply.header("access-control-allow-origin"), Some("*"));
    }
}

#[tokio::test]
async fn development_origins_apply_only_in_development() {
    let gw = spawn(&format!(
        "server: {{ environment: development }}\n{CORS}{BASIC}"
    ))
    .await;
    let reply = send(&client(), preflight(&gw, "/small", "http://localhost:3000")).await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
}

#[tokio::test]
async fn error_responses_carry_cors_headers_and_vary() {
    let gw = spawn(&format!("{CORS}{BASIC}")).await;
    for (method, path, status) in [
        ("GET", "/nope", 404),
        ("DELETE", "/echo", 405),
        ("GET", "/%2e%2e/x", 400),
    ] {
        let reply = send(
            &client(),
            request(method, &gw.url(path))
                .header("origin", "https://app.example.com")
                .body(warden::body::empty())
                .expect("request"),
        )
        .await;
        reply.assert_problem(status);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert!(
            reply
                .header("vary")
                .is_some_and(|v| v.to_ascii_lowercase().contains("origin"))
        );
    }
}

#[tokio::test]
async fn without_cors_config_preflights_are_not_granted() {
    let gw = spawn(BASIC).await;
    let reply = send(
        &client(),
        preflight(&gw, "/small", "https://app.example.com"),
    )
    .await;
    reply.assert_problem(405);
    assert!(reply.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn wildcard_with_credentials_is_a_config_error() {
    let errors = config_for(
        &format!("cors: {{ origins: ['*'], credentials: true }}\n{BASIC}"),
        "http://127.0.0.1:1",
    )
    .expect_err("invalid");
    assert!(errors.to_string().contains("cors.origins[0]"), "{errors}");
}
