//! Anthropic streams: read into neutral events ([`Decoder`]), written from them ([`StreamWriter`]) and
//! watched as they pass ([`AnthropicStream`]).
//!
//! An answer is `message_start`, then content blocks, each `content_block_start`, deltas and
//! `content_block_stop` (`text_delta`; `thinking_delta` and a `signature_delta` for thinking; a
//! `redacted_thinking` block whole in its start; `input_json_delta` fragments of a `tool_use` block's
//! input), then `message_delta` with the `stop_reason` and cumulative usage, and `message_stop`; `ping`
//! events may come anywhere, and an `error` event ends a stream that failed.

use serde_json::{json, Value};

use super::answer::{finish, stop_reason};
use super::{usage_json, StreamUsage};
use crate::api::anthropic_error;
use crate::provider::neutral::{self, Event, Finish};
use crate::provider::{Expect, Frame, StreamDecoder};
use crate::sse::{close_event, is_json, write_event, Relay, Segment};
use crate::usage::Usage;

/// What a content block of the answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool call: its index among the answer's calls.
    Tool(usize),
    /// The forced tool of structured output: its input is the answer's text.
    Format,
    Other,
}

/// Decodes Anthropic stream events into [`neutral::Event`]s.
#[derive(Debug, Default)]
pub struct Decoder {
    usage: StreamUsage,
    expect: Expect,
    /// Content blocks by their `index`.
    blocks: Vec<(u64, Block)>,
    tools: usize,
}

impl Decoder {
    pub fn new(expect: Expect) -> Decoder {
        Decoder {
            expect,
            ..Decoder::default()
        }
    }

    fn block(&self, index: u64) -> Block {
        self.blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map_or(Block::Other, |(_, b)| *b)
    }
}

const HANDLED: [&str; 6] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "message_delta",
    "message_stop",
    "error",
];

impl StreamDecoder for Decoder {
    fn decode(&mut self, ev: &Frame, emit: &mut dyn FnMut(Event<'_>)) {
        if ev.event.as_deref().is_some_and(|name| !HANDLED.contains(&name)) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            if ev.event.is_some() {
                emit(Event::Error(neutral::Error::new(
                    "invalid stream event from Anthropic",
                    "upstream_error",
                    "bad_upstream_response",
                )));
            }
            return;
        };
        let kind = match ev.event.as_deref() {
            Some(name) => name,
            None => v.get("type").and_then(Value::as_str).unwrap_or_default(),
        };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                self.usage.observe_json(&v);
                let message = v.get("message");
                let field = |k| {
                    message
                        .and_then(|m| m.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                emit(Event::Start {
                    id: field("id"),
                    model: field("model"),
                });
            }
            "content_block_start" => {
                let b = v.get("content_block");
                let field = |k| {
                    b.and_then(|b| b.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                let block = match field("type") {
                    "text" => {
                        let text = field("text");
                        if !text.is_empty() {
                            emit(Event::Text(text));
                        }
                        Block::Text
                    }
                    "thinking" => {
                        let text = field("thinking");
                        if !text.is_empty() {
                            emit(Event::Thinking(text));
                        }
                        Block::Thinking
                    }
                    "redacted_thinking" => {
                        emit(Event::RedactedThinking(field("data")));
                        Block::Other
                    }
                    "tool_use" if self.expect.format_tool => Block::Format,
                    "tool_use" => {
                        let n = self.tools;
                        self.tools += 1;
                        emit(Event::ToolStart {
                            index: n,
                            id: field("id"),
                            name: field("name"),
                        });
                        Block::Tool(n)
                    }
                    _ => Block::Other,
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let delta = v.get("delta");
                let field = |k| delta.and_then(|d| d.get(k)).and_then(Value::as_str);
                match (field("type"), self.block(index)) {
                    (Some("text_delta"), _) => {
                        if let Some(t) = field("text") {
                            emit(Event::Text(t));
                        }
                    }
                    (Some("thinking_delta"), _) => {
                        if let Some(t) = field("thinking") {
                            emit(Event::Thinking(t));
                        }
                    }
                    (Some("signature_delta"), _) => {
                        if let Some(s) = field("signature") {
                            emit(Event::Signature(s));
                        }
                    }
                    (Some("input_json_delta"), Block::Format) => {
                        if let Some(j) = field("partial_json").filter(|j| !j.is_empty()) {
                            emit(Event::Text(j));
                        }
                    }
                    (Some("input_json_delta"), Block::Tool(n)) => {
                        if let Some(j) = field("partial_json").filter(|j| !j.is_empty()) {
                            emit(Event::ToolArguments { index: n, json: j });
                        }
                    }
                    // Citations, and deltas of blocks with no neutral form.
                    _ => {}
                }
            }
            "message_delta" => {
                self.usage.observe_json(&v);
                let stop = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                let mut f = finish(stop);
                if self.expect.format_tool && f == Some(Finish::ToolCalls) {
                    f = Some(Finish::Stop);
                }
                emit(Event::Finish(f));
            }
            "message_stop" => emit(Event::End(self.usage.usage())),
            "error" => {
                let err = v.get("error");
                let field = |k| err.and_then(|e| e.get(k)).and_then(Value::as_str);
                let kind = field("type").unwrap_or("upstream_error");
                let message = field("message").unwrap_or("Anthropic stream error");
                emit(Event::Error(neutral::Error::new(message, kind, kind)));
            }
            _ => {}
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }
}

/// Writes [`neutral::Event`]s as an Anthropic stream, for the Anthropic door in front of a target that
/// speaks another dialect. One content block is open at a time: text, thinking (its signature as a
/// `signature_delta`), or a tool call (`input_json_delta` fragments); the stop reason waits for the
/// usage, which comes last from OpenAI targets, and both go out in `message_delta`.
#[derive(Debug, Default)]
pub struct StreamWriter {
    started: bool,
    /// The open block: its index and kind.
    open: Option<(usize, Block)>,
    next_block: usize,
    /// Tool calls' blocks: (tool index, block index).
    tools: Vec<(usize, usize)>,
    stop: Option<Finish>,
}

fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    write_event(out, Some(name), &data.to_string());
}

impl StreamWriter {
    pub fn new() -> StreamWriter {
        StreamWriter::default()
    }

    fn start(&mut self, out: &mut Vec<u8>, id: &str, model: &str) {
        if self.started {
            return;
        }
        self.started = true;
        event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// Opens a block of `kind` with `content_block` unless one of that kind is open; its index.
    fn open(&mut self, out: &mut Vec<u8>, kind: Block, content_block: Value) -> usize {
        if let Some((index, open)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        );
        self.open = Some((index, kind));
        index
    }

    fn delta(out: &mut Vec<u8>, index: usize, delta: Value) {
        event(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    /// Writes one event.
    pub fn write(&mut self, ev: &Event<'_>, out: &mut Vec<u8>) {
        match ev {
            Event::Start { id, model } => self.start(out, id, model),
            Event::Error(e) => {
                write_event(
                    out,
                    Some("error"),
                    &anthropic_error(500, &e.message, &e.kind, None, &e.code),
                );
                self.open = None;
            }
            other => {
                self.start(out, "", "");
                self.content(other, out);
            }
        }
    }

    fn content(&mut self, ev: &Event<'_>, out: &mut Vec<u8>) {
        match ev {
            Event::Text(t) if !t.is_empty() => {
                let i = self.open(out, Block::Text, json!({"type": "text", "text": ""}));
                Self::delta(out, i, json!({"type": "text_delta", "text": t}));
            }
            Event::Thinking(t) if !t.is_empty() => {
                let i = self.open(
                    out,
                    Block::Thinking,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                );
                Self::delta(out, i, json!({"type": "thinking_delta", "thinking": t}));
            }
            Event::Signature(s) => {
                let i = self.open(
                    out,
                    Block::Thinking,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                );
                Self::delta(out, i, json!({"type": "signature_delta", "signature": s}));
            }
            Event::RedactedThinking(data) => {
                self.open(
                    out,
                    Block::Other,
                    json!({"type": "redacted_thinking", "data": data}),
                );
                self.close(out);
            }
            Event::ToolStart { index, id, name } => {
                self.close(out);
                let block = self.open(
                    out,
                    Block::Tool(*index),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                );
                self.tools.push((*index, block));
            }
            Event::ToolArguments { index, json } if !json.is_empty() => {
                let block = match self.tools.iter().find(|(t, _)| t == index) {
                    Some((_, b)) => *b,
                    None => {
                        let b = self.open(
                            out,
                            Block::Tool(*index),
                            json!({"type": "tool_use", "id": "", "name": "", "input": {}}),
                        );
                        self.tools.push((*index, b));
                        b
                    }
                };
                Self::delta(
                    out,
                    block,
                    json!({"type": "input_json_delta", "partial_json": json}),
                );
            }
            Event::Finish(f) => {
                self.close(out);
                self.stop = *f;
            }
            Event::End(usage) => {
                self.close(out);
                event(
                    out,
                    "message_delta",
                    &json!({"type": "message_delta",
                            "delta": {"stop_reason": stop_reason(self.stop), "stop_sequence": null},
                            "usage": usage_json(usage.unwrap_or_default())}),
                );
                event(out, "message_stop", &json!({"type": "message_stop"}));
            }
            _ => {}
        }
    }

    /// Ends a stream the provider left unfinished: an `error` event (code `stream_incomplete`).
    pub fn incomplete(&mut self, out: &mut Vec<u8>) {
        self.close(out);
        write_event(out, Some("error"), &incomplete_error());
    }
}

fn incomplete_error() -> String {
    anthropic_error(
        502,
        neutral::INCOMPLETE_MESSAGE,
        "api_error",
        None,
        "stream_incomplete",
    )
}

/// Relays an Anthropic stream that passes as it is (Anthropic's door in front of an Anthropic target),
/// event by event as the provider sent it, watching it for its usage and its end; a stream cut before
/// `message_stop` gets an `error` event so the client sees a clean end. Each event's data is checked to
/// be JSON before any of its bytes leave: one that is not ends the client's stream with an `error`
/// event (`bad_upstream_response`), and nothing after it is relayed.
#[derive(Debug, Default)]
pub struct AnthropicStream {
    relay: Relay,
    usage: StreamUsage,
    done: bool,
    errored: bool,
    /// An event was not JSON (or outgrew the relay's bound): the client's stream was ended there.
    bad: bool,
}

impl AnthropicStream {
    pub fn new() -> AnthropicStream {
        AnthropicStream::default()
    }

    /// Consumes a chunk: `None` to pass it unchanged (whole, good events), or the bytes to send
    /// instead (a partial event held back, or the error that ends the stream).
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

    fn fail(&mut self, out: &mut Vec<u8>) {
        self.bad = true;
        let e = anthropic_error(
            502,
            "invalid stream event from the provider",
            "api_error",
            None,
            "bad_upstream_response",
        );
        write_event(out, Some("error"), &e);
    }

    fn segment(&mut self, seg: Segment, out: &mut Vec<u8>) {
        let Some(ev) = &seg.event else {
            seg.write_to(out);
            return;
        };
        if !ev.data.trim().is_empty() {
            let needs_value = match ev.event.as_deref() {
                Some(name) => name == "message_start" || name == "message_delta",
                None => true,
            };
            let name = if needs_value {
                let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                    return self.fail(out);
                };
                self.usage.observe_json(&v);
                ev.event.clone().unwrap_or_else(|| {
                    v.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                })
            } else if is_json(&ev.data) {
                ev.event.clone().unwrap_or_default()
            } else {
                return self.fail(out);
            };
            match name.as_str() {
                "message_stop" => self.done = true,
                "error" => self.errored = true,
                _ => {}
            }
        }
        seg.write_to(out);
    }

    /// Ends the stream: the bytes to add, an `error` event when it ended before `message_stop`.
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
        if self.done || self.errored {
            return out;
        }
        write_event(&mut out, Some("error"), &incomplete_error());
        out
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }

    /// Whether `message_stop` has been seen (every event JSON): the provider ended the stream itself.
    pub fn is_done(&self) -> bool {
        self.done && !self.bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::anthropic::Anthropic;
    use crate::provider::TranslatedStream;
    use crate::sse::SseParser;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const STREAM: &str = include_str!("../../../tests/fixtures/anthropic_stream.sse");
    const STREAM_ERROR: &str = include_str!("../../../tests/fixtures/anthropic_stream_error.sse");

    fn target() -> Anthropic {
        Anthropic::new("claude-3-5-haiku-20241022")
    }

    fn run(include_usage: bool, chunks: &[&[u8]]) -> (String, Option<Usage>) {
        let mut s = TranslatedStream::new(&target(), 1_732_353_001, include_usage).unwrap();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed(c));
        }
        out.extend(s.finish());
        assert!(s.is_done());
        (String::from_utf8(out).unwrap(), s.usage())
    }

    const HEAD: &str = r#"{"id":"msg_01Fz8PqgYb2sYdGNkXzJvQ7M","object":"chat.completion.chunk","created":1732353001,"model":"claude-3-5-haiku-20241022","choices":"#;

    fn chunk(delta: &str, finish: &str) -> String {
        format!("data: {HEAD}[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
    }

    #[test]
    fn stream_translation() {
        let body = [
            chunk(r#"{"role":"assistant","content":""}"#, "null"),
            chunk(r#"{"content":"Hello"}"#, "null"),
            chunk(r#"{"content":"! Ça va? ✓ 🦀\n\"quoted\""}"#, "null"),
            chunk("{}", r#""stop""#),
        ]
        .concat();
        let usage_chunk = format!(
            "data: {HEAD}[],\"usage\":{{\"completion_tokens\":15,\"prompt_tokens\":35,\"prompt_tokens_details\":{{\"cached_tokens\":10}},\"total_tokens\":50}}}}\n\n"
        );
        let want_usage = Some(Usage {
            cached_tokens: 10,
            ..Usage::new(35, 15)
        });

        let (out, usage) = run(false, &[STREAM.as_bytes()]);
        assert_eq!(out, format!("{body}data: [DONE]\n\n"));
        assert_eq!(usage, want_usage);

        let (out, usage) = run(true, &[STREAM.as_bytes()]);
        assert_eq!(out, format!("{body}{usage_chunk}data: [DONE]\n\n"));
        assert_eq!(usage, want_usage);

        // Every output event parses as an OpenAI chunk.
        let mut p = SseParser::new();
        for ev in p.feed(out.as_bytes()) {
            if ev.data != "[DONE]" {
                let v: Value = serde_json::from_str(&ev.data).unwrap();
                assert_eq!(v["object"], "chat.completion.chunk");
            }
        }
    }

    #[test]
    fn stream_errors() {
        let incomplete = "data: {\"error\":{\"message\":\"upstream stream ended before completion\",\"type\":\"upstream_error\",\"code\":\"stream_incomplete\"}}\n\ndata: [DONE]\n\n";
        let start = chunk(r#"{"role":"assistant","content":""}"#, "null");

        // Upstream `error` event.
        let partial =
            chunk(r#"{"content":"Partial"}"#, "null").replace("msg_01Fz8PqgYb2sYdGNkXzJvQ7M", "msg_01Q9");
        let (out, usage) = run(true, &[STREAM_ERROR.as_bytes()]);
        assert_eq!(
            out,
            format!(
                "{}{partial}data: {{\"error\":{{\"message\":\"Overloaded\",\"type\":\"overloaded_error\",\"code\":\"overloaded_error\"}}}}\n\ndata: [DONE]\n\n",
                start.replace("msg_01Fz8PqgYb2sYdGNkXzJvQ7M", "msg_01Q9")
            )
        );
        assert_eq!(usage, Some(Usage::new(8, 1)));

        // Cut after message_start, and cut in the middle of an event.
        let after_start = STREAM.find("event: content_block_start").unwrap();
        let (out, _) = run(true, &[&STREAM.as_bytes()[..after_start]]);
        assert_eq!(out, format!("{start}{incomplete}"));
        let (out, _) = run(false, &[&STREAM.as_bytes()[..after_start + 10]]);
        assert_eq!(out, format!("{start}{incomplete}"));

        // Nothing at all.
        let (out, usage) = run(true, &[b""]);
        assert_eq!(out, incomplete);
        assert_eq!(usage, None);

        // A known event with broken JSON ends the stream with an error.
        let (out, _) = run(false, &[b"event: content_block_delta\ndata: {\"delta\":\n\n"]);
        assert!(
            out.contains("bad_upstream_response") && out.ends_with("data: [DONE]\n\n"),
            "{out}"
        );

        // Events after message_stop are ignored; unknown and unnamed-unknown events are skipped.
        let extra = format!("{STREAM}event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"delta\":{{\"type\":\"text_delta\",\"text\":\"late\"}}}}\n\n");
        let (out, _) = run(false, &[extra.as_bytes()]);
        assert!(!out.contains("late"));
        let odd = "event: mystery\ndata: not json\n\ndata: {\"type\":\"ping\"}\n\ndata: nope\n\n\
                   data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n\
                   data: {\"type\":\"message_stop\"}\n\n";
        let (out, _) = run(false, &[odd.as_bytes()]);
        assert_eq!(out, "data: [DONE]\n\n");
    }

    #[test]
    fn stream_every_split_matches_whole() {
        let cut = &STREAM[..STREAM.len() - 40];
        let crlf = STREAM.replace('\n', "\r\n");
        for input in [STREAM, STREAM_ERROR, cut, crlf.as_str()] {
            let input = input.as_bytes();
            for include_usage in [false, true] {
                let whole = run(include_usage, &[input]);
                for i in 0..=input.len() {
                    let got = run(include_usage, &[&input[..i], &input[i..]]);
                    assert_eq!(got, whole, "split at {i}");
                }
                let bytes: Vec<&[u8]> = input.chunks(1).collect();
                assert_eq!(run(include_usage, &bytes), whole, "byte by byte");
            }
        }
    }

    /// The shape the e2e mock provider produces, one delta per word.
    #[test]
    fn mock_style_stream() {
        let words = ["mock ", "reply ", "to: ", "hi"];
        let mut input = String::from(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-haiku-20241022\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n\
             event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
             event: ping\ndata: {\"type\":\"ping\"}\n\n",
        );
        for w in words {
            input.push_str(&format!(
                "event: content_block_delta\ndata: {}\n\n",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})
            ));
        }
        input.push_str(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
             event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n\
             event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let (out, usage) = run(true, &[input.as_bytes()]);
        assert_eq!(usage, Some(Usage::new(1, 4)));
        let mut p = SseParser::new();
        let events = p.feed(out.as_bytes());
        let mut text = String::new();
        let mut finish = Vec::new();
        for ev in &events[..events.len() - 1] {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            assert_eq!(v["id"], "msg_mock_1");
            if let Some(choice) = v["choices"].get(0) {
                text.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
                finish.push(choice["finish_reason"].clone());
            } else {
                assert_eq!(
                    v["usage"],
                    json!({"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5})
                );
            }
        }
        assert_eq!(text, "mock reply to: hi");
        assert_eq!(finish.last(), Some(&json!("length")));
        assert_eq!(events.last().unwrap().data, "[DONE]");
    }

    #[test]
    fn writer_opens_one_block_at_a_time() {
        let mut w = StreamWriter::new();
        let mut out = Vec::new();
        for ev in [
            Event::Text("early"),
            Event::Thinking("hm"),
            Event::Signature("sig"),
            Event::Text(""),
            Event::Text("a"),
            Event::Text("b"),
            Event::RedactedThinking("xx"),
            Event::ToolStart {
                index: 0,
                id: "call_1",
                name: "f",
            },
            Event::ToolArguments { index: 0, json: "" },
            Event::ToolArguments { index: 0, json: "{}" },
            Event::ToolArguments {
                index: 1,
                json: "{\"late\":1}",
            },
            Event::Finish(Some(Finish::ToolCalls)),
            Event::End(Some(Usage::new(3, 4))),
        ] {
            w.write(&ev, &mut out);
        }
        let mut p = SseParser::new();
        let events = p.feed(&out);
        let got: Vec<String> = events
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                match e.event.as_deref().unwrap() {
                    "content_block_start" => format!("start {} {}", v["index"], v["content_block"]["type"]),
                    "content_block_delta" => format!("delta {} {}", v["index"], v["delta"]["type"]),
                    "content_block_stop" => format!("stop {}", v["index"]),
                    "message_delta" => format!(
                        "message_delta {} {}",
                        v["delta"]["stop_reason"], v["usage"]["output_tokens"]
                    ),
                    other => other.to_string(),
                }
            })
            .collect();
        assert_eq!(
            got,
            vec![
                "message_start",
                "start 0 \"text\"",
                "delta 0 \"text_delta\"",
                "stop 0",
                "start 1 \"thinking\"",
                "delta 1 \"thinking_delta\"",
                "delta 1 \"signature_delta\"",
                "stop 1",
                "start 2 \"text\"",
                "delta 2 \"text_delta\"",
                "delta 2 \"text_delta\"",
                "stop 2",
                "start 3 \"redacted_thinking\"",
                "stop 3",
                "start 4 \"tool_use\"",
                "delta 4 \"input_json_delta\"",
                "stop 4",
                "start 5 \"tool_use\"",
                "delta 5 \"input_json_delta\"",
                "stop 5",
                "message_delta \"tool_use\" 4",
                "message_stop",
            ]
        );
    }

    #[test]
    fn passthrough_watch() {
        let mut s = AnthropicStream::new();
        let mut out = Vec::new();
        for piece in STREAM.as_bytes().chunks(5) {
            out.extend(s.feed(piece).unwrap_or_else(|| piece.to_vec()));
        }
        assert!(s.is_done());
        assert!(s.finish().is_empty());
        assert_eq!(out, STREAM.as_bytes(), "relayed as sent");
        assert_eq!(s.usage().map(|u| u.total()), Some(50));
        let mut failed = AnthropicStream::new();
        assert_eq!(failed.feed(STREAM_ERROR.as_bytes()), None);
        assert!(!failed.is_done());
        assert!(failed.finish().is_empty(), "the upstream error already ended it");
    }

    #[test]
    fn passthrough_ends_at_an_event_that_is_not_json() {
        let first = STREAM.find("\n\n").unwrap() + 2;
        let input = format!(
            "{}event: content_block_delta\ndata: <html>oops</html>\n\n{}",
            &STREAM[..first],
            &STREAM[first..]
        );
        for cut in 0..=input.len() {
            let mut s = AnthropicStream::new();
            let mut out = Vec::new();
            for c in [&input.as_bytes()[..cut], &input.as_bytes()[cut..]] {
                out.extend(s.feed(c).unwrap_or_else(|| c.to_vec()));
            }
            out.extend(s.finish());
            let text = String::from_utf8(out).unwrap();
            let (head, tail) = text.split_at(first);
            assert_eq!(head, &STREAM[..first], "cut={cut}");
            assert!(
                tail.starts_with("event: error\ndata: {\"type\":\"error\""),
                "cut={cut}: {tail}"
            );
            assert!(
                tail.contains("bad_upstream_response") && !tail.contains("oops"),
                "{tail}"
            );
            assert_eq!(tail.matches("\n\n").count(), 1, "one event: {tail}");
            assert!(!s.is_done());
        }
    }
}
