//! Model providers, one module each, behind one trait, and the one translation core both front doors
//! use.
//!
//! A target's provider is configured as a tagged enum ([`ProviderConfig`], `{"provider": "anthropic",
//! ...}`), so a field that belongs to one provider is refused by serde, with its name, on every other.
//! Once checked it is a [`Provider`]: the endpoint path of each API it serves, the credential headers,
//! the stream [`Framing`], the client dialect it speaks natively ([`Provider::speaks`]) and a
//! [`Translator`] between its dialect and the [`neutral`] shapes.
//!
//! Clients come through one of two doors ([`crate::api::Dialect`]): OpenAI Chat Completions (and
//! Embeddings) or Anthropic Messages. When the target speaks the door's dialect the body passes as it is
//! (with the target's model); otherwise the door's dialect decodes it into [`neutral`]
//! ([`openai::decode`], [`anthropic::decode`]), the target's [`Translator`] renders it, and the answer
//! comes back the same way in reverse. Both ai-proxy modes use the one path in [`Exchange`] and
//! [`Reply`]: forward mode feeds the answer chunk by chunk, callout mode whole.
//!
//! | module | provider values | dialect | auth | chat path | embeddings |
//! |---|---|---|---|---|---|
//! | [`openai`] | `openai`, `openai_compatible` | OpenAI (a door) | `authorization: Bearer` | `/v1/chat/completions` | `/v1/embeddings` |
//! | [`azure`] | `azure` | OpenAI | `api-key` | `/openai/deployments/{d}/chat/completions?api-version=` | `/openai/deployments/{d}/embeddings?api-version=` |
//! | [`anthropic`] | `anthropic` | Anthropic Messages (a door) | `x-api-key`, `anthropic-version` | `/v1/messages` | none |
//!
//! # Adding a provider
//! A provider (Gemini, Bedrock) touches:
//! 1. `shared/src/provider/<name>.rs` (new): its raw `Config` (serde, `deny_unknown_fields`) and its
//!    compile step; a type implementing [`Provider`] (`path` may depend on `stream` and embed the model,
//!    as Gemini's `:streamGenerateContent?alt=sse`; `headers` gets the key, as `x-goog-api-key`;
//!    `speaks` is `None`: no door speaks its dialect) and [`Translator`] with a [`StreamDecoder`] for its
//!    [`Framing`]: it renders [`neutral::Request`] (calling [`neutral::Unsupported::parameter`] for what
//!    it cannot take, so the model's `drop_unsupported_params` applies) and decodes answers, errors and
//!    stream events into [`neutral`]; table-driven tests on recorded payloads added to
//!    `shared/tests/fixtures/`.
//! 2. this file: `pub mod <name>;`, one [`ProviderConfig`] variant and its arm in
//!    [`ProviderConfig::compile`], its key header in [`CREDENTIAL_HEADERS`] if it is a new one, and its
//!    usage shapes in [`usage_of`] and [`NativeStreamUsage`] (read by filters that see its answers
//!    untranslated).
//! 3. `filters/ai-proxy/ai_proxy.meta.json`: the provider value and one `oneOf` entry listing its
//!    fields; new fixtures in `filters/ai-proxy/fixtures/{valid,invalid}` (an invalid one per field of
//!    its own, set on another provider).
//! 4. `tests/src/mock/`: its wire format on the mock provider; an end-to-end case in
//!    `tests/tests/proxy.rs`.
//! 5. `README.md`: the provider list, its fields in the ai-proxy table, and its column in the
//!    translation tables.
//!
//! So: one new module and five existing files (this one, the schema, the mock, `proxy.rs`, the
//! README), plus new fixture files. No filter code changes, and both doors reach it. Still to come with
//! the first such provider: an NDJSON or AWS event-stream decoder behind [`Framing::decoder`] (from
//! `shared::framing`), and for Bedrock's SigV4, `headers` seeing the final body, path and time (today it
//! sees only the key).

pub mod anthropic;
pub mod azure;
mod exchange;
pub mod neutral;
pub mod openai;
pub mod target;

pub use crate::api::{Api, Dialect};
pub use exchange::{client_error, ChatRequest, Exchange, Reply, TranslatedStream};
pub use neutral::OnUnsupported;

use crate::config::ConfigError;
use crate::error::ApiError;
use crate::sse::{SseEvent, SseParser};
use crate::usage::Usage;
use serde_json::Value;
use std::borrow::Cow;

/// A target's provider, checked at load.
pub trait Provider: std::fmt::Debug {
    /// The config's `provider` value: the `x-ai-provider` header, metric labels, logs.
    fn name(&self) -> &'static str;
    /// The model named upstream (Azure: the deployment); also the key of the `prices` table.
    fn model(&self) -> &str;
    /// The path (and query) of a call of `api`, unless the target overrides it; `None` when the
    /// provider does not serve that API (embeddings on Anthropic).
    fn path(&self, api: Api, stream: bool) -> Option<Cow<'_, str>>;
    /// The headers that carry the target's key (`None` without `auth`: the client's own credentials
    /// go through) and the provider's API version.
    fn headers(&self, key: Option<&str>) -> Vec<(&'static str, String)>;
    /// How its streamed answers are framed.
    fn framing(&self) -> Framing {
        Framing::Sse
    }
    /// The door dialect whose bodies it takes as they are (`None`: it speaks only its own).
    fn speaks(&self) -> Option<Dialect>;
    /// Its dialect to and from the [`neutral`] shapes.
    fn translator(&self) -> &dyn Translator;
}

/// What reading an answer needs to know about how its request was rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expect {
    /// The client's `response_format` was sent as a forced tool (Anthropic's way to structured
    /// output): that tool's input is the answer's content, and its call is no tool call.
    pub format_tool: bool,
}

/// A request rendered for a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: Vec<u8>,
    pub expect: Expect,
}

/// A provider's own dialect, to and from the [`neutral`] shapes.
pub trait Translator {
    /// How messages name the provider: "`seed` is not supported for Anthropic targets".
    fn label(&self) -> &'static str;
    /// The request body for this provider. Parameters it cannot take go through `unsupported`
    /// (refused, or dropped and noted); content it cannot read is refused.
    fn request(
        &self,
        req: &neutral::Request<'_>,
        unsupported: &mut neutral::Unsupported,
    ) -> Result<Rendered, ApiError>;
    /// A 2xx JSON answer; an error (502 `bad_upstream_response`) when it cannot be read.
    fn response(&self, body: &[u8], expect: Expect) -> Result<neutral::Completion, ApiError>;
    /// An error answer: its message, type and code, from this provider's error shape, or the body's
    /// text when it has another.
    fn error(&self, status: u16, body: &[u8]) -> neutral::Error;
    /// A decoder for one streamed answer.
    fn stream(&self, expect: Expect) -> Box<dyn StreamDecoder>;
}

/// Decodes one streamed answer, frame by frame, into [`neutral::Event`]s handed to `emit` (they
/// borrow from the frame's parsed JSON, so nothing is copied on the way).
pub trait StreamDecoder {
    fn decode(&mut self, frame: &Frame, emit: &mut dyn FnMut(neutral::Event<'_>));
    /// The usage reported so far.
    fn usage(&self) -> Option<Usage>;
}

/// One frame of a stream: an SSE event; an NDJSON line or an AWS event-stream message will map onto it
/// (`event` the message's `:event-type`, `data` its payload).
pub type Frame = SseEvent;

/// How a provider delimits the events of a streamed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events (OpenAI, Azure, Anthropic; Gemini with `alt=sse`).
    Sse,
    /// One JSON document per line.
    Ndjson,
    /// AWS event-stream binary messages (Bedrock).
    EventStream,
}

impl Framing {
    pub fn content_type(self) -> &'static str {
        match self {
            Framing::Sse => "text/event-stream",
            Framing::Ndjson => "application/x-ndjson",
            Framing::EventStream => "application/vnd.amazon.eventstream",
        }
    }

    /// Whether a response's `content-type` says it is framed this way.
    pub fn matches(self, content_type: &str) -> bool {
        content_type.to_ascii_lowercase().contains(self.content_type())
    }

    /// A decoder for this framing; `None` for the framings whose decoders are not written yet
    /// (NDJSON, event-stream: no provider uses them so far).
    pub fn decoder(self) -> Option<Frames> {
        match self {
            Framing::Sse => Some(Frames::Sse(SseParser::new())),
            Framing::Ndjson | Framing::EventStream => None,
        }
    }
}

/// An incremental decoder of one [`Framing`].
#[derive(Debug)]
pub enum Frames {
    Sse(SseParser),
}

impl Frames {
    /// The frames completed by `chunk`.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Frame> {
        match self {
            Frames::Sse(p) => p.feed(chunk),
        }
    }

    /// The end of the stream: a last frame that lacked its terminator.
    pub fn finish(&mut self) -> Vec<Frame> {
        match self {
            Frames::Sse(p) => p.finish(),
        }
    }
}

/// Request headers that carry a provider key. A target with a key of its own removes all of them from
/// the client's request, so no client credential reaches a provider.
pub const CREDENTIAL_HEADERS: &[&str] = &["authorization", "api-key", "x-api-key"];

/// A target's provider as configured: the `provider` tag picks the variant, and each variant refuses
/// the fields of the others.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum ProviderConfig {
    Openai(openai::Config),
    OpenaiCompatible(openai::Config),
    Azure(azure::Config),
    Anthropic(anthropic::Config),
}

impl ProviderConfig {
    /// Checks the provider's fields. `model` is the target's `model`; `at` names a field of the
    /// target in errors (`targets[1].deployment`).
    pub fn compile(
        self,
        model: Option<String>,
        at: &dyn Fn(&str) -> String,
    ) -> Result<Box<dyn Provider>, ConfigError> {
        Ok(match self {
            ProviderConfig::Openai(c) => Box::new(c.compile(openai::Flavor::OpenAi, model, at)?),
            ProviderConfig::OpenaiCompatible(c) => {
                Box::new(c.compile(openai::Flavor::Compatible, model, at)?)
            }
            ProviderConfig::Azure(c) => Box::new(c.compile(model, at)?),
            ProviderConfig::Anthropic(c) => Box::new(c.compile(model, at)?),
        })
    }
}

/// The target's `model`, for providers that need one.
fn required_model(model: Option<String>, at: &dyn Fn(&str) -> String) -> Result<String, ConfigError> {
    match model {
        Some(m) if !m.trim().is_empty() => Ok(m),
        Some(_) => Err(ConfigError::new(at("model"), "model must not be empty")),
        None => Err(ConfigError::new(at("model"), "model is required")),
    }
}

/// The usage of a JSON answer of any provider, for filters that see answers without knowing who sent
/// them (the rate limit: on Kong its response callbacks run before ai-proxy has translated the answer).
pub fn usage_of(answer: &Value) -> Option<Usage> {
    if answer.get("type").and_then(Value::as_str) == Some("message") {
        anthropic::usage(answer)
    } else {
        openai::usage(answer)
    }
}

/// The usage of a streamed answer in a provider's own dialect, event by event, for the same filters
/// (OpenAI's usage chunk is read by [`openai::OpenAiStream`], which can also strip it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NativeStreamUsage {
    anthropic: anthropic::StreamUsage,
}

impl NativeStreamUsage {
    pub fn observe(&mut self, ev: &Frame) {
        self.anthropic.observe(ev);
    }

    pub fn usage(&self) -> Option<Usage> {
        self.anthropic.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn compile(v: Value) -> Result<Box<dyn Provider>, String> {
        let model = v.get("model").and_then(Value::as_str).map(str::to_string);
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.remove("model");
        }
        let raw: ProviderConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        raw.compile(model, &|f| format!("t.{f}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_provider_refuses_the_fields_of_the_others() {
        let cases = [
            (
                json!({"provider": "openai", "anthropic_version": "x"}),
                "anthropic_version",
            ),
            (
                json!({"provider": "openai", "default_max_tokens": 5}),
                "default_max_tokens",
            ),
            (json!({"provider": "openai", "deployment": "d"}), "deployment"),
            (json!({"provider": "openai", "api_version": "v"}), "api_version"),
            (
                json!({"provider": "openai_compatible", "default_max_tokens": 5}),
                "default_max_tokens",
            ),
            (
                json!({"provider": "openai_compatible", "deployment": "d"}),
                "deployment",
            ),
            (json!({"provider": "anthropic", "deployment": "d"}), "deployment"),
            (
                json!({"provider": "anthropic", "api_version": "v"}),
                "api_version",
            ),
            (
                json!({"provider": "azure", "deployment": "d", "anthropic_version": "x"}),
                "anthropic_version",
            ),
            (
                json!({"provider": "azure", "deployment": "d", "default_max_tokens": 1}),
                "default_max_tokens",
            ),
            (json!({"provider": "openai", "bogus": 1}), "bogus"),
        ];
        for (v, field) in cases {
            let err = compile(v.clone()).unwrap_err();
            assert!(err.contains(&format!("unknown field `{field}`")), "{v}: {err}");
        }
    }

    #[test]
    fn compiles_each_provider() {
        let cases = [
            (
                json!({"provider": "openai", "model": "gpt"}),
                "openai",
                "gpt",
                "/v1/chat/completions",
                Some("/v1/embeddings"),
                Some(Dialect::OpenAi),
            ),
            (
                json!({"provider": "openai_compatible", "model": "llama"}),
                "openai_compatible",
                "llama",
                "/v1/chat/completions",
                Some("/v1/embeddings"),
                Some(Dialect::OpenAi),
            ),
            (
                json!({"provider": "azure", "deployment": "dep", "model": "ignored"}),
                "azure",
                "dep",
                "/openai/deployments/dep/chat/completions?api-version=2024-10-21",
                Some("/openai/deployments/dep/embeddings?api-version=2024-10-21"),
                Some(Dialect::OpenAi),
            ),
            (
                json!({"provider": "azure", "deployment": "dep", "api_version": "2025-01-01"}),
                "azure",
                "dep",
                "/openai/deployments/dep/chat/completions?api-version=2025-01-01",
                Some("/openai/deployments/dep/embeddings?api-version=2025-01-01"),
                Some(Dialect::OpenAi),
            ),
            (
                json!({"provider": "anthropic", "model": "claude"}),
                "anthropic",
                "claude",
                "/v1/messages",
                None,
                Some(Dialect::Anthropic),
            ),
        ];
        for (v, name, model, path, embeddings, speaks) in cases {
            let p = compile(v.clone()).unwrap();
            assert_eq!((p.name(), p.model()), (name, model), "{v}");
            for stream in [false, true] {
                assert_eq!(p.path(Api::ChatCompletions, stream).as_deref(), Some(path), "{v}");
                assert_eq!(p.path(Api::Messages, stream).as_deref(), Some(path), "{v}");
            }
            assert_eq!(p.path(Api::Embeddings, false).as_deref(), embeddings, "{v}");
            assert_eq!(p.framing(), Framing::Sse);
            assert_eq!(p.speaks(), speaks, "{v}");
        }
    }

    #[test]
    fn provider_rules_name_the_field() {
        let cases = [
            (json!({"provider": "openai"}), "t.model: model is required"),
            (
                json!({"provider": "anthropic", "model": " "}),
                "t.model: model must not be empty",
            ),
            (
                json!({"provider": "azure"}),
                "t.deployment: deployment is required",
            ),
            (
                json!({"provider": "azure", "deployment": ""}),
                "t.deployment: deployment must not be empty",
            ),
            (
                json!({"provider": "azure", "deployment": "d", "api_version": " "}),
                "t.api_version: must not be empty",
            ),
            (
                json!({"provider": "azure", "deployment": "d", "model": ""}),
                "t.model: model must not be empty",
            ),
            (
                json!({"provider": "anthropic", "model": "c", "default_max_tokens": 0}),
                "t.default_max_tokens: must be at least 1",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(compile(v.clone()).unwrap_err(), want, "{v}");
        }
        assert!(compile(json!({"provider": "gemini", "model": "g"}))
            .unwrap_err()
            .contains("unknown variant `gemini`"));
        assert!(compile(json!({"model": "g"}))
            .unwrap_err()
            .contains("missing field `provider`"));
    }

    #[test]
    fn credential_headers() {
        let headers = |v: Value, key: Option<&str>| compile(v).unwrap().headers(key);
        let cases = [
            (
                json!({"provider": "openai", "model": "m"}),
                Some("k"),
                vec![("authorization", "Bearer k".to_string())],
            ),
            (
                json!({"provider": "openai_compatible", "model": "m"}),
                None,
                vec![],
            ),
            (
                json!({"provider": "azure", "deployment": "d"}),
                Some("k"),
                vec![("api-key", "k".into())],
            ),
            (
                json!({"provider": "anthropic", "model": "m"}),
                Some("k"),
                vec![
                    ("x-api-key", "k".into()),
                    ("anthropic-version", "2023-06-01".into()),
                ],
            ),
            (
                json!({"provider": "anthropic", "model": "m", "anthropic_version": "2024-01-01"}),
                None,
                vec![("anthropic-version", "2024-01-01".into())],
            ),
        ];
        for (v, key, want) in &cases {
            assert_eq!(&headers(v.clone(), *key), want, "{v}");
        }
        for (name, _) in cases.iter().flat_map(|(_, _, h)| h) {
            assert!(
                CREDENTIAL_HEADERS.contains(name) || *name == "anthropic-version",
                "{name} is a key header the client's request is not cleaned of"
            );
        }
    }

    #[test]
    fn framings() {
        assert!(Framing::Sse.matches("text/event-stream; charset=utf-8"));
        assert!(Framing::Sse.matches("Text/Event-Stream"));
        assert!(!Framing::Sse.matches("application/json"));
        assert!(Framing::Ndjson.matches("application/x-ndjson"));
        assert!(Framing::EventStream.matches("application/vnd.amazon.eventstream"));
        let mut frames = Framing::Sse.decoder().unwrap();
        let mut got = frames.feed(b"event: a\ndata: 1\n\ndata: 2\n");
        got.extend(frames.finish());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].event.as_deref(), Some("a"));
        assert_eq!(got[1].data, "2");
        assert!(Framing::Ndjson.decoder().is_none() && Framing::EventStream.decoder().is_none());
    }

    #[test]
    fn native_stream_usage() {
        let mut frames = Framing::Sse.decoder().unwrap();
        let mut u = NativeStreamUsage::default();
        for f in frames.feed(include_bytes!("../../tests/fixtures/anthropic_stream.sse")) {
            u.observe(&f);
        }
        assert_eq!(
            u.usage().map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((35, 15))
        );
        let mut none = NativeStreamUsage::default();
        for f in frames.feed(include_bytes!("../../tests/fixtures/openai_stream_usage.sse")) {
            none.observe(&f);
        }
        assert_eq!(
            none.usage(),
            None,
            "OpenAI's usage chunk is OpenAiStream's to read"
        );
    }

    #[test]
    fn usage_of_either_dialect() {
        let cases = [
            (
                json!({"usage": {"prompt_tokens": 2, "completion_tokens": 3}}),
                Some((2, 3)),
            ),
            (
                json!({"type": "message", "usage": {"input_tokens": 4, "output_tokens": 5}}),
                Some((4, 5)),
            ),
            (json!({"type": "message", "usage": {"prompt_tokens": 4}}), None),
            (json!({"choices": []}), None),
        ];
        for (v, want) in cases {
            let got = usage_of(&v).map(|u| (u.prompt_tokens, u.completion_tokens));
            assert_eq!(got, want, "{v}");
        }
    }
}
