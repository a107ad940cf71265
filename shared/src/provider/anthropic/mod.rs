//! Anthropic Messages: a front door's dialect and the provider `anthropic`, to and from [`neutral`],
//! its errors, its stream events and its usage.
//!
//! As the door's dialect: its requests decoded into [`neutral`] for targets that speak another
//! ([`decode`]), answers written from it ([`message_json`], [`StreamWriter`]), passed-through streams
//! watched for their usage and end ([`AnthropicStream`]). As a target's dialect: requests rendered
//! ([`render`]; Anthropic requires `max_tokens`, a target's `default_max_tokens` when the client sets
//! none, and refuses empty text blocks, which are left out), answers, errors and stream events read
//! ([`response`], [`Decoder`], [`error`]).

mod answer;
pub mod decode;
pub mod render;
mod stream;

pub use answer::{message_json, response};
pub use decode::decode;
pub use render::render;
pub use stream::{AnthropicStream, Decoder, StreamWriter};

use serde_json::Value;
use std::borrow::Cow;

use super::neutral::{self, Unsupported};
use super::{Api, Dialect, Expect, Provider, Rendered, StreamDecoder, Translator};
use crate::config::ConfigError;
use crate::error::ApiError;
use crate::sse::SseEvent;
use crate::usage::Usage;

/// `anthropic-version` sent when the target sets none.
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when neither the client nor the target sets one.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The provider's own fields.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    anthropic_version: Option<String>,
    #[serde(default)]
    default_max_tokens: Option<u64>,
}

impl Config {
    pub fn compile(
        self,
        model: Option<String>,
        at: &dyn Fn(&str) -> String,
    ) -> Result<Anthropic, ConfigError> {
        if let Some(v) = &self.anthropic_version {
            crate::config::check_header_value(at("anthropic_version"), v)?;
        }
        let default_max_tokens = self.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        if default_max_tokens == 0 {
            return Err(ConfigError::new(at("default_max_tokens"), "must be at least 1"));
        }
        Ok(Anthropic {
            model: super::required_model(model, at)?,
            version: self.anthropic_version.unwrap_or_else(|| DEFAULT_VERSION.into()),
            default_max_tokens,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anthropic {
    model: String,
    version: String,
    default_max_tokens: u64,
}

impl Anthropic {
    pub fn new(model: &str) -> Anthropic {
        Anthropic {
            model: model.into(),
            version: DEFAULT_VERSION.into(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn path(&self, api: Api, _stream: bool) -> Option<Cow<'_, str>> {
        match api {
            Api::ChatCompletions | Api::Messages => Some(Cow::Borrowed("/v1/messages")),
            Api::Embeddings | Api::Completions => None,
        }
    }
    fn headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = Vec::with_capacity(2);
        if let Some(k) = key {
            h.push(("x-api-key", k.to_string()));
        }
        h.push(("anthropic-version", self.version.clone()));
        h
    }
    fn speaks(&self) -> Option<Dialect> {
        Some(Dialect::Anthropic)
    }
    fn translator(&self) -> &dyn Translator {
        self
    }
}

impl Translator for Anthropic {
    fn label(&self) -> &'static str {
        "Anthropic"
    }
    fn request(
        &self,
        req: &neutral::Request<'_>,
        unsupported: &mut Unsupported,
    ) -> Result<Rendered, ApiError> {
        render(req, &self.model, self.default_max_tokens, unsupported)
    }
    fn response(&self, body: &[u8], expect: Expect) -> Result<neutral::Completion, ApiError> {
        response(body, expect)
    }
    fn error(&self, status: u16, body: &[u8]) -> neutral::Error {
        error(status, body)
    }
    fn stream(&self, expect: Expect) -> Box<dyn StreamDecoder> {
        Box::new(Decoder::new(expect))
    }
}

/// Whether `body` is an Anthropic error object (`{"type": "error", "error": {...}}`).
pub fn is_error_object(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).ok().is_some_and(|v| {
        v.get("type").and_then(Value::as_str) == Some("error") && v.get("error").is_some_and(Value::is_object)
    })
}

/// An Anthropic error body (`{"type":"error","error":{"type","message","details":{"error_code"}}}`):
/// Anthropic's error type is kept as `type`, and as `code` unless `details.error_code` names one, so
/// clients can still tell them apart. Any other body is wrapped as OpenAI's dialect wraps it (its text,
/// `upstream_error`, `upstream_<status>`).
pub fn error(status: u16, body: &[u8]) -> neutral::Error {
    let v = serde_json::from_slice::<Value>(body).ok();
    let err = v
        .as_ref()
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("error"))
        .and_then(|v| v.get("error"))
        .filter(|e| e.is_object());
    let Some(err) = err else {
        return super::openai::error(status, body);
    };
    let field = |k: &str| {
        err.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let kind = field("type").unwrap_or("upstream_error");
    let code = err
        .get("details")
        .and_then(|d| d.get("error_code"))
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .unwrap_or(kind);
    let message = field("message").map_or_else(|| super::openai::status_message(status), str::to_owned);
    neutral::Error::new(message, kind, code)
}

fn count(obj: &Value, key: &str) -> Option<u64> {
    obj.get(key).and_then(Value::as_u64)
}

/// Reads the `usage` of an Anthropic message. Cache writes and reads are billed input, so they count
/// as prompt tokens alongside `input_tokens` (and as its cached and cache-write parts);
/// `output_tokens_details.thinking_tokens` is the reasoning part of the output.
pub fn usage(v: &Value) -> Option<Usage> {
    let mut acc = StreamUsage::default();
    acc.merge(v.get("usage")?);
    acc.usage()
}

/// Anthropic's `usage` object for `u`: `input_tokens` is the uncached part of the prompt.
pub fn usage_json(u: Usage) -> Value {
    let u = u.checked();
    let mut v = serde_json::Map::new();
    for (k, n) in [
        ("input_tokens", u.uncached_prompt_tokens()),
        ("cache_creation_input_tokens", u.cache_write_tokens),
        ("cache_read_input_tokens", u.cached_tokens),
        ("output_tokens", u.completion_tokens),
    ] {
        v.insert(k.into(), Value::from(n));
    }
    if u.reasoning_tokens > 0 {
        v.insert(
            "output_tokens_details".into(),
            serde_json::json!({"thinking_tokens": u.reasoning_tokens}),
        );
    }
    Value::Object(v)
}

/// Accumulates usage over an Anthropic stream: `message_start` carries the input counts, and each
/// `message_delta` carries counts that are cumulative, so later values replace earlier ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamUsage {
    input: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    output: Option<u64>,
    thinking: Option<u64>,
}

impl StreamUsage {
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
        let thinking = usage
            .get("output_tokens_details")
            .and_then(|d| count(d, "thinking_tokens"));
        let fields = [
            (&mut self.input, count(usage, "input_tokens")),
            (
                &mut self.cache_creation,
                count(usage, "cache_creation_input_tokens"),
            ),
            (&mut self.cache_read, count(usage, "cache_read_input_tokens")),
            (&mut self.output, count(usage, "output_tokens")),
            (&mut self.thinking, thinking),
        ];
        for (slot, n) in fields {
            if let Some(n) = n {
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
        Some(
            Usage {
                cached_tokens: self.cache_read.unwrap_or(0),
                cache_write_tokens: self.cache_creation.unwrap_or(0),
                reasoning_tokens: self.thinking.unwrap_or(0),
                ..Usage::new(
                    prompt.iter().flatten().fold(0u64, |a, &b| a.saturating_add(b)),
                    self.output.unwrap_or(0),
                )
            }
            .checked(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn u(p: u64, c: u64) -> Usage {
        Usage::new(p, c)
    }

    fn parts(p: u64, c: u64, read: u64, write: u64) -> Usage {
        Usage {
            cached_tokens: read,
            cache_write_tokens: write,
            ..u(p, c)
        }
    }

    #[test]
    fn anthropic_usage() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/anthropic_message.json")).unwrap();
        let cases = [
            (fixture, Some(parts(2112, 14, 2000, 100))),
            (
                json!({"usage": {"input_tokens": 5, "output_tokens": 6}}),
                Some(u(5, 6)),
            ),
            (
                json!({"usage": {"input_tokens": 5, "cache_creation_input_tokens": null, "output_tokens": 6}}),
                Some(u(5, 6)),
            ),
            (
                json!({"usage": {"input_tokens": 1, "output_tokens": 60, "output_tokens_details": {"thinking_tokens": 40}}}),
                Some(Usage {
                    reasoning_tokens: 40,
                    ..u(1, 60)
                }),
            ),
            (json!({"usage": {"output_tokens": 6}}), Some(u(0, 6))),
            (json!({"usage": {}}), None),
            (json!({"usage": null}), None),
            (json!({}), None),
        ];
        for (v, want) in cases {
            assert_eq!(usage(&v), want, "{v}");
        }
    }

    #[test]
    fn usage_json_splits_the_prompt_again() {
        let all = Usage {
            reasoning_tokens: 3,
            ..parts(2112, 14, 2000, 100)
        };
        let v = usage_json(all);
        assert_eq!(
            v,
            json!({"input_tokens": 12, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000,
                   "output_tokens": 14, "output_tokens_details": {"thinking_tokens": 3}})
        );
        assert_eq!(
            usage(&json!({ "usage": v })),
            Some(all),
            "read back, nothing counted twice"
        );
    }

    fn stream_usage(input: &str) -> Option<Usage> {
        let mut p = SseParser::new();
        let mut acc = StreamUsage::new();
        for ev in p.feed(input.as_bytes()).iter().chain(p.finish().iter()) {
            acc.observe(ev);
        }
        acc.usage()
    }

    #[test]
    fn anthropic_stream_usage() {
        let cases: &[(&str, &str, Option<Usage>)] = &[
            ("fixture", include_str!("../../../tests/fixtures/anthropic_stream.sse"), Some(parts(35, 15, 10, 0))),
            ("error fixture", include_str!("../../../tests/fixtures/anthropic_stream_error.sse"), Some(u(8, 1))),
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
                Some(parts(19, 20, 4, 3)),
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
    fn errors_read_into_neutral() {
        let cases: Vec<(u16, &[u8], neutral::Error)> = vec![
            (
                529,
                include_bytes!("../../../tests/fixtures/anthropic_error.json"),
                neutral::Error::new("Overloaded", "overloaded_error", "overloaded_error"),
            ),
            (
                400,
                br#"{"type":"error","error":{"type":"invalid_request_error","message":"m","details":{"error_code":"model_not_found"}}}"#,
                neutral::Error::new("m", "invalid_request_error", "model_not_found"),
            ),
            (
                500,
                br#"{"type":"error","error":{"type":"api_error"}}"#,
                neutral::Error::new(
                    "upstream returned HTTP 500 (internal server error)",
                    "api_error",
                    "api_error",
                ),
            ),
            (
                500,
                br#"{"type":"error","error":{"message":"m"}}"#,
                neutral::Error::new("m", "upstream_error", "upstream_error"),
            ),
            (
                502,
                b"<html>bad gateway</html>",
                neutral::Error::new("<html>bad gateway</html>", "upstream_error", "upstream_502"),
            ),
            (
                400,
                br#"{"error":{"message":"already openai","type":"invalid_request_error","code":"c"}}"#,
                neutral::Error::new("already openai", "invalid_request_error", "c"),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(error(status, body), want, "{status}");
        }
        assert!(is_error_object(include_bytes!(
            "../../../tests/fixtures/anthropic_error.json"
        )));
        assert!(!is_error_object(br#"{"error":{"message":"x"}}"#));
    }
}
