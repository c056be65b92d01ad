//! `guards:` and `routes[].guards` — content rules over what a request asks for and says and
//! what the upstream answers: the model allow/deny lists, prompt-injection inspection, secrets
//! and PII in both directions (the global ones, each replaced as a whole by a route's own), the
//! operator's blocked patterns, and the default `max_input_chars` and `max_output_chars` of
//! routes with body rules.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use warden::body::format::Role;
use warden::guard::detect::{BlockedPatterns, DataAction, DataGuard, Detectors};
use warden::guard::external::{Classify, Direction, HttpClassifier, OnError};
use warden::guard::injection::{CustomRule, GuardAction, InjectionRules, PromptGuard};
use warden::guard::models::ModelRules;
use warden::guard::output::OutputGuard;
use warden::guard::stream::{OutputAction, Scanner};

use super::toolkit::{Compiler, Scalar};

/// `guards:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGuards {
    /// Most characters over the extracted input texts of a request (routes with body rules).
    pub max_input_chars: Option<u64>,
    /// Model allow/deny.
    pub models: Option<RawModels>,
    /// Prompt-injection inspection of routes with body rules.
    pub prompt_injection: Option<RawPromptInjection>,
    /// Credentials in request texts.
    pub secrets: Option<RawSecrets>,
    /// Personal data in request texts.
    pub pii: Option<RawPii>,
    /// Operator patterns, each with an action.
    pub blocked_patterns: Vec<RawBlockedPattern>,
    /// Most characters of answer text (JSON answers and streams).
    pub max_output_chars: Option<u64>,
    /// Most bytes of a JSON answer the output guard buffers, and of one streamed event
    /// (default 8 MiB).
    pub max_output_bytes: Option<Scalar>,
    /// External moderation-style classifiers.
    pub external: Vec<RawClassifier>,
}

/// `guards.external[]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    /// Its name (metrics, logs).
    pub name: String,
    /// The endpoint texts are posted to (https, or http to a loopback address).
    pub url: String,
    /// `input` or `output`.
    pub direction: String,
    /// The time budget of one call (default 1s).
    #[serde(default)]
    pub timeout: Option<Scalar>,
    /// `block` (default) or `allow` when the call fails or runs out of time.
    #[serde(default)]
    pub on_error: Option<String>,
    /// Sent as `Authorization: Bearer …`; a `${env:…}` or `${file:…}` reference.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Output: characters of a streamed answer judged at a time, held meanwhile (default 500).
    #[serde(default)]
    pub segment_chars: Option<u64>,
}

/// `guards.blocked_patterns[]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlockedPattern {
    /// Its id (reported in findings and the flag header).
    pub id: String,
    /// A regular expression (linear time), matched on the original text.
    pub pattern: String,
    /// `block`, `flag` or `redact` (default `block`).
    #[serde(default)]
    pub action: Option<String>,
}

/// `guards.secrets:` (and a route's own).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSecrets {
    /// `block`, `flag`, `redact` or `off` (default `block`).
    pub action: Option<String>,
    /// Credentials in answers: `redact`, `block` or `off` (default `redact`).
    pub output: Option<String>,
}

/// `guards.pii:` (and a route's own).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPii {
    /// Personal data in requests: `block`, `flag`, `redact` or `off` (default `redact`).
    pub input: Option<String>,
    /// Personal data in answers: `redact`, `block` or `off` (default `off`).
    pub output: Option<String>,
    /// Count IPv4 and IPv6 addresses as personal data (default false).
    pub ip_addresses: Option<bool>,
}

/// `guards.prompt_injection:` (and a route's own).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPromptInjection {
    /// `block`, `flag` or `off` (default `block`).
    pub action: Option<String>,
    /// The score at which the guard acts (default 1.0).
    pub threshold: Option<f64>,
    /// Roles scanned: `user`, `tool`, `field`, `system`, `assistant`, `tool_definition`
    /// (default: user, tool, field).
    pub roles: Option<Vec<String>>,
    /// Rules added to the default pack.
    pub rules: Vec<RawRule>,
    /// Whether the learned n-gram model scores beside the rules (default true).
    pub model: Option<bool>,
}

/// `guards.prompt_injection.rules[]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Its id (reported in findings).
    pub id: String,
    /// A regular expression (linear time), matched case-insensitively on folded text.
    pub pattern: String,
    /// What a match adds to the score (default 1.0).
    #[serde(default)]
    pub weight: Option<f64>,
}

/// `routes[].guards:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouteGuards {
    /// This route's model rules, replacing `guards.models`.
    pub models: Option<RawModels>,
    /// This route's prompt-injection inspection, replacing `guards.prompt_injection`.
    pub prompt_injection: Option<RawPromptInjection>,
    /// This route's secret inspection, replacing `guards.secrets`.
    pub secrets: Option<RawSecrets>,
    /// This route's PII inspection, replacing `guards.pii`.
    pub pii: Option<RawPii>,
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
#[derive(Clone)]
pub struct GuardsConfig {
    /// Default `max_input_chars` of routes with body rules.
    pub max_input_chars: Option<usize>,
    /// Default model rules of routes with body rules.
    pub models: Option<Arc<ModelRules>>,
    /// Default prompt-injection inspection of routes with body rules (`None`: off).
    pub prompt_injection: Option<Arc<PromptGuard>>,
    /// Default secret and PII inspection of routes with body rules (`None`: off).
    pub data: Option<Arc<DataGuard>>,
    /// Default inspection of answers on routes with body rules (`None`: off).
    pub output: Option<Arc<OutputGuard>>,
    /// The output limits and classifiers, for routes with their own secrets or PII rules.
    pub output_settings: OutputSettings,
    /// External classifiers of requests, on every route with body rules.
    pub classifiers_in: Vec<Arc<dyn Classify>>,
}

/// The default `guards.max_output_bytes`.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 8 << 20;

/// Compiles `guards:`.
pub fn compile(c: &mut Compiler, raw: &RawGuards) -> GuardsConfig {
    let max_output_chars = raw
        .max_output_chars
        .map(|n| c.count("guards.max_output_chars", Some(n), 1));
    let max_output_bytes = usize::try_from(c.size(
        "guards.max_output_bytes",
        raw.max_output_bytes.as_ref(),
        DEFAULT_MAX_OUTPUT_BYTES as u64,
    ))
    .unwrap_or(usize::MAX);
    let (classifiers_in, classifiers_out, segment_chars) = compile_classifiers(c, &raw.external);
    let output_settings = OutputSettings {
        max_chars: max_output_chars,
        max_bytes: max_output_bytes,
        classifiers: classifiers_out,
        segment_chars,
    };
    let patterns = compile_patterns(c, &raw.blocked_patterns);
    let data = compile_data(
        c,
        "guards",
        raw.secrets.as_ref(),
        raw.pii.as_ref(),
        patterns,
    );
    GuardsConfig {
        output: compile_output(
            c,
            "guards",
            raw.secrets.as_ref(),
            raw.pii.as_ref(),
            data.as_ref().and_then(|d| d.detectors.as_ref()),
            &output_settings,
        ),
        data,
        output_settings,
        classifiers_in,
        max_input_chars: raw
            .max_input_chars
            .map(|n| c.count("guards.max_input_chars", Some(n), 1)),
        models: raw
            .models
            .as_ref()
            .and_then(|m| compile_models(c, "guards.models", m)),
        prompt_injection: raw
            .prompt_injection
            .as_ref()
            .and_then(|p| compile_prompt_injection(c, "guards.prompt_injection", p)),
    }
}

/// Whether `id` can name a finding: it goes into the `X-Warden-Guard` header, its
/// comma-separated lists and metric labels, so visible ASCII without `,` or `;`.
fn finding_id(c: &mut Compiler, path: &str, id: &str) -> bool {
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b';');
    if !ok {
        c.error(
            path.to_owned(),
            format!(
                "expected a name of visible characters without commas or semicolons, got {id:?}"
            ),
        );
    }
    ok
}

/// Compiles `guards.blocked_patterns` (`None`: none, or an error was reported).
fn compile_patterns(c: &mut Compiler, raw: &[RawBlockedPattern]) -> Option<Arc<BlockedPatterns>> {
    if raw.is_empty() {
        return None;
    }
    let mut entries = Vec::with_capacity(raw.len());
    for (j, entry) in raw.iter().enumerate() {
        let action = c.choose(
            &format!("guards.blocked_patterns[{j}].action"),
            entry.action.as_deref().unwrap_or("block"),
            &[
                ("block", DataAction::Block),
                ("flag", DataAction::Flag),
                ("redact", DataAction::Redact),
            ],
        )?;
        if !finding_id(c, &format!("guards.blocked_patterns[{j}].id"), &entry.id) {
            return None;
        }
        entries.push((entry.id.clone(), entry.pattern.clone(), action));
    }
    match BlockedPatterns::new(&entries) {
        Ok(patterns) => Some(Arc::new(patterns)),
        Err((j, message)) => {
            c.error(format!("guards.blocked_patterns[{j}].pattern"), message);
            None
        }
    }
}

/// The action at `path` (its `default` when absent); `None` for `off` or an unknown word (which
/// is reported).
fn action<T: Copy>(
    c: &mut Compiler,
    path: String,
    word: Option<&str>,
    default: &str,
    options: &[(&str, Option<T>)],
) -> Option<T> {
    c.choose(&path, word.unwrap_or(default), options).flatten()
}

/// Compiles `secrets` and `pii` under `path` into one data guard (`None`: both off or absent).
pub fn compile_data(
    c: &mut Compiler,
    path: &str,
    secrets: Option<&RawSecrets>,
    pii: Option<&RawPii>,
    patterns: Option<Arc<BlockedPatterns>>,
) -> Option<Arc<DataGuard>> {
    let actions = [
        ("block", Some(DataAction::Block)),
        ("flag", Some(DataAction::Flag)),
        ("redact", Some(DataAction::Redact)),
        ("off", None),
    ];
    let secrets = secrets.and_then(|s| {
        action(
            c,
            format!("{path}.secrets.action"),
            s.action.as_deref(),
            "block",
            &actions,
        )
    });
    let pii_action = pii.and_then(|p| {
        action(
            c,
            format!("{path}.pii.input"),
            p.input.as_deref(),
            "redact",
            &actions,
        )
    });
    if secrets.is_none() && pii_action.is_none() && patterns.is_none() {
        return None;
    }
    let detectors = if secrets.is_none() && pii_action.is_none() {
        None
    } else {
        Some(detectors(c, path, pii, None)?)
    };
    Some(Arc::new(DataGuard {
        detectors,
        secrets,
        pii: pii_action,
        patterns,
    }))
}

/// What every route's output guard shares: the limits and the output classifiers.
#[derive(Clone)]
pub struct OutputSettings {
    /// `guards.max_output_chars`.
    pub max_chars: Option<usize>,
    /// `guards.max_output_bytes`.
    pub max_bytes: usize,
    /// The `direction: output` classifiers.
    pub classifiers: Vec<Arc<dyn Classify>>,
    /// Their segment size.
    pub segment_chars: usize,
}

type Classifiers = Vec<Arc<dyn Classify>>;

/// The default `segment_chars` of output classifiers.
const DEFAULT_SEGMENT_CHARS: usize = 500;

/// Compiles `guards.external`: the input classifiers, the output ones, and the output segment
/// size (the smallest any of them asks for).
fn compile_classifiers(
    c: &mut Compiler,
    raw: &[RawClassifier],
) -> (Classifiers, Classifiers, usize) {
    let mut input: Classifiers = Vec::new();
    let mut output: Classifiers = Vec::new();
    let mut segment = None::<usize>;
    for (j, entry) in raw.iter().enumerate() {
        let at = |field: &str| format!("guards.external[{j}].{field}");
        if !finding_id(c, &at("name"), &entry.name) {
            continue;
        }
        if raw[..j].iter().any(|e| e.name == entry.name) {
            c.error(at("name"), format!("{:?} is already used", entry.name));
            continue;
        }
        let Some(direction) = c.choose(
            &at("direction"),
            &entry.direction,
            &[("input", Direction::Input), ("output", Direction::Output)],
        ) else {
            continue;
        };
        let Some(on_error) = c.choose(
            &at("on_error"),
            entry.on_error.as_deref().unwrap_or("block"),
            &[("block", OnError::Block), ("allow", OnError::Allow)],
        ) else {
            continue;
        };
        let timeout = c.duration(
            &at("timeout"),
            entry.timeout.as_ref(),
            Duration::from_secs(1),
        );
        if timeout.is_zero() {
            c.error(at("timeout"), "expected a positive duration");
        }
        if let Some(n) = entry.segment_chars {
            if direction == Direction::Input {
                c.error(at("segment_chars"), "applies to output classifiers only");
            }
            let n = c.count(&at("segment_chars"), Some(n), DEFAULT_SEGMENT_CHARS);
            segment = Some(segment.map_or(n, |s| s.min(n)));
        }
        if entry.api_key.is_some() && !c.is_secret(&at("api_key")) {
            c.error(
                at("api_key"),
                "a credential belongs in a ${env:NAME} or ${file:PATH} reference, not in the file",
            );
            continue;
        }
        match HttpClassifier::new(
            entry.name.clone(),
            &entry.url,
            direction,
            timeout,
            on_error,
            entry.api_key.clone(),
        ) {
            Ok(classifier) => match direction {
                Direction::Input => input.push(Arc::new(classifier)),
                Direction::Output => output.push(Arc::new(classifier)),
            },
            Err(e) => c.error(at("url"), e.to_string()),
        }
    }
    (input, output, segment.unwrap_or(DEFAULT_SEGMENT_CHARS))
}

/// The detectors of the `pii` block under `path`: `shared` (those the input side of the same
/// block compiled) when given, else compiled here.
fn detectors(
    c: &mut Compiler,
    path: &str,
    pii: Option<&RawPii>,
    shared: Option<&Arc<Detectors>>,
) -> Option<Arc<Detectors>> {
    if let Some(shared) = shared {
        return Some(shared.clone());
    }
    let ip_addresses = pii.and_then(|p| p.ip_addresses).unwrap_or(false);
    match Detectors::new(ip_addresses) {
        Ok(detectors) => Some(Arc::new(detectors)),
        Err(e) => {
            c.error(path.to_owned(), format!("detectors: {e}"));
            None
        }
    }
}

/// Compiles the output side of `secrets` and `pii` under `path`, with the shared settings;
/// `shared` are the detectors the input side of the same blocks compiled, if any (`None`:
/// nothing to do).
pub fn compile_output(
    c: &mut Compiler,
    path: &str,
    secrets: Option<&RawSecrets>,
    pii: Option<&RawPii>,
    shared: Option<&Arc<Detectors>>,
    settings: &OutputSettings,
) -> Option<Arc<OutputGuard>> {
    let actions = [
        ("redact", Some(OutputAction::Redact)),
        ("block", Some(OutputAction::Block)),
        ("off", None),
    ];
    let secrets_action = secrets.and_then(|s| {
        action(
            c,
            format!("{path}.secrets.output"),
            s.output.as_deref(),
            "redact",
            &actions,
        )
    });
    let pii_action = pii.and_then(|p| {
        action(
            c,
            format!("{path}.pii.output"),
            p.output.as_deref(),
            "off",
            &actions,
        )
    });
    let scanner = if secrets_action.is_none() && pii_action.is_none() {
        None
    } else {
        let detectors = detectors(c, path, pii, shared)?;
        match Scanner::new(detectors, secrets_action, pii_action) {
            Ok(scanner) => Some(Arc::new(scanner)),
            Err(e) => {
                c.error(path.to_owned(), format!("output detectors: {e}"));
                return None;
            }
        }
    };
    let guard = OutputGuard {
        scanner,
        max_chars: settings.max_chars,
        max_bytes: settings.max_bytes,
        classifiers: settings.classifiers.clone(),
        segment_chars: settings.segment_chars,
    };
    guard.is_active().then(|| Arc::new(guard))
}

/// Compiles a prompt-injection block at `path` (`None`: off, or an error was reported).
pub fn compile_prompt_injection(
    c: &mut Compiler,
    path: &str,
    raw: &RawPromptInjection,
) -> Option<Arc<PromptGuard>> {
    let action = c.choose(
        &format!("{path}.action"),
        raw.action.as_deref().unwrap_or("block"),
        &[
            ("block", Some(GuardAction::Block)),
            ("flag", Some(GuardAction::Flag)),
            ("off", None),
        ],
    )??;
    let threshold = raw.threshold.unwrap_or(1.0);
    if !(threshold.is_finite() && threshold > 0.0) {
        c.error(format!("{path}.threshold"), "expected a positive number");
    }
    let roles = match &raw.roles {
        None => PromptGuard::DEFAULT_ROLES.to_vec(),
        Some(names) => names
            .iter()
            .enumerate()
            .filter_map(|(j, name)| {
                c.choose(
                    &format!("{path}.roles[{j}]"),
                    name,
                    &[
                        ("user", Role::User),
                        ("tool", Role::Tool),
                        ("field", Role::Field),
                        ("system", Role::System),
                        ("assistant", Role::Assistant),
                        ("tool_definition", Role::ToolDefinition),
                    ],
                )
            })
            .collect(),
    };
    let custom: Vec<CustomRule> = raw
        .rules
        .iter()
        .enumerate()
        .filter_map(|(j, rule)| {
            let weight = rule.weight.unwrap_or(1.0);
            if !(weight.is_finite() && weight > 0.0) {
                c.error(
                    format!("{path}.rules[{j}].weight"),
                    "expected a positive number",
                );
                return None;
            }
            if !finding_id(c, &format!("{path}.rules[{j}].id"), &rule.id) {
                return None;
            }
            Some(CustomRule {
                id: rule.id.clone(),
                pattern: rule.pattern.clone(),
                weight: weight as f32,
            })
        })
        .collect();
    let rules = match InjectionRules::new(&custom) {
        Ok(rules) if raw.model == Some(false) => rules.without_model(),
        Ok(rules) => rules,
        Err(e) => {
            c.error(format!("{path}.rules"), e.to_string());
            return None;
        }
    };
    Some(Arc::new(PromptGuard {
        rules: Arc::new(rules),
        action,
        threshold: threshold as f32,
        roles,
    }))
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
