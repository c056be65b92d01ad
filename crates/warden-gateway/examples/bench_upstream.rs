//! The upstream of the load benchmarks (`bench/run.sh`): a minimal hyper server that reads each
//! request and answers with a small JSON body (a Chat Completions answer with its token usage on
//! `…/chat/completions`), HTTP/1.1 keep-alive, one Tokio worker per core. It is the "physical
//! limit" scenario when load goes to it directly.
//!
//! `cargo run --release -p warden-gateway --example bench_upstream -- 127.0.0.1:18080`

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"id":"agent-42","status":"ok","items":[1,2,3]}"#;
const CHAT: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion","created":1767225600,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok, the travel guide ships today"},"finish_reason":"stop"}],"usage":{"prompt_tokens":231,"completion_tokens":7,"total_tokens":238}}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_owned())
        .parse()?;
    let listener = TcpListener::bind(addr).await?;
    eprintln!("bench upstream on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let chat = req.uri().path().ends_with("/chat/completions");
                // Read to the end, as a real service does (and as keep-alive needs).
                let _ = req.into_body().collect().await;
                let body = if chat { CHAT } else { BODY };
                let mut response = Response::new(Full::new(Bytes::from_static(body)));
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
}
