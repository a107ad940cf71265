//! Policies' decisions on one request, published for the audit log (and any later reader: the router,
//! an abuse scorer) through one mechanism, so no reader knows a policy's internals.
//!
//! Each policy writes one compact JSON object with [`publish`] into a per-request host property,
//! `ai_decision_<policy>`; [`collect`] reads every known policy's object back. A property lives in the
//! proxy for the request's lifetime only: it is never sent upstream nor to the client (unlike a header,
//! nothing has to strip it).
//!
//! - **Envoy**: `set_property(["ai_decision_<policy>"])` stores filter state `wasm.ai_decision_<policy>`
//!   on the stream, which `get_property` reads back from any Wasm filter of the same stream, in every
//!   phase including `on_log` (checked in real Envoy by `tests/tests/audit.rs`).
//! - **Kong** (ngx_wasm_module): a filter's per-request properties live in the host namespace,
//!   `wasmx.ai_decision_<policy>` (modelled in the fake host; untested on a real Kong, see
//!   `docs/hosts.md`).
//!
//! Bounded: an object over [`MAX_BYTES`] loses fields from its end until it fits and gains
//! `"truncated": true`; each such case is counted (`ai_decision_truncated_total_policy=<p>`). A refused
//! write is logged and counted by the host layer and never traps: the request goes on without it.

use crate::host::{Host, HostKind};
use crate::metrics;
use serde_json::{Map, Value};

/// Largest published object, in bytes of compact JSON.
pub const MAX_BYTES: usize = 1024;

/// The policies whose decisions [`collect`] reads, by the name they publish under.
pub const POLICIES: &[&str] = &["guard", "pii", "ratelimit", "router", "proxy", "enrich"];

/// The property path of `policy`'s decision on `kind`.
pub fn path(kind: HostKind, policy: &str) -> Vec<String> {
    with_path(kind, policy, |parts| {
        parts.iter().map(|p| p.to_string()).collect()
    })
}

/// Calls `f` with the property path of `policy`'s decision on `kind` (no `Vec` built on the way).
fn with_path<R>(kind: HostKind, policy: &str, f: impl FnOnce(&[&str]) -> R) -> R {
    let name = format!("ai_decision_{policy}");
    match kind {
        HostKind::Envoy => f(&[&name]),
        HostKind::Kong => f(&["wasmx", &name]),
    }
}

/// The compact JSON of `fields`, within [`MAX_BYTES`]: fields are dropped from the end (and
/// `"truncated":true` added) until it fits. Returns the text and whether it was truncated.
///
/// The object is what serde_json writes for a `Map` of the fields (keys sorted, a repeated key's last
/// value), written directly: each member is encoded once, not once per `Map` built and dropped.
pub fn encode(fields: &[(&str, Value)]) -> (String, bool) {
    if let Some(whole) = whole_object(fields) {
        return (whole, false);
    }
    let members: Vec<Vec<u8>> = fields.iter().map(|(k, v)| member(k, v)).collect();
    for n in (0..fields.len()).rev() {
        let text = object(fields, &members, n, true);
        if text.len() <= MAX_BYTES {
            return (text, true);
        }
    }
    (object(fields, &members, 0, true), true)
}

/// The object of every field when it fits in [`MAX_BYTES`], written into one buffer (what a
/// decision almost always is: each member is not kept apart for truncation).
fn whole_object(fields: &[(&str, Value)]) -> Option<String> {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for (n, (k, v)) in order(fields, fields.len())
        .iter()
        .filter_map(|i| fields.get(*i))
        .enumerate()
    {
        if n > 0 {
            out.push(b',');
        }
        // Writing into a `Vec` cannot fail; a `Value` always serialises.
        let _ = serde_json::to_writer(&mut out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, v);
        if out.len() >= MAX_BYTES {
            return None;
        }
    }
    out.push(b'}');
    if out.len() > MAX_BYTES {
        return None;
    }
    // serde_json writes UTF-8.
    String::from_utf8(out).ok()
}

/// The indices of the first `n` fields in key order, the last of a repeated key only (what a map
/// insert keeps). By insertion: a decision has a few dozen fields at most.
fn order(fields: &[(&str, Value)], n: usize) -> Vec<usize> {
    let key = |i: usize| fields.get(i).map_or("", |f| f.0);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for i in 0..n.min(fields.len()) {
        let k = key(i);
        match order.binary_search_by(|&j| key(j).cmp(k)) {
            Ok(at) => {
                if let Some(slot) = order.get_mut(at) {
                    *slot = i;
                }
            }
            Err(at) => order.insert(at, i),
        }
    }
    order
}

/// `"key":value`, as serde_json writes it.
fn member(key: &str, value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 16);
    // Writing into a `Vec` cannot fail; a `Value` always serialises.
    let _ = serde_json::to_writer(&mut out, key);
    out.push(b':');
    let _ = serde_json::to_writer(&mut out, value);
    out
}

/// The object of the first `n` fields (and `"truncated":true`), keys in order, the last of a repeated key.
fn object(fields: &[(&str, Value)], members: &[Vec<u8>], n: usize, truncated: bool) -> String {
    const TRUNCATED: (usize, &str, &[u8]) = (usize::MAX, "truncated", b"\"truncated\":true");
    let mut order: Vec<(usize, &str, &[u8])> = order(fields, n)
        .into_iter()
        .filter_map(|i| Some((i, fields.get(i)?.0, members.get(i)?.as_slice())))
        .collect();
    if truncated {
        match order.binary_search_by(|m| m.1.cmp(TRUNCATED.1)) {
            Ok(i) => {
                if let Some(m) = order.get_mut(i) {
                    *m = TRUNCATED;
                }
            }
            Err(i) => order.insert(i, TRUNCATED),
        }
    }
    let len = order.iter().map(|m| m.2.len() + 1).sum::<usize>() + 1;
    let mut out = Vec::with_capacity(len);
    out.push(b'{');
    for (i, m) in order.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m.2);
    }
    out.push(b'}');
    // serde_json writes UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Publishes `policy`'s decision on this request (replacing an earlier one of the same policy).
pub fn publish(host: &mut dyn Host, policy: &str, fields: &[(&str, Value)]) {
    let (text, truncated) = encode(fields);
    if truncated {
        host.counter_add(
            &metrics::name("ai_decision_truncated_total", &[("policy", policy)]),
            1,
        );
    }
    // A refusal is logged and counted by the host layer (`<filter>_host_errors_total_op=set_property`);
    // the request goes on, with the decision missing from its audit record.
    let _reported = with_path(host.kind(), policy, |parts| host.set_property(parts, &text));
}

/// Every known policy's published decision on this request, by policy name. A value that is not a JSON
/// object is kept as `{"unreadable": true}` so its presence is not lost.
pub fn collect(host: &dyn Host) -> Map<String, Value> {
    let mut out = Map::new();
    for policy in POLICIES {
        let Some(raw) = with_path(host.kind(), policy, |parts| host.property(parts)) else {
            continue;
        };
        if raw.is_empty() {
            continue;
        }
        let value = match serde_json::from_slice::<Value>(&raw) {
            Ok(v @ Value::Object(_)) => v,
            _ => serde_json::json!({ "unreadable": true }),
        };
        out.insert((*policy).to_string(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The first version: a `Map` of the fields, written by serde_json (the reference for `encode`).
    fn encode_by_map(fields: &[(&str, Value)]) -> (String, bool) {
        let object = |n: usize, truncated: bool| {
            let mut m: Map<String, Value> = fields
                .iter()
                .take(n)
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect();
            if truncated {
                m.insert("truncated".into(), Value::Bool(true));
            }
            Value::Object(m).to_string()
        };
        let whole = object(fields.len(), false);
        if whole.len() <= MAX_BYTES {
            return (whole, false);
        }
        for n in (0..fields.len()).rev() {
            let text = object(n, true);
            if text.len() <= MAX_BYTES {
                return (text, true);
            }
        }
        (object(0, true), true)
    }

    /// `encode` writes what a serde_json `Map` of the fields writes, byte for byte: repeated keys,
    /// a field named `truncated`, escapes, numbers, nested values, and every truncation length.
    #[test]
    fn encode_is_the_map_encoding() {
        let keys = [
            "a",
            "b",
            "by",
            "truncated",
            "z\"q",
            "é",
            "model",
            "Z",
            "cost_usd",
            "aa",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        for case in 0..3000 {
            let n = next(14) as usize;
            let fields: Vec<(&str, Value)> = (0..n)
                .map(|_| {
                    let k = keys[next(keys.len() as u64) as usize];
                    let v = match next(8) {
                        0 => Value::Null,
                        1 => json!(next(2) == 0),
                        2 => json!(next(1 << 40)),
                        3 => json!(-(next(1000) as i64)),
                        4 => json!(next(1_000_000) as f64 / 1e6),
                        5 => json!("x\u{1}\"é\n".repeat(next(case % 300 + 1) as usize)),
                        6 => json!({"k": [1, "two", null], "n": {"x": 0.5}}),
                        _ => json!("y".repeat(next(400) as usize)),
                    };
                    (k, v)
                })
                .collect();
            assert_eq!(encode(&fields), encode_by_map(&fields), "{fields:?}");
        }
    }

    #[test]
    fn publishes_and_collects_on_both_hosts() {
        for kind in [HostKind::Envoy, HostKind::Kong] {
            let mut h = FakeHost::new(kind);
            h.in_request = true;
            publish(
                &mut h,
                "guard",
                &[("verdict", json!("block")), ("score", json!(0.93))],
            );
            publish(&mut h, "pii", &[("total", json!(2))]);
            let got = collect(&h);
            assert_eq!(
                Value::Object(got),
                json!({"guard": {"verdict": "block", "score": 0.93}, "pii": {"total": 2}}),
                "{kind:?}"
            );
            let key = path(kind, "guard").join(".");
            assert!(h.properties.contains_key(&key), "{kind:?}: {key}");
        }
        assert_eq!(path(HostKind::Kong, "pii"), vec!["wasmx", "ai_decision_pii"]);
    }

    #[test]
    fn republishing_replaces() {
        let mut h = FakeHost::new(HostKind::Envoy);
        publish(&mut h, "proxy", &[("target", json!("a"))]);
        publish(
            &mut h,
            "proxy",
            &[("target", json!("b")), ("prompt_tokens", json!(3))],
        );
        assert_eq!(collect(&h)["proxy"], json!({"target": "b", "prompt_tokens": 3}));
    }

    #[test]
    fn bounds_drop_fields_from_the_end_and_count() {
        let cases: &[(usize, usize, bool)] = &[
            // (fields of 100 bytes each, fields kept, truncated)
            (3, 3, false),
            (9, 9, false),
            (12, 9, true),
            (40, 9, true),
        ];
        for &(n, kept, truncated) in cases {
            let names: Vec<String> = (0..n).map(|i| format!("f{i:02}")).collect();
            let fields: Vec<(&str, Value)> = names
                .iter()
                .map(|k| (k.as_str(), json!("x".repeat(100))))
                .collect();
            let (text, t) = encode(&fields);
            assert!(text.len() <= MAX_BYTES, "{n}: {}", text.len());
            assert_eq!(t, truncated, "{n}");
            let v: Value = serde_json::from_str(&text).unwrap();
            let o = v.as_object().unwrap();
            assert_eq!(o.len() - usize::from(truncated), kept, "{n}");
            if kept > 0 {
                assert!(o.contains_key("f00"), "the first fields stay");
            }
        }
        let mut h = FakeHost::new(HostKind::Envoy);
        let big = [("a", json!("y".repeat(2000)))];
        publish(&mut h, "router", &big);
        assert_eq!(collect(&h)["router"], json!({"truncated": true}));
        assert_eq!(h.counters["ai_decision_truncated_total_policy=router"], 1);
    }

    #[test]
    fn a_refused_write_does_not_trap_and_unreadable_values_are_marked() {
        let mut h = FakeHost::new(HostKind::Envoy);
        h.refused_properties.push("ai_decision_guard".into());
        publish(&mut h, "guard", &[("verdict", json!("allow"))]);
        assert!(collect(&h).is_empty());
        h.properties.insert("ai_decision_pii".into(), "not json".into());
        assert_eq!(collect(&h)["pii"], json!({"unreadable": true}));
    }
}
