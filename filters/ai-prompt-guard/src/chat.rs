//! Chat request shapes: OpenAI Chat Completions and Anthropic Messages, checked and read into one view.
//!
//! Only what the guard relies on is checked (model, messages, roles, content parts, token fields); the
//! provider judges the rest. The first problem is reported with its JSON path (`$.messages[1].content`),
//! so a client can fix its request without guessing.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
}

impl Shape {
    /// The shape a request path speaks, or `None` for paths the guard does not inspect.
    pub fn from_path(path: &str) -> Option<Shape> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Shape::OpenAi)
        } else if path.ends_with("/messages") {
            Some(Shape::Anthropic)
        } else {
            None
        }
    }
}

/// One message's text, wherever it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    /// JSON path of the message (`$.messages[2]`, or `$.system` for Anthropic's system prompt).
    pub path: String,
    /// Text parts joined with newlines (tool results included; images and audio have none).
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    pub model: String,
    /// `max_tokens`, or OpenAI's `max_completion_tokens`.
    pub max_tokens: Option<u64>,
    /// Anthropic's `system` comes first, as role `system`.
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

fn invalid<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        path: path.into(),
        message: message.into(),
    })
}

const OPENAI_ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];
const ANTHROPIC_ROLES: &[&str] = &["user", "assistant"];

fn token_field(body: &Map<String, Value>, key: &str) -> Result<Option<u64>, Invalid> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => invalid(format!("$.{key}"), "must be an integer >= 1"),
        },
    }
}

/// Checks a parsed body against `shape` and reads its messages.
pub fn parse(shape: Shape, body: &Value) -> Result<Chat, Invalid> {
    let Value::Object(obj) = body else {
        return invalid("$", "request body must be a JSON object");
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(Value::String(_)) => return invalid("$.model", "must not be empty"),
        Some(_) => return invalid("$.model", "must be a string"),
        None => return invalid("$.model", "is required"),
    };
    let raw = match obj.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return invalid("$.messages", "must not be empty"),
        Some(_) => return invalid("$.messages", "must be an array"),
        None => return invalid("$.messages", "is required"),
    };
    if let Some(stream) = obj.get("stream") {
        if !stream.is_boolean() && !stream.is_null() {
            return invalid("$.stream", "must be a boolean");
        }
    }
    let mut messages = Vec::with_capacity(raw.len() + 1);
    let max_tokens = match shape {
        Shape::OpenAi => {
            let a = token_field(obj, "max_tokens")?;
            let b = token_field(obj, "max_completion_tokens")?;
            a.max(b)
        }
        Shape::Anthropic => {
            let m = token_field(obj, "max_tokens")?;
            if m.is_none() {
                return invalid("$.max_tokens", "is required");
            }
            if let Some(system) = obj.get("system") {
                let text = match system {
                    Value::String(s) => s.clone(),
                    Value::Array(blocks) => anthropic_blocks(blocks, "$.system")?,
                    _ => return invalid("$.system", "must be a string or an array of text blocks"),
                };
                messages.push(Message {
                    role: "system".into(),
                    path: "$.system".into(),
                    text,
                });
            }
            m
        }
    };
    let roles = match shape {
        Shape::OpenAi => OPENAI_ROLES,
        Shape::Anthropic => ANTHROPIC_ROLES,
    };
    for (i, m) in raw.iter().enumerate() {
        let at = format!("$.messages[{i}]");
        let Value::Object(m) = m else {
            return invalid(at, "must be an object");
        };
        let role = match m.get("role") {
            Some(Value::String(r)) if roles.contains(&r.as_str()) => r.clone(),
            Some(Value::String(r)) => {
                return invalid(
                    format!("{at}.role"),
                    format!("unknown role `{r}`; expected one of: {}", roles.join(", ")),
                )
            }
            Some(_) => return invalid(format!("{at}.role"), "must be a string"),
            None => return invalid(format!("{at}.role"), "is required"),
        };
        let content_at = format!("{at}.content");
        let text = match (shape, m.get("content")) {
            (_, Some(Value::String(s))) => s.clone(),
            (Shape::OpenAi, Some(Value::Array(parts))) => openai_parts(parts, &content_at)?,
            (Shape::Anthropic, Some(Value::Array(blocks))) => anthropic_blocks(blocks, &content_at)?,
            // OpenAI assistant messages may carry only tool calls.
            (Shape::OpenAi, None | Some(Value::Null)) if role == "assistant" => String::new(),
            (_, None) => return invalid(content_at, "is required"),
            (_, Some(_)) => return invalid(content_at, "must be a string or an array of content parts"),
        };
        if shape == Shape::OpenAi && role == "tool" && !m.get("tool_call_id").is_some_and(Value::is_string) {
            return invalid(format!("{at}.tool_call_id"), "is required for role tool");
        }
        messages.push(Message { role, path: at, text });
    }
    Ok(Chat {
        model,
        max_tokens,
        messages,
    })
}

fn part_type<'a>(part: &'a Value, at: &str) -> Result<(&'a Map<String, Value>, &'a str), Invalid> {
    let Value::Object(p) = part else {
        return invalid(at, "must be an object");
    };
    match p.get("type") {
        Some(Value::String(t)) => Ok((p, t.as_str())),
        Some(_) => invalid(format!("{at}.type"), "must be a string"),
        None => invalid(format!("{at}.type"), "is required"),
    }
}

fn text_of(p: &Map<String, Value>, key: &str, at: &str) -> Result<String, Invalid> {
    match p.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => invalid(format!("{at}.{key}"), "must be a string"),
        None => invalid(format!("{at}.{key}"), "is required"),
    }
}

fn openai_parts(parts: &[Value], at: &str) -> Result<String, Invalid> {
    let mut texts = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let pat = format!("{at}[{j}]");
        let (p, kind) = part_type(part, &pat)?;
        match kind {
            "text" | "input_text" => texts.push(text_of(p, "text", &pat)?),
            "image_url" => match p.get("image_url") {
                Some(Value::Object(img)) if img.get("url").is_some_and(Value::is_string) => {}
                _ => return invalid(format!("{pat}.image_url.url"), "is required"),
            },
            "refusal" => texts.push(text_of(p, "refusal", &pat)?),
            _ => {}
        }
    }
    Ok(texts.join("\n"))
}

fn anthropic_blocks(blocks: &[Value], at: &str) -> Result<String, Invalid> {
    let mut texts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bat = format!("{at}[{j}]");
        let (b, kind) = part_type(block, &bat)?;
        match kind {
            "text" => texts.push(text_of(b, "text", &bat)?),
            // A tool's answer is where indirect injections arrive: keep its text.
            "tool_result" => match b.get("content") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => texts.push(s.clone()),
                Some(Value::Array(inner)) => texts.push(anthropic_blocks(inner, &format!("{bat}.content"))?),
                Some(_) => {
                    return invalid(format!("{bat}.content"), "must be a string or an array of blocks")
                }
            },
            "document" => {
                if let Some(Value::Object(src)) = b.get("source") {
                    if let Some(Value::String(data)) = src.get("data") {
                        if src.get("type").and_then(Value::as_str) == Some("text") {
                            texts.push(data.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(texts.join("\n"))
}

/// Removes system messages (OpenAI `system`/`developer` roles, Anthropic `system`); returns whether
/// anything was removed.
pub fn strip_system(shape: Shape, body: &mut Value) -> bool {
    let Value::Object(obj) = body else {
        return false;
    };
    match shape {
        Shape::Anthropic => obj.remove("system").is_some(),
        Shape::OpenAi => match obj.get_mut("messages") {
            Some(Value::Array(messages)) => {
                let before = messages.len();
                messages.retain(|m| {
                    !matches!(
                        m.get("role").and_then(Value::as_str),
                        Some("system" | "developer")
                    )
                });
                messages.len() != before
            }
            _ => false,
        },
    }
}

pub fn is_system(role: &str) -> bool {
    role == "system" || role == "developer"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_shapes() {
        let c = parse(
            Shape::OpenAi,
            &json!({"model": "m", "max_completion_tokens": 9, "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "tool_calls": []},
                {"role": "tool", "tool_call_id": "t", "content": "result"}
            ]}),
        )
        .unwrap();
        assert_eq!(c.max_tokens, Some(9));
        let texts: Vec<(&str, &str)> = c
            .messages
            .iter()
            .map(|m| (m.role.as_str(), m.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                ("system", "sys"),
                ("user", "a\nb"),
                ("assistant", ""),
                ("tool", "result")
            ]
        );
        let c = parse(
            Shape::Anthropic,
            &json!({"model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "s"}], "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text", "text": "doc"}]}, {"type": "text", "text": "q"}]}
            ]}),
        )
        .unwrap();
        assert_eq!(c.messages[0].path, "$.system");
        assert_eq!(c.messages[1].text, "doc\nq");
    }

    #[test]
    fn names_the_first_problem() {
        let cases = [
            (Shape::OpenAi, json!([1]), "$"),
            (Shape::OpenAi, json!({"messages": []}), "$.model"),
            (Shape::OpenAi, json!({"model": 1}), "$.model"),
            (Shape::OpenAi, json!({"model": "m"}), "$.messages"),
            (Shape::OpenAi, json!({"model": "m", "messages": []}), "$.messages"),
            (
                Shape::OpenAi,
                json!({"model": "m", "messages": ["x"]}),
                "$.messages[0]",
            ),
            (
                Shape::OpenAi,
                json!({"model": "m", "messages": [{"content": "x"}]}),
                "$.messages[0].role",
            ),
            (
                Shape::OpenAi,
                json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
                "$.messages[0].role",
            ),
            (
                Shape::OpenAi,
                json!({"model": "m", "messages": [{"role": "user"}]}),
                "$.messages[0].content",
            ),
            (
                Shape::OpenAi,
                json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
                "$.messages[0].content",
            ),
            (
                Shape::OpenAi,
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "$.messages[0].content[0].text",
            ),
            (
                Shape::OpenAi,
                json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "$.messages[0].content[0].type",
            ),
            (
                Shape::OpenAi,
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "$.messages[0].tool_call_id",
            ),
            (
                Shape::OpenAi,
                json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
                "$.max_tokens",
            ),
            (
                Shape::OpenAi,
                json!({"model": "m", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}),
                "$.stream",
            ),
            (
                Shape::Anthropic,
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
                "$.max_tokens",
            ),
            (
                Shape::Anthropic,
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
                "$.messages[0].role",
            ),
            (
                Shape::Anthropic,
                json!({"model": "m", "max_tokens": 1, "system": 3, "messages": [{"role": "user", "content": "x"}]}),
                "$.system",
            ),
        ];
        for (shape, body, path) in cases {
            let err = parse(shape, &body).unwrap_err();
            assert_eq!(err.path, path, "{body} {err:?}");
        }
    }

    #[test]
    fn strips_system_messages_and_picks_shapes() {
        let mut b = json!({"messages": [{"role": "system", "content": "s"}, {"role": "developer", "content": "d"}, {"role": "user", "content": "u"}]});
        assert!(strip_system(Shape::OpenAi, &mut b));
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        let mut b = json!({"system": "s", "messages": []});
        assert!(strip_system(Shape::Anthropic, &mut b));
        assert!(!strip_system(Shape::Anthropic, &mut b));
        assert_eq!(Shape::from_path("/v1/chat/completions?x=1"), Some(Shape::OpenAi));
        assert_eq!(Shape::from_path("/v1/messages"), Some(Shape::Anthropic));
        assert_eq!(Shape::from_path("/v1/models"), None);
    }
}
