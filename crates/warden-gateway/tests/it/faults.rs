//! The fault suite: real processes and sockets on loopback misbehaving on purpose — an upstream
//! that resets, closes, stalls or answers something that is not HTTP, HTTP/2 clients flooding
//! resets, CONTINUATION and SETTINGS frames, slow clients of every kind — and the gateway
//! answering each with the right status, without a hang or a panic, with bounded memory, and
//! while it keeps serving everyone else.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, Reply, TestGateway};

/// An upstream that misbehaves as the request path says:
/// - `/ok`: a normal answer (the connection stays open for the next request);
/// - `/reset`: resets the connection before any answer;
/// - `/close`: closes it before any answer;
/// - `/garbage`: answers something that is not HTTP;
/// - `/bad-length`: an answer whose `Content-Length` is not a number;
/// - `/many-headers`: an answer with 500 header fields;
/// - `/stall-head`: half a status line, then nothing;
/// - `/mid-reset`: a 200 head and part of its body, then a reset.
async fn faulty_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(misbehave(stream));
        }
    });
    addr
}

async fn misbehave(mut stream: TcpStream) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) if head.len() < 64 * 1024 => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
        let write = |bytes: Vec<u8>| bytes;
        let answer = match path.as_str() {
            "/ok" => write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()),
            "/reset" => {
                let _ = stream.set_zero_linger();
                return;
            }
            "/close" => return,
            "/garbage" => write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()),
            "/bad-length" => write(b"HTTP/1.1 200 OK\r\ncontent-length: twelve\r\n\r\nok".to_vec()),
            "/many-headers" => {
                let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
                for i in 0..500 {
                    answer.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
                }
                answer.extend_from_slice(b"\r\nok");
                answer
            }
            "/stall-head" => {
                let _ = stream.write_all(b"HTTP/1.1 20").await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            "/mid-reset" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
                    .await;
                let _ = stream.write_all(&[b'a'; 1000]).await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = stream.set_zero_linger();
                return;
            }
            _ => write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec()),
        };
        if stream.write_all(&answer).await.is_err() || path != "/ok" {
            return;
        }
    }
}

const FAULT_ROUTES: &str = r#"
server: { timeouts: { upstream_response: 500ms } }
routes:
  - { path: "/{*any}", auth: none }
"#;

/// One request on an HTTP/1.1 client connection, bounded in time (a hang fails the test).
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<warden::body::Body>,
    path: &str,
) -> Result<Reply, String> {
    let req = http::Request::get(path)
        .header("host", "gw.test")
        .body(warden::body::empty())
        .expect("request");
    let within = tokio::time::timeout(Duration::from_secs(10), async {
        // The connection takes the next request only once it has finished the last one.
        sender
            .ready()
            .await
            .map_err(|e| format!("connection closed: {e}"))?;
        let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    });
    within
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer within 10 s"))
}

async fn http1_connection(
    gw: &TestGateway,
) -> hyper::client::conn::http1::SendRequest<warden::body::Body> {
    let tcp = TcpStream::connect(gw.addr()).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_are_502_or_504_and_the_client_connection_stays_usable() {
    let upstream = faulty_upstream().await;
    let config = common::config_for(FAULT_ROUTES, &format!("http://{upstream}")).expect("config");
    let gw = common::spawn_config(config, common::upstream().await).await;
    let mut sender = http1_connection(&gw).await;
    assert_eq!(exchange(&mut sender, "/ok").await.expect("ok").status, 200);
    for (path, status, kind) in [
        ("/reset", 502, "bad-gateway"),
        ("/close", 502, "bad-gateway"),
        ("/garbage", 502, "bad-gateway"),
        ("/bad-length", 502, "bad-gateway"),
        ("/many-headers", 502, "bad-gateway"),
        ("/stall-head", 504, "gateway-timeout"),
    ] {
        let reply = exchange(&mut sender, path)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        reply.assert_problem(status);
        assert_eq!(
            reply.json()["type"],
            format!("urn:warden:problem:{kind}"),
            "{path}"
        );
        // The same client connection goes on.
        let next = exchange(&mut sender, "/ok")
            .await
            .unwrap_or_else(|e| panic!("after {path}: {e}"));
        assert_eq!(next.status, 200, "after {path}");
    }

    // A reset after the head was relayed: the answer cannot become an error any more, so the
    // body is cut (the client sees it fail, never a short body that looks complete), and the
    // HTTP/1.1 connection, whose framing is broken, is closed; a new one is served.
    let cut = exchange(&mut sender, "/mid-reset").await;
    assert!(cut.is_err(), "a cut body looked complete: {cut:?}");
    let mut fresh = http1_connection(&gw).await;
    assert_eq!(exchange(&mut fresh, "/ok").await.expect("ok").status, 200);

    // Over HTTP/2 only that stream is reset: the connection carries the next request.
    let tcp = TcpStream::connect(gw.addr()).await.expect("connect");
    let (mut h2, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(connection);
    let get = |path: &str| {
        http::Request::get(format!("http://gw.test{path}"))
            .body(warden::body::empty())
            .expect("request")
    };
    let response = h2.send_request(get("/mid-reset")).await.expect("head");
    assert_eq!(response.status(), 200);
    assert!(response.into_body().collect().await.is_err());
    let response = h2.send_request(get("/ok")).await.expect("next stream");
    assert_eq!(response.status(), 200);
    gw.gateway.shutdown().await;
}

/// One HTTP/2 frame (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame size");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// An HPACK integer with an `n`-bit prefix under `flags` (RFC 7541 §5.1).
fn hpack_int(flags: u8, n: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name (RFC 7541 §6.2.2).
fn hpack_literal(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(0x00);
    hpack_int(0, 7, name.len(), out);
    out.extend_from_slice(name.as_bytes());
    hpack_int(0, 7, value.len(), out);
    out.extend_from_slice(value.as_bytes());
}

/// `GET /echo` for authority `gw.test`: static-table indices and two literals.
fn get_echo_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    hpack_literal(":path", "/echo", &mut block);
    hpack_literal(":authority", "gw.test", &mut block);
    block
}

/// Opens a raw HTTP/2 connection (preface and empty SETTINGS) whose incoming frames are read
/// and dropped; the returned task ends when the gateway closes the connection.
async fn raw_h2(
    addr: SocketAddr,
) -> (tokio::net::tcp::OwnedWriteHalf, tokio::task::JoinHandle<()>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    write
        .write_all(&frame(SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    let reader = tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    (write, reader)
}

/// Sends `batch` repeatedly until `total` bytes went out or the gateway stops the connection;
/// returns how many bytes were sent and whether the gateway closed the connection.
async fn flood(addr: SocketAddr, first: Vec<u8>, batch: Vec<u8>, total: usize) -> (usize, bool) {
    let (mut write, reader) = raw_h2(addr).await;
    let mut sent = 0;
    if write.write_all(&first).await.is_ok() {
        while sent < total {
            match tokio::time::timeout(Duration::from_secs(5), write.write_all(&batch)).await {
                Ok(Ok(())) => sent += batch.len(),
                // Refused (reset or closed), or no longer read (the gateway stopped reading).
                _ => break,
            }
        }
    }
    let _ = write.shutdown().await;
    let closed = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .is_ok();
    (sent, closed)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The `warden` binary serving `yaml` (listeners on fixed loopback ports), killed on drop.
struct Binary {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: std::path::PathBuf,
}

impl Binary {
    async fn start(name: &str, yaml: &str, upstream: &str) -> Binary {
        Self::start_with_server(name, "", yaml, upstream).await
    }

    /// Like [`Binary::start`], with more `server:` settings (`key: value, ...`).
    async fn start_with_server(name: &str, server: &str, yaml: &str, upstream: &str) -> Binary {
        let dir = common::temp_dir(name);
        let (addr, admin) = (common::unused_addr(), common::unused_addr());
        let config = dir.join("warden.yaml");
        let server = if server.is_empty() {
            String::new()
        } else {
            format!(", {server}")
        };
        std::fs::write(
            &config,
            format!(
                "server: {{ listen: '{addr}', admin_listen: '{admin}'{server} }}\nupstream: {{ url: '{upstream}' }}\n{yaml}"
            ),
        )
        .expect("config");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Binary {
            child,
            addr,
            _dir: dir,
        }
    }

    fn rss(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// A legitimate request on a connection of its own: its status and how long it took.
    async fn probe(&self) -> (u16, Duration) {
        let started = Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            common::send(
                &common::client(),
                common::request("GET", &format!("http://{}/echo", self.addr))
                    .body(warden::body::empty())
                    .expect("request"),
            ),
        )
        .await
        .expect("a legitimate request was not answered within 10 s");
        (reply.status.as_u16(), started.elapsed())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_floods_end_their_connection_with_bounded_memory() {
    let upstream = common::upstream().await;
    let gw = Binary::start("h2-floods", common::BASIC, &upstream.url()).await;
    assert_eq!(gw.probe().await.0, 200);
    let baseline = gw.rss();
    let block = get_echo_block();

    // Rapid reset (CVE-2023-44487): open a stream and cancel it at once, 100,000 times.
    let (mut write, reader) = raw_h2(gw.addr).await;
    let mut resets_sent = 0u32;
    'attack: for round in 0..100u32 {
        let mut batch = Vec::new();
        // Stream ids must grow from batch to batch.
        for i in 0..1000u32 {
            let stream = 2 * (round * 1000 + i) + 1;
            batch.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &block));
            batch.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
        }
        match tokio::time::timeout(Duration::from_secs(5), write.write_all(&batch)).await {
            Ok(Ok(())) => resets_sent += 1000,
            _ => break 'attack,
        }
    }
    let _ = write.shutdown().await;
    let closed = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .is_ok();
    let reached = upstream.requests().len();
    eprintln!(
        "rapid reset: {resets_sent} streams opened and reset, {reached} reached the upstream, connection closed: {closed}, RSS {baseline} -> {} KiB",
        gw.rss()
    );
    assert!(closed, "the rapid-reset connection was never closed");
    assert!(
        resets_sent < 100_000 || reached < 10_000,
        "{resets_sent} resets were all accepted and {reached} reached the upstream"
    );
    assert_eq!(gw.probe().await.0, 200);

    // CONTINUATION flood: one header block that never ends, 16 KiB a frame, up to 64 MiB.
    let mut piece = Vec::new();
    hpack_literal("x-flood", &"a".repeat(16_000), &mut piece);
    let mut batch = Vec::new();
    for _ in 0..16 {
        batch.extend(frame(CONTINUATION, 0, 1, &piece));
    }
    let (sent, closed) = flood(
        gw.addr,
        frame(HEADERS, END_STREAM, 1, &block),
        batch,
        64 << 20,
    )
    .await;
    eprintln!(
        "CONTINUATION flood: {} KiB sent before the gateway stopped it, closed: {closed}, RSS {} KiB",
        sent / 1024,
        gw.rss()
    );
    assert!(
        closed && sent < 64 << 20,
        "the CONTINUATION flood was read to the end ({sent} bytes)"
    );
    assert_eq!(gw.probe().await.0, 200);

    // SETTINGS and PING floods whose acknowledgements are never read: all are taken in, and
    // memory stays flat (the acknowledgements wait behind the socket's own buffer).
    for (name, kind) in [("SETTINGS", SETTINGS), ("PING", PING)] {
        let payload: &[u8] = if kind == PING { &[0u8; 8] } else { &[] };
        let mut batch = Vec::new();
        for _ in 0..1000 {
            batch.extend(frame(kind, 0, 0, payload));
        }
        let (sent, closed) = flood(gw.addr, Vec::new(), batch, 32 << 20).await;
        eprintln!(
            "{name} flood: {} KiB sent, closed: {closed}, RSS {} KiB",
            sent / 1024,
            gw.rss()
        );
        assert!(closed, "the {name} flood's connection did not end");
        assert_eq!(gw.probe().await.0, 200);
    }
    let after = gw.rss();
    eprintln!("RSS {baseline} KiB before the floods, {after} KiB after");
    assert!(
        after < baseline + 64 * 1024,
        "memory grew from {baseline} KiB to {after} KiB"
    );
}

/// Latencies of a legitimate client (a new connection each time, every 100 ms) while `during`
/// runs; every request must be answered 200.
async fn probe_while(gw: &Binary, during: impl std::future::Future<Output = ()>) -> Vec<Duration> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let probing = async {
        let mut latencies = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let (status, took) = gw.probe().await;
            assert_eq!(status, 200, "a legitimate request was refused");
            latencies.push(took);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        latencies
    };
    let attack = async {
        during.await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (latencies, ()) = tokio::join!(probing, attack);
    latencies
}

fn summary(latencies: &mut [Duration]) -> (Duration, Duration, Duration) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99), latencies[latencies.len() - 1])
}

/// Runs slowhttptest with `args` for `seconds` against `url`; returns its report.
async fn slowhttptest(args: &[&str], url: &str, seconds: u32) -> String {
    let mut command = std::process::Command::new("slowhttptest");
    command.args(args).args([
        "-c",
        "400",
        "-r",
        "200",
        "-p",
        "3",
        "-l",
        &seconds.to_string(),
        "-u",
        url,
    ]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("slowhttptest task")
        .unwrap_or_else(|e| {
            panic!("cannot run slowhttptest ({e}); run scripts/install-test-deps.sh")
        });
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_of_every_kind_do_not_keep_a_legitimate_client_waiting() {
    let upstream = common::upstream().await;
    let yaml = format!("{}  - {{ path: /big, auth: none }}\n", common::BASIC);
    // Short timeouts, so each kind of slowness meets its bound within the run.
    let gw = Binary::start_with_server(
        "slow-clients",
        "timeouts: { header_read: 2s, body_read: 2s, idle: 5s }",
        &yaml,
        &upstream.url(),
    )
    .await;
    let base = format!("http://{}", gw.addr);
    let mut idle = probe_while(&gw, tokio::time::sleep(Duration::from_secs(3))).await;
    let idle = summary(&mut idle);
    eprintln!("idle: p50 {:?} p99 {:?} max {:?}", idle.0, idle.1, idle.2);
    for (name, args, path, all_closed) in [
        // Slowloris: a header line every second, the head never ends (header_read closes).
        ("slow headers", vec!["-H", "-i", "1"], "/echo", true),
        // R-U-Dead-Yet: a long body, a few bytes every 3 s (past body_read: 408, closed).
        (
            "slow body",
            vec!["-B", "-i", "3", "-s", "100000"],
            "/echo",
            true,
        ),
        // Slow read: a 1 MiB answer read through a tiny window (the reader makes progress, so
        // its connection lives; it must not hold anyone else up).
        (
            "slow read",
            vec![
                "-X", "-k", "2", "-n", "1", "-w", "1", "-y", "16", "-z", "16",
            ],
            "/big",
            false,
        ),
    ] {
        let url = format!("{base}{path}");
        let mut report = String::new();
        let mut latencies = probe_while(&gw, async {
            report = slowhttptest(&args, &url, 10).await;
        })
        .await;
        let (p50, p99, max) = summary(&mut latencies);
        let exit = report
            .lines()
            .find(|l| l.contains("Exit status"))
            .unwrap_or("")
            .to_owned();
        eprintln!(
            "{name}: {} legitimate requests, p50 {p50:?} p99 {p99:?} max {max:?}; slowhttptest: {exit}",
            latencies.len(),
        );
        if all_closed {
            // The gateway closed every slow connection before the run's end.
            assert!(
                exit.contains("No open connections left"),
                "{name}: {report}"
            );
        }
        // A liveness bound, not a benchmark: nobody waited behind the slow clients.
        assert!(
            max < Duration::from_secs(5),
            "{name}: a legitimate request took {max:?}"
        );
    }
    assert_eq!(gw.probe().await.0, 200);
}

/// A key server on `addr` answering every request with `jwks` and closing the connection: the
/// task owns every socket, so aborting it is the server going away (connections refused).
fn key_server(listener: TcpListener, jwks: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let jwks = jwks.clone();
            connections.spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(n) if n > 0 && head.len() < 64 * 1024 => {
                            head.extend_from_slice(&buf[..n])
                        }
                        _ => return,
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{jwks}",
                    jwks.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    })
}

/// The key server goes away under load and comes back: the cached keys serve, then (past
/// `stale_if_error`) 503 — never a 401, the token is fine — with readiness off, then the
/// refresher finds the server again and every request is 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_server_down_and_back_under_load_is_cached_keys_then_503_then_recovery() {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    let key = crate::jwks::key("a");
    let jwks = warden_gateway::token::jwks(&[&key]).to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut server = key_server(listener, jwks.clone());
    let upstream = common::upstream().await;
    let yaml = format!(
        "server: {{ environment: development }}\n\
         auth:\n  jwt:\n    - name: idp\n      issuer: https://idp.test\n      audiences: [agents]\n      \
         jwks_uri: http://{addr}/jwks\n      algorithms: [ES256]\n      \
         jwks: {{ default_ttl: 1s, min_ttl: 1s, stale_if_error: 2s, max_backoff: 1s }}\n\
         routes:\n  - {{ path: /private, authorize: authenticated }}\n"
    );
    let config = common::config_for(&yaml, &upstream.url()).unwrap_or_else(|e| panic!("{e}"));
    let gateway = warden_gateway::server::Gateway::start(config)
        .await
        .expect("starts");
    let gw = TestGateway { gateway, upstream };
    let token = crate::jwks::token(&key, "https://idp.test");
    // (phase, status, when the request was sent) of every answer. Three clients run at once,
    // so answers complete out of the order their requests were decided in: the checks below
    // read them in the order they were sent.
    let phase = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let seen = Arc::new(Mutex::new(Vec::<(u8, u16, std::time::Instant)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (url, token) = (gw.url("/private"), token.clone());
            let (phase, seen, stop) = (phase.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                let client = common::client();
                while !stop.load(Ordering::SeqCst) {
                    let req = common::request("GET", &url)
                        .header("authorization", format!("Bearer {token}"))
                        .body(warden::body::empty())
                        .expect("request");
                    let sent = std::time::Instant::now();
                    let status = client.request(req).await.map_or(0, |r| r.status().as_u16());
                    let at = phase.load(Ordering::SeqCst);
                    seen.lock().expect("lock").push((at, status, sent));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    let statuses = |wanted: u8| -> Vec<u16> {
        let mut seen: Vec<_> = seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _, _)| *p == wanted)
            .copied()
            .collect();
        seen.sort_by_key(|&(_, _, sent)| sent);
        seen.into_iter().map(|(_, s, _)| s).collect()
    };
    let wait_for = |wanted: u16, at: u8| {
        let seen = seen.clone();
        async move {
            for _ in 0..200 {
                if seen
                    .lock()
                    .expect("lock")
                    .iter()
                    .any(|&(p, s, _)| p == at && s == wanted)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("never {wanted} in phase {at}");
        }
    };
    let ready = || async { common::get(&gw.admin_url("/readyz")).await.status };
    wait_for(200, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Down: connections refused from now on.
    server.abort();
    let _ = (&mut server).await;
    phase.store(1, Ordering::SeqCst);
    wait_for(503, 1).await;
    phase.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready().await, 503, "no usable keys: not ready");

    // Back on the same address.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let server = key_server(listener, jwks);
    phase.store(3, Ordering::SeqCst);
    wait_for(200, 3).await;
    phase.store(4, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.expect("load");
    }
    server.abort();

    let up = statuses(0);
    assert!(up.iter().all(|&s| s == 200), "{up:?}");
    // The outage: the cached keys answered first, then 503 (never 401 or anything else).
    let outage: Vec<u16> = statuses(1).into_iter().chain(statuses(2)).collect();
    assert!(outage.iter().all(|&s| s == 200 || s == 503), "{outage:?}");
    let first_503 = outage.iter().position(|&s| s == 503).expect("a 503");
    assert!(
        first_503 > 0,
        "the cached keys served before the 503s: {outage:?}"
    );
    assert!(outage[first_503..].iter().all(|&s| s == 503), "{outage:?}");
    assert!(statuses(2).iter().all(|&s| s == 503));
    // Recovery: 503 until the refresher fetched, then 200 only.
    let back = statuses(3);
    assert!(back.iter().all(|&s| s == 200 || s == 503), "{back:?}");
    let after = statuses(4);
    assert!(
        !after.is_empty() && after.iter().all(|&s| s == 200),
        "{after:?}"
    );
    assert_eq!(ready().await, 200);
    let total = seen.lock().expect("lock").len();
    eprintln!(
        "key server outage under load: {total} requests; up {}, cached keys {first_503}, 503 {}, recovering {}, after {}",
        up.len(),
        outage.len() - first_503,
        back.len(),
        after.len()
    );
}
