//! `canary-report` against a real ClickHouse seeded with audit records (written as ai-audit-log's
//! ClickHouse sink writes them: `shared::sink::encode`), three scenarios: B better (promote), B worse
//! (roll back), too few samples (keep). No Envoy.

use std::process::Command;

use e2e::clickhouse::ClickHouse;
use e2e::http;
use serde_json::{json, Value};
use shared::rand::Rng;
use shared::sink::{acknowledge, clickhouse_ddl, encode, Ack, Format};

const TABLE: &str = "ai_audit";

/// `n` records of `target`: `errors` of them 503s, `blocked` guard blocks (400), latencies
/// `base + 0..spread` ms, at `ts`.
fn arm(
    rng: &mut Rng,
    target: &str,
    n: usize,
    errors: usize,
    blocked: usize,
    (base, spread): (u64, u64),
    ts: &str,
) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let status = if i < errors {
                503
            } else if i >= n - blocked {
                400
            } else {
                200
            };
            let verdict = if status == 400 { "block" } else { "allow" };
            json!({
                "id": format!("{target}-{ts}-{i}"), "ts": ts, "method": "POST", "path": "/v1/chat/completions",
                "status": status, "latency_ms": base + rng.below(spread), "target": target,
                "prompt_tokens": 40 + rng.below(20), "completion_tokens": 80 + rng.below(40),
                "cost_usd": 0.000_2, "guard_verdict": verdict,
                "decisions": json!({"guard": {"verdict": verdict}, "proxy": {"target": target, "status": status}}).to_string(),
            })
        })
        .collect()
}

fn insert(ch: &ClickHouse, records: &[Value]) {
    let format = Format::Clickhouse { table: TABLE.into() };
    let e = encode(&format, records);
    let r = http::request(
        ch.http_port(),
        "POST",
        &e.path,
        &[("content-type", e.content_type)],
        &e.body,
    )
    .unwrap();
    assert_eq!(
        acknowledge(&format, r.status, &r.body),
        Ack::Delivered,
        "{}",
        r.text()
    );
}

fn report(ch: &ClickHouse, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canary-report"))
        .arg("--from")
        .arg(format!("http://127.0.0.1:{}", ch.http_port()))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn canary_report_verdicts_on_seeded_records() {
    let ch = ClickHouse::start().unwrap();
    ch.query(&clickhouse_ddl(TABLE)).unwrap();
    let mut rng = Rng::new(18);
    let now = "2026-12-01T12:00:00.000Z";
    // B better: fewer errors, faster. Delivered twice (at least once): FINAL counts each id once.
    let better = [
        arm(&mut rng, "a-better", 300, 24, 0, (500, 300), now),
        arm(&mut rng, "b-better", 300, 3, 0, (350, 300), now),
    ]
    .concat();
    insert(&ch, &better);
    insert(&ch, &better);
    // B worse: more errors and guard blocks, same latency.
    insert(&ch, &arm(&mut rng, "a-worse", 200, 2, 1, (400, 200), now));
    insert(&ch, &arm(&mut rng, "b-worse", 200, 20, 12, (400, 200), now));
    // Too few recent records: 60 per arm, but 50 of each are older than --since.
    for target in ["a-few", "b-few"] {
        insert(&ch, &arm(&mut rng, target, 10, 0, 0, (400, 100), now));
        insert(
            &ch,
            &arm(&mut rng, target, 50, 0, 0, (400, 100), "2026-01-01T00:00:00Z"),
        );
    }

    let (code, out, err) = report(&ch, &["--a", "a-better", "--b", "b-better"]);
    assert_eq!(code, 0, "{err}");
    eprintln!("{out}");
    assert!(
        out.contains("A = a-better (300 requests), B = b-better (300 requests)"),
        "{out}"
    );
    assert!(
        out.contains("verdict: promote — B is significantly better on error rate, latency"),
        "{out}"
    );
    let error_line = out.lines().find(|l| l.starts_with("error rate")).unwrap();
    assert!(
        error_line.contains("8.00% (24/300)") && error_line.contains("1.00% (3/300)"),
        "{error_line}"
    );

    let (code, out, err) = report(&ch, &["--a", "a-worse", "--b", "b-worse", "--table", TABLE]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("verdict: roll back — B is significantly worse on error rate, guard blocks"),
        "{out}"
    );

    let (code, out, err) = report(
        &ch,
        &["--a", "a-few", "--b", "b-few", "--since", "2026-11-01T00:00:00Z"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verdict: keep — too few samples: at least 30 per arm are needed (A has 10, 20 more; B has 10, 20 more)"), "{out}");
    // Without --since the old records count: 60 per arm, no difference.
    let (_, out, _) = report(&ch, &["--a", "a-few", "--b", "b-few", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["a"]["requests"].as_u64(), v["b"]["requests"].as_u64()),
        (Some(60), Some(60)),
        "{v}"
    );
    assert_eq!(v["verdict"], "promote", "{v}");
    assert_eq!(v["metrics"].as_array().map(Vec::len), Some(5));

    // Bad arguments and an unreachable ClickHouse are errors, not reports.
    let (code, _, err) = report(&ch, &["--a", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--b is required"), "{err}");
    let (code, _, err) = report(&ch, &["--a", "x", "--b", "y", "--table", "a;b"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = report(&ch, &["--a", "x", "--b", "y", "--table", "missing"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ClickHouse answered 404"), "{err}");
}
