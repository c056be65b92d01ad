//! The audit trail: who did what, when, and what the gateway decided — one JSON object per line,
//! shaped after the Elastic Common Schema so SIEMs read it without mapping.
//!
//! The audit layer (DESIGN.md §2 step 4) wraps everything below it and turns each request's
//! record into an [`AuditEvent`]; operator commands and background tasks (key changes, JWKS
//! fetches, configuration loads) write events too. An [`AuditSink`] takes them without awaiting:
//! [`sink::FileSink`] queues them (bounded) for one writer thread, which seals each into the hash
//! chain ([`chain`]) and writes it.
//!
//! `event.action`, `event.outcome` and `event.reason` use closed vocabularies ([`Action`],
//! [`Outcome`], reasons are `&'static str` chosen by the code, never text from a request).

pub mod chain;
pub mod redact;
pub mod sink;

use std::time::SystemTime;

use serde_json::{Map, Value};

/// What happened: the closed vocabulary of `event.action`, each with its ECS `event.kind`,
/// `event.category` and `event.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// A request was answered (every request, rejections included).
    Request,
    /// Credentials were presented and refused (the precise reason in `event.reason`).
    AuthenticationFailure,
    /// An authenticated caller was refused by the route's rules or policy (the rule kind in
    /// `event.reason`, the words in `warden.authz.reason`).
    AuthorizationDenial,
    /// A rate limit refused a request (429).
    RateLimitDenial,
    /// A shadow rate limit would have refused a request (counted, let through).
    RateLimitShadow,
    /// A content guard found something in a request (blocked, flagged or redacted).
    GuardFinding,
    /// The upstream gave no response (502/504; the cause in `event.reason`).
    UpstreamFailure,
    /// A configuration was loaded and is in effect (`warden.config.sha256`).
    ConfigLoaded,
    /// A configuration replaced the running one.
    ConfigReloaded,
    /// A configuration was refused; the running one stays.
    ConfigRejected,
    /// An API key was created.
    ApiKeyCreated,
    /// An API key was replaced by a new one (the old stays valid for the grace period).
    ApiKeyRotated,
    /// An API key was revoked.
    ApiKeyRevoked,
    /// Fetching a provider's signing keys failed (first failure after success).
    JwksFetchFailure,
    /// Fetching a provider's signing keys works again.
    JwksFetchRecovered,
    /// The rate-limit store's circuit opened: its calls fail fast.
    StoreCircuitOpened,
    /// The rate-limit store answers again: its circuit closed.
    StoreCircuitClosed,
    /// The gateway started.
    Startup,
    /// The gateway stopped (the last record it writes).
    Shutdown,
    /// A signed checkpoint over the chain's head.
    Checkpoint,
    /// The audit file was reopened (external rotation).
    Reopened,
    /// Events were dropped because the queue was full (`on_overflow: drop`).
    Dropped,
}

impl Action {
    /// Every action (the documented vocabulary).
    pub const ALL: &[Action] = &[
        Action::Request,
        Action::AuthenticationFailure,
        Action::AuthorizationDenial,
        Action::RateLimitDenial,
        Action::RateLimitShadow,
        Action::GuardFinding,
        Action::UpstreamFailure,
        Action::ConfigLoaded,
        Action::ConfigReloaded,
        Action::ConfigRejected,
        Action::ApiKeyCreated,
        Action::ApiKeyRotated,
        Action::ApiKeyRevoked,
        Action::JwksFetchFailure,
        Action::JwksFetchRecovered,
        Action::StoreCircuitOpened,
        Action::StoreCircuitClosed,
        Action::Startup,
        Action::Shutdown,
        Action::Checkpoint,
        Action::Reopened,
        Action::Dropped,
    ];

    /// The `event.action` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Request => "request",
            Action::AuthenticationFailure => "authentication-failure",
            Action::AuthorizationDenial => "authorization-denial",
            Action::RateLimitDenial => "rate-limit-denial",
            Action::RateLimitShadow => "rate-limit-shadow",
            Action::GuardFinding => "guard-finding",
            Action::UpstreamFailure => "upstream-failure",
            Action::ConfigLoaded => "config-loaded",
            Action::ConfigReloaded => "config-reloaded",
            Action::ConfigRejected => "config-rejected",
            Action::ApiKeyCreated => "api-key-created",
            Action::ApiKeyRotated => "api-key-rotated",
            Action::ApiKeyRevoked => "api-key-revoked",
            Action::JwksFetchFailure => "jwks-fetch-failure",
            Action::JwksFetchRecovered => "jwks-fetch-recovered",
            Action::StoreCircuitOpened => "store-circuit-opened",
            Action::StoreCircuitClosed => "store-circuit-closed",
            Action::Startup => "startup",
            Action::Shutdown => "shutdown",
            Action::Checkpoint => "audit-checkpoint",
            Action::Reopened => "audit-reopened",
            Action::Dropped => "audit-dropped",
        }
    }

    /// `event.kind`, `event.category` and `event.type`.
    fn ecs(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Action::Request => ("event", "web", "access"),
            Action::AuthenticationFailure => ("event", "authentication", "start"),
            Action::AuthorizationDenial | Action::RateLimitDenial => ("event", "web", "denied"),
            Action::RateLimitShadow => ("event", "web", "info"),
            Action::GuardFinding => ("alert", "intrusion_detection", "info"),
            Action::UpstreamFailure => ("event", "web", "error"),
            Action::ConfigLoaded | Action::ConfigReloaded => ("event", "configuration", "change"),
            Action::ConfigRejected => ("event", "configuration", "error"),
            Action::ApiKeyCreated => ("event", "iam", "creation"),
            Action::ApiKeyRotated => ("event", "iam", "change"),
            Action::ApiKeyRevoked => ("event", "iam", "deletion"),
            Action::JwksFetchFailure | Action::StoreCircuitOpened => ("event", "network", "error"),
            Action::JwksFetchRecovered | Action::StoreCircuitClosed => ("event", "network", "info"),
            Action::Startup => ("event", "process", "start"),
            Action::Shutdown => ("event", "process", "end"),
            Action::Checkpoint | Action::Reopened => ("state", "file", "info"),
            Action::Dropped => ("alert", "file", "error"),
        }
    }
}

/// `event.outcome` (ECS's own vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It went through.
    Success,
    /// It was refused or failed.
    Failure,
    /// Neither applies.
    Unknown,
}

impl Outcome {
    /// The `event.outcome` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// One event, as the JSON object it is written as (before the chain link is added).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    fields: Map<String, Value>,
}

impl AuditEvent {
    /// An event of `action` now, with its outcome and, for failures, a reason from the closed
    /// vocabulary the caller documents.
    pub fn new(action: Action, outcome: Outcome, reason: Option<&'static str>) -> AuditEvent {
        AuditEvent::at(SystemTime::now(), action, outcome, reason)
    }

    /// The same, at `time`.
    pub fn at(
        time: SystemTime,
        action: Action,
        outcome: Outcome,
        reason: Option<&'static str>,
    ) -> AuditEvent {
        let (kind, category, kind_type) = action.ecs();
        let mut event = serde_json::json!({
            "kind": kind,
            "category": [category],
            "type": [kind_type],
            "action": action.as_str(),
            "outcome": outcome.as_str(),
        });
        if let (Some(reason), Some(map)) = (reason, event.as_object_mut()) {
            map.insert("reason".into(), Value::String(reason.into()));
        }
        let mut fields = Map::new();
        fields.insert("@timestamp".into(), Value::String(rfc3339_millis(time)));
        fields.insert("event".into(), event);
        AuditEvent { fields }
    }

    /// Sets the field at a dotted ECS path (`http.request.method`, `warden.route`), creating the
    /// objects on the way.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) -> &mut AuditEvent {
        let mut map = &mut self.fields;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                map.insert(part.to_owned(), value.into());
                break;
            }
            let next = map
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            match next {
                Value::Object(inner) => map = inner,
                _ => break,
            }
        }
        self
    }

    /// The field at a dotted path, if set.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let first = self.fields.get(parts.next()?)?;
        parts.try_fold(first, |value, part| value.get(part))
    }

    /// The object to write.
    pub fn into_fields(self) -> Map<String, Value> {
        self.fields
    }
}

/// Where events go. `record` never waits on I/O: a sink queues (DESIGN.md §3).
pub trait AuditSink: std::fmt::Debug + Send + Sync + 'static {
    /// Takes one event.
    fn record(&self, event: AuditEvent);
}

/// `2026-12-02T22:00:00.123Z`.
fn rfc3339_millis(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn events_are_ecs_shaped() {
        let time = UNIX_EPOCH + Duration::from_millis(1_796_248_800_123);
        let mut event = AuditEvent::at(time, Action::Request, Outcome::Failure, Some("forbidden"));
        event
            .set("http.request.method", "POST")
            .set("http.response.status_code", 403)
            .set("warden.route", "agents");
        assert_eq!(
            Value::Object(event.clone().into_fields()),
            serde_json::json!({
                "@timestamp": "2026-12-02T22:00:00.123Z",
                "event": { "kind": "event", "category": ["web"], "type": ["access"],
                           "action": "request", "outcome": "failure", "reason": "forbidden" },
                "http": { "request": { "method": "POST" }, "response": { "status_code": 403 } },
                "warden": { "route": "agents" },
            })
        );
        assert_eq!(
            event.get("http.response.status_code"),
            Some(&Value::from(403))
        );
        assert_eq!(event.get("http.nothing"), None);
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000Z"),
        ] {
            assert_eq!(rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs)), text);
        }
    }
}
