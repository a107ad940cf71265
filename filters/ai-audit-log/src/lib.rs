//! ai-audit-log: one audit record per request — who sent what to which model, what every policy
//! decided, what it cost — redacted, queued in shared data and shipped to ClickHouse or a webhook.
//!
//! Glue only: the config lives in [`config`], the per-request policy in [`policy`], the record in
//! [`record`], the root timer's delivery in [`drain`]; the sink formats are `shared::sink`, the
//! policies' decisions come through `shared::decision`, the queue is `shared::queue`.

pub mod config;
pub mod drain;
pub mod policy;
pub mod record;

use shared::config::ConfigError;
use shared::host::Background;
use std::rc::Rc;

impl shared::wasm::Filter for config::Config {
    type Policy = policy::AuditLog;
    const NAME: &'static str = policy::NAME;

    fn configure(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        config::Config::parse(json, env)
    }

    fn new_policy(config: &Rc<Self>, seed: u64) -> policy::AuditLog {
        policy::AuditLog::new(Rc::clone(config), seed)
    }

    /// The timer ships the queued records (one worker at a time holds the queue's lease).
    fn background(config: &Rc<Self>) -> Option<Box<dyn Background>> {
        let owner = shared::redis::seed(0);
        Some(Box::new(drain::Drain::new(Rc::clone(config), owner)))
    }
}

// The module's entry point; off when the policy is linked into the bundle (filters/ai-gateway).
#[cfg(all(target_arch = "wasm32", feature = "module"))]
proxy_wasm::main! {{
    shared::wasm::register::<config::Config>();
}}
