//! API keys through the CLI and the gateway: create, use, list, revoke, expire, rotate; checksum
//! failures never reach the store; no plaintext at rest; concurrency; store failures are 503.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use warden::clock::ManualClock;
use warden_gateway::server::Gateway;

const PEPPER: &str = "a-pepper-of-at-least-thirty-two-bytes-0123456789";

struct Setup {
    dir: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new(extra: &str) -> Setup {
        let dir = temp_dir("api-keys");
        let config = dir.join("warden.yaml");
        std::fs::write(
            &config,
            format!(
                r#"
upstream: {{ url: "http://127.0.0.1:9" }}
auth:
  api_keys: {{ store: "sqlite://keys.db", pepper: "${{env:TEST_KEY_PEPPER}}", cache_ttl: 1s, touch_interval: 1s {extra} }}
routes:
  - {{ path: /private, methods: [GET, POST], authorize: authenticated }}
"#
            ),
        )
        .expect("write config");
        Setup { dir, config }
    }

    fn keys(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("keys")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("TEST_KEY_PEPPER", PEPPER)
            .output()
            .expect("run warden keys")
    }

    /// `warden keys create`: returns (id, key).
    fn create(&self, args: &[&str]) -> (String, String) {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        let output = self.keys(&all);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let note = String::from_utf8_lossy(&output.stderr);
        let id = note
            .split_whitespace()
            .find(|w| w.starts_with("key_"))
            .expect("id in the note")
            .to_owned();
        (id, key)
    }

    async fn gateway(&self, clock: Arc<ManualClock>) -> TestGateway {
        let upstream = upstream().await;
        let text = std::fs::read_to_string(&self.config).expect("read");
        let overrides = [
            ("server.listen", serde_json::json!("127.0.0.1:0")),
            ("server.admin_listen", serde_json::json!("127.0.0.1:0")),
            ("upstream.url", serde_json::json!(upstream.url())),
        ];
        let env = vec![("TEST_KEY_PEPPER".to_owned(), PEPPER.to_owned())];
        let mut parsed = warden_gateway::config::load::parse_raw(
            &text,
            warden_gateway::config::load::Format::Yaml,
            &env,
            &overrides,
        )
        .expect("parse");
        parsed.base_dir = Some(self.dir.clone());
        let config = warden_gateway::config::compile::compile_parsed(parsed)
            .unwrap_or_else(|e| panic!("{e}"));
        let gateway = Gateway::start_with_clock(config, clock)
            .await
            .expect("gateway");
        TestGateway { gateway, upstream }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("keys.db")
    }
}

async fn with_key(gw: &TestGateway, header: &str, key: &str) -> Reply {
    send(
        &client(),
        request("GET", &gw.url("/private"))
            .header(header, key)
            .body(warden::body::empty())
            .expect("request"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn create_use_list_revoke_through_the_cli_and_the_gateway() {
    let setup = Setup::new("");
    let (id, key) = setup.create(&[
        "--name",
        "ci-bot",
        "--tenant",
        "acme",
        "--roles",
        "user,viewer",
        "--scopes",
        "read:agent",
    ]);
    assert!(key.starts_with("wdn_") && key.len() == 42, "{key}");
    let clock = Arc::new(ManualClock::starting_now());
    let gw = setup.gateway(clock.clone()).await;

    let reply = with_key(&gw, "x-api-key", &key).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = gw.upstream.last();
    assert_eq!(seen.headers["x-warden-subject"], id.as_str());
    assert_eq!(seen.headers["x-warden-tenant"], "acme");
    assert_eq!(seen.headers["x-warden-roles"], "user,viewer");
    assert_eq!(seen.headers["x-warden-scopes"], "read:agent");
    assert_eq!(seen.headers["x-warden-auth-method"], "api_key");
    assert!(
        seen.headers.get("x-api-key").is_none(),
        "the key was forwarded"
    );

    // list shows the key's metadata, never the key.
    let output = setup.keys(&["list"]);
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(
        listing.contains(&id) && listing.contains("ci-bot") && listing.contains("active"),
        "{listing}"
    );
    assert!(!listing.contains(&key));
    let output = setup.keys(&["list", "--json"]);
    assert!(!String::from_utf8_lossy(&output.stdout).contains(&key));

    // Revocation takes effect within the documented bound (cache_ttl: 1s here).
    let output = setup.keys(&["revoke", &id]);
    assert!(output.status.success());
    clock.advance(Duration::from_secs(1));
    with_key(&gw, "x-api-key", &key).await.assert_problem(401);
    assert!(String::from_utf8_lossy(&setup.keys(&["list"]).stdout).contains("revoked"));
    assert_eq!(
        setup.keys(&["revoke", "key_doesnotexist"]).status.code(),
        Some(1)
    );

    // No plaintext key anywhere in the database files.
    tokio::time::sleep(Duration::from_millis(1200)).await; // let usage flush run once
    for file in std::fs::read_dir(&setup.dir).expect("dir").flatten() {
        let bytes = std::fs::read(file.path()).expect("read");
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "plaintext key in {:?}",
            file.path()
        );
    }
    let listing = String::from_utf8_lossy(&setup.keys(&["list", "--json"]).stdout).into_owned();
    assert!(
        listing.contains("\"last_used_at\":1") || listing.contains("\"last_used_at\":2"),
        "usage recorded: {listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_and_rotation_follow_the_clock() {
    let setup = Setup::new("");
    let (_short_id, short) = setup.create(&["--name", "short", "--expires", "1h"]);
    let (old_id, old) = setup.create(&["--name", "rotating"]);
    let clock = Arc::new(ManualClock::starting_now());
    let gw = setup.gateway(clock.clone()).await;
    assert_eq!(with_key(&gw, "x-api-key", &short).await.status, 200);
    assert_eq!(with_key(&gw, "x-api-key", &old).await.status, 200);

    let output = setup.keys(&["rotate", &old_id, "--grace", "2h"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_ne!(new, old);
    // During the grace period both keys work.
    clock.advance(Duration::from_secs(2)); // past the 1 s cache of the old record
    assert_eq!(with_key(&gw, "x-api-key", &old).await.status, 200);
    assert_eq!(with_key(&gw, "x-api-key", &new).await.status, 200);
    // After an hour the short key expired; after the grace only the new key works.
    clock.advance(Duration::from_secs(3601));
    with_key(&gw, "x-api-key", &short).await.assert_problem(401);
    assert_eq!(
        with_key(&gw, "x-api-key", &old).await.status,
        200,
        "still in grace"
    );
    clock.advance(Duration::from_secs(3600));
    with_key(&gw, "x-api-key", &old).await.assert_problem(401);
    assert_eq!(with_key(&gw, "x-api-key", &new).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_keys_are_refused_without_a_store_lookup() {
    let setup = Setup::new(", authorization_scheme: true, busy_timeout: 200ms");
    let (_, key) = setup.create(&["--name", "k"]);
    let (_, other) = setup.create(&["--name", "other"]);
    let (_, unused) = setup.create(&["--name", "unused"]);
    let gw = setup.gateway(Arc::new(ManualClock::starting_now())).await;
    // Authorization: ApiKey works when enabled, and is not forwarded.
    let reply = with_key(&gw, "authorization", &format!("ApiKey {key}")).await;
    assert_eq!(reply.status, 200);
    assert!(gw.upstream.last().headers.get("authorization").is_none());
    // Two different keys in one request are ambiguous.
    let reply = send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("x-api-key", &key)
            .header("authorization", format!("ApiKey {other}"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    reply.assert_problem(400);

    // The store is damaged: a lookup now answers 503. (A process-wide lookup counter would be
    // raced by the other tests of this binary; a broken store cannot be.)
    for file in ["keys.db", "keys.db-wal"] {
        let path = setup.dir.join(file);
        if path.exists() {
            std::fs::write(&path, vec![0x5a; 8192]).expect("corrupt");
        }
    }
    with_key(&gw, "x-api-key", &unused)
        .await
        .assert_problem(503);
    // Malformed keys are refused before the store: 401, not the store's 503.
    let mut tampered = key.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for bad in [
        tampered.as_str(),
        &key.replacen("wdn_", "wdx_", 1),
        &key[..41],
        "wdn_",
        "not-a-key",
    ] {
        with_key(&gw, "x-api-key", bad).await.assert_problem(401);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_and_a_bearer_token_for_different_subjects_are_refused() {
    let dir = temp_dir("api-keys-jwt");
    let signing = warden_gateway::token::SigningKey::generate(
        jsonwebtoken::Algorithm::ES256,
        Some("k".into()),
    )
    .expect("key");
    std::fs::write(
        dir.join("jwks.json"),
        warden_gateway::token::jwks(&[&signing]).to_string(),
    )
    .expect("write");
    let setup = Setup {
        config: dir.join("warden.yaml"),
        dir: dir.clone(),
    };
    std::fs::write(
        &setup.config,
        r#"
upstream: { url: "http://127.0.0.1:9" }
auth:
  jwt: [{ name: idp, issuer: "https://idp.test", audiences: [api], jwks_file: jwks.json, algorithms: [ES256] }]
  api_keys: { store: "sqlite://keys.db", pepper: "${env:TEST_KEY_PEPPER}" }
routes:
  - { path: /private, authorize: authenticated }
"#,
    )
    .expect("write");
    let (_, key) = setup.create(&["--name", "k"]);
    let gw = setup.gateway(Arc::new(ManualClock::starting_now())).await;
    let now = warden_gateway::token::now_unix();
    let token = signing
        .mint(&serde_json::json!({"iss": "https://idp.test", "aud": "api", "sub": "alice", "exp": now + 60}))
        .expect("mint");
    let reply = send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("authorization", format!("Bearer {token}"))
            .header("x-api-key", &key)
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    reply.assert_problem(400);
    // Each alone is fine.
    assert_eq!(with_key(&gw, "x-api-key", &key).await.status, 200);
    assert_eq!(
        with_key(&gw, "authorization", &format!("Bearer {token}"))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_use_while_keys_are_created_and_revoked() {
    let setup = Arc::new(Setup::new(""));
    let stable: Vec<String> = (0..4)
        .map(|i| setup.create(&["--name", &format!("stable-{i}")]).1)
        .collect();
    let doomed: Vec<(String, String)> = (0..2)
        .map(|i| setup.create(&["--name", &format!("doomed-{i}")]))
        .collect();
    let clock = Arc::new(ManualClock::starting_now());
    let gw = Arc::new(setup.gateway(clock.clone()).await);
    let admin = {
        let setup = setup.clone();
        let doomed = doomed.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..5 {
                setup.create(&["--name", &format!("new-{i}")]);
            }
            for (id, _) in &doomed {
                assert!(setup.keys(&["revoke", id]).status.success());
            }
        })
    };
    let mut workers = Vec::new();
    for worker in 0..8 {
        let gw = gw.clone();
        let key = stable[worker % stable.len()].clone();
        workers.push(tokio::spawn(async move {
            let client = client();
            for _ in 0..40 {
                let req = request("GET", &gw.url("/private"))
                    .header("x-api-key", &key)
                    .body(warden::body::empty())
                    .expect("request");
                let reply = send(&client, req).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    admin.await.expect("admin");
    clock.advance(Duration::from_secs(1)); // past the 1 s cache
    for (_, key) in &doomed {
        with_key(&gw, "x-api-key", key).await.assert_problem(401);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn store_failures_answer_503_and_unusable_stores_stop_startup() {
    let setup = Setup::new(", busy_timeout: 200ms");
    let (_, key) = setup.create(&["--name", "k"]);
    let clock = Arc::new(ManualClock::starting_now());
    let gw = setup.gateway(clock.clone()).await;
    assert_eq!(with_key(&gw, "x-api-key", &key).await.status, 200);

    // The database file is damaged under the running gateway (disk trouble, a bad restore).
    for file in ["keys.db", "keys.db-wal"] {
        let path = setup.dir.join(file);
        if path.exists() {
            std::fs::write(&path, vec![0x5a; 8192]).expect("corrupt");
        }
    }
    clock.advance(Duration::from_secs(1)); // the cached record expires
    let reply = with_key(&gw, "x-api-key", &key).await;
    reply.assert_problem(503);
    assert!(
        reply.header("www-authenticate").is_none(),
        "a store failure is not a credential problem"
    );
    assert_eq!(reply.json()["type"], "urn:warden:problem:auth-unavailable");

    // A file that is not a database: the gateway refuses to start.
    let broken = Setup::new("");
    std::fs::write(broken.db(), vec![b'x'; 4096]).expect("write");
    let upstream = upstream().await;
    let trail = broken.dir.join("audit.jsonl");
    let text = format!(
        "{}audit: {{ sink: \"file://{}\" }}\n",
        std::fs::read_to_string(&broken.config).expect("read"),
        trail.display()
    );
    let env = vec![("TEST_KEY_PEPPER".to_owned(), PEPPER.to_owned())];
    let mut parsed = warden_gateway::config::load::parse_raw(
        &text,
        warden_gateway::config::load::Format::Yaml,
        &env,
        &[
            ("server.listen", serde_json::json!("127.0.0.1:0")),
            ("server.admin_listen", serde_json::json!("127.0.0.1:0")),
            ("upstream.url", serde_json::json!(upstream.url())),
        ],
    )
    .expect("parse");
    parsed.base_dir = Some(broken.dir.clone());
    let config = warden_gateway::config::compile::compile_parsed(parsed).expect("compile");
    let fingerprint = config.fingerprint.clone();
    let err = Gateway::start(config).await.expect_err("refuses to start");
    assert!(err.to_string().contains("API key store"), "{err}");
    // The trail says which configuration was refused, and why.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let rejected = &events[0];
    assert_eq!(
        rejected.pointer("/event/action"),
        Some(&"config-rejected".into())
    );
    assert_eq!(
        rejected.pointer("/event/reason"),
        Some(&"api_key_store".into())
    );
    assert_eq!(
        rejected.pointer("/warden/config/sha256"),
        Some(&fingerprint.as_str().into())
    );
    assert!(
        rejected
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.contains("API key store")),
        "{rejected}"
    );
}

#[test]
fn identity_values_an_upstream_would_read_differently_are_refused_at_creation() {
    let setup = Setup::new("");
    for args in [
        &["create", "--name", "k", "--tenant", "acme "][..],
        &["create", "--name", "k", "--tenant", " acme"],
        &["create", "--name", "k", "--tenant", "acm\u{e9}"],
        &["create", "--name", "k", "--roles", "admin ,user"],
        &["create", "--name", "k", "--scopes", "read\u{e9}"],
    ] {
        let output = setup.keys(args);
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("printable ASCII"), "{stderr}");
    }
    // Nothing was written.
    let listed = setup.keys(&["list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("key_"));
    let (_, _) = setup.create(&["--name", "ok", "--tenant", "acme"]);
}

#[test]
fn config_is_accepted_before_and_after_the_subcommand() {
    let setup = Setup::new("");
    let after = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["keys", "create", "--name", "after", "--config"])
        .arg(&setup.config)
        .env("TEST_KEY_PEPPER", PEPPER)
        .output()
        .expect("run");
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    let listed = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["keys", "list", "-c"])
        .arg(&setup.config)
        .env("TEST_KEY_PEPPER", PEPPER)
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("after"));
    // Without it anywhere: a clear error, not a panic.
    let missing = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["keys", "list"])
        .env_remove("WARDEN_CONFIG")
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--config"));
}

#[tokio::test(flavor = "multi_thread")]
async fn key_changes_by_the_cli_join_the_running_gateways_audit_trail() {
    let setup = Setup::new("");
    let trail = setup.dir.join("audit.jsonl");
    let mut text = std::fs::read_to_string(&setup.config).expect("read");
    text.push_str(&format!(
        "audit: {{ sink: \"file://{}\" }}\n",
        trail.display()
    ));
    std::fs::write(&setup.config, text).expect("write");
    let clock = Arc::new(ManualClock::starting_now());
    let gw = setup.gateway(clock.clone()).await;

    let (id, key) = setup.create(&["--name", "audited", "--tenant", "acme", "--roles", "user"]);
    // The request's event is written before the next command runs (the order below is then
    // the order things happened in).
    let flush = |gw: &TestGateway| gw.gateway.audit_sink().expect("sink").flush();
    assert_eq!(with_key(&gw, "x-api-key", &key).await.status, 200);
    flush(&gw);
    let rotated = setup.keys(&["rotate", &id, "--grace", "1h"]);
    assert!(rotated.status.success());
    let new_key = String::from_utf8_lossy(&rotated.stdout).trim().to_owned();
    assert_eq!(with_key(&gw, "x-api-key", &new_key).await.status, 200);
    flush(&gw);
    assert!(setup.keys(&["revoke", &id]).status.success());
    let TestGateway { gateway, .. } = gw;
    gateway.shutdown().await;

    let text = std::fs::read_to_string(&trail).expect("trail");
    assert!(
        !text.contains(&key) && !text.contains(&new_key),
        "a key leaked into the trail"
    );
    assert!(
        !text.contains(&key[4..20]),
        "part of a key leaked into the trail"
    );
    // One chain, written by the gateway and three commands in turn.
    let report = warden::audit::chain::verify([text.as_str()], None);
    assert_eq!(report.problem, None, "{text}");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .filter_map(|e| e.pointer("/event/action").and_then(|a| a.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            "startup",
            "config-loaded",
            "api-key-created",
            "request",
            "api-key-rotated",
            "request",
            "api-key-revoked",
            "shutdown"
        ]
    );
    let created = &events[2];
    assert_eq!(created.pointer("/warden/key/id"), Some(&id.as_str().into()));
    assert_eq!(created.pointer("/organization/id"), Some(&"acme".into()));
    assert_eq!(created.pointer("/event/category/0"), Some(&"iam".into()));
    assert_eq!(
        events[3].pointer("/warden/auth/key_id"),
        Some(&id.as_str().into())
    );
    let rotation = &events[4];
    assert_eq!(
        rotation.pointer("/warden/key/rotated_from"),
        Some(&id.as_str().into())
    );
    assert_eq!(
        rotation.pointer("/warden/key/grace_seconds"),
        Some(&3600.into())
    );
    assert_eq!(
        events[6].pointer("/warden/key/id"),
        Some(&id.as_str().into())
    );
}
