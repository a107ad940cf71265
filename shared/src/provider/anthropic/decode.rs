//! An Anthropic Messages request (the Anthropic door) read into [`neutral::Request`], for a target that
//! speaks another dialect.
//!
//! Every top-level field is accounted for: translated (`system`, `messages` with text, image, tool use
//! and tool result blocks, `max_tokens`, `stop_sequences`, `temperature`, `top_p`, `top_k`, `stream`,
//! `metadata.user_id`, custom `tools`, `tool_choice` with `disable_parallel_tool_use`, `thinking`,
//! `output_config.effort` and `.format`, `service_tier`, `cache_control` markers), refused because
//! dropping it would change what the model reads (server tools, documents, search results and other
//! blocks with no equivalent, file images), or carried by name in [`neutral::Request::extra`] for the
//! target's renderer to refuse or drop (`container`, `mcp_servers`, `context_management`, `thinking.
//! display`, …, and any field this gateway does not know).

use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::error::ApiError;
use crate::provider::neutral::{
    self, invalid_messages, invalid_parameter, unsupported_content, Arguments, Format, Image, Message, Part,
    Reasoning, Role, System, Tool, ToolChoice,
};

type Extra<'a> = Vec<(Cow<'a, str>, &'a Value)>;

fn unsupported_feature(what: &str, label: &str) -> ApiError {
    ApiError::invalid_request(
        "unsupported_feature",
        format!("{what} is not supported for {label} targets"),
    )
}

/// Top-level fields read by this decoder (or the gateway: `model`, `stream`).
const TRANSLATED: [&str; 16] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "service_tier",
    "cache_control",
];

fn marker(block: &Value) -> Option<&Value> {
    block.get("cache_control").filter(|c| !c.is_null())
}

fn block_type(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

/// Block fields read here (`type` and `cache_control` on every block); others are carried by name.
fn note_other_fields<'a>(block: &'a Value, known: &[&str], at: &str, extra: &mut Extra<'a>) {
    for (key, value) in block.as_object().into_iter().flatten() {
        if key != "type" && key != "cache_control" && !known.contains(&key.as_str()) && !value.is_null() {
            extra.push((Cow::Owned(format!("{at}.{key}")), value));
        }
    }
}

fn image<'a>(block: &'a Value, at: &str, label: &str) -> Result<Image<'a>, ApiError> {
    let source = block
        .get("source")
        .ok_or_else(|| invalid_messages(format!("{at}.source is required")))?;
    let field = |k: &str| source.get(k).and_then(Value::as_str);
    match field("type") {
        Some("base64") => Ok(Image::Base64 {
            media_type: field("media_type")
                .ok_or_else(|| invalid_messages(format!("{at}.source.media_type is required")))?,
            data: field("data").ok_or_else(|| invalid_messages(format!("{at}.source.data is required")))?,
        }),
        Some("url") => {
            Ok(Image::Url(field("url").ok_or_else(|| {
                invalid_messages(format!("{at}.source.url is required"))
            })?))
        }
        Some(other) => Err(unsupported_content(
            &format!("{at}: an image with a `{other}` source"),
            label,
        )),
        None => Err(invalid_messages(format!("{at}.source.type is required"))),
    }
}

/// Text blocks (a string, or blocks of `text` and, where `images`, `image`).
fn simple_blocks<'a>(
    content: Option<&'a Value>,
    at: &str,
    images: bool,
    label: &str,
    extra: &mut Extra<'a>,
) -> Result<Vec<Part<'a>>, ApiError> {
    let blocks = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![Part::Text { text: s, cache: None }]),
        Some(Value::Array(b)) => b,
        Some(_) => {
            return Err(invalid_messages(format!(
                "{at} must be a string or an array of blocks"
            )))
        }
    };
    let mut out = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        let here = format!("{at}[{j}]");
        match block_type(b) {
            Some("text") => {
                note_other_fields(b, &["text"], &here, extra);
                out.push(Part::Text {
                    text: b
                        .get("text")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid_messages(format!("{here}.text must be a string")))?,
                    cache: marker(b),
                });
            }
            Some("image") if images => {
                note_other_fields(b, &["source"], &here, extra);
                out.push(Part::Image {
                    image: image(b, &here, label)?,
                    cache: marker(b),
                });
            }
            Some(other) => return Err(unsupported_content(&format!("{here}: a `{other}` block"), label)),
            None => return Err(invalid_messages(format!("{here}.type is required"))),
        }
    }
    Ok(out)
}

fn message_blocks<'a>(
    m: &'a Value,
    at: &str,
    role: Role,
    label: &str,
    extra: &mut Extra<'a>,
) -> Result<Vec<Part<'a>>, ApiError> {
    let blocks = match m.get("content") {
        Some(Value::String(s)) => return Ok(vec![Part::Text { text: s, cache: None }]),
        Some(Value::Array(b)) => b,
        _ => {
            return Err(invalid_messages(format!(
                "{at}.content must be a string or an array of content blocks"
            )))
        }
    };
    let mut out = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        let string = |k: &str| {
            b.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| invalid_messages(format!("{here}.{k} must be a string")))
        };
        let part = match (block_type(b), role) {
            (Some("text"), _) => {
                note_other_fields(b, &["text"], &here, extra);
                Part::Text {
                    text: string("text")?,
                    cache: marker(b),
                }
            }
            (Some("image"), Role::User) => {
                note_other_fields(b, &["source"], &here, extra);
                Part::Image {
                    image: image(b, &here, label)?,
                    cache: marker(b),
                }
            }
            (Some("tool_use"), Role::Assistant) => {
                note_other_fields(b, &["id", "name", "input"], &here, extra);
                Part::ToolCall {
                    id: string("id")?,
                    name: string("name")?,
                    arguments: Arguments::Json(
                        b.get("input")
                            .filter(|i| i.is_object())
                            .ok_or_else(|| invalid_messages(format!("{here}.input must be an object")))?,
                    ),
                    cache: marker(b),
                }
            }
            (Some("tool_result"), Role::User) => {
                note_other_fields(b, &["tool_use_id", "content", "is_error"], &here, extra);
                Part::ToolResult {
                    id: string("tool_use_id")?,
                    content: simple_blocks(b.get("content"), &format!("{here}.content"), true, label, extra)?,
                    is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                    cache: marker(b),
                }
            }
            (Some("thinking"), Role::Assistant) => Part::Thinking {
                text: string("thinking")?,
                signature: b.get("signature").and_then(Value::as_str).unwrap_or_default(),
            },
            (Some("redacted_thinking"), Role::Assistant) => Part::RedactedThinking {
                data: string("data")?,
            },
            (Some(other), _) => {
                let turn = match role {
                    Role::User => "a user",
                    Role::Assistant => "an assistant",
                };
                return Err(unsupported_content(
                    &format!("{here}: a `{other}` block in {turn} turn"),
                    label,
                ));
            }
            (None, _) => return Err(invalid_messages(format!("{here}.type is required"))),
        };
        out.push(part);
    }
    Ok(out)
}

fn messages<'a>(
    body: &'a Map<String, Value>,
    label: &str,
    extra: &mut Extra<'a>,
) -> Result<Vec<Message<'a>>, ApiError> {
    let list = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_messages("`messages` must be an array".into()))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some(other) => {
                return Err(invalid_messages(format!(
                    "{at}.role `{other}` is not supported (use `user` or `assistant`)"
                )))
            }
            None => return Err(invalid_messages(format!("{at}.role must be a string"))),
        };
        note_other_fields(m, &["role", "content"], &at, extra);
        out.push(Message {
            index: i,
            role,
            parts: message_blocks(m, &at, role, label, extra)?,
        });
    }
    Ok(out)
}

fn tools<'a>(
    body: &'a Map<String, Value>,
    label: &str,
    extra: &mut Extra<'a>,
) -> Result<Vec<Tool<'a>>, ApiError> {
    let Some(list) = body.get("tools").filter(|t| !t.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid_parameter("tools", "an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        match block_type(t) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(unsupported_feature(
                    &format!("`tools[{i}]`, a server tool of type `{other}`"),
                    label,
                ))
            }
        }
        note_other_fields(
            t,
            &["name", "description", "input_schema", "strict"],
            &format!("tools[{i}]"),
            extra,
        );
        out.push(Tool {
            name: t
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid_parameter(&format!("tools[{i}].name"), "a string"))?,
            description: t.get("description").and_then(Value::as_str),
            schema: t.get("input_schema").filter(|s| !s.is_null()),
            strict: t.get("strict").and_then(Value::as_bool),
            cache: marker(t),
        });
    }
    Ok(out)
}

/// `tool_choice` and whether parallel tool use stays allowed.
fn tool_choice(body: &Map<String, Value>) -> Result<(Option<ToolChoice<'_>>, Option<bool>), ApiError> {
    let Some(c) = body.get("tool_choice").filter(|c| !c.is_null()) else {
        return Ok((None, None));
    };
    let parallel = match c.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(disable)) => Some(!disable),
        Some(_) => {
            return Err(invalid_parameter(
                "tool_choice.disable_parallel_tool_use",
                "a boolean",
            ))
        }
    };
    let choice = match block_type(c) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Required,
        Some("none") => ToolChoice::None,
        Some("tool") => ToolChoice::Named(
            c.get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid_parameter("tool_choice.name", "a string"))?,
        ),
        _ => {
            return Err(invalid_parameter(
                "tool_choice.type",
                "`auto`, `any`, `tool` or `none`",
            ))
        }
    };
    Ok((Some(choice), parallel))
}

fn thinking<'a>(
    body: &'a Map<String, Value>,
    extra: &mut Extra<'a>,
) -> Result<Option<Reasoning<'a>>, ApiError> {
    let effort = body
        .get("output_config")
        .and_then(|o| o.get("effort"))
        .and_then(Value::as_str);
    let Some(t) = body.get("thinking").filter(|t| !t.is_null()) else {
        return Ok(effort.map(Reasoning::Effort));
    };
    if let Some(display) = t.get("display").filter(|d| !d.is_null()) {
        extra.push((Cow::Borrowed("thinking.display"), display));
    }
    match block_type(t) {
        Some("enabled") => {
            let budget = t
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid_parameter("thinking.budget_tokens", "a positive integer"))?;
            // An explicit effort says more than the budget it came with.
            Ok(Some(effort.map_or(Reasoning::Budget(budget), Reasoning::Effort)))
        }
        Some("adaptive") => Ok(Some(effort.map_or(Reasoning::Adaptive, Reasoning::Effort))),
        Some("disabled") => Ok(Some(Reasoning::Off)),
        _ => Err(invalid_parameter(
            "thinking.type",
            "`enabled`, `adaptive` or `disabled`",
        )),
    }
}

fn output_format<'a>(
    body: &'a Map<String, Value>,
    extra: &mut Extra<'a>,
) -> Result<Option<Format<'a>>, ApiError> {
    let Some(config) = body.get("output_config").filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    note_other_fields(config, &["effort", "format"], "output_config", extra);
    let Some(f) = config.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match block_type(f) {
        Some("json_schema") => Ok(Some(Format::JsonSchema {
            name: None,
            description: None,
            schema: f
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| invalid_parameter("output_config.format.schema", "an object"))?,
            strict: None,
        })),
        _ => Err(invalid_parameter("output_config.format.type", "`json_schema`")),
    }
}

/// The client's request as [`neutral`], for a target named `label` in errors.
pub fn decode<'a>(
    body: &'a Map<String, Value>,
    stream: bool,
    label: &str,
) -> Result<neutral::Request<'a>, ApiError> {
    let mut extra: Extra<'a> = Vec::new();
    for (key, value) in body {
        if !TRANSLATED.contains(&key.as_str()) && !value.is_null() {
            extra.push((Cow::Borrowed(key.as_str()), value));
        }
    }
    let system = match body.get("system") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![System { text: s, cache: None }],
        Some(v @ Value::Array(_)) => simple_blocks(Some(v), "system", false, label, &mut extra)?
            .into_iter()
            .filter_map(|p| match p {
                Part::Text { text, cache } => Some(System { text, cache }),
                _ => None,
            })
            .collect(),
        Some(_) => return Err(invalid_parameter("system", "a string or an array of text blocks")),
    };
    let messages = messages(body, label, &mut extra)?;
    let max_tokens = match body.get("max_tokens") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|&n| n > 0)
                .ok_or_else(|| invalid_parameter("max_tokens", "a positive integer"))?,
        ),
    };
    let stop = match body.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid_parameter("stop_sequences", "an array of strings"))?,
        Some(_) => return Err(invalid_parameter("stop_sequences", "an array of strings")),
    };
    let number = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n)),
        Some(_) => Err(invalid_parameter(name, "a number")),
    };
    let user = match body.get("metadata").filter(|m| !m.is_null()) {
        None => None,
        Some(m) => {
            note_other_fields(m, &["user_id"], "metadata", &mut extra);
            m.get("user_id").and_then(Value::as_str)
        }
    };
    let priority_tier = match body.get("service_tier").and_then(Value::as_str) {
        None => None,
        Some("auto") => Some(true),
        Some("standard_only") => Some(false),
        Some(_) => return Err(invalid_parameter("service_tier", "`auto` or `standard_only`")),
    };
    let (tool_choice, parallel_tool_calls) = tool_choice(body)?;
    Ok(neutral::Request {
        system,
        messages,
        max_tokens,
        temperature: number("temperature")?,
        top_p: number("top_p")?,
        top_k: number("top_k")?,
        stop,
        stream,
        user,
        tools: tools(body, label, &mut extra)?,
        tool_choice,
        parallel_tool_calls,
        reasoning: thinking(body, &mut extra)?,
        format: output_format(body, &mut extra)?,
        priority_tier,
        cache: marker_of(body),
        extra,
    })
}

fn marker_of(body: &Map<String, Value>) -> Option<&Value> {
    body.get("cache_control").filter(|c| !c.is_null())
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

    fn text(t: &str) -> Part<'_> {
        Part::Text { text: t, cache: None }
    }

    #[test]
    fn a_tool_conversation_with_images_and_thinking() {
        let body = obj(json!({
            "model": "claude", "max_tokens": 1024, "stream": true,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/x.jpg"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xx"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny", "is_error": false,
                     "cache_control": {"type": "ephemeral"}},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "rain"}]}]}],
            "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "stop_sequences": ["END"], "temperature": 0.2, "top_k": 5,
            "metadata": {"user_id": "u-1"}, "service_tier": "standard_only",
            "cache_control": {"type": "ephemeral"}
        }));
        let n = decode(&body, true, "OpenAI").unwrap();
        assert!(n.extra.is_empty(), "{:?}", n.extra);
        assert_eq!(n.system[0].text, "Be brief.");
        assert!(n.system[0].cache.is_some());
        assert_eq!(n.max_tokens, Some(1024));
        assert_eq!(n.stop, vec!["END"]);
        assert_eq!(n.top_k, Some(&5.into()));
        assert_eq!(n.user, Some("u-1"));
        assert_eq!(n.priority_tier, Some(false));
        assert!(n.cache.is_some());
        assert_eq!(n.tool_choice, Some(ToolChoice::Required));
        assert_eq!(n.parallel_tool_calls, Some(false));
        assert_eq!(n.reasoning, Some(Reasoning::Budget(2048)));
        assert_eq!(n.tools[0].schema, Some(&json!({"type": "object"})));
        assert_eq!(
            n.messages[0].parts[1..],
            [
                Part::Image {
                    image: Image::Base64 {
                        media_type: "image/png",
                        data: "AAAA"
                    },
                    cache: None
                },
                Part::Image {
                    image: Image::Url("https://example.com/x.jpg"),
                    cache: None
                }
            ]
        );
        let input = json!({"city": "Paris"});
        assert_eq!(
            n.messages[1].parts,
            vec![
                Part::Thinking {
                    text: "hmm",
                    signature: "sig"
                },
                Part::RedactedThinking { data: "xx" },
                text("Checking."),
                Part::ToolCall {
                    id: "toolu_1",
                    name: "get_weather",
                    arguments: Arguments::Json(&input),
                    cache: None
                }
            ]
        );
        assert_eq!(
            n.messages[2].parts[1],
            Part::ToolResult {
                id: "toolu_2",
                content: vec![text("rain")],
                is_error: false,
                cache: None
            }
        );
    }

    #[test]
    fn output_config_and_what_has_no_translation() {
        let body = obj(json!({
            "model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
            "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
            "thinking": {"type": "adaptive", "display": "omitted"},
            "container": "c-1", "mcp_servers": [], "context_management": {"edits": []},
            "metadata": {"user_id": "u", "other": 1},
            "tools": [{"name": "t", "input_schema": {"type": "object"}, "input_examples": [{}]}]
        }));
        let n = decode(&body, false, "OpenAI").unwrap();
        assert_eq!(n.reasoning, Some(Reasoning::Effort("high")));
        let with_transform = obj(
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}, "transformations": {"a": "b"}}]}]}),
        );
        let t = decode(&with_transform, false, "OpenAI").unwrap();
        assert_eq!(t.extra[0].0, "messages[0].content[0].transformations");
        assert_eq!(
            n.format,
            Some(Format::JsonSchema {
                name: None,
                description: None,
                schema: &json!({"type": "object"}),
                strict: None
            })
        );
        let mut names: Vec<String> = n.extra.iter().map(|(k, _)| k.to_string()).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "container",
                "context_management",
                "mcp_servers",
                "metadata.other",
                "thinking.display",
                "tools[0].input_examples"
            ]
        );
    }

    #[test]
    fn refusals_name_what_and_where() {
        let cases = [
            (
                json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
                "unsupported_content",
                "messages[0].content[0]: a `document` block in a user turn is not supported for OpenAI targets",
            ),
            (
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "unsupported_feature",
                "`tools[0]`, a server tool of type `web_search_20250305` is not supported for OpenAI targets",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
                "unsupported_content",
                "messages[0].content[0]: an image with a `file` source is not supported for OpenAI targets",
            ),
            (
                json!({"messages": [{"role": "system", "content": "x"}]}),
                "invalid_messages",
                "messages[0].role `system` is not supported (use `user` or `assistant`)",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]}),
                "unsupported_content",
                "messages[0].content[0]: a `tool_result` block in an assistant turn is not supported for OpenAI targets",
            ),
            (json!({"max_tokens": 0}), "invalid_parameter", "`max_tokens` must be a positive integer"),
            (
                json!({"tool_choice": {"type": "sometimes"}}),
                "invalid_parameter",
                "`tool_choice.type` must be `auto`, `any`, `tool` or `none`",
            ),
        ];
        for (patch, code, message) in cases {
            let mut body =
                obj(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}));
            body.extend(obj(patch.clone()));
            let e = decode(&body, false, "OpenAI").unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (code, message), "{patch}");
        }
    }
}
