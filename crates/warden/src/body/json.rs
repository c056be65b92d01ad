//! JSON safety: one pass over a request body that parses it and enforces the limits that keep a
//! validator and the upstream reading the same document.
//!
//! Runs first among the body rules (DESIGN.md §2 step 14), on the buffered bytes. It refuses what
//! parsers disagree on or what exhausts memory: duplicate object keys at any depth (compared
//! after unescaping, so `"a"` and `"\u0061"` collide — the parser-differential behind several
//! gateway bypasses), nesting deeper than a limit, objects with too many keys, arrays with too
//! many items, too many values in all, long strings, NUL characters, invalid UTF-8, lone
//! surrogates (serde_json refuses both while decoding), and data after the value. The result is a
//! `serde_json::Value` that schema validation and format extraction read; nothing parses the same
//! bytes again, and the bytes forwarded are the bytes parsed.
//!
//! Nesting is bounded twice: by `max_depth` here, and by serde_json's own recursion limit (128),
//! so even 100,000 levels end as an error, never as a stack overflow.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

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
pub fn parse(bytes: &[u8], limits: &JsonLimits) -> Result<Value, JsonError> {
    let context = Context {
        limits,
        values: Cell::new(0),
        violation: Cell::new(None),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let seed = Node {
        context: &context,
        depth: 0,
    };
    match seed.deserialize(&mut deserializer) {
        Ok(value) => {
            deserializer.end().map_err(|_| JsonError::Trailing)?;
            Ok(value)
        }
        // A rule of ours stopped the parse: report the rule, not serde's wrapper around it.
        Err(error) => Err(context
            .violation
            .take()
            .unwrap_or_else(|| JsonError::Syntax(syntax_message(&error)))),
    }
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

struct Context<'a> {
    limits: &'a JsonLimits,
    values: Cell<usize>,
    violation: Cell<Option<JsonError>>,
}

impl Context<'_> {
    fn refuse<E: de::Error>(&self, violation: JsonError) -> E {
        let message = violation.to_string();
        self.violation.set(Some(violation));
        E::custom(message)
    }

    fn count<E: de::Error>(&self) -> Result<(), E> {
        let n = self.values.get() + 1;
        self.values.set(n);
        if n > self.limits.max_values {
            return Err(self.refuse(JsonError::TooManyValues(self.limits.max_values)));
        }
        Ok(())
    }

    fn string<E: de::Error>(&self, text: &str) -> Result<(), E> {
        if text.len() > self.limits.max_string_bytes {
            return Err(self.refuse(JsonError::StringTooLong(self.limits.max_string_bytes)));
        }
        if text.as_bytes().contains(&0) {
            return Err(self.refuse(JsonError::Nul));
        }
        Ok(())
    }
}

/// One value at `depth` (the number of containers around it).
#[derive(Clone, Copy)]
struct Node<'c, 'a> {
    context: &'c Context<'a>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Node<'_, '_> {
    fn enter<E: de::Error>(&self) -> Result<Self, E> {
        self.context.count()?;
        let limit = self.context.limits.max_depth;
        if self.depth >= limit {
            return Err(self.context.refuse(JsonError::TooDeep(limit)));
        }
        Ok(Node {
            context: self.context,
            depth: self.depth + 1,
        })
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.context.count()?;
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.context.count()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.context.count()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.context.count()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.context.count()?;
        // serde_json refuses non-finite numbers while parsing, so this always holds a number.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.context.count()?;
        self.context.string(v)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.context.count()?;
        self.context.string(&v)?;
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let max = self.context.limits.max_items;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            if items.len() == max {
                return Err(self.context.refuse(JsonError::TooManyItems(max)));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let max = self.context.limits.max_keys;
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(Key(self.context))? {
            if object.len() == max {
                return Err(self.context.refuse(JsonError::TooManyKeys(max)));
            }
            // Keys arrive unescaped, so every spelling of one key collides here, before its
            // value is parsed.
            match object.entry(key) {
                serde_json::map::Entry::Occupied(_) => {
                    return Err(self.context.refuse(JsonError::DuplicateKey));
                }
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(inner)?);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// An object key, held to the string rules.
struct Key<'c, 'a>(&'c Context<'a>);

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.0.string(v)?;
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.0.string(&v)?;
        Ok(v)
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

    fn check(text: &str) -> Result<Value, JsonError> {
        parse(text.as_bytes(), &JsonLimits::default())
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
        let run = |text: &str| parse(text.as_bytes(), &limits);
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
        assert!(parse(deep.as_bytes(), &unlimited).is_err());
        let objects = r#"{"a":"#.repeat(100_000);
        assert_eq!(check(&objects), Err(JsonError::TooDeep(32)));
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
