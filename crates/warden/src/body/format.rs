//! Request formats: what a body of a declared format means to Warden, extracted once.
//!
//! Runs after JSON safety and schema validation, on the parsed document (DESIGN.md §2 step 14).
//! Each format yields one [`ExtractedBody`]: the user-supplied texts with their JSON pointers and
//! roles, the requested model, the output-token limit and whether the response will stream.
//! Later layers (length limits, model rules, content guards, token budgets) read it from the
//! request extensions instead of parsing again.
//!
//! The formats are checked as far as Warden reads them: a field it reads with the wrong type, a
//! message role or content-part type it does not know, is a [`FormatError`] (400) — an unknown
//! part could carry text past every guard, so it fails closed. Fields Warden does not read are
//! left alone and forwarded as sent.

use super::json::{Document, Members, NodeRef, Span, View, push_index, push_key};

/// A declared body format.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Any JSON; user text is at the listed fields.
    Json {
        /// The fields that carry user text.
        text_fields: Vec<FieldPath>,
    },
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    OpenAiChat,
    /// OpenAI Responses (`/v1/responses`).
    OpenAiResponses,
    /// Anthropic Messages (`/v1/messages`).
    AnthropicMessages,
}

impl Format {
    /// The provider a format implies (`openai`, `anthropic`), for model rules.
    pub fn provider(&self) -> Option<&'static str> {
        match self {
            Format::Json { .. } => None,
            Format::OpenAiChat | Format::OpenAiResponses => Some("openai"),
            Format::AnthropicMessages => Some("anthropic"),
        }
    }

    /// Extracts `document`, which it keeps.
    pub fn extract(&self, document: Document) -> Result<ExtractedBody, FormatError> {
        let mut out = Extraction::default();
        match self {
            Format::Json { text_fields } => {
                for field in text_fields {
                    field.collect(document.root(), &mut out)?;
                }
            }
            Format::OpenAiChat => openai_chat(&document, &mut out)?,
            Format::OpenAiResponses => openai_responses(&document, &mut out)?,
            Format::AnthropicMessages => anthropic_messages(&document, &mut out)?,
        }
        Ok(ExtractedBody {
            document,
            texts: out.texts,
            model: out.model,
            provider: self.provider().map(str::to_owned),
            max_output_tokens: out.max_output_tokens,
            stream: out.stream,
        })
    }
}

/// Who a text comes from, as far as the format says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// System or developer instructions.
    System,
    /// The end user.
    User,
    /// An earlier model answer sent back (including tool-call arguments).
    Assistant,
    /// A tool result.
    Tool,
    /// A tool or function description.
    ToolDefinition,
    /// A field named by `text_fields`.
    Field,
}

impl Role {
    /// A stable label for logs and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::ToolDefinition => "tool_definition",
            Role::Field => "field",
        }
    }
}

/// Where one user-supplied text is.
#[derive(Clone, Copy, Debug)]
struct Text {
    role: Role,
    /// The string itself, in the document (read without a pointer walk).
    span: Span,
}

/// One user-supplied text of an [`ExtractedBody`].
#[derive(Clone, Copy, Debug)]
pub struct TextRef<'a> {
    /// Who it comes from.
    pub role: Role,
    /// The text, unescaped.
    pub content: &'a str,
    document: &'a Document,
    span: Span,
}

impl TextRef<'_> {
    /// Its RFC 6901 pointer into the document. Written on demand (a walk of the document):
    /// most requests never need one, so extraction records none.
    pub fn pointer(&self) -> String {
        self.document.pointer_to(self.span).unwrap_or_default()
    }
}

/// What a body means, extracted once (request extension `Arc<ExtractedBody>`).
#[derive(Clone, Debug)]
pub struct ExtractedBody {
    document: Document,
    /// The user-supplied texts, in document order.
    texts: Vec<Text>,
    /// The requested model.
    pub model: Option<String>,
    /// The model's provider (the route's `provider`, or the format's), set by the body rules.
    pub provider: Option<String>,
    /// The requested output-token limit.
    pub max_output_tokens: Option<u64>,
    /// Whether the response will stream.
    pub stream: bool,
}

impl ExtractedBody {
    /// The parsed document.
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// The user-supplied texts, in document order.
    pub fn texts(&self) -> impl ExactSizeIterator<Item = TextRef<'_>> {
        self.texts.iter().map(|text| TextRef {
            role: text.role,
            content: self.document.text_at(text.span),
            document: &self.document,
            span: text.span,
        })
    }
}

/// Why a body does not match its declared format. The message names the place and the rule,
/// never the submitted content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {expected}")]
pub struct FormatError {
    /// Where (RFC 6901 pointer; empty for the whole body).
    pub pointer: String,
    /// What the format expects there.
    pub expected: &'static str,
}

/// A `text_fields` entry: an RFC 6901 pointer whose `*` segments stand for every array item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    EveryItem,
}

impl FieldPath {
    /// Parses `/messages/*/content`; `None` unless it starts with `/`. `~1` and `~0` escape `/`
    /// and `~` as in RFC 6901.
    pub fn parse(text: &str) -> Option<FieldPath> {
        let rest = text.strip_prefix('/')?;
        let segments = rest
            .split('/')
            .map(|segment| match segment {
                "*" => Segment::EveryItem,
                key => Segment::Key(key.replace("~1", "/").replace("~0", "~")),
            })
            .collect();
        Some(FieldPath { segments })
    }

    fn collect(&self, document: NodeRef<'_>, out: &mut Extraction) -> Result<(), FormatError> {
        walk(document, &self.segments, &At::ROOT, out)
    }
}

fn walk(
    value: NodeRef<'_>,
    segments: &[Segment],
    at: &At<'_>,
    out: &mut Extraction,
) -> Result<(), FormatError> {
    let Some((first, rest)) = segments.split_first() else {
        return match value.view() {
            View::String(_) => {
                out.text(Role::Field, Some(value));
                Ok(())
            }
            View::Null => Ok(()),
            _ => Err(error(at, "a text field must hold a string")),
        };
    };
    match (first, value.view()) {
        (Segment::Key(key), View::Object(map)) => {
            if let Some(child) = map.get(key) {
                walk(child, rest, &at.key(key), out)?;
            }
        }
        (Segment::EveryItem, View::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, rest, &at.index(i), out)?;
            }
        }
        (Segment::Key(key), View::Array(items)) => {
            if let Some(item) = key.parse::<usize>().ok().and_then(|i| items.get(i)) {
                walk(item, rest, &at.key(key), out)?;
            }
        }
        // Absent on the way: nothing to extract.
        (_, View::Null) => {}
        _ => {
            return Err(error(
                at,
                "a text field's path crosses a value of another type",
            ));
        }
    }
    Ok(())
}

/// Where the extraction is: an RFC 6901 pointer kept as a chain of segments on the stack, so
/// descending costs nothing; it is written out only for a text or an error.
#[derive(Clone, Copy)]
struct At<'p> {
    parent: Option<&'p At<'p>>,
    step: Step<'p>,
}

#[derive(Clone, Copy)]
enum Step<'p> {
    Root,
    Key(&'p str),
    Index(usize),
}

impl<'p> At<'p> {
    const ROOT: At<'static> = At {
        parent: None,
        step: Step::Root,
    };

    fn key<'q>(&'q self, key: &'q str) -> At<'q> {
        At {
            parent: Some(self),
            step: Step::Key(key),
        }
    }

    fn index(&self, index: usize) -> At<'_> {
        At {
            parent: Some(self),
            step: Step::Index(index),
        }
    }

    fn write(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.write(out);
        }
        match self.step {
            Step::Root => {}
            Step::Key(key) => push_key(out, key),
            Step::Index(index) => push_index(out, index),
        }
    }

    fn pointer(&self) -> String {
        let mut pointer = String::new();
        self.write(&mut pointer);
        pointer
    }
}

fn error(at: &At<'_>, expected: &'static str) -> FormatError {
    FormatError {
        pointer: at.pointer(),
        expected,
    }
}

#[derive(Default)]
struct Extraction {
    texts: Vec<Text>,
    model: Option<String>,
    max_output_tokens: Option<u64>,
    stream: bool,
}

impl Extraction {
    /// Records the string `node`.
    fn text(&mut self, role: Role, node: Option<NodeRef<'_>>) {
        if let Some(span) = node.and_then(|n| n.string_span()) {
            self.texts.push(Text { role, span });
        }
    }

    /// A string at `at`, extracted; null or absent is nothing; anything else does not match.
    fn optional_text(
        &mut self,
        object: Members<'_>,
        at: &At<'_>,
        key: &str,
        role: Role,
        expected: &'static str,
    ) -> Result<(), FormatError> {
        let node = object.get(key);
        match node.map(|n| n.view()) {
            None | Some(View::Null) => Ok(()),
            Some(View::String(_)) => {
                self.text(role, node);
                Ok(())
            }
            Some(_) => Err(error(&at.key(key), expected)),
        }
    }

    fn required_text(
        &mut self,
        object: Members<'_>,
        at: &At<'_>,
        key: &str,
        role: Role,
        expected: &'static str,
    ) -> Result<(), FormatError> {
        let node = object.get(key);
        match node.map(|n| n.view()) {
            Some(View::String(_)) => {
                self.text(role, node);
                Ok(())
            }
            _ => Err(error(&at.key(key), expected)),
        }
    }

    fn model(&mut self, document: Members<'_>) -> Result<(), FormatError> {
        match document.get("model").map(|n| n.view()) {
            Some(View::String(model))
                if !model.is_empty()
                    && !model.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                self.model = Some(model.to_owned());
                Ok(())
            }
            _ => Err(error(
                &At::ROOT.key("model"),
                "a model name without spaces or control characters",
            )),
        }
    }

    fn tokens(&mut self, document: Members<'_>, keys: &[&str]) -> Result<(), FormatError> {
        for key in keys {
            match document.get(key) {
                None => {}
                Some(node) if node.is_null() => {}
                Some(node) => {
                    let Some(n) = node.as_u64() else {
                        return Err(error(&At::ROOT.key(key), "a non-negative integer"));
                    };
                    if self.max_output_tokens.is_none() {
                        self.max_output_tokens = Some(n);
                    }
                }
            }
        }
        Ok(())
    }

    fn stream(&mut self, document: Members<'_>) -> Result<(), FormatError> {
        match document.get("stream").map(|n| n.view()) {
            None | Some(View::Null) => {}
            Some(View::Bool(stream)) => self.stream = stream,
            Some(_) => return Err(error(&At::ROOT.key("stream"), "true or false")),
        }
        Ok(())
    }

    /// `tools[].description` and `tools[].function.description` (tool definitions).
    fn tools(&mut self, document: Members<'_>, key: &str) -> Result<(), FormatError> {
        let tools = At::ROOT.key(key);
        for (i, tool) in array(document, key)?.enumerate() {
            let at = tools.index(i);
            let tool = object(tool, &at, "a tool object")?;
            self.optional_text(tool, &at, "description", Role::ToolDefinition, "a string")?;
            if let Some(function) = tool.get("function") {
                let at = &at.key("function");
                let function = object(function, at, "a function object")?;
                self.optional_text(
                    function,
                    at,
                    "description",
                    Role::ToolDefinition,
                    "a string",
                )?;
            }
        }
        Ok(())
    }
}

fn root(document: &Document) -> Result<Members<'_>, FormatError> {
    object(document.root(), &At::ROOT, "a JSON object")
}

fn object<'a>(
    value: NodeRef<'a>,
    at: &At<'_>,
    expected: &'static str,
) -> Result<Members<'a>, FormatError> {
    match value.view() {
        View::Object(members) => Ok(members),
        _ => Err(error(at, expected)),
    }
}

/// The items of the array at `key`; absent or null is none.
fn array<'a>(
    object: Members<'a>,
    key: &str,
) -> Result<impl Iterator<Item = NodeRef<'a>> + 'a, FormatError> {
    let items = match object.get(key).map(|n| n.view()) {
        None | Some(View::Null) => None,
        Some(View::Array(items)) => Some(items.iter()),
        Some(_) => return Err(error(&At::ROOT.key(key), "a list")),
    };
    Ok(items.into_iter().flatten())
}

fn kind<'a>(object: Members<'a>, at: &At<'_>) -> Result<&'a str, FormatError> {
    object
        .get("type")
        .and_then(|n| n.as_str())
        .ok_or_else(|| error(&at.key("type"), "a content type"))
}

// === OpenAI Chat Completions ===

fn openai_chat(document: &Document, out: &mut Extraction) -> Result<(), FormatError> {
    let body = root(document)?;
    out.model(body)?;
    let Some(View::Array(messages)) = body.get("messages").map(|n| n.view()) else {
        return Err(error(&At::ROOT.key("messages"), "a list of messages"));
    };
    let list = At::ROOT.key("messages");
    for (i, message) in messages.iter().enumerate() {
        let at = list.index(i);
        let message = object(message, &at, "a message object")?;
        let role = match message.get("role").and_then(|n| n.as_str()) {
            Some("system" | "developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("tool" | "function") => Role::Tool,
            _ => {
                return Err(error(
                    &at.key("role"),
                    "system, developer, user, assistant or tool",
                ));
            }
        };
        content(message, &at, "content", role, &CHAT_PARTS, out)?;
        let calls = at.key("tool_calls");
        for (j, call) in array(message, "tool_calls")
            .map_err(|_| error(&at.key("tool_calls"), "a list"))?
            .enumerate()
        {
            let at = calls.index(j);
            let call = object(call, &at, "a tool call object")?;
            if let Some(function) = call.get("function") {
                let at = &at.key("function");
                let function = object(function, at, "a function call object")?;
                out.optional_text(function, at, "arguments", Role::Assistant, "a string")?;
            }
        }
        if let Some(function) = message.get("function_call") {
            let at = &at.key("function_call");
            let function = object(function, at, "a function call object")?;
            out.optional_text(function, at, "arguments", Role::Assistant, "a string")?;
        }
    }
    out.tools(body, "tools")?;
    out.tools(body, "functions")?;
    out.tokens(body, &["max_completion_tokens", "max_tokens"])?;
    out.stream(body)
}

/// The content-part types of one API: those whose `text` is user text, and those that carry no
/// text Warden inspects (`refusal` parts are text in both APIs).
struct PartTypes {
    text: &'static [&'static str],
    silent: &'static [&'static str],
    expected: &'static str,
}

const CHAT_PARTS: PartTypes = PartTypes {
    text: &["text"],
    silent: &["image_url", "input_audio", "file"],
    expected: "text, image_url, input_audio, file or refusal",
};

const RESPONSES_PARTS: PartTypes = PartTypes {
    text: &["input_text", "output_text", "text"],
    silent: &["input_image", "input_file", "input_audio"],
    expected: "input_text, output_text, refusal, input_image, input_file or input_audio",
};

/// `parent[key]` as a string or a list of content parts of `types`.
fn content(
    parent: Members<'_>,
    at: &At<'_>,
    key: &str,
    role: Role,
    types: &PartTypes,
    out: &mut Extraction,
) -> Result<(), FormatError> {
    let node = parent.get(key);
    match node.map(|n| n.view()) {
        None | Some(View::Null) => Ok(()),
        Some(View::String(_)) => {
            out.text(role, node);
            Ok(())
        }
        Some(View::Array(parts)) => {
            let list = at.key(key);
            for (k, part) in parts.iter().enumerate() {
                let at = list.index(k);
                let part = object(part, &at, "a content part object")?;
                match kind(part, &at)? {
                    "refusal" => out.required_text(part, &at, "refusal", role, "a string")?,
                    t if types.text.contains(&t) => {
                        out.required_text(part, &at, "text", role, "a string")?
                    }
                    t if types.silent.contains(&t) => {}
                    _ => {
                        return Err(error(&at.key("type"), types.expected));
                    }
                }
            }
            Ok(())
        }
        Some(_) => Err(error(&at.key(key), "a string or a list of content parts")),
    }
}

// === OpenAI Responses ===

/// Item types of the Responses API that carry no user text Warden inspects.
const RESPONSES_OTHER_ITEMS: &[&str] = &[
    "reasoning",
    "item_reference",
    "web_search_call",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
];

fn openai_responses(document: &Document, out: &mut Extraction) -> Result<(), FormatError> {
    let body = root(document)?;
    out.model(body)?;
    out.optional_text(body, &At::ROOT, "instructions", Role::System, "a string")?;
    let node = body.get("input");
    match node.map(|n| n.view()) {
        None | Some(View::Null) => {}
        Some(View::String(_)) => out.text(Role::User, node),
        Some(View::Array(items)) => {
            let list = At::ROOT.key("input");
            for (i, item) in items.iter().enumerate() {
                responses_item(item, &list.index(i), out)?;
            }
        }
        Some(_) => {
            return Err(error(
                &At::ROOT.key("input"),
                "a string or a list of input items",
            ));
        }
    }
    out.tools(body, "tools")?;
    out.tokens(body, &["max_output_tokens"])?;
    out.stream(body)
}

fn responses_item(item: NodeRef<'_>, at: &At<'_>, out: &mut Extraction) -> Result<(), FormatError> {
    let item = object(item, at, "an input item object")?;
    let kind = match item.get("type").map(|n| n.view()) {
        None => "message",
        Some(View::String(kind)) => kind,
        Some(_) => return Err(error(&at.key("type"), "an item type")),
    };
    match kind {
        "message" => {
            let role = match item.get("role").and_then(|n| n.as_str()) {
                Some("system" | "developer") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                _ => {
                    return Err(error(
                        &at.key("role"),
                        "system, developer, user or assistant",
                    ));
                }
            };
            content(item, at, "content", role, &RESPONSES_PARTS, out)
        }
        "function_call" => out.optional_text(item, at, "arguments", Role::Assistant, "a string"),
        "custom_tool_call" => out.optional_text(item, at, "input", Role::Assistant, "a string"),
        "function_call_output" | "custom_tool_call_output" => {
            content(item, at, "output", Role::Tool, &RESPONSES_PARTS, out)
        }
        other if RESPONSES_OTHER_ITEMS.contains(&other) => Ok(()),
        _ => Err(error(
            &at.key("type"),
            "an input item type of the Responses API",
        )),
    }
}

// === Anthropic Messages ===

fn anthropic_messages(document: &Document, out: &mut Extraction) -> Result<(), FormatError> {
    let body = root(document)?;
    out.model(body)?;
    let node = body.get("system");
    match node.map(|n| n.view()) {
        None | Some(View::Null) => {}
        Some(View::String(_)) => out.text(Role::System, node),
        Some(View::Array(_)) => anthropic_blocks(body, &At::ROOT, "system", Role::System, out)?,
        Some(_) => {
            return Err(error(
                &At::ROOT.key("system"),
                "a string or a list of text blocks",
            ));
        }
    }
    let Some(View::Array(messages)) = body.get("messages").map(|n| n.view()) else {
        return Err(error(&At::ROOT.key("messages"), "a list of messages"));
    };
    let list = At::ROOT.key("messages");
    for (i, message) in messages.iter().enumerate() {
        let at = list.index(i);
        let message = object(message, &at, "a message object")?;
        let role = match message.get("role").and_then(|n| n.as_str()) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => {
                return Err(error(&at.key("role"), "user or assistant"));
            }
        };
        let node = message.get("content");
        match node.map(|n| n.view()) {
            Some(View::String(_)) => out.text(role, node),
            Some(View::Array(_)) => anthropic_blocks(message, &at, "content", role, out)?,
            _ => {
                return Err(error(
                    &at.key("content"),
                    "a string or a list of content blocks",
                ));
            }
        }
    }
    out.tools(body, "tools")?;
    if body.get("max_tokens").and_then(|n| n.as_u64()).is_none() {
        return Err(error(
            &At::ROOT.key("max_tokens"),
            "a non-negative integer (required)",
        ));
    }
    out.tokens(body, &["max_tokens"])?;
    out.stream(body)
}

/// Content blocks of the Messages API that carry no user text Warden inspects.
const ANTHROPIC_OTHER_BLOCKS: &[&str] = &[
    "image",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "server_tool_use",
    "web_search_tool_result",
    "container_upload",
    "mcp_tool_use",
];

fn anthropic_blocks(
    parent: Members<'_>,
    at: &At<'_>,
    key: &str,
    role: Role,
    out: &mut Extraction,
) -> Result<(), FormatError> {
    let list = at.key(key);
    let Some(View::Array(blocks)) = parent.get(key).map(|n| n.view()) else {
        return Err(error(&list, "a list of content blocks"));
    };
    for (k, block) in blocks.iter().enumerate() {
        let at = list.index(k);
        let block = object(block, &at, "a content block object")?;
        match kind(block, &at)? {
            "text" => out.required_text(block, &at, "text", role, "a string")?,
            "tool_result" | "mcp_tool_result" => match block.get("content").map(|n| n.view()) {
                None | Some(View::Null) => {}
                Some(View::String(_)) => out.text(Role::Tool, block.get("content")),
                Some(View::Array(_)) => anthropic_blocks(block, &at, "content", Role::Tool, out)?,
                Some(_) => {
                    return Err(error(
                        &at.key("content"),
                        "a string or a list of content blocks",
                    ));
                }
            },
            "document" => {
                out.optional_text(block, &at, "title", role, "a string")?;
                out.optional_text(block, &at, "context", role, "a string")?;
                if let Some(source) = block.get("source") {
                    let at = &at.key("source");
                    let source = object(source, at, "a document source object")?;
                    match source.get("type").and_then(|n| n.as_str()) {
                        Some("text") => out.required_text(source, at, "data", role, "a string")?,
                        Some("content") => anthropic_blocks(source, at, "content", role, out)?,
                        Some(_) => {}
                        None => {
                            return Err(error(&at.key("type"), "a source type"));
                        }
                    }
                }
            }
            "search_result" => {
                out.optional_text(block, &at, "title", role, "a string")?;
                anthropic_blocks(block, &at, "content", role, out)?;
            }
            other if ANTHROPIC_OTHER_BLOCKS.contains(&other) => {}
            _ => {
                return Err(error(
                    &at.key("type"),
                    "a content block type of the Messages API",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::json::{JsonLimits, parse};
    use serde_json::{Value, json};

    fn doc(value: &Value) -> Document {
        let bytes = serde_json::to_vec(value).expect("json");
        parse(&bytes, &JsonLimits::default()).expect("valid")
    }

    fn texts(format: &Format, body: Value) -> Vec<(String, Role, String)> {
        let extracted = format.extract(doc(&body)).expect("matches its format");
        extracted
            .texts()
            .map(|t| (t.pointer(), t.role, t.content.to_owned()))
            .collect()
    }

    #[test]
    fn openai_chat_with_parts_tools_and_results() {
        let body = json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "result text"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "looks things up", "parameters": {}}}],
            "max_completion_tokens": 256,
            "stream": true,
            "unknown_future_field": {"kept": true}
        });
        let extracted = Format::OpenAiChat.extract(doc(&body)).expect("valid");
        assert_eq!(extracted.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(extracted.max_output_tokens, Some(256));
        assert!(extracted.stream);
        assert_eq!(extracted.document().to_value(), body, "nothing dropped");
        assert_eq!(
            texts(&Format::OpenAiChat, body),
            vec![
                (
                    "/messages/0/content".into(),
                    Role::System,
                    "be brief".into()
                ),
                (
                    "/messages/1/content/0/text".into(),
                    Role::User,
                    "what is in this image?".into()
                ),
                (
                    "/messages/2/tool_calls/0/function/arguments".into(),
                    Role::Assistant,
                    "{\"q\":\"x\"}".into()
                ),
                (
                    "/messages/3/content".into(),
                    Role::Tool,
                    "result text".into()
                ),
                (
                    "/tools/0/function/description".into(),
                    Role::ToolDefinition,
                    "looks things up".into()
                ),
            ]
        );
    }

    #[test]
    fn openai_responses_items() {
        let body = json!({
            "model": "gpt-4o",
            "instructions": "follow the rules",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": "https://x"}]},
                {"type": "function_call", "call_id": "1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "1", "output": "42"},
                {"type": "reasoning", "id": "r1", "summary": []}
            ],
            "max_output_tokens": 100
        });
        let got = texts(&Format::OpenAiResponses, body.clone());
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            (
                "/instructions".into(),
                Role::System,
                "follow the rules".into()
            )
        );
        assert_eq!(got[1].0, "/input/0/content/0/text");
        assert_eq!(got[3], ("/input/2/output".into(), Role::Tool, "42".into()));
        let extracted = Format::OpenAiResponses.extract(doc(&body)).expect("valid");
        assert_eq!(extracted.max_output_tokens, Some(100));
        assert!(!extracted.stream);
        let plain = texts(
            &Format::OpenAiResponses,
            json!({"model": "gpt-4o", "input": "hello"}),
        );
        assert_eq!(plain, vec![("/input".into(), Role::User, "hello".into())]);
    }

    #[test]
    fn anthropic_messages_with_system_blocks_and_tool_results() {
        let body = json!({
            "model": "claude-3-5-sonnet-20241022",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "you are careful", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "let me check"},
                    {"type": "tool_use", "id": "t1", "name": "search", "input": {"q": "x"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "found it"}]},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc body"}, "title": "T"}
                ]}
            ],
            "tools": [{"name": "search", "description": "searches", "input_schema": {"type": "object"}}],
            "stream": false
        });
        let got = texts(&Format::AnthropicMessages, body);
        let pointers: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/system/0/text",
                "/messages/0/content",
                "/messages/1/content/0/text",
                "/messages/2/content/0/content/0/text",
                "/messages/2/content/1/title",
                "/messages/2/content/1/source/data",
                "/tools/0/description",
            ]
        );
        assert_eq!(got[3].1, Role::Tool);
    }

    #[test]
    fn bodies_that_do_not_match_their_format_say_where() {
        let cases = [
            (Format::OpenAiChat, json!([1]), ""),
            (Format::OpenAiChat, json!({"messages": []}), "/model"),
            (
                Format::OpenAiChat,
                json!({"model": "gpt 4", "messages": []}),
                "/model",
            ),
            (Format::OpenAiChat, json!({"model": "m"}), "/messages"),
            (
                Format::OpenAiChat,
                json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
                "/messages/0/role",
            ),
            (
                Format::OpenAiChat,
                json!({"model": "m", "messages": [{"role": "user", "content": 7}]}),
                "/messages/0/content",
            ),
            (
                Format::OpenAiChat,
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "hologram", "text": "x"}]}]}),
                "/messages/0/content/0/type",
            ),
            (
                Format::OpenAiChat,
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}),
                "/messages/0/content/0/text",
            ),
            (
                Format::OpenAiChat,
                json!({"model": "m", "messages": [], "max_tokens": -1}),
                "/max_tokens",
            ),
            (
                Format::OpenAiChat,
                json!({"model": "m", "messages": [], "stream": "yes"}),
                "/stream",
            ),
            (
                Format::OpenAiResponses,
                json!({"model": "m", "input": [{"type": "teleport"}]}),
                "/input/0/type",
            ),
            (
                Format::AnthropicMessages,
                json!({"model": "m", "messages": []}),
                "/max_tokens",
            ),
            (
                Format::AnthropicMessages,
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "/messages/0/content/0/text",
            ),
        ];
        for (format, body, pointer) in cases {
            let err = format.extract(doc(&body)).expect_err(&body.to_string());
            assert_eq!(err.pointer, pointer, "{body}");
        }
    }

    #[test]
    fn text_fields_follow_pointers_and_every_item() {
        let format = Format::Json {
            text_fields: vec![
                FieldPath::parse("/prompt").expect("path"),
                FieldPath::parse("/turns/*/text").expect("path"),
                FieldPath::parse("/a~1b").expect("path"),
                FieldPath::parse("/missing/deep").expect("path"),
            ],
        };
        let got = texts(
            &format,
            json!({"prompt": "p", "turns": [{"text": "one"}, {"text": "two"}, {}], "a/b": "slash"}),
        );
        assert_eq!(
            got.iter()
                .map(|(p, _, t)| (p.as_str(), t.as_str()))
                .collect::<Vec<_>>(),
            [
                ("/prompt", "p"),
                ("/turns/0/text", "one"),
                ("/turns/1/text", "two"),
                ("/a~1b", "slash")
            ]
        );
        let err = format
            .extract(doc(&json!({"prompt": {"nested": "hidden"}})))
            .expect_err("object");
        assert_eq!(err.pointer, "/prompt");
        assert!(FieldPath::parse("prompt").is_none());
    }
}
