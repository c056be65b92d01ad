//! Regression tests for the external attack review, each through real sockets: silent and idle
//! connections, client-IP spoofing through a header the proxy does not write, upstream fan-out,
//! slow and broken bodies, double encoding, rewrite headers, Host, transfer codings, HTTP/2
//! field rules, OPTIONS outside preflights, credentials on public routes, merged rate-limit
//! headers and hostile configuration files.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden::body::{self, Body};

/// Reads until the peer closes; `true` when it did within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn get_raw(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

// === 1. connections that send nothing ===

#[tokio::test]
async fn silent_connections_are_closed_and_a_real_client_is_served_past_them() {
    let yaml = format!(
        "server: {{ limits: {{ max_connections: 20 }}, timeouts: {{ header_read: 10s }} }}\n{BASIC}"
    );
    let gw = spawn(&yaml).await;
    // More silent sockets than max_connections: half say nothing, half a preface prefix.
    let mut silent = Vec::new();
    for i in 0..40 {
        let mut stream = TcpStream::connect(gw.addr()).await.expect("connect");
        if i % 2 == 1 {
            stream.write_all(b"P").await.expect("write");
        }
        silent.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(20), async {
        raw(gw.addr(), &get_raw("/echo", "gw.test")).await
    })
    .await
    .expect("the real client is served while silent sockets wait");
    assert_eq!(raw_status(&reply), 200, "{reply}");
    // Shed under pressure (1 s each near the cap), long before header_read (10 s) ran out.
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    // Every silent socket is closed without an answer.
    for stream in &mut silent {
        assert!(closed_within(stream, Duration::from_secs(10)).await);
    }
    assert!(gw.upstream.requests().len() == 1);
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_header_read_from_accept() {
    let yaml = format!("server: {{ timeouts: {{ header_read: 1s }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let mut stream = TcpStream::connect(gw.addr()).await.expect("connect");
    let started = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A partial HTTP/2 preface too.
    let mut stream = TcpStream::connect(gw.addr()).await.expect("connect");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
}

async fn h2_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Body>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

fn h2_get(addr: SocketAddr, path: &str) -> Request<Body> {
    Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(body::empty())
        .expect("request")
}

#[tokio::test]
async fn http2_connections_without_streams_close_after_idle() {
    let yaml = format!("server: {{ timeouts: {{ header_read: 1s, idle: 1s }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    // Opens no stream at all: closed from accept.
    let (_send, task) = h2_connection(gw.addr()).await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("a connection that opens no stream is closed")
        .expect("join");
    // One request, then nothing (PINGs are answered by the client's h2 stack meanwhile).
    let (mut send, task) = h2_connection(gw.addr()).await;
    let response = send
        .send_request(h2_get(gw.addr(), "/echo"))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .expect("join");
}

#[tokio::test]
async fn busy_connections_are_drained_at_max_connection_age() {
    let yaml = format!("server: {{ timeouts: {{ max_connection_age: 1s }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let (mut send, task) = h2_connection(gw.addr()).await;
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(5) && !task.is_finished() {
        if send.ready().await.is_err() {
            break;
        }
        match send.send_request(h2_get(gw.addr(), "/echo")).await {
            Ok(response) => {
                assert_eq!(response.status(), 200);
                served += 1;
            }
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("drained after max_connection_age")
        .expect("join");
    assert!(served >= 3, "served {served}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_per_address_connection_cap_refuses_the_extra_connection() {
    let yaml = format!("server: {{ limits: {{ max_connections_per_ip: 2 }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let _a = TcpStream::connect(gw.addr()).await.expect("connect");
    let _b = TcpStream::connect(gw.addr()).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = TcpStream::connect(gw.addr()).await.expect("connect");
    c.write_all(&get_raw("/echo", "gw.test")).await.ok();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "the third connection got an answer");
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        raw_status(&raw(gw.addr(), &get_raw("/echo", "gw.test")).await),
        200
    );
}

// === 2. client IP from the one configured header ===

#[tokio::test]
async fn a_header_the_proxy_does_not_write_is_never_believed() {
    let yaml = format!(
        "server: {{ trusted_proxies: [127.0.0.1] }}\nrate_limits: {{ pre_auth: {{ limit: 2, per: 1m, key: ip }} }}\n{BASIC}"
    );
    let gw = spawn(&yaml).await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let reply = send(
            &client(),
            request("GET", &gw.url("/echo"))
                .header("forwarded", format!("for=198.51.100.{i}"))
                .header("x-forwarded-proto", "https")
                .body(body::empty())
                .expect("request"),
        )
        .await;
        statuses.push(reply.status.as_u16());
    }
    // A fresh Forwarded per request buys no fresh bucket.
    assert_eq!(statuses, vec![200, 200, 429]);
    let seen = gw.upstream.last();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    // Nor is X-Forwarded-Proto, unless configured.
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn forwarded_and_fixed_hops_work_when_chosen() {
    let yaml = format!(
        "server: {{ trusted_proxies: [127.0.0.1], client_ip_header: forwarded, trust_forwarded_proto: true }}\n{BASIC}"
    );
    let gw = spawn(&yaml).await;
    let reply = send(
        &client(),
        request("GET", &gw.url("/echo"))
            .header("forwarded", "for=203.0.113.5")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .body(body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = gw.upstream.last();
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.5, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");

    let yaml = format!("server: {{ trusted_proxies: [0.0.0.0/0], trusted_hops: 1 }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    send(
        &client(),
        request("GET", &gw.url("/echo"))
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.8")
            .body(body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(
        gw.upstream.last().headers["x-forwarded-for"],
        "203.0.113.8, 127.0.0.1"
    );
}

// === 3. fan-out toward the upstream, requests in flight ===

/// An upstream that counts its open TCP connections and answers after `delay`.
async fn counting_upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (o, p) = (open.clone(), peak.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(Response::new(body::full("ok")))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open, peak)
}

#[tokio::test]
async fn http2_fan_out_is_bounded_by_the_upstream_limits() {
    let (addr, _open, peak) = counting_upstream(Duration::from_millis(300)).await;
    let yaml =
        "upstream: { max_connections: 10, max_pending: 5 }\nroutes: [{ path: /x, auth: none }]\n";
    let config = config_for(yaml, &format!("http://{addr}")).expect("config");
    let gw = spawn_config(config, upstream().await).await;
    let h2 = h2_client();
    let mut calls = Vec::new();
    for _ in 0..4 {
        // Several client connections, many streams each.
        for _ in 0..25 {
            let h2 = h2.clone();
            let url = gw.url("/x");
            calls.push(tokio::spawn(async move {
                send(&h2, request("GET", &url).body(body::empty()).expect("r")).await
            }));
        }
    }
    let mut ok = 0;
    let mut shed = 0;
    for call in calls {
        let reply = call.await.expect("join");
        match reply.status.as_u16() {
            200 => ok += 1,
            503 => {
                reply.assert_problem(503);
                shed += 1
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 10,
        "{} upstream connections",
        peak.load(Ordering::SeqCst)
    );
    assert!(ok >= 10, "ok {ok}");
    assert!(shed >= 50, "shed {shed}");
    assert_eq!(ok + shed, 100);
}

#[tokio::test]
async fn requests_in_flight_beyond_max_requests_are_shed_with_503() {
    let yaml = format!("server: {{ limits: {{ max_requests: 4 }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let h2 = h2_client();
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let h2 = h2.clone();
            let url = gw.url("/slow/400");
            tokio::spawn(async move {
                send(&h2, request("GET", &url).body(body::empty()).expect("r")).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        let reply = call.await.expect("join");
        if reply.status == 503 {
            reply.assert_problem(503);
        }
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 8);
    // Capacity returns once they finish.
    assert_eq!(get(&gw.url("/echo")).await.status, 200);
}

// === 4. and 8. slow and broken bodies ===

#[tokio::test]
async fn a_body_that_pauses_past_body_read_is_408_and_never_reaches_the_upstream() {
    let yaml = format!("server: {{ timeouts: {{ body_read: 1s }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let mut stream = TcpStream::connect(gw.addr()).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 10\r\n\r\nab")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(raw_status(&text), 408, "{text}");
    assert!(text.contains("application/problem+json"));
    assert!(gw.upstream.requests().is_empty());
}

#[tokio::test]
async fn small_bodies_are_read_whole_before_the_upstream_sees_the_request() {
    let gw = spawn(BASIC).await;
    let mut stream = TcpStream::connect(gw.addr()).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 6\r\nConnection: close\r\n\r\nabc")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Half a body: no upstream request (and so no upstream connection) yet.
    assert!(gw.upstream.requests().is_empty());
    stream.write_all(b"def").await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert_eq!(raw_status(&String::from_utf8_lossy(&out)), 200);
    assert_eq!(
        gw.upstream.last().body.as_deref().ok(),
        Some(&b"abcdef"[..])
    );
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault_400() {
    let gw = spawn(BASIC).await;
    for body in ["zz\r\nhello\r\n0\r\n\r\n", "5\r\nhelloXX0\r\n\r\n"] {
        let request = format!(
            "POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
        );
        let reply = raw(gw.addr(), request.as_bytes()).await;
        assert_eq!(raw_status(&reply), 400, "{body:?}: {reply}");
    }
    // Streamed (past the buffer) too.
    let yaml = format!("upstream: {{ request_buffer: 0 }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let request = "POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\nzz\r\n";
    assert_eq!(raw_status(&raw(gw.addr(), request.as_bytes()).await), 400);
}

// === 5. double encoding ===

#[tokio::test]
async fn double_encoding_through_encoded_hex_digits_is_refused() {
    let gw = spawn(BASIC).await;
    for path in [
        "/files/a%25%32%66b",
        "/files/%25%32%65%25%32%65/admin",
        "/files/a%25%35%63b",
        "/files/a%25%30%30",
        "/files/a%25%32fb",
    ] {
        let reply = raw(gw.addr(), &get_raw(path, "gw.test")).await;
        assert_eq!(raw_status(&reply), 400, "{path}");
    }
    // Characters not allowed raw in a path reach the upstream escaped, however sent.
    let reply = raw(gw.addr(), &get_raw("/files/a\"b{c}|", "gw.test")).await;
    assert_eq!(raw_status(&reply), 200, "{reply}");
    assert_eq!(gw.upstream.last().uri, "/files/a%22b%7Bc%7D%7C");
    assert_eq!(gw.upstream.requests().len(), 1);
}

// === 6. rewrite and client-address headers ===

#[tokio::test]
async fn rewrite_and_client_address_headers_never_reach_the_upstream() {
    let gw = spawn(BASIC).await;
    let mut builder = request("GET", &gw.url("/echo"));
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x_original_url",
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "cf-connecting-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x_forwarded_prefix",
        "x-forwarded-server",
    ] {
        builder = builder.header(name, "/admin");
    }
    let reply = send(&client(), builder.body(body::empty()).expect("r")).await;
    assert_eq!(reply.status, 200);
    let seen = gw.upstream.last().headers;
    let leaked: Vec<_> = seen
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| {
            k.contains("original")
                || k.contains("rewrite")
                || k.contains("real")
                || k.contains("client")
                || k.contains("connecting")
                || (k.starts_with("x-forwarded") || k.starts_with("x_forwarded"))
                    && !["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
                        .contains(&k.as_str())
        })
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    // A configured list replaces the default.
    let yaml = format!("upstream: {{ strip_headers: [x-internal-*] }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let reply = send(
        &client(),
        request("GET", &gw.url("/echo"))
            .header("x-internal-role", "admin")
            .header("x-real-ip", "1.2.3.4")
            .body(body::empty())
            .expect("r"),
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = gw.upstream.last().headers;
    assert!(seen.get("x-internal-role").is_none());
    assert_eq!(seen["x-real-ip"], "1.2.3.4");
}

// === 7. Host ===

#[tokio::test]
async fn hosts_are_validated_per_rfc_9112() {
    let gw = spawn(BASIC).await;
    for (what, head) in [
        ("missing", "GET /echo HTTP/1.1\r\n"),
        ("two", "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n"),
        ("slash", "GET /echo HTTP/1.1\r\nHost: a/admin\r\n"),
        ("space", "GET /echo HTTP/1.1\r\nHost: a b\r\n"),
        ("userinfo", "GET /echo HTTP/1.1\r\nHost: user@evil\r\n"),
        ("bad port", "GET /echo HTTP/1.1\r\nHost: a:99999\r\n"),
    ] {
        let reply = raw(
            gw.addr(),
            format!("{head}Connection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(raw_status(&reply), 400, "{what}: {reply}");
    }
    assert!(gw.upstream.requests().is_empty());
    // HTTP/1.0 may omit Host.
    let reply = raw(gw.addr(), b"GET /echo HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&reply), 200, "{reply}");
    // The absolute-form target's authority wins over Host.
    let reply = raw(
        gw.addr(),
        b"GET http://api.example.com/echo HTTP/1.1\r\nHost: other.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&reply), 200, "{reply}");
    assert_eq!(
        gw.upstream.last().headers["x-forwarded-host"],
        "api.example.com"
    );
}

#[tokio::test]
async fn an_allow_list_of_hosts_answers_404_for_others() {
    let yaml = format!("server: {{ hosts: [api.example.com] }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let reply = raw(gw.addr(), &get_raw("/echo", "evil.example.com")).await;
    assert_eq!(raw_status(&reply), 404);
    let reply = raw(gw.addr(), &get_raw("/echo", "API.example.com:8080")).await;
    assert_eq!(raw_status(&reply), 200);
    assert_eq!(gw.upstream.requests().len(), 1);
}

#[tokio::test]
async fn an_http2_host_that_differs_from_authority_is_400() {
    let gw = spawn(BASIC).await;
    let (mut send, _task) = h2_connection(gw.addr()).await;
    let req = Request::builder()
        .uri(format!("http://{}/echo", gw.addr()))
        .header("host", "evil.example.com")
        .body(body::empty())
        .expect("request");
    let response = send.send_request(req).await.expect("response");
    assert_eq!(response.status(), 400);
    assert!(gw.upstream.requests().is_empty());
}

// === also: transfer codings, HTTP/2 field whitespace and cookies ===

#[tokio::test]
async fn transfer_codings_other_than_chunked_are_501() {
    let gw = spawn(BASIC).await;
    let request = "POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let reply = raw(gw.addr(), request.as_bytes()).await;
    assert_eq!(raw_status(&reply), 501, "{reply}");
    assert!(gw.upstream.requests().is_empty());
}

#[tokio::test]
async fn http2_field_rules_hold() {
    let gw = spawn(BASIC).await;
    let (mut send, _task) = h2_connection(gw.addr()).await;
    let req = Request::builder()
        .uri(format!("http://{}/echo", gw.addr()))
        .header("x-note", " padded ")
        .body(body::empty())
        .expect("request");
    let response = send.send_request(req).await.expect("response");
    assert_eq!(response.status(), 400);
    let req = Request::builder()
        .uri(format!("http://{}/echo", gw.addr()))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(body::empty())
        .expect("request");
    let response = send.send_request(req).await.expect("response");
    assert_eq!(response.status(), 200);
    let seen = gw.upstream.last();
    let cookies: Vec<_> = seen.headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, vec!["a=1; b=2"]);
}

// === also: OPTIONS, credentials ===

#[tokio::test]
async fn only_real_preflights_to_routed_paths_are_answered_by_cors() {
    let yaml = format!("cors: {{ origins: [https://app.example.com] }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let options = |path: &str, preflight: bool| {
        let mut builder = request("OPTIONS", &gw.url(path));
        if preflight {
            builder = builder
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "GET");
        }
        builder.body(body::empty()).expect("r")
    };
    send(&client(), options("/nowhere", false))
        .await
        .assert_problem(404);
    send(&client(), options("/nowhere", true))
        .await
        .assert_problem(404);
    let reply = send(&client(), options("/echo", false)).await;
    reply.assert_problem(405);
    let reply = send(&client(), options("/echo", true)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(gw.upstream.requests().is_empty());
}

#[tokio::test]
async fn credentials_never_reach_the_upstream_of_a_public_route() {
    let yaml = "routes:\n  - { path: /echo, auth: none }\n  - { path: /pass, auth: none, forward_credentials: true }\n";
    let gw = spawn(yaml).await;
    let with_credentials = |path: &str| {
        request("GET", &gw.url(path))
            .header("authorization", "Bearer secret-token")
            .header("x-api-key", "wdn_secret")
            .header("x_api_key", "wdn_secret")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .body(body::empty())
            .expect("r")
    };
    assert_eq!(send(&client(), with_credentials("/echo")).await.status, 200);
    let seen = gw.upstream.last().headers;
    for name in [
        "authorization",
        "x-api-key",
        "x_api_key",
        "proxy-authorization",
    ] {
        assert!(seen.get(name).is_none(), "{name} was forwarded");
    }
    assert_eq!(send(&client(), with_credentials("/pass")).await.status, 200);
    assert_eq!(
        gw.upstream.last().headers["authorization"],
        "Bearer secret-token"
    );
}

// === 9. rate-limit headers of two limits ===

#[tokio::test]
async fn a_429_reports_the_refusing_limit() {
    let yaml = "rate_limits:\n  pre_auth: { limit: 1000, per: 1m, key: ip }\nroutes:\n  - { path: /echo, auth: none, rate_limit: { limit: 2, per: 1m, key: ip } }\n";
    let gw = spawn(yaml).await;
    let mut last = None;
    for _ in 0..3 {
        last = Some(get(&gw.url("/echo")).await);
    }
    let reply = last.expect("reply");
    reply.assert_problem(429);
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(reply.header("x-ratelimit-limit"), Some("2"));
    let items = reply.header("ratelimit").expect("ratelimit");
    assert!(items.contains(";r=0;"), "{items}");
    assert!(items.contains(";r=997;"), "{items}");
    assert!(reply.header("retry-after").is_some());
}

// === also: header-keyed limits ===

#[tokio::test]
async fn header_keyed_limits_keep_missing_dash_and_non_ascii_apart() {
    let yaml = "routes:\n  - { path: /echo, auth: none, rate_limit: { limit: 1, per: 1m, key: 'header:x-client' } }\n";
    let gw = spawn(yaml).await;
    let call = |value: Option<&'static [u8]>| {
        let mut builder = request("GET", &gw.url("/echo"));
        if let Some(v) = value {
            builder = builder.header("x-client", http::HeaderValue::from_bytes(v).expect("v"));
        }
        send_owned(builder.body(body::empty()).expect("r"))
    };
    // Each is its own bucket: the first call of each passes.
    for value in [
        None,
        Some(&b"-"[..]),
        Some(&b"caf\xe9"[..]),
        Some(&b"caf\xe8"[..]),
    ] {
        assert_eq!(call(value).await.status, 200, "{value:?}");
    }
    // And each bucket holds: the second call of each is refused.
    for value in [None, Some(&b"-"[..]), Some(&b"caf\xe9"[..])] {
        assert_eq!(call(value).await.status, 429, "{value:?}");
    }
}

async fn send_owned(req: Request<Body>) -> Reply {
    send(&client(), req).await
}

// === 12. hostile configuration files ===

#[tokio::test]
async fn secret_files_must_be_small_regular_files() {
    let dir = temp_dir("hostile");
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let big = dir.join("big");
    std::fs::write(&big, vec![b'a'; 64 * 1024 + 1]).expect("write");
    for (what, path) in [
        ("device", std::path::PathBuf::from("/dev/zero")),
        ("fifo", fifo),
        ("directory", dir.clone()),
        ("too large", big),
    ] {
        let file = dir.join(format!("{}.yaml", what.replace(' ', "_")));
        std::fs::write(
            &file,
            format!(
                "upstream: {{ url: http://127.0.0.1:8000 }}\nauth:\n  api_keys: {{ store: 'sqlite://k.db', pepper: '${{file:{}}}' }}\nroutes: [{{ path: /a, auth: none }}]\n",
                path.display()
            ),
        )
        .expect("write");
        let started = Instant::now();
        let errors = tokio::task::spawn_blocking(move || load_file(&file))
            .await
            .expect("join")
            .expect_err(what)
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "{what} hung");
        assert!(
            errors.contains("cannot read secret file"),
            "{what}: {errors}"
        );
    }
}

#[test]
fn no_error_message_echoes_a_secret_reference() {
    const SECRET: &str = "s3cr3t Value/with:odd%chars\"and\\back";
    let yaml = r#"
server:
  listen: '${env:S}'
  admin_listen: '${env:S}'
  environment: '${env:S}'
  trusted_proxies: ['${env:S}']
  client_ip_header: '${env:S}'
  hosts: ['${env:S}']
  limits: { max_request_bytes: '${env:S}', max_header_bytes: '${env:S}' }
  timeouts: { header_read: '${env:S}', idle: '${env:S}', body_read: '${env:S}' }
upstream:
  url: '${env:S}'
  identity_headers: '${env:S}'
  request_buffer: '${env:S}'
  strip_headers: ['${env:S}']
auth:
  api_keys: { store: '${env:S}', pepper: '${env:S}', header: '${env:S}', cache_ttl: '${env:S}' }
  token_sources: { cookie: '${env:S}' }
authz:
  roles: { viewer: ['${env:S}'] }
rate_limits:
  store: '${env:S}'
  on_store_error: '${env:S}'
  pre_auth: { limit: 1, per: '${env:S}', key: '${env:S}', algorithm: '${env:S}' }
cors: { origins: ['${env:S}'], methods: ['${env:S}'], headers: ['${env:S}'], max_age: '${env:S}' }
headers: { profile: '${env:S}', set: { x-a: '${env:S}' }, remove: ['${env:S}'] }
routes:
  - { path: '${env:S}', methods: ['${env:S}'], auth: '${env:S}', tenant_header: '${env:S}', authorize: '${env:S}', policy: '${env:S}' }
"#;
    let errors = config_with_env(yaml, "http://127.0.0.1:8000", &[("S", SECRET)])
        .expect_err("invalid")
        .to_string();
    assert!(errors.lines().count() >= 10, "{errors}");
    for fragment in [
        "s3cr3t",
        "odd%chars",
        "Value/with",
        "and\\back",
        "and\\\\back",
    ] {
        assert!(
            !errors.contains(fragment),
            "a secret reached the errors: {errors}"
        );
    }
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_body_is_a_client_error_not_a_502() {
    for yaml in [
        BASIC.to_owned(),
        format!("upstream: {{ request_buffer: 0 }}\n{BASIC}"),
    ] {
        let gw = spawn(&yaml).await;
        let mut stream = TcpStream::connect(gw.addr()).await.expect("connect");
        stream
            .write_all(
                b"POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\nonly-part",
            )
            .await
            .expect("write");
        // Half-close: the body ends early, the client can still read the answer.
        stream.shutdown().await.expect("shutdown");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        // 502 before: the upstream was blamed for the client's broken body.
        assert_eq!(raw_status(&text), 400, "{text}");
    }
}

// === ordering claims of stack.rs ===

#[tokio::test]
async fn a_timeout_504_carries_cors_headers() {
    let yaml = format!(
        "server: {{ timeouts: {{ request: 1s }} }}\ncors: {{ origins: [https://app.example.com] }}\n{BASIC}"
    );
    let gw = spawn(&yaml).await;
    let reply = send(
        &client(),
        request("GET", &gw.url("/slow/3000"))
            .header("origin", "https://app.example.com")
            .body(body::empty())
            .expect("r"),
    )
    .await;
    reply.assert_problem(504);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
}

#[tokio::test]
async fn a_request_over_a_head_limit_is_refused_before_any_authentication_work() {
    const SECRET: &str = "ordering-test-hmac-secret-of-at-least-32-bytes";
    let yaml = r#"
server: { limits: { max_headers: 10 } }
auth:
  jwt:
    - { name: order-probe, issuer: "https://order.test", audiences: [api], secret: "${env:ORDER_SECRET}", algorithms: [HS256] }
routes:
  - { path: /private, authorize: authenticated }
"#;
    let upstream = upstream().await;
    let config = config_with_env(yaml, &upstream.url(), &[("ORDER_SECRET", SECRET)])
        .unwrap_or_else(|e| panic!("{e}"));
    let gw = spawn_config(config, upstream).await;
    let token = hs256_token(
        SECRET,
        serde_json::json!({ "iss": "https://order.test", "aud": "api", "sub": "a" }),
    );
    let series = "warden_jwt_verifications_total{provider=\"order-probe\"}";
    let mut builder =
        request("GET", &gw.url("/private")).header("authorization", format!("Bearer {token}"));
    for i in 0..12 {
        builder = builder.header(format!("x-filler-{i}"), "x");
    }
    send(&client(), builder.body(body::empty()).expect("r"))
        .await
        .assert_problem(431);
    assert_eq!(metric(&gw, series).await, 0.0, "the token was verified");
    // The same token within the limits is verified (the counter is live).
    let ok = send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("authorization", format!("Bearer {token}"))
            .body(body::empty())
            .expect("r"),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(metric(&gw, series).await, 1.0);
}

#[tokio::test]
async fn a_waiter_cancelled_in_the_upstream_queue_leaves_it() {
    let yaml = format!(
        "server: {{ timeouts: {{ request: 1s, upstream_connect: 5s }} }}\nupstream: {{ max_connections: 1, max_pending: 1 }}\n{BASIC}"
    );
    let gw = spawn(&yaml).await;
    // A holds the one upstream slot for as long as its streamed body is unread.
    let stream = client()
        .request(
            request("GET", &gw.url("/sse"))
                .body(body::empty())
                .expect("r"),
        )
        .await
        .expect("response");
    assert_eq!(stream.status(), 200);
    // B waits in the queue and is cancelled there by the overall timeout.
    get(&gw.url("/echo")).await.assert_problem(504);
    // C must be able to queue again (a leaked place would shed it at once), and is served
    // when A lets go of the slot.
    let c = tokio::spawn({
        let url = gw.url("/echo");
        async move { get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    assert_eq!(c.await.expect("join").status, 200);
}

#[tokio::test]
async fn a_connection_in_steady_use_is_never_closed_as_idle() {
    let yaml = format!("server: {{ timeouts: {{ idle: 1s }} }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    let (mut send, task) = h2_connection(gw.addr()).await;
    // Quick requests 400 ms apart for 3 s: idle is measured from the last one's end, however
    // briefly each was in flight.
    for _ in 0..8 {
        let response = send
            .send_request(h2_get(gw.addr(), "/echo"))
            .await
            .expect("still open");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.expect("body");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!task.is_finished(), "closed while in use");
    }
    // Then left alone, it is closed.
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("closed once idle")
        .expect("join");
}
