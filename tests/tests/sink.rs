//! The audit sinks' wire formats (`shared::sink`) against the mock's recording sinks (every format: what
//! is sent arrives as encoded, the success answer acknowledges it, failures are retried or rejected) and
//! the ClickHouse format against a real ClickHouse (the table from `clickhouse_ddl`, the insert path and
//! rows from `encode`, duplicates collapsed by `FINAL`). No Envoy.

use e2e::clickhouse::ClickHouse;
use e2e::http::{self, Response};
use e2e::mock::MockServer;
use serde_json::{json, Value};
use shared::sink::{acknowledge, clickhouse_ddl, encode, Ack, Encoded, Format};

fn records() -> Vec<Value> {
    vec![
        json!({"id": "req-1", "ts": "2026-12-01T15:25:44.123Z", "method": "POST", "path": "/v1/chat/completions",
               "status": 200, "latency_ms": 812, "target": "gpt-4o-mini", "prompt_tokens": 12,
               "completion_tokens": 30, "cost_usd": 0.000_125, "guard_verdict": "allow",
               "decisions": "{\"guard\":{\"verdict\":\"allow\"}}", "summary": "User asked for a haiku"}),
        json!({"id": "req-2", "ts": "2026-12-01T15:25:45.001Z", "method": "GET", "path": "/orders/7",
               "status": 503, "latency_ms": 3, "consumer": "acme", "summary": null}),
    ]
}

fn formats() -> Vec<(&'static str, Format)> {
    vec![
        (
            "ch",
            Format::Clickhouse {
                table: "audit".into(),
            },
        ),
        ("wh", Format::Webhook),
        (
            "hec",
            Format::SplunkHec {
                sourcetype: Some("ai:audit".into()),
                index: None,
            },
        ),
        (
            "es",
            Format::Elasticsearch {
                index: "ai-audit".into(),
            },
        ),
        ("otlp", Format::Otlp { service_name: None }),
    ]
}

/// POSTs `e` to sink `name` as the audit filter would (the service's path `/sink/<name>` + `e.path`);
/// status 0 when the connection closed without an answer.
fn ship(m: &MockServer, name: &str, e: &Encoded) -> Response {
    let path = format!("/sink/{name}{}", e.path);
    match http::request(
        m.port(),
        "POST",
        &path,
        &[("content-type", e.content_type)],
        &e.body,
    ) {
        Ok(r) => r,
        Err(_) => Response {
            status: 0,
            ..Response::default()
        },
    }
}

fn ack(format: &Format, r: &Response) -> Ack {
    acknowledge(format, r.status, &r.body)
}

#[test]
fn every_format_arrives_as_encoded_and_is_acknowledged() {
    let m = MockServer::start(0).unwrap();
    let recs = records();
    for (name, format) in formats() {
        let e = encode(&format, &recs);
        let r = ship(&m, name, &e);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(ack(&format, &r), Ack::Delivered, "{name}: {}", r.text());
        let got = m.sink_requests(name);
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0]["method"], "POST");
        assert_eq!(got[0]["path"], e.path.as_str(), "{name}");
        assert_eq!(got[0]["headers"]["content-type"], e.content_type, "{name}");
        assert_eq!(
            got[0]["body"].as_str().unwrap().as_bytes(),
            e.body.as_slice(),
            "{name}"
        );
        assert_eq!(got[0]["status"], 200);
    }
    // The recorded bodies carry the records in each format's shape.
    let lines = |name: &str| -> Vec<Value> {
        let body = m.sink_requests(name)[0]["body"].as_str().unwrap().to_string();
        body.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let hec = lines("hec");
    assert_eq!(hec.len(), 2);
    assert_eq!(hec[0]["event"]["id"], "req-1");
    assert_eq!(hec[0]["time"], 1_796_138_744.123);
    assert_eq!(hec[1]["sourcetype"], "ai:audit");
    let es = lines("es");
    assert_eq!(es.len(), 4);
    assert_eq!(es[0], json!({"index": {"_index": "ai-audit", "_id": "req-1"}}));
    assert_eq!(es[3]["consumer"], "acme");
    let wh = lines("wh");
    assert_eq!(wh, recs);
    let ch = lines("ch");
    assert_eq!(ch[1].get("summary"), None, "null left out for ClickHouse");
    let otlp: Value = serde_json::from_str(m.sink_requests("otlp")[0]["body"].as_str().unwrap()).unwrap();
    let logs = &otlp["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
    assert_eq!(logs[0]["body"]["stringValue"], "User asked for a haiku");
    assert_eq!(logs[1]["body"]["stringValue"], "GET /orders/7 503");
    assert_eq!(logs[1]["timeUnixNano"], "1796138745001000000");
    // Sink traffic is not a provider request, and each sink keeps its own records.
    assert!(m.requests().is_empty());
    let listed = http::request(m.port(), "GET", "/sink/es/requests", &[], b"").unwrap();
    assert_eq!(listed.json().as_array().map(Vec::len), Some(1));
    assert_eq!(
        http::request(m.port(), "GET", "/sink/none/requests", &[], b"")
            .unwrap()
            .json(),
        json!([])
    );
}

#[test]
fn a_failing_sink_is_retried_until_it_takes_the_batch() {
    let m = MockServer::start(0).unwrap();
    let recs = records();
    for (name, format) in formats() {
        let fail = http::request(
            m.port(),
            "POST",
            &format!("/sink/{name}/fail?count=3&status=503"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(fail.json(), json!({"failures": 3}));
        let e = encode(&format, &recs);
        let mut acks = Vec::new();
        loop {
            let a = ack(&format, &ship(&m, name, &e));
            let done = a == Ack::Delivered;
            acks.push(a);
            if done || acks.len() > 10 {
                break;
            }
        }
        assert_eq!(acks.len(), 4, "{name}: {acks:?}");
        assert!(
            acks[..3]
                .iter()
                .all(|a| matches!(a, Ack::Retry(r) if r.contains("503"))),
            "{name}: {acks:?}"
        );
        let statuses: Vec<Value> = m
            .sink_requests(name)
            .iter()
            .map(|r| r["status"].clone())
            .collect();
        assert_eq!(
            statuses,
            [json!(503), json!(503), json!(503), json!(200)],
            "{name}"
        );
        // Every attempt carried the same batch: the sink can deduplicate on the ids.
        assert!(m
            .sink_requests(name)
            .iter()
            .all(|r| r["body"].as_str().unwrap().as_bytes() == e.body));
    }
}

#[test]
fn a_down_sink_a_refusing_sink_and_partial_bulk_failures() {
    let m = MockServer::start(0).unwrap();
    let recs = records();
    let es = Format::Elasticsearch {
        index: "ai-audit".into(),
    };
    let e = encode(&es, &recs);
    // status=0: the connection closes without an answer, like a sink that is down.
    http::request(m.port(), "POST", "/sink/es/fail?status=0", &[], b"").unwrap();
    assert!(matches!(ack(&es, &ship(&m, "es", &e)), Ack::Retry(r) if r.contains("did not answer")));
    // A bulk answer with a rejected item (given as the fail request's body, answered 200).
    let partial = json!({"errors": true, "items": [
        {"index": {"_id": "req-1", "status": 201}},
        {"index": {"_id": "req-2", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [status]"}}}]});
    http::request(
        m.port(),
        "POST",
        "/sink/es/fail?status=200",
        &[],
        partial.to_string().as_bytes(),
    )
    .unwrap();
    assert!(
        matches!(ack(&es, &ship(&m, "es", &e)), Ack::Rejected(r) if r.contains("failed to parse field [status]"))
    );
    let busy = json!({"errors": true, "items": [{"index": {"_id": "req-1", "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}}]});
    http::request(
        m.port(),
        "POST",
        "/sink/es/fail?status=200",
        &[],
        busy.to_string().as_bytes(),
    )
    .unwrap();
    assert!(matches!(ack(&es, &ship(&m, "es", &e)), Ack::Retry(r) if r.contains("queue full")));
    assert_eq!(ack(&es, &ship(&m, "es", &e)), Ack::Delivered);
    // HEC refuses a bad token with 403.
    let hec = Format::SplunkHec {
        sourcetype: None,
        index: None,
    };
    let refusal = json!({"text": "Invalid token", "code": 4});
    http::request(
        m.port(),
        "POST",
        "/sink/hec/fail?status=403",
        &[],
        refusal.to_string().as_bytes(),
    )
    .unwrap();
    // A refused token is a misconfiguration (a token being rotated): retried, not dropped.
    assert!(
        matches!(ack(&hec, &ship(&m, "hec", &encode(&hec, &recs))), Ack::Retry(r) if r.contains("Invalid token"))
    );
    // A body that is not the format is refused by the recording sink as the real one would.
    let not_hec = Encoded {
        body: b"{\"id\":\"x\"}\n".to_vec(),
        ..encode(&hec, &recs)
    };
    let r = ship(&m, "hec", &not_hec);
    assert_eq!(r.status, 400);
    assert!(matches!(ack(&hec, &r), Ack::Rejected(why) if why.contains("Event field is required")));
    // Clearing forgets the records.
    http::request(m.port(), "DELETE", "/sink/es/requests", &[], b"").unwrap();
    assert!(m.sink_requests("es").is_empty());
    let bad = http::request(m.port(), "POST", "/sink/es/fail?count=x", &[], b"").unwrap();
    assert_eq!(bad.status, 400);
}

#[test]
fn clickhouse_takes_the_encoded_batch_and_deduplicates_on_id() {
    let ch = ClickHouse::start().unwrap();
    let format = Format::Clickhouse {
        table: "default.audit".into(),
    };
    ch.query(&clickhouse_ddl("default.audit")).unwrap();
    let mut recs = records();
    // A field the table does not have does not lose the record.
    recs[1]["new_column"] = json!("from a newer gateway");
    let e = encode(&format, &recs);
    let post = |e: &Encoded| {
        let r = http::request(
            ch.http_port(),
            "POST",
            &e.path,
            &[("content-type", e.content_type)],
            &e.body,
        )
        .unwrap();
        (acknowledge(&format, r.status, &r.body), r.text())
    };
    // At least once: the same batch delivered twice.
    for _ in 0..2 {
        let (a, text) = post(&e);
        assert_eq!(a, Ack::Delivered, "{text}");
    }
    assert_eq!(ch.query("SELECT count() FROM audit").unwrap().trim(), "4");
    let rows = ch
        .select_json_each_row(
            "SELECT id, toString(ts) AS ts, toUnixTimestamp(ts) AS epoch, method, status, latency_ms, target, \
             prompt_tokens, cost_usd, decisions, consumer, summary FROM audit FINAL ORDER BY id",
        )
        .unwrap();
    assert_eq!(
        rows,
        vec![
            json!({"id": "req-1", "ts": "2026-12-01 15:25:44", "epoch": 1_796_138_744, "method": "POST",
                   "status": 200, "latency_ms": 812, "target": "gpt-4o-mini", "prompt_tokens": 12,
                   "cost_usd": 0.000_125, "decisions": "{\"guard\":{\"verdict\":\"allow\"}}", "consumer": "",
                   "summary": "User asked for a haiku"}),
            json!({"id": "req-2", "ts": "2026-12-01 15:25:45", "epoch": 1_796_138_745, "method": "GET",
                   "status": 503, "latency_ms": 3, "target": "", "prompt_tokens": 0, "cost_usd": 0,
                   "decisions": "", "consumer": "acme", "summary": ""}),
        ]
    );
    // ClickHouse answers bad data with a 500 whose code says it is permanent: rejected, not retried.
    let bad = Encoded {
        body: b"{\"id\":\"x\",\"status\":\"not a number\"}\n".to_vec(),
        ..e.clone()
    };
    let (a, text) = post(&bad);
    assert!(
        matches!(&a, Ack::Rejected(r) if r.contains("Code:")),
        "{a:?} {text}"
    );
    // A table not created yet: retried (the batch takes once it is), not dropped.
    let missing = encode(&Format::Clickhouse { table: "nope".into() }, &recs);
    let (a, text) = post(&missing);
    assert!(
        matches!(&a, Ack::Retry(r) if r.contains("table or database is missing")),
        "{a:?} {text}"
    );
    let db = encode(
        &Format::Clickhouse {
            table: "nodb.audit".into(),
        },
        &recs,
    );
    let (a, text) = post(&db);
    assert!(
        matches!(&a, Ack::Retry(r) if r.contains("table or database is missing")),
        "{a:?} {text}"
    );
    // A server that is down is retried.
    let mut ch = ch;
    ch.stop();
    let (a, _) = match http::request(ch.http_port(), "POST", &e.path, &[], &e.body) {
        Ok(r) => (acknowledge(&format, r.status, &r.body), r.text()),
        Err(_) => (acknowledge(&format, 0, b""), String::new()),
    };
    assert!(matches!(a, Ack::Retry(_)), "{a:?}");
}
