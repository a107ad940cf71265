//! The only module that calls proxy-wasm: the real host ([`abi::ProxyAbi`]) and the glue that hands the
//! SDK's callbacks to the generic driver (`crate::host::driver`).
//!
//! A filter implements [`Filter`] (parse config, make a [`Policy`] per request, optionally a
//! [`Background`] for its root context's timer) and calls [`register`] from `proxy_wasm::main!`.

pub mod abi;

use crate::host::abi::Abi;
use crate::host::driver::{configure_kind_hint, Action as DriverAction, BackgroundDriver, Driver};
use crate::host::{Background, HostKind, LogLevel, Misconfigured, Policy};
use abi::ProxyAbi;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;

/// What a filter crate provides: its config, checked at load, and a policy per request.
pub trait Filter: Sized + 'static {
    type Policy: Policy + 'static;
    /// Used in log lines, metric names and as the root id.
    const NAME: &'static str;
    /// Parses and checks the plugin configuration. `env` reads the VM environment.
    fn configure(
        json: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::config::ConfigError>;
    fn new_policy(config: &Rc<Self>, seed: u64) -> Self::Policy;
    /// Work for the root context's timer, if the filter has any.
    fn background(_config: &Rc<Self>) -> Option<Box<dyn Background>> {
        None
    }
}

/// Installs the root context of filter `F`. Call it from `proxy_wasm::main!`.
pub fn register<F: Filter>() {
    abi::set_filter_name(F::NAME);
    // Log a panic at critical level before the VM dies, so the cause is in the proxy's log.
    std::panic::set_hook(Box::new(|info| {
        let _unlogged = proxy_wasm::hostcalls::log(
            proxy_wasm::types::LogLevel::Critical,
            &format!("{}: panic: {info}", F::NAME),
        );
    }));
    proxy_wasm::set_root_context(|_| {
        Box::new(Root::<F> {
            config: None,
            background: None,
            refused: None,
        })
    });
}

struct Root<F: Filter> {
    config: Option<Rc<F>>,
    background: Option<BackgroundDriver>,
    /// Kong: why the configuration was refused (requests are answered with it).
    refused: Option<String>,
}

impl<F: Filter> Context for Root<F> {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, _body: usize, _trailers: usize) {
        if let Some(bg) = self.background.as_mut() {
            bg.on_call_response(&mut ProxyAbi, token);
        }
    }
}

fn action(a: DriverAction) -> Action {
    match a {
        DriverAction::Continue => Action::Continue,
        DriverAction::Pause => Action::Pause,
    }
}

impl<F: Filter> RootContext for Root<F> {
    fn on_configure(&mut self, _size: usize) -> bool {
        let mut abi = ProxyAbi;
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        match F::configure(&bytes, &env) {
            Ok(config) => {
                self.refused = None;
                let config = Rc::new(config);
                self.background = F::background(&config).map(BackgroundDriver::new);
                if let Some(bg) = &self.background {
                    let period = u32::try_from(bg.period_ms()).unwrap_or(u32::MAX).max(1);
                    if let Err(s) = abi.set_tick_period_ms(period) {
                        Abi::log(
                            &abi,
                            LogLevel::Error,
                            &format!("{}: timer refused: {s:?}", F::NAME),
                        );
                    }
                }
                self.config = Some(config);
                Abi::log(
                    &abi,
                    LogLevel::Info,
                    &format!("{}: configuration loaded", F::NAME),
                );
                true
            }
            Err(e) => {
                // Envoy refuses the listener (and `envoy --mode validate` fails): say no. Kong validated the
                // config against the meta.json schema already, and a refusal here stops the worker for good,
                // so stay loaded and answer every request with the problem instead.
                self.config = None;
                match configure_kind_hint(&abi) {
                    HostKind::Envoy => {
                        Abi::log(
                            &abi,
                            LogLevel::Error,
                            &format!("{}: configuration refused: {e}", F::NAME),
                        );
                        false
                    }
                    HostKind::Kong => {
                        Abi::log(
                            &abi,
                            LogLevel::Error,
                            &format!(
                                "{}: configuration refused: {e}; every request gets a 500 until it is fixed",
                                F::NAME
                            ),
                        );
                        self.refused = Some(e.to_string());
                        true
                    }
                }
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(bg) = self.background.as_mut() {
            bg.on_tick(&mut ProxyAbi);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        if let Some(problem) = &self.refused {
            return Some(Box::new(Http {
                driver: Driver::new(Misconfigured {
                    filter: F::NAME,
                    problem: problem.clone(),
                }),
            }));
        }
        let config = self.config.as_ref()?;
        // Per-request seed for weighted choices: the context id mixed with the clock.
        let seed = ProxyAbi.now_ns() ^ u64::from(context_id).rotate_left(32);
        Some(Box::new(Http {
            driver: Driver::new(F::new_policy(config, seed)),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http<P: Policy> {
    driver: Driver<P>,
}

impl<P: Policy> Context for Http<P> {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, _body: usize, _trailers: usize) {
        self.driver.on_call_response(&mut ProxyAbi, token);
    }
}

impl<P: Policy> HttpContext for Http<P> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.driver.on_request_headers(&mut ProxyAbi, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.driver
                .on_request_body(&mut ProxyAbi, body_size, end_of_stream),
        )
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.driver.on_response_headers(&mut ProxyAbi, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.driver
                .on_response_body(&mut ProxyAbi, body_size, end_of_stream),
        )
    }

    fn on_log(&mut self) {
        self.driver.on_log(&mut ProxyAbi);
    }
}
