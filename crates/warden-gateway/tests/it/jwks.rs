//! Remote JWKS and OIDC discovery against a local key server: rotation, fetch-storm protection,
//! serving stale keys while the server is down and 503 after, discovery checks, transport policy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use warden::clock::ManualClock;
use warden_gateway::server::{Gateway, ServerError};
use warden_gateway::token::{SigningKey, jwks, now_unix};

/// A key server whose answers the test controls.
#[derive(Clone)]
pub(crate) struct KeyServer {
    addr: SocketAddr,
    jwks: Arc<Mutex<Value>>,
    status: Arc<AtomicU16>,
    fetches: Arc<AtomicU64>,
    discovery_issuer: Arc<Mutex<Option<String>>>,
    redirect_to: Arc<Mutex<Option<String>>>,
    cache_control: Arc<Mutex<Option<String>>>,
}

impl KeyServer {
    pub(crate) async fn start(keys: &[&SigningKey]) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = KeyServer {
            addr: listener.local_addr().expect("addr"),
            jwks: Arc::new(Mutex::new(jwks(keys))),
            status: Arc::new(AtomicU16::new(200)),
            fetches: Arc::default(),
            discovery_issuer: Arc::default(),
            redirect_to: Arc::default(),
            cache_control: Arc::default(),
        };
        let state = server.clone();
        serve(listener, move |req| respond(state.clone(), req));
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_keys(&self, keys: &[&SigningKey]) {
        *self.jwks.lock().expect("lock") = jwks(keys);
    }

    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn respond(
    state: KeyServer,
    req: Request<Incoming>,
) -> Result<Response<warden::body::Body>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(warden::body::full(body));
        *response.status_mut() = status;
        response
    };
    match req.uri().path() {
        "/.well-known/openid-configuration" => {
            let issuer = state
                .discovery_issuer
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_else(|| state.url());
            let document = json!({ "issuer": issuer, "jwks_uri": format!("{}/jwks", state.url()) });
            Ok(reply(StatusCode::OK, document.to_string()))
        }
        "/jwks" => {
            state.fetches.fetch_add(1, Ordering::SeqCst);
            if let Some(target) = state.redirect_to.lock().expect("lock").clone() {
                let mut response = reply(StatusCode::FOUND, String::new());
                response
                    .headers_mut()
                    .insert("location", target.parse().expect("location"));
                return Ok(response);
            }
            let status = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).expect("status");
            if status != StatusCode::OK {
                return Ok(reply(status, "down".into()));
            }
            let body = state.jwks.lock().expect("lock").to_string();
            let mut response = reply(StatusCode::OK, body);
            if let Some(value) = state.cache_control.lock().expect("lock").clone() {
                response
                    .headers_mut()
                    .insert("cache-control", value.parse().expect("value"));
            }
            Ok(response)
        }
        "/big" => Ok(reply(
            StatusCode::OK,
            format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(4096)),
        )),
        _ => Ok(reply(StatusCode::NOT_FOUND, String::new())),
    }
}

pub(crate) fn key(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::ES256, Some(kid.into())).expect("key")
}

pub(crate) fn token(key: &SigningKey, issuer: &str) -> String {
    let now = now_unix();
    key.mint(
        &json!({ "iss": issuer, "aud": "agents", "sub": "alice", "iat": now, "exp": now + 3600 }),
    )
    .expect("mint")
}

fn yaml(source: &str, issuer: &str, jwks: &str) -> String {
    format!(
        r#"
server: {{ environment: development }}
auth:
  jwt:
    - name: idp
      issuer: "{issuer}"
      audiences: [agents]
      {source}
      algorithms: [ES256]
      jwks: {{ {jwks} }}
routes:
  - {{ path: /private, authorize: authenticated }}
"#
    )
}

async fn start(yaml: &str, clock: Arc<ManualClock>) -> Result<TestGateway, ServerError> {
    let upstream = upstream().await;
    let config = config_for(yaml, &upstream.url()).unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::start_with_clock(config, clock).await?;
    Ok(TestGateway { gateway, upstream })
}

async fn call(gw: &TestGateway, token: &str) -> Reply {
    send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("authorization", format!("Bearer {token}"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_one_refetch_and_the_old_one_dropped() {
    let (a, b) = (key("a"), key("b"));
    let server = KeyServer::start(&[&a]).await;
    let clock = Arc::new(ManualClock::starting_now());
    let config = yaml(
        &format!("jwks_uri: {}/jwks", server.url()),
        "https://idp.test",
        "min_refresh_interval: 30s",
    );
    let gw = start(&config, clock.clone()).await.expect("starts");
    assert_eq!(server.fetches(), 1, "startup fetch");
    let token_a = token(&a, "https://idp.test");
    assert_eq!(call(&gw, &token_a).await.status, 200);

    // The issuer rotates: b is published, a withdrawn.
    server.set_keys(&[&b]);
    assert_eq!(
        call(&gw, &token(&b, "https://idp.test")).await.status,
        200,
        "new kid after one refetch"
    );
    assert_eq!(server.fetches(), 2);
    // The cached verification of a's token was dropped with the rotation.
    let reply = call(&gw, &token_a).await;
    reply.assert_problem(401);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_causes_at_most_one_fetch_per_interval() {
    let a = key("a");
    let server = KeyServer::start(&[&a]).await;
    let clock = Arc::new(ManualClock::starting_now());
    let config = yaml(
        &format!("jwks_uri: {}/jwks", server.url()),
        "https://idp.test",
        "min_refresh_interval: 1m",
    );
    let gw = Arc::new(start(&config, clock.clone()).await.expect("starts"));
    let before = server.fetches();
    let mut tasks = Vec::new();
    for worker in 0..20 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            for i in 0..50 {
                let attacker =
                    SigningKey::generate(Algorithm::ES256, Some(format!("random-{worker}-{i}")))
                        .expect("key");
                let req = request("GET", &gw.url("/private"))
                    .header(
                        "authorization",
                        format!("Bearer {}", token(&attacker, "https://idp.test")),
                    )
                    .body(warden::body::empty())
                    .expect("request");
                assert_eq!(send(&client, req).await.status, 401);
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert!(
        server.fetches() - before <= 1,
        "{} fetches for 1,000 unknown kids",
        server.fetches() - before
    );
    // After the interval, one more refetch is allowed.
    clock.advance(Duration::from_secs(61));
    call(&gw, &token(&key("another"), "https://idp.test"))
        .await
        .assert_problem(401);
    assert!(server.fetches() - before <= 2);
}

#[tokio::test]
async fn stale_keys_serve_while_the_server_is_down_then_503() {
    let a = key("a");
    let server = KeyServer::start(&[&a]).await;
    let clock = Arc::new(ManualClock::starting_now());
    let config = yaml(
        &format!("jwks_uri: {}/jwks", server.url()),
        "https://idp.test",
        "default_ttl: 1m, min_ttl: 1m, stale_if_error: 1m",
    );
    let gw = start(&config, clock.clone()).await.expect("starts");
    let good = token(&a, "https://idp.test");
    assert_eq!(call(&gw, &good).await.status, 200);

    server.status.store(503, Ordering::SeqCst);
    clock.advance(Duration::from_secs(90));
    assert_eq!(
        call(&gw, &good).await.status,
        200,
        "last good keys serve within stale_if_error"
    );
    clock.advance(Duration::from_secs(40));
    let reply = call(&gw, &good).await;
    reply.assert_problem(503);
    assert!(
        reply.header("www-authenticate").is_none(),
        "503 is not a credential problem"
    );
    assert_eq!(get(&gw.admin_url("/readyz")).await.status, 503);
}

#[tokio::test]
async fn discovery_finds_the_keys_and_checks_the_issuer() {
    let a = key("a");
    let server = KeyServer::start(&[&a]).await;
    let issuer = server.url();
    let clock = Arc::new(ManualClock::starting_now());
    let gw = start(
        &yaml("discovery: true", &issuer, "startup_timeout: 5s"),
        clock.clone(),
    )
    .await
    .expect("starts");
    assert_eq!(call(&gw, &token(&a, &issuer)).await.status, 200);

    *server.discovery_issuer.lock().expect("lock") = Some("https://impostor.test".into());
    let err = start(
        &yaml("discovery: true", &issuer, "startup_timeout: 1s"),
        clock,
    )
    .await
    .err()
    .expect("refuses to start on a mismatched issuer");
    assert!(
        matches!(
            err,
            ServerError::Build(warden_gateway::runtime::BuildError::KeysUnavailable(..))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn startup_not_ready_waits_for_keys_without_blocking() {
    let a = key("a");
    let server = KeyServer::start(&[&a]).await;
    server.status.store(500, Ordering::SeqCst);
    let clock = Arc::new(ManualClock::starting_now());
    let config = yaml(
        &format!("jwks_uri: {}/jwks", server.url()),
        "https://idp.test",
        "startup: not_ready",
    );
    let gw = start(&config, clock).await.expect("starts without keys");
    assert_eq!(get(&gw.admin_url("/readyz")).await.status, 503);
    call(&gw, &token(&a, "https://idp.test"))
        .await
        .assert_problem(503);
    server.status.store(200, Ordering::SeqCst);
    for _ in 0..100 {
        if get(&gw.admin_url("/readyz")).await.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(&gw.admin_url("/readyz")).await.status,
        200,
        "keys arrived through the retry loop"
    );
    assert_eq!(call(&gw, &token(&a, "https://idp.test")).await.status, 200);
}

#[tokio::test]
async fn oversized_documents_and_cross_origin_redirects_are_refused() {
    let a = key("a");
    let server = KeyServer::start(&[&a]).await;
    let clock = Arc::new(ManualClock::starting_now());
    let big = yaml(
        &format!("jwks_uri: {}/big", server.url()),
        "https://idp.test",
        "max_bytes: 1KiB, startup_timeout: 1s",
    );
    assert!(matches!(
        start(&big, clock.clone()).await,
        Err(ServerError::Build(
            warden_gateway::runtime::BuildError::KeysUnavailable(..)
        ))
    ));

    let other = KeyServer::start(&[&a]).await;
    *server.redirect_to.lock().expect("lock") = Some(format!("{}/jwks", other.url()));
    let redirected = yaml(
        &format!("jwks_uri: {}/jwks", server.url()),
        "https://idp.test",
        "startup_timeout: 1s",
    );
    assert!(matches!(
        start(&redirected, clock).await,
        Err(ServerError::Build(
            warden_gateway::runtime::BuildError::KeysUnavailable(..)
        ))
    ));
    assert_eq!(other.fetches(), 0, "the redirect was not followed");
}

#[test]
fn plain_http_key_servers_are_refused_outside_development() {
    let config = yaml("jwks_uri: http://127.0.0.1:9/jwks", "https://idp.test", "")
        .replace("environment: development", "environment: production");
    let errors = config_for(&config, "http://127.0.0.1:1").expect_err("refused");
    assert!(
        errors.to_string().contains("auth.jwt[0].jwks_uri"),
        "{errors}"
    );
    let config = yaml(
        "jwks_uri: http://idp.example.com/jwks",
        "https://idp.test",
        "",
    );
    assert!(
        config_for(&config, "http://127.0.0.1:1").is_err(),
        "non-loopback http even in development"
    );
}

#[tokio::test]
async fn keys_refresh_in_the_background_per_max_age_within_the_clamp() {
    let (a, b) = (key("a"), key("b"));
    let server = KeyServer::start(&[&a]).await;
    // The server asks for a 1 s lifetime; min_ttl raises it to 2 s.
    *server.cache_control.lock().expect("lock") = Some("public, max-age=1".into());
    let clock = Arc::new(ManualClock::starting_now());
    let config = yaml(
        &format!("jwks_uri: {}/jwks", server.url()),
        "https://idp.test",
        "min_ttl: 2s, max_ttl: 1h, min_refresh_interval: 1h",
    );
    let gw = start(&config, clock).await.expect("starts");
    assert_eq!(server.fetches(), 1);
    server.set_keys(&[&a, &b]);
    // Within the clamped lifetime nothing is refetched...
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(server.fetches(), 1, "refetched before min_ttl");
    // ...after it, the background refresh picks up the new key without any unknown-kid trigger.
    let mut refreshed = false;
    for _ in 0..50 {
        if server.fetches() >= 2 {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refreshed, "no background refresh");
    assert_eq!(call(&gw, &token(&b, "https://idp.test")).await.status, 200);
    assert_eq!(server.fetches(), 2, "the new kid was already known");
}

#[tokio::test]
async fn a_key_server_outage_and_its_recovery_are_in_the_audit_trail() {
    let a = key("a");
    let server = KeyServer::start(&[&a]).await;
    *server.cache_control.lock().expect("lock") = Some("max-age=1".into());
    let trail = temp_dir("jwks-audit").join("audit.jsonl");
    let config = format!(
        "audit: {{ sink: \"file://{}\" }}\n{}",
        trail.display(),
        yaml(
            &format!("jwks_uri: {}/jwks", server.url()),
            "https://idp.test",
            "min_ttl: 1s, max_backoff: 1s, stale_if_error: 1h, min_refresh_interval: 1h",
        )
    );
    let gw = start(&config, Arc::new(ManualClock::starting_now()))
        .await
        .expect("starts");
    async fn fetches_seen(server: &KeyServer, at_least: u64) {
        for _ in 0..60 {
            if server.fetches() >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the refresher never fetched {at_least} times");
    }
    server.status.store(503, Ordering::SeqCst);
    // Two failed refreshes: one failure event (the outage), not one per attempt.
    fetches_seen(&server, 3).await;
    server.status.store(200, Ordering::SeqCst);
    fetches_seen(&server, 4).await;
    // The fetch was served; its result is recorded once the refresher has it.
    let sink = gw.gateway.audit_sink().expect("sink");
    for _ in 0..50 {
        sink.flush();
        if std::fs::read_to_string(&trail).is_ok_and(|t| t.contains("jwks-fetch-recovered")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let TestGateway { gateway, .. } = gw;
    gateway.shutdown().await;
    let events: Vec<Value> = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let of = |action: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e.pointer("/event/action") == Some(&json!(action)))
            .collect()
    };
    let failures = of("jwks-fetch-failure");
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0].pointer("/event/reason"),
        Some(&json!("jwks_bad_status"))
    );
    assert_eq!(
        failures[0].pointer("/warden/jwks/provider"),
        Some(&json!("idp"))
    );
    let recovered = of("jwks-fetch-recovered");
    assert_eq!(recovered.len(), 1);
    assert!(
        recovered[0]
            .pointer("/warden/jwks/failures")
            .and_then(Value::as_u64)
            .is_some_and(|n| n >= 2),
        "{:?}",
        recovered[0]
    );
}
