//! The OpenAI request shapes the walker reads: Chat Completions (also Azure OpenAI and compatible
//! servers), and the `prompt` / `input` of legacy Completions and Embeddings.
//!
//! Chat Completions, field by field: `messages[].content` (a string, or parts: `text`, `input_text`,
//! `refusal`, any part with a `text`) as [`Kind::Content`], or [`Kind::System`] for `system` and
//! `developer` messages, or [`Kind::ToolResult`] for `tool` and `function` messages;
//! `messages[].name`; `messages[].refusal`; `messages[].tool_calls[].function.{name, arguments}` and
//! `function_call` (arguments are JSON in a string), `tool_calls[].custom.{name, input}`;
//! `tools[].function.{name, description, parameters}`, `tools[].custom.{name, description}` and the
//! deprecated `functions[]`; `response_format.json_schema.{name, description, schema}`;
//! `prediction.content`; `user` and `safety_identifier`.

use super::walk::{At, Kind, Walker};
use serde_json::Value;

fn content_kind(role: Option<&str>) -> Kind {
    match role {
        Some("system" | "developer") => Kind::System,
        Some("tool" | "function") => Kind::ToolResult,
        _ => Kind::Content,
    }
}

/// A content value: a string, or an array of parts.
fn content<'a>(w: &mut Walker<'a>, kind: Kind, at: &At<'a>, v: Option<&'a Value>) {
    match v {
        Some(Value::String(_)) => w.string(kind, at, v),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let pat = at.index(j);
                match part {
                    Value::String(_) => w.string(kind, &pat, Some(part)),
                    Value::Object(_) => {
                        w.field(kind, &pat, part, "text");
                        w.field(kind, &pat, part, "refusal");
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// A called function (`tool_calls[].function`, `function_call`): its name and its JSON arguments.
fn call<'a>(w: &mut Walker<'a>, at: &At<'a>, f: &'a Value) {
    w.field(Kind::ToolCall, at, f, "name");
    w.json_string(Kind::ToolCall, &at.key("arguments"), f.get("arguments"));
}

/// A defined function (`tools[].function`, `functions[]`).
fn function<'a>(w: &mut Walker<'a>, at: &At<'a>, f: &'a Value) {
    w.field(Kind::ToolDefinition, at, f, "name");
    w.field(Kind::ToolDefinition, at, f, "description");
    w.schema(Kind::ToolDefinition, &at.key("parameters"), f.get("parameters"));
}

pub(crate) fn walk_chat<'a>(body: &'a Value, w: &mut Walker<'a>) {
    let root = At::root();
    if let Some(Value::Array(messages)) = body.get("messages") {
        let list = root.key("messages");
        for (i, m) in messages.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str);
            let at = list.message(i, role);
            content(w, content_kind(role), &at.key("content"), m.get("content"));
            w.field(Kind::Name, &at, m, "name");
            w.field(Kind::Content, &at, m, "refusal");
            if let Some(Value::Array(calls)) = m.get("tool_calls") {
                let calls_at = at.key("tool_calls");
                for (k, c) in calls.iter().enumerate() {
                    let c_at = calls_at.index(k);
                    if let Some(f) = c.get("function") {
                        call(w, &c_at.key("function"), f);
                    }
                    if let Some(custom) = c.get("custom") {
                        let cu = c_at.key("custom");
                        w.field(Kind::ToolCall, &cu, custom, "name");
                        w.field(Kind::ToolCall, &cu, custom, "input");
                    }
                }
            }
            if let Some(f) = m.get("function_call") {
                call(w, &at.key("function_call"), f);
            }
        }
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        let list = root.key("tools");
        for (k, t) in tools.iter().enumerate() {
            let at = list.index(k);
            if let Some(f) = t.get("function") {
                function(w, &at.key("function"), f);
            }
            if let Some(c) = t.get("custom") {
                let cu = at.key("custom");
                w.field(Kind::ToolDefinition, &cu, c, "name");
                w.field(Kind::ToolDefinition, &cu, c, "description");
            }
        }
    }
    if let Some(Value::Array(functions)) = body.get("functions") {
        let list = root.key("functions");
        for (k, f) in functions.iter().enumerate() {
            function(w, &list.index(k), f);
        }
    }
    if let Some(js) = body.get("response_format").and_then(|r| r.get("json_schema")) {
        let at = root.key("response_format").key("json_schema");
        w.field(Kind::ResponseFormat, &at, js, "name");
        w.field(Kind::ResponseFormat, &at, js, "description");
        w.schema(Kind::ResponseFormat, &at.key("schema"), js.get("schema"));
    }
    if let Some(p) = body.get("prediction") {
        let at = root.key("prediction").with_role(Some("assistant"));
        content(w, Kind::Content, &at.key("content"), p.get("content"));
    }
    w.field(Kind::User, &root, body, "user");
    w.field(Kind::User, &root, body, "safety_identifier");
}

/// Legacy Completions (`prompt`, `suffix`) and Embeddings (`input`): strings or lists of strings (token
/// arrays have no text), read as user content.
pub(crate) fn walk_legacy<'a>(body: &'a Value, w: &mut Walker<'a>) {
    let root = At::root().with_role(Some("user"));
    for key in ["prompt", "suffix", "input"] {
        let at = root.key(key);
        match body.get(key) {
            Some(v @ Value::String(_)) => w.string(Kind::Content, &at, Some(v)),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    w.string(Kind::Content, &at.index(i), Some(item));
                }
            }
            _ => {}
        }
    }
    w.field(Kind::User, &At::root(), body, "user");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::path::Api;
    use super::super::walk::{texts, Kind};
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// An OpenAI chat request with a text in every field kind.
    pub fn every_kind() -> Value {
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
                {"role": "user", "name": "jane", "content": [
                    {"type": "text", "text": "hello"},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                    {"type": "input_text", "text": "more"}
                ]},
                {"role": "assistant", "content": null, "refusal": "no", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "send_mail",
                     "arguments": "{\"to\":\"a@b.io\",\"cc\":[\"c@d.io\"],\"n\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "sent"},
                {"role": "function", "name": "legacy", "content": [{"type": "text", "text": "fn result"}]},
                {"role": "assistant", "function_call": {"name": "old", "arguments": "{\"q\":\"x\"}"}}
            ],
            "tools": [{"type": "function", "function": {
                "name": "send_mail", "description": "Sends mail.",
                "parameters": {"type": "object", "title": "Mail", "properties": {
                    "to": {"type": "string", "description": "Recipient."},
                    "kind": {"type": "string", "enum": ["plain", "html", 3]},
                    "list": {"type": "array", "items": {"type": "string", "description": "item"}},
                    "alt": {"anyOf": [{"type": "string", "description": "one"}, {"type": "null"}]}
                }, "required": ["to"]}
            }}],
            "functions": [{"name": "old", "description": "Old style."}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "answer", "description": "The answer.",
                "schema": {"type": "object", "properties": {"a": {"type": "string", "description": "field a"}}}
            }},
            "prediction": {"type": "content", "content": "predicted"},
            "user": "user-42",
            "temperature": 0.2,
            "stop": ["not read"]
        })
    }

    #[test]
    fn chat_every_kind_with_its_pointer() {
        use Kind::*;
        let got = super::super::walk::tests::rows(Some(Api::ChatCompletions), &every_kind());
        let r = |k, role: Option<&str>, at: &str, text: &str| {
            (k, role.map(str::to_string), at.to_string(), text.to_string())
        };
        let want = vec![
            r(System, Some("system"), "/messages/0/content", "sys"),
            r(System, Some("developer"), "/messages/1/content/0/text", "dev"),
            r(Content, Some("user"), "/messages/2/content/0/text", "hello"),
            r(Content, Some("user"), "/messages/2/content/2/text", "more"),
            r(Name, Some("user"), "/messages/2/name", "jane"),
            r(Content, Some("assistant"), "/messages/3/refusal", "no"),
            r(
                ToolCall,
                Some("assistant"),
                "/messages/3/tool_calls/0/function/name",
                "send_mail",
            ),
            r(
                ToolCall,
                Some("assistant"),
                "/messages/3/tool_calls/0/function/arguments#/cc/0",
                "c@d.io",
            ),
            r(
                ToolCall,
                Some("assistant"),
                "/messages/3/tool_calls/0/function/arguments#/to",
                "a@b.io",
            ),
            r(ToolResult, Some("tool"), "/messages/4/content", "sent"),
            r(
                ToolResult,
                Some("function"),
                "/messages/5/content/0/text",
                "fn result",
            ),
            r(Name, Some("function"), "/messages/5/name", "legacy"),
            r(
                ToolCall,
                Some("assistant"),
                "/messages/6/function_call/name",
                "old",
            ),
            r(
                ToolCall,
                Some("assistant"),
                "/messages/6/function_call/arguments#/q",
                "x",
            ),
            r(ToolDefinition, None, "/tools/0/function/name", "send_mail"),
            r(
                ToolDefinition,
                None,
                "/tools/0/function/description",
                "Sends mail.",
            ),
            r(
                ToolDefinition,
                None,
                "/tools/0/function/parameters/properties/alt/anyOf/0/description",
                "one",
            ),
            r(
                ToolDefinition,
                None,
                "/tools/0/function/parameters/properties/kind/enum/0",
                "plain",
            ),
            r(
                ToolDefinition,
                None,
                "/tools/0/function/parameters/properties/kind/enum/1",
                "html",
            ),
            r(
                ToolDefinition,
                None,
                "/tools/0/function/parameters/properties/list/items/description",
                "item",
            ),
            r(
                ToolDefinition,
                None,
                "/tools/0/function/parameters/properties/to/description",
                "Recipient.",
            ),
            r(ToolDefinition, None, "/tools/0/function/parameters/title", "Mail"),
            r(ToolDefinition, None, "/functions/0/name", "old"),
            r(ToolDefinition, None, "/functions/0/description", "Old style."),
            r(
                ResponseFormat,
                None,
                "/response_format/json_schema/name",
                "answer",
            ),
            r(
                ResponseFormat,
                None,
                "/response_format/json_schema/description",
                "The answer.",
            ),
            r(
                ResponseFormat,
                None,
                "/response_format/json_schema/schema/properties/a/description",
                "field a",
            ),
            r(Content, Some("assistant"), "/prediction/content", "predicted"),
            r(User, None, "/user", "user-42"),
        ];
        assert_eq!(got, want);
        let message: Vec<Option<usize>> = texts(Some(Api::ChatCompletions), &every_kind())
            .iter()
            .map(|t| t.message)
            .take(3)
            .collect();
        assert_eq!(message, [Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn legacy_prompt_and_input() {
        let body = json!({"prompt": ["a", [1, 2], "b"], "suffix": "s", "input": "i", "user": "u"});
        let got: Vec<String> = texts(Some(Api::Completions), &body)
            .into_iter()
            .map(|t| format!("{}={}", t.pointer, t.text))
            .collect();
        assert_eq!(
            got,
            ["/prompt/0=a", "/prompt/2=b", "/suffix=s", "/input=i", "/user=u"]
        );
    }
}
