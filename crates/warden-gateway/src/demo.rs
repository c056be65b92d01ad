//! `warden demo`: an embedded agent-style upstream, the gateway in front of it with
//! `examples/quickstart.yaml`, and curl commands that show each protection working.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use warden::body::{self, Body};

use crate::config::{self, ConfigErrors, load};
use crate::server::{Gateway, ServerError};

/// The quickstart configuration, embedded so the demo runs from any directory.
pub const QUICKSTART: &str = include_str!("../../../examples/quickstart.yaml");

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The embedded configuration did not compile.
    #[error("demo configuration: {0}")]
    Config(#[from] ConfigErrors),
    /// A listener could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The demo upstream could not start.
    #[error("demo upstream: {0}")]
    Upstream(#[from] std::io::Error),
}

/// Runs the demo until Ctrl-C.
pub async fn run() -> Result<(), DemoError> {
    let upstream = spawn_upstream(
        "127.0.0.1:0"
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await?;
    let raw = load::parse_raw(
        QUICKSTART,
        load::Format::Yaml,
        &load::ProcessEnv,
        &[(
            "upstream.url",
            serde_json::Value::String(format!("http://{upstream}")),
        )],
    )?;
    let config = config::compile::compile_parsed(raw)?;
    let gateway = Gateway::start(config).await?;
    print_instructions(gateway.addr, gateway.admin_addr, upstream);
    let _ = tokio::signal::ctrl_c().await;
    gateway.shutdown().await;
    Ok(())
}

fn print_instructions(addr: SocketAddr, admin: SocketAddr, upstream: SocketAddr) {
    let g = format!("http://{addr}");
    println!(
        r#"Warden demo
  gateway   {g}
  upstream  http://{upstream}   (embedded demo agent API, not exposed)
  admin     http://{admin}      (/healthz /readyz /metrics)

Try these (Ctrl-C stops the demo):

# 1. A normal call: security headers added, Server/X-Powered-By stripped, X-Request-Id set
curl -i {g}/api/v1/agents

# 2. Deny by default: unknown path 404, wrong method 405 with Allow (problem+json bodies)
curl -i {g}/api/v1/admin
curl -i -X DELETE {g}/api/v1/agents

# 3. Path tricks are refused before routing (400), or resolved to one canonical path
curl -i --path-as-is '{g}/api/v1/agents/..%2f..%2fadmin'
curl -i --path-as-is '{g}/api/v1/agents/%2e%2e/agents'

# 4. Forged identity headers never reach the upstream (it echoes what it saw)
curl -s -X POST {g}/api/v1/agents/run -H 'X-Warden-Subject: admin' -H 'x_warden_roles: root' -d '{{"input":"hi"}}'

# 5. Body limits count streamed bytes (chunked too): 413
head -c 100000 /dev/zero | curl -i -X POST {g}/api/v1/agents/run -H 'Transfer-Encoding: chunked' --data-binary @-

# 6. CORS: allowed origin preflight, then a disallowed origin gets no CORS headers
curl -i -X OPTIONS {g}/api/v1/agents/run -H 'Origin: https://app.example.com' -H 'Access-Control-Request-Method: POST'
curl -i {g}/api/v1/agents -H 'Origin: https://evil.example'

# 7. Server-sent events stream through event by event
curl -N {g}/api/v1/agents/42/events

# 8. Metrics
curl -s http://{admin}/metrics | grep warden_requests_total
"#
    );
}

/// Starts the demo agent API on `addr`; returns its bound address.
pub async fn spawn_upstream(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let response = match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
        (&Method::GET, ["api", "v1", "agents"]) => json(
            StatusCode::OK,
            serde_json::json!({"agents": [{"id": "42", "name": "researcher"}, {"id": "7", "name": "coder"}]}),
        ),
        (&Method::POST, ["api", "v1", "agents", "run"]) => {
            let seen: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .filter(|(name, _)| {
                    let n = name.as_str();
                    n.starts_with("x-") || n == "host"
                })
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        value.to_str().unwrap_or("<binary>").into(),
                    )
                })
                .collect();
            let bytes = match req.into_body().collect().await {
                Ok(collected) => collected.to_bytes().len(),
                Err(_) => 0,
            };
            json(
                StatusCode::OK,
                serde_json::json!({"output": "done", "received_bytes": bytes, "headers_seen_by_upstream": seen}),
            )
        }
        (&Method::GET, ["api", "v1", "agents", id, "events"]) => events(id),
        (&Method::GET, ["api", "v1", "agents", id]) => json(
            StatusCode::OK,
            serde_json::json!({"id": id, "name": "researcher"}),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"detail": "Not Found"}),
        ),
    };
    Ok(response)
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(body::full(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    // What a typical FastAPI deployment leaks; the gateway strips both.
    headers.insert(header::SERVER, http::HeaderValue::from_static("uvicorn"));
    headers.insert("x-powered-by", http::HeaderValue::from_static("FastAPI"));
    response
}

fn events(id: &str) -> Response<Body> {
    let id = id.to_owned();
    let stream = futures_util::stream::unfold(0u32, move |n| {
        let id = id.clone();
        async move {
            if n == 3 {
                return None;
            }
            if n > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let event = format!("event: step\ndata: {{\"agent\":\"{id}\",\"step\":{n}}}\n\n");
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), n + 1))
        }
    });
    let mut response = Response::new(body::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}
