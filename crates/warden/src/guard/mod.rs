//! Content guards: rules over what a request asks for and says. [`models`] allows and denies
//! the requested model; [`normalize`] folds disguised text before the detectors read it;
//! [`injection`] scores prompt injection; [`detect`] finds secrets and personal data; [`stream`] redacts answers that arrive in pieces; [`output`] filters the upstream's answers.

pub mod detect;
pub mod external;
pub mod injection;
pub mod models;
pub mod ngram;
pub mod normalize;
pub mod output;
pub mod stream;

/// What the content guards found in one request, for its record (the access log now, the audit
/// trail later): the guard, the rule and where (a JSON pointer), never the text. The body rules
/// layer puts it in the response's extensions, for refused and forwarded requests alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardFindings(pub Vec<GuardFinding>);

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardFinding {
    /// `prompt_injection`, `secrets`, `pii`, `blocked_patterns` or a classifier's name.
    pub guard: String,
    /// The rule, pattern or category.
    pub rule: String,
    /// The JSON pointer of the text it was found in.
    pub location: String,
}

impl GuardFindings {
    /// `guard:rule@location` entries, comma-separated, for a log field.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (i, f) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&f.guard);
            out.push(':');
            out.push_str(&f.rule);
            out.push('@');
            out.push_str(&f.location);
        }
        out
    }
}
