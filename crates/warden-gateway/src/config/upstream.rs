//! `upstream:` — where requests go, how many may be in flight or waiting, what is buffered, and
//! which request headers never travel.

use http::{HeaderMap, HeaderName, Uri};
use serde::Deserialize;
use warden::identity_headers::IdentityPrefix;

use super::toolkit::{Compiler, Scalar};
use super::upstream_tls::{self, RawUpstreamTls, UpstreamTls};

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
    /// TLS toward an `https://` upstream.
    #[serde(default)]
    pub tls: Option<RawUpstreamTls>,
}

/// Rewrite and client-address headers stripped by default: classic authorization bypasses on
/// IIS, Symfony and Zend (`X-Original-URL`, `X-Rewrite-URL`), addresses a framework may believe,
/// and every `X-Forwarded-*` (`-Port` and `-Prefix` drive URL generation in Spring, Django and
/// Starlette; the gateway sets its own `-For`, `-Proto` and `-Host` after stripping).
pub const DEFAULT_STRIP_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-override-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "client-ip",
    "x-forwarded-*",
    "x-forwarded",
    "forwarded-for",
];

/// Request headers never forwarded: exact names and prefixes (`name*`), compared in any case
/// and with `_` read as `-` (WSGI and CGI fold one into the other).
#[derive(Clone, Debug)]
pub struct StripHeaders {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl Default for StripHeaders {
    fn default() -> Self {
        StripHeaders::new(DEFAULT_STRIP_HEADERS)
    }
}

impl StripHeaders {
    /// From entries like `x-real-ip` or `x-forwarded-*`.
    pub fn new(entries: &[&str]) -> Self {
        let fold = |text: &str| text.to_ascii_lowercase().replace('_', "-");
        let mut strip = StripHeaders {
            exact: Vec::new(),
            prefixes: Vec::new(),
        };
        for entry in entries {
            match entry.strip_suffix('*') {
                Some(prefix) => strip.prefixes.push(fold(prefix)),
                None => strip.exact.push(fold(entry)),
            }
        }
        strip
    }

    fn matches(&self, name: &str) -> bool {
        // Header names are already lowercase; only `_` needs folding.
        let folded = |other: &str| {
            name.len() >= other.len()
                && name
                    .bytes()
                    .zip(other.bytes())
                    .all(|(n, o)| n == o || (n == b'_' && o == b'-'))
        };
        self.exact
            .iter()
            .any(|e| e.len() == name.len() && folded(e))
            || self.prefixes.iter().any(|p| folded(p))
    }

    /// Removes every matching header.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if self.exact.is_empty() && self.prefixes.is_empty() {
            return;
        }
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.matches(name.as_str()))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }
}

/// Compiled `upstream:`.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Scheme (`http` or `https`).
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
    pub strip_headers: StripHeaders,
    /// How to connect to an `https://` upstream (`None` for `http://`).
    pub tls: Option<UpstreamTls>,
}

/// Compiles `upstream:` (required).
pub fn compile(c: &mut Compiler, raw: Option<&RawUpstream>) -> Upstream {
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
    let max_connections = c.count(
        "upstream.max_connections",
        raw.and_then(|r| r.max_connections),
        1024,
    );
    let max_pending = c.count(
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
        tls: None,
    };
    let Some(raw) = raw else {
        if !c.section_failed("upstream") {
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
    let https = scheme == &http::uri::Scheme::HTTPS;
    if !https && scheme != &http::uri::Scheme::HTTP {
        c.error(
            "upstream.url",
            format!("unsupported scheme {scheme}: expected http:// or https://"),
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
        tls: upstream_tls::compile(c, raw.tls.as_ref(), https),
    }
}

fn compile_strip_headers(c: &mut Compiler, raw: Option<&[String]>) -> StripHeaders {
    let Some(list) = raw else {
        return StripHeaders::default();
    };
    let mut entries = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let path = format!("upstream.strip_headers[{i}]");
        let name = entry.strip_suffix('*').unwrap_or(entry);
        if c.header_name(&path, name).is_some() {
            entries.push(entry.as_str());
        }
    }
    StripHeaders::new(&entries)
}
