//! Token accounting: reading usage from OpenAI and Anthropic responses and pricing it.
//!
//! Both providers report prompt and completion tokens, but in different places and with different
//! semantics (Anthropic splits cached input out of `input_tokens`, and its streaming `message_delta`
//! counts are cumulative), so the rules live here once and every filter meters the same way.

use serde_json::Value;

use crate::sse::SseEvent;

/// Tokens consumed by one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

fn count(obj: &Value, key: &str) -> Option<u64> {
    obj.get(key).and_then(Value::as_u64)
}

/// Reads `usage.prompt_tokens` / `usage.completion_tokens` of an OpenAI response or chunk. `None` when
/// there is no usage object (e.g. `"usage": null` on ordinary stream chunks) or it has neither count.
pub fn from_openai_json(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let prompt = count(u, "prompt_tokens");
    let completion = count(u, "completion_tokens");
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(Usage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: completion.unwrap_or(0),
    })
}

/// Reads the `usage` of an Anthropic message. Cache writes and reads are billed input, so they count
/// as prompt tokens alongside `input_tokens`.
pub fn from_anthropic_json(v: &Value) -> Option<Usage> {
    let mut acc = AnthropicStreamUsage::default();
    acc.merge(v.get("usage")?);
    acc.usage()
}

/// Accumulates usage over an Anthropic stream: `message_start` carries the input counts, and each
/// `message_delta` carries counts that are cumulative, so later values replace earlier ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AnthropicStreamUsage {
    input: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    output: Option<u64>,
}

impl AnthropicStreamUsage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks at one SSE event; only `message_start` and `message_delta` are parsed.
    pub fn observe(&mut self, ev: &SseEvent) {
        let relevant = match ev.event.as_deref() {
            Some(name) => name == "message_start" || name == "message_delta",
            None => ev.data.contains("\"message_"),
        };
        if !relevant {
            return;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
            self.observe_json(&v);
        }
    }

    /// Like [`Self::observe`] for an event whose data the caller has already parsed.
    pub fn observe_json(&mut self, v: &Value) {
        let usage = match v.get("type").and_then(Value::as_str) {
            Some("message_start") => v.get("message").and_then(|m| m.get("usage")),
            Some("message_delta") => v.get("usage"),
            _ => None,
        };
        if let Some(usage) = usage {
            self.merge(usage);
        }
    }

    /// Counts present in `usage` replace the ones held; absent or null ones keep them.
    fn merge(&mut self, usage: &Value) {
        let fields = [
            (&mut self.input, "input_tokens"),
            (&mut self.cache_creation, "cache_creation_input_tokens"),
            (&mut self.cache_read, "cache_read_input_tokens"),
            (&mut self.output, "output_tokens"),
        ];
        for (slot, key) in fields {
            if let Some(n) = count(usage, key) {
                *slot = Some(n);
            }
        }
    }

    /// The usage so far; `None` until some count has been seen.
    pub fn usage(&self) -> Option<Usage> {
        let prompt = [self.input, self.cache_creation, self.cache_read];
        if prompt.iter().all(Option::is_none) && self.output.is_none() {
            return None;
        }
        Some(Usage {
            prompt_tokens: prompt.iter().flatten().fold(0u64, |a, &b| a.saturating_add(b)),
            completion_tokens: self.output.unwrap_or(0),
        })
    }
}

/// Cost in micro-dollars for prices in USD per million tokens: tokens × USD/1M × 1e6 µUSD/USD reduces to
/// tokens × price. Negative or non-finite prices count as zero; the result saturates at `u64::MAX`.
pub fn cost_micro_usd(u: Usage, prompt_per_million: f64, completion_per_million: f64) -> u64 {
    let price = |p: f64| if p.is_finite() && p > 0.0 { p } else { 0.0 };
    let micro = u.prompt_tokens as f64 * price(prompt_per_million)
        + u.completion_tokens as f64 * price(completion_per_million);
    // Float-to-int `as` saturates (and maps NaN to 0), which is what a counter wants.
    micro.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    use crate::sse::SseParser;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn u(p: u64, c: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
        }
    }

    #[test]
    fn openai_usage() {
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/openai_chat.json")).unwrap();
        let cases = [
            (fixture, Some(u(19, 10))),
            (
                json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
                Some(u(3, 4)),
            ),
            (json!({"usage": {"prompt_tokens": 3}}), Some(u(3, 0))),
            (json!({"usage": null}), None),
            (json!({"usage": {}}), None),
            (json!({"usage": {"prompt_tokens": "3"}}), None),
            (
                json!({"usage": {"prompt_tokens": -1, "completion_tokens": 2}}),
                Some(u(0, 2)),
            ),
            (json!({"choices": []}), None),
            (json!([1, 2]), None),
        ];
        for (v, want) in cases {
            assert_eq!(from_openai_json(&v), want, "{v}");
        }
    }

    #[test]
    fn anthropic_usage() {
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/anthropic_message.json")).unwrap();
        let cases = [
            (fixture, Some(u(2112, 14))),
            (
                json!({"usage": {"input_tokens": 5, "output_tokens": 6}}),
                Some(u(5, 6)),
            ),
            (
                json!({"usage": {"input_tokens": 5, "cache_creation_input_tokens": null, "output_tokens": 6}}),
                Some(u(5, 6)),
            ),
            (json!({"usage": {"output_tokens": 6}}), Some(u(0, 6))),
            (json!({"usage": {}}), None),
            (json!({"usage": null}), None),
            (json!({}), None),
        ];
        for (v, want) in cases {
            assert_eq!(from_anthropic_json(&v), want, "{v}");
        }
    }

    #[test]
    fn total_saturates() {
        assert_eq!(u(2, 3).total(), 5);
        assert_eq!(u(u64::MAX, 3).total(), u64::MAX);
    }

    fn stream_usage(input: &str) -> Option<Usage> {
        let mut p = SseParser::new();
        let mut acc = AnthropicStreamUsage::new();
        for ev in p.feed(input.as_bytes()).iter().chain(p.finish().iter()) {
            acc.observe(ev);
        }
        acc.usage()
    }

    #[test]
    fn anthropic_stream_usage() {
        let cases: &[(&str, &str, Option<Usage>)] = &[
            ("fixture", include_str!("../tests/fixtures/anthropic_stream.sse"), Some(u(35, 15))),
            ("error fixture", include_str!("../tests/fixtures/anthropic_stream_error.sse"), Some(u(8, 1))),
            ("empty", "", None),
            (
                "deltas replace, never add",
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n\
                 event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\n\
                 event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n",
                Some(u(10, 9)),
            ),
            (
                "input counts from message_delta",
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\n\n\
                 event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":3,\"output_tokens\":20}}\n\n",
                Some(u(19, 20)),
            ),
            (
                "no event names",
                "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":2,\"output_tokens\":1}}}\n\n\
                 data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":3}}\n\n",
                Some(u(2, 3)),
            ),
            (
                "text mentioning usage is ignored",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"usage message_delta\"},\"usage\":{\"output_tokens\":99}}\n\n",
                None,
            ),
            ("bad json", "event: message_delta\ndata: {\"usage\":\n\n", None),
        ];
        for (name, input, want) in cases {
            assert_eq!(stream_usage(input), *want, "{name}");
        }
    }

    #[test]
    fn cost() {
        let cases = [
            (u(0, 0), 0.15, 0.60, 0),
            (u(1_000_000, 1_000_000), 0.15, 0.60, 750_000),
            (u(1000, 500), 0.15, 0.60, 450),
            (u(1, 1), 0.15, 0.60, 1),  // 0.75 rounds up
            (u(1, 0), 0.4, 0.0, 0),    // 0.4 rounds down
            (u(3, 7), 3.0, 15.0, 114), // Claude-like prices
            (u(10, 10), -1.0, f64::NAN, 0),
            (u(u64::MAX, u64::MAX), 1e6, 1e6, u64::MAX),
            (u(5, 5), f64::INFINITY, 1.0, 5),
        ];
        for (usage, p, c, want) in cases {
            assert_eq!(cost_micro_usd(usage, p, c), want, "{usage:?} {p} {c}");
        }
    }
}
