//! ai-proxy: one OpenAI-compatible front door to many LLM providers.
//!
//! Glue only: the config lives in [`config`], the policy in [`proxy`]; providers and their
//! translation are `shared::provider`, callout mode `shared::callout::attempts`, and the shared driver
//! turns the policy's answers into host calls.

pub mod config;
pub mod proxy;

use shared::breaker::sync::BreakerSync;
use shared::config::ConfigError;
use shared::host::Background;
use std::rc::Rc;

impl shared::wasm::Filter for config::Config {
    type Policy = proxy::AiProxy;
    const NAME: &'static str = "ai-proxy";

    fn configure(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        config::Config::parse(json, env)
    }

    fn new_policy(config: &Rc<Self>, seed: u64) -> proxy::AiProxy {
        proxy::AiProxy::new(Rc::clone(config), seed)
    }

    /// Breakers with a Redis store: the timer shares their open states with the fleet.
    fn background(config: &Rc<Self>) -> Option<Box<dyn Background>> {
        let shared = config.shared_breakers.clone()?;
        Some(Box::new(BreakerSync::new(
            "ai-proxy",
            shared,
            shared::redis::seed(0),
        )))
    }
}

// The module's entry point; off when the policy is linked into the bundle (filters/ai-gateway).
#[cfg(all(target_arch = "wasm32", feature = "module"))]
proxy_wasm::main! {{
    shared::wasm::register::<config::Config>();
}}
