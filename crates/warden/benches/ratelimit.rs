//! In-memory rate-limit decision cost with 10k and 1M active keys, per algorithm family.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use warden::clock::SystemClock;
use warden::ratelimit::algorithm::{Algorithm, Quota};
use warden::ratelimit::memory::MemoryStore;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_memory");
    for keys in [10_000usize, 1_000_000] {
        for algorithm in [
            Algorithm::FixedWindow,
            Algorithm::TokenBucket,
            Algorithm::SlidingWindowCounter,
        ] {
            let store = MemoryStore::new(Arc::new(SystemClock));
            let quota = Quota::new(1_000_000, Duration::from_secs(60), algorithm);
            let names: Vec<String> = (0..keys).map(|i| format!("identity:user-{i}")).collect();
            for name in &names {
                store.decide(name, &quota, 1);
            }
            let mut i = 0usize;
            group.bench_function(format!("{algorithm:?}/{keys}_keys"), |b| {
                b.iter(|| {
                    i = (i + 7919) % keys;
                    black_box(store.decide(&names[i], &quota, 1).allowed)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
