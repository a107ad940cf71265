//! The audit record: one flat JSON object per request, the columns of the ClickHouse table in
//! `docs/audit.md`. Pure: built from what the policy saw ([`Facts`]) and the policies' published
//! decisions (`shared::decision`). Every text that may carry payload (path, excerpts) is redacted with
//! the shared PII engine before it is put in; no field is ever `null` (ClickHouse's JSONEachRow takes
//! none for a plain column): unknown numbers are 0 and unknown texts empty.

use crate::config::Capture;
use serde_json::{json, Map, Value};
use shared::llm::inputs::percent_decode;
use shared::pii::redact_for_log;
use shared::time::DateTime;

/// What the audit policy saw of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The record's own id, generated (the sinks' dedup key).
    pub id: String,
    /// The id the client got back: its own `x-request-id`, else [`Facts::id`].
    pub request_id: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub consumer: String,
    pub route: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The first bytes of each body (up to what the capture keeps, plus [`HOLD_MARGIN`]) and their
    /// sizes (a head as long as its size is the whole body).
    pub request_head: Vec<u8>,
    pub request_bytes: u64,
    pub response_head: Vec<u8>,
    pub response_bytes: u64,
}

/// Raw bytes redacted past the kept length at first, so a value cut by the bound is still seen whole
/// by the detectors before the redacted text is cut.
pub const MARGIN: usize = 1024;
/// Raw bytes the policy holds past the kept length: the margin may double up to this.
pub const HOLD_MARGIN: usize = 8 * MARGIN;
/// Redacted bytes that must follow the kept length when the raw head was cut: a value cut at the raw
/// bound (shorter than this) lies in them, never in the kept part.
pub const TAIL: usize = 256;

/// `YYYY-MM-DD hh:mm:ss` (UTC), ClickHouse's `DateTime` text.
pub fn timestamp(ms: u64) -> String {
    match DateTime::from_epoch(ms / 1000) {
        Some(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            d.year, d.month, d.day, d.hour, d.minute, d.second
        ),
        None => "1970-01-01 00:00:00".to_string(),
    }
}

fn cut(text: &str, at: usize) -> String {
    let mut end = at.min(text.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_string()
}

/// The redacted form of a body's first bytes, at most `keep` bytes, cut on a character boundary.
/// `head` is what was read of a body of `size` bytes. Redaction shrinks the text, so the raw head
/// redacted is `keep` plus a margin that doubles (from [`MARGIN`], up to what was read) until the
/// redacted text runs [`TAIL`] bytes past `keep` or the raw head is the whole body: a value cut at
/// the raw bound is then never in the kept part. When what was read runs out first, the last
/// [`TAIL`] redacted bytes are left out (the excerpt is shorter than `keep`).
pub fn excerpt(head: &[u8], size: u64, keep: usize) -> String {
    if keep == 0 || head.is_empty() {
        return String::new();
    }
    let whole = head.len() as u64 >= size;
    let mut margin = MARGIN;
    loop {
        let raw_len = keep.saturating_add(margin).min(head.len());
        let raw = head.get(..raw_len).unwrap_or_default();
        let redacted = redact_for_log(&String::from_utf8_lossy(raw));
        let all_read = raw_len == head.len();
        if (all_read && whole) || redacted.len() >= keep.saturating_add(TAIL) {
            return cut(&redacted, keep);
        }
        if all_read {
            return cut(&redacted, keep.min(redacted.len().saturating_sub(TAIL)));
        }
        margin = margin.saturating_mul(2);
    }
}

fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => Value::from(s.as_str()),
        Some(Value::Null) | None => Value::from(""),
        Some(other) => Value::from(other.to_string()),
    }
}

fn uint(v: Option<&Value>) -> Value {
    Value::from(v.and_then(Value::as_u64).unwrap_or(0))
}

fn float(v: Option<&Value>) -> Value {
    Value::from(v.and_then(Value::as_f64).unwrap_or(0.0))
}

/// The record of a request.
pub fn build(f: &Facts, capture: Capture, decisions: &Map<String, Value>) -> Value {
    let pick = |policy: &str, field: &str| -> Option<&Value> {
        decisions
            .get(policy)
            .and_then(|d| d.get(field))
            .filter(|v| !v.is_null())
    };
    let proxy = |field: &str| pick("proxy", field);
    let keep = capture.keep();
    let sizes = !matches!(capture, Capture::None);
    json!({
        "id": f.id,
        "request_id": f.request_id,
        "ts": timestamp(f.start_ms),
        "ts_ms": f.start_ms,
        "consumer": f.consumer,
        "route": f.route,
        "method": f.method,
        // Decoded first: `jane%40example.com` in a query is an email too.
        "path": redact_for_log(&percent_decode(&f.path)),
        "status": f.status,
        "latency_ms": f.end_ms.saturating_sub(f.start_ms),
        "provider": text(proxy("provider")),
        "target": text(proxy("target")),
        "model": text(proxy("model")),
        "upstream_model": text(proxy("upstream_model")),
        "prompt_tokens": uint(proxy("prompt_tokens")),
        "completion_tokens": uint(proxy("completion_tokens")),
        "cached_tokens": uint(proxy("cached_tokens")),
        "reasoning_tokens": uint(proxy("reasoning_tokens")),
        "cost_usd": float(proxy("cost_usd")),
        "decisions": Value::Object(decisions.clone()).to_string(),
        "guard_verdict": text(pick("guard", "verdict")),
        "guard_family": text(pick("guard", "family")),
        "pii_total": uint(pick("pii", "total")),
        "ratelimit_decision": text(pick("ratelimit", "decision")),
        "router_rule": text(pick("router", "rule")),
        "capture": capture.as_str(),
        "request_bytes": if sizes { f.request_bytes } else { 0 },
        "response_bytes": if sizes { f.response_bytes } else { 0 },
        "request_excerpt": excerpt(&f.request_head, f.request_bytes, keep),
        "response_excerpt": excerpt(&f.response_head, f.response_bytes, keep),
        "summary": "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::sink::{clickhouse_ddl, CLICKHOUSE_COLUMNS};

    fn facts() -> Facts {
        Facts {
            id: "0123456789abcdef0123456789abcdef".into(),
            request_id: "req-1".into(),
            start_ms: 1_764_601_200_123,
            end_ms: 1_764_601_200_456,
            consumer: "team-a".into(),
            route: "chat".into(),
            method: "POST".into(),
            path: "/v1/chat/completions?user=jane.doe%40example.com".into(),
            status: 200,
            request_head: br#"{"messages":[{"role":"user","content":"Mail jane.doe@example.com or call +1 415 555 0100"}]}"#.to_vec(),
            request_bytes: 92,
            response_head: b"{\"choices\":[]}".to_vec(),
            response_bytes: 14,
        }
    }

    fn decisions() -> Map<String, Value> {
        let v = json!({
            "guard": {"verdict": "allow", "family": "none", "score": 0.02, "stage": "local"},
            "pii": {"total": 2, "types": {"email": 1, "phone": 1}},
            "ratelimit": {"decision": "admitted", "remaining": 2900},
            "proxy": {"provider": "openai", "target": "openai-mini", "model": "gpt-4o-mini",
                      "upstream_model": "gpt-4o-mini-2024", "prompt_tokens": 12, "completion_tokens": 5,
                      "cached_tokens": null, "cost_usd": 0.0000048}
        });
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn every_column_and_no_null() {
        let r = build(&facts(), Capture::Excerpt { bytes: 512 }, &decisions());
        let o = r.as_object().unwrap();
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        let mut want: Vec<&str> = CLICKHOUSE_COLUMNS.iter().map(|(n, _)| *n).collect();
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        assert!(o.values().all(|v| !v.is_null()), "{r}");
        assert_eq!(r["ts"], "2025-12-01 15:00:00");
        assert_eq!(r["latency_ms"], 333);
        assert_eq!(
            (r["provider"].as_str(), r["prompt_tokens"].as_u64()),
            (Some("openai"), Some(12))
        );
        assert_eq!(r["cached_tokens"], 0);
        assert_eq!(r["guard_verdict"], "allow");
        assert_eq!(r["pii_total"], 2);
        assert_eq!(r["ratelimit_decision"], "admitted");
        let d: Value = serde_json::from_str(r["decisions"].as_str().unwrap()).unwrap();
        assert_eq!(d["pii"]["types"]["phone"], 1);
    }

    #[test]
    fn capture_modes_keep_what_they_say_and_never_raw_pii() {
        let cases: &[(Capture, usize, bool)] = &[
            // (capture, most bytes kept per excerpt, sizes kept)
            (Capture::None, 0, false),
            (Capture::Metadata, 0, true),
            (Capture::Excerpt { bytes: 20 }, 20, true),
            (Capture::Full { bytes: 4096 }, 4096, true),
        ];
        for &(capture, most, sizes) in cases {
            let r = build(&facts(), capture, &decisions());
            let req = r["request_excerpt"].as_str().unwrap();
            assert!(req.len() <= most, "{capture:?}: {req}");
            assert_eq!(req.is_empty(), most == 0, "{capture:?}");
            assert_eq!(r["request_bytes"] != 0, sizes, "{capture:?}");
            let all = r.to_string();
            for raw in ["jane.doe@example.com", "jane.doe%40example.com", "415 555 0100"] {
                assert!(!all.contains(raw), "{capture:?}: {all}");
            }
        }
        let full = build(&facts(), Capture::Full { bytes: 4096 }, &decisions());
        let text = full["request_excerpt"].as_str().unwrap();
        assert!(text.contains("<EMAIL>") && text.contains("<PHONE>"), "{text}");
        assert!(full["path"].as_str().unwrap().ends_with("user=<EMAIL>"));
    }

    #[test]
    fn a_value_cut_by_the_bound_is_still_redacted() {
        // The email straddles the kept length: the detectors see it whole (the head holds more
        // bytes), then the redacted text is cut.
        let head = b"0123456789 contact jane.doe@example.com now";
        for keep in 1..head.len() {
            let e = excerpt(head, head.len() as u64, keep);
            assert!(e.len() <= keep);
            assert!(
                !e.contains("jane.doe@") && !e.contains("example.com"),
                "{keep}: {e}"
            );
        }
        assert_eq!(
            excerpt("héllo".as_bytes(), 6, 2),
            "h",
            "cut on a character boundary"
        );
    }

    /// `n` long emails in a row: each redacts to `<EMAIL>`, so the redacted text is far shorter than
    /// the raw one.
    fn emails(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("firstname.lastname.{i:03}@mail.example-company.com "))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn redaction_shrinking_past_the_margin_never_leaks_a_cut_value() {
        let body = emails(100);
        let keep = 1024;
        assert!(
            body.len() > keep + 2 * MARGIN,
            "the raw bound cuts inside the emails"
        );
        // Every raw bound the body could be read up to (so every way an email is cut), the head as
        // read, of a larger body: nothing of an email address stays in the excerpt.
        for read in (keep..body.len()).step_by(7) {
            let head = body.get(..read).unwrap();
            let e = excerpt(head, body.len() as u64 + 1, keep);
            assert!(e.len() <= keep, "{read}");
            assert!(!e.contains('@') && !e.contains("example"), "{read}: {e}");
        }
        // Through the record, with a `full` capture and the head the policy holds of a longer body:
        // the margin doubles until the redacted text runs past `keep`, which is then kept in full.
        let long = emails(400);
        let mut f = facts();
        f.request_head = long.get(..keep + HOLD_MARGIN).unwrap().to_vec();
        f.request_bytes = long.len() as u64;
        let r = build(&f, Capture::Full { bytes: keep }, &decisions());
        let e = r["request_excerpt"].as_str().unwrap();
        assert!(!e.contains('@') && !e.contains("example"), "{e}");
        assert_eq!(e.len(), keep, "{e}");
        // The whole body read: redacted and kept in full.
        let whole = excerpt(&body, body.len() as u64, 4096);
        assert_eq!(whole.matches("<EMAIL>").count(), 100, "{whole}");
    }

    #[test]
    fn a_head_too_short_to_reach_the_tail_drops_the_tail() {
        // 60 raw emails cut at the end, from a larger body: the redacted text cannot run TAIL bytes
        // past keep, so its last TAIL bytes (where the cut email lies) are left out.
        let body = emails(60);
        let head = body.get(..body.len() - 10).unwrap();
        let e = excerpt(head, body.len() as u64, 4096);
        let redacted = redact_for_log(&String::from_utf8_lossy(head));
        assert!(
            !redacted.trim_end().ends_with("<EMAIL>"),
            "the cut email leaves raw bytes at the end: {redacted}"
        );
        assert_eq!(e.len(), redacted.len() - TAIL);
        assert!(!e.contains('@'), "{e}");
    }

    #[test]
    fn the_documented_ddl_is_the_sinks() {
        let doc = include_str!("../../../docs/audit.md");
        let ddl = clickhouse_ddl("ai_audit");
        assert!(doc.contains(&ddl), "docs/audit.md must show:\n{ddl}");
    }

    #[test]
    fn a_record_without_decisions_is_still_whole() {
        let r = build(&facts(), Capture::Metadata, &Map::new());
        assert_eq!(r["provider"], "");
        assert_eq!(r["guard_verdict"], "");
        assert_eq!(r["decisions"], "{}");
        assert_eq!(r["cost_usd"], 0.0);
    }
}
