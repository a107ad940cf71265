//! The common core of the AI gateway filters.
//!
//! Everything here except [`wasm`] is plain Rust with no proxy-wasm dependency, so it tests natively and
//! under wasm32: the model providers and their translation ([`provider`]), external calls and callout
//! mode ([`callout`], [`breaker`]), incremental SSE, token accounting, errors, metric naming, and the
//! small [`host::Host`] seam that policies use. [`wasm`] (feature `host`) is the only module that calls
//! proxy-wasm: the real host adapter and the generic driver every filter reuses.

pub mod breaker;
pub mod callout;
pub mod config;
pub mod error;
pub mod host;
pub mod injection;
pub mod metrics;
pub mod pii;
pub mod provider;
pub mod rand;
pub mod ratelimit;
pub mod sse;
pub mod text;
pub mod usage;
#[cfg(feature = "host")]
pub mod wasm;
