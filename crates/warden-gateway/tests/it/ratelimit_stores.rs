//! The rate-limit store conformance suite, run against the in-process store and a real
//! `redis-server`: the same behaviour from both, the Redis scripts verdict-for-verdict equal to
//! the reference arithmetic, and the Redis store's own duties (script reload, hashed keys with
//! TTLs, the over-limit cache, the circuit breaker).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::redis_server::RedisServer;
use warden::clock::SystemClock;
use warden::ratelimit::algorithm::{Algorithm, Quota, State, decide};
use warden::ratelimit::breaker::{BreakerSettings, Position};
use warden::ratelimit::memory::MemoryStore;
use warden::ratelimit::redis::{RedisSettings, RedisStore};
use warden::ratelimit::store::{RateLimitStore, StoreError};

const ALGORITHMS: [Algorithm; 5] = [
    Algorithm::FixedWindow,
    Algorithm::SlidingWindowLog,
    Algorithm::SlidingWindowCounter,
    Algorithm::TokenBucket,
    Algorithm::LeakyBucket,
];

fn quota(limit: u64, per: Duration, algorithm: Algorithm) -> Quota {
    Quota::new(limit, per, algorithm)
}

fn redis_store(server: &RedisServer) -> RedisStore {
    let mut settings = RedisSettings::new(server.url());
    // These tests check the arithmetic, not the decision deadline: a loaded 2-core machine
    // running the rest of the suite alongside can take longer than the production 50 ms.
    settings.timeout = std::time::Duration::from_secs(5);
    RedisStore::connect(&settings).expect("redis store")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64
}

/// A small deterministic generator (xorshift): the sequences are random but reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// The behaviour both stores must show (real clocks).

async fn conformance(store: Arc<dyn RateLimitStore>, run: &str) {
    let minute = Duration::from_secs(60);
    for algorithm in ALGORITHMS {
        // Exactly `limit` pass, remaining counts down, the next is refused with a Retry-After
        // within the period.
        let q = quota(5, minute, algorithm);
        let key = format!("{run}:exact:{algorithm:?}");
        for expected_remaining in (0..5).rev() {
            let v = store.hit(&key, &q, 1).await.expect("hit");
            assert!(v.allowed, "{algorithm:?}");
            assert_eq!(v.limit, 5, "{algorithm:?}");
            assert_eq!(v.remaining, expected_remaining, "{algorithm:?}");
        }
        let refused = store.hit(&key, &q, 1).await.expect("hit");
        assert!(!refused.allowed, "{algorithm:?}: the sixth is refused");
        assert_eq!(refused.remaining, 0);
        let retry = refused.retry_after.expect("retry-after");
        assert!(
            retry > Duration::ZERO && retry <= minute,
            "{algorithm:?}: {retry:?}"
        );
        assert!(refused.reset_after <= minute);

        // Keys are independent.
        let other = format!("{run}:other:{algorithm:?}");
        assert!(store.hit(&other, &q, 1).await.expect("hit").allowed);

        // Cost counts units: 3 + 3 > 5.
        let costly = format!("{run}:cost:{algorithm:?}");
        assert!(store.hit(&costly, &q, 3).await.expect("hit").allowed);
        assert!(!store.hit(&costly, &q, 3).await.expect("hit").allowed);
        assert!(store.hit(&costly, &q, 2).await.expect("hit").allowed);

        // Concurrent hits on one key never over-admit.
        let q = quota(50, minute, algorithm);
        let key = format!("{run}:concurrent:{algorithm:?}");
        // Collected first, so all 200 are in flight before any is awaited.
        let hits: Vec<_> = (0..200)
            .map(|_| {
                let store = store.clone();
                let key = key.clone();
                let q = q.clone();
                tokio::spawn(async move { store.hit(&key, &q, 1).await.expect("hit").allowed })
            })
            .collect();
        let mut admitted = 0;
        for hit in hits {
            admitted += usize::from(hit.await.expect("task"));
        }
        assert_eq!(admitted, 50, "{algorithm:?}: 200 concurrent hits, limit 50");
    }

    // After Retry-After the key passes again (every algorithm that refuses).
    for algorithm in ALGORITHMS {
        let q = quota(2, Duration::from_millis(300), algorithm);
        let key = format!("{run}:recover:{algorithm:?}");
        let mut retry = None;
        for _ in 0..4 {
            let v = store.hit(&key, &q, 1).await.expect("hit");
            if !v.allowed {
                retry = v.retry_after;
                break;
            }
        }
        let retry = retry.unwrap_or_else(|| panic!("{algorithm:?}: never refused"));
        tokio::time::sleep(retry + Duration::from_millis(20)).await;
        assert!(
            store.hit(&key, &q, 1).await.expect("hit").allowed,
            "{algorithm:?}: passes after Retry-After"
        );
    }

    // The leaky bucket as a shaper delays within max_delay, then refuses.
    let mut shaper = quota(10, Duration::from_secs(1), Algorithm::LeakyBucket);
    shaper.burst = Some(1);
    shaper.max_delay = Some(Duration::from_millis(250));
    let key = format!("{run}:shape");
    let mut delays = Vec::new();
    for _ in 0..5 {
        let v = store.hit(&key, &shaper, 1).await.expect("hit");
        delays.push(v.allowed.then(|| v.delay.unwrap_or_default()));
    }
    assert_eq!(delays[0], Some(Duration::ZERO));
    for (i, delay) in delays[1..3].iter().enumerate() {
        let delay = delay.unwrap_or_else(|| panic!("request {} shaped, not refused", i + 2));
        let nominal = Duration::from_millis(100) * (i as u32 + 1);
        // The server's clock moves on between requests; the delay shrinks by that much.
        assert!(
            delay <= nominal && delay + Duration::from_millis(50) > nominal,
            "{delay:?}"
        );
    }
    assert_eq!(&delays[3..], &[None, None], "beyond max_delay: refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    let store: Arc<dyn RateLimitStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    conformance(store, "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let server = RedisServer::start();
    let store: Arc<dyn RateLimitStore> = Arc::new(redis_store(&server));
    conformance(store, "redis").await;
}

// ---------------------------------------------------------------------------------------------
// Verdict-for-verdict equality of the Lua scripts and the reference arithmetic.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_scripts_match_the_reference_arithmetic() {
    let server = RedisServer::start();
    let store = redis_store(&server);
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let base = now_us();
    let mut compared = 0;
    for (case, &(limit, per_ms)) in [
        (1u64, 1_000u64),
        (3, 1_000),
        (7, 2_500),
        (10, 1_000),
        (100, 60_000),
        (13, 86_400_000),
    ]
    .iter()
    .enumerate()
    {
        for algorithm in ALGORITHMS {
            let mut q = quota(limit, Duration::from_millis(per_ms), algorithm);
            if matches!(algorithm, Algorithm::TokenBucket | Algorithm::LeakyBucket) {
                q.burst = Some(1 + rng.below(limit * 2));
            }
            if algorithm == Algorithm::LeakyBucket && case % 2 == 0 {
                q.max_delay = Some(Duration::from_millis(rng.below(per_ms)));
            }
            for sequence in 0..12 {
                let key = format!("diff:{case}:{algorithm:?}:{sequence}");
                let mut state = State::default();
                let mut now = base + rng.below(per_ms * 1000);
                for step in 0..50 {
                    // Bursts at the same instant, small steps, and jumps past the period.
                    now += match rng.below(4) {
                        0 => 0,
                        1 => rng.below(per_ms * 1000 / limit.max(1)),
                        2 => rng.below(per_ms * 1000),
                        _ => rng.below(per_ms * 3000),
                    };
                    let cost = if rng.below(5) == 0 {
                        1 + rng.below(3)
                    } else {
                        1
                    };
                    let expected = decide(&mut state, now, &q, cost);
                    let got = store.hit_at(&key, &q, cost, now).await.expect("redis");
                    assert_eq!(got, expected, "{q:?} sequence {sequence} step {step}");
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 6 * 5 * 12 * 50);
}

// ---------------------------------------------------------------------------------------------
// The Redis store's own duties.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_after_a_flush_and_state_survives() {
    let server = RedisServer::start();
    let store = redis_store(&server);
    let q = quota(3, Duration::from_secs(60), Algorithm::SlidingWindowLog);
    assert!(store.hit("alice", &q, 1).await.expect("hit").allowed);
    assert!(server.command(&["SCRIPT", "FLUSH"]).is_some());
    let v = store.hit("alice", &q, 1).await.expect("hit after NOSCRIPT");
    assert!(v.allowed);
    assert_eq!(
        v.remaining, 1,
        "the state from before the flush still counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_hashed_tagged_and_expire() {
    let server = RedisServer::start();
    let store = redis_store(&server);
    let per = Duration::from_secs(30);
    for algorithm in ALGORITHMS {
        let q = quota(3, per, algorithm);
        store
            .hit("rl:default:alice@example.com", &q, 1)
            .await
            .expect("hit");
    }
    let keys = server.command(&["KEYS", "*"]).expect("keys");
    assert!(
        !keys.contains("alice"),
        "subjects never reach Redis: {keys}"
    );
    let names: Vec<&str> = keys
        .lines()
        .filter(|l| l.starts_with("warden:rl:"))
        .collect();
    // Token and leaky bucket keep the same state (a theoretical arrival time): one key.
    assert_eq!(names.len(), 4, "{keys}");
    for name in names {
        assert!(
            name.contains('{') && name.contains("}:"),
            "one hash slot per key: {name}"
        );
        let ttl = server.command(&["PTTL", name]).expect("pttl");
        let ttl: i64 = ttl.trim_start_matches(':').trim().parse().expect("ttl");
        assert!(
            ttl > 0 && ttl <= 2 * 30_000 + 1,
            "{name} expires (PTTL {ttl})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_keys_are_refused_without_a_round_trip() {
    let server = RedisServer::start();
    let cached = redis_store(&server);
    let mut settings = RedisSettings::new(server.url());
    settings.timeout = Duration::from_secs(5);
    settings.over_limit_cache = 0;
    let uncached = RedisStore::connect(&settings).expect("store");
    let q = quota(2, Duration::from_secs(60), Algorithm::FixedWindow);
    for store in [&cached, &uncached] {
        for _ in 0..2 {
            assert!(store.hit("bob", &q, 1).await.expect("hit").allowed);
        }
        assert!(!store.hit("bob", &q, 1).await.expect("hit").allowed);
        // Forget the server's state: only a local memory of the refusal can still refuse.
        assert!(server.command(&["FLUSHALL"]).is_some());
    }
    let v = cached.hit("bob", &q, 1).await.expect("hit");
    assert!(!v.allowed, "remembered as over limit");
    assert!(v.retry_after.is_some_and(|r| r <= Duration::from_secs(60)));
    assert!(
        uncached.hit("bob", &q, 1).await.expect("hit").allowed,
        "without the cache Redis decides (and was flushed)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_on_a_dead_server_and_closes_when_it_returns() {
    let mut server = RedisServer::start();
    let mut settings = RedisSettings::new(server.url());
    settings.breaker = BreakerSettings {
        failures: 3,
        open_for: Duration::from_millis(200),
        max_open_for: Duration::from_millis(400),
    };
    let store = RedisStore::connect(&settings).expect("store");
    let trail = crate::common::temp_dir("breaker-audit").join("audit.jsonl");
    let sink = std::sync::Arc::new(
        warden::audit::sink::FileSink::start(warden::audit::sink::SinkConfig::new(
            warden::audit::sink::Target::File(trail.clone()),
        ))
        .expect("sink"),
    );
    store.audit_to(sink.clone());
    let q = quota(100, Duration::from_secs(60), Algorithm::TokenBucket);
    assert!(store.hit("carol", &q, 1).await.expect("hit").allowed);

    server.stop();
    let mut backend_errors = 0;
    for _ in 0..10 {
        match store.hit("carol", &q, 1).await {
            Err(StoreError::Backend(_)) => backend_errors += 1,
            Err(StoreError::CircuitOpen) => {}
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => panic!("a stopped server decided"),
        }
    }
    assert_eq!(
        backend_errors, 3,
        "after 3 failures the server is no longer asked"
    );
    assert_eq!(store.breaker_position(), Position::Open);

    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if store.hit("carol", &q, 1).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.breaker_position(), Position::Closed);
    // The trail has the outage once, however many probes failed in between.
    sink.close();
    let actions: Vec<String> = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| {
            e.pointer("/event/action")
                .and_then(|a| a.as_str())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(actions, ["store-circuit-opened", "store-circuit-closed"]);
}

// ---------------------------------------------------------------------------------------------
// Token budgets: the Redis scripts against the reference arithmetic, and the stores' duties.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_scripts_match_the_reference_arithmetic() {
    use warden::budget::BudgetStore as _;
    use warden::budget::algorithm::{self, Ask, Budget, Reservation};
    let server = RedisServer::start();
    let store = redis_store(&server);
    let mut rng = Rng(0xb0d9_e7ed_1234_5678);
    let base = now_us();
    let mut compared = 0;
    for (case, &(limit, per_ms, prompt_weight, output_weight)) in [
        (100u64, 1_000u64, 1u64, 1u64),
        (1_000, 60_000, 1, 1),
        (5_000, 3_600_000, 1, 4),
        (777, 2_500, 2, 1),
        (10_000, 86_400_000, 1, 0),
    ]
    .iter()
    .enumerate()
    {
        let budget = Budget {
            limit,
            period: Duration::from_millis(per_ms),
            prompt_weight,
            output_weight,
        };
        for sequence in 0..10 {
            let key = format!("budget-diff:{case}:{sequence}");
            let mut state = algorithm::State::default();
            let mut now = base + rng.below(per_ms * 1000);
            let mut open = Vec::new();
            for step in 0..60 {
                now += match rng.below(4) {
                    0 => 0,
                    1 => rng.below(per_ms * 10),
                    2 => rng.below(per_ms * 300),
                    _ => rng.below(per_ms * 1500),
                };
                if rng.below(3) == 0 && !open.is_empty() {
                    // Settle an open grant to some real cost (less, or more, than held).
                    let grant: warden::budget::Grant =
                        open.swap_remove(rng.below(open.len() as u64) as usize);
                    let actual = rng.below(grant.held + 20);
                    algorithm::settle(&mut state, grant.window, grant.held, actual);
                    store
                        .settle(&key, &budget, grant, actual)
                        .await
                        .expect("redis settle");
                    continue;
                }
                let ask = Ask {
                    prompt: rng.below(limit / 3 + 1),
                    max_output: match rng.below(3) {
                        0 => None,
                        1 => Some(0),
                        _ => Some(rng.below(limit)),
                    },
                };
                let expected = algorithm::reserve(&mut state, now, &budget, ask);
                let got = store
                    .reserve_at(&key, &budget, ask, now)
                    .await
                    .expect("redis reserve");
                assert_eq!(
                    got, expected,
                    "{budget:?} {ask:?} sequence {sequence} step {step}"
                );
                if let Reservation::Granted(grant) = got {
                    open.push(grant);
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 5 * 10 * 30, "{compared}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_state_survives_a_script_flush_and_keys_expire_with_their_window() {
    use warden::budget::{Ask, Budget, BudgetStore, Reservation};
    let server = RedisServer::start();
    let store = redis_store(&server);
    let budget = Budget::new(1000, Duration::from_secs(60));
    let ask = Ask {
        prompt: 100,
        max_output: Some(200),
    };
    let Reservation::Granted(first) = store
        .reserve("tenant-a", &budget, ask)
        .await
        .expect("reserve")
    else {
        panic!("refused");
    };
    assert_eq!(first.remaining, 700);
    assert!(server.command(&["SCRIPT", "FLUSH"]).is_some());
    store
        .settle("tenant-a", &budget, first, 120)
        .await
        .expect("settle after NOSCRIPT");
    let Reservation::Granted(second) = store
        .reserve("tenant-a", &budget, ask)
        .await
        .expect("reserve")
    else {
        panic!("refused");
    };
    assert_eq!(
        second.remaining,
        1000 - 120 - 300,
        "the settled state counts"
    );
    // The key is hashed (no tenant name in Redis) and expires with its window.
    let key = store.budget_key("tenant-a");
    assert!(!key.contains("tenant-a"));
    let ttl: i64 = server
        .command(&["PTTL", &key])
        .and_then(|t| t.trim_start_matches(':').trim().parse().ok())
        .expect("pttl");
    assert!(ttl > 0 && ttl <= 61_000, "{ttl}");
    // The in-process store gives the same answers.
    let memory = MemoryStore::new(Arc::new(SystemClock));
    let Reservation::Granted(m) = memory
        .reserve("tenant-a", &budget, ask)
        .await
        .expect("memory")
    else {
        panic!("refused");
    };
    assert_eq!((m.output, m.held, m.remaining), (200, 300, 700));
}
