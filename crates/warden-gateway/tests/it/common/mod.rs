//! Test fixtures: a recording upstream, the gateway on 127.0.0.1:0, and HTTP clients.
#![allow(dead_code, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use warden::body::{self, Body};
use warden_gateway::config::{self, Config, ConfigErrors, compile, load};
use warden_gateway::server::Gateway;

pub mod redis_server;

/// What the upstream received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The whole body, or the error that cut it short.
    pub body: Result<Bytes, String>,
}

/// A recording upstream.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// `/sse` waits on this between its first and second event.
    pub sse_gate: Arc<Notify>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Seen {
        self.requests().pop().expect("the upstream saw a request")
    }
}

/// Starts the upstream on an ephemeral loopback port.
pub async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let upstream = Upstream {
        addr: listener.local_addr().expect("addr"),
        seen: Arc::default(),
        sse_gate: Arc::new(Notify::new()),
    };
    let state = upstream.clone();
    serve(listener, move |req| handle(state.clone(), req));
    upstream
}

pub use warden_gateway::demo::serve;

async fn handle(state: Upstream, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, incoming) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let body = match incoming.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(e.to_string()),
    };
    let body_len = body.as_ref().map(|b| b.len()).unwrap_or(0);
    state.seen.lock().expect("lock").push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers.clone(),
        body,
    });

    if path == "/sse" {
        let gate = state.sse_gate.clone();
        let stream = futures_util::stream::unfold(0u8, move |step| {
            let gate = gate.clone();
            async move {
                match step {
                    0 => Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from("data: first\n\n"))),
                        1,
                    )),
                    1 => {
                        gate.notified().await;
                        Some((Ok(Frame::data(Bytes::from("data: second\n\n"))), 2))
                    }
                    _ => None,
                }
            }
        });
        let mut response = Response::new(body::boxed(StreamBody::new(stream)));
        response
            .headers_mut()
            .insert("content-type", "text/event-stream".parse().expect("value"));
        return Ok(response);
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/big" {
        // 1 MiB, for slow readers (made once: a cheap clone per answer).
        static BIG: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
        let big = BIG.get_or_init(|| Bytes::from(vec![b'x'; 1 << 20])).clone();
        return Ok(Response::new(body::full(big)));
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let mut response = Response::new(body::full("upstream body"));
        *response.status_mut() = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::OK);
        return Ok(response);
    }
    let mut response = Response::new(body::full(
        serde_json::json!({ "path": path, "body_len": body_len }).to_string(),
    ));
    let headers = response.headers_mut();
    headers.insert("content-type", "application/json".parse().expect("value"));
    if path == "/fingerprint" {
        headers.insert("server", "uvicorn".parse().expect("value"));
        headers.insert("x-powered-by", "FastAPI".parse().expect("value"));
        headers.insert("x-frame-options", "SAMEORIGIN".parse().expect("value"));
    }
    if path == "/hop" {
        headers.insert("connection", "x-upstream-private".parse().expect("value"));
        headers.insert("x-upstream-private", "secret".parse().expect("value"));
        headers.insert("keep-alive", "timeout=5".parse().expect("value"));
    }
    Ok(response)
}

/// A gateway in front of an upstream.
pub struct TestGateway {
    pub gateway: Gateway,
    pub upstream: Upstream,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gateway.addr, path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.gateway.addr
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.gateway.admin_addr, path)
    }
}

/// Compiles `yaml` with listeners on ephemeral ports and the upstream at `upstream_url`.
pub fn config_for(yaml: &str, upstream_url: &str) -> Result<Config, ConfigErrors> {
    config_with_env(yaml, upstream_url, &[])
}

/// Like [`config_for`], with environment variables for `${env:…}` references.
pub fn config_with_env(
    yaml: &str,
    upstream_url: &str,
    env: &[(&str, &str)],
) -> Result<Config, ConfigErrors> {
    let overrides = [
        ("server.listen", serde_json::json!("127.0.0.1:0")),
        ("server.admin_listen", serde_json::json!("127.0.0.1:0")),
        ("upstream.url", serde_json::json!(upstream_url)),
    ];
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let parsed = load::parse_raw(yaml, load::Format::Yaml, &env, &overrides)?;
    compile::compile_parsed(parsed)
}

/// An HS256 token over `claims` (`exp` and `iat` are added, ten minutes from now), signed with
/// `secret` and no key id.
pub fn hs256_token(secret: &str, mut claims: serde_json::Value) -> String {
    let key = warden_gateway::token::SigningKey::from_secret(
        secret.as_bytes(),
        jsonwebtoken::Algorithm::HS256,
        None,
    )
    .expect("key");
    let now = warden_gateway::token::now_unix();
    if let Some(map) = claims.as_object_mut() {
        map.entry("iat").or_insert(now.into());
        map.entry("exp").or_insert((now + 600).into());
    }
    key.mint(&claims).expect("mint")
}

/// A fresh temporary directory for this test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("warden-{}-{name}-{n}", std::process::id()));
    // Process ids are reused over a long run (each test is a process under nextest): a directory
    // left by an earlier process with this id must not leak its files (an old key store) in.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts an upstream and a gateway configured by `yaml` in front of it.
pub async fn spawn(yaml: &str) -> TestGateway {
    let upstream = upstream().await;
    spawn_with(yaml, upstream).await
}

/// Starts a gateway configured by `yaml` in front of `upstream`.
pub async fn spawn_with(yaml: &str, upstream: Upstream) -> TestGateway {
    let config = config_for(yaml, &upstream.url()).unwrap_or_else(|e| panic!("config: {e}"));
    spawn_config(config, upstream).await
}

pub async fn spawn_config(config: Config, upstream: Upstream) -> TestGateway {
    let gateway = Gateway::start(config).await.expect("gateway starts");
    TestGateway { gateway, upstream }
}

/// Routes most tests use: everything public, one POST echo with a small body limit.
pub const BASIC: &str = r#"
routes:
  - { path: /echo, methods: [GET, POST, PUT], auth: none }
  - { path: /small, methods: [POST], auth: none, body: { max_bytes: 1KiB } }
  - { path: "/items/{id}", methods: [GET, DELETE], auth: none }
  - { path: "/files/{*rest}", methods: [GET], auth: none }
  - { path: /sse, auth: none }
  - { path: "/slow/{ms}", auth: none }
  - { path: "/status/{code}", auth: none }
  - { path: /fingerprint, auth: none }
  - { path: /hop, auth: none }
  - { path: /admin, auth: none }
"#;

/// An HTTP/1.1 client (no pooling surprises: a fresh pool per call site).
pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// An HTTP/2 cleartext (prior knowledge) client.
pub fn h2_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("json body ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem response with `status`.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let problem = self.json();
        assert_eq!(problem["status"], status);
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:warden:problem:"))
        );
        assert!(problem["title"].is_string());
        let id = self.header("x-request-id").expect("x-request-id");
        assert_eq!(problem["request_id"], id);
        // A schema violation adds its `errors` list; nothing else adds a member.
        let members = if status == 422 { 5 } else { 4 };
        assert_eq!(
            problem.as_object().map(|o| o.len()),
            Some(members),
            "no extra members"
        );
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(client: &Client<HttpConnector, Body>, req: Request<Body>) -> Reply {
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("response in time")
        .expect("response");
    let (parts, incoming) = response.into_parts();
    let body = incoming.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// GET `url`.
pub async fn get(url: &str) -> Reply {
    send(
        &client(),
        request("GET", url).body(body::empty()).expect("request"),
    )
    .await
}

/// A request builder.
pub fn request(method: &str, url: &str) -> http::request::Builder {
    Request::builder().method(method).uri(url)
}

/// Writes raw bytes to `addr` and reads until the peer closes (or 10 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 response.
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// Loads a config file from disk exactly as `warden serve` would.
pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    config::load_with(path, &Vec::new(), &[])
}

/// A loopback address nobody listens on (bound, then released).
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// An address nothing listens on, for an upstream that is down: on 127.0.0.3, which no other
/// test binds (a port merely free a moment ago on 127.0.0.1 can be taken by a concurrent test's
/// listener, and the "dead" upstream would answer).
pub fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.3:0").expect("bind 127.0.0.3");
    listener.local_addr().expect("addr")
}

/// The value of the metric line that starts with `series` (name and labels) on `gw`'s admin
/// listener, 0 when absent. The recorder is process-wide: give series unique labels.
pub async fn metric(gw: &TestGateway, series: &str) -> f64 {
    get(&gw.admin_url("/metrics"))
        .await
        .text()
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A child process killed and reaped when the test ends, however it ends.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
