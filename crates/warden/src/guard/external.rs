//! External classifiers (`guards.external`, DESIGN.md §2 steps 14 and 16): a moderation-style
//! endpoint judges the texts of a request (after the local guards) or of an answer.
//!
//! The request is the OpenAI moderation request, `{"input": ["text", …]}`; the answer is read
//! in the moderation response shape, `{"results": [{"flagged": bool, "categories": {…}}]}`, and
//! any flagged result flags the whole. Each call has a time budget; a classifier that errs, answers
//! something else or runs out of time counts as its `on_error` says, and that is `block` unless
//! configured otherwise (fail closed). Texts travel to the classifier, so plain HTTP is allowed
//! to loopback addresses only. Verdicts are counted in `warden_classifier_calls_total{name,
//! outcome}`; the texts are never logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

#[cfg(feature = "classifiers")]
pub use http::{CallError, HttpClassifier, SetupError};

/// Which traffic a classifier judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The texts extracted from requests.
    Input,
    /// The text of answers (JSON answers whole, streams in segments).
    Output,
}

/// What a failed call counts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Refuse (the default).
    Block,
    /// Let the traffic pass.
    Allow,
}

/// A classifier's judgement of some texts, after `on_error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Nothing flagged (or an error that `on_error: allow` lets pass).
    Pass,
    /// Flagged: the classifier and the categories it named.
    Flagged {
        /// The classifier's name.
        name: String,
        /// The categories marked true.
        categories: Vec<String>,
    },
    /// No verdict, and `on_error: block`: the classifier and why.
    Failed {
        /// The classifier's name.
        name: String,
        /// Why (for the log).
        reason: String,
    },
}

/// A classifier: the HTTP one below, or any other a library user plugs in (a local model).
pub trait Classify: Send + Sync + std::fmt::Debug {
    /// Its name (metrics, logs, findings).
    fn name(&self) -> &str;
    /// Which traffic it judges.
    fn direction(&self) -> Direction;
    /// Judges `texts`, within its own time budget, with its error policy applied.
    fn judge<'a>(
        &'a self,
        texts: &'a [&'a str],
    ) -> Pin<Box<dyn Future<Output = Judgement> + Send + 'a>>;
}

#[cfg(feature = "classifiers")]
mod http {
    use std::time::Duration;

    use serde::Deserialize;

    use super::{Classify, Direction, Judgement, OnError};

    /// Why a classifier could not be set up.
    #[derive(Debug, thiserror::Error)]
    pub enum SetupError {
        /// The URL is not http(s), or is plain HTTP to a host that is not loopback.
        #[error("{0}")]
        Url(String),
        /// The HTTP client could not be built.
        #[error("HTTP client: {0}")]
        Client(String),
    }

    /// Why a call gave no verdict.
    #[derive(Debug, thiserror::Error)]
    pub enum CallError {
        /// No answer within the time budget.
        #[error("no verdict within {0:?}")]
        Timeout(Duration),
        /// The request failed.
        #[error("request failed: {0}")]
        Http(String),
        /// A status other than 200.
        #[error("answered {0}")]
        Status(u16),
        /// An answer that is not a moderation response.
        #[error("answer is not a moderation response: {0}")]
        Answer(String),
    }

    /// One configured classifier.
    #[derive(Clone)]
    pub struct HttpClassifier {
        name: String,
        url: reqwest::Url,
        direction: Direction,
        timeout: Duration,
        on_error: OnError,
        bearer: Option<String>,
        client: reqwest::Client,
    }

    /// Leaves out the credential and the URL (whose query or user part may hold one): a
    /// route's rules are printed in debug output.
    impl std::fmt::Debug for HttpClassifier {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HttpClassifier")
                .field("name", &self.name)
                .field("host", &self.url.host_str())
                .field("direction", &self.direction)
                .field("timeout", &self.timeout)
                .field("on_error", &self.on_error)
                .field("bearer", &self.bearer.as_ref().map(|_| "<hidden>"))
                .finish_non_exhaustive()
        }
    }

    /// The most bytes of a classifier's answer that are read.
    const MAX_ANSWER_BYTES: usize = 1 << 20;

    #[derive(Deserialize)]
    struct ModerationAnswer {
        results: Vec<ModerationResult>,
    }

    #[derive(Deserialize)]
    struct ModerationResult {
        flagged: bool,
        #[serde(default)]
        categories: std::collections::BTreeMap<String, serde_json::Value>,
    }

    impl HttpClassifier {
        /// A classifier posting to `url`; `bearer` is sent as `Authorization: Bearer …`.
        pub fn new(
            name: String,
            url: &str,
            direction: Direction,
            timeout: Duration,
            on_error: OnError,
            bearer: Option<String>,
        ) -> Result<HttpClassifier, SetupError> {
            let url = reqwest::Url::parse(url).map_err(|e| SetupError::Url(e.to_string()))?;
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(host)) => host.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            match url.scheme() {
                "https" => {}
                "http" if loopback => {}
                "http" => {
                    return Err(SetupError::Url(
                    "plain http is allowed to loopback addresses only: texts travel to the classifier"
                        .into(),
                ));
                }
                other => return Err(SetupError::Url(format!("unsupported scheme {other:?}"))),
            }
            let client = reqwest::Client::builder()
                // Texts go to the configured endpoint only.
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .connect_timeout(timeout)
                .no_proxy()
                .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| SetupError::Client(e.to_string()))?;
            Ok(HttpClassifier {
                name,
                url,
                direction,
                timeout,
                on_error,
                bearer,
                client,
            })
        }

        /// Judges `texts`, within the time budget, with `on_error` applied.
        pub async fn judge_texts(&self, texts: &[&str]) -> Judgement {
            let outcome = match tokio::time::timeout(self.timeout, self.call(texts)).await {
                Ok(result) => result,
                Err(_) => Err(CallError::Timeout(self.timeout)),
            };
            let (label, judgement) = match outcome {
                Ok(None) => ("clean", Judgement::Pass),
                Ok(Some(categories)) => (
                    "flagged",
                    Judgement::Flagged {
                        name: self.name.clone(),
                        categories,
                    },
                ),
                Err(error) => {
                    let label = if matches!(error, CallError::Timeout(_)) {
                        "timeout"
                    } else {
                        "error"
                    };
                    tracing::warn!(target: "warden::guard", classifier = %self.name, reason = %error, "classifier gave no verdict");
                    match self.on_error {
                        OnError::Allow => (label, Judgement::Pass),
                        OnError::Block => (
                            label,
                            Judgement::Failed {
                                name: self.name.clone(),
                                reason: error.to_string(),
                            },
                        ),
                    }
                }
            };
            metrics::counter!("warden_classifier_calls_total", "name" => self.name.clone(), "outcome" => label)
            .increment(1);
            judgement
        }

        /// The flagged categories, `None` when nothing was flagged.
        async fn call(&self, texts: &[&str]) -> Result<Option<Vec<String>>, CallError> {
            let mut request = self
                .client
                .post(self.url.clone())
                .json(&serde_json::json!({ "input": texts }));
            if let Some(token) = &self.bearer {
                request = request.bearer_auth(token);
            }
            let failed = |e: reqwest::Error| {
                if e.is_timeout() {
                    CallError::Timeout(self.timeout)
                } else {
                    CallError::Http(e.without_url().to_string())
                }
            };
            let mut response = request.send().await.map_err(failed)?;
            if response.status() != reqwest::StatusCode::OK {
                return Err(CallError::Status(response.status().as_u16()));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(failed)? {
                if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(CallError::Answer("larger than 1 MiB".into()));
                }
                bytes.extend_from_slice(&chunk);
            }
            let answer: ModerationAnswer =
                serde_json::from_slice(&bytes).map_err(|e| CallError::Answer(e.to_string()))?;
            if answer.results.is_empty() {
                return Err(CallError::Answer("no results".into()));
            }
            let flagged: Vec<&ModerationResult> =
                answer.results.iter().filter(|r| r.flagged).collect();
            if flagged.is_empty() {
                return Ok(None);
            }
            let mut categories: Vec<String> = flagged
                .iter()
                .flat_map(|r| r.categories.iter())
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect();
            categories.sort();
            categories.dedup();
            Ok(Some(categories))
        }
    }

    impl Classify for HttpClassifier {
        fn name(&self) -> &str {
            &self.name
        }

        fn direction(&self) -> Direction {
            self.direction
        }

        fn judge<'a>(
            &'a self,
            texts: &'a [&'a str],
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Judgement> + Send + 'a>> {
            Box::pin(self.judge_texts(texts))
        }
    }
}

/// Runs every classifier on `texts` at once; the first judgement that is not a pass, by
/// configuration order.
pub async fn judge_all(classifiers: &[Arc<dyn Classify>], texts: &[&str]) -> Judgement {
    if classifiers.is_empty() || texts.is_empty() {
        return Judgement::Pass;
    }
    let judgements =
        futures_util::future::join_all(classifiers.iter().map(|c| c.judge(texts))).await;
    judgements
        .into_iter()
        .find(|j| *j != Judgement::Pass)
        .unwrap_or(Judgement::Pass)
}

#[cfg(all(test, feature = "classifiers"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn debug_output_hides_the_credential_and_the_url() {
        let classifier = HttpClassifier::new(
            "moderation".into(),
            "https://user:url-secret@moderation.example/v1?key=query-secret",
            Direction::Input,
            Duration::from_secs(1),
            OnError::Block,
            Some("bearer-secret".into()),
        )
        .expect("classifier");
        let shown = format!("{classifier:?}");
        for secret in ["bearer-secret", "url-secret", "query-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("moderation.example"), "{shown}");
    }

    #[test]
    fn texts_cross_the_network_in_clear_only_to_loopback() {
        let new = |url: &str| {
            HttpClassifier::new(
                "m".into(),
                url,
                Direction::Output,
                Duration::from_secs(1),
                OnError::Block,
                None,
            )
        };
        assert!(new("http://127.0.0.1:9/v1").is_ok());
        assert!(new("http://localhost:9/v1").is_ok());
        assert!(new("https://moderation.example/v1").is_ok());
        assert!(new("http://moderation.example/v1").is_err());
        assert!(new("ftp://127.0.0.1/v1").is_err());
    }
}
