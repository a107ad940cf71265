//! ai-proxy resilience end to end: retries, fallback across providers, timeouts, the circuit breaker and
//! cut streams, in real Envoy with the mock's fault injection. Faults are aimed at one provider by path
//! (`/v1/chat/completions` is the OpenAI mock, `/v1/messages` the Anthropic one).

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::{request, Response};
use e2e::mock::MockServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const OPENAI: &str = "/v1/chat/completions";
const ANTHROPIC: &str = "/v1/messages";

fn config(mock_port: u16) -> Value {
    let host = format!("127.0.0.1:{mock_port}");
    json!({
        "targets": [
            {"name": "primary", "provider": "openai", "model": "gpt-4o-mini",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-openai"}},
            {"name": "backup", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
             "endpoint": {"cluster": "mock_anthropic", "host": host}, "auth": {"value": "sk-ant"}},
            {"name": "slow", "provider": "openai", "model": "gpt-4o-mini",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-openai"},
             "resilience": {"timeout_ms": 1000, "retries": 0}},
            {"name": "fragile-a", "provider": "openai", "model": "gpt-4o-mini",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-openai"},
             "resilience": {"breaker": {"consecutive_failures": 1, "cooldown_ms": 60000}}},
            {"name": "fragile-b", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
             "endpoint": {"cluster": "mock_anthropic", "host": host}, "auth": {"value": "sk-ant"},
             "resilience": {"breaker": {"consecutive_failures": 1, "cooldown_ms": 60000}}}
        ],
        "models": {
            "resilient": {"targets": [{"target": "primary"}], "fallback": [{"target": "backup"}]},
            "slow": {"targets": [{"target": "slow"}], "fallback": [{"target": "backup"}]},
            "fragile": {"targets": [{"target": "fragile-a"}], "fallback": [{"target": "fragile-b"}]}
        },
        "resilience": {"timeout_ms": 5000, "retries": 1,
                       "breaker": {"consecutive_failures": 3, "cooldown_ms": 1500}}
    })
}

struct Bed {
    mock: MockServer,
    envoy: Envoy,
}

impl Bed {
    fn start() -> Bed {
        let mock = MockServer::start(0).unwrap();
        let envoy =
            Envoy::start(EnvoyOptions::new(mock.port()).filter(Filter::ai_proxy(config(mock.port()))))
                .unwrap();
        Bed { mock, envoy }
    }

    fn fault(&self, path: &str, times: u32, fault: Value) {
        self.mock
            .add_fault(&json!({"path_prefix": path, "times": times, "fault": fault}))
            .unwrap();
    }

    fn chat(&self, body: Value) -> Response {
        self.envoy.chat(&body, &[])
    }

    fn calls(&self, path: &str) -> usize {
        self.mock
            .requests()
            .iter()
            .filter(|r| r["path"].as_str().unwrap_or("").starts_with(path))
            .count()
    }
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "are you there"}]})
}

#[test]
fn primary_500_falls_back_to_another_provider() {
    let bed = Bed::start();
    bed.fault(OPENAI, 0, json!({"status": 500}));
    let r = bed.chat(ask("resilient"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-target"), Some("backup"));
    assert_eq!(r.header("x-ai-provider"), Some("anthropic"));
    assert_eq!(r.header("x-ai-fallback-from"), Some("primary"));
    assert_eq!(
        r.header("x-ai-attempts"),
        Some("3"),
        "two tries on the primary (retries: 1), then the backup"
    );
    let body = r.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "mock reply to: are you there"
    );
    assert_eq!(bed.calls(OPENAI), 2);
    assert_eq!(bed.calls(ANTHROPIC), 1);
    // The request was re-translated for the backup's provider.
    let sent = bed
        .mock
        .requests()
        .into_iter()
        .find(|r| r["path"] == ANTHROPIC)
        .unwrap();
    assert_eq!(sent["headers"]["x-api-key"], "sk-ant");
    assert_eq!(sent["json"]["model"], "claude-3-5-haiku-20241022");
    assert_eq!(sent["json"]["max_tokens"], 4096);
    let stats = bed.envoy.stats_prometheus();
    assert!(
        stats.contains(r#"ai_proxy_fallbacks_total{from="primary",to="backup"} 1"#),
        "{stats}"
    );
    assert!(stats.contains(r#"ai_proxy_attempts_total{target="primary",outcome="status-500"} 2"#));
}

#[test]
fn slow_primary_times_out_and_falls_back_in_time() {
    let bed = Bed::start();
    bed.fault(OPENAI, 0, json!({"delay_ms": 8000}));
    let started = Instant::now();
    let r = bed.chat(ask("slow"));
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-target"), Some("backup"));
    assert_eq!(r.header("x-ai-attempts"), Some("2"));
    // The slow target's timeout is 1 s and it has no retries: the answer comes long before its 8 s delay.
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(6000),
        "{took:?}"
    );
    assert!(bed
        .envoy
        .stats_prometheus()
        .contains(r#"ai_proxy_attempts_total{target="slow",outcome="timeout"} 1"#));
}

#[test]
fn a_429_is_retried_on_the_same_target() {
    let bed = Bed::start();
    bed.fault(OPENAI, 1, json!({"status": 429}));
    let r = bed.chat(ask("resilient"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-target"), Some("primary"));
    assert_eq!(r.header("x-ai-attempts"), Some("2"));
    assert!(r.header("x-ai-fallback-from").is_none());
    assert_eq!(bed.calls(OPENAI), 2);
    assert_eq!(bed.calls(ANTHROPIC), 0);
}

#[test]
fn breaker_opens_skips_the_primary_and_recovers_through_half_open() {
    let bed = Bed::start();
    bed.fault(OPENAI, 0, json!({"status": 500}));
    // Request 1: two failures on the primary; request 2: the third opens the breaker.
    for _ in 0..2 {
        assert_eq!(bed.chat(ask("resilient")).header("x-ai-target"), Some("backup"));
    }
    assert_eq!(bed.calls(OPENAI), 3);
    // While open, the primary receives nothing.
    for _ in 0..4 {
        let r = bed.chat(ask("resilient"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ai-target"), Some("backup"));
        assert_eq!(r.header("x-ai-attempts"), Some("1"));
    }
    assert_eq!(bed.calls(OPENAI), 3, "the open breaker let calls through");
    // The primary heals; after the cooldown one probe goes through, succeeds, and closes the breaker.
    request(bed.mock.port(), "DELETE", "/_mock/faults", &[], b"").unwrap();
    std::thread::sleep(Duration::from_millis(1700));
    let probe = bed.chat(ask("resilient"));
    assert_eq!(probe.header("x-ai-target"), Some("primary"), "{}", probe.text());
    assert_eq!(bed.calls(OPENAI), 4);
    assert_eq!(bed.chat(ask("resilient")).header("x-ai-target"), Some("primary"));
    let stats = bed.envoy.stats_prometheus();
    for state in ["open", "half-open", "closed"] {
        let line = format!(r#"ai_proxy_breaker_transitions_total{{target="primary",state="{state}"}} 1"#);
        assert!(stats.contains(&line), "missing {line}");
    }
}

#[test]
fn all_targets_down_gives_503_with_retry_after() {
    let bed = Bed::start();
    bed.fault(OPENAI, 0, json!({"status": 503}));
    bed.fault(ANTHROPIC, 0, json!({"status": 500}));
    let first = bed.chat(ask("fragile"));
    assert!(first.status >= 500, "{}", first.text());
    let before = bed.mock.requests().len();
    let r = bed.chat(ask("fragile"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "all_targets_unavailable");
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(bed.mock.requests().len(), before, "open targets were called");
}

#[test]
fn a_stream_cut_midway_ends_cleanly_for_the_client() {
    let bed = Bed::start();
    bed.fault(OPENAI, 0, json!({"cut_after": 2}));
    let mut body = ask("resilient");
    body["stream"] = json!(true);
    let r = bed.chat(body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .contains("text/event-stream"));
    assert_eq!(r.header("x-ai-target"), Some("backup"));
    let text = r.text();
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let content: String = data
        .iter()
        .filter(|d| **d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(content, "mock reply to: are you there");
}

#[test]
fn final_client_errors_are_not_retried() {
    let bed = Bed::start();
    bed.fault(OPENAI, 1, json!({"status": 400}));
    let r = bed.chat(ask("resilient"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(bed.calls(OPENAI), 1);
    assert_eq!(bed.calls(ANTHROPIC), 0);
}

#[test]
fn a_client_error_after_a_skipped_breaker_is_returned_as_is() {
    let bed = Bed::start();
    // The first choice fails once: its breaker (one failure) opens and the fallback answers.
    bed.fault(OPENAI, 1, json!({"status": 500}));
    assert_eq!(bed.chat(ask("fragile")).header("x-ai-target"), Some("fragile-b"));
    // Now the first choice is skipped, and the fallback refuses the request as a client error: that
    // error is the answer, not 503 all_targets_unavailable (one target was tried and answered).
    bed.fault(ANTHROPIC, 1, json!({"status": 400}));
    let before = bed.calls(OPENAI);
    let r = bed.chat(ask("fragile"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_ne!(r.json()["error"]["code"], "all_targets_unavailable");
    assert!(r.header("retry-after").is_none());
    assert_eq!(
        bed.calls(OPENAI),
        before,
        "the open breaker kept the first choice out"
    );
}
