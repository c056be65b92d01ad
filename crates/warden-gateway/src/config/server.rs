//! `server:` — listeners, the deployment environment, the client address, served hosts, and the
//! limits and timeouts the connection supervisor and the global stack enforce.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use warden::client_ip::{ClientIpHeader, TrustedProxies};

use super::toolkit::{Compiler, Scalar, secs};

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
    /// TLS termination (absent: plain HTTP).
    pub tls: Option<super::tls::RawTls>,
    /// How often the configuration file and every file it names are checked for a change
    /// that triggers a reload (default 10s; `0`: SIGHUP and `warden reload` only).
    pub watch_interval: Option<Scalar>,
    /// Threads serving connections (default: one per core the process may run on).
    pub workers: Option<u64>,
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
    /// TLS termination, when configured.
    pub tls: Option<super::tls::Tls>,
    /// How often the configuration's files are checked for a change (`None`: never).
    pub watch_interval: Option<Duration>,
    /// Threads serving connections (`warden serve`'s runtime; a restart changes it).
    pub workers: usize,
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

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// Compiles `server:`.
pub fn compile(c: &mut Compiler, raw: &RawServer) -> Server {
    let environment = c.choice(
        "server.environment",
        raw.environment.as_deref(),
        &[
            ("production", Environment::Production),
            ("development", Environment::Development),
        ],
        Environment::Production,
    );
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
        max_headers: c.count("server.limits.max_headers", l.max_headers, 100),
        max_connections: c.count("server.limits.max_connections", l.max_connections, 10_000),
        max_connections_per_ip: l
            .max_connections_per_ip
            .map(|n| c.count("server.limits.max_connections_per_ip", Some(n), 1)),
        max_concurrent_streams: u32::try_from(c.count(
            "server.limits.max_concurrent_streams",
            l.max_concurrent_streams,
            100,
        ))
        .unwrap_or(u32::MAX),
        max_requests: c.count("server.limits.max_requests", l.max_requests, 10_000),
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
        tls: super::tls::compile(c, raw.tls.as_ref()),
        watch_interval: c.interval_or_off(
            "server.watch_interval",
            raw.watch_interval.as_ref(),
            secs(10),
        ),
        workers: compile_workers(c, raw.workers),
    }
}

/// Most worker threads: far more than any machine's cores, few enough that a typo is caught.
const MAX_WORKERS: u64 = 1024;

fn compile_workers(c: &mut Compiler, workers: Option<u64>) -> usize {
    // The cores this process may run on (its CPU affinity and cgroup quota, not the machine's
    // count): a container limited to 2 CPUs gets 2 workers.
    let default = std::thread::available_parallelism().map_or(1, usize::from);
    if workers.is_some_and(|n| n > MAX_WORKERS) {
        c.error("server.workers", format!("must be at most {MAX_WORKERS}"));
        return default;
    }
    c.count("server.workers", workers, default)
}

fn compile_client_ip(c: &mut Compiler, raw: &RawServer, networks: Vec<IpNet>) -> TrustedProxies {
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
