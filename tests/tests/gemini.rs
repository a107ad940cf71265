//! Gemini (Google AI Studio) and Vertex AI targets end to end: a real Envoy with the release ai-proxy
//! .wasm in front of the mock's Gemini endpoints. Every test asserts on what the client got and on what
//! reached the provider (the mock's records).

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::{request, Response};
use e2e::mock::{reply_to_tool, words, MockServer, EMBEDDING_DIMENSIONS};
use serde_json::{json, Value};

const STUDIO_CHAT: &str = "/v1beta/models/gemini-2.0-flash:generateContent";
const STUDIO_STREAM: &str = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse";
const VERTEX_BASE: &str =
    "/v1/projects/acme-ai/locations/us-central1/publishers/google/models/gemini-2.5-pro";

fn config(mock_port: u16) -> Value {
    let host = format!("127.0.0.1:{mock_port}");
    json!({
        "targets": [
            {"name": "flash", "provider": "gemini", "model": "gemini-2.0-flash",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"env": "GEMINI_API_KEY"}},
            {"name": "vertex-pro", "provider": "vertex_ai", "model": "gemini-2.5-pro",
             "project": "acme-ai", "location": "us-central1",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"env": "VERTEX_TOKEN"}},
            {"name": "flash-nokey", "provider": "gemini", "model": "gemini-2.0-flash",
             "endpoint": {"cluster": "mock_openai", "host": host}},
            {"name": "gemini-embed", "provider": "gemini", "model": "gemini-embedding-001",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"env": "GEMINI_API_KEY"}},
            {"name": "vertex-embed", "provider": "vertex_ai", "model": "text-embedding-005",
             "project": "acme-ai", "location": "global",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "ya29.inline"}},
            {"name": "openai-mini", "provider": "openai", "model": "gpt-4o-mini",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-openai"},
             "resilience": {"retries": 0}}
        ],
        "models": {
            "flash": {"targets": [{"target": "flash"}]},
            "flash-lax": {"targets": [{"target": "flash"}], "drop_unsupported_params": true},
            "pro": {"targets": [{"target": "vertex-pro"}]},
            "nokey": {"targets": [{"target": "flash-nokey"}]},
            "embed": {"targets": [{"target": "gemini-embed"}]},
            "embed-vertex": {"targets": [{"target": "vertex-embed"}]},
            "chain": {"targets": [{"target": "openai-mini"}], "fallback": [{"target": "flash"}]}
        },
        "prices": {
            "gemini-2.0-flash": {"prompt_per_million": 100000.0, "completion_per_million": 400000.0},
            "gemini-2.5-pro": {"prompt_per_million": 1250000.0, "completion_per_million": 10000000.0}
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
                .env("GEMINI_API_KEY", "AIza-test-key")
                .env("VERTEX_TOKEN", "ya29.vertex-token"),
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

    fn messages(&self, body: &Value, headers: &[(&str, &str)]) -> Response {
        let mut h = vec![("anthropic-version", "2023-06-01")];
        h.extend_from_slice(headers);
        self.post("/v1/messages", body, &h)
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

const TOOL_PROMPT: &str = "What's the weather in Paris in Fahrenheit for 3 days and the time in Tokyo?";

fn openai_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather now", "strict": true,
         "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                           "days": {"type": ["integer", "null"]}},
            "required": ["location", "unit"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time", "parameters":
            {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
    ])
}

fn calls_of(message: &Value) -> Vec<(String, String, Value)> {
    message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["function"]["name"].as_str().unwrap().to_string(),
                serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
            )
        })
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

#[test]
fn ai_studio_json_is_translated_both_ways_with_the_key_header() {
    let bed = Bed::start();
    let r = bed.chat(&json!({
        "model": "flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello Gemini"},
            {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "How are you"}]}
        ],
        "temperature": 0.5, "top_p": 0.9, "stop": "END", "max_tokens": 99, "seed": 4
    }));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "mock reply to: How are you"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["model"], "gemini-2.0-flash");
    let prompt = words("Be brief.") + words("Hello Gemini") + words("Hi") + words("How are you");
    assert_eq!(body["usage"]["prompt_tokens"], prompt);
    assert_eq!(
        body["usage"]["completion_tokens"],
        words("mock reply to: How are you")
    );
    assert_eq!(r.header("x-ai-provider"), Some("gemini"));
    assert_eq!(r.header("x-ai-target"), Some("flash"));

    let up = bed.only_upstream();
    assert_eq!(up["path"], STUDIO_CHAT);
    assert_eq!(up["headers"]["x-goog-api-key"], "AIza-test-key");
    assert!(
        up["headers"].get("authorization").is_none(),
        "client credentials leaked upstream"
    );
    let sent = &up["json"];
    assert!(sent.get("model").is_none(), "the model is in the path");
    assert_eq!(
        sent["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        sent["contents"],
        json!([{"role": "user", "parts": [{"text": "Hello Gemini"}]},
               {"role": "model", "parts": [{"text": "Hi"}]},
               {"role": "user", "parts": [{"text": "How are you"}]}])
    );
    assert_eq!(
        sent["generationConfig"],
        json!({"temperature": 0.5, "topP": 0.9, "stopSequences": ["END"], "maxOutputTokens": 99, "seed": 4})
    );
}

#[test]
fn vertex_ai_gets_its_path_and_bearer_token() {
    let bed = Bed::start();
    let r = bed.chat(&json!({"model": "pro", "messages": user("hello vertex")}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "mock reply to: hello vertex"
    );
    assert_eq!(r.header("x-ai-provider"), Some("vertex_ai"));
    let up = bed.only_upstream();
    assert_eq!(up["path"], format!("{VERTEX_BASE}:generateContent"));
    assert_eq!(up["headers"]["authorization"], "Bearer ya29.vertex-token");
    assert!(up["headers"].get("x-goog-api-key").is_none());

    bed.mock.clear();
    let r = bed.chat(&json!({"model": "pro", "stream": true, "messages": user("stream vertex")}));
    assert_eq!(r.status, 200);
    assert_eq!(streamed_text(&chunks(&r.text())), "mock reply to: stream vertex");
    assert_eq!(
        bed.only_upstream()["path"],
        format!("{VERTEX_BASE}:streamGenerateContent?alt=sse")
    );
}

#[test]
fn streams_become_openai_chunks_and_anthropic_events() {
    let bed = Bed::start();
    let r = bed.chat(
        &json!({"model": "flash", "stream": true, "stream_options": {"include_usage": true},
                             "messages": user("stream this please")}),
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
    let up = bed.only_upstream();
    assert_eq!(up["path"], STUDIO_STREAM);

    bed.mock.clear();
    let r = bed.messages(
        &json!({"model": "flash", "max_tokens": 64, "stream": true, "messages": user("anthropic door")}),
        &[],
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    for event in [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
    ] {
        assert!(text.contains(&format!("event: {event}\n")), "{event}: {text}");
    }
    assert!(text.contains("\"stop_reason\":\"end_turn\""), "{text}");
    assert_eq!(
        bed.only_upstream()["json"]["generationConfig"]["maxOutputTokens"],
        64
    );
}

#[test]
fn anthropic_door_json_to_gemini() {
    let bed = Bed::start();
    let r = bed.messages(
        &json!({"model": "flash", "max_tokens": 32, "system": "Sys", "messages": user("hi from claude sdk")}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "mock reply to: hi from claude sdk");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["usage"]["input_tokens"],
        words("Sys") + words("hi from claude sdk")
    );
    assert_eq!(
        bed.only_upstream()["json"]["systemInstruction"]["parts"][0]["text"],
        "Sys"
    );
}

#[test]
fn tools_with_stable_ids_and_the_tool_result_round_trip() {
    let bed = Bed::start();
    let ask = json!({"model": "flash", "tools": openai_tools(), "messages": user(TOOL_PROMPT)});
    let r = bed.chat(&ask);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let message = v["choices"][0]["message"].clone();
    let calls = calls_of(&message);
    assert_eq!(
        calls
            .iter()
            .map(|(_, n, a)| (n.as_str(), a.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("get_weather", json!({"location": "Paris", "unit": "fahrenheit"})),
            ("get_time", json!({"timezone": "Tokyo"})),
        ]
    );
    let ids: Vec<String> = calls.iter().map(|(id, _, _)| id.clone()).collect();
    assert!(
        ids.iter().all(|id| id.starts_with("call_") && id.len() == 29),
        "{ids:?}"
    );
    assert_ne!(ids[0], ids[1]);
    // Gemini's dialect: the schema keywords it refuses were stripped, the nullable type rewritten.
    let up = bed.only_upstream();
    assert_eq!(
        up["json"]["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "object", "properties": {"location": {"type": "string"},
               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
               "days": {"type": "integer", "nullable": true}}, "required": ["location", "unit"]})
    );

    // The results go back as `tool` messages: Gemini gets function responses named by the calls.
    bed.mock.clear();
    let mut back = ask.clone();
    let turns = back["messages"].as_array_mut().unwrap();
    turns.push(message.clone());
    turns.push(json!({"role": "tool", "tool_call_id": ids[0], "content": "sunny, 75F"}));
    turns.push(json!({"role": "tool", "tool_call_id": ids[1], "content": "{\"time\":\"14:05\"}"}));
    let r = bed.chat(&back);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        reply_to_tool(&["sunny, 75F", "{\"time\":\"14:05\"}"])
    );
    let sent = &bed.only_upstream()["json"]["contents"];
    assert_eq!(sent.as_array().unwrap().len(), 3, "{sent}");
    assert_eq!(
        sent[1],
        json!({"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris", "unit": "fahrenheit"}}},
            {"functionCall": {"name": "get_time", "args": {"timezone": "Tokyo"}}}]})
    );
    assert_eq!(
        sent[2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"content": "sunny, 75F"}}},
            {"functionResponse": {"name": "get_time", "response": {"time": "14:05"}}}]})
    );

    // Streamed: the same calls, the same ids (they derive from the answer, not from the framing).
    bed.mock.clear();
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let r = bed.chat(&streamed);
    assert_eq!(r.status, 200);
    let cs = chunks(&r.text());
    let deltas: Vec<&Value> = cs
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    let names: Vec<&str> = deltas
        .iter()
        .filter_map(|d| d["function"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["get_weather", "get_time"]);
    let args: String = deltas
        .iter()
        .filter(|d| d["index"] == 1)
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"timezone": "Tokyo"})
    );
    assert!(cs
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));

    // tool_choice names a function: Gemini's ANY mode with that one allowed.
    bed.mock.clear();
    let mut one = ask.clone();
    one["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    let r = bed.chat(&one);
    assert_eq!(calls_of(&r.json()["choices"][0]["message"]).len(), 1);
    assert_eq!(
        bed.only_upstream()["json"]["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}})
    );

    // Thinking models sign their calls: the signature rides in the id and goes back with the call.
    bed.mock.clear();
    let mut thinking = ask.clone();
    thinking["reasoning_effort"] = json!("low");
    let r = bed.chat(&thinking);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let message = v["choices"][0]["message"].clone();
    assert!(
        message["reasoning_content"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    let signed: Vec<String> = calls_of(&message).into_iter().map(|(id, _, _)| id).collect();
    assert!(
        signed.iter().all(|id| id.contains("__thought__sig_")),
        "{signed:?}"
    );
    let mut back = thinking.clone();
    let turns = back["messages"].as_array_mut().unwrap();
    turns.push(message.clone());
    turns.push(json!({"role": "tool", "tool_call_id": signed[0], "content": "sunny"}));
    turns.push(json!({"role": "tool", "tool_call_id": signed[1], "content": "noon"}));
    bed.mock.clear();
    let r = bed.chat(&back);
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = &bed.only_upstream()["json"]["contents"][1]["parts"];
    assert!(
        sent[0]["thoughtSignature"]
            .as_str()
            .is_some_and(|s| s.starts_with("sig_")),
        "{sent}"
    );
    // Without the signature (a client that rewrote the ids), the model refuses the turn.
    let turns = back["messages"].as_array_mut().unwrap();
    turns[1]["tool_calls"][0]["id"] = json!("call_plain");
    turns[2]["tool_call_id"] = json!("call_plain");
    let r = bed.chat(&back);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("thought_signature"), "{}", r.text());

    // A schema keyword Gemini cannot take and that cannot be left out is refused by name.
    bed.mock.clear();
    let mut refused = ask.clone();
    refused["tools"][1]["function"]["parameters"]["properties"]["timezone"] =
        json!({"oneOf": [{"type": "string"}]});
    let r = bed.chat(&refused);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "unsupported_schema");
    assert!(
        e["error"]["message"].as_str().unwrap().starts_with(
            "`tools[1].function.parameters.properties.timezone`: the JSON Schema keyword `oneOf`"
        ),
        "{e}"
    );
    assert!(bed.mock.requests().is_empty());
}

#[test]
fn images_inline_and_by_url() {
    let bed = Bed::start();
    let png =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let r = bed.chat(
        &json!({"model": "flash", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what are these"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "mock reply to: what are these I see 2 images."
    );
    let parts = &bed.only_upstream()["json"]["contents"][0]["parts"];
    assert_eq!(
        parts[1],
        json!({"inlineData": {"mimeType": "image/png", "data": png}})
    );
    assert_eq!(
        parts[2],
        json!({"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}})
    );
}

#[test]
fn response_format_becomes_response_schema() {
    let bed = Bed::start();
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
                        "required": ["city", "population"], "additionalProperties": false});
    let r = bed.chat(&json!({"model": "flash", "messages": user("largest city in France"),
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true, "schema": schema}}}));
    assert_eq!(r.status, 200, "{}", r.text());
    let content: Value =
        serde_json::from_str(r.json()["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(
        content["city"].is_string() && content["population"].is_i64(),
        "{content}"
    );
    let config = &bed.only_upstream()["json"]["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(
        config["responseSchema"],
        json!({"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
               "required": ["city", "population"]})
    );

    bed.mock.clear();
    let r = bed.chat(
        &json!({"model": "flash", "messages": user("any json"), "response_format": {"type": "json_object"}}),
    );
    assert_eq!(r.status, 200);
    let text = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        serde_json::from_str::<Value>(&text).unwrap().is_object(),
        "{text}"
    );
    assert_eq!(
        bed.only_upstream()["json"]["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
}

#[test]
fn safety_blocks_are_content_filter_with_the_reason() {
    let bed = Bed::start();
    let r = bed.chat_with(
        &json!({"model": "flash", "messages": user("something bad")}),
        &[("x-mock-finish", "SAFETY")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Gemini blocked the answer (reason SAFETY: HARM_CATEGORY_DANGEROUS_CONTENT)"
    );
    let r = bed.chat_with(
        &json!({"model": "flash", "messages": user("something bad")}),
        &[("x-mock-finish", "PROMPT_PROHIBITED_CONTENT")],
    );
    assert_eq!(r.json()["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Gemini blocked the prompt (reason PROHIBITED_CONTENT: HARM_CATEGORY_DANGEROUS_CONTENT)"
    );
    let r = bed.chat_with(
        &json!({"model": "flash", "stream": true, "messages": user("something bad")}),
        &[("x-mock-finish", "RECITATION")],
    );
    let cs = chunks(&r.text());
    assert!(
        cs.iter()
            .any(|c| c["choices"][0]["finish_reason"] == "content_filter"),
        "{cs:?}"
    );
    assert!(streamed_text(&cs).contains("reason RECITATION"));
    let r = bed.messages(
        &json!({"model": "flash", "max_tokens": 10, "messages": user("bad")}),
        &[("x-mock-finish", "SAFETY")],
    );
    assert_eq!(r.json()["stop_reason"], "refusal");
}

#[test]
fn embeddings_from_ai_studio_and_vertex() {
    let bed = Bed::start();
    let r = bed.post(
        "/v1/embeddings",
        &json!({"model": "embed", "input": ["one fish", "two fish"], "dimensions": 8}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "gemini-embedding-001");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    let up = bed.only_upstream();
    assert_eq!(
        up["path"],
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(up["headers"]["x-goog-api-key"], "AIza-test-key");
    assert_eq!(
        up["json"]["requests"][1],
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "two fish"}]},
               "outputDimensionality": 8})
    );

    bed.mock.clear();
    let r = bed.post(
        "/v1/embeddings",
        &json!({"model": "embed-vertex", "input": "red fish blue fish", "encoding_format": "base64"}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(b64.len(), (EMBEDDING_DIMENSIONS * 4).div_ceil(3) * 4, "{b64}");
    assert_eq!(v["usage"]["prompt_tokens"], words("red fish blue fish"));
    let up = bed.only_upstream();
    assert_eq!(
        up["path"],
        "/v1/projects/acme-ai/locations/global/publishers/google/models/text-embedding-005:predict"
    );
    assert_eq!(up["headers"]["authorization"], "Bearer ya29.inline");
    assert_eq!(
        up["json"],
        json!({"instances": [{"content": "red fish blue fish"}]})
    );
}

#[test]
fn errors_are_translated_for_each_door() {
    let bed = Bed::start();
    bed.mock
        .add_fault(
            &json!({"path_prefix": "/v1beta/models/gemini-2.0-flash", "times": 2, "fault": {"status": 429}}),
        )
        .unwrap();
    let r = bed.chat(&json!({"model": "flash", "messages": user("hi")}));
    assert_eq!(r.status, 429, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert_eq!(e["error"]["code"], "resource_exhausted");
    assert_eq!(e["error"]["message"], "mock: injected fault status 429");
    let r = bed.messages(
        &json!({"model": "flash", "max_tokens": 5, "messages": user("hi")}),
        &[],
    );
    assert_eq!(r.status, 429);
    let e = r.json();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "rate_limit_error");

    // A target without a key passes the client's credentials: the mock wants x-goog-api-key.
    let r = bed.chat(&json!({"model": "nokey", "messages": user("hi")}));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "permission_error");
    assert_eq!(r.json()["error"]["code"], "permission_denied");

    // What Gemini cannot take is refused before any call, or dropped and named.
    bed.mock.clear();
    let r = bed.chat(&json!({"model": "flash", "messages": user("hi"), "n": 2}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "unsupported_parameter");
    assert!(bed.mock.requests().is_empty());
    let r = bed.chat(&json!({"model": "flash-lax", "messages": user("hi"), "n": 2, "user": "u"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-dropped-params"), Some("n, user"));
}

#[test]
fn usage_and_cost_metrics() {
    let bed = Bed::start();
    for _ in 0..2 {
        let r = bed.chat_with(
            &json!({"model": "flash", "messages": user("count me")}),
            &[("x-mock-usage", "100,40")],
        );
        assert_eq!(r.status, 200);
    }
    let r = bed.chat_with(
        &json!({"model": "pro", "stream": true, "messages": user("count me")}),
        &[("x-mock-usage", "10,5"), ("x-mock-cached", "4")],
    );
    assert_eq!(r.status, 200);
    let stats = bed.envoy.stats_prometheus();
    let flash = [("provider", "gemini"), ("target", "flash")];
    let with = |extra: (&'static str, &'static str)| {
        let mut v = flash.to_vec();
        v.push(extra);
        v
    };
    assert_eq!(
        metric(&stats, "ai_proxy_tokens_total", &with(("kind", "prompt"))),
        200.0,
        "{stats}"
    );
    assert_eq!(
        metric(&stats, "ai_proxy_tokens_total", &with(("kind", "completion"))),
        80.0
    );
    // 0.10 USD/M × 100 000… as micro-USD per million: 100 × 0.1 + 40 × 0.4 = 26 USD per request.
    assert_eq!(
        metric(&stats, "ai_proxy_cost_microusd_total", &flash),
        2.0 * 26_000_000.0
    );
    // Label values keep `A-Za-z0-9.-`: `vertex_ai` is `vertex-ai` in metrics.
    let pro = [("provider", "vertex-ai"), ("target", "vertex-pro")];
    let mut p = pro.to_vec();
    p.push(("kind", "prompt"));
    assert_eq!(metric(&stats, "ai_proxy_tokens_total", &p), 10.0);
    let mut c = pro.to_vec();
    c.push(("kind", "cached"));
    assert_eq!(metric(&stats, "ai_proxy_tokens_total", &c), 4.0, "{stats}");
}

#[test]
fn fallback_from_openai_to_gemini_in_callout_mode() {
    let bed = Bed::start();
    bed.mock
        .add_fault(&json!({"path_prefix": "/v1/chat/completions", "times": 0, "fault": {"status": 500}}))
        .unwrap();
    let r = bed.chat(&json!({"model": "chain", "messages": user("are you there")}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-provider"), Some("gemini"));
    assert_eq!(r.header("x-ai-fallback-from"), Some("openai-mini"));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "mock reply to: are you there"
    );
    let paths: Vec<String> = bed
        .mock
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        vec!["/v1/chat/completions".to_string(), STUDIO_CHAT.to_string()]
    );

    let r = bed.chat(&json!({"model": "chain", "stream": true, "messages": user("stream after fallback")}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-provider"), Some("gemini"));
    let cs = chunks(&r.text());
    assert_eq!(streamed_text(&cs), "mock reply to: stream after fallback");
}
