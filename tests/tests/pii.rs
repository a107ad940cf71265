//! ai-pii-redact end to end: a real Envoy with the release .wasm, chained before ai-proxy (as in the
//! demo), in front of the mock providers and a mock NER service. Every test asserts on what the client
//! got and on what reached the provider (the mock's records): PII must never be in the latter.

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::Response;
use e2e::mock::{reply_to, MockServer};
use e2e::ner::{NerFault, NerServer};
use serde_json::{json, Value};

fn proxy_config(mock_port: u16) -> Value {
    let host = format!("127.0.0.1:{mock_port}");
    json!({
        "targets": [
            {"name": "openai", "provider": "openai", "model": "gpt-4o-mini",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-upstream"}},
            {"name": "claude", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
             "endpoint": {"cluster": "mock_anthropic", "host": host}, "auth": {"value": "sk-ant-upstream"}}
        ],
        "models": {
            "gpt-4o-mini": {"targets": [{"target": "openai"}]},
            "claude": {"targets": [{"target": "claude"}]}
        }
    })
}

fn pii_filter(config: Value) -> Filter {
    Filter::new("ai-pii-redact", e2e::wasm_path("ai_pii_redact"), config)
}

struct Bed {
    mock: MockServer,
    envoy: Envoy,
    ner: Option<NerServer>,
}

impl Bed {
    /// The demo's order: ai-pii-redact, then ai-proxy.
    fn start(config: Value) -> Bed {
        Bed::build(config, false, None)
    }

    /// ai-proxy first: ai-pii-redact then sees the Anthropic-shaped request and response.
    fn after_proxy(config: Value) -> Bed {
        Bed::build(config, true, None)
    }

    fn with_ner(config: impl Fn(u16) -> Value) -> Bed {
        let ner = NerServer::start().unwrap();
        let port = ner.port();
        Bed::build(config(port), false, Some(ner))
    }

    fn build(config: Value, after_proxy: bool, ner: Option<NerServer>) -> Bed {
        let mock = MockServer::start(0).unwrap();
        let proxy = Filter::ai_proxy(proxy_config(mock.port()));
        let pii = pii_filter(config);
        let filters = if after_proxy {
            vec![proxy, pii]
        } else {
            vec![pii, proxy]
        };
        let clusters = ner
            .as_ref()
            .map(|n| vec![("ner".to_string(), n.port())])
            .unwrap_or_default();
        let envoy = Envoy::start(EnvoyOptions {
            filters,
            mock_port: mock.port(),
            concurrency: 1,
            env: vec![],
            clusters,
            ..EnvoyOptions::default()
        })
        .unwrap();
        Bed { mock, envoy, ner }
    }

    fn chat(&self, body: &Value, headers: &[(&str, &str)]) -> Response {
        self.envoy.chat(body, headers)
    }

    /// Counter `name` once it reaches `want` (metrics are written when the request's log phase runs,
    /// which may be just after the client has its answer); the last value seen after 5 s otherwise.
    fn stat(&self, name: &str, want: u64) -> u64 {
        let full = format!("wasmcustom.{name}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let v = self.envoy.stat(&full).unwrap_or(0);
            if v >= want || std::time::Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The one request the provider got, as text (body and headers), for "never saw the PII" checks.
    fn upstream(&self) -> Value {
        let mut records = self.mock.requests();
        assert_eq!(records.len(), 1, "{records:?}");
        let r = records.remove(0);
        self.mock.clear();
        r
    }
}

fn body(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": text}
    ]})
}

fn assert_absent(haystack: &str, values: &[&str]) {
    for v in values {
        assert!(!haystack.contains(v), "{v:?} leaked into {haystack}");
    }
}

/// The assistant text of an OpenAI-shaped answer, JSON or SSE.
fn answer_text(r: &Response) -> String {
    if r.header("content-type")
        .is_some_and(|c| c.contains("event-stream"))
    {
        r.sse()
            .iter()
            .filter(|e| e.data != "[DONE]")
            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect()
    } else {
        r.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

const PROMPT: &str = "Email jane.doe@example.com or call +1 (415) 555-0132 about card 4111 1111 1111 1111.";
const VALUES: [&str; 3] = ["jane.doe@example.com", "555-0132", "4111 1111"];

#[test]
fn openai_json_and_stream_redacted_upstream_and_restored_for_the_client() {
    let bed = Bed::start(json!({}));
    for stream in [false, true] {
        let r = bed.chat(&body("gpt-4o-mini", PROMPT, stream), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = bed.upstream();
        assert_absent(&up.to_string(), &VALUES);
        let sent = up["json"]["messages"][1]["content"].as_str().unwrap().to_string();
        assert_eq!(sent, "Email <EMAIL_1> or call <PHONE_1> about card <CARD_1>.");
        // The system message passes untouched; the JSON structure is kept.
        assert_eq!(up["json"]["messages"][0]["content"], "You are helpful.");
        assert_eq!(answer_text(&r), reply_to(PROMPT), "stream={stream}");
        assert_eq!(r.header("x-pii-redacted"), Some("card=1,email=1,phone=1"));
    }
    assert_eq!(
        bed.stat(
            "ai_pii_redact_entities_total_type=email_action=mask_direction=request_mode=enforce",
            2
        ),
        2
    );
    assert_eq!(bed.stat("ai_pii_redact_restored_total", 6), 6);
    assert!(bed
        .envoy
        .logs()
        .contains("ai-pii-redact: mode=enforce outcome=redacted"));
}

#[test]
fn placeholders_split_across_sse_events_are_restored() {
    let bed = Bed::start(json!({}));
    // The provider answers with placeholders cut inside, one piece per event, dripped.
    let pieces = json!([
        "Sure, <EM",
        "AIL",
        "_1> and <",
        "PHONE_1",
        "> (",
        "<CARD_1",
        ">)",
        " <EMAIL_9>"
    ]);
    let reply = pieces.to_string();
    let fault = r#"{"drip_ms":5}"#;
    let r = bed.chat(
        &body("gpt-4o-mini", PROMPT, true),
        &[("x-mock-reply", &reply), ("x-mock-fault", fault)],
    );
    assert_eq!(r.status, 200);
    assert_absent(&bed.upstream().to_string(), &VALUES);
    assert_eq!(
        answer_text(&r),
        "Sure, jane.doe@example.com and +1 (415) 555-0132 (4111 1111 1111 1111) <EMAIL_9>"
    );
    // Still a well-formed OpenAI stream ending in [DONE].
    let events = r.sse();
    assert_eq!(events.last().unwrap().data, "[DONE]");
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
    }
}

#[test]
fn anthropic_target_never_sees_pii_json_and_stream() {
    let bed = Bed::start(json!({}));
    for stream in [false, true] {
        let r = bed.chat(&body("claude", PROMPT, stream), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = bed.upstream();
        assert_eq!(up["path"], "/v1/messages");
        assert_absent(&up.to_string(), &VALUES);
        assert_eq!(answer_text(&r), reply_to(PROMPT), "stream={stream}");
    }
}

#[test]
fn anthropic_shaped_bodies_are_redacted_and_restored() {
    // Behind ai-proxy, the filter sees Anthropic's `system` + `messages` and Anthropic JSON/SSE answers.
    let bed = Bed::after_proxy(json!({}));
    for stream in [false, true] {
        let mut b = body("claude", PROMPT, stream);
        b["messages"][0]["content"] = json!("Operator email: ops@corp.example");
        let r = bed.chat(&b, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = bed.upstream();
        assert_eq!(up["path"], "/v1/messages");
        assert_absent(&up.to_string(), &VALUES);
        assert_absent(&up.to_string(), &["ops@corp.example"]);
        assert_eq!(up["json"]["system"], "Operator email: <EMAIL_1>");
        assert_eq!(answer_text(&r), reply_to(PROMPT), "stream={stream}");
    }
    // Anthropic events with a placeholder and a fresh value cut inside, at every offset of the value.
    let tail = "x@corp.example";
    for i in 0..=tail.len() {
        for stream in [true, false] {
            if !stream && i > 0 {
                continue;
            }
            let pieces = json!(["For <EMA", "IL_1>: mail ", &tail[..i], &tail[i..], " ok"]).to_string();
            let r = bed.chat(&body("claude", PROMPT, stream), &[("x-mock-reply", &pieces)]);
            assert_eq!(r.status, 200);
            assert_absent(&bed.upstream().to_string(), &VALUES);
            assert_absent(&r.text(), &["corp.example"]);
            assert_eq!(
                answer_text(&r),
                "For jane.doe@example.com: mail <EMAIL_2> ok",
                "split at {i} stream={stream}"
            );
        }
    }
}

#[test]
fn pii_streamed_by_the_provider_is_masked_at_every_split_offset() {
    let bed = Bed::start(json!({}));
    let text = "Reach bob@example.org, +44 20 7183 8750 or 4111-1111-1111-1111 now";
    let want = "Reach <EMAIL_1>, <PHONE_1> or <CARD_1> now";
    for i in 0..=text.len() {
        let pieces = json!([&text[..i], &text[i..]]).to_string();
        for stream in [true, false] {
            if !stream && i > 0 {
                continue;
            }
            let r = bed.chat(
                &body("gpt-4o-mini", "hello", stream),
                &[("x-mock-reply", &pieces)],
            );
            assert_eq!(r.status, 200);
            let got = r.text();
            assert_absent(&got, &["bob@", "example.org", "7183", "1111"]);
            assert_eq!(answer_text(&r), want, "split at {i} stream={stream}");
        }
    }
    bed.mock.clear();
    // Many small pieces: one character per event.
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let r = bed.chat(
        &body("gpt-4o-mini", "hello", true),
        &[("x-mock-reply", &json!(chars).to_string())],
    );
    assert_eq!(answer_text(&r), want);
    assert!(
        bed.stat(
            "ai_pii_redact_entities_total_type=phone_action=mask_direction=response_mode=enforce",
            1
        ) >= 1
    );
}

#[test]
fn block_returns_400_naming_types_not_values() {
    let bed = Bed::start(json!({"actions": {"card": "block", "ssn": "block"}}));
    let r = bed.chat(
        &body("gpt-4o-mini", "pay 4111 1111 1111 1111, ssn 123-45-6789", false),
        &[],
    );
    assert_eq!(r.status, 400);
    let err = r.json();
    assert_eq!(err["error"]["code"], "pii_blocked");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.ends_with("card, ssn"), "{msg}");
    assert_absent(&r.text(), &["4111", "6789"]);
    assert!(bed.mock.requests().is_empty(), "the provider must not be called");
    assert_eq!(
        bed.stat(
            "ai_pii_redact_entities_total_type=card_action=block_direction=request_mode=enforce",
            1
        ),
        1
    );
    // Other types are still masked, not blocked.
    let r = bed.chat(&body("gpt-4o-mini", "mail a@b.io", false), &[]);
    assert_eq!(r.status, 200);
    assert_absent(&bed.upstream().to_string(), &["a@b.io"]);
}

#[test]
fn shadow_mode_changes_nothing_but_counts() {
    let bed = Bed::start(json!({"mode": "shadow", "actions": {"card": "block"}}));
    for stream in [false, true] {
        let b = body("gpt-4o-mini", PROMPT, stream);
        let r = bed.chat(&b, &[("x-mock-reply", r#"["x@y.io ", "ok"]"#)]);
        assert_eq!(r.status, 200);
        let up = bed.upstream();
        assert_eq!(
            up["json"]["messages"], b["messages"],
            "the provider got the prompt as sent"
        );
        assert_eq!(answer_text(&r), "x@y.io ok", "the answer is not masked");
        assert_eq!(r.header("x-pii-redacted"), None);
    }
    let stat = |name: &str| bed.stat(name, 2);
    assert_eq!(
        stat("ai_pii_redact_entities_total_type=email_action=mask_direction=request_mode=shadow"),
        2
    );
    assert_eq!(
        stat("ai_pii_redact_entities_total_type=card_action=block_direction=request_mode=shadow"),
        2
    );
    assert_eq!(
        stat("ai_pii_redact_requests_total_outcome=blocked_mode=shadow"),
        2
    );
}

#[test]
fn actions_partial_and_hash_and_header_redaction() {
    let bed = Bed::start(json!({
        "actions": {"card": "partial", "email": "hash"},
        "hash_key": {"value": "test-key"},
        "request": {"headers": ["x-user-note"]}
    }));
    let r = bed.chat(
        &body("gpt-4o-mini", PROMPT, false),
        &[("x-user-note", "from jane.doe@example.com")],
    );
    assert_eq!(r.status, 200);
    let up = bed.upstream();
    assert_absent(&up.to_string(), &VALUES);
    let sent = up["json"]["messages"][1]["content"].as_str().unwrap();
    assert!(sent.contains("**** **** **** 1111"), "{sent}");
    let hashed = sent.split_whitespace().nth(1).unwrap();
    assert!(hashed.starts_with("<EMAIL_") && hashed.len() == 20, "{hashed}");
    assert_eq!(up["headers"]["x-user-note"], format!("from {hashed}"));
    // Hashes are stable per key across requests, so logs and analytics join.
    bed.chat(&body("gpt-4o-mini", "again jane.doe@example.com", false), &[]);
    assert!(bed.upstream()["json"]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .contains(hashed));
    // The client still gets the original back for the hashed value.
    assert!(answer_text(&r).contains("jane.doe@example.com"));
}

#[test]
fn unmasked_consumers_see_model_output_as_is() {
    let bed = Bed::start(json!({"unmasked": {"header": "x-consumer-role", "values": ["auditor"]}}));
    let reply = r#"["write to ", "boss@corp.example"]"#;
    for (role, want) in [
        ("auditor", "write to boss@corp.example"),
        ("analyst", "write to <EMAIL_2>"),
    ] {
        let r = bed.chat(
            &body("gpt-4o-mini", "my mail is me@home.example", true),
            &[("x-mock-reply", reply), ("x-consumer-role", role)],
        );
        assert_eq!(answer_text(&r), want, "{role}");
        // The provider never sees PII, whoever asks.
        assert_absent(&bed.upstream().to_string(), &["me@home.example"]);
    }
}

fn ner_config(port: u16, failure_mode: &str, timeout_ms: u64) -> Value {
    json!({"ner": {"endpoint": {"cluster": "ner", "host": format!("127.0.0.1:{port}")},
        "threshold": 0.5, "timeout_ms": timeout_ms, "failure_mode": failure_mode}})
}

#[test]
fn ner_service_finds_names_and_places() {
    let bed = Bed::with_ner(|port| ner_config(port, "deny", 2000));
    let prompt = "I am Jane Roe, a French engineer from Paris; mail jane@roe.example";
    for stream in [false, true] {
        let r = bed.chat(&body("gpt-4o-mini", prompt, stream), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let up = bed.upstream();
        assert_eq!(
            up["json"]["messages"][1]["content"],
            "I am <PERSON_1>, a French engineer from <LOCATION_1>; mail <EMAIL_1>",
            "NRP scored 0.3, below the 0.5 threshold"
        );
        assert_eq!(answer_text(&r), reply_to(prompt));
    }
    let calls = bed.ner.as_ref().unwrap().requests();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["language"], "en");
    assert!(calls[0]["text"].as_str().unwrap().contains("Jane Roe"));
    assert_eq!(bed.stat("ai_pii_redact_ner_calls_total_outcome=ok", 2), 2);
}

#[test]
fn ner_failure_follows_failure_mode() {
    let prompt = "I am Jane Roe; mail jane@roe.example";
    // deny: errors and timeouts refuse the request; the provider is not called.
    let bed = Bed::with_ner(|port| ner_config(port, "deny", 300));
    let ner = bed.ner.as_ref().unwrap();
    for fault in [
        NerFault::Status(500),
        NerFault::Malformed,
        NerFault::DelayMs(1500),
    ] {
        ner.set_fault(fault);
        let r = bed.chat(&body("gpt-4o-mini", prompt, false), &[]);
        assert_eq!(r.status, 503, "{fault:?}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "pii_detector_unavailable");
        assert!(bed.mock.requests().is_empty(), "{fault:?}");
    }
    drop(bed);
    // allow: the patterns still redact; names pass (the service could not find them).
    let bed = Bed::with_ner(|port| ner_config(port, "allow", 300));
    bed.ner.as_ref().unwrap().set_fault(NerFault::DelayMs(1500));
    let r = bed.chat(&body("gpt-4o-mini", prompt, false), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        bed.upstream()["json"]["messages"][1]["content"],
        "I am Jane Roe; mail <EMAIL_1>"
    );
    assert_eq!(answer_text(&r), reply_to(prompt));
    assert_eq!(
        bed.stat("ai_pii_redact_ner_calls_total_outcome=failed-allowed", 1),
        1
    );
}

#[test]
fn evasion_is_normalised_and_bad_config_is_refused() {
    let bed = Bed::start(json!({"terms": [{"name": "project", "terms": ["Blue Harbor"]}]}));
    let prompt =
        "card ４１１１ １１１１ １１１１ １１１１, mail j\u{200B}ane@example.com, project blue harbor";
    let r = bed.chat(&body("gpt-4o-mini", prompt, false), &[]);
    assert_eq!(r.status, 200);
    let sent = bed.upstream()["json"]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sent, "card <CARD_1>, mail <EMAIL_1>, project <PROJECT_1>");
    assert_eq!(answer_text(&r), reply_to(prompt));
    drop(bed);

    let mock = MockServer::start(0).unwrap();
    let bad = Envoy::start(EnvoyOptions {
        filters: vec![pii_filter(json!({"regexes": [{"name": "x", "pattern": "("}]}))],
        mock_port: mock.port(),
        ..EnvoyOptions::default()
    });
    let logs = match bad {
        Ok(envoy) => envoy.logs(),
        Err(e) => e.0,
    };
    assert!(
        logs.contains(&e2e::envoy::config_refused("ai-pii-redact", "regexes[0].pattern")),
        "{logs}"
    );
}

/// Custom patterns and terms written with letters folding changes (Greek and Cyrillic look-alikes)
/// match the folded text in the module: `(?i)ΣΟΦΙΑ` finds "σοφια" (it did not while only the text was
/// folded), a term `Москва` finds "МОСКВА", and the originals come back in the answer.
#[test]
fn greek_and_cyrillic_patterns_and_terms_match_folded_text() {
    let bed = Bed::start(json!({
        "regexes": [{"name": "name", "pattern": "(?i)ΣΟΦΙΑ"}],
        "terms": [{"name": "city", "terms": ["Москва"]}]
    }));
    let prompt = "η σοφια ζει στη МОСКВА";
    let r = bed.chat(&body("gpt-4o-mini", prompt, false), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = bed.upstream()["json"]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sent, "η <NAME_1> ζει στη <CITY_1>");
    assert_eq!(answer_text(&r), reply_to(prompt));
}

/// Context decides what a shape means: a dotted ten-digit number whose area code the strict North
/// American check rejects is masked after "phone:", and a version number of the same shape is not.
#[test]
fn a_phone_cue_masks_a_loose_number_and_a_version_stays() {
    let bed = Bed::start(json!({}));
    let r = bed.chat(
        &body(
            "gpt-4o-mini",
            "My phone: 123.456.7890. We run version 123.456.7891 of the app.",
            false,
        ),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let up = bed.upstream();
    let sent = up["json"]["messages"][1]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        sent, "My phone: <PHONE_1>. We run version 123.456.7891 of the app.",
        "{up}"
    );
    assert_absent(&up.to_string(), &["123.456.7890"]);
}

/// Envoy forwards the request's `content-length` as it stands: when the filter masks something it
/// removes it (the shorter body goes chunked and arrives whole), and when nothing is masked the
/// provider gets the client's body with its length, not a chunked copy. ai-pii-redact alone here
/// (ai-proxy rewrites every body), routed to the mock by `x-ai-cluster`.
#[test]
fn content_length_is_kept_unless_the_body_changed() {
    let mock = MockServer::start(0).unwrap();
    let envoy = Envoy::start(EnvoyOptions {
        filters: vec![pii_filter(json!({}))],
        ..EnvoyOptions::new(mock.port())
    })
    .unwrap();
    let headers = [
        ("x-ai-cluster", "mock_openai"),
        ("authorization", "Bearer sk-test"),
    ];
    for (text, masked) in [
        ("Write a haiku about autumn leaves.", false),
        ("Write to bob@example.com about autumn leaves.", true),
    ] {
        let sent = body("gpt-4o-mini", text, false).to_string();
        let r = envoy.chat(&body("gpt-4o-mini", text, false), &headers);
        assert_eq!(r.status, 200, "{}\n{}", r.text(), envoy.logs());
        let mut records = mock.requests();
        assert_eq!(records.len(), 1, "{records:?}");
        let up = records.remove(0);
        mock.clear();
        let content = up["json"]["messages"][1]["content"].as_str().unwrap_or_default();
        let length = up["headers"]["content-length"].as_str();
        if masked {
            assert_eq!(content, "Write to <EMAIL_1> about autumn leaves.", "{up}");
            assert_eq!(length, None, "a stale length would cut or stall the body: {up}");
        } else {
            assert_eq!(up["body"].as_str(), Some(sent.as_str()), "{up}");
            assert_eq!(length, Some(sent.len().to_string().as_str()), "{up}");
        }
    }
}
