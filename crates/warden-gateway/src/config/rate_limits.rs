//! `rate_limits:` and `routes[].rate_limit` — the store, its failure policy, the pre-authentication
//! limit, the default, the tiers, and each route's override, compiled into [`Limit`]s: one typed
//! limit for the global default and the per-route override alike.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use warden::ratelimit::algorithm::{Algorithm, Quota};
use warden::ratelimit::breaker::BreakerSettings;
use warden::ratelimit::layer::{KeyPart, Limit, OnStoreError};
use warden::ratelimit::redis::{RedisSettings, RedisTls};

use super::toolkit::{Compiler, Scalar, Switch};

/// `rate_limits:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimits {
    /// `memory` (default), or a `redis://` / `rediss://` URL.
    pub store: Option<String>,
    /// `fail_closed` (default), `fail_open` or `local`.
    pub on_store_error: Option<String>,
    /// Redis store tuning.
    pub redis: Option<RawRedis>,
    /// Limit by client IP applied before authentication on every route.
    pub pre_auth: Option<RawLimit>,
    /// Limit for routes that set none.
    pub default: Option<RawLimit>,
    /// Named tiers, chosen by role or by the policy's `tier`.
    pub tiers: BTreeMap<String, RawLimit>,
}

/// `rate_limits.redis:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// Longest wait for one decision.
    pub timeout: Option<Scalar>,
    /// Longest wait for a connection.
    pub connect_timeout: Option<Scalar>,
    /// Prefix of Warden's keys.
    pub key_prefix: Option<String>,
    /// Keys remembered locally as over their limit (0 turns the cache off).
    pub over_limit_cache: Option<u64>,
    /// Circuit breaker.
    pub breaker: RawBreaker,
    /// TLS material for `rediss://`.
    pub tls: RawRedisTls,
}

/// `rate_limits.redis.tls:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedisTls {
    /// PEM CA certificates to trust instead of the system roots.
    pub ca_file: Option<String>,
    /// PEM client certificate chain (mutual TLS).
    pub cert_file: Option<String>,
    /// PEM client private key (mutual TLS).
    pub key_file: Option<String>,
}

/// `rate_limits.redis.breaker:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBreaker {
    /// Consecutive failures that open it.
    pub failures: Option<u32>,
    /// First open time.
    pub open_for: Option<Scalar>,
    /// Ceiling of the doubling open time.
    pub max_open_for: Option<Scalar>,
}

/// One limit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimit {
    /// Units per period.
    pub limit: Option<u64>,
    /// The period.
    pub per: Option<Scalar>,
    /// `fixed_window`, `sliding_window` (log), `sliding_window_counter`, `token_bucket`, `leaky_bucket`.
    pub algorithm: Option<String>,
    /// `ip`, `identity`, `api_key`, `tenant`, `route`, `header:NAME`, or several joined by `+`.
    pub key: Option<String>,
    /// Bucket capacity (token/leaky bucket).
    pub burst: Option<u64>,
    /// `shape` delays instead of refusing (leaky bucket), up to `max_delay`.
    pub mode: Option<String>,
    /// Longest shaping delay.
    pub max_delay: Option<Scalar>,
    /// Count and log only.
    pub shadow: Option<bool>,
    /// Send `RateLimit` headers (default true).
    pub headers: Option<bool>,
    /// Tiers only: roles that select the tier.
    pub roles: Vec<String>,
}

/// `routes[].rate_limit`: a limit, or `off`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRouteLimit {
    /// `off` / `false`.
    Switch(Switch),
    /// A limit.
    Limit(RawLimit),
}

/// Where rate-limit state lives.
#[derive(Clone, Debug, Default)]
pub enum StoreConfig {
    /// In this process (default).
    #[default]
    Memory,
    /// In Redis, shared by every instance.
    Redis(RedisSettings),
}

/// What happens to a request when the store cannot decide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreFailure {
    /// 503 (default).
    #[default]
    FailClosed,
    /// Let it through unlimited.
    FailOpen,
    /// Decide in this process instead.
    Local,
}

impl StoreFailure {
    /// What the layer does with an error that reaches it (with `Local` the store has already
    /// fallen back, so nothing should; if it does, refuse).
    pub fn layer_policy(self) -> OnStoreError {
        match self {
            StoreFailure::FailOpen => OnStoreError::FailOpen,
            StoreFailure::FailClosed | StoreFailure::Local => OnStoreError::FailClosed,
        }
    }
}

/// Compiled `rate_limits:`.
#[derive(Clone, Debug, Default)]
pub struct RateLimitsConfig {
    /// The store.
    pub store: StoreConfig,
    /// Store failure policy.
    pub on_error: StoreFailure,
    /// Per-IP limit before authentication.
    pub pre_auth: Option<Limit>,
    /// Limit for routes that set none.
    pub default: Option<Limit>,
    /// Tiers `(name, roles, limit)`.
    pub tiers: Vec<(String, Vec<String>, Limit)>,
}

/// A route's limit.
#[derive(Clone, Debug)]
pub enum RouteLimit {
    /// `rate_limits.default`.
    Inherit,
    /// No limit (health checks).
    Off,
    /// Its own limit.
    Custom(Limit),
}

/// Compiles `rate_limits:`.
pub fn compile(c: &mut Compiler, raw: &RawRateLimits) -> RateLimitsConfig {
    let store = compile_store(c, raw);
    let on_error = c.choice(
        "rate_limits.on_store_error",
        raw.on_store_error.as_deref(),
        &[
            ("fail_closed", StoreFailure::FailClosed),
            ("fail_open", StoreFailure::FailOpen),
            ("local", StoreFailure::Local),
        ],
        StoreFailure::FailClosed,
    );
    let pre_auth = raw
        .pre_auth
        .as_ref()
        .and_then(|l| compile_limit(c, "rate_limits.pre_auth", "pre_auth", l, "ip"));
    if let Some(limit) = &pre_auth
        && limit.key != [KeyPart::ClientIp]
    {
        c.error(
            "rate_limits.pre_auth.key",
            "before authentication only the client IP is known: key: ip",
        );
    }
    let default = raw
        .default
        .as_ref()
        .and_then(|l| compile_limit(c, "rate_limits.default", "default", l, "identity"));
    let tiers = raw
        .tiers
        .iter()
        .filter_map(|(name, l)| {
            let path = format!("rate_limits.tiers.{name}");
            compile_limit(c, &path, name, l, "identity")
                .map(|limit| (name.clone(), l.roles.clone(), limit))
        })
        .collect();
    RateLimitsConfig {
        store,
        on_error,
        pre_auth,
        default,
        tiers,
    }
}

fn compile_store(c: &mut Compiler, raw: &RawRateLimits) -> StoreConfig {
    let path = "rate_limits.store";
    let url = match raw.store.as_deref().map(str::trim) {
        None | Some("memory") => {
            if raw.redis.is_some() {
                c.error(
                    "rate_limits.redis",
                    "applies to a Redis store only (store: redis://host:6379)",
                );
            }
            return StoreConfig::Memory;
        }
        Some(url) => url,
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        c.error(
            path,
            format!(
                "expected memory, redis://host:port or rediss://host:port, got {}",
                c.quoted(path, url)
            ),
        );
        return StoreConfig::Memory;
    }
    if let Err(problem) = RedisSettings::check_url(url) {
        // The message names the problem, never the URL (it may hold a password).
        c.error(path, format!("invalid Redis URL: {problem}"));
        return StoreConfig::Memory;
    }
    let mut settings = RedisSettings::new(url);
    let defaults = RawRedis::default();
    let tuning = raw.redis.as_ref().unwrap_or(&defaults);
    let at = |field: &str| format!("rate_limits.redis.{field}");
    settings.timeout = c.duration(&at("timeout"), tuning.timeout.as_ref(), settings.timeout);
    settings.connect_timeout = c.duration(
        &at("connect_timeout"),
        tuning.connect_timeout.as_ref(),
        settings.connect_timeout,
    );
    if let Some(prefix) = &tuning.key_prefix {
        settings.key_prefix = prefix.clone();
    }
    if let Some(entries) = tuning.over_limit_cache {
        settings.over_limit_cache = entries;
    }
    let defaults = BreakerSettings::default();
    settings.breaker = BreakerSettings {
        failures: match tuning.breaker.failures {
            Some(0) => {
                c.error(at("breaker.failures"), "must be at least 1");
                defaults.failures
            }
            other => other.unwrap_or(defaults.failures),
        },
        open_for: c.duration(
            &at("breaker.open_for"),
            tuning.breaker.open_for.as_ref(),
            defaults.open_for,
        ),
        max_open_for: c.duration(
            &at("breaker.max_open_for"),
            tuning.breaker.max_open_for.as_ref(),
            defaults.max_open_for,
        ),
    };
    settings.tls = compile_redis_tls(c, url, tuning);
    StoreConfig::Redis(settings)
}

fn compile_redis_tls(c: &mut Compiler, url: &str, tuning: &RawRedis) -> RedisTls {
    let raw = &tuning.tls;
    let at = |field: &str| format!("rate_limits.redis.tls.{field}");
    if (raw.ca_file.is_some() || raw.cert_file.is_some() || raw.key_file.is_some())
        && !url.starts_with("rediss://")
    {
        c.error(
            "rate_limits.redis.tls",
            "TLS settings need a rediss:// store URL",
        );
        return RedisTls::default();
    }
    let mut read = |field: &str, file: &Option<String>| {
        let (path, pem) = c.read(&at(field), file.as_deref()?)?;
        if pem.windows(10).any(|w| w == b"-----BEGIN") {
            Some(pem)
        } else {
            c.error(at(field), format!("{} is not a PEM file", path.display()));
            None
        }
    };
    let ca_pem = read("ca_file", &raw.ca_file);
    let cert = read("cert_file", &raw.cert_file);
    let key = read("key_file", &raw.key_file);
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            if !c.has_error(&at("cert_file")) && !c.has_error(&at("key_file")) {
                c.error(
                    "rate_limits.redis.tls",
                    "cert_file and key_file go together (mutual TLS)",
                );
            }
            None
        }
    };
    RedisTls { ca_pem, client }
}

/// Compiles `routes[i].rate_limit`.
pub fn compile_route_limit(
    c: &mut Compiler,
    i: usize,
    name: &str,
    raw: Option<&RawRouteLimit>,
) -> RouteLimit {
    match raw {
        None => RouteLimit::Inherit,
        Some(RawRouteLimit::Switch(switch)) => match switch.as_word() {
            "off" => RouteLimit::Off,
            other => {
                c.error(
                    format!("routes[{i}].rate_limit"),
                    format!("expected a limit or off, got {other:?}"),
                );
                RouteLimit::Inherit
            }
        },
        Some(RawRouteLimit::Limit(limit)) => compile_limit(
            c,
            &format!("routes[{i}].rate_limit"),
            name,
            limit,
            "identity",
        )
        .map_or(RouteLimit::Inherit, RouteLimit::Custom),
    }
}

fn compile_limit(
    c: &mut Compiler,
    path: &str,
    name: &str,
    raw: &RawLimit,
    default_key: &str,
) -> Option<Limit> {
    let before = c.checkpoint();
    let at = |field: &str| format!("{path}.{field}");
    let limit = raw.limit.unwrap_or_else(|| {
        c.error(at("limit"), "required: units per period");
        1
    });
    let per = c.duration(&at("per"), raw.per.as_ref(), Duration::from_secs(60));
    // `sliding_window_log` and `gcra` are accepted as the names other gateways use.
    let algorithm = raw.algorithm.as_deref().map(|name| match name {
        "sliding_window_log" => "sliding_window",
        "gcra" => "token_bucket",
        name => name,
    });
    let algorithm = c.choice(
        &at("algorithm"),
        algorithm,
        &[
            ("fixed_window", Algorithm::FixedWindow),
            ("sliding_window", Algorithm::SlidingWindowLog),
            ("sliding_window_counter", Algorithm::SlidingWindowCounter),
            ("token_bucket", Algorithm::TokenBucket),
            ("leaky_bucket", Algorithm::LeakyBucket),
        ],
        Algorithm::SlidingWindowLog,
    );
    let shape = c.choice(
        &at("mode"),
        raw.mode.as_deref(),
        &[("limit", false), ("shape", true)],
        false,
    );
    if shape && algorithm != Algorithm::LeakyBucket {
        c.error(at("mode"), "shape works with algorithm: leaky_bucket");
    }
    let max_delay = shape.then(|| {
        c.duration(
            &at("max_delay"),
            raw.max_delay.as_ref(),
            Duration::from_millis(500),
        )
    });
    let quota = Quota {
        limit,
        per,
        algorithm,
        burst: raw.burst,
        max_delay,
    };
    if let Err(e) = quota.validate() {
        c.error(path.to_owned(), e.to_string());
    }
    let key = compile_key(c, &at("key"), raw.key.as_deref().unwrap_or(default_key));
    if c.failed_since(before) {
        return None;
    }
    Some(Limit {
        name: name.to_owned(),
        quota,
        key,
        shadow: raw.shadow.unwrap_or(false),
        headers: raw.headers.unwrap_or(true),
    })
}

const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

pub(super) fn compile_key(c: &mut Compiler, path: &str, text: &str) -> Vec<KeyPart> {
    text.split('+')
        .map(str::trim)
        .filter_map(|part| match part {
            "ip" => Some(KeyPart::ClientIp),
            "identity" | "subject" => Some(KeyPart::Subject),
            "api_key" => Some(KeyPart::ApiKey),
            "tenant" => Some(KeyPart::Tenant),
            "route" => Some(KeyPart::Route),
            other => match other.strip_prefix("header:") {
                // Keys come from vetted values: a raw credential would be counted before it is
                // verified (and kept in memory); use identity or api_key instead.
                Some(name) if CREDENTIAL_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) => {
                    c.error(
                        path.to_owned(),
                        format!("{name} carries credentials; key by identity or api_key instead"),
                    );
                    None
                }
                Some(name) => HeaderName::from_bytes(name.as_bytes())
                    .map(KeyPart::Header)
                    .map_err(|_| c.error(path.to_owned(), format!("invalid header name {name:?}")))
                    .ok(),
                None => {
                    c.error(
                        path.to_owned(),
                        format!("unknown key part {other:?} (ip, identity, api_key, tenant, route, header:NAME; join with +)"),
                    );
                    None
                }
            },
        })
        .collect()
}
