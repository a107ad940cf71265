//! The dialects the gateway's APIs are written in, and errors in each dialect's shape.
//!
//! Which API a request speaks is [`crate::chat::classify`]'s answer (one path normalisation and one
//! table for every filter); its [`Dialect`] decides the shape of every error the client gets: ai-proxy's
//! own, and, through the driver, every filter's refusal.
//!
//! **Errors.** OpenAI's door answers `{"error": {"message", "type", "code"}}`; Anthropic's door answers
//! Anthropic's shape, `{"type": "error", "error": {"type", "message", "details": {"error_code", "param"}}}`:
//! the `type` is Anthropic's error type for the status, our stable `code` goes where Anthropic puts a
//! machine-readable cause (`details.error_code`, which the official SDK exposes as `error_code`), and the
//! offending field beside it.

pub use crate::chat::Api;
use crate::chat::{classify, Class};
use crate::error::{error_json_param, ApiError};
use serde_json::Value;

/// The API family a body is written in: what a client speaks at a front door, and what a provider
/// speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// The dialect of an API's bodies and errors.
    pub fn of(api: Api) -> Dialect {
        match api {
            Api::Messages => Dialect::Anthropic,
            Api::ChatCompletions | Api::Embeddings | Api::Completions => Dialect::OpenAi,
        }
    }

    /// The dialect of a request, by method and path as every filter classifies it; OpenAI's for anything
    /// that is not a known API (the gateway's own errors were always OpenAI-shaped).
    pub fn of_request(method: &str, path: &str) -> Dialect {
        match classify(method, path) {
            Class::Chat(Some(api)) | Class::Ambiguous(Some(api)) => Dialect::of(api),
            Class::Chat(None) | Class::Ambiguous(None) | Class::Other => Dialect::OpenAi,
        }
    }

    /// An error body in this dialect.
    pub fn error_body(self, status: u16, message: &str, kind: &str, code: &str) -> Vec<u8> {
        self.error_body_param(status, message, kind, None, code)
    }

    /// [`Dialect::error_body`] naming the field the error is about (OpenAI's `param`; in Anthropic's
    /// shape `details.param`).
    pub fn error_body_param(
        self,
        status: u16,
        message: &str,
        kind: &str,
        param: Option<&str>,
        code: &str,
    ) -> Vec<u8> {
        match self {
            Dialect::OpenAi => error_json_param(message, kind, param, code).into_bytes(),
            Dialect::Anthropic => anthropic_error(status, message, kind, param, code).into_bytes(),
        }
    }

    /// One of the gateway's errors in this dialect.
    pub fn api_error(self, e: &ApiError) -> Vec<u8> {
        self.error_body_param(e.status, &e.message, e.kind, e.param.as_deref(), e.code)
    }

    /// An error body written in OpenAI's shape (a filter's own reply) rewritten for this dialect;
    /// `None` when there is nothing to rewrite (OpenAI's door, or a body that is not an OpenAI error).
    pub fn reshape_error(self, status: u16, body: &[u8]) -> Option<Vec<u8>> {
        if self == Dialect::OpenAi {
            return None;
        }
        let v: Value = serde_json::from_slice(body).ok()?;
        let err = v.get("error")?.as_object()?;
        if v.get("type").is_some() {
            return None;
        }
        let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or_default();
        let param = err.get("param").and_then(Value::as_str);
        Some(self.error_body_param(status, field("message"), field("type"), param, field("code")))
    }
}

/// Whether an API's requests are chats (they carry messages, their answers may stream).
pub fn is_chat(api: Api) -> bool {
    matches!(api, Api::ChatCompletions | Api::Messages)
}

/// Anthropic's error type for an HTTP status (its documented table; other 5xx are `api_error`).
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The error types Anthropic's API answers with, kept as they are when an Anthropic error passes.
const ANTHROPIC_TYPES: [&str; 12] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
    "conflict_error",
    "memory_precondition_failed_error",
];

/// `{"type":"error","error":{"type","message","details":{"error_code","param"}}}`: `kind` is kept when it
/// is one of Anthropic's types, else the status decides; `code` is our stable code (omitted when empty),
/// `param` the field the error is about, when there is one.
pub fn anthropic_error(status: u16, message: &str, kind: &str, param: Option<&str>, code: &str) -> String {
    let kind = if ANTHROPIC_TYPES.contains(&kind) {
        kind
    } else {
        anthropic_error_type(status)
    };
    let param = param.map_or(String::new(), |p| format!(r#","param":{}"#, Value::from(p)));
    let details = if code.is_empty() && param.is_empty() {
        String::new()
    } else {
        format!(r#","details":{{"error_code":{}{param}}}"#, Value::from(code))
    };
    format!(
        r#"{{"type":"error","error":{{"type":{},"message":{}{details}}}}}"#,
        Value::from(kind),
        Value::from(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn dialects_by_method_and_path() {
        let cases = [
            ("POST", "/v1/chat/completions", Dialect::OpenAi),
            ("POST", "/v1/messages", Dialect::Anthropic),
            ("post", "/V1/Messages/?beta=true", Dialect::Anthropic),
            ("POST", "/anthropic/v1/messages", Dialect::Anthropic),
            ("POST", "/v1/messages;x", Dialect::Anthropic),
            ("POST", "/v1/embeddings", Dialect::OpenAi),
            ("GET", "/v1/messages", Dialect::OpenAi),
            ("POST", "/other", Dialect::OpenAi),
        ];
        for (method, path, want) in cases {
            assert_eq!(Dialect::of_request(method, path), want, "{method} {path}");
        }
        assert!(is_chat(Api::Messages) && !is_chat(Api::Embeddings));
    }

    #[test]
    fn errors_in_each_dialect() {
        let openai: Value =
            serde_json::from_slice(&Dialect::OpenAi.error_body(400, "m", "invalid_request_error", "c"))
                .unwrap();
        assert_eq!(
            openai,
            json!({"error": {"message": "m", "type": "invalid_request_error", "code": "c"}})
        );
        let cases = [
            (
                400,
                "invalid_request_error",
                "model_not_found",
                "invalid_request_error",
            ),
            (
                429,
                "rate_limit_exceeded",
                "rate_limit_exceeded",
                "rate_limit_error",
            ),
            (
                413,
                "invalid_request_error",
                "request_too_large",
                "invalid_request_error",
            ),
            (502, "upstream_error", "upstream_unavailable", "api_error"),
            (504, "upstream_error", "upstream_timeout", "timeout_error"),
            (529, "overloaded_error", "overloaded_error", "overloaded_error"),
            (401, "authentication_error", "", "authentication_error"),
        ];
        for (status, kind, code, want) in cases {
            let v: Value =
                serde_json::from_slice(&Dialect::Anthropic.error_body(status, "m \"q\"", kind, code))
                    .unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], want, "{status} {kind}");
            assert_eq!(v["error"]["message"], "m \"q\"");
            if code.is_empty() {
                assert!(v["error"].get("details").is_none());
            } else {
                assert_eq!(v["error"]["details"]["error_code"], code);
            }
        }
    }

    #[test]
    fn reshapes_only_openai_errors_on_other_doors() {
        let body =
            br#"{"error":{"message":"slow down","type":"rate_limit_exceeded","code":"rate_limit_exceeded"}}"#;
        assert_eq!(Dialect::OpenAi.reshape_error(429, body), None);
        let v: Value = serde_json::from_slice(&Dialect::Anthropic.reshape_error(429, body).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down",
                   "details": {"error_code": "rate_limit_exceeded"}}})
        );
        let anthropic = br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#;
        assert_eq!(Dialect::Anthropic.reshape_error(500, anthropic), None);
        assert_eq!(Dialect::Anthropic.reshape_error(200, b"{\"ok\":1}"), None);
        assert_eq!(Dialect::Anthropic.reshape_error(500, b"plain text"), None);
        let with_param = br#"{"error":{"message":"injection","type":"invalid_request_error","param":"/messages/0/content","code":"prompt_injection"}}"#;
        let v: Value =
            serde_json::from_slice(&Dialect::Anthropic.reshape_error(400, with_param).unwrap()).unwrap();
        assert_eq!(
            v["error"]["details"],
            json!({"error_code": "prompt_injection", "param": "/messages/0/content"})
        );
        let e = ApiError::invalid_request("bad", "m").with_param("/max_tokens");
        let v: Value = serde_json::from_slice(&Dialect::OpenAi.api_error(&e)).unwrap();
        assert_eq!(v["error"]["param"], "/max_tokens");
    }
}
