//! Gemini streams (`:streamGenerateContent?alt=sse`) read into neutral events.
//!
//! Each SSE event's data is a whole `GenerateContentResponse` holding the next parts of the first
//! candidate: text, thoughts (`thought: true`) and `functionCall`s, each call whole in one part (so a
//! call is a `ToolStart` and one `ToolArguments`). The chunk with a `finishReason` ends generation and
//! usually carries the final `usageMetadata`; the stream then simply stops, so its end is read at the
//! end of the body ([`StreamDecoder::finish`]): a stream that stopped before a `finishReason` is
//! incomplete. An `{"error": …}` event ends a stream that failed.

use serde_json::Value;

use super::{client_call_id, error_object, filtered_message, finish, usage};
use crate::provider::neutral::{self, Event, Finish};
use crate::provider::{Frame, StreamDecoder};
use crate::usage::Usage;

/// Decodes one Gemini stream.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The target's model, for a stream that names none.
    model: String,
    started: bool,
    id: String,
    tools: usize,
    /// Text was streamed (a filtered answer with none gets the reason as its text).
    text: bool,
    finished: bool,
    usage: Option<Usage>,
}

impl Decoder {
    pub fn new(model: &str) -> Decoder {
        Decoder {
            model: model.into(),
            ..Decoder::default()
        }
    }
}

impl StreamDecoder for Decoder {
    fn decode(&mut self, frame: &Frame, emit: &mut dyn FnMut(Event<'_>)) {
        if self.finished || frame.data.trim().is_empty() {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&frame.data) else {
            emit(Event::Error(neutral::Error::new(
                "invalid stream event from Gemini",
                "upstream_error",
                "bad_upstream_response",
            )));
            return;
        };
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            let status = err.get("code").and_then(Value::as_u64).unwrap_or(500);
            emit(Event::Error(error_object(
                err,
                u16::try_from(status).unwrap_or(500),
            )));
            return;
        }
        if let Some(u) = usage(&v) {
            self.usage = Some(u);
        }
        if !self.started {
            self.started = true;
            self.id = v
                .get("responseId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let model = v
                .get("modelVersion")
                .and_then(Value::as_str)
                .unwrap_or(&self.model);
            emit(Event::Start { id: &self.id, model });
        }
        let Some(candidate) = v
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        else {
            if let Some(reason) = v
                .get("promptFeedback")
                .and_then(|f| f.get("blockReason"))
                .and_then(Value::as_str)
            {
                let ratings = v.get("promptFeedback").and_then(|f| f.get("safetyRatings"));
                emit(Event::Text(&filtered_message(reason, ratings, true)));
                emit(Event::Finish(Some(Finish::ContentFilter)));
                self.finished = true;
            }
            return;
        };
        let parts = candidate
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for p in parts {
            if let Some(call) = p.get("functionCall") {
                let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
                let id = client_call_id(p, &self.id, self.tools, name);
                let args = call.get("args").map_or_else(|| "{}".into(), Value::to_string);
                let index = self.tools;
                self.tools += 1;
                emit(Event::ToolStart { index, id: &id, name });
                emit(Event::ToolArguments { index, json: &args });
            } else if let Some(text) = p.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    emit(Event::Thinking(text));
                } else {
                    self.text = true;
                    emit(Event::Text(text));
                }
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            let f = finish(reason, self.tools > 0);
            if f == Finish::ContentFilter && !self.text {
                emit(Event::Text(&filtered_message(
                    reason,
                    candidate.get("safetyRatings"),
                    false,
                )));
            }
            emit(Event::Finish(Some(f)));
            self.finished = true;
        }
    }

    fn finish(&mut self, emit: &mut dyn FnMut(Event<'_>)) {
        if self.finished {
            emit(Event::End(self.usage));
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use crate::provider::gemini::{call_id, Gemini};
    use crate::provider::openai::parse_chat_request;
    use crate::provider::{Api, ChatRequest, Exchange, Reply};
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The OpenAI door's SSE for a Gemini stream fed in chunks of `step` bytes.
    fn through_openai(stream: &[u8], step: usize) -> (String, Option<crate::usage::Usage>) {
        let req = parse_chat_request(
            br#"{"model":"x","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let target = Gemini::new("gemini-2.5-flash");
        let (_, ex) = Exchange::prepare(&req, &target).unwrap();
        let mut reply = Reply::new(&target, &ex, 200, true, 7);
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = stream.chunks(step.max(1)).collect();
        for (i, c) in chunks.iter().enumerate() {
            if let Some(o) = reply.chunk(c, i + 1 == chunks.len()) {
                out.extend(o);
            }
        }
        (String::from_utf8(out).unwrap(), reply.usage())
    }

    fn data(sse: &str) -> Vec<Value> {
        sse.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn text_stream_at_every_chunk_size() {
        let fixture = include_bytes!("../../../tests/fixtures/gemini_stream.sse");
        let (whole, usage) = through_openai(fixture, fixture.len());
        for step in [1, 2, 7, 64] {
            assert_eq!(through_openai(fixture, step).0, whole, "step {step}");
        }
        let chunks = data(&whole);
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello there, friend.");
        assert_eq!(chunks[0]["id"], "resp-s1");
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
        assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 6);
        assert!(whole.ends_with("data: [DONE]\n\n"), "{whole}");
        assert_eq!(
            usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((6, 5))
        );
    }

    #[test]
    fn tool_calls_stream_with_stable_ids() {
        let stream = concat!(
            "data: {\"responseId\":\"r9\",\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}}]}}]}\r\n\r\n",
            "data: {\"responseId\":\"r9\",\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_time\",\"args\":{}}}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":4}}\r\n\r\n",
        );
        let (sse, _) = through_openai(stream.as_bytes(), 5);
        let chunks = data(&sse);
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        let ids: Vec<&str> = calls.iter().filter_map(|c| c["id"].as_str()).collect();
        assert_eq!(
            ids,
            vec![call_id("r9", 0, "get_weather"), call_id("r9", 1, "get_time")]
        );
        let args: String = calls
            .iter()
            .filter(|c| c["index"] == 0)
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, r#"{"city":"Paris"}"#);
        assert!(chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    }

    #[test]
    fn cut_filtered_and_failed_streams() {
        let cut =
            "data: {\"responseId\":\"r\",\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]}\n\n";
        let (sse, _) = through_openai(cut.as_bytes(), 3);
        assert!(sse.contains("stream_incomplete"), "{sse}");
        let filtered = "data: {\"candidates\":[{\"finishReason\":\"SAFETY\",\"safetyRatings\":[{\"category\":\"HARM_CATEGORY_HARASSMENT\",\"probability\":\"HIGH\"}]}]}\n\n";
        let (sse, _) = through_openai(filtered.as_bytes(), 100);
        let chunks = data(&sse);
        assert!(
            sse.contains("Gemini blocked the answer (reason SAFETY: HARM_CATEGORY_HARASSMENT)"),
            "{sse}"
        );
        assert!(chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "content_filter"));
        let failed = "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\n\n";
        let (sse, _) = through_openai(failed.as_bytes(), 100);
        assert!(
            sse.contains("The model is overloaded.") && sse.contains("unavailable"),
            "{sse}"
        );
    }

    #[test]
    fn through_the_anthropic_door() {
        let body = json!({"model": "x", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        let req = ChatRequest::parse(Api::Messages, body).unwrap();
        let target = Gemini::new("gemini-2.5-flash");
        let (_, ex) = Exchange::prepare(&req, &target).unwrap();
        let mut reply = Reply::new(&target, &ex, 200, true, 7);
        let out = reply
            .chunk(include_bytes!("../../../tests/fixtures/gemini_stream.sse"), true)
            .unwrap();
        let sse = String::from_utf8(out).unwrap();
        for event in [
            "message_start",
            "content_block_delta",
            "message_delta",
            "message_stop",
        ] {
            assert!(sse.contains(&format!("event: {event}")), "{event}: {sse}");
        }
        assert!(sse.contains("\"stop_reason\":\"end_turn\""), "{sse}");
    }
}
