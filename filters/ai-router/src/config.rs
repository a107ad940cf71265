//! ai-router configuration: raw serde types, compiled into a checked [`Config`] at load.
//!
//! Every error names the field (`rules[2].when.headers.x-team: invalid regex ...`). The intent task and
//! its targets are `shared::llm`'s; the same rules are written as a draft-4 schema in
//! `ai_router.meta.json` for Kong, and the fixtures in `fixtures/` are checked against both.

use crate::intent::{self, Label};
use crate::rules::{Action, Branch, Range, Rule, Target, TextCond, When};
use serde::Deserialize;
use serde_json::json;
use shared::chat::Routes;
use shared::config::read::from_value;
use shared::config::{check_prices, parse_json, ConfigError, Duration, Mode, Price};
use shared::llm::{self, RawClaims, RequestContext, Spec, Tasks};
use shared::pattern::Pattern;
use shared::provider::target;
use shared::ratelimit::identity;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    default: Option<RawAction>,
    #[serde(default)]
    upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    route_header: Option<String>,
    #[serde(default)]
    consumer: Vec<identity::Source>,
    #[serde(default)]
    tier: Vec<identity::Source>,
    #[serde(default)]
    group: Vec<identity::Source>,
    #[serde(default)]
    claims: Option<RawClaims>,
    #[serde(default)]
    intent: Option<RawIntent>,
    #[serde(default)]
    targets: Vec<llm::RawTarget>,
    #[serde(default)]
    prices: HashMap<String, Price>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    when: RawWhen,
    action: RawAction,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    #[serde(default)]
    text: Option<RawText>,
    #[serde(default)]
    language: Option<Vec<String>>,
    #[serde(default)]
    tokens: Option<RawRange>,
    #[serde(default)]
    messages: Option<RawRange>,
    #[serde(default)]
    code: Option<bool>,
    #[serde(default)]
    images: Option<bool>,
    #[serde(default)]
    tools: Option<bool>,
    #[serde(default)]
    response_format: Option<bool>,
    #[serde(default)]
    model: Option<Vec<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    consumer: Option<Vec<String>>,
    #[serde(default)]
    tier: Option<Vec<String>>,
    #[serde(default)]
    group: Option<Vec<String>>,
    #[serde(default)]
    claims: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    intent: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawText {
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    roles: Option<Vec<Role>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Role {
    User,
    Assistant,
    System,
    Developer,
    Tool,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Developer => "developer",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    #[serde(default)]
    min: Option<u64>,
    #[serde(default)]
    max: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    split: Option<Vec<RawBranch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default = "one")]
    weight: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    cluster: String,
    host: String,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classifier {
    /// The built-in rules ([`crate::intent`]): no model, no key.
    #[default]
    Local,
    /// A `shared::llm` task on one of `targets`.
    Model,
}

/// What a rule on the intent does when the model classifier fails (timeout, error, budget, breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentFailure {
    /// The request takes the default route at once.
    #[default]
    Default,
    /// The rules on the intent do not match; the next rules are tried.
    Skip,
    /// The request is refused with 503 `routing_failed`.
    Deny,
}

impl IntentFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentFailure::Default => "default",
            IntentFailure::Skip => "skip",
            IntentFailure::Deny => "deny",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntent {
    #[serde(default)]
    classifier: Classifier,
    labels: Vec<RawLabel>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    cache_ttl: Option<Duration>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    tokens_per_minute: Option<u64>,
    #[serde(default)]
    max_input_chars: Option<u64>,
    #[serde(default)]
    redact: Option<bool>,
    #[serde(default)]
    failure_mode: IntentFailure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    code: bool,
    #[serde(default)]
    max_words: Option<u64>,
}

/// A non-LLM upstream an action may pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub cluster: String,
    pub host: String,
    /// The upstream path; `None` keeps the request's.
    pub path: Option<String>,
}

#[derive(Debug)]
pub struct IntentConfig {
    pub classifier: Classifier,
    pub labels: Vec<Label>,
    pub failure: IntentFailure,
}

/// What the facts must hold, from what some rule reads: only that is computed per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub language: bool,
    pub code: bool,
    pub tokens: bool,
    pub consumer: bool,
    pub tier: bool,
    pub group: bool,
    pub claims: bool,
    /// Request headers the rules read.
    pub headers: Vec<String>,
}

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub routes: Routes,
    pub rules: Vec<Rule>,
    /// When no rule matches; `None` leaves the request as it is.
    pub default: Option<Action>,
    pub upstreams: Vec<Upstream>,
    pub route_header: String,
    pub context: RequestContext,
    pub group: Vec<identity::Source>,
    pub intent: Option<IntentConfig>,
    /// The model classifier's task (empty otherwise).
    pub tasks: Tasks,
    pub needs: Needs,
    pub max_body_bytes: usize,
}

/// The header naming the decision, for the upstream and the client.
pub const ROUTE_HEADER: &str = "x-ai-route";
/// The decision's name when no rule matched.
pub const DEFAULT_RULE: &str = "default";
pub const DEFAULT_ROUTE_HEADER: &str = "x-ai-cluster";
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 100 * 1024 * 1024;
pub const MAX_RULES: usize = 64;
pub const MAX_LABELS: usize = 32;
const MAX_WEIGHT: u64 = 10_000;
const DEFAULT_INTENT_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_INTENT_CACHE_TTL_MS: u64 = 300_000;
const DEFAULT_INTENT_MAX_TOKENS: u64 = 20;
const DEFAULT_INTENT_INPUT_CHARS: u64 = 2_000;

/// Rule names: 1–64 of `a-z 0-9 -` (metric label values and the `x-ai-route` header).
fn valid_rule_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(name.to_string())
    } else {
        Err(ConfigError::new(
            field,
            "must be a lower-case header name of a-z 0-9 - (at most 64)",
        ))
    }
}

fn regex(field: &str, pattern: &str) -> Result<Pattern, ConfigError> {
    Pattern::new(pattern).map_err(|e| ConfigError::new(field, format!("invalid regex `{pattern}`: {e}")))
}

fn values(field: &str, list: Option<Vec<String>>) -> Result<Option<Vec<String>>, ConfigError> {
    match list {
        None => Ok(None),
        Some(l) if l.is_empty() => Err(ConfigError::new(field, "must not be empty")),
        Some(l) => {
            if l.iter().any(|v| v.is_empty() || v.len() > 256) {
                return Err(ConfigError::new(field, "values must be 1 to 256 characters"));
            }
            Ok(Some(l))
        }
    }
}

fn range(field: &str, r: Option<RawRange>) -> Result<Option<Range>, ConfigError> {
    let Some(r) = r else { return Ok(None) };
    let (min, max) = (r.min.unwrap_or(0), r.max.unwrap_or(u64::MAX));
    if r.min.is_none() && r.max.is_none() {
        return Err(ConfigError::new(field, "needs min, max or both"));
    }
    if min > max {
        return Err(ConfigError::new(field, "min must not be above max"));
    }
    Ok(Some(Range { min, max }))
}

/// The checked parts a rule's conditions are compiled against.
struct Scope<'a> {
    intent: Option<&'a IntentConfig>,
    context: &'a RequestContext,
    group: bool,
}

fn compile_when(at: &str, w: RawWhen, scope: &Scope<'_>, needs: &mut Needs) -> Result<When, ConfigError> {
    let f = |name: &str| format!("{at}.{name}");
    let text = match w.text {
        None => None,
        Some(t) => {
            if t.regex.is_none() && t.keywords.is_empty() {
                return Err(ConfigError::new(f("text"), "needs regex, keywords or both"));
            }
            if t.keywords.iter().any(|k| k.trim().is_empty()) {
                return Err(ConfigError::new(f("text.keywords"), "keywords must not be empty"));
            }
            let roles = match t.roles {
                Some(r) if r.is_empty() => {
                    return Err(ConfigError::new(f("text.roles"), "must not be empty"))
                }
                Some(r) => r.iter().map(|r| r.as_str().to_string()).collect(),
                None => vec!["user".to_string()],
            };
            Some(TextCond {
                regex: match &t.regex {
                    Some(p) => Some(regex(&f("text.regex"), p)?),
                    None => None,
                },
                keywords: t.keywords.iter().map(|k| k.trim().to_lowercase()).collect(),
                roles,
            })
        }
    };
    let language = values(&f("language"), w.language)?;
    if let Some(l) = &language {
        if l.iter()
            .any(|c| c.len() > 8 || !c.bytes().all(|b| b.is_ascii_lowercase()))
        {
            return Err(ConfigError::new(
                f("language"),
                "language codes are lower-case letters (ISO 639-1 such as `en`, or `und`)",
            ));
        }
        needs.language = true;
    }
    let tokens = range(&f("tokens"), w.tokens)?;
    needs.tokens |= tokens.is_some();
    needs.code |= w.code.is_some();
    let mut headers = Vec::with_capacity(w.headers.len());
    for (name, pattern) in &w.headers {
        let field = f(&format!("headers.{name}"));
        let name = header_name(&field, name)?;
        headers.push((name.clone(), regex(&field, pattern)?));
        if !needs.headers.contains(&name) {
            needs.headers.push(name);
        }
    }
    let identity = |list: Option<Vec<String>>, name: &str, configured: bool| {
        let list = values(&f(name), list)?;
        if list.is_some() && !configured {
            return Err(ConfigError::new(
                name,
                format!(
                    "is required: `{}` reads it, and there is nothing to read it from",
                    f(name)
                ),
            ));
        }
        Ok(list)
    };
    let consumer = identity(w.consumer, "consumer", !scope.context.consumer.is_empty())?;
    let tier = identity(w.tier, "tier", !scope.context.tier.is_empty())?;
    let group = identity(w.group, "group", scope.group)?;
    needs.consumer |= consumer.is_some();
    needs.tier |= tier.is_some();
    needs.group |= group.is_some();
    let mut claims = Vec::with_capacity(w.claims.len());
    for (name, accepted) in w.claims {
        let field = f(&format!("claims.{name}"));
        if scope.context.claims.is_none() {
            return Err(ConfigError::new(
                "claims",
                format!("is required: `{field}` reads a verified claim"),
            ));
        }
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(ConfigError::new(
                field,
                "must be a claim name (dots for nested claims)",
            ));
        }
        let accepted = values(&field, Some(accepted))?.unwrap_or_default();
        claims.push((name, accepted));
        needs.claims = true;
    }
    let intent = values(&f("intent"), w.intent)?;
    if let Some(labels) = &intent {
        let Some(config) = scope.intent else {
            return Err(ConfigError::new(
                "intent",
                format!("is required: `{}` reads the intent", f("intent")),
            ));
        };
        for l in labels {
            if !config.labels.iter().any(|x| x.name == *l) {
                return Err(ConfigError::new(
                    f("intent"),
                    format!("`{l}` is not one of intent.labels"),
                ));
            }
        }
    }
    Ok(When {
        text,
        language,
        tokens,
        messages: range(&f("messages"), w.messages)?,
        code: w.code,
        images: w.images,
        tools: w.tools,
        response_format: w.response_format,
        model: values(&f("model"), w.model)?,
        headers,
        consumer,
        tier,
        group,
        claims,
        intent,
    })
}

fn check_model(field: &str, m: &str) -> Result<Target, ConfigError> {
    if m.trim().is_empty() || m.len() > 256 {
        return Err(ConfigError::new(field, "must be 1 to 256 characters"));
    }
    Ok(Target::Model(m.to_string()))
}

fn target_of(
    at: &str,
    model: Option<String>,
    upstream: Option<String>,
    upstreams: &[Upstream],
) -> Result<Target, ConfigError> {
    match (model, upstream) {
        (Some(m), None) => check_model(&format!("{at}.model"), &m),
        (None, Some(u)) => upstreams
            .iter()
            .position(|x| x.name == u)
            .map(Target::Upstream)
            .ok_or_else(|| ConfigError::new(format!("{at}.upstream"), format!("no upstream named `{u}`"))),
        _ => Err(ConfigError::new(at, "needs exactly one of model or upstream")),
    }
}

fn compile_action(at: &str, a: RawAction, upstreams: &[Upstream]) -> Result<Action, ConfigError> {
    match (a.model, a.upstream, a.split) {
        (model, upstream, None) if model.is_some() || upstream.is_some() => Ok(Action {
            branches: vec![Branch {
                target: target_of(at, model, upstream, upstreams)?,
                weight: 1,
            }],
        }),
        (None, None, Some(split)) => {
            let field = format!("{at}.split");
            if split.is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
            let mut branches = Vec::with_capacity(split.len());
            for (i, b) in split.into_iter().enumerate() {
                let bat = format!("{field}[{i}]");
                if b.weight > MAX_WEIGHT {
                    return Err(ConfigError::new(format!("{bat}.weight"), "must be 0 to 10000"));
                }
                branches.push(Branch {
                    target: target_of(&bat, b.model, b.upstream, upstreams)?,
                    weight: b.weight,
                });
            }
            if branches.iter().all(|b| b.weight == 0) {
                return Err(ConfigError::new(field, "weights must not all be 0"));
            }
            Ok(Action { branches })
        }
        _ => Err(ConfigError::new(
            at,
            "needs exactly one of model, upstream or split",
        )),
    }
}

fn compile_intent(raw: &RawIntent) -> Result<IntentConfig, ConfigError> {
    if raw.labels.is_empty() || raw.labels.len() > MAX_LABELS {
        return Err(ConfigError::new("intent.labels", "must hold 1 to 32 labels"));
    }
    let mut labels: Vec<Label> = Vec::with_capacity(raw.labels.len());
    for (i, l) in raw.labels.iter().enumerate() {
        let at = |f: &str| format!("intent.labels[{i}].{f}");
        if !llm::valid_task_name(&l.name) {
            return Err(ConfigError::new(
                at("name"),
                "must be a lower-case letter then up to 31 of a-z 0-9 -",
            ));
        }
        if labels.iter().any(|x| x.name == l.name) {
            return Err(ConfigError::new(
                at("name"),
                format!("duplicate label name `{}`", l.name),
            ));
        }
        if l.keywords.iter().any(|k| k.trim().is_empty()) {
            return Err(ConfigError::new(at("keywords"), "keywords must not be empty"));
        }
        if let Some(d) = &l.description {
            if d.len() > 1024 {
                return Err(ConfigError::new(
                    at("description"),
                    "must be at most 1024 characters",
                ));
            }
        }
        if l.max_words == Some(0) {
            return Err(ConfigError::new(at("max_words"), "must be at least 1"));
        }
        labels.push(Label {
            name: l.name.clone(),
            description: l.description.clone().unwrap_or_else(|| l.name.clone()),
            keywords: l.keywords.iter().map(|k| k.trim().to_lowercase()).collect(),
            code: l.code,
            max_words: l.max_words,
        });
    }
    match (raw.classifier, &raw.target) {
        (Classifier::Model, None) => {
            return Err(ConfigError::new(
                "intent.target",
                "the model classifier needs a target",
            ))
        }
        (Classifier::Local, Some(_)) => {
            return Err(ConfigError::new(
                "intent.target",
                "only the model classifier has a target (set classifier: model)",
            ))
        }
        _ => {}
    }
    Ok(IntentConfig {
        classifier: raw.classifier,
        labels,
        failure: raw.failure_mode,
    })
}

/// The model classifier's task, as a `shared::llm` task config.
fn intent_task(raw: &RawIntent, config: &IntentConfig) -> Result<llm::RawTask, ConfigError> {
    let ms = |d: Option<Duration>, default: u64| d.map_or(default, Duration::as_ms);
    let mut task = json!({
        "name": intent::TASK,
        "target": raw.target.clone().unwrap_or_default(),
        "system": intent::system_prompt(&config.labels, raw.instructions.as_deref()),
        "prompt": format!("{{{{{}}}}}", intent::PROMPT_VAR),
        "output": intent::output_schema(&config.labels),
        "max_tokens": raw.max_tokens.unwrap_or(DEFAULT_INTENT_MAX_TOKENS),
        "temperature": 0,
        "timeout": ms(raw.timeout, DEFAULT_INTENT_TIMEOUT_MS),
        "cache_ttl": ms(raw.cache_ttl, DEFAULT_INTENT_CACHE_TTL_MS),
        "failure_mode": "allow",
        "max_input_chars": raw.max_input_chars.unwrap_or(DEFAULT_INTENT_INPUT_CHARS),
    });
    if let Some(obj) = task.as_object_mut() {
        if let Some(r) = raw.redact {
            obj.insert("redact".into(), r.into());
        }
        if let Some(t) = raw.tokens_per_minute {
            obj.insert("tokens_per_minute".into(), t.into());
        }
    }
    from_value(&task, "intent")
}

impl Config {
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(json)?;
        check_prices(&raw.prices)?;
        let routes = Routes::from_config("paths", raw.paths.as_deref())?;
        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        for (name, u) in raw.upstreams {
            let at = |f: &str| format!("upstreams.{name}.{f}");
            if !target::valid_name(&name) {
                return Err(ConfigError::new(format!("upstreams.{name}"), target::NAME_RULE));
            }
            if u.cluster.trim().is_empty() {
                return Err(ConfigError::new(at("cluster"), "must not be empty"));
            }
            let port_ok = u
                .host
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !port_ok {
                return Err(ConfigError::new(at("host"), "must be host:port"));
            }
            if u.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
                return Err(ConfigError::new(at("path"), "must start with /"));
            }
            upstreams.push(Upstream {
                name,
                cluster: u.cluster,
                host: u.host,
                path: u.path,
            });
        }
        let route_header = header_name(
            "route_header",
            raw.route_header.as_deref().unwrap_or(DEFAULT_ROUTE_HEADER),
        )?;
        let context = RequestContext {
            consumer: raw.consumer,
            tier: raw.tier,
            claims: match raw.claims {
                Some(c) => Some(c.compile("claims", env)?),
                None => None,
            },
        };
        let intent = match &raw.intent {
            Some(i) => Some(compile_intent(i)?),
            None => None,
        };
        let task = match (&raw.intent, &intent) {
            (Some(r), Some(c)) if c.classifier == Classifier::Model => vec![intent_task(r, c)?],
            _ => Vec::new(),
        };
        if task.is_empty() && !raw.targets.is_empty() {
            return Err(ConfigError::new(
                "targets",
                "only the model intent classifier uses targets (set intent.classifier: model)",
            ));
        }
        let tasks = Tasks::compile(
            Spec {
                filter: "ai-router",
                at: "",
                targets: raw.targets,
                tasks: task,
                prices: &raw.prices,
                vars: &[intent::PROMPT_VAR],
            },
            env,
        )
        .map_err(|e| match e.field.strip_prefix("tasks[0]") {
            Some(rest) => ConfigError::new(format!("intent{rest}"), e.message),
            None => e,
        })?;
        if raw.rules.len() > MAX_RULES {
            return Err(ConfigError::new("rules", format!("at most {MAX_RULES} rules")));
        }
        let scope = Scope {
            intent: intent.as_ref(),
            context: &context,
            group: !raw.group.is_empty(),
        };
        let mut needs = Needs::default();
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            if !valid_rule_name(&r.name) || r.name == DEFAULT_RULE {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    "must be 1 to 64 of a-z 0-9 - (and not `default`)",
                ));
            }
            if rules.iter().any(|x| x.name == r.name) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate rule name `{}`", r.name),
                ));
            }
            let when = compile_when(&format!("{at}.when"), r.when, &scope, &mut needs)?;
            let action = compile_action(&format!("{at}.action"), r.action, &upstreams)?;
            rules.push(Rule {
                name: r.name,
                when,
                action,
            });
        }
        if intent.is_some() && !rules.iter().any(|r| r.when.intent.is_some()) {
            return Err(ConfigError::new("intent", "no rule reads the intent"));
        }
        let default = match raw.default {
            Some(a) => Some(compile_action("default", a, &upstreams)?),
            None => None,
        };
        if rules.is_empty() && default.is_none() {
            return Err(ConfigError::new(
                "rules",
                "nothing to do: set rules, a default, or both",
            ));
        }
        let max_body = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if !(1..=MAX_MAX_BODY).contains(&max_body) {
            return Err(ConfigError::new("max_body_bytes", "must be 1 to 104857600"));
        }
        Ok(Config {
            mode: raw.mode,
            routes,
            rules,
            default,
            upstreams,
            route_header,
            context,
            group: raw.group,
            intent,
            tasks,
            needs,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "OPENAI_API_KEY").then(|| "sk-test".to_string())
    }

    const BASE: &str = r#"{
      "rules": [
        {"name": "code", "when": {"code": true, "tokens": {"min": 10}}, "action": {"model": "big"}},
        {"name": "tickets", "when": {"headers": {"x-kind": "^ticket$"}}, "action": {"upstream": "helpdesk"}},
        {"name": "billing", "when": {"intent": ["billing"]},
         "action": {"split": [{"model": "a", "weight": 9}, {"model": "b"}]}}
      ],
      "default": {"model": "small"},
      "upstreams": {"helpdesk": {"cluster": "desk", "host": "desk.local:8080", "path": "/in"}},
      "intent": {"labels": [{"name": "billing", "keywords": ["Invoice"]}, {"name": "chat", "max_words": 3}]}
    }"#;

    #[test]
    fn parses_and_defaults() {
        let c = Config::parse(BASE.as_bytes(), &env).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.rules.len(), 3);
        assert_eq!(c.route_header, "x-ai-cluster");
        assert_eq!(
            c.rules[0].when.tokens,
            Some(Range {
                min: 10,
                max: u64::MAX
            })
        );
        assert_eq!(c.rules[1].action.branches[0].target, Target::Upstream(0));
        assert_eq!(c.rules[2].action.total_weight(), 10);
        assert_eq!(
            c.default.as_ref().unwrap().branches[0].target,
            Target::Model("small".into())
        );
        let i = c.intent.as_ref().unwrap();
        assert_eq!(
            (i.classifier, i.failure),
            (Classifier::Local, IntentFailure::Default)
        );
        assert_eq!(i.labels[0].keywords, vec!["invoice"]);
        assert!(c.tasks.is_empty());
        assert_eq!(
            c.needs,
            Needs {
                code: true,
                tokens: true,
                headers: vec!["x-kind".into()],
                ..Needs::default()
            }
        );
    }

    #[test]
    fn the_model_classifier_is_a_task() {
        let json = BASE.replacen(
            r#""intent": {"#,
            r#""targets": [{"name": "mini", "provider": "openai", "model": "gpt-4o-mini",
                "endpoint": {"cluster": "openai", "host": "api.openai.com:443"}, "auth": {"env": "OPENAI_API_KEY"}}],
              "intent": {"classifier": "model", "target": "mini", "timeout": "1s", "#,
            1,
        );
        let c = Config::parse(json.as_bytes(), &env).unwrap();
        let t = &c.tasks.tasks()[0];
        assert_eq!(
            (t.name.as_str(), t.timeout_ms, t.cache_ttl_ms),
            ("intent", 1_000, 300_000)
        );
        // Task errors name the intent's fields.
        let bad = json.replacen(r#""target": "mini""#, r#""target": "nope""#, 1);
        let err = Config::parse(bad.as_bytes(), &env).unwrap_err();
        assert_eq!(err.field, "intent.target", "{err}");
        let bad = json.replacen(r#""timeout": "1s""#, r#""timeout": "0s""#, 1);
        let err = Config::parse(bad.as_bytes(), &env).unwrap_err();
        assert_eq!(err.field, "intent.timeout", "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (r#""name": "code""#, r#""name": "Code""#, "rules[0].name"),
            (r#""name": "code""#, r#""name": "default""#, "rules[0].name"),
            (r#""name": "tickets""#, r#""name": "code""#, "rules[1].name"),
            (r#""^ticket$""#, r#""(""#, "rules[1].when.headers.x-kind"),
            // The small engine has no Unicode class tables: refused, not matched as something else.
            (r#""^ticket$""#, r#""\\p{Greek}""#, "rules[1].when.headers.x-kind"),
            (
                r#""code": true,"#,
                r#""text": {"regex": "a{2,1}"},"#,
                "rules[0].when.text.regex",
            ),
            (r#""x-kind""#, r#""X-Kind""#, "rules[1].when.headers.X-Kind"),
            (
                r#"{"min": 10}"#,
                r#"{"min": 10, "max": 9}"#,
                "rules[0].when.tokens",
            ),
            (r#"{"min": 10}"#, r#"{}"#, "rules[0].when.tokens"),
            (
                r#"{"upstream": "helpdesk"}"#,
                r#"{"upstream": "nope"}"#,
                "rules[1].action.upstream",
            ),
            (
                r#"{"model": "big"}"#,
                r#"{"model": "big", "upstream": "helpdesk"}"#,
                "rules[0].action",
            ),
            (r#"{"model": "big"}"#, r#"{}"#, "rules[0].action"),
            (
                r#"{"model": "a", "weight": 9}, {"model": "b"}"#,
                r#"{"model": "a", "weight": 0}"#,
                "rules[2].action.split",
            ),
            (
                r#""weight": 9"#,
                r#""weight": 10001"#,
                "rules[2].action.split[0].weight",
            ),
            (
                r#""intent": ["billing"]"#,
                r#""intent": ["refunds"]"#,
                "rules[2].when.intent",
            ),
            (r#""code": true,"#, r#""tier": ["gold"],"#, "tier"),
            (r#""code": true,"#, r#""claims": {"plan": ["pro"]},"#, "claims"),
            (
                r#""code": true,"#,
                r#""language": ["EN"],"#,
                "rules[0].when.language",
            ),
            (r#""code": true,"#, r#""text": {},"#, "rules[0].when.text"),
            (
                r#""code": true,"#,
                r#""text": {"keywords": ["a"], "roles": []},"#,
                "rules[0].when.text.roles",
            ),
            (
                r#""host": "desk.local:8080""#,
                r#""host": "desk.local""#,
                "upstreams.helpdesk.host",
            ),
            (r#""path": "/in""#, r#""path": "in""#, "upstreams.helpdesk.path"),
            (
                r#"{"name": "billing", "keywords""#,
                r#"{"name": "Billing", "keywords""#,
                "intent.labels[0].name",
            ),
            (
                r#""name": "chat""#,
                r#""name": "billing""#,
                "intent.labels[1].name",
            ),
            (
                r#""max_words": 3"#,
                r#""max_words": 0"#,
                "intent.labels[1].max_words",
            ),
            (
                r#""intent": {"labels""#,
                r#""intent": {"classifier": "model", "labels""#,
                "intent.target",
            ),
            (
                r#""intent": {"labels""#,
                r#""intent": {"target": "x", "labels""#,
                "intent.target",
            ),
            (
                r#""default": {"model": "small"}"#,
                r#""default": {"model": ""}"#,
                "default.model",
            ),
        ];
        for (from, to, field) in cases {
            let json = BASE.replacen(from, to, 1);
            assert_ne!(json, BASE, "{from}");
            let err = Config::parse(json.as_bytes(), &env).unwrap_err();
            assert_eq!(err.field, *field, "{err}");
        }
        let no_intent_rule = BASE.replacen(r#""intent": ["billing"]"#, r#""model": ["m"]"#, 1);
        let err = Config::parse(no_intent_rule.as_bytes(), &env).unwrap_err();
        assert_eq!(err.field, "intent", "{err}");
        let err = Config::parse(br#"{"rules": []}"#, &env).unwrap_err();
        assert_eq!(err.field, "rules", "{err}");
        let err = Config::parse(br#"{"default": {"model": "m"}, "bogus": 1}"#, &env).unwrap_err();
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn fixtures_agree_with_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let seen =
            shared::config::check_fixtures(&dir, |b| Config::parse(b, &|_| Some("x".to_string())).map(drop))
                .unwrap();
        assert!(seen >= 10, "too few fixtures: {seen}");
    }
}
