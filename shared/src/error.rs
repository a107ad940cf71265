//! OpenAI-shaped API errors that every filter returns.
use serde_json::json;

/// An error sent to the client as `{"error":{"message","type","code"}}` with an HTTP status, plus
/// `param` (the offending field, as OpenAI's errors carry it) when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
        }
    }

    /// Names the field the error is about (a JSON pointer into the request).
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn invalid_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message)
    }

    pub fn upstream(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, "upstream_error", code, message)
    }

    pub fn body(&self) -> Vec<u8> {
        let mut v = json!({"error": {"message": self.message, "type": self.kind, "code": self.code}});
        if let (Some(p), Some(e)) = (&self.param, v.get_mut("error").and_then(|e| e.as_object_mut())) {
            e.insert("param".into(), p.clone().into());
        }
        v.to_string().into_bytes()
    }
}
