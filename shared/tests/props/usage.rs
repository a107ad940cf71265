//! Token usage (`shared::usage`) read from streams: the counts do not depend on where the chunks are
//! cut, and match what the provider reported (Anthropic's cumulative `message_delta` counts replace
//! earlier ones; OpenAI's usage chunk is read once).

use super::{config, cut, cuts};
use proptest::prelude::*;
use serde_json::{json, Value};
use shared::provider::anthropic::StreamUsage as AnthropicStreamUsage;
use shared::provider::openai::usage as from_openai_json;
use shared::sse::{write_event, SseParser};
use shared::usage::Usage;

/// An Anthropic stream: input tokens in `message_start`, text deltas, cumulative output counts.
fn anthropic_stream(input: u64, deltas: &[String], outputs: &[u64], crlf: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let start = json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": input, "output_tokens": 1}}});
    write_event(&mut out, Some("message_start"), &start.to_string());
    for (i, text) in deltas.iter().enumerate() {
        let d =
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
        write_event(&mut out, Some("content_block_delta"), &d.to_string());
        if let Some(n) = outputs.get(i) {
            let d = json!({"type": "message_delta", "delta": {}, "usage": {"output_tokens": n}});
            write_event(&mut out, Some("message_delta"), &d.to_string());
        }
    }
    write_event(&mut out, Some("message_stop"), r#"{"type":"message_stop"}"#);
    if crlf {
        out = String::from_utf8(out).unwrap().replace('\n', "\r\n").into_bytes();
    }
    out
}

fn anthropic_usage(chunks: &[&[u8]]) -> Option<Usage> {
    let mut p = SseParser::new();
    let mut u = AnthropicStreamUsage::new();
    for c in chunks {
        for ev in p.feed(c) {
            u.observe(&ev);
        }
    }
    for ev in p.finish() {
        u.observe(&ev);
    }
    u.usage()
}

fn openai_usage(chunks: &[&[u8]]) -> Option<Usage> {
    let mut p = SseParser::new();
    let mut found = None;
    let mut events: Vec<_> = chunks.iter().flat_map(|c| p.feed(c)).collect();
    events.extend(p.finish());
    for ev in events {
        if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
            if let Some(u) = from_openai_json(&v) {
                found = Some(u);
            }
        }
    }
    found
}

proptest! {
    #![proptest_config(config(2))]

    #[test]
    fn anthropic_counts_do_not_depend_on_chunking(
        input in 0u64..1 << 40,
        deltas in prop::collection::vec(".{0,12}", 0..8),
        mut outputs in prop::collection::vec(0u64..100_000, 0..8),
        crlf in any::<bool>(),
        at in cuts(16),
    ) {
        outputs.sort_unstable();
        let wire = anthropic_stream(input, &deltas, &outputs, crlf);
        let last = outputs.iter().take(deltas.len()).next_back().copied().unwrap_or(1);
        let want = Some(Usage::new(input, last));
        prop_assert_eq!(anthropic_usage(&[&wire]), want);
        prop_assert_eq!(anthropic_usage(&cut(&wire, &at)), want);
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        prop_assert_eq!(anthropic_usage(&bytes), want);
    }

    #[test]
    fn openai_usage_chunk_does_not_depend_on_chunking(
        prompt in 0u64..1 << 40,
        completion in 0u64..1 << 40,
        cached in 0u64..1 << 41,
        deltas in prop::collection::vec(".{0,12}", 0..8),
        at in cuts(16),
    ) {
        let mut wire = Vec::new();
        for d in &deltas {
            let c = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": d}}], "usage": null});
            write_event(&mut wire, None, &c.to_string());
        }
        let u = json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": prompt,
            "completion_tokens": completion, "prompt_tokens_details": {"cached_tokens": cached}}});
        write_event(&mut wire, None, &u.to_string());
        write_event(&mut wire, None, "[DONE]");
        // Cached tokens are a part of the prompt, never more than it, never added to the total.
        let want = Some(Usage { cached_tokens: cached.min(prompt), ..Usage::new(prompt, completion) });
        prop_assert_eq!(want.map(|u| u.total()), Some(prompt + completion));
        prop_assert_eq!(openai_usage(&cut(&wire, &at)), want);
        prop_assert_eq!(openai_usage(&[&wire]), want);
    }

    #[test]
    fn any_bytes_give_the_same_counts_for_any_chunking(input in prop::collection::vec(any::<u8>(), 0..400), at in cuts(8)) {
        prop_assert_eq!(anthropic_usage(&cut(&input, &at)), anthropic_usage(&[&input]));
        prop_assert_eq!(openai_usage(&cut(&input, &at)), openai_usage(&[&input]));
    }
}
