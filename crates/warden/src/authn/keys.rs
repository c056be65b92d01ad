//! Verification keys: JWKS documents and HMAC secrets compiled into [`KeySet`]s, with each key
//! bound to the algorithms its type allows.
//!
//! The algorithm a token may use is decided here, from the key, never from the token: an RSA
//! key verifies only RS*/PS*, an EC key only the ES* of its curve, an Ed25519 key only EdDSA, and
//! an `oct` secret only HS*. A JWK's own `alg` narrows that further. This is what defeats the
//! classic RS256-to-HS256 confusion (an RSA public key can never be used as an HMAC secret).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Smallest RSA modulus accepted (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;
/// Smallest HMAC secret accepted (RFC 7518 §3.2: at least the hash output size).
pub const MIN_HMAC_BYTES: usize = 32;

/// Why a key or key set could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The document is not a JWKS (`{"keys": [...]}`).
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
    /// The document holds no usable signature key.
    #[error("no usable signature keys ({0})")]
    NoUsableKeys(String),
    /// An HMAC secret is too short.
    #[error("HMAC secret must be at least {MIN_HMAC_BYTES} bytes (256 bits), got {0}")]
    ShortSecret(usize),
}

/// One compiled key.
#[derive(Clone)]
pub struct VerifyingKey {
    /// `kid`, if the JWK had one.
    pub kid: Option<String>,
    /// Algorithms this key may verify.
    pub algorithms: Vec<Algorithm>,
    /// The key material.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (an HMAC secret is a secret).
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// A provider's keys.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
}

/// Result of looking a token's key up.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Keys that may verify the token (one for a known `kid`; possibly several without `kid`).
    Candidates(Vec<&'a Arc<VerifyingKey>>),
    /// The `kid` is not in the set.
    UnknownKid,
    /// The key exists but may not verify this algorithm (or no key fits a kid-less token).
    AlgorithmMismatch,
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot verify signatures (encryption keys, unknown
    /// types, weak keys, remote symmetric keys) are skipped and described in the returned list.
    pub fn from_jwks(
        bytes: &[u8],
        allow_symmetric: bool,
    ) -> Result<(KeySet, Vec<String>), KeyError> {
        let document: Value =
            serde_json::from_slice(bytes).map_err(|e| KeyError::NotJwks(e.to_string()))?;
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| KeyError::NotJwks("missing \"keys\" array".into()))?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (i, jwk) in keys.iter().enumerate() {
            match compile_jwk(jwk, allow_symmetric) {
                Ok(key) => set.keys.push(Arc::new(key)),
                Err(reason) => skipped.push(format!("keys[{i}]: {reason}")),
            }
        }
        if set.keys.is_empty() {
            return Err(KeyError::NoUsableKeys(skipped.join("; ")));
        }
        Ok((set, skipped))
    }

    /// A single HMAC secret, usable with `algorithms` (which must all be HS*).
    pub fn from_hmac_secret(secret: &[u8], algorithms: &[Algorithm]) -> Result<KeySet, KeyError> {
        if secret.len() < MIN_HMAC_BYTES {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        let algorithms = algorithms.iter().copied().filter(|a| is_hmac(*a)).collect();
        Ok(KeySet {
            keys: vec![Arc::new(VerifyingKey {
                kid: None,
                algorithms,
                key: DecodingKey::from_secret(secret),
            })],
        })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Finds the keys that may verify a token with `kid` and `alg`.
    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => {
                let mut found = false;
                let candidates: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .inspect(|_| found = true)
                    .filter(|k| k.algorithms.contains(&alg))
                    .collect();
                match (found, candidates.is_empty()) {
                    (false, _) => Lookup::UnknownKid,
                    (true, true) => Lookup::AlgorithmMismatch,
                    (true, false) => Lookup::Candidates(candidates),
                }
            }
            None => {
                let candidates: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|k| k.algorithms.contains(&alg))
                    .collect();
                if candidates.is_empty() {
                    Lookup::AlgorithmMismatch
                } else {
                    Lookup::Candidates(candidates)
                }
            }
        }
    }
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn text<'a>(jwk: &'a Value, member: &str) -> Result<&'a str, String> {
    jwk.get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing or non-string \"{member}\""))
}

fn decoded_len(b64: &str) -> Result<usize, String> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .map(|bytes| {
            // Leading zero bytes do not count towards an RSA modulus size.
            bytes.iter().skip_while(|b| **b == 0).count()
        })
        .map_err(|_| "invalid base64url".to_owned())
}

fn compile_jwk(jwk: &Value, allow_symmetric: bool) -> Result<VerifyingKey, String> {
    if !jwk.is_object() {
        return Err("not a JSON object".into());
    }
    if let Some(usage) = jwk.get("use")
        && usage != "sig"
    {
        return Err(format!("\"use\" is {usage}, not \"sig\""));
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err("\"key_ops\" does not include \"verify\"".into());
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("non-string \"kid\"".into()),
    };
    let declared = match jwk.get("alg") {
        None => None,
        Some(Value::String(alg)) => Some(
            alg.parse::<Algorithm>()
                .map_err(|_| format!("unsupported \"alg\" {alg:?}"))?,
        ),
        Some(_) => return Err("non-string \"alg\"".into()),
    };
    let kty = text(jwk, "kty")?;
    let (family, key): (&[Algorithm], DecodingKey) = match kty {
        "RSA" => {
            if jwk.get("d").is_some() {
                return Err("contains private key material".into());
            }
            let (n, e) = (text(jwk, "n")?, text(jwk, "e")?);
            let bits = decoded_len(n)? * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA modulus of {bits} bits is below {MIN_RSA_BITS}"
                ));
            }
            let key = DecodingKey::from_rsa_components(n, e).map_err(|e| e.to_string())?;
            (
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                key,
            )
        }
        "EC" => {
            if jwk.get("d").is_some() {
                return Err("contains private key material".into());
            }
            let family: &[Algorithm] = match text(jwk, "crv")? {
                "P-256" => &[Algorithm::ES256],
                "P-384" => &[Algorithm::ES384],
                other => return Err(format!("unsupported curve {other:?}")),
            };
            let key = DecodingKey::from_ec_components(text(jwk, "x")?, text(jwk, "y")?)
                .map_err(|e| e.to_string())?;
            (family, key)
        }
        "OKP" => {
            if jwk.get("d").is_some() {
                return Err("contains private key material".into());
            }
            if text(jwk, "crv")? != "Ed25519" {
                return Err("unsupported OKP curve (only Ed25519)".into());
            }
            let key =
                DecodingKey::from_ed_components(text(jwk, "x")?).map_err(|e| e.to_string())?;
            (&[Algorithm::EdDSA], key)
        }
        "oct" => {
            if !allow_symmetric {
                return Err("symmetric key in a remote JWKS (refused: a public key set must not carry secrets)".into());
            }
            let secret = URL_SAFE_NO_PAD
                .decode(text(jwk, "k")?)
                .map_err(|_| "invalid base64url in \"k\"".to_owned())?;
            if secret.len() < MIN_HMAC_BYTES {
                return Err(format!(
                    "HMAC secret of {} bytes is below {MIN_HMAC_BYTES}",
                    secret.len()
                ));
            }
            (
                &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
                DecodingKey::from_secret(&secret),
            )
        }
        other => return Err(format!("unsupported key type {other:?}")),
    };
    let algorithms = match declared {
        Some(alg) if family.contains(&alg) => vec![alg],
        Some(alg) => return Err(format!("\"alg\" {alg:?} does not fit key type {kty}")),
        None => family.to_vec(),
    };
    Ok(VerifyingKey {
        kid,
        algorithms,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    fn jwks(keys: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).expect("json")
    }

    #[test]
    fn rsa_keys_verify_only_rsa_algorithms() {
        let (set, skipped) = KeySet::from_jwks(
            &jwks(serde_json::json!([{ "kty": "RSA", "kid": "k1", "n": RSA_N, "e": "AQAB" }])),
            false,
        )
        .expect("jwks");
        assert!(skipped.is_empty());
        assert!(
            matches!(set.lookup(Some("k1"), Algorithm::RS256), Lookup::Candidates(c) if c.len() == 1)
        );
        assert!(matches!(
            set.lookup(Some("k1"), Algorithm::HS256),
            Lookup::AlgorithmMismatch
        ));
        assert!(matches!(
            set.lookup(Some("k2"), Algorithm::RS256),
            Lookup::UnknownKid
        ));
        assert!(matches!(
            set.lookup(None, Algorithm::ES256),
            Lookup::AlgorithmMismatch
        ));
    }

    #[test]
    fn a_declared_alg_narrows_the_key() {
        let (set, _) = KeySet::from_jwks(
            &jwks(serde_json::json!([{ "kty": "RSA", "kid": "k1", "alg": "PS256", "n": RSA_N, "e": "AQAB" }])),
            false,
        )
        .expect("jwks");
        assert!(matches!(
            set.lookup(Some("k1"), Algorithm::RS256),
            Lookup::AlgorithmMismatch
        ));
        assert!(matches!(
            set.lookup(Some("k1"), Algorithm::PS256),
            Lookup::Candidates(_)
        ));
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let document = jwks(serde_json::json!([
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB" },
            { "kty": "RSA", "kid": "weak", "n": "AQAB", "e": "AQAB" },
            { "kty": "oct", "kid": "secret", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA" },
            { "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" },
            { "kty": "RSA", "kid": "ok", "n": RSA_N, "e": "AQAB" }
        ]));
        let (set, skipped) = KeySet::from_jwks(&document, false).expect("one usable key");
        assert_eq!(set.len(), 1);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(KeySet::from_jwks(br#"{"keys": []}"#, false).is_err());
        assert!(KeySet::from_jwks(b"[]", false).is_err());
    }

    #[test]
    fn hmac_secrets_need_256_bits() {
        assert!(matches!(
            KeySet::from_hmac_secret(b"short", &[Algorithm::HS256]),
            Err(KeyError::ShortSecret(5))
        ));
        let set = KeySet::from_hmac_secret(&[7u8; 32], &[Algorithm::HS256, Algorithm::RS256])
            .expect("set");
        assert!(matches!(
            set.lookup(None, Algorithm::HS256),
            Lookup::Candidates(_)
        ));
        assert!(matches!(
            set.lookup(None, Algorithm::RS256),
            Lookup::AlgorithmMismatch
        ));
    }
}

/// What a provider's key source can offer right now.
#[derive(Clone, Debug)]
pub enum KeysState {
    /// Usable keys and their generation (it changes whenever the key set changes).
    Ready(Arc<KeySet>, u64),
    /// No usable keys: never fetched, or the last good set is older than the staleness limit.
    Unavailable,
}

/// Where a provider's keys come from: a fixed set, or a remote JWKS kept fresh in the background.
pub trait KeySource: std::fmt::Debug + Send + Sync + 'static {
    /// The keys to verify with at `now`.
    fn current(&self, now: std::time::SystemTime) -> KeysState;

    /// Called when a token names an unknown `kid`: a remote source may refetch (at most once per
    /// its minimum refresh interval, however many callers ask). Static sources do nothing.
    fn refresh_for_unknown_kid(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Whether keys are loaded (for readiness).
    fn is_ready(&self) -> bool;
}

/// Keys fixed at configuration time (`jwks_file`, `secret`).
#[derive(Debug)]
pub struct StaticKeys {
    keys: Arc<KeySet>,
}

impl StaticKeys {
    /// Serves `keys` forever.
    pub fn new(keys: KeySet) -> Self {
        StaticKeys {
            keys: Arc::new(keys),
        }
    }
}

impl KeySource for StaticKeys {
    fn current(&self, _now: std::time::SystemTime) -> KeysState {
        KeysState::Ready(self.keys.clone(), 0)
    }

    fn is_ready(&self) -> bool {
        true
    }
}
