//! ai-pii-redact: keeps personal data and secrets away from model providers, and out of responses.
//!
//! Glue only: the config lives in [`config`], the policy in [`policy`], where the text is in LLM bodies
//! in [`body`], the NER callout contract in [`ner`]; detection, actions, streaming hold-back and
//! restore are the shared engine `shared::pii`. The shared driver turns the policy's answers into host
//! calls.

pub mod body;
pub mod config;
pub mod ner;
pub mod policy;

use shared::config::ConfigError;
use std::rc::Rc;

impl shared::wasm::Filter for config::Config {
    type Policy = policy::PiiRedact;
    const NAME: &'static str = "ai-pii-redact";

    fn configure(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        config::Config::parse(json, env)
    }

    fn new_policy(config: &Rc<Self>, _seed: u64) -> policy::PiiRedact {
        policy::PiiRedact::new(Rc::clone(config))
    }
}

// The module's entry point; off when the policy is linked into the bundle (filters/ai-gateway).
#[cfg(all(target_arch = "wasm32", feature = "module"))]
proxy_wasm::main! {{
    shared::wasm::register::<config::Config>();
}}
