//! The Anthropic Messages request shape the walker reads.
//!
//! Field by field: `system` (a string or text blocks) as [`Kind::System`] with role `system`;
//! `messages[].content` (a string or blocks): `text`, `thinking`, `document` (a text `source.data`, a
//! `source.content` of blocks, `title`, `context`) and `search_result` (`title`, `content`) as
//! [`Kind::Content`]; `tool_use` and `server_tool_use` (`name` and every string of `input`) as
//! [`Kind::ToolCall`]; `tool_result` (`content`: a string or blocks, read as above) as
//! [`Kind::ToolResult`]; `tools[].{name, description, input_schema}`; `metadata.user_id`.

use super::walk::{At, Kind, Walker};
use serde_json::Value;

/// A content value: a string or blocks; `kind` is what plain text counts as here (content, or tool
/// result inside a `tool_result`).
fn blocks<'a>(w: &mut Walker<'a>, kind: Kind, at: &At<'a>, v: Option<&'a Value>) {
    let list = match v {
        Some(Value::String(_)) => return w.string(kind, at, v),
        Some(Value::Array(list)) => list,
        _ => return,
    };
    for (j, b) in list.iter().enumerate() {
        let bat = at.index(j);
        match b.get("type").and_then(Value::as_str) {
            Some("tool_use" | "server_tool_use") => {
                w.field(Kind::ToolCall, &bat, b, "name");
                if let Some(input) = b.get("input") {
                    w.strings(Kind::ToolCall, &bat.key("input"), input);
                }
            }
            Some("tool_result") => blocks(w, Kind::ToolResult, &bat.key("content"), b.get("content")),
            Some("document") => {
                let src = bat.key("source");
                if let Some(s) = b.get("source") {
                    if s.get("type").and_then(Value::as_str) == Some("text") {
                        w.field(kind, &src, s, "data");
                    }
                    blocks(w, kind, &src.key("content"), s.get("content"));
                }
                w.field(kind, &bat, b, "title");
                w.field(kind, &bat, b, "context");
            }
            Some("search_result") => {
                w.field(kind, &bat, b, "title");
                blocks(w, kind, &bat.key("content"), b.get("content"));
            }
            Some("thinking") => w.field(kind, &bat, b, "thinking"),
            _ => w.field(kind, &bat, b, "text"),
        }
    }
}

pub(crate) fn walk<'a>(body: &'a Value, w: &mut Walker<'a>) {
    let root = At::root();
    let system = root.key("system").with_role(Some("system"));
    blocks(w, Kind::System, &system, body.get("system"));
    if let Some(Value::Array(messages)) = body.get("messages") {
        let list = root.key("messages");
        for (i, m) in messages.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str);
            let at = list.message(i, role);
            blocks(w, Kind::Content, &at.key("content"), m.get("content"));
        }
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        let list = root.key("tools");
        for (k, t) in tools.iter().enumerate() {
            let at = list.index(k);
            w.field(Kind::ToolDefinition, &at, t, "name");
            w.field(Kind::ToolDefinition, &at, t, "description");
            w.schema(
                Kind::ToolDefinition,
                &at.key("input_schema"),
                t.get("input_schema"),
            );
        }
    }
    if let Some(meta) = body.get("metadata") {
        w.field(Kind::User, &root.key("metadata"), meta, "user_id");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::path::Api;
    use super::super::walk::Kind;
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// An Anthropic request with a text in every field kind.
    pub fn every_kind() -> Value {
        json!({
            "model": "claude-3-5-haiku",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "send_mail", "input": {"to": "a@b.io", "cc": ["c@d.io"], "n": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "sent"}]},
                    {"type": "tool_result", "tool_use_id": "t2", "content": "plain result"},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}, "title": "T", "context": "C"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "text", "text": "q"}
                ]}
            ],
            "tools": [{"name": "send_mail", "description": "Sends mail.", "input_schema": {
                "type": "object", "properties": {"to": {"type": "string", "description": "Recipient."}}}}],
            "metadata": {"user_id": "user-42"},
            "stop_sequences": ["not read"]
        })
    }

    #[test]
    fn messages_every_kind_with_its_pointer() {
        use Kind::*;
        let got = super::super::walk::tests::rows(Some(Api::Messages), &every_kind());
        let r = |k, role: Option<&str>, at: &str, text: &str| {
            (k, role.map(str::to_string), at.to_string(), text.to_string())
        };
        let want = vec![
            r(System, Some("system"), "/system/0/text", "sys"),
            r(Content, Some("user"), "/messages/0/content", "hello"),
            r(
                Content,
                Some("assistant"),
                "/messages/1/content/0/thinking",
                "hmm",
            ),
            r(
                Content,
                Some("assistant"),
                "/messages/1/content/1/text",
                "calling",
            ),
            r(
                ToolCall,
                Some("assistant"),
                "/messages/1/content/2/name",
                "send_mail",
            ),
            r(
                ToolCall,
                Some("assistant"),
                "/messages/1/content/2/input/cc/0",
                "c@d.io",
            ),
            r(
                ToolCall,
                Some("assistant"),
                "/messages/1/content/2/input/to",
                "a@b.io",
            ),
            r(
                ToolResult,
                Some("user"),
                "/messages/2/content/0/content/0/text",
                "sent",
            ),
            r(
                ToolResult,
                Some("user"),
                "/messages/2/content/1/content",
                "plain result",
            ),
            r(Content, Some("user"), "/messages/2/content/2/source/data", "doc"),
            r(Content, Some("user"), "/messages/2/content/2/title", "T"),
            r(Content, Some("user"), "/messages/2/content/2/context", "C"),
            r(Content, Some("user"), "/messages/2/content/4/text", "q"),
            r(ToolDefinition, None, "/tools/0/name", "send_mail"),
            r(ToolDefinition, None, "/tools/0/description", "Sends mail."),
            r(
                ToolDefinition,
                None,
                "/tools/0/input_schema/properties/to/description",
                "Recipient.",
            ),
            r(User, None, "/metadata/user_id", "user-42"),
        ];
        assert_eq!(got, want);
        // A plain string system prompt.
        let got =
            super::super::walk::tests::rows(Some(Api::Messages), &json!({"system": "s", "messages": []}));
        assert_eq!(got, vec![r(System, Some("system"), "/system", "s")]);
    }
}
