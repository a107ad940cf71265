//! Incremental framing of streamed response bodies, as pure functions on bytes: a body arrives in
//! chunks cut at arbitrary offsets, and each decoder keeps what it needs between chunks, with a bound
//! on what it buffers.
//!
//! - [`eventstream`]: AWS `application/vnd.amazon.eventstream` (Bedrock's `ConverseStream`), binary
//!   frames with CRCs; decoder and encoder.
//! - [`ndjson`]: newline-delimited JSON lines (Ollama, Gemini-style streams).
//!
//! Server-Sent Events live in [`crate::sse`] for now (to be moved here once the work around it settles).

pub mod eventstream;
pub mod ndjson;
