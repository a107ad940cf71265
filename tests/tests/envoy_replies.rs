//! Envoy's own replies on LLM routes (resets, timeouts, refused connections, no healthy upstream,
//! overflow, no cluster) reach the client as OpenAI errors with a meaningful status and
//! `content-type: application/json`, through the HCM `local_reply_config` every shipped Envoy config
//! carries (`e2e::envoy::LOCAL_REPLY_CONFIG`). The filters' own errors and non-LLM routes are left
//! alone. The last test shows what the filter's response path alone does without that config.

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::{request, Response};
use e2e::mock::MockServer;
use serde_json::{json, Value};
use std::time::Duration;

struct Bed {
    _mock: MockServer,
    envoy: Envoy,
}

fn bed(local_reply: bool) -> Bed {
    let mock = MockServer::start(0).unwrap();
    let host = format!("127.0.0.1:{}", mock.port());
    let target = |name: &str, provider: &str, cluster: &str| {
        json!({"name": name, "provider": provider, "model": "m",
               "endpoint": {"cluster": cluster, "host": host}, "auth": {"value": "sk-test"}})
    };
    let config = json!({
        "targets": [
            target("oa", "openai", "mock_openai"),
            target("an", "anthropic", "mock_anthropic"),
            target("dead", "openai", "mock_dead"),
            target("empty", "openai", "mock_empty"),
            target("full", "anthropic", "mock_full"),
            target("gone", "openai", "no_such_cluster")
        ],
        "models": {
            "gpt": {"targets": [{"target": "oa"}]},
            "claude": {"targets": [{"target": "an"}]},
            "dead": {"targets": [{"target": "dead"}]},
            "empty": {"targets": [{"target": "empty"}]},
            "full": {"targets": [{"target": "full"}]},
            "gone": {"targets": [{"target": "gone"}]}
        }
    });
    let mut opts = EnvoyOptions::new(mock.port()).filter(Filter::ai_proxy(config));
    opts.route_timeout = Duration::from_secs(1);
    opts.local_reply = local_reply;
    let envoy = Envoy::start(opts).unwrap();
    Bed { _mock: mock, envoy }
}

fn chat(bed: &Bed, model: &str, stream: bool, fault: Value) -> Response {
    let fault = fault.to_string();
    let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    bed.envoy.chat(&body, &[("x-mock-fault", &fault)])
}

/// The status, the JSON content type and the exact OpenAI error.
fn assert_error(r: &Response, status: u16, code: &str, message: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", r.text());
    assert!(r.complete);
    assert_eq!(
        r.json(),
        json!({"error": {"message": message, "type": "upstream_error", "code": code}}),
        "{}",
        r.text()
    );
}

const RESET: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";

#[test]
fn a_reset_before_headers_is_an_openai_502() {
    let bed = bed(true);
    for model in ["gpt", "claude"] {
        for stream in [false, true] {
            let r = chat(&bed, model, stream, json!({"reset": true}));
            assert_error(&r, 502, "upstream_unavailable", RESET);
        }
    }
    assert!(bed.envoy.logs().contains("flags=UC"), "{}", bed.envoy.logs());
}

#[test]
fn a_refused_connection_is_an_openai_502() {
    let bed = bed(true);
    let r = chat(&bed, "dead", false, json!({}));
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let err = &r.json()["error"];
    assert_eq!(err["code"], "upstream_unavailable");
    assert_eq!(err["type"], "upstream_error");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.starts_with("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"),
        "{message}"
    );
}

#[test]
fn an_upstream_timeout_is_an_openai_504() {
    let bed = bed(true);
    for (model, stream) in [("gpt", false), ("claude", true)] {
        let r = chat(&bed, model, stream, json!({"delay_ms": 2500}));
        assert_error(&r, 504, "upstream_timeout", "upstream request timeout");
    }
}

#[test]
fn no_healthy_upstream_overflow_and_a_missing_cluster_are_openai_503s() {
    let bed = bed(true);
    assert_error(
        &chat(&bed, "empty", false, json!({})),
        503,
        "upstream_unavailable",
        "no healthy upstream",
    );
    assert_error(
        &chat(&bed, "full", false, json!({})),
        503,
        "upstream_unavailable",
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
    );
    assert_error(
        &chat(&bed, "gone", false, json!({})),
        503,
        "no_upstream",
        "the gateway has no upstream for this target (cluster_not_found)",
    );
}

/// A whole answer (Anthropic JSON, translated by ai-proxy, so its headers are held) cut after its
/// headers: Envoy answers itself, and the mapper shapes that too.
#[test]
fn a_held_answer_cut_after_its_headers_is_an_openai_502() {
    let bed = bed(true);
    let r = chat(&bed, "claude", false, json!({"cut_after": 5}));
    assert_error(
        &r,
        502,
        "upstream_unavailable",
        "upstream connect error or disconnect/reset before headers. reset reason: protocol error",
    );
}

/// The filters' own errors carry no response flag and keep their code; a request ai-proxy did not
/// route (no `x-ai-cluster`) keeps Envoy's plain reply.
#[test]
fn filter_errors_and_other_routes_are_left_alone() {
    let bed = bed(true);
    let r = chat(&bed, "nope", false, json!({}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    let r = request(bed.envoy.port, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty(), "{}", r.text());
    // Envoy's plain 404 for a cluster it does not know: the route's cluster_not_found_response_code.
    assert!(
        bed.envoy.wait_for_log("404 flags=NC", Duration::from_secs(5)),
        "{}",
        bed.envoy.logs()
    );
}

/// Without `local_reply_config`, ai-proxy's response path already turns Envoy's text replies into
/// OpenAI errors (`upstream_<status>`, Envoy's status) when they pass through it, but two cases escape
/// it: a reply Envoy makes after ai-proxy held the response headers (plain text), and a missing
/// cluster (an empty 404). The mappers are what make every case right.
#[test]
fn without_the_mappers_the_filter_path_shapes_most_but_not_all() {
    let bed = bed(false);
    let r = chat(&bed, "gpt", false, json!({"reset": true}));
    assert_error(&r, 503, "upstream_503", RESET);
    let r = chat(&bed, "claude", false, json!({"cut_after": 5}));
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(r.text().starts_with("upstream connect error"), "{}", r.text());
    let r = chat(&bed, "gone", false, json!({}));
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty(), "{}", r.text());
}

/// The shipped demo (`envoy/demo.yaml`, the whole chain) has the same mappers.
#[test]
fn the_demo_chain_shapes_envoy_replies() {
    let mock = MockServer::start(0).unwrap();
    let m = mock.port();
    let yaml = std::fs::read_to_string(e2e::repo_root().join("envoy/demo.yaml"))
        .unwrap()
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10001", &format!("port_value: {m}"))
        .replace("127.0.0.1:10001", &format!("127.0.0.1:{m}"));
    let envoy = Envoy::start_config(|_| yaml, 1).unwrap();
    for model in ["gpt-4o-mini", "claude-3-5-haiku"] {
        let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        let r = envoy.chat(&body, &[("x-mock-fault", r#"{"reset": true}"#)]);
        assert_error(&r, 502, "upstream_unavailable", RESET);
    }
}
