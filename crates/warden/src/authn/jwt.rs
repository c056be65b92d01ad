//! The JWT/OIDC authenticator: cheap structural checks, issuer-selected provider, key bound
//! algorithm, signature, claims, and a cache of verified tokens.
//!
//! Order of work, cheapest first, so garbage costs almost nothing:
//! 1. size cap and exactly three non-empty segments;
//! 2. verified-token cache (keyed by SHA-256 of the token, never the token);
//! 3. header: strict JSON (no duplicate keys), `alg` in the provider's allow-list (`none` can
//!    never be configured), no `crit`, no embedded key sources (`jwk`, `jku`, `x5u`, `x5c`),
//!    `kid` length-capped;
//! 4. payload: strict JSON; `iss` picks the provider;
//! 5. key lookup by `kid` with the algorithm bound to the key type; an unknown `kid` may trigger
//!    one rate-limited JWKS refetch;
//! 6. signature;
//! 7. claims: `exp` mandatory, `nbf`/`iat` not in the future, `iss`, `aud`, required claims,
//!    session age, claim types;
//! 8. identity mapping (subject, roles, scopes, tenant, acr, auth_time).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use http::request::Parts;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::keys::{KeySource, KeysState, Lookup};
use super::sources::{Found, TokenSources};
use super::strict_json;
use super::{Authenticator, AuthnError, InvalidReason};
use crate::clock::Clock;
use crate::identity::{AuthMethod, Identity};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `kid` accepted.
pub const MAX_KID_BYTES: usize = 256;

/// Where identity fields come from in the claims. A path is first looked up as one claim name
/// (namespaced claims like `https://example.com/roles` contain dots), then as a dotted path
/// into nested objects (`realm_access.roles`).
#[derive(Clone, Debug)]
pub struct ClaimMapping {
    /// Subject (default `sub`).
    pub subject: String,
    /// Roles: an array of strings (default `roles`).
    pub roles: String,
    /// Scopes: a space-delimited string or an array of strings (default `scope`).
    pub scopes: String,
    /// Tenant: a string (default: none).
    pub tenant: Option<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            subject: "sub".into(),
            roles: "roles".into(),
            scopes: "scope".into(),
            tenant: None,
        }
    }
}

/// Everything about a trusted issuer except where its keys come from.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// Name for logs and configuration errors.
    pub name: String,
    /// Expected `iss`.
    pub issuer: String,
    /// Whether `iss` is checked (turning it off is only allowed for a single provider).
    pub verify_issuer: bool,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Whether `aud` is checked.
    pub verify_audience: bool,
    /// Algorithms accepted (never empty; `none` does not exist here).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`.
    pub leeway: Duration,
    /// Claims that must be present (beyond `exp` and the subject, always required).
    pub required_claims: Vec<String>,
    /// Longest session: `auth_time` (else `iat`) must be at most this old.
    pub max_token_age: Option<Duration>,
    /// Identity field mapping.
    pub claims: ClaimMapping,
    /// Forward the token to the upstream.
    pub forward_credentials: bool,
    /// Accept only certificate-bound tokens (RFC 8705 `cnf.x5t#S256`).
    pub require_bound_tokens: bool,
}

/// One trusted issuer: its settings and its keys.
#[derive(Clone, Debug)]
pub struct JwtProvider {
    /// What the issuer's tokens must look like.
    pub settings: ProviderSettings,
    /// Where keys come from.
    pub keys: Arc<dyn KeySource>,
}

#[derive(Clone, Debug)]
struct Cached {
    identity: Arc<Identity>,
    provider: usize,
    generation: u64,
    /// Unix seconds after which the token must be verified again (exp + leeway, session end).
    valid_until: f64,
}

struct CacheExpiry;

impl moka::Expiry<[u8; 32], Cached> for CacheExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Cached,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        // Memory bound only; correctness is re-checked against the injected clock on every hit.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Some(Duration::from_secs_f64(
            (value.valid_until - now).clamp(1.0, 3600.0),
        ))
    }
}

/// Verifies bearer JWTs from the configured providers.
#[derive(Clone)]
pub struct JwtAuthenticator {
    inner: Arc<Inner>,
}

struct Inner {
    providers: Vec<JwtProvider>,
    by_issuer: HashMap<String, usize>,
    sources: TokenSources,
    cache: moka::sync::Cache<[u8; 32], Cached>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field(
                "providers",
                &self
                    .inner
                    .providers
                    .iter()
                    .map(|p| &p.settings.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Misconfiguration detected when building the authenticator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// Two providers share an issuer.
    #[error("providers {0} and {1} share the issuer {2:?}")]
    DuplicateIssuer(String, String, String),
    /// `verify_issuer: false` with more than one provider (the token's `iss` could not pick one).
    #[error("provider {0}: verify_issuer can only be turned off when it is the only provider")]
    UnverifiedIssuerAmongMany(String),
    /// A provider accepts no algorithm.
    #[error("provider {0}: algorithms must not be empty")]
    NoAlgorithms(String),
    /// `verify_audience` is on but no audience is configured.
    #[error("provider {0}: audiences must not be empty unless verify_audience is false")]
    NoAudiences(String),
}

impl JwtAuthenticator {
    /// Builds the authenticator. `cache_capacity` bounds the verified-token cache (0 disables).
    pub fn new(
        providers: Vec<JwtProvider>,
        sources: TokenSources,
        clock: Arc<dyn Clock>,
        cache_capacity: u64,
    ) -> Result<Self, JwtConfigError> {
        let mut by_issuer = HashMap::new();
        for (i, provider) in providers.iter().enumerate() {
            if provider.settings.algorithms.is_empty() {
                return Err(JwtConfigError::NoAlgorithms(provider.settings.name.clone()));
            }
            if provider.settings.verify_audience && provider.settings.audiences.is_empty() {
                return Err(JwtConfigError::NoAudiences(provider.settings.name.clone()));
            }
            if !provider.settings.verify_issuer && providers.len() > 1 {
                return Err(JwtConfigError::UnverifiedIssuerAmongMany(
                    provider.settings.name.clone(),
                ));
            }
            if let Some(previous) = by_issuer.insert(provider.settings.issuer.clone(), i) {
                return Err(JwtConfigError::DuplicateIssuer(
                    providers[previous].settings.name.clone(),
                    provider.settings.name.clone(),
                    provider.settings.issuer.clone(),
                ));
            }
        }
        let cache = moka::sync::Cache::builder()
            .max_capacity(cache_capacity)
            .expire_after(CacheExpiry)
            .build();
        Ok(JwtAuthenticator {
            inner: Arc::new(Inner {
                providers,
                by_issuer,
                sources,
                cache,
                clock,
            }),
        })
    }

    /// Whether every provider has keys (for readiness).
    pub fn is_ready(&self) -> bool {
        self.inner.providers.iter().all(|p| p.keys.is_ready())
    }

    /// Verifies one token (no extraction): the core used by the authenticator and benchmarks.
    pub async fn verify(
        &self,
        token: &str,
        found: &Found<'_>,
    ) -> Result<Arc<Identity>, AuthnError> {
        self.inner.verify(token, found).await
    }
}

impl Authenticator for JwtAuthenticator {
    fn method(&self) -> Option<crate::identity::AuthMethod> {
        Some(crate::identity::AuthMethod::Jwt)
    }

    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        Box::pin(async move {
            let Some(found) = self.inner.sources.extract(req)? else {
                return Ok(None);
            };
            let identity = self.inner.verify(found.token, &found).await?;
            // Per request, cache hits included: a bound token is only as good as the
            // connection it arrives on.
            self.inner.check_binding(&identity, req)?;
            Ok(Some(identity))
        })
    }

    fn strip_credentials(&self, req: &mut Parts) {
        self.inner.sources.strip(req);
    }
}

fn invalid(reason: InvalidReason) -> AuthnError {
    AuthnError::Invalid(reason)
}

impl Inner {
    /// RFC 8705: a token carrying `cnf.x5t#S256` is accepted only over a connection whose
    /// verified client certificate has that SHA-256 thumbprint; a provider may require every
    /// token to be bound.
    fn check_binding(&self, identity: &Identity, req: &Parts) -> Result<(), AuthnError> {
        let bound = identity
            .claims
            .get("cnf")
            .and_then(|cnf| cnf.get("x5t#S256"));
        let required = identity
            .issuer
            .as_deref()
            .and_then(|issuer| self.by_issuer.get(issuer))
            .is_some_and(|&i| self.providers[i].settings.require_bound_tokens);
        let Some(bound) = bound else {
            return if required {
                Err(invalid(InvalidReason::CertificateBinding(
                    "the token is not bound",
                )))
            } else {
                Ok(())
            };
        };
        let Some(expected) = bound.as_str() else {
            return Err(invalid(InvalidReason::WrongClaimType("cnf.x5t#S256")));
        };
        let Some(peer) = req.extensions.get::<super::client_cert::PeerCertificate>() else {
            return Err(invalid(InvalidReason::CertificateBinding(
                "no client certificate on the connection",
            )));
        };
        use base64::Engine as _;
        // Decoded into a fixed buffer (no allocation per request); a value that is not 32
        // bytes of base64url binds to no certificate.
        let mut bound = [0u8; 33];
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(expected, &mut bound)
            .ok()
            .filter(|&n| n == 32);
        // Public values, but compared without an early exit all the same.
        if decoded.is_none()
            || aws_lc_rs::constant_time::verify_slices_are_equal(&bound[..32], peer.thumbprint())
                .is_err()
        {
            return Err(invalid(InvalidReason::CertificateBinding(
                "bound to another certificate",
            )));
        }
        Ok(())
    }

    async fn verify(&self, token: &str, found: &Found<'_>) -> Result<Arc<Identity>, AuthnError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(InvalidReason::Malformed("token larger than 8 KiB")));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(InvalidReason::Malformed(
                "not three dot-separated segments",
            )));
        };
        if header_b64.is_empty() || payload_b64.is_empty() {
            return Err(invalid(InvalidReason::Malformed("empty segment")));
        }
        if signature_b64.is_empty() {
            return Err(invalid(InvalidReason::Malformed("empty signature")));
        }

        let now = self.clock.unix_seconds();
        let digest = token_digest(token);
        if let Some(hit) = self.cache.get(&digest) {
            if now < hit.valid_until && self.generation(hit.provider) == Some(hit.generation) {
                return Ok(with_source(&hit.identity, found));
            }
            self.cache.invalidate(&digest);
        }

        let header = decode_object(header_b64, "header")?;
        let alg_text =
            header
                .get("alg")
                .and_then(Value::as_str)
                .ok_or(invalid(InvalidReason::Malformed(
                    "missing or non-string alg",
                )))?;
        if header.contains_key("crit") {
            return Err(invalid(InvalidReason::CriticalHeader));
        }
        for embedded in ["jwk", "jku", "x5u", "x5c"] {
            if header.contains_key(embedded) {
                return Err(invalid(InvalidReason::EmbeddedKey(embedded)));
            }
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) if kid.len() <= MAX_KID_BYTES => Some(kid.as_str()),
            Some(_) => {
                return Err(invalid(InvalidReason::Malformed(
                    "kid is not a short string",
                )));
            }
        };

        let claims = decode_object(payload_b64, "payload")?;
        let (index, provider) = self.provider_for(&claims)?;
        // `alg` must be one the operator configured: "none" (any case) and unknown names never are.
        let alg = alg_text
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| provider.settings.algorithms.contains(alg))
            .ok_or_else(|| invalid(InvalidReason::AlgorithmNotAllowed(truncate(alg_text))))?;

        let (keys, generation) = self.keys(provider, kid, alg).await?;
        let message_len = header_b64.len() + 1 + payload_b64.len();
        let message = &token.as_bytes()[..message_len];
        let candidates = match keys.lookup(kid, alg) {
            Lookup::Candidates(candidates) => candidates,
            Lookup::UnknownKid => return Err(invalid(InvalidReason::UnknownKid)),
            Lookup::AlgorithmMismatch => {
                return Err(invalid(InvalidReason::AlgorithmNotAllowed(truncate(
                    alg_text,
                ))));
            }
        };
        let verified = candidates.iter().any(|key| {
            jsonwebtoken::crypto::verify(signature_b64, message, &key.key, alg).unwrap_or(false)
        });
        if !verified {
            return Err(invalid(InvalidReason::BadSignature));
        }

        let checked = check_claims(provider, &claims, now)?;
        let identity = Arc::new(build_identity(provider, claims, kid, &checked, found)?);
        // Full verifications (cache misses that passed): a cache that works keeps this flat.
        metrics::counter!("warden_jwt_verifications_total", "provider" => provider.settings.name.clone())
            .increment(1);
        self.cache.insert(
            digest,
            Cached {
                identity: identity.clone(),
                provider: index,
                generation,
                valid_until: checked.valid_until,
            },
        );
        Ok(identity)
    }

    fn generation(&self, provider: usize) -> Option<u64> {
        let provider = self.providers.get(provider)?;
        match provider.keys.current(self.clock.now()) {
            KeysState::Ready(_, generation) => Some(generation),
            KeysState::Unavailable => None,
        }
    }

    fn provider_for(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<(usize, &JwtProvider), AuthnError> {
        match claims.get("iss") {
            Some(Value::String(iss)) => match self.by_issuer.get(iss) {
                Some(&i) => Ok((i, &self.providers[i])),
                None => self
                    .unverified_issuer_provider()
                    .ok_or(invalid(InvalidReason::UnknownIssuer)),
            },
            Some(_) => Err(invalid(InvalidReason::WrongClaimType("iss"))),
            None => self
                .unverified_issuer_provider()
                .ok_or(invalid(InvalidReason::MissingClaim("iss".into()))),
        }
    }

    fn unverified_issuer_provider(&self) -> Option<(usize, &JwtProvider)> {
        match self.providers.as_slice() {
            [only] if !only.settings.verify_issuer => Some((0, only)),
            _ => None,
        }
    }

    async fn keys(
        &self,
        provider: &JwtProvider,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(Arc<super::keys::KeySet>, u64), AuthnError> {
        let state = provider.keys.current(self.clock.now());
        let KeysState::Ready(keys, generation) = state else {
            return Err(AuthnError::KeysUnavailable(provider.settings.name.clone()));
        };
        if !matches!(keys.lookup(kid, alg), Lookup::UnknownKid) {
            return Ok((keys, generation));
        }
        // Unknown kid: maybe the issuer rotated keys. The source refetches at most once per
        // interval, however many requests ask (a flood of random kids causes no fetch storm).
        provider.keys.refresh_for_unknown_kid().await;
        match provider.keys.current(self.clock.now()) {
            KeysState::Ready(keys, generation) => Ok((keys, generation)),
            KeysState::Unavailable => {
                Err(AuthnError::KeysUnavailable(provider.settings.name.clone()))
            }
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(32).collect()
}

fn token_digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn decode_object(segment: &str, what: &'static str) -> Result<Map<String, Value>, AuthnError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| {
        invalid(InvalidReason::Malformed(if what == "header" {
            "header is not base64url"
        } else {
            "payload is not base64url"
        }))
    })?;
    strict_json::object(&bytes).map_err(|_| {
        invalid(InvalidReason::Malformed(if what == "header" {
            "header is not a JSON object without duplicate keys"
        } else {
            "payload is not a JSON object without duplicate keys"
        }))
    })
}

struct Checked {
    valid_until: f64,
    auth_time: Option<i64>,
    exp: f64,
}

fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<f64>, AuthnError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or(invalid(InvalidReason::WrongClaimType(name))),
        Some(_) => Err(invalid(InvalidReason::WrongClaimType(name))),
    }
}

fn check_claims(
    provider: &JwtProvider,
    claims: &Map<String, Value>,
    now: f64,
) -> Result<Checked, AuthnError> {
    let leeway = provider.settings.leeway.as_secs_f64();
    let exp =
        numeric_date(claims, "exp")?.ok_or(invalid(InvalidReason::MissingClaim("exp".into())))?;
    if now >= exp + leeway {
        return Err(invalid(InvalidReason::Expired));
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now + leeway
    {
        return Err(invalid(InvalidReason::NotYetValid));
    }
    let iat = numeric_date(claims, "iat")?;
    if let Some(iat) = iat
        && iat > now + leeway
    {
        return Err(invalid(InvalidReason::IssuedInFuture));
    }
    if provider.settings.verify_issuer {
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == provider.settings.issuer => {}
            Some(Value::String(_)) => return Err(invalid(InvalidReason::UnknownIssuer)),
            Some(_) => return Err(invalid(InvalidReason::WrongClaimType("iss"))),
            None => return Err(invalid(InvalidReason::MissingClaim("iss".into()))),
        }
    }
    if provider.settings.verify_audience {
        let accepted = |aud: &str| provider.settings.audiences.iter().any(|a| a == aud);
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => accepted(aud),
            Some(Value::Array(list)) => {
                let mut any = false;
                for item in list {
                    let aud = item
                        .as_str()
                        .ok_or(invalid(InvalidReason::WrongClaimType("aud")))?;
                    any |= accepted(aud);
                }
                any
            }
            Some(_) => return Err(invalid(InvalidReason::WrongClaimType("aud"))),
            None => return Err(invalid(InvalidReason::MissingClaim("aud".into()))),
        };
        if !ok {
            return Err(invalid(InvalidReason::WrongAudience));
        }
    }
    for required in &provider.settings.required_claims {
        if !claims.contains_key(required) {
            return Err(invalid(InvalidReason::MissingClaim(required.clone())));
        }
    }
    let auth_time = numeric_date(claims, "auth_time")?;
    let mut valid_until = exp + leeway;
    if let Some(max_age) = provider.settings.max_token_age {
        let started = auth_time
            .or(iat)
            .ok_or(invalid(InvalidReason::MissingClaim(
                "auth_time or iat".into(),
            )))?;
        let session_end = started + max_age.as_secs_f64() + leeway;
        if now >= session_end {
            return Err(invalid(InvalidReason::SessionTooOld));
        }
        valid_until = valid_until.min(session_end);
    }
    Ok(Checked {
        valid_until,
        auth_time: auth_time.map(|t| t as i64),
        exp,
    })
}

/// A claim by name, else by dotted path into nested objects.
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

// Identity values travel upstream in headers; list items must not hold the separators.
use crate::identity::{is_header_safe as header_safe, is_list_item_safe};

fn string_list(
    value: Option<&Value>,
    name: &'static str,
    space_delimited: bool,
) -> Result<Vec<String>, AuthnError> {
    let wrong = || invalid(InvalidReason::WrongClaimType(name));
    let items: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if space_delimited => {
            text.split_whitespace().map(str::to_owned).collect()
        }
        Some(Value::Array(list)) => list
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(wrong))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(wrong()),
    };
    if items.iter().any(|item| !is_list_item_safe(item)) {
        return Err(wrong());
    }
    Ok(items)
}

fn build_identity(
    provider: &JwtProvider,
    claims: Map<String, Value>,
    kid: Option<&str>,
    checked: &Checked,
    found: &Found<'_>,
) -> Result<Identity, AuthnError> {
    let subject = match claim(&claims, &provider.settings.claims.subject) {
        Some(Value::String(sub)) if header_safe(sub) => sub.clone(),
        Some(_) => return Err(invalid(InvalidReason::WrongClaimType("sub"))),
        None => {
            return Err(invalid(InvalidReason::MissingClaim(
                provider.settings.claims.subject.clone(),
            )));
        }
    };
    let roles = string_list(
        claim(&claims, &provider.settings.claims.roles),
        "roles",
        false,
    )?;
    let scopes = string_list(
        claim(&claims, &provider.settings.claims.scopes),
        "scope",
        true,
    )?;
    let tenant = match provider
        .settings
        .claims
        .tenant
        .as_deref()
        .and_then(|path| claim(&claims, path))
    {
        None => None,
        Some(Value::String(tenant)) if header_safe(tenant) => Some(tenant.clone()),
        Some(_) => return Err(invalid(InvalidReason::WrongClaimType("tenant"))),
    };
    let acr = match claims.get("acr") {
        None => None,
        Some(Value::String(acr)) => Some(acr.clone()),
        Some(_) => return Err(invalid(InvalidReason::WrongClaimType("acr"))),
    };
    let mut identity = Identity::new(subject, AuthMethod::Jwt, found.source.clone());
    identity.tenant = tenant;
    identity.roles = roles;
    identity.scopes = scopes;
    identity.key_id = kid.map(str::to_owned);
    identity.issuer = Some(provider.settings.issuer.clone());
    identity.acr = acr;
    identity.auth_time = checked.auth_time;
    identity.expires_at = Some(checked.exp as i64);
    identity.forward_credentials = provider.settings.forward_credentials;
    identity.claims = Arc::new(claims);
    Ok(identity)
}

/// A cached identity found through another token source keeps the source of this request.
fn with_source(identity: &Arc<Identity>, found: &Found<'_>) -> Arc<Identity> {
    if identity.source == found.source {
        identity.clone()
    } else {
        let mut copy = Identity::clone(identity);
        copy.source = found.source.clone();
        Arc::new(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::keys::{KeySet, StaticKeys};
    use crate::clock::ManualClock;
    use crate::identity::CredentialSource;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// RFC 7515 Appendix A.1: the HS256 example JWS and its key (also RFC 7519 §3.1).
    const RFC7515_A1_JWS: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC7515_A1_KEY: &str = r#"{"keys":[{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]}"#;

    fn rfc_authenticator(clock: Arc<ManualClock>) -> JwtAuthenticator {
        let (keys, _) = KeySet::from_jwks(RFC7515_A1_KEY.as_bytes(), true).expect("RFC key");
        let provider = JwtProvider {
            settings: ProviderSettings {
                name: "rfc".into(),
                issuer: "joe".into(),
                verify_issuer: true,
                audiences: Vec::new(),
                verify_audience: false,
                algorithms: vec![Algorithm::HS256],
                leeway: Duration::from_secs(30),
                required_claims: vec!["http://example.com/is_root".into()],
                max_token_age: None,
                // The example has no `sub`: take the subject from `iss`.
                claims: ClaimMapping {
                    subject: "iss".into(),
                    ..ClaimMapping::default()
                },
                forward_credentials: false,
                require_bound_tokens: false,
            },
            keys: Arc::new(StaticKeys::new(keys)),
        };
        JwtAuthenticator::new(vec![provider], TokenSources::default(), clock, 16)
            .expect("authenticator")
    }

    fn found() -> Found<'static> {
        Found {
            token: "",
            source: CredentialSource::AuthorizationHeader,
        }
    }

    #[tokio::test]
    async fn the_rfc7515_a1_example_verifies_and_then_expires() {
        let clock = Arc::new(ManualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_300_819_000),
        ));
        let authenticator = rfc_authenticator(clock.clone());
        let identity = authenticator
            .verify(RFC7515_A1_JWS, &found())
            .await
            .expect("valid at 2011-03-22");
        assert_eq!(identity.subject, "joe");
        assert_eq!(identity.claims["http://example.com/is_root"], true);

        // Past exp + leeway the cached verification no longer counts.
        clock.set(UNIX_EPOCH + Duration::from_secs(1_300_819_380 + 31));
        let err = authenticator
            .verify(RFC7515_A1_JWS, &found())
            .await
            .expect_err("expired");
        assert_eq!(err, AuthnError::Invalid(InvalidReason::Expired));

        // One flipped signature bit fails.
        clock.set(UNIX_EPOCH + Duration::from_secs(1_300_819_000));
        let tampered = RFC7515_A1_JWS.replace("dBjftJeZ4CVP", "dBjftJeZ4CVQ");
        let err = authenticator
            .verify(&tampered, &found())
            .await
            .expect_err("tampered");
        assert_eq!(err, AuthnError::Invalid(InvalidReason::BadSignature));
    }

    #[tokio::test]
    async fn sessions_older_than_max_token_age_are_refused() {
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let secret = [9u8; 32];
        let keys = KeySet::from_hmac_secret(&secret, &[Algorithm::HS256]).expect("keys");
        let provider = JwtProvider {
            settings: ProviderSettings {
                name: "p".into(),
                issuer: "https://p.test".into(),
                verify_issuer: true,
                audiences: vec!["api".into()],
                verify_audience: true,
                algorithms: vec![Algorithm::HS256],
                leeway: Duration::ZERO,
                required_claims: Vec::new(),
                max_token_age: Some(Duration::from_secs(3600)),
                claims: ClaimMapping::default(),
                forward_credentials: false,
                require_bound_tokens: false,
            },
            keys: Arc::new(StaticKeys::new(keys)),
        };
        let authenticator =
            JwtAuthenticator::new(vec![provider], TokenSources::default(), clock.clone(), 16)
                .expect("authenticator");
        let now = clock.unix_seconds() as i64;
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .expect("sign")
        };
        let base = |iat: i64, auth_time: Option<i64>| {
            let mut claims = serde_json::json!({"iss": "https://p.test", "aud": "api", "sub": "s", "iat": iat, "exp": now + 7200});
            if let Some(t) = auth_time {
                claims["auth_time"] = t.into();
            }
            claims
        };
        assert!(
            authenticator
                .verify(&sign(base(now - 60, None)), &found())
                .await
                .is_ok()
        );
        let old = authenticator
            .verify(&sign(base(now - 7200, None)), &found())
            .await;
        assert_eq!(
            old.expect_err("old iat"),
            AuthnError::Invalid(InvalidReason::SessionTooOld)
        );
        // auth_time wins over a fresh iat (a refreshed token of an old login).
        let relogin = authenticator
            .verify(&sign(base(now - 10, Some(now - 7200))), &found())
            .await;
        assert_eq!(
            relogin.expect_err("old auth_time"),
            AuthnError::Invalid(InvalidReason::SessionTooOld)
        );
        // A cached token stops counting when the session ends.
        let token = sign(base(now - 3000, None));
        assert!(authenticator.verify(&token, &found()).await.is_ok());
        clock.advance(Duration::from_secs(700));
        assert_eq!(
            authenticator
                .verify(&token, &found())
                .await
                .expect_err("session over"),
            AuthnError::Invalid(InvalidReason::SessionTooOld)
        );
    }
}
