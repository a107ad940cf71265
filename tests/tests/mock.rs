//! The mock providers on their own (plus one Envoy smoke test with no wasm filter).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::http::{self, Response};
use e2e::mock::{reply_to, reply_to_tool, words, MockServer, EMBEDDING_DIMENSIONS};
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
fn fault_reset_closes_before_any_byte() {
    let m = mock();
    let (n, v) = fault_header(&json!({"reset": true, "delay_ms": 20}));
    for path in ["/v1/chat/completions", "/v1/messages", "/echo"] {
        let err = e2e::http::request(m.port(), "POST", path, &[(n, &v)], b"{}").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{path}: {err}");
    }
    assert_eq!(m.requests().len(), 3, "the requests were read and recorded");
    assert_eq!(openai(&m, &[], &chat(false)).status, 200);
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

// ---------------------------------------------------------------------------------------------------
// Tools, images, structured output, cached usage, embeddings, echo.

/// A 1x1 PNG.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn weather_schema() -> Value {
    json!({"type": "object", "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"}
    }, "required": ["location", "unit"]})
}

fn time_schema() -> Value {
    json!({"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]})
}

fn openai_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": weather_schema()}},
        {"type": "function", "function": {"name": "get_time", "parameters": time_schema()}}
    ])
}

fn anthropic_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather now", "input_schema": weather_schema()},
        {"name": "get_time", "input_schema": time_schema()}
    ])
}

fn openai_tool_chat(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "tools": openai_tools(),
        "messages": [{"role": "user", "content": text}]})
}

fn anthropic_tool_chat(text: &str, stream: bool) -> Value {
    json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 100, "stream": stream, "tools": anthropic_tools(),
        "messages": [{"role": "user", "content": text}]})
}

fn is_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 24 && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The data of each SSE event, parsed.
fn event_json(resp: &Response) -> Vec<Value> {
    resp.sse()
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

fn event_names(resp: &Response) -> Vec<String> {
    resp.sse()
        .into_iter()
        .map(|e| e.event.unwrap_or_default())
        .collect()
}

/// A tiny JSON Schema check (the keywords the mock's structured output uses): `Err(path: reason)`.
fn conforms(v: &Value, schema: &Value, root: &Value, path: &str) -> Result<(), String> {
    let fail = |why: String| Err(format!("{path}: {why} ({v})"));
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return conforms(v, root.pointer(&r[1..]).unwrap(), root, path);
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        return match branches.iter().any(|b| conforms(v, b, root, path).is_ok()) {
            true => Ok(()),
            false => fail("matches no anyOf branch".into()),
        };
    }
    if let Some(c) = schema.get("const") {
        if v != c {
            return fail(format!("is not {c}"));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            return fail("is not in the enum".into());
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let type_ok = |t: &str| match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| type_ok(t)) {
        return fail(format!("is not of type {types:?}"));
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(x) = v.as_f64() {
        let bad = num("minimum").is_some_and(|m| x < m)
            || num("maximum").is_some_and(|m| x > m)
            || num("exclusiveMinimum").is_some_and(|m| x <= m)
            || num("exclusiveMaximum").is_some_and(|m| x >= m);
        if bad {
            return fail("is out of bounds".into());
        }
    }
    if let Some(s) = v.as_str() {
        let n = s.chars().count() as f64;
        if num("minLength").is_some_and(|m| n < m) || num("maxLength").is_some_and(|m| n > m) {
            return fail("has the wrong length".into());
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as f64;
        if num("minItems").is_some_and(|m| n < m) || num("maxItems").is_some_and(|m| n > m) {
            return fail("has the wrong number of items".into());
        }
        if let Some(item) = schema.get("items") {
            for (i, x) in items.iter().enumerate() {
                conforms(x, item, root, &format!("{path}/{i}"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(r.as_str().unwrap()) {
                return fail(format!("lacks required {r}"));
            }
        }
        for (k, x) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => conforms(x, sub, root, &format!("{path}/{k}"))?,
                None if schema.get("additionalProperties") == Some(&json!(false)) => {
                    return fail(format!("has extra property {k}"))
                }
                None => {}
            }
        }
    }
    Ok(())
}

fn check_schema(v: &Value, schema: &Value) {
    if let Err(e) = conforms(v, schema, schema, "$") {
        panic!("{e}");
    }
}

#[test]
fn schema_check_rejects_what_it_should() {
    let schema = json!({"type": "object", "properties": {"a": {"enum": ["x"]}, "n": {"type": "integer", "maximum": 3},
        "l": {"type": "array", "items": {"type": "string"}, "maxItems": 1}}, "required": ["a"], "additionalProperties": false});
    assert!(conforms(&json!({"a": "x", "n": 3, "l": ["s"]}), &schema, &schema, "$").is_ok());
    for bad in [
        json!({}),
        json!({"a": "y"}),
        json!({"a": "x", "n": 4}),
        json!({"a": "x", "n": 1.5}),
        json!({"a": "x", "l": ["s", "t"]}),
        json!({"a": "x", "l": [1]}),
        json!({"a": "x", "z": 1}),
        json!([]),
    ] {
        assert!(conforms(&bad, &schema, &schema, "$").is_err(), "{bad}");
    }
}

#[test]
fn openai_tool_call() {
    let m = mock();
    let resp = openai(&m, &[], &openai_tool_chat("What's the weather in Paris?", false));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"], Value::Null);
    assert!(message.as_object().unwrap().contains_key("content"));
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(is_id(call["id"].as_str().unwrap(), "call_"), "{call}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "Paris", "unit": "celsius"}));
    check_schema(&args, &weather_schema());
    assert_eq!(
        call.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["function", "id", "type"]
    );

    // The same request again: the same id.
    let again = openai(&m, &[], &openai_tool_chat("What's the weather in Paris?", false)).json();
    assert_eq!(again["choices"][0]["message"]["tool_calls"][0]["id"], call["id"]);
    // A prompt that asks for no tool: text.
    let v = openai(&m, &[], &openai_tool_chat("Tell me a joke", false)).json();
    assert_eq!(v["choices"][0]["message"]["content"], reply_to("Tell me a joke"));
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[test]
fn openai_parallel_tool_calls_and_tool_choice() {
    let m = mock();
    let text = "What's the weather in Paris in Fahrenheit for 3 days and the time in Tokyo?";
    let calls = |body: &Value| -> (Vec<(String, Value)>, Value) {
        let v = openai(&m, &[], body).json();
        let choice = &v["choices"][0];
        let calls = choice["message"]["tool_calls"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let args =
                            serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
                        (c["function"]["name"].as_str().unwrap().to_string(), args)
                    })
                    .collect()
            })
            .unwrap_or_default();
        (calls, choice["finish_reason"].clone())
    };
    let body = openai_tool_chat(text, false);
    let (both, finish) = calls(&body);
    assert_eq!(
        both,
        vec![
            (
                "get_weather".to_string(),
                json!({"location": "Paris", "unit": "fahrenheit"})
            ),
            ("get_time".to_string(), json!({"timezone": "Tokyo"})),
        ]
    );
    assert_eq!(finish, "tool_calls");
    let v = openai(&m, &[], &body).json();
    let ids: Vec<&str> = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1]);

    let mut one = body.clone();
    one["parallel_tool_calls"] = json!(false);
    assert_eq!(
        calls(&one).0.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["get_weather"]
    );

    let mut none = body.clone();
    none["tool_choice"] = json!("none");
    let v = openai(&m, &[], &none).json();
    assert_eq!(v["choices"][0]["message"]["content"], reply_to(text));

    // required: the first tool when the prompt asks for none.
    let mut required = openai_tool_chat("hello there", false);
    required["tool_choice"] = json!("required");
    let (c, finish) = calls(&required);
    assert_eq!(
        c,
        vec![(
            "get_weather".to_string(),
            json!({"location": "location", "unit": "celsius"})
        )]
    );
    assert_eq!(finish, "tool_calls");

    // A named function: that one, and OpenAI then finishes with "stop".
    let mut named = body.clone();
    named["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    let (c, finish) = calls(&named);
    assert_eq!(c, vec![("get_time".to_string(), json!({"timezone": "Tokyo"}))]);
    assert_eq!(finish, "stop");

    // A named function that is not offered, a bad tool_choice, a bad tool: 400 in OpenAI's shape.
    for (field, value) in [
        (
            "tool_choice",
            json!({"type": "function", "function": {"name": "nope"}}),
        ),
        ("tool_choice", json!("sometimes")),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "bad name!"}}]),
        ),
        ("tools", json!([{"type": "function"}])),
        ("parallel_tool_calls", json!("yes")),
    ] {
        let mut bad = body.clone();
        bad[field] = value;
        let resp = openai(&m, &[], &bad);
        assert_eq!(resp.status, 400, "{field}: {}", resp.text());
        let e = resp.json();
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert!(e["error"]["param"].as_str().unwrap().starts_with(field), "{e}");
    }
}

#[test]
fn openai_tool_result_is_quoted() {
    let m = mock();
    let mut body = openai_tool_chat("What's the weather in Paris?", false);
    let first = openai(&m, &[], &body).json();
    let call = first["choices"][0]["message"]["tool_calls"][0].clone();
    body["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}),
        json!({"role": "tool", "tool_call_id": call["id"], "content": "22C and sunny"}),
    ]);
    let v = openai(&m, &[], &body).json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        reply_to_tool(&["22C and sunny"])
    );
    assert_eq!(
        reply_to_tool(&["22C and sunny"]),
        "mock reply to tool result: \"22C and sunny\""
    );
    // Two results (content as text parts), streamed.
    body["messages"].as_array_mut().unwrap().push(
        json!({"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain later"}]}),
    );
    body["stream"] = json!(true);
    let chunks = data_json(&openai(&m, &[], &body));
    assert_eq!(
        openai_stream_text(&chunks),
        reply_to_tool(&["22C and sunny", "rain later"])
    );
}

#[test]
fn openai_streamed_tool_calls_match_the_json_answer() {
    let m = mock();
    let text = "What's the weather in Paris in Fahrenheit for 3 days and the time in Tokyo?";
    let whole = openai(&m, &[], &openai_tool_chat(text, false)).json();
    let calls = whole["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(calls.len(), 2);

    let mut body = openai_tool_chat(text, true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = openai(&m, &[], &body);
    assert_eq!(resp.status, 200);
    let chunks = data_json(&resp);
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter(|c| !c["choices"].as_array().unwrap().is_empty())
        .map(|c| &c["choices"][0]["delta"])
        .collect();
    // Call 0 opens with the role, its id and name and empty arguments.
    assert_eq!(
        deltas[0],
        &json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": calls[0]["id"],
            "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
    );
    let mut args = [String::new(), String::new()];
    let mut fragments = [0, 0];
    let mut opened = vec![];
    for d in &deltas[1..deltas.len() - 1] {
        let tc = &d["tool_calls"];
        assert_eq!(tc.as_array().unwrap().len(), 1, "{d}");
        let i = tc[0]["index"].as_u64().unwrap() as usize;
        if tc[0].get("id").is_some() {
            assert_eq!(
                d,
                &&json!({"tool_calls": [{"index": i, "id": calls[i]["id"], "type": "function",
                    "function": {"name": calls[i]["function"]["name"], "arguments": ""}}]})
            );
            opened.push(i);
        } else {
            assert_eq!(d.as_object().unwrap().len(), 1, "{d}");
            assert_eq!(tc[0].as_object().unwrap().len(), 2, "{d}");
            args[i].push_str(tc[0]["function"]["arguments"].as_str().unwrap());
            fragments[i] += 1;
        }
    }
    assert_eq!(opened, [1]);
    for i in 0..2 {
        assert_eq!(
            args[i],
            calls[i]["function"]["arguments"].as_str().unwrap(),
            "call {i}"
        );
        assert!(fragments[i] >= 2, "call {i} came in {} fragments", fragments[i]);
    }
    let last = chunks
        .iter()
        .rev()
        .find(|c| !c["choices"].as_array().unwrap().is_empty())
        .unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks.last().unwrap()["usage"], whole["usage"]);
    assert_eq!(resp.sse().last().unwrap().data, "[DONE]");
}

#[test]
fn anthropic_tool_use() {
    let m = mock();
    let resp = anthropic(
        &m,
        &[],
        &anthropic_tool_chat("What's the weather in Paris?", false),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["stop_reason"], "tool_use");
    let content = v["content"].as_array().unwrap();
    assert_eq!(content.len(), 1);
    let block = &content[0];
    assert_eq!(
        block.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "input", "name", "type"]
    );
    assert_eq!(block["type"], "tool_use");
    assert!(is_id(block["id"].as_str().unwrap(), "toolu_"), "{block}");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"location": "Paris", "unit": "celsius"}));

    // Two tools asked for: two blocks; disable_parallel_tool_use: one.
    let text = "weather in Rome and the time in Oslo";
    let names = |body: &Value| -> Vec<String> {
        anthropic(&m, &[], body).json()["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap_or("<text>").to_string())
            .collect()
    };
    let body = anthropic_tool_chat(text, false);
    assert_eq!(names(&body), ["get_weather", "get_time"]);
    let mut single = body.clone();
    single["tool_choice"] = json!({"type": "auto", "disable_parallel_tool_use": true});
    assert_eq!(names(&single), ["get_weather"]);
    let mut none = body.clone();
    none["tool_choice"] = json!({"type": "none"});
    assert_eq!(names(&none), ["<text>"]);
    let mut any = anthropic_tool_chat("hi", false);
    any["tool_choice"] = json!({"type": "any"});
    assert_eq!(names(&any), ["get_weather"]);
    let mut named = body.clone();
    named["tool_choice"] = json!({"type": "tool", "name": "get_time"});
    assert_eq!(names(&named), ["get_time"]);

    // Server tools are accepted and never called; a custom tool without a schema is refused.
    let mut server = anthropic_tool_chat("search the web for the weather", false);
    server["tools"] = json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]);
    assert_eq!(names(&server), ["<text>"]);
    for (field, value) in [
        ("tools", json!([{"name": "t"}])),
        (
            "tools",
            json!([{"name": "t", "input_schema": {"type": "string"}}]),
        ),
        ("tool_choice", json!({"type": "tool", "name": "nope"})),
        ("tool_choice", json!({"type": "sometimes"})),
    ] {
        let mut bad = body.clone();
        bad[field] = value;
        let resp = anthropic(&m, &[], &bad);
        assert_eq!(resp.status, 400, "{field}: {}", resp.text());
        assert_eq!(resp.json()["error"]["type"], "invalid_request_error");
    }
}

#[test]
fn anthropic_tool_result_is_quoted() {
    let m = mock();
    let mut body = anthropic_tool_chat("What's the weather in Paris?", false);
    let first = anthropic(&m, &[], &body).json();
    let block = first["content"][0].clone();
    body["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": [block.clone()]}),
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": block["id"], "content": "22C and sunny"}
        ]}),
    ]);
    let v = anthropic(&m, &[], &body).json();
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": reply_to_tool(&["22C and sunny"])}])
    );
    // The tool result counts as prompt.
    assert_eq!(
        v["usage"]["input_tokens"],
        words("What's the weather in Paris?") + words("22C and sunny")
    );
    // Block content, streamed.
    body["messages"][2]["content"][0]["content"] = json!([{"type": "text", "text": "rain"}]);
    body["stream"] = json!(true);
    let text: String = event_json(&anthropic(&m, &[], &body))
        .iter()
        .filter_map(|d| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, reply_to_tool(&["rain"]));
}

#[test]
fn anthropic_streamed_tool_use_matches_the_json_answer() {
    let m = mock();
    let text = "weather in Rome and the time in Oslo";
    let whole = anthropic(&m, &[], &anthropic_tool_chat(text, false)).json();
    let blocks = whole["content"].as_array().unwrap().clone();
    assert_eq!(blocks.len(), 2);

    let resp = anthropic(&m, &[], &anthropic_tool_chat(text, true));
    assert_eq!(resp.status, 200);
    let names = event_names(&resp);
    let data = event_json(&resp);
    for (name, d) in names.iter().zip(&data) {
        assert_eq!(d["type"], name.as_str());
    }
    assert_eq!(names[0], "message_start");
    assert_eq!(data[0]["message"]["content"], json!([]));
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
    let delta = &data[data.len() - 2];
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "tool_use", "stop_sequence": null})
    );
    assert_eq!(
        delta["usage"],
        json!({"output_tokens": whole["usage"]["output_tokens"]})
    );

    let mut partial = [String::new(), String::new()];
    let mut fragments = [0, 0];
    let mut open: Option<usize> = None;
    let mut sequence = vec![];
    for (name, d) in names.iter().zip(&data) {
        match name.as_str() {
            "content_block_start" => {
                let i = d["index"].as_u64().unwrap() as usize;
                assert_eq!(open, None);
                open = Some(i);
                sequence.push(format!("start {i}"));
                assert_eq!(
                    d["content_block"],
                    json!({"type": "tool_use", "id": blocks[i]["id"], "name": blocks[i]["name"], "input": {}})
                );
            }
            "content_block_delta" => {
                let i = d["index"].as_u64().unwrap() as usize;
                assert_eq!(open, Some(i));
                assert_eq!(d["delta"]["type"], "input_json_delta");
                assert_eq!(d["delta"].as_object().unwrap().len(), 2);
                if fragments[i] == 0 {
                    assert_eq!(
                        d["delta"]["partial_json"], "",
                        "the API opens with an empty fragment"
                    );
                }
                partial[i].push_str(d["delta"]["partial_json"].as_str().unwrap());
                fragments[i] += 1;
            }
            "content_block_stop" => {
                let i = d["index"].as_u64().unwrap() as usize;
                assert_eq!(open.take(), Some(i));
                sequence.push(format!("stop {i}"));
            }
            _ => {}
        }
    }
    assert_eq!(sequence, ["start 0", "stop 0", "start 1", "stop 1"]);
    assert_eq!(names[2], "ping");
    for i in 0..2 {
        assert_eq!(partial[i], blocks[i]["input"].to_string(), "block {i}");
        assert_eq!(
            serde_json::from_str::<Value>(&partial[i]).unwrap(),
            blocks[i]["input"]
        );
        assert!(fragments[i] >= 3, "block {i}: {} fragments", fragments[i]);
    }
}

#[test]
fn openai_images() {
    let m = mock();
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "compare these"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    ]}]});
    let resp = openai(&m, &[], &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["choices"][0]["message"]["content"],
        "mock reply to: compare these I see 2 images."
    );
    assert_eq!(
        m.requests()[0]["json"],
        body,
        "the record keeps the request as sent"
    );

    let mut one = body.clone();
    one["messages"][0]["content"].as_array_mut().unwrap().pop();
    let v = openai(&m, &[], &one).json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mock reply to: compare these I see 1 image."
    );

    let cases = [
        (
            json!({"type": "image_url"}),
            "missing_required_parameter",
            "messages[0].content[1].image_url",
        ),
        (
            json!({"type": "image_url", "image_url": "https://x/y.png"}),
            "invalid_type",
            "messages[0].content[1].image_url",
        ),
        (
            json!({"type": "image_url", "image_url": {}}),
            "missing_required_parameter",
            "messages[0].content[1].image_url.url",
        ),
        (
            json!({"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "huge"}}),
            "invalid_value",
            "messages[0].content[1].image_url.detail",
        ),
        (
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}),
            "invalid_value",
            "messages[0].content[1].image_url.url",
        ),
        (
            json!({"type": "image_url", "image_url": {"url": format!("data:image/tiff;base64,{PNG}")}}),
            "invalid_value",
            "messages[0].content[1].image_url.url",
        ),
        (
            json!({"type": "image_url", "image_url": {"url": format!("data:image/png,{PNG}")}}),
            "invalid_value",
            "messages[0].content[1].image_url.url",
        ),
        (
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8gd29ybGQ="}}),
            "invalid_image_format",
            "messages[0].content[1].image_url.url",
        ),
    ];
    for (part, code, param) in cases {
        let mut bad = body.clone();
        bad["messages"][0]["content"][1] = part.clone();
        let resp = openai(&m, &[], &bad);
        assert_eq!(resp.status, 400, "{part}");
        let e = resp.json();
        assert_eq!(e["error"]["type"], "invalid_request_error", "{part}");
        assert_eq!(e["error"]["code"], code, "{part}");
        assert_eq!(e["error"]["param"], param, "{part}");
        assert!(e["error"]["message"].as_str().unwrap().len() > 20);
    }
    // Azure validates the same way.
    let mut bad = body.clone();
    bad["messages"][0]["content"][1] = json!({"type": "image_url", "image_url": {}});
    assert_eq!(post(&m, AZURE_PATH, &[("api-key", "k")], &bad).status, 400);
}

#[test]
fn anthropic_images() {
    let m = mock();
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "what differs?"}
    ]}]});
    let resp = anthropic(&m, &[], &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["content"][0]["text"],
        "mock reply to: what differs? I see 2 images."
    );
    assert_eq!(m.requests()[0]["json"], body);
    let streamed: String = event_json(&anthropic(&m, &[], &{
        let mut b = body.clone();
        b["stream"] = json!(true);
        b
    }))
    .iter()
    .filter_map(|d| d.pointer("/delta/text").and_then(Value::as_str))
    .collect();
    assert_eq!(streamed, "mock reply to: what differs? I see 2 images.");

    let cases = [
        (json!({"type": "image"}), "messages.0.content.0.image.source"),
        (
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG}}),
            "media_type",
        ),
        (
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png"}}),
            "data",
        ),
        (
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGVsbG8="}}),
            "Could not process image",
        ),
        (
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}}),
            "image/png image",
        ),
        (
            json!({"type": "image", "source": {"type": "url", "url": "ftp://x/y.png"}}),
            "url",
        ),
        (
            json!({"type": "image", "source": {"type": "svg"}}),
            "expected tags",
        ),
    ];
    for (block, needle) in cases {
        let mut bad = body.clone();
        bad["messages"][0]["content"][0] = block.clone();
        let resp = anthropic(&m, &[], &bad);
        assert_eq!(resp.status, 400, "{block}");
        let e = resp.json();
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{block}: {msg}");
    }
}

fn ticket_schema() -> Value {
    json!({"type": "object", "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "other"]},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "urgent": {"type": "boolean"},
        "summary": {"type": "string", "maxLength": 40},
        "people": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "contact": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}},
            "required": ["email"], "additionalProperties": false},
        "reference": {"type": ["string", "null"], "pattern": "^TCK-[0-9]{4}$"}
    }, "required": ["category", "priority", "urgent", "summary", "people", "contact", "reference"],
    "additionalProperties": false})
}

const TICKET: &str = "Urgent: Alice and Bob were charged twice, a billing problem";

#[test]
fn openai_structured_output() {
    let m = mock();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": TICKET}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "ticket", "strict": true, "schema": ticket_schema()}}});
    let v = openai(&m, &[], &body).json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let answer: Value = serde_json::from_str(text).unwrap();
    check_schema(&answer, &ticket_schema());
    assert_eq!(
        answer,
        json!({"category": "billing", "priority": 5, "urgent": true, "summary": "Urgent: Alice and Bob were",
            "people": ["Alice", "Bob"], "contact": {"email": "user@example.com"}, "reference": "TCK-0000"})
    );
    assert_eq!(v["usage"]["completion_tokens"], words(text));

    // Streamed: the fragments concatenate to the same JSON text.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let chunks = data_json(&openai(&m, &[], &streamed));
    assert!(chunks.len() > 5);
    assert_eq!(openai_stream_text(&chunks), text);

    // Azure, and the schema's optional properties are filled too.
    let mut azure = body.clone();
    azure.as_object_mut().unwrap().remove("model");
    let schema =
        json!({"type": "object", "properties": {"lang": {"enum": ["en", "fr"]}, "n": {"type": "number"}}});
    azure["response_format"]["json_schema"]["schema"] = schema.clone();
    let v = post(&m, AZURE_PATH, &[("api-key", "k")], &azure).json();
    let answer: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(answer, json!({"lang": "en", "n": words(TICKET)}));
    check_schema(&answer, &schema);

    // x-mock-reply still forces the text, valid or not.
    let v = openai(&m, &[("x-mock-reply", "not json")], &body).json();
    assert_eq!(v["choices"][0]["message"]["content"], "not json");

    // Refused response formats.
    for (format, param) in [
        (json!({"type": "json_schema"}), "response_format.json_schema"),
        (
            json!({"type": "json_schema", "json_schema": {"schema": {}}}),
            "response_format.json_schema.name",
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "a b"}}),
            "response_format.json_schema.name",
        ),
        (json!({"type": "yaml"}), "response_format.type"),
        (json!("json"), "response_format"),
    ] {
        let mut bad = body.clone();
        bad["response_format"] = format.clone();
        let resp = openai(&m, &[], &bad);
        assert_eq!(resp.status, 400, "{format}");
        assert_eq!(resp.json()["error"]["param"], param, "{format}");
    }
}

#[test]
fn openai_json_object() {
    let m = mock();
    let body = json!({"model": "gpt-4o-mini", "response_format": {"type": "json_object"},
        "messages": [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "hello"}]});
    let v = openai(&m, &[], &body).json();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"answer": reply_to("hello")})
    );
    // Like OpenAI, json_object needs the word "json" in the messages.
    let mut bad = body.clone();
    bad["messages"][0]["content"] = json!("Be terse.");
    let resp = openai(&m, &[], &bad);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["param"], "messages");
    let mut text_format = bad.clone();
    text_format["response_format"] = json!({"type": "text"});
    assert_eq!(
        openai(&m, &[], &text_format).json()["choices"][0]["message"]["content"],
        reply_to("hello")
    );
}

/// A server that takes no schema is given it in the prompt (`shared::llm` does so for
/// `openai_compatible` targets): the mock answers for that schema.
#[test]
fn openai_json_object_with_the_schema_in_the_prompt() {
    let m = mock();
    let system = format!(
        "Triage.\n\n{}\n{}",
        shared::llm::wire::SCHEMA_INSTRUCTION,
        ticket_schema()
    );
    let body = json!({"model": "llama", "response_format": {"type": "json_object"},
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": TICKET}]});
    let v = openai(&m, &[], &body).json();
    let answer: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    check_schema(&answer, &ticket_schema());
    assert_eq!(answer["category"], "billing");
    // A marker without a JSON object after it is plain JSON mode.
    let mut plain = body.clone();
    plain["messages"][0]["content"] = json!("Reply in JSON. JSON Schema: none");
    let v = openai(&m, &[], &plain).json();
    let answer: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(answer, json!({"answer": reply_to(TICKET)}));
}

/// A queued fault's `reply` forces the answer text, as `x-mock-reply` does for a caller that sets
/// headers: for calls the gateway makes itself.
#[test]
fn a_fault_can_force_the_reply() {
    let m = mock();
    m.add_fault(&json!({"model": "gpt-4o-mini", "fault": {"reply": "not json"}}))
        .unwrap();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": TICKET}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "ticket", "schema": ticket_schema()}}});
    let v = openai(&m, &[], &body).json();
    assert_eq!(v["choices"][0]["message"]["content"], "not json");
    let v = openai(&m, &[], &body).json();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    check_schema(&serde_json::from_str(text).unwrap(), &ticket_schema());
    let v = openai(&m, &[("x-mock-fault", r#"{"reply": "forced"}"#)], &body).json();
    assert_eq!(v["choices"][0]["message"]["content"], "forced");
    assert!(m.add_fault(&json!({"fault": {"reply": 3}})).is_err());
}

#[test]
fn anthropic_forced_tool_is_structured_output() {
    let m = mock();
    let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 200,
        "tools": [{"name": "record_ticket", "description": "Record a ticket", "input_schema": ticket_schema()}],
        "tool_choice": {"type": "tool", "name": "record_ticket"},
        "messages": [{"role": "user", "content": TICKET}]});
    let v = anthropic(&m, &[], &body).json();
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(block["name"], "record_ticket");
    check_schema(&block["input"], &ticket_schema());
    assert_eq!(block["input"]["people"], json!(["Alice", "Bob"]));
    assert_eq!(block["input"]["category"], "billing");

    // Optional properties are filled as well.
    let mut optional = body.clone();
    let schema = json!({"type": "object", "properties": {"sentiment": {"enum": ["positive", "negative"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1}, "twice": {"type": "boolean"}}});
    optional["tools"][0]["input_schema"] = schema.clone();
    let input = anthropic(&m, &[], &optional).json()["content"][0]["input"].clone();
    assert_eq!(input, json!({"sentiment": "positive", "score": 1, "twice": true}));
    check_schema(&input, &schema);

    // Streamed: the same input, in fragments.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let partial: String = event_json(&anthropic(&m, &[], &streamed))
        .iter()
        .filter_map(|d| d.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&partial).unwrap(), block["input"]);

    // A forced tool among several is an ordinary tool call: the prompt does not name it, so strings are
    // the property names, numbers 1, booleans true.
    let mut several = body.clone();
    several["tools"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "other", "input_schema": {"type": "object"}}));
    let input = anthropic(&m, &[], &several).json()["content"][0]["input"].clone();
    assert_eq!(
        input,
        json!({"category": "billing", "priority": 1, "urgent": true, "summary": "summary", "people": ["people"],
            "contact": {"email": "user@example.com"}, "reference": "TCK-0000"})
    );
    check_schema(&input, &ticket_schema());
}

#[test]
fn cached_and_reasoning_usage() {
    let m = mock();
    // OpenAI: the details objects carry the counts, which are parts of prompt and completion.
    let headers = [
        ("x-mock-usage", "100,40"),
        ("x-mock-cached", "60"),
        ("x-mock-reasoning", "25"),
    ];
    let want = json!({"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 60, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 25, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
    assert_eq!(openai(&m, &headers, &chat(false)).json()["usage"], want);
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    assert_eq!(
        data_json(&openai(&m, &headers, &body)).last().unwrap()["usage"],
        want
    );
    let v = openai(&m, &[("x-mock-cached", "4")], &chat(false)).json();
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(v["usage"]["prompt_tokens"], 10);

    // Anthropic: input_tokens is the uncached part; cache reads and writes are counted apart.
    let headers = [("x-mock-usage", "100,40"), ("x-mock-cached", "60,30")];
    let v = anthropic(&m, &headers, &messages(false)).json();
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 10, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 60, "output_tokens": 40})
    );
    let data = event_json(&anthropic(&m, &headers, &messages(true)));
    assert_eq!(
        data[0]["message"]["usage"],
        json!({"input_tokens": 10, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 60, "output_tokens": 1})
    );
    assert_eq!(
        data[data.len() - 2]["usage"],
        json!({"input_tokens": 10, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 60, "output_tokens": 40})
    );

    // More cached than prompt, or a bad count: 400 in the provider's shape.
    for (h, v) in [
        ("x-mock-cached", "11"),
        ("x-mock-cached", "a"),
        ("x-mock-reasoning", "7"),
    ] {
        let resp = openai(&m, &[(h, v)], &chat(false));
        assert_eq!(resp.status, 400, "{h}: {v}");
        assert!(resp.json()["error"]["message"].as_str().unwrap().contains(h));
    }
    let resp = anthropic(&m, &[("x-mock-cached", "6")], &messages(false));
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["type"], "error");
}

fn embeddings(m: &MockServer, body: &Value) -> Response {
    post(m, "/v1/embeddings", &[OPENAI_AUTH], body)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn openai_embeddings() {
    let m = mock();
    let resp = embeddings(
        &m,
        &json!({"model": "text-embedding-3-small", "input": "hello world"}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-mock-provider"), Some("openai"));
    let v = resp.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["usage"], json!({"prompt_tokens": 2, "total_tokens": 2}));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(
        data[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["embedding", "index", "object"]
    );
    assert_eq!(data[0]["object"], "embedding");
    assert_eq!(data[0]["index"], 0);
    let hello = floats(&data[0]["embedding"]);
    assert_eq!(hello.len(), EMBEDDING_DIMENSIONS);
    assert!((norm(&hello) - 1.0).abs() < 1e-6, "{hello:?}");

    // Several inputs: one vector each, in order; the same text, the same vector.
    let v = embeddings(
        &m,
        &json!({"model": "m", "input": ["a b c", "hello world", "a b c"], "dimensions": 3}),
    )
    .json();
    let vs: Vec<Vec<f64>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| floats(&d["embedding"]))
        .collect();
    assert_eq!(v["data"][2]["index"], 2);
    assert_eq!(vs[0], vs[2]);
    assert_ne!(vs[0], vs[1]);
    assert!(vs.iter().all(|x| x.len() == 3 && (norm(x) - 1.0).abs() < 1e-6));
    assert_eq!(v["usage"]["prompt_tokens"], 3 + 2 + 3);

    // base64: the same vector as little-endian f32.
    let v = embeddings(
        &m,
        &json!({"model": "m", "input": "hello world", "encoding_format": "base64"}),
    )
    .json();
    let raw = shared::crypto::base64_decode(v["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // The JSON floats are the same f32 values (serde_json's default float parsing may be 1 ulp off in f64).
    assert_eq!(decoded, hello.iter().map(|x| *x as f32).collect::<Vec<f32>>());

    // Token arrays.
    let v = embeddings(&m, &json!({"model": "m", "input": [[1, 2, 3], [4]]})).json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["prompt_tokens"], 4);

    // Azure: the deployment is the model.
    let resp = post(
        &m,
        "/openai/deployments/embed-prod/embeddings?api-version=2024-10-21",
        &[("api-key", "k")],
        &json!({"input": "hello world"}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-mock-provider"), Some("azure"));
    assert_eq!(resp.json()["model"], "embed-prod");
    assert_eq!(floats(&resp.json()["data"][0]["embedding"]), hello);

    // Refusals, and faults apply as to chat.
    for (body, param) in [
        (json!({"model": "m", "input": ""}), "input"),
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": [true]}), "input"),
        (
            json!({"model": "m", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (json!({"model": "m", "input": "x", "dimensions": 0}), "dimensions"),
    ] {
        let resp = embeddings(&m, &body);
        assert_eq!(resp.status, 400, "{body}");
        assert_eq!(resp.json()["error"]["param"], param, "{body}");
    }
    let resp = post(&m, "/v1/embeddings", &[], &json!({"model": "m", "input": "x"}));
    assert_eq!(resp.status, 401);
    let (n, v) = fault_header(&json!({"status": 429}));
    let resp = post(
        &m,
        "/v1/embeddings",
        &[OPENAI_AUTH, (n, &v)],
        &json!({"model": "m", "input": "x"}),
    );
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
    let resp = post(
        &m,
        "/v1/embeddings",
        &[OPENAI_AUTH, ("x-mock-usage", "50,0")],
        &json!({"model": "m", "input": "x"}),
    );
    assert_eq!(
        resp.json()["usage"],
        json!({"prompt_tokens": 50, "total_tokens": 50})
    );
    assert_eq!(
        http::request(m.port(), "GET", "/v1/embeddings", &[OPENAI_AUTH], b"")
            .unwrap()
            .status,
        405
    );
}

#[test]
fn echo_endpoint() {
    let m = mock();
    let resp = http::request(
        m.port(),
        "GET",
        "/echo/users/42?expand=orders&tag=a&tag=b%20c",
        &[("X-Trace", "t-1")],
        b"",
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v = resp.json();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/echo/users/42");
    assert_eq!(v["query"], json!({"expand": "orders", "tag": ["a", "b c"]}));
    assert_eq!(v["headers"]["x-trace"], "t-1");
    assert_eq!(v["body"], "");

    let body = json!({"name": "Ada", "tags": [1, 2]});
    let v = post(&m, "/echo", &[], &body).json();
    assert_eq!(
        (v["method"].clone(), v["path"].clone(), v["body"].clone()),
        (json!("POST"), json!("/echo"), body.clone())
    );
    assert_eq!(v["query"], json!({}));
    assert_eq!(v["headers"]["content-type"], "application/json");
    let v = http::request(m.port(), "PUT", "/echo/raw", &[], b"plain text")
        .unwrap()
        .json();
    assert_eq!(v["body"], "plain text");
    let v = http::request(m.port(), "DELETE", "/echo/x", &[], b"")
        .unwrap()
        .json();
    assert_eq!(v["method"], "DELETE");

    let recs = m.requests();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[0]["path"], "/echo/users/42?expand=orders&tag=a&tag=b%20c");
    assert_eq!(recs[1]["json"], body);

    // Faults: by header and queued by path.
    let (n, f) = fault_header(&json!({"status": 503}));
    let resp = http::request(m.port(), "GET", "/echo/a", &[(n, &f)], b"").unwrap();
    assert_eq!(resp.status, 503);
    assert!(resp.json()["error"]["message"].is_string());
    m.add_fault(&json!({"path_prefix": "/echo/flaky", "fault": {"status": 500}}))
        .unwrap();
    assert_eq!(
        http::request(m.port(), "GET", "/echo/flaky", &[], b"")
            .unwrap()
            .status,
        500
    );
    assert_eq!(
        http::request(m.port(), "GET", "/echo/flaky", &[], b"")
            .unwrap()
            .status,
        200
    );
    // /echoes is not the echo endpoint.
    assert_eq!(
        http::request(m.port(), "GET", "/echoes", &[], b"")
            .unwrap()
            .status,
        404
    );
}

#[test]
fn anthropic_accepts_bearer_auth_and_any_header_case() {
    let m = mock();
    for headers in [
        vec![
            ("Authorization", "Bearer sk-ant"),
            ("anthropic-version", "2023-06-01"),
        ],
        vec![("X-Api-Key", "sk-ant"), ("Anthropic-Version", "2023-06-01")],
    ] {
        let resp = post(&m, "/v1/messages", &headers, &messages(false));
        assert_eq!(resp.status, 200, "{headers:?}: {}", resp.text());
    }
    for headers in [
        vec![("authorization", "Bearer "), ("anthropic-version", "2023-06-01")],
        vec![
            ("authorization", "Basic abc"),
            ("anthropic-version", "2023-06-01"),
        ],
        vec![("authorization", "Bearer k")],
    ] {
        assert_eq!(
            post(&m, "/v1/messages", &headers, &messages(false)).status,
            401,
            "{headers:?}"
        );
    }
    // Mixed-case names sent as is on the wire reach OpenAI, Azure and the usage headers too.
    let stream = TcpStream::connect(("127.0.0.1", m.port())).unwrap();
    let mut w = stream.try_clone().unwrap();
    let body = chat(false).to_string();
    write!(
        w,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nX-Mock-Usage: 3,4\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    BufReader::new(stream).read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"total_tokens\":7"), "{text}");
}

#[test]
fn anthropic_thinking_blocks_are_signed_and_checked() {
    let m = mock();
    let mut body = messages(false);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let r = anthropic(&m, &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let thinking = &v["content"][0];
    assert_eq!(thinking["type"], "thinking");
    let text = thinking["thinking"].as_str().unwrap();
    assert!(text.starts_with(e2e::mock::THINKING_PREFIX), "{text}");
    assert_eq!(thinking["signature"], e2e::mock::thinking_signature(text));
    assert_eq!(v["content"][1]["type"], "text");

    // Streamed: thinking deltas, then the signature, then the text in the next block.
    body["stream"] = json!(true);
    let r = anthropic(&m, &[], &body);
    let events = event_json(&r);
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["type"].as_str().unwrap())
        .collect();
    let signature_at = deltas.iter().position(|d| *d == "signature_delta").unwrap();
    assert!(deltas[..signature_at].iter().all(|d| *d == "thinking_delta"));
    assert!(deltas[signature_at + 1..].iter().all(|d| *d == "text_delta"));
    let streamed: String = events
        .iter()
        .filter_map(|e| e["delta"]["thinking"].as_str())
        .collect();
    assert_eq!(streamed, text);

    // Sent back: the right signature passes, a wrong one is refused as Anthropic refuses it.
    let mut back = messages(false);
    let turns = back["messages"].as_array_mut().unwrap();
    turns.push(json!({"role": "assistant", "content": [
        {"type": "thinking", "thinking": text, "signature": e2e::mock::thinking_signature(text)},
        {"type": "text", "text": "ok"}]}));
    turns.push(json!({"role": "user", "content": "and then?"}));
    assert_eq!(anthropic(&m, &[], &back).status, 200);
    back["messages"][1]["content"][0]["signature"] = json!("forged");
    let r = anthropic(&m, &[], &back);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Invalid `signature`"), "{}", r.text());
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 100});
    assert_eq!(anthropic(&m, &[], &body).status, 400);
}
