//! API-key verification: a repeated key served from the cache, and a lookup in the SQLite store
//! (cache disabled), plus a malformed key refused by the checksum alone.
#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use warden::authn::api_key::{ApiKeyAuthenticator, ApiKeySettings, Pepper};
use warden::authn::api_key_sqlite::{NewKey, SqliteKeyStore};
use warden::clock::SystemClock;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("warden-bench-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let store = SqliteKeyStore::open(dir.join("keys.db")).expect("store");
    let pepper = Pepper::new(&[11u8; 32]).expect("pepper");
    let new = NewKey {
        name: "bench".into(),
        tenant: Some("acme".into()),
        roles: vec!["user".into()],
        scopes: vec!["read:agent".into()],
        expires_at: None,
    };
    // A realistic table: the key among 10,000 others.
    for _ in 0..10_000 {
        store.create(&pepper, &new, 0).expect("create");
    }
    let (_, key) = store.create(&pepper, &new, 0).expect("create");
    let store = Arc::new(store);
    let clock = Arc::new(SystemClock);
    let cached = ApiKeyAuthenticator::new(
        ApiKeySettings::default(),
        pepper.clone(),
        store.clone(),
        clock.clone(),
    );
    let uncached = ApiKeyAuthenticator::new(
        ApiKeySettings {
            cache_capacity: 0,
            ..ApiKeySettings::default()
        },
        pepper,
        store,
        clock,
    );
    runtime.block_on(cached.verify(&key)).expect("valid");
    c.bench_function("api_key_verify/cached", |b| {
        b.iter(|| runtime.block_on(cached.verify(&key)).expect("valid"))
    });
    c.bench_function("api_key_verify/sqlite_lookup", |b| {
        b.iter(|| runtime.block_on(uncached.verify(&key)).expect("valid"))
    });
    let mut typo = key.clone().into_bytes();
    typo[10] ^= 1;
    let typo = String::from_utf8(typo).expect("ascii");
    c.bench_function("api_key_verify/bad_checksum", |b| {
        b.iter(|| runtime.block_on(cached.verify(&typo)).expect_err("refused"))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
