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
    let name = format!("ai_decision_{policy}");
    match kind {
        HostKind::Envoy => vec![name],
        HostKind::Kong => vec!["wasmx".to_string(), name],
    }
}

/// The compact JSON of `fields`, within [`MAX_BYTES`]: fields are dropped from the end (and
/// `"truncated":true` added) until it fits. Returns the text and whether it was truncated.
pub fn encode(fields: &[(&str, Value)]) -> (String, bool) {
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

/// Publishes `policy`'s decision on this request (replacing an earlier one of the same policy).
pub fn publish(host: &mut dyn Host, policy: &str, fields: &[(&str, Value)]) {
    let (text, truncated) = encode(fields);
    if truncated {
        host.counter_add(
            &metrics::name("ai_decision_truncated_total", &[("policy", policy)]),
            1,
        );
    }
    let path = path(host.kind(), policy);
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    // A refusal is logged and counted by the host layer (`<filter>_host_errors_total_op=set_property`);
    // the request goes on, with the decision missing from its audit record.
    let _reported = host.set_property(&parts, &text);
}

/// Every known policy's published decision on this request, by policy name. A value that is not a JSON
/// object is kept as `{"unreadable": true}` so its presence is not lost.
pub fn collect(host: &dyn Host) -> Map<String, Value> {
    let mut out = Map::new();
    for policy in POLICIES {
        let path = path(host.kind(), policy);
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        let Some(raw) = host.property(&parts) else {
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
