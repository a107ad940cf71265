//! The pure core run as wasm32 code under Node (`wasm-bindgen-test-runner`), so behaviour that could
//! differ from native (usize width, float rounding, UTF-8 handling) is checked on the real target.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use shared::provider::anthropic::{self, Anthropic};
use shared::provider::openai::OpenAi;
use shared::provider::openai::{self, error_from_upstream, parse_chat_request, OpenAiStream};
use shared::provider::{client_error, Dialect, Exchange, Expect, Reply, TranslatedStream};
use shared::sse::{write_event, SseEvent, SseParser};
use shared::usage::{cost_micro_usd, Usage};
use wasm_bindgen_test::*;

const ANTHROPIC_STREAM: &str = include_str!("fixtures/anthropic_stream.sse");
const ANTHROPIC_MESSAGE: &str = include_str!("fixtures/anthropic_message.json");
const OPENAI_STREAM_USAGE: &str = include_str!("fixtures/openai_stream_usage.sse");

#[wasm_bindgen_test]
fn sse_parser_handles_any_split() {
    let input = ANTHROPIC_STREAM.replace('\n', "\r\n");
    let mut p = SseParser::new();
    let whole = p.feed(input.as_bytes());
    assert_eq!(whole.len(), 8);
    assert_eq!(whole[0].event.as_deref(), Some("message_start"));
    for i in 0..=input.len() {
        let mut p = SseParser::new();
        let mut got = p.feed(&input.as_bytes()[..i]);
        got.extend(p.feed(&input.as_bytes()[i..]));
        got.extend(p.finish());
        assert_eq!(got, whole, "split at {i}");
    }
}

#[wasm_bindgen_test]
fn sse_write_and_overflow() {
    let mut out = Vec::new();
    write_event(&mut out, Some("x"), "a\nb");
    assert_eq!(out, b"event: x\ndata: a\ndata: b\n\n");
    let mut p = SseParser::with_limit(8);
    let got = p.feed(b"data: 0123456789\n\ndata: ok\n\n");
    assert_eq!(
        got,
        vec![SseEvent {
            event: None,
            data: "ok".into()
        }]
    );
    assert!(p.overflowed());
}

#[wasm_bindgen_test]
fn usage_and_cost() {
    let v: Value = serde_json::from_str(ANTHROPIC_MESSAGE).unwrap();
    assert_eq!(
        anthropic::usage(&v),
        Some(Usage {
            cached_tokens: 2000,
            cache_write_tokens: 100,
            ..Usage::new(2112, 14)
        })
    );
    let v = json!({"usage": {"prompt_tokens": 3_000_000_000u64, "completion_tokens": 5}});
    let u = openai::usage(&v).unwrap();
    assert_eq!(u.total(), 3_000_000_005);
    assert_eq!(cost_micro_usd(u, 0.15, 0.60), 450_000_003);
    assert_eq!(cost_micro_usd(Usage::new(u64::MAX, 1), 1e9, 0.0), u64::MAX);
}

#[wasm_bindgen_test]
fn anthropic_round_trip() {
    let req = parse_chat_request(
        br#"{"model":"claude-3-5-haiku","messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"}],"stream":true,"max_tokens":10}"#,
    )
    .unwrap();
    let target = Anthropic::new("claude-x");
    let (body, exchange) = Exchange::prepare(&req, &target).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"model": "claude-x", "max_tokens": 10, "system": "S", "stream": true,
               "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    );

    let mut reply = Reply::new(&target, &exchange, 200, false, 7);
    let bytes = reply.whole(&target, ANTHROPIC_MESSAGE.as_bytes()).unwrap();
    let usage = reply.usage().unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello! How can I help you today?"
    );
    assert_eq!(usage.completion_tokens, 14);

    let err: Value = serde_json::from_slice(&client_error(
        Dialect::OpenAi,
        &target,
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    ))
    .unwrap();
    assert_eq!(err["error"]["code"], "overloaded_error");
    assert!(error_from_upstream(500, br#"{"error":{"message":"m"}}"#).is_none());
}

#[wasm_bindgen_test]
fn streams_byte_by_byte() {
    let mut s = TranslatedStream::new(&Anthropic::new("claude-x"), 1, true).unwrap();
    let mut out = Vec::new();
    for b in ANTHROPIC_STREAM.as_bytes() {
        out.extend(s.feed(std::slice::from_ref(b)));
    }
    out.extend(s.finish());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#""delta":{"content":"Hello"}"#), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(
        s.usage(),
        Some(Usage {
            cached_tokens: 10,
            ..Usage::new(35, 15)
        })
    );

    // And an OpenAI stream for Anthropic's door.
    let mut s = TranslatedStream::for_door(
        &OpenAi::new("gpt"),
        Dialect::Anthropic,
        Expect::default(),
        1,
        true,
    )
    .unwrap();
    let mut out = Vec::new();
    for b in OPENAI_STREAM_USAGE.as_bytes() {
        out.extend(s.feed(std::slice::from_ref(b)));
    }
    out.extend(s.finish());
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("event: message_start\n"), "{text}");
    assert!(
        text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );

    let mut s = OpenAiStream::new(true);
    let mut out = Vec::new();
    for b in OPENAI_STREAM_USAGE.as_bytes() {
        out.extend(s.feed(std::slice::from_ref(b)).unwrap());
    }
    out.extend(s.finish());
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("prompt_tokens"));
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(s.usage(), Some(Usage::new(12, 7)));
}

/// The PII engine runs users' patterns on `regex_lite`: a pattern with a `\p{..}` class is refused at
/// configuration, and `\d`, `\s` and `(?i)` reach other scripts through folding (the text's digits and
/// spaces, a caseless pattern's letters in both cases). Checked on wasm32, the modules' target.
#[wasm_bindgen_test]
fn user_patterns_without_unicode_property_tables() {
    use shared::pii::detect::{Engine, EngineErrorKind, EngineSpec};
    let spec = |p: &str| EngineSpec {
        regexes: vec![("x".into(), p.into())],
        ..Default::default()
    };
    for pattern in [r"\p{Greek}+", r"\p{L}", r"\p{Emoji}", r"\P{N}", r"\p{Lu}"] {
        let err = Engine::new(&spec(pattern)).unwrap_err();
        assert_eq!((err.what, err.index), (EngineErrorKind::Regex, 0), "{pattern}");
    }
    let e = Engine::new(&spec(r"(?i)\bmüller\w*\s\d+")).unwrap();
    let found = e.detect("Herr MÜLLERS ٣٤");
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].start, found[0].end), (5, "Herr MÜLLERS ٣٤".len()));
}
