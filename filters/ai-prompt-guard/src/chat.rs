//! The guard's view of a request, read through `shared::chat`: the shape checks (`validate`, with the
//! JSON path of the first problem), each message's text for the limits and the allow/deny rules, and
//! every field the model reads (the walker) for the injection detector and the classifier.

use serde_json::Value;
use shared::chat::validate::{validate, Invalid};
use shared::chat::{self, Api, Kind};

/// One message's text, wherever it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    /// JSON path of the message (`$.messages[2]`, or `$.system` for Anthropic's system prompt).
    pub path: String,
    /// Its content, system and tool-result texts joined with newlines (images and audio have none).
    pub text: String,
}

/// One text the model reads, for the detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub kind: Kind,
    /// The role of its message (`None` for request-level fields).
    pub role: Option<String>,
    /// The JSON pointer (and, inside tool-call arguments, `#` and the inner pointer).
    pub location: String,
    /// The JSON pointer of the string in the body.
    pub pointer: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    pub model: String,
    /// `max_tokens`, or OpenAI's `max_completion_tokens`.
    pub max_tokens: Option<u64>,
    /// Anthropic's `system` comes first, as role `system`.
    pub messages: Vec<Message>,
    /// Every model-readable text, in body order.
    pub fields: Vec<Field>,
    /// The shared prompt-token estimate (`shared::chat::estimate`).
    pub prompt_tokens: u64,
}

/// Kinds that make up a message's text for the limits and the rules.
fn message_text(kind: Kind) -> bool {
    matches!(kind, Kind::Content | Kind::System | Kind::ToolResult)
}

/// Checks a parsed body against its API's shape and reads it.
pub fn read(api: Option<Api>, body: &Value) -> Result<Chat, Invalid> {
    let checked = validate(api, body)?;
    let texts = chat::texts(api, body);
    let mut messages = Vec::with_capacity(checked.roles.len() + 1);
    let anthropic_system = matches!(api, Some(Api::Messages) | None)
        && body.get("system").is_some_and(|s| s.is_string() || s.is_array());
    if anthropic_system {
        let text: Vec<&str> = texts
            .iter()
            .filter(|t| t.message.is_none() && t.kind == Kind::System)
            .map(|t| &*t.text)
            .collect();
        messages.push(Message {
            role: "system".into(),
            path: "$.system".into(),
            text: text.join("\n"),
        });
    }
    // Each message's texts in one pass over the walk (in body order), not one pass per message.
    let mut parts: Vec<Vec<&str>> = vec![Vec::new(); checked.roles.len()];
    for t in texts.iter().filter(|t| message_text(t.kind)) {
        if let Some(list) = t.message.and_then(|i| parts.get_mut(i)) {
            list.push(&t.text);
        }
    }
    for (i, (role, text)) in checked.roles.iter().zip(parts).enumerate() {
        messages.push(Message {
            role: role.to_string(),
            path: message_path(i),
            text: text.join("\n"),
        });
    }
    let prompt_tokens = chat::estimate::prompt_tokens(body, &texts);
    let fields = texts
        .into_iter()
        .map(|t| Field {
            kind: t.kind,
            role: t.role.map(str::to_string),
            location: t.location(),
            pointer: t.pointer,
            text: t.text.into_owned(),
        })
        .collect();
    Ok(Chat {
        model: checked.model.to_string(),
        max_tokens: checked.max_tokens,
        messages,
        fields,
        prompt_tokens,
    })
}

/// `$.messages[i]`, the JSON path errors name a message by.
fn message_path(i: usize) -> String {
    let n = i.to_string();
    let mut p = String::with_capacity(12 + n.len());
    p.push_str("$.messages[");
    p.push_str(&n);
    p.push(']');
    p
}

/// Removes system messages (OpenAI `system`/`developer` roles, Anthropic `system`); returns whether
/// anything was removed.
pub fn strip_system(api: Option<Api>, body: &mut Value) -> bool {
    let Value::Object(obj) = body else {
        return false;
    };
    let mut removed = false;
    if matches!(api, Some(Api::Messages) | None) {
        removed |= obj.remove("system").is_some();
    }
    if matches!(api, Some(Api::ChatCompletions) | None) {
        if let Some(Value::Array(messages)) = obj.get_mut("messages") {
            let before = messages.len();
            messages.retain(|m| {
                !matches!(
                    m.get("role").and_then(Value::as_str),
                    Some("system" | "developer")
                )
            });
            removed |= messages.len() != before;
        }
    }
    removed
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
        let c = read(
            Some(Api::ChatCompletions),
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
        let c = read(
            Some(Api::Messages),
            &json!({"model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "s"}], "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text", "text": "doc"}]}, {"type": "text", "text": "q"}]}
            ]}),
        )
        .unwrap();
        assert_eq!(c.messages[0].path, "$.system");
        assert_eq!(c.messages[1].text, "doc\nq");
        assert_eq!(c.fields[1].location, "/messages/0/content/0/content/0/text");
        assert_eq!(c.fields[1].kind, Kind::ToolResult);
    }

    #[test]
    fn strips_system_messages() {
        let mut b = json!({"messages": [{"role": "system", "content": "s"}, {"role": "developer", "content": "d"}, {"role": "user", "content": "u"}]});
        assert!(strip_system(Some(Api::ChatCompletions), &mut b));
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        let mut b = json!({"system": "s", "messages": []});
        assert!(strip_system(Some(Api::Messages), &mut b));
        assert!(!strip_system(Some(Api::Messages), &mut b));
    }
}
