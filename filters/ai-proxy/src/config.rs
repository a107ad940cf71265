//! ai-proxy configuration: raw serde types, compiled into checked [`Config`] at load.
//!
//! Every error names the field (`targets[1].endpoint.host: ...`) so the proxy's log says what to fix.
//! The same rules are written as a draft-4 schema in `ai_proxy.meta.json` for Kong; the fixtures in
//! `fixtures/` are checked against both.

use crate::balancer;
use serde::Deserialize;
use shared::breaker::sync::SharedBreakers;
use shared::callout::attempts::{Candidate, RawResilience, Resilience};
use shared::config::{check_prices, parse_json, ConfigError, Duration, Price};
use shared::host::HttpCall;
use shared::provider::{target, Api, OnUnsupported};
use std::collections::{BTreeMap, HashMap};

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
    #[serde(default)]
    balancing: Option<RawBalancing>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBalancing {
    #[serde(default)]
    explore_percent: Option<u32>,
    #[serde(default)]
    half_life: Option<Duration>,
    #[serde(default)]
    probe_after: Option<Duration>,
}

/// The statistics balancers' knobs (top-level `balancing`), see [`balancer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balancing {
    /// `lowest_latency`: the share of requests sent to a random other target, 0–50 %.
    pub explore_percent: u32,
    /// How fast the latency averages forget: the old value weighs half as much after this long.
    pub half_life_ms: u64,
    /// `lowest_latency`: a target with no sample for this long gets one probe request.
    pub probe_after_ms: u64,
}

impl Default for Balancing {
    fn default() -> Self {
        Balancing {
            explore_percent: 5,
            half_life_ms: 10_000,
            probe_after_ms: 30_000,
        }
    }
}

const BALANCING_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

impl RawBalancing {
    fn compile(self) -> Result<Balancing, ConfigError> {
        let d = Balancing::default();
        let explore_percent = self.explore_percent.unwrap_or(d.explore_percent);
        if explore_percent > 50 {
            return Err(ConfigError::new("balancing.explore_percent", "must be 0 to 50"));
        }
        let ms = |v: Option<Duration>, default: u64, f: &str| {
            let v = v.map_or(default, Duration::as_ms);
            if BALANCING_MS.contains(&v) {
                Ok(v)
            } else {
                Err(ConfigError::new(
                    format!("balancing.{f}"),
                    "must be 100 ms to 1 hour",
                ))
            }
        };
        Ok(Balancing {
            explore_percent,
            half_life_ms: ms(self.half_life, d.half_life_ms, "half_life")?,
            probe_after_ms: ms(self.probe_after, d.probe_after_ms, "probe_after")?,
        })
    }
}

/// A target: the shared target shape (`shared::provider::target`: provider, model, endpoint, auth and
/// the provider's own fields) with ai-proxy's `name` and `resilience`. Fields neither knows go to the
/// provider's variant, which refuses any that are not its own, so `anthropic_version` on an openai
/// target is an error naming it.
#[derive(Debug, Deserialize)]
struct RawTarget {
    name: String,
    #[serde(default)]
    resilience: Option<RawResilience>,
    #[serde(flatten)]
    target: target::RawTarget,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    targets: Vec<RawRoute>,
    #[serde(default)]
    fallback: Vec<RawFallback>,
    #[serde(default)]
    drop_unsupported_params: bool,
    #[serde(default)]
    balancer: balancer::Kind,
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

/// A checked provider target: the shared target (provider, endpoint, key; reached through `Deref`)
/// with ai-proxy's name, price and resilience.
#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub target: target::Target,
    pub price: Option<Price>,
    pub resilience: Resilience,
    /// Some model balances over it by its statistics: its requests are counted in shared data.
    pub tracked: bool,
}

impl std::ops::Deref for Target {
    type Target = target::Target;
    fn deref(&self) -> &target::Target {
        &self.target
    }
}

impl Target {
    /// How callout mode's chain sees it.
    pub fn candidate(&self) -> Candidate<'_> {
        Candidate {
            name: &self.name,
            resilience: &self.resilience,
        }
    }

    /// A callout to this target, with its timeout, for `body` already translated for it. Without a
    /// key of its own the client's credentials go along; `extra` are headers of the client's request
    /// the target takes too (Anthropic's `anthropic-beta`).
    pub fn call(
        &self,
        body: Vec<u8>,
        api: Api,
        stream: bool,
        client_credentials: &[(String, String)],
        extra: &[(String, String)],
    ) -> HttpCall {
        self.target.call(
            body,
            api,
            stream,
            client_credentials,
            extra,
            self.resilience.timeout_ms,
        )
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Index into [`Config::targets`].
    pub target: usize,
    pub weight: u64,
}

/// A client-facing model: the first choice (by its balancer), then the fallback chain.
#[derive(Debug, Clone)]
pub struct Model {
    pub routes: Vec<Route>,
    /// How the first choice is made among `routes`.
    pub balancer: balancer::Kind,
    /// Targets tried in order after the first choice fails (indexes into [`Config::targets`]).
    pub fallback: Vec<usize>,
    /// The filter makes the upstream calls itself (retries, fallback, breaker), answering when done;
    /// streams are then delivered whole. Otherwise requests are forwarded through the proxy as they come.
    pub callout: bool,
    /// What a parameter a target cannot take gets: a 400 naming it, or dropped and named in
    /// `x-ai-dropped-params` (`drop_unsupported_params`).
    pub on_unsupported: OnUnsupported,
}

#[derive(Debug)]
pub struct Config {
    pub targets: Vec<Target>,
    /// Client-facing model name → weighted targets.
    pub models: BTreeMap<String, Model>,
    pub sticky_header: Option<String>,
    pub max_body_bytes: usize,
    pub route_header: String,
    /// Targets whose breaker is shared with the fleet (`breaker.store: redis`), by store, synced by
    /// the timer.
    pub shared_breakers: Vec<SharedBreakers>,
    pub balancing: Balancing,
}

pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 100 * 1024 * 1024;
const MAX_WEIGHT: u64 = 10_000;

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
            if !target::valid_name(&t.name) {
                return Err(ConfigError::new(at("name"), target::NAME_RULE));
            }
            if index.insert(t.name.clone(), i).is_some() {
                return Err(ConfigError::new(
                    at("name"),
                    format!("duplicate target name `{}`", t.name),
                ));
            }
            let compiled = t.target.compile(&at, env)?;
            let resilience =
                Resilience::compile(&at("resilience"), t.resilience.as_ref(), global_resilience)?;
            let has_resilience = t.resilience.is_some() || global_resilience.is_some();
            resilient.push(has_resilience);
            targets.push(Target {
                resilience,
                name: t.name,
                price: raw.prices.get(compiled.model()).copied(),
                target: compiled,
                tracked: false,
            });
        }
        let shared_breakers =
            SharedBreakers::collect(targets.iter().map(|t| (t.name.as_str(), &t.resilience)));
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
            if m.balancer == balancer::Kind::LowestCost {
                for r in &routes {
                    if let Some(t) = targets.get(r.target).filter(|t| t.price.is_none()) {
                        return Err(ConfigError::new(
                            format!("models.{name}.balancer"),
                            format!(
                                "lowest_cost needs a price for target `{}`: add its model `{}` to prices",
                                t.name,
                                t.model()
                            ),
                        ));
                    }
                }
            }
            if m.balancer.uses_stats() {
                for r in &routes {
                    if let Some(t) = targets.get_mut(r.target) {
                        t.tracked = true;
                    }
                }
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
                    balancer: m.balancer,
                    fallback,
                    callout,
                    on_unsupported: if m.drop_unsupported_params {
                        OnUnsupported::Drop
                    } else {
                        OnUnsupported::Refuse
                    },
                },
            );
        }
        check_prices(&raw.prices)?;
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
            shared_breakers,
            balancing: raw.balancing.unwrap_or_default().compile()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::callout::attempts::RetryOn;

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
        assert_eq!(
            c.targets[0].path(Api::ChatCompletions, false).as_deref(),
            Some("/v1/chat/completions")
        );
        assert_eq!(
            c.targets[0].path(Api::Embeddings, false).as_deref(),
            Some("/v1/embeddings")
        );
        assert_eq!(
            c.targets[1].path(Api::ChatCompletions, true).as_deref(),
            Some("/v1/messages")
        );
        assert_eq!(
            c.targets[1].path(Api::Messages, true).as_deref(),
            Some("/v1/messages")
        );
        assert_eq!(c.targets[1].path(Api::Embeddings, false), None);
        assert_eq!(
            c.targets[1].credentials(),
            vec![
                ("x-api-key", "k".to_string()),
                ("anthropic-version", "2023-06-01".to_string())
            ]
        );
        assert_eq!(
            c.targets[2].path(Api::ChatCompletions, false).as_deref(),
            Some("/openai/deployments/dep/chat/completions?api-version=2024-10-21")
        );
        assert_eq!(c.models["m"].on_unsupported, OnUnsupported::Refuse);
        assert_eq!(c.targets[2].model(), "dep");
        assert_eq!(c.targets[2].provider.name(), "azure");
        assert!(c.targets[0].price.is_some() && c.targets[1].price.is_none());
        assert_eq!(
            c.models["m"].routes.iter().map(|r| r.weight).collect::<Vec<_>>(),
            vec![9, 1]
        );
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.route_header, "x-ai-cluster");
    }

    #[test]
    fn balancers_and_their_knobs() {
        let c = Config::parse(BASE.as_bytes(), &env).unwrap();
        assert_eq!(c.models["m"].balancer, balancer::Kind::Weighted);
        assert_eq!(c.balancing, Balancing::default());
        assert!(c.targets.iter().all(|t| !t.tracked));
        let json = BASE
            .replacen(
                r#"{"targets": [{"target":"a","weight":9},{"target":"b"}]}"#,
                r#"{"targets": [{"target":"a","weight":9},{"target":"b"}], "balancer": "least_busy"}"#,
                1,
            )
            .replacen(
                r#""prices""#,
                r#""balancing": {"explore_percent": 0, "half_life": "2s", "probe_after": 500}, "prices""#,
                1,
            );
        let c = Config::parse(json.as_bytes(), &env).unwrap();
        assert_eq!(c.models["m"].balancer, balancer::Kind::LeastBusy);
        assert_eq!(
            c.balancing,
            Balancing {
                explore_percent: 0,
                half_life_ms: 2_000,
                probe_after_ms: 500
            }
        );
        // The statistics are kept for the targets some statistics balancer reads.
        let tracked: Vec<bool> = c.targets.iter().map(|t| t.tracked).collect();
        assert_eq!(tracked, vec![true, true, false]);
        let cases = [
            (
                r#""balancer": "least_busy""#,
                r#""balancer": "lowest_cost""#,
                "models.m.balancer",
                "target `b`",
            ),
            (
                r#""balancer": "least_busy""#,
                r#""balancer": "fastest""#,
                "",
                "unknown variant",
            ),
            (
                r#""explore_percent": 0"#,
                r#""explore_percent": 51"#,
                "balancing.explore_percent",
                "0 to 50",
            ),
            (
                r#""half_life": "2s""#,
                r#""half_life": 99"#,
                "balancing.half_life",
                "100 ms",
            ),
            (
                r#""probe_after": 500"#,
                r#""probe_after": "2h""#,
                "",
                "milliseconds",
            ),
            (
                r#""probe_after": 500"#,
                r#""probe_after": 3600001"#,
                "balancing.probe_after",
                "1 hour",
            ),
            (
                r#""explore_percent": 0"#,
                r#""explore": 0"#,
                "",
                "unknown field `explore`",
            ),
        ];
        for (from, to, field, message) in cases {
            let bad = json.replacen(from, to, 1);
            assert_ne!(bad, json, "{from}");
            let err = Config::parse(bad.as_bytes(), &env).unwrap_err();
            assert!(err.to_string().contains(message), "{err}");
            if !field.is_empty() {
                assert_eq!(err.field, field, "{err}");
            }
        }
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
    fn provider_fields_belong_to_their_provider() {
        // Each provider-only field on a target of another provider: refused, the field named.
        let cases = [
            (
                r#""name":"a","provider":"openai""#,
                r#""anthropic_version":"2023-06-01""#,
            ),
            (r#""name":"a","provider":"openai""#, r#""default_max_tokens":5"#),
            (r#""name":"a","provider":"openai""#, r#""deployment":"d""#),
            (r#""name":"a","provider":"openai""#, r#""api_version":"v""#),
            (r#""name":"b","provider":"anthropic""#, r#""deployment":"d""#),
            (r#""name":"b","provider":"anthropic""#, r#""api_version":"v""#),
            (
                r#""name":"z","provider":"azure""#,
                r#""anthropic_version":"2023-06-01""#,
            ),
            (r#""name":"z","provider":"azure""#, r#""default_max_tokens":5"#),
            (r#""name":"a","provider":"openai""#, r#""bogus":1"#),
        ];
        for (target, field) in cases {
            let json = BASE.replacen(target, &format!("{target},{field}"), 1);
            assert_ne!(json, BASE, "{target}");
            let err = Config::parse(json.as_bytes(), &env).unwrap_err().to_string();
            let name = field.split('"').nth(1).unwrap();
            assert!(err.contains(&format!("unknown field `{name}`")), "{field}: {err}");
        }
        // On their own provider they are fine.
        let json = BASE.replacen(
            r#""name":"b","provider":"anthropic""#,
            r#""name":"b","provider":"anthropic","anthropic_version":"2024-01-01","default_max_tokens":7"#,
            1,
        );
        let c = Config::parse(json.as_bytes(), &env).unwrap();
        assert_eq!(
            c.targets[1].credentials()[1],
            ("anthropic-version", "2024-01-01".to_string())
        );
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

    #[test]
    fn embeddings_paths_and_dropping_parameters() {
        let json = BASE
            .replacen(
                r#""endpoint":{"cluster":"c","host":"h:443"}"#,
                r#""endpoint":{"cluster":"c","host":"h:443","path":"/api/chat","embeddings_path":"/api/embed"}"#,
                1,
            )
            .replacen(
                r#""z": {"targets":[{"target":"z"}]}"#,
                r#""z": {"targets":[{"target":"z"}],"drop_unsupported_params":true}"#,
                1,
            );
        let c = Config::parse(json.as_bytes(), &env).unwrap();
        assert_eq!(
            c.targets[0].path(Api::ChatCompletions, true).as_deref(),
            Some("/api/chat")
        );
        assert_eq!(
            c.targets[0].path(Api::Embeddings, false).as_deref(),
            Some("/api/embed")
        );
        assert_eq!(
            c.targets[2].path(Api::Embeddings, false).as_deref(),
            Some("/openai/deployments/dep/embeddings?api-version=2024-10-21")
        );
        assert_eq!(c.models["z"].on_unsupported, OnUnsupported::Drop);
        assert_eq!(c.models["m"].on_unsupported, OnUnsupported::Refuse);
        let cases = [
            (
                r#""endpoint":{"cluster":"c2","host":"h2:443"}"#,
                r#""endpoint":{"cluster":"c2","host":"h2:443","embeddings_path":"/v1/embeddings"}"#,
                "targets[1].endpoint.embeddings_path",
            ),
            (
                r#""endpoint":{"cluster":"c","host":"h:443"}"#,
                r#""endpoint":{"cluster":"c","host":"h:443","embeddings_path":"v1/embeddings"}"#,
                "targets[0].endpoint.embeddings_path",
            ),
        ];
        for (from, to, field) in cases {
            let json = BASE.replacen(from, to, 1);
            assert_ne!(json, BASE);
            assert_eq!(Config::parse(json.as_bytes(), &env).unwrap_err().field, field);
        }
        let json = BASE.replacen(
            r#""z": {"targets":[{"target":"z"}]}"#,
            r#""z": {"targets":[{"target":"z"}],"drop_unsupported_params":"yes"}"#,
            1,
        );
        assert!(Config::parse(json.as_bytes(), &env).is_err());
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
