//! Anthropic Messages: the provider `anthropic`, its dialect to and from [`neutral`], its errors, its
//! stream events and its usage.
//!
//! Only text chat is translated (see [`neutral`]). Anthropic requires `max_tokens` (a target's
//! `default_max_tokens` when the client sets none) and refuses empty text blocks, which are left out.

use serde_json::{json, Map, Value};
use std::borrow::Cow;

use super::neutral::{self, Completion, Event, Finish};
use super::{Frame, Provider, StreamDecoder, Translator, Wire};
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
    fn path(&self, _stream: bool) -> Cow<'_, str> {
        Cow::Borrowed("/v1/messages")
    }
    fn headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = Vec::with_capacity(2);
        if let Some(k) = key {
            h.push(("x-api-key", k.to_string()));
        }
        h.push(("anthropic-version", self.version.clone()));
        h
    }
    fn wire(&self) -> Wire<'_> {
        Wire::Translated(self)
    }
}

impl Translator for Anthropic {
    fn label(&self) -> &'static str {
        "Anthropic"
    }
    fn request(&self, req: &neutral::Request<'_>) -> Result<Vec<u8>, ApiError> {
        request(req, &self.model, self.default_max_tokens)
    }
    fn response(&self, body: &[u8]) -> Result<Completion, ApiError> {
        response(body)
    }
    fn error(&self, status: u16, body: &[u8]) -> Option<neutral::Error> {
        error(status, body)
    }
    fn stream(&self) -> Box<dyn StreamDecoder> {
        Box::new(Decoder::default())
    }
}

fn invalid_messages(message: String) -> ApiError {
    ApiError::invalid_request("invalid_messages", message)
}

/// The Messages body for a request.
pub fn request(
    req: &neutral::Request<'_>,
    model: &str,
    default_max_tokens: u64,
) -> Result<Vec<u8>, ApiError> {
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        // Anthropic refuses empty text blocks, so they are left out.
        let blocks: Vec<Value> = m
            .text
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| json!({"type": "text", "text": t}))
            .collect();
        if blocks.is_empty() {
            return Err(invalid_messages(format!(
                "messages[{}] has no text content",
                m.index
            )));
        }
        messages.push(json!({"role": m.role.as_str(), "content": blocks}));
    }
    if messages.is_empty() {
        return Err(invalid_messages(
            "at least one user or assistant message is required".into(),
        ));
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::from(model));
    out.insert(
        "max_tokens".into(),
        Value::from(req.max_tokens.unwrap_or(default_max_tokens)),
    );
    out.insert("messages".into(), Value::Array(messages));
    let system: Vec<&str> = req.system.iter().copied().filter(|t| !t.is_empty()).collect();
    if !system.is_empty() {
        out.insert("system".into(), Value::from(system.join("\n\n")));
    }
    for (name, v) in [("temperature", &req.temperature), ("top_p", &req.top_p)] {
        if let Some(n) = v {
            out.insert(name.into(), Value::Number((*n).clone()));
        }
    }
    if !req.stop.is_empty() {
        out.insert("stop_sequences".into(), Value::from(req.stop.clone()));
    }
    if req.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    if let Some(user) = &req.user {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    Ok(Value::Object(out).to_string().into_bytes())
}

/// The neutral reason for an Anthropic `stop_reason`.
fn finish(stop_reason: Option<&str>) -> Option<Finish> {
    Some(match stop_reason? {
        "max_tokens" => Finish::Length,
        "tool_use" => Finish::ToolCalls,
        "refusal" => Finish::ContentFilter,
        // end_turn, stop_sequence, pause_turn and anything newer.
        _ => Finish::Stop,
    })
}

/// A (non-streamed) Anthropic message.
pub fn response(body: &[u8]) -> Result<Completion, ApiError> {
    let bad = |what: String| {
        ApiError::upstream(
            502,
            "bad_upstream_response",
            format!("invalid response from Anthropic: {what}"),
        )
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if let Some(kind) = v.get("type").and_then(Value::as_str).filter(|&t| t != "message") {
        return Err(bad(format!("unexpected type `{kind}`")));
    }
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing `content` array".into()))?;
    let text: String = content
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let field = |k| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Completion {
        id: field("id"),
        model: field("model"),
        text,
        finish: finish(v.get("stop_reason").and_then(Value::as_str)),
        usage: usage(&v).unwrap_or_default(),
    })
}

/// An Anthropic error body (`{"type":"error","error":{"type","message"}}`), keeping Anthropic's error
/// type as both `type` and `code` so clients can still tell them apart. `None` for any other body.
pub fn error(status: u16, body: &[u8]) -> Option<neutral::Error> {
    let v = serde_json::from_slice::<Value>(body).ok()?;
    let (Some("error"), Some(err)) = (v.get("type").and_then(Value::as_str), v.get("error")) else {
        return None;
    };
    let field = |k| {
        err.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let kind = field("type").unwrap_or("upstream_error");
    let message = field("message").map_or_else(|| super::openai::status_message(status), str::to_owned);
    Some(neutral::Error::new(message, kind, kind))
}

/// Decodes Anthropic stream events (`message_start`, `content_block_delta`, `message_delta`,
/// `message_stop`, `error`; the rest carry nothing to translate).
#[derive(Debug, Default)]
pub struct Decoder {
    usage: StreamUsage,
}

impl StreamDecoder for Decoder {
    fn decode(&mut self, ev: &Frame, emit: &mut dyn FnMut(Event<'_>)) {
        const HANDLED: [&str; 5] = [
            "message_start",
            "content_block_delta",
            "message_delta",
            "message_stop",
            "error",
        ];
        if ev.event.as_deref().is_some_and(|name| !HANDLED.contains(&name)) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            if ev.event.is_some() {
                emit(Event::Error(neutral::Error::new(
                    "invalid stream event from Anthropic",
                    "upstream_error",
                    "bad_upstream_response",
                )));
            }
            return;
        };
        let kind = match ev.event.as_deref() {
            Some(name) => name,
            None => v.get("type").and_then(Value::as_str).unwrap_or_default(),
        };
        match kind {
            "message_start" => {
                self.usage.observe_json(&v);
                let message = v.get("message");
                let field = |k| {
                    message
                        .and_then(|m| m.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                emit(Event::Start {
                    id: field("id"),
                    model: field("model"),
                });
            }
            "content_block_delta" => {
                let delta = v.get("delta");
                // Only text is translated; thinking, signature and tool-input deltas have no neutral form.
                if delta.and_then(|d| d.get("type")).and_then(Value::as_str) == Some("text_delta") {
                    if let Some(text) = delta.and_then(|d| d.get("text")).and_then(Value::as_str) {
                        emit(Event::Text(text));
                    }
                }
            }
            "message_delta" => {
                self.usage.observe_json(&v);
                let stop = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                emit(Event::Finish(finish(stop)));
            }
            "message_stop" => emit(Event::End(self.usage.usage())),
            "error" => {
                let err = v.get("error");
                let field = |k| err.and_then(|e| e.get(k)).and_then(Value::as_str);
                let kind = field("type").unwrap_or("upstream_error");
                let message = field("message").unwrap_or("Anthropic stream error");
                emit(Event::Error(neutral::Error::new(message, kind, kind)));
            }
            _ => {}
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }
}

fn count(obj: &Value, key: &str) -> Option<u64> {
    obj.get(key).and_then(Value::as_u64)
}

/// Reads the `usage` of an Anthropic message. Cache writes and reads are billed input, so they count
/// as prompt tokens alongside `input_tokens`.
pub fn usage(v: &Value) -> Option<Usage> {
    let mut acc = StreamUsage::default();
    acc.merge(v.get("usage")?);
    acc.usage()
}

/// Accumulates usage over an Anthropic stream: `message_start` carries the input counts, and each
/// `message_delta` carries counts that are cumulative, so later values replace earlier ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamUsage {
    input: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    output: Option<u64>,
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

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    use crate::provider::openai::parse_chat_request;
    use crate::provider::{client_error, Exchange, Reply, TranslatedStream};
    use crate::sse::SseParser;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const MESSAGE: &str = include_str!("../../tests/fixtures/anthropic_message.json");
    const STREAM: &str = include_str!("../../tests/fixtures/anthropic_stream.sse");
    const STREAM_ERROR: &str = include_str!("../../tests/fixtures/anthropic_stream_error.sse");

    fn target() -> Anthropic {
        Anthropic::new("claude-3-5-haiku-20241022")
    }

    /// The client's request as this provider gets it, through the one translation path.
    fn translate(req: Value) -> Result<Value, ApiError> {
        let req = parse_chat_request(req.to_string().as_bytes()).unwrap();
        Exchange::prepare(&req, &target()).map(|(bytes, _)| serde_json::from_slice(&bytes).unwrap())
    }

    /// A 2xx JSON answer as the client gets it, and its usage.
    fn response_to_openai(body: &[u8], created: u64) -> Result<(Vec<u8>, Usage), ApiError> {
        let req = parse_chat_request(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).unwrap();
        let (_, ex) = Exchange::prepare(&req, &target()).unwrap();
        let mut reply = Reply::new(&target(), &ex, 200, false, created);
        assert!(reply.needs_whole_body());
        let out = reply.whole(&target(), body)?;
        Ok((out, reply.usage().unwrap()))
    }

    fn error_to_openai(status: u16, body: &[u8]) -> Vec<u8> {
        client_error(&target(), status, body)
    }

    #[test]
    fn request_translation() {
        let cases = [
            (
                "minimal",
                json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}),
                json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 4096,
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]}),
            ),
            (
                "system, developer, parts and parameters",
                json!({
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}], "name": "bob"},
                        {"role": "assistant", "content": "Bonjour"},
                        {"role": "user", "content": "Again"}
                    ],
                    "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": "END",
                    "stream": true, "stream_options": {"include_usage": true}, "user": "user-42",
                    "frequency_penalty": 0.1, "presence_penalty": 0.2, "logprobs": false, "seed": 7,
                    "response_format": {"type": "text"}, "n": 1, "tools": [], "tool_choice": "none"
                }),
                json!({
                    "model": "claude-3-5-haiku-20241022", "max_tokens": 100,
                    "system": "Be brief.\n\nAnswer in French.",
                    "messages": [
                        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "Bonjour"}]},
                        {"role": "user", "content": [{"type": "text", "text": "Again"}]}
                    ],
                    "temperature": 0.5, "top_p": 0.9, "stop_sequences": ["END"], "stream": true,
                    "metadata": {"user_id": "user-42"}
                }),
            ),
            (
                "max_completion_tokens wins, stop array, nulls ignored",
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                       "max_tokens": 5, "max_completion_tokens": 7, "stop": ["a", "b"],
                       "temperature": null, "stream": false, "user": null}),
                json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 7, "stop_sequences": ["a", "b"],
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}),
            ),
            (
                "empty text dropped, empty stop omitted",
                json!({"model": "m", "stop": [], "max_completion_tokens": null, "messages": [
                    {"role": "system", "content": ""},
                    {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "y"}]}]}),
                json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 4096,
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "y"}]}]}),
            ),
        ];
        for (name, req, want) in cases {
            assert_eq!(translate(req).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn request_translation_errors() {
        let user = json!({"role": "user", "content": "x"});
        let cases = [
            (
                json!({"messages": [user, {"role": "tool", "content": "r", "tool_call_id": "1"}]}),
                "unsupported_feature",
                "`tool`",
            ),
            (
                json!({"messages": [user, {"role": "function", "content": "r", "name": "f"}]}),
                "unsupported_feature",
                "`function`",
            ),
            (
                json!({"messages": [user], "tools": [{"type": "function"}]}),
                "unsupported_feature",
                "`tools`",
            ),
            (
                json!({"messages": [user], "functions": [{"name": "f"}]}),
                "unsupported_feature",
                "`functions`",
            ),
            (
                json!({"messages": [user, {"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}]}),
                "unsupported_feature",
                "`tool_calls`",
            ),
            (json!({"messages": [user], "n": 2}), "unsupported_feature", "`n`"),
            (json!({"messages": [user], "n": 0}), "invalid_parameter", "`n`"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "unsupported_content",
                "image_url",
            ),
            (
                json!({"messages": [{"role": "system", "content": [{"type": "input_audio"}]}, user]}),
                "unsupported_content",
                "input_audio",
            ),
            (
                json!({"messages": [{"role": "system", "content": "s"}]}),
                "invalid_messages",
                "at least one",
            ),
            (
                json!({"messages": [{"role": "user", "content": ""}]}),
                "invalid_messages",
                "messages[0]",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                "invalid_messages",
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": 5}]}),
                "invalid_messages",
                "messages[0].content",
            ),
            (
                json!({"messages": [{"content": "x"}]}),
                "invalid_messages",
                "role",
            ),
            (
                json!({"messages": [{"role": "robot", "content": "x"}]}),
                "invalid_messages",
                "robot",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "invalid_messages",
                "type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "invalid_messages",
                "text",
            ),
            (
                json!({"messages": [user], "max_tokens": 0}),
                "invalid_parameter",
                "max_tokens",
            ),
            (
                json!({"messages": [user], "max_completion_tokens": "9"}),
                "invalid_parameter",
                "max_completion_tokens",
            ),
            (
                json!({"messages": [user], "temperature": "hot"}),
                "invalid_parameter",
                "temperature",
            ),
            (
                json!({"messages": [user], "stop": [1]}),
                "invalid_parameter",
                "stop",
            ),
        ];
        for (mut req, code, needle) in cases {
            req["model"] = json!("gpt-4o-mini");
            let e = translate(req.clone()).unwrap_err();
            assert_eq!(
                (e.status, e.kind, e.code),
                (400, "invalid_request_error", code),
                "{req}"
            );
            assert!(e.message.contains(needle), "{req}: {}", e.message);
        }
    }

    #[test]
    fn response_translation() {
        let (bytes, usage) = response_to_openai(MESSAGE.as_bytes(), 1_732_353_000).unwrap();
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 2112,
                completion_tokens: 14
            }
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "object": "chat.completion", "created": 1_732_353_000,
                "model": "claude-3-5-haiku-20241022",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2112, "completion_tokens": 14, "total_tokens": 2126}
            })
        );
        let reasons = [
            (json!("end_turn"), json!("stop")),
            (json!("stop_sequence"), json!("stop")),
            (json!("max_tokens"), json!("length")),
            (json!("tool_use"), json!("tool_calls")),
            (json!("refusal"), json!("content_filter")),
            (json!("something_new"), json!("stop")),
            (Value::Null, Value::Null),
        ];
        for (stop, want) in reasons {
            let mut msg: Value = serde_json::from_str(MESSAGE).unwrap();
            msg["stop_reason"] = stop;
            msg["content"] = json!([{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "a"},
                                     {"type": "tool_use", "id": "t", "name": "f", "input": {}}]);
            let (bytes, _) = response_to_openai(msg.to_string().as_bytes(), 1).unwrap();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["choices"][0]["finish_reason"], want);
            assert_eq!(v["choices"][0]["message"]["content"], "a");
        }
        let (bytes, usage) = response_to_openai(br#"{"content":[]}"#, 1).unwrap();
        assert_eq!(usage, Usage::default());
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 0);
    }

    #[test]
    fn response_translation_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"{\"id\":\"msg_1\",\"content\":[{\"type\":\"te",
            b"[]",
            b"{\"id\":\"msg_1\"}",
            b"{\"type\":\"message\",\"content\":\"text\"}",
            include_bytes!("../../tests/fixtures/anthropic_error.json"),
        ];
        for body in cases {
            let e = response_to_openai(body, 1).unwrap_err();
            assert_eq!(
                (e.status, e.kind, e.code),
                (502, "upstream_error", "bad_upstream_response"),
                "{body:?}"
            );
        }
    }

    #[test]
    fn error_translation() {
        let fixture = include_bytes!("../../tests/fixtures/anthropic_error.json");
        let cases: Vec<(u16, &[u8], Value)> = vec![
            (
                529,
                fixture,
                json!({"error": {"message": "Overloaded", "type": "overloaded_error", "code": "overloaded_error"}}),
            ),
            (
                401,
                br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
                json!({"error": {"message": "invalid x-api-key", "type": "authentication_error", "code": "authentication_error"}}),
            ),
            (
                502,
                b"<html>bad gateway</html>",
                json!({"error": {"message": "<html>bad gateway</html>", "type": "upstream_error", "code": "upstream_502"}}),
            ),
            (
                500,
                br#"{"type":"error","error":{"type":"api_error"}}"#,
                json!({"error": {"message": "upstream returned HTTP 500 (internal server error)", "type": "api_error", "code": "api_error"}}),
            ),
            (
                500,
                br#"{"type":"error","error":{"message":"m"}}"#,
                json!({"error": {"message": "m", "type": "upstream_error", "code": "upstream_error"}}),
            ),
            (
                503,
                b"",
                json!({"error": {"message": "upstream returned HTTP 503 (service unavailable)", "type": "upstream_error", "code": "upstream_503"}}),
            ),
            (
                400,
                br#"{"error":{"message":"already openai","type":"invalid_request_error","code":null}}"#,
                json!({"error": {"message": "already openai", "type": "invalid_request_error", "code": null}}),
            ),
        ];
        for (status, body, want) in cases {
            let v: Value = serde_json::from_slice(&error_to_openai(status, body)).unwrap();
            assert_eq!(v, want, "{status}");
        }
        assert_eq!(
            String::from_utf8(error_to_openai(529, fixture)).unwrap(),
            r#"{"error":{"message":"Overloaded","type":"overloaded_error","code":"overloaded_error"}}"#
        );
    }

    fn run(include_usage: bool, chunks: &[&[u8]]) -> (String, Option<Usage>) {
        let mut s = TranslatedStream::new(&target(), 1_732_353_001, include_usage).unwrap();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed(c));
        }
        out.extend(s.finish());
        assert!(s.is_done());
        (String::from_utf8(out).unwrap(), s.usage())
    }

    const HEAD: &str = r#"{"id":"msg_01Fz8PqgYb2sYdGNkXzJvQ7M","object":"chat.completion.chunk","created":1732353001,"model":"claude-3-5-haiku-20241022","choices":"#;

    fn chunk(delta: &str, finish: &str) -> String {
        format!("data: {HEAD}[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
    }

    #[test]
    fn stream_translation() {
        let body = [
            chunk(r#"{"role":"assistant","content":""}"#, "null"),
            chunk(r#"{"content":"Hello"}"#, "null"),
            chunk(r#"{"content":"! Ça va? ✓ 🦀\n\"quoted\""}"#, "null"),
            chunk("{}", r#""stop""#),
        ]
        .concat();
        let usage_chunk = format!(
            "data: {HEAD}[],\"usage\":{{\"completion_tokens\":15,\"prompt_tokens\":35,\"total_tokens\":50}}}}\n\n"
        );
        let want_usage = Some(Usage {
            prompt_tokens: 35,
            completion_tokens: 15,
        });

        let (out, usage) = run(false, &[STREAM.as_bytes()]);
        assert_eq!(out, format!("{body}data: [DONE]\n\n"));
        assert_eq!(usage, want_usage);

        let (out, usage) = run(true, &[STREAM.as_bytes()]);
        assert_eq!(out, format!("{body}{usage_chunk}data: [DONE]\n\n"));
        assert_eq!(usage, want_usage);

        // Every output event parses as an OpenAI chunk.
        let mut p = SseParser::new();
        for ev in p.feed(out.as_bytes()) {
            if ev.data != "[DONE]" {
                let v: Value = serde_json::from_str(&ev.data).unwrap();
                assert_eq!(v["object"], "chat.completion.chunk");
            }
        }
    }

    #[test]
    fn stream_errors() {
        let incomplete = "data: {\"error\":{\"message\":\"upstream stream ended before completion\",\"type\":\"upstream_error\",\"code\":\"stream_incomplete\"}}\n\ndata: [DONE]\n\n";
        let start = chunk(r#"{"role":"assistant","content":""}"#, "null");

        // Upstream `error` event.
        let partial =
            chunk(r#"{"content":"Partial"}"#, "null").replace("msg_01Fz8PqgYb2sYdGNkXzJvQ7M", "msg_01Q9");
        let (out, usage) = run(true, &[STREAM_ERROR.as_bytes()]);
        assert_eq!(
            out,
            format!(
                "{}{partial}data: {{\"error\":{{\"message\":\"Overloaded\",\"type\":\"overloaded_error\",\"code\":\"overloaded_error\"}}}}\n\ndata: [DONE]\n\n",
                start.replace("msg_01Fz8PqgYb2sYdGNkXzJvQ7M", "msg_01Q9")
            )
        );
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 8,
                completion_tokens: 1
            })
        );

        // Cut after message_start, and cut in the middle of an event.
        let after_start = STREAM.find("event: content_block_start").unwrap();
        let (out, _) = run(true, &[&STREAM.as_bytes()[..after_start]]);
        assert_eq!(out, format!("{start}{incomplete}"));
        let (out, _) = run(false, &[&STREAM.as_bytes()[..after_start + 10]]);
        assert_eq!(out, format!("{start}{incomplete}"));

        // Nothing at all.
        let (out, usage) = run(true, &[b""]);
        assert_eq!(out, incomplete);
        assert_eq!(usage, None);

        // A known event with broken JSON ends the stream with an error.
        let (out, _) = run(false, &[b"event: content_block_delta\ndata: {\"delta\":\n\n"]);
        assert!(
            out.contains("bad_upstream_response") && out.ends_with("data: [DONE]\n\n"),
            "{out}"
        );

        // Events after message_stop are ignored; unknown and unnamed-unknown events are skipped.
        let extra = format!("{STREAM}event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"delta\":{{\"type\":\"text_delta\",\"text\":\"late\"}}}}\n\n");
        let (out, _) = run(false, &[extra.as_bytes()]);
        assert!(!out.contains("late"));
        let odd = "event: mystery\ndata: not json\n\ndata: {\"type\":\"ping\"}\n\ndata: nope\n\n\
                   data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n\
                   data: {\"type\":\"message_stop\"}\n\n";
        let (out, _) = run(false, &[odd.as_bytes()]);
        assert_eq!(out, "data: [DONE]\n\n");
    }

    #[test]
    fn stream_every_split_matches_whole() {
        let cut = &STREAM[..STREAM.len() - 40];
        let crlf = STREAM.replace('\n', "\r\n");
        for input in [STREAM, STREAM_ERROR, cut, crlf.as_str()] {
            let input = input.as_bytes();
            for include_usage in [false, true] {
                let whole = run(include_usage, &[input]);
                for i in 0..=input.len() {
                    let got = run(include_usage, &[&input[..i], &input[i..]]);
                    assert_eq!(got, whole, "split at {i}");
                }
                let bytes: Vec<&[u8]> = input.chunks(1).collect();
                assert_eq!(run(include_usage, &bytes), whole, "byte by byte");
            }
        }
    }

    /// The shape the e2e mock provider produces, one delta per word.
    #[test]
    fn mock_style_stream() {
        let words = ["mock ", "reply ", "to: ", "hi"];
        let mut input = String::from(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-haiku-20241022\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n\
             event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
             event: ping\ndata: {\"type\":\"ping\"}\n\n",
        );
        for w in words {
            input.push_str(&format!(
                "event: content_block_delta\ndata: {}\n\n",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})
            ));
        }
        input.push_str(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
             event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n\
             event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let (out, usage) = run(true, &[input.as_bytes()]);
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 4
            })
        );
        let mut p = SseParser::new();
        let events = p.feed(out.as_bytes());
        let mut text = String::new();
        let mut finish = Vec::new();
        for ev in &events[..events.len() - 1] {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            assert_eq!(v["id"], "msg_mock_1");
            if let Some(choice) = v["choices"].get(0) {
                text.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
                finish.push(choice["finish_reason"].clone());
            } else {
                assert_eq!(
                    v["usage"],
                    json!({"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5})
                );
            }
        }
        assert_eq!(text, "mock reply to: hi");
        assert_eq!(finish.last(), Some(&json!("length")));
        assert_eq!(events.last().unwrap().data, "[DONE]");
    }

    fn u(p: u64, c: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
        }
    }

    #[test]
    fn anthropic_usage() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/anthropic_message.json")).unwrap();
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
            assert_eq!(usage(&v), want, "{v}");
        }
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
            ("fixture", include_str!("../../tests/fixtures/anthropic_stream.sse"), Some(u(35, 15))),
            ("error fixture", include_str!("../../tests/fixtures/anthropic_stream_error.sse"), Some(u(8, 1))),
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
}
