//! OpenAI Chat Completions: the dialect clients speak, and the provider `openai` (also
//! `openai_compatible`, for servers with the same API).
//!
//! As the client's dialect: the request ([`ChatRequest`], kept as a JSON map so fields the gateway does
//! not know pass through), its decoding into [`neutral`] for providers that speak another dialect
//! ([`to_neutral`]), and the writers of answers from [`neutral`] ([`completion_json`], [`StreamWriter`],
//! [`error_from_upstream`]). As a provider's dialect: passing through, the usage chunk asked for
//! ([`request_stream_usage`]) and observed or stripped again ([`OpenAiStream`]), usage ([`usage`]).

use serde_json::{json, Map, Value};
use std::borrow::Cow;

use super::neutral::{self, Completion, Event, Finish, Message, Role};
use super::{Provider, Wire};
use crate::config::ConfigError;
use crate::error::{error_json, ApiError};
use crate::sse::{write_event, SseEvent, SseParser};
use crate::usage::Usage;

/// The provider's own fields: none beyond the target's.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

impl Config {
    /// `name` is the config's provider value (`openai` or `openai_compatible`).
    pub fn compile(
        self,
        name: &'static str,
        model: Option<String>,
        at: &dyn Fn(&str) -> String,
    ) -> Result<OpenAi, ConfigError> {
        Ok(OpenAi {
            name,
            model: super::required_model(model, at)?,
        })
    }
}

/// OpenAI, or a server with its API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAi {
    name: &'static str,
    model: String,
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        self.name
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn path(&self, _stream: bool) -> Cow<'_, str> {
        Cow::Borrowed("/v1/chat/completions")
    }
    fn headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        key.map(|k| ("authorization", format!("Bearer {k}")))
            .into_iter()
            .collect()
    }
    fn wire(&self) -> Wire<'_> {
        Wire::OpenAi
    }
}

/// A validated chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The whole request body, for forwarding or translation.
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage: true`).
    pub include_usage: bool,
}

impl ChatRequest {
    /// Serializes the (possibly edited) body.
    pub fn to_bytes(&self) -> Vec<u8> {
        Value::Object(self.body.clone()).to_string().into_bytes()
    }

    /// Replaces `model` in the body, for an upstream that serves it under another name.
    pub fn set_model(&mut self, model: &str) {
        self.body.insert("model".into(), Value::from(model));
    }

    /// Asks the upstream for the final usage chunk so a streamed response can be metered; returns whether
    /// the body changed (i.e. the client had not asked for it and the chunk must be stripped).
    pub fn request_stream_usage(&mut self) -> bool {
        self.stream && request_stream_usage(&mut self.body)
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

/// Validates a client request body. Only the fields the gateway relies on are checked; the upstream
/// judges the rest.
pub fn parse_chat_request(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid_request("invalid_json", format!("request body is not valid JSON: {e}"))
    })?;
    chat_request(value)
}

/// Validates a parsed client request body (see [`parse_chat_request`]).
pub fn chat_request(value: Value) -> Result<ChatRequest, ApiError> {
    let Value::Object(body) = value else {
        return Err(ApiError::invalid_request(
            "invalid_request",
            "request body must be a JSON object",
        ));
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(ApiError::invalid_request(
                "missing_model",
                "`model` must be a non-empty string",
            ))
        }
    };
    match body.get("messages") {
        Some(Value::Array(list)) if !list.is_empty() => {}
        _ => {
            return Err(ApiError::invalid_request(
                "invalid_messages",
                "`messages` must be a non-empty array",
            ))
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_request(
                "invalid_stream",
                "`stream` must be a boolean",
            ))
        }
    };
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ChatRequest {
        body,
        model,
        stream,
        include_usage,
    })
}

fn unsupported(what: &str, label: &str) -> ApiError {
    ApiError::invalid_request(
        "unsupported_feature",
        format!("{what} is not supported for {label} targets"),
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

/// The text pieces of a message `content`: a string, or an array of `{"type":"text"}` parts.
fn text_parts<'a>(content: Option<&'a Value>, index: usize, label: &str) -> Result<Vec<&'a str>, ApiError> {
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
                    format!(
                        "messages[{index}]: content part type `{other}` is not supported for {label} targets"
                    ),
                )),
                None => Err(invalid_messages(format!(
                    "messages[{index}]: content parts need a `type`"
                ))),
            })
            .collect(),
        _ => Err(invalid_messages(format!(
            "messages[{index}].content must be a string or an array of content parts"
        ))),
    }
}

/// The client's request as [`neutral`], for a provider that speaks another dialect (`label` names it
/// in errors). What the neutral shape cannot carry (tools, images, `n > 1`, tool messages) is refused
/// with a 400 naming it rather than silently dropped; OpenAI-only tuning knobs are dropped.
pub fn to_neutral<'a>(req: &'a ChatRequest, label: &str) -> Result<neutral::Request<'a>, ApiError> {
    let body = &req.body;
    for field in ["tools", "functions"] {
        if !is_unset(body.get(field)) {
            return Err(unsupported(&format!("`{field}`"), label));
        }
    }
    match body.get("n") {
        None | Some(Value::Null) => {}
        Some(n) => match n.as_u64() {
            Some(1) => {}
            Some(n) if n > 1 => return Err(unsupported("`n` greater than 1", label)),
            _ => return Err(invalid_parameter("n", "a positive integer")),
        },
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_messages("`messages` must be an array".into()))?;
    let mut system = Vec::new();
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_messages(format!("messages[{i}].role must be a string")))?;
        let role = match role {
            "system" | "developer" => {
                system.extend(text_parts(m.get("content"), i, label)?);
                continue;
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" | "function" => return Err(unsupported(&format!("the `{role}` message role"), label)),
            other => {
                return Err(invalid_messages(format!(
                    "messages[{i}].role `{other}` is not supported"
                )))
            }
        };
        for field in ["tool_calls", "function_call"] {
            if !is_unset(m.get(field)) {
                return Err(unsupported(&format!("`{field}` in messages"), label));
            }
        }
        out.push(Message {
            index: i,
            role,
            text: text_parts(m.get("content"), i, label)?,
        });
    }
    let max_tokens = match ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|k| body.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
    {
        Some((name, v)) => Some(
            v.as_u64()
                .filter(|&n| n > 0)
                .ok_or_else(|| invalid_parameter(name, "a positive integer"))?,
        ),
        None => None,
    };
    let number = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n)),
        Some(_) => Err(invalid_parameter(name, "a number")),
    };
    let temperature = number("temperature")?;
    let top_p = number("top_p")?;
    let stop = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid_parameter("stop", "a string or an array of strings"))?,
        Some(_) => return Err(invalid_parameter("stop", "a string or an array of strings")),
    };
    Ok(neutral::Request {
        system,
        messages: out,
        max_tokens,
        temperature,
        top_p,
        stop,
        stream: req.stream,
        user: body.get("user").and_then(Value::as_str),
    })
}

/// OpenAI's `finish_reason`.
fn finish_reason(finish: Option<Finish>) -> Value {
    match finish {
        None => Value::Null,
        Some(Finish::Stop) => "stop".into(),
        Some(Finish::Length) => "length".into(),
        Some(Finish::ToolCalls) => "tool_calls".into(),
        Some(Finish::ContentFilter) => "content_filter".into(),
    }
}

fn usage_json(u: Usage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total()})
}

/// A `chat.completion` for a [`Completion`].
pub fn completion_json(c: &Completion, created: u64) -> Vec<u8> {
    json!({
        "id": c.id,
        "object": "chat.completion",
        "created": created,
        "model": c.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": null,
            "finish_reason": finish_reason(c.finish),
        }],
        "usage": usage_json(c.usage),
    })
    .to_string()
    .into_bytes()
}

/// The error event and terminator that end a stream which cannot go on.
pub fn write_stream_error(out: &mut Vec<u8>, message: &str, kind: &str, code: &str) {
    write_event(out, None, &error_json(message, kind, code));
    write_event(out, None, "[DONE]");
}

pub(crate) const INCOMPLETE_MESSAGE: &str = "upstream stream ended before completion";

/// Writes [`neutral::Event`]s as OpenAI `chat.completion.chunk` SSE.
#[derive(Debug)]
pub struct StreamWriter {
    created: u64,
    include_usage: bool,
    /// `id` and `model` of the answer, already JSON-encoded, repeated in every chunk.
    id_json: String,
    model_json: String,
}

impl StreamWriter {
    /// `include_usage`: the client asked for the usage chunk before `[DONE]`.
    pub fn new(created: u64, include_usage: bool) -> Self {
        StreamWriter {
            created,
            include_usage,
            id_json: "\"\"".into(),
            model_json: "\"\"".into(),
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: &str, finish: Option<Finish>) {
        let chunk = format!(
            r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"choices":[{{"index":0,"delta":{},"finish_reason":{}}}]}}"#,
            self.id_json,
            self.created,
            self.model_json,
            delta,
            finish_reason(finish)
        );
        write_event(out, None, &chunk);
    }

    /// Writes one event.
    pub fn write(&mut self, event: &Event<'_>, out: &mut Vec<u8>) {
        match event {
            Event::Start { id, model } => {
                self.id_json = Value::from(*id).to_string();
                self.model_json = Value::from(*model).to_string();
                self.chunk(out, r#"{"role":"assistant","content":""}"#, None);
            }
            Event::Text(text) => self.chunk(out, &format!(r#"{{"content":{}}}"#, Value::from(*text)), None),
            Event::Finish(finish) => self.chunk(out, "{}", *finish),
            Event::End(usage) => {
                if self.include_usage {
                    let chunk = format!(
                        r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"choices":[],"usage":{}}}"#,
                        self.id_json,
                        self.created,
                        self.model_json,
                        usage_json(usage.unwrap_or_default())
                    );
                    write_event(out, None, &chunk);
                }
                write_event(out, None, "[DONE]");
            }
            Event::Error(e) => write_stream_error(out, &e.message, &e.kind, &e.code),
        }
    }

    /// Ends a stream the provider left unfinished.
    pub fn incomplete(&mut self, out: &mut Vec<u8>) {
        write_stream_error(out, INCOMPLETE_MESSAGE, "upstream_error", "stream_incomplete");
    }
}

/// Reads `usage.prompt_tokens` / `usage.completion_tokens` of an OpenAI response or chunk. `None` when
/// there is no usage object (e.g. `"usage": null` on ordinary stream chunks) or it has neither count.
pub fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let count = |key| u.get(key).and_then(Value::as_u64);
    let prompt = count("prompt_tokens");
    let completion = count("completion_tokens");
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(Usage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: completion.unwrap_or(0),
    })
}

/// Whether an event's data may carry a usage object. Plain substring checks keep the common chunk
/// (`"usage":null` or no usage at all) from being JSON-parsed.
fn may_carry_usage(data: &str) -> bool {
    data.match_indices("\"usage\"").any(|(at, key)| {
        let rest = data.get(at + key.len()..).unwrap_or_default().trim_start();
        let rest = rest.strip_prefix(':').unwrap_or(rest).trim_start();
        !rest.starts_with("null")
    })
}

/// Observes an OpenAI SSE response for usage and completion, and optionally removes the usage chunk the
/// gateway asked for on the client's behalf.
#[derive(Debug)]
pub struct OpenAiStream {
    parser: SseParser,
    strip: bool,
    usage: Option<Usage>,
    done: bool,
    errored: bool,
}

impl OpenAiStream {
    pub fn new(strip_usage_chunk: bool) -> Self {
        Self {
            parser: SseParser::new(),
            strip: strip_usage_chunk,
            usage: None,
            done: false,
            errored: false,
        }
    }

    /// Consumes a body chunk. `None` means forward the chunk unchanged (always so without stripping);
    /// otherwise the bytes of the events completed so far, rewritten, with any partial event held back.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        let events = self.parser.feed(chunk);
        self.handle(events)
    }

    /// Ends the stream: returns what is still to be sent, and if `data: [DONE]` never came, an error event
    /// and `[DONE]` so the client sees a well-formed end instead of a silent truncation.
    pub fn finish(&mut self) -> Vec<u8> {
        let had_pending = self.parser.pending_len() > 0;
        let events = self.parser.finish();
        let mut out = match self.handle(events) {
            Some(bytes) => bytes,
            // Passed-through bytes may end inside an event; terminate it so ours stands alone.
            None if had_pending => b"\n\n".to_vec(),
            None => Vec::new(),
        };
        if !self.done {
            self.done = true;
            if self.errored {
                write_event(&mut out, None, "[DONE]");
            } else {
                write_stream_error(
                    &mut out,
                    INCOMPLETE_MESSAGE,
                    "upstream_error",
                    "stream_incomplete",
                );
            }
        }
        out
    }

    /// Usage from the chunk that carried it, if any came.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether `data: [DONE]` has been seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn handle(&mut self, events: Vec<SseEvent>) -> Option<Vec<u8>> {
        let mut out = self.strip.then(Vec::new);
        for ev in events {
            let data = ev.data.as_str();
            if data.trim() == "[DONE]" {
                self.done = true;
            } else if data.contains("\"error\"") {
                if let Ok(v) = serde_json::from_str::<Value>(data) {
                    self.errored |= v.get("error").is_some_and(|e| !e.is_null());
                }
            }
            let mut rewritten = None;
            if may_carry_usage(data) {
                if let Ok(mut chunk) = serde_json::from_str::<Value>(data) {
                    if let Some(u) = usage(&chunk) {
                        self.usage = Some(u);
                        if chunk
                            .get("choices")
                            .and_then(Value::as_array)
                            .is_some_and(Vec::is_empty)
                        {
                            continue;
                        }
                        if let Some(obj) = chunk.as_object_mut() {
                            obj.remove("usage");
                        }
                        rewritten = Some(chunk.to_string());
                    }
                }
            }
            if let Some(out) = out.as_mut() {
                write_event(out, ev.event.as_deref(), rewritten.as_deref().unwrap_or(data));
            }
        }
        out
    }
}

/// An upstream error body for the client: `None` if it already is an OpenAI error object (forward it
/// as is), otherwise an OpenAI error wrapping the upstream's text so clients can always parse errors.
pub fn error_from_upstream(status: u16, body: &[u8]) -> Option<Vec<u8>> {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let from_json = match parsed.as_ref().and_then(Value::as_object) {
        Some(obj) => match obj.get("error") {
            Some(Value::Object(_)) => return None,
            // Ollama, vLLM and friends answer `{"error": "text"}` or `{"message": "text"}`.
            Some(Value::String(s)) => Some(s.as_str()),
            _ => obj.get("message").and_then(Value::as_str),
        },
        None => None,
    };
    let text = match from_json {
        Some(s) => s.trim().to_owned(),
        None => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let message = if text.is_empty() {
        status_message(status)
    } else {
        crate::text::truncate_chars(&text, 512).to_owned()
    };
    Some(error_json(&message, "upstream_error", &format!("upstream_{status}")).into_bytes())
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
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    use crate::sse::SseEvent;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const STREAM: &str = include_str!("../../tests/fixtures/openai_stream.sse");
    const STREAM_USAGE: &str = include_str!("../../tests/fixtures/openai_stream_usage.sse");

    #[test]
    fn parse_request_ok() {
        let r = parse_chat_request(
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,
                 "stream_options":{"include_usage":true},"x_custom":1}"#,
        )
        .unwrap();
        assert_eq!(r.model, "gpt-4o-mini");
        assert!(r.stream && r.include_usage);
        assert_eq!(r.body["x_custom"], json!(1));

        let r =
            parse_chat_request(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":null}"#)
                .unwrap();
        assert!(!r.stream && !r.include_usage);
    }

    #[test]
    fn parse_request_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "invalid_json"),
            (b"{\"model\":", "invalid_json"),
            (b"not json", "invalid_json"),
            (b"[1]", "invalid_request"),
            (b"\"s\"", "invalid_request"),
            (
                br#"{"messages":[{"role":"user","content":"x"}]}"#,
                "missing_model",
            ),
            (
                br#"{"model":3,"messages":[{"role":"user","content":"x"}]}"#,
                "missing_model",
            ),
            (
                br#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
                "missing_model",
            ),
            (br#"{"model":"m"}"#, "invalid_messages"),
            (br#"{"model":"m","messages":{}}"#, "invalid_messages"),
            (br#"{"model":"m","messages":[]}"#, "invalid_messages"),
            (
                br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                "invalid_stream",
            ),
        ];
        for (body, code) in cases {
            let e = parse_chat_request(body).unwrap_err();
            assert_eq!(
                (e.status, e.kind, e.code),
                (400, "invalid_request_error", *code),
                "{body:?}"
            );
        }
        let e = parse_chat_request(b"{\n  \"model\": x}").unwrap_err();
        assert!(e.message.contains("line 2 column 12"), "{}", e.message);
    }

    #[test]
    fn request_helpers() {
        let mut r =
            parse_chat_request(br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true}"#)
                .unwrap();
        r.set_model("b");
        assert!(r.request_stream_usage());
        let v: Value = serde_json::from_slice(&r.to_bytes()).unwrap();
        assert_eq!(v["model"], "b");
        assert_eq!(v["stream_options"], json!({"include_usage": true}));

        let mut r = parse_chat_request(
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(!r.request_stream_usage());
        let mut r =
            parse_chat_request(br#"{"model":"a","messages":[{"role":"user","content":"x"}]}"#).unwrap();
        assert!(!r.request_stream_usage());
        assert!(!r.body.contains_key("stream_options"));
    }

    fn events(bytes: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut v = p.feed(bytes);
        v.extend(p.finish());
        v
    }

    /// Feeds `chunks` and returns what the client receives plus the usage seen.
    fn run(strip: bool, chunks: &[&[u8]]) -> (Vec<u8>, Option<Usage>) {
        let mut s = OpenAiStream::new(strip);
        let mut out = Vec::new();
        for c in chunks {
            match s.feed(c) {
                Some(bytes) => out.extend(bytes),
                None => out.extend_from_slice(c),
            }
        }
        out.extend(s.finish());
        (out, s.usage())
    }

    #[test]
    fn pass_through_when_not_stripping() {
        let mut s = OpenAiStream::new(false);
        assert_eq!(s.feed(STREAM_USAGE.as_bytes()), None);
        assert_eq!(s.finish(), b"");
        assert_eq!(
            s.usage(),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 7
            })
        );
        assert!(s.is_done());

        let (out, usage) = run(false, &[STREAM.as_bytes()]);
        assert_eq!(out, STREAM.as_bytes());
        assert_eq!(usage, None);
    }

    #[test]
    fn strip_removes_usage_chunk() {
        let (out, usage) = run(true, &[STREAM_USAGE.as_bytes()]);
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 7
            })
        );
        let want: Vec<SseEvent> = events(STREAM_USAGE.as_bytes())
            .into_iter()
            .filter(|e| !e.data.contains("prompt_tokens"))
            .collect();
        let got = events(&out);
        assert_eq!(got, want);
        assert_eq!(got.len(), 5);
        assert_eq!(got.last().unwrap().data, "[DONE]");
        // Unchanged events keep their exact bytes.
        let kept = STREAM_USAGE
            .split("\n\n")
            .filter(|e| !e.contains("prompt_tokens"))
            .collect::<Vec<_>>();
        assert_eq!(String::from_utf8(out).unwrap(), kept.join("\n\n"));
    }

    #[test]
    fn strip_removes_usage_key_from_content_chunk() {
        let input = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],",
            "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n",
            "data: [DONE]\n\n"
        );
        let (out, usage) = run(true, &[input.as_bytes()]);
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 4,
                completion_tokens: 2
            })
        );
        let got = events(&out);
        assert_eq!(got.len(), 2);
        let v: Value = serde_json::from_str(&got[0].data).unwrap();
        assert_eq!(
            v,
            json!({"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})
        );

        // Without strip the same stream is only observed.
        let (out, usage) = run(false, &[input.as_bytes()]);
        assert_eq!(out, input.as_bytes());
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 4,
                completion_tokens: 2
            })
        );
    }

    #[test]
    fn usage_detection_is_cheap_and_correct() {
        let cases = [
            (r#"{"usage":null}"#, false),
            (r#"{"usage" : null}"#, false),
            (r#"{"choices":[]}"#, false),
            (r#"{"content":"the \"usage\" word"}"#, false),
            (r#"{"usage":{"prompt_tokens":1}}"#, true),
            (r#"{"usage": {"prompt_tokens":1}}"#, true),
            (r#"{"a":{"usage":null},"usage":{}}"#, true),
        ];
        for (data, want) in cases {
            assert_eq!(may_carry_usage(data), want, "{data}");
        }
    }

    #[test]
    fn incomplete_stream_gets_error_and_done() {
        let cut = STREAM.find("data: [DONE]").unwrap();
        let want_tail = concat!(
            "data: {\"error\":{\"message\":\"upstream stream ended before completion\",",
            "\"type\":\"upstream_error\",\"code\":\"stream_incomplete\"}}\n\ndata: [DONE]\n\n"
        );
        for strip in [false, true] {
            let (out, usage) = run(strip, &[&STREAM.as_bytes()[..cut]]);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text, format!("{}{want_tail}", &STREAM[..cut]), "strip={strip}");
            assert_eq!(usage, None);
        }

        // Cut inside an event: stripping holds the partial event back, passing through must close it.
        let mid = STREAM.find("\"Hello\"").unwrap();
        let (out, _) = run(true, &[&STREAM.as_bytes()[..mid]]);
        let got = events(&out);
        assert_eq!(got.len(), 3);
        assert!(got[1].data.contains("stream_incomplete"));
        let (out, _) = run(false, &[&STREAM.as_bytes()[..mid]]);
        let got = events(&out);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[2].data.contains("stream_incomplete"));
        assert_eq!(got[3].data, "[DONE]");

        // An upstream error event already told the client; only [DONE] is added.
        let errored = "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"code\":null}}\n\n";
        let (out, _) = run(false, &[errored.as_bytes()]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{errored}data: [DONE]\n\n")
        );

        // Complete stream whose last event lacks the blank line: nothing but the terminator is added.
        let (out, _) = run(false, &[b"data: [DONE]\n"]);
        assert_eq!(out, b"data: [DONE]\n\n\n");
        let (out, _) = run(true, &[b"data: [DONE]\n"]);
        assert_eq!(out, b"data: [DONE]\n\n");
    }

    #[test]
    fn every_split_matches_whole() {
        let truncated = &STREAM_USAGE[..STREAM_USAGE.len() - 30];
        let crlf = STREAM_USAGE.replace('\n', "\r\n");
        for input in [STREAM, STREAM_USAGE, truncated, crlf.as_str()] {
            let input = input.as_bytes();
            for strip in [false, true] {
                let whole = run(strip, &[input]);
                for i in 0..=input.len() {
                    assert_eq!(
                        run(strip, &[&input[..i], &input[i..]]),
                        whole,
                        "strip={strip} split at {i}"
                    );
                }
                let bytes: Vec<&[u8]> = input.chunks(1).collect();
                assert_eq!(run(strip, &bytes), whole, "strip={strip} byte by byte");
            }
        }
    }

    fn u(p: u64, c: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
        }
    }

    #[test]
    fn usage_of_answers_and_chunks() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/openai_chat.json")).unwrap();
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
            assert_eq!(usage(&v), want, "{v}");
        }
    }

    #[test]
    fn decodes_to_neutral() {
        let req = parse_chat_request(
            br#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"developer","content":[{"type":"text","text":""}]},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":""}]},{"role":"assistant","content":"b"}],
                "max_tokens":5,"max_completion_tokens":7,"temperature":0.5,"top_p":1,"stop":"END","user":"u","stream":true,
                "seed":3,"tools":[],"n":1}"#,
        )
        .unwrap();
        let n = to_neutral(&req, "X").unwrap();
        assert_eq!(n.system, vec!["S", ""]);
        assert_eq!(
            n.messages,
            vec![
                Message {
                    index: 2,
                    role: Role::User,
                    text: vec!["a", ""]
                },
                Message {
                    index: 3,
                    role: Role::Assistant,
                    text: vec!["b"]
                },
            ]
        );
        assert_eq!(n.max_tokens, Some(7), "max_completion_tokens wins");
        assert_eq!(n.temperature, serde_json::Number::from_f64(0.5).as_ref());
        assert_eq!(n.top_p, Some(&1.into()));
        assert_eq!(n.stop, vec!["END"]);
        assert_eq!(n.user, Some("u"));
        assert!(n.stream);
        // The label names the target in refusals.
        let req =
            parse_chat_request(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{}]}"#)
                .unwrap();
        let e = to_neutral(&req, "Gemini").unwrap_err();
        assert_eq!(e.code, "unsupported_feature");
        assert_eq!(e.message, "`tools` is not supported for Gemini targets");
    }

    #[test]
    fn writes_neutral_answers() {
        let c = Completion {
            id: "i".into(),
            model: "m".into(),
            text: "t".into(),
            finish: Some(Finish::Length),
            usage: u(1, 2),
        };
        let v: Value = serde_json::from_slice(&completion_json(&c, 9)).unwrap();
        assert_eq!(
            v,
            json!({"id": "i", "object": "chat.completion", "created": 9, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "t"}, "logprobs": null,
                                "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
        );
        let mut w = StreamWriter::new(5, true);
        let mut out = Vec::new();
        for ev in [
            Event::Start { id: "i", model: "m" },
            Event::Text("hé"),
            Event::Finish(Some(Finish::Stop)),
            Event::End(Some(u(3, 4))),
        ] {
            w.write(&ev, &mut out);
        }
        let head = r#"{"id":"i","object":"chat.completion.chunk","created":5,"model":"m","choices":"#;
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "data: {head}[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n\
                 data: {head}[{{\"index\":0,\"delta\":{{\"content\":\"hé\"}},\"finish_reason\":null}}]}}\n\n\
                 data: {head}[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
                 data: {head}[],\"usage\":{{\"completion_tokens\":4,\"prompt_tokens\":3,\"total_tokens\":7}}}}\n\n\
                 data: [DONE]\n\n"
            )
        );
    }

    #[test]
    fn upstream_errors() {
        let openai_err = include_bytes!("../../tests/fixtures/openai_error.json");
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
}
