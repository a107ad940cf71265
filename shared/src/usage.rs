//! Token accounting: the usage of one request, and its price.
//!
//! Each provider module reads usage from its own answers (`provider::openai::usage`,
//! `provider::anthropic::usage` and `StreamUsage`); this is the common currency they produce and every
//! filter meters with.

/// Tokens consumed by one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Cost in micro-dollars for prices in USD per million tokens: tokens × USD/1M × 1e6 µUSD/USD reduces to
/// tokens × price. Negative or non-finite prices count as zero; the result saturates at `u64::MAX`.
/// See [`crate::config::Price`] for the config side.
pub fn cost_micro_usd(u: Usage, prompt_per_million: f64, completion_per_million: f64) -> u64 {
    let price = |p: f64| if p.is_finite() && p > 0.0 { p } else { 0.0 };
    let micro = u.prompt_tokens as f64 * price(prompt_per_million)
        + u.completion_tokens as f64 * price(completion_per_million);
    // Float-to-int `as` saturates (and maps NaN to 0), which is what a counter wants.
    micro.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn u(p: u64, c: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
        }
    }

    #[test]
    fn total_saturates() {
        assert_eq!(u(2, 3).total(), 5);
        assert_eq!(u(u64::MAX, 3).total(), u64::MAX);
    }

    #[test]
    fn cost() {
        let cases = [
            (u(0, 0), 0.15, 0.60, 0),
            (u(1_000_000, 1_000_000), 0.15, 0.60, 750_000),
            (u(1000, 500), 0.15, 0.60, 450),
            (u(1, 1), 0.15, 0.60, 1),  // 0.75 rounds up
            (u(1, 0), 0.4, 0.0, 0),    // 0.4 rounds down
            (u(3, 7), 3.0, 15.0, 114), // Claude-like prices
            (u(10, 10), -1.0, f64::NAN, 0),
            (u(u64::MAX, u64::MAX), 1e6, 1e6, u64::MAX),
            (u(5, 5), f64::INFINITY, 1.0, 5),
        ];
        for (usage, p, c, want) in cases {
            assert_eq!(cost_micro_usd(usage, p, c), want, "{usage:?} {p} {c}");
        }
    }
}
