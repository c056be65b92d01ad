//! `token_budgets:` and `routes[].token_budget` — token budgets for LLM routes (DESIGN.md §2
//! step 15): weighted prompt and output tokens per fixed window, keyed like rate limits, in the
//! rate-limit store (`rate_limits.store`: in-process or Redis), with tiers by role or by the
//! policy's `tier`. A budget applies only to routes whose `body.format` is an LLM format.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use warden::body::format::Format;
use warden::budget::{Budget, BudgetLimit};

use super::rate_limits::compile_key;
use super::toolkit::{Compiler, Scalar, Switch};

/// Largest limit: the Redis scripts compute in doubles, exact below 2^53.
const MAX_LIMIT: u64 = 1 << 53;

/// `token_budgets:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokenBudgets {
    /// The budget of every LLM route that sets none.
    pub default: Option<RawBudget>,
    /// Budgets chosen by role or by the policy's `tier`.
    pub tiers: BTreeMap<String, RawBudget>,
}

/// One budget.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBudget {
    /// Weighted tokens per window.
    pub limit: Option<u64>,
    /// The window (default 1h).
    pub per: Option<Scalar>,
    /// Key parts (default `identity`).
    pub key: Option<String>,
    /// Prompt and completion weights (default 1 and 1).
    pub weights: Option<RawWeights>,
    /// Send the `RateLimit` items (default true).
    pub headers: Option<bool>,
    /// Roles a tier is chosen for.
    pub roles: Vec<String>,
}

/// `weights:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeights {
    /// Per prompt token.
    pub prompt: Option<u64>,
    /// Per completion token (0: completions are not counted).
    pub completion: Option<u64>,
}

/// `routes[].token_budget`: a budget, or `off`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRouteBudget {
    /// `off` / `false`.
    Switch(Switch),
    /// A budget.
    Budget(RawBudget),
}

/// Compiled `token_budgets:`.
#[derive(Clone, Debug, Default)]
pub struct TokenBudgetsConfig {
    /// For LLM routes that set none.
    pub default: Option<BudgetLimit>,
    /// Tiers `(name, roles, budget)`.
    pub tiers: Vec<(String, Vec<String>, BudgetLimit)>,
}

/// Compiles `token_budgets:`.
pub fn compile(c: &mut Compiler, raw: &RawTokenBudgets) -> TokenBudgetsConfig {
    let default = raw
        .default
        .as_ref()
        .and_then(|b| compile_budget(c, "token_budgets.default", "tokens-default", b));
    let tiers = raw
        .tiers
        .iter()
        .filter_map(|(name, b)| {
            let path = format!("token_budgets.tiers.{name}");
            compile_budget(c, &path, &format!("tokens-{name}"), b)
                .map(|limit| (name.clone(), b.roles.clone(), limit))
        })
        .collect();
    TokenBudgetsConfig { default, tiers }
}

/// Whether budgets can count a route of this body format.
pub fn counts(format: &Format) -> bool {
    matches!(
        format,
        Format::OpenAiChat | Format::OpenAiResponses | Format::AnthropicMessages
    )
}

/// Compiles `routes[i].token_budget` for a route of `format` (`None`: no budget).
pub fn compile_route(
    c: &mut Compiler,
    i: usize,
    name: &str,
    raw: Option<&RawRouteBudget>,
    format: Option<&Format>,
    budgets: &TokenBudgetsConfig,
) -> Option<BudgetLimit> {
    let path = format!("routes[{i}].token_budget");
    let llm = format.is_some_and(counts);
    match raw {
        None => budgets.default.clone().filter(|_| llm),
        Some(RawRouteBudget::Switch(switch)) => {
            if switch.as_word() != "off" {
                c.error(
                    path,
                    format!("expected a budget or off, got {:?}", switch.as_word()),
                );
            }
            None
        }
        Some(RawRouteBudget::Budget(raw)) => {
            if !llm {
                c.error(
                    &path,
                    "needs body.format openai_chat, openai_responses or anthropic_messages: tokens are counted from the request's model and messages",
                );
                return None;
            }
            compile_budget(c, &path, &format!("tokens-{name}"), raw)
        }
    }
}

fn compile_budget(
    c: &mut Compiler,
    path: &str,
    name: &str,
    raw: &RawBudget,
) -> Option<BudgetLimit> {
    let before = c.checkpoint();
    let at = |field: &str| format!("{path}.{field}");
    let limit = match raw.limit {
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
        Some(_) => {
            c.error(at("limit"), format!("expected 1 to {MAX_LIMIT} tokens"));
            1
        }
        None => {
            c.error(at("limit"), "required: tokens per period");
            1
        }
    };
    let period = c.duration(&at("per"), raw.per.as_ref(), Duration::from_secs(3600));
    let weights = raw.weights.as_ref();
    let prompt_weight = weights.and_then(|w| w.prompt).unwrap_or(1);
    let output_weight = weights.and_then(|w| w.completion).unwrap_or(1);
    if prompt_weight == 0 && output_weight == 0 {
        c.error(
            at("weights"),
            "counts nothing: give prompt or completion a weight",
        );
    }
    if prompt_weight > 1000 || output_weight > 1000 {
        c.error(at("weights"), "weights above 1000 are not supported");
    }
    let key = compile_key(c, &at("key"), raw.key.as_deref().unwrap_or("identity"));
    if c.failed_since(before) {
        return None;
    }
    Some(BudgetLimit {
        name: name.to_owned(),
        budget: Budget {
            limit,
            period,
            prompt_weight,
            output_weight,
        },
        key,
        headers: raw.headers.unwrap_or(true),
    })
}
