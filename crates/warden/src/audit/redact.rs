//! Redaction before an event leaves the process: the writer thread runs every event through a
//! [`Redactor`] before sealing it, so what is masked is masked in the file, on standard output
//! and under the chain's hashes alike, and the request path pays nothing for it.
//!
//! Events are built from closed vocabularies and identities, never from headers or bodies, so a
//! credential has no way in by construction. Redaction is the second line: fields named like
//! credentials (`password`, `token`, `authorization`, `cookie`, … and `audit.redact_fields`) lose
//! their value whole; every other string is searched by the content guards' PII and secret
//! detectors (e-mail, phone, card, IBAN, SSN, tokens, private keys) and by
//! `audit.redact_patterns`, and each match is replaced by its placeholder (`[EMAIL]`,
//! `[SECRET]`, `[REDACTED]`).
//!
//! Left alone: what the gateway itself wrote from a closed vocabulary, its configuration or as a
//! digest or generated id (`event`, `@timestamp`, `trace`, `source.ip`, the method, route,
//! outcome, request id, limit and provider names, `warden.chain`, `warden.checkpoint`,
//! `warden.config`) — searching them would cost the writer time and find nothing — and the
//! identity fields an audit trail exists to keep (`user.id`, `organization.id`,
//! `warden.auth.key_id`, `warden.api_key.id`) unless `redact_fields` or `redact_patterns` name
//! them.

use regex::{Regex, RegexSet};
use serde_json::{Map, Value};

use crate::guard::detect::{Detectors, redact};

/// Field names whose values are always masked, whatever the configuration adds.
pub const DEFAULT_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "x-api-key",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "private_key",
];

/// What replaces a masked field or a pattern's match.
pub const MASK: &str = "[REDACTED]";

/// Fields (and objects) the gateway writes itself from closed vocabularies, its configuration,
/// digests and generated ids: never searched.
const STRUCTURAL: &[&str] = &[
    "@timestamp",
    "event",
    "trace",
    "source.ip",
    "server.address",
    "service.version",
    "http.request.method",
    "warden.chain",
    "warden.checkpoint",
    "warden.config",
    "warden.request_id",
    "warden.outcome",
    "warden.route",
    "warden.auth.method",
    "warden.authz.rule",
    "warden.rate_limit.limit",
    "warden.upstream",
    "warden.jwks.provider",
    "warden.store",
];
/// Identity fields kept for accountability (masked only by `redact_fields` / `redact_patterns`).
const IDENTITY: &[&str] = &[
    "user.id",
    "organization.id",
    "warden.auth.key_id",
    "warden.api_key.id",
];

/// A `redact_patterns` entry that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("pattern {index}: {message}")]
pub struct RedactError {
    /// Its position in the list.
    pub index: usize,
    /// The compiler's message.
    pub message: String,
}

/// The compiled redaction rules.
#[derive(Debug)]
pub struct Redactor {
    detectors: Option<Detectors>,
    /// Dotted paths (`user.name`) and, for entries without a dot, key names at any depth;
    /// lower-case.
    paths: Vec<String>,
    names: Vec<String>,
    patterns: Option<(RegexSet, Vec<Regex>)>,
}

impl Redactor {
    /// The rules: the PII and secret detectors when `pii`, [`DEFAULT_FIELDS`] and `fields`,
    /// and `patterns`.
    pub fn new(pii: bool, fields: &[String], patterns: &[String]) -> Result<Redactor, RedactError> {
        let detectors = if pii {
            Some(Detectors::new(false).map_err(|e| RedactError {
                index: 0,
                message: e.to_string(),
            })?)
        } else {
            None
        };
        let (mut paths, mut names) = (Vec::new(), Vec::new());
        for field in DEFAULT_FIELDS
            .iter()
            .copied()
            .chain(fields.iter().map(String::as_str))
        {
            let field = field.trim().to_ascii_lowercase();
            if field.contains('.') {
                paths.push(field);
            } else if !field.is_empty() {
                names.push(field);
            }
        }
        let compiled = patterns
            .iter()
            .enumerate()
            .map(|(index, p)| {
                regex::RegexBuilder::new(p)
                    .size_limit(4 << 20)
                    .build()
                    .map_err(|e| RedactError {
                        index,
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<Regex>, RedactError>>()?;
        let patterns = if compiled.is_empty() {
            None
        } else {
            let set = regex::RegexSetBuilder::new(patterns)
                .size_limit(32 << 20)
                .build()
                .map_err(|e| RedactError {
                    index: 0,
                    message: e.to_string(),
                })?;
            Some((set, compiled))
        };
        Ok(Redactor {
            detectors,
            paths,
            names,
            patterns,
        })
    }

    /// Masks what the rules find in `event`, in place.
    pub fn apply(&self, event: &mut Map<String, Value>) {
        let mut path = String::with_capacity(48);
        for (key, value) in event.iter_mut() {
            path.clear();
            path.push_str(key);
            self.walk(&mut path, key, value);
        }
    }

    fn walk(&self, path: &mut String, key: &str, value: &mut Value) {
        if STRUCTURAL.contains(&path.as_str()) && !self.paths.iter().any(|p| p == path) {
            return;
        }
        if self.masks_field(path, key) {
            if !value.is_null() {
                *value = Value::String(MASK.to_owned());
            }
            return;
        }
        match value {
            Value::String(text) => {
                let identity = IDENTITY.contains(&path.as_str());
                if let Some(masked) = self.mask_text(text, !identity) {
                    *text = masked;
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(path, key, item);
                }
            }
            Value::Object(map) => {
                let len = path.len();
                for (inner, value) in map.iter_mut() {
                    path.truncate(len);
                    path.push('.');
                    path.push_str(inner);
                    self.walk(path, inner, value);
                }
                path.truncate(len);
            }
            _ => {}
        }
    }

    /// `text` as the trail would write it in a free-text field (the access log's path).
    pub fn mask<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match self.mask_text(text, true) {
            Some(masked) => std::borrow::Cow::Owned(masked),
            None => std::borrow::Cow::Borrowed(text),
        }
    }

    fn masks_field(&self, path: &str, key: &str) -> bool {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        self.names.iter().any(|n| eq(n, key)) || self.paths.iter().any(|p| eq(p, path))
    }

    /// `text` with each finding replaced, or `None` when nothing was found.
    fn mask_text(&self, text: &str, detect: bool) -> Option<String> {
        let mut current: Option<String> = None;
        if detect && let Some(detectors) = &self.detectors {
            let found = detectors.scan(text);
            if !found.is_empty() {
                current = Some(redact(text, &found));
            }
        }
        if let Some((set, patterns)) = &self.patterns {
            let subject = current.as_deref().unwrap_or(text);
            let matched: Vec<usize> = set.matches(subject).into_iter().collect();
            if !matched.is_empty() {
                let mut out = subject.to_owned();
                for index in matched {
                    out = patterns[index].replace_all(&out, MASK).into_owned();
                }
                current = Some(out);
            }
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(fields: &[&str], patterns: &[&str]) -> Redactor {
        let own = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Redactor::new(true, &own(fields), &own(patterns)).expect("compiles")
    }

    fn apply(redactor: &Redactor, event: Value) -> Value {
        let Value::Object(mut map) = event else {
            panic!("an object");
        };
        redactor.apply(&mut map);
        Value::Object(map)
    }

    #[test]
    fn pii_in_free_text_is_replaced_and_the_rest_kept() {
        let out = apply(
            &redactor(&[], &[]),
            serde_json::json!({
                "url": { "path": "/users/dana.marker@example.com/cards/4111111111111111" },
                "warden": { "authz": { "reason": "X-Tenant-Id \"dana.marker@example.com\" is not acme" } },
                "http": { "response": { "status_code": 403 } },
            }),
        );
        assert_eq!(
            out.pointer("/url/path"),
            Some(&"/users/[EMAIL]/cards/[CARD]".into())
        );
        assert_eq!(
            out.pointer("/warden/authz/reason"),
            Some(&"X-Tenant-Id \"[EMAIL]\" is not acme".into())
        );
        assert_eq!(out.pointer("/http/response/status_code"), Some(&403.into()));
    }

    #[test]
    fn credential_fields_lose_their_value_whatever_their_depth() {
        let out = apply(
            &redactor(&["user.name", "Ssn_Hint"], &[]),
            serde_json::json!({
                "user": { "id": "u1", "name": "Dana" },
                "warden": { "extra": { "Authorization": "Bearer abc", "ssn_hint": 1234,
                            "list": [{ "password": "hunter2" }] } },
            }),
        );
        assert_eq!(out.pointer("/user/name"), Some(&MASK.into()));
        assert_eq!(out.pointer("/user/id"), Some(&"u1".into()));
        assert_eq!(
            out.pointer("/warden/extra/Authorization"),
            Some(&MASK.into())
        );
        assert_eq!(out.pointer("/warden/extra/ssn_hint"), Some(&MASK.into()));
        assert_eq!(
            out.pointer("/warden/extra/list/0/password"),
            Some(&MASK.into())
        );
    }

    #[test]
    fn identities_are_kept_unless_configured_and_structure_is_never_touched() {
        let event = serde_json::json!({
            "@timestamp": "2026-12-03T10:00:00.000Z",
            "event": { "action": "request", "reason": "forbidden" },
            "user": { "id": "dana.marker@example.com" },
            "warden": { "chain": { "prev": "ab" }, "config": { "sha256": "cd" },
                        "route": "orders", "authz": { "reason": "EMP-123456 orders" } },
        });
        let out = apply(&redactor(&[], &[r"EMP-\d{6}"]), event.clone());
        assert_eq!(out.pointer("/user/id"), event.pointer("/user/id"));
        assert_eq!(
            out.pointer("/warden/authz/reason"),
            Some(&"[REDACTED] orders".into())
        );
        assert_eq!(out.pointer("/warden/route"), Some(&"orders".into()));
        assert_eq!(out.pointer("/event"), event.pointer("/event"));
        assert_eq!(out.pointer("/warden/chain"), event.pointer("/warden/chain"));
        let strict = apply(&redactor(&["user.id"], &[]), event);
        assert_eq!(strict.pointer("/user/id"), Some(&MASK.into()));
    }

    #[test]
    fn a_bad_pattern_names_its_index() {
        let error = Redactor::new(false, &[], &["ok".into(), "(".into()]).expect_err("invalid");
        assert_eq!(error.index, 1);
    }
}
