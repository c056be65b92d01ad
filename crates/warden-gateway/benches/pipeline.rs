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
use warden_gateway::token::{SigningKey, jwks, now_unix};

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
    let shared = warden_gateway::stack::Shared::none();
    let service = warden_gateway::stack::build_with_leaf(&config, &shared, || {
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

/// The full pipeline: RS256 JWT (served from the verified-token cache after the first request,
/// and verified every time with the cache off), RBAC, a per-identity memory rate limit, CORS and
/// security headers, in front of the same in-place leaf.
fn bench_full(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("warden-pipeline-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = SigningKey::generate(jsonwebtoken::Algorithm::RS256, Some("k1".into())).expect("key");
    let jwks_path = dir.join("jwks.json");
    std::fs::write(
        &jwks_path,
        serde_json::to_vec(&jwks(&[&key])).expect("json"),
    )
    .expect("write");
    let now = now_unix();
    let token = key
        .mint(&serde_json::json!({
            "iss": "https://idp.bench", "aud": "api", "sub": "alice", "iat": now, "exp": now + 86_400,
            "roles": ["viewer"],
        }))
        .expect("mint");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let peer = PeerAddr("127.0.0.1:40000".parse().expect("addr"));
    warden_gateway::admin::metrics_handle();
    let mut group = c.benchmark_group("pipeline");
    for (name, cache) in [("full_jwt_cached", 100_000), ("full_jwt_uncached", 0)] {
        let config = format!(
            r#"
upstream: {{ url: "http://127.0.0.1:9" }}
auth:
  token_cache: {cache}
  jwt:
    - {{ name: bench, issuer: https://idp.bench, audiences: [api], jwks_file: "{}", algorithms: [RS256] }}
authz:
  roles: {{ viewer: ["agents:read"] }}
rate_limits:
  default: {{ limit: 1000000000, per: 1m, key: identity, algorithm: token_bucket }}
cors: {{ origins: [https://app.example.com] }}
routes:
  - {{ path: "/api/v1/agents/{{agent_id}}", methods: [GET], permission: "agents:read" }}
"#,
            jwks_path.display()
        );
        let parsed =
            load::parse_raw(&config, load::Format::Yaml, &Vec::new(), &[]).expect("config");
        let config = compile::compile_parsed(parsed).expect("config");
        let clock: std::sync::Arc<dyn warden::clock::Clock> =
            std::sync::Arc::new(warden::clock::SystemClock);
        let built = runtime
            .block_on(warden_gateway::runtime::Runtime::build(&config, clock))
            .expect("runtime");
        let service = warden_gateway::stack::build_with_leaf(&config, &built.shared, || {
            BoxCloneSyncService::new(tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(body::full(&b"{\"ok\":true}"[..])))
            }))
        })
        .expect("stack");
        let bearer = format!("Bearer {token}");
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                let mut req = Request::builder()
                    .uri("/api/v1/agents/42")
                    .header("host", "gateway.local")
                    .header("authorization", &bearer)
                    .header("origin", "https://app.example.com")
                    .body(body::empty())
                    .expect("request");
                req.extensions_mut().insert(peer);
                let svc = service.clone();
                async move {
                    let status = svc.oneshot(req).await.expect("infallible").status();
                    assert_eq!(status, 200);
                    status
                }
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench, bench_full);
criterion_main!(benches);
