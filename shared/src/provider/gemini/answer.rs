//! Gemini answers read into neutral shapes: a `GenerateContentResponse` ([`response`]) and an
//! embeddings answer ([`embeddings_response`]).

use serde_json::Value;

use super::{client_call_id, filtered_message, finish, usage, LABEL};
use crate::error::ApiError;
use crate::provider::neutral::{Completion, Embeddings, Finish, Thought, ToolCall};
use crate::usage::Usage;

fn bad(what: impl std::fmt::Display) -> ApiError {
    ApiError::upstream(
        502,
        "bad_upstream_response",
        format!("invalid response from {LABEL}: {what}"),
    )
}

/// A whole answer. Only the first candidate is read (one is asked for). A prompt Gemini blocked
/// (`promptFeedback.blockReason`, no candidates) or an answer it filtered is `content_filter`, with the
/// reason as the text when there is no other.
pub fn response(body: &[u8], model: &str) -> Result<Completion, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(bad)?;
    if !v.is_object() {
        return Err(bad("not a JSON object"));
    }
    let mut c = Completion {
        id: v
            .get("responseId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        model: v
            .get("modelVersion")
            .and_then(Value::as_str)
            .unwrap_or(model)
            .to_string(),
        usage: usage(&v).unwrap_or_default(),
        ..Completion::default()
    };
    let candidate = v
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let Some(candidate) = candidate else {
        let reason = v
            .get("promptFeedback")
            .and_then(|f| f.get("blockReason"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no `candidates` and no `promptFeedback.blockReason`"))?;
        let ratings = v.get("promptFeedback").and_then(|f| f.get("safetyRatings"));
        c.text = filtered_message(reason, ratings, true);
        c.finish = Some(Finish::ContentFilter);
        return Ok(c);
    };
    let parts = candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for p in parts {
        if let Some(call) = p.get("functionCall") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
            let id = client_call_id(p, &c.id, c.tool_calls.len(), name);
            c.tool_calls.push(ToolCall {
                id,
                name: name.to_string(),
                arguments: call.get("args").map_or_else(|| "{}".into(), Value::to_string),
            });
        } else if let Some(text) = p.get("text").and_then(Value::as_str) {
            if p.get("thought").and_then(Value::as_bool) == Some(true) {
                c.thoughts.push(Thought::Thinking {
                    text: text.to_string(),
                    signature: String::new(),
                });
            } else {
                c.text.push_str(text);
            }
        }
    }
    let reason = candidate.get("finishReason").and_then(Value::as_str);
    c.finish = reason.map(|r| finish(r, !c.tool_calls.is_empty()));
    if let (Some(Finish::ContentFilter), Some(r)) = (c.finish, reason) {
        if c.text.is_empty() {
            c.text = filtered_message(r, candidate.get("safetyRatings"), false);
        }
    }
    Ok(c)
}

fn values(v: Option<&Value>) -> Result<Vec<f64>, ApiError> {
    v.and_then(Value::as_array)
        .ok_or_else(|| bad("an embedding without `values`"))?
        .iter()
        .map(|x| {
            x.as_f64()
                .ok_or_else(|| bad("an embedding value that is not a number"))
        })
        .collect()
}

/// An embeddings answer: AI Studio's `{"embeddings": [{"values"}]}` (no token count) or Vertex
/// AI's `{"predictions": [{"embeddings": {"values", "statistics": {"token_count"}}}]}`.
pub fn embeddings_response(body: &[u8]) -> Result<Embeddings, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(bad)?;
    if let Some(list) = v.get("embeddings").and_then(Value::as_array) {
        let vectors = list
            .iter()
            .map(|e| values(e.get("values")))
            .collect::<Result<_, _>>()?;
        return Ok(Embeddings { vectors, usage: None });
    }
    let list = v
        .get("predictions")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("neither `embeddings` nor `predictions`"))?;
    let mut tokens = 0u64;
    let mut vectors = Vec::with_capacity(list.len());
    for p in list {
        let e = p.get("embeddings");
        vectors.push(values(e.and_then(|e| e.get("values")))?);
        let n = e
            .and_then(|e| e.get("statistics"))
            .and_then(|s| s.get("token_count"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        // Counts arrive as JSON numbers that may be written as floats (`5.0`).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = n.max(0.0) as u64;
        tokens = tokens.saturating_add(n);
    }
    Ok(Embeddings {
        vectors,
        usage: Some(Usage::new(tokens, 0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::gemini::{call_id, Gemini};
    use crate::provider::openai::parse_chat_request;
    use crate::provider::{Exchange, Reply};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reads_text_thoughts_and_usage() {
        let c = response(
            include_bytes!("../../../tests/fixtures/gemini_response.json"),
            "m",
        )
        .unwrap();
        assert_eq!(c.id, "resp-gemini-1");
        assert_eq!(c.model, "gemini-2.5-flash");
        assert_eq!(c.text, "Hello! How can I help?");
        assert_eq!(
            c.thoughts,
            vec![Thought::Thinking {
                text: "The user greets me.".into(),
                signature: String::new()
            }]
        );
        assert_eq!(c.finish, Some(Finish::Stop));
        assert_eq!((c.usage.prompt_tokens, c.usage.completion_tokens), (12, 27));
    }

    #[test]
    fn tool_calls_get_stable_ids() {
        let body = json!({"responseId": "r1", "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]}, "finishReason": "STOP"}]})
        .to_string();
        let c = response(body.as_bytes(), "m").unwrap();
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        assert_eq!(
            c.tool_calls,
            vec![
                ToolCall {
                    id: call_id("r1", 0, "get_weather"),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into()
                },
                ToolCall {
                    id: call_id("r1", 1, "get_weather"),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Rome"}"#.into()
                },
            ]
        );
        assert_eq!(
            response(body.as_bytes(), "m").unwrap(),
            c,
            "the same answer, the same ids"
        );
        assert_eq!(c.model, "m", "the target's model when Gemini names none");
    }

    #[test]
    fn safety_is_content_filter_with_the_reason() {
        let cases = [
            (
                json!({"candidates": [{"finishReason": "SAFETY", "safetyRatings": [
                    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "HIGH", "blocked": true}]}]}),
                "Gemini blocked the answer (reason SAFETY: HARM_CATEGORY_HATE_SPEECH)",
            ),
            (
                json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}),
                "Gemini blocked the prompt (reason PROHIBITED_CONTENT)",
            ),
            (
                json!({"candidates": [{"content": {"parts": [{"text": "Partial"}]}, "finishReason": "RECITATION"}]}),
                "Partial",
            ),
        ];
        for (body, text) in cases {
            let c = response(body.to_string().as_bytes(), "m").unwrap();
            assert_eq!(
                (c.finish, c.text.as_str()),
                (Some(Finish::ContentFilter), text),
                "{body}"
            );
        }
        assert_eq!(response(b"{}", "m").unwrap_err().code, "bad_upstream_response");
        assert_eq!(response(b"[1]", "m").unwrap_err().code, "bad_upstream_response");
    }

    #[test]
    fn through_the_openai_door() {
        let req =
            parse_chat_request(br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let target = Gemini::new("gemini-2.5-flash");
        let (_, ex) = Exchange::prepare(&req, &target).unwrap();
        let mut reply = Reply::new(&target, &ex, 200, false, 7);
        let out = reply
            .whole(
                &target,
                include_bytes!("../../../tests/fixtures/gemini_response.json"),
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Hello! How can I help?");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 12);
        assert_eq!(v["usage"]["completion_tokens_details"]["reasoning_tokens"], 20);
    }

    #[test]
    fn embeddings_of_both_apis() {
        let studio = embeddings_response(br#"{"embeddings":[{"values":[0.5,-1]},{"values":[2]}]}"#).unwrap();
        assert_eq!(studio.vectors, vec![vec![0.5, -1.0], vec![2.0]]);
        assert_eq!(studio.usage, None);
        let vertex = embeddings_response(
            br#"{"predictions":[{"embeddings":{"values":[1],"statistics":{"token_count":3,"truncated":false}}},
                                {"embeddings":{"values":[2],"statistics":{"token_count":4.0}}}]}"#,
        )
        .unwrap();
        assert_eq!(vertex.vectors, vec![vec![1.0], vec![2.0]]);
        assert_eq!(vertex.usage, Some(Usage::new(7, 0)));
        for bad in [&br#"{"embeddings":[{"values":["x"]}]}"#[..], b"{}", b"nope"] {
            assert_eq!(
                embeddings_response(bad).unwrap_err().code,
                "bad_upstream_response"
            );
        }
    }
}
