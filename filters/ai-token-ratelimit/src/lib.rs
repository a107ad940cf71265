//! ai-token-ratelimit: token-based rate limits and budgets per consumer and model, shared across
//! workers.
//!
//! Glue only: the config lives in [`config`], the policy in [`policy`], the accounting (windows,
//! estimates, the CAS counter store, identities, the fleet-wide store in Redis) in `shared::ratelimit`,
//! and the shared driver turns the policy's answers into host calls.

pub mod config;
pub mod policy;

use shared::config::ConfigError;
use shared::host::Background;
use shared::ratelimit::fleet::Sync;
use std::rc::Rc;

impl shared::wasm::Filter for config::Config {
    type Policy = policy::TokenRateLimit;
    const NAME: &'static str = "ai-token-ratelimit";

    fn configure(json: &[u8], _env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        config::Config::parse(json)
    }

    fn new_policy(config: &Rc<Self>, _seed: u64) -> policy::TokenRateLimit {
        policy::TokenRateLimit::new(Rc::clone(config))
    }

    /// With a Redis store: the timer applies queued deltas, refreshes hybrid views and probes Redis.
    fn background(config: &Rc<Self>) -> Option<Box<dyn Background>> {
        let redis = config.store.redis()?;
        let seed = shared::redis::seed(0);
        let sync = Sync::new(policy::NAME, policy::KEY_PREFIX, redis.clone(), seed);
        Some(Box::new(sync))
    }
}

// The module's entry point; off when the policy is linked into the bundle (filters/ai-gateway).
#[cfg(all(target_arch = "wasm32", feature = "module"))]
proxy_wasm::main! {{
    shared::wasm::register::<config::Config>();
}}
