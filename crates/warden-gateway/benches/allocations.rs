//! Heap allocations per proxied request, end to end on loopback in one process: a client on
//! one keep-alive connection, the gateway (`Gateway::start`, as `warden serve` runs it, with
//! its JSON access log and metrics recorder), and a minimal upstream. The same requests are
//! sent straight to the upstream first; the difference per request is the gateway's.
//!
//! `cargo bench -p warden-gateway --bench allocations` (counts, not times: DHAT's allocator
//! records every allocation; `WARDEN_DHAT_FILE=dhat.json` also writes where they were made).
#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;

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

/// Allocations per request for `count` requests on one connection to `addr`, after `WARM_UP`.
async fn per_request(addr: SocketAddr, headers: &[(&str, &str)]) -> f64 {
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
                .header("host", "gateway.local");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = request.body(Empty::new()).expect("request");
            sender.ready().await.expect("ready");
            let response = sender.send_request(request).await.expect("response");
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.expect("body");
        }
    };
    send(WARM_UP).await;
    let before = dhat::HeapStats::get().total_blocks;
    send(MEASURED).await;
    let after = dhat::HeapStats::get().total_blocks;
    (after - before) as f64 / MEASURED as f64
}

fn main() {
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let upstream = upstream().await;
        let dir = std::env::temp_dir().join(format!("warden-alloc-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key =
            SigningKey::generate(jsonwebtoken::Algorithm::RS256, Some("k1".into())).expect("key");
        let jwks_path = dir.join("jwks.json");
        std::fs::write(&jwks_path, jwks(&[&key]).to_string()).expect("write");
        let now = now_unix();
        let token = key
            .mint(&serde_json::json!({
                "iss": "https://idp.bench", "aud": "api", "sub": "alice", "iat": now,
                "exp": now + 86_400, "roles": ["viewer"],
            }))
            .expect("mint");
        let bearer = format!("Bearer {token}");
        let full = r#"
auth:
  jwt:
    - { name: bench, issuer: https://idp.bench, audiences: [api], jwks_file: "JWKS", algorithms: [RS256] }
authz:
  roles: { viewer: ["agents:read"] }
rate_limits:
  default: { limit: 1000000000, per: 1m, key: identity, algorithm: token_bucket }
"#;
        let audited = format!(
            "{full}audit: {{ sink: 'file://{}', hash_chain: true }}\n",
            dir.join("audit.jsonl").display()
        );
        let token_headers = vec![
            ("authorization", bearer.as_str()),
            ("origin", "https://app.example.com"),
        ];
        let direct = per_request(upstream, &[]).await;
        println!("direct to the upstream (client + upstream): {direct:.1} allocations per request");
        for (name, extra, headers) in [
            (
                "passthrough",
                "",
                vec![("origin", "https://app.example.com")],
            ),
            (
                "full pipeline (RS256 JWT cached, RBAC, rate limit, CORS, headers)",
                full,
                token_headers.clone(),
            ),
            (
                "the same with a hash-chained audit file",
                audited.as_str(),
                token_headers.clone(),
            ),
        ] {
            let route = if extra.is_empty() {
                r#"{ path: "/api/v1/agents/{agent_id}", methods: [GET], auth: none }"#
            } else {
                r#"{ path: "/api/v1/agents/{agent_id}", methods: [GET], permission: "agents:read" }"#
            };
            let text = format!(
                "server: {{ listen: '127.0.0.1:0', admin_listen: '127.0.0.1:0' }}\n\
                 upstream: {{ url: 'http://{upstream}' }}\n\
                 cors: {{ origins: [https://app.example.com] }}\n\
                 headers: {{ profile: api }}\n\
                 {}\nroutes:\n  - {route}\n",
                extra.replace("JWKS", &jwks_path.display().to_string())
            );
            let parsed =
                load::parse_raw(&text, load::Format::Yaml, &Vec::new(), &[]).expect("config");
            let config = compile::compile_parsed(parsed).expect("config");
            let gateway = warden_gateway::server::Gateway::start(config)
                .await
                .expect("gateway");
            let through = per_request(gateway.addr, &headers).await;
            println!(
                "{name}: {:.1} allocations per request in the gateway ({through:.1} with client and upstream)",
                through - direct
            );
            gateway.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
