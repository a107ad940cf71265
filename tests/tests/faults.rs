//! The fault matrix, in one real Envoy: each provider ai-proxy serves (OpenAI, Azure OpenAI, an
//! OpenAI-compatible server, Anthropic, Gemini on AI Studio, Vertex AI and Bedrock at the OpenAI door,
//! Anthropic at its own door) × a JSON and a streamed request × each way a provider misbehaves (the
//! mock's faults). Every case must end, within its timeout, in what the table says: a well-formed
//! answer, an error in the door's shape with its status and code, a stream that ends in an error event
//! (and `data: [DONE]` at the OpenAI door), or — the one host limit, a forwarded stream cut after its
//! first byte — a reset of the client's stream, asserted as what it is (README, Reliability). Nothing
//! the client gets is not UTF-8, no VM panics, and ai-proxy's request counter counts each request
//! once. Gemini, Vertex AI and Bedrock answers are translated (Bedrock's stream from its binary event
//! stream), so their rows test the translation's ends too; where a fault means something else in
//! Bedrock's framing, [`want_for`] says what.
//!
//! The models are forwarded (no `fallback`, no `resilience`): callout mode judges whole answers and is
//! covered by `resilience.rs`.

use e2e::envoy::{Envoy, EnvoyOptions, Filter};
use e2e::http::{request, Response};
use e2e::mock::MockServer;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The route's upstream timeout: `delay_ms` goes past it.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long any case may take: the timeout, and the slow drip's answer, with room for a busy machine.
const CASE_BUDGET: Duration = Duration::from_secs(6);
/// An oversized answer: more than the gateway holds to read a JSON answer whole
/// (`shared::host::driver::MAX_HELD_RESPONSE`, 960 KiB).
const OVERSIZED: u64 = 1536 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    OpenAi,
    Anthropic,
}

/// One row of the matrix: a target of a provider, reached through `model` at `door`.
struct Row {
    provider: &'static str,
    door: Door,
    /// The model the client asks for; `dead-<model>` reaches the same provider on a port where
    /// nothing listens.
    model: &'static str,
    target: &'static str,
}

const ROWS: [Row; 8] = [
    Row {
        provider: "openai",
        door: Door::OpenAi,
        model: "m-openai",
        target: "oa",
    },
    Row {
        provider: "azure",
        door: Door::OpenAi,
        model: "m-azure",
        target: "az",
    },
    Row {
        provider: "openai_compatible",
        door: Door::OpenAi,
        model: "m-compat",
        target: "compat",
    },
    Row {
        provider: "anthropic",
        door: Door::OpenAi,
        model: "m-anthropic",
        target: "an",
    },
    Row {
        provider: "anthropic",
        door: Door::Anthropic,
        model: "m-anthropic-door",
        target: "an-door",
    },
    Row {
        provider: "gemini",
        door: Door::OpenAi,
        model: "m-gemini",
        target: "gem",
    },
    Row {
        provider: "vertex_ai",
        door: Door::OpenAi,
        model: "m-vertex",
        target: "vertex",
    },
    Row {
        provider: "bedrock",
        door: Door::OpenAi,
        model: "m-bedrock",
        target: "br",
    },
];

/// The provider keys configured, which no log line may carry.
const KEYS: [&str; 8] = [
    "sk-oa-3f9a7c",
    "az-key-81d2e4",
    "compat-key-5b6c0d",
    "sk-ant-9e8f7a",
    "sk-ant-door-1c2b3a",
    "AIza-gem-4d7e2f",
    "ya29.vertex-6a1b9c",
    "bedrock-key-2e5f8a",
];

fn config(mock_port: u16) -> Value {
    let host = format!("127.0.0.1:{mock_port}");
    let mut targets = Vec::new();
    let mut models = serde_json::Map::new();
    for (row, key) in ROWS.iter().zip(KEYS) {
        let (cluster, model_field) = match (row.provider, row.door) {
            ("azure", _) => ("mock_azure", json!({"deployment": "gpt-4o"})),
            ("anthropic", _) => ("mock_anthropic", json!({"model": "claude-3-5-haiku-20241022"})),
            ("gemini", _) => ("mock_openai", json!({"model": "gemini-2.0-flash"})),
            ("vertex_ai", _) => (
                "mock_openai",
                json!({"model": "gemini-2.5-pro", "project": "acme-ai", "location": "us-central1"}),
            ),
            // An API key (bearer), not SigV4: the key is then one `KEYS` checks the log for.
            ("bedrock", _) => (
                "mock_openai",
                json!({"model": "anthropic.claude-3-5-haiku-20241022-v1:0", "region": "us-east-1"}),
            ),
            _ => ("mock_openai", json!({"model": "gpt-4o-mini"})),
        };
        for (name, cluster, model) in [
            (row.target.to_string(), cluster, row.model.to_string()),
            (
                format!("{}-dead", row.target),
                "mock_dead",
                format!("dead-{}", row.model),
            ),
        ] {
            let mut t = json!({"name": name, "provider": row.provider,
                "endpoint": {"cluster": cluster, "host": host}, "auth": {"value": key}});
            for (k, v) in model_field.as_object().unwrap() {
                t[k] = v.clone();
            }
            targets.push(t);
            models.insert(model, json!({"targets": [{"target": name}]}));
        }
    }
    json!({"targets": targets, "models": models})
}

/// What a case must end in.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    /// 200 and a well-formed answer (JSON, or a stream with its end).
    Answer,
    /// This status and an error in the door's shape with this code.
    Error(u16, &'static str),
    /// This status and the provider's own error, in the door's shape (any code, or OpenAI's `null`).
    ProviderError(u16),
    /// This status and an OpenAI error with this code, whatever the door: Envoy's own reply after
    /// ai-proxy held the headers (a JSON answer cut midway) does not pass through the filter, so the
    /// `local_reply_config` mapper's OpenAI shape reaches Anthropic's door too (a host limit).
    OpenAiError(u16, &'static str),
    /// 200 and a stream ending in an error event with this code (then `[DONE]` at the OpenAI door).
    StreamError(&'static str),
    /// The host limit: the headers and first events left, then Envoy reset the client's stream.
    Reset,
}

/// One fault: its name, the mock's fault, and what a JSON and a streamed request must end in.
struct Case {
    name: &'static str,
    fault: Value,
    /// Sent to the `dead-` model (connection refused).
    dead: bool,
    json: Want,
    stream: Want,
}

fn cases() -> Vec<Case> {
    use Want::*;
    let bad = "bad_upstream_response";
    let case = |name, fault: Value, json: Want, stream: Want| Case {
        name,
        fault,
        dead: false,
        json,
        stream,
    };
    vec![
        case(
            "429",
            json!({"status": 429}),
            ProviderError(429),
            ProviderError(429),
        ),
        case(
            "500",
            json!({"status": 500}),
            ProviderError(500),
            ProviderError(500),
        ),
        case(
            "503",
            json!({"status": 503}),
            ProviderError(503),
            ProviderError(503),
        ),
        case(
            "malformed body",
            json!({"malformed": true}),
            Error(502, bad),
            StreamError(bad),
        ),
        case(
            "non-JSON body or chunk",
            json!({"not_json": true}),
            Error(502, bad),
            StreamError(bad),
        ),
        case(
            "reset before headers",
            json!({"reset": true}),
            Error(502, "upstream_unavailable"),
            Error(502, "upstream_unavailable"),
        ),
        case(
            "cut midway",
            json!({"cut_after": 3}),
            Error(502, "upstream_unavailable"),
            Reset,
        ),
        case(
            "delay past the timeout",
            json!({"delay_ms": 3000}),
            Error(504, "upstream_timeout"),
            Error(504, "upstream_timeout"),
        ),
        case("slow drip", json!({"drip_ms": 150}), Answer, Answer),
        Case {
            name: "connection refused",
            fault: json!({}),
            dead: true,
            json: Error(502, "upstream_unavailable"),
            stream: Error(502, "upstream_unavailable"),
        },
        case(
            "oversized answer",
            json!({"pad": OVERSIZED}),
            Error(502, "response_too_large"),
            Answer,
        ),
        case(
            "invalid UTF-8",
            json!({"invalid_utf8": true}),
            Error(502, bad),
            Answer,
        ),
        case("wrong content type", Value::Null, Answer, Error(502, bad)),
        case(
            "gzip-encoded answer",
            json!({"gzip": true}),
            Error(502, bad),
            Error(502, bad),
        ),
    ]
}

/// What a case must end in for a row: the table's, but for the one reply that keeps the OpenAI shape
/// at Anthropic's door, and Bedrock's binary stream, whose frames are read strictly.
///
/// Bedrock's stream (`application/vnd.amazon.eventstream`, each message with a length prelude and
/// CRCs) gives two faults another meaning: "non-JSON chunk" puts an HTML page where the second
/// message should be, so its prelude reads as an impossible length (a corrupt frame, not a JSON
/// event with bad data: the table's error event all the same); and "invalid UTF-8" is a bad byte in a
/// well-framed message (the mock recomputes its CRC), whose payload the gateway refuses as not UTF-8
/// JSON (`shared::provider::message_frame`), as it refuses any JSON answer with one, rather than
/// relaying U+FFFD as it does for SSE: an error event `bad_upstream_response`, then `[DONE]`.
fn want_for(row: &Row, case: &Case, stream: bool) -> Want {
    let want = if stream { &case.stream } else { &case.json };
    match want {
        Want::Error(status, code) if row.door == Door::Anthropic && case.name == "cut midway" => {
            Want::OpenAiError(*status, code)
        }
        Want::Answer if row.provider == "bedrock" && stream && case.name == "invalid UTF-8" => {
            Want::StreamError("bad_upstream_response")
        }
        w => w.clone(),
    }
}

/// The fault sent for a case: "wrong content type" answers a JSON request as a stream and a stream
/// as JSON.
fn fault_for(case: &Case, stream: bool) -> Value {
    if case.fault.is_null() {
        let ct = if stream {
            "application/json"
        } else {
            "text/event-stream"
        };
        return json!({"content_type": ct});
    }
    case.fault.clone()
}

fn send(port: u16, row: &Row, case: &Case, stream: bool) -> std::io::Result<Response> {
    let model = if case.dead {
        format!("dead-{}", row.model)
    } else {
        row.model.to_string()
    };
    let fault = fault_for(case, stream).to_string();
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-mock-fault", fault.as_str()),
    ];
    let (path, body) = match row.door {
        Door::OpenAi => (
            "/v1/chat/completions",
            json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        Door::Anthropic => {
            headers.push(("anthropic-version", "2023-06-01"));
            (
                "/v1/messages",
                json!({"model": model, "stream": stream, "max_tokens": 64,
                       "messages": [{"role": "user", "content": "hi"}]}),
            )
        }
    };
    request(port, "POST", path, &headers, body.to_string().as_bytes())
}

/// The error code of an error body in the door's shape (`""` for OpenAI's `null`), or why it is not
/// one.
fn error_code(door: Door, v: &Value) -> Result<String, String> {
    let code = match door {
        Door::OpenAi => {
            let e = &v["error"];
            if !e["message"].is_string() || !e["type"].is_string() {
                return Err(format!("not an OpenAI error: {v}"));
            }
            match &e["code"] {
                Value::Null => Some(String::new()),
                c => c.as_str().map(str::to_string),
            }
        }
        Door::Anthropic => {
            let e = &v["error"];
            if v["type"] != "error" || !e["message"].is_string() || !e["type"].is_string() {
                return Err(format!("not an Anthropic error: {v}"));
            }
            e["details"]["error_code"]
                .as_str()
                .or(e["type"].as_str())
                .map(str::to_string)
        }
    };
    code.ok_or_else(|| format!("an error without a code: {v}"))
}

/// Whether `r` ends as `want`; `Err` says how it does not.
fn judge(door: Door, stream: bool, want: &Want, r: &Response) -> Result<(), String> {
    let text = r.text();
    let short: String = text.chars().take(400).collect();
    let ct = r.header("content-type").unwrap_or_default();
    if std::str::from_utf8(&r.body).is_err() {
        return Err(format!("the body is not UTF-8: {short}"));
    }
    let json_error = |door: Door, status: u16, code: Option<&str>| -> Result<(), String> {
        if r.status != status || !r.complete || ct != "application/json" {
            return Err(format!(
                "want {status} JSON, got {} {ct} complete={}: {short}",
                r.status, r.complete
            ));
        }
        if r.header("content-encoding").is_some() {
            return Err("a content-encoding on the gateway's own error".into());
        }
        let v = r.try_json().map_err(|e| format!("{e}: {short}"))?;
        let got = error_code(door, &v)?;
        match code {
            Some(c) if c != got => Err(format!("code {got}, want {c}: {short}")),
            _ => Ok(()),
        }
    };
    let events = r.sse();
    let datas: Vec<Value> = events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| serde_json::from_str(&e.data).map_err(|err| format!("{err}: event {:?}", e.data)))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    match want {
        Want::Error(status, code) => json_error(door, *status, Some(code)),
        Want::OpenAiError(status, code) => json_error(Door::OpenAi, *status, Some(code)),
        Want::ProviderError(status) => json_error(door, *status, None),
        Want::Answer if !stream => {
            if r.status != 200 || !r.complete || ct != "application/json" {
                return Err(format!("want a 200 answer, got {} {ct}: {short}", r.status));
            }
            let v = r.try_json().map_err(|e| format!("{e}: {short}"))?;
            let ok = match door {
                Door::OpenAi => v["choices"][0]["message"]["content"].is_string(),
                Door::Anthropic => v["type"] == "message" && v["content"].is_array(),
            };
            ok.then_some(()).ok_or_else(|| format!("not an answer: {short}"))
        }
        Want::Answer | Want::StreamError(_) => {
            if r.status != 200 || !r.complete || !ct.starts_with("text/event-stream") {
                return Err(format!(
                    "want a 200 stream, got {} {ct} complete={}: {short}",
                    r.status, r.complete
                ));
            }
            if datas.len() + usize::from(door == Door::OpenAi) != events.len() {
                return Err(format!("an event is not JSON: {short}"));
            }
            let last = events.last().map(|e| e.data.as_str()).unwrap_or_default();
            let errors: Vec<String> = events
                .iter()
                .zip(&datas)
                .filter(|(e, d)| e.event.as_deref() == Some("error") || d.get("error").is_some())
                .filter_map(|(_, d)| error_code(door, d).ok().filter(|c| !c.is_empty()))
                .collect();
            let end_ok = match door {
                Door::OpenAi => last == "[DONE]",
                Door::Anthropic => true,
            };
            if !end_ok {
                return Err(format!("the stream does not end with [DONE]: {short}"));
            }
            match want {
                Want::StreamError(code) if errors.iter().any(|c| c == code) => Ok(()),
                Want::StreamError(code) => Err(format!("want error event {code}, got {errors:?}: {short}")),
                _ if !errors.is_empty() => Err(format!("error events {errors:?}: {short}")),
                _ if door == Door::Anthropic
                    && events.last().and_then(|e| e.event.as_deref()) != Some("message_stop") =>
                {
                    Err(format!("no message_stop: {short}"))
                }
                _ => Ok(()),
            }
        }
        Want::Reset => {
            if r.status != 200 || r.complete {
                return Err(format!(
                    "want a reset stream, got {} complete={}: {short}",
                    r.status, r.complete
                ));
            }
            if text.contains("[DONE]") || text.contains("message_stop") {
                return Err(format!("a reset stream with its end: {short}"));
            }
            Ok(())
        }
    }
}

/// The sum of a Prometheus counter's samples whose labels include `labels`.
fn counter_sum(stats: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    stats
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{')?.split_once("} "))
        .filter(|(lbls, _)| labels.iter().all(|(k, v)| lbls.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn every_fault_ends_cleanly_for_every_provider() {
    let started = Instant::now();
    let mock = MockServer::start(0).unwrap();
    let mut opts = EnvoyOptions::new(mock.port()).filter(Filter::ai_proxy(config(mock.port())));
    opts.route_timeout = ROUTE_TIMEOUT;
    opts.concurrency = 2;
    let envoy = Envoy::start(opts).unwrap();
    let cases = cases();
    let mut work = Vec::new();
    for (r, _) in ROWS.iter().enumerate() {
        for (c, _) in cases.iter().enumerate() {
            for stream in [false, true] {
                work.push((r, c, stream));
            }
        }
    }
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let port = envoy.port();
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                while let Some(&(r, c, stream)) = work.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let (row, case) = (&ROWS[r], &cases[c]);
                    let want = &want_for(row, case, stream);
                    let t = Instant::now();
                    let result = send(port, row, case, stream)
                        .map_err(|e| format!("no response: {e}"))
                        .and_then(|resp| judge(row.door, stream, want, &resp));
                    let took = t.elapsed();
                    let result = result.and_then(|()| {
                        (took <= CASE_BUDGET)
                            .then_some(())
                            .ok_or_else(|| format!("took {took:?}"))
                    });
                    if let Err(why) = result {
                        let kind = if stream { "stream" } else { "JSON" };
                        failures.lock().unwrap().push(format!(
                            "{} ({:?} door) {kind} {}: want {want:?}: {why}",
                            row.provider, row.door, case.name
                        ));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        work.len(),
        failures.join("\n")
    );

    // Each request counted once, under the target that served it (the dead one for refusals).
    let dead_cases = cases.iter().filter(|c| c.dead).count() as u64 * 2;
    let live_cases = cases.len() as u64 * 2 - dead_cases;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = envoy.stats_prometheus();
        let counts: Vec<(String, u64, u64)> = ROWS
            .iter()
            .flat_map(|row| {
                let dead = format!("{}-dead", row.target);
                [(row.target.to_string(), live_cases), (dead, dead_cases)]
            })
            .map(|(t, want)| {
                let got = counter_sum(&stats, "ai_proxy_requests_total", &[("target", &t)]);
                (t, got, want)
            })
            .collect();
        if counts.iter().all(|(_, got, want)| got == want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "requests counted (target, got, want): {counts:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Envoy saw each request once too (no retry, no duplicate).
    assert_eq!(
        envoy.stat("http.ai_gateway.downstream_rq_total"),
        Some(work.len() as u64)
    );
    let logs = envoy.logs();
    assert!(!logs.contains("panicked"), "a VM panicked:\n{logs}");
    // No host call failed on the way (Envoy refuses a counter increment of 0, e.g. the completion
    // tokens of a Gemini stream that failed after its first event).
    let failed: Vec<&str> = logs.lines().filter(|l| l.contains(": host call ")).collect();
    assert!(failed.is_empty(), "host calls failed:\n{}", failed.join("\n"));
    e2e::envoy::assert_no_secrets(&envoy, &KEYS);
    eprintln!("fault matrix: {} cases in {:?}", work.len(), started.elapsed());
}
