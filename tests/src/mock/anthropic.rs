//! The Anthropic Messages wire format (`POST /v1/messages`).

use serde_json::{json, Value};

use super::engine::{content_text, words, Answer, Chat};
use super::{ApiError, Request, Wire};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Anthropic;

impl Anthropic {
    fn check_auth(req: &Request) -> Result<(), ApiError> {
        if req.header("x-api-key").is_none_or(|v| v.trim().is_empty()) {
            return Err(ApiError::new(401, "mock: missing x-api-key header"));
        }
        if req
            .header("anthropic-version")
            .is_none_or(|v| v.trim().is_empty())
        {
            return Err(ApiError::new(401, "mock: missing anthropic-version header"));
        }
        Ok(())
    }
}

impl Wire for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn read_chat(&self, req: &Request, body: Option<&Value>) -> Result<Chat, ApiError> {
        Self::check_auth(req)?;
        let Some(body) = body.and_then(Value::as_object) else {
            return Err(ApiError::bad_request("mock: body is not a JSON object"));
        };
        let messages = match body.get("messages").and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m,
            _ => return Err(ApiError::bad_request("mock: messages must be a non-empty array")),
        };
        if body
            .get("stream")
            .is_some_and(|s| !s.is_boolean() && !s.is_null())
        {
            return Err(ApiError::bad_request("mock: stream must be a boolean"));
        }
        let Some(model) = body.get("model").and_then(Value::as_str) else {
            return Err(ApiError::bad_request("mock: model must be a string"));
        };
        if body
            .get("max_tokens")
            .and_then(Value::as_u64)
            .is_none_or(|n| n < 1)
        {
            return Err(ApiError::bad_request(
                "mock: max_tokens: field required (integer >= 1)",
            ));
        }
        for m in messages {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            if role != "user" && role != "assistant" {
                return Err(ApiError::bad_request(format!(
                    "mock: messages role must be user or assistant, got {role:?}"
                )));
            }
        }
        if body
            .get("system")
            .is_some_and(|s| !s.is_string() && !s.is_array())
        {
            return Err(ApiError::bad_request(
                "mock: system must be a string or an array of text blocks",
            ));
        }
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
        let prompt_tokens = messages
            .iter()
            .map(|m| words(&content_text(m.get("content"))))
            .sum::<u64>()
            + words(&content_text(body.get("system")));
        Ok(Chat {
            model: model.to_string(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: false,
            last_user_text: content_text(last_user.and_then(|m| m.get("content"))),
            prompt_tokens,
        })
    }

    fn error_body(&self, err: &ApiError) -> Value {
        let kind = match err.status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        json!({"type": "error", "error": {"type": kind, "message": err.message}})
    }

    fn chat_json(&self, n: u64, a: &Answer) -> Value {
        json!({
            "id": format!("msg_mock_{n}"),
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": [{"type": "text", "text": a.reply}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens},
        })
    }

    fn chat_events(&self, n: u64, a: &Answer) -> Vec<String> {
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut events = vec![
            event(
                "message_start",
                json!({"type": "message_start", "message": {"id": format!("msg_mock_{n}"), "type": "message",
                    "role": "assistant", "model": a.model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": a.prompt_tokens, "output_tokens": 1}}}),
            ),
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", json!({"type": "ping"})),
        ];
        for piece in a.stream_pieces() {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": a.completion_tokens}}),
        ));
        events.push(event("message_stop", json!({"type": "message_stop"})));
        events
    }
}
