//! Bedrock answers read into neutral shapes: a Converse answer ([`response`]) and an `InvokeModel`
//! embeddings answer of Titan or Cohere ([`embeddings_response`]).

use serde_json::Value;

use super::{finish, usage, LABEL};
use crate::crypto::{hex, sha256};
use crate::error::ApiError;
use crate::provider::neutral::{Completion, Embeddings, Finish, Thought, ToolCall};
use crate::provider::Expect;
use crate::usage::Usage;

fn bad(what: impl std::fmt::Display) -> ApiError {
    ApiError::upstream(
        502,
        "bad_upstream_response",
        format!("invalid response from {LABEL}: {what}"),
    )
}

/// An id for an answer Bedrock gives none (its request id is a header): derived from the answer.
pub(crate) fn answer_id(seed: &[u8]) -> String {
    let h = hex(&sha256(seed));
    format!("bedrock-{}", h.get(..24).unwrap_or(&h))
}

/// A Converse answer (`output.message.content`, `stopReason`, `usage`). With [`Expect::format_tool`]
/// the forced tool's input is the answer's text.
pub fn response(body: &[u8], expect: Expect, model: &str) -> Result<Completion, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(bad)?;
    let content = v
        .get("output")
        .and_then(|o| o.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing `output.message.content`"))?;
    let mut c = Completion {
        id: answer_id(body),
        model: model.to_string(),
        usage: usage(&v).unwrap_or_default(),
        ..Completion::default()
    };
    for b in content {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            c.text.push_str(t);
        } else if let Some(u) = b.get("toolUse") {
            let input = u.get("input").map_or_else(|| "{}".into(), Value::to_string);
            if expect.format_tool {
                c.text.push_str(&input);
            } else {
                let field = |k: &str| u.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                c.tool_calls.push(ToolCall {
                    id: field("toolUseId"),
                    name: field("name"),
                    arguments: input,
                });
            }
        } else if let Some(r) = b.get("reasoningContent") {
            let text = r.get("reasoningText");
            let field = |k: &str| {
                text.and_then(|t| t.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            match r.get("redactedContent").and_then(Value::as_str) {
                Some(data) => c.thoughts.push(Thought::Redacted {
                    data: data.to_string(),
                }),
                None => c.thoughts.push(Thought::Thinking {
                    text: field("text"),
                    signature: field("signature"),
                }),
            }
        }
    }
    c.finish = v.get("stopReason").and_then(Value::as_str).map(finish);
    if expect.format_tool && c.finish == Some(Finish::ToolCalls) {
        c.finish = Some(Finish::Stop);
    }
    Ok(c)
}

fn vector(v: &Value) -> Result<Vec<f64>, ApiError> {
    v.as_array()
        .ok_or_else(|| bad("an embedding that is not an array"))?
        .iter()
        .map(|x| {
            x.as_f64()
                .ok_or_else(|| bad("an embedding value that is not a number"))
        })
        .collect()
}

/// Titan's `{"embedding": [...], "inputTextTokenCount": n}` or Cohere's `{"embeddings": [[...]]}`
/// (or `{"embeddings": {"float": [[...]]}}`; Cohere reports its tokens in a header only, so none).
pub fn embeddings_response(body: &[u8]) -> Result<Embeddings, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(bad)?;
    if let Some(e) = v.get("embedding") {
        let tokens = v.get("inputTextTokenCount").and_then(Value::as_u64).unwrap_or(0);
        return Ok(Embeddings {
            vectors: vec![vector(e)?],
            usage: Some(Usage::new(tokens, 0)),
        });
    }
    let list = match v.get("embeddings") {
        Some(Value::Array(list)) => list,
        Some(Value::Object(by_type)) => by_type
            .get("float")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `float` embeddings"))?,
        _ => return Err(bad("neither `embedding` nor `embeddings`")),
    };
    Ok(Embeddings {
        vectors: list.iter().map(vector).collect::<Result<_, _>>()?,
        usage: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::bedrock::Bedrock;
    use crate::provider::openai::parse_chat_request;
    use crate::provider::{Exchange, Reply};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reads_a_converse_answer() {
        let c = response(
            include_bytes!("../../../tests/fixtures/bedrock_converse.json"),
            Expect::default(),
            "m",
        )
        .unwrap();
        assert_eq!(c.text, "Let me check.");
        assert_eq!(
            c.tool_calls,
            vec![ToolCall {
                id: "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into()
            }]
        );
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        assert_eq!(
            c.usage,
            Usage {
                cached_tokens: 100,
                ..Usage::new(130, 20)
            }
        );
        assert!(c.id.starts_with("bedrock-"));
        let formatted = json!({"output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t", "name": "json_output", "input": {"a": 1}}}]}}, "stopReason": "tool_use"});
        let c = response(
            formatted.to_string().as_bytes(),
            Expect { format_tool: true },
            "m",
        )
        .unwrap();
        assert_eq!((c.text.as_str(), c.finish), (r#"{"a":1}"#, Some(Finish::Stop)));
        assert!(c.tool_calls.is_empty());
        assert_eq!(
            response(b"{}", Expect::default(), "m").unwrap_err().code,
            "bad_upstream_response"
        );
    }

    #[test]
    fn through_the_openai_door() {
        let req =
            parse_chat_request(br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let target = Bedrock::new("m", "us-east-1", "a", "s");
        let (_, ex) = Exchange::prepare(&req, &target).unwrap();
        let mut reply = Reply::new(&target, &ex, 200, false, 7);
        let out = reply
            .whole(
                &target,
                include_bytes!("../../../tests/fixtures/bedrock_converse.json"),
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    }

    #[test]
    fn embeddings_of_titan_and_cohere() {
        let t = embeddings_response(br#"{"embedding":[0.5,1],"inputTextTokenCount":3}"#).unwrap();
        assert_eq!(
            (t.vectors, t.usage),
            (vec![vec![0.5, 1.0]], Some(Usage::new(3, 0)))
        );
        let c =
            embeddings_response(br#"{"id":"x","embeddings":[[1],[2]],"response_type":"embeddings_floats"}"#)
                .unwrap();
        assert_eq!((c.vectors, c.usage), (vec![vec![1.0], vec![2.0]], None));
        let typed = embeddings_response(br#"{"embeddings":{"float":[[3]]}}"#).unwrap();
        assert_eq!(typed.vectors, vec![vec![3.0]]);
        assert!(embeddings_response(br#"{"embeddings":"no"}"#).is_err());
    }
}
