//! `routes[].body` — the route's body limit, and its body rules: declared format, text fields,
//! JSON Schema, provider, length limits, JSON safety limits and HTML sanitizing. A route with
//! any body rule buffers and checks its bodies (`warden::body::rules`); one with only
//! `max_bytes` streams them, counted.

use std::sync::Arc;

use serde::Deserialize;
use warden::body::format::{FieldPath, Format};
use warden::body::json::JsonLimits;
use warden::body::rules::BodyRules;
use warden::body::schema::Schema;

use super::guards::{
    GuardsConfig, RawRouteGuards, compile_data, compile_models, compile_output,
    compile_prompt_injection,
};
use super::toolkit::{Compiler, Scalar};

/// `routes[].body:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBody {
    /// Largest body for this route.
    pub max_bytes: Option<Scalar>,
    /// `json`, `openai_chat`, `openai_responses` or `anthropic_messages`.
    pub format: Option<String>,
    /// `format: json`: JSON pointers (`*` for every array item) of the fields with user text.
    pub text_fields: Vec<String>,
    /// A JSON Schema file (relative to the configuration file).
    pub schema: Option<String>,
    /// `provider` of `provider:model` for model rules (default: the format's).
    pub provider: Option<String>,
    /// Clean the text fields as HTML (default false).
    pub sanitize_html: Option<bool>,
    /// Most characters over all extracted texts (default: `guards.max_input_chars`).
    pub max_input_chars: Option<u64>,
    /// Most characters in any one extracted text.
    pub max_text_chars: Option<u64>,
    /// JSON safety limits.
    pub json: RawJsonLimits,
}

/// `routes[].body.json:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJsonLimits {
    /// Deepest nesting (default 32, at most 100).
    pub max_depth: Option<u64>,
    /// Most keys in one object (default 1,000).
    pub max_keys: Option<u64>,
    /// Most items in one array (default 10,000).
    pub max_items: Option<u64>,
    /// Longest string (default 1MiB).
    pub max_string_bytes: Option<Scalar>,
    /// Most values in the document (default 100,000).
    pub max_values: Option<u64>,
}

impl RawBody {
    /// Whether anything beyond `max_bytes` is declared.
    fn has_rules(&self) -> bool {
        self.format.is_some()
            || !self.text_fields.is_empty()
            || self.schema.is_some()
            || self.provider.is_some()
            || self.sanitize_html.is_some()
            || self.max_input_chars.is_some()
            || self.max_text_chars.is_some()
            || self.json.max_depth.is_some()
            || self.json.max_keys.is_some()
            || self.json.max_items.is_some()
            || self.json.max_string_bytes.is_some()
            || self.json.max_values.is_some()
    }
}

/// Compiles the body rules of `routes[i]` (`None`: the body streams unchecked but counted).
pub fn compile(
    c: &mut Compiler,
    i: usize,
    raw: Option<&RawBody>,
    route_guards: Option<&RawRouteGuards>,
    guards: &GuardsConfig,
) -> Option<BodyRules> {
    let at = |field: &str| format!("routes[{i}].body.{field}");
    let route_models = route_guards
        .and_then(|g| g.models.as_ref())
        .map(|m| compile_models(c, &format!("routes[{i}].guards.models"), m));
    let Some(raw) = raw.filter(|raw| raw.has_rules()) else {
        if route_models.is_some() {
            c.error(
                format!("routes[{i}].guards.models"),
                "model rules read the model from the body: declare body.format",
            );
        }
        if route_guards
            .is_some_and(|g| g.prompt_injection.is_some() || g.secrets.is_some() || g.pii.is_some())
        {
            c.error(
                format!("routes[{i}].guards.prompt_injection"),
                "inspection reads the texts of the body: declare body.format",
            );
        }
        return None;
    };
    let before = c.checkpoint();
    let format = match c.choose(
        &at("format"),
        raw.format.as_deref().unwrap_or("json"),
        &[
            ("json", 0),
            ("openai_chat", 1),
            ("openai_responses", 2),
            ("anthropic_messages", 3),
        ],
    ) {
        Some(0) => Format::Json {
            text_fields: raw
                .text_fields
                .iter()
                .enumerate()
                .filter_map(|(j, text)| {
                    let parsed = FieldPath::parse(text);
                    if parsed.is_none() {
                        c.error(
                            format!("routes[{i}].body.text_fields[{j}]"),
                            format!(
                                "expected a JSON pointer like /messages/*/content, got {text:?}"
                            ),
                        );
                    }
                    parsed
                })
                .collect(),
        },
        Some(1) => Format::OpenAiChat,
        Some(2) => Format::OpenAiResponses,
        Some(_) => Format::AnthropicMessages,
        None => Format::Json {
            text_fields: Vec::new(),
        },
    };
    let is_json = matches!(format, Format::Json { .. });
    if !is_json && !raw.text_fields.is_empty() {
        c.error(
            at("text_fields"),
            "applies to format: json (the LLM formats know their text fields)",
        );
    }
    let mut rules = BodyRules::new(format);
    if let Some(provider) = &raw.provider {
        if provider.is_empty()
            || !provider
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            c.error(
                at("provider"),
                format!("expected a provider name like openai, got {provider:?}"),
            );
        }
        rules.provider = Some(provider.to_ascii_lowercase());
    }
    rules.sanitize_html = raw.sanitize_html.unwrap_or(false);
    if rules.sanitize_html && is_json && raw.text_fields.is_empty() {
        c.error(
            at("sanitize_html"),
            "cleans the declared text fields: list them in text_fields",
        );
    }
    rules.max_input_chars = match raw.max_input_chars {
        Some(n) => Some(c.count(&at("max_input_chars"), Some(n), 1)),
        None => guards.max_input_chars,
    };
    rules.max_text_chars = raw
        .max_text_chars
        .map(|n| c.count(&at("max_text_chars"), Some(n), 1));
    rules.limits = compile_limits(c, i, &raw.json);
    rules.schema = raw
        .schema
        .as_deref()
        .and_then(|file| compile_schema(c, &at("schema"), file));
    // The global model rules cover the routes whose format names a model; a route's own
    // rules need such a format.
    rules.models = match route_models {
        Some(_) if is_json => {
            c.error(
                format!("routes[{i}].guards.models"),
                "model rules need a format that names the model (openai_chat, openai_responses, anthropic_messages)",
            );
            None
        }
        Some(models) => models,
        None if is_json => None,
        None => guards.models.clone(),
    };
    rules.prompt_guard = match route_guards.and_then(|g| g.prompt_injection.as_ref()) {
        Some(raw) => {
            compile_prompt_injection(c, &format!("routes[{i}].guards.prompt_injection"), raw)
        }
        None => guards.prompt_injection.clone(),
    };
    rules.data_guard = match route_guards.filter(|g| g.secrets.is_some() || g.pii.is_some()) {
        // A route's own secrets and PII keep the global blocked patterns.
        Some(g) => compile_data(
            c,
            &format!("routes[{i}].guards"),
            g.secrets.as_ref(),
            g.pii.as_ref(),
            guards.data.as_ref().and_then(|d| d.patterns.clone()),
        ),
        None => guards.data.clone(),
    };
    rules.output_guard = match route_guards.filter(|g| g.secrets.is_some() || g.pii.is_some()) {
        Some(g) => compile_output(
            c,
            &format!("routes[{i}].guards"),
            g.secrets.as_ref(),
            g.pii.as_ref(),
            rules.data_guard.as_ref().and_then(|d| d.detectors.as_ref()),
            &guards.output_settings,
        ),
        None => guards.output.clone(),
    };
    rules.classifiers = guards.classifiers_in.clone();
    (!c.failed_since(before)).then_some(rules)
}

fn compile_limits(c: &mut Compiler, i: usize, raw: &RawJsonLimits) -> JsonLimits {
    let at = |field: &str| format!("routes[{i}].body.json.{field}");
    let defaults = JsonLimits::default();
    let max_depth = c.count(&at("max_depth"), raw.max_depth, defaults.max_depth);
    if max_depth > JsonLimits::MAX_DEPTH {
        c.error(
            at("max_depth"),
            format!("at most {}", JsonLimits::MAX_DEPTH),
        );
    }
    JsonLimits {
        max_depth,
        max_keys: c.count(&at("max_keys"), raw.max_keys, defaults.max_keys),
        max_items: c.count(&at("max_items"), raw.max_items, defaults.max_items),
        max_string_bytes: usize::try_from(c.size(
            &at("max_string_bytes"),
            raw.max_string_bytes.as_ref(),
            defaults.max_string_bytes as u64,
        ))
        .unwrap_or(usize::MAX),
        max_values: c.count(&at("max_values"), raw.max_values, defaults.max_values),
    }
}

fn compile_schema(c: &mut Compiler, path: &str, file: &str) -> Option<Arc<Schema>> {
    let (resolved, bytes) = c.read(path, file)?;
    let document: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(document) => document,
        Err(e) => {
            c.error(
                path.to_owned(),
                format!("{}: not JSON: {e}", resolved.display()),
            );
            return None;
        }
    };
    match Schema::compile(&document) {
        Ok(schema) => Some(Arc::new(schema)),
        Err(e) => {
            c.error(path.to_owned(), format!("{}: {e}", resolved.display()));
            None
        }
    }
}
