//! The one translation path between a client, at either door, and a target's provider, for both
//! ai-proxy modes.
//!
//! [`Exchange::prepare`] turns the client's request into the provider's body and remembers what the
//! answer needs: the door it is written for, the usage chunk to strip, whether structured output comes
//! back as a tool, the parameters dropped. A target that speaks the door's dialect gets the body as it
//! is (with its model); any other gets it decoded by the door's dialect into [`super::neutral`] and
//! rendered by its [`super::Translator`]. [`Reply`] then reads the provider's answer: forward mode feeds
//! a stream chunk by chunk as the proxy relays it ([`Reply::chunk`]: whole events only, each checked to
//! be JSON) and reads a JSON answer whole before its status leaves ([`Reply::whole`], which judges it: a
//! 2xx that is not an answer of its API becomes a 502); callout mode hands every answer over whole,
//! where a stream without its end is an error too, so the request can still go elsewhere.

use serde_json::{Map, Value};

use super::neutral::{self, Event, OnUnsupported, Unsupported};
use super::{
    anthropic, openai, Api, Dialect, Expect, FrameFault, Frames, Provider, StreamDecoder, Translator,
};
use crate::error::ApiError;
use crate::usage::Usage;

/// Bound on the copy of a passed-through JSON answer kept to read its usage.
const MAX_OBSERVED: usize = 8 * 1024 * 1024;

/// A validated client request of one of the gateway's APIs. The body is kept as a JSON map, so fields
/// the gateway does not know pass through to targets of the door's own dialect.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub api: Api,
    /// The whole request body, for forwarding or translation.
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for OpenAI's usage chunk (`stream_options.include_usage: true`).
    pub include_usage: bool,
}

impl ChatRequest {
    /// Validates a parsed body of `api`. Only the fields the gateway relies on are checked; the
    /// target (or the translation) judges the rest.
    pub fn parse(api: Api, value: Value) -> Result<ChatRequest, ApiError> {
        let Value::Object(body) = value else {
            return Err(ApiError::invalid_request(
                "invalid_request",
                "request body must be a JSON object",
            ));
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(ApiError::invalid_request(
                    "missing_model",
                    "`model` must be a non-empty string",
                ))
            }
        };
        if crate::api::is_chat(api) {
            match body.get("messages") {
                Some(Value::Array(list)) if !list.is_empty() => {}
                _ => {
                    return Err(ApiError::invalid_request(
                        "invalid_messages",
                        "`messages` must be a non-empty array",
                    ))
                }
            }
        } else if body.get("input").is_none_or(Value::is_null) {
            return Err(ApiError::invalid_request("invalid_input", "`input` is required"));
        }
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b && crate::api::is_chat(api),
            Some(_) => {
                return Err(ApiError::invalid_request(
                    "invalid_stream",
                    "`stream` must be a boolean",
                ))
            }
        };
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(ChatRequest {
            api,
            body,
            model,
            stream,
            include_usage,
        })
    }

    /// The dialect of the door it came through.
    pub fn door(&self) -> Dialect {
        Dialect::of(self.api)
    }

    /// Serializes the (possibly edited) body.
    pub fn to_bytes(&self) -> Vec<u8> {
        Value::Object(self.body.clone()).to_string().into_bytes()
    }

    /// Replaces `model` in the body, for an upstream that serves it under another name.
    pub fn set_model(&mut self, model: &str) {
        self.body.insert("model".into(), Value::from(model));
    }

    /// Asks the upstream for the final usage chunk so a streamed response can be metered; returns whether
    /// the body changed (i.e. the client had not asked for it and the chunk must be stripped).
    pub fn request_stream_usage(&mut self) -> bool {
        self.stream && openai::request_stream_usage(&mut self.body)
    }
}

/// Validates an OpenAI Chat Completions request body.
pub fn parse_chat_request(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid_request("invalid_json", format!("request body is not valid JSON: {e}"))
    })?;
    chat_request(value)
}

/// Validates a parsed OpenAI Chat Completions request body.
pub fn chat_request(value: Value) -> Result<ChatRequest, ApiError> {
    ChatRequest::parse(Api::ChatCompletions, value)
}

/// The request as [`neutral`], read by its door's dialect, for a target named `label` in errors.
fn decode<'a>(req: &'a ChatRequest, label: &str) -> Result<neutral::Request<'a>, ApiError> {
    match req.door() {
        Dialect::OpenAi => openai::decode(&req.body, req.stream, label),
        Dialect::Anthropic => anthropic::decode(&req.body, req.stream, label),
    }
}

/// What one request's answer needs, decided when its body is prepared for the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub api: Api,
    /// The client asked for a stream.
    pub stream: bool,
    /// The client asked for the usage chunk itself.
    include_usage: bool,
    /// We asked the provider for the usage chunk; it is stripped again.
    injected_usage: bool,
    /// The target speaks the door's dialect: bodies pass as they are.
    native: bool,
    expect: Expect,
    /// Translated embeddings: the client asked for base64 vectors.
    base64: bool,
    /// Parameters the target could not take, left out as the model allows (`x-ai-dropped-params`).
    pub dropped: Vec<String>,
}

impl Exchange {
    /// The body to send to `provider` for the client's request, parameters the target cannot take
    /// refused.
    pub fn prepare(req: &ChatRequest, provider: &dyn Provider) -> Result<(Vec<u8>, Exchange), ApiError> {
        Exchange::prepare_with(req, provider, OnUnsupported::Refuse)
    }

    /// The body to send to `provider`. A provider that speaks the door's dialect gets the client's body
    /// with its own model and, for an OpenAI stream, the usage chunk asked for; any other gets the
    /// request translated, or a 400 naming what it cannot take (parameters are dropped instead when
    /// `on_unsupported` says so, and listed in [`Exchange::dropped`]).
    pub fn prepare_with(
        req: &ChatRequest,
        provider: &dyn Provider,
        on_unsupported: OnUnsupported,
    ) -> Result<(Vec<u8>, Exchange), ApiError> {
        let translator = provider.translator();
        if provider.path(req.api, req.stream).is_none() {
            return Err(ApiError::invalid_request(
                "unsupported_feature",
                format!(
                    "the `{}` API is not supported for {} targets",
                    req.api.as_str(),
                    translator.label()
                ),
            ));
        }
        let native = provider.speaks() == Some(req.door());
        let mut exchange = Exchange {
            api: req.api,
            stream: req.stream,
            include_usage: req.include_usage,
            injected_usage: false,
            native,
            expect: Expect::default(),
            base64: false,
            dropped: Vec::new(),
        };
        let body = if native {
            let written = if req.stream && req.door() == Dialect::OpenAi {
                let mut body = req.body.clone();
                body.insert("model".into(), Value::from(provider.model()));
                exchange.injected_usage = openai::request_stream_usage(&mut body);
                serde_json::to_vec(&body)
            } else {
                serde_json::to_vec(&WithModel {
                    body: &req.body,
                    model: provider.model(),
                })
            };
            written.map_err(|e| ApiError::new(500, "server_error", "internal_error", e.to_string()))?
        } else if req.api == Api::Embeddings {
            let (embeddings, base64) = openai::embeddings::decode(&req.body, translator.label())?;
            let mut unsupported = Unsupported::new(on_unsupported);
            let body = translator.embeddings(&embeddings, &mut unsupported)?;
            exchange.base64 = base64;
            exchange.dropped = unsupported.dropped;
            body
        } else {
            let mut unsupported = Unsupported::new(on_unsupported);
            let rendered = translator.request(&decode(req, translator.label())?, &mut unsupported)?;
            exchange.expect = rendered.expect;
            exchange.dropped = unsupported.dropped;
            rendered.body
        };
        Ok((body, exchange))
    }

    /// The door the answer is written for.
    pub fn door(&self) -> Dialect {
        Dialect::of(self.api)
    }

    /// The `content-type` of a successful answer as the client gets it.
    pub fn content_type(&self) -> &'static str {
        if self.stream {
            "text/event-stream"
        } else {
            "application/json"
        }
    }

    /// The `x-ai-dropped-params` value: the dropped parameters, comma-separated; `None` if none.
    pub fn dropped_header(&self) -> Option<String> {
        (!self.dropped.is_empty()).then(|| self.dropped.join(", "))
    }

    /// One of the gateway's own errors, in the door's shape.
    pub fn error_body(&self, e: &ApiError) -> Vec<u8> {
        self.door().api_error(e)
    }
}

/// An error answer of `provider` as the client at `door` gets it: an error of the door's dialect (one
/// already is, from a target of that dialect, passes as it is).
pub fn client_error(door: Dialect, provider: &dyn Provider, status: u16, body: &[u8]) -> Vec<u8> {
    if provider.speaks() == Some(door) {
        let native = match door {
            Dialect::OpenAi => openai::is_error_object(body),
            Dialect::Anthropic => anthropic::is_error_object(body),
        };
        if native {
            return body.to_vec();
        }
    }
    let e = provider.translator().error(status, body);
    door.error_body(status, &e.message, &e.kind, &e.code)
}

/// Reads one answer of a provider for the client.
#[derive(Debug)]
pub struct Reply {
    reading: Reading,
    api: Api,
    expect: Expect,
    base64: bool,
    created: u64,
    usage: Option<Usage>,
    /// The provider ended its stream itself (seen before any end of ours is added).
    complete: bool,
}

#[derive(Debug)]
enum Reading {
    /// An OpenAI stream for the OpenAI door: observed for usage and its end; the usage chunk we
    /// asked for is stripped.
    OpenAi(OpenAiObserved),
    /// An Anthropic stream for the Anthropic door: observed for usage and its end.
    Anthropic(anthropic::AnthropicStream),
    /// A stream in another dialect than the door's, translated event by event.
    Translated(Box<TranslatedStream>),
    /// JSON in the door's dialect: judged whole and passed as it is; embeddings lists pass as they
    /// come, a bounded copy kept to read their usage.
    Json(Vec<u8>),
    /// JSON in another dialect: translated whole.
    TranslatedJson,
    /// An error answer (any status outside 2xx): made a door error whole.
    Error { status: u16 },
    /// A 2xx answer in a content encoding (named) the gateway cannot read.
    Encoded(String),
}

type OpenAiObserved = openai::OpenAiStream;

impl Reply {
    /// A reader for an answer with `status`; `stream`: the answer is a stream (forward mode reads it
    /// from the `content-type` with [`super::Framing::matches`], callout mode from what the client
    /// asked). `created` stamps translated answers.
    pub fn new(
        provider: &dyn Provider,
        exchange: &Exchange,
        status: u16,
        stream: bool,
        created: u64,
    ) -> Reply {
        let reading = match ((200..300).contains(&status), stream, exchange.native) {
            (false, _, _) => Reading::Error { status },
            (true, true, true) => match exchange.door() {
                Dialect::OpenAi => Reading::OpenAi(openai::OpenAiStream::new(exchange.injected_usage)),
                Dialect::Anthropic => Reading::Anthropic(anthropic::AnthropicStream::new()),
            },
            (true, true, false) => Reading::Translated(Box::new(TranslatedStream::with(
                provider.translator(),
                provider.framing().decoder(),
                Writer::new(exchange.door(), created, exchange.include_usage),
                exchange.expect,
            ))),
            (true, false, true) => Reading::Json(Vec::new()),
            (true, false, false) => Reading::TranslatedJson,
        };
        Reply {
            reading,
            api: exchange.api,
            expect: exchange.expect,
            base64: exchange.base64,
            created,
            usage: None,
            complete: false,
        }
    }

    /// The body must be read whole and rewritten at once ([`Reply::whole`]); otherwise it is read as
    /// it comes ([`Reply::chunk`]). A JSON answer passed through is read whole too, so one that is not
    /// an answer of its API becomes a 502 before its status leaves (checked, not re-serialised);
    /// embeddings lists, which can be large, pass as they come.
    pub fn needs_whole_body(&self) -> bool {
        match self.reading {
            Reading::TranslatedJson | Reading::Error { .. } | Reading::Encoded(_) => true,
            Reading::Json(_) => self.api != Api::Embeddings,
            Reading::OpenAi(_) | Reading::Anthropic(_) | Reading::Translated(_) => false,
        }
    }

    /// The provider encoded its 2xx answer (`content-encoding` other than `identity`, though the
    /// gateway asks for none): the gateway cannot read it, so the client gets a 502
    /// `bad_upstream_response` rather than bytes it may not be able to read either.
    pub fn encoded(&mut self, encoding: &str) {
        if !matches!(self.reading, Reading::Error { .. }) {
            self.reading = Reading::Encoded(encoding.to_string());
        }
    }

    /// The `content-type` the client's answer gets when it is not the provider's: JSON for bodies
    /// rewritten whole, SSE for streams translated from the provider's framing (Bedrock's binary event
    /// stream among them).
    pub fn content_type(&self) -> Option<&'static str> {
        match self.reading {
            Reading::TranslatedJson | Reading::Error { .. } | Reading::Encoded(_) => Some("application/json"),
            Reading::Translated(_) => Some("text/event-stream"),
            Reading::OpenAi(_) | Reading::Anthropic(_) | Reading::Json(_) => None,
        }
    }

    /// One chunk of an answer read as it comes: replacement bytes, or `None` to pass it unchanged.
    /// `end`: the last chunk (the stream's missing end, if any, is added to it).
    pub fn chunk(&mut self, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let append = |out: Option<Vec<u8>>, tail: Vec<u8>| {
            if tail.is_empty() {
                return out;
            }
            let mut all = out.unwrap_or_else(|| chunk.to_vec());
            all.extend_from_slice(&tail);
            Some(all)
        };
        match &mut self.reading {
            Reading::OpenAi(s) => {
                let out = s.feed(chunk);
                if !end {
                    return out;
                }
                self.complete = s.is_done();
                let tail = s.finish();
                self.usage = s.usage();
                append(out, tail)
            }
            Reading::Anthropic(s) => {
                let out = s.feed(chunk);
                if !end {
                    return out;
                }
                self.complete = s.is_done();
                let tail = s.finish();
                self.usage = s.usage();
                append(out, tail)
            }
            Reading::Translated(s) => {
                let mut out = s.feed(chunk);
                if end {
                    out.extend_from_slice(&s.finish());
                    self.complete = s.ended();
                    self.usage = s.usage();
                }
                Some(out)
            }
            Reading::Json(copy) => {
                if copy.len() + chunk.len() <= MAX_OBSERVED {
                    copy.extend_from_slice(chunk);
                }
                if end {
                    self.usage = serde_json::from_slice::<Value>(copy)
                        .ok()
                        .and_then(|v| native_usage(self.api, &v));
                }
                None
            }
            Reading::TranslatedJson | Reading::Error { .. } | Reading::Encoded(_) => None,
        }
    }

    /// The whole answer, for the client. An error answer becomes a door error (never `Err`). A 2xx
    /// that cannot be read — not an answer of the API, or a stream without its end — is `Err` (502
    /// `bad_upstream_response`).
    pub fn whole(&mut self, provider: &dyn Provider, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        let bad = |message: &str| ApiError::upstream(502, "bad_upstream_response", message);
        match &self.reading {
            Reading::Error { status } => Ok(client_error(Dialect::of(self.api), provider, *status, body)),
            Reading::TranslatedJson if self.api == Api::Embeddings => {
                let e = provider.translator().embeddings_response(body)?;
                self.usage = e.usage;
                Ok(openai::embeddings::embeddings_json(
                    &e,
                    provider.model(),
                    self.base64,
                ))
            }
            Reading::Encoded(encoding) => Err(bad(&format!(
                "the provider's answer is {encoding}-encoded; the gateway reads only unencoded answers"
            ))),
            Reading::TranslatedJson => {
                let c = provider.translator().response(body, self.expect)?;
                self.usage = Some(c.usage);
                match Dialect::of(self.api) {
                    Dialect::OpenAi => Ok(openai::completion_json(&c, self.created)),
                    Dialect::Anthropic => anthropic::message_json(&c),
                }
            }
            Reading::Json(_) => {
                let (body, usage) = native_json(self.api, body)?;
                self.usage = usage;
                Ok(body)
            }
            Reading::OpenAi(_) | Reading::Anthropic(_) | Reading::Translated(_) => {
                let out = self.chunk(body, true).unwrap_or_else(|| body.to_vec());
                if let Reading::Translated(s) = &self.reading {
                    if let Some(fault) = s.fault() {
                        return Err(bad(&format!("invalid stream from the provider: {fault}")));
                    }
                }
                if !self.complete {
                    return Err(bad("the provider's stream ended before completion"));
                }
                Ok(out)
            }
        }
    }

    /// The usage the answer reported, once its end has been read.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// A request body with its `model` replaced (or added), written as the body with that one entry
/// changed would be (keys in order), without copying the body.
struct WithModel<'a> {
    body: &'a Map<String, Value>,
    model: &'a str,
}

impl serde::Serialize for WithModel<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let has = self.body.contains_key("model");
        let mut m = s.serialize_map(Some(self.body.len() + usize::from(!has)))?;
        let mut written = false;
        for (k, v) in self.body {
            if !written && k.as_str() >= "model" {
                m.serialize_entry("model", self.model)?;
                written = true;
                if k == "model" {
                    continue;
                }
            }
            m.serialize_entry(k, v)?;
        }
        if !written {
            m.serialize_entry("model", self.model)?;
        }
        m.end()
    }
}

/// What [`native_json`] reads of an answer: which list members are arrays, its `type`, its `usage`.
/// Read as a typed view, the rest of the answer (the choices' text, the embeddings) is skipped
/// without being built; `None` where a member is not an array, as for a `Value`'s `is_array`.
#[derive(Debug, Default, PartialEq, serde::Deserialize)]
struct Judged {
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(rename = "type", default)]
    kind: Option<Value>,
    #[serde(default)]
    content: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(default)]
    data: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(default, deserialize_with = "super::present")]
    usage: Option<Value>,
}

impl Judged {
    /// The typed view of `body`; `None` for anything it does not read as a `Value` would (no
    /// object, a member of another type, a repeated member, broken JSON or UTF-8).
    fn read(body: &[u8]) -> Option<Judged> {
        // Skipped strings are not checked for UTF-8 (a `Value` parse refuses any that is not): the
        // whole body is, first.
        let text = std::str::from_utf8(body).ok()?;
        super::is_object(body)
            .then(|| serde_json::from_str(text).ok())
            .flatten()
    }

    /// The same view of a parsed answer.
    fn of(v: &Value) -> Judged {
        let array = |k: &str| v.get(k).filter(|a| a.is_array()).map(|_| Vec::new());
        Judged {
            choices: array("choices"),
            kind: v.get("type").filter(|t| !t.is_null()).cloned(),
            content: array("content"),
            data: array("data"),
            usage: v.get("usage").cloned(),
        }
    }
}

/// A passed-through JSON answer, judged as an answer of its API, and the usage it reports.
fn native_json(api: Api, body: &[u8]) -> Result<(Vec<u8>, Option<Usage>), ApiError> {
    let judged =
        Judged::read(body).or_else(|| serde_json::from_slice::<Value>(body).ok().map(|v| Judged::of(&v)));
    let (ok, what) = match (api, judged.as_ref()) {
        (Api::ChatCompletions, Some(j)) => (j.choices.is_some(), "a chat completion"),
        (Api::Messages, Some(j)) => (
            j.kind.as_ref().and_then(Value::as_str) == Some("message") && j.content.is_some(),
            "a message",
        ),
        (Api::Embeddings, Some(j)) => (j.data.is_some(), "an embeddings list"),
        (Api::Completions, Some(j)) => (j.choices.is_some(), "a completion"),
        (api, None) => (
            false,
            match api {
                Api::ChatCompletions => "a chat completion",
                Api::Messages => "a message",
                Api::Embeddings => "an embeddings list",
                Api::Completions => "a completion",
            },
        ),
    };
    if !ok {
        return Err(ApiError::upstream(
            502,
            "bad_upstream_response",
            format!("the provider's answer is not {what}"),
        ));
    }
    let usage = judged.and_then(|j| j.usage).and_then(|u| {
        let mut m = Map::new();
        m.insert("usage".to_string(), u);
        native_usage(api, &Value::Object(m))
    });
    Ok((body.to_vec(), usage))
}

/// A task call's answer (`shared::llm`): a whole 2xx answer to a chat completion asked without a stream,
/// in the OpenAI door's shape, and its usage: what [`Reply::whole`] gives for it, without the streams,
/// the Anthropic door and the error answers a task call never reads, so the modules that only make
/// task calls do not carry them. Any other exchange is refused (500): task calls are chat completions.
pub fn task_answer(
    provider: &dyn Provider,
    exchange: &Exchange,
    body: &[u8],
    created: u64,
) -> Result<(Vec<u8>, Option<Usage>), ApiError> {
    if exchange.api != Api::ChatCompletions || exchange.stream {
        return Err(ApiError::new(
            500,
            "server_error",
            "internal_error",
            "a task call is a chat completion without a stream",
        ));
    }
    if exchange.native {
        return native_json(exchange.api, body);
    }
    let c = provider.translator().response(body, exchange.expect)?;
    Ok((openai::completion_json(&c, created), Some(c.usage)))
}

/// The usage of an answer in its API's own shape.
fn native_usage(api: Api, v: &Value) -> Option<Usage> {
    match Dialect::of(api) {
        Dialect::OpenAi => openai::usage(v),
        Dialect::Anthropic => anthropic::usage(v),
    }
}

/// A door's stream writer.
#[derive(Debug)]
enum Writer {
    OpenAi(openai::StreamWriter),
    Anthropic(anthropic::StreamWriter),
}

impl Writer {
    fn new(door: Dialect, created: u64, include_usage: bool) -> Writer {
        match door {
            Dialect::OpenAi => Writer::OpenAi(openai::StreamWriter::new(created, include_usage)),
            Dialect::Anthropic => Writer::Anthropic(anthropic::StreamWriter::new()),
        }
    }

    fn write(&mut self, event: &Event<'_>, out: &mut Vec<u8>) {
        match self {
            Writer::OpenAi(w) => w.write(event, out),
            Writer::Anthropic(w) => w.write(event, out),
        }
    }

    fn incomplete(&mut self, out: &mut Vec<u8>) {
        match self {
            Writer::OpenAi(w) => w.incomplete(out),
            Writer::Anthropic(w) => w.incomplete(out),
        }
    }
}

/// A stream in a provider's dialect, translated to the door's as it arrives: frames (by the provider's
/// framing) → [`Event`]s (its decoder) → the door's SSE (its writer).
pub struct TranslatedStream {
    frames: Frames,
    decoder: Box<dyn StreamDecoder>,
    writer: Writer,
    /// The stream has been terminated; later upstream events are ignored.
    done: bool,
    /// The provider ended it itself (its end or an error), as seen by [`TranslatedStream::finish`].
    ended: bool,
    /// The bytes were no frames of the provider's framing (a corrupt event-stream message).
    fault: Option<FrameFault>,
}

impl std::fmt::Debug for TranslatedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranslatedStream")
            .field("writer", &self.writer)
            .field("done", &self.done)
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl TranslatedStream {
    /// The translator of one answer of `provider` for the OpenAI door, stamped `created`;
    /// `include_usage`: the client asked for the usage chunk. `None` for a provider that speaks OpenAI.
    pub fn new(provider: &dyn Provider, created: u64, include_usage: bool) -> Option<TranslatedStream> {
        TranslatedStream::for_door(
            provider,
            Dialect::OpenAi,
            Expect::default(),
            created,
            include_usage,
        )
    }

    /// The translator of one answer of `provider` for `door`; `None` when the provider speaks the
    /// door's dialect (nothing to translate).
    pub fn for_door(
        provider: &dyn Provider,
        door: Dialect,
        expect: Expect,
        created: u64,
        include_usage: bool,
    ) -> Option<TranslatedStream> {
        (provider.speaks() != Some(door)).then(|| {
            TranslatedStream::with(
                provider.translator(),
                provider.framing().decoder(),
                Writer::new(door, created, include_usage),
                expect,
            )
        })
    }

    fn with(t: &dyn Translator, frames: Frames, writer: Writer, expect: Expect) -> Self {
        TranslatedStream {
            frames,
            decoder: t.stream(expect),
            writer,
            done: false,
            ended: false,
            fault: None,
        }
    }

    /// Consumes a body chunk and returns the door's SSE bytes for the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        let frames = self.frames.feed(chunk);
        self.translate_all(frames, &mut out);
        out
    }

    /// Ends the stream; without the provider's own end the client gets an error event (and, on the
    /// OpenAI door, `[DONE]`).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.done {
            let frames = self.frames.finish();
            self.translate_all(frames, &mut out);
        }
        if !self.done {
            let (writer, done) = (&mut self.writer, &mut self.done);
            self.decoder.finish(&mut |event| {
                if !*done {
                    writer.write(&event, &mut out);
                    *done = matches!(event, Event::End(_) | Event::Error(_));
                }
            });
        }
        if !self.ended {
            self.ended = self.done && self.fault.is_none();
        }
        if !self.done {
            self.writer.incomplete(&mut out);
            self.done = true;
        }
        out
    }

    pub fn usage(&self) -> Option<Usage> {
        self.decoder.usage()
    }

    /// Whether the stream has been terminated (its end, or an error, written).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the provider ended the stream itself (its end or an error event), once
    /// [`TranslatedStream::finish`] has run.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Why the provider's bytes were not a stream of its framing, if they were not.
    pub fn fault(&self) -> Option<&FrameFault> {
        self.fault.as_ref()
    }

    fn translate_all(&mut self, frames: Vec<Result<super::Frame, FrameFault>>, out: &mut Vec<u8>) {
        for frame in frames {
            match frame {
                Ok(frame) => self.translate(&frame, out),
                Err(fault) => {
                    if !self.done {
                        let e = neutral::Error::new(
                            format!("invalid stream from the provider: {fault}"),
                            "upstream_error",
                            "bad_upstream_response",
                        );
                        self.writer.write(&Event::Error(e), out);
                        self.done = true;
                        self.fault = Some(fault);
                    }
                    return;
                }
            }
        }
    }

    fn translate(&mut self, frame: &super::Frame, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let (writer, done) = (&mut self.writer, &mut self.done);
        self.decoder.decode(frame, &mut |event| {
            if !*done {
                writer.write(&event, out);
                *done = matches!(event, Event::End(_) | Event::Error(_));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::anthropic::Anthropic;
    use super::super::openai::OpenAi;
    use super::super::{Frame, Framing, Outgoing, Rendered};
    use super::*;
    use crate::sse::SseParser;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// `WithModel` writes what the body with its model replaced writes, wherever "model" sorts.
    #[test]
    fn with_model_is_the_changed_copy() {
        let bodies = [
            json!({"model": "a", "messages": []}),
            json!({"messages": [{"role": "user", "content": "x"}]}),
            json!({"a": 1}),
            json!({"zz": 1}),
            json!({}),
            json!({"model": 5, "model_x": 1, "modem": 2, "mode": 3, "max_tokens": 9, "n": 1}),
            json!({"model_x": 1}),
            json!({"mode": {"nested": ["model"]}, "temperature": 0.5, "stream": false}),
        ];
        for b in bodies {
            let Value::Object(body) = b else { unreachable!() };
            let mut copy = body.clone();
            copy.insert("model".into(), Value::from("gpt-x"));
            let want = serde_json::to_vec(&copy).unwrap();
            let got = serde_json::to_vec(&WithModel {
                body: &body,
                model: "gpt-x",
            })
            .unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
        }
    }

    /// `native_json` as it was: the whole answer parsed into a `Value` (the reference).
    fn native_json_by_value(api: Api, body: &[u8]) -> Result<(Vec<u8>, Option<Usage>), ApiError> {
        let v = serde_json::from_slice::<Value>(body).ok();
        let ok = match (api, v.as_ref()) {
            (Api::ChatCompletions | Api::Completions, Some(v)) => {
                v.get("choices").is_some_and(Value::is_array)
            }
            (Api::Messages, Some(v)) => {
                v.get("type").and_then(Value::as_str) == Some("message")
                    && v.get("content").is_some_and(Value::is_array)
            }
            (Api::Embeddings, Some(v)) => v.get("data").is_some_and(Value::is_array),
            (_, None) => false,
        };
        if !ok {
            return Err(native_json(api, b"").unwrap_err());
        }
        Ok((body.to_vec(), v.as_ref().and_then(|v| native_usage(api, v))))
    }

    /// The typed view judges every answer as the whole parse did: members of other types, null,
    /// repeated, nested look-alikes, arrays at the top, broken JSON, each API.
    #[test]
    fn native_json_judges_as_the_whole_parse() {
        let bodies = [
            r#"{"id":"c","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":2,"completion_tokens":3}}"#,
            r#"{"choices":[],"usage":null}"#,
            r#"{"choices":null,"usage":{"prompt_tokens":2,"completion_tokens":3}}"#,
            r#"{"choices":{"0":1}}"#,
            r#"{"choices":"x"}"#,
            r#"{"choices":[1],"choices":[2],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
            r#"{"type":"message","content":[{"type":"text","text":"x"}],"usage":{"input_tokens":4,"output_tokens":5}}"#,
            r#"{"type":"message","content":"text"}"#,
            r#"{"type":null,"content":[]}"#,
            r#"{"type":["message"],"content":[]}"#,
            r#"{"object":"list","data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":3,"total_tokens":3}}"#,
            r#"{"data":{}}"#,
            r#"[{"choices":[]}]"#,
            r#"[[1]]"#,
            r#"  {"choices":[]}  "#,
            r#"{"choices":[]} x"#,
            r#"{"choices":["#,
            "",
            "null",
            r#"{"nested":{"choices":[]}}"#,
        ];
        // Invalid UTF-8 inside a string the view skips, and inside one it reads.
        let broken: [&[u8]; 3] = [
            b"{\"choices\":[{\"message\":{\"content\":\"r\xe9ply\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}",
            b"{\"type\":\"message\",\"content\":[{\"text\":\"\xff\"}]}",
            b"{\"data\":[],\"model\":\"\xc3\"}",
        ];
        for b in bodies.iter().map(|b| b.as_bytes()).chain(broken) {
            for api in [
                Api::ChatCompletions,
                Api::Messages,
                Api::Embeddings,
                Api::Completions,
            ] {
                let got = native_json(api, b).map_err(|e| format!("{e:?}"));
                let want = native_json_by_value(api, b).map_err(|e| format!("{e:?}"));
                assert_eq!(got, want, "{api:?} {}", String::from_utf8_lossy(b));
            }
        }
    }

    const OPENAI_STREAM_USAGE: &str = include_str!("../../tests/fixtures/openai_stream_usage.sse");
    const OPENAI_STREAM_TOOLS: &str = include_str!("../../tests/fixtures/openai_stream_tools.sse");
    const ANTHROPIC_STREAM: &str = include_str!("../../tests/fixtures/anthropic_stream.sse");
    const ANTHROPIC_STREAM_TOOLS: &str = include_str!("../../tests/fixtures/anthropic_stream_tools.sse");
    const ANTHROPIC_MESSAGE: &str = include_str!("../../tests/fixtures/anthropic_message.json");

    fn openai() -> OpenAi {
        OpenAi::new("gpt-up")
    }

    fn anthropic() -> Anthropic {
        Anthropic::new("claude")
    }

    fn openai_req(v: Value) -> ChatRequest {
        ChatRequest::parse(Api::ChatCompletions, v).unwrap()
    }

    fn anthropic_req(v: Value) -> ChatRequest {
        ChatRequest::parse(Api::Messages, v).unwrap()
    }

    fn hi(stream: bool) -> Value {
        json!({"model": "m", "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    }

    fn events(bytes: &[u8]) -> Vec<Frame> {
        let mut p = SseParser::new();
        let mut v = p.feed(bytes);
        v.extend(p.finish());
        v
    }

    /// What an OpenAI SDK assembles from a stream: content, reasoning, signatures, tool calls by
    /// index (id, name, arguments), the finish reason and the usage chunk.
    fn openai_accumulate(sse: &str) -> Value {
        let (mut content, mut reasoning, mut signatures) = (String::new(), String::new(), Vec::new());
        let mut calls: Vec<Value> = Vec::new();
        let (mut finish, mut usage, mut done) = (Value::Null, Value::Null, false);
        for ev in events(sse.as_bytes()) {
            if ev.data == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            if v.get("usage").is_some_and(|u| !u.is_null()) {
                usage = v["usage"].clone();
            }
            let Some(choice) = v["choices"].get(0) else {
                continue;
            };
            let d = &choice["delta"];
            content.push_str(d["content"].as_str().unwrap_or_default());
            reasoning.push_str(d["reasoning_content"].as_str().unwrap_or_default());
            for b in d["thinking_blocks"].as_array().into_iter().flatten() {
                signatures.push(b["signature"].clone());
            }
            for c in d["tool_calls"].as_array().into_iter().flatten() {
                let i = c["index"].as_u64().unwrap() as usize;
                if calls.len() <= i {
                    calls.resize(i + 1, json!({"id": "", "name": "", "arguments": ""}));
                }
                if let Some(id) = c["id"].as_str() {
                    calls[i]["id"] = id.into();
                }
                if let Some(n) = c["function"]["name"].as_str() {
                    calls[i]["name"] = n.into();
                }
                let args = format!(
                    "{}{}",
                    calls[i]["arguments"].as_str().unwrap(),
                    c["function"]["arguments"].as_str().unwrap_or_default()
                );
                calls[i]["arguments"] = args.into();
            }
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
        }
        json!({"content": content, "reasoning": reasoning, "signatures": signatures, "tool_calls": calls,
               "finish_reason": finish, "usage": usage, "done": done})
    }

    /// What the Anthropic SDK's accumulator assembles from a stream (its `accumulate_event`): the
    /// message of `message_start`, blocks appended by `content_block_start`, deltas applied by block
    /// index, `message_delta`'s stop reason and usage overwriting.
    fn anthropic_accumulate(sse: &str) -> Value {
        let mut message = Value::Null;
        let mut json_bufs: Vec<(u64, String)> = Vec::new();
        for ev in events(sse.as_bytes()) {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            assert_eq!(
                ev.event.as_deref(),
                v["type"].as_str(),
                "event name and type agree"
            );
            match v["type"].as_str().unwrap() {
                "message_start" => message = v["message"].clone(),
                "content_block_start" => {
                    let i = v["index"].as_u64().unwrap();
                    assert_eq!(
                        i as usize,
                        message["content"].as_array().unwrap().len(),
                        "blocks in order"
                    );
                    message["content"]
                        .as_array_mut()
                        .unwrap()
                        .push(v["content_block"].clone());
                }
                "content_block_delta" => {
                    let i = v["index"].as_u64().unwrap();
                    let block = &mut message["content"][i as usize];
                    let d = &v["delta"];
                    match d["type"].as_str().unwrap() {
                        "text_delta" => {
                            block["text"] = format!(
                                "{}{}",
                                block["text"].as_str().unwrap(),
                                d["text"].as_str().unwrap()
                            )
                            .into()
                        }
                        "thinking_delta" => {
                            block["thinking"] = format!(
                                "{}{}",
                                block["thinking"].as_str().unwrap(),
                                d["thinking"].as_str().unwrap()
                            )
                            .into()
                        }
                        "signature_delta" => block["signature"] = d["signature"].clone(),
                        "input_json_delta" => match json_bufs.iter_mut().find(|(k, _)| *k == i) {
                            Some((_, buf)) => buf.push_str(d["partial_json"].as_str().unwrap()),
                            None => json_bufs.push((i, d["partial_json"].as_str().unwrap().to_string())),
                        },
                        other => panic!("delta {other}"),
                    }
                }
                "content_block_stop" => {}
                "message_delta" => {
                    message["stop_reason"] = v["delta"]["stop_reason"].clone();
                    for (k, n) in v["usage"].as_object().unwrap() {
                        message["usage"][k] = n.clone();
                    }
                }
                "message_stop" => message["stopped"] = true.into(),
                "error" => message["error"] = v["error"].clone(),
                "ping" => {}
                other => panic!("event {other}"),
            }
        }
        for (i, buf) in json_bufs {
            message["content"][i as usize]["input"] = serde_json::from_str(&buf).unwrap();
        }
        message
    }

    fn translate(
        provider: &dyn Provider,
        door: Dialect,
        expect: Expect,
        include_usage: bool,
        chunks: &[&[u8]],
    ) -> (String, Option<Usage>) {
        let mut s = TranslatedStream::for_door(provider, door, expect, 1_732_353_001, include_usage).unwrap();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed(c));
        }
        out.extend(s.finish());
        (String::from_utf8(out).unwrap(), s.usage())
    }

    /// The output of a translated stream fed whole, split at every byte offset, and byte by byte.
    fn every_split_agrees(
        provider: &dyn Provider,
        door: Dialect,
        expect: Expect,
        input: &str,
    ) -> (String, Option<Usage>) {
        let input = input.as_bytes();
        let whole = translate(provider, door, expect, true, &[input]);
        for i in 0..=input.len() {
            assert_eq!(
                translate(provider, door, expect, true, &[&input[..i], &input[i..]]),
                whole,
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            translate(provider, door, expect, true, &bytes),
            whole,
            "byte by byte"
        );
        whole
    }

    #[test]
    fn prepares_per_door() {
        // OpenAI door, OpenAI target: the body as it is, the usage chunk asked for.
        let stream =
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}], "x": 1});
        let (body, ex) = Exchange::prepare(&openai_req(stream.clone()), &openai()).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent["model"], "gpt-up");
        assert_eq!(sent["x"], 1, "unknown fields pass through");
        assert_eq!(sent["stream_options"], json!({"include_usage": true}));
        assert!(ex.injected_usage && !ex.include_usage && ex.stream && ex.native);

        let mut asked = stream.clone();
        asked["stream_options"] = json!({"include_usage": true});
        let (_, ex) = Exchange::prepare(&openai_req(asked), &openai()).unwrap();
        assert!(!ex.injected_usage && ex.include_usage);

        // OpenAI door, Anthropic target: translated.
        let (body, ex) = Exchange::prepare(&openai_req(hi(true)), &anthropic()).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            sent,
            json!({"model": "claude", "max_tokens": 50, "stream": true,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
        );
        assert!(
            !ex.injected_usage && !ex.native,
            "Anthropic streams always report usage"
        );
        assert_eq!(ex.content_type(), "text/event-stream");

        // Anthropic door, Anthropic target: the body as it is, whatever it holds.
        let mut native = hi(true);
        native["container"] = json!("c-1");
        native["messages"][0]["content"] =
            json!([{"type": "document", "source": {"type": "text", "data": "x"}}]);
        let (body, ex) = Exchange::prepare(&anthropic_req(native.clone()), &anthropic()).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        native["model"] = json!("claude");
        assert_eq!(sent, native);
        assert!(ex.native && !ex.injected_usage && ex.door() == Dialect::Anthropic);

        // Anthropic door, OpenAI target: translated, the usage chunk asked for.
        let (body, ex) = Exchange::prepare(&anthropic_req(hi(true)), &openai()).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            sent,
            json!({"model": "gpt-up", "max_completion_tokens": 50, "stream": true,
                   "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "hi"}]})
        );
        assert!(!ex.native);
    }

    #[test]
    fn embeddings_pass_to_providers_that_serve_them() {
        let req = ChatRequest::parse(
            Api::Embeddings,
            json!({"model": "e", "input": ["a", "b"], "dimensions": 4}),
        )
        .unwrap();
        let (body, ex) = Exchange::prepare(&req, &openai()).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            sent,
            json!({"model": "gpt-up", "input": ["a", "b"], "dimensions": 4})
        );
        assert!(!ex.stream);
        let answer = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"model":"e","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let mut reply = Reply::new(&openai(), &ex, 200, false, 1);
        assert_eq!(reply.whole(&openai(), answer).unwrap(), answer.to_vec());
        assert_eq!(reply.usage(), Some(Usage::new(2, 0)));
        let e = Reply::new(&openai(), &ex, 200, false, 1)
            .whole(&openai(), br#"{"choices":[]}"#)
            .unwrap_err();
        assert!(e.message.contains("not an embeddings list"), "{}", e.message);

        let e = Exchange::prepare(&req, &anthropic()).unwrap_err();
        assert_eq!((e.status, e.code), (400, "unsupported_feature"));
        assert_eq!(
            e.message,
            "the `embeddings` API is not supported for Anthropic targets"
        );
        let e = ChatRequest::parse(Api::Embeddings, json!({"model": "e"})).unwrap_err();
        assert_eq!(e.code, "invalid_input");
    }

    /// Forward mode (chunks as they come) and callout mode (the whole answer) give the client the same
    /// bytes and usage, for every kind of answer at both doors.
    #[test]
    fn chunked_and_whole_agree() {
        let openai_json = br#"{"id":"c","model":"gpt","choices":[{"index":0,"message":{"role":"assistant","content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let (oa, an) = (openai(), anthropic());
        let cases: Vec<(&dyn Provider, ChatRequest, u16, &[u8])> = vec![
            (&oa, openai_req(hi(true)), 200, OPENAI_STREAM_USAGE.as_bytes()),
            (&an, openai_req(hi(true)), 200, ANTHROPIC_STREAM.as_bytes()),
            (&an, openai_req(hi(true)), 200, ANTHROPIC_STREAM_TOOLS.as_bytes()),
            (&oa, openai_req(hi(false)), 200, openai_json),
            (&an, openai_req(hi(false)), 200, ANTHROPIC_MESSAGE.as_bytes()),
            (
                &an,
                openai_req(hi(false)),
                529,
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ),
            (&oa, openai_req(hi(false)), 502, b"<html>bad gateway</html>"),
            (
                &an,
                anthropic_req(hi(true)),
                200,
                ANTHROPIC_STREAM_TOOLS.as_bytes(),
            ),
            (&oa, anthropic_req(hi(true)), 200, OPENAI_STREAM_TOOLS.as_bytes()),
            (&oa, anthropic_req(hi(true)), 200, OPENAI_STREAM_USAGE.as_bytes()),
            (&an, anthropic_req(hi(false)), 200, ANTHROPIC_MESSAGE.as_bytes()),
            (&oa, anthropic_req(hi(false)), 200, openai_json),
            (
                &oa,
                anthropic_req(hi(false)),
                429,
                br#"{"error":{"message":"slow","type":"rate_limit_error","code":null}}"#,
            ),
        ];
        for (provider, req, status, body) in cases {
            let name = format!("{} at the {:?} door, {status}", provider.name(), req.door());
            let (_, ex) = Exchange::prepare(&req, provider).unwrap();
            let mut whole = Reply::new(provider, &ex, status, req.stream, 7);
            let want = whole.whole(provider, body).unwrap();

            let mut chunked = Reply::new(provider, &ex, status, req.stream, 7);
            let got = if chunked.needs_whole_body() {
                chunked.whole(provider, body).unwrap()
            } else {
                let mut got = Vec::new();
                let pieces: Vec<&[u8]> = body.chunks(7).collect();
                for (i, piece) in pieces.iter().enumerate() {
                    let out = chunked.chunk(piece, i + 1 == pieces.len());
                    got.extend(out.unwrap_or_else(|| piece.to_vec()));
                }
                got
            };
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{name}"
            );
            assert_eq!(chunked.usage(), whole.usage(), "{name}");
            assert_eq!(status == 200, whole.usage().is_some(), "{name}");
        }
    }

    /// A task call's reader gives what `Reply::whole` gives for a non-streamed chat completion: the
    /// same bytes and usage, or the same error, natively and translated, with structured output asked
    /// for; it refuses what a task call never is.
    #[test]
    fn task_answer_is_reply_whole_for_task_calls() {
        let openai_json = br#"{"id":"c","model":"gpt","choices":[{"index":0,"message":{"role":"assistant","content":"{\"a\":1}"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let tool_answer = br#"{"id":"m","type":"message","role":"assistant","model":"claude","content":[{"type":"tool_use","id":"t","name":"answer","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4}}"#;
        let structured = json!({"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
                           "additionalProperties": false}}}});
        let (oa, an) = (openai(), anthropic());
        let cases: Vec<(&dyn Provider, Value, &[u8])> = vec![
            (&oa, hi(false), openai_json),
            (&oa, hi(false), br#"{"choices":{}}"#),
            (&oa, hi(false), b"<html>ok</html>"),
            (&an, hi(false), ANTHROPIC_MESSAGE.as_bytes()),
            (&an, structured.clone(), tool_answer),
            (&oa, structured, openai_json),
            (&an, hi(false), br#"{"type":"message","content":"no"}"#),
            (&an, hi(false), b"not json"),
        ];
        for (provider, req, body) in cases {
            let name = format!("{} with {}", provider.name(), String::from_utf8_lossy(body));
            let (_, ex) = Exchange::prepare(&openai_req(req), provider).unwrap();
            let mut reply = Reply::new(provider, &ex, 200, false, 0);
            let want = reply.whole(provider, body).map(|b| (b, reply.usage()));
            let got = task_answer(provider, &ex, body, 0);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(got), Err(want)) => assert_eq!(
                    (got.status, got.code, got.message),
                    (want.status, want.code, want.message),
                    "{name}"
                ),
                (got, want) => panic!("{name}: {got:?} against {want:?}"),
            }
        }
        for req in [openai_req(hi(true)), anthropic_req(hi(false))] {
            let (_, ex) = Exchange::prepare(&req, &oa).unwrap();
            let e = task_answer(&oa, &ex, openai_json, 0).unwrap_err();
            assert_eq!((e.status, e.code), (500, "internal_error"), "{:?}", req.door());
        }
    }

    #[test]
    fn anthropic_tool_stream_for_the_openai_door() {
        let (out, usage) = every_split_agrees(
            &anthropic(),
            Dialect::OpenAi,
            Expect::default(),
            ANTHROPIC_STREAM_TOOLS,
        );
        assert_eq!(
            openai_accumulate(&out),
            json!({
                "content": "Checking Paris and Tōkyō.",
                "reasoning": "The user wants the weather in two cities: two calls.",
                "signatures": ["EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"],
                "tool_calls": [
                    {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"c\"}"},
                    {"id": "toolu_01EXvq7Jk3hS4LrYVvr5T4Lq", "name": "get_weather", "arguments": "{\"city\": \"Tōkyō\"}"}
                ],
                "finish_reason": "tool_calls",
                "usage": {"prompt_tokens": 2272, "completion_tokens": 89, "total_tokens": 2361,
                          "prompt_tokens_details": {"cached_tokens": 1800},
                          "completion_tokens_details": {"reasoning_tokens": 24}},
                "done": true
            })
        );
        assert_eq!(
            usage,
            Some(Usage {
                cached_tokens: 1800,
                reasoning_tokens: 24,
                ..Usage::new(2272, 89)
            })
        );
        // Each tool call opens with its id and name, then its arguments in fragments, by index.
        let chunks: Vec<Value> = events(out.as_bytes())
            .iter()
            .filter(|e| e.data.contains("tool_calls"))
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}])
        );
        assert_eq!(
            chunks[1]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "function": {"arguments": "{\"city\": \"Pa"}}])
        );
    }

    #[test]
    fn openai_tool_stream_for_the_anthropic_door() {
        let (out, usage) = every_split_agrees(
            &openai(),
            Dialect::Anthropic,
            Expect::default(),
            OPENAI_STREAM_TOOLS,
        );
        assert_eq!(
            anthropic_accumulate(&out),
            json!({
                "id": "chatcmpl-BTool5b8y", "type": "message", "role": "assistant", "model": "gpt-4o-2024-08-06",
                "content": [
                    {"type": "tool_use", "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_ABC1x9QzFh3rVwQmL0sTnYb2", "name": "get_weather", "input": {"city": "Tōkyō"}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 196, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1920,
                          "output_tokens": 48},
                "stopped": true
            })
        );
        assert_eq!(
            usage,
            Some(Usage {
                cached_tokens: 1920,
                ..Usage::new(2116, 48)
            })
        );
    }

    #[test]
    fn openai_text_stream_for_the_anthropic_door() {
        let (out, _) = every_split_agrees(
            &openai(),
            Dialect::Anthropic,
            Expect::default(),
            OPENAI_STREAM_USAGE,
        );
        let names: Vec<String> = events(out.as_bytes())
            .into_iter()
            .filter_map(|e| e.event)
            .collect();
        assert_eq!(names.first().map(String::as_str), Some("message_start"));
        assert_eq!(
            &names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let m = anthropic_accumulate(&out);
        assert_eq!(
            m["content"],
            json!([{"type": "text", "text": "Hi there – no \"usage\" here"}])
        );
        assert_eq!(m["stop_reason"], "end_turn");
        assert_eq!(m["usage"]["input_tokens"], 12);
        assert_eq!(m["usage"]["output_tokens"], 7);
    }

    #[test]
    fn streams_cut_or_failed_end_cleanly_at_each_door() {
        let cut_openai =
            &OPENAI_STREAM_TOOLS[..OPENAI_STREAM_TOOLS.find("finish_reason\":\"tool_calls").unwrap()];
        let (out, _) = translate(
            &openai(),
            Dialect::Anthropic,
            Expect::default(),
            true,
            &[cut_openai.as_bytes()],
        );
        let m = anthropic_accumulate(&out);
        assert_eq!(m["error"]["type"], "api_error");
        assert_eq!(m["error"]["details"]["error_code"], "stream_incomplete");
        assert!(m.get("stopped").is_none());

        let failed = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n\
                      data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n";
        let (out, _) = translate(
            &openai(),
            Dialect::Anthropic,
            Expect::default(),
            true,
            &[failed.as_bytes()],
        );
        let m = anthropic_accumulate(&out);
        assert_eq!(m["content"][0]["text"], "Hi");
        assert_eq!(
            m["error"],
            json!({"type": "api_error", "message": "boom", "details": {"error_code": "overloaded"}})
        );

        // Passed through at the Anthropic door: watched for usage; a cut stream gets an error event.
        let (_, ex) = Exchange::prepare(&anthropic_req(hi(true)), &anthropic()).unwrap();
        let mut reply = Reply::new(&anthropic(), &ex, 200, true, 1);
        assert!(!reply.needs_whole_body());
        assert_eq!(
            reply.chunk(ANTHROPIC_STREAM_TOOLS.as_bytes(), true),
            None,
            "passes unchanged"
        );
        assert_eq!(
            reply.usage().map(|u| (u.prompt_tokens, u.cached_tokens)),
            Some((2272, 1800))
        );
        let cut = &ANTHROPIC_STREAM_TOOLS.as_bytes()[..ANTHROPIC_STREAM_TOOLS.len() / 2];
        let mut reply = Reply::new(&anthropic(), &ex, 200, true, 1);
        let out = reply.chunk(cut, true).unwrap();
        let tail = String::from_utf8_lossy(&out[cut.len()..]).to_string();
        assert!(
            tail.starts_with("\n\nevent: error\ndata: {\"type\":\"error\""),
            "{tail}"
        );
        assert!(tail.contains("stream_incomplete"));
        let err = Reply::new(&anthropic(), &ex, 200, true, 1)
            .whole(&anthropic(), cut)
            .unwrap_err();
        assert!(err.message.contains("ended before completion"));
    }

    #[test]
    fn structured_output_streams_back_as_content() {
        let forced = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n\
            event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"place\",\"input\":{}}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n\
            event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":12}}\n\n\
            event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let expect = Expect { format_tool: true };
        let (out, _) = every_split_agrees(&anthropic(), Dialect::OpenAi, expect, forced);
        let got = openai_accumulate(&out);
        assert_eq!(got["content"], "{\"city\": \"Paris\"}");
        assert_eq!(got["tool_calls"], json!([]));
        assert_eq!(got["finish_reason"], "stop");

        // And whole, through the exchange prepared for it.
        let req = openai_req(
            json!({"model": "m", "messages": [{"role": "user", "content": "Louvre?"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": {"type": "object"}}}}),
        );
        let (_, ex) = Exchange::prepare(&req, &anthropic()).unwrap();
        let body = br#"{"id":"msg_1","type":"message","model":"claude","content":[{"type":"tool_use","id":"toolu_1","name":"place","input":{"city":"Paris"}}],"stop_reason":"tool_use","usage":{"input_tokens":9,"output_tokens":12}}"#;
        let v: Value = serde_json::from_slice(
            &Reply::new(&anthropic(), &ex, 200, false, 1)
                .whole(&anthropic(), body)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "{\"city\":\"Paris\"}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn json_answers_at_each_door() {
        // An OpenAI tool-call answer for the Anthropic door.
        let (_, ex) = Exchange::prepare(&anthropic_req(hi(false)), &openai()).unwrap();
        let answer = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt","choices":[{"index":0,"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":30,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":10}}}"#;
        let mut reply = Reply::new(&openai(), &ex, 200, false, 1);
        assert!(reply.needs_whole_body());
        let v: Value = serde_json::from_slice(&reply.whole(&openai(), answer).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt",
                   "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}],
                   "stop_reason": "tool_use", "stop_sequence": null,
                   "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": 9}})
        );
        // The rate limit, reading the answer as the client got it, counts the same totals.
        assert_eq!(super::super::usage_of(&v), reply.usage());

        // An Anthropic answer with thinking and tools for the OpenAI door.
        let (_, ex) = Exchange::prepare(&openai_req(hi(false)), &anthropic()).unwrap();
        let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[
            {"type":"thinking","thinking":"Two calls.","signature":"sig"},
            {"type":"tool_use","id":"toolu_1","name":"a","input":{}},{"type":"tool_use","id":"toolu_2","name":"b","input":{"x":1}}],
            "stop_reason":"tool_use","usage":{"input_tokens":5,"cache_read_input_tokens":100,"output_tokens":6}}"#;
        let v: Value = serde_json::from_slice(
            &Reply::new(&anthropic(), &ex, 200, false, 1)
                .whole(&anthropic(), answer)
                .unwrap(),
        )
        .unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], Value::Null);
        assert_eq!(m["reasoning_content"], "Two calls.");
        assert_eq!(
            m["thinking_blocks"],
            json!([{"type": "thinking", "thinking": "Two calls.", "signature": "sig"}])
        );
        assert_eq!(
            m["tool_calls"][1],
            json!({"id": "toolu_2", "type": "function", "function": {"name": "b", "arguments": "{\"x\":1}"}})
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens"], 105);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 100);

        // An Anthropic answer for the Anthropic door passes as it is, its usage read.
        let (_, ex) = Exchange::prepare(&anthropic_req(hi(false)), &anthropic()).unwrap();
        let mut reply = Reply::new(&anthropic(), &ex, 200, false, 1);
        assert_eq!(
            reply.whole(&anthropic(), ANTHROPIC_MESSAGE.as_bytes()).unwrap(),
            ANTHROPIC_MESSAGE.as_bytes()
        );
        assert_eq!(reply.usage().map(|u| u.prompt_tokens), Some(2112));
    }

    #[test]
    fn whole_judges_what_chunks_cannot() {
        let cut = &ANTHROPIC_STREAM.as_bytes()[..ANTHROPIC_STREAM.len() / 2];
        let (oa, an) = (openai(), anthropic());
        let cases: Vec<(&dyn Provider, ChatRequest, &[u8], &str)> = vec![
            (
                &oa,
                openai_req(hi(false)),
                b"{\"object\":\"list\"}",
                "not a chat completion",
            ),
            (&oa, openai_req(hi(false)), b"not json", "not a chat completion"),
            (
                &oa,
                openai_req(hi(true)),
                b"data: {\"choices\":[]}\n\n",
                "stream ended before completion",
            ),
            (&an, openai_req(hi(true)), cut, "stream ended before completion"),
            (
                &an,
                openai_req(hi(false)),
                b"{\"type\":\"error\"}",
                "invalid response from Anthropic",
            ),
            (
                &an,
                anthropic_req(hi(false)),
                b"{\"choices\":[]}",
                "not a message",
            ),
            (
                &oa,
                anthropic_req(hi(false)),
                b"{\"object\":\"list\"}",
                "invalid response from the provider",
            ),
            (
                &oa,
                anthropic_req(hi(true)),
                b"data: {\"choices\":[]}\n\n",
                "stream ended before completion",
            ),
        ];
        for (provider, req, body, want) in cases {
            let (_, ex) = Exchange::prepare(&req, provider).unwrap();
            let err = Reply::new(provider, &ex, 200, req.stream, 1)
                .whole(provider, body)
                .unwrap_err();
            assert_eq!((err.status, err.code), (502, "bad_upstream_response"));
            assert!(err.message.contains(want), "{}: {}", err.message, want);
        }
    }

    #[test]
    fn error_bodies_become_door_errors() {
        let (oa, an) = (openai(), anthropic());
        type Case<'a> = (Dialect, &'a dyn Provider, u16, &'a [u8], Value);
        let cases: Vec<Case> = vec![
            (
                Dialect::OpenAi,
                &an,
                401,
                br#"{"type":"error","error":{"type":"authentication_error","message":"bad key"}}"#,
                json!({"error": {"message": "bad key", "type": "authentication_error", "code": "authentication_error"}}),
            ),
            (
                Dialect::OpenAi,
                &an,
                503,
                b"",
                json!({"error": {"message": "upstream returned HTTP 503 (service unavailable)", "type": "upstream_error", "code": "upstream_503"}}),
            ),
            (
                Dialect::OpenAi,
                &oa,
                429,
                br#"{"error":{"message":"slow","type":"rate_limit","code":null}}"#,
                json!({"error": {"message": "slow", "type": "rate_limit", "code": null}}),
            ),
            (
                Dialect::OpenAi,
                &oa,
                404,
                br#"{"type":"error","error":{"type":"not_found_error","message":"x"}}"#,
                // An `error` object passes as it is, whatever else the body holds.
                json!({"type": "error", "error": {"type": "not_found_error", "message": "x"}}),
            ),
            (
                Dialect::Anthropic,
                &an,
                529,
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
            (
                Dialect::Anthropic,
                &an,
                503,
                b"upstream connect error",
                json!({"type": "error", "error": {"type": "api_error", "message": "upstream connect error",
                       "details": {"error_code": "upstream_503"}}}),
            ),
            (
                Dialect::Anthropic,
                &oa,
                429,
                br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
                json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down",
                       "details": {"error_code": "rate_limit_exceeded"}}}),
            ),
            (
                Dialect::Anthropic,
                &oa,
                400,
                br#"{"error":{"message":"bad","type":"invalid_request_error","code":null}}"#,
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad",
                       "details": {"error_code": "upstream_400"}}}),
            ),
        ];
        for (door, provider, status, body, want) in cases {
            let v: Value = serde_json::from_slice(&client_error(door, provider, status, body)).unwrap();
            assert_eq!(v, want, "{door:?} {} {status}", provider.name());
        }
    }

    #[derive(Debug)]
    struct Ndjson;
    impl Provider for Ndjson {
        fn name(&self) -> &'static str {
            "ndjson"
        }
        fn model(&self) -> &str {
            "m"
        }
        fn path(&self, _: Api, _: bool) -> Option<std::borrow::Cow<'_, str>> {
            Some("/".into())
        }
        fn headers(&self, _: &Outgoing<'_>) -> Vec<(&'static str, String)> {
            Vec::new()
        }
        fn framing(&self) -> Framing {
            Framing::Ndjson
        }
        fn speaks(&self) -> Option<Dialect> {
            None
        }
        fn translator(&self) -> &dyn Translator {
            self
        }
    }
    impl Translator for Ndjson {
        fn label(&self) -> &'static str {
            "N"
        }
        fn request(&self, _: &neutral::Request<'_>, _: &mut Unsupported) -> Result<Rendered, ApiError> {
            Ok(Rendered {
                body: Vec::new(),
                expect: Expect::default(),
            })
        }
        fn response(&self, _: &[u8], _: Expect) -> Result<neutral::Completion, ApiError> {
            Err(ApiError::upstream(502, "bad_upstream_response", "n"))
        }
        fn error(&self, _: u16, _: &[u8]) -> neutral::Error {
            neutral::Error::new("n", "n", "n")
        }
        fn stream(&self, _: Expect) -> Box<dyn StreamDecoder> {
            struct D;
            impl StreamDecoder for D {
                fn decode(&mut self, _: &Frame, _: &mut dyn FnMut(Event<'_>)) {}
                fn usage(&self) -> Option<Usage> {
                    None
                }
            }
            Box::new(D)
        }
    }

    #[test]
    fn ndjson_frames_reach_the_decoder_and_a_stream_without_an_end_is_incomplete() {
        for door in [Dialect::OpenAi, Dialect::Anthropic] {
            let mut s = TranslatedStream::for_door(&Ndjson, door, Expect::default(), 1, false).unwrap();
            assert!(s.feed(b"{\"a\":1}\n").is_empty());
            let out = String::from_utf8(s.finish()).unwrap();
            assert!(out.contains("stream_incomplete"), "{out}");
            assert!(!s.ended() && s.fault().is_none());
        }
        assert!(TranslatedStream::new(&openai(), 1, false).is_none());
        assert!(
            TranslatedStream::for_door(&anthropic(), Dialect::Anthropic, Expect::default(), 1, false)
                .is_none()
        );
    }
}
