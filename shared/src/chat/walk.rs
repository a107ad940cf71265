//! The one walker: every text of a request that the model reads, with where it is (a JSON pointer),
//! who said it (the role of its message) and what it is (a [`Kind`]).
//!
//! Each request shape has its rules in its own module ([`super::openai`], [`super::anthropic`]); a new
//! shape (Gemini `contents`, Bedrock Converse) is one more module and one arm in [`texts`]. Every policy
//! reads a request through this walker — the guard scores these texts, PII redaction rewrites them, the
//! token estimate counts them — so no field is seen by one policy and missed by another.
//!
//! JSON inside a string (tool-call `arguments`) is walked too: each string value inside it is a text of
//! its own, located by the pointer of the string and an [`inner`](Text::inner) pointer into the
//! embedded document; [`super::edit`] writes such texts back as valid JSON. A string that is not a JSON
//! object, array or string is one text as a whole.

use super::path::Api;
use serde_json::Value;
use std::borrow::Cow;

/// What a text is. Policies weigh and switch kinds (`<filter>.fields` options); the names are the
/// config names and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A message's content: a string, text parts and blocks, documents, refusals, a legacy `prompt`, an
    /// embeddings `input`.
    Content,
    /// System and developer prompts (OpenAI `system`/`developer` messages, Anthropic `system`).
    System,
    /// A message's `name`.
    Name,
    /// Tool definitions: names, descriptions, and every description, title, enum and example of the
    /// parameter schema. Often third-party text (MCP servers, plugin catalogues).
    ToolDefinition,
    /// Tool calls in the history: the called tool's name and the arguments' string values (OpenAI
    /// `tool_calls[].function`, Anthropic `tool_use`).
    ToolCall,
    /// Tool results (OpenAI `tool`/`function` messages, Anthropic `tool_result` blocks): where indirect
    /// injections arrive.
    ToolResult,
    /// The structured-output schema (`response_format.json_schema`): name, description and schema texts.
    ResponseFormat,
    /// The end-user identifier (OpenAI `user`, Anthropic `metadata.user_id`).
    User,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Content,
        Kind::System,
        Kind::Name,
        Kind::ToolDefinition,
        Kind::ToolCall,
        Kind::ToolResult,
        Kind::ResponseFormat,
        Kind::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Content => "content",
            Kind::System => "system",
            Kind::Name => "name",
            Kind::ToolDefinition => "tool_definition",
            Kind::ToolCall => "tool_call",
            Kind::ToolResult => "tool_result",
            Kind::ResponseFormat => "response_format",
            Kind::User => "user",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether a policy's `roles` option filters this kind. Message text (content, names, system
    /// prompts, tool results) belongs to the role of its message; tool calls (always the assistant's),
    /// tool definitions, the response format and the user id do not, and are switched by kind only.
    pub fn follows_role(self) -> bool {
        matches!(self, Kind::Content | Kind::System | Kind::Name | Kind::ToolResult)
    }
}

/// One text the model reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a> {
    pub kind: Kind,
    /// The role of the message it belongs to (Anthropic's top-level `system` is role `system`); `None`
    /// for request-level fields (tools, `response_format`, `user`).
    pub role: Option<&'a str>,
    /// Index in `messages`, for texts of a message.
    pub message: Option<usize>,
    /// RFC 6901 pointer to the string in the body (`/messages/2/content/0/text`).
    pub pointer: String,
    /// For JSON inside that string (tool-call arguments): the pointer of this text in the embedded
    /// document (`/recipient/email`; `""` when the document is itself a string).
    pub inner: Option<String>,
    pub text: Cow<'a, str>,
}

impl Text<'_> {
    /// Where the text is, for errors and logs: the pointer, and the inner pointer after `#`
    /// (`/messages/1/tool_calls/0/function/arguments#/email`).
    pub fn location(&self) -> String {
        match &self.inner {
            Some(inner) => format!("{}#{inner}", self.pointer),
            None => self.pointer.clone(),
        }
    }
}

/// Every model-readable text of a request, in body order. `api` is the request's API (from
/// [`super::path::Routes::classify`]); `None` (a configured path of no known API) walks every known
/// chat shape and keeps each location once.
pub fn texts(api: Option<Api>, body: &Value) -> Vec<Text<'_>> {
    let mut out = Walker { out: Vec::new() };
    match api {
        Some(Api::ChatCompletions) => super::openai::walk_chat(body, &mut out),
        Some(Api::Messages) => super::anthropic::walk(body, &mut out),
        Some(Api::Completions | Api::Embeddings) => super::openai::walk_legacy(body, &mut out),
        None => {
            super::openai::walk_chat(body, &mut out);
            super::anthropic::walk(body, &mut out);
            super::openai::walk_legacy(body, &mut out);
            let mut seen = std::collections::HashSet::new();
            out.out
                .retain(|t| seen.insert((t.pointer.clone(), t.inner.clone())));
        }
    }
    out.out
}

/// Escapes one reference token of a JSON pointer (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// Where a shape module is in the body: the pointer so far, the message and its role.
#[derive(Debug, Clone)]
pub(crate) struct At<'a> {
    pub pointer: String,
    pub message: Option<usize>,
    pub role: Option<&'a str>,
}

impl<'a> At<'a> {
    pub fn root() -> At<'a> {
        At {
            pointer: String::new(),
            message: None,
            role: None,
        }
    }

    pub fn key(&self, key: &str) -> At<'a> {
        let token = escape_token(key);
        let mut pointer = String::with_capacity(self.pointer.len() + 1 + token.len());
        pointer.push_str(&self.pointer);
        pointer.push('/');
        pointer.push_str(&token);
        At {
            pointer,
            message: self.message,
            role: self.role,
        }
    }

    pub fn index(&self, i: usize) -> At<'a> {
        At {
            pointer: child_index(&self.pointer, i),
            message: self.message,
            role: self.role,
        }
    }

    pub fn message(&self, i: usize, role: Option<&'a str>) -> At<'a> {
        At {
            pointer: child_index(&self.pointer, i),
            message: Some(i),
            role,
        }
    }

    pub fn with_role(&self, role: Option<&'a str>) -> At<'a> {
        At { role, ..self.clone() }
    }
}

/// `pointer` followed by `/` and the decimal index (what `format!("{pointer}/{i}")` gives, without the
/// formatting machinery: the walker builds one per message and part).
fn child_index(pointer: &str, i: usize) -> String {
    let mut digits = [0u8; 20];
    let mut n = i;
    let mut k = digits.len();
    loop {
        k -= 1;
        if let Some(d) = digits.get_mut(k) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || k == 0 {
            break;
        }
    }
    let digits = std::str::from_utf8(digits.get(k..).unwrap_or_default()).unwrap_or_default();
    let mut out = String::with_capacity(pointer.len() + 1 + digits.len());
    out.push_str(pointer);
    out.push('/');
    out.push_str(digits);
    out
}

/// Collects the texts the shape modules find.
pub(crate) struct Walker<'a> {
    out: Vec<Text<'a>>,
}

/// JSON Schema keywords holding one subschema, a list of them, or a map of them.
const SUB_ONE: &[&str] = &[
    "items",
    "additionalProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
];
const SUB_LIST: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems", "items"];
const SUB_MAP: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];
/// Schema keywords whose strings the model reads.
const SCHEMA_TEXT: &[&str] = &["description", "title", "$comment"];
const SCHEMA_VALUES: &[&str] = &["enum", "examples", "const", "default"];

impl<'a> Walker<'a> {
    /// A string at `at`, if `v` is one (empty strings are skipped).
    pub fn string(&mut self, kind: Kind, at: &At<'a>, v: Option<&'a Value>) {
        if let Some(Value::String(s)) = v {
            if !s.is_empty() {
                self.out.push(Text {
                    kind,
                    role: at.role,
                    message: at.message,
                    pointer: at.pointer.clone(),
                    inner: None,
                    text: Cow::Borrowed(s),
                });
            }
        }
    }

    /// The string field `key` of `obj`.
    pub fn field(&mut self, kind: Kind, at: &At<'a>, obj: &'a Value, key: &str) {
        // The pointer is built only for a text that is there.
        if let Some(v @ Value::String(s)) = obj.get(key) {
            if !s.is_empty() {
                self.string(kind, &at.key(key), Some(v));
            }
        }
    }

    /// Every string value inside `v`, at any depth (not object keys): a tool call's input.
    pub fn strings(&mut self, kind: Kind, at: &At<'a>, v: &'a Value) {
        match v {
            Value::String(_) => self.string(kind, at, Some(v)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.strings(kind, &at.index(i), item);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.strings(kind, &at.key(k), item);
                }
            }
            _ => {}
        }
    }

    /// A string holding JSON (tool-call arguments): the string values of the embedded document, each
    /// with its inner pointer; the whole string when it is not a JSON object, array or string.
    pub fn json_string(&mut self, kind: Kind, at: &At<'a>, v: Option<&'a Value>) {
        let Some(Value::String(s)) = v else {
            return;
        };
        let doc = match serde_json::from_str::<Value>(s) {
            Ok(doc @ (Value::Object(_) | Value::Array(_) | Value::String(_))) => doc,
            _ => return self.string(kind, at, v),
        };
        let mut inner = Vec::new();
        collect_strings(&doc, String::new(), &mut inner);
        for (pointer, text) in inner {
            self.out.push(Text {
                kind,
                role: at.role,
                message: at.message,
                pointer: at.pointer.clone(),
                inner: Some(pointer),
                text: Cow::Owned(text),
            });
        }
    }

    /// The texts of a JSON Schema (tool parameters, structured output): descriptions, titles, and the
    /// string values of enums, examples, constants and defaults, through every subschema.
    pub fn schema(&mut self, kind: Kind, at: &At<'a>, v: Option<&'a Value>) {
        let Some(Value::Object(map)) = v else {
            return;
        };
        for (key, value) in map {
            let k = key.as_str();
            let here = at.key(k);
            if SCHEMA_TEXT.contains(&k) {
                self.string(kind, &here, Some(value));
            } else if SCHEMA_VALUES.contains(&k) {
                self.strings(kind, &here, value);
            } else if SUB_MAP.contains(&k) {
                if let Value::Object(subs) = value {
                    for (name, sub) in subs {
                        self.schema(kind, &here.key(name), Some(sub));
                    }
                }
            } else if SUB_LIST.contains(&k) && value.is_array() {
                if let Value::Array(subs) = value {
                    for (i, sub) in subs.iter().enumerate() {
                        self.schema(kind, &here.index(i), Some(sub));
                    }
                }
            } else if SUB_ONE.contains(&k) {
                self.schema(kind, &here, Some(value));
            }
        }
    }
}

fn collect_strings(v: &Value, at: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) if !s.is_empty() => out.push((at, s.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_strings(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                collect_strings(item, format!("{at}/{}", escape_token(k)), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    pub(crate) fn rows(api: Option<Api>, body: &Value) -> Vec<(Kind, Option<String>, String, String)> {
        texts(api, body)
            .into_iter()
            .map(|t| {
                (
                    t.kind,
                    t.role.map(str::to_string),
                    t.location(),
                    t.text.into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn index_pointers_are_decimal() {
        for i in [0, 7, 9, 10, 99, 100, 12345, usize::MAX] {
            assert_eq!(child_index("/messages", i), format!("/messages/{i}"));
        }
        assert_eq!(child_index("", 3), "/3");
    }

    #[test]
    fn every_text_is_where_its_pointer_says() {
        for (api, body) in [
            (
                Some(Api::ChatCompletions),
                super::super::openai::tests::every_kind(),
            ),
            (Some(Api::Messages), super::super::anthropic::tests::every_kind()),
        ] {
            for t in texts(api, &body) {
                let at = body.pointer(&t.pointer).and_then(Value::as_str).unwrap();
                match &t.inner {
                    None => assert_eq!(at, t.text, "{}", t.pointer),
                    Some(inner) => {
                        let doc: Value = serde_json::from_str(at).unwrap();
                        assert_eq!(doc.pointer(inner).and_then(Value::as_str), Some(&*t.text));
                    }
                }
            }
        }
    }

    #[test]
    fn pointers_escape_and_unknown_shapes_walk_all() {
        assert_eq!(escape_token("a/b~c"), "a~1b~0c");
        let body = json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a/b": {"type": "string", "description": "slash"}}}}}]});
        let t = texts(Some(Api::ChatCompletions), &body);
        let d = t.iter().find(|t| t.text == "slash").unwrap();
        assert_eq!(
            d.pointer,
            "/tools/0/function/parameters/properties/a~1b/description"
        );
        assert_eq!(body.pointer(&d.pointer), Some(&json!("slash")));
        // No known API: both chat shapes and the legacy fields, each location once.
        let body = json!({"system": "s", "prompt": "p", "messages": [{"role": "user", "content": "u"}],
                          "metadata": {"user_id": "id"}, "user": "u2"});
        let got: Vec<String> = texts(None, &body).into_iter().map(|t| t.location()).collect();
        assert_eq!(
            got,
            [
                "/messages/0/content",
                "/user",
                "/system",
                "/metadata/user_id",
                "/prompt"
            ]
        );
        assert_eq!(Kind::parse("tool_call"), Some(Kind::ToolCall));
        assert!(Kind::parse("nope").is_none());
    }

    #[test]
    fn json_strings() {
        let body = json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"to\":[\"a@b.io\",{\"cc\":\"c\"}],\"n\":3,\"k/e\":\"v\"}"}},
            {"id": "2", "type": "function", "function": {"name": "g", "arguments": "not json"}},
            {"id": "3", "type": "function", "function": {"name": "h", "arguments": "\"bare\""}},
            {"id": "4", "type": "function", "function": {"name": "i", "arguments": "4155550132"}},
            {"id": "5", "type": "function", "function": {"name": "j", "arguments": "{}"}}
        ]}]});
        let got: Vec<(String, String)> = texts(Some(Api::ChatCompletions), &body)
            .into_iter()
            .filter(|t| t.pointer.ends_with("arguments"))
            .map(|t| (t.location(), t.text.into_owned()))
            .collect();
        let p = |i: usize, inner: &str| format!("/messages/0/tool_calls/{i}/function/arguments{inner}");
        assert_eq!(
            got,
            [
                (p(0, "#/k~1e"), "v".to_string()),
                (p(0, "#/to/0"), "a@b.io".to_string()),
                (p(0, "#/to/1/cc"), "c".to_string()),
                (p(1, ""), "not json".to_string()),
                (p(2, "#"), "bare".to_string()),
                (p(3, ""), "4155550132".to_string()),
            ]
        );
    }
}
