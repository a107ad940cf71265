//! bench-noop: the cheapest possible proxy-wasm HTTP filter, to measure what the ABI itself costs in
//! Envoy (context creation, one callback per phase, `on_log`, `on_done`, `on_delete`). With
//! `{"read_body": true}` it pauses in the request headers and reads the whole body at end of stream,
//! like `shared::wasm`'s driver does for every policy that inspects the body, and forwards it unchanged.
//!
//! What one host call costs, against the plain `noop` arm of the same run: in the request headers it
//! makes `{"get_header": N}` reads of `:path`, `{"get_headers": N}` reads of the whole request map,
//! `{"set_header": N}` writes of `x-bench`, `{"counter": N}` increments of one counter and
//! `{"log": N}` debug lines (below Envoy's level: the call, not the write).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// How many host calls of each kind one request makes.
#[derive(Default, Clone, Copy)]
struct Calls {
    get_header: usize,
    get_headers: usize,
    set_header: usize,
    counter: usize,
    log: usize,
    counter_id: u32,
}

#[derive(Default)]
struct Root {
    read_body: bool,
    calls: Calls,
}

impl Context for Root {}

/// The number after `"key":` in the (space-free) config, 0 without one.
fn count(text: &str, key: &str) -> usize {
    text.split_once(&format!("\"{key}\":"))
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect::<String>())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config).replace(' ', "");
        self.read_body = text.contains("\"read_body\":true");
        self.calls = Calls {
            get_header: count(&text, "get_header"),
            get_headers: count(&text, "get_headers"),
            set_header: count(&text, "set_header"),
            counter: count(&text, "counter"),
            log: count(&text, "log"),
            counter_id: hostcalls::define_metric(MetricType::Counter, "bench_noop_calls").unwrap_or(0),
        };
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop {
            read_body: self.read_body,
            calls: self.calls,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    read_body: bool,
    calls: Calls,
}

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let c = self.calls;
        for _ in 0..c.get_header {
            std::hint::black_box(self.get_http_request_header(":path"));
        }
        for _ in 0..c.get_headers {
            std::hint::black_box(self.get_http_request_headers());
        }
        for _ in 0..c.set_header {
            self.set_http_request_header("x-bench", Some("1"));
        }
        for _ in 0..c.counter {
            let _ = hostcalls::increment_metric(c.counter_id, 1);
        }
        for _ in 0..c.log {
            let _ = hostcalls::log(LogLevel::Debug, "bench-noop: a per-request line");
        }
        if self.read_body && !end_of_stream {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.read_body {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        std::hint::black_box(body);
        Action::Continue
    }
}
