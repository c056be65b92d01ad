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

use std::borrow::Cow;
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
    /// A streamed answer ended and its token budget was settled (whole answers carry their
    /// usage in the request event).
    TokenUsage,
    /// The listener's certificates, keys and CAs were read again and are in use.
    CertificatesReloaded,
    /// New certificate files were refused; the ones in use stay.
    CertificatesRejected,
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
        Action::TokenUsage,
        Action::CertificatesReloaded,
        Action::CertificatesRejected,
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
            Action::TokenUsage => "token-usage",
            Action::CertificatesReloaded => "tls-certificates-reloaded",
            Action::CertificatesRejected => "tls-certificates-rejected",
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
            Action::RateLimitShadow | Action::TokenUsage => ("event", "web", "info"),
            Action::GuardFinding => ("alert", "intrusion_detection", "info"),
            Action::UpstreamFailure => ("event", "web", "error"),
            Action::ConfigLoaded | Action::ConfigReloaded => ("event", "configuration", "change"),
            Action::ConfigRejected | Action::CertificatesRejected => {
                ("event", "configuration", "error")
            }
            Action::CertificatesReloaded => ("event", "configuration", "change"),
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
    /// `Failure` when there is a failure reason, else `Success` (operational events: a reason
    /// is given exactly when something failed).
    pub fn of(reason: Option<&str>) -> Outcome {
        if reason.is_some() {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    /// The `event.outcome` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// The value of one field of an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// A string (most come from the code's own vocabulary and are borrowed, not copied).
    Text(Cow<'static, str>),
    /// An unsigned number.
    Unsigned(u64),
    /// A signed number.
    Signed(i64),
    /// A boolean.
    Bool(bool),
    /// A one-element array of a fixed string (ECS's array-valued `event.category` and
    /// `event.type`).
    Tag(&'static str),
    /// Any JSON (lists of findings, a checkpoint's signature object).
    Json(Value),
    /// Text kept in the event's own buffer, bytes `start..end` (read it with
    /// [`AuditEvent::text`]): an event's strings share one allocation, made and freed once.
    Buffered {
        /// Where it starts.
        start: u32,
        /// Where it ends.
        end: u32,
    },
}

macro_rules! field_from {
    ($($ty:ty => $variant:ident as $as:ty),* $(,)?) => {
        $(impl From<$ty> for Field {
            fn from(value: $ty) -> Field {
                Field::$variant(<$as>::from(value))
            }
        })*
    };
}

field_from! {
    u64 => Unsigned as u64,
    u32 => Unsigned as u64,
    u16 => Unsigned as u64,
    i64 => Signed as i64,
    bool => Bool as bool,
    Value => Json as Value,
}

impl From<i32> for Field {
    fn from(value: i32) -> Field {
        match u64::try_from(value) {
            Ok(n) => Field::Unsigned(n),
            Err(_) => Field::Signed(i64::from(value)),
        }
    }
}

impl From<usize> for Field {
    fn from(value: usize) -> Field {
        Field::Unsigned(u64::try_from(value).unwrap_or(u64::MAX))
    }
}

impl From<String> for Field {
    fn from(value: String) -> Field {
        Field::Text(Cow::Owned(value))
    }
}

impl From<&str> for Field {
    /// Copies: an event outlives the request it describes. Use [`AuditEvent::set_static`] for
    /// the code's own strings.
    fn from(value: &str) -> Field {
        Field::Text(Cow::Owned(value.to_owned()))
    }
}

impl From<Vec<String>> for Field {
    fn from(value: Vec<String>) -> Field {
        Field::Json(Value::from(value))
    }
}

impl From<Vec<Value>> for Field {
    fn from(value: Vec<Value>) -> Field {
        Field::Json(Value::Array(value))
    }
}

impl Field {
    /// The text, if this is text (a [`Field::Buffered`] one reads from `buffer`, its event's).
    fn text_in<'a>(&'a self, buffer: &'a str) -> Option<&'a str> {
        match self {
            Field::Text(text) => Some(text),
            Field::Buffered { start, end } => buffer.get(*start as usize..*end as usize),
            _ => None,
        }
    }

    /// As JSON (a [`Field::Buffered`] text reads from `buffer`, its event's).
    fn to_value(&self, buffer: &str) -> Value {
        match self {
            Field::Text(_) | Field::Buffered { .. } => {
                Value::String(self.text_in(buffer).unwrap_or("").to_owned())
            }
            Field::Unsigned(n) => Value::from(*n),
            Field::Signed(n) => Value::from(*n),
            Field::Bool(b) => Value::Bool(*b),
            Field::Tag(tag) => Value::Array(vec![Value::String((*tag).to_owned())]),
            Field::Json(value) => value.clone(),
        }
    }
}

/// Orders dotted paths as their JSON objects are written canonically: segment by segment, each
/// by its bytes (so `http.request.method` before `http.response.status_code`, and an object's
/// fields together).
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    // Segment by segment is bytewise with the separator below every other byte: where one
    // segment ends and the other goes on, the shorter sorts first.
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let rank = |s: &[u8]| match s.get(common) {
        None => None,
        Some(b'.') => Some(0),
        Some(&byte) => Some(u16::from(byte) + 1),
    };
    rank(a).cmp(&rank(b))
}

/// Whether `long` is a field inside the object at `short`.
fn is_inside(long: &str, short: &str) -> bool {
    long.len() > short.len() && long.starts_with(short) && long.as_bytes()[short.len()] == b'.'
}

/// One event: its fields by dotted ECS path (`http.request.method`), kept in canonical order.
/// A flat list rather than nested maps: building one costs a vector and the values, and the
/// writer encodes it canonically in one pass without sorting ([`chain::Chain::seal`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    fields: Vec<(Cow<'static, str>, Field)>,
    /// The text of the [`Field::Buffered`] fields.
    buffer: String,
    /// Redacted, and unchanged since ([`redact::Redactor::apply`] does its work once).
    redacted: bool,
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
        let mut event = AuditEvent {
            fields: Vec::with_capacity(24),
            buffer: String::with_capacity(256),
            redacted: false,
        };
        event.begin(time, action, outcome, reason);
        event
    }

    /// Empties the event, keeping its storage, and starts it anew as [`AuditEvent::at`] does
    /// (a sink reuses spent events: no allocation made on one thread and freed on another).
    pub fn begin(
        &mut self,
        time: SystemTime,
        action: Action,
        outcome: Outcome,
        reason: Option<&'static str>,
    ) {
        let (kind, category, kind_type) = action.ecs();
        let stat = |path: &'static str, value: &'static str| {
            (Cow::Borrowed(path), Field::Text(Cow::Borrowed(value)))
        };
        self.fields.clear();
        self.buffer.clear();
        self.redacted = false;
        push_rfc3339_millis(&mut self.buffer, time);
        // In canonical order already.
        self.fields.push((
            Cow::Borrowed("@timestamp"),
            Field::Buffered {
                start: 0,
                end: self.buffer.len() as u32,
            },
        ));
        self.fields.push(stat("event.action", action.as_str()));
        self.fields
            .push((Cow::Borrowed("event.category"), Field::Tag(category)));
        self.fields.push(stat("event.kind", kind));
        self.fields.push(stat("event.outcome", outcome.as_str()));
        if let Some(reason) = reason {
            self.fields.push(stat("event.reason", reason));
        }
        self.fields
            .push((Cow::Borrowed("event.type"), Field::Tag(kind_type)));
    }

    /// Whether the storage is small enough to keep for reuse (an event that held a large
    /// text is let go).
    pub(crate) fn reusable(&self) -> bool {
        self.fields.capacity() <= 64 && self.buffer.capacity() <= 4096
    }

    /// Sets the field at a dotted ECS path (`http.request.method`, `warden.route`). A path
    /// replaces what was set at it, inside it or around it.
    pub fn set(&mut self, path: &'static str, value: impl Into<Field>) -> &mut AuditEvent {
        self.put(Cow::Borrowed(path), value.into());
        self
    }

    /// Sets a field to a copy of `value`, kept in the event's own buffer.
    pub fn set_text(&mut self, path: &'static str, value: &str) -> &mut AuditEvent {
        self.set_with(path, |buffer| buffer.push_str(value))
    }

    /// Sets a field to the text `write` appends to the event's own buffer.
    pub(crate) fn set_with(
        &mut self,
        path: &'static str,
        write: impl FnOnce(&mut String),
    ) -> &mut AuditEvent {
        let field = self.buffered(write);
        self.put(Cow::Borrowed(path), field)
    }

    /// Sets a field to `value` as text, written into the event's own buffer (an address, a
    /// number as a string).
    pub fn set_display(
        &mut self,
        path: &'static str,
        value: impl std::fmt::Display,
    ) -> &mut AuditEvent {
        self.set_with(path, |buffer| {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(buffer, "{value}");
        })
    }

    fn buffered(&mut self, write: impl FnOnce(&mut String)) -> Field {
        let start = self.buffer.len();
        write(&mut self.buffer);
        match (u32::try_from(start), u32::try_from(self.buffer.len())) {
            (Ok(start), Ok(end)) => Field::Buffered { start, end },
            // Beyond 4 GiB of text in one event: kept on its own instead.
            _ => {
                let text = self.buffer.split_off(start);
                Field::Text(Cow::Owned(text))
            }
        }
    }

    /// The text of a field of this event, if it is text.
    pub fn text<'a>(&'a self, field: &'a Field) -> Option<&'a str> {
        field.text_in(&self.buffer)
    }

    /// Sets a field to one of the code's own strings (no copy).
    pub fn set_static(&mut self, path: &'static str, value: &'static str) -> &mut AuditEvent {
        self.put(Cow::Borrowed(path), Field::Text(Cow::Borrowed(value)))
    }

    fn put(&mut self, path: Cow<'static, str>, value: Field) -> &mut AuditEvent {
        self.redacted = false;
        // Appending in order is the common case.
        let at = match self.fields.last() {
            Some((last, _)) if path_order(last, &path).is_lt() && !is_inside(&path, last) => {
                self.fields.len()
            }
            _ => match self.fields.binary_search_by(|(p, _)| path_order(p, &path)) {
                Ok(found) => {
                    self.fields[found].1 = value;
                    return self;
                }
                Err(at) => at,
            },
        };
        // Nothing may sit inside the new field, nor the new field inside another: an object
        // and a value at the same place cannot both be written.
        let mut end = at;
        while end < self.fields.len() && is_inside(&self.fields[end].0, &path) {
            end += 1;
        }
        self.fields.drain(at..end);
        let mut at = at;
        if at > 0 && is_inside(&path, &self.fields[at - 1].0) {
            self.fields.remove(at - 1);
            at -= 1;
        }
        self.fields.insert(at, (path, value));
        self
    }

    /// Removes every field inside the object at `path`.
    pub(crate) fn clear_inside(&mut self, path: &str) {
        // In canonical order what is inside `path` comes right after where `path` sorts.
        let start = self
            .fields
            .partition_point(|(p, _)| path_order(p, path).is_le());
        let len = self.fields[start..]
            .iter()
            .take_while(|(p, _)| is_inside(p, path))
            .count();
        self.fields.drain(start..start + len);
    }

    /// The field at a dotted path, if set.
    pub fn get(&self, path: &str) -> Option<&Field> {
        self.fields
            .binary_search_by(|(p, _)| path_order(p, path))
            .ok()
            .map(|i| &self.fields[i].1)
    }

    /// Copies from `other` every field at or inside the given top-level paths.
    pub fn copy_from(&mut self, other: &AuditEvent, prefixes: &[&str]) -> &mut AuditEvent {
        for (path, value) in &other.fields {
            let top = path.split('.').next().unwrap_or("");
            if !prefixes.contains(&top) {
                continue;
            }
            let value = match value {
                Field::Buffered { .. } => {
                    let text = other.text(value).unwrap_or("");
                    self.buffered(|buffer| buffer.push_str(text))
                }
                other => other.clone(),
            };
            self.put(path.clone(), value);
        }
        self
    }

    /// The fields in canonical order.
    pub fn fields(&self) -> &[(Cow<'static, str>, Field)] {
        &self.fields
    }

    /// The fields to change, and the buffer their text is in.
    pub(crate) fn fields_mut(&mut self) -> (&mut [(Cow<'static, str>, Field)], &str) {
        (&mut self.fields, &self.buffer)
    }

    /// An event from a JSON object (nested objects become dotted paths; arrays stay values).
    pub fn from_value(value: &Value) -> AuditEvent {
        fn flatten(prefix: &str, value: &Value, out: &mut AuditEvent) {
            match value {
                Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
                    for (key, inner) in map {
                        let path = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        flatten(&path, inner, out);
                    }
                }
                Value::String(text) => {
                    out.put(
                        Cow::Owned(prefix.to_owned()),
                        Field::Text(text.clone().into()),
                    );
                }
                other => {
                    out.put(Cow::Owned(prefix.to_owned()), Field::Json(other.clone()));
                }
            }
        }
        let mut event = AuditEvent {
            fields: Vec::new(),
            buffer: String::new(),
            redacted: false,
        };
        flatten("", value, &mut event);
        event
    }

    /// The event as the JSON object it is written as (before the chain link is added).
    pub fn to_value(&self) -> Value {
        let mut root = Map::new();
        for (path, field) in &self.fields {
            let mut map = &mut root;
            let mut parts = path.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    map.insert(part.to_owned(), field.to_value(&self.buffer));
                    break;
                }
                let next = map
                    .entry(part.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                match next {
                    Value::Object(inner) => map = inner,
                    _ => break,
                }
            }
        }
        Value::Object(root)
    }

    /// The event's line without a chain link (`hash_chain: false`).
    pub fn to_line(&self) -> String {
        let mut out = Vec::with_capacity(512);
        self.write_canonical(&mut out, "");
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the event canonically (keys sorted at every level, no whitespace, strings and
    /// numbers as `serde_json` writes them: the same bytes [`chain::canonical`] gives for
    /// [`AuditEvent::to_value`]). Returns where the field at `mark` starts, if it is present.
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>, mark: &str) -> Option<usize> {
        let mut marked = None;
        out.push(b'{');
        // Fields are in canonical order, so the objects open after one field are its path's
        // parents: going from one path to the next closes the previous path's objects below
        // their shared parents and opens the new path's, in one pass over the two paths.
        let mut previous: &str = "";
        for (path, field) in &self.fields {
            let path: &str = path;
            let shared = shared_parents(previous, path);
            for _ in 0..dots(&previous.as_bytes()[shared..]) {
                out.push(b'}');
            }
            // Something was written in the innermost open object unless this is the first
            // field; an object opened here is empty until its first field.
            let mut comma = !previous.is_empty();
            let mut rest = &path[shared..];
            while let Some(dot) = rest.bytes().position(|b| b == b'.') {
                if comma {
                    out.push(b',');
                }
                write_key(out, &rest[..dot]);
                out.push(b'{');
                comma = false;
                rest = &rest[dot + 1..];
            }
            if comma {
                out.push(b',');
            }
            if path == mark {
                marked = Some(out.len());
            }
            write_key(out, rest);
            write_field(out, field, &self.buffer);
            previous = path;
        }
        for _ in 0..dots(previous.as_bytes()) {
            out.push(b'}');
        }
        out.push(b'}');
        marked
    }
}

/// The length of the parent objects `a` and `b` share: the bytes up to and including the last
/// `.` before they first differ.
fn shared_parents(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let differ = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    b[..differ]
        .iter()
        .rposition(|&byte| byte == b'.')
        .map_or(0, |dot| dot + 1)
}

fn dots(path: &[u8]) -> usize {
    path.iter().filter(|&&b| b == b'.').count()
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    write_str(out, key);
    out.push(b':');
}

/// A JSON string as `serde_json` writes it; most need no escape and are copied as they are.
fn write_str(out: &mut Vec<u8>, text: &str) {
    // Without an early exit the check runs over whole vectors of bytes.
    let plain = text.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if !plain {
        let _ = serde_json::to_writer(&mut *out, text);
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

fn write_field(out: &mut Vec<u8>, field: &Field, buffer: &str) {
    match field {
        Field::Text(_) | Field::Buffered { .. } => {
            write_str(out, field.text_in(buffer).unwrap_or(""));
        }
        Field::Unsigned(n) => {
            out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
        }
        Field::Signed(n) => {
            out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
        }
        Field::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Field::Tag(tag) => {
            out.push(b'[');
            write_str(out, tag);
            out.push(b']');
        }
        Field::Json(value) => chain::canonical(value, out),
    }
}

/// Where events go. `record` never waits on I/O: a sink queues (DESIGN.md §3).
pub trait AuditSink: std::fmt::Debug + Send + Sync + 'static {
    /// Takes one event.
    fn record(&self, event: AuditEvent);

    /// A new event at `time`, as [`AuditEvent::at`] makes it; a sink may hand out the storage
    /// of events it has written.
    fn event_at(
        &self,
        time: SystemTime,
        action: Action,
        outcome: Outcome,
        reason: Option<&'static str>,
    ) -> AuditEvent {
        AuditEvent::at(time, action, outcome, reason)
    }
}

fn push_digits(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = (n / 10u32.pow(place)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// `2026-12-02T22:00:00.123Z`.
#[cfg(test)]
fn rfc3339_millis(time: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339_millis(&mut out, time);
    out
}

fn push_rfc3339_millis(out: &mut String, time: SystemTime) {
    use chrono::{Datelike as _, Timelike as _};
    let t = chrono::DateTime::<chrono::Utc>::from(time);
    let year = match u32::try_from(t.year()) {
        Ok(year) if year <= 9999 => year,
        _ => {
            out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            return;
        }
    };
    // Digit by digit: this runs once per event, and the formatting machinery costs more than
    // the rest of building one.
    push_digits(out, year, 4);
    for (n, width, separator) in [
        (t.month(), 2, '-'),
        (t.day(), 2, '-'),
        (t.hour(), 2, 'T'),
        (t.minute(), 2, ':'),
        (t.second().min(59), 2, ':'),
        (t.timestamp_subsec_millis().min(999), 3, '.'),
    ] {
        out.push(separator);
        push_digits(out, n, width);
    }
    out.push('Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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
            event.to_value(),
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
            Some(&Field::Unsigned(403))
        );
        assert_eq!(event.get("http.nothing"), None);
        // A field replaces what sat inside it or around it.
        event.set("http.request", "x");
        assert_eq!(event.get("http.request.method"), None);
        event.set("http.request.method", "GET");
        assert_eq!(event.get("http.request"), None);
        assert_eq!(event.to_value()["http"]["request"]["method"], "GET");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The one-pass writer gives the generic canonical encoding's bytes, whatever was set
        /// in whatever order.
        #[test]
        fn the_flat_writer_is_canonical(
            sets in proptest::collection::vec(
                (0usize..PATHS.len(), prop_oneof![
                    r#"[a-z"\\\u{e9} /@.]{0,12}"#.prop_map(Field::from),
                    any::<u64>().prop_map(Field::Unsigned),
                    any::<i64>().prop_map(Field::Signed),
                    any::<bool>().prop_map(Field::Bool),
                    Just(Field::Tag("web")),
                    Just(Field::Json(serde_json::json!([{"b": 1, "a": [true, null]}]))),
                ], any::<bool>()),
                0..24,
            )
        ) {
            let mut event = AuditEvent::new(Action::Request, Outcome::Success, None);
            for (path, field, buffered) in sets {
                match field {
                    // Text in the event's buffer, also when it replaces buffered text.
                    Field::Text(text) if buffered => {
                        event.set_text(PATHS[path], &text);
                    }
                    field => {
                        event.put(Cow::Borrowed(PATHS[path]), field);
                    }
                }
            }
            let copy = AuditEvent::new(Action::Request, Outcome::Success, None)
                .copy_from(&event, &["a", "http", "url", "warden"])
                .clone();
            let mut copied = Vec::new();
            copy.write_canonical(&mut copied, "");
            let mut generic_copy = Vec::new();
            chain::canonical(&copy.to_value(), &mut generic_copy);
            prop_assert_eq!(copied, generic_copy);
            for top in ["a", "http", "url", "warden"] {
                prop_assert_eq!(&copy.to_value()[top], &event.to_value()[top]);
            }
            let mut flat = Vec::new();
            event.write_canonical(&mut flat, "");
            let mut generic = Vec::new();
            chain::canonical(&event.to_value(), &mut generic);
            prop_assert_eq!(flat, generic);
        }
    }

    proptest! {
        #[test]
        fn path_order_is_segment_by_segment(a in "[a-c.\\-_@]{0,6}", b in "[a-c.\\-_@]{0,6}") {
            prop_assert_eq!(path_order(&a, &b), a.split('.').cmp(b.split('.')));
        }
    }

    const PATHS: &[&str] = &[
        "a",
        "a.b",
        "a.b.c",
        "a.c",
        "a-b",
        "a_b",
        "b",
        "http.request.method",
        "http.response.status_code",
        "http.request",
        "url.path",
        "warden.chain.prev",
        "warden.chain.seq",
        "warden.route",
        "warden",
        "z.y.x.w",
        "Z",
        "@x",
        "event.zz",
    ];

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000Z"),
        ] {
            assert_eq!(rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs)), text);
        }
        // The hand-written digits agree with chrono's own formatting.
        for step in 0..10_000u64 {
            let time =
                UNIX_EPOCH + Duration::from_millis(step * 987_654_321_017 % 253_402_300_799_000);
            assert_eq!(
                rfc3339_millis(time),
                chrono::DateTime::<chrono::Utc>::from(time)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
        }
    }
}
