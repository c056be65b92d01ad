//! Content inspection: the prompt-injection pack (folding, one RegexSet pass, blob decoding) on
//! prose of 1 KB and 50 KB, ASCII and not.

use criterion::{Criterion, criterion_group, criterion_main};
use warden::guard::injection::InjectionRules;
use warden::guard::normalize::Folded;

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
    for (name, size) in [("1KB", 1_000), ("50KB", 50_000)] {
        for (script, ascii) in [("ascii", true), ("non_ascii", false)] {
            let text = prose(size, ascii);
            c.bench_function(&format!("injection_scan_{script}_{name}"), |b| {
                b.iter(|| rules.scan(std::hint::black_box(&text)))
            });
            c.bench_function(&format!("fold_{script}_{name}"), |b| {
                b.iter(|| Folded::new(std::hint::black_box(&text)).text().len())
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
