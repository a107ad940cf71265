//! ai-enrich: asks models questions about any HTTP request and hands the answers to the upstream.
//!
//! Glue only: the config lives in [`config`], the policy in [`policy`], the enrichers that need no
//! model in [`local`], header values and the context token in [`output`]; the tasks themselves (the
//! model calls, their governance and accounting) are `shared::llm`. The shared driver turns the
//! policy's answers into host calls.

pub mod config;
pub mod local;
pub mod output;
pub mod policy;

use shared::config::ConfigError;
use std::rc::Rc;

impl shared::wasm::Filter for config::Config {
    type Policy = policy::Enrich;
    const NAME: &'static str = "ai-enrich";

    fn configure(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        config::Config::parse(json, env)
    }

    fn new_policy(config: &Rc<Self>, _seed: u64) -> policy::Enrich {
        policy::Enrich::new(Rc::clone(config))
    }
}

// The module's entry point; off when the policy is linked into the bundle (filters/ai-gateway).
#[cfg(all(target_arch = "wasm32", feature = "module"))]
proxy_wasm::main! {{
    shared::wasm::register::<config::Config>();
}}
