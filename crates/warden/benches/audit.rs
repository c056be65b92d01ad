//! Audit trail cost per request: building a request event as the gateway does, and sealing it
//! into the hash chain (canonical encoding, SHA-256, the line) and redacting it (the default
//! rules: PII and secret detectors over its free-text fields) as the writer thread does.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use warden::audit::chain::Chain;
use warden::audit::{Action, AuditEvent, Outcome};

fn request_event(n: u64) -> AuditEvent {
    let mut event = AuditEvent::new(Action::Request, Outcome::Success, None);
    event
        .set("event.duration", 123_456u64)
        .set("http.request.method", "GET")
        .set("url.path", format!("/api/v1/agents/{n}"))
        .set("http.response.status_code", 200)
        .set("source.ip", "127.0.0.1")
        .set("user.id", "alice")
        .set("organization.id", "acme")
        .set("warden.route", "/api/v1/agents/{agent_id}")
        .set("warden.outcome", "forwarded")
        .set("warden.request_id", "422a6084-2248-4495-a5fd-dad9a3e7b1d1")
        .set("warden.auth.method", "jwt");
    event
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit");
    group.bench_function("build_request_event", |b| {
        b.iter(|| request_event(std::hint::black_box(42)))
    });
    let mut chain = Chain::new();
    group.bench_function("seal_request_event", |b| {
        b.iter_batched(
            || request_event(42),
            |fields| chain.seal(fields).len(),
            criterion::BatchSize::SmallInput,
        )
    });
    let redactor = warden::audit::redact::Redactor::new(true, &[], &[]).expect("redactor");
    group.bench_function("redact_request_event", |b| {
        b.iter_batched(
            || request_event(42),
            |mut fields| {
                redactor.apply(&mut fields);
                fields.fields().len()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
