//! `auth:` — JWT/OIDC providers and token sources, compiled; built into authenticators at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use warden::authn::api_key::{ApiKeyAuthenticator, ApiKeySettings, Pepper};
use warden::authn::api_key_sqlite::SqliteKeyStore;
use warden::authn::jwks::{RemoteKeys, RemoteLocation, RemoteSettings};
use warden::authn::jwt::{
    ClaimMapping, JwtAuthenticator, JwtConfigError, JwtProvider, ProviderSettings,
};
use warden::authn::keys::{KeySet, KeySource, StaticKeys};
use warden::authn::sources::TokenSources;
use warden::clock::Clock;

use super::compile::{Compiler, Environment};
use super::raw::{RawAuth, RawJwtProvider};

/// Compiled `auth:`.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Routes need identity unless `auth: none`.
    pub required: bool,
    /// JWT providers.
    pub providers: Vec<JwtProviderConfig>,
    /// Token locations.
    pub sources: TokenSources,
    /// Verified-token cache capacity.
    pub token_cache: u64,
    /// API keys, if configured.
    pub api_keys: Option<ApiKeysConfig>,
}

/// Compiled `auth.api_keys:`.
#[derive(Clone, Debug)]
pub struct ApiKeysConfig {
    /// SQLite database file.
    pub store_path: PathBuf,
    /// HMAC pepper.
    pub pepper: Pepper,
    /// Header, scheme and cache settings.
    pub settings: ApiKeySettings,
    /// How often last-use times are written.
    pub touch_interval: Duration,
    /// How long a lookup waits for a lock held elsewhere.
    pub busy_timeout: Duration,
}

impl AuthConfig {
    /// Whether any authenticator is configured.
    pub fn has_authenticators(&self) -> bool {
        !self.providers.is_empty() || self.api_keys.is_some()
    }
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

/// Why the authenticators could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthBuildError {
    /// Provider set inconsistency.
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
    /// A remote key source could not be created.
    #[error("provider {0}: {1}")]
    Remote(String, warden::authn::jwks::FetchError),
    /// The API-key store could not be opened or migrated.
    #[error("API key store: {0}")]
    KeyStore(#[from] warden::authn::api_key::StoreError),
}

/// The authenticator and what keeps its remote keys fresh.
#[derive(Debug)]
pub struct BuiltAuth {
    /// The JWT authenticator, if any provider is configured.
    pub jwt: Option<JwtAuthenticator>,
    /// Remote key sources with their startup policy.
    pub remote: Vec<(String, RemoteKeys, Startup, Duration)>,
    /// The API-key authenticator and its touch interval, if configured.
    pub api_keys: Option<(ApiKeyAuthenticator, Duration)>,
}

impl AuthConfig {
    /// Builds the authenticators (remote sources are created, not yet fetched).
    pub fn build(&self, clock: Arc<dyn Clock>) -> Result<BuiltAuth, AuthBuildError> {
        let mut providers = Vec::new();
        let mut remote = Vec::new();
        for p in &self.providers {
            let keys: Arc<dyn KeySource> = match &p.keys {
                KeySpec::Static(set) => Arc::new(StaticKeys::new(set.clone())),
                KeySpec::Remote {
                    location,
                    settings,
                    startup,
                    startup_timeout,
                } => {
                    let source = RemoteKeys::new(
                        p.settings.name.clone(),
                        location.clone(),
                        settings.clone(),
                        clock.clone(),
                    )
                    .map_err(|e| AuthBuildError::Remote(p.settings.name.clone(), e))?;
                    remote.push((
                        p.settings.name.clone(),
                        source.clone(),
                        *startup,
                        *startup_timeout,
                    ));
                    Arc::new(source)
                }
            };
            providers.push(JwtProvider {
                settings: p.settings.clone(),
                keys,
            });
        }
        let jwt = if providers.is_empty() {
            None
        } else {
            Some(JwtAuthenticator::new(
                providers,
                self.sources.clone(),
                clock.clone(),
                self.token_cache,
            )?)
        };
        let api_keys = match &self.api_keys {
            None => None,
            Some(keys) => {
                // Refuse to start on a store that cannot be opened or migrated.
                let store = SqliteKeyStore::open_with(&keys.store_path, keys.busy_timeout)?;
                let authenticator = ApiKeyAuthenticator::new(
                    keys.settings.clone(),
                    keys.pepper.clone(),
                    Arc::new(store),
                    clock.clone(),
                );
                Some((authenticator, keys.touch_interval))
            }
        };
        Ok(BuiltAuth {
            jwt,
            remote,
            api_keys,
        })
    }
}

pub(super) fn resolve(base: Option<&Path>, file: &str) -> PathBuf {
    let path = Path::new(file);
    match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

pub(super) fn compile_auth(c: &mut Compiler, raw: &RawAuth, env: Environment) -> AuthConfig {
    let sources = match &raw.token_sources {
        None => TokenSources::default(),
        Some(s) => TokenSources {
            authorization_header: s.header.unwrap_or(true),
            cookie: s.cookie.clone(),
            query: s.query.clone(),
        },
    };
    if !sources.authorization_header
        && sources.cookie.is_none()
        && sources.query.is_none()
        && !raw.jwt.is_empty()
    {
        c.error("auth.token_sources", "no token source is enabled");
    }
    let mut providers = Vec::new();
    for (i, provider) in raw.jwt.iter().enumerate() {
        if let Some(compiled) = compile_provider(c, i, provider, env) {
            providers.push(compiled);
        }
    }
    for (i, p) in providers.iter().map(|p| &p.settings).enumerate() {
        if providers[..i].iter().any(|q| q.settings.issuer == p.issuer) {
            c.error(
                format!("auth.jwt[{i}].issuer"),
                format!("issuer {:?} is configured twice", p.issuer),
            );
        }
        if providers[..i].iter().any(|q| q.settings.name == p.name) {
            c.error(
                format!("auth.jwt[{i}].name"),
                format!("name {:?} is used twice", p.name),
            );
        }
        if !p.verify_issuer && raw.jwt.len() > 1 {
            c.error(
                format!("auth.jwt[{i}].verify_issuer"),
                "can only be false when this is the only provider (the token's iss picks the provider)",
            );
        }
    }
    let api_keys = raw
        .api_keys
        .as_ref()
        .and_then(|keys| compile_api_keys(c, keys));
    AuthConfig {
        required: raw.required.unwrap_or(true),
        providers,
        sources,
        token_cache: raw.token_cache.unwrap_or(100_000),
        api_keys,
    }
}

fn compile_api_keys(c: &mut Compiler, raw: &super::raw::RawApiKeys) -> Option<ApiKeysConfig> {
    let before = c.errors.len();
    let store_path = match raw.store.as_deref() {
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(file) if !file.is_empty() => Some(resolve(c.base_dir.as_deref(), file)),
            _ => {
                c.error(
                    "auth.api_keys.store",
                    format!("expected sqlite://PATH, got {url:?}"),
                );
                None
            }
        },
        None => {
            c.error(
                "auth.api_keys.store",
                "required, e.g. sqlite://warden-keys.db",
            );
            None
        }
    };
    let pepper = match raw.pepper.as_deref() {
        // The reference itself failed to resolve: that error says it all.
        Some(_) if c.has_error("auth.api_keys.pepper") => None,
        None => {
            c.error(
                "auth.api_keys.pepper",
                "required: a secret reference such as ${env:WARDEN_KEY_PEPPER}",
            );
            None
        }
        Some(text) => {
            if !c.secret_paths.iter().any(|p| p == "auth.api_keys.pepper") {
                c.error(
                    "auth.api_keys.pepper",
                    "must be a secret reference (${env:NAME} or ${file:PATH}), not a literal",
                );
            }
            let pepper = Pepper::new(text.as_bytes());
            if pepper.is_none() {
                c.error("auth.api_keys.pepper", "must be at least 32 bytes");
            }
            pepper
        }
    };
    let defaults = ApiKeySettings::default();
    let header = match raw.header.as_deref() {
        None => Some(defaults.header.clone()),
        Some(name) => c.header_name("auth.api_keys.header", name),
    };
    if header
        .as_ref()
        .is_some_and(|h| h == http::header::AUTHORIZATION || h == http::header::COOKIE)
    {
        c.error(
            "auth.api_keys.header",
            "use authorization_scheme: true for Authorization; cookies are not a key header",
        );
    }
    let cache_ttl = c.duration(
        "auth.api_keys.cache_ttl",
        raw.cache_ttl.as_ref(),
        defaults.cache_ttl,
    );
    if cache_ttl > Duration::from_secs(300) {
        c.error(
            "auth.api_keys.cache_ttl",
            "at most 5m: it bounds how long a revoked key keeps working",
        );
    }
    let touch_interval = c.duration(
        "auth.api_keys.touch_interval",
        raw.touch_interval.as_ref(),
        Duration::from_secs(30),
    );
    let busy_timeout = c.duration(
        "auth.api_keys.busy_timeout",
        raw.busy_timeout.as_ref(),
        Duration::from_secs(5),
    );
    if c.errors.len() > before {
        return None;
    }
    Some(ApiKeysConfig {
        busy_timeout,
        store_path: store_path?,
        pepper: pepper?,
        settings: ApiKeySettings {
            header: header?,
            authorization_scheme: raw.authorization_scheme.unwrap_or(false),
            cache_ttl,
            cache_capacity: defaults.cache_capacity,
        },
        touch_interval,
    })
}

fn compile_provider(
    c: &mut Compiler,
    i: usize,
    raw: &RawJwtProvider,
    env: Environment,
) -> Option<JwtProviderConfig> {
    let at = |field: &str| format!("auth.jwt[{i}].{field}");
    let errors_before = c.errors.len();
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
        if !c.secret_paths.iter().any(|p| *p == at("secret")) {
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
        let path = resolve(c.base_dir.as_deref(), file);
        match super::load::read_file(&path, super::load::MAX_CONFIG_FILE) {
            Ok(bytes) => match KeySet::from_jwks(&bytes, true) {
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
            },
            Err(e) => {
                c.error(
                    at("jwks_file"),
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
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
    if c.errors.len() > errors_before {
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
    let get = |f: fn(&super::raw::RawJwks) -> Option<&super::raw::Scalar>| j.and_then(f);
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
        let path = resolve(c.base_dir.as_deref(), file);
        match super::load::read_file(&path, super::load::MAX_CONFIG_FILE) {
            Ok(pem) => settings.ca_pem = Some(pem),
            Err(e) => c.error(
                at("ca_file"),
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }
    let startup = match j.and_then(|j| j.startup.as_deref()) {
        None | Some("wait") => Startup::Wait,
        Some("not_ready") => Startup::NotReady,
        Some(other) => {
            c.error(
                at("startup"),
                format!("expected wait or not_ready, got {other:?}"),
            );
            Startup::Wait
        }
    };
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
