//! The ai-token-ratelimit policy: reserve on arrival, refuse what does not fit, settle to the real
//! usage when the response ends, release when the upstream fails or the client goes away.
//!
//! Stages of one request: [`Stage::AwaitingBody`] (identity resolved from headers) → [`Stage::Admitted`]
//! (reservations held in shared counters) → settled once, by the end of the response or by `on_done`.

use crate::config::{Config, Count, FailureMode, Limit, Mode, Per, Rule};
use serde_json::Value;
use shared::chat::{self, Api, Class};
use shared::error::ApiError;
use shared::host::{Body, Host, LocalReply, LogLevel, Policy, ResponseMode, Step};
use shared::metrics;
use shared::provider::openai::{self, OpenAiStream};
use shared::provider::NativeStreamUsage;
use shared::rand::stable_hash;
use shared::ratelimit::estimate::{estimate, Estimate};
use shared::ratelimit::identity::resolve_first;
use shared::ratelimit::store::{self, HostStore, Reservation, StoreError};
use shared::ratelimit::window::{format_reset, retry_after_secs};
use shared::ratelimit::{error_rate, scale};
use shared::sse::SseParser;
use shared::usage::Usage;
use std::rc::Rc;

const NAME: &str = "ai-token-ratelimit";
/// Prefix of every shared-data key of this filter. On Kong, `<store>/` puts the keys in the named
/// `shm_kv` store `ai_token_ratelimit` (`KONG_NGINX_WASM_SHM_KV_AI_TOKEN_RATELIMIT=12m`); on Envoy it
/// is just part of the key.
const KEY_PREFIX: &str = "ai_token_ratelimit/";
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
    Admitted(Box<Admitted>),
    /// Refused (or failed) before anything was reserved; logged in `on_done`.
    Refused {
        consumer: String,
        decision: &'static str,
    },
}

/// One reservation held in one counter.
#[derive(Debug, Clone)]
struct Held {
    /// Index into `Config::limits`.
    limit: usize,
    key: String,
    /// Number of the window the reservation was made in.
    window: u64,
    amount: u64,
    /// The limit after tier and adaptive scaling.
    effective: u64,
    /// The counter's value right after this reservation.
    used: u64,
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
            Observer::Json(buf) => {
                let v: Value = serde_json::from_slice(buf).ok()?;
                shared::provider::usage_of(&v)
            }
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

    /// The counter key of a limit for a request. Identities come from the client, so the consumer is
    /// length-prefixed (no consumer can pose as another's consumer+model pair) and a long subject is
    /// hashed (no client can make shared-data keys large).
    fn key(limit: &Limit, consumer: &str, model: &str) -> String {
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
        format!("{KEY_PREFIX}{}:{}:{subject}", limit.name, limit.window.as_str())
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

    /// Gives back reservations (on refusal of a later limit, upstream failure or abort).
    fn release(host: &mut dyn Host, held: &[Held]) {
        for h in held {
            let delta = i64::try_from(h.amount).unwrap_or(i64::MAX);
            // Same window or none: a refund for a window that has ended is dropped.
            let result = store::adjust(&mut HostStore::new(host), &h.key, h.window, h.window, -delta);
            if let Err(e) = result {
                store_error(host, "refund", &h.key, e);
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

    fn admit(
        &mut self,
        host: &mut dyn Host,
        consumer: String,
        tier: Option<String>,
        api: Option<Api>,
        body: &mut Body,
    ) -> Step {
        let config = Rc::clone(&self.config);
        let est: Estimate = estimate(body, api, config.completion);
        let model = est.model.clone().unwrap_or_else(|| "-".into());
        let now = host.now_ms();
        let factor = self.adaptive_factor(host, now);
        let shadow = config.mode == Mode::Shadow;
        // Anthropic's streams always report usage.
        let injected = est.stream && api != Some(Api::Messages) && ask_stream_usage(body);
        let mut held: Vec<Held> = Vec::new();
        let mut shadow_refused = None;
        for (i, limit) in config.limits.iter().enumerate() {
            let Some(amount) = config.amount(limit.count, &model, est.usage()) else {
                continue;
            };
            let effective = scale(limit.for_tier(tier.as_deref()), factor);
            let key = Self::key(limit, &consumer, &model);
            let window = limit.window.index(now);
            let (result, conflicts) = {
                let mut s = HostStore::new(host);
                let r = store::reserve(&mut s, &key, window, amount, effective, shadow);
                (r, s.conflicts())
            };
            if conflicts > 0 {
                host.counter_add(&metric("cas_conflicts_total", &[]), conflicts);
            }
            let hold = |used| Held {
                limit: i,
                key: key.clone(),
                window,
                amount,
                effective,
                used,
            };
            match result {
                Ok(Reservation::Admitted { used }) => held.push(hold(used)),
                Ok(Reservation::Refused { used }) if shadow => {
                    held.push(hold(used));
                    host.counter_add(&metric("shadow_refused_total", &[("limit", &limit.name)]), 1);
                    shadow_refused.get_or_insert_with(|| limit.name.clone());
                }
                Ok(Reservation::Refused { used }) => {
                    Self::release(host, &held);
                    return Step::Reply(self.refuse(host, consumer, hold(used), &held, now));
                }
                Err(e) => {
                    host.counter_add(&metric("store_errors_total", &[("limit", &limit.name)]), 1);
                    host.log(
                        LogLevel::Warn,
                        &format!("{NAME}: counter `{key}` not updated: {e}; failure_mode applies"),
                    );
                    if config.failure_mode == FailureMode::Deny && !shadow {
                        Self::release(host, &held);
                        self.stage = Stage::Refused {
                            consumer,
                            decision: "store_error",
                        };
                        return Step::Reply(store_unavailable(e));
                    }
                }
            }
        }
        self.stage = Stage::Admitted(Box::new(Admitted {
            consumer,
            tier,
            model,
            estimate: est.usage(),
            held,
            shadow_refused,
            status: None,
            observer: Observer::None,
            injected_usage: injected,
            outcome: None,
            usage: None,
        }));
        Step::Continue
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
            let result = store::adjust(
                &mut HostStore::new(host),
                &h.key,
                h.window,
                limit.window.index(now),
                delta,
            );
            if let Err(e) = result {
                // A lost settlement is a budget that drifts: it must be seen.
                store_error(host, "settle", &h.key, e);
            }
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
                Self::release(host, &a.held);
                a.outcome = Some("released_upstream_error");
            }
            _ => {
                Self::release(host, &a.held);
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
        .and_then(|v| v.pointer("/stream_options/include_usage"))
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
        self.admit(host, consumer, tier, api, body)
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
                    LogLevel::Info,
                    &format!(
                        "{NAME}: consumer={} tier={} model={} decision={decision}{} reserved={}/{} usage={usage} outcome={outcome} status={}",
                        a.consumer,
                        a.tier.as_deref().unwrap_or("-"),
                        a.model,
                        a.shadow_refused.as_deref().map(|l| format!(" limit={l}")).unwrap_or_default(),
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
        let a = TokenRateLimit::key(&pair, "x|y", "z");
        let b = TokenRateLimit::key(&pair, "x", "y|z");
        assert_ne!(a, b);
        assert_eq!(a, "ai_token_ratelimit/tpm:minute:3:x|y|z");
        let long = TokenRateLimit::key(&c.limits[0], &"a".repeat(5000), "m");
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
}
