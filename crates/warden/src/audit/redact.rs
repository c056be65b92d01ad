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
//! `warden.auth.key_id`, `warden.key.id`) unless `redact_fields` or `redact_patterns` name
//! them.

use std::borrow::Cow;
use std::sync::RwLock;

use regex::{Regex, RegexSet};
use serde_json::Value;

use super::{AuditEvent, Field};
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
    "warden.key.id",
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

/// What the rules do with one field (decided once per path the code writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// The gateway's own: left alone.
    Skip,
    /// Named like a secret: the value is replaced whole.
    Mask,
    /// Searched by the patterns and, unless an identity, the detectors.
    Scan { detect: bool },
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
    /// Decisions for the code's own paths (string literals), by address: events repeat the
    /// same few dozen, so each is decided once.
    /// Read-mostly: request threads redact in parallel.
    decisions: RwLock<foldhash::HashMap<(usize, usize), Decision>>,
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
            decisions: RwLock::new(foldhash::HashMap::default()),
        })
    }

    /// Masks what the rules find in `event`, in place; an event redacted and unchanged since
    /// is left as it is.
    pub fn apply(&self, event: &mut AuditEvent) {
        if event.redacted {
            return;
        }
        // Paths decided for the first time, remembered after the pass (a write lock only then).
        let mut learned = Vec::new();
        {
            let known = self.decisions.read().unwrap_or_else(|p| p.into_inner());
            let (fields, buffer) = event.fields_mut();
            for (path, field) in fields {
                let decision = match path {
                    Cow::Borrowed(p) => {
                        let key = (p.as_ptr() as usize, p.len());
                        match known.get(&key) {
                            Some(decision) => *decision,
                            None => {
                                let decision = self.decide(p);
                                learned.push((key, decision));
                                decision
                            }
                        }
                    }
                    Cow::Owned(p) => self.decide(p),
                };
                self.apply_to(decision, path, field, buffer);
            }
        }
        if !learned.is_empty() {
            self.decisions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .extend(learned);
        }
        event.redacted = true;
    }

    fn apply_to(&self, decision: Decision, path: &str, field: &mut Field, buffer: &str) {
        match decision {
            Decision::Skip => {}
            Decision::Mask => {
                if *field != Field::Json(Value::Null) {
                    *field = Field::Text(Cow::Borrowed(MASK));
                }
            }
            Decision::Scan { detect } => {
                let masked = match &mut *field {
                    Field::Json(value) => {
                        let mut at = path.to_owned();
                        self.walk(&mut at, value);
                        None
                    }
                    text => text
                        .text_in(buffer)
                        .and_then(|text| self.mask_text(text, detect)),
                };
                if let Some(masked) = masked {
                    *field = Field::Text(Cow::Owned(masked));
                }
            }
        }
    }

    fn decide(&self, path: &str) -> Decision {
        let configured = self
            .paths
            .iter()
            .any(|p| p.eq_ignore_ascii_case(path) || is_inside(path, p));
        if !configured && STRUCTURAL.iter().any(|s| *s == path || is_inside(path, s)) {
            return Decision::Skip;
        }
        if configured || path.split('.').any(|segment| self.is_named(segment)) {
            return Decision::Mask;
        }
        Decision::Scan {
            detect: !IDENTITY.contains(&path),
        }
    }

    /// Inside a JSON value (lists of findings): keys named like secrets lose their value,
    /// strings are searched.
    fn walk(&self, path: &mut String, value: &mut Value) {
        match value {
            Value::String(text) => {
                if let Some(masked) = self.mask_text(text, true) {
                    *text = masked;
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(path, item);
                }
            }
            Value::Object(map) => {
                let len = path.len();
                for (key, inner) in map.iter_mut() {
                    path.truncate(len);
                    path.push('.');
                    path.push_str(key);
                    let configured = self.paths.iter().any(|p| p.eq_ignore_ascii_case(path));
                    if configured || self.is_named(key) {
                        if !inner.is_null() {
                            *inner = Value::String(MASK.to_owned());
                        }
                    } else {
                        self.walk(path, inner);
                    }
                }
                path.truncate(len);
            }
            _ => {}
        }
    }

    fn is_named(&self, key: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(key))
    }

    /// `text` as the trail would write it in a free-text field (the access log's path).
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.mask_text(text, true) {
            Some(masked) => Cow::Owned(masked),
            None => Cow::Borrowed(text),
        }
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

/// Whether `long` is a field inside the object at `short`.
fn is_inside(long: &str, short: &str) -> bool {
    long.len() > short.len()
        && long.as_bytes()[short.len()] == b'.'
        && long[..short.len()].eq_ignore_ascii_case(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(fields: &[&str], patterns: &[&str]) -> Redactor {
        let own = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Redactor::new(true, &own(fields), &own(patterns)).expect("compiles")
    }

    fn apply(redactor: &Redactor, event: Value) -> Value {
        let mut event = AuditEvent::from_value(&event);
        redactor.apply(&mut event);
        event.to_value()
    }

    #[test]
    fn an_event_is_redacted_once_and_again_after_any_change() {
        let mut event = AuditEvent::new(
            crate::audit::Action::Request,
            crate::audit::Outcome::Success,
            None,
        );
        event.set_text("warden.authz.reason", "EMP-1234");
        redactor(&[], &[]).apply(&mut event);
        // A second pass (the writer's, after the request thread's) does nothing: a rule the
        // first pass did not have finds nothing to do.
        redactor(&[], &["EMP-[0-9]+"]).apply(&mut event);
        assert_eq!(event.to_value()["warden"]["authz"]["reason"], "EMP-1234");
        // A field set afterwards makes the event new to the next pass, which then reads it all.
        event.set_text("url.path", "/EMP-5678");
        redactor(&[], &["EMP-[0-9]+"]).apply(&mut event);
        assert_eq!(event.to_value()["warden"]["authz"]["reason"], MASK);
        assert_eq!(event.to_value()["url"]["path"], format!("/{MASK}"));
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
        // Text kept in the event's own buffer, as the request event keeps it, is masked too.
        let mut event = AuditEvent::new(
            crate::audit::Action::Request,
            crate::audit::Outcome::Success,
            None,
        );
        event
            .set_text("url.path", "/users/dana.marker@example.com")
            .set_text("user.id", "dana.marker@example.com");
        redactor(&[], &[]).apply(&mut event);
        assert_eq!(event.to_value()["url"]["path"], "/users/[EMAIL]");
        assert_eq!(event.to_value()["user"]["id"], "dana.marker@example.com");
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
