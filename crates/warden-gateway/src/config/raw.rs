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
    /// Networks whose forwarding headers are believed.
    pub trusted_proxies: Vec<String>,
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
}

/// `server.timeouts:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTimeouts {
    /// Time for a client to send its request head.
    pub header_read: Option<Scalar>,
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
}

/// `auth:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// Whether routes require an identity unless they say `auth: none` (default true).
    pub required: Option<bool>,
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
}

/// `routes[].body:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBody {
    /// Largest body for this route.
    pub max_bytes: Option<Scalar>,
}
