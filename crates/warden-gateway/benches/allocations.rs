//! Heap allocations per proxied request made by the gateway alone, end to end on loopback. This
//! process runs only the gateway (`Gateway::start`, as `warden serve` runs it: JSON access log,
//! metrics recorder, one worker thread) under DHAT's counting allocator; a child process (this
//! same binary with `--peer`) runs the upstream and a client on one keep-alive connection, so
//! their allocations are not counted. The child tells the parent when its warm-up ends and when
//! the counted requests are done.
//!
//! `cargo bench -p warden-gateway --bench allocations` (counts, not times: DHAT's allocator
//! records every allocation; `WARDEN_DHAT_FILE=dhat.json` also writes where they were made).
#![allow(missing_docs)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use warden_gateway::config::{compile, load};
use warden_gateway::token::{SigningKey, jwks, now_unix};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const WARM_UP: u64 = 1_000;
const MEASURED: u64 = 10_000;

fn main() {
    if std::env::args().any(|a| a == "--peer") {
        return peer();
    }
    gateway_side();
}

/// The child: the upstream, then one client run per line `run ADDR [BEARER]` on stdin.
fn peer() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let upstream = upstream().await;
        println!("upstream {upstream}");
        let mut lines = BufReader::new(std::io::stdin()).lines();
        while let Some(Ok(line)) = lines.next() {
            let mut words = line.split_whitespace();
            let (Some("run"), Some(addr)) = (words.next(), words.next()) else {
                return;
            };
            let addr: SocketAddr = addr.parse().expect("addr");
            let bearer = words.next().map(|token| format!("Bearer {token}"));
            client(addr, bearer.as_deref()).await;
        }
    });
}

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    let mut response = http::Response::new(Full::new(Bytes::from_static(
                        br#"{"id":"agent-42","status":"ok","items":[1,2,3]}"#,
                    )));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `WARM_UP` requests, "warm", `MEASURED` requests, "done", on one connection.
async fn client(addr: SocketAddr, bearer: Option<&str>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let mut send = async |n: u64| {
        for _ in 0..n {
            let mut request = http::Request::builder()
                .uri("/api/v1/agents/42")
                .header("host", "gateway.local")
                .header("origin", "https://app.example.com");
            if let Some(bearer) = bearer {
                request = request.header("authorization", bearer);
            }
            let request = request.body(Empty::new()).expect("request");
            sender.ready().await.expect("ready");
            let response = sender.send_request(request).await.expect("response");
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.expect("body");
        }
    };
    send(WARM_UP).await;
    println!("warm");
    send(MEASURED).await;
    println!("done");
}

fn gateway_side() {
    // WARDEN_DHAT_FILE=PATH: also write DHAT's profile (every allocation site with its
    // backtrace, for `dh_view.html`) of the whole run there.
    let _profiler = match std::env::var_os("WARDEN_DHAT_FILE") {
        Some(path) => dhat::Profiler::builder().file_name(path).build(),
        None => dhat::Profiler::builder().testing().build(),
    };
    // As `serve`: JSON access lines through the subscriber (to nowhere).
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("info")
        .with_current_span(false)
        .with_writer(std::io::sink)
        .init();
    // The gateway runs on its worker thread; this thread talks to the peer.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut child = Command::new(std::env::current_exe().expect("self"))
        .arg("--peer")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("peer");
    let mut to_peer = child.stdin.take().expect("stdin");
    let mut from_peer = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut expect = |word: &str| {
        let line = from_peer.next().expect("peer line").expect("peer output");
        assert!(
            line.starts_with(word),
            "peer said {line:?}, expected {word}"
        );
        line
    };
    let upstream = expect("upstream")["upstream ".len()..].to_owned();

    let dir = std::env::temp_dir().join(format!("warden-alloc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = SigningKey::generate(jsonwebtoken::Algorithm::RS256, Some("k1".into())).expect("key");
    let jwks_path = dir.join("jwks.json");
    std::fs::write(&jwks_path, jwks(&[&key]).to_string()).expect("write");
    let now = now_unix();
    let token = key
        .mint(&serde_json::json!({
            "iss": "https://idp.bench", "aud": "api", "sub": "alice", "iat": now,
            "exp": now + 86_400, "roles": ["viewer"],
        }))
        .expect("mint");
    let full = format!(
        r#"
auth:
  jwt:
    - {{ name: bench, issuer: https://idp.bench, audiences: [api], jwks_file: "{}", algorithms: [RS256] }}
authz:
  roles: {{ viewer: ["agents:read"] }}
rate_limits:
  default: {{ limit: 1000000000, per: 1m, key: identity, algorithm: token_bucket }}
"#,
        jwks_path.display()
    );
    let audited = format!(
        "{full}audit: {{ sink: 'file://{}', hash_chain: true }}\n",
        dir.join("audit.jsonl").display()
    );
    let open = r#"{ path: "/api/v1/agents/{agent_id}", methods: [GET], auth: none }"#;
    let guarded =
        r#"{ path: "/api/v1/agents/{agent_id}", methods: [GET], permission: "agents:read" }"#;
    for (name, extra, route, bearer) in [
        ("passthrough (CORS, security headers)", "", open, None),
        (
            "full pipeline (RS256 JWT cached, RBAC, rate limit, CORS, headers)",
            full.as_str(),
            guarded,
            Some(token.as_str()),
        ),
        (
            "the same with a hash-chained audit file",
            audited.as_str(),
            guarded,
            Some(token.as_str()),
        ),
    ] {
        let text = format!(
            "server: {{ listen: '127.0.0.1:0', admin_listen: '127.0.0.1:0' }}\n\
             upstream: {{ url: 'http://{upstream}' }}\n\
             cors: {{ origins: [https://app.example.com] }}\n\
             headers: {{ profile: api }}\n\
             {extra}\nroutes:\n  - {route}\n"
        );
        let parsed = load::parse_raw(&text, load::Format::Yaml, &Vec::new(), &[]).expect("config");
        let config = compile::compile_parsed(parsed).expect("config");
        let gateway = runtime
            .block_on(warden_gateway::server::Gateway::start(config))
            .expect("gateway");
        writeln!(to_peer, "run {} {}", gateway.addr, bearer.unwrap_or("")).expect("to peer");
        to_peer.flush().expect("to peer");
        expect("warm");
        let before = dhat::HeapStats::get().total_blocks;
        expect("done");
        let after = dhat::HeapStats::get().total_blocks;
        println!(
            "{name}: {:.1} allocations per request",
            (after - before) as f64 / MEASURED as f64
        );
        runtime.block_on(gateway.shutdown());
    }
    drop(to_peer);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
