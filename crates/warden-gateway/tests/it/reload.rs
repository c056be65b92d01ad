//! Hot reload of the whole configuration: new requests get the new configuration, state whose
//! definition is unchanged survives (counters, signing keys, token cache, upstream pool), a
//! broken or restart-only change is refused with every problem at its path while the gateway
//! keeps serving, and no request fails across reloads under load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{self, TestGateway, client, get, request, send, temp_dir, unused_addr};
use crate::jwks::{KeyServer, key, token};
use warden_gateway::config;
use warden_gateway::server::Gateway;

/// A TCP relay in front of `target` that counts the connections that carried a request (the
/// gateway's upstream pool opens them).
async fn counting_relay(target: SocketAddr) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                // The gateway's reachability probe connects and sends nothing: not counted.
                if !matches!(inbound.peek(&mut [0u8; 1]).await, Ok(1)) {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, accepted)
}

/// The test's configuration file: fixed listener addresses, an upstream, a JWT provider whose
/// keys come from `keys`, a rate-limited route, and `extra` routes.
struct Files {
    dir: PathBuf,
    path: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: String,
    keys: String,
    trail: PathBuf,
}

impl Files {
    fn new(name: &str, upstream: &str, keys: &str) -> Files {
        let dir = temp_dir(name);
        Files {
            path: dir.join("warden.yaml"),
            trail: dir.join("audit.jsonl"),
            dir,
            listen: unused_addr(),
            admin: unused_addr(),
            upstream: upstream.to_owned(),
            keys: keys.to_owned(),
        }
    }

    /// Writes the file with `issuer` for the provider, `max_connections` to the upstream and
    /// `extra` lines under `routes:`.
    fn write(&self, issuer: &str, max_connections: u32, extra: &str) {
        let text = format!(
            r#"server:
  listen: "{listen}"
  admin_listen: "{admin}"
  environment: development
  watch_interval: 0
upstream: {{ url: "{upstream}", max_connections: {max_connections} }}
auth:
  jwt:
    - {{ name: idp, issuer: "{issuer}", audiences: [agents], jwks_uri: "{keys}/jwks", algorithms: [ES256] }}
audit: {{ sink: "file://{trail}" }}
routes:
  - {{ path: /echo, methods: [GET, POST], auth: none }}
  - {{ path: /limited, auth: none, rate_limit: {{ limit: 3, per: 1h }} }}
  - {{ path: /private, authorize: authenticated }}
{extra}"#,
            listen = self.listen,
            admin = self.admin,
            upstream = self.upstream,
            keys = self.keys,
            trail = self.trail.display(),
        );
        write_atomically(&self.path, &text);
    }

    async fn start(&self, upstream: common::Upstream) -> TestGateway {
        let config = config::load(&self.path).unwrap_or_else(|e| panic!("config: {e}"));
        let gateway = Gateway::start(config).await.expect("gateway starts");
        TestGateway { gateway, upstream }
    }
}

/// Replaces `path` in one step (as editors and config-management tools do), so a reader never
/// sees half a file.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// An upstream, a key server, and a gateway started from the file written by `write`.
async fn started(name: &str, write: impl Fn(&Files)) -> (Files, TestGateway, KeyServer) {
    let upstream = common::upstream().await;
    let keys = KeyServer::start(&[&key("k1")]).await;
    let files = Files::new(name, &upstream.url(), &keys.url());
    write(&files);
    let gw = files.start(upstream).await;
    (files, gw, keys)
}

async fn status(gw: &TestGateway, path: &str) -> u16 {
    get(&gw.url(path)).await.status.as_u16()
}

async fn private(gw: &TestGateway, bearer: &str) -> u16 {
    send(
        &client(),
        request("GET", &gw.url("/private"))
            .header("authorization", format!("Bearer {bearer}"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await
    .status
    .as_u16()
}

async fn readyz_sha(gw: &TestGateway) -> String {
    get(&gw.admin_url("/readyz")).await.json()["config_sha256"]
        .as_str()
        .expect("config_sha256")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_new_requests_the_new_file_and_keeps_every_unchanged_state() {
    let upstream = common::upstream().await;
    let (relay, connections) = counting_relay(upstream.addr).await;
    let signer = key("k1");
    let server = KeyServer::start(&[&signer]).await;
    let issuer = "https://idp.test";
    let files = Files::new("reload-state", &format!("http://{relay}"), &server.url());
    files.write(issuer, 64, "");
    let gw = files.start(upstream).await;
    let first_sha = readyz_sha(&gw).await;

    assert_eq!(status(&gw, "/new").await, 404);
    for _ in 0..3 {
        assert_eq!(status(&gw, "/limited").await, 200);
    }
    assert_eq!(status(&gw, "/limited").await, 429);
    let bearer = token(&signer, issuer);
    assert_eq!(private(&gw, &bearer).await, 200);
    let fetches = server.fetches();
    assert!(fetches >= 1);
    // Sequential requests ride one pooled upstream connection.
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    // A new route: everything else is defined as before and is kept.
    files.write(issuer, 64, "  - { path: /new, auth: none }\n");
    let reloaded = gw.gateway.reload().await.expect("reloaded");
    assert_eq!(reloaded.changed, vec!["routes".to_owned()]);
    assert!(
        reloaded.kept.counters
            && reloaded.kept.token_cache
            && reloaded.kept.upstream_pool
            && reloaded.kept.key_sources == vec!["idp".to_owned()],
        "{:?}",
        reloaded.kept
    );
    assert_eq!(status(&gw, "/new").await, 200);
    // The counter survived: the quota spent before the reload stays spent.
    assert_eq!(status(&gw, "/limited").await, 429);
    assert_eq!(private(&gw, &bearer).await, 200);
    assert_eq!(
        server.fetches(),
        fetches,
        "the signing keys were fetched again"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the upstream pool was rebuilt"
    );
    let second_sha = readyz_sha(&gw).await;
    assert_eq!(second_sha, reloaded.sha256);
    assert_ne!(second_sha, first_sha);

    // Saving the same file again changes nothing.
    files.write(issuer, 64, "  - { path: /new, auth: none }\n");
    let same = gw.gateway.reload().await.expect("unchanged");
    assert!(same.changed.is_empty(), "{same:?}");

    // Another connection cap to the upstream: a new pool, the counters still kept.
    files.write(issuer, 32, "  - { path: /new, auth: none }\n");
    let reloaded = gw.gateway.reload().await.expect("reloaded");
    assert_eq!(reloaded.changed, vec!["upstream".to_owned()]);
    assert!(!reloaded.kept.upstream_pool && reloaded.kept.counters);
    assert_eq!(status(&gw, "/echo").await, 200);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(status(&gw, "/limited").await, 429);

    // A changed provider is a new provider: its cache of verified tokens goes with the old
    // definition, so a token of the old issuer is refused at once, and the keys are fetched.
    let other = "https://other-idp.test";
    files.write(other, 32, "  - { path: /new, auth: none }\n");
    let reloaded = gw.gateway.reload().await.expect("reloaded");
    assert!(!reloaded.kept.token_cache && reloaded.kept.key_sources.is_empty());
    assert_eq!(private(&gw, &bearer).await, 401);
    assert_eq!(private(&gw, &token(&signer, other)).await, 200);
    assert!(server.fetches() > fetches);

    gw.gateway.shutdown().await;
    let (trail, reloads) = trail_events(&files.trail, "config-reloaded");
    assert_eq!(reloads.len(), 3, "{trail}");
    let warden = &reloads[0]["warden"]["config"];
    assert_eq!(warden["changed"], "routes");
    assert_eq!(warden["previous_sha256"], first_sha.as_str());
    assert_eq!(warden["sha256"], second_sha.as_str());
    assert_eq!(
        warden["kept"], "counters,token_cache,upstream_pool,keys:idp",
        "{warden}"
    );
    let _ = std::fs::remove_dir_all(&files.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reloads_keep_the_running_configuration_and_name_every_problem() {
    let (files, gw, _keys) =
        started("reload-refused", |f| f.write("https://idp.test", 64, "")).await;
    let sha = readyz_sha(&gw).await;
    let failures = "warden_config_reloads_total{result=\"failure\"}";
    let failed_before = common::metric(&gw, failures).await;

    // Two problems in two sections: both are reported, each at its path.
    files.write(
        "https://idp.test",
        64,
        "  - { path: /broken, methods: [\"FE TCH\"], auth: none, rate_limit: { limit: 5, algorithm: magic } }\n",
    );
    let error = gw.gateway.reload().await.expect_err("refused");
    let text = error.to_string();
    assert_eq!(error.code(), "invalid_config");
    assert!(text.contains("routes[3].methods[0]"), "{text}");
    assert!(text.contains("routes[3].rate_limit.algorithm"), "{text}");
    assert_eq!(status(&gw, "/echo").await, 200);
    assert_eq!(status(&gw, "/broken").await, 404);
    assert_eq!(readyz_sha(&gw).await, sha);

    // What only a restart can change is refused with the reason, even in a valid file.
    files.write("https://idp.test", 64, "");
    let moved = text_with(
        &files.path,
        &files.listen.to_string(),
        &unused_addr().to_string(),
    )
    .replace("watch_interval: 0", "watch_interval: 0\n  workers: 7");
    write_atomically(&files.path, &moved);
    let error = gw.gateway.reload().await.expect_err("restart only");
    let default_workers = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        error.to_string().contains(&format!(
            "server.workers: changed from {default_workers} to 7"
        )),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("server.listen: changed from 127.0.0.1:"),
        "{error}"
    );
    assert!(error.to_string().contains("takes a restart"), "{error}");
    assert_eq!(status(&gw, "/echo").await, 200);

    // The admin endpoint answers the same, from loopback.
    let admin_client = client();
    let admin = |method: &'static str| {
        send(
            &admin_client,
            request(method, &gw.admin_url("/reload"))
                .body(warden::body::empty())
                .expect("request"),
        )
    };
    let reply = admin("POST").await;
    assert_eq!(reply.status, 422);
    let body = reply.json();
    assert_eq!(body["result"], "refused");
    assert_eq!(body["errors"][0]["path"], "server.listen");
    assert_eq!(admin("GET").await.status, 405);
    // The recorder is process-wide: other tests may add to it, never take away.
    let failed = common::metric(&gw, failures).await - failed_before;
    assert!(failed >= 3.0, "{failed}");

    // Fixed: in service.
    files.write("https://idp.test", 64, "  - { path: /fixed, auth: none }\n");
    let reply = admin("POST").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["result"], "reloaded");
    assert_eq!(status(&gw, "/fixed").await, 200);

    gw.gateway.shutdown().await;
    let (trail, rejected) = trail_events(&files.trail, "config-rejected");
    assert!(rejected.len() >= 3, "{trail}");
    assert_eq!(rejected[0]["event"]["reason"], "invalid_config");
    assert_eq!(rejected[0]["event"]["outcome"], "failure");
    let message = rejected[0]["error"]["message"].as_str().expect("message");
    assert!(message.contains("routes[3].methods[0]"), "{message}");
    let _ = std::fs::remove_dir_all(&files.dir);
}

/// The trail's text and its events of `action`.
fn trail_events(trail: &Path, action: &str) -> (String, Vec<serde_json::Value>) {
    let text = std::fs::read_to_string(trail).expect("trail");
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|e: &serde_json::Value| e["event"]["action"] == action)
        .collect();
    (text, events)
}

fn text_with(path: &Path, from: &str, to: &str) -> String {
    std::fs::read_to_string(path)
        .expect("read")
        .replace(from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_across_reloads_under_load() {
    use http_body_util::BodyExt as _;
    let (files, gw, _keys) = started("reload-load", |f| f.write("https://idp.test", 64, "")).await;
    let addr = gw.addr();

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    // Two keep-alive clients and one opening a connection per request.
    for keep_alive in [true, true, false] {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut sender = None;
            while !stop.load(Ordering::SeqCst) {
                if sender.is_none() || !keep_alive {
                    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    let (send, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                            .await
                            .expect("handshake");
                    tokio::spawn(conn);
                    sender = Some(send);
                }
                let send = sender.as_mut().expect("sender");
                // The connection takes the next request only once it has finished the last.
                if let Err(error) = send.ready().await {
                    failed.push(format!("connection closed: {error}"));
                    sender = None;
                    continue;
                }
                let req = http::Request::post("/echo")
                    .header("host", "gw.test")
                    .body(warden::body::full("payload"))
                    .expect("request");
                match send.send_request(req).await {
                    Ok(response) if response.status() == 200 => {
                        let _ = response.into_body().collect().await;
                        ok += 1;
                    }
                    Ok(response) => failed.push(response.status().to_string()),
                    Err(error) => failed.push(error.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for round in 0..6 {
        let extra = if round % 2 == 0 {
            "  - { path: /new, auth: none }\n"
        } else {
            ""
        };
        files.write("https://idp.test", 64, extra);
        gw.gateway.reload().await.expect("reloaded");
        let expected = if round % 2 == 0 { 200 } else { 404 };
        assert_eq!(status(&gw, "/new").await, expected, "round {round}");
        // And a refused one in between.
        files.write(
            "https://idp.test",
            64,
            "  - { path: /x, methods: [\"FE TCH\"] }\n",
        );
        gw.gateway.reload().await.expect_err("refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for task in load {
        let (o, f) = task.await.expect("load task");
        ok += o;
        failed.extend(f);
    }
    assert!(ok > 100, "only {ok} requests");
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    gw.gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&files.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_reloaded_by_the_watch_and_sighup_and_warden_reload_reach_the_binary() {
    // The watch, in process: a new file is picked up within the interval.
    let watched = |files: &Files, extra: &str| {
        files.write("https://idp.test", 64, extra);
        let text = text_with(&files.path, "watch_interval: 0", "watch_interval: 100ms");
        write_atomically(&files.path, &text);
    };
    let (files, gw, keys) = started("reload-watch", |f| watched(f, "")).await;
    assert_eq!(status(&gw, "/new").await, 404);
    watched(&files, "  - { path: /new, auth: none }\n");
    let mut seen = 0;
    for _ in 0..100 {
        seen = status(&gw, "/new").await;
        if seen == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 200, "the file change was not picked up");
    // A refused file that names a new file (a schema) is refused once, not at every check.
    std::fs::write(files.dir.join("s.json"), r#"{"type":"object"}"#).expect("schema");
    watched(
        &files,
        "  - { path: /new, auth: none }\n  - { path: /s, methods: [POST], auth: none, body: { schema: s.json } }\n",
    );
    let moved = text_with(
        &files.path,
        &files.listen.to_string(),
        &unused_addr().to_string(),
    );
    write_atomically(&files.path, &moved);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status(&gw, "/s").await, 404);
    gw.gateway.shutdown().await;
    let (trail, rejected) = trail_events(&files.trail, "config-rejected");
    assert_eq!(rejected.len(), 1, "{trail}");

    // The binary: SIGHUP, then `warden reload`, with every problem in the log.
    let upstream = common::upstream().await;
    let files = Files::new("reload-binary", &upstream.url(), &keys.url());
    files.write("https://idp.test", 64, "");
    let log = files.dir.join("warden.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(&files.path)
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let url = |path: &str| format!("http://{}{path}", files.listen);
    let mut up = 0;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(files.listen).await.is_ok() {
            up = get(&format!("http://{}/healthz", files.admin))
                .await
                .status
                .as_u16();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up, 200, "the gateway did not start");
    files.write(
        "https://idp.test",
        64,
        "  - { path: /x, methods: [\"FE TCH\"], auth: none, rate_limit: { limit: 5, algorithm: magic } }\n",
    );
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let mut logged = String::new();
    for _ in 0..100 {
        logged = std::fs::read_to_string(&log).unwrap_or_default();
        if logged.contains("configuration not reloaded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in ["routes[3].methods[0]", "routes[3].rate_limit.algorithm"] {
        let line = logged
            .lines()
            .find(|l| l.contains("configuration reload refused") && l.contains(path))
            .unwrap_or_else(|| panic!("no log line for {path}: {logged}"));
        let line: serde_json::Value = serde_json::from_str(line).expect("json log");
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["fields"]["path"], path);
    }
    assert!(
        child.try_wait().expect("status").is_none(),
        "SIGHUP ended it"
    );
    assert_eq!(get(&url("/echo")).await.status, 200);

    let reload = |expect: bool| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["reload", "--url"])
            .arg(format!("http://{}/reload", files.admin))
            .output()
            .expect("warden reload");
        assert_eq!(
            output.status.success(),
            expect,
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("json answer")
    };
    let refused = reload(false);
    assert_eq!(refused["reason"], "invalid_config");
    files.write("https://idp.test", 64, "  - { path: /new, auth: none }\n");
    let done = reload(true);
    assert_eq!(done["result"], "reloaded");
    assert_eq!(done["changed"][0], "routes");
    assert_eq!(get(&url("/new")).await.status, 200);
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&files.dir);
}
