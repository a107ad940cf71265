//! The ai-proxy policy: pick a target for the client's model, translate the request for its provider,
//! translate the answer back to OpenAI's shape, and account for tokens, cost and latency.

use crate::attempt::{self, Failure, Wanted};
use crate::breaker::{self, Admit};
use crate::config::{Config, Model, Provider, Target};
use serde_json::{json, Value};
use shared::anthropic::{self, AnthropicStream};
use shared::chat::Class;
use shared::error::ApiError;
use shared::host::{
    Body, CallResponse, Host, LocalReply, LogLevel, Policy, ResponseMode, Route, Step, WholeResponse,
};
use shared::metrics;
use shared::openai::{self, ChatRequest, OpenAiStream};
use shared::rand::{stable_hash, Rng};
use shared::usage::{self, Usage};
use std::rc::Rc;

/// The requests this filter translates: OpenAI Chat Completions, classified as every filter does.
static CHAT: std::sync::LazyLock<shared::chat::Routes> =
    std::sync::LazyLock::new(|| shared::chat::Routes::apis(&[shared::chat::Api::ChatCompletions]));
const MODELS_PATH: &str = "/v1/models";
/// Bound on the copy of a JSON response kept to read its usage.
const MAX_OBSERVED: usize = 8 * 1024 * 1024;

pub struct AiProxy {
    config: Rc<Config>,
    rng: Rng,
    stage: Stage,
}

enum Stage {
    /// Not a request we handle.
    Idle,
    AwaitingBody {
        start_ms: u64,
    },
    Routed(Box<Routed>),
}

struct Routed {
    start_ms: u64,
    target: usize,
    client_model: String,
    /// The client asked for a stream and for the usage chunk itself.
    include_usage: bool,
    /// We added `include_usage` upstream, so the usage chunk must be stripped again.
    injected_usage: bool,
    status: u16,
    body: ResponseBody,
    usage: Option<Usage>,
    /// Callout mode: the filter makes the upstream calls and answers itself.
    attempts: Option<Box<Attempts>>,
}

/// Where a request stands in its chain of targets (callout mode).
struct Attempts {
    req: ChatRequest,
    /// The weighted first choice, then the model's fallback targets.
    chain: Vec<usize>,
    pos: usize,
    retries_left: u32,
    /// Calls made so far.
    count: u32,
    /// The client's credentials, for targets without a key of their own.
    client_auth: Option<String>,
    last_failure: Option<(usize, Failure)>,
    /// Earliest time an open breaker on this chain lets a probe through.
    reopen_at: Option<u64>,
}

enum ResponseBody {
    None,
    OpenAiStream(OpenAiStream),
    AnthropicStream(AnthropicStream),
    /// An OpenAI-shaped JSON answer, passed through; a copy is kept to read `usage` at the end.
    ObservedJson(Vec<u8>),
    /// Anthropic JSON (or an upstream error) rewritten whole at the end.
    Rewrite {
        anthropic: bool,
        ok: bool,
    },
}

impl AiProxy {
    pub fn new(config: Rc<Config>, seed: u64) -> Self {
        AiProxy {
            config,
            rng: Rng::new(seed),
            stage: Stage::Idle,
        }
    }

    fn reject(&self, host: &mut dyn Host, err: ApiError) -> LocalReply {
        host.counter_add(
            &metrics::name("ai_proxy_rejected_total", &[("code", err.code)]),
            1,
        );
        host.log(
            LogLevel::Info,
            &format!(
                "ai-proxy: rejected status={} code={}: {}",
                err.status, err.code, err.message
            ),
        );
        err.into()
    }

    fn target(&self, routed: &Routed) -> Option<&Target> {
        self.config.targets.get(routed.target)
    }

    /// Weighted choice among the model's targets; with a sticky header, the same value always
    /// lands on the same target (as long as the weights do not change).
    fn pick(&mut self, model: &str, sticky: Option<String>) -> Option<usize> {
        let routes = &self.config.models.get(model)?.routes;
        let total: u64 = routes.iter().map(|r| r.weight).sum();
        let mut point = match sticky {
            Some(v) => stable_hash(v.as_bytes()) % total.max(1),
            None => self.rng.below(total),
        };
        for r in routes {
            if point < r.weight {
                return Some(r.target);
            }
            point -= r.weight;
        }
        routes.last().map(|r| r.target)
    }

    fn models_list(&self, now_s: u64) -> LocalReply {
        let data: Vec<Value> = self
            .config
            .models
            .keys()
            .map(|m| json!({"id": m, "object": "model", "created": now_s, "owned_by": "ai-gateway"}))
            .collect();
        LocalReply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({"object": "list", "data": data}).to_string().into_bytes(),
        }
    }

    /// Parses the request and picks its model and first target.
    fn choose(&mut self, host: &dyn Host, body: &mut Body) -> Result<(ChatRequest, usize, bool), ApiError> {
        let value = body.json().map_err(|e| {
            ApiError::invalid_request("invalid_json", format!("request body is not valid JSON: {e}"))
        })?;
        let req = openai::chat_request(value.clone())?;
        let sticky = self
            .config
            .sticky_header
            .as_deref()
            .and_then(|h| host.request_header(h));
        let Some(index) = self.pick(&req.model, sticky) else {
            let known: Vec<&str> = self.config.models.keys().map(String::as_str).collect();
            return Err(ApiError::invalid_request(
                "model_not_found",
                format!(
                    "model `{}` is not available; use one of: {}",
                    req.model,
                    known.join(", ")
                ),
            ));
        };
        let callout = self
            .config
            .models
            .get(&req.model)
            .is_some_and(|m: &Model| m.callout);
        Ok((req, index, callout))
    }

    fn routed(start_ms: u64, target: usize, req: &ChatRequest, injected_usage: bool) -> Routed {
        Routed {
            start_ms,
            target,
            client_model: req.model.clone(),
            include_usage: req.include_usage,
            injected_usage,
            status: 0,
            body: ResponseBody::None,
            usage: None,
            attempts: None,
        }
    }

    /// Forward mode: rewrite the request for the target and let the proxy send it.
    fn forward(
        &mut self,
        host: &mut dyn Host,
        req: ChatRequest,
        index: usize,
        start_ms: u64,
        body: &mut Body,
    ) -> Step {
        let Some(target) = self.config.targets.get(index) else {
            return Step::Reply(internal_error());
        };
        let injected_usage = req.stream && !req.include_usage && target.provider != Provider::Anthropic;
        let upstream = match upstream_body(&req, target, injected_usage) {
            Ok(upstream) => upstream,
            Err(err) => {
                self.stage = Stage::Idle;
                return Step::Reply(self.reject(host, err));
            }
        };
        if let Err(e) = set_upstream_headers(host, target, &self.config.route_header) {
            // Never forward to the route's default upstream: the request may carry the target's key.
            self.stage = Stage::Idle;
            let err = ApiError::upstream(
                502,
                "routing_failed",
                format!("the request could not be routed to target `{}`: {e}", target.name),
            );
            return Step::Reply(self.reject(host, err));
        }
        self.stage = Stage::Routed(Box::new(Self::routed(start_ms, index, &req, injected_usage)));
        body.replace(upstream);
        Step::Continue
    }

    /// Callout mode: set up the chain and make the first call.
    fn start_attempts(&mut self, host: &mut dyn Host, req: ChatRequest, first: usize, start_ms: u64) -> Step {
        let fallback = self
            .config
            .models
            .get(&req.model)
            .map(|m| m.fallback.clone())
            .unwrap_or_default();
        let mut chain = vec![first];
        chain.extend(fallback.into_iter().filter(|t| *t != first));
        let mut routed = Self::routed(start_ms, first, &req, false);
        routed.attempts = Some(Box::new(Attempts {
            retries_left: self.config.targets.get(first).map_or(0, |t| t.resilience.retries),
            req,
            chain,
            pos: 0,
            count: 0,
            client_auth: host.request_header("authorization"),
            last_failure: None,
            reopen_at: None,
        }));
        self.stage = Stage::Routed(Box::new(routed));
        self.next_call(host)
    }

    /// The call for the current chain position, skipping targets whose breaker is open; the final
    /// answer when the chain is used up.
    fn next_call(&mut self, host: &mut dyn Host) -> Step {
        let config = Rc::clone(&self.config);
        let Stage::Routed(routed) = &mut self.stage else {
            return Step::Continue;
        };
        let Some(att) = routed.attempts.as_mut() else {
            return Step::Continue;
        };
        let now = host.now_ms();
        while let Some(&index) = att.chain.get(att.pos) {
            let Some(target) = config.targets.get(index) else {
                att.pos += 1;
                continue;
            };
            if target.resilience.breaker.is_some() {
                if let Admit::No { retry_at_ms } =
                    breaker::admit(host, &target.name, now, target.resilience.timeout_ms)
                {
                    host.counter_add(
                        &metrics::name("ai_proxy_breaker_skipped_total", &[("target", &target.name)]),
                        1,
                    );
                    att.reopen_at = Some(att.reopen_at.map_or(retry_at_ms, |r| r.min(retry_at_ms)));
                    att.pos += 1;
                    att.retries_left = next_retries(&config, &att.chain, att.pos);
                    continue;
                }
            }
            let injected = att.req.stream && !att.req.include_usage && target.provider != Provider::Anthropic;
            let body = match upstream_body(&att.req, target, injected) {
                Ok(b) => b,
                // This target cannot take the request (e.g. a feature Anthropic lacks): try the next.
                Err(err) => {
                    att.last_failure = Some((
                        index,
                        Failure::Status {
                            status: err.status,
                            body: err.body(),
                        },
                    ));
                    att.pos += 1;
                    att.retries_left = next_retries(&config, &att.chain, att.pos);
                    continue;
                }
            };
            att.count += 1;
            routed.target = index;
            routed.injected_usage = injected;
            return Step::call(attempt::call(target, body, host.kind(), att.client_auth.clone()));
        }
        // A client error is final and says nothing of the targets: it is the answer even when a breaker
        // was skipped on the way.
        let final_client_error = att
            .last_failure
            .as_ref()
            .is_some_and(|(_, f)| !f.is_target_fault());
        let (status, body, retry_after) = match (&att.last_failure, att.reopen_at) {
            (Some((index, failure)), reopen) if reopen.is_none() || final_client_error => {
                let provider = config
                    .targets
                    .get(*index)
                    .map_or(Provider::Openai, |t| t.provider);
                let (status, body) = failure.to_client(provider);
                (status, body, None)
            }
            (_, reopen_at) => {
                let wait_s = reopen_at.map_or(1, |r| r.saturating_sub(now).div_ceil(1000).max(1));
                let err = ApiError::new(
                    503,
                    "upstream_error",
                    "all_targets_unavailable",
                    format!(
                        "every target of model `{}` is unavailable; retry in {wait_s} s",
                        routed.client_model
                    ),
                );
                (503, err.body(), Some(wait_s))
            }
        };
        routed.status = status;
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-ai-attempts".to_string(), att.count.to_string()),
        ];
        if let Some(s) = retry_after {
            headers.push(("retry-after".to_string(), s.to_string()));
        }
        host.log(
            LogLevel::Warn,
            &format!(
                "ai-proxy: model={} failed after {} attempts, status={status}",
                routed.client_model, att.count
            ),
        );
        Step::Reply(LocalReply {
            status,
            headers,
            body,
        })
    }
}

/// The body sent to the target: the client's request with the upstream model, translated for Anthropic.
pub(crate) fn upstream_body(
    req: &ChatRequest,
    target: &Target,
    inject_usage: bool,
) -> Result<Vec<u8>, ApiError> {
    match target.provider {
        Provider::Anthropic => {
            anthropic::request_to_anthropic(req, &target.upstream_model, target.default_max_tokens)
        }
        Provider::Openai | Provider::OpenaiCompatible | Provider::Azure => {
            let mut body = req.body.clone();
            body.insert("model".into(), Value::String(target.upstream_model.clone()));
            if inject_usage {
                // Ask for the usage chunk so streams are counted; it is stripped before the client sees it.
                match body.get_mut("stream_options") {
                    Some(Value::Object(o)) => {
                        o.insert("include_usage".into(), Value::Bool(true));
                    }
                    _ => {
                        body.insert("stream_options".into(), json!({"include_usage": true}));
                    }
                }
            }
            serde_json::to_vec(&body)
                .map_err(|e| ApiError::new(500, "server_error", "internal_error", e.to_string()))
        }
    }
}

/// Points the request at the target on every host and replaces the client's credentials with the
/// target's. Without a configured key the client's own credentials pass through (self-hosted models).
/// Routing comes first: if it fails, no key has been written into the request.
fn set_upstream_headers(
    host: &mut dyn Host,
    target: &Target,
    route_header: &str,
) -> Result<(), shared::host::HostError> {
    host.route_to(&Route {
        cluster: &target.cluster,
        host: &target.host,
        path: &target.path,
        header: route_header,
    })?;
    host.set_request_header("content-type", Some("application/json"))?;
    // We must read the answer: no compressed upstream bodies.
    host.set_request_header("accept-encoding", None)?;
    if target.api_key.is_some() {
        for h in ["authorization", "api-key", "x-api-key"] {
            host.set_request_header(h, None)?;
        }
    }
    for (name, value) in attempt::credentials(target) {
        host.set_request_header(name, Some(&value))?;
    }
    Ok(())
}

fn internal_error() -> LocalReply {
    ApiError::new(500, "server_error", "internal_error", "target index out of range").into()
}

/// Retries allowed on the target at `pos` of `chain`.
fn next_retries(config: &Config, chain: &[usize], pos: usize) -> u32 {
    chain
        .get(pos)
        .and_then(|t| config.targets.get(*t))
        .map_or(0, |t| t.resilience.retries)
}

fn status_of(host: &dyn Host) -> u16 {
    host.response_header(":status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Policy for AiProxy {
    fn request_body_limit(&self) -> usize {
        self.config.max_body_bytes
    }

    fn on_request_headers(&mut self, host: &mut dyn Host, has_body: bool) -> Step {
        // Only this filter may choose the upstream cluster, never the client.
        if host.set_request_header(&self.config.route_header, None).is_err() {
            let err = ApiError::upstream(502, "routing_failed", "the routing header could not be cleared");
            return Step::Reply(self.reject(host, err));
        }
        let raw_path = host.request_header(":path").unwrap_or_default();
        let path = raw_path.split('?').next().unwrap_or_default();
        let method = host.request_header(":method").unwrap_or_default();
        match (CHAT.classify(&method, &raw_path), method.as_str(), path) {
            (Class::Chat(_), ..) if has_body => {
                self.stage = Stage::AwaitingBody {
                    start_ms: host.now_ms(),
                };
                Step::ReadBody
            }
            (Class::Chat(_), ..) => Step::Reply(self.reject(
                host,
                ApiError::invalid_request("missing_body", "request body is required"),
            )),
            (Class::Ambiguous(_), ..) => {
                Step::Reply(self.reject(host, shared::chat::path::ambiguous_path(&raw_path)))
            }
            (Class::Other, "GET", MODELS_PATH) => Step::Reply(self.models_list(host.now_ms() / 1000)),
            (Class::Other, ..) => Step::Continue,
        }
    }

    fn on_request_body(&mut self, host: &mut dyn Host, body: &mut Body) -> Step {
        let Stage::AwaitingBody { start_ms } = self.stage else {
            return Step::Continue;
        };
        match self.choose(host, body) {
            Ok((req, index, true)) => self.start_attempts(host, req, index, start_ms),
            Ok((req, index, false)) => self.forward(host, req, index, start_ms, body),
            Err(err) => {
                self.stage = Stage::Idle;
                Step::Reply(self.reject(host, err))
            }
        }
    }

    fn on_call_responses(
        &mut self,
        host: &mut dyn Host,
        responses: Vec<CallResponse>,
        _body: Option<&mut Body>,
    ) -> Step {
        let config = Rc::clone(&self.config);
        let Stage::Routed(routed) = &mut self.stage else {
            return Step::Continue;
        };
        let Some(att) = routed.attempts.as_mut() else {
            return Step::Continue;
        };
        let Some(target) = config.targets.get(routed.target) else {
            return Step::Reply(internal_error());
        };
        let response = responses.into_iter().next().unwrap_or_default();
        let now = host.now_ms();
        let wanted = Wanted {
            stream: att.req.stream,
            include_usage: att.req.include_usage,
            injected_usage: routed.injected_usage,
            created: now / 1000,
        };
        let result = attempt::classify(target, &response, wanted);
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(f) => f.label(),
        };
        host.counter_add(
            &metrics::name(
                "ai_proxy_attempts_total",
                &[("target", &target.name), ("outcome", &outcome)],
            ),
            1,
        );
        if let Some(b) = &target.resilience.breaker {
            let counts = result.as_ref().err().is_none_or(Failure::is_target_fault);
            if counts {
                breaker::record(host, &target.name, b, now, result.is_ok());
            }
        }
        match result {
            Ok(success) => {
                routed.status = 200;
                routed.usage = success.usage;
                let first = att.chain.first().and_then(|t| config.targets.get(*t));
                let mut headers = vec![
                    ("content-type".to_string(), success.content_type.to_string()),
                    ("x-ai-provider".to_string(), target.provider.as_str().to_string()),
                    ("x-ai-target".to_string(), target.name.clone()),
                    ("x-ai-model".to_string(), target.upstream_model.clone()),
                    ("x-ai-attempts".to_string(), att.count.to_string()),
                ];
                if let Some(first) = first.filter(|f| f.name != target.name) {
                    headers.push(("x-ai-fallback-from".to_string(), first.name.clone()));
                    host.counter_add(
                        &metrics::name(
                            "ai_proxy_fallbacks_total",
                            &[("from", &first.name), ("to", &target.name)],
                        ),
                        1,
                    );
                }
                Step::Reply(LocalReply {
                    status: 200,
                    headers,
                    body: success.body,
                })
            }
            Err(failure) => {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "ai-proxy: attempt {} on target={} failed: {}",
                        att.count,
                        target.name,
                        failure.label()
                    ),
                );
                let retry = failure.matches(&target.resilience.retry_on) && att.retries_left > 0;
                let final_client_error = !failure.is_target_fault();
                att.last_failure = Some((routed.target, failure));
                if final_client_error {
                    att.pos = att.chain.len();
                } else if retry {
                    att.retries_left -= 1;
                } else {
                    att.pos += 1;
                    att.retries_left = next_retries(&config, &att.chain, att.pos);
                }
                self.next_call(host)
            }
        }
    }

    fn on_request_too_large(&mut self, host: &mut dyn Host, limit: usize) -> Option<LocalReply> {
        self.stage = Stage::Idle;
        Some(self.reject(host, shared::host::too_large(limit)))
    }

    fn on_response_headers(&mut self, host: &mut dyn Host) -> ResponseMode {
        let Stage::Routed(routed) = &mut self.stage else {
            return ResponseMode::PassThrough;
        };
        let Some(target) = self.config.targets.get(routed.target) else {
            return ResponseMode::PassThrough;
        };
        routed.status = status_of(host);
        for (name, value) in [
            ("x-ai-provider", target.provider.as_str()),
            ("x-ai-target", target.name.as_str()),
            ("x-ai-model", target.upstream_model.as_str()),
        ] {
            let _logged = host.set_response_header(name, Some(value));
        }
        let ok = (200..300).contains(&routed.status);
        let is_stream = host
            .response_header("content-type")
            .is_some_and(|c| c.contains("text/event-stream"));
        let anthropic = target.provider == Provider::Anthropic;
        let created = host.now_ms() / 1000;
        routed.body = match (ok, is_stream, anthropic) {
            (true, true, false) => ResponseBody::OpenAiStream(OpenAiStream::new(routed.injected_usage)),
            (true, true, true) => {
                ResponseBody::AnthropicStream(AnthropicStream::new(created, routed.include_usage))
            }
            (true, false, false) => ResponseBody::ObservedJson(Vec::new()),
            (_, _, _) => ResponseBody::Rewrite { anthropic, ok },
        };
        match routed.body {
            ResponseBody::Rewrite { .. } => {
                let _logged = host.set_response_header("content-type", Some("application/json"));
                ResponseMode::Whole
            }
            _ => ResponseMode::Stream,
        }
    }

    fn on_response_chunk(&mut self, _host: &mut dyn Host, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let Stage::Routed(routed) = &mut self.stage else {
            return None;
        };
        match &mut routed.body {
            ResponseBody::OpenAiStream(s) => {
                let out = s.feed(chunk);
                if !end {
                    return out;
                }
                let tail = s.finish();
                routed.usage = s.usage();
                if tail.is_empty() {
                    return out;
                }
                let mut all = out.unwrap_or_else(|| chunk.to_vec());
                all.extend_from_slice(&tail);
                Some(all)
            }
            ResponseBody::AnthropicStream(s) => {
                let mut out = s.feed(chunk);
                if end {
                    out.extend_from_slice(&s.finish());
                    routed.usage = s.usage();
                }
                Some(out)
            }
            ResponseBody::ObservedJson(copy) => {
                if copy.len() + chunk.len() <= MAX_OBSERVED {
                    copy.extend_from_slice(chunk);
                }
                if end {
                    routed.usage = serde_json::from_slice::<Value>(copy)
                        .ok()
                        .and_then(|v| usage::from_openai_json(&v));
                }
                None
            }
            ResponseBody::None | ResponseBody::Rewrite { .. } => None,
        }
    }

    fn on_response_whole(&mut self, host: &mut dyn Host, body: &[u8]) -> WholeResponse {
        let Stage::Routed(routed) = &mut self.stage else {
            return WholeResponse {
                body: body.to_vec(),
                status: None,
            };
        };
        let ResponseBody::Rewrite { anthropic, ok } = routed.body else {
            return WholeResponse {
                body: body.to_vec(),
                status: None,
            };
        };
        match (anthropic, ok) {
            (true, true) => match anthropic::response_to_openai(body, host.now_ms() / 1000) {
                Ok((out, usage)) => {
                    routed.usage = Some(usage);
                    WholeResponse {
                        body: out,
                        status: None,
                    }
                }
                Err(err) => {
                    host.log(
                        LogLevel::Warn,
                        &format!("ai-proxy: bad upstream response: {}", err.message),
                    );
                    routed.status = err.status;
                    WholeResponse {
                        body: err.body(),
                        status: Some(err.status),
                    }
                }
            },
            (true, false) => WholeResponse {
                body: anthropic::error_to_openai(routed.status, body),
                status: None,
            },
            (false, _) => WholeResponse {
                body: openai::error_from_upstream(routed.status, body).unwrap_or_else(|| body.to_vec()),
                status: None,
            },
        }
    }

    fn on_done(&mut self, host: &mut dyn Host) {
        let Stage::Routed(routed) = &self.stage else {
            return;
        };
        let Some(target) = self.target(routed) else {
            return;
        };
        let status = routed.status.to_string();
        let labels = [
            ("provider", target.provider.as_str()),
            ("target", target.name.as_str()),
            ("model", target.upstream_model.as_str()),
        ];
        let with = |extra| [labels[0], labels[1], labels[2], extra];
        host.counter_add(
            &metrics::name("ai_proxy_requests_total", &with(("status", &status))),
            1,
        );
        let latency = host.now_ms().saturating_sub(routed.start_ms);
        host.histogram_record(&metrics::name("ai_proxy_latency_ms", &labels), latency);
        let (prompt, completion, cost) = match routed.usage {
            Some(u) => {
                host.counter_add(
                    &metrics::name("ai_proxy_tokens_total", &with(("kind", "prompt"))),
                    u.prompt_tokens,
                );
                host.counter_add(
                    &metrics::name("ai_proxy_tokens_total", &with(("kind", "completion"))),
                    u.completion_tokens,
                );
                let cost = target
                    .price
                    .map(|p| usage::cost_micro_usd(u, p.prompt_per_million, p.completion_per_million));
                if let Some(c) = cost {
                    host.counter_add(&metrics::name("ai_proxy_cost_microusd_total", &labels), c);
                }
                (u.prompt_tokens.to_string(), u.completion_tokens.to_string(), cost)
            }
            None => ("-".into(), "-".into(), None),
        };
        let cost = cost.map_or_else(|| "-".to_string(), |c| format!("{:.6}", c as f64 / 1e6));
        host.log(
            LogLevel::Info,
            &format!(
                "ai-proxy: provider={} target={} model={} client_model={} status={} latency_ms={} prompt_tokens={} completion_tokens={} cost_usd={}",
                target.provider.as_str(),
                target.name,
                target.upstream_model,
                routed.client_model,
                routed.status,
                latency,
                prompt,
                completion,
                cost
            ),
        );
    }
}

/// One smoke test of the policy against the fake host; real behaviour is proven in Envoy (tests/tests/proxy.rs).
#[cfg(test)]
mod tests {
    use super::*;
    use shared::host::{FakeHost, HostKind};

    #[test]
    fn routes_translates_and_accounts_on_kong() {
        let json = r#"{"targets":[{"name":"c","provider":"anthropic","model":"claude-x",
            "endpoint":{"cluster":"cl","host":"api.anthropic.com:443"},"auth":{"value":"k"}}],
            "models":{"m":{"targets":[{"target":"c"}]}},
            "prices":{"claude-x":{"prompt_per_million":1000000,"completion_per_million":0}}}"#;
        let config = Rc::new(Config::parse(json.as_bytes(), &|_| None).unwrap());
        let mut p = AiProxy::new(config, 1);
        let mut host = FakeHost::new(HostKind::Kong).with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("authorization", "Bearer client"),
        ]);
        assert_eq!(p.on_request_headers(&mut host, true), Step::ReadBody);
        let mut body = Body::new(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_vec());
        assert_eq!(p.on_request_body(&mut host, &mut body), Step::Continue);
        let sent: Value = serde_json::from_slice(&body.into_bytes()).unwrap();
        assert_eq!(sent["model"], "claude-x");
        assert_eq!(host.properties["kong.service.target"], "api.anthropic.com:443");
        assert_eq!(host.properties["ngx.upstream_uri"], "/v1/messages");
        assert!(!host.request_headers.contains_key(":authority"));
        assert_eq!(host.request_headers["x-api-key"], "k");
        assert!(!host.request_headers.contains_key("authorization"));

        host.response_headers.insert(":status".into(), "200".into());
        host.response_headers
            .insert("content-type".into(), "application/json".into());
        assert_eq!(p.on_response_headers(&mut host), ResponseMode::Whole);
        let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn",
            "usage":{"input_tokens":3,"output_tokens":1}}"#;
        let out = p.on_response_whole(&mut host, answer);
        let client: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(client["choices"][0]["message"]["content"], "hello");
        p.on_done(&mut host);
        let l = "provider=anthropic_target=c_model=claude-x";
        assert_eq!(
            host.counters[&format!("ai_proxy_tokens_total_{l}_kind=prompt")],
            3
        );
        assert_eq!(
            host.counters[&format!("ai_proxy_cost_microusd_total_{l}")],
            3_000_000
        );
        assert_eq!(
            host.counters[&format!("ai_proxy_requests_total_{l}_status=200")],
            1
        );
    }
}
