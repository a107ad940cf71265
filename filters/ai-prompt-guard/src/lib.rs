//! ai-prompt-guard: stops bad or hostile prompts at the gateway, before they cost a model call.
//!
//! Glue only: the config lives in [`config`], the policy in [`guard`], chat shapes in [`chat`], the
//! JSON Schema subset is `shared::schema`, the classifier mapping and cache in [`classifier`]; the injection
//! detector is `shared::injection`, and the shared driver turns the policy's answers into host calls.

pub mod chat;
pub mod classifier;
pub mod config;
pub mod detect;
pub mod guard;

use shared::config::ConfigError;
use std::rc::Rc;

impl shared::wasm::Filter for config::Config {
    type Policy = guard::Guard;
    const NAME: &'static str = "ai-prompt-guard";

    fn configure(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        config::Config::parse(json, env)
    }

    fn new_policy(config: &Rc<Self>, _seed: u64) -> guard::Guard {
        guard::Guard::new(Rc::clone(config))
    }
}

// The module's entry point; off when the policy is linked into the bundle (filters/ai-gateway).
#[cfg(all(target_arch = "wasm32", feature = "module"))]
proxy_wasm::main! {{
    shared::wasm::register::<config::Config>();
}}
