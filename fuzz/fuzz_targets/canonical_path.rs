//! Path canonicalization: never panics, and what it accepts is canonical — it starts with `/`
//! and canonicalizing it again changes nothing (one canonical form per path).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::canonical::canonicalize;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(canonical) = canonicalize(path) {
        assert!(canonical.starts_with('/'), "{canonical:?}");
        let again = canonicalize(&canonical).expect("a canonical path is accepted again");
        assert_eq!(again, canonical, "canonicalization is not idempotent");
    }
});
