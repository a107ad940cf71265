//! The seam between a policy and the proxy it runs in.
//!
//! Three layers, each using only the one below it:
//! - [`Policy`] is one request's policy. It sees the proxy only through [`Host`] (our own small trait,
//!   not the SDK's) and answers each stage with plain data: a [`Step`] for the request phases, a
//!   [`ResponseMode`] and rewritten bytes for the response.
//! - [`driver::Driver`] turns those answers into host calls and owns every difference between Envoy
//!   and Kong that `docs/portability.md` records (pausing, buffering, `content-length`, the last
//!   chunk, host detection), so no policy branches on the host.
//! - [`abi::Abi`] is the proxy-wasm host interface as the driver uses it, with every status returned as
//!   data. `crate::wasm` implements it with the real ABI; [`fake::FakeHost`] implements it natively, with
//!   Envoy's or Kong's (ngx_wasm_module's) observed behaviour, so the real driver and policies run in
//!   `cargo test`.
//!
//! [`Host`] is implemented once, for every [`abi::Abi`]: a failed host call is logged and counted
//! there (`<filter>_host_errors_total_op=<op>`), so no failure is lost even where a policy cannot do
//! better than go on; the `Result` is for policies that can (a failed route becomes a 502).

pub mod abi;
pub mod body;
pub mod chain;
pub mod driver;
pub mod fake;
pub mod memo;

pub use abi::{Abi, HostError, Status};
pub use body::Body;
pub use fake::FakeHost;

use crate::error::ApiError;

/// Which proxy we run in. Detected by the driver on the first request (see `docs/portability.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Envoy,
    /// Kong Gateway's ngx_wasm_module.
    Kong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// What a policy may ask of the proxy while it handles one request.
pub trait Host {
    fn kind(&self) -> HostKind;
    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    fn request_header(&self, name: &str) -> Option<String>;
    /// Every request header in one host call (names as the host gives them: compare them without
    /// case). Cheaper than one [`Host::request_header`] call per name when a policy asks for several.
    fn request_headers(&self) -> Vec<(String, String)>;
    /// Sets (or with `None` removes) a request header. Pseudo-headers such as `:path` are allowed.
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    fn response_header(&self, name: &str) -> Option<String>;
    fn set_response_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    /// Reads a host property. Envoy returns typed binary values, Kong strings: see [`property_string`].
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Sets a host property. A refusal is an error, never a trap (see `crate::wasm`).
    fn set_property(&mut self, path: &[&str], value: &str) -> Result<(), HostError>;
    /// Points the request at an upstream, however this host does it: on Envoy the routing header
    /// (read by the route's `cluster_header`), `:authority` and `:path`; on Kong the properties
    /// `kong.service.target` and `ngx.upstream_uri`. On an error the request must not be forwarded.
    fn route_to(&mut self, route: &Route<'_>) -> Result<(), HostError>;
    fn log(&self, level: LogLevel, message: &str);
    fn counter_add(&mut self, name: &str, delta: u64);
    fn histogram_record(&mut self, name: &str, value: u64);
    /// Sets a gauge (a value that goes up and down, e.g. a queue's depth).
    fn gauge_set(&mut self, name: &str, value: u64);
    /// Reads a shared-data value and its CAS token. Shared data is visible to every worker's VM.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes a shared-data value if the CAS token still matches; `None` writes only if the key does
    /// not exist yet, on every host. Pass the token you read, in a retry loop ([`update_shared`]).
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDataError {
    /// Another worker wrote in between: read again and retry.
    CasMismatch,
    Failed,
}

/// Attempts of one shared-data read-modify-write before [`update_shared`] gives up.
pub const MAX_CAS_ATTEMPTS: usize = 32;

/// Why [`update_shared`] did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError {
    /// Still conflicting after [`MAX_CAS_ATTEMPTS`] attempts.
    Contended,
    /// The host refused the write.
    Failed,
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpdateError::Contended => "too many concurrent writes",
            UpdateError::Failed => "shared data refused the write",
        })
    }
}

/// The one compare-and-swap retry loop. `once` makes one read-modify-write try: `Ok(Some(v))` when it
/// stuck (or had nothing to write), `Ok(None)` when another writer came in between (read again and
/// retry), `Err` when it failed for good. After [`MAX_CAS_ATTEMPTS`] conflicts it gives `contended`.
/// [`update_shared`] runs it over the host's shared data; `ratelimit::store` over any counter store.
pub fn cas_retry<T, E>(contended: E, mut once: impl FnMut() -> Result<Option<T>, E>) -> Result<T, E> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        if let Some(done) = once()? {
            return Ok(done);
        }
    }
    Err(contended)
}

/// Compare-and-swap over shared data: reads `key`, lets `f` compute the new value from the current
/// one (`None` in, `None` out: leave it), writes with the token read, and retries when another worker
/// wrote in between. `f` may run several times. Returns `f`'s answer of the run that stuck.
pub fn update_shared<T>(
    host: &mut dyn Host,
    key: &str,
    mut f: impl FnMut(Option<&[u8]>) -> (T, Option<Vec<u8>>),
) -> Result<T, UpdateError> {
    cas_retry(UpdateError::Contended, || {
        let (raw, cas) = host.shared_get(key);
        let (out, next) = f(raw.as_deref());
        let Some(next) = next else {
            return Ok(Some(out));
        };
        match host.shared_set(key, &next, cas) {
            Ok(()) => Ok(Some(out)),
            Err(SharedDataError::CasMismatch) => Ok(None),
            Err(SharedDataError::Failed) => Err(UpdateError::Failed),
        }
    })
}

/// Decodes a property as text: Kong gives strings, Envoy gives strings for string properties and
/// 8-byte little-endian integers for integer ones.
pub fn property_string(raw: &[u8], integer: bool) -> Option<String> {
    if integer && raw.len() == 8 {
        let mut b = [0u8; 8];
        b.copy_from_slice(raw);
        return Some(u64::from_le_bytes(b).to_string());
    }
    String::from_utf8(raw.to_vec()).ok()
}

/// Where [`Host::route_to`] sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// Envoy: the cluster name written into `header`.
    pub cluster: &'a str,
    /// `host:port`: the `:authority` on Envoy (`:443` dropped), `kong.service.target` on Kong.
    pub host: &'a str,
    /// Path and query of the upstream request.
    pub path: &'a str,
    /// Envoy: the request header the route reads with `cluster_header`.
    pub header: &'a str,
}

/// Where a callout goes: Envoy dispatches to a cluster name, Kong to `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub cluster: String,
    pub host: String,
}

/// The `:authority` to send to `host:port`: the default HTTPS port is dropped (`api.openai.com:443` →
/// `api.openai.com`), as providers expect, any other port kept.
pub fn authority(host_port: &str) -> &str {
    host_port.strip_suffix(":443").unwrap_or(host_port)
}

impl Upstream {
    pub fn dispatch_target(&self, kind: HostKind) -> &str {
        match kind {
            HostKind::Envoy => &self.cluster,
            HostKind::Kong => &self.host,
        }
    }
}

/// An HTTP call to an external service (NER, classifier, a model) made while the request waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub upstream: Upstream,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// The answer to an [`HttpCall`]. `status` is `None` when the call failed (timeout, connection
/// refused, or the host could not dispatch it): the policy applies its `failure_mode`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallResponse {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CallResponse {
    /// A header of the answer, by name in any case (Kong keeps the upstream's casing).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response the filter sends itself instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<ApiError> for LocalReply {
    fn from(err: ApiError) -> Self {
        LocalReply {
            status: err.status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: err.body(),
        }
    }
}

/// The policy's answer in a request phase (headers, body, or after its callouts).
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Go on: forward the request (with the body as the policy left it in [`Body`]).
    Continue,
    /// From the headers (or after calls made from the headers): hold the request until the whole body
    /// has arrived, then call `on_request_body`. On a request without a body, `on_request_body` runs at
    /// once with an empty one.
    ReadBody,
    Reply(LocalReply),
    /// Hold the request, make these calls in parallel, then hand their answers, in this order, to
    /// `on_call_responses`. A request body is held until then, also when the calls start in headers.
    Call(Vec<HttpCall>),
}

impl Step {
    /// One call.
    pub fn call(call: HttpCall) -> Step {
        Step::Call(vec![call])
    }
}

/// How the policy wants the response body delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// Headers and body go through untouched; no body callbacks.
    PassThrough,
    /// Each chunk goes to `on_response_chunk` as it arrives (SSE, or observing usage).
    Stream,
    /// The whole body goes to `on_response_whole` once (translating a JSON document).
    Whole,
}

/// The result of rewriting a whole response body.
#[derive(Debug, PartialEq, Eq)]
pub struct WholeResponse {
    pub body: Vec<u8>,
    /// A new status code. Applied on Envoy; Kong has sent the headers by then (see README).
    pub status: Option<u16>,
}

impl WholeResponse {
    pub fn unchanged(body: &[u8]) -> WholeResponse {
        WholeResponse {
            body: body.to_vec(),
            status: None,
        }
    }
}

/// The 413 every policy answers for a body over its limit.
/// The 415 for a request body in a content encoding (`gzip`, …) the gateway does not decode: read as it
/// is it would not be the JSON the provider decodes, so a policy could check one prompt and the model
/// read another.
pub fn encoded_body(encoding: &str) -> ApiError {
    let shown: String = encoding
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    ApiError::new(
        415,
        "invalid_request_error",
        "unsupported_encoding",
        format!(
            "request bodies with content-encoding `{shown}` are not read by the gateway; send the body unencoded"
        ),
    )
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        413,
        "invalid_request_error",
        "request_too_large",
        format!("request body is larger than the limit of {limit} bytes"),
    )
}

/// One request's policy. The driver creates one per request and calls these in order.
pub trait Policy {
    /// Largest request body the policy will buffer; past it the driver replies 413.
    fn request_body_limit(&self) -> usize;
    fn on_request_headers(&mut self, host: &mut dyn Host, has_body: bool) -> Step;
    /// The whole request body. Edit it through [`Body`]; the driver writes it back once if it changed.
    fn on_request_body(&mut self, _host: &mut dyn Host, _body: &mut Body) -> Step {
        Step::Continue
    }
    /// Called when the body passes [`Policy::request_body_limit`] (it is never buffered further): the
    /// reply to send, or `None` to let the request through unread (shadow mode).
    fn on_request_too_large(&mut self, _host: &mut dyn Host, limit: usize) -> Option<LocalReply> {
        Some(too_large(limit).into())
    }
    /// Called instead of reading the body when it has a `content-encoding` (other than `identity`)
    /// the gateway does not decode: the reply to send (by default 415 `unsupported_encoding`), or
    /// `None` to let the request through unread (shadow mode).
    fn on_request_encoded(&mut self, _host: &mut dyn Host, encoding: &str) -> Option<LocalReply> {
        Some(encoded_body(encoding).into())
    }
    /// The answers to the calls of a [`Step::Call`], in the order asked. `body` is the request body
    /// when the calls were made from the body phase, `None` from the headers phase.
    fn on_call_responses(
        &mut self,
        _host: &mut dyn Host,
        _responses: Vec<CallResponse>,
        _body: Option<&mut Body>,
    ) -> Step {
        Step::Continue
    }
    fn on_response_headers(&mut self, _host: &mut dyn Host) -> ResponseMode {
        ResponseMode::PassThrough
    }
    /// Returns replacement bytes for this chunk, or `None` to pass it unchanged.
    fn on_response_chunk(&mut self, _host: &mut dyn Host, _chunk: &[u8], _end: bool) -> Option<Vec<u8>> {
        None
    }
    fn on_response_whole(&mut self, _host: &mut dyn Host, body: &[u8]) -> WholeResponse {
        WholeResponse::unchanged(body)
    }
    /// The response was to be read whole ([`ResponseMode::Whole`]) but outgrew what the driver holds
    /// (`limit` bytes): the client gets a 502 `response_too_large` instead, and
    /// [`Policy::on_response_whole`] is not called. For the policy's accounting.
    fn on_response_too_large(&mut self, _host: &mut dyn Host, _limit: usize) {}
    /// Whether the response to this policy's own local reply goes through its response callbacks (the
    /// chain of the bundle shows it to the policies before the one that replied, as separate filters
    /// would see it). Ordinary policies never see their own replies.
    fn sees_own_replies(&self) -> bool {
        false
    }
    /// The request is over (also after a local reply or a client abort): record metrics and logs, and
    /// queue any work that must happen after the response (see [`Background`]).
    fn on_done(&mut self, _host: &mut dyn Host) {}
}

/// The policy of a filter whose configuration was refused on a host where refusing would be worse (Kong
/// stops the worker for good, and every later request on it hangs): every request gets a 500 naming the
/// problem, so the failure is visible and closed, never silent or open.
pub struct Misconfigured {
    pub filter: &'static str,
    pub problem: String,
}

impl Policy for Misconfigured {
    fn request_body_limit(&self) -> usize {
        0
    }
    fn on_request_headers(&mut self, host: &mut dyn Host, _has_body: bool) -> Step {
        host.counter_add(
            &format!("{}_misconfigured_total", self.filter.replace('-', "_")),
            1,
        );
        let err = ApiError::new(
            500,
            "server_error",
            "filter_misconfigured",
            format!("{}: configuration refused: {}", self.filter, self.problem),
        );
        Step::Reply(err.into())
    }
}

/// Work a filter does outside any request, from the root context's timer: draining queues that
/// requests filled in `on_done`, shipping batches. The only portable place to call out once a request
/// has ended (Kong traps on a dispatch from the log phase).
pub trait Background {
    /// How often `on_tick` runs.
    fn period_ms(&self) -> u64;
    /// Calls to make now, each with a tag of the filter's choosing that comes back with its answer.
    fn on_tick(&mut self, host: &mut dyn Host) -> Vec<(u64, HttpCall)>;
    fn on_call_response(&mut self, host: &mut dyn Host, tag: u64, response: CallResponse);
}
