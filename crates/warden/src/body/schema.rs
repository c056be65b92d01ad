//! JSON Schema validation of a parsed body (draft 2020-12 unless the schema's `$schema` says
//! otherwise), between JSON safety and format extraction (DESIGN.md §2 step 14).
//!
//! Schemas are compiled once, at configuration load, and must be self-contained: the crate is
//! built without its remote and file `$ref` retrievers, so a `$ref` outside the document is a
//! configuration error, never a fetch (SSRF) at load or request time. `pattern` runs on the
//! linear-time `regex` engine, not a backtracking one: a schema's pattern cannot be turned into
//! a ReDoS by the bodies it checks. `format` is asserted, not only annotated.
//!
//! Failures list JSON pointers with short messages built from the schema's keywords and limits,
//! never from the submitted values (jsonschema's own messages quote them).

use std::borrow::Cow;

use jsonschema::error::ValidationErrorKind;
use jsonschema::json::{Array, Json, Node, NodeIdentity, Object};
use jsonschema::{JsonType, PatternOptions, Validator};
use serde_json::Value;

use super::json::{Document, Items, ItemsIter, Members, MembersIter, NodeRef, View};
use crate::rejection::FieldError;

/// A compiled JSON Schema.
#[derive(Debug)]
pub struct Schema {
    validator: Validator<Body>,
}

/// Why a schema does not compile.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(String);

impl Schema {
    /// Compiles `schema`.
    pub fn compile(schema: &Value) -> Result<Schema, SchemaError> {
        jsonschema::options_for::<Body>()
            .should_validate_formats(true)
            .with_pattern_options(PatternOptions::regex())
            .build(schema)
            .map(|validator| Schema { validator })
            .map_err(|e| SchemaError(e.to_string()))
    }

    /// The first `max` violations of `document` (none: valid).
    pub fn violations(&self, document: &Document, max: usize) -> Vec<FieldError> {
        let root = document.root();
        if self.validator.is_valid(root) {
            return Vec::new();
        }
        self.validator
            .iter_errors(root)
            .take(max)
            .map(|error| FieldError {
                pointer: error.instance_path().as_str().to_owned(),
                message: describe(error.kind()),
            })
            .collect()
    }
}

// === The schema crate reads documents in place ===

/// [`Document`] as a representation the validator walks directly: no `serde_json::Value` is
/// built for validation.
#[derive(Debug)]
pub struct Body;

impl Json for Body {
    type Node<'a> = NodeRef<'a>;
    type PreparedKey = String;
    type StringBuffer = Option<Document>;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>(
        buffer: &mut Option<Document>,
        string: &str,
        f: impl FnOnce(NodeRef<'_>) -> T,
    ) -> T {
        f(buffer.insert(Document::string(string)).root())
    }
}

impl<'a> Node<'a, Body> for NodeRef<'a> {
    type Object = Members<'a>;
    type Array = Items<'a>;
    type Number = &'a serde_json::Number;

    fn as_object(&self) -> Option<Members<'a>> {
        match self.view() {
            View::Object(members) => Some(members),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<Items<'a>> {
        match self.view() {
            View::Array(items) => Some(items),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        self.as_str().map(Cow::Borrowed)
    }

    fn as_number(&self) -> Option<&'a serde_json::Number> {
        match self.view() {
            View::Number(number) => Some(number),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.view() {
            View::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        NodeRef::is_null(self)
    }

    fn json_type(&self) -> JsonType {
        match self.view() {
            View::Null => JsonType::Null,
            View::Bool(_) => JsonType::Boolean,
            View::Number(_) => JsonType::Number,
            View::String(_) => JsonType::String,
            View::Array(_) => JsonType::Array,
            View::Object(_) => JsonType::Object,
        }
    }

    // Cold paths only: error instances, `const`/`enum` comparisons, `uniqueItems`.
    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(NodeRef::to_value(self))
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(self.address()))
    }
}

impl<'a> Object<'a, Body> for Members<'a> {
    type Node = NodeRef<'a>;
    type MemberName = &'a str;
    type MembersIter = MembersIter<'a>;

    fn len(&self) -> usize {
        Members::len(self)
    }

    fn get(&self, key: &String) -> Option<NodeRef<'a>> {
        Members::get(self, key)
    }

    fn members(&self) -> MembersIter<'a> {
        self.iter()
    }
}

impl<'a> Array<'a, Body> for Items<'a> {
    type Node = NodeRef<'a>;
    type ElementsIter = ItemsIter<'a>;

    fn len(&self) -> usize {
        Items::len(self)
    }

    fn elements(&self) -> ItemsIter<'a> {
        self.iter()
    }
}

/// A message from the schema side of a failure only.
fn describe(kind: &ValidationErrorKind) -> String {
    use ValidationErrorKind as K;
    match kind {
        K::Type { kind } => format!("must be of type {}", type_names(kind)),
        K::Required { property } => match property.as_str() {
            Some(name) => format!("missing required property {name:?}"),
            None => "missing a required property".into(),
        },
        K::AdditionalProperties { .. } | K::UnevaluatedProperties { .. } => {
            "has properties the schema does not allow".into()
        }
        K::AdditionalItems { .. } | K::UnevaluatedItems { .. } => {
            "has items the schema does not allow".into()
        }
        K::Enum { .. } => "is not one of the allowed values".into(),
        K::Constant { .. } => "is not the required value".into(),
        K::MaxLength { limit } => format!("must be at most {limit} characters long"),
        K::MinLength { limit } => format!("must be at least {limit} characters long"),
        K::MaxItems { limit } => format!("must have at most {limit} items"),
        K::MinItems { limit } => format!("must have at least {limit} items"),
        K::MaxProperties { limit } => format!("must have at most {limit} properties"),
        K::MinProperties { limit } => format!("must have at least {limit} properties"),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        K::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        K::Pattern { .. } => "does not match the required pattern".into(),
        K::Format { format } => format!("is not a valid {format}"),
        K::UniqueItems => "must not repeat items".into(),
        K::FalseSchema => "is not allowed here".into(),
        _ => format!("does not satisfy {}", kind.keyword()),
    }
}

fn type_names(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(one) => one.to_string(),
        jsonschema::error::TypeKind::Multiple(set) => set
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::json::{JsonLimits, parse};
    use serde_json::json;

    fn doc(value: &Value) -> Document {
        let bytes = serde_json::to_vec(value).expect("json");
        parse(&bytes, &JsonLimits::default()).expect("valid")
    }

    fn schema() -> Schema {
        Schema::compile(&json!({
            "type": "object",
            "required": ["task", "priority"],
            "additionalProperties": false,
            "properties": {
                "task": {"type": "string", "minLength": 3, "pattern": "^[a-z ]+$"},
                "priority": {"type": "integer", "minimum": 1, "maximum": 5},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "email": {"type": "string", "format": "email"}
            }
        }))
        .expect("schema")
    }

    #[test]
    fn violations_name_pointers_and_never_the_values() {
        let body = json!({
            "task": "SECRET-VALUE-1",
            "priority": 99,
            "tags": ["a", 7, "c"],
            "email": "not-an-email-SECRET",
            "extra-SECRET": 1
        });
        let violations = schema().violations(&doc(&body), 20);
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        for expected in ["/task", "/priority", "/tags", "/tags/1", "/email", ""] {
            assert!(pointers.contains(&expected), "{expected} in {violations:?}");
        }
        let text = format!("{violations:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("must be at most 5"), "{text}");
        assert!(
            schema()
                .violations(&doc(&json!({"task": "ok then", "priority": 2})), 20)
                .is_empty()
        );
        assert_eq!(schema().violations(&doc(&json!({})), 1).len(), 1);
        assert_eq!(
            schema().violations(&doc(&json!({"priority": 1})), 5)[0].message,
            "missing required property \"task\""
        );
    }

    #[test]
    fn remote_and_file_refs_are_configuration_errors() {
        for reference in [
            "http://127.0.0.1:1/schema.json",
            "https://example.com/schema.json",
            "file:///etc/passwd",
        ] {
            let error = Schema::compile(&json!({"$ref": reference})).expect_err(reference);
            assert!(!error.to_string().is_empty());
        }
        // Local references within the document work.
        let local = Schema::compile(&json!({
            "$defs": {"n": {"type": "integer"}},
            "properties": {"x": {"$ref": "#/$defs/n"}}
        }))
        .expect("local ref");
        assert_eq!(
            local.violations(&doc(&json!({"x": "1"})), 5)[0].pointer,
            "/x"
        );
    }

    #[test]
    fn patterns_run_in_linear_time_engines_only() {
        // A backreference needs a backtracking engine; the linear engine refuses the schema.
        assert!(Schema::compile(&json!({"pattern": "^(a+)\\1$"})).is_err());
        let classic =
            Schema::compile(&json!({"type": "string", "pattern": "^(a+)+$"})).expect("compiles");
        let hostile = format!("{}!", "a".repeat(50_000));
        assert_eq!(classic.violations(&doc(&json!(hostile)), 1).len(), 1);
    }
}
