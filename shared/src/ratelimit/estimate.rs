//! The reservation made when a request arrives, before anyone knows its real usage.
//!
//! Prompt tokens are the estimate every policy shares ([`crate::chat::estimate`]: about four characters
//! per token over every text the model reads, plus a few tokens per message). The estimate only has to
//! be of the right size: the reservation is settled to the provider's real usage when the response ends.
//! The completion is reserved at the request's `max_tokens` (or `max_completion_tokens`), capped by
//! config so one request cannot reserve a whole budget, and a configured default when the request names
//! no maximum. An embeddings request reserves its input (its texts, and one token per token id given)
//! and no completion.

use crate::chat::{self, Api};
use crate::host::Body;
use serde_json::Value;

pub use crate::chat::estimate::{CHARS_PER_TOKEN, TOKENS_PER_MESSAGE};

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

/// Estimates a request of `api` (`None`: a configured path of no known API, read as any chat shape).
/// A body that is not a JSON object is estimated from its length, so it is still counted (the next
/// filter refuses it).
pub fn estimate(body: &mut Body, api: Option<Api>, completion: CompletionPolicy) -> Estimate {
    let len = body.len();
    let obj = match body.json() {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Estimate {
                model: None,
                stream: false,
                prompt_tokens: (len as u64).div_ceil(CHARS_PER_TOKEN),
                completion_tokens: completion.default_tokens.min(completion.cap_tokens),
            }
        }
    };
    let texts = chat::texts(api, obj);
    let asked = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_u64));
    let embeddings = api == Some(Api::Embeddings);
    let given = if embeddings {
        input_token_ids(obj.get("input"))
    } else {
        0
    };
    Estimate {
        model: obj.get("model").and_then(Value::as_str).map(str::to_string),
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        prompt_tokens: chat::estimate::prompt_tokens(obj, &texts).saturating_add(given),
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
fn input_token_ids(v: Option<&Value>) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn body(b: &[u8]) -> Body {
        Body::new(b.to_vec())
    }

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
        ];
        for (body, prompt, completion) in cases {
            let e = estimate(&mut Body::new(body.to_string().into_bytes()), None, POLICY);
            assert_eq!(
                (e.prompt_tokens, e.completion_tokens),
                (prompt, completion),
                "{body}"
            );
        }
    }

    #[test]
    fn embeddings_reserve_their_input_and_no_completion() {
        let cases = [
            (json!({"model":"e","input":"abcdefgh"}), 2),
            (json!({"model":"e","input":["abcd","abcd"]}), 2),
            (json!({"model":"e","input":[[1,2,3],[4]]}), 4),
            (json!({"model":"e","input":[5,6],"max_tokens":50}), 2),
        ];
        for (body, prompt) in cases {
            let e = estimate(
                &mut Body::new(body.to_string().into_bytes()),
                Some(Api::Embeddings),
                POLICY,
            );
            assert_eq!((e.prompt_tokens, e.completion_tokens), (prompt, 0), "{body}");
        }
    }

    #[test]
    fn model_stream_and_non_json() {
        let e = estimate(
            &mut body(br#"{"model":"gpt","stream":true,"messages":[]}"#),
            None,
            POLICY,
        );
        assert_eq!(e.model.as_deref(), Some("gpt"));
        assert!(e.stream);
        let e = estimate(&mut body(b"not json at all!"), None, POLICY);
        assert_eq!((e.model, e.prompt_tokens, e.completion_tokens), (None, 4, 100));
        let e = estimate(
            &mut body(b"[1,2]"),
            Some(Api::ChatCompletions),
            CompletionPolicy {
                default_tokens: 5000,
                cap_tokens: 10,
            },
        );
        assert_eq!(e.completion_tokens, 10);
    }
}
