//! TLS termination through real handshakes: versions, ALPN, SNI, plain HTTP on the TLS port,
//! and the configuration's checks. Certificates are generated here (none is committed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::{self, BASIC};

/// A self-signed certificate for `names`, written as `<stem>.crt` and `<stem>.key` in `dir`.
fn certificate(
    dir: &Path,
    stem: &str,
    names: &[&str],
) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let generated = rcgen::generate_simple_self_signed(names).expect("certificate");
    let (cert, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cert, generated.cert.pem()).expect("write cert");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
    (cert, key, generated.cert.der().clone())
}

fn connector(
    trusted: &[&CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).expect("root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(
    gw: &common::TestGateway,
    connector: &tokio_rustls::TlsConnector,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(gw.addr()).await?;
    let name = ServerName::try_from(name.to_owned()).expect("name");
    connector.connect(name, tcp).await
}

fn tls_yaml(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "server:\n  tls:\n    cert: {}\n    key: {}\n{extra}{BASIC}",
        cert.display(),
        key.display()
    )
}

#[tokio::test]
async fn versions_alpn_and_plain_http_on_the_tls_port() {
    let dir = common::temp_dir("tls-versions");
    let (cert, key, der) = certificate(&dir, "localhost", &["localhost"]);
    let gw = common::spawn(&tls_yaml(
        &cert,
        &key,
        "    min_version: \"1.3\"\n  timeouts:\n    header_read: 1s\n",
    ))
    .await;
    let failures =
        |reason: &str| format!("warden_tls_handshake_failures_total{{reason=\"{reason}\"}}");
    let refused_before = common::metric(&gw, &failures("handshake")).await;

    // TLS 1.2 is refused when 1.3 is the lowest version.
    let tls12 = connector(&[&der], &[&rustls::version::TLS12], &[b"http/1.1"]);
    assert!(connect(&gw, &tls12, "localhost").await.is_err());
    assert!(common::metric(&gw, &failures("handshake")).await >= refused_before + 1.0);

    // ALPN offers h2 first.
    let h2 = connector(&[&der], &[&rustls::version::TLS13], &[b"h2", b"http/1.1"]);
    let stream = connect(&gw, &h2, "localhost").await.expect("TLS 1.3");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    // An HTTP/1.1 request over TLS reaches the upstream.
    let http1 = connector(&[&der], &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut stream = connect(&gw, &http1, "localhost").await.expect("TLS");
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(common::raw_status(&answer), 200, "{answer}");
    assert_eq!(gw.upstream.requests().len(), 1);
    // HSTS over TLS (the cleartext tests assert its absence).
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=63072000; includesubdomains\r\n"),
        "{answer}"
    );

    // Plain HTTP on the TLS port: a readable 400, then the connection closes.
    let plain = common::raw(gw.addr(), b"GET /echo HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
    assert_eq!(common::raw_status(&plain), 400, "{plain}");
    assert!(plain.contains("urn:warden:problem:tls-required"), "{plain}");
    let body = plain.split("\r\n\r\n").nth(1).expect("body");
    let length = plain
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length");
    assert_eq!(length.parse::<usize>().expect("number"), body.len());
    let problem: serde_json::Value = serde_json::from_str(body).expect("problem json");
    assert_eq!(problem["status"], 400);
    assert_eq!(gw.upstream.requests().len(), 1);
    assert!(common::metric(&gw, &failures("plain_http")).await >= 1.0);
    // Bytes that are neither TLS nor HTTP: closed without an answer.
    let not_tls_before = common::metric(&gw, &failures("not_tls")).await;
    assert_eq!(common::raw(gw.addr(), b"\x00\x01\x02\x03").await, "");
    assert!(common::metric(&gw, &failures("not_tls")).await >= not_tls_before + 1.0);
    // The certificate's seconds to expiry (rcgen's default validity runs to the year 4096).
    let expiry = format!(
        "warden_tls_certificate_expiry_seconds{{certificate=\"{}\"}}",
        cert.display()
    );
    assert!(common::metric(&gw, &expiry).await > 1e10);

    // A client that connects and never starts a handshake is closed at the head deadline.
    let silent_before = common::metric(&gw, &failures("timeout")).await;
    let mut silent = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut buf = [0u8; 16];
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    assert!(common::metric(&gw, &failures("timeout")).await >= silent_before + 1.0);
}

#[tokio::test]
async fn the_server_name_picks_the_certificate() {
    let dir = common::temp_dir("tls-sni");
    let (cert, key, default_der) = certificate(&dir, "default", &["localhost"]);
    let (other_cert, other_key, other_der) = certificate(&dir, "other", &["api.other.test"]);
    let (wild_cert, wild_key, wild_der) = certificate(&dir, "wild", &["*.wild.test"]);
    let extra = format!(
        "    certificates:\n      - {{ cert: {}, key: {}, names: [api.other.test] }}\n      - {{ cert: {}, key: {}, names: [\"*.wild.test\"] }}\n",
        other_cert.display(),
        other_key.display(),
        wild_cert.display(),
        wild_key.display()
    );
    let gw = common::spawn(&tls_yaml(&cert, &key, &extra)).await;
    let all = connector(
        &[&default_der, &other_der, &wild_der],
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    );
    for (name, expected) in [
        ("api.other.test", &other_der),
        ("a.wild.test", &wild_der),
        ("localhost", &default_der),
    ] {
        let stream = connect(&gw, &all, name).await.expect(name);
        let presented = stream.get_ref().1.peer_certificates().expect("certificate");
        assert_eq!(&presented[0], expected, "{name}");
    }
    // An unknown name gets the default certificate, which the client rejects for that name.
    assert!(connect(&gw, &all, "unknown.test").await.is_err());
}

#[test]
fn the_configuration_is_checked() {
    let dir = common::temp_dir("tls-config");
    let (cert, key, _) = certificate(&dir, "a", &["localhost"]);
    let (_, other_key, _) = certificate(&dir, "b", &["localhost"]);
    let errors = |extra: &str, key: &Path| -> String {
        match common::config_for(&tls_yaml(&cert, key, extra), "http://127.0.0.1:1") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    // The seeds' OpenSSL string is accepted (DHE selects nothing rustls has), as are IANA names.
    assert_eq!(
        errors("    ciphers: \"ECDHE+AESGCM:DHE+AESGCM\"\n", &key),
        ""
    );
    assert_eq!(
        errors(
            "    ciphers: [TLS_AES_128_GCM_SHA256, ECDHE-ECDSA-AES128-GCM-SHA256]\n",
            &key
        ),
        ""
    );
    let unknown = errors("    ciphers: \"ECDHE-RSA-AES128-SHA:ECDHE+AESGCM\"\n", &key);
    assert!(unknown.contains("server.tls.ciphers[0]"), "{unknown}");
    assert!(unknown.contains("ECDHE-RSA-AES128-SHA"), "{unknown}");
    let none = errors(
        "    min_version: \"1.3\"\n    ciphers: \"-TLSv1.3:ECDHE+AESGCM\"\n",
        &key,
    );
    assert!(none.contains("selects no cipher suite"), "{none}");
    let old = errors("    min_version: \"1.1\"\n", &key);
    assert!(old.contains("server.tls.min_version"), "{old}");
    let watch = errors("    watch_interval: soon\n", &key);
    assert!(watch.contains("server.tls.watch_interval"), "{watch}");
    // A key that is not the certificate's.
    let mismatched = errors("", &other_key);
    assert!(mismatched.contains("server.tls.key"), "{mismatched}");
    assert!(mismatched.contains("does not go with"), "{mismatched}");
    // A name the extra certificate is not valid for.
    let (extra_cert, extra_key, _) = certificate(&dir, "c", &["api.example.test"]);
    let wrong_name = errors(
        &format!(
            "    certificates:\n      - {{ cert: {}, key: {}, names: [other.example.test] }}\n",
            extra_cert.display(),
            extra_key.display()
        ),
        &key,
    );
    assert!(
        wrong_name.contains("server.tls.certificates[0].names[0]"),
        "{wrong_name}"
    );
    // A certificate that expires within 14 days loads, with a warning `warden check` prints.
    let soon = chrono::Utc::now() + chrono::Duration::days(5);
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    {
        use chrono::Datelike as _;
        params.not_after = rcgen::date_time_ymd(soon.year(), soon.month() as u8, soon.day() as u8);
    }
    let signing = rcgen::KeyPair::generate().expect("key");
    let expiring = params.self_signed(&signing).expect("certificate");
    let (soon_cert, soon_key) = (dir.join("soon.crt"), dir.join("soon.key"));
    std::fs::write(&soon_cert, expiring.pem()).expect("write");
    std::fs::write(&soon_key, signing.serialize_pem()).expect("write");
    let config = common::config_for(&tls_yaml(&soon_cert, &soon_key, ""), "http://127.0.0.1:1")
        .expect("an expiring certificate still loads");
    let warned: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warned
            .iter()
            .any(|w| w.contains("server.tls.cert") && w.contains("expires in")),
        "{warned:?}"
    );
    // The private key's text never appears in an error.
    let key_text = std::fs::read_to_string(&other_key).expect("key");
    let body = key_text.lines().nth(1).expect("base64 line");
    assert!(!mismatched.contains(body));
}

/// A client certificate chain and its key.
pub(crate) type Identity = (
    Vec<CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// A CA, and client certificates it signs (or another CA signs) with a SPIFFE ID.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Pki {
        let dir = common::temp_dir(name);
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Warden Test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).expect("ca");
        std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write ca");
        Pki { dir, ca }
    }

    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A certificate for `names` (DNS names or IP addresses) with the server-auth or
    /// client-auth purpose, written as `<stem>.crt` and `<stem>.key`; also as a rustls identity.
    pub(crate) fn issue(
        &self,
        stem: &str,
        names: &[&str],
        purpose: rcgen::ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf, Identity) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, stem);
        params.extended_key_usages = vec![purpose];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("signed");
        let (cert_file, key_file) = (
            self.dir.join(format!("{stem}.crt")),
            self.dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        (cert_file, key_file, (vec![cert.der().clone()], der))
    }

    /// A client certificate with `uri` as its SAN, as a rustls client identity.
    pub(crate) fn client(&self, uri: &str) -> Identity {
        self.client_valid(uri, None)
    }

    /// [`Pki::client`], valid until `not_after` (year, month, day) when given.
    fn client_valid(&self, uri: &str, not_after: Option<(i32, u8, u8)>) -> Identity {
        self.client_with(uri, not_after, None)
    }

    /// [`Pki::client`] with an organization (`O`) in its subject name.
    fn client_of(&self, uri: &str, organization: &str) -> Identity {
        self.client_with(uri, None, Some(organization))
    }

    fn client_with(
        &self,
        uri: &str,
        not_after: Option<(i32, u8, u8)>,
        organization: Option<&str>,
    ) -> Identity {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        if let Some(organization) = organization {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, organization);
        }
        if let Some((year, month, day)) = not_after {
            params.not_before = rcgen::date_time_ymd(year - 1, month, day);
            params.not_after = rcgen::date_time_ymd(year, month, day);
        }
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().expect("uri"))];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agent");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("signed");
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        (vec![cert.der().clone()], key)
    }
}

fn mtls_connector(
    trusted: &CertificateDer<'static>,
    identity: Option<Identity>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).expect("identity"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `GET path` over a fresh TLS connection; the status, or `None` when the handshake or the
/// exchange fails.
async fn tls_get(
    gw: &common::TestGateway,
    connector: &tokio_rustls::TlsConnector,
    path: &str,
) -> Option<u16> {
    tls_get_with(gw, connector, path, "").await
}

/// [`tls_get`] with more header lines (each ending in CRLF).
async fn tls_get_with(
    gw: &common::TestGateway,
    connector: &tokio_rustls::TlsConnector,
    path: &str,
    headers: &str,
) -> Option<u16> {
    let mut stream = connect(gw, connector, "localhost").await.ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    // TLS 1.3 reports a refused client certificate after the handshake: on the first read.
    stream.read_to_end(&mut answer).await.ok()?;
    let answer = String::from_utf8_lossy(&answer);
    (!answer.is_empty()).then(|| common::raw_status(&answer))
}

fn mtls_yaml(cert: &Path, key: &Path, ca: &Path, client_auth: &str) -> String {
    format!(
        "server:\n  tls:\n    cert: {}\n    key: {}\n    client_ca: {}\n    client_auth: {client_auth}\nauth:\n  client_cert: {{ subject: san_uri }}\nroutes:\n  - {{ path: \"/api/{{*rest}}\", methods: [GET], authorize: authenticated }}\n  - {{ path: /open, methods: [GET], auth: none }}\n",
        cert.display(),
        key.display(),
        ca.display()
    )
}

#[tokio::test]
async fn a_verified_client_certificate_is_the_identity() {
    let pki = Pki::new("mtls-required");
    let foreign = Pki::new("mtls-foreign");
    let (cert, key, server_der) = certificate(&pki.dir, "server", &["localhost"]);
    let spiffe = "spiffe://example.org/ns/prod/sa/agent";

    let gw = common::spawn(&mtls_yaml(&cert, &key, &pki.ca_file(), "required")).await;
    let good = mtls_connector(&server_der, Some(pki.client(spiffe)));
    assert_eq!(tls_get(&gw, &good, "/api/agents").await, Some(200));
    let seen = gw.upstream.last();
    assert_eq!(seen.headers["x-warden-subject"], spiffe);
    // Under `required`, no certificate and a foreign CA's are refused in the handshake.
    let missing = mtls_connector(&server_der, None);
    assert_eq!(tls_get(&gw, &missing, "/open").await, None);
    let stranger = mtls_connector(&server_der, Some(foreign.client(spiffe)));
    assert_eq!(tls_get(&gw, &stranger, "/open").await, None);
    // An expired certificate from the right CA is refused too.
    let expired = mtls_connector(
        &server_der,
        Some(pki.client_valid(spiffe, Some((2021, 1, 1)))),
    );
    assert_eq!(tls_get(&gw, &expired, "/open").await, None);
    assert_eq!(gw.upstream.requests().len(), 1);

    // Under `optional`, a client without one is anonymous: public routes only.
    let gw = common::spawn(&mtls_yaml(&cert, &key, &pki.ca_file(), "optional")).await;
    assert_eq!(tls_get(&gw, &missing, "/open").await, Some(200));
    assert_eq!(tls_get(&gw, &missing, "/api/agents").await, Some(401));
    assert_eq!(tls_get(&gw, &good, "/api/agents").await, Some(200));
    assert_eq!(gw.upstream.last().headers["x-warden-subject"], spiffe);
    // A foreign certificate is refused even where one is optional.
    assert_eq!(tls_get(&gw, &stranger, "/open").await, None);
}

#[tokio::test]
async fn a_certificate_bound_token_works_only_with_its_certificate() {
    use base64::Engine as _;
    const SECRET: &str = "tls-binding-hmac-secret-0123456789abcdef";
    let pki = Pki::new("mtls-binding");
    let (cert, key, server_der) = certificate(&pki.dir, "server", &["localhost"]);
    let yaml = |required: bool| {
        format!(
            "server:\n  tls:\n    cert: {}\n    key: {}\n    client_ca: {}\n    client_auth: optional\nauth:\n  jwt:\n    - {{ name: corp, issuer: 'https://hmac.test', audiences: [agents], secret: '${{env:BINDING_SECRET}}', algorithms: [HS256], require_bound_tokens: {required} }}\nroutes:\n  - {{ path: \"/api/{{*rest}}\", methods: [GET], authorize: authenticated }}\n",
            cert.display(),
            key.display(),
            pki.ca_file().display()
        )
    };
    let start = |required: bool| {
        let yaml = yaml(required);
        async move {
            let upstream = common::upstream().await;
            let config =
                common::config_with_env(&yaml, &upstream.url(), &[("BINDING_SECRET", SECRET)])
                    .unwrap_or_else(|e| panic!("{e}"));
            common::spawn_config(config, upstream).await
        }
    };
    let owner = pki.client("spiffe://example.org/agent");
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &owner.0[0]).as_ref());
    let claims = |cnf: Option<&str>| {
        let mut claims =
            serde_json::json!({ "iss": "https://hmac.test", "aud": "agents", "sub": "alice" });
        if let Some(cnf) = cnf {
            claims["cnf"] = serde_json::json!({ "x5t#S256": cnf });
        }
        format!(
            "authorization: Bearer {}\r\n",
            common::hs256_token(SECRET, claims)
        )
    };
    let bound = claims(Some(&thumbprint));
    let with_owner = mtls_connector(&server_der, Some(owner));
    let with_other = mtls_connector(&server_der, Some(pki.client("spiffe://example.org/thief")));
    let without = mtls_connector(&server_der, None);

    let gw = start(false).await;
    assert_eq!(
        tls_get_with(&gw, &with_owner, "/api/a", &bound).await,
        Some(200)
    );
    // Twice more: the second use is a cache hit, and the binding is checked all the same.
    assert_eq!(
        tls_get_with(&gw, &with_other, "/api/a", &bound).await,
        Some(401)
    );
    assert_eq!(
        tls_get_with(&gw, &without, "/api/a", &bound).await,
        Some(401)
    );
    // An unbound token is fine where binding is not required.
    assert_eq!(
        tls_get_with(&gw, &without, "/api/a", &claims(None)).await,
        Some(200)
    );

    let gw = start(true).await;
    assert_eq!(
        tls_get_with(&gw, &with_owner, "/api/a", &claims(None)).await,
        Some(401)
    );
    assert_eq!(
        tls_get_with(&gw, &with_owner, "/api/a", &bound).await,
        Some(200)
    );
    // Each refusal was for the binding, not another reason.
    let refused = common::metric(
        &gw,
        "warden_authn_results_total{method=\"jwt\",result=\"failure\",reason=\"certificate_binding\"}",
    )
    .await;
    assert!(refused >= 3.0, "{refused}");
}

/// A self-signed certificate for localhost valid until `year`-01-01, as PEM texts and DER.
fn localhost_until(year: i32) -> (String, String, CertificateDer<'static>) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

/// The leaf a fresh handshake with the gateway is given.
async fn served_leaf(
    gw: &common::TestGateway,
    connector: &tokio_rustls::TlsConnector,
) -> CertificateDer<'static> {
    let stream = connect(gw, connector, "localhost")
        .await
        .expect("handshake");
    stream.get_ref().1.peer_certificates().expect("certificate")[0].clone()
}

/// Waits until the audit trail at `trail` holds `count` events of `action`.
async fn audited(trail: &Path, action: &str, count: usize) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let events: Vec<serde_json::Value> = std::fs::read_to_string(trail)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e.pointer("/event/action").and_then(|a| a.as_str()) == Some(action))
            .collect();
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the trail never held {count} {action} event(s)");
}

/// A TLS gateway serving certificate A (valid to 2090) from files it watches every `watch`,
/// auditing to a trail; B (valid to 2080) is ready to replace it, and the connector trusts both.
struct Reloading {
    gw: common::TestGateway,
    cert: PathBuf,
    key: PathBuf,
    trail: PathBuf,
    a: CertificateDer<'static>,
    b: (String, String, CertificateDer<'static>),
    trusting_both: tokio_rustls::TlsConnector,
}

async fn reloading(name: &str, watch: &str) -> Reloading {
    let dir = common::temp_dir(name);
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let (a_pem, a_key, a) = localhost_until(2090);
    let b = localhost_until(2080);
    std::fs::write(&cert, &a_pem).expect("write");
    std::fs::write(&key, &a_key).expect("write");
    let trail = dir.join("audit.jsonl");
    let gw = common::spawn(&tls_yaml(
        &cert,
        &key,
        &format!(
            "    watch_interval: {watch}\naudit: {{ sink: \"file://{}\" }}\n",
            trail.display()
        ),
    ))
    .await;
    let trusting_both = connector(&[&a, &b.2], &[&rustls::version::TLS13], &[b"http/1.1"]);
    assert_eq!(served_leaf(&gw, &trusting_both).await, a);
    Reloading {
        gw,
        cert,
        key,
        trail,
        a,
        b,
        trusting_both,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_on_signal_without_dropping_a_connection() {
    use http_body_util::BodyExt as _;
    let Reloading {
        gw,
        cert,
        key,
        trail,
        b: (b_pem, b_key, b_der),
        trusting_both,
        ..
    } = reloading("tls-reload", "0").await;
    let expiry = format!(
        "warden_tls_certificate_expiry_seconds{{certificate=\"{}\"}}",
        cert.display()
    );
    let until = |year: i32| {
        let date = rcgen::date_time_ymd(year, 1, 1).unix_timestamp();
        date - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("now")
            .as_secs() as i64
    };
    assert!((common::metric(&gw, &expiry).await - until(2090) as f64).abs() < 120.0);

    // Keep-alive clients and a new connection per request, all through the reloads.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for keep_alive in [true, true, false] {
        let (stop, tls) = (stop.clone(), trusting_both.clone());
        let addr = gw.addr();
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            let mut sender = None;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if sender.is_none() || !keep_alive {
                    let tcp = TcpStream::connect(addr).await.expect("connect");
                    let name = ServerName::try_from("localhost").expect("name");
                    let stream = tls.connect(name, tcp).await.expect("handshake");
                    let (send, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                            .expect("http handshake");
                    tokio::spawn(conn);
                    sender = Some(send);
                }
                let send = sender.as_mut().expect("sender");
                // The connection takes the next request only once it has finished the last.
                if send.ready().await.is_err() {
                    failed += 1;
                    sender = None;
                    continue;
                }
                let req = http::Request::get("/echo")
                    .header("host", "localhost")
                    .body(warden::body::empty())
                    .expect("request");
                match send.send_request(req).await {
                    Ok(response) if response.status() == 200 => {
                        let _ = response.into_body().collect().await;
                        ok += 1;
                    }
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    // A → B on SIGHUP's path; the open connections carry on.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    std::fs::write(&cert, &b_pem).expect("write");
    std::fs::write(&key, &b_key).expect("write");
    assert_eq!(gw.gateway.reload_certificates().await, Some(Ok(1)));
    assert_eq!(served_leaf(&gw, &trusting_both).await, b_der);

    // A broken pair is refused, and B stays in service.
    let (c_pem, _, _) = localhost_until(2070);
    std::fs::write(&cert, &c_pem).expect("write");
    let refused = gw
        .gateway
        .reload_certificates()
        .await
        .expect("tls")
        .expect_err("mismatched pair");
    assert!(
        refused.to_string().contains("does not go with"),
        "{refused}"
    );
    std::fs::write(&cert, "not a certificate").expect("write");
    let refused = gw
        .gateway
        .reload_certificates()
        .await
        .expect("tls")
        .expect_err("garbage");
    assert!(refused.to_string().contains("server.tls.cert"), "{refused}");
    assert_eq!(served_leaf(&gw, &trusting_both).await, b_der);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for task in load {
        let (ok, failed) = task.await.expect("load");
        assert!(ok > 0, "no request went through");
        assert_eq!(failed, 0, "{failed} request(s) failed during the reloads");
    }
    // The expiry gauge follows the certificate in service at once (not a minute later).
    assert!((common::metric(&gw, &expiry).await - until(2080) as f64).abs() < 120.0);

    let reloaded = audited(&trail, "tls-certificates-reloaded", 1).await;
    assert_eq!(
        reloaded[0].pointer("/warden/tls/trigger"),
        Some(&"signal".into())
    );
    let rejected = audited(&trail, "tls-certificates-rejected", 2).await;
    assert_eq!(
        rejected[0].pointer("/event/outcome"),
        Some(&"failure".into())
    );
    let message = rejected[0]
        .pointer("/error/message")
        .and_then(|m| m.as_str())
        .expect("message");
    assert!(message.contains("does not go with"), "{message}");
    // Nothing of a key reaches the trail.
    let written = std::fs::read_to_string(&trail).expect("trail");
    assert!(!written.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn a_changed_certificate_file_is_picked_up_and_a_half_written_pair_waits_for_its_key() {
    let Reloading {
        gw,
        cert,
        key,
        trail,
        a: a_der,
        b: (b_pem, b_key, b_der),
        trusting_both,
    } = reloading("tls-watch", "100ms").await;
    // The certificate first, as a renewal tool writes it: it does not go with the old key.
    std::fs::write(&cert, &b_pem).expect("write");
    let rejected = audited(&trail, "tls-certificates-rejected", 1).await;
    assert_eq!(
        rejected[0].pointer("/warden/tls/trigger"),
        Some(&"file_change".into())
    );
    assert_eq!(served_leaf(&gw, &trusting_both).await, a_der);
    // Then the key: the pair is whole, and in service.
    std::fs::write(&key, &b_key).expect("write");
    audited(&trail, "tls-certificates-reloaded", 1).await;
    assert_eq!(served_leaf(&gw, &trusting_both).await, b_der);
    // Unchanged files are not read again.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        audited(&trail, "tls-certificates-reloaded", 1).await.len(),
        1
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificates_of_the_running_binary() {
    let dir = common::temp_dir("tls-sighup");
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let (a_pem, a_key, a_der) = localhost_until(2090);
    let (b_pem, b_key, b_der) = localhost_until(2080);
    std::fs::write(&cert, &a_pem).expect("write");
    std::fs::write(&key, &a_key).expect("write");
    let (port, admin) = (common::unused_addr(), common::unused_addr());
    let config = dir.join("warden.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{ listen: '{port}', admin_listen: '{admin}', tls: {{ cert: {}, key: {}, watch_interval: 0 }} }}\nupstream: {{ url: 'http://127.0.0.1:9' }}\nroutes: [{{ path: /a, auth: none }}]\n",
            cert.display(),
            key.display()
        ),
    )
    .expect("config");
    let log = dir.join("warden.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let trusting_both = connector(
        &[&a_der, &b_der],
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    );
    let leaf = || async {
        let tcp = TcpStream::connect(port).await.ok()?;
        let name = ServerName::try_from("localhost").expect("name");
        let stream = trusting_both.connect(name, tcp).await.ok()?;
        Some(stream.get_ref().1.peer_certificates()?[0].clone())
    };
    let mut first = None;
    for _ in 0..100 {
        first = leaf().await;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(first, Some(a_der));
    std::fs::write(&cert, &b_pem).expect("write");
    std::fs::write(&key, &b_key).expect("write");
    let hup = |child: &std::process::Child| {
        std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("kill")
    };
    assert!(hup(&child).success());
    let mut now = None;
    for _ in 0..100 {
        now = leaf().await;
        if now.as_ref() == Some(&b_der) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(now, Some(b_der), "SIGHUP did not reload");
    assert!(
        child.try_wait().expect("status").is_none(),
        "SIGHUP ended the gateway"
    );
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(log.contains("TLS certificates reloaded"), "{log}");
}

#[tokio::test]
async fn a_certificate_identity_gets_roles_and_a_tenant_that_authorization_and_the_trail_use() {
    let pki = Pki::new("mtls-mapping");
    let (cert, key, server_der) = certificate(&pki.dir, "server", &["localhost"]);
    let trail = pki.dir.join("audit.jsonl");
    let yaml = format!(
        r#"server:
  tls: {{ cert: {}, key: {}, client_ca: {}, client_auth: required }}
auth:
  client_cert:
    subject: san_uri
    tenant_from: o
    identities:
      - {{ subject: "spiffe://example.org/ns/prod/sa/admin", roles: [admin], tenant: ops }}
      - {{ subject: "spiffe://example.org/ns/prod/*", roles: [viewer] }}
authz:
  roles: {{ viewer: [read:agent], admin: [delete:agent] }}
  role_hierarchy: [viewer, admin]
audit: {{ sink: "file://{}" }}
routes:
  - {{ path: "/tenants/{{tenant}}/agents", methods: [GET], permission: read:agent, tenant_param: tenant }}
  - {{ path: "/agents/{{id}}", methods: [DELETE], permission: delete:agent }}
  - {{ path: /anyone, methods: [GET], authorize: authenticated, rate_limit: {{ limit: 2, per: 1m, key: identity }} }}
"#,
        cert.display(),
        key.display(),
        pki.ca_file().display(),
        trail.display()
    );
    let gw = common::spawn(&yaml).await;
    let delete = |path: &str| {
        format!("DELETE {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
    };
    let send = |connector: tokio_rustls::TlsConnector, request: String| {
        let gw = &gw;
        async move {
            let mut stream = connect(gw, &connector, "localhost").await.ok()?;
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.ok()?;
            Some(common::raw_status(&String::from_utf8_lossy(&answer)))
        }
    };

    // A prod workload of organization acme: a viewer of its own tenant only.
    let worker = mtls_connector(
        &server_der,
        Some(pki.client_of("spiffe://example.org/ns/prod/sa/worker", "acme")),
    );
    assert_eq!(
        tls_get(&gw, &worker, "/tenants/acme/agents").await,
        Some(200)
    );
    let seen = gw.upstream.last();
    assert_eq!(seen.headers["x-warden-roles"], "viewer");
    assert_eq!(seen.headers["x-warden-tenant"], "acme");
    assert_eq!(
        tls_get(&gw, &worker, "/tenants/globex/agents").await,
        Some(403)
    );
    assert_eq!(send(worker.clone(), delete("/agents/7")).await, Some(403));
    // The admin mapping comes first and sets its own tenant over the certificate's O.
    let admin = mtls_connector(
        &server_der,
        Some(pki.client_of("spiffe://example.org/ns/prod/sa/admin", "acme")),
    );
    assert_eq!(send(admin.clone(), delete("/agents/7")).await, Some(200));
    assert_eq!(gw.upstream.last().headers["x-warden-tenant"], "ops");
    // Matched by nothing: authenticated, with no role.
    let staging = mtls_connector(
        &server_der,
        Some(pki.client("spiffe://example.org/ns/staging/sa/worker")),
    );
    assert_eq!(tls_get(&gw, &staging, "/anyone").await, Some(200));
    assert_eq!(gw.upstream.last().headers["x-warden-roles"], "");
    assert_eq!(
        tls_get(&gw, &staging, "/tenants/acme/agents").await,
        Some(403)
    );
    // Rate limits count per certificate identity, across connections.
    assert_eq!(tls_get(&gw, &staging, "/anyone").await, Some(200));
    assert_eq!(tls_get(&gw, &staging, "/anyone").await, Some(429));
    assert_eq!(tls_get(&gw, &worker, "/anyone").await, Some(200));

    let common::TestGateway { gateway, .. } = gw;
    gateway.shutdown().await;
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let denial = events
        .iter()
        .find(|e| {
            e.pointer("/event/action") == Some(&"authorization-denial".into())
                && e.pointer("/url/path") == Some(&"/tenants/globex/agents".into())
        })
        .expect("the tenant denial is in the trail");
    assert_eq!(
        denial.pointer("/user/id"),
        Some(&"spiffe://example.org/ns/prod/sa/worker".into())
    );
    assert_eq!(denial.pointer("/organization/id"), Some(&"acme".into()));
    assert_eq!(denial.pointer("/event/reason"), Some(&"tenant".into()));
    assert_eq!(
        denial.pointer("/warden/auth/method"),
        Some(&"client_cert".into())
    );
}

#[test]
fn certificate_identity_mappings_are_checked() {
    let pki = Pki::new("mtls-mapping-config");
    let (cert, key, _) = certificate(&pki.dir, "server", &["localhost"]);
    let errors = |client_cert: &str| -> String {
        let yaml = format!(
            "server:\n  tls: {{ cert: {}, key: {}, client_ca: {} }}\nauth:\n  client_cert: {client_cert}\nroutes: [{{ path: /a, authorize: authenticated }}]\n",
            cert.display(),
            key.display(),
            pki.ca_file().display()
        );
        match common::config_for(&yaml, "http://127.0.0.1:1") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let cases = [
        (
            "{ identities: [{ subject: '*', roles: [a] }] }",
            "auth.client_cert.identities[0].subject: expected a subject",
        ),
        (
            "{ identities: [{ subject: 'spiffe://*/x', roles: [a] }] }",
            "identities[0].subject",
        ),
        (
            "{ identities: [{ subject: 'spiffe://a/b', roles: ['a b'] }] }",
            "auth.client_cert.identities[0].roles[0]",
        ),
        (
            "{ identities: [{ subject: 'spiffe://a/b', tenant: \"t\\u00e9\" }] }",
            "auth.client_cert.identities[0].tenant",
        ),
        ("{ tenant_from: cn }", "auth.client_cert.tenant_from"),
        (
            "{ identities: [{ subject: 'spiffe://a/b', role: [a] }] }",
            "unknown field",
        ),
    ];
    for (client_cert, expected) in cases {
        let found = errors(client_cert);
        assert!(
            found.contains(expected),
            "{client_cert}: expected {expected:?} in {found}"
        );
    }
    assert_eq!(
        errors(
            "{ subject: san_uri, tenant_from: ou, identities: [{ subject: 'spiffe://example.org/ns/*', roles: [viewer], scopes: [agents:read], tenant: acme }] }"
        ),
        ""
    );
}

/// A ClientHello record offering only `version` (no `supported_versions` extension, as a TLS
/// 1.0/1.1/1.2 client sends), with ECDHE AES-GCM and CBC suites.
fn client_hello(version: u16) -> Vec<u8> {
    client_hello_for(version, "localhost")
}

/// [`client_hello`] with `server_name` as SNI.
fn client_hello_for(version: u16, server_name: &str) -> Vec<u8> {
    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }
    let extension = |kind: u16, body: &[u8]| {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend(with_len16(body));
        out
    };
    let mut name = vec![0u8];
    name.extend(with_len16(server_name.as_bytes()));
    let mut extensions = extension(0x0000, &with_len16(&name));
    // x25519, secp256r1
    extensions.extend(extension(0x000a, &with_len16(&[0x00, 0x1d, 0x00, 0x17])));
    extensions.extend(extension(0x000b, &[0x01, 0x00]));
    // ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    extensions.extend(extension(
        0x000d,
        &with_len16(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01]),
    ));
    let mut hello = version.to_be_bytes().to_vec();
    hello.extend_from_slice(&[7u8; 32]);
    hello.push(0);
    // ECDHE-ECDSA/RSA-AES128-GCM-SHA256, then the CBC suites old versions need.
    hello.extend(with_len16(&[
        0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x09, 0xc0, 0x13,
    ]));
    hello.extend_from_slice(&[1, 0]);
    hello.extend(with_len16(&extensions));
    let mut handshake = vec![1u8];
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len16(&handshake));
    record
}

/// The first record the server answers `hello` with: (content type, first body byte), e.g.
/// (22, 2) for a ServerHello or (21, level) for an alert, then the alert description.
async fn first_answer(addr: std::net::SocketAddr, hello: &[u8]) -> Option<(u8, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(hello).await.ok()?;
    let mut head = [0u8; 5];
    tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    let len = usize::from(u16::from_be_bytes([head[3], head[4]])).min(64);
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.ok()?;
    Some((head[0], body))
}

#[tokio::test]
async fn tls_1_0_and_1_1_client_hellos_are_refused_with_a_protocol_version_alert() {
    let dir = common::temp_dir("tls-legacy");
    let (cert, key, _) = certificate(&dir, "localhost", &["localhost"]);
    let gw = common::spawn(&tls_yaml(&cert, &key, "")).await;
    // The same hello as TLS 1.2 gets a ServerHello: the probe itself is well formed.
    let (kind, body) = first_answer(gw.addr(), &client_hello(0x0303))
        .await
        .expect("an answer");
    assert_eq!((kind, body[0]), (22, 2), "a ServerHello to TLS 1.2");
    for version in [0x0301, 0x0302] {
        let answer = first_answer(gw.addr(), &client_hello(version)).await;
        // An alert (21), fatal (2), protocol_version (70); never a ServerHello.
        assert_eq!(
            answer,
            Some((21, vec![2, 70])),
            "TLS {version:#06x} must be refused"
        );
    }
}

#[tokio::test]
async fn a_client_cannot_make_the_gateway_log_a_line_per_handshake() {
    // An IP address as SNI is illegal; rustls' own logging (off) would warn for each one.
    let dir = common::temp_dir("tls-quiet");
    let (cert, key, _) = certificate(&dir, "localhost", &["localhost"]);
    let (port, admin) = (common::unused_addr(), common::unused_addr());
    let config = dir.join("warden.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{ listen: '{port}', admin_listen: '{admin}', tls: {{ cert: {}, key: {} }} }}\nupstream: {{ url: 'http://127.0.0.1:9' }}\nroutes: [{{ path: /a, auth: none }}]\n",
            cert.display(),
            key.display()
        ),
    )
    .expect("config");
    let log = dir.join("warden.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log"))
        .spawn()
        .expect("spawn");
    let mut answered = 0;
    for _ in 0..100 {
        if first_answer(port, &client_hello_for(0x0303, "127.0.0.1"))
            .await
            .is_some()
        {
            answered += 1;
            if answered == 20 {
                break;
            }
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(answered, 20, "the gateway answered the handshakes");
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let written = std::fs::read_to_string(&log).expect("log")
        + &std::fs::read_to_string(dir.join("stderr.log")).expect("log");
    assert!(written.contains("warden listening"), "{written}");
    let lines = written.lines().count();
    assert!(
        lines < 10 && !written.to_ascii_lowercase().contains("sni"),
        "{lines} lines:\n{written}"
    );
}
