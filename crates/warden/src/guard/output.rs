//! Output guards (DESIGN.md §2 step 16): the upstream's answer is inspected before the client
//! reads it, on every route that declares a body format.
//!
//! - JSON answers are buffered (up to `max_bytes`), every string is redacted as a whole value,
//!   and the re-serialized answer gets its new `Content-Length`; a `block` finding answers 502.
//! - Server-sent events are parsed; the text deltas of the OpenAI Chat Completions, OpenAI
//!   Responses and Anthropic Messages stream formats go through one [`TextRedactor`] per
//!   content stream (a choice's content, a tool call's arguments, a content block), so a value
//!   split over any number of events is still caught; events are re-emitted well formed, and
//!   what a redactor still holds when its stream ends is sent in one more delta event of the
//!   same shape before the event that ends it. Other JSON events have their strings redacted
//!   as whole values; non-JSON `data` is one more text stream. A finding to block, an answer
//!   over `max_output_chars` or an event over `max_bytes` ends the stream with a terminal
//!   error event of the stream's format, and the upstream request is closed.
//! - Other `text/*` bodies are one text stream (a block ends the body with an error: plain text
//!   has no terminal event). Anything else cannot be inspected and is refused (fail closed).
//!
//! `logprobs` are removed from answers while a guard redacts: they repeat the text token by
//! token, past any redaction.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::stream::{Blocked, Scanner, TextRedactor};
use crate::body::format::Format;

/// A route's output guard.
#[derive(Clone, Debug)]
pub struct OutputGuard {
    /// The secret and PII detectors with their output actions (absent when both are off).
    pub scanner: Option<Arc<Scanner>>,
    /// Most Unicode scalar values of answer text (`max_output_chars`).
    pub max_chars: Option<usize>,
    /// Most bytes of a buffered JSON answer, and of one event of a stream.
    pub max_bytes: usize,
}

/// Why an answer was stopped.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A finding of a family whose action is `block`.
    #[error("{0}")]
    Blocked(#[from] Blocked),
    /// The answer's text passed `max_output_chars`.
    #[error("the answer has more than {0} characters")]
    TooLong(usize),
    /// A JSON answer or one event passed `max_bytes`.
    #[error("the answer or one of its events is larger than {0} bytes")]
    TooLarge(usize),
    /// The answer is not what its media type says.
    #[error("the answer cannot be inspected: {0}")]
    Invalid(&'static str),
}

impl OutputError {
    /// The stable code of terminal error events.
    pub fn code(&self) -> &'static str {
        match self {
            OutputError::Blocked(_) => "output_blocked",
            OutputError::TooLong(_) => "output_too_long",
            OutputError::TooLarge(_) | OutputError::Invalid(_) => "output_uninspectable",
        }
    }
}

/// Keys whose strings are opaque tokens, not text: never rewritten.
const OPAQUE: &[&str] = &["id", "signature", "encrypted_content", "system_fingerprint"];

impl OutputGuard {
    /// Whether the guard does anything.
    pub fn is_active(&self) -> bool {
        self.scanner.is_some() || self.max_chars.is_some()
    }

    /// A buffered JSON answer: the bytes to send instead, or `None` to send it unchanged.
    pub fn filter_json(&self, bytes: &[u8]) -> Result<Option<Vec<u8>>, OutputError> {
        if bytes.len() > self.max_bytes {
            return Err(OutputError::TooLarge(self.max_bytes));
        }
        let mut value: Value = serde_json::from_slice(bytes)
            .map_err(|_| OutputError::Invalid("the JSON answer does not parse"))?;
        let mut chars = 0;
        let changed = self.walk(&mut value, &mut chars)?;
        // Serializing a parsed Value cannot fail.
        Ok(changed.then(|| serde_json::to_vec(&value).unwrap_or_default()))
    }

    /// Redacts every string of `value` as a whole value and counts its characters; whether
    /// anything changed.
    fn walk(&self, value: &mut Value, chars: &mut usize) -> Result<bool, OutputError> {
        match value {
            Value::String(text) => {
                self.count(chars, text)?;
                match self.scanner.as_ref().map(|s| s.redact(text)).transpose()? {
                    Some(Some(redacted)) => {
                        *text = redacted;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
            Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= self.walk(item, chars)?;
                }
                Ok(changed)
            }
            Value::Object(members) => self.walk_members(members, chars),
            _ => Ok(false),
        }
    }

    fn walk_members(
        &self,
        members: &mut Map<String, Value>,
        chars: &mut usize,
    ) -> Result<bool, OutputError> {
        let mut changed = false;
        for (key, member) in members.iter_mut() {
            if key == "logprobs" && self.scanner.is_some() && !member.is_null() {
                *member = Value::Null;
                changed = true;
            } else if !(OPAQUE.contains(&key.as_str()) && member.is_string()) {
                changed |= self.walk(member, chars)?;
            }
        }
        Ok(changed)
    }

    fn count(&self, chars: &mut usize, text: &str) -> Result<(), OutputError> {
        if let Some(max) = self.max_chars {
            *chars += text.chars().count();
            if *chars > max {
                return Err(OutputError::TooLong(max));
            }
        }
        Ok(())
    }
}

/// The stream format a terminal event is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
}

impl Dialect {
    fn of(format: &Format) -> Dialect {
        match format {
            Format::AnthropicMessages => Dialect::Anthropic,
            Format::OpenAiResponses => Dialect::OpenAiResponses,
            Format::OpenAiChat | Format::Json { .. } => Dialect::OpenAiChat,
        }
    }
}

/// One content stream of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    /// `choices[choice].delta.<field>`.
    Chat { choice: u64, field: &'static str },
    /// `choices[choice].delta.tool_calls[call].function.arguments`.
    ChatTool { choice: u64, call: u64 },
    /// Anthropic `content_block_delta` of block `index`; the delta type and its text field.
    Block {
        index: u64,
        kind: &'static str,
        field: &'static str,
    },
    /// An OpenAI Responses `*.delta` event type at these indices.
    Responses {
        kind: String,
        output: u64,
        part: u64,
    },
    /// `data` that is not JSON.
    Raw,
}

struct Stream {
    key: Key,
    /// Redacts this stream's text (absent when only a length limit applies).
    redactor: Option<TextRedactor>,
    /// For OpenAI Responses: the last delta event, re-sent with the held text at the end.
    template: Option<(Option<String>, Value)>,
}

/// One parsed event: its lines other than `data`, in order, and its data.
#[derive(Debug, Default)]
struct Event {
    lines: Vec<String>,
    data: Option<String>,
    size: usize,
}

/// Text delta fields of an OpenAI chat delta.
const CHAT_FIELDS: &[&str] = &["content", "refusal", "reasoning_content", "reasoning"];

/// Filters a `text/event-stream` answer.
pub struct SseFilter {
    guard: Arc<OutputGuard>,
    dialect: Dialect,
    /// Bytes of an unfinished line.
    line: Vec<u8>,
    /// A `\r` ended the last line: a `\n` first in the next chunk belongs to it.
    after_cr: bool,
    event: Event,
    streams: Vec<Stream>,
    chars: usize,
}

impl SseFilter {
    /// A filter for an answer to a request of `format`.
    pub fn new(guard: Arc<OutputGuard>, format: &Format) -> SseFilter {
        SseFilter {
            guard,
            dialect: Dialect::of(format),
            line: Vec::new(),
            after_cr: false,
            event: Event::default(),
            streams: Vec::new(),
            chars: 0,
        }
    }

    /// Reads a chunk of the answer; the bytes to send now.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, OutputError> {
        let mut out = BytesMut::new();
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            let crlf = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if crlf {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            let line = std::mem::take(&mut self.line);
            self.on_line(&line, &mut out)?;
        }
        self.line.extend_from_slice(rest);
        if self.line.len() + self.event.size > self.guard.max_bytes {
            return Err(OutputError::TooLarge(self.guard.max_bytes));
        }
        Ok(out.freeze())
    }

    /// The answer ended: what the streams still hold. An unfinished event is dropped, as a
    /// client would drop it.
    pub fn finish(&mut self) -> Result<Bytes, OutputError> {
        let mut out = BytesMut::new();
        self.flush(&mut out, |_| true)?;
        Ok(out.freeze())
    }

    /// The well-formed last event of a stopped answer, in the stream's format.
    pub fn terminal(&self, error: &OutputError) -> Bytes {
        let message = "The answer was stopped by the gateway's content policy.";
        let code = error.code();
        let (event, data) = match self.dialect {
            Dialect::OpenAiChat => (
                None,
                serde_json::json!({"error": {"message": message, "type": "warden_output_guard", "code": code}}),
            ),
            Dialect::Anthropic => (
                Some("error"),
                serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            ),
            Dialect::OpenAiResponses => (
                Some("error"),
                serde_json::json!({"type": "error", "code": code, "message": message, "param": null}),
            ),
        };
        let mut out = BytesMut::new();
        if let Some(event) = event {
            out.put_slice(format!("event: {event}\n").as_bytes());
        }
        put_data(&mut out, &data.to_string());
        out.freeze()
    }

    fn on_line(&mut self, line: &[u8], out: &mut BytesMut) -> Result<(), OutputError> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if !event.lines.is_empty() || event.data.is_some() {
                self.on_event(event, out)?;
            }
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let line = line.strip_prefix('\u{feff}').unwrap_or(&line);
        self.event.size += line.len() + 1;
        if self.event.size > self.guard.max_bytes {
            return Err(OutputError::TooLarge(self.guard.max_bytes));
        }
        if let Some(value) = line.strip_prefix("data")
            && (value.is_empty() || value.starts_with(':'))
        {
            let value = value.strip_prefix(':').unwrap_or(value);
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut self.event.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.event.data = Some(value.to_owned()),
            }
            return Ok(());
        }
        self.event.lines.push(line.to_owned());
        Ok(())
    }

    fn on_event(&mut self, event: Event, out: &mut BytesMut) -> Result<(), OutputError> {
        let Some(data) = event.data else {
            put_lines(out, &event.lines);
            out.put_u8(b'\n');
            return Ok(());
        };
        if data.trim() == "[DONE]" {
            self.flush(out, |_| true)?;
            put_lines(out, &event.lines);
            put_data(out, &data);
            return Ok(());
        }
        let name = event_name(&event.lines);
        let Ok(mut value) = serde_json::from_str::<Value>(&data) else {
            let text = self.push(Key::Raw, &data)?;
            put_lines(out, &event.lines);
            put_data(out, &text);
            return Ok(());
        };
        let kind = value.get("type").and_then(Value::as_str).map(str::to_owned);
        if value.get("choices").is_some_and(Value::is_array) {
            self.dialect = Dialect::OpenAiChat;
            self.on_chat(&mut value)?;
        } else if let Some(kind) = kind.as_deref() {
            if kind.starts_with("response.") {
                self.dialect = Dialect::OpenAiResponses;
                self.on_responses(kind, name.as_deref(), &mut value, out)?;
            } else if ANTHROPIC_EVENTS.contains(&kind) {
                self.dialect = Dialect::Anthropic;
                self.on_anthropic(kind, &mut value, out)?;
            } else {
                self.whole(&mut value)?;
            }
        } else {
            self.whole(&mut value)?;
        }
        put_lines(out, &event.lines);
        put_data(out, &value.to_string());
        Ok(())
    }

    fn on_chat(&mut self, chunk: &mut Value) -> Result<(), OutputError> {
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        for (position, choice) in choices.iter_mut().enumerate() {
            let index = index_of(choice, "index", position);
            if let Some(object) = choice.as_object_mut() {
                // Token log-probabilities repeat the text past any redaction.
                if self.guard.scanner.is_some() && object.contains_key("logprobs") {
                    object.insert("logprobs".into(), Value::Null);
                }
            }
            let finished = choice
                .get("finish_reason")
                .is_some_and(|reason| !reason.is_null());
            let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
                continue;
            };
            for &field in CHAT_FIELDS {
                if let Some(Value::String(text)) = delta.get_mut(field) {
                    *text = self.push(
                        Key::Chat {
                            choice: index,
                            field,
                        },
                        text,
                    )?;
                }
            }
            if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                for (position, call) in calls.iter_mut().enumerate() {
                    let call_index = index_of(call, "index", position);
                    if let Some(Value::String(text)) = call.pointer_mut("/function/arguments") {
                        let key = Key::ChatTool {
                            choice: index,
                            call: call_index,
                        };
                        *text = self.push(key, text)?;
                    }
                }
            }
            if finished {
                // The choice ends here: its held text goes into this chunk's delta.
                for (key, text) in self.take(|key| key.choice() == Some(index))? {
                    append_chat(delta, &key, &text);
                }
            }
        }
        Ok(())
    }

    fn on_anthropic(
        &mut self,
        kind: &str,
        event: &mut Value,
        out: &mut BytesMut,
    ) -> Result<(), OutputError> {
        let index = index_of(event, "index", 0);
        match kind {
            "content_block_delta" => {
                let delta_type = event
                    .pointer("/delta/type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(&(delta_kind, field)) =
                    BLOCK_DELTAS.iter().find(|(kind, _)| *kind == delta_type)
                else {
                    return self.whole(event);
                };
                if let Some(Value::String(text)) =
                    event.get_mut("delta").and_then(|d| d.get_mut(field))
                {
                    let key = Key::Block {
                        index,
                        kind: delta_kind,
                        field,
                    };
                    *text = self.push(key, text)?;
                }
                Ok(())
            }
            "content_block_stop" => self.flush(
                out,
                |key| matches!(key, Key::Block { index: i, .. } if *i == index),
            ),
            "message_stop" | "message_delta" => {
                self.flush(out, |_| true)?;
                self.whole(event)
            }
            _ => self.whole(event),
        }
    }

    fn on_responses(
        &mut self,
        kind: &str,
        name: Option<&str>,
        event: &mut Value,
        out: &mut BytesMut,
    ) -> Result<(), OutputError> {
        let output = index_of(event, "output_index", 0);
        let part = event
            .get("content_index")
            .or_else(|| event.get("summary_index"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if let Some(object) = event.as_object_mut()
            && self.guard.scanner.is_some()
            && object.contains_key("logprobs")
        {
            object.insert("logprobs".into(), Value::Null);
        }
        if kind.ends_with(".delta")
            && let Some(Value::String(text)) = event.get_mut("delta")
        {
            let key = Key::Responses {
                kind: kind.to_owned(),
                output,
                part,
            };
            *text = self.push(key.clone(), text)?;
            let template = (name.map(str::to_owned), event.clone());
            if let Some(stream) = self.streams.iter_mut().find(|s| s.key == key) {
                stream.template = Some(template);
            }
            return Ok(());
        }
        if let Some(stem) = kind.strip_suffix(".done") {
            let delta = format!("{stem}.delta");
            self.flush(out, |key| {
                matches!(key, Key::Responses { kind, output: o, part: p }
                    if *kind == delta && *o == output && *p == part)
            })?;
        } else if matches!(
            kind,
            "response.completed" | "response.failed" | "response.incomplete"
        ) {
            self.flush(out, |_| true)?;
        }
        self.whole(event)
    }

    /// Redacts every string of a non-delta event as a whole value.
    fn whole(&mut self, value: &mut Value) -> Result<(), OutputError> {
        let mut chars = self.chars;
        self.guard.walk(value, &mut chars)?;
        self.chars = chars;
        Ok(())
    }

    /// Adds a piece to a content stream; the text to send now.
    fn push(&mut self, key: Key, piece: &str) -> Result<String, OutputError> {
        self.guard.count(&mut self.chars, piece)?;
        let stream = match self.streams.iter().position(|s| s.key == key) {
            Some(at) => &mut self.streams[at],
            None => {
                let redactor = self.guard.scanner.as_ref().map(|s| s.redactor());
                self.streams.push(Stream {
                    key,
                    redactor,
                    template: None,
                });
                let last = self.streams.len() - 1;
                &mut self.streams[last]
            }
        };
        match &mut stream.redactor {
            Some(redactor) => Ok(redactor.push(piece)?),
            None => Ok(piece.to_owned()),
        }
    }

    /// Ends the streams `which` selects: their keys, templates and held text.
    fn take(&mut self, which: impl Fn(&Key) -> bool) -> Result<Vec<(Key, String)>, OutputError> {
        Ok(self
            .take_streams(which)?
            .into_iter()
            .map(|(key, _, text)| (key, text))
            .collect())
    }

    #[allow(clippy::type_complexity)]
    fn take_streams(
        &mut self,
        which: impl Fn(&Key) -> bool,
    ) -> Result<Vec<(Key, Option<(Option<String>, Value)>, String)>, OutputError> {
        let mut ended = Vec::new();
        let mut kept = Vec::with_capacity(self.streams.len());
        for mut stream in std::mem::take(&mut self.streams) {
            if !which(&stream.key) {
                kept.push(stream);
                continue;
            }
            let text = match &mut stream.redactor {
                Some(redactor) => redactor.finish()?,
                None => String::new(),
            };
            if !text.is_empty() {
                ended.push((stream.key, stream.template, text));
            }
        }
        self.streams = kept;
        Ok(ended)
    }

    /// Ends the streams `which` selects, sending what they hold as delta events of their own
    /// shape.
    fn flush(
        &mut self,
        out: &mut BytesMut,
        which: impl Fn(&Key) -> bool,
    ) -> Result<(), OutputError> {
        for (key, template, text) in self.take_streams(which)? {
            match key {
                Key::Chat { .. } | Key::ChatTool { .. } => {
                    let mut delta = Map::new();
                    append_chat(&mut delta, &key, &text);
                    let choice = key.choice().unwrap_or(0);
                    let chunk = serde_json::json!({
                        "object": "chat.completion.chunk",
                        "choices": [{"index": choice, "delta": delta, "finish_reason": null}],
                    });
                    put_data(out, &chunk.to_string());
                }
                Key::Block { index, kind, field } => {
                    let event = serde_json::json!({
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": kind, field: text},
                    });
                    out.put_slice(b"event: content_block_delta\n");
                    put_data(out, &event.to_string());
                }
                Key::Responses { kind, output, .. } => {
                    let (name, mut event) = template.unwrap_or_else(|| {
                        (
                            Some(kind.clone()),
                            serde_json::json!({"type": kind, "output_index": output}),
                        )
                    });
                    event["delta"] = Value::String(text);
                    if let Some(name) = name {
                        out.put_slice(format!("event: {name}\n").as_bytes());
                    }
                    put_data(out, &event.to_string());
                }
                Key::Raw => put_data(out, &text),
            }
        }
        Ok(())
    }
}

impl Key {
    fn choice(&self) -> Option<u64> {
        match self {
            Key::Chat { choice, .. } | Key::ChatTool { choice, .. } => Some(*choice),
            _ => None,
        }
    }
}

/// Anthropic Messages stream event types.
const ANTHROPIC_EVENTS: &[&str] = &[
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "ping",
];

/// Anthropic delta types that carry text, and their text field.
const BLOCK_DELTAS: &[(&str, &str)] = &[
    ("text_delta", "text"),
    ("input_json_delta", "partial_json"),
    ("thinking_delta", "thinking"),
];

/// Adds held text to an OpenAI chat delta, creating the field or tool call it belongs to.
fn append_chat(delta: &mut Map<String, Value>, key: &Key, text: &str) {
    match key {
        Key::Chat { field, .. } => match delta.get_mut(*field) {
            Some(Value::String(existing)) => existing.push_str(text),
            _ => {
                delta.insert((*field).into(), Value::String(text.to_owned()));
            }
        },
        Key::ChatTool { call, .. } => {
            let calls = delta
                .entry("tool_calls")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(calls) = calls {
                let position = calls
                    .iter()
                    .position(|c| c.get("index").and_then(Value::as_u64) == Some(*call));
                match position.and_then(|p| calls[p].pointer_mut("/function/arguments")) {
                    Some(Value::String(existing)) => existing.push_str(text),
                    _ => calls.push(serde_json::json!({
                        "index": call,
                        "function": {"arguments": text},
                    })),
                }
            }
        }
        _ => {}
    }
}

fn index_of(value: &Value, field: &str, default: usize) -> u64 {
    value
        .get(field)
        .and_then(Value::as_u64)
        .unwrap_or(default as u64)
}

fn event_name(lines: &[String]) -> Option<String> {
    lines.iter().rev().find_map(|line| {
        let value = line.strip_prefix("event:")?;
        Some(value.strip_prefix(' ').unwrap_or(value).to_owned())
    })
}

fn put_lines(out: &mut BytesMut, lines: &[String]) {
    for line in lines {
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
}

/// `data` lines for `text` (one per line of it) and the blank line that ends the event.
fn put_data(out: &mut BytesMut, text: &str) {
    for line in text.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// Filters a plain-text (`text/*`) answer as one text stream.
pub struct TextFilter {
    guard: Arc<OutputGuard>,
    redactor: Option<TextRedactor>,
    /// The first bytes of a UTF-8 sequence the next chunk completes.
    partial: Vec<u8>,
    chars: usize,
}

impl TextFilter {
    /// A filter for one plain-text answer.
    pub fn new(guard: Arc<OutputGuard>) -> TextFilter {
        let redactor = guard.scanner.as_ref().map(|s| s.redactor());
        TextFilter {
            guard,
            redactor,
            partial: Vec::new(),
            chars: 0,
        }
    }

    /// Reads a chunk; the bytes to send now.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, OutputError> {
        self.partial.extend_from_slice(chunk);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(text) => text.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => return Err(OutputError::Invalid("the text answer is not UTF-8")),
        };
        let rest = self.partial.split_off(valid);
        let text = String::from_utf8(std::mem::replace(&mut self.partial, rest))
            .map_err(|_| OutputError::Invalid("the text answer is not UTF-8"))?;
        self.guard.count(&mut self.chars, &text)?;
        Ok(match &mut self.redactor {
            Some(redactor) => Bytes::from(redactor.push(&text)?),
            None => Bytes::from(text),
        })
    }

    /// The answer ended: what is still held.
    pub fn finish(&mut self) -> Result<Bytes, OutputError> {
        if !self.partial.is_empty() {
            return Err(OutputError::Invalid(
                "the text answer ends inside a character",
            ));
        }
        Ok(match &mut self.redactor {
            Some(redactor) => Bytes::from(redactor.finish()?),
            None => Bytes::new(),
        })
    }
}

enum Filter {
    Sse(SseFilter),
    Text(TextFilter),
}

/// A streamed answer read through its filter.
pub struct FilteredBody {
    inner: crate::body::Body,
    filter: Filter,
    done: bool,
    request_id: Option<String>,
}

impl FilteredBody {
    /// Reads `inner` as server-sent events.
    pub fn sse(
        inner: crate::body::Body,
        guard: Arc<OutputGuard>,
        format: &Format,
        request_id: Option<String>,
    ) -> Self {
        FilteredBody {
            inner,
            filter: Filter::Sse(SseFilter::new(guard, format)),
            done: false,
            request_id,
        }
    }

    /// Reads `inner` as plain text.
    pub fn text(
        inner: crate::body::Body,
        guard: Arc<OutputGuard>,
        request_id: Option<String>,
    ) -> Self {
        FilteredBody {
            inner,
            filter: Filter::Text(TextFilter::new(guard)),
            done: false,
            request_id,
        }
    }

    /// Stops the answer: closes the upstream request and gives the client the terminal event
    /// (server-sent events) or an error that aborts the body (plain text has no terminal event).
    fn stop(
        &mut self,
        error: OutputError,
    ) -> Option<Result<http_body::Frame<Bytes>, crate::body::BoxError>> {
        self.done = true;
        self.inner = crate::body::empty();
        tracing::info!(
            target: "warden::guard",
            request_id = self.request_id.as_deref(),
            code = error.code(),
            reason = %error,
            "answer stopped"
        );
        metrics::counter!("warden_output_stopped_total", "code" => error.code()).increment(1);
        match &self.filter {
            Filter::Sse(filter) => Some(Ok(http_body::Frame::data(filter.terminal(&error)))),
            Filter::Text(_) => Some(Err(Box::new(error))),
        }
    }
}

impl http_body::Body for FilteredBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(frame) => frame,
            };
            let result = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => match &mut this.filter {
                        Filter::Sse(filter) => filter.feed(&data),
                        Filter::Text(filter) => filter.feed(&data),
                    },
                    // Trailers carry no text.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                // The upstream failed mid-answer: what is held was never inspected to the end,
                // so it is not sent; the client's body ends with the error.
                Some(Err(error)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.done = true;
                    match &mut this.filter {
                        Filter::Sse(filter) => filter.finish(),
                        Filter::Text(filter) => filter.finish(),
                    }
                }
            };
            match result {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Poll::Ready(Some(Ok(http_body::Frame::data(bytes)))),
                Err(error) => return Poll::Ready(this.stop(error)),
            }
        }
    }
}
