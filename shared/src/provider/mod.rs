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
//! | [`bedrock`] | `bedrock` | Bedrock Converse | SigV4 (`authorization`, `x-amz-date`, `x-amz-content-sha256`) or `authorization: Bearer` | `/model/{id}/converse` (`/converse-stream`) | `/model/{id}/invoke` (Titan, Cohere) |
//! | [`gemini`] | `gemini`, `vertex_ai` | Gemini | `x-goog-api-key` / `authorization: Bearer` | `…/models/{m}:generateContent` (`:streamGenerateContent?alt=sse`) | `:batchEmbedContents` / `:predict` |
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
//! README), plus new fixture files. No filter code changes, and both doors reach it. Every [`Framing`]
//! has its incremental decoder ([`Framing::decoder`], from `shared::framing`: SSE, NDJSON, AWS
//! event-stream with both CRCs, a corrupt message a [`FrameFault`] that ends the stream as an invalid
//! answer); `headers` sees the final call ([`Outgoing`]: host, path, body, time) so a signature such
//! as SigV4 can cover it; a dialect with no end event of its own reads the end of the body in
//! [`StreamDecoder::finish`] (Gemini); embeddings in another dialect go through
//! [`Translator::embeddings`] ([`openai::embeddings`] reads and writes the door's side).

pub mod anthropic;
pub mod azure;
pub mod bedrock;
mod exchange;
pub mod gemini;
pub mod neutral;
pub mod openai;
pub mod target;

pub use crate::api::{Api, Dialect};
pub use exchange::{client_error, task_answer, ChatRequest, Exchange, Reply, TranslatedStream};
pub use neutral::OnUnsupported;

use crate::config::ConfigError;
use crate::error::ApiError;
use crate::framing::{eventstream, ndjson};
use crate::sse::{SseEvent, SseParser};
use crate::usage::Usage;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// A target's provider, checked at load.
pub trait Provider: std::fmt::Debug {
    /// The config's `provider` value: the `x-ai-provider` header, metric labels, logs.
    fn name(&self) -> &'static str;
    /// The model named upstream (Azure: the deployment); also the key of the `prices` table.
    fn model(&self) -> &str;
    /// The path (and query) of a call of `api`, unless the target overrides it; `None` when the
    /// provider does not serve that API (embeddings on Anthropic).
    fn path(&self, api: Api, stream: bool) -> Option<Cow<'_, str>>;
    /// The headers that authenticate `call` (the target's key, or a signature over the call) and the
    /// provider's API version. Without credentials of its own the client's go through (see
    /// [`Provider::own_credentials`]).
    fn headers(&self, call: &Outgoing<'_>) -> Vec<(&'static str, String)>;
    /// The provider authenticates every call itself even without the target's `auth` (Bedrock's
    /// SigV4 credentials), so the client's credentials never go along.
    fn own_credentials(&self) -> bool {
        false
    }
    /// How its streamed answers are framed.
    fn framing(&self) -> Framing {
        Framing::Sse
    }
    /// The door dialect whose bodies it takes as they are (`None`: it speaks only its own).
    fn speaks(&self) -> Option<Dialect>;
    /// Its dialect to and from the [`neutral`] shapes.
    fn translator(&self) -> &dyn Translator;
}

/// One upstream call as it will be sent: what its credentials may depend on (an API key depends on
/// nothing here; AWS SigV4 signs the host, the path, the body and the time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The target's key (`auth`), if it has one.
    pub key: Option<&'a str>,
    /// The `host` header sent (the `:authority`, `:443` dropped).
    pub host: &'a str,
    /// Path and query, as sent.
    pub path: &'a str,
    pub body: &'a [u8],
    /// The host's clock, in ms since the Unix epoch.
    pub now_ms: u64,
}

impl<'a> Outgoing<'a> {
    /// A call that only a key authenticates (tests, and providers whose headers need nothing else).
    pub fn key(key: Option<&'a str>) -> Outgoing<'a> {
        Outgoing {
            key,
            host: "",
            path: "",
            body: b"",
            now_ms: 0,
        }
    }
}

/// What reading an answer needs to know about how its request was rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expect {
    /// The client's `response_format` was sent as a forced tool (Anthropic's and Bedrock's way to
    /// structured output): that tool's input is the answer's content, and its call is no tool call.
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
    /// The body of an embeddings call, for providers that serve embeddings in another dialect than
    /// OpenAI's (the others get the client's body as it is and never come here).
    fn embeddings(
        &self,
        _req: &neutral::EmbeddingsRequest<'_>,
        _unsupported: &mut neutral::Unsupported,
    ) -> Result<Vec<u8>, ApiError> {
        Err(ApiError::invalid_request(
            "unsupported_feature",
            format!("embeddings are not supported for {} targets", self.label()),
        ))
    }
    /// A 2xx answer of an embeddings call.
    fn embeddings_response(&self, _body: &[u8]) -> Result<neutral::Embeddings, ApiError> {
        Err(ApiError::upstream(
            502,
            "bad_upstream_response",
            format!("{} serves no embeddings", self.label()),
        ))
    }
}

/// Decodes one streamed answer, frame by frame, into [`neutral::Event`]s handed to `emit` (they
/// borrow from the frame's parsed JSON, so nothing is copied on the way).
pub trait StreamDecoder {
    fn decode(&mut self, frame: &Frame, emit: &mut dyn FnMut(neutral::Event<'_>));
    /// The end of the body, for dialects without an end event of their own (Gemini's stream simply
    /// stops after the chunk with the finish reason): what that end means, if anything.
    fn finish(&mut self, _emit: &mut dyn FnMut(neutral::Event<'_>)) {}
    /// The usage reported so far.
    fn usage(&self) -> Option<Usage>;
}

/// One frame of a stream: an SSE event; an NDJSON line (`event` none, `data` the line); an AWS
/// event-stream message (`event` its `:event-type`, or its `:exception-type` for an exception — names
/// that end in `Exception` —, or `error` for an unmodelled error with `data`
/// `{"code": :error-code, "message": :error-message}`; `data` its payload).
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

    /// An incremental decoder for this framing.
    pub fn decoder(self) -> Frames {
        match self {
            Framing::Sse => Frames::Sse(SseParser::new()),
            Framing::Ndjson => Frames::Ndjson(ndjson::LineSplitter::new()),
            Framing::EventStream => Frames::EventStream(eventstream::Decoder::new()),
        }
    }
}

/// Why the bytes of a stream are not frames of its framing: the provider's answer is invalid (a
/// corrupt event-stream message leaves no way to find the next one, so the stream ends there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameFault {
    EventStream(eventstream::FrameError),
    /// An event-stream message without a `:message-type` the decoder knows, or not UTF-8 JSON.
    Message(&'static str),
    Line(ndjson::LineError),
}

impl fmt::Display for FrameFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameFault::EventStream(e) => write!(f, "{e}"),
            FrameFault::Message(what) => write!(f, "event stream message: {what}"),
            FrameFault::Line(e) => write!(f, "{e}"),
        }
    }
}

/// An incremental decoder of one [`Framing`].
#[derive(Debug)]
pub enum Frames {
    Sse(SseParser),
    Ndjson(ndjson::LineSplitter),
    EventStream(eventstream::Decoder),
}

/// An event-stream message as a [`Frame`].
fn message_frame(m: eventstream::Message) -> Result<Frame, FrameFault> {
    let name = match m.message_type() {
        Some("event") => m.event_type(),
        Some("exception") => m.exception_type(),
        Some("error") => {
            let data = serde_json::json!({"code": m.error_code(), "message": m.header_str(":error-message")});
            return Ok(Frame {
                event: Some("error".into()),
                data: data.to_string(),
            });
        }
        _ => return Err(FrameFault::Message("no known :message-type")),
    }
    .map(str::to_string)
    .ok_or(FrameFault::Message("no :event-type or :exception-type"))?;
    let data = String::from_utf8(m.payload).map_err(|_| FrameFault::Message("payload is not UTF-8"))?;
    Ok(Frame {
        event: Some(name),
        data,
    })
}

impl Frames {
    /// The frames completed by `chunk`, and at most one fault, last (a stream with a fault is over).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Result<Frame, FrameFault>> {
        match self {
            Frames::Sse(p) => p.feed(chunk).into_iter().map(Ok).collect(),
            Frames::Ndjson(s) => s.feed(chunk).into_iter().map(line_frame).collect(),
            Frames::EventStream(d) => d
                .feed(chunk)
                .into_iter()
                .map(|m| m.map_err(FrameFault::EventStream).and_then(message_frame))
                .collect(),
        }
    }

    /// The end of the stream: a last frame that lacked its terminator, or the fault of a stream cut
    /// inside a binary message.
    pub fn finish(&mut self) -> Vec<Result<Frame, FrameFault>> {
        match self {
            Frames::Sse(p) => p.finish().into_iter().map(Ok).collect(),
            Frames::Ndjson(s) => s.finish().into_iter().map(line_frame).collect(),
            Frames::EventStream(d) => match d.finish() {
                Ok(()) => Vec::new(),
                Err(e) => vec![Err(FrameFault::EventStream(e))],
            },
        }
    }
}

fn line_frame(line: Result<String, ndjson::LineError>) -> Result<Frame, FrameFault> {
    line.map(|data| Frame { event: None, data })
        .map_err(FrameFault::Line)
}

/// Request headers that carry a provider key. A target with credentials of its own removes all of
/// them from the client's request, so no client credential reaches a provider.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "x-amz-security-token",
];

/// A target's provider as configured: the `provider` tag picks the variant, and each variant refuses
/// the fields of the others.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum ProviderConfig {
    Openai(openai::Config),
    OpenaiCompatible(openai::Config),
    Azure(azure::Config),
    Anthropic(anthropic::Config),
    Gemini(gemini::GeminiConfig),
    VertexAi(gemini::VertexConfig),
    Bedrock(bedrock::Config),
}

impl ProviderConfig {
    /// Checks the provider's fields. `model` is the target's `model`; `at` names a field of the
    /// target in errors (`targets[1].deployment`); `env` reads the VM environment (Bedrock's AWS
    /// credentials); `has_key`: the target has an `auth` of its own.
    pub fn compile(
        self,
        model: Option<String>,
        at: &dyn Fn(&str) -> String,
        env: &dyn Fn(&str) -> Option<String>,
        has_key: bool,
    ) -> Result<Box<dyn Provider>, ConfigError> {
        Ok(match self {
            ProviderConfig::Openai(c) => Box::new(c.compile(openai::Flavor::OpenAi, model, at)?),
            ProviderConfig::OpenaiCompatible(c) => {
                Box::new(c.compile(openai::Flavor::Compatible, model, at)?)
            }
            ProviderConfig::Azure(c) => Box::new(c.compile(model, at)?),
            ProviderConfig::Anthropic(c) => Box::new(c.compile(model, at)?),
            ProviderConfig::Gemini(c) => Box::new(c.compile(model, at)?),
            ProviderConfig::VertexAi(c) => Box::new(c.compile(model, at)?),
            ProviderConfig::Bedrock(c) => Box::new(c.compile(model, at, env, has_key)?),
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
    } else if answer.get("usageMetadata").is_some() {
        gemini::usage(answer)
    } else if answer.get("output").is_some_and(|o| o.get("message").is_some()) {
        bedrock::usage(answer)
    } else {
        openai::usage(answer)
    }
}

/// A member read by a typed view of an answer: `Some` when present, `null` included (as
/// `Value::get` sees it), where `Option`'s own reading makes `null` absent.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

/// Whether JSON text starts an object: a typed view (a struct) would also read an array, by position.
pub(crate) fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// [`usage_of`] of an answer's bytes. Only the top-level members it reads (`type`, `usage`,
/// `usageMetadata`, `output`) are built; the rest (the choices and their text) is skipped without
/// allocating. Anything else (no object, a repeated member, broken JSON) takes the whole parse; an
/// answer that is not UTF-8 has none, as the whole parse finds none.
pub fn usage_of_json(answer: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(rename = "type", default, deserialize_with = "present")]
        kind: Option<Value>,
        #[serde(default, deserialize_with = "present")]
        usage: Option<Value>,
        #[serde(rename = "usageMetadata", default, deserialize_with = "present")]
        usage_metadata: Option<Value>,
        #[serde(default, deserialize_with = "present")]
        output: Option<Value>,
    }
    // Skipped strings are not checked for UTF-8 (a `Value` parse refuses any that is not): the whole
    // answer is, first.
    let text = std::str::from_utf8(answer).ok()?;
    match is_object(answer).then(|| serde_json::from_str::<Top>(text)) {
        Some(Ok(top)) => {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("type", top.kind),
                ("usage", top.usage),
                ("usageMetadata", top.usage_metadata),
                ("output", top.output),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            }
            usage_of(&Value::Object(m))
        }
        _ => usage_of(&serde_json::from_slice::<Value>(answer).ok()?),
    }
}

/// The usage of a streamed answer in a provider's own dialect, event by event, for the same filters
/// (OpenAI's usage chunk is read by [`openai::OpenAiStream`], which can also strip it): Anthropic's
/// `message_start` / `message_delta` and Gemini's `usageMetadata` chunks. Bedrock's binary event
/// stream is no SSE: such a filter sees its usage only once ai-proxy has translated it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NativeStreamUsage {
    anthropic: anthropic::StreamUsage,
    gemini: Option<Usage>,
}

impl NativeStreamUsage {
    pub fn observe(&mut self, ev: &Frame) {
        if ev.event.is_none() && ev.data.contains("\"usageMetadata\"") {
            if let Some(u) = serde_json::from_str::<Value>(&ev.data)
                .ok()
                .and_then(|v| gemini::usage(&v))
            {
                self.gemini = Some(u);
            }
            return;
        }
        self.anthropic.observe(ev);
    }

    pub fn usage(&self) -> Option<Usage> {
        self.gemini.or_else(|| self.anthropic.usage())
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
        raw.compile(model, &|f| format!("t.{f}"), &|_| None, false)
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
        assert!(compile(json!({"provider": "cohere", "model": "g"}))
            .unwrap_err()
            .contains("unknown variant `cohere`"));
        assert!(compile(json!({"model": "g"}))
            .unwrap_err()
            .contains("missing field `provider`"));
    }

    #[test]
    fn credential_headers() {
        let headers = |v: Value, key: Option<&str>| compile(v).unwrap().headers(&Outgoing::key(key));
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
        let frames = |framing: Framing, bytes: &[u8]| {
            let mut f = framing.decoder();
            let mut got = f.feed(bytes);
            got.extend(f.finish());
            got
        };
        let sse = frames(Framing::Sse, b"event: a\ndata: 1\n\ndata: 2\n");
        assert_eq!(
            sse,
            vec![
                Ok(Frame {
                    event: Some("a".into()),
                    data: "1".into()
                }),
                Ok(Frame {
                    event: None,
                    data: "2".into()
                })
            ]
        );
        let lines = frames(Framing::Ndjson, b"{\"a\":1}\r\n\n{\"b\":2}");
        assert_eq!(
            lines
                .iter()
                .map(|f| f.as_ref().unwrap().data.as_str())
                .collect::<Vec<_>>(),
            vec!["{\"a\":1}", "{\"b\":2}"]
        );
        use crate::framing::eventstream::{encode, Header};
        let message = |headers: &[Header], payload: &str| encode(headers, payload.as_bytes()).unwrap();
        let mut bytes = message(
            &[
                Header::string(":message-type", "event"),
                Header::string(":event-type", "messageStart"),
            ],
            r#"{"role":"assistant"}"#,
        );
        bytes.extend(message(
            &[
                Header::string(":message-type", "exception"),
                Header::string(":exception-type", "throttlingException"),
            ],
            r#"{"message":"slow down"}"#,
        ));
        bytes.extend(message(
            &[
                Header::string(":message-type", "error"),
                Header::string(":error-code", "InternalFailure"),
                Header::string(":error-message", "boom"),
            ],
            "",
        ));
        let got: Vec<(Option<String>, String)> = frames(Framing::EventStream, &bytes)
            .into_iter()
            .map(|f| f.map(|f| (f.event, f.data)).unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("messageStart".into()), r#"{"role":"assistant"}"#.into()),
                (
                    Some("throttlingException".into()),
                    r#"{"message":"slow down"}"#.into()
                ),
                (
                    Some("error".into()),
                    r#"{"code":"InternalFailure","message":"boom"}"#.into()
                ),
            ]
        );
        // A cut message, a corrupted CRC, a message of no known type: faults, never a panic.
        let cut = frames(Framing::EventStream, &bytes[..bytes.len() - 3]);
        assert!(
            matches!(cut.last(), Some(Err(FrameFault::EventStream(_)))),
            "{cut:?}"
        );
        let mut corrupt = bytes.clone();
        corrupt[20] ^= 1;
        let bad = frames(Framing::EventStream, &corrupt);
        assert!(
            matches!(bad.first(), Some(Err(FrameFault::EventStream(_)))),
            "{bad:?}"
        );
        let odd = frames(Framing::EventStream, &message(&[], "{}"));
        assert_eq!(odd, vec![Err(FrameFault::Message("no known :message-type"))]);
    }

    #[test]
    fn native_stream_usage() {
        let mut frames = Framing::Sse.decoder();
        let mut u = NativeStreamUsage::default();
        for f in frames.feed(include_bytes!("../../tests/fixtures/anthropic_stream.sse")) {
            u.observe(&f.unwrap());
        }
        assert_eq!(
            u.usage().map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((35, 15))
        );
        let mut none = NativeStreamUsage::default();
        for f in frames.feed(include_bytes!("../../tests/fixtures/openai_stream_usage.sse")) {
            none.observe(&f.unwrap());
        }
        assert_eq!(
            none.usage(),
            None,
            "OpenAI's usage chunk is OpenAiStream's to read"
        );
        let mut gemini = NativeStreamUsage::default();
        let mut frames = Framing::Sse.decoder();
        for f in frames.feed(include_bytes!("../../tests/fixtures/gemini_stream.sse")) {
            gemini.observe(&f.unwrap());
        }
        assert_eq!(
            gemini.usage().map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((6, 5)),
            "the last usageMetadata wins"
        );
    }

    /// `usage_of_json` reads what `usage_of` of the parsed answer reads, on every dialect's answers,
    /// odd members (null, repeated, not objects) and no JSON at all.
    #[test]
    fn usage_of_json_is_usage_of_the_value() {
        let texts = [
            r#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":2,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":1}}}"#,
            r#"{"type":"message","content":[{"type":"text","text":"x"}],"usage":{"input_tokens":4,"output_tokens":5,"cache_read_input_tokens":2}}"#,
            r#"{"type":"message","usage":{"prompt_tokens":4}}"#,
            r#"{"candidates":[],"usageMetadata":{"promptTokenCount":6,"candidatesTokenCount":7,"thoughtsTokenCount":2}}"#,
            r#"{"usageMetadata":null,"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
            r#"{"output":{"message":{"content":[]}},"usage":{"inputTokens":8,"outputTokens":9}}"#,
            r#"{"output":{"text":"no message"},"usage":{"inputTokens":8,"outputTokens":9,"prompt_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"usage":{"prompt_tokens":5,"completion_tokens":6}}"#,
            r#"{"type":7,"usage":[1,2]}"#,
            r#"{"usage":null}"#,
            r#"{"choices":[]}"#,
            r#"[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]"#,
            r#"["message",{"input_tokens":1,"output_tokens":1}]"#,
            r#"  {"usage":{"prompt_tokens":1,"completion_tokens":1}}  "#,
            r#"{"usage":{"prompt_tokens":1,"completion_tokens":1}} trailing"#,
            r#"{"usage":{"prompt_tokens":1,"#,
            "",
            "null",
        ];
        for t in texts {
            let want = serde_json::from_str::<Value>(t).ok().and_then(|v| usage_of(&v));
            assert_eq!(usage_of_json(t.as_bytes()), want, "{t}");
        }
        // Invalid UTF-8 inside a skipped string: no usage, as the whole parse refuses the answer.
        let broken = b"{\"choices\":[{\"message\":{\"content\":\"r\xe9ply\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}";
        assert!(serde_json::from_slice::<Value>(broken).is_err());
        assert_eq!(usage_of_json(broken), None);
    }

    #[test]
    fn usage_of_every_dialect() {
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
            (
                json!({"usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 7}}),
                Some((6, 7)),
            ),
            (
                json!({"output": {"message": {}}, "usage": {"inputTokens": 8, "outputTokens": 9}}),
                Some((8, 9)),
            ),
            (json!({"choices": []}), None),
        ];
        for (v, want) in cases {
            let got = usage_of(&v).map(|u| (u.prompt_tokens, u.completion_tokens));
            assert_eq!(got, want, "{v}");
        }
    }
}
