//! Model calls the gateway makes for its own purposes, as governed tasks described in config.
//!
//! A **task** asks a model one question about some input and gets back JSON that matches its output
//! schema: extract a ticket's entities, score a login's risk, classify an intent, judge a prompt,
//! summarise an audit batch. Every such call goes through here, so each inherits the same governance:
//! redaction of its inputs, structured output per provider, schema validation, a cache, a token budget,
//! a circuit breaker per target, a timeout, a failure mode, metrics, cost and a log line.
//!
//! # Config
//! An embedding filter puts two lists in its config, `targets` and `tasks` (field names in errors
//! follow [`Spec::at`]):
//!
//! ```json
//! { "targets": [ { "name": "mini", "provider": "openai", "model": "gpt-4o-mini",
//!                  "endpoint": { "cluster": "openai", "host": "api.openai.com:443" },
//!                  "auth": { "env": "OPENAI_API_KEY" },
//!                  "breaker": { "consecutive_failures": 5, "cooldown_ms": "30s" } } ],
//!   "tasks": [ { "name": "intent", "target": "mini",
//!                "system": "You route support tickets.",
//!                "prompt": "Ticket: {{body/description}}",
//!                "output": { "type": "object", "required": ["intent"],
//!                            "properties": { "intent": { "enum": ["billing", "bug", "other"] } } },
//!                "max_tokens": 100, "temperature": 0, "timeout": "3s", "cache_ttl": "300s",
//!                "failure_mode": "defaults", "defaults": { "intent": "other" },
//!                "tokens_per_minute": 50000 } ] }
//! ```
//!
//! A target has the shape of ai-proxy's targets ([`crate::provider::target`]) plus an optional
//! `breaker` (ai-proxy's `resilience.breaker`). Templates and value sources are in [`template`].
//!
//! # API
//! ```text
//! Tasks::compile(spec: Spec<'_>, env: &dyn Fn(&str) -> Option<String>) -> Result<Tasks, ConfigError>
//! Tasks::sources(&self) -> BTreeSet<&Source>            // what to gather for a run
//! Tasks::source(&self, text: &str) -> Result<Source, String>   // parse a mapping's source
//! Inputs::from_request(host, body, sources, &RequestContext, max_body_chars) -> Inputs   // in a request
//! Inputs::new() + Inputs::set_var(name, value)          // anywhere else (root timer)
//! Tasks::run(&self, inputs: Inputs) -> Run
//! Run::calls(&mut self, &Tasks, host: &mut dyn Host) -> Vec<HttpCall>   // the next wave, [] when over
//! Run::answer(&mut self, &Tasks, host, call: usize, CallResponse)        // one answer of the wave
//! Run::answers(&mut self, &Tasks, host, Vec<CallResponse>)               // a whole wave (Step::Call)
//! Run::finished(&self) -> bool,  Run::done(&self, task) -> Option<&Done>
//! Run::value(&self, &Tasks, &Source) -> Option<Value>    // a task output or an input, for mappings
//! Run::denied(&self, &Tasks) -> Option<(&str, &Done)>    // a failed task whose failure_mode is deny
//! ```
//! In a request a policy returns `Step::Call(run.calls(..))` and feeds `on_call_responses` to
//! [`Run::answers`] until [`Run::calls`] is empty; a root timer ([`crate::host::Background`]) tags
//! each call of a wave with its index and feeds [`Run::answer`] as answers come. Tasks that do not
//! read each other's outputs go in one wave, in parallel; a task that reads `task.<other>` waits for it
//! (cycles are refused at load) and is skipped when the other has no output.
//!
//! # For the next users
//! - **An intent router** (`ai-router`): one task whose output names a route (`{"route": {"enum": [...]}}`),
//!   run from `on_request_body`; the policy reads `run.value(&tasks, &source)` and calls
//!   `Host::route_to`. `failure_mode: defaults` gives the fallback route.
//! - **The guard's LLM judge**: the cascade's uncertain band asks one task (`{"injection": boolean,
//!   "confidence": number}`) with the prompt as a declared variable (`Inputs::set_var`), `redact` on;
//!   the cache and the budget bound what the judge costs, `deny`/`allow` is the judge's failure mode.
//! - **Audit-log summaries** from the root timer: the `Background` builds `Inputs::new()` from its
//!   queued batch (declared variables only, no request), starts `tasks.run(inputs)`, returns the wave's
//!   calls with tags `(run id << 8) | call index`, and feeds each tagged answer to [`Run::answer`]; the
//!   next wave (if any) comes from [`Run::calls`] once [`Run::waiting`] is false. The log lines carry
//!   `request_id=-`, or the id the caller gives [`Inputs::with_request_id`].
//!
//! # What happens to one task
//! 1. Its system and user prompts are rendered; each inserted value passes through the PII engine
//!    when `redact` is on (the default: the model sees `<EMAIL_1>`), then is cut to `max_input_chars`.
//! 2. The call is built for the target's provider ([`wire`]) and hashed; a cached answer for the same
//!    call ([`cache`]) settles it with no model call.
//! 3. The token budget (`tokens_per_minute`, shared by every worker) reserves the call's estimate;
//!    past the budget the failure mode applies. The target's breaker may refuse it too.
//! 4. The answer is judged, translated back, parsed and validated against the schema; usage settles
//!    the budget, and the output is cached.
//! 5. Every task ends with an [`Outcome`] (`ok`, `cached`, `timeout`, `invalid-output`, `budget`,
//!    `upstream-error`, `breaker-open`, `skipped`), counted as
//!    `<filter>_task_calls_total_task=<name>_outcome=<outcome>`, with
//!    `<filter>_task_latency_ms_task=<name>`, `<filter>_task_tokens_total_task=<name>_kind=prompt|completion`,
//!    `<filter>_task_cost_microusd_total_task=<name>` (with `prices`) and one log line carrying the
//!    request id. A failure applies the task's `failure_mode`: `allow` (go on without its outputs, the
//!    default: enrichment adds context, it must not take an API down), `deny` (the embedding policy
//!    refuses the request), `defaults` (the configured values stand in, checked against the schema at
//!    load).

pub mod cache;
pub mod inputs;
pub mod run;
pub mod template;
pub mod wire;

pub use inputs::{Claims, Inputs, RawClaims, RequestContext};
pub use run::{Done, Outcome, Run};
pub use template::{Scope, Source, Template};

use crate::api::Dialect;
use crate::breaker::{Breaker, RawBreaker};
use crate::config::{ConfigError, Duration, Price};
use crate::provider::target;
use crate::schema::Schema;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// A task's target as configured: ai-proxy's target shape with an optional circuit breaker.
#[derive(Debug, Deserialize)]
pub struct RawTarget {
    name: String,
    #[serde(default)]
    breaker: Option<RawBreaker>,
    #[serde(flatten)]
    target: target::RawTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawFailureMode {
    Allow,
    Deny,
    Defaults,
}

/// A task as configured.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    name: String,
    target: String,
    #[serde(default)]
    system: Option<String>,
    prompt: String,
    output: Value,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    cache_ttl: Option<Duration>,
    #[serde(default)]
    cache_entries: Option<u32>,
    #[serde(default)]
    failure_mode: Option<RawFailureMode>,
    #[serde(default)]
    defaults: Option<Value>,
    #[serde(default)]
    redact: Option<bool>,
    #[serde(default)]
    tokens_per_minute: Option<u64>,
    #[serde(default)]
    max_input_chars: Option<u64>,
}

/// What a failed task means for the run's caller.
#[derive(Debug, Clone, PartialEq)]
pub enum OnFailure {
    /// Go on without its output.
    Allow,
    /// The caller refuses what it was doing (a request: an error answer).
    Deny,
    /// These values stand in for the output.
    Defaults(Value),
}

impl OnFailure {
    pub fn as_str(&self) -> &'static str {
        match self {
            OnFailure::Allow => "allow",
            OnFailure::Deny => "deny",
            OnFailure::Defaults(_) => "defaults",
        }
    }
}

/// A checked task target.
#[derive(Debug)]
pub struct TaskTarget {
    pub name: String,
    pub target: target::Target,
    pub breaker: Option<Breaker>,
    pub price: Option<Price>,
}

/// A checked task.
#[derive(Debug)]
pub struct Task {
    pub name: String,
    /// Index into [`Tasks::targets`].
    pub target: usize,
    pub system: Option<Template>,
    pub prompt: Template,
    pub schema: Schema,
    /// The schema as sent ([`wire::wire_schema`]).
    pub wire_schema: Value,
    pub max_tokens: u64,
    pub temperature: Option<f64>,
    pub timeout_ms: u64,
    /// 0: no cache.
    pub cache_ttl_ms: u64,
    pub cache_entries: u32,
    pub on_failure: OnFailure,
    pub redact: bool,
    pub tokens_per_minute: Option<u64>,
    pub max_input_chars: usize,
    /// Tasks whose outputs it reads (indexes), which run before it.
    pub deps: Vec<usize>,
}

impl Task {
    /// Every source its templates read.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.system
            .iter()
            .flat_map(Template::sources)
            .chain(self.prompt.sources())
    }
}

/// What [`Tasks::compile`] takes.
#[derive(Debug)]
pub struct Spec<'a> {
    /// The embedding filter's name (`ai-enrich`): metric names, logs, shared-data keys.
    pub filter: &'static str,
    /// Where `targets` and `tasks` sit in the config, for errors: `""` at the top level.
    pub at: &'a str,
    pub targets: Vec<RawTarget>,
    pub tasks: Vec<RawTask>,
    /// Upstream model → price, for the cost metric and log.
    pub prices: &'a HashMap<String, Price>,
    /// The variables the filter supplies (ai-enrich: `local.language`, ...).
    pub vars: &'a [&'a str],
}

/// A filter's checked tasks and their targets.
#[derive(Debug)]
pub struct Tasks {
    filter: &'static str,
    vars: Vec<String>,
    targets: Vec<TaskTarget>,
    tasks: Vec<Task>,
}

pub const DEFAULT_MAX_TOKENS: u64 = 256;
pub const MAX_MAX_TOKENS: u64 = 16_384;
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const MAX_TIMEOUT_MS: u64 = 60_000;
pub const MAX_CACHE_TTL_MS: u64 = 86_400_000;
pub const DEFAULT_MAX_INPUT_CHARS: u64 = 4_000;
pub const MAX_MAX_INPUT_CHARS: u64 = 100_000;
/// Most tasks one filter may have (each may be a model call per request).
pub const MAX_TASKS: usize = 16;

/// Task names: a lower-case letter, then up to 31 of `a-z 0-9 -` (they are metric label values and
/// the `json_schema` name).
pub fn valid_task_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Tasks {
    pub fn compile(spec: Spec<'_>, env: &dyn Fn(&str) -> Option<String>) -> Result<Tasks, ConfigError> {
        let field = |f: String| {
            if spec.at.is_empty() {
                f
            } else {
                format!("{}.{f}", spec.at)
            }
        };
        let mut targets = Vec::with_capacity(spec.targets.len());
        for (i, t) in spec.targets.into_iter().enumerate() {
            let at = |f: &str| field(format!("targets[{i}].{f}"));
            if !target::valid_name(&t.name) {
                return Err(ConfigError::new(at("name"), target::NAME_RULE));
            }
            if targets.iter().any(|x: &TaskTarget| x.name == t.name) {
                return Err(ConfigError::new(
                    at("name"),
                    format!("duplicate target name `{}`", t.name),
                ));
            }
            let compiled = t.target.compile(&at, env)?;
            let breaker = match t.breaker {
                Some(b) => Some(Breaker::compile(&at("breaker"), b)?),
                None => None,
            };
            targets.push(TaskTarget {
                price: spec.prices.get(compiled.model()).copied(),
                name: t.name,
                target: compiled,
                breaker,
            });
        }
        if spec.tasks.len() > MAX_TASKS {
            return Err(ConfigError::new(
                field("tasks".into()),
                format!("at most {MAX_TASKS} tasks"),
            ));
        }
        let names: Vec<&str> = spec.tasks.iter().map(|t| t.name.as_str()).collect();
        for (i, name) in names.iter().enumerate() {
            let at = field(format!("tasks[{i}].name"));
            if !valid_task_name(name) {
                return Err(ConfigError::new(
                    at,
                    "must be a lower-case letter then up to 31 of a-z 0-9 -",
                ));
            }
            if names.get(..i).is_some_and(|before| before.contains(name)) {
                return Err(ConfigError::new(at, format!("duplicate task name `{name}`")));
            }
        }
        let scope = Scope {
            tasks: &names,
            vars: spec.vars,
        };
        let mut tasks = Vec::with_capacity(spec.tasks.len());
        for (i, raw) in spec.tasks.iter().enumerate() {
            let at = |f: &str| field(format!("tasks[{i}].{f}"));
            tasks.push(compile_task(raw, &targets, scope, &at)?);
        }
        for (i, t) in tasks.iter().enumerate() {
            if let Some(cycle) = cycle_from(&tasks, i) {
                let path: Vec<&str> = cycle
                    .iter()
                    .filter_map(|&j| tasks.get(j).map(|t| t.name.as_str()))
                    .collect();
                return Err(ConfigError::new(
                    field(format!("tasks[{i}].prompt")),
                    format!(
                        "task `{}` reads its own output through {} (a cycle)",
                        t.name,
                        path.join(" → ")
                    ),
                ));
            }
        }
        if tasks.iter().any(|t| t.redact) {
            // Build the PII engine now (its patterns compile once per VM), not on the first request.
            let _warm = crate::pii::default_engine();
        }
        Ok(Tasks {
            filter: spec.filter,
            vars: spec.vars.iter().map(|v| v.to_string()).collect(),
            targets,
            tasks,
        })
    }

    pub fn filter(&self) -> &'static str {
        self.filter
    }

    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    pub fn targets(&self) -> &[TaskTarget] {
        &self.targets
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The index of the task named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.name == name)
    }

    /// Parses a source as a mapping of the embedding filter writes it (`task.intent/label`), in the
    /// scope of these tasks and the declared variables.
    pub fn source(&self, text: &str) -> Result<Source, String> {
        let names: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
        let vars: Vec<&str> = self.vars.iter().map(String::as_str).collect();
        Source::parse(
            text,
            Scope {
                tasks: &names,
                vars: &vars,
            },
        )
    }

    /// Every source the tasks read that is not another task's output: what a run needs gathered.
    pub fn sources(&self) -> BTreeSet<&Source> {
        self.tasks
            .iter()
            .flat_map(Task::sources)
            .filter(|s| s.task().is_none())
            .collect()
    }

    /// The largest `max_input_chars` of the tasks: how much of a whole body to keep.
    pub fn max_input_chars(&self) -> usize {
        self.tasks.iter().map(|t| t.max_input_chars).max().unwrap_or(0)
    }

    /// A run of every task over `inputs`.
    pub fn run(&self, inputs: Inputs) -> Run {
        Run::new(self, inputs)
    }
}

fn compile_task(
    raw: &RawTask,
    targets: &[TaskTarget],
    scope: Scope<'_>,
    at: &dyn Fn(&str) -> String,
) -> Result<Task, ConfigError> {
    let Some(target) = targets.iter().position(|t| t.name == raw.target) else {
        return Err(ConfigError::new(
            at("target"),
            format!("no target named `{}`", raw.target),
        ));
    };
    let template =
        |text: &str, f: &str| Template::compile(text, scope).map_err(|e| ConfigError::new(at(f), e));
    let system = match &raw.system {
        Some(s) => Some(template(s, "system")?),
        None => None,
    };
    if raw.prompt.trim().is_empty() {
        return Err(ConfigError::new(at("prompt"), "must not be empty"));
    }
    let prompt = template(&raw.prompt, "prompt")?;
    let schema = Schema::compile(&raw.output, &at("output"))?;
    let wire_schema = wire::wire_schema(&raw.output);
    let provider = targets
        .get(target)
        .map(|t| t.target.provider.as_ref())
        .ok_or_else(|| ConfigError::new(at("target"), "unknown target"))?;
    let structured = wire::structured_for(provider);
    if structured == wire::Structured::JsonSchema {
        if let Some((field, message)) = wire::strict_problem(&raw.output, &at("output")) {
            return Err(ConfigError::new(field, message));
        }
    } else if raw.output.get("type").and_then(Value::as_str) != Some("object") {
        return Err(ConfigError::new(
            at("output.type"),
            "the output schema must be an object schema (\"type\": \"object\")",
        ));
    }
    let max_tokens = raw.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if !(1..=MAX_MAX_TOKENS).contains(&max_tokens) {
        return Err(ConfigError::new(
            at("max_tokens"),
            format!("must be 1 to {MAX_MAX_TOKENS}"),
        ));
    }
    let temperature = raw.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ConfigError::new(at("temperature"), "must be 0 to 2"));
    }
    let timeout_ms = raw.timeout.map_or(DEFAULT_TIMEOUT_MS, Duration::as_ms);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(ConfigError::new(
            at("timeout"),
            format!("must be 1 to {MAX_TIMEOUT_MS} ms"),
        ));
    }
    let cache_ttl_ms = raw.cache_ttl.map_or(0, Duration::as_ms);
    if cache_ttl_ms > MAX_CACHE_TTL_MS {
        return Err(ConfigError::new(at("cache_ttl"), "must be at most 24 hours"));
    }
    let cache_entries = raw.cache_entries.unwrap_or(cache::DEFAULT_ENTRIES);
    if !(1..=cache::MAX_ENTRIES).contains(&cache_entries) {
        return Err(ConfigError::new(
            at("cache_entries"),
            format!("must be 1 to {}", cache::MAX_ENTRIES),
        ));
    }
    let on_failure = match (raw.failure_mode, &raw.defaults) {
        (Some(RawFailureMode::Defaults), Some(d)) => {
            if let Err(v) = schema.validate(d, "$") {
                return Err(ConfigError::new(
                    at("defaults"),
                    format!("does not match the output schema at {}: {}", v.path, v.message),
                ));
            }
            OnFailure::Defaults(d.clone())
        }
        (Some(RawFailureMode::Defaults), None) => {
            return Err(ConfigError::new(
                at("defaults"),
                "is required with failure_mode defaults",
            ))
        }
        (_, Some(_)) => {
            return Err(ConfigError::new(
                at("defaults"),
                "is only used with failure_mode defaults",
            ))
        }
        (Some(RawFailureMode::Deny), None) => OnFailure::Deny,
        (Some(RawFailureMode::Allow) | None, None) => OnFailure::Allow,
    };
    if raw.tokens_per_minute == Some(0) {
        return Err(ConfigError::new(at("tokens_per_minute"), "must be at least 1"));
    }
    let max_input_chars = raw.max_input_chars.unwrap_or(DEFAULT_MAX_INPUT_CHARS);
    if !(1..=MAX_MAX_INPUT_CHARS).contains(&max_input_chars) {
        return Err(ConfigError::new(
            at("max_input_chars"),
            format!("must be 1 to {MAX_MAX_INPUT_CHARS}"),
        ));
    }
    let mut deps: Vec<usize> = Vec::new();
    for s in system.iter().flat_map(Template::sources).chain(prompt.sources()) {
        if let Some(j) = s.task().and_then(|n| scope.tasks.iter().position(|t| *t == n)) {
            if !deps.contains(&j) {
                deps.push(j);
            }
        }
    }
    let task = Task {
        name: raw.name.clone(),
        target,
        system,
        prompt,
        schema,
        wire_schema,
        max_tokens,
        temperature: Some(temperature),
        timeout_ms,
        cache_ttl_ms,
        cache_entries,
        on_failure,
        redact: raw.redact.unwrap_or(true),
        tokens_per_minute: raw.tokens_per_minute,
        max_input_chars: usize::try_from(max_input_chars).unwrap_or(usize::MAX),
        deps,
    };
    check_structured_output(&task, provider, structured, at)?;
    Ok(task)
}

/// A probe of the task's call through its provider's translation: a translator that cannot carry the
/// structured-output request (it refuses it, or drops it) refuses the task at load, naming the
/// provider, rather than sending calls whose answers would all be invalid.
fn check_structured_output(
    task: &Task,
    provider: &dyn crate::provider::Provider,
    structured: wire::Structured,
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let ask = wire::Ask {
        name: &task.name,
        system: Some("probe"),
        prompt: "probe",
        schema: &task.wire_schema,
        max_tokens: task.max_tokens,
        temperature: task.temperature,
    };
    let unsupported = |why: String| {
        ConfigError::new(
            at("target"),
            format!(
                "structured output is not supported for `{}` targets yet: {why}",
                provider.name()
            ),
        )
    };
    let (body, _) = wire::prepare(provider, &ask).map_err(|e| unsupported(e.message))?;
    let translated = provider.speaks() != Some(Dialect::OpenAi);
    if translated
        && structured == wire::Structured::JsonSchema
        && !wire::carries_schema(&body, &task.wire_schema)
    {
        return Err(unsupported(
            "its translation drops the response_format request".into(),
        ));
    }
    Ok(())
}

/// A dependency cycle through task `start`, as the tasks on it, if there is one.
fn cycle_from(tasks: &[Task], start: usize) -> Option<Vec<usize>> {
    fn visit(tasks: &[Task], at: usize, start: usize, path: &mut Vec<usize>, seen: &mut Vec<bool>) -> bool {
        for &d in tasks.get(at).map(|t| t.deps.as_slice()).unwrap_or_default() {
            if d == start {
                path.push(d);
                return true;
            }
            if seen.get(d).copied().unwrap_or(true) {
                continue;
            }
            if let Some(s) = seen.get_mut(d) {
                *s = true;
            }
            path.push(d);
            if visit(tasks, d, start, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start];
    let mut seen = vec![false; tasks.len()];
    visit(tasks, start, start, &mut path, &mut seen).then_some(path)
}

#[cfg(test)]
mod tests;
