//! Rate limits shared through a real `redis-server`, through real sockets: the server stopped
//! and restarted mid-test under each `on_store_error`, three gateway instances sharing one quota
//! under 2,000 concurrent requests, and the store's configuration errors.

use std::time::{Duration, Instant};

use crate::common::redis_server::RedisServer;
use crate::common::*;

fn yaml(redis_url: &str, on_error: &str) -> String {
    format!(
        r#"
rate_limits:
  store: {redis_url}
  on_store_error: {on_error}
  redis:
    timeout: 200ms
    connect_timeout: 200ms
    breaker: {{ failures: 2, open_for: 100ms, max_open_for: 200ms }}
routes:
  - {{ path: /limited, auth: none, rate_limit: {{ limit: 3, per: 1h, key: ip }} }}
"#
    )
}

async fn status(gw: &TestGateway) -> Reply {
    get(&gw.url("/limited")).await
}

/// Requests until one is answered 200 (the breaker probes and closes), within a deadline.
async fn until_served(gw: &TestGateway) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if status(gw).await.status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "the gateway never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn warden_keys(server: &RedisServer) -> usize {
    let reply = server.command(&["KEYS", "warden:rl:*"]).expect("keys");
    reply
        .lines()
        .filter(|l| l.starts_with("warden:rl:"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_503_while_redis_is_down_and_recovers() {
    let mut redis = RedisServer::start();
    let gw = spawn(&yaml(&redis.url(), "fail_closed")).await;
    assert_eq!(status(&gw).await.status, 200);
    assert_eq!(warden_keys(&redis), 1, "the decision was made in Redis");

    redis.stop();
    for _ in 0..6 {
        status(&gw).await.assert_problem(503);
    }
    let metrics = get(&gw.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("warden_ratelimit_breaker_transitions_total{store=\"redis\",to=\"open\"}"),
        "{metrics}"
    );

    redis.restart();
    until_served(&gw).await;
    // The restarted server lost its state: the quota counts afresh there.
    assert_eq!(warden_keys(&redis), 1);
    assert_eq!(status(&gw).await.status, 200);
    assert_eq!(status(&gw).await.status, 200);
    status(&gw).await.assert_problem(429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_serves_unlimited_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let gw = spawn(&yaml(&redis.url(), "fail_open")).await;
    for _ in 0..2 {
        assert_eq!(status(&gw).await.status, 200);
    }

    redis.stop();
    for _ in 0..6 {
        let reply = status(&gw).await;
        assert_eq!(
            reply.status, 200,
            "fail open: no limit while the store is down (the limit is 3)"
        );
        assert!(reply.header("ratelimit").is_none(), "no quota to report");
    }

    redis.restart();
    // Fresh server state: three more, then the limit holds again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while warden_keys(&redis) == 0 {
        assert!(Instant::now() < deadline, "Redis never decided again");
        assert_eq!(status(&gw).await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut refused = false;
    for _ in 0..4 {
        refused |= status(&gw).await.status == 429;
    }
    assert!(refused, "the shared limit is enforced again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_keeps_limiting_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let gw = spawn(&yaml(&redis.url(), "local")).await;
    assert_eq!(status(&gw).await.status, 200);
    assert_eq!(warden_keys(&redis), 1);

    redis.stop();
    // The in-process limiter takes over with its own count: three pass, the fourth is refused.
    for _ in 0..3 {
        assert_eq!(status(&gw).await.status, 200);
    }
    let refused = status(&gw).await;
    refused.assert_problem(429);
    assert!(refused.header("retry-after").is_some());
    let metrics = get(&gw.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("warden_ratelimit_local_fallback_total"),
        "{metrics}"
    );

    redis.restart();
    // Back on Redis (fresh state there): requests pass again and are counted in Redis.
    until_served(&gw).await;
    assert_eq!(warden_keys(&redis), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_sharing_redis_admit_exactly_the_limit() {
    let redis = RedisServer::start();
    let config = format!(
        r#"
rate_limits:
  store: {}
  redis: {{ timeout: 2s, connect_timeout: 2s }}
routes:
  - {{ path: /shared, auth: none, rate_limit: {{ limit: 100, per: 1h, key: route }} }}
  - {{ path: /warm, auth: none, rate_limit: {{ limit: 10, per: 1h, key: route }} }}
"#,
        redis.url()
    );
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let gw = spawn(&config).await;
        // Each gateway's Redis connection is opened lazily: open it before the burst, so the
        // burst measures the shared quota, not 2,000 requests racing one connect on a busy
        // machine (which can trip the breaker and answer 503).
        assert_eq!(get(&gw.url("/warm")).await.status, 200);
        gateways.push(gw);
    }
    let urls: Vec<String> = gateways.iter().map(|g| g.url("/shared")).collect();
    let clients: Vec<_> = (0..3).map(|_| client()).collect();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(2000));
    let tasks: Vec<_> = (0..2000)
        .map(|i| {
            let client = clients[i % 3].clone();
            let url = urls[i % 3].clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let req = request("GET", &url)
                    .body(warden::body::empty())
                    .expect("request");
                send(&client, req).await.status.as_u16()
            })
        })
        .collect();
    let mut admitted = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.expect("task") {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted, 100, "one quota across three instances");
    assert_eq!(limited, 1900);
    let served: usize = gateways.iter().map(|g| g.upstream.requests().len()).sum();
    assert_eq!(
        served, 103,
        "only admitted requests (and the warm-ups) reached an upstream"
    );
}

#[test]
fn store_configuration_errors_are_precise_and_never_echo_credentials() {
    let bad = |yaml: &str, env: &[(&str, &str)]| -> String {
        match config_with_env(yaml, "http://127.0.0.1:9", env) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => e.to_string(),
        }
    };
    let routes = "routes: [{ path: /x, auth: none }]\n";
    let e = bad(
        &format!("rate_limits: {{ store: memcached://cache:11211 }}\n{routes}"),
        &[],
    );
    assert!(
        e.contains("rate_limits.store") && e.contains("redis://"),
        "{e}"
    );
    let e = bad(
        &format!("rate_limits: {{ store: \"${{env:REDIS_URL}}\" }}\n{routes}"),
        &[("REDIS_URL", "http://user:hunter2-secret@cache:6379")],
    );
    assert!(
        e.contains("rate_limits.store") && !e.contains("hunter2"),
        "{e}"
    );
    let e = bad(
        &format!(
            "rate_limits: {{ store: \"redis://user:hunter2-secret@cache:notaport\" }}\n{routes}"
        ),
        &[],
    );
    assert!(
        e.contains("invalid Redis URL") && !e.contains("hunter2"),
        "{e}"
    );
    let e = bad(
        &format!("rate_limits: {{ redis: {{ timeout: 1s }} }}\n{routes}"),
        &[],
    );
    assert!(e.contains("rate_limits.redis"), "{e}");
    let e = bad(
        &format!(
            "rate_limits: {{ store: redis://127.0.0.1:6379, on_store_error: retry, redis: {{ breaker: {{ failures: 0 }} }} }}\n{routes}"
        ),
        &[],
    );
    assert!(
        e.contains("rate_limits.on_store_error") && e.contains("local"),
        "{e}"
    );
    assert!(e.contains("rate_limits.redis.breaker.failures"), "{e}");
    config_with_env(
        &format!(
            "rate_limits: {{ store: \"rediss://default:pw@cache.internal:6380/2\", on_store_error: local }}\n{routes}"
        ),
        "http://127.0.0.1:9",
        &[],
    )
    .expect("a TLS Redis URL with credentials and a database is valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_and_a_client_certificate() {
    let dir = temp_dir("redis-tls");
    let redis = RedisServer::start_tls(&dir);
    let url = format!("rediss://127.0.0.1:{}", redis.addr.port());
    let config = |tls: &str| {
        format!(
            r#"
rate_limits:
  store: {url}
  redis: {{ timeout: 1s, connect_timeout: 1s, tls: {tls} }}
routes:
  - {{ path: /limited, auth: none, rate_limit: {{ limit: 2, per: 1h, key: ip }} }}
"#
        )
    };
    let d = dir.display();
    let gw = spawn(&config(&format!(
        "{{ ca_file: {d}/ca.crt, cert_file: {d}/client.crt, key_file: {d}/client.key }}"
    )))
    .await;
    assert_eq!(status(&gw).await.status, 200);
    assert_eq!(status(&gw).await.status, 200);
    status(&gw).await.assert_problem(429);

    // Without the client certificate the server refuses the handshake: fail closed.
    let gw = spawn(&config(&format!("{{ ca_file: {d}/ca.crt }}"))).await;
    status(&gw).await.assert_problem(503);
    // Without the private CA the server's certificate is not trusted: fail closed.
    let gw = spawn(&config(&format!(
        "{{ cert_file: {d}/client.crt, key_file: {d}/client.key }}"
    )))
    .await;
    status(&gw).await.assert_problem(503);

    // Configuration mistakes are caught before start.
    let e = config_for(
        &config(&format!("{{ cert_file: {d}/client.crt }}")),
        "http://127.0.0.1:9",
    )
    .expect_err("cert without key");
    assert!(e.to_string().contains("key_file"), "{e}");
    let e = config_for(
        &config(&format!("{{ ca_file: {d}/client.ext }}")),
        "http://127.0.0.1:9",
    )
    .expect_err("not PEM");
    assert!(e.to_string().contains("not a PEM file"), "{e}");
}
