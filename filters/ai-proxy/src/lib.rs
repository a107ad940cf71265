//! ai-proxy: one OpenAI-compatible front door to many LLM providers.
//!
//! Glue only: the config lives in [`config`], the policy in [`proxy`]; providers and their
//! translation are `shared::provider`, callout mode `shared::callout::attempts`, and the shared driver
//! turns the policy's answers into host calls.

pub mod balancer;
pub mod config;
pub mod proxy;

use shared::breaker::sync::BreakerSync;
use shared::config::ConfigError;
use shared::host::chain::Backgrounds;
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
        let syncs = config.shared_breakers.iter().enumerate().map(|(i, s)| {
            let seed = shared::redis::seed(i as u64);
            Box::new(BreakerSync::new("ai-proxy", i, s.clone(), seed)) as Box<dyn Background>
        });
        Backgrounds::combine(syncs.collect())
    }
}

// The module's entry point; off when the policy is linked into the bundle (filters/ai-gateway).
#[cfg(all(target_arch = "wasm32", feature = "module"))]
proxy_wasm::main! {{
    shared::wasm::register::<config::Config>();
}}
