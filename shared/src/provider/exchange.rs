//! The one translation path between a client and a target's provider, for both ai-proxy modes.
//!
//! [`Exchange::prepare`] turns the client's request into the provider's body and remembers what the
//! answer needs (the usage chunk to strip, whether the client wants it). [`Reply`] then reads the
//! provider's answer: forward mode feeds it chunk by chunk as the proxy relays it ([`Reply::chunk`],
//! or [`Reply::whole`] for bodies that must be rewritten at once), callout mode hands it over whole
//! ([`Reply::whole`]), which also judges it: an answer that cannot be read, or a stream without its
//! end, is an error there, so the request can still go elsewhere.

use super::neutral::Event;
use super::openai::{self, ChatRequest, OpenAiStream, StreamWriter};
use super::{Frames, Provider, StreamDecoder, Translator, Wire};
use crate::error::{error_json, ApiError};
use crate::usage::Usage;
use serde_json::Value;

/// Bound on the copy of a passed-through JSON answer kept to read its usage.
const MAX_OBSERVED: usize = 8 * 1024 * 1024;

/// What one request's answer needs, decided when its body is prepared for the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// The client asked for a stream.
    pub stream: bool,
    /// The client asked for the usage chunk itself.
    include_usage: bool,
    /// We asked the provider for the usage chunk; it is stripped again.
    injected_usage: bool,
}

impl Exchange {
    /// The body to send to `provider` for the client's request. A provider that speaks OpenAI gets
    /// the client's body with its own model and, for a stream, the usage chunk asked for; any other
    /// gets the request rendered in its dialect, or a 400 naming what it cannot take.
    pub fn prepare(req: &ChatRequest, provider: &dyn Provider) -> Result<(Vec<u8>, Exchange), ApiError> {
        let mut exchange = Exchange {
            stream: req.stream,
            include_usage: req.include_usage,
            injected_usage: false,
        };
        let body = match provider.wire() {
            Wire::OpenAi => {
                let mut body = req.body.clone();
                body.insert("model".into(), Value::from(provider.model()));
                if req.stream {
                    exchange.injected_usage = openai::request_stream_usage(&mut body);
                }
                serde_json::to_vec(&body)
                    .map_err(|e| ApiError::new(500, "server_error", "internal_error", e.to_string()))?
            }
            Wire::Translated(t) => t.request(&openai::to_neutral(req, t.label())?)?,
        };
        Ok((body, exchange))
    }

    /// The `content-type` of a successful answer as the client gets it.
    pub fn content_type(&self) -> &'static str {
        if self.stream {
            "text/event-stream"
        } else {
            "application/json"
        }
    }
}

/// An error answer of `provider` as the client gets it: an OpenAI error object (one already is
/// passed as it is).
pub fn client_error(provider: &dyn Provider, status: u16, body: &[u8]) -> Vec<u8> {
    if let Wire::Translated(t) = provider.wire() {
        if let Some(e) = t.error(status, body) {
            return error_json(&e.message, &e.kind, &e.code).into_bytes();
        }
    }
    openai::error_from_upstream(status, body).unwrap_or_else(|| body.to_vec())
}

/// Reads one answer of a provider for the client.
#[derive(Debug)]
pub struct Reply {
    reading: Reading,
    created: u64,
    usage: Option<Usage>,
    /// The provider ended its stream itself (seen before any end of ours is added).
    complete: bool,
}

#[derive(Debug)]
enum Reading {
    /// A stream in the client's dialect: observed for usage and its end; the usage chunk we asked
    /// for is stripped.
    Observed(OpenAiStream),
    /// A stream in the provider's dialect, translated event by event.
    Translated(Box<TranslatedStream>),
    /// JSON in the client's dialect, passed through; a bounded copy is kept to read its usage.
    Json(Vec<u8>),
    /// JSON in the provider's dialect: translated whole.
    TranslatedJson,
    /// An error answer (any status outside 2xx): made an OpenAI error whole.
    Error { status: u16 },
}

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
        let reading = match ((200..300).contains(&status), stream, provider.wire()) {
            (false, _, _) => Reading::Error { status },
            (true, true, Wire::OpenAi) => Reading::Observed(OpenAiStream::new(exchange.injected_usage)),
            (true, true, Wire::Translated(t)) => Reading::Translated(Box::new(TranslatedStream::with(
                t,
                provider.framing().decoder(),
                created,
                exchange.include_usage,
            ))),
            (true, false, Wire::OpenAi) => Reading::Json(Vec::new()),
            (true, false, Wire::Translated(_)) => Reading::TranslatedJson,
        };
        Reply {
            reading,
            created,
            usage: None,
            complete: false,
        }
    }

    /// The body must be read whole and rewritten at once ([`Reply::whole`]); otherwise it is read as
    /// it comes ([`Reply::chunk`]).
    pub fn needs_whole_body(&self) -> bool {
        matches!(self.reading, Reading::TranslatedJson | Reading::Error { .. })
    }

    /// One chunk of an answer read as it comes: replacement bytes, or `None` to pass it unchanged.
    /// `end`: the last chunk (the stream's missing end, if any, is added to it).
    pub fn chunk(&mut self, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        match &mut self.reading {
            Reading::Observed(s) => {
                let out = s.feed(chunk);
                if !end {
                    return out;
                }
                self.complete = s.is_done();
                let tail = s.finish();
                self.usage = s.usage();
                if tail.is_empty() {
                    return out;
                }
                let mut all = out.unwrap_or_else(|| chunk.to_vec());
                all.extend_from_slice(&tail);
                Some(all)
            }
            Reading::Translated(s) => {
                let mut out = s.feed(chunk);
                if end {
                    self.complete = s.is_done();
                    out.extend_from_slice(&s.finish());
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
                        .and_then(|v| openai::usage(&v));
                }
                None
            }
            Reading::TranslatedJson | Reading::Error { .. } => None,
        }
    }

    /// The whole answer, for the client. An error answer becomes an OpenAI error (never `Err`).
    /// A 2xx that cannot be read — not a chat completion, or a stream without its end — is `Err`
    /// (502 `bad_upstream_response`).
    pub fn whole(&mut self, provider: &dyn Provider, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        let bad = |message: &str| ApiError::upstream(502, "bad_upstream_response", message);
        match &self.reading {
            Reading::Error { status } => Ok(client_error(provider, *status, body)),
            Reading::TranslatedJson => match provider.wire() {
                Wire::Translated(t) => {
                    let c = t.response(body)?;
                    self.usage = Some(c.usage);
                    Ok(openai::completion_json(&c, self.created))
                }
                // The provider speaks OpenAI after all: judge the body as such.
                Wire::OpenAi => self.openai_json(body),
            },
            Reading::Json(_) => self.openai_json(body),
            Reading::Observed(_) | Reading::Translated(_) => {
                let out = self.chunk(body, true).unwrap_or_else(|| body.to_vec());
                if !self.complete {
                    return Err(bad("the provider's stream ended before completion"));
                }
                Ok(out)
            }
        }
    }

    fn openai_json(&mut self, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) if v.get("choices").is_some_and(Value::is_array) => {
                self.usage = openai::usage(&v);
                Ok(body.to_vec())
            }
            _ => Err(ApiError::upstream(
                502,
                "bad_upstream_response",
                "the provider's answer is not a chat completion",
            )),
        }
    }

    /// The usage the answer reported, once its end has been read.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// A stream in a provider's own dialect, translated to OpenAI chunks as it arrives: frames (by the
/// provider's framing) → [`Event`]s (its decoder) → OpenAI SSE ([`StreamWriter`]).
pub struct TranslatedStream {
    frames: Option<Frames>,
    decoder: Box<dyn StreamDecoder>,
    writer: StreamWriter,
    /// `[DONE]` has been written; later upstream events are ignored.
    done: bool,
}

impl std::fmt::Debug for TranslatedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranslatedStream")
            .field("writer", &self.writer)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl TranslatedStream {
    /// The translator for one answer of `provider`, stamped `created`; `include_usage`: the client
    /// asked for the usage chunk.
    pub fn new(provider: &dyn Provider, created: u64, include_usage: bool) -> Option<TranslatedStream> {
        match provider.wire() {
            Wire::Translated(t) => Some(TranslatedStream::with(
                t,
                provider.framing().decoder(),
                created,
                include_usage,
            )),
            Wire::OpenAi => None,
        }
    }

    fn with(t: &dyn Translator, frames: Option<Frames>, created: u64, include_usage: bool) -> Self {
        TranslatedStream {
            frames,
            decoder: t.stream(),
            writer: StreamWriter::new(created, include_usage),
            done: false,
        }
    }

    /// Consumes a body chunk and returns the OpenAI SSE bytes for the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let frames = self.frames.as_mut().map(|f| f.feed(chunk)).unwrap_or_default();
        for frame in &frames {
            self.translate(frame, &mut out);
        }
        out
    }

    /// Ends the stream; without the provider's own end the client gets an error event and `[DONE]`.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let frames = self.frames.as_mut().map(Frames::finish).unwrap_or_default();
        for frame in &frames {
            self.translate(frame, &mut out);
        }
        if !self.done {
            if self.frames.is_none() {
                let e = super::neutral::Error::new(
                    "this provider's stream framing is not supported yet",
                    "upstream_error",
                    "unsupported_framing",
                );
                self.writer.write(&Event::Error(e), &mut out);
            } else {
                self.writer.incomplete(&mut out);
            }
            self.done = true;
        }
        out
    }

    pub fn usage(&self) -> Option<Usage> {
        self.decoder.usage()
    }

    /// Whether the stream has been terminated (`[DONE]` written).
    pub fn is_done(&self) -> bool {
        self.done
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
    use super::super::{Frame, ProviderConfig};
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const OPENAI_STREAM_USAGE: &str = include_str!("../../tests/fixtures/openai_stream_usage.sse");
    const ANTHROPIC_STREAM: &str = include_str!("../../tests/fixtures/anthropic_stream.sse");
    const ANTHROPIC_MESSAGE: &str = include_str!("../../tests/fixtures/anthropic_message.json");

    fn openai() -> Box<dyn Provider> {
        let raw: ProviderConfig = serde_json::from_value(json!({"provider": "openai"})).unwrap();
        raw.compile(Some("gpt-up".into()), &|f| f.to_string()).unwrap()
    }

    fn request(v: Value) -> ChatRequest {
        openai::chat_request(v).unwrap()
    }

    #[test]
    fn prepares_per_wire() {
        let stream =
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}], "x": 1});
        let (body, ex) = Exchange::prepare(&request(stream.clone()), openai().as_ref()).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent["model"], "gpt-up");
        assert_eq!(sent["x"], 1, "unknown fields pass through");
        assert_eq!(sent["stream_options"], json!({"include_usage": true}));
        assert!(ex.injected_usage && !ex.include_usage && ex.stream);

        let mut asked = stream.clone();
        asked["stream_options"] = json!({"include_usage": true});
        let (_, ex) = Exchange::prepare(&request(asked), openai().as_ref()).unwrap();
        assert!(!ex.injected_usage && ex.include_usage);

        let (body, ex) = Exchange::prepare(&request(stream), &Anthropic::new("claude")).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            sent,
            json!({"model": "claude", "max_tokens": 4096, "stream": true,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
        );
        assert!(!ex.injected_usage, "Anthropic streams always report usage");
        assert_eq!(ex.content_type(), "text/event-stream");
    }

    /// Forward mode (chunks as they come) and callout mode (the whole answer) give the client the same
    /// bytes and usage, for every kind of answer.
    #[test]
    fn chunked_and_whole_agree() {
        let json_req = request(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        let stream_req =
            request(json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}));
        let anthropic = Anthropic::new("claude");
        let openai = openai();
        let openai_json = br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let cases: Vec<(&dyn Provider, &ChatRequest, u16, &[u8])> = vec![
            (openai.as_ref(), &stream_req, 200, OPENAI_STREAM_USAGE.as_bytes()),
            (&anthropic, &stream_req, 200, ANTHROPIC_STREAM.as_bytes()),
            (openai.as_ref(), &json_req, 200, openai_json),
            (&anthropic, &json_req, 200, ANTHROPIC_MESSAGE.as_bytes()),
            (
                &anthropic,
                &json_req,
                529,
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ),
            (openai.as_ref(), &json_req, 502, b"<html>bad gateway</html>"),
        ];
        for (provider, req, status, body) in cases {
            let (_, ex) = Exchange::prepare(req, provider).unwrap();
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
                "{} {status}",
                provider.name()
            );
            assert_eq!(chunked.usage(), whole.usage(), "{} {status}", provider.name());
            assert_eq!(
                status == 200,
                whole.usage().is_some(),
                "{} {status}",
                provider.name()
            );
        }
    }

    #[test]
    fn whole_judges_what_chunks_cannot() {
        let anthropic = Anthropic::new("claude");
        let openai = openai();
        let json_req = request(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        let stream_req =
            request(json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}));
        let cut = &ANTHROPIC_STREAM.as_bytes()[..ANTHROPIC_STREAM.len() / 2];
        let cases: Vec<(&dyn Provider, &ChatRequest, &[u8], &str)> = vec![
            (
                openai.as_ref(),
                &json_req,
                b"{\"object\":\"list\"}",
                "not a chat completion",
            ),
            (openai.as_ref(), &json_req, b"not json", "not a chat completion"),
            (
                openai.as_ref(),
                &stream_req,
                b"data: {\"choices\":[]}\n\n",
                "stream ended before completion",
            ),
            (&anthropic, &stream_req, cut, "stream ended before completion"),
            (
                &anthropic,
                &json_req,
                b"{\"type\":\"error\"}",
                "invalid response from Anthropic",
            ),
        ];
        for (provider, req, body, want) in cases {
            let (_, ex) = Exchange::prepare(req, provider).unwrap();
            let err = Reply::new(provider, &ex, 200, req.stream, 1)
                .whole(provider, body)
                .unwrap_err();
            assert_eq!((err.status, err.code), (502, "bad_upstream_response"));
            assert!(err.message.contains(want), "{}: {}", err.message, want);
        }
    }

    #[test]
    fn error_bodies_become_openai_errors() {
        let anthropic = Anthropic::new("claude");
        let openai = openai();
        let cases: Vec<(&dyn Provider, u16, &[u8], Value)> = vec![
            (
                &anthropic,
                401,
                br#"{"type":"error","error":{"type":"authentication_error","message":"bad key"}}"#,
                json!({"error": {"message": "bad key", "type": "authentication_error", "code": "authentication_error"}}),
            ),
            (
                &anthropic,
                503,
                b"",
                json!({"error": {"message": "upstream returned HTTP 503 (service unavailable)", "type": "upstream_error", "code": "upstream_503"}}),
            ),
            (
                openai.as_ref(),
                429,
                br#"{"error":{"message":"slow","type":"rate_limit","code":null}}"#,
                json!({"error": {"message": "slow", "type": "rate_limit", "code": null}}),
            ),
            (
                openai.as_ref(),
                404,
                br#"{"type":"error","error":{"type":"not_found_error","message":"x"}}"#,
                // An `error` object passes as it is, whatever else the body holds.
                json!({"type": "error", "error": {"type": "not_found_error", "message": "x"}}),
            ),
        ];
        for (provider, status, body, want) in cases {
            let v: Value = serde_json::from_slice(&client_error(provider, status, body)).unwrap();
            assert_eq!(v, want, "{} {status}", provider.name());
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
        fn path(&self, _: bool) -> std::borrow::Cow<'_, str> {
            "/".into()
        }
        fn headers(&self, _: Option<&str>) -> Vec<(&'static str, String)> {
            Vec::new()
        }
        fn framing(&self) -> super::super::Framing {
            super::super::Framing::Ndjson
        }
        fn wire(&self) -> Wire<'_> {
            Wire::Translated(self)
        }
    }
    impl Translator for Ndjson {
        fn label(&self) -> &'static str {
            "N"
        }
        fn request(&self, _: &super::super::neutral::Request<'_>) -> Result<Vec<u8>, ApiError> {
            Ok(Vec::new())
        }
        fn response(&self, _: &[u8]) -> Result<super::super::neutral::Completion, ApiError> {
            Err(ApiError::upstream(502, "bad_upstream_response", "n"))
        }
        fn error(&self, _: u16, _: &[u8]) -> Option<super::super::neutral::Error> {
            None
        }
        fn stream(&self) -> Box<dyn StreamDecoder> {
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
    fn a_framing_without_a_decoder_ends_with_a_clear_error() {
        let mut s = TranslatedStream::new(&Ndjson, 1, false).unwrap();
        assert!(s.feed(b"{\"a\":1}\n").is_empty());
        let out = String::from_utf8(s.finish()).unwrap();
        assert!(
            out.contains("unsupported_framing") && out.ends_with("data: [DONE]\n\n"),
            "{out}"
        );
        assert!(TranslatedStream::new(openai().as_ref(), 1, false).is_none());
    }
}
