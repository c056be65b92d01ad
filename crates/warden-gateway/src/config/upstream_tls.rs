//! `upstream.tls:` — TLS toward an `https://` upstream: which CAs to trust (the system's roots
//! unless `ca_file` names others), an optional client certificate (mutual TLS to the upstream),
//! the name sent as SNI and verified in the upstream's certificate, and the lowest version.
//! Compiled into one rustls `ClientConfig` on aws-lc-rs that the proxy's connector uses for
//! every new upstream connection (connections are pooled and reused).
//!
//! Certificate and hostname verification cannot be turned off silently: the only switch is
//! `insecure_skip_verify`, which `warden check` and every start report as a warning, and which
//! still checks the handshake's signatures (so the connection is encrypted to *someone*).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;

use super::tls::{min_version, pem_pair, pem_roots};
use super::toolkit::Compiler;

/// `upstream.tls:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstreamTls {
    /// PEM CA certificates trusted instead of the system's roots.
    pub ca_file: Option<String>,
    /// PEM client certificate chain (mutual TLS to the upstream).
    pub cert_file: Option<String>,
    /// Its private key (PEM).
    pub key_file: Option<String>,
    /// The name sent as SNI and verified in the certificate (default: the url's host).
    pub server_name: Option<String>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    /// Development only: accept any certificate for any name.
    pub insecure_skip_verify: bool,
}

/// Compiled `upstream.tls` (present exactly when the upstream url is `https://`).
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    /// Used for every upstream handshake.
    pub config: Arc<ClientConfig>,
    /// Replaces the url's host as SNI and verified name.
    pub server_name: Option<ServerName<'static>>,
}

/// Compiles `upstream.tls` for an upstream whose url is `https` (or not).
pub fn compile(c: &mut Compiler, raw: Option<&RawUpstreamTls>, https: bool) -> Option<UpstreamTls> {
    if !https {
        if raw.is_some() {
            c.error("upstream.tls", "TLS settings need an https:// upstream url");
        }
        return None;
    }
    let default = RawUpstreamTls::default();
    let raw = raw.unwrap_or(&default);
    let at = |field: &str| format!("upstream.tls.{field}");
    let versions = min_version(
        c,
        &at("min_version"),
        raw.min_version.as_deref().unwrap_or("1.2"),
    )?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = match ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
    {
        Ok(builder) => builder,
        Err(e) => {
            c.error(
                "upstream.tls",
                format!("cannot build the TLS configuration: {e}"),
            );
            return None;
        }
    };
    let builder = if raw.insecure_skip_verify {
        if raw.ca_file.is_some() || raw.server_name.is_some() {
            c.error(
                at("insecure_skip_verify"),
                "contradicts ca_file and server_name, which only matter when the certificate is verified",
            );
        }
        c.warn(
            at("insecure_skip_verify"),
            "the upstream's certificate is NOT verified: anyone on the network path can \
             impersonate the upstream and read every request; for development only",
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )))
    } else {
        builder.with_root_certificates(roots(c, raw.ca_file.as_deref())?)
    };
    // No ALPN: the upstream leg is HTTP/1.1, what a server assumes without it (and the
    // connector refuses a preset list).
    let config = match (raw.cert_file.as_deref(), raw.key_file.as_deref()) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let pair = pem_pair(c, (&at("cert_file"), cert), (&at("key_file"), key))?;
            let files = pair.files;
            match builder.with_client_auth_cert(pair.chain, pair.key) {
                Ok(config) => config,
                Err(e) => {
                    c.error(at("key_file"), files.mismatch(&e));
                    return None;
                }
            }
        }
        _ => {
            c.error(
                "upstream.tls",
                "cert_file and key_file go together (mutual TLS)",
            );
            return None;
        }
    };
    let server_name = match raw.server_name.as_deref() {
        None => None,
        Some(name) => match ServerName::try_from(name.trim().to_owned()) {
            Ok(name) => Some(name),
            Err(_) => {
                let shown = c.quoted(&at("server_name"), name);
                c.error(
                    at("server_name"),
                    format!("expected a DNS name or an IP address, got {shown}"),
                );
                None
            }
        },
    };
    Some(UpstreamTls {
        config: Arc::new(config),
        server_name,
    })
}

/// The CAs in `ca_file`, or the system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honored).
fn roots(c: &mut Compiler, ca_file: Option<&str>) -> Option<rustls::RootCertStore> {
    if let Some(file) = ca_file {
        return pem_roots(c, "upstream.tls.ca_file", file);
    }
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        c.error(
            "upstream.tls.ca_file",
            format!(
                "no system root certificates found{why}: install the system's CA bundle or set ca_file"
            ),
        );
        return None;
    }
    Some(roots)
}

/// `insecure_skip_verify`: any certificate for any name, but the handshake's signatures are
/// still checked with the key in the certificate presented.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
