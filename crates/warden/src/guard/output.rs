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
//! With external classifiers of answers, a JSON answer is judged whole after redaction, and a
//! stream a segment at a time: the filtered bytes of a segment are held until its verdict, so
//! no text reaches the client unjudged.
//!
//! `logprobs` are removed from answers while a guard redacts: they repeat the text token by
//! token, past any redaction.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::external::{Classify, Judgement, judge_all};
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
    /// External classifiers of answers.
    pub classifiers: Vec<Arc<dyn Classify>>,
    /// Characters of streamed text an external classifier judges at a time (held meanwhile).
    pub segment_chars: usize,
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
    /// An external classifier flagged the answer (its name and categories).
    #[error("classifier {0} flagged the answer ({1})")]
    Flagged(String, String),
    /// An external classifier gave no verdict and its `on_error` blocks.
    #[error("classifier {0} gave no verdict: {1}")]
    Unjudged(String, String),
}

impl From<Judgement> for Result<(), OutputError> {
    fn from(judgement: Judgement) -> Self {
        match judgement {
            Judgement::Pass => Ok(()),
            Judgement::Flagged { name, categories } => {
                Err(OutputError::Flagged(name, categories.join(",")))
            }
            Judgement::Failed { name, reason } => Err(OutputError::Unjudged(name, reason)),
        }
    }
}

impl OutputError {
    /// The stable code of terminal error events.
    pub fn code(&self) -> &'static str {
        match self {
            OutputError::Blocked(_) => "output_blocked",
            OutputError::TooLong(_) => "output_too_long",
            OutputError::TooLarge(_) | OutputError::Invalid(_) => "output_uninspectable",
            OutputError::Flagged(..) => "output_flagged",
            OutputError::Unjudged(..) => "guard_unavailable",
        }
    }
}

/// Keys whose strings are opaque tokens or encoded media, not text: never rewritten (a
/// placeholder inside base64 audio or an image would only corrupt it).
const OPAQUE: &[&str] = &[
    "id",
    "signature",
    "encrypted_content",
    "system_fingerprint",
    "b64_json",
];

impl OutputGuard {
    /// Whether the guard does anything.
    pub fn is_active(&self) -> bool {
        self.scanner.is_some() || self.max_chars.is_some() || !self.classifiers.is_empty()
    }

    /// The texts of an inspected JSON answer, for the external classifiers: every string but
    /// opaque tokens and base64 audio.
    pub fn texts_of(value: &Value) -> Vec<&str> {
        fn collect<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
            match value {
                Value::String(text) if !text.is_empty() => out.push(text),
                Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
                Value::Object(members) => {
                    for (key, member) in members {
                        match member {
                            Value::Object(audio) if key == "audio" => {
                                if let Some(transcript) = audio.get("transcript") {
                                    collect(transcript, out);
                                }
                            }
                            Value::String(_) if OPAQUE.contains(&key.as_str()) => {}
                            _ => collect(member, out),
                        }
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        collect(value, &mut out);
        out
    }

    /// A buffered JSON answer, inspected: the document to send. Always re-serialized by the
    /// caller: the upstream's own bytes could hold what the parse did not keep (of a
    /// duplicated key, a client may read the first value where the parse kept the last).
    pub fn filter_json(&self, bytes: &[u8]) -> Result<Value, OutputError> {
        if bytes.len() > self.max_bytes {
            return Err(OutputError::TooLarge(self.max_bytes));
        }
        let mut value: Value = serde_json::from_slice(bytes)
            .map_err(|_| OutputError::Invalid("the JSON answer does not parse"))?;
        let mut chars = 0;
        self.walk(&mut value, Some(&mut chars))?;
        Ok(value)
    }

    /// Redacts every string of `value` as a whole value and counts its characters into
    /// `chars`, if given.
    fn walk(&self, value: &mut Value, mut chars: Option<&mut usize>) -> Result<(), OutputError> {
        match value {
            Value::String(text) => {
                if let Some(chars) = chars {
                    self.count(chars, text)?;
                }
                if let Some(redacted) = self
                    .scanner
                    .as_ref()
                    .map(|s| s.redact(text))
                    .transpose()?
                    .flatten()
                {
                    *text = redacted;
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, chars.as_deref_mut())?;
                }
            }
            Value::Object(members) => {
                for (key, member) in members.iter_mut() {
                    match member {
                        // Token log-probabilities repeat the text past any redaction.
                        _ if key == "logprobs" && self.scanner.is_some() => *member = Value::Null,
                        // Its `data` is base64 audio; its `transcript` is text.
                        Value::Object(audio) if key == "audio" => {
                            for (field, value) in audio.iter_mut() {
                                if field != "data" {
                                    self.walk(value, chars.as_deref_mut())?;
                                }
                            }
                        }
                        Value::String(_) if OPAQUE.contains(&key.as_str()) => {}
                        _ => self.walk(member, chars.as_deref_mut())?,
                    }
                }
            }
            _ => {}
        }
        Ok(())
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
    /// For OpenAI Responses: its first delta event, re-sent with the held text at the end.
    template: Option<Template>,
}

/// An event's name and data, to send again with other text.
type Template = (Option<String>, Value);

/// One parsed event: its lines other than `data`, in order, and its data.
#[derive(Debug, Default)]
struct Event {
    lines: Vec<String>,
    data: Option<String>,
    size: usize,
}

/// Most content streams one answer may open (choices × fields, blocks, output parts).
const MAX_STREAMS: usize = 256;

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
    /// Delta text released since the last [`SseFilter::take_released`], kept only when
    /// classifiers judge the answer.
    released: Option<String>,
}

impl SseFilter {
    /// A filter for an answer to a request of `format`.
    pub fn new(guard: Arc<OutputGuard>, format: &Format) -> SseFilter {
        let released = (!guard.classifiers.is_empty()).then(String::new);
        SseFilter {
            guard,
            dialect: Dialect::of(format),
            line: Vec::new(),
            after_cr: false,
            event: Event::default(),
            streams: Vec::new(),
            chars: 0,
            released,
        }
    }

    /// The delta text released since the last call (classifiers only).
    pub fn take_released(&mut self) -> String {
        self.released
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn note_released(&mut self, text: &str) {
        if let Some(released) = &mut self.released {
            released.push_str(text);
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
        // Names, ids and comments are text a client receives too.
        let mut lines = event.lines;
        for line in &mut lines {
            if let Some(redacted) = self.redact_whole(line)? {
                *line = redacted;
            }
        }
        let Some(data) = event.data else {
            put_lines(out, &lines);
            out.put_u8(b'\n');
            return Ok(());
        };
        if data.trim() == "[DONE]" {
            self.flush(out, |_| true)?;
            put_lines(out, &lines);
            put_data(out, &data);
            return Ok(());
        }
        let name = event_name(&lines);
        let Ok(mut value) = serde_json::from_str::<Value>(&data) else {
            let text = self.push(Key::Raw, &data)?;
            put_lines(out, &lines);
            put_data(out, &text);
            return Ok(());
        };
        let kind = value.get("type").and_then(Value::as_str).map(str::to_owned);
        let streamed = if value.get("choices").is_some_and(Value::is_array) {
            self.dialect = Dialect::OpenAiChat;
            self.on_chat(&mut value)?
        } else if let Some(kind) = kind.as_deref()
            && kind.starts_with("response.")
        {
            self.dialect = Dialect::OpenAiResponses;
            self.on_responses(kind, name.as_deref(), &mut value, out)?
        } else if let Some(kind) = kind.as_deref()
            && ANTHROPIC_EVENTS.contains(&kind)
        {
            self.dialect = Dialect::Anthropic;
            self.on_anthropic(kind, &mut value, out)?
        } else {
            Vec::new()
        };
        if self.streams.len() > MAX_STREAMS {
            return Err(OutputError::Invalid(
                "too many content streams in one answer",
            ));
        }
        // Every other string is redacted as a whole value; the stream fields, released by
        // their redactors, are set aside meanwhile (a piece alone is not the text it is part
        // of, and redacting it again could differ from the whole answer's redaction).
        let set_aside: Vec<(String, Value)> = streamed
            .into_iter()
            .filter_map(|pointer| {
                let slot = value.pointer_mut(&pointer)?;
                Some((pointer, std::mem::take(slot)))
            })
            .collect();
        self.whole(&mut value)?;
        for (pointer, text) in set_aside {
            if let Some(slot) = value.pointer_mut(&pointer) {
                *slot = text;
            }
        }
        put_lines(out, &lines);
        put_data(out, &value.to_string());
        Ok(())
    }

    fn redact_whole(&self, text: &str) -> Result<Option<String>, OutputError> {
        match &self.guard.scanner {
            Some(scanner) => Ok(scanner.redact(text)?),
            None => Ok(None),
        }
    }

    /// An OpenAI chat chunk; the pointers of the stream fields it now carries.
    fn on_chat(&mut self, chunk: &mut Value) -> Result<Vec<String>, OutputError> {
        let mut streamed = Vec::new();
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(streamed);
        };
        for (position, choice) in choices.iter_mut().enumerate() {
            let index = index_of(choice, "index", position);
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
            for &field in CHAT_FIELDS {
                if delta.get(field).is_some_and(Value::is_string) {
                    streamed.push(format!("/choices/{position}/delta/{field}"));
                }
            }
            if let Some(Value::Array(calls)) = delta.get("tool_calls") {
                for (j, call) in calls.iter().enumerate() {
                    if call
                        .pointer("/function/arguments")
                        .is_some_and(Value::is_string)
                    {
                        streamed.push(format!(
                            "/choices/{position}/delta/tool_calls/{j}/function/arguments"
                        ));
                    }
                }
            }
        }
        Ok(streamed)
    }

    /// An Anthropic Messages event; the pointer of the stream field it carries, if any.
    fn on_anthropic(
        &mut self,
        kind: &str,
        event: &mut Value,
        out: &mut BytesMut,
    ) -> Result<Vec<String>, OutputError> {
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
                    return Ok(Vec::new());
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
                    return Ok(vec![format!("/delta/{field}")]);
                }
                Ok(Vec::new())
            }
            "content_block_stop" => {
                self.flush(
                    out,
                    |key| matches!(key, Key::Block { index: i, .. } if *i == index),
                )?;
                Ok(Vec::new())
            }
            "message_stop" | "message_delta" => {
                self.flush(out, |_| true)?;
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    fn on_responses(
        &mut self,
        kind: &str,
        name: Option<&str>,
        event: &mut Value,
        out: &mut BytesMut,
    ) -> Result<Vec<String>, OutputError> {
        let output = index_of(event, "output_index", 0);
        let part = event
            .get("content_index")
            .or_else(|| event.get("summary_index"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        // `response.audio.delta` carries base64 audio, not text: set aside, untouched.
        if kind == "response.audio.delta" {
            return Ok(vec!["/delta".to_owned()]);
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
            if let Some(stream) = self.streams.iter_mut().find(|s| s.key == key)
                && stream.template.is_none()
            {
                stream.template = Some((name.map(str::to_owned), event.clone()));
            }
            return Ok(vec!["/delta".to_owned()]);
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
        Ok(Vec::new())
    }

    /// Redacts every string of an event as a whole value. Not counted toward
    /// `max_output_chars`: only deltas are (done and completed events repeat their text).
    fn whole(&mut self, value: &mut Value) -> Result<(), OutputError> {
        self.guard.walk(value, None)
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
        let released = match &mut stream.redactor {
            Some(redactor) => redactor.push(piece)?,
            None => piece.to_owned(),
        };
        self.note_released(&released);
        Ok(released)
    }

    /// Ends the streams `which` selects: their keys, templates and held text.
    fn take(&mut self, which: impl Fn(&Key) -> bool) -> Result<Vec<(Key, String)>, OutputError> {
        Ok(self
            .take_streams(which)?
            .into_iter()
            .map(|(key, _, text)| (key, text))
            .collect())
    }

    fn take_streams(
        &mut self,
        which: impl Fn(&Key) -> bool,
    ) -> Result<Vec<(Key, Option<Template>, String)>, OutputError> {
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
                if let Some(released) = &mut self.released {
                    released.push_str(&text);
                }
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
    /// Text released since the last [`TextFilter::take_released`] (classifiers only).
    released: Option<String>,
    /// The first bytes of a UTF-8 sequence the next chunk completes.
    partial: Vec<u8>,
    chars: usize,
}

impl TextFilter {
    /// A filter for one plain-text answer.
    pub fn new(guard: Arc<OutputGuard>) -> TextFilter {
        let redactor = guard.scanner.as_ref().map(|s| s.redactor());
        let released = (!guard.classifiers.is_empty()).then(String::new);
        TextFilter {
            guard,
            redactor,
            released,
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
        let out = match &mut self.redactor {
            Some(redactor) => redactor.push(&text)?,
            None => text,
        };
        Ok(self.note_released(out))
    }

    /// The text released since the last call (classifiers only).
    pub fn take_released(&mut self) -> String {
        self.released
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn note_released(&mut self, text: String) -> Bytes {
        if let Some(released) = &mut self.released {
            released.push_str(&text);
        }
        Bytes::from(text)
    }

    /// The answer ended: what is still held.
    pub fn finish(&mut self) -> Result<Bytes, OutputError> {
        if !self.partial.is_empty() {
            return Err(OutputError::Invalid(
                "the text answer ends inside a character",
            ));
        }
        let out = match &mut self.redactor {
            Some(redactor) => redactor.finish()?,
            None => String::new(),
        };
        Ok(self.note_released(out))
    }
}

enum Filter {
    Sse(SseFilter),
    Text(TextFilter),
}

impl Filter {
    fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, OutputError> {
        match self {
            Filter::Sse(filter) => filter.feed(chunk),
            Filter::Text(filter) => filter.feed(chunk),
        }
    }

    fn finish(&mut self) -> Result<Bytes, OutputError> {
        match self {
            Filter::Sse(filter) => filter.finish(),
            Filter::Text(filter) => filter.finish(),
        }
    }

    fn take_released(&mut self) -> String {
        match self {
            Filter::Sse(filter) => filter.take_released(),
            Filter::Text(filter) => filter.take_released(),
        }
    }
}

type Verdict = Pin<Box<dyn Future<Output = Judgement> + Send>>;

/// The characters of the previous segment sent again with the next, so that what spans two
/// segments is judged together.
const SEGMENT_OVERLAP: usize = 200;

/// Output that external classifiers judge before the client receives it: filtered bytes are
/// held while the text they carry is judged, a segment at a time.
#[derive(Default)]
struct Judged {
    /// Filtered bytes not yet sent.
    held: BytesMut,
    /// The text they carry.
    text: String,
    /// The end of the previous segment, for context.
    overlap: String,
    /// The verdict being awaited.
    verdict: Option<Verdict>,
}

/// A streamed answer read through its filter.
pub struct FilteredBody {
    inner: crate::body::Body,
    filter: Filter,
    guard: Arc<OutputGuard>,
    judged: Judged,
    /// The upstream's body has ended.
    ended: bool,
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
        let filter = Filter::Sse(SseFilter::new(guard.clone(), format));
        Self::with(inner, filter, guard, request_id)
    }

    /// Reads `inner` as plain text.
    pub fn text(
        inner: crate::body::Body,
        guard: Arc<OutputGuard>,
        request_id: Option<String>,
    ) -> Self {
        let filter = Filter::Text(TextFilter::new(guard.clone()));
        Self::with(inner, filter, guard, request_id)
    }

    fn with(
        inner: crate::body::Body,
        filter: Filter,
        guard: Arc<OutputGuard>,
        request_id: Option<String>,
    ) -> Self {
        FilteredBody {
            inner,
            filter,
            guard,
            judged: Judged::default(),
            ended: false,
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
        self.judged = Judged::default();
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

    /// Takes filtered bytes: straight through without classifiers; otherwise held, and a
    /// segment sent for judgement once it is long enough or the answer has ended. The bytes
    /// that can go to the client now, if any.
    fn admit(&mut self, bytes: Bytes) -> Option<Bytes> {
        if self.guard.classifiers.is_empty() {
            return (!bytes.is_empty()).then_some(bytes);
        }
        self.judged.held.extend_from_slice(&bytes);
        self.judged.text.push_str(&self.filter.take_released());
        if self.judged.text.is_empty() {
            // Nothing to judge in what is held (a role chunk, a keep-alive): it can go.
            let held = std::mem::take(&mut self.judged.held).freeze();
            return (!held.is_empty()).then_some(held);
        }
        if self.ended || self.judged.text.chars().count() >= self.guard.segment_chars {
            let segment = std::mem::take(&mut self.judged.text);
            let mut texts = Vec::with_capacity(2);
            if !self.judged.overlap.is_empty() {
                texts.push(std::mem::take(&mut self.judged.overlap));
            }
            let tail_from = segment
                .char_indices()
                .rev()
                .nth(SEGMENT_OVERLAP)
                .map_or(0, |(i, _)| i);
            self.judged.overlap = segment[tail_from..].to_owned();
            texts.push(segment);
            let classifiers = self.guard.classifiers.clone();
            self.judged.verdict = Some(Box::pin(async move {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                judge_all(&classifiers, &refs).await
            }));
        }
        None
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
            if let Some(verdict) = &mut this.judged.verdict {
                let judgement = match verdict.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(judgement) => judgement,
                };
                this.judged.verdict = None;
                if let Err(error) = Result::<(), OutputError>::from(judgement) {
                    return Poll::Ready(this.stop(error));
                }
                let held = std::mem::take(&mut this.judged.held).freeze();
                if !held.is_empty() {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(held))));
                }
                continue;
            }
            if this.ended {
                // The last segment was judged (or there was none): what is held can go.
                this.done = true;
                let held = std::mem::take(&mut this.judged.held).freeze();
                if this.judged.text.is_empty() && !held.is_empty() {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(held))));
                }
                return Poll::Ready(None);
            }
            let frame = match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(frame) => frame,
            };
            let result = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.filter.feed(&data),
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
                    this.ended = true;
                    this.filter.finish()
                }
            };
            match result {
                Ok(bytes) => {
                    if let Some(bytes) = this.admit(bytes) {
                        return Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
                    }
                }
                Err(error) => return Poll::Ready(this.stop(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detect::Detectors;
    use crate::guard::stream::OutputAction;
    use proptest::prelude::*;
    use serde_json::json;

    fn guard(max_chars: Option<usize>) -> Arc<OutputGuard> {
        static SCANNER: std::sync::OnceLock<Arc<Scanner>> = std::sync::OnceLock::new();
        let scanner = SCANNER.get_or_init(|| {
            let detectors = Arc::new(Detectors::new(false).expect("detectors"));
            Arc::new(
                Scanner::new(
                    detectors,
                    Some(OutputAction::Redact),
                    Some(OutputAction::Redact),
                )
                .expect("scanner"),
            )
        });
        Arc::new(OutputGuard {
            scanner: Some(scanner.clone()),
            max_chars,
            max_bytes: 1 << 20,
            classifiers: Vec::new(),
            segment_chars: 500,
        })
    }

    /// Feeds `bytes` cut at `cuts` through a filter; the output, or the error.
    fn run(format: &Format, bytes: &[u8], cuts: &[usize]) -> Result<String, OutputError> {
        let mut filter = SseFilter::new(guard(None), format);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.extend([0, bytes.len()]);
        points.sort_unstable();
        points.dedup();
        let mut out = Vec::new();
        for w in points.windows(2) {
            out.extend_from_slice(&filter.feed(&bytes[w[0]..w[1]])?);
        }
        out.extend_from_slice(&filter.finish()?);
        Ok(String::from_utf8(out).expect("UTF-8 out"))
    }

    /// Every event's data, parsed (each must be JSON, or `[DONE]`).
    fn datas(text: &str) -> Vec<Value> {
        text.split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .filter_map(|block| {
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                let data = data.join("\n");
                (data != "[DONE]" && !data.is_empty()).then(|| {
                    serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data:?}"))
                })
            })
            .collect()
    }

    fn chat_sse(pieces: &[String]) -> String {
        let mut out = String::new();
        for piece in pieces {
            let chunk = json!({"object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            out.push_str(&format!("data: {chunk}\r\n\r\n"));
        }
        let last = json!({"object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        out.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
        out
    }

    fn anthropic_sse(pieces: &[String]) -> String {
        let mut out = String::from(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        );
        for piece in pieces {
            let event = json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}});
            out.push_str(&format!("event: content_block_delta\ndata: {event}\n\n"));
        }
        out.push_str(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        );
        out.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        out
    }

    const VALUES: &[&str] = &[
        "jane.doe@example.com",
        "4111 1111 1111 1111",
        "+44 20 7946 0958",
        "AKIAIOSFODNN7EXAMPLE",
        "DE89 3704 0044 0532 0130 00",
        "123-45-6789",
        "naïve café 日本",
    ];

    fn pieces_of(text: &str, sizes: &[usize]) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut pieces = Vec::new();
        let mut at = 0;
        let mut sizes = sizes.iter().cycle();
        while at < chars.len() {
            let n = (sizes.next().copied().unwrap_or(1) % 4 + 1).min(chars.len() - at);
            pieces.push(chars[at..at + n].iter().collect());
            at += n;
        }
        pieces
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the split into events and the cut of the bytes into chunks (mid-line,
        /// mid-CRLF, mid-character), the client's text equals the whole answer's redaction and
        /// every event is well formed.
        #[test]
        fn streamed_events_equal_the_whole_redaction(
            parts in proptest::collection::vec(("[a-z ,.\\-0-9]{0,8}", 0..VALUES.len()), 1..5),
            sizes in proptest::collection::vec(any::<usize>(), 1..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
            anthropic in any::<bool>(),
        ) {
            let mut text = String::new();
            for (filler, value) in &parts {
                text.push_str(filler);
                text.push(' ');
                text.push_str(VALUES[*value]);
            }
            let whole = guard(None).scanner.as_ref().expect("scanner").redact(&text)
                .expect("not blocked").unwrap_or_else(|| text.clone());
            let pieces = pieces_of(&text, &sizes);
            let (format, sse) = if anthropic {
                (Format::AnthropicMessages, anthropic_sse(&pieces))
            } else {
                (Format::OpenAiChat, chat_sse(&pieces))
            };
            let out = run(&format, sse.as_bytes(), &cuts).expect("filtered");
            let streamed: String = datas(&out)
                .iter()
                .filter_map(|v| {
                    v.pointer("/choices/0/delta/content")
                        .or_else(|| v.pointer("/delta/text"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect();
            prop_assert_eq!(streamed, whole);
        }
    }

    #[test]
    fn comments_names_and_ids_are_redacted_too_and_media_is_left_alone() {
        let sse = "id: jane@example.com\n: contact jane@example.com\ndata: {\"type\":\"response.audio.delta\",\"delta\":\"amFuZUBleGFtcGxlLmNvbQ==\",\"output_index\":0}\n\n";
        let out = run(&Format::OpenAiResponses, sse.as_bytes(), &[]).expect("filtered");
        assert!(!out.contains("jane@"), "{out}");
        assert!(out.contains("id: [EMAIL]\n: contact [EMAIL]\n"), "{out}");
        assert!(out.contains("amFuZUBleGFtcGxlLmNvbQ=="), "{out}");
        let answer = json!({"choices": [{"message": {"content": "mail jane@example.com",
            "audio": {"data": "4111 1111 1111 1111", "transcript": "card 4111 1111 1111 1111"}},
            "logprobs": {"content": [{"token": "jane"}]}}]});
        let filtered = guard(None)
            .filter_json(answer.to_string().as_bytes())
            .expect("filtered");
        // Classifiers read the transcript, not the audio.
        assert_eq!(
            OutputGuard::texts_of(&filtered),
            vec!["card [CARD]", "mail [EMAIL]"]
        );
        let message = &filtered["choices"][0]["message"];
        assert_eq!(message["content"], "mail [EMAIL]");
        assert_eq!(message["audio"]["data"], "4111 1111 1111 1111");
        assert_eq!(message["audio"]["transcript"], "card [CARD]");
        assert_eq!(filtered["choices"][0]["logprobs"], Value::Null);
    }

    #[test]
    fn a_json_answer_is_sent_as_inspected_even_with_a_duplicated_key() {
        let answer = br#"{"content": "mail jane@example.com", "content": "nothing here"}"#;
        let filtered = guard(None).filter_json(answer).expect("filtered");
        let sent = serde_json::to_vec(&filtered).expect("serialize");
        assert_eq!(sent, br#"{"content":"nothing here"}"#);
    }

    #[test]
    fn bad_streams_are_stopped_not_passed() {
        // An event larger than max_bytes, a line that never ends, too many content streams.
        let mut filter = SseFilter::new(
            Arc::new(OutputGuard {
                max_bytes: 1024,
                ..(*guard(None)).clone()
            }),
            &Format::OpenAiChat,
        );
        let line = format!("data: {}", "x".repeat(2000));
        assert!(matches!(
            filter.feed(line.as_bytes()),
            Err(OutputError::TooLarge(1024))
        ));
        let mut sse = String::new();
        for i in 0..300 {
            let chunk = json!({"choices": [{"index": i, "delta": {"content": "a"}}]});
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        assert!(matches!(
            run(&Format::OpenAiChat, sse.as_bytes(), &[]),
            Err(OutputError::Invalid(_))
        ));
        // max_output_chars counts deltas once, not the done and completed events that repeat
        // them.
        let mut filter = SseFilter::new(guard(Some(5)), &Format::OpenAiResponses);
        let sse = concat!(
            "data: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":\"abcd\"}\n\n",
            "data: {\"type\":\"response.output_text.done\",\"output_index\":0,\"content_index\":0,\"text\":\"abcd\"}\n\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"content\":[{\"text\":\"abcd\"}]}]}}\n\n",
        );
        let out = filter.feed(sse.as_bytes()).expect("within the limit");
        assert!(String::from_utf8_lossy(&out).contains("response.completed"));
    }
}
