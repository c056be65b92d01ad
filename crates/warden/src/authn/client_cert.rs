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
//!
//! Roles, scopes and a tenant come from [`CertificateMapping`]s — the first whose pattern
//! matches the subject — and, for the tenant, optionally from the subject's organization (`O`)
//! or organizational unit (`OU`). A certificate no mapping names is authenticated with no
//! roles: it passes `authorize: authenticated` and nothing that needs a role.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::request::Parts;
use x509_parser::certificate::X509Certificate;
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

/// A subject pattern: exact, or a prefix ending in `*` (`spiffe://example.org/ns/prod/*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectPattern {
    text: String,
    prefix: bool,
}

impl SubjectPattern {
    /// From `spiffe://example.org/agent` (exact) or `spiffe://example.org/ns/*` (prefix).
    pub fn new(pattern: &str) -> SubjectPattern {
        match pattern.strip_suffix('*') {
            Some(prefix) => SubjectPattern {
                text: prefix.to_owned(),
                prefix: true,
            },
            None => SubjectPattern {
                text: pattern.to_owned(),
                prefix: false,
            },
        }
    }

    /// Whether `subject` matches (case-sensitively: SPIFFE IDs and URIs are).
    pub fn matches(&self, subject: &str) -> bool {
        if self.prefix {
            subject.starts_with(&self.text)
        } else {
            subject == self.text
        }
    }
}

/// What a matching subject is given.
#[derive(Clone, Debug)]
pub struct CertificateMapping {
    /// Which subjects.
    pub subject: SubjectPattern,
    /// Roles granted.
    pub roles: Vec<String>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// The tenant, before any taken from the certificate's subject name.
    pub tenant: Option<String>,
}

/// A subject-name attribute read as the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantFrom {
    /// The first `O`.
    Organization,
    /// The first `OU`.
    OrganizationalUnit,
}

/// Authenticates by the connection's client certificate.
#[derive(Clone, Debug)]
pub struct ClientCertAuthenticator {
    subject: SubjectFrom,
    mappings: Arc<[CertificateMapping]>,
    tenant_from: Option<TenantFrom>,
}

impl ClientCertAuthenticator {
    /// Subjects read from `subject`; no roles, scopes or tenant.
    pub fn new(subject: SubjectFrom) -> ClientCertAuthenticator {
        ClientCertAuthenticator {
            subject,
            mappings: Arc::new([]),
            tenant_from: None,
        }
    }

    /// Grants what the first mapping matching a subject names.
    pub fn with_mappings(mut self, mappings: Vec<CertificateMapping>) -> Self {
        self.mappings = mappings.into();
        self
    }

    /// Reads the tenant from this subject-name attribute when no mapping sets one.
    pub fn with_tenant_from(mut self, from: Option<TenantFrom>) -> Self {
        self.tenant_from = from;
        self
    }

    /// The subject `der` holds, of the configured kind.
    pub fn subject_of(&self, der: &[u8]) -> Option<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        self.subject_in(&cert)
    }

    fn subject_in(&self, cert: &X509Certificate<'_>) -> Option<String> {
        match self.subject {
            SubjectFrom::Cn => first_text(cert.subject().iter_common_name()),
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

    /// The identity `der` stands for, or why it stands for none.
    fn identity(&self, der: &[u8]) -> Result<Identity, AuthnError> {
        let missing =
            || AuthnError::Invalid(InvalidReason::CertificateSubject(self.subject.label()));
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| missing())?;
        let subject = self.subject_in(&cert).ok_or_else(missing)?;
        let mut identity = Identity::new(
            subject,
            AuthMethod::ClientCert,
            CredentialSource::ClientCertificate,
        );
        let mapping = self
            .mappings
            .iter()
            .find(|m| m.subject.matches(&identity.subject));
        if let Some(mapping) = mapping {
            identity.roles.clone_from(&mapping.roles);
            identity.scopes.clone_from(&mapping.scopes);
            identity.tenant.clone_from(&mapping.tenant);
        }
        if identity.tenant.is_none() {
            // An attribute that could not travel in a header is no tenant (tenant-bound routes
            // then refuse), never a forged one.
            identity.tenant = match self.tenant_from {
                None => None,
                Some(TenantFrom::Organization) => first_text(cert.subject().iter_organization()),
                Some(TenantFrom::OrganizationalUnit) => {
                    first_text(cert.subject().iter_organizational_unit())
                }
            }
            .filter(|t| crate::identity::is_header_safe(t));
        }
        Ok(identity)
    }
}

/// The first attribute of a kind, as text.
fn first_text<'a>(
    mut attributes: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    attributes
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned)
}

impl Authenticator for ClientCertAuthenticator {
    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        let result = match req.extensions.get::<PeerCertificate>() {
            None => Ok(None),
            Some(peer) => self.identity(peer.der()).map(|i| Some(Arc::new(i))),
        };
        Box::pin(std::future::ready(result))
    }

    fn method(&self) -> Option<AuthMethod> {
        Some(AuthMethod::ClientCert)
    }
}
