//! Path canonicalization cost: the common already-canonical path, and paths that need work.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use warden::canonical::canonicalize;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("canonicalize");
    for (name, path) in [
        ("canonical_short", "/api/v1/agents/42"),
        (
            "canonical_long",
            "/api/v1/tenants/acme/agents/42/runs/2026-11-22/events/stream",
        ),
        ("dot_segments", "/api/v1/./agents/../agents//42"),
        ("escapes", "/api/v1/agents/caf%C3%A9/%61%62%63"),
        ("rejected_encoded_slash", "/api/v1/agents/..%2f..%2fadmin"),
    ] {
        group.bench_function(name, |b| b.iter(|| canonicalize(black_box(path)).is_ok()));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
