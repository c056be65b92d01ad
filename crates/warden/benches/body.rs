//! Body rules on a buffered chat body: JSON safety + schema + format extraction + model rules,
//! the work `BodyRules::check` does per request (one parse; no second pass over the bytes).

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use warden::body::format::Format;
use warden::body::json::{self, JsonLimits};
use warden::body::rules::BodyRules;
use warden::body::schema::Schema;
use warden::guard::models::ModelRules;

/// An OpenAI chat body of about `size` bytes: a system prompt, then alternating turns of prose.
fn chat_body(size: usize) -> Vec<u8> {
    let sentence =
        "The quarterly report shows revenue growth in every region, and costs held steady. ";
    let mut messages = vec![json!({"role": "system", "content": "You are a careful analyst."})];
    let mut length = 200;
    let mut i = 0;
    while length < size {
        let text = sentence.repeat(6);
        length += text.len() + 40;
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": text}));
        i += 1;
    }
    serde_json::to_vec(&json!({
        "model": "gpt-4o-mini",
        "messages": messages,
        "max_completion_tokens": 512,
        "stream": true,
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks up a figure", "parameters": {"type": "object"}}}]
    }))
    .expect("body")
}

fn rules() -> BodyRules {
    let mut rules = BodyRules::new(Format::OpenAiChat);
    rules.schema = Some(Arc::new(
        Schema::compile(&json!({
            "type": "object",
            "required": ["model", "messages"],
            "properties": {
                "model": {"type": "string", "maxLength": 100},
                "messages": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["role"],
                    "properties": {"role": {"enum": ["system", "user", "assistant", "tool"]}}
                }},
                "max_completion_tokens": {"type": "integer", "minimum": 1}
            }
        }))
        .expect("schema"),
    ));
    rules.models = Some(Arc::new(
        ModelRules::new(
            Some(&["openai:gpt-4o*".to_owned()]),
            &["*:*-preview".to_owned()],
        )
        .expect("models"),
    ));
    rules.max_input_chars = Some(1_000_000);
    rules
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    for (name, size) in [("1KB", 1_000), ("100KB", 100_000)] {
        let body = bytes::Bytes::from(chat_body(size));
        assert!(rules.check(&body).is_ok());
        c.bench_function(&format!("body_rules_check_chat_{name}"), |b| {
            b.iter(|| rules.check(std::hint::black_box(&body)).expect("valid"))
        });
        let mut lean = rules.clone();
        lean.schema = None;
        lean.max_input_chars = None;
        c.bench_function(
            &format!("body_rules_check_no_schema_no_length_{name}"),
            |b| b.iter(|| lean.check(std::hint::black_box(&body)).expect("valid")),
        );
        let document = json::parse(&body, &JsonLimits::default()).expect("valid");
        let schema = rules.schema.clone().expect("schema");
        c.bench_function(&format!("schema_only_chat_{name}"), |b| {
            b.iter(|| schema.violations(std::hint::black_box(&document), 20))
        });
        // References: serde_json's own tree, and a scan that builds nothing.
        c.bench_function(&format!("reference_serde_json_value_{name}"), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde_json::Value>(std::hint::black_box(&body))
                    .expect("valid")
            })
        });
        c.bench_function(&format!("reference_serde_json_scan_{name}"), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(std::hint::black_box(&body))
                    .expect("valid")
            })
        });
        c.bench_function(&format!("json_safety_parse_chat_{name}"), |b| {
            b.iter(|| {
                json::parse(std::hint::black_box(&body), &JsonLimits::default()).expect("valid")
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
