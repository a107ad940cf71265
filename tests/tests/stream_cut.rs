//! A forwarded stream the provider cuts after the first byte, in real Envoy (mock `cut_after`): what the
//! client gets today, and why no filter can repair it there.
//!
//! Envoy sends the response headers and the first events on to the client as they come; when the
//! upstream connection then drops, the router resets the downstream stream (access log
//! `upstream_reset_after_response_started`, flag `UPE`). The filter gets no last
//! `on_http_response_body` call with `end_of_stream` (only `on_log`, where nothing can be written), so
//! it cannot append an error event or `data: [DONE]`: the client's chunked response stops without its
//! last chunk. The contrast test shows the same filter does end a stream cleanly when the upstream
//! closes it properly without its terminator, i.e. when Envoy does give it the end. Callout mode
//! (`fallback`/`resilience`) is the answer for such models: `resilience.rs`
//! `a_stream_cut_midway_ends_cleanly_for_the_client`. A JSON answer is read whole before its headers
//! leave, so a cut one is a clean 502 (last test).

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::{read_body, read_head};
use e2e::mock::MockServer;
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

fn config(mock_port: u16, plain_port: u16) -> Value {
    let host = format!("127.0.0.1:{mock_port}");
    json!({
        "targets": [
            {"name": "oa", "provider": "openai", "model": "gpt-4o-mini",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-test"}},
            {"name": "an", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
             "endpoint": {"cluster": "mock_anthropic", "host": host}, "auth": {"value": "sk-test"}},
            {"name": "plain", "provider": "openai", "model": "m",
             "endpoint": {"cluster": "plain_sse", "host": format!("127.0.0.1:{plain_port}")}, "auth": {"value": "sk-test"}}
        ],
        "models": {
            "gpt": {"targets": [{"target": "oa"}]},
            "claude": {"targets": [{"target": "an"}]},
            "plain": {"targets": [{"target": "plain"}]}
        }
    })
}

/// An upstream that answers every request with a well-framed chunked SSE stream whose last event is
/// not `[DONE]`, then closes: the stream ends cleanly on the wire, but without its terminator.
fn plain_sse_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let Ok(Some(head)) = read_head(&mut reader) else {
                continue;
            };
            let _ = read_body(&mut reader, &head.headers);
            let event = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half\"}}]}\n\n";
            let mut w = conn;
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{event}\r\n0\r\n\r\n",
                event.len()
            );
            let _ = w.flush();
        }
    });
    port
}

fn start() -> (MockServer, Envoy) {
    let mock = MockServer::start(0).unwrap();
    let plain = plain_sse_upstream();
    let opts = EnvoyOptions::new(mock.port())
        .filter(Filter::ai_proxy(config(mock.port(), plain)))
        .cluster("plain_sse", plain);
    let envoy = Envoy::start(opts).unwrap();
    (mock, envoy)
}

fn stream(envoy: &Envoy, model: &str, fault: Option<&str>) -> e2e::http::Response {
    let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "tell me a long story"}]});
    let mut headers = vec![];
    if let Some(f) = fault {
        headers.push(("x-mock-fault", f));
    }
    envoy.chat(&body, &headers)
}

#[test]
fn a_forwarded_stream_cut_midway_resets_the_client_without_done() {
    let (_mock, envoy) = start();
    for (model, provider) in [("gpt", "openai"), ("claude", "anthropic")] {
        let r = stream(&envoy, model, Some(r#"{"cut_after": 3}"#));
        assert_eq!(r.status, 200, "the headers had left: {}", r.text());
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert!(
            !r.complete,
            "{model}: the chunked response ends without its last chunk"
        );
        let text = r.text();
        assert!(
            text.contains("data: {"),
            "{model}: the first events arrived: {text}"
        );
        assert!(!text.contains("[DONE]"), "{model}: {text}");
        assert!(
            !text.contains("stream_incomplete"),
            "{model}: the filter never saw the end: {text}"
        );
        // The filter only learns of it in on_log, where its request line is written.
        assert!(
            envoy.wait_for_log(&format!("ai-proxy: provider={provider}"), Duration::from_secs(5)),
            "{}",
            envoy.logs()
        );
    }
    assert!(
        envoy.wait_for_log(
            "200 flags=UPE details=upstream_reset_after_response_started{protocol_error}",
            Duration::from_secs(5)
        ),
        "{}",
        envoy.logs()
    );
}

#[test]
fn a_stream_closed_cleanly_without_its_terminator_is_ended_by_the_filter() {
    let (_mock, envoy) = start();
    let r = stream(&envoy, "plain", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.complete, "{}", r.text());
    let text = r.text();
    assert!(text.contains("\"half\""), "{text}");
    assert!(text.contains("\"code\":\"stream_incomplete\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

/// A JSON answer the provider cuts after its headers, on a forwarded OpenAI model: ai-proxy reads a
/// JSON answer whole before its headers leave (to judge it), so Envoy still holds them when the
/// upstream drops, and the client gets a 502 OpenAI error (the `UPE` mapper) instead of a truncated 200.
#[test]
fn a_forwarded_openai_json_answer_cut_after_its_headers_is_an_openai_502() {
    let (_mock, envoy) = start();
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
    let r = envoy.chat(&body, &[("x-mock-fault", r#"{"cut_after": 10}"#)]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.complete, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["error"]["code"], "upstream_unavailable", "{}", r.text());
}
