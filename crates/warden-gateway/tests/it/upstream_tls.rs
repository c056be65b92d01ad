//! The upstream leg over TLS: verification against a configured CA or the system's roots, the
//! verified name (the url's host or `server_name`), a client certificate toward the upstream,
//! connection reuse, a handshake the upstream never finishes, and the configuration's checks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
use tokio::net::TcpListener;
use warden::body::{self, Body};

use crate::common::{self, get, spawn_config, temp_dir};
use crate::tls::{Identity, Pki};

/// One handshake: the SNI, and whether a client certificate came.
type Handshake = (Option<String>, bool);

/// What an HTTPS upstream saw.
#[derive(Clone, Default)]
struct Handshakes {
    /// Completed handshakes.
    done: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Handshake>>>,
}

/// An HTTPS upstream with `identity`, requiring client certificates from `clients` when given;
/// answers every request 200 with the `Host` it was sent.
async fn https_upstream(identity: Identity, clients: Option<&Pki>) -> (SocketAddr, Handshakes) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match clients {
        Some(pki) => {
            let pem = std::fs::read(pki.ca_file()).expect("ca");
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                roots.add(cert.expect("pem")).expect("root");
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(identity.0, identity.1)
        .expect("server identity");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handshakes = Handshakes::default();
    let recorded = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                let sni = session.server_name().map(str::to_owned);
                let client_cert = session.peer_certificates().is_some();
                recorded.seen.lock().expect("lock").push((sni, client_cert));
                recorded.done.fetch_add(1, Ordering::SeqCst);
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    Ok::<Response<Body>, Infallible>(Response::new(body::full(host)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, handshakes)
}

/// A gateway in front of `url` with `tls` as `upstream.tls` (`None`: no section), writing its
/// audit trail to `trail`.
async fn gateway(url: &str, tls: Option<String>, trail: &Path) -> common::TestGateway {
    let tls = tls.map(|t| format!("  tls: {t}\n")).unwrap_or_default();
    let yaml = format!(
        "upstream:\n  url: {url}\n{tls}audit: {{ sink: \"file://{}\" }}\nserver:\n  timeouts: {{ upstream_connect: 500ms, upstream_response: 20s }}\nroutes:\n  - {{ path: \"/{{*rest}}\", auth: none }}\n",
        trail.display()
    );
    let config = common::config_for(&yaml, url).unwrap_or_else(|e| panic!("{e}"));
    spawn_config(config, common::upstream().await).await
}

/// The `event.reason` of each upstream failure in the trail, after the gateway stopped.
async fn failures(gw: common::TestGateway, trail: &Path) -> Vec<String> {
    gw.gateway.shutdown().await;
    std::fs::read_to_string(trail)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|e| e.pointer("/event/action") == Some(&"upstream-failure".into()))
        .filter_map(|e| e.pointer("/event/reason")?.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn an_https_upstream_is_verified_by_name_and_its_connections_reused() {
    let pki = Pki::new("upstream-tls");
    let dir = &pki.dir;
    let (_, _, identity) = pki.issue("upstream", &["localhost"], ServerAuth);
    let (addr, handshakes) = https_upstream(identity, None).await;
    let ca = pki.ca_file();
    let ca_only = Some(format!("{{ ca_file: {} }}", ca.display()));

    let trail = dir.join("ok.jsonl");
    let url = format!("https://localhost:{}", addr.port());
    let gw = gateway(&url, ca_only.clone(), &trail).await;
    for _ in 0..3 {
        let reply = get(&gw.url("/a")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), format!("localhost:{}", addr.port()));
    }
    // One handshake for three requests: the pooled connection was reused.
    assert_eq!(handshakes.done.load(Ordering::SeqCst), 1);
    assert_eq!(
        handshakes.seen.lock().expect("lock")[0],
        (Some("localhost".to_owned()), false)
    );
    assert!(failures(gw, &trail).await.is_empty());

    // By address, the certificate (for localhost only) does not match: 502, never forwarded.
    let trail = dir.join("by-ip.jsonl");
    let by_ip = format!("https://127.0.0.1:{}", addr.port());
    let gw = gateway(&by_ip, ca_only.clone(), &trail).await;
    get(&gw.url("/a")).await.assert_problem(502);
    assert_eq!(failures(gw, &trail).await, ["upstream_tls"]);

    // `server_name` names what to send and verify, whatever the url says.
    let trail = dir.join("named.jsonl");
    let named = Some(format!(
        "{{ ca_file: {}, server_name: localhost }}",
        ca.display()
    ));
    let gw = gateway(&by_ip, named, &trail).await;
    assert_eq!(get(&gw.url("/a")).await.status, 200);
    assert!(failures(gw, &trail).await.is_empty());
    assert_eq!(
        handshakes.seen.lock().expect("lock").last().cloned(),
        Some((Some("localhost".to_owned()), false))
    );

    // Another CA's trust does not verify it.
    let stranger = Pki::new("upstream-tls-stranger");
    let trail = dir.join("stranger.jsonl");
    let other_ca = Some(format!("{{ ca_file: {} }}", stranger.ca_file().display()));
    let gw = gateway(&url, other_ca, &trail).await;
    get(&gw.url("/a")).await.assert_problem(502);
    assert_eq!(failures(gw, &trail).await, ["upstream_tls"]);

    // The development switch accepts it, and says so in the configuration's warnings.
    let trail = dir.join("insecure.jsonl");
    let insecure = Some("{ insecure_skip_verify: true }".to_owned());
    let gw = gateway(&by_ip, insecure, &trail).await;
    assert_eq!(get(&gw.url("/a")).await.status, 200);
    assert!(failures(gw, &trail).await.is_empty());
    let config = common::config_for(
        "upstream: { url: x, tls: { insecure_skip_verify: true } }\nroutes: [{ path: /a, auth: none }]\n",
        &by_ip,
    )
    .expect("config");
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.path == "upstream.tls.insecure_skip_verify"
                && w.message.contains("NOT verified")),
        "{:?}",
        config.warnings
    );
}

#[tokio::test]
async fn the_gateway_presents_its_client_certificate_to_an_upstream_that_requires_one() {
    let pki = Pki::new("upstream-mtls");
    let (_, _, identity) = pki.issue("upstream", &["localhost"], ServerAuth);
    let (cert, key, _) = pki.issue("gateway", &["gateway.internal"], ClientAuth);
    let (addr, handshakes) = https_upstream(identity, Some(&pki)).await;
    let url = format!("https://localhost:{}", addr.port());

    let trail = pki.dir.join("with.jsonl");
    let tls = format!(
        "{{ ca_file: {}, cert_file: {}, key_file: {} }}",
        pki.ca_file().display(),
        cert.display(),
        key.display()
    );
    let gw = gateway(&url, Some(tls), &trail).await;
    assert_eq!(get(&gw.url("/a")).await.status, 200);
    assert!(failures(gw, &trail).await.is_empty());
    assert_eq!(
        handshakes.seen.lock().expect("lock")[0],
        (Some("localhost".to_owned()), true)
    );

    // Without it the upstream refuses the handshake.
    let trail = pki.dir.join("without.jsonl");
    let tls = format!("{{ ca_file: {} }}", pki.ca_file().display());
    let gw = gateway(&url, Some(tls), &trail).await;
    get(&gw.url("/a")).await.assert_problem(502);
    assert_eq!(failures(gw, &trail).await, ["upstream_tls"]);
    assert_eq!(handshakes.done.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_handshake_the_upstream_never_finishes_is_a_connect_timeout() {
    // Accepts TCP and never answers the ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let pki = Pki::new("upstream-silent");
    let trail = pki.dir.join("silent.jsonl");
    let tls = format!("{{ ca_file: {} }}", pki.ca_file().display());
    let gw = gateway(
        &format!("https://localhost:{}", addr.port()),
        Some(tls),
        &trail,
    )
    .await;
    // 504 after `upstream_connect` (500ms), not after `upstream_response` (20s).
    get(&gw.url("/a")).await.assert_problem(504);
    assert_eq!(failures(gw, &trail).await, ["upstream_timeout"]);
}

#[test]
fn the_upstream_tls_configuration_is_checked() {
    let pki = Pki::new("upstream-tls-config");
    let (cert, key, _) = pki.issue("gateway", &["gateway.internal"], ClientAuth);
    let (other_cert, _, _) = pki.issue("other", &["other.internal"], ClientAuth);
    let not_pem = pki.dir.join("not.pem");
    std::fs::write(&not_pem, "not a certificate").expect("write");
    let ca = pki.ca_file();
    let check = |url: &str, tls: &str| -> String {
        let yaml =
            format!("upstream: {{ url: x, tls: {tls} }}\nroutes: [{{ path: /a, auth: none }}]\n");
        match common::config_for(&yaml, url) {
            Ok(_) => String::new(),
            Err(errors) => errors.to_string(),
        }
    };
    let https = "https://localhost:8443";
    let cases = [
        (
            "http://127.0.0.1:8000",
            "{}".to_owned(),
            "upstream.tls: TLS settings need an https:// upstream url",
        ),
        (
            https,
            format!("{{ cert_file: {} }}", cert.display()),
            "cert_file and key_file go together",
        ),
        (
            https,
            format!("{{ ca_file: {} }}", not_pem.display()),
            "upstream.tls.ca_file",
        ),
        (
            https,
            format!(
                "{{ cert_file: {}, key_file: {} }}",
                other_cert.display(),
                key.display()
            ),
            "does not go with",
        ),
        (
            https,
            "{ min_version: '1.1' }".to_owned(),
            "upstream.tls.min_version: expected \"1.2\" or \"1.3\"",
        ),
        (
            https,
            "{ server_name: 'not a name' }".to_owned(),
            "upstream.tls.server_name: expected a DNS name or an IP address",
        ),
        (
            https,
            format!(
                "{{ insecure_skip_verify: true, ca_file: {} }}",
                ca.display()
            ),
            "upstream.tls.insecure_skip_verify: contradicts",
        ),
        (https, "{ verify: false }".to_owned(), "unknown field"),
    ];
    for (url, tls, expected) in cases {
        let errors = check(url, &tls);
        assert!(
            errors.contains(expected),
            "{tls}: expected {expected:?} in {errors}"
        );
    }
    // A key is never echoed, whatever the error.
    let key_pem = std::fs::read_to_string(&key).expect("key");
    let secret_line = key_pem.lines().nth(1).expect("key body");
    let errors = check(
        https,
        &format!(
            "{{ cert_file: {}, key_file: {} }}",
            key.display(),
            cert.display()
        ),
    );
    assert!(!errors.contains(secret_line), "{errors}");
    assert!(check("ftp://x", "{}").contains("expected http:// or https://"));
    // The system's roots are used when no CA is named.
    assert_eq!(check(https, "{}"), "");

    // An expired client certificate is a warning, as on the listener.
    let mut params =
        rcgen::CertificateParams::new(vec!["gateway.internal".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let old_key = rcgen::KeyPair::generate().expect("key");
    let old = params.self_signed(&old_key).expect("cert");
    let dir = temp_dir("upstream-tls-expired");
    let (old_cert, old_key_file) = (dir.join("old.crt"), dir.join("old.key"));
    std::fs::write(&old_cert, old.pem()).expect("write");
    std::fs::write(&old_key_file, old_key.serialize_pem()).expect("write");
    let yaml = format!(
        "upstream: {{ url: x, tls: {{ cert_file: {}, key_file: {} }} }}\nroutes: [{{ path: /a, auth: none }}]\n",
        old_cert.display(),
        old_key_file.display()
    );
    let config = common::config_for(&yaml, https).expect("config");
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.path == "upstream.tls.cert_file" && w.message.contains("has expired")),
        "{:?}",
        config.warnings
    );
}

#[tokio::test]
async fn the_binary_trusts_the_system_roots_and_logs_why_a_handshake_failed() {
    let pki = Pki::new("upstream-tls-system");
    let (_, _, identity) = pki.issue("upstream", &["localhost"], ServerAuth);
    let (addr, _) = https_upstream(identity, None).await;
    let run = |url: String| {
        let pki_ca = pki.ca_file();
        let dir = pki.dir.clone();
        async move {
            let port = common::unused_addr().port();
            let config = dir.join(format!("warden-{port}.yaml"));
            std::fs::write(
                &config,
                format!(
                    "server: {{ listen: '127.0.0.1:{port}', admin_listen: '127.0.0.1:{}' }}\nupstream: {{ url: '{url}' }}\nroutes: [{{ path: /a, auth: none }}]\n",
                    common::unused_addr().port()
                ),
            )
            .expect("config");
            let log = dir.join(format!("warden-{port}.log"));
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
                .args(["serve", "--config"])
                .arg(&config)
                // The system's trust store, as rustls-native-certs reads it.
                .env("SSL_CERT_FILE", &pki_ca)
                .env_remove("SSL_CERT_DIR")
                // The gateway logs to stdout.
                .stdout(std::fs::File::create(&log).expect("log"))
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn");
            let url = format!("http://127.0.0.1:{port}/a");
            let mut status = 0;
            for _ in 0..100 {
                let req = common::request("GET", &url)
                    .body(body::empty())
                    .expect("request");
                if let Ok(response) = common::client().request(req).await {
                    status = response.status().as_u16();
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            // SIGTERM: the gateway flushes its buffered log on the way out.
            let _ = std::process::Command::new("kill")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
            (status, std::fs::read_to_string(&log).unwrap_or_default())
        }
    };
    let (status, log) = run(format!("https://localhost:{}", addr.port())).await;
    assert_eq!(status, 200, "{log}");
    let (status, log) = run(format!("https://127.0.0.1:{}", addr.port())).await;
    assert_eq!(status, 502);
    assert!(
        log.contains("upstream request failed") && log.contains("not valid for name"),
        "{log}"
    );
}
