//! OpenAI streams: observed as they pass ([`OpenAiStream`]), written from neutral events
//! ([`StreamWriter`]) and read into them ([`Decoder`]).
//!
//! A chunk's `choices[0].delta` carries the text (`content`), reasoning from servers that show it
//! (`reasoning_content`, as DeepSeek and vLLM send it, or `reasoning`), and tool calls: each call's
//! first fragment has its `index`, `id` and `function.name`, the later ones only the `index` and a piece
//! of `function.arguments`. `finish_reason` ends the choice; a chunk with empty `choices` and a `usage`
//! object follows when `stream_options.include_usage` was asked; `data: [DONE]` ends the stream.

use serde_json::Value;

use super::answer::finish_reason;
use super::{usage, usage_json};
use crate::error::error_json;
use crate::json_canon;
use crate::provider::neutral::{self, Event, Finish};
use crate::provider::{Frame, StreamDecoder};
use crate::sse::{close_event, is_json, write_event, Relay, Segment};
use crate::usage::Usage;

/// The error event and terminator that end a stream which cannot go on.
pub fn write_stream_error(out: &mut Vec<u8>, message: &str, kind: &str, code: &str) {
    write_event(out, None, &error_json(message, kind, code));
    write_event(out, None, "[DONE]");
}

use crate::provider::neutral::INCOMPLETE_MESSAGE;

/// Writes [`neutral::Event`]s as OpenAI `chat.completion.chunk` SSE. Reasoning goes out as
/// `delta.reasoning_content` and its signature (or a redacted block) as `delta.thinking_blocks`, the
/// fields LiteLLM uses, so a client can send them back; tool calls as `delta.tool_calls` with their
/// `index`.
#[derive(Debug)]
pub struct StreamWriter {
    created: u64,
    include_usage: bool,
    /// `id` and `model` of the answer, already JSON-encoded, repeated in every chunk.
    id_json: String,
    model_json: String,
}

impl StreamWriter {
    /// `include_usage`: the client asked for the usage chunk before `[DONE]`.
    pub fn new(created: u64, include_usage: bool) -> Self {
        StreamWriter {
            created,
            include_usage,
            id_json: "\"\"".into(),
            model_json: "\"\"".into(),
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: &str, finish: Option<Finish>) {
        let chunk = format!(
            r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"choices":[{{"index":0,"delta":{},"finish_reason":{}}}]}}"#,
            self.id_json,
            self.created,
            self.model_json,
            delta,
            finish_reason(finish)
        );
        write_event(out, None, &chunk);
    }

    /// Writes one event.
    pub fn write(&mut self, event: &Event<'_>, out: &mut Vec<u8>) {
        match event {
            Event::Start { id, model } => {
                self.id_json = Value::from(*id).to_string();
                self.model_json = Value::from(*model).to_string();
                self.chunk(out, r#"{"role":"assistant","content":""}"#, None);
            }
            Event::Text(text) => self.chunk(out, &format!(r#"{{"content":{}}}"#, Value::from(*text)), None),
            Event::Thinking(text) => self.chunk(
                out,
                &format!(r#"{{"reasoning_content":{}}}"#, Value::from(*text)),
                None,
            ),
            Event::Signature(signature) => self.chunk(
                out,
                &format!(
                    r#"{{"thinking_blocks":[{{"type":"thinking","thinking":"","signature":{}}}]}}"#,
                    Value::from(*signature)
                ),
                None,
            ),
            Event::RedactedThinking(data) => self.chunk(
                out,
                &format!(
                    r#"{{"thinking_blocks":[{{"type":"redacted_thinking","data":{}}}]}}"#,
                    Value::from(*data)
                ),
                None,
            ),
            Event::ToolStart { index, id, name } => self.chunk(
                out,
                &format!(
                    r#"{{"tool_calls":[{{"index":{index},"id":{},"type":"function","function":{{"name":{},"arguments":""}}}}]}}"#,
                    Value::from(*id),
                    Value::from(*name)
                ),
                None,
            ),
            Event::ToolArguments { index, json } => {
                if !json.is_empty() {
                    self.chunk(
                        out,
                        &format!(
                            r#"{{"tool_calls":[{{"index":{index},"function":{{"arguments":{}}}}}]}}"#,
                            Value::from(*json)
                        ),
                        None,
                    );
                }
            }
            Event::Finish(finish) => self.chunk(out, "{}", *finish),
            Event::End(usage) => {
                if self.include_usage {
                    let chunk = format!(
                        r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"choices":[],"usage":{}}}"#,
                        self.id_json,
                        self.created,
                        self.model_json,
                        usage_json(usage.unwrap_or_default())
                    );
                    write_event(out, None, &chunk);
                }
                write_event(out, None, "[DONE]");
            }
            Event::Error(e) => write_stream_error(out, &e.message, &e.kind, &e.code),
        }
    }

    /// Ends a stream the provider left unfinished.
    pub fn incomplete(&mut self, out: &mut Vec<u8>) {
        write_stream_error(out, INCOMPLETE_MESSAGE, "upstream_error", "stream_incomplete");
    }
}

/// Reads an OpenAI stream into [`neutral::Event`]s (for Anthropic's door in front of an OpenAI
/// target).
#[derive(Debug, Default)]
pub struct Decoder {
    started: bool,
    usage: Option<Usage>,
}

impl StreamDecoder for Decoder {
    fn decode(&mut self, ev: &Frame, emit: &mut dyn FnMut(Event<'_>)) {
        let data = ev.data.trim();
        if data == "[DONE]" {
            emit(Event::End(self.usage));
            return;
        }
        if data.is_empty() {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            emit(Event::Error(neutral::Error::new(
                "invalid stream chunk from the provider",
                "upstream_error",
                "bad_upstream_response",
            )));
            return;
        };
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let field = |k: &str| err.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            emit(Event::Error(neutral::Error::new(
                field("message").unwrap_or("the provider reported an error"),
                field("type").unwrap_or("upstream_error"),
                field("code").unwrap_or("upstream_error"),
            )));
            return;
        }
        if let Some(u) = usage(&v) {
            self.usage = Some(u);
        }
        let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
            return;
        };
        if !self.started {
            self.started = true;
            let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
            emit(Event::Start {
                id: field("id"),
                model: field("model"),
            });
        }
        if let Some(delta) = choice.get("delta") {
            let text = |k: &str| delta.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            for key in ["reasoning_content", "reasoning"] {
                if let Some(t) = text(key) {
                    emit(Event::Thinking(t));
                    break;
                }
            }
            if let Some(t) = text("content") {
                emit(Event::Text(t));
            }
            if let Some(t) = text("refusal") {
                emit(Event::Text(t));
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(index) = call.get("index").and_then(Value::as_u64) else {
                    continue;
                };
                let index = usize::try_from(index).unwrap_or(usize::MAX);
                let function = call.get("function");
                let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
                let id = call.get("id").and_then(Value::as_str);
                if id.is_some() || name.is_some() {
                    emit(Event::ToolStart {
                        index,
                        id: id.unwrap_or_default(),
                        name: name.unwrap_or_default(),
                    });
                }
                if let Some(args) = function
                    .and_then(|f| f.get("arguments"))
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                {
                    emit(Event::ToolArguments { index, json: args });
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            emit(Event::Finish(Some(super::answer::finish_of(reason))));
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// Whether an event's data may carry a usage object. Plain substring checks keep the common chunk
/// (`"usage":null` or no usage at all) from being JSON-parsed.
fn may_carry_usage(data: &str) -> bool {
    data.match_indices("\"usage\"").any(|(at, key)| {
        let rest = data.get(at + key.len()..).unwrap_or_default().trim_start();
        let rest = rest.strip_prefix(':').unwrap_or(rest).trim_start();
        !rest.starts_with("null")
    })
}

/// An event the relay passes as it came without reading it further: canonical JSON
/// ([`json_canon`]; so JSON) with neither an `error` nor a usage object at its top. Anything else takes
/// the checks below (which reach the same verdict for these).
fn passes_unread(data: &str) -> bool {
    let Some(doc) = json_canon::scan(data) else {
        return false;
    };
    let root = doc.root();
    let error = root.get("error").is_some_and(|e| !e.is_null());
    let usage = root
        .get("usage")
        .is_some_and(|u| u.kind() == json_canon::Kind::Object);
    !error && !usage
}

/// Relays an OpenAI SSE response as the provider sent it, event by event, watching it for usage and
/// completion; optionally removes the usage chunk the gateway asked for on the client's behalf. Each
/// event's data is checked to be JSON (`[DONE]` aside) before any of its bytes leave: a provider that
/// sends something else mid-stream ends the client's stream with an error event
/// (`bad_upstream_response`) and `[DONE]`, and nothing after it is relayed. An event whose bytes are not
/// UTF-8 is written again from its decoding ([`Segment::write_to`]).
#[derive(Debug)]
pub struct OpenAiStream {
    relay: Relay,
    strip: bool,
    usage: Option<Usage>,
    done: bool,
    errored: bool,
    /// An event was not JSON (or outgrew the relay's bound): the client's stream was ended there.
    bad: bool,
}

/// The message of the error event that ends a stream whose provider sent an event that is not JSON.
pub const BAD_EVENT_MESSAGE: &str = "invalid stream chunk from the provider";

impl OpenAiStream {
    pub fn new(strip_usage_chunk: bool) -> Self {
        Self {
            relay: Relay::new(),
            strip: strip_usage_chunk,
            usage: None,
            done: false,
            errored: false,
            bad: false,
        }
    }

    /// Consumes a body chunk. `None` means forward the chunk unchanged (the usual case: whole, good
    /// events); otherwise the bytes to send instead: the events completed so far, a partial event held
    /// back, the usage chunk stripped, or the error that ends the stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        if self.bad {
            return Some(Vec::new());
        }
        let mut out = Vec::with_capacity(chunk.len());
        for seg in self.relay.feed(chunk) {
            self.segment(seg, &mut out);
            if self.bad {
                return Some(out);
            }
        }
        if self.relay.overflowed() {
            self.fail(&mut out);
        }
        (out != chunk).then_some(out)
    }

    /// Ends the stream: returns what is still to be sent, and if `data: [DONE]` never came, an error event
    /// and `[DONE]` so the client sees a well-formed end instead of a silent truncation. A partial
    /// event left at the end (its line cut short) is dropped.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.bad {
            return out;
        }
        if let Some(seg) = self.relay.finish() {
            if seg.event.is_some() {
                self.segment(seg, &mut out);
                if self.bad {
                    return out;
                }
                close_event(&mut out);
            }
        }
        if !self.done {
            self.done = true;
            if self.errored {
                write_event(&mut out, None, "[DONE]");
            } else {
                write_stream_error(
                    &mut out,
                    INCOMPLETE_MESSAGE,
                    "upstream_error",
                    "stream_incomplete",
                );
            }
        }
        out
    }

    /// Usage from the chunk that carried it, if any came.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether the provider ended the stream itself (`data: [DONE]` seen, every event JSON).
    pub fn is_done(&self) -> bool {
        self.done && !self.bad
    }

    fn fail(&mut self, out: &mut Vec<u8>) {
        self.bad = true;
        write_stream_error(out, BAD_EVENT_MESSAGE, "upstream_error", "bad_upstream_response");
    }

    /// One relayed event: its bytes as they came, rewritten without the usage, or the stream's end.
    fn segment(&mut self, seg: Segment, out: &mut Vec<u8>) {
        let Some(ev) = &seg.event else {
            seg.write_to(out);
            return;
        };
        let data = ev.data.as_str();
        let trimmed = data.trim();
        if trimmed == "[DONE]" {
            self.done = true;
        } else if trimmed.is_empty() || passes_unread(data) {
        } else if data.contains("\"error\"") || may_carry_usage(data) {
            let Ok(mut chunk) = serde_json::from_str::<Value>(data) else {
                return self.fail(out);
            };
            self.errored |= chunk.get("error").is_some_and(|e| !e.is_null());
            if let Some(u) = usage(&chunk) {
                self.usage = Some(u);
                if self.strip {
                    if chunk
                        .get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty)
                    {
                        return;
                    }
                    if let Some(obj) = chunk.as_object_mut() {
                        obj.remove("usage");
                    }
                    write_event(out, ev.event.as_deref(), &chunk.to_string());
                    return;
                }
            }
        } else if !is_json(data) {
            return self.fail(out);
        }
        seg.write_to(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::{SseEvent, SseParser};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// An event passed unread is one the full checks would pass too: JSON, no error, no usage.
    #[test]
    fn passes_unread_only_what_the_checks_pass() {
        let cases = [
            (
                r#"{"choices":[{"delta":{"content":"hi"},"index":0}],"id":"c"}"#,
                true,
            ),
            (r#"{"choices":[],"usage":null}"#, true),
            (r#"{"error":null,"x":1}"#, true),
            (
                r#"{"choices":[{"delta":{"content":"\"error\""},"finish_reason":"error"}]}"#,
                true,
            ),
            (r#"{"a":{"error":{"m":1},"usage":{"prompt_tokens":1}}}"#, true),
            (r#"{"usage":5}"#, true),
            (r#"[{"error":1}]"#, true),
            (r#"{"error":{"message":"x"}}"#, false),
            (
                r#"{"choices":[],"usage":{"completion_tokens":2,"prompt_tokens":1}}"#,
                false,
            ),
            (r#"{"usage":{}}"#, false),
            (r#"{"b":1,"a":2}"#, false),
            (r#"{"a": 1}"#, false),
            ("not json", false),
            (r#"{"a":"#, false),
        ];
        for (data, want) in cases {
            assert_eq!(passes_unread(data), want, "{data}");
            if want {
                let v: Value = serde_json::from_str(data).unwrap();
                assert!(is_json(data));
                assert!(v.get("error").is_none_or(Value::is_null), "{data}");
                assert_eq!(usage(&v), None, "{data}");
            }
        }
    }

    const STREAM: &str = include_str!("../../../tests/fixtures/openai_stream.sse");
    const STREAM_USAGE: &str = include_str!("../../../tests/fixtures/openai_stream_usage.sse");

    fn events(bytes: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut v = p.feed(bytes);
        v.extend(p.finish());
        v
    }

    /// Feeds `chunks` and returns what the client receives plus the usage seen.
    fn run(strip: bool, chunks: &[&[u8]]) -> (Vec<u8>, Option<Usage>) {
        let mut s = OpenAiStream::new(strip);
        let mut out = Vec::new();
        for c in chunks {
            match s.feed(c) {
                Some(bytes) => out.extend(bytes),
                None => out.extend_from_slice(c),
            }
        }
        out.extend(s.finish());
        (out, s.usage())
    }

    #[test]
    fn pass_through_when_not_stripping() {
        let mut s = OpenAiStream::new(false);
        assert_eq!(s.feed(STREAM_USAGE.as_bytes()), None);
        assert_eq!(s.finish(), b"");
        assert_eq!(s.usage(), Some(Usage::new(12, 7)));
        assert!(s.is_done());

        let (out, usage) = run(false, &[STREAM.as_bytes()]);
        assert_eq!(out, STREAM.as_bytes());
        assert_eq!(usage, None);
    }

    #[test]
    fn strip_removes_usage_chunk() {
        let (out, usage) = run(true, &[STREAM_USAGE.as_bytes()]);
        assert_eq!(usage, Some(Usage::new(12, 7)));
        let want: Vec<SseEvent> = events(STREAM_USAGE.as_bytes())
            .into_iter()
            .filter(|e| !e.data.contains("prompt_tokens"))
            .collect();
        let got = events(&out);
        assert_eq!(got, want);
        assert_eq!(got.len(), 5);
        assert_eq!(got.last().unwrap().data, "[DONE]");
        // Unchanged events keep their exact bytes.
        let kept = STREAM_USAGE
            .split("\n\n")
            .filter(|e| !e.contains("prompt_tokens"))
            .collect::<Vec<_>>();
        assert_eq!(String::from_utf8(out).unwrap(), kept.join("\n\n"));
    }

    #[test]
    fn strip_removes_usage_key_from_content_chunk() {
        let input = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],",
            "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n",
            "data: [DONE]\n\n"
        );
        let (out, usage) = run(true, &[input.as_bytes()]);
        assert_eq!(usage, Some(Usage::new(4, 2)));
        let got = events(&out);
        assert_eq!(got.len(), 2);
        let v: Value = serde_json::from_str(&got[0].data).unwrap();
        assert_eq!(
            v,
            json!({"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})
        );

        // Without strip the same stream is only observed.
        let (out, usage) = run(false, &[input.as_bytes()]);
        assert_eq!(out, input.as_bytes());
        assert_eq!(usage, Some(Usage::new(4, 2)));
    }

    #[test]
    fn usage_detection_is_cheap_and_correct() {
        let cases = [
            (r#"{"usage":null}"#, false),
            (r#"{"usage" : null}"#, false),
            (r#"{"choices":[]}"#, false),
            (r#"{"content":"the \"usage\" word"}"#, false),
            (r#"{"usage":{"prompt_tokens":1}}"#, true),
            (r#"{"usage": {"prompt_tokens":1}}"#, true),
            (r#"{"a":{"usage":null},"usage":{}}"#, true),
        ];
        for (data, want) in cases {
            assert_eq!(may_carry_usage(data), want, "{data}");
        }
    }

    #[test]
    fn incomplete_stream_gets_error_and_done() {
        let cut = STREAM.find("data: [DONE]").unwrap();
        let want_tail = concat!(
            "data: {\"error\":{\"message\":\"upstream stream ended before completion\",",
            "\"type\":\"upstream_error\",\"code\":\"stream_incomplete\"}}\n\ndata: [DONE]\n\n"
        );
        for strip in [false, true] {
            let (out, usage) = run(strip, &[&STREAM.as_bytes()[..cut]]);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text, format!("{}{want_tail}", &STREAM[..cut]), "strip={strip}");
            assert_eq!(usage, None);
        }

        // Cut inside an event: the partial event is held back and dropped, never sent half.
        let mid = STREAM.find("\"Hello\"").unwrap();
        for strip in [false, true] {
            let (out, _) = run(strip, &[&STREAM.as_bytes()[..mid]]);
            let got = events(&out);
            assert_eq!(got.len(), 3, "{got:?}");
            assert!(got[1].data.contains("stream_incomplete"));
            assert_eq!(got[2].data, "[DONE]");
        }

        // An upstream error event already told the client; only [DONE] is added.
        let errored = "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"code\":null}}\n\n";
        let (out, _) = run(false, &[errored.as_bytes()]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{errored}data: [DONE]\n\n")
        );

        // Complete stream whose last event lacks the blank line: nothing but the terminator is added.
        for strip in [false, true] {
            let (out, _) = run(strip, &[b"data: [DONE]\n"]);
            assert_eq!(out, b"data: [DONE]\n\n");
            // A last line cut short is dropped: the end never came.
            let (out, _) = run(strip, &[b"data: [DONE]"]);
            assert!(String::from_utf8(out).unwrap().starts_with("data: {\"error\""));
        }
    }

    /// An event that is not JSON ends the client's stream before any of its bytes: an error event and
    /// `[DONE]`, nothing after; the events before it pass as they came.
    #[test]
    fn an_event_that_is_not_json_ends_the_stream() {
        let first = STREAM.find("\n\n").unwrap() + 2;
        let bad = "data: <html><body>502 Bad Gateway</body></html>\n\n";
        let input = format!("{}{bad}{}", &STREAM[..first], &STREAM[first..]);
        let want = format!(
            "{}data: {{\"error\":{{\"message\":\"{BAD_EVENT_MESSAGE}\",\"type\":\"upstream_error\",\"code\":\"bad_upstream_response\"}}}}\n\ndata: [DONE]\n\n",
            &STREAM[..first]
        );
        for strip in [false, true] {
            for cut in 0..=input.len() {
                let mut s = OpenAiStream::new(strip);
                let mut out = Vec::new();
                for c in [&input.as_bytes()[..cut], &input.as_bytes()[cut..]] {
                    match s.feed(c) {
                        Some(bytes) => out.extend(bytes),
                        None => out.extend_from_slice(c),
                    }
                }
                out.extend(s.finish());
                assert_eq!(String::from_utf8(out).unwrap(), want, "strip={strip} cut={cut}");
                assert!(!s.is_done(), "a bad stream is not complete");
            }
        }
        // A cut JSON chunk (`malformed`) is caught the same way.
        let (out, _) = run(false, &[b"data: {\"id\":\"c\",\"cho\n\ndata: [DONE]\n\n"]);
        assert!(String::from_utf8(out).unwrap().starts_with("data: {\"error\""));
    }

    #[test]
    fn every_split_matches_whole() {
        let truncated = &STREAM_USAGE[..STREAM_USAGE.len() - 30];
        let crlf = STREAM_USAGE.replace('\n', "\r\n");
        for input in [STREAM, STREAM_USAGE, truncated, crlf.as_str()] {
            let input = input.as_bytes();
            for strip in [false, true] {
                let whole = run(strip, &[input]);
                for i in 0..=input.len() {
                    assert_eq!(
                        run(strip, &[&input[..i], &input[i..]]),
                        whole,
                        "strip={strip} split at {i}"
                    );
                }
                let bytes: Vec<&[u8]> = input.chunks(1).collect();
                assert_eq!(run(strip, &bytes), whole, "strip={strip} byte by byte");
            }
        }
    }
}
