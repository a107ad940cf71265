//! The prompt-token estimate every policy uses (the guard's `max_prompt_tokens`, the rate limit's
//! reservation): no tokenizer in the VM (a BPE table would be megabytes of Wasm), so about four
//! characters per token, as OpenAI's own rule of thumb says, for each text the walker finds, plus a few
//! tokens of framing per message for the role and separators. It only has to be of the right size: the
//! rate limit settles to the provider's real usage when the answer ends.

use super::walk::Text;
use serde_json::Value;

/// Characters per token of the heuristic.
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens added per entry of `messages` for the role and the separators around it.
pub const TOKENS_PER_MESSAGE: u64 = 4;

/// The estimate of one text: ⌈characters / 4⌉.
pub fn text_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(CHARS_PER_TOKEN)
}

/// The prompt tokens of a request whose texts the walker found: each text ⌈chars / 4⌉, plus
/// [`TOKENS_PER_MESSAGE`] per entry of `messages`.
pub fn prompt_tokens(body: &Value, texts: &[Text<'_>]) -> u64 {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |m| m.len() as u64);
    texts
        .iter()
        .map(|t| text_tokens(&t.text))
        .fold(0u64, u64::saturating_add)
        .saturating_add(messages.saturating_mul(TOKENS_PER_MESSAGE))
}

/// A body that is not JSON is estimated from its length, so it is still counted.
pub fn bytes_tokens(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(CHARS_PER_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{texts, Api};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_kind_counts() {
        let cases = [
            (
                Some(Api::ChatCompletions),
                json!({"messages": [{"role": "user", "content": "abcdefgh"}]}),
                6,
            ),
            (
                Some(Api::ChatCompletions),
                json!({"messages": [{"role": "user", "content": "abcdefghi"}]}),
                7,
            ),
            // Each text rounds up on its own: two 1-character parts are 2 tokens.
            (
                Some(Api::ChatCompletions),
                json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
                6,
            ),
            // Tool definitions, calls and the user id count too.
            (
                Some(Api::ChatCompletions),
                json!({"messages": [], "user": "abcd", "tools": [{"type": "function", "function": {"name": "abcd", "description": "abcdabcd"}}]}),
                4,
            ),
            // Anthropic's system prompt is no message: no framing.
            (
                Some(Api::Messages),
                json!({"system": "abcd", "messages": [{"role": "user", "content": "abcdefgh"}]}),
                7,
            ),
            (Some(Api::Completions), json!({"prompt": "abcdabcd"}), 2),
            (
                Some(Api::ChatCompletions),
                json!({"messages": [{"role": "user", "content": "ééééé"}]}),
                6,
            ),
        ];
        for (api, body, want) in cases {
            assert_eq!(prompt_tokens(&body, &texts(api, &body)), want, "{body}");
        }
        assert_eq!(bytes_tokens(b"not json at all!"), 4);
    }
}
