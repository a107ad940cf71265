//! The ai-token-ratelimit policy: reserve on arrival, refuse what does not fit, settle to the real
//! usage when the response ends, release when the upstream fails or the client goes away.
//!
//! Stages of one request: [`Stage::AwaitingBody`] (identity resolved from headers) → [`Stage::Admitted`]
//! (reservations held in shared counters) → settled once, by the end of the response or by `on_done`.

use crate::config::{Config, Count, FailureMode, Limit, Mode, Per, Rule, StoreFailure, SyncMode};
use serde_json::Value;
use shared::callout::{Callout, Judged};
use shared::chat::{self, Api, Class};
use shared::decision;
use shared::error::ApiError;
use shared::host::{Body, CallResponse, Host, LocalReply, LogLevel, Policy, ResponseMode, Step};
use shared::metrics;
use shared::provider::openai::{self, OpenAiStream};
use shared::provider::NativeStreamUsage;
use shared::queue::Pushed;
use shared::rand::stable_hash;
use shared::ratelimit::estimate::{estimate, Estimate};
use shared::ratelimit::fleet::{self, Ask, Delta, Verdict, ViewAdmit};
use shared::ratelimit::identity::resolve_first;
use shared::ratelimit::store::{self, HostStore, Reservation, StoreError};
use shared::ratelimit::window::{format_reset, retry_after_secs};
use shared::ratelimit::{error_rate, scale};
use shared::redis::{Health, RedisStore};
use shared::sse::SseParser;
use shared::usage::Usage;
use std::rc::Rc;

pub const NAME: &str = "ai-token-ratelimit";
/// Prefix of every shared-data key of this filter. On Kong, `<store>/` puts the keys in the named
/// `shm_kv` store `ai_token_ratelimit` (`KONG_NGINX_WASM_SHM_KV_AI_TOKEN_RATELIMIT=12m`); on Envoy it
/// is just part of the key.
pub const KEY_PREFIX: &str = "ai_token_ratelimit/";
/// Bound on the copy of a JSON response kept to read its usage.
const MAX_OBSERVED: usize = 8 * 1024 * 1024;
/// Longest subject kept as is in a counter key; longer ones are hashed.
const MAX_SUBJECT: usize = 128;

pub struct TokenRateLimit {
    config: Rc<Config>,
    stage: Stage,
}

enum Stage {
    /// Not a request we count.
    Idle,
    AwaitingBody {
        consumer: String,
        tier: Option<String>,
        /// The request's API, from its path.
        api: Option<Api>,
    },
    /// Redis is deciding (one atomic script for every limit of the request).
    Reserving {
        plan: Box<Plan>,
        callout: Callout,
    },
    Admitted(Box<Admitted>),
    /// Refused (or failed) before anything was reserved; logged in `on_done`.
    Refused {
        consumer: String,
        decision: &'static str,
    },
}

/// Where a reservation is held, so that it is settled in the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// This gateway's shared data (`store: local`, or Redis's failure mode `local`).
    Local,
    /// Redis; `view`: hybrid mode, where the counter also has a view in shared data.
    Redis { view: bool },
}

/// One reservation held in one counter.
#[derive(Debug, Clone)]
struct Held {
    /// Index into `Config::limits`.
    limit: usize,
    /// `<limit>:<window>:<subject>`: the shared-data key after [`KEY_PREFIX`], the Redis key's middle.
    counter: String,
    /// Number of the window the reservation was made in.
    window: u64,
    amount: u64,
    /// The limit after tier and adaptive scaling.
    effective: u64,
    /// The counter's value right after this reservation.
    used: u64,
    place: Place,
}

/// What the request asks of each limit, worked out once its body is read.
struct Plan {
    consumer: String,
    tier: Option<String>,
    model: String,
    estimate: Usage,
    injected: bool,
    now: u64,
    /// The limits that apply (index into `Config::limits`) and what each is asked.
    asks: Vec<(usize, Ask)>,
}

impl Plan {
    fn asks(&self) -> Vec<Ask> {
        self.asks.iter().map(|(_, a)| a.clone()).collect()
    }

    fn held(&self, used: &[u64], place: Place) -> Vec<Held> {
        self.asks
            .iter()
            .zip(used)
            .map(|((i, a), used)| held(*i, a, *used, place))
            .collect()
    }
}

fn held(limit: usize, a: &Ask, used: u64, place: Place) -> Held {
    Held {
        limit,
        counter: a.counter.clone(),
        window: a.window,
        amount: a.amount,
        effective: a.limit,
        used,
        place,
    }
}

struct Admitted {
    consumer: String,
    tier: Option<String>,
    model: String,
    estimate: Usage,
    held: Vec<Held>,
    /// In shadow mode: the limit that would have refused the request.
    shadow_refused: Option<String>,
    status: Option<u16>,
    observer: Observer,
    /// `stream_options.include_usage` was added to the request on the client's behalf.
    injected_usage: bool,
    outcome: Option<&'static str>,
    usage: Option<Usage>,
    /// Who decided: `local` (shared data), `redis` (one round trip), `view` (hybrid), `none` (uncounted).
    by: &'static str,
}

/// Reads usage from the response without changing it: OpenAI-shaped (behind ai-proxy) or Anthropic.
enum Observer {
    None,
    Sse(Box<SseObserver>),
    Json(Vec<u8>),
}

/// Every shape is watched: OpenAI's usage chunk, and the providers' own stream events (Anthropic's
/// `message_start`/`message_delta`) through [`NativeStreamUsage`].
struct SseObserver {
    /// We turned on `stream_options.include_usage` for the client, so its usage chunk is removed again.
    strip: bool,
    openai: OpenAiStream,
    parser: SseParser,
    native: NativeStreamUsage,
}

impl Observer {
    /// Watches a chunk; returns replacement bytes only when the usage chunk we asked for is stripped.
    fn feed(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        match self {
            Observer::None => None,
            Observer::Sse(o) => {
                let out = o.openai.feed(chunk);
                for ev in o.parser.feed(chunk) {
                    o.native.observe(&ev);
                }
                out
            }
            Observer::Json(buf) => {
                if buf.len() + chunk.len() <= MAX_OBSERVED {
                    buf.extend_from_slice(chunk);
                }
                None
            }
        }
    }

    /// Ends the body: the usage seen, and when stripping, the bytes still held back.
    fn end(&mut self) -> (Option<Usage>, Option<Vec<u8>>) {
        match self {
            Observer::Sse(o) => {
                for ev in o.parser.finish() {
                    o.native.observe(&ev);
                }
                let rest = o.openai.finish();
                let usage = o.openai.usage().or_else(|| o.native.usage());
                (usage, o.strip.then_some(rest))
            }
            other => (other.usage(), None),
        }
    }

    fn usage(&mut self) -> Option<Usage> {
        match self {
            Observer::None | Observer::Sse(_) => None,
            Observer::Json(buf) => shared::provider::usage_of_json(buf),
        }
    }

    /// What a stream cut short has shown so far (Anthropic reports input tokens first).
    fn partial_usage(&self) -> Option<Usage> {
        match self {
            Observer::Sse(o) => o.openai.usage().or_else(|| o.native.usage()),
            _ => None,
        }
    }
}

/// The `x-ratelimit-*` values of the tightest limit of a kind.
#[derive(Debug, Clone, Copy)]
struct Quota {
    limit: u64,
    remaining: u64,
    reset_ms: u64,
}

fn metric(what: &str, labels: &[(&str, &str)]) -> String {
    metrics::name(&format!("ai_token_ratelimit_{what}"), labels)
}

/// What a limit's key is made of, as published.
fn per_name(per: Per) -> &'static str {
    match per {
        Per::Consumer => "consumer",
        Per::Model => "model",
        Per::ConsumerModel => "consumer_model",
    }
}

impl TokenRateLimit {
    pub fn new(config: Rc<Config>) -> Self {
        TokenRateLimit {
            config,
            stage: Stage::Idle,
        }
    }

    fn limit(&self, i: usize) -> Option<&Limit> {
        self.config.limits.get(i)
    }

    /// The counter of a limit for a request, `<limit>:<window>:<subject>`. Identities come from the
    /// client, so the consumer is length-prefixed (no consumer can pose as another's consumer+model
    /// pair) and a long subject is hashed (no client can make shared-data or Redis keys large).
    fn counter(limit: &Limit, consumer: &str, model: &str) -> String {
        let subject = match limit.per {
            Per::Consumer => consumer.to_string(),
            Per::Model => model.to_string(),
            Per::ConsumerModel => format!("{}:{consumer}|{model}", consumer.len()),
        };
        let subject = if subject.len() > MAX_SUBJECT {
            format!("h-{:016x}", stable_hash(subject.as_bytes()))
        } else {
            subject
        };
        format!("{}:{}:{subject}", limit.name, limit.window.as_str())
    }

    fn health() -> Health<'static> {
        Health {
            filter: NAME,
            namespace: KEY_PREFIX,
        }
    }

    fn tier(&self, host: &dyn Host, consumer: &str) -> Option<String> {
        let t = &self.config.tiers;
        resolve_first(&t.sources, host)
            .or_else(|| t.members.get(consumer).cloned())
            .or_else(|| t.default.clone())
    }

    fn error_keys(window: &str) -> (String, String) {
        (
            format!("{KEY_PREFIX}upstream:{window}:all"),
            format!("{KEY_PREFIX}upstream:{window}:err"),
        )
    }

    /// The product of the factors of the adaptive rules that match now.
    fn adaptive_factor(&self, host: &mut dyn Host, now: u64) -> f64 {
        let mut factor = 1.0;
        for rule in &self.config.adaptive {
            match rule {
                Rule::Header {
                    name,
                    above,
                    factor: f,
                } => {
                    let value = host
                        .request_header(name)
                        .and_then(|v| v.trim().parse::<f64>().ok());
                    if value.is_some_and(|v| v > *above) {
                        factor *= f;
                    }
                }
                Rule::ErrorRate {
                    window,
                    above,
                    min_requests,
                    factor: f,
                } => {
                    let (all, err) = Self::error_keys(window.as_str());
                    let idx = window.index(now);
                    let s = HostStore::new(host);
                    let (Ok(total), Ok(errors)) = (store::read(&s, &all, idx), store::read(&s, &err, idx))
                    else {
                        continue;
                    };
                    if error_rate(errors, total, *min_requests).is_some_and(|r| r > *above) {
                        factor *= f;
                    }
                }
            }
        }
        factor
    }

    /// Counts an upstream answer for the error-rate rules.
    fn record_upstream(&self, host: &mut dyn Host, status: u16) {
        let now = host.now_ms();
        let error = status >= 500 || status == 429;
        for rule in &self.config.adaptive {
            if let Rule::ErrorRate { window, .. } = rule {
                let (all, err) = Self::error_keys(window.as_str());
                let idx = window.index(now);
                let mut s = HostStore::new(host);
                let mut result = store::add(&mut s, &all, idx, 1);
                if error {
                    result = result.and(store::add(&mut s, &err, idx, 1));
                }
                if let Err(e) = result {
                    store_error(host, "error_rate", &all, e);
                }
            }
        }
    }

    /// Gives back reservations (on upstream failure or abort, or a later limit refusing locally).
    fn release(config: &Config, host: &mut dyn Host, held: &[Held]) {
        for h in held {
            let delta = i64::try_from(h.amount).unwrap_or(i64::MAX);
            // Same window or none: a refund for a window that has ended is dropped.
            Self::adjust_held(config, host, h, -delta, h.window, "refund");
        }
    }

    /// Moves a held reservation by `delta` where it is held: the local counter at once, a Redis counter
    /// through the sync queue (and, in hybrid mode, its view at once). `now_window` is the window the
    /// correction is known in.
    fn adjust_held(config: &Config, host: &mut dyn Host, h: &Held, delta: i64, now_window: u64, op: &str) {
        match h.place {
            Place::Local => {
                let key = format!("{KEY_PREFIX}{}", h.counter);
                if let Err(e) = store::adjust(&mut HostStore::new(host), &key, h.window, now_window, delta) {
                    store_error(host, op, &key, e);
                }
            }
            Place::Redis { view } => {
                let Some((window, delta)) = fleet::settle_target(h.window, now_window, delta) else {
                    return;
                };
                if view {
                    fleet::add_to_view(host, KEY_PREFIX, &h.counter, window, delta);
                }
                let window_ms = config.limits.get(h.limit).map_or(1, |l| l.window.millis());
                let d = Delta {
                    counter: h.counter.clone(),
                    window,
                    window_ms,
                    delta,
                    view,
                };
                queue(host, &d, op);
            }
        }
    }

    /// The tightest quota among held limits that `pick` selects, for the `x-ratelimit-*` headers.
    fn quota(&self, held: &[Held], now: u64, pick: fn(Count) -> bool) -> Option<Quota> {
        held.iter()
            .filter_map(|h| {
                let l = self.limit(h.limit)?;
                pick(l.count).then(|| Quota {
                    limit: h.effective,
                    remaining: h.effective.saturating_sub(h.used),
                    reset_ms: l.window.reset_ms(now),
                })
            })
            .min_by_key(|q| q.remaining)
    }

    fn quota_headers(&self, held: &[Held], now: u64) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (kind, pick) in [
            ("tokens", Count::is_tokens as fn(Count) -> bool),
            ("requests", |c| c == Count::Requests),
        ] {
            if let Some(q) = self.quota(held, now, pick) {
                out.push((format!("x-ratelimit-limit-{kind}"), q.limit.to_string()));
                out.push((format!("x-ratelimit-remaining-{kind}"), q.remaining.to_string()));
                out.push((format!("x-ratelimit-reset-{kind}"), format_reset(q.reset_ms)));
            }
        }
        out
    }

    /// Publishes the admission decision for the audit log (`shared::decision`), once a request phase
    /// has decided: `admitted` / `shadow_refused` with the remaining tokens of the tightest limit, the
    /// failures (`store_error`, `ambiguous_path`); a 429 publishes itself in [`Self::refuse`].
    fn publish(&self, host: &mut dyn Host) {
        match &self.stage {
            Stage::Admitted(a) => {
                let now = host.now_ms();
                let tokens = self.quota(&a.held, now, Count::is_tokens);
                let per = a
                    .held
                    .first()
                    .and_then(|h| self.limit(h.limit))
                    .map(|l| per_name(l.per));
                let decision = if a.shadow_refused.is_some() {
                    "shadow_refused"
                } else {
                    "admitted"
                };
                decision::publish(
                    host,
                    "ratelimit",
                    &[
                        ("decision", Value::from(decision)),
                        ("remaining", tokens.map_or(Value::Null, |q| q.remaining.into())),
                        ("limit", tokens.map_or(Value::Null, |q| q.limit.into())),
                        ("key", per.map_or(Value::Null, Value::from)),
                        ("by", Value::from(a.by)),
                    ],
                );
            }
            Stage::Refused { decision, .. } if *decision != "refused" => {
                decision::publish(host, "ratelimit", &[("decision", Value::from(*decision))]);
            }
            _ => {}
        }
    }

    /// The 429 for a reservation `refused` that does not fit; `held` are the ones already released.
    fn refuse(
        &mut self,
        host: &mut dyn Host,
        consumer: String,
        refused: Held,
        held: &[Held],
        now: u64,
    ) -> LocalReply {
        let Some(limit) = self.limit(refused.limit) else {
            return store_unavailable(StoreError::Unavailable);
        };
        let reset_ms = limit.window.reset_ms(now);
        let unit = match limit.count {
            Count::Cost => "micro-USD",
            Count::Requests => "requests",
            _ => "tokens",
        };
        let (name, per) = (limit.name.as_str(), limit.window.as_str());
        let (amount, effective, used) = (refused.amount, refused.effective, refused.used);
        let message = if amount > effective {
            format!(
                "Rate limit `{name}`: this request needs {amount} {unit} but the limit is {effective} {unit} per {per}; reduce max_tokens or the prompt."
            )
        } else {
            format!(
                "Rate limit `{name}` reached: {used} of {effective} {unit} per {per} used, this request needs {amount}. Retry after {}.",
                format_reset(reset_ms)
            )
        };
        host.counter_add(&metric("refused_total", &[("limit", name)]), 1);
        decision::publish(
            host,
            "ratelimit",
            &[
                ("decision", Value::from("refused")),
                ("limit_name", Value::from(name)),
                ("remaining", Value::from(effective.saturating_sub(used))),
                ("limit", Value::from(effective)),
                ("key", Value::from(per_name(limit.per))),
            ],
        );
        let mut reply: LocalReply =
            ApiError::new(429, "rate_limit_exceeded", "rate_limit_exceeded", message).into();
        reply
            .headers
            .push(("retry-after".into(), retry_after_secs(reset_ms).to_string()));
        let mut all = vec![refused];
        all.extend_from_slice(held);
        reply.headers.extend(self.quota_headers(&all, now));
        self.stage = Stage::Refused {
            consumer,
            decision: "refused",
        };
        reply
    }

    /// Works out what the request asks of each limit that applies to it.
    fn plan(
        &mut self,
        host: &mut dyn Host,
        consumer: String,
        tier: Option<String>,
        api: Option<Api>,
        body: &mut Body,
    ) -> Plan {
        let config = Rc::clone(&self.config);
        let est: Estimate = estimate(body, api, config.completion);
        let model = est.model.clone().unwrap_or_else(|| "-".into());
        let now = host.now_ms();
        let factor = self.adaptive_factor(host, now);
        // Anthropic's streams always report usage.
        let injected = est.stream && api != Some(Api::Messages) && ask_stream_usage(body);
        let mut asks = Vec::with_capacity(config.limits.len());
        for (i, limit) in config.limits.iter().enumerate() {
            let Some(amount) = config.amount(limit.count, &model, est.usage()) else {
                continue;
            };
            asks.push((
                i,
                Ask {
                    counter: Self::counter(limit, &consumer, &model),
                    window: limit.window.index(now),
                    window_ms: limit.window.millis(),
                    amount,
                    limit: scale(limit.for_tier(tier.as_deref()), factor),
                },
            ));
        }
        Plan {
            consumer,
            tier,
            model,
            estimate: est.usage(),
            injected,
            now,
            asks,
        }
    }

    fn admit(
        &mut self,
        host: &mut dyn Host,
        consumer: String,
        tier: Option<String>,
        api: Option<Api>,
        body: &mut Body,
    ) -> Step {
        let plan = self.plan(host, consumer, tier, api, body);
        let config = Rc::clone(&self.config);
        let Some(redis) = config.store.redis() else {
            return self.admit_local(host, plan);
        };
        if plan.asks.is_empty() {
            return self.admitted(plan, Vec::new(), None, "none");
        }
        if Self::health().is_down(host) {
            return self.fallback(host, redis.failure_mode, plan);
        }
        let shadow = config.mode == Mode::Shadow;
        if redis.mode == SyncMode::Hybrid {
            let stale = fleet::stale_ms(redis.sync_interval_ms);
            let verdict = fleet::admit_views(host, KEY_PREFIX, &plan.asks(), plan.now, stale, shadow);
            let (used, refused) = match verdict {
                ViewAdmit::Admitted(used) => (used, None),
                ViewAdmit::Refused { index, used } => (used, Some(index)),
                ViewAdmit::Stale => return self.ask_redis(redis, plan, shadow),
                ViewAdmit::Failed => return self.local_store_failed(host, plan),
            };
            host.counter_add(&metric("store_decisions_total", &[("mode", "hybrid")]), 1);
            // What the views took (all of it, or all of it forced in shadow mode) goes to Redis too.
            if refused.is_none() || shadow {
                for (_, a) in &plan.asks {
                    let d = Delta {
                        counter: a.counter.clone(),
                        window: a.window,
                        window_ms: a.window_ms,
                        delta: i64::try_from(a.amount).unwrap_or(i64::MAX),
                        view: true,
                    };
                    queue(host, &d, "reserve");
                }
            }
            return self.decided(host, plan, used, refused, Place::Redis { view: true });
        }
        self.ask_redis(redis, plan, shadow)
    }

    /// One round trip: Redis checks and adds every reservation of the request atomically.
    fn ask_redis(&mut self, redis: &RedisStore, plan: Plan, shadow: bool) -> Step {
        let callout = fleet::admit_call(redis, &plan.asks(), shadow);
        let step = callout.step();
        self.stage = Stage::Reserving {
            plan: Box::new(plan),
            callout,
        };
        step
    }

    /// Redis (or the views) decided for every limit at once: `used` holds each limit's total,
    /// `refused` the first that did not fit (all were added anyway in shadow mode).
    fn decided(
        &mut self,
        host: &mut dyn Host,
        plan: Plan,
        used: Vec<u64>,
        refused: Option<usize>,
        place: Place,
    ) -> Step {
        let config = Rc::clone(&self.config);
        let mut shadow_refused = None;
        if let Some(index) = refused {
            if config.mode != Mode::Shadow {
                let Some((i, a)) = plan.asks.get(index) else {
                    return Step::Reply(store_unavailable(StoreError::Unavailable));
                };
                let h = held(*i, a, used.get(index).copied().unwrap_or(0), place);
                return Step::Reply(self.refuse(host, plan.consumer, h, &[], plan.now));
            }
            for ((i, a), u) in plan.asks.iter().zip(&used) {
                let Some(limit) = config.limits.get(*i) else {
                    continue;
                };
                if *u > a.limit {
                    host.counter_add(&metric("shadow_refused_total", &[("limit", &limit.name)]), 1);
                    shadow_refused.get_or_insert_with(|| limit.name.clone());
                }
            }
        }
        let by = match place {
            Place::Redis { view: true } => "view",
            Place::Redis { view: false } => "redis",
            Place::Local => "local",
        };
        let held = plan.held(&used, place);
        self.admitted(plan, held, shadow_refused, by)
    }

    /// Redis cannot be reached: `failure_mode` decides.
    fn fallback(&mut self, host: &mut dyn Host, mode: StoreFailure, plan: Plan) -> Step {
        host.counter_add(&metric("store_fallback_total", &[("mode", mode.as_str())]), 1);
        match mode {
            StoreFailure::Local => self.admit_local(host, plan),
            StoreFailure::Deny if self.config.mode != Mode::Shadow => {
                self.stage = Stage::Refused {
                    consumer: plan.consumer,
                    decision: "store_error",
                };
                Step::Reply(store_unavailable(StoreError::Unavailable))
            }
            StoreFailure::Allow | StoreFailure::Deny => self.admitted(plan, Vec::new(), None, "none"),
        }
    }

    /// Shared data refused a hybrid view's write: the top-level `failure_mode`, as for local counters.
    fn local_store_failed(&mut self, host: &mut dyn Host, plan: Plan) -> Step {
        host.counter_add(&metric("store_errors_total", &[("limit", "view")]), 1);
        host.log(
            LogLevel::Warn,
            &format!(
                "{NAME}: hybrid view not updated: {}; failure_mode applies",
                StoreError::Unavailable
            ),
        );
        if self.config.failure_mode == FailureMode::Deny && self.config.mode != Mode::Shadow {
            self.stage = Stage::Refused {
                consumer: plan.consumer,
                decision: "store_error",
            };
            return Step::Reply(store_unavailable(StoreError::Unavailable));
        }
        self.admitted(plan, Vec::new(), None, "none")
    }

    /// The request goes on, holding `held`.
    fn admitted(
        &mut self,
        plan: Plan,
        held: Vec<Held>,
        shadow_refused: Option<String>,
        by: &'static str,
    ) -> Step {
        self.stage = Stage::Admitted(Box::new(Admitted {
            consumer: plan.consumer,
            tier: plan.tier,
            model: plan.model,
            estimate: plan.estimate,
            held,
            shadow_refused,
            status: None,
            observer: Observer::None,
            injected_usage: plan.injected,
            outcome: None,
            usage: None,
            by,
        }));
        Step::Continue
    }

    /// Every limit against this gateway's own shared data, one CAS reservation after the other.
    fn admit_local(&mut self, host: &mut dyn Host, plan: Plan) -> Step {
        let config = Rc::clone(&self.config);
        let shadow = config.mode == Mode::Shadow;
        let mut held: Vec<Held> = Vec::new();
        let mut shadow_refused = None;
        for (i, a) in &plan.asks {
            let Some(limit) = config.limits.get(*i) else {
                continue;
            };
            let key = format!("{KEY_PREFIX}{}", a.counter);
            let (result, conflicts) = {
                let mut s = HostStore::new(host);
                let r = store::reserve(&mut s, &key, a.window, a.amount, a.limit, shadow);
                (r, s.conflicts())
            };
            if conflicts > 0 {
                host.counter_add(&metric("cas_conflicts_total", &[]), conflicts);
            }
            match result {
                Ok(Reservation::Admitted { used }) => held.push(self::held(*i, a, used, Place::Local)),
                Ok(Reservation::Refused { used }) if shadow => {
                    held.push(self::held(*i, a, used, Place::Local));
                    host.counter_add(&metric("shadow_refused_total", &[("limit", &limit.name)]), 1);
                    shadow_refused.get_or_insert_with(|| limit.name.clone());
                }
                Ok(Reservation::Refused { used }) => {
                    Self::release(&config, host, &held);
                    let refused = self::held(*i, a, used, Place::Local);
                    return Step::Reply(self.refuse(host, plan.consumer, refused, &held, plan.now));
                }
                Err(e) => {
                    host.counter_add(&metric("store_errors_total", &[("limit", &limit.name)]), 1);
                    host.log(
                        LogLevel::Warn,
                        &format!("{NAME}: counter `{key}` not updated: {e}; failure_mode applies"),
                    );
                    if config.failure_mode == FailureMode::Deny && !shadow {
                        Self::release(&config, host, &held);
                        self.stage = Stage::Refused {
                            consumer: plan.consumer,
                            decision: "store_error",
                        };
                        return Step::Reply(store_unavailable(e));
                    }
                }
            }
        }
        self.admitted(plan, held, shadow_refused, "local")
    }

    /// Moves every held counter from the reservation to the real usage.
    fn settle(config: &Config, host: &mut dyn Host, a: &mut Admitted, u: Usage) {
        let now = host.now_ms();
        for h in &a.held {
            let Some(limit) = config.limits.get(h.limit) else {
                continue;
            };
            let actual = config.amount(limit.count, &a.model, u).unwrap_or(h.amount);
            let delta = i128::from(actual) - i128::from(h.amount);
            let delta = i64::try_from(delta).unwrap_or(if delta > 0 { i64::MAX } else { i64::MIN });
            // A lost settlement is a budget that drifts: `adjust_held` makes it seen.
            Self::adjust_held(config, host, h, delta, limit.window.index(now), "settle");
        }
        a.usage = Some(u);
        a.outcome = Some("usage");
    }

    /// Ends the accounting of the request once: real usage, the estimate kept, or released.
    /// `usage` is what the ended body reported; a body that did not end gives what it showed so far.
    fn finish(config: &Config, host: &mut dyn Host, a: &mut Admitted, ended: bool, usage: Option<Usage>) {
        if a.outcome.is_some() {
            return;
        }
        let ok = a.status.is_some_and(|s| (200..300).contains(&s));
        let usage = if ended { usage } else { a.observer.partial_usage() };
        match (ok, usage) {
            (true, Some(u)) => Self::settle(config, host, a, u),
            (true, None) if ended => {
                // A successful answer without usage: the provider billed something we cannot see.
                a.outcome = Some("estimate_kept");
            }
            (false, _) if a.status.is_some() => {
                Self::release(config, host, &a.held);
                a.outcome = Some("released_upstream_error");
            }
            _ => {
                Self::release(config, host, &a.held);
                a.outcome = Some("released_abort");
            }
        }
    }
}

fn store_unavailable(e: StoreError) -> LocalReply {
    ApiError::new(
        503,
        "rate_limit_unavailable",
        "rate_limit_unavailable",
        format!("rate limit state is unavailable ({e}); try again"),
    )
    .into()
}

/// An OpenAI streaming request without `stream_options.include_usage` gets it, so that the stream
/// reports its usage (OpenAI sends none otherwise); the usage chunk is stripped from the answer again.
fn ask_stream_usage(body: &mut Body) -> bool {
    let asked = body
        .json()
        .ok()
        .and_then(|v| v.get("stream_options"))
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if asked {
        return false;
    }
    match body.json_mut() {
        Ok(Value::Object(o)) => openai::request_stream_usage(o),
        _ => false,
    }
}

/// A failed counter update after admission (settlement, refund, error-rate bookkeeping): logged and
/// counted, since the budget drifts by it.
fn store_error(host: &mut dyn Host, op: &str, key: &str, e: StoreError) {
    host.counter_add(&metric("lost_updates_total", &[("op", op)]), 1);
    host.log(
        LogLevel::Warn,
        &format!("{NAME}: {op} of counter `{key}` lost: {e}"),
    );
}

/// Queues a Redis delta for the timer. A full queue drops its oldest delta (counted in
/// `sync_dropped_total`); a refused write is a lost update.
fn queue(host: &mut dyn Host, d: &Delta, op: &str) {
    match fleet::push(host, KEY_PREFIX, d) {
        Ok(Pushed::Queued { .. }) => {}
        Ok(Pushed::QueuedDroppingOldest { .. } | Pushed::Refused) => {
            host.counter_add(&metric("sync_dropped_total", &[]), 1);
        }
        Err(e) => {
            host.counter_add(&metric("lost_updates_total", &[("op", op)]), 1);
            host.log(
                LogLevel::Warn,
                &format!(
                    "{NAME}: {op} of counter `{}` not queued for redis: {e}",
                    d.counter
                ),
            );
        }
    }
}

impl TokenRateLimit {
    /// Redis's answer to the reservation.
    fn reserved(&mut self, host: &mut dyn Host, responses: Vec<CallResponse>) -> Step {
        let Stage::Reserving { plan, mut callout } = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return Step::Continue;
        };
        let config = Rc::clone(&self.config);
        let Some(redis) = config.store.redis() else {
            return self.admit_local(host, *plan);
        };
        let response = responses.into_iter().next().unwrap_or_default();
        let failure = match callout.judge(response) {
            Judged::Retry(step) => {
                self.stage = Stage::Reserving { plan, callout };
                return step;
            }
            Judged::Failed(f) => f.why,
            Judged::Answer(resp) => match fleet::read_admit(&resp.body, plan.asks.len()) {
                Ok(verdict) => {
                    let now = host.now_ms();
                    host.histogram_record(&metric("store_latency_ms", &[]), now.saturating_sub(plan.now));
                    host.counter_add(&metric("store_decisions_total", &[("mode", "exact")]), 1);
                    let (used, refused) = match verdict {
                        Verdict::Admitted(used) => (used, None),
                        Verdict::Refused { index, used } => (used, Some(index)),
                    };
                    let view = redis.mode == SyncMode::Hybrid;
                    if view {
                        for ((_, a), total) in plan.asks.iter().zip(&used) {
                            fleet::refresh_view(host, KEY_PREFIX, a, *total, now);
                        }
                    }
                    return self.decided(host, *plan, used, refused, Place::Redis { view });
                }
                Err(e) => e.into(),
            },
        };
        let meanwhile = format!("failure_mode {} applies", redis.failure_mode.as_str());
        Self::health().record(host, false, &failure.to_string(), &meanwhile);
        self.fallback(host, redis.failure_mode, *plan)
    }
}

impl Policy for TokenRateLimit {
    fn request_body_limit(&self) -> usize {
        self.config.max_body_bytes
    }

    fn on_request_headers(&mut self, host: &mut dyn Host, has_body: bool) -> Step {
        let method = host.request_header(":method").unwrap_or_default();
        let path = host.request_header(":path").unwrap_or_default();
        let class = self.config.routes.classify(&method, &path);
        if class == Class::Other {
            return Step::Continue;
        }
        let consumer =
            resolve_first(&self.config.consumer, host).unwrap_or_else(|| self.config.anonymous.clone());
        let api = match class {
            Class::Chat(api) => api,
            // In shadow mode an ambiguous path is counted as the API it may be; enforced, it is refused
            // (never skipped: the next filter may read it as a chat request).
            Class::Ambiguous(api) if self.config.mode == Mode::Shadow => api,
            Class::Ambiguous(_) | Class::Other => {
                self.stage = Stage::Refused {
                    consumer,
                    decision: "ambiguous_path",
                };
                self.publish(host);
                return Step::Reply(chat::path::ambiguous_path(&path).into());
            }
        };
        if !has_body {
            return Step::Continue;
        }
        let tier = self.tier(host, &consumer);
        // The answer's usage must be readable: no compressed bodies (ai-proxy does the same upstream).
        let _logged = host.set_request_header("accept-encoding", None);
        self.stage = Stage::AwaitingBody { consumer, tier, api };
        Step::ReadBody
    }

    fn on_request_body(&mut self, host: &mut dyn Host, body: &mut Body) -> Step {
        let Stage::AwaitingBody { consumer, tier, api } = std::mem::replace(&mut self.stage, Stage::Idle)
        else {
            return Step::Continue;
        };
        let step = self.admit(host, consumer, tier, api, body);
        self.publish(host);
        step
    }

    fn on_call_responses(
        &mut self,
        host: &mut dyn Host,
        responses: Vec<CallResponse>,
        _body: Option<&mut Body>,
    ) -> Step {
        let step = self.reserved(host, responses);
        self.publish(host);
        step
    }

    fn on_response_headers(&mut self, host: &mut dyn Host) -> ResponseMode {
        let now = host.now_ms();
        let headers = match &self.stage {
            Stage::Admitted(a) if self.config.mode == Mode::Enforce => self.quota_headers(&a.held, now),
            _ => Vec::new(),
        };
        let Stage::Admitted(a) = &mut self.stage else {
            return ResponseMode::PassThrough;
        };
        for (k, v) in &headers {
            let _logged = host.set_response_header(k, Some(v));
        }
        let status = host
            .response_header(":status")
            .and_then(|s| s.trim().parse::<u16>().ok())
            .unwrap_or(0);
        a.status = Some(status);
        let config = Rc::clone(&self.config);
        self.record_upstream(host, status);
        let Stage::Admitted(a) = &mut self.stage else {
            return ResponseMode::PassThrough;
        };
        if !(200..300).contains(&status) {
            Self::finish(&config, host, a, true, None);
            return ResponseMode::PassThrough;
        }
        let sse = host
            .response_header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().contains("text/event-stream"));
        a.observer = if sse {
            Observer::Sse(Box::new(SseObserver {
                strip: a.injected_usage,
                openai: OpenAiStream::new(a.injected_usage),
                parser: SseParser::new(),
                native: NativeStreamUsage::default(),
            }))
        } else {
            Observer::Json(Vec::new())
        };
        ResponseMode::Stream
    }

    fn on_response_chunk(&mut self, host: &mut dyn Host, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let config = Rc::clone(&self.config);
        let Stage::Admitted(a) = &mut self.stage else {
            return None;
        };
        let out = a.observer.feed(chunk);
        if !end {
            return out;
        }
        let (usage, rest) = a.observer.end();
        Self::finish(&config, host, a, true, usage);
        match (out, rest) {
            (None, None) => None,
            (out, rest) => {
                // Stripping: everything is rewritten, so an unchanged chunk is sent from our copy.
                let mut bytes = out.unwrap_or_default();
                bytes.extend(rest.unwrap_or_default());
                Some(bytes)
            }
        }
    }

    fn on_done(&mut self, host: &mut dyn Host) {
        let config = Rc::clone(&self.config);
        match &mut self.stage {
            Stage::Idle => {}
            Stage::AwaitingBody { consumer, .. } => {
                // The client left before its body arrived: nothing was reserved.
                host.log(
                    LogLevel::Info,
                    &format!("{NAME}: consumer={consumer} decision=aborted"),
                );
            }
            Stage::Reserving { plan, .. } => {
                // The client left before Redis answered: whatever Redis admits is settled nowhere, so the
                // reservation stays counted until its window ends (on the safe side).
                host.log(
                    LogLevel::Info,
                    &format!("{NAME}: consumer={} decision=aborted", plan.consumer),
                );
            }
            Stage::Refused { consumer, decision } => {
                host.counter_add(&metric("requests_total", &[("decision", decision)]), 1);
                host.log(
                    LogLevel::Info,
                    &format!("{NAME}: consumer={consumer} decision={decision}"),
                );
            }
            Stage::Admitted(a) => {
                Self::finish(&config, host, a, false, None);
                let decision = if a.shadow_refused.is_some() {
                    "shadow_refused"
                } else {
                    "admitted"
                };
                let outcome = a.outcome.unwrap_or("-");
                host.counter_add(&metric("requests_total", &[("decision", decision)]), 1);
                host.counter_add(&metric("settled_total", &[("outcome", outcome)]), 1);
                if let Some(u) = a.usage {
                    host.counter_add(&metric("tokens_total", &[("kind", "prompt")]), u.prompt_tokens);
                    host.counter_add(
                        &metric("tokens_total", &[("kind", "completion")]),
                        u.completion_tokens,
                    );
                }
                let usage = a.usage.map_or_else(
                    || "-".to_string(),
                    |u| format!("{}/{}", u.prompt_tokens, u.completion_tokens),
                );
                host.log(
                    LogLevel::Debug,
                    &format!(
                        "{NAME}: consumer={} tier={} model={} decision={decision}{}{} reserved={}/{} usage={usage} outcome={outcome} status={}",
                        a.consumer,
                        a.tier.as_deref().unwrap_or("-"),
                        a.model,
                        a.shadow_refused.as_deref().map(|l| format!(" limit={l}")).unwrap_or_default(),
                        if config.store.redis().is_some() { format!(" store={}", a.by) } else { String::new() },
                        a.estimate.prompt_tokens,
                        a.estimate.completion_tokens,
                        a.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
                    ),
                );
            }
        }
    }
}

/// One smoke test of the whole request cycle on the fake host; real behaviour is proven in Envoy
/// (tests/tests/ratelimit.rs).
#[cfg(test)]
mod tests {
    use super::*;
    use shared::host::{FakeHost, HostKind};

    fn config() -> Rc<Config> {
        Rc::new(
            Config::parse(
                br#"{"consumer":[{"type":"header","name":"x-consumer-id"}],
                     "limits":[{"name":"tpm","per":"consumer","window":"minute","count":"total_tokens","limit":50}]}"#,
            )
            .unwrap(),
        )
    }

    /// Runs one request whose answer reports `usage`; returns the local reply if it was refused.
    fn run(
        host: &mut FakeHost,
        config: &Rc<Config>,
        max_tokens: u64,
        usage: (u64, u64),
    ) -> Option<LocalReply> {
        let mut p = TokenRateLimit::new(Rc::clone(config));
        host.request_headers.insert(":method".into(), "POST".into());
        host.request_headers
            .insert(":path".into(), "/v1/chat/completions?x=1".into());
        host.response_headers.clear();
        assert_eq!(p.on_request_headers(host, true), Step::ReadBody);
        let body = format!(
            r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"abcdefgh"}}]}}"#
        );
        if let Step::Reply(r) = p.on_request_body(host, &mut Body::new(body.into_bytes())) {
            p.on_done(host);
            return Some(r);
        }
        host.response_headers.insert(":status".into(), "200".into());
        assert_eq!(p.on_response_headers(host), ResponseMode::Stream);
        let answer = format!(
            r#"{{"choices":[],"usage":{{"prompt_tokens":{},"completion_tokens":{}}}}}"#,
            usage.0, usage.1
        );
        assert_eq!(p.on_response_chunk(host, answer.as_bytes(), true), None);
        p.on_done(host);
        None
    }

    #[test]
    fn keys_cannot_collide_or_grow() {
        let c = config();
        let mut pair = c.limits[0].clone();
        pair.per = Per::ConsumerModel;
        let a = TokenRateLimit::counter(&pair, "x|y", "z");
        let b = TokenRateLimit::counter(&pair, "x", "y|z");
        assert_ne!(a, b);
        assert_eq!(a, "tpm:minute:3:x|y|z");
        let long = TokenRateLimit::counter(&c.limits[0], &"a".repeat(5000), "m");
        assert!(long.len() < 64, "{long}");
    }

    #[test]
    fn reserve_settle_refuse() {
        let config = config();
        let mut host = FakeHost::new(HostKind::Kong).with_request_headers(&[("x-consumer-id", "ann")]);
        // Reserves 6 + 30 = 36 of 50, settles to 10.
        assert!(run(&mut host, &config, 30, (4, 6)).is_none());
        assert_eq!(
            host.response_headers
                .get("x-ratelimit-remaining-tokens")
                .map(String::as_str),
            Some("14")
        );
        // 10 used + 36 reserved fits; settles to 40 used in all.
        assert!(run(&mut host, &config, 30, (10, 20)).is_none());
        assert_eq!(
            host.response_headers
                .get("x-ratelimit-remaining-tokens")
                .map(String::as_str),
            Some("4")
        );
        // 40 + 36 does not fit.
        let reply = run(&mut host, &config, 30, (0, 0)).unwrap();
        assert_eq!(reply.status, 429);
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_exceeded");
        assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));
        assert_eq!(
            host.counters.get("ai_token_ratelimit_refused_total_limit=tpm"),
            Some(&1)
        );
        assert_eq!(
            host.counters
                .get("ai_token_ratelimit_settled_total_outcome=usage"),
            Some(&2)
        );
        // Another path is not counted.
        let mut p = TokenRateLimit::new(Rc::clone(&config));
        host.request_headers.insert(":path".into(), "/v1/models".into());
        assert_eq!(p.on_request_headers(&mut host, true), Step::Continue);
    }

    /// Exact mode on the fake host: the admission is one call, the settlement a queued delta; a failed
    /// call marks Redis down and `failure_mode: local` counts in shared data instead.
    #[test]
    fn redis_exact_admission_settlement_and_fallback() {
        let config = Rc::new(
            Config::parse(
                br#"{"consumer":[{"type":"header","name":"x-consumer-id"}],
                     "limits":[{"name":"tpm","per":"consumer","window":"minute","count":"total_tokens","limit":50}],
                     "store":{"type":"redis","upstream":{"cluster":"webdis","host":"127.0.0.1:7379"},"key_prefix":"p:"}}"#,
            )
            .unwrap(),
        );
        let mut host = FakeHost::new(HostKind::Envoy).with_request_headers(&[
            ("x-consumer-id", "ann"),
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
        ]);
        host.now_ms = 120_000;
        let body = br#"{"model":"m","max_tokens":30,"messages":[{"role":"user","content":"abcdefgh"}]}"#;
        let mut p = TokenRateLimit::new(Rc::clone(&config));
        assert_eq!(p.on_request_headers(&mut host, true), Step::ReadBody);
        let Step::Call(calls) = p.on_request_body(&mut host, &mut Body::new(body.to_vec())) else {
            panic!("exact mode asks redis")
        };
        let sent = calls[0].path.clone();
        assert!(
            sent.starts_with("/EVAL/") && sent.contains("/1/p%3Arl%3Atpm%3Aminute%3Aann%3A2/0/36/50/"),
            "{sent}"
        );
        let answer = CallResponse {
            status: Some(200),
            headers: vec![],
            body: br#"{"EVAL":[0,36]}"#.to_vec(),
        };
        assert_eq!(p.on_call_responses(&mut host, vec![answer], None), Step::Continue);
        host.response_headers.insert(":status".into(), "200".into());
        assert_eq!(p.on_response_headers(&mut host), ResponseMode::Stream);
        assert_eq!(host.response_headers["x-ratelimit-remaining-tokens"], "14");
        let usage = br#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":6}}"#;
        p.on_response_chunk(&mut host, usage, true);
        p.on_done(&mut host);
        // 36 reserved, 10 used: -26 waits in the queue for the timer.
        let queued = shared::queue::Queue::new("ai_token_ratelimit/sync", 16_384, Default::default());
        let (_, items) = queued.peek(&host, 10);
        let d = Delta::decode(&items[0]).unwrap();
        assert_eq!(
            (d.counter.as_str(), d.window, d.delta, d.view),
            ("tpm:minute:ann", 2, -26, false)
        );
        assert!(host.logged(LogLevel::Debug, "store=redis reserved=6/30 usage=4/6"));

        // Redis does not answer: down, and the request is counted locally instead.
        let mut p = TokenRateLimit::new(Rc::clone(&config));
        p.on_request_headers(&mut host, true);
        assert!(matches!(
            p.on_request_body(&mut host, &mut Body::new(body.to_vec())),
            Step::Call(_)
        ));
        assert_eq!(
            p.on_call_responses(&mut host, vec![CallResponse::default()], None),
            Step::Continue
        );
        assert!(TokenRateLimit::health().is_down(&host));
        assert_eq!(
            host.counters["ai_token_ratelimit_store_fallback_total_mode=local"],
            1
        );
        assert_eq!(
            store::read(&HostStore::new(&mut host), "ai_token_ratelimit/tpm:minute:ann", 2),
            Ok(36)
        );
        // While down, requests do not wait for redis at all: the local limit refuses 36 + 36 > 50.
        let mut p = TokenRateLimit::new(Rc::clone(&config));
        p.on_request_headers(&mut host, true);
        let step = p.on_request_body(&mut host, &mut Body::new(body.to_vec()));
        assert!(matches!(step, Step::Reply(ref r) if r.status == 429), "{step:?}");
    }
}
