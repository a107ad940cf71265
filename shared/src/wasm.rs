//! The only module that calls proxy-wasm: the real [`Host`] and the generic driver every filter uses.
//!
//! A filter implements [`Filter`] (parse config, make a [`Policy`] per request) and calls
//! [`register`] from `proxy_wasm::main!`. The driver owns the differences between hosts that
//! `../shared/guide/portability.md` lists, so no policy has to know them:
//! - reading a request body: Envoy needs `Pause` in headers (with `allow_on_headers_stop_iteration`)
//!   and sends the body in chunks; Kong needs `Continue` and sends it whole in one call;
//! - `content-length`: removed on Envoy when the body may change size; Kong recomputes it;
//! - whole responses: Envoy buffers them (headers paused, so the status can still change); Kong
//!   ignores a Pause there, so the driver keeps its own copy and empties each chunk instead;
//! - "has a body": Kong's `end_of_stream` is always false in headers, so it is read from the headers.

use crate::error::ApiError;
use crate::host::{
    BodyOutcome, CallResponse, HeadersOutcome, Host, HostKind, HttpCall, LocalReply, LogLevel, Policy,
    ResponseMode, SharedDataError,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action, BufferType, ContextType, LogLevel as PwLogLevel, MapType, MetricType, Status,
};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// What a filter crate provides: its config, checked at load, and a policy per request.
pub trait Filter: Sized + 'static {
    type Policy: Policy + 'static;
    /// Used in log lines and as the root id.
    const NAME: &'static str;
    /// Parses and checks the plugin configuration. `env` reads the VM environment.
    fn configure(
        json: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::config::ConfigError>;
    fn new_policy(config: &Rc<Self>, seed: u64) -> Self::Policy;
}

/// Installs the root context of filter `F`. Call it from `proxy_wasm::main!`.
pub fn register<F: Filter>() {
    // Log a panic at critical level before the VM dies, so the cause is in the proxy's log.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(PwLogLevel::Critical, &format!("{}: panic: {info}", F::NAME));
    }));
    proxy_wasm::set_root_context(|_| Box::new(Root::<F> { config: None }));
}

thread_local! {
    static HOST_KIND: Cell<HostKind> = const { Cell::new(HostKind::Envoy) };
    static METRIC_IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

fn detect_host() -> HostKind {
    // ngx_wasm_module answers this property; Envoy has no such property.
    match hostcalls::get_property(vec!["ngx", "nginx_version"]) {
        Ok(Some(_)) => HostKind::Kong,
        _ => HostKind::Envoy,
    }
}

struct Root<F: Filter> {
    config: Option<Rc<F>>,
}

impl<F: Filter> Context for Root<F> {}

impl<F: Filter> RootContext for Root<F> {
    fn on_configure(&mut self, _size: usize) -> bool {
        HOST_KIND.with(|k| k.set(detect_host()));
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        match F::configure(&bytes, &env) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                ProxyHost.log(
                    LogLevel::Error,
                    &format!("{}: configuration refused: {e}", F::NAME),
                );
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.as_ref()?;
        let seed = ProxyHost.now_nanos() ^ u64::from(context_id).rotate_left(32);
        Some(Box::new(Driver::new(F::new_policy(config, seed))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The real host: every method is one or two proxy-wasm host calls.
pub struct ProxyHost;

impl ProxyHost {
    fn now_nanos(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn metric(&self, kind: MetricType, name: &str) -> Option<u32> {
        METRIC_IDS.with(|ids| {
            if let Some(id) = ids.borrow().get(name) {
                return Some(*id);
            }
            let id = hostcalls::define_metric(kind, name).ok()?;
            ids.borrow_mut().insert(name.to_string(), id);
            Some(id)
        })
    }
}

impl Host for ProxyHost {
    fn kind(&self) -> HostKind {
        HOST_KIND.with(Cell::get)
    }
    fn now_ms(&self) -> u64 {
        self.now_nanos() / 1_000_000
    }
    fn request_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }
    fn response_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
            .ok()
            .flatten()
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value);
    }
    fn set_property(&mut self, path: &[&str], value: &str) -> bool {
        hostcalls::set_property(path.to_vec(), Some(value.as_bytes())).is_ok()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        // `None` means "create only if absent" on every host. Kong does that itself; Envoy overwrites on
        // `None` but ignores the token of a key that does not exist yet, so a token no live key has
        // (versions count up from 1 across the store) creates the key or fails if another worker did.
        let cas = match (cas, self.kind()) {
            (None, HostKind::Envoy) => Some(CREATE_ONLY),
            (cas, _) => cas,
        };
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedDataError::CasMismatch),
            Err(_) => Err(SharedDataError::Failed),
        }
    }
    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => PwLogLevel::Debug,
            LogLevel::Info => PwLogLevel::Info,
            LogLevel::Warn => PwLogLevel::Warn,
            LogLevel::Error => PwLogLevel::Error,
        };
        let _ = hostcalls::log(level, message);
    }
    fn counter_add(&mut self, name: &str, delta: u64) {
        if let Some(id) = self.metric(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
        }
    }
    fn histogram_record(&mut self, name: &str, value: u64) {
        if let Some(id) = self.metric(MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// Where a request is; only the stages where a callback must act differently are distinguished.
#[derive(Debug, PartialEq, Eq)]
enum Stage {
    Headers,
    ReadingBody,
    /// Paused on a callout; `body_size` is the size of the request body read so far (0 in headers).
    Calling {
        body_size: usize,
    },
    Forwarded,
    /// We sent a local reply: its response passes through our own response callbacks untouched.
    Replied,
}

#[derive(Debug)]
enum Response {
    PassThrough,
    Stream,
    /// Envoy: the host buffers; we read it all at the end.
    WholeBuffered,
    /// Kong: we keep our own copy and empty each chunk.
    WholeCollected(Vec<u8>),
}

/// The CAS token that makes an Envoy shared-data write create-only (see `ProxyHost::shared_set`).
const CREATE_ONLY: u32 = u32::MAX;

/// Bound on our own copy of a whole response on hosts that do not buffer it for us.
const MAX_COLLECTED_RESPONSE: usize = 16 * 1024 * 1024;

struct Driver<P: Policy> {
    policy: P,
    host: ProxyHost,
    stage: Stage,
    response: Response,
}

impl<P: Policy> Driver<P> {
    fn new(policy: P) -> Self {
        Driver {
            policy,
            host: ProxyHost,
            stage: Stage::Headers,
            response: Response::PassThrough,
        }
    }

    fn reply(&mut self, reply: LocalReply) -> Action {
        self.stage = Stage::Replied;
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let _ = hostcalls::send_http_response(u32::from(reply.status), headers, Some(&reply.body));
        Action::Pause
    }

    /// Dispatches a callout and pauses; a call the host refuses is answered at once as failed.
    fn call(&mut self, call: HttpCall, body_size: usize) -> Action {
        let target = call.upstream.dispatch_target(self.host.kind()).to_string();
        let authority = crate::host::authority(&call.upstream.host).to_string();
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", call.method.as_str()),
            (":path", call.path.as_str()),
            (":authority", authority.as_str()),
        ];
        headers.extend(call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let timeout = Duration::from_millis(call.timeout_ms.max(1));
        match hostcalls::dispatch_http_call(&target, headers, Some(&call.body), vec![], timeout) {
            Ok(_token) => {
                self.stage = Stage::Calling { body_size };
                Action::Pause
            }
            Err(status) => {
                self.host.log(
                    LogLevel::Warn,
                    &format!("callout to `{target}` not dispatched: {status:?}"),
                );
                let outcome = self
                    .policy
                    .on_call_response(&mut self.host, CallResponse::default());
                self.apply_body_outcome(outcome, body_size)
            }
        }
    }

    /// Applies the policy's answer in the body phase (or after a callout), returning the action.
    fn apply_body_outcome(&mut self, outcome: BodyOutcome, body_size: usize) -> Action {
        self.stage = Stage::Forwarded;
        match outcome {
            BodyOutcome::Continue => Action::Continue,
            BodyOutcome::Replace(new) => {
                let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body_size.max(new.len()), &new);
                Action::Continue
            }
            BodyOutcome::Reply(r) => self.reply(r),
            BodyOutcome::Call(call) => self.call(call, body_size),
        }
    }

    /// Kong's `end_of_stream` is always false in headers, so decide from the headers themselves.
    fn request_has_body(&self, end_of_stream: bool) -> bool {
        match self.host.kind() {
            HostKind::Envoy => !end_of_stream,
            HostKind::Kong => {
                let chunked = self
                    .host
                    .request_header("transfer-encoding")
                    .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
                let length = self
                    .host
                    .request_header("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                chunked || length.is_some_and(|n| n > 0)
            }
        }
    }

    fn response_bytes(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn set_response_bytes(&self, old_size: usize, bytes: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, old_size.max(bytes.len()), bytes);
    }
}

impl<P: Policy> Context for Driver<P> {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Stage::Calling {
            body_size: request_body_size,
        } = self.stage
        else {
            return;
        };
        let headers = hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
        // Kong answers a failed call with no headers at all; Envoy with a `:status` of its own.
        let status = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(":status"))
            .and_then(|(_, v)| v.parse::<u16>().ok());
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let response = CallResponse {
            status,
            headers,
            body,
        };
        let outcome = self.policy.on_call_response(&mut self.host, response);
        let was_reply = matches!(outcome, BodyOutcome::Reply(_));
        let action = self.apply_body_outcome(outcome, request_body_size);
        if action == Action::Continue && !was_reply {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl<P: Policy> HttpContext for Driver<P> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let has_body = self.request_has_body(end_of_stream);
        match self.policy.on_request_headers(&mut self.host, has_body) {
            HeadersOutcome::Continue => {
                self.stage = Stage::Forwarded;
                Action::Continue
            }
            HeadersOutcome::ReadBody => {
                self.stage = Stage::ReadingBody;
                match self.host.kind() {
                    HostKind::Envoy => {
                        // The body may change size: without content-length Envoy forwards it chunked.
                        self.host.set_request_header("content-length", None);
                        Action::Pause
                    }
                    HostKind::Kong => Action::Continue,
                }
            }
            HeadersOutcome::Reply(r) => self.reply(r),
            HeadersOutcome::Call(call) => self.call(call, 0),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.stage != Stage::ReadingBody {
            return Action::Continue;
        }
        let limit = self.policy.request_body_limit();
        if body_size > limit {
            let reply = self.policy.on_request_too_large(&mut self.host, limit);
            return self.reply(reply);
        }
        // Kong delivers the whole body in one call; Envoy buffers while we pause.
        if !end_of_stream && self.host.kind() == HostKind::Envoy {
            return Action::Pause;
        }
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let outcome = self.policy.on_request_body(&mut self.host, &body);
        self.apply_body_outcome(outcome, body_size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.stage == Stage::Replied {
            return Action::Continue;
        }
        let mode = self.policy.on_response_headers(&mut self.host);
        let kind = self.host.kind();
        self.response = match mode {
            ResponseMode::PassThrough => Response::PassThrough,
            // A headers-only response has no body to rewrite.
            _ if end_of_stream && kind == HostKind::Envoy => Response::PassThrough,
            ResponseMode::Stream => Response::Stream,
            ResponseMode::Whole if kind == HostKind::Envoy => Response::WholeBuffered,
            ResponseMode::Whole => Response::WholeCollected(Vec::new()),
        };
        match self.response {
            Response::PassThrough => Action::Continue,
            // Envoy: hold the headers so the status and length can follow the rewritten body.
            Response::WholeBuffered => Action::Pause,
            Response::Stream | Response::WholeCollected(_) => {
                if kind == HostKind::Envoy {
                    self.host.set_response_header("content-length", None);
                }
                Action::Continue
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &mut self.response {
            Response::PassThrough => Action::Continue,
            Response::Stream => {
                let chunk = self.response_bytes(body_size);
                if let Some(out) = self
                    .policy
                    .on_response_chunk(&mut self.host, &chunk, end_of_stream)
                {
                    self.set_response_bytes(body_size, &out);
                }
                Action::Continue
            }
            Response::WholeBuffered => {
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = self.response_bytes(body_size);
                let out = self.policy.on_response_whole(&mut self.host, &body);
                if let Some(status) = out.status {
                    self.host
                        .set_response_header(":status", Some(&status.to_string()));
                }
                self.host
                    .set_response_header("content-length", Some(&out.body.len().to_string()));
                self.set_response_bytes(body_size, &out.body);
                Action::Continue
            }
            Response::WholeCollected(collected) => {
                let chunk = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                if collected.len() + chunk.len() > MAX_COLLECTED_RESPONSE {
                    let err = ApiError::upstream(502, "response_too_large", "upstream response is too large");
                    let body = err.body();
                    self.response = Response::PassThrough;
                    self.set_response_bytes(body_size, &body);
                    return Action::Continue;
                }
                collected.extend_from_slice(&chunk);
                if !end_of_stream {
                    self.set_response_bytes(body_size, &[]);
                    return Action::Continue;
                }
                let whole = std::mem::take(collected);
                let out = self.policy.on_response_whole(&mut self.host, &whole);
                self.set_response_bytes(body_size, &out.body);
                Action::Continue
            }
        }
    }

    fn on_log(&mut self) {
        self.policy.on_done(&mut self.host);
    }
}
