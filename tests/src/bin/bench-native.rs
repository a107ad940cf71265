//! `bench-native [--quick]`: throughput (MB/s) of the shared engines on one core, natively, printed as
//! a Markdown table (`make bench` embeds it in `bench/results.md`).
//!
//! Each case is a closure over prepared input that returns a number derived from its result (so the work
//! cannot be optimised away); it is timed in a loop for a fixed wall time after a warm-up, and the
//! rate is input bytes per second. To measure a new engine, push one more [`Case`] in [`cases`].
//! `--only TEXT` runs the matching cases for 5 s each, e.g. under `perf record` (build with
//! `CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=1` for symbols).

#[allow(dead_code)]
#[path = "bench/workload.rs"]
mod workload;

use std::hint::black_box;
use std::time::{Duration, Instant};

use shared::provider::anthropic::Anthropic;
use shared::provider::openai::{self, OpenAiStream};
use shared::provider::{Exchange, TranslatedStream};
use shared::sse::SseParser;

/// One measured function: `run` processes `bytes` of input once and returns a checksum.
struct Case {
    name: String,
    bytes: usize,
    run: Box<dyn FnMut() -> usize>,
}

impl Case {
    fn new(name: impl Into<String>, bytes: usize, run: impl FnMut() -> usize + 'static) -> Case {
        Case {
            name: name.into(),
            bytes,
            run: Box::new(run),
        }
    }
}

fn concat(events: &[Vec<u8>]) -> Vec<u8> {
    events.concat()
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();

    // SSE parsing: an OpenAI stream fed one event per chunk, as a provider sends it.
    let events = workload::openai_sse_events();
    let bytes = concat(&events).len();
    let ev = events.clone();
    cases.push(Case::new(
        "SSE parse (OpenAI stream, chunk per event)",
        bytes,
        move || {
            let mut p = SseParser::new();
            let mut n = 0;
            for e in &ev {
                n += p.feed(e).len();
            }
            n + p.finish().len()
        },
    ));
    // Same stream cut into 64-byte pieces: events split across chunks.
    let whole = concat(&events);
    let pieces: Vec<Vec<u8>> = whole.chunks(64).map(<[u8]>::to_vec).collect();
    cases.push(Case::new(
        "SSE parse (OpenAI stream, 64-byte chunks)",
        bytes,
        move || {
            let mut p = SseParser::new();
            let mut n = 0;
            for e in &pieces {
                n += p.feed(e).len();
            }
            n + p.finish().len()
        },
    ));

    // ai-proxy's OpenAI stream observer (usage read, usage chunk stripped).
    let ev = events.clone();
    cases.push(Case::new(
        "OpenAI stream observe + strip usage chunk",
        bytes,
        move || {
            let mut s = OpenAiStream::new(true);
            let mut n = 0;
            for e in &ev {
                n += s.feed(e).map_or(0, |o| o.len());
            }
            n + s.finish().len()
        },
    ));

    // Anthropic stream → OpenAI chunks.
    let events = workload::anthropic_sse_events();
    let bytes = concat(&events).len();
    cases.push(Case::new(
        "Anthropic stream → OpenAI translation",
        bytes,
        move || {
            let target = Anthropic::new("claude-3-5-haiku");
            let Some(mut s) = TranslatedStream::new(&target, 1_760_000_000, true) else {
                return 0;
            };
            let mut n = 0;
            for e in &events {
                n += s.feed(e).len();
            }
            n + s.finish().len()
        },
    ));

    // ai-enrich's `local.language` and ai-router's `language` condition: a body's text, then its language.
    for (size, label) in [(1024, "1 KB"), (64 * 1024, "64 KB")] {
        let body = workload::chat_request(size, false);
        let len = body.len();
        let b = body.clone();
        cases.push(Case::new(format!("body text ({label} chat)"), len, move || {
            shared::lang::body_text(&b, Some("application/json")).len()
        }));
        let text = shared::lang::body_text(&body, Some("application/json"));
        cases.push(Case::new(format!("language ({label} chat)"), len, move || {
            shared::lang::language(&text).len()
        }));
    }

    // Chat request parsing and translation, at the bench's request sizes.
    for (size, label) in [(1024, "1 KB"), (8 * 1024, "8 KB"), (64 * 1024, "64 KB")] {
        let body = workload::chat_request(size, false);
        let len = body.len();
        let b = body.clone();
        cases.push(Case::new(
            format!("chat request parse ({label})"),
            len,
            move || openai::parse_chat_request(&b).map_or(0, |r| r.body.len()),
        ));
        if size == 8 * 1024 {
            cases.push(Case::new(
                format!("chat request parse + re-serialize ({label}, ai-proxy's path)"),
                len,
                move || {
                    openai::parse_chat_request(&body).map_or(0, |mut r| {
                        r.set_model("gpt-4o-mini");
                        r.to_bytes().len()
                    })
                },
            ));
            let body = workload::chat_request(size, false);
            cases.push(Case::new(
                format!("chat request → Anthropic request ({label})"),
                len,
                move || {
                    let target = Anthropic::new("claude-3-5-haiku");
                    openai::parse_chat_request(&body)
                        .ok()
                        .and_then(|r| Exchange::prepare(&r, &target).ok())
                        .map_or(0, |(v, _)| v.len())
                },
            ));
        }
    }

    // Evasion-resistant folding (what the PII and guard engines scan).
    let text = workload::chat_text(16 * 1024);
    let len = text.len();
    let t = text.clone();
    cases.push(Case::new("text::fold (16 KB plain chat text)", len, move || {
        shared::text::fold(&t).text.len()
    }));
    // The same text with the tricks folding undoes: zero-width joiners, full-width digits, homoglyphs.
    let tricky = text
        .replace("Jane", "J\u{200b}ane")
        .replace("415", "\u{ff14}\u{ff11}\u{ff15}")
        .replace("example", "ex\u{0430}mple");
    let tricky_len = tricky.len();
    let t = tricky.clone();
    cases.push(Case::new(
        "text::fold (16 KB chat text with evasion tricks)",
        tricky_len,
        move || shared::text::fold(&t).text.len(),
    ));

    // PII scanning: every built-in detector (shared::pii's default engine), over the same texts.
    let t = text.clone();
    cases.push(Case::new(
        "PII detect, built-in detectors (16 KB plain chat text)",
        len,
        move || shared::pii::default_engine().detect(&t).len(),
    ));
    let t = tricky.clone();
    cases.push(Case::new(
        "PII detect, built-in detectors (16 KB with evasion tricks)",
        tricky_len,
        move || shared::pii::default_engine().detect(&t).len(),
    ));
    let t = text.clone();
    cases.push(Case::new(
        "PII redact for logs (16 KB plain chat text)",
        len,
        move || shared::pii::redact_for_log(&t).len(),
    ));

    // Injection scoring: the guard's layered detector, compiled once as at config load.
    match shared::injection::Detector::new() {
        Ok(detector) => {
            let detector = std::rc::Rc::new(detector);
            let (d, t) = (std::rc::Rc::clone(&detector), text.clone());
            cases.push(Case::new(
                "injection score (16 KB plain chat text)",
                len,
                move || (d.score(&t).total() * 1000.0) as usize,
            ));
            let prompt = workload::chat_text(1024);
            let prompt_len = prompt.len();
            let (d, p) = (std::rc::Rc::clone(&detector), prompt.clone());
            cases.push(Case::new(
                "injection score (1 KB prompt)",
                prompt_len,
                move || (d.score(&p).total() * 1000.0) as usize,
            ));
            // What the guard runs by default: the rules and the learned model on one normalisation.
            let (d, p) = (std::rc::Rc::clone(&detector), prompt.clone());
            cases.push(Case::new(
                "injection rules + learned model (1 KB prompt)",
                prompt_len,
                move || (d.score_with_model(&p, &[]).1.unwrap_or(0.0) * 1000.0) as usize,
            ));
            let (d, t) = (std::rc::Rc::clone(&detector), text.clone());
            cases.push(Case::new(
                "injection rules + learned model (16 KB plain chat text)",
                len,
                move || (d.score_with_model(&t, &[]).1.unwrap_or(0.0) * 1000.0) as usize,
            ));
        }
        Err(e) => eprintln!("bench-native: injection detector did not compile: {e}"),
    }
    // One shared::llm task from its inputs to its checked output, as ai-enrich runs it per request:
    // render the prompt (1 KB ticket, PII redaction on), build the OpenAI structured-output call, read
    // the answer, validate it against the schema, count and log (on the fake host).
    match llm_task() {
        Ok((tasks, answer)) => {
            let ticket = workload::chat_text(1024);
            let len = ticket.len();
            cases.push(Case::new(
                "llm task: render, redact, build, read, validate (1 KB ticket)",
                len,
                move || {
                    let mut host = shared::host::FakeHost::new(shared::host::HostKind::Envoy);
                    let mut inputs = shared::llm::Inputs::new();
                    inputs.set(shared::llm::Source::Body(Some("/text".into())), ticket.as_str());
                    let mut run = tasks.run(inputs);
                    let calls = run.calls(&tasks, &mut host);
                    let n = calls.first().map_or(0, |c| c.body.len());
                    run.answers(&tasks, &mut host, vec![answer.clone()]);
                    n + run.done(0).map_or(0, |d| d.output.is_some() as usize)
                },
            ));
        }
        Err(e) => eprintln!("bench-native: llm task did not compile: {e}"),
    }
    // More engines: push a Case here (build any compiled state outside the closure; only the call
    // inside is timed).
    cases
}

/// A task of the ai-enrich README's shape, and an answer for it.
fn llm_task() -> Result<(shared::llm::Tasks, shared::host::CallResponse), shared::config::ConfigError> {
    let targets = serde_json::json!([{"name": "mini", "provider": "openai", "model": "gpt-4o-mini",
        "endpoint": {"cluster": "openai", "host": "api.openai.com:443"}, "auth": {"value": "k"}}]);
    let tasks = serde_json::json!([{"name": "intent", "target": "mini", "system": "You route support tickets.",
        "prompt": "Ticket: {{body/text}}",
        "output": {"type": "object", "required": ["intent", "entities"], "properties": {
            "intent": {"enum": ["account", "billing", "bug", "other"]},
            "entities": {"type": "array", "items": {"type": "string"}}}}}]);
    let bad = |e: serde_json::Error| shared::config::ConfigError::new("", e.to_string());
    let prices = std::collections::HashMap::new();
    let compiled = shared::llm::Tasks::compile(
        shared::llm::Spec {
            filter: "ai-enrich",
            at: "",
            targets: serde_json::from_value(targets).map_err(bad)?,
            tasks: serde_json::from_value(tasks).map_err(bad)?,
            prices: &prices,
            vars: &[],
        },
        &|_| None,
    )?;
    let body = serde_json::json!({"id": "c", "object": "chat.completion", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": "{\"intent\":\"billing\",\"entities\":[\"Acme\",\"Zephyr\"]}"},
        "finish_reason": "stop"}], "usage": {"prompt_tokens": 300, "completion_tokens": 12}});
    let answer = shared::host::CallResponse {
        status: Some(200),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    };
    Ok((compiled, answer))
}

/// Runs `case` for about `time` after a short warm-up; returns (MB/s, iterations).
fn measure(case: &mut Case, time: Duration) -> (f64, u64) {
    let warm = Instant::now();
    while warm.elapsed() < time / 5 {
        black_box((case.run)());
    }
    let start = Instant::now();
    let mut iterations = 0u64;
    while start.elapsed() < time {
        for _ in 0..8 {
            black_box((case.run)());
        }
        iterations += 8;
    }
    let secs = start.elapsed().as_secs_f64();
    (case.bytes as f64 * iterations as f64 / secs / 1e6, iterations)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only TEXT`: run the cases whose name contains TEXT, for 5 s each (for a profiler).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    let time = Duration::from_millis(match (only, quick) {
        (Some(_), _) => 5000,
        (None, true) => 150,
        (None, false) => 600,
    });
    println!("| engine function | input bytes | MB/s | µs per call |");
    println!("|---|---:|---:|---:|");
    for mut case in cases() {
        if only.is_some_and(|o| !case.name.contains(o.as_str())) {
            continue;
        }
        let (rate, _) = measure(&mut case, time);
        let us = if rate > 0.0 { case.bytes as f64 / rate } else { 0.0 };
        println!("| {} | {} | {rate:.0} | {us:.1} |", case.name, case.bytes);
    }
}
