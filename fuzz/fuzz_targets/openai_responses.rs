//! The openai_responses extractor on whatever the JSON guard accepts: no panic, and every extracted
//! text is a string at its pointer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::body::format::Format;
use warden::body::json::{JsonLimits, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(document) = parse(data.to_vec().into(), &JsonLimits::default()) else {
        return;
    };
    if let Ok(extracted) = Format::OpenAiResponses.extract(document) {
        for text in &extracted.texts {
            assert!(
                extracted
                    .document()
                    .lookup(&text.pointer)
                    .is_some_and(|v| v.as_str().is_some()),
                "{} is not a string",
                text.pointer
            );
        }
    }
});
