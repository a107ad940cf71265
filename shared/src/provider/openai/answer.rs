//! OpenAI `chat.completion` answers: written from a [`Completion`] for the OpenAI door
//! ([`completion_json`]) and read into one from an OpenAI-dialect target ([`response`]).

use serde_json::{json, Map, Value};

use super::usage_json;
use crate::error::ApiError;
use crate::provider::neutral::{Completion, Finish, Thought, ToolCall};

/// OpenAI's `finish_reason`.
pub(crate) fn finish_reason(finish: Option<Finish>) -> Value {
    match finish {
        None => Value::Null,
        Some(Finish::Stop | Finish::StopSequence) => "stop".into(),
        Some(Finish::Length) => "length".into(),
        Some(Finish::ToolCalls) => "tool_calls".into(),
        Some(Finish::ContentFilter) => "content_filter".into(),
    }
}

/// The neutral reason for an OpenAI `finish_reason`.
pub(crate) fn finish_of(reason: &str) -> Finish {
    match reason {
        "length" => Finish::Length,
        "tool_calls" | "function_call" => Finish::ToolCalls,
        "content_filter" => Finish::ContentFilter,
        _ => Finish::Stop,
    }
}

/// A `chat.completion` for a [`Completion`]. Reasoning goes in `message.reasoning_content` (its text)
/// and `message.thinking_blocks` (each block with its signature, to send back), as LiteLLM writes them.
pub fn completion_json(c: &Completion, created: u64) -> Vec<u8> {
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    let content = if c.text.is_empty() && !c.tool_calls.is_empty() {
        Value::Null
    } else {
        Value::from(c.text.as_str())
    };
    message.insert("content".into(), content);
    if !c.thoughts.is_empty() {
        let text: String = c
            .thoughts
            .iter()
            .filter_map(|t| match t {
                Thought::Thinking { text, .. } => Some(text.as_str()),
                Thought::Redacted { .. } => None,
            })
            .collect();
        message.insert("reasoning_content".into(), text.into());
        let blocks: Vec<Value> = c
            .thoughts
            .iter()
            .map(|t| match t {
                Thought::Thinking { text, signature } => {
                    json!({"type": "thinking", "thinking": text, "signature": signature})
                }
                Thought::Redacted { data } => json!({"type": "redacted_thinking", "data": data}),
            })
            .collect();
        message.insert("thinking_blocks".into(), blocks.into());
    }
    if !c.tool_calls.is_empty() {
        let calls: Vec<Value> = c
            .tool_calls
            .iter()
            .map(|t| json!({"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}))
            .collect();
        message.insert("tool_calls".into(), calls.into());
    }
    json!({
        "id": c.id,
        "object": "chat.completion",
        "created": created,
        "model": c.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(c.finish),
        }],
        "usage": usage_json(c.usage),
    })
    .to_string()
    .into_bytes()
}

fn bad(what: &str) -> ApiError {
    ApiError::upstream(
        502,
        "bad_upstream_response",
        format!("invalid response from the provider: {what}"),
    )
}

/// A (non-streamed) `chat.completion` of an OpenAI-dialect target, read into a [`Completion`]: the
/// first choice's text (a `refusal` as text, finishing with `content_filter`), reasoning shown by
/// servers that show it (`reasoning_content`, `reasoning`), tool calls and usage.
pub fn response(body: &[u8]) -> Result<Completion, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| bad("no `choices`"))?;
    let message = choice.get("message").ok_or_else(|| bad("no `message`"))?;
    let text_of = |k: &str| message.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let mut finish = choice.get("finish_reason").and_then(Value::as_str).map(finish_of);
    let mut text = text_of("content").unwrap_or_default().to_string();
    if let Some(refusal) = text_of("refusal") {
        text.push_str(refusal);
        finish = Some(Finish::ContentFilter);
    }
    let thoughts = ["reasoning_content", "reasoning"]
        .into_iter()
        .find_map(text_of)
        .map(|t| Thought::Thinking {
            text: t.to_string(),
            signature: String::new(),
        })
        .into_iter()
        .collect();
    let mut tool_calls = Vec::new();
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function");
        let field = |k: &str| {
            function
                .and_then(|f| f.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        tool_calls.push(ToolCall {
            id: call
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: field("name"),
            arguments: field("arguments"),
        });
    }
    let field = |k| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Completion {
        id: field("id"),
        model: field("model"),
        text,
        thoughts,
        tool_calls,
        finish,
        usage: super::usage(&v).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn u(p: u64, c: u64) -> Usage {
        Usage::new(p, c)
    }

    #[test]
    fn writes_completions() {
        let c = Completion {
            id: "i".into(),
            model: "m".into(),
            text: "t".into(),
            finish: Some(Finish::Length),
            usage: u(1, 2),
            ..Completion::default()
        };
        let v: Value = serde_json::from_slice(&completion_json(&c, 9)).unwrap();
        assert_eq!(
            v,
            json!({"id": "i", "object": "chat.completion", "created": 9, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "t"}, "logprobs": null,
                                "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
        );
        let tools = Completion {
            id: "i".into(),
            model: "m".into(),
            thoughts: vec![
                Thought::Thinking {
                    text: "hmm".into(),
                    signature: "sig".into(),
                },
                Thought::Redacted { data: "xx".into() },
            ],
            tool_calls: vec![ToolCall {
                id: "toolu_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            }],
            finish: Some(Finish::ToolCalls),
            usage: Usage {
                cached_tokens: 1,
                reasoning_tokens: 1,
                ..u(3, 4)
            },
            ..Completion::default()
        };
        let v: Value = serde_json::from_slice(&completion_json(&tools, 9)).unwrap();
        assert_eq!(
            v["choices"][0]["message"],
            json!({"role": "assistant", "content": null, "reasoning_content": "hmm",
                   "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                       {"type": "redacted_thinking", "data": "xx"}],
                   "tool_calls": [{"id": "toolu_1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                   "prompt_tokens_details": {"cached_tokens": 1},
                   "completion_tokens_details": {"reasoning_tokens": 1}})
        );
    }

    #[test]
    fn reads_completions() {
        let fixture = include_bytes!("../../../tests/fixtures/openai_chat.json");
        let c = response(fixture).unwrap();
        assert_eq!(
            (c.id.as_str(), c.model.as_str(), c.text.as_str(), c.finish),
            (
                "chatcmpl-AWr9mPZ1x3cQ0kLJ8nYtQ2bQ4s7Dv",
                "gpt-4o-mini-2024-07-18",
                "Hello! How can I assist you today?",
                Some(Finish::Stop)
            )
        );
        assert_eq!(c.usage, u(19, 10));

        let tools = br#"{"id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,
            "reasoning_content":"think","tool_calls":[{"id":"call_1","type":"function","function":{"name":"a","arguments":"{}"}},
            {"id":"call_2","type":"function","function":{"name":"b","arguments":"{\"x\":1}"}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":5,"completion_tokens":6,"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let c = response(tools).unwrap();
        assert_eq!(c.text, "");
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        assert_eq!(
            c.thoughts,
            vec![Thought::Thinking {
                text: "think".into(),
                signature: String::new()
            }]
        );
        assert_eq!(
            c.tool_calls
                .iter()
                .map(|t| (t.id.as_str(), t.name.as_str(), t.arguments.as_str()))
                .collect::<Vec<_>>(),
            vec![("call_1", "a", "{}"), ("call_2", "b", "{\"x\":1}")]
        );
        assert_eq!(c.usage.reasoning_tokens, 2);

        let refusal =
            br#"{"id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,
            "refusal":"I can't help with that."},"finish_reason":"stop"}]}"#;
        let c = response(refusal).unwrap();
        assert_eq!(
            (c.text.as_str(), c.finish),
            ("I can't help with that.", Some(Finish::ContentFilter))
        );

        for (body, want) in [
            (&b"nope"[..], "invalid response"),
            (br#"{"object":"list"}"#, "no `choices`"),
            (br#"{"choices":[{}]}"#, "no `message`"),
        ] {
            let e = response(body).unwrap_err();
            assert_eq!((e.status, e.code), (502, "bad_upstream_response"));
            assert!(e.message.contains(want), "{}", e.message);
        }
    }
}
