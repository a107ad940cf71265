//! Where the text is in LLM bodies: request messages (OpenAI and Anthropic shapes) and response
//! content (JSON and SSE). Only text is touched, never the JSON structure around it.

use serde_json::{json, Map, Value};
use shared::pii::stream::{Scrub, StreamScrubber};
use shared::sse::{write_event, SseParser};
use std::collections::BTreeMap;

/// One piece of request text and where it lives (a JSON pointer into the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub pointer: String,
    pub text: String,
}

fn text_parts(content: &Value, base: &str, out: &mut Vec<Segment>) {
    match content {
        Value::String(s) => out.push(Segment {
            pointer: base.to_string(),
            text: s.clone(),
        }),
        // OpenAI content parts and Anthropic content blocks: `{"type": "text", "text": ...}`.
        Value::Array(parts) => {
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            out.push(Segment {
                                pointer: format!("{base}/{j}/text"),
                                text: t.to_string(),
                            });
                        }
                    }
                    // Anthropic tool results carry text too (a string or text blocks).
                    Some("tool_result") => {
                        if let Some(c) = p.get("content") {
                            text_parts(c, &format!("{base}/{j}/content"), out);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// The text of a chat request: Anthropic's top-level `system` (role "system") and every message's
/// `content` whose role is in `roles` (all roles when `None`).
pub fn request_segments(body: &Value, roles: Option<&[String]>) -> Vec<Segment> {
    let wanted = |role: &str| roles.is_none_or(|r| r.iter().any(|x| x == role));
    let mut out = Vec::new();
    if let Some(system) = body.get("system") {
        if wanted("system") {
            text_parts(system, "/system", &mut out);
        }
    }
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for (i, m) in messages.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
            if !wanted(role) {
                continue;
            }
            if let Some(content) = m.get("content") {
                text_parts(content, &format!("/messages/{i}/content"), &mut out);
            }
        }
    }
    out
}

/// Rewrites the text of a JSON answer (OpenAI `choices[].message.content`, Anthropic
/// `content[].text`). `None` when nothing changed or the body is not such JSON.
pub fn rewrite_json_response(scrub: &mut Scrub<'_>, body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    let mut fix = |s: &mut Value| {
        if let Value::String(text) = s {
            let new = scrub.whole(text);
            if new != *text {
                *text = new;
                changed = true;
            }
        }
    };
    if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            match c.pointer_mut("/message/content") {
                Some(Value::Array(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get_mut("text") {
                            fix(t);
                        }
                    }
                }
                Some(content) => fix(content),
                None => {}
            }
        }
    } else if let Some(blocks) = v.get_mut("content").and_then(Value::as_array_mut) {
        for b in blocks {
            if b.get("type").and_then(Value::as_str) == Some("text") {
                if let Some(t) = b.get_mut("text") {
                    fix(t);
                }
            }
        }
    }
    changed.then(|| v.to_string().into_bytes())
}

/// Largest SSE event kept while waiting for its end; a larger one is dropped (fail closed).
const MAX_EVENT: usize = 1024 * 1024;

/// Rewrites an SSE answer (OpenAI `choices[].delta.content`, Anthropic `content_block_delta`
/// `delta.text`) event by event: events whose text does not change are passed on byte for byte, and
/// text held back by a [`StreamScrubber`] is released in a later event (or a synthesised one before
/// the end of its block or of the stream).
#[derive(Debug)]
pub struct SseRewriter {
    buf: Vec<u8>,
    /// Per (anthropic?, choice or block index).
    scrubbers: BTreeMap<(bool, u64), StreamScrubber>,
    /// The envelope of the last OpenAI chunk (id, model, ...), for a synthesised chunk.
    template: Map<String, Value>,
    max_hold: usize,
}

/// End of the first complete event in `buf` (just past its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

impl SseRewriter {
    pub fn new(max_hold: usize) -> Self {
        SseRewriter {
            buf: Vec::new(),
            scrubbers: BTreeMap::new(),
            template: Map::new(),
            max_hold,
        }
    }

    /// Takes a body chunk; returns the bytes to send now.
    pub fn feed(&mut self, scrub: &mut Scrub<'_>, chunk: &[u8], end: bool) -> Vec<u8> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(n) = event_end(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..n).collect();
            self.event(scrub, &raw, &mut out);
        }
        if self.buf.len() > MAX_EVENT {
            // An event this large cannot be real; it is dropped rather than sent on unscanned.
            self.buf.clear();
        }
        if end {
            let raw = std::mem::take(&mut self.buf);
            if !raw.is_empty() {
                self.event(scrub, &raw, &mut out);
            }
            self.flush(scrub, None, &mut out);
        }
        out
    }

    fn scrubber(&mut self, key: (bool, u64)) -> &mut StreamScrubber {
        let max_hold = self.max_hold;
        self.scrubbers
            .entry(key)
            .or_insert_with(|| StreamScrubber::new(max_hold))
    }

    fn event(&mut self, scrub: &mut Scrub<'_>, raw: &[u8], out: &mut Vec<u8>) {
        let mut parser = SseParser::new();
        let mut events = parser.feed(raw);
        events.extend(parser.finish());
        let Some(ev) = events.into_iter().next() else {
            out.extend_from_slice(raw);
            return;
        };
        if ev.data.trim() == "[DONE]" {
            self.flush(scrub, Some(false), out);
            out.extend_from_slice(raw);
            return;
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&ev.data) else {
            out.extend_from_slice(raw);
            return;
        };
        let changed = if v.get("choices").is_some() {
            self.openai(scrub, &mut v)
        } else {
            self.anthropic(scrub, &mut v, out)
        };
        if changed {
            write_event(out, ev.event.as_deref(), &v.to_string());
        } else {
            out.extend_from_slice(raw);
        }
    }

    fn openai(&mut self, scrub: &mut Scrub<'_>, v: &mut Value) -> bool {
        if let Some(obj) = v.as_object() {
            self.template = obj
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "choices" | "usage"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changed = false;
        for c in choices {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finished = c.get("finish_reason").is_some_and(|f| !f.is_null());
            let content = c
                .pointer("/delta/content")
                .and_then(Value::as_str)
                .map(str::to_string);
            if content.is_none() && !finished {
                continue;
            }
            let s = self.scrubber((false, idx));
            let mut new = content.as_deref().map(|t| s.push(scrub, t)).unwrap_or_default();
            if finished {
                new.push_str(&s.finish(scrub));
            }
            if content.as_deref() == Some(new.as_str()) || (content.is_none() && new.is_empty()) {
                continue;
            }
            if let Some(obj) = c.as_object_mut() {
                let delta = obj.entry("delta").or_insert_with(|| json!({}));
                if let Some(d) = delta.as_object_mut() {
                    d.insert("content".into(), Value::String(new));
                    changed = true;
                }
            }
        }
        changed
    }

    fn anthropic(&mut self, scrub: &mut Scrub<'_>, v: &mut Value, out: &mut Vec<u8>) -> bool {
        let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match v.get("type").and_then(Value::as_str) {
            Some("content_block_delta") => {
                let Some(delta) = v.get_mut("delta") else {
                    return false;
                };
                if delta.get("type").and_then(Value::as_str) != Some("text_delta") {
                    return false;
                }
                let Some(text) = delta.get("text").and_then(Value::as_str).map(str::to_string) else {
                    return false;
                };
                let new = self.scrubber((true, idx)).push(scrub, &text);
                if new == text {
                    return false;
                }
                if let Some(d) = delta.as_object_mut() {
                    d.insert("text".into(), Value::String(new));
                }
                true
            }
            Some("content_block_stop") => {
                if let Some(s) = self.scrubbers.get_mut(&(true, idx)) {
                    let rest = s.finish(scrub);
                    anthropic_delta(out, idx, &rest);
                }
                false
            }
            Some("message_stop") => {
                self.flush(scrub, Some(true), out);
                false
            }
            _ => false,
        }
    }

    /// Releases everything still held (for one shape, or both), in synthesised events.
    fn flush(&mut self, scrub: &mut Scrub<'_>, only: Option<bool>, out: &mut Vec<u8>) {
        for ((anthropic, idx), s) in self.scrubbers.iter_mut() {
            if only.is_some_and(|o| o != *anthropic) {
                continue;
            }
            let rest = s.finish(scrub);
            if rest.is_empty() {
                continue;
            }
            if *anthropic {
                anthropic_delta(out, *idx, &rest);
            } else {
                let mut chunk = self.template.clone();
                chunk.insert(
                    "choices".into(),
                    json!([{"index": idx, "delta": {"content": rest}, "finish_reason": null}]),
                );
                write_event(out, None, &Value::Object(chunk).to_string());
            }
        }
    }
}

fn anthropic_delta(out: &mut Vec<u8>, idx: u64, text: &str) {
    if text.is_empty() {
        return;
    }
    let v =
        json!({"type": "content_block_delta", "index": idx, "delta": {"type": "text_delta", "text": text}});
    write_event(out, Some("content_block_delta"), &v.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::pii::{Direction, Engine, EngineSpec, Rules, Session};

    #[test]
    fn finds_request_text_in_both_shapes() {
        let body = json!({
            "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]},
                {"role": "user", "content": [{"type": "text", "text": "b"}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "c"}]}]}
            ]
        });
        let all = request_segments(&body, None);
        let ptrs: Vec<&str> = all.iter().map(|s| s.pointer.as_str()).collect();
        assert_eq!(
            ptrs,
            vec![
                "/system/0/text",
                "/messages/0/content",
                "/messages/1/content/0/text",
                "/messages/2/content/0/text",
                "/messages/3/content/0/content/0/text"
            ]
        );
        let users = request_segments(&body, Some(&["user".to_string()]));
        assert_eq!(users.len(), 3);
    }

    fn sse_text(out: &[u8]) -> (String, usize) {
        let mut text = String::new();
        let mut n = 0;
        for line in String::from_utf8(out.to_vec()).unwrap().lines() {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            n += 1;
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(t) = v.pointer("/choices/0/delta/content").and_then(Value::as_str) {
                text.push_str(t);
            }
            if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                text.push_str(t);
            }
        }
        (text, n)
    }

    /// A stream cut at every byte offset: restored and masked the same, untouched events byte-identical.
    #[test]
    fn openai_and_anthropic_streams_split_everywhere() {
        let engine = Engine::new(&EngineSpec::builtins()).unwrap();
        let rules = Rules::default();
        let mut base = Session::new();
        let dets = engine.detect("a@b.io");
        base.redact(&rules, "a@b.io", &dets, Direction::Request);
        let chunk = |c: &str| {
            format!(
                "data: {}\n\n",
                json!({"id": "x", "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": null}]})
            )
        };
        let mut openai = String::from("data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n");
        for piece in ["Hi <EMA", "IL_1>, mail c@d", ".io ", "or call ", "415-555-0132"] {
            openai.push_str(&chunk(piece));
        }
        openai.push_str("data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        let mut anthropic = String::from("event: message_start\ndata: {\"type\":\"message_start\"}\n\n");
        for piece in ["Hi <EMA", "IL_1>, mail c@d", ".io ", "or call ", "415-555-0132"] {
            let v = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}});
            anthropic.push_str(&format!("event: content_block_delta\ndata: {v}\n\n"));
        }
        anthropic.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        let want = "Hi a@b.io, mail <EMAIL_2> or call <PHONE_1>";
        for stream in [openai, anthropic] {
            for i in 0..=stream.len() {
                let mut session = Session::new();
                session.redact(&rules, "a@b.io", &dets, Direction::Request);
                let mut scrub = Scrub {
                    engine: &engine,
                    rules: &rules,
                    session: &mut session,
                    redact: true,
                    restore: true,
                };
                let mut rw = SseRewriter::new(4096);
                let (a, b) = stream.as_bytes().split_at(i);
                let mut out = rw.feed(&mut scrub, a, false);
                out.extend(rw.feed(&mut scrub, b, true));
                let (text, _) = sse_text(&out);
                assert_eq!(text, want, "split at {i}");
                let s = String::from_utf8(out).unwrap();
                assert!(!s.contains("c@d") && !s.contains("0132"), "{s}");
                // The first event had nothing to change and is passed byte for byte.
                assert!(s.starts_with(stream.split("\n\n").next().unwrap()));
                assert!(
                    s.ends_with("data: [DONE]\n\n") || s.ends_with("{\"type\":\"message_stop\"}\n\n"),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn json_answers() {
        let engine = Engine::new(&EngineSpec::builtins()).unwrap();
        let rules = Rules::default();
        let mut session = Session::new();
        let dets = engine.detect("a@b.io");
        session.redact(&rules, "a@b.io", &dets, Direction::Request);
        let mut scrub = Scrub {
            engine: &engine,
            rules: &rules,
            session: &mut session,
            redact: true,
            restore: true,
        };
        let openai = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "to <EMAIL_1> from x@y.io"}}]});
        let out: Value = serde_json::from_slice(
            &rewrite_json_response(&mut scrub, openai.to_string().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            out["choices"][0]["message"]["content"],
            "to a@b.io from <EMAIL_2>"
        );
        let anthropic = json!({"content": [{"type": "text", "text": "<EMAIL_1>"}]});
        let out: Value = serde_json::from_slice(
            &rewrite_json_response(&mut scrub, anthropic.to_string().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(out["content"][0]["text"], "a@b.io");
        assert!(rewrite_json_response(
            &mut scrub,
            b"{\"choices\":[{\"message\":{\"content\":\"plain\"}}]}"
        )
        .is_none());
        assert!(rewrite_json_response(&mut scrub, b"not json").is_none());
    }
}
