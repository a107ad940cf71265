//! AWS Bedrock targets end to end: a real Envoy with the release ai-proxy .wasm in front of the mock's
//! Bedrock endpoints (Converse JSON, ConverseStream in the binary event-stream framing, InvokeModel
//! embeddings). SigV4 calls are signed with the mock's own key id, so the mock recomputes and checks
//! each signature over what it received; the fallback chain OpenAI → Gemini → Bedrock runs in callout
//! mode.

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::{request, Response};
use e2e::mock::{reply_to_tool, words, MockServer, MOCK_ACCESS_KEY_ID, MOCK_SECRET};
use serde_json::{json, Value};

const CLAUDE: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const CONVERSE: &str = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse";
const CONVERSE_STREAM: &str = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream";

fn config(mock_port: u16) -> Value {
    let host = format!("127.0.0.1:{mock_port}");
    json!({
        "targets": [
            {"name": "claude-br", "provider": "bedrock", "model": CLAUDE, "region": "us-east-1",
             "endpoint": {"cluster": "mock_openai", "host": host}},
            {"name": "nova-key", "provider": "bedrock", "model": "us.amazon.nova-lite-v1:0", "region": "us-west-2",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "bedrock-api-key"}},
            {"name": "titan", "provider": "bedrock", "model": "amazon.titan-embed-text-v2:0", "region": "eu-west-3",
             "endpoint": {"cluster": "mock_openai", "host": host},
             "aws": {"access_key_id": {"value": MOCK_ACCESS_KEY_ID}, "secret_access_key": {"value": MOCK_SECRET}}},
            {"name": "cohere", "provider": "bedrock", "model": "cohere.embed-english-v3", "region": "us-east-1",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "bedrock-api-key"}},
            {"name": "claude-wrong-secret", "provider": "bedrock", "model": CLAUDE, "region": "us-east-1",
             "endpoint": {"cluster": "mock_openai", "host": host},
             "aws": {"access_key_id": {"value": MOCK_ACCESS_KEY_ID}, "secret_access_key": {"value": "not-the-secret"}}},
            {"name": "openai-mini", "provider": "openai", "model": "gpt-4o-mini",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-openai"},
             "resilience": {"retries": 0}},
            {"name": "flash", "provider": "gemini", "model": "gemini-2.0-flash",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "AIza-test"},
             "resilience": {"retries": 0}}
        ],
        "models": {
            "claude": {"targets": [{"target": "claude-br"}]},
            "claude-wrong": {"targets": [{"target": "claude-wrong-secret"}]},
            "nova": {"targets": [{"target": "nova-key"}]},
            "titan": {"targets": [{"target": "titan"}]},
            "cohere": {"targets": [{"target": "cohere"}]},
            "chain": {"targets": [{"target": "openai-mini"}], "fallback": [{"target": "flash"}, {"target": "claude-br"}]}
        },
        "prices": {
            CLAUDE: {"prompt_per_million": 800000.0, "completion_per_million": 4000000.0, "cache_read_per_million": 80000.0}
        }
    })
}

struct Bed {
    mock: MockServer,
    envoy: Envoy,
}

impl Bed {
    fn start() -> Bed {
        let mock = MockServer::start(0).unwrap();
        let envoy = Envoy::start(
            EnvoyOptions::new(mock.port())
                .filter(Filter::ai_proxy(config(mock.port())))
                .env("AWS_ACCESS_KEY_ID", MOCK_ACCESS_KEY_ID)
                .env("AWS_SECRET_ACCESS_KEY", MOCK_SECRET)
                .env("AWS_SESSION_TOKEN", "mock-session-token"),
        )
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

    fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Response {
        let mut h = vec![
            ("content-type", "application/json"),
            ("authorization", "Bearer client-gateway-key"),
        ];
        h.extend_from_slice(headers);
        request(self.envoy.port, "POST", path, &h, body.to_string().as_bytes()).unwrap()
    }

    fn only_upstream(&self) -> Value {
        let mut records = self.mock.requests();
        assert_eq!(records.len(), 1, "{records:?}");
        records.remove(0)
    }
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn chunks(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
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

fn metric(stats: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    stats
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.split_once("} "))
        .filter(|(lbls, _)| labels.iter().all(|(k, v)| lbls.contains(&format!("{k}=\"{v}\""))))
        .map(|(_, v)| v.trim().parse::<f64>().unwrap())
        .sum()
}

const TOOL_PROMPT: &str = "What's the weather in Paris in Fahrenheit and the time in Tokyo?";

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location", "unit"]}}},
        {"type": "function", "function": {"name": "get_time", "parameters":
            {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
    ])
}

#[test]
fn converse_json_signed_with_sigv4_from_the_environment() {
    let bed = Bed::start();
    let r = bed.chat(&json!({"model": "claude", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello Bedrock"}], "max_tokens": 77, "temperature": 0.3, "stop": ["END"]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: Hello Bedrock"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["model"], CLAUDE);
    assert_eq!(
        v["usage"]["prompt_tokens"],
        words("Be brief.") + words("Hello Bedrock")
    );
    assert_eq!(r.header("x-ai-provider"), Some("bedrock"));
    let up = bed.only_upstream();
    assert_eq!(up["path"], CONVERSE);
    let auth = up["headers"]["authorization"].as_str().unwrap();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={MOCK_ACCESS_KEY_ID}/")),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="), "{auth}");
    assert_eq!(up["headers"]["x-amz-security-token"], "mock-session-token");
    assert_eq!(
        up["json"],
        json!({"messages": [{"role": "user", "content": [{"text": "Hello Bedrock"}]}],
               "system": [{"text": "Be brief."}],
               "inferenceConfig": {"maxTokens": 77, "temperature": 0.3, "stopSequences": ["END"]}})
    );
}

#[test]
fn converse_stream_event_stream_becomes_sse_at_both_doors() {
    let bed = Bed::start();
    let r = bed.chat(
        &json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
                             "messages": user("stream this please")}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/event-stream"),
        "{:?}",
        r.header("content-type")
    );
    let text = r.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let cs = chunks(&text);
    assert_eq!(streamed_text(&cs), "mock reply to: stream this please");
    assert!(cs.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(
        cs.last().unwrap()["usage"]["completion_tokens"],
        words("mock reply to: stream this please")
    );
    assert_eq!(bed.only_upstream()["path"], CONVERSE_STREAM);

    bed.mock.clear();
    let r = bed.post(
        "/v1/messages",
        &json!({"model": "claude", "max_tokens": 20, "stream": true, "messages": user("anthropic door")}),
        &[("anthropic-version", "2023-06-01")],
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    for event in [
        "message_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
    ] {
        assert!(text.contains(&format!("event: {event}\n")), "{event}: {text}");
    }
    // A corrupted event-stream message (bad CRC) ends the stream as an invalid answer, in the door's shape.
    let r = bed.chat_with(
        &json!({"model": "claude", "stream": true, "messages": user("corrupt me")}),
        &[("x-mock-fault", r#"{"malformed": true}"#)],
    );
    let text = r.text();
    assert!(text.contains("invalid stream from the provider"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[test]
fn tools_round_trip_and_streamed_tool_calls() {
    let bed = Bed::start();
    let ask = json!({"model": "claude", "tools": tools(), "messages": user(TOOL_PROMPT)});
    let r = bed.chat(&ask);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let message = v["choices"][0]["message"].clone();
    let calls = message["tool_calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let ids: Vec<String> = calls
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|i| i.starts_with("tooluse_")), "{ids:?}");
    let up = bed.only_upstream();
    assert_eq!(
        up["json"]["toolConfig"]["tools"][1]["toolSpec"]["name"],
        "get_time"
    );

    bed.mock.clear();
    let mut back = ask.clone();
    let turns = back["messages"].as_array_mut().unwrap();
    turns.push(message);
    turns.push(json!({"role": "tool", "tool_call_id": ids[0], "content": "sunny, 75F"}));
    turns.push(json!({"role": "tool", "tool_call_id": ids[1], "content": "14:05"}));
    let r = bed.chat(&back);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        reply_to_tool(&["sunny, 75F", "14:05"])
    );
    let sent = &bed.only_upstream()["json"]["messages"];
    assert_eq!(
        sent[2],
        json!({"role": "user", "content": [
            {"toolResult": {"toolUseId": ids[0], "content": [{"text": "sunny, 75F"}]}},
            {"toolResult": {"toolUseId": ids[1], "content": [{"text": "14:05"}]}}]})
    );

    bed.mock.clear();
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let r = bed.chat(&streamed);
    let cs = chunks(&r.text());
    let deltas: Vec<&Value> = cs
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    let streamed_ids: Vec<&str> = deltas.iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(
        streamed_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "the same calls, the same ids"
    );
    let args: String = deltas
        .iter()
        .filter(|d| d["index"] == 0)
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "Paris", "unit": "fahrenheit"})
    );
    assert!(cs
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[test]
fn images_structured_output_and_a_bedrock_api_key() {
    let bed = Bed::start();
    let png =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let r = bed.chat(
        &json!({"model": "nova", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "mock reply to: what is this I see 1 image."
    );
    let up = bed.only_upstream();
    assert_eq!(up["headers"]["authorization"], "Bearer bedrock-api-key");
    assert!(up["headers"].get("x-amz-date").is_none());
    assert_eq!(up["path"], "/model/us.amazon.nova-lite-v1%3A0/converse");
    assert_eq!(
        up["json"]["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": png}}})
    );

    bed.mock.clear();
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let r = bed.chat(
        &json!({"model": "claude", "messages": user("largest city in France"),
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["tool_calls"].is_null(), "{v}");
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(content["city"].is_string(), "{content}");
    assert_eq!(
        bed.only_upstream()["json"]["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "city"}})
    );
}

#[test]
fn embeddings_through_invoke_model() {
    let bed = Bed::start();
    let r = bed.post(
        "/v1/embeddings",
        &json!({"model": "titan", "input": "one fish two fish", "dimensions": 256}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
    assert_eq!(v["usage"]["prompt_tokens"], words("one fish two fish"));
    let up = bed.only_upstream();
    assert_eq!(up["path"], "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert!(up["headers"]["authorization"]
        .as_str()
        .unwrap()
        .contains("/eu-west-3/bedrock/aws4_request"));
    assert!(
        up["headers"].get("x-amz-security-token").is_none(),
        "the target's own keys carry no token"
    );
    assert_eq!(
        up["json"],
        json!({"inputText": "one fish two fish", "dimensions": 256})
    );

    bed.mock.clear();
    let r = bed.post(
        "/v1/embeddings",
        &json!({"model": "cohere", "input": ["a", "b"], "input_type": "search_query"}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        bed.only_upstream()["json"],
        json!({"texts": ["a", "b"], "input_type": "search_query"})
    );

    let r = bed.post(
        "/v1/embeddings",
        &json!({"model": "titan", "input": ["a", "b"]}),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "unsupported_content");
}

#[test]
fn errors_usage_and_cost() {
    let bed = Bed::start();
    bed.mock
        .add_fault(&json!({"path_prefix": "/model/anthropic", "times": 1, "fault": {"status": 429}}))
        .unwrap();
    let r = bed.chat(&json!({"model": "claude", "messages": user("hi")}));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.json()["error"]["code"], "throttling_exception");
    // A signature made with the wrong secret is refused by the mock, which recomputes it.
    let r = bed.chat(&json!({"model": "claude-wrong", "messages": user("hi")}));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "access_denied_exception");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{}",
        r.text()
    );

    for stream in [false, true] {
        let r = bed.chat_with(
            &json!({"model": "claude", "stream": stream, "messages": user("count me")}),
            &[("x-mock-usage", "100,40"), ("x-mock-cached", "60")],
        );
        assert_eq!(r.status, 200);
        let _ = r.text();
    }
    let stats = bed.envoy.stats_prometheus();
    let l = [("provider", "bedrock"), ("target", "claude-br")];
    let with = |k: &'static str| {
        let mut v = l.to_vec();
        v.push(("kind", k));
        v
    };
    assert_eq!(
        metric(&stats, "ai_proxy_tokens_total", &with("prompt")),
        200.0,
        "{stats}"
    );
    assert_eq!(metric(&stats, "ai_proxy_tokens_total", &with("cached")), 120.0);
    assert_eq!(metric(&stats, "ai_proxy_tokens_total", &with("completion")), 80.0);
    // Per request: 40 uncached × 0.8 + 60 cached × 0.08 + 40 × 4 = 32 + 4.8 + 160 = 196.8 USD.
    assert_eq!(
        metric(&stats, "ai_proxy_cost_microusd_total", &l),
        2.0 * 196_800_000.0
    );
}

#[test]
fn fallback_chain_openai_gemini_bedrock_in_callout_mode() {
    let bed = Bed::start();
    bed.mock
        .add_fault(&json!({"path_prefix": "/v1/chat/completions", "times": 0, "fault": {"status": 500}}))
        .unwrap();
    bed.mock
        .add_fault(&json!({"path_prefix": "/v1beta/models/", "times": 0, "fault": {"status": 503}}))
        .unwrap();
    let r = bed.chat(&json!({"model": "chain", "messages": user("anyone there")}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-provider"), Some("bedrock"));
    assert_eq!(r.header("x-ai-fallback-from"), Some("openai-mini"));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "mock reply to: anyone there"
    );
    let paths: Vec<String> = bed
        .mock
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        vec![
            "/v1/chat/completions".to_string(),
            "/v1beta/models/gemini-2.0-flash:generateContent".to_string(),
            CONVERSE.to_string()
        ]
    );

    bed.mock.clear();
    bed.mock
        .add_fault(&json!({"path_prefix": "/v1/chat/completions", "times": 0, "fault": {"status": 500}}))
        .unwrap();
    bed.mock
        .add_fault(&json!({"path_prefix": "/v1beta/models/", "times": 0, "fault": {"status": 503}}))
        .unwrap();
    let r =
        bed.chat(&json!({"model": "chain", "stream": true, "messages": user("stream through the chain")}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-provider"), Some("bedrock"));
    assert_eq!(
        streamed_text(&chunks(&r.text())),
        "mock reply to: stream through the chain"
    );
}

#[test]
fn anthropic_door_json_and_a_cut_stream() {
    let bed = Bed::start();
    let r = bed.post(
        "/v1/messages",
        &json!({"model": "claude", "max_tokens": 30, "system": "Sys", "messages": user("hi from the claude sdk")}),
        &[("anthropic-version", "2023-06-01")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "mock reply to: hi from the claude sdk");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["usage"]["input_tokens"],
        words("Sys") + words("hi from the claude sdk")
    );
    let up = bed.only_upstream();
    assert_eq!(up["json"]["inferenceConfig"]["maxTokens"], 30);
    assert!(up["headers"].get("x-api-key").is_none());

    // The provider drops the connection after two event-stream messages of a forwarded stream: as for
    // every provider (tests/tests/stream_cut.rs), Envoy resets the client and the filter never sees the
    // end, so the events translated so far arrive and no `[DONE]` (callout mode ends such streams cleanly).
    let r = bed.chat_with(
        &json!({"model": "claude", "stream": true, "messages": user("cut me off early")}),
        &[("x-mock-fault", r#"{"cut_after": 2}"#)],
    );
    let text = r.text();
    assert!(text.contains("\"content\":\"mock \""), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}
