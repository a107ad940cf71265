//! The ai-proxy policy: pick a target for the client's model, translate the request for its provider,
//! translate the answer back to the shape of the client's door (OpenAI Chat Completions and Embeddings,
//! or Anthropic Messages), and account for tokens, cost and latency.
//!
//! A request goes one of two ways once its body is read:
//! - [`Stage::Forwarded`]: the proxy sends the translated request to the target and the answer is
//!   read as it streams back ([`Reply`]);
//! - [`Stage::Calling`]: callout mode, for models with a fallback chain or resilience: the filter
//!   calls the targets itself ([`Attempts`]), judges each whole answer through the same [`Reply`], and
//!   answers the client.

use crate::config::{Config, Model, Target};
use serde_json::{json, Value};
use shared::callout::attempts::{Attempts, Exhausted, Next};
use shared::callout::{self, Failure};
use shared::chat::{Class, Routes};
use shared::error::ApiError;
use shared::host::{
    Body, CallResponse, Host, LocalReply, LogLevel, Policy, ResponseMode, Route, Step, WholeResponse,
};
use shared::metrics;
use shared::provider::{client_error, Api, ChatRequest, Dialect, Exchange, Reply, CREDENTIAL_HEADERS};
use shared::rand::{stable_hash, Rng};
use shared::usage::Usage;
use std::rc::Rc;

const NAME: &str = "ai-proxy";
/// The requests this filter serves, classified as every filter classifies them (`shared::chat::path`):
/// OpenAI Chat Completions and Embeddings, and Anthropic Messages.
static SERVED: std::sync::LazyLock<Routes> =
    std::sync::LazyLock::new(|| Routes::apis(&[Api::ChatCompletions, Api::Messages, Api::Embeddings]));
const MODELS_PATH: &str = "/v1/models";
/// The answer header naming the parameters a target could not take and the model let drop.
pub const DROPPED_HEADER: &str = "x-ai-dropped-params";
/// Request headers of Anthropic's API: passed to Anthropic targets (the target's own
/// `anthropic-version` replaces the client's), removed for the others, which do not speak it.
const ANTHROPIC_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

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
        api: Api,
    },
    /// Forward mode: the proxy sends the request to the target.
    Forwarded(Box<Forwarded>),
    /// Callout mode: the filter calls the targets itself and answers.
    Calling(Box<Calling>),
}

/// What the end-of-request metrics and log need, whichever way the request went.
struct Account {
    start_ms: u64,
    api: Api,
    /// The target that answered (or was last tried).
    target: usize,
    client_model: String,
    status: u16,
    usage: Option<Usage>,
    dropped: Vec<String>,
}

struct Forwarded {
    account: Account,
    exchange: Exchange,
    /// Set once the response headers have come.
    reply: Option<Reply>,
}

struct Calling {
    account: Account,
    req: ChatRequest,
    attempts: Attempts,
    /// The exchange of the call in flight.
    exchange: Option<Exchange>,
    /// The client's credentials, for targets without a key of their own.
    client_credentials: Vec<(String, String)>,
    /// The client's `anthropic-beta`, for Anthropic targets.
    anthropic_beta: Option<String>,
}

impl AiProxy {
    pub fn new(config: Rc<Config>, seed: u64) -> Self {
        AiProxy {
            config,
            rng: Rng::new(seed),
            stage: Stage::Idle,
        }
    }

    /// The client's door: its API's dialect, while a request is being handled.
    fn door(&self) -> Dialect {
        match &self.stage {
            Stage::AwaitingBody { api, .. } => Dialect::of(*api),
            Stage::Forwarded(f) => Dialect::of(f.account.api),
            Stage::Calling(c) => Dialect::of(c.account.api),
            Stage::Idle => Dialect::OpenAi,
        }
    }

    fn reject(&self, host: &mut dyn Host, err: ApiError, door: Dialect) -> LocalReply {
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
        door_reply(&err, door)
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

    /// Parses the request of `api` and picks its model and first target.
    fn choose(
        &mut self,
        host: &dyn Host,
        api: Api,
        body: &mut Body,
    ) -> Result<(ChatRequest, usize, bool), ApiError> {
        let value = shared::chat::json(body)?;
        let req = ChatRequest::parse(api, value.clone())?;
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

    /// Forward mode: rewrite the request for the target and let the proxy send it.
    fn forward(
        &mut self,
        host: &mut dyn Host,
        req: ChatRequest,
        index: usize,
        start_ms: u64,
        body: &mut Body,
    ) -> Step {
        let config = Rc::clone(&self.config);
        let door = req.door();
        let Some(target) = config.targets.get(index) else {
            return Step::Reply(internal_error(door));
        };
        let on_unsupported = config
            .models
            .get(&req.model)
            .map(|m| m.on_unsupported)
            .unwrap_or_default();
        let (upstream, exchange) =
            match Exchange::prepare_with(&req, target.provider.as_ref(), on_unsupported) {
                Ok(prepared) => prepared,
                Err(err) => {
                    self.stage = Stage::Idle;
                    return Step::Reply(self.reject(host, err, door));
                }
            };
        if let Err(e) = set_upstream_headers(host, target, &config.route_header, req.api, req.stream) {
            // Never forward to the route's default upstream: the request may carry the target's key.
            self.stage = Stage::Idle;
            let err = ApiError::upstream(
                502,
                "routing_failed",
                format!("the request could not be routed to target `{}`: {e}", target.name),
            );
            return Step::Reply(self.reject(host, err, door));
        }
        let mut account = Account::new(start_ms, index, &req);
        account.dropped = exchange.dropped.clone();
        self.stage = Stage::Forwarded(Box::new(Forwarded {
            account,
            exchange,
            reply: None,
        }));
        body.replace(upstream);
        Step::Continue
    }

    /// Callout mode: set up the chain (the weighted first choice, then the model's fallback) and
    /// make the first call.
    fn start_attempts(&mut self, host: &mut dyn Host, req: ChatRequest, first: usize, start_ms: u64) -> Step {
        let fallback = self
            .config
            .models
            .get(&req.model)
            .map(|m| m.fallback.clone())
            .unwrap_or_default();
        let mut chain = vec![first];
        chain.extend(fallback.into_iter().filter(|t| *t != first));
        let client_credentials = CREDENTIAL_HEADERS
            .iter()
            .filter_map(|h| host.request_header(h).map(|v| (h.to_string(), v)))
            .collect();
        self.stage = Stage::Calling(Box::new(Calling {
            account: Account::new(start_ms, first, &req),
            req,
            attempts: Attempts::new(NAME, chain),
            exchange: None,
            client_credentials,
            anthropic_beta: host.request_header("anthropic-beta"),
        }));
        self.next_call(host)
    }

    /// The next call of the chain, or the final answer when it is used up.
    fn next_call(&mut self, host: &mut dyn Host) -> Step {
        let config = Rc::clone(&self.config);
        let Stage::Calling(calling) = &mut self.stage else {
            return Step::Continue;
        };
        let Calling {
            account,
            req,
            attempts,
            exchange,
            client_credentials,
            anthropic_beta,
        } = &mut **calling;
        let door = req.door();
        let on_unsupported = config
            .models
            .get(&req.model)
            .map(|m| m.on_unsupported)
            .unwrap_or_default();
        let next = attempts.next(
            host,
            |i| config.targets.get(i).map(Target::candidate),
            |i| {
                let Some(target) = config.targets.get(i) else {
                    return Err(Failure::ConnectFailure);
                };
                let provider = target.provider.as_ref();
                // A target that cannot take the request (a feature its provider lacks) is passed over;
                // its refusal is written as that provider would have answered, for the client's door.
                let (body, ex) = Exchange::prepare_with(req, provider, on_unsupported).map_err(|e| {
                    let dialect = provider.speaks().unwrap_or(Dialect::OpenAi);
                    Failure::Status {
                        status: e.status,
                        body: dialect.api_error(&e),
                    }
                })?;
                let extra: Vec<(String, String)> = match (provider.speaks(), anthropic_beta.as_ref()) {
                    (Some(Dialect::Anthropic), Some(beta)) => vec![("anthropic-beta".into(), beta.clone())],
                    _ => Vec::new(),
                };
                account.dropped = ex.dropped.clone();
                *exchange = Some(ex);
                Ok(target.call(body, req.api, req.stream, client_credentials, &extra))
            },
        );
        let exhausted = match next {
            Next::Call { upstream, call } => {
                account.target = upstream;
                return Step::call(call);
            }
            Next::Exhausted(e) => e,
        };
        let (status, body, retry_after) = match exhausted {
            Exhausted::Failed { upstream, failure } => {
                let Some(target) = config.targets.get(upstream) else {
                    return Step::Reply(internal_error(door));
                };
                let (status, body) = failure_reply(target, &failure, door);
                (status, body, None)
            }
            Exhausted::Unavailable { retry_after_s } => {
                let err = ApiError::new(
                    503,
                    "upstream_error",
                    "all_targets_unavailable",
                    format!(
                        "every target of model `{}` is unavailable; retry in {retry_after_s} s",
                        account.client_model
                    ),
                );
                (503, door_reply(&err, door).body, Some(retry_after_s))
            }
        };
        account.status = status;
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-ai-attempts".to_string(), attempts.count().to_string()),
        ];
        if let Some(s) = retry_after {
            headers.push(("retry-after".to_string(), s.to_string()));
        }
        host.log(
            LogLevel::Warn,
            &format!(
                "ai-proxy: model={} failed after {} attempts, status={status}",
                account.client_model,
                attempts.count()
            ),
        );
        Step::Reply(LocalReply {
            status,
            headers,
            body,
        })
    }
}

impl Account {
    fn new(start_ms: u64, target: usize, req: &ChatRequest) -> Account {
        Account {
            start_ms,
            api: req.api,
            target,
            client_model: req.model.clone(),
            status: 0,
            usage: None,
            dropped: Vec::new(),
        }
    }
}

/// One of the gateway's errors as a reply in the door's shape.
fn door_reply(err: &ApiError, door: Dialect) -> LocalReply {
    LocalReply {
        status: err.status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: door.api_error(err),
    }
}

/// What the client gets when `failure` on `target` was the last attempt: status and door error.
fn failure_reply(target: &Target, failure: &Failure, door: Dialect) -> (u16, Vec<u8>) {
    let err = match failure {
        Failure::ConnectFailure => ApiError::upstream(
            502,
            "upstream_unavailable",
            "the model provider could not be reached",
        ),
        Failure::Timeout => ApiError::upstream(
            504,
            "upstream_timeout",
            "the model provider did not answer in time",
        ),
        Failure::InvalidResponse(why) => ApiError::upstream(502, "bad_upstream_response", why.clone()),
        Failure::Status { status, body } => {
            return (
                *status,
                client_error(door, target.provider.as_ref(), *status, body),
            )
        }
    };
    (err.status, door_reply(&err, door).body)
}

/// Judges a callout's whole answer through the same translation as forward mode: the body for the
/// client and its usage, or why this attempt failed.
fn judge(
    target: &Target,
    exchange: &Exchange,
    resp: &CallResponse,
    created: u64,
) -> Result<(Vec<u8>, Option<Usage>), Failure> {
    let status = callout::judge(resp)?;
    let provider = target.provider.as_ref();
    let mut reply = Reply::new(provider, exchange, status, exchange.stream, created);
    let mut body = reply
        .whole(provider, &resp.body)
        .map_err(|e| Failure::InvalidResponse(e.message))?;
    body.shrink_to_fit();
    Ok((body, reply.usage()))
}

/// Points the request at the target on every host and replaces the client's credentials with the
/// target's. Without a configured key the client's own credentials pass through (self-hosted models).
/// Routing comes first: if it fails, no key has been written into the request.
fn set_upstream_headers(
    host: &mut dyn Host,
    target: &Target,
    route_header: &str,
    api: Api,
    stream: bool,
) -> Result<(), shared::host::HostError> {
    let path = target.path(api, stream).unwrap_or_default();
    host.route_to(&Route {
        cluster: &target.cluster,
        host: &target.host,
        path: &path,
        header: route_header,
    })?;
    host.set_request_header("content-type", Some("application/json"))?;
    // We must read the answer: no compressed upstream bodies.
    host.set_request_header("accept-encoding", None)?;
    if target.api_key.is_some() {
        for h in CREDENTIAL_HEADERS {
            host.set_request_header(h, None)?;
        }
    }
    if target.provider.speaks() != Some(Dialect::Anthropic) {
        for h in ANTHROPIC_HEADERS {
            host.set_request_header(h, None)?;
        }
    }
    for (name, value) in target.credentials() {
        host.set_request_header(name, Some(&value))?;
    }
    Ok(())
}

fn internal_error(door: Dialect) -> LocalReply {
    door_reply(
        &ApiError::new(500, "server_error", "internal_error", "target index out of range"),
        door,
    )
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
        let raw_path = host.request_header(":path").unwrap_or_default();
        let method = host.request_header(":method").unwrap_or_default();
        let class = SERVED.classify(&method, &raw_path);
        let door = match class {
            Class::Chat(Some(api)) | Class::Ambiguous(Some(api)) => Dialect::of(api),
            _ => Dialect::OpenAi,
        };
        // Only this filter may choose the upstream cluster, never the client.
        if host.set_request_header(&self.config.route_header, None).is_err() {
            let err = ApiError::upstream(502, "routing_failed", "the routing header could not be cleared");
            return Step::Reply(self.reject(host, err, door));
        }
        match class {
            Class::Chat(Some(api)) if has_body => {
                self.stage = Stage::AwaitingBody {
                    start_ms: host.now_ms(),
                    api,
                };
                Step::ReadBody
            }
            Class::Chat(_) => Step::Reply(self.reject(
                host,
                ApiError::invalid_request("missing_body", "request body is required"),
                door,
            )),
            Class::Ambiguous(_) => {
                Step::Reply(self.reject(host, shared::chat::path::ambiguous_path(&raw_path), door))
            }
            Class::Other if method == "GET" && raw_path.split('?').next() == Some(MODELS_PATH) => {
                Step::Reply(self.models_list(host.now_ms() / 1000))
            }
            Class::Other => Step::Continue,
        }
    }

    fn on_request_body(&mut self, host: &mut dyn Host, body: &mut Body) -> Step {
        let Stage::AwaitingBody { start_ms, api } = self.stage else {
            return Step::Continue;
        };
        match self.choose(host, api, body) {
            Ok((req, index, true)) => self.start_attempts(host, req, index, start_ms),
            Ok((req, index, false)) => self.forward(host, req, index, start_ms, body),
            Err(err) => {
                self.stage = Stage::Idle;
                Step::Reply(self.reject(host, err, Dialect::of(api)))
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
        let door = self.door();
        let Stage::Calling(calling) = &mut self.stage else {
            return Step::Continue;
        };
        let (Some(target), Some(exchange)) = (
            config.targets.get(calling.account.target),
            calling.exchange.clone(),
        ) else {
            return Step::Reply(internal_error(door));
        };
        let response = responses.into_iter().next().unwrap_or_default();
        let result = judge(target, &exchange, &response, host.now_ms() / 1000);
        let first = calling
            .attempts
            .first()
            .and_then(|t| config.targets.get(t))
            .map(|t| t.name.as_str());
        let upstream = calling.account.target;
        let Some((body, usage)) = calling
            .attempts
            .record(host, upstream, target.candidate(), first, result)
        else {
            return self.next_call(host);
        };
        calling.account.status = 200;
        calling.account.usage = usage;
        let mut headers = vec![
            ("content-type".to_string(), exchange.content_type().to_string()),
            ("x-ai-provider".to_string(), target.provider.name().to_string()),
            ("x-ai-target".to_string(), target.name.clone()),
            ("x-ai-model".to_string(), target.model().to_string()),
            ("x-ai-attempts".to_string(), calling.attempts.count().to_string()),
        ];
        if let Some(first) = first.filter(|f| *f != target.name) {
            headers.push(("x-ai-fallback-from".to_string(), first.to_string()));
        }
        if let Some(dropped) = exchange.dropped_header() {
            headers.push((DROPPED_HEADER.to_string(), dropped));
        }
        Step::Reply(LocalReply {
            status: 200,
            headers,
            body,
        })
    }

    fn on_request_too_large(&mut self, host: &mut dyn Host, limit: usize) -> Option<LocalReply> {
        let door = self.door();
        self.stage = Stage::Idle;
        Some(self.reject(host, shared::host::too_large(limit), door))
    }

    fn on_response_headers(&mut self, host: &mut dyn Host) -> ResponseMode {
        let Stage::Forwarded(f) = &mut self.stage else {
            return ResponseMode::PassThrough;
        };
        let Some(target) = self.config.targets.get(f.account.target) else {
            return ResponseMode::PassThrough;
        };
        f.account.status = status_of(host);
        for (name, value) in [
            ("x-ai-provider", target.provider.name()),
            ("x-ai-target", target.name.as_str()),
            ("x-ai-model", target.model()),
        ] {
            let _logged = host.set_response_header(name, Some(value));
        }
        if let Some(dropped) = f.exchange.dropped_header() {
            let _logged = host.set_response_header(DROPPED_HEADER, Some(&dropped));
        }
        let provider = target.provider.as_ref();
        let stream = host
            .response_header("content-type")
            .is_some_and(|c| provider.framing().matches(&c));
        let reply = Reply::new(
            provider,
            &f.exchange,
            f.account.status,
            stream,
            host.now_ms() / 1000,
        );
        let mode = if reply.needs_whole_body() {
            let _logged = host.set_response_header("content-type", Some("application/json"));
            ResponseMode::Whole
        } else {
            ResponseMode::Stream
        };
        f.reply = Some(reply);
        mode
    }

    fn on_response_chunk(&mut self, _host: &mut dyn Host, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let Stage::Forwarded(f) = &mut self.stage else {
            return None;
        };
        let reply = f.reply.as_mut()?;
        let out = reply.chunk(chunk, end);
        if end {
            f.account.usage = reply.usage();
        }
        out
    }

    fn on_response_whole(&mut self, host: &mut dyn Host, body: &[u8]) -> WholeResponse {
        let Stage::Forwarded(f) = &mut self.stage else {
            return WholeResponse::unchanged(body);
        };
        let (Some(target), Some(reply)) = (self.config.targets.get(f.account.target), f.reply.as_mut())
        else {
            return WholeResponse::unchanged(body);
        };
        match reply.whole(target.provider.as_ref(), body) {
            Ok(out) => {
                f.account.usage = reply.usage();
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
                f.account.status = err.status;
                WholeResponse {
                    body: f.exchange.error_body(&err),
                    status: Some(err.status),
                }
            }
        }
    }

    fn on_done(&mut self, host: &mut dyn Host) {
        let account = match &self.stage {
            Stage::Forwarded(f) => &f.account,
            Stage::Calling(c) => &c.account,
            Stage::Idle | Stage::AwaitingBody { .. } => return,
        };
        let Some(target) = self.config.targets.get(account.target) else {
            return;
        };
        let status = account.status.to_string();
        let labels = [
            ("provider", target.provider.name()),
            ("target", target.name.as_str()),
            ("model", target.model()),
        ];
        let with = |extra| [labels[0], labels[1], labels[2], extra];
        host.counter_add(
            &metrics::name("ai_proxy_requests_total", &with(("status", &status))),
            1,
        );
        let latency = host.now_ms().saturating_sub(account.start_ms);
        host.histogram_record(&metrics::name("ai_proxy_latency_ms", &labels), latency);
        for param in &account.dropped {
            host.counter_add(
                &metrics::name("ai_proxy_dropped_params_total", &[labels[1], ("param", param)]),
                1,
            );
        }
        let (tokens, cost) = match account.usage {
            Some(u) => {
                // prompt and completion are totals; cached, cache_write and reasoning are parts of
                // them, counted apart (never to be added to the totals).
                for (kind, n, always) in [
                    ("prompt", u.prompt_tokens, true),
                    ("completion", u.completion_tokens, true),
                    ("cached", u.cached_tokens, false),
                    ("cache-write", u.cache_write_tokens, false),
                    ("reasoning", u.reasoning_tokens, false),
                ] {
                    if always || n > 0 {
                        host.counter_add(&metrics::name("ai_proxy_tokens_total", &with(("kind", kind))), n);
                    }
                }
                let cost = target.price.map(|p| p.cost_micro_usd(u));
                if let Some(c) = cost {
                    host.counter_add(&metrics::name("ai_proxy_cost_microusd_total", &labels), c);
                }
                (
                    format!(
                        "prompt_tokens={} completion_tokens={} cached_tokens={} cache_write_tokens={} reasoning_tokens={}",
                        u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens, u.reasoning_tokens
                    ),
                    cost,
                )
            }
            None => ("prompt_tokens=- completion_tokens=-".to_string(), None),
        };
        let cost = cost.map_or_else(|| "-".to_string(), |c| format!("{:.6}", c as f64 / 1e6));
        let dropped = if account.dropped.is_empty() {
            String::new()
        } else {
            format!(" dropped_params={}", account.dropped.join(","))
        };
        host.log(
            LogLevel::Info,
            &format!(
                "ai-proxy: provider={} target={} model={} client_model={} api={} status={} latency_ms={} {tokens} cost_usd={cost}{dropped}",
                target.provider.name(),
                target.name,
                target.model(),
                account.client_model,
                account.api.as_str(),
                account.status,
                latency,
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

    /// Forward mode through the real driver as Kong runs it: an Anthropic stream arrives in pieces,
    /// with the end as a separate empty chunk, and leaves as one complete OpenAI stream.
    #[test]
    fn streams_through_the_kong_driver() {
        use shared::host::fake::{ClientRequest, Named, Runtime, UpstreamResponse};
        let json = r#"{"targets":[{"name":"c","provider":"anthropic","model":"claude-x",
            "endpoint":{"cluster":"cl","host":"api.anthropic.com:443"},"auth":{"value":"k"}}],
            "models":{"m":{"targets":[{"target":"c"}]}}}"#;
        let config = Rc::new(Config::parse(json.as_bytes(), &|_| None).unwrap());
        let mut rt = Runtime::new(
            HostKind::Kong,
            vec![Named::new("ai-proxy", AiProxy::new(config, 1))],
        );
        let request = ClientRequest::post(
            "/v1/chat/completions",
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
        );
        let stream = include_str!("../../../shared/tests/fixtures/anthropic_stream.sse");
        let pieces: Vec<&str> = stream.split_inclusive("\n\n").collect();
        let exchange = rt.run(request, |up| {
            assert_eq!(up.properties["kong.service.target"], "api.anthropic.com:443");
            assert_eq!(up.properties["ngx.upstream_uri"], "/v1/messages");
            assert_eq!(up.headers["x-api-key"], "k");
            let sent: Value = serde_json::from_slice(&up.body).unwrap();
            assert_eq!(
                (sent["model"].as_str(), sent["stream"].as_bool()),
                (Some("claude-x"), Some(true))
            );
            UpstreamResponse::sse(&pieces)
        });
        assert_eq!(exchange.status, Some(200));
        assert!(exchange.complete, "the chunked answer must end");
        assert_eq!(exchange.headers["x-ai-provider"], "anthropic");
        let text = String::from_utf8(exchange.body).unwrap();
        let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "Hello! Ça va? ✓ 🦀\n\"quoted\"");
        assert_eq!(
            chunks.last().unwrap()["usage"],
            json!({"prompt_tokens": 35, "completion_tokens": 15, "total_tokens": 50,
                   "prompt_tokens_details": {"cached_tokens": 10}})
        );
        let l = "provider=anthropic_target=c_model=claude-x";
        assert_eq!(
            rt.host.counters[&format!("ai_proxy_tokens_total_{l}_kind=completion")],
            15
        );
        assert_eq!(
            rt.host.counters[&format!("ai_proxy_tokens_total_{l}_kind=cached")],
            10
        );
    }
}
