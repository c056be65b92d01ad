//! Interoperability with an independent JOSE implementation (PyJWT + cryptography, installed by
//! `scripts/install-test-deps.sh`): its tokens pass the gateway, and tokens `warden token` signs
//! verify in PyJWT.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use warden_gateway::token::{SigningKey, jwks, now_unix};

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/interop")
        .join(name)
}

fn python(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .args(args)
        .output()
        .expect("python3 runs (scripts/install-test-deps.sh installs it with PyJWT)")
}

#[tokio::test]
async fn tokens_signed_by_pyjwt_are_accepted() {
    let issuer = "https://py.test";
    let output = python(&[
        script("pyjwt_tokens.py").to_str().expect("path"),
        issuer,
        "agents",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated: Value = serde_json::from_slice(&output.stdout).expect("json");
    let dir = temp_dir("interop");
    let jwks_path = dir.join("jwks.json");
    std::fs::write(&jwks_path, generated["jwks"].to_string()).expect("write");
    let yaml = format!(
        r#"
auth:
  jwt:
    - {{ name: py, issuer: "{issuer}", audiences: [agents], jwks_file: "{}", algorithms: [RS256, PS256, ES256, ES384, EdDSA] }}
    - {{ name: py-hmac, issuer: "{issuer}/hmac", audiences: [agents], secret: "${{env:PY_SECRET}}", algorithms: [HS256] }}
routes:
  - {{ path: /private, authorize: authenticated }}
"#,
        jwks_path.display()
    );
    let upstream = upstream().await;
    let secret = generated["hmac_secret"].as_str().expect("secret");
    let config = config_with_env(&yaml, &upstream.url(), &[("PY_SECRET", secret)])
        .unwrap_or_else(|e| panic!("{e}"));
    let gw = spawn_config(config, upstream).await;
    let tokens = generated["tokens"].as_object().expect("tokens");
    assert_eq!(tokens.len(), 6);
    for (alg, token) in tokens {
        let reply = send(
            &client(),
            request("GET", &gw.url("/private"))
                .header(
                    "authorization",
                    format!("Bearer {}", token.as_str().expect("token")),
                )
                .body(warden::body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, 200, "{alg}: {}", reply.text());
        assert_eq!(gw.upstream.last().headers["x-warden-subject"], "pyjwt-user");
    }
}

#[test]
fn tokens_signed_by_warden_verify_in_pyjwt() {
    let dir = temp_dir("interop-reverse");
    for (alg, kid) in [
        (Algorithm::RS256, "w-rsa"),
        (Algorithm::PS256, "w-ps"),
        (Algorithm::ES256, "w-ec"),
        (Algorithm::ES384, "w-ec384"),
        (Algorithm::EdDSA, "w-ed"),
    ] {
        let key = SigningKey::generate(alg, Some(kid.into())).expect("key");
        let jwks_path = dir.join(format!("{kid}.json"));
        std::fs::write(&jwks_path, jwks(&[&key]).to_string()).expect("write");
        let now = now_unix();
        let token = key
            .mint(&json!({ "iss": "https://warden.test", "aud": "py", "sub": "from-warden", "iat": now, "exp": now + 60 }))
            .expect("mint");
        let output = python(&[
            script("pyjwt_verify.py").to_str().expect("path"),
            jwks_path.to_str().expect("path"),
            &token,
            "https://warden.test",
            "py",
        ]);
        assert!(
            output.status.success(),
            "{alg:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "from-warden"
        );
    }
}
