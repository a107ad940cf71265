//! ai-gateway: the bundle module. Links the policy crates as libraries and runs a configured chain of
//! them in one VM, on one body read and one parse (`shared::host::chain::Chain`).
//!
//! Glue only: the config (each chain entry's `config` is exactly the separate module's) is in
//! [`config`]; the chain runner is shared.

pub mod config;

use shared::config::ConfigError;
use shared::host::chain::Chain;
use shared::host::Background;
use std::rc::Rc;

impl shared::wasm::Filter for config::Bundle {
    type Policy = Chain;
    const NAME: &'static str = "ai-gateway";

    fn configure(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        config::Bundle::parse(json, env)
    }

    fn new_policy(config: &Rc<Self>, seed: u64) -> Chain {
        config.chain(seed)
    }

    fn background(config: &Rc<Self>) -> Option<Box<dyn Background>> {
        config.background()
    }
}

#[cfg(all(target_arch = "wasm32", feature = "module"))]
proxy_wasm::main! {{
    shared::wasm::register::<config::Bundle>();
}}
