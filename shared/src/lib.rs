//! The common core of the AI gateway filters.
//!
//! Everything here except [`wasm`] is plain Rust with no proxy-wasm dependency, so it tests natively and
//! under wasm32: OpenAI/Anthropic wire formats and translation, incremental SSE, token accounting, errors,
//! metric naming, and the small [`host::Host`] seam that policies use. [`wasm`] (feature `host`) is the only
//! module that calls proxy-wasm: the real host adapter and the generic driver every filter reuses.

pub mod anthropic;
pub mod config;
/// SHA-256, HMAC, CRC-32, base64/hex and AWS SigV4, written in-crate and checked against published vectors.
pub mod crypto;
pub mod error;
pub mod host;
pub mod injection;
/// HS256 JSON Web Tokens: sign, verify (alg, constant-time signature, `exp`/`nbf`), decode unverified.
pub mod jwt;
pub mod metrics;
pub mod openai;
pub mod pii;
pub mod rand;
pub mod ratelimit;
pub mod sse;
pub mod text;
/// UTC calendar dates from epoch seconds and back (`YYYYMMDDTHHMMSSZ`), with no clock.
pub mod time;
pub mod usage;
#[cfg(feature = "host")]
pub mod wasm;
