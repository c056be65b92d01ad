//! The in-process rate-limit store holds one million active keys in under 200 MB of resident
//! memory. Each algorithm is measured in a child process of its own (this test binary run again
//! for one algorithm), so memory a previous measurement freed cannot hide in the allocator.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use warden::clock::SystemClock;
use warden::ratelimit::algorithm::{Algorithm, Quota};
use warden::ratelimit::memory::MemoryStore;

const KEYS: usize = 1_000_000;
const BUDGET: u64 = 200 * 1024 * 1024;
const CHILD: &str = "WARDEN_MEMORY_BOUND_ALGORITHM";

/// Resident set size in bytes (Linux).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// The child: fills a store with `KEYS` active keys and prints the resident growth.
#[test]
fn measure_one_algorithm() {
    let algorithm = match std::env::var(CHILD).as_deref() {
        Ok("sliding_window_log") => Algorithm::SlidingWindowLog,
        Ok("token_bucket") => Algorithm::TokenBucket,
        Ok("sliding_window_counter") => Algorithm::SlidingWindowCounter,
        // Not a child run: the parent test below does the work.
        _ => return,
    };
    let before = resident();
    let store = MemoryStore::new(Arc::new(SystemClock));
    let quota = Quota::new(100, Duration::from_secs(60), algorithm);
    let mut key = String::with_capacity(64);
    for i in 0..KEYS {
        key.clear();
        key.push_str("rl:default:user-");
        key.push_str(&i.to_string());
        assert!(store.decide(&key, &quota, 1).allowed);
    }
    assert_eq!(store.len(), KEYS);
    println!("RESIDENT_BYTES={}", resident().saturating_sub(before));
}

#[test]
fn one_million_keys_fit_in_200_mb() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    // The sliding log keeps a timestamp list per key: the most memory of any algorithm.
    for algorithm in [
        "sliding_window_log",
        "sliding_window_counter",
        "token_bucket",
    ] {
        let output = std::process::Command::new(&exe)
            .args(["--exact", "measure_one_algorithm", "--nocapture"])
            .env(CHILD, algorithm)
            .output()
            .expect("child run");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{algorithm}: {stdout}");
        let used: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESIDENT_BYTES="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{algorithm}: no measurement in {stdout}"));
        eprintln!(
            "{algorithm}: {KEYS} keys use {:.1} MB ({} bytes per key)",
            used as f64 / 1_048_576.0,
            used / KEYS as u64
        );
        assert!(used < BUDGET, "{algorithm}: {used} bytes for {KEYS} keys");
    }
}
