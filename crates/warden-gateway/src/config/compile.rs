//! Raw configuration -> typed [`Config`]: every value parsed once, every error collected.
//!
//! The request path never sees a raw string: addresses, durations, sizes, header names and
//! values, methods and URLs are all parsed here. Defaults are the secure ones; a key left out
//! never weakens security.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};
use ipnet::IpNet;
use warden::client_ip::TrustedProxies;
use warden::headers::{Profile, SecurityHeaders};
use warden::identity_headers::IdentityPrefix;

use super::load::Parsed;
use super::raw::{RawConfig, RawCors, RawHeaders, RawRoute, RawServer, RawUpstream, Scalar};
use super::{ConfigError, ConfigErrors};

/// The compiled configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listeners, limits, timeouts.
    pub server: Server,
    /// The upstream service.
    pub upstream: Upstream,
    /// Authentication.
    pub auth: super::auth::AuthConfig,
    /// Roles and their permissions (hierarchy folded in).
    pub roles: std::sync::Arc<warden::authz::rbac::RoleTable>,
    /// Rate limits.
    pub rate_limits: super::ratelimit::RateLimitsConfig,
    /// CORS, if any origin is allowed.
    pub cors: Option<CorsConfig>,
    /// Security response headers.
    pub headers: SecurityHeaders,
    /// Routes in file order.
    pub routes: Vec<RouteConfig>,
}

/// `environment:`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    /// Everything strict.
    Production,
    /// Allows `cors.development_origins`.
    Development,
}

/// `server:`
#[derive(Clone, Debug)]
pub struct Server {
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Production or development.
    pub environment: Environment,
    /// Proxies whose forwarding header is believed (and which header).
    pub trusted_proxies: TrustedProxies,
    /// Believe `X-Forwarded-Proto` from trusted proxies.
    pub trust_forwarded_proto: bool,
    /// Host names served, lowercase without port (empty: any).
    pub hosts: Vec<String>,
    /// Limits.
    pub limits: Limits,
    /// Timeouts.
    pub timeouts: Timeouts,
}

/// `server.limits:`
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body (default 10 MiB).
    pub max_request_bytes: u64,
    /// Largest request head (default 16 KiB).
    pub max_header_bytes: usize,
    /// Most request header fields (default 100).
    pub max_headers: usize,
    /// Most concurrent client connections (default 10,000).
    pub max_connections: usize,
    /// Most connections from one peer address (default: no cap).
    pub max_connections_per_ip: Option<usize>,
    /// Most concurrent streams per HTTP/2 connection (default 100).
    pub max_concurrent_streams: u32,
    /// Most requests in flight across all connections (default 10,000).
    pub max_requests: usize,
}

/// `server.timeouts:`
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Request head must arrive within, from accept (default 10 s).
    pub header_read: Duration,
    /// Longest pause between two reads of a request body (default 15 s).
    pub body_read: Duration,
    /// A connection with no request in flight closes after (default 60 s).
    pub idle: Duration,
    /// A connection is drained after (default 1 h).
    pub max_connection_age: Duration,
    /// Response head must be ready within (default 60 s).
    pub request: Duration,
    /// Upstream TCP connect (default 5 s).
    pub upstream_connect: Duration,
    /// Upstream response head (default 60 s).
    pub upstream_response: Duration,
    /// In-flight requests get this long at shutdown (default 30 s).
    pub shutdown_grace: Duration,
}

/// `upstream:`
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Scheme (`http`).
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
    /// Path prefix prepended to the canonical path, without a trailing slash (may be empty).
    pub base_path: String,
    /// Prefix of gateway-owned identity headers.
    pub identity_prefix: IdentityPrefix,
    /// Most requests in flight to the upstream (default 1024).
    pub max_connections: usize,
    /// Most requests waiting for an upstream connection (default 1024).
    pub max_pending: usize,
    /// Bodies up to this many bytes are read whole before the upstream request (0: off).
    pub request_buffer: usize,
    /// Request headers never forwarded.
    pub strip_headers: crate::proxy::StripHeaders,
}

/// `cors:`
#[derive(Clone, Debug)]
pub struct CorsConfig {
    /// Exact allowed origins (`scheme://host[:port]`, lowercase); empty with `any_origin`.
    pub origins: Vec<HeaderValue>,
    /// `origins: ["*"]` (never with credentials).
    pub any_origin: bool,
    /// Allowed methods.
    pub methods: Vec<Method>,
    /// Allowed request headers.
    pub headers: Vec<HeaderName>,
    /// Exposed response headers.
    pub expose_headers: Vec<HeaderName>,
    /// Whether credentials are allowed.
    pub credentials: bool,
    /// Preflight cache lifetime.
    pub max_age: Duration,
}

/// One route.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// Name for logs and metrics.
    pub name: String,
    /// Path template for matchit.
    pub path: String,
    /// Allowed methods.
    pub methods: Vec<Method>,
    /// `auth: none`.
    pub public: bool,
    /// Body limit.
    pub max_body_bytes: u64,
    /// RFC 9470 step-up requirement.
    pub step_up: Option<warden::authn::StepUp>,
    /// Forward the client's credentials upstream.
    pub forward_credentials: bool,
    /// Authorization requirements (empty: any authenticated identity, by explicit choice).
    pub requirements: Vec<warden::authz::Requirement>,
    /// Rate limit.
    pub rate_limit: super::ratelimit::RouteLimit,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

pub(super) struct Compiler {
    pub(super) errors: Vec<ConfigError>,
    upstream_failed: bool,
    routes_failed: bool,
    pub(super) secret_paths: Vec<String>,
    pub(super) base_dir: Option<std::path::PathBuf>,
}

impl Compiler {
    /// `text` quoted for an error message, unless it came from a secret reference: a value that
    /// fails validation must not print the secret it resolved to.
    pub(super) fn quoted(&self, path: &str, text: &str) -> String {
        if self.secret_paths.iter().any(|p| p == path) {
            super::load::HIDDEN.to_owned()
        } else {
            format!("{text:?}")
        }
    }

    fn shown(&self, path: &str, value: Option<&Scalar>) -> String {
        match value {
            Some(Scalar::Int(n)) => n.to_string(),
            Some(Scalar::Text(t)) => self.quoted(path, t),
            None => "nothing".into(),
        }
    }

    /// Whether a problem is already reported at `path` (so follow-on checks stay quiet).
    pub(super) fn has_error(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
    }

    pub(super) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn addr(&mut self, path: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let text = value.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.error(
                path,
                format!(
                    "expected an address like 127.0.0.1:8080, got {}",
                    self.quoted(path, text)
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        value: Option<&Scalar>,
        default: Duration,
    ) -> Duration {
        let parsed = match value {
            None => return default,
            Some(Scalar::Int(secs)) => Some(Duration::from_secs(*secs)),
            Some(Scalar::Text(text)) => humantime::parse_duration(text.trim()).ok(),
        };
        match parsed {
            Some(d) if !d.is_zero() => d,
            _ => {
                self.error(
                    path,
                    format!(
                        "expected a positive duration like 30s, 5m or 1h, got {}",
                        self.shown(path, value)
                    ),
                );
                default
            }
        }
    }

    pub(super) fn size(&mut self, path: &str, value: Option<&Scalar>, default: u64) -> u64 {
        let parsed = match value {
            None => return default,
            Some(Scalar::Int(bytes)) => Some(*bytes),
            Some(Scalar::Text(text)) => text
                .trim()
                .parse::<bytesize::ByteSize>()
                .ok()
                .map(|b| b.as_u64()),
        };
        match parsed {
            Some(b) if b > 0 => b,
            _ => {
                self.error(
                    path,
                    format!(
                        "expected a positive size like 16KiB or 10MiB, got {}",
                        self.shown(path, value)
                    ),
                );
                default
            }
        }
    }

    pub(super) fn header_name(&mut self, path: &str, name: &str) -> Option<HeaderName> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| {
                let shown = self.quoted(path, name);
                self.error(path, format!("invalid header name {shown}"))
            })
            .ok()
    }

    fn method(&mut self, path: &str, name: &str) -> Option<Method> {
        let upper = name.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(m) if m != Method::CONNECT && m != Method::TRACE => Some(m),
            Ok(_) => {
                self.error(path, format!("method {upper} is not proxied"));
                None
            }
            Err(_) => {
                self.error(path, format!("invalid method {name:?}"));
                None
            }
        }
    }
}

/// Compiles a raw configuration, reporting every problem at once.
pub fn compile(raw: RawConfig) -> Result<Config, ConfigErrors> {
    compile_parsed(Parsed {
        raw,
        errors: Vec::new(),
        secret_paths: Vec::new(),
        secret_values: Vec::new(),
        base_dir: None,
    })
}

/// Compiles a parsed file, reporting its structural errors and every semantic one together.
pub fn compile_parsed(parsed: Parsed) -> Result<Config, ConfigErrors> {
    let Parsed {
        raw,
        errors,
        secret_paths,
        secret_values,
        base_dir,
    } = parsed;
    // A section that failed to deserialize was left at its default; do not also report it
    // as missing.
    let failed = |section: &str| errors.iter().any(|e| e.path.starts_with(section));
    let (upstream_failed, routes_failed) = (failed("upstream"), failed("routes"));
    let mut c = Compiler {
        errors,
        upstream_failed,
        routes_failed,
        secret_paths,
        base_dir,
    };
    let server = compile_server(&mut c, &raw.server);
    let upstream = compile_upstream(&mut c, raw.upstream.as_ref());
    let cors = compile_cors(&mut c, &raw.cors, server.environment);
    let headers = compile_headers(&mut c, &raw.headers);
    let auth = super::auth::compile_auth(&mut c, &raw.auth, server.environment);
    let roles = compile_roles(&mut c, &raw.authz);
    let policy = compile_policy(&mut c, raw.authz.policy.as_ref());
    let rate_limits = super::ratelimit::compile_rate_limits(&mut c, &raw.rate_limits);
    let routes = compile_routes(
        &mut c,
        &raw.routes,
        &auth,
        &roles,
        policy.as_ref(),
        &server.limits,
    );
    if c.errors.is_empty() {
        Ok(Config {
            server,
            upstream,
            auth,
            roles: std::sync::Arc::new(roles),
            rate_limits,
            cors,
            headers,
            routes,
        })
    } else {
        let mut errors = c.errors;
        super::load::scrub(&mut errors, &secret_values);
        Err(ConfigErrors(errors))
    }
}

fn compile_server(c: &mut Compiler, raw: &RawServer) -> Server {
    let environment = match raw.environment.as_deref() {
        None | Some("production") => Environment::Production,
        Some("development") => Environment::Development,
        Some(other) => {
            c.error(
                "server.environment",
                format!("expected production or development, got {other:?}"),
            );
            Environment::Production
        }
    };
    let mut networks = Vec::new();
    for (i, text) in raw.trusted_proxies.iter().enumerate() {
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
        let path = format!("server.trusted_proxies[{i}]");
        match parsed {
            Ok(net) => networks.push(net.trunc()),
            Err(_) => c.error(
                path.clone(),
                format!(
                    "expected an address or CIDR network like 10.0.0.0/8, got {}",
                    c.quoted(&path, text)
                ),
            ),
        }
    }
    let l = &raw.limits;
    let max_header_bytes = c.size(
        "server.limits.max_header_bytes",
        l.max_header_bytes.as_ref(),
        16 * 1024,
    );
    if max_header_bytes > 1024 * 1024 {
        c.error("server.limits.max_header_bytes", "must be at most 1MiB");
    }
    let limits = Limits {
        max_request_bytes: c.size(
            "server.limits.max_request_bytes",
            l.max_request_bytes.as_ref(),
            10 * 1024 * 1024,
        ),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_headers: positive(c, "server.limits.max_headers", l.max_headers, 100),
        max_connections: positive(
            c,
            "server.limits.max_connections",
            l.max_connections,
            10_000,
        ),
        max_connections_per_ip: l
            .max_connections_per_ip
            .map(|n| positive(c, "server.limits.max_connections_per_ip", Some(n), 1)),
        max_concurrent_streams: u32::try_from(positive(
            c,
            "server.limits.max_concurrent_streams",
            l.max_concurrent_streams,
            100,
        ))
        .unwrap_or(u32::MAX),
        max_requests: positive(c, "server.limits.max_requests", l.max_requests, 10_000),
    };
    let t = &raw.timeouts;
    let timeouts = Timeouts {
        header_read: c.duration(
            "server.timeouts.header_read",
            t.header_read.as_ref(),
            secs(10),
        ),
        body_read: c.duration("server.timeouts.body_read", t.body_read.as_ref(), secs(15)),
        idle: c.duration("server.timeouts.idle", t.idle.as_ref(), secs(60)),
        max_connection_age: c.duration(
            "server.timeouts.max_connection_age",
            t.max_connection_age.as_ref(),
            secs(3600),
        ),
        request: c.duration("server.timeouts.request", t.request.as_ref(), secs(60)),
        upstream_connect: c.duration(
            "server.timeouts.upstream_connect",
            t.upstream_connect.as_ref(),
            secs(5),
        ),
        upstream_response: c.duration(
            "server.timeouts.upstream_response",
            t.upstream_response.as_ref(),
            secs(60),
        ),
        shutdown_grace: c.duration(
            "server.timeouts.shutdown_grace",
            t.shutdown_grace.as_ref(),
            secs(30),
        ),
    };
    Server {
        listen: c.addr("server.listen", raw.listen.as_deref(), DEFAULT_LISTEN),
        admin_listen: c.addr(
            "server.admin_listen",
            raw.admin_listen.as_deref(),
            DEFAULT_ADMIN_LISTEN,
        ),
        environment,
        trusted_proxies: compile_client_ip(c, raw, networks),
        trust_forwarded_proto: raw.trust_forwarded_proto.unwrap_or(false),
        hosts: compile_hosts(c, &raw.hosts),
        limits,
        timeouts,
    }
}

fn compile_client_ip(c: &mut Compiler, raw: &RawServer, networks: Vec<IpNet>) -> TrustedProxies {
    use warden::client_ip::ClientIpHeader;
    let path = "server.client_ip_header";
    let header = match raw.client_ip_header.as_deref().map(str::to_ascii_lowercase) {
        None => ClientIpHeader::XForwardedFor,
        Some(name) if name == "x-forwarded-for" => ClientIpHeader::XForwardedFor,
        Some(name) if name == "forwarded" => ClientIpHeader::Forwarded,
        Some(name) => match c.header_name(path, &name) {
            Some(name) => ClientIpHeader::Single(name),
            None => ClientIpHeader::XForwardedFor,
        },
    };
    let mut proxies = TrustedProxies::new(networks).with_header(header);
    match raw.trusted_hops {
        None => {}
        Some(0) => c.error("server.trusted_hops", "must be at least 1"),
        Some(n) => proxies = proxies.with_trusted_hops(usize::try_from(n).unwrap_or(usize::MAX)),
    }
    proxies
}

/// `server.hosts`: names (or IP literals) without port, compared case-insensitively.
fn compile_hosts(c: &mut Compiler, raw: &[String]) -> Vec<String> {
    let mut hosts = Vec::new();
    for (i, host) in raw.iter().enumerate() {
        let path = format!("server.hosts[{i}]");
        let lower = host.to_ascii_lowercase();
        if matches!(
            warden::request_head::split_authority(&lower),
            Some((_, None))
        ) {
            hosts.push(lower);
        } else {
            let shown = c.quoted(&path, host);
            c.error(
                path,
                format!("expected a host name like api.example.com (no port), got {shown}"),
            );
        }
    }
    hosts
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn positive(c: &mut Compiler, path: &str, value: Option<u64>, default: usize) -> usize {
    match value {
        None => default,
        Some(0) => {
            c.error(path, "must be at least 1");
            default
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

fn compile_upstream(c: &mut Compiler, raw: Option<&RawUpstream>) -> Upstream {
    let prefix_text = raw
        .and_then(|r| r.identity_headers.as_deref())
        .unwrap_or("X-Warden-");
    let identity_prefix = IdentityPrefix::new(prefix_text).unwrap_or_else(|| {
        let shown = c.quoted("upstream.identity_headers", prefix_text);
        c.error(
            "upstream.identity_headers",
            format!("expected a header-name prefix like X-Warden-, got {shown}"),
        );
        IdentityPrefix::new("X-Warden-").expect("constant prefix is valid")
    });
    let max_connections = positive(
        c,
        "upstream.max_connections",
        raw.and_then(|r| r.max_connections),
        1024,
    );
    let max_pending = positive(
        c,
        "upstream.max_pending",
        raw.and_then(|r| r.max_pending),
        1024,
    );
    let request_buffer = match raw.and_then(|r| r.request_buffer.as_ref()) {
        Some(Scalar::Int(0)) => 0,
        value => c.size("upstream.request_buffer", value, 64 * 1024),
    };
    let request_buffer = usize::try_from(request_buffer).unwrap_or(usize::MAX);
    let strip_headers = compile_strip_headers(c, raw.and_then(|r| r.strip_headers.as_deref()));
    let fallback = || Upstream {
        scheme: http::uri::Scheme::HTTP,
        authority: http::uri::Authority::from_static("127.0.0.1:80"),
        base_path: String::new(),
        identity_prefix: identity_prefix.clone(),
        max_connections,
        max_pending,
        request_buffer,
        strip_headers: strip_headers.clone(),
    };
    let Some(raw) = raw else {
        if !c.upstream_failed {
            c.error(
                "upstream",
                "missing: the upstream service's url is required",
            );
        }
        return fallback();
    };
    let uri = match raw.url.parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => {
            c.error(
                "upstream.url",
                format!(
                    "expected a URL like http://127.0.0.1:8000, got {}",
                    c.quoted("upstream.url", &raw.url)
                ),
            );
            return fallback();
        }
    };
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        c.error(
            "upstream.url",
            format!(
                "expected an absolute URL like http://127.0.0.1:8000, got {}",
                c.quoted("upstream.url", &raw.url)
            ),
        );
        return fallback();
    };
    if scheme != &http::uri::Scheme::HTTP {
        c.error(
            "upstream.url",
            format!("unsupported scheme {scheme}: this version proxies to http:// upstreams"),
        );
    }
    if uri.query().is_some() || authority.as_str().contains('@') {
        c.error(
            "upstream.url",
            "must not contain a query or user information",
        );
    }
    if authority.port_u16().is_none() && authority.as_str().ends_with(':') {
        c.error("upstream.url", "empty port");
    }
    Upstream {
        scheme: scheme.clone(),
        authority: authority.clone(),
        base_path: uri.path().trim_end_matches('/').to_owned(),
        identity_prefix,
        max_connections,
        max_pending,
        request_buffer,
        strip_headers,
    }
}

fn compile_strip_headers(c: &mut Compiler, raw: Option<&[String]>) -> crate::proxy::StripHeaders {
    let Some(list) = raw else {
        return crate::proxy::StripHeaders::default();
    };
    let mut entries = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let path = format!("upstream.strip_headers[{i}]");
        let name = entry.strip_suffix('*').unwrap_or(entry);
        if c.header_name(&path, name).is_some() {
            entries.push(entry.as_str());
        }
    }
    crate::proxy::StripHeaders::new(&entries)
}

fn compile_cors(c: &mut Compiler, raw: &RawCors, env: Environment) -> Option<CorsConfig> {
    let mut origins = Vec::new();
    let mut any_origin = false;
    let dev = env == Environment::Development;
    let listed = raw
        .origins
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("cors.origins[{i}]"), o))
        .chain(
            raw.development_origins
                .iter()
                .enumerate()
                .filter(|_| dev)
                .map(|(i, o)| (format!("cors.development_origins[{i}]"), o)),
        )
        .collect::<Vec<_>>();
    for (path, origin) in listed {
        if origin == "*" {
            if raw.credentials {
                c.error(
                    path,
                    "\"*\" cannot be combined with credentials: true; list exact origins",
                );
            }
            any_origin = true;
            continue;
        }
        match parse_origin(origin) {
            Some(value) => origins.push(value),
            None => {
                let shown = c.quoted(&path, origin);
                c.error(
                    path,
                    format!(
                        "expected an exact origin like https://app.example.com (scheme, host, optional port; no path), got {shown}"
                    ),
                );
            }
        }
    }
    if any_origin && !origins.is_empty() {
        c.error("cors.origins", "\"*\" cannot be mixed with exact origins");
    }
    if origins.is_empty() && !any_origin {
        return None;
    }
    let methods = raw
        .methods
        .clone()
        .unwrap_or_else(|| {
            ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec()
        })
        .iter()
        .enumerate()
        .filter_map(|(i, m)| c.method(&format!("cors.methods[{i}]"), m))
        .collect();
    let mut names = |key: &str, list: Option<&Vec<String>>, default: &[&str]| -> Vec<HeaderName> {
        let owned: Vec<String> = match list {
            Some(l) => l.clone(),
            None => default.iter().map(|s| (*s).to_owned()).collect(),
        };
        owned
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                if n == "*" {
                    c.error(
                        format!("cors.{key}[{i}]"),
                        "list header names explicitly; \"*\" is not supported",
                    );
                    return None;
                }
                c.header_name(&format!("cors.{key}[{i}]"), n)
            })
            .collect()
    };
    let headers = names(
        "headers",
        raw.headers.as_ref(),
        &["authorization", "content-type", "x-request-id"],
    );
    let expose_headers = names(
        "expose_headers",
        raw.expose_headers.as_ref(),
        &["x-request-id"],
    );
    Some(CorsConfig {
        origins,
        any_origin,
        methods,
        headers,
        expose_headers,
        credentials: raw.credentials,
        max_age: c.duration(
            "cors.max_age",
            raw.max_age.as_ref(),
            Duration::from_secs(600),
        ),
    })
}

/// `scheme://host[:port]` with nothing else; returned lowercase (browsers send it so).
fn parse_origin(origin: &str) -> Option<HeaderValue> {
    let uri: Uri = origin.parse().ok()?;
    let scheme = uri.scheme_str()?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    let rest_ok = uri.query().is_none() && !origin.ends_with('/') && matches!(uri.path(), "" | "/");
    if !rest_ok {
        return None;
    }
    HeaderValue::from_str(&format!(
        "{scheme}://{}",
        authority.as_str().to_ascii_lowercase()
    ))
    .ok()
}

fn compile_headers(c: &mut Compiler, raw: &RawHeaders) -> SecurityHeaders {
    let profile = match raw.profile.as_deref() {
        None | Some("api") => Profile::Api,
        Some("browser") => Profile::Browser,
        Some("none") => Profile::None,
        Some(other) => {
            c.error(
                "headers.profile",
                format!("expected api, browser or none, got {other:?}"),
            );
            Profile::Api
        }
    };
    // TLS arrives with the TLS issue; until then HSTS is never sent over cleartext.
    let mut policy = SecurityHeaders::new(profile, false);
    for (name, value) in &raw.set {
        let path = format!("headers.set.{name}");
        let Some(header) = c.header_name(&path, name) else {
            continue;
        };
        match HeaderValue::from_str(value) {
            Ok(v) => policy = policy.set(header, v),
            Err(_) => c.error(path, "invalid header value"),
        }
    }
    for (i, name) in raw.remove.iter().enumerate() {
        if let Some(header) = c.header_name(&format!("headers.remove[{i}]"), name) {
            policy = policy.remove(header);
        }
    }
    policy
}

fn compile_roles(c: &mut Compiler, raw: &super::raw::RawAuthz) -> warden::authz::rbac::RoleTable {
    let roles: Vec<(String, Vec<String>)> = raw
        .roles
        .iter()
        .map(|(r, p)| (r.clone(), p.clone()))
        .collect();
    match warden::authz::rbac::RoleTable::new(&roles, &raw.role_hierarchy) {
        Ok(table) => table,
        Err(e) => {
            c.error("authz", e.to_string());
            warden::authz::rbac::RoleTable::default()
        }
    }
}

/// The compiled `authz.policy` and the headers it may see.
#[derive(Clone, Debug)]
pub struct CompiledPolicyConfig {
    policy: std::sync::Arc<warden::authz::rego::RegoPolicy>,
    headers: Vec<HeaderName>,
}

fn compile_policy(
    c: &mut Compiler,
    raw: Option<&super::raw::RawPolicy>,
) -> Option<CompiledPolicyConfig> {
    let raw = raw?;
    let before = c.errors.len();
    let mut files: Vec<&String> = raw.file.iter().collect();
    files.extend(raw.files.iter());
    if files.is_empty() {
        c.error(
            "authz.policy.file",
            "name the .rego module(s) with file or files",
        );
    }
    let resolve = |c: &Compiler, file: &str| {
        let path = std::path::Path::new(file);
        match &c.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    };
    let mut modules = Vec::new();
    for file in files {
        let path = resolve(c, file);
        match super::load::read_text(&path, super::load::MAX_CONFIG_FILE) {
            Ok(source) => modules.push((path.display().to_string(), source)),
            Err(e) => c.error(
                "authz.policy.file",
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }
    let data = raw.data.as_ref().and_then(|file| {
        let path = resolve(c, file);
        match super::load::read_file(&path, super::load::MAX_CONFIG_FILE)
            .map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes))
        {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                c.error("authz.policy.data", format!("{}: {e}", path.display()));
                None
            }
            Err(e) => {
                c.error(
                    "authz.policy.data",
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
    });
    let allow = raw.allow.clone().unwrap_or_else(|| {
        c.error(
            "authz.policy.allow",
            "name the deciding rule, e.g. data.api.authz.allow",
        );
        String::new()
    });
    let headers: Vec<HeaderName> = raw
        .headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| c.header_name(&format!("authz.policy.headers[{i}]"), h))
        .collect();
    let timeout = c.duration(
        "authz.policy.timeout",
        raw.timeout.as_ref(),
        Duration::from_millis(50),
    );
    if c.errors.len() > before {
        return None;
    }
    let compiled = warden::authz::rego::RegoPolicy::compile(
        &modules,
        data.as_ref(),
        &allow,
        raw.reasons.as_deref(),
        timeout,
    )
    .and_then(|policy| match &raw.tier {
        Some(rule) => policy.with_tier_rule(&modules, data.as_ref(), rule, timeout),
        None => Ok(policy),
    });
    match compiled {
        Ok(policy) => Some(CompiledPolicyConfig {
            policy: std::sync::Arc::new(policy),
            headers,
        }),
        Err(e) => {
            c.error("authz.policy", e.to_string());
            None
        }
    }
}

/// Parameter names of a route template (`{id}`, `{*rest}`).
/// The template with each whole-segment parameter replaced by a plain segment.
fn template_probe(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.len() > 2 && segment.starts_with('{') && segment.ends_with('}') {
                "p"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn template_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*'))
        .collect()
}

fn compile_requirements(
    c: &mut Compiler,
    i: usize,
    route: &RawRoute,
    roles: &warden::authz::rbac::RoleTable,
) -> Vec<warden::authz::Requirement> {
    use warden::authz::Requirement;
    let at = |field: &str| format!("routes[{i}].{field}");
    let mut requirements = Vec::new();
    let check_permissions = |c: &mut Compiler, field: &str, list: &[String]| {
        for (j, permission) in list.iter().enumerate() {
            if !roles.grantable(permission) {
                c.error(
                    format!("routes[{i}].{field}[{j}]"),
                    format!("no role in authz.roles grants {permission:?}"),
                );
            }
        }
    };
    if let Some(permission) = &route.permission {
        check_permissions(c, "permission", std::slice::from_ref(permission));
        requirements.push(Requirement::AllPermissions(vec![permission.clone()]));
    }
    if let Some(p) = &route.permissions {
        match (&p.all, &p.any) {
            (Some(all), None) if !all.is_empty() => {
                check_permissions(c, "permissions.all", all);
                requirements.push(Requirement::AllPermissions(all.clone()));
            }
            (None, Some(any)) if !any.is_empty() => {
                check_permissions(c, "permissions.any", any);
                requirements.push(Requirement::AnyPermission(any.clone()));
            }
            _ => c.error(
                at("permissions"),
                "give exactly one non-empty list: all or any",
            ),
        }
    }
    if let Some(role) = &route.roles_at_least {
        match roles.rank(role) {
            Some(rank) => requirements.push(Requirement::RoleAtLeast(rank, role.clone())),
            None => c.error(
                at("roles_at_least"),
                format!("{role:?} is not in authz.role_hierarchy"),
            ),
        }
    }
    if let Some(s) = &route.scopes {
        match (&s.all, &s.any) {
            (Some(all), None) if !all.is_empty() => {
                requirements.push(Requirement::AllScopes(all.clone()))
            }
            (None, Some(any)) if !any.is_empty() => {
                requirements.push(Requirement::AnyScope(any.clone()))
            }
            _ => c.error(at("scopes"), "give exactly one non-empty list: all or any"),
        }
    }
    if let Some(param) = &route.tenant_param {
        if template_params(&route.path).contains(&param.as_str()) {
            requirements.push(Requirement::TenantParam(param.clone()));
        } else {
            c.error(
                at("tenant_param"),
                format!("{:?} has no parameter {param:?}", route.path),
            );
        }
    }
    if let Some(header) = &route.tenant_header
        && let Some(name) = c.header_name(&at("tenant_header"), header)
    {
        requirements.push(Requirement::TenantHeader(name));
    }
    requirements
}

fn compile_routes(
    c: &mut Compiler,
    raw: &[RawRoute],
    auth: &super::auth::AuthConfig,
    roles: &warden::authz::rbac::RoleTable,
    policy: Option<&CompiledPolicyConfig>,
    limits: &Limits,
) -> Vec<RouteConfig> {
    let mut routes: Vec<RouteConfig> = Vec::new();
    let mut seen: Vec<(String, Method)> = Vec::new();
    let mut router = matchit::Router::new();
    if raw.is_empty() && !c.routes_failed {
        c.error(
            "routes",
            "no routes: every path would be 404 (deny by default); add at least one route",
        );
    }
    for (i, route) in raw.iter().enumerate() {
        let at = |field: &str| format!("routes[{i}].{field}");
        // Parameters (`{id}`, `{*rest}`) stand for one canonical segment each.
        let probe = template_probe(&route.path);
        let template_ok = route.path.starts_with('/')
            && warden::canonical::canonicalize(&probe).is_ok_and(|p| p == probe);
        if !template_ok {
            c.error(
                at("path"),
                format!(
                    "{:?} is not a canonical absolute path (no //, dot-segments, %-escapes or ;)",
                    route.path
                ),
            );
            continue;
        }
        let methods: Vec<Method> = match &route.methods {
            None => vec![Method::GET],
            Some(list) if list.is_empty() => {
                c.error(at("methods"), "must list at least one method");
                continue;
            }
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(j, m)| c.method(&format!("routes[{i}].methods[{j}]"), m))
                .collect(),
        };
        let public = match route.auth.as_deref() {
            Some("none") => true,
            Some("required") => false,
            None => !auth.required,
            Some(other) => {
                c.error(
                    at("auth"),
                    format!("expected none or required, got {other:?}"),
                );
                continue;
            }
        };
        if !public && !auth.has_authenticators() {
            c.error(
                at("auth"),
                "this route requires authentication but no authenticator is configured; \
                 configure auth.jwt or auth.api_keys, or mark the route `auth: none` to make it public",
            );
        }
        let step_up = route.step_up.as_ref().map(|raw| warden::authn::StepUp {
            acr: raw.acr.clone(),
            max_age: raw.max_age.as_ref().map(|v| {
                c.duration(
                    &format!("routes[{i}].step_up.max_age"),
                    Some(v),
                    Duration::ZERO,
                )
            }),
        });
        if step_up.is_some() && public {
            c.error(
                at("step_up"),
                "a public route (auth: none) cannot require step-up authentication",
            );
        }
        let mut requirements = compile_requirements(c, i, route, roles);
        let mode = route.policy.as_ref().map(super::raw::Switch::as_word);
        match (mode, policy) {
            (None | Some("enforce"), Some(p)) | (Some("shadow"), Some(p)) if !public => {
                requirements.push(warden::authz::Requirement::Policy(std::sync::Arc::new(
                    warden::authz::PolicyCheck {
                        policy: p.policy.clone(),
                        shadow: mode == Some("shadow"),
                        headers: p.headers.clone(),
                        tenant_param: route.tenant_param.clone(),
                    },
                )));
            }
            (None | Some("off"), _) => {}
            (Some("enforce" | "shadow"), None) => {
                c.error(at("policy"), "no authz.policy is configured");
            }
            (Some("enforce" | "shadow"), Some(_)) => {
                c.error(
                    at("policy"),
                    "a public route (auth: none) is not evaluated by the policy",
                );
            }
            (Some(other), _) => c.error(
                at("policy"),
                format!("expected enforce, shadow or off, got {other:?}"),
            ),
        }
        match route.authorize.as_deref() {
            None | Some("authenticated") => {}
            Some(other) => c.error(
                at("authorize"),
                format!("expected authenticated, got {other:?}"),
            ),
        }
        if public && (!requirements.is_empty() || route.authorize.is_some()) {
            c.error(
                at("auth"),
                "a public route (auth: none) cannot carry authorization requirements",
            );
        }
        // Deny by default: a protected route names what it requires, or says that any
        // authenticated caller will do.
        if !public
            && requirements.is_empty()
            && route.authorize.is_none()
            && auth.has_authenticators()
        {
            c.error(
                at("authorize"),
                "this route names no requirement: add permission, permissions, roles_at_least, scopes \
                 or tenant_param, or `authorize: authenticated` to allow any authenticated caller",
            );
        }
        let max_body_bytes = c.size(
            &at("body.max_bytes"),
            route.body.as_ref().and_then(|b| b.max_bytes.as_ref()),
            limits.max_request_bytes,
        );
        // Conflicting templates (`/a/{x}` vs `/a/{y}`) are caught here, not at request time.
        let first_use = !routes.iter().any(|r| r.path == route.path);
        if first_use && let Err(e) = router.insert(route.path.as_str(), ()) {
            c.error(at("path"), format!("conflicts with another route: {e}"));
            continue;
        }
        for method in &methods {
            if seen.iter().any(|(p, m)| p == &route.path && m == method) {
                c.error(
                    at("methods"),
                    format!("{method} {} is already routed", route.path),
                );
            }
            seen.push((route.path.clone(), method.clone()));
        }
        routes.push(RouteConfig {
            name: route.name.clone().unwrap_or_else(|| route.path.clone()),
            path: route.path.clone(),
            methods,
            public,
            max_body_bytes,
            step_up,
            forward_credentials: route.forward_credentials.unwrap_or(false),
            requirements,
            rate_limit: super::ratelimit::compile_route_limit(
                c,
                i,
                route.name.as_deref().unwrap_or(&route.path),
                route.rate_limit.as_ref(),
            ),
        });
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::{Format, parse_raw};

    fn compile_yaml(yaml: &str) -> Result<Config, ConfigErrors> {
        compile_parsed(parse_raw(yaml, Format::Yaml, &Vec::new(), &[])?)
    }

    const MINIMAL: &str =
        "upstream: { url: http://127.0.0.1:8000 }\nroutes:\n  - { path: /healthz, auth: none }\n";

    #[test]
    fn minimal_config_gets_secure_defaults() {
        let config = compile_yaml(MINIMAL).expect("valid");
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.admin_listen.to_string(), "127.0.0.1:9901");
        assert_eq!(config.server.environment, Environment::Production);
        assert_eq!(config.server.limits.max_request_bytes, 10 * 1024 * 1024);
        assert!(config.cors.is_none());
        assert_eq!(config.routes[0].methods, vec![Method::GET]);
        assert!(config.routes[0].public);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let yaml = r#"
server:
  listen: nowhere
  environment: staging
  trusted_proxies: [10.0.0.0/8, banana]
  limits: { max_request_bytes: 10 lightyears, max_connections: 0 }
  timeouts: { request: soon }
upstream: { url: "ftp://x" }
cors: { origins: ["*", "https://a.example.com/path"], credentials: true }
headers: { profile: fancy, set: { "bad header": x } }
routes:
  - { path: /a/../b, auth: none }
  - { path: /ok, methods: [GET, "FE TCH"], auth: none }
  - { path: /needs-auth }
  - { path: /ok, methods: [GET], auth: none }
  - { path: /x, auth: none, body: { max_bytes: -5 } }
"#;
        let errors = compile_yaml(yaml).expect_err("invalid").0;
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "server.listen",
            "server.environment",
            "server.trusted_proxies[1]",
            "server.limits.max_request_bytes",
            "server.limits.max_connections",
            "server.timeouts.request",
            "upstream.url",
            "cors.origins[0]",
            "cors.origins[1]",
            "headers.profile",
            "headers.set.bad header",
            "routes[0].path",
            "routes[1].methods[1]",
            "routes[2].auth",
            "routes[3].methods",
            "routes[4].body.max_bytes",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
    }

    #[test]
    fn development_origins_only_in_development() {
        let base = "upstream: { url: http://127.0.0.1:8000 }\nroutes: [{ path: /a, auth: none }]\ncors: { origins: [https://App.example.com], development_origins: [http://localhost:3000] }\n";
        let prod = compile_yaml(base).expect("valid").cors.expect("cors");
        assert_eq!(
            prod.origins,
            vec![HeaderValue::from_static("https://app.example.com")]
        );
        let dev = compile_yaml(&format!("server: {{ environment: development }}\n{base}"))
            .expect("valid")
            .cors
            .expect("cors");
        assert_eq!(dev.origins.len(), 2);
    }

    #[test]
    fn template_conflicts_are_config_errors() {
        let yaml = "upstream: { url: http://127.0.0.1:8000 }\nroutes:\n  - { path: '/a/{x}', auth: none }\n  - { path: '/a/{y}', auth: none }\n";
        let errors = compile_yaml(yaml).expect_err("conflict");
        assert_eq!(errors.0[0].path, "routes[1].path");
    }

    #[test]
    fn sizes_and_durations_accept_numbers_and_units() {
        let yaml = "server: { limits: { max_request_bytes: 1MiB, max_header_bytes: 8192 }, timeouts: { request: 90, upstream_response: 2m } }\nupstream: { url: 'http://127.0.0.1:8000/base/' }\nroutes: [{ path: /a, auth: none, body: { max_bytes: 1KiB } }]\n";
        let config = compile_yaml(yaml).expect("valid");
        assert_eq!(config.server.limits.max_request_bytes, 1024 * 1024);
        assert_eq!(config.server.limits.max_header_bytes, 8192);
        assert_eq!(config.server.timeouts.request, Duration::from_secs(90));
        assert_eq!(
            config.server.timeouts.upstream_response,
            Duration::from_secs(120)
        );
        assert_eq!(config.routes[0].max_body_bytes, 1024);
        assert_eq!(config.upstream.base_path, "/base");
    }

    #[test]
    fn secrets_must_be_references_and_long_enough() {
        let literal = "upstream: { url: http://127.0.0.1:8000 }\nauth:\n  api_keys: { store: 'sqlite://k.db', pepper: 'literal-pepper-that-is-long-enough-0123456789' }\n  jwt: [{ name: a, issuer: 'https://a.test', audiences: [x], secret: 'literal-hmac-secret-long-enough-0123456789', algorithms: [HS256] }]\nroutes: [{ path: /a }]\n";
        let errors = compile_yaml(literal).expect_err("literals refused").0;
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"auth.api_keys.pepper"), "{paths:?}");
        assert!(paths.contains(&"auth.jwt[0].secret"), "{paths:?}");

        let env = vec![("PEPPER".to_owned(), "short".to_owned())];
        let short = "upstream: { url: http://127.0.0.1:8000 }\nauth:\n  api_keys: { store: 'mysql://k', pepper: '${env:PEPPER}' }\nroutes: [{ path: /a }]\n";
        let parsed = parse_raw(short, Format::Yaml, &env, &[]).expect("parse");
        let errors = compile_parsed(parsed)
            .expect_err("short pepper, bad store")
            .to_string();
        assert!(
            errors.contains("auth.api_keys.pepper: must be at least 32 bytes"),
            "{errors}"
        );
        assert!(
            errors.contains("auth.api_keys.store: expected sqlite://PATH"),
            "{errors}"
        );
    }

    #[test]
    fn none_is_never_an_algorithm_and_families_do_not_mix() {
        let yaml = "upstream: { url: http://127.0.0.1:8000 }\nauth:\n  jwt: [{ name: a, issuer: 'https://a.test', audiences: [x], jwks_uri: 'https://a.test/jwks', algorithms: [None, RS256, HS256] }]\nroutes: [{ path: /a }]\n";
        let errors = compile_yaml(yaml).expect_err("invalid").to_string();
        assert!(
            errors.contains("auth.jwt[0].algorithms[0]: \"none\" is never allowed"),
            "{errors}"
        );
        assert!(errors.contains("do not mix HMAC"), "{errors}");
    }

    #[test]
    fn invalid_values_from_secret_references_are_not_echoed() {
        let env = vec![
            ("LISTEN".to_owned(), "s3cr3t-not-an-address".to_owned()),
            ("UP".to_owned(), "s3cr3t url".to_owned()),
        ];
        let yaml = "server: { listen: '${env:LISTEN}', timeouts: { request: '${env:LISTEN}' } }\nupstream: { url: '${env:UP}' }\nroutes: [{ path: /a, auth: none }]\n";
        let parsed = parse_raw(yaml, Format::Yaml, &env, &[]).expect("parse");
        let errors = compile_parsed(parsed).expect_err("invalid").to_string();
        assert!(
            errors.contains("server.listen")
                && errors.contains("upstream.url")
                && errors.contains("server.timeouts.request"),
            "{errors}"
        );
        assert!(
            !errors.contains("s3cr3t"),
            "a secret reached the error text: {errors}"
        );
    }
}
