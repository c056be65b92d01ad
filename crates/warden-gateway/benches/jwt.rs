//! JWT verification cost per algorithm (uncached: the token cache is disabled), and the cost of
//! a repeated token served from the verified-token cache.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use warden::authn::jwt::{ClaimMapping, JwtAuthenticator, JwtProvider, ProviderSettings};
use warden::authn::keys::{KeySet, StaticKeys};
use warden::authn::sources::{Found, TokenSources};
use warden::clock::SystemClock;
use warden::identity::CredentialSource;
use warden_gateway::token::{SigningKey, jwks, now_unix};

const SECRET: &[u8] = b"benchmark-hmac-secret-of-32-bytes-or-more";

fn authenticator(keys: KeySet, algorithms: Vec<Algorithm>, cache: u64) -> JwtAuthenticator {
    let provider = JwtProvider {
        settings: ProviderSettings {
            name: "bench".into(),
            issuer: "https://bench.test".into(),
            verify_issuer: true,
            audiences: vec!["api".into()],
            verify_audience: true,
            algorithms,
            leeway: Duration::from_secs(30),
            required_claims: Vec::new(),
            max_token_age: None,
            claims: ClaimMapping::default(),
            forward_credentials: false,
            require_bound_tokens: false,
        },
        keys: Arc::new(StaticKeys::new(keys)),
    };
    JwtAuthenticator::new(
        vec![provider],
        TokenSources::default(),
        Arc::new(SystemClock),
        cache,
    )
    .expect("authenticator")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let now = now_unix();
    let claims = serde_json::json!({
        "iss": "https://bench.test", "aud": "api", "sub": "alice", "iat": now, "exp": now + 86_400,
        "roles": ["viewer", "user"], "scope": "read:agent write:agent", "tenant_id": "acme",
    });
    let found = Found {
        token: "",
        source: CredentialSource::AuthorizationHeader,
    };

    let mut group = c.benchmark_group("jwt_verify_uncached");
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ] {
        let (key, keys) = if alg == Algorithm::HS256 {
            let key = SigningKey::from_secret(SECRET, alg, None).expect("key");
            (key, KeySet::from_hmac_secret(SECRET, &[alg]).expect("keys"))
        } else {
            let key = SigningKey::generate(alg, Some("k1".into())).expect("key");
            let document = serde_json::to_vec(&jwks(&[&key])).expect("json");
            let (keys, _) = KeySet::from_jwks(&document, false).expect("jwks");
            (key, keys)
        };
        let token = key.mint(&claims).expect("mint");
        let uncached = authenticator(keys, vec![alg], 0);
        group.bench_function(warden_gateway::token::alg_name(alg), |b| {
            b.iter(|| {
                runtime
                    .block_on(uncached.verify(&token, &found))
                    .expect("valid")
            })
        });
    }
    group.finish();

    let key = SigningKey::generate(Algorithm::RS256, Some("k1".into())).expect("key");
    let document = serde_json::to_vec(&jwks(&[&key])).expect("json");
    let (keys, _) = KeySet::from_jwks(&document, false).expect("jwks");
    let token = key.mint(&claims).expect("mint");
    let cached = authenticator(keys, vec![Algorithm::RS256], 10_000);
    runtime
        .block_on(cached.verify(&token, &found))
        .expect("valid");
    c.bench_function("jwt_verify_cached/RS256", |b| {
        b.iter(|| {
            runtime
                .block_on(cached.verify(&token, &found))
                .expect("valid")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
