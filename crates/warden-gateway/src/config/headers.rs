//! `headers:` — the security-header policy put on every response, forwarded or rejected.

use std::collections::BTreeMap;

use http::HeaderValue;
use serde::Deserialize;
use warden::headers::{HeaderPolicy, Profile};

use super::toolkit::Compiler;

/// `headers:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaders {
    /// `api` (default), `browser` or `none`.
    pub profile: Option<String>,
    /// Headers always set on responses.
    pub set: BTreeMap<String, String>,
    /// Headers removed from responses.
    pub remove: Vec<String>,
}

/// Compiles `headers:`.
/// `tls`: the listener terminates TLS, so the profile's HSTS is sent (never over cleartext).
pub fn compile(c: &mut Compiler, raw: &RawHeaders, tls: bool) -> HeaderPolicy {
    let profile = c.choice(
        "headers.profile",
        raw.profile.as_deref(),
        &[
            ("api", Profile::Api),
            ("browser", Profile::Browser),
            ("none", Profile::None),
        ],
        Profile::Api,
    );
    let mut policy = HeaderPolicy::new(profile, tls);
    for (name, value) in &raw.set {
        let path = format!("headers.set.{name}");
        let Some(header) = c.header_name(&path, name) else {
            continue;
        };
        match HeaderValue::from_str(value) {
            Ok(v) => policy = policy.set(header, v),
            Err(_) => c.error(path, "invalid header value"),
        }
    }
    for (i, name) in raw.remove.iter().enumerate() {
        if let Some(header) = c.header_name(&format!("headers.remove[{i}]"), name) {
            policy = policy.remove(header);
        }
    }
    policy
}
