//! The OpenAI Chat Completions wire format, and Azure OpenAI's (the same bodies; the deployment in the
//! path names the model, `api-key` authenticates and `api-version` is required).

use serde_json::{json, Value};

use super::engine::{content_text, words, Answer, Chat};
use super::{ApiError, Request, Wire, CREATED};

/// OpenAI, or Azure OpenAI when `azure` holds the deployment.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenAi {
    azure: Option<String>,
}

impl OpenAi {
    pub fn azure(deployment: &str) -> OpenAi {
        OpenAi {
            azure: Some(deployment.to_string()),
        }
    }

    /// Checks the credentials: `authorization: Bearer <key>` (OpenAI), `api-key` and `?api-version=`
    /// (Azure).
    fn check_auth(&self, req: &Request) -> Result<(), ApiError> {
        if self.azure.is_some() {
            if req.header("api-key").is_none_or(|v| v.trim().is_empty()) {
                return Err(ApiError::new(401, "mock: missing api-key header"));
            }
            if req.query("api-version").is_none_or(str::is_empty) {
                return Err(ApiError::bad_request("mock: missing api-version query parameter"));
            }
            return Ok(());
        }
        let bearer = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_none_or(|k| k.trim().is_empty()) {
            return Err(ApiError::new(
                401,
                "mock: missing or invalid authorization: Bearer <key>",
            ));
        }
        Ok(())
    }

    fn usage(a: &Answer) -> Value {
        json!({"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
            "total_tokens": a.prompt_tokens + a.completion_tokens})
    }
}

impl Wire for OpenAi {
    fn name(&self) -> &'static str {
        if self.azure.is_some() {
            "azure"
        } else {
            "openai"
        }
    }

    fn fault_model<'a>(&'a self, body: Option<&'a Value>) -> Option<&'a str> {
        match &self.azure {
            Some(deployment) => Some(deployment),
            None => body.and_then(|b| b.get("model")).and_then(Value::as_str),
        }
    }

    fn read_chat(&self, req: &Request, body: Option<&Value>) -> Result<Chat, ApiError> {
        self.check_auth(req)?;
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
        let model = match &self.azure {
            Some(deployment) => deployment.clone(),
            None => match body.get("model").and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => return Err(ApiError::bad_request("mock: model must be a string")),
            },
        };
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
        Ok(Chat {
            model,
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: body
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            last_user_text: content_text(last_user.and_then(|m| m.get("content"))),
            prompt_tokens: messages
                .iter()
                .map(|m| words(&content_text(m.get("content"))))
                .sum(),
        })
    }

    fn error_body(&self, err: &ApiError) -> Value {
        let (kind, code) = match err.status {
            401 => ("invalid_request_error", json!("invalid_api_key")),
            403 => ("permission_error", Value::Null),
            404 => ("invalid_request_error", json!("not_found")),
            429 => ("rate_limit_error", json!("rate_limit_exceeded")),
            s if s >= 500 => ("server_error", Value::Null),
            _ => ("invalid_request_error", Value::Null),
        };
        let code = err.code.as_ref().map_or(code, |c| json!(c));
        json!({"error": {"message": err.message, "type": kind, "param": err.param, "code": code}})
    }

    fn chat_json(&self, n: u64, a: &Answer) -> Value {
        json!({
            "id": format!("chatcmpl-mock-{n}"),
            "object": "chat.completion",
            "created": CREATED,
            "model": a.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": a.reply}, "finish_reason": "stop"}],
            "usage": Self::usage(a),
        })
    }

    fn chat_events(&self, n: u64, a: &Answer) -> Vec<String> {
        let id = format!("chatcmpl-mock-{n}");
        let chunk = |delta: Value, finish: Value| {
            let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": a.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            if a.include_usage {
                v["usage"] = Value::Null;
            }
            format!("data: {v}\n\n")
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        for piece in a.stream_pieces() {
            events.push(chunk(json!({ "content": piece }), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        if a.include_usage {
            let v = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": a.model,
                "choices": [], "usage": Self::usage(a)});
            events.push(format!("data: {v}\n\n"));
        }
        events.push("data: [DONE]\n\n".to_string());
        events
    }
}
