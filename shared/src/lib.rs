//! The common core of the AI gateway filters.
//!
//! Everything here except [`wasm`] is plain Rust with no proxy-wasm dependency, so it tests natively and
//! under wasm32: the client-facing APIs and their dialects ([`api`]), the model providers and their
//! translation ([`provider`]), the one view of a chat request every policy reads ([`chat`]: which
//! requests are chat requests, every text the model reads), external calls and callout mode
//! ([`callout`], [`breaker`]), the model calls the gateway makes for its own purposes ([`llm`]: governed
//! tasks with schema-checked JSON answers), a JSON Schema subset ([`schema`]), incremental SSE, token
//! accounting, what a body says without a model ([`lang`]: its readable text and language), errors,
//! metric naming, the policies' published decisions ([`decision`]), the bounded shared-data queue ([`queue`]), the audit sinks' wire formats ([`sink`]), the fleet store over Webdis ([`redis`]),
//! and the small [`host::Host`] seam that policies use. [`wasm`] (feature `host`) is the only module
//! that calls proxy-wasm: the real host adapter; the generic driver is [`host::driver`].
//!
//! Foundations written in-crate (no dependency) and checked against published test vectors:
//! - [`crypto`]: SHA-256, HMAC-SHA256, CRC-32, base64/hex, and AWS SigV4 request signing;
//! - [`jwt`]: HS256 JSON Web Tokens (sign, verify, decode unverified);
//! - [`framing`]: incremental AWS event-stream (Bedrock) and NDJSON decoders (SSE is in [`sse`]);
//! - [`time`]: UTC calendar dates from epoch seconds and back, with no clock.

pub mod api;
pub mod breaker;
pub mod callout;
pub mod chat;
pub mod config;
pub mod crypto;
pub mod decision;
pub mod error;
pub mod framing;
pub mod host;
pub mod injection;
pub mod json_canon;
pub mod jwt;
pub mod lang;
pub mod llm;
pub mod metrics;
pub mod pattern;
pub mod pii;
pub mod provider;
pub mod queue;
pub mod rand;
pub mod ratelimit;
pub mod redis;
pub mod schema;
pub mod sink;
pub mod sse;
pub mod text;
pub mod time;
pub mod usage;
#[cfg(feature = "host")]
pub mod wasm;
