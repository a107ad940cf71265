//! The reservation made when a request arrives, before anyone knows its real usage.
//!
//! Prompt tokens are estimated without a tokenizer (a BPE table would be megabytes of Wasm): about four
//! characters per token for English text, as OpenAI's own rule of thumb says, plus a fixed overhead per
//! message for the role and separators. The estimate only has to be of the right size: the reservation
//! is settled to the provider's real usage when the response ends. The completion is reserved at the
//! request's `max_tokens` (or `max_completion_tokens`), capped by config so one request cannot reserve a
//! whole budget, and a configured default when the request names no maximum.

use serde_json::Value;

/// Characters per token of the heuristic.
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens added per message for the role and the separators around it.
pub const TOKENS_PER_MESSAGE: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletionPolicy {
    /// Reserved when the request names no maximum.
    pub default_tokens: u64,
    /// Upper bound of the reservation whatever the request asks.
    pub cap_tokens: u64,
}

/// What the request tells us before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// The request's `model`, if it has one.
    pub model: Option<String>,
    pub stream: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Estimate {
    pub fn usage(&self) -> crate::usage::Usage {
        crate::usage::Usage::new(self.prompt_tokens, self.completion_tokens)
    }
}

/// Estimates an OpenAI chat (or Anthropic messages, or legacy completions) request body. A body that is
/// not a JSON object is estimated from its length, so it is still counted (the next filter refuses it).
pub fn estimate(body: &[u8], completion: CompletionPolicy) -> Estimate {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Estimate {
            model: None,
            stream: false,
            prompt_tokens: (body.len() as u64).div_ceil(CHARS_PER_TOKEN),
            completion_tokens: completion.default_tokens.min(completion.cap_tokens),
        };
    };
    let mut chars = 0u64;
    let mut messages = 0u64;
    if let Some(list) = obj.get("messages").and_then(Value::as_array) {
        for m in list {
            messages += 1;
            chars = chars.saturating_add(text_chars(m.get("content")));
        }
    }
    // Anthropic's top-level system prompt, and the legacy completions `prompt`.
    chars = chars.saturating_add(text_chars(obj.get("system")));
    chars = chars.saturating_add(text_chars(obj.get("prompt")));
    // Embeddings: `input` is a string, strings, or token arrays (one token each); nothing is generated.
    let embeddings = obj.contains_key("input") && !obj.contains_key("messages");
    let mut given_tokens = 0u64;
    if embeddings {
        chars = chars.saturating_add(text_chars(obj.get("input")));
        given_tokens = input_tokens(obj.get("input"));
    }
    let asked = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_u64));
    Estimate {
        model: obj.get("model").and_then(Value::as_str).map(str::to_string),
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        prompt_tokens: chars
            .div_ceil(CHARS_PER_TOKEN)
            .saturating_add(messages.saturating_mul(TOKENS_PER_MESSAGE))
            .saturating_add(given_tokens),
        completion_tokens: if embeddings {
            0
        } else {
            asked
                .unwrap_or(completion.default_tokens)
                .min(completion.cap_tokens)
        },
    }
}

/// Tokens given as token ids in an embeddings `input` (an array of integers, or of such arrays).
fn input_tokens(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::Number(_) => 1,
                Value::Array(inner) => inner.iter().filter(|t| t.is_number()).count() as u64,
                _ => 0,
            })
            .fold(0, u64::saturating_add),
        _ => 0,
    }
}

/// Characters of text in a content value: a string, or an array of parts (strings or `{"text": ..}`).
fn text_chars(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::String(s)) => s.chars().count() as u64,
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.chars().count() as u64,
                other => text_chars(other.get("text")),
            })
            .fold(0, u64::saturating_add),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const POLICY: CompletionPolicy = CompletionPolicy {
        default_tokens: 100,
        cap_tokens: 1000,
    };

    #[test]
    fn estimates() {
        let cases = [
            // 8 chars -> 2 tokens, + 4 for the message; no max_tokens -> default.
            (
                json!({"model":"m","messages":[{"role":"user","content":"abcdefgh"}]}),
                6,
                100,
            ),
            // 9 chars round up to 3.
            (
                json!({"model":"m","messages":[{"role":"user","content":"abcdefghi"}],"max_tokens":50}),
                7,
                50,
            ),
            // The cap wins over a large max_tokens; max_completion_tokens is preferred.
            (
                json!({"messages":[{"role":"user","content":""}],"max_tokens":5000}),
                4,
                1000,
            ),
            (
                json!({"messages":[],"max_completion_tokens":7,"max_tokens":9}),
                0,
                7,
            ),
            // Content parts and Anthropic system blocks.
            (
                json!({"system":[{"type":"text","text":"abcd"}],"messages":[{"role":"user","content":[{"type":"text","text":"abcd"},{"type":"image_url"}]}]}),
                6,
                100,
            ),
            // Multi-byte characters count once each.
            (json!({"messages":[{"role":"user","content":"ééééé"}]}), 6, 100),
            (json!({"prompt":"abcdabcd","max_tokens":-1}), 2, 100),
            // Embeddings: the input, nothing generated.
            (json!({"model":"e","input":"abcdefgh"}), 2, 0),
            (json!({"model":"e","input":["abcd","abcd"]}), 2, 0),
            (json!({"model":"e","input":[[1,2,3],[4]]}), 4, 0),
            (json!({"model":"e","input":[5,6]}), 2, 0),
        ];
        for (body, prompt, completion) in cases {
            let e = estimate(body.to_string().as_bytes(), POLICY);
            assert_eq!(
                (e.prompt_tokens, e.completion_tokens),
                (prompt, completion),
                "{body}"
            );
        }
    }

    #[test]
    fn model_stream_and_non_json() {
        let e = estimate(br#"{"model":"gpt","stream":true,"messages":[]}"#, POLICY);
        assert_eq!(e.model.as_deref(), Some("gpt"));
        assert!(e.stream);
        let e = estimate(b"not json at all!", POLICY);
        assert_eq!((e.model, e.prompt_tokens, e.completion_tokens), (None, 4, 100));
        let e = estimate(
            b"[1,2]",
            CompletionPolicy {
                default_tokens: 5000,
                cap_tokens: 10,
            },
        );
        assert_eq!(e.completion_tokens, 10);
    }
}
