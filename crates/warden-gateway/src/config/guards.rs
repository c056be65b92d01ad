//! `guards:` and `routes[].guards` — content rules over what a request asks for. Today: the
//! model allow/deny lists (the global ones, replaced as a whole by a route's own) and the
//! default `max_input_chars` of routes with body rules.

use std::sync::Arc;

use serde::Deserialize;
use warden::guard::models::ModelRules;

use super::toolkit::Compiler;

/// `guards:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGuards {
    /// Most characters over the extracted input texts of a request (routes with body rules).
    pub max_input_chars: Option<u64>,
    /// Model allow/deny.
    pub models: Option<RawModels>,
}

/// `routes[].guards:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouteGuards {
    /// This route's model rules, replacing `guards.models`.
    pub models: Option<RawModels>,
}

/// `guards.models:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawModels {
    /// `provider:model` globs that may be used (absent: any not denied).
    pub allow: Option<Vec<String>>,
    /// `provider:model` globs that may not (wins over allow).
    pub deny: Vec<String>,
}

/// Compiled `guards:`.
#[derive(Clone, Debug, Default)]
pub struct GuardsConfig {
    /// Default `max_input_chars` of routes with body rules.
    pub max_input_chars: Option<usize>,
    /// Default model rules of routes with body rules.
    pub models: Option<Arc<ModelRules>>,
}

/// Compiles `guards:`.
pub fn compile(c: &mut Compiler, raw: &RawGuards) -> GuardsConfig {
    GuardsConfig {
        max_input_chars: raw
            .max_input_chars
            .map(|n| c.count("guards.max_input_chars", Some(n), 1)),
        models: raw
            .models
            .as_ref()
            .and_then(|m| compile_models(c, "guards.models", m)),
    }
}

/// Compiles a model allow/deny block at `path`.
pub fn compile_models(c: &mut Compiler, path: &str, raw: &RawModels) -> Option<Arc<ModelRules>> {
    if raw.allow.as_ref().is_some_and(Vec::is_empty) {
        c.error(
            format!("{path}.allow"),
            "an empty allow list denies every model; list patterns or leave allow out",
        );
        return None;
    }
    match ModelRules::new(raw.allow.as_deref(), &raw.deny) {
        Ok(rules) => Some(Arc::new(rules)),
        Err(e) => {
            c.error(path.to_owned(), e.to_string());
            None
        }
    }
}
