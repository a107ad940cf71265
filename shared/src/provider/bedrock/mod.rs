//! AWS Bedrock: the provider `bedrock`, through the Converse API (`/model/{id}/converse`,
//! `/model/{id}/converse-stream`), one shape for the Anthropic, Meta, Mistral, Cohere and Amazon models
//! Bedrock serves, and `InvokeModel` (`/model/{id}/invoke`) for Titan and Cohere embeddings.
//!
//! Credentials: a Bedrock API key (the target's `auth`) is sent as `authorization: Bearer`; without
//! one every call is signed with AWS Signature Version 4 ([`crate::crypto::sigv4`], service `bedrock`)
//! over its host, path, body and time, with the target's `aws` keys or, by default, the VM
//! environment's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`; the body's hash
//! goes along as `x-amz-content-sha256`. The client's credentials never reach Bedrock. ConverseStream
//! answers in the binary `application/vnd.amazon.eventstream` framing, decoded incrementally
//! ([`super::Framing::EventStream`]) and read by [`Decoder`].

mod answer;
pub mod render;
mod stream;

pub use answer::{embeddings_response, response};
pub use render::{embeddings, render};
pub use stream::Decoder;

use serde_json::Value;
use std::borrow::Cow;

use super::neutral::{self, Finish, Unsupported};
use super::{Api, Dialect, Expect, Framing, Outgoing, Provider, Rendered, StreamDecoder, Translator};
use crate::config::{ConfigError, SecretSource};
use crate::crypto::sigv4::{uri_encode, Credentials, Payload, Request, Signer};
use crate::error::ApiError;
use crate::time::DateTime;
use crate::usage::Usage;

const LABEL: &str = "Bedrock";

/// The target's own AWS keys (Kong, where filters get no environment).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    access_key_id: SecretSource,
    secret_access_key: SecretSource,
    #[serde(default)]
    session_token: Option<SecretSource>,
}

/// `provider: bedrock`'s own fields.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    region: String,
    #[serde(default)]
    aws: Option<RawAws>,
}

/// Where the signature's keys come from.
#[derive(Clone, PartialEq, Eq)]
struct Keys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// `has_key`: the target has an `auth` (a Bedrock API key), so no AWS keys are needed.
    pub fn compile(
        self,
        model: Option<String>,
        at: &dyn Fn(&str) -> String,
        env: &dyn Fn(&str) -> Option<String>,
        has_key: bool,
    ) -> Result<Bedrock, ConfigError> {
        let model = super::required_model(model, at)?;
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 32
            && self
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            return Err(ConfigError::new(
                at("region"),
                "must be an AWS region such as us-east-1",
            ));
        }
        let keys = match (self.aws, has_key) {
            (Some(aws), _) => Some(Keys {
                access_key_id: aws.access_key_id.resolve(&at("aws.access_key_id"), env)?,
                secret_access_key: aws.secret_access_key.resolve(&at("aws.secret_access_key"), env)?,
                session_token: match aws.session_token {
                    Some(s) => Some(s.resolve(&at("aws.session_token"), env)?),
                    None => None,
                },
            }),
            (None, true) => None,
            (None, false) => {
                let var = |name: &str| env(name).filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => Some(Keys {
                        access_key_id: id,
                        secret_access_key: secret,
                        session_token: var("AWS_SESSION_TOKEN"),
                    }),
                    _ => {
                        return Err(ConfigError::new(
                            at("aws"),
                            "a bedrock target needs credentials: `auth` (a Bedrock API key), `aws`, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the VM environment",
                        ))
                    }
                }
            }
        };
        let id = uri_encode(&model, true);
        Ok(Bedrock {
            model,
            region: self.region,
            keys,
            base: format!("/model/{id}"),
        })
    }
}

/// A Bedrock target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bedrock {
    model: String,
    region: String,
    /// SigV4 keys; `None` when the target's `auth` (a Bedrock API key) authenticates.
    keys: Option<Keys>,
    /// `/model/{model id, URI-encoded}`.
    base: String,
}

impl Bedrock {
    /// A target of `model` in `region` signing with these keys (tests).
    pub fn new(model: &str, region: &str, access_key_id: &str, secret: &str) -> Bedrock {
        Bedrock {
            model: model.into(),
            region: region.into(),
            keys: Some(Keys {
                access_key_id: access_key_id.into(),
                secret_access_key: secret.into(),
                session_token: None,
            }),
            base: format!("/model/{}", uri_encode(model, true)),
        }
    }

    fn titan(&self) -> bool {
        self.model.contains("titan-embed")
    }
}

impl Provider for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn path(&self, api: Api, stream: bool) -> Option<Cow<'_, str>> {
        let method = match (api, stream) {
            (Api::ChatCompletions | Api::Messages, false) => "/converse",
            (Api::ChatCompletions | Api::Messages, true) => "/converse-stream",
            (Api::Embeddings, _) => "/invoke",
            (Api::Completions, _) => return None,
        };
        Some(Cow::Owned(format!("{}{method}", self.base)))
    }
    fn headers(&self, call: &Outgoing<'_>) -> Vec<(&'static str, String)> {
        if let Some(k) = call.key {
            return vec![("authorization", format!("Bearer {k}"))];
        }
        let Some(keys) = &self.keys else {
            return Vec::new();
        };
        let signer = Signer::new(
            Credentials {
                access_key_id: &keys.access_key_id,
                secret_access_key: &keys.secret_access_key,
                session_token: keys.session_token.as_deref(),
            },
            &self.region,
            "bedrock",
        );
        let (path, query) = call.path.split_once('?').unwrap_or((call.path, ""));
        let request = Request {
            method: "POST",
            host: call.host,
            path,
            query,
            headers: &[],
            payload: Payload::Bytes(call.body),
        };
        let Some(time) = DateTime::from_epoch(call.now_ms / 1000) else {
            return Vec::new();
        };
        // Signing fails only on malformed header names or values, which are never ours: an unsigned
        // call is then refused by Bedrock with its own 403.
        signer.sign(&request, time).map(|s| s.headers).unwrap_or_default()
    }
    fn own_credentials(&self) -> bool {
        self.keys.is_some()
    }
    fn framing(&self) -> Framing {
        Framing::EventStream
    }
    fn speaks(&self) -> Option<Dialect> {
        None
    }
    fn translator(&self) -> &dyn Translator {
        self
    }
}

impl Translator for Bedrock {
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
    fn response(&self, body: &[u8], expect: Expect) -> Result<neutral::Completion, ApiError> {
        response(body, expect, &self.model)
    }
    fn error(&self, status: u16, body: &[u8]) -> neutral::Error {
        error(status, body)
    }
    fn stream(&self, expect: Expect) -> Box<dyn StreamDecoder> {
        Box::new(Decoder::new(expect, &self.model))
    }
    fn embeddings(
        &self,
        req: &neutral::EmbeddingsRequest<'_>,
        unsupported: &mut Unsupported,
    ) -> Result<Vec<u8>, ApiError> {
        embeddings(req, self.titan(), unsupported)
    }
    fn embeddings_response(&self, body: &[u8]) -> Result<neutral::Embeddings, ApiError> {
        embeddings_response(body)
    }
}

/// The neutral reason for a Converse `stopReason`.
pub fn finish(reason: &str) -> Finish {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => Finish::Length,
        "tool_use" => Finish::ToolCalls,
        "stop_sequence" => Finish::StopSequence,
        "guardrail_intervened" | "content_filtered" => Finish::ContentFilter,
        _ => Finish::Stop,
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A Converse `usage` object: `inputTokens` is the uncached part of the prompt, to which the cache
/// reads and writes add (as Anthropic counts them).
pub fn usage_object(u: &Value) -> Option<Usage> {
    if !u.is_object() {
        return None;
    }
    let read = count(u, "cacheReadInputTokens");
    let write = count(u, "cacheWriteInputTokens");
    Some(
        Usage {
            cached_tokens: read,
            cache_write_tokens: write,
            ..Usage::new(
                count(u, "inputTokens").saturating_add(read).saturating_add(write),
                count(u, "outputTokens"),
            )
        }
        .checked(),
    )
}

/// The usage of a Converse answer.
pub fn usage(answer: &Value) -> Option<Usage> {
    usage_object(answer.get("usage")?)
}

/// The AWS error code of an HTTP status, as Bedrock names them.
fn status_code(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        401 | 403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}

/// An AWS error name (`ThrottlingException`, `throttlingException`) as a code: `throttling_exception`.
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The OpenAI error type of an AWS error name.
pub fn kind(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "validationexception" => "invalid_request_error",
        "accessdeniedexception" | "unrecognizedclientexception" => "permission_error",
        "resourcenotfoundexception" => "not_found_error",
        "throttlingexception" | "servicequotaexceededexception" => "rate_limit_error",
        "modeltimeoutexception" => "timeout_error",
        "serviceunavailableexception" => "overloaded_error",
        _ => "api_error",
    }
}

/// A Bedrock error answer (`{"message": …}`, the type named by `__type` when there is one, else by
/// the status): type and code from the AWS error name (`throttling_exception`).
pub fn error(status: u16, body: &[u8]) -> neutral::Error {
    let v = serde_json::from_slice::<Value>(body).ok();
    let message = v.as_ref().and_then(|v| {
        v.get("message")
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
    });
    let Some(message) = message else {
        return super::openai::error(status, body);
    };
    let name = v
        .as_ref()
        .and_then(|v| v.get("__type"))
        .and_then(Value::as_str)
        .map(|t| t.rsplit('#').next().unwrap_or(t))
        .unwrap_or_else(|| status_code(status));
    neutral::Error::new(message.trim(), kind(name), snake(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn config(v: Value, env: &dyn Fn(&str) -> Option<String>, has_key: bool) -> Result<Bedrock, String> {
        let c: Config = serde_json::from_value(v).map_err(|e| e.to_string())?;
        c.compile(
            Some("anthropic.claude-3-5-haiku-20241022-v1:0".into()),
            &|f| format!("t.{f}"),
            env,
            has_key,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn credentials_from_env_config_or_key() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
            "TOK" => Some("session".to_string()),
            _ => None,
        };
        let b = config(json!({"region": "us-east-1"}), &env, false).unwrap();
        assert!(b.own_credentials());
        assert_eq!(
            b.path(Api::ChatCompletions, true).as_deref(),
            Some("/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream")
        );
        let call = Outgoing {
            key: None,
            host: "bedrock-runtime.us-east-1.amazonaws.com",
            path: "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
            body: b"{}",
            now_ms: 1_700_000_000_000,
        };
        let h = b.headers(&call);
        let names: Vec<&str> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["authorization", "x-amz-date", "x-amz-content-sha256"]);
        assert!(h[0].1.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ), "{}", h[0].1);
        assert_eq!(h[1].1, "20231114T221320Z");
        assert_eq!(h[2].1, crate::crypto::hex(&crate::crypto::sha256(b"{}")));
        let with_token = config(
            json!({"region": "eu-west-3", "aws": {"access_key_id": {"value": "A"}, "secret_access_key": {"value": "S"},
                   "session_token": {"env": "TOK"}}}),
            &env,
            false,
        )
        .unwrap();
        let h = with_token.headers(&call);
        assert!(
            h.iter()
                .any(|(n, v)| *n == "x-amz-security-token" && v == "session"),
            "{h:?}"
        );
        let keyed = config(json!({"region": "us-west-2"}), &|_| None, true).unwrap();
        assert!(!keyed.own_credentials());
        assert_eq!(
            keyed.headers(&Outgoing::key(Some("bedrock-api-key"))),
            vec![("authorization", "Bearer bedrock-api-key".to_string())]
        );
        let err = config(json!({"region": "us-east-1"}), &|_| None, false).unwrap_err();
        assert!(
            err.starts_with("t.aws: a bedrock target needs credentials"),
            "{err}"
        );
        let err = config(json!({"region": "US East"}), &env, false).unwrap_err();
        assert!(err.starts_with("t.region: must be an AWS region"), "{err}");
        assert!(
            config(json!({"region": "us-east-1", "project": "p"}), &env, false)
                .unwrap_err()
                .contains("unknown field `project`")
        );
    }

    #[test]
    fn usage_stop_reasons_and_errors() {
        let v = json!({"usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 25,
                                 "cacheReadInputTokens": 8, "cacheWriteInputTokens": 2}});
        assert_eq!(
            usage(&v),
            Some(Usage {
                cached_tokens: 8,
                cache_write_tokens: 2,
                ..Usage::new(20, 5)
            })
        );
        assert_eq!(usage(&json!({})), None);
        for (reason, want) in [
            ("end_turn", Finish::Stop),
            ("tool_use", Finish::ToolCalls),
            ("max_tokens", Finish::Length),
            ("stop_sequence", Finish::StopSequence),
            ("guardrail_intervened", Finish::ContentFilter),
            ("content_filtered", Finish::ContentFilter),
        ] {
            assert_eq!(finish(reason), want, "{reason}");
        }
        let cases: Vec<(u16, &[u8], neutral::Error)> = vec![
            (
                429,
                br#"{"message":"Too many requests, please wait before trying again."}"#,
                neutral::Error::new(
                    "Too many requests, please wait before trying again.",
                    "rate_limit_error",
                    "throttling_exception",
                ),
            ),
            (
                400,
                br#"{"__type":"com.amazon.coral.validate#ValidationException","message":"bad"}"#,
                neutral::Error::new("bad", "invalid_request_error", "validation_exception"),
            ),
            (
                403,
                br#"{"Message":"The security token included in the request is invalid."}"#,
                neutral::Error::new(
                    "The security token included in the request is invalid.",
                    "permission_error",
                    "access_denied_exception",
                ),
            ),
            (
                502,
                b"<html/>",
                neutral::Error::new("<html/>", "upstream_error", "upstream_502"),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(error(status, body), want, "{status}");
        }
    }
}
