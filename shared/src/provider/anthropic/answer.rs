//! Anthropic `message` answers: read into a [`Completion`] from an Anthropic target ([`response`]) and
//! written from one for the Anthropic door ([`message_json`]).

use serde_json::{json, Value};

use super::{usage, usage_json};
use crate::error::ApiError;
use crate::provider::neutral::{Completion, Finish, Thought, ToolCall};
use crate::provider::Expect;

/// The neutral reason for an Anthropic `stop_reason`.
pub(crate) fn finish(stop_reason: Option<&str>) -> Option<Finish> {
    Some(match stop_reason? {
        "max_tokens" | "model_context_window_exceeded" => Finish::Length,
        "tool_use" => Finish::ToolCalls,
        "refusal" => Finish::ContentFilter,
        "stop_sequence" => Finish::StopSequence,
        // end_turn, pause_turn and anything newer.
        _ => Finish::Stop,
    })
}

/// Anthropic's `stop_reason` for a neutral reason.
pub(crate) fn stop_reason(finish: Option<Finish>) -> Value {
    match finish {
        None => Value::Null,
        Some(Finish::Stop) => "end_turn".into(),
        Some(Finish::StopSequence) => "stop_sequence".into(),
        Some(Finish::Length) => "max_tokens".into(),
        Some(Finish::ToolCalls) => "tool_use".into(),
        Some(Finish::ContentFilter) => "refusal".into(),
    }
}

/// A (non-streamed) Anthropic message. With [`Expect::format_tool`] the forced tool's input is the
/// answer's text (JSON) and the call is no tool call: the answer finishes as a plain stop.
pub fn response(body: &[u8], expect: Expect) -> Result<Completion, ApiError> {
    let bad = |what: String| {
        ApiError::upstream(
            502,
            "bad_upstream_response",
            format!("invalid response from Anthropic: {what}"),
        )
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if let Some(kind) = v.get("type").and_then(Value::as_str).filter(|&t| t != "message") {
        return Err(bad(format!("unexpected type `{kind}`")));
    }
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing `content` array".into()))?;
    let mut c = Completion::default();
    for b in content {
        let field = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        match b.get("type").and_then(Value::as_str) {
            Some("text") => c
                .text
                .push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("thinking") => c.thoughts.push(Thought::Thinking {
                text: field("thinking"),
                signature: field("signature"),
            }),
            Some("redacted_thinking") => c.thoughts.push(Thought::Redacted { data: field("data") }),
            Some("tool_use") if expect.format_tool => {
                c.text.push_str(
                    &b.get("input")
                        .map(Value::to_string)
                        .unwrap_or_else(|| "{}".into()),
                );
            }
            Some("tool_use") => c.tool_calls.push(ToolCall {
                id: field("id"),
                name: field("name"),
                arguments: b.get("input").map_or_else(|| "{}".into(), Value::to_string),
            }),
            // Server tool blocks come only with server tools, which are never sent.
            _ => {}
        }
    }
    let field = |k| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    c.id = field("id");
    c.model = field("model");
    c.finish = finish(v.get("stop_reason").and_then(Value::as_str));
    if expect.format_tool && c.finish == Some(Finish::ToolCalls) {
        c.finish = Some(Finish::Stop);
    }
    c.usage = usage(&v).unwrap_or_default();
    Ok(c)
}

/// An Anthropic `message` for a [`Completion`]: thinking blocks first, then the text, then the tool
/// calls as `tool_use` blocks (their arguments parsed: a call whose arguments are not a JSON object is
/// an answer that cannot be translated).
pub fn message_json(c: &Completion) -> Result<Vec<u8>, ApiError> {
    let mut content = Vec::new();
    for t in &c.thoughts {
        content.push(match t {
            Thought::Thinking { text, signature } => {
                json!({"type": "thinking", "thinking": text, "signature": signature})
            }
            Thought::Redacted { data } => json!({"type": "redacted_thinking", "data": data}),
        });
    }
    if !c.text.is_empty() || c.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": c.text}));
    }
    for t in &c.tool_calls {
        let input = if t.arguments.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str::<Value>(&t.arguments) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(ApiError::upstream(
                        502,
                        "bad_upstream_response",
                        format!("the arguments of tool call `{}` are not a JSON object", t.id),
                    ))
                }
            }
        };
        content.push(json!({"type": "tool_use", "id": t.id, "name": t.name, "input": input}));
    }
    Ok(json!({
        "id": c.id,
        "type": "message",
        "role": "assistant",
        "model": c.model,
        "content": content,
        "stop_reason": stop_reason(c.finish),
        "stop_sequence": null,
        "usage": usage_json(c.usage),
    })
    .to_string()
    .into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const MESSAGE: &[u8] = include_bytes!("../../../tests/fixtures/anthropic_message.json");

    #[test]
    fn reads_messages() {
        let c = response(MESSAGE, Expect::default()).unwrap();
        assert_eq!(c.text, "Hello! How can I help you today?");
        assert_eq!(c.finish, Some(Finish::Stop));
        assert_eq!(c.usage.prompt_tokens, 2112);

        let tools = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[
            {"type":"thinking","thinking":"Let me think.","signature":"sig"},
            {"type":"redacted_thinking","data":"opaque"},
            {"type":"text","text":"Checking."},
            {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}},
            {"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}],
            "stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4}}"#;
        let c = response(tools, Expect::default()).unwrap();
        assert_eq!(c.text, "Checking.");
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        assert_eq!(
            c.thoughts,
            vec![
                Thought::Thinking {
                    text: "Let me think.".into(),
                    signature: "sig".into()
                },
                Thought::Redacted {
                    data: "opaque".into()
                }
            ]
        );
        assert_eq!(
            c.tool_calls,
            vec![
                ToolCall {
                    id: "toolu_1".into(),
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into()
                },
                ToolCall {
                    id: "toolu_2".into(),
                    name: "get_time".into(),
                    arguments: "{}".into()
                }
            ]
        );
        for (stop, want) in [
            ("end_turn", Finish::Stop),
            ("pause_turn", Finish::Stop),
            ("stop_sequence", Finish::StopSequence),
            ("max_tokens", Finish::Length),
            ("model_context_window_exceeded", Finish::Length),
            ("refusal", Finish::ContentFilter),
        ] {
            assert_eq!(finish(Some(stop)), Some(want), "{stop}");
        }
    }

    #[test]
    fn unwraps_the_format_tool() {
        let forced = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[
            {"type":"tool_use","id":"toolu_1","name":"answer","input":{"city":"Paris","temp":21}}],
            "stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4}}"#;
        let c = response(forced, Expect { format_tool: true }).unwrap();
        assert_eq!(c.text, r#"{"city":"Paris","temp":21}"#);
        assert!(c.tool_calls.is_empty());
        assert_eq!(c.finish, Some(Finish::Stop));
    }

    #[test]
    fn writes_messages() {
        let c = Completion {
            id: "chatcmpl-1".into(),
            model: "gpt".into(),
            text: "Checking.".into(),
            thoughts: vec![Thought::Thinking {
                text: "t".into(),
                signature: String::new(),
            }],
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }],
            finish: Some(Finish::ToolCalls),
            usage: Usage {
                cached_tokens: 5,
                ..Usage::new(12, 7)
            },
        };
        let v: Value = serde_json::from_slice(&message_json(&c).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt",
                   "content": [{"type": "thinking", "thinking": "t", "signature": ""},
                               {"type": "text", "text": "Checking."},
                               {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}],
                   "stop_reason": "tool_use", "stop_sequence": null,
                   "usage": {"input_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5,
                             "output_tokens": 7}})
        );
        let only_tools = Completion {
            text: String::new(),
            thoughts: Vec::new(),
            ..c.clone()
        };
        let v: Value = serde_json::from_slice(&message_json(&only_tools).unwrap()).unwrap();
        assert_eq!(v["content"].as_array().unwrap().len(), 1, "no empty text block");
        let broken = Completion {
            tool_calls: vec![ToolCall {
                id: "call_9".into(),
                name: "f".into(),
                arguments: "{\"city\":".into(),
            }],
            ..c
        };
        let e = message_json(&broken).unwrap_err();
        assert_eq!((e.status, e.code), (502, "bad_upstream_response"));
        assert!(e.message.contains("call_9"));
    }
}
