//! The JSON guard against serde_json: whatever the guard accepts, serde_json reads as the same
//! value (no parser differential), and nothing panics or overflows the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::body::json::{JsonLimits, parse};

fuzz_target!(|data: &[u8]| {
    let limits = JsonLimits {
        max_depth: JsonLimits::MAX_DEPTH,
        ..JsonLimits::default()
    };
    if let Ok(document) = parse(data, &limits) {
        let reference: serde_json::Value =
            serde_json::from_slice(data).expect("serde_json rejects what the guard accepted");
        assert_eq!(
            document.to_value(),
            reference,
            "the guard and serde_json read different values"
        );
    }
});
