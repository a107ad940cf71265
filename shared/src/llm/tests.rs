//! Tasks compiled from config and run against a fake host: waves, outcomes, governance, accounting.

use super::*;
use crate::host::{CallResponse, FakeHost, HostKind, LogLevel};
use serde_json::json;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const VARS: &[&str] = &["local.language"];

fn targets() -> Value {
    json!([
        {"name": "mini", "provider": "openai", "model": "gpt-4o-mini",
         "endpoint": {"cluster": "mock_openai", "host": "127.0.0.1:10001"}, "auth": {"value": "sk-task"}},
        {"name": "local", "provider": "openai_compatible", "model": "llama",
         "endpoint": {"cluster": "mock_local", "host": "127.0.0.1:10002"},
         "breaker": {"consecutive_failures": 1, "cooldown_ms": "10s"}},
        {"name": "claude", "provider": "anthropic", "model": "claude-3-5-haiku",
         "endpoint": {"cluster": "mock_anthropic", "host": "127.0.0.1:10001"}}
    ])
}

fn intent() -> Value {
    json!({"name": "intent", "target": "mini", "system": "You route tickets.",
           "prompt": "Ticket: {{body/text}} (language {{local.language}})",
           "output": {"type": "object", "required": ["intent"],
                      "properties": {"intent": {"type": "string", "enum": ["billing", "bug", "other"]}}}})
}

fn risk() -> Value {
    json!({"name": "risk", "target": "mini", "prompt": "Rate the risk of: {{body/text}}",
           "output": {"type": "object", "required": ["score"],
                      "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 100}}}})
}

fn compile_with(targets: Value, tasks: Value) -> Result<Tasks, ConfigError> {
    let prices: HashMap<String, Price> = serde_json::from_value(
        json!({"gpt-4o-mini": {"prompt_per_million": 1, "completion_per_million": 2}}),
    )
    .unwrap();
    let spec = Spec {
        filter: "ai-enrich",
        at: "",
        targets: serde_json::from_value(targets).map_err(|e| ConfigError::new("", e.to_string()))?,
        tasks: serde_json::from_value(tasks).map_err(|e| ConfigError::new("", e.to_string()))?,
        prices: &prices,
        vars: VARS,
    };
    Tasks::compile(spec, &|k| (k == "KEY").then(|| "k".into()))
}

fn compile(tasks: Value) -> Tasks {
    compile_with(targets(), tasks).unwrap()
}

fn inputs(text: &str) -> Inputs {
    let mut i = Inputs::new().with_request_id(Some("rid-7".into()));
    i.set(Source::Body(Some("/text".into())), text);
    i.set_var("local.language", "en");
    i
}

/// An OpenAI answer whose text is `content`.
fn answer(content: &str, prompt: u64, completion: u64) -> CallResponse {
    let body = json!({"id": "c", "object": "chat.completion", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion}});
    CallResponse {
        status: Some(200),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn status(s: u16) -> CallResponse {
    CallResponse {
        status: Some(s),
        headers: vec![],
        body: b"{}".to_vec(),
    }
}

fn sent(call: &crate::host::HttpCall) -> Value {
    serde_json::from_slice(&call.body).unwrap()
}

#[test]
fn config_errors_name_the_field() {
    let cases: Vec<(Value, Value, &str)> = vec![
        (
            targets(),
            json!([{"name": "Intent", "target": "mini", "prompt": "x", "output": {"type": "object"}}]),
            "tasks[0].name",
        ),
        (targets(), json!([intent(), intent()]), "tasks[1].name"),
        (
            targets(),
            json!([{"name": "a", "target": "nope", "prompt": "x", "output": {"type": "object"}}]),
            "tasks[0].target",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": " ", "output": {"type": "object"}}]),
            "tasks[0].prompt",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "{{nope}}", "output": {"type": "object"}}]),
            "tasks[0].prompt",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "system": "{{task.b}}", "prompt": "x", "output": {"type": "object"}}]),
            "tasks[0].system",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "array"}}]),
            "tasks[0].output.type",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object", "properties": {"p": {}}}}]),
            "tasks[0].output.required",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object", "oneOf": []}}]),
            "tasks[0].output.oneOf",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "max_tokens": 0}]),
            "tasks[0].max_tokens",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "temperature": 3}]),
            "tasks[0].temperature",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "timeout": "61s"}]),
            "tasks[0].timeout",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "timeout": 0}]),
            "tasks[0].timeout",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "cache_ttl": "86401s"}]),
            "tasks[0].cache_ttl",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "cache_entries": 0}]),
            "tasks[0].cache_entries",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "failure_mode": "defaults"}]),
            "tasks[0].defaults",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "defaults": {}}]),
            "tasks[0].defaults",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "failure_mode": "defaults", "defaults": {"intent": "nope"},
                            "output": intent()["output"]}]),
            "tasks[0].defaults",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "tokens_per_minute": 0}]),
            "tasks[0].tokens_per_minute",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "x", "output": {"type": "object"}, "max_input_chars": 0}]),
            "tasks[0].max_input_chars",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "{{task.b}}", "output": {"type": "object"}},
                           {"name": "b", "target": "mini", "prompt": "{{task.a}}", "output": {"type": "object"}}]),
            "tasks[0].prompt",
        ),
        (
            targets(),
            json!([{"name": "a", "target": "mini", "prompt": "{{task.a}}", "output": {"type": "object"}}]),
            "tasks[0].prompt",
        ),
        (
            json!([{"name": "a b", "provider": "openai", "model": "m", "endpoint": {"cluster": "c", "host": "h:1"}}]),
            json!([]),
            "targets[0].name",
        ),
        (
            json!([{"name": "a", "provider": "openai", "model": "m", "endpoint": {"cluster": "c", "host": "h:1"}},
                {"name": "a", "provider": "openai", "model": "m", "endpoint": {"cluster": "c", "host": "h:1"}}]),
            json!([]),
            "targets[1].name",
        ),
        (
            json!([{"name": "a", "provider": "openai", "model": "m", "endpoint": {"cluster": "c", "host": "h"}}]),
            json!([]),
            "targets[0].endpoint.host",
        ),
        (
            json!([{"name": "a", "provider": "openai", "model": "m", "endpoint": {"cluster": "c", "host": "h:1"}, "auth": {"env": "NOPE"}}]),
            json!([]),
            "targets[0].auth",
        ),
        (
            json!([{"name": "a", "provider": "openai", "model": "m", "endpoint": {"cluster": "c", "host": "h:1"},
                 "breaker": {"cooldown_ms": 5}}]),
            json!([]),
            "targets[0].breaker",
        ),
    ];
    for (t, tasks, field) in cases {
        let err = compile_with(t, tasks.clone()).unwrap_err();
        assert_eq!(err.field, field, "{tasks}: {err}");
    }
    // A cycle names the tasks on it.
    let err = compile_with(
        targets(),
        json!([{"name": "a", "target": "mini", "prompt": "{{task.b}}", "output": {"type": "object"}},
               {"name": "b", "target": "mini", "prompt": "{{task.c}}", "output": {"type": "object"}},
               {"name": "c", "target": "mini", "prompt": "{{task.a}}", "output": {"type": "object"}}]),
    )
    .unwrap_err();
    assert!(err.message.contains("a → b → c → a"), "{err}");
    // Unknown fields, and provider fields on the wrong provider, are refused by serde.
    assert!(compile_with(
        targets(),
        json!([{"name": "a", "target": "mini", "prompt": "x", "output": {}, "bogus": 1}])
    )
    .is_err());
    let mut t = targets();
    t[0]["deployment"] = json!("d");
    assert!(compile_with(t, json!([]))
        .unwrap_err()
        .message
        .contains("unknown field `deployment`"));
    // OpenAI-compatible targets take optional properties (the schema only travels in the prompt).
    let optional = json!([{"name": "a", "target": "local", "prompt": "x",
        "output": {"type": "object", "properties": {"p": {"type": "string"}}}}]);
    assert!(compile_with(targets(), optional).is_ok());
}

/// A task on an Anthropic target asks for structured output through the Anthropic translator: the
/// output schema becomes a forced tool's `input_schema` (the translator of ai-proxy's `response_format`).
#[test]
fn anthropic_tasks_use_a_forced_tool() {
    let tasks = compile_with(
        targets(),
        json!([{"name": "a", "target": "claude", "prompt": "x", "output": intent()["output"]}]),
    )
    .unwrap();
    let mut host = FakeHost::new(HostKind::Envoy);
    let mut run = tasks.run(Inputs::new());
    let calls = run.calls(&tasks, &mut host);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/v1/messages");
    let sent: Value = serde_json::from_slice(&calls[0].body).unwrap();
    let tool = &sent["tools"][0];
    assert_eq!(sent["tool_choice"]["type"], "tool");
    assert_eq!(sent["tool_choice"]["name"], tool["name"]);
    assert_eq!(tool["input_schema"]["required"], json!(["intent"]));
}

#[test]
fn independent_tasks_run_in_one_wave_and_are_accounted() {
    let tasks = compile(json!([intent(), risk()]));
    let mut host = FakeHost::new(HostKind::Envoy);
    host.now_ms = 1_000_000;
    let mut run = tasks.run(inputs("My invoice is wrong"));
    let calls = run.calls(&tasks, &mut host);
    assert_eq!(calls.len(), 2, "in parallel");
    assert!(run.waiting() && !run.finished());
    assert!(
        run.calls(&tasks, &mut host).is_empty(),
        "nothing more while the wave is out"
    );
    let first = sent(&calls[0]);
    assert_eq!(calls[0].upstream.cluster, "mock_openai");
    assert_eq!(calls[0].path, "/v1/chat/completions");
    assert_eq!(calls[0].timeout_ms, DEFAULT_TIMEOUT_MS);
    assert!(calls[0]
        .headers
        .contains(&("authorization".into(), "Bearer sk-task".into())));
    assert_eq!(
        first["messages"],
        json!([{"role": "system", "content": "You route tickets."},
               {"role": "user", "content": "Ticket: My invoice is wrong (language en)"}])
    );
    assert_eq!(first["response_format"]["json_schema"]["name"], "intent");
    assert_eq!(sent(&calls[1])["response_format"]["json_schema"]["name"], "risk");
    host.now_ms += 40;
    run.answers(
        &tasks,
        &mut host,
        vec![
            answer(r#"{"intent":"billing"}"#, 20, 5),
            answer(r#"{"score":12}"#, 10, 3),
        ],
    );
    assert!(run.finished() && !run.waiting());
    assert!(run.calls(&tasks, &mut host).is_empty());
    let intent_done = run.done(0).unwrap();
    assert_eq!(intent_done.outcome, Outcome::Ok);
    assert_eq!(intent_done.latency_ms, Some(40));
    assert_eq!(intent_done.cost_micro_usd, Some(20 + 10));
    assert_eq!(
        run.value(&tasks, &tasks.source("task.intent/intent").unwrap()),
        Some(json!("billing"))
    );
    assert_eq!(
        run.value(&tasks, &tasks.source("task.risk").unwrap()),
        Some(json!({"score": 12}))
    );
    assert_eq!(
        run.value(&tasks, &tasks.source("local.language").unwrap()),
        Some(json!("en"))
    );
    assert_eq!(run.denied(&tasks), None);
    assert_eq!(run.spent().0.total(), 38);
    let c = &host.counters;
    assert_eq!(c["ai_enrich_task_calls_total_task=intent_outcome=ok"], 1);
    assert_eq!(c["ai_enrich_task_calls_total_task=risk_outcome=ok"], 1);
    assert_eq!(c["ai_enrich_task_tokens_total_task=intent_kind=prompt"], 20);
    assert_eq!(c["ai_enrich_task_tokens_total_task=risk_kind=completion"], 3);
    assert_eq!(c["ai_enrich_task_cost_microusd_total_task=intent"], 30);
    assert_eq!(host.histograms["ai_enrich_task_latency_ms_task=risk"], vec![40]);
    assert!(host.logged(
        LogLevel::Info,
        "ai-enrich: task=intent outcome=ok target=mini model=gpt-4o-mini latency_ms=40 prompt_tokens=20 completion_tokens=5 cost_usd=0.000030 request_id=rid-7"
    ));
    let sources: Vec<String> = tasks.sources().iter().map(ToString::to_string).collect();
    assert_eq!(sources, ["body/text", "local.language"]);
}

#[test]
fn a_task_reading_another_waits_for_it_or_is_skipped() {
    let summary = json!({"name": "summary", "target": "mini",
        "prompt": "Intent {{task.intent/intent}}, risk {{task.risk/score}}: {{task.intent}}",
        "output": {"type": "object", "required": ["s"], "properties": {"s": {"type": "string"}}}});
    let tasks = compile(json!([summary, intent(), risk()]));
    let mut host = FakeHost::new(HostKind::Kong);
    let mut run = tasks.run(inputs("x"));
    let wave = run.calls(&tasks, &mut host);
    assert_eq!(wave.len(), 2, "summary waits");
    run.answers(
        &tasks,
        &mut host,
        vec![
            answer(r#"{"intent":"bug"}"#, 1, 1),
            answer(r#"{"score":3}"#, 1, 1),
        ],
    );
    assert!(!run.finished());
    let wave = run.calls(&tasks, &mut host);
    assert_eq!(wave.len(), 1);
    assert_eq!(
        sent(&wave[0])["messages"][0]["content"],
        r#"Intent bug, risk 3: {"intent":"bug"}"#
    );
    run.answer(&tasks, &mut host, 0, answer(r#"{"s":"ok"}"#, 1, 1));
    assert!(run.finished());
    assert_eq!(run.done(0).unwrap().outcome, Outcome::Ok);

    // A dependency without output skips the task that reads it.
    let mut run = tasks.run(inputs("x"));
    let wave = run.calls(&tasks, &mut host);
    assert_eq!(wave.len(), 2);
    run.answers(
        &tasks,
        &mut host,
        vec![status(500), answer(r#"{"score":3}"#, 1, 1)],
    );
    assert!(run.calls(&tasks, &mut host).is_empty());
    assert!(run.finished());
    let skipped = run.done(0).unwrap();
    assert_eq!(skipped.outcome, Outcome::Skipped);
    assert_eq!(skipped.why.as_deref(), Some("task intent has no output"));
    assert_eq!(run.done(1).unwrap().outcome, Outcome::UpstreamError);
    assert_eq!(
        host.counters["ai_enrich_task_calls_total_task=summary_outcome=skipped"],
        1
    );
}

#[test]
fn failure_modes() {
    let with = |mode: Value| {
        let mut t = intent();
        if let Some(o) = mode.as_object() {
            for (k, v) in o {
                t[k] = v.clone();
            }
        }
        compile(json!([t]))
    };
    let cases = [
        (json!({}), None, false),
        (json!({"failure_mode": "allow"}), None, false),
        (json!({"failure_mode": "deny"}), None, true),
        (
            json!({"failure_mode": "defaults", "defaults": {"intent": "other"}}),
            Some(json!({"intent": "other"})),
            false,
        ),
    ];
    let failures: Vec<(CallResponse, Outcome)> = vec![
        (status(503), Outcome::UpstreamError),
        (CallResponse::default(), Outcome::UpstreamError),
        (
            CallResponse {
                status: Some(504),
                headers: vec![],
                body: b"upstream request timeout".to_vec(),
            },
            Outcome::Timeout,
        ),
        (answer("not json", 5, 5), Outcome::InvalidOutput),
        (answer(r#"{"intent":"refund"}"#, 5, 5), Outcome::InvalidOutput),
    ];
    for (mode, output, denies) in &cases {
        let tasks = with(mode.clone());
        for (resp, outcome) in &failures {
            let mut host = FakeHost::new(HostKind::Envoy);
            let mut run = tasks.run(inputs("x"));
            assert_eq!(run.calls(&tasks, &mut host).len(), 1);
            run.answers(&tasks, &mut host, vec![resp.clone()]);
            let done = run.done(0).unwrap();
            assert_eq!(done.outcome, *outcome, "{mode} {resp:?}");
            assert_eq!(&done.output, output, "{mode} {outcome:?}");
            assert_eq!(run.denied(&tasks).is_some(), *denies, "{mode} {outcome:?}");
            let label = outcome.label();
            assert_eq!(
                host.counters[&format!("ai_enrich_task_calls_total_task=intent_outcome={label}")],
                1
            );
            let failure_mode = ["allow", "deny", "defaults"]
                .into_iter()
                .find(|m| mode.to_string().contains(m))
                .unwrap_or("allow");
            assert!(
                host.logs.borrow().iter().any(|(l, m)| *l == LogLevel::Warn
                    && m.contains(&format!("outcome={label}"))
                    && m.contains(&format!("failure_mode={failure_mode}"))
                    && m.contains("request_id=rid-7")),
                "{:?}",
                host.logs
            );
        }
    }
}

#[test]
fn a_cached_answer_makes_no_call() {
    let mut t = intent();
    t["cache_ttl"] = json!("60s");
    let tasks = compile(json!([t]));
    let mut host = FakeHost::new(HostKind::Envoy);
    host.now_ms = 5_000;
    let mut run = tasks.run(inputs("Refund please"));
    run.calls(&tasks, &mut host);
    run.answers(&tasks, &mut host, vec![answer(r#"{"intent":"billing"}"#, 9, 2)]);
    let mut again = tasks.run(inputs("Refund please"));
    assert!(
        again.calls(&tasks, &mut host).is_empty(),
        "answered from the cache"
    );
    let done = again.done(0).unwrap();
    assert_eq!(
        (done.outcome, done.output.clone()),
        (Outcome::Cached, Some(json!({"intent": "billing"})))
    );
    assert_eq!((done.usage, done.latency_ms), (None, None));
    assert_eq!(
        host.counters["ai_enrich_task_calls_total_task=intent_outcome=cached"],
        1
    );
    // Other inputs are another question; past the TTL the same one is asked again.
    assert_eq!(tasks.run(inputs("Other")).calls(&tasks, &mut host).len(), 1);
    host.now_ms += 60_000;
    assert_eq!(
        tasks.run(inputs("Refund please")).calls(&tasks, &mut host).len(),
        1
    );
    // Failures are not cached.
    let mut run = tasks.run(inputs("Broken"));
    run.calls(&tasks, &mut host);
    run.answers(&tasks, &mut host, vec![answer("nope", 1, 1)]);
    assert_eq!(tasks.run(inputs("Broken")).calls(&tasks, &mut host).len(), 1);
}

#[test]
fn the_token_budget_refuses_calls_past_it_and_settles_to_real_usage() {
    let mut t = intent();
    t["tokens_per_minute"] = json!(400);
    t["max_tokens"] = json!(100);
    t["failure_mode"] = json!("defaults");
    t["defaults"] = json!({"intent": "other"});
    let tasks = compile(json!([t]));
    let mut host = FakeHost::new(HostKind::Envoy);
    host.now_ms = 120_000;
    // Each call reserves its estimate (prompt + max_tokens ≈ 130) and settles to the real usage.
    let mut calls_made = 0;
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        let mut run = tasks.run(inputs("Where is my parcel?"));
        let calls = run.calls(&tasks, &mut host);
        if !calls.is_empty() {
            calls_made += 1;
            run.answers(&tasks, &mut host, vec![answer(r#"{"intent":"other"}"#, 80, 20)]);
        }
        outcomes.push(run.done(0).unwrap().outcome);
    }
    assert_eq!(calls_made, 3, "{outcomes:?}");
    assert_eq!(outcomes[3..], [Outcome::Budget; 3]);
    let mut run = tasks.run(inputs("x"));
    run.calls(&tasks, &mut host);
    let done = run.done(0).unwrap();
    assert_eq!(
        done.output,
        Some(json!({"intent": "other"})),
        "the failure mode applies"
    );
    assert!(
        done.why.as_deref().unwrap().contains("300 of 400 tokens"),
        "{done:?}"
    );
    // A new minute, a new budget.
    host.now_ms += 60_000;
    assert_eq!(tasks.run(inputs("x")).calls(&tasks, &mut host).len(), 1);
}

#[test]
fn an_open_breaker_refuses_calls_until_its_cooldown() {
    let t = json!({"name": "intent", "target": "local", "prompt": "{{body/text}}",
                   "output": {"type": "object", "properties": {"intent": {"type": "string"}}}});
    let tasks = compile(json!([t]));
    let mut host = FakeHost::new(HostKind::Envoy);
    host.now_ms = 1_000;
    let mut run = tasks.run(inputs("x"));
    let calls = run.calls(&tasks, &mut host);
    assert_eq!(sent(&calls[0])["response_format"], json!({"type": "json_object"}));
    run.answers(&tasks, &mut host, vec![status(502)]);
    let mut run = tasks.run(inputs("x"));
    assert!(run.calls(&tasks, &mut host).is_empty());
    assert_eq!(run.done(0).unwrap().outcome, Outcome::BreakerOpen);
    assert_eq!(
        host.counters["ai_enrich_breaker_transitions_total_target=local_state=open"],
        1
    );
    // A client error or an invalid answer says nothing against the target.
    host.now_ms += 10_000;
    let mut run = tasks.run(inputs("x"));
    assert_eq!(run.calls(&tasks, &mut host).len(), 1, "the probe");
    run.answers(&tasks, &mut host, vec![answer("not json", 1, 1)]);
    assert_eq!(run.done(0).unwrap().outcome, Outcome::InvalidOutput);
    let mut run = tasks.run(inputs("x"));
    assert_eq!(run.calls(&tasks, &mut host).len(), 1, "closed again");
    run.answers(&tasks, &mut host, vec![status(400)]);
    assert_eq!(tasks.run(inputs("x")).calls(&tasks, &mut host).len(), 1);
}

#[test]
fn inputs_are_redacted_and_bounded_before_the_model_sees_them() {
    let mut t = intent();
    t["max_input_chars"] = json!(60);
    let mut plain = risk();
    plain["redact"] = json!(false);
    let tasks = compile(json!([t, plain]));
    let mut host = FakeHost::new(HostKind::Envoy);
    let text = format!(
        "Mail jane.doe@example.com or call +1 415 555 0100, card 4111 1111 1111 1111 {}",
        "x".repeat(200)
    );
    let mut run = tasks.run(inputs(&text));
    let calls = run.calls(&tasks, &mut host);
    let redacted = sent(&calls[0])["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !redacted.contains("jane.doe") && !redacted.contains("4111"),
        "{redacted}"
    );
    assert!(
        redacted.starts_with("Ticket: Mail <EMAIL_1> or call <PHONE_1>, card <CARD_1> x"),
        "{redacted}"
    );
    let inserted = redacted
        .strip_prefix("Ticket: ")
        .and_then(|r| r.strip_suffix(" (language en)"))
        .unwrap();
    assert_eq!(inserted.chars().count(), 60, "cut to max_input_chars");
    let raw = sent(&calls[1])["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        raw.contains("jane.doe@example.com"),
        "redact: false sends it as it is"
    );
}

/// A run needs no request: a root timer fills the inputs itself, makes the calls, and gets the
/// answers one by one, in any order.
#[test]
fn runs_outside_a_request() {
    let tasks = compile(json!([intent(), risk()]));
    let mut host = FakeHost::new(HostKind::Kong);
    host.in_request = false;
    let mut inputs = Inputs::new();
    inputs.set(Source::Body(Some("/text".into())), "batch of 40 audit records");
    inputs.set_var("local.language", "de");
    let mut run = tasks.run(inputs);
    let calls = run.calls(&tasks, &mut host);
    assert_eq!(calls.len(), 2);
    run.answer(&tasks, &mut host, 1, answer(r#"{"score":40}"#, 1, 1));
    assert!(run.waiting());
    run.answer(&tasks, &mut host, 1, answer(r#"{"score":99}"#, 1, 1));
    run.answer(&tasks, &mut host, 0, answer(r#"{"intent":"other"}"#, 1, 1));
    assert!(run.finished());
    assert_eq!(
        run.value(&tasks, &tasks.source("task.risk/score").unwrap()),
        Some(json!(40)),
        "a repeated answer is ignored"
    );
    assert!(host.logged(LogLevel::Info, "request_id=-"));
}
