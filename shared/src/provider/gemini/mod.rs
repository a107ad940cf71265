//! Google Gemini: the providers `gemini` (Google AI Studio, `generativelanguage.googleapis.com`) and
//! `vertex_ai` (Vertex AI, `{region}-aiplatform.googleapis.com` or the global
//! `aiplatform.googleapis.com`). One dialect, two addresses and two kinds of credential.
//!
//! | | `gemini` | `vertex_ai` |
//! |---|---|---|
//! | chat | `/{v}/models/{model}:generateContent` | `/{v}/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent` |
//! | stream | `…:streamGenerateContent?alt=sse` | the same |
//! | embeddings | `…:batchEmbedContents` | `…:predict` |
//! | auth | `x-goog-api-key: {key}` | `authorization: Bearer {token}` |
//!
//! No door speaks this dialect: every request is rendered from [`neutral`] ([`render`]), every answer
//! read back ([`response`], [`Decoder`], [`error`]). Gemini has no tool-call ids: the ids of its calls
//! are derived from the answer's `responseId`, the call's position and name ([`call_id`]), so the same
//! answer always gets the same ids, and a later `tool` message is matched to its call's name by the id
//! the client sends back. The filter never runs an OAuth flow: a Vertex token is the target's `auth`,
//! refreshed by whoever writes the config or the VM environment (see the README).

mod answer;
pub mod render;
mod schema;
mod stream;

pub use answer::{embeddings_response, response};
pub use render::{embeddings, render};
pub use schema::sanitize;
pub use stream::Decoder;

use serde_json::Value;
use std::borrow::Cow;

use super::neutral::{self, Finish, Unsupported};
use super::{Api, Dialect, Expect, Outgoing, Provider, Rendered, StreamDecoder, Translator};
use crate::config::ConfigError;
use crate::crypto::{hex, sha256};
use crate::error::ApiError;
use crate::usage::Usage;

const LABEL: &str = "Gemini";

/// AI Studio's API version when the target sets none.
pub const DEFAULT_GEMINI_VERSION: &str = "v1beta";
/// Vertex AI's API version when the target sets none.
pub const DEFAULT_VERTEX_VERSION: &str = "v1";

/// `provider: gemini`'s own fields.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeminiConfig {
    #[serde(default)]
    api_version: Option<String>,
}

/// `provider: vertex_ai`'s own fields.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VertexConfig {
    project: String,
    /// A region (`us-central1`) or `global`.
    location: String,
    #[serde(default)]
    api_version: Option<String>,
}

/// A path segment configs may write: letters, digits, `-`, `_`, `.`.
fn segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn checked(value: String, field: &str, at: &dyn Fn(&str) -> String) -> Result<String, ConfigError> {
    if segment(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            at(field),
            "must be 1 to 128 characters of A-Z a-z 0-9 - _ .",
        ))
    }
}

impl GeminiConfig {
    pub fn compile(self, model: Option<String>, at: &dyn Fn(&str) -> String) -> Result<Gemini, ConfigError> {
        let model = checked(super::required_model(model, at)?, "model", at)?;
        let version = checked(
            self.api_version.unwrap_or_else(|| DEFAULT_GEMINI_VERSION.into()),
            "api_version",
            at,
        )?;
        Ok(Gemini {
            base: format!("/{version}/models/{model}"),
            model,
            vertex: false,
        })
    }
}

impl VertexConfig {
    pub fn compile(self, model: Option<String>, at: &dyn Fn(&str) -> String) -> Result<Gemini, ConfigError> {
        let model = checked(super::required_model(model, at)?, "model", at)?;
        let version = checked(
            self.api_version.unwrap_or_else(|| DEFAULT_VERTEX_VERSION.into()),
            "api_version",
            at,
        )?;
        let project = checked(self.project, "project", at)?;
        let location = checked(self.location, "location", at)?;
        Ok(Gemini {
            base: format!(
                "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}"
            ),
            model,
            vertex: true,
        })
    }
}

/// A Gemini target, on AI Studio or Vertex AI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gemini {
    model: String,
    /// The model's path, without its `:method`.
    base: String,
    vertex: bool,
}

impl Gemini {
    /// An AI Studio target of `model` (tests).
    pub fn new(model: &str) -> Gemini {
        Gemini {
            model: model.into(),
            base: format!("/{DEFAULT_GEMINI_VERSION}/models/{model}"),
            vertex: false,
        }
    }
}

impl Provider for Gemini {
    fn name(&self) -> &'static str {
        if self.vertex {
            "vertex_ai"
        } else {
            "gemini"
        }
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn path(&self, api: Api, stream: bool) -> Option<Cow<'_, str>> {
        let method = match (api, stream) {
            (Api::ChatCompletions | Api::Messages, false) => ":generateContent",
            (Api::ChatCompletions | Api::Messages, true) => ":streamGenerateContent?alt=sse",
            (Api::Embeddings, _) if self.vertex => ":predict",
            (Api::Embeddings, _) => ":batchEmbedContents",
            (Api::Completions, _) => return None,
        };
        Some(Cow::Owned(format!("{}{method}", self.base)))
    }
    fn headers(&self, call: &Outgoing<'_>) -> Vec<(&'static str, String)> {
        match call.key {
            Some(k) if self.vertex => vec![("authorization", format!("Bearer {k}"))],
            Some(k) => vec![("x-goog-api-key", k.to_string())],
            None => Vec::new(),
        }
    }
    fn speaks(&self) -> Option<Dialect> {
        None
    }
    fn translator(&self) -> &dyn Translator {
        self
    }
}

impl Translator for Gemini {
    fn label(&self) -> &'static str {
        LABEL
    }
    fn request(
        &self,
        req: &neutral::Request<'_>,
        unsupported: &mut Unsupported,
    ) -> Result<Rendered, ApiError> {
        render(req, unsupported)
    }
    fn response(&self, body: &[u8], _expect: Expect) -> Result<neutral::Completion, ApiError> {
        response(body, &self.model)
    }
    fn error(&self, status: u16, body: &[u8]) -> neutral::Error {
        error(status, body)
    }
    fn stream(&self, _expect: Expect) -> Box<dyn StreamDecoder> {
        Box::new(Decoder::new(&self.model))
    }
    fn embeddings(
        &self,
        req: &neutral::EmbeddingsRequest<'_>,
        unsupported: &mut Unsupported,
    ) -> Result<Vec<u8>, ApiError> {
        let model = (!self.vertex).then(|| format!("models/{}", self.model));
        embeddings(req, model.as_deref(), unsupported)
    }
    fn embeddings_response(&self, body: &[u8]) -> Result<neutral::Embeddings, ApiError> {
        embeddings_response(body)
    }
}

/// The id of the `index`th function call of the answer `response_id`, named `name`: Gemini gives
/// none, and the same answer always gets the same ids (a stream's and a whole answer's agree).
pub fn call_id(response_id: &str, index: usize, name: &str) -> String {
    let digest = sha256(format!("{response_id}\u{0}{index}\u{0}{name}").as_bytes());
    let h = hex(&digest);
    format!("call_{}", h.get(..24).unwrap_or(&h))
}

/// What separates a tool-call id from the Gemini thought signature it carries.
pub const SIGNATURE_SEPARATOR: &str = "__thought__";

/// The id a client sees for a function call `part`: Gemini's own `id`, else [`call_id`], followed by
/// the part's `thoughtSignature` (after [`SIGNATURE_SEPARATOR`]) when it has one. Thinking models
/// (Gemini 2.5, and Gemini 3, which refuses a function call sent back without it) need that
/// signature back with the call, and the id is the only thing every client returns unchanged.
pub fn client_call_id(part: &Value, response_id: &str, index: usize, name: &str) -> String {
    let call = part.get("functionCall");
    let mut id = match call
        .and_then(|c| c.get("id"))
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty())
    {
        Some(id) => id.to_string(),
        None => call_id(response_id, index, name),
    };
    if let Some(sig) = part
        .get("thoughtSignature")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        id.push_str(SIGNATURE_SEPARATOR);
        id.push_str(sig);
    }
    id
}

/// A client's tool-call id split into the id and the thought signature it carries, if any.
pub fn split_call_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(SIGNATURE_SEPARATOR) {
        Some((id, sig)) if !sig.is_empty() => (id, Some(sig)),
        _ => (id, None),
    }
}

/// The neutral reason for a `finishReason`; `tools`: the answer called functions.
pub fn finish(reason: &str, tools: bool) -> Finish {
    match reason {
        "MAX_TOKENS" => Finish::Length,
        r if blocked(r) => Finish::ContentFilter,
        _ if tools => Finish::ToolCalls,
        // STOP, OTHER, MALFORMED_FUNCTION_CALL, FINISH_REASON_UNSPECIFIED and anything newer.
        _ => Finish::Stop,
    }
}

/// The `finishReason`s (and prompt `blockReason`s) that mean the answer was filtered.
fn blocked(reason: &str) -> bool {
    matches!(
        reason,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" | "LANGUAGE"
    )
}

/// The text that tells the client why Gemini filtered an answer that has no text of its own:
/// the reason and the safety categories rated `MEDIUM` or `HIGH` (or marked `blocked`).
pub fn filtered_message(reason: &str, ratings: Option<&Value>, prompt: bool) -> String {
    let categories: Vec<&str> = ratings
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|r| {
                    r.get("blocked").and_then(Value::as_bool) == Some(true)
                        || matches!(
                            r.get("probability").and_then(Value::as_str),
                            Some("MEDIUM" | "HIGH")
                        )
                })
                .filter_map(|r| r.get("category").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let what = if prompt { "the prompt" } else { "the answer" };
    if categories.is_empty() {
        format!("Gemini blocked {what} (reason {reason})")
    } else {
        format!(
            "Gemini blocked {what} (reason {reason}: {})",
            categories.join(", ")
        )
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The usage of a Gemini answer (`usageMetadata`): `promptTokenCount` (cached content included) and
/// `toolUsePromptTokenCount` are the prompt, `cachedContentTokenCount` its cached part;
/// `candidatesTokenCount` and `thoughtsTokenCount` the completion, the thoughts its reasoning part.
pub fn usage(answer: &Value) -> Option<Usage> {
    let m = answer.get("usageMetadata").filter(|m| m.is_object())?;
    let thoughts = count(m, "thoughtsTokenCount");
    Some(
        Usage {
            cached_tokens: count(m, "cachedContentTokenCount"),
            reasoning_tokens: thoughts,
            ..Usage::new(
                count(m, "promptTokenCount").saturating_add(count(m, "toolUsePromptTokenCount")),
                count(m, "candidatesTokenCount").saturating_add(thoughts),
            )
        }
        .checked(),
    )
}

/// A Google API error (`{"error": {"code", "message", "status", "details"}}`): the message, the
/// OpenAI type for its `status`, and the status lowercased as the code (or the `reason` of its
/// `ErrorInfo` detail, `api_key_invalid`). Any other body is read as OpenAI's dialect reads it.
pub fn error(status: u16, body: &[u8]) -> neutral::Error {
    let v = serde_json::from_slice::<Value>(body).ok();
    // A stream's error may come as a one-element array (`[{"error": …}]`).
    let err = v
        .as_ref()
        .map(|v| v.as_array().and_then(|a| a.first()).unwrap_or(v))
        .and_then(|v| v.get("error"))
        .filter(|e| e.get("status").is_some_and(Value::is_string));
    let Some(err) = err else {
        return super::openai::error(status, body);
    };
    error_object(err, status)
}

/// A Google error object (the value of `error`).
pub(crate) fn error_object(err: &Value, status: u16) -> neutral::Error {
    let google = err.get("status").and_then(Value::as_str).unwrap_or("UNKNOWN");
    let kind = match google {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => "invalid_request_error",
        "UNAUTHENTICATED" => "authentication_error",
        "PERMISSION_DENIED" => "permission_error",
        "NOT_FOUND" => "not_found_error",
        "RESOURCE_EXHAUSTED" => "rate_limit_error",
        "DEADLINE_EXCEEDED" => "timeout_error",
        _ => "api_error",
    };
    let reason = err
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|d| d.get("reason").and_then(Value::as_str))
        .filter(|r| !r.is_empty());
    let code = reason.unwrap_or(google).to_ascii_lowercase();
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map_or_else(|| super::openai::status_message(status), str::to_owned);
    neutral::Error::new(message, kind, code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn paths_and_headers() {
        let studio = GeminiConfig { api_version: None }
            .compile(Some("gemini-2.0-flash".into()), &|f| f.to_string())
            .unwrap();
        let vertex = VertexConfig {
            project: "p-1".into(),
            location: "global".into(),
            api_version: None,
        }
        .compile(Some("gemini-2.5-pro".into()), &|f| f.to_string())
        .unwrap();
        let cases = [
            (&studio, Api::ChatCompletions, false, "/v1beta/models/gemini-2.0-flash:generateContent"),
            (
                &studio,
                Api::Messages,
                true,
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            ),
            (&studio, Api::Embeddings, false, "/v1beta/models/gemini-2.0-flash:batchEmbedContents"),
            (
                &vertex,
                Api::ChatCompletions,
                true,
                "/v1/projects/p-1/locations/global/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            ),
            (
                &vertex,
                Api::Embeddings,
                false,
                "/v1/projects/p-1/locations/global/publishers/google/models/gemini-2.5-pro:predict",
            ),
        ];
        for (t, api, stream, want) in cases {
            assert_eq!(t.path(api, stream).as_deref(), Some(want));
        }
        assert_eq!(studio.path(Api::Completions, false), None);
        assert_eq!(
            studio.headers(&Outgoing::key(Some("k"))),
            vec![("x-goog-api-key", "k".to_string())]
        );
        assert_eq!(
            vertex.headers(&Outgoing::key(Some("ya29.t"))),
            vec![("authorization", "Bearer ya29.t".to_string())]
        );
        assert!(vertex.headers(&Outgoing::key(None)).is_empty());
        assert_eq!((studio.name(), vertex.name()), ("gemini", "vertex_ai"));
        let bad = VertexConfig {
            project: "a/b".into(),
            location: "us-central1".into(),
            api_version: None,
        }
        .compile(Some("m".into()), &|f| format!("t.{f}"))
        .unwrap_err();
        assert!(bad.to_string().starts_with("t.project: must be"), "{bad}");
        let bad = GeminiConfig { api_version: None }
            .compile(Some("../x".into()), &|f| format!("t.{f}"))
            .unwrap_err();
        assert!(bad.to_string().starts_with("t.model: must be"), "{bad}");
    }

    #[test]
    fn thought_signatures_ride_in_the_id() {
        let part = json!({"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln+/="});
        let id = client_call_id(&part, "r", 0, "f");
        assert_eq!(id, format!("{}__thought__c2ln+/=", call_id("r", 0, "f")));
        assert_eq!(
            split_call_id(&id),
            (call_id("r", 0, "f").as_str(), Some("c2ln+/="))
        );
        let own = json!({"functionCall": {"id": "fc_1", "name": "f"}});
        assert_eq!(client_call_id(&own, "r", 3, "f"), "fc_1");
        assert_eq!(split_call_id("fc_1"), ("fc_1", None));
    }

    #[test]
    fn stable_call_ids() {
        let a = call_id("resp-1", 0, "get_weather");
        assert_eq!(a, call_id("resp-1", 0, "get_weather"));
        assert!(a.starts_with("call_") && a.len() == 29, "{a}");
        assert_ne!(a, call_id("resp-1", 1, "get_weather"));
        assert_ne!(a, call_id("resp-2", 0, "get_weather"));
    }

    #[test]
    fn finish_reasons() {
        let cases = [
            ("STOP", false, Finish::Stop),
            ("STOP", true, Finish::ToolCalls),
            ("MAX_TOKENS", true, Finish::Length),
            ("SAFETY", false, Finish::ContentFilter),
            ("RECITATION", false, Finish::ContentFilter),
            ("PROHIBITED_CONTENT", false, Finish::ContentFilter),
            ("SPII", false, Finish::ContentFilter),
            ("BLOCKLIST", true, Finish::ContentFilter),
            ("OTHER", false, Finish::Stop),
            ("MALFORMED_FUNCTION_CALL", false, Finish::Stop),
        ];
        for (reason, tools, want) in cases {
            assert_eq!(finish(reason, tools), want, "{reason}");
        }
        let ratings = json!([{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
                             {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]);
        assert_eq!(
            filtered_message("SAFETY", Some(&ratings), false),
            "Gemini blocked the answer (reason SAFETY: HARM_CATEGORY_DANGEROUS_CONTENT)"
        );
        assert_eq!(
            filtered_message("OTHER", None, true),
            "Gemini blocked the prompt (reason OTHER)"
        );
    }

    #[test]
    fn gemini_usage() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/gemini_response.json")).unwrap();
        let cases = [
            (
                fixture,
                Some(Usage {
                    cached_tokens: 4,
                    reasoning_tokens: 20,
                    ..Usage::new(12, 27)
                }),
            ),
            (
                json!({"usageMetadata": {"promptTokenCount": 5, "toolUsePromptTokenCount": 2, "candidatesTokenCount": 3}}),
                Some(Usage::new(7, 3)),
            ),
            (
                json!({"usageMetadata": {"promptTokenCount": 5}}),
                Some(Usage::new(5, 0)),
            ),
            (json!({"usageMetadata": null}), None),
            (json!({}), None),
        ];
        for (v, want) in cases {
            assert_eq!(usage(&v), want, "{v}");
        }
    }

    #[test]
    fn errors_read_into_neutral() {
        let cases: Vec<(u16, &[u8], neutral::Error)> = vec![
            (
                400,
                include_bytes!("../../../tests/fixtures/gemini_error.json"),
                neutral::Error::new(
                    "API key not valid. Please pass a valid API key.",
                    "invalid_request_error",
                    "api_key_invalid",
                ),
            ),
            (
                429,
                br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#,
                neutral::Error::new(
                    "Resource has been exhausted",
                    "rate_limit_error",
                    "resource_exhausted",
                ),
            ),
            (
                401,
                br#"[{"error":{"code":401,"message":"","status":"UNAUTHENTICATED"}}]"#,
                neutral::Error::new(
                    "upstream returned HTTP 401 (unauthorized)",
                    "authentication_error",
                    "unauthenticated",
                ),
            ),
            (
                503,
                b"upstream connect error",
                neutral::Error::new("upstream connect error", "upstream_error", "upstream_503"),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(error(status, body), want, "{status}");
        }
    }
}
