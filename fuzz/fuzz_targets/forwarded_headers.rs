//! The forwarded-header parsers (`Forwarded`, `X-Forwarded-For`): never panic, and never return
//! more hops than the headers have elements.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use warden::client_ip::{forwarded_hops, x_forwarded_for_hops};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // Each line is one header: the first byte picks the name, the rest is the value.
    for line in data.split(|&b| b == b'\n') {
        let Some((&kind, value)) = line.split_first() else {
            continue;
        };
        let name = if kind % 2 == 0 {
            "forwarded"
        } else {
            "x-forwarded-for"
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    let elements =
        data.iter().filter(|&&b| b == b',').count() + data.split(|&b| b == b'\n').count();
    assert!(forwarded_hops(&headers).len() <= elements);
    assert!(x_forwarded_for_hops(&headers).len() <= elements);
});
