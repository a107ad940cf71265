//! Deterministic mock LLM providers on one port: OpenAI, Azure OpenAI and Anthropic chat endpoints
//! (JSON and SSE), request records and fault injection. Plain `std::net`, one thread per connection,
//! HTTP/1.1 keep-alive, Content-Length and chunked request bodies.
//!
//! Endpoints:
//! - `POST /v1/chat/completions` (OpenAI; `authorization: Bearer <key>`)
//! - `POST /openai/deployments/{d}/chat/completions?api-version=X` (Azure; `api-key`)
//! - `POST /v1/messages` (Anthropic; `x-api-key`, `anthropic-version`, `max_tokens`)
//! - `GET /_mock/requests` (records), `DELETE /_mock/requests` (clear records and faults),
//!   `POST /_mock/faults` (queue a fault rule), `DELETE /_mock/faults` (clear faults), `GET /_mock/health`.
//!
//! A fault is `{"delay_ms", "status", "malformed", "cut_after", "drip_ms"}` (any combination), given per
//! request in the `x-mock-fault` header or queued with `POST /_mock/faults`
//! `{"path_prefix", "model", "times" (default 1, 0 = forever), "fault"}`.
//!
//! Reply text is `"mock reply to: " + <text of the last user message>`; usage counts whitespace
//! separated [`words`] (`x-mock-usage: P,C` overrides).
//!
//! `x-mock-reply: <text>` replaces the reply text (streamed word by word as usual), and
//! `x-mock-reply: ["piece", "piece", ...]` (a JSON array of strings) replaces it with the pieces joined,
//! streamed one event per piece: tests use it to make a provider answer with given text, cut where they
//! choose (e.g. PII or a placeholder split across events).

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::http::{read_body, read_head, Head};

/// The fixed `created` timestamp of every OpenAI-style answer (keeps answers deterministic).
pub const CREATED: u64 = 1_700_000_000;

/// Prefix of every reply text.
pub const REPLY_PREFIX: &str = "mock reply to: ";

/// Number of whitespace-separated words in `s`: the mock's token count.
pub fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The reply text the mock gives to a last user message with text `user_text`.
pub fn reply_to(user_text: &str) -> String {
    format!("{REPLY_PREFIX}{user_text}")
}

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

    /// Clears records and faults (the same as `DELETE /_mock/requests`).
    pub fn clear(&self) {
        lock(&self.shared.records).clear();
        lock(&self.shared.faults).clear();
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
struct Request {
    method: String,
    /// Path with query.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }

    fn query(&self, key: &str) -> Option<&str> {
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
            .any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue"))
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
        .filter(|(n, _)| n == "connection")
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

#[derive(Debug, Clone, PartialEq)]
enum Provider {
    OpenAi,
    Azure(String),
    Anthropic,
}

impl Provider {
    fn name(&self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Azure(_) => "azure",
            Provider::Anthropic => "anthropic",
        }
    }
}

fn route(path: &str) -> Option<Provider> {
    if path == "/v1/chat/completions" {
        return Some(Provider::OpenAi);
    }
    if path == "/v1/messages" {
        return Some(Provider::Anthropic);
    }
    let rest = path.strip_prefix("/openai/deployments/")?;
    let deployment = rest.strip_suffix("/chat/completions")?;
    (!deployment.is_empty() && !deployment.contains('/')).then(|| Provider::Azure(deployment.to_string()))
}

fn handle(shared: &Shared, req: &Request, w: &mut TcpStream, keep: bool) -> io::Result<Next> {
    let path = req.path();
    if path.starts_with("/_mock/") {
        return handle_control(shared, req, w, keep);
    }
    let json: Option<Value> = serde_json::from_slice(&req.body).ok();
    record(shared, req, json.as_ref());
    let Some(provider) = route(path) else {
        let body = json!({"error": {"message": format!("mock: no route for {} {}", req.method, req.target),
            "type": "invalid_request_error", "param": null, "code": "not_found"}});
        write_json(w, 404, &[], &body, keep)?;
        return Ok(Next::KeepAlive);
    };
    if req.method != "POST" {
        let body = provider_error(
            &provider,
            405,
            &format!("mock: method {} not allowed", req.method),
        );
        write_json(w, 405, &[("allow", "POST".to_string())], &body, keep)?;
        return Ok(Next::KeepAlive);
    }
    handle_provider(shared, req, &provider, json.as_ref(), w, keep)
}

fn record(shared: &Shared, req: &Request, json: Option<&Value>) {
    let mut headers = Map::new();
    for (name, value) in &req.headers {
        match headers.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
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
                "malformed" => {
                    fault.malformed = val
                        .as_bool()
                        .ok_or_else(|| "fault.malformed must be a boolean".to_string())?
                }
                other => return Err(format!("unknown fault field {other:?}")),
            }
        }
        Ok(fault)
    }
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

/// The text of a message `content`: a string, or the `text` of its text parts joined with " ".
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                    o.get("text").and_then(Value::as_str)
                }
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The deterministic answer to one request.
struct Answer {
    model: String,
    reply: String,
    /// Stream pieces given by `x-mock-reply` as a JSON array; otherwise the reply's words.
    pieces: Option<Vec<String>>,
    prompt_tokens: u64,
    completion_tokens: u64,
    stream: bool,
    include_usage: bool,
}

/// Checks auth and the body; `Err((status, message))` is answered as a provider error.
fn validate(provider: &Provider, req: &Request, json: Option<&Value>) -> Result<(), (u16, String)> {
    let non_empty = |name: &str| req.header(name).is_some_and(|v| !v.trim().is_empty());
    match provider {
        Provider::OpenAi => {
            let bearer = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "));
            if bearer.is_none_or(|k| k.trim().is_empty()) {
                return Err((401, "mock: missing or invalid authorization: Bearer <key>".into()));
            }
        }
        Provider::Azure(_) => {
            if !non_empty("api-key") {
                return Err((401, "mock: missing api-key header".into()));
            }
            if req.query("api-version").is_none_or(str::is_empty) {
                return Err((400, "mock: missing api-version query parameter".into()));
            }
        }
        Provider::Anthropic => {
            if !non_empty("x-api-key") {
                return Err((401, "mock: missing x-api-key header".into()));
            }
            if !non_empty("anthropic-version") {
                return Err((401, "mock: missing anthropic-version header".into()));
            }
        }
    }
    let Some(body) = json.and_then(Value::as_object) else {
        return Err((400, "mock: body is not a JSON object".into()));
    };
    let messages = match body.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m,
        _ => return Err((400, "mock: messages must be a non-empty array".into())),
    };
    if let Some(stream) = body.get("stream") {
        if !stream.is_boolean() && !stream.is_null() {
            return Err((400, "mock: stream must be a boolean".into()));
        }
    }
    if !matches!(provider, Provider::Azure(_)) && !body.get("model").is_some_and(Value::is_string) {
        return Err((400, "mock: model must be a string".into()));
    }
    if *provider == Provider::Anthropic {
        if body
            .get("max_tokens")
            .and_then(Value::as_u64)
            .is_none_or(|n| n < 1)
        {
            return Err((400, "mock: max_tokens: field required (integer >= 1)".into()));
        }
        for m in messages {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            if role != "user" && role != "assistant" {
                return Err((
                    400,
                    format!("mock: messages role must be user or assistant, got {role:?}"),
                ));
            }
        }
        if let Some(system) = body.get("system") {
            if !system.is_string() && !system.is_array() {
                return Err((
                    400,
                    "mock: system must be a string or an array of text blocks".into(),
                ));
            }
        }
    }
    Ok(())
}

fn answer(provider: &Provider, req: &Request, body: &Value) -> Result<Answer, String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    let mut reply = reply_to(&content_text(last_user.and_then(|m| m.get("content"))));
    let mut given_pieces = None;
    if let Some(given) = req.header("x-mock-reply") {
        match serde_json::from_str::<Vec<String>>(given) {
            Ok(list) => {
                reply = list.concat();
                given_pieces = Some(list);
            }
            Err(_) => reply = given.to_string(),
        }
    }
    let mut prompt_tokens: u64 = messages
        .iter()
        .map(|m| words(&content_text(m.get("content"))))
        .sum();
    if *provider == Provider::Anthropic {
        prompt_tokens += words(&content_text(body.get("system")));
    }
    let mut completion_tokens = words(&reply);
    if let Some(usage) = req.header("x-mock-usage") {
        let parsed = usage
            .split_once(',')
            .and_then(|(p, c)| Some((p.trim().parse::<u64>().ok()?, c.trim().parse::<u64>().ok()?)));
        let Some((p, c)) = parsed else {
            return Err(format!(
                "mock: x-mock-usage must be \"<prompt>,<completion>\", got {usage:?}"
            ));
        };
        prompt_tokens = p;
        completion_tokens = c;
    }
    let model = match provider {
        Provider::Azure(deployment) => deployment.clone(),
        _ => body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Answer {
        model,
        reply,
        pieces: given_pieces,
        prompt_tokens,
        completion_tokens,
        stream,
        include_usage,
    })
}

/// An error body in the provider's shape.
fn provider_error(provider: &Provider, status: u16, message: &str) -> Value {
    match provider {
        Provider::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ if status >= 500 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Provider::OpenAi | Provider::Azure(_) => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                403 => ("permission_error", Value::Null),
                404 => ("invalid_request_error", json!("not_found")),
                429 => ("rate_limit_error", json!("rate_limit_exceeded")),
                _ if status >= 500 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
    }
}

fn handle_provider(
    shared: &Shared,
    req: &Request,
    provider: &Provider,
    json: Option<&Value>,
    w: &mut TcpStream,
    keep: bool,
) -> io::Result<Next> {
    let provider_header = [("x-mock-provider", provider.name().to_string())];
    let model_for_faults = match provider {
        Provider::Azure(d) => Some(d.as_str()),
        _ => json.and_then(|j| j.get("model")).and_then(Value::as_str),
    };
    let fault = match resolve_fault(shared, req, model_for_faults) {
        Ok(f) => f,
        Err(msg) => {
            write_json(
                w,
                400,
                &provider_header,
                &provider_error(provider, 400, &msg),
                keep,
            )?;
            return Ok(Next::KeepAlive);
        }
    };
    if fault.delay_ms > 0 {
        thread::sleep(Duration::from_millis(fault.delay_ms));
    }
    let error = |w: &mut TcpStream, status: u16, msg: &str| -> io::Result<Next> {
        let mut headers = provider_header.to_vec();
        if status == 429 {
            headers.push(("retry-after", "1".to_string()));
        }
        write_json(w, status, &headers, &provider_error(provider, status, msg), keep)?;
        Ok(Next::KeepAlive)
    };
    if let Err((status, msg)) = validate(provider, req, json) {
        return error(w, status, &msg);
    }
    if let Some(status) = fault.status {
        if status >= 300 {
            return error(w, status, &format!("mock: injected fault status {status}"));
        }
    }
    let body = json.cloned().unwrap_or(Value::Null);
    let ans = match answer(provider, req, &body) {
        Ok(a) => a,
        Err(msg) => return error(w, 400, &msg),
    };
    let n = shared.next_id.fetch_add(1, Ordering::SeqCst) + 1;
    let status = fault.status.unwrap_or(200);
    if ans.stream {
        let mut events = match provider {
            Provider::Anthropic => anthropic_events(n, &ans),
            _ => openai_events(n, &ans),
        };
        if fault.malformed {
            if let Some(ev) = events.get_mut(1) {
                *ev = truncate_event(ev);
            }
        }
        write_stream(w, status, &provider_header, &events, &fault, keep)
    } else {
        let value = match provider {
            Provider::Anthropic => anthropic_json(n, &ans),
            _ => openai_json(n, &ans),
        };
        let mut text = value.to_string().into_bytes();
        if fault.malformed {
            text.truncate(text.len() / 2);
        }
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

fn usage_openai(a: &Answer) -> Value {
    json!({"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
        "total_tokens": a.prompt_tokens + a.completion_tokens})
}

fn openai_json(n: u64, a: &Answer) -> Value {
    json!({
        "id": format!("chatcmpl-mock-{n}"),
        "object": "chat.completion",
        "created": CREATED,
        "model": a.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": a.reply}, "finish_reason": "stop"}],
        "usage": usage_openai(a),
    })
}

/// The reply split into stream pieces: each word followed by a space, the last without.
fn pieces(reply: &str) -> Vec<String> {
    let ws: Vec<&str> = reply.split_whitespace().collect();
    let last = ws.len().saturating_sub(1);
    ws.iter()
        .enumerate()
        .map(|(i, w)| if i < last { format!("{w} ") } else { w.to_string() })
        .collect()
}

fn openai_events(n: u64, a: &Answer) -> Vec<String> {
    let id = format!("chatcmpl-mock-{n}");
    let chunk = |delta: Value, finish: Value| {
        let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": a.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if a.include_usage {
            v["usage"] = Value::Null;
        }
        format!("data: {v}\n\n")
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    for piece in a.pieces.clone().unwrap_or_else(|| pieces(&a.reply)) {
        events.push(chunk(json!({ "content": piece }), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if a.include_usage {
        let v = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": a.model,
            "choices": [], "usage": usage_openai(a)});
        events.push(format!("data: {v}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

fn anthropic_json(n: u64, a: &Answer) -> Value {
    json!({
        "id": format!("msg_mock_{n}"),
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": [{"type": "text", "text": a.reply}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens},
    })
}

fn anthropic_events(n: u64, a: &Answer) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": format!("msg_mock_{n}"), "type": "message",
                "role": "assistant", "model": a.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": a.prompt_tokens, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    for piece in a.pieces.clone().unwrap_or_else(|| pieces(&a.reply)) {
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": a.completion_tokens}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
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
/// is closed.
fn write_body(
    w: &mut TcpStream,
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
    fault: &Fault,
    keep: bool,
) -> io::Result<Next> {
    let mut all = vec![("content-type", content_type.to_string())];
    all.extend_from_slice(headers);
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
        None => {
            out.extend_from_slice(body);
            w.write_all(&out)?;
            w.flush()?;
            Ok(Next::KeepAlive)
        }
    }
}

/// An SSE answer, each event written and flushed as its own HTTP chunk. `drip_ms` sleeps between
/// events; `cut_after: n` sends n events and closes the connection without the terminating chunk.
fn write_stream(
    w: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    events: &[String],
    fault: &Fault,
    keep: bool,
) -> io::Result<Next> {
    let mut all = vec![
        ("content-type", "text/event-stream".to_string()),
        ("cache-control", "no-cache".to_string()),
    ];
    all.extend_from_slice(headers);
    all.push(("transfer-encoding", "chunked".to_string()));
    let mut head = head_text(status, &all, keep || fault.cut_after.is_some()).into_bytes();
    head.extend_from_slice(b"\r\n");
    w.write_all(&head)?;
    w.flush()?;
    for (i, event) in events.iter().enumerate() {
        if fault.cut_after.is_some_and(|n| i as u64 >= n) {
            break;
        }
        if i > 0 && fault.drip_ms > 0 {
            thread::sleep(Duration::from_millis(fault.drip_ms));
        }
        let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
        chunk.extend_from_slice(event.as_bytes());
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
    fn words_and_pieces() {
        assert_eq!(words("  a b\tc\n"), 3);
        assert_eq!(words(""), 0);
        assert_eq!(
            pieces("mock reply to: hi  there"),
            vec!["mock ", "reply ", "to: ", "hi ", "there"]
        );
    }

    #[test]
    fn content_text_joins_parts() {
        let c =
            json!([{"type": "text", "text": "a b"}, {"type": "image_url"}, {"type": "text", "text": "c"}]);
        assert_eq!(content_text(Some(&c)), "a b c");
        assert_eq!(content_text(Some(&json!("x"))), "x");
        assert_eq!(content_text(None), "");
    }

    #[test]
    fn fault_parsing() {
        let f = Fault::parse(
            &json!({"delay_ms": 5, "status": 429, "malformed": true, "cut_after": 2, "drip_ms": 1}),
        )
        .unwrap();
        assert_eq!(
            f,
            Fault {
                delay_ms: 5,
                status: Some(429),
                malformed: true,
                cut_after: Some(2),
                drip_ms: 1
            }
        );
        assert!(Fault::parse(&json!({"delay": 5})).is_err());
        assert!(Fault::parse(&json!({"status": 42})).is_err());
        assert!(FaultRule::parse(&json!({"times": 1})).is_err());
        assert!(FaultRule::parse(&json!({"fault": {}, "extra": 1})).is_err());
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
