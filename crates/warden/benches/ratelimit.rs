//! Rate-limit decision cost: in memory with 10k and 1M active keys per algorithm family, and
//! through a local `redis-server` (started on a free loopback port when the binary is present):
//! one decision at a time (latency) and 256 in flight on the one multiplexed connection
//! (throughput: decisions per second from one instance). Token budgets too: counting a 1 KB and
//! a 100 KB prompt, and a reservation with its settlement in memory and in Redis.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use warden::clock::SystemClock;
use warden::ratelimit::algorithm::{Algorithm, Quota};
use warden::ratelimit::memory::MemoryStore;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_memory");
    for keys in [10_000usize, 1_000_000] {
        for algorithm in [
            Algorithm::FixedWindow,
            Algorithm::TokenBucket,
            Algorithm::SlidingWindowCounter,
        ] {
            let store = MemoryStore::new(Arc::new(SystemClock));
            let quota = Quota::new(1_000_000, Duration::from_secs(60), algorithm);
            let names: Vec<String> = (0..keys).map(|i| format!("identity:user-{i}")).collect();
            for name in &names {
                store.decide(name, &quota, 1);
            }
            let mut i = 0usize;
            group.bench_function(format!("{algorithm:?}/{keys}_keys"), |b| {
                b.iter(|| {
                    i = (i + 7919) % keys;
                    black_box(store.decide(&names[i], &quota, 1).allowed)
                })
            });
        }
    }
    group.finish();
}

/// A throwaway redis-server on a free loopback port, killed on drop.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((server, format!("redis://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn bench_redis(c: &mut Criterion) {
    use warden::ratelimit::redis::{RedisSettings, RedisStore};
    use warden::ratelimit::store::RateLimitStore;

    let Some((_server, url)) = start_redis() else {
        eprintln!("redis-server not found: skipping the Redis store benchmarks");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut settings = RedisSettings::new(url);
    settings.timeout = Duration::from_secs(2);
    // Every key stays under its limit: each decision is a real round trip.
    settings.over_limit_cache = 0;
    let store = Arc::new(
        runtime
            .block_on(async { RedisStore::connect(&settings) })
            .expect("store"),
    );
    let mut group = c.benchmark_group("ratelimit_redis");
    for algorithm in [
        Algorithm::FixedWindow,
        Algorithm::TokenBucket,
        Algorithm::SlidingWindowLog,
    ] {
        let quota = Quota::new(1_000_000_000, Duration::from_secs(60), algorithm);
        let quota = if algorithm == Algorithm::SlidingWindowLog {
            Quota::new(10_000, Duration::from_millis(100), algorithm)
        } else {
            quota
        };
        let mut i = 0u64;
        group.bench_function(format!("{algorithm:?}/one_at_a_time"), |b| {
            b.to_async(&runtime).iter(|| {
                i = (i + 1) % 10_000;
                let key = format!("bench:user-{i}");
                let store = store.clone();
                let quota = quota.clone();
                async move { black_box(store.hit(&key, &quota, 1).await.expect("decision")) }
            })
        });
        const IN_FLIGHT: u64 = 256;
        group.throughput(criterion::Throughput::Elements(IN_FLIGHT));
        group.bench_function(format!("{algorithm:?}/{IN_FLIGHT}_in_flight"), |b| {
            b.iter_custom(|batches| {
                runtime.block_on(async {
                    let start = std::time::Instant::now();
                    for _ in 0..batches {
                        let decisions: Vec<_> = (0..IN_FLIGHT)
                            .map(|k| {
                                let store = store.clone();
                                let quota = quota.clone();
                                tokio::spawn(async move {
                                    let key = format!("bench:user-{k}");
                                    store.hit(&key, &quota, 1).await.expect("decision").allowed
                                })
                            })
                            .collect();
                        for decision in decisions {
                            black_box(decision.await.expect("task"));
                        }
                    }
                    start.elapsed()
                })
            })
        });
        group.throughput(criterion::Throughput::Elements(1));
    }
    group.finish();
}

/// A chat body of about `bytes` bytes of English prose.
fn chat_body(bytes: usize) -> String {
    let sentence = "The agent reads the ticket, checks the order history and drafts a reply. ";
    let text: String = sentence.repeat(bytes / sentence.len() + 1)[..bytes].to_owned();
    serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
        .to_string()
}

fn bench_budget(c: &mut Criterion) {
    use warden::budget::{Ask, Budget, BudgetStore, Counter, Reservation};
    let mut group = c.benchmark_group("budget_count");
    for (label, bytes) in [("1KB", 1024), ("100KB", 100 * 1024)] {
        let body = chat_body(bytes);
        Counter::O200k.preload();
        group.throughput(criterion::Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("o200k/{label}"), |b| {
            b.iter(|| black_box(Counter::O200k.prompt_bound(black_box(&body))))
        });
    }
    // The same size where no piece was seen before: the piece cache's misses (the repeated body
    // above is its best case, every piece remembered).
    let mut fresh = 0u64;
    group.throughput(criterion::Throughput::Bytes(1024));
    group.bench_function("o200k/1KB_unseen_pieces", |b| {
        b.iter_batched(
            || {
                let mut text = String::with_capacity(1100);
                while text.len() < 1024 {
                    fresh += 1;
                    text.push_str(&format!(" q{fresh}z"));
                }
                text
            },
            |text| black_box(Counter::O200k.count(&text)),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();

    let budget = Budget::new(1_000_000_000_000, Duration::from_secs(3600));
    let ask = Ask {
        prompt: 300,
        max_output: Some(200),
    };
    let mut group = c.benchmark_group("budget_store");
    let memory = MemoryStore::new(Arc::new(SystemClock));
    let mut i = 0u64;
    group.bench_function("memory/reserve_settle", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            let key = format!("tb:default|sub:user-{i}");
            let Reservation::Granted(grant) = memory.reserve_now(&key, &budget, ask) else {
                panic!("refused");
            };
            memory.settle_now(&key, grant, 420);
        })
    });
    use warden::ratelimit::redis::{RedisSettings, RedisStore};
    if let Some((_server, url)) = start_redis() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut settings = RedisSettings::new(url);
        settings.timeout = Duration::from_secs(2);
        let store = Arc::new(
            runtime
                .block_on(async { RedisStore::connect(&settings) })
                .expect("store"),
        );
        group.bench_function("redis/reserve_settle", |b| {
            b.to_async(&runtime).iter(|| {
                i = (i + 1) % 10_000;
                let key = format!("tb:default|sub:user-{i}");
                let store = store.clone();
                async move {
                    let Reservation::Granted(grant) =
                        store.reserve(&key, &budget, ask).await.expect("reserve")
                    else {
                        panic!("refused");
                    };
                    store
                        .settle(&key, &budget, grant, 420)
                        .await
                        .expect("settle");
                }
            })
        });
    } else {
        eprintln!("redis-server not found: skipping the Redis budget benchmark");
    }
    group.finish();
}

criterion_group!(benches, bench, bench_redis, bench_budget);
criterion_main!(benches);
