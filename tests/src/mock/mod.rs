//! Deterministic mock LLM providers on one port: OpenAI, Azure OpenAI and Anthropic (chat, JSON and SSE;
//! tools; images; structured output; embeddings), an echo endpoint for non-LLM APIs, request records and
//! fault injection. Plain `std::net`, one thread per connection, HTTP/1.1 keep-alive, Content-Length and
//! chunked request bodies. Header names compare case-insensitively.
//!
//! # Endpoints
//!
//! | Endpoint | What |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat; `authorization: Bearer <key>` |
//! | `POST /openai/deployments/{d}/chat/completions?api-version=V` | Azure OpenAI chat; `api-key`; the model is `d` |
//! | `POST /v1/messages` | Anthropic; `x-api-key` or `authorization: Bearer <key>`, `anthropic-version`, `max_tokens` |
//! | `POST /v1/embeddings` | OpenAI embeddings: `input` (string, strings, token arrays), `encoding_format` (`float`, `base64`), `dimensions` (default [`EMBEDDING_DIMENSIONS`]) |
//! | `POST /openai/deployments/{d}/embeddings?api-version=V` | Azure OpenAI embeddings |
//! | `POST /{v}/models/{m}:generateContent`, `:streamGenerateContent?alt=sse`, `:batchEmbedContents`, `:embedContent` | Gemini (AI Studio); `x-goog-api-key` (or `?key=`); the model is `m` (`gemini.rs`) |
//! | `POST /{v}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`, `:streamGenerateContent?alt=sse`, `:predict` | Gemini on Vertex AI; `authorization: Bearer <token>` |
//! | `POST /model/{id}/converse`, `/model/{id}/converse-stream`, `/model/{id}/invoke` | AWS Bedrock Converse (JSON; the stream in the binary `application/vnd.amazon.eventstream` framing with real CRCs) and InvokeModel embeddings (Titan `amazon.titan-embed-*`, Cohere `cohere.embed-*`); `authorization: Bearer <key>`, or a SigV4 `authorization` of the right shape with `x-amz-date` and an `x-amz-content-sha256` equal to the body's hash (`bedrock.rs`) |
//! | any method `/echo`, `/echo/...` | 200 `{"method", "path", "query": {k: v or [v, ...]}, "headers": {...}, "body": <JSON, else text>}` |
//! | `GET /_mock/requests` | the records, oldest first: `{"method", "path" (with query), "headers", "body" (text), "json"}` |
//! | `DELETE /_mock/requests` | clears records, faults and sinks |
//! | `POST /_mock/faults`, `DELETE /_mock/faults` | queues a fault rule / clears them |
//! | `GET /_mock/health` | `{"ok": true}` |
//! | `POST /sink/<name>/…`, `GET /sink/<name>/requests`, `POST /sink/<name>/fail?count=N&status=S` | recording audit sinks of every `shared::sink` format, answered in the format's success shape, made to fail N times (`sink.rs`) |
//!
//! Every request but `/_mock/*` and `/sink/*` is recorded as sent, and takes faults; a sink keeps its
//! own records.
//!
//! # Request headers
//!
//! | Header | Effect |
//! |---|---|
//! | `x-mock-reply: <text>` | the reply text (streamed word by word); wins over tool calls and structured output, so `x-mock-reply: not json` makes an invalid structured answer |
//! | `x-mock-reply: ["a", "b"]` | the reply is the pieces joined, streamed one event per piece (e.g. PII split across events) |
//! | `x-mock-usage: P,C` | prompt and completion tokens (embeddings: `P` is the prompt) |
//! | `x-mock-cached: R` or `R,W` | `R` prompt tokens read from the cache, `W` written to it (part of the prompt): OpenAI `prompt_tokens_details.cached_tokens` = R (and `completion_tokens_details`); Anthropic `cache_read_input_tokens` = R, `cache_creation_input_tokens` = W, `input_tokens` = P − R − W; in JSON and in streamed usage |
//! | `x-mock-reasoning: N` | OpenAI `completion_tokens_details.reasoning_tokens` = N (part of the completion; adds the details objects too) |
//! | `x-mock-finish: R` | Gemini: the answer ends with `finishReason` R and no content (`SAFETY`, `RECITATION`, …; rated `HIGH`), or `PROMPT_R` blocks the prompt (`promptFeedback.blockReason` R) |
//! | `x-mock-fault: {...}` | a fault for this request (takes precedence over queued rules, does not consume them) |
//!
//! A fault is an object of these fields, in any combination (the fault matrix,
//! `tests/tests/faults.rs`, is built on them):
//!
//! | field | effect |
//! |---|---|
//! | `delay_ms` | wait this long before answering |
//! | `status` | answer with this status (≥ 300: an error in the provider's shape; 429 adds `retry-after: 1`) |
//! | `malformed` | cut the JSON answer (or the second SSE event's JSON) in half |
//! | `not_json` | the JSON answer is an HTML page (still `application/json`); in a stream, the second event's data (its `event:` name kept; in Bedrock's binary stream, that text replaces the second message) |
//! | `body` | this text instead of the answer's body (JSON answers), e.g. valid JSON that is not an answer |
//! | `cut_after` | send only the first n body bytes (or SSE events), then close without the end |
//! | `drip_ms` | sleep between SSE events; a JSON answer is sent in four pieces with this sleep between |
//! | `reset` | close the connection after the wait without a byte of answer (a reset before headers) |
//! | `reply` | answer this text as `x-mock-reply` would (for calls whose headers a test does not control, such as the gateway's own model calls: `"reply": "not json"` makes an invalid structured answer) |
//! | `pad` | append about this many bytes to the reply text, as words of 64 KiB (an oversized answer; a stream carries one word per event) |
//! | `invalid_utf8` | the first `reply` in the answer's bytes (JSON or the event that carries it) gets a byte that is not UTF-8 (`r\xffply`; a Bedrock message's CRC is recomputed, so it stays well-framed) |
//! | `content_type` | this `content-type` instead of the answer's own (`application/json`, `text/event-stream`) |
//! | `gzip` | the body is gzip-encoded, with `content-encoding: gzip` (though the gateway asks for none) |
//!
//! A queued rule is `{"path_prefix", "model", "times" (default 1, 0 = forever), "fault"}`; the first
//! matching rule applies (Azure matches the deployment as model).
//!
//! # Answers
//!
//! What is answered, whatever the wire format, is decided in `engine.rs` (its doc has the rules):
//! - text: [`reply_to`] the last user text (`"mock reply to: " + text`), or [`reply_to_tool`] the tool
//!   results that end the conversation; " I see N image(s)." appended when the request carries images
//!   (OpenAI `image_url` parts with a data: or http(s) URL, Anthropic `image` blocks; malformed ones, and
//!   base64 data that is not a PNG, JPEG, GIF or WebP, are refused with the provider's 400; an OpenAI URL
//!   of another shape passes uncounted, as the mock fetches nothing);
//! - tool calls when the offered tools are asked for (a tool's name, or a word of it, in the last user
//!   text), honouring `tool_choice` and parallel calls; streamed as the providers stream them (OpenAI
//!   finishes a call of a function it was told to call with `stop`, as the API does);
//! - structured output for OpenAI `response_format` `json_schema` / `json_object`, and for a forced tool
//!   that is the only tool (Anthropic's way; an OpenAI named function alike), derived from the schema and
//!   the prompt (`schema.rs`);
//! - thinking (Anthropic `thinking` of type `enabled` or `adaptive`): the answer opens with a `thinking`
//!   block, [`THINKING_PREFIX`] + the last user text, signed with [`thinking_signature`] of its text
//!   (streamed as `thinking_delta`s and a `signature_delta`); a thinking block sent back in an assistant
//!   turn must carry that signature, else the request is refused with a 400, as Anthropic does;
//! - usage: whitespace-separated [`words`] of the messages and of the answer (thinking included).
//!
//! Ids are deterministic: `chatcmpl-mock-<n>` / `msg_mock_<n>` count answers; tool call ids (`call_…`,
//! `toolu_…`) derive from the conversation and the call's index. OpenAI answers carry `created`
//! [`CREATED`].
//!
//! # Layout
//!
//! This module holds the server, the records, the faults and the dispatch; `engine.rs` decides what to
//! answer; each wire format is one file implementing `Wire` (`openai.rs` for OpenAI and Azure,
//! `anthropic.rs`, `gemini.rs`). A new provider is one more file and one line in `route`.

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::http::{read_body, read_head, Head};

mod anthropic;
mod bedrock;
mod engine;
mod gemini;
mod openai;
mod schema;
mod sink;

pub use bedrock::{MOCK_ACCESS_KEY_ID, MOCK_SECRET};
pub use engine::{
    reply_to, reply_to_tool, thinking_signature, words, REPLY_PREFIX, THINKING_PREFIX, TOOL_REPLY_PREFIX,
};
use engine::{Answer, Chat};
pub use openai::EMBEDDING_DIMENSIONS;

/// The fixed `created` timestamp of every OpenAI-style answer (keeps answers deterministic).
pub const CREATED: u64 = 1_700_000_000;

/// A running mock provider; stops (closing its listener and open connections) on drop.
pub struct MockServer {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    records: Mutex<Vec<Value>>,
    faults: Mutex<Vec<FaultRule>>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
    sinks: Mutex<sink::Sinks>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MockServer {
    /// Listens on `127.0.0.1:port` (0 = any free port) and serves in background threads.
    pub fn start(port: u16) -> io::Result<MockServer> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("mock-accept-{port}"))
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(MockServer {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The records of every request received so far (except `/_mock/*`), oldest first; the same as
    /// `GET /_mock/requests`.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.records).clone()
    }

    /// Clears records, faults and sinks (the same as `DELETE /_mock/requests`).
    pub fn clear(&self) {
        lock(&self.shared.records).clear();
        lock(&self.shared.faults).clear();
        lock(&self.shared.sinks).clear();
    }

    /// What sink `name` received, oldest first (the same as `GET /sink/<name>/requests`).
    pub fn sink_requests(&self, name: &str) -> Vec<Value> {
        sink::requests(&self.shared, name)
    }

    /// Queues a fault rule (the same as `POST /_mock/faults`), e.g.
    /// `json!({"path_prefix": "/v1/messages", "times": 2, "fault": {"status": 503}})`.
    pub fn add_fault(&self, rule: &Value) -> Result<(), String> {
        let rule = FaultRule::parse(rule)?;
        lock(&self.shared.faults).push(rule);
        Ok(())
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor blocked in accept().
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(1),
        );
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for (_, conn) in lock(&self.shared.conns).drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else {
            // Transient accept errors (EMFILE, ECONNABORTED): back off a little.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(id, clone);
        }
        let shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("mock-conn-{id}"))
            .spawn(move || {
                let _ = serve_connection(&shared, stream);
                lock(&shared.conns).remove(&id);
            });
        if spawned.is_err() {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One parsed request.
pub(crate) struct Request {
    method: String,
    /// Path with query.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }
}

/// Whether the connection stays open after the answer.
enum Next {
    KeepAlive,
    Close,
}

fn serve_connection(shared: &Shared, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(Head { start, headers }) = read_head(&mut reader)? {
        let mut parts = start.split_whitespace();
        let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            write_simple(&mut writer, 400, "bad request line", false)?;
            break;
        };
        let keep_alive = wants_keep_alive(version, &headers);
        if headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("expect") && v.eq_ignore_ascii_case("100-continue"))
        {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = match read_body(&mut reader, &headers) {
            Ok(b) => b,
            Err(e) => {
                write_simple(&mut writer, 400, &format!("bad request body: {e}"), false)?;
                break;
            }
        };
        let req = Request {
            method: method.to_string(),
            target: target.to_string(),
            headers,
            body,
        };
        let next = handle(shared, &req, &mut writer, keep_alive)?;
        if !keep_alive || matches!(next, Next::Close) {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

fn wants_keep_alive(version: &str, headers: &[(String, String)]) -> bool {
    let tokens: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    if tokens.iter().any(|t| t == "close") {
        return false;
    }
    version == "HTTP/1.1" || tokens.iter().any(|t| t == "keep-alive")
}

/// An error answered in the provider's shape: a status, a message and, for formats that carry them, the
/// offending parameter and a stable code.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }
}

/// One wire format (a provider's request and answer shapes). A new provider implements this in one file
/// and gets one line in [`route`].
pub(crate) trait Wire {
    /// The `x-mock-provider` answer header.
    fn name(&self) -> &'static str;
    /// The model queued fault rules match (Azure: the deployment).
    fn fault_model<'a>(&'a self, body: Option<&'a Value>) -> Option<&'a str> {
        body.and_then(|b| b.get("model")).and_then(Value::as_str)
    }
    /// Checks auth and the body of a chat request and reads it.
    fn read_chat(&self, req: &Request, body: Option<&Value>) -> Result<Chat, ApiError>;
    /// The error body in this format's shape.
    fn error_body(&self, err: &ApiError) -> Value;
    /// A whole (non-streamed) chat answer.
    fn chat_json(&self, n: u64, answer: &Answer) -> Value;
    /// A streamed chat answer: the SSE events, each with its framing.
    fn chat_events(&self, n: u64, answer: &Answer) -> Vec<String>;
    /// The `content-type` of a streamed answer.
    fn stream_content_type(&self) -> &'static str {
        "text/event-stream"
    }
    /// A streamed chat answer as the bytes of each event (binary framings override it).
    fn chat_frames(&self, n: u64, answer: &Answer) -> Vec<Vec<u8>> {
        self.chat_events(n, answer)
            .into_iter()
            .map(String::into_bytes)
            .collect()
    }
    /// One event made invalid (the `malformed` fault): SSE events get their JSON cut in half.
    fn malformed_frame(&self, frame: &[u8]) -> Vec<u8> {
        truncate_event(&String::from_utf8_lossy(frame)).into_bytes()
    }
    /// Makes an event whose bytes were changed (the `invalid_utf8` fault) well-framed again: SSE events
    /// need nothing; binary framings recompute their checksums, so the fault stays a bad byte in a
    /// valid event rather than a corrupt frame.
    fn reseal_frame(&self, _frame: &mut [u8]) {}
    /// Checks auth and the body of an embeddings request and answers it, for formats that have them.
    fn embeddings(&self, _req: &Request, _body: Option<&Value>) -> Result<Value, ApiError> {
        Err(ApiError::new(404, "mock: no embeddings in this format"))
    }
}

/// What a provider is asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Operation {
    Chat,
    Embeddings,
}

/// What a path asks for.
enum Endpoint {
    Api(Box<dyn Wire>, Operation),
    Echo,
}

fn route(path: &str) -> Option<Endpoint> {
    let openai = || Box::new(openai::OpenAi::default());
    match path {
        "/v1/chat/completions" => return Some(Endpoint::Api(openai(), Operation::Chat)),
        "/v1/embeddings" => return Some(Endpoint::Api(openai(), Operation::Embeddings)),
        "/v1/messages" => return Some(Endpoint::Api(Box::new(anthropic::Anthropic), Operation::Chat)),
        _ => {}
    }
    if path == "/echo" || path.starts_with("/echo/") {
        return Some(Endpoint::Echo);
    }
    if let Some(endpoint) = gemini::route(path) {
        return Some(endpoint);
    }
    if let Some(endpoint) = bedrock::route(path) {
        return Some(endpoint);
    }
    let rest = path.strip_prefix("/openai/deployments/")?;
    let (deployment, operation) = rest.split_once('/')?;
    if deployment.is_empty() {
        return None;
    }
    let azure = Box::new(openai::OpenAi::azure(deployment));
    match operation {
        "chat/completions" => Some(Endpoint::Api(azure, Operation::Chat)),
        "embeddings" => Some(Endpoint::Api(azure, Operation::Embeddings)),
        _ => None,
    }
}

fn handle(shared: &Shared, req: &Request, w: &mut TcpStream, keep: bool) -> io::Result<Next> {
    let path = req.path();
    if path.starts_with("/_mock/") {
        return handle_control(shared, req, w, keep);
    }
    if sink::is_sink(path) {
        return sink::handle(shared, req, w, keep);
    }
    let json: Option<Value> = serde_json::from_slice(&req.body).ok();
    record(shared, req, json.as_ref());
    let Some(endpoint) = route(path) else {
        let body = json!({"error": {"message": format!("mock: no route for {} {}", req.method, req.target),
            "type": "invalid_request_error", "param": null, "code": "not_found"}});
        write_json(w, 404, &[], &body, keep)?;
        return Ok(Next::KeepAlive);
    };
    let (wire, operation) = match endpoint {
        Endpoint::Echo => return handle_echo(shared, req, json.as_ref(), w, keep),
        Endpoint::Api(wire, operation) => (wire, operation),
    };
    if req.method != "POST" {
        let err = ApiError::new(405, format!("mock: method {} not allowed", req.method));
        let body = wire.error_body(&err);
        write_json(w, 405, &[("allow", "POST".to_string())], &body, keep)?;
        return Ok(Next::KeepAlive);
    }
    handle_api(shared, req, wire.as_ref(), operation, json.as_ref(), w, keep)
}

/// A request to a provider: faults, checks, the answer.
fn handle_api(
    shared: &Shared,
    req: &Request,
    wire: &dyn Wire,
    operation: Operation,
    json: Option<&Value>,
    w: &mut TcpStream,
    keep: bool,
) -> io::Result<Next> {
    let provider_header = [("x-mock-provider", wire.name().to_string())];
    let error = |w: &mut TcpStream, err: &ApiError| -> io::Result<Next> {
        let mut headers = provider_header.to_vec();
        if err.status == 429 {
            headers.push(("retry-after", "1".to_string()));
        }
        write_json(w, err.status, &headers, &wire.error_body(err), keep)?;
        Ok(Next::KeepAlive)
    };
    let fault = match resolve_fault(shared, req, wire.fault_model(json)) {
        Ok(f) => f,
        Err(msg) => {
            let body = wire.error_body(&ApiError::bad_request(msg));
            write_json(w, 400, &provider_header, &body, keep)?;
            return Ok(Next::KeepAlive);
        }
    };
    if fault.delay_ms > 0 {
        thread::sleep(Duration::from_millis(fault.delay_ms));
    }
    if fault.reset {
        return reset(w);
    }
    let injected = fault
        .status
        .filter(|s| *s >= 300)
        .map(|s| ApiError::new(s, format!("mock: injected fault status {s}")));
    let status = fault.status.unwrap_or(200);
    if operation == Operation::Embeddings {
        // Checks, then the injected status, then the answer.
        let answer = wire.embeddings(req, json);
        let value = match (answer, injected) {
            (Err(e), _) | (Ok(_), Some(e)) => return error(w, &e),
            (Ok(v), None) => v,
        };
        let text = fault.json_body(value.to_string().into_bytes());
        return write_body(
            w,
            status,
            "application/json",
            &provider_header,
            &text,
            &fault,
            keep,
        );
    }
    let chat = match wire.read_chat(req, json) {
        Ok(c) => c,
        Err(e) => return error(w, &e),
    };
    if let Some(e) = injected {
        return error(w, &e);
    }
    let padded = fault.padded_reply();
    let forced = padded
        .as_deref()
        .or(fault.reply.as_deref())
        .or_else(|| req.header("x-mock-reply"));
    let ans = match engine::answer(&chat, req, forced) {
        Ok(a) => a,
        Err(e) => return error(w, &e),
    };
    let n = shared.next_id.fetch_add(1, Ordering::SeqCst) + 1;
    if ans.stream {
        let frames = wire.chat_frames(n, &ans);
        let events = fault.frames(frames, |ev| wire.malformed_frame(ev), |ev| wire.reseal_frame(ev));
        write_stream(
            w,
            status,
            wire.stream_content_type(),
            &provider_header,
            &events,
            &fault,
            keep,
        )
    } else {
        let text = fault.json_body(wire.chat_json(n, &ans).to_string().into_bytes());
        write_body(
            w,
            status,
            "application/json",
            &provider_header,
            &text,
            &fault,
            keep,
        )
    }
}

/// `/echo/...`: any method; answers what it received (after the fault, if any).
fn handle_echo(
    shared: &Shared,
    req: &Request,
    json: Option<&Value>,
    w: &mut TcpStream,
    keep: bool,
) -> io::Result<Next> {
    let headers = [("x-mock-provider", "echo".to_string())];
    let fault = match resolve_fault(shared, req, None) {
        Ok(f) => f,
        Err(msg) => {
            write_json(w, 400, &headers, &json!({"error": {"message": msg}}), keep)?;
            return Ok(Next::KeepAlive);
        }
    };
    if fault.delay_ms > 0 {
        thread::sleep(Duration::from_millis(fault.delay_ms));
    }
    if fault.reset {
        return reset(w);
    }
    let status = fault.status.unwrap_or(200);
    let body = if status >= 300 {
        json!({"error": {"message": format!("mock: injected fault status {status}")}})
    } else {
        let body = match json {
            Some(v) => v.clone(),
            None => Value::String(String::from_utf8_lossy(&req.body).into_owned()),
        };
        json!({"method": req.method, "path": req.path(), "query": query_json(req),
            "headers": headers_json(req), "body": body})
    };
    let mut text = body.to_string().into_bytes();
    if fault.malformed {
        text.truncate(text.len() / 2);
    }
    write_body(w, status, "application/json", &headers, &text, &fault, keep)
}

/// The query as an object: each key its decoded value, or an array of them when it repeats.
fn query_json(req: &Request) -> Value {
    let mut out = Map::new();
    let Some((_, query)) = req.target.split_once('?') else {
        return Value::Object(out);
    };
    for (k, v) in shared::llm::inputs::form_pairs(query) {
        let v = Value::String(v);
        match out.get_mut(&k) {
            Some(Value::Array(values)) => values.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
            None => {
                out.insert(k, v);
            }
        }
    }
    Value::Object(out)
}

/// The request headers as an object (names lower-cased, repeated ones joined with ", ").
fn headers_json(req: &Request) -> Map<String, Value> {
    let mut headers = Map::new();
    for (name, value) in &req.headers {
        let name = name.to_ascii_lowercase();
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                headers.insert(name, Value::String(value.clone()));
            }
        }
    }
    headers
}

fn record(shared: &Shared, req: &Request, json: Option<&Value>) {
    let headers = headers_json(req);
    let rec = json!({
        "method": req.method,
        "path": req.target,
        "headers": headers,
        "body": String::from_utf8_lossy(&req.body),
        "json": json.cloned().unwrap_or(Value::Null),
    });
    lock(&shared.records).push(rec);
}

fn handle_control(shared: &Shared, req: &Request, w: &mut TcpStream, keep: bool) -> io::Result<Next> {
    match (req.method.as_str(), req.path()) {
        ("GET", "/_mock/requests") => {
            let records = Value::Array(lock(&shared.records).clone());
            write_json(w, 200, &[], &records, keep)?;
        }
        ("DELETE", "/_mock/requests") => {
            lock(&shared.records).clear();
            lock(&shared.faults).clear();
            lock(&shared.sinks).clear();
            write_json(w, 200, &[], &json!({"cleared": true}), keep)?;
        }
        ("POST", "/_mock/faults") => {
            let parsed = serde_json::from_slice::<Value>(&req.body)
                .map_err(|e| format!("invalid JSON: {e}"))
                .and_then(|v| FaultRule::parse(&v));
            match parsed {
                Ok(rule) => {
                    let mut faults = lock(&shared.faults);
                    faults.push(rule);
                    let queued = faults.len();
                    drop(faults);
                    write_json(w, 200, &[], &json!({"queued": queued}), keep)?;
                }
                Err(msg) => write_json(w, 400, &[], &json!({"error": msg}), keep)?,
            }
        }
        ("DELETE", "/_mock/faults") => {
            lock(&shared.faults).clear();
            write_json(w, 200, &[], &json!({"cleared": true}), keep)?;
        }
        ("GET", "/_mock/health") => write_json(w, 200, &[], &json!({"ok": true}), keep)?,
        _ => {
            let msg = format!("mock: no control endpoint {} {}", req.method, req.target);
            write_json(w, 404, &[], &json!({ "error": msg }), keep)?;
        }
    }
    Ok(Next::KeepAlive)
}

/// What to do to one answer. Fields combine.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fault {
    delay_ms: u64,
    status: Option<u16>,
    malformed: bool,
    cut_after: Option<u64>,
    drip_ms: u64,
    /// Close the connection without answering.
    reset: bool,
    /// The reply text, as `x-mock-reply` forces it.
    reply: Option<String>,
    /// The body is not JSON (an HTML page), or a stream's second event is not.
    not_json: bool,
    /// The body, verbatim, instead of the answer (JSON answers).
    body: Option<String>,
    /// Bytes of padding words appended to the reply text.
    pad: u64,
    /// A byte that is not UTF-8 in the answer.
    invalid_utf8: bool,
    /// The answer's `content-type`, replaced.
    content_type: Option<String>,
    /// The body gzip-encoded.
    gzip: bool,
}

/// Closes the connection without a byte of answer (the request was read).
fn reset(w: &mut TcpStream) -> io::Result<Next> {
    let _ = w.shutdown(Shutdown::Both);
    Ok(Next::Close)
}

impl Fault {
    fn parse(v: &Value) -> Result<Fault, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("fault must be an object, got {v}"))?;
        let mut fault = Fault::default();
        for (key, val) in obj {
            let int = || {
                val.as_u64()
                    .ok_or_else(|| format!("fault.{key} must be a non-negative integer"))
            };
            let boolean = || {
                val.as_bool()
                    .ok_or_else(|| format!("fault.{key} must be a boolean"))
            };
            let string = || {
                val.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("fault.{key} must be a string"))
            };
            match key.as_str() {
                "delay_ms" => fault.delay_ms = int()?,
                "drip_ms" => fault.drip_ms = int()?,
                "cut_after" => fault.cut_after = Some(int()?),
                "status" => {
                    let status = int()?;
                    if !(200..=599).contains(&status) {
                        return Err(format!("fault.status {status} out of range 200..=599"));
                    }
                    fault.status = Some(status as u16);
                }
                "malformed" => fault.malformed = boolean()?,
                "reset" => fault.reset = boolean()?,
                "reply" => fault.reply = Some(string()?),
                "body" => fault.body = Some(string()?),
                "content_type" => fault.content_type = Some(string()?),
                "pad" => fault.pad = int()?.min(MAX_PAD),
                "not_json" => fault.not_json = boolean()?,
                "invalid_utf8" => fault.invalid_utf8 = boolean()?,
                "gzip" => fault.gzip = boolean()?,
                other => return Err(format!("unknown fault field {other:?}")),
            }
        }
        Ok(fault)
    }
}

/// The most padding a fault may ask for (64 MiB).
const MAX_PAD: u64 = 64 * 1024 * 1024;
/// The length of one padding word.
const PAD_WORD: usize = 64 * 1024;
/// What `not_json` answers.
const NOT_JSON: &str = "<html><body><h1>502 Bad Gateway</h1></body></html>";

impl Fault {
    /// The reply text `pad` asks for: a short sentence, then words of [`PAD_WORD`] bytes.
    fn padded_reply(&self) -> Option<String> {
        if self.pad == 0 {
            return None;
        }
        let pad = usize::try_from(self.pad).unwrap_or(usize::MAX);
        let mut text = String::from("padded answer");
        while text.len() < pad {
            text.push(' ');
            text.extend(std::iter::repeat_n('x', PAD_WORD));
        }
        Some(text)
    }

    /// A JSON answer's body with the body faults applied.
    fn json_body(&self, mut text: Vec<u8>) -> Vec<u8> {
        if let Some(body) = &self.body {
            text = body.clone().into_bytes();
        }
        if self.not_json {
            text = NOT_JSON.as_bytes().to_vec();
        }
        if self.malformed {
            text.truncate(text.len() / 2);
        }
        if self.invalid_utf8 {
            corrupt_utf8(&mut text);
        }
        text
    }

    /// A stream's events with the event faults applied.
    #[cfg(test)]
    fn events(&self, events: Vec<String>) -> Vec<Vec<u8>> {
        self.frames(
            events.into_iter().map(String::into_bytes).collect(),
            |ev| truncate_event(&String::from_utf8_lossy(ev)).into_bytes(),
            |_| {},
        )
    }

    /// [`Fault::events`] for events of any framing: `malformed` makes the second one invalid with
    /// `malform` (SSE: its JSON cut in half; Bedrock's event stream: a CRC that no longer matches);
    /// `invalid_utf8` corrupts the first event that carries a `reply`, then `reseal`s it (Bedrock: its
    /// CRC recomputed).
    fn frames(
        &self,
        mut events: Vec<Vec<u8>>,
        malform: impl Fn(&[u8]) -> Vec<u8>,
        reseal: impl Fn(&mut [u8]),
    ) -> Vec<Vec<u8>> {
        if let Some(ev) = events.get_mut(1) {
            if self.malformed {
                *ev = malform(ev);
            }
            if self.not_json {
                // The event keeps its name (Anthropic's), only its data is not JSON.
                let text = String::from_utf8_lossy(ev).into_owned();
                let name = text.lines().find(|l| l.starts_with("event:"));
                let name = name.map(|l| format!("{l}\n")).unwrap_or_default();
                *ev = format!("{name}data: {NOT_JSON}\n\n").into_bytes();
            }
        }
        if self.invalid_utf8 {
            for ev in &mut events {
                if corrupt_utf8(ev) {
                    reseal(ev);
                    break;
                }
            }
        }
        events
    }
}

/// Replaces the second byte of the first `reply` in `bytes` with 0xFF (never valid in UTF-8); returns
/// whether there was one.
fn corrupt_utf8(bytes: &mut [u8]) -> bool {
    let Some(at) = bytes.windows(5).position(|w| w == b"reply") else {
        return false;
    };
    if let Some(b) = bytes.get_mut(at + 1) {
        *b = 0xFF;
    }
    true
}

/// `data` as a gzip member (RFC 1952) of stored deflate blocks (RFC 1951 §3.2.4): valid gzip that any
/// decoder reads, without a compressor.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = u8::from(blocks.peek().is_none());
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&shared::crypto::crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[derive(Debug, Clone)]
struct FaultRule {
    path_prefix: Option<String>,
    model: Option<String>,
    /// Remaining uses; 0 = forever.
    times: u64,
    fault: Fault,
}

impl FaultRule {
    fn parse(v: &Value) -> Result<FaultRule, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("fault rule must be an object, got {v}"))?;
        let mut rule = FaultRule {
            path_prefix: None,
            model: None,
            times: 1,
            fault: Fault::default(),
        };
        let mut has_fault = false;
        for (key, val) in obj {
            let string = || {
                val.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{key} must be a string"))
            };
            match key.as_str() {
                "path_prefix" => rule.path_prefix = Some(string()?),
                "model" => rule.model = Some(string()?),
                "times" => rule.times = val.as_u64().ok_or("times must be a non-negative integer")?,
                "fault" => {
                    rule.fault = Fault::parse(val)?;
                    has_fault = true;
                }
                other => return Err(format!("unknown fault rule field {other:?}")),
            }
        }
        if !has_fault {
            return Err("fault rule needs a \"fault\" object".to_string());
        }
        Ok(rule)
    }

    fn matches(&self, path: &str, model: Option<&str>) -> bool {
        self.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
            && self.model.as_deref().is_none_or(|m| model == Some(m))
    }
}

/// The fault for this request: the `x-mock-fault` header, else the first matching queued rule (whose
/// `times` is then decremented).
fn resolve_fault(shared: &Shared, req: &Request, model: Option<&str>) -> Result<Fault, String> {
    if let Some(header) = req.header("x-mock-fault") {
        let v: Value = serde_json::from_str(header).map_err(|e| format!("x-mock-fault is not JSON: {e}"))?;
        return Fault::parse(&v);
    }
    let mut faults = lock(&shared.faults);
    let path = req.target.as_str();
    let Some(index) = faults.iter().position(|r| r.matches(path, model)) else {
        return Ok(Fault::default());
    };
    let Some(rule) = faults.get_mut(index) else {
        return Ok(Fault::default());
    };
    let fault = rule.fault.clone();
    if rule.times > 0 {
        rule.times -= 1;
        if rule.times == 0 {
            faults.remove(index);
        }
    }
    Ok(fault)
}

/// Cuts the JSON of an SSE event's `data:` line in half (the event keeps its framing).
fn truncate_event(ev: &str) -> String {
    let mut out = String::new();
    for line in ev.trim_end_matches('\n').split('\n') {
        match line.strip_prefix("data: ") {
            Some(data) => {
                let cut = data
                    .char_indices()
                    .nth(data.chars().count() / 2)
                    .map_or(data.len(), |(i, _)| i);
                out.push_str("data: ");
                out.push_str(data.get(..cut).unwrap_or(data));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out.push('\n');
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

fn head_text(status: u16, headers: &[(&str, String)], keep: bool) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !keep {
        head.push_str("connection: close\r\n");
    }
    head
}

fn write_json(
    w: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &Value,
    keep: bool,
) -> io::Result<()> {
    let text = body.to_string();
    let mut all = vec![("content-type", "application/json".to_string())];
    all.extend_from_slice(headers);
    all.push(("content-length", text.len().to_string()));
    let mut out = head_text(status, &all, keep).into_bytes();
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(text.as_bytes());
    w.write_all(&out)?;
    w.flush()
}

fn write_simple(w: &mut TcpStream, status: u16, msg: &str, keep: bool) -> io::Result<()> {
    write_json(w, status, &[], &json!({ "error": msg }), keep)
}

/// A Content-Length answer; with `cut_after: n` only the first n body bytes are sent and the connection
/// is closed. `content_type` and `gzip` faults change the head and body; `drip_ms` sends the body in
/// four pieces with that sleep between.
fn write_body(
    w: &mut TcpStream,
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
    fault: &Fault,
    keep: bool,
) -> io::Result<Next> {
    let gzipped;
    let body = if fault.gzip {
        gzipped = gzip_stored(body);
        gzipped.as_slice()
    } else {
        body
    };
    let content_type = fault.content_type.as_deref().unwrap_or(content_type);
    let mut all = vec![("content-type", content_type.to_string())];
    all.extend_from_slice(headers);
    if fault.gzip {
        all.push(("content-encoding", "gzip".to_string()));
    }
    all.push(("content-length", body.len().to_string()));
    let mut out = head_text(status, &all, keep || fault.cut_after.is_some()).into_bytes();
    out.extend_from_slice(b"\r\n");
    match fault.cut_after {
        Some(n) => {
            let cut = (n as usize).min(body.len().saturating_sub(1));
            out.extend_from_slice(body.get(..cut).unwrap_or_default());
            w.write_all(&out)?;
            w.flush()?;
            let _ = w.shutdown(Shutdown::Both);
            Ok(Next::Close)
        }
        None if fault.drip_ms > 0 => {
            w.write_all(&out)?;
            w.flush()?;
            let piece = body.len().div_ceil(4).max(1);
            for (i, part) in body.chunks(piece).enumerate() {
                if i > 0 {
                    thread::sleep(Duration::from_millis(fault.drip_ms));
                }
                w.write_all(part)?;
                w.flush()?;
            }
            Ok(Next::KeepAlive)
        }
        None => {
            out.extend_from_slice(body);
            w.write_all(&out)?;
            w.flush()?;
            Ok(Next::KeepAlive)
        }
    }
}

/// An SSE answer, each event written and flushed as its own HTTP chunk. `drip_ms` sleeps between
/// events; `cut_after: n` sends n events and closes the connection without the terminating chunk;
/// `gzip` sends the events gzip-encoded as one chunk; `content_type` replaces `text/event-stream`.
fn write_stream(
    w: &mut TcpStream,
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    events: &[Vec<u8>],
    fault: &Fault,
    keep: bool,
) -> io::Result<Next> {
    let content_type = fault.content_type.as_deref().unwrap_or(content_type);
    let mut all = vec![
        ("content-type", content_type.to_string()),
        ("cache-control", "no-cache".to_string()),
    ];
    all.extend_from_slice(headers);
    if fault.gzip {
        all.push(("content-encoding", "gzip".to_string()));
    }
    all.push(("transfer-encoding", "chunked".to_string()));
    let mut head = head_text(status, &all, keep || fault.cut_after.is_some()).into_bytes();
    head.extend_from_slice(b"\r\n");
    w.write_all(&head)?;
    w.flush()?;
    let gzipped;
    let events: &[Vec<u8>] = if fault.gzip {
        gzipped = vec![gzip_stored(&events.concat())];
        &gzipped
    } else {
        events
    };
    for (i, event) in events.iter().enumerate() {
        if fault.cut_after.is_some_and(|n| i as u64 >= n) {
            break;
        }
        if i > 0 && fault.drip_ms > 0 {
            thread::sleep(Duration::from_millis(fault.drip_ms));
        }
        let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
        chunk.extend_from_slice(event);
        chunk.extend_from_slice(b"\r\n");
        w.write_all(&chunk)?;
        w.flush()?;
    }
    if fault.cut_after.is_some() {
        let _ = w.shutdown(Shutdown::Both);
        return Ok(Next::Close);
    }
    w.write_all(b"0\r\n\r\n")?;
    w.flush()?;
    Ok(Next::KeepAlive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_parsing() {
        let f = Fault::parse(
            &json!({"delay_ms": 5, "status": 429, "malformed": true, "cut_after": 2, "drip_ms": 1, "reset": true, "reply": "x"}),
        )
        .unwrap();
        assert_eq!(
            f,
            Fault {
                delay_ms: 5,
                status: Some(429),
                malformed: true,
                cut_after: Some(2),
                drip_ms: 1,
                reset: true,
                reply: Some("x".into()),
                ..Fault::default()
            }
        );
        assert!(Fault::parse(&json!({"reset": 1})).is_err());
        assert!(Fault::parse(&json!({"delay": 5})).is_err());
        assert!(Fault::parse(&json!({"status": 42})).is_err());
        assert!(FaultRule::parse(&json!({"times": 1})).is_err());
        assert!(FaultRule::parse(&json!({"fault": {}, "extra": 1})).is_err());
    }

    #[test]
    fn new_faults_parse_and_shape_answers() {
        let f = Fault::parse(
            &json!({"not_json": true, "invalid_utf8": true, "gzip": true, "pad": 70000,
            "content_type": "text/plain", "body": "{}"}),
        )
        .unwrap();
        assert!(f.not_json && f.invalid_utf8 && f.gzip);
        assert_eq!(f.content_type.as_deref(), Some("text/plain"));
        assert_eq!(f.body.as_deref(), Some("{}"));
        let padded = f.padded_reply().unwrap();
        assert!(padded.len() >= 70000 && padded.split(' ').all(|w| w.len() <= PAD_WORD));
        assert!(Fault::parse(&json!({"gzip": "yes"})).is_err());

        let bad = Fault {
            invalid_utf8: true,
            ..Fault::default()
        };
        let out = bad.json_body(br#"{"content":"mock reply to: hi"}"#.to_vec());
        assert!(std::str::from_utf8(&out).is_err());
        let events = bad.events(vec!["data: {}\n\n".into(), "data: {\"c\":\"reply\"}\n\n".into()]);
        assert!(std::str::from_utf8(&events[0]).is_ok());
        assert!(std::str::from_utf8(&events[1]).is_err());
        let html = Fault {
            not_json: true,
            ..Fault::default()
        };
        assert_eq!(html.json_body(b"{}".to_vec()), NOT_JSON.as_bytes());
        assert_eq!(
            html.events(vec!["a".into(), "b".into()])[1],
            format!("data: {NOT_JSON}\n\n").into_bytes()
        );
    }

    /// Reads a gzip member of stored blocks back (what `gzip_stored` writes), checking its CRC.
    fn gunzip_stored(gz: &[u8]) -> Vec<u8> {
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        let mut at = 10;
        let mut out = Vec::new();
        loop {
            let last = gz[at] & 1;
            assert_eq!(gz[at] & 6, 0, "stored block");
            let len = u16::from_le_bytes([gz[at + 1], gz[at + 2]]) as usize;
            let nlen = u16::from_le_bytes([gz[at + 3], gz[at + 4]]);
            assert_eq!(!(len as u16), nlen);
            out.extend_from_slice(&gz[at + 5..at + 5 + len]);
            at += 5 + len;
            if last == 1 {
                break;
            }
        }
        let crc = u32::from_le_bytes(gz[at..at + 4].try_into().unwrap());
        assert_eq!(crc, shared::crypto::crc32(&out));
        assert_eq!(gz.len(), at + 8);
        out
    }

    #[test]
    fn gzip_members_read_back() {
        for data in [Vec::new(), b"hello".to_vec(), vec![7u8; 200_000]] {
            assert_eq!(gunzip_stored(&gzip_stored(&data)), data);
        }
    }

    #[test]
    fn truncated_event_keeps_framing() {
        let ev = "event: x\ndata: {\"a\":\"bcdef\"}\n\n";
        let t = truncate_event(ev);
        assert!(t.starts_with("event: x\ndata: {\"a\""));
        assert!(t.ends_with("\n\n"));
        assert!(
            serde_json::from_str::<Value>(t.lines().nth(1).unwrap().trim_start_matches("data: ")).is_err()
        );
    }
}
