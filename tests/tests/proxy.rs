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
             "endpoint": {"cluster": "mock_dead", "host": "127.0.0.1:1"}, "auth": {"env": "OPENAI_API_KEY"}},
            {"name": "openai-embed", "provider": "openai", "model": "text-embedding-3-small",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"env": "OPENAI_API_KEY"}},
            {"name": "azure-embed", "provider": "azure", "deployment": "embed-prod",
             "endpoint": {"cluster": "mock_azure", "host": host}, "auth": {"value": "azure-inline-key"}},
            {"name": "dead-embed", "provider": "openai", "model": "text-embedding-dead",
             "endpoint": {"cluster": "mock_dead", "host": "127.0.0.1:1"}, "auth": {"env": "OPENAI_API_KEY"},
             "resilience": {"timeout_ms": 2000}}
        ],
        "models": {
            "gpt-4o-mini": {"targets": [{"target": "openai-mini"}]},
            "claude-3-5-haiku": {"targets": [{"target": "claude-haiku"}]},
            "gpt-4o": {"targets": [{"target": "azure-4o"}]},
            "llama": {"targets": [{"target": "local-llama"}]},
            "canary": {"targets": [{"target": "openai-mini", "weight": 90}, {"target": "claude-haiku", "weight": 10}]},
            "broken": {"targets": [{"target": "dead"}]},
            "claude-lax": {"targets": [{"target": "claude-haiku"}], "drop_unsupported_params": true},
            "text-embedding-3-small": {"targets": [{"target": "openai-embed"}]},
            "embed-azure": {"targets": [{"target": "azure-embed"}]},
            "embed-safe": {"targets": [{"target": "dead-embed"}], "fallback": [{"target": "openai-embed"}]}
        },
        "sticky": {"header": "x-consumer-id"},
        "max_body_bytes": 65536,
        "prices": {
            "gpt-4o-mini-2024-07-18": {"prompt_per_million": 150000.0, "completion_per_million": 600000.0},
            "claude-3-5-haiku-20241022": {"prompt_per_million": 1000000.0, "completion_per_million": 2000000.0,
                                          "cache_read_per_million": 100000.0, "cache_write_per_million": 1250000.0},
            "text-embedding-3-small": {"prompt_per_million": 20000.0, "completion_per_million": 0.0}
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

    /// A request to another path of the gateway (`/v1/messages`, `/v1/embeddings`).
    fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Response {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        request(self.envoy.port, "POST", path, &h, body.to_string().as_bytes()).unwrap()
    }

    /// Anthropic's door, with the auth the Anthropic SDK sends.
    fn messages(&self, body: &Value, headers: &[(&str, &str)]) -> Response {
        let mut h = vec![
            ("authorization", "Bearer client-gateway-key"),
            ("anthropic-version", "2023-06-01"),
        ];
        h.extend_from_slice(headers);
        self.post("/v1/messages", body, &h)
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

const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const TOOL_PROMPT: &str = "What's the weather in Paris in Fahrenheit for 3 days and the time in Tokyo?";

fn weather_schema() -> Value {
    json!({"type": "object", "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"}
    }, "required": ["location", "unit"]})
}

fn openai_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": weather_schema()}},
        {"type": "function", "function": {"name": "get_time", "parameters":
            {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
    ])
}

fn anthropic_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather now", "input_schema": weather_schema()},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}
    ])
}

/// (name, parsed arguments) of the tool calls of an OpenAI answer.
fn calls_of(message: &Value) -> Vec<(String, Value)> {
    message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["function"]["name"].as_str().unwrap().to_string(),
                serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Anthropic events (`event:` name and data) of a streamed answer.
fn anthropic_events(body: &str) -> Vec<Value> {
    let mut names = body.lines().filter_map(|l| l.strip_prefix("event: "));
    sse_data(body)
        .iter()
        .map(|d| {
            let v: Value = serde_json::from_str(d).unwrap();
            assert_eq!(names.next(), v["type"].as_str(), "event names follow the data");
            v
        })
        .collect()
}

#[test]
fn openai_door_tools_to_anthropic_with_a_tool_result_round_trip() {
    let bed = Bed::start();
    let ask = json!({"model": "claude-3-5-haiku", "tools": openai_tools(),
                     "messages": [{"role": "user", "content": TOOL_PROMPT}]});
    let r = bed.chat(&ask);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let message = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], Value::Null);
    assert_eq!(
        calls_of(message),
        vec![
            (
                "get_weather".into(),
                json!({"location": "Paris", "unit": "fahrenheit"})
            ),
            ("get_time".into(), json!({"timezone": "Tokyo"})),
        ]
    );
    let ids: Vec<String> = message["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("toolu_")), "{ids:?}");
    let up = bed.only_upstream();
    assert_eq!(up["json"]["tools"][0]["input_schema"], weather_schema());
    assert_eq!(up["json"]["tools"][1]["name"], "get_time");

    // The results go back as `tool` messages; Anthropic gets them as one user turn.
    bed.mock.clear();
    let mut back = ask.clone();
    let turns = back["messages"].as_array_mut().unwrap();
    turns.push(message.clone());
    turns.push(json!({"role": "tool", "tool_call_id": ids[0], "content": "sunny, 75F"}));
    turns.push(
        json!({"role": "tool", "tool_call_id": ids[1], "content": [{"type": "text", "text": "14:05"}]}),
    );
    let r = bed.chat(&back);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        e2e::mock::reply_to_tool(&["sunny, 75F", "14:05"])
    );
    let sent = &bed.only_upstream()["json"]["messages"];
    assert_eq!(sent.as_array().unwrap().len(), 3, "{sent}");
    assert_eq!(sent[1]["content"][0]["type"], "tool_use");
    assert_eq!(sent[1]["content"][0]["id"], ids[0].as_str());
    assert_eq!(sent[1]["content"][1]["input"], json!({"timezone": "Tokyo"}));
    assert_eq!(
        sent[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": ids[0], "content": "sunny, 75F"},
            {"type": "tool_result", "tool_use_id": ids[1], "content": "14:05"}]})
    );

    // tool_choice and parallel_tool_calls reach Anthropic as its own fields.
    bed.mock.clear();
    let mut one = ask.clone();
    one["parallel_tool_calls"] = json!(false);
    one["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    let r = bed.chat(&one);
    assert_eq!(calls_of(&r.json()["choices"][0]["message"]).len(), 1);
    assert_eq!(
        bed.only_upstream()["json"]["tool_choice"],
        json!({"type": "tool", "name": "get_time", "disable_parallel_tool_use": true})
    );
}

#[test]
fn openai_door_tool_stream_from_anthropic_and_openai() {
    let bed = Bed::start();
    for model in ["claude-3-5-haiku", "gpt-4o-mini"] {
        let r = bed.chat(&json!({"model": model, "stream": true, "tools": openai_tools(),
                                 "messages": [{"role": "user", "content": TOOL_PROMPT}]}));
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let text = r.text();
        let cs = chunks(&text);
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for c in &cs {
            for d in c["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = d["index"].as_u64().unwrap() as usize;
                if let Some(id) = d["id"].as_str() {
                    assert_eq!(
                        i,
                        calls.len(),
                        "{model}: a call opens with its id at the next index"
                    );
                    calls.push((
                        id.into(),
                        d["function"]["name"].as_str().unwrap().into(),
                        String::new(),
                    ));
                }
                calls[i]
                    .2
                    .push_str(d["function"]["arguments"].as_str().unwrap_or_default());
            }
        }
        let parsed: Vec<(String, Value)> = calls
            .iter()
            .map(|(_, n, a)| (n.clone(), serde_json::from_str(a).unwrap()))
            .collect();
        assert_eq!(
            parsed,
            vec![
                (
                    "get_weather".into(),
                    json!({"location": "Paris", "unit": "fahrenheit"})
                ),
                ("get_time".into(), json!({"timezone": "Tokyo"})),
            ],
            "{model}"
        );
        let finish: Vec<&Value> = cs
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("tool_calls")], "{model}");
        assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    }
}

#[test]
fn openai_door_images_both_kinds_to_anthropic() {
    let bed = Bed::start();
    let data_url = format!("data:image/png;base64,{PNG}");
    let r = bed.chat(
        &json!({"model": "claude-3-5-haiku", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "mock reply to: Compare these I see 2 images."
    );
    assert_eq!(
        bed.only_upstream()["json"]["messages"][0]["content"],
        json!([
            {"type": "text", "text": "Compare these"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
        ])
    );
    // `detail` has no Anthropic equivalent: refused by name, unless the model drops it.
    let high = json!({"model": "claude-3-5-haiku", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}}]}]});
    let r = bed.chat(&high);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "unsupported_parameter");
}

#[test]
fn openai_door_structured_output_from_anthropic() {
    let bed = Bed::start();
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "visitors": {"type": "integer"}},
                        "required": ["city", "visitors"], "additionalProperties": false});
    for stream in [false, true] {
        bed.mock.clear();
        let r = bed.chat(&json!({"model": "claude-3-5-haiku", "stream": stream,
            "messages": [{"role": "user", "content": "Paris gets many visitors"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": true}}}));
        assert_eq!(r.status, 200, "{}", r.text());
        let (content, finish) = if stream {
            let cs = chunks(&r.text());
            let f = cs
                .iter()
                .rev()
                .find_map(|c| c["choices"][0]["finish_reason"].as_str())
                .unwrap()
                .to_string();
            (streamed_text(&cs), f)
        } else {
            let v = r.json();
            assert!(v["choices"][0]["message"].get("tool_calls").is_none());
            (
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                v["choices"][0]["finish_reason"].as_str().unwrap().to_string(),
            )
        };
        let answer: Value = serde_json::from_str(&content).unwrap();
        assert!(
            answer["city"].is_string() && answer["visitors"].is_u64(),
            "{answer}"
        );
        assert_eq!(finish, "stop");
        let sent = &bed.only_upstream()["json"];
        assert_eq!(
            sent["tools"],
            json!([{"name": "place", "description": "Answer with JSON that follows this schema.",
                                          "input_schema": schema, "strict": true}])
        );
        assert_eq!(sent["tool_choice"], json!({"type": "tool", "name": "place"}));
    }
}

#[test]
fn unsupported_parameters_are_refused_by_name_or_dropped_and_named() {
    let bed = Bed::start();
    let body = |model: &str| {
        json!({"model": model, "seed": 7, "logprobs": true,
                                    "messages": [{"role": "user", "content": "hi"}]})
    };
    let r = bed.chat(&body("claude-3-5-haiku"));
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["error"]["code"], "unsupported_parameter");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("`logprobs`"),
        "{e}"
    );
    assert!(bed.upstream().is_empty());

    let r = bed.chat(&body("claude-lax"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-dropped-params"), Some("logprobs, seed"));
    let sent = &bed.only_upstream()["json"];
    assert!(
        sent.get("seed").is_none() && sent.get("logprobs").is_none(),
        "{sent}"
    );
    // OpenAI targets take them as they are.
    bed.mock.clear();
    let r = bed.chat(&body("gpt-4o-mini"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ai-dropped-params"), None);
    assert_eq!(bed.only_upstream()["json"]["seed"], 7);
    let stats = bed.envoy.stats_prometheus();
    assert_eq!(
        metric(
            &stats,
            "ai_proxy_dropped_params_total",
            &[("target", "claude-haiku"), ("param", "seed")]
        ),
        1.0
    );
}

#[test]
fn reasoning_effort_and_thinking_blocks_round_trip() {
    let bed = Bed::start();
    let ask = json!({"model": "claude-3-5-haiku", "reasoning_effort": "medium",
                     "messages": [{"role": "user", "content": "Why is the sky blue?"}]});
    let r = bed.chat(&ask);
    assert_eq!(r.status, 200, "{}", r.text());
    let message = r.json()["choices"][0]["message"].clone();
    assert_eq!(
        message["reasoning_content"],
        format!("{}Why is the sky blue?", e2e::mock::THINKING_PREFIX)
    );
    let block = &message["thinking_blocks"][0];
    assert_eq!(block["type"], "thinking");
    assert!(block["signature"].as_str().unwrap().starts_with("sig_"));
    assert_eq!(message["content"], "mock reply to: Why is the sky blue?");
    assert_eq!(
        bed.only_upstream()["json"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );

    // Sent back with its signature, the mock (like Anthropic) accepts it.
    bed.mock.clear();
    let mut back = ask.clone();
    let turns = back["messages"].as_array_mut().unwrap();
    turns.push(message.clone());
    turns.push(json!({"role": "user", "content": "And at sunset?"}));
    let r = bed.chat(&back);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(bed.only_upstream()["json"]["messages"][1]["content"][0], *block);

    // Streamed: reasoning_content deltas, then the signature.
    let mut stream = ask.clone();
    stream["stream"] = json!(true);
    let cs = chunks(&bed.chat(&stream).text());
    let reasoning: String = cs
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(
        reasoning,
        format!("{}Why is the sky blue?", e2e::mock::THINKING_PREFIX)
    );
    assert!(cs
        .iter()
        .any(|c| c["choices"][0]["delta"]["thinking_blocks"][0]["signature"] == block["signature"]));
}

#[test]
fn cached_and_reasoning_tokens_are_counted_once() {
    let bed = Bed::start();
    // 100 prompt tokens: 60 read from the cache, 20 written to it, 20 neither.
    let r = bed.chat_with(
        &json!({"model": "claude-3-5-haiku", "messages": user("cache me")}),
        &[("x-mock-usage", "100,10"), ("x-mock-cached", "60,20")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["usage"],
        json!({"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110,
               "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 20}})
    );
    let r = bed.chat_with(
        &json!({"model": "gpt-4o-mini", "stream": true, "messages": user("reason")}),
        &[
            ("x-mock-usage", "50,30"),
            ("x-mock-cached", "40"),
            ("x-mock-reasoning", "25"),
        ],
    );
    assert_eq!(r.status, 200);
    let stats = bed.envoy.stats_prometheus();
    let tokens = |target: &str, kind: &str| {
        metric(
            &stats,
            "ai_proxy_tokens_total",
            &[("target", target), ("kind", kind)],
        )
    };
    assert_eq!(tokens("claude-haiku", "prompt"), 100.0);
    assert_eq!(tokens("claude-haiku", "cached"), 60.0);
    assert_eq!(tokens("claude-haiku", "cache-write"), 20.0);
    assert_eq!(tokens("openai-mini", "prompt"), 50.0);
    assert_eq!(tokens("openai-mini", "cached"), 40.0);
    assert_eq!(tokens("openai-mini", "reasoning"), 25.0);
    assert_eq!(tokens("openai-mini", "completion"), 30.0);
    // Each prompt token priced once by its kind: 20 × 1 + 60 × 0.1 + 20 × 1.25 USD, + 10 × 2 USD.
    assert_eq!(
        metric(
            &stats,
            "ai_proxy_cost_microusd_total",
            &[("target", "claude-haiku")]
        ),
        (20.0 + 6.0 + 25.0 + 20.0) * 1e6
    );
}

#[test]
fn embeddings_through_aliases_and_fallback() {
    let bed = Bed::start();
    let body = json!({"model": "text-embedding-3-small", "input": ["one two", "three"], "dimensions": 4});
    let r = bed.post(
        "/v1/embeddings",
        &body,
        &[("authorization", "Bearer client-gateway-key")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(r.header("x-ai-target"), Some("openai-embed"));
    let up = bed.only_upstream();
    assert_eq!(up["path"], "/v1/embeddings");
    assert_eq!(up["headers"]["authorization"], "Bearer sk-openai-test");
    assert_eq!(up["json"]["model"], "text-embedding-3-small");

    bed.mock.clear();
    let r = bed.post(
        "/v1/embeddings",
        &json!({"model": "embed-azure", "input": "x y z"}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let up = bed.only_upstream();
    assert_eq!(
        up["path"],
        "/openai/deployments/embed-prod/embeddings?api-version=2024-10-21"
    );
    assert_eq!(up["headers"]["api-key"], "azure-inline-key");

    // Callout mode: the dead first choice fails, the fallback answers.
    let r = bed.post(
        "/v1/embeddings",
        &json!({"model": "embed-safe", "input": "fall back"}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-target"), Some("openai-embed"));
    assert_eq!(r.header("x-ai-fallback-from"), Some("dead-embed"));

    // A model whose target serves no embeddings.
    let r = bed.post(
        "/v1/embeddings",
        &json!({"model": "claude-3-5-haiku", "input": "x"}),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "unsupported_feature");
    let r = bed.post("/v1/embeddings", &json!({"model": "text-embedding-3-small"}), &[]);
    assert_eq!(r.json()["error"]["code"], "invalid_input");

    let stats = bed.envoy.stats_prometheus();
    // Two words and one word, as the mock counts them; then three words and two.
    assert_eq!(
        metric(
            &stats,
            "ai_proxy_tokens_total",
            &[("target", "openai-embed"), ("kind", "prompt")]
        ),
        5.0
    );
    assert_eq!(
        metric(
            &stats,
            "ai_proxy_cost_microusd_total",
            &[("target", "openai-embed")]
        ),
        5.0 * 20_000.0
    );
}

#[test]
fn anthropic_door_to_an_anthropic_target_passes_as_is() {
    let bed = Bed::start();
    let body = json!({"model": "claude-3-5-haiku", "max_tokens": 64, "system": [{"type": "text", "text": "Be brief.",
                      "cache_control": {"type": "ephemeral"}}], "container": "kept",
                      "messages": [{"role": "user", "content": "Hello there"}]});
    let r = bed.messages(&body, &[("anthropic-beta", "interleaved-thinking-2025-05-14")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "mock reply to: Hello there");
    assert_eq!(r.header("x-ai-provider"), Some("anthropic"));
    let up = bed.only_upstream();
    assert_eq!(up["path"], "/v1/messages");
    let mut want = body.clone();
    want["model"] = json!("claude-3-5-haiku-20241022");
    assert_eq!(up["json"], want, "the body as it is, with the target's model");
    assert_eq!(up["headers"]["x-api-key"], "sk-ant-test");
    assert_eq!(up["headers"]["anthropic-beta"], "interleaved-thinking-2025-05-14");
    assert!(
        up["headers"].get("authorization").is_none(),
        "the client's key stays behind"
    );

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let r = bed.messages(&stream, &[]);
    let events = anthropic_events(&r.text());
    assert_eq!(events.last().unwrap()["type"], "message_stop");
    let said: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(said, "mock reply to: Hello there");
}

#[test]
fn anthropic_door_to_an_openai_target_is_translated_both_ways() {
    let bed = Bed::start();
    let r = bed.messages(
        &json!({"model": "gpt-4o-mini", "max_tokens": 64, "system": "Be brief.", "stop_sequences": ["END"],
                "metadata": {"user_id": "u-1"}, "messages": [{"role": "user", "content": "Hello GPT"}]}),
        &[("anthropic-beta", "x")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "mock reply to: Hello GPT"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["usage"]["input_tokens"],
        words("Be brief.") + words("Hello GPT")
    );
    let up = bed.only_upstream();
    assert_eq!(up["path"], "/v1/chat/completions");
    assert_eq!(
        up["json"],
        json!({"model": "gpt-4o-mini-2024-07-18", "max_completion_tokens": 64, "stop": ["END"], "user": "u-1",
               "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello GPT"}]})
    );
    assert_eq!(up["headers"]["authorization"], "Bearer sk-openai-test");
    assert!(
        up["headers"].get("anthropic-beta").is_none() && up["headers"].get("anthropic-version").is_none()
    );

    // Streamed, with tools: tool_use blocks and input_json_delta fragments, usage in message_delta.
    bed.mock.clear();
    let r = bed.messages(
        &json!({"model": "gpt-4o-mini", "max_tokens": 64, "stream": true, "tools": anthropic_tools(),
                "messages": [{"role": "user", "content": TOOL_PROMPT}]}),
        &[("x-mock-usage", "30,12"), ("x-mock-cached", "10")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let events = anthropic_events(&r.text());
    let starts: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .collect();
    assert_eq!(starts.len(), 2);
    let mut inputs = Vec::new();
    for s in &starts {
        assert_eq!(s["content_block"]["type"], "tool_use");
        assert!(s["content_block"]["id"].as_str().unwrap().starts_with("call_"));
        let json: String = events
            .iter()
            .filter(|e| e["type"] == "content_block_delta" && e["index"] == s["index"])
            .map(|e| e["delta"]["partial_json"].as_str().unwrap())
            .collect();
        inputs.push((
            s["content_block"]["name"].as_str().unwrap().to_string(),
            serde_json::from_str::<Value>(&json).unwrap(),
        ));
    }
    assert_eq!(
        inputs,
        vec![
            (
                "get_weather".into(),
                json!({"location": "Paris", "unit": "fahrenheit"})
            ),
            ("get_time".into(), json!({"timezone": "Tokyo"})),
        ]
    );
    let delta = events.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": 12})
    );
    let sent = &bed.only_upstream()["json"];
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent["tools"][0]["function"]["parameters"], weather_schema());

    // The tool results of an Anthropic user turn reach OpenAI as `tool` messages.
    bed.mock.clear();
    let r = bed.messages(
        &json!({"model": "gpt-4o-mini", "max_tokens": 64, "tools": anthropic_tools(), "messages": [
            {"role": "user", "content": TOOL_PROMPT},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"location": "Paris", "unit": "fahrenheit"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {"timezone": "Tokyo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": [{"type": "text", "text": "14:05"}]}]}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["content"][0]["text"],
        e2e::mock::reply_to_tool(&["sunny", "14:05"])
    );
    let sent = &bed.only_upstream()["json"]["messages"];
    assert_eq!(
        sent[1]["tool_calls"][1]["function"],
        json!({"name": "get_time", "arguments": "{\"timezone\":\"Tokyo\"}"})
    );
    assert_eq!(
        sent[2],
        json!({"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"})
    );
    assert_eq!(
        sent[3],
        json!({"role": "tool", "tool_call_id": "toolu_b", "content": "14:05"})
    );
}

#[test]
fn anthropic_door_errors_are_anthropic_shaped_with_our_code() {
    let bed = Bed::start();
    let r = bed.messages(
        &json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        &[],
    );
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["details"]["error_code"], "model_not_found");
    // The OpenAI target's own error, in Anthropic's shape.
    let fault = json!({"status": 429}).to_string();
    let r = bed.messages(
        &json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        &[("x-mock-fault", &fault)],
    );
    assert_eq!(r.status, 429);
    let e = r.json();
    assert_eq!(
        (e["type"].as_str(), e["error"]["type"].as_str()),
        (Some("error"), Some("rate_limit_error")),
        "{e}"
    );
    // Content an OpenAI target cannot read never reaches it.
    bed.mock.clear();
    let r = bed.messages(
        &json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]}),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["details"]["error_code"], "unsupported_content");
    assert!(bed.upstream().is_empty(), "{:?}", bed.upstream());
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
