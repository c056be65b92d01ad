//! Reverse proxy behaviour through real sockets: forwarding, streaming, headers, failures.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use warden::body;

#[tokio::test]
async fn forwards_method_path_query_and_body_and_relays_the_response() {
    let gw = spawn(BASIC).await;
    let reply = send(
        &client(),
        request("POST", &gw.url("/echo?q=1&x=%2F"))
            .header("content-type", "application/json")
            .body(body::full("{\"input\":\"hello\"}"))
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 17);
    let seen = gw.upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/echo?q=1&x=%2F");
    assert_eq!(
        seen.body.expect("complete body"),
        Bytes::from("{\"input\":\"hello\"}")
    );
}

#[tokio::test]
async fn upstream_base_path_is_prepended_to_the_canonical_path() {
    let upstream = upstream().await;
    let config = config_for(BASIC, &format!("{}/base/", upstream.url())).expect("config");
    let gw = spawn_config(config, upstream).await;
    let reply = get(&gw.url("/items//7/./")).await;
    // `/items//7/./` canonicalizes to `/items/7/`, which is not the `/items/{id}` template.
    assert_eq!(reply.status, 404);
    let reply = get(&gw.url("/items//7")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(gw.upstream.last().uri, "/base/items/7");
}

#[tokio::test]
async fn http2_cleartext_clients_are_served_and_forwarded_as_http1() {
    let gw = spawn(BASIC).await;
    let reply = send(
        &h2_client(),
        request("POST", &gw.url("/echo"))
            .body(body::full("h2 body"))
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = gw.upstream.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.body.expect("body"), Bytes::from("h2 body"));
    assert_eq!(seen.headers["x-forwarded-host"], gw.addr().to_string());
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream_without_content_length() {
    let gw = spawn(BASIC).await;
    let chunks = (0..64).map(|i| {
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![
            b'a' + (i % 26) as u8;
            1000
        ])))
    });
    let stream = StreamBody::new(futures_util::stream::iter(chunks));
    let reply = send(
        &client(),
        request("POST", &gw.url("/echo"))
            .body(body::boxed(stream))
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 64_000);
}

#[tokio::test]
async fn server_sent_events_reach_the_client_while_the_upstream_is_still_sending() {
    let gw = spawn(BASIC).await;
    let response = client()
        .request(
            request("GET", &gw.url("/sse"))
                .body(body::empty())
                .expect("request"),
        )
        .await
        .expect("response head");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut incoming = response.into_body();
    // The upstream does not send its second event until the gate opens, so the first event
    // can only arrive here if the gateway relays frames as they come.
    let first = tokio::time::timeout(Duration::from_secs(10), incoming.frame())
        .await
        .expect("first event before the upstream finished")
        .expect("a frame")
        .expect("no error");
    assert_eq!(
        first.into_data().expect("data"),
        Bytes::from("data: first\n\n")
    );
    gw.upstream.sse_gate.notify_one();
    let rest = incoming.collect().await.expect("rest").to_bytes();
    assert_eq!(rest, Bytes::from("data: second\n\n"));
}

#[tokio::test]
async fn forwarding_headers_are_set_by_the_gateway_not_the_client() {
    let gw = spawn(BASIC).await;
    send(
        &client(),
        request("GET", &gw.url("/echo"))
            .header("x-forwarded-for", "1.2.3.4")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .header("forwarded", "for=1.2.3.4;proto=https")
            .body(body::empty())
            .expect("request"),
    )
    .await;
    let seen = gw.upstream.last();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], gw.addr().to_string());
    assert!(seen.headers.get("forwarded").is_none());
    assert_eq!(seen.headers["host"], gw.upstream.addr.to_string());
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_removed_but_never_gateway_headers() {
    let gw = spawn(BASIC).await;
    let reply = raw(
        gw.addr(),
        b"GET /echo HTTP/1.1\r\nHost: gw\r\nConnection: close, x-request-id, x-forwarded-for, x-client-private\r\n\
          X-Client-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\n\
          Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Request-Id: keep-me-1\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&reply), 200, "{reply}");
    let seen = gw.upstream.last();
    for gone in [
        "x-client-private",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(seen.headers.get(gone).is_none(), "{gone} was forwarded");
    }
    assert_eq!(seen.headers["x-request-id"], "keep-me-1");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn upstream_hop_by_hop_headers_do_not_reach_the_client() {
    let gw = spawn(BASIC).await;
    let reply = get(&gw.url("/hop")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("x-upstream-private").is_none());
    assert!(reply.header("keep-alive").is_none());
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_replaced_otherwise() {
    let gw = spawn(BASIC).await;
    let reply = send(
        &client(),
        request("GET", &gw.url("/echo"))
            .header("x-request-id", "trace-abc_123")
            .body(body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.header("x-request-id"), Some("trace-abc_123"));
    assert_eq!(gw.upstream.last().headers["x-request-id"], "trace-abc_123");

    let reply = send(
        &client(),
        request("GET", &gw.url("/echo"))
            .header("x-request-id", "bad id with spaces; and <html>")
            .body(body::empty())
            .expect("request"),
    )
    .await;
    let id = reply
        .header("x-request-id")
        .expect("generated id")
        .to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(gw.upstream.last().headers["x-request-id"], id.as_str());
    let reply = get(&gw.url("/echo")).await;
    assert!(
        reply
            .header("x-request-id")
            .is_some_and(|other| other != id)
    );
}

#[tokio::test]
async fn upstream_refusing_connections_is_502_without_detail() {
    let dead_addr = dead_addr();
    let upstream = upstream().await;
    let config = config_for(BASIC, &format!("http://{dead_addr}")).expect("config");
    let gw = spawn_config(config, upstream).await;
    let reply = get(&gw.url("/echo")).await;
    reply.assert_problem(502);
    let text = reply.text();
    assert!(
        !text.contains("127.0.0.3") && !text.contains("refused"),
        "{text}"
    );
}

#[tokio::test]
async fn slow_upstream_response_is_504() {
    let yaml = format!("server: {{ timeouts: {{ upstream_response: 1s }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let reply = get(&gw.url("/slow/3000")).await;
    reply.assert_problem(504);
}

#[tokio::test]
async fn overall_request_timeout_is_504() {
    let yaml =
        format!("server: {{ timeouts: {{ request: 1s, upstream_response: 10s }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let reply = get(&gw.url("/slow/3000")).await;
    reply.assert_problem(504);
    assert_eq!(reply.json()["type"], "urn:warden:problem:request-timeout");
}

#[tokio::test]
async fn upstream_error_statuses_pass_through_unchanged() {
    let gw = spawn(BASIC).await;
    let reply = get(&gw.url("/status/503")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.text(), "upstream body");
}

#[tokio::test]
async fn absolute_form_request_targets_are_routed_by_path_only() {
    let gw = spawn(BASIC).await;
    let reply = raw(
        gw.addr(),
        b"GET http://evil.example/echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&reply), 200, "{reply}");
    let seen = gw.upstream.last();
    assert_eq!(seen.uri, "/echo");
    assert_eq!(seen.headers["host"], gw.upstream.addr.to_string());
}
