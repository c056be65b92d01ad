//! The `client_cert` authenticator: an identity from the connection's verified mTLS client
//! certificate (DESIGN.md §2 step 6, beside JWT and API keys).
//!
//! The listener verifies the certificate during the handshake (chain to `client_ca`, validity,
//! revocation lists) and puts a [`PeerCertificate`] into every request of that connection; this
//! authenticator only reads the subject from it: the first SAN URI (a SPIFFE ID such as
//! `spiffe://example.org/ns/prod/sa/agent`), the first SAN DNS name, or the subject's common
//! name, as configured. A request on a connection without a client certificate has no
//! credentials of this kind, so the next authenticator is tried; a verified certificate that
//! holds no subject of the configured kind is refused (401), never passed on anonymous.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::request::Parts;
use x509_parser::extensions::GeneralName;

use super::{Authenticator, AuthnError, InvalidReason};
use crate::identity::{AuthMethod, CredentialSource, Identity};

/// The verified client certificate of the request's connection (leaf, DER), with its SHA-256
/// thumbprint (RFC 8705 `x5t#S256`). Set only by the listener, after verification.
#[derive(Clone, Debug)]
pub struct PeerCertificate {
    der: Arc<[u8]>,
    thumbprint: [u8; 32],
}

impl PeerCertificate {
    /// The certificate the handshake verified.
    pub fn new(der: &[u8]) -> PeerCertificate {
        let mut thumbprint = [0; 32];
        thumbprint
            .copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref());
        PeerCertificate {
            der: der.into(),
            thumbprint,
        }
    }

    /// The leaf, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER.
    pub fn thumbprint(&self) -> &[u8; 32] {
        &self.thumbprint
    }
}

/// Where the subject comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectFrom {
    /// The first URI subject alternative name (SPIFFE IDs).
    SanUri,
    /// The first DNS subject alternative name.
    SanDns,
    /// The subject's common name.
    Cn,
}

impl SubjectFrom {
    fn label(self) -> &'static str {
        match self {
            SubjectFrom::SanUri => "URI subject alternative name",
            SubjectFrom::SanDns => "DNS subject alternative name",
            SubjectFrom::Cn => "common name",
        }
    }
}

/// Authenticates by the connection's client certificate.
#[derive(Clone, Debug)]
pub struct ClientCertAuthenticator {
    subject: SubjectFrom,
}

impl ClientCertAuthenticator {
    /// Subjects read from `subject`.
    pub fn new(subject: SubjectFrom) -> ClientCertAuthenticator {
        ClientCertAuthenticator { subject }
    }

    /// The subject `der` holds, of the configured kind.
    pub fn subject_of(&self, der: &[u8]) -> Option<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        match self.subject {
            SubjectFrom::Cn => cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            SubjectFrom::SanUri | SubjectFrom::SanDns => {
                let san = cert.subject_alternative_name().ok().flatten()?;
                san.value
                    .general_names
                    .iter()
                    .find_map(|name| match (self.subject, name) {
                        (SubjectFrom::SanUri, GeneralName::URI(uri)) => Some((*uri).to_owned()),
                        (SubjectFrom::SanDns, GeneralName::DNSName(dns)) => Some((*dns).to_owned()),
                        _ => None,
                    })
            }
        }
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
    }
}

impl Authenticator for ClientCertAuthenticator {
    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        let result = match req.extensions.get::<PeerCertificate>() {
            None => Ok(None),
            Some(peer) => match self.subject_of(peer.der()) {
                Some(subject) => Ok(Some(Arc::new(Identity::new(
                    subject,
                    AuthMethod::ClientCert,
                    CredentialSource::ClientCertificate,
                )))),
                None => Err(AuthnError::Invalid(InvalidReason::CertificateSubject(
                    self.subject.label(),
                ))),
            },
        };
        Box::pin(std::future::ready(result))
    }

    fn method(&self) -> Option<AuthMethod> {
        Some(AuthMethod::ClientCert)
    }
}
