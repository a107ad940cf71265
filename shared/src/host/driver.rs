//! The generic driver: one request's [`Policy`] answers turned into host calls, for every host.
//!
//! It owns the host differences of `docs/portability.md`, so no policy has to know them:
//! - the host kind is detected on the first request (ngx_wasm_module refuses `ngx.*` properties
//!   outside a request, so a detection at configure time always says "Envoy");
//! - reading a request body: Envoy needs `Pause` in headers (with `allow_on_headers_stop_iteration`)
//!   and sends the body in chunks; Kong needs `Continue` and sends it whole in one call, reporting to a
//!   later filter of a chain the length the body had before an earlier filter changed it — so the
//!   whole current buffer is read, never `body_size` bytes;
//! - "has a body": Kong's `end_of_stream` is always false in headers, so it is read from the headers;
//! - `content-length`: removed from the request on Envoy when a policy changed the body (Kong
//!   recomputes it; an unchanged body keeps it, so the upstream is not sent a chunked body for
//!   nothing), and from the response on both hosts when the response body may change;
//! - whole responses: Envoy buffers them (headers paused, so the status can still change) up to
//!   [`MAX_HELD_RESPONSE`], past which the client gets a 502 `response_too_large` and the rest is
//!   dropped; Kong ignores a Pause there, so the driver keeps its own copy and empties each chunk but
//!   the last;
//! - request bodies with a `content-encoding` are never read: the policy says what to answer
//!   ([`super::Policy::on_request_encoded`], by default 415 `unsupported_encoding`);
//! - the last response chunk is never written empty (ngx_wasm_module then drops it and its end marker,
//!   and a chunked response never ends), and writes that change nothing are skipped;
//! - a callout started from the headers holds a request body until it answers;
//! - a callout to `host:443` on Kong (which dispatches to `host:port` itself) is sent over TLS.
//!
//! It also writes every local error reply in the shape of the API the request came through: policies
//! answer OpenAI-shaped errors, and on Anthropic's door (`POST /v1/messages`) the driver rewrites them
//! into Anthropic's shape, keeping the `code` ([`crate::api::Dialect::reshape_error`]), so a client of
//! either API can read any filter's refusal.

use super::abi::{report, Abi, Buffer, Map, WHOLE};
use super::memo::Memo;
use super::{
    Background, Body, CallResponse, Host, HostKind, HttpCall, LocalReply, Policy, ResponseMode, Step,
};
use crate::api::Dialect;
use crate::error::ApiError;

/// What the host should do with the stream after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// Shared-data key where the first worker to see a request records the host kind, for root contexts
/// (timers) of workers that have not seen one yet.
pub const HOST_KIND_KEY: &str = "ai-gateway:host-kind";

/// Bound on our own copy of a whole response on hosts that do not buffer it for us.
pub const MAX_COLLECTED_RESPONSE: usize = 16 * 1024 * 1024;

/// Bound on a whole response Envoy buffers for us: under Envoy's default connection buffer limit
/// (1 MiB), so that a larger answer gets our 502 `response_too_large` in the door's shape rather than
/// Envoy's plain-text 500 (`response_payload_too_large`).
pub const MAX_HELD_RESPONSE: usize = 960 * 1024;

/// Detects the host kind on the first request of this VM and keeps it.
pub fn detect_kind<A: Abi>(abi: &mut A) -> HostKind {
    if let Some(kind) = abi.host_kind() {
        return kind;
    }
    // ngx_wasm_module answers this property inside a request; Envoy has no such property.
    let kind = match abi.property(&["ngx", "nginx_version"]) {
        Ok(Some(_)) => HostKind::Kong,
        _ => HostKind::Envoy,
    };
    abi.set_host_kind(kind);
    let name: &[u8] = match kind {
        HostKind::Envoy => b"envoy",
        HostKind::Kong => b"kong",
    };
    if abi.shared_data(HOST_KIND_KEY).is_ok_and(|(v, _)| v.is_none()) {
        // Create-only on both hosts (Envoy: a token no key has); losing that race is fine.
        let cas = (kind == HostKind::Envoy).then_some(u32::MAX);
        let _already_there = abi.set_shared_data(HOST_KIND_KEY, name, cas);
    }
    kind
}

/// A guess at the host outside a request (at configure time), where ngx_wasm_module refuses every dotted
/// property with an error while Envoy answers "not found" for a property it does not have. Only used to
/// decide how to refuse a bad configuration; requests detect the host with [`detect_kind`].
pub fn configure_kind_hint<A: Abi>(abi: &A) -> HostKind {
    match abi.property(&["ngx", "nginx_version"]) {
        Ok(None) => HostKind::Envoy,
        Ok(Some(_)) | Err(_) => HostKind::Kong,
    }
}

/// The host kind for code outside a request (timers): this VM's, else the one another worker recorded.
pub fn known_kind<A: Abi>(abi: &mut A) -> Option<HostKind> {
    if let Some(kind) = abi.host_kind() {
        return Some(kind);
    }
    let kind = match abi.shared_data(HOST_KIND_KEY) {
        Ok((Some(v), _)) if v == b"kong" => HostKind::Kong,
        Ok((Some(v), _)) if v == b"envoy" => HostKind::Envoy,
        _ => return None,
    };
    abi.set_host_kind(kind);
    Some(kind)
}

/// Which callback we are in when a step is applied: only after a callout must the driver resume the
/// request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Headers,
    Body,
    CallResponse,
}

/// Callouts in flight for one request.
#[derive(Debug)]
struct Calls {
    tokens: Vec<Option<u32>>,
    answers: Vec<Option<CallResponse>>,
    /// The request body, when the calls were made from the body phase.
    body: Option<Body>,
    /// Length of the body buffer as read, for writing it back.
    read_len: usize,
    /// Envoy: the whole request body arrived (and is held) while calls from the headers were in flight.
    body_ended: bool,
}

#[derive(Debug)]
enum Stage {
    Headers,
    ReadingBody,
    Calling(Box<Calls>),
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
    /// Kong: we keep our own copy and empty each chunk but the last.
    WholeCollected(Vec<u8>),
    /// Envoy: the held response outgrew [`MAX_HELD_RESPONSE`]; its error has been sent, the rest of
    /// the upstream's body is dropped.
    Discarding,
}

/// One request: its policy and where the request stands.
pub struct Driver<P: Policy> {
    policy: P,
    stage: Stage,
    response: Response,
    has_body: bool,
    /// The dialect of the request's API: local error replies are written in it.
    door: Dialect,
}

/// The HTTP call a [`HttpCall`] becomes on this host: dispatch target and header list.
pub fn call_headers(call: &HttpCall, kind: HostKind) -> (String, Vec<(String, String)>) {
    let target = call.upstream.dispatch_target(kind).to_string();
    let mut headers = vec![
        (":method".to_string(), call.method.clone()),
        (":path".to_string(), call.path.clone()),
        (
            ":authority".to_string(),
            super::authority(&call.upstream.host).to_string(),
        ),
    ];
    headers.extend(call.headers.iter().cloned());
    // Kong dispatches to `host:port` itself, in plain HTTP unless told: TLS for the HTTPS port.
    if kind == HostKind::Kong
        && call.upstream.host.ends_with(":443")
        && !headers.iter().any(|(k, _)| k == ":scheme")
    {
        headers.push((":scheme".to_string(), "https".to_string()));
    }
    (target, headers)
}

/// Dispatches one call; `None` when the host refused it (logged and counted).
fn dispatch<A: Abi>(abi: &mut A, call: &HttpCall, kind: HostKind) -> Option<u32> {
    let (target, headers) = call_headers(call, kind);
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match abi.dispatch(&target, &pairs, &call.body, call.timeout_ms.max(1)) {
        Ok(token) => Some(token),
        Err(status) => {
            report(abi, "dispatch_http_call", &target, status);
            None
        }
    }
}

/// Reads a callout's answer. Kong answers a failed call with no headers at all (and an extra
/// `:dispatch_status`); Envoy with a `:status` of its own.
fn call_response<A: Abi>(abi: &mut A) -> CallResponse {
    let headers = abi.headers(Map::CallResponseHeaders).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(":status"))
        .and_then(|(_, v)| v.trim().parse::<u16>().ok());
    let body = abi.buffer(Buffer::CallResponseBody, 0, WHOLE).unwrap_or_default();
    CallResponse {
        status,
        headers,
        body,
    }
}

impl<P: Policy> Driver<P> {
    pub fn new(policy: P) -> Self {
        Driver {
            policy,
            stage: Stage::Headers,
            response: Response::PassThrough,
            has_body: false,
            door: Dialect::OpenAi,
        }
    }

    pub fn policy(&self) -> &P {
        &self.policy
    }

    fn reply<A: Abi>(&mut self, abi: &mut A, mut reply: LocalReply) -> Action {
        self.stage = Stage::Replied;
        if reply.status >= 400 {
            if let Some(body) = self.door.reshape_error(reply.status, &reply.body) {
                reply.body = body;
            }
        }
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Err(s) = abi.send_response(u32::from(reply.status), &headers, &reply.body) {
            report(abi, "send_http_response", &reply.status.to_string(), s);
        }
        Action::Pause
    }

    /// After a callout the request is ours to resume; inside a request callback the returned action does it.
    fn proceed<A: Abi>(&mut self, abi: &mut A, ctx: Ctx) -> Action {
        self.stage = Stage::Forwarded;
        if ctx == Ctx::CallResponse {
            if let Err(s) = abi.resume_request() {
                report(abi, "resume_http_request", "", s);
            }
        }
        Action::Continue
    }

    /// Kong's `end_of_stream` is always false in headers, so decide from the headers themselves.
    fn request_has_body<A: Abi>(abi: &A, kind: HostKind, end_of_stream: bool) -> bool {
        match kind {
            HostKind::Envoy => !end_of_stream,
            HostKind::Kong => {
                let chunked = abi
                    .request_header("transfer-encoding")
                    .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
                let length = abi
                    .request_header("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                chunked || length.is_some_and(|n| n > 0)
            }
        }
    }

    pub fn on_request_headers<A: Abi>(&mut self, abi: &mut A, end_of_stream: bool) -> Action {
        let abi = &mut Memo::new(abi);
        let kind = detect_kind(abi);
        self.door = Dialect::of_request(
            &abi.request_header(":method").unwrap_or_default(),
            &abi.request_header(":path").unwrap_or_default(),
        );
        self.has_body = Self::request_has_body(abi, kind, end_of_stream);
        match self.policy.on_request_headers(abi, self.has_body) {
            Step::Continue => self.proceed(abi, Ctx::Headers),
            Step::ReadBody => self.read_body(abi, Ctx::Headers),
            Step::Reply(r) => self.reply(abi, r),
            Step::Call(calls) => self.start_calls(abi, calls, None, 0, Ctx::Headers),
        }
    }

    /// The policy asked for the body: from the headers callback, or after calls made from the headers
    /// (then, on Envoy, the body may already have arrived and be held).
    fn read_body<A: Abi>(&mut self, abi: &mut A, ctx: Ctx) -> Action {
        if !self.has_body {
            let mut body = Body::new(Vec::new());
            let step = self.policy.on_request_body(abi, &mut body);
            return self.apply_body_step(abi, step, body, 0, ctx);
        }
        let encoding = abi
            .request_header("content-encoding")
            .filter(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
        if let Some(encoding) = encoding {
            // Read as it is, an encoded body is not what the upstream decodes: never checked raw.
            return match self.policy.on_request_encoded(abi, &encoding) {
                Some(reply) => self.reply(abi, reply),
                None => self.proceed(abi, ctx),
            };
        }
        let body_ended = matches!(&self.stage, Stage::Calling(c) if c.body_ended);
        self.stage = Stage::ReadingBody;
        match abi.kind() {
            HostKind::Envoy => {
                if body_ended {
                    // Held by our pauses while the calls were in flight: read it now.
                    return self.body_ready(abi, ctx);
                }
                // Still arriving: the body callbacks carry on; the headers stay held.
                Action::Pause
            }
            // Kong delivers the body only once the headers go on.
            HostKind::Kong => {
                if ctx == Ctx::CallResponse {
                    if let Err(s) = abi.resume_request() {
                        report(abi, "resume_http_request", "", s);
                    }
                }
                Action::Continue
            }
        }
    }

    pub fn on_request_body<A: Abi>(&mut self, abi: &mut A, body_size: usize, end_of_stream: bool) -> Action {
        let abi = &mut Memo::new(abi);
        match &mut self.stage {
            Stage::ReadingBody => {}
            // A callout from the headers is in flight: hold the body until it answers.
            Stage::Calling(c) => {
                c.body_ended |= end_of_stream;
                return Action::Pause;
            }
            _ => return Action::Continue,
        }
        let limit = self.policy.request_body_limit();
        if body_size > limit {
            return self.too_large(abi, limit);
        }
        // Kong delivers the whole body in one call; Envoy buffers while we pause.
        if !end_of_stream && abi.kind() == HostKind::Envoy {
            return Action::Pause;
        }
        self.body_ready(abi, Ctx::Body)
    }

    /// The whole body is in the host's buffer: read it and hand it to the policy.
    fn body_ready<A: Abi>(&mut self, abi: &mut A, ctx: Ctx) -> Action {
        let limit = self.policy.request_body_limit();
        let bytes = match abi.buffer(Buffer::RequestBody, 0, WHOLE) {
            Ok(b) => b,
            Err(s) => {
                report(abi, "get_buffer", "request body", s);
                return self.reply(abi, gateway_error("the request body could not be read").into());
            }
        };
        if bytes.len() > limit {
            return self.too_large(abi, limit);
        }
        let read_len = bytes.len();
        let mut body = Body::new(bytes);
        let step = self.policy.on_request_body(abi, &mut body);
        self.apply_body_step(abi, step, body, read_len, ctx)
    }

    fn too_large<A: Abi>(&mut self, abi: &mut A, limit: usize) -> Action {
        match self.policy.on_request_too_large(abi, limit) {
            Some(reply) => self.reply(abi, reply),
            // Let it through unread: what is buffered goes on with the rest.
            None => self.proceed(abi, Ctx::Body),
        }
    }

    /// Applies the policy's answer once the body has been read (in the body callback or after a callout).
    fn apply_body_step<A: Abi>(
        &mut self,
        abi: &mut A,
        step: Step,
        body: Body,
        read_len: usize,
        ctx: Ctx,
    ) -> Action {
        match step {
            Step::Continue | Step::ReadBody => {
                if body.changed() {
                    if abi.kind() == HostKind::Envoy {
                        // Envoy forwards the headers it holds after this callback: without
                        // content-length the new body goes chunked.
                        let _logged = abi.set_request_header("content-length", None);
                    }
                    let new = body.into_bytes();
                    // Kong truncates a new body to the size argument: give the larger of the two.
                    if let Err(s) = abi.set_buffer(Buffer::RequestBody, 0, read_len.max(new.len()), &new) {
                        report(abi, "set_buffer", "request body", s);
                        // The policy's edit (a redaction, a translation) must not be skipped silently.
                        return self.reply(
                            abi,
                            gateway_error("the request body could not be rewritten").into(),
                        );
                    }
                }
                self.proceed(abi, ctx)
            }
            Step::Reply(r) => self.reply(abi, r),
            Step::Call(calls) => self.start_calls(abi, calls, Some(body), read_len, ctx),
        }
    }

    fn start_calls<A: Abi>(
        &mut self,
        abi: &mut A,
        calls: Vec<HttpCall>,
        body: Option<Body>,
        read_len: usize,
        ctx: Ctx,
    ) -> Action {
        let kind = abi.kind();
        let mut c = Calls {
            tokens: Vec::with_capacity(calls.len()),
            answers: Vec::with_capacity(calls.len()),
            body,
            read_len,
            body_ended: false,
        };
        for call in &calls {
            let token = dispatch(abi, call, kind);
            c.answers.push(token.is_none().then(CallResponse::default));
            c.tokens.push(token);
        }
        self.stage = Stage::Calling(Box::new(c));
        if self.calls_answered() {
            // Every call was refused at once: its failure is the answer, in this same callback.
            return self.finish_calls(abi, ctx);
        }
        Action::Pause
    }

    fn calls_answered(&self) -> bool {
        match &self.stage {
            Stage::Calling(c) => c.answers.iter().all(Option::is_some),
            _ => false,
        }
    }

    pub fn on_call_response<A: Abi>(&mut self, abi: &mut A, token: u32) {
        let abi = &mut Memo::new(abi);
        let Stage::Calling(c) = &mut self.stage else {
            return;
        };
        let Some(i) = c.tokens.iter().position(|t| *t == Some(token)) else {
            return;
        };
        let response = call_response(abi);
        if let Some(slot) = c.answers.get_mut(i) {
            *slot = Some(response);
        }
        if self.calls_answered() {
            self.finish_calls(abi, Ctx::CallResponse);
        }
    }

    fn finish_calls<A: Abi>(&mut self, abi: &mut A, ctx: Ctx) -> Action {
        let Stage::Calling(c) = std::mem::replace(&mut self.stage, Stage::Forwarded) else {
            return Action::Continue;
        };
        let Calls {
            answers,
            body,
            read_len,
            body_ended,
            ..
        } = *c;
        let responses: Vec<CallResponse> = answers.into_iter().map(Option::unwrap_or_default).collect();
        match body {
            Some(mut body) => {
                let step = self.policy.on_call_responses(abi, responses, Some(&mut body));
                self.apply_body_step(abi, step, body, read_len, ctx)
            }
            None => {
                // Keep what is known of the held body for a body read that may follow.
                let step = self.policy.on_call_responses(abi, responses, None);
                self.stage = Stage::Calling(Box::new(Calls {
                    tokens: Vec::new(),
                    answers: Vec::new(),
                    body: None,
                    read_len: 0,
                    body_ended,
                }));
                match step {
                    Step::Continue => self.proceed(abi, ctx),
                    Step::ReadBody => self.read_body(abi, ctx),
                    Step::Reply(r) => self.reply(abi, r),
                    Step::Call(calls) => {
                        let action = self.start_calls(abi, calls, None, 0, ctx);
                        if let Stage::Calling(c) = &mut self.stage {
                            c.body_ended |= body_ended;
                        }
                        action
                    }
                }
            }
        }
    }

    pub fn on_response_headers<A: Abi>(&mut self, abi: &mut A, end_of_stream: bool) -> Action {
        let abi = &mut Memo::new(abi);
        if matches!(self.stage, Stage::Replied) && !self.policy.sees_own_replies() {
            return Action::Continue;
        }
        let mode = self.policy.on_response_headers(abi);
        let kind = abi.kind();
        self.response = match mode {
            ResponseMode::PassThrough => Response::PassThrough,
            // A headers-only response has no body to rewrite (Kong never says so in headers).
            _ if end_of_stream && kind == HostKind::Envoy => Response::PassThrough,
            ResponseMode::Stream => Response::Stream,
            ResponseMode::Whole if kind == HostKind::Envoy => Response::WholeBuffered,
            ResponseMode::Whole => Response::WholeCollected(Vec::new()),
        };
        match self.response {
            Response::PassThrough | Response::Discarding => Action::Continue,
            // Envoy: hold the headers so the status and length can follow the rewritten body.
            Response::WholeBuffered => Action::Pause,
            // The body may change: a length sent now would truncate it (nginx sends the headers first).
            Response::Stream | Response::WholeCollected(_) => {
                let _logged = abi.set_response_header("content-length", None);
                Action::Continue
            }
        }
    }

    /// Writes a response chunk, except a write that changes nothing, and never an empty last chunk.
    fn write_chunk<A: Abi>(abi: &mut A, old: &[u8], new: &[u8], end: bool) {
        if new == old {
            return;
        }
        let new: &[u8] = if new.is_empty() && end && abi.kind() == HostKind::Kong {
            if old.is_empty() {
                return;
            }
            // ngx_wasm_module drops an emptied last chunk with its end marker: send an empty line
            // (nothing to an SSE reader) so the response still ends.
            b"\n"
        } else {
            new
        };
        if let Err(s) = abi.set_buffer(Buffer::ResponseBody, 0, old.len().max(new.len()), new) {
            report(abi, "set_buffer", "response body", s);
        }
    }

    pub fn on_response_body<A: Abi>(&mut self, abi: &mut A, body_size: usize, end_of_stream: bool) -> Action {
        let abi = &mut Memo::new(abi);
        match &mut self.response {
            Response::PassThrough => Action::Continue,
            Response::Discarding => {
                let _logged = abi.set_buffer(Buffer::ResponseBody, 0, body_size, b"");
                Action::Continue
            }
            Response::WholeBuffered if !end_of_stream && body_size > MAX_HELD_RESPONSE => {
                self.policy.on_response_too_large(abi, MAX_HELD_RESPONSE);
                let err = ApiError::upstream(
                    502,
                    "response_too_large",
                    format!(
                        "the upstream's answer is larger than the {} KiB the gateway holds to read it",
                        MAX_HELD_RESPONSE / 1024
                    ),
                );
                let body = self.door.api_error(&err);
                for (name, value) in [
                    (":status", Some("502".to_string())),
                    ("content-type", Some("application/json".to_string())),
                    ("content-encoding", None),
                    ("content-length", Some(body.len().to_string())),
                ] {
                    let _logged = abi.set_response_header(name, value.as_deref());
                }
                if let Err(s) = abi.set_buffer(Buffer::ResponseBody, 0, body_size, &body) {
                    report(abi, "set_buffer", "response body", s);
                }
                self.response = Response::Discarding;
                Action::Continue
            }
            Response::Stream => {
                let chunk = abi.buffer(Buffer::ResponseBody, 0, WHOLE).unwrap_or_default();
                if let Some(out) = self.policy.on_response_chunk(abi, &chunk, end_of_stream) {
                    Self::write_chunk(abi, &chunk, &out, end_of_stream);
                }
                Action::Continue
            }
            Response::WholeBuffered => {
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = abi.buffer(Buffer::ResponseBody, 0, WHOLE).unwrap_or_default();
                let out = self.policy.on_response_whole(abi, &body);
                if let Some(status) = out.status {
                    let _logged = abi.set_response_header(":status", Some(&status.to_string()));
                }
                let _logged = abi.set_response_header("content-length", Some(&out.body.len().to_string()));
                Self::write_chunk(abi, &body, &out.body, true);
                Action::Continue
            }
            Response::WholeCollected(collected) => {
                let chunk = abi.buffer(Buffer::ResponseBody, 0, WHOLE).unwrap_or_default();
                if collected.len() + chunk.len() > MAX_COLLECTED_RESPONSE {
                    let body =
                        ApiError::upstream(502, "response_too_large", "upstream response is too large")
                            .body();
                    self.response = Response::PassThrough;
                    Self::write_chunk(abi, &chunk, &body, end_of_stream);
                    return Action::Continue;
                }
                collected.extend_from_slice(&chunk);
                if !end_of_stream {
                    Self::write_chunk(abi, &chunk, &[], false);
                    return Action::Continue;
                }
                let whole = std::mem::take(collected);
                let out = self.policy.on_response_whole(abi, &whole);
                Self::write_chunk(abi, &chunk, &out.body, true);
                Action::Continue
            }
        }
    }

    pub fn on_log<A: Abi>(&mut self, abi: &mut A) {
        let abi = &mut Memo::new(abi);
        self.policy.on_done(abi);
    }
}

/// A 500 for a host call the request cannot do without.
fn gateway_error(message: &str) -> ApiError {
    ApiError::new(500, "server_error", "gateway_error", message)
}

/// Runs a filter's [`Background`] from the root context's timer: its calls, and their answers by token.
pub struct BackgroundDriver {
    work: Box<dyn Background>,
    /// Calls in flight: (token, tag).
    in_flight: Vec<(u32, u64)>,
}

impl BackgroundDriver {
    pub fn new(work: Box<dyn Background>) -> Self {
        BackgroundDriver {
            work,
            in_flight: Vec::new(),
        }
    }

    pub fn period_ms(&self) -> u64 {
        self.work.period_ms()
    }

    pub fn on_tick<A: Abi>(&mut self, abi: &mut A) {
        let abi = &mut Memo::new(abi);
        // Dispatch targets differ by host; until some worker has seen a request, wait.
        let Some(kind) = known_kind(abi) else {
            return;
        };
        for (tag, call) in self.work.on_tick(abi) {
            match dispatch(abi, &call, kind) {
                Some(token) => self.in_flight.push((token, tag)),
                None => self.work.on_call_response(abi, tag, CallResponse::default()),
            }
        }
    }

    pub fn on_call_response<A: Abi>(&mut self, abi: &mut A, token: u32) {
        let abi = &mut Memo::new(abi);
        let Some(i) = self.in_flight.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, tag) = self.in_flight.swap_remove(i);
        let response = call_response(abi);
        self.work.on_call_response(abi, tag, response);
    }
}
