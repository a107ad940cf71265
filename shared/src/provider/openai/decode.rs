//! An OpenAI Chat Completions request (the OpenAI door) read into [`neutral::Request`], for a target
//! that speaks another dialect.
//!
//! Every top-level field is accounted for: translated into a neutral field, accepted because its value
//! is the API's default and changes nothing (`n: 1`, `logprobs: false`, penalties of 0, `store: false`,
//! `modalities: ["text"]`, empty `tools`/`logit_bias`/`metadata`, any `null`), refused because it has no
//! translation and dropping it would change what the model reads (`functions`, custom tools, audio and
//! file content), or carried by name in [`neutral::Request::extra`] for the target's renderer to
//! refuse or drop (`seed`, penalties, `logprobs`, `n > 1`, …, and any field this gateway does not know).
//! Fields LiteLLM adds to the OpenAI shape for Anthropic are read too: `thinking`, `top_k`,
//! `cache_control` on messages, parts and tools, and `thinking_blocks` in assistant messages.

use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::error::ApiError;
use crate::provider::neutral::{
    self, invalid_messages, invalid_parameter, unsupported_content, Arguments, Format, Image, Message, Part,
    Reasoning, Role, System, Tool, ToolChoice,
};

fn unsupported_feature(what: &str, label: &str) -> ApiError {
    ApiError::invalid_request(
        "unsupported_feature",
        format!("{what} is not supported for {label} targets"),
    )
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

/// Whether `value` is the API default of parameter `name`, so leaving it out changes nothing.
fn is_default(name: &str, value: &Value) -> bool {
    match name {
        "n" => value.as_u64() == Some(1),
        "logprobs" | "store" => value == &Value::Bool(false),
        "frequency_penalty" | "presence_penalty" => value.as_f64() == Some(0.0),
        "top_logprobs" => value.as_u64() == Some(0),
        "modalities" => value.as_array().is_some_and(|m| m.iter().all(|x| x == "text")),
        _ => is_unset(Some(value)),
    }
}

/// Fields read by this decoder (or by the gateway itself: `model`, `stream`, `stream_options`).
const TRANSLATED: [&str; 20] = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "user",
    "safety_identifier",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "thinking",
    "service_tier",
    "functions",
];

fn number<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a serde_json::Number>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n)),
        Some(_) => Err(invalid_parameter(name, "a number")),
    }
}

fn string<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_parameter(name, "a string")),
    }
}

/// An `image_url` URL: a `data:<type>;base64,<data>` URL or an http(s) URL.
fn image(url: &str) -> Option<Image<'_>> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let media_type = meta.strip_suffix(";base64")?;
        return Some(Image::Base64 { media_type, data });
    }
    (url.starts_with("https://") || url.starts_with("http://")).then_some(Image::Url(url))
}

/// Fields of `obj` other than `known` (and `type`, `cache_control`), carried by name under `at`.
fn note_other_fields<'a>(
    obj: &'a Value,
    known: &[&str],
    at: &str,
    extra: &mut Vec<(Cow<'a, str>, &'a Value)>,
) {
    for (key, value) in obj.as_object().into_iter().flatten() {
        if key != "type" && key != "cache_control" && !known.contains(&key.as_str()) && !value.is_null() {
            extra.push((Cow::Owned(format!("{at}.{key}")), value));
        }
    }
}

/// Reads a message's `content` (a string or content parts). `allow_images`: user messages.
fn content<'a>(
    m: &'a Value,
    at: &str,
    allow_images: bool,
    label: &str,
    extra: &mut Vec<(Cow<'a, str>, &'a Value)>,
) -> Result<Vec<Part<'a>>, ApiError> {
    let parts = match m.get("content") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![Part::Text { text: s, cache: None }]),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(invalid_messages(format!(
                "{at}.content must be a string or an array of content parts"
            )))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let cache = part.get("cache_control").filter(|c| !c.is_null());
        let here = format!("{at}.content[{j}]");
        match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                note_other_fields(part, &["text"], &here, extra);
                let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    invalid_messages(format!("{at}.content[{j}]: a text part needs a string `text`"))
                })?;
                out.push(Part::Text { text, cache });
            }
            // An assistant's refusal in the history is what it said.
            Some("refusal") => {
                note_other_fields(part, &["refusal"], &here, extra);
                if let Some(text) = part.get("refusal").and_then(Value::as_str) {
                    out.push(Part::Text { text, cache });
                }
            }
            Some("image_url") if allow_images => {
                note_other_fields(part, &["image_url"], &here, extra);
                if let Some(inner) = part.get("image_url") {
                    note_other_fields(inner, &["url", "detail"], &format!("{here}.image_url"), extra);
                }
                let url = part
                    .get("image_url")
                    .and_then(|i| i.get("url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid_messages(format!(
                            "{at}.content[{j}]: an image_url part needs `image_url.url`"
                        ))
                    })?;
                let image = image(url).ok_or_else(|| {
                    invalid_messages(format!(
                        "{at}.content[{j}].image_url.url must be a data: URL with base64 data or an http(s) URL"
                    ))
                })?;
                if let Some(detail) = part
                    .get("image_url")
                    .and_then(|i| i.get("detail"))
                    .filter(|d| !d.is_null() && *d != "auto")
                {
                    extra.push((Cow::Owned(format!("{at}.content[{j}].image_url.detail")), detail));
                }
                out.push(Part::Image { image, cache });
            }
            Some(other) => {
                return Err(unsupported_content(
                    &format!("{at}.content[{j}]: content part type `{other}`"),
                    label,
                ))
            }
            None => {
                return Err(invalid_messages(format!(
                    "{at}.content[{j}]: content parts need a `type`"
                )))
            }
        }
    }
    Ok(out)
}

/// A message-level `cache_control` (LiteLLM's form) marks the message's last part.
fn mark_last<'a>(parts: &mut [Part<'a>], marker: Option<&'a Value>) {
    let Some(marker) = marker.filter(|m| !m.is_null()) else {
        return;
    };
    let Some(last) = parts.last_mut() else {
        return;
    };
    match last {
        Part::Text { cache, .. }
        | Part::Image { cache, .. }
        | Part::ToolCall { cache, .. }
        | Part::ToolResult { cache, .. } => {
            if cache.is_none() {
                *cache = Some(marker);
            }
        }
        Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
    }
}

fn tool_calls<'a>(m: &'a Value, at: &str) -> Result<Vec<Part<'a>>, ApiError> {
    let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) else {
        return Ok(Vec::new());
    };
    let calls = calls
        .as_array()
        .ok_or_else(|| invalid_messages(format!("{at}.tool_calls must be an array")))?;
    let mut out = Vec::with_capacity(calls.len());
    for (k, c) in calls.iter().enumerate() {
        let bad = |what: &str| invalid_messages(format!("{at}.tool_calls[{k}] needs {what}"));
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a string `id`"))?;
        let function = c.get("function").ok_or_else(|| bad("a `function`"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a string `function.name`"))?;
        let arguments = match function.get("arguments") {
            None | Some(Value::Null) => Arguments::Text(""),
            Some(Value::String(s)) => Arguments::Text(s),
            Some(_) => return Err(bad("`function.arguments` as a JSON string")),
        };
        out.push(Part::ToolCall {
            id,
            name,
            arguments,
            cache: c.get("cache_control").filter(|x| !x.is_null()),
        });
    }
    Ok(out)
}

/// LiteLLM's `thinking_blocks` of an assistant message: the signed reasoning to send back.
fn thinking_blocks<'a>(m: &'a Value, at: &str) -> Result<Vec<Part<'a>>, ApiError> {
    let Some(blocks) = m.get("thinking_blocks").filter(|b| !b.is_null()) else {
        return Ok(Vec::new());
    };
    let blocks = blocks
        .as_array()
        .ok_or_else(|| invalid_messages(format!("{at}.thinking_blocks must be an array")))?;
    let mut out = Vec::with_capacity(blocks.len());
    for (k, b) in blocks.iter().enumerate() {
        let field = |key: &str| b.get(key).and_then(Value::as_str);
        match field("type") {
            Some("thinking") => out.push(Part::Thinking {
                text: field("thinking").unwrap_or_default(),
                signature: field("signature").unwrap_or_default(),
            }),
            Some("redacted_thinking") => out.push(Part::RedactedThinking {
                data: field("data").unwrap_or_default(),
            }),
            _ => {
                return Err(invalid_messages(format!(
                    "{at}.thinking_blocks[{k}].type must be `thinking` or `redacted_thinking`"
                )))
            }
        }
    }
    Ok(out)
}

/// Message fields read here; any other is a parameter the target may not take.
const MESSAGE_FIELDS: [&str; 8] = [
    "role",
    "content",
    "tool_calls",
    "tool_call_id",
    "cache_control",
    "thinking_blocks",
    // A response-only field clients echo back: the signed `thinking_blocks` carry the reasoning.
    "reasoning_content",
    "refusal",
];

fn messages<'a>(
    body: &'a Map<String, Value>,
    label: &str,
    system: &mut Vec<System<'a>>,
    extra: &mut Vec<(Cow<'a, str>, &'a Value)>,
) -> Result<Vec<Message<'a>>, ApiError> {
    let list = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_messages("`messages` must be an array".into()))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_messages(format!("{at}.role must be a string")))?;
        for (key, value) in m.as_object().into_iter().flatten() {
            let known = MESSAGE_FIELDS.contains(&key.as_str());
            if key == "function_call" && !value.is_null() {
                return Err(unsupported_feature(
                    &format!("`{at}.function_call` (the legacy form of `tool_calls`)"),
                    label,
                ));
            }
            if key == "audio" && !value.is_null() {
                return Err(unsupported_content(&format!("`{at}.audio`"), label));
            }
            if !known && !value.is_null() && key != "function_call" && key != "audio" {
                extra.push((Cow::Owned(format!("{at}.{key}")), value));
            }
        }
        let marker = m.get("cache_control");
        let mut parts = match role {
            "system" | "developer" => {
                let mut parts = content(m, &at, false, label, extra)?;
                mark_last(&mut parts, marker);
                for p in parts {
                    if let Part::Text { text, cache } = p {
                        system.push(System { text, cache });
                    }
                }
                continue;
            }
            "user" => content(m, &at, true, label, extra)?,
            "assistant" => {
                let mut parts = thinking_blocks(m, &at)?;
                parts.extend(content(m, &at, false, label, extra)?);
                if let Some(text) = m.get("refusal").and_then(Value::as_str) {
                    parts.push(Part::Text { text, cache: None });
                }
                parts.extend(tool_calls(m, &at)?);
                parts
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid_messages(format!("{at}.tool_call_id must be a string")))?;
                let result = content(m, &at, false, label, extra)?;
                vec![Part::ToolResult {
                    id,
                    content: result,
                    is_error: false,
                    cache: None,
                }]
            }
            "function" => {
                return Err(unsupported_feature(
                    "the `function` message role (the legacy form of `tool`)",
                    label,
                ))
            }
            other => return Err(invalid_messages(format!("{at}.role `{other}` is not supported"))),
        };
        mark_last(&mut parts, marker);
        let role = if role == "assistant" {
            Role::Assistant
        } else {
            Role::User
        };
        out.push(Message {
            index: i,
            role,
            parts,
        });
    }
    Ok(out)
}

fn tools<'a>(
    body: &'a Map<String, Value>,
    label: &str,
    extra: &mut Vec<(Cow<'a, str>, &'a Value)>,
) -> Result<Vec<Tool<'a>>, ApiError> {
    let Some(list) = body.get("tools").filter(|t| !t.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid_parameter("tools", "an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") | None => {}
            Some(other) => {
                return Err(unsupported_feature(
                    &format!("`tools[{i}]` of type `{other}`"),
                    label,
                ))
            }
        }
        let f = t
            .get("function")
            .ok_or_else(|| invalid_parameter(&format!("tools[{i}].function"), "an object"))?;
        note_other_fields(t, &["function"], &format!("tools[{i}]"), extra);
        note_other_fields(
            f,
            &["name", "description", "parameters", "strict"],
            &format!("tools[{i}].function"),
            extra,
        );
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_parameter(&format!("tools[{i}].function.name"), "a string"))?;
        out.push(Tool {
            name,
            description: f.get("description").and_then(Value::as_str),
            schema: f.get("parameters").filter(|p| !p.is_null()),
            strict: f.get("strict").and_then(Value::as_bool),
            cache: t.get("cache_control").filter(|c| !c.is_null()),
        });
    }
    Ok(out)
}

fn tool_choice<'a>(body: &'a Map<String, Value>, label: &str) -> Result<Option<ToolChoice<'a>>, ApiError> {
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => return Ok(None),
        Some(c) => c,
    };
    Ok(Some(match choice {
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                return Err(invalid_parameter(
                    "tool_choice",
                    "`auto`, `none`, `required` or a named function",
                ))
            }
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => ToolChoice::Named(
                o.get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid_parameter("tool_choice.function.name", "a string"))?,
            ),
            Some(other) => {
                return Err(unsupported_feature(
                    &format!("`tool_choice` of type `{other}`"),
                    label,
                ))
            }
            None => return Err(invalid_parameter("tool_choice.type", "a string")),
        },
        _ => {
            return Err(invalid_parameter(
                "tool_choice",
                "`auto`, `none`, `required` or a named function",
            ))
        }
    }))
}

fn response_format(body: &Map<String, Value>) -> Result<Option<Format<'_>>, ApiError> {
    let Some(f) = body.get("response_format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Format::JsonObject)),
        Some("json_schema") => {
            let s = f
                .get("json_schema")
                .ok_or_else(|| invalid_parameter("response_format.json_schema", "an object"))?;
            let schema = s
                .get("schema")
                .filter(|v| v.is_object())
                .ok_or_else(|| invalid_parameter("response_format.json_schema.schema", "an object"))?;
            Ok(Some(Format::JsonSchema {
                name: s.get("name").and_then(Value::as_str),
                description: s.get("description").and_then(Value::as_str),
                schema,
                strict: s.get("strict").and_then(Value::as_bool),
            }))
        }
        _ => Err(invalid_parameter(
            "response_format.type",
            "`text`, `json_object` or `json_schema`",
        )),
    }
}

/// LiteLLM's Anthropic-style `thinking` on the OpenAI shape, else `reasoning_effort`.
fn reasoning(body: &Map<String, Value>) -> Result<Option<Reasoning<'_>>, ApiError> {
    if let Some(t) = body.get("thinking").filter(|t| !t.is_null()) {
        return match t.get("type").and_then(Value::as_str) {
            Some("enabled") => t
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .map(|b| Some(Reasoning::Budget(b)))
                .ok_or_else(|| invalid_parameter("thinking.budget_tokens", "a positive integer")),
            Some("adaptive") => Ok(Some(Reasoning::Adaptive)),
            Some("disabled") => Ok(Some(Reasoning::Off)),
            _ => Err(invalid_parameter(
                "thinking.type",
                "`enabled`, `adaptive` or `disabled`",
            )),
        };
    }
    Ok(match string(body, "reasoning_effort")? {
        None => None,
        Some("none") => Some(Reasoning::Off),
        Some(effort) => Some(Reasoning::Effort(effort)),
    })
}

/// The client's request as [`neutral`], for a target named `label` in errors.
pub fn decode<'a>(
    body: &'a Map<String, Value>,
    stream: bool,
    label: &str,
) -> Result<neutral::Request<'a>, ApiError> {
    if !is_unset(body.get("functions")) || body.get("function_call").is_some_and(|f| !f.is_null()) {
        return Err(unsupported_feature(
            "`functions` (the legacy form of `tools`)",
            label,
        ));
    }
    match body.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64().is_some_and(|n| n >= 1) => {}
        Some(_) => return Err(invalid_parameter("n", "a positive integer")),
    }
    let mut extra: Vec<(Cow<'a, str>, &'a Value)> = Vec::new();
    for (key, value) in body {
        if !TRANSLATED.contains(&key.as_str()) && key != "function_call" && !is_default(key, value) {
            extra.push((Cow::Borrowed(key.as_str()), value));
        }
    }
    let mut system = Vec::new();
    let messages = messages(body, label, &mut system, &mut extra)?;
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
    let parallel_tool_calls = match body.get("parallel_tool_calls") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(invalid_parameter("parallel_tool_calls", "a boolean")),
    };
    let priority_tier = match (string(body, "service_tier")?, body.get("service_tier")) {
        (None, _) => None,
        (Some("auto"), _) => Some(true),
        (Some("default"), _) => Some(false),
        (Some(_), Some(v)) => {
            extra.push((Cow::Borrowed("service_tier"), v));
            None
        }
        (Some(_), None) => None,
    };
    Ok(neutral::Request {
        system,
        messages,
        max_tokens,
        temperature: number(body, "temperature")?,
        top_p: number(body, "top_p")?,
        top_k: number(body, "top_k")?,
        stop,
        stream,
        user: match string(body, "user")? {
            Some(u) => Some(u),
            None => string(body, "safety_identifier")?,
        },
        tools: tools(body, label, &mut extra)?,
        tool_choice: tool_choice(body, label)?,
        parallel_tool_calls,
        format: response_format(body)?,
        reasoning: reasoning(body)?,
        priority_tier,
        cache: None,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    fn names(r: &neutral::Request<'_>) -> Vec<String> {
        r.extra.iter().map(|(n, _)| n.to_string()).collect()
    }

    #[test]
    fn text_chat_and_sampling() {
        let body = obj(json!({"model": "m", "messages": [
                {"role": "system", "content": "S"},
                {"role": "developer", "content": [{"type": "text", "text": ""}]},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": ""}]},
                {"role": "assistant", "content": "b"}],
            "max_tokens": 5, "max_completion_tokens": 7, "temperature": 0.5, "top_p": 1, "stop": "END",
            "user": "u", "stream": true, "stream_options": {"include_usage": true},
            "n": 1, "logprobs": false, "frequency_penalty": 0, "presence_penalty": 0.0, "store": false,
            "modalities": ["text"], "tools": [], "logit_bias": {}, "metadata": null, "seed": null}));
        let n = decode(&body, true, "X").unwrap();
        assert_eq!(
            n.system,
            vec![
                System {
                    text: "S",
                    cache: None
                },
                System {
                    text: "",
                    cache: None
                }
            ]
        );
        assert_eq!(
            n.messages,
            vec![
                Message {
                    index: 2,
                    role: Role::User,
                    parts: vec![
                        Part::Text {
                            text: "a",
                            cache: None
                        },
                        Part::Text {
                            text: "",
                            cache: None
                        }
                    ]
                },
                Message {
                    index: 3,
                    role: Role::Assistant,
                    parts: vec![Part::Text {
                        text: "b",
                        cache: None
                    }]
                },
            ]
        );
        assert_eq!(n.max_tokens, Some(7), "max_completion_tokens wins");
        assert_eq!(n.temperature, serde_json::Number::from_f64(0.5).as_ref());
        assert_eq!(n.top_p, Some(&1.into()));
        assert_eq!(n.stop, vec!["END"]);
        assert_eq!(n.user, Some("u"));
        assert!(n.stream);
        assert!(n.extra.is_empty(), "defaults change nothing: {:?}", names(&n));
    }

    #[test]
    fn parameters_without_translation_are_carried_by_name() {
        let body = obj(json!({"model": "m", "messages": [
                {"role": "user", "name": "bob", "content": [
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}},
                    {"type": "text", "text": "t", "prompt_cache_breakpoint": {"mode": "explicit"}}]}],
            "seed": 3, "n": 2, "logprobs": true, "top_logprobs": 2, "frequency_penalty": 0.5,
            "presence_penalty": -1, "logit_bias": {"1": 2}, "store": true, "metadata": {"a": "b"},
            "prediction": {"type": "content", "content": "x"}, "verbosity": "low",
            "prompt_cache_key": "k", "service_tier": "flex", "web_search_options": {"search_context_size": "low"}, "x_vendor": 1,
            "tools": [{"type": "function", "function": {"name": "f", "future_knob": 1}, "x_tool": 2}]}));
        let n = decode(&body, false, "X").unwrap();
        let mut got = names(&n);
        got.sort();
        let mut want = vec![
            "seed",
            "n",
            "logprobs",
            "top_logprobs",
            "frequency_penalty",
            "presence_penalty",
            "logit_bias",
            "store",
            "metadata",
            "prediction",
            "verbosity",
            "prompt_cache_key",
            "service_tier",
            "x_vendor",
            "messages[0].name",
            "messages[0].content[0].image_url.detail",
            "messages[0].content[1].prompt_cache_breakpoint",
            "web_search_options",
            "tools[0].x_tool",
            "tools[0].function.future_knob",
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn tools_calls_and_results() {
        let body = obj(json!({"model": "m", "messages": [
                {"role": "user", "content": "weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                       "parameters": {"type": "object"}, "strict": true}, "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false}));
        let n = decode(&body, false, "X").unwrap();
        assert_eq!(n.tools.len(), 1);
        assert_eq!(n.tools[0].name, "get_weather");
        assert_eq!(n.tools[0].description, Some("d"));
        assert_eq!(n.tools[0].schema, Some(&json!({"type": "object"})));
        assert_eq!(n.tools[0].strict, Some(true));
        assert_eq!(n.tools[0].cache, Some(&json!({"type": "ephemeral"})));
        assert_eq!(n.tool_choice, Some(ToolChoice::Named("get_weather")));
        assert_eq!(n.parallel_tool_calls, Some(false));
        assert_eq!(n.messages.len(), 4);
        assert_eq!(
            n.messages[1].parts[1],
            Part::ToolCall {
                id: "call_2",
                name: "get_weather",
                arguments: Arguments::Text("{\"city\":\"Rome\"}"),
                cache: None
            }
        );
        assert_eq!(n.messages[2].role, Role::User);
        assert_eq!(
            n.messages[3].parts,
            vec![Part::ToolResult {
                id: "call_2",
                content: vec![Part::Text {
                    text: "rain",
                    cache: None
                }],
                is_error: false,
                cache: None
            }]
        );
        for (choice, want) in [
            (json!("auto"), ToolChoice::Auto),
            (json!("none"), ToolChoice::None),
            (json!("required"), ToolChoice::Required),
        ] {
            let body = obj(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice}),
            );
            assert_eq!(decode(&body, false, "X").unwrap().tool_choice, Some(want));
        }
    }

    #[test]
    fn images_reasoning_formats_and_cache_markers() {
        let body = obj(json!({"model": "m", "messages": [
                {"role": "system", "content": [{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "cache_control": {"type": "ephemeral", "ttl": "1h"}, "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]},
                {"role": "assistant", "content": "a cat", "reasoning_content": "hmm",
                 "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                     {"type": "redacted_thinking", "data": "xx"}]}],
            "reasoning_effort": "high",
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}},
            "service_tier": "default", "safety_identifier": "sid"}));
        let n = decode(&body, false, "X").unwrap();
        assert!(n.extra.is_empty(), "{:?}", names(&n));
        assert_eq!(n.system[0].cache, Some(&json!({"type": "ephemeral"})));
        let user = &n.messages[0].parts;
        assert_eq!(
            user[1],
            Part::Image {
                image: Image::Base64 {
                    media_type: "image/png",
                    data: "iVBORw0KGgo="
                },
                cache: None
            }
        );
        assert_eq!(
            user[2],
            Part::Image {
                image: Image::Url("https://example.com/cat.jpg"),
                cache: Some(&json!({"type": "ephemeral", "ttl": "1h"}))
            },
            "a message-level marker goes on its last part"
        );
        assert_eq!(
            n.messages[1].parts,
            vec![
                Part::Thinking {
                    text: "hmm",
                    signature: "sig"
                },
                Part::RedactedThinking { data: "xx" },
                Part::Text {
                    text: "a cat",
                    cache: None
                },
            ]
        );
        assert_eq!(n.reasoning, Some(Reasoning::Effort("high")));
        assert_eq!(
            n.format,
            Some(Format::JsonSchema {
                name: Some("answer"),
                description: None,
                schema: &json!({"type": "object"}),
                strict: Some(true)
            })
        );
        assert_eq!(n.priority_tier, Some(false));
        assert_eq!(n.user, Some("sid"));
        let thinking = obj(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "thinking": {"type": "enabled", "budget_tokens": 2000}, "reasoning_effort": "low",
            "response_format": {"type": "json_object"}}),
        );
        let n = decode(&thinking, false, "X").unwrap();
        assert_eq!(n.reasoning, Some(Reasoning::Budget(2000)));
        assert_eq!(n.format, Some(Format::JsonObject));
    }

    #[test]
    fn refusals_name_what_and_where() {
        let cases = [
            (
                json!({"functions": [{"name": "f"}]}),
                "unsupported_feature",
                "`functions` (the legacy form of `tools`) is not supported for X targets",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
                "unsupported_content",
                "messages[0].content[0]: content part type `input_audio` is not supported for X targets",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "invalid_messages",
                "messages[0].tool_call_id must be a string",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
                "invalid_messages",
                "messages[0].content[0].image_url.url must be a data: URL with base64 data or an http(s) URL",
            ),
            (
                json!({"tools": [{"type": "custom", "custom": {"name": "g"}}]}),
                "unsupported_feature",
                "`tools[0]` of type `custom` is not supported for X targets",
            ),
            (
                json!({"tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}),
                "unsupported_feature",
                "`tool_choice` of type `allowed_tools` is not supported for X targets",
            ),
            (
                json!({"n": 0}),
                "invalid_parameter",
                "`n` must be a positive integer",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
                "invalid_parameter",
                "`response_format.json_schema.schema` must be an object",
            ),
            (
                json!({"messages": [{"role": "function", "content": "x", "name": "f"}]}),
                "unsupported_feature",
                "the `function` message role (the legacy form of `tool`) is not supported for X targets",
            ),
        ];
        for (patch, code, message) in cases {
            let mut body = obj(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
            body.extend(obj(patch.clone()));
            let e = decode(&body, false, "X").unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (code, message), "{patch}");
        }
    }
}
