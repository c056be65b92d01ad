//! The admin listener: liveness, readiness that tracks the upstream, Prometheus metrics.

use std::time::Duration;

use crate::common::*;

async fn wait_for_status(url: &str, status: u16) -> Reply {
    for _ in 0..100 {
        let reply = get(url).await;
        if reply.status.as_u16() == status {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered {status}");
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_upstream() {
    let gw = spawn(BASIC).await;
    assert_eq!(get(&gw.admin_url("/healthz")).await.status, 200);
    let ready = wait_for_status(&gw.admin_url("/readyz"), 200).await;
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(get(&gw.admin_url("/nope")).await.status, 404);
}

#[tokio::test]
async fn readyz_is_false_while_the_upstream_is_unreachable() {
    let dead_addr = dead_addr();
    let upstream = upstream().await;
    let config = config_for(BASIC, &format!("http://{dead_addr}")).expect("config");
    let gw = spawn_config(config, upstream).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&gw.admin_url("/readyz")).await.status, 503);
    assert_eq!(
        get(&gw.admin_url("/healthz")).await.status,
        200,
        "alive even when not ready"
    );
    // The upstream comes up on that address: the gateway becomes ready by itself.
    let _listener = tokio::net::TcpListener::bind(dead_addr)
        .await
        .expect("rebind");
    wait_for_status(&gw.admin_url("/readyz"), 200).await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_status_and_outcome() {
    let gw = spawn(BASIC).await;
    get(&gw.url("/items/1")).await;
    get(&gw.url("/definitely-unknown")).await;
    let metrics = get(&gw.admin_url("/metrics")).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    let has = |needles: &[&str]| {
        text.lines().any(|line| {
            line.starts_with("warden_requests_total") && needles.iter().all(|n| line.contains(n))
        })
    };
    assert!(
        has(&[
            "route=\"/items/{id}\"",
            "status=\"200\"",
            "outcome=\"forwarded\""
        ]),
        "{text}"
    );
    assert!(
        has(&[
            "route=\"unmatched\"",
            "status=\"404\"",
            "outcome=\"not_found\""
        ]),
        "{text}"
    );
    assert!(
        text.contains("warden_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("warden_open_connections"), "{text}");
}

#[tokio::test]
async fn the_admin_listener_is_not_reachable_through_the_public_one() {
    let gw = spawn(BASIC).await;
    get(&gw.url("/metrics")).await.assert_problem(404);
    get(&gw.url("/readyz")).await.assert_problem(404);
}
