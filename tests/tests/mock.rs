//! The mock providers on their own (plus one Envoy smoke test with no wasm filter).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::http::{self, Response};
use e2e::mock::{words, MockServer};
use serde_json::{json, Value};

const OPENAI_AUTH: (&str, &str) = ("authorization", "Bearer sk-test");
const JSON_CT: (&str, &str) = ("content-type", "application/json");

fn mock() -> MockServer {
    MockServer::start(0).unwrap()
}

fn post(m: &MockServer, path: &str, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut all = vec![JSON_CT];
    all.extend_from_slice(headers);
    http::request(m.port(), "POST", path, &all, body.to_string().as_bytes()).unwrap()
}

fn openai(m: &MockServer, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut all = vec![OPENAI_AUTH];
    all.extend_from_slice(headers);
    post(m, "/v1/chat/completions", &all, body)
}

fn anthropic(m: &MockServer, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut all = vec![("x-api-key", "sk-ant"), ("anthropic-version", "2023-06-01")];
    all.extend_from_slice(headers);
    post(m, "/v1/messages", &all, body)
}

const AZURE_PATH: &str = "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21";

fn chat(stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "say hello world"}
        ]
    })
}

fn messages(stream: bool) -> Value {
    json!({
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 100,
        "stream": stream,
        "system": "be brief please",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}]
    })
}

/// The JSON payloads of the `data:` events (without `[DONE]`).
fn data_json(resp: &Response) -> Vec<Value> {
    resp.sse()
        .into_iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

fn openai_stream_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str))
        .collect::<String>()
}

#[test]
fn openai_json() {
    let m = mock();
    let resp = openai(&m, &[], &chat(false));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("x-mock-provider"), Some("openai"));
    let v = resp.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: say hello world"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let prompt =
        words("You are terse.") + words("first question") + words("an answer") + words("say hello world");
    assert_eq!(prompt, 10);
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16})
    );
}

#[test]
fn openai_content_parts_are_joined() {
    let m = mock();
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look at"}, {"type": "image_url", "image_url": {"url": "x"}},
            {"type": "text", "text": "this"}]}
    ]});
    let v = openai(&m, &[], &body).json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: look at this"
    );
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 6);
}

#[test]
fn openai_stream() {
    let m = mock();
    let resp = openai(&m, &[], &chat(true));
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    let events = resp.sse();
    // One HTTP chunk per SSE event.
    assert_eq!(resp.chunks.len(), events.len());
    for (chunk, event) in resp.chunks.iter().zip(&events) {
        assert_eq!(
            String::from_utf8_lossy(chunk),
            format!("data: {}\n\n", event.data)
        );
    }
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks = data_json(&resp);
    // role chunk, 6 words, finish chunk
    assert_eq!(chunks.len(), 8);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "mock ");
    assert_eq!(chunks[6]["choices"][0]["delta"]["content"], "world");
    assert_eq!(openai_stream_text(&chunks), "mock reply to: say hello world");
    let last = &chunks[7];
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o-mini");
        assert!(c.get("usage").is_none(), "{c}");
    }
}

#[test]
fn openai_stream_include_usage() {
    let m = mock();
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = openai(&m, &[], &body);
    let chunks = data_json(&resp);
    assert_eq!(chunks.len(), 9);
    for c in &chunks[..8] {
        assert_eq!(c["usage"], Value::Null);
        assert!(c.get("usage").is_some());
    }
    assert_eq!(chunks[8]["choices"], json!([]));
    assert_eq!(
        chunks[8]["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16})
    );
    assert_eq!(resp.sse().last().unwrap().data, "[DONE]");
}

#[test]
fn openai_auth_failures() {
    let m = mock();
    for headers in [
        vec![],
        vec![("authorization", "Bearer ")],
        vec![("authorization", "Basic abc")],
    ] {
        let resp = post(&m, "/v1/chat/completions", &headers, &chat(false));
        assert_eq!(resp.status, 401, "{headers:?}");
        let v = resp.json();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert!(v["error"]["message"].is_string());
    }
}

#[test]
fn openai_bad_requests() {
    let m = mock();
    let resp = http::request(
        m.port(),
        "POST",
        "/v1/chat/completions",
        &[OPENAI_AUTH],
        b"{not json",
    )
    .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["type"], "invalid_request_error");
    assert_eq!(
        openai(&m, &[], &json!({"model": "m", "messages": []})).status,
        400
    );
    assert_eq!(
        openai(&m, &[], &json!({"messages": [{"role": "user", "content": "x"}]})).status,
        400
    );
    let resp = http::request(m.port(), "GET", "/v1/chat/completions", &[OPENAI_AUTH], b"").unwrap();
    assert_eq!(resp.status, 405);
    let resp = http::request(m.port(), "POST", "/v2/unknown", &[], b"{}").unwrap();
    assert_eq!(resp.status, 404);
}

#[test]
fn azure_json_and_stream() {
    let m = mock();
    let mut body = chat(false);
    body.as_object_mut().unwrap().remove("model");
    let resp = post(&m, AZURE_PATH, &[("api-key", "az-key")], &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-mock-provider"), Some("azure"));
    let v = resp.json();
    assert_eq!(v["model"], "gpt4o-prod");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: say hello world"
    );
    assert_eq!(v["usage"]["total_tokens"], 16);

    body["stream"] = json!(true);
    let resp = post(&m, AZURE_PATH, &[("api-key", "az-key")], &body);
    let chunks = data_json(&resp);
    assert_eq!(openai_stream_text(&chunks), "mock reply to: say hello world");
    assert!(chunks.iter().all(|c| c["model"] == "gpt4o-prod"));

    let recs = m.requests();
    assert_eq!(recs[0]["path"], AZURE_PATH);
}

#[test]
fn azure_auth_failures() {
    let m = mock();
    let resp = post(&m, AZURE_PATH, &[], &chat(false));
    assert_eq!(resp.status, 401);
    assert!(resp.json()["error"]["message"].is_string());
    let resp = post(
        &m,
        "/openai/deployments/d/chat/completions",
        &[("api-key", "k")],
        &chat(false),
    );
    assert_eq!(resp.status, 400);
    let resp = post(
        &m,
        "/openai/deployments/d/chat/completions?api-version=",
        &[("api-key", "k")],
        &chat(false),
    );
    assert_eq!(resp.status, 400);
}

#[test]
fn anthropic_json() {
    let m = mock();
    let resp = anthropic(&m, &[], &messages(false));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-mock-provider"), Some("anthropic"));
    let v = resp.json();
    assert!(v["id"].as_str().unwrap().starts_with("msg_mock_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-3-5-haiku-20241022");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "mock reply to: hi there"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    // system (3) + "hi there" (2); reply is 5 words.
    assert_eq!(v["usage"], json!({"input_tokens": 5, "output_tokens": 5}));

    // System as text blocks counts too.
    let mut body = messages(false);
    body["system"] = json!([{"type": "text", "text": "one two"}]);
    assert_eq!(anthropic(&m, &[], &body).json()["usage"]["input_tokens"], 4);
}

#[test]
fn anthropic_stream() {
    let m = mock();
    let resp = anthropic(&m, &[], &messages(true));
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let events = resp.sse();
    assert_eq!(resp.chunks.len(), events.len());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(["content_block_delta"; 5]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let data: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    for (e, d) in events.iter().zip(&data) {
        assert_eq!(d["type"].as_str(), e.event.as_deref());
    }
    assert_eq!(
        data[0]["message"]["usage"],
        json!({"input_tokens": 5, "output_tokens": 1})
    );
    assert_eq!(data[0]["message"]["model"], "claude-3-5-haiku-20241022");
    let text: String = data
        .iter()
        .filter_map(|d| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, "mock reply to: hi there");
    assert_eq!(data[3]["delta"], json!({"type": "text_delta", "text": "mock "}));
    assert_eq!(data[9]["delta"]["stop_reason"], "end_turn");
    assert_eq!(data[9]["usage"]["output_tokens"], 5);
}

#[test]
fn anthropic_auth_and_validation_failures() {
    let m = mock();
    for headers in [
        vec![("anthropic-version", "2023-06-01")],
        vec![("x-api-key", "k")],
    ] {
        let resp = post(&m, "/v1/messages", &headers, &messages(false));
        assert_eq!(resp.status, 401, "{headers:?}");
        let v = resp.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert!(v["error"]["message"].is_string());
    }
    let mut body = messages(false);
    body.as_object_mut().unwrap().remove("max_tokens");
    let resp = anthropic(&m, &[], &body);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["type"], "invalid_request_error");
    let mut body = messages(false);
    body["messages"] = json!([{"role": "system", "content": "no"}, {"role": "user", "content": "x"}]);
    assert_eq!(anthropic(&m, &[], &body).status, 400);
}

#[test]
fn usage_override_header() {
    let m = mock();
    let v = openai(&m, &[("x-mock-usage", "123,45")], &chat(false)).json();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 123, "completion_tokens": 45, "total_tokens": 168})
    );
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = data_json(&openai(&m, &[("x-mock-usage", "7,8")], &body));
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 15);
    let resp = anthropic(&m, &[("x-mock-usage", "11,22")], &messages(true));
    let data: Vec<Value> = resp
        .sse()
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], 11);
    assert_eq!(data.iter().rev().nth(1).unwrap()["usage"]["output_tokens"], 22);
    assert_eq!(openai(&m, &[("x-mock-usage", "nope")], &chat(false)).status, 400);
}

#[test]
fn records_and_clearing() {
    let m = mock();
    openai(&m, &[("X-Custom", "Yes")], &chat(false));
    http::request(m.port(), "POST", "/v1/messages", &[], b"raw text").unwrap();
    let resp = http::request(m.port(), "GET", "/_mock/requests", &[], b"").unwrap();
    assert_eq!(resp.status, 200);
    let recs = resp.json();
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 2, "control requests are not recorded: {recs:?}");
    assert_eq!(recs[0]["method"], "POST");
    assert_eq!(recs[0]["path"], "/v1/chat/completions");
    assert_eq!(recs[0]["headers"]["x-custom"], "Yes");
    assert_eq!(recs[0]["headers"]["authorization"], "Bearer sk-test");
    assert_eq!(recs[0]["json"], chat(false));
    assert_eq!(
        serde_json::from_str::<Value>(recs[0]["body"].as_str().unwrap()).unwrap(),
        chat(false)
    );
    assert_eq!(recs[1]["body"], "raw text");
    assert_eq!(recs[1]["json"], Value::Null);
    assert_eq!(m.requests().len(), 2);

    // DELETE clears records and faults.
    m.add_fault(&json!({"times": 0, "fault": {"status": 500}}))
        .unwrap();
    let resp = http::request(m.port(), "DELETE", "/_mock/requests", &[], b"").unwrap();
    assert_eq!(resp.status, 200);
    assert!(m.requests().is_empty());
    assert_eq!(openai(&m, &[], &chat(false)).status, 200);
    assert_eq!(m.requests().len(), 1);
    m.clear();
    assert!(m.requests().is_empty());
}

#[test]
fn chunked_request_body() {
    let m = mock();
    let body = chat(false).to_string();
    let (a, b) = body.as_bytes().split_at(17);
    let (b, c) = b.split_at(40);
    let resp = http::request_chunked(
        m.port(),
        "POST",
        "/v1/chat/completions",
        &[OPENAI_AUTH, JSON_CT],
        &[a, b, c],
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["choices"][0]["message"]["content"],
        "mock reply to: say hello world"
    );
    let rec = &m.requests()[0];
    assert_eq!(rec["headers"]["transfer-encoding"], "chunked");
    assert_eq!(rec["json"], chat(false));
}

/// Two requests on one connection (what Envoy's upstream pool does), the second chunked.
#[test]
fn keep_alive() {
    let m = mock();
    let stream = TcpStream::connect(("127.0.0.1", m.port())).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let body = chat(false).to_string();
    let read_response = |r: &mut BufReader<TcpStream>| -> Value {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            assert!(!h.to_ascii_lowercase().starts_with("connection: close"));
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; len];
        r.read_exact(&mut buf).unwrap();
        serde_json::from_slice(&buf).unwrap()
    };
    write!(
        w,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    assert_eq!(read_response(&mut r)["id"], "chatcmpl-mock-1");
    write!(
        w,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    )
    .unwrap();
    assert_eq!(read_response(&mut r)["id"], "chatcmpl-mock-2");
    assert_eq!(m.requests().len(), 2);
}

fn fault_header(f: &Value) -> (&'static str, String) {
    ("x-mock-fault", f.to_string())
}

#[test]
fn fault_status_in_provider_shape() {
    let m = mock();
    for status in [429u16, 500, 503] {
        let (n, v) = fault_header(&json!({ "status": status }));
        let resp = openai(&m, &[(n, &v)], &chat(false));
        assert_eq!(resp.status, status);
        let body = resp.json();
        assert!(body["error"]["message"].is_string());
        assert_eq!(
            resp.header("retry-after"),
            if status == 429 { Some("1") } else { None }
        );
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        }

        let resp = anthropic(&m, &[(n, &v)], &messages(true));
        assert_eq!(resp.status, status);
        let body = resp.json();
        assert_eq!(body["type"], "error");
        let kind = match status {
            429 => "rate_limit_error",
            _ => "api_error",
        };
        assert_eq!(body["error"]["type"], kind);

        let resp = post(&m, AZURE_PATH, &[("api-key", "k"), (n, &v)], &chat(false));
        assert_eq!(resp.status, status);
        assert!(resp.json()["error"]["message"].is_string());
    }
    assert_eq!(m.requests().len(), 9);
}

#[test]
fn fault_malformed() {
    let m = mock();
    let (n, v) = fault_header(&json!({"malformed": true}));
    let resp = openai(&m, &[(n, &v)], &chat(false));
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert!(resp.text().starts_with("{\"choices\""), "{}", resp.text());
    assert!(resp.try_json().is_err());

    let resp = anthropic(&m, &[(n, &v)], &messages(true));
    assert_eq!(resp.status, 200);
    let events = resp.sse();
    assert!(serde_json::from_str::<Value>(&events[0].data).is_ok());
    assert!(serde_json::from_str::<Value>(&events[1].data).is_err());
    assert_eq!(events.len(), 11);
}

#[test]
fn fault_delay() {
    let m = mock();
    let (n, v) = fault_header(&json!({"delay_ms": 300}));
    let t = Instant::now();
    let resp = openai(&m, &[(n, &v)], &chat(false));
    assert_eq!(resp.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn fault_cut_after() {
    let m = mock();
    let (n, v) = fault_header(&json!({"cut_after": 3}));
    let resp = openai(&m, &[(n, &v)], &chat(true));
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "no terminating chunk");
    assert_eq!(resp.chunks.len(), 3);
    assert_eq!(openai_stream_text(&data_json(&resp)), "mock reply ");

    let resp = anthropic(&m, &[(n, &v)], &messages(true));
    assert!(!resp.complete);
    assert_eq!(resp.sse().len(), 3);

    // cut_after 0: headers only, then the connection closes.
    let (n0, v0) = fault_header(&json!({"cut_after": 0}));
    let resp = openai(&m, &[(n0, &v0)], &chat(true));
    assert!(!resp.complete);
    assert!(resp.body.is_empty());

    // Non-streaming: the first n bytes of the body.
    let resp = openai(&m, &[(n, &v)], &chat(false));
    assert!(!resp.complete);
    assert_eq!(resp.body, b"{\"c");

    // The server still works afterwards.
    assert_eq!(openai(&m, &[], &chat(true)).chunks.len(), 9);
}

#[test]
fn fault_drip_shows_chunk_timing() {
    let m = mock();
    let (n, v) = fault_header(&json!({"drip_ms": 100}));
    let body = chat(true).to_string();
    let headers = [OPENAI_AUTH, (n, &v)];
    let t = Instant::now();
    let mut s = http::open(
        m.port(),
        "POST",
        "/v1/chat/completions",
        &headers,
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(s.status, 200);
    let mut arrivals = Vec::new();
    while let Some(chunk) = s.next_chunk().unwrap() {
        arrivals.push((t.elapsed(), chunk));
    }
    assert!(s.complete());
    assert_eq!(arrivals.len(), 9);
    // 8 sleeps of 100 ms between 9 events; generous margins for a loaded machine.
    let span = arrivals[8].0 - arrivals[0].0;
    assert!(
        span >= Duration::from_millis(600),
        "events arrived within {span:?}"
    );
    for pair in arrivals.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= Duration::from_millis(30),
            "{:?} -> {:?}",
            pair[0].0,
            pair[1].0
        );
    }
    assert_eq!(String::from_utf8_lossy(&arrivals[8].1), "data: [DONE]\n\n");
}

#[test]
fn fault_drip_and_cut_combined() {
    let m = mock();
    let (n, v) = fault_header(&json!({"drip_ms": 20, "cut_after": 2, "delay_ms": 50}));
    let t = Instant::now();
    let resp = anthropic(&m, &[(n, &v)], &messages(true));
    assert!(t.elapsed() >= Duration::from_millis(70));
    assert!(!resp.complete);
    assert_eq!(resp.chunks.len(), 2);
}

#[test]
fn queued_faults_match_and_count_down() {
    let m = mock();
    let add = |rule: Value| {
        let resp = http::request(
            m.port(),
            "POST",
            "/_mock/faults",
            &[JSON_CT],
            rule.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
    };
    add(json!({"path_prefix": "/v1/messages", "times": 2, "fault": {"status": 529}}));
    add(json!({"model": "gpt-4o-mini", "fault": {"status": 503}}));
    add(json!({"model": "special", "times": 0, "fault": {"status": 500}}));

    // Path rule: twice, then gone.
    assert_eq!(anthropic(&m, &[], &messages(false)).status, 529);
    let resp = anthropic(&m, &[], &messages(false));
    assert_eq!(resp.status, 529);
    assert_eq!(resp.json()["error"]["type"], "overloaded_error");
    assert_eq!(anthropic(&m, &[], &messages(false)).status, 200);

    // Model rule: once (default times).
    let mut other = chat(false);
    other["model"] = json!("other");
    assert_eq!(openai(&m, &[], &other).status, 200);
    assert_eq!(openai(&m, &[], &chat(false)).status, 503);
    assert_eq!(openai(&m, &[], &chat(false)).status, 200);

    // times 0: forever; the x-mock-fault header takes precedence and does not consume rules.
    let mut special = chat(false);
    special["model"] = json!("special");
    for _ in 0..3 {
        assert_eq!(openai(&m, &[], &special).status, 500);
    }
    let (n, v) = fault_header(&json!({"status": 429}));
    assert_eq!(openai(&m, &[(n, &v)], &special).status, 429);

    // Azure matches the deployment as model.
    m.add_fault(&json!({"model": "gpt4o-prod", "fault": {"status": 502}}))
        .unwrap();
    assert_eq!(
        post(&m, AZURE_PATH, &[("api-key", "k")], &chat(false)).status,
        502
    );

    // Faults clear with the records.
    http::request(m.port(), "DELETE", "/_mock/requests", &[], b"").unwrap();
    assert_eq!(openai(&m, &[], &special).status, 200);
}

#[test]
fn queued_faults_first_match_wins() {
    let m = mock();
    m.add_fault(&json!({"path_prefix": "/v1/chat", "fault": {"status": 500}}))
        .unwrap();
    m.add_fault(&json!({"fault": {"status": 503}})).unwrap();
    assert_eq!(openai(&m, &[], &chat(false)).status, 500);
    assert_eq!(openai(&m, &[], &chat(false)).status, 503);
    assert_eq!(openai(&m, &[], &chat(false)).status, 200);
}

#[test]
fn invalid_faults_are_refused() {
    let m = mock();
    for rule in [
        json!({"fault": {"delay": 1}}),
        json!({"times": 1}),
        json!({"fault": {"status": "x"}}),
        json!([1]),
    ] {
        let resp = http::request(
            m.port(),
            "POST",
            "/_mock/faults",
            &[],
            rule.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(resp.status, 400, "{rule}");
    }
    let resp = openai(&m, &[("x-mock-fault", "{bad")], &chat(false));
    assert_eq!(resp.status, 400);
    assert!(m.add_fault(&json!({"fault": {"cut_after": -1}})).is_err());
}

#[test]
fn mock_provider_binary() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-provider"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    let resp = http::request(
        port,
        "POST",
        "/v1/chat/completions",
        &[OPENAI_AUTH],
        chat(false).to_string().as_bytes(),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(resp.unwrap().status, 200);
}

/// The launcher works with no wasm filter at all: Envoy routes on `x-ai-cluster` to the mock.
#[test]
fn envoy_without_filters_proxies_to_mock() {
    let m = mock();
    let envoy = Envoy::start(EnvoyOptions::new(m.port())).unwrap();
    assert_ne!(envoy.port, envoy.admin_port);

    let headers = [("x-ai-cluster", "mock_openai"), OPENAI_AUTH, JSON_CT];
    let resp = envoy.request(
        "POST",
        "/v1/chat/completions",
        &headers,
        chat(false).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), envoy.logs());
    assert_eq!(
        resp.json()["choices"][0]["message"]["content"],
        "mock reply to: say hello world"
    );
    let rec = &m.requests()[0];
    assert_eq!(rec["headers"]["x-ai-cluster"], "mock_openai");
    assert_eq!(rec["json"], chat(false));

    // Streaming passes through chunk by chunk.
    let (n, v) = fault_header(&json!({"drip_ms": 30}));
    let headers = [
        ("x-ai-cluster", "mock_anthropic"),
        ("x-api-key", "k"),
        ("anthropic-version", "v"),
        (n, &v),
    ];
    let resp = envoy.request(
        "POST",
        "/v1/messages",
        &headers,
        messages(true).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.sse().len(), 11);
    assert!(resp.chunks.len() > 5, "{} chunks", resp.chunks.len());

    // A cut upstream stream reaches the client as an incomplete body.
    let (n, v) = fault_header(&json!({"cut_after": 2}));
    let headers = [("x-ai-cluster", "mock_openai"), OPENAI_AUTH, (n, &v)];
    let resp = envoy.request(
        "POST",
        "/v1/chat/completions",
        &headers,
        chat(true).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200);
    assert!(!resp.complete);

    let stats = envoy.stats_prometheus();
    assert!(
        stats.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"mock_openai\"}"),
        "{stats}"
    );
    assert_eq!(envoy.stat("cluster.mock_anthropic.upstream_rq_200"), Some(1));
    assert!(
        envoy.wait_for_log("[access] POST /v1/messages 200", Duration::from_secs(5)),
        "{}",
        envoy.logs()
    );
}

/// A config Envoy refuses fails fast with Envoy's own explanation in the error.
#[test]
fn envoy_start_failure_shows_the_log() {
    let m = mock();
    let filter = e2e::envoy::Filter::new("broken", "/nonexistent/broken.wasm", json!({}));
    let err = Envoy::start(EnvoyOptions::new(m.port()).filter(filter)).unwrap_err();
    let msg = format!("{err:?}");
    assert!(msg.contains("envoy did not start"), "{msg}");
    assert!(msg.contains("--- envoy log"), "{msg}");
    assert!(msg.contains("broken.wasm"), "{msg}");
    // The failed run's directory is kept for inspection; this one is expected, so remove it.
    let config = msg.lines().find_map(|l| l.strip_prefix("config: ")).unwrap();
    std::fs::remove_dir_all(std::path::Path::new(config).parent().unwrap()).unwrap();
}
