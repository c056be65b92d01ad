//! Limits and timeouts: body limits on streamed bytes, header limits, slow clients, connections.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden::body;

fn chunked_body(chunks: usize, size: usize) -> warden::body::Body {
    let stream = futures_util::stream::unfold(0usize, move |i| async move {
        if i == chunks {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'x'; size]))),
            i + 1,
        ))
    });
    body::boxed(StreamBody::new(stream))
}

fn no_complete_body_over(upstream: &Upstream, limit: usize) {
    for seen in upstream.requests() {
        if let Ok(body) = &seen.body {
            assert!(
                body.len() <= limit,
                "the upstream received {} complete bytes",
                body.len()
            );
        }
    }
}

#[tokio::test]
async fn declared_length_over_the_route_limit_is_413_before_the_upstream() {
    let gw = spawn(BASIC).await;
    let reply = send(
        &client(),
        request("POST", &gw.url("/small"))
            .body(body::full(vec![b'x'; 2048]))
            .expect("request"),
    )
    .await;
    reply.assert_problem(413);
    assert!(gw.upstream.requests().is_empty());
}

#[tokio::test]
async fn chunked_bodies_are_cut_at_the_limit_and_never_forwarded_complete() {
    let gw = spawn(BASIC).await;
    let reply = send(
        &client(),
        request("POST", &gw.url("/small"))
            .body(chunked_body(8, 300))
            .expect("request"),
    )
    .await;
    reply.assert_problem(413);
    no_complete_body_over(&gw.upstream, 1024);

    // Exactly at the limit passes.
    let reply = send(
        &client(),
        request("POST", &gw.url("/small"))
            .body(chunked_body(4, 256))
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 1024);
}

#[tokio::test]
async fn http2_bodies_without_length_are_cut_at_the_limit() {
    let gw = spawn(BASIC).await;
    let reply = send(
        &h2_client(),
        request("POST", &gw.url("/small"))
            .body(chunked_body(8, 300))
            .expect("request"),
    )
    .await;
    reply.assert_problem(413);
    no_complete_body_over(&gw.upstream, 1024);
}

#[tokio::test]
async fn the_global_body_limit_applies_when_a_route_sets_none() {
    let yaml = format!("server: {{ limits: {{ max_request_bytes: 2KiB }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let reply = send(
        &client(),
        request("POST", &gw.url("/echo"))
            .body(chunked_body(10, 500))
            .expect("request"),
    )
    .await;
    reply.assert_problem(413);
    no_complete_body_over(&gw.upstream, 2048);
}

#[tokio::test]
async fn raw_chunked_smuggling_shapes_are_framed_once() {
    let gw = spawn(BASIC).await;
    // Content-Length and Transfer-Encoding together: chunked wins, Content-Length is dropped,
    // and the upstream gets exactly the chunked body (no second request hides in the bytes).
    let reply = raw(
        gw.addr(),
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: gw\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&reply), 200, "{reply}");
    let requests = gw.upstream.requests();
    assert_eq!(
        requests.len(),
        1,
        "exactly one request reached the upstream"
    );
    assert_eq!(
        requests[0].body.as_ref().expect("body"),
        &Bytes::from("hello")
    );
    let length = requests[0]
        .headers
        .get("content-length")
        .map(|v| v.to_str().expect("ascii").to_owned());
    assert!(
        length.is_none() || length.as_deref() == Some("5"),
        "{length:?}"
    );
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431() {
    let yaml =
        format!("server: {{ limits: {{ max_headers: 20, max_header_bytes: 2KiB }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let mut builder = request("GET", &gw.url("/echo"));
    for i in 0..30 {
        builder = builder.header(format!("x-h{i}"), "v");
    }
    send(&client(), builder.body(body::empty()).expect("request"))
        .await
        .assert_problem(431);

    let reply = send(
        &client(),
        request("GET", &gw.url("/echo"))
            .header("x-big", "v".repeat(3000))
            .body(body::empty())
            .expect("request"),
    )
    .await;
    reply.assert_problem(431);

    // Far beyond the limit the HTTP parser refuses before any layer runs.
    let huge = format!(
        "GET /echo HTTP/1.1\r\nHost: gw\r\nX-Huge: {}\r\n\r\n",
        "v".repeat(200_000)
    );
    let reply = raw(gw.addr(), huge.as_bytes()).await;
    assert_eq!(raw_status(&reply), 431, "{reply}");
    assert!(gw.upstream.requests().is_empty());
    assert_eq!(get(&gw.url("/echo")).await.status, 200);
}

#[tokio::test]
async fn a_slow_headers_client_is_disconnected_and_others_are_served() {
    let yaml = format!("server: {{ timeouts: {{ header_read: 1s }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let mut slow = TcpStream::connect(gw.addr()).await.expect("connect");
    slow.write_all(b"GET /echo HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        .await
        .expect("write");
    // Meanwhile everyone else is served.
    assert_eq!(get(&gw.url("/echo")).await.status, 200);
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the slow client was not disconnected");
    assert!(gw.upstream.requests().len() == 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let yaml = format!("server: {{ limits: {{ max_connections: 2 }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let request_bytes = b"GET /echo HTTP/1.1\r\nHost: gw\r\n\r\n";
    let mut first = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut second = TcpStream::connect(gw.addr()).await.expect("connect");
    for conn in [&mut first, &mut second] {
        conn.write_all(request_bytes).await.expect("write");
        let mut buf = [0u8; 1024];
        let n = conn.read(&mut buf).await.expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    let mut third = TcpStream::connect(gw.addr())
        .await
        .expect("kernel accepts into the backlog");
    third.write_all(request_bytes).await.expect("write");
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served while two were open"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}
