//! JWT header and claims decoding through the whole verification path: never a panic, and no
//! token other than the one the key really signed is ever accepted (the signature covers the
//! exact text of both segments, so no re-encoding, duplicate key, `alg` or `crit` trick may
//! pass). The key is RFC 7515 Appendix A.1's, at a time its example token is valid.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use futures_util::FutureExt as _;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use warden::authn::jwt::{ClaimMapping, JwtAuthenticator, JwtProvider, ProviderSettings};
use warden::authn::keys::{KeySet, StaticKeys};
use warden::authn::sources::{Found, TokenSources};
use warden::clock::ManualClock;
use warden::identity::CredentialSource;

const SIGNED: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const KEY: &str = r#"{"keys":[{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]}"#;

fn authenticator() -> &'static JwtAuthenticator {
    static AUTHENTICATOR: OnceLock<JwtAuthenticator> = OnceLock::new();
    AUTHENTICATOR.get_or_init(|| {
        let (keys, _) = KeySet::from_jwks(KEY.as_bytes(), true).expect("RFC key");
        let provider = JwtProvider {
            settings: ProviderSettings {
                name: "rfc".into(),
                issuer: "joe".into(),
                verify_issuer: true,
                audiences: Vec::new(),
                verify_audience: false,
                algorithms: vec![Algorithm::HS256],
                leeway: Duration::from_secs(30),
                required_claims: Vec::new(),
                max_token_age: None,
                claims: ClaimMapping {
                    subject: "iss".into(),
                    ..ClaimMapping::default()
                },
                forward_credentials: false,
                require_bound_tokens: false,
            },
            keys: Arc::new(StaticKeys::new(keys)),
        };
        let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_300_819_000)));
        // No cache: every input runs the whole decoding.
        JwtAuthenticator::new(vec![provider], TokenSources::default(), clock, 0)
            .expect("authenticator")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let found = Found {
        token,
        source: CredentialSource::AuthorizationHeader,
    };
    // Static keys never wait: the verification completes on its first poll.
    let Some(result) = authenticator().verify(token, &found).now_or_never() else {
        panic!("verification with static keys did not complete at once");
    };
    if result.is_ok() {
        assert_eq!(token, SIGNED, "a token the key never signed was accepted");
    }
});
