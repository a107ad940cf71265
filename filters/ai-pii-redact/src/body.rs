//! Where the text is in LLM bodies: every model-readable text of a request (the shared walker,
//! `shared::chat`), and the answer's text and tool-call arguments (JSON and SSE). Only text is touched,
//! never the JSON structure around it; JSON inside strings (tool-call arguments) stays valid JSON.

use serde_json::{json, Map, Value};
use shared::chat::{self, Api, Kind};
use shared::json_canon::{self, Kind as JsonKind};
use shared::pii::stream::{Scrub, StreamScrubber};
use shared::sse::{single_data_line, write_event, SseParser};
use std::collections::BTreeMap;

/// One piece of request text and where it lives: a JSON pointer into the body, and for JSON inside a
/// string (tool-call arguments) the pointer inside that document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub pointer: String,
    pub inner: Option<String>,
    pub kind: Kind,
    pub text: String,
}

impl Default for Segment {
    fn default() -> Self {
        Segment {
            pointer: String::new(),
            inner: None,
            kind: Kind::Content,
            text: String::new(),
        }
    }
}

/// The texts of a request to redact: every text the walker finds of a kind in `kinds`, and, for
/// message text (content, names, system prompts, tool results), of a role in `roles` (all roles when
/// `None`; Anthropic's top-level `system` is role `system`).
pub fn request_segments(
    body: &Value,
    api: Option<Api>,
    roles: Option<&[String]>,
    kinds: &[Kind],
) -> Vec<Segment> {
    let role_ok = |role: Option<&str>| roles.is_none_or(|r| r.iter().any(|x| Some(x.as_str()) == role));
    chat::texts(api, body)
        .into_iter()
        .filter(|t| kinds.contains(&t.kind) && (!t.kind.follows_role() || role_ok(t.role)))
        .map(|t| Segment {
            pointer: t.pointer,
            inner: t.inner,
            kind: t.kind,
            text: t.text.into_owned(),
        })
        .collect()
}

/// The string values of a JSON document, scrubbed in place; whether any changed.
fn scrub_strings(v: &mut Value, f: &mut dyn FnMut(&str) -> String) -> bool {
    match v {
        Value::String(s) => {
            let new = f(s);
            let changed = new != *s;
            *s = new;
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, i| scrub_strings(i, f) | c),
        Value::Object(map) => map.values_mut().fold(false, |c, i| scrub_strings(i, f) | c),
        _ => false,
    }
}

/// Tool-call arguments of a JSON answer (JSON in a string): each string value scrubbed and the
/// document serialised again; a string that is not JSON is scrubbed as JSON text.
fn scrub_arguments(scrub: &mut Scrub<'_>, v: &mut Value, restore: bool) -> bool {
    let Value::String(raw) = v else {
        return false;
    };
    match serde_json::from_str::<Value>(raw) {
        Ok(mut doc) => {
            if scrub_strings(&mut doc, &mut |t| scrub.whole_with(t, restore, false)) {
                *raw = doc.to_string();
                return true;
            }
            false
        }
        Err(_) => {
            let new = scrub.whole_with(raw, restore, true);
            let changed = new != *raw;
            *raw = new;
            changed
        }
    }
}

/// Rewrites the text of a JSON answer (OpenAI `choices[].message.content` and `refusal`, Anthropic
/// `content[].text`) and its tool calls (OpenAI `tool_calls[].function.arguments` and `function_call`,
/// Anthropic `tool_use.input`), restoring placeholders in tool calls only if `restore_args`. `None`
/// when nothing changed or the body is not such JSON.
pub fn rewrite_json_response(scrub: &mut Scrub<'_>, body: &[u8], restore_args: bool) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    let mut fix = |scrub: &mut Scrub<'_>, s: &mut Value| {
        if let Value::String(text) = s {
            let new = scrub.whole(text);
            if new != *text {
                *text = new;
                changed = true;
            }
        }
    };
    let mut args_changed = false;
    if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            let Some(message) = c.get_mut("message") else {
                continue;
            };
            match message.get_mut("content") {
                Some(Value::Array(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get_mut("text") {
                            fix(scrub, t);
                        }
                    }
                }
                Some(content) => fix(scrub, content),
                None => {}
            }
            if let Some(r) = message.get_mut("refusal") {
                fix(scrub, r);
            }
            if let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for call in calls {
                    if let Some(a) = call.pointer_mut("/function/arguments") {
                        args_changed |= scrub_arguments(scrub, a, restore_args);
                    }
                }
            }
            if let Some(a) = message.pointer_mut("/function_call/arguments") {
                args_changed |= scrub_arguments(scrub, a, restore_args);
            }
        }
    } else if let Some(blocks) = v.get_mut("content").and_then(Value::as_array_mut) {
        for b in blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(t) = b.get_mut("text") {
                        fix(scrub, t);
                    }
                }
                Some("tool_use" | "server_tool_use") => {
                    if let Some(input) = b.get_mut("input") {
                        args_changed |=
                            scrub_strings(input, &mut |t| scrub.whole_with(t, restore_args, false));
                    }
                }
                _ => {}
            }
        }
    }
    (changed || args_changed).then(|| v.to_string().into_bytes())
}

/// Largest SSE event kept while waiting for its end; a larger one is dropped (fail closed).
const MAX_EVENT: usize = 1024 * 1024;

/// Rewrites an SSE answer event by event: the text (OpenAI `choices[].delta.content`, Anthropic
/// `content_block_delta` `text_delta`) and the tool-call arguments (OpenAI
/// `delta.tool_calls[].function.arguments`, Anthropic `input_json_delta.partial_json`), which arrive as
/// fragments of JSON text that can split a placeholder. Events whose text does not change are passed
/// on byte for byte, and text held back by a [`StreamScrubber`] is released in a later event (or a
/// synthesised one before the end of its block, choice or stream).
#[derive(Debug)]
pub struct SseRewriter {
    buf: Vec<u8>,
    /// Text, per (anthropic?, choice or block index).
    scrubbers: BTreeMap<(bool, u64), StreamScrubber>,
    /// Tool-call arguments, per (anthropic?, choice index, tool call or block index).
    args: BTreeMap<(bool, u64, u64), StreamScrubber>,
    /// The data of the last OpenAI chunk: its envelope (id, model, ...) is read from it for a
    /// synthesised chunk ([`template_of`]), only when one is written.
    template: String,
    max_hold: usize,
    /// Restore placeholders in tool-call arguments (else they stay placeholders).
    restore_args: bool,
    /// Take [`SseRewriter::openai_text`] for the events it reads (off only to test it against the
    /// `Value` path), and how many it took.
    fast: bool,
    fast_events: usize,
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
    pub fn new(max_hold: usize, restore_args: bool) -> Self {
        SseRewriter {
            buf: Vec::new(),
            scrubbers: BTreeMap::new(),
            args: BTreeMap::new(),
            template: String::new(),
            max_hold,
            restore_args,
            fast: true,
            fast_events: 0,
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

    fn args_scrubber(&mut self, key: (bool, u64, u64)) -> &mut StreamScrubber {
        let (max_hold, restore) = (self.max_hold, self.restore_args);
        self.args
            .entry(key)
            .or_insert_with(|| StreamScrubber::json(max_hold, restore))
    }

    fn event(&mut self, scrub: &mut Scrub<'_>, raw: &[u8], out: &mut Vec<u8>) {
        if let Some(data) = single_data_line(raw).filter(|_| self.fast) {
            if self.openai_text(scrub, data, raw, out) {
                self.fast_events += 1;
                return;
            }
        }
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
            self.template.clear();
            self.template.push_str(&ev.data);
            self.openai(scrub, &mut v, out)
        } else {
            self.anthropic(scrub, &mut v, out)
        };
        if changed {
            write_event(out, ev.event.as_deref(), &v.to_string());
        } else {
            out.extend_from_slice(raw);
        }
    }

    /// An OpenAI chunk with `choices[idx].delta.tool_calls` = this one call's arguments.
    fn openai_args_chunk(&self, out: &mut Vec<u8>, idx: u64, call: u64, args: &str) {
        if args.is_empty() {
            return;
        }
        let mut chunk = template_of(&self.template);
        chunk.insert(
            "choices".into(),
            json!([{"index": idx, "delta": {"tool_calls": [{"index": call, "function": {"arguments": args}}]}, "finish_reason": null}]),
        );
        write_event(out, None, &Value::Object(chunk).to_string());
    }

    /// The common OpenAI chunk, text deltas only, read and written without a `Value`: `data` is
    /// canonical JSON ([`json_canon`]) whose choices are objects with no tool calls and no finish
    /// reason. Changed texts are spliced into `data`, which gives the bytes [`SseRewriter::openai`]
    /// writes for the same chunk; `false` (nothing done) for any other event.
    fn openai_text(&mut self, scrub: &mut Scrub<'_>, data: &str, raw: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(doc) = json_canon::scan(data) else {
            return false;
        };
        let root = doc.root();
        let Some(choices) = root.get("choices").filter(|c| c.kind() == JsonKind::Array) else {
            return false;
        };
        // (choice index, its content string) per choice, checked before any text is pushed.
        let mut texts = Vec::new();
        for (_, c) in choices.children() {
            if c.kind() != JsonKind::Object || c.get("finish_reason").is_some_and(|f| !f.is_null()) {
                return false;
            }
            let idx = c.get("index").and_then(|i| i.as_u64()).unwrap_or(0);
            let delta = c.get("delta");
            if delta.is_some_and(|d| d.kind() != JsonKind::Object || d.get("tool_calls").is_some()) {
                return false;
            }
            if let Some(content) = delta.and_then(|d| d.get("content")) {
                if let Some(text) = content.as_str() {
                    texts.push((idx, content.span(), text));
                }
            }
        }
        self.template.clear();
        self.template.push_str(data);
        let mut changes: Vec<((usize, usize), String)> = Vec::new();
        for (idx, span, text) in texts {
            let new = self.scrubber((false, idx)).push(scrub, &text);
            if new != text {
                changes.push((span, new));
            }
        }
        if changes.is_empty() {
            out.extend_from_slice(raw);
        } else {
            let changes: Vec<((usize, usize), &str)> =
                changes.iter().map(|(span, new)| (*span, new.as_str())).collect();
            write_event(out, None, &doc.splice(&changes));
        }
        true
    }

    fn openai(&mut self, scrub: &mut Scrub<'_>, v: &mut Value, out: &mut Vec<u8>) -> bool {
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changed = false;
        for c in choices {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finished = c.get("finish_reason").is_some_and(|f| !f.is_null());
            if let Some(calls) = c.pointer_mut("/delta/tool_calls").and_then(Value::as_array_mut) {
                for call in calls {
                    let k = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let Some(Value::String(fragment)) = call.pointer_mut("/function/arguments") else {
                        continue;
                    };
                    let new = self.args_scrubber((false, idx, k)).push(scrub, fragment);
                    if new != *fragment {
                        *fragment = new;
                        changed = true;
                    }
                }
            }
            if finished {
                // Arguments still held go out in their own chunk, before the one that ends the choice.
                let keys: Vec<(bool, u64, u64)> = self
                    .args
                    .keys()
                    .filter(|(a, i, _)| !*a && *i == idx)
                    .copied()
                    .collect();
                for key in keys {
                    let rest = self
                        .args
                        .get_mut(&key)
                        .map(|s| s.finish(scrub))
                        .unwrap_or_default();
                    self.openai_args_chunk(out, idx, key.2, &rest);
                }
            }
            let content = c
                .get("delta")
                .and_then(|d| d.get("content"))
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
                let (field, key) = match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => ("text", None),
                    Some("input_json_delta") => ("partial_json", Some((true, 0, idx))),
                    _ => return false,
                };
                let Some(Value::String(piece)) = delta.get_mut(field) else {
                    return false;
                };
                let new = match key {
                    Some(key) => self.args_scrubber(key).push(scrub, piece),
                    None => self.scrubber((true, idx)).push(scrub, piece),
                };
                if new == *piece {
                    return false;
                }
                *piece = new;
                true
            }
            Some("content_block_stop") => {
                if let Some(s) = self.scrubbers.get_mut(&(true, idx)) {
                    let rest = s.finish(scrub);
                    anthropic_delta(out, idx, "text_delta", &rest);
                }
                if let Some(s) = self.args.get_mut(&(true, 0, idx)) {
                    let rest = s.finish(scrub);
                    anthropic_delta(out, idx, "input_json_delta", &rest);
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
        let keys: Vec<(bool, u64, u64)> = self
            .args
            .keys()
            .filter(|(a, _, _)| only.is_none_or(|o| o == *a))
            .copied()
            .collect();
        for key in keys {
            let rest = self
                .args
                .get_mut(&key)
                .map(|s| s.finish(scrub))
                .unwrap_or_default();
            if key.0 {
                anthropic_delta(out, key.2, "input_json_delta", &rest);
            } else {
                self.openai_args_chunk(out, key.1, key.2, &rest);
            }
        }
        for ((anthropic, idx), s) in self.scrubbers.iter_mut() {
            if only.is_some_and(|o| o != *anthropic) {
                continue;
            }
            let rest = s.finish(scrub);
            if rest.is_empty() {
                continue;
            }
            if *anthropic {
                anthropic_delta(out, *idx, "text_delta", &rest);
            } else {
                let mut chunk = template_of(&self.template);
                chunk.insert(
                    "choices".into(),
                    json!([{"index": idx, "delta": {"content": rest}, "finish_reason": null}]),
                );
                write_event(out, None, &Value::Object(chunk).to_string());
            }
        }
    }
}

/// The envelope of an OpenAI chunk (its data, as kept in `SseRewriter::template`): every member but
/// `choices` and `usage`.
fn template_of(data: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(mut obj)) => {
            obj.remove("choices");
            obj.remove("usage");
            obj
        }
        _ => Map::new(),
    }
}

/// A synthesised `content_block_delta` (`text_delta` with `text`, or `input_json_delta` with
/// `partial_json`).
fn anthropic_delta(out: &mut Vec<u8>, idx: u64, kind: &str, text: &str) {
    if text.is_empty() {
        return;
    }
    let field = if kind == "input_json_delta" {
        "partial_json"
    } else {
        "text"
    };
    let v = json!({"type": "content_block_delta", "index": idx, "delta": {"type": kind, field: text}});
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
        let all = request_segments(&body, Some(Api::Messages), None, &Kind::ALL);
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
        let users = request_segments(
            &body,
            Some(Api::Messages),
            Some(&["user".to_string()]),
            &Kind::ALL,
        );
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
            if let Some(t) = v
                .get("choices")
                .and_then(|c| c.get(0))
                .and_then(|c| c.get("delta"))
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
            {
                text.push_str(t);
            }
            if let Some(t) = v.get("delta").and_then(|d| d.get("text")).and_then(Value::as_str) {
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
                let mut rw = SseRewriter::new(4096, true);
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

    /// The `Value`-free path for text chunks against the `Value` path it shortcuts: the same bytes for
    /// streams with values and placeholders split across events, several choices, escapes, tool calls,
    /// events that are not canonical JSON, with and without their end, cut at every third offset, at
    /// two offsets and at every byte.
    #[test]
    fn text_chunks_shortcut_writes_what_the_value_path_writes() {
        let engine = Engine::new(&EngineSpec::builtins()).unwrap();
        let rules = Rules::default();
        let prompt = "mail a@b.io or call 415-555-0199";
        let dets = engine.detect(prompt);
        let env = |choices: Value| {
            json!({"id": "c-1", "object": "chat.completion.chunk", "created": 1_760_000_000u64,
                   "model": "m", "system_fingerprint": "fp", "choices": choices})
        };
        let text = |i: u64, t: &str| json!([{"index": i, "delta": {"content": t}, "finish_reason": null}]);
        let mut canonical = vec![format!(
            "data: {}\n\n",
            env(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]))
        )];
        let pieces = [
            "Hi <EMA",
            "IL_1>, mail j.doe@exa",
            "mple.com ",
            "or \"call\"\n",
            "+1 (415) 555",
            "-0132 ",
            "card 4111 1111 ",
            "1111 1111. ",
            "<PHONE_1> é😀 ",
            "ssn 123-45-",
            "6789",
            " bye <EMAIL_",
            "9>",
        ];
        for (n, p) in pieces.iter().enumerate() {
            canonical.push(format!("data: {}\n\n", env(text(u64::from(n >= 11), p))));
        }
        // A tool call, an event not canonical (a provider's key order and spaces), a second choice's
        // text, then the ends.
        canonical.push(format!("data: {}\n\n", env(json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"to\":\"<EMAIL_1>\"}"}}]}, "finish_reason": null}]))));
        canonical.push("data: {\"id\": \"c-1\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"x@y.io \"}}]}\n\n".into());
        canonical.push(format!("data: {}\n\n", env(text(1, "and 10.0.0.1"))));
        let unfinished = canonical.concat() + "data: [DONE]\n\n";
        let finish = format!(
            "data: {}\n\n",
            env(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        );
        let usage = "data: {\"choices\":[],\"usage\":{\"completion_tokens\":9,\"prompt_tokens\":5}}\n\n";
        let finished = canonical.concat() + &finish + usage + "data: [DONE]\n\n";
        let run = |stream: &[u8], cuts: &[usize], fast: bool| -> (Vec<u8>, usize) {
            let mut session = Session::new();
            session.redact(&rules, prompt, &dets, Direction::Request);
            let mut scrub = Scrub {
                engine: &engine,
                rules: &rules,
                session: &mut session,
                redact: true,
                restore: true,
            };
            let mut rw = SseRewriter::new(4096, true);
            rw.fast = fast;
            let mut out = Vec::new();
            let mut from = 0;
            for &cut in cuts {
                out.extend(rw.feed(&mut scrub, &stream[from..cut], false));
                from = cut;
            }
            out.extend(rw.feed(&mut scrub, &stream[from..], true));
            (out, rw.fast_events)
        };
        for stream in [finished, unfinished] {
            let b = stream.as_bytes();
            let (want, none) = run(b, &[], false);
            assert_eq!(none, 0);
            let (got, taken) = run(b, &[], true);
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
            assert!(taken >= pieces.len(), "{taken}");
            let out = String::from_utf8(want.clone()).unwrap();
            assert!(
                !out.contains("j.doe") && !out.contains("0132") && !out.contains("6789"),
                "{out}"
            );
            let mut cuts: Vec<Vec<usize>> = (0..=b.len()).step_by(3).map(|i| vec![i]).collect();
            cuts.extend(
                (0..b.len())
                    .step_by(101)
                    .flat_map(|i| (i..=b.len()).step_by(89).map(move |j| vec![i, j])),
            );
            cuts.push((1..b.len()).collect());
            for c in cuts {
                assert_eq!(run(b, &c, true).0, want, "cuts {:?}", &c[..c.len().min(4)]);
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
            &rewrite_json_response(&mut scrub, openai.to_string().as_bytes(), true).unwrap(),
        )
        .unwrap();
        assert_eq!(
            out["choices"][0]["message"]["content"],
            "to a@b.io from <EMAIL_2>"
        );
        let anthropic = json!({"content": [{"type": "text", "text": "<EMAIL_1>"}]});
        let out: Value = serde_json::from_slice(
            &rewrite_json_response(&mut scrub, anthropic.to_string().as_bytes(), true).unwrap(),
        )
        .unwrap();
        assert_eq!(out["content"][0]["text"], "a@b.io");
        assert!(rewrite_json_response(
            &mut scrub,
            b"{\"choices\":[{\"message\":{\"content\":\"plain\"}}]}",
            true
        )
        .is_none());
        assert!(rewrite_json_response(&mut scrub, b"not json", true).is_none());
    }

    /// A session that handed out `<EMAIL_1>` for a@b.io and `<QUOTED_1>` for `say "hi"`.
    fn quoted() -> (Engine, Rules, Session) {
        let spec = EngineSpec {
            regexes: vec![("quoted".into(), r#"say "[a-z]+""#.into())],
            ..EngineSpec::builtins()
        };
        let engine = Engine::new(&spec).unwrap();
        let rules = Rules::default();
        let session = quoted_session(&engine, &rules);
        (engine, rules, session)
    }

    fn quoted_session(engine: &Engine, rules: &Rules) -> Session {
        let mut session = Session::new();
        let prompt = r#"a@b.io, say "hi""#;
        let dets = engine.detect(prompt);
        assert_eq!(
            session.redact(rules, prompt, &dets, Direction::Request),
            "<EMAIL_1>, <QUOTED_1>"
        );
        session
    }

    #[test]
    fn tool_calls_in_json_answers() {
        let (engine, rules, mut session) = quoted();
        let openai = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "send", "arguments": "{\"to\":\"<EMAIL_1>\",\"note\":\"<QUOTED_1>\",\"cc\":\"x@y.io\"}"}}
        ]}}]});
        let anthropic = json!({"content": [{"type": "tool_use", "id": "t1", "name": "send", "input": {"to": "<EMAIL_1>", "list": ["<QUOTED_1>"]}}]});
        for (restore, to, note) in [(true, "a@b.io", "say \"hi\""), (false, "<EMAIL_1>", "<QUOTED_1>")] {
            let mut scrub = Scrub {
                engine: &engine,
                rules: &rules,
                session: &mut session,
                redact: true,
                restore: true,
            };
            let out: Value = serde_json::from_slice(
                &rewrite_json_response(&mut scrub, openai.to_string().as_bytes(), restore).unwrap(),
            )
            .unwrap();
            let args: Value = serde_json::from_str(
                out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(
                args,
                json!({"to": to, "note": note, "cc": "<EMAIL_2>"}),
                "restore={restore}"
            );
            let out = rewrite_json_response(&mut scrub, anthropic.to_string().as_bytes(), restore);
            if restore {
                let out: Value = serde_json::from_slice(&out.unwrap()).unwrap();
                assert_eq!(out["content"][0]["input"], json!({"to": to, "list": [note]}));
            } else {
                assert!(out.is_none(), "placeholders kept: nothing changes");
            }
        }
    }

    /// The arguments of a streamed tool call, in both shapes, cut at every byte offset: restored (the
    /// quote escaped) and still valid JSON, or kept as placeholders; untouched events byte-identical.
    #[test]
    fn tool_call_streams_split_everywhere() {
        let (engine, rules, _) = quoted();
        let args = r#"{"to":"<EMAIL_1>","note":"<QUOTED_1> and <EMAIL_1>"}"#;
        let pieces = [&args[..8], &args[8..13], &args[13..30], &args[30..]];
        let mut openai = String::from("data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"send\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n");
        for p in pieces {
            let v = json!({"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}, "finish_reason": null}]});
            openai.push_str(&format!("data: {v}\n\n"));
        }
        openai.push_str("data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n");
        let mut anthropic = String::from("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"send\",\"input\":{}}}\n\n");
        for p in pieces {
            let v = json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}});
            anthropic.push_str(&format!("event: content_block_delta\ndata: {v}\n\n"));
        }
        anthropic.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        let arguments = |out: &[u8]| -> String {
            let mut all = String::new();
            for line in String::from_utf8(out.to_vec()).unwrap().lines() {
                let Some(v) = line
                    .strip_prefix("data: ")
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                else {
                    continue;
                };
                for at in [
                    "/choices/0/delta/tool_calls/0/function/arguments",
                    "/delta/partial_json",
                ] {
                    if let Some(t) = v.pointer(at).and_then(Value::as_str) {
                        all.push_str(t);
                    }
                }
            }
            all
        };
        for restore in [true, false] {
            let want = if restore {
                json!({"to": "a@b.io", "note": "say \"hi\" and a@b.io"})
            } else {
                json!({"to": "<EMAIL_1>", "note": "<QUOTED_1> and <EMAIL_1>"})
            };
            for stream in [&openai, &anthropic] {
                for i in 0..=stream.len() {
                    let mut session = quoted_session(&engine, &rules);
                    let mut scrub = Scrub {
                        engine: &engine,
                        rules: &rules,
                        session: &mut session,
                        redact: true,
                        restore: true,
                    };
                    let mut rw = SseRewriter::new(4096, restore);
                    let (a, b) = stream.as_bytes().split_at(i);
                    let mut out = rw.feed(&mut scrub, a, false);
                    out.extend(rw.feed(&mut scrub, b, true));
                    let got = arguments(&out);
                    let doc: Value =
                        serde_json::from_str(&got).unwrap_or_else(|e| panic!("split at {i}: {e}: {got}"));
                    assert_eq!(doc, want, "restore={restore} split at {i}");
                    let text = String::from_utf8(out).unwrap();
                    // The first event had nothing to change and is passed byte for byte; the end stays.
                    assert!(text.starts_with(stream.split("\n\n").next().unwrap()), "{text}");
                    assert!(
                        text.ends_with("data: [DONE]\n\n")
                            || text.ends_with("{\"type\":\"message_stop\"}\n\n"),
                        "{text}"
                    );
                }
            }
        }
    }
}
