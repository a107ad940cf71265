//! ai-proxy end to end: a real Envoy with the release .wasm in front of the mock providers.
//! Every test asserts on what the client got and on what reached the upstream (the mock's records).

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::{request, Response};
use e2e::mock::{words, MockServer};
use serde_json::{json, Value};

fn proxy_config(mock_port: u16) -> Value {
    let host = format!("127.0.0.1:{mock_port}");
    json!({
        "targets": [
            {"name": "openai-mini", "provider": "openai", "model": "gpt-4o-mini-2024-07-18",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"env": "OPENAI_API_KEY"}},
            {"name": "claude-haiku", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
             "endpoint": {"cluster": "mock_anthropic", "host": host}, "auth": {"env": "ANTHROPIC_API_KEY"}},
            {"name": "azure-4o", "provider": "azure", "deployment": "gpt4o-prod", "api_version": "2024-10-21",
             "endpoint": {"cluster": "mock_azure", "host": host}, "auth": {"value": "azure-inline-key"}},
            {"name": "local-llama", "provider": "openai_compatible", "model": "llama3.1:8b",
             "endpoint": {"cluster": "mock_openai", "host": host, "path": "/v1/chat/completions"}},
            {"name": "dead", "provider": "openai", "model": "gpt-dead",
             "endpoint": {"cluster": "mock_dead", "host": "127.0.0.1:1"}, "auth": {"env": "OPENAI_API_KEY"}}
        ],
        "models": {
            "gpt-4o-mini": {"targets": [{"target": "openai-mini"}]},
            "claude-3-5-haiku": {"targets": [{"target": "claude-haiku"}]},
            "gpt-4o": {"targets": [{"target": "azure-4o"}]},
            "llama": {"targets": [{"target": "local-llama"}]},
            "canary": {"targets": [{"target": "openai-mini", "weight": 90}, {"target": "claude-haiku", "weight": 10}]},
            "broken": {"targets": [{"target": "dead"}]}
        },
        "sticky": {"header": "x-consumer-id"},
        "max_body_bytes": 65536,
        "prices": {
            "gpt-4o-mini-2024-07-18": {"prompt_per_million": 150000.0, "completion_per_million": 600000.0},
            "claude-3-5-haiku-20241022": {"prompt_per_million": 1000000.0, "completion_per_million": 2000000.0}
        }
    })
}

struct Bed {
    mock: MockServer,
    envoy: Envoy,
}

impl Bed {
    fn start() -> Bed {
        Bed::with_concurrency(1)
    }

    fn with_concurrency(concurrency: u32) -> Bed {
        let mock = MockServer::start(0).unwrap();
        let envoy = Envoy::start(EnvoyOptions {
            filters: vec![Filter {
                name: "ai-proxy".into(),
                wasm: e2e::wasm_path("ai_proxy"),
                config: proxy_config(mock.port()),
            }],
            mock_port: mock.port(),
            concurrency,
            env: vec![
                ("OPENAI_API_KEY".into(), "sk-openai-test".into()),
                ("ANTHROPIC_API_KEY".into(), "sk-ant-test".into()),
            ],
            clusters: vec![],
            ..EnvoyOptions::default()
        })
        .unwrap();
        Bed { mock, envoy }
    }

    fn chat(&self, body: &Value) -> Response {
        self.chat_with(body, &[])
    }

    fn chat_with(&self, body: &Value, headers: &[(&str, &str)]) -> Response {
        let mut h = vec![("authorization", "Bearer client-gateway-key")];
        h.extend_from_slice(headers);
        self.envoy.chat(body, &h)
    }

    fn upstream(&self) -> Vec<Value> {
        let r = request(self.mock.port(), "GET", "/_mock/requests", &[], b"").unwrap();
        match r.json() {
            Value::Array(a) => a,
            other => panic!("records: {other}"),
        }
    }

    fn only_upstream(&self) -> Value {
        let mut records = self.upstream();
        assert_eq!(records.len(), 1, "{records:?}");
        records.remove(0)
    }
}

fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

fn chunks(body: &str) -> Vec<Value> {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[test]
fn openai_json_is_routed_with_the_targets_credentials() {
    let bed = Bed::start();
    let r = bed.chat(&json!({"model": "gpt-4o-mini", "messages": user("Hello there")}));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "mock reply to: Hello there"
    );
    assert_eq!(body["usage"]["prompt_tokens"], 2);
    assert_eq!(r.header("x-ai-provider"), Some("openai"));
    assert_eq!(r.header("x-ai-target"), Some("openai-mini"));
    assert_eq!(r.header("x-ai-model"), Some("gpt-4o-mini-2024-07-18"));

    let up = bed.only_upstream();
    assert_eq!(up["path"], "/v1/chat/completions");
    assert_eq!(up["headers"]["authorization"], "Bearer sk-openai-test");
    assert_eq!(up["json"]["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(up["json"]["messages"], user("Hello there"));
    assert!(up["headers"].get("x-ai-cluster").is_none() || up["headers"]["x-ai-cluster"] == "mock_openai");
}

#[test]
fn openai_stream_counts_usage_without_showing_the_usage_chunk() {
    let bed = Bed::start();
    let r = bed.chat(&json!({"model": "gpt-4o-mini", "stream": true, "messages": user("one two three")}));
    assert_eq!(r.status, 200);
    let text = r.text();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let cs = chunks(&text);
    assert_eq!(streamed_text(&cs), "mock reply to: one two three");
    assert!(
        cs.iter().all(|c| c.get("usage").is_none_or(Value::is_null)),
        "usage leaked: {text}"
    );
    assert!(cs.iter().all(|c| !c["choices"].as_array().unwrap().is_empty()));
    // The filter asked the provider for usage so the stream is counted.
    let up = bed.only_upstream();
    assert_eq!(up["json"]["stream_options"]["include_usage"], true);
    let stats = bed.envoy.stats_prometheus();
    let prompt = metric(
        &stats,
        "ai_proxy_tokens_total",
        &[("target", "openai-mini"), ("kind", "prompt")],
    );
    let completion = metric(
        &stats,
        "ai_proxy_tokens_total",
        &[("target", "openai-mini"), ("kind", "completion")],
    );
    assert_eq!(prompt, words("one two three") as f64);
    assert_eq!(completion, words("mock reply to: one two three") as f64);
}

#[test]
fn openai_stream_keeps_the_usage_chunk_the_client_asked_for() {
    let bed = Bed::start();
    let r = bed.chat(
        &json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
        "messages": user("count me")}),
    );
    let cs = chunks(&r.text());
    let last = cs.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 2);
}

#[test]
fn anthropic_json_is_translated_both_ways() {
    let bed = Bed::start();
    let r = bed.chat(&json!({
        "model": "claude-3-5-haiku",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello Claude"},
            {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "How are you"}]}
        ],
        "temperature": 0.5, "top_p": 0.9, "stop": "END", "user": "u-1"
    }));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "mock reply to: How are you"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let prompt = words("Be brief.") + words("Hello Claude") + words("Hi") + words("How are you");
    assert_eq!(body["usage"]["prompt_tokens"], prompt);
    assert_eq!(
        body["usage"]["completion_tokens"],
        words("mock reply to: How are you")
    );
    assert_eq!(r.header("x-ai-provider"), Some("anthropic"));

    let up = bed.only_upstream();
    assert_eq!(up["path"], "/v1/messages");
    assert_eq!(up["headers"]["x-api-key"], "sk-ant-test");
    assert_eq!(up["headers"]["anthropic-version"], "2023-06-01");
    assert!(
        up["headers"].get("authorization").is_none(),
        "client credentials leaked upstream"
    );
    let sent = &up["json"];
    assert_eq!(sent["model"], "claude-3-5-haiku-20241022");
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["top_p"], 0.9);
    assert_eq!(sent["messages"].as_array().unwrap().len(), 3);
    assert_eq!(sent["messages"][0]["role"], "user");
}

#[test]
fn anthropic_stream_becomes_openai_chunks() {
    let bed = Bed::start();
    let r = bed.chat(
        &json!({"model": "claude-3-5-haiku", "stream": true, "stream_options": {"include_usage": true},
        "max_tokens": 50, "messages": user("stream this please")}),
    );
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .contains("text/event-stream"));
    let text = r.text();
    assert_eq!(
        sse_data(&text).last().map(String::as_str),
        Some("[DONE]"),
        "{text}"
    );
    let cs = chunks(&text);
    assert!(cs.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&cs), "mock reply to: stream this please");
    let finish: Vec<&Value> = cs
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
    let usage = &cs.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], words("stream this please"));
    assert_eq!(
        usage["completion_tokens"],
        words("mock reply to: stream this please")
    );
    assert_eq!(bed.only_upstream()["json"]["max_tokens"], 50);
}

#[test]
fn azure_gets_its_path_api_version_and_key() {
    let bed = Bed::start();
    let r = bed.chat(&json!({"model": "gpt-4o", "messages": user("hi azure")}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "mock reply to: hi azure"
    );
    assert_eq!(r.header("x-ai-provider"), Some("azure"));
    let up = bed.only_upstream();
    assert_eq!(
        up["path"],
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(up["headers"]["api-key"], "azure-inline-key");
    assert!(up["headers"].get("authorization").is_none());
}

#[test]
fn azure_streams_like_openai() {
    let bed = Bed::start();
    let r = bed.chat(&json!({"model": "gpt-4o", "stream": true, "messages": user("stream azure")}));
    assert_eq!(r.status, 200);
    let text = r.text();
    assert_eq!(
        sse_data(&text).last().map(String::as_str),
        Some("[DONE]"),
        "{text}"
    );
    assert_eq!(streamed_text(&chunks(&text)), "mock reply to: stream azure");
    let up = bed.only_upstream();
    assert_eq!(up["json"]["stream_options"]["include_usage"], true);
    assert_eq!(up["headers"]["api-key"], "azure-inline-key");
}

#[test]
fn openai_compatible_target_without_key_passes_client_credentials() {
    let bed = Bed::start();
    let r = bed.chat(&json!({"model": "llama", "messages": user("hello llama")}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-provider"), Some("openai_compatible"));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "mock reply to: hello llama"
    );
    let up = bed.only_upstream();
    assert_eq!(up["json"]["model"], "llama3.1:8b");
    assert_eq!(up["headers"]["authorization"], "Bearer client-gateway-key");
    let r = bed.chat(&json!({"model": "llama", "stream": true, "messages": user("s")}));
    assert_eq!(streamed_text(&chunks(&r.text())), "mock reply to: s");
}

#[test]
fn bad_requests_get_openai_errors_and_never_reach_the_provider() {
    let bed = Bed::start();
    let unknown = bed.chat(&json!({"model": "gpt-5-ultra", "messages": user("x")}));
    assert_eq!(unknown.status, 400);
    let err = unknown.json();
    assert_eq!(err["error"]["code"], "model_not_found");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("gpt-5-ultra") && msg.contains("gpt-4o-mini") && msg.contains("claude-3-5-haiku"),
        "{msg}"
    );

    let h = [("content-type", "application/json")];
    let malformed = request(
        bed.envoy.port,
        "POST",
        "/v1/chat/completions",
        &h,
        b"{\"model\": \"gpt-4o-mini\",",
    )
    .unwrap();
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["code"], "invalid_json");
    assert_eq!(malformed.json()["error"]["type"], "invalid_request_error");

    let no_model = bed.chat(&json!({"messages": user("x")}));
    assert_eq!(no_model.status, 400);
    assert_eq!(no_model.json()["error"]["code"], "missing_model");

    let big = "word ".repeat(20_000);
    let too_big = bed.chat(&json!({"model": "gpt-4o-mini", "messages": user(&big)}));
    assert_eq!(too_big.status, 413, "{}", too_big.text());
    assert_eq!(too_big.json()["error"]["code"], "request_too_large");

    assert!(bed.upstream().is_empty(), "{:?}", bed.upstream());
    let stats = bed.envoy.stats_prometheus();
    assert_eq!(
        metric(&stats, "ai_proxy_rejected_total", &[("code", "model-not-found")]),
        1.0
    );
    assert_eq!(
        metric(
            &stats,
            "ai_proxy_rejected_total",
            &[("code", "request-too-large")]
        ),
        1.0
    );
    // The VM is still healthy after all that.
    assert_eq!(
        bed.chat(&json!({"model": "gpt-4o-mini", "messages": user("still ok")}))
            .status,
        200
    );
}

#[test]
fn upstream_failures_become_openai_errors() {
    let bed = Bed::start();
    let fault = json!({"status": 500}).to_string();
    let r = bed.chat_with(
        &json!({"model": "claude-3-5-haiku", "messages": user("x")}),
        &[("x-mock-fault", &fault)],
    );
    assert_eq!(r.status, 500);
    assert!(r.json()["error"]["message"].is_string(), "{}", r.text());

    let malformed = json!({"malformed": true}).to_string();
    let r = bed.chat_with(
        &json!({"model": "claude-3-5-haiku", "messages": user("x")}),
        &[("x-mock-fault", &malformed)],
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "bad_upstream_response");

    // No one listens behind this target: Envoy's own plain-text reply is turned into an OpenAI error.
    let r = bed.chat(&json!({"model": "broken", "messages": user("x")}));
    assert!(r.status >= 500, "{}", r.status);
    assert_eq!(r.json()["error"]["type"], "upstream_error", "{}", r.text());
}

#[test]
fn weighted_split_and_sticky_consumers() {
    let bed = Bed::start();
    let n = 300;
    let mut claude = 0;
    for _ in 0..n {
        let r = bed.chat(&json!({"model": "canary", "messages": user("split")}));
        assert_eq!(r.status, 200);
        if r.header("x-ai-target") == Some("claude-haiku") {
            claude += 1;
        }
    }
    // 10% of 300 is 30; the binomial standard deviation is about 5.2, so 12..=48 is over 3 sigma.
    assert!((12..=48).contains(&claude), "claude got {claude} of {n}");
    let ups = bed.upstream();
    assert_eq!(ups.iter().filter(|u| u["path"] == "/v1/messages").count(), claude);

    let mut seen = std::collections::HashSet::new();
    for consumer in 0..40 {
        let id = format!("consumer-{consumer}");
        let first = bed.chat_with(
            &json!({"model": "canary", "messages": user("s")}),
            &[("x-consumer-id", &id)],
        );
        let target = first.header("x-ai-target").unwrap().to_string();
        for _ in 0..4 {
            let again = bed.chat_with(
                &json!({"model": "canary", "messages": user("s")}),
                &[("x-consumer-id", &id)],
            );
            assert_eq!(again.header("x-ai-target"), Some(target.as_str()), "{id} moved");
        }
        seen.insert(target);
    }
    assert_eq!(seen.len(), 2, "40 consumers all landed on one target: {seen:?}");
}

#[test]
fn token_and_cost_metrics_reach_prometheus() {
    let bed = Bed::with_concurrency(2);
    for _ in 0..3 {
        let r = bed.chat_with(
            &json!({"model": "gpt-4o-mini", "messages": user("metrics please")}),
            &[("x-mock-usage", "100,40")],
        );
        assert_eq!(r.status, 200);
    }
    let r = bed.chat_with(
        &json!({"model": "claude-3-5-haiku", "stream": true, "messages": user("metrics")}),
        &[("x-mock-usage", "7,5")],
    );
    assert_eq!(r.status, 200);
    let stats = bed.envoy.stats_prometheus();
    let l = [
        ("provider", "openai"),
        ("target", "openai-mini"),
        ("model", "gpt-4o-mini-2024-07-18"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut v = l.to_vec();
        v.push(extra);
        v
    };
    assert_eq!(
        metric(&stats, "ai_proxy_requests_total", &with(("status", "200"))),
        3.0
    );
    assert_eq!(
        metric(&stats, "ai_proxy_tokens_total", &with(("kind", "prompt"))),
        300.0
    );
    assert_eq!(
        metric(&stats, "ai_proxy_tokens_total", &with(("kind", "completion"))),
        120.0
    );
    // 150000 USD/M prompt and 600000 USD/M completion: 100*0.15 + 40*0.6 = 39 USD per request.
    assert_eq!(
        metric(&stats, "ai_proxy_cost_microusd_total", &l),
        3.0 * 39_000_000.0
    );
    assert_eq!(
        metric(
            &stats,
            "ai_proxy_tokens_total",
            &[("target", "claude-haiku"), ("kind", "prompt")]
        ),
        7.0
    );
    assert_eq!(
        metric(
            &stats,
            "ai_proxy_tokens_total",
            &[("target", "claude-haiku"), ("kind", "completion")]
        ),
        5.0
    );
    assert!(
        stats.contains("ai_proxy_latency_ms_bucket{"),
        "no latency histogram"
    );
    assert!(
        bed.envoy
            .logs()
            .contains("ai-proxy: provider=openai target=openai-mini"),
        "no log line"
    );
}

#[test]
fn models_endpoint_and_foreign_paths() {
    let bed = Bed::start();
    let r = request(bed.envoy.port, "GET", "/v1/models", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.contains(&"gpt-4o-mini".to_string()) && ids.contains(&"canary".to_string()),
        "{ids:?}"
    );
    // A client may not pick the upstream cluster itself.
    let r = request(
        bed.envoy.port,
        "POST",
        "/v1/other",
        &[("x-ai-cluster", "mock_openai")],
        b"{}",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert!(bed.upstream().is_empty());
}

/// Reads a Prometheus sample whose labels include all of `labels`, summing over the rest.
fn metric(stats: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    let mut found = false;
    for line in stats.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((lbls, value)) = rest.split_once("} ") else {
            continue;
        };
        if labels.iter().all(|(k, v)| lbls.contains(&format!("{k}=\"{v}\""))) {
            total += value.trim().parse::<f64>().unwrap();
            found = true;
        }
    }
    assert!(
        found,
        "no sample {name}{labels:?} in:\n{}",
        stats
            .lines()
            .filter(|l| l.contains("ai_proxy"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    total
}
