//! The bundle's configuration: `{"chain": [{"policy": "<module name>", "config": {…}}, …]}`, where each
//! entry's `config` is exactly what the separate module takes. Errors name the entry
//! (`chain[2].config.targets[0].name: …`). The Kong schema, `ai_gateway.meta.json`, is generated from
//! the separate modules' schemas by `build_meta.py`.

use serde::Deserialize;
use shared::config::{parse_json, ConfigError};
use shared::host::chain::{Backgrounds, Chain};
use shared::host::{Background, Policy};
use shared::wasm::Filter;
use std::rc::Rc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    chain: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    policy: Name,
    config: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Deserialize)]
enum Name {
    #[serde(rename = "ai-prompt-guard")]
    Guard,
    #[serde(rename = "ai-token-ratelimit")]
    RateLimit,
    #[serde(rename = "ai-pii-redact")]
    Pii,
    #[serde(rename = "ai-enrich")]
    Enrich,
    #[serde(rename = "ai-router")]
    Router,
    #[serde(rename = "ai-proxy")]
    Proxy,
}

/// One configured policy of the chain.
enum Entry {
    Guard(Rc<ai_prompt_guard::config::Config>),
    RateLimit(Rc<ai_token_ratelimit::config::Config>),
    Pii(Rc<ai_pii_redact::config::Config>),
    Enrich(Rc<ai_enrich::config::Config>),
    Router(Rc<ai_router::config::Config>),
    Proxy(Rc<ai_proxy::config::Config>),
}

/// The checked chain.
pub struct Bundle {
    entries: Vec<Entry>,
}

fn load<F: Filter>(
    i: usize,
    config: &serde_json::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Rc<F>, ConfigError> {
    F::configure(config.to_string().as_bytes(), env)
        .map(Rc::new)
        .map_err(|e| {
            let at = format!("chain[{i}].config");
            let field = if e.field.is_empty() {
                at
            } else {
                format!("{at}.{}", e.field)
            };
            ConfigError::new(field, e.message)
        })
}

fn policy<F: Filter>(config: &Rc<F>, seed: u64) -> Box<dyn Policy> {
    Box::new(F::new_policy(config, seed))
}

impl Bundle {
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Bundle, ConfigError> {
        let raw: RawBundle = parse_json(json)?;
        if raw.chain.is_empty() {
            return Err(ConfigError::new("chain", "at least one policy is required"));
        }
        let mut entries = Vec::with_capacity(raw.chain.len());
        for (i, e) in raw.chain.iter().enumerate() {
            entries.push(match e.policy {
                Name::Guard => Entry::Guard(load(i, &e.config, env)?),
                Name::RateLimit => Entry::RateLimit(load(i, &e.config, env)?),
                Name::Pii => Entry::Pii(load(i, &e.config, env)?),
                Name::Enrich => Entry::Enrich(load(i, &e.config, env)?),
                Name::Router => Entry::Router(load(i, &e.config, env)?),
                Name::Proxy => Entry::Proxy(load(i, &e.config, env)?),
            });
        }
        Ok(Bundle { entries })
    }

    /// One request's chain.
    pub fn chain(&self, seed: u64) -> Chain {
        let policies = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let seed = seed.wrapping_add(i as u64);
                match e {
                    Entry::Guard(c) => policy(c, seed),
                    Entry::RateLimit(c) => policy(c, seed),
                    Entry::Pii(c) => policy(c, seed),
                    Entry::Enrich(c) => policy(c, seed),
                    Entry::Router(c) => policy(c, seed),
                    Entry::Proxy(c) => policy(c, seed),
                }
            })
            .collect();
        Chain::new(policies)
    }

    /// The policies' timer work, run side by side.
    pub fn background(&self) -> Option<Box<dyn Background>> {
        let works: Vec<Box<dyn Background>> = self
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Guard(c) => ai_prompt_guard::config::Config::background(c),
                Entry::RateLimit(c) => ai_token_ratelimit::config::Config::background(c),
                Entry::Pii(c) => ai_pii_redact::config::Config::background(c),
                Entry::Enrich(c) => ai_enrich::config::Config::background(c),
                Entry::Router(c) => ai_router::config::Config::background(c),
                Entry::Proxy(c) => ai_proxy::config::Config::background(c),
            })
            .collect();
        Backgrounds::combine(works)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_entry() {
        let env = |_: &str| Some("k".to_string());
        let ok = br#"{"chain":[{"policy":"ai-pii-redact","config":{}},
            {"policy":"ai-proxy","config":{"targets":[{"name":"a","provider":"openai","model":"m",
             "endpoint":{"cluster":"c","host":"h:443"},"auth":{"env":"K"}}],
             "models":{"m":{"targets":[{"target":"a"}]}}}}]}"#;
        assert!(Bundle::parse(ok, &env).is_ok());
        let bad = br#"{"chain":[{"policy":"ai-pii-redact","config":{}},{"policy":"ai-proxy","config":{"targets":[],"models":{}}}]}"#;
        let err = Bundle::parse(bad, &env).err().unwrap();
        assert!(err.field.starts_with("chain[1].config"), "{err}");
        assert!(Bundle::parse(br#"{"chain":[]}"#, &env).is_err());
        assert!(Bundle::parse(br#"{"chain":[{"policy":"nope","config":{}}]}"#, &env).is_err());
    }

    /// The same fixtures are checked against the generated ai_gateway.meta.json by tests/check_meta.py.
    #[test]
    fn fixtures_agree_with_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let seen =
            shared::config::check_fixtures(&dir, |b| Bundle::parse(b, &|_| Some("x".to_string())).map(drop))
                .unwrap();
        assert!(seen >= 4, "too few fixtures: {seen}");
    }
}
