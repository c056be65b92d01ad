//! Graceful shutdown: stop accepting, finish every in-flight request.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn in_flight_requests_complete_and_new_connections_are_refused() {
    let gw = spawn(BASIC).await;
    let addr = gw.addr();
    let mut in_flight = Vec::new();
    for _ in 0..20 {
        let url = gw.url("/slow/800");
        in_flight.push(tokio::spawn(async move { get(&url).await.status.as_u16() }));
    }
    // Wait until every request reached the upstream, then shut down under them.
    for _ in 0..200 {
        if gw.upstream.requests().len() == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.upstream.requests().len(), 20);
    let TestGateway { gateway, .. } = gw;
    let shutdown = tokio::spawn(gateway.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener still accepts after shutdown began"
    );
    for request in in_flight {
        assert_eq!(
            request.await.expect("task"),
            200,
            "an in-flight request failed"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown finishes once requests drain")
        .expect("task");
}

#[tokio::test]
async fn the_grace_period_bounds_shutdown() {
    let yaml = format!(
        "server: {{ timeouts: {{ shutdown_grace: 1s, upstream_response: 30s, request: 30s }} }}\n{BASIC}"
    );
    let gw = spawn(&yaml).await;
    let url = gw.url("/slow/20000");
    let stuck = tokio::spawn(async move {
        let req = request("GET", &url)
            .body(warden::body::empty())
            .expect("request");
        client().request(req).await.map(|r| r.status())
    });
    for _ in 0..200 {
        if !gw.upstream.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), gw.gateway.shutdown())
        .await
        .expect("shutdown returns after the grace period");
    stuck.abort();
}
