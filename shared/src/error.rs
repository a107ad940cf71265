//! OpenAI-shaped API errors that every filter returns.
use serde_json::Value;

/// `{"error":{"message","type","code"}}` with the keys in OpenAI's order: the one place this JSON is
/// written, for the filters' own errors and for translated provider errors alike.
pub fn error_json(message: &str, kind: &str, code: &str) -> String {
    error_json_param(message, kind, None, code)
}

/// [`error_json`] with OpenAI's `param` (the offending field) between `type` and `code` when there is
/// one.
pub fn error_json_param(message: &str, kind: &str, param: Option<&str>, code: &str) -> String {
    let param = param.map_or(String::new(), |p| format!(r#","param":{}"#, Value::from(p)));
    format!(
        r#"{{"error":{{"message":{},"type":{}{param},"code":{}}}}}"#,
        Value::from(message),
        Value::from(kind),
        Value::from(code)
    )
}

/// An error sent to the client as `{"error":{"message","type","code"}}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    /// The field the error is about (a JSON pointer into the request), sent as OpenAI's `param`.
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
        error_json_param(&self.message, self.kind, self.param.as_deref(), self.code).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn one_shape_in_openai_order() {
        let e = ApiError::invalid_request("bad", "a \"quoted\" é");
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            r#"{"error":{"message":"a \"quoted\" é","type":"invalid_request_error","code":"bad"}}"#
        );
        assert_eq!(
            String::from_utf8(e.with_param("/messages/0/content").body()).unwrap(),
            r#"{"error":{"message":"a \"quoted\" é","type":"invalid_request_error","param":"/messages/0/content","code":"bad"}}"#
        );
    }
}
