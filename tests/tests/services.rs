//! Smoke tests of the real services and clients later end-to-end tests build on: Redis behind Webdis,
//! ClickHouse, and the official OpenAI and Anthropic Python SDKs against the mock provider. Each test
//! starts its own services on free ports (`make services` and `make venv` install them).

use std::time::{Duration, Instant};

use e2e::clickhouse::{ClickHouse, ClickHouseError};
use e2e::mock::{reply_to, words, MockServer};
use e2e::redis::{Redis, Webdis, WebdisError};
use e2e::sdk::Sdk;
use serde_json::{json, Value};

/// A fixed-window counter as a later rate limiter would keep it: INCRBY, and set the expiry when the
/// key is new, in one atomic step. Returns `{count, ttl_ms}`.
const WINDOW_SCRIPT: &str = "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
     if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
     return {n, redis.call('PTTL', KEYS[1])}";

#[test]
fn redis_through_webdis_incrby_and_lua() {
    let t = Instant::now();
    let redis = Redis::start().unwrap();
    let redis_ready = t.elapsed();
    let webdis = Webdis::start(&redis).unwrap();
    eprintln!(
        "redis ready in {redis_ready:?}, webdis in {:?}",
        t.elapsed() - redis_ready
    );

    // The raw endpoint shape later filters will call.
    let resp = webdis.get("INCRBY/tenant%3Aa/5").unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), json!({"INCRBY": 5}));
    assert_eq!(webdis.incrby("tenant:a", 5).unwrap(), 10);
    assert_eq!(webdis.call(&["GET", "tenant:a"]).unwrap(), json!("10"));

    // A Lua script over POST /: atomic count + expiry; arguments with `/`, `.` and spaces survive.
    let first = webdis
        .eval(WINDOW_SCRIPT, &["rl/win.1"], &["3", "60000"])
        .unwrap();
    assert_eq!(first[0], 3, "{first}");
    let ttl = first[1].as_i64().unwrap();
    assert!((59_000..=60_000).contains(&ttl), "{first}");
    let second = webdis
        .eval(WINDOW_SCRIPT, &["rl/win.1"], &["4", "60000"])
        .unwrap();
    assert_eq!(second[0], 7, "{second}");
    assert_eq!(
        webdis.eval("return ARGV[1]", &[], &["a/b.c d+e%"]).unwrap(),
        json!("a/b.c d+e%")
    );

    // Redis errors come back as errors, and webdis keeps MULTI off whatever the ACL says.
    assert!(matches!(
        webdis.eval("return redis.call('NOPE')", &[], &[]),
        Err(WebdisError::Redis(m)) if m.contains("Unknown Redis command")
    ));
    assert!(matches!(
        webdis.call(&["MULTI"]),
        Err(WebdisError::Status { status: 403, .. })
    ));

    // Concurrent increments through webdis are not lost.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    webdis.incrby("shared", 1).unwrap();
                }
            });
        }
    });
    assert_eq!(webdis.incrby("shared", 0).unwrap(), 100);
}

#[test]
fn redis_stopped_mid_test_and_back_on_the_same_port() {
    let mut redis = Redis::start().unwrap();
    let webdis = Webdis::start(&redis).unwrap();
    let port = redis.port();
    assert_eq!(webdis.incrby("k", 2).unwrap(), 2);

    redis.stop();
    assert!(!redis.is_running());
    assert!(e2e::redis::ping(port).is_err());
    // Webdis answers at once, with 503, while Redis is down.
    let t = Instant::now();
    match webdis.incrby("k", 1) {
        Err(WebdisError::Status { status: 503, .. }) => {}
        other => panic!("expected 503 with redis down, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    let t = Instant::now();
    redis.restart().unwrap();
    assert_eq!(redis.port(), port);
    let redis_back = t.elapsed();
    webdis.wait_ready(Duration::from_secs(5)).unwrap();
    eprintln!(
        "redis restarted in {redis_back:?}; webdis serving again after {:?}",
        t.elapsed()
    );
    // No persistence: the counter starts over.
    assert_eq!(webdis.incrby("k", 1).unwrap(), 1);
    assert_eq!(redis.logs().matches("Ready to accept connections").count(), 2);
}

#[test]
fn clickhouse_mergetree_json_each_row_and_restart() {
    let t = Instant::now();
    let mut ch = ClickHouse::start().unwrap();
    eprintln!("clickhouse ready in {:?}", t.elapsed());
    assert_eq!(ch.query("SELECT version()").unwrap().trim(), "18.16.1");

    ch.query(
        "CREATE TABLE audit (ts DateTime, request_id String, model String, status UInt16, \
         tokens UInt64, cost Float64, tags Array(String)) ENGINE = MergeTree ORDER BY ts",
    )
    .unwrap();
    let rows = [
        json!({"ts": "2024-05-01 12:00:00", "request_id": "r1", "model": "gpt-4o-mini", "status": 200,
               "tokens": 42, "cost": 0.25, "tags": ["pii", "redacted"]}),
        json!({"ts": 1714564801, "request_id": "r2", "model": "claude \"q\" \n x", "status": 429,
               "tokens": 0, "cost": 0, "tags": []}),
    ];
    ch.insert_json_each_row("audit", &rows).unwrap();

    let back = ch
        .select_json_each_row("SELECT * FROM audit ORDER BY request_id")
        .unwrap();
    assert_eq!(
        back,
        vec![
            json!({"ts": "2024-05-01 12:00:00", "request_id": "r1", "model": "gpt-4o-mini",
                   "status": 200, "tokens": 42, "cost": 0.25, "tags": ["pii", "redacted"]}),
            json!({"ts": "2024-05-01 12:00:01", "request_id": "r2", "model": "claude \"q\" \n x",
                   "status": 429, "tokens": 0, "cost": 0, "tags": []}),
        ]
    );
    let agg = ch
        .select_json_each_row(
            "SELECT count() AS n, sum(tokens) AS t, countIf(status >= 400) AS errors FROM audit",
        )
        .unwrap();
    assert_eq!(agg, vec![json!({"n": 2, "t": 42, "errors": 1})]);

    // Bad SQL is an error with ClickHouse's message.
    match ch.query("SELECT nope FROM audit") {
        Err(ClickHouseError::Query { status, message }) => {
            assert_eq!(status, 404, "{message}");
            assert!(message.contains("Unknown identifier: nope"), "{message}");
        }
        other => panic!("expected a query error, got {other:?}"),
    }

    // Down: no answer. Back on the same ports with the rows still there.
    let (http_port, tcp_port) = (ch.http_port(), ch.tcp_port());
    ch.stop();
    assert!(matches!(ch.query("SELECT 1"), Err(ClickHouseError::Io(_))));
    let t = Instant::now();
    ch.restart().unwrap();
    eprintln!("clickhouse restarted in {:?}", t.elapsed());
    assert_eq!((ch.http_port(), ch.tcp_port()), (http_port, tcp_port));
    assert_eq!(ch.query("SELECT count() FROM audit").unwrap(), "2\n");
    ch.insert_json_each_row("audit", &[json!({"ts": 0, "request_id": "r3"})])
        .unwrap();
    assert_eq!(
        ch.select_json_each_row("SELECT request_id, model, status, tags FROM audit WHERE ts = 0")
            .unwrap(),
        vec![json!({"request_id": "r3", "model": "", "status": 0, "tags": []})]
    );
}

fn chat_snippet(stream_options: &str) -> String {
    format!(
        r#"
import json, os
from openai import OpenAI
c = OpenAI(base_url=os.environ["E2E_BASE_URL"] + "/v1", api_key=os.environ["E2E_API_KEY"], max_retries=0)
msgs = [{{"role": "system", "content": "be terse"}}, {{"role": "user", "content": "say hello world"}}]
r = c.chat.completions.create(model="gpt-4o-mini", messages=msgs)
s = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True{stream_options})
text, usage = "", None
for chunk in s:
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.model_dump()
print(json.dumps({{"content": r.choices[0].message.content, "usage": r.usage.model_dump(),
                  "model": r.model, "stream_text": text, "stream_usage": usage}}))
"#
    )
}

fn header(record: &Value, name: &str) -> String {
    record["headers"][name].as_str().unwrap_or_default().to_string()
}

#[test]
fn openai_sdk_chat_against_the_mock() {
    let mock = MockServer::start(0).unwrap();
    let t = Instant::now();
    let out = Sdk::local(mock.port(), "sk-openai-test")
        .run_json(&chat_snippet(r#", stream_options={"include_usage": True}"#))
        .unwrap();
    eprintln!("openai sdk snippet ran in {:?}", t.elapsed());
    let reply = reply_to("say hello world");
    assert_eq!(out["content"], reply.as_str(), "{out}");
    assert_eq!(out["stream_text"], reply.as_str(), "{out}");
    assert_eq!(
        out["usage"]["prompt_tokens"],
        words("be terse say hello world"),
        "{out}"
    );
    assert_eq!(out["usage"]["completion_tokens"], words(&reply), "{out}");
    assert_eq!(out["stream_usage"], out["usage"], "{out}");

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    for r in &reqs {
        assert_eq!(r["path"], "/v1/chat/completions");
        assert_eq!(header(r, "authorization"), "Bearer sk-openai-test");
        assert!(header(r, "user-agent").starts_with("OpenAI/Python 3."), "{r}");
    }
    assert_eq!(reqs[1]["json"]["stream"], true);
}

/// The Anthropic SDK against the mock's `/v1/messages`. The SDK (2.14) sends its key as
/// `Authorization: Bearer`, which the mock does not accept yet (it wants `x-api-key`; a fix is under
/// way), so this snippet also sends `x-api-key` through `default_headers`. Once the mock accepts Bearer
/// the extra header can go; the assertions on what the SDK sends hold either way.
#[test]
fn anthropic_sdk_messages_against_the_mock() {
    let mock = MockServer::start(0).unwrap();
    let snippet = r#"
import json, os
import anthropic
key = os.environ["E2E_API_KEY"]
c = anthropic.Anthropic(base_url=os.environ["E2E_BASE_URL"], api_key=key, max_retries=0,
                        default_headers={"x-api-key": key})
msgs = [{"role": "user", "content": "say hello world"}]
r = c.messages.create(model="claude-3-5-haiku-20241022", max_tokens=100, system="be terse", messages=msgs)
text = ""
with c.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=100, messages=msgs) as s:
    for t in s.text_stream:
        text += t
    final = s.get_final_message()
print(json.dumps({"content": r.content[0].text, "stop_reason": r.stop_reason,
                  "usage": {"input_tokens": r.usage.input_tokens, "output_tokens": r.usage.output_tokens},
                  "stream_text": text, "stream_output_tokens": final.usage.output_tokens}))
"#;
    let out = Sdk::local(mock.port(), "sk-ant-test").run_json(snippet).unwrap();
    let reply = reply_to("say hello world");
    assert_eq!(out["content"], reply.as_str(), "{out}");
    assert_eq!(out["stop_reason"], "end_turn", "{out}");
    assert_eq!(
        out["usage"]["input_tokens"],
        words("be terse say hello world"),
        "{out}"
    );
    assert_eq!(out["usage"]["output_tokens"], words(&reply), "{out}");
    assert_eq!(out["stream_text"], reply.as_str(), "{out}");
    assert_eq!(out["stream_output_tokens"], words(&reply), "{out}");

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    for r in &reqs {
        assert_eq!(r["path"], "/v1/messages");
        // What the SDK itself sends: the key as a Bearer token, and an anthropic-version.
        assert_eq!(header(r, "authorization"), "Bearer sk-ant-test");
        assert!(!header(r, "anthropic-version").is_empty(), "{r}");
        assert!(header(r, "user-agent").starts_with("Anthropic/Python 2."), "{r}");
    }
}
