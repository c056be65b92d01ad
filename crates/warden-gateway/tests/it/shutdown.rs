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

/// One keep-alive HTTP/1.1 connection sending requests back to back until the gateway closes
/// it: `(answered, failed)`. A connection the gateway announced it would close (`Connection:
/// close` on its last response) ends cleanly; a request lost on a connection closed under it
/// is a failure.
async fn keep_alive_client(
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u32, u32) {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let (mut answered, mut failed) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if sender.ready().await.is_err() {
            break;
        }
        let req = http::Request::get("/echo")
            .header("host", "gateway")
            .body(warden::body::empty())
            .expect("request");
        match sender.send_request(req).await {
            Ok(response) => {
                let closing = response
                    .headers()
                    .get("connection")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                if response.status() == 200 && response.into_body().collect().await.is_ok() {
                    answered += 1;
                } else {
                    failed += 1;
                }
                if closing {
                    break;
                }
            }
            Err(_) => {
                failed += 1;
                break;
            }
        }
    }
    (answered, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_clients_lose_no_request_to_a_shutdown() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let gw = spawn(BASIC).await;
    let addr = gw.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(tokio::spawn(keep_alive_client(addr, stop.clone())));
    }
    // An idle keep-alive connection too: it is closed, but never while a request is on it.
    let idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let TestGateway { gateway, .. } = gw;
    tokio::time::timeout(Duration::from_secs(10), gateway.shutdown())
        .await
        .expect("shutdown finishes");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut answered, mut failed) = (0, 0);
    for client in clients {
        let (a, f) = client.await.expect("client");
        answered += a;
        failed += f;
    }
    drop(idle);
    assert!(answered > 100, "{answered} answered");
    assert_eq!(
        failed, 0,
        "{failed} request(s) failed on connections the gateway closed ({answered} answered)"
    );
}

/// [`keep_alive_client`] over HTTP/2 (prior knowledge): the gateway's GOAWAY ends it cleanly.
async fn h2_client_load(
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u32, u32) {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("handshake");
    tokio::spawn(connection);
    let (mut answered, mut failed) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if sender.ready().await.is_err() {
            break;
        }
        let req = http::Request::get("http://gateway/echo")
            .body(warden::body::empty())
            .expect("request");
        match sender.send_request(req).await {
            Ok(response) if response.status() == 200 => {
                if response.into_body().collect().await.is_ok() {
                    answered += 1;
                } else {
                    failed += 1;
                }
            }
            Ok(_) => failed += 1,
            // A stream the server refused after its GOAWAY was never processed (hyper reports
            // it as canceled, or as the GOAWAY itself when the stream was opened as it
            // arrived: a graceful NO_ERROR GOAWAY covers only streams above its last stream id,
            // RFC 9113 §6.8): clients retry it on a new connection. Anything else is a loss.
            Err(error) if error.is_canceled() => break,
            Err(error) if format!("{error:?}").contains("GoAway(b\"\", NO_ERROR, Remote)") => break,
            Err(error) => {
                eprintln!("lost: {error:?}");
                failed += 1;
                break;
            }
        }
    }
    (answered, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_get_a_goaway_and_lose_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let gw = spawn(BASIC).await;
    let addr = gw.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| tokio::spawn(h2_client_load(addr, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let TestGateway { gateway, .. } = gw;
    tokio::time::timeout(Duration::from_secs(10), gateway.shutdown())
        .await
        .expect("shutdown finishes");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut answered, mut failed) = (0, 0);
    for client in clients {
        let (a, f) = client.await.expect("client");
        answered += a;
        failed += f;
    }
    assert!(answered > 50, "{answered} answered");
    assert_eq!(failed, 0, "{failed} failed ({answered} answered)");
}
