//! Fixed windows: which window a moment falls in, and when it ends.
//!
//! A fixed window (rather than a sliding log) needs one counter per subject, which is what shared data
//! with CAS can update atomically; its known cost is a burst of up to twice the limit across a window
//! boundary, which the README states.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
}

impl Window {
    pub fn millis(self) -> u64 {
        match self {
            Window::Second => 1_000,
            Window::Minute => 60_000,
            Window::Hour => 3_600_000,
            Window::Day => 86_400_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }

    /// The number of the window holding `now_ms` (windows are aligned to the Unix epoch, in UTC).
    pub fn index(self, now_ms: u64) -> u64 {
        now_ms / self.millis()
    }

    /// Milliseconds until the window holding `now_ms` ends (1..=millis).
    pub fn reset_ms(self, now_ms: u64) -> u64 {
        self.millis() - now_ms % self.millis()
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `120ms`, `1s`, `6m0s`, `1h2m3s`.
pub fn format_reset(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1_000);
    let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// `Retry-After` in whole seconds, rounded up so a client that obeys it lands in the next window.
pub fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn windows() {
        let cases = [
            (Window::Second, 1_500, 1, 500),
            (Window::Second, 2_000, 2, 1_000),
            (Window::Minute, 59_999, 0, 1),
            (Window::Minute, 60_000, 1, 60_000),
            (Window::Hour, 3_600_000 * 5 + 1, 5, 3_599_999),
            (Window::Day, 86_400_000 * 2 - 10, 1, 10),
        ];
        for (w, now, index, reset) in cases {
            assert_eq!(w.index(now), index, "{w:?} {now}");
            assert_eq!(w.reset_ms(now), reset, "{w:?} {now}");
        }
    }

    #[test]
    fn reset_formats() {
        let cases = [
            (0, "0ms"),
            (120, "120ms"),
            (1_000, "1s"),
            (1_001, "2s"),
            (60_000, "1m0s"),
            (360_000, "6m0s"),
            (3_723_000, "1h2m3s"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_reset(ms), want);
        }
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1_500), 2);
    }
}
