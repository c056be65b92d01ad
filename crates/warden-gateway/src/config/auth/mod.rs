//! `auth:` — whether routes need an identity, the JWT/OIDC providers (`jwt.rs`), where tokens
//! are read from, the token cache, and API keys. Compiled here; turned into live authenticators
//! by the gateway's build step (`runtime.rs`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use warden::authn::api_key::{ApiKeySettings, Pepper};
use warden::authn::client_cert::ClientCertAuthenticator;
use warden::authn::sources::TokenSources;

use super::server::Environment;
use super::toolkit::{Compiler, Scalar};

pub mod jwt;

pub use jwt::{JwtProviderConfig, KeySpec, RawJwtProvider, Secret, Startup};

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
    /// Identities from verified mTLS client certificates (`server.tls.client_ca`).
    pub client_cert: Option<RawClientCert>,
}

/// `auth.client_cert:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClientCert {
    /// `san_uri` (default: SPIFFE IDs), `san_dns` or `cn`.
    pub subject: Option<String>,
    /// The tenant from the subject name: `o` or `ou` (default: none).
    pub tenant_from: Option<String>,
    /// Roles, scopes and tenant by subject; the first match applies.
    pub identities: Vec<RawCertificateIdentity>,
}

/// `auth.client_cert.identities[]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCertificateIdentity {
    /// An exact subject, or a prefix ending in `*`.
    pub subject: String,
    /// Roles granted.
    pub roles: Vec<String>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Tenant.
    pub tenant: Option<String>,
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
    /// How client certificates authenticate, if they do.
    pub client_cert: Option<ClientCertAuthenticator>,
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
        !self.providers.is_empty() || self.api_keys.is_some() || self.client_cert.is_some()
    }
}

/// Compiles `auth:`.
pub fn compile(c: &mut Compiler, raw: &RawAuth, env: Environment) -> AuthConfig {
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
        if let Some(compiled) = jwt::compile_provider(c, i, provider, env) {
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
    let client_cert = raw
        .client_cert
        .as_ref()
        .map(|cert| compile_client_cert(c, cert));
    AuthConfig {
        required: raw.required.unwrap_or(true),
        providers,
        sources,
        token_cache: raw.token_cache.unwrap_or(100_000),
        api_keys,
        client_cert,
    }
}

fn compile_client_cert(c: &mut Compiler, raw: &RawClientCert) -> ClientCertAuthenticator {
    use warden::authn::client_cert::{CertificateMapping, SubjectFrom, SubjectPattern, TenantFrom};
    let subject = c.choice(
        "auth.client_cert.subject",
        raw.subject.as_deref(),
        &[
            ("san_uri", SubjectFrom::SanUri),
            ("san_dns", SubjectFrom::SanDns),
            ("cn", SubjectFrom::Cn),
        ],
        SubjectFrom::SanUri,
    );
    let tenant_from = raw.tenant_from.as_deref().map(|from| {
        c.choice(
            "auth.client_cert.tenant_from",
            Some(from),
            &[
                ("o", TenantFrom::Organization),
                ("ou", TenantFrom::OrganizationalUnit),
            ],
            TenantFrom::Organization,
        )
    });
    let mut mappings = Vec::new();
    for (i, entry) in raw.identities.iter().enumerate() {
        let at = |field: &str| format!("auth.client_cert.identities[{i}].{field}");
        let pattern = entry.subject.trim();
        let fixed = pattern.strip_suffix('*').unwrap_or(pattern);
        if fixed.is_empty() || fixed.contains('*') {
            c.error(
                at("subject"),
                "expected a subject, or a prefix ending in * (a lone * would match every certificate the CA signs: list no subject instead)",
            );
            continue;
        }
        let mut items = |field: &str, values: &[String]| -> Vec<String> {
            let mut kept = Vec::new();
            for (j, value) in values.iter().enumerate() {
                if warden::identity::is_list_item_safe(value) {
                    kept.push(value.clone());
                } else {
                    c.error(
                        format!("{}[{j}]", at(field)),
                        format!(
                            "{value:?} is not a usable name (printable ASCII, no spaces or commas)"
                        ),
                    );
                }
            }
            kept
        };
        let roles = items("roles", &entry.roles);
        let scopes = items("scopes", &entry.scopes);
        let tenant = entry.tenant.clone();
        if tenant
            .as_deref()
            .is_some_and(|t| !warden::identity::is_header_safe(t))
        {
            c.error(at("tenant"), "expected printable ASCII");
        }
        mappings.push(CertificateMapping {
            subject: SubjectPattern::new(pattern),
            roles,
            scopes,
            tenant,
        });
    }
    ClientCertAuthenticator::new(subject)
        .with_mappings(mappings)
        .with_tenant_from(tenant_from)
}

fn compile_api_keys(c: &mut Compiler, raw: &RawApiKeys) -> Option<ApiKeysConfig> {
    let before = c.checkpoint();
    let store_path = match raw.store.as_deref() {
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(file) if !file.is_empty() => Some(c.resolve(file)),
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
            if !c.is_secret("auth.api_keys.pepper") {
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
    if c.failed_since(before) {
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
