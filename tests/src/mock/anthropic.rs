//! The Anthropic Messages wire format (`POST /v1/messages`).
//!
//! Read from a request: `system`, `messages` (text, `image` and `tool_result` blocks), `tools` (custom
//! tools with an `input_schema`; server tools, which carry a versioned `type`, are accepted and never
//! called), `tool_choice` (`auto`, `any`, `tool`, `none`, `disable_parallel_tool_use`), `max_tokens` and
//! `stream`, `thinking` (see the module doc of `mod.rs`). A forced tool (`tool_choice: {type: tool}`) that is the only tool is how Anthropic does
//! structured output: its input is generated from its `input_schema`.

use serde_json::{json, Map, Value};

use super::engine::{
    content_text, fragments, image_kind, pieces, thinking_signature, words, Answer, Chat, Content, Tool,
    ToolChoice, Usage, IMAGE_TYPES,
};
use super::{ApiError, Request, Wire};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Anthropic;

fn blocks(message: &Value) -> &[Value] {
    message
        .get("content")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn block_type(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

/// Checks one `image` block at `path` (e.g. `messages.0.content.1`).
fn check_image(block: &Value, path: &str) -> Result<(), ApiError> {
    let bad = |field: &str, msg: &str| ApiError::bad_request(format!("{path}.image.source{field}: {msg}"));
    let Some(source) = block.get("source").and_then(Value::as_object) else {
        return Err(bad("", "Field required"));
    };
    let string = |key: &str| source.get(key).and_then(Value::as_str);
    match string("type") {
        Some("base64") => {
            let media_type = string("media_type").unwrap_or_default();
            if !IMAGE_TYPES.contains(&media_type) {
                return Err(bad(
                    ".base64.media_type",
                    "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
                ));
            }
            let Some(data) = string("data").filter(|d| !d.is_empty()) else {
                return Err(bad(".base64.data", "Field required"));
            };
            match image_kind(data) {
                None => Err(bad(".base64.data", "Could not process image")),
                Some(kind) if kind != media_type => Err(bad(
                    ".base64",
                    &format!("The image was specified using the {media_type} media type, but it is a {kind} image"),
                )),
                Some(_) => Ok(()),
            }
        }
        Some("url") => match string("url") {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Ok(()),
            _ => Err(bad(".url.url", "Input should be a valid http(s) URL")),
        },
        Some("file") => match string("file_id") {
            Some(id) if !id.is_empty() => Ok(()),
            _ => Err(bad(".file.file_id", "Field required")),
        },
        other => Err(bad(
            "",
            &format!(
                "Input tag {:?} found using 'type' does not match any of the expected tags: 'base64', 'url', 'file'",
                other.unwrap_or_default()
            ),
        )),
    }
}

/// Whether `thinking` asks for thinking blocks (`enabled`, with a budget of at least 1024, or `adaptive`).
fn read_thinking(body: &Map<String, Value>) -> Result<bool, ApiError> {
    let Some(t) = body.get("thinking").filter(|t| !t.is_null()) else {
        return Ok(false);
    };
    match block_type(t) {
        Some("enabled") => match t.get("budget_tokens").and_then(Value::as_u64) {
            Some(b) if b >= 1024 => Ok(true),
            _ => Err(ApiError::bad_request(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
            )),
        },
        Some("adaptive") => Ok(true),
        Some("disabled") => Ok(false),
        _ => Err(ApiError::bad_request(
            "thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'",
        )),
    }
}

/// Thinking blocks sent back in assistant turns must carry the signature the mock gave them.
fn check_signatures(messages: &[Value]) -> Result<(), ApiError> {
    for (i, m) in messages.iter().enumerate() {
        for (j, block) in blocks(m).iter().enumerate() {
            if block_type(block) != Some("thinking") {
                continue;
            }
            let text = block.get("thinking").and_then(Value::as_str).unwrap_or_default();
            let signature = block.get("signature").and_then(Value::as_str).unwrap_or_default();
            if signature != thinking_signature(text) {
                return Err(ApiError::bad_request(format!(
                    "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                )));
            }
        }
    }
    Ok(())
}

/// Checks every image (in messages and in tool results); how many there are.
fn count_images(messages: &[Value]) -> Result<usize, ApiError> {
    let mut n = 0;
    for (i, m) in messages.iter().enumerate() {
        for (j, block) in blocks(m).iter().enumerate() {
            let path = format!("messages.{i}.content.{j}");
            match block_type(block) {
                Some("image") => {
                    check_image(block, &path)?;
                    n += 1;
                }
                Some("tool_result") => {
                    for (k, inner) in blocks(block).iter().enumerate() {
                        if block_type(inner) == Some("image") {
                            check_image(inner, &format!("{path}.content.{k}"))?;
                            n += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(n)
}

fn read_tools(body: &Map<String, Value>) -> Result<Vec<Tool>, ApiError> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(ApiError::bad_request("tools: Input should be a valid list")),
    };
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        // Server tools (web search, code execution, bash, ...) carry a versioned type and no schema.
        if block_type(t).is_some_and(|ty| ty != "custom") {
            continue;
        }
        let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
        let valid = (1..=128).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(ApiError::bad_request(format!(
                "tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )));
        }
        let Some(schema) = t.get("input_schema").filter(|s| s.is_object()) else {
            return Err(ApiError::bad_request(format!(
                "tools.{i}.custom.input_schema: Field required"
            )));
        };
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(ApiError::bad_request(format!(
                "tools.{i}.custom.input_schema.type: Input should be 'object'"
            )));
        }
        out.push(Tool {
            name: name.to_string(),
            schema: schema.clone(),
        });
    }
    Ok(out)
}

/// `tool_choice` and whether parallel tool use stays allowed.
fn read_tool_choice(body: &Map<String, Value>, tools: &[Tool]) -> Result<(ToolChoice, bool), ApiError> {
    let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) else {
        return Ok((ToolChoice::Auto, true));
    };
    let parallel = match choice.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(disable)) => !disable,
        Some(_) => {
            return Err(ApiError::bad_request(
                "tool_choice.disable_parallel_tool_use: Input should be a valid boolean",
            ))
        }
    };
    let choice = match block_type(choice) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Required,
        Some("none") => ToolChoice::None,
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request("tool_choice.tool.name: Field required"))?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(ApiError::bad_request(format!(
                    "tool_choice.tool.name: tool {name:?} is not among the tools"
                )));
            }
            ToolChoice::Named(name.to_string())
        }
        _ => return Err(ApiError::bad_request(
            "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'",
        )),
    };
    Ok((choice, parallel))
}

/// The usage object: with the cache counts when the usage headers asked for them (`input_tokens` is then
/// the uncached part of the prompt).
fn usage_json(u: &Usage, output_tokens: u64) -> Value {
    let mut v = json!({"input_tokens": u.uncached_prompt(), "output_tokens": output_tokens});
    if let Some(d) = &u.details {
        v["cache_creation_input_tokens"] = json!(d.cache_write);
        v["cache_read_input_tokens"] = json!(d.cache_read);
    }
    v
}

fn stop_reason(content: &Content) -> &'static str {
    match content {
        Content::Text { .. } => "end_turn",
        Content::Tools { .. } => "tool_use",
    }
}

impl Anthropic {
    /// `x-api-key: <key>` or `authorization: Bearer <key>` (what the current SDKs send), and
    /// `anthropic-version`.
    fn check_auth(req: &Request) -> Result<(), ApiError> {
        let key = req.header("x-api-key").is_some_and(|v| !v.trim().is_empty());
        let bearer = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| !k.trim().is_empty());
        if !key && !bearer {
            return Err(ApiError::new(
                401,
                "mock: missing x-api-key header (or authorization: Bearer <key>)",
            ));
        }
        if req
            .header("anthropic-version")
            .is_none_or(|v| v.trim().is_empty())
        {
            return Err(ApiError::new(401, "mock: missing anthropic-version header"));
        }
        Ok(())
    }
}

impl Wire for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn read_chat(&self, req: &Request, body: Option<&Value>) -> Result<Chat, ApiError> {
        Self::check_auth(req)?;
        let Some(body) = body.and_then(Value::as_object) else {
            return Err(ApiError::bad_request("mock: body is not a JSON object"));
        };
        let messages = match body.get("messages").and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m,
            _ => return Err(ApiError::bad_request("mock: messages must be a non-empty array")),
        };
        if body
            .get("stream")
            .is_some_and(|s| !s.is_boolean() && !s.is_null())
        {
            return Err(ApiError::bad_request("mock: stream must be a boolean"));
        }
        let Some(model) = body.get("model").and_then(Value::as_str) else {
            return Err(ApiError::bad_request("mock: model must be a string"));
        };
        if body
            .get("max_tokens")
            .and_then(Value::as_u64)
            .is_none_or(|n| n < 1)
        {
            return Err(ApiError::bad_request(
                "mock: max_tokens: field required (integer >= 1)",
            ));
        }
        for m in messages {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            if role != "user" && role != "assistant" {
                return Err(ApiError::bad_request(format!(
                    "mock: messages role must be user or assistant, got {role:?}"
                )));
            }
        }
        if body
            .get("system")
            .is_some_and(|s| !s.is_string() && !s.is_array())
        {
            return Err(ApiError::bad_request(
                "mock: system must be a string or an array of text blocks",
            ));
        }
        let images = count_images(messages)?;
        check_signatures(messages)?;
        let thinking = read_thinking(body)?;
        let tools = read_tools(body)?;
        let (tool_choice, parallel) = read_tool_choice(body, &tools)?;
        let is_user = |m: &&Value| m.get("role").and_then(Value::as_str) == Some("user");
        let results_of = |m: &Value| -> Vec<String> {
            blocks(m)
                .iter()
                .filter(|b| block_type(b) == Some("tool_result"))
                .map(|b| content_text(b.get("content")))
                .collect()
        };
        let tool_results = messages
            .last()
            .filter(is_user)
            .map(results_of)
            .unwrap_or_default();
        // The question is the last user text; a turn that only returns tool results asks nothing new.
        let last_user_text = messages
            .iter()
            .rev()
            .filter(is_user)
            .map(|m| (content_text(m.get("content")), results_of(m).is_empty()))
            .find(|(text, no_results)| !text.is_empty() || *no_results)
            .map(|(text, _)| text)
            .unwrap_or_default();
        let prompt_tokens = messages
            .iter()
            .map(|m| {
                words(&content_text(m.get("content"))) + results_of(m).iter().map(|r| words(r)).sum::<u64>()
            })
            .sum::<u64>()
            + words(&content_text(body.get("system")));
        Ok(Chat {
            model: model.to_string(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: false,
            last_user_text,
            prompt_tokens,
            images,
            tool_choice,
            parallel,
            tool_results,
            id_seed: json!([body.get("system"), messages, body.get("tools")])
                .to_string()
                .into_bytes(),
            tools,
            thinking,
            ..Chat::default()
        })
    }

    fn error_body(&self, err: &ApiError) -> Value {
        let kind = match err.status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        json!({"type": "error", "error": {"type": kind, "message": err.message}})
    }

    fn chat_json(&self, n: u64, a: &Answer) -> Value {
        let thinking = a
            .thinking
            .iter()
            .map(|t| json!({"type": "thinking", "thinking": t.text, "signature": t.signature}));
        let answer: Vec<Value> = match &a.content {
            Content::Text { text, .. } => vec![json!({"type": "text", "text": text})],
            Content::Tools { calls, .. } => calls
                .iter()
                .map(|c| json!({"type": "tool_use", "id": format!("toolu_{}", c.id), "name": c.name, "input": c.arguments}))
                .collect(),
        };
        let content: Vec<Value> = thinking.chain(answer).collect();
        json!({
            "id": format!("msg_mock_{n}"),
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": content,
            "stop_reason": stop_reason(&a.content),
            "stop_sequence": null,
            "usage": usage_json(&a.usage, a.usage.completion),
        })
    }

    fn chat_events(&self, n: u64, a: &Answer) -> Vec<String> {
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut events = vec![event(
            "message_start",
            json!({"type": "message_start", "message": {"id": format!("msg_mock_{n}"), "type": "message",
                "role": "assistant", "model": a.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": usage_json(&a.usage, 1)}}),
        )];
        let ping = event("ping", json!({"type": "ping"}));
        let delta = |index: usize, delta: Value| {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            )
        };
        let stop = |index: usize| {
            event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            )
        };
        // The thinking block comes first, its text in pieces, then its signature.
        let first = usize::from(a.thinking.is_some());
        if let Some(t) = &a.thinking {
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            ));
            for piece in pieces(&t.text) {
                events.push(delta(0, json!({"type": "thinking_delta", "thinking": piece})));
            }
            events.push(delta(
                0,
                json!({"type": "signature_delta", "signature": t.signature}),
            ));
            events.push(stop(0));
        }
        match &a.content {
            Content::Text { pieces, .. } => {
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": first, "content_block": {"type": "text", "text": ""}}),
                ));
                events.push(ping);
                for piece in pieces {
                    events.push(delta(first, json!({"type": "text_delta", "text": piece})));
                }
                events.push(stop(first));
            }
            Content::Tools { calls, .. } => {
                // A tool_use block opens with an empty input; the input follows as JSON fragments, the
                // first of them empty, as the API sends them.
                for (k, call) in calls.iter().enumerate() {
                    let i = first + k;
                    events.push(event(
                        "content_block_start",
                        json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use",
                            "id": format!("toolu_{}", call.id), "name": call.name, "input": {}}}),
                    ));
                    if k == 0 {
                        events.push(ping.clone());
                    }
                    let json_text = call.arguments_json();
                    for fragment in std::iter::once(String::new()).chain(fragments(&json_text)) {
                        events.push(delta(
                            i,
                            json!({"type": "input_json_delta", "partial_json": fragment}),
                        ));
                    }
                    events.push(stop(i));
                }
            }
        }
        let mut usage = json!({"output_tokens": a.usage.completion});
        if a.usage.details.is_some() {
            usage = usage_json(&a.usage, a.usage.completion);
        }
        events.push(event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(&a.content), "stop_sequence": null},
                "usage": usage}),
        ));
        events.push(event("message_stop", json!({"type": "message_stop"})));
        events
    }
}
