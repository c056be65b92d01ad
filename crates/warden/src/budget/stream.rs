//! Metering a streamed answer (`text/event-stream`) against its reservation.
//!
//! Events pass through whole and unchanged, one at a time, while the meter reads each one: the
//! output text of every delta is counted with the model's counter (OpenAI Chat Completions
//! `choices[].delta`, Responses `response.*.delta`, Anthropic `content_block_delta`), and the
//! usage the stream reports is kept (OpenAI's last chunk — asked for with
//! `stream_options.include_usage` when the client did not, and then not shown to it —, the
//! Responses API's `response.completed`, Anthropic's `message_start` and `message_delta`).
//!
//! An event whose delta would take the count past the granted output ends the stream instead:
//! the client gets a well-formed end for its format (`finish_reason: "length"` then `[DONE]`;
//! `response.incomplete`; `message_delta` with `stop_reason: "max_tokens"` and `message_stop`),
//! the upstream body is dropped (which closes the upstream request), and what was sent is
//! settled. A stream that ends, fails or is abandoned by its client settles once: to the
//! reported usage when complete, else to the prompt (as reported, or its bound) plus what was
//! counted.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use serde_json::{Value, json};

use super::count::Counter;
use super::layer::Settlement;
use super::usage::{self, Usage};
use crate::body::format::Format;
use crate::body::{Body, BoxError};

/// Largest event read; a larger one ends the stream (it cannot be metered).
pub const MAX_EVENT: usize = 1024 * 1024;

/// Which API's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Chat,
    Responses,
    Anthropic,
}

/// The meter's state, apart from the body it wraps.
pub(crate) struct Meter {
    dialect: Dialect,
    counter: Counter,
    /// Output tokens the grant allows.
    granted: u64,
    counted: u64,
    prompt_bound: u64,
    reported_prompt: Option<u64>,
    reported_output: Option<u64>,
    /// Drop OpenAI's usage-only chunk (the gateway asked for it, not the client).
    hide_usage_chunk: bool,
    /// Bytes of the event being read (whole events are released).
    event: BytesMut,
    /// From the stream, for a well-formed end.
    id: Option<String>,
    model: Option<String>,
    open_block: Option<u64>,
    settlement: Option<Settlement>,
}

impl Meter {
    pub(crate) fn new(
        format: &Format,
        counter: Counter,
        granted: u64,
        prompt_bound: u64,
        hide_usage_chunk: bool,
        settlement: Settlement,
    ) -> Meter {
        let dialect = match format {
            Format::OpenAiResponses => Dialect::Responses,
            Format::AnthropicMessages => Dialect::Anthropic,
            _ => Dialect::Chat,
        };
        Meter {
            dialect,
            counter,
            granted,
            counted: 0,
            prompt_bound,
            reported_prompt: None,
            reported_output: None,
            hide_usage_chunk,
            event: BytesMut::new(),
            id: None,
            model: None,
            open_block: None,
            settlement: Some(settlement),
        }
    }

    /// Settles once: the reported usage when the stream reported both parts, else the prompt
    /// (reported, or bounded) and the counted output.
    fn settle(&mut self) {
        let Some(settlement) = self.settlement.take() else {
            return;
        };
        let usage = self.usage();
        let actual = settlement.budget.cost(usage.prompt, usage.output);
        let reported =
            (self.reported_prompt.is_some() && self.reported_output.is_some()).then_some(usage);
        settlement.settle_stream(actual, reported);
    }

    /// The usage seen: reported where the stream reported it, else the bound and the count.
    fn usage(&self) -> Usage {
        Usage {
            prompt: self.reported_prompt.unwrap_or(self.prompt_bound),
            output: self.reported_output.unwrap_or(self.counted),
        }
    }

    /// Reads `chunk`; the bytes to send, and whether the stream must end after them.
    fn feed(&mut self, chunk: &[u8]) -> (Bytes, bool) {
        let mut out = BytesMut::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.event.extend_from_slice(&rest[..=end]);
            rest = &rest[end + 1..];
            if ends_event(&self.event) {
                let event = self.event.split().freeze();
                if let Some(stop) = self.on_event(&event, &mut out) {
                    out.extend_from_slice(&stop);
                    return (out.freeze(), true);
                }
            }
        }
        self.event.extend_from_slice(rest);
        if self.event.len() > MAX_EVENT {
            tracing::warn!(target: "warden::budget", "streamed event larger than {MAX_EVENT} bytes: stream ended");
            out.extend_from_slice(&self.terminal());
            return (out.freeze(), true);
        }
        (out.freeze(), false)
    }

    /// Handles one whole event: appends it to `out`, or returns the end to send instead.
    fn on_event(&mut self, raw: &Bytes, out: &mut BytesMut) -> Option<Bytes> {
        let text = String::from_utf8_lossy(raw);
        let data: String = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|value| value.strip_prefix(' ').unwrap_or(value))
            .collect::<Vec<_>>()
            .join("\n");
        let Ok(value) = serde_json::from_str::<Value>(&data) else {
            // `[DONE]`, comments, pings: passed on.
            out.extend_from_slice(raw);
            return None;
        };
        if let Some(usage) = self.reported_in(&value) {
            if let Some(prompt) = usage.0 {
                self.reported_prompt = Some(prompt);
            }
            if let Some(output) = usage.1 {
                self.reported_output = Some(output);
            }
        }
        let delta = self.delta_tokens(&value);
        if delta > 0 && self.counted.saturating_add(delta) > self.granted {
            tracing::info!(target: "warden::budget", granted = self.granted, counted = self.counted, "streamed answer reached its reservation: ended by the gateway");
            return Some(self.terminal());
        }
        self.counted += delta;
        let usage_only = self.dialect == Dialect::Chat
            && value.get("usage").is_some_and(|u| !u.is_null())
            && value
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
        if !(usage_only && self.hide_usage_chunk) {
            out.extend_from_slice(raw);
        }
        None
    }

    /// `(prompt, output)` an event reports, remembering what a well-formed end needs.
    fn reported_in(&mut self, value: &Value) -> Option<(Option<u64>, Option<u64>)> {
        match self.dialect {
            Dialect::Chat => {
                if self.id.is_none() {
                    self.id = value.get("id").and_then(Value::as_str).map(str::to_owned);
                    self.model = value
                        .get("model")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
                let usage = usage::of_usage_object(value.get("usage")?)?;
                Some((Some(usage.prompt), Some(usage.output)))
            }
            Dialect::Responses => {
                let kind = value.get("type").and_then(Value::as_str)?;
                if kind != "response.completed" {
                    return None;
                }
                let usage = usage::of_usage_object(value.get("response")?.get("usage")?)?;
                Some((Some(usage.prompt), Some(usage.output)))
            }
            Dialect::Anthropic => match value.get("type").and_then(Value::as_str)? {
                "message_start" => {
                    let usage = usage::of_usage_object(value.get("message")?.get("usage")?)?;
                    Some((Some(usage.prompt), None))
                }
                "message_delta" => {
                    let output = value.get("usage")?.get("output_tokens")?.as_u64()?;
                    Some((None, Some(output)))
                }
                "content_block_start" => {
                    self.open_block = value.get("index").and_then(Value::as_u64);
                    None
                }
                "content_block_stop" => {
                    self.open_block = None;
                    None
                }
                _ => None,
            },
        }
    }

    /// Output tokens of an event's deltas (at least one per non-empty delta).
    fn delta_tokens(&self, value: &Value) -> u64 {
        let count = |text: Option<&str>| -> u64 {
            match text {
                Some(text) if !text.is_empty() => self.counter.count(text).max(1),
                _ => 0,
            }
        };
        match self.dialect {
            Dialect::Chat => value
                .get("choices")
                .and_then(Value::as_array)
                .map(|choices| {
                    choices
                        .iter()
                        .filter_map(|choice| choice.get("delta"))
                        .map(|delta| {
                            let texts: u64 =
                                ["content", "refusal", "reasoning_content", "reasoning"]
                                    .iter()
                                    .map(|field| count(delta.get(*field).and_then(Value::as_str)))
                                    .sum();
                            let tools: u64 = delta
                                .get("tool_calls")
                                .and_then(Value::as_array)
                                .map(|calls| {
                                    calls
                                        .iter()
                                        .map(|call| {
                                            count(
                                                call.pointer("/function/arguments")
                                                    .and_then(Value::as_str),
                                            )
                                        })
                                        .sum()
                                })
                                .unwrap_or(0);
                            texts + tools
                        })
                        .sum()
                })
                .unwrap_or(0),
            Dialect::Responses => {
                let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
                if kind.starts_with("response.") && kind.ends_with(".delta") {
                    count(value.get("delta").and_then(Value::as_str))
                } else {
                    0
                }
            }
            Dialect::Anthropic => {
                if value.get("type").and_then(Value::as_str) != Some("content_block_delta") {
                    return 0;
                }
                let delta = value.get("delta");
                ["text", "partial_json", "thinking"]
                    .iter()
                    .map(|field| count(delta.and_then(|d| d.get(*field)).and_then(Value::as_str)))
                    .sum()
            }
        }
    }

    /// The well-formed end of a stream stopped at its reservation.
    fn terminal(&self) -> Bytes {
        let mut out = String::new();
        let mut event = |name: Option<&str>, data: &Value| {
            if let Some(name) = name {
                out.push_str("event: ");
                out.push_str(name);
                out.push('\n');
            }
            out.push_str("data: ");
            out.push_str(&data.to_string());
            out.push_str("\n\n");
        };
        match self.dialect {
            Dialect::Chat => {
                event(
                    None,
                    &json!({
                        "id": self.id.as_deref().unwrap_or("warden-budget"),
                        "object": "chat.completion.chunk",
                        "model": self.model.as_deref().unwrap_or(""),
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                    }),
                );
                out.push_str("data: [DONE]\n\n");
            }
            Dialect::Responses => event(
                Some("response.incomplete"),
                &json!({
                    "type": "response.incomplete",
                    "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}},
                }),
            ),
            Dialect::Anthropic => {
                if let Some(index) = self.open_block {
                    event(
                        Some("content_block_stop"),
                        &json!({"type": "content_block_stop", "index": index}),
                    );
                }
                event(
                    Some("message_delta"),
                    &json!({
                        "type": "message_delta",
                        "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                        "usage": {"output_tokens": self.counted},
                    }),
                );
                event(Some("message_stop"), &json!({"type": "message_stop"}));
            }
        }
        Bytes::from(out)
    }
}

/// Whether `event` ends with a blank line (`\n\n` or `\r\n\r\n`).
fn ends_event(event: &[u8]) -> bool {
    event.ends_with(b"\n\n") || event.ends_with(b"\n\r\n")
}

pin_project_lite::pin_project! {
    /// A streamed answer under its meter.
    pub(crate) struct MeteredStream {
        inner: Option<Body>,
        meter: Meter,
    }

    impl PinnedDrop for MeteredStream {
        fn drop(this: Pin<&mut Self>) {
            // A client that went away settles what was produced.
            this.project().meter.settle();
        }
    }
}

impl MeteredStream {
    pub(crate) fn new(inner: Body, meter: Meter) -> MeteredStream {
        MeteredStream {
            inner: Some(inner),
            meter,
        }
    }
}

impl http_body::Body for MeteredStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match std::task::ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers: nothing to meter.
                        continue;
                    };
                    let (out, stop) = this.meter.feed(&data);
                    if stop {
                        // Dropping the upstream body closes the upstream request.
                        *this.inner = None;
                        this.meter.settle();
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Some(Err(error)) => {
                    *this.inner = None;
                    this.meter.settle();
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    *this.inner = None;
                    let rest = this.meter.event.split().freeze();
                    tracing::debug!(target: "warden::budget", usage = ?this.meter.usage(), "stream settled");
                    this.meter.settle();
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none() && self.meter.event.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Wraps `body`, a streamed answer, in its meter.
pub(crate) fn metered(body: Body, meter: Meter) -> Body {
    crate::body::boxed(MeteredStream::new(body, meter))
}
