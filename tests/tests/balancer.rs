//! ai-proxy's balancers end to end, in real Envoy with two workers (so the statistics must be shared):
//! `lowest_latency` follows the faster of two mock targets and comes back when the other recovers,
//! `least_busy` spreads concurrent slow requests, `lowest_cost` prices each request, `priority` skips an
//! open breaker. Targets differ by upstream model, so the mock's fault rules aim at one of them.

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::Response;
use e2e::mock::MockServer;
use serde_json::{json, Value};
use std::thread;

fn target(name: &str, model: &str, host: &str) -> Value {
    json!({"name": name, "provider": "openai", "model": model,
           "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-openai"}})
}

fn config(mock_port: u16, explore_percent: u32) -> Value {
    let host = format!("127.0.0.1:{mock_port}");
    let two = |a: &str, b: &str| json!([{"target": a}, {"target": b}]);
    json!({
        "targets": [
            target("a", "model-a", &host), target("b", "model-b", &host),
            target("c", "model-c", &host), target("d", "model-d", &host),
            {"name": "p1", "provider": "openai", "model": "model-p1",
             "endpoint": {"cluster": "mock_openai", "host": host}, "auth": {"value": "sk-openai"},
             "resilience": {"retries": 0, "breaker": {"consecutive_failures": 1, "cooldown_ms": 60000}}},
            {"name": "p2", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
             "endpoint": {"cluster": "mock_anthropic", "host": host}, "auth": {"value": "sk-ant"}}
        ],
        "models": {
            "fast": {"targets": two("a", "b"), "balancer": "lowest_latency"},
            "busy": {"targets": two("a", "b"), "balancer": "least_busy"},
            "cheap": {"targets": two("a", "b"), "balancer": "lowest_cost"},
            "cheap-tie": {"targets": two("c", "d"), "balancer": "lowest_cost"},
            "prio": {"targets": two("p1", "p2"), "balancer": "priority"},
            "stream-fast": {"targets": two("c", "d"), "balancer": "lowest_latency"}
        },
        "balancing": {"explore_percent": explore_percent, "half_life": "2s", "probe_after": "2s"},
        "prices": {
            // a: cheap prompts, dear completions; b the other way round.
            "model-a": {"prompt_per_million": 1, "completion_per_million": 10},
            "model-b": {"prompt_per_million": 5, "completion_per_million": 1},
            "model-c": {"prompt_per_million": 1, "completion_per_million": 1},
            "model-d": {"prompt_per_million": 1, "completion_per_million": 1}
        }
    })
}

struct Bed {
    mock: MockServer,
    envoy: Envoy,
}

impl Bed {
    fn start() -> Bed {
        Bed::start_exploring(10)
    }

    fn start_exploring(explore_percent: u32) -> Bed {
        let mock = MockServer::start(0).unwrap();
        let config = config(mock.port(), explore_percent);
        let mut opts = EnvoyOptions::new(mock.port()).filter(Filter::ai_proxy(config));
        opts.concurrency = 2;
        let envoy = Envoy::start(opts).unwrap();
        Bed { mock, envoy }
    }

    /// Every request for upstream `model` waits `ms` (until the faults are cleared).
    fn delay(&self, model: &str, ms: u64) {
        self.mock
            .add_fault(&json!({"model": model, "times": 0, "fault": {"delay_ms": ms}}))
            .unwrap();
    }

    fn ask(&self, model: &str, headers: &[(&str, &str)]) -> Response {
        let r = self.envoy.chat(
            &json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}),
            headers,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r
    }

    fn calls(&self, model: &str) -> usize {
        self.mock
            .requests()
            .iter()
            .filter(|r| r["json"]["model"] == model)
            .count()
    }
}

fn target_of(r: &Response) -> String {
    r.header("x-ai-target").unwrap_or("").to_string()
}

/// The targets of `n` sequential requests for `model`.
fn run(bed: &Bed, model: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let r = bed.ask(model, &[]);
            (
                target_of(&r),
                r.header("x-ai-target-reason").unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn count(picks: &[(String, String)], target: &str) -> usize {
    picks.iter().filter(|(t, _)| t == target).count()
}

#[test]
fn lowest_latency_moves_to_the_faster_target_and_back() {
    let bed = Bed::start();
    // Phase 1: a is slow. After the two first probes nearly everything goes to b.
    bed.delay("model-a", 300);
    let picks = run(&bed, "fast", 40);
    let reasons: Vec<&str> = picks.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        reasons.iter().take(2).filter(|r| **r == "probe").count(),
        2,
        "each unmeasured target is probed first: {picks:?}"
    );
    let late = &picks[10..];
    // 10 % exploration: 3 of these 30 on a on average; 8 or more would be a 1-in-1000 draw.
    assert!(
        count(late, "b") >= 22,
        "b, the faster, takes most of the traffic: {picks:?}"
    );
    for (t, r) in late {
        let expected = if t == "b" { "fastest" } else { "explore" };
        assert!(r == expected || r == "probe", "{t} for {r}: {picks:?}");
    }
    // Phase 2: a recovers, b slows down. Within a bounded number of requests most traffic is back on a.
    bed.mock.clear();
    bed.delay("model-b", 300);
    let picks = run(&bed, "fast", 60);
    let late = &picks[30..];
    assert!(count(late, "a") >= 22, "traffic moved back to a: {picks:?}");
    // How many requests it took: the first after which 8 of the next 10 go to a.
    let moved = (0..picks.len().saturating_sub(10))
        .find(|&i| count(&picks[i..i + 10], "a") >= 8)
        .unwrap();
    eprintln!("lowest_latency: back on the recovered target after {moved} requests");
    assert!(moved <= 30, "{picks:?}");
    let stats = bed.envoy.stats_prometheus();
    for reason in ["probe", "fastest", "explore"] {
        assert!(
            stats.contains(&format!(r#"balancer="lowest-latency",reason="{reason}""#)),
            "{reason} counted: {stats}"
        );
    }
    assert!(bed
        .envoy
        .logs()
        .contains("client_model=fast balancer=lowest_latency reason=fastest"));
}

#[test]
fn least_busy_spreads_slow_requests_across_workers() {
    let bed = Bed::start();
    // One slow request holds a target; meanwhile every quick one goes to the other.
    let slow = {
        let port = bed.envoy.port;
        thread::spawn(move || {
            let body = json!({"model": "busy", "messages": [{"role": "user", "content": "slow one"}]});
            let headers = [
                ("content-type", "application/json"),
                ("x-mock-fault", r#"{"delay_ms": 1500}"#),
            ];
            e2e::http::request(
                port,
                "POST",
                "/v1/chat/completions",
                &headers,
                body.to_string().as_bytes(),
            )
            .unwrap()
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !bed
        .mock
        .requests()
        .iter()
        .any(|r| r["body"].as_str().unwrap_or("").contains("slow one"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never reached the mock"
        );
        thread::sleep(std::time::Duration::from_millis(10));
    }
    let held = bed
        .mock
        .requests()
        .iter()
        .find(|r| r["body"].as_str().unwrap_or("").contains("slow one"))
        .map(|r| if r["json"]["model"] == "model-a" { "a" } else { "b" })
        .unwrap();
    let other = if held == "a" { "b" } else { "a" };
    let picks = run(&bed, "busy", 6);
    assert_eq!(count(&picks, other), 6, "{held} is busy: {picks:?}");
    assert!(picks.iter().all(|(_, r)| r == "least-busy"));
    let r = slow.join().unwrap();
    assert_eq!((r.status, target_of(&r)), (200, held.to_string()));

    // Six concurrent slow requests, on two workers: three each.
    let port = bed.envoy.port;
    let threads: Vec<_> = (0..6)
        .map(|i| {
            thread::spawn(move || {
                let body =
                    json!({"model": "busy", "messages": [{"role": "user", "content": format!("slow {i}")}]});
                let headers = [
                    ("content-type", "application/json"),
                    ("x-mock-fault", r#"{"delay_ms": 1000}"#),
                ];
                e2e::http::request(
                    port,
                    "POST",
                    "/v1/chat/completions",
                    &headers,
                    body.to_string().as_bytes(),
                )
                .unwrap()
            })
        })
        .collect();
    let targets: Vec<String> = threads
        .into_iter()
        .map(|t| {
            let r = t.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            target_of(&r)
        })
        .collect();
    assert_eq!(
        (count_str(&targets, "a"), count_str(&targets, "b")),
        (3, 3),
        "{targets:?}"
    );
    // Every count came back down: idle targets tie, and ties split at random.
    let picks = run(&bed, "busy", 30);
    assert!(count(&picks, "a") >= 5 && count(&picks, "b") >= 5, "{picks:?}");
}

fn count_str(targets: &[String], t: &str) -> usize {
    targets.iter().filter(|x| *x == t).count()
}

#[test]
fn lowest_cost_prices_each_request_and_breaks_ties_by_latency() {
    let bed = Bed::start();
    let long = "word ".repeat(600);
    let cases = [
        // A short prompt with a large completion budget: b's completions are cheaper.
        (
            json!({"model": "cheap", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}),
            "b",
        ),
        // A long prompt and one completion token: a's prompts are cheaper.
        (
            json!({"model": "cheap", "max_tokens": 1, "messages": [{"role": "user", "content": long}]}),
            "a",
        ),
        // No max_tokens: 256 are assumed, and b is cheaper for a short prompt.
        (
            json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}),
            "b",
        ),
    ];
    for (body, want) in cases {
        for _ in 0..3 {
            let r = bed.envoy.chat(&body, &[]);
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(target_of(&r), want, "{body}");
            assert_eq!(r.header("x-ai-target-reason"), Some("cheapest"));
        }
    }
    // c and d cost the same: the faster one wins once both are measured.
    bed.delay("model-c", 200);
    let picks = run(&bed, "cheap-tie", 8);
    assert_eq!(count(&picks[2..], "d"), 6, "{picks:?}");
    assert!(picks.iter().all(|(_, r)| r == "cheapest-faster"), "{picks:?}");
    let stats = bed.envoy.stats_prometheus();
    assert!(
        stats.contains(
            r#"ai_proxy_balancer_picks_total{target="b",balancer="lowest-cost",reason="cheapest"} 6"#
        ),
        "{stats}"
    );
}

#[test]
fn priority_takes_the_first_target_and_skips_an_open_breaker() {
    let bed = Bed::start();
    let r = bed.ask("prio", &[]);
    assert_eq!(
        (target_of(&r).as_str(), r.header("x-ai-target-reason")),
        ("p1", Some("primary"))
    );
    // p1 fails once: the chain falls back to p2, and p1's breaker opens.
    bed.mock
        .add_fault(&json!({"model": "model-p1", "times": 1, "fault": {"status": 500}}))
        .unwrap();
    let r = bed.ask("prio", &[]);
    assert_eq!(
        (target_of(&r).as_str(), r.header("x-ai-target-reason")),
        ("p2", Some("fallback"))
    );
    assert_eq!(bed.calls("model-p1"), 2);
    // While it is open, priority goes straight to p2: p1 is not called.
    for _ in 0..3 {
        let r = bed.ask("prio", &[]);
        assert_eq!(
            (target_of(&r).as_str(), r.header("x-ai-target-reason")),
            ("p2", Some("failover"))
        );
    }
    assert_eq!(bed.calls("model-p1"), 2, "the open breaker is skipped");
    let stats = bed.envoy.stats_prometheus();
    assert!(
        stats.contains(
            r#"ai_proxy_balancer_picks_total{target="p2",balancer="priority",reason="failover"} 3"#
        ),
        "{stats}"
    );
}

#[test]
fn lowest_latency_compares_streams_by_their_first_byte() {
    let bed = Bed::start_exploring(0);
    // c starts at once and then drips (slow to finish); d waits, then answers at once.
    bed.mock
        .add_fault(&json!({"model": "model-c", "times": 0, "fault": {"drip_ms": 60}}))
        .unwrap();
    bed.delay("model-d", 250);
    let mut picks = Vec::new();
    for _ in 0..8 {
        let body = json!({"model": "stream-fast", "stream": true,
                          "messages": [{"role": "user", "content": "hello"}]});
        let r = bed.envoy.chat(&body, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().trim_end().ends_with("data: [DONE]"), "{}", r.text());
        picks.push((
            target_of(&r),
            r.header("x-ai-target-reason").unwrap_or("").to_string(),
        ));
    }
    // Both probed first; then c, whose whole answer is the slower, for its first byte (d is probed
    // again once its sample is older than probe_after, 2 s).
    assert_eq!(
        (count(&picks[..2], "c"), count(&picks[..2], "d")),
        (1, 1),
        "{picks:?}"
    );
    assert!(picks[..2].iter().all(|(_, r)| r == "probe"), "{picks:?}");
    for (t, r) in &picks[2..] {
        assert!(
            (t == "c" && r == "fastest") || (t == "d" && r == "probe"),
            "{picks:?}"
        );
    }
    assert!(count(&picks[2..], "c") >= 4, "{picks:?}");
}
