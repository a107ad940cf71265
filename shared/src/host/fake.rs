//! A native host for tests: [`FakeHost`] implements [`Abi`] with Envoy's or Kong's (ngx_wasm_module's)
//! observed behaviour, and [`Runtime`] plays a request through a chain of real [`Driver`]s the way each
//! host calls them, so the driver, the host adapter and the policies run in `cargo test`.
//!
//! What the Kong mode reproduces (each seen on ngx_wasm_module at Kong 3.9's pinned commit, recorded in
//! `docs/portability.md`): `ngx.*` properties refused outside a request; the whole request body in one
//! call, with a later filter of a chain told the length the body had before an earlier filter changed
//! it; `end_of_stream` always false in the headers callbacks; a response `Pause` ignored; the response
//! `content-length` sent before the body (so a longer rewritten body is truncated); an emptied last chunk
//! dropped with its end marker (the response never ends); refused `set_property` writes; a failed callout
//! answered with no headers and no body, and `:dispatch_status` on every callout answer; `\n` appended to
//! local replies; a shared-data write without a CAS token refused on an existing key; response callbacks
//! in request order; a property with no namespace refused (a filter's own per-request properties are
//! `wasmx.<name>` there: modelled from ngx_wasm_module's docs, not seen on a real Kong). Envoy mode: body chunks with a Pause buffering them, a whole body handed to the next
//! filter once a filter stops buffering, headers held while a filter pauses the response, response
//! callbacks in reverse order, and a shared-data write without a token overwriting.

use super::abi::{Abi, Buffer, Map, Status};
use super::driver::{Action, Driver};
use super::{CallResponse, HostKind, LocalReply, LogLevel, Policy};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

/// A callout the filter made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    pub token: u32,
    /// Cluster (Envoy) or `host:port` (Kong).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl Dispatched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A host for native tests: headers in maps, bodies in buffers, logs and metrics recorded.
#[derive(Debug)]
pub struct FakeHost {
    /// The host this one behaves like.
    pub kind: HostKind,
    /// What the driver detected (`None` until the first request).
    pub detected: Option<HostKind>,
    /// Name of the filter being called (log lines, metric names).
    pub name: String,
    pub now_ms: u64,
    pub request_headers: HashMap<String, String>,
    pub response_headers: HashMap<String, String>,
    pub properties: HashMap<String, String>,
    /// Property paths (dotted) whose writes the host refuses.
    pub refused_properties: Vec<String>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    pub counters: HashMap<String, u64>,
    pub histograms: HashMap<String, Vec<u64>>,
    pub gauges: HashMap<String, u64>,
    /// Shared data: value and CAS token.
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    next_version: u32,
    /// The request body buffer as the current filter sees it.
    pub request_body: Vec<u8>,
    /// The response body chunk being processed.
    pub response_body: Vec<u8>,
    /// Kong: the last response chunk is being processed and was emptied by a write.
    last_chunk_emptied: bool,
    in_response_eos: bool,
    /// Inside a request (ngx_wasm_module refuses `ngx.*` properties outside one).
    pub in_request: bool,
    /// The answer of the callout whose response callback is running.
    pub call_response: Option<CallResponse>,
    pub dispatched: Vec<Dispatched>,
    /// Refuse every dispatch (the host cannot reach the target).
    pub refuse_dispatch: bool,
    /// Refuse every shared-data write (a store that fails).
    pub refuse_shared_writes: bool,
    /// Refuse shared-data writes to the keys starting with one of these (one key that fails).
    pub refuse_shared_keys: Vec<String>,
    next_token: u32,
    /// Local replies sent, as the client gets them.
    pub sent: Vec<LocalReply>,
    pub resumed: u32,
    pub tick_period_ms: Option<u32>,
    /// Host calls made, by ABI operation (what each would cost as a crossing in a real host), when
    /// `count_calls` is on (off by default: counting costs more than the fake call itself, and the
    /// profiles count the fake host's instructions).
    pub calls: RefCell<BTreeMap<String, u64>>,
    pub count_calls: bool,
}

impl FakeHost {
    pub fn new(kind: HostKind) -> Self {
        FakeHost {
            kind,
            detected: Some(kind),
            name: "test".into(),
            now_ms: 1_700_000_000_000,
            request_headers: HashMap::new(),
            response_headers: HashMap::new(),
            properties: HashMap::new(),
            refused_properties: Vec::new(),
            logs: Default::default(),
            counters: HashMap::new(),
            histograms: HashMap::new(),
            gauges: HashMap::new(),
            shared: HashMap::new(),
            next_version: 0,
            request_body: Vec::new(),
            response_body: Vec::new(),
            last_chunk_emptied: false,
            in_response_eos: false,
            in_request: true,
            call_response: None,
            dispatched: Vec::new(),
            refuse_dispatch: false,
            refuse_shared_writes: false,
            refuse_shared_keys: Vec::new(),
            next_token: 0,
            sent: Vec::new(),
            resumed: 0,
            tick_period_ms: None,
            calls: RefCell::default(),
            count_calls: false,
        }
    }

    fn count(&self, op: &str) {
        if !self.count_calls {
            return;
        }
        *self.calls.borrow_mut().entry(op.to_string()).or_default() += 1;
    }

    /// Header calls are counted by name too (`get_header :path`): which reads repeat.
    fn count_header(&self, op: &str, map: Map, name: &str) {
        if !self.count_calls {
            return;
        }
        let map = match map {
            Map::RequestHeaders => "request",
            Map::ResponseHeaders => "response",
            Map::CallResponseHeaders => "call",
        };
        self.count(&format!("{op} {map} {}", name.to_ascii_lowercase()));
    }

    /// A host that has not detected its kind yet (as at VM start).
    pub fn undetected(kind: HostKind) -> Self {
        FakeHost {
            detected: None,
            ..FakeHost::new(kind)
        }
    }

    pub fn with_request_headers(mut self, headers: &[(&str, &str)]) -> Self {
        for (k, v) in headers {
            self.request_headers
                .insert(k.to_ascii_lowercase(), (*v).to_string());
        }
        self
    }

    fn headers_of(&self, map: Map) -> Option<&HashMap<String, String>> {
        match map {
            Map::RequestHeaders => Some(&self.request_headers),
            Map::ResponseHeaders => Some(&self.response_headers),
            Map::CallResponseHeaders => None,
        }
    }

    fn headers_of_mut(&mut self, map: Map) -> Option<&mut HashMap<String, String>> {
        match map {
            Map::RequestHeaders => Some(&mut self.request_headers),
            Map::ResponseHeaders => Some(&mut self.response_headers),
            Map::CallResponseHeaders => None,
        }
    }

    /// Whether a log line at `level` or above contains `text`.
    pub fn logged(&self, level: LogLevel, text: &str) -> bool {
        self.logs
            .borrow()
            .iter()
            .any(|(l, m)| *l >= level && m.contains(text))
    }
}

impl Abi for FakeHost {
    fn filter_name(&self) -> &str {
        &self.name
    }
    fn host_kind(&self) -> Option<HostKind> {
        self.detected
    }
    fn set_host_kind(&mut self, kind: HostKind) {
        self.detected = Some(kind);
    }
    fn now_ns(&self) -> u64 {
        self.count("now");
        self.now_ms.saturating_mul(1_000_000)
    }
    fn header(&self, map: Map, name: &str) -> Result<Option<String>, Status> {
        self.count_header("get_header", map, name);
        match map {
            Map::CallResponseHeaders => Ok(self.call_response.as_ref().and_then(|r| {
                r.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            })),
            _ => Ok(self
                .headers_of(map)
                .and_then(|h| h.get(&name.to_ascii_lowercase()).cloned())),
        }
    }
    fn headers(&self, map: Map) -> Result<Vec<(String, String)>, Status> {
        self.count("get_headers");
        match map {
            Map::CallResponseHeaders => Ok(self
                .call_response
                .as_ref()
                .map(|r| r.headers.clone())
                .unwrap_or_default()),
            _ => Ok(self
                .headers_of(map)
                .map(|h| h.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()),
        }
    }
    fn set_header(&mut self, map: Map, name: &str, value: &str) -> Result<(), Status> {
        self.count_header("set_header", map, name);
        let name = name.to_ascii_lowercase();
        if self.kind == HostKind::Kong
            && map == Map::RequestHeaders
            && (name == ":authority" || (name == ":path" && value.contains('?')))
        {
            return Err(Status::BadArgument);
        }
        match self.headers_of_mut(map) {
            Some(h) => {
                h.insert(name, value.to_string());
                Ok(())
            }
            None => Err(Status::BadArgument),
        }
    }
    fn remove_header(&mut self, map: Map, name: &str) -> Result<(), Status> {
        self.count_header("remove_header", map, name);
        match self.headers_of_mut(map) {
            Some(h) => {
                h.remove(&name.to_ascii_lowercase());
                Ok(())
            }
            None => Err(Status::BadArgument),
        }
    }
    fn buffer(&self, buffer: Buffer, start: usize, max: usize) -> Result<Vec<u8>, Status> {
        self.count("get_buffer");
        let all: &[u8] = match buffer {
            Buffer::RequestBody => &self.request_body,
            Buffer::ResponseBody => &self.response_body,
            Buffer::CallResponseBody => self.call_response.as_ref().map_or(&[][..], |r| &r.body),
        };
        let end = start.saturating_add(max).min(all.len());
        Ok(all.get(start.min(end)..end).unwrap_or_default().to_vec())
    }
    fn set_buffer(&mut self, buffer: Buffer, start: usize, size: usize, data: &[u8]) -> Result<(), Status> {
        self.count("set_buffer");
        let kong = self.kind == HostKind::Kong;
        let target = match buffer {
            Buffer::RequestBody => &mut self.request_body,
            Buffer::ResponseBody => &mut self.response_body,
            Buffer::CallResponseBody => return Err(Status::BadArgument),
        };
        if start > target.len() {
            return Err(Status::BadArgument);
        }
        let end = start.saturating_add(size).min(target.len());
        // Kong cuts the new bytes to the size argument.
        let data = if kong {
            data.get(..size).unwrap_or(data)
        } else {
            data
        };
        target.splice(start..end, data.iter().copied());
        if kong && buffer == Buffer::ResponseBody && self.in_response_eos && data.is_empty() {
            self.last_chunk_emptied = true;
        }
        Ok(())
    }
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
        self.count("send_response");
        let mut body = body.to_vec();
        if self.kind == HostKind::Kong && !body.is_empty() {
            body.push(b'\n');
        }
        self.sent.push(LocalReply {
            status: u16::try_from(status).map_err(|_| Status::BadArgument)?,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
        });
        Ok(())
    }
    fn dispatch(
        &mut self,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, Status> {
        self.count("dispatch");
        if self.refuse_dispatch {
            return Err(Status::BadArgument);
        }
        self.next_token += 1;
        self.dispatched.push(Dispatched {
            token: self.next_token,
            target: target.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        Ok(self.next_token)
    }
    fn resume_request(&mut self) -> Result<(), Status> {
        self.count("resume");
        self.resumed += 1;
        Ok(())
    }
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        self.count("get_property");
        let dotted = path.join(".");
        if self.kind == HostKind::Kong {
            if !self.in_request && path.len() > 1 {
                // "cannot get scoped properties outside of a request"
                return Err(Status::InternalFailure);
            }
            if dotted == "ngx.nginx_version" {
                return Ok(Some(b"1.25.3".to_vec()));
            }
        }
        Ok(self.properties.get(&dotted).map(|v| v.clone().into_bytes()))
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> Result<(), Status> {
        self.count("set_property");
        let dotted = path.join(".");
        // ngx_wasm_module has no free-form properties: a filter's own per-request ones live under its
        // host namespace (`wasmx.<name>`), next to `ngx.*` and `kong.*`.
        let unscoped = self.kind == HostKind::Kong && path.len() < 2;
        if self.refused_properties.contains(&dotted)
            || unscoped
            || (self.kind == HostKind::Kong && !self.in_request)
        {
            return Err(Status::InternalFailure);
        }
        self.properties
            .insert(dotted, String::from_utf8_lossy(value).into_owned());
        Ok(())
    }
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        self.count("get_shared_data");
        Ok(match self.shared.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        self.count("set_shared_data");
        if self.refuse_shared_writes
            || self
                .refuse_shared_keys
                .iter()
                .any(|k| key.starts_with(k.as_str()))
        {
            return Err(Status::InternalFailure);
        }
        let current = self.shared.get(key).map(|(_, c)| *c);
        match (self.kind, current, cas) {
            (_, Some(c), Some(want)) if c != want => return Err(Status::CasMismatch),
            // Kong refuses a write without a token on an existing key; Envoy overwrites.
            (HostKind::Kong, Some(_), None) => return Err(Status::CasMismatch),
            _ => {}
        }
        self.next_version += 1;
        self.shared
            .insert(key.to_string(), (value.to_vec(), self.next_version));
        Ok(())
    }
    fn counter_add(&mut self, name: &str, delta: u64) -> Result<(), Status> {
        self.count("counter_add");
        *self.counters.entry(name.to_string()).or_default() += delta;
        Ok(())
    }
    fn histogram_record(&mut self, name: &str, value: u64) -> Result<(), Status> {
        self.count("histogram_record");
        self.histograms.entry(name.to_string()).or_default().push(value);
        Ok(())
    }
    fn gauge_set(&mut self, name: &str, value: u64) -> Result<(), Status> {
        self.count("gauge_set");
        self.gauges.insert(name.to_string(), value);
        Ok(())
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.count("log");
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn set_tick_period_ms(&mut self, ms: u32) -> Result<(), Status> {
        self.tick_period_ms = Some(ms);
        Ok(())
    }
}

/// One filter of a [`Runtime`] chain: a driver with its name.
pub trait FakeFilter {
    fn name(&self) -> &str;
    fn request_headers(&mut self, host: &mut FakeHost, end_of_stream: bool) -> Action;
    fn request_body(&mut self, host: &mut FakeHost, body_size: usize, end_of_stream: bool) -> Action;
    fn call_response(&mut self, host: &mut FakeHost, token: u32);
    fn response_headers(&mut self, host: &mut FakeHost, end_of_stream: bool) -> Action;
    fn response_body(&mut self, host: &mut FakeHost, body_size: usize, end_of_stream: bool) -> Action;
    fn log(&mut self, host: &mut FakeHost);
}

/// A policy's driver under a name, for a [`Runtime`].
pub struct Named<P: Policy> {
    pub name: String,
    pub driver: Driver<P>,
}

impl<P: Policy> Named<P> {
    pub fn new(name: &str, policy: P) -> Box<Named<P>> {
        Box::new(Named {
            name: name.to_string(),
            driver: Driver::new(policy),
        })
    }
}

impl<P: Policy> FakeFilter for Named<P> {
    fn name(&self) -> &str {
        &self.name
    }
    fn request_headers(&mut self, host: &mut FakeHost, end_of_stream: bool) -> Action {
        self.driver.on_request_headers(host, end_of_stream)
    }
    fn request_body(&mut self, host: &mut FakeHost, body_size: usize, end_of_stream: bool) -> Action {
        self.driver.on_request_body(host, body_size, end_of_stream)
    }
    fn call_response(&mut self, host: &mut FakeHost, token: u32) {
        self.driver.on_call_response(host, token)
    }
    fn response_headers(&mut self, host: &mut FakeHost, end_of_stream: bool) -> Action {
        self.driver.on_response_headers(host, end_of_stream)
    }
    fn response_body(&mut self, host: &mut FakeHost, body_size: usize, end_of_stream: bool) -> Action {
        self.driver.on_response_body(host, body_size, end_of_stream)
    }
    fn log(&mut self, host: &mut FakeHost) {
        self.driver.on_log(host)
    }
}

/// A request as the client sends it.
#[derive(Debug, Clone, Default)]
pub struct ClientRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Envoy: the body arrives in chunks of these sizes (the rest in one last chunk).
    pub chunks: Vec<usize>,
}

impl ClientRequest {
    pub fn post(path: &str, body: &[u8]) -> ClientRequest {
        ClientRequest {
            method: "POST".into(),
            path: path.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_vec(),
            chunks: Vec::new(),
        }
    }

    pub fn get(path: &str) -> ClientRequest {
        ClientRequest {
            method: "GET".into(),
            path: path.into(),
            ..ClientRequest::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> ClientRequest {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }
}

/// What the upstream answers.
#[derive(Debug, Clone, Default)]
pub struct UpstreamResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body chunks as the upstream sends them; a chunked upstream ends with an empty chunk on Kong.
    pub chunks: Vec<Vec<u8>>,
}

impl UpstreamResponse {
    pub fn json(status: u16, body: &str) -> UpstreamResponse {
        UpstreamResponse {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), body.len().to_string()),
            ],
            chunks: vec![body.as_bytes().to_vec()],
        }
    }

    pub fn sse(chunks: &[&str]) -> UpstreamResponse {
        UpstreamResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: chunks.iter().map(|c| c.as_bytes().to_vec()).collect(),
        }
    }
}

/// What reached the upstream.
#[derive(Debug, Clone, Default)]
pub struct UpstreamRequest {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// Properties set on the way (Kong routes by `kong.service.target`).
    pub properties: BTreeMap<String, String>,
}

/// What the client got, and how the exchange went.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// `None`: the request hung (a host would wait for ever, or until a stream idle timeout).
    pub status: Option<u16>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The response ended (a chunked response that lost its end marker never does).
    pub complete: bool,
    pub upstream: Option<UpstreamRequest>,
    /// Why it hung, when it did.
    pub hung: Option<String>,
    /// Envoy: a body chunk was let through while a callout from the headers was still in flight.
    pub body_passed_during_call: bool,
}

impl Exchange {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Answers a callout; `None` is a failed call.
pub type Answer = dyn FnMut(&Dispatched) -> Option<CallResponse>;

/// Plays requests through a chain of drivers the way one host calls them.
pub struct Runtime {
    pub host: FakeHost,
    filters: Vec<Box<dyn FakeFilter>>,
    /// Answers callouts; `None` is a failed call.
    pub callouts: Box<Answer>,
}

impl Runtime {
    /// A runtime for `kind`, with a host that detects its kind on the first request.
    pub fn new(kind: HostKind, filters: Vec<Box<dyn FakeFilter>>) -> Runtime {
        Runtime {
            host: FakeHost::undetected(kind),
            filters,
            callouts: Box::new(|_| None),
        }
    }

    fn kong(&self) -> bool {
        self.host.kind == HostKind::Kong
    }

    /// Answers every callout the filter at `i` has in flight, in order, until it stops making new ones.
    /// Returns whether the filter resumed the request.
    fn settle_calls(&mut self, i: usize, seen: &mut usize) -> bool {
        let resumed_before = self.host.resumed;
        while *seen < self.host.dispatched.len() {
            let Some(call) = self.host.dispatched.get(*seen).cloned() else {
                break;
            };
            *seen += 1;
            let answer = (self.callouts)(&call);
            self.host.call_response = Some(match answer {
                Some(mut r) => {
                    if self.kong() {
                        r.headers.push((":dispatch_status".into(), "ok".into()));
                    }
                    if r.status.is_some() && !r.headers.iter().any(|(k, _)| k == ":status") {
                        r.headers
                            .insert(0, (":status".into(), r.status.unwrap_or(200).to_string()));
                    }
                    r
                }
                None if self.kong() => CallResponse {
                    status: None,
                    headers: vec![],
                    body: vec![],
                },
                // Envoy answers a failed call with its own 503.
                None => CallResponse {
                    status: Some(503),
                    headers: vec![(":status".into(), "503".into())],
                    body: b"upstream connect error or disconnect/reset before headers".to_vec(),
                },
            });
            if let Some(f) = self.filters.get_mut(i) {
                f.call_response(&mut self.host, call.token);
            }
            self.host.call_response = None;
        }
        self.host.resumed > resumed_before
    }

    fn name(&mut self, i: usize) {
        if let Some(f) = self.filters.get(i) {
            self.host.name = f.name().to_string();
        }
    }

    /// Sends `request` through the chain to `upstream` and back.
    pub fn run(
        &mut self,
        request: ClientRequest,
        upstream: impl FnOnce(&UpstreamRequest) -> UpstreamResponse,
    ) -> Exchange {
        let h = &mut self.host;
        h.in_request = true;
        h.request_headers.clear();
        h.response_headers.clear();
        h.sent.clear();
        h.request_body = request.body.clone();
        h.request_headers.insert(":method".into(), request.method.clone());
        h.request_headers.insert(":path".into(), request.path.clone());
        h.request_headers
            .insert(":authority".into(), "gateway.local".into());
        for (k, v) in &request.headers {
            h.request_headers.insert(k.to_ascii_lowercase(), v.clone());
        }
        if !request.body.is_empty() {
            h.request_headers
                .insert("content-length".into(), request.body.len().to_string());
        }
        let mut exchange = self.request_phase(&request);
        if exchange.hung.is_none() && exchange.status.is_none() && !self.kong() {
            // Envoy forwards the `content-length` the request still has: an upstream reads that many
            // bytes (a longer body is cut; a shorter one leaves it waiting). Kong recomputes it.
            let declared = self.host.request_headers.get("content-length");
            match declared.and_then(|v| v.trim().parse::<usize>().ok()) {
                Some(n) if n < self.host.request_body.len() => self.host.request_body.truncate(n),
                Some(n) if n > self.host.request_body.len() => {
                    exchange.hung = Some(format!(
                        "the upstream waits for {n} body bytes, {} sent",
                        self.host.request_body.len()
                    ));
                }
                _ => {}
            }
        }
        if exchange.hung.is_none() && exchange.status.is_none() {
            let up = UpstreamRequest {
                headers: self
                    .host
                    .request_headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                body: self.host.request_body.clone(),
                properties: self
                    .host
                    .properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
            let response = upstream(&up);
            exchange.upstream = Some(up);
            self.response_phase(response, None, &mut exchange);
        }
        for i in 0..self.filters.len() {
            self.name(i);
            if let Some(f) = self.filters.get_mut(i) {
                f.log(&mut self.host);
            }
        }
        self.host.in_request = false;
        exchange
    }

    /// The request callbacks of every filter; a local reply is answered here (status set).
    fn request_phase(&mut self, request: &ClientRequest) -> Exchange {
        let mut exchange = Exchange::default();
        let has_body = !request.body.is_empty();
        let original_len = request.body.len();
        // Envoy: the body chunks the next filter will see.
        let mut pending: Vec<Vec<u8>> = split(&request.body, &request.chunks);
        let mut seen = 0;
        for i in 0..self.filters.len() {
            self.name(i);
            let kong = self.kong();
            let Some(f) = self.filters.get_mut(i) else { break };
            // Kong never says end_of_stream in headers.
            let action = f.request_headers(&mut self.host, !has_body && !kong);
            let calling = self.host.dispatched.len() > seen;
            if kong {
                let resumed = self.settle_calls(i, &mut seen);
                if self.replied(i, &mut exchange) {
                    return exchange;
                }
                if action == Action::Pause && !resumed {
                    exchange.hung = Some(format!("{}: paused in request headers", self.host.name));
                    return exchange;
                }
                if has_body {
                    // The whole current body in one call, but the length it had before any filter.
                    let Some(f) = self.filters.get_mut(i) else { break };
                    let action = f.request_body(&mut self.host, original_len, true);
                    let resumed = self.settle_calls(i, &mut seen);
                    if self.replied(i, &mut exchange) {
                        return exchange;
                    }
                    if action == Action::Pause && !resumed {
                        exchange.hung = Some(format!("{}: paused in request body", self.host.name));
                        return exchange;
                    }
                }
                continue;
            }
            // Envoy. A call from the headers is answered after the body has arrived, to see that the
            // body waits for it.
            let mut paused = action == Action::Pause;
            if !(calling && has_body) {
                paused &= !self.settle_calls(i, &mut seen);
                if self.replied(i, &mut exchange) {
                    return exchange;
                }
            }
            // Body chunks to this filter: a Pause buffers them; a Continue passes what is buffered on
            // to the next filter as one chunk.
            let chunks = std::mem::take(&mut pending);
            let count = chunks.len();
            let mut buffered: Vec<u8> = Vec::new();
            for (n, chunk) in chunks.into_iter().enumerate() {
                let eos = n + 1 == count;
                buffered.extend_from_slice(&chunk);
                self.host.request_body = buffered.clone();
                let size = self.host.request_body.len();
                let Some(f) = self.filters.get_mut(i) else { break };
                let action = f.request_body(&mut self.host, size, eos);
                if calling && self.host.dispatched.len() > seen && action == Action::Continue {
                    exchange.body_passed_during_call = true;
                }
                if !(calling && has_body) {
                    paused = action == Action::Pause && !self.settle_calls(i, &mut seen);
                }
                if self.replied(i, &mut exchange) {
                    return exchange;
                }
                buffered = self.host.request_body.clone();
                let held_for_call = calling && has_body;
                if !(paused || held_for_call) {
                    pending.push(std::mem::take(&mut buffered));
                }
            }
            if calling && has_body {
                paused = !self.settle_calls(i, &mut seen);
                if self.replied(i, &mut exchange) {
                    return exchange;
                }
            }
            if paused {
                exchange.hung = Some(format!("{}: paused with the whole body", self.host.name));
                return exchange;
            }
            if !buffered.is_empty() {
                pending.push(buffered);
            }
        }
        if !self.kong() {
            self.host.request_body = pending.concat();
        }
        exchange
    }

    /// Whether filter `i` sent a local reply; if so the exchange is answered with it.
    fn replied(&mut self, i: usize, exchange: &mut Exchange) -> bool {
        match self.host.sent.first().cloned() {
            Some(reply) => {
                self.local_reply(reply, i, exchange);
                true
            }
            None => false,
        }
    }

    fn response_order(&self, upto: usize) -> Vec<usize> {
        let n = upto.min(self.filters.len());
        if self.kong() {
            (0..self.filters.len()).collect()
        } else {
            (0..n).rev().collect()
        }
    }

    /// A local reply from filter `from`: its response goes through the response callbacks (Envoy: the
    /// filters before it, in reverse; Kong: every filter, in order).
    fn local_reply(&mut self, reply: LocalReply, from: usize, exchange: &mut Exchange) {
        let mut headers: Vec<(String, String)> = reply.headers.clone();
        headers.push(("content-length".into(), reply.body.len().to_string()));
        let response = UpstreamResponse {
            status: reply.status,
            headers,
            chunks: vec![reply.body.clone()],
        };
        self.response_phase(response, Some(from + 1), exchange);
    }

    fn response_phase(&mut self, response: UpstreamResponse, upto: Option<usize>, exchange: &mut Exchange) {
        let kong = self.kong();
        let order = self.response_order(upto.unwrap_or(self.filters.len()));
        let h = &mut self.host;
        h.response_headers.clear();
        h.response_headers
            .insert(":status".into(), response.status.to_string());
        for (k, v) in &response.headers {
            h.response_headers.insert(k.to_ascii_lowercase(), v.clone());
        }
        let mut chunks = response.chunks.clone();
        if kong && !response.headers.iter().any(|(k, _)| k == "content-length") {
            // A chunked upstream: the end comes as a separate empty call.
            chunks.push(Vec::new());
        }
        let headers_only = chunks.iter().all(Vec::is_empty) && !kong;
        let mut held = false;
        for &i in &order {
            self.name(i);
            if let Some(f) = self.filters.get_mut(i) {
                let action = f.response_headers(&mut self.host, headers_only);
                // Kong ignores a Pause here.
                held |= action == Action::Pause && !kong;
            }
        }
        // Kong (and Envoy when no filter holds the headers): the headers leave now.
        let sent_length = (!held)
            .then(|| self.host.response_headers.get("content-length").cloned())
            .flatten();
        let mut body = Vec::new();
        let count = chunks.len();
        let mut stream: Vec<Vec<u8>> = Vec::new();
        if held {
            // Envoy buffers the whole body for the filter that paused; simplest faithful model: one
            // last chunk with everything.
            stream.push(chunks.concat());
        } else {
            stream = chunks;
        }
        let count = if held { 1 } else { count };
        self.host.last_chunk_emptied = false;
        for (n, chunk) in stream.into_iter().enumerate() {
            let eos = n + 1 == count;
            self.host.response_body = chunk;
            self.host.in_response_eos = eos;
            for &i in &order {
                self.name(i);
                let size = self.host.response_body.len();
                if let Some(f) = self.filters.get_mut(i) {
                    f.response_body(&mut self.host, size, eos);
                }
            }
            body.extend_from_slice(&self.host.response_body);
        }
        self.host.in_response_eos = false;
        let status = self
            .host
            .response_headers
            .get(":status")
            .and_then(|s| s.parse().ok());
        exchange.status = status;
        exchange.headers = self
            .host
            .response_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        exchange.complete = !(kong && self.host.last_chunk_emptied);
        if let Some(n) = sent_length.and_then(|v| v.parse::<usize>().ok()) {
            // The client reads as many bytes as the length it was told.
            body.truncate(n);
            exchange.headers.insert("content-length".into(), n.to_string());
        }
        exchange.body = body;
    }
}

/// Splits `body` into chunks of the given sizes, the rest in one last chunk.
fn split(body: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    if body.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut rest = body;
    for &n in sizes {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a.to_vec());
        rest = b;
    }
    if !rest.is_empty() {
        out.push(rest.to_vec());
    }
    out
}
