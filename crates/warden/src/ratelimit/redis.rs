//! The shared store: rate-limit state in Redis, so several gateway instances enforce one quota.
//!
//! Each decision is one `EVALSHA` of the algorithm's Lua script (the arithmetic of
//! [`algorithm`](super::algorithm), transcribed; `lua/`), atomic on the server, which reads its
//! own clock (`TIME`) so instances with skewed clocks agree. Scripts are sent by hash and loaded
//! again when the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`). Keys are
//! `prefix{digest}:algorithm`: the digest (SHA-256 of Warden's key, truncated to 128 bits) keeps
//! client IPs and subjects out of Redis and bounds the key length, the braces make the key its
//! own cluster hash slot, and every key carries a TTL of the time its state still matters.
//!
//! One multiplexed connection (reconnecting by itself) carries all decisions, each bounded by the
//! response timeout. A circuit breaker stops asking a failing server and probes until it is back.
//! Keys found over their limit are remembered in-process until they could pass again, so a
//! client hammering a closed limit costs no round trip.

use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::algorithm::{Algorithm, Quota, Verdict};
use super::breaker::{Breaker, BreakerSettings, Position};
use super::store::{RateLimitStore, StoreError};
use crate::budget::{Ask, Budget, BudgetStore, Grant, Reservation};

macro_rules! script {
    ($file:literal) => {
        concat!(
            include_str!("lua/clock.lua"),
            include_str!("lua/prelude.lua"),
            include_str!($file)
        )
    };
}

const FIXED_WINDOW: &str = script!("lua/fixed_window.lua");
const SLIDING_WINDOW_LOG: &str = script!("lua/sliding_window_log.lua");
const SLIDING_WINDOW_COUNTER: &str = script!("lua/sliding_window_counter.lua");
const GCRA: &str = script!("lua/gcra.lua");
const BUDGET_RESERVE: &str = concat!(
    include_str!("lua/clock.lua"),
    include_str!("lua/budget_reserve.lua")
);
const BUDGET_SETTLE: &str = include_str!("lua/budget_settle.lua");

/// Connection and behaviour of the Redis store.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS).
    pub url: String,
    /// Longest wait for one decision.
    pub timeout: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Prefix of every key Warden writes.
    pub key_prefix: String,
    /// When to stop asking a failing server.
    pub breaker: BreakerSettings,
    /// Keys remembered as over their limit (0: no local cache).
    pub over_limit_cache: u64,
    /// TLS trust and client identity for `rediss://` (default: the system's roots, no client
    /// certificate).
    pub tls: RedisTls,
}

/// PEM material for `rediss://`.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// CA certificates to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain and private key, for servers that require mutual TLS.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("RedisTls")
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl RedisSettings {
    /// Defaults for `url`: 50 ms per decision, 1 s to connect, `warden:rl:` keys.
    pub fn new(url: impl Into<String>) -> Self {
        RedisSettings {
            url: url.into(),
            timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            key_prefix: "warden:rl:".to_owned(),
            breaker: BreakerSettings::default(),
            over_limit_cache: 100_000,
            tls: RedisTls::default(),
        }
    }
}

impl RedisSettings {
    /// Whether the URL sends rate-limit traffic (and any password) unencrypted to a host other
    /// than this machine: `redis://` to a non-loopback address.
    pub fn is_plaintext_remote(&self) -> bool {
        let Ok(parsed) = url::Url::parse(&self.url) else {
            return false;
        };
        if parsed.scheme() != "redis" {
            return false;
        }
        // `redis` is not a scheme the URL standard knows, so hosts come back as opaque text.
        let Some(host) = parsed.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => !ip.is_loopback(),
            Err(_) => !host.eq_ignore_ascii_case("localhost"),
        }
    }

    /// Checks a Redis URL parses (scheme, host, port, database) without connecting. The error
    /// never contains the URL, which may hold a password.
    pub fn check_url(url: &str) -> Result<(), String> {
        use redis::IntoConnectionInfo as _;
        // The url crate names the broken part (port, host, …) without quoting the input.
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("no host".to_owned());
        }
        url.into_connection_info().map(drop).map_err(|e| {
            e.detail().map_or_else(
                || "invalid database number or option (redis://host:port/DB)".to_owned(),
                str::to_owned,
            )
        })
    }
}

/// A refusal remembered until the key could pass again.
#[derive(Clone, Debug)]
struct Refused {
    /// When a request of `cost` could pass.
    until: Instant,
    /// When the quota is full again.
    reset: Instant,
    limit: u64,
    cost: u64,
}

struct RefusalExpiry;

impl moka::Expiry<String, Refused> for RefusalExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Refused,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.until.saturating_duration_since(created_at))
    }
}

struct Scripts {
    fixed: redis::Script,
    log: redis::Script,
    counter: redis::Script,
    gcra: redis::Script,
    reserve: redis::Script,
    settle: redis::Script,
}

/// Rate-limit state in Redis (see the module docs).
pub struct RedisStore {
    connection: ConnectionManager,
    scripts: Scripts,
    prefix: String,
    timeout: Duration,
    breaker: Breaker,
    over_limit: Option<moka::sync::Cache<String, Refused>>,
    endpoint: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why the Redis store could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("redis store {endpoint}: {message}")]
pub struct RedisSetupError {
    endpoint: String,
    message: String,
}

impl RedisStore {
    /// A store for `settings.url`. The connection is made on first use and remade whenever it
    /// drops, so the gateway starts (and recovers) while Redis is down; [`RedisStore::ping`]
    /// checks it now. Must be called inside a Tokio runtime.
    pub fn connect(settings: &RedisSettings) -> Result<Self, RedisSetupError> {
        let endpoint = redact(&settings.url);
        let error = |e: redis::RedisError| RedisSetupError {
            endpoint: endpoint.clone(),
            message: e.to_string(),
        };
        let tls = &settings.tls;
        let client = if tls.ca_pem.is_some() || tls.client.is_some() {
            redis::Client::build_with_tls(
                settings.url.as_str(),
                redis::TlsCertificates {
                    client_tls: tls
                        .client
                        .as_ref()
                        .map(|(cert, key)| redis::ClientTlsConfig {
                            client_cert: cert.clone(),
                            client_key: key.clone(),
                        }),
                    root_cert: tls.ca_pem.clone(),
                },
            )
        } else {
            redis::Client::open(settings.url.as_str())
        }
        .map_err(error)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.timeout))
            .set_connection_timeout(Some(settings.connect_timeout))
            // Reconnection is retried in the background; requests meanwhile fail fast and the
            // breaker, not the connection, decides when to try again.
            .set_number_of_retries(2)
            .set_max_delay(settings.connect_timeout);
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(error)?;
        let over_limit = (settings.over_limit_cache > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(settings.over_limit_cache)
                .expire_after(RefusalExpiry)
                .build()
        });
        Ok(RedisStore {
            connection,
            scripts: Scripts {
                fixed: redis::Script::new(FIXED_WINDOW),
                log: redis::Script::new(SLIDING_WINDOW_LOG),
                counter: redis::Script::new(SLIDING_WINDOW_COUNTER),
                gcra: redis::Script::new(GCRA),
                reserve: redis::Script::new(BUDGET_RESERVE),
                settle: redis::Script::new(BUDGET_SETTLE),
            },
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            breaker: Breaker::new("redis", settings.breaker.clone()),
            over_limit,
            endpoint,
        })
    }

    /// `host:port` of the server, without credentials (for logs).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Records the breaker's openings and closings in `sink` (see [`Breaker::audit_to`]).
    pub fn audit_to(&self, sink: std::sync::Arc<dyn crate::audit::AuditSink>) {
        self.breaker.audit_to(sink);
    }

    /// The circuit breaker's position.
    pub fn breaker_position(&self) -> Position {
        self.breaker.position()
    }

    /// Checks the server answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let reply: Result<String, _> = tokio::time::timeout(
            self.timeout.max(Duration::from_secs(1)),
            redis::cmd("PING").query_async(&mut connection),
        )
        .await
        .map_err(|_| StoreError::Backend("ping timed out".to_owned()))?;
        reply
            .map(drop)
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// The Redis key for Warden's `key` under `quota`.
    pub fn redis_key(&self, key: &str, quota: &Quota) -> String {
        let hash = digest::digest(&digest::SHA256, key.as_bytes());
        let tag = match quota.algorithm {
            Algorithm::FixedWindow => "fw",
            Algorithm::SlidingWindowLog => "swl",
            Algorithm::SlidingWindowCounter => "swc",
            Algorithm::TokenBucket | Algorithm::LeakyBucket => "gcra",
        };
        let mut out = String::with_capacity(self.prefix.len() + 32);
        out.push_str(&self.prefix);
        out.push('{');
        URL_SAFE_NO_PAD.encode_string(&hash.as_ref()[..16], &mut out);
        out.push_str("}:");
        out.push_str(tag);
        out
    }

    /// Decides at a caller-supplied time (microseconds since the Unix epoch) instead of the
    /// server's clock, bypassing the breaker and the over-limit cache. For conformance tests
    /// and replays; the gateway never uses it.
    pub async fn hit_at(
        &self,
        key: &str,
        quota: &Quota,
        cost: u64,
        now_us: u64,
    ) -> Result<Verdict, StoreError> {
        let redis_key = self.redis_key(key, quota);
        self.eval(&redis_key, quota, cost, &now_us.to_string())
            .await
    }

    async fn decide(&self, key: &str, quota: &Quota, cost: u64) -> Result<Verdict, StoreError> {
        let redis_key = self.redis_key(key, quota);
        if let Some(verdict) = self.remembered(&redis_key, cost) {
            metrics::counter!("warden_ratelimit_over_limit_cache_hits_total").increment(1);
            return Ok(verdict);
        }
        if !self.breaker.admit() {
            return Err(StoreError::CircuitOpen);
        }
        let result = self.eval(&redis_key, quota, cost, "").await;
        match &result {
            Ok(verdict) => {
                self.breaker.success();
                self.remember(redis_key, cost, verdict);
            }
            Err(error) => {
                metrics::counter!("warden_ratelimit_store_errors_total").increment(1);
                tracing::debug!(target: "warden::ratelimit", %error, endpoint = %self.endpoint, "redis decision failed");
                self.breaker.failure();
            }
        }
        result
    }

    async fn eval(
        &self,
        redis_key: &str,
        quota: &Quota,
        cost: u64,
        now: &str,
    ) -> Result<Verdict, StoreError> {
        let script = match quota.algorithm {
            Algorithm::FixedWindow => &self.scripts.fixed,
            Algorithm::SlidingWindowLog => &self.scripts.log,
            Algorithm::SlidingWindowCounter => &self.scripts.counter,
            Algorithm::TokenBucket | Algorithm::LeakyBucket => &self.scripts.gcra,
        };
        let max_delay = quota
            .shaping_delay_us()
            .map_or(-1, |us| i64::try_from(us).unwrap_or(i64::MAX));
        let mut invocation = script.key(redis_key);
        invocation
            .arg(now)
            .arg(quota.limit)
            .arg(quota.period_us())
            .arg(cost)
            .arg(quota.capacity())
            .arg(max_delay);
        let mut connection = self.connection.clone();
        // The connection enforces the response timeout; this bounds a reload after NOSCRIPT too.
        let reply: Vec<i64> =
            tokio::time::timeout(self.timeout * 3, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| StoreError::Backend("timed out".to_owned()))?
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        verdict(&reply)
    }

    fn remembered(&self, redis_key: &str, cost: u64) -> Option<Verdict> {
        let cache = self.over_limit.as_ref()?;
        let refused = cache.get(redis_key)?;
        let now = Instant::now();
        (refused.until > now && cost >= refused.cost).then(|| Verdict {
            allowed: false,
            limit: refused.limit,
            remaining: 0,
            reset_after: refused.reset.saturating_duration_since(now),
            retry_after: Some(refused.until.saturating_duration_since(now)),
            delay: None,
        })
    }

    fn remember(&self, redis_key: String, cost: u64, verdict: &Verdict) {
        let (Some(cache), Some(retry)) = (&self.over_limit, verdict.retry_after) else {
            return;
        };
        if verdict.allowed || retry.is_zero() {
            return;
        }
        let now = Instant::now();
        cache.insert(
            redis_key,
            Refused {
                until: now + retry,
                reset: now + verdict.reset_after,
                limit: verdict.limit,
                cost,
            },
        );
    }
}

impl RedisStore {
    /// The Redis key of a token budget's `key`.
    pub fn budget_key(&self, key: &str) -> String {
        let hash = digest::digest(&digest::SHA256, key.as_bytes());
        let mut out = String::with_capacity(self.prefix.len() + 32);
        out.push_str(&self.prefix);
        out.push('{');
        URL_SAFE_NO_PAD.encode_string(&hash.as_ref()[..16], &mut out);
        out.push_str("}:tb");
        out
    }

    /// [`BudgetStore::reserve`] at a caller-supplied time (microseconds since the epoch),
    /// bypassing the breaker: for conformance tests; the gateway never uses it.
    pub async fn reserve_at(
        &self,
        key: &str,
        budget: &Budget,
        ask: Ask,
        now_us: u64,
    ) -> Result<Reservation, StoreError> {
        self.eval_reserve(&self.budget_key(key), budget, ask, &now_us.to_string())
            .await
    }

    async fn eval_reserve(
        &self,
        redis_key: &str,
        budget: &Budget,
        ask: Ask,
        now: &str,
    ) -> Result<Reservation, StoreError> {
        let max_output = ask
            .max_output
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut invocation = self.scripts.reserve.key(redis_key);
        invocation
            .arg(now)
            .arg(budget.limit)
            .arg(budget.period_us())
            .arg(ask.prompt)
            .arg(budget.prompt_weight)
            .arg(budget.output_weight)
            .arg(max_output);
        let reply: Vec<i64> = self.invoke(&invocation).await?;
        let &[granted, window, held, output, remaining, reset, fits_ever] = &reply[..] else {
            return Err(StoreError::Backend(format!(
                "unexpected budget reply of {} values",
                reply.len()
            )));
        };
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let reset_after = Duration::from_micros(count(reset));
        Ok(if granted == 1 {
            Reservation::Granted(Grant {
                window: count(window),
                held: count(held),
                output: u64::try_from(output).unwrap_or(u64::MAX),
                remaining: count(remaining),
                reset_after,
            })
        } else {
            Reservation::Refused {
                remaining: count(remaining),
                retry_after: reset_after,
                fits_ever: fits_ever == 1,
            }
        })
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        // The connection enforces the response timeout; this bounds a reload after NOSCRIPT too.
        tokio::time::timeout(self.timeout * 3, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| StoreError::Backend("timed out".to_owned()))?
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// Runs `op` through the breaker, counting failures like rate-limit decisions.
    async fn guarded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.breaker.admit() {
            return Err(StoreError::CircuitOpen);
        }
        let result = op.await;
        match &result {
            Ok(_) => self.breaker.success(),
            Err(error) => {
                metrics::counter!("warden_ratelimit_store_errors_total").increment(1);
                tracing::debug!(target: "warden::ratelimit", %error, endpoint = %self.endpoint, "redis budget operation failed");
                self.breaker.failure();
            }
        }
        result
    }
}

impl BudgetStore for RedisStore {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        budget: &'a Budget,
        ask: Ask,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(async move {
            let redis_key = self.budget_key(key);
            self.guarded(self.eval_reserve(&redis_key, budget, ask, ""))
                .await
        })
    }

    fn settle<'a>(
        &'a self,
        key: &'a str,
        _budget: &'a Budget,
        grant: Grant,
        actual: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let redis_key = self.budget_key(key);
            let mut invocation = self.scripts.settle.key(&redis_key);
            invocation.arg(grant.window).arg(grant.held).arg(actual);
            self.guarded(self.invoke::<i64>(&invocation))
                .await
                .map(drop)
        })
    }
}

impl RateLimitStore for RedisStore {
    fn hit<'a>(
        &'a self,
        key: &'a str,
        quota: &'a Quota,
        cost: u64,
    ) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        Box::pin(self.decide(key, quota, cost))
    }
}

fn verdict(reply: &[i64]) -> Result<Verdict, StoreError> {
    let &[allowed, limit, remaining, reset, retry, delay] = reply else {
        return Err(StoreError::Backend(format!(
            "unexpected script reply of {} values",
            reply.len()
        )));
    };
    let duration = |us: i64| u64::try_from(us).ok().map(Duration::from_micros);
    Ok(Verdict {
        allowed: allowed == 1,
        limit: u64::try_from(limit).unwrap_or(0),
        remaining: u64::try_from(remaining).unwrap_or(0),
        reset_after: duration(reset).unwrap_or_default(),
        retry_after: duration(retry),
        delay: duration(delay),
    })
}

/// `scheme://host:port/db` of a Redis URL, without user or password.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_endpoint_label() {
        assert_eq!(
            redact("redis://user:s3cret@10.0.0.5:6379/2"),
            "redis://10.0.0.5:6379/2"
        );
        assert_eq!(redact("rediss://:p@ss@cache:6380"), "rediss://cache:6380");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn plaintext_to_a_remote_host_is_recognized() {
        let remote = |url: &str| RedisSettings::new(url).is_plaintext_remote();
        assert!(remote("redis://cache.internal:6379"));
        assert!(remote("redis://:pw@10.0.0.5:6379/1"));
        assert!(!remote("rediss://cache.internal:6380"));
        assert!(!remote("redis://127.0.0.1:6379"));
        assert!(!remote("redis://[::1]:6379"));
        assert!(!remote("redis://localhost:6379"));
    }

    #[test]
    fn replies_map_to_verdicts() {
        let v = verdict(&[0, 10, 0, 1_500_000, 250_000, -1]).expect("verdict");
        assert!(!v.allowed);
        assert_eq!(v.retry_after, Some(Duration::from_millis(250)));
        assert_eq!(v.reset_after, Duration::from_millis(1500));
        assert_eq!(v.delay, None);
        assert!(verdict(&[1, 2, 3]).is_err());
    }
}
