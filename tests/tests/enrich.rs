//! ai-enrich end to end: a real Envoy with the release .wasm in front of the mock's echo endpoint (a
//! non-LLM API that answers what it received), the tasks answered by the mock providers. Every test
//! asserts on what reached the upstream (the echo's answer and the mock's records) and on what the model
//! was asked.

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::Response;
use e2e::mock::MockServer;
use e2e::sdk::Sdk;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOKEN_KEY: &str = "an HS256 key of at least 32 bytes, for tests";

const TICKET: &str = "Hello, we were charged twice by Acme Payments for our Zephyr subscription. \
Please refund the billing error to jane.doe@example.com or call +1 415 555 0100.";

fn targets(port: u16) -> Value {
    let host = format!("127.0.0.1:{port}");
    json!([
        {"name": "mini", "provider": "openai", "model": "gpt-4o-mini",
         "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-task"}},
        {"name": "azure-4o", "provider": "azure", "deployment": "gpt-4o",
         "endpoint": {"cluster": "mock_azure", "host": host}, "auth": {"value": "azure-task"}},
        {"name": "llama", "provider": "openai_compatible", "model": "llama3",
         "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "local-key"}}
    ])
}

fn intent_task() -> Value {
    json!({"name": "intent", "target": "mini", "system": "You route support tickets.",
           "prompt": "Classify this ticket: {{body/description}}",
           "output": {"type": "object", "required": ["intent"],
                      "properties": {"intent": {"type": "string", "enum": ["account", "billing", "bug", "other"]}}}})
}

fn entities_task() -> Value {
    json!({"name": "entities", "target": "azure-4o", "prompt": "Name the companies and products. {{body/description}}",
           "output": {"type": "object", "required": ["entities"],
                      "properties": {"entities": {"type": "array", "items": {"type": "string"}, "maxItems": 5}}}})
}

fn risk_task() -> Value {
    json!({"name": "risk", "target": "llama", "prompt": "Score the fraud risk of: {{body/description}}",
           "output": {"type": "object", "required": ["score"],
                      "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 100}}}})
}

/// The three tasks, their headers, the language and the consumer.
fn config(port: u16) -> Value {
    json!({
        "targets": targets(port),
        "tasks": [intent_task(), entities_task(), risk_task()],
        // Prices large enough that a mock call of some 30 tokens costs whole micro-dollars.
        "prices": {"gpt-4o-mini": {"prompt_per_million": 150000, "completion_per_million": 600000}},
        "consumer": [{"type": "header", "name": "x-consumer-id"}],
        "headers": {"x-ai-intent": "task.intent/intent", "x-ai-entities": "task.entities/entities",
                    "x-ai-risk-score": "task.risk/score", "x-ai-language": "local.language",
                    "x-ai-consumer": "consumer"}
    })
}

fn enrich(config: Value) -> Filter {
    Filter::new("ai-enrich", e2e::wasm_path("ai_enrich"), config)
}

struct Bed {
    mock: MockServer,
    envoy: Envoy,
}

impl Bed {
    fn start(config: impl Fn(u16) -> Value) -> Bed {
        let mock = MockServer::start(0).unwrap();
        let opts = EnvoyOptions::new(mock.port())
            .filter(enrich(config(mock.port())))
            .env("ENRICH_TOKEN_KEY", TOKEN_KEY);
        let envoy = Envoy::start(opts).unwrap();
        Bed { mock, envoy }
    }

    /// A request to the echo endpoint (through Envoy's route on `x-ai-cluster`).
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut h = vec![("x-ai-cluster", "mock_openai")];
        h.extend_from_slice(headers);
        self.envoy.request(method, path, &h, body)
    }

    fn ticket(&self, headers: &[(&str, &str)]) -> Response {
        let body = json!({"subject": "Double charge", "description": TICKET});
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.send("POST", "/echo/tickets", &h, body.to_string().as_bytes())
    }

    /// The task calls the mock received (chat requests, not the echo).
    fn task_calls(&self) -> Vec<Value> {
        self.mock
            .requests()
            .into_iter()
            .filter(|r| !r["path"].as_str().unwrap_or_default().starts_with("/echo"))
            .collect()
    }

    fn counter(&self, name: &str) -> u64 {
        self.envoy.stat(&format!("wasmcustom.{name}")).unwrap_or(0)
    }
}

/// The headers the upstream (the echo) received.
fn upstream_headers(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["headers"].clone()
}

fn user_text(call: &Value) -> String {
    let messages = call["json"]["messages"].as_array().unwrap();
    messages.last().unwrap()["content"].as_str().unwrap().to_string()
}

#[test]
fn outputs_reach_the_upstream_as_headers() {
    let bed = Bed::start(config);
    let r = bed.ticket(&[("x-consumer-id", "team-7")]);
    let h = upstream_headers(&r);
    assert_eq!(h["x-ai-intent"], "billing", "{h}");
    assert_eq!(h["x-ai-language"], "en");
    assert_eq!(h["x-ai-consumer"], "team-7");
    let entities: Value = serde_json::from_str(h["x-ai-entities"].as_str().unwrap()).unwrap();
    assert_eq!(
        entities,
        json!(["Acme", "Payments", "Zephyr"]),
        "capitalised words, as the mock extracts"
    );
    let score: u64 = h["x-ai-risk-score"].as_str().unwrap().parse().unwrap();
    assert!(score <= 100);
    // The body reached the upstream untouched.
    assert_eq!(r.json()["body"]["description"], TICKET);

    // One call per task, each in its provider's structured-output dialect.
    let calls = bed.task_calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let by_path = |p: &str| {
        calls
            .iter()
            .filter(|c| c["path"].as_str().unwrap().starts_with(p))
            .count()
    };
    assert_eq!(by_path("/v1/chat/completions"), 2);
    assert_eq!(by_path("/openai/deployments/gpt-4o/chat/completions"), 1);
    for c in &calls {
        let format = &c["json"]["response_format"];
        match c["json"]["model"].as_str() {
            Some("llama3") => {
                assert_eq!(format["type"], "json_object");
                assert_eq!(c["headers"]["authorization"], "Bearer local-key");
            }
            _ => {
                assert_eq!(format["type"], "json_schema");
                assert_eq!(format["json_schema"]["strict"], true);
            }
        }
    }
    // Counted, priced and logged with the request id.
    for task in ["intent", "entities", "risk"] {
        assert_eq!(
            bed.counter(&format!("ai_enrich_task_calls_total_task={task}_outcome=ok")),
            1,
            "{task}"
        );
    }
    assert!(bed.counter("ai_enrich_task_tokens_total_task=intent_kind=prompt") > 0);
    assert!(bed.counter("ai_enrich_task_cost_microusd_total_task=intent") > 0);
    assert_eq!(
        bed.counter("ai_enrich_requests_total_mode=enforce_result=enriched"),
        1
    );
    assert!(bed.envoy.wait_for_log(
        "ai-enrich: task=intent outcome=ok target=mini",
        Duration::from_secs(5)
    ));
    let request_id = h["x-request-id"].as_str().unwrap();
    assert!(
        bed.envoy.logs().contains(&format!("request_id={request_id}")),
        "the log line carries the request id"
    );
    let prom = bed.envoy.stats_prometheus();
    assert!(
        prom.contains("ai_enrich_task_calls_total{outcome=\"ok\",task=\"intent\"} 1"),
        "{prom}"
    );
}

#[test]
fn two_tasks_of_one_request_run_in_parallel() {
    let bed = Bed::start(|port| {
        json!({"targets": targets(port), "tasks": [intent_task(), risk_task()],
               "headers": {"x-ai-intent": "task.intent/intent", "x-ai-risk-score": "task.risk/score"}})
    });
    bed.mock
        .add_fault(&json!({"path_prefix": "/v1/chat/completions", "times": 0, "fault": {"delay_ms": 1000}}))
        .unwrap();
    let started = Instant::now();
    let h = upstream_headers(&bed.ticket(&[]));
    let took = started.elapsed();
    assert_eq!(h["x-ai-intent"], "billing");
    assert!(h["x-ai-risk-score"].is_string());
    assert_eq!(bed.task_calls().len(), 2);
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(1800),
        "two calls of 1 s each took {took:?}: not in parallel"
    );
}

/// A task that reads another's output waits for it: the calls go in two waves.
#[test]
fn a_task_reading_another_runs_after_it() {
    let bed = Bed::start(|port| {
        let mut summary = risk_task();
        summary["name"] = json!("routing");
        summary["prompt"] = json!("Intent {{task.intent/intent}}. Route this ticket: {{body/subject}}");
        json!({"targets": targets(port), "tasks": [summary, intent_task()],
               "headers": {"x-ai-route": "task.routing/score", "x-ai-intent": "task.intent/intent"}})
    });
    let h = upstream_headers(&bed.ticket(&[]));
    assert_eq!(h["x-ai-intent"], "billing");
    let calls = bed.task_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        user_text(&calls[1]),
        "Intent billing. Route this ticket: Double charge"
    );
}

#[test]
fn a_cache_hit_makes_no_second_model_call() {
    let bed = Bed::start(|port| {
        let mut t = intent_task();
        t["cache_ttl"] = json!("60s");
        json!({"targets": targets(port), "tasks": [t], "headers": {"x-ai-intent": "task.intent/intent"}})
    });
    let first = upstream_headers(&bed.ticket(&[]));
    assert_eq!(bed.task_calls().len(), 1);
    let second = upstream_headers(&bed.ticket(&[]));
    assert_eq!(second["x-ai-intent"], first["x-ai-intent"]);
    assert_eq!(bed.task_calls().len(), 1, "answered from the cache");
    assert_eq!(
        bed.counter("ai_enrich_task_calls_total_task=intent_outcome=cached"),
        1
    );
    // Another ticket is another question.
    let body = json!({"description": "I cannot log in to my account"});
    let r = bed.send(
        "POST",
        "/echo/tickets",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(upstream_headers(&r)["x-ai-intent"], "account");
    assert_eq!(bed.task_calls().len(), 2);
}

/// Timeout and provider error under each failure mode: allow goes on without the header, deny refuses
/// the request before it reaches the upstream, defaults sends the configured value.
#[test]
fn timeouts_and_upstream_errors_under_each_failure_mode() {
    let modes = [
        ("allow", json!({"failure_mode": "allow"})),
        ("deny", json!({"failure_mode": "deny"})),
        (
            "defaults",
            json!({"failure_mode": "defaults", "defaults": {"intent": "other"}}),
        ),
    ];
    for (mode, extra) in modes {
        let bed = Bed::start(|port| {
            let mut t = intent_task();
            t["timeout"] = json!("300ms");
            for (k, v) in extra.as_object().unwrap() {
                t[k] = v.clone();
            }
            json!({"targets": targets(port), "tasks": [t], "headers": {"x-ai-intent": "task.intent/intent"}})
        });
        for (fault, outcome) in [
            (json!({"delay_ms": 1500}), "timeout"),
            (json!({"status": 500}), "upstream-error"),
        ] {
            bed.mock
                .add_fault(&json!({"path_prefix": "/v1/chat/completions", "fault": fault}))
                .unwrap();
            let echoes_before = bed.mock.requests().len() - bed.task_calls().len();
            let r = bed.ticket(&[]);
            let echoes = bed.mock.requests().len() - bed.task_calls().len();
            match mode {
                "allow" => {
                    let h = upstream_headers(&r);
                    assert!(h.get("x-ai-intent").is_none(), "{mode} {outcome}: {h}");
                }
                "deny" => {
                    assert_eq!(r.status, 503, "{mode} {outcome}: {}", r.text());
                    assert_eq!(r.json()["error"]["code"], "enrichment_failed");
                    assert!(r.json()["error"]["message"].as_str().unwrap().contains(outcome));
                    assert_eq!(
                        echoes, echoes_before,
                        "a denied request never reaches the upstream"
                    );
                }
                _ => assert_eq!(upstream_headers(&r)["x-ai-intent"], "other", "{mode} {outcome}"),
            }
            let counted = bed.counter(&format!(
                "ai_enrich_task_calls_total_task=intent_outcome={outcome}"
            ));
            assert_eq!(counted, 1, "{mode} {outcome}");
            assert!(bed.envoy.wait_for_log(
                &format!("outcome={outcome} target=mini model=gpt-4o-mini"),
                Duration::from_secs(5)
            ));
            assert!(bed.envoy.logs().contains(&format!("failure_mode={mode}")));
        }
        let result = if mode == "deny" { "denied" } else { "partial" };
        assert_eq!(
            bed.counter(&format!("ai_enrich_requests_total_mode=enforce_result={result}")),
            2,
            "{mode}"
        );
    }
}

#[test]
fn an_invalid_model_answer_is_a_failure() {
    let bed = Bed::start(|port| {
        let mut t = intent_task();
        t["failure_mode"] = json!("defaults");
        t["defaults"] = json!({"intent": "other"});
        json!({"targets": targets(port), "tasks": [t], "headers": {"x-ai-intent": "task.intent/intent"}})
    });
    for reply in [
        "not json",
        r#"{"intent": "refund"}"#,
        r#"{"category": "billing"}"#,
    ] {
        bed.mock
            .add_fault(&json!({"path_prefix": "/v1/chat/completions", "fault": {"reply": reply}}))
            .unwrap();
        assert_eq!(
            upstream_headers(&bed.ticket(&[]))["x-ai-intent"],
            "other",
            "{reply}"
        );
    }
    assert_eq!(
        bed.counter("ai_enrich_task_calls_total_task=intent_outcome=invalid-output"),
        3
    );
    assert!(bed
        .envoy
        .wait_for_log("does not match the schema at $.intent", Duration::from_secs(5)));
    // The next, valid answer is used again.
    assert_eq!(upstream_headers(&bed.ticket(&[]))["x-ai-intent"], "billing");
}

#[test]
fn forged_client_headers_are_stripped() {
    let bed = Bed::start(|port| {
        let mut c = config(port);
        c["paths"] = json!(["/echo/tickets"]);
        c["context_token"] = json!({"key": {"env": "ENRICH_TOKEN_KEY"}, "kid": "k1"});
        c
    });
    let forged = [
        ("x-ai-intent", "admin"),
        ("x-ai-risk-score", "0"),
        ("x-ai-context", "eyJhbGciOiJub25lIn0.eyJhZG1pbiI6dHJ1ZX0."),
        ("X-AI-Language", "xx"),
    ];
    let h = upstream_headers(&bed.ticket(&forged));
    assert_eq!(h["x-ai-intent"], "billing");
    assert_ne!(h["x-ai-risk-score"], "0");
    assert_eq!(h["x-ai-language"], "en");
    assert_ne!(h["x-ai-context"], forged[2].1);
    // On a path it does not enrich, and when a task fails, they are still removed.
    let r = bed.send("GET", "/echo/other", &forged, b"");
    let h = upstream_headers(&r);
    for (name, _) in forged {
        assert!(
            h.get(name.to_ascii_lowercase()).is_none(),
            "{name} reached the upstream: {h}"
        );
    }
    bed.mock
        .add_fault(
            &json!({"path_prefix": "/v1/chat/completions", "model": "gpt-4o-mini", "fault": {"status": 500}}),
        )
        .unwrap();
    let h = upstream_headers(&bed.ticket(&forged));
    assert!(h.get("x-ai-intent").is_none(), "{h}");
    assert!(bed.counter("ai_enrich_forged_headers_total") >= 12);
}

/// Verifies a JWT with the Python standard library only (hmac, hashlib, base64): an implementation
/// independent of the gateway's.
const VERIFY_JWT: &str = r#"
import base64, hashlib, hmac, json, os, time
token, key = os.environ["TOKEN"], os.environ["KEY"].encode()
h, p, s = token.split(".")
def b64d(x):
    return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
mac = hmac.new(key, (h + "." + p).encode(), hashlib.sha256).digest()
expected = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
claims = json.loads(b64d(p))
print(json.dumps({"signature_ok": hmac.compare_digest(expected, s), "header": json.loads(b64d(h)),
                  "claims": claims, "expired": time.time() >= claims["exp"]}))
"#;

fn verify(token: &str, key: &str) -> Value {
    Sdk::new("http://127.0.0.1:1", "unused")
        .env("TOKEN", token)
        .env("KEY", key)
        .run_json(VERIFY_JWT)
        .unwrap()
}

#[test]
fn the_context_token_verifies_with_its_key_and_expires_after_its_ttl() {
    let bed = Bed::start(|port| {
        json!({"targets": targets(port), "tasks": [intent_task()],
               "claims": {"header": "x-jwt-payload"},
               "context_token": {"key": {"env": "ENRICH_TOKEN_KEY"}, "kid": "enrich-1", "issuer": "gw-test",
                                 "audience": "tickets", "ttl": "2s",
                                 "claims": {"intent": "task.intent/intent", "lang": "local.language"},
                                 "caller_claims": ["sub", "tenant"]}})
    });
    // The caller's token as an authentication filter in front forwards its verified payload.
    let payload = e2e_b64url(br#"{"sub": "alice", "tenant": "acme", "role": "admin"}"#);
    let r = bed.ticket(&[("x-jwt-payload", &payload)]);
    let token = upstream_headers(&r)["x-ai-context"].as_str().unwrap().to_string();
    let v = verify(&token, TOKEN_KEY);
    assert_eq!(v["signature_ok"], true, "{v}");
    assert_eq!(
        v["header"],
        json!({"alg": "HS256", "typ": "JWT", "kid": "enrich-1"})
    );
    let claims = &v["claims"];
    assert_eq!(
        (
            &claims["intent"],
            &claims["lang"],
            &claims["sub"],
            &claims["tenant"]
        ),
        (&json!("billing"), &json!("en"), &json!("alice"), &json!("acme"))
    );
    assert!(claims.get("role").is_none(), "only the selected caller claims");
    assert_eq!(
        (&claims["iss"], &claims["aud"]),
        (&json!("gw-test"), &json!("tickets"))
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        2
    );
    assert_eq!(v["expired"], false);
    assert_eq!(
        verify(&token, "another key of at least 32 bytes!!")["signature_ok"],
        false
    );
    assert_eq!(bed.counter("ai_enrich_tokens_issued_total"), 1);
    // Past its TTL the same token is expired (exp is whole seconds: wait for the next one after it).
    let exp = claims["exp"].as_u64().unwrap();
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        < exp
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(verify(&token, TOKEN_KEY)["expired"], true);
}

fn e2e_b64url(bytes: &[u8]) -> String {
    shared::crypto::base64url_encode(bytes)
}

#[test]
fn past_the_token_budget_the_failure_mode_applies() {
    let bed = Bed::start(|port| {
        let mut t = intent_task();
        t["tokens_per_minute"] = json!(300);
        t["max_tokens"] = json!(150);
        t["failure_mode"] = json!("defaults");
        t["defaults"] = json!({"intent": "other"});
        json!({"targets": targets(port), "tasks": [t], "headers": {"x-ai-intent": "task.intent/intent"}})
    });
    let mut intents = Vec::new();
    for _ in 0..6 {
        intents.push(
            upstream_headers(&bed.ticket(&[]))["x-ai-intent"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let calls = bed.task_calls().len();
    assert!((1..6).contains(&calls), "{calls} calls: {intents:?}");
    assert_eq!(
        intents[..calls].iter().filter(|i| *i == "billing").count(),
        calls,
        "{intents:?}"
    );
    assert!(intents[calls..].iter().all(|i| i == "other"), "{intents:?}");
    assert_eq!(
        bed.counter("ai_enrich_task_calls_total_task=intent_outcome=budget"),
        (6 - calls) as u64
    );
    assert!(bed
        .envoy
        .wait_for_log("tokens this minute used", Duration::from_secs(5)));
}

#[test]
fn pii_is_masked_in_what_the_model_saw() {
    let bed = Bed::start(|port| {
        let mut plain = risk_task();
        plain["redact"] = json!(false);
        json!({"targets": targets(port), "tasks": [intent_task(), plain],
               "headers": {"x-ai-intent": "task.intent/intent", "x-ai-pii": "local.pii"}})
    });
    let r = bed.ticket(&[]);
    let h = upstream_headers(&r);
    assert_eq!(
        h["x-ai-pii"], r#"{"email":1,"phone":1}"#,
        "types and counts, never values"
    );
    let calls = bed.task_calls();
    let intent = calls
        .iter()
        .find(|c| c["json"]["model"] == "gpt-4o-mini")
        .unwrap();
    let seen = user_text(intent);
    assert!(!seen.contains("jane.doe") && !seen.contains("555 0100"), "{seen}");
    assert!(seen.contains("<EMAIL_1>") && seen.contains("<PHONE_1>"), "{seen}");
    let plain = calls.iter().find(|c| c["json"]["model"] == "llama3").unwrap();
    assert!(user_text(plain).contains("jane.doe@example.com"), "redact: false");
    // The upstream still gets the request as the client sent it.
    assert_eq!(r.json()["body"]["description"], TICKET);
}

#[test]
fn shadow_and_log_only_change_nothing() {
    for (mode, label) in [("shadow", "shadow"), ("log_only", "log-only")] {
        let bed = Bed::start(|port| {
            let mut c = config(port);
            c["mode"] = json!(mode);
            c["tasks"][0]["failure_mode"] = json!("deny");
            c["context_token"] = json!({"key": {"env": "ENRICH_TOKEN_KEY"}, "kid": "k1"});
            c
        });
        let body = json!({"subject": "Double charge", "description": TICKET});
        let r = bed.ticket(&[("x-ai-intent", "forged")]);
        let echoed = r.json();
        let h = upstream_headers(&r);
        let ours: Vec<&String> = h
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("x-ai-") && *k != "x-ai-cluster")
            .collect();
        assert!(ours.is_empty(), "{mode}: {ours:?}");
        assert_eq!(echoed["body"], body, "{mode}");
        assert_eq!(bed.task_calls().len(), 3, "{mode}: the tasks still run");
        assert!(bed.envoy.wait_for_log(
            &format!("ai-enrich: mode={label} result=enriched"),
            Duration::from_secs(5)
        ));
        let logs = bed.envoy.logs();
        if mode == "shadow" {
            assert!(
                logs.contains("would_set=") && logs.contains("x-ai-intent(7 bytes)"),
                "{logs}"
            );
            assert!(!logs.contains("outputs="), "shadow logs no values");
        } else {
            assert!(logs.contains(r#""x-ai-intent":"billing""#), "{logs}");
            assert!(logs.contains("cost_usd="), "{logs}");
        }
        // A failing task whose mode is deny refuses nothing either.
        bed.mock
            .add_fault(&json!({"path_prefix": "/v1/chat/completions", "model": "gpt-4o-mini", "fault": {"status": 500}}))
            .unwrap();
        let r = bed.ticket(&[]);
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        assert!(
            bed.envoy
                .wait_for_log("would_deny=intent", Duration::from_secs(5)),
            "{mode}"
        );
        assert_eq!(
            bed.counter(&format!("ai_enrich_requests_total_mode={label}_result=partial")),
            1
        );
    }
}

/// Any HTTP API: a form, an XML document, a GET with a query, plain text; local enrichers alone.
#[test]
fn works_for_any_api_and_without_a_model() {
    let bed = Bed::start(|port| {
        json!({"targets": targets(port),
               "tasks": [{"name": "topic", "target": "mini",
                          "prompt": "Search {{query.q}} / {{body/comment}} / {{method}} {{path}} / {{body}}",
                          "output": {"type": "object", "required": ["topic"],
                                     "properties": {"topic": {"enum": ["billing", "account", "other"]}}}}],
               "headers": {"x-ai-topic": "task.topic/topic", "x-ai-language": "local.language",
                           "x-ai-body-bytes": "local.body_bytes", "x-ai-pii": "local.pii"}})
    });
    let form = "comment=Mein+Konto+ist+gesperrt+und+ich+brauche+bitte+Hilfe&user=42";
    let r = bed.send(
        "POST",
        "/echo/forms",
        &[("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    let h = upstream_headers(&r);
    assert_eq!(h["x-ai-language"], "de");
    assert_eq!(h["x-ai-body-bytes"], form.len().to_string());
    let calls = bed.task_calls();
    assert!(
        user_text(calls.last().unwrap()).starts_with(
            "Search  / Mein Konto ist gesperrt und ich brauche bitte Hilfe / POST /echo/forms / comment="
        ),
        "{}",
        user_text(calls.last().unwrap())
    );

    let xml = "<ticket><note>Je ne peux pas ouvrir mon account, merci</note></ticket>";
    let h = upstream_headers(&bed.send(
        "PUT",
        "/echo/xml",
        &[("content-type", "application/xml")],
        xml.as_bytes(),
    ));
    assert_eq!(h["x-ai-language"], "fr");
    assert_eq!(h["x-ai-topic"], "account");

    let h = upstream_headers(&bed.send("GET", "/echo/search?q=billing%20history", &[], b""));
    assert_eq!(h["x-ai-topic"], "billing");
    assert_eq!(h["x-ai-body-bytes"], "0");
    assert_eq!(h["x-ai-language"], "und");
    assert_eq!(
        user_text(bed.task_calls().last().unwrap()),
        "Search billing history /  / GET /echo/search / "
    );

    let h = upstream_headers(&bed.send(
        "POST",
        "/echo/text",
        &[("content-type", "text/plain")],
        b"call me at +1 415 555 0100",
    ));
    assert_eq!(h["x-ai-pii"], r#"{"phone":1}"#);
}

#[test]
fn local_enrichment_needs_no_model() {
    let bed =
        Bed::start(|_| json!({"headers": {"x-ai-language": "local.language", "x-ai-pii": "local.pii"}}));
    let body = json!({"text": "Hola, no puedo entrar en mi cuenta, mi correo es ana@example.com, gracias"});
    let r = bed.send(
        "POST",
        "/echo/x",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    let h = upstream_headers(&r);
    assert_eq!(
        (&h["x-ai-language"], &h["x-ai-pii"]),
        (&json!("es"), &json!(r#"{"email":1}"#))
    );
    assert!(bed.task_calls().is_empty());
}
