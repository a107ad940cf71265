//! ai-token-ratelimit end to end: a real Envoy with two worker threads, the rate-limit filter chained
//! before ai-proxy, in front of the mock providers. Every test asserts on what the client got and on
//! what reached the upstream (the mock's records), and the counters are shared data seen by both workers.
//!
//! Requests are built so that the reservation is known: the prompt "abcdefgh" (8 characters) is
//! estimated at 8/4 + 4 (one message) = 6 tokens, plus `max_tokens`; the mock reports the usage the test
//! asks for with `x-mock-usage: P,C`.

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::{self, request, Response};
use e2e::mock::MockServer;
use serde_json::{json, Value};
use std::thread;
use std::time::{Duration, Instant};

const PROMPT: &str = "abcdefgh";
/// The estimate of [`PROMPT`] as one user message.
const PROMPT_EST: u64 = 6;

fn proxy_config(mock_port: u16) -> Value {
    let host = format!("127.0.0.1:{mock_port}");
    json!({
        "targets": [
            {"name": "openai-mini", "provider": "openai", "model": "gpt-4o-mini",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-openai-test"}},
            {"name": "claude-haiku", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
             "endpoint": {"cluster": "mock_anthropic", "host": host}, "auth": {"value": "sk-ant-test"}}
        ],
        "models": {
            "gpt-4o-mini": {"targets": [{"target": "openai-mini"}]},
            "claude-3-5-haiku": {"targets": [{"target": "claude-haiku"}]}
        }
    })
}

/// One token limit per consumer (header `x-consumer-id`, then the client address) plus `extra` fields.
fn limit_config(limit: u64, window: &str, extra: Value) -> Value {
    let mut c = json!({
        "consumer": [{"type": "header", "name": "x-consumer-id"}, {"type": "client_address"}],
        "limits": [{"name": "tpm", "per": "consumer", "window": window, "count": "total_tokens", "limit": limit}]
    });
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

struct Bed {
    mock: MockServer,
    envoy: Envoy,
}

impl Bed {
    /// Rate limit then ai-proxy, two workers.
    fn start(config: Value) -> Bed {
        let mock = MockServer::start(0).unwrap();
        let envoy = Envoy::start(EnvoyOptions {
            filters: vec![
                Filter::new("ai-token-ratelimit", e2e::wasm_path("ai_token_ratelimit"), config),
                Filter::ai_proxy(proxy_config(mock.port())),
            ],
            mock_port: mock.port(),
            concurrency: 2,
            ..EnvoyOptions::default()
        })
        .unwrap();
        Bed { mock, envoy }
    }

    /// The rate limit alone, the client naming the cluster: responses come straight from the provider.
    fn without_proxy(config: Value) -> Bed {
        let mock = MockServer::start(0).unwrap();
        let envoy = Envoy::start(EnvoyOptions {
            filters: vec![Filter::new(
                "ai-token-ratelimit",
                e2e::wasm_path("ai_token_ratelimit"),
                config,
            )],
            mock_port: mock.port(),
            concurrency: 2,
            ..EnvoyOptions::default()
        })
        .unwrap();
        Bed { mock, envoy }
    }

    fn chat(&self, body: &Value, headers: &[(&str, &str)]) -> Response {
        self.envoy.chat(body, headers)
    }

    /// A request reserving `PROMPT_EST + max_tokens`, whose real usage is `usage` ("P,C").
    fn ask(&self, consumer: &str, max_tokens: u64, usage: &str) -> Response {
        self.chat(
            &chat_body("gpt-4o-mini", max_tokens, false),
            &[("x-consumer-id", consumer), ("x-mock-usage", usage)],
        )
    }

    fn upstream_count(&self) -> usize {
        self.mock.requests().len()
    }

    /// A counter of the filter in `/stats`, where Envoy files Wasm metrics under `wasmcustom.`.
    fn stat(&self, name: &str) -> Option<u64> {
        self.envoy.stat(&format!("wasmcustom.{name}"))
    }

    /// Waits (bounded) until counter `name` reaches `want` (`on_log` runs after the client has its
    /// answer); returns its last value.
    fn wait_stat(&self, name: &str, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.stat(name).unwrap_or(0);
            if v >= want || Instant::now() > deadline {
                return v;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn chat_body(model: &str, max_tokens: u64, stream: bool) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "stream": stream,
           "messages": [{"role": "user", "content": PROMPT}]})
}

fn remaining(r: &Response) -> u64 {
    r.header("x-ratelimit-remaining-tokens")
        .unwrap_or_else(|| panic!("no remaining header: {:?}", r.headers))
        .parse()
        .unwrap()
}

fn assert_429(r: &Response) {
    assert_429_by(r, "tpm");
}

/// A 429 of limit `name`: OpenAI-shaped error, `Retry-After`, JSON.
fn assert_429_by(r: &Response, name: &str) {
    assert_eq!(r.status, 429, "{}", r.text());
    let err = &r.json()["error"];
    assert_eq!(err["type"], "rate_limit_exceeded", "{}", r.text());
    assert_eq!(err["code"], "rate_limit_exceeded");
    assert!(
        err["message"].as_str().unwrap().contains(&format!("`{name}`")),
        "{err}"
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn limit_counts_down_in_headers_then_refuses_with_429() {
    let bed = Bed::start(limit_config(
        100,
        "day",
        json!({"limits": [
            {"name": "tpm", "per": "consumer", "window": "day", "count": "total_tokens", "limit": 100},
            {"name": "rpd", "per": "consumer", "window": "day", "count": "requests", "limit": 1000}
        ]}),
    ));
    // Each request reserves 6 + 14 = 20 and really uses 20: the headers count down exactly.
    for (i, want) in [80, 60, 40, 20, 0].into_iter().enumerate() {
        let r = bed.ask("alice", 14, "6,14");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("100"));
        assert_eq!(remaining(&r), want);
        // A day window: hours, minutes and seconds until midnight UTC.
        let reset = r.header("x-ratelimit-reset-tokens").unwrap();
        assert!(reset.ends_with('s') && reset.len() <= 9, "{reset}");
        assert_eq!(r.header("x-ratelimit-limit-requests"), Some("1000"));
        let left = (999 - i).to_string();
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some(left.as_str()));
        assert!(r.header("x-ratelimit-reset-requests").is_some());
    }
    let r = bed.ask("alice", 14, "6,14");
    assert_429(&r);
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("100"));
    assert_eq!(remaining(&r), 0);
    // A streaming request is refused the same way, with a JSON error before any stream starts.
    let r = bed.chat(&chat_body("gpt-4o-mini", 14, true), &[("x-consumer-id", "alice")]);
    assert_429(&r);
    // Another consumer has its own budget.
    let r = bed.ask("bob", 14, "6,14");
    assert_eq!((r.status, remaining(&r)), (200, 80));
    // Nothing refused reached the provider.
    assert_eq!(bed.upstream_count(), 6);
    let log = bed.envoy.logs();
    assert!(log.contains("ai-token-ratelimit: consumer=alice"), "{log}");
    assert_eq!(bed.stat("ai_token_ratelimit_refused_total_limit=tpm"), Some(2));
}

#[test]
fn concurrent_burst_is_admitted_within_the_bound() {
    let limit = 200;
    let reservation = PROMPT_EST + 14;
    let bed = Bed::start(limit_config(limit, "day", json!({})));
    let port = bed.envoy.port;
    // 40 clients at once; the mock holds each answer 300 ms so all are in flight together.
    let delay = json!({"delay_ms": 300}).to_string();
    let handles: Vec<_> = (0..40)
        .map(|_| {
            let delay = delay.clone();
            thread::spawn(move || {
                let body = chat_body("gpt-4o-mini", 14, false).to_string();
                let headers = [
                    ("content-type", "application/json"),
                    ("x-consumer-id", "burst"),
                    ("x-mock-usage", "6,14"),
                    ("x-mock-fault", delay.as_str()),
                ];
                request(port, "POST", "/v1/chat/completions", &headers, body.as_bytes())
                    .unwrap()
                    .status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    let refused = statuses.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!(admitted + refused, 40, "{statuses:?}");
    // The guarantee: admitted usage never exceeds the limit by more than one reservation. Here the
    // reservations are exact, so CAS admits exactly limit / reservation.
    assert!(
        admitted * reservation <= limit + reservation,
        "{admitted} admitted"
    );
    assert_eq!(admitted, limit / reservation, "{statuses:?}");
    assert_eq!(bed.upstream_count() as u64, admitted);
    // Both workers took part in the burst.
    let stats = bed.envoy.stats();
    let busy = stats
        .lines()
        .filter(|l| l.contains(".worker_") && l.contains("downstream_cx_total"))
        .filter(|l| !l.ends_with(": 0"))
        .count();
    assert_eq!(busy, 2, "{stats}");
    // For the record (not asserted: it depends on scheduling): how often a worker lost a CAS race.
    eprintln!(
        "burst: {admitted} admitted, {refused} refused, CAS conflicts retried: {}",
        bed.stat("ai_token_ratelimit_cas_conflicts_total").unwrap_or(0)
    );
}

#[test]
fn json_and_stream_settle_to_real_usage_through_ai_proxy() {
    let bed = Bed::start(limit_config(1000, "day", json!({})));
    for (model, stream) in [
        ("gpt-4o-mini", false),
        ("gpt-4o-mini", true),
        ("claude-3-5-haiku", false),
        ("claude-3-5-haiku", true),
    ] {
        let consumer = format!("{model}-{stream}");
        // Reserves 6 + 100 = 106; the provider reports 30 + 12 = 42.
        let h = [("x-consumer-id", consumer.as_str()), ("x-mock-usage", "30,12")];
        let r = bed.chat(&chat_body(model, 100, stream), &h);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(remaining(&r), 1000 - 106, "{consumer}");
        if stream {
            // The client did not ask for the usage chunk: the filter asked for it and removed it again.
            let text = r.text();
            assert!(text.contains("data: [DONE]"), "{text}");
            assert!(!text.contains("\"usage\":{"), "{consumer}: {text}");
        }
        // The second reservation starts from the settled 42, not the reserved 106.
        let r = bed.chat(&chat_body(model, 100, stream), &h);
        assert_eq!(remaining(&r), 1000 - 42 - 106, "{consumer}");
    }
    // What reached OpenAI asked for the usage chunk on the client's behalf.
    let streamed = bed
        .mock
        .requests()
        .into_iter()
        .find(|r| r["path"] == "/v1/chat/completions" && r["json"]["stream"] == true)
        .unwrap();
    assert_eq!(streamed["json"]["stream_options"]["include_usage"], true);
    // A client that asked for usage itself still gets it.
    let mut body = chat_body("gpt-4o-mini", 100, true);
    body["stream_options"] = json!({"include_usage": true});
    let r = bed.chat(
        &body,
        &[("x-consumer-id", "own-usage"), ("x-mock-usage", "30,12")],
    );
    assert!(r.text().contains("\"prompt_tokens\":30"), "{}", r.text());
    let settled = bed.wait_stat("ai_token_ratelimit_settled_total_outcome=usage", 9);
    assert_eq!(settled, 9);
    assert_eq!(
        bed.stat("ai_token_ratelimit_tokens_total_kind=prompt"),
        Some(9 * 30)
    );
}

#[test]
fn anthropic_responses_settle_without_ai_proxy() {
    let bed = Bed::without_proxy(limit_config(1000, "day", json!({})));
    for stream in [false, true] {
        let consumer = format!("direct-{stream}");
        let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 100, "stream": stream,
                          "system": "abcd", "messages": [{"role": "user", "content": PROMPT}]});
        let h = [
            ("content-type", "application/json"),
            ("x-ai-cluster", "mock_anthropic"),
            ("x-api-key", "sk-ant-test"),
            ("anthropic-version", "2023-06-01"),
            ("x-consumer-id", consumer.as_str()),
            ("x-mock-usage", "30,12"),
            ("accept-encoding", "gzip"),
        ];
        // Reserves 1 (system) + 6 + 100 = 107; settles to 42.
        let r = request(
            bed.envoy.port,
            "POST",
            "/v1/messages",
            &h,
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(remaining(&r), 1000 - 107);
        if stream {
            assert!(
                r.text().contains("event: message_delta"),
                "the stream is untouched"
            );
        } else {
            assert_eq!(r.json()["type"], "message");
        }
        let r = request(
            bed.envoy.port,
            "POST",
            "/v1/messages",
            &h,
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(remaining(&r), 1000 - 42 - 107, "stream={stream}");
    }
    // The request body went upstream unchanged (no OpenAI-only fields added), and uncompressed
    // answers were asked for so that their usage can be read.
    for rec in bed.mock.requests() {
        assert!(rec["json"].get("stream_options").is_none(), "{rec}");
        assert!(rec["headers"].get("accept-encoding").is_none(), "{rec}");
    }
}

#[test]
fn failed_upstream_calls_and_aborts_release_the_reservation() {
    let bed = Bed::start(limit_config(100, "day", json!({})));
    for status in [500, 429, 503] {
        let fault = json!({"status": status}).to_string();
        let r = bed.chat(
            &chat_body("gpt-4o-mini", 14, false),
            &[("x-consumer-id", "carol"), ("x-mock-fault", &fault)],
        );
        assert_eq!(r.status, status, "{}", r.text());
    }
    // Three failures cost nothing: the next request starts from an empty window.
    let r = bed.ask("carol", 14, "6,14");
    assert_eq!((r.status, remaining(&r)), (200, 80));
    assert_eq!(
        bed.wait_stat(
            "ai_token_ratelimit_settled_total_outcome=released-upstream-error",
            3
        ),
        3
    );

    // A client that hangs up mid-stream: the reservation is released when Envoy ends the request.
    let drip = json!({"drip_ms": 200}).to_string();
    let body = chat_body("gpt-4o-mini", 14, true).to_string();
    let mut s = http::open(
        bed.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("x-consumer-id", "carol"),
            ("x-mock-fault", drip.as_str()),
        ],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(s.status, 200);
    assert_eq!(s.header("x-ratelimit-remaining-tokens"), Some("60"));
    let _ = s.next_chunk().unwrap();
    drop(s);
    let released = bed.wait_stat("ai_token_ratelimit_settled_total_outcome=released-abort", 1);
    assert_eq!(released, 1);
    let r = bed.ask("carol", 14, "6,14");
    assert_eq!(
        (r.status, remaining(&r)),
        (200, 60),
        "the aborted request was released"
    );
}

#[test]
fn per_second_window_resets() {
    let bed = Bed::start(limit_config(20, "second", json!({})));
    // Two requests in the same second: the second is refused. If the pair straddled a second
    // boundary, try again (bounded); no timing is asserted.
    let mut refused = None;
    for _ in 0..20 {
        let first = bed.ask("dan", 14, "6,14");
        if first.status != 200 {
            thread::sleep(Duration::from_millis(300));
            continue;
        }
        assert_eq!(remaining(&first), 0);
        let second = bed.ask("dan", 14, "6,14");
        if second.status == 429 {
            refused = Some(second);
            break;
        }
    }
    let r = refused.expect("never two requests in one second");
    assert_429(&r);
    assert_eq!(r.header("retry-after"), Some("1"));
    let reset = r.header("x-ratelimit-reset-tokens").unwrap();
    assert!(reset.ends_with("ms") || reset == "1s", "{reset}");
    thread::sleep(Duration::from_millis(1100));
    let r = bed.ask("dan", 14, "6,14");
    assert_eq!((r.status, remaining(&r)), (200, 0), "a new second, a new budget");
}

#[test]
fn tiers_get_their_own_limits() {
    let bed = Bed::start(limit_config(
        20,
        "day",
        json!({
            "tiers": {"sources": [{"type": "header", "name": "x-tier"}], "members": {"gold-member": "gold"}, "default": "free"},
            "limits": [{"name": "tpm", "per": "consumer", "window": "day", "count": "total_tokens",
                        "limit": 20, "tiers": {"gold": 100}}]
        }),
    ));
    let r = bed.ask("gold-member", 14, "6,14");
    assert_eq!(
        (r.status, r.header("x-ratelimit-limit-tokens")),
        (200, Some("100"))
    );
    for _ in 0..4 {
        assert_eq!(bed.ask("gold-member", 14, "6,14").status, 200);
    }
    assert_429(&bed.ask("gold-member", 14, "6,14"));
    // A tier named by a header set earlier in the chain.
    let h = [
        ("x-consumer-id", "eve"),
        ("x-tier", "gold"),
        ("x-mock-usage", "6,14"),
    ];
    let r = bed.chat(&chat_body("gpt-4o-mini", 14, false), &h);
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("100"));
    // Everyone else is on the free tier.
    let r = bed.ask("frank", 14, "6,14");
    assert_eq!(
        (r.status, r.header("x-ratelimit-limit-tokens")),
        (200, Some("20"))
    );
    assert_429(&bed.ask("frank", 14, "6,14"));
}

#[test]
fn cost_limits_count_micro_usd_from_the_price_table() {
    let bed = Bed::start(json!({
        "consumer": [{"type": "header", "name": "x-consumer-id"}],
        "limits": [{"name": "budget", "per": "consumer", "window": "day", "count": "cost", "limit": 100000}],
        "prices": {"gpt-4o-mini": {"prompt_per_million": 1000, "completion_per_million": 2000}}
    }));
    // 6 prompt x 1000 + 14 completion x 2000 = 34000 micro-USD per request: two fit, the third not.
    for _ in 0..2 {
        let r = bed.ask("gina", 14, "6,14");
        assert_eq!(r.status, 200, "{}", r.text());
        // Cost limits set no token headers.
        assert_eq!(r.header("x-ratelimit-limit-tokens"), None);
    }
    let r = bed.ask("gina", 14, "6,14");
    assert_eq!(r.status, 429);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("`budget`") && msg.contains("68000 of 100000 micro-USD"),
        "{msg}"
    );
    // Settling to cheaper real usage (6 + 1 tokens = 8000) frees budget.
    let g = [("x-consumer-id", "hal"), ("x-mock-usage", "6,1")];
    for _ in 0..3 {
        assert_eq!(bed.chat(&chat_body("gpt-4o-mini", 14, false), &g).status, 200);
    }
    // 3 x 8000 = 24000 used, so a fourth reservation of 34000 still fits.
    assert_eq!(bed.chat(&chat_body("gpt-4o-mini", 14, false), &g).status, 200);
    // A model without a price is not counted by cost limits.
    let r = bed.chat(
        &chat_body("claude-3-5-haiku", 14, false),
        &[("x-consumer-id", "gina")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn adaptive_rules_scale_the_limit() {
    let bed = Bed::start(limit_config(
        100,
        "day",
        json!({"adaptive": [
            {"type": "header", "name": "x-risk-score", "above": 0.5, "factor": 0.2},
            {"type": "error_rate", "window": "day", "above": 0.5, "min_requests": 2, "factor": 0.5}
        ]}),
    ));
    // A risky request sees a fifth of the limit.
    let risky = [
        ("x-consumer-id", "ivan"),
        ("x-risk-score", "0.9"),
        ("x-mock-usage", "6,14"),
    ];
    let r = bed.chat(&chat_body("gpt-4o-mini", 14, false), &risky);
    assert_eq!(
        (r.status, r.header("x-ratelimit-limit-tokens")),
        (200, Some("20"))
    );
    assert_429(&bed.chat(&chat_body("gpt-4o-mini", 14, false), &risky));
    // A low score leaves the limit alone (20 used of 100).
    let calm = [
        ("x-consumer-id", "ivan"),
        ("x-risk-score", "0.1"),
        ("x-mock-usage", "6,14"),
    ];
    let r = bed.chat(&chat_body("gpt-4o-mini", 14, false), &calm);
    assert_eq!((r.status, remaining(&r)), (200, 60));
    let fault = json!({"status": 503}).to_string();
    // Upstream errors (4 of the 7 answers so far) halve every limit.
    for _ in 0..4 {
        let r = bed.chat(
            &chat_body("gpt-4o-mini", 14, false),
            &[("x-consumer-id", "judy"), ("x-mock-fault", &fault)],
        );
        assert_eq!(r.status, 503);
    }
    let r = bed.ask("judy", 14, "6,14");
    assert_eq!(
        (r.status, r.header("x-ratelimit-limit-tokens")),
        (200, Some("50"))
    );
}

#[test]
fn shadow_mode_counts_but_never_refuses() {
    let bed = Bed::start(limit_config(20, "day", json!({"mode": "shadow"})));
    for _ in 0..3 {
        let r = bed.ask("kim", 14, "6,14");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("x-ratelimit-remaining-tokens"),
            None,
            "shadow mode is invisible"
        );
    }
    assert_eq!(bed.upstream_count(), 3);
    assert_eq!(
        bed.wait_stat("ai_token_ratelimit_shadow_refused_total_limit=tpm", 2),
        2
    );
    assert!(bed
        .envoy
        .wait_for_log("decision=shadow_refused limit=tpm", Duration::from_secs(5)));
}

#[test]
fn identity_falls_back_to_the_client_address_and_reads_jwt_claims() {
    let bed = Bed::start(json!({
        "consumer": [{"type": "jwt_claim", "claim": "sub"}, {"type": "header", "name": "x-consumer-id"},
                     {"type": "client_address"}],
        "limits": [{"name": "tpm", "per": "consumer", "window": "day", "count": "total_tokens", "limit": 100}]
    }));
    // No identity: the client address (127.0.0.1, whatever the port) is the consumer.
    for want in [80, 60] {
        let r = bed.chat(&chat_body("gpt-4o-mini", 14, false), &[("x-mock-usage", "6,14")]);
        assert_eq!(remaining(&r), want);
    }
    assert!(bed
        .envoy
        .wait_for_log("consumer=127.0.0.1 ", Duration::from_secs(5)));
    // {"sub":"mallory"} in an (unverified) bearer token.
    let token = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.x";
    let h = [("authorization", token), ("x-mock-usage", "6,14")];
    let r = bed.chat(&chat_body("gpt-4o-mini", 14, false), &h);
    assert_eq!((r.status, remaining(&r)), (200, 80));
    assert!(bed
        .envoy
        .wait_for_log("consumer=mallory ", Duration::from_secs(5)));
}

#[test]
fn per_model_and_per_consumer_model_limits() {
    let bed = Bed::start(json!({
        "consumer": [{"type": "header", "name": "x-consumer-id"}],
        "limits": [
            {"name": "model-rpd", "per": "model", "window": "day", "count": "requests", "limit": 3},
            {"name": "pair-prompt", "per": "consumer_model", "window": "day", "count": "prompt_tokens", "limit": 12}
        ]
    }));
    let ask = |consumer: &str, model: &str| {
        bed.chat(
            &chat_body(model, 14, false),
            &[("x-consumer-id", consumer), ("x-mock-usage", "6,14")],
        )
    };
    // Each request: 1 request of the model's 3, 6 prompt tokens of the pair's 12.
    let r = ask("a", "gpt-4o-mini");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("2"));
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("12"));
    assert_eq!(remaining(&r), 6);
    assert_eq!(ask("a", "gpt-4o-mini").status, 200);
    // The pair is spent; the model's request it had reserved first is given back.
    assert_429_by(&ask("a", "gpt-4o-mini"), "pair-prompt");
    // Another consumer of the same model takes the model's last request...
    let r = ask("b", "gpt-4o-mini");
    assert_eq!(
        (r.status, r.header("x-ratelimit-remaining-requests")),
        (200, Some("0"))
    );
    // ...so the model is closed for everyone, while another model is untouched.
    assert_429_by(&ask("c", "gpt-4o-mini"), "model-rpd");
    let r = ask("a", "claude-3-5-haiku");
    assert_eq!((r.status, remaining(&r)), (200, 6));
    assert_eq!(bed.upstream_count(), 4);
}
