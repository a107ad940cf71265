//! The OpenAI wire format (Chat Completions and Embeddings), and Azure OpenAI's: the same bodies, the
//! deployment in the path names the model, `api-key` authenticates and `api-version` is required.
//!
//! Read from a chat request: `messages` (text and `image_url` parts, `role: tool` results), `tools`
//! (`type: function`; other tool types are accepted and never called), `tool_choice`,
//! `parallel_tool_calls`, `response_format` (`text`, `json_object`, `json_schema`), `stream` and
//! `stream_options.include_usage`.

use serde_json::{json, Map, Value};

use super::engine::{
    self, content_text, embedding, fragments, image_kind, words, Answer, Chat, Content, Format, Tool,
    ToolCall, ToolChoice, Usage, IMAGE_TYPES,
};
use super::{ApiError, Request, Wire, CREATED};

/// Default length of an embedding (when the request gives no `dimensions`).
pub const EMBEDDING_DIMENSIONS: usize = 8;

/// Most inputs in one embeddings request (OpenAI's limit).
const MAX_EMBEDDING_INPUTS: usize = 2048;

/// OpenAI, or Azure OpenAI when `azure` holds the deployment.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenAi {
    azure: Option<String>,
}

/// A 400 with OpenAI's `param` and `code`.
fn invalid(param: &str, code: &str, message: String) -> ApiError {
    ApiError {
        status: 400,
        message,
        param: Some(param.to_string()),
        code: Some(code).filter(|c| !c.is_empty()).map(str::to_string),
    }
}

fn missing(param: &str) -> ApiError {
    invalid(
        param,
        "missing_required_parameter",
        format!("Missing required parameter: '{param}'."),
    )
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    invalid(
        param,
        "invalid_type",
        format!("Invalid type for '{param}': expected {expected}, but got {kind} instead."),
    )
}

/// Whether `name` is a valid function or schema name: 1 to 64 of `a-zA-Z0-9_-`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks one `image_url` part; `Ok(true)` when the mock can read the image (a data: or http(s) URL).
/// Any other URL string is let through uncounted (the mock does not fetch anything).
fn check_image(part: &Value, param: &str) -> Result<bool, ApiError> {
    let param = format!("{param}.image_url");
    let image = part.get("image_url").ok_or_else(|| missing(&param))?;
    let image = image
        .as_object()
        .ok_or_else(|| wrong_type(&param, "an object", image))?;
    let url_param = format!("{param}.url");
    let url = image.get("url").ok_or_else(|| missing(&url_param))?;
    let url = url
        .as_str()
        .ok_or_else(|| wrong_type(&url_param, "a string", url))?;
    if let Some(detail) = image.get("detail") {
        if !matches!(detail.as_str(), Some("auto" | "low" | "high")) {
            return Err(invalid(
                &format!("{param}.detail"),
                "invalid_value",
                format!("Invalid value: {detail}. Supported values are: 'auto', 'low', and 'high'."),
            ));
        }
    }
    if let Some(data_url) = url.strip_prefix("data:") {
        let parsed = data_url
            .split_once(',')
            .and_then(|(meta, data)| Some((meta.strip_suffix(";base64")?, data)));
        let Some((media_type, data)) = parsed.filter(|(m, d)| IMAGE_TYPES.contains(m) && !d.is_empty())
        else {
            return Err(invalid(
                &url_param,
                "invalid_value",
                format!("Invalid image URL: '{url_param}'. Expected a base64-encoded data URL with an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got an invalid value."),
            ));
        };
        if image_kind(data).is_none() {
            return Err(invalid(
                &url_param,
                "invalid_image_format",
                format!("You uploaded an unsupported image ({media_type}). Please make sure your image is valid and of one of the following formats: ['png', 'jpeg', 'gif', 'webp']."),
            ));
        }
        return Ok(true);
    }
    Ok(url.starts_with("https://") || url.starts_with("http://"))
}

/// Checks every `image_url` part of every message; the number of images the mock can read.
fn count_images(messages: &[Value]) -> Result<usize, ApiError> {
    let mut n = 0;
    for (i, m) in messages.iter().enumerate() {
        let Some(parts) = m.get("content").and_then(Value::as_array) else {
            continue;
        };
        for (j, part) in parts.iter().enumerate() {
            if part.get("type").and_then(Value::as_str) == Some("image_url")
                && check_image(part, &format!("messages[{i}].content[{j}]"))?
            {
                n += 1;
            }
        }
    }
    Ok(n)
}

fn read_tools(body: &Map<String, Value>) -> Result<Vec<Tool>, ApiError> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(t)) => t,
        Some(other) => return Err(wrong_type("tools", "an array", other)),
    };
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(_) => continue,
            None => return Err(missing(&format!("{param}.type"))),
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| missing(&format!("{param}.function")))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| missing(&format!("{param}.function.name")))?;
        if !valid_name(name) {
            return Err(invalid(
                &format!("{param}.function.name"),
                "invalid_value",
                format!("Invalid '{param}.function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."),
            ));
        }
        let schema = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(other) => {
                return Err(wrong_type(
                    &format!("{param}.function.parameters"),
                    "an object",
                    other,
                ))
            }
        };
        out.push(Tool {
            name: name.to_string(),
            schema,
        });
    }
    Ok(out)
}

fn read_tool_choice(body: &Map<String, Value>, tools: &[Tool]) -> Result<ToolChoice, ApiError> {
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid(
                    "tool_choice",
                    "invalid_value",
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'none', 'auto', and 'required'."
                    ),
                ))
            }
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| missing("tool_choice.function.name"))?;
            if o.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid(
                    "tool_choice.type",
                    "invalid_value",
                    "Invalid value for 'tool_choice.type': expected 'function'.".into(),
                ));
            }
            if !tools.iter().any(|t| t.name == name) {
                return Err(invalid(
                    "tool_choice",
                    "",
                    format!("Invalid value for 'tool_choice': function '{name}' not found in 'tools'."),
                ));
            }
            ToolChoice::Named(name.to_string())
        }
        Some(other) => return Err(wrong_type("tool_choice", "a string or an object", other)),
    };
    Ok(choice)
}

/// The words before the schema a gateway puts in the prompt for a server that takes no schema.
const SCHEMA_MARKER: &str = "JSON Schema:";

/// The JSON Schema a message carries after [`SCHEMA_MARKER`], if one does (the first JSON object
/// there).
fn schema_in_messages(messages: &[Value]) -> Option<Value> {
    messages.iter().find_map(|m| {
        let text = content_text(m.get("content"));
        let (_, rest) = text.split_once(SCHEMA_MARKER)?;
        let start = rest.find('{')?;
        let mut values = serde_json::Deserializer::from_str(rest.get(start..)?).into_iter::<Value>();
        match values.next() {
            Some(Ok(v @ Value::Object(_))) => Some(v),
            _ => None,
        }
    })
}

fn read_format(body: &Map<String, Value>, messages: &[Value]) -> Result<Format, ApiError> {
    let format = match body.get("response_format") {
        None | Some(Value::Null) => return Ok(Format::Text),
        Some(f @ Value::Object(_)) => f,
        Some(other) => return Err(wrong_type("response_format", "an object", other)),
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Format::Text),
        Some("json_object") => {
            let says_json = messages
                .iter()
                .any(|m| content_text(m.get("content")).to_lowercase().contains("json"));
            if says_json {
                Ok(schema_in_messages(messages).map_or(Format::JsonObject, Format::JsonSchema))
            } else {
                Err(invalid(
                    "messages",
                    "",
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.".into(),
                ))
            }
        }
        Some("json_schema") => {
            let spec = format
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| missing("response_format.json_schema"))?;
            let name = spec
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| missing("response_format.json_schema.name"))?;
            if !valid_name(name) {
                return Err(invalid(
                    "response_format.json_schema.name",
                    "invalid_value",
                    "Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.".into(),
                ));
            }
            match spec.get("schema") {
                None | Some(Value::Null) => Ok(Format::JsonSchema(json!({}))),
                Some(s @ Value::Object(_)) => Ok(Format::JsonSchema(s.clone())),
                Some(other) => Err(wrong_type(
                    "response_format.json_schema.schema",
                    "an object",
                    other,
                )),
            }
        }
        Some(other) => Err(invalid(
            "response_format.type",
            "invalid_value",
            format!(
                "Invalid value: '{other}'. Supported values are: 'text', 'json_object', and 'json_schema'."
            ),
        )),
        None => Err(missing("response_format.type")),
    }
}

/// The usage object, with `prompt_tokens_details` / `completion_tokens_details` when the usage headers
/// asked for them.
fn usage_json(u: &Usage) -> Value {
    let mut v = json!({"prompt_tokens": u.prompt, "completion_tokens": u.completion,
        "total_tokens": u.prompt + u.completion});
    if let Some(d) = &u.details {
        v["prompt_tokens_details"] = json!({"cached_tokens": d.cache_read, "audio_tokens": 0});
        v["completion_tokens_details"] = json!({"reasoning_tokens": d.reasoning, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0});
    }
    v
}

fn call_json(c: &ToolCall) -> Value {
    json!({"id": format!("call_{}", c.id), "type": "function",
        "function": {"name": c.name, "arguments": c.arguments_json()}})
}

/// OpenAI finishes a call of a tool it was told to call with `stop`, any other with `tool_calls`.
fn finish_reason(content: &Content) -> &'static str {
    match content {
        Content::Tools { forced: false, .. } => "tool_calls",
        _ => "stop",
    }
}

/// One embeddings input: the bytes its vector is derived from and its token count.
fn embedding_inputs(input: Option<&Value>) -> Result<Vec<(Vec<u8>, u64)>, ApiError> {
    let empty = || {
        invalid(
            "input",
            "invalid_value",
            "'$.input' is invalid: inputs must not be empty.".into(),
        )
    };
    let tokens = |v: &Value| -> Option<(Vec<u8>, u64)> {
        let ids = v.as_array()?;
        (!ids.is_empty() && ids.iter().all(Value::is_u64))
            .then(|| (v.to_string().into_bytes(), ids.len() as u64))
    };
    let inputs: Vec<(Vec<u8>, u64)> = match input {
        None => return Err(missing("input")),
        Some(Value::String(s)) if s.is_empty() => return Err(empty()),
        Some(Value::String(s)) => vec![(s.as_bytes().to_vec(), words(s))],
        Some(v @ Value::Array(items)) => {
            if items.is_empty() {
                return Err(empty());
            }
            if let Some(one) = tokens(v) {
                vec![one]
            } else {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) if !s.is_empty() => out.push((s.as_bytes().to_vec(), words(s))),
                        Value::Array(_) => out.push(tokens(item).ok_or_else(empty)?),
                        Value::String(_) => return Err(empty()),
                        other => {
                            return Err(wrong_type(
                                "input",
                                "a string, an array of strings or an array of token arrays",
                                other,
                            ))
                        }
                    }
                }
                out
            }
        }
        Some(other) => return Err(wrong_type("input", "a string or an array", other)),
    };
    if inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(invalid(
            "input",
            "invalid_value",
            format!(
                "'$.input' is invalid: at most {MAX_EMBEDDING_INPUTS} inputs, got {}.",
                inputs.len()
            ),
        ));
    }
    Ok(inputs)
}

/// Standard base64 with padding (how OpenAI sends `encoding_format: base64` vectors: little-endian f32).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| ALPHABET.get((i & 63) as usize).map_or('=', |b| char::from(*b));
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

impl OpenAi {
    pub fn azure(deployment: &str) -> OpenAi {
        OpenAi {
            azure: Some(deployment.to_string()),
        }
    }

    /// Checks the credentials: `authorization: Bearer <key>` (OpenAI), `api-key` and `?api-version=`
    /// (Azure).
    fn check_auth(&self, req: &Request) -> Result<(), ApiError> {
        if self.azure.is_some() {
            if req.header("api-key").is_none_or(|v| v.trim().is_empty()) {
                return Err(ApiError::new(401, "mock: missing api-key header"));
            }
            if req.query("api-version").is_none_or(str::is_empty) {
                return Err(ApiError::bad_request("mock: missing api-version query parameter"));
            }
            return Ok(());
        }
        let bearer = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_none_or(|k| k.trim().is_empty()) {
            return Err(ApiError::new(
                401,
                "mock: missing or invalid authorization: Bearer <key>",
            ));
        }
        Ok(())
    }

    /// The body as an object and the model it names (Azure: the deployment).
    fn body_and_model<'a>(
        &self,
        body: Option<&'a Value>,
    ) -> Result<(&'a Map<String, Value>, String), ApiError> {
        let Some(body) = body.and_then(Value::as_object) else {
            return Err(ApiError::bad_request("mock: body is not a JSON object"));
        };
        let model = match &self.azure {
            Some(deployment) => deployment.clone(),
            None => match body.get("model").and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => return Err(ApiError::bad_request("mock: model must be a string")),
            },
        };
        Ok((body, model))
    }
}

impl Wire for OpenAi {
    fn name(&self) -> &'static str {
        if self.azure.is_some() {
            "azure"
        } else {
            "openai"
        }
    }

    fn fault_model<'a>(&'a self, body: Option<&'a Value>) -> Option<&'a str> {
        match &self.azure {
            Some(deployment) => Some(deployment),
            None => body.and_then(|b| b.get("model")).and_then(Value::as_str),
        }
    }

    fn read_chat(&self, req: &Request, body: Option<&Value>) -> Result<Chat, ApiError> {
        self.check_auth(req)?;
        let Some(object) = body.and_then(Value::as_object) else {
            return Err(ApiError::bad_request("mock: body is not a JSON object"));
        };
        let messages = match object.get("messages").and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m,
            _ => return Err(ApiError::bad_request("mock: messages must be a non-empty array")),
        };
        if object
            .get("stream")
            .is_some_and(|s| !s.is_boolean() && !s.is_null())
        {
            return Err(ApiError::bad_request("mock: stream must be a boolean"));
        }
        let (body, model) = self.body_and_model(body)?;
        let images = count_images(messages)?;
        let tools = read_tools(body)?;
        let tool_choice = read_tool_choice(body, &tools)?;
        let parallel = match body.get("parallel_tool_calls") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong_type("parallel_tool_calls", "a boolean", other)),
        };
        let format = read_format(body, messages)?;
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
        let mut tool_results: Vec<String> = messages
            .iter()
            .rev()
            .take_while(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
            .map(|m| content_text(m.get("content")))
            .collect();
        tool_results.reverse();
        Ok(Chat {
            model,
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: body
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            last_user_text: content_text(last_user.and_then(|m| m.get("content"))),
            prompt_tokens: messages
                .iter()
                .map(|m| words(&content_text(m.get("content"))))
                .sum(),
            images,
            tool_choice,
            parallel,
            tool_results,
            format,
            id_seed: json!([messages, body.get("tools")]).to_string().into_bytes(),
            tools,
            thinking: false,
        })
    }

    fn error_body(&self, err: &ApiError) -> Value {
        let (kind, code) = match err.status {
            401 => ("invalid_request_error", json!("invalid_api_key")),
            403 => ("permission_error", Value::Null),
            404 => ("invalid_request_error", json!("not_found")),
            429 => ("rate_limit_error", json!("rate_limit_exceeded")),
            s if s >= 500 => ("server_error", Value::Null),
            _ => ("invalid_request_error", Value::Null),
        };
        let code = err.code.as_ref().map_or(code, |c| json!(c));
        json!({"error": {"message": err.message, "type": kind, "param": err.param, "code": code}})
    }

    fn chat_json(&self, n: u64, a: &Answer) -> Value {
        let message = match &a.content {
            Content::Text { text, .. } => json!({"role": "assistant", "content": text}),
            Content::Tools { calls, .. } => json!({"role": "assistant", "content": null,
                "tool_calls": calls.iter().map(call_json).collect::<Vec<_>>()}),
        };
        json!({
            "id": format!("chatcmpl-mock-{n}"),
            "object": "chat.completion",
            "created": CREATED,
            "model": a.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(&a.content)}],
            "usage": usage_json(&a.usage),
        })
    }

    fn chat_events(&self, n: u64, a: &Answer) -> Vec<String> {
        let id = format!("chatcmpl-mock-{n}");
        let chunk = |delta: Value, finish: Value| {
            let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": a.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            if a.include_usage {
                v["usage"] = Value::Null;
            }
            format!("data: {v}\n\n")
        };
        let mut events = Vec::new();
        match &a.content {
            Content::Text { pieces, .. } => {
                events.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
                for piece in pieces {
                    events.push(chunk(json!({ "content": piece }), Value::Null));
                }
            }
            Content::Tools { calls, .. } => {
                // Each call opens with its id and name and empty arguments; the arguments follow in
                // fragments. The first chunk also carries the role.
                for (i, call) in calls.iter().enumerate() {
                    let open = json!({"index": i, "id": format!("call_{}", call.id), "type": "function",
                        "function": {"name": call.name, "arguments": ""}});
                    let delta = if i == 0 {
                        json!({"role": "assistant", "content": null, "tool_calls": [open]})
                    } else {
                        json!({"tool_calls": [open]})
                    };
                    events.push(chunk(delta, Value::Null));
                    for fragment in fragments(&call.arguments_json()) {
                        events.push(chunk(
                            json!({"tool_calls": [{"index": i, "function": {"arguments": fragment}}]}),
                            Value::Null,
                        ));
                    }
                }
            }
        }
        events.push(chunk(json!({}), json!(finish_reason(&a.content))));
        if a.include_usage {
            let v = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": a.model,
                "choices": [], "usage": usage_json(&a.usage)});
            events.push(format!("data: {v}\n\n"));
        }
        events.push("data: [DONE]\n\n".to_string());
        events
    }

    fn embeddings(&self, req: &Request, body: Option<&Value>) -> Result<Value, ApiError> {
        self.check_auth(req)?;
        let (body, model) = self.body_and_model(body)?;
        let inputs = embedding_inputs(body.get("input"))?;
        let base64_format = match body.get("encoding_format") {
            None | Some(Value::Null) => false,
            Some(Value::String(f)) if f == "float" => false,
            Some(Value::String(f)) if f == "base64" => true,
            Some(other) => {
                return Err(invalid(
                    "encoding_format",
                    "invalid_value",
                    format!("Invalid value: {other}. Supported values are: 'float' and 'base64'."),
                ))
            }
        };
        let dimensions = match body.get("dimensions") {
            None | Some(Value::Null) => EMBEDDING_DIMENSIONS,
            Some(d) => match d.as_u64() {
                Some(n @ 1..=4096) => n as usize,
                _ => {
                    return Err(invalid(
                        "dimensions",
                        "invalid_value",
                        format!("Invalid value for 'dimensions': {d}. It must be an integer from 1 to 4096."),
                    ))
                }
            },
        };
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, (bytes, _))| {
                let vector = embedding(bytes, dimensions);
                let encoded = if base64_format {
                    let raw: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64(&raw))
                } else {
                    json!(vector.iter().map(|x| f64::from(*x)).collect::<Vec<f64>>())
                };
                json!({"object": "embedding", "index": i, "embedding": encoded})
            })
            .collect();
        let tokens = inputs.iter().map(|(_, t)| t).sum();
        let prompt = engine::usage(req, tokens, 0)?.prompt;
        Ok(json!({"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encodes_with_padding() {
        let cases: [(&[u8], &str); 5] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (&[0xfb, 0xff, 0x00, 0x01], "+/8AAQ=="),
        ];
        for (bytes, want) in cases {
            assert_eq!(base64(bytes), want);
            assert_eq!(shared::crypto::base64_decode(want).unwrap(), bytes);
        }
    }

    #[test]
    fn embedding_inputs_are_read() {
        let ok = |v: Value| embedding_inputs(Some(&v)).unwrap();
        assert_eq!(ok(json!("a b")), vec![(b"a b".to_vec(), 2)]);
        assert_eq!(ok(json!(["a", "b c"])).len(), 2);
        assert_eq!(ok(json!([1, 2, 3])), vec![(b"[1,2,3]".to_vec(), 3)]);
        assert_eq!(
            ok(json!([[1, 2], [3]])).iter().map(|i| i.1).collect::<Vec<_>>(),
            [2, 1]
        );
        for bad in [
            json!(""),
            json!([]),
            json!([""]),
            json!([[]]),
            json!([1, "a"]),
            json!(5),
            json!([null]),
        ] {
            assert_eq!(embedding_inputs(Some(&bad)).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(
            embedding_inputs(None).unwrap_err().code.as_deref(),
            Some("missing_required_parameter")
        );
    }
}
