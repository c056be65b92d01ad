//! The configuration file as written: serde types with `deny_unknown_fields`.
//!
//! Values that need validation beyond their JSON type (addresses, durations, sizes, URLs,
//! header names) are kept as [`Scalar`]s or strings here and checked in `compile.rs`, which
//! reports every problem at once with its path. Nothing here is used on the request path.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A scalar as written: durations and sizes may be given as `"30s"` / `"10MiB"` or as numbers
/// (seconds / bytes), and an environment override arrives as whatever figment parsed.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    /// A whole number.
    Int(u64),
    /// Text.
    Text(String),
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Listeners, limits, timeouts.
    pub server: RawServer,
    /// Where requests go.
    pub upstream: Option<RawUpstream>,
    /// Authentication requirements.
    pub auth: RawAuth,
    /// Roles and permissions.
    pub authz: RawAuthz,
    /// Rate limits.
    pub rate_limits: RawRateLimits,
    /// CORS policy.
    pub cors: RawCors,
    /// Security response headers.
    pub headers: RawHeaders,
    /// The route table.
    pub routes: Vec<RawRoute>,
}

/// `server:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Public listener address.
    pub listen: Option<String>,
    /// Admin listener address (health, readiness, metrics).
    pub admin_listen: Option<String>,
    /// `production` (default) or `development`.
    pub environment: Option<String>,
    /// Networks whose forwarding header is believed.
    pub trusted_proxies: Vec<String>,
    /// The one header the trusted proxies write: `x-forwarded-for` (default), `forwarded`, or
    /// a single-address header such as `x-real-ip`.
    pub client_ip_header: Option<String>,
    /// The client is this many entries from the right of that header (instead of skipping
    /// trusted networks).
    pub trusted_hops: Option<u64>,
    /// Believe `X-Forwarded-Proto` from trusted proxies (default false).
    pub trust_forwarded_proto: Option<bool>,
    /// Host names served (default: any); other hosts get 404.
    pub hosts: Vec<String>,
    /// Size and count limits.
    pub limits: RawLimits,
    /// Timeouts.
    pub timeouts: RawTimeouts,
}

/// `server.limits:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Largest request body.
    pub max_request_bytes: Option<Scalar>,
    /// Largest request head.
    pub max_header_bytes: Option<Scalar>,
    /// Most request header fields.
    pub max_headers: Option<u64>,
    /// Most open client connections.
    pub max_connections: Option<u64>,
    /// Most open connections from one peer address (default: no cap).
    pub max_connections_per_ip: Option<u64>,
    /// Most concurrent streams on one HTTP/2 connection (default 100).
    pub max_concurrent_streams: Option<u64>,
    /// Most requests in flight across all connections (default 10,000).
    pub max_requests: Option<u64>,
}

/// `server.timeouts:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTimeouts {
    /// Time for a client to send its request head, from accept.
    pub header_read: Option<Scalar>,
    /// Longest wait between two reads of a request body.
    pub body_read: Option<Scalar>,
    /// A connection with no request in flight is closed after this long.
    pub idle: Option<Scalar>,
    /// A connection is drained after this long, however busy.
    pub max_connection_age: Option<Scalar>,
    /// Time from request to response head, end to end.
    pub request: Option<Scalar>,
    /// Time to open an upstream connection.
    pub upstream_connect: Option<Scalar>,
    /// Time for the upstream to send its response head.
    pub upstream_response: Option<Scalar>,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace: Option<Scalar>,
}

/// `upstream:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Base URL of the upstream service.
    pub url: String,
    /// Prefix of gateway-owned identity headers.
    #[serde(default)]
    pub identity_headers: Option<String>,
    /// Most requests in flight to the upstream, each on its own connection (default 1024).
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// Most requests waiting for an upstream connection (default 1024).
    #[serde(default)]
    pub max_pending: Option<u64>,
    /// Bodies up to this size are read whole before the upstream request opens (default
    /// 64KiB; 0 streams every body).
    #[serde(default)]
    pub request_buffer: Option<Scalar>,
    /// Request headers never forwarded (default: rewrite and client-address headers; a
    /// trailing `*` matches a prefix).
    #[serde(default)]
    pub strip_headers: Option<Vec<String>>,
}

/// `auth:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// Whether routes require an identity unless they say `auth: none` (default true).
    pub required: Option<bool>,
    /// JWT / OIDC providers.
    pub jwt: Vec<RawJwtProvider>,
    /// Where bearer tokens are read from.
    pub token_sources: Option<RawTokenSources>,
    /// Entries in the verified-token cache (default 100,000; 0 disables it).
    pub token_cache: Option<u64>,
    /// API keys.
    pub api_keys: Option<RawApiKeys>,
}

/// `auth.api_keys:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApiKeys {
    /// `sqlite://PATH` (relative to the configuration file).
    pub store: Option<String>,
    /// HMAC pepper (must be a secret reference).
    pub pepper: Option<String>,
    /// Header carrying the key (default `X-API-Key`).
    pub header: Option<String>,
    /// Also accept `Authorization: ApiKey <key>` (default false).
    pub authorization_scheme: Option<bool>,
    /// How long a verified key is cached: the revocation bound (default 5s).
    pub cache_ttl: Option<Scalar>,
    /// How often last-use times are written (default 30s).
    pub touch_interval: Option<Scalar>,
    /// How long a lookup waits for a database lock held elsewhere (default 5s).
    pub busy_timeout: Option<Scalar>,
}

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

/// `authz:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthz {
    /// Role -> permissions it grants.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Roles from lowest to highest; each holds the permissions of those before it.
    pub role_hierarchy: Vec<String>,
    /// A Rego policy evaluated on protected routes.
    pub policy: Option<RawPolicy>,
}

/// `authz.policy:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    /// One module file.
    pub file: Option<String>,
    /// Several module files.
    pub files: Vec<String>,
    /// JSON data document file.
    pub data: Option<String>,
    /// Rule deciding (e.g. `data.api.authz.allow`).
    pub allow: Option<String>,
    /// Rule explaining denials (e.g. `data.api.authz.reasons`).
    pub reasons: Option<String>,
    /// Rule naming a rate-limit tier for allowed requests (e.g. `data.api.authz.tier`).
    pub tier: Option<String>,
    /// Request headers exposed to the policy.
    pub headers: Vec<String>,
    /// Evaluation time limit (default 50ms).
    pub timeout: Option<Scalar>,
}

/// A mode word; YAML 1.1 readers turn `off`/`on` into booleans, so those are accepted too.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Switch {
    /// `true` / `false` (`on` / `off`).
    Flag(bool),
    /// A word.
    Text(String),
}

impl Switch {
    /// The word: `true` is `enforce`, `false` is `off`.
    pub fn as_word(&self) -> &str {
        match self {
            Switch::Flag(true) => "enforce",
            Switch::Flag(false) => "off",
            Switch::Text(text) => text,
        }
    }
}

/// `{ all: [...] }` or `{ any: [...] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAllAny {
    /// Every one of these.
    pub all: Option<Vec<String>>,
    /// At least one of these.
    pub any: Option<Vec<String>>,
}

/// `auth.token_sources:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokenSources {
    /// `Authorization: Bearer` (default true).
    pub header: Option<bool>,
    /// Cookie name.
    pub cookie: Option<String>,
    /// Query parameter name.
    pub query: Option<String>,
}

/// One entry of `auth.jwt:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtProvider {
    /// Name for logs and errors.
    pub name: String,
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted audiences.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Check `iss` (default true).
    #[serde(default)]
    pub verify_issuer: Option<bool>,
    /// Check `aud` (default true).
    #[serde(default)]
    pub verify_audience: Option<bool>,
    /// Keys through OIDC discovery from the issuer.
    #[serde(default)]
    pub discovery: Option<bool>,
    /// Keys from a JWKS URL.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Keys from a local JWKS file.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// HMAC secret (must be a secret reference).
    #[serde(default)]
    pub secret: Option<String>,
    /// Accepted algorithms (required).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Clock skew tolerance (default 30s).
    #[serde(default)]
    pub leeway: Option<Scalar>,
    /// Claims that must be present.
    #[serde(default)]
    pub required_claims: Option<Vec<String>>,
    /// Longest session (from `auth_time`, else `iat`).
    #[serde(default)]
    pub max_token_age: Option<Scalar>,
    /// Identity claim mapping.
    #[serde(default)]
    pub claims: Option<RawClaims>,
    /// Forward the token upstream (default false).
    #[serde(default)]
    pub forward_credentials: Option<bool>,
    /// Remote key cache tuning.
    #[serde(default)]
    pub jwks: Option<RawJwks>,
}

/// `auth.jwt[].claims:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClaims {
    /// Subject claim (default `sub`).
    pub subject: Option<String>,
    /// Roles claim (default `roles`).
    pub roles: Option<String>,
    /// Scopes claim (default `scope`).
    pub scopes: Option<String>,
    /// Tenant claim (default none).
    pub tenant: Option<String>,
}

/// `auth.jwt[].jwks:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwks {
    /// Least time between unknown-kid refetches (default 30s).
    pub min_refresh_interval: Option<Scalar>,
    /// TTL without `max-age` (default 10m).
    pub default_ttl: Option<Scalar>,
    /// Lower clamp of `max-age` (default 1m).
    pub min_ttl: Option<Scalar>,
    /// Upper clamp of `max-age` (default 24h).
    pub max_ttl: Option<Scalar>,
    /// Serve last good keys this long past their TTL (default 1h).
    pub stale_if_error: Option<Scalar>,
    /// Request timeout (default 5s).
    pub timeout: Option<Scalar>,
    /// Largest document (default 256KiB).
    pub max_bytes: Option<Scalar>,
    /// Longest retry pause (default 1m).
    pub max_backoff: Option<Scalar>,
    /// Extra trusted CA (PEM file).
    pub ca_file: Option<String>,
    /// `wait` (default) or `not_ready`.
    pub startup: Option<String>,
    /// How long `wait` waits (default 30s).
    pub startup_timeout: Option<Scalar>,
}

/// `routes[].step_up:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStepUp {
    /// Acceptable `acr` values.
    pub acr: Vec<String>,
    /// Longest time since authentication.
    pub max_age: Option<Scalar>,
}

/// `cors:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCors {
    /// Allowed origins, exact (`https://app.example.com`).
    pub origins: Vec<String>,
    /// Extra origins allowed only in `environment: development`.
    pub development_origins: Vec<String>,
    /// Allowed methods.
    pub methods: Option<Vec<String>>,
    /// Allowed request headers.
    pub headers: Option<Vec<String>>,
    /// Response headers exposed to scripts.
    pub expose_headers: Option<Vec<String>>,
    /// Whether credentials (cookies, Authorization) may be sent.
    pub credentials: bool,
    /// How long browsers may cache a preflight.
    pub max_age: Option<Scalar>,
}

/// `headers:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaders {
    /// `api` (default), `browser` or `none`.
    pub profile: Option<String>,
    /// Headers always set on responses.
    pub set: BTreeMap<String, String>,
    /// Headers removed from responses.
    pub remove: Vec<String>,
}

/// One entry of `routes:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Name for logs and metrics (default: the path template).
    #[serde(default)]
    pub name: Option<String>,
    /// Path template: `/api/v1/agents/{agent_id}`, `/files/{*rest}`.
    pub path: String,
    /// Methods (default `[GET]`; `HEAD` follows `GET`).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// `none` makes the route public; `required` (or absent, with `auth.required`) needs identity.
    #[serde(default)]
    pub auth: Option<String>,
    /// Body limits for this route.
    #[serde(default)]
    pub body: Option<RawBody>,
    /// RFC 9470 step-up requirement.
    #[serde(default)]
    pub step_up: Option<RawStepUp>,
    /// Forward the client's credentials upstream (default false).
    #[serde(default)]
    pub forward_credentials: Option<bool>,
    /// One permission the identity's roles must grant.
    #[serde(default)]
    pub permission: Option<String>,
    /// Permissions: all or any.
    #[serde(default)]
    pub permissions: Option<RawAllAny>,
    /// Lowest role in the hierarchy that may call the route.
    #[serde(default)]
    pub roles_at_least: Option<String>,
    /// OAuth scopes: all or any.
    #[serde(default)]
    pub scopes: Option<RawAllAny>,
    /// Path parameter that must equal the identity's tenant.
    #[serde(default)]
    pub tenant_param: Option<String>,
    /// Request header that must equal the identity's tenant.
    #[serde(default)]
    pub tenant_header: Option<String>,
    /// `enforce` (default when `authz.policy` is set), `shadow` (evaluate and log only) or `off`.
    #[serde(default)]
    pub policy: Option<Switch>,
    /// This route's rate limit, or `off` (default: `rate_limits.default`).
    #[serde(default)]
    pub rate_limit: Option<RawRouteLimit>,
    /// `authenticated`: any authenticated identity may call the route (an explicit choice:
    /// without it, a protected route must name a requirement).
    #[serde(default)]
    pub authorize: Option<String>,
}

/// `routes[].body:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBody {
    /// Largest body for this route.
    pub max_bytes: Option<Scalar>,
}
