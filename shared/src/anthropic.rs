//! Translation between OpenAI Chat Completions (what clients speak) and Anthropic Messages.
//!
//! Only text chat is translated. Features with no faithful mapping (tools, images, `n > 1`) are refused
//! with a 400 naming them rather than silently degraded; OpenAI-only tuning knobs are dropped.

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::openai::{self, ChatRequest, INCOMPLETE_MESSAGE};
use crate::sse::{write_event, SseEvent, SseParser};
use crate::usage::{self, AnthropicStreamUsage, Usage};

fn unsupported(what: &str) -> ApiError {
    ApiError::invalid_request(
        "unsupported_feature",
        format!("{what} is not supported for Anthropic targets"),
    )
}

fn invalid_messages(message: String) -> ApiError {
    ApiError::invalid_request("invalid_messages", message)
}

fn invalid_parameter(name: &str, expected: &str) -> ApiError {
    ApiError::invalid_request("invalid_parameter", format!("`{name}` must be {expected}"))
}

/// Absent, `null`, `[]` and `{}` all mean "not used" (some SDKs always send `tools: []`).
fn is_unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

/// The text pieces of an OpenAI message `content`: a string, or an array of `{"type":"text"}` parts.
fn text_parts(content: Option<&Value>, index: usize) -> Result<Vec<&str>, ApiError> {
    match content {
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    invalid_messages(format!("messages[{index}]: a text part needs a string `text`"))
                }),
                Some(other) => Err(ApiError::invalid_request(
                    "unsupported_content",
                    format!("messages[{index}]: content part type `{other}` is not supported for Anthropic targets"),
                )),
                None => Err(invalid_messages(format!("messages[{index}]: content parts need a `type`"))),
            })
            .collect(),
        _ => Err(invalid_messages(format!(
            "messages[{index}].content must be a string or an array of content parts"
        ))),
    }
}

/// Builds the Anthropic Messages body for a validated OpenAI request.
pub fn request_to_anthropic(
    req: &ChatRequest,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Vec<u8>, ApiError> {
    let body = &req.body;
    for field in ["tools", "functions"] {
        if !is_unset(body.get(field)) {
            return Err(unsupported(&format!("`{field}`")));
        }
    }
    match body.get("n") {
        None | Some(Value::Null) => {}
        Some(n) => match n.as_u64() {
            Some(1) => {}
            Some(n) if n > 1 => return Err(unsupported("`n` greater than 1")),
            _ => return Err(invalid_parameter("n", "a positive integer")),
        },
    }

    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_messages("`messages` must be an array".into()))?;
    let mut system: Vec<&str> = Vec::new();
    let mut out_messages = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_messages(format!("messages[{i}].role must be a string")))?;
        match role {
            "system" | "developer" => {
                system.extend(
                    text_parts(m.get("content"), i)?
                        .into_iter()
                        .filter(|t| !t.is_empty()),
                );
            }
            "user" | "assistant" => {
                for field in ["tool_calls", "function_call"] {
                    if !is_unset(m.get(field)) {
                        return Err(unsupported(&format!("`{field}` in messages")));
                    }
                }
                // Anthropic refuses empty text blocks, so they are left out.
                let blocks: Vec<Value> = text_parts(m.get("content"), i)?
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .map(|t| json!({"type": "text", "text": t}))
                    .collect();
                if blocks.is_empty() {
                    return Err(invalid_messages(format!("messages[{i}] has no text content")));
                }
                out_messages.push(json!({"role": role, "content": blocks}));
            }
            "tool" | "function" => return Err(unsupported(&format!("the `{role}` message role"))),
            other => {
                return Err(invalid_messages(format!(
                    "messages[{i}].role `{other}` is not supported"
                )))
            }
        }
    }
    if out_messages.is_empty() {
        return Err(invalid_messages(
            "at least one user or assistant message is required".into(),
        ));
    }

    let max_tokens = match ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|k| body.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
    {
        Some((name, v)) => v
            .as_u64()
            .filter(|&n| n > 0)
            .ok_or_else(|| invalid_parameter(name, "a positive integer"))?,
        None => default_max_tokens,
    };

    let mut out = Map::new();
    out.insert("model".into(), Value::from(upstream_model));
    out.insert("max_tokens".into(), Value::from(max_tokens));
    out.insert("messages".into(), Value::Array(out_messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::from(system.join("\n\n")));
    }
    for name in ["temperature", "top_p"] {
        match body.get(name) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                out.insert(name.into(), v.clone());
            }
            Some(_) => return Err(invalid_parameter(name, "a number")),
        }
    }
    let stop: Vec<Value> = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![Value::from(s.as_str())],
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => list.clone(),
        Some(_) => return Err(invalid_parameter("stop", "a string or an array of strings")),
    };
    if !stop.is_empty() {
        out.insert("stop_sequences".into(), Value::Array(stop));
    }
    if req.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    Ok(Value::Object(out).to_string().into_bytes())
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
fn finish_reason(stop_reason: Option<&str>) -> Option<&'static str> {
    Some(match stop_reason? {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything newer.
        _ => "stop",
    })
}

fn usage_json(u: Usage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total()})
}

/// Converts a (non-streaming) Anthropic message into an OpenAI `chat.completion`, returning its usage
/// for metering.
pub fn response_to_openai(body: &[u8], created: u64) -> Result<(Vec<u8>, Usage), ApiError> {
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
    let usage = usage::from_anthropic_json(&v).unwrap_or_default();
    let out = json!({
        "id": v.get("id").and_then(Value::as_str).unwrap_or_default(),
        "object": "chat.completion",
        "created": created,
        "model": v.get("model").and_then(Value::as_str).unwrap_or_default(),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish_reason(v.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage_json(usage),
    });
    Ok((out.to_string().into_bytes(), usage))
}

/// Converts an Anthropic error body (`{"type":"error","error":{"type","message"}}`) to the OpenAI shape,
/// keeping Anthropic's error type as both `type` and `code` so clients can still tell them apart.
pub fn error_to_openai(status: u16, body: &[u8]) -> Vec<u8> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let (Some("error"), Some(err)) = (v.get("type").and_then(Value::as_str), v.get("error")) {
            let field = |k| {
                err.get(k)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
            };
            let kind = field("type").unwrap_or("upstream_error");
            let message = field("message").map_or_else(|| openai::status_message(status), str::to_owned);
            return openai::error_json(&message, kind, kind).into_bytes();
        }
    }
    openai::error_from_upstream(status, body).unwrap_or_else(|| body.to_vec())
}

/// Translates an Anthropic SSE response into OpenAI `chat.completion.chunk` SSE as it arrives.
#[derive(Debug)]
pub struct AnthropicStream {
    parser: SseParser,
    usage: AnthropicStreamUsage,
    created: u64,
    include_usage: bool,
    /// `id` and `model` of the message, already JSON-encoded, repeated in every chunk.
    id_json: String,
    model_json: String,
    /// `[DONE]` has been written; later upstream events are ignored.
    done: bool,
}

impl AnthropicStream {
    pub fn new(created: u64, include_usage: bool) -> Self {
        Self {
            parser: SseParser::new(),
            usage: AnthropicStreamUsage::new(),
            created,
            include_usage,
            id_json: "\"\"".into(),
            model_json: "\"\"".into(),
            done: false,
        }
    }

    /// Consumes a body chunk and returns the OpenAI SSE bytes for the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in self.parser.feed(chunk) {
            self.translate(&ev, &mut out);
        }
        out
    }

    /// Ends the stream; without a `message_stop` the client gets an error event and `[DONE]`.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in self.parser.finish() {
            self.translate(&ev, &mut out);
        }
        if !self.done {
            self.fail(
                &mut out,
                INCOMPLETE_MESSAGE,
                "upstream_error",
                "stream_incomplete",
            );
        }
        out
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }

    /// Whether the stream has been terminated (`[DONE]` written).
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn fail(&mut self, out: &mut Vec<u8>, message: &str, kind: &str, code: &str) {
        openai::write_stream_error(out, message, kind, code);
        self.done = true;
    }

    fn write_chunk(&self, out: &mut Vec<u8>, delta: &str, finish: Option<&str>) {
        let chunk = format!(
            r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"choices":[{{"index":0,"delta":{},"finish_reason":{}}}]}}"#,
            self.id_json,
            self.created,
            self.model_json,
            delta,
            finish.map_or(Value::Null, Value::from)
        );
        write_event(out, None, &chunk);
    }

    fn translate(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        const HANDLED: [&str; 5] = [
            "message_start",
            "content_block_delta",
            "message_delta",
            "message_stop",
            "error",
        ];
        if self.done || ev.event.as_deref().is_some_and(|name| !HANDLED.contains(&name)) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            if ev.event.is_some() {
                self.fail(
                    out,
                    "invalid stream event from Anthropic",
                    "upstream_error",
                    "bad_upstream_response",
                );
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
                self.id_json = Value::from(field("id")).to_string();
                self.model_json = Value::from(field("model")).to_string();
                self.write_chunk(out, r#"{"role":"assistant","content":""}"#, None);
            }
            "content_block_delta" => {
                let delta = v.get("delta");
                // Only text is translated; thinking, signature and tool-input deltas have no OpenAI field.
                if delta.and_then(|d| d.get("type")).and_then(Value::as_str) == Some("text_delta") {
                    if let Some(text) = delta.and_then(|d| d.get("text")).and_then(Value::as_str) {
                        self.write_chunk(out, &format!(r#"{{"content":{}}}"#, Value::from(text)), None);
                    }
                }
            }
            "message_delta" => {
                self.usage.observe_json(&v);
                let stop = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                self.write_chunk(out, "{}", finish_reason(stop));
            }
            "message_stop" => {
                if self.include_usage {
                    let chunk = format!(
                        r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"choices":[],"usage":{}}}"#,
                        self.id_json,
                        self.created,
                        self.model_json,
                        usage_json(self.usage().unwrap_or_default())
                    );
                    write_event(out, None, &chunk);
                }
                write_event(out, None, "[DONE]");
                self.done = true;
            }
            "error" => {
                let err = v.get("error");
                let field = |k| err.and_then(|e| e.get(k)).and_then(Value::as_str);
                let kind = field("type").unwrap_or("upstream_error");
                let message = field("message").unwrap_or("Anthropic stream error");
                self.fail(out, message, kind, kind);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    use crate::openai::parse_chat_request;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const MESSAGE: &str = include_str!("../tests/fixtures/anthropic_message.json");
    const STREAM: &str = include_str!("../tests/fixtures/anthropic_stream.sse");
    const STREAM_ERROR: &str = include_str!("../tests/fixtures/anthropic_stream_error.sse");

    fn translate(req: Value) -> Result<Value, ApiError> {
        let req = parse_chat_request(req.to_string().as_bytes()).unwrap();
        request_to_anthropic(&req, "claude-3-5-haiku-20241022", 4096)
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
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
            include_bytes!("../tests/fixtures/anthropic_error.json"),
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
        let fixture = include_bytes!("../tests/fixtures/anthropic_error.json");
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
        let mut s = AnthropicStream::new(1_732_353_001, include_usage);
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
}
