//! `server.tls:` — TLS termination (DESIGN.md §2 "Connection"): certificate chains and keys
//! from PEM files (RSA, ECDSA or Ed25519), more certificates chosen by the client's server name
//! (SNI), the lowest protocol version, an optional cipher-suite allow-list, and ALPN (`h2`,
//! `http/1.1`). Compiled into one rustls `ServerConfig` on aws-lc-rs that the listener uses for
//! every handshake.
//!
//! Only AEAD suites exist in rustls, so a cipher list can only narrow what is offered. Names are
//! IANA (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, `TLS_AES_128_GCM_SHA256`), OpenSSL
//! (`ECDHE-RSA-AES128-GCM-SHA256`) or OpenSSL `+`-joined aliases (`ECDHE+AESGCM`); `!X` or `-X`
//! removes. An alias rustls has no suite for (`DHE`: no finite-field Diffie-Hellman) selects
//! nothing; any other name is an error, so a typo never silently changes what is offered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

use super::toolkit::{Compiler, ConfigError, Scalar};

/// `server.tls:`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// The default certificate chain (PEM, leaf first).
    pub cert: Option<String>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    /// Cipher-suite allow-list: a list of names, or an OpenSSL-style string (`a:b`).
    pub ciphers: Option<RawCiphers>,
    /// More certificates, each chosen for the server names it lists.
    pub certificates: Vec<RawCertificate>,
    /// CA certificates (PEM) that client certificates must chain to (mutual TLS).
    pub client_ca: Option<String>,
    /// `required` (default with `client_ca`) or `optional`.
    pub client_auth: Option<String>,
    /// Certificate revocation lists (PEM) for client certificates.
    pub client_crls: Vec<String>,
    /// How often the files above are checked for a change to reload (default 10s; 0: only on
    /// SIGHUP).
    pub watch_interval: Option<Scalar>,
}

/// A cipher list as a string or a list.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCiphers {
    /// `ECDHE+AESGCM:DHE+AESGCM`
    Text(String),
    /// `[TLS_AES_128_GCM_SHA256, ECDHE-RSA-AES128-GCM-SHA256]`
    List(Vec<String>),
}

/// `server.tls.certificates[]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCertificate {
    /// Chain (PEM).
    pub cert: String,
    /// Key (PEM).
    pub key: String,
    /// Server names (`api.example.com`, `*.example.com`) it is chosen for; each must be one
    /// the certificate is valid for.
    pub names: Vec<String>,
}

/// The compiled `server.tls`.
#[derive(Clone, Debug)]
pub struct Tls {
    /// What every handshake uses.
    pub config: Arc<ServerConfig>,
    /// The certificates served, for the expiry metric.
    pub certificates: Vec<Served>,
    /// Every file the section read (resolved), checked for changes every `watch_interval`.
    pub files: Vec<PathBuf>,
    /// `None`: reloaded on SIGHUP only.
    pub watch_interval: Option<Duration>,
    /// The section as written and where its relative file names start, to compile it again.
    source: Arc<(RawTls, Option<PathBuf>)>,
}

impl Tls {
    /// Compiles the section again from its files, exactly as at startup: the new certificates,
    /// keys, CAs and revocation lists, or every problem with its path (warnings come along).
    pub fn reload(&self) -> Result<(Tls, Vec<ConfigError>), Vec<ConfigError>> {
        let (raw, base_dir) = &*self.source;
        let mut c = Compiler::new(Vec::new(), Vec::new(), base_dir.clone());
        let tls = compile(&mut c, Some(raw));
        let (errors, warnings) = c.finish();
        match tls {
            Some(tls) if errors.is_empty() => Ok((tls, warnings)),
            _ => Err(errors),
        }
    }
}

/// A served certificate: its file and when its leaf expires.
#[derive(Clone, Debug)]
pub struct Served {
    /// The chain's file, as configured.
    pub file: String,
    /// The leaf's `notAfter`, in Unix seconds.
    pub not_after: i64,
}

/// `warden check` warns about a certificate that expires within this many days.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// Protocol versions, lowest first.
const VERSIONS: &[(&str, &rustls::SupportedProtocolVersion)] = &[
    ("1.2", &rustls::version::TLS12),
    ("1.3", &rustls::version::TLS13),
];

/// The versions from `version` (`"1.2"` or `"1.3"`, at config path `at`) up.
pub(super) fn min_version(
    c: &mut Compiler,
    at: &str,
    version: &str,
) -> Option<Vec<&'static rustls::SupportedProtocolVersion>> {
    let Some(lowest) = VERSIONS.iter().position(|(name, _)| *name == version) else {
        c.error(
            at,
            format!(
                "expected \"1.2\" or \"1.3\", got {version:?} (TLS 1.0 and 1.1 are not offered)"
            ),
        );
        return None;
    };
    Some(VERSIONS[lowest..].iter().map(|(_, v)| *v).collect())
}

/// (suite, IANA name, OpenSSL name, the OpenSSL aliases that select it)
type Named = (
    CipherSuite,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const ECDHE: &[&str] = &["ECDHE", "EECDH", "kECDHE", "kEECDH", "HIGH", "AEAD"];

/// The first entries of [`SUITES`] are TLS 1.3's.
const TLS13_SUITES: usize = 3;

const SUITES: &[Named] = &[
    (
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_256_GCM_SHA384",
        &[
            "TLSv1.3", "AESGCM", "AES", "AES256", "SHA384", "HIGH", "AEAD",
        ],
    ),
    (
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
        &[
            "TLSv1.3", "AESGCM", "AES", "AES128", "SHA256", "HIGH", "AEAD",
        ],
    ),
    (
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
        &["TLSv1.3", "CHACHA20", "SHA256", "HIGH", "AEAD"],
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        &[
            "ECDSA", "aECDSA", "AESGCM", "AES", "AES256", "SHA384", "TLSv1.2",
        ],
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        &[
            "ECDSA", "aECDSA", "AESGCM", "AES", "AES128", "SHA256", "TLSv1.2",
        ],
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        &["ECDSA", "aECDSA", "CHACHA20", "SHA256", "TLSv1.2"],
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        &[
            "RSA", "aRSA", "AESGCM", "AES", "AES256", "SHA384", "TLSv1.2",
        ],
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        &[
            "RSA", "aRSA", "AESGCM", "AES", "AES128", "SHA256", "TLSv1.2",
        ],
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
        &["RSA", "aRSA", "CHACHA20", "SHA256", "TLSv1.2"],
    ),
];

/// OpenSSL aliases that exist but select no suite rustls offers.
const NOTHING: &[&str] = &["DHE", "EDH", "kDHE", "kEDH", "DH", "kDH"];

fn is_tls13(suite: CipherSuite) -> bool {
    SUITES[..TLS13_SUITES].iter().any(|s| s.0 == suite)
}

fn aliases(named: &Named) -> impl Iterator<Item = &'static str> {
    let ecdhe: &'static [&'static str] = if is_tls13(named.0) { &[] } else { ECDHE };
    named.3.iter().copied().chain(ecdhe.iter().copied())
}

/// The suites an element names (`ECDHE+AESGCM`, `ECDHE-RSA-AES128-GCM-SHA256`, an IANA name),
/// or `None` for a name that is not known.
fn select(element: &str) -> Option<Vec<CipherSuite>> {
    if let Some(named) = SUITES.iter().find(|s| {
        s.1.eq_ignore_ascii_case(element)
            || s.2.eq_ignore_ascii_case(element)
            || s.0
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(element))
    }) {
        return Some(vec![named.0]);
    }
    let parts: Vec<&str> = element.split('+').collect();
    let known = |part: &str| {
        NOTHING.contains(&part) || SUITES.iter().any(|s| aliases(s).any(|a| a == part))
    };
    if !parts.iter().all(|p| known(p)) {
        return None;
    }
    Some(
        SUITES
            .iter()
            .filter(|s| parts.iter().all(|p| aliases(s).any(|a| a == *p)))
            .map(|s| s.0)
            .collect(),
    )
}

/// The suites `raw` allows, in its order: TLS 1.3 suites named, or all of them when it names
/// none; the TLS 1.2 suites it selects. Unknown names are reported.
fn ciphers(c: &mut Compiler, raw: &RawCiphers) -> Vec<CipherSuite> {
    let elements: Vec<String> = match raw {
        RawCiphers::Text(text) => text
            .split([':', ',', ' '])
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        RawCiphers::List(list) => list.clone(),
    };
    let mut chosen: Vec<CipherSuite> = Vec::new();
    let mut removed: Vec<CipherSuite> = Vec::new();
    for (i, element) in elements.iter().enumerate() {
        let element = element.trim();
        let (exclude, name) = match element.strip_prefix(['!', '-']) {
            Some(rest) => (true, rest),
            None => (false, element.strip_prefix('+').unwrap_or(element)),
        };
        let Some(suites) = select(name) else {
            c.error(
                format!("server.tls.ciphers[{i}]"),
                format!(
                    "unknown cipher suite {name:?}: expected an AEAD suite by IANA or OpenSSL name (TLS_AES_128_GCM_SHA256, ECDHE-RSA-AES128-GCM-SHA256) or aliases joined by + (ECDHE+AESGCM); CBC, RC4, 3DES and static-RSA suites are not offered"
                ),
            );
            continue;
        };
        for suite in suites {
            if exclude {
                removed.push(suite);
            } else if !chosen.contains(&suite) {
                chosen.push(suite);
            }
        }
    }
    chosen.retain(|s| !removed.contains(s));
    if !chosen.iter().any(|s| is_tls13(*s)) {
        // OpenSSL keeps TLS 1.3 suites apart from its cipher list: a TLS 1.2 list leaves them.
        let tls13 = SUITES[..TLS13_SUITES]
            .iter()
            .map(|s| s.0)
            .filter(|s| !removed.contains(s));
        chosen.splice(0..0, tls13);
    }
    chosen
}

/// Certificates by server name, with a default for clients that send none or another.
#[derive(Debug)]
struct Certificates {
    default: Arc<CertifiedKey>,
    /// Lowercase names; a wildcard as `*.example.com`.
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        let found = self
            .by_name
            .get(&name)
            .or_else(|| wildcard.and_then(|w| self.by_name.get(&w)));
        Some(found.unwrap_or(&self.default).clone())
    }
}

/// A chain and its key from PEM files, checked to belong together.
fn certified(
    c: &mut Compiler,
    path: &str,
    (cert, key): (&str, &str),
    provider: &CryptoProvider,
    served: &mut Vec<Served>,
) -> Option<CertifiedKey> {
    let (cert_at, key_at) = (format!("{path}.cert"), format!("{path}.key"));
    let pair = pem_pair(c, (&cert_at, cert), (&key_at, key))?;
    served.push(Served {
        file: cert.to_owned(),
        not_after: pair.not_after,
    });
    match CertifiedKey::from_der(pair.chain, pair.key, provider) {
        Ok(certified) => Some(certified),
        Err(e) => {
            c.error(key_at, pair.files.mismatch(&e));
            None
        }
    }
}

/// A certificate chain and a private key read from PEM files, not yet checked to match.
pub(super) struct PemPair {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The leaf's expiry (Unix seconds).
    pub not_after: i64,
    pub files: PemFiles,
}

/// Where a [`PemPair`] was read from: the certificate file, then the key file.
pub(super) struct PemFiles(std::path::PathBuf, std::path::PathBuf);

impl PemFiles {
    /// The message for a key that does not go with its certificate.
    pub fn mismatch(&self, error: &rustls::Error) -> String {
        format!(
            "{} does not go with {}: {error}",
            self.1.display(),
            self.0.display()
        )
    }
}

/// Reads a chain (at config path `cert_at`) and its key (at `key_at`); warns when the leaf has
/// expired or expires within [`EXPIRY_WARNING_DAYS`].
pub(super) fn pem_pair(
    c: &mut Compiler,
    (cert_at, cert): (&str, &str),
    (key_at, key): (&str, &str),
) -> Option<PemPair> {
    let (cert_file, cert_pem) = c.read(cert_at, cert)?;
    let (key_file, key_pem) = c.read(key_at, key)?;
    let chain: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<_, _>>() {
            Ok(chain) => chain,
            Err(e) => {
                c.error(
                    cert_at,
                    format!("{}: not a PEM certificate chain ({e})", cert_file.display()),
                );
                return None;
            }
        };
    if chain.is_empty() {
        c.error(
            cert_at,
            format!("{}: holds no certificate", cert_file.display()),
        );
        return None;
    }
    // The key's bytes are never part of a message.
    let Ok(key) = PrivateKeyDer::from_pem_slice(&key_pem) else {
        c.error(
            key_at,
            format!(
                "{}: not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
                key_file.display()
            ),
        );
        return None;
    };
    let Ok((_, leaf)) = x509_parser::parse_x509_certificate(&chain[0]) else {
        c.error(
            cert_at,
            format!(
                "{}: the first certificate cannot be parsed",
                cert_file.display()
            ),
        );
        return None;
    };
    let not_after = leaf.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let days = not_after.saturating_sub(now).div_euclid(86_400);
    if not_after <= now {
        c.warn(
            cert_at,
            format!("{}: the certificate has expired", cert_file.display()),
        );
    } else if days < EXPIRY_WARNING_DAYS {
        c.warn(
            cert_at,
            format!(
                "{}: the certificate expires in {days} day(s)",
                cert_file.display()
            ),
        );
    }
    Some(PemPair {
        chain,
        key,
        not_after,
        files: PemFiles(cert_file, key_file),
    })
}

/// CA certificates from a PEM file (at config path `at`), as trust anchors.
pub(super) fn pem_roots(c: &mut Compiler, at: &str, file: &str) -> Option<rustls::RootCertStore> {
    let (file, pem) = c.read(at, file)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let added = cert
            .map_err(|e| e.to_string())
            .and_then(|cert| roots.add(cert).map_err(|e| e.to_string()));
        if let Err(e) = added {
            c.error(
                at,
                format!("{}: not a usable CA certificate ({e})", file.display()),
            );
            return None;
        }
    }
    if roots.is_empty() {
        c.error(at, format!("{}: holds no certificate", file.display()));
        return None;
    }
    Some(roots)
}

/// Whether the leaf is valid for `name` (a wildcard name is checked with a label under it).
fn valid_for(certified: &CertifiedKey, name: &str) -> bool {
    let probe = match name.strip_prefix("*.") {
        Some(rest) => format!("wildcard-probe.{rest}"),
        None => name.to_owned(),
    };
    let (Some(leaf), Ok(server_name)) = (certified.cert.first(), ServerName::try_from(probe))
    else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .and_then(|cert| cert.verify_is_valid_for_subject_name(&server_name))
        .is_ok()
}

/// The client-certificate verifier `client_ca` asks for (none without it).
fn client_verifier(
    c: &mut Compiler,
    raw: &RawTls,
    provider: &Arc<CryptoProvider>,
) -> Option<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let Some(ca) = raw.client_ca.as_deref() else {
        if raw.client_auth.is_some() || !raw.client_crls.is_empty() {
            c.error(
                "server.tls.client_ca",
                "client_auth and client_crls need client_ca (the CAs client certificates chain to)",
            );
        }
        return None;
    };
    let required = c.choice(
        "server.tls.client_auth",
        raw.client_auth.as_deref(),
        &[("required", true), ("optional", false)],
        true,
    );
    let roots = pem_roots(c, "server.tls.client_ca", ca)?;
    let mut crls = Vec::new();
    for (i, crl) in raw.client_crls.iter().enumerate() {
        let path = format!("server.tls.client_crls[{i}]");
        let (file, pem) = c.read(&path, crl)?;
        match rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(list) if !list.is_empty() => crls.extend(list),
            _ => {
                c.error(
                    path,
                    format!("{}: not a PEM revocation list", file.display()),
                );
                return None;
            }
        }
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .with_crls(crls);
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    match builder.build() {
        Ok(verifier) => Some(verifier),
        Err(e) => {
            c.error(
                "server.tls.client_ca",
                format!("cannot verify client certificates with {ca}: {e}"),
            );
            None
        }
    }
}

/// Compiles `server.tls` (absent: plain HTTP).
pub fn compile(c: &mut Compiler, raw: Option<&RawTls>) -> Option<Tls> {
    let raw = raw?;
    let version = raw.min_version.as_deref().unwrap_or("1.2");
    let versions = min_version(c, "server.tls.min_version", version)?;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(list) = &raw.ciphers {
        let allowed = ciphers(c, list);
        let by_suite = |suite: &CipherSuite| -> Option<SupportedCipherSuite> {
            provider
                .cipher_suites
                .iter()
                .find(|s| s.suite() == *suite)
                .copied()
        };
        let chosen: Vec<SupportedCipherSuite> = allowed.iter().filter_map(by_suite).collect();
        let usable = chosen
            .iter()
            .any(|s| versions.iter().any(|v| s.version().version == v.version));
        if !usable {
            c.error(
                "server.tls.ciphers",
                format!("selects no cipher suite usable with TLS {version} and up"),
            );
        }
        provider.cipher_suites = chosen;
    }
    let (Some(cert), Some(key)) = (raw.cert.as_deref(), raw.key.as_deref()) else {
        c.error("server.tls", "cert and key are both required");
        return None;
    };
    let mut served = Vec::new();
    let default = certified(c, "server.tls", (cert, key), &provider, &mut served);
    let mut by_name = HashMap::new();
    for (i, extra) in raw.certificates.iter().enumerate() {
        let path = format!("server.tls.certificates[{i}]");
        let pair = (extra.cert.as_str(), extra.key.as_str());
        let Some(certified) = certified(c, &path, pair, &provider, &mut served) else {
            continue;
        };
        if extra.names.is_empty() {
            c.error(
                format!("{path}.names"),
                "lists no server name to choose it for",
            );
        }
        let certified = Arc::new(certified);
        for (j, name) in extra.names.iter().enumerate() {
            let name = name.trim().to_ascii_lowercase();
            if !valid_for(&certified, &name) {
                c.error(
                    format!("{path}.names[{j}]"),
                    format!("the certificate is not valid for {name:?}"),
                );
                continue;
            }
            by_name.insert(name, certified.clone());
        }
    }
    let default = default?;
    let provider_for_clients = Arc::new(provider);
    let builder = match ServerConfig::builder_with_provider(provider_for_clients.clone())
        .with_protocol_versions(&versions)
    {
        Ok(builder) => builder,
        Err(e) => {
            c.error(
                "server.tls",
                format!("cannot build the TLS configuration: {e}"),
            );
            return None;
        }
    };
    let builder = match client_verifier(c, raw, &provider_for_clients) {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(Certificates {
        default: Arc::new(default),
        by_name,
    }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's order of suites, not the client's.
    config.ignore_client_order = true;
    let files = [Some(cert), Some(key), raw.client_ca.as_deref()]
        .into_iter()
        .flatten()
        .chain(raw.certificates.iter().flat_map(|e| [&*e.cert, &*e.key]))
        .chain(raw.client_crls.iter().map(String::as_str))
        .map(|file| c.resolve(file))
        .collect();
    let watch_interval = c.interval_or_off(
        "server.tls.watch_interval",
        raw.watch_interval.as_ref(),
        Duration::from_secs(10),
    );
    Some(Tls {
        config: Arc::new(config),
        certificates: served,
        files,
        watch_interval,
        source: Arc::new((raw.clone(), c.base_dir().map(PathBuf::from))),
    })
}
