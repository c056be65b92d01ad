//! Who is calling: what authentication puts into request extensions.
//!
//! Produced by an authenticator (JWT now, API keys and client certificates later) in the
//! per-route stack, read by authorization, rate limiting, audit and the proxy (which turns it
//! into `X-Warden-*` headers for the upstream). Stored as `Arc<Identity>` so a cached identity
//! costs a reference count, not a copy.

use std::sync::Arc;

use serde_json::{Map, Value};

/// Whether `text` may be an identity value (subject, tenant, role, scope): it travels upstream
/// in a header, and upstreams trim and re-encode header values, so what the gateway checked
/// must be exactly what the upstream reads. Non-empty printable ASCII (`0x20..=0x7E`) with no
/// space at either end: `"acme "` would merge into `acme` upstream while the gateway's own
/// tenant checks treat them as different, and non-ASCII has no single header spelling.
pub fn is_header_safe(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| (0x20..=0x7e).contains(b))
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
}

/// Whether `text` may be one item of an identity list (a role or a scope): header-safe, and
/// without the separators the upstream headers use (`,` for roles, space for scopes).
pub fn is_list_item_safe(text: &str) -> bool {
    is_header_safe(text) && !text.contains([',', ' '])
}

/// How the identity was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A signed JWT from a configured issuer.
    Jwt,
    /// A Warden API key.
    ApiKey,
    /// A verified mTLS client certificate.
    ClientCert,
}

impl AuthMethod {
    /// Stable label (`jwt`, `api_key`, `client_cert`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::ClientCert => "client_cert",
        }
    }
}

/// Where the credential was found, so the gateway can drop it before forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialSource {
    /// `Authorization` header.
    AuthorizationHeader,
    /// A cookie with this name.
    Cookie(String),
    /// A query parameter with this name.
    Query(String),
    /// Another header (API keys).
    Header(http::HeaderName),
    /// The connection's verified TLS client certificate (nothing to strip).
    ClientCertificate,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Identity {
    /// Subject (`sub`, or the API key id).
    pub subject: String,
    /// Tenant, when the credential names one.
    pub tenant: Option<String>,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// Roles, as granted by the credential.
    pub roles: Vec<String>,
    /// OAuth scopes.
    pub scopes: Vec<String>,
    /// All claims of the credential (JWT payload), for policies.
    pub claims: Arc<Map<String, Value>>,
    /// The key that verified the credential (JWT `kid`, API key id).
    pub key_id: Option<String>,
    /// The issuer (JWT `iss`) or provider name.
    pub issuer: Option<String>,
    /// Authentication context class (`acr`), for step-up.
    pub acr: Option<String>,
    /// When the user authenticated (`auth_time`, Unix seconds), for step-up.
    pub auth_time: Option<i64>,
    /// When the credential expires (Unix seconds).
    pub expires_at: Option<i64>,
    /// Where the credential was found.
    pub source: CredentialSource,
    /// Whether the credential may be forwarded to the upstream.
    pub forward_credentials: bool,
}

impl Identity {
    /// A minimal identity (other fields empty), for authenticators and tests to fill in.
    pub fn new(subject: impl Into<String>, method: AuthMethod, source: CredentialSource) -> Self {
        Identity {
            subject: subject.into(),
            tenant: None,
            method,
            roles: Vec::new(),
            scopes: Vec::new(),
            claims: Arc::new(Map::new()),
            key_id: None,
            issuer: None,
            acr: None,
            auth_time: None,
            expires_at: None,
            source,
            forward_credentials: false,
        }
    }
}
