//! ai-token-ratelimit configuration: raw serde types, compiled into a checked [`Config`] at load.
//!
//! Every error names the field (`limits[1].window: ...`). The same rules are written as a draft-4 schema
//! in `ai_token_ratelimit.meta.json` for Kong; the fixtures in `fixtures/` are checked against both.

use serde::Deserialize;
use shared::chat::{Api, Routes};
use shared::config::{check_prices, parse_json, ConfigError, Price};
pub use shared::config::{FailureMode, Mode};
use shared::ratelimit::estimate::CompletionPolicy;
use shared::ratelimit::identity::Source;
use shared::ratelimit::window::Window;
use shared::redis::{RawStore, COUNTERS};
pub use shared::redis::{RedisStore, Store, StoreFailure, SyncMode};
use shared::usage::Usage;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What a limit's subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Consumer,
    Model,
    ConsumerModel,
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    TotalTokens,
    PromptTokens,
    CompletionTokens,
    /// Micro-USD from `prices` (1 USD = 1,000,000), like ai-proxy's cost metric.
    Cost,
    Requests,
}

impl Count {
    pub fn is_tokens(self) -> bool {
        matches!(
            self,
            Count::TotalTokens | Count::PromptTokens | Count::CompletionTokens
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    failure_mode: FailureMode,
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    consumer: Vec<Source>,
    #[serde(default)]
    anonymous: Option<String>,
    #[serde(default)]
    tiers: Option<RawTiers>,
    limits: Vec<RawLimit>,
    #[serde(default)]
    completion: Option<RawCompletion>,
    #[serde(default)]
    prices: HashMap<String, Price>,
    #[serde(default)]
    adaptive: Vec<Rule>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default)]
    store: Option<RawStore>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTiers {
    #[serde(default)]
    sources: Vec<Source>,
    #[serde(default)]
    members: BTreeMap<String, String>,
    #[serde(default)]
    default: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    name: String,
    per: Per,
    window: Window,
    count: Count,
    limit: u64,
    #[serde(default)]
    tiers: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompletion {
    #[serde(default)]
    default_tokens: Option<u64>,
    #[serde(default)]
    max_tokens: Option<u64>,
}

/// An adaptive rule: while it matches, every limit is multiplied by `factor`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// A request header set earlier in the chain (e.g. a risk score) holds a number above `above`.
    Header { name: String, above: f64, factor: f64 },
    /// More than `above` (a fraction) of the upstream answers in the current `window` were errors
    /// (5xx or 429), once at least `min_requests` were seen.
    ErrorRate {
        window: Window,
        above: f64,
        #[serde(default = "ten")]
        min_requests: u64,
        factor: f64,
    },
}

fn ten() -> u64 {
    10
}

#[derive(Debug, Clone)]
pub struct Limit {
    pub name: String,
    pub per: Per,
    pub window: Window,
    pub count: Count,
    pub limit: u64,
    pub tiers: BTreeMap<String, u64>,
}

impl Limit {
    /// The limit for a tier, before adaptive scaling.
    pub fn for_tier(&self, tier: Option<&str>) -> u64 {
        tier.and_then(|t| self.tiers.get(t))
            .copied()
            .unwrap_or(self.limit)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tiers {
    pub sources: Vec<Source>,
    pub members: BTreeMap<String, String>,
    pub default: Option<String>,
}

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub failure_mode: FailureMode,
    /// The requests counted (`paths`, normalised: `shared::chat::path`).
    pub routes: Routes,
    pub consumer: Vec<Source>,
    pub anonymous: String,
    pub tiers: Tiers,
    pub limits: Vec<Limit>,
    pub completion: CompletionPolicy,
    pub prices: HashMap<String, Price>,
    pub adaptive: Vec<Rule>,
    pub max_body_bytes: usize,
    /// Where the counters live: this gateway's shared data, or Redis for the whole fleet.
    pub store: Store,
}

impl Config {
    /// The amount a usage counts for under `count`; `None` for cost when the model has no price (cost
    /// limits then do not apply to it).
    pub fn amount(&self, count: Count, model: &str, u: Usage) -> Option<u64> {
        Some(match count {
            Count::TotalTokens => u.total(),
            Count::PromptTokens => u.prompt_tokens,
            Count::CompletionTokens => u.completion_tokens,
            Count::Requests => 1,
            Count::Cost => self.prices.get(model)?.cost_micro_usd(u),
        })
    }
}

/// Limit names appear in metric names and shared-data keys.
fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

fn check_source(field: String, s: &Source) -> Result<(), ConfigError> {
    let blank = |f: &str, v: &str| {
        if v.trim().is_empty() {
            Err(ConfigError::new(format!("{field}.{f}"), "must not be empty"))
        } else {
            Ok(())
        }
    };
    match s {
        Source::Header { name } => blank("name", name),
        Source::ApiKey { header } => blank("header", header),
        Source::JwtClaim { claim, header } => {
            blank("claim", claim)?;
            header.as_deref().map_or(Ok(()), |h| blank("header", h))
        }
        Source::ClientAddress {} => Ok(()),
        Source::KongConsumer { field: f } => blank("field", f),
        Source::KongConsumerGroup {} => Ok(()),
    }
}

fn check_factor(field: String, factor: f64) -> Result<(), ConfigError> {
    if factor.is_finite() && (0.0..=100.0).contains(&factor) {
        Ok(())
    } else {
        Err(ConfigError::new(field, "must be a number from 0 to 100"))
    }
}

/// The APIs counted when `paths` is not set: chat at both doors, and embeddings.
pub const DEFAULT_APIS: [Api; 3] = [Api::ChatCompletions, Api::Messages, Api::Embeddings];
const DEFAULT_ANONYMOUS: &str = "anonymous";
const DEFAULT_COMPLETION: u64 = 256;
const DEFAULT_COMPLETION_CAP: u64 = 4096;
const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 100 * 1024 * 1024;

impl Config {
    pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(json)?;
        let routes = match raw.paths.as_deref() {
            None => Routes::apis(&DEFAULT_APIS),
            paths => Routes::from_config("paths", paths)?,
        };
        for (i, s) in raw.consumer.iter().enumerate() {
            check_source(format!("consumer[{i}]"), s)?;
        }
        let anonymous = raw.anonymous.unwrap_or_else(|| DEFAULT_ANONYMOUS.to_string());
        if anonymous.trim().is_empty() {
            return Err(ConfigError::new("anonymous", "must not be empty"));
        }
        let tiers = match raw.tiers {
            None => Tiers::default(),
            Some(t) => {
                for (i, s) in t.sources.iter().enumerate() {
                    check_source(format!("tiers.sources[{i}]"), s)?;
                }
                Tiers {
                    sources: t.sources,
                    members: t.members,
                    default: t.default,
                }
            }
        };
        if raw.limits.is_empty() {
            return Err(ConfigError::new("limits", "must hold at least one limit"));
        }
        let mut names = HashSet::new();
        let mut limits = Vec::with_capacity(raw.limits.len());
        for (i, l) in raw.limits.into_iter().enumerate() {
            if !valid_name(&l.name) {
                return Err(ConfigError::new(
                    format!("limits[{i}].name"),
                    "must be 1 to 64 characters of A-Z a-z 0-9 . -",
                ));
            }
            if !names.insert(l.name.clone()) {
                return Err(ConfigError::new(
                    format!("limits[{i}].name"),
                    format!("duplicate limit name `{}`", l.name),
                ));
            }
            if l.count == Count::Cost && raw.prices.is_empty() {
                return Err(ConfigError::new(
                    format!("limits[{i}].count"),
                    "a cost limit needs a `prices` table",
                ));
            }
            limits.push(Limit {
                name: l.name,
                per: l.per,
                window: l.window,
                count: l.count,
                limit: l.limit,
                tiers: l.tiers,
            });
        }
        let completion = raw.completion.unwrap_or(RawCompletion {
            default_tokens: None,
            max_tokens: None,
        });
        let cap = completion.max_tokens.unwrap_or(DEFAULT_COMPLETION_CAP);
        let completion = CompletionPolicy {
            default_tokens: completion.default_tokens.unwrap_or(DEFAULT_COMPLETION.min(cap)),
            cap_tokens: cap,
        };
        check_prices(&raw.prices)?;
        for (i, r) in raw.adaptive.iter().enumerate() {
            match r {
                Rule::Header { name, factor, above } => {
                    if name.trim().is_empty() {
                        return Err(ConfigError::new(
                            format!("adaptive[{i}].name"),
                            "must not be empty",
                        ));
                    }
                    if !above.is_finite() {
                        return Err(ConfigError::new(
                            format!("adaptive[{i}].above"),
                            "must be a number",
                        ));
                    }
                    check_factor(format!("adaptive[{i}].factor"), *factor)?;
                }
                Rule::ErrorRate { above, factor, .. } => {
                    if !(above.is_finite() && (0.0..=1.0).contains(above)) {
                        return Err(ConfigError::new(
                            format!("adaptive[{i}].above"),
                            "must be a fraction from 0 to 1",
                        ));
                    }
                    check_factor(format!("adaptive[{i}].factor"), *factor)?;
                }
            }
        }
        let max_body = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if !(1..=MAX_MAX_BODY).contains(&max_body) {
            return Err(ConfigError::new(
                "max_body_bytes",
                format!("must be from 1 to {MAX_MAX_BODY}"),
            ));
        }
        let store = match raw.store {
            Some(s) => Store::compile("store", s, COUNTERS)?,
            None => Store::Local,
        };
        Ok(Config {
            mode: raw.mode,
            failure_mode: raw.failure_mode,
            routes,
            consumer: raw.consumer,
            anonymous,
            tiers,
            limits,
            completion,
            prices: raw.prices,
            adaptive: raw.adaptive,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            store,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{
      "mode": "enforce",
      "consumer": [{"type": "header", "name": "x-consumer-id"}, {"type": "client_address"}],
      "tiers": {"sources": [{"type": "header", "name": "x-tier"}], "members": {"alice": "gold"}, "default": "free"},
      "limits": [
        {"name": "tpm", "per": "consumer", "window": "minute", "count": "total_tokens", "limit": 5000, "tiers": {"gold": 50000}},
        {"name": "usd-day", "per": "consumer_model", "window": "day", "count": "cost", "limit": 1000000}
      ],
      "completion": {"default_tokens": 100, "max_tokens": 2000},
      "prices": {"gpt-4o-mini": {"prompt_per_million": 0.15, "completion_per_million": 0.6}},
      "adaptive": [{"type": "header", "name": "x-risk", "above": 0.8, "factor": 0.5},
                   {"type": "error_rate", "window": "minute", "above": 0.5, "factor": 0.5}]
    }"#;

    #[test]
    fn parses_and_defaults() {
        let c = Config::parse(BASE.as_bytes()).unwrap();
        assert_eq!(c.routes, Routes::apis(&DEFAULT_APIS));
        assert_eq!(c.anonymous, "anonymous");
        assert_eq!(c.failure_mode, FailureMode::Deny);
        assert_eq!(c.limits[0].for_tier(Some("gold")), 50000);
        assert_eq!(c.limits[0].for_tier(Some("free")), 5000);
        assert_eq!(c.limits[0].for_tier(None), 5000);
        assert_eq!(
            c.completion,
            CompletionPolicy {
                default_tokens: 100,
                cap_tokens: 2000
            }
        );
        assert_eq!(
            c.adaptive[1],
            Rule::ErrorRate {
                window: Window::Minute,
                above: 0.5,
                min_requests: 10,
                factor: 0.5
            }
        );
        let u = Usage::new(1000, 500);
        assert_eq!(c.amount(Count::Cost, "gpt-4o-mini", u), Some(450));
        // Cached prompt tokens are part of the 1000, counted once (at the prompt price without a
        // cache price), never added on top.
        let cached = Usage {
            cached_tokens: 800,
            ..u
        };
        assert_eq!(c.amount(Count::Cost, "gpt-4o-mini", cached), Some(450));
        assert_eq!(c.amount(Count::TotalTokens, "gpt-4o-mini", cached), Some(1500));
        assert_eq!(c.amount(Count::Cost, "other", u), None);
        assert_eq!(c.amount(Count::TotalTokens, "other", u), Some(1500));
        assert_eq!(c.amount(Count::Requests, "other", u), Some(1));
        let min = Config::parse(
            br#"{"limits":[{"name":"a","per":"model","window":"second","count":"requests","limit":1}]}"#,
        )
        .unwrap();
        assert_eq!(
            min.completion,
            CompletionPolicy {
                default_tokens: 256,
                cap_tokens: 4096
            }
        );
        assert_eq!(min.max_body_bytes, 1024 * 1024);
        assert_eq!(min.store, Store::Local);
    }

    #[test]
    fn redis_store() {
        let json = BASE.replacen(
            r#""mode": "enforce","#,
            r#""mode": "enforce", "store": {"type": "redis", "upstream": {"cluster": "webdis", "host": "127.0.0.1:7379"},
                "mode": "hybrid", "sync_interval": "500ms", "failure_mode": "allow"},"#,
            1,
        );
        let c = Config::parse(json.as_bytes()).unwrap();
        let r = c.store.redis().unwrap();
        assert_eq!(
            (r.mode, r.sync_interval_ms, r.failure_mode),
            (SyncMode::Hybrid, 500, StoreFailure::Allow)
        );
        let bad = json.replacen(r#""sync_interval": "500ms""#, r#""sync_interval": "5ms""#, 1);
        assert_eq!(
            Config::parse(bad.as_bytes()).unwrap_err().field,
            "store.sync_interval"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (r#""name": "tpm""#, r#""name": "t p m""#, "limits[0].name"),
            (r#""name": "usd-day""#, r#""name": "tpm""#, "limits[1].name"),
            (r#""name": "x-consumer-id""#, r#""name": " ""#, "consumer[0].name"),
            (r#""name": "x-tier""#, r#""name": """#, "tiers.sources[0].name"),
            (
                r#""prompt_per_million": 0.15"#,
                r#""prompt_per_million": -1"#,
                "prices.gpt-4o-mini.prompt_per_million",
            ),
            (
                r#""above": 0.5, "factor""#,
                r#""above": 1.5, "factor""#,
                "adaptive[1].above",
            ),
            (r#""factor": 0.5}]"#, r#""factor": 500}]"#, "adaptive[1].factor"),
            (r#""name": "x-risk""#, r#""name": """#, "adaptive[0].name"),
        ];
        for (from, to, field) in cases {
            let json = BASE.replacen(from, to, 1);
            assert_ne!(json, BASE, "{from}");
            let err = Config::parse(json.as_bytes()).unwrap_err();
            assert_eq!(err.field, *field, "{err}");
        }
        let no_prices = BASE.replacen(r#""prices""#, r#""x_prices""#, 1);
        assert!(Config::parse(no_prices.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        let err = Config::parse(br#"{"limits":[]}"#).unwrap_err();
        assert_eq!(err.field, "limits");
        let err = Config::parse(
            br#"{"limits":[{"name":"c","per":"model","window":"day","count":"cost","limit":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.field, "limits[0].count");
        assert!(Config::parse(
            br#"{"limits":[{"name":"a","per":"model","window":"week","count":"requests","limit":1}]}"#
        )
        .is_err());
        assert!(Config::parse(b"").is_err());
        assert!(Config::parse(b"[]").is_err());
    }

    /// The same fixtures are checked against ai_token_ratelimit.meta.json by tests/check_meta.py.
    #[test]
    fn fixtures_agree_with_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let seen = shared::config::check_fixtures(&dir, |b| Config::parse(b).map(drop)).unwrap();
        assert!(seen >= 10, "too few fixtures: {seen}");
    }
}
