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

use crate::balancer::{self, Kind, Reason, Sample};
use crate::config::{Config, Model, Target};
use serde_json::{json, Value};
use shared::breaker::Circuit;
use shared::callout::attempts::{Attempts, Exhausted, Next};
use shared::callout::{self, Failure};
use shared::chat::{Class, Routes};
use shared::decision;
use shared::error::ApiError;
use shared::host::{
    Body, CallResponse, Host, LocalReply, LogLevel, Policy, ResponseMode, Route, Step, WholeResponse,
};
use shared::metrics;
use shared::provider::{client_error, Api, ChatRequest, Dialect, Exchange, Reply, CREDENTIAL_HEADERS};
use shared::rand::{stable_hash, Rng};
use shared::ratelimit::estimate::{estimate, CompletionPolicy};
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
/// The answer header saying why its target was chosen (the balancer's reason, or `fallback`).
pub const REASON_HEADER: &str = "x-ai-target-reason";
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

/// The balancer's first choice for a request.
#[derive(Debug, Clone, Copy)]
struct Choice {
    target: usize,
    reason: Reason,
    /// The request is counted in flight on the target (its statistics are kept): it must be ended.
    counted: bool,
}

/// What the end-of-request metrics and log need, whichever way the request went.
struct Account {
    start_ms: u64,
    api: Api,
    /// The target that answered (or was last tried).
    target: usize,
    /// The balancer's first choice, and why.
    picked: usize,
    balancer: Kind,
    reason: Reason,
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
    /// Counted in flight on the target: ended, with the answer's timings, when the request is over.
    counted: bool,
    /// When the first byte of the answer came (the response headers; for a stream, its first chunk).
    first_byte_ms: Option<u64>,
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
    /// The target a call is counted in flight on (tracked targets only), and when the call left.
    in_flight: Option<usize>,
    call_start_ms: u64,
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
    fn weighted(&mut self, model: &Model, sticky: Option<String>) -> Option<(usize, Reason)> {
        let routes = &model.routes;
        let total: u64 = routes.iter().map(|r| r.weight).sum();
        let reason = if sticky.is_some() {
            Reason::Sticky
        } else {
            Reason::Weighted
        };
        let mut point = match sticky {
            Some(v) => stable_hash(v.as_bytes()) % total.max(1),
            None => self.rng.below(total),
        };
        for r in routes {
            if point < r.weight {
                return Some((r.target, reason));
            }
            point -= r.weight;
        }
        routes.last().map(|r| (r.target, reason))
    }

    /// `priority`: the first target (of weight > 0) whose breaker is not open; the first when all are.
    fn priority(&self, host: &dyn Host, model: &Model) -> Option<(usize, Reason)> {
        let now = host.now_ms();
        let mut live = model.routes.iter().filter(|r| r.weight > 0);
        let first = live.clone().next()?.target;
        let healthy = live.find(|r| {
            let Some(t) = self.config.targets.get(r.target) else {
                return false;
            };
            t.resilience.breaker.is_none()
                || Circuit {
                    filter: NAME,
                    target: &t.name,
                }
                .open_until(host, now)
                .is_none()
        });
        Some(match healthy {
            Some(r) if r.target == first => (first, Reason::Primary),
            Some(r) => (r.target, Reason::Failover),
            None => (first, Reason::Primary),
        })
    }

    /// The model's first choice, by its balancer, counted in flight on a tracked target.
    fn pick(
        &mut self,
        host: &mut dyn Host,
        model: &Model,
        sticky: Option<String>,
        stream: bool,
        tokens: Option<Usage>,
    ) -> Option<Choice> {
        let config = Rc::clone(&self.config);
        let (target, reason, counted) = match model.balancer {
            Kind::Weighted => {
                let (t, r) = self.weighted(model, sticky)?;
                (t, r, false)
            }
            Kind::Priority => {
                let (t, r) = self.priority(host, model)?;
                (t, r, false)
            }
            kind => {
                let targets: Vec<(usize, &str, f64)> = model
                    .routes
                    .iter()
                    .filter(|r| r.weight > 0)
                    .filter_map(|r| {
                        let t = config.targets.get(r.target)?;
                        let cost = match (tokens, t.price) {
                            (Some(u), Some(p)) => {
                                u.prompt_tokens as f64 * p.prompt_per_million
                                    + u.completion_tokens as f64 * p.completion_per_million
                            }
                            _ => 0.0,
                        };
                        Some((r.target, t.name.as_str(), cost))
                    })
                    .collect();
                let (p, counted) =
                    balancer::pick(host, kind, &targets, &config.balancing, stream, &mut self.rng)?;
                (p.target, p.reason, counted)
            }
        };
        let counted = counted
            || (!model.balancer.uses_stats()
                && config
                    .targets
                    .get(target)
                    .is_some_and(|t| t.tracked && balancer::begin(host, &t.name)));
        if let Some(t) = config.targets.get(target) {
            host.counter_add(
                &metrics::name(
                    "ai_proxy_balancer_picks_total",
                    &[
                        ("target", t.name.as_str()),
                        ("balancer", model.balancer.as_str()),
                        ("reason", reason.as_str()),
                    ],
                ),
                1,
            );
        }
        Some(Choice {
            target,
            reason,
            counted,
        })
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
        host: &mut dyn Host,
        api: Api,
        body: &mut Body,
    ) -> Result<(ChatRequest, Choice, bool), ApiError> {
        let value = shared::chat::json(body)?;
        let req = ChatRequest::parse(api, value.clone())?;
        let sticky = self
            .config
            .sticky_header
            .as_deref()
            .and_then(|h| host.request_header(h));
        let config = Rc::clone(&self.config);
        let model = config.models.get(&req.model);
        // `lowest_cost` prices the request: the shared prompt estimate, the asked maximum or 256.
        let tokens = model.filter(|m| m.balancer == Kind::LowestCost).map(|_| {
            let policy = CompletionPolicy {
                default_tokens: 256,
                cap_tokens: u64::MAX,
            };
            estimate(body, Some(api), policy).usage()
        });
        let choice = model.and_then(|m| self.pick(host, m, sticky, req.stream, tokens));
        let Some(choice) = choice else {
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
        let callout = model.is_some_and(|m: &Model| m.callout);
        Ok((req, choice, callout))
    }

    /// Forward mode: rewrite the request for the target and let the proxy send it.
    fn forward(
        &mut self,
        host: &mut dyn Host,
        req: ChatRequest,
        choice: Choice,
        start_ms: u64,
        body: &mut Body,
    ) -> Step {
        let config = Rc::clone(&self.config);
        let door = req.door();
        let index = choice.target;
        let Some(target) = config.targets.get(index) else {
            return Step::Reply(internal_error(door));
        };
        // Refused before it left: no longer in flight, and nothing learnt about the target.
        let release = |host: &mut dyn Host| {
            if choice.counted {
                balancer::end(host, &target.name, None, config.balancing.half_life_ms);
            }
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
                    release(host);
                    self.stage = Stage::Idle;
                    return Step::Reply(self.reject(host, err, door));
                }
            };
        if let Err(e) = set_upstream_headers(host, target, &config.route_header, &req, &upstream) {
            // Never forward to the route's default upstream: the request may carry the target's key.
            release(host);
            self.stage = Stage::Idle;
            let err = ApiError::upstream(
                502,
                "routing_failed",
                format!("the request could not be routed to target `{}`: {e}", target.name),
            );
            return Step::Reply(self.reject(host, err, door));
        }
        let mut account = Account::new(start_ms, choice, &req, self.balancer_of(&req.model));
        account.dropped = exchange.dropped.clone();
        self.stage = Stage::Forwarded(Box::new(Forwarded {
            account,
            exchange,
            reply: None,
            counted: choice.counted,
            first_byte_ms: None,
        }));
        body.replace(upstream);
        Step::Continue
    }

    /// Callout mode: set up the chain (the weighted first choice, then the model's fallback) and
    /// make the first call.
    fn start_attempts(
        &mut self,
        host: &mut dyn Host,
        req: ChatRequest,
        choice: Choice,
        start_ms: u64,
    ) -> Step {
        let config = Rc::clone(&self.config);
        let model = config.models.get(&req.model);
        let first = choice.target;
        // `priority` tries the targets in their order (open breakers are skipped); the others start
        // with their pick. The fallback chain follows.
        let mut chain = match model {
            Some(m) if m.balancer == Kind::Priority => m
                .routes
                .iter()
                .filter(|r| r.weight > 0)
                .map(|r| r.target)
                .collect(),
            _ => vec![first],
        };
        for t in model.map(|m| m.fallback.as_slice()).unwrap_or_default() {
            if !chain.contains(t) {
                chain.push(*t);
            }
        }
        // One host call for every key header the client sent (the first of a repeated one).
        let mut client_credentials: Vec<(String, String)> = Vec::new();
        for (name, value) in host.request_headers() {
            let known = CREDENTIAL_HEADERS.iter().find(|h| name.eq_ignore_ascii_case(h));
            if let Some(h) = known {
                if !client_credentials.iter().any(|(n, _)| n == h) {
                    client_credentials.push((h.to_string(), value));
                }
            }
        }
        let balancer = self.balancer_of(&req.model);
        self.stage = Stage::Calling(Box::new(Calling {
            account: Account::new(start_ms, choice, &req, balancer),
            req,
            attempts: Attempts::new(NAME, chain),
            exchange: None,
            client_credentials,
            anthropic_beta: host.request_header("anthropic-beta"),
            in_flight: choice.counted.then_some(first),
            call_start_ms: start_ms,
        }));
        self.next_call(host)
    }

    /// The next call of the chain, or the final answer when it is used up.
    fn next_call(&mut self, host: &mut dyn Host) -> Step {
        let config = Rc::clone(&self.config);
        let now_ms = host.now_ms();
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
            in_flight,
            call_start_ms,
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
                Ok(target.call(body, req.api, req.stream, client_credentials, &extra, now_ms))
            },
        );
        let half_life = config.balancing.half_life_ms;
        // The call in flight is counted on its target: a pick the chain passed over is released.
        if let Some(t) = in_flight.take_if(|t| !matches!(&next, Next::Call { upstream, .. } if upstream == t))
        {
            if let Some(target) = config.targets.get(t) {
                balancer::end(host, &target.name, None, half_life);
            }
        }
        let exhausted = match next {
            Next::Call { upstream, call } => {
                account.target = upstream;
                *call_start_ms = host.now_ms();
                if in_flight.is_none() {
                    let tracked = config.targets.get(upstream).filter(|t| t.tracked);
                    if tracked.is_some_and(|t| balancer::begin(host, &t.name)) {
                        *in_flight = Some(upstream);
                    }
                }
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

impl AiProxy {
    fn balancer_of(&self, model: &str) -> Kind {
        self.config
            .models
            .get(model)
            .map(|m| m.balancer)
            .unwrap_or_default()
    }
}

impl Account {
    /// Why `target` answers: the balancer's reason when it is its pick, else `fallback`.
    fn reason_for(&self, target: usize) -> Reason {
        if target == self.picked {
            self.reason
        } else {
            Reason::Fallback
        }
    }

    fn new(start_ms: u64, choice: Choice, req: &ChatRequest, balancer: Kind) -> Account {
        Account {
            start_ms,
            api: req.api,
            target: choice.target,
            picked: choice.target,
            balancer,
            reason: choice.reason,
            client_model: req.model.clone(),
            status: 0,
            usage: None,
            dropped: Vec::new(),
        }
    }
}

/// What a forwarded answer says about its target's speed: its latency and time to first byte, a
/// failure for the target's sake (5xx, 429) counted as one; nothing for a client error or a request
/// that never got an answer.
fn forward_sample(account: &Account, first_byte_ms: Option<u64>, now_ms: u64) -> Option<Sample> {
    let status = account.status;
    if status == 0 || ((400..500).contains(&status) && status != 408 && status != 429) {
        return None;
    }
    let latency = now_ms.saturating_sub(account.start_ms);
    let ttft = first_byte_ms.map_or(latency, |t| t.saturating_sub(account.start_ms));
    Some(Sample::answer(
        latency,
        ttft,
        status >= 500 || status == 429 || status == 408,
    ))
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
    req: &ChatRequest,
    body: &[u8],
) -> Result<(), shared::host::HostError> {
    let path = target.path(req.api, req.stream).unwrap_or_default();
    host.route_to(&Route {
        cluster: &target.cluster,
        host: &target.host,
        path: &path,
        header: route_header,
    })?;
    host.set_request_header("content-type", Some("application/json"))?;
    // Headers to clear, removed only where present: one host call reads them all, where a removal
    // per name would cross into the host eight times on every request.
    let mut clear: Vec<&str> = vec!["accept-encoding"]; // we must read the answer: not compressed
    if !target.passes_client_credentials() {
        clear.extend(CREDENTIAL_HEADERS);
    }
    if target.provider.speaks() != Some(Dialect::Anthropic) {
        clear.extend(ANTHROPIC_HEADERS);
    }
    let present = host.request_headers();
    for h in clear {
        if present.iter().any(|(name, _)| name.eq_ignore_ascii_case(h)) {
            host.set_request_header(h, None)?;
        }
    }
    for (name, value) in target.credentials(&path, body, host.now_ms()) {
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

/// Publishes the request's routing and accounting for the audit log (`shared::decision`): provider,
/// target, client and upstream model, the balancer's reason, and once the answer's usage is known (the
/// end of its body) tokens by kind and cost. Published from the response phases, not from `on_done`: a
/// filter before this one (the audit log) reads it in its own `on_log`, which Envoy runs first.
fn publish(host: &mut dyn Host, target: &Target, account: &Account) {
    let u = account.usage;
    let tokens = |f: fn(&Usage) -> u64| u.as_ref().map_or(Value::Null, |u| f(u).into());
    let cost = u
        .and_then(|u| target.price.map(|p| p.cost_micro_usd(u)))
        .map_or(Value::Null, |c| Value::from(c as f64 / 1e6));
    decision::publish(
        host,
        "proxy",
        &[
            ("provider", Value::from(target.provider.name())),
            ("target", Value::from(target.name.as_str())),
            ("model", Value::from(account.client_model.as_str())),
            ("upstream_model", Value::from(target.model())),
            ("reason", Value::from(account.reason_for(account.target).as_str())),
            ("status", Value::from(account.status)),
            ("prompt_tokens", tokens(|u| u.prompt_tokens)),
            ("completion_tokens", tokens(|u| u.completion_tokens)),
            ("cached_tokens", tokens(|u| u.cached_tokens)),
            ("reasoning_tokens", tokens(|u| u.reasoning_tokens)),
            ("cost_usd", cost),
        ],
    );
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
        if calling.in_flight.take().is_some() {
            // A client error says nothing about the target's speed.
            let took = host.now_ms().saturating_sub(calling.call_start_ms);
            let sample = match &result {
                Ok(_) => Some(Sample::answer(took, took, false)),
                Err(f) if f.is_target_fault() => Some(Sample::answer(took, took, true)),
                Err(_) => None,
            };
            balancer::end(host, &target.name, sample, config.balancing.half_life_ms);
        }
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
        publish(host, target, &calling.account);
        let mut headers = vec![
            ("content-type".to_string(), exchange.content_type().to_string()),
            ("x-ai-provider".to_string(), target.provider.name().to_string()),
            ("x-ai-target".to_string(), target.name.clone()),
            (
                REASON_HEADER.to_string(),
                calling.account.reason_for(upstream).as_str().to_string(),
            ),
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
        f.first_byte_ms = Some(host.now_ms());
        for (name, value) in [
            ("x-ai-provider", target.provider.name()),
            ("x-ai-target", target.name.as_str()),
            (REASON_HEADER, f.account.reason.as_str()),
            ("x-ai-model", target.model()),
        ] {
            let _logged = host.set_response_header(name, Some(value));
        }
        if let Some(dropped) = f.exchange.dropped_header() {
            let _logged = host.set_response_header(DROPPED_HEADER, Some(&dropped));
        }
        publish(host, target, &f.account);
        let provider = target.provider.as_ref();
        // A stream only when the client asked for one and the provider answered one: an answer of the
        // other kind is read as JSON, and judged so.
        let stream = f.exchange.stream
            && host
                .response_header("content-type")
                .is_some_and(|c| provider.framing().matches(&c));
        let mut reply = Reply::new(
            provider,
            &f.exchange,
            f.account.status,
            stream,
            host.now_ms() / 1000,
        );
        // A stream's first byte is its first chunk, not its headers.
        if stream {
            f.first_byte_ms = None;
        }
        let encoding = host
            .response_header("content-encoding")
            .filter(|e| !e.trim().eq_ignore_ascii_case("identity"));
        if let Some(encoding) = &encoding {
            reply.encoded(encoding);
        }
        let mode = if reply.needs_whole_body() {
            let _logged = host.set_response_header("content-type", Some("application/json"));
            // The body is rewritten (or checked and kept, which it is only when not encoded).
            let _logged = host.set_response_header("content-encoding", None);
            ResponseMode::Whole
        } else {
            // A translated stream is in the door's framing (Bedrock's binary event stream becomes SSE).
            if let Some(content_type) = reply.content_type() {
                let _logged = host.set_response_header("content-type", Some(content_type));
            }
            ResponseMode::Stream
        };
        f.reply = Some(reply);
        mode
    }

    fn on_response_chunk(&mut self, host: &mut dyn Host, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let Stage::Forwarded(f) = &mut self.stage else {
            return None;
        };
        if f.first_byte_ms.is_none() && (!chunk.is_empty() || end) {
            f.first_byte_ms = Some(host.now_ms());
        }
        let reply = f.reply.as_mut()?;
        let out = reply.chunk(chunk, end);
        if end {
            f.account.usage = reply.usage();
            if let Some(target) = self.config.targets.get(f.account.target) {
                publish(host, target, &f.account);
            }
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
                publish(host, target, &f.account);
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
                publish(host, target, &f.account);
                WholeResponse {
                    body: f.exchange.error_body(&err),
                    status: Some(err.status),
                }
            }
        }
    }

    fn on_response_too_large(&mut self, host: &mut dyn Host, limit: usize) {
        if let Stage::Forwarded(f) = &mut self.stage {
            host.log(
                LogLevel::Warn,
                &format!("ai-proxy: the provider's answer is larger than {limit} bytes"),
            );
            f.account.status = 502;
        }
    }

    fn on_done(&mut self, host: &mut dyn Host) {
        let now = host.now_ms();
        let half_life = self.config.balancing.half_life_ms;
        let account = match &mut self.stage {
            Stage::Forwarded(f) => {
                if std::mem::take(&mut f.counted) {
                    let sample = forward_sample(&f.account, f.first_byte_ms, now);
                    if let Some(t) = self.config.targets.get(f.account.target) {
                        balancer::end(host, &t.name, sample, half_life);
                    }
                }
                &f.account
            }
            Stage::Calling(c) => {
                // Abandoned with a call out: no longer in flight, nothing learnt.
                if let Some(t) = c.in_flight.take().and_then(|t| self.config.targets.get(t)) {
                    balancer::end(host, &t.name, None, half_life);
                }
                &c.account
            }
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
            LogLevel::Debug,
            &format!(
                "ai-proxy: provider={} target={} model={} client_model={} balancer={} reason={} api={} status={} latency_ms={} {tokens} cost_usd={cost}{dropped}",
                target.provider.name(),
                target.name,
                target.model(),
                account.client_model,
                account.balancer.as_str(),
                account.reason_for(account.target).as_str(),
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
