//! ai-enrich configuration: raw serde types, compiled into a checked [`Config`] at load.
//!
//! Every error names the field (`tasks[1].output.required: ...`, `headers.x-ai-intent: ...`). The tasks
//! and their targets are `shared::llm`'s; the same rules are written as a draft-4 schema in
//! `ai_enrich.meta.json` for Kong, and the fixtures in `fixtures/` are checked against both.

use crate::local;
use crate::output::{TokenSpec, RESERVED_CLAIMS};
use serde::Deserialize;
use shared::config::{check_prices, parse_json, ConfigError, Duration, Price, SecretSource};
use shared::llm::{self, RawClaims, RequestContext, Source, Spec, Tasks};
use shared::ratelimit::identity;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    targets: Vec<llm::RawTarget>,
    #[serde(default)]
    tasks: Vec<llm::RawTask>,
    #[serde(default)]
    prices: HashMap<String, Price>,
    #[serde(default)]
    consumer: Vec<identity::Source>,
    #[serde(default)]
    tier: Vec<identity::Source>,
    #[serde(default)]
    claims: Option<RawClaims>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    max_header_bytes: Option<u64>,
    #[serde(default)]
    context_token: Option<RawToken>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    #[serde(default)]
    header: Option<String>,
    key: SecretSource,
    kid: String,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    ttl: Option<Duration>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    #[serde(default)]
    caller_claims: Vec<String>,
}

/// The rollout path: `shadow` (run and log what would change, change nothing), `log_only` (run, log
/// the outputs and their cost, never add headers), `enforce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
    LogOnly,
}

impl Mode {
    /// The metric label and log value.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
            Mode::LogOnly => "log-only",
        }
    }
}

/// The signed context token.
#[derive(Debug)]
pub struct Token {
    pub header: String,
    pub spec: TokenSpec,
    /// Claim name → the value it carries.
    pub claims: Vec<(String, Source)>,
    /// Claims of the caller's verified token copied in under their own names.
    pub caller_claims: Vec<String>,
}

/// Which local enrichers some output or task reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Locals {
    pub language: bool,
    pub body_bytes: bool,
    pub pii: bool,
}

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    /// Path prefixes enriched (empty: every request).
    pub paths: Vec<String>,
    pub tasks: Tasks,
    pub context: RequestContext,
    /// Upstream request header → the value it carries.
    pub headers: Vec<(String, Source)>,
    pub max_header_bytes: usize,
    pub token: Option<Token>,
    pub max_body_bytes: usize,
    /// Every header the filter sets: always removed from the client's request first.
    pub owned: Vec<String>,
    /// Every request source to gather (tasks, headers, the token).
    pub sources: Vec<Source>,
    pub locals: Locals,
}

pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 100 * 1024 * 1024;
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 512;
const HEADER_BYTES: std::ops::RangeInclusive<u64> = 16..=8192;
pub const DEFAULT_TOKEN_HEADER: &str = "x-ai-context";
const DEFAULT_TTL_MS: u64 = 60_000;
const MAX_TTL_MS: u64 = 86_400_000;

/// Headers the filter may not set: hop-by-hop and framing headers, credentials, and those the proxy or
/// the other filters own.
const RESERVED_HEADERS: [&str; 18] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "x-ai-cluster",
    "x-envoy-original-path",
];

fn check_header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(ConfigError::new(
            field,
            "must be a lower-case header name of a-z 0-9 - (at most 64)",
        ));
    }
    if RESERVED_HEADERS.contains(&name) || name.starts_with("x-envoy-") {
        return Err(ConfigError::new(
            field,
            format!("`{name}` may not be set by this filter"),
        ));
    }
    Ok(name.to_string())
}

impl Config {
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(json)?;
        check_prices(&raw.prices)?;
        let tasks = Tasks::compile(
            Spec {
                filter: "ai-enrich",
                at: "",
                targets: raw.targets,
                tasks: raw.tasks,
                prices: &raw.prices,
                vars: &local::VARS,
            },
            env,
        )?;
        let paths = match raw.paths {
            None => Vec::new(),
            Some(p) if p.is_empty() => {
                return Err(ConfigError::new(
                    "paths",
                    "must not be empty (leave it out for every path)",
                ))
            }
            Some(p) => {
                for (i, path) in p.iter().enumerate() {
                    if !path.starts_with('/') {
                        return Err(ConfigError::new(format!("paths[{i}]"), "must start with /"));
                    }
                }
                p
            }
        };
        let mut owned: Vec<String> = Vec::new();
        let mut headers = Vec::with_capacity(raw.headers.len());
        for (name, source) in &raw.headers {
            let field = format!("headers.{name}");
            let name = check_header_name(&field, name)?;
            let source = tasks.source(source).map_err(|e| ConfigError::new(&field, e))?;
            owned.push(name.clone());
            headers.push((name, source));
        }
        let max_header_bytes = raw.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
        if !HEADER_BYTES.contains(&max_header_bytes) {
            return Err(ConfigError::new("max_header_bytes", "must be 16 to 8192"));
        }
        let claims_configured = raw.claims.is_some();
        let token = match raw.context_token {
            Some(t) => Some(compile_token(t, &tasks, claims_configured, env)?),
            None => None,
        };
        if let Some(t) = &token {
            if owned.contains(&t.header) {
                return Err(ConfigError::new(
                    "context_token.header",
                    format!("`{}` is also in headers", t.header),
                ));
            }
            owned.push(t.header.clone());
        }
        if owned.is_empty() {
            return Err(ConfigError::new(
                "headers",
                "nothing to add: set headers, a context_token, or both",
            ));
        }
        let context = RequestContext {
            consumer: raw.consumer,
            tier: raw.tier,
            claims: match raw.claims {
                Some(c) => Some(c.compile("claims", env)?),
                None => None,
            },
        };
        let mut all: BTreeSet<Source> = tasks.sources().into_iter().cloned().collect();
        all.extend(headers.iter().map(|(_, s)| s.clone()));
        if let Some(t) = &token {
            all.extend(t.claims.iter().map(|(_, s)| s.clone()));
            all.extend(t.caller_claims.iter().map(|c| Source::Claim(c.clone())));
        }
        for s in &all {
            let (needed, field) = match s {
                Source::Consumer => (context.consumer.is_empty(), "consumer"),
                Source::Tier => (context.tier.is_empty(), "tier"),
                Source::Claim(_) => (context.claims.is_none(), "claims"),
                _ => (false, ""),
            };
            if needed {
                return Err(ConfigError::new(
                    field,
                    format!("is required: `{s}` is read, and there is nothing to read it from"),
                ));
            }
        }
        let var = |name: &str| all.contains(&Source::Var(name.to_string()));
        let locals = Locals {
            language: var("local.language"),
            body_bytes: var("local.body_bytes"),
            pii: var("local.pii"),
        };
        let max_body = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if !(1..=MAX_MAX_BODY).contains(&max_body) {
            return Err(ConfigError::new("max_body_bytes", "must be 1 to 104857600"));
        }
        Ok(Config {
            mode: raw.mode,
            paths,
            tasks,
            context,
            headers,
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(512),
            token,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            owned,
            sources: all.into_iter().filter(Source::from_request).collect(),
            locals,
        })
    }

    /// Whether requests to `path` are enriched.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or_default();
        self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_str()))
    }
}

fn compile_token(
    t: RawToken,
    tasks: &Tasks,
    claims_configured: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Token, ConfigError> {
    let at = |f: &str| format!("context_token.{f}");
    let header = check_header_name(&at("header"), t.header.as_deref().unwrap_or(DEFAULT_TOKEN_HEADER))?;
    let key = t.key.resolve(&at("key"), env)?.into_bytes();
    if key.len() < shared::jwt::MIN_KEY_BYTES {
        return Err(ConfigError::new(
            at("key"),
            format!("must be at least {} bytes (HS256)", shared::jwt::MIN_KEY_BYTES),
        ));
    }
    let printable =
        |s: &str| !s.trim().is_empty() && s.len() <= 256 && s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable(&t.kid) {
        return Err(ConfigError::new(
            at("kid"),
            "must be 1 to 256 printable ASCII characters",
        ));
    }
    let issuer = t.issuer.unwrap_or_else(|| "ai-gateway".into());
    if !printable(&issuer) {
        return Err(ConfigError::new(
            at("issuer"),
            "must be 1 to 256 printable ASCII characters",
        ));
    }
    if let Some(a) = &t.audience {
        if !printable(a) {
            return Err(ConfigError::new(
                at("audience"),
                "must be 1 to 256 printable ASCII characters",
            ));
        }
    }
    let ttl_ms = t.ttl.map_or(DEFAULT_TTL_MS, Duration::as_ms);
    if !(1000..=MAX_TTL_MS).contains(&ttl_ms) || !ttl_ms.is_multiple_of(1000) {
        return Err(ConfigError::new(at("ttl"), "must be whole seconds, 1s to 86400s"));
    }
    let mut claims = Vec::with_capacity(t.claims.len());
    for (name, source) in &t.claims {
        let field = at(&format!("claims.{name}"));
        if name.is_empty() || RESERVED_CLAIMS.contains(&name.as_str()) {
            return Err(ConfigError::new(&field, "is a claim the token sets itself"));
        }
        let source = tasks.source(source).map_err(|e| ConfigError::new(&field, e))?;
        claims.push((name.clone(), source));
    }
    if !t.caller_claims.is_empty() && !claims_configured {
        return Err(ConfigError::new(
            at("caller_claims"),
            "needs `claims`: where the caller's verified token is read",
        ));
    }
    for (i, c) in t.caller_claims.iter().enumerate() {
        let field = at(&format!("caller_claims[{i}]"));
        if c.is_empty() || c.contains('.') || RESERVED_CLAIMS.contains(&c.as_str()) {
            return Err(ConfigError::new(
                &field,
                "must be a top-level claim name the token does not set itself",
            ));
        }
        if claims.iter().any(|(n, _)| n == c) || t.caller_claims.get(..i).is_some_and(|b| b.contains(c)) {
            return Err(ConfigError::new(&field, format!("`{c}` is named twice")));
        }
    }
    Ok(Token {
        header,
        spec: TokenSpec {
            key,
            kid: t.kid,
            issuer,
            audience: t.audience,
            ttl_s: ttl_ms / 1000,
        },
        claims,
        caller_claims: t.caller_claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn env(k: &str) -> Option<String> {
        match k {
            "OPENAI_API_KEY" => Some("sk-test".into()),
            "ENRICH_TOKEN_KEY" => Some("k".repeat(32)),
            _ => None,
        }
    }

    fn base() -> Value {
        json!({
            "targets": [{"name": "mini", "provider": "openai", "model": "gpt-4o-mini",
                         "endpoint": {"cluster": "mock_openai", "host": "127.0.0.1:10001"},
                         "auth": {"env": "OPENAI_API_KEY"}}],
            "tasks": [{"name": "intent", "target": "mini", "prompt": "{{body/text}} {{local.language}}",
                       "output": {"type": "object", "required": ["intent"],
                                  "properties": {"intent": {"enum": ["billing", "bug"]}}}}],
            "consumer": [{"type": "header", "name": "x-consumer-id"}],
            "claims": {"header": "x-jwt-payload"},
            "headers": {"x-ai-intent": "task.intent/intent", "x-ai-language": "local.language",
                        "x-ai-pii": "local.pii", "x-ai-consumer": "consumer"},
            "context_token": {"key": {"env": "ENRICH_TOKEN_KEY"}, "kid": "k1",
                              "claims": {"intent": "task.intent/intent"}, "caller_claims": ["sub"]}
        })
    }

    fn parse(v: &Value) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes(), &env)
    }

    #[test]
    fn parses_and_collects_what_to_read() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(
            c.owned,
            [
                "x-ai-consumer",
                "x-ai-intent",
                "x-ai-language",
                "x-ai-pii",
                "x-ai-context"
            ]
        );
        let sources: Vec<String> = c.sources.iter().map(ToString::to_string).collect();
        assert_eq!(sources, ["body/text", "consumer", "claim.sub"]);
        assert_eq!(
            c.locals,
            Locals {
                language: true,
                body_bytes: false,
                pii: true
            }
        );
        let t = c.token.as_ref().unwrap();
        assert_eq!(
            (t.header.as_str(), t.spec.ttl_s, t.spec.issuer.as_str()),
            ("x-ai-context", 60, "ai-gateway")
        );
        assert_eq!(c.max_header_bytes, 512);
        assert!(c.matches("/anything?x=1"));
        let mut v = base();
        v["paths"] = json!(["/support/", "/v2/tickets"]);
        v["mode"] = json!("log_only");
        let c = parse(&v).unwrap();
        assert!(c.matches("/support/tickets?id=1") && c.matches("/v2/tickets/9"));
        assert!(!c.matches("/v1/chat/completions") && !c.matches("/supportx"));
        assert_eq!(c.mode.label(), "log-only");
        // Local enrichment alone, with no model at all.
        let local_only =
            json!({"headers": {"x-ai-language": "local.language", "x-ai-size": "local.body_bytes"}});
        let c = parse(&local_only).unwrap();
        assert!(c.tasks.is_empty() && c.locals.language && c.locals.body_bytes && !c.locals.pii);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/mode", json!("off"), "mode"),
            ("/paths", json!([]), "paths"),
            ("/paths", json!(["support"]), "paths[0]"),
            (
                "/headers",
                json!({"X-AI-Intent": "task.intent"}),
                "headers.X-AI-Intent",
            ),
            ("/headers", json!({"host": "task.intent"}), "headers.host"),
            (
                "/headers",
                json!({"x-envoy-foo": "task.intent"}),
                "headers.x-envoy-foo",
            ),
            (
                "/headers",
                json!({"x-ai-intent": "task.nope"}),
                "headers.x-ai-intent",
            ),
            (
                "/headers",
                json!({"x-ai-intent": "local.nope"}),
                "headers.x-ai-intent",
            ),
            ("/max_header_bytes", json!(8), "max_header_bytes"),
            ("/max_body_bytes", json!(0), "max_body_bytes"),
            ("/consumer", json!([]), "consumer"),
            ("/claims", json!({"header": " "}), "claims.header"),
            (
                "/tasks/0/output/properties/intent",
                json!({"enum": ["billing"], "oneOf": []}),
                "tasks[0].output.properties.intent.oneOf",
            ),
            ("/targets/0/endpoint/host", json!("h"), "targets[0].endpoint.host"),
            (
                "/context_token/key",
                json!({"value": "short"}),
                "context_token.key",
            ),
            (
                "/context_token/key",
                json!({"env": "MISSING"}),
                "context_token.key",
            ),
            ("/context_token/kid", json!(" "), "context_token.kid"),
            ("/context_token/ttl", json!("0s"), "context_token.ttl"),
            ("/context_token/ttl", json!(1500), "context_token.ttl"),
            (
                "/context_token/header",
                json!("x-ai-intent"),
                "context_token.header",
            ),
            (
                "/context_token/claims",
                json!({"exp": "task.intent"}),
                "context_token.claims.exp",
            ),
            (
                "/context_token/claims",
                json!({"i": "nope"}),
                "context_token.claims.i",
            ),
            (
                "/context_token/caller_claims",
                json!(["iss"]),
                "context_token.caller_claims[0]",
            ),
            (
                "/context_token/caller_claims",
                json!(["intent"]),
                "context_token.caller_claims[0]",
            ),
            (
                "/context_token/caller_claims",
                json!(["a.b"]),
                "context_token.caller_claims[0]",
            ),
            (
                "/context_token/caller_claims",
                json!(["sub", "sub"]),
                "context_token.caller_claims[1]",
            ),
            (
                "/prices",
                json!({"gpt-4o-mini": {"prompt_per_million": -1, "completion_per_million": 1}}),
                "prices.gpt-4o-mini.prompt_per_million",
            ),
        ];
        for (pointer, value, field) in cases {
            let mut v = base();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            v.pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert(key.to_string(), value.clone());
            let err = parse(&v).unwrap_err();
            assert_eq!(err.field, field, "{pointer} = {value}: {err}");
        }
        let mut v = base();
        v.as_object_mut().unwrap().remove("claims");
        assert_eq!(parse(&v).unwrap_err().field, "context_token.caller_claims");
        let mut v = base();
        v.as_object_mut().unwrap().remove("consumer");
        assert_eq!(parse(&v).unwrap_err().field, "consumer");
        let mut v = base();
        v.as_object_mut().unwrap().remove("context_token");
        v["headers"] = json!({});
        assert_eq!(parse(&v).unwrap_err().field, "headers", "nothing to add");
        let mut v = base();
        v["bogus"] = json!(1);
        assert!(parse(&v).unwrap_err().message.contains("unknown field `bogus`"));
        assert!(Config::parse(b"", &env).is_err());
    }

    /// The same fixtures are checked against ai_enrich.meta.json by tests/check_meta.py.
    #[test]
    fn fixtures_agree_with_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let any_env = |k: &str| {
            Some(if k.contains("KEY") {
                "k".repeat(32)
            } else {
                "x".into()
            })
        };
        let seen = shared::config::check_fixtures(&dir, |b| Config::parse(b, &any_env).map(drop)).unwrap();
        assert!(seen >= 20, "too few fixtures: {seen}");
    }
}
