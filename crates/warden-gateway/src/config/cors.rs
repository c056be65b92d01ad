//! `cors:` — the origins, methods and headers browsers may use; compiled into the CORS layer the
//! global stack runs (DESIGN.md §2).

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};
use serde::Deserialize;

use super::server::Environment;
use super::toolkit::{Compiler, Scalar};

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

/// Compiled `cors:`.
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

/// Compiles `cors:`; `None` when no origin is allowed.
pub fn compile(c: &mut Compiler, raw: &RawCors, env: Environment) -> Option<CorsConfig> {
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
