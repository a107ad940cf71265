//! End-to-end test tooling for the AI gateway filters.
//!
//! - [`mock`]: deterministic mock LLM providers (OpenAI, Azure OpenAI, Anthropic: chat, tools, images,
//!   structured output, embeddings) and an echo endpoint on plain `std::net`,
//!   with request records and fault injection; also the `mock-provider` binary.
//! - [`http`]: a minimal HTTP/1.1 client (one request per connection, decodes chunked bodies).
//! - [`envoy`]: launches a real Envoy with a generated config (wasm filters + router + mock clusters).
//! - [`redis`]: a real Redis and Webdis (Redis over HTTP) on free ports, with a small client over webdis.
//! - [`canary`]: the statistics and verdict of `canary-report` (two arms of audit records compared).
//! - [`clickhouse`]: a real ClickHouse server on free ports, with query/insert/select helpers.
//! - [`sdk`]: runs Python snippets with the official OpenAI and Anthropic SDKs from the project venv.
//! - [`service`]: what those launchers share (fresh directories, free ports, readiness, kill on drop).

use std::path::PathBuf;

pub mod canary;
pub mod classifier;
pub mod clickhouse;
pub mod envoy;
pub mod guard;
pub mod http;
pub mod mock;
pub mod ner;
pub mod redis;
pub mod sdk;
pub mod service;

/// The repository root (the workspace directory holding `Cargo.toml`, `target/` and `.venv/`).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The cargo target directory: `$CARGO_TARGET_DIR` if set (relative to the repository root), else
/// `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

/// The Envoy binary: `$ENVOY_BIN` if set, else `<root>/.venv/bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => repo_root().join(".venv").join("bin").join("envoy"),
    }
}

/// The release build of a filter: `<target>/wasm32-wasip1/release/<name>.wasm` (e.g. `wasm_path("ai_proxy")`).
pub fn wasm_path(name: &str) -> PathBuf {
    target_dir()
        .join("wasm32-wasip1")
        .join("release")
        .join(format!("{name}.wasm"))
}
