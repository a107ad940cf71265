//! Is this a well-formed request of its API? The checks a policy relies on before it reads the texts
//! (model, messages, roles, content parts, token fields); the provider judges the rest. The first
//! problem is reported with its JSON path (`$.messages[1].content`), so a client can fix its request
//! without guessing.
//!
//! The guard refuses what fails here; other policies read whatever JSON they get through the walker.

use super::path::Api;
use serde_json::{Map, Value};

/// What the checks read on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The request's `model` (empty when a shape of no known API has none).
    pub model: &'a str,
    /// `max_tokens`, or OpenAI's `max_completion_tokens` (the larger).
    pub max_tokens: Option<u64>,
    /// The role of each entry of `messages`.
    pub roles: Vec<&'a str>,
}

/// The first problem: where (`$.messages[0].role`) and what.
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

/// Roles of OpenAI chat messages.
pub const OPENAI_ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];
/// Roles of Anthropic messages (the system prompt is a top-level field).
pub const ANTHROPIC_ROLES: &[&str] = &["user", "assistant"];

fn token_field(body: &Map<String, Value>, key: &str) -> Result<Option<u64>, Invalid> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => invalid(format!("$.{key}"), "must be an integer >= 1"),
        },
    }
}

fn model(obj: &Map<String, Value>, required: bool) -> Result<&str, Invalid> {
    match obj.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => Ok(m),
        Some(Value::String(_)) => invalid("$.model", "must not be empty"),
        Some(_) => invalid("$.model", "must be a string"),
        None if required => invalid("$.model", "is required"),
        None => Ok(""),
    }
}

/// Checks a parsed body against its API's shape. `None` (a configured path of no known API) checks
/// only that the body is an object with a string `model` if it has one.
pub fn validate(api: Option<Api>, body: &Value) -> Result<Checked<'_>, Invalid> {
    let Value::Object(obj) = body else {
        return invalid("$", "request body must be a JSON object");
    };
    let (openai, roles) = match api {
        Some(Api::ChatCompletions) => (true, OPENAI_ROLES),
        Some(Api::Messages) => (false, ANTHROPIC_ROLES),
        Some(Api::Embeddings | Api::Completions) => {
            return Ok(Checked {
                model: model(obj, true)?,
                max_tokens: token_field(obj, "max_tokens")?,
                roles: Vec::new(),
            })
        }
        None => {
            return Ok(Checked {
                model: model(obj, false)?,
                max_tokens: None,
                roles: Vec::new(),
            })
        }
    };
    let model = model(obj, true)?;
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
    let max_tokens = if openai {
        let a = token_field(obj, "max_tokens")?;
        let b = token_field(obj, "max_completion_tokens")?;
        a.max(b)
    } else {
        let m = token_field(obj, "max_tokens")?;
        if m.is_none() {
            return invalid("$.max_tokens", "is required");
        }
        match obj.get("system") {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => anthropic_blocks(blocks, "$.system")?,
            Some(_) => return invalid("$.system", "must be a string or an array of text blocks"),
        }
        m
    };
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let at = format!("$.messages[{i}]");
        let Value::Object(m) = m else {
            return invalid(at, "must be an object");
        };
        let role = match m.get("role") {
            Some(Value::String(r)) if roles.contains(&r.as_str()) => r.as_str(),
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
        match (openai, m.get("content")) {
            (_, Some(Value::String(_))) => {}
            (true, Some(Value::Array(parts))) => openai_parts(parts, &content_at)?,
            (false, Some(Value::Array(blocks))) => anthropic_blocks(blocks, &content_at)?,
            // OpenAI assistant messages may carry only tool calls.
            (true, None | Some(Value::Null)) if role == "assistant" => {}
            (_, None) => return invalid(content_at, "is required"),
            (_, Some(_)) => return invalid(content_at, "must be a string or an array of content parts"),
        }
        if openai && role == "tool" && !m.get("tool_call_id").is_some_and(Value::is_string) {
            return invalid(format!("{at}.tool_call_id"), "is required for role tool");
        }
        out.push(role);
    }
    Ok(Checked {
        model,
        max_tokens,
        roles: out,
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

fn string_field(p: &Map<String, Value>, key: &str, at: &str) -> Result<(), Invalid> {
    match p.get(key) {
        Some(Value::String(_)) => Ok(()),
        Some(_) => invalid(format!("{at}.{key}"), "must be a string"),
        None => invalid(format!("{at}.{key}"), "is required"),
    }
}

fn openai_parts(parts: &[Value], at: &str) -> Result<(), Invalid> {
    for (j, part) in parts.iter().enumerate() {
        let pat = format!("{at}[{j}]");
        let (p, kind) = part_type(part, &pat)?;
        match kind {
            "text" | "input_text" => string_field(p, "text", &pat)?,
            "image_url" => match p.get("image_url") {
                Some(Value::Object(img)) if img.get("url").is_some_and(Value::is_string) => {}
                _ => return invalid(format!("{pat}.image_url.url"), "is required"),
            },
            "refusal" => string_field(p, "refusal", &pat)?,
            _ => {}
        }
    }
    Ok(())
}

fn anthropic_blocks(blocks: &[Value], at: &str) -> Result<(), Invalid> {
    for (j, block) in blocks.iter().enumerate() {
        let bat = format!("{at}[{j}]");
        let (b, kind) = part_type(block, &bat)?;
        match kind {
            "text" => string_field(b, "text", &bat)?,
            "tool_result" => match b.get("content") {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(Value::Array(inner)) => anthropic_blocks(inner, &format!("{bat}.content"))?,
                Some(_) => {
                    return invalid(format!("{bat}.content"), "must be a string or an array of blocks")
                }
            },
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reads_both_shapes() {
        let body = json!({"model": "m", "max_completion_tokens": 9, "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "t", "content": "result"}
        ]});
        let c = validate(Some(Api::ChatCompletions), &body).unwrap();
        assert_eq!((c.model, c.max_tokens), ("m", Some(9)));
        assert_eq!(c.roles, ["system", "user", "assistant", "tool"]);
        let body = json!({"model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "s"}], "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text", "text": "doc"}]}]}
        ]});
        let c = validate(Some(Api::Messages), &body).unwrap();
        assert_eq!((c.max_tokens, c.roles), (Some(5), vec!["user"]));
        let any = json!({"anything": 1});
        let c = validate(None, &any).unwrap();
        assert_eq!(c.model, "");
        assert!(validate(Some(Api::Embeddings), &json!({"input": "x"})).is_err());
    }

    #[test]
    fn names_the_first_problem() {
        use Api::{ChatCompletions as O, Messages as A};
        let cases = [
            (O, json!([1]), "$"),
            (O, json!({"messages": []}), "$.model"),
            (O, json!({"model": 1}), "$.model"),
            (O, json!({"model": "m"}), "$.messages"),
            (O, json!({"model": "m", "messages": []}), "$.messages"),
            (O, json!({"model": "m", "messages": ["x"]}), "$.messages[0]"),
            (
                O,
                json!({"model": "m", "messages": [{"content": "x"}]}),
                "$.messages[0].role",
            ),
            (
                O,
                json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
                "$.messages[0].role",
            ),
            (
                O,
                json!({"model": "m", "messages": [{"role": "user"}]}),
                "$.messages[0].content",
            ),
            (
                O,
                json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
                "$.messages[0].content",
            ),
            (
                O,
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "$.messages[0].content[0].text",
            ),
            (
                O,
                json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "$.messages[0].content[0].type",
            ),
            (
                O,
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "$.messages[0].tool_call_id",
            ),
            (
                O,
                json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
                "$.max_tokens",
            ),
            (
                O,
                json!({"model": "m", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}),
                "$.stream",
            ),
            (
                A,
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
                "$.max_tokens",
            ),
            (
                A,
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
                "$.messages[0].role",
            ),
            (
                A,
                json!({"model": "m", "max_tokens": 1, "system": 3, "messages": [{"role": "user", "content": "x"}]}),
                "$.system",
            ),
        ];
        for (api, body, path) in cases {
            let err = validate(Some(api), &body).unwrap_err();
            assert_eq!(err.path, path, "{body} {err:?}");
        }
    }
}
