//! Audit trail cost per request: building a request event as the gateway does, and sealing it
//! into the hash chain (canonical encoding, SHA-256, the line) and redacting it (the default
//! rules: PII and secret detectors over its free-text fields) as the writer thread does.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use warden::audit::chain::Chain;
use warden::audit::{Action, AuditEvent, Outcome};

fn request_event(n: u64) -> AuditEvent {
    let mut event = AuditEvent::new(Action::Request, Outcome::Success, None);
    // As the gateway builds it: in canonical order, strings into the event's buffer.
    event
        .set("event.duration", 123_456u64)
        .set_text("http.request.method", "GET")
        .set("http.response.status_code", 200)
        .set_text("organization.id", "acme")
        .set_display("source.ip", std::net::Ipv4Addr::LOCALHOST)
        .set_display("url.path", format_args!("/api/v1/agents/{n}"))
        .set_text("user.id", "alice")
        .set_static("warden.auth.method", "jwt")
        .set_static("warden.outcome", "forwarded")
        .set_text("warden.request_id", "422a6084-2248-4495-a5fd-dad9a3e7b1d1")
        .set_text("warden.route", "/api/v1/agents/{agent_id}");
    event
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit");
    group.bench_function("build_request_event", |b| {
        b.iter(|| request_event(std::hint::black_box(42)))
    });
    let mut chain = Chain::new();
    // As the writer seals: into the one buffer it keeps.
    let mut line = Vec::with_capacity(1024);
    group.bench_function("seal_request_event", |b| {
        b.iter_batched(
            || request_event(42),
            |mut event| {
                line.clear();
                chain.seal_into(&mut event, &mut line);
                line.len()
            },
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
    group.bench_function("new_event", |b| {
        b.iter(|| AuditEvent::new(Action::Request, Outcome::Success, None))
    });
    group.bench_function("mask_path", |b| {
        b.iter(|| {
            redactor
                .mask(std::hint::black_box("/api/v1/agents/42"))
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
