//! What an answer says it cost: the `usage` object of OpenAI Chat Completions and Responses and
//! of Anthropic Messages, from a whole JSON answer.

use serde_json::Value;

/// Tokens an answer reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt (input) tokens, cached ones included.
    pub prompt: u64,
    /// Output tokens.
    pub output: u64,
}

/// The usage in a `usage` object of any of the three APIs: `prompt_tokens`/`completion_tokens`
/// (Chat Completions), `input_tokens`/`output_tokens` (Responses, Anthropic; Anthropic counts
/// cache reads and writes apart from `input_tokens`, so they are added).
pub fn of_usage_object(usage: &Value) -> Option<Usage> {
    let field = |name: &str| usage.get(name).and_then(Value::as_u64);
    let prompt = field("prompt_tokens").or_else(|| {
        let input = field("input_tokens")?;
        Some(
            input
                + field("cache_creation_input_tokens").unwrap_or(0)
                + field("cache_read_input_tokens").unwrap_or(0),
        )
    });
    let output = field("completion_tokens").or_else(|| field("output_tokens"));
    match (prompt, output) {
        (None, None) => None,
        (prompt, output) => Some(Usage {
            prompt: prompt.unwrap_or(0),
            output: output.unwrap_or(0),
        }),
    }
}

/// The usage a whole JSON answer reports (its top-level `usage`).
pub fn of_answer(body: &[u8]) -> Option<Usage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    of_usage_object(value.get("usage")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_api_reports_its_own_way() {
        let chat =
            json!({"usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}});
        assert_eq!(
            of_answer(chat.to_string().as_bytes()),
            Some(Usage {
                prompt: 12,
                output: 30
            })
        );
        let responses =
            json!({"usage": {"input_tokens": 7, "output_tokens": 9, "total_tokens": 16}});
        assert_eq!(
            of_answer(responses.to_string().as_bytes()),
            Some(Usage {
                prompt: 7,
                output: 9
            })
        );
        let anthropic = json!({"usage": {"input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 3}});
        assert_eq!(
            of_answer(anthropic.to_string().as_bytes()),
            Some(Usage {
                prompt: 125,
                output: 3
            })
        );
        assert_eq!(of_answer(b"{\"id\":1}"), None);
        assert_eq!(of_answer(b"not json"), None);
    }
}
