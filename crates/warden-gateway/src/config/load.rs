//! Loading: file (YAML or TOML by extension) + `WARDEN_` environment overrides + secret
//! references, then the raw serde types, collecting every error with its path.
//!
//! Order: parse the file into a JSON value; merge environment variables named
//! `WARDEN_SECTION__KEY` (figment, `__` nests; a variable without `__` is not an override, so
//! secrets such as `WARDEN_KEY_PEPPER` can live beside them); resolve `${env:NAME}` and
//! `${file:PATH}` references in every string; deserialize each top-level section on its own so
//! that one typo does not hide the errors in the other sections.

use std::path::Path;

use figment::Figment;
use figment::providers::Serialized;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::toolkit::{
    ConfigError, ConfigErrors, MAX_CONFIG_FILE, MAX_SECRET_FILE, read_text, scrub,
};
use super::{
    audit, auth, authz, cors, guards, headers, rate_limits, routes, server, token_budgets, upstream,
};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "WARDEN_";

/// Where environment variables come from (the process environment, or a fixed list in tests).
/// Not to be confused with `server.environment` ([`super::server::Environment`]).
pub trait EnvVars {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
    /// Every `(name, value)` pair, for overrides.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl EnvVars for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl EnvVars for Vec<(String, String)> {
    fn var(&self, name: &str) -> Option<String> {
        self.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
    fn vars(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

/// Reads and parses `path`, applies `overrides` (dotted keys, applied after the environment,
/// used by `warden demo`) and returns the raw configuration.
pub fn load_raw(
    path: &Path,
    env: &dyn EnvVars,
    overrides: &[(&str, Value)],
) -> Result<Parsed, ConfigErrors> {
    let text = read_text(path, MAX_CONFIG_FILE).map_err(|e| {
        ConfigErrors::one(path.display().to_string(), format!("cannot read file: {e}"))
    })?;
    let format = Format::from_path(path)?;
    let mut parsed = parse_raw(&text, format, env, overrides)?;
    parsed.base_dir = path.parent().map(std::path::Path::to_path_buf);
    Ok(parsed)
}

/// File formats, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.yaml` / `.yml`
    Yaml,
    /// `.toml`
    Toml,
}

impl Format {
    fn from_path(path: &Path) -> Result<Self, ConfigErrors> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Ok(Format::Yaml),
            Some("toml") => Ok(Format::Toml),
            _ => Err(ConfigErrors::one(
                path.display().to_string(),
                "unknown configuration format: use a .yaml, .yml or .toml file",
            )),
        }
    }
}

/// Parses configuration text (see [`load_raw`]).
pub fn parse_raw(
    text: &str,
    format: Format,
    env: &dyn EnvVars,
    overrides: &[(&str, Value)],
) -> Result<Parsed, ConfigErrors> {
    let document: Value = match format {
        Format::Yaml => serde_saphyr::from_str(text)
            .map_err(|e| ConfigErrors::one("<file>", format!("invalid YAML: {e}")))?,
        Format::Toml => toml::from_str(text)
            .map_err(|e| ConfigErrors::one("<file>", format!("invalid TOML: {e}")))?,
    };
    let document = match document {
        Value::Object(map) => Value::Object(map),
        // An empty YAML file parses as null: treat it as an empty mapping.
        Value::Null => Value::Object(Map::new()),
        _ => {
            return Err(ConfigErrors::one(
                "<file>",
                "the top level must be a mapping of sections",
            ));
        }
    };

    let mut merged = merge_env(document, env)?;
    for (key, value) in overrides {
        set_dotted(&mut merged, key, value.clone());
    }
    // Before secrets resolve: references are fingerprinted, never the values they stand for.
    let fingerprint = warden::audit::chain::fingerprint(&merged);
    let mut errors = Vec::new();
    let mut secrets = Secrets::default();
    resolve_secrets(
        &mut merged,
        &mut String::new(),
        env,
        &mut errors,
        &mut secrets,
    );
    // Resolved: what each part is made of, to tell on a reload what changed.
    let document = merged.clone();
    let raw = extract_sections(merged, &mut errors);
    Ok(Parsed {
        raw,
        errors,
        secret_paths: secrets.paths,
        secret_values: secrets.values,
        base_dir: None,
        fingerprint,
        document,
        files: secrets.files,
    })
}

#[derive(Default)]
struct Secrets {
    paths: Vec<String>,
    values: Vec<String>,
    /// Files `${file:…}` references read.
    files: Vec<super::definitions::FileRead>,
}

/// A parsed file: the raw configuration of every section that deserialized, and the
/// structural errors of those that did not. Compilation runs on both so that one pass reports
/// every problem.
#[derive(Debug)]
pub struct Parsed {
    /// Sections that deserialized (failed ones are left at their defaults).
    pub raw: RawConfig,
    /// Structural errors (unknown keys, wrong types), with paths.
    pub errors: Vec<ConfigError>,
    /// Paths whose value came from a `${env:…}` / `${file:…}` reference (secrets must).
    pub secret_paths: Vec<String>,
    /// The values those references resolved to (never shown in an error).
    pub secret_values: Vec<String>,
    /// Directory that relative file paths in the configuration are resolved against.
    pub base_dir: Option<std::path::PathBuf>,
    /// SHA-256 of the effective document (file, environment overrides, dotted overrides) in
    /// canonical form, with secret references as written.
    pub fingerprint: String,
    /// The effective document with its secrets resolved (never shown).
    pub document: Value,
    /// Files read by secret references, with the paths that named them.
    pub files: Vec<super::definitions::FileRead>,
}

impl Parsed {
    /// The raw configuration if there were no structural errors.
    pub fn into_result(self) -> Result<RawConfig, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.raw)
        } else {
            let mut errors = self.errors;
            scrub(&mut errors, &self.secret_values);
            Err(ConfigErrors(errors))
        }
    }
}

fn merge_env(document: Value, env: &dyn EnvVars) -> Result<Value, ConfigErrors> {
    let vars: Vec<(String, String)> = env
        .vars()
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    if vars.is_empty() {
        return Ok(document);
    }
    // figment parses values the way its `Env` provider does ("true", "30", "[a, b]") and
    // nests dotted keys; the variables are fed explicitly so tests stay hermetic.
    let mut figment = Figment::from(Serialized::defaults(document));
    for (name, value) in vars {
        let key = name[ENV_PREFIX.len()..]
            .to_ascii_lowercase()
            .replace("__", ".");
        let parsed: figment::value::Value = value
            .parse()
            .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
        figment = figment.merge(Serialized::global(&key, parsed));
    }
    figment.extract::<Value>().map_err(|e| {
        ConfigErrors::one(
            "<environment>",
            format!("invalid {ENV_PREFIX}* override: {e}"),
        )
    })
}

/// Sets `a.b.c` in a JSON tree, creating objects on the way; a numeric part indexes an
/// existing array (`auth.jwt.0.jwks_uri`).
fn set_dotted(root: &mut Value, key: &str, value: Value) {
    let mut current = root;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        if current.is_array() {
            let (Value::Array(items), Ok(index)) = (current, part.parse::<usize>()) else {
                return;
            };
            let Some(item) = items.get_mut(index) else {
                return;
            };
            if last {
                *item = value;
                return;
            }
            current = item;
            continue;
        }
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(map) = current else { return };
        if last {
            map.insert(part.to_owned(), value);
            return;
        }
        current = map
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Replaces `${env:NAME}` and `${file:PATH}` in every string. A missing or empty secret is an
/// error naming the reference (never an empty string).
fn resolve_secrets(
    value: &mut Value,
    path: &mut String,
    env: &dyn EnvVars,
    errors: &mut Vec<ConfigError>,
    secrets: &mut Secrets,
) {
    match value {
        Value::String(text) if text.contains("${") => match substitute(text, path, env, secrets) {
            Ok(resolved) => {
                *text = resolved;
                secrets.paths.push(path.clone());
            }
            Err(message) => errors.push(ConfigError::new(path.clone(), message)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                resolve_secrets(item, path, env, errors, secrets);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                resolve_secrets(item, path, env, errors, secrets);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn substitute(
    text: &str,
    at: &str,
    env: &dyn EnvVars,
    secrets: &mut Secrets,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated reference in {text:?}"))?;
        let reference = &after[..end];
        let value = if let Some(name) = reference.strip_prefix("env:") {
            match env.var(name) {
                Some(v) if !v.is_empty() => v,
                Some(_) => {
                    return Err(format!(
                        "${{env:{name}}}: environment variable {name} is empty"
                    ));
                }
                None => {
                    return Err(format!(
                        "${{env:{name}}}: environment variable {name} is not set"
                    ));
                }
            }
        } else if let Some(file) = reference.strip_prefix("file:") {
            let content = read_text(Path::new(file), MAX_SECRET_FILE)
                .map_err(|e| format!("${{file:{file}}}: cannot read secret file: {e}"))?;
            let trimmed = content.trim_end_matches(['\n', '\r']);
            if trimmed.is_empty() {
                return Err(format!("${{file:{file}}}: secret file is empty"));
            }
            secrets.files.push(super::definitions::FileRead::new(
                at,
                Path::new(file),
                content.as_bytes(),
            ));
            trimmed.to_owned()
        } else {
            return Err(format!(
                "${{{reference}}}: unknown reference; use ${{env:NAME}} or ${{file:PATH}}"
            ));
        };
        out.push_str(&value);
        secrets.values.push(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The whole file as written: each section's own raw type (sections deserialize one by one,
/// so that one typo does not hide the errors in the others).
#[derive(Debug, Default)]
pub struct RawConfig {
    /// Listeners, limits, timeouts.
    pub server: server::RawServer,
    /// Where requests go.
    pub upstream: Option<upstream::RawUpstream>,
    /// Authentication requirements.
    pub auth: auth::RawAuth,
    /// Roles and permissions.
    pub authz: authz::RawAuthz,
    /// Rate limits.
    pub rate_limits: rate_limits::RawRateLimits,
    /// Token budgets.
    pub token_budgets: token_budgets::RawTokenBudgets,
    /// CORS policy.
    pub cors: cors::RawCors,
    /// Security response headers.
    pub headers: headers::RawHeaders,
    /// Content rules.
    pub guards: guards::RawGuards,
    /// The audit trail.
    pub audit: Option<audit::RawAudit>,
    /// The route table.
    pub routes: Vec<routes::RawRoute>,
}

fn extract_sections(root: Value, errors: &mut Vec<ConfigError>) -> RawConfig {
    let Value::Object(mut map) = root else {
        return RawConfig::default();
    };
    let mut raw = RawConfig {
        server: section(&mut map, "server", errors).unwrap_or_default(),
        upstream: section(&mut map, "upstream", errors),
        auth: section(&mut map, "auth", errors).unwrap_or_default(),
        authz: section(&mut map, "authz", errors).unwrap_or_default(),
        rate_limits: section(&mut map, "rate_limits", errors).unwrap_or_default(),
        token_budgets: section(&mut map, "token_budgets", errors).unwrap_or_default(),
        cors: section(&mut map, "cors", errors).unwrap_or_default(),
        headers: section(&mut map, "headers", errors).unwrap_or_default(),
        guards: section(&mut map, "guards", errors).unwrap_or_default(),
        audit: section(&mut map, "audit", errors),
        routes: Vec::new(),
    };
    if let Some(Value::Array(routes)) = map.remove("routes") {
        for (i, route) in routes.into_iter().enumerate() {
            if let Some(route) = typed(route, &format!("routes[{i}]"), errors) {
                raw.routes.push(route);
            }
        }
    } else if let Some(Value::Null) | None = map.get("routes") {
        map.remove("routes");
    } else {
        map.remove("routes");
        errors.push(ConfigError::new("routes", "expected a list of routes"));
    }
    for key in map.keys() {
        errors.push(ConfigError::new(
            key.clone(),
            "unknown section (expected server, upstream, auth, authz, rate_limits, token_budgets, cors, headers, guards, audit or routes)",
        ));
    }
    raw
}

fn section<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match map.remove(key) {
        None | Some(Value::Null) => None,
        Some(value) => typed(value, key, errors),
    }
}

fn typed<T: DeserializeOwned>(
    value: Value,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner == "." {
                prefix.to_owned()
            } else if inner.starts_with('[') {
                format!("{prefix}{inner}")
            } else {
                format!("{prefix}.{inner}")
            };
            errors.push(ConfigError::new(path, e.into_inner().to_string()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn yaml_and_toml_parse_to_the_same_config() {
        let yaml = "upstream:\n  url: http://127.0.0.1:9\nroutes:\n  - path: /a\n    auth: none\n";
        let toml = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"/a\"\nauth = \"none\"\n";
        let a = parse_raw(yaml, Format::Yaml, &env(&[]), &[])
            .and_then(Parsed::into_result)
            .expect("yaml");
        let b = parse_raw(toml, Format::Toml, &env(&[]), &[])
            .and_then(Parsed::into_result)
            .expect("toml");
        assert_eq!(a.routes[0].path, b.routes[0].path);
        assert_eq!(a.upstream.expect("up").url, b.upstream.expect("up").url);
    }

    #[test]
    fn the_fingerprint_follows_the_effective_document_not_its_layout_or_secrets() {
        let print = |text: &str, format: Format, vars: &[(&str, &str)]| {
            parse_raw(text, format, &env(vars), &[])
                .expect("parse")
                .fingerprint
        };
        let yaml =
            "upstream: { url: http://127.0.0.1:9 }\nauth: { api_keys: { pepper: '${env:P}' } }\n";
        let reordered =
            "auth:\n  api_keys:\n    pepper: '${env:P}'\nupstream:\n  url: http://127.0.0.1:9\n";
        let toml = "[auth.api_keys]\npepper = '${env:P}'\n[upstream]\nurl = 'http://127.0.0.1:9'\n";
        let base = print(yaml, Format::Yaml, &[("P", "one")]);
        assert_eq!(base.len(), 64);
        assert_eq!(print(reordered, Format::Yaml, &[("P", "one")]), base);
        assert_eq!(print(toml, Format::Toml, &[("P", "one")]), base);
        // The secret's value is not part of it (it is never hashed into a log); what refers to it is.
        assert_eq!(print(yaml, Format::Yaml, &[("P", "two")]), base);
        let overridden = print(
            yaml,
            Format::Yaml,
            &[
                ("P", "one"),
                ("WARDEN_UPSTREAM__URL", "http://127.0.0.1:10"),
            ],
        );
        assert_ne!(
            overridden, base,
            "an environment override changes the effective config"
        );
    }

    #[test]
    fn environment_overrides_nest_on_double_underscore() {
        let yaml = "server:\n  listen: 127.0.0.1:1\n";
        let vars = env(&[
            ("WARDEN_SERVER__LISTEN", "127.0.0.1:2"),
            ("WARDEN_AUTH__REQUIRED", "false"),
            ("WARDEN_KEY_PEPPER", "not-an-override"),
        ]);
        let raw = parse_raw(yaml, Format::Yaml, &vars, &[])
            .and_then(Parsed::into_result)
            .expect("parsed");
        assert_eq!(raw.server.listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(raw.auth.required, Some(false));
    }

    #[test]
    fn secret_references_resolve_or_name_the_missing_reference() {
        let yaml = "upstream:\n  url: http://${env:UP_HOST}:9\n";
        let raw = parse_raw(yaml, Format::Yaml, &env(&[("UP_HOST", "127.0.0.1")]), &[])
            .and_then(Parsed::into_result)
            .expect("resolved");
        assert_eq!(raw.upstream.expect("up").url, "http://127.0.0.1:9");

        let errors = parse_raw(yaml, Format::Yaml, &env(&[]), &[])
            .and_then(Parsed::into_result)
            .expect_err("missing");
        let text = errors.to_string();
        assert!(text.contains("upstream.url"), "{text}");
        assert!(text.contains("${env:UP_HOST}"), "{text}");
        let errors = parse_raw(yaml, Format::Yaml, &env(&[("UP_HOST", "")]), &[])
            .and_then(Parsed::into_result)
            .expect_err("empty");
        assert!(errors.to_string().contains("is empty"));
        let yaml = "upstream:\n  url: ${file:/nonexistent/secret}\n";
        let errors = parse_raw(yaml, Format::Yaml, &env(&[]), &[])
            .and_then(Parsed::into_result)
            .expect_err("no file");
        assert!(errors.to_string().contains("${file:/nonexistent/secret}"));
    }

    #[test]
    fn structural_errors_in_every_section_are_reported_together() {
        let yaml = "server:\n  lissten: x\ncors:\n  origins: 5\nroutes:\n  - path: /a\n  - path: /b\n    methdos: [GET]\nbogus: 1\n";
        let errors = parse_raw(yaml, Format::Yaml, &env(&[]), &[])
            .and_then(Parsed::into_result)
            .expect_err("errors");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"server.lissten"), "{paths:?}");
        assert!(paths.contains(&"cors.origins"), "{paths:?}");
        assert!(paths.contains(&"routes[1].methdos"), "{paths:?}");
        assert!(paths.contains(&"bogus"), "{paths:?}");
        assert!(errors.to_string().contains("lissten"));
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        let errors = parse_raw("server: [1, 2", Format::Yaml, &env(&[]), &[])
            .and_then(Parsed::into_result)
            .expect_err("yaml");
        assert!(errors.to_string().contains("invalid YAML"));
        let errors = parse_raw("[server", Format::Toml, &env(&[]), &[])
            .and_then(Parsed::into_result)
            .expect_err("toml");
        assert!(errors.to_string().contains("invalid TOML"));
        let errors = parse_raw("- 1\n- 2\n", Format::Yaml, &env(&[]), &[])
            .and_then(Parsed::into_result)
            .expect_err("list");
        assert!(errors.to_string().contains("mapping"));
    }
}
