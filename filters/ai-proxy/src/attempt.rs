//! One upstream attempt made by the filter itself (callout mode): the call, and what its answer means.
//!
//! In callout mode the answer arrives whole, so it can be judged before the client sees a byte: a 2xx
//! that cannot be translated, or a stream without its terminator, is a failure like a 5xx, and the
//! request can still go elsewhere.

use crate::config::{Provider, RetryOn, Target};
use shared::anthropic::{self, AnthropicStream};
use shared::error::ApiError;
use shared::host::{CallResponse, HostKind, HttpCall, Upstream};
use shared::openai::{self, OpenAiStream};
use shared::usage::{self, Usage};

/// Headers that carry the target's credentials and API version, for forwarding and for callouts.
pub fn credentials(target: &Target) -> Vec<(&'static str, String)> {
    let mut h = Vec::with_capacity(2);
    if let Some(key) = &target.api_key {
        match target.provider {
            Provider::Openai | Provider::OpenaiCompatible => {
                h.push(("authorization", format!("Bearer {key}")))
            }
            Provider::Azure => h.push(("api-key", key.clone())),
            Provider::Anthropic => h.push(("x-api-key", key.clone())),
        }
    }
    if target.provider == Provider::Anthropic {
        h.push(("anthropic-version", target.anthropic_version.clone()));
    }
    h
}

/// The call for one attempt on `target`. `body` is the request already translated for it.
pub fn call(target: &Target, body: Vec<u8>, kind: HostKind, client_auth: Option<String>) -> HttpCall {
    let mut headers: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    headers.extend(credentials(target).into_iter().map(|(k, v)| (k.to_string(), v)));
    if target.api_key.is_none() {
        if let Some(auth) = client_auth {
            headers.push(("authorization".into(), auth));
        }
    }
    // Kong reaches `host:port` directly and needs to be told to use TLS.
    if kind == HostKind::Kong && target.host.ends_with(":443") {
        headers.push((":scheme".into(), "https".into()));
    }
    HttpCall {
        upstream: Upstream {
            cluster: target.cluster.clone(),
            host: target.host.clone(),
        },
        method: "POST".into(),
        path: target.path.clone(),
        headers,
        body,
        timeout_ms: target.resilience.timeout_ms,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: refused, reset, or dropped midway (a cut stream lands here).
    ConnectFailure,
    Timeout,
    InvalidResponse(String),
    Status {
        status: u16,
        body: Vec<u8>,
    },
}

impl Failure {
    pub fn matches(&self, on: &[RetryOn]) -> bool {
        on.iter().any(|r| match (r, self) {
            (RetryOn::ConnectFailure, Failure::ConnectFailure) | (RetryOn::Timeout, Failure::Timeout) => true,
            (RetryOn::InvalidResponse, Failure::InvalidResponse(_)) => true,
            (RetryOn::Status(s), Failure::Status { status, .. }) => s == status,
            _ => false,
        })
    }

    /// A client error (4xx other than 408 and 429) would fail on every target: it is final, and it
    /// says nothing about the target's health.
    pub fn is_target_fault(&self) -> bool {
        match self {
            Failure::Status { status, .. } => {
                !((400..500).contains(status) && *status != 408 && *status != 429)
            }
            _ => true,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Failure::ConnectFailure => "connect-failure".into(),
            Failure::Timeout => "timeout".into(),
            Failure::InvalidResponse(_) => "invalid-response".into(),
            Failure::Status { status, .. } => format!("status-{status}"),
        }
    }

    /// What the client gets when this was the last attempt: status and OpenAI-shaped body.
    pub fn to_client(&self, provider: Provider) -> (u16, Vec<u8>) {
        match self {
            Failure::ConnectFailure => {
                let e = ApiError::upstream(
                    502,
                    "upstream_unavailable",
                    "the model provider could not be reached",
                );
                (e.status, e.body())
            }
            Failure::Timeout => {
                let e = ApiError::upstream(
                    504,
                    "upstream_timeout",
                    "the model provider did not answer in time",
                );
                (e.status, e.body())
            }
            Failure::InvalidResponse(why) => {
                let e = ApiError::upstream(502, "bad_upstream_response", why.clone());
                (e.status, e.body())
            }
            Failure::Status { status, body } => {
                let body = match provider {
                    Provider::Anthropic => anthropic::error_to_openai(*status, body),
                    _ => openai::error_from_upstream(*status, body).unwrap_or_else(|| body.clone()),
                };
                (*status, body)
            }
        }
    }
}

/// A successful answer, translated to what the client asked for.
#[derive(Debug)]
pub struct Success {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub usage: Option<Usage>,
}

/// What the client asked for, which decides how an answer is judged and translated.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub stream: bool,
    pub include_usage: bool,
    /// We asked an OpenAI-style provider for the usage chunk; strip it again.
    pub injected_usage: bool,
    pub created: u64,
}

/// Judges a callout's answer. Envoy answers a failed call before any headers with a local reply of its
/// own (503 `upstream connect error…`, 504 `upstream request timeout`), and a failure after the
/// headers with no status at all; Kong answers every failure with no status and `:dispatch_status`.
pub fn classify(target: &Target, resp: &CallResponse, wanted: Wanted) -> Result<Success, Failure> {
    let Some(status) = resp.status else {
        let dispatch = resp
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(":dispatch_status"));
        return Err(match dispatch {
            Some((_, v)) if v.contains("timeout") => Failure::Timeout,
            _ => Failure::ConnectFailure,
        });
    };
    let text_starts = |p: &str| resp.body.starts_with(p.as_bytes());
    if status == 504 && text_starts("upstream request timeout") {
        return Err(Failure::Timeout);
    }
    if status == 503 && (text_starts("upstream connect error") || text_starts("no healthy upstream")) {
        return Err(Failure::ConnectFailure);
    }
    if !(200..300).contains(&status) {
        return Err(Failure::Status {
            status,
            body: resp.body.clone(),
        });
    }
    let anthropic = target.provider == Provider::Anthropic;
    if wanted.stream {
        let (mut out, done, usage) = if anthropic {
            let mut s = AnthropicStream::new(wanted.created, wanted.include_usage);
            let mut out = s.feed(&resp.body);
            let done = s.is_done();
            out.extend_from_slice(&s.finish());
            (out, done, s.usage())
        } else {
            let mut s = OpenAiStream::new(wanted.injected_usage);
            let out = s.feed(&resp.body).unwrap_or_else(|| resp.body.clone());
            let done = s.is_done();
            let mut out = out;
            out.extend_from_slice(&s.finish());
            (out, done, s.usage())
        };
        if !done {
            return Err(Failure::InvalidResponse(
                "the provider's stream ended before completion".into(),
            ));
        }
        out.shrink_to_fit();
        return Ok(Success {
            body: out,
            content_type: "text/event-stream",
            usage,
        });
    }
    if anthropic {
        return match anthropic::response_to_openai(&resp.body, wanted.created) {
            Ok((body, usage)) => Ok(Success {
                body,
                content_type: "application/json",
                usage: Some(usage),
            }),
            Err(e) => Err(Failure::InvalidResponse(e.message)),
        };
    }
    match serde_json::from_slice::<serde_json::Value>(&resp.body) {
        Ok(v) if v.get("choices").is_some_and(serde_json::Value::is_array) => Ok(Success {
            usage: usage::from_openai_json(&v),
            body: resp.body.clone(),
            content_type: "application/json",
        }),
        _ => Err(Failure::InvalidResponse(
            "the provider's answer is not a chat completion".into(),
        )),
    }
}
