//! Token accounting: the usage of one request, and its price.
//!
//! Each provider module reads usage from its own answers (`provider::openai::usage`,
//! `provider::anthropic::usage` and `StreamUsage`); this is the common currency they produce and every
//! filter meters with.
//!
//! **Totals and parts.** `prompt_tokens` is every input token the provider billed, whether read from
//! its prompt cache, written to it, or neither; `completion_tokens` every output token, reasoning
//! included. `cached_tokens`, `cache_write_tokens` and `reasoning_tokens` say how much of those totals
//! was of each kind: they are parts, never added to the totals again. The dialects differ here, and
//! the provider modules convert: OpenAI's `prompt_tokens` already includes
//! `prompt_tokens_details.cached_tokens`, while Anthropic's `input_tokens` excludes
//! `cache_read_input_tokens` and `cache_creation_input_tokens`, so Anthropic's three are summed into
//! `prompt_tokens` when read, and split again when an answer is written in Anthropic's shape.

/// Tokens consumed by one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Every input token, cached or not.
    pub prompt_tokens: u64,
    /// Every output token, reasoning included.
    pub completion_tokens: u64,
    /// Of `prompt_tokens`: read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Of `prompt_tokens`: written to the provider's prompt cache (Anthropic bills them apart).
    pub cache_write_tokens: u64,
    /// Of `completion_tokens`: spent on reasoning (thinking).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Prompt and completion totals, no parts known.
    pub const fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            cached_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        }
    }

    /// Every token billed: prompt and completion (the parts are inside them).
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Prompt tokens neither read from nor written to the cache (Anthropic's `input_tokens`).
    pub fn uncached_prompt_tokens(&self) -> u64 {
        self.prompt_tokens
            .saturating_sub(self.cached_tokens)
            .saturating_sub(self.cache_write_tokens)
    }

    /// The same usage with its parts clamped to their totals, so a provider that reports a part larger
    /// than its total can never make a count go negative or be counted twice.
    pub fn checked(mut self) -> Usage {
        self.cached_tokens = self.cached_tokens.min(self.prompt_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .min(self.prompt_tokens.saturating_sub(self.cached_tokens));
        self.reasoning_tokens = self.reasoning_tokens.min(self.completion_tokens);
        self
    }
}

/// Prices in USD per million tokens of each kind (see [`crate::config::Price`] for the config side).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub prompt: f64,
    pub completion: f64,
    /// For cached prompt tokens; the prompt price when the table sets none.
    pub cache_read: f64,
    /// For prompt tokens written to the cache; the prompt price when the table sets none.
    pub cache_write: f64,
}

impl Rates {
    /// One price for every prompt token, cached or not.
    pub const fn flat(prompt: f64, completion: f64) -> Rates {
        Rates {
            prompt,
            completion,
            cache_read: prompt,
            cache_write: prompt,
        }
    }
}

/// Cost in micro-dollars for prices in USD per million tokens: tokens × USD/1M × 1e6 µUSD/USD reduces to
/// tokens × price. Each prompt token is priced once, by its kind (uncached, cache read, cache write).
/// Negative or non-finite prices count as zero; the result saturates at `u64::MAX`.
pub fn cost(u: Usage, r: Rates) -> u64 {
    let price = |p: f64| if p.is_finite() && p > 0.0 { p } else { 0.0 };
    let u = u.checked();
    let micro = u.uncached_prompt_tokens() as f64 * price(r.prompt)
        + u.cached_tokens as f64 * price(r.cache_read)
        + u.cache_write_tokens as f64 * price(r.cache_write)
        + u.completion_tokens as f64 * price(r.completion);
    // Float-to-int `as` saturates (and maps NaN to 0), which is what a counter wants.
    micro.round() as u64
}

/// [`cost`] with one price for every prompt token.
pub fn cost_micro_usd(u: Usage, prompt_per_million: f64, completion_per_million: f64) -> u64 {
    cost(u, Rates::flat(prompt_per_million, completion_per_million))
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn u(p: u64, c: u64) -> Usage {
        Usage::new(p, c)
    }

    #[test]
    fn total_saturates() {
        assert_eq!(u(2, 3).total(), 5);
        assert_eq!(u(u64::MAX, 3).total(), u64::MAX);
        let parts = Usage {
            cached_tokens: 100,
            cache_write_tokens: 50,
            reasoning_tokens: 7,
            ..u(200, 10)
        };
        assert_eq!(parts.total(), 210, "parts are inside the totals");
        assert_eq!(parts.uncached_prompt_tokens(), 50);
    }

    #[test]
    fn parts_are_clamped_to_their_totals() {
        let odd = Usage {
            cached_tokens: 30,
            cache_write_tokens: 30,
            reasoning_tokens: 99,
            ..u(40, 5)
        };
        let c = odd.checked();
        assert_eq!(
            (c.cached_tokens, c.cache_write_tokens, c.reasoning_tokens),
            (30, 10, 5)
        );
        assert_eq!(c.uncached_prompt_tokens(), 0);
    }

    #[test]
    fn flat_cost() {
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

    #[test]
    fn each_prompt_token_is_priced_once_by_its_kind() {
        // Claude-like: 3 USD/M input, 0.30 cache read, 3.75 cache write, 15 output.
        let r = Rates {
            prompt: 3.0,
            completion: 15.0,
            cache_read: 0.3,
            cache_write: 3.75,
        };
        let usage = Usage {
            cached_tokens: 2000,
            cache_write_tokens: 100,
            reasoning_tokens: 4,
            ..u(2112, 14)
        };
        // 12 × 3 + 2000 × 0.3 + 100 × 3.75 + 14 × 15 = 36 + 600 + 375 + 210.
        assert_eq!(cost(usage, r), 1221);
        // Without cache prices every prompt token costs the prompt price: the flat cost.
        assert_eq!(
            cost(usage, Rates::flat(3.0, 15.0)),
            cost(u(2112, 14), Rates::flat(3.0, 15.0))
        );
        // A part larger than its total is clamped, never priced twice.
        let odd = Usage {
            cached_tokens: 5000,
            ..u(10, 0)
        };
        assert_eq!(cost(odd, r), 3);
    }
}
