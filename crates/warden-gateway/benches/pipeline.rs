//! The whole passthrough pipeline in process (tower `oneshot`, no sockets): identity-header
//! strip, request id, access log + metrics, CORS, security headers, catch-panic, timeout,
//! canonicalization, client IP, routing and limits, with a leaf that answers at once in place
//! of the upstream.
#![allow(missing_docs)]

use std::convert::Infallible;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use warden::body::{self, Body};
use warden::client_ip::PeerAddr;
use warden_gateway::config::{compile, load};

const CONFIG: &str = r#"
upstream: { url: "http://127.0.0.1:9" }
cors: { origins: [https://app.example.com] }
routes:
  - { path: /api/v1/agents, auth: none }
  - { path: "/api/v1/agents/{agent_id}", methods: [GET, POST], auth: none }
"#;

fn bench(c: &mut Criterion) {
    let parsed = load::parse_raw(CONFIG, load::Format::Yaml, &Vec::new(), &[]).expect("config");
    let config = compile::compile_parsed(parsed).expect("config");
    // As in `serve`: the Prometheus recorder is installed, so metrics cost what they cost.
    warden_gateway::admin::metrics_handle();
    let auth = warden_gateway::stack::Auth::none();
    let service = warden_gateway::stack::build_with_leaf(&config, &auth, || {
        BoxCloneSyncService::new(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(body::full(&b"{\"ok\":true}"[..])))
        }))
    })
    .expect("stack");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let peer = PeerAddr("127.0.0.1:40000".parse().expect("addr"));

    let mut group = c.benchmark_group("pipeline");
    for (name, path) in [
        ("passthrough_canonical", "/api/v1/agents/42"),
        ("passthrough_dot_segments", "/api/v1/x/../agents//42"),
        ("not_found", "/nope"),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                let mut req = Request::builder()
                    .uri(path)
                    .header("host", "gateway.local")
                    .header("x-warden-subject", "forged")
                    .header("origin", "https://app.example.com")
                    .body(body::empty())
                    .expect("request");
                req.extensions_mut().insert(peer);
                let svc = service.clone();
                async move { svc.oneshot(req).await.expect("infallible").status() }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
