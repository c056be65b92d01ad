//! The anthropic_messages extractor on whatever the JSON guard accepts: no panic, and every extracted
//! text is the string at its pointer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::body::format::Format;
use warden::body::json::{JsonLimits, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(document) = parse(data, &JsonLimits::default()) else {
        return;
    };
    if let Ok(extracted) = Format::AnthropicMessages.extract(document) {
        for text in extracted.texts() {
            let at_pointer = extracted
                .document()
                .lookup(&text.pointer())
                .and_then(|v| v.as_str());
            assert_eq!(
                at_pointer,
                Some(text.content),
                "{} is not its text",
                text.pointer()
            );
        }
    }
});
