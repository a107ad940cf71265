//! Property tests of the shared crate's parsers and engines (proptest, native only: the crate's tests
//! also run on wasm32, where proptest is not a dependency).
//!
//! Each module states the invariants it checks. Cases per property: `PROPTEST_CASES` (default 256)
//! divided by the property's weight, so `make test` runs a bounded pass and `make fuzz` a long one.
//! Failing inputs proptest finds are saved under `shared/tests/proptest-regressions/` and replayed
//! first on every run; commit them.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod framing;
mod jwt;
mod pii;
mod sse;
mod usage;

use proptest::prelude::*;

/// The config of a property that costs `weight` times a cheap one: `PROPTEST_CASES / weight` cases.
pub fn config(weight: u32) -> ProptestConfig {
    let base = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases: (base / weight.max(1)).max(8),
        // Shrinking a slow property must not stall `make test`.
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    }
}

/// `bytes` cut at the given offsets (taken modulo the length, sorted): the chunks a host might deliver.
pub fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| {
            if bytes.is_empty() {
                0
            } else {
                c % (bytes.len() + 1)
            }
        })
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in at {
        out.push(&bytes[prev..c]);
        prev = c;
    }
    out.push(&bytes[prev..]);
    out
}

/// `text` cut at char boundaries near the given offsets.
pub fn cut_str<'a>(text: &'a str, cuts: &[usize]) -> Vec<&'a str> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| {
            let mut i = if text.is_empty() { 0 } else { c % (text.len() + 1) };
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            i
        })
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in at {
        out.push(&text[prev..c]);
        prev = c;
    }
    out.push(&text[prev..]);
    out
}

/// Up to `n` cut offsets.
pub fn cuts(n: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..n)
}
