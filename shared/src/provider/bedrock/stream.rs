//! ConverseStream events read into neutral events. The binary event-stream messages are decoded
//! (both CRCs checked) by [`crate::framing::eventstream`] into frames named by their `:event-type`:
//! `messageStart`, then per content block `contentBlockStart` (a `toolUse` block's id and name),
//! `contentBlockDelta`s (`text`, `toolUse.input` JSON fragments, `reasoningContent` text and
//! signature) and `contentBlockStop`, then `messageStop` (the `stopReason`) and `metadata` (the usage),
//! the stream's end. An exception message (`throttlingException`, `modelStreamErrorException`, …)
//! ends a stream that failed.

use serde_json::Value;

use super::{answer::answer_id, finish, kind, snake, usage_object};
use crate::provider::neutral::{self, Event, Finish};
use crate::provider::{Expect, Frame, StreamDecoder};
use crate::usage::Usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Tool(usize),
    /// The forced tool of structured output: its input is the answer's text.
    Format,
}

/// Decodes one ConverseStream answer.
#[derive(Debug, Default)]
pub struct Decoder {
    expect: Expect,
    model: String,
    id: String,
    /// Tool blocks by `contentBlockIndex`.
    blocks: Vec<(u64, Block)>,
    tools: usize,
    usage: Option<Usage>,
}

impl Decoder {
    pub fn new(expect: Expect, model: &str) -> Decoder {
        Decoder {
            expect,
            model: model.into(),
            ..Decoder::default()
        }
    }
}

impl StreamDecoder for Decoder {
    fn decode(&mut self, frame: &Frame, emit: &mut dyn FnMut(Event<'_>)) {
        let name = frame.event.as_deref().unwrap_or_default();
        let Ok(v) = serde_json::from_str::<Value>(&frame.data) else {
            emit(Event::Error(neutral::Error::new(
                format!("invalid `{name}` event from Bedrock"),
                "upstream_error",
                "bad_upstream_response",
            )));
            return;
        };
        let index = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
        match name {
            "messageStart" => {
                self.id = answer_id(frame.data.as_bytes());
                emit(Event::Start {
                    id: &self.id,
                    model: &self.model,
                });
            }
            "contentBlockStart" => {
                if let Some(t) = v.get("start").and_then(|s| s.get("toolUse")) {
                    if self.expect.format_tool {
                        self.blocks.push((index, Block::Format));
                    } else {
                        let n = self.tools;
                        self.tools += 1;
                        self.blocks.push((index, Block::Tool(n)));
                        let field = |k| t.get(k).and_then(Value::as_str).unwrap_or_default();
                        emit(Event::ToolStart {
                            index: n,
                            id: field("toolUseId"),
                            name: field("name"),
                        });
                    }
                }
            }
            "contentBlockDelta" => {
                let Some(delta) = v.get("delta") else { return };
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        emit(Event::Text(t));
                    }
                } else if let Some(json) = delta
                    .get("toolUse")
                    .and_then(|u| u.get("input"))
                    .and_then(Value::as_str)
                    .filter(|j| !j.is_empty())
                {
                    match self
                        .blocks
                        .iter()
                        .rev()
                        .find(|(i, _)| *i == index)
                        .map(|(_, b)| *b)
                    {
                        Some(Block::Tool(n)) => emit(Event::ToolArguments { index: n, json }),
                        Some(Block::Format) => emit(Event::Text(json)),
                        None => {}
                    }
                } else if let Some(r) = delta.get("reasoningContent") {
                    if let Some(t) = r.get("text").and_then(Value::as_str) {
                        emit(Event::Thinking(t));
                    }
                    if let Some(s) = r.get("signature").and_then(Value::as_str) {
                        emit(Event::Signature(s));
                    }
                    if let Some(d) = r.get("redactedContent").and_then(Value::as_str) {
                        emit(Event::RedactedThinking(d));
                    }
                }
            }
            "messageStop" => {
                let mut f = v.get("stopReason").and_then(Value::as_str).map(finish);
                if self.expect.format_tool && f == Some(Finish::ToolCalls) {
                    f = Some(Finish::Stop);
                }
                emit(Event::Finish(f));
            }
            "metadata" => {
                self.usage = v.get("usage").and_then(usage_object);
                emit(Event::End(self.usage));
            }
            "contentBlockStop" => {}
            other => {
                // An exception (`throttlingException`, …) or an unmodelled `error` message.
                let message = v
                    .get("message")
                    .or_else(|| v.get("Message"))
                    .and_then(Value::as_str)
                    .unwrap_or("Bedrock stream error");
                let code = match other {
                    "error" => v.get("code").and_then(Value::as_str).unwrap_or("error"),
                    name => name,
                };
                emit(Event::Error(neutral::Error::new(
                    message,
                    kind(code),
                    snake(code),
                )));
            }
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use crate::framing::eventstream::{encode, Header};
    use crate::provider::bedrock::Bedrock;
    use crate::provider::openai::parse_chat_request;
    use crate::provider::{Exchange, Reply};
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn event(name: &str, payload: Value) -> Vec<u8> {
        encode(
            &[
                Header::string(":event-type", name),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "event"),
            ],
            payload.to_string().as_bytes(),
        )
        .unwrap()
    }

    fn tool_stream() -> Vec<u8> {
        [
            event("messageStart", json!({"role": "assistant"})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Checking"}})),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}})),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event("messageStop", json!({"stopReason": "tool_use"})),
            event("metadata", json!({"usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13}, "metrics": {"latencyMs": 5}})),
        ]
        .concat()
    }

    fn through_openai(bytes: &[u8], step: usize) -> (String, Option<crate::usage::Usage>) {
        let req = parse_chat_request(
            br#"{"model":"x","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let target = Bedrock::new("m", "us-east-1", "a", "s");
        let (_, ex) = Exchange::prepare(&req, &target).unwrap();
        let mut reply = Reply::new(&target, &ex, 200, true, 7);
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = bytes.chunks(step.max(1)).collect();
        for (i, c) in chunks.iter().enumerate() {
            if let Some(o) = reply.chunk(c, i + 1 == chunks.len()) {
                out.extend(o);
            }
        }
        (String::from_utf8(out).unwrap(), reply.usage())
    }

    #[test]
    fn translated_at_every_split() {
        let bytes = tool_stream();
        let (whole, usage) = through_openai(&bytes, bytes.len());
        assert!(whole.contains("\"content\":\"Checking\""), "{whole}");
        assert!(
            whole.contains("\"id\":\"tooluse_1\"") && whole.contains("\"name\":\"get_weather\""),
            "{whole}"
        );
        assert!(whole.contains("\"finish_reason\":\"tool_calls\""), "{whole}");
        assert!(whole.ends_with("data: [DONE]\n\n"), "{whole}");
        assert_eq!(
            usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((9, 4))
        );
        // Every byte offset of a two-piece split gives the same SSE.
        for cut in 1..bytes.len() {
            let req = parse_chat_request(
                br#"{"model":"x","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
            )
            .unwrap();
            let target = Bedrock::new("m", "us-east-1", "a", "s");
            let (_, ex) = Exchange::prepare(&req, &target).unwrap();
            let mut reply = Reply::new(&target, &ex, 200, true, 7);
            let mut out = reply.chunk(&bytes[..cut], false).unwrap_or_default();
            out.extend(reply.chunk(&bytes[cut..], true).unwrap_or_default());
            assert_eq!(String::from_utf8(out).unwrap(), whole, "cut at {cut}");
        }
    }

    #[test]
    fn corrupt_cut_and_failed_streams() {
        let mut bytes = tool_stream();
        let at = bytes.len() / 2;
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 0x40;
        }
        let (sse, _) = through_openai(&bytes, 17);
        assert!(sse.contains("invalid stream from the provider"), "{sse}");
        assert!(sse.ends_with("data: [DONE]\n\n"));
        let cut = tool_stream();
        let (sse, _) = through_openai(&cut[..cut.len() - 10], 64);
        assert!(
            sse.contains("invalid stream from the provider") || sse.contains("stream_incomplete"),
            "{sse}"
        );
        let failed = [
            event("messageStart", json!({"role": "assistant"})),
            encode(
                &[
                    Header::string(":exception-type", "throttlingException"),
                    Header::string(":content-type", "application/json"),
                    Header::string(":message-type", "exception"),
                ],
                br#"{"message":"slow down"}"#,
            )
            .unwrap(),
        ]
        .concat();
        let (sse, _) = through_openai(&failed, 5);
        assert!(
            sse.contains("slow down") && sse.contains("throttling_exception"),
            "{sse}"
        );
    }
}
