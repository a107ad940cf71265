//! ai-router end to end, in real Envoy: each condition kind in front of ai-proxy (the body's model set
//! once, then routed by ai-proxy to the model's target), rule order and the default, splits, the intent
//! task on the mock model with its cache and its failure mode, shadow mode changing only metrics, and
//! non-LLM requests sent to the upstream a rule picks.

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::Response;
use e2e::mock::MockServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn router(config: Value) -> Filter {
    Filter::new("ai-router", e2e::wasm_path("ai_router"), config)
}

/// The client-facing models ai-proxy serves: `m-<x>` goes to target `t-<x>`, upstream model `up-<x>`.
const MODELS: [&str; 19] = [
    "keywords", "regex", "language", "long", "many", "code", "images", "tools", "json", "model", "header",
    "tier", "group", "claim", "consumer", "a", "b", "default", "orig",
];

fn proxy(port: u16) -> Filter {
    let host = format!("127.0.0.1:{port}");
    let targets: Vec<Value> = MODELS
        .iter()
        .map(|m| {
            json!({"name": format!("t-{m}"), "provider": "openai", "model": format!("up-{m}"),
                   "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-proxy"}})
        })
        .collect();
    let models: serde_json::Map<String, Value> = MODELS
        .iter()
        .map(|m| {
            (
                format!("m-{m}"),
                json!({"targets": [{"target": format!("t-{m}")}]}),
            )
        })
        .collect();
    Filter::ai_proxy(json!({"targets": targets, "models": models}))
}

fn to(model: &str) -> Value {
    json!({"model": format!("m-{model}")})
}

/// One rule per condition kind, in this order, then the default.
fn rules() -> Value {
    json!([
        {"name": "keywords", "when": {"text": {"keywords": ["refund", "chargeback"]}}, "action": to("keywords")},
        {"name": "regex", "when": {"text": {"regex": "(?i)\\bpirate\\b", "roles": ["system"]}}, "action": to("regex")},
        {"name": "language", "when": {"language": ["fr"]}, "action": to("language")},
        {"name": "long", "when": {"tokens": {"min": 500}}, "action": to("long")},
        {"name": "many", "when": {"messages": {"min": 5}}, "action": to("many")},
        {"name": "code", "when": {"code": true}, "action": to("code")},
        {"name": "images", "when": {"images": true}, "action": to("images")},
        {"name": "tools", "when": {"tools": true}, "action": to("tools")},
        {"name": "json", "when": {"response_format": true}, "action": to("json")},
        {"name": "model", "when": {"model": ["legacy"]}, "action": to("model")},
        {"name": "header", "when": {"headers": {"x-team": "^pay"}}, "action": to("header")},
        {"name": "tier", "when": {"tier": ["gold"]}, "action": to("tier")},
        {"name": "group", "when": {"group": ["staff"]}, "action": to("group")},
        {"name": "claim", "when": {"claims": {"plan": ["pro"]}}, "action": to("claim")},
        {"name": "consumer", "when": {"consumer": ["alice"]}, "action": to("consumer")},
        // Never reached: the first rule takes every request this one would.
        {"name": "shadowed", "when": {"text": {"keywords": ["refund"]}}, "action": to("a")},
        {"name": "canary", "when": {"headers": {"x-canary": "^1$"}},
         "action": {"split": [{"model": "m-a", "weight": 50}, {"model": "m-b", "weight": 50}]}}
    ])
}

fn router_config(mode: &str) -> Value {
    json!({
        "mode": mode,
        "consumer": [{"type": "header", "name": "x-consumer-id"}],
        "tier": [{"type": "header", "name": "x-tier"}],
        "group": [{"type": "jwt_claim", "claim": "group", "header": "x-jwt-payload"}],
        "claims": {"header": "x-jwt-payload"},
        "rules": rules(),
        "default": to("default")
    })
}

struct Bed {
    mock: MockServer,
    envoy: Envoy,
}

impl Bed {
    fn start(filters: impl FnOnce(u16) -> Vec<Filter>) -> Bed {
        let mock = MockServer::start(0).unwrap();
        let mut opts = EnvoyOptions::new(mock.port());
        for f in filters(mock.port()) {
            opts = opts.filter(f);
        }
        let envoy = Envoy::start(opts).unwrap();
        Bed { mock, envoy }
    }

    fn chat(&self, body: Value, headers: &[(&str, &str)]) -> Response {
        let r = self.envoy.chat(&body, headers);
        assert_eq!(r.status, 200, "{body}: {}", r.text());
        r
    }

    /// The last request the mock received.
    fn last(&self) -> Value {
        self.mock.requests().pop().unwrap()
    }

    fn stats(&self) -> String {
        self.envoy.stats_prometheus()
    }
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn ask(model: &str, messages: Value) -> Value {
    json!({"model": model, "messages": messages})
}

/// The rule expected, the request body, its headers.
type Case = (&'static str, Value, Vec<(&'static str, String)>);

#[test]
fn each_condition_kind_routes_in_rule_order_then_the_default() {
    let bed = Bed::start(|port| vec![router(router_config("enforce")), proxy(port)]);
    let long = "the quick brown fox jumps over the lazy dog ".repeat(60);
    let five = json!([
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"}, {"role": "assistant", "content": "four"},
        {"role": "user", "content": "five"}
    ]);
    let image = json!([{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]);
    let tool = json!({"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}});
    let jwt = |claims: Value| claims.to_string();
    let cases: Vec<Case> = vec![
        ("keywords", ask("auto", user("I want a REFUND now")), vec![]),
        // Both the first rule and the language rule hold: the first wins.
        (
            "keywords",
            ask("auto", user("Bonjour, je veux un refund pour ma commande")),
            vec![],
        ),
        (
            "regex",
            ask(
                "auto",
                json!([{"role": "system", "content": "Talk like a Pirate."}, {"role": "user", "content": "hi"}]),
            ),
            vec![],
        ),
        // A pirate in the user's text is not in the system role.
        ("default", ask("auto", user("a pirate story")), vec![]),
        (
            "language",
            ask(
                "auto",
                user("Bonjour, pouvez-vous m'aider avec ma commande, s'il vous plaît ?"),
            ),
            vec![],
        ),
        ("long", ask("auto", user(&long)), vec![]),
        ("many", ask("auto", five), vec![]),
        (
            "code",
            ask("auto", user("Why does this fail?\n```python\nprint(1/0)\n```")),
            vec![],
        ),
        ("images", ask("auto", image), vec![]),
        (
            "tools",
            json!({"model": "auto", "messages": user("weather in Paris"), "tools": [tool]}),
            vec![],
        ),
        (
            "json",
            json!({"model": "auto", "messages": user("a list as json"), "response_format": {"type": "json_object"}}),
            vec![],
        ),
        ("model", ask("legacy", user("hello")), vec![]),
        (
            "header",
            ask("auto", user("hello")),
            vec![("x-team", "payments".into())],
        ),
        (
            "default",
            ask("auto", user("hello")),
            vec![("x-team", "support".into())],
        ),
        (
            "tier",
            ask("auto", user("hello")),
            vec![("x-tier", "gold".into())],
        ),
        (
            "group",
            ask("auto", user("hello")),
            vec![("x-jwt-payload", jwt(json!({"group": "staff"})))],
        ),
        (
            "claim",
            ask("auto", user("hello")),
            vec![("x-jwt-payload", jwt(json!({"plan": "pro"})))],
        ),
        (
            "default",
            ask("auto", user("hello")),
            vec![("x-jwt-payload", jwt(json!({"plan": "free"})))],
        ),
        (
            "consumer",
            ask("auto", user("hello")),
            vec![("x-consumer-id", "alice".into())],
        ),
        (
            "default",
            ask("auto", user("hello")),
            vec![("x-consumer-id", "bob".into()), ("x-ai-route", "keywords".into())],
        ),
    ];
    for (rule, body, headers) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = bed.chat(body.clone(), &h);
        assert_eq!(r.header("x-ai-route"), Some(rule), "{body}");
        assert_eq!(
            r.header("x-ai-target"),
            Some(format!("t-{rule}").as_str()),
            "{body}"
        );
        let sent = bed.last();
        assert_eq!(sent["json"]["model"], format!("up-{rule}"), "{body}");
        // The upstream is told the rule; a client's own x-ai-route never passes.
        assert_eq!(sent["headers"]["x-ai-route"], rule, "{body}");
        // The body was rewritten once, to valid JSON that keeps every other field.
        assert_eq!(sent["json"]["messages"], body["messages"], "{body}");
    }
    let stats = bed.stats();
    assert!(
        stats.contains(r#"ai_router_decisions_total{mode="enforce",rule="keywords"} 2"#),
        "{stats}"
    );
    assert!(!stats.contains(r#"rule="shadowed""#), "{stats}");
    assert!(bed
        .envoy
        .logs()
        .contains("ai-router: mode=enforce rule=code target=model:m-code"));
}

#[test]
fn a_split_sends_a_share_to_each_branch() {
    let bed = Bed::start(|port| vec![router(router_config("enforce")), proxy(port)]);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let r = bed.chat(ask("auto", user("hello")), &[("x-canary", "1")]);
        assert_eq!(r.header("x-ai-route"), Some("canary"));
        *seen
            .entry(r.header("x-ai-target").unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        vec!["t-a", "t-b"],
        "{seen:?}"
    );
    assert!(seen.values().all(|n| *n >= 8), "{seen:?}");
}

#[test]
fn shadow_mode_changes_nothing_but_metrics_and_the_log() {
    let bed = Bed::start(|port| vec![router(router_config("shadow")), proxy(port)]);
    let r = bed.chat(
        ask("m-orig", user("Why does this fail?\n```\nx = 1 / 0\n```")),
        &[],
    );
    assert_eq!(r.header("x-ai-route"), None);
    assert_eq!(r.header("x-ai-target"), Some("t-orig"));
    let sent = bed.last();
    assert_eq!(sent["json"]["model"], "up-orig");
    assert!(sent["headers"].get("x-ai-route").is_none(), "{sent}");
    let stats = bed.stats();
    assert!(
        stats.contains(r#"ai_router_decisions_total{mode="shadow",rule="code"} 1"#),
        "{stats}"
    );
    assert!(bed
        .envoy
        .logs()
        .contains("ai-router: mode=shadow rule=code target=model:m-code intent=- requested_model=m-orig"));
}

/// The model classifier: labels `other` (listed first: the mock's pick when no label is in the
/// prompt), `billing`, `code`.
fn intent_config(port: u16, timeout: &str) -> Value {
    json!({
        "targets": [{"name": "classifier", "provider": "openai", "model": "intent-model",
                     "endpoint": {"cluster": "mock_openai", "host": format!("127.0.0.1:{port}")},
                     "auth": {"value": "sk-task"}}],
        "intent": {"classifier": "model", "target": "classifier", "timeout": timeout,
                   "labels": [{"name": "other", "description": "anything else"},
                              {"name": "billing", "description": "invoices, charges and refunds"},
                              {"name": "code", "description": "programming questions"}]},
        "rules": [
            {"name": "header", "when": {"headers": {"x-team": "^pay"}}, "action": to("header")},
            {"name": "billing", "when": {"intent": ["billing"]}, "action": to("keywords")},
            {"name": "code", "when": {"intent": ["code"]}, "action": to("code")},
            {"name": "after", "when": {"text": {"keywords": ["zebra"]}}, "action": to("a")}
        ],
        "default": to("default")
    })
}

fn classifier_calls(bed: &Bed) -> Vec<Value> {
    bed.mock
        .requests()
        .into_iter()
        .filter(|r| r["json"]["model"] == "intent-model")
        .collect()
}

#[test]
fn the_intent_task_classifies_on_the_mock_and_caches_its_verdict() {
    let bed = Bed::start(|port| vec![router(intent_config(port, "2s")), proxy(port)]);
    let r = bed.chat(ask("auto", user("a billing question about my invoice")), &[]);
    assert_eq!(
        (r.header("x-ai-route"), r.header("x-ai-target")),
        (Some("billing"), Some("t-keywords"))
    );
    let calls = classifier_calls(&bed);
    assert_eq!(calls.len(), 1);
    // The classifier saw the labels and the user's message, and answered with structured output.
    let system = calls[0]["json"]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("- billing: invoices, charges and refunds"),
        "{system}"
    );
    assert_eq!(
        calls[0]["json"]["messages"][1]["content"],
        "a billing question about my invoice"
    );
    assert_eq!(calls[0]["json"]["response_format"]["type"], "json_schema");
    // The same prompt again: the cached verdict, no model call.
    let r = bed.chat(ask("auto", user("a billing question about my invoice")), &[]);
    assert_eq!(r.header("x-ai-route"), Some("billing"));
    assert_eq!(classifier_calls(&bed).len(), 1);
    let r = bed.chat(ask("auto", user("my code will not compile")), &[]);
    assert_eq!(r.header("x-ai-route"), Some("code"));
    // A label no rule takes: the later rules, then the default.
    let r = bed.chat(ask("auto", user("a zebra")), &[]);
    assert_eq!(r.header("x-ai-route"), Some("after"));
    let r = bed.chat(ask("auto", user("hello")), &[]);
    assert_eq!(r.header("x-ai-route"), Some("default"));
    // A rule that matches before any rule on the intent: no classification at all.
    let before = classifier_calls(&bed).len();
    let r = bed.chat(ask("auto", user("something new")), &[("x-team", "pay")]);
    assert_eq!(r.header("x-ai-route"), Some("header"));
    assert_eq!(classifier_calls(&bed).len(), before);
    let stats = bed.stats();
    assert!(
        stats.contains(r#"ai_router_task_calls_total{outcome="cached",task="intent"} 1"#),
        "{stats}"
    );
    assert!(
        stats.contains(r#"ai_router_task_calls_total{outcome="ok",task="intent"} 4"#),
        "{stats}"
    );
    assert!(
        stats.contains(r#"ai_router_intents_total{result="billing"} 2"#),
        "{stats}"
    );
}

#[test]
fn a_failed_or_slow_classifier_sends_the_request_to_the_default_route() {
    let bed = Bed::start(|port| vec![router(intent_config(port, "500ms")), proxy(port)]);
    bed.mock
        .add_fault(&json!({"model": "intent-model", "times": 1, "fault": {"status": 500}}))
        .unwrap();
    // "zebra" would match a later rule: failure_mode default goes straight to the default.
    let r = bed.chat(ask("auto", user("a zebra billing question")), &[]);
    assert_eq!(
        (r.header("x-ai-route"), r.header("x-ai-target")),
        (Some("default"), Some("t-default"))
    );
    bed.mock
        .add_fault(&json!({"model": "intent-model", "times": 1, "fault": {"delay_ms": 3000}}))
        .unwrap();
    let start = Instant::now();
    let r = bed.chat(ask("auto", user("another billing question")), &[]);
    assert_eq!(r.header("x-ai-route"), Some("default"));
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );
    let stats = bed.stats();
    assert!(
        stats.contains(r#"ai_router_intents_total{result="failed"} 2"#),
        "{stats}"
    );
    assert!(
        stats.contains(r#"ai_router_task_calls_total{outcome="timeout",task="intent"} 1"#),
        "{stats}"
    );
    // Once it answers again, it routes again.
    let r = bed.chat(ask("auto", user("a third billing question")), &[]);
    assert_eq!(r.header("x-ai-route"), Some("billing"));
}

#[test]
fn a_non_llm_request_goes_to_the_upstream_a_rule_picks() {
    let bed = Bed::start(|port| {
        let host = format!("127.0.0.1:{port}");
        vec![router(json!({
            "paths": ["/support/tickets"],
            "upstreams": {
                "desk": {"cluster": "mock_openai", "host": host, "path": "/echo/desk"},
                "faq": {"cluster": "mock_anthropic", "host": host, "path": "/echo/faq"}
            },
            "rules": [{"name": "angry", "when": {"text": {"keywords": ["refund", "angry"]}},
                       "action": {"upstream": "desk"}}],
            "default": {"upstream": "faq"}
        }))]
    });
    let send = |text: &str| {
        let body = json!({"subject": "Order 1234", "description": text});
        let r = bed.envoy.request(
            "POST",
            "/support/tickets",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r
    };
    let r = send("I am angry, I want my money back");
    assert_eq!(r.header("x-ai-route"), Some("angry"));
    let echo = r.json();
    assert_eq!(echo["path"], "/echo/desk");
    assert_eq!(echo["headers"]["x-ai-route"], "angry");
    assert_eq!(echo["body"]["description"], "I am angry, I want my money back");
    let r = send("How do I change my address?");
    assert_eq!(r.header("x-ai-route"), Some("default"));
    assert_eq!(r.json()["path"], "/echo/faq");
    // Another path is not the router's.
    let r = bed.envoy.request(
        "POST",
        "/echo/other",
        &[("x-ai-cluster", "mock_openai")],
        b"refund",
    );
    assert_eq!((r.status, r.header("x-ai-route")), (200, None));
}

/// The shipped example `examples/envoy/sentiment-routing.yaml`: ai-enrich's sentiment task sets a header,
/// ai-router routes on it, ai-proxy serves the model, the access log shows the route.
#[test]
fn the_sentiment_example_routes_unhappy_users_to_support() {
    let mock = MockServer::start(0).unwrap();
    let shipped =
        std::fs::read_to_string(e2e::repo_root().join("examples/envoy/sentiment-routing.yaml")).unwrap();
    let m = mock.port();
    let yaml = shipped
        .replace("port_value: 10010", "port_value: 0")
        .replace("port_value: 9911", "port_value: 0")
        .replace("port_value: 10001", &format!("port_value: {m}"))
        .replace("127.0.0.1:10001", &format!("127.0.0.1:{m}"));
    let envoy = Envoy::start_config(|_| yaml, 1).unwrap();
    let ask = |text: &str, headers: &[(&str, &str)]| {
        let r = envoy.chat(&json!({"model": "help", "messages": user(text)}), headers);
        assert_eq!(r.status, 200, "{}", r.text());
        (
            r.header("x-ai-route").unwrap_or("").to_string(),
            r.header("x-ai-target").unwrap_or("").to_string(),
        )
    };
    let unhappy = "This is terrible, I feel negative about your service";
    assert_eq!(ask(unhappy, &[]), ("support".into(), "support-model".into()));
    assert_eq!(
        ask("How do I reset my password?", &[]),
        ("default".into(), "faq-model".into())
    );
    // A client cannot pick the support model by sending the header itself.
    assert_eq!(
        ask("How do I reset my password?", &[("x-ai-sentiment", "negative")]),
        ("default".into(), "faq-model".into())
    );
    // The provider of the support model got the unhappy message; the sentiment task went to the FAQ's.
    let sent: Vec<Value> = mock
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/v1/messages")
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["json"]["messages"][0]["content"][0]["text"], unhappy);
    assert!(envoy.wait_for_log(
        "sentiment=negative route=support target=support-model",
        Duration::from_secs(5)
    ));
    assert!(envoy.wait_for_log(
        "sentiment=neutral route=default target=faq-model",
        Duration::from_secs(5)
    ));
}

#[test]
fn the_local_classifier_needs_no_model() {
    let bed = Bed::start(|port| {
        vec![
            router(json!({
                "intent": {"labels": [
                    {"name": "code", "code": true, "keywords": ["python", "compile"]},
                    {"name": "billing", "keywords": ["invoice", "refund", "charged"]},
                    {"name": "smalltalk", "max_words": 4}]},
                "rules": [
                    {"name": "code", "when": {"intent": ["code"]}, "action": to("code")},
                    {"name": "billing", "when": {"intent": ["billing"]}, "action": to("keywords")},
                    {"name": "chat", "when": {"intent": ["smalltalk"]}, "action": to("a")}
                ],
                "default": to("default")
            })),
            proxy(port),
        ]
    });
    let cases = [
        ("def f(x):\n    return x * 2\nwhy is this slow?", "code"),
        ("my python script will not compile", "code"),
        ("I was charged twice on this invoice", "billing"),
        ("hi there!", "chat"),
        ("Tell me about the history of Rome in detail", "default"),
    ];
    for (text, rule) in cases {
        let r = bed.chat(ask("auto", user(text)), &[]);
        assert_eq!(r.header("x-ai-route"), Some(rule), "{text}");
    }
    // No model was asked: every request the mock saw was a routed chat request.
    assert!(bed
        .mock
        .requests()
        .iter()
        .all(|r| r["headers"]["x-ai-route"].is_string()));
    let stats = bed.stats();
    assert!(
        stats.contains(r#"ai_router_intents_total{result="none"} 1"#),
        "{stats}"
    );
}
