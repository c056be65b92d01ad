//! JWT authentication through real sockets: valid tokens of every algorithm, identity
//! propagation, and the attack corpus (each attack rejected, none reaching the upstream).

use std::sync::OnceLock;

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use warden_gateway::token::{SigningKey, jwks, now_unix};

const ISSUER: &str = "https://issuer.test";
const HMAC_SECRET: &str = "an-hmac-secret-of-at-least-32-bytes-0123456789";

struct Keys {
    rsa: SigningKey,
    ec: SigningKey,
    ed: SigningKey,
    ps: SigningKey,
    hmac: SigningKey,
    attacker: SigningKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: SigningKey::generate(Algorithm::RS256, Some("rsa1".into())).expect("rsa"),
        ec: SigningKey::generate(Algorithm::ES256, Some("ec1".into())).expect("ec"),
        ed: SigningKey::generate(Algorithm::EdDSA, Some("ed1".into())).expect("ed"),
        ps: SigningKey::generate(Algorithm::PS256, Some("ps1".into())).expect("ps"),
        hmac: SigningKey::from_secret(HMAC_SECRET.as_bytes(), Algorithm::HS256, None)
            .expect("hmac"),
        // Same kid as the real RSA key: a valid signature from the wrong key.
        attacker: SigningKey::generate(Algorithm::RS256, Some("rsa1".into())).expect("attacker"),
    })
}

fn claims() -> Value {
    let now = now_unix();
    json!({
        "iss": ISSUER,
        "aud": "agents",
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "roles": ["viewer", "user"],
        "scope": "read:agent write:agent",
        "tenant_id": "acme",
    })
}

fn with(mut base: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().expect("object") {
        if v.is_null() {
            base.as_object_mut().expect("object").remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

async fn gateway() -> TestGateway {
    let k = keys();
    let dir = temp_dir("jwt");
    let jwks_path = dir.join("jwks.json");
    std::fs::write(
        &jwks_path,
        serde_json::to_vec(&jwks(&[&k.rsa, &k.ec, &k.ed, &k.ps])).expect("json"),
    )
    .expect("write");
    let yaml = format!(
        r#"
auth:
  token_sources: {{ header: true, cookie: access_token }}
  jwt:
    - name: corp
      issuer: {ISSUER}
      audiences: [agents]
      jwks_file: {jwks}
      algorithms: [RS256, ES256, EdDSA, PS256]
      required_claims: [iat]
      claims: {{ tenant: tenant_id }}
    - name: shared-secret
      issuer: https://hmac.test
      audiences: [agents]
      secret: ${{env:TEST_JWT_SECRET}}
      algorithms: [HS256]
routes:
  - {{ path: /private, methods: [GET, POST], authorize: authenticated }}
  - {{ path: /public, auth: none }}
  - {{ path: /forward, forward_credentials: true, authorize: authenticated }}
  - {{ path: /mfa, step_up: {{ acr: [mfa], max_age: 5m }}, authorize: authenticated }}
"#,
        jwks = jwks_path.display()
    );
    let upstream = upstream().await;
    let config = config_with_env(&yaml, &upstream.url(), &[("TEST_JWT_SECRET", HMAC_SECRET)])
        .unwrap_or_else(|e| panic!("{e}"));
    spawn_config(config, upstream).await
}

/// A gateway with one HS256 provider `name` (issuer `https://hmac.test`) and one protected
/// route `/private`; `provider` adds `, key: value` pairs to the provider, `auth` a line to `auth:`.
async fn hmac_gateway(name: &str, provider: &str, auth: &str) -> TestGateway {
    let yaml = format!(
        "auth:\n  {auth}\n  jwt:\n    - {{ name: {name}, issuer: 'https://hmac.test', audiences: [agents], \
         secret: '${{env:TEST_JWT_SECRET}}', algorithms: [HS256] {provider} }}\n\
         routes:\n  - {{ path: /private, authorize: authenticated }}\n"
    );
    let yaml = yaml.as_str();
    let upstream = upstream().await;
    let config = config_with_env(yaml, &upstream.url(), &[("TEST_JWT_SECRET", HMAC_SECRET)])
        .unwrap_or_else(|e| panic!("{e}"));
    spawn_config(config, upstream).await
}

async fn call(gw: &TestGateway, path: &str, token: &str) -> Reply {
    send(
        &client(),
        request("GET", &gw.url(path))
            .header("authorization", format!("Bearer {token}"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await
}

fn assert_rejected(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"warden\", error=\"invalid_token\""),
        "{what}"
    );
    reply.assert_problem(401);
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

/// A token with an arbitrary header, signed (or not) by hand.
fn forge(header: &Value, claims: &Value, signature: &str) -> String {
    format!("{}.{}.{}", segment(header), segment(claims), signature)
}

#[tokio::test]
async fn valid_tokens_of_every_algorithm_are_accepted_and_identity_reaches_the_upstream() {
    let gw = gateway().await;
    let k = keys();
    let hmac_claims = with(claims(), json!({"iss": "https://hmac.test"}));
    for (name, token) in [
        ("RS256", k.rsa.mint(&claims()).expect("mint")),
        ("ES256", k.ec.mint(&claims()).expect("mint")),
        ("EdDSA", k.ed.mint(&claims()).expect("mint")),
        ("PS256", k.ps.mint(&claims()).expect("mint")),
        ("HS256", k.hmac.mint(&hmac_claims).expect("mint")),
    ] {
        let reply = call(&gw, "/private", &token).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        let seen = gw.upstream.last();
        assert_eq!(seen.headers["x-warden-subject"], "alice", "{name}");
        assert_eq!(seen.headers["x-warden-auth-method"], "jwt");
        assert!(
            seen.headers.get("authorization").is_none(),
            "{name}: token forwarded"
        );
    }
    let seen = gw.upstream.last();
    assert_eq!(seen.headers["x-warden-roles"], "viewer,user");
    assert_eq!(seen.headers["x-warden-scopes"], "read:agent write:agent");
}

#[tokio::test]
async fn identity_headers_come_only_from_the_token() {
    let gw = gateway().await;
    let token = keys().rsa.mint(&claims()).expect("mint");
    let reply = send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("authorization", format!("Bearer {token}"))
            .header("x-warden-subject", "root")
            .header("x-warden-tenant", "other-tenant")
            .header("x_warden_roles", "admin")
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = gw.upstream.last();
    assert_eq!(seen.headers["x-warden-subject"], "alice");
    assert_eq!(seen.headers["x-warden-tenant"], "acme");
    assert_eq!(seen.headers["x-warden-roles"], "viewer,user");
    assert!(seen.headers.get("x_warden_roles").is_none());
}

#[tokio::test]
async fn missing_credentials_get_a_plain_challenge() {
    let gw = gateway().await;
    let reply = get(&gw.url("/private")).await;
    reply.assert_problem(401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"warden\"")
    );
    let reply = send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("authorization", "Basic YWxpY2U6c2VjcmV0")
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    reply.assert_problem(401);
    assert_eq!(
        get(&gw.url("/public")).await.status,
        200,
        "public routes need nothing"
    );
    assert!(gw.upstream.requests().len() == 1);
}

/// Claims signed by the provider's real key that must still be refused: (case, patch).
fn signed_claim_attacks() -> Vec<(&'static str, Value)> {
    let now = now_unix();
    vec![
        ("wrong iss", json!({"iss": "https://evil.test"})),
        (
            "iss of the other provider",
            json!({"iss": "https://hmac.test"}),
        ),
        ("wrong aud", json!({"aud": "other-api"})),
        ("aud array without ours", json!({"aud": ["a", "b"]})),
        ("aud as a number", json!({"aud": 1})),
        ("expired", json!({"exp": now - 120})),
        ("nbf in the future", json!({"nbf": now + 3600})),
        ("iat in the future", json!({"iat": now + 3600})),
        ("missing exp", json!({"exp": null})),
        ("missing required iat", json!({"iat": null})),
        ("missing sub", json!({"sub": null})),
        ("exp as a string", json!({"exp": (now + 600).to_string()})),
        ("roles as a string", json!({"roles": "admin"})),
        ("roles with a non-string", json!({"roles": ["user", 7]})),
        (
            "role smuggling a separator",
            json!({"roles": ["user,admin"]}),
        ),
        (
            "sub with a newline",
            json!({"sub": "alice\r\nX-Warden-Roles: admin"}),
        ),
        ("tenant as a number", json!({"tenant_id": 42})),
    ]
}

/// Headers forged over the good claims: (case, header, signature). `VALID` stands for the
/// signature of a genuine token, lifted onto the forged header.
fn forged_header_attacks() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("alg none", json!({"alg": "none"}), ""),
        ("alg none with a signature", json!({"alg": "none"}), VALID),
        ("alg None", json!({"alg": "None", "kid": "rsa1"}), VALID),
        ("alg NONE", json!({"alg": "NONE"}), "x"),
        ("alg nOnE", json!({"alg": "nOnE"}), "x"),
        (
            "empty signature",
            json!({"alg": "RS256", "kid": "rsa1"}),
            "",
        ),
        (
            "ES256 r = s = 0",
            json!({"alg": "ES256", "kid": "ec1"}),
            ZERO_ES256,
        ),
        (
            "kid path traversal",
            json!({"alg": "RS256", "kid": "../../../../etc/passwd"}),
            VALID,
        ),
        (
            "kid SQL",
            json!({"alg": "RS256", "kid": "' OR '1'='1' --"}),
            VALID,
        ),
        (
            "kid too long",
            json!({"alg": "RS256", "kid": "k".repeat(300)}),
            VALID,
        ),
        (
            "unknown crit",
            json!({"alg": "RS256", "kid": "rsa1", "crit": ["exp"], "exp": 1}),
            VALID,
        ),
    ]
}

const VALID: &str = "<valid>";
/// Stands for an ES256 signature with r = s = 0 (the "psychic signatures" bug).
const ZERO_ES256: &str = "<r = s = 0>";

/// Headers that try to bring their own key, genuinely signed by the attacker: (case, header).
fn self_keyed_header_attacks(attacker_jwk: &Value) -> Vec<(&'static str, Value)> {
    vec![
        (
            "embedded jwk",
            json!({"alg": "RS256", "kid": "rsa1", "jwk": attacker_jwk}),
        ),
        (
            "jku to attacker keys",
            json!({"alg": "RS256", "kid": "rsa1", "jku": "https://evil.test/jwks.json"}),
        ),
        (
            "x5u to attacker certs",
            json!({"alg": "RS256", "kid": "rsa1", "x5u": "https://evil.test/cert.pem"}),
        ),
        (
            "x5c chain",
            json!({"alg": "RS256", "kid": "rsa1", "x5c": ["MIIB"]}),
        ),
    ]
}

/// Tokens broken in their encoding or shape, around a genuine token's parts: (case, token).
fn malformed_token_attacks(valid: &str, good: &Value) -> Vec<(&'static str, String)> {
    let (header, rest) = valid.split_once('.').expect("segments");
    let signature = valid.rsplit('.').next().expect("signature");
    let payload = segment(good);
    let with_header =
        |text: &str| format!("{}.{payload}.{signature}", URL_SAFE_NO_PAD.encode(text));
    let duplicate_claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"iss":"{ISSUER}","aud":"agents","sub":"alice","sub":"admin","iat":1,"exp":{}}}"#,
        now_unix() + 600
    ));
    let tampered = segment(&with(good.clone(), json!({"sub": "admin"})));
    vec![
        (
            "bad base64url",
            format!("eyJhbGciOiJSUzI1NiJ9*.{payload}.{signature}"),
        ),
        ("header not JSON", with_header("not json")),
        ("header is an array", with_header("[1]")),
        (
            "duplicate header keys",
            with_header(r#"{"alg":"RS256","kid":"rsa1","alg":"none"}"#),
        ),
        (
            "duplicate claims",
            format!("{header}.{duplicate_claims}.{signature}"),
        ),
        (
            "two segments",
            valid.rsplit_once('.').expect("segments").0.to_owned(),
        ),
        ("four segments", format!("{valid}.extra")),
        (
            "oversized",
            format!(
                "{}.{}.{}",
                "a".repeat(3000),
                "b".repeat(3000),
                "c".repeat(3000)
            ),
        ),
        ("tampered payload", {
            let signed = rest.split_once('.').expect("segments").1;
            format!("{header}.{tampered}.{signed}")
        }),
        ("not a JWT at all", "hello".into()),
    ]
}

#[tokio::test]
async fn the_attack_corpus_is_rejected_without_reaching_the_upstream() {
    let gw = gateway().await;
    let k = keys();
    let good = claims();
    let rsa_valid = k.rsa.mint(&good).expect("mint");
    let valid_signature = rsa_valid.rsplit('.').next().expect("signature");

    let mut attacks: Vec<(&str, String)> = Vec::new();
    for (case, patch) in signed_claim_attacks() {
        let token = k.rsa.mint(&with(good.clone(), patch)).expect("mint");
        attacks.push((case, token));
    }
    let zero_es256 = URL_SAFE_NO_PAD.encode([0u8; 64]);
    for (case, header, signature) in forged_header_attacks() {
        let signature = match signature {
            VALID => valid_signature,
            ZERO_ES256 => &zero_es256,
            text => text,
        };
        attacks.push((case, forge(&header, &good, signature)));
    }
    let attacker_key =
        jsonwebtoken::EncodingKey::from_rsa_pem(k.attacker.pem.as_bytes()).expect("pem");
    let attacker_jwk = k.attacker.public_jwk.clone().expect("jwk");
    for (case, header) in self_keyed_header_attacks(&attacker_jwk) {
        let message = format!("{}.{}", segment(&header), segment(&good));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &attacker_key, Algorithm::RS256)
                .expect("sign");
        attacks.push((case, format!("{message}.{signature}")));
    }
    attacks.extend(malformed_token_attacks(&rsa_valid, &good));
    // Keys that are real but wrong: the RSA public key (as an attacker would fetch it) used as
    // an HMAC secret, another RSA key under a known kid, the other provider's HMAC key.
    let n = URL_SAFE_NO_PAD
        .decode(
            k.rsa.public_jwk.as_ref().expect("jwk")["n"]
                .as_str()
                .expect("n"),
        )
        .expect("n");
    let confused =
        SigningKey::from_secret(&n, Algorithm::HS256, Some("rsa1".into())).expect("hmac");
    attacks.push((
        "RS256 public key as HS256 secret",
        confused.mint(&good).expect("mint"),
    ));
    attacks.push((
        "valid signature from another key under a known kid",
        k.attacker.mint(&good).expect("mint"),
    ));
    attacks.push((
        "HS256 under the RSA provider",
        k.hmac.mint(&good).expect("mint"),
    ));
    assert_eq!(attacks.len(), 45, "a case of the corpus went missing");

    for (case, token) in &attacks {
        let reply = call(&gw, "/private", token).await;
        assert_rejected(&reply, case);
    }
    assert!(
        gw.upstream.requests().is_empty(),
        "an attack reached the upstream"
    );
    // And the genuine token still works.
    assert_eq!(call(&gw, "/private", &rsa_valid).await.status, 200);
}

#[tokio::test]
async fn two_different_tokens_in_one_request_are_refused() {
    let gw = gateway().await;
    let k = keys();
    let a = k.rsa.mint(&claims()).expect("mint");
    let b = k.ec.mint(&claims()).expect("mint");
    let reply = send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("authorization", format!("Bearer {a}"))
            .header("cookie", format!("access_token={b}"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    reply.assert_problem(400);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"warden\", error=\"invalid_request\"")
    );
    // The same token twice is one credential; the cookie is removed before forwarding.
    let reply = send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("authorization", format!("Bearer {a}"))
            .header("cookie", format!("theme=dark; access_token={a}"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = gw.upstream.last();
    assert_eq!(seen.headers["cookie"], "theme=dark");
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn tokens_in_cookies_are_accepted_when_configured() {
    let gw = gateway().await;
    let token = keys().ec.mint(&claims()).expect("mint");
    let reply = send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("cookie", format!("access_token={token}"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    // Query parameters are not a configured source here.
    let reply = get(&gw.url(&format!("/private?access_token={token}"))).await;
    reply.assert_problem(401);
}

#[tokio::test]
async fn credentials_are_forwarded_only_where_configured() {
    let gw = gateway().await;
    let token = keys().rsa.mint(&claims()).expect("mint");
    assert_eq!(call(&gw, "/forward", &token).await.status, 200);
    assert_eq!(
        gw.upstream.last().headers["authorization"],
        format!("Bearer {token}").as_str()
    );
}

#[tokio::test]
async fn step_up_demands_acr_and_a_recent_authentication() {
    let gw = gateway().await;
    let k = keys();
    let now = now_unix();
    let reply = call(&gw, "/mfa", &k.rsa.mint(&claims()).expect("mint")).await;
    reply.assert_problem(401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(
            "Bearer realm=\"warden\", error=\"insufficient_user_authentication\", \
             error_description=\"A different authentication level is required\", acr_values=\"mfa\", max_age=300"
        )
    );
    let stale = with(claims(), json!({"acr": "mfa", "auth_time": now - 3600}));
    call(&gw, "/mfa", &k.rsa.mint(&stale).expect("mint"))
        .await
        .assert_problem(401);
    let fresh = with(claims(), json!({"acr": "mfa", "auth_time": now - 10}));
    assert_eq!(
        call(&gw, "/mfa", &k.rsa.mint(&fresh).expect("mint"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn repeated_tokens_keep_working_from_the_cache() {
    // A provider name of its own: the metrics recorder is shared by the whole test binary.
    let gw = hmac_gateway("cache-probe", "", "").await;
    let token = keys()
        .hmac
        .mint(&with(claims(), json!({ "iss": "https://hmac.test" })))
        .expect("mint");
    let series = "warden_jwt_verifications_total{provider=\"cache-probe\"}";
    for _ in 0..20 {
        assert_eq!(call(&gw, "/private", &token).await.status, 200);
    }
    assert_eq!(gw.upstream.requests().len(), 20);
    // Verified once; the other 19 came from the cache.
    assert_eq!(metric(&gw, series).await, 1.0);
    let other = keys()
        .hmac
        .mint(&with(
            claims(),
            json!({ "iss": "https://hmac.test", "sub": "bob" }),
        ))
        .expect("mint");
    assert_eq!(call(&gw, "/private", &other).await.status, 200);
    assert_eq!(metric(&gw, series).await, 2.0);
}

#[tokio::test]
async fn identity_values_an_upstream_would_read_differently_are_refused() {
    let gw = gateway().await;
    let k = keys();
    for (what, patch) in [
        ("subject with a trailing space", json!({ "sub": "admin " })),
        ("subject with a leading space", json!({ "sub": " admin" })),
        ("non-ASCII subject", json!({ "sub": "\u{e4}dmin" })),
        (
            "tenant with a trailing space",
            json!({ "tenant_id": "acme " }),
        ),
        (
            "tenant with a leading tab",
            json!({ "tenant_id": "\tacme" }),
        ),
        ("non-ASCII tenant", json!({ "tenant_id": "acm\u{e9}" })),
        ("non-ASCII role", json!({ "roles": ["\u{e4}dmin"] })),
    ] {
        let token = k.rsa.mint(&with(claims(), patch)).expect("mint");
        assert_rejected(&call(&gw, "/private", &token).await, what);
    }
    assert!(gw.upstream.requests().is_empty());
    // Inner spaces are kept as they are (nothing to trim).
    let token = k
        .rsa
        .mint(&with(claims(), json!({ "sub": "alice smith" })))
        .expect("mint");
    assert_eq!(call(&gw, "/private", &token).await.status, 200);
    assert_eq!(
        gw.upstream.last().headers["x-warden-subject"],
        "alice smith"
    );
}

#[tokio::test]
async fn a_second_token_cannot_hide_behind_an_encoded_query_name() {
    let gw = hmac_gateway(
        "shared-secret",
        "",
        "token_sources: { header: true, query: access_token }",
    )
    .await;
    let k = keys();
    let hmac_claims = || with(claims(), json!({ "iss": "https://hmac.test" }));
    let alice = k.hmac.mint(&hmac_claims()).expect("mint");
    let mallory = k
        .hmac
        .mint(&with(hmac_claims(), json!({ "sub": "mallory" })))
        .expect("mint");
    for query in [
        format!("access_token={alice}&access%5Ftoken={mallory}"),
        format!("access_token={alice};access_token={mallory}"),
        format!("%61ccess_token={mallory}&access_token={alice}"),
    ] {
        let reply = get(&gw.url(&format!("/private?{query}"))).await;
        reply.assert_problem(400);
    }
    assert!(gw.upstream.requests().is_empty());
    // One token under an encoded name is read, and stripped before forwarding.
    let reply = get(&gw.url(&format!("/private?a=1;access%5Ftoken={alice}&b=2"))).await;
    assert_eq!(reply.status, 200);
    let seen = gw.upstream.last();
    assert_eq!(seen.uri, "/private?a=1;b=2");
    assert_eq!(seen.headers["x-warden-subject"], "alice");
}

#[tokio::test]
async fn a_provider_that_forwards_its_tokens_keeps_them_and_others_are_stripped() {
    let gw = hmac_gateway("shared-secret", ", forward_credentials: true", "").await;
    let token = keys()
        .hmac
        .mint(&with(claims(), json!({ "iss": "https://hmac.test" })))
        .expect("mint");
    assert_eq!(call(&gw, "/private", &token).await.status, 200);
    assert_eq!(
        gw.upstream.last().headers["authorization"],
        format!("Bearer {token}").as_str()
    );
}
