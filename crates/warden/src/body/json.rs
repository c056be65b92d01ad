//! JSON safety: one pass over a request body that parses it and enforces the limits that keep a
//! validator and the upstream reading the same document.
//!
//! Runs first among the body rules (DESIGN.md §2 step 14), on the buffered bytes. It refuses what
//! parsers disagree on or what exhausts memory: duplicate object keys at any depth (compared
//! after unescaping, so `"a"` and `"\u0061"` collide — the parser-differential behind several
//! gateway bypasses), nesting deeper than a limit, objects with too many keys, arrays with too
//! many items, too many values in all, long strings, NUL characters, invalid UTF-8, lone
//! surrogates (serde_json refuses them while decoding), and data after the value. The result is a
//! [`Document`] that schema validation and format extraction read; nothing parses the same bytes
//! again, and the bytes forwarded are the bytes parsed. A document does not copy its strings: a
//! string without escapes is a span of the body. Nor does it allocate per container: the items
//! of every array sit in one arena, the members of every object in another, each container's
//! children side by side (numbers in a third), so a document is a handful of allocations however
//! many values it holds. serde_json stays the tokenizer: the SIMD parsers measured against it
//! were faster but disagreed with it on hostile input (see BENCHMARKS.md).
//!
//! Nesting is bounded twice: by `max_depth` here, and by serde_json's own recursion limit (128),
//! so even 100,000 levels end as an error, never as a stack overflow.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// Structural limits on a JSON body. The defaults are the secure ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonLimits {
    /// Deepest nesting of arrays and objects (default 32; at most [`JsonLimits::MAX_DEPTH`]).
    pub max_depth: usize,
    /// Most keys in one object (default 1,000).
    pub max_keys: usize,
    /// Most items in one array (default 10,000).
    pub max_items: usize,
    /// Longest string or key, in bytes after unescaping (default 1 MiB).
    pub max_string_bytes: usize,
    /// Most values in the whole document (default 100,000): bounds the memory of the tree.
    pub max_values: usize,
}

impl JsonLimits {
    /// The deepest `max_depth` allowed: below serde_json's recursion limit, so this limit is
    /// the one that answers.
    pub const MAX_DEPTH: usize = 100;
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_depth: 32,
            max_keys: 1_000,
            max_items: 10_000,
            max_string_bytes: 1024 * 1024,
            max_values: 100_000,
        }
    }
}

/// Why a body is not acceptable JSON. Messages name the rule, never the submitted content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON at all, invalid UTF-8, a lone surrogate, or any other syntax error.
    #[error("not valid JSON ({0})")]
    Syntax(String),
    /// Data follows the JSON value.
    #[error("data after the JSON value")]
    Trailing,
    /// An object has the same key twice (after unescaping).
    #[error("duplicate object key")]
    DuplicateKey,
    /// Nesting deeper than the limit.
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
    /// An object with more keys than the limit.
    #[error("an object has more than {0} keys")]
    TooManyKeys(usize),
    /// An array with more items than the limit.
    #[error("an array has more than {0} items")]
    TooManyItems(usize),
    /// More values in the document than the limit.
    #[error("more than {0} values")]
    TooManyValues(usize),
    /// A string or key longer than the limit.
    #[error("a string is longer than {0} bytes")]
    StringTooLong(usize),
    /// A string or key contains U+0000.
    #[error("a string contains a NUL character")]
    Nul,
}

/// Parses `bytes` as one JSON document within `limits`.
pub fn parse(bytes: &[u8], limits: &JsonLimits) -> Result<Document, JsonError> {
    // Spans are 32-bit offsets into the body followed by its unescaped copies (at most as long
    // again), so a body may hold up to 2 GiB: far past any body limit.
    if bytes.len() > (u32::MAX / 2) as usize {
        return Err(JsonError::Syntax("body too large to parse".to_owned()));
    }
    // JSON text is UTF-8 as a whole (RFC 8259 §8.1). Validated once here, the document's
    // strings are then plain slices of it: no access validates again.
    // SIMD validation takes a third of the standard library's time on a 100 KB body; the
    // standard library then says where a refused body goes wrong.
    let text: Arc<str> = match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => Arc::from(text),
        Err(_) => {
            let at = std::str::from_utf8(bytes)
                .err()
                .map_or(0, |e| e.valid_up_to());
            return Err(JsonError::Syntax(format!("invalid UTF-8 at byte {at}")));
        }
    };
    // A value takes a few bytes at least; a guess of one node per 64 bytes saves most of the
    // arenas' regrowth copies without reserving much for documents of few, long strings.
    let guess = (bytes.len() / 64).min(limits.max_values);
    let mut builder = Builder {
        limits,
        text: &text,
        values: 0,
        violation: None,
        unescaped: String::new(),
        numbers: Vec::new(),
        items: Vec::with_capacity(guess / 2),
        members: Vec::with_capacity(guess),
        open_items: Vec::with_capacity(guess / 4),
        open_members: Vec::with_capacity(guess / 4),
        root: Node::Null,
    };
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let seed = Seed {
        builder: &mut builder,
        depth: 0,
        slot: Slot::Root,
    };
    if let Err(error) = seed.deserialize(&mut deserializer) {
        // A rule of ours stopped the parse: report the rule, not serde's wrapper around it.
        return Err(builder
            .violation
            .take()
            .unwrap_or_else(|| JsonError::Syntax(syntax_message(&error))));
    }
    deserializer.end().map_err(|_| JsonError::Trailing)?;
    let Builder {
        unescaped,
        numbers,
        items,
        members,
        root,
        ..
    } = builder;
    Ok(Document {
        text,
        unescaped,
        numbers,
        items,
        members,
        root,
    })
}

/// serde_json's position and category, without its message (which may quote the input).
fn syntax_message(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Eof => "unexpected end",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid value",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}

// === Document ===

/// A parsed body. Strings are not copied one by one: a string without escapes is a span of the
/// body's text, an escaped one a span of one side buffer. Containers are blocks of two arenas,
/// numbers sit in a third: a node is 12 bytes, a member 20.
#[derive(Clone, Debug)]
pub struct Document {
    text: Arc<str>,
    /// Escaped strings, unescaped; addressed after the end of `text`.
    unescaped: String,
    numbers: Vec<Number>,
    /// The items of every array, each array's in one block.
    items: Vec<Node>,
    /// The members of every object, each object's in one block.
    members: Vec<(Span, Node)>,
    root: Node,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    /// An index into [`Document::numbers`].
    Number(u32),
    String(Span),
    /// Its items: a block of [`Document::items`].
    Array(Block),
    /// Its members: a block of [`Document::members`].
    Object(Block),
}

/// Where a container's children are in their arena.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    start: u32,
    end: u32,
}

impl Block {
    #[inline]
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where a string is: a range of the body's text followed by the side buffer (a range past the
/// text's end is in the side buffer). No two strings of a document share a span, so a span also
/// names its string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Its length in bytes.
    #[inline]
    fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// The string this span names in `text` followed by `unescaped`.
    #[inline]
    fn of<'a>(self, text: &'a str, unescaped: &'a str) -> &'a str {
        let (start, end) = (self.start as usize, self.end as usize);
        // Every span was a `str` when the parser handed it over.
        match start.checked_sub(text.len()) {
            None => text.get(start..end),
            Some(side) => unescaped.get(side..end - text.len()),
        }
        .unwrap_or_default()
    }
}

impl Document {
    /// The body text this document was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The body text, shared: forwarding it keeps one copy of the body in memory.
    pub fn shared_text(&self) -> Arc<str> {
        self.text.clone()
    }

    /// The top-level value.
    pub fn root(&self) -> NodeRef<'_> {
        NodeRef {
            document: self,
            node: &self.root,
        }
    }

    /// The value at an RFC 6901 pointer.
    pub fn lookup(&self, pointer: &str) -> Option<NodeRef<'_>> {
        if pointer.is_empty() {
            return Some(self.root());
        }
        let mut current = self.root();
        for segment in pointer.strip_prefix('/')?.split('/') {
            current = match current.view() {
                View::Object(members) if segment.contains('~') => {
                    members.get(&segment.replace("~1", "/").replace("~0", "~"))?
                }
                View::Object(members) => members.get(segment)?,
                View::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// The RFC 6901 pointer of the string at `target` (one walk of the document: pointers are
    /// written when asked for, not for every extracted text).
    pub(crate) fn pointer_to(&self, target: Span) -> Option<String> {
        enum Step {
            Key(Span),
            Index(usize),
        }
        fn find(document: &Document, node: &Node, target: Span, path: &mut Vec<Step>) -> bool {
            match node {
                Node::String(span) => *span == target,
                Node::Array(block) => document.items(*block).iter().enumerate().any(|(i, item)| {
                    path.push(Step::Index(i));
                    let found = find(document, item, target, path);
                    if !found {
                        path.pop();
                    }
                    found
                }),
                Node::Object(block) => document.members(*block).iter().any(|(key, value)| {
                    path.push(Step::Key(*key));
                    let found = find(document, value, target, path);
                    if !found {
                        path.pop();
                    }
                    found
                }),
                _ => false,
            }
        }
        let mut path = Vec::new();
        if !find(self, &self.root, target, &mut path) {
            return None;
        }
        let mut pointer = String::new();
        for step in path {
            match step {
                Step::Key(key) => push_key(&mut pointer, self.text_at(key)),
                Step::Index(index) => push_index(&mut pointer, index),
            }
        }
        Some(pointer)
    }

    /// A document of one string (schema validation of property names).
    pub(crate) fn string(text: &str) -> Document {
        Document {
            text: Arc::from(text),
            unescaped: String::new(),
            numbers: Vec::new(),
            items: Vec::new(),
            members: Vec::new(),
            // Property names are short: `u32` holds any the schema validator hands over.
            root: Node::String(Span {
                start: 0,
                end: u32::try_from(text.len()).unwrap_or(u32::MAX),
            }),
        }
    }

    /// The document as a `serde_json::Value` (a copy; for rewrites and tests).
    pub fn to_value(&self) -> Value {
        self.root().to_value()
    }

    /// The string at `span` (a key's, or one from [`NodeRef::string_span`]).
    #[inline]
    pub(crate) fn text_at(&self, span: Span) -> &str {
        span.of(&self.text, &self.unescaped)
    }

    #[inline]
    fn items(&self, block: Block) -> &[Node] {
        self.items.get(block.range()).unwrap_or_default()
    }

    #[inline]
    fn members(&self, block: Block) -> &[(Span, Node)] {
        self.members.get(block.range()).unwrap_or_default()
    }
}

/// Appends `/key` to an RFC 6901 pointer, escaping `~` and `/`.
pub(crate) fn push_key(pointer: &mut String, key: &str) {
    pointer.push('/');
    if key.bytes().any(|b| b == b'~' || b == b'/') {
        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
    } else {
        pointer.push_str(key);
    }
}

/// Appends `/index` to an RFC 6901 pointer.
pub(crate) fn push_index(pointer: &mut String, index: usize) {
    pointer.push('/');
    pointer.push_str(itoa::Buffer::new().format(index));
}

/// One value of a [`Document`].
#[derive(Clone, Copy, Debug)]
pub struct NodeRef<'a> {
    pub(crate) document: &'a Document,
    pub(crate) node: &'a Node,
}

/// What a [`NodeRef`] holds.
#[derive(Clone, Copy, Debug)]
pub enum View<'a> {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number.
    Number(&'a Number),
    /// A string, unescaped.
    String(&'a str),
    /// An array.
    Array(Items<'a>),
    /// An object.
    Object(Members<'a>),
}

impl<'a> NodeRef<'a> {
    /// What this value is.
    // Always inlined: the validator calls it per node, and a returned `View` read back from
    // memory stalls on store forwarding (measured: schema validation 2x slower out of line).
    #[inline(always)]
    pub fn view(&self) -> View<'a> {
        let document = self.document;
        match *self.node {
            Node::Null => View::Null,
            Node::Bool(b) => View::Bool(b),
            Node::Number(n) => match document.numbers.get(n as usize) {
                Some(n) => View::Number(n),
                None => View::Null,
            },
            Node::String(span) => View::String(document.text_at(span)),
            Node::Array(block) => View::Array(Items {
                document,
                items: document.items(block),
            }),
            Node::Object(block) => View::Object(Members {
                document,
                members: document.members(block),
            }),
        }
    }

    /// The string, if this is one.
    #[inline]
    pub fn as_str(&self) -> Option<&'a str> {
        match self.node {
            Node::String(span) => Some(self.document.text_at(*span)),
            _ => None,
        }
    }

    /// Where the string is, if this is one.
    pub(crate) fn string_span(&self) -> Option<Span> {
        match self.node {
            Node::String(span) => Some(*span),
            _ => None,
        }
    }

    /// The number as a `u64`, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self.view() {
            View::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// Where this node lives (stable while the document does): its identity for the validator.
    pub(crate) fn address(&self) -> usize {
        std::ptr::from_ref::<Node>(self.node) as usize
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self.node, Node::Null)
    }

    /// A copy as a `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self.view() {
            View::Null => Value::Null,
            View::Bool(b) => Value::Bool(b),
            View::Number(n) => Value::Number(n.clone()),
            View::String(s) => Value::String(s.to_owned()),
            View::Array(items) => Value::Array(items.iter().map(|i| i.to_value()).collect()),
            View::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// The items of an array.
#[derive(Clone, Copy, Debug)]
pub struct Items<'a> {
    document: &'a Document,
    items: &'a [Node],
}

impl<'a> Items<'a> {
    /// How many.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item at `index`.
    #[inline]
    pub fn get(&self, index: usize) -> Option<NodeRef<'a>> {
        let document = self.document;
        self.items.get(index).map(|node| NodeRef { document, node })
    }

    /// Every item, in order.
    pub fn iter(&self) -> ItemsIter<'a> {
        ItemsIter {
            document: self.document,
            items: self.items.iter(),
        }
    }
}

/// The members of an object, in document order (keys are unique).
#[derive(Clone, Copy, Debug)]
pub struct Members<'a> {
    document: &'a Document,
    members: &'a [(Span, Node)],
}

impl<'a> Members<'a> {
    /// How many.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<NodeRef<'a>> {
        let document = self.document;
        self.members
            .iter()
            // Lengths first: most keys are told apart without reading the body.
            .find(|(name, _)| name.len() == key.len() && document.text_at(*name) == key)
            .map(|(_, node)| NodeRef { document, node })
    }

    /// Every member, in document order.
    pub fn iter(&self) -> MembersIter<'a> {
        MembersIter {
            document: self.document,
            members: self.members.iter(),
        }
    }
}

/// The items of an [`Items`].
#[derive(Clone, Debug)]
pub struct ItemsIter<'a> {
    document: &'a Document,
    items: std::slice::Iter<'a, Node>,
}

impl<'a> Iterator for ItemsIter<'a> {
    type Item = NodeRef<'a>;
    #[inline]
    fn next(&mut self) -> Option<NodeRef<'a>> {
        let document = self.document;
        self.items.next().map(|node| NodeRef { document, node })
    }
}

/// The members of a [`Members`].
#[derive(Clone, Debug)]
pub struct MembersIter<'a> {
    document: &'a Document,
    members: std::slice::Iter<'a, (Span, Node)>,
}

impl<'a> Iterator for MembersIter<'a> {
    type Item = (&'a str, NodeRef<'a>);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let document = self.document;
        self.members
            .next()
            .map(|(name, node)| (document.text_at(*name), NodeRef { document, node }))
    }
}

// === Parsing ===

/// What the parse has built so far. A container's children wait on an open stack until it
/// closes, then move to their arena as one block.
struct Builder<'a> {
    limits: &'a JsonLimits,
    /// The body: a borrowed string's span is its offset in it.
    text: &'a str,
    values: usize,
    violation: Option<JsonError>,
    unescaped: String,
    numbers: Vec<Number>,
    items: Vec<Node>,
    members: Vec<(Span, Node)>,
    open_items: Vec<Node>,
    open_members: Vec<(Span, Node)>,
    root: Node,
}

impl Builder<'_> {
    fn refuse<E: de::Error>(&mut self, violation: JsonError) -> E {
        let message = violation.to_string();
        self.violation = Some(violation);
        E::custom(message)
    }

    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(self.refuse(JsonError::TooManyValues(self.limits.max_values)));
        }
        Ok(())
    }

    /// Checks a string and records where it is: in the body if `borrowed` from it, else in the
    /// side buffer.
    fn string<E: de::Error>(&mut self, text: &str, borrowed: bool) -> Result<Span, E> {
        if text.len() > self.limits.max_string_bytes {
            return Err(self.refuse(JsonError::StringTooLong(self.limits.max_string_bytes)));
        }
        let base = self.text.as_ptr() as usize;
        let address = text.as_ptr() as usize;
        let (start, end) =
            if borrowed && address >= base && address + text.len() <= base + self.text.len() {
                (address - base, address - base + text.len())
            } else {
                // A raw control character is a syntax error inside a JSON string, so only an
                // escaped string can hold a NUL.
                if text.as_bytes().contains(&0) {
                    return Err(self.refuse(JsonError::Nul));
                }
                let start = self.text.len() + self.unescaped.len();
                self.unescaped.push_str(text);
                (start, self.text.len() + self.unescaped.len())
            };
        // Both ends are below twice the body's length, which `parse` keeps within `u32`.
        Ok(Span {
            start: start as u32,
            end: end as u32,
        })
    }

    fn text_at(&self, span: Span) -> &str {
        span.of(self.text, &self.unescaped)
    }

    fn put(&mut self, slot: Slot, node: Node) {
        match slot {
            Slot::Root => self.root = node,
            Slot::Item => self.open_items.push(node),
            Slot::Member(key) => self.open_members.push((key, node)),
        }
    }

    /// The block of the items opened at `mark`, moved to their arena.
    fn close_items(&mut self, mark: usize) -> Block {
        let start = self.items.len() as u32;
        // Nodes are `Copy`: one copy of the block and a truncate beat a `Drain`.
        self.items
            .extend_from_slice(self.open_items.get(mark..).unwrap_or_default());
        self.open_items.truncate(mark);
        Block {
            start,
            end: self.items.len() as u32,
        }
    }

    /// The block of the members opened at `mark`, moved to their arena.
    fn close_members(&mut self, mark: usize) -> Block {
        let start = self.members.len() as u32;
        self.members
            .extend_from_slice(self.open_members.get(mark..).unwrap_or_default());
        self.open_members.truncate(mark);
        Block {
            start,
            end: self.members.len() as u32,
        }
    }
}

/// One value at `depth` (the number of containers around it), and where it goes once parsed.
/// A value is put in its place by the visitor instead of being returned up through serde's
/// layers: the parse moves each node once into its open stack, once into its arena.
struct Seed<'b, 'a> {
    builder: &'b mut Builder<'a>,
    depth: usize,
    slot: Slot,
}

#[derive(Clone, Copy)]
enum Slot {
    Root,
    /// The next item of the innermost open array.
    Item,
    /// The value of this key of the innermost open object.
    Member(Span),
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seed<'_, '_> {
    fn scalar<E: de::Error>(self, node: Node) -> Result<(), E> {
        self.builder.count()?;
        self.builder.put(self.slot, node);
        Ok(())
    }

    /// Counts a container and checks its depth.
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.builder.count()?;
        let limit = self.builder.limits.max_depth;
        if self.depth >= limit {
            return Err(self.builder.refuse(JsonError::TooDeep(limit)));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Node::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // serde_json refuses non-finite numbers while parsing, so this always holds a number.
        match Number::from_f64(v) {
            Some(n) => self.number(n),
            None => self.scalar(Node::Null),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        let span = self.builder.string(v, true)?;
        self.scalar(Node::String(span))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let span = self.builder.string(v, false)?;
        self.scalar(Node::String(span))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        let Seed {
            builder,
            depth,
            slot,
        } = self;
        let max = builder.limits.max_items;
        let mark = builder.open_items.len();
        while seq
            .next_element_seed(Seed {
                builder: &mut *builder,
                depth: depth + 1,
                slot: Slot::Item,
            })?
            .is_some()
        {
            // Nested containers have closed: what is above the mark is this array's.
            if builder.open_items.len() - mark > max {
                return Err(builder.refuse(JsonError::TooManyItems(max)));
            }
        }
        let block = builder.close_items(mark);
        builder.put(slot, Node::Array(block));
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        let Seed {
            builder,
            depth,
            slot,
        } = self;
        let max = builder.limits.max_keys;
        let mark = builder.open_members.len();
        // Past 16 keys a set answers, so 1,000 keys cost no half-million comparisons.
        let mut seen: Option<HashSet<Cow<'de, str>>> = None;
        while let Some((span, key)) = map.next_key_seed(Key(&mut *builder))? {
            let count = builder.open_members.len() - mark;
            if count == max {
                return Err(builder.refuse(JsonError::TooManyKeys(max)));
            }
            // Keys arrive unescaped, so every spelling of one key collides here, before its
            // value is parsed.
            let duplicate = match &mut seen {
                Some(set) => !set.insert(key),
                None => {
                    let siblings = builder.open_members.get(mark..).unwrap_or_default();
                    let duplicate = siblings.iter().any(|(s, _)| builder.text_at(*s) == key);
                    if !duplicate && count == 16 {
                        let mut set: HashSet<Cow<'de, str>> = siblings
                            .iter()
                            .map(|(s, _)| Cow::Owned(builder.text_at(*s).to_owned()))
                            .collect();
                        set.insert(key);
                        seen = Some(set);
                    }
                    duplicate
                }
            };
            if duplicate {
                return Err(builder.refuse(JsonError::DuplicateKey));
            }
            map.next_value_seed(Seed {
                builder: &mut *builder,
                depth: depth + 1,
                slot: Slot::Member(span),
            })?;
        }
        let block = builder.close_members(mark);
        builder.put(slot, Node::Object(block));
        Ok(())
    }
}

impl Seed<'_, '_> {
    fn number<E: de::Error>(self, n: Number) -> Result<(), E> {
        let index = self.builder.numbers.len() as u32;
        self.builder.numbers.push(n);
        self.scalar(Node::Number(index))
    }
}

/// An object key, held to the string rules: its span, and its text for the duplicate check
/// (borrowed from the body unless it had escapes).
struct Key<'b, 'a>(&'b mut Builder<'a>);

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = (Span, Cow<'de, str>);
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = (Span, Cow<'de, str>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok((self.0.string(v, true)?, Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((self.0.string(v, false)?, Cow::Owned(v.to_owned())))
    }
}

/// Whether a `Content-Type` names JSON: `application/json` or any `+json` type, with at most a
/// UTF-8 `charset` parameter (RFC 8259 JSON is UTF-8; another charset would be read differently
/// by the upstream).
pub fn is_json_media_type(value: &http::HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    if kind != "application" || !(subtype == "json" || subtype.ends_with("+json")) {
        return false;
    }
    parts.all(|parameter| {
        let Some((name, value)) = parameter.split_once('=') else {
            return parameter.trim().is_empty();
        };
        let value = value.trim().trim_matches('"');
        name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str, limits: &JsonLimits) -> Result<Value, JsonError> {
        parse(text.as_bytes(), limits).map(|d| d.to_value())
    }

    fn check(text: &str) -> Result<Value, JsonError> {
        parse_text(text, &JsonLimits::default())
    }

    #[test]
    fn accepts_ordinary_documents() {
        let value =
            check(r#"{"a": [1, -2, 3.5, true, null, "x\u00e9"], "b": {"c": "d"}}"#).expect("valid");
        assert_eq!(value["a"][5], "xé");
        assert_eq!(value["b"]["c"], "d");
        assert_eq!(check(" 7 ").expect("scalar"), 7);
    }

    #[test]
    fn duplicate_keys_collide_in_every_spelling_and_depth() {
        for text in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": 1, "\u0061": 2}"#,
            r#"{"x": [{"k": 1, "k": 1}]}"#,
            r#"{"x": {"y": {"\u006b": 1, "k": 2}}}"#,
        ] {
            assert_eq!(check(text), Err(JsonError::DuplicateKey), "{text}");
        }
    }

    #[test]
    fn limits_answer_with_their_own_error() {
        let limits = JsonLimits {
            max_depth: 3,
            max_keys: 2,
            max_items: 2,
            max_string_bytes: 4,
            max_values: 6,
        };
        let run = |text: &str| parse_text(text, &limits);
        assert_eq!(run("[[[1]]]").expect("depth 3"), serde_json::json!([[[1]]]));
        assert_eq!(run("[[[[1]]]]"), Err(JsonError::TooDeep(3)));
        assert_eq!(
            run(r#"{"a":1,"b":2,"c":3}"#),
            Err(JsonError::TooManyKeys(2))
        );
        assert_eq!(run("[1,2,3]"), Err(JsonError::TooManyItems(2)));
        assert_eq!(run(r#""abcde""#), Err(JsonError::StringTooLong(4)));
        assert_eq!(run(r#"{"abcde":1}"#), Err(JsonError::StringTooLong(4)));
        assert_eq!(run("[[1,1],[1,1]]"), Err(JsonError::TooManyValues(6)));
    }

    #[test]
    fn hostile_text_is_refused() {
        assert_eq!(check(r#"{"a":"x\u0000y"}"#), Err(JsonError::Nul));
        assert_eq!(check(r#"{"a\u0000":1}"#), Err(JsonError::Nul));
        assert_eq!(check(r#"{"a":1} {"a":2}"#), Err(JsonError::Trailing));
        assert_eq!(check(r#"{"a":1}x"#), Err(JsonError::Trailing));
        for text in [
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\ud800\u0041""#,
            "",
            "{",
            "nope",
            "[1,]",
            "NaN",
        ] {
            assert!(matches!(check(text), Err(JsonError::Syntax(_))), "{text:?}");
        }
        let invalid_utf8 = b"{\"a\":\"\xff\xfe\"}";
        assert!(matches!(
            parse(invalid_utf8, &JsonLimits::default()),
            Err(JsonError::Syntax(_))
        ));
    }

    #[test]
    fn a_hundred_thousand_levels_end_as_an_error() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(check(&deep), Err(JsonError::TooDeep(32)));
        let unlimited = JsonLimits {
            max_depth: JsonLimits::MAX_DEPTH,
            ..JsonLimits::default()
        };
        assert!(parse_text(&deep, &unlimited).is_err());
        let objects = r#"{"a":"#.repeat(100_000);
        assert_eq!(check(&objects), Err(JsonError::TooDeep(32)));
    }

    #[test]
    fn strings_are_spans_of_the_body_unless_escaped() {
        let many = (0..40)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",");
        for text in [
            r#"{"plain":"abc","esc\u0061ped":"x\ny","list":["a","\u00e9"]}"#.to_owned(),
            format!("{{{many}}}"),
        ] {
            let document = parse(text.as_bytes(), &JsonLimits::default()).expect("valid");
            let reference: Value = serde_json::from_str(&text).expect("reference");
            assert_eq!(document.to_value(), reference);
        }
        let document = parse(
            br#"{"plain":"abc","esc\u0061ped":"x\ny"}"#,
            &JsonLimits::default(),
        )
        .expect("valid");
        assert_eq!(
            document.lookup("/plain").and_then(|n| n.as_str()),
            Some("abc")
        );
        assert_eq!(
            document.lookup("/escaped").and_then(|n| n.as_str()),
            Some("x\ny")
        );
        assert!(document.lookup("/missing").is_none());
        // Only the escaped key and string were copied; the rest are spans of the body.
        assert_eq!(document.unescaped, "escapedx\ny");
        // Many keys switch the duplicate check to a set; it still collides.
        let many = (0..40)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            check(&format!("{{{many},\"k7\":0}}")),
            Err(JsonError::DuplicateKey)
        );
    }

    #[test]
    fn pointers_are_written_on_demand_with_rfc6901_escapes() {
        let document = parse(
            br#"{"a/b":[{"x~y":"one"},{"z":"tw\u006f"}],"n":[1,"three"]}"#,
            &JsonLimits::default(),
        )
        .expect("valid");
        for (pointer, text) in [
            ("/a~1b/0/x~0y", "one"),
            ("/a~1b/1/z", "two"),
            ("/n/1", "three"),
        ] {
            let span = document
                .lookup(pointer)
                .and_then(|n| n.string_span())
                .expect(pointer);
            assert_eq!(document.text_at(span), text);
            assert_eq!(document.pointer_to(span).as_deref(), Some(pointer));
        }
        // A span of another document names nothing here.
        let other = Document::string("elsewhere and longer than this document");
        let span = other.root().string_span().expect("string");
        assert_eq!(document.pointer_to(span), None);
    }

    #[test]
    fn syntax_errors_never_quote_the_input() {
        let Err(JsonError::Syntax(message)) = check(r#"{"secret-token": tru}"#) else {
            panic!("syntax error expected");
        };
        assert!(!message.contains("secret"), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn json_media_types() {
        let yes =
            |text: &str| is_json_media_type(&http::HeaderValue::from_str(text).expect("value"));
        assert!(yes("application/json"));
        assert!(yes("Application/JSON; charset=utf-8"));
        assert!(yes("application/vnd.api+json"));
        assert!(yes("application/json; charset=\"UTF-8\""));
        assert!(!yes("text/json"));
        assert!(!yes("application/jsonp"));
        assert!(!yes("application/json; charset=utf-16"));
        assert!(!yes("application/x-www-form-urlencoded"));
        assert!(!yes("multipart/form-data; boundary=x"));
        assert!(!yes("application/json; boundary=x"));
    }
}
