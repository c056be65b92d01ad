//! Policy as code: Rego (the OPA language) through the regorus interpreter.
//!
//! Modules and data are parsed and compiled once, at configuration load (a syntax error is a
//! configuration error naming the file and line). Each request evaluates the compiled `allow`
//! rule against an input document describing the caller, the request and the resource; the
//! optional `reasons` rule explains a denial in the logs and audit trail, never to the client.
//! Anything but `allow == true` denies; an evaluation error (or the time limit) denies too.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{CompiledPolicy, Engine, Value};

/// Why a policy could not be loaded or evaluated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegoError {
    /// A module failed to parse or compile (the message names file and line).
    #[error("{0}")]
    Compile(String),
    /// The data document is not valid.
    #[error("policy data: {0}")]
    Data(String),
    /// Evaluation failed or ran out of time.
    #[error("policy evaluation failed: {0}")]
    Eval(String),
}

/// A compiled policy: the `allow` rule and, optionally, the `reasons` rule.
#[derive(Clone)]
pub struct RegoPolicy {
    allow: Arc<CompiledPolicy>,
    reasons: Option<Arc<CompiledPolicy>>,
    tier: Option<Arc<CompiledPolicy>>,
}

impl std::fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicy").finish_non_exhaustive()
    }
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `allow` evaluated to `true`.
    pub allowed: bool,
    /// The `reasons` rule's strings (evaluated on denial only).
    pub reasons: Vec<String>,
    /// The `tier` rule's string: a rate-limit tier chosen by the policy (evaluated on allow).
    pub tier: Option<String>,
}

fn engine(
    modules: &[(String, String)],
    data: Option<&serde_json::Value>,
    limit: Duration,
) -> Result<Engine, RegoError> {
    let mut engine = Engine::new();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::MIN,
    });
    for (path, source) in modules {
        engine
            .add_policy(path.clone(), source.clone())
            .map_err(|e| RegoError::Compile(e.to_string()))?;
    }
    if let Some(data) = data {
        let value =
            Value::from_json_str(&data.to_string()).map_err(|e| RegoError::Data(e.to_string()))?;
        engine
            .add_data(value)
            .map_err(|e| RegoError::Data(e.to_string()))?;
    }
    Ok(engine)
}

/// Evaluates one rule of `modules` (with `data`) for `input`, on a fresh engine: for policy
/// tests and tooling, not the request path. Returns whether the rule is `true`.
pub fn eval_bool_rule(
    modules: &[(String, String)],
    data: Option<&serde_json::Value>,
    rule: &str,
    input: &serde_json::Value,
) -> Result<bool, RegoError> {
    let mut engine = engine(modules, data, Duration::from_secs(5))?;
    let input =
        Value::from_json_str(&input.to_string()).map_err(|e| RegoError::Eval(e.to_string()))?;
    engine.set_input(input);
    let value = engine
        .eval_rule(rule.to_owned())
        .map_err(|e| RegoError::Eval(e.to_string()))?;
    Ok(value == Value::Bool(true))
}

impl RegoPolicy {
    /// Parses and compiles `modules` (path, source) with `data`, for the rule paths `allow`
    /// (e.g. `data.api.authz.allow`) and `reasons`. Evaluations stop after `limit`.
    pub fn compile(
        modules: &[(String, String)],
        data: Option<&serde_json::Value>,
        allow: &str,
        reasons: Option<&str>,
        limit: Duration,
    ) -> Result<Self, RegoError> {
        // Compiled policies evaluate on fresh engines that only see the process-wide fallback
        // limit, so set it too (the tightest limit configured in this process applies).
        let config = ExecutionTimerConfig {
            limit,
            check_interval: NonZeroU32::MIN,
        };
        let tighter = regorus::utils::limits::fallback_execution_timer_config()
            .is_none_or(|current| limit < current.limit);
        if tighter {
            regorus::utils::limits::set_fallback_execution_timer_config(Some(config));
        }
        let compile_rule = |rule: &str| -> Result<Arc<CompiledPolicy>, RegoError> {
            let mut engine = engine(modules, data, limit)?;
            let compiled = engine
                .compile_with_entrypoint(&rule.into())
                .map_err(|e| RegoError::Compile(format!("{rule}: {e}")))?;
            Ok(Arc::new(compiled))
        };
        Ok(RegoPolicy {
            allow: compile_rule(allow)?,
            reasons: reasons.map(compile_rule).transpose()?,
            tier: None,
        })
    }

    /// Also evaluates `rule` (e.g. `data.api.authz.tier`) on allowed requests; a string result
    /// names the rate-limit tier for the request.
    pub fn with_tier_rule(
        mut self,
        modules: &[(String, String)],
        data: Option<&serde_json::Value>,
        rule: &str,
        limit: Duration,
    ) -> Result<Self, RegoError> {
        let mut engine = engine(modules, data, limit)?;
        let compiled = engine
            .compile_with_entrypoint(&rule.into())
            .map_err(|e| RegoError::Compile(format!("{rule}: {e}")))?;
        self.tier = Some(Arc::new(compiled));
        Ok(self)
    }

    /// Evaluates the policy for `input`.
    pub fn evaluate(&self, input: &serde_json::Value) -> Result<Verdict, RegoError> {
        let input =
            Value::from_json_str(&input.to_string()).map_err(|e| RegoError::Eval(e.to_string()))?;
        let allowed = self
            .allow
            .eval_with_input(input.clone())
            .map_err(|e| RegoError::Eval(e.to_string()))?
            == Value::Bool(true);
        let eval = |rule: &CompiledPolicy| {
            rule.eval_with_input(input.clone())
                .map_err(|e| RegoError::Eval(e.to_string()))
        };
        let reasons = match (&self.reasons, allowed) {
            (Some(rule), false) => strings(&eval(rule)?),
            _ => Vec::new(),
        };
        let tier = match (&self.tier, allowed) {
            (Some(rule), true) => eval(rule)?.as_string().ok().map(|s| s.to_string()),
            _ => None,
        };
        Ok(Verdict {
            allowed,
            reasons,
            tier,
        })
    }
}

/// Strings from a set or array value (other values are ignored).
fn strings(value: &Value) -> Vec<String> {
    let text = |v: &Value| v.as_string().ok().map(|s| s.to_string());
    if let Ok(set) = value.as_set() {
        return set.iter().filter_map(text).collect();
    }
    if let Ok(array) = value.as_array() {
        return array.iter().filter_map(text).collect();
    }
    text(value).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
package api.authz

import future.keywords.if
import future.keywords.in

default allow := false

allow if {
    input.token.roles[_] == "admin"
}

allow if {
    some role in input.token.roles
    role == "user"
    input.request.method == "GET"
    not startswith(input.request.path, "/admin")
}

reasons contains msg if {
    not allow
    msg := sprintf("%s may not %s %s", [input.token.subject, input.request.method, input.request.path])
}

tier := "premium" if "admin" in input.token.roles
"#;

    fn input(roles: &[&str], method: &str, path: &str) -> serde_json::Value {
        serde_json::json!({
            "token": { "subject": "alice", "roles": roles },
            "request": { "method": method, "path": path },
        })
    }

    #[test]
    fn opa_style_policies_run_unchanged() {
        let policy = RegoPolicy::compile(
            &[("api_authz.rego".into(), POLICY.into())],
            None,
            "data.api.authz.allow",
            Some("data.api.authz.reasons"),
            Duration::from_millis(100),
        )
        .expect("compiles");
        assert!(
            policy
                .evaluate(&input(&["admin"], "DELETE", "/admin/x"))
                .expect("eval")
                .allowed
        );
        assert!(
            policy
                .evaluate(&input(&["user"], "GET", "/agents"))
                .expect("eval")
                .allowed
        );
        let denied = policy
            .evaluate(&input(&["user"], "GET", "/admin/x"))
            .expect("eval");
        assert!(!denied.allowed);
        assert_eq!(
            denied.reasons,
            vec!["alice may not GET /admin/x".to_owned()]
        );
        assert!(
            !policy
                .evaluate(&serde_json::json!({}))
                .expect("eval")
                .allowed,
            "undefined input denies"
        );
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let broken = "package x\n\nallow if {\n  input.a ==\n}\n";
        let err = RegoPolicy::compile(
            &[("broken.rego".into(), broken.into())],
            None,
            "data.x.allow",
            None,
            Duration::from_millis(100),
        )
        .expect_err("syntax error");
        let text = err.to_string();
        assert!(text.contains("broken.rego"), "{text}");
    }

    #[test]
    fn data_documents_are_visible_to_policies() {
        let policy = "package api.authz\nimport rego.v1\ndefault allow := false\nallow if input.token.subject in data.operators\n";
        let data = serde_json::json!({ "operators": ["alice"] });
        let compiled = RegoPolicy::compile(
            &[("ops.rego".into(), policy.into())],
            Some(&data),
            "data.api.authz.allow",
            None,
            Duration::from_millis(100),
        )
        .expect("compiles");
        let who = |subject: &str| serde_json::json!({ "token": { "subject": subject } });
        assert!(compiled.evaluate(&who("alice")).expect("eval").allowed);
        assert!(!compiled.evaluate(&who("mallory")).expect("eval").allowed);
    }
}
