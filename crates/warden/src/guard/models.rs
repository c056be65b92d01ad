//! Model allow/deny over `provider:model`, after format extraction (DESIGN.md §2 step 14).
//!
//! Glob lists (`openai:gpt-4o*`, `*:*-preview`), matched case-insensitively — a deny list must
//! not be dodged by `GPT-4O-PREVIEW` on an upstream that folds case. Deny wins; with an allow
//! list, anything unlisted is denied; a request of a model-rule route that names no model is
//! denied too when an allow list exists (nothing to allow).

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Compiled allow and deny lists.
#[derive(Clone, Debug)]
pub struct ModelRules {
    allow: Option<GlobSet>,
    deny: GlobSet,
    patterns: (Vec<String>, Vec<String>),
}

/// A pattern that does not compile.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// Why.
    pub reason: String,
}

/// What the rules say about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelVerdict {
    /// May be forwarded.
    Allowed,
    /// A deny pattern matches.
    Denied,
    /// An allow list exists and nothing in it matches.
    NotAllowed,
}

impl ModelRules {
    /// Compiles the lists; `allow: None` allows everything not denied.
    pub fn new(allow: Option<&[String]>, deny: &[String]) -> Result<ModelRules, PatternError> {
        Ok(ModelRules {
            allow: allow.map(set).transpose()?,
            deny: set(deny)?,
            patterns: (
                allow.map(<[String]>::to_vec).unwrap_or_default(),
                deny.to_vec(),
            ),
        })
    }

    /// Judges `provider:model` (`*` when the provider is unknown).
    pub fn check(&self, provider: Option<&str>, model: Option<&str>) -> ModelVerdict {
        let Some(model) = model else {
            return if self.allow.is_some() {
                ModelVerdict::NotAllowed
            } else {
                ModelVerdict::Allowed
            };
        };
        let subject = format!("{}:{model}", provider.unwrap_or("*"));
        if self.deny.is_match(&subject) {
            return ModelVerdict::Denied;
        }
        match &self.allow {
            Some(allow) if !allow.is_match(&subject) => ModelVerdict::NotAllowed,
            _ => ModelVerdict::Allowed,
        }
    }

    /// The allow and deny patterns as configured (for the policy input and logs).
    pub fn patterns(&self) -> (&[String], &[String]) {
        (&self.patterns.0, &self.patterns.1)
    }
}

fn set(patterns: &[String]) -> Result<GlobSet, PatternError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(glob(pattern)?);
    }
    builder.build().map_err(|e| PatternError {
        pattern: patterns.join(", "),
        reason: e.to_string(),
    })
}

fn glob(pattern: &str) -> Result<Glob, PatternError> {
    if !pattern.contains(':') {
        return Err(PatternError {
            pattern: pattern.to_owned(),
            reason: "expected provider:model, e.g. openai:gpt-4o* or *:*-preview".into(),
        });
    }
    GlobBuilder::new(pattern)
        .case_insensitive(true)
        // Model names contain `/` (`meta-llama/Llama-3`); `*` matches across it.
        .literal_separator(false)
        .build()
        .map_err(|e| PatternError {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: Option<&[&str]>, deny: &[&str]) -> ModelRules {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        ModelRules::new(allow.map(owned).as_deref(), &owned(deny)).expect("rules")
    }

    #[test]
    fn deny_wins_and_allow_lists_close_the_rest() {
        let r = rules(
            Some(&["openai:gpt-4o*", "anthropic:claude-3-5-*"]),
            &["*:*-preview"],
        );
        assert_eq!(
            r.check(Some("openai"), Some("gpt-4o-mini")),
            ModelVerdict::Allowed
        );
        assert_eq!(
            r.check(Some("anthropic"), Some("claude-3-5-sonnet-20241022")),
            ModelVerdict::Allowed
        );
        assert_eq!(
            r.check(Some("openai"), Some("gpt-4o-realtime-preview")),
            ModelVerdict::Denied
        );
        assert_eq!(
            r.check(Some("openai"), Some("GPT-4O-REALTIME-PREVIEW")),
            ModelVerdict::Denied
        );
        assert_eq!(
            r.check(Some("openai"), Some("o1")),
            ModelVerdict::NotAllowed
        );
        assert_eq!(
            r.check(Some("anthropic"), Some("gpt-4o")),
            ModelVerdict::NotAllowed
        );
        assert_eq!(r.check(None, Some("gpt-4o")), ModelVerdict::NotAllowed);
        assert_eq!(r.check(Some("openai"), None), ModelVerdict::NotAllowed);
        let deny_only = rules(None, &["openai:gpt-3*"]);
        assert_eq!(
            deny_only.check(Some("openai"), Some("gpt-4")),
            ModelVerdict::Allowed
        );
        assert_eq!(
            deny_only.check(Some("openai"), Some("gpt-3.5-turbo")),
            ModelVerdict::Denied
        );
        assert_eq!(deny_only.check(None, None), ModelVerdict::Allowed);
    }

    #[test]
    fn patterns_need_a_provider() {
        assert!(ModelRules::new(Some(&["gpt-4o".to_owned()]), &[]).is_err());
        assert!(ModelRules::new(None, &["openai:[".to_owned()]).is_err());
    }
}
