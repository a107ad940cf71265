//! ai-proxy configuration: raw serde types, compiled into checked [`Config`] at load.
//!
//! Every error names the field (`targets[1].endpoint.host: ...`) so the proxy's log says what to fix.
//! The same rules are written as a draft-4 schema in `ai_proxy.meta.json` for Kong; the fixtures in
//! `fixtures/` are checked against both.

use serde::Deserialize;
use shared::config::{parse_json, ConfigError, SecretSource};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Openai,
    Anthropic,
    Azure,
    OpenaiCompatible,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Azure => "azure",
            Provider::OpenaiCompatible => "openai_compatible",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    targets: Vec<RawTarget>,
    models: BTreeMap<String, RawModel>,
    #[serde(default)]
    sticky: Option<RawSticky>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default)]
    route_header: Option<String>,
    #[serde(default)]
    prices: HashMap<String, Price>,
    #[serde(default)]
    resilience: Option<RawResilience>,
}

/// Timeouts, retries and the circuit breaker. At the top level it is the default for every target;
/// a target's own block overrides it field by field.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResilience {
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    retry_on: Option<Vec<String>>,
    #[serde(default)]
    breaker: Option<RawBreaker>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    #[serde(default)]
    consecutive_failures: Option<u32>,
    #[serde(default)]
    error_rate: Option<ErrorRate>,
    cooldown_ms: u64,
}

/// Opens when, within a window of `window_ms`, at least `min_requests` calls were made and at least
/// `percent` of them failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRate {
    pub percent: u32,
    pub min_requests: u32,
    pub window_ms: u64,
}

/// Opens on either rule; after `cooldown_ms` one probe may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub consecutive_failures: Option<u32>,
    pub error_rate: Option<ErrorRate>,
    pub cooldown_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    provider: Provider,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    endpoint: RawEndpoint,
    #[serde(default)]
    auth: Option<SecretSource>,
    #[serde(default)]
    anthropic_version: Option<String>,
    #[serde(default)]
    default_max_tokens: Option<u64>,
    #[serde(default)]
    resilience: Option<RawResilience>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    cluster: String,
    host: String,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    targets: Vec<RawRoute>,
    #[serde(default)]
    fallback: Vec<RawFallback>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    target: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    target: String,
    #[serde(default = "one")]
    weight: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSticky {
    header: String,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub prompt_per_million: f64,
    pub completion_per_million: f64,
}

/// A checked provider target.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub provider: Provider,
    /// The model name sent upstream (Azure: the deployment); also the key of the price table.
    pub upstream_model: String,
    pub cluster: String,
    pub host: String,
    /// Path (and query, for Azure) of the upstream request.
    pub path: String,
    pub api_key: Option<String>,
    pub anthropic_version: String,
    pub default_max_tokens: u64,
    pub price: Option<Price>,
    pub resilience: Resilience,
}

/// What counts as a failure worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// No answer at all: connection refused or reset, or the host could not make the call.
    ConnectFailure,
    /// The target did not answer within `timeout_ms`.
    Timeout,
    /// A 2xx answer that cannot be read (bad JSON, a stream without its end).
    InvalidResponse,
    Status(u16),
}

impl RetryOn {
    fn parse(s: &str) -> Option<RetryOn> {
        match s {
            "connect_failure" => Some(RetryOn::ConnectFailure),
            "timeout" => Some(RetryOn::Timeout),
            "invalid_response" => Some(RetryOn::InvalidResponse),
            _ => s
                .parse::<u16>()
                .ok()
                .filter(|c| (400..600).contains(c))
                .map(RetryOn::Status),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resilience {
    /// Deadline for a whole answer from this target, per attempt.
    pub timeout_ms: u64,
    /// Further attempts on the same target before falling back.
    pub retries: u32,
    pub retry_on: Vec<RetryOn>,
    pub breaker: Option<Breaker>,
}

pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

impl Breaker {
    fn compile(field: &str, b: RawBreaker) -> Result<Self, ConfigError> {
        if b.consecutive_failures.is_none() && b.error_rate.is_none() {
            return Err(ConfigError::new(
                field,
                "needs consecutive_failures, error_rate, or both",
            ));
        }
        if b.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                format!("{field}.consecutive_failures"),
                "must be at least 1",
            ));
        }
        if b.cooldown_ms == 0 {
            return Err(ConfigError::new(
                format!("{field}.cooldown_ms"),
                "must be at least 1",
            ));
        }
        if let Some(r) = b.error_rate {
            let at = |f: &str| format!("{field}.error_rate.{f}");
            if !(1..=100).contains(&r.percent) {
                return Err(ConfigError::new(at("percent"), "must be 1 to 100"));
            }
            if r.min_requests == 0 {
                return Err(ConfigError::new(at("min_requests"), "must be at least 1"));
            }
            if r.window_ms == 0 {
                return Err(ConfigError::new(at("window_ms"), "must be at least 1"));
            }
        }
        Ok(Breaker {
            consecutive_failures: b.consecutive_failures,
            error_rate: b.error_rate,
            cooldown_ms: b.cooldown_ms,
        })
    }
}
const MAX_RETRIES: u32 = 5;

impl Resilience {
    fn compile(
        field: &str,
        own: Option<&RawResilience>,
        global: Option<&RawResilience>,
    ) -> Result<Self, ConfigError> {
        let pick = |f: fn(&RawResilience) -> bool| own.filter(|r| f(r)).or(global);
        let timeout_ms = pick(|r| r.timeout_ms.is_some())
            .and_then(|r| r.timeout_ms)
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 {
            return Err(ConfigError::new(
                format!("{field}.timeout_ms"),
                "must be at least 1",
            ));
        }
        let retries = pick(|r| r.retries.is_some()).and_then(|r| r.retries).unwrap_or(0);
        if retries > MAX_RETRIES {
            return Err(ConfigError::new(format!("{field}.retries"), "must be 0 to 5"));
        }
        let retry_on = match pick(|r| r.retry_on.is_some()).and_then(|r| r.retry_on.as_ref()) {
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for (i, s) in list.iter().enumerate() {
                    let Some(c) = RetryOn::parse(s) else {
                        return Err(ConfigError::new(
                            format!("{field}.retry_on[{i}]"),
                            format!(
                                "`{s}` is not connect_failure, timeout, invalid_response or a 4xx/5xx status"
                            ),
                        ));
                    };
                    out.push(c);
                }
                out
            }
            None => vec![
                RetryOn::ConnectFailure,
                RetryOn::Timeout,
                RetryOn::Status(429),
                RetryOn::Status(500),
                RetryOn::Status(502),
                RetryOn::Status(503),
                RetryOn::Status(504),
            ],
        };
        let breaker = match pick(|r| r.breaker.is_some()).and_then(|r| r.breaker) {
            Some(b) => Some(Breaker::compile(&format!("{field}.breaker"), b)?),
            None => None,
        };
        Ok(Resilience {
            timeout_ms,
            retries,
            retry_on,
            breaker,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Index into [`Config::targets`].
    pub target: usize,
    pub weight: u64,
}

/// A client-facing model: the weighted first choice, then the fallback chain.
#[derive(Debug, Clone)]
pub struct Model {
    pub routes: Vec<Route>,
    /// Targets tried in order after the first choice fails (indexes into [`Config::targets`]).
    pub fallback: Vec<usize>,
    /// The filter makes the upstream calls itself (retries, fallback, breaker), answering when done;
    /// streams are then delivered whole. Otherwise requests are forwarded through the proxy as they come.
    pub callout: bool,
}

#[derive(Debug)]
pub struct Config {
    pub targets: Vec<Target>,
    /// Client-facing model name → weighted targets.
    pub models: BTreeMap<String, Model>,
    pub sticky_header: Option<String>,
    pub max_body_bytes: usize,
    pub route_header: String,
}

pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 100 * 1024 * 1024;
const MAX_WEIGHT: u64 = 10_000;

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

fn valid_host(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

fn non_empty(field: String, value: Option<String>, what: &str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(ConfigError::new(field, format!("{what} must not be empty"))),
        None => Err(ConfigError::new(field, format!("{what} is required"))),
    }
}

impl Config {
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(json)?;
        if raw.targets.is_empty() {
            return Err(ConfigError::new("targets", "at least one target is required"));
        }
        let global_resilience = raw.resilience.as_ref();
        if let Some(g) = global_resilience {
            Resilience::compile("resilience", None, Some(g))?;
        }
        let mut targets = Vec::with_capacity(raw.targets.len());
        let mut resilient = Vec::with_capacity(raw.targets.len());
        let mut index = HashMap::new();
        for (i, t) in raw.targets.into_iter().enumerate() {
            let at = |f: &str| format!("targets[{i}].{f}");
            if !valid_name(&t.name) {
                return Err(ConfigError::new(
                    at("name"),
                    "must be 1 to 64 characters of A-Z a-z 0-9 . -",
                ));
            }
            if index.insert(t.name.clone(), i).is_some() {
                return Err(ConfigError::new(
                    at("name"),
                    format!("duplicate target name `{}`", t.name),
                ));
            }
            let is_anthropic = t.provider == Provider::Anthropic;
            if !is_anthropic && (t.anthropic_version.is_some() || t.default_max_tokens.is_some()) {
                let f = if t.anthropic_version.is_some() {
                    "anthropic_version"
                } else {
                    "default_max_tokens"
                };
                return Err(ConfigError::new(at(f), "only applies to provider anthropic"));
            }
            let is_azure = t.provider == Provider::Azure;
            if !is_azure && (t.deployment.is_some() || t.api_version.is_some()) {
                let f = if t.deployment.is_some() {
                    "deployment"
                } else {
                    "api_version"
                };
                return Err(ConfigError::new(at(f), "only applies to provider azure"));
            }
            let (upstream_model, default_path) = if is_azure {
                let d = non_empty(at("deployment"), t.deployment, "deployment")?;
                let v = t.api_version.unwrap_or_else(|| "2024-10-21".into());
                if v.trim().is_empty() {
                    return Err(ConfigError::new(at("api_version"), "must not be empty"));
                }
                let path = format!("/openai/deployments/{d}/chat/completions?api-version={v}");
                if let Some(m) = &t.model {
                    if m.trim().is_empty() {
                        return Err(ConfigError::new(at("model"), "model must not be empty"));
                    }
                }
                (d, path)
            } else {
                let m = non_empty(at("model"), t.model, "model")?;
                let path = if is_anthropic {
                    "/v1/messages"
                } else {
                    "/v1/chat/completions"
                };
                (m, path.to_string())
            };
            let cluster = non_empty(at("endpoint.cluster"), Some(t.endpoint.cluster), "cluster")?;
            if !valid_host(&t.endpoint.host) {
                return Err(ConfigError::new(
                    at("endpoint.host"),
                    "must be host:port, e.g. api.openai.com:443",
                ));
            }
            let path = match t.endpoint.path {
                Some(p) if p.starts_with('/') => p,
                Some(_) => return Err(ConfigError::new(at("endpoint.path"), "must start with /")),
                None => default_path,
            };
            let api_key = match &t.auth {
                Some(s) => Some(s.resolve(&at("auth"), env)?),
                None => None,
            };
            let default_max_tokens = t.default_max_tokens.unwrap_or(4096);
            if default_max_tokens == 0 {
                return Err(ConfigError::new(at("default_max_tokens"), "must be at least 1"));
            }
            let resilience =
                Resilience::compile(&at("resilience"), t.resilience.as_ref(), global_resilience)?;
            let has_resilience = t.resilience.is_some() || global_resilience.is_some();
            resilient.push(has_resilience);
            targets.push(Target {
                resilience,
                name: t.name,
                provider: t.provider,
                price: raw.prices.get(&upstream_model).copied(),
                upstream_model,
                cluster,
                host: t.endpoint.host,
                path,
                api_key,
                anthropic_version: t.anthropic_version.unwrap_or_else(|| "2023-06-01".into()),
                default_max_tokens,
            });
        }
        if raw.models.is_empty() {
            return Err(ConfigError::new("models", "at least one model is required"));
        }
        let mut models = BTreeMap::new();
        for (name, m) in raw.models {
            let at = format!("models.{name}.targets");
            if name.is_empty() {
                return Err(ConfigError::new("models", "model names must not be empty"));
            }
            if m.targets.is_empty() {
                return Err(ConfigError::new(at, "at least one target is required"));
            }
            let mut routes = Vec::with_capacity(m.targets.len());
            for (j, r) in m.targets.into_iter().enumerate() {
                let Some(&target) = index.get(&r.target) else {
                    return Err(ConfigError::new(
                        format!("{at}[{j}].target"),
                        format!("no target named `{}`", r.target),
                    ));
                };
                if r.weight > MAX_WEIGHT {
                    return Err(ConfigError::new(
                        format!("{at}[{j}].weight"),
                        "must be 0 to 10000",
                    ));
                }
                routes.push(Route {
                    target,
                    weight: r.weight,
                });
            }
            if routes.iter().all(|r| r.weight == 0) {
                return Err(ConfigError::new(at, "weights must not all be 0"));
            }
            let mut fallback = Vec::with_capacity(m.fallback.len());
            for (j, f) in m.fallback.into_iter().enumerate() {
                let field = format!("models.{name}.fallback[{j}].target");
                let Some(&target) = index.get(&f.target) else {
                    return Err(ConfigError::new(field, format!("no target named `{}`", f.target)));
                };
                // A target twice in one chain would loop back to a target that just failed.
                if fallback.contains(&target)
                    || (routes.len() == 1 && routes.iter().any(|r| r.target == target))
                {
                    return Err(ConfigError::new(
                        field,
                        format!("`{}` is already in this chain (a loop)", f.target),
                    ));
                }
                fallback.push(target);
            }
            let is_resilient = |t: usize| resilient.get(t).copied().unwrap_or(false);
            let callout = !fallback.is_empty() || routes.iter().any(|r| is_resilient(r.target));
            models.insert(
                name,
                Model {
                    routes,
                    fallback,
                    callout,
                },
            );
        }
        for (model, p) in &raw.prices {
            for (v, f) in [
                (p.prompt_per_million, "prompt_per_million"),
                (p.completion_per_million, "completion_per_million"),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(ConfigError::new(
                        format!("prices.{model}.{f}"),
                        "must be a number >= 0",
                    ));
                }
            }
        }
        let max_body = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if !(1..=MAX_MAX_BODY).contains(&max_body) {
            return Err(ConfigError::new("max_body_bytes", "must be 1 to 104857600"));
        }
        let sticky_header = match raw.sticky {
            Some(s) => {
                Some(non_empty("sticky.header".into(), Some(s.header), "header")?.to_ascii_lowercase())
            }
            None => None,
        };
        let route_header = non_empty(
            "route_header".into(),
            Some(raw.route_header.unwrap_or_else(|| "x-ai-cluster".into())),
            "route_header",
        )?;
        Ok(Config {
            targets,
            models,
            sticky_header,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            route_header: route_header.to_ascii_lowercase(),
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
      "targets": [
        {"name":"a","provider":"openai","model":"gpt-4o-mini","endpoint":{"cluster":"c","host":"h:443"},"auth":{"env":"OPENAI_API_KEY"}},
        {"name":"b","provider":"anthropic","model":"claude","endpoint":{"cluster":"c2","host":"h2:443"},"auth":{"value":"k"}},
        {"name":"z","provider":"azure","deployment":"dep","endpoint":{"cluster":"c3","host":"h3:443"}}
      ],
      "models": {"m": {"targets": [{"target":"a","weight":9},{"target":"b"}]}, "z": {"targets":[{"target":"z"}]}},
      "prices": {"gpt-4o-mini": {"prompt_per_million": 1, "completion_per_million": 2}}
    }"#;

    #[test]
    fn parses_and_defaults() {
        let c = Config::parse(BASE.as_bytes(), &env).unwrap();
        assert_eq!(c.targets[0].api_key.as_deref(), Some("sk-test"));
        assert_eq!(c.targets[0].path, "/v1/chat/completions");
        assert_eq!(c.targets[1].path, "/v1/messages");
        assert_eq!(c.targets[1].default_max_tokens, 4096);
        assert_eq!(
            c.targets[2].path,
            "/openai/deployments/dep/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(c.targets[2].upstream_model, "dep");
        assert!(c.targets[0].price.is_some() && c.targets[1].price.is_none());
        assert_eq!(
            c.models["m"].routes.iter().map(|r| r.weight).collect::<Vec<_>>(),
            vec![9, 1]
        );
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.route_header, "x-ai-cluster");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (r#""name":"a""#, r#""name":"a b""#, "targets[0].name"),
            (r#""host":"h:443""#, r#""host":"h""#, "targets[0].endpoint.host"),
            (
                r#"{"target":"b"}"#,
                r#"{"target":"nope"}"#,
                "models.m.targets[1].target",
            ),
            (r#""weight":9"#, r#""weight":10001"#, "models.m.targets[0].weight"),
            (
                r#""env":"OPENAI_API_KEY""#,
                r#""env":"MISSING""#,
                "targets[0].auth",
            ),
            (r#""deployment":"dep","#, "", "targets[2].deployment"),
            (
                r#""prompt_per_million": 1"#,
                r#""prompt_per_million": -1"#,
                "prices.gpt-4o-mini.prompt_per_million",
            ),
            (r#""name":"b""#, r#""name":"a""#, "targets[1].name"),
        ];
        for (from, to, field) in cases {
            let json = BASE.replacen(from, to, 1);
            assert_ne!(json, BASE, "{from}");
            let err = Config::parse(json.as_bytes(), &env).unwrap_err();
            assert_eq!(err.field, *field, "{err}");
        }
        let err = Config::parse(BASE.replacen(r#""prices""#, r#""bogus""#, 1).as_bytes(), &env).unwrap_err();
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
        assert!(Config::parse(b"", &env).is_err());
        assert!(Config::parse(b"[]", &env).is_err());
    }

    #[test]
    fn resilience_and_fallback_are_checked_at_load() {
        let with = |extra_model: &str, top: &str| {
            BASE.replacen(
                r#"{"target":"b"}]}"#,
                &format!(r#"{{"target":"b"}}]{extra_model}}}"#),
                1,
            )
            .replacen(r#""prices""#, &format!(r#"{top}"prices""#), 1)
        };
        let ok = Config::parse(with(r#","fallback":[{"target":"z"}]"#, "").as_bytes(), &env).unwrap();
        assert_eq!(ok.models["m"].fallback, vec![2]);
        assert!(ok.models["m"].callout && !ok.models["z"].callout);
        let top = r#""resilience":{"timeout_ms":100,"retries":2,"retry_on":["timeout","503"],"breaker":{"consecutive_failures":2,"cooldown_ms":10}},"#;
        let ok = Config::parse(with("", top).as_bytes(), &env).unwrap();
        assert!(
            ok.models["z"].callout,
            "a global resilience block puts every model in callout mode"
        );
        assert_eq!(ok.targets[0].resilience.retries, 2);
        assert_eq!(
            ok.targets[0].resilience.retry_on,
            vec![RetryOn::Timeout, RetryOn::Status(503)]
        );
        let cases: &[(&str, &str, &str)] = &[
            (
                r#","fallback":[{"target":"nope"}]"#,
                "",
                "models.m.fallback[0].target",
            ),
            (
                r#","fallback":[{"target":"z"},{"target":"z"}]"#,
                "",
                "models.m.fallback[1].target",
            ),
            ("", r#""resilience":{"timeout_ms":0},"#, "resilience.timeout_ms"),
            ("", r#""resilience":{"retries":6},"#, "resilience.retries"),
            (
                "",
                r#""resilience":{"retry_on":["timeout","teapot"]},"#,
                "resilience.retry_on[1]",
            ),
            (
                "",
                r#""resilience":{"breaker":{"consecutive_failures":0,"cooldown_ms":5}},"#,
                "resilience.breaker.consecutive_failures",
            ),
            (
                "",
                r#""resilience":{"breaker":{"cooldown_ms":5}},"#,
                "resilience.breaker",
            ),
            (
                "",
                r#""resilience":{"breaker":{"error_rate":{"percent":101,"min_requests":1,"window_ms":1},"cooldown_ms":5}},"#,
                "resilience.breaker.error_rate.percent",
            ),
            (
                "",
                r#""resilience":{"breaker":{"consecutive_failures":1,"cooldown_ms":0}},"#,
                "resilience.breaker.cooldown_ms",
            ),
        ];
        for (model, top, field) in cases {
            let err = Config::parse(with(model, top).as_bytes(), &env).unwrap_err();
            assert_eq!(err.field, *field, "{err}");
        }
        let json = BASE.replacen(
            r#""endpoint":{"cluster":"c3""#,
            r#""resilience":{"timeout_ms":0},"endpoint":{"cluster":"c3""#,
            1,
        );
        assert_eq!(
            Config::parse(json.as_bytes(), &env).unwrap_err().field,
            "targets[2].resilience.timeout_ms"
        );
        // The only first choice cannot also be its own fallback.
        let json = BASE.replacen(
            r#""z": {"targets":[{"target":"z"}]}"#,
            r#""z": {"targets":[{"target":"z"}],"fallback":[{"target":"z"}]}"#,
            1,
        );
        assert_eq!(
            Config::parse(json.as_bytes(), &env).unwrap_err().field,
            "models.z.fallback[0].target"
        );
    }

    /// The same fixtures are checked against ai_proxy.meta.json by tests/check_meta.py.
    #[test]
    fn fixtures_agree_with_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let seen =
            shared::config::check_fixtures(&dir, |b| Config::parse(b, &|_| Some("x".to_string())).map(drop))
                .unwrap();
        assert!(seen >= 10, "too few fixtures: {seen}");
    }
}
