//! The output guard's event-stream filter, with PII and secret redaction on: any bytes, cut
//! anywhere, in any of the three dialects, never panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use warden::body::format::Format;
use warden::guard::detect::Detectors;
use warden::guard::output::{OutputGuard, SseFilter};
use warden::guard::stream::{OutputAction, Scanner};

fn guard() -> Arc<OutputGuard> {
    static GUARD: OnceLock<Arc<OutputGuard>> = OnceLock::new();
    GUARD
        .get_or_init(|| {
            let detectors = Arc::new(Detectors::new(false).expect("detectors"));
            let scanner = Scanner::new(
                detectors,
                Some(OutputAction::Redact),
                Some(OutputAction::Redact),
            )
            .expect("scanner");
            Arc::new(OutputGuard {
                scanner: Some(Arc::new(scanner)),
                max_chars: Some(100_000),
                max_bytes: 64 * 1024,
                classifiers: Vec::new(),
                segment_chars: 500,
            })
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the dialect and where the answer is cut into chunks.
    let Some((&choice, answer)) = data.split_first() else {
        return;
    };
    let format = match choice % 3 {
        0 => Format::OpenAiChat,
        1 => Format::OpenAiResponses,
        _ => Format::AnthropicMessages,
    };
    let mut filter = SseFilter::new(guard(), &format);
    let step = usize::from(choice / 3).max(1);
    for chunk in answer.chunks(step) {
        if filter.feed(chunk).is_err() {
            return;
        }
    }
    let _ = filter.finish();
});
