//! OpenAI Chat Completions (and Embeddings): a front door's dialect, and the providers `openai` and
//! `openai_compatible` (servers with the same API; Azure is [`super::azure`], the same dialect).
//!
//! As the door's dialect: its requests decoded into [`neutral`] for targets that speak another
//! ([`decode`]), and answers written from [`neutral`] ([`completion_json`], [`StreamWriter`]). As a
//! target's dialect: requests rendered from [`neutral`] (for Anthropic's door, [`render`]), answers,
//! errors and stream chunks read into it ([`response`], [`Decoder`], [`error`]); passed through, the
//! usage chunk asked for ([`request_stream_usage`]) and observed or stripped again ([`OpenAiStream`]);
//! usage with its cached and reasoning parts ([`usage`]).

mod answer;
pub mod decode;
pub mod render;
mod stream;

pub use super::exchange::{chat_request, parse_chat_request, ChatRequest};
pub use answer::{completion_json, response};
pub use decode::decode;
pub use render::render;
pub use stream::{write_stream_error, Decoder, OpenAiStream, StreamWriter};

use serde_json::{json, Map, Value};
use std::borrow::Cow;

use super::neutral::{self, Unsupported};
use super::{Api, Dialect, Expect, Provider, Rendered, StreamDecoder, Translator};
use crate::config::ConfigError;
use crate::error::{error_json, ApiError};
use crate::usage::Usage;

/// The provider's own fields: none beyond the target's.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Which server speaks the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OpenAI itself (`provider: openai`).
    OpenAi,
    /// A server with its API (`openai_compatible`: vLLM, Ollama, LiteLLM, …): sent `max_tokens`
    /// rather than `max_completion_tokens`, which not all of them know.
    Compatible,
    /// Azure OpenAI.
    Azure,
}

impl Config {
    pub fn compile(
        self,
        flavor: Flavor,
        model: Option<String>,
        at: &dyn Fn(&str) -> String,
    ) -> Result<OpenAi, ConfigError> {
        Ok(OpenAi {
            flavor,
            model: super::required_model(model, at)?,
        })
    }
}

/// OpenAI, or a server with its API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAi {
    flavor: Flavor,
    model: String,
}

impl OpenAi {
    pub fn new(model: &str) -> OpenAi {
        OpenAi {
            flavor: Flavor::OpenAi,
            model: model.into(),
        }
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        match self.flavor {
            Flavor::Compatible => "openai_compatible",
            Flavor::OpenAi | Flavor::Azure => "openai",
        }
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn path(&self, api: Api, _stream: bool) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(match api {
            Api::ChatCompletions | Api::Messages => "/v1/chat/completions",
            Api::Embeddings => "/v1/embeddings",
            Api::Completions => return None,
        }))
    }
    fn headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        key.map(|k| ("authorization", format!("Bearer {k}")))
            .into_iter()
            .collect()
    }
    fn speaks(&self) -> Option<Dialect> {
        Some(Dialect::OpenAi)
    }
    fn translator(&self) -> &dyn Translator {
        self
    }
}

impl Translator for OpenAi {
    fn label(&self) -> &'static str {
        match self.flavor {
            Flavor::OpenAi => "OpenAI",
            Flavor::Compatible => "OpenAI-compatible",
            Flavor::Azure => "Azure OpenAI",
        }
    }
    fn request(
        &self,
        req: &neutral::Request<'_>,
        unsupported: &mut Unsupported,
    ) -> Result<Rendered, ApiError> {
        Ok(Rendered {
            body: render(req, &self.model, self.flavor, self.label(), unsupported)?,
            expect: Expect::default(),
        })
    }
    fn response(&self, body: &[u8], _expect: Expect) -> Result<neutral::Completion, ApiError> {
        response(body)
    }
    fn error(&self, status: u16, body: &[u8]) -> neutral::Error {
        error(status, body)
    }
    fn stream(&self, _expect: Expect) -> Box<dyn StreamDecoder> {
        Box::new(Decoder::default())
    }
}

/// Sets `stream_options.include_usage: true` in a streaming request body; returns whether it changed
/// (the client had not asked for the usage chunk, so it must be stripped from the answer again). The
/// one place the gateway asks for it (ai-proxy upstream, the rate limit in front of a provider).
pub fn request_stream_usage(body: &mut Map<String, Value>) -> bool {
    let asked = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if asked {
        return false;
    }
    let options = body
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Some(options) = options.as_object_mut() {
        options.insert("include_usage".into(), Value::Bool(true));
    }
    true
}

/// Reads the `usage` of an OpenAI response or chunk: `prompt_tokens` and `completion_tokens`, and
/// of them `prompt_tokens_details.cached_tokens` / `cache_write_tokens` and
/// `completion_tokens_details.reasoning_tokens`. `None` when there is no usage object (e.g. `"usage":
/// null` on ordinary stream chunks) or it has neither count. Embeddings report only `prompt_tokens`.
pub fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let count = |key| u.get(key).and_then(Value::as_u64);
    let detail = |obj: &str, key: &str| {
        u.get(obj)
            .and_then(|d| d.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let prompt = count("prompt_tokens");
    let completion = count("completion_tokens");
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(
        Usage {
            cached_tokens: detail("prompt_tokens_details", "cached_tokens"),
            cache_write_tokens: detail("prompt_tokens_details", "cache_write_tokens"),
            reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens"),
            ..Usage::new(prompt.unwrap_or(0), completion.unwrap_or(0))
        }
        .checked(),
    )
}

/// OpenAI's `usage` object for `u`, the details only when they have something to say.
pub fn usage_json(u: Usage) -> Value {
    let mut v = Map::new();
    v.insert("prompt_tokens".into(), u.prompt_tokens.into());
    v.insert("completion_tokens".into(), u.completion_tokens.into());
    v.insert("total_tokens".into(), u.total().into());
    if u.cached_tokens > 0 || u.cache_write_tokens > 0 {
        let mut d = Map::new();
        d.insert("cached_tokens".into(), u.cached_tokens.into());
        if u.cache_write_tokens > 0 {
            d.insert("cache_write_tokens".into(), u.cache_write_tokens.into());
        }
        v.insert("prompt_tokens_details".into(), Value::Object(d));
    }
    if u.reasoning_tokens > 0 {
        v.insert(
            "completion_tokens_details".into(),
            json!({"reasoning_tokens": u.reasoning_tokens}),
        );
    }
    Value::Object(v)
}

/// An upstream error body for the client: `None` if it already is an OpenAI error object (forward it
/// as is), otherwise an OpenAI error wrapping the upstream's text so clients can always parse errors.
pub fn error_from_upstream(status: u16, body: &[u8]) -> Option<Vec<u8>> {
    if is_error_object(body) {
        return None;
    }
    let e = error(status, body);
    Some(error_json(&e.message, &e.kind, &e.code).into_bytes())
}

/// Whether `body` is an OpenAI error object (`{"error": {...}}`).
pub fn is_error_object(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("error").is_some_and(Value::is_object))
}

/// An error answer of an OpenAI-dialect server: its `error` object's message, type and code, or, for
/// any other body (Ollama's `{"error": "text"}`, a proxy's HTML page, nothing), its text as the message
/// with type `upstream_error` and code `upstream_<status>`.
pub fn error(status: u16, body: &[u8]) -> neutral::Error {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let obj = parsed.as_ref().and_then(Value::as_object);
    if let Some(err) = obj.and_then(|o| o.get("error")).and_then(Value::as_object) {
        let field = |k: &str| {
            err.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let message = field("message").map_or_else(|| status_message(status), str::to_owned);
        let kind = field("type").unwrap_or("upstream_error");
        let code = field("code").map_or_else(|| format!("upstream_{status}"), str::to_owned);
        return neutral::Error::new(message, kind, code);
    }
    let from_json = obj.and_then(|o| match o.get("error") {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => o.get("message").and_then(Value::as_str),
    });
    let text = match from_json {
        Some(s) => s.trim().to_owned(),
        None => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let message = if text.is_empty() {
        status_message(status)
    } else {
        crate::text::truncate_chars(&text, 512).to_owned()
    };
    neutral::Error::new(message, "upstream_error", format!("upstream_{status}"))
}

/// The message for an upstream error without a text of its own.
pub fn status_message(status: u16) -> String {
    let reason = match status {
        400 => "bad request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not found",
        408 => "request timeout",
        413 => "payload too large",
        429 => "rate limited",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "error",
    };
    format!("upstream returned HTTP {status} ({reason})")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn u(p: u64, c: u64) -> Usage {
        Usage::new(p, c)
    }

    #[test]
    fn usage_of_answers_and_chunks() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/openai_chat.json")).unwrap();
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
            (
                json!({"usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                       "prompt_tokens_details": {"cached_tokens": 1920, "cache_write_tokens": 50, "audio_tokens": 0},
                       "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0}}}),
                Some(Usage {
                    cached_tokens: 1920,
                    cache_write_tokens: 50,
                    reasoning_tokens: 256,
                    ..u(2006, 300)
                }),
            ),
            (
                // Parts over their totals are clamped: a cached token is never counted twice.
                json!({"usage": {"prompt_tokens": 10, "completion_tokens": 1,
                       "prompt_tokens_details": {"cached_tokens": 50},
                       "completion_tokens_details": {"reasoning_tokens": 9}}}),
                Some(Usage {
                    cached_tokens: 10,
                    reasoning_tokens: 1,
                    ..u(10, 1)
                }),
            ),
            (
                json!({"object": "list", "usage": {"prompt_tokens": 8, "total_tokens": 8}}),
                Some(u(8, 0)),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(usage(&v), want, "{v}");
        }
    }

    #[test]
    fn usage_json_round_trips() {
        for usage_in in [
            u(3, 4),
            Usage {
                cached_tokens: 2,
                ..u(3, 4)
            },
            Usage {
                cached_tokens: 2,
                cache_write_tokens: 1,
                reasoning_tokens: 3,
                ..u(3, 4)
            },
        ] {
            let v = json!({ "usage": usage_json(usage_in) });
            assert_eq!(usage(&v), Some(usage_in), "{v}");
            assert_eq!(v["usage"]["total_tokens"], 7);
        }
        assert!(usage_json(u(1, 1)).get("prompt_tokens_details").is_none());
    }

    #[test]
    fn upstream_errors() {
        let openai_err = include_bytes!("../../../tests/fixtures/openai_error.json");
        assert_eq!(error_from_upstream(401, openai_err), None);
        let cases: Vec<(u16, Vec<u8>, String)> = vec![
            (
                502,
                b"<html>Bad Gateway</html>\n".to_vec(),
                "<html>Bad Gateway</html>".into(),
            ),
            (
                503,
                b"  upstream connect error  ".to_vec(),
                "upstream connect error".into(),
            ),
            (
                500,
                b"".to_vec(),
                "upstream returned HTTP 500 (internal server error)".into(),
            ),
            (418, b"   ".to_vec(), "upstream returned HTTP 418 (error)".into()),
            (
                404,
                br#"{"error":"model 'x' not found"}"#.to_vec(),
                "model 'x' not found".into(),
            ),
            (400, br#"{"message":"bad thing"}"#.to_vec(), "bad thing".into()),
            (500, br#"{"detail":"x"}"#.to_vec(), r#"{"detail":"x"}"#.into()),
            (500, "x".repeat(600).into_bytes(), "x".repeat(512)),
            (500, "é".repeat(600).into_bytes(), "é".repeat(512)),
        ];
        for (status, body, message) in cases {
            let out = error_from_upstream(status, &body).unwrap();
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(
                v,
                json!({"error": {"message": message, "type": "upstream_error", "code": format!("upstream_{status}")}}),
                "{status} {body:?}"
            );
        }
        let out = error_from_upstream(429, b"slow down").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"error":{"message":"slow down","type":"upstream_error","code":"upstream_429"}}"#
        );
    }

    #[test]
    fn errors_read_into_neutral() {
        let cases: Vec<(u16, &[u8], neutral::Error)> = vec![
            (
                401,
                include_bytes!("../../../tests/fixtures/openai_error.json"),
                neutral::Error::new(
                    "Incorrect API key provided: sk-abc. You can find your API key at https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
            ),
            (
                429,
                br#"{"error":{"message":"slow","type":"rate_limit_error","code":null}}"#,
                neutral::Error::new("slow", "rate_limit_error", "upstream_429"),
            ),
            (
                500,
                br#"{"error":{"type":"server_error"}}"#,
                neutral::Error::new(
                    "upstream returned HTTP 500 (internal server error)",
                    "server_error",
                    "upstream_500",
                ),
            ),
            (
                503,
                b"no healthy upstream",
                neutral::Error::new("no healthy upstream", "upstream_error", "upstream_503"),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(error(status, body), want, "{status}");
        }
    }
}
