//! One run of a filter's tasks over one set of inputs: waves of parallel calls, each task settled with
//! an [`Outcome`], counted, priced and logged.
//!
//! A run needs no request: it reads the clock, shared data (cache, budget, breaker), metrics and the
//! log through [`Host`], all of which a root context has too.

use super::cache::{self, Cache};
use super::template::Source;
use super::wire::{self, Bad};
use super::{Inputs, OnFailure, Task, TaskTarget, Tasks};
use crate::breaker::{Admit, Circuit};
use crate::callout::judge;
use crate::host::{Body, CallResponse, Host, HttpCall, LogLevel, Step};
use crate::metrics;
use crate::pii::{self, Direction, Rules, Session};
use crate::provider::Exchange;
use crate::ratelimit::estimate::{estimate, CompletionPolicy};
use crate::ratelimit::store::{self, HostStore, Reservation};
use crate::usage::Usage;
use serde_json::Value;

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The model answered JSON that matches the schema.
    Ok,
    /// The same call was answered within the cache TTL: no model call.
    Cached,
    /// No answer within the task's timeout.
    Timeout,
    /// An answer that is not JSON, does not match the schema, was cut at `max_tokens` or refused.
    InvalidOutput,
    /// The task's token budget for this minute is used up: no call.
    Budget,
    /// The provider failed (connection, error status, an unreadable answer).
    UpstreamError,
    /// The target's circuit breaker is open: no call.
    BreakerOpen,
    /// A task whose output it reads has none: no call.
    Skipped,
}

impl Outcome {
    /// The metric label and log value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Cached => "cached",
            Outcome::Timeout => "timeout",
            Outcome::InvalidOutput => "invalid-output",
            Outcome::Budget => "budget",
            Outcome::UpstreamError => "upstream-error",
            Outcome::BreakerOpen => "breaker-open",
            Outcome::Skipped => "skipped",
        }
    }

    /// Whether the task failed (its failure mode applies).
    pub fn failed(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Cached)
    }
}

/// A settled task.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub outcome: Outcome,
    /// The answer; after a failure the configured defaults (`failure_mode: defaults`), else `None`.
    pub output: Option<Value>,
    /// Why it failed.
    pub why: Option<String>,
    /// Tokens the call used, when the provider said.
    pub usage: Option<Usage>,
    pub cost_micro_usd: Option<u64>,
    /// From the call to its answer (calls made only).
    pub latency_ms: Option<u64>,
}

impl Done {
    fn new(outcome: Outcome) -> Done {
        Done {
            outcome,
            output: None,
            why: None,
            usage: None,
            cost_micro_usd: None,
            latency_ms: None,
        }
    }

    fn because(mut self, why: impl Into<String>) -> Done {
        self.why = Some(why.into());
        self
    }
}

#[derive(Debug)]
struct Reserved {
    key: String,
    window: u64,
    tokens: u64,
}

/// A call in flight.
#[derive(Debug)]
struct InFlight {
    exchange: Exchange,
    started_ms: u64,
    /// The cache hash, when the task caches.
    hash: Option<u64>,
    reserved: Option<Reserved>,
}

#[derive(Debug)]
enum State {
    Pending,
    Calling(Box<InFlight>),
    Done(Done),
}

/// One run of the tasks.
#[derive(Debug)]
pub struct Run {
    inputs: Inputs,
    states: Vec<State>,
    /// The task of each call of the current wave, and whether it has been answered.
    wave: Vec<(usize, bool)>,
}

/// A budget window: one minute.
const WINDOW_MS: u64 = 60_000;

/// The text a value is inserted as: strings as they are, other values as compact JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn metric(tasks: &Tasks, what: &str) -> String {
    format!("{}_{what}", tasks.filter().replace('-', "_"))
}

impl Run {
    pub(super) fn new(tasks: &Tasks, inputs: Inputs) -> Run {
        Run {
            inputs,
            states: tasks.tasks().iter().map(|_| State::Pending).collect(),
            wave: Vec::new(),
        }
    }

    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    /// Every task has settled.
    pub fn finished(&self) -> bool {
        self.states.iter().all(|s| matches!(s, State::Done(_)))
    }

    /// Calls of the current wave are still out.
    pub fn waiting(&self) -> bool {
        self.wave.iter().any(|(_, answered)| !answered)
    }

    /// How task `i` ended, once it has.
    pub fn done(&self, i: usize) -> Option<&Done> {
        match self.states.get(i)? {
            State::Done(d) => Some(d),
            _ => None,
        }
    }

    /// Every settled task with its result, in config order.
    pub fn results<'a>(&'a self, tasks: &'a Tasks) -> impl Iterator<Item = (&'a Task, &'a Done)> {
        tasks
            .tasks()
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.done(i).map(|d| (t, d)))
    }

    /// The first failed task whose failure mode is `deny`.
    pub fn denied<'a>(&'a self, tasks: &'a Tasks) -> Option<(&'a str, &'a Done)> {
        self.results(tasks)
            .find(|(t, d)| d.outcome.failed() && t.on_failure == OnFailure::Deny)
            .map(|(t, d)| (t.name.as_str(), d))
    }

    /// A source's value: a task's output (or the part at its pointer), else the input.
    pub fn value(&self, tasks: &Tasks, source: &Source) -> Option<Value> {
        match source {
            Source::Task(name, pointer) => {
                let out = self.done(tasks.index(name)?)?.output.as_ref()?;
                match pointer {
                    Some(p) => out.pointer(p).cloned(),
                    None => Some(out.clone()),
                }
            }
            other => self.inputs.get(other).cloned(),
        }
    }

    /// The tokens and cost of every call made.
    pub fn spent(&self) -> (Usage, u64) {
        let mut usage = Usage::default();
        let mut cost = 0u64;
        for s in &self.states {
            if let State::Done(d) = s {
                if let Some(u) = d.usage {
                    usage.prompt_tokens = usage.prompt_tokens.saturating_add(u.prompt_tokens);
                    usage.completion_tokens = usage.completion_tokens.saturating_add(u.completion_tokens);
                }
                cost = cost.saturating_add(d.cost_micro_usd.unwrap_or(0));
            }
        }
        (usage, cost)
    }

    /// The next wave's calls: every pending task whose inputs are ready. Tasks settled without a call
    /// (cached, over budget, breaker open, skipped) settle here, which may ready others. Empty when the
    /// run is over (or a wave is still out).
    pub fn calls(&mut self, tasks: &Tasks, host: &mut dyn Host) -> Vec<HttpCall> {
        if self.waiting() {
            return Vec::new();
        }
        self.wave.clear();
        let mut calls = Vec::new();
        loop {
            let mut progressed = false;
            for (i, task) in tasks.tasks().iter().enumerate() {
                if !matches!(self.states.get(i), Some(State::Pending)) {
                    continue;
                }
                let mut ready = true;
                let mut missing = None;
                for &d in &task.deps {
                    match self.states.get(d) {
                        Some(State::Done(done)) if done.output.is_none() => missing = Some(d),
                        Some(State::Done(_)) => {}
                        _ => ready = false,
                    }
                }
                if !ready {
                    continue;
                }
                progressed = true;
                if let Some(d) = missing {
                    let name = tasks.tasks().get(d).map_or("?", |t| t.name.as_str());
                    let done = Done::new(Outcome::Skipped).because(format!("task {name} has no output"));
                    self.settle(tasks, host, i, done);
                    continue;
                }
                match self.start(tasks, host, i) {
                    Ok((call, flight)) => {
                        if let Some(s) = self.states.get_mut(i) {
                            *s = State::Calling(Box::new(flight));
                        }
                        self.wave.push((i, false));
                        calls.push(call);
                    }
                    Err(done) => self.settle(tasks, host, i, *done),
                }
            }
            if !progressed {
                break;
            }
        }
        calls
    }

    /// In a request: the step that makes the next wave, or `None` when the run is over.
    pub fn step(&mut self, tasks: &Tasks, host: &mut dyn Host) -> Option<Step> {
        let calls = self.calls(tasks, host);
        (!calls.is_empty()).then_some(Step::Call(calls))
    }

    /// The answers to the whole current wave, in the order of its calls (a `Step::Call`'s answers).
    pub fn answers(&mut self, tasks: &Tasks, host: &mut dyn Host, responses: Vec<CallResponse>) {
        for (k, r) in responses.into_iter().enumerate() {
            self.answer(tasks, host, k, r);
        }
        // A wave answered short (never by the driver): what is still out failed.
        for k in 0..self.wave.len() {
            if self.wave.get(k).is_some_and(|(_, answered)| !answered) {
                self.answer(tasks, host, k, CallResponse::default());
            }
        }
    }

    /// The answer to call `k` of the current wave.
    pub fn answer(&mut self, tasks: &Tasks, host: &mut dyn Host, k: usize, resp: CallResponse) {
        let Some((i, answered)) = self.wave.get_mut(k) else {
            return;
        };
        if *answered {
            return;
        }
        *answered = true;
        let i = *i;
        let Some(State::Calling(flight)) = self
            .states
            .get_mut(i)
            .map(|s| std::mem::replace(s, State::Pending))
        else {
            return;
        };
        let (Some(task), Some(target)) = (
            tasks.tasks().get(i),
            tasks.tasks().get(i).and_then(|t| tasks.targets().get(t.target)),
        ) else {
            return;
        };
        let now = host.now_ms();
        let read = wire::read(
            target.target.provider.as_ref(),
            &flight.exchange,
            &resp,
            &task.schema,
        );
        if let Some(b) = &target.breaker {
            // An invalid answer came from a healthy target; a client error says nothing of its health.
            let healthy = match &read.output {
                Ok(_) | Err(Bad::Invalid(_)) => Some(true),
                Err(Bad::Timeout) => Some(false),
                Err(Bad::Upstream(_)) => match judge(&resp) {
                    Err(f) if !f.is_target_fault() => None,
                    _ => Some(false),
                },
            };
            if let Some(ok) = healthy {
                let circuit = Circuit {
                    filter: tasks.filter(),
                    target: &target.name,
                };
                circuit.record(host, b, now, ok);
            }
        }
        if let Some(r) = &flight.reserved {
            // Settle the estimate to the real usage; a call that failed before any answer cost
            // nothing, except a timeout, whose tokens may still be spent.
            let real = match (read.usage, &read.output) {
                (Some(u), _) => u.total(),
                (None, Err(Bad::Timeout)) => r.tokens,
                (None, _) => 0,
            };
            let delta = i64::try_from(real).unwrap_or(i64::MAX) - i64::try_from(r.tokens).unwrap_or(i64::MAX);
            let mut store = HostStore::new(host);
            if let Err(e) = store::adjust(&mut store, &r.key, r.window, now / WINDOW_MS, delta) {
                host.log(
                    LogLevel::Warn,
                    &format!("{}: task={} budget not settled: {e}", tasks.filter(), task.name),
                );
            }
        }
        let cost = match (read.usage, target.price) {
            (Some(u), Some(p)) => Some(p.cost_micro_usd(u)),
            _ => None,
        };
        let mut done = match read.output {
            Ok(output) => {
                if let (Some(hash), true) = (flight.hash, task.cache_ttl_ms > 0) {
                    let cache = Cache {
                        filter: tasks.filter(),
                        task: &task.name,
                        entries: task.cache_entries,
                    };
                    if let Err(e) = cache.put(host, hash, now.saturating_add(task.cache_ttl_ms), &output) {
                        host.log(
                            LogLevel::Warn,
                            &format!("{}: task={} answer not cached: {e}", tasks.filter(), task.name),
                        );
                    }
                }
                let mut d = Done::new(Outcome::Ok);
                d.output = Some(output);
                d
            }
            Err(Bad::Timeout) => Done::new(Outcome::Timeout).because("timed out"),
            Err(Bad::Upstream(why)) => Done::new(Outcome::UpstreamError).because(why),
            Err(Bad::Invalid(why)) => Done::new(Outcome::InvalidOutput).because(why),
        };
        done.usage = read.usage;
        done.cost_micro_usd = cost;
        done.latency_ms = Some(now.saturating_sub(flight.started_ms));
        self.settle(tasks, host, i, done);
    }

    /// The rendered prompts of task `i` (values redacted and bounded) and its call, or how it settled
    /// without one.
    fn start(&self, tasks: &Tasks, host: &mut dyn Host, i: usize) -> Result<(HttpCall, InFlight), Box<Done>> {
        let task = tasks
            .tasks()
            .get(i)
            .ok_or_else(|| Box::new(Done::new(Outcome::Skipped)))?;
        let target = tasks
            .targets()
            .get(task.target)
            .ok_or_else(|| Box::new(Done::new(Outcome::Skipped)))?;
        let (system, prompt) = self.render(tasks, task);
        let ask = wire::Ask {
            name: &task.name,
            system: system.as_deref(),
            prompt: &prompt,
            schema: &task.wire_schema,
            max_tokens: task.max_tokens,
            temperature: task.temperature,
        };
        let provider = target.target.provider.as_ref();
        let (body, exchange) = wire::prepare(provider, &ask).map_err(|e| {
            Box::new(
                Done::new(Outcome::UpstreamError)
                    .because(format!("the call could not be built: {}", e.message)),
            )
        })?;
        let now = host.now_ms();
        let hash = (task.cache_ttl_ms > 0).then(|| cache::hash(&task.name, &target.name, &body));
        if let Some(h) = hash {
            let cache = Cache {
                filter: tasks.filter(),
                task: &task.name,
                entries: task.cache_entries,
            };
            if let Some(output) = cache.get(host, h, now) {
                let mut d = Done::new(Outcome::Cached);
                d.output = Some(output);
                return Err(Box::new(d));
            }
        }
        let reserved = match task.tokens_per_minute {
            Some(limit) => Some(reserve(tasks, task, host, &body, limit, now)?),
            None => None,
        };
        if target.breaker.is_some() {
            let circuit = Circuit {
                filter: tasks.filter(),
                target: &target.name,
            };
            if let Admit::No { retry_at_ms } = circuit.admit(host, now, task.timeout_ms) {
                if let Some(r) = &reserved {
                    let delta = -i64::try_from(r.tokens).unwrap_or(i64::MAX);
                    let _refund_lost_is_conservative =
                        store::adjust(&mut HostStore::new(host), &r.key, r.window, r.window, delta);
                }
                return Err(Box::new(Done::new(Outcome::BreakerOpen).because(format!(
                    "target {} is open for {} ms",
                    target.name,
                    retry_at_ms.saturating_sub(now)
                ))));
            }
        }
        let call = target.target.call(
            body,
            crate::chat::Api::ChatCompletions,
            false,
            &[],
            &[],
            task.timeout_ms,
        );
        Ok((
            call,
            InFlight {
                exchange,
                started_ms: now,
                hash,
                reserved,
            },
        ))
    }

    /// The task's system and user prompts with their values inserted.
    fn render(&self, tasks: &Tasks, task: &Task) -> (Option<String>, String) {
        let mut session = Session::new();
        let rules = Rules::default();
        let mut value = |s: &Source| -> String {
            let Some(v) = self.value(tasks, s) else {
                return String::new();
            };
            let text = text_of(&v);
            // Cut near the limit first (bounded work), redact, then cut to the limit.
            let slack = crate::text::truncate_chars(&text, task.max_input_chars.saturating_add(64));
            let redacted = if task.redact {
                let dets = pii::default_engine().detect(slack);
                session.redact(&rules, slack, &dets, Direction::Request)
            } else {
                slack.to_string()
            };
            crate::text::truncate_chars(&redacted, task.max_input_chars).to_string()
        };
        let system = task.system.as_ref().map(|t| t.render(&mut value));
        let prompt = task.prompt.render(&mut value);
        (system, prompt)
    }

    /// Settles task `i`: the failure mode applied, counted and logged.
    fn settle(&mut self, tasks: &Tasks, host: &mut dyn Host, i: usize, mut done: Done) {
        let Some(task) = tasks.tasks().get(i) else {
            return;
        };
        if done.outcome.failed() {
            if let OnFailure::Defaults(d) = &task.on_failure {
                done.output = Some(d.clone());
            }
        }
        let target = tasks.targets().get(task.target);
        record(tasks, host, task, target, &done, self.inputs.request_id());
        if let Some(s) = self.states.get_mut(i) {
            *s = State::Done(done);
        }
    }
}

/// Reserves the call's estimated tokens in the task's budget for this minute.
fn reserve(
    tasks: &Tasks,
    task: &Task,
    host: &mut dyn Host,
    body: &[u8],
    limit: u64,
    now: u64,
) -> Result<Reserved, Box<Done>> {
    let policy = CompletionPolicy {
        default_tokens: task.max_tokens,
        cap_tokens: task.max_tokens,
    };
    // The provider's body in any chat shape (OpenAI or Anthropic): the estimate every policy shares.
    let tokens = estimate(&mut Body::new(body.to_vec()), None, policy)
        .usage()
        .total();
    let key = format!("{}:llm:budget:{}", tasks.filter(), task.name);
    let window = now / WINDOW_MS;
    let mut store = HostStore::new(host);
    match store::reserve(&mut store, &key, window, tokens, limit, false) {
        Ok(Reservation::Admitted { .. }) => Ok(Reserved { key, window, tokens }),
        Ok(Reservation::Refused { used }) => Err(Box::new(Done::new(Outcome::Budget).because(format!(
            "{used} of {limit} tokens this minute used, the call needs about {tokens}"
        )))),
        Err(e) => {
            // The gateway's own bookkeeping failed: the call goes on uncounted rather than failing.
            host.log(
                LogLevel::Warn,
                &format!("{}: task={} budget not counted: {e}", tasks.filter(), task.name),
            );
            Ok(Reserved {
                key,
                window,
                tokens: 0,
            })
        }
    }
}

/// The metrics and the log line of a settled task.
fn record(
    tasks: &Tasks,
    host: &mut dyn Host,
    task: &Task,
    target: Option<&TaskTarget>,
    done: &Done,
    request_id: Option<&str>,
) {
    let name = task.name.as_str();
    host.counter_add(
        &metrics::name(
            &metric(tasks, "task_calls_total"),
            &[("task", name), ("outcome", done.outcome.label())],
        ),
        1,
    );
    if let Some(ms) = done.latency_ms {
        host.histogram_record(
            &metrics::name(&metric(tasks, "task_latency_ms"), &[("task", name)]),
            ms,
        );
    }
    if let Some(u) = done.usage {
        for (kind, n) in [("prompt", u.prompt_tokens), ("completion", u.completion_tokens)] {
            host.counter_add(
                &metrics::name(
                    &metric(tasks, "task_tokens_total"),
                    &[("task", name), ("kind", kind)],
                ),
                n,
            );
        }
    }
    if let Some(c) = done.cost_micro_usd {
        host.counter_add(
            &metrics::name(&metric(tasks, "task_cost_microusd_total"), &[("task", name)]),
            c,
        );
    }
    let mut line = format!("{}: task={name} outcome={}", tasks.filter(), done.outcome.label());
    if let Some(t) = target {
        line.push_str(&format!(" target={} model={}", t.name, t.target.model()));
    }
    if let Some(ms) = done.latency_ms {
        line.push_str(&format!(" latency_ms={ms}"));
    }
    if let Some(u) = done.usage {
        line.push_str(&format!(
            " prompt_tokens={} completion_tokens={}",
            u.prompt_tokens, u.completion_tokens
        ));
    }
    if let Some(c) = done.cost_micro_usd {
        line.push_str(&format!(" cost_usd={:.6}", c as f64 / 1e6));
    }
    if done.outcome.failed() {
        line.push_str(&format!(" failure_mode={}", task.on_failure.as_str()));
    }
    line.push_str(&format!(" request_id={}", request_id.unwrap_or("-")));
    if let Some(why) = &done.why {
        line.push_str(&format!(" why={why:?}"));
    }
    let level = if done.outcome.failed() {
        LogLevel::Warn
    } else {
        LogLevel::Info
    };
    host.log(level, &line);
}
