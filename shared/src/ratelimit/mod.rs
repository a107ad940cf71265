//! Token rate-limit accounting, shared by every worker: windows, reservation estimates, the counter
//! store, consumer identity, and the scaling of a limit.
//!
//! The filter `ai-token-ratelimit` is the user; everything here is plain Rust over [`crate::host::Host`]
//! so it tests natively, and the store sits behind [`store::CounterStore`] so a cluster-wide store can
//! replace shared data without touching the policy.

pub mod estimate;
pub mod fleet;
pub mod identity;
pub mod store;
pub mod window;

/// A limit scaled by adaptive factors, rounded down; a factor product of 0 closes the limit.
pub fn scale(limit: u64, factor: f64) -> u64 {
    if !factor.is_finite() || factor <= 0.0 {
        return 0;
    }
    // `as` saturates, so a huge factor gives u64::MAX rather than wrapping.
    (limit as f64 * factor).floor() as u64
}

/// Error rate as a fraction, or `None` below `min_requests` samples (too few to judge).
pub fn error_rate(errors: u64, total: u64, min_requests: u64) -> Option<f64> {
    (total >= min_requests.max(1)).then(|| errors.min(total) as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn scaling() {
        let cases = [
            (1000, 1.0, 1000),
            (1000, 0.25, 250),
            (999, 0.5, 499),
            (1000, 2.0, 2000),
            (1000, 0.0, 0),
            (1000, -1.0, 0),
            (1000, f64::NAN, 0),
            (u64::MAX, 2.0, u64::MAX),
        ];
        for (limit, factor, want) in cases {
            assert_eq!(scale(limit, factor), want, "{limit} {factor}");
        }
        assert_eq!(error_rate(1, 4, 4), Some(0.25));
        assert_eq!(error_rate(1, 3, 4), None);
        assert_eq!(error_rate(9, 3, 0), Some(1.0));
        assert_eq!(error_rate(0, 0, 0), None);
    }
}
