//! config-check: runs each filter's real configuration parser on configurations read from stdin, one
//! JSON object per line: `{"filter": "ai-proxy", "config": {...}}`. Writes one line per input:
//! `{"ok": true}` or `{"ok": false, "field": "...", "error": "..."}`. Every environment variable a config
//! names reads as set (32 `x`: the shortest HS256 key a config may name), as in each filter's fixture test.
//!
//! `tests/schema_gaps.py` uses it to find configurations a filter's Kong schema accepts but its parser
//! refuses: on Kong such a config passes the Admin API and then stops the worker that loads it.

use shared::config::ConfigError;
use shared::wasm::Filter;
use std::io::{BufRead, Write};

fn parse<F: Filter>(json: &[u8]) -> Result<(), ConfigError> {
    F::configure(json, &|_| Some("x".repeat(32))).map(drop)
}

fn check(filter: &str, json: &[u8]) -> Result<(), ConfigError> {
    match filter {
        "ai-proxy" => parse::<ai_proxy::config::Config>(json),
        "ai-pii-redact" => parse::<ai_pii_redact::config::Config>(json),
        "ai-prompt-guard" => parse::<ai_prompt_guard::config::Config>(json),
        "ai-token-ratelimit" => parse::<ai_token_ratelimit::config::Config>(json),
        "ai-gateway" => parse::<ai_gateway::config::Bundle>(json),
        "ai-enrich" => parse::<ai_enrich::config::Config>(json),
        "ai-router" => parse::<ai_router::config::Config>(json),
        "ai-audit-log" => parse::<ai_audit_log::config::Config>(json),
        other => Err(ConfigError::new("filter", format!("unknown filter {other}"))),
    }
}

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) => {
                let filter = v.get("filter").and_then(|f| f.as_str()).unwrap_or_default();
                let config = v.get("config").map(|c| c.to_string()).unwrap_or_default();
                match check(filter, config.as_bytes()) {
                    Ok(()) => serde_json::json!({"ok": true}),
                    Err(e) => serde_json::json!({"ok": false, "field": e.field, "error": e.message}),
                }
            }
            Err(e) => serde_json::json!({"ok": false, "field": "", "error": format!("bad input line: {e}")}),
        };
        if writeln!(out, "{answer}").is_err() {
            break;
        }
    }
}
