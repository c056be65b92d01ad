//! The configuration loader and compiler, YAML and TOML: any file gets a list of errors or a
//! configuration, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_gateway::config::{compile, load};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let format = if choice % 2 == 0 {
        load::Format::Yaml
    } else {
        load::Format::Toml
    };
    let env: Vec<(String, String)> = Vec::new();
    if let Ok(parsed) = load::parse_raw(text, format, &env, &[]) {
        let _ = compile::compile_parsed(parsed);
    }
});
