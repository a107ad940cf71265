//! Property tests of the filters themselves (proptest): every filter's configuration parser on
//! arbitrary and mutated JSON, and the real filters through the shared driver on the fake hosts
//! (`shared::host::fake`) with arbitrary requests, chunkings and upstream answers.
//!
//! Cases per property: `PROPTEST_CASES` (default 256) divided by the property's weight. Failing inputs
//! are saved under `tests/tests/proptest-regressions/` and replayed first on every run; commit them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod config;
mod driver;

use proptest::prelude::*;
use serde_json::Value;

/// The config of a property that costs `weight` times a cheap one: `PROPTEST_CASES / weight` cases.
pub fn config(weight: u32) -> ProptestConfig {
    let base = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases: (base / weight.max(1)).max(8),
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

/// Strings that break naive code: empty, long, control characters, regex and JSON metacharacters,
/// CR/LF, non-ASCII, things that look like numbers or durations.
pub fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        "[a-z_\\-]{1,12}",
        Just(String::new()),
        Just("x".repeat(300)),
        Just("(".to_string()),
        Just("a{99999}{99999}".to_string()),
        Just("[".to_string()),
        Just("\\".to_string()),
        Just("\r\nx-injected: 1".to_string()),
        Just("\u{0}".to_string()),
        Just("1s".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("host:99999".to_string()),
        Just(":443".to_string()),
        Just("日本語😀".to_string()),
        Just("minute".to_string()),
        Just("openai".to_string()),
        Just("anthropic".to_string()),
        Just("env".to_string()),
    ]
}

pub fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            2,
            100,
            10_000,
            10_001,
            65_535,
            65_536,
            u32::MAX as i64
        ])
        .prop_map(Value::from),
        prop::sample::select(vec![0.5f64, -0.0, 1e308, -1e308, 1e-308, 0.999_999, 100.5])
            .prop_map(Value::from),
        nasty_string().prop_map(Value::String),
    ]
}

/// Any JSON value, nested a few levels.
pub fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(nasty_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
