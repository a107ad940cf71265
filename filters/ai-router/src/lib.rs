//! ai-router: sends each request where its content, its caller and its intent say it belongs.
//!
//! Glue only: the config lives in [`config`], the rules and what they read in [`rules`], the local
//! intent classifier in [`intent`], the policy in [`policy`]. The model-backed intent classifier is a
//! `shared::llm` task; the shared driver turns the policy's answers into host calls.

pub mod config;
pub mod intent;
pub mod policy;
pub mod rules;

use shared::config::ConfigError;
use std::rc::Rc;

impl shared::wasm::Filter for config::Config {
    type Policy = policy::Router;
    const NAME: &'static str = "ai-router";

    fn configure(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        config::Config::parse(json, env)
    }

    fn new_policy(config: &Rc<Self>, seed: u64) -> policy::Router {
        policy::Router::new(Rc::clone(config), seed)
    }
}

// The module's entry point; off when the policy is linked into the bundle (filters/ai-gateway).
#[cfg(all(target_arch = "wasm32", feature = "module"))]
proxy_wasm::main! {{
    shared::wasm::register::<config::Config>();
}}
