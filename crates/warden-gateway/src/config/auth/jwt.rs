//! `auth.jwt[]` — one JWT/OIDC provider: what its tokens must look like and where its keys come
//! from (a secret, a JWKS file, a JWKS URL or OIDC discovery, with the remote cache's tuning).

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use warden::authn::jwks::{RemoteLocation, RemoteSettings};
use warden::authn::jwt::{ClaimMapping, ProviderSettings};
use warden::authn::keys::KeySet;

use crate::config::server::Environment;
use crate::config::toolkit::{Compiler, Scalar};

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
    /// Accept only tokens bound to the connection's client certificate (RFC 8705).
    #[serde(default)]
    pub require_bound_tokens: Option<bool>,
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

/// When remote keys must be there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// Start only once keys are loaded (fail after `startup_timeout`).
    Wait,
    /// Start at once; `/readyz` stays 503 until keys are loaded.
    NotReady,
}

/// Where a provider's keys come from.
#[derive(Clone, Debug)]
pub enum KeySpec {
    /// Loaded at configuration time.
    Static(KeySet),
    /// Fetched and refreshed at run time.
    Remote {
        /// JWKS URL or discovery.
        location: RemoteLocation,
        /// Cache tuning.
        settings: RemoteSettings,
        /// Startup behaviour.
        startup: Startup,
        /// How long `Startup::Wait` waits.
        startup_timeout: Duration,
    },
}

/// One provider, compiled.
#[derive(Clone, Debug)]
pub struct JwtProviderConfig {
    /// What the provider's tokens must look like.
    pub settings: ProviderSettings,
    /// Key source (built into a live [`KeySource`] at start).
    pub keys: KeySpec,
    /// The HMAC secret, for `warden token mint` (never logged: `Debug` is redacted).
    pub secret: Option<Secret>,
}

/// A secret value whose `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Compiles `auth.jwt[i]` (`None` when it has errors).
pub fn compile_provider(
    c: &mut Compiler,
    i: usize,
    raw: &RawJwtProvider,
    env: Environment,
) -> Option<JwtProviderConfig> {
    let at = |field: &str| format!("auth.jwt[{i}].{field}");
    let errors_before = c.checkpoint();
    if raw.name.trim().is_empty() {
        c.error(at("name"), "must not be empty");
    }
    if raw.issuer.is_empty() {
        c.error(at("issuer"), "must not be empty");
    }
    let verify_issuer = raw.verify_issuer.unwrap_or(true);
    let verify_audience = raw.verify_audience.unwrap_or(true);
    if verify_audience && raw.audiences.is_empty() {
        c.error(
            at("audiences"),
            "list the accepted audiences (or set verify_audience: false explicitly)",
        );
    }
    let mut algorithms = Vec::new();
    if raw.algorithms.is_empty() {
        c.error(
            at("algorithms"),
            "required: list the accepted algorithms, e.g. [RS256]",
        );
    }
    for (j, name) in raw.algorithms.iter().enumerate() {
        if name.eq_ignore_ascii_case("none") {
            c.error(
                format!("auth.jwt[{i}].algorithms[{j}]"),
                "\"none\" is never allowed",
            );
            continue;
        }
        match name.parse::<Algorithm>() {
            Ok(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
            Ok(_) => {}
            Err(_) => c.error(
                format!("auth.jwt[{i}].algorithms[{j}]"),
                format!("unknown algorithm {name:?} (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)"),
            ),
        }
    }
    let hmac = algorithms
        .iter()
        .filter(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        .count();
    if hmac > 0 && hmac < algorithms.len() {
        c.error(
            at("algorithms"),
            "do not mix HMAC (HS*) and public-key algorithms in one provider",
        );
    }

    let chosen = [
        raw.discovery == Some(true),
        raw.jwks_uri.is_some(),
        raw.jwks_file.is_some(),
        raw.secret.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if chosen != 1 {
        c.error(
            at("discovery"),
            "exactly one key source is required: discovery: true, jwks_uri, jwks_file or secret",
        );
    }
    let mut secret = None;
    let keys = if raw.secret.is_some() && c.has_error(&at("secret")) {
        None
    } else if let Some(text) = &raw.secret {
        if !c.is_secret(&at("secret")) {
            c.error(
                at("secret"),
                "must be a secret reference (${env:NAME} or ${file:PATH}), not a literal",
            );
        }
        if hmac == 0 {
            c.error(at("algorithms"), "a secret verifies only HS256/HS384/HS512");
        }
        secret = Some(Secret(text.as_bytes().to_vec()));
        match KeySet::from_hmac_secret(text.as_bytes(), &algorithms) {
            Ok(set) => Some(KeySpec::Static(set)),
            Err(e) => {
                c.error(at("secret"), e.to_string());
                None
            }
        }
    } else if let Some(file) = &raw.jwks_file {
        c.read(&at("jwks_file"), file).and_then(|(path, bytes)| {
            match KeySet::from_jwks(&bytes, true) {
                Ok((set, skipped)) => {
                    for reason in skipped {
                        tracing::warn!(provider = %raw.name, %reason, "skipped a key in jwks_file");
                    }
                    Some(KeySpec::Static(set))
                }
                Err(e) => {
                    c.error(at("jwks_file"), format!("{}: {e}", path.display()));
                    None
                }
            }
        })
    } else {
        if hmac > 0 {
            c.error(
                at("algorithms"),
                "remote key sets never carry HMAC secrets: use RS*/PS*/ES*/EdDSA",
            );
        }
        let location = if raw.discovery == Some(true) {
            RemoteLocation::Discovery {
                issuer: raw.issuer.clone(),
            }
        } else {
            RemoteLocation::JwksUri(raw.jwks_uri.clone().unwrap_or_default())
        };
        compile_remote(c, i, raw, env, location)
    };

    let leeway = c.duration(&at("leeway"), raw.leeway.as_ref(), Duration::from_secs(30));
    if leeway > Duration::from_secs(300) {
        c.error(at("leeway"), "at most 5m");
    }
    let max_token_age = raw
        .max_token_age
        .as_ref()
        .map(|v| c.duration(&at("max_token_age"), Some(v), Duration::from_secs(3600)));
    let claims = raw.claims.as_ref();
    let mapping = ClaimMapping {
        subject: claims
            .and_then(|m| m.subject.clone())
            .unwrap_or_else(|| "sub".into()),
        roles: claims
            .and_then(|m| m.roles.clone())
            .unwrap_or_else(|| "roles".into()),
        scopes: claims
            .and_then(|m| m.scopes.clone())
            .unwrap_or_else(|| "scope".into()),
        tenant: claims.and_then(|m| m.tenant.clone()),
    };
    if c.failed_since(errors_before) {
        return None;
    }
    Some(JwtProviderConfig {
        settings: ProviderSettings {
            name: raw.name.clone(),
            issuer: raw.issuer.clone(),
            verify_issuer,
            audiences: raw.audiences.clone(),
            verify_audience,
            algorithms,
            leeway,
            required_claims: raw.required_claims.clone().unwrap_or_default(),
            max_token_age,
            claims: mapping,
            forward_credentials: raw.forward_credentials.unwrap_or(false),
            require_bound_tokens: raw.require_bound_tokens.unwrap_or(false),
        },
        keys: keys?,
        secret,
    })
}

fn compile_remote(
    c: &mut Compiler,
    i: usize,
    raw: &RawJwtProvider,
    env: Environment,
    location: RemoteLocation,
) -> Option<KeySpec> {
    let at = |field: &str| format!("auth.jwt[{i}].jwks.{field}");
    let defaults = RemoteSettings::default();
    let j = raw.jwks.as_ref();
    let get = |f: fn(&RawJwks) -> Option<&Scalar>| j.and_then(f);
    let mut settings = RemoteSettings {
        min_refresh_interval: c.duration(
            &at("min_refresh_interval"),
            get(|j| j.min_refresh_interval.as_ref()),
            defaults.min_refresh_interval,
        ),
        default_ttl: c.duration(
            &at("default_ttl"),
            get(|j| j.default_ttl.as_ref()),
            defaults.default_ttl,
        ),
        min_ttl: c.duration(
            &at("min_ttl"),
            get(|j| j.min_ttl.as_ref()),
            defaults.min_ttl,
        ),
        max_ttl: c.duration(
            &at("max_ttl"),
            get(|j| j.max_ttl.as_ref()),
            defaults.max_ttl,
        ),
        stale_if_error: c.duration(
            &at("stale_if_error"),
            get(|j| j.stale_if_error.as_ref()),
            defaults.stale_if_error,
        ),
        timeout: c.duration(
            &at("timeout"),
            get(|j| j.timeout.as_ref()),
            defaults.timeout,
        ),
        max_bytes: usize::try_from(c.size(
            &at("max_bytes"),
            get(|j| j.max_bytes.as_ref()),
            defaults.max_bytes as u64,
        ))
        .unwrap_or(usize::MAX),
        max_backoff: c.duration(
            &at("max_backoff"),
            get(|j| j.max_backoff.as_ref()),
            defaults.max_backoff,
        ),
        allow_http_loopback: env == Environment::Development,
        ca_pem: None,
    };
    if settings.min_ttl > settings.max_ttl {
        c.error(at("min_ttl"), "must not exceed max_ttl");
    }
    if let Some(file) = j.and_then(|j| j.ca_file.as_ref()) {
        settings.ca_pem = c.read(&at("ca_file"), file).map(|(_, pem)| pem);
    }
    let startup = c.choice(
        &at("startup"),
        j.and_then(|j| j.startup.as_deref()),
        &[("wait", Startup::Wait), ("not_ready", Startup::NotReady)],
        Startup::Wait,
    );
    let startup_timeout = c.duration(
        &at("startup_timeout"),
        get(|j| j.startup_timeout.as_ref()),
        Duration::from_secs(30),
    );
    let url = match &location {
        RemoteLocation::JwksUri(url) => url.clone(),
        RemoteLocation::Discovery { issuer } => issuer.clone(),
    };
    let field = if matches!(location, RemoteLocation::JwksUri(_)) {
        format!("auth.jwt[{i}].jwks_uri")
    } else {
        format!("auth.jwt[{i}].issuer")
    };
    if let Err(e) = warden::authn::jwks::check_url(&url, settings.allow_http_loopback) {
        c.error(field, e.to_string());
        return None;
    }
    Some(KeySpec::Remote {
        location,
        settings,
        startup,
        startup_timeout,
    })
}
