//! API keys: a recognizable, checksummed format; a keyed hash at rest; a short cache in front
//! of the store.
//!
//! Format: `wdn_` + 32 base62 characters from the OS RNG (≈190 bits) + a 6-character base62
//! checksum of the body. A mistyped or truncated key fails the checksum and is refused without
//! touching the store; secret scanners can recognize leaked keys by the prefix and shape.
//!
//! At rest only `HMAC-SHA-256(pepper, key)` is kept; a stolen database without the pepper does
//! not yield usable keys, and the lookup is by that digest (an index probe), with the final
//! comparison done in constant time. Verified keys are cached for `cache_ttl`, which is the bound
//! on how long a revocation takes to apply; last use is recorded in batches, not per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use futures_util::future::BoxFuture;
use http::HeaderName;
use http::header::AUTHORIZATION;
use http::request::Parts;

use super::{Authenticator, AuthnError, InvalidReason};
use crate::clock::Clock;
use crate::identity::{AuthMethod, CredentialSource, Identity};

/// Prefix of every Warden API key.
pub const PREFIX: &str = "wdn_";
pub(crate) const BODY_LEN: usize = 32;
const CHECK_LEN: usize = 6;
/// Total length of a key.
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECK_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Random base62 text of `len` characters from the OS RNG (rejection sampling: no modulo bias).
pub fn random_base62(len: usize) -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buffer = [0u8; 64];
    while out.len() < len {
        if rng.fill(&mut buffer).is_err() {
            continue;
        }
        for byte in buffer {
            // 248 = 4 * 62: bytes above it would favour the first characters.
            if byte < 248 && out.len() < len {
                out.push(char::from(BASE62[usize::from(byte % 62)]));
            }
        }
    }
    out
}

pub(crate) fn checksum(body: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let bytes = digest.as_ref();
    let mut value = u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A new random API key.
pub fn generate() -> String {
    let body = random_base62(BODY_LEN);
    format!("{PREFIX}{body}{}", checksum(&body))
}

/// Whether `key` has the prefix, length, alphabet and checksum of a Warden key.
pub fn well_formed(key: &str) -> bool {
    let Some(rest) = key.strip_prefix(PREFIX) else {
        return false;
    };
    if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, check) = rest.split_at(BODY_LEN);
    aws_lc_rs::constant_time::verify_slices_are_equal(checksum(body).as_bytes(), check.as_bytes())
        .is_ok()
}

/// The secret that keys the at-rest hash. `Debug` never shows it.
#[derive(Clone)]
pub struct Pepper(hmac::Key);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper([redacted])")
    }
}

/// Smallest pepper accepted.
pub const MIN_PEPPER_BYTES: usize = 32;

impl Pepper {
    /// A pepper of at least 32 bytes.
    pub fn new(secret: &[u8]) -> Option<Self> {
        (secret.len() >= MIN_PEPPER_BYTES)
            .then(|| Pepper(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// `HMAC-SHA-256(pepper, key)`: what the store keeps and looks up by.
    pub fn digest(&self, key: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.0, key.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// A stored key's record (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id (`key_…`), the identity's subject.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Tenant the key acts for.
    pub tenant: Option<String>,
    /// Roles granted.
    pub roles: Vec<String>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// `HMAC-SHA-256(pepper, key)`.
    pub hash: [u8; 32],
    /// Creation (Unix seconds).
    pub created_at: i64,
    /// Expiry (Unix seconds).
    pub expires_at: Option<i64>,
    /// Revocation (Unix seconds).
    pub revoked_at: Option<i64>,
    /// Last recorded use (Unix seconds; batched, so up to the touch interval late).
    pub last_used_at: Option<i64>,
    /// The key this one replaced, if it came from a rotation.
    pub rotated_from: Option<String>,
}

impl StoredKey {
    /// Whether the key is usable at `now`. A revocation counts whatever its timestamp says:
    /// the clocks of the CLI that revoked and of the gateway need not agree.
    pub fn active_at(&self, now: i64) -> Result<(), InvalidReason> {
        if self.revoked_at.is_some() {
            return Err(InvalidReason::Revoked);
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return Err(InvalidReason::Expired);
        }
        Ok(())
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("key store: {0}")]
    Backend(String),
    /// No key with that id.
    #[error("no key with id {0:?}")]
    NotFound(String),
}

/// Where keys live.
pub trait ApiKeyStore: std::fmt::Debug + Send + Sync + 'static {
    /// The record whose hash is `hash`.
    fn find<'a>(
        &'a self,
        hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<Option<StoredKey>, StoreError>>;
    /// Records last use for a batch of `(id, unix seconds)`.
    fn touch(&self, used: Vec<(String, i64)>) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Settings of the API-key authenticator.
#[derive(Clone, Debug)]
pub struct ApiKeySettings {
    /// Header carrying the key (default `X-API-Key`).
    pub header: HeaderName,
    /// Also accept `Authorization: ApiKey <key>`.
    pub authorization_scheme: bool,
    /// How long a verified key is trusted without asking the store (the revocation bound).
    pub cache_ttl: Duration,
    /// Cache capacity.
    pub cache_capacity: u64,
}

impl Default for ApiKeySettings {
    fn default() -> Self {
        ApiKeySettings {
            header: HeaderName::from_static("x-api-key"),
            authorization_scheme: false,
            cache_ttl: Duration::from_secs(5),
            cache_capacity: 100_000,
        }
    }
}

/// Authenticates requests by API key.
#[derive(Clone)]
pub struct ApiKeyAuthenticator {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ApiKeySettings,
    pepper: Pepper,
    store: Arc<dyn ApiKeyStore>,
    /// Verified records with the (injected) time they were fetched: the TTL is judged on the
    /// gateway's clock, so the revocation bound holds under any clock (moka's own TTL, on real
    /// time, only bounds memory).
    cache: moka::sync::Cache<[u8; 32], (Arc<StoredKey>, f64)>,
    clock: Arc<dyn Clock>,
    used: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("header", &self.inner.settings.header)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl ApiKeyAuthenticator {
    /// An authenticator over `store`.
    pub fn new(
        settings: ApiKeySettings,
        pepper: Pepper,
        store: Arc<dyn ApiKeyStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(settings.cache_capacity)
            .time_to_live(settings.cache_ttl)
            .build();
        ApiKeyAuthenticator {
            inner: Arc::new(Inner {
                settings,
                pepper,
                store,
                cache,
                clock,
                used: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Verifies one key (no extraction).
    pub async fn verify(&self, key: &str) -> Result<Arc<Identity>, AuthnError> {
        self.inner.verify(key).await
    }

    /// Writes recorded uses to the store; the gateway calls it every touch interval.
    pub async fn flush_usage(&self) -> Result<usize, StoreError> {
        let batch: Vec<(String, i64)> = {
            let mut used = self.inner.used.lock().unwrap_or_else(|p| p.into_inner());
            used.drain().collect()
        };
        let count = batch.len();
        if count > 0 {
            self.inner.store.touch(batch).await?;
        }
        Ok(count)
    }

    fn extract(&self, parts: &Parts) -> Result<Option<String>, AuthnError> {
        let settings = &self.inner.settings;
        let mut found: Option<String> = None;
        let mut values = parts.headers.get_all(&settings.header).iter();
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Err(AuthnError::Ambiguous("more than one API key header"));
            }
            let text = value.to_str().map_err(|_| {
                AuthnError::Invalid(InvalidReason::Malformed("API key is not ASCII"))
            })?;
            found = Some(text.trim().to_owned());
        }
        if settings.authorization_scheme {
            for value in parts.headers.get_all(AUTHORIZATION) {
                let Ok(text) = value.to_str() else { continue };
                let Some((scheme, key)) = text.split_once(' ') else {
                    continue;
                };
                if !scheme.eq_ignore_ascii_case("apikey") {
                    continue;
                }
                let key = key.trim().to_owned();
                match &found {
                    Some(existing) if *existing != key => {
                        return Err(AuthnError::Ambiguous(
                            "two different API keys in one request",
                        ));
                    }
                    _ => found = Some(key),
                }
            }
        }
        Ok(found)
    }
}

impl Inner {
    async fn verify(&self, key: &str) -> Result<Arc<Identity>, AuthnError> {
        // Mistyped, truncated or forged keys stop here, without touching the store.
        if !well_formed(key) {
            return Err(AuthnError::Invalid(InvalidReason::Malformed(
                "not a well-formed API key",
            )));
        }
        let digest = self.pepper.digest(key);
        let now = self.clock.unix_seconds();
        let ttl = self.settings.cache_ttl.as_secs_f64();
        let cached = self
            .cache
            .get(&digest)
            .filter(|(_, fetched)| now - fetched < ttl);
        let record = match cached {
            Some((record, _)) => record,
            None => {
                metrics::counter!("warden_api_key_store_lookups_total").increment(1);
                let found = self
                    .store
                    .find(&digest)
                    .await
                    .map_err(|e| AuthnError::StoreUnavailable(e.to_string()))?;
                let record = Arc::new(found.ok_or(AuthnError::Invalid(InvalidReason::UnknownKey))?);
                self.cache.insert(digest, (record.clone(), now));
                record
            }
        };
        // The store found the row by this digest; compare anyway, in constant time, so a store
        // that matched loosely can never authenticate the wrong key.
        if aws_lc_rs::constant_time::verify_slices_are_equal(&record.hash, &digest).is_err() {
            return Err(AuthnError::Invalid(InvalidReason::UnknownKey));
        }
        let now = now as i64;
        record.active_at(now).map_err(AuthnError::Invalid)?;
        // Written by an operator, but still what the upstream will read in a header.
        if record
            .tenant
            .as_deref()
            .is_some_and(|t| !crate::identity::is_header_safe(t))
            || record
                .roles
                .iter()
                .chain(&record.scopes)
                .any(|v| !crate::identity::is_list_item_safe(v))
        {
            tracing::warn!(key = %record.id, "API key record holds an identity value unsafe for headers");
            return Err(AuthnError::Invalid(InvalidReason::WrongClaimType("tenant")));
        }
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.id.clone(), now);
        let mut identity = Identity::new(
            record.id.clone(),
            AuthMethod::ApiKey,
            CredentialSource::Header(self.settings.header.clone()),
        );
        identity.tenant = record.tenant.clone();
        identity.roles = record.roles.clone();
        identity.scopes = record.scopes.clone();
        identity.key_id = Some(record.id.clone());
        identity.expires_at = record.expires_at;
        Ok(Arc::new(identity))
    }
}

impl Authenticator for ApiKeyAuthenticator {
    fn method(&self) -> Option<crate::identity::AuthMethod> {
        Some(crate::identity::AuthMethod::ApiKey)
    }

    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        Box::pin(async move {
            match self.extract(req)? {
                None => Ok(None),
                Some(key) => self.inner.verify(&key).await.map(Some),
            }
        })
    }

    fn strip_credentials(&self, req: &mut Parts) {
        req.headers.remove(&self.inner.settings.header);
        if self.inner.settings.authorization_scheme {
            let api_key_scheme = req
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("apikey "));
            if api_key_scheme {
                req.headers.remove(AUTHORIZATION);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn generated_keys_are_well_formed_and_typos_are_caught() {
        let key = generate();
        assert_eq!(key.len(), KEY_LEN);
        assert!(key.starts_with("wdn_"));
        assert!(well_formed(&key));
        assert_ne!(generate(), key);
        // Every single-character substitution in the body or checksum is caught.
        let bytes = key.as_bytes();
        for i in PREFIX.len()..KEY_LEN {
            let mut typo = bytes.to_vec();
            typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
            assert!(
                !well_formed(&String::from_utf8(typo).expect("ascii")),
                "typo at {i} passed"
            );
        }
        assert!(!well_formed(&key.replacen("wdn_", "wdx_", 1)));
        assert!(!well_formed(&key[..KEY_LEN - 1]));
        assert!(!well_formed(&format!("{key}0")));
        assert!(!well_formed(""));
    }

    #[test]
    fn the_pepper_keys_the_hash_and_hides_itself() {
        let a = Pepper::new(&[1u8; 32]).expect("pepper");
        let b = Pepper::new(&[2u8; 32]).expect("pepper");
        let key = generate();
        assert_ne!(a.digest(&key), b.digest(&key));
        assert_eq!(a.digest(&key), a.digest(&key));
        assert!(Pepper::new(b"short").is_none());
        assert_eq!(format!("{a:?}"), "Pepper([redacted])");
    }

    /// A store that counts lookups and knows one key.
    #[derive(Debug)]
    struct CountingStore {
        lookups: AtomicUsize,
        record: StoredKey,
    }

    impl ApiKeyStore for CountingStore {
        fn find<'a>(
            &'a self,
            hash: &'a [u8; 32],
        ) -> BoxFuture<'a, Result<Option<StoredKey>, StoreError>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let found = (self.record.hash == *hash).then(|| self.record.clone());
            Box::pin(std::future::ready(Ok(found)))
        }
        fn touch(&self, _used: Vec<(String, i64)>) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(std::future::ready(Ok(())))
        }
    }

    #[tokio::test]
    async fn malformed_keys_never_reach_the_store_and_good_ones_are_cached() {
        let pepper = Pepper::new(&[3u8; 32]).expect("pepper");
        let key = generate();
        let store = Arc::new(CountingStore {
            lookups: AtomicUsize::new(0),
            record: StoredKey {
                id: "key_1".into(),
                name: "ci".into(),
                tenant: Some("acme".into()),
                roles: vec!["user".into()],
                scopes: vec![],
                hash: pepper.digest(&key),
                created_at: 0,
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
                rotated_from: None,
            },
        });
        let clock = Arc::new(ManualClock::starting_now());
        let authenticator = ApiKeyAuthenticator::new(
            ApiKeySettings::default(),
            pepper,
            store.clone(),
            clock.clone(),
        );
        let mut tampered = key.clone().into_bytes();
        tampered[10] ^= 1;
        for bad in [
            String::from_utf8(tampered).expect("ascii"),
            key.replacen("wdn_", "sk_", 1),
            "wdn_short".into(),
        ] {
            assert!(matches!(
                authenticator.verify(&bad).await,
                Err(AuthnError::Invalid(InvalidReason::Malformed(_)))
            ));
        }
        assert_eq!(
            store.lookups.load(Ordering::SeqCst),
            0,
            "a malformed key touched the store"
        );
        let identity = authenticator.verify(&key).await.expect("valid");
        assert_eq!(identity.subject, "key_1");
        assert_eq!(identity.method, AuthMethod::ApiKey);
        authenticator.verify(&key).await.expect("valid again");
        assert_eq!(
            store.lookups.load(Ordering::SeqCst),
            1,
            "the second use was served from the cache"
        );
        // The TTL (5 s by default, the revocation bound) runs on the injected clock.
        clock.advance(std::time::Duration::from_secs(5));
        authenticator
            .verify(&key)
            .await
            .expect("valid after the TTL");
        assert_eq!(
            store.lookups.load(Ordering::SeqCst),
            2,
            "a record past cache_ttl was looked up again"
        );
        assert_eq!(authenticator.flush_usage().await.expect("flush"), 1);
        assert!(matches!(
            authenticator.verify(&generate()).await,
            Err(AuthnError::Invalid(InvalidReason::UnknownKey))
        ));
    }
}
