//! `authz:` — roles with their hierarchy, and the optional Rego policy. Each route's requirements
//! are compiled with the route (`routes.rs`) against what this section defines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use warden::authz::rbac::RoleTable;
use warden::authz::rego::{EngineChoice, RegoPolicy, Rules};

use super::toolkit::{Compiler, Scalar};

/// `authz:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthz {
    /// Role -> permissions it grants.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Roles from lowest to highest; each holds the permissions of those before it.
    pub role_hierarchy: Vec<String>,
    /// A Rego policy evaluated on protected routes.
    pub policy: Option<RawPolicy>,
}

/// `authz.policy:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    /// One module file.
    pub file: Option<String>,
    /// Several module files.
    pub files: Vec<String>,
    /// JSON data document file.
    pub data: Option<String>,
    /// Rule deciding (e.g. `data.api.authz.allow`).
    pub allow: Option<String>,
    /// Rule explaining denials (e.g. `data.api.authz.reasons`).
    pub reasons: Option<String>,
    /// Rule naming a rate-limit tier for allowed requests (e.g. `data.api.authz.tier`).
    pub tier: Option<String>,
    /// Request headers exposed to the policy.
    pub headers: Vec<String>,
    /// Evaluation time limit (default 50ms).
    pub timeout: Option<Scalar>,
    /// `vm` (the default: regorus's virtual machine where the policy compiles to it) or
    /// `interpreter`.
    pub engine: Option<String>,
}

/// Compiles `authz.roles` and `authz.role_hierarchy`.
pub fn compile_roles(c: &mut Compiler, raw: &RawAuthz) -> RoleTable {
    let roles: Vec<(String, Vec<String>)> = raw
        .roles
        .iter()
        .map(|(r, p)| (r.clone(), p.clone()))
        .collect();
    match RoleTable::new(&roles, &raw.role_hierarchy) {
        Ok(table) => table,
        Err(e) => {
            c.error("authz", e.to_string());
            RoleTable::default()
        }
    }
}

/// The compiled `authz.policy` and the headers it may see.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// The compiled modules and rules.
    pub policy: Arc<RegoPolicy>,
    /// Request headers exposed to it.
    pub headers: Vec<HeaderName>,
}

/// Compiles `authz.policy` (`None` when absent or broken).
pub fn compile_policy(c: &mut Compiler, raw: Option<&RawPolicy>) -> Option<PolicyConfig> {
    let raw = raw?;
    let before = c.checkpoint();
    let mut files: Vec<&String> = raw.file.iter().collect();
    files.extend(raw.files.iter());
    if files.is_empty() {
        c.error(
            "authz.policy.file",
            "name the .rego module(s) with file or files",
        );
    }
    let mut modules = Vec::new();
    for file in files {
        if let Some((path, source)) = c.read_text("authz.policy.file", file) {
            modules.push((path.display().to_string(), source));
        }
    }
    let data = raw.data.as_ref().and_then(|file| {
        let (path, bytes) = c.read("authz.policy.data", file)?;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| c.error("authz.policy.data", format!("{}: {e}", path.display())))
            .ok()
    });
    let allow = raw.allow.clone().unwrap_or_else(|| {
        c.error(
            "authz.policy.allow",
            "name the deciding rule, e.g. data.api.authz.allow",
        );
        String::new()
    });
    let headers: Vec<HeaderName> = raw
        .headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| c.header_name(&format!("authz.policy.headers[{i}]"), h))
        .collect();
    let timeout = c.duration(
        "authz.policy.timeout",
        raw.timeout.as_ref(),
        Duration::from_millis(50),
    );
    let choice = match raw.engine.as_deref() {
        None | Some("vm") => EngineChoice::Vm,
        Some("interpreter") => EngineChoice::Interpreter,
        Some(other) => {
            c.error(
                "authz.policy.engine",
                format!("{other:?} is not an engine: vm or interpreter"),
            );
            EngineChoice::Vm
        }
    };
    if c.failed_since(before) {
        return None;
    }
    let rules = Rules {
        allow: &allow,
        reasons: raw.reasons.as_deref(),
        tier: raw.tier.as_deref(),
    };
    match RegoPolicy::compile(&modules, data.as_ref(), rules, timeout, choice) {
        Ok(policy) => {
            if let (EngineChoice::Vm, Some(why)) = (choice, policy.interpreted_because()) {
                c.warn(
                    "authz.policy",
                    format!(
                        "runs on the interpreter (slower): the virtual machine refused it: {why}"
                    ),
                );
            }
            Some(PolicyConfig {
                policy: Arc::new(policy),
                headers,
            })
        }
        Err(e) => {
            c.error("authz.policy", e.to_string());
            None
        }
    }
}
