//! Content inspection: the prompt-injection pack (folding, one RegexSet pass, blob decoding, the
//! learned model; and without the model) on
//! prose of 1 KB and 50 KB, ASCII and not; secret and PII detection on the same texts, on
//! business prose full of numbers and on the worst shape found (digit groups); and output
//! redaction of a streamed answer, per event.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden::body::format::Format;
use warden::guard::detect::Detectors;
use warden::guard::injection::InjectionRules;
use warden::guard::normalize::Folded;
use warden::guard::output::{OutputGuard, SseFilter};
use warden::guard::stream::{OutputAction, Scanner};

fn prose(size: usize, ascii: bool) -> String {
    let sentence = if ascii {
        "The quarterly report shows revenue growth in every region, and costs held steady. "
    } else {
        "Le rapport trimestriel montre une croissance des revenus dans chaque région — 売上は安定。 "
    };
    let mut text = String::with_capacity(size + sentence.len());
    while text.len() < size {
        text.push_str(sentence);
    }
    text
}

fn bench(c: &mut Criterion) {
    let rules = InjectionRules::new(&[]).expect("default pack");
    let rules_only = InjectionRules::new(&[])
        .expect("default pack")
        .without_model();
    let detectors = Arc::new(Detectors::new(false).expect("detectors"));
    for (name, size) in [("1KB", 1_000), ("50KB", 50_000)] {
        for (script, ascii) in [("ascii", true), ("non_ascii", false)] {
            let text = prose(size, ascii);
            c.bench_function(&format!("injection_scan_{script}_{name}"), |b| {
                b.iter(|| rules.scan(std::hint::black_box(&text)))
            });
            c.bench_function(&format!("injection_rules_only_{script}_{name}"), |b| {
                b.iter(|| rules_only.scan(std::hint::black_box(&text)))
            });
            c.bench_function(&format!("fold_{script}_{name}"), |b| {
                b.iter(|| Folded::new(std::hint::black_box(&text)).text().len())
            });
            c.bench_function(&format!("detect_{script}_{name}"), |b| {
                b.iter(|| detectors.scan(std::hint::black_box(&text)).len())
            });
        }
    }
    // Business prose with numbers, dates, amounts and a contact line in every paragraph: the
    // digit and `:` windows of the detectors are searched often.
    let paragraph = "Invoice 2024-113 for 3 items: total 1,240.50 EUR, due 12/29. Contact Jane at \
                     +44 20 7946 0958 or jane.doe@example.com. Ref: PO-88213, qty=40. ";
    let numbers = paragraph.repeat(50_000 / paragraph.len() + 1);
    c.bench_function("injection_scan_ascii_numbers_50KB", |b| {
        b.iter(|| rules.scan(std::hint::black_box(&numbers)))
    });
    c.bench_function("detect_ascii_numbers_50KB", |b| {
        b.iter(|| detectors.scan(std::hint::black_box(&numbers)).len())
    });
    // The worst shape found for the detectors: digits and separators only, every group a
    // candidate card or phone number that fails its check.
    let digits = "1 ".repeat(25_000);
    c.bench_function("detect_worst_case_digit_groups_50KB", |b| {
        b.iter(|| detectors.scan(std::hint::black_box(&digits)).len())
    });
    c.bench_function("injection_scan_worst_case_digit_groups_50KB", |b| {
        b.iter(|| rules.scan(std::hint::black_box(&digits)))
    });
    stream(c, detectors);
}

/// A 1 KB answer with an address and a card in it, streamed as OpenAI chunks of four
/// characters (≈ one token each), through the SSE filter with PII and secrets redacted.
fn stream(c: &mut Criterion, detectors: Arc<Detectors>) {
    let scanner = Scanner::new(
        detectors,
        Some(OutputAction::Redact),
        Some(OutputAction::Redact),
    )
    .expect("scanner");
    let guard = Arc::new(OutputGuard {
        scanner: Some(Arc::new(scanner)),
        max_chars: None,
        max_bytes: 1 << 20,
        classifiers: Vec::new(),
        segment_chars: 500,
    });
    let mut answer = prose(900, true);
    answer.push_str("Write to jane.doe@example.com, card 4111 1111 1111 1111. ");
    let chars: Vec<char> = answer.chars().collect();
    let events: Vec<String> = chars
        .chunks(4)
        .map(|piece| {
            let piece: String = piece.iter().collect();
            let chunk = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            format!("data: {chunk}\n\n")
        })
        .collect();
    let mut group = c.benchmark_group("output_stream");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("sse_1KB_answer_4_chars_per_event", |b| {
        b.iter(|| {
            let mut filter = SseFilter::new(guard.clone(), &Format::OpenAiChat);
            let mut sent = 0;
            for event in &events {
                sent += filter.feed(event.as_bytes()).expect("filtered").len();
            }
            sent + filter.finish().expect("finished").len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
