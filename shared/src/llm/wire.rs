//! One task call in its provider's dialect, and its answer read back as schema-checked JSON.
//!
//! A task is asked as an OpenAI chat request ([`chat_body`]: a system and a user message, the limits,
//! and the structured-output request) and goes through the one translation path
//! ([`crate::provider::Exchange`]), so a provider is reached exactly as ai-proxy reaches it:
//!
//! | provider | structured output asked with |
//! |---|---|
//! | `openai`, `azure` | `response_format: {"type": "json_schema", "json_schema": {"name", "strict": true, "schema"}}` |
//! | `openai_compatible` | `response_format: {"type": "json_object"}` and the schema in the system prompt ([`SCHEMA_INSTRUCTION`]): many compatible servers take no schema |
//! | `anthropic` | `json_schema` as for OpenAI, rendered by the Anthropic translator as a forced tool whose `input_schema` is the schema (refused at load until the translator carries it: [`carries_schema`]) |
//!
//! The schema sent is the task's, with `additionalProperties: false` added to every object that does
//! not say, and annotations the providers refuse (`$schema`, `$comment`, `default`, `examples`)
//! removed ([`wire_schema`]). Strict mode needs every property of an object in its `required`
//! ([`strict_problem`]). The answer ([`read`]) is judged like any callout, translated back, and its
//! text parsed and validated against the task's schema: anything else is an invalid answer.

use crate::callout::{judge, Failure};
use crate::error::ApiError;
use crate::host::CallResponse;
use crate::provider::openai::chat_request;
use crate::provider::{task_answer, Exchange, Provider};
use crate::schema::Schema;
use crate::usage::Usage;
use serde_json::{json, Map, Value};

/// How a provider is asked for JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Structured {
    /// `response_format: json_schema`, strict (OpenAI, Azure; Anthropic through its translator).
    JsonSchema,
    /// `response_format: json_object` and the schema in the prompt (OpenAI-compatible servers).
    JsonObject,
}

/// The way `provider` is asked for structured output.
pub fn structured_for(provider: &dyn Provider) -> Structured {
    // OpenAI-compatible servers (vLLM, Ollama, LiteLLM, ...) vary in what they take; JSON mode is the
    // common ground.
    if provider.name() == "openai_compatible" {
        Structured::JsonObject
    } else {
        Structured::JsonSchema
    }
}

/// What the system prompt says before the schema when the provider takes no schema.
pub const SCHEMA_INSTRUCTION: &str =
    "Answer with one JSON object, and nothing else, that conforms to this JSON Schema:";

/// One call of a task, rendered.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The task's name: the `json_schema` name.
    pub name: &'a str,
    pub system: Option<&'a str>,
    pub prompt: &'a str,
    /// The schema as sent ([`wire_schema`]).
    pub schema: &'a Value,
    pub max_tokens: u64,
    pub temperature: Option<f64>,
}

/// The task's chat request in OpenAI's shape.
pub fn chat_body(ask: &Ask<'_>, model: &str, structured: Structured) -> Value {
    let mut system = ask.system.unwrap_or_default().to_string();
    let response_format = match structured {
        Structured::JsonSchema => json!({"type": "json_schema", "json_schema": {
            "name": ask.name, "strict": true, "schema": ask.schema}}),
        Structured::JsonObject => {
            if !system.is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(SCHEMA_INSTRUCTION);
            system.push('\n');
            system.push_str(&ask.schema.to_string());
            json!({"type": "json_object"})
        }
    };
    let mut messages = Vec::with_capacity(2);
    if !system.is_empty() {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": ask.prompt}));
    let mut body = Map::new();
    body.insert("model".into(), Value::from(model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), Value::from(ask.max_tokens));
    if let Some(t) = ask.temperature.and_then(serde_json::Number::from_f64) {
        body.insert("temperature".into(), Value::Number(t));
    }
    body.insert("response_format".into(), response_format);
    Value::Object(body)
}

/// The provider's body for a task call, and what reading its answer needs.
pub fn prepare(provider: &dyn Provider, ask: &Ask<'_>) -> Result<(Vec<u8>, Exchange), ApiError> {
    let body = chat_body(ask, provider.model(), structured_for(provider));
    let req = chat_request(body)?;
    Exchange::prepare(&req, provider)
}

/// Whether a provider's request body carries `schema` somewhere (as `response_format`'s schema, or a
/// forced tool's `input_schema`): a translator that drops the structured-output request fails this.
pub fn carries_schema(body: &[u8], schema: &Value) -> bool {
    fn find(v: &Value, want: &Value, depth: usize) -> bool {
        if v == want {
            return true;
        }
        if depth == 0 {
            return false;
        }
        match v {
            Value::Object(o) => o.values().any(|x| find(x, want, depth - 1)),
            Value::Array(a) => a.iter().any(|x| find(x, want, depth - 1)),
            _ => false,
        }
    }
    serde_json::from_slice::<Value>(body).is_ok_and(|v| find(&v, schema, 8))
}

/// Annotations providers refuse in a strict schema (OpenAI: "'default' is not permitted").
const DROPPED: [&str; 4] = ["$schema", "$comment", "default", "examples"];

/// The schema as sent: `additionalProperties: false` on every object schema that does not say, the
/// annotations of [`DROPPED`] removed, everything else as written.
pub fn wire_schema(schema: &Value) -> Value {
    let Value::Object(obj) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if DROPPED.contains(&k.as_str()) {
            continue;
        }
        let v = match (k.as_str(), v) {
            ("properties", Value::Object(props)) => Value::Object(
                props
                    .iter()
                    .map(|(name, s)| (name.clone(), wire_schema(s)))
                    .collect(),
            ),
            ("items" | "additionalProperties", Value::Object(_)) => wire_schema(v),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    let is_object = match obj.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => obj.contains_key("properties"),
    };
    if is_object {
        out.entry("additionalProperties").or_insert(Value::Bool(false));
    }
    Value::Object(out)
}

/// Why `schema` cannot be a task's output schema: its root must be an object schema, and (strict
/// structured output) every object must list all its properties in `required`. The path names the
/// offending schema (`output.properties.entities`).
pub fn strict_problem(schema: &Value, at: &str) -> Option<(String, String)> {
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Some((
            format!("{at}.type"),
            "the output schema must be an object schema (\"type\": \"object\")".into(),
        ));
    }
    fn walk(s: &Value, at: &str) -> Option<(String, String)> {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(props) = props {
            let required: Vec<&str> = s
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(missing) = props.keys().find(|k| !required.contains(&k.as_str())) {
                return Some((
                    format!("{at}.required"),
                    format!(
                        "must list every property (`{missing}` is missing): strict structured output has no optional properties; allow null instead (\"type\": [\"string\", \"null\"])"
                    ),
                ));
            }
            for (k, sub) in props {
                if let Some(p) = walk(sub, &format!("{at}.properties.{k}")) {
                    return Some(p);
                }
            }
        }
        if let Some(items) = s.get("items") {
            return walk(items, &format!("{at}.items"));
        }
        None
    }
    walk(schema, at)
}

/// Why an answer is no use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// No answer within the task's timeout.
    Timeout,
    /// The provider failed or answered something that is not a completion.
    Upstream(String),
    /// A completion whose text is not JSON matching the schema (or was cut, or refused).
    Invalid(String),
}

/// What one answer gave: the output or why not, and the usage it reported (an invalid answer still
/// cost its tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub output: Result<Value, Bad>,
    pub usage: Option<Usage>,
}

/// The text of a JSON answer, without the Markdown fence some servers wrap it in.
fn unfenced(text: &str) -> &str {
    let t = text.trim();
    let Some(inner) = t.strip_prefix("```") else {
        return t;
    };
    let inner = inner.strip_suffix("```").unwrap_or(inner);
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.trim()
}

/// Reads a task call's answer.
pub fn read(provider: &dyn Provider, exchange: &Exchange, resp: &CallResponse, schema: &Schema) -> Read {
    let fail = |bad: Bad| Read {
        output: Err(bad),
        usage: None,
    };
    // Only a 2xx answer comes past `judge`.
    match judge(resp) {
        Ok(_) => {}
        Err(Failure::Timeout) => return fail(Bad::Timeout),
        Err(f) => return fail(Bad::Upstream(f.to_string())),
    }
    let (completion, usage) = match task_answer(provider, exchange, &resp.body, 0) {
        Ok(read) => read,
        Err(e) => return fail(Bad::Upstream(e.message)),
    };
    let invalid = |why: String| Read {
        output: Err(Bad::Invalid(why)),
        usage,
    };
    let Ok(v) = serde_json::from_slice::<Value>(&completion) else {
        return fail(Bad::Upstream("the answer is not JSON".into()));
    };
    let choice = v.get("choices").and_then(|c| c.get(0));
    let message = choice.and_then(|c| c.get("message"));
    if let Some(refusal) = message.and_then(|m| m.get("refusal")).and_then(Value::as_str) {
        return invalid(format!(
            "the model refused: {}",
            crate::text::truncate_chars(refusal, 200)
        ));
    }
    let Some(text) = message.and_then(|m| m.get("content")).and_then(Value::as_str) else {
        return invalid("the answer has no text".into());
    };
    if choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        == Some("length")
    {
        return invalid("the answer was cut at max_tokens".into());
    }
    let output = match serde_json::from_str::<Value>(unfenced(text)) {
        Ok(o) => o,
        Err(e) => return invalid(format!("the answer is not JSON: {e}")),
    };
    if let Err(violation) = schema.validate(&output, "$") {
        return invalid(format!(
            "the answer does not match the schema at {}: {}",
            violation.path, violation.message
        ));
    }
    Read {
        output: Ok(output),
        usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderConfig;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn provider(v: Value) -> Box<dyn Provider> {
        let raw: ProviderConfig = serde_json::from_value(v).unwrap();
        raw.compile(Some("m-up".into()), &|f| f.to_string(), &|_| None, false)
            .unwrap()
    }

    fn schema() -> Value {
        json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
               "required": ["label", "tags"],
               "properties": {"label": {"type": "string", "enum": ["billing", "bug"], "default": "bug"},
                              "tags": {"type": "array", "items": {"type": "object", "required": ["t"],
                                        "properties": {"t": {"type": "string"}}}}}})
    }

    fn ask<'a>(wire: &'a Value) -> Ask<'a> {
        Ask {
            name: "intent",
            system: Some("You triage tickets."),
            prompt: "My invoice is wrong",
            schema: wire,
            max_tokens: 50,
            temperature: Some(0.0),
        }
    }

    #[test]
    fn the_wire_schema_is_closed_and_plain() {
        let w = wire_schema(&schema());
        assert_eq!(
            w,
            json!({"type": "object", "required": ["label", "tags"], "additionalProperties": false,
                   "properties": {"label": {"type": "string", "enum": ["billing", "bug"]},
                                  "tags": {"type": "array", "items": {"type": "object", "required": ["t"],
                                           "additionalProperties": false,
                                           "properties": {"t": {"type": "string"}}}}}})
        );
        let open = json!({"type": "object", "properties": {}, "additionalProperties": true});
        assert_eq!(
            wire_schema(&open)["additionalProperties"],
            true,
            "what it says is kept"
        );
    }

    #[test]
    fn strict_schemas_list_every_property() {
        assert_eq!(strict_problem(&schema(), "output"), None);
        let cases = [
            (json!({"type": "array"}), "output.type"),
            (json!({"properties": {}}), "output.type"),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}}}),
                "output.required",
            ),
            (
                json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "object",
                       "properties": {"b": {}}}}}),
                "output.properties.a.required",
            ),
            (
                json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "array",
                       "items": {"properties": {"b": {}}}}}}),
                "output.properties.a.items.required",
            ),
        ];
        for (s, field) in cases {
            assert_eq!(
                strict_problem(&s, "output").map(|p| p.0).as_deref(),
                Some(field),
                "{s}"
            );
        }
    }

    /// The structured-output request of each provider, as it leaves the gateway.
    #[test]
    fn per_provider_structured_output_requests() {
        let wire = wire_schema(&schema());
        let a = ask(&wire);
        for p in [
            json!({"provider": "openai"}),
            json!({"provider": "azure", "deployment": "dep"}),
        ] {
            let provider = provider(p.clone());
            let (body, _) = prepare(provider.as_ref(), &a).unwrap();
            let sent: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                sent["response_format"],
                json!({"type": "json_schema", "json_schema": {"name": "intent", "strict": true, "schema": wire}}),
                "{p}"
            );
            assert_eq!(
                sent["messages"],
                json!([{"role": "system", "content": "You triage tickets."},
                       {"role": "user", "content": "My invoice is wrong"}])
            );
            assert_eq!(
                (sent["max_tokens"].clone(), sent["temperature"].clone()),
                (json!(50), json!(0.0))
            );
            assert_eq!(sent["model"], provider.model());
            assert!(carries_schema(&body, &wire));
        }
        let compatible = provider(json!({"provider": "openai_compatible"}));
        let (body, _) = prepare(compatible.as_ref(), &a).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent["response_format"], json!({"type": "json_object"}));
        let system = sent["messages"][0]["content"].as_str().unwrap();
        let (before, schema_text) = system.split_once(SCHEMA_INSTRUCTION).unwrap();
        assert_eq!(before, "You triage tickets.\n\n");
        let in_prompt: Value = serde_json::from_str(schema_text.trim()).unwrap();
        assert_eq!(in_prompt, wire, "the schema travels in the prompt");
        assert!(
            system.to_lowercase().contains("json"),
            "OpenAI's json_object wants the word"
        );
        // Without a system prompt of its own, the instruction is the system prompt.
        let bare = Ask { system: None, ..a };
        let sent = chat_body(&bare, "m", Structured::JsonObject);
        assert!(sent["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with(SCHEMA_INSTRUCTION));
        let sent = chat_body(&bare, "m", Structured::JsonSchema);
        assert_eq!(
            sent["messages"].as_array().unwrap().len(),
            1,
            "no empty system message"
        );
        let sent = chat_body(
            &Ask {
                temperature: None,
                ..a
            },
            "m",
            Structured::JsonSchema,
        );
        assert!(sent.get("temperature").is_none());
    }

    /// Until the Anthropic translator renders `response_format` as a forced tool, its body does not
    /// carry the schema, and tasks on Anthropic targets are refused at load (see `Tasks::compile`).
    #[test]
    fn anthropic_bodies_say_whether_they_carry_the_schema() {
        let wire = wire_schema(&schema());
        let anthropic = provider(json!({"provider": "anthropic"}));
        let (body, _) = prepare(anthropic.as_ref(), &ask(&wire)).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        let forced_tool = sent["tool_choice"]["type"] == "tool" && sent["tools"][0]["input_schema"] == wire;
        assert_eq!(carries_schema(&body, &wire), forced_tool, "{sent}");
        assert!(!carries_schema(b"not json", &wire));
        assert!(carries_schema(
            &serde_json::to_vec(&json!({"tools": [{"input_schema": wire}]})).unwrap(),
            &wire
        ));
    }

    fn completion(content: Value, finish: &str) -> CallResponse {
        let body = json!({"id": "c", "object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 4}});
        CallResponse {
            status: Some(200),
            headers: vec![],
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn answers_are_judged_parsed_and_validated() {
        let openai = provider(json!({"provider": "openai"}));
        let compiled = Schema::compile(&schema(), "output").unwrap();
        let wire = wire_schema(&schema());
        let (_, ex) = prepare(openai.as_ref(), &ask(&wire)).unwrap();
        let usage = Some(Usage {
            prompt_tokens: 11,
            completion_tokens: 4,
            ..Usage::default()
        });
        let good = json!({"label": "billing", "tags": [{"t": "x"}]});
        let read_one = |r: CallResponse| read(openai.as_ref(), &ex, &r, &compiled);
        assert_eq!(
            read_one(completion(json!(good.to_string()), "stop")),
            Read {
                output: Ok(good.clone()),
                usage
            }
        );
        let fenced = format!("```json\n{good}\n```");
        assert_eq!(
            read_one(completion(json!(fenced), "stop")).output,
            Ok(good.clone())
        );
        let invalid = |content: Value, finish: &str, want: &str| {
            let r = read_one(completion(content, finish));
            assert_eq!(r.usage, usage, "an invalid answer still cost tokens");
            match r.output {
                Err(Bad::Invalid(why)) => assert!(why.contains(want), "{why} / {want}"),
                other => panic!("{other:?}"),
            }
        };
        invalid(json!("not json"), "stop", "not JSON");
        invalid(json!(r#"{"label":"other","tags":[]}"#), "stop", "at $.label");
        invalid(json!(r#"{"label":"bug"}"#), "stop", "at $.tags: is required");
        invalid(json!(good.to_string()), "length", "cut at max_tokens");
        invalid(Value::Null, "stop", "no text");
        let mut refused = completion(Value::Null, "stop");
        refused.body = json!({"choices": [{"message": {"content": null, "refusal": "no"}}]})
            .to_string()
            .into_bytes();
        invalid_eq(read_one(refused), "the model refused: no");

        let upstream = |resp: CallResponse| read_one(resp).output;
        let answer = |status: Option<u16>, body: &str| CallResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            upstream(answer(Some(504), "upstream request timeout")),
            Err(Bad::Timeout)
        );
        assert_eq!(
            upstream(answer(None, "")),
            Err(Bad::Upstream(
                "no answer (connection refused, reset or cut)".into()
            ))
        );
        assert_eq!(
            upstream(answer(Some(500), "boom")),
            Err(Bad::Upstream("status 500".into()))
        );
        assert!(
            matches!(upstream(answer(Some(200), "{\"object\":\"list\"}")), Err(Bad::Upstream(m)) if m.contains("not a chat completion"))
        );
    }

    fn invalid_eq(r: Read, want: &str) {
        assert_eq!(r.output, Err(Bad::Invalid(want.into())));
    }

    #[test]
    fn anthropic_answers_go_through_its_translator() {
        let anthropic = provider(json!({"provider": "anthropic"}));
        let compiled = Schema::compile(&schema(), "output").unwrap();
        let wire = wire_schema(&schema());
        let (_, ex) = prepare(anthropic.as_ref(), &ask(&wire)).unwrap();
        let text = json!({"label": "bug", "tags": []}).to_string();
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m-up",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 9, "output_tokens": 3}});
        let resp = CallResponse {
            status: Some(200),
            headers: vec![],
            body: body.to_string().into_bytes(),
        };
        let r = read(anthropic.as_ref(), &ex, &resp, &compiled);
        assert_eq!(r.output, Ok(json!({"label": "bug", "tags": []})));
        assert_eq!(r.usage.map(|u| u.total()), Some(12));
        let overloaded = CallResponse {
            status: Some(529),
            headers: vec![],
            body: br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.to_vec(),
        };
        assert_eq!(
            read(anthropic.as_ref(), &ex, &overloaded, &compiled).output,
            Err(Bad::Upstream("status 529".into()))
        );
    }
}
