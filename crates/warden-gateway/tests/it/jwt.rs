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

#[tokio::test]
async fn the_attack_corpus_is_rejected_without_reaching_the_upstream() {
    let gw = gateway().await;
    let k = keys();
    let good = claims();
    let rsa_valid = k.rsa.mint(&good).expect("mint");
    let valid_signature = rsa_valid.rsplit('.').next().expect("signature").to_owned();

    // The RSA public key, as an attacker would fetch it, used as an HMAC secret.
    let rsa_jwk = k.rsa.public_jwk.clone().expect("jwk");
    let n = URL_SAFE_NO_PAD
        .decode(rsa_jwk["n"].as_str().expect("n"))
        .expect("n");
    let confused =
        SigningKey::from_secret(&n, Algorithm::HS256, Some("rsa1".into())).expect("hmac");
    let attacker_jwk = k.attacker.public_jwk.clone().expect("jwk");
    // Tokens whose custom headers are genuinely signed by the attacker's key.
    let attacker_signed = |header: Value| {
        let message = format!("{}.{}", segment(&header), segment(&good));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_rsa_pem(k.attacker.pem.as_bytes()).expect("pem"),
            Algorithm::RS256,
        )
        .expect("sign");
        format!("{message}.{signature}")
    };

    let mut attacks: Vec<(&str, String)> = vec![
        ("alg none", forge(&json!({"alg": "none"}), &good, "")),
        (
            "alg none with a signature",
            forge(&json!({"alg": "none"}), &good, &valid_signature),
        ),
        (
            "alg None",
            forge(
                &json!({"alg": "None", "kid": "rsa1"}),
                &good,
                &valid_signature,
            ),
        ),
        ("alg NONE", forge(&json!({"alg": "NONE"}), &good, "x")),
        ("alg nOnE", forge(&json!({"alg": "nOnE"}), &good, "x")),
        (
            "empty signature",
            forge(&json!({"alg": "RS256", "kid": "rsa1"}), &good, ""),
        ),
        (
            "RS256 public key as HS256 secret",
            confused.mint(&good).expect("mint"),
        ),
        (
            "ES256 r = s = 0",
            forge(
                &json!({"alg": "ES256", "kid": "ec1"}),
                &good,
                &URL_SAFE_NO_PAD.encode([0u8; 64]),
            ),
        ),
        (
            "valid signature from another key under a known kid",
            k.attacker.mint(&good).expect("mint"),
        ),
        (
            "kid path traversal",
            forge(
                &json!({"alg": "RS256", "kid": "../../../../etc/passwd"}),
                &good,
                &valid_signature,
            ),
        ),
        (
            "kid SQL",
            forge(
                &json!({"alg": "RS256", "kid": "' OR '1'='1' --"}),
                &good,
                &valid_signature,
            ),
        ),
        (
            "kid too long",
            forge(
                &json!({"alg": "RS256", "kid": "k".repeat(300)}),
                &good,
                &valid_signature,
            ),
        ),
        (
            "embedded jwk",
            attacker_signed(json!({"alg": "RS256", "kid": "rsa1", "jwk": attacker_jwk})),
        ),
        (
            "jku to attacker keys",
            attacker_signed(
                json!({"alg": "RS256", "kid": "rsa1", "jku": "https://evil.test/jwks.json"}),
            ),
        ),
        (
            "x5u to attacker certs",
            attacker_signed(
                json!({"alg": "RS256", "kid": "rsa1", "x5u": "https://evil.test/cert.pem"}),
            ),
        ),
        (
            "x5c chain",
            attacker_signed(json!({"alg": "RS256", "kid": "rsa1", "x5c": ["MIIB"]})),
        ),
        ("unknown crit", {
            let header = json!({"alg": "RS256", "kid": "rsa1", "crit": ["exp"], "exp": 1});
            forge(&header, &good, &valid_signature)
        }),
        (
            "wrong iss",
            k.rsa
                .mint(&with(good.clone(), json!({"iss": "https://evil.test"})))
                .expect("mint"),
        ),
        (
            "iss of the other provider",
            k.rsa
                .mint(&with(good.clone(), json!({"iss": "https://hmac.test"})))
                .expect("mint"),
        ),
        (
            "wrong aud",
            k.rsa
                .mint(&with(good.clone(), json!({"aud": "other-api"})))
                .expect("mint"),
        ),
        (
            "aud array without ours",
            k.rsa
                .mint(&with(good.clone(), json!({"aud": ["a", "b"]})))
                .expect("mint"),
        ),
        (
            "expired",
            k.rsa
                .mint(&with(good.clone(), json!({"exp": now_unix() - 120})))
                .expect("mint"),
        ),
        (
            "nbf in the future",
            k.rsa
                .mint(&with(good.clone(), json!({"nbf": now_unix() + 3600})))
                .expect("mint"),
        ),
        (
            "iat in the future",
            k.rsa
                .mint(&with(good.clone(), json!({"iat": now_unix() + 3600})))
                .expect("mint"),
        ),
        (
            "missing exp",
            k.rsa
                .mint(&with(good.clone(), json!({"exp": null})))
                .expect("mint"),
        ),
        (
            "missing required iat",
            k.rsa
                .mint(&with(good.clone(), json!({"iat": null})))
                .expect("mint"),
        ),
        (
            "missing sub",
            k.rsa
                .mint(&with(good.clone(), json!({"sub": null})))
                .expect("mint"),
        ),
        (
            "exp as a string",
            k.rsa
                .mint(&with(
                    good.clone(),
                    json!({"exp": (now_unix() + 600).to_string()}),
                ))
                .expect("mint"),
        ),
        (
            "roles as a string",
            k.rsa
                .mint(&with(good.clone(), json!({"roles": "admin"})))
                .expect("mint"),
        ),
        (
            "roles with a non-string",
            k.rsa
                .mint(&with(good.clone(), json!({"roles": ["user", 7]})))
                .expect("mint"),
        ),
        (
            "role smuggling a separator",
            k.rsa
                .mint(&with(good.clone(), json!({"roles": ["user,admin"]})))
                .expect("mint"),
        ),
        (
            "sub with a newline",
            k.rsa
                .mint(&with(
                    good.clone(),
                    json!({"sub": "alice\r\nX-Warden-Roles: admin"}),
                ))
                .expect("mint"),
        ),
        (
            "tenant as a number",
            k.rsa
                .mint(&with(good.clone(), json!({"tenant_id": 42})))
                .expect("mint"),
        ),
        (
            "aud as a number",
            k.rsa
                .mint(&with(good.clone(), json!({"aud": 1})))
                .expect("mint"),
        ),
        (
            "HS256 under the RSA provider",
            k.hmac.mint(&good).expect("mint"),
        ),
        (
            "bad base64url",
            format!(
                "{}.{}.{}",
                "eyJhbGciOiJSUzI1NiJ9*",
                segment(&good),
                valid_signature
            ),
        ),
        (
            "header not JSON",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("not json"),
                segment(&good),
                valid_signature
            ),
        ),
        (
            "header is an array",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("[1]"),
                segment(&good),
                valid_signature
            ),
        ),
        (
            "duplicate header keys",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"rsa1","alg":"none"}"#),
                segment(&good),
                valid_signature
            ),
        ),
        ("duplicate claims", {
            let (header, _) = rsa_valid.split_once('.').expect("segments");
            let payload = URL_SAFE_NO_PAD.encode(
                    format!(r#"{{"iss":"{ISSUER}","aud":"agents","sub":"alice","sub":"admin","iat":1,"exp":{}}}"#, now_unix() + 600),
                );
            format!("{header}.{payload}.{valid_signature}")
        }),
        (
            "two segments",
            rsa_valid.rsplit_once('.').expect("segments").0.to_owned(),
        ),
        ("four segments", format!("{rsa_valid}.extra")),
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
            let mut parts: Vec<&str> = rsa_valid.split('.').collect();
            let tampered = segment(&with(good.clone(), json!({"sub": "admin"})));
            parts[1] = &tampered;
            parts.join(".")
        }),
    ];
    attacks.push(("not a JWT at all", "hello".into()));

    for (what, token) in &attacks {
        let reply = call(&gw, "/private", token).await;
        assert_rejected(&reply, what);
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
