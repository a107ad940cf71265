//! The seam between a policy and the proxy it runs in.
//!
//! A policy sees the proxy only through [`Host`] (a dozen methods, our own, not the SDK's trait) and
//! answers each stage of a request with plain data ([`HeadersOutcome`], [`BodyOutcome`],
//! [`ResponseMode`]). The driver in `wasm` turns that data into host calls and hides how Envoy and Kong
//! differ (pausing, buffering, `content-length`); [`FakeHost`] lets the same policy run in native tests.

use crate::error::ApiError;
use std::collections::HashMap;

/// Which proxy we run in. Detected once per VM by the driver.
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
    /// Sets (or with `None` removes) a request header. Pseudo-headers such as `:path` are allowed.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    fn response_header(&self, name: &str) -> Option<String>;
    fn set_response_header(&mut self, name: &str, value: Option<&str>);
    /// Sets a host property (Kong: `kong.service.target`). Returns false where the host refuses.
    fn set_property(&mut self, path: &[&str], value: &str) -> bool;
    /// Reads a host property. Envoy returns typed binary values, Kong strings: see [`property_string`].
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn log(&self, level: LogLevel, message: &str);
    fn counter_add(&mut self, name: &str, delta: u64);
    fn histogram_record(&mut self, name: &str, value: u64);
    /// Reads a shared-data value and its CAS token. Shared data is visible to every worker's VM.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes a shared-data value if the CAS token still matches; `None` writes only if the key does
    /// not exist yet, on every host. Pass the token you read, in a retry loop.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDataError {
    /// Another worker wrote in between: read again and retry.
    CasMismatch,
    Failed,
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

/// An HTTP call to an external service (NER, classifier) made while the request waits.
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

/// The policy's answer to the request headers.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadersOutcome {
    /// Not ours: let the request through untouched.
    Continue,
    /// Hold the request until the whole body has arrived, then call `on_request_body`.
    ReadBody,
    Reply(LocalReply),
    /// Hold the request, make this call, then hand its answer to `on_call_response`.
    Call(HttpCall),
}

/// The policy's answer to the whole request body.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyOutcome {
    Continue,
    /// Forward this body instead of the client's.
    Replace(Vec<u8>),
    Reply(LocalReply),
    /// Hold the request, make this call, then hand its answer to `on_call_response`.
    Call(HttpCall),
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

/// One request's policy. The driver creates one per request and calls these in order.
pub trait Policy {
    /// Largest request body the policy will buffer; past it the driver replies 413.
    fn request_body_limit(&self) -> usize;
    fn on_request_headers(&mut self, host: &mut dyn Host, has_body: bool) -> HeadersOutcome;
    fn on_request_body(&mut self, _host: &mut dyn Host, _body: &[u8]) -> BodyOutcome {
        BodyOutcome::Continue
    }
    /// Called when the body passes [`Policy::request_body_limit`]; the reply is sent as is.
    fn on_request_too_large(&mut self, _host: &mut dyn Host, limit: usize) -> LocalReply {
        ApiError::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
        .into()
    }
    /// The answer to a call asked for by `Call`. After the body phase, `Replace` swaps the body the
    /// driver read; after the headers phase there is no body to replace.
    fn on_call_response(&mut self, _host: &mut dyn Host, _response: CallResponse) -> BodyOutcome {
        BodyOutcome::Continue
    }
    fn on_response_headers(&mut self, _host: &mut dyn Host) -> ResponseMode {
        ResponseMode::PassThrough
    }
    /// Returns replacement bytes for this chunk, or `None` to pass it unchanged.
    fn on_response_chunk(&mut self, _host: &mut dyn Host, _chunk: &[u8], _end: bool) -> Option<Vec<u8>> {
        None
    }
    fn on_response_whole(&mut self, _host: &mut dyn Host, body: &[u8]) -> WholeResponse {
        WholeResponse {
            body: body.to_vec(),
            status: None,
        }
    }
    /// The request is over (also after a local reply or a client abort): record metrics and logs.
    fn on_done(&mut self, _host: &mut dyn Host) {}
}

/// A host for native tests: headers in maps, logs and metrics recorded.
#[derive(Debug)]
pub struct FakeHost {
    pub kind: HostKind,
    pub now_ms: u64,
    pub request_headers: HashMap<String, String>,
    pub response_headers: HashMap<String, String>,
    pub properties: HashMap<String, String>,
    pub logs: std::cell::RefCell<Vec<(LogLevel, String)>>,
    pub counters: HashMap<String, u64>,
    pub histograms: HashMap<String, Vec<u64>>,
    /// Shared data: value and CAS token.
    pub shared: HashMap<String, (Vec<u8>, u32)>,
}

impl FakeHost {
    pub fn new(kind: HostKind) -> Self {
        FakeHost {
            kind,
            now_ms: 1_700_000_000_000,
            request_headers: HashMap::new(),
            response_headers: HashMap::new(),
            properties: HashMap::new(),
            logs: Default::default(),
            counters: HashMap::new(),
            histograms: HashMap::new(),
            shared: HashMap::new(),
        }
    }

    pub fn with_request_headers(mut self, headers: &[(&str, &str)]) -> Self {
        for (k, v) in headers {
            self.request_headers
                .insert(k.to_ascii_lowercase(), (*v).to_string());
        }
        self
    }
}

fn set(map: &mut HashMap<String, String>, name: &str, value: Option<&str>) {
    match value {
        Some(v) => map.insert(name.to_ascii_lowercase(), v.to_string()),
        None => map.remove(&name.to_ascii_lowercase()),
    };
}

impl Host for FakeHost {
    fn kind(&self) -> HostKind {
        self.kind
    }
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
    fn request_header(&self, name: &str) -> Option<String> {
        self.request_headers.get(&name.to_ascii_lowercase()).cloned()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        set(&mut self.request_headers, name, value)
    }
    fn response_header(&self, name: &str) -> Option<String> {
        self.response_headers.get(&name.to_ascii_lowercase()).cloned()
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        set(&mut self.response_headers, name, value)
    }
    fn set_property(&mut self, path: &[&str], value: &str) -> bool {
        self.properties.insert(path.join("."), value.to_string());
        true
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties
            .get(&path.join("."))
            .map(|v| v.clone().into_bytes())
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        // Behaves like Kong, the stricter host: without a token, only a new key may be written.
        let current = self.shared.get(key).map(|(_, c)| *c);
        match (current, cas) {
            (Some(c), Some(want)) if c != want => return Err(SharedDataError::CasMismatch),
            (Some(_), None) => return Err(SharedDataError::CasMismatch),
            _ => {}
        }
        self.shared
            .insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn counter_add(&mut self, name: &str, delta: u64) {
        *self.counters.entry(name.to_string()).or_default() += delta;
    }
    fn histogram_record(&mut self, name: &str, value: u64) {
        self.histograms.entry(name.to_string()).or_default().push(value);
    }
}
