//! The benchmark's inputs, shared (through `#[path]`) by the driver (`bench`), the fast upstream
//! (`bench-upstream`) and the native engine bench (`bench-native`), so all three speak of the same bytes:
//! realistic chat requests of a chosen size, and the canned OpenAI and Anthropic answers.
//!
//! Everything is deterministic (no randomness), so runs compare.

use serde_json::{json, Value};

/// The model every bench request asks for (ai-proxy's bench config routes it to the fast upstream).
pub const MODEL: &str = "gpt-4o-mini";

/// Plain prose of the kind users send to a chat model: support questions, code review, summaries.
/// One e-mail address and one phone number appear, as they do in real traffic, so a PII filter has
/// something to find; nothing reads as a prompt injection.
const SENTENCES: [&str; 16] = [
    "Our checkout service started returning intermittent 502 errors after yesterday's deploy.",
    "The load balancer health checks pass, but roughly one request in fifty fails under load.",
    "Can you explain the difference between optimistic and pessimistic locking in PostgreSQL?",
    "I pasted the relevant part of the connection pool configuration below for reference.",
    "We keep the pool at twenty connections per instance and run six instances behind the proxy.",
    "The quarterly report should summarise revenue by region and call out the three largest changes.",
    "Please rewrite this paragraph so it is friendlier but still precise about the refund policy.",
    "The customer wrote in twice about a delayed parcel and would like an update by Friday.",
    "Here is the function that parses the CSV export; it is slow on files above a few megabytes.",
    "I think the bottleneck is the repeated string allocation inside the inner loop.",
    "What would be a reasonable retry policy with exponential backoff and jitter for this client?",
    "Translate the release notes into plain language for the support team, keeping the bullet list.",
    "The meeting moved to Thursday at ten; the agenda covers the migration plan and the budget.",
    "List the trade-offs of caching the product catalogue at the edge versus in the application.",
    "Summarise the attached incident timeline in five sentences for the weekly engineering update.",
    "Thanks, that worked. One more question about the database indexes on the orders table.",
];

/// The closing user turn: a question with one e-mail address and one phone number in it.
const LAST_QUESTION: &str = "Given all of the above, what should we check first? If you need the logs, \
    ask Jane Doe at jane.doe@example.com or call +1 415-555-0134.";

const SYSTEM: &str = "You are a helpful assistant for the engineering and support teams of an online \
    shop. Answer concisely, cite the relevant configuration or policy when you can, and ask a clarifying \
    question when the request is ambiguous. Never invent order numbers or customer details.";

/// `n` sentences of prose starting at sentence `start`, joined with spaces.
fn prose(start: usize, n: usize) -> String {
    (0..n)
        .filter_map(|i| SENTENCES.get((start + i * 7) % SENTENCES.len()))
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// About `bytes` of chat text (for text scanners: PII, injection, folding).
pub fn chat_text(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 256);
    let mut i = 0;
    while out.len() < bytes {
        out.push_str(&prose(i, 3));
        out.push_str(if i % 5 == 4 { "\n\n" } else { " " });
        if i % 9 == 8 {
            out.push_str(LAST_QUESTION);
            out.push(' ');
        }
        i += 1;
    }
    out
}

/// An OpenAI chat completion request of about `bytes` bytes (within a few hundred bytes): a system
/// prompt, alternating user and assistant turns, and a closing user question.
pub fn chat_request(bytes: usize, stream: bool) -> Vec<u8> {
    let mut messages = vec![json!({"role": "system", "content": SYSTEM})];
    let last = json!({"role": "user", "content": LAST_QUESTION});
    let envelope = 200;
    let mut size = SYSTEM.len() + LAST_QUESTION.len() + envelope;
    let mut turn = 0;
    while size < bytes {
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        let room = bytes - size;
        // Turns of 2 to 6 sentences, shorter when little room is left.
        let mut n = 2 + turn % 5;
        let mut content = prose(turn, n);
        while n > 1 && content.len() + 40 > room {
            n -= 1;
            content = prose(turn, n);
        }
        size += content.len() + 40;
        messages.push(json!({"role": role, "content": content}));
        turn += 1;
    }
    if messages.len() % 2 == 0 {
        // Keep user/assistant alternation: the closing turn is the user's.
        messages.pop();
    }
    messages.push(last);
    let mut body = json!({
        "model": MODEL,
        "messages": messages,
        "temperature": 0.2,
        "max_tokens": 512,
        "user": "bench-user-42",
    });
    if stream {
        if let Some(o) = body.as_object_mut() {
            o.insert("stream".into(), Value::Bool(true));
        }
    }
    body.to_string().into_bytes()
}

/// The assistant's answer, as words (streamed one per chunk).
fn answer_words() -> Vec<&'static str> {
    "Start with the connection pool: the 502s under load usually mean the proxy ran out of upstream \
     connections or hit an idle timeout shorter than the pool's. Compare the proxy's idle timeout with \
     the pool's keep-alive, check the upstream's accept queue, and look for resets in the load balancer \
     logs around the failed requests. If the timings line up, raise the pool size or lower the keep-alive."
        .split(' ')
        .collect()
}

/// Prompt and completion tokens the canned answers report.
pub const USAGE: (u64, u64) = (250, 72);

/// The canned OpenAI `chat.completion` answer.
pub fn openai_json() -> Vec<u8> {
    let (p, c) = USAGE;
    json!({
        "id": "chatcmpl-bench-1",
        "object": "chat.completion",
        "created": 1_760_000_000u64,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer_words().join(" "), "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    })
    .to_string()
    .into_bytes()
}

fn sse(data: &Value) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

fn openai_chunk(delta: Value, finish: Value) -> Value {
    json!({
        "id": "chatcmpl-bench-1", "object": "chat.completion.chunk", "created": 1_760_000_000u64,
        "model": MODEL, "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "usage": null
    })
}

/// The canned OpenAI stream, one SSE event per element: a role chunk, one chunk per word, a finish
/// chunk, the usage chunk (`choices: []`, as sent when `stream_options.include_usage` is set) and
/// `[DONE]`. About 12 KB in ~70 events, like a real answer of ~70 tokens.
pub fn openai_sse_events() -> Vec<Vec<u8>> {
    let words = answer_words();
    let mut events = vec![sse(&openai_chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ))];
    for (i, w) in words.iter().enumerate() {
        let text = if i + 1 == words.len() {
            (*w).to_string()
        } else {
            format!("{w} ")
        };
        events.push(sse(&openai_chunk(json!({"content": text}), Value::Null)));
    }
    events.push(sse(&openai_chunk(json!({}), json!("stop"))));
    let (p, c) = USAGE;
    events.push(sse(&json!({
        "id": "chatcmpl-bench-1", "object": "chat.completion.chunk", "created": 1_760_000_000u64,
        "model": MODEL, "system_fingerprint": "fp_bench", "choices": [],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    })));
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

/// The same answer as an Anthropic Messages stream (for the translation bench).
pub fn anthropic_sse_events() -> Vec<Vec<u8>> {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n").into_bytes();
    let (p, c) = USAGE;
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_bench_1", "type": "message",
                "role": "assistant", "model": "claude-3-5-haiku-20241022", "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": p, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev("ping", json!({"type": "ping"})),
    ];
    let words = answer_words();
    for (i, w) in words.iter().enumerate() {
        let text = if i + 1 == words.len() {
            (*w).to_string()
        } else {
            format!("{w} ")
        };
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": c}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_sizes_are_close_to_the_target() {
        for size in [1024, 8 * 1024, 64 * 1024] {
            for stream in [false, true] {
                let body = chat_request(size, stream);
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["stream"].as_bool().unwrap_or(false), stream);
                assert_eq!(v["messages"].as_array().unwrap().last().unwrap()["role"], "user");
                let ratio = body.len() as f64 / size as f64;
                assert!((0.85..1.15).contains(&ratio), "{size}: {}", body.len());
            }
        }
    }

    #[test]
    fn canned_answers_parse() {
        let v: Value = serde_json::from_slice(&openai_json()).unwrap();
        assert_eq!(v["object"], "chat.completion");
        let events = openai_sse_events();
        assert_eq!(events.last().unwrap(), b"data: [DONE]\n\n");
        for e in &events[..events.len() - 1] {
            let text = std::str::from_utf8(e).unwrap();
            let data = text.strip_prefix("data: ").unwrap().trim_end();
            serde_json::from_str::<Value>(data).unwrap();
        }
        assert!(anthropic_sse_events().len() > 10);
        assert!(chat_text(4096).len() >= 4096);
    }
}
